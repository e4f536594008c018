//! Memory that another domain can read or write at the same time as we do.
//!
//! This is the only module of the crate that touches raw pointers into shared
//! pages. Everything else (rings, vchan, xenbus) goes through the two views
//! defined here:
//!
//! * [`SharedMem`]: a read-write window (pages we own, or a writable mapping of
//!   a peer's grant);
//! * [`SharedRo`]: a read-only window (a grant mapped read-only).
//!
//! Rules the views enforce or document:
//!
//! * No `&`/`&mut` to plain bytes in the window is ever created: the peer may
//!   change them at any time. Scalars are accessed through atomics (`&AtomicU32`
//!   is sound on memory another agent mutates); byte ranges are copied in or
//!   out with [`SharedRo::read_bytes`] / [`SharedMem::write_bytes`] into private
//!   buffers that the caller then validates.
//! * Every offset is bounds-checked against the window. An out-of-window
//!   offset is a bug in the caller (offsets come from constants and from
//!   indices the caller has already masked), so it panics with a message
//!   rather than reading outside the window; data read from the window never
//!   decides whether we panic.
//! * Bulk copies use `copy_nonoverlapping`. A peer that writes a range while
//!   we copy it (which the ring protocols forbid) can only corrupt the bytes
//!   we copy, never our own memory: we copy into private memory before parsing.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

/// Size of a Xen page on x86.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A read-write window onto memory a peer may access concurrently.
///
/// Copy it freely: it is a borrowed view whose lifetime ties it to the owner
/// of the memory (a page allocation or a grant mapping).
#[derive(Clone, Copy)]
pub struct SharedMem<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _owner: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: the window is only accessed through atomics and raw copies, which
// are allowed from any thread; the owner guarantees the memory outlives 'a.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as above; `&SharedMem` hands out nothing but atomics and copies.
unsafe impl Sync for SharedMem<'_> {}

/// A read-only window onto memory a peer may modify concurrently.
#[derive(Clone, Copy)]
pub struct SharedRo<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _owner: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: see `SharedMem`; a read-only view is strictly less capable.
unsafe impl Send for SharedRo<'_> {}
// SAFETY: see `SharedMem`.
unsafe impl Sync for SharedRo<'_> {}

#[track_caller]
fn check(len: usize, off: usize, n: usize, align: usize) {
    let end = off.checked_add(n);
    assert!(
        matches!(end, Some(e) if e <= len),
        "shared memory access {off}+{n} outside window of {len} bytes"
    );
    assert!(
        off % align == 0,
        "shared memory access at {off} not aligned to {align}"
    );
}

macro_rules! atomic_getters {
    ($($name:ident: $ty:ty, $size:expr;)*) => {$(
        /// An atomic handle on the naturally aligned scalar at `off`.
        ///
        /// # Panics
        /// If the scalar is outside the window or misaligned (a caller bug).
        #[track_caller]
        pub fn $name(&self, off: usize) -> &'a $ty {
            check(self.len, off, $size, $size);
            // SAFETY: in bounds and aligned (checked above); the owner keeps
            // the memory valid for 'a; atomics tolerate concurrent writers.
            // The base pointer is at least 8-byte aligned (see `from_raw`),
            // so an aligned offset gives an aligned address.
            unsafe { &*(self.ptr.as_ptr().add(off) as *const $ty) }
        }
    )*};
}

impl<'a> SharedMem<'a> {
    /// Makes a window over `len` bytes at `ptr`.
    ///
    /// # Safety
    /// For the whole lifetime `'a`, `ptr..ptr+len` must be valid for reads and
    /// writes, must not be freed or unmapped, and must not be accessed through
    /// Rust references by anyone in this address space (only through views
    /// like this one, atomics or raw pointers). `ptr` must be 8-byte aligned.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Self {
        debug_assert!(ptr.as_ptr() as usize % 8 == 0);
        SharedMem {
            ptr,
            len,
            _owner: PhantomData,
        }
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same memory, read-only.
    pub fn ro(&self) -> SharedRo<'a> {
        SharedRo {
            ptr: self.ptr,
            len: self.len,
            _owner: PhantomData,
        }
    }

    /// A sub-window of `len` bytes from `off`, or `None` if it does not fit
    /// or `off` is not 8-byte aligned.
    pub fn slice(&self, off: usize, len: usize) -> Option<SharedMem<'a>> {
        if off % 8 != 0 || off.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above), so the pointer stays in the
        // owner's allocation and is non-null.
        let ptr = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(off)) };
        Some(SharedMem {
            ptr,
            len,
            _owner: PhantomData,
        })
    }

    atomic_getters! {
        atomic_u8: AtomicU8, 1;
        atomic_u16: AtomicU16, 2;
        atomic_u32: AtomicU32, 4;
        atomic_u64: AtomicU64, 8;
    }

    /// Copies `dst.len()` bytes from the window at `off` into private memory.
    #[track_caller]
    pub fn read_bytes(&self, off: usize, dst: &mut [u8]) {
        self.ro().read_bytes(off, dst)
    }

    /// Copies `src` into the window at `off`.
    ///
    /// # Panics
    /// If the range is outside the window (a caller bug).
    #[track_caller]
    pub fn write_bytes(&self, off: usize, src: &[u8]) {
        check(self.len, off, src.len(), 1);
        // SAFETY: the destination range is inside the window (checked); the
        // source is private memory of ours, so the ranges cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        }
    }

    /// Sets `n` bytes at `off` to `byte`.
    #[track_caller]
    pub fn fill(&self, off: usize, n: usize, byte: u8) {
        check(self.len, off, n, 1);
        // SAFETY: the range is inside the window (checked above).
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(off), byte, n) }
    }

    /// The address of the window, for hypercalls that take a guest address
    /// (never dereferenced here).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl<'a> SharedRo<'a> {
    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The address of the window, for interfaces that take one (never
    /// dereferenced here; a read-only view gives no way to write).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// True if the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-window of `len` bytes from `off`, or `None` if it does not fit
    /// or `off` is not 8-byte aligned.
    pub fn slice(&self, off: usize, len: usize) -> Option<SharedRo<'a>> {
        if off % 8 != 0 || off.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above).
        let ptr = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(off)) };
        Some(SharedRo {
            ptr,
            len,
            _owner: PhantomData,
        })
    }

    /// Loads the `u8` at `off` atomically with `order`.
    #[track_caller]
    pub fn load_u8(&self, off: usize, order: core::sync::atomic::Ordering) -> u8 {
        check(self.len, off, 1, 1);
        // SAFETY: in bounds; atomic loads on shared memory are sound.
        unsafe { (*(self.ptr.as_ptr().add(off) as *const AtomicU8)).load(order) }
    }

    /// Loads the `u16` at `off` atomically with `order`.
    #[track_caller]
    pub fn load_u16(&self, off: usize, order: core::sync::atomic::Ordering) -> u16 {
        check(self.len, off, 2, 2);
        // SAFETY: in bounds and aligned (checked above).
        unsafe { (*(self.ptr.as_ptr().add(off) as *const AtomicU16)).load(order) }
    }

    /// Loads the `u32` at `off` atomically with `order`.
    #[track_caller]
    pub fn load_u32(&self, off: usize, order: core::sync::atomic::Ordering) -> u32 {
        check(self.len, off, 4, 4);
        // SAFETY: in bounds and aligned (checked above).
        unsafe { (*(self.ptr.as_ptr().add(off) as *const AtomicU32)).load(order) }
    }

    /// Loads the `u64` at `off` atomically with `order`.
    #[track_caller]
    pub fn load_u64(&self, off: usize, order: core::sync::atomic::Ordering) -> u64 {
        check(self.len, off, 8, 8);
        // SAFETY: in bounds and aligned (checked above).
        unsafe { (*(self.ptr.as_ptr().add(off) as *const AtomicU64)).load(order) }
    }

    /// Copies `dst.len()` bytes from the window at `off` into private memory.
    ///
    /// # Panics
    /// If the range is outside the window (a caller bug).
    #[track_caller]
    pub fn read_bytes(&self, off: usize, dst: &mut [u8]) {
        check(self.len, off, dst.len(), 1);
        // SAFETY: the source range is inside the window (checked); `dst` is
        // private memory, so the ranges cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    #[repr(C, align(4096))]
    struct Page([AtomicU8; PAGE_SIZE]);

    fn page() -> Page {
        Page([const { AtomicU8::new(0) }; PAGE_SIZE])
    }

    fn view(p: &Page) -> SharedMem<'_> {
        // SAFETY: the page outlives the view and is only used through views.
        unsafe { SharedMem::from_raw(NonNull::from(&p.0).cast(), PAGE_SIZE) }
    }

    #[test]
    fn atomics_and_bytes_round_trip() {
        let p = page();
        let m = view(&p);
        m.atomic_u32(8).store(0xdead_beef, Ordering::Release);
        assert_eq!(m.ro().load_u32(8, Ordering::Acquire), 0xdead_beef);
        assert_eq!(m.ro().load_u8(8, Ordering::Relaxed), 0xef, "little endian");
        m.write_bytes(100, b"hello");
        let mut out = [0u8; 5];
        m.read_bytes(100, &mut out);
        assert_eq!(&out, b"hello");
        m.fill(100, 5, 0);
        m.read_bytes(100, &mut out);
        assert_eq!(out, [0; 5]);
    }

    #[test]
    fn slices_are_bounded() {
        let p = page();
        let m = view(&p);
        assert!(m.slice(4096, 0).is_some());
        assert!(m.slice(4096, 1).is_none());
        assert!(m.slice(3, 1).is_none(), "unaligned sub-window refused");
        assert!(m.slice(usize::MAX - 7, 16).is_none(), "overflow refused");
        let s = m.slice(2048, 2048).unwrap();
        s.atomic_u16(0).store(7, Ordering::Relaxed);
        assert_eq!(m.ro().load_u16(2048, Ordering::Relaxed), 7);
    }

    #[test]
    #[should_panic(expected = "outside window")]
    fn out_of_window_access_panics_instead_of_escaping() {
        let p = page();
        view(&p).atomic_u32(4094);
    }

    #[test]
    #[should_panic(expected = "not aligned")]
    fn misaligned_atomic_panics() {
        let p = page();
        view(&p).atomic_u32(2);
    }
}
