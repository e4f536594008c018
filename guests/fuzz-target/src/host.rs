//! Host mode: the fuzz-target as a thread under the simulated hypervisor.
//!
//! The runner registers the image once per host:
//!
//! ```ignore
//! hv.register_image(IMAGE, move |dom| host::entry_with(dom, |d| Some(store.connect(d))));
//! ```
//!
//! The guest is handed its xenstore client by the runner: either its ring
//! ([`crate::boot`] with a `XenbusClient` on the ring of its start info) or
//! a connection the runner makes for its domid. [`entry_with`] asks for a
//! new connection, for the new domid, after each resume; [`entry`] has a
//! single connection and so cannot go on after a resume.

use windsor_xenstore_client::XenStore;
use xen::platform::Platform;
use xen::DomId;
use xen_sim::SimDomain;

use crate::{boot, run, Outcome};

/// The entry point of the host-mode image: runs the guest on `dom` with
/// the xenstore connection `xs`, then returns (a return without a
/// shutdown is a poweroff for the simulator).
pub fn entry<S: XenStore>(dom: SimDomain, xs: S) -> Outcome {
    run(&dom, &xs)
}

/// The entry point with a connector: `connect(domid)` gives a connection
/// acting for `domid`, at boot and after every resume (when the domid is
/// new).
pub fn entry_with<S: XenStore>(
    dom: SimDomain,
    mut connect: impl FnMut(DomId) -> Option<S>,
) -> Outcome {
    boot(&dom, || connect(dom.domid()))
}
