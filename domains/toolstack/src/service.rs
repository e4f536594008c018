//! The toolstack service: records, domains and events behind
//! [`Toolstack::handle`].
//!
//! Generic over the platform (`P`: domain control, the builder, event
//! channels), a xenstore client (`S`) and an [`Introducer`] (`I`). One
//! mutex guards the records and the runtime state; platform and xenstore
//! calls are made with it held (they are short and never call back), except
//! the waits of clean shutdown/reboot/suspend and `event.from`, which sleep
//! on a condition variable with the lock released.
//!
//! A watcher thread binds `VIRQ_DOM_EXC` and, whenever it fires, lists the
//! domains and settles every VM whose domain shut down: poweroff → Halted,
//! reboot → a new domain, suspend → Suspended, crash → Halted (or restart,
//! per `actions_after_crash`). Settling destroys the domain (its grants,
//! ports and pages go back), releases it from xenstore and removes its
//! nodes, frontend and backend.
//!
//! Suspend follows Xen: the guest acknowledges `control/shutdown =
//! suspend` and makes its suspend call; settling its `SHUTDOWN_suspend`
//! saves the domain through the platform ([`DomainSave`]: memory,
//! configuration, the parked guest), keeps the image with the VM's runtime
//! state, then destroys and releases the domain like any exit. Resume
//! restores the image into a new domain (new domid), introduces it to
//! xenstore, writes its nodes and devices as a start does, and unpauses it
//! (unless resuming paused): the guest's suspend call returns and it
//! reconnects. The image lives in memory only: a Suspended VM found at
//! toolstack start (e.g. after `windsor up` restarts) has none, and
//! resuming it fails with `HANDLE_INVALID(VDI, OpaqueRef:NULL)`, what XAPI
//! reports for a VM whose `suspend_VDI` is gone; `hard_shutdown` (legal
//! from Suspended) then discards it, as it discards an image that exists.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec;
use std::vec::Vec;

use windsor_xenstore::client::{in_transaction, Access, ClientError, Perm, TxId, XenStore};
use xen::platform::{
    BuiltDomain, CreateConfig, DomainBuilder, DomainControl, DomainImage, DomainInfo, DomainSave,
    EventChannel, RestoreTarget, RunState, ShutdownReason, Virq,
};
use xen::{DomId, Errno, EvtchnPort, Gfn};

use crate::action::{
    ref_of, uuid_of, Action, ActionError, ActionResult, Class, Event, EventBatch, EventOp,
    HostRecord, Map, NetworkRecord, NewRecord, PbdRecord, PifRecord, PoolRecord, PowerState,
    Record, Ref, Reply, SrRecord, SrSpec, TaskOutcome, TaskRecord, VmRecord, NULL_REF,
};
use crate::db;
use crate::layout::{self, DeviceKind};
use crate::lifecycle::{self, AfterExit, Op};
use crate::task::{self, TaskBook, TaskLimits};

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

/// How the toolstack runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `name_label` of the host record created at first start.
    pub host_name: String,
    /// The domain serving guests' xenstore rings.
    pub xenstore_domid: DomId,
    /// The domain serving VIF and VBD backends.
    pub backend_domid: DomId,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_name: "windsor".into(),
            xenstore_domid: DomId::DOM0,
            backend_domid: DomId::DOM0,
            shutdown_timeout: Duration::from_secs(60),
            event_history: 16384,
            fuzz_template: true,
            seed: 0,
            task_limits: TaskLimits::default(),
        }
    }
}

/// The image name of the built-in fuzz-target guest (`PV_kernel`).
pub const FUZZ_IMAGE: &str = "fuzz-target";

/// Name of the template created at first start.
pub const FUZZ_TEMPLATE: &str = "Windsor fuzz-target";

/// `name_label` of the host's local SR created at first start.
pub const LOCAL_SR: &str = "Local storage";

/// `type` of the local SR: file-backed disk images on the host's own file
/// system, what XAPI calls an `ext` SR.
pub const LOCAL_SR_TYPE: &str = "ext";

/// `name_label` of the network created at first start (XAPI's name for
/// the network of the host's first NIC).
pub const DEFAULT_NETWORK: &str = "Pool-wide network associated with eth0";

/// `bridge` of that network.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// `device` of the host's PIF on it.
pub const DEFAULT_DEVICE: &str = "eth0";

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

/// What a domain list found.
#[derive(Default)]
struct Scan {
    /// Every domain id, in order.
    ids: Vec<u16>,
    /// Domains that shut down, and why.
    down: Vec<(u16, ShutdownReason)>,
}

/// Runtime state of a VM (not persisted).
#[derive(Default)]
struct Runtime {
    domid: Option<DomId>,
    /// The lifecycle operation in progress, if any.
    busy: Option<Op>,
    /// The last domain exit seen: which domain, why.
    last_exit: Option<(DomId, ShutdownReason)>,
}

struct State {
    recs: BTreeMap<(Class, String), Record>,
    rt: HashMap<String, Runtime>,
    by_dom: HashMap<u16, String>,
    events: VecDeque<Event>,
    last_id: u64,
    rng: u64,
    host_ref: Ref,
    /// Pending and finished tasks (their records are in `recs`).
    tasks: TaskBook,
}

struct Inner<P: DomainSave, S, I> {
    p: P,
    xs: S,
    intro: I,
    cfg: Config,
    st: Mutex<State>,
    changed: Condvar,
    exc: EvtchnPort,
    stop: AtomicBool,
    /// Watches of the `xenstore.*` API calls, on a connection of their own
    /// ([`Toolstack::attach_xs_watch`]).
    xs_watch: std::sync::OnceLock<crate::xsapi::WatchHub>,
    /// Saved images of Suspended VMs, by VM uuid (memory only). Locked
    /// after `st`, never the other way round.
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

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 16 bytes of a textual uuid (the domain handle); zeros if malformed.
fn uuid_bytes(u: &str) -> [u8; 16] {
    let hex: Vec<u8> = u.bytes().filter(|b| *b != b'-').collect();
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        return out;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let s = core::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap_or("00");
        *o = u8::from_str_radix(s, 16).unwrap_or(0);
    }
    out
}

impl State {
    /// Copies of every pool record.
    fn pools(&self) -> Vec<PoolRecord> {
        self.recs
            .values()
            .filter_map(|r| match r {
                Record::Pool(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn new_uuid(&mut self) -> String {
        let a = splitmix(&mut self.rng);
        let b = splitmix(&mut self.rng);
        let a = (a & !0xf000) | 0x4000; // version 4
        let b = (b & !(0xc000 << 48)) | (0x8000 << 48); // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    fn get(&self, class: Class, r: &str) -> Result<&Record, ActionError> {
        uuid_of(r)
            .and_then(|u| self.recs.get(&(class, u.to_string())))
            .ok_or_else(|| ActionError::HandleInvalid {
                class,
                r: r.to_string(),
            })
    }

    fn vm(&self, r: &str) -> Result<&VmRecord, ActionError> {
        match self.get(Class::Vm, r)? {
            Record::Vm(v) => Ok(v),
            _ => Err(ActionError::HandleInvalid {
                class: Class::Vm,
                r: r.to_string(),
            }),
        }
    }

    fn emit(&mut self, class: Class, r: Ref, operation: EventOp, cap: usize) {
        self.last_id += 1;
        let snapshot = match operation {
            EventOp::Del => None,
            _ => uuid_of(&r).and_then(|u| self.recs.get(&(class, u.to_string())).cloned()),
        };
        self.events.push_back(Event {
            id: self.last_id,
            class,
            operation,
            r,
            snapshot,
        });
        while self.events.len() > cap {
            self.events.pop_front();
        }
    }

    fn resident_vms(&self) -> Vec<Ref> {
        self.by_dom.values().map(|u| ref_of(u)).collect()
    }

    /// A record as the API shows it (computed fields filled in).
    fn view(&self, rec: &Record) -> Record {
        match rec {
            Record::Vm(v) => {
                let mut v = v.clone();
                let busy = self.rt.get(&v.uuid).and_then(|r| r.busy);
                v.allowed_operations = if busy.is_some() {
                    Vec::new()
                } else {
                    lifecycle::allowed_operations(v.power_state, v.is_a_template)
                        .map(|o| o.name().to_string())
                        .collect()
                };
                v.current_operations = busy
                    .map(|o| [(format!("OpaqueRef:task-{}", v.uuid), o.name().to_string())])
                    .into_iter()
                    .flatten()
                    .collect();
                Record::Vm(v)
            }
            Record::Host(h) => {
                let mut h = h.clone();
                h.resident_VMs = self.resident_vms();
                Record::Host(h)
            }
            other => other.clone(),
        }
    }
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
    pub fn new(p: P, xs: S, intro: I, cfg: Config) -> Result<Self, StartError> {
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
        let mut st = State {
            recs: BTreeMap::new(),
            rt: HashMap::new(),
            by_dom: HashMap::new(),
            events: VecDeque::new(),
            // Token 0 means "everything": tokens handed out start at 1.
            last_id: 1,
            rng: seed,
            host_ref: NULL_REF.to_string(),
            tasks: TaskBook::new(cfg.task_limits),
        };
        for r in records {
            st.recs.insert((r.class(), r.uuid().to_string()), r);
        }
        let exc = p.bind_virq(Virq::DomExc)?;
        let inner = Arc::new(Inner {
            p,
            xs,
            intro,
            cfg,
            st: Mutex::new(st),
            changed: Condvar::new(),
            exc,
            stop: AtomicBool::new(false),
            xs_watch: std::sync::OnceLock::new(),
            saved: Mutex::new(HashMap::new()),
        });
        inner.bootstrap()?;
        let weak = Arc::downgrade(&inner);
        let h = std::thread::Builder::new()
            .name("toolstack-domexc".into())
            .spawn(move || watch_dom_exc(weak))
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
        self.inner.lock().host_ref.clone()
    }

    /// The domain of a VM while it has one.
    pub fn domid(&self, vm: &str) -> Option<DomId> {
        let st = self.inner.lock();
        uuid_of(vm).and_then(|u| st.rt.get(u)).and_then(|r| r.domid)
    }

    /// Serves `xenstore.watch` on `conn`, a dom0 store connection used
    /// for nothing else (the toolstack's own connection never carries a
    /// watch). Without one, `xenstore.watch` fails. A second call is
    /// ignored.
    pub fn attach_xs_watch(
        &self,
        conn: impl XenStore + Send + Sync + 'static,
        limits: crate::xsapi::WatchLimits,
    ) -> std::io::Result<()> {
        if self.inner.xs_watch.get().is_none() {
            let hub = crate::xsapi::WatchHub::new(conn, limits)?;
            let _ = self.inner.xs_watch.set(hub);
        }
        Ok(())
    }

    /// The xenstore client the toolstack uses.
    pub fn store(&self) -> &S {
        &self.inner.xs
    }

    /// The newest event id (the token `event.from` would return now).
    pub fn token(&self) -> u64 {
        self.inner.lock().last_id
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

/// The longest the watcher sleeps between checks of its stop flag.
const WATCH_TICK: Duration = Duration::from_millis(200);

fn watch_dom_exc<P, S, I>(weak: Weak<Inner<P, S, I>>)
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        let exc = inner.exc;
        match inner.p.wait(&[exc], Some(WATCH_TICK)) {
            Ok(true) => {
                let _ = inner.p.clear_pending(exc);
                inner.settle_exits();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(?e, "VIRQ_DOM_EXC wait failed; watcher stops");
                return;
            }
        }
    }
}

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a record through and publishes the change.
    fn put(&self, st: &mut State, rec: Record, op: EventOp) -> Result<(), ActionError> {
        db::save(&self.xs, &rec).map_err(internal)?;
        let class = rec.class();
        let r = ref_of(rec.uuid());
        st.recs.insert((class, rec.uuid().to_string()), rec);
        st.emit(class, r, op, self.cfg.event_history);
        self.changed.notify_all();
        Ok(())
    }

    fn put_vm(&self, st: &mut State, vm: VmRecord) -> Result<(), ActionError> {
        self.put(st, Record::Vm(vm), EventOp::Mod)
    }

    fn remove(&self, st: &mut State, class: Class, uuid: &str) -> Result<(), ActionError> {
        db::remove(&self.xs, class, uuid).map_err(internal)?;
        st.recs.remove(&(class, uuid.to_string()));
        st.emit(class, ref_of(uuid), EventOp::Del, self.cfg.event_history);
        self.changed.notify_all();
        Ok(())
    }

    fn bootstrap(&self) -> Result<(), StartError> {
        let mut st = self.lock();
        let host = st.recs.values().find_map(|r| match r {
            Record::Host(h) => Some(h.uuid.clone()),
            _ => None,
        });
        let host = match host {
            Some(h) => h,
            None => {
                let uuid = st.new_uuid();
                let h = HostRecord {
                    uuid: uuid.clone(),
                    name_label: self.cfg.host_name.clone(),
                    hostname: self.cfg.host_name.clone(),
                    ..HostRecord::default()
                };
                let rec = Record::Host(h);
                db::save(&self.xs, &rec)?;
                st.recs.insert((Class::Host, uuid.clone()), rec);
                let pu = st.new_uuid();
                let pool = Record::Pool(PoolRecord {
                    uuid: pu.clone(),
                    master: ref_of(&uuid),
                    default_SR: NULL_REF.into(),
                    ..PoolRecord::default()
                });
                db::save(&self.xs, &pool)?;
                st.recs.insert((Class::Pool, pu), pool);
                if self.cfg.fuzz_template {
                    let tu = st.new_uuid();
                    let t = Record::Vm(VmRecord {
                        uuid: tu.clone(),
                        name_label: FUZZ_TEMPLATE.into(),
                        name_description: "The built-in fuzz-target guest".into(),
                        is_a_template: true,
                        is_default_template: true,
                        PV_kernel: FUZZ_IMAGE.into(),
                        memory_static_max: 16 << 20,
                        memory_dynamic_max: 16 << 20,
                        memory_dynamic_min: 16 << 20,
                        memory_target: 16 << 20,
                        ..VmRecord::default()
                    });
                    db::save(&self.xs, &t)?;
                    st.recs.insert((Class::Vm, tu), t);
                }
                uuid
            }
        };
        st.host_ref = ref_of(&host);
        self.ensure_defaults(&mut st, &host)?;
        // Re-attach VMs whose domain still exists; halt the others.
        let vms: Vec<VmRecord> = st
            .recs
            .values()
            .filter_map(|r| match r {
                Record::Vm(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        for mut v in vms {
            let mut rt = Runtime::default();
            if v.power_state != PowerState::Halted && v.power_state != PowerState::Suspended {
                let alive = u16::try_from(v.domid)
                    .ok()
                    .map(DomId)
                    .and_then(|d| self.p.info(d).ok())
                    .filter(|i| i.handle == uuid_bytes(&v.uuid));
                match alive {
                    Some(i) => {
                        rt.domid = Some(i.domid);
                        st.by_dom.insert(i.domid.0, v.uuid.clone());
                    }
                    None => {
                        tracing::info!(vm = %v.uuid, "domain gone while the toolstack was down");
                        v.power_state = PowerState::Halted;
                        v.domid = -1;
                        v.resident_on = NULL_REF.into();
                        let rec = Record::Vm(v.clone());
                        db::save(&self.xs, &rec)?;
                        st.recs.insert((Class::Vm, v.uuid.clone()), rec);
                    }
                }
            }
            st.rt.insert(v.uuid.clone(), rt);
        }
        drop(st);
        self.forget_dead_domains();
        Ok(())
    }

    /// Releases and removes the xenstore traces of domains that no longer
    /// exist: after a crash of the whole host (or of the toolstack while a
    /// guest died), `/local/domain/<id>` nodes, backend directories and the
    /// store's introduction of a dead domain would otherwise stay forever.
    /// Only ids the platform does not know are touched; dom0 and live
    /// domains (the xenstore domain, re-attached guests) are left alone.
    fn forget_dead_domains(&self) {
        let ids = match self.xs.directory(TxId::NONE, "/local/domain") {
            Ok(ids) => ids,
            Err(ClientError::Store(Errno::ENOENT)) => return,
            Err(e) => {
                tracing::warn!(?e, "cannot list /local/domain");
                return;
            }
        };
        for d in ids.iter().filter_map(|n| n.parse::<u16>().ok()).map(DomId) {
            if d == DomId::DOM0 || self.p.info(d).is_ok() {
                continue;
            }
            tracing::info!(dom = d.0, "forgetting a domain that no longer exists");
            if let Err(e) = self.intro.release(d) {
                tracing::debug!(dom = d.0, ?e, "release of a dead domain");
            }
            if let Err(e) = in_transaction(&self.xs, |t| self.remove_domain_nodes(t, d)) {
                tracing::warn!(dom = d.0, ?e, "cannot remove a dead domain's nodes");
            }
        }
    }

    fn handle(&self, action: Action) -> ActionResult {
        use Action as A;
        match action {
            A::Create(new) => self.create(new),
            A::Destroy { class, r } => self.destroy(class, &r),
            A::GetRecord { class, r } => {
                let st = self.lock();
                let rec = st.get(class, &r)?;
                Ok(Reply::Record(st.view(rec)))
            }
            A::GetAll { class } => {
                let st = self.lock();
                Ok(Reply::Refs(
                    st.recs
                        .range((class, String::new())..)
                        .take_while(|((c, _), _)| *c == class)
                        .map(|((_, u), _)| ref_of(u))
                        .collect(),
                ))
            }
            A::GetAllRecords { class } => {
                let st = self.lock();
                Ok(Reply::Records(
                    st.recs
                        .range((class, String::new())..)
                        .take_while(|((c, _), _)| *c == class)
                        .map(|((_, u), r)| (ref_of(u), st.view(r)))
                        .collect(),
                ))
            }
            A::GetByUuid { class, uuid } => {
                let st = self.lock();
                if st.recs.contains_key(&(class, uuid.clone())) {
                    Ok(Reply::Ref(ref_of(&uuid)))
                } else {
                    Err(ActionError::UuidInvalid { class, uuid })
                }
            }
            A::GetByNameLabel { class, label } => {
                let st = self.lock();
                Ok(Reply::Refs(
                    st.recs
                        .range((class, String::new())..)
                        .take_while(|((c, _), _)| *c == class)
                        .filter(|(_, r)| r.name_label() == Some(label.as_str()))
                        .map(|((_, u), _)| ref_of(u))
                        .collect(),
                ))
            }
            A::SetNameLabel { class, r, value } => self.edit(class, &r, |rec| {
                set_name(rec, Some(value), None);
                Ok(())
            }),
            A::SetNameDescription { class, r, value } => self.edit(class, &r, |rec| {
                set_name(rec, None, Some(value));
                Ok(())
            }),
            A::SetOtherConfig { class, r, value } => self.edit(class, &r, |rec| {
                *rec.other_config_mut() = value;
                Ok(())
            }),
            A::AddToOtherConfig {
                class,
                r,
                key,
                value,
            } => {
                let r2 = r.clone();
                self.edit(class, &r, move |rec| {
                    let m = rec.other_config_mut();
                    if m.contains_key(&key) {
                        return Err(ActionError::MapDuplicateKey {
                            class,
                            field: "other_config".into(),
                            r: r2,
                            key,
                        });
                    }
                    m.insert(key, value);
                    Ok(())
                })
            }
            A::RemoveFromOtherConfig { class, r, key } => self.edit(class, &r, |rec| {
                rec.other_config_mut().remove(&key);
                Ok(())
            }),
            A::VmClone { vm, new_name } => self.clone_vm(&vm, new_name),
            A::VmProvision { vm } => self.edit_vm(&vm, None, |v| {
                v.is_a_template = false;
                v.is_default_template = false;
                Ok(())
            }),
            A::VmStart {
                vm, start_paused, ..
            } => self.start(&vm, Op::Start, start_paused),
            A::VmResume {
                vm, start_paused, ..
            } => self.start(&vm, Op::Resume, start_paused),
            A::VmPause { vm } => self.pause(&vm, true),
            A::VmUnpause { vm } => self.pause(&vm, false),
            A::VmHardShutdown { vm } => self.hard_shutdown(&vm),
            A::VmHardReboot { vm } => self.hard_reboot(&vm),
            A::VmCleanShutdown { vm } => self.clean(&vm, Op::CleanShutdown, false),
            A::VmShutdown { vm } => self.clean(&vm, Op::CleanShutdown, true),
            A::VmCleanReboot { vm } => self.clean(&vm, Op::CleanReboot, false),
            A::VmSuspend { vm } => self.clean(&vm, Op::Suspend, false),
            A::VmSetMemoryLimits {
                vm,
                static_min,
                static_max,
                dynamic_min,
                dynamic_max,
            } => self.set_memory(&vm, static_min, static_max, dynamic_min, dynamic_max),
            A::VmSetMemory { vm, value } => self.set_memory(&vm, 0, value, value, value),
            A::VmSetVcpusMax { vm, value } => {
                if value < 1 {
                    return Err(bad_value("VCPUs_max", value, "must be at least 1"));
                }
                self.edit_vm(&vm, Some(Op::SetStatic), move |v| {
                    v.VCPUs_max = value;
                    v.VCPUs_at_startup = v.VCPUs_at_startup.min(value);
                    Ok(())
                })
            }
            A::VmSetVcpusAtStartup { vm, value } => self.edit_vm(&vm, None, move |v| {
                if value < 1 || value > v.VCPUs_max {
                    return Err(bad_value(
                        "VCPUs_at_startup",
                        value,
                        "must be between 1 and VCPUs_max",
                    ));
                }
                v.VCPUs_at_startup = value;
                Ok(())
            }),
            A::SrCreate {
                host,
                device_config,
                spec,
            } => self.sr_create(&host, device_config, spec),
            A::SrIntroduce { spec } => self.sr_introduce(spec),
            A::SrForget { sr } => self.sr_drop(&sr, false),
            A::PbdPlug { pbd } => self.pbd_plug(&pbd, true),
            A::PbdUnplug { pbd } => self.pbd_plug(&pbd, false),
            A::TaskCreate { label, description } => self.task_create(label, description),
            A::TaskFinish { task, outcome } => self.task_finish(&task, outcome),
            A::TaskCancel { task } => {
                let st = self.lock();
                let t = task_of(&st, &task)?;
                st.tasks.cancel(&t)?;
                Ok(Reply::Unit)
            }
            A::EventFrom {
                classes,
                token,
                timeout,
            } => self.event_from(&classes, token, timeout),
            A::XsRead { path } => crate::xsapi::read(&self.xs, &path),
            A::XsWrite { path, value } => crate::xsapi::write(&self.xs, &path, &value),
            A::XsDirectory { path } => crate::xsapi::directory(&self.xs, &path),
            A::XsRm { path } => crate::xsapi::rm(&self.xs, &path),
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
        }
    }

    fn xs_hub(&self) -> Result<&crate::xsapi::WatchHub, ActionError> {
        self.xs_watch
            .get()
            .ok_or_else(|| ActionError::internal("xenstore watches are not served on this host"))
    }

    fn edit(
        &self,
        class: Class,
        r: &str,
        f: impl FnOnce(&mut Record) -> Result<(), ActionError>,
    ) -> ActionResult {
        let mut st = self.lock();
        let mut rec = st.get(class, r)?.clone();
        f(&mut rec)?;
        self.put(&mut st, rec, EventOp::Mod)?;
        Ok(Reply::Unit)
    }

    fn edit_vm(
        &self,
        r: &str,
        op: Option<Op>,
        f: impl FnOnce(&mut VmRecord) -> Result<(), ActionError>,
    ) -> ActionResult {
        let mut st = self.lock();
        let mut v = st.vm(r)?.clone();
        if let Some(op) = op {
            check(&st, &v, r, op)?;
        }
        f(&mut v)?;
        self.put_vm(&mut st, v)?;
        Ok(Reply::Unit)
    }

    fn set_memory(&self, r: &str, smin: i64, smax: i64, dmin: i64, dmax: i64) -> ActionResult {
        if !(0 <= smin && smin <= dmin && dmin <= dmax && dmax <= smax) {
            return Err(ActionError::MemoryConstraintViolation {
                static_min: smin,
                dynamic_min: dmin,
                dynamic_max: dmax,
                static_max: smax,
            });
        }
        self.edit_vm(r, Some(Op::SetStatic), move |v| {
            v.memory_static_min = smin;
            v.memory_static_max = smax;
            v.memory_dynamic_min = dmin;
            v.memory_dynamic_max = dmax;
            v.memory_target = dmax;
            Ok(())
        })
    }

    fn create(&self, new: NewRecord) -> ActionResult {
        let mut st = self.lock();
        let uuid = st.new_uuid();
        let r = ref_of(&uuid);
        let rec = match new {
            NewRecord::Vm(mut v) => {
                v.uuid = uuid.clone();
                v.power_state = PowerState::Halted;
                v.domid = -1;
                v.resident_on = NULL_REF.into();
                v.VIFs.clear();
                v.VBDs.clear();
                v.allowed_operations.clear();
                v.current_operations.clear();
                st.rt.insert(uuid.clone(), Runtime::default());
                Record::Vm(v)
            }
            NewRecord::Network(mut n) => {
                n.uuid = uuid.clone();
                n.VIFs.clear();
                n.PIFs.clear();
                if n.bridge.is_empty() {
                    n.bridge = format!(
                        "xenbr{}",
                        st.recs.keys().filter(|k| k.0 == Class::Network).count()
                    );
                }
                Record::Network(n)
            }
            NewRecord::Sr(mut s) => {
                s.uuid = uuid.clone();
                s.VDIs.clear();
                Record::Sr(s)
            }
            NewRecord::Vdi(mut d) => {
                d.uuid = uuid.clone();
                d.VBDs.clear();
                let sr = st.get(Class::Sr, &d.SR)?.clone();
                if let Record::Sr(mut s) = sr {
                    s.VDIs.push(r.clone());
                    s.virtual_allocation += d.virtual_size;
                    self.put(&mut st, Record::Sr(s), EventOp::Mod)?;
                }
                Record::Vdi(d)
            }
            NewRecord::Vif(mut f) => {
                f.uuid = uuid.clone();
                f.currently_attached = false;
                let mut vm = st.vm(&f.vm)?.clone();
                check(&st, &vm, &f.vm, Op::SetStatic)?;
                let net = st.get(Class::Network, &f.network)?.clone();
                if f.device.parse::<u32>().is_err() {
                    return Err(ActionError::ValueNotSupported {
                        field: "device".into(),
                        value: f.device,
                        reason: "must be a number".into(),
                    });
                }
                if f.MAC.is_empty() {
                    let x = splitmix(&mut st.rng);
                    f.MAC = format!(
                        "00:16:3e:{:02x}:{:02x}:{:02x}",
                        (x >> 16) & 0x7f,
                        (x >> 8) & 0xff,
                        x & 0xff
                    );
                }
                vm.VIFs.push(r.clone());
                self.put_vm(&mut st, vm)?;
                if let Record::Network(mut n) = net {
                    n.VIFs.push(r.clone());
                    self.put(&mut st, Record::Network(n), EventOp::Mod)?;
                }
                Record::Vif(f)
            }
            NewRecord::Vbd(mut b) => {
                b.uuid = uuid.clone();
                b.currently_attached = false;
                let mut vm = st.vm(&b.vm)?.clone();
                check(&st, &vm, &b.vm, Op::SetStatic)?;
                if b.userdevice.parse::<u32>().is_err() {
                    return Err(ActionError::ValueNotSupported {
                        field: "userdevice".into(),
                        value: b.userdevice,
                        reason: "must be a number".into(),
                    });
                }
                if b.VDI != NULL_REF {
                    if let Record::Vdi(mut d) = st.get(Class::Vdi, &b.VDI)?.clone() {
                        d.VBDs.push(r.clone());
                        self.put(&mut st, Record::Vdi(d), EventOp::Mod)?;
                    }
                } else {
                    b.empty = true;
                }
                vm.VBDs.push(r.clone());
                self.put_vm(&mut st, vm)?;
                Record::Vbd(b)
            }
        };
        self.put(&mut st, rec, EventOp::Add)?;
        Ok(Reply::Ref(r))
    }

    fn destroy(&self, class: Class, r: &str) -> ActionResult {
        let mut st = self.lock();
        let rec = st.get(class, r)?.clone();
        match rec {
            Record::Vm(v) => {
                check(&st, &v, r, Op::Destroy)?;
                for dev in v.VIFs.iter().chain(&v.VBDs) {
                    for c in [Class::Vif, Class::Vbd] {
                        if st.get(c, dev).is_ok() {
                            self.unlink_device(&mut st, c, dev)?;
                            self.remove(&mut st, c, uuid_of(dev).unwrap_or_default())?;
                        }
                    }
                }
                st.rt.remove(&v.uuid);
                self.images().remove(&v.uuid);
                self.remove(&mut st, Class::Vm, &v.uuid)?;
            }
            Record::Host(_) | Record::Pool(_) | Record::Pbd(_) | Record::Pif(_) => {
                return Err(ActionError::MethodUnknown {
                    class,
                    method: "destroy",
                })
            }
            Record::Task(mut t) => match st.tasks.destroy(&mut t) {
                task::Destroy::Now => self.remove(&mut st, class, &t.uuid)?,
                task::Destroy::WhenFinished => self.put(&mut st, Record::Task(t), EventOp::Mod)?,
            },
            Record::Vif(_) | Record::Vbd(_) => {
                if let Some(vm) = device_vm(&rec) {
                    if let Ok(v) = st.vm(&vm) {
                        let v = v.clone();
                        check(&st, &v, &vm, Op::SetStatic)?;
                    }
                }
                self.unlink_device(&mut st, class, r)?;
                self.remove(&mut st, class, rec.uuid())?;
            }
            Record::Vdi(d) => {
                if !d.VBDs.is_empty() {
                    return Err(ActionError::HasDependents {
                        class,
                        r: r.to_string(),
                        dependents: Class::Vbd,
                    });
                }
                if let Ok(Record::Sr(s)) = st.get(Class::Sr, &d.SR).cloned() {
                    let mut s = s;
                    s.VDIs.retain(|x| x != r);
                    s.virtual_allocation -= d.virtual_size;
                    self.put(&mut st, Record::Sr(s), EventOp::Mod)?;
                }
                self.remove(&mut st, class, &d.uuid)?;
            }
            Record::Sr(_) => {
                drop(st);
                return self.sr_drop(r, true);
            }
            Record::Network(n) => {
                if !n.PIFs.is_empty() {
                    return Err(ActionError::NetworkContainsPif { pifs: n.PIFs });
                }
                if !n.VIFs.is_empty() {
                    return Err(ActionError::HasDependents {
                        class,
                        r: r.to_string(),
                        dependents: Class::Vif,
                    });
                }
                self.remove(&mut st, class, &n.uuid)?;
            }
        }
        Ok(Reply::Unit)
    }

    /// Drops a VIF/VBD ref from its VM and network/VDI.
    fn unlink_device(&self, st: &mut State, class: Class, r: &str) -> Result<(), ActionError> {
        let rec = st.get(class, r)?.clone();
        if let Some(vm) = device_vm(&rec) {
            if let Ok(v) = st.vm(&vm) {
                let mut v = v.clone();
                v.VIFs.retain(|x| x != r);
                v.VBDs.retain(|x| x != r);
                self.put_vm(st, v)?;
            }
        }
        match rec {
            Record::Vif(f) => {
                if let Ok(Record::Network(mut n)) = st.get(Class::Network, &f.network).cloned() {
                    n.VIFs.retain(|x| x != r);
                    self.put(st, Record::Network(n), EventOp::Mod)?;
                }
            }
            Record::Vbd(b) => {
                if let Ok(Record::Vdi(mut d)) = st.get(Class::Vdi, &b.VDI).cloned() {
                    d.VBDs.retain(|x| x != r);
                    self.put(st, Record::Vdi(d), EventOp::Mod)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn clone_vm(&self, r: &str, new_name: String) -> ActionResult {
        let mut st = self.lock();
        let src = st.vm(r)?.clone();
        check(&st, &src, r, Op::Clone)?;
        let uuid = st.new_uuid();
        let v = VmRecord {
            uuid: uuid.clone(),
            name_label: new_name,
            power_state: PowerState::Halted,
            domid: -1,
            resident_on: NULL_REF.into(),
            is_default_template: false,
            parent: r.to_string(),
            VIFs: Vec::new(),
            VBDs: Vec::new(),
            last_shutdown_reason: String::new(),
            ..src
        };
        st.rt.insert(uuid.clone(), Runtime::default());
        self.put(&mut st, Record::Vm(v), EventOp::Add)?;
        Ok(Reply::Ref(ref_of(&uuid)))
    }

    fn start(&self, r: &str, op: Op, paused: bool) -> ActionResult {
        let mut st = self.lock();
        let mut v = st.vm(r)?.clone();
        check(&st, &v, r, op)?;
        let d = if op == Op::Resume {
            self.restore(&mut st, &v)?
        } else {
            self.boot(&mut st, &v)?
        };
        if !paused {
            if let Err(e) = self.p.unpause(d) {
                self.teardown(&mut st, &v.uuid, d);
                return Err(internal(e));
            }
        }
        v.power_state = lifecycle::target(op, v.power_state, paused);
        v.domid = i64::from(d.0);
        v.resident_on = st.host_ref.clone();
        self.put_vm(&mut st, v)?;
        Ok(Reply::Unit)
    }

    /// Creates, builds and plumbs a domain for `v`, leaving it paused.
    fn boot(&self, st: &mut State, v: &VmRecord) -> Result<DomId, ActionError> {
        let vm_ref = ref_of(&v.uuid);
        let cfg = CreateConfig {
            handle: uuid_bytes(&v.uuid),
            max_vcpus: u32::try_from(v.VCPUs_max.max(1)).unwrap_or(1),
            max_mem_kib: u64::try_from(v.memory_static_max / 1024)
                .unwrap_or(0)
                .max(64),
            ..CreateConfig::default()
        };
        let d = self.p.create(&cfg).map_err(|e| match e {
            xen::platform::Error::Errno(Errno::ENOMEM) => ActionError::HostNotEnoughFreeMemory {
                needed: v.memory_static_max,
                available: 0,
            },
            e => internal(e),
        })?;
        let image = DomainImage {
            kernel: v.PV_kernel.as_bytes(),
            cmdline: &v.PV_args,
            xenstore_domid: self.cfg.xenstore_domid,
            console_domid: DomId::DOM0,
        };
        let built = match self.p.build(d, &image) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.p.destroy(d);
                return Err(match e {
                    xen::platform::Error::Errno(Errno::ENOEXEC) => ActionError::BootloaderFailed {
                        vm: vm_ref,
                        kernel: v.PV_kernel.clone(),
                    },
                    e => internal(e),
                });
            }
        };
        self.attach(st, v, d, Some(built))?;
        Ok(d)
    }

    /// Makes `d` the domain of `v`: runtime state, its xenstore nodes and
    /// devices, and its introduction to xenstore (if it has a ring). On
    /// failure the domain is torn down.
    fn attach(
        &self,
        st: &mut State,
        v: &VmRecord,
        d: DomId,
        rings: Option<BuiltDomain>,
    ) -> Result<(), ActionError> {
        st.by_dom.insert(d.0, v.uuid.clone());
        st.rt.entry(v.uuid.clone()).or_default().domid = Some(d);
        let plumb = || -> Result<(), ClientError> {
            self.write_domain_nodes(st, v, d)?;
            if let Some(b) = rings {
                self.intro.introduce(d, b.store_gfn, b.store_port)?;
            }
            Ok(())
        };
        if let Err(e) = plumb() {
            self.teardown(st, &v.uuid, d);
            return Err(internal(e));
        }
        Ok(())
    }

    /// Restores `v`'s saved image into a new domain, plumbed as at start
    /// and left paused. Without an image (lost with a toolstack restart,
    /// or never saved) it fails as XAPI does for a VM whose suspend VDI is
    /// gone.
    fn restore(&self, st: &mut State, v: &VmRecord) -> Result<DomId, ActionError> {
        let img = self.images().remove(&v.uuid).ok_or_else(|| {
            tracing::warn!(vm = %v.uuid, "resume: no saved image");
            ActionError::HandleInvalid {
                class: Class::Vdi,
                r: NULL_REF.into(),
            }
        })?;
        let target = RestoreTarget {
            xenstore_domid: self.cfg.xenstore_domid,
            console_domid: DomId::DOM0,
        };
        let restored = self.p.restore(img, &target).map_err(|e| match e {
            xen::platform::Error::Errno(Errno::ENOMEM) => ActionError::HostNotEnoughFreeMemory {
                needed: v.memory_static_max,
                available: 0,
            },
            e => internal(e),
        })?;
        let d = restored.domid;
        self.attach(st, v, d, restored.rings)?;
        Ok(d)
    }

    fn images(&self) -> MutexGuard<'_, HashMap<String, P::Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `/local/domain/<d>`: runtime nodes with the guest's permissions, and
    /// every device in the standard frontend/backend layout.
    ///
    /// All in one transaction: one commit, so a persistent store syncs its
    /// log once per start instead of once per node, and no client ever sees
    /// a half-written domain.
    fn write_domain_nodes(&self, st: &State, v: &VmRecord, d: DomId) -> Result<(), ClientError> {
        in_transaction(&self.xs, |t| self.domain_nodes(t, st, v, d))
    }

    fn domain_nodes(
        &self,
        tx: TxId,
        st: &State,
        v: &VmRecord,
        d: DomId,
    ) -> Result<(), ClientError> {
        let xs = &self.xs;
        let base = layout::domain(d);
        let ro = [perm(DomId::DOM0, Access::None), perm(d, Access::Read)];
        let owned = [perm(d, Access::None)];
        xs.write(tx, &base, b"")?;
        xs.set_perms(tx, &base, &ro)?;
        xs.write(tx, &format!("{base}/domid"), d.0.to_string().as_bytes())?;
        xs.write(tx, &format!("{base}/name"), v.name_label.as_bytes())?;
        xs.write(
            tx,
            &format!("{base}/vm"),
            layout::record(Class::Vm, &v.uuid).as_bytes(),
        )?;
        let sd = format!("{base}/control/shutdown");
        xs.write(tx, &sd, b"")?;
        xs.set_perms(tx, &sd, &owned)?;
        let data = format!("{base}/data");
        xs.write(tx, &data, b"")?;
        xs.set_perms(tx, &data, &owned)?;
        if let Some(m) = v.other_config.get("misbehave") {
            xs.write(tx, &format!("{base}/control/misbehave"), m.as_bytes())?;
        }
        for (k, val) in &v.xenstore_data {
            if k.starts_with("vm-data") || k.starts_with("FIST") {
                xs.write(tx, &format!("{base}/{k}"), val.as_bytes())?;
            }
        }
        for r in &v.VIFs {
            let Ok(Record::Vif(f)) = st.get(Class::Vif, r) else {
                continue;
            };
            let n: u32 = f.device.parse().unwrap_or(0);
            let bridge = match st.get(Class::Network, &f.network) {
                Ok(Record::Network(net)) => net.bridge.clone(),
                _ => String::new(),
            };
            self.plumb(
                tx,
                d,
                DeviceKind::Vif,
                n,
                &[("handle", n.to_string()), ("mac", f.MAC.clone())],
                &[
                    ("handle", n.to_string()),
                    ("mac", f.MAC.clone()),
                    ("bridge", bridge),
                    ("mtu", f.MTU.to_string()),
                ],
            )?;
        }
        for r in &v.VBDs {
            let Ok(Record::Vbd(b)) = st.get(Class::Vbd, r) else {
                continue;
            };
            let n = layout::xvd_number(b.userdevice.parse().unwrap_or(0));
            let params = match st.get(Class::Vdi, &b.VDI) {
                Ok(Record::Vdi(vdi)) => vdi.sm_config.get("path").cloned().unwrap_or_default(),
                _ => String::new(),
            };
            let dtype = if b.ty == "CD" { "cdrom" } else { "disk" };
            let mode = if b.mode == "RO" { "r" } else { "w" };
            self.plumb(
                tx,
                d,
                DeviceKind::Vbd,
                n,
                &[
                    ("virtual-device", n.to_string()),
                    ("device-type", dtype.into()),
                ],
                &[
                    ("params", params),
                    ("mode", mode.into()),
                    ("type", "file".into()),
                    ("device-type", dtype.into()),
                ],
            )?;
        }
        Ok(())
    }

    /// Writes one device's frontend and backend directories, each end
    /// owned by its domain and readable by the other, both `Initialising`.
    fn plumb(
        &self,
        tx: TxId,
        d: DomId,
        kind: DeviceKind,
        n: u32,
        fe_extra: &[(&str, String)],
        be_extra: &[(&str, String)],
    ) -> Result<(), ClientError> {
        let xs = &self.xs;
        let bd = self.cfg.backend_domid;
        let fe = layout::frontend(d, kind, n);
        let be = layout::backend(bd, kind, d, n);
        xs.write(tx, &fe, b"")?;
        xs.set_perms(tx, &fe, &[perm(d, Access::None), perm(bd, Access::Read)])?;
        xs.write(tx, &be, b"")?;
        xs.set_perms(tx, &be, &[perm(bd, Access::None), perm(d, Access::Read)])?;
        let init = layout::initial_state();
        let mut fe_nodes = vec![
            ("backend", be.clone()),
            ("backend-id", bd.0.to_string()),
            ("state", init.into()),
        ];
        fe_nodes.extend(fe_extra.iter().map(|(k, v)| (*k, v.clone())));
        let mut be_nodes = vec![
            ("frontend", fe.clone()),
            ("frontend-id", d.0.to_string()),
            ("online", "1".into()),
            ("state", init.into()),
        ];
        be_nodes.extend(be_extra.iter().map(|(k, v)| (*k, v.clone())));
        for (k, v) in fe_nodes {
            xs.write(tx, &format!("{fe}/{k}"), v.as_bytes())?;
        }
        for (k, v) in be_nodes {
            xs.write(tx, &format!("{be}/{k}"), v.as_bytes())?;
        }
        Ok(())
    }

    /// Destroys domain `d` of VM `uuid` and removes every trace of it:
    /// the xenstore connection and nodes (its own, its backends') and the
    /// runtime entry.
    fn teardown(&self, st: &mut State, uuid: &str, d: DomId) {
        match self.p.destroy(d) {
            Ok(()) | Err(xen::platform::Error::Errno(Errno::ESRCH)) => {}
            Err(e) => tracing::warn!(dom = d.0, ?e, "destroy failed"),
        }
        if let Err(e) = self.intro.release(d) {
            tracing::warn!(dom = d.0, ?e, "xenstore release failed");
        }
        if let Err(e) = in_transaction(&self.xs, |t| self.remove_domain_nodes(t, d)) {
            tracing::warn!(dom = d.0, ?e, "cannot remove the domain's nodes");
        }
        st.by_dom.remove(&d.0);
        if let Some(rt) = st.rt.get_mut(uuid) {
            if rt.domid == Some(d) {
                rt.domid = None;
            }
        }
    }

    /// Removes `/local/domain/<d>` and `d`'s backend directories (each may
    /// be missing).
    fn remove_domain_nodes(&self, t: TxId, d: DomId) -> Result<(), ClientError> {
        let mut dirs = vec![layout::domain(d)];
        for kind in [DeviceKind::Vif, DeviceKind::Vbd] {
            dirs.push(layout::backend_guest_dir(self.cfg.backend_domid, kind, d));
        }
        for dir in dirs {
            match self.xs.rm(t, &dir) {
                Ok(()) | Err(ClientError::Store(Errno::ENOENT)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn halt(
        &self,
        st: &mut State,
        mut v: VmRecord,
        state: PowerState,
        why: &str,
    ) -> Result<(), ActionError> {
        v.power_state = state;
        v.domid = -1;
        v.resident_on = NULL_REF.into();
        v.last_shutdown_reason = why.into();
        self.put_vm(st, v)
    }

    fn pause(&self, r: &str, pause: bool) -> ActionResult {
        let mut st = self.lock();
        let mut v = st.vm(r)?.clone();
        let op = if pause { Op::Pause } else { Op::Unpause };
        check(&st, &v, r, op)?;
        let d = st
            .rt
            .get(&v.uuid)
            .and_then(|x| x.domid)
            .ok_or_else(|| internal("no domain"))?;
        if pause {
            self.p.pause(d)
        } else {
            self.p.unpause(d)
        }
        .map_err(internal)?;
        v.power_state = lifecycle::target(op, v.power_state, false);
        self.put_vm(&mut st, v)?;
        Ok(Reply::Unit)
    }

    fn hard_shutdown(&self, r: &str) -> ActionResult {
        let mut st = self.lock();
        let v = st.vm(r)?.clone();
        check(&st, &v, r, Op::HardShutdown)?;
        if let Some(d) = st.rt.get(&v.uuid).and_then(|x| x.domid) {
            self.teardown(&mut st, &v.uuid, d);
        }
        // From Suspended: the saved image is discarded (its guest thread
        // ends), after the state lock is released.
        let discarded = self.images().remove(&v.uuid);
        self.halt(&mut st, v, PowerState::Halted, "halted")?;
        drop(st);
        drop(discarded);
        Ok(Reply::Unit)
    }

    fn hard_reboot(&self, r: &str) -> ActionResult {
        let mut st = self.lock();
        let mut v = st.vm(r)?.clone();
        check(&st, &v, r, Op::HardReboot)?;
        if let Some(d) = st.rt.get(&v.uuid).and_then(|x| x.domid) {
            self.teardown(&mut st, &v.uuid, d);
        }
        match self.boot(&mut st, &v).and_then(|d| {
            self.p.unpause(d).map_err(internal)?;
            Ok(d)
        }) {
            Ok(d) => {
                v.power_state = PowerState::Running;
                v.domid = i64::from(d.0);
                v.last_shutdown_reason = "reboot".into();
                self.put_vm(&mut st, v)?;
                Ok(Reply::Unit)
            }
            Err(e) => {
                self.halt(&mut st, v, PowerState::Halted, "halted")?;
                Err(e)
            }
        }
    }

    /// Clean shutdown, reboot or suspend: ask the guest through
    /// `control/shutdown`, wait for the watcher to settle its exit.
    fn clean(&self, r: &str, op: Op, fallback: bool) -> ActionResult {
        let (uuid, d) = {
            let mut st = self.lock();
            let v = st.vm(r)?.clone();
            check(&st, &v, r, op)?;
            let d = st
                .rt
                .get(&v.uuid)
                .and_then(|x| x.domid)
                .ok_or_else(|| internal("no domain"))?;
            let word = match op {
                Op::CleanReboot => "reboot",
                Op::Suspend => "suspend",
                _ => "poweroff",
            };
            let node = format!("{}/control/shutdown", layout::domain(d));
            self.xs
                .write(TxId::NONE, &node, word.as_bytes())
                .map_err(internal)?;
            if let Some(rt) = st.rt.get_mut(&v.uuid) {
                rt.busy = Some(op);
            }
            st.emit(
                Class::Vm,
                r.to_string(),
                EventOp::Mod,
                self.cfg.event_history,
            );
            self.changed.notify_all();
            (v.uuid, d)
        };
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        let mut st = self.lock();
        loop {
            let rt = st.rt.get(&uuid);
            if rt.is_none_or(|rt| rt.domid != Some(d)) {
                // Settled by the watcher (or the VM went away).
                let exit = rt.and_then(|rt| rt.last_exit).filter(|(x, _)| *x == d);
                if let Some(rt) = st.rt.get_mut(&uuid) {
                    rt.busy = None;
                }
                let want = match op {
                    Op::CleanReboot => ShutdownReason::Reboot,
                    Op::Suspend => ShutdownReason::Suspend,
                    _ => ShutdownReason::Poweroff,
                };
                let vm = r.to_string();
                return match exit.map(|(_, why)| why) {
                    Some(why) if why == want => Ok(Reply::Unit),
                    Some(ShutdownReason::Crash) | Some(ShutdownReason::Watchdog) => {
                        Err(ActionError::VmCrashed { vm })
                    }
                    Some(ShutdownReason::Reboot) => Err(ActionError::VmRebooted { vm }),
                    Some(_) => Err(ActionError::VmHalted { vm }),
                    // Someone else (hard_shutdown) ended it.
                    None => Ok(Reply::Unit),
                };
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Wake at least every tick: the watcher may be slow to get the lock.
            let wait = (deadline - now).min(WATCH_TICK);
            st = self
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if st.rt.get(&uuid).is_some_and(|rt| rt.domid == Some(d)) {
                // Settle now in case VIRQ_DOM_EXC raced our write.
                if matches!(
                    self.p.info(d).map(|i| i.state),
                    Ok(RunState::Shutdown(_)) | Err(_)
                ) {
                    self.settle_locked(&mut st);
                }
            }
        }
        // Timed out.
        if let Some(rt) = st.rt.get_mut(&uuid) {
            rt.busy = None;
        }
        let node = format!("{}/control/shutdown", layout::domain(d));
        let acked = self
            .xs
            .read(TxId::NONE, &node)
            .map(|v| v.is_empty())
            .unwrap_or(true);
        if fallback {
            drop(st);
            tracing::info!(vm = %uuid, acked, "clean shutdown timed out; hard shutdown");
            return self.hard_shutdown(r);
        }
        st.emit(
            Class::Vm,
            r.to_string(),
            EventOp::Mod,
            self.cfg.event_history,
        );
        self.changed.notify_all();
        if acked {
            Err(ActionError::VmShutdownTimeout {
                vm: r.to_string(),
                timeout: self.cfg.shutdown_timeout,
            })
        } else {
            Err(ActionError::VmFailedShutdownAck { vm: r.to_string() })
        }
    }

    fn settle_exits(&self) {
        if self.lock().by_dom.is_empty() {
            return;
        }
        // List the domains without holding the state lock: with a thousand
        // VMs the scan is the longest thing the watcher does.
        let Some(scan) = self.scan() else { return };
        let mut st = self.lock();
        self.apply_scan(&mut st, &scan);
    }

    /// Finds VMs whose domain shut down (or vanished) and settles them.
    fn settle_locked(&self, st: &mut State) {
        if st.by_dom.is_empty() {
            return;
        }
        if let Some(scan) = self.scan() {
            self.apply_scan(st, &scan);
        }
    }

    /// Every domain's id (in order) and the shut-down ones with their reason.
    fn scan(&self) -> Option<Scan> {
        let mut scan = Scan::default();
        let mut buf = [DomainInfo {
            domid: DomId(0),
            state: RunState::Running,
            handle: [0; 16],
            tot_pages: 0,
            max_mem_kib: 0,
            max_vcpus: 0,
            cpu_time_ns: 0,
            privileged: false,
        }; 128];
        let mut next = DomId(1);
        loop {
            let n = match self.p.list(next, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(?e, "domain list failed");
                    return None;
                }
            };
            for i in &buf[..n] {
                scan.ids.push(i.domid.0);
                if let RunState::Shutdown(why) = i.state {
                    scan.down.push((i.domid.0, why));
                }
            }
            if n < buf.len() {
                return Some(scan);
            }
            next = DomId(buf[n - 1].domid.0 + 1);
        }
    }

    fn apply_scan(&self, st: &mut State, scan: &Scan) {
        let mut exited: Vec<(DomId, String, ShutdownReason)> = scan
            .down
            .iter()
            .filter_map(|(d, why)| st.by_dom.get(d).map(|u| (DomId(*d), u.clone(), *why)))
            .collect();
        // Destroyed behind our back: treat as a crash. (A domain started
        // after the scan is not in it either: ask again before judging.)
        for (&d, u) in &st.by_dom {
            if scan.ids.binary_search(&d).is_err()
                && matches!(
                    self.p.info(DomId(d)),
                    Err(xen::platform::Error::Errno(Errno::ESRCH))
                )
            {
                exited.push((DomId(d), u.clone(), ShutdownReason::Crash));
            }
        }
        for (d, uuid, why) in exited {
            if let Err(e) = self.settle(st, &uuid, d, why) {
                tracing::error!(vm = %uuid, dom = d.0, %e, "settling an exit failed");
            }
        }
    }

    fn settle(
        &self,
        st: &mut State,
        uuid: &str,
        d: DomId,
        why: ShutdownReason,
    ) -> Result<(), ActionError> {
        let r = ref_of(uuid);
        let v = st.vm(&r)?.clone();
        let busy = st.rt.get(uuid).and_then(|x| x.busy);
        let after = match (busy, why) {
            (Some(Op::CleanShutdown), ShutdownReason::Poweroff) => AfterExit::Halt,
            (Some(Op::CleanReboot), ShutdownReason::Reboot) => AfterExit::Restart,
            _ => lifecycle::after_exit(
                why,
                &v.actions_after_shutdown,
                &v.actions_after_reboot,
                &v.actions_after_crash,
            ),
        };
        tracing::info!(vm = %uuid, dom = d.0, ?why, ?after, "domain exited");
        if after == AfterExit::Suspend {
            match self.p.save(d) {
                Ok(img) => {
                    // A stale image (none is expected) is replaced.
                    self.images().insert(uuid.to_string(), img);
                }
                Err(e) => {
                    tracing::warn!(vm = %uuid, dom = d.0, ?e, "save failed: suspended without an image");
                }
            }
        }
        self.teardown(st, uuid, d);
        if let Some(rt) = st.rt.get_mut(uuid) {
            rt.last_exit = Some((d, why));
        }
        let word = lifecycle::reason_word(why);
        match after {
            AfterExit::Halt => self.halt(st, v, PowerState::Halted, word),
            AfterExit::Suspend => self.halt(st, v, PowerState::Suspended, word),
            AfterExit::Restart => {
                let booted = self.boot(st, &v).and_then(|nd| {
                    self.p.unpause(nd).map_err(internal)?;
                    Ok(nd)
                });
                match booted {
                    Ok(nd) => {
                        let mut v = v;
                        v.power_state = PowerState::Running;
                        v.domid = i64::from(nd.0);
                        v.last_shutdown_reason = word.into();
                        self.put_vm(st, v)
                    }
                    Err(e) => {
                        tracing::warn!(vm = %uuid, %e, "restart failed; halting");
                        self.halt(st, v, PowerState::Halted, word)
                    }
                }
            }
        }
    }

    fn event_from(&self, classes: &[String], token: u64, timeout: Duration) -> ActionResult {
        let want = |class: Class, r: &str| {
            classes.iter().any(|c| {
                c == "*"
                    || match c.split_once('/') {
                        Some((cl, rf)) => Class::parse(cl) == Some(class) && rf == r,
                        None => Class::parse(c) == Some(class),
                    }
            })
        };
        let mut st = self.lock();
        if token == 0 {
            let events = st
                .recs
                .iter()
                .filter(|((c, u), _)| want(*c, &ref_of(u)))
                .map(|((c, u), rec)| Event {
                    id: st.last_id,
                    class: *c,
                    operation: EventOp::Add,
                    r: ref_of(u),
                    snapshot: Some(st.view(rec)),
                })
                .collect();
            return Ok(Reply::Events(EventBatch {
                events,
                token: st.last_id,
            }));
        }
        if token > st.last_id {
            return Err(ActionError::EventsLost);
        }
        if st.events.front().is_some_and(|e| e.id > token + 1) {
            return Err(ActionError::EventsLost);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let start = st.events.partition_point(|e| e.id <= token);
            // The newest event per object; `add` if the object is new
            // since the token (and still there).
            let mut latest: BTreeMap<(Class, Ref), (&Event, bool)> = BTreeMap::new();
            for e in st.events.range(start..) {
                if want(e.class, &e.r) {
                    let added = e.operation == EventOp::Add
                        || latest.get(&(e.class, e.r.clone())).is_some_and(|x| x.1);
                    latest.insert((e.class, e.r.clone()), (e, added));
                }
            }
            let now = Instant::now();
            if !latest.is_empty() || now >= deadline {
                let mut events: Vec<Event> = latest
                    .into_values()
                    .map(|(e, added)| Event {
                        snapshot: e.snapshot.as_ref().map(|s| st.view(s)),
                        operation: if added && e.operation != EventOp::Del {
                            EventOp::Add
                        } else {
                            e.operation
                        },
                        ..e.clone()
                    })
                    .collect();
                events.sort_by_key(|e| e.id);
                return Ok(Reply::Events(EventBatch {
                    events,
                    token: st.last_id,
                }));
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Storage, network defaults and tasks: the records XAPI has besides VMs.
impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    /// Writes a record at start (no event: no client is connected yet).
    fn store(&self, st: &mut State, rec: Record) -> Result<(), db::DbError> {
        db::save(&self.xs, &rec)?;
        st.recs.insert((rec.class(), rec.uuid().to_string()), rec);
        Ok(())
    }

    /// The records XAPI has from its first start: the host's local SR with
    /// a plugged PBD, the pool-wide network with the host's PIF on it, and
    /// the pool's default, suspend-image and crash-dump SRs pointing at the
    /// local SR.
    ///
    /// Runs at every start, so a pool database from an older Windsor (host
    /// and pool, no SR) gets them, and a restart adds nothing: the SR is
    /// created only when there is no SR at all, the network only when there
    /// is no network, the PIF only when the host has none (on the network
    /// bridged to `xenbr0`), and a pool SR field is set only when it names
    /// no SR.
    fn ensure_defaults(&self, st: &mut State, host: &str) -> Result<(), db::DbError> {
        let host_ref = ref_of(host);
        let any = |st: &State, c: Class| st.recs.keys().any(|k| k.0 == c);
        if !any(st, Class::Sr) {
            let su = st.new_uuid();
            let pu = st.new_uuid();
            let mut device_config = Map::new();
            device_config.insert("location".into(), "local".into());
            self.store(
                st,
                Record::Pbd(PbdRecord {
                    uuid: pu.clone(),
                    host: host_ref.clone(),
                    SR: ref_of(&su),
                    device_config,
                    currently_attached: true,
                    other_config: Map::new(),
                }),
            )?;
            self.store(
                st,
                Record::Sr(SrRecord {
                    uuid: su.clone(),
                    name_label: LOCAL_SR.into(),
                    name_description: format!("Local storage of {}", self.cfg.host_name),
                    ty: LOCAL_SR_TYPE.into(),
                    content_type: "user".into(),
                    PBDs: vec![ref_of(&pu)],
                    ..SrRecord::default()
                }),
            )?;
            if let Ok(Record::Host(mut h)) = st.get(Class::Host, &host_ref).cloned() {
                h.PBDs.push(ref_of(&pu));
                self.store(st, Record::Host(h))?;
            }
            tracing::info!(sr = %su, "created the local SR");
        }
        if !any(st, Class::Network) {
            let nu = st.new_uuid();
            self.store(
                st,
                Record::Network(NetworkRecord {
                    uuid: nu.clone(),
                    name_label: DEFAULT_NETWORK.into(),
                    bridge: DEFAULT_BRIDGE.into(),
                    ..NetworkRecord::default()
                }),
            )?;
            tracing::info!(network = %nu, "created the default network");
        }
        let has_pif = st
            .recs
            .values()
            .any(|r| matches!(r, Record::Pif(p) if p.host == host_ref));
        let net = st.recs.values().find_map(|r| match r {
            Record::Network(n) if n.bridge == DEFAULT_BRIDGE => Some(n.clone()),
            _ => None,
        });
        if let (false, Some(mut net)) = (has_pif, net) {
            let pu = st.new_uuid();
            let x = splitmix(&mut st.rng);
            self.store(
                st,
                Record::Pif(PifRecord {
                    uuid: pu.clone(),
                    device: DEFAULT_DEVICE.into(),
                    network: ref_of(&net.uuid),
                    host: host_ref.clone(),
                    MAC: format!(
                        "00:16:3e:{:02x}:{:02x}:{:02x}",
                        (x >> 16) & 0x7f,
                        (x >> 8) & 0xff,
                        x & 0xff
                    ),
                    MTU: net.MTU,
                    currently_attached: true,
                    management: true,
                    ..PifRecord::default()
                }),
            )?;
            net.PIFs.push(ref_of(&pu));
            self.store(st, Record::Network(net))?;
            if let Ok(Record::Host(mut h)) = st.get(Class::Host, &host_ref).cloned() {
                h.PIFs.push(ref_of(&pu));
                self.store(st, Record::Host(h))?;
            }
        }
        // The local SR: one with a PBD to this host, else any.
        let local = st
            .recs
            .values()
            .find_map(|r| match r {
                Record::Pbd(p) if p.host == host_ref => Some(p.SR.clone()),
                _ => None,
            })
            .filter(|sr| st.get(Class::Sr, sr).is_ok())
            .or_else(|| {
                st.recs
                    .keys()
                    .find(|k| k.0 == Class::Sr)
                    .map(|k| ref_of(&k.1))
            });
        let Some(local) = local else { return Ok(()) };
        for mut p in st.pools() {
            let before = p.clone();
            for f in p.sr_fields_mut() {
                if st.get(Class::Sr, f).is_err() {
                    *f = local.clone();
                }
            }
            if p != before {
                self.store(st, Record::Pool(p))?;
            }
        }
        Ok(())
    }

    /// `SR.create`: the SR and a plugged PBD to `host`.
    fn sr_create(&self, host: &str, device_config: Map, spec: SrSpec) -> ActionResult {
        let mut st = self.lock();
        let Record::Host(mut h) = st.get(Class::Host, host)?.clone() else {
            return Err(ActionError::HandleInvalid {
                class: Class::Host,
                r: host.to_string(),
            });
        };
        let su = st.new_uuid();
        let pu = st.new_uuid();
        let sr = Record::Sr(SrRecord {
            uuid: su.clone(),
            name_label: spec.name_label,
            name_description: spec.name_description,
            ty: spec.ty.to_ascii_lowercase(),
            content_type: spec.content_type,
            shared: spec.shared,
            sm_config: spec.sm_config,
            physical_size: spec.physical_size,
            PBDs: vec![ref_of(&pu)],
            ..SrRecord::default()
        });
        self.put(&mut st, sr, EventOp::Add)?;
        let pbd = Record::Pbd(PbdRecord {
            uuid: pu.clone(),
            host: host.to_string(),
            SR: ref_of(&su),
            device_config,
            currently_attached: true,
            other_config: Map::new(),
        });
        self.put(&mut st, pbd, EventOp::Add)?;
        h.PBDs.push(ref_of(&pu));
        self.put(&mut st, Record::Host(h), EventOp::Mod)?;
        Ok(Reply::Ref(ref_of(&su)))
    }

    /// `SR.introduce`: a record, no PBD; sizes unknown (-1) as in XAPI.
    fn sr_introduce(&self, spec: SrSpec) -> ActionResult {
        let mut st = self.lock();
        let uuid = if spec.uuid.is_empty() {
            st.new_uuid()
        } else if is_uuid(&spec.uuid) {
            spec.uuid.to_ascii_lowercase()
        } else {
            return Err(ActionError::ValueNotSupported {
                field: "uuid".into(),
                value: spec.uuid,
                reason: "not a uuid".into(),
            });
        };
        if st.recs.contains_key(&(Class::Sr, uuid.clone())) {
            return Err(ActionError::SrUuidExists { uuid });
        }
        let sr = Record::Sr(SrRecord {
            uuid: uuid.clone(),
            name_label: spec.name_label,
            name_description: spec.name_description,
            ty: spec.ty.to_ascii_lowercase(),
            content_type: spec.content_type,
            shared: spec.shared,
            sm_config: spec.sm_config,
            physical_size: -1,
            physical_utilisation: -1,
            ..SrRecord::default()
        });
        self.put(&mut st, sr, EventOp::Add)?;
        Ok(Reply::Ref(ref_of(&uuid)))
    }

    /// `SR.destroy` (`destroy`: it must have no VDIs) and `SR.forget` (its
    /// VDI records go too, unless a VM uses one). Either way every PBD must
    /// be unplugged; the PBDs go, and pool fields naming the SR are reset.
    fn sr_drop(&self, r: &str, destroy: bool) -> ActionResult {
        let mut st = self.lock();
        let Record::Sr(sr) = st.get(Class::Sr, r)?.clone() else {
            return Err(ActionError::HandleInvalid {
                class: Class::Sr,
                r: r.to_string(),
            });
        };
        let attached = sr
            .PBDs
            .iter()
            .any(|p| matches!(st.get(Class::Pbd, p), Ok(Record::Pbd(p)) if p.currently_attached));
        if attached {
            return Err(ActionError::SrHasPbd { sr: r.to_string() });
        }
        if destroy && !sr.VDIs.is_empty() {
            return Err(ActionError::HasDependents {
                class: Class::Sr,
                r: r.to_string(),
                dependents: Class::Vdi,
            });
        }
        for vdi in &sr.VDIs {
            if matches!(st.get(Class::Vdi, vdi), Ok(Record::Vdi(d)) if !d.VBDs.is_empty()) {
                return Err(ActionError::VdiInUse {
                    vdi: vdi.clone(),
                    op: "forget",
                });
            }
        }
        for vdi in &sr.VDIs {
            if let Some(u) = uuid_of(vdi) {
                if st.recs.contains_key(&(Class::Vdi, u.to_string())) {
                    self.remove(&mut st, Class::Vdi, u)?;
                }
            }
        }
        for pbd in &sr.PBDs {
            let Ok(Record::Pbd(p)) = st.get(Class::Pbd, pbd).cloned() else {
                continue;
            };
            if let Ok(Record::Host(mut h)) = st.get(Class::Host, &p.host).cloned() {
                h.PBDs.retain(|x| x != pbd);
                self.put(&mut st, Record::Host(h), EventOp::Mod)?;
            }
            self.remove(&mut st, Class::Pbd, &p.uuid)?;
        }
        self.remove(&mut st, Class::Sr, &sr.uuid)?;
        for mut p in st.pools() {
            let before = p.clone();
            for f in p.sr_fields_mut() {
                if f == r {
                    *f = NULL_REF.into();
                }
            }
            if p != before {
                self.put(&mut st, Record::Pool(p), EventOp::Mod)?;
            }
        }
        Ok(Reply::Unit)
    }

    /// `PBD.plug` / `PBD.unplug`.
    fn pbd_plug(&self, r: &str, attached: bool) -> ActionResult {
        self.edit(Class::Pbd, r, |rec| {
            if let Record::Pbd(p) = rec {
                p.currently_attached = attached;
            }
            Ok(())
        })
    }

    /// A pending task (see [`crate::task`]).
    fn task_create(&self, label: String, description: String) -> ActionResult {
        let mut st = self.lock();
        let u = st.new_uuid();
        let host = st.host_ref.clone();
        let t = st
            .tasks
            .create(u.clone(), label, description, host, &now_datetime())?;
        self.put(&mut st, Record::Task(t), EventOp::Add)?;
        Ok(Reply::Ref(ref_of(&u)))
    }

    /// The end of a task; drops the tasks beyond the bound.
    fn task_finish(&self, r: &str, outcome: TaskOutcome) -> ActionResult {
        let mut st = self.lock();
        let mut t = task_of(&st, r)?;
        let gone = st.tasks.finish(&mut t, outcome, &now_datetime());
        self.put(&mut st, Record::Task(t), EventOp::Mod)?;
        for u in gone {
            self.remove(&mut st, Class::Task, &u)?;
        }
        Ok(Reply::Unit)
    }
}

fn perm(dom: DomId, access: Access) -> Perm {
    Perm { dom, access }
}

fn bad_value(field: &str, value: i64, reason: &str) -> ActionError {
    ActionError::ValueNotSupported {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks the power state, template flag and operations in progress.
fn check(st: &State, v: &VmRecord, r: &str, op: Op) -> Result<(), ActionError> {
    if let Some(busy) = st.rt.get(&v.uuid).and_then(|x| x.busy) {
        return Err(ActionError::OtherOperationInProgress {
            class: Class::Vm,
            r: r.to_string(),
            op: busy,
        });
    }
    if v.is_a_template && !op.allowed_for_template() {
        return Err(ActionError::VmIsTemplate {
            vm: r.to_string(),
            op,
        });
    }
    lifecycle::check(op, v.power_state).map_err(|expected| ActionError::VmBadPowerState {
        vm: r.to_string(),
        expected,
        actual: v.power_state,
    })
}

fn set_name(rec: &mut Record, label: Option<String>, desc: Option<String>) {
    macro_rules! set {
        ($r:expr) => {{
            if let Some(l) = label {
                $r.name_label = l;
            }
            if let Some(d) = desc {
                $r.name_description = d;
            }
        }};
    }
    match rec {
        Record::Vm(r) => set!(r),
        Record::Host(r) => set!(r),
        Record::Pool(r) => set!(r),
        Record::Network(r) => set!(r),
        Record::Sr(r) => set!(r),
        Record::Vdi(r) => set!(r),
        Record::Task(r) => set!(r),
        Record::Vif(_) | Record::Vbd(_) | Record::Pbd(_) | Record::Pif(_) => {}
    }
}

/// The task `r`, or `HANDLE_INVALID`.
fn task_of(st: &State, r: &str) -> Result<TaskRecord, ActionError> {
    match st.get(Class::Task, r)? {
        Record::Task(t) => Ok(t.clone()),
        _ => Err(ActionError::HandleInvalid {
            class: Class::Task,
            r: r.to_string(),
        }),
    }
}

/// Now, as a XenAPI datetime.
fn now_datetime() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    task::datetime(secs)
}

/// Whether `u` is a textual uuid (8-4-4-4-12 hex digits): a uuid from a
/// client becomes a xenstore path component, so nothing else may pass.
fn is_uuid(u: &str) -> bool {
    u.len() == 36
        && u.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn device_vm(rec: &Record) -> Option<Ref> {
    match rec {
        Record::Vif(f) => Some(f.vm.clone()),
        Record::Vbd(b) => Some(b.vm.clone()),
        _ => None,
    }
}
