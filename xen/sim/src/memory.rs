//! Guest memory of the simulated host: the only module of `xen-sim` that
//! touches raw pointers.
//!
//! All frames of all domains live in one `memfd`. The whole file is mapped
//! once, read-write, into a large reserved address range (the *hypervisor
//! view*): frame `n` is at `base + n * 4096`. A domain's pages and its
//! mappings of other domains' grants are windows into that view when the
//! frames are consecutive, and a private `mmap` of the same file offsets when
//! they are not, so a write by one domain is seen by every other mapping of
//! the frame, exactly as with real shared pages.
//!
//! Frames are reference-counted ([`Frame`]): a grant mapping keeps its frames
//! alive after the granting domain ends access or is destroyed (the memory
//! stays valid but is no longer shared), as in Xen.
//!
//! A domain's own pages ([`Backing`]) always get a private address range,
//! so that save/restore can swap the frames behind them: a saved domain's
//! range is copied out and backed by anonymous memory (its frames go back
//! to the pool), a restored domain's range is backed by new frames holding
//! the saved contents. The guest's addresses stay the same across a
//! restore while the frames (the host-mode gfns) change, as a PVH guest's
//! pseudo-physical pages stay put while Xen moves them to new machine
//! frames.

use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use xen::{SharedMem, PAGE_SIZE};

/// Address space reserved for the hypervisor view (not memory: it is backed
/// by the memfd only as far as the file has grown).
const RESERVED_BYTES: usize = 64 << 30;
/// The file grows by this many pages at a time.
const GROW_PAGES: u64 = 1024;

/// The frame pool of one simulated host.
pub(crate) struct Pool {
    fd: OwnedFd,
    base: NonNull<u8>,
    state: Mutex<PoolState>,
}

struct PoolState {
    /// Pages the file (and the view) currently holds.
    mapped_pages: u64,
    /// Next never-used frame.
    next: u64,
    /// Freed single frames, reused first for single-page allocations.
    free: Vec<u64>,
}

// SAFETY: `base` points at a shared mapping that lives as long as the pool;
// all access to the frames goes through atomics or raw copies (see
// `xen::shmem`), and the bookkeeping is behind a mutex.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

/// A frame of guest memory; returned to the pool when the last holder drops it.
pub(crate) struct Frame {
    pool: Arc<Pool>,
    index: u64,
}

impl Frame {
    /// The frame number (used as the gfn in host mode).
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// The page, through the hypervisor view.
    pub(crate) fn mem(&self) -> SharedMem<'_> {
        self.pool.view(self.index, 1)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

impl Pool {
    /// Creates an empty pool.
    pub(crate) fn new() -> std::io::Result<Arc<Pool>> {
        let fd = memfd_create("windsor-sim-frames", MemfdFlags::CLOEXEC)?;
        // SAFETY: a fresh anonymous PROT_NONE reservation; nothing else uses
        // the range. NORESERVE: it costs no memory until the file is mapped
        // over it.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                RESERVED_BYTES,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let base = NonNull::new(base.cast::<u8>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        Ok(Arc::new(Pool {
            fd,
            base,
            state: Mutex::new(PoolState {
                mapped_pages: 0,
                next: 0,
                free: Vec::new(),
            }),
        }))
    }

    /// Allocates `count` zeroed frames. Single frames come from the free
    /// list first; multi-frame allocations are consecutive so that they map
    /// contiguously through the view.
    pub(crate) fn alloc(self: &Arc<Self>, count: usize) -> std::io::Result<Vec<Frame>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = if count == 1 && !st.free.is_empty() {
            st.free.pop().unwrap_or_default()
        } else {
            let first = st.next;
            let end = first + count as u64;
            if end > st.mapped_pages {
                self.grow(&mut st, end)?;
            }
            st.next = end;
            first
        };
        drop(st);
        let frames: Vec<Frame> = (0..count as u64)
            .map(|i| Frame {
                pool: self.clone(),
                index: first + i,
            })
            .collect();
        for f in &frames {
            f.mem().fill(0, PAGE_SIZE, 0);
        }
        Ok(frames)
    }

    fn grow(&self, st: &mut PoolState, at_least: u64) -> std::io::Result<()> {
        let new_pages = at_least.div_ceil(GROW_PAGES) * GROW_PAGES;
        let new_bytes = new_pages as usize * PAGE_SIZE;
        if new_bytes > RESERVED_BYTES {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        ftruncate(&self.fd, new_bytes as u64)?;
        let old_bytes = st.mapped_pages as usize * PAGE_SIZE;
        // SAFETY: the target range lies inside our own reservation (checked
        // against RESERVED_BYTES above) and is not yet mapped to the file, so
        // MAP_FIXED replaces only our PROT_NONE placeholder; the file is at
        // least `new_bytes` long (ftruncate above).
        unsafe {
            mmap(
                self.base.as_ptr().add(old_bytes).cast(),
                new_bytes - old_bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.fd,
                old_bytes as u64,
            )?;
        }
        st.mapped_pages = new_pages;
        Ok(())
    }

    fn release(&self, index: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.free.push(index);
    }

    /// `count` frames from `first` through the view. Only called for
    /// frames of live [`Frame`]s, which `alloc` creates after growing the
    /// view over them; the hot path (ring copies) therefore takes no lock.
    fn view(&self, first: u64, count: usize) -> SharedMem<'_> {
        // SAFETY: the frames are below `mapped_pages` (they were allocated
        // after `grow` covered them) and mapped read-write for the life of
        // the pool (the view is never unmapped while the pool lives); the
        // caller holds `Frame`s for them, so they are not reused. Nothing
        // forms Rust references to frame bytes.
        unsafe {
            let ptr = NonNull::new_unchecked(self.base.as_ptr().add(first as usize * PAGE_SIZE));
            SharedMem::from_raw(ptr, count * PAGE_SIZE)
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the reservation was made in `new` with this size; every
        // `Frame` holds an `Arc<Pool>`, so none is alive now.
        unsafe {
            let _ = munmap(self.base.as_ptr().cast(), RESERVED_BYTES);
        }
    }
}

/// A contiguous view of some frames: the hypervisor view when they are
/// consecutive, otherwise a private mapping of the same file offsets.
pub(crate) struct Window {
    frames: Vec<Arc<Frame>>,
    private: Option<NonNull<u8>>,
}

// SAFETY: see `Pool`; the private mapping is owned by the window.
unsafe impl Send for Window {}
// SAFETY: see `Pool`.
unsafe impl Sync for Window {}

impl Window {
    /// A window over `frames`, in order. `frames` must not be empty.
    pub(crate) fn new(frames: Vec<Arc<Frame>>) -> std::io::Result<Window> {
        assert!(!frames.is_empty(), "empty window");
        let consecutive = frames
            .windows(2)
            .all(|w| w[1].index == w[0].index + 1 && Arc::ptr_eq(&w[0].pool, &w[1].pool));
        if consecutive {
            return Ok(Window {
                frames,
                private: None,
            });
        }
        let len = frames.len() * PAGE_SIZE;
        let pool = frames[0].pool.clone();
        // SAFETY: a fresh reservation owned by this window.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        for (i, f) in frames.iter().enumerate() {
            // SAFETY: replaces page `i` of our own reservation with the
            // frame's page of the memfd, which exists (the frame is alive).
            let r = unsafe {
                mmap(
                    base.cast::<u8>().add(i * PAGE_SIZE).cast(),
                    PAGE_SIZE,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::FIXED,
                    &pool.fd,
                    f.index * PAGE_SIZE as u64,
                )
            };
            if let Err(e) = r {
                // SAFETY: undo our own reservation.
                unsafe {
                    let _ = munmap(base, len);
                }
                return Err(e.into());
            }
        }
        Ok(Window {
            frames,
            private: NonNull::new(base.cast()),
        })
    }

    /// The frames of the window.
    pub(crate) fn frames(&self) -> &[Arc<Frame>] {
        &self.frames
    }

    /// The memory of the window, contiguous.
    pub(crate) fn mem(&self) -> SharedMem<'_> {
        match self.private {
            None => self.frames[0]
                .pool
                .view(self.frames[0].index, self.frames.len()),
            // SAFETY: the private mapping covers all frames and lives until
            // the window drops; the frames are kept alive by `self.frames`.
            Some(p) => unsafe { SharedMem::from_raw(p, self.frames.len() * PAGE_SIZE) },
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Some(p) = self.private {
            // SAFETY: the mapping was made in `new` with this length.
            unsafe {
                let _ = munmap(p.as_ptr().cast(), self.frames.len() * PAGE_SIZE);
            }
        }
    }
}

/// A domain's own pages: a private address range backed by frames that
/// save/restore can replace (see the module doc).
pub(crate) struct Backing {
    base: NonNull<u8>,
    pages: usize,
    pool: Arc<Pool>,
    /// The frames behind the range, in order; empty while detached.
    frames: Mutex<Vec<Arc<Frame>>>,
}

// SAFETY: see `Pool`; the range is owned by the backing, the frame list is
// behind a mutex.
unsafe impl Send for Backing {}
// SAFETY: as above.
unsafe impl Sync for Backing {}

impl Backing {
    /// A private range over `frames`, in order. `frames` must not be empty
    /// and must come from `pool`.
    pub(crate) fn new(pool: &Arc<Pool>, frames: Vec<Arc<Frame>>) -> std::io::Result<Backing> {
        assert!(!frames.is_empty(), "empty backing");
        let pages = frames.len();
        // SAFETY: a fresh reservation owned by this backing.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                pages * PAGE_SIZE,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let base = NonNull::new(base.cast::<u8>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        let b = Backing {
            base,
            pages,
            pool: pool.clone(),
            frames: Mutex::new(Vec::new()),
        };
        // On failure `b` drops and unmaps the reservation.
        b.map_frames(&frames)?;
        *b.frames.lock().unwrap_or_else(PoisonError::into_inner) = frames;
        Ok(b)
    }

    /// Maps `frames` over the range, a run of consecutive frames per call.
    fn map_frames(&self, frames: &[Arc<Frame>]) -> std::io::Result<()> {
        debug_assert_eq!(frames.len(), self.pages);
        let mut i = 0;
        while i < frames.len() {
            let mut run = 1;
            while i + run < frames.len() && frames[i + run].index == frames[i].index + run as u64 {
                run += 1;
            }
            debug_assert!(Arc::ptr_eq(&frames[i].pool, &self.pool));
            // SAFETY: replaces pages `i..i + run` of our own reservation
            // with the frames' pages of the memfd, which exist (the frames
            // are alive, so the file covers them).
            unsafe {
                mmap(
                    self.base.as_ptr().add(i * PAGE_SIZE).cast(),
                    run * PAGE_SIZE,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::FIXED,
                    &self.pool.fd,
                    frames[i].index * PAGE_SIZE as u64,
                )?;
            }
            i += run;
        }
        Ok(())
    }

    /// The memory of the range, contiguous.
    pub(crate) fn mem(&self) -> SharedMem<'_> {
        // SAFETY: the range is mapped read-write (frames, or anonymous
        // memory while detached) for the life of the backing; nothing forms
        // Rust references to its bytes.
        unsafe { SharedMem::from_raw(self.base, self.pages * PAGE_SIZE) }
    }

    /// Number of pages.
    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    /// The frame behind page `index`; `None` out of range or while detached.
    pub(crate) fn frame(&self, index: usize) -> Option<Arc<Frame>> {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
    }

    /// Detaches the range from its frames (save): returns a copy of the
    /// contents if `keep`, backs the range with private zero memory, and
    /// drops the frames (they go back to the pool once no grant or mapping
    /// holds them). The owner must not be running (its thread is parked).
    pub(crate) fn detach(&self, keep: bool) -> std::io::Result<Option<Vec<u8>>> {
        let mut frames = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        let copy = keep.then(|| {
            let mut v = vec![0u8; self.pages * PAGE_SIZE];
            self.mem().read_bytes(0, &mut v);
            v
        });
        // SAFETY: replaces our own range with fresh anonymous memory, so
        // the range no longer aliases frames that the pool may hand to
        // another domain.
        unsafe {
            mmap_anonymous(
                self.base.as_ptr().cast(),
                self.pages * PAGE_SIZE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
            )?;
        }
        frames.clear();
        Ok(copy)
    }

    /// Attaches the range to `frames` (restore), first filling them with
    /// `contents` (exactly the range's size) if given; fresh frames are
    /// zero otherwise.
    pub(crate) fn attach(
        &self,
        frames: Vec<Arc<Frame>>,
        contents: Option<&[u8]>,
    ) -> std::io::Result<()> {
        if frames.len() != self.pages {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        if let Some(c) = contents {
            if c.len() != self.pages * PAGE_SIZE {
                return Err(std::io::ErrorKind::InvalidInput.into());
            }
            for (f, chunk) in frames.iter().zip(c.chunks_exact(PAGE_SIZE)) {
                f.mem().write_bytes(0, chunk);
            }
        }
        let mut held = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        self.map_frames(&frames)?;
        *held = frames;
        Ok(())
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: the reservation was made in `new` with this length.
        unsafe {
            let _ = munmap(self.base.as_ptr().cast(), self.pages * PAGE_SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn windows_share_frames() {
        let pool = Pool::new().unwrap();
        let frames: Vec<Arc<Frame>> = pool.alloc(3).unwrap().into_iter().map(Arc::new).collect();
        let direct = Window::new(frames.clone()).unwrap();
        // A non-consecutive order forces a private mapping of the same pages.
        let shuffled = Window::new(vec![frames[2].clone(), frames[0].clone()]).unwrap();
        assert!(shuffled.private.is_some());
        direct
            .mem()
            .atomic_u32(2 * PAGE_SIZE)
            .store(42, Ordering::Release);
        assert_eq!(shuffled.mem().ro().load_u32(0, Ordering::Acquire), 42);
        shuffled.mem().write_bytes(PAGE_SIZE + 8, b"shared");
        let mut out = [0u8; 6];
        direct.mem().read_bytes(8, &mut out);
        assert_eq!(&out, b"shared");
    }

    #[test]
    fn freed_frames_are_reused_zeroed() {
        let pool = Pool::new().unwrap();
        let f = pool.alloc(1).unwrap().pop().unwrap();
        let idx = f.index();
        f.mem().fill(0, PAGE_SIZE, 0xff);
        drop(f);
        let g = pool.alloc(1).unwrap().pop().unwrap();
        assert_eq!(g.index(), idx, "single frames come from the free list");
        let mut b = [1u8; 16];
        g.mem().read_bytes(100, &mut b);
        assert_eq!(b, [0; 16]);
    }

    #[test]
    fn backing_survives_detach_and_attach_to_new_frames() {
        let pool = Pool::new().unwrap();
        let frames: Vec<Arc<Frame>> = pool.alloc(2).unwrap().into_iter().map(Arc::new).collect();
        let old: Vec<u64> = frames.iter().map(|f| f.index()).collect();
        let b = Backing::new(&pool, frames).unwrap();
        b.mem().write_bytes(PAGE_SIZE + 3, b"kept");
        let copy = b.detach(true).unwrap().unwrap();
        assert!(b.frame(0).is_none());
        // The old frames are free again and come back zeroed.
        let other = pool.alloc(1).unwrap().pop().unwrap();
        assert!(old.contains(&other.index()));
        other.mem().fill(0, PAGE_SIZE, 0xee);
        let mut out = [0u8; 4];
        b.mem().read_bytes(PAGE_SIZE + 3, &mut out);
        assert_eq!(out, [0; 4], "a detached range aliases no frame");
        let new: Vec<Arc<Frame>> = pool.alloc(2).unwrap().into_iter().map(Arc::new).collect();
        b.attach(new.clone(), Some(&copy)).unwrap();
        b.mem().read_bytes(PAGE_SIZE + 3, &mut out);
        assert_eq!(&out, b"kept");
        // The range is the new frames: a write shows through the pool view.
        b.mem().write_bytes(0, b"x");
        let mut one = [0u8; 1];
        new[0].mem().read_bytes(0, &mut one);
        assert_eq!(&one, b"x");
    }

    #[test]
    fn pool_grows_past_one_chunk() {
        let pool = Pool::new().unwrap();
        let big = pool.alloc(GROW_PAGES as usize + 5).unwrap();
        let last = big.last().unwrap();
        last.mem().atomic_u64(4088).store(7, Ordering::Relaxed);
        assert_eq!(last.mem().ro().load_u64(4088, Ordering::Relaxed), 7);
    }
}
