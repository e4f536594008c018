//! `guest-hello`: the smallest Windsor guest.
//!
//! Built by a Windsor dom0 (the Xen-mode `DomainBuilder`) as a PVH domU:
//! it reports its domain id, command line, the xenstore ring the builder
//! set up and the time since it started on the debug console (port 0xe9,
//! which Xen prints as `(dN) …`), then powers off (`SCHEDOP_shutdown`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::Ordering;
    use core::time::Duration;
    use windsor_unikernel::xen::platform::{Clock, EventChannel, Platform, ShutdownReason};
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
        if let Some(r) = &ring {
            // Say hello to dom0 on the ring page and wait for its answer:
            // text at 0, reply at 1024, flag word at 2048 (1: hello, 2: answered).
            let hello = alloc::format!("hello from dom{}\0", xen.domid());
            r.page.write_bytes(0, hello.as_bytes());
            r.page.atomic_u32(2048).store(1, Ordering::Release);
            xen.notify(r.port).expect("notify dom0");
            let deadline = xen.now() + Duration::from_secs(5);
            while r.page.atomic_u32(2048).load(Ordering::Acquire) != 2 && xen.now() < deadline {
                let _ = xen.wait(&[r.port], Some(Duration::from_millis(50)));
                let _ = xen.clear_pending(r.port);
            }
            let mut reply = [0u8; 64];
            r.page.read_bytes(1024, &mut reply);
            let len = reply.iter().position(|&b| b == 0).unwrap_or(0);
            println!(
                "guest-hello: dom0 answered {:?}",
                core::str::from_utf8(&reply[..len]).unwrap_or("<not UTF-8>")
            );
        }
        if xen.cmdline().split_ascii_whitespace().any(|w| w == "panic") {
            panic!("guest panic requested on the command line");
        }
        ShutdownReason::Poweroff
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
