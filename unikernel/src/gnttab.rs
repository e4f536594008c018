//! Grant table v1 over our mapped grant frames and `GNTTABOP_*`.
//!
//! * Granting: we own the table. An entry (`grant_entry_v1_t`: flags u16,
//!   domid u16, frame u32; `grant_table.h`) is filled with domid and frame
//!   first, then `flags` is published with a release store, as Linux's
//!   `gnttab_grant_foreign_access` does. Ending access clears `flags` with
//!   a compare-exchange that fails while Xen reports the peer reading or
//!   writing (`EBUSY`). References below [`GrantRef::FIRST_FREE`] are
//!   reserved for the builder (console, xenstore).
//! * Mapping: `GNTTABOP_map_grant_ref` with `GNTMAP_host_map` at a
//!   guest-physical address taken from a window of unpopulated address
//!   space above the memory map (so no RAM page is replaced);
//!   unmapped on drop.
//! * Pages to grant come from the heap, page-aligned (identity map, so the
//!   frame number is the address >> 12).

use crate::hypercall;
use crate::runtime::Xen;
use crate::start_info::StartInfo;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::mem::offset_of;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use xen::abi::grant_table::{
    check_status, GnttabCopy, GnttabCopyPtr, GrantEntryV1, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
use xen::platform::{CopySeg, Error, ForeignMapping, GrantStatus, GrantTable, LocalPages, Result};
use xen::{DomId, Errno, Gfn, GrantRef, SharedMem, SharedRo, PAGE_SIZE};

/// Most `gnttab_copy` ops in one `GNTTABOP_copy` call of
/// [`GrantTable::copy_batch`] (two per page-crossing segment).
const COPY_BATCH: usize = 64;

/// Highest guest-physical address the foreign-mapping window may reach:
/// below the 32-bit MMIO hole, inside the boot identity map.
const WINDOW_LIMIT: u64 = 0xc000_0000;

/// The window for grant and foreign mappings: the largest stretch of
/// guest-physical address space between 1 MiB and [`WINDOW_LIMIT`] that no
/// memory-map entry covers (RAM, reserved, ACPI: on QEMU's `q35` machine
/// the MMCONFIG area sits at 0xb000_0000, below the limit), starting on a
/// 2 MiB boundary. `(start, end)` in bytes.
fn window_range(map: &[crate::start_info::MemRegion]) -> (u64, u64) {
    const ALIGN: u64 = 2 << 20;
    let mut edges: Vec<(u64, u64)> = map
        .iter()
        .map(|r| (r.addr, r.end()))
        .filter(|&(a, _)| a < WINDOW_LIMIT)
        .collect();
    edges.sort_unstable();
    let mut best = (0, 0);
    let mut cursor = 1u64 << 20;
    for (a, e) in edges
        .iter()
        .copied()
        .chain(core::iter::once((WINDOW_LIMIT, WINDOW_LIMIT)))
    {
        let lo = cursor.div_ceil(ALIGN) * ALIGN;
        let hi = a.min(WINDOW_LIMIT);
        if hi > lo && hi - lo > best.1 - best.0 {
            best = (lo, hi);
        }
        cursor = cursor.max(e);
    }
    best
}

/// Runtime state of the grant table.
pub(crate) struct GrantState {
    frames: SharedMem<'static>,
    free: RefCell<Vec<u32>>,
    next_window_gfn: RefCell<u64>,
    window_end_gfn: u64,
}

impl GrantState {
    pub(crate) fn new(frames: SharedMem<'static>, start: &StartInfo) -> GrantState {
        let entries = (frames.len() / size_of::<GrantEntryV1>()) as u32;
        // Hand out low references first.
        let free = (GrantRef::FIRST_FREE.0..entries).rev().collect();
        let (first, end) = window_range(&start.memmap);
        GrantState {
            frames,
            free: RefCell::new(free),
            next_window_gfn: RefCell::new(first >> 12),
            window_end_gfn: end >> 12,
        }
    }

    fn entry_off(&self, gref: GrantRef) -> Result<usize> {
        let off = (gref.0 as usize).checked_mul(size_of::<GrantEntryV1>());
        match off {
            Some(o) if o < self.frames.len() && gref.0 >= GrantRef::FIRST_FREE.0 => Ok(o),
            _ => Err(Error::Grant(GrantStatus::BadGntref)),
        }
    }

    /// Takes `n` pages of unpopulated guest-physical space.
    // The window is not reused yet: 3 GiB of address space is far more
    // than a domain maps over its life in the tests and images so far.
    pub(crate) fn window(&self, n: usize) -> Result<u64> {
        let mut next = self.next_window_gfn.borrow_mut();
        let gfn = *next;
        if gfn + n as u64 > self.window_end_gfn {
            return Err(Error::Grant(GrantStatus::NoSpace));
        }
        *next += n as u64;
        Ok(gfn << 12)
    }
}

/// Zeroed, page-aligned pages from the heap that this domain can grant.
pub struct Pages {
    ptr: NonNull<u8>,
    count: usize,
}

impl Pages {
    fn layout(count: usize) -> Layout {
        Layout::from_size_align(count * PAGE_SIZE, PAGE_SIZE).expect("page layout")
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc_pages` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Pages::layout(self.count)) }
    }
}

impl LocalPages for Pages {
    fn mem(&self) -> SharedMem<'_> {
        // SAFETY: the allocation lives as long as `self`, is page-aligned,
        // and is only accessed through views (never by reference).
        unsafe { SharedMem::from_raw(self.ptr, self.count * PAGE_SIZE) }
    }
    fn count(&self) -> usize {
        self.count
    }
    fn gfn(&self, index: usize) -> Gfn {
        assert!(index < self.count, "page {index} of {}", self.count);
        Gfn((self.ptr.as_ptr() as u64 >> 12) + index as u64)
    }
}

/// Grants of another domain mapped at consecutive guest-physical pages;
/// unmapped on drop.
pub struct Mapping {
    addr: u64,
    handles: Vec<u32>,
    readonly: bool,
    granter: DomId,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        for (i, &h) in self.handles.iter().enumerate() {
            let at = self.addr + (i * PAGE_SIZE) as u64;
            if let Err(e) = hypercall::gnttab_unmap(at, h) {
                crate::println!("windsor: unmap grant handle {h} failed: {e}");
            }
        }
    }
}

impl Mapping {
    fn view(&self) -> SharedMem<'_> {
        // SAFETY: every page of the range is mapped (one handle each) until
        // `drop`; the range is page-aligned and accessed only through views.
        unsafe {
            SharedMem::from_raw(
                NonNull::new_unchecked(self.addr as *mut u8),
                self.handles.len() * PAGE_SIZE,
            )
        }
    }
}

impl ForeignMapping for Mapping {
    fn ro(&self) -> SharedRo<'_> {
        self.view().ro()
    }
    fn rw(&self) -> Option<SharedMem<'_>> {
        (!self.readonly).then(|| self.view())
    }
    fn granter(&self) -> DomId {
        self.granter
    }
}

/// Splits `len` bytes at local address `addr` into page-bounded pieces:
/// `(offset into the buffer, length)`.
fn page_pieces(addr: u64, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = addr + done as u64;
        let room = PAGE_SIZE - (at as usize % PAGE_SIZE);
        let n = room.min(len - done);
        let piece = (done, n);
        done += n;
        Some(piece)
    })
}

impl Xen {
    /// Grants page `index` of `pages` to `to` through the reserved entry
    /// `GNTTAB_RESERVED_XENSTORE` (1) of our own table, as a domain builder
    /// seeds it for a guest. dom0 uses it for its own xenstore ring, so the
    /// xenstore domain maps dom0's page exactly as it maps a guest's. The
    /// entry stays granted for the domain's life; `pages` must outlive it
    /// (the caller keeps them).
    pub fn grant_xenstore_ring(&self, pages: &Pages, index: usize, to: DomId) -> Result<()> {
        if index >= pages.count {
            return Err(Error::Errno(Errno::EINVAL));
        }
        let off = GrantRef::RESERVED_XENSTORE.0 as usize * size_of::<GrantEntryV1>();
        let t = self.gnttab.frames;
        t.atomic_u16(off + offset_of!(GrantEntryV1, domid))
            .store(to.0, Ordering::Relaxed);
        t.atomic_u32(off + offset_of!(GrantEntryV1, frame))
            .store(pages.gfn(index).0 as u32, Ordering::Relaxed);
        t.atomic_u16(off + offset_of!(GrantEntryV1, flags))
            .store(GTF_PERMIT_ACCESS, Ordering::Release);
        Ok(())
    }
}

impl GrantTable for Xen {
    type Pages = Pages;
    type Mapping = Mapping;

    fn alloc_pages(&self, count: usize) -> Result<Pages> {
        if count == 0 {
            return Err(Error::Errno(Errno::EINVAL));
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(Pages::layout(count)) };
        let ptr = NonNull::new(ptr).ok_or(Error::Errno(Errno::ENOMEM))?;
        Ok(Pages { ptr, count })
    }

    fn grant_access(
        &self,
        pages: &Pages,
        index: usize,
        to: DomId,
        readonly: bool,
    ) -> Result<GrantRef> {
        if index >= pages.count {
            return Err(Error::Errno(Errno::EINVAL));
        }
        let gref = GrantRef(
            self.gnttab
                .free
                .borrow_mut()
                .pop()
                .ok_or(Error::Grant(GrantStatus::NoSpace))?,
        );
        let off = self.gnttab.entry_off(gref)?;
        let t = self.gnttab.frames;
        t.atomic_u16(off + offset_of!(GrantEntryV1, domid))
            .store(to.0, Ordering::Relaxed);
        t.atomic_u32(off + offset_of!(GrantEntryV1, frame))
            .store(pages.gfn(index).0 as u32, Ordering::Relaxed);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        t.atomic_u16(off + offset_of!(GrantEntryV1, flags))
            .store(flags, Ordering::Release);
        Ok(gref)
    }

    fn end_access(&self, gref: GrantRef) -> Result<()> {
        let off = self.gnttab.entry_off(gref)?;
        let flags = self.gnttab.frames.atomic_u16(off);
        let mut cur = flags.load(Ordering::Acquire);
        loop {
            if cur & (GTF_READING | GTF_WRITING) != 0 {
                return Err(Error::Errno(Errno::EBUSY));
            }
            match flags.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.gnttab.free.borrow_mut().push(gref.0);
        Ok(())
    }

    fn map(&self, from: DomId, refs: &[GrantRef], readonly: bool) -> Result<Mapping> {
        let addr = self.gnttab.window(refs.len())?;
        let mut m = Mapping {
            addr,
            handles: Vec::with_capacity(refs.len()),
            readonly,
            granter: from,
        };
        for (i, r) in refs.iter().enumerate() {
            match hypercall::gnttab_map(addr + (i * PAGE_SIZE) as u64, from.0, r.0, readonly)? {
                Ok(h) => m.handles.push(h),
                // Dropping `m` unmaps what was mapped so far.
                Err(st) => return Err(Error::Grant(st)),
            }
        }
        Ok(m)
    }

    fn copy_from_grant(
        &self,
        from: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<()> {
        if usize::from(offset) + buf.len() > PAGE_SIZE {
            return Err(Error::Grant(GrantStatus::BadCopyArg));
        }
        let base = buf.as_mut_ptr() as u64;
        for (at, n) in page_pieces(base, buf.len()) {
            let local = base + at as u64;
            let op = GnttabCopy {
                source: GnttabCopyPtr::gref(gref.0, from.0, offset + at as u16),
                dest: GnttabCopyPtr::frame(local >> 12, DomId::SELF.0, (local & 0xfff) as u16),
                len: n as u16,
                flags: GNTCOPY_SOURCE_GREF,
                ..Default::default()
            };
            hypercall::gnttab_copy(op)?.map_err(Error::Grant)?;
        }
        Ok(())
    }

    /// All the segments in as few `GNTTABOP_copy` calls as possible (up
    /// to [`COPY_BATCH`] ops each): under TCG every hypercall is a costly
    /// exit, and a 128 KiB block request is 32 segments.
    fn copy_batch(&self, segs: &mut [CopySeg<'_>]) -> core::result::Result<(), (usize, Error)> {
        let mut ops: Vec<GnttabCopy> = Vec::with_capacity(segs.len().min(COPY_BATCH));
        // The segment each op belongs to.
        let mut owner: Vec<usize> = Vec::with_capacity(ops.capacity());
        fn flush(
            ops: &mut Vec<GnttabCopy>,
            owner: &mut Vec<usize>,
        ) -> core::result::Result<(), (usize, Error)> {
            let r = hypercall::gnttab_copy_batch(ops);
            let first = owner.first().copied().unwrap_or(0);
            let out = match r {
                Err(e) => Err((first, Error::Errno(e))),
                Ok(()) => ops
                    .iter()
                    .zip(owner.iter())
                    .find_map(|(op, &i)| check_status(op.status).err().map(|st| (i, st)))
                    .map_or(Ok(()), |(i, st)| Err((i, Error::Grant(st)))),
            };
            ops.clear();
            owner.clear();
            out
        }
        for (i, seg) in segs.iter_mut().enumerate() {
            let (dom, gref, offset, base, len, to_grant) = match seg {
                CopySeg::FromGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => (
                    *dom,
                    *gref,
                    *offset,
                    buf.as_mut_ptr() as u64,
                    buf.len(),
                    false,
                ),
                CopySeg::ToGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => (*dom, *gref, *offset, buf.as_ptr() as u64, buf.len(), true),
            };
            if usize::from(offset) + len > PAGE_SIZE {
                return Err((i, Error::Grant(GrantStatus::BadCopyArg)));
            }
            for (at, n) in page_pieces(base, len) {
                let local = base + at as u64;
                let mine = GnttabCopyPtr::frame(local >> 12, DomId::SELF.0, (local & 0xfff) as u16);
                let theirs = GnttabCopyPtr::gref(gref.0, dom.0, offset + at as u16);
                let (source, dest, flags) = if to_grant {
                    (mine, theirs, GNTCOPY_DEST_GREF)
                } else {
                    (theirs, mine, GNTCOPY_SOURCE_GREF)
                };
                ops.push(GnttabCopy {
                    source,
                    dest,
                    len: n as u16,
                    flags,
                    ..Default::default()
                });
                owner.push(i);
                if ops.len() == COPY_BATCH {
                    flush(&mut ops, &mut owner)?;
                }
            }
        }
        if !ops.is_empty() {
            flush(&mut ops, &mut owner)?;
        }
        Ok(())
    }

    fn copy_to_grant(&self, to: DomId, gref: GrantRef, offset: u16, buf: &[u8]) -> Result<()> {
        if usize::from(offset) + buf.len() > PAGE_SIZE {
            return Err(Error::Grant(GrantStatus::BadCopyArg));
        }
        let base = buf.as_ptr() as u64;
        for (at, n) in page_pieces(base, buf.len()) {
            let local = base + at as u64;
            let op = GnttabCopy {
                source: GnttabCopyPtr::frame(local >> 12, DomId::SELF.0, (local & 0xfff) as u16),
                dest: GnttabCopyPtr::gref(gref.0, to.0, offset + at as u16),
                len: n as u16,
                flags: GNTCOPY_DEST_GREF,
                ..Default::default()
            };
            hypercall::gnttab_copy(op)?.map_err(Error::Grant)?;
        }
        Ok(())
    }
}
