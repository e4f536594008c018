//! The host-mode executor of the toolstack [`Engine`]: [`Toolstack::handle`]
//! runs each action through the engine and carries out what it asks over
//! the platform traits, a xenstore client and an [`Introducer`].
//!
//! Generic over the platform (`P`: domain control, the builder, event
//! channels, save/restore), a xenstore client (`S`) and an [`Introducer`]
//! (`I`). One mutex guards the engine; platform and xenstore calls are
//! made with it held (they are short and never call back), except the
//! waits of clean shutdown/reboot/suspend and `event.from`, which sleep on
//! a condition variable with the lock released. The `VIRQ_DOM_EXC`
//! watcher thread is [`crate::watcher`].
//!
//! Suspend follows Xen: the guest acknowledges `control/shutdown =
//! suspend` and makes its suspend call; settling its `SHUTDOWN_suspend`
//! saves the domain through the platform ([`DomainSave`]), keeps the image
//! in memory with the VM's uuid, then destroys and releases the domain
//! like any exit. Resume restores the image into a new domain, writes its
//! nodes and devices as a start does, and unpauses it (unless resuming
//! paused). A Suspended VM found at toolstack start has no image:
//! resuming it fails with `HANDLE_INVALID(VDI, OpaqueRef:NULL)`, what XAPI
//! reports for a VM whose `suspend_VDI` is gone; `hard_shutdown` then
//! discards it.

use std::boxed::Box;
use std::collections::HashMap;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::platform::{
    BuiltDomain, DomainBuilder, DomainControl, DomainSave, EventChannel, RestoreTarget, RunState,
    Virq,
};
use xen::{DomId, Errno, EvtchnPort, Gfn};

use crate::action::{Action, ActionError, ActionResult, PowerState, Ref, Reply, VmRecord};
use crate::db;
use crate::effect::{Effect, XsTransaction};
use crate::engine::{Engine, Handled, Settings};
use crate::lifecycle::{self, AfterExit, Op};
use crate::power::{build_error, create_error, Scan};
use crate::task::TaskLimits;
use crate::watcher;

pub use crate::bootstrap::{
    DEFAULT_BRIDGE, DEFAULT_DEVICE, DEFAULT_NETWORK, FUZZ_IMAGE, FUZZ_TEMPLATE, LOCAL_SR,
    LOCAL_SR_TYPE,
};

/// Tells the xenstore domain about a new domain (`XS_INTRODUCE`) and that
/// it is gone (`XS_RELEASE`). The [`XenStore`] client trait has no such
/// calls: they belong to the toolstack alone, and in host mode the
/// in-process store implements them ([`crate::localstore::LocalStore`]).
pub trait Introducer {
    /// `XS_INTRODUCE(dom, gfn, port)`: the store may map the domain's ring
    /// at `gfn` (reserved grant 1) and bind `port`.
    fn introduce(&self, dom: DomId, gfn: Gfn, port: EvtchnPort) -> Result<(), ClientError>;
    /// `XS_RELEASE(dom)`: drop its connections and the nodes it owns; fires
    /// `@releaseDomain`. Releasing an unknown domain is not an error.
    fn release(&self, dom: DomId) -> Result<(), ClientError>;
}

/// No xenstore domain to tell (tests of the toolstack alone).
impl Introducer for () {
    fn introduce(&self, _: DomId, _: Gfn, _: EvtchnPort) -> Result<(), ClientError> {
        Ok(())
    }
    fn release(&self, _: DomId) -> Result<(), ClientError> {
        Ok(())
    }
}

/// The driver domains' side of device plugging: after a domain's devices
/// are written to xenstore (backend and frontend directories, state
/// `Initialising`), the toolstack asks the backend domain to serve each
/// one, before the guest runs; at teardown it asks it to stop. Host mode
/// implements it over the `windsor-control` vchan to netback.
pub trait DeviceBackends: Send + Sync {
    /// Serve VIF `vif` of domain `fe`.
    fn plug_vif(&self, fe: DomId, vif: &crate::devices::VifPlug) -> Result<(), String>;
    /// Stop serving VIF `devid` of domain `fe` (unknown: not an error).
    fn unplug_vif(&self, fe: DomId, devid: u32);
    /// Serve VBD `vbd` of domain `fe` (default: its backend watches
    /// xenstore by itself).
    fn plug_vbd(&self, fe: DomId, vbd: &crate::devices::VbdPlug) -> Result<(), String> {
        let _ = (fe, vbd);
        Ok(())
    }
    /// Stop serving VBD `devid` of domain `fe` (unknown: not an error).
    fn unplug_vbd(&self, fe: DomId, devid: u32) {
        let _ = (fe, devid);
    }
}

/// How the toolstack service runs: the engine's [`Settings`] plus the
/// executor's own (shutdown timeout, uuid seed).
#[derive(Clone, Debug)]
pub struct ToolstackConfig {
    /// `name_label` of the host record created at first start.
    pub host_name: String,
    /// The domain serving guests' xenstore rings.
    pub xenstore_domid: DomId,
    /// The domain serving VIF and VBD backends.
    pub backend_domid: DomId,
    /// The domain serving VBD backends, if not `backend_domid`.
    pub vbd_backend_domid: Option<DomId>,
    /// Directory of VDI image files (see [`Settings::sr_dir`]).
    pub sr_dir: String,
    /// How long a clean shutdown/reboot/suspend waits for the guest
    /// (XAPI waits 1200 s by default).
    pub shutdown_timeout: Duration,
    /// How many changes `event.from` can look back.
    pub event_history: usize,
    /// Create the `Windsor fuzz-target` template at first start.
    pub fuzz_template: bool,
    /// Seed of uuid generation; 0 takes one from the host.
    pub seed: u64,
    /// How many `Async.*` tasks are kept (see [`crate::task`]).
    pub task_limits: TaskLimits,
    /// What the host offers one VM, checked at `VM.start`.
    pub host_limits: crate::limits::HostLimits,
}

impl Default for ToolstackConfig {
    fn default() -> Self {
        let s = Settings::default();
        ToolstackConfig {
            host_name: s.host_name,
            xenstore_domid: s.xenstore_domid,
            backend_domid: s.backend_domid,
            vbd_backend_domid: s.vbd_backend_domid,
            sr_dir: s.sr_dir,
            shutdown_timeout: Duration::from_secs(60),
            event_history: s.event_history,
            fuzz_template: s.fuzz_template,
            seed: 0,
            task_limits: s.task_limits,
            host_limits: s.host_limits,
        }
    }
}

impl ToolstackConfig {
    /// What the engine needs of it.
    pub fn settings(&self) -> Settings {
        Settings {
            host_name: self.host_name.clone(),
            xenstore_domid: self.xenstore_domid,
            backend_domid: self.backend_domid,
            vbd_backend_domid: self.vbd_backend_domid,
            sr_dir: self.sr_dir.clone(),
            event_history: self.event_history,
            fuzz_template: self.fuzz_template,
            task_limits: self.task_limits,
            host_limits: self.host_limits,
        }
    }
}

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

pub(crate) struct Inner<P: DomainSave, S, I> {
    pub(crate) p: P,
    xs: S,
    intro: I,
    cfg: ToolstackConfig,
    engine: Mutex<Engine>,
    changed: Condvar,
    pub(crate) exc: EvtchnPort,
    pub(crate) stop: AtomicBool,
    /// Watches of the `xenstore.*` API calls, on a connection of their own
    /// ([`Toolstack::attach_xs_watch`]).
    xs_watch: std::sync::OnceLock<crate::xs_calls::WatchHub>,
    /// The driver domains ([`Toolstack::attach_backends`]); without them
    /// devices are written to xenstore only.
    backends: std::sync::OnceLock<Box<dyn DeviceBackends>>,
    /// Saved images of Suspended VMs, by VM uuid (memory only). Locked
    /// after `engine`, never the other way round.
    saved: Mutex<HashMap<String, P::Saved>>,
}

/// The toolstack: `handle` an [`Action`], get a [`Reply`]. Cheap to clone;
/// all clones share one toolstack. The `VIRQ_DOM_EXC` watcher thread ends
/// with [`stop`](Self::stop) or when the last clone is dropped.
pub struct Toolstack<P: DomainSave, S, I> {
    inner: Arc<Inner<P, S, I>>,
    watcher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<P: DomainSave, S, I> Clone for Toolstack<P, S, I> {
    fn clone(&self) -> Self {
        Toolstack {
            inner: self.inner.clone(),
            watcher: self.watcher.clone(),
        }
    }
}

fn internal(e: impl core::fmt::Display) -> ActionError {
    ActionError::internal(e)
}

/// Creates the sparse raw image of a new VDI (its directory too).
fn disk_file(path: &str, size: u64) {
    let p = std::path::Path::new(path);
    let made = p
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        })
        .and_then(|f| f.set_len(size));
    if let Err(e) = made {
        tracing::warn!(%path, %e, "cannot create a VDI's file");
    }
}

/// Now, in Unix seconds (task timestamps).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

    /// Does one XenAPI call.
    pub fn handle(&self, action: Action) -> ActionResult {
        let r = self.inner.handle(action);
        if let Err(e) = &r {
            tracing::debug!(error = ?e, "action failed: {e}");
        }
        r
    }

    /// Settles domains that shut down, now (the watcher does this when
    /// `VIRQ_DOM_EXC` fires; tests may call it to be deterministic).
    pub fn poll_domains(&self) {
        self.inner.settle_exits();
    }

    /// The ref of this host's record.
    pub fn host_ref(&self) -> Ref {
        self.inner.lock().host_ref().to_string()
    }

    /// The domain of a VM while it has one.
    pub fn domid(&self, vm: &str) -> Option<DomId> {
        self.inner.lock().domid(vm)
    }

    /// Serves `xenstore.watch` on `conn`, a dom0 store connection used
    /// for nothing else (the toolstack's own connection never carries a
    /// watch). Without one, `xenstore.watch` fails. A second call is
    /// ignored.
    pub fn attach_xs_watch(
        &self,
        conn: impl XenStore + Send + Sync + 'static,
        limits: crate::xs_calls::WatchLimits,
    ) -> std::io::Result<()> {
        if self.inner.xs_watch.get().is_none() {
            let hub = crate::xs_calls::WatchHub::new(conn, limits)?;
            let _ = self.inner.xs_watch.set(hub);
        }
        Ok(())
    }

    /// Plugs devices through `b` from now on (VIFs of VMs started later).
    /// A second call is ignored.
    pub fn attach_backends(&self, b: Box<dyn DeviceBackends>) {
        let _ = self.inner.backends.set(b);
    }

    /// The driver domain serving devices of `kind` died and was started
    /// again as domain `new`: the running VMs' devices of that kind move
    /// to it (written anew in xenstore, plugged through the attached
    /// backends), and VMs started later use it.
    pub fn backend_restarted(&self, kind: crate::layout::DeviceKind, new: DomId) {
        self.inner.backend_restarted(kind, new);
    }

    /// The xenstore client the toolstack uses.
    pub fn store(&self) -> &S {
        &self.inner.xs
    }

    /// The newest event id (the token `event.from` would return now).
    pub fn token(&self) -> u64 {
        self.inner.lock().token()
    }

    /// Stops the watcher thread (the toolstack still answers `handle`).
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(hub) = self.inner.xs_watch.get() {
            hub.shutdown();
        }
        let _ = self.inner.p.notify(self.inner.exc);
        let h = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = h {
            // The watcher wakes at least every WATCH_TICK.
            let _ = h.join();
            // Unbind VIRQ_DOM_EXC, so that a new toolstack can bind it.
            let _ = self.inner.p.close(self.inner.exc);
        }
    }
}

impl<P: DomainSave, S, I> Drop for Toolstack<P, S, I> {
    fn drop(&mut self) {
        // The watcher holds only a Weak: when the last clone goes it exits
        // at its next tick.
        if Arc::strong_count(&self.inner) == 1 {
            self.inner.stop.store(true, Ordering::Release);
        }
    }
}

/// Saved images dropped by an action; dropped in turn (ending their
/// parked guests) once the engine lock is released.
type Trash<T> = Vec<T>;

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn images(&self) -> MutexGuard<'_, HashMap<String, P::Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out the engine's effects; wakes the waiters of
    /// `event.from` and clean operations if anything changed since
    /// `token`. The first failed write is the answer (the rest are still
    /// tried).
    fn flush(
        &self,
        eng: &mut Engine,
        token: u64,
        trash: &mut Trash<P::Saved>,
    ) -> Result<(), ActionError> {
        let mut first = Ok(());
        for e in eng.take_effects() {
            let r = match &e {
                Effect::Save(class, uuid) => match eng.record(*class, uuid) {
                    Some(rec) => db::save(&self.xs, rec),
                    None => Ok(()),
                },
                Effect::Remove(class, uuid) => db::remove(&self.xs, *class, uuid),
                Effect::DropImage(uuid) => {
                    trash.extend(self.images().remove(uuid));
                    Ok(())
                }
                Effect::CreateDisk { path, size } => {
                    disk_file(path, *size);
                    Ok(())
                }
                Effect::RemoveDisk(path) => {
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(%path, %e, "cannot remove a VDI's file"),
                    }
                    Ok(())
                }
            };
            if let Err(err) = r {
                tracing::error!(?e, %err, "pool database write failed");
                if first.is_ok() {
                    first = Err(internal(err));
                }
            }
        }
        if eng.token() != token {
            self.changed.notify_all();
        }
        first
    }

    /// Runs `f` on the engine with the lock held, then its effects.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Engine, &mut Trash<P::Saved>) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        let mut trash = Vec::new();
        let r = {
            let mut eng = self.lock();
            let token = eng.token();
            let r = f(&mut eng, &mut trash);
            let flushed = self.flush(&mut eng, token, &mut trash);
            r.and_then(|x| flushed.map(|()| x))
        };
        drop(trash);
        r
    }

    /// Commits one transaction of the engine's.
    fn commit(&self, tx: &XsTransaction) -> Result<(), ClientError> {
        crate::effect::commit(&self.xs, tx)
    }

    fn bootstrap(&self) -> Result<(), StartError> {
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
    fn forget_dead_domains(&self, live: &[u16]) {
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

    fn handle(&self, action: Action) -> ActionResult {
        let mut pass = None;
        let r = self.locked(|eng, _| match eng.handle(action, unix_now()) {
            Handled::Reply(r) => r,
            Handled::Execute(a) => {
                pass = Some(a);
                Ok(Reply::Unit)
            }
        });
        match pass {
            Some(a) => self.execute(a),
            None => r,
        }
    }

    /// The actions that need the platform, xenstore or a wait.
    fn execute(&self, action: Action) -> ActionResult {
        use Action as A;
        match action {
            A::VmStart {
                vm, start_paused, ..
            } => self.start(&vm, Op::Start, start_paused),
            A::VmResume {
                vm, start_paused, ..
            } => self.start(&vm, Op::Resume, start_paused),
            A::DevicePlug { class, device } => self.hotplug(class, &device, true),
            A::DeviceUnplug { class, device } => self.hotplug(class, &device, false),
            A::VmPause { vm } => self.pause(&vm, Op::Pause),
            A::VmUnpause { vm } => self.pause(&vm, Op::Unpause),
            A::VmHardShutdown { vm } => self.hard_shutdown(&vm),
            A::VmHardReboot { vm } => self.hard_reboot(&vm),
            A::VmCleanShutdown { vm } => self.clean(&vm, Op::CleanShutdown, false),
            A::VmShutdown { vm } => self.clean(&vm, Op::CleanShutdown, true),
            A::VmCleanReboot { vm } => self.clean(&vm, Op::CleanReboot, false),
            A::VmSuspend { vm } => self.clean(&vm, Op::Suspend, false),
            A::EventFrom {
                classes,
                token,
                timeout,
            } => self.event_from(&classes, token, timeout),
            A::XsRead { path } => crate::xs_calls::read(&self.xs, &path),
            A::XsWrite { path, value } => crate::xs_calls::write(&self.xs, &path, &value),
            A::XsDirectory { path } => crate::xs_calls::directory(&self.xs, &path),
            A::XsRm { path } => crate::xs_calls::rm(&self.xs, &path),
            A::XsWatch {
                owner,
                path,
                cursor,
                timeout,
            } => self.xs_hub()?.watch(&owner, &path, &cursor, timeout),
            A::XsUnwatch { owner, cursor } => self.xs_hub()?.unwatch(&owner, &cursor),
            A::XsDropOwner { owner } => {
                // Nothing to drop when watches are not served.
                if let Some(h) = self.xs_watch.get() {
                    h.drop_owner(&owner);
                }
                Ok(Reply::Unit)
            }
            other => Err(internal(format_args!("not an executor action: {other:?}"))),
        }
    }

    fn xs_hub(&self) -> Result<&crate::xs_calls::WatchHub, ActionError> {
        self.xs_watch
            .get()
            .ok_or_else(|| ActionError::internal("xenstore watches are not served on this host"))
    }

    // ---- power operations ---------------------------------------------------

    fn start(&self, r: &str, op: Op, paused: bool) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, op)?;
            let d = if op == Op::Resume {
                self.restore(eng, &v)?
            } else {
                self.boot(eng, &v)?
            };
            if !paused {
                if let Err(e) = self.p.unpause(d) {
                    self.teardown(eng, &v.uuid, d);
                    return Err(internal(e));
                }
            }
            eng.started(v, op, d, paused);
            Ok(Reply::Unit)
        })
    }

    /// Creates, builds and plumbs a domain for `v`, leaving it paused.
    fn boot(&self, eng: &mut Engine, v: &VmRecord) -> Result<DomId, ActionError> {
        let d = self
            .p
            .create(&eng.create_config(v))
            .map_err(|e| create_error(e, v))?;
        let built = match self.p.build(d, &eng.domain_image(v)) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.p.destroy(d);
                return Err(build_error(e, v));
            }
        };
        self.attach(eng, v, d, Some(built))?;
        Ok(d)
    }

    /// Restores `v`'s saved image into a new domain, plumbed as at start
    /// and left paused; without an image it fails as XAPI does for a VM
    /// whose suspend VDI is gone.
    fn restore(&self, eng: &mut Engine, v: &VmRecord) -> Result<DomId, ActionError> {
        let img = self.images().remove(&v.uuid).ok_or_else(|| {
            tracing::warn!(vm = %v.uuid, "resume: no saved image");
            ActionError::HandleInvalid {
                class: crate::action::Class::Vdi,
                r: crate::action::NULL_REF.into(),
            }
        })?;
        let target = RestoreTarget {
            xenstore_domid: self.cfg.xenstore_domid,
            console_domid: DomId::DOM0,
        };
        let restored = self
            .p
            .restore(img, &target)
            .map_err(|e| create_error(e, v))?;
        let d = restored.domid;
        self.attach(eng, v, d, restored.rings)?;
        Ok(d)
    }

    /// Makes `d` the domain of `v`: its xenstore tree, and its
    /// introduction (if it has a ring). On failure the domain is torn down.
    fn attach(
        &self,
        eng: &mut Engine,
        v: &VmRecord,
        d: DomId,
        rings: Option<BuiltDomain>,
    ) -> Result<(), ActionError> {
        let tx = eng.attach(v, d);
        let plumbed = self.commit(&tx).and_then(|()| match rings {
            Some(b) => self.intro.introduce(d, b.store_gfn, b.store_port),
            None => Ok(()),
        });
        if let Err(e) = plumbed {
            self.teardown(eng, &v.uuid, d);
            return Err(internal(e));
        }
        if let Some(b) = self.backends.get() {
            for vif in eng.vif_plugs(v) {
                if let Err(e) = b.plug_vif(d, &vif) {
                    tracing::warn!(dom = d.0, devid = vif.devid, %e, "VIF plug failed");
                    self.teardown(eng, &v.uuid, d);
                    return Err(internal(format_args!("plugging VIF {}: {e}", vif.devid)));
                }
            }
            for vbd in eng.vbd_plugs(v) {
                if let Err(e) = b.plug_vbd(d, &vbd) {
                    tracing::warn!(dom = d.0, devid = vbd.devid, %e, "VBD plug failed");
                    self.teardown(eng, &v.uuid, d);
                    return Err(internal(format_args!("plugging VBD {}: {e}", vbd.devid)));
                }
            }
        }
        Ok(())
    }

    /// `VIF.plug`/`VBD.plug` (`on`) and `unplug` on a running VM: the
    /// device's directories written then the device plugged into its
    /// backend, or unplugged from it then the directories removed. A plug
    /// the backend refuses is undone.
    fn hotplug(&self, class: crate::action::Class, r: &str, on: bool) -> ActionResult {
        use crate::layout::DeviceKind as K;
        self.locked(|eng, _| {
            let h = eng.device_hotplug(class, r, on)?;
            let b = self.backends.get();
            if on {
                self.commit(&h.tx).map_err(internal)?;
                let plugged = match (b, &h.vif, &h.vbd) {
                    (Some(b), Some(vif), _) => b.plug_vif(h.domain, vif),
                    (Some(b), _, Some(vbd)) => b.plug_vbd(h.domain, vbd),
                    _ => Ok(()),
                };
                if let Err(e) = plugged {
                    tracing::warn!(dom = h.domain.0, devid = h.devid, %e, "hot-plug failed");
                    let undo = eng.device_hotplug(class, r, false)?;
                    let _ = self.commit(&undo.tx);
                    return Err(internal(format_args!("plugging device {}: {e}", h.devid)));
                }
            } else {
                if let Some(b) = b {
                    match h.kind {
                        K::Vif => b.unplug_vif(h.domain, h.devid),
                        K::Vbd => b.unplug_vbd(h.domain, h.devid),
                    }
                }
                self.commit(&h.tx).map_err(internal)?;
            }
            Ok(Reply::Unit)
        })
    }

    /// The driver domain serving devices of `kind` was restarted as `new`:
    /// every running VM's devices of that kind are written anew under it
    /// and plugged into it (see [`Engine::backend_restarted`]); VMs started
    /// later use it.
    pub(crate) fn backend_restarted(&self, kind: crate::layout::DeviceKind, new: DomId) {
        let _ = self.locked(|eng, _| {
            for (d, uuid, tx) in eng.backend_restarted(kind, new) {
                if let Err(e) = self.commit(&tx) {
                    tracing::warn!(dom = d.0, %e, "cannot move devices to the new backend");
                    continue;
                }
                let Some(b) = self.backends.get() else {
                    continue;
                };
                let r = match kind {
                    crate::layout::DeviceKind::Vif => eng
                        .vif_plugs_of(&uuid)
                        .iter()
                        .try_for_each(|p| b.plug_vif(d, p)),
                    crate::layout::DeviceKind::Vbd => eng
                        .vbd_plugs_of(&uuid)
                        .iter()
                        .try_for_each(|p| b.plug_vbd(d, p)),
                };
                if let Err(e) = r {
                    tracing::warn!(dom = d.0, %e, "re-plugging into the restarted backend failed");
                }
            }
            Ok(())
        });
    }

    /// Destroys domain `d` of VM `uuid` and removes every trace of it.
    fn teardown(&self, eng: &mut Engine, uuid: &str, d: DomId) {
        match self.p.destroy(d) {
            Ok(()) | Err(xen::platform::Error::Errno(Errno::ESRCH)) => {}
            Err(e) => tracing::warn!(dom = d.0, ?e, "destroy failed"),
        }
        if let Err(e) = self.intro.release(d) {
            tracing::warn!(dom = d.0, ?e, "xenstore release failed");
        }
        if let Some(b) = self.backends.get() {
            for vif in eng.vif_plugs_of(uuid) {
                b.unplug_vif(d, vif.devid);
            }
            for vbd in eng.vbd_plugs_of(uuid) {
                b.unplug_vbd(d, vbd.devid);
            }
        }
        let tx = eng.detach(uuid, d);
        if let Err(e) = self.commit(&tx) {
            tracing::warn!(dom = d.0, ?e, "cannot remove the domain's nodes");
        }
    }

    fn pause(&self, r: &str, op: Op) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, op)?;
            let d = eng.domain_of(&v.uuid)?;
            if op == Op::Pause {
                self.p.pause(d)
            } else {
                self.p.unpause(d)
            }
            .map_err(internal)?;
            eng.paused(v, op);
            Ok(Reply::Unit)
        })
    }

    fn hard_shutdown(&self, r: &str) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, Op::HardShutdown)?;
            if let Ok(d) = eng.domain_of(&v.uuid) {
                self.teardown(eng, &v.uuid, d);
            }
            // From Suspended: the saved image is discarded.
            eng.hard_halted(v);
            Ok(Reply::Unit)
        })
    }

    fn hard_reboot(&self, r: &str) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, Op::HardReboot)?;
            if let Ok(d) = eng.domain_of(&v.uuid) {
                self.teardown(eng, &v.uuid, d);
            }
            match self.boot(eng, &v).and_then(|d| {
                self.p.unpause(d).map_err(internal)?;
                Ok(d)
            }) {
                Ok(d) => {
                    eng.restarted(v, d, "reboot");
                    Ok(Reply::Unit)
                }
                Err(e) => {
                    eng.halted(v, PowerState::Halted, "halted");
                    Err(e)
                }
            }
        })
    }

    /// Clean shutdown, reboot or suspend: ask the guest through
    /// `control/shutdown`, wait for the watcher to settle its exit.
    fn clean(&self, r: &str, op: Op, fallback: bool) -> ActionResult {
        let c = self.locked(|eng, _| {
            let c = eng.clean_request(r, op)?;
            self.xs
                .write(TxId::NONE, &c.node, c.word.as_bytes())
                .map_err(internal)?;
            eng.clean_started(r, &c, op);
            Ok(c)
        })?;
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        let mut trash = Vec::new();
        let mut eng = self.lock();
        loop {
            if !eng.clean_pending(&c) {
                // Settled by the watcher (or the VM went away).
                return eng.clean_outcome(r, &c, op);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Wake at least every tick: the watcher may be slow to get the lock.
            let wait = (deadline - now).min(watcher::WATCH_TICK);
            eng = self
                .changed
                .wait_timeout(eng, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if eng.clean_pending(&c)
                && matches!(
                    self.p.info(c.dom).map(|i| i.state),
                    Ok(RunState::Shutdown(_)) | Err(_)
                )
            {
                // Settle now in case VIRQ_DOM_EXC raced our write.
                let token = eng.token();
                self.settle(&mut eng, &mut trash);
                let _ = self.flush(&mut eng, token, &mut trash);
            }
        }
        // Timed out.
        let acked = self
            .xs
            .read(TxId::NONE, &c.node)
            .map(|v| v.is_empty())
            .unwrap_or(true);
        let token = eng.token();
        let err = eng.clean_timed_out(r, &c, acked, self.cfg.shutdown_timeout);
        let _ = self.flush(&mut eng, token, &mut trash);
        drop(eng);
        drop(trash);
        if fallback {
            tracing::info!(vm = %c.vm, acked, "clean shutdown timed out; hard shutdown");
            return self.hard_shutdown(r);
        }
        Err(err)
    }

    // ---- domain exits -------------------------------------------------------

    /// Lists the domains (without the lock: with a thousand VMs the list
    /// is the longest thing the watcher does) and settles every VM whose
    /// domain exited.
    pub(crate) fn settle_exits(&self) {
        if !self.lock().has_domains() {
            return;
        }
        let Some(scan) = watcher::list(&self.p).map(|l| watcher::scan(&l)) else {
            return;
        };
        let _ = self.locked(|eng, _| {
            self.apply_scan(eng, &scan);
            Ok(())
        });
    }

    /// Lists the domains and settles exits, with the lock held.
    fn settle(&self, eng: &mut Engine, _trash: &mut Trash<P::Saved>) {
        if !eng.has_domains() {
            return;
        }
        if let Some(scan) = watcher::list(&self.p).map(|l| watcher::scan(&l)) {
            self.apply_scan(eng, &scan);
        }
    }

    fn apply_scan(&self, eng: &mut Engine, scan: &Scan) {
        // A domain started after the scan is not in it either: ask again
        // before judging it gone.
        let gone: Vec<DomId> = eng
            .missing(scan)
            .into_iter()
            .filter(|d| {
                matches!(
                    self.p.info(*d),
                    Err(xen::platform::Error::Errno(Errno::ESRCH))
                )
            })
            .collect();
        for x in eng.exits(scan, &gone) {
            tracing::info!(vm = %x.vm, dom = x.dom.0, why = ?x.why, after = ?x.after, "domain exited");
            if x.after == AfterExit::Suspend {
                match self.p.save(x.dom) {
                    // A stale image (none is expected) is replaced.
                    Ok(img) => drop(self.images().insert(x.vm.clone(), img)),
                    Err(e) => {
                        tracing::warn!(vm = %x.vm, dom = x.dom.0, ?e, "save failed: suspended without an image");
                    }
                }
            }
            self.teardown(eng, &x.vm, x.dom);
            let Some(v) = eng.exited(&x) else { continue };
            let word = lifecycle::reason_word(x.why);
            let booted = self.boot(eng, &v).and_then(|nd| {
                self.p.unpause(nd).map_err(internal)?;
                Ok(nd)
            });
            match booted {
                Ok(nd) => eng.restarted(v, nd, word),
                Err(e) => {
                    tracing::warn!(vm = %x.vm, %e, "restart failed; halting");
                    eng.halted(v, PowerState::Halted, word);
                }
            }
        }
    }

    // ---- event.from ---------------------------------------------------------

    fn event_from(&self, classes: &[String], token: u64, timeout: Duration) -> ActionResult {
        let deadline = Instant::now() + timeout;
        let mut eng = self.lock();
        loop {
            if let Some(batch) = eng.events_since(classes, token)? {
                return Ok(Reply::Events(batch));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Reply::Events(eng.empty_batch()));
            }
            eng = self
                .changed
                .wait_timeout(eng, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
