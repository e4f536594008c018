//! A TAP device: the host's own network, as a device the simulated host
//! hands to its network driver domain (the uplink of netback's switch).
//!
//! In Xen mode the driver domain owns a NIC; in host mode it gets this: a
//! Linux TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`), whose file
//! carries whole Ethernet frames. Tests move the interface into a network
//! namespace (`ip link set <name> netns <ns>`) so that Linux there reaches
//! the guests. Non-blocking: [`Tap::recv`] returns `None` when no frame is
//! waiting. Creating one needs `CAP_NET_ADMIN`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// `TUNSETIFF` (`_IOW('T', 202, int)`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `IFF_TAP`.
const IFF_TAP: libc::c_short = 0x0002;
/// `IFF_NO_PI`: no packet-information header before each frame.
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates (or attaches to) the TAP interface `name` (at most 15 bytes).
    pub fn open(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad interface name",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `file` is an open descriptor of /dev/net/tun; TUNSETIFF
        // reads (and writes back the name into) a `struct ifreq`, which
        // `IfReq` lays out (name then flags, 40 bytes) and which lives for
        // the whole call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        Ok(Tap {
            file,
            name: String::from_utf8_lossy(&req.name[..end]).into_owned(),
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one frame to the host. A full queue drops it (`Ok(false)`).
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        match (&self.file).write(frame) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Receives one frame from the host, if one is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match (&self.file).read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_is_40_bytes() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::offset_of!(IfReq, flags), 16);
    }

    /// Needs CAP_NET_ADMIN (tests run as root here); without it the
    /// open fails with EPERM and there is nothing else to check.
    #[test]
    fn open_names_and_reads_nothing_while_down() {
        // Unique per process: tests of other worktrees may run at once.
        let name = format!("wsim{}", std::process::id() % 100_000);
        match Tap::open(&name) {
            Ok(t) => {
                assert_eq!(t.name(), name);
                let mut buf = [0u8; 2048];
                // Down (never brought up): no frames, and no blocking.
                assert!(t.recv(&mut buf).unwrap().is_none());
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
}
