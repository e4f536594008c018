//! Host mode: the toolstack on the simulated hypervisor, with an
//! in-process xenstore and the built-in guest images.
//!
//! [`Host::start`] makes a [`Hypervisor`], a [`LocalStore`] (unless one is
//! given, e.g. to restart over the same store), registers the fuzz-target
//! image, and starts a [`Toolstack`] on dom0.
//!
//! Guests reach xenstore through a [`LocalStore`] connection acting for
//! their domid, made when their image starts; the xenbus ring and port the
//! builder prepared are not used yet (the ring transport is another crate's
//! work in progress). The connection is closed when the guest returns.

use xen::platform::Platform;
use xen_sim::{Hypervisor, SimDomain};

use crate::localstore::LocalStore;
use crate::service::{Config, StartError, Toolstack, FUZZ_IMAGE};

/// The toolstack type of host mode.
pub type HostToolstack = Toolstack<SimDomain, LocalStore, LocalStore>;

/// A whole host in one process.
pub struct Host {
    /// The simulated hypervisor.
    pub hv: Hypervisor,
    /// The toolstack's (dom0's) connection to the store.
    pub store: LocalStore,
    /// The toolstack.
    pub toolstack: HostToolstack,
}

/// Registers the built-in guest images with `hv`; their xenstore
/// connections go to `store`.
pub fn register_images(hv: &Hypervisor, store: &LocalStore) {
    let s = store.clone();
    hv.register_image(FUZZ_IMAGE, move |dom: SimDomain| {
        let xs = s.connect(dom.domid());
        let outcome = windsor_guest_fuzz_target::host::entry(dom, xs.clone());
        tracing::debug!(?outcome, "fuzz-target returned");
        xs.close();
    });
}

impl Host {
    /// A new host with a fresh store.
    pub fn start(cfg: Config) -> Result<Host, StartError> {
        Self::with_store(LocalStore::new(), cfg)
    }

    /// A new hypervisor over an existing store (a toolstack restart keeps
    /// its records).
    pub fn with_store(store: LocalStore, cfg: Config) -> Result<Host, StartError> {
        let hv = Hypervisor::new();
        Self::with_parts(hv, store, cfg)
    }

    /// A toolstack over an existing hypervisor and store (images are
    /// registered again, harmlessly).
    pub fn with_parts(hv: Hypervisor, store: LocalStore, cfg: Config) -> Result<Host, StartError> {
        register_images(&hv, &store);
        let toolstack = Toolstack::new(hv.dom0(), store.clone(), store.clone(), cfg)?;
        Ok(Host {
            hv,
            store,
            toolstack,
        })
    }
}
