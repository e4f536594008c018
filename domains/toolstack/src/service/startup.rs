//! Starting the toolstack: loading the pool database, re-attaching or
//! halting the VMs found, forgetting the xenstore traces of domains that
//! no longer exist, binding `VIRQ_DOM_EXC` and starting its watcher
//! thread.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::vec::Vec;

use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel, Virq};
use xen::{DomId, Errno};

use super::executor::disk_file;
use super::{Inner, Introducer, Toolstack, ToolstackConfig};
use crate::db;
use crate::effect::Effect;
use crate::engine::Engine;
use crate::watcher;

/// Why the toolstack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pool database could not be read or written.
    #[error("pool database: {0}")]
    Db(#[from] db::DbError),
    /// Binding `VIRQ_DOM_EXC` failed.
    #[error("platform: {0}")]
    Platform(#[from] xen::platform::Error),
}

impl<P, S, I> Toolstack<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel + Send + Sync + 'static,
    S: XenStore + Send + Sync + 'static,
    I: Introducer + Send + Sync + 'static,
{
    /// Starts the toolstack: loads the pool database from `xs` (creating
    /// the host, pool and template records at first start), re-attaches
    /// VMs whose domains still run, halts the others, binds
    /// `VIRQ_DOM_EXC` and starts the watcher thread.
    pub fn new(p: P, xs: S, intro: I, cfg: ToolstackConfig) -> Result<Self, StartError> {
        let (records, bad) = db::load_all(&xs)?;
        for path in &bad {
            tracing::warn!(%path, "skipping a damaged record");
        }
        let seed = if cfg.seed != 0 {
            cfg.seed
        } else {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0u64)
        };
        let engine = Engine::new(cfg.settings(), seed, records);
        let exc = p.bind_virq(Virq::DomExc)?;
        let inner = Arc::new(Inner {
            p,
            xs,
            intro,
            cfg,
            engine: Mutex::new(engine),
            changed: Condvar::new(),
            exc,
            stop: AtomicBool::new(false),
            xs_watch: std::sync::OnceLock::new(),
            backends: std::sync::OnceLock::new(),
            saved: Mutex::new(HashMap::new()),
        });
        inner.bootstrap()?;
        let weak = Arc::downgrade(&inner);
        let h = std::thread::Builder::new()
            .name("toolstack-domexc".into())
            .spawn(move || watcher::watch_dom_exc(weak))
            .map_err(|_| xen::platform::Error::Errno(Errno::EAGAIN))?;
        Ok(Toolstack {
            inner,
            watcher: Arc::new(Mutex::new(Some(h))),
        })
    }
}

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    pub(super) fn bootstrap(&self) -> Result<(), StartError> {
        let infos = watcher::list(&self.p).ok_or(xen::platform::Error::Errno(Errno::EIO))?;
        let live: Vec<(DomId, [u8; 16])> = infos.iter().map(|i| (i.domid, i.handle)).collect();
        {
            let mut eng = self.lock();
            eng.bootstrap(&live);
            for e in eng.take_effects() {
                match e {
                    Effect::Save(class, uuid) => {
                        if let Some(rec) = eng.record(class, &uuid) {
                            db::save(&self.xs, rec)?;
                        }
                    }
                    Effect::Remove(class, uuid) => db::remove(&self.xs, class, &uuid)?,
                    Effect::DropImage(_) | Effect::RemoveDisk(_) => {}
                    Effect::CreateDisk { path, size } => disk_file(&path, size),
                }
            }
        }
        let ids: Vec<u16> = infos.iter().map(|i| i.domid.0).collect();
        self.forget_dead_domains(&ids);
        Ok(())
    }

    /// Releases and removes the xenstore traces of domains that no longer
    /// exist (`live`: every domain the platform knows, sorted): after a
    /// crash of the whole host (or of the toolstack while a guest died),
    /// `/local/domain/<id>` nodes, backend directories and the store's
    /// introduction of a dead domain would otherwise stay forever.
    pub(super) fn forget_dead_domains(&self, live: &[u16]) {
        let listed = match self.xs.directory(TxId::NONE, "/local/domain") {
            Ok(ids) => ids,
            Err(ClientError::Store(Errno::ENOENT)) => return,
            Err(e) => {
                tracing::warn!(?e, "cannot list /local/domain");
                return;
            }
        };
        for d in crate::devices::dead_domains(&listed, live) {
            if self.p.info(d).is_ok() {
                continue;
            }
            tracing::info!(dom = d.0, "forgetting a domain that no longer exists");
            if let Err(e) = self.intro.release(d) {
                tracing::debug!(dom = d.0, ?e, "release of a dead domain");
            }
            let tx = self.lock().domain_removal(d);
            if let Err(e) = self.commit(&tx) {
                tracing::warn!(dom = d.0, ?e, "cannot remove a dead domain's nodes");
            }
        }
    }
}
