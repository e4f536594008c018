//! The console backend core: the job of xenconsoled, sans-IO and `no_std`.
//!
//! A guest writes its console output into the `out` ring of its console
//! page (`io/console.h`, Xen 4.17; mirrored in [`xen::abi::console`]): it
//! produces (`out_prod`), the backend consumes (`out_cons`). One
//! [`GuestConsole`] per guest turns that ring into:
//!
//! * **lines tagged with the guest's name**, handed to the caller's sink
//!   (dom0 prints them on its serial log as `[name] text`);
//! * a **bounded history** of the most recent output, for a later
//!   `windsor vm console NAME` (tail) and XenAPI console objects.
//!
//! Threat model: the guest owns the page and may write anything at any
//! time. So:
//!
//! * each index is read once per poll (`out_prod` with Acquire), and a
//!   producer more than a ring ahead of the consumer — garbage — is
//!   [`ConsoleError::BadIndices`]: the console is disconnected and never read
//!   again; the other guests and dom0 are unaffected;
//! * ring bytes are copied into private memory before they are looked at,
//!   and control characters are escaped before a line leaves the core;
//! * work per [`GuestConsole::poll`] is bounded (at most one ring's worth),
//!   lines are bounded ([`Limits::max_line`], longer ones are split), the
//!   history is bounded ([`Limits::history_bytes`], oldest bytes go first);
//! * a **token bucket** ([`Limits::rate_bytes_per_sec`],
//!   [`Limits::burst_bytes`]) bounds how many bytes per second are taken from
//!   each guest: a guest that floods only fills its own ring and then waits
//!   (as a guest does when xenconsoled is slow), it cannot starve the others
//!   or dom0, which polls every console in turn.
//!
//! The `std` feature adds [`service`]: the backend as a thread over the
//! platform traits (host mode runs it in dom0, as xenconsoled).
//!
//! Time is passed in (`now`); the ring is reached through [`OutRing`], which
//! [`xen::shmem::SharedMem`] implements for the real page and tests
//! implement over plain memory.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod service;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;
use xen::abi::console::{mask_xencons_out, XENCONS_OUT_SIZE};

/// Offsets in the console page (`struct xencons_interface`).
pub mod field {
    /// The `out` ring (guest -> backend).
    pub const OUT: usize = 1024;
    /// `out_cons`, written by the backend.
    pub const OUT_CONS: usize = 3080;
    /// `out_prod`, written by the guest.
    pub const OUT_PROD: usize = 3084;
}

/// The backend's access to one guest's `out` ring.
pub trait OutRing {
    /// `out_prod`, read with Acquire (the bytes before it are then visible).
    fn prod(&self) -> u32;
    /// `out_cons` as the backend last stored it.
    fn cons(&self) -> u32;
    /// Stores `out_cons` with Release (the guest may then reuse the bytes).
    fn set_cons(&self, cons: u32);
    /// Copies ring bytes from offset `off` (already masked) into `buf`;
    /// `off + buf.len()` never exceeds the ring size.
    fn read(&self, off: usize, buf: &mut [u8]);
}

impl OutRing for xen::shmem::SharedMem<'_> {
    fn prod(&self) -> u32 {
        self.atomic_u32(field::OUT_PROD).load(Ordering::Acquire)
    }
    fn cons(&self) -> u32 {
        self.atomic_u32(field::OUT_CONS).load(Ordering::Relaxed)
    }
    fn set_cons(&self, cons: u32) {
        self.atomic_u32(field::OUT_CONS)
            .store(cons, Ordering::Release);
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.read_bytes(field::OUT + off, buf);
    }
}

/// Bounds applied to one guest's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of recent output kept for readers (the tail).
    pub history_bytes: usize,
    /// Longest line handed to the sink; longer lines are split.
    pub max_line: usize,
    /// Sustained bytes per second taken from the guest.
    pub rate_bytes_per_sec: u32,
    /// Bytes that may be taken at once after a quiet spell.
    pub burst_bytes: u32,
}

impl Default for Limits {
    /// 64 KiB of history, 512-byte lines, 64 KiB/s with a 16 KiB burst
    /// (a Linux boot at `loglevel=7` writes well under that).
    fn default() -> Self {
        Limits {
            history_bytes: 64 * 1024,
            max_line: 512,
            rate_bytes_per_sec: 64 * 1024,
            burst_bytes: 16 * 1024,
        }
    }
}

/// Why a console was disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleError {
    /// The guest's producer index is more than a ring ahead of the consumer
    /// (or behind it): the page is garbage and is not read again.
    BadIndices {
        /// `out_prod` as read.
        prod: u32,
        /// `out_cons`.
        cons: u32,
    },
}

impl core::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConsoleError::BadIndices { prod, cons } => write!(
                f,
                "console ring indices out of range (out_prod {prod}, out_cons {cons}, \
                 ring {XENCONS_OUT_SIZE} bytes): console disconnected"
            ),
        }
    }
}

/// What one [`GuestConsole::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polled {
    /// Bytes consumed from the ring.
    pub bytes: usize,
    /// Bytes left in the ring because the guest is over its rate.
    pub throttled: usize,
    /// Complete lines handed to the sink.
    pub lines: usize,
}

/// One guest's console: its ring state, rate limit, partial line and history.
#[derive(Debug)]
pub struct GuestConsole {
    name: String,
    limits: Limits,
    /// Token bucket, in bytes.
    tokens: u64,
    last: Option<Duration>,
    line: Vec<u8>,
    history: VecDeque<u8>,
    error: Option<ConsoleError>,
    total: u64,
}

impl GuestConsole {
    /// A console for the guest called `name`, with a full bucket.
    pub fn new(name: impl Into<String>, limits: Limits) -> Self {
        GuestConsole {
            name: name.into(),
            limits,
            tokens: limits.burst_bytes.into(),
            last: None,
            line: Vec::new(),
            history: VecDeque::new(),
            error: None,
            total: 0,
        }
    }

    /// The guest's name (the tag of its lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the console was disconnected, if it was.
    pub fn error(&self) -> Option<ConsoleError> {
        self.error
    }

    /// Bytes consumed from the guest since the start.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The most recent output (at most [`Limits::history_bytes`]), as text
    /// with control characters escaped.
    pub fn history(&self) -> String {
        let (a, b) = self.history.as_slices();
        let mut s = String::new();
        escape_into(a, &mut s, true);
        escape_into(b, &mut s, true);
        s
    }

    /// The raw bytes of the history from byte offset `from` (counted from
    /// the guest's first byte, as [`total_bytes`](Self::total_bytes) is):
    /// `(start, text)`, where `start` is where the text begins (later than
    /// `from` if those bytes already left the history) and the text ends
    /// at `total_bytes()`, control characters escaped. A reader that
    /// follows the console passes back `total_bytes()` of its last read.
    pub fn history_since(&self, from: u64) -> (u64, String) {
        let oldest = self.total - self.history.len() as u64;
        let start = from.clamp(oldest, self.total);
        let skip = (start - oldest) as usize;
        let (a, b) = self.history.as_slices();
        let mut s = String::new();
        if skip < a.len() {
            escape_into(&a[skip..], &mut s, true);
            escape_into(b, &mut s, true);
        } else {
            escape_into(&b[skip - a.len()..], &mut s, true);
        }
        (start, s)
    }

    /// Whether `needle` occurs in the history.
    pub fn history_contains(&self, needle: &str) -> bool {
        self.history().contains(needle)
    }

    fn refill(&mut self, now: Duration) {
        let cap = u64::from(self.limits.burst_bytes);
        if let Some(last) = self.last {
            let dt = now.saturating_sub(last);
            let add = dt
                .as_micros()
                .saturating_mul(self.limits.rate_bytes_per_sec.into())
                / 1_000_000;
            self.tokens = cap.min(
                self.tokens
                    .saturating_add(add.try_into().unwrap_or(u64::MAX)),
            );
        }
        self.last = Some(now);
    }

    /// Takes what the guest wrote (within its rate and one ring's worth),
    /// hands complete lines to `sink` as `(name, text)`, and frees the ring
    /// space. A disconnected console does nothing.
    pub fn poll(
        &mut self,
        now: Duration,
        ring: &impl OutRing,
        sink: impl FnMut(&str, &str),
    ) -> Result<Polled, ConsoleError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.refill(now);
        let budget = usize::try_from(self.tokens).unwrap_or(usize::MAX);
        let polled = self.take(ring, budget, sink)?;
        self.tokens -= polled.bytes as u64;
        Ok(polled)
    }

    /// Takes everything left in the ring (at most one ring's worth),
    /// whatever the rate: for a guest that is gone (shut down, about to be
    /// destroyed), whose last words would otherwise be lost. Does not
    /// touch the token bucket.
    pub fn drain(
        &mut self,
        ring: &impl OutRing,
        sink: impl FnMut(&str, &str),
    ) -> Result<Polled, ConsoleError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.take(ring, XENCONS_OUT_SIZE, sink)
    }

    fn take(
        &mut self,
        ring: &impl OutRing,
        budget: usize,
        mut sink: impl FnMut(&str, &str),
    ) -> Result<Polled, ConsoleError> {
        let cons = ring.cons();
        let prod = ring.prod();
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > XENCONS_OUT_SIZE {
            let e = ConsoleError::BadIndices { prod, cons };
            self.error = Some(e);
            return Err(e);
        }
        let take = avail.min(budget);
        let mut buf = [0u8; XENCONS_OUT_SIZE];
        let start = mask_xencons_out(cons);
        let first = take.min(XENCONS_OUT_SIZE - start);
        ring.read(start, &mut buf[..first]);
        ring.read(0, &mut buf[first..take]);
        ring.set_cons(cons.wrapping_add(take as u32));
        self.total += take as u64;
        let mut polled = Polled {
            bytes: take,
            throttled: avail - take,
            lines: 0,
        };
        for &b in &buf[..take] {
            self.remember(b);
            if b != b'\n' && b != b'\r' {
                self.line.push(b);
            }
            if b == b'\n' || self.line.len() >= self.limits.max_line.max(1) {
                self.emit(&mut sink);
                polled.lines += 1;
            }
        }
        Ok(polled)
    }

    /// Hands out a partial line (e.g. before the guest goes away).
    pub fn flush(&mut self, mut sink: impl FnMut(&str, &str)) {
        if !self.line.is_empty() {
            self.emit(&mut sink);
        }
    }

    fn emit(&mut self, sink: &mut impl FnMut(&str, &str)) {
        let mut text = String::with_capacity(self.line.len());
        escape_into(&self.line, &mut text, false);
        self.line.clear();
        sink(&self.name, &text);
    }

    fn remember(&mut self, b: u8) {
        if self.limits.history_bytes == 0 {
            return;
        }
        if self.history.len() == self.limits.history_bytes {
            self.history.pop_front();
        }
        self.history.push_back(b);
    }
}

/// Appends `bytes` to `out` as printable text: UTF-8 kept, invalid bytes
/// and control characters (other than tab, and newline if `keep_newlines`)
/// escaped as `\xNN`, so a guest cannot drive the reader's terminal.
fn escape_into(bytes: &[u8], out: &mut String, keep_newlines: bool) {
    use core::fmt::Write;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\t' || (keep_newlines && c == '\n') || !c.is_control() {
                out.push(c);
            } else if c != '\r' || !keep_newlines {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use core::cell::{Cell, RefCell};

    /// A guest's ring in plain memory; the test plays the guest.
    struct Ring {
        out: RefCell<[u8; XENCONS_OUT_SIZE]>,
        prod: Cell<u32>,
        cons: Cell<u32>,
    }

    impl Ring {
        fn new() -> Self {
            Ring {
                out: RefCell::new([0; XENCONS_OUT_SIZE]),
                prod: Cell::new(0),
                cons: Cell::new(0),
            }
        }
        /// The guest writes as much of `s` as fits; returns how much.
        fn write(&self, s: &[u8]) -> usize {
            let free = XENCONS_OUT_SIZE - self.prod.get().wrapping_sub(self.cons.get()) as usize;
            let n = s.len().min(free);
            for &b in &s[..n] {
                let p = self.prod.get();
                self.out.borrow_mut()[mask_xencons_out(p)] = b;
                self.prod.set(p.wrapping_add(1));
            }
            n
        }
    }

    impl OutRing for Ring {
        fn prod(&self) -> u32 {
            self.prod.get()
        }
        fn cons(&self) -> u32 {
            self.cons.get()
        }
        fn set_cons(&self, c: u32) {
            self.cons.set(c)
        }
        fn read(&self, off: usize, buf: &mut [u8]) {
            buf.copy_from_slice(&self.out.borrow()[off..off + buf.len()]);
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn lines_of(c: &mut GuestConsole, now: Duration, r: &Ring) -> Vec<String> {
        let mut v = vec![];
        c.poll(now, r, |name, l| v.push(alloc::format!("[{name}] {l}")))
            .unwrap();
        v
    }

    #[test]
    fn lines_are_tagged_split_and_escaped() {
        let r = Ring::new();
        let mut c = GuestConsole::new(
            "linux0",
            Limits {
                max_line: 8,
                ..Limits::default()
            },
        );
        r.write(b"hello\r\nwor");
        assert_eq!(lines_of(&mut c, ms(0), &r), ["[linux0] hello"]);
        r.write(b"ld\n\x1b[2Jx\xff\n0123456789\n");
        assert_eq!(
            lines_of(&mut c, ms(1), &r),
            [
                "[linux0] world",
                "[linux0] \\x1b[2Jx\\xff",
                "[linux0] 01234567",
                "[linux0] 89"
            ]
        );
        assert_eq!(r.cons.get(), r.prod.get(), "all consumed");
        assert!(c.history_contains("hello\nworld\n"));
        assert!(!c.history().contains('\x1b'), "history is escaped");
    }

    #[test]
    fn the_ring_wraps_and_the_indices_wrap() {
        let r = Ring::new();
        r.prod.set(u32::MAX - 3);
        r.cons.set(u32::MAX - 3);
        let mut c = GuestConsole::new("g", Limits::default());
        let text = b"across the end of the ring and of u32\n";
        r.write(text);
        assert_eq!(
            lines_of(&mut c, ms(0), &r),
            ["[g] across the end of the ring and of u32"]
        );
        assert_eq!(r.cons.get(), (u32::MAX - 3).wrapping_add(text.len() as u32));
    }

    #[test]
    fn garbage_indices_disconnect_the_console_for_good() {
        let r = Ring::new();
        let mut c = GuestConsole::new("evil", Limits::default());
        r.prod.set(5000); // more than a ring ahead
        let err = c.poll(ms(0), &r, |_, _| panic!("no line")).unwrap_err();
        assert_eq!(
            err,
            ConsoleError::BadIndices {
                prod: 5000,
                cons: 0
            }
        );
        assert_eq!(r.cons.get(), 0, "nothing consumed");
        // Even once the indices look sane again, it stays disconnected.
        r.prod.set(3);
        assert_eq!(c.poll(ms(1), &r, |_, _| panic!("no line")), Err(err));
        assert!(err.to_string().contains("disconnected"));
        // Behind the consumer is garbage too.
        let mut c2 = GuestConsole::new("evil2", Limits::default());
        r.cons.set(10);
        r.prod.set(9);
        assert!(c2.poll(ms(0), &r, |_, _| {}).is_err());
    }

    #[test]
    fn a_flooding_guest_is_held_to_its_rate_and_the_history_is_bounded() {
        let limits = Limits {
            history_bytes: 1000,
            max_line: 100,
            rate_bytes_per_sec: 10_000,
            burst_bytes: 2_000,
        };
        let flood = GuestConsole::new("flood", limits);
        let quiet = GuestConsole::new("quiet", limits);
        let (rf, rq) = (Ring::new(), Ring::new());
        let (mut flood, mut quiet) = (flood, quiet);
        let mut taken = 0usize;
        let mut quiet_lines = 0;
        // One simulated second, polled every 10 ms; the flooder keeps its
        // ring full, the quiet guest writes one line per poll.
        for t in 0..=100u64 {
            while rf.write(&[b'A'; 64]) > 0 {}
            rq.write(b"tick\n");
            let p = flood.poll(ms(t * 10), &rf, |_, _| {}).unwrap();
            assert!(p.bytes <= XENCONS_OUT_SIZE, "bounded work per poll");
            taken += p.bytes;
            quiet_lines += quiet.poll(ms(t * 10), &rq, |_, _| {}).unwrap().lines;
        }
        // Burst + rate x 1 s (+ rounding), not the 100 ring-fulls offered.
        assert!(taken <= 2_000 + 10_000 + 100, "took {taken}");
        assert!(taken >= 10_000, "still makes progress: {taken}");
        assert_eq!(quiet_lines, 101, "the quiet guest is not starved");
        assert_eq!(flood.history().len(), 1000, "history bounded");
        assert!(rf.prod.get().wrapping_sub(rf.cons.get()) as usize <= XENCONS_OUT_SIZE);
    }

    #[test]
    fn history_since_an_offset_follows_the_output() {
        let r = Ring::new();
        let mut c = GuestConsole::new(
            "g",
            Limits {
                history_bytes: 8,
                ..Limits::default()
            },
        );
        r.write(b"abc\n");
        lines_of(&mut c, ms(0), &r);
        assert_eq!(c.history_since(0), (0, "abc\n".to_string()));
        assert_eq!(c.history_since(2), (2, "c\n".to_string()));
        assert_eq!(c.history_since(4), (4, String::new()));
        assert_eq!(
            c.history_since(99),
            (4, String::new()),
            "clamped to the end"
        );
        r.write(b"defghij\n");
        lines_of(&mut c, ms(1), &r);
        assert_eq!(c.total_bytes(), 12);
        // Only the last 8 bytes are kept: a reader behind them skips ahead.
        assert_eq!(c.history_since(0), (4, "defghij\n".to_string()));
        assert_eq!(c.history_since(10), (10, "j\n".to_string()));
    }

    #[test]
    fn drain_takes_the_last_words_whatever_the_rate() {
        let r = Ring::new();
        let mut c = GuestConsole::new(
            "g",
            Limits {
                rate_bytes_per_sec: 0,
                burst_bytes: 4,
                ..Limits::default()
            },
        );
        r.write(b"one\ntwo\n");
        let p = c.poll(ms(0), &r, |_, _| {}).unwrap();
        assert_eq!((p.bytes, p.throttled), (4, 4), "held to the burst");
        assert_eq!(c.poll(ms(1000), &r, |_, _| {}).unwrap().bytes, 0, "no rate");
        let mut got = vec![];
        let p = c.drain(&r, |_, l| got.push(l.to_string())).unwrap();
        assert_eq!((p.bytes, got), (4, vec!["two".to_string()]));
        assert_eq!(r.cons.get(), r.prod.get());
        r.prod.set(r.prod.get() + 5000);
        assert!(c.drain(&r, |_, _| {}).is_err(), "garbage is garbage");
    }

    #[test]
    fn flush_hands_out_a_partial_line() {
        let r = Ring::new();
        let mut c = GuestConsole::new("g", Limits::default());
        r.write(b"no newline");
        assert!(lines_of(&mut c, ms(0), &r).is_empty());
        let mut got = vec![];
        c.flush(|_, l| got.push(l.to_string()));
        assert_eq!(got, ["no newline"]);
        assert_eq!(c.total_bytes(), 10);
    }
}
