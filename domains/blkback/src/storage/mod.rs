//! Storage back-ends behind one trait.
//!
//! This module is part of the `no_std` core: the [`Storage`] trait the
//! service drives, its typed [`StorageError`], the [`Options`] an image is
//! opened with and [`AlignedBuf`], the 4 KiB-aligned buffers callers hand
//! to it. The back-ends on host files are in [`file`] (feature `std`):
//!
//! * [`RawFile`]: the image file itself, read and written with
//!   `pread`/`pwrite`; a discard punches a hole (the file stays sparse);
//!   flush is `fdatasync`. With [`Options::direct`] the file is opened with
//!   `O_DIRECT` (the page cache is bypassed); transfers that are not
//!   4 KiB-aligned go through a second, buffered descriptor, since
//!   `O_DIRECT` refuses them on 4K-sector devices.
//! * [`Qcow2`]: a qcow2 image through the `imago` crate (its metadata
//!   caches, cluster allocation and refcounts), flush = imago's flush of
//!   its caches followed by its sync (`fdatasync`) of the file.
//!
//! [`open`] picks the format from the file's magic (`QFI\xfb` is qcow2).
//! [`ram::RamDisk`] (no `std`) keeps the disk in memory: what the
//! Xen-mode blkback domain serves.

use alloc::vec;
use alloc::vec::Vec;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[cfg(feature = "std")]
pub mod file;
pub mod ram;
#[cfg(feature = "std")]
pub use file::{open, Qcow2, RawFile};

/// Alignment of the buffers handed to a [`Storage`] (and of direct I/O).
pub const ALIGN: usize = 4096;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The transfer reaches past the end of the image.
    #[error("beyond the end of the image")]
    OutOfRange,
    /// The host refused the operation.
    #[cfg(feature = "std")]
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A disk image.
pub trait Storage: Send + Sync {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// True for an empty image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), StorageError>;
    /// Makes every completed write stable (`fdatasync`).
    fn flush(&self) -> Result<(), StorageError>;
    /// Forgets `len` bytes at `offset` (they read back as anything, zeros
    /// here).
    fn discard(&self, offset: u64, len: u64) -> Result<(), StorageError>;
    /// The physical sector size to advertise.
    fn physical_sector_size(&self) -> u32 {
        4096
    }
}

/// How to open an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Open for writing.
    pub writable: bool,
    /// Bypass the host page cache (`O_DIRECT`).
    pub direct: bool,
}

/// Checks that `len` bytes at `offset` lie within an image of `size`.
pub fn check(size: u64, offset: u64, len: u64) -> Result<(), StorageError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StorageError::OutOfRange),
    }
}

/// One page of an [`AlignedBuf`].
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4096))]
struct Page([u8; ALIGN]);

/// A heap buffer aligned to [`ALIGN`], for direct I/O without unsafe code.
pub struct AlignedBuf {
    pages: Vec<Page>,
}

impl AlignedBuf {
    /// A zeroed buffer of at least `len` bytes (whole pages).
    pub fn new(len: usize) -> AlignedBuf {
        AlignedBuf {
            pages: vec![Page([0; ALIGN]); len.div_ceil(ALIGN)],
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.pages.len() * ALIGN
    }

    /// The first `len` bytes (at most the capacity).
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.pages.as_bytes()[..len]
    }

    /// The first `len` bytes, writable.
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.pages.as_mut_bytes()[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_alignment() {
        assert!(check(4096, 0, 4096).is_ok());
        assert!(matches!(
            check(4096, 1, 4096),
            Err(StorageError::OutOfRange)
        ));
        assert!(matches!(
            check(4096, u64::MAX, 2),
            Err(StorageError::OutOfRange)
        ));
        let mut b = AlignedBuf::new(5000);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.bytes_mut(8192).as_ptr() as usize % ALIGN, 0);
    }
}
