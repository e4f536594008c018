//! loom models of the vchan ring protocol.
//!
//! These run the production ring code ([`vchan::ring::Endpoint`]) on loom
//! atomics (the `cfg(loom)` impls of [`vchan::sync`]) with ring bytes in
//! `loom::cell::Cell`s, so loom reports a missing happens-before between a
//! producer's copy and the consumer's copy as a causality violation, and a
//! lost wake-up as a deadlock (every thread blocked on its doorbell).
//!
//! Run (the models take about 10 s on 2 cores after a ~2 min build; the
//! preemption bound defaults to 4 when `LOOM_MAX_PREEMPTIONS` is unset):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p vchan --release --test loom
//! ```
//!
//! The model lives here, in an integration test, rather than beside the ring
//! code because sharing `loom::cell::Cell` bytes between threads needs one
//! `unsafe impl Sync`, and the library itself is `#![forbid(unsafe_code)]`.
//!
//! Planted wrong orderings, which must fail:
//!
//! * `planted_relaxed_index_store_is_caught` weakens every index store from
//!   Release to Relaxed; loom reports a causality violation on the ring
//!   bytes. It is `#[should_panic(expected = "Causality violation")]` (no
//!   other panic passes it), so the suite proves on every run that
//!   loom catches that class of bug; its `#[ignore]`d twin
//!   `planted_bug_fails_loudly` shows the failure itself
//!   (`-- --ignored planted_bug_fails_loudly`).
//! * `planted_relaxed_notify_rmw_deadlocks` (`#[ignore]`d) weakens the
//!   notify-bit read-modify-writes from AcqRel to Relaxed; loom finds the
//!   lost wake-up and reports a deadlock, which aborts the process.
#![cfg(loom)]

use core::sync::atomic::Ordering;

use loom::cell::Cell;
use loom::sync::atomic::{AtomicU32, AtomicU8};
use loom::sync::{Arc, Condvar, Mutex};

use vchan::layout::{LIVE_CONNECTED, LIVE_EXITED, LIVE_WAITING, NOTIFY_WRITE};
use vchan::ring::{client_connect, Endpoint, Flag, Idx, Kick, Page, Role, Stall};
use vchan::sync::{Atomic32, Atomic8, RingBuf, RingBufMut};

/// Ring bytes whose every access loom checks for causality.
struct LoomBuf(Vec<Cell<u8>>);

// SAFETY: loom runs one model thread at a time and checks every access to
// the cells for a happens-before relation with the previous conflicting
// access; an unsynchronised access fails the model instead of racing.
unsafe impl Sync for LoomBuf {}

impl LoomBuf {
    fn new(n: usize) -> Self {
        LoomBuf((0..n).map(|_| Cell::new(0)).collect())
    }
}

impl RingBuf for LoomBuf {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.0[off + i].get();
        }
    }
}

impl RingBufMut for LoomBuf {
    fn write(&self, off: usize, src: &[u8]) {
        for (i, s) in src.iter().enumerate() {
            self.0[off + i].set(*s);
        }
    }
}

/// An index cell; `WEAK == RELAXED_INDEX` plants the bug "index stores are
/// Relaxed".
struct Index<const WEAK: u8>(AtomicU32);

impl<const WEAK: u8> Atomic32 for Index<WEAK> {
    fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }
    fn store(&self, value: u32, order: Ordering) {
        self.0.store(
            value,
            if WEAK == RELAXED_INDEX {
                Ordering::Relaxed
            } else {
                order
            },
        )
    }
}

/// The models run correct code.
const CORRECT: u8 = 0;
/// Planted bug: index stores are Relaxed instead of Release.
const RELAXED_INDEX: u8 = 1;
/// Planted bug: the notify-bit read-modify-writes are Relaxed instead of AcqRel.
const RELAXED_NOTIFY: u8 = 2;

/// A live or notify byte; `WEAK == RELAXED_NOTIFY` plants the bug "notify
/// read-modify-writes are Relaxed".
struct Byte<const WEAK: u8>(AtomicU8);

impl<const WEAK: u8> Byte<WEAK> {
    fn rmw(order: Ordering) -> Ordering {
        if WEAK == RELAXED_NOTIFY {
            Ordering::Relaxed
        } else {
            order
        }
    }
}

impl<const WEAK: u8> Atomic8 for Byte<WEAK> {
    fn load(&self, order: Ordering) -> u8 {
        self.0.load(order)
    }
    fn store(&self, value: u8, order: Ordering) {
        self.0.store(value, order)
    }
    fn fetch_or(&self, bits: u8, order: Ordering) -> u8 {
        self.0.fetch_or(bits, Self::rmw(order))
    }
    fn fetch_and(&self, bits: u8, order: Ordering) -> u8 {
        self.0.fetch_and(bits, Self::rmw(order))
    }
}

/// The control fields of the shared page on loom atomics.
struct LoomPage<const WEAK: u8> {
    idx: [Index<WEAK>; 4],
    flags: [Byte<WEAK>; 4],
}

impl<const WEAK: u8> LoomPage<WEAK> {
    fn new() -> Self {
        let p = LoomPage {
            idx: core::array::from_fn(|_| Index(AtomicU32::new(0))),
            flags: core::array::from_fn(|_| Byte(AtomicU8::new(0))),
        };
        p.flags[Flag::CliLive as usize]
            .0
            .store(LIVE_WAITING, Ordering::Relaxed);
        p.flags[Flag::SrvLive as usize]
            .0
            .store(LIVE_CONNECTED, Ordering::Relaxed);
        p.flags[Flag::CliNotify as usize]
            .0
            .store(NOTIFY_WRITE, Ordering::Relaxed);
        p
    }
}

impl<const WEAK: u8> Page for LoomPage<WEAK> {
    type A32 = Index<WEAK>;
    type A8 = Byte<WEAK>;
    fn idx(&self, i: Idx) -> &Index<WEAK> {
        &self.idx[i as usize]
    }
    fn flag(&self, f: Flag) -> &Byte<WEAK> {
        &self.flags[f as usize]
    }
}

/// The pending bit of one event-channel port, as the platform's
/// `notify` / `wait` + `clear_pending` use it.
#[derive(Default)]
struct Doorbell {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_all();
    }
    /// `wait` then `clear_pending`.
    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while !*p {
            p = self.cv.wait(p).unwrap();
        }
        *p = false;
    }
}

/// Everything two ends share.
struct World<const WEAK: u8> {
    page: LoomPage<WEAK>,
    left: LoomBuf,
    right: LoomBuf,
    /// The server's port (kicked by the client) and the client's.
    srv_bell: Doorbell,
    cli_bell: Doorbell,
}

impl<const WEAK: u8> World<WEAK> {
    fn new(left_order: u8, right_order: u8) -> Arc<Self> {
        Arc::new(World {
            page: LoomPage::new(),
            left: LoomBuf::new(1 << left_order),
            right: LoomBuf::new(1 << right_order),
            srv_bell: Doorbell::default(),
            cli_bell: Doorbell::default(),
        })
    }

    fn end(&self, role: Role) -> (&LoomBuf, &LoomBuf, &Doorbell, &Doorbell) {
        // (rx ring, tx ring, my bell, peer's bell)
        match role {
            Role::Server => (&self.left, &self.right, &self.srv_bell, &self.cli_bell),
            Role::Client => (&self.right, &self.left, &self.cli_bell, &self.srv_bell),
        }
    }
}

fn kick(k: Kick, bell: &Doorbell) {
    if k.0 {
        bell.ring();
    }
}

/// The blocking write loop of `channel.rs` (its spin reduced to one
/// unarmed check, minus liveness timeouts): write what fits; when stalled,
/// arm and re-check before blocking.
fn write_all<const W: u8>(w: &World<W>, ep: &mut Endpoint, mut src: &[u8]) -> Result<(), Stall> {
    let (_, tx, me, peer) = w.end(ep.role());
    let mut arm = false;
    while !src.is_empty() {
        match ep.try_write(&w.page, tx, src, 1, arm).unwrap() {
            Ok((n, k)) => {
                kick(k, peer);
                src = &src[n..];
                arm = false;
            }
            Err(Stall::Wait) if !arm => arm = true,
            Err(Stall::Wait) => me.wait(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The blocking read loop: read until `dst` is full or the peer closed.
fn read_exact<const W: u8>(w: &World<W>, ep: &mut Endpoint, dst: &mut [u8]) -> usize {
    let (rx, _, me, peer) = w.end(ep.role());
    let mut got = 0;
    let mut arm = false;
    while got < dst.len() {
        match ep.try_read(&w.page, rx, &mut dst[got..], 1, arm).unwrap() {
            Ok((n, k)) => {
                kick(k, peer);
                got += n;
                arm = false;
            }
            Err(Stall::Wait) if !arm => arm = true,
            Err(Stall::Wait) => me.wait(),
            Err(Stall::PeerClosed) => break,
        }
    }
    got
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(4);
    }
    b.check(f);
}

fn connect<const W: u8>(w: &World<W>, lo: u8, ro: u8) -> (Endpoint, Endpoint) {
    let srv = Endpoint::new(Role::Server, lo, ro, &w.page);
    let cli = Endpoint::new(Role::Client, ro, lo, &w.page);
    client_connect(&cli, &w.page);
    (srv, cli)
}

fn stream_model<const W: u8>() {
    // A 4-byte ring carrying 6 bytes: the writer blocks on a full ring and
    // the indices wrap the ring's end.
    let w = World::<W>::new(2, 2);
    let (mut srv, mut cli) = connect(&w, 2, 2);
    let w2 = w.clone();
    let t = loom::thread::spawn(move || {
        write_all(&w2, &mut cli, &[1, 2, 3, 4, 5, 6]).unwrap();
    });
    let mut got = [0u8; 6];
    assert_eq!(read_exact(&w, &mut srv, &mut got), 6);
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    t.join().unwrap();
}

#[test]
fn producer_consumer_with_wrap_around() {
    model(stream_model::<CORRECT>);
}

/// Ping-pong over 1-byte rings in both directions: every step has one side
/// blocked on data (NOTIFY_WRITE) or on space (NOTIFY_READ) while the other
/// publishes. A lost wake-up leaves both threads blocked, which loom
/// reports as a deadlock.
fn pingpong_model<const W: u8>() {
    let w = World::<W>::new(0, 0);
    let (mut srv, mut cli) = connect(&w, 0, 0);
    let w2 = w.clone();
    let t = loom::thread::spawn(move || {
        let mut b = [0u8; 1];
        for _ in 0..2 {
            assert_eq!(read_exact(&w2, &mut srv, &mut b), 1);
            b[0] += 1;
            write_all(&w2, &mut srv, &b).unwrap();
        }
    });
    let mut b = [10u8];
    for round in 0..2u8 {
        write_all(&w, &mut cli, &b).unwrap();
        assert_eq!(read_exact(&w, &mut cli, &mut b), 1);
        assert_eq!(b[0], 11 + round);
    }
    t.join().unwrap();
}

#[test]
fn notify_bits_never_lose_a_wakeup() {
    model(pingpong_model::<CORRECT>);
}

#[test]
fn close_during_a_blocked_write() {
    // The client writes 4 bytes into a 2-byte ring; the server reads one
    // byte and closes. The writer must observe the close (not hang), and
    // what it reports as written must be consistent with what was read.
    model(|| {
        let w = World::<CORRECT>::new(1, 1);
        let (mut srv, mut cli) = connect(&w, 1, 1);
        let w2 = w.clone();
        let t = loom::thread::spawn(move || write_all(&w2, &mut cli, &[7, 8, 9, 10]));
        let mut b = [0u8; 1];
        assert_eq!(read_exact(&w, &mut srv, &mut b), 1);
        assert_eq!(b[0], 7);
        // libxenvchan_close: live flag, then an unconditional notify.
        srv.set_live(&w.page, LIVE_EXITED);
        w.cli_bell.ring();
        assert_eq!(t.join().unwrap(), Err(Stall::PeerClosed));
    });
}

/// Blocking packet transfer: `min` = the whole packet.
fn transfer_packet<const W: u8>(w: &World<W>, ep: &mut Endpoint, pkt: &mut [u8], send: bool) {
    let (rx, tx, me, peer) = w.end(ep.role());
    let n = pkt.len();
    let mut arm = false;
    loop {
        let r = if send {
            ep.try_write(&w.page, tx, pkt, n, arm).unwrap()
        } else {
            ep.try_read(&w.page, rx, pkt, n, arm).unwrap()
        };
        match r {
            Ok((done, k)) => {
                assert_eq!(done, n, "packets move whole");
                kick(k, peer);
                return;
            }
            Err(Stall::Wait) if !arm => arm = true,
            Err(Stall::Wait) => me.wait(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn packets_stay_whole_across_the_wrap() {
    // Two 3-byte packets through a 4-byte ring: the second cannot start
    // until the first is consumed, and it wraps the ring's end.
    model(|| {
        let w = World::<CORRECT>::new(2, 2);
        let (mut srv, mut cli) = connect(&w, 2, 2);
        let w2 = w.clone();
        let t = loom::thread::spawn(move || {
            transfer_packet(&w2, &mut cli, &mut [1, 2, 3], true);
            transfer_packet(&w2, &mut cli, &mut [4, 5, 6], true);
        });
        let mut p = [0u8; 3];
        transfer_packet(&w, &mut srv, &mut p, false);
        assert_eq!(p, [1, 2, 3]);
        transfer_packet(&w, &mut srv, &mut p, false);
        assert_eq!(p, [4, 5, 6]);
        t.join().unwrap();
    });
}

#[test]
#[should_panic(expected = "Causality violation")]
fn planted_relaxed_index_store_is_caught() {
    model(stream_model::<RELAXED_INDEX>);
}

#[test]
#[ignore = "demonstrates the failure loom reports for a planted Relaxed index store"]
fn planted_bug_fails_loudly() {
    model(stream_model::<RELAXED_INDEX>);
}

/// With Relaxed notify read-modify-writes the re-check after arming may miss
/// the peer's new index while the peer misses the request: loom finds the
/// lost wake-up and reports a deadlock. A deadlock report aborts the test
/// process (it is raised on loom's scheduler, where unwinding is not
/// possible), so this cannot be `#[should_panic]`: run it by name with
/// `-- --ignored planted_relaxed_notify_rmw_deadlocks` and expect
/// "deadlock; threads = ..." and SIGABRT.
#[test]
#[ignore = "aborts the process: loom reports the planted lost wake-up as a deadlock"]
fn planted_relaxed_notify_rmw_deadlocks() {
    model(pingpong_model::<RELAXED_NOTIFY>);
}
