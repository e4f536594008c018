//! The fuzz-target guest: the smallest useful Windsor guest, a target for
//! fuzzing the toolstack.
//!
//! It boots in microseconds, connects to xenstore, reports itself under its
//! domain path, answers `control/shutdown` and can be told to misbehave, so
//! that the toolstack's timeouts and crash handling get exercised.
//!
//! Layers:
//! * the core, [`run`]: `no_std`, generic over the
//!   [`Platform`] of the domain and a
//!   [`XenStore`] client; the same code
//!   for host mode and Xen mode;
//! * [`host`] (feature `host`): the entry point of the host-mode image,
//!   registered with `xen_sim::Hypervisor::register_image("fuzz-target", ..)`.
//!
//! # The xenstore protocol it speaks (relative to `/local/domain/<id>`)
//!
//! | node | who writes | meaning |
//! |---|---|---|
//! | `data/booted` | guest | `1` once it is up and listening (after its two watches) |
//! | `data/state` | guest | `running`, then `spinning` |
//! | `data/boot-id` | guest | a number (hex) it chose at first boot and keeps in memory: the same after a resume, new after a reboot |
//! | `data/resumes` | guest | how many times it resumed from a suspend (kept in memory; `0` at first boot); written last, after `data/boot-id` |
//! | `control/shutdown` | toolstack, guest | `poweroff`, `halt`, `reboot`, `suspend`; the guest acknowledges by writing `""`, as Linux does, then shuts itself down (`SCHEDOP_shutdown`) with that reason |
//!
//! # Suspend and resume
//!
//! On `suspend` the guest acknowledges, then makes the suspend call
//! ([`Platform::suspend_self`]). If it returns
//! [`Resumed`](SuspendOutcome::Resumed), the guest runs in a new domain:
//! [`boot`] drops the old xenstore connection, reconnects through its
//! connector (the ring of its start info, whose port is new; its domain
//! path now has the new domid), counts the resume and writes its nodes
//! again. If it returns [`Cancelled`](SuspendOutcome::Cancelled), it goes
//! on in the same domain. A platform without save/restore (`ENOSYS`, the
//! Xen-mode runtime so far) gets a plain `SHUTDOWN_suspend`, as before.
//! | `control/misbehave` | toolstack (or a test) | `ignore-shutdown`: leave requests unacknowledged and keep running; `crash`: `SHUTDOWN_crash` at once; `spin`: stop serving xenstore and spin until destroyed; `net-bad-gref`, `net-oversize`, `net-index-games`, `net-flood`: break the netif protocol on its tx ring (see `windsor_netfront::Misbehave`); `console-flood`: write console lines as fast as its console takes them, while still answering `control/shutdown` |
//! | `data/net` | guest | `up <ip>/<len>` once its network is connected, or `failed: <why>` |
//! | `control/disk`, `data/disk*` | see [`disk`] | a verifying write/flush/read workload on its first VBD |
//! | `control/net-echo` | toolstack (or a test) | `<ipv4> <bytes>`: send that many bytes to the TCP echo service of that address and check what comes back |
//! | `data/net-echo` | guest | `ok <bytes>` or `failed: <why>`; `data/net-echo-progress`: bytes back so far |
//!
//! # Console
//!
//! The guest writes through its platform's [`Console`](xen::platform::Console)
//! (in host mode its `io/console.h` ring, read by dom0's console backend):
//! `fuzz-target: dom <id> up, boot-id <hex>, resumes <n>` once it listens,
//! `fuzz-target: <request> requested` when it acts on `control/shutdown`,
//! and under `console-flood` numbered `fuzz-target: flood <n> ...` lines.
//!
//! # Network
//!
//! If the toolstack gave it a VIF (`device/vif/0`, with `ip` in the
//! backend's directory, as libxl writes it), the guest connects it with
//! Windsor's netfront at boot, answers ping and serves TCP echo (port 7)
//! while it waits for xenstore events.
//!
//! `spin` does not burn a host core: it polls the platform (a 10 ms
//! `SCHEDOP_poll` on no port) so that it notices being destroyed, and never
//! looks at xenstore again. To the toolstack it is a guest that hangs.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;

use alloc::string::String;
use windsor_netfront::{parse_cidr, Misbehave, Netfront, Stack};
use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::platform::{Platform, ShutdownReason, SuspendOutcome};

pub mod disk;
#[cfg(feature = "host")]
pub mod host;

/// The image name the toolstack uses in `PV_kernel`.
pub const IMAGE: &str = "fuzz-target";

/// Outside transactions.
const T_NONE: TxId = TxId::NONE;
/// How long the network handshake may take.
const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes a flood line about 80 bytes long.
const FLOOD_PAD: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Watch token of `control/shutdown`.
const TOK_SHUTDOWN: &str = "shutdown";
/// Watch token of `control/misbehave`.
const TOK_MISBEHAVE: &str = "misbehave";
/// Watch token of `control/disk`.
const TOK_DISK: &str = "disk";
/// Watch token of `control/net-echo`.
const TOK_ECHO: &str = "net-echo";
/// How long a `control/net-echo` transfer may take.
const ECHO_TIMEOUT: Duration = Duration::from_secs(120);

/// How the guest's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It shut itself down for this reason.
    Shutdown(ShutdownReason),
    /// Its xenstore connection went away (the domain was released or
    /// destroyed) or the store failed.
    StoreGone,
    /// The platform refused a call: the domain was shut down or destroyed
    /// from outside (or, suspended, its saved image was discarded).
    Killed,
}

/// What the guest keeps in its own memory across a suspend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Chosen at first boot.
    pub boot_id: u64,
    /// Resumes so far.
    pub resumes: u32,
}

impl Memory {
    /// The state of a first boot: a boot id from the clock and the domid.
    pub fn first_boot<P: Platform>(p: &P) -> Memory {
        let t = p.now().as_nanos() as u64;
        Memory {
            boot_id: t ^ (u64::from(p.domid().0) << 48) ^ 0x5eed_0000,
            resumes: 0,
        }
    }
}

/// How one connection's service ended.
enum Step {
    /// The guest is done.
    End(Outcome),
    /// It resumed in a new domain: reconnect.
    Resumed,
}

/// What `control/shutdown` asks for, if it is a request we know.
pub fn parse_request(v: &[u8]) -> Option<ShutdownReason> {
    Some(match v {
        b"poweroff" | b"halt" => ShutdownReason::Poweroff,
        b"reboot" => ShutdownReason::Reboot,
        b"suspend" => ShutdownReason::Suspend,
        b"crash" => ShutdownReason::Crash,
        _ => return None,
    })
}

/// Runs the guest on one xenstore connection until it shuts down or loses
/// its store. After a resume the connection acts for the old domain, so
/// the guest ends with [`Outcome::StoreGone`]: use [`boot`] to reconnect.
pub fn run<P: Platform, S: XenStore>(p: &P, xs: &S) -> Outcome {
    let mut mem = Memory::first_boot(p);
    match step(p, xs, &mut mem) {
        Step::End(o) => o,
        Step::Resumed => Outcome::StoreGone,
    }
}

/// Runs the guest until it shuts down or loses its store, connecting to
/// xenstore with `connect` at boot and again after every resume (`None`:
/// no store, the guest ends with [`Outcome::StoreGone`]).
pub fn boot<P: Platform, S: XenStore>(p: &P, mut connect: impl FnMut() -> Option<S>) -> Outcome {
    let mut mem = Memory::first_boot(p);
    loop {
        let Some(xs) = connect() else {
            return Outcome::StoreGone;
        };
        match step(p, &xs, &mut mem) {
            Step::End(o) => return o,
            Step::Resumed => {
                mem.resumes = mem.resumes.saturating_add(1);
                tracing::debug!(
                    dom = p.domid().0,
                    resumes = mem.resumes,
                    "fuzz-target resumed"
                );
            }
        }
    }
}

fn step<P: Platform, S: XenStore>(p: &P, xs: &S, mem: &mut Memory) -> Step {
    match serve(p, xs, mem) {
        Ok(s) => s,
        Err(ClientError::Disconnected) => Step::End(Outcome::StoreGone),
        Err(e) => {
            tracing::debug!(dom = p.domid().0, ?e, "fuzz-target: store failed");
            Step::End(Outcome::StoreGone)
        }
    }
}

fn serve<P: Platform, S: XenStore>(p: &P, xs: &S, mem: &Memory) -> Result<Step, ClientError> {
    const T: TxId = TxId::NONE;
    // Misbehaviour first: its initial watch event is then handled before
    // any shutdown request, even one written before we were listening.
    xs.watch("control/misbehave", TOK_MISBEHAVE)?;
    xs.watch("control/shutdown", TOK_SHUTDOWN)?;
    xs.watch("control/disk", TOK_DISK)?;
    xs.watch("control/net-echo", TOK_ECHO)?;
    // Booted = listening.
    xs.write(T, "data/booted", b"1")?;
    xs.write(T, "data/state", b"running")?;
    // Then what survives a suspend, `resumes` last (wait for it to read
    // both).
    let boot_id = format!("{:016x}", mem.boot_id);
    xs.write(T, "data/boot-id", boot_id.as_bytes())?;
    xs.write(T, "data/resumes", format!("{}", mem.resumes).as_bytes())?;
    p.write(
        format!(
            "fuzz-target: dom {} up, boot-id {boot_id}, resumes {}\n",
            p.domid().0,
            mem.resumes
        )
        .as_bytes(),
    );
    let mut net = connect_net(p, xs);
    let mut disk = disk::Disk::connect(p, xs);
    let mut ignore_shutdown = false;
    let mut flood: Option<u64> = None;
    loop {
        let ev = if let Some(n) = flood.as_mut() {
            // As fast as the console takes it (its writes wait for room);
            // a breath every 64 lines in case nothing serves the console.
            p.write(format!("fuzz-target: flood {n} {FLOOD_PAD}\n").as_bytes());
            *n += 1;
            if *n % 64 == 0 && p.wait(&[], Some(Duration::from_millis(1))).is_err() {
                return Ok(Step::End(Outcome::Killed));
            }
            match xs.next_event(Some(Duration::ZERO)) {
                Ok(ev) => ev,
                Err(ClientError::Timeout) => continue,
                Err(e) => return Err(e),
            }
        } else {
            match net.as_mut() {
                None => xs.next_event(None)?,
                Some(st) => match xs.next_event(Some(Duration::ZERO)) {
                    Ok(ev) => ev,
                    Err(ClientError::Timeout) => {
                        st.maintain(xs);
                        st.poll_wait(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            }
        };
        match ev.token.as_str() {
            TOK_MISBEHAVE => match read_opt(xs, "control/misbehave")?.as_deref() {
                Some(b"ignore-shutdown") => ignore_shutdown = true,
                Some(b"crash") => {
                    p.shutdown_self(ShutdownReason::Crash);
                    return Ok(Step::End(Outcome::Shutdown(ShutdownReason::Crash)));
                }
                // (A repeated event keeps the count going.)
                Some(b"console-flood") => {
                    flood.get_or_insert(0);
                }
                Some(b"spin") => {
                    let _ = xs.write(T, "data/state", b"spinning");
                    return Ok(Step::End(spin(p)));
                }
                Some(v) if Misbehave::parse(v).is_some() => {
                    if let (Some(st), Some(m)) = (net.as_mut(), Misbehave::parse(v)) {
                        st.netfront().misbehave(m);
                    }
                }
                _ => {
                    ignore_shutdown = false;
                    flood = None;
                }
            },
            TOK_DISK => {
                let Some(work) = read_opt(xs, "control/disk")?
                    .as_deref()
                    .and_then(disk::Work::parse)
                else {
                    continue;
                };
                let out = match disk.as_mut() {
                    Some(d) => d.run(xs, work),
                    None => "failed: no disk".into(),
                };
                xs.write(T, "data/disk", out.as_bytes())?;
            }
            TOK_ECHO => {
                let Some(req) = read_opt(xs, "control/net-echo")? else {
                    continue;
                };
                let Some((dst, len)) = parse_echo(&req) else {
                    continue;
                };
                let out = match net.as_mut() {
                    Some(st) => echo(st, xs, dst, len),
                    None => "failed: no network".into(),
                };
                xs.write(T, "data/net-echo", out.as_bytes())?;
            }
            TOK_SHUTDOWN => {
                let Some(v) = read_opt(xs, "control/shutdown")? else {
                    continue;
                };
                let Some(reason) = parse_request(&v) else {
                    continue;
                };
                if ignore_shutdown {
                    continue;
                }
                // Acknowledge, as Linux's xenbus driver does.
                xs.write(T, "control/shutdown", b"")?;
                p.write(
                    format!("fuzz-target: {} requested\n", String::from_utf8_lossy(&v)).as_bytes(),
                );
                if let Some(st) = net.take() {
                    st.into_netfront().close(xs);
                }
                if let Some(d) = disk.take() {
                    d.close(xs);
                }
                if reason != ShutdownReason::Suspend {
                    p.shutdown_self(reason);
                    return Ok(Step::End(Outcome::Shutdown(reason)));
                }
                match p.suspend_self() {
                    Ok(SuspendOutcome::Resumed) => return Ok(Step::Resumed),
                    // Same domain, same connection: go on (the network
                    // comes back).
                    Ok(SuspendOutcome::Cancelled) => {
                        net = connect_net(p, xs);
                        disk = disk::Disk::connect(p, xs);
                    }
                    Err(xen::platform::Error::Errno(xen::Errno::ENOSYS)) => {
                        p.shutdown_self(reason);
                        return Ok(Step::End(Outcome::Shutdown(reason)));
                    }
                    // Destroyed, or its image discarded, while suspended.
                    Err(_) => return Ok(Step::End(Outcome::Killed)),
                }
            }
            _ => {}
        }
    }
}

/// Connects the network if the toolstack gave us a VIF (`device/vif/0`)
/// with an address (`ip` in its backend directory, as libxl writes it).
/// `data/net` says how it went: `up <ip>` or `failed: <why>`.
fn connect_net<'p, P: Platform, S: XenStore>(p: &'p P, xs: &S) -> Option<Stack<'p, P>> {
    let backend = read_opt(xs, "device/vif/0/backend").ok()??;
    let backend = String::from_utf8(backend).ok()?;
    let ip = read_opt(xs, &format!("{backend}/ip")).ok()??;
    let Some(cidr) = core::str::from_utf8(&ip).ok().and_then(parse_cidr) else {
        let _ = xs.write(T_NONE, "data/net", b"failed: bad ip");
        return None;
    };
    match Netfront::connect(p, xs, 0, NET_TIMEOUT) {
        Ok(nf) => {
            let _ = xs.write(T_NONE, "data/net", format!("up {cidr}").as_bytes());
            Some(Stack::new(nf, cidr))
        }
        Err(e) => {
            let _ = xs.write(T_NONE, "data/net", format!("failed: {e}").as_bytes());
            None
        }
    }
}

/// Parses `control/net-echo`: `<ipv4> <bytes>` (at most 64 MiB).
fn parse_echo(v: &[u8]) -> Option<(windsor_netfront::Ipv4Address, usize)> {
    let s = core::str::from_utf8(v).ok()?;
    let (ip, len) = s.trim().split_once(' ')?;
    let mut o = [0u8; 4];
    let mut parts = ip.split('.');
    for b in &mut o {
        *b = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let len: usize = len.parse().ok()?;
    (len > 0 && len <= 64 << 20).then_some((windsor_netfront::Ipv4Address::from(o), len))
}

/// Sends `len` bytes of a pattern to the TCP echo service of `dst` and
/// checks what comes back; `data/net-echo-progress` counts the bytes back
/// so far (every 64 KiB).
fn echo<P: Platform, S: XenStore>(
    st: &mut Stack<'_, P>,
    xs: &S,
    dst: windsor_netfront::Ipv4Address,
    len: usize,
) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    let mut reported = 0;
    let r = st.tcp_exchange_with(
        xs,
        dst,
        windsor_netfront::ECHO_PORT,
        &data,
        ECHO_TIMEOUT,
        |n| {
            if n >= reported + (64 << 10) {
                reported = n;
                let _ = xs.write(T_NONE, "data/net-echo-progress", format!("{n}").as_bytes());
            }
        },
    );
    match r {
        Ok(back) if back == data => format!("ok {len}"),
        Ok(back) => format!("failed: {} bytes back, not the ones sent", back.len()),
        Err(e) => format!("failed: {e}"),
    }
}

/// Reads a node; `None` if the store refuses (it does not exist, or its
/// directory was removed and the parent is not readable: `EACCES`). As
/// Linux's shutdown watch, a node that cannot be read is no request; only
/// a lost connection ends the guest.
fn read_opt<S: XenStore>(xs: &S, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
    match xs.read(TxId::NONE, path) {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Store(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hangs until the domain is shut down or destroyed from outside.
fn spin<P: Platform>(p: &P) -> Outcome {
    loop {
        if p.wait(&[], Some(Duration::from_millis(10))).is_err() {
            return Outcome::Killed;
        }
    }
}
