//! `netback`: the network driver domain in Xen mode.
//!
//! The netback service of `windsor-netback` (netif backends over grant
//! copy, the learning switch between the VIFs, the `windsor-control`
//! server) is generic over the platform traits; this image gives it the
//! PVH runtime's `Xen` and a xenstore client over the domain's xenbus ring
//! (the page and port the builder set in `HVM_PARAM_STORE_PFN/EVTCHN`),
//! and prints the service's `tracing` lines on the console
//! (`loglevel=` on the command line, `info` by default).
//!
//! dom0 builds it from the boot bundle (a `[[services]] kind = "netback"`
//! entry), gives it a home `/local/domain/<id>` it owns, introduces it to
//! xenstore and connects to the control channel the service offers under
//! `/local/domain/<id>/data/vchan/0/control`. Then dom0 writes each
//! guest's VIF in the standard layout (`backend/vif/<fe>/<n>` under this
//! domain, `device/vif/<n>` under the guest) and sends `Plug`; the service
//! takes the xenbus handshake from there with the guest's netfront
//! (Linux's `xen-netfront` or Windsor's). There is no uplink: the guests
//! of the host talk among themselves.
//!
//! The service returns when dom0 sends `Restart` (then the domain powers
//! off) or when a wait is refused (the domain is being destroyed).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use core::time::Duration;
    use windsor_netback::service::{Netback, NoUplink};
    use windsor_unikernel::xen::platform::{Clock, EventChannel, Platform, ShutdownReason};
    use windsor_unikernel::xen::DomId;
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::xenbus::XenbusClient;

    windsor_unikernel::main!(main);

    /// The longest the service sleeps between looks at xenstore (its
    /// watches arrive on the xenstore ring, whose port the service does
    /// not wait on) when no VIF or control event wakes it.
    const IDLE: Duration = Duration::from_millis(5);
    /// How long the stopped service keeps its control channel open.
    const LINGER: Duration = Duration::from_millis(500);

    fn main(xen: &'static Xen) -> ShutdownReason {
        let level = windsor_unikernel::log::level_from(xen.cmdline(), tracing::Level::INFO);
        windsor_unikernel::log::init("netback", level);
        let Some(ring) = xen.store_ring() else {
            panic!("netback: no xenstore ring (HVM_PARAM_STORE_PFN unset)");
        };
        let xs = XenbusClient::with_ring(xen, ring.page, ring.port).expect("ring page");
        let me = xen.domid();
        println!(
            "netback: d{me} up in {} us; offering the control channel to d0",
            xen.now().saturating_sub(boot_time()).as_micros()
        );
        let mut nb = Netback::new(xen, &xs, me, DomId::DOM0, None::<NoUplink>);
        nb.run(IDLE);
        // The answer to `Restart` is in the control ring: let dom0 read it
        // before the channel goes away with the service.
        let _ = xen.wait(&[], Some(LINGER));
        drop(nb);
        println!("netback: d{me}: service stopped; powering off");
        ShutdownReason::Poweroff
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
