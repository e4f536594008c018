//! Host mode's composition (feature `host`): the simulated hypervisor, a
//! xenstore domain, the built-in guest images and the toolstack on dom0.
//! Every host-mode host is composed here: tests and benchmarks with
//! [`Host::start`] (an in-process store, [`LocalXenstore`]), `windsor up`
//! (the `windsor` crate's `host` module) with [`Host::compose`] over its
//! persistent xenstore daemon, adding the driver domains and the API.
//!
//! The steps, in order:
//! 1. a [`Hypervisor`];
//! 2. the xenstore domain, which serves dom0 and the guests: anything that
//!    is a [`XenstoreDomain`] (the caller starts it on the hypervisor);
//! 3. the caller's other service domains, if any
//!    ([`Host::add_service_domain`]);
//! 4. [`Host::compose`]: registers the guest images (the fuzz-target,
//!    reaching xenstore as the xenstore domain says)
//!    and starts the [`Toolstack`] on dom0 over the xenstore domain's dom0
//!    connection and introducer.
//!
//! Teardown is the reverse: [`Host::stop_guests`] (the toolstack stops,
//! every guest is destroyed and released from the store), then the
//! xenstore domain is stopped ([`XenstoreDomain::stop`]); dropping a host
//! stops the toolstack and the xenstore domain.
//!
//! [`LocalXenstore`] is the in-process store of tests and benchmarks. How
//! its guests reach xenstore is the [`Transport`]:
//! * [`Transport::Ring`] (the default): a xenstore domain (a domain of the
//!   simulator, served by a thread) runs the xenbus ring server
//!   ([`XenbusServer`]) over the same store; introduction maps each
//!   guest's ring (reserved grant 1) and binds its port, and the guest
//!   talks through [`XenbusClient`] on the ring its builder prepared — the
//!   same path as in Xen mode and in `windsor up`.
//! * [`Transport::Direct`]: each guest gets an in-process [`LocalStore`]
//!   connection acting for its domid (no ring; the first host-mode wiring,
//!   kept for comparison and as a fallback).
//!
//! The toolstack itself (dom0) always uses the connection the xenstore
//! domain gives dom0 ([`XenstoreDomain::dom0_store`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec::Vec;

use windsor_xenstore::xenbus::{ServerConfig, XenbusClient, XenbusServer};
use windsor_xenstore_client::XenStore;
use xen::platform::{Console, CreateConfig, DomainControl, EventChannel, Platform, ShutdownReason};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

use crate::localstore::LocalStore;
use crate::service::{Introducer, StartError, Toolstack, ToolstackConfig, FUZZ_IMAGE};

/// What serves xenstore to a host: dom0's connection, introduction of
/// guests, and how guests reach it.
pub trait XenstoreDomain {
    /// dom0's connection (the toolstack's).
    type Store: XenStore + Clone + Send + Sync + 'static;
    /// What sends `XS_INTRODUCE`/`XS_RELEASE` for the toolstack.
    type Intro: Introducer + Send + Sync + 'static;

    /// The domain serving the guests' rings; `None` when guests do not use
    /// rings ([`Transport::Direct`]).
    fn domid(&self) -> Option<DomId>;
    /// The connection the toolstack uses.
    fn dom0_store(&self) -> Self::Store;
    /// The toolstack's introducer.
    fn introducer(&self) -> Self::Intro;
    /// How the built-in guests reach xenstore ([`Transport::Ring`] unless
    /// the store says otherwise).
    fn transport(&self) -> Transport {
        Transport::Ring
    }
    /// The in-process store a [`Transport::Direct`] guest connects to.
    fn local_store(&self) -> Option<&LocalStore> {
        None
    }
    /// Asks the xenstore domain to stop (the toolstack has stopped). Called
    /// again when the host is dropped: a second call does nothing.
    fn stop(&mut self, hv: &Hypervisor);
}

/// How guests reach xenstore in host mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Their xenbus ring, served by a xenstore domain.
    #[default]
    Ring,
    /// An in-process connection acting for their domid.
    Direct,
}

/// The in-process xenstore of tests and benchmarks: a [`LocalStore`] and,
/// with [`Transport::Ring`], a xenstore domain whose thread serves the
/// guests' rings over it.
pub struct LocalXenstore {
    store: LocalStore,
    ring: Option<RingServer>,
}

/// The xenstore domain of a [`LocalXenstore`] in ring mode.
struct RingServer {
    dom: DomId,
    stop: Arc<AtomicBool>,
    kick: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<()>>,
}

impl LocalXenstore {
    /// Serves `store` to the guests of `hv` over `transport`.
    pub fn start(
        hv: &Hypervisor,
        store: LocalStore,
        transport: Transport,
    ) -> Result<Self, StartError> {
        let ring = match transport {
            Transport::Ring => Some(start_ring_server(hv, &store)?),
            Transport::Direct => None,
        };
        Ok(LocalXenstore { store, ring })
    }
}

impl XenstoreDomain for LocalXenstore {
    type Store = LocalStore;
    type Intro = LocalStore;

    fn domid(&self) -> Option<DomId> {
        self.ring.as_ref().map(|r| r.dom)
    }

    fn dom0_store(&self) -> LocalStore {
        self.store.clone()
    }

    fn introducer(&self) -> LocalStore {
        self.store.clone()
    }

    fn transport(&self) -> Transport {
        match self.ring {
            Some(_) => Transport::Ring,
            None => Transport::Direct,
        }
    }

    fn local_store(&self) -> Option<&LocalStore> {
        Some(&self.store)
    }

    fn stop(&mut self, hv: &Hypervisor) {
        if let Some(mut r) = self.ring.take() {
            r.stop.store(true, Ordering::Release);
            (r.kick)();
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
            let _ = hv.dom0().destroy(r.dom);
        }
    }
}

/// A whole host in one process.
pub struct Host<X: XenstoreDomain = LocalXenstore> {
    /// The simulated hypervisor.
    pub hv: Hypervisor,
    /// The toolstack's (dom0's) connection to the store.
    pub store: X::Store,
    /// The toolstack.
    pub toolstack: Toolstack<SimDomain, X::Store, X::Intro>,
    xenstore: X,
    /// dom0, the xenstore domain and the caller's service domains.
    services: Vec<DomId>,
}

/// Registers the built-in guest images with `hv`: their xenstore client is
/// their ring ([`Transport::Ring`]) or a connection to `store`.
fn register_images(hv: &Hypervisor, store: Option<&LocalStore>, transport: Transport) {
    match (transport, store) {
        (Transport::Direct, Some(store)) => register_direct_images(hv, store),
        _ => register_ring_images(hv),
    }
}

/// Registers the built-in guest images with `hv`, each guest reaching
/// xenstore over its own xenbus ring (the page and port its builder put in
/// its start info).
fn register_ring_images(hv: &Hypervisor) {
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

impl Host<LocalXenstore> {
    /// A new host with a fresh in-process store, guests on their rings.
    pub fn start(cfg: ToolstackConfig) -> Result<Self, StartError> {
        Self::start_with(cfg, Transport::default())
    }

    /// A new host with a fresh in-process store and the given guest
    /// transport.
    pub fn start_with(cfg: ToolstackConfig, transport: Transport) -> Result<Self, StartError> {
        Self::with_store(LocalStore::new(), cfg, transport)
    }

    /// A new hypervisor over an existing store (a host reboot: the records
    /// are kept, no domain survives).
    pub fn with_store(
        store: LocalStore,
        cfg: ToolstackConfig,
        transport: Transport,
    ) -> Result<Self, StartError> {
        let hv = Hypervisor::new();
        let xenstore = LocalXenstore::start(&hv, store, transport)?;
        Self::compose(hv, xenstore, cfg)
    }
}

impl<X: XenstoreDomain> Host<X> {
    /// Composes a host on `hv` whose xenstore domain already serves:
    /// registers the guest images and starts the toolstack on dom0 (its
    /// `xenstore_domid` set to the xenstore domain's).
    pub fn compose(
        hv: Hypervisor,
        xenstore: X,
        mut cfg: ToolstackConfig,
    ) -> Result<Self, StartError> {
        register_images(&hv, xenstore.local_store(), xenstore.transport());
        let mut services = std::vec![DomId::DOM0];
        if let Some(d) = xenstore.domid() {
            cfg.xenstore_domid = d;
            services.push(d);
        }
        let store = xenstore.dom0_store();
        let toolstack = Toolstack::new(hv.dom0(), store.clone(), xenstore.introducer(), cfg)?;
        Ok(Host {
            hv,
            store,
            toolstack,
            xenstore,
            services,
        })
    }

    /// Stops the toolstack and starts a new one over the same hypervisor,
    /// store and xenstore domain (running VMs are re-attached).
    pub fn restart_toolstack(&mut self, mut cfg: ToolstackConfig) -> Result<(), StartError> {
        self.toolstack.stop();
        if let Some(d) = self.xenstore.domid() {
            cfg.xenstore_domid = d;
        }
        self.toolstack = Toolstack::new(
            self.hv.dom0(),
            self.store.clone(),
            self.xenstore.introducer(),
            cfg,
        )?;
        Ok(())
    }

    /// Counts `d` among the domains that make up the host itself (a
    /// driver domain): [`Host::stop_guests`] leaves it alone.
    pub fn add_service_domain(&mut self, d: DomId) {
        if !self.services.contains(&d) {
            self.services.push(d);
        }
    }

    /// The domains that make up the host itself: dom0, the xenstore domain
    /// (if it is one) and those of [`Host::add_service_domain`].
    pub fn service_domains(&self) -> Vec<DomId> {
        self.services.clone()
    }

    /// Stops the toolstack, then destroys every guest (every domain that
    /// is not a service domain) and releases it from the store, so the
    /// store keeps no introduced domain that no longer exists even if the
    /// xenstore domain is told to stop before it notices the deaths.
    pub fn stop_guests(&self) {
        self.toolstack.stop();
        let dom0 = self.hv.dom0();
        let intro = self.xenstore.introducer();
        for d in self.hv.domains() {
            if self.services.contains(&d) {
                continue;
            }
            let _ = dom0.destroy(d);
            if let Err(e) = intro.release(d) {
                tracing::warn!(dom = d.0, error = %e, "xenstore release failed");
            }
        }
    }

    /// Asks the xenstore domain to stop (after [`Host::stop_guests`]).
    pub fn stop_xenstore(&mut self) {
        self.xenstore.stop(&self.hv);
    }
}

impl<X: XenstoreDomain> Drop for Host<X> {
    fn drop(&mut self) {
        self.toolstack.stop();
        self.xenstore.stop(&self.hv);
    }
}
