//! The blkback domain under the toolstack's control: the devices it serves
//! are the ones the toolstack plugs over the `windsor-control` vchan, as
//! netback's VIFs are.
//!
//! [`run_controlled`] offers the control channel to the toolstack's
//! domain and answers its requests:
//!
//! * `Plug` of a VBD whose backend directory the toolstack wrote
//!   (`/local/domain/<me>/backend/vbd/<frontend>/<devid>`): a thread serves
//!   it ([`serve_vbd_until`]) with its own xenstore connection;
//! * `Unplug`: the device's thread answers what it took from the ring, walks
//!   the backend to `Closed` and ends; the answer comes after it ended;
//! * `Counters` (reads, writes, bytes, refused requests: [`Stats`]),
//!   `Health` (each device's state), `Restart` (answer, stop every device,
//!   return).
//!
//! A channel that breaks (the toolstack went away or misbehaved) is closed
//! and offered again; devices go on meanwhile.

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use std::vec::Vec;

use windsor_control::endpoint::Server;
use windsor_control::{
    DeviceCounters, DeviceId, DeviceKind, DeviceParams, DeviceState, ErrorCode, Health, Request,
    Response,
};
use windsor_xenstore_client::{TxId, XenStore};
use xen::platform::Platform;
use xen::DomId;

use crate::service::{serve_vbd_until, Config, Error, Stats};

/// Most devices one blkback serves.
pub const MAX_VBDS: usize = 256;
/// How long the loop waits for a control event before looking at its
/// domain's liveness again.
const TICK: Duration = Duration::from_millis(50);

struct Device {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    thread: thread::JoinHandle<()>,
}

impl Device {
    fn state(&self) -> DeviceState {
        if self.thread.is_finished() {
            DeviceState::Closed
        } else if self.stats.connected.load(Ordering::Relaxed) {
            DeviceState::Connected
        } else if self.stats.failed.load(Ordering::Relaxed) {
            DeviceState::Failed
        } else {
            DeviceState::Waiting
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

struct Devices<P, C> {
    plat: P,
    connect: Arc<C>,
    cfg: Config,
    me: DomId,
    devs: BTreeMap<DeviceId, Device>,
    started: Duration,
}

impl<P, X, C> Devices<P, C>
where
    P: Platform + Clone + Send + Sync + 'static,
    P::Mapping: Send + Sync,
    X: XenStore + Send + 'static,
    C: Fn() -> X + Send + Sync + 'static,
{
    fn dir(&self, d: DeviceId) -> String {
        format!(
            "/local/domain/{}/backend/vbd/{}/{}",
            self.me.0, d.frontend, d.devid
        )
    }

    fn plug(&mut self, d: DeviceId, params: &DeviceParams) -> Result<(), ErrorCode> {
        let DeviceParams::Vbd(p) = params else {
            return Err(ErrorCode::WrongKind);
        };
        if d.kind != DeviceKind::Vbd {
            return Err(ErrorCode::WrongKind);
        }
        if let Some(old) = self.devs.get(&d) {
            if !old.thread.is_finished() {
                return Err(ErrorCode::AlreadyPlugged);
            }
        }
        if self.devs.len() >= MAX_VBDS && !self.devs.contains_key(&d) {
            return Err(ErrorCode::Full);
        }
        let dir = self.dir(d);
        // The toolstack wrote the directory first; its image must be the
        // one it names.
        let xs = (self.connect)();
        let params = xs
            .read(TxId::NONE, &format!("{dir}/params"))
            .map_err(|_| ErrorCode::Store)?;
        if params != p.params.as_bytes() {
            return Err(ErrorCode::BadParams);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (plat, cfg) = (self.plat.clone(), self.cfg.clone());
        let (st, ss) = (stop.clone(), stats.clone());
        let thread = thread::Builder::new()
            .name(format!("vbd-{}-{}", d.frontend, d.devid))
            .spawn(
                move || match serve_vbd_until(&plat, &xs, &dir, &cfg, &ss, &st) {
                    Ok(()) => tracing::info!(%dir, "blkback: vbd unplugged"),
                    Err(e) => tracing::warn!(%dir, error = %e, "blkback: vbd stopped"),
                },
            )
            .map_err(|_| ErrorCode::Full)?;
        if let Some(old) = self.devs.insert(
            d,
            Device {
                stop,
                stats,
                thread,
            },
        ) {
            old.stop();
        }
        tracing::info!(fe = d.frontend, devid = d.devid, "blkback: vbd plugged");
        Ok(())
    }

    fn handle(&mut self, req: Request) -> (Response, bool) {
        let r = match req {
            Request::Plug { device, params } => match self.plug(device, &params) {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error(e),
            },
            Request::Unplug { device } => match self.devs.remove(&device) {
                Some(d) => {
                    d.stop();
                    Response::Ok
                }
                None => Response::Error(ErrorCode::NoSuchDevice),
            },
            Request::Counters { device } => {
                let all: Vec<_> = self
                    .devs
                    .iter()
                    .filter(|(d, _)| device.is_none_or(|x| x == **d))
                    .map(|(d, v)| (*d, DeviceCounters::Vbd(v.stats.counters())))
                    .collect();
                if device.is_some() && all.is_empty() {
                    Response::Error(ErrorCode::NoSuchDevice)
                } else {
                    Response::Counters(all)
                }
            }
            Request::Health => Response::Health(Health {
                uptime_ms: self.plat.now().saturating_sub(self.started).as_millis() as u64,
                devices: self.devs.iter().map(|(d, v)| (*d, v.state())).collect(),
            }),
            Request::Restart => return (Response::Ok, true),
            Request::Hello => Response::Ok,
        };
        (r, false)
    }
}

/// Runs the block driver domain under the control of `toolstack`'s domain
/// until the domain dies (the answer is why) or a `Restart` request
/// (`Ok`). `connect` gives a new xenstore connection of this domain (one
/// for the control loop, one per device thread).
pub fn run_controlled<P, X, C>(
    plat: &P,
    connect: C,
    cfg: &Config,
    toolstack: DomId,
) -> Result<(), Error>
where
    P: Platform + Clone + Send + Sync + 'static,
    P::Mapping: Send + Sync,
    X: XenStore + Send + 'static,
    C: Fn() -> X + Send + Sync + 'static,
{
    let xs = connect();
    let me = plat.domid();
    let offer = || match Server::offer(plat, &xs, me, toolstack, "blkback") {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(%e, "blkback: control channel not offered");
            None
        }
    };
    let mut ctl = offer();
    let mut devs = Devices {
        plat: plat.clone(),
        connect: Arc::new(connect),
        cfg: cfg.clone(),
        me,
        devs: BTreeMap::new(),
        started: plat.now(),
    };
    let result = loop {
        let ports: Vec<_> = ctl.as_ref().map(|c| c.port()).into_iter().collect();
        match plat.wait(&ports, Some(TICK)) {
            Ok(_) => {}
            Err(e) => break Err(Error::Platform(e)),
        }
        for p in &ports {
            let _ = plat.clear_pending(*p);
        }
        let Some(mut c) = ctl.take() else {
            ctl = offer();
            continue;
        };
        let mut restart = false;
        match c.poll(|r| {
            let (rsp, again) = devs.handle(r);
            restart |= again;
            rsp
        }) {
            Ok(_) => ctl = Some(c),
            Err(e) => {
                tracing::info!(%e, "blkback: control channel closed; offering it again");
                c.close(&xs);
                ctl = offer();
            }
        }
        if restart {
            tracing::info!("blkback: restart requested");
            break Ok(());
        }
    };
    let gone = result.is_err();
    for (_, d) in core::mem::take(&mut devs.devs) {
        if gone {
            // The device threads notice the death by themselves.
            let _ = d.thread.join();
        } else {
            d.stop();
        }
    }
    result
}
