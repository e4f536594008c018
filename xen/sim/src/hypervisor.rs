//! The host: the domain table, lifecycle, images and fault injection.
//!
//! One mutex guards the whole table (grant tables, event channels, run
//! states); each domain has a condition variable its waiters sleep on. No
//! domain code ever runs with the lock held.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xen::platform::{
    CreateConfig, DomainInfo, Error, PortStatus, Result, RunState, ShutdownReason, SuspendOutcome,
    Virq,
};
use xen::{DomId, Errno, EvtchnPort, GrantRef};

use crate::domain::{PagesInner, SimDomain, StartInfo};
use crate::memory::{Frame, Pool};

/// The entry point of a host-mode domain image.
pub type ImageEntry = Arc<dyn Fn(SimDomain) + Send + Sync + 'static>;

/// One event channel port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Port {
    pub(crate) status: PortStatus,
    pub(crate) pending: bool,
    pub(crate) masked: bool,
}

/// One grant-table entry.
pub(crate) struct Grant {
    pub(crate) to: DomId,
    pub(crate) frame: Arc<Frame>,
    pub(crate) readonly: bool,
    /// How many mappings of it are alive.
    pub(crate) maps: u32,
}

/// A guest thread blocked in its suspend call.
pub(crate) struct Parked {
    /// Sends the call's return; dropping it makes the call fail with
    /// `ESRCH` (the domain was destroyed or its image discarded).
    pub(crate) wake: mpsc::SyncSender<SuspendOutcome>,
    /// The identity of the guest's handles, re-pointed by a restore.
    pub(crate) ident: Arc<AtomicU16>,
}

/// Everything the hypervisor knows about a domain.
pub(crate) struct Dom {
    pub(crate) cfg: CreateConfig,
    pub(crate) privileged: bool,
    pub(crate) state: RunState,
    /// Set while the toolstack has it paused (a running domain blocks at its
    /// next `wait` or `notify` until unpaused).
    pub(crate) paused: bool,
    /// Event channel ports; index 0 is reserved, as in Xen.
    pub(crate) ports: Vec<Option<Port>>,
    pub(crate) virqs: HashMap<u32, EvtchnPort>,
    pub(crate) grants: BTreeMap<u32, Grant>,
    pub(crate) free_grefs: Vec<u32>,
    pub(crate) next_gref: u32,
    pub(crate) tot_pages: u64,
    pub(crate) wake: Arc<Condvar>,
    pub(crate) start: Option<Arc<StartInfo>>,
    /// The registered image it was built from (host mode).
    pub(crate) image: Option<String>,
    /// Whether its image thread was started.
    pub(crate) launched: bool,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) started_at: Instant,
    pub(crate) console: Vec<u8>,
    /// Console bytes its ring had no room for (see `Console for SimDomain`).
    pub(crate) console_dropped: u64,
    /// Its allocations of pages (dead entries are pruned now and then).
    pub(crate) pages: Vec<Weak<PagesInner>>,
    /// Its guest thread, blocked in the suspend call.
    pub(crate) parked: Option<Parked>,
    /// A restored guest, resumed at the first unpause.
    pub(crate) resume: Option<Parked>,
}

impl Dom {
    pub(crate) fn max_pages(&self) -> u64 {
        self.cfg.max_mem_kib / 4
    }

    /// Records an allocation of its pages.
    pub(crate) fn add_pages(&mut self, p: &Arc<PagesInner>) {
        let n = self.pages.len();
        if n >= 32 && n.is_power_of_two() {
            self.pages.retain(|w| w.strong_count() > 0);
        }
        self.pages.push(Arc::downgrade(p));
    }

    pub(crate) fn alive(&self) -> bool {
        matches!(self.state, RunState::Running | RunState::Paused)
    }

    pub(crate) fn port(&self, p: EvtchnPort) -> Result<&Port> {
        self.ports
            .get(p.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::Errno(Errno::EINVAL))
    }

    pub(crate) fn port_mut(&mut self, p: EvtchnPort) -> Result<&mut Port> {
        self.ports
            .get_mut(p.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::Errno(Errno::EINVAL))
    }

    /// Allocates the lowest free port (never 0).
    pub(crate) fn alloc_port(&mut self, status: PortStatus) -> Result<EvtchnPort> {
        let port = Port {
            status,
            pending: false,
            masked: false,
        };
        if let Some(i) = self.ports.iter().skip(1).position(Option::is_none) {
            self.ports[i + 1] = Some(port);
            return Ok(EvtchnPort(i as u32 + 1));
        }
        let n = self.ports.len().max(1);
        if n as u32 > self.cfg.max_evtchn_port {
            return Err(Error::Errno(Errno::ENOSPC));
        }
        self.ports.resize(n, None);
        self.ports.push(Some(port));
        Ok(EvtchnPort(n as u32))
    }

    /// Sets `port` pending and wakes waiters if it is unmasked.
    pub(crate) fn raise(&mut self, port: EvtchnPort) {
        if let Some(Some(p)) = self.ports.get_mut(port.0 as usize) {
            p.pending = true;
            if !p.masked {
                self.wake.notify_all();
            }
        }
    }
}

/// Per-sender fault injection.
#[derive(Default, Clone, Copy)]
pub(crate) struct Faults {
    pub(crate) drop_next: u32,
    pub(crate) delay: Option<Duration>,
}

pub(crate) struct State {
    pub(crate) doms: BTreeMap<u16, Dom>,
    pub(crate) next_domid: u16,
    pub(crate) faults: HashMap<u16, Faults>,
}

/// State shared by every handle of one simulated host.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) boot: Instant,
    pub(crate) images: Mutex<HashMap<String, ImageEntry>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Console output kept per domain (the newest bytes).
const CONSOLE_KEEP: usize = 64 * 1024;

impl State {
    pub(crate) fn dom(&self, d: DomId) -> Result<&Dom> {
        self.doms.get(&d.0).ok_or(Error::Errno(Errno::ESRCH))
    }

    pub(crate) fn dom_mut(&mut self, d: DomId) -> Result<&mut Dom> {
        self.doms.get_mut(&d.0).ok_or(Error::Errno(Errno::ESRCH))
    }

    /// Raises `VIRQ_DOM_EXC` in every domain that bound it.
    pub(crate) fn raise_dom_exc(&mut self) {
        for d in self.doms.values_mut() {
            if let Some(&p) = d.virqs.get(&(Virq::DomExc as u32)) {
                d.raise(p);
            }
        }
    }

    /// Moves `d` to `Shutdown(reason)` (if it is still alive) and tells the
    /// toolstack.
    pub(crate) fn shutdown(&mut self, d: DomId, reason: ShutdownReason) -> Result<()> {
        let dom = self.dom_mut(d)?;
        if !dom.alive() {
            return Ok(());
        }
        dom.state = RunState::Shutdown(reason);
        dom.paused = false;
        dom.wake.notify_all();
        tracing::info!(dom = d.0, ?reason, "domain shut down");
        self.raise_dom_exc();
        Ok(())
    }

    pub(crate) fn create(&mut self, cfg: &CreateConfig, privileged: bool) -> Result<DomId> {
        let mut id = self.next_domid;
        let mut tries = 0u32;
        while self.doms.contains_key(&id) || !DomId(id).is_ordinary() {
            id = if DomId(id + 1).is_ordinary() {
                id + 1
            } else {
                1
            };
            tries += 1;
            if tries > u32::from(DomId::FIRST_RESERVED.0) {
                return Err(Error::Errno(Errno::ENOSPC));
            }
        }
        self.next_domid = if DomId(id + 1).is_ordinary() {
            id + 1
        } else {
            1
        };
        self.doms.insert(
            id,
            Dom {
                cfg: *cfg,
                privileged,
                state: RunState::Paused,
                paused: true,
                ports: vec![None],
                virqs: HashMap::new(),
                grants: BTreeMap::new(),
                free_grefs: Vec::new(),
                next_gref: GrantRef::FIRST_FREE.0,
                tot_pages: 0,
                wake: Arc::new(Condvar::new()),
                start: None,
                image: None,
                launched: false,
                thread: None,
                started_at: Instant::now(),
                console: Vec::new(),
                console_dropped: 0,
                pages: Vec::new(),
                parked: None,
                resume: None,
            },
        );
        Ok(DomId(id))
    }

    /// Tears `d` down: its ports close (peers' ports become unbound and are
    /// raised so their waiters notice), its grants are revoked (existing
    /// mappings keep their frames), and the toolstack is told.
    ///
    /// Returns the removed domain: the caller must drop it *after* releasing
    /// the lock, since dropping its pages takes the lock again.
    pub(crate) fn destroy(&mut self, d: DomId) -> Result<Dom> {
        let mut dom = self.doms.remove(&d.0).ok_or(Error::Errno(Errno::ESRCH))?;
        dom.state = RunState::Dying;
        dom.wake.notify_all();
        for p in dom.ports.iter().flatten() {
            if let PortStatus::Interdomain { dom: peer, port } = p.status {
                if let Ok(pd) = self.dom_mut(peer) {
                    if let Ok(pp) = pd.port_mut(port) {
                        pp.status = PortStatus::Unbound { remote: d };
                    }
                    pd.raise(port);
                }
            }
        }
        tracing::info!(dom = d.0, grants = dom.grants.len(), "domain destroyed");
        self.raise_dom_exc();
        Ok(dom)
    }

    pub(crate) fn info(&self, d: DomId) -> Result<DomainInfo> {
        let dom = self.dom(d)?;
        let state = if dom.paused && dom.alive() {
            RunState::Paused
        } else {
            dom.state
        };
        Ok(DomainInfo {
            domid: d,
            state,
            handle: dom.cfg.handle,
            tot_pages: dom.tot_pages,
            max_mem_kib: dom.cfg.max_mem_kib,
            max_vcpus: dom.cfg.max_vcpus,
            cpu_time_ns: dom.started_at.elapsed().as_nanos() as u64,
            privileged: dom.privileged,
        })
    }

    pub(crate) fn console_write(&mut self, d: DomId, bytes: &[u8]) {
        if let Ok(dom) = self.dom_mut(d) {
            dom.console.extend_from_slice(bytes);
            if dom.console.len() > CONSOLE_KEEP {
                let cut = dom.console.len() - CONSOLE_KEEP;
                dom.console.drain(..cut);
            }
        }
    }
}

/// A simulated Xen host: create one per test or per `windsor up`.
///
/// Domain 0 exists from the start and is privileged; get a handle with
/// [`dom0`](Self::dom0). Further domains are created through dom0's
/// [`DomainControl`](xen::platform::DomainControl) and
/// [`DomainBuilder`](xen::platform::DomainBuilder), which run a registered
/// image on a thread, or, for tests, with [`test_domain`](Self::test_domain),
/// which returns a handle to drive from the test itself.
#[derive(Clone)]
pub struct Hypervisor {
    pub(crate) shared: Arc<Shared>,
}

impl Default for Hypervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Hypervisor {
    /// Starts an empty host with a privileged domain 0.
    ///
    /// # Panics
    /// If the host cannot reserve address space for guest memory (`memfd`
    /// and `mmap` failing is an environment problem, not a runtime one).
    pub fn new() -> Hypervisor {
        let pool = Pool::new().expect("xen-sim: cannot create the guest memory pool");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                doms: BTreeMap::new(),
                next_domid: 0,
                faults: HashMap::new(),
            }),
            pool,
            boot: Instant::now(),
            images: Mutex::new(HashMap::new()),
        });
        {
            let mut st = shared.lock();
            let cfg = CreateConfig {
                max_mem_kib: 1 << 30,
                ..CreateConfig::default()
            };
            let d0 = st.create(&cfg, true).expect("dom0 creation cannot fail");
            debug_assert_eq!(d0, DomId::DOM0);
            let dom = st.dom_mut(d0).expect("just created");
            dom.state = RunState::Running;
            dom.paused = false;
        }
        Hypervisor { shared }
    }

    /// A handle on domain 0 (privileged).
    pub fn dom0(&self) -> SimDomain {
        SimDomain::new(self.shared.clone(), DomId::DOM0, None)
    }

    /// Creates a running, unprivileged domain with no image and returns a
    /// handle on it, to be driven by the caller (tests, host-mode services
    /// that run on their own threads).
    pub fn test_domain(&self, cfg: &CreateConfig) -> Result<SimDomain> {
        let mut st = self.shared.lock();
        let d = st.create(cfg, false)?;
        let dom = st.dom_mut(d)?;
        dom.state = RunState::Running;
        dom.paused = false;
        drop(st);
        Ok(SimDomain::new(self.shared.clone(), d, None))
    }

    /// Registers an image that [`DomainBuilder::build`](xen::platform::DomainBuilder::build)
    /// can load: in host mode the kernel bytes are the image's name.
    pub fn register_image(&self, name: &str, entry: impl Fn(SimDomain) + Send + Sync + 'static) {
        self.shared
            .images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::new(entry));
    }

    /// Fault injection: crashes `dom` as if it had faulted
    /// (`SHUTDOWN_crash`); its thread sees `ESRCH` from its next call.
    pub fn kill(&self, dom: DomId) -> Result<()> {
        self.shared.lock().shutdown(dom, ShutdownReason::Crash)
    }

    /// Fault injection: the next `count` notifications sent by `from` are lost.
    pub fn drop_notifications(&self, from: DomId, count: u32) {
        self.shared
            .lock()
            .faults
            .entry(from.0)
            .or_default()
            .drop_next = count;
    }

    /// Fault injection: notifications sent by `from` are delivered `delay`
    /// late (the sender's `notify` returns at once).
    pub fn delay_notifications(&self, from: DomId, delay: Option<Duration>) {
        self.shared.lock().faults.entry(from.0).or_default().delay = delay;
    }

    /// What `dom` wrote to its console (the newest 64 KiB).
    pub fn console_output(&self, dom: DomId) -> Option<String> {
        let st = self.shared.lock();
        let d = st.dom(dom).ok()?;
        Some(String::from_utf8_lossy(&d.console).into_owned())
    }

    /// The console event channel of a built domain, as dom0 reads it with
    /// `HVMOP_get_param(HVM_PARAM_CONSOLE_EVTCHN)` (its console page is
    /// its reserved grant entry `GNTTAB_RESERVED_CONSOLE`); `None` for a
    /// domain without a console ring or that does not exist.
    pub fn console_port(&self, dom: DomId) -> Option<EvtchnPort> {
        let st = self.shared.lock();
        let start = st.dom(dom).ok()?.start.clone()?;
        Some(EvtchnPort(
            start
                .console_port
                .load(std::sync::atomic::Ordering::Acquire),
        ))
    }

    /// Console bytes `dom` wrote that its ring had no room for (its
    /// backend was absent or slower than it, for a whole write stall).
    pub fn console_dropped(&self, dom: DomId) -> Option<u64> {
        Some(self.shared.lock().dom(dom).ok()?.console_dropped)
    }

    /// Ids of the domains that exist, in order.
    pub fn domains(&self) -> Vec<DomId> {
        self.shared.lock().doms.keys().map(|&d| DomId(d)).collect()
    }

    /// Frames handed out to domains and not yet returned, across the host.
    pub fn frames_in_use(&self) -> u64 {
        self.shared.lock().doms.values().map(|d| d.tot_pages).sum()
    }

    /// Waits until the thread of an image-run domain has returned (after
    /// shutdown or destroy), up to `timeout`. Returns false on timeout.
    pub fn join(&self, dom: DomId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let done = {
                let st = self.shared.lock();
                match st.dom(dom) {
                    Ok(d) => d.thread.as_ref().is_none_or(JoinHandle::is_finished),
                    Err(_) => true,
                }
            };
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Runs an image's entry on its own thread. A panic is a crash of that
/// domain, not of the host; returning without shutting down is a poweroff.
pub(crate) fn spawn_domain(
    shared: &Arc<Shared>,
    d: DomId,
    start: Option<Arc<StartInfo>>,
    entry: ImageEntry,
) -> JoinHandle<()> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("dom{}", d.0))
        .spawn(move || {
            let handle = SimDomain::new(shared.clone(), d, start);
            // A restore moves the guest to a new domain: end that one.
            let ident = handle.ident();
            let r = catch_unwind(AssertUnwindSafe(|| entry(handle)));
            let d = DomId(ident.load(Ordering::Acquire));
            let mut st = shared.lock();
            match r {
                Ok(()) => {
                    let _ = st.shutdown(d, ShutdownReason::Poweroff);
                }
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    tracing::error!(dom = d.0, %msg, "domain crashed");
                    st.console_write(d, format!("\n*** domain crashed: {msg}\n").as_bytes());
                    let _ = st.shutdown(d, ShutdownReason::Crash);
                }
            }
        })
        .expect("xen-sim: cannot spawn a domain thread")
}
