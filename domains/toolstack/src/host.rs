//! The in-process host: the toolstack on the simulated hypervisor, with
//! an in-process xenstore and the built-in guest images (feature `host`).
//! Tests, benchmarks and embedders use it; `windsor up` (the `windsor`
//! crate's `host` module) runs the persistent xenstore daemon and the API
//! around the same toolstack and registers the same guest images
//! ([`register_ring_images`]).
//!
//! [`Host::start`] makes a [`Hypervisor`], a [`LocalStore`] (unless one is
//! given, e.g. to restart over the same store), registers the fuzz-target
//! image, and starts a [`Toolstack`] on dom0.
//!
//! How guests reach xenstore is the [`Transport`]:
//! * [`Transport::Ring`] (the default): a xenstore domain (a domain of the
//!   simulator, served by a thread) runs the xenbus ring server
//!   ([`XenbusServer`]) over the same store; introduction maps each
//!   guest's ring (reserved grant 1) and binds its port, and the guest
//!   talks through [`XenbusClient`] on the ring its builder prepared — the
//!   same path as in Xen mode.
//! * [`Transport::Direct`]: each guest gets an in-process [`LocalStore`]
//!   connection acting for its domid (no ring; the first host-mode wiring,
//!   kept for comparison and as a fallback).
//!
//! The toolstack itself (dom0) always uses an in-process connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec::Vec;

use windsor_xenstore::xenbus::{ServerConfig, XenbusClient, XenbusServer};
use xen::platform::{Console, CreateConfig, DomainControl, EventChannel, Platform, ShutdownReason};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

use crate::localstore::LocalStore;
use crate::service::{StartError, Toolstack, ToolstackConfig, FUZZ_IMAGE};

/// The toolstack type of host mode.
pub type HostToolstack = Toolstack<SimDomain, LocalStore, LocalStore>;

/// How guests reach xenstore in host mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Their xenbus ring, served by a xenstore domain.
    #[default]
    Ring,
    /// An in-process connection acting for their domid.
    Direct,
}

/// The xenstore domain of a host in ring mode.
struct RingServer {
    dom: DomId,
    stop: Arc<AtomicBool>,
    kick: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<()>>,
}

/// A whole host in one process.
pub struct Host {
    /// The simulated hypervisor.
    pub hv: Hypervisor,
    /// The toolstack's (dom0's) connection to the store.
    pub store: LocalStore,
    /// The toolstack.
    pub toolstack: HostToolstack,
    ring: Option<RingServer>,
}

/// Registers the built-in guest images with `hv`: their xenstore client is
/// their ring ([`Transport::Ring`]) or a connection to `store`.
pub fn register_images(hv: &Hypervisor, store: &LocalStore, transport: Transport) {
    match transport {
        Transport::Ring => register_ring_images(hv),
        Transport::Direct => register_direct_images(hv, store),
    }
}

/// Registers the built-in guest images with `hv`, each guest reaching
/// xenstore over its own xenbus ring (the page and port its builder put in
/// its start info). `windsor up` registers the same images.
pub fn register_ring_images(hv: &Hypervisor) {
    hv.register_image(FUZZ_IMAGE, move |dom: SimDomain| {
        // After a resume the guest reconnects on the same ring page, which
        // the restore gave a fresh frame and a new port.
        let outcome = windsor_guest_fuzz_target::boot(&dom, || {
            let xs = XenbusClient::new(&dom);
            if xs.is_none() {
                tracing::warn!(dom = dom.domid().0, "fuzz-target: no xenstore ring");
                dom.write(b"fuzz-target: no xenstore ring\n");
                dom.shutdown_self(ShutdownReason::Crash);
            }
            xs
        });
        tracing::debug!(?outcome, "fuzz-target returned");
    });
}

/// Registers the built-in guest images with `hv`, each guest on an
/// in-process connection to `store` acting for its domid.
fn register_direct_images(hv: &Hypervisor, store: &LocalStore) {
    let s = store.clone();
    hv.register_image(FUZZ_IMAGE, move |dom: SimDomain| {
        // A connection for the current domid, a new one after a resume.
        let mut last: Option<LocalStore> = None;
        let outcome = windsor_guest_fuzz_target::host::entry_with(dom, |d| {
            if let Some(old) = last.take() {
                old.close();
            }
            let xs = s.connect(d);
            last = Some(xs.clone());
            Some(xs)
        });
        tracing::debug!(?outcome, "fuzz-target returned");
        if let Some(xs) = last {
            xs.close();
        }
    });
}

/// Starts the xenstore domain: a domain of `hv` whose thread serves rings
/// over `store`.
fn start_ring_server(hv: &Hypervisor, store: &LocalStore) -> Result<RingServer, StartError> {
    let xsd = hv.test_domain(&CreateConfig {
        max_mem_kib: 1 << 20,
        max_evtchn_port: 4095,
        ..CreateConfig::default()
    })?;
    let dom = xsd.domid();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = {
        let (xsd, store, stop) = (xsd.clone(), store.clone(), stop.clone());
        std::thread::Builder::new()
            .name("xenstore-rings".into())
            .spawn(move || {
                let cfg = ServerConfig {
                    max_domains: 4096,
                    ..ServerConfig::default()
                };
                let mut srv = match XenbusServer::new(&xsd, cfg) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "xenbus server did not start");
                        return;
                    }
                };
                let _ = tx.send(srv.kick_port());
                store.serve_rings(&mut srv, &stop, Duration::from_millis(200));
            })
            .map_err(|_| xen::platform::Error::Errno(xen::Errno::EAGAIN))?
    };
    let kick_port = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| xen::platform::Error::Errno(xen::Errno::EIO))?;
    let kick: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = xsd.notify(kick_port);
    });
    let k = kick.clone();
    store.attach_ring_server(move || k());
    Ok(RingServer {
        dom,
        stop,
        kick,
        thread: Some(thread),
    })
}

impl Host {
    /// A new host with a fresh store, guests on their rings.
    pub fn start(cfg: ToolstackConfig) -> Result<Host, StartError> {
        Self::start_with(cfg, Transport::default())
    }

    /// A new host with a fresh store and the given guest transport.
    pub fn start_with(cfg: ToolstackConfig, transport: Transport) -> Result<Host, StartError> {
        Self::with_store(LocalStore::new(), cfg, transport)
    }

    /// A new hypervisor over an existing store (a host reboot: the records
    /// are kept, no domain survives).
    pub fn with_store(
        store: LocalStore,
        mut cfg: ToolstackConfig,
        transport: Transport,
    ) -> Result<Host, StartError> {
        let hv = Hypervisor::new();
        register_images(&hv, &store, transport);
        let ring = match transport {
            Transport::Ring => {
                let r = start_ring_server(&hv, &store)?;
                cfg.xenstore_domid = r.dom;
                Some(r)
            }
            Transport::Direct => None,
        };
        let toolstack = Toolstack::new(hv.dom0(), store.clone(), store.clone(), cfg)?;
        Ok(Host {
            hv,
            store,
            toolstack,
            ring,
        })
    }

    /// Stops the toolstack and starts a new one over the same hypervisor,
    /// store and xenstore domain (running VMs are re-attached).
    pub fn restart_toolstack(&mut self, mut cfg: ToolstackConfig) -> Result<(), StartError> {
        self.toolstack.stop();
        if let Some(r) = &self.ring {
            cfg.xenstore_domid = r.dom;
        }
        self.toolstack =
            Toolstack::new(self.hv.dom0(), self.store.clone(), self.store.clone(), cfg)?;
        Ok(())
    }

    /// The domains that make up the host itself: dom0 and, in ring mode,
    /// the xenstore domain.
    pub fn service_domains(&self) -> Vec<DomId> {
        let mut v = std::vec![DomId::DOM0];
        v.extend(self.ring.as_ref().map(|r| r.dom));
        v
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.toolstack.stop();
        if let Some(mut r) = self.ring.take() {
            r.stop.store(true, Ordering::Release);
            (r.kick)();
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
            let _ = self.hv.dom0().destroy(r.dom);
        }
    }
}
