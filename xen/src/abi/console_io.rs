//! The Xen emergency console (`CONSOLEIO_*` of `xen/include/public/xen.h`,
//! Xen 4.17).
//!
//! Produced by the unikernels (early and debug output; reads only from the
//! domain that owns Xen's console input), consumed by Xen, which prints to
//! its serial line. No shared memory: the buffer is passed by guest virtual
//! address.
//!
//! ```text
//! HYPERVISOR_console_io(cmd = CONSOLEIO_write, count, buffer: *const u8) -> 0 | -errno
//! HYPERVISOR_console_io(cmd = CONSOLEIO_read,  count, buffer: *mut u8)   -> bytes read
//! ```

/// `CONSOLEIO_write`: write `count` bytes from the buffer to Xen's console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read`: read up to `count` bytes of console input (dom0 only).
pub const CONSOLEIO_READ: u32 = 1;

/// The two console commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ConsoleIoCmd {
    /// `CONSOLEIO_write`.
    Write = CONSOLEIO_WRITE,
    /// `CONSOLEIO_read`.
    Read = CONSOLEIO_READ,
}

impl ConsoleIoCmd {
    /// Decodes a command number; `None` for anything else.
    pub const fn from_raw(v: u32) -> Option<Self> {
        match v {
            CONSOLEIO_WRITE => Some(Self::Write),
            CONSOLEIO_READ => Some(Self::Read),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        assert_eq!(CONSOLEIO_WRITE, 0);
        assert_eq!(CONSOLEIO_READ, 1);
        assert_eq!(ConsoleIoCmd::from_raw(0), Some(ConsoleIoCmd::Write));
        assert_eq!(ConsoleIoCmd::from_raw(1), Some(ConsoleIoCmd::Read));
        assert_eq!(ConsoleIoCmd::from_raw(2), None);
    }
}
