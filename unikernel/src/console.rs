//! The domain's console.
//!
//! Dom0 writes with `console_io(CONSOLEIO_write)`, which Xen copies to its
//! serial console; every other PVH domain writes to I/O port 0xe9, which
//! Xen prints as `(dN) …` when booted with `guest_loglvl=all`. A domain
//! whose builder gave it a PV console ring (`HVM_PARAM_CONSOLE_PFN` and
//! `_EVTCHN`) also writes its output into that ring's `out` half and
//! notifies the backend (dom0, as xenconsoled), so its console is
//! readable through the API. The ring write never waits: bytes that do
//! not fit (the backend is slow or absent) are left out of the ring only,
//! the debug port has them all.
//!
//! Output is formatted into a stack buffer and flushed in chunks, so a line
//! normally costs one hypercall and never allocates (the panic handler uses
//! this too).

use crate::{arch, hypercall};
use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use xen::abi::console::{mask_xencons_out, XENCONS_OUT_SIZE};
use xen::shmem::SharedMem;

const UNSET: u8 = 0;
const CONSOLE_IO: u8 = 1;
const PORT_E9: u8 = 2;

static SINK: AtomicU8 = AtomicU8::new(UNSET);

/// Address of the PV console page (0: none) and its event channel.
static RING: AtomicUsize = AtomicUsize::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// Offsets in `struct xencons_interface` (`io/console.h`).
const OUT: usize = 1024;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;
const PAGE_SIZE: usize = 4096;

/// Also writes the output into the PV console ring at `addr` (an
/// identity-mapped page the builder reserved for it), notifying `port`.
pub(crate) fn attach_ring(addr: usize, port: u32) {
    RING_PORT.store(port, Ordering::Relaxed);
    RING.store(addr, Ordering::Release);
}

/// Copies what fits of `bytes` into the `out` ring and notifies.
fn write_ring(bytes: &[u8]) {
    let Some(ptr) = NonNull::new(RING.load(Ordering::Acquire) as *mut u8) else {
        return;
    };
    // SAFETY: `attach_ring` got the address of the console page the
    // builder placed in our e820-reserved range below 4 GiB: identity
    // mapped, never heap memory, there for the domain's life; it is only
    // accessed through `SharedMem`'s views.
    let page = unsafe { SharedMem::from_raw(ptr, PAGE_SIZE) };
    let cons = page.atomic_u32(OUT_CONS).load(Ordering::Acquire);
    let prod = page.atomic_u32(OUT_PROD).load(Ordering::Relaxed);
    let used = prod.wrapping_sub(cons) as usize;
    if used > XENCONS_OUT_SIZE {
        // The backend wrote garbage: leave the ring alone.
        return;
    }
    let n = bytes.len().min(XENCONS_OUT_SIZE - used);
    if n == 0 {
        return;
    }
    let at = mask_xencons_out(prod);
    let first = n.min(XENCONS_OUT_SIZE - at);
    page.write_bytes(OUT + at, &bytes[..first]);
    page.write_bytes(OUT, &bytes[first..n]);
    page.atomic_u32(OUT_PROD)
        .store(prod.wrapping_add(n as u32), Ordering::Release);
    let _ = hypercall::evtchn_send(RING_PORT.load(Ordering::Relaxed));
}

/// Chooses `console_io` (dom0) or port 0xe9 (everyone else).
pub(crate) fn init(is_dom0: bool) {
    SINK.store(
        if is_dom0 { CONSOLE_IO } else { PORT_E9 },
        Ordering::Relaxed,
    );
}

/// Writes raw bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    match SINK.load(Ordering::Relaxed) {
        CONSOLE_IO => {
            for chunk in bytes.chunks(1024) {
                if hypercall::console_write(chunk).is_err() {
                    chunk.iter().for_each(|&b| arch::outb(0xe9, b));
                }
            }
        }
        // Before `init` (or for unprivileged domains) the debug port is the
        // one output that always works.
        _ => {
            bytes.iter().for_each(|&b| arch::outb(0xe9, b));
            write_ring(bytes);
        }
    }
}

/// A fixed buffer that flushes to the console when full.
struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats `args` plus a newline and writes it (used by `println!`).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut lb = LineBuf {
        buf: [0; 256],
        len: 0,
    };
    // Formatting into LineBuf cannot fail; a Display impl that errors just
    // truncates the line.
    let _ = lb.write_fmt(args);
    let _ = lb.write_str("\n");
    lb.flush();
}

/// The console as a `xen::platform::Console`.
#[derive(Clone, Copy, Debug, Default)]
pub struct XenConsole;

impl xen::platform::Console for XenConsole {
    fn write(&self, bytes: &[u8]) {
        write_bytes(bytes)
    }
}
