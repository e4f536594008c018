//! `blkback`: the block driver domain in Xen mode.
//!
//! The blkback core's one-loop server ([`windsor_blkback::poll`]: the same
//! ring, request and handshake code as host mode's threaded service) over
//! the PVH runtime's `Xen` (grant map for the rings, `GNTTABOP_copy` for
//! the data, event channels) and a xenstore client on the domain's own
//! ring. It serves every VBD the toolstack writes under
//! `/local/domain/<me>/backend/vbd`.
//!
//! **Storage is memory**: each `disk=<name>:<MiB>` word of the command
//! line (the host description's `[[services]] kind = "blkback"` entry)
//! makes a zeroed [`RamDisk`] of that size, allocated whole at start-up
//! (refused if the domain's heap cannot hold it with room to spare); a
//! VBD whose `params` is `<name>` is served from it. The disks live as
//! long as this domain, so a guest that reboots (a new domain, new VBD
//! directories) finds its data again. A disk of the QEMU machine is not
//! reachable yet: it would take a PCI storage driver in the unikernel and
//! the device passed through to this domain.
//!
//! It also offers the `windsor-control` channel to dom0
//! (`data/vchan/0/control`): `Plug`/`Unplug` of VBDs are acknowledged
//! (the backend directories themselves start and stop the service of a
//! device), `Counters` and `Health` report the devices, `Restart` makes
//! it power off once dom0 has read the answer and closed the channel (2 s
//! at most); `control/shutdown` makes it power off at once.
//!
//! Every event of the server is one console line, `blkback: <dir>: ...`
//! (`(dN) blkback: ...` in Xen's log), with the device's counters
//! (`reads`, `writes`, `flushes`, ...) when it disconnects or is removed.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod image {
    use alloc::format;
    use alloc::string::String;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::time::Duration;
    use windsor_blkback::poll::{Config, Counters, Server};
    use windsor_blkback::storage::ram::RamDisk;
    use windsor_blkback::storage::Storage;
    use windsor_control::endpoint::Server as Control;
    use windsor_control::{
        DeviceCounters, DeviceId, DeviceKind, DeviceState, ErrorCode, Health, Request, Response,
        VbdCounters,
    };
    use windsor_unikernel::xen::platform::{Clock, EventChannel, Platform, ShutdownReason};
    use windsor_unikernel::xen::DomId;
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::client::{ClientError, TxId, XenStore};
    use windsor_xenstore::xenbus::XenbusClient;

    windsor_unikernel::main!(main);

    const T: TxId = TxId::NONE;
    /// Heap left free beyond the disks (rings, buffers, xenstore).
    const RESERVE: usize = 8 << 20;
    /// Largest disk accepted.
    const MAX_DISK_MIB: u64 = 4096;

    /// The `disk=<name>:<MiB>` words of the command line.
    fn disk_words(cmdline: &str) -> impl Iterator<Item = Result<(&str, u64), &str>> {
        cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("disk="))
            .map(|w| {
                let (name, mib) = w.split_once(':').ok_or(w)?;
                let mib: u64 = mib.parse().map_err(|_| w)?;
                if name.is_empty() || mib == 0 || mib > MAX_DISK_MIB {
                    return Err(w);
                }
                Ok((name, mib))
            })
    }

    fn vbd_counters(c: &Counters) -> VbdCounters {
        VbdCounters {
            reads: c.reads,
            writes: c.writes,
            read_bytes: c.bytes_read,
            write_bytes: c.bytes_written,
            errors: c.refused,
        }
    }

    fn main(xen: &'static Xen) -> ShutdownReason {
        let me = xen.domid();
        let Some(ring) = xen.store_ring() else {
            panic!("blkback: no xenstore ring (HVM_PARAM_STORE_PFN unset)");
        };
        let xs = XenbusClient::with_ring(xen, ring.page, ring.port).expect("ring page");
        let mut disks: Vec<(String, Arc<dyn Storage>)> = Vec::new();
        for w in disk_words(xen.cmdline()) {
            let (name, mib) = match w {
                Ok(x) => x,
                Err(w) => {
                    println!(
                        "blkback: d{me}: ignoring malformed word disk={w:?} (disk=<name>:<MiB>)"
                    );
                    continue;
                }
            };
            let bytes = (mib as usize) << 20;
            let free = xen.heap_free();
            if bytes.saturating_add(RESERVE) > free || disks.iter().any(|(n, _)| n == name) {
                println!(
                    "blkback: d{me}: disk {name:?} of {mib} MiB refused (duplicate, or more than \
                     the {} MiB of heap free less {} MiB)",
                    free >> 20,
                    RESERVE >> 20
                );
                continue;
            }
            match RamDisk::new(bytes as u64) {
                Some(d) => disks.push((name.into(), Arc::new(d))),
                None => println!("blkback: d{me}: disk {name:?}: out of memory"),
            }
        }
        let mut server = Server::new(xen, me, Config::default());
        let root = String::from(server.root());
        let set_up = xs
            .watch(&root, "vbds")
            .and_then(|()| xs.watch("control/shutdown", "shutdown"));
        if let Err(e) = set_up {
            panic!("blkback: d{me}: cannot watch {root}: {e}");
        }
        let mut control = Control::offer(xen, &xs, me, DomId::DOM0, "blkback").ok();
        if control.is_none() {
            println!("blkback: d{me}: could not offer the control channel; serving without it");
        }
        let _ = xs.write(T, "data/state", b"running");
        let list: Vec<String> = disks
            .iter()
            .map(|(n, d)| format!("{n} ({} MiB)", d.len() >> 20))
            .collect();
        println!(
            "blkback: d{me} up in {} us: RAM disks [{}], serving {root}, {} MiB heap free",
            xen.now().saturating_sub(boot_time()).as_micros(),
            list.join(", "),
            xen.heap_free() >> 20
        );
        let mut open = |params: &str, _writable: bool| -> Result<Arc<dyn Storage>, String> {
            disks
                .iter()
                .find(|(n, _)| n == params)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| format!("no RAM disk named {params:?}"))
        };
        let mut changed = true;
        // Set once asked to stop: until then (bounded) the control client
        // may still read our answer.
        let mut stop: Option<Duration> = None;
        let linger = Duration::from_secs(2);
        loop {
            loop {
                match xs.next_event(Some(Duration::ZERO)) {
                    Ok(_) => changed = true,
                    Err(ClientError::Timeout) => break,
                    Err(e) => {
                        println!("blkback: d{me}: xenstore connection lost ({e}); powering off");
                        return ShutdownReason::Poweroff;
                    }
                }
            }
            if changed {
                if let Ok(v) = xs.read(T, "control/shutdown") {
                    if matches!(&v[..], b"poweroff" | b"halt" | b"reboot") {
                        let _ = xs.write(T, "control/shutdown", b"");
                        stop = Some(xen.now());
                    }
                }
            }
            let more = match server.poll(&xs, changed, &mut open) {
                Ok(m) => m,
                Err(e) => {
                    println!("blkback: d{me}: stopped: {e}");
                    return ShutdownReason::Poweroff;
                }
            };
            changed = false;
            for e in server.take_events() {
                println!("blkback: {e}");
            }
            if let Some(c) = control.as_mut() {
                // Cleared before reading (the non-blocking channel leaves
                // it raised), so that the wait below sleeps.
                let _ = xen.clear_pending(c.port());
                let r = c.poll(|req| match req {
                    Request::Plug { device, .. } | Request::Unplug { device }
                        if device.kind != DeviceKind::Vbd =>
                    {
                        Response::Error(ErrorCode::WrongKind)
                    }
                    // The toolstack's backend directory starts (and its
                    // removal stops) the service of a device.
                    Request::Plug { .. } | Request::Unplug { .. } => Response::Ok,
                    Request::Counters { device } => Response::Counters(
                        server
                            .device_list()
                            .into_iter()
                            .map(|(front, devid, _, c)| {
                                (
                                    DeviceId {
                                        kind: DeviceKind::Vbd,
                                        frontend: front.0,
                                        devid,
                                    },
                                    DeviceCounters::Vbd(vbd_counters(&c)),
                                )
                            })
                            .filter(|(id, _)| device.is_none_or(|d| d == *id))
                            .collect(),
                    ),
                    Request::Health => Response::Health(Health {
                        uptime_ms: xen.now().saturating_sub(boot_time()).as_millis() as u64,
                        devices: server
                            .device_list()
                            .into_iter()
                            .map(|(front, devid, up, _)| {
                                (
                                    DeviceId {
                                        kind: DeviceKind::Vbd,
                                        frontend: front.0,
                                        devid,
                                    },
                                    if up {
                                        DeviceState::Connected
                                    } else {
                                        DeviceState::Waiting
                                    },
                                )
                            })
                            .collect(),
                    }),
                    Request::Restart => {
                        stop = stop.or(Some(xen.now() + linger));
                        Response::Ok
                    }
                    Request::Hello => Response::Ok,
                });
                if let Err(e) = r {
                    if let Some(c) = control.take() {
                        c.close(&xs);
                    }
                    if let Some(at) = stop.as_mut() {
                        // The client read the answer to Restart and left.
                        *at = xen.now();
                    } else {
                        // The client left or broke the channel: offer a
                        // new one.
                        println!("blkback: d{me}: control channel closed ({e}); offering it again");
                        control = Control::offer(xen, &xs, me, DomId::DOM0, "blkback").ok();
                    }
                }
            }
            if stop.is_some_and(|at| xen.now() >= at) {
                for (front, devid, _, c) in server.device_list() {
                    println!("blkback: d{front}/{devid} at stop: {c}");
                }
                println!("blkback: d{me}: asked to stop; powering off");
                return ShutdownReason::Poweroff;
            }
            if !more {
                let mut ports = server.ports();
                ports.push(xs.port());
                if let Some(c) = &control {
                    ports.push(c.port());
                }
                let nap = match stop {
                    Some(_) => Duration::from_millis(10),
                    None => Duration::from_millis(500),
                };
                let _ = xen.wait(&ports, Some(nap));
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
