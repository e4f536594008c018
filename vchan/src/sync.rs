//! The atomic-handle seam between the ring logic and the memory it runs on.
//!
//! [`crate::ring`] never touches memory directly: it is generic over
//!
//! * [`Atomic32`] for the four ring indices and [`Atomic8`] for the live and
//!   notify bytes — implemented for `core` atomics (what
//!   [`xen::shmem::SharedMem`] hands out for the shared page) and, under
//!   `cfg(loom)`, for `loom`'s atomics, so the loom models run the very
//!   code production runs;
//! * [`RingBuf`] / [`RingBufMut`] for the ring bytes — implemented for
//!   [`SharedRo`] / [`SharedMem`] (`read_bytes` / `write_bytes`), and by the
//!   loom models with `loom::cell::UnsafeCell` bytes, so that a data race
//!   (a missing happens-before between a producer's copy and a consumer's
//!   copy) is reported by loom rather than showing up as a wrong byte.
//!
//! Every ordering is chosen by the caller; the handles pass it through.

use core::sync::atomic::Ordering;

use xen::shmem::{SharedMem, SharedRo};

/// A 32-bit atomic cell (a ring index).
pub trait Atomic32 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
}

/// An 8-bit atomic cell (a live flag or a notify byte).
pub trait Atomic8 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u8;
    /// Atomic store.
    fn store(&self, value: u8, order: Ordering);
    /// Atomic OR; returns the previous value.
    fn fetch_or(&self, bits: u8, order: Ordering) -> u8;
    /// Atomic AND; returns the previous value.
    fn fetch_and(&self, bits: u8, order: Ordering) -> u8;
}

impl Atomic32 for core::sync::atomic::AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        core::sync::atomic::AtomicU32::load(self, order)
    }
    #[inline]
    fn store(&self, value: u32, order: Ordering) {
        core::sync::atomic::AtomicU32::store(self, value, order)
    }
}

impl Atomic8 for core::sync::atomic::AtomicU8 {
    #[inline]
    fn load(&self, order: Ordering) -> u8 {
        core::sync::atomic::AtomicU8::load(self, order)
    }
    #[inline]
    fn store(&self, value: u8, order: Ordering) {
        core::sync::atomic::AtomicU8::store(self, value, order)
    }
    #[inline]
    fn fetch_or(&self, bits: u8, order: Ordering) -> u8 {
        core::sync::atomic::AtomicU8::fetch_or(self, bits, order)
    }
    #[inline]
    fn fetch_and(&self, bits: u8, order: Ordering) -> u8 {
        core::sync::atomic::AtomicU8::fetch_and(self, bits, order)
    }
}

#[cfg(loom)]
impl Atomic32 for loom::sync::atomic::AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        loom::sync::atomic::AtomicU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        loom::sync::atomic::AtomicU32::store(self, value, order)
    }
}

#[cfg(loom)]
impl Atomic8 for loom::sync::atomic::AtomicU8 {
    fn load(&self, order: Ordering) -> u8 {
        loom::sync::atomic::AtomicU8::load(self, order)
    }
    fn store(&self, value: u8, order: Ordering) {
        loom::sync::atomic::AtomicU8::store(self, value, order)
    }
    fn fetch_or(&self, bits: u8, order: Ordering) -> u8 {
        loom::sync::atomic::AtomicU8::fetch_or(self, bits, order)
    }
    fn fetch_and(&self, bits: u8, order: Ordering) -> u8 {
        loom::sync::atomic::AtomicU8::fetch_and(self, bits, order)
    }
}

/// The bytes of a ring, readable. `size()` is the ring size, a power of two.
pub trait RingBuf {
    /// Size of the ring in bytes.
    fn size(&self) -> usize;
    /// Copies `dst.len()` bytes from ring offset `off` (no wrap: the caller
    /// splits copies at the end of the ring).
    fn read(&self, off: usize, dst: &mut [u8]);
}

/// The bytes of a ring, writable.
pub trait RingBufMut: RingBuf {
    /// Copies `src` to ring offset `off` (no wrap).
    fn write(&self, off: usize, src: &[u8]);
}

impl RingBuf for SharedRo<'_> {
    #[inline]
    fn size(&self) -> usize {
        SharedRo::len(self)
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.read_bytes(off, dst)
    }
}

impl RingBuf for SharedMem<'_> {
    #[inline]
    fn size(&self) -> usize {
        SharedMem::len(self)
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.read_bytes(off, dst)
    }
}

impl RingBufMut for SharedMem<'_> {
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        self.write_bytes(off, src)
    }
}

impl<T: RingBuf + ?Sized> RingBuf for &T {
    #[inline]
    fn size(&self) -> usize {
        (**self).size()
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        (**self).read(off, dst)
    }
}

impl<T: RingBufMut + ?Sized> RingBufMut for &T {
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        (**self).write(off, src)
    }
}
