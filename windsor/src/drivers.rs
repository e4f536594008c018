//! Host mode's driver domains: the netback domain, started next to the
//! xenstore domain, and the toolstack's side of its control channel.
//!
//! The toolstack writes a VM's devices to xenstore at `VM.start` (backend
//! and frontend directories, state `Initialising`, in one transaction);
//! then, through [`ControlBackends`] (its
//! [`DeviceBackends`](windsor_toolstack::service::DeviceBackends)), it asks
//! netback over the `windsor-control` vchan to serve each VIF (`Plug`),
//! before the guest runs; at shutdown or destroy it sends `Unplug` and
//! removes the directories.
//!
//! The vchan client borrows the dom0 platform handle, so it lives on a
//! thread of its own that owns both; calls reach it over a channel.
//!
//! The blkback domain serves the VBDs the toolstack writes under its
//! `backend/vbd` directory (blkback watches it: no control call), each an
//! image file of the VDI (`VDI.create` made it, sparse, in the SR
//! directory).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use windsor_control::endpoint::Client;
use windsor_control::{DeviceId, DeviceKind, DeviceParams, Request, Response, VifParams};
use windsor_netback::service::NoUplink;
use windsor_toolstack::devices::VifPlug;
use windsor_toolstack::service::DeviceBackends;
use windsor_xenstore::client::{Access, Perm, TxId, XenStore};
use windsor_xenstore::daemon::Adopter;
use windsor_xenstore::stream::StreamStore;
use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, Platform, ShutdownReason,
};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

/// How long one control call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the control channel may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Job = (Request, mpsc::Sender<Result<Response, String>>);

/// The running netback domain.
pub struct NetbackDomain {
    /// Its domain id (the backend domain of every VIF).
    pub domid: DomId,
    jobs: Mutex<mpsc::Sender<Job>>,
    stopping: Arc<AtomicBool>,
}

/// The toolstack's [`DeviceBackends`]: VIFs plugged into netback over its
/// control channel.
#[derive(Clone)]
pub struct ControlBackends(Arc<NetbackDomain>);

fn vif_id(fe: DomId, devid: u32) -> DeviceId {
    DeviceId {
        kind: DeviceKind::Vif,
        frontend: fe.0,
        devid,
    }
}

impl NetbackDomain {
    fn call(&self, req: Request) -> Result<Response, String> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .lock()
            .map_err(|_| "control thread gone".to_string())?
            .send((req, tx))
            .map_err(|_| "control thread gone".to_string())?;
        rx.recv_timeout(CALL_TIMEOUT + CONNECT_TIMEOUT)
            .map_err(|_| "no answer from the control thread".to_string())?
    }

    /// Asks netback to stop (it answers, leaves its loop and powers off).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.call(Request::Restart) {
            tracing::warn!(%e, "netback: stop request failed");
        }
    }
}

impl DeviceBackends for ControlBackends {
    fn plug_vif(&self, fe: DomId, vif: &VifPlug) -> Result<(), String> {
        let mac = windsor_netback::xenbus::parse_mac(vif.mac.as_bytes())
            .ok_or_else(|| format!("bad MAC {:?}", vif.mac))?;
        let mtu = u16::try_from(vif.mtu).map_err(|_| format!("bad MTU {}", vif.mtu))?;
        let req = Request::Plug {
            device: vif_id(fe, vif.devid),
            params: DeviceParams::Vif(VifParams {
                mac,
                mtu,
                rate: None,
            }),
        };
        match self.0.call(req)? {
            Response::Ok => Ok(()),
            r => Err(format!("netback refused the plug: {r:?}")),
        }
    }

    fn unplug_vif(&self, fe: DomId, devid: u32) {
        match self.0.call(Request::Unplug {
            device: vif_id(fe, devid),
        }) {
            Ok(Response::Ok) => {}
            r => tracing::debug!(fe = fe.0, devid, ?r, "netback: unplug"),
        }
    }
}

/// Serves control calls on the toolstack's end of the channel.
fn control_thread(dom0: SimDomain, xs: StreamStore, nb: DomId, jobs: mpsc::Receiver<Job>) {
    let end = Instant::now() + CONNECT_TIMEOUT;
    let mut client = loop {
        match Client::connect(&dom0, &xs, nb, DomId::DOM0, CALL_TIMEOUT) {
            Ok((c, _name)) => break Some(c),
            Err(e) if Instant::now() > end => {
                tracing::error!(%e, "netback: control channel did not come up");
                break None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    for (req, reply) in jobs {
        let r = match client.as_mut() {
            Some(c) => c.call(req, CALL_TIMEOUT).map_err(|e| e.to_string()),
            None => Err("no control channel to netback".into()),
        };
        let _ = reply.send(r);
    }
}

/// Starts the netback domain (no uplink: the guests of the host talk among
/// themselves) and the toolstack's control thread.
pub fn start_netback(hv: &Hypervisor, adopter: &Adopter) -> Result<ControlBackends> {
    let dom0 = hv.dom0();
    let nb = dom0
        .create(&CreateConfig {
            handle: *b"windsor-netback\0",
            max_vcpus: 1,
            max_mem_kib: 64 * 1024,
            max_grant_frames: 64,
            max_evtchn_port: 4095,
        })
        .map_err(|e| anyhow!("creating the netback domain: {e}"))?;
    // Its home, owned by it (the control channel is announced there).
    let home = format!("/local/domain/{}", nb.0);
    let root = StreamStore::from_stream(adopter.connect(DomId::DOM0)?)?;
    root.write(TxId::NONE, &home, b"")?;
    root.set_perms(
        TxId::NONE,
        &home,
        &[Perm {
            dom: nb,
            access: Access::None,
        }],
    )?;
    root.write(TxId::NONE, &format!("{home}/name"), b"netback")?;
    let own = Mutex::new(Some(StreamStore::from_stream(adopter.connect(nb)?)?));
    let stopping = Arc::new(AtomicBool::new(false));
    let st = stopping.clone();
    hv.register_image(windsor_netback::IMAGE, move |dom: SimDomain| {
        let Some(xs) = own.lock().ok().and_then(|mut g| g.take()) else {
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
    dom0.build(
        nb,
        &DomainImage {
            kernel: windsor_netback::IMAGE.as_bytes(),
            cmdline: "",
            xenstore_domid: DomId::DOM0,
            console_domid: DomId::DOM0,
        },
    )
    .map_err(|e| anyhow!("building the netback domain: {e}"))?;
    dom0.unpause(nb)
        .map_err(|e| anyhow!("starting the netback domain: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let xs = StreamStore::from_stream(adopter.connect(DomId::DOM0)?)?;
    let d0 = hv.dom0();
    std::thread::Builder::new()
        .name("netback-control".into())
        .spawn(move || control_thread(d0, xs, nb, rx))?;
    Ok(ControlBackends(Arc::new(NetbackDomain {
        domid: nb,
        jobs: Mutex::new(tx),
        stopping,
    })))
}

/// The image name of the host-mode blkback domain.
const BLKBACK_IMAGE: &str = "blkback";

/// The running blkback domain.
pub struct BlkbackDomain {
    /// Its domain id (the backend domain of every VBD).
    pub domid: DomId,
    dom: Arc<Mutex<Option<SimDomain>>>,
}

impl BlkbackDomain {
    /// Shuts the domain down (poweroff); its service notices and ends.
    pub fn stop(&self) {
        if let Some(d) = self.dom.lock().ok().and_then(|g| g.clone()) {
            d.shutdown_self(ShutdownReason::Poweroff);
        }
    }
}

/// Starts the blkback domain. It runs until stopped or destroyed.
pub fn start_blkback(hv: &Hypervisor, adopter: &Adopter) -> Result<BlkbackDomain> {
    let dom0 = hv.dom0();
    let bd = dom0
        .create(&CreateConfig {
            handle: *b"windsor-blkback\0",
            max_vcpus: 1,
            max_mem_kib: 64 * 1024,
            max_grant_frames: 64,
            max_evtchn_port: 4095,
        })
        .map_err(|e| anyhow!("creating the blkback domain: {e}"))?;
    let home = format!("/local/domain/{}", bd.0);
    let root = StreamStore::from_stream(adopter.connect(DomId::DOM0)?)?;
    root.write(TxId::NONE, &home, b"")?;
    root.set_perms(
        TxId::NONE,
        &home,
        &[Perm {
            dom: bd,
            access: Access::None,
        }],
    )?;
    root.write(TxId::NONE, &format!("{home}/name"), b"blkback")?;
    let ad = adopter.clone();
    let handle = Arc::new(Mutex::new(None));
    let h = handle.clone();
    hv.register_image(BLKBACK_IMAGE, move |dom: SimDomain| {
        if let Ok(mut g) = h.lock() {
            *g = Some(dom.clone());
        }
        let me = dom.domid();
        let ad = ad.clone();
        // One connection per device thread; a failed one is a dead store.
        let connect = move || {
            ad.connect(me)
                .and_then(StreamStore::from_stream)
                .expect("xenstore connection for blkback")
        };
        let e = windsor_blkback::service::run(&dom, connect, &Default::default());
        tracing::info!(error = %e, "blkback stopped");
    });
    dom0.build(
        bd,
        &DomainImage {
            kernel: BLKBACK_IMAGE.as_bytes(),
            cmdline: "",
            xenstore_domid: DomId::DOM0,
            console_domid: DomId::DOM0,
        },
    )
    .map_err(|e| anyhow!("building the blkback domain: {e}"))?;
    dom0.unpause(bd)
        .map_err(|e| anyhow!("starting the blkback domain: {e}"))?;
    Ok(BlkbackDomain {
        domid: bd,
        dom: handle,
    })
}

impl ControlBackends {
    /// The netback domain.
    pub fn netback(&self) -> &NetbackDomain {
        &self.0
    }
}
