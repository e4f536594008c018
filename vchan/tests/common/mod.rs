//! Test helpers: a tiny in-memory xenstore double (paths, values and
//! permission lists; transactions always commit) and a two-domain host on
//! the simulated hypervisor.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use windsor_xenstore::client::{ClientError, Perm, Result, TxId, WatchEvent, XenStore};
use xen::platform::CreateConfig;
use xen::Errno;

/// A node: value and permissions.
type Node = (Vec<u8>, Vec<Perm>);

/// Path → node.
#[derive(Default)]
pub struct TestStore {
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl TestStore {
    pub fn node(&self, path: &str) -> Option<Node> {
        self.nodes.lock().unwrap().get(path).cloned()
    }
    pub fn len(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }
}

impl XenStore for TestStore {
    fn read(&self, _: TxId, path: &str) -> Result<Vec<u8>> {
        self.node(path)
            .map(|n| n.0)
            .ok_or(ClientError::Store(Errno::ENOENT))
    }
    fn write(&self, _: TxId, path: &str, value: &[u8]) -> Result<()> {
        let mut g = self.nodes.lock().unwrap();
        g.entry(path.into()).or_default().0 = value.to_vec();
        Ok(())
    }
    fn mkdir(&self, tx: TxId, path: &str) -> Result<()> {
        self.write(tx, path, b"")
    }
    fn rm(&self, _: TxId, path: &str) -> Result<()> {
        let mut g = self.nodes.lock().unwrap();
        g.retain(|k, _| !(k == path || k.starts_with(&format!("{path}/"))));
        Ok(())
    }
    fn directory(&self, _: TxId, path: &str) -> Result<Vec<String>> {
        let g = self.nodes.lock().unwrap();
        let pre = format!("{path}/");
        Ok(g.keys()
            .filter_map(|k| k.strip_prefix(&pre))
            .filter(|k| !k.contains('/'))
            .map(String::from)
            .collect())
    }
    fn get_perms(&self, _: TxId, path: &str) -> Result<Vec<Perm>> {
        self.node(path)
            .map(|n| n.1)
            .ok_or(ClientError::Store(Errno::ENOENT))
    }
    fn set_perms(&self, _: TxId, path: &str, perms: &[Perm]) -> Result<()> {
        let mut g = self.nodes.lock().unwrap();
        let n = g.get_mut(path).ok_or(ClientError::Store(Errno::ENOENT))?;
        n.1 = perms.to_vec();
        Ok(())
    }
    fn transaction_start(&self) -> Result<TxId> {
        Ok(TxId(1))
    }
    fn transaction_end(&self, _: TxId, _: bool) -> Result<()> {
        Ok(())
    }
    fn watch(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn unwatch(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn next_event(&self, _: Option<Duration>) -> Result<WatchEvent> {
        Err(ClientError::Timeout)
    }
}

/// A config with enough memory for 1 MiB rings.
pub fn cfg() -> CreateConfig {
    CreateConfig {
        max_mem_kib: 64 * 1024,
        ..CreateConfig::default()
    }
}
