//! The fuzz-target's disk: Windsor's blkfront on its first VBD, and a
//! verifying workload run on request.
//!
//! | node | who writes | meaning |
//! |---|---|---|
//! | `control/disk` | toolstack (or a test) | `write <blocks> <seed>`: write blocks `0..blocks` (4 KiB each) with the pattern of `seed`, a flush after every [`BATCH`]; `verify <blocks> <seed>`: read them back and check them |
//! | `data/disk` | guest | `connected <sectors>` at boot; then the outcome of each request: `written <n>`, `verified <n>`, `bad <block>`, `failed: <why>` |
//! | `data/disk-flushed` | guest | during `write`: how many blocks (from 0) a completed flush made stable |
//! | `data/disk-reconnects` | guest | how many times the disk was connected again after its backend went away |
//!
//! Each block is checksummed ([`block`]): its index and the seed, a
//! pseudo-random payload of the seed and index, and a 64-bit FNV-1a of all
//! that, so a block read back (by the guest, or from the image by a test)
//! proves itself intact.
//!
//! When a request fails because the backend went away (it died and was
//! restarted: its domain id, so the frontend's `backend` node, changes; or
//! the device was unplugged and plugged again: the backend offers it anew,
//! `InitWait`), the guest waits for the new backend, connects to it
//! (walking the xenbus states again) and writes again from the first block
//! not yet flushed: what was answered but not flushed may be lost, what
//! was flushed must not be.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use windsor_blkfront::driver::{BlkFront, Geometry};
use windsor_xenstore_client::{TxId, XenStore};
use xen::platform::Platform;

/// Bytes of one block of the workload.
pub const BLOCK: usize = 4096;
/// Blocks written between two flushes.
pub const BATCH: u64 = 8;
/// How long the guest waits for a new backend after losing one.
const BACKEND_WAIT: Duration = Duration::from_secs(30);
/// Reconnections one request may make at most.
const MAX_RECONNECTS: u32 = 32;

const T: TxId = TxId::NONE;

/// What `control/disk` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Write blocks `0..blocks` of `seed`'s pattern.
    Write {
        /// How many blocks.
        blocks: u64,
        /// The pattern's seed.
        seed: u64,
    },
    /// Read them back and check them.
    Verify {
        /// How many blocks.
        blocks: u64,
        /// The pattern's seed.
        seed: u64,
    },
}

impl Work {
    /// Parses `write <blocks> <seed>` / `verify <blocks> <seed>`.
    pub fn parse(v: &[u8]) -> Option<Work> {
        let s = core::str::from_utf8(v).ok()?;
        let mut it = s.split_ascii_whitespace();
        let op = it.next()?;
        let blocks = it.next()?.parse().ok()?;
        let seed = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        match op {
            "write" => Some(Work::Write { blocks, seed }),
            "verify" => Some(Work::Verify { blocks, seed }),
            _ => None,
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Block `index` of `seed`'s pattern: index and seed (little-endian), a
/// xorshift payload, and the FNV-1a of everything before the last 8 bytes.
pub fn block(index: u64, seed: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..8].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&seed.to_le_bytes());
    let mut x = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for c in b[16..BLOCK - 8].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let sum = fnv1a(&b[..BLOCK - 8]);
    b[BLOCK - 8..].copy_from_slice(&sum.to_le_bytes());
    b
}

/// Whether `b` is a block whose checksum holds, and if so its index and
/// seed.
pub fn check(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() != BLOCK {
        return None;
    }
    let sum = u64::from_le_bytes(b[BLOCK - 8..].try_into().ok()?);
    if fnv1a(&b[..BLOCK - 8]) != sum {
        return None;
    }
    let index = u64::from_le_bytes(b[..8].try_into().ok()?);
    let seed = u64::from_le_bytes(b[8..16].try_into().ok()?);
    Some((index, seed))
}

/// The guest's disk.
pub struct Disk<'p, P: Platform> {
    p: &'p P,
    devid: u32,
    fe: Option<BlkFront<'p, P>>,
    backend: String,
    reconnects: u32,
}

fn read_str<S: XenStore>(xs: &S, path: &str) -> Option<String> {
    xs.read(T, path)
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
}

impl<'p, P: Platform> Disk<'p, P> {
    /// Connects the first VBD the toolstack gave us, if any; `data/disk`
    /// says how it went.
    pub fn connect<S: XenStore>(p: &'p P, xs: &S) -> Option<Self> {
        let devs = xs.directory(T, "device/vbd").ok()?;
        let devid: u32 = devs.iter().find_map(|d| d.parse().ok())?;
        let backend = read_str(xs, &format!("device/vbd/{devid}/backend")).unwrap_or_default();
        match BlkFront::connect(p, xs, devid, Geometry::default()) {
            Ok(fe) => {
                let sectors = fe.disk().sectors;
                let _ = xs.write(T, "data/disk", format!("connected {sectors}").as_bytes());
                Some(Disk {
                    p,
                    devid,
                    fe: Some(fe),
                    backend,
                    reconnects: 0,
                })
            }
            Err(e) => {
                let _ = xs.write(T, "data/disk", format!("failed: {e}").as_bytes());
                None
            }
        }
    }

    /// The backend went away: waits until xenstore names another one (the
    /// toolstack restarted it) or the device's backend offers it again
    /// (`InitWait`: it was unplugged and plugged), then connects to it.
    fn reconnect<S: XenStore>(&mut self, xs: &S) -> Result<(), String> {
        // The dead connection's grants and pages are let go with it.
        self.fe = None;
        if self.reconnects >= MAX_RECONNECTS {
            return Err("too many reconnections".into());
        }
        let node = format!("device/vbd/{}/backend", self.devid);
        let end = self.p.now() + BACKEND_WAIT;
        loop {
            match read_str(xs, &node) {
                Some(b) if b != self.backend => {
                    self.backend = b;
                    break;
                }
                Some(b) if read_str(xs, &format!("{b}/state")).as_deref() == Some("2") => break,
                _ => {}
            }
            if self.p.now() >= end {
                return Err("no new backend".into());
            }
            self.p
                .wait(&[], Some(Duration::from_millis(10)))
                .map_err(|e| format!("{e}"))?;
        }
        let fe = BlkFront::connect(self.p, xs, self.devid, Geometry::default())
            .map_err(|e| format!("reconnecting: {e}"))?;
        self.fe = Some(fe);
        self.reconnects += 1;
        let _ = xs.write(
            T,
            "data/disk-reconnects",
            format!("{}", self.reconnects).as_bytes(),
        );
        tracing::info!(dom = self.p.domid().0, "blkfront reconnected");
        Ok(())
    }

    /// Runs one request; the answer goes to `data/disk`.
    pub fn run<S: XenStore>(&mut self, xs: &S, work: Work) -> String {
        match work {
            Work::Write { blocks, seed } => match self.write(xs, blocks, seed) {
                Ok(()) => format!("written {blocks}"),
                Err(e) => format!("failed: {e}"),
            },
            Work::Verify { blocks, seed } => self.verify(xs, blocks, seed),
        }
    }

    fn write<S: XenStore>(&mut self, xs: &S, blocks: u64, seed: u64) -> Result<(), String> {
        let mut flushed = 0u64;
        let _ = xs.write(T, "data/disk-flushed", b"0");
        while flushed < blocks {
            let end = (flushed + BATCH).min(blocks);
            let r = match self.fe.as_mut() {
                Some(fe) => (flushed..end)
                    .try_for_each(|i| fe.write(i * (BLOCK as u64 / 512), &block(i, seed)))
                    .and_then(|()| fe.flush()),
                None => Err(windsor_blkfront::driver::Error::BackendGone),
            };
            match r {
                Ok(()) => {
                    flushed = end;
                    let _ = xs.write(T, "data/disk-flushed", format!("{flushed}").as_bytes());
                }
                Err(windsor_blkfront::driver::Error::Status(s)) => {
                    return Err(format!("the disk refused a request ({s})"));
                }
                Err(e) => {
                    tracing::info!(%e, flushed, "blkfront: backend lost");
                    self.reconnect(xs)?;
                }
            }
        }
        Ok(())
    }

    fn verify<S: XenStore>(&mut self, xs: &S, blocks: u64, seed: u64) -> String {
        let mut buf: Vec<u8> = alloc::vec![0; BLOCK];
        let mut i = 0u64;
        while i < blocks {
            let r = match self.fe.as_mut() {
                Some(fe) => fe.read(i * (BLOCK as u64 / 512), &mut buf),
                None => Err(windsor_blkfront::driver::Error::BackendGone),
            };
            match r {
                Ok(()) => {
                    if check(&buf) != Some((i, seed)) || buf[..] != block(i, seed)[..] {
                        return format!("bad {i}");
                    }
                    i += 1;
                }
                Err(windsor_blkfront::driver::Error::Status(s)) => {
                    return format!("failed: read of block {i} refused ({s})");
                }
                Err(e) => {
                    tracing::info!(%e, "blkfront: backend lost");
                    if let Err(e) = self.reconnect(xs) {
                        return format!("failed: {e}");
                    }
                }
            }
        }
        format!("verified {blocks}")
    }

    /// Closes the device (at shutdown).
    pub fn close<S: XenStore>(self, xs: &S) {
        if let Some(fe) = self.fe {
            let _ = fe.close(xs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_check_and_differ() {
        let a = block(3, 7);
        assert_eq!(check(&a), Some((3, 7)));
        let mut bad = a;
        bad[100] ^= 1;
        assert_eq!(check(&bad), None);
        assert_ne!(block(3, 8)[16..64], a[16..64]);
        assert_ne!(block(4, 7)[16..64], a[16..64]);
        assert_eq!(check(&[0u8; BLOCK]), None);
    }

    #[test]
    fn work_parses() {
        assert_eq!(
            Work::parse(b"write 16 9"),
            Some(Work::Write {
                blocks: 16,
                seed: 9
            })
        );
        assert_eq!(
            Work::parse(b"verify 1 2"),
            Some(Work::Verify { blocks: 1, seed: 2 })
        );
        assert_eq!(Work::parse(b"write 16"), None);
        assert_eq!(Work::parse(b"erase 1 2"), None);
        assert_eq!(Work::parse(b"write 1 2 3"), None);
    }
}
