//! `guest-hello`: the smallest Windsor guest.
//!
//! Built by a Windsor dom0 (the Xen-mode `DomainBuilder`) as a PVH domU:
//! it reports its domain id, command line, the xenstore ring the builder
//! set up and the time since it started on the debug console (port 0xe9,
//! which Xen prints as `(dN) …`), then powers off (`SCHEDOP_shutdown`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use windsor_unikernel::xen::platform::{Clock, Platform, ShutdownReason};
    use windsor_unikernel::{boot_time, println, Xen};

    windsor_unikernel::main!(main);

    fn main(xen: &'static Xen) -> ShutdownReason {
        let ring = xen.store_ring();
        let since = xen.now().saturating_sub(boot_time());
        println!(
            "guest-hello: dom{} up in {} us, cmdline {:?}, xenstore ring {}",
            xen.domid(),
            since.as_micros(),
            xen.cmdline(),
            match &ring {
                Some(r) => r.port.0 as i64,
                None => -1,
            }
        );
        if xen.cmdline().split_ascii_whitespace().any(|w| w == "panic") {
            panic!("guest panic requested on the command line");
        }
        ShutdownReason::Poweroff
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
