//! `guest-hello`: the smallest Windsor guest.
//!
//! Built by a Windsor dom0 (the Xen-mode `DomainBuilder`) as a PVH domU:
//! it reports its domain id, command line, the xenstore ring the builder
//! set up and the time since it started on the debug console (port 0xe9,
//! which Xen prints as `(dN) …`), then powers off (`SCHEDOP_shutdown`).
//!
//! With `xenbus` on its command line (the Windsor dom0 adds it) it is a
//! xenstore client instead, speaking the fuzz-target guest's protocol
//! (relative to `/local/domain/<id>`): writes `data/booted = 1`, then
//! `data/state = running`, watches `control/shutdown`, and on `poweroff`
//! (or `halt`, `reboot`, `suspend`, `crash`) acknowledges by writing `""`,
//! sets `data/state = shutting-down:<reason>` and shuts down with that
//! reason. More words:
//!
//! * `panic`: panics right after `data/booted` (a guest that crashes on
//!   purpose, with a live xenstore connection to clean up);
//! * `vchan=N`: before reporting running, offers a vchan to dom0 under
//!   `data/vchan/0/checksum`; once running, streams `N` pseudo-random bytes
//!   through it and writes their FNV-1a 64 (16 hex digits) to
//!   `data/vchan-checksum`.
//!
//! (The default host's guest is the real fuzz-target image,
//! `images/fuzz-target`; this mode is for the tests' crash and vchan cases.)
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
        if xen
            .cmdline()
            .split_ascii_whitespace()
            .any(|w| w == "xenbus")
        {
            return crate::xenbus::main(xen);
        }
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

/// The xenstore-client mode (see the crate doc).
#[cfg(target_os = "none")]
mod xenbus {
    use alloc::format;
    use core::time::Duration;
    use vchan::{ServerConfig, Vchan};
    use windsor_unikernel::xen::platform::{Clock, Platform, ShutdownReason};
    use windsor_unikernel::xen::DomId;
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::client::{TxId, XenStore};
    use windsor_xenstore::xenbus::XenbusClient;

    const T: TxId = TxId::NONE;

    fn word<'a>(xen: &'a Xen, key: &str) -> Option<&'a str> {
        xen.cmdline()
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key))
    }

    fn request(v: &[u8]) -> Option<ShutdownReason> {
        Some(match v {
            b"poweroff" | b"halt" => ShutdownReason::Poweroff,
            b"reboot" => ShutdownReason::Reboot,
            b"suspend" => ShutdownReason::Suspend,
            b"crash" => ShutdownReason::Crash,
            _ => return None,
        })
    }

    pub(super) fn main(xen: &'static Xen) -> ShutdownReason {
        let dom = xen.domid();
        let Some(ring) = xen.store_ring() else {
            panic!("xenbus mode without a xenstore ring");
        };
        let xs = XenbusClient::with_ring(xen, ring.page, ring.port).expect("ring page");
        xs.write(T, "data/booted", b"1").expect("write data/booted");
        println!(
            "guest-hello: d{dom} connected to xenstore in {} us (port {}), wrote data/booted",
            xen.now().saturating_sub(boot_time()).as_micros(),
            ring.port
        );
        if word(xen, "panic").is_some() {
            panic!("guest panic requested on the command line");
        }
        let stream: Option<usize> = word(xen, "vchan=").and_then(|n| n.parse().ok());
        let mut chan = stream.map(|_| {
            let path = vchan::rendezvous::path(dom, DomId::DOM0, "checksum");
            let cfg = ServerConfig {
                server: dom,
                client: DomId::DOM0,
                path: &path,
                read_min: 1024,
                write_min: 64 * 1024,
            };
            Vchan::server(xen, &xs, &cfg).expect("offer the vchan")
        });
        xs.write(T, "data/state", b"running")
            .expect("write data/state");
        xs.watch("control/shutdown", "shutdown")
            .expect("watch control/shutdown");
        if let (Some(n), Some(v)) = (stream, chan.as_mut()) {
            let t0 = xen.now();
            let mut sum: u64 = 0xcbf2_9ce4_8422_2325;
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(dom.0);
            let mut buf = [0u8; 8192];
            let mut sent = 0;
            while sent < n {
                let k = buf.len().min(n - sent);
                for b in &mut buf[..k] {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                    sum ^= u64::from(*b);
                    sum = sum.wrapping_mul(0x0000_0100_0000_01b3);
                }
                v.write(&buf[..k]).expect("vchan write");
                sent += k;
            }
            xs.write(T, "data/vchan-checksum", format!("{sum:016x}").as_bytes())
                .expect("write data/vchan-checksum");
            println!(
                "guest-hello: d{dom} sent {n} bytes over vchan in {} us, fnv1a64 {sum:016x}",
                (xen.now() - t0).as_micros()
            );
        }
        loop {
            match xs.next_event(Some(Duration::from_secs(1))) {
                Ok(_) => {}
                Err(windsor_xenstore::client::ClientError::Timeout) => continue,
                Err(e) => panic!("xenstore connection lost: {e}"),
            }
            let Ok(v) = xs.read(T, "control/shutdown") else {
                continue;
            };
            if let Some(reason) = request(&v) {
                let _ = xs.write(T, "control/shutdown", b"");
                let state = format!("shutting-down:{}", core::str::from_utf8(&v).unwrap_or("?"));
                let _ = xs.write(T, "data/state", state.as_bytes());
                println!("guest-hello: d{dom} asked to {state}; going");
                drop(chan);
                return reason;
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
