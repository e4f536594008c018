//! Host mode: the fuzz-target as a thread under the simulated hypervisor.
//!
//! The runner registers the image once per host:
//!
//! ```ignore
//! hv.register_image(IMAGE, move |dom| host::entry(dom, store.connect(dom.domid())));
//! ```
//!
//! The guest is handed its xenstore client by the runner: until the xenbus
//! ring transport exists, an in-process connection to the shared store
//! acting for the guest's domid (the ring page and port that the builder
//! prepared are left unused).

use windsor_xenstore::client::XenStore;
use xen_sim::SimDomain;

use crate::{run, Outcome};

/// The entry point of the host-mode image: runs the guest on `dom` with
/// the xenstore connection `xs`, then returns (a return without a
/// shutdown is a poweroff for the simulator).
pub fn entry<S: XenStore>(dom: SimDomain, xs: S) -> Outcome {
    run(&dom, &xs)
}
