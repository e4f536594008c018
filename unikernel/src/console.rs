//! The domain's console.
//!
//! Dom0 writes with `console_io(CONSOLEIO_write)`, which Xen copies to its
//! serial console; every other PVH domain writes to I/O port 0xe9, which
//! Xen prints as `(dN) …` when booted with `guest_loglvl=all`. (The PV
//! console ring is for later: it needs a console backend.)
//!
//! Output is formatted into a stack buffer and flushed in chunks, so a line
//! normally costs one hypercall and never allocates (the panic handler uses
//! this too).

use crate::{arch, hypercall};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

const UNSET: u8 = 0;
const CONSOLE_IO: u8 = 1;
const PORT_E9: u8 = 2;

static SINK: AtomicU8 = AtomicU8::new(UNSET);

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
        _ => bytes.iter().for_each(|&b| arch::outb(0xe9, b)),
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
