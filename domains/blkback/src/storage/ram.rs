//! [`RamDisk`]: a disk in the domain's own memory, the back-end that needs
//! no operating system (the Xen-mode blkback image serves these, through
//! [`crate::poll`]).
//!
//! The disk is allocated whole when it is made (so a full disk can never
//! run the domain out of memory later): writes are stable as soon as they
//! are done, `flush` has nothing to do, and a discard zeroes. Its contents
//! live as long as the value: in Xen mode, as long as the blkback domain.
//! Read-only service is the VBD's business (`vbd::Disk::readonly` refuses
//! writes before they reach any back-end).

use alloc::vec::Vec;

use super::{check, Storage, StorageError};

/// The range `[offset, offset + len)` of an image of `size` bytes as
/// `usize` bounds, if it lies within it.
fn range(size: u64, offset: u64, len: u64) -> Result<(usize, usize), StorageError> {
    check(size, offset, len)?;
    let lo = usize::try_from(offset).map_err(|_| StorageError::OutOfRange)?;
    let hi = usize::try_from(offset + len).map_err(|_| StorageError::OutOfRange)?;
    Ok((lo, hi))
}

/// A disk in memory (see the module doc).
pub struct RamDisk {
    bytes: spin::Mutex<Vec<u8>>,
    len: u64,
}

impl core::fmt::Debug for RamDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RamDisk").field("len", &self.len).finish()
    }
}

impl RamDisk {
    /// A zeroed disk of `len` bytes (rounded down to whole 512-byte
    /// sectors), or `None` if the memory cannot be had.
    pub fn new(len: u64) -> Option<RamDisk> {
        let len = len & !511;
        let n = usize::try_from(len).ok()?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0);
        Some(RamDisk {
            bytes: spin::Mutex::new(v),
            len,
        })
    }
}

impl Storage for RamDisk {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        let (lo, hi) = range(self.len, offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes.lock()[lo..hi]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), StorageError> {
        let (lo, hi) = range(self.len, offset, buf.len() as u64)?;
        self.bytes.lock()[lo..hi].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        let (lo, hi) = range(self.len, offset, len)?;
        self.bytes.lock()[lo..hi].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_disk_reads_back_writes_and_bounds_every_range() {
        let d = RamDisk::new(1 << 20).unwrap();
        assert_eq!(d.len(), 1 << 20);
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        d.write_at(&data, 4096).unwrap();
        let mut back = [0u8; 8192];
        d.read_at(&mut back, 4096).unwrap();
        assert_eq!(&back[..], &data[..]);
        d.discard(4096, 4096).unwrap();
        d.read_at(&mut back, 4096).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0));
        assert_eq!(&back[4096..], &data[4096..]);
        d.flush().unwrap();
        for (off, n) in [(1 << 20, 1), ((1 << 20) - 511, 512), (u64::MAX, 2)] {
            assert!(matches!(
                d.read_at(&mut back[..n], off),
                Err(StorageError::OutOfRange)
            ));
        }
        assert!(matches!(
            d.discard(u64::MAX - 1, 4),
            Err(StorageError::OutOfRange)
        ));
        assert_eq!(RamDisk::new(1000).unwrap().len(), 512, "whole sectors");
    }
}
