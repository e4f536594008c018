//! A pool of `windsor-pool-node` processes for the tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::proto::{ClientReply, ClientRequest, Status};
use windsor_xenstore_replication::tls::{self, Tls};

/// Id of the test client's certificate.
pub const CLIENT_ID: u64 = 1000;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Child>,
    pub rt: tokio::runtime::Runtime,
    pub tls: Tls,
    /// Command prefix to run a node inside (e.g. `ip netns exec NS`).
    pub wrap: BTreeMap<u64, Vec<String>>,
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Certificates and addresses for `n` members on 127.0.0.1, not started.
    pub fn prepare(n: u64) -> Self {
        let addrs = (1..=n)
            .map(|i| (i, format!("127.0.0.1:{}", free_port("127.0.0.1"))))
            .collect();
        Self::prepare_at(addrs)
    }

    pub fn prepare_at(addrs: BTreeMap<u64, String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        tls::create_ca(&ca).unwrap();
        for id in addrs.keys() {
            tls::issue_member(&ca, *id, &dir.path().join(format!("tls{id}"))).unwrap();
        }
        tls::issue_member(&ca, CLIENT_ID, &dir.path().join("tls-client")).unwrap();
        let tls = Tls::load(&dir.path().join("tls-client")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Cluster {
            dir,
            addrs,
            procs: BTreeMap::new(),
            rt,
            tls,
            wrap: BTreeMap::new(),
        }
    }

    /// `n` members, started, the first bootstrapping the pool.
    pub fn new(n: u64) -> Self {
        let mut c = Self::prepare(n);
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("data{id}"))
    }

    pub fn start(&mut self, id: u64) {
        let bootstrap: Vec<String> = self.addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_windsor-pool-node");
        let wrap = self.wrap.get(&id).cloned().unwrap_or_default();
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["run", "--id", &id.to_string(), "--listen", &self.addrs[&id]])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .arg("--tls-dir")
            .arg(self.dir.path().join(format!("tls{id}")));
        if id == 1 {
            cmd.args(["--bootstrap", &bootstrap.join(",")]);
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(id, child);
    }

    /// `kill -9`, and reap.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.procs.get(&id).map(|c| c.id())
    }

    pub fn live(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn client(&self) -> PoolClient {
        PoolClient::new(self.tls.clone(), self.addrs.values().cloned().collect())
    }

    pub fn status(&self, id: u64) -> Option<Status> {
        let c = self.client();
        match self
            .rt
            .block_on(c.call_at(&self.addrs[&id], ClientRequest::Status))
        {
            Ok(Ok(ClientReply::Status(s))) => Some(s),
            _ => None,
        }
    }

    /// Waits until the live members in `among` agree on a leader among them.
    pub fn wait_leader_among(&self, among: &[u64], timeout: Duration) -> u64 {
        let end = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<u64>> = among
                .iter()
                .map(|i| self.status(*i).and_then(|s| s.leader))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if among.contains(l) && leaders.iter().all(|x| *x == Some(*l)) {
                    // The leader itself must say so (not a stale view).
                    if self.status(*l).is_some_and(|s| s.leader == Some(*l)) {
                        return *l;
                    }
                }
            }
            assert!(
                Instant::now() < end,
                "no leader among {among:?}: {leaders:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let live = self.live();
        self.wait_leader_among(&live, timeout)
    }

    /// Waits until member `id` has applied at least `index`.
    pub fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> Status {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status(id) {
                if s.applied >= index {
                    return s;
                }
            }
            assert!(
                Instant::now() < end,
                "member {id} did not reach {index}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The members' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for id in self.addrs.keys() {
            let p = self.dir.path().join(format!("node{id}.log"));
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            s += &format!("--- node {id}\n");
            for l in tail.into_iter().rev() {
                s += l;
                s += "\n";
            }
        }
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}
