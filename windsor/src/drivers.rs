//! Host mode's driver domains: netback and blkback, started next to the
//! xenstore domain, the toolstack's side of their control channels, and
//! their supervisor, which restarts a driver domain that died.
//!
//! The toolstack writes a VM's devices to xenstore at `VM.start` (backend
//! and frontend directories, state `Initialising`, in one transaction);
//! then, through [`ControlBackends`] (its
//! [`DeviceBackends`](windsor_toolstack::service::DeviceBackends)), it asks
//! the driver domain over its `windsor-control` vchan to serve each device
//! (`Plug`: VIFs to netback, VBDs to blkback), before the guest runs; at
//! shutdown or destroy it sends `Unplug` and removes the directories.
//!
//! Each vchan client borrows the dom0 platform handle, so it lives on a
//! thread of its own that owns both; calls reach it over a channel.
//!
//! # Restart
//!
//! The supervisor thread looks at both driver domains every
//! [`SUPERVISE_EVERY`]. One that is no longer running (it crashed, or was
//! destroyed) and that the host is not stopping is restarted: its threads
//! are waited for, the domain destroyed, a new one (a new domid) built from
//! the same image, the control channel connected again, and the toolstack
//! told ([`Toolstack::backend_restarted`](windsor_toolstack::service::Toolstack::backend_restarted)):
//! it writes every running VM's devices of that kind anew under the new
//! domain and plugs them; each frontend sees its `backend` node change and
//! walks the xenbus states again.
//!
//! A driver domain that runs but does not answer its control channel's
//! `Health` ([`HEALTH_FAILURES`] times in a row, asked every
//! [`HEALTH_EVERY`]) is judged hung and restarted the same way.
//!
//! Fault injection (tests): a domid written by dom0 to [`HANG_NODE`] is, if
//! it is a driver domain, paused (it hangs); one written to [`KILL_NODE`]
//! is crashed at once (`SHUTDOWN_crash`: its
//! threads get `ESRCH` from their next hypervisor call). That is host
//! mode's `SIGKILL`: the domain does no clean-up (blkback leaks its open
//! images rather than writing caches back; nothing is closed in xenstore),
//! so only what a flush made stable is on disk.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use windsor_control::endpoint::Client;
use windsor_control::{
    DeviceId, DeviceKind, DeviceParams, Request, Response, VbdParams, VifParams,
};
use windsor_netback::service::NoUplink;
use windsor_toolstack::devices::{VbdPlug, VifPlug};
use windsor_toolstack::layout::DeviceKind as Kind;
use windsor_toolstack::service::DeviceBackends;
use windsor_xenstore::client::{Access, ClientError, Perm, TxId, XenStore};
use windsor_xenstore::daemon::Adopter;
use windsor_xenstore::stream::StreamStore;
use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, Platform, RunState, ShutdownReason,
};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

/// How long one control call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the control channel may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor looks at the driver domains.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(20);
/// How long a dead driver domain's threads may take to end.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Fault injection: dom0 writes a driver domain's id here to crash it.
pub const KILL_NODE: &str = "/windsor/fault/kill-driver";
/// Fault injection: dom0 writes a driver domain's id here to pause it (it
/// hangs: its domain runs on, its control channel answers nothing).
pub const HANG_NODE: &str = "/windsor/fault/hang-driver";
/// How often the health probe asks each driver domain.
pub const HEALTH_EVERY: Duration = Duration::from_millis(500);
/// How long one health answer may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Health answers missed in a row before a driver domain is restarted.
pub const HEALTH_FAILURES: u32 = 3;

/// The image name of the host-mode blkback domain.
const BLKBACK_IMAGE: &str = "blkback";

enum Job {
    Call(Request, Duration, mpsc::Sender<Result<Response, String>>),
    /// Connect to the channel of this (new) domain instead.
    Reconnect(DomId, mpsc::Sender<bool>),
}

/// One driver domain: its current domid and its control channel.
pub struct Driver {
    name: &'static str,
    image: &'static str,
    kind: Kind,
    domid: AtomicU16,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// A domain judged hung by the health probe (0: none).
    hung: AtomicU16,
}

impl Driver {
    /// Its domain id now (a restart gives a new one).
    pub fn domid(&self) -> DomId {
        DomId(self.domid.load(Ordering::Acquire))
    }

    fn send(&self, job: Job) -> Result<(), String> {
        self.jobs
            .lock()
            .map_err(|_| "control thread gone".to_string())?
            .send(job)
            .map_err(|_| "control thread gone".to_string())
    }

    fn call(&self, req: Request) -> Result<Response, String> {
        self.call_within(req, CALL_TIMEOUT)
    }

    fn call_within(&self, req: Request, timeout: Duration) -> Result<Response, String> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Call(req, timeout, tx))?;
        rx.recv_timeout(timeout + CALL_TIMEOUT + CONNECT_TIMEOUT)
            .map_err(|_| format!("no answer from {}'s control thread", self.name))?
    }

    fn plug(&self, device: DeviceId, params: DeviceParams) -> Result<(), String> {
        match self.call(Request::Plug { device, params })? {
            Response::Ok => Ok(()),
            r => Err(format!("{} refused the plug: {r:?}", self.name)),
        }
    }

    fn unplug(&self, device: DeviceId) {
        match self.call(Request::Unplug { device }) {
            Ok(Response::Ok) => {}
            r => tracing::debug!(?device, ?r, "{}: unplug", self.name),
        }
    }
}

/// Both driver domains and their supervisor.
pub struct Drivers {
    hv: Hypervisor,
    adopter: Adopter,
    net: Driver,
    blk: Driver,
    stopping: Arc<AtomicBool>,
    restarted: OnceLock<Box<dyn Fn(Kind, DomId) + Send + Sync>>,
}

/// The toolstack's [`DeviceBackends`]: VIFs plugged into netback, VBDs
/// into blkback, over their control channels.
#[derive(Clone)]
pub struct ControlBackends(Arc<Drivers>);

fn device(kind: DeviceKind, fe: DomId, devid: u32) -> DeviceId {
    DeviceId {
        kind,
        frontend: fe.0,
        devid,
    }
}

impl DeviceBackends for ControlBackends {
    fn plug_vif(&self, fe: DomId, vif: &VifPlug) -> Result<(), String> {
        let mac = windsor_netback::xenbus::parse_mac(vif.mac.as_bytes())
            .ok_or_else(|| format!("bad MAC {:?}", vif.mac))?;
        let mtu = u16::try_from(vif.mtu).map_err(|_| format!("bad MTU {}", vif.mtu))?;
        self.0.net.plug(
            device(DeviceKind::Vif, fe, vif.devid),
            DeviceParams::Vif(VifParams {
                mac,
                mtu,
                rate: None,
            }),
        )
    }

    fn unplug_vif(&self, fe: DomId, devid: u32) {
        self.0.net.unplug(device(DeviceKind::Vif, fe, devid));
    }

    fn plug_vbd(&self, fe: DomId, vbd: &VbdPlug) -> Result<(), String> {
        self.0.blk.plug(
            device(DeviceKind::Vbd, fe, vbd.devid),
            DeviceParams::Vbd(VbdParams {
                params: vbd.params.clone(),
                readonly: vbd.readonly,
            }),
        )
    }

    fn unplug_vbd(&self, fe: DomId, devid: u32) {
        self.0.blk.unplug(device(DeviceKind::Vbd, fe, devid));
    }
}

impl ControlBackends {
    /// The netback domain.
    pub fn netback(&self) -> &Driver {
        &self.0.net
    }

    /// The blkback domain.
    pub fn blkback(&self) -> &Driver {
        &self.0.blk
    }

    /// Calls `f` after a driver domain was restarted (kind, new domid):
    /// the toolstack moves the devices there. A second call is ignored.
    pub fn on_restart(&self, f: impl Fn(Kind, DomId) + Send + Sync + 'static) {
        let _ = self.0.restarted.set(Box::new(f));
    }

    /// Stops both driver domains (the supervisor first, so that it does
    /// not restart them): each answers, leaves its loop and powers off.
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
        for d in [&self.0.net, &self.0.blk] {
            if let Err(e) = d.call(Request::Restart) {
                tracing::warn!(%e, "{}: stop request failed", d.name);
            }
        }
    }
}

/// Serves control calls on the toolstack's end of one driver's channel.
fn control_thread(dom0: SimDomain, xs: StreamStore, first: DomId, jobs: mpsc::Receiver<Job>) {
    let connect = |d: DomId| {
        let end = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match Client::connect(&dom0, &xs, d, DomId::DOM0, CALL_TIMEOUT) {
                Ok((c, _name)) => break Some(c),
                Err(e) if Instant::now() > end => {
                    tracing::error!(dom = d.0, %e, "control channel did not come up");
                    break None;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    };
    let mut client = connect(first);
    for job in jobs {
        match job {
            Job::Call(req, timeout, reply) => {
                let r = match client.as_mut() {
                    Some(c) => c.call(req, timeout).map_err(|e| e.to_string()),
                    None => Err("no control channel".into()),
                };
                let _ = reply.send(r);
            }
            Job::Reconnect(d, done) => {
                drop(client.take());
                client = connect(d);
                let _ = done.send(client.is_some());
            }
        }
    }
}

impl Drivers {
    /// Creates, builds and starts a domain running `image`, with its home
    /// directory in xenstore owned by it.
    fn boot(&self, name: &str, image: &str) -> Result<DomId> {
        let dom0 = self.hv.dom0();
        let mut handle = [0u8; 16];
        let h = format!("windsor-{name}");
        handle[..h.len().min(15)].copy_from_slice(&h.as_bytes()[..h.len().min(15)]);
        let d = dom0
            .create(&CreateConfig {
                handle,
                max_vcpus: 1,
                max_mem_kib: 64 * 1024,
                max_grant_frames: 64,
                max_evtchn_port: 4095,
            })
            .map_err(|e| anyhow!("creating the {name} domain: {e}"))?;
        let home = format!("/local/domain/{}", d.0);
        let root = StreamStore::from_stream(self.adopter.connect(DomId::DOM0)?)?;
        root.write(TxId::NONE, &home, b"")?;
        root.set_perms(
            TxId::NONE,
            &home,
            &[Perm {
                dom: d,
                access: Access::None,
            }],
        )?;
        root.write(TxId::NONE, &format!("{home}/name"), name.as_bytes())?;
        dom0.build(
            d,
            &DomainImage {
                kernel: image.as_bytes(),
                cmdline: "",
                xenstore_domid: DomId::DOM0,
                console_domid: DomId::DOM0,
            },
        )
        .map_err(|e| anyhow!("building the {name} domain: {e}"))?;
        dom0.unpause(d)
            .map_err(|e| anyhow!("starting the {name} domain: {e}"))?;
        Ok(d)
    }

    fn driver(&self, name: &'static str, image: &'static str, kind: Kind) -> Result<Driver> {
        let d = self.boot(name, image)?;
        let (tx, rx) = mpsc::channel();
        let xs = StreamStore::from_stream(self.adopter.connect(DomId::DOM0)?)?;
        let d0 = self.hv.dom0();
        std::thread::Builder::new()
            .name(format!("{name}-control"))
            .spawn(move || control_thread(d0, xs, d, rx))?;
        Ok(Driver {
            name,
            image,
            kind,
            domid: AtomicU16::new(d.0),
            jobs: Mutex::new(tx),
            hung: AtomicU16::new(0),
        })
    }

    /// Whether `d` is no longer a running domain.
    fn dead(&self, d: DomId) -> bool {
        !matches!(
            self.hv.dom0().info(d).map(|i| i.state),
            Ok(RunState::Running | RunState::Paused)
        )
    }

    /// Replaces a dead driver domain by a new one and tells the toolstack.
    fn restart(&self, drv: &Driver) -> Result<()> {
        let t0 = Instant::now();
        let old = drv.domid();
        let dom0 = self.hv.dom0();
        // Its threads end at their next hypervisor call (a hung, paused
        // one is let run to make it).
        let _ = self.hv.kill(old);
        let _ = dom0.unpause(old);
        if !self.hv.join(old, JOIN_TIMEOUT) {
            tracing::warn!(dom = old.0, "{}: threads still running", drv.name);
        }
        let _ = dom0.destroy(old);
        let root = StreamStore::from_stream(self.adopter.connect(DomId::DOM0)?)?;
        match root.rm(TxId::NONE, &format!("/local/domain/{}", old.0)) {
            Ok(()) | Err(ClientError::Store(xen::Errno::ENOENT)) => {}
            Err(e) => tracing::warn!(%e, "removing the dead {}'s home", drv.name),
        }
        let new = self.boot(drv.name, drv.image)?;
        drv.domid.store(new.0, Ordering::Release);
        drv.hung.store(0, Ordering::Release);
        let (tx, rx) = mpsc::channel();
        drv.send(Job::Reconnect(new, tx)).map_err(|e| anyhow!(e))?;
        if !rx.recv().unwrap_or(false) {
            return Err(anyhow!("no control channel to the new {}", drv.name));
        }
        if let Some(f) = self.restarted.get() {
            f(drv.kind, new);
        }
        tracing::info!(
            old = old.0,
            new = new.0,
            ms = t0.elapsed().as_millis() as u64,
            "{} restarted",
            drv.name
        );
        println!(
            "{} (dom{}) died; restarted as dom{} in {} ms",
            drv.name,
            old.0,
            new.0,
            t0.elapsed().as_millis()
        );
        Ok(())
    }

    /// The supervisor: restarts dead driver domains, honours [`KILL_NODE`].
    fn supervise(self: Arc<Self>) {
        let xs = match self
            .adopter
            .connect(DomId::DOM0)
            .and_then(StreamStore::from_stream)
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(%e, "driver supervisor: no xenstore connection");
                return;
            }
        };
        let watching = xs.watch("/windsor/fault", "fault").is_ok();
        while !self.stopping.load(Ordering::Acquire) {
            if watching {
                match xs.next_event(Some(SUPERVISE_EVERY)) {
                    Ok(_) => self.injected_kill(&xs),
                    Err(ClientError::Timeout) => {}
                    Err(_) => std::thread::sleep(SUPERVISE_EVERY),
                }
            } else {
                std::thread::sleep(SUPERVISE_EVERY);
            }
            for drv in [&self.net, &self.blk] {
                let d = drv.domid();
                let hung = drv.hung.load(Ordering::Acquire) == d.0;
                if self.stopping.load(Ordering::Acquire) || !(hung || self.dead(d)) {
                    continue;
                }
                if let Err(e) = self.restart(drv) {
                    tracing::error!(%e, "{}: restart failed", drv.name);
                }
            }
        }
    }

    fn injected_kill(&self, xs: &StreamStore) {
        for node in [KILL_NODE, HANG_NODE] {
            let Ok(v) = xs.read(TxId::NONE, node) else {
                continue;
            };
            let Some(d) = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
            else {
                continue;
            };
            let _ = xs.rm(TxId::NONE, node);
            if ![&self.net, &self.blk].iter().any(|x| x.domid().0 == d) {
                continue;
            }
            if node == KILL_NODE {
                tracing::info!(dom = d, "fault injection: crashing the driver domain");
                let _ = self.hv.kill(DomId(d));
            } else {
                tracing::info!(dom = d, "fault injection: pausing the driver domain");
                let _ = self.hv.dom0().pause(DomId(d));
            }
        }
    }

    /// The health probe: asks each driver domain for its `Health` every
    /// [`HEALTH_EVERY`]; one that does not answer [`HEALTH_FAILURES`] times
    /// in a row (within [`HEALTH_TIMEOUT`] each) is judged hung, and the
    /// supervisor restarts it.
    fn probe(self: Arc<Self>) {
        let mut failures = [(0u16, 0u32); 2];
        while !self.stopping.load(Ordering::Acquire) {
            std::thread::sleep(HEALTH_EVERY);
            for (drv, f) in [&self.net, &self.blk].into_iter().zip(failures.iter_mut()) {
                let d = drv.domid();
                if self.stopping.load(Ordering::Acquire) || self.dead(d) {
                    continue;
                }
                if f.0 != d.0 {
                    *f = (d.0, 0);
                }
                match drv.call_within(Request::Health, HEALTH_TIMEOUT) {
                    Ok(Response::Health(_)) => f.1 = 0,
                    r => {
                        f.1 += 1;
                        tracing::info!(dom = d.0, ?r, failures = f.1, "{}: no health", drv.name);
                        if f.1 >= HEALTH_FAILURES && drv.domid() == d {
                            tracing::warn!(
                                dom = d.0,
                                "{} does not answer: restarting it",
                                drv.name
                            );
                            drv.hung.store(d.0, Ordering::Release);
                            f.1 = 0;
                        }
                    }
                }
            }
        }
    }
}

/// Starts the netback domain (no uplink: the guests of the host talk among
/// themselves), the blkback domain, their control threads and the
/// supervisor.
pub fn start(hv: &Hypervisor, adopter: &Adopter) -> Result<ControlBackends> {
    let stopping = Arc::new(AtomicBool::new(false));
    let (ad, st) = (adopter.clone(), stopping.clone());
    hv.register_image(windsor_netback::IMAGE, move |dom: SimDomain| {
        let me = dom.domid();
        let Ok(xs) = ad.connect(me).and_then(StreamStore::from_stream) else {
            dom.shutdown_self(ShutdownReason::Crash);
            return;
        };
        windsor_netback::host::entry(dom.clone(), xs, DomId::DOM0, None::<NoUplink>);
        if st.load(Ordering::Acquire) {
            dom.shutdown_self(ShutdownReason::Poweroff);
        } else {
            dom.shutdown_self(ShutdownReason::Crash);
        }
    });
    let (ad, st) = (adopter.clone(), stopping.clone());
    hv.register_image(BLKBACK_IMAGE, move |dom: SimDomain| {
        let me = dom.domid();
        let ad = ad.clone();
        // One connection per device thread; a failed one is a dead store.
        let connect = move || {
            ad.connect(me)
                .and_then(StreamStore::from_stream)
                .expect("xenstore connection for blkback")
        };
        match windsor_blkback::control::run_controlled(
            &dom,
            connect,
            &Default::default(),
            DomId::DOM0,
        ) {
            Ok(()) if st.load(Ordering::Acquire) => dom.shutdown_self(ShutdownReason::Poweroff),
            Ok(()) => dom.shutdown_self(ShutdownReason::Crash),
            Err(e) => tracing::info!(error = %e, "blkback stopped"),
        }
    });
    let mut drivers = Drivers {
        hv: hv.clone(),
        adopter: adopter.clone(),
        net: placeholder(),
        blk: placeholder(),
        stopping,
        restarted: OnceLock::new(),
    };
    drivers.net = drivers.driver("netback", windsor_netback::IMAGE, Kind::Vif)?;
    drivers.blk = drivers.driver("blkback", BLKBACK_IMAGE, Kind::Vbd)?;
    let drivers = Arc::new(drivers);
    let sup = drivers.clone();
    std::thread::Builder::new()
        .name("driver-supervisor".into())
        .spawn(move || sup.supervise())?;
    let probe = drivers.clone();
    std::thread::Builder::new()
        .name("driver-health".into())
        .spawn(move || probe.probe())?;
    Ok(ControlBackends(drivers))
}

/// A driver that is not started yet (replaced in [`start`]).
fn placeholder() -> Driver {
    let (tx, _) = mpsc::channel();
    Driver {
        name: "",
        image: "",
        kind: Kind::Vif,
        domid: AtomicU16::new(0),
        jobs: Mutex::new(tx),
        hung: AtomicU16::new(0),
    }
}
