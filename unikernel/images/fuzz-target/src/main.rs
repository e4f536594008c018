//! `fuzz-target`: the fuzz-target guest (`guests/fuzz-target`) in Xen mode.
//!
//! The guest's core ([`windsor_guest_fuzz_target::run`]) is the same code
//! as in host mode; this image only gives it the platform (the PVH
//! runtime's `Xen`) and a xenstore client over
//! the domain's xenstore ring ([`XenbusClient`](windsor_xenstore::xenbus::XenbusClient)
//! on the page and port the builder set in `HVM_PARAM_STORE_PFN/EVTCHN`).
//! The core answers `control/shutdown` (and `control/misbehave`) by
//! shutting the domain down itself; if it returns, it lost its store.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use windsor_guest_fuzz_target::{run, Outcome};
    use windsor_unikernel::xen::platform::{Clock, Platform, ShutdownReason};
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::xenbus::XenbusClient;

    windsor_unikernel::main!(main);

    fn main(xen: &'static Xen) -> ShutdownReason {
        let Some(ring) = xen.store_ring() else {
            panic!("fuzz-target: no xenstore ring (HVM_PARAM_STORE_PFN unset)");
        };
        let xs = XenbusClient::with_ring(xen, ring.page, ring.port).expect("ring page");
        println!(
            "fuzz-target: d{} up in {} us, xenstore on port {}",
            xen.domid(),
            xen.now().saturating_sub(boot_time()).as_micros(),
            ring.port
        );
        match run(xen, &xs) {
            Outcome::Shutdown(r) => r,
            o @ (Outcome::StoreGone | Outcome::Killed) => {
                println!("fuzz-target: d{}: {o:?}; powering off", xen.domid());
                ShutdownReason::Poweroff
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
