//! The world below `libxenvchan`: the calls it makes into libxengnttab,
//! libxenevtchn and libxenstore, implemented on the simulated hypervisor
//! (`xen-sim`) and the in-memory xenstore (`MemStore`) for one simulated
//! domain, the [`CDomain`] the C code acts for.
//!
//! This is the only module of the test that touches raw pointers or
//! contains `unsafe`. It is written for `libxenvchan` as Xen 4.17 ships it
//! (`nm -u libxenvchan.a` lists exactly the functions defined here) and is
//! defensive anyway:
//!
//! * handles (`xenevtchn_handle *` etc.) are opaque integers to C and keys
//!   of a registry here; the shim never dereferences one, and an unknown or
//!   wrongly-typed handle is an error (`EBADF`), never a crash;
//! * memory handed to C (the shared page, ring pages) is the simulated
//!   domain's own pages or its mappings of the peer's grants, kept alive in
//!   the registry until C unshares/unmaps it, found again by exact address
//!   and length;
//! * the shared page is also written by the peer: the shim reads and writes
//!   it (grant lists, unmap-notify bytes) only through atomics or
//!   [`xen::SharedMem`];
//! * C strings and buffers are read only for the lengths C gives, into
//!   owned Rust values; values returned to C that C frees are `malloc`ed;
//! * a blocking `xenevtchn_pending` gives up after [`CDomain::wait_limit`]
//!   with `ETIMEDOUT`, so a broken peer fails the test instead of hanging it;
//! * nothing here panics across the FFI boundary on any input (a panic in
//!   an `extern "C"` function aborts): lookups return errors, offsets are
//!   checked before use.
//!
//! Where Linux's drivers have a behaviour libxenvchan relies on, the shim
//! mimics it: a delivered event port stays masked until
//! `xenevtchn_unmask` (the evtchn driver disables the IRQ); an unmap-notify
//! clears its byte and signals its port when the page is unshared or
//! unmapped (gntalloc/gntdev `UNMAP_NOTIFY_*`); `munmap` of a ring area is
//! an unshare or unmap (see `build.rs`, which renames libxenvchan's one
//! `munmap` call to [`windsor_shim_munmap`]).
//!
//! A `PROT_READ` grant mapping (libxenvchan's client maps its read ring so)
//! is a read-only mapping, as with gntdev: a read-only grant suffices.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use windsor_xenstore::client::{Access, ClientError, MemStore, Perm, TxId, XenStore};
use xen::platform::{EventChannel, ForeignMapping, GrantTable, LocalPages};
use xen::{DomId, EvtchnPort, GrantRef, SharedMem, PAGE_SIZE};
use xen_sim::{SimDomain, SimMapping, SimPages};

// --- The simulated domain the C code runs as -------------------------------

/// A simulated domain in which C code runs: its hypervisor handle and its
/// own xenstore connection (subject to permissions, relative paths under
/// `/local/domain/<id>`).
pub struct CDomain {
    /// The domain's platform handle.
    pub dom: SimDomain,
    /// Its xenstore connection.
    pub xs: MemStore,
    /// Longest a blocking `xenevtchn_pending` waits before failing.
    pub wait_limit: Duration,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CDomain>>> = const { RefCell::new(None) };
}

/// Runs `f` (which calls into libxenvchan) as domain `d`: the handles
/// libxenvchan opens during `f` belong to `d` and stay with it afterwards.
pub fn enter<R>(d: &Arc<CDomain>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<CDomain>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.replace(Some(d.clone())));
    let _restore = Restore(prev);
    f()
}

fn current() -> Option<Arc<CDomain>> {
    CURRENT.with(|c| c.borrow().clone())
}

// --- Registry of handles and memory given to C ------------------------------

enum Handle {
    Evtchn {
        dom: Arc<CDomain>,
        ports: Vec<EvtchnPort>,
    },
    Gnttab(Arc<CDomain>),
    Gntshr(Arc<CDomain>),
    Xs(Arc<CDomain>),
}

/// `UNMAP_NOTIFY_CLEAR_BYTE` / `UNMAP_NOTIFY_SEND_EVENT` of one region.
#[derive(Clone, Copy)]
struct UnmapNotify {
    byte: Option<usize>,
    port: Option<EvtchnPort>,
}

enum Backing {
    Shared {
        pages: SimPages,
        grants: Vec<GrantRef>,
    },
    Mapped(SimMapping),
}

struct Region {
    dom: Arc<CDomain>,
    len: usize,
    backing: Backing,
    notify: UnmapNotify,
}

impl Region {
    fn writable(&self) -> Option<SharedMem<'_>> {
        match &self.backing {
            Backing::Shared { pages, .. } => Some(pages.mem()),
            Backing::Mapped(m) => m.rw(),
        }
    }

    /// What the drivers do when the area goes away: fire the unmap notify,
    /// end the grants (a grant still mapped by the peer stays until the
    /// peer unmaps, as with gntalloc; its frame is kept by the hypervisor).
    fn release(self) {
        if let (Some(off), Some(mem)) = (self.notify.byte, self.writable()) {
            if off < mem.len() {
                mem.atomic_u8(off).store(0, Ordering::SeqCst);
            }
        }
        if let Some(port) = self.notify.port {
            let _ = self.dom.dom.notify(port);
        }
        if let Backing::Shared { grants, .. } = &self.backing {
            for g in grants {
                let _ = self.dom.dom.end_access(*g);
            }
        }
    }
}

struct Registry {
    next: usize,
    handles: BTreeMap<usize, Handle>,
    /// Start address → region.
    regions: BTreeMap<usize, Region>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    handles: BTreeMap::new(),
    regions: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panicking test thread must not poison the other tests.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh opaque handle value for C: never dereferenced by anyone, only
/// compared with NULL by C and used as a key here.
fn new_handle(h: Handle) -> *mut c_void {
    let mut r = registry();
    r.next += 1;
    let key = 0x1000 + r.next * 16;
    r.handles.insert(key, h);
    ptr::without_provenance_mut(key)
}

fn handle_domain(h: *mut c_void) -> Option<Arc<CDomain>> {
    let r = registry();
    match r.handles.get(&h.addr())? {
        Handle::Evtchn { dom, .. }
        | Handle::Gnttab(dom)
        | Handle::Gntshr(dom)
        | Handle::Xs(dom) => Some(dom.clone()),
    }
}

fn is_kind(h: *mut c_void, f: fn(&Handle) -> bool) -> bool {
    registry().handles.get(&h.addr()).is_some_and(f)
}

fn close_handle(h: *mut c_void, f: fn(&Handle) -> bool) -> Option<Handle> {
    let mut r = registry();
    if !r.handles.get(&h.addr()).is_some_and(f) {
        return None;
    }
    r.handles.remove(&h.addr())
}

/// Registers memory handed to C and returns its address.
fn add_region(dom: &Arc<CDomain>, backing: Backing, len: usize, notify: UnmapNotify) -> usize {
    let addr = match &backing {
        Backing::Shared { pages, .. } => pages.mem().addr(),
        Backing::Mapped(m) => m.rw().map_or_else(|| m.ro().addr(), |w| w.addr()),
    };
    registry().regions.insert(
        addr,
        Region {
            dom: dom.clone(),
            len,
            backing,
            notify,
        },
    );
    addr
}

/// Unshares or unmaps the region at exactly `addr` of exactly `len` bytes,
/// of kind `shared` (gntalloc) or not (gntdev), owned by the domain of
/// handle `h` (any kind and domain for `munmap`, `h` NULL).
fn remove_region(h: *mut c_void, shared: bool, addr: usize, len: usize) -> c_int {
    let owner = if h.is_null() {
        None
    } else {
        match handle_domain(h) {
            Some(d) => Some(d),
            None => return fail(EBADF),
        }
    };
    let region = {
        let mut r = registry();
        let ok = r.regions.get(&addr).is_some_and(|reg| {
            reg.len == len
                && owner.as_ref().is_none_or(|d| {
                    Arc::ptr_eq(d, &reg.dom)
                        && shared == matches!(reg.backing, Backing::Shared { .. })
                })
        });
        if ok {
            r.regions.remove(&addr)
        } else {
            None
        }
    };
    match region {
        Some(reg) => {
            reg.release();
            0
        }
        None => fail(EINVAL),
    }
}

// --- errno, malloc -----------------------------------------------------------

const ENOENT: c_int = 2;
const EBADF: c_int = 9;
const ENOMEM: c_int = 12;
const EFAULT: c_int = 14;
const EINVAL: c_int = 22;
const ENOSYS: c_int = 38;
const ETIMEDOUT: c_int = 110;

extern "C" {
    fn __errno_location() -> *mut c_int;
    fn malloc(size: usize) -> *mut c_void;
}

fn set_errno(e: c_int) {
    // SAFETY: glibc's `__errno_location` returns the calling thread's
    // errno, valid and writable for the thread's life.
    unsafe { *__errno_location() = e }
}

/// Sets errno and returns -1.
fn fail(e: c_int) -> c_int {
    set_errno(e);
    -1
}

/// Sets errno and returns NULL.
fn fail_null(e: c_int) -> *mut c_void {
    set_errno(e);
    ptr::null_mut()
}

fn platform_errno(e: xen::platform::Error) -> c_int {
    match e {
        xen::platform::Error::Errno(e) => c_int::from(e.0),
        xen::platform::Error::Grant(_) => EFAULT,
    }
}

fn store_errno(e: &ClientError) -> c_int {
    match e {
        ClientError::Store(e) => c_int::from(e.0),
        _ => EINVAL,
    }
}

fn domid(d: u32) -> Option<DomId> {
    u16::try_from(d).ok().map(DomId)
}

/// `notify_offset` / `notify_port` of the `*_notify` calls: -1 is "none".
fn unmap_notify(offset: u32, port: u32) -> Option<UnmapNotify> {
    let byte = match offset {
        u32::MAX => None,
        o if (o as usize) < PAGE_SIZE => Some(o as usize),
        _ => return None,
    };
    let port = (port != u32::MAX).then_some(EvtchnPort(port));
    Some(UnmapNotify { byte, port })
}

/// Reads a C string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

// --- libxenevtchn --------------------------------------------------------------

fn is_evtchn(h: &Handle) -> bool {
    matches!(h, Handle::Evtchn { .. })
}

/// The handle's domain, if `port` is one of its ports.
fn evtchn_port_owner(h: *mut c_void, port: u32) -> Option<Arc<CDomain>> {
    let r = registry();
    match r.handles.get(&h.addr())? {
        Handle::Evtchn { dom, ports } if ports.contains(&EvtchnPort(port)) => Some(dom.clone()),
        _ => None,
    }
}

fn add_port(h: *mut c_void, port: EvtchnPort) {
    if let Some(Handle::Evtchn { ports, .. }) = registry().handles.get_mut(&h.addr()) {
        ports.push(port);
    }
}

/// `xenevtchn_open`: a handle for the current [`CDomain`].
#[no_mangle]
pub extern "C" fn xenevtchn_open(_logger: *mut c_void, _flags: c_uint) -> *mut c_void {
    match current() {
        Some(dom) => new_handle(Handle::Evtchn {
            dom,
            ports: Vec::new(),
        }),
        None => fail_null(EINVAL),
    }
}

/// `xenevtchn_close`: closes the handle's ports.
#[no_mangle]
pub extern "C" fn xenevtchn_close(h: *mut c_void) -> c_int {
    if h.is_null() {
        return 0;
    }
    match close_handle(h, is_evtchn) {
        Some(Handle::Evtchn { dom, ports }) => {
            for p in ports {
                let _ = dom.dom.close(p);
            }
            0
        }
        _ => fail(EBADF),
    }
}

/// `xenevtchn_fd`: there is no file descriptor in the simulation.
#[no_mangle]
pub extern "C" fn xenevtchn_fd(_h: *mut c_void) -> c_int {
    fail(ENOSYS)
}

/// `xenevtchn_notify`.
#[no_mangle]
pub extern "C" fn xenevtchn_notify(h: *mut c_void, port: u32) -> c_int {
    match evtchn_port_owner(h, port) {
        Some(d) => match d.dom.notify(EvtchnPort(port)) {
            Ok(()) => 0,
            Err(e) => fail(platform_errno(e)),
        },
        None => fail(EINVAL),
    }
}

/// `xenevtchn_bind_unbound_port`.
#[no_mangle]
pub extern "C" fn xenevtchn_bind_unbound_port(h: *mut c_void, remote: u32) -> c_int {
    let (Some(d), Some(remote)) = (
        handle_domain(h).filter(|_| is_kind(h, is_evtchn)),
        domid(remote),
    ) else {
        return fail(EINVAL);
    };
    match d.dom.alloc_unbound(remote) {
        Ok(p) => {
            add_port(h, p);
            c_int::try_from(p.0).unwrap_or_else(|_| fail(EINVAL))
        }
        Err(e) => fail(platform_errno(e)),
    }
}

/// `xenevtchn_bind_interdomain`.
#[no_mangle]
pub extern "C" fn xenevtchn_bind_interdomain(
    h: *mut c_void,
    remote: u32,
    remote_port: u32,
) -> c_int {
    let (Some(d), Some(remote)) = (
        handle_domain(h).filter(|_| is_kind(h, is_evtchn)),
        domid(remote),
    ) else {
        return fail(EINVAL);
    };
    match d.dom.bind_interdomain(remote, EvtchnPort(remote_port)) {
        Ok(p) => {
            add_port(h, p);
            c_int::try_from(p.0).unwrap_or_else(|_| fail(EINVAL))
        }
        Err(e) => fail(platform_errno(e)),
    }
}

/// `xenevtchn_unbind`.
#[no_mangle]
pub extern "C" fn xenevtchn_unbind(h: *mut c_void, port: u32) -> c_int {
    let Some(d) = evtchn_port_owner(h, port) else {
        return fail(EINVAL);
    };
    if let Some(Handle::Evtchn { ports, .. }) = registry().handles.get_mut(&h.addr()) {
        ports.retain(|p| p.0 != port);
    }
    match d.dom.close(EvtchnPort(port)) {
        Ok(()) => 0,
        Err(e) => fail(platform_errno(e)),
    }
}

/// `xenevtchn_pending`: blocks until one of the handle's ports fires,
/// returns it and leaves it masked (as Linux's evtchn driver does) until
/// `xenevtchn_unmask`. Fails with `ETIMEDOUT` after the domain's
/// `wait_limit`.
#[no_mangle]
pub extern "C" fn xenevtchn_pending(h: *mut c_void) -> c_int {
    let (dom, ports) = match registry().handles.get(&h.addr()) {
        Some(Handle::Evtchn { dom, ports }) => (dom.clone(), ports.clone()),
        _ => return fail(EBADF),
    };
    if ports.is_empty() {
        return fail(EINVAL);
    }
    let deadline = Instant::now() + dom.wait_limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return fail(ETIMEDOUT);
        }
        match dom.dom.wait(&ports, Some(left)) {
            Ok(true) => {}
            Ok(false) => return fail(ETIMEDOUT),
            Err(e) => return fail(platform_errno(e)),
        }
        for &p in &ports {
            if dom.dom.clear_pending(p).unwrap_or(false) {
                let _ = dom.dom.mask(p);
                return c_int::try_from(p.0).unwrap_or_else(|_| fail(EINVAL));
            }
        }
    }
}

/// `xenevtchn_unmask`.
#[no_mangle]
pub extern "C" fn xenevtchn_unmask(h: *mut c_void, port: u32) -> c_int {
    match evtchn_port_owner(h, port) {
        Some(d) => match d.dom.unmask(EvtchnPort(port)) {
            Ok(()) => 0,
            Err(e) => fail(platform_errno(e)),
        },
        None => fail(EINVAL),
    }
}

// --- libxengnttab: mapping (gntdev) ----------------------------------------------

fn is_gnttab(h: &Handle) -> bool {
    matches!(h, Handle::Gnttab(_))
}

fn is_gntshr(h: &Handle) -> bool {
    matches!(h, Handle::Gntshr(_))
}

/// `xengnttab_open`.
#[no_mangle]
pub extern "C" fn xengnttab_open(_logger: *mut c_void, _flags: c_uint) -> *mut c_void {
    match current() {
        Some(d) => new_handle(Handle::Gnttab(d)),
        None => fail_null(EINVAL),
    }
}

/// `xengnttab_close`: as with gntdev, existing mappings stay.
#[no_mangle]
pub extern "C" fn xengnttab_close(h: *mut c_void) -> c_int {
    if h.is_null() {
        return 0;
    }
    match close_handle(h, is_gnttab) {
        Some(_) => 0,
        None => fail(EBADF),
    }
}

fn map_refs(
    h: *mut c_void,
    from: u32,
    refs: &[GrantRef],
    prot: c_int,
    notify: UnmapNotify,
) -> *mut c_void {
    const PROT_WRITE: c_int = 2;
    let (Some(d), Some(from)) = (
        handle_domain(h).filter(|_| is_kind(h, is_gnttab)),
        domid(from),
    ) else {
        return fail_null(EINVAL);
    };
    if prot & PROT_WRITE == 0 && notify.byte.is_some() {
        return fail_null(EINVAL);
    }
    // A `PROT_READ` request maps read-only, so a read-only grant is enough
    // (as with Linux's gntdev); C, trusted test code, gets the address and
    // does not write through it.
    let readonly = prot & PROT_WRITE == 0;
    match d.dom.map(from, refs, readonly) {
        Ok(m) => {
            let len = refs.len() * PAGE_SIZE;
            if m.ro().len() != len || m.rw().is_none() != readonly {
                return fail_null(EFAULT);
            }
            ptr::with_exposed_provenance_mut(add_region(&d, Backing::Mapped(m), len, notify))
        }
        Err(e) => fail_null(platform_errno(e)),
    }
}

/// `xengnttab_map_grant_ref_notify`: one page, with an unmap notify.
#[no_mangle]
pub extern "C" fn xengnttab_map_grant_ref_notify(
    h: *mut c_void,
    from: u32,
    gref: u32,
    prot: c_int,
    notify_offset: u32,
    notify_port: u32,
) -> *mut c_void {
    match unmap_notify(notify_offset, notify_port) {
        Some(n) => map_refs(h, from, &[GrantRef(gref)], prot, n),
        None => fail_null(EINVAL),
    }
}

/// At most this many pages per call (1 MiB rings need 256).
const MAX_PAGES: usize = 1024;

/// `xengnttab_map_domain_grant_refs`: `count` grants of one domain,
/// contiguously.
///
/// # Safety
/// `refs` points to `count` readable, 4-byte aligned `uint32_t`s (the peer
/// may write them concurrently: they are read atomically).
#[no_mangle]
pub unsafe extern "C" fn xengnttab_map_domain_grant_refs(
    h: *mut c_void,
    count: u32,
    from: u32,
    refs: *const u32,
    prot: c_int,
) -> *mut c_void {
    let n = count as usize;
    if refs.is_null() || n == 0 || n > MAX_PAGES || !refs.cast::<AtomicU32>().is_aligned() {
        return fail_null(EINVAL);
    }
    let list: Vec<GrantRef> = (0..n)
        .map(|i| {
            // SAFETY: `refs` holds `count` aligned u32s (caller contract,
            // alignment checked above); an atomic load is sound even while
            // the peer writes the shared page.
            GrantRef(unsafe { (*refs.add(i).cast::<AtomicU32>()).load(Ordering::Acquire) })
        })
        .collect();
    map_refs(
        h,
        from,
        &list,
        prot,
        UnmapNotify {
            byte: None,
            port: None,
        },
    )
}

/// `xengnttab_unmap`.
#[no_mangle]
pub extern "C" fn xengnttab_unmap(h: *mut c_void, addr: *mut c_void, count: u32) -> c_int {
    if !is_kind(h, is_gnttab) {
        return fail(EBADF);
    }
    remove_region(
        h,
        false,
        addr.addr(),
        (count as usize).saturating_mul(PAGE_SIZE),
    )
}

// --- libxengnttab: sharing (gntalloc) ----------------------------------------------

/// `xengntshr_open`.
#[no_mangle]
pub extern "C" fn xengntshr_open(_logger: *mut c_void, _flags: c_uint) -> *mut c_void {
    match current() {
        Some(d) => new_handle(Handle::Gntshr(d)),
        None => fail_null(EINVAL),
    }
}

/// `xengntshr_close`: as with gntalloc, shared pages stay.
#[no_mangle]
pub extern "C" fn xengntshr_close(h: *mut c_void) -> c_int {
    if h.is_null() {
        return 0;
    }
    match close_handle(h, is_gntshr) {
        Some(_) => 0,
        None => fail(EBADF),
    }
}

/// Allocates and grants `n` pages; registers them. Returns the address and
/// the grant refs.
fn share(
    h: *mut c_void,
    to: u32,
    n: usize,
    writable: c_int,
    notify: UnmapNotify,
) -> Result<(usize, Vec<GrantRef>), c_int> {
    let (Some(d), Some(to)) = (
        handle_domain(h).filter(|_| is_kind(h, is_gntshr)),
        domid(to),
    ) else {
        return Err(EINVAL);
    };
    if n == 0 || n > MAX_PAGES {
        return Err(EINVAL);
    }
    let pages = d.dom.alloc_pages(n).map_err(platform_errno)?;
    let mut grants = Vec::with_capacity(n);
    for i in 0..n {
        match d.dom.grant_access(&pages, i, to, writable == 0) {
            Ok(g) => grants.push(g),
            Err(e) => {
                for g in grants {
                    let _ = d.dom.end_access(g);
                }
                return Err(platform_errno(e));
            }
        }
    }
    let refs = grants.clone();
    let addr = add_region(&d, Backing::Shared { pages, grants }, n * PAGE_SIZE, notify);
    Ok((addr, refs))
}

/// `xengntshr_share_pages`: `count` fresh pages granted to `to`; their
/// refs go to `refs`.
///
/// # Safety
/// `refs` points to `count` writable, 4-byte aligned `uint32_t`s (in
/// libxenvchan, inside the shared page: they are written atomically).
#[no_mangle]
pub unsafe extern "C" fn xengntshr_share_pages(
    h: *mut c_void,
    to: u32,
    count: c_int,
    refs: *mut u32,
    writable: c_int,
) -> *mut c_void {
    let Ok(n) = usize::try_from(count) else {
        return fail_null(EINVAL);
    };
    if refs.is_null() || !refs.cast::<AtomicU32>().is_aligned() {
        return fail_null(EINVAL);
    }
    match share(
        h,
        to,
        n,
        writable,
        UnmapNotify {
            byte: None,
            port: None,
        },
    ) {
        Ok((addr, grants)) => {
            for (i, g) in grants.iter().enumerate() {
                // SAFETY: `refs` has room for `count` aligned u32s (caller
                // contract); the store is atomic because the page is shared.
                unsafe { (*refs.add(i).cast::<AtomicU32>()).store(g.0, Ordering::Release) };
            }
            ptr::with_exposed_provenance_mut(addr)
        }
        Err(e) => fail_null(e),
    }
}

/// `xengntshr_share_page_notify`: one fresh page granted to `to`, with an
/// unmap notify; its ref goes to `*gref`.
///
/// # Safety
/// `gref` points to a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn xengntshr_share_page_notify(
    h: *mut c_void,
    to: u32,
    gref: *mut u32,
    writable: c_int,
    notify_offset: u32,
    notify_port: u32,
) -> *mut c_void {
    let Some(notify) = unmap_notify(notify_offset, notify_port) else {
        return fail_null(EINVAL);
    };
    if gref.is_null() || !gref.is_aligned() || (notify.byte.is_some() && writable == 0) {
        return fail_null(EINVAL);
    }
    match share(h, to, 1, writable, notify) {
        Ok((addr, grants)) => {
            // SAFETY: `gref` is a valid, aligned, writable u32 (checked
            // non-null and aligned; validity is the caller's contract).
            unsafe { gref.write(grants[0].0) };
            ptr::with_exposed_provenance_mut(addr)
        }
        Err(e) => fail_null(e),
    }
}

/// `xengntshr_unshare`.
#[no_mangle]
pub extern "C" fn xengntshr_unshare(h: *mut c_void, addr: *mut c_void, count: u32) -> c_int {
    if !is_kind(h, is_gntshr) {
        return fail(EBADF);
    }
    remove_region(
        h,
        true,
        addr.addr(),
        (count as usize).saturating_mul(PAGE_SIZE),
    )
}

/// libxenvchan's `munmap` (renamed by `build.rs`): unmaps or unshares a
/// ring area handed out here; anything else is refused with `EINVAL`
/// (never passed on to the real `munmap`).
#[no_mangle]
pub extern "C" fn windsor_shim_munmap(addr: *mut c_void, len: usize) -> c_int {
    remove_region(ptr::null_mut(), false, addr.addr(), len)
}

// --- libxenstore ---------------------------------------------------------------

fn is_xs(h: &Handle) -> bool {
    matches!(h, Handle::Xs(_))
}

fn xs_of(h: *mut c_void) -> Option<Arc<CDomain>> {
    handle_domain(h).filter(|_| is_kind(h, is_xs))
}

/// Maps a store result to libxenstore's `bool` + errno.
fn xs_bool(r: Result<(), ClientError>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            set_errno(store_errno(&e));
            false
        }
    }
}

/// `xs_open`: a connection for the current [`CDomain`].
#[no_mangle]
pub extern "C" fn xs_open(_flags: c_ulong) -> *mut c_void {
    match current() {
        Some(d) => new_handle(Handle::Xs(d)),
        None => fail_null(EINVAL),
    }
}

/// `xs_close`.
#[no_mangle]
pub extern "C" fn xs_close(h: *mut c_void) {
    let _ = close_handle(h, is_xs);
}

/// `xs_read`: the value, `malloc`ed and NUL-terminated (the caller frees
/// it); its length in `*len` if `len` is not NULL.
///
/// # Safety
/// `path` is a NUL-terminated string; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xs_read(
    h: *mut c_void,
    t: u32,
    path: *const c_char,
    len: *mut c_uint,
) -> *mut c_void {
    // SAFETY: `path` is NUL-terminated (caller contract).
    let (Some(d), Some(path)) = (xs_of(h), unsafe { c_str(path) }) else {
        return fail_null(EINVAL);
    };
    let value = match d.xs.read(TxId(t), path) {
        Ok(v) => v,
        Err(e) => return fail_null(store_errno(&e)),
    };
    let Ok(n) = c_uint::try_from(value.len()) else {
        return fail_null(EINVAL);
    };
    // SAFETY: plain allocation; checked for NULL below.
    let buf = unsafe { malloc(value.len() + 1) }.cast::<u8>();
    let Some(buf) = NonNull::new(buf) else {
        return fail_null(ENOMEM);
    };
    // SAFETY: `buf` is a fresh allocation of len + 1 bytes, disjoint from
    // `value`.
    unsafe {
        ptr::copy_nonoverlapping(value.as_ptr(), buf.as_ptr(), value.len());
        buf.as_ptr().add(value.len()).write(0);
    }
    if !len.is_null() {
        // SAFETY: non-null `len` is writable (caller contract).
        unsafe { len.write(n) };
    }
    buf.as_ptr().cast()
}

/// `xs_write`.
///
/// # Safety
/// `path` is a NUL-terminated string; `data` points to `len` readable
/// bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn xs_write(
    h: *mut c_void,
    t: u32,
    path: *const c_char,
    data: *const c_void,
    len: c_uint,
) -> bool {
    // SAFETY: `path` is NUL-terminated (caller contract).
    let (Some(d), Some(path)) = (xs_of(h), unsafe { c_str(path) }) else {
        set_errno(EINVAL);
        return false;
    };
    let value: Vec<u8> = if len == 0 {
        Vec::new()
    } else if data.is_null() {
        set_errno(EINVAL);
        return false;
    } else {
        // SAFETY: `data` points to `len` readable bytes (caller contract);
        // private C memory, copied out at once.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) }.to_vec()
    };
    xs_bool(d.xs.write(TxId(t), path, &value))
}

/// `xs_rm`.
///
/// # Safety
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xs_rm(h: *mut c_void, t: u32, path: *const c_char) -> bool {
    // SAFETY: `path` is NUL-terminated (caller contract).
    let (Some(d), Some(path)) = (xs_of(h), unsafe { c_str(path) }) else {
        set_errno(EINVAL);
        return false;
    };
    xs_bool(d.xs.rm(TxId(t), path))
}

/// `struct xs_permissions` of `xenstore_lib.h`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct XsPermissions {
    id: c_uint,
    perms: c_uint,
}

/// `xs_set_permissions`. Only `XS_PERM_READ` / `XS_PERM_WRITE` are
/// accepted in `perms` (the other bits are libxenstore-internal).
///
/// # Safety
/// `path` is a NUL-terminated string; `perms` points to `num` entries.
#[no_mangle]
pub unsafe extern "C" fn xs_set_permissions(
    h: *mut c_void,
    t: u32,
    path: *const c_char,
    perms: *const XsPermissions,
    num: c_uint,
) -> bool {
    // SAFETY: `path` is NUL-terminated (caller contract).
    let (Some(d), Some(path)) = (xs_of(h), unsafe { c_str(path) }) else {
        set_errno(EINVAL);
        return false;
    };
    if perms.is_null() || num == 0 || num > 1024 || !perms.is_aligned() {
        set_errno(EINVAL);
        return false;
    }
    let mut list = Vec::with_capacity(num as usize);
    for i in 0..num as usize {
        // SAFETY: `perms` holds `num` entries (caller contract); aligned
        // (checked); private C memory.
        let p = unsafe { perms.add(i).read() };
        let access = match p.perms {
            0 => Access::None,
            1 => Access::Read,
            2 => Access::Write,
            3 => Access::Both,
            _ => {
                set_errno(EINVAL);
                return false;
            }
        };
        let Some(dom) = domid(p.id) else {
            set_errno(EINVAL);
            return false;
        };
        list.push(Perm { dom, access });
    }
    xs_bool(d.xs.set_perms(TxId(t), path, &list))
}

/// `xs_transaction_start`: 0 (`XBT_NULL`) on failure.
#[no_mangle]
pub extern "C" fn xs_transaction_start(h: *mut c_void) -> u32 {
    let Some(d) = xs_of(h) else {
        set_errno(EINVAL);
        return 0;
    };
    match d.xs.transaction_start() {
        Ok(t) => t.0,
        Err(e) => {
            set_errno(store_errno(&e));
            0
        }
    }
}

/// `xs_transaction_end`: `false` with errno `EAGAIN` when the commit
/// conflicted.
#[no_mangle]
pub extern "C" fn xs_transaction_end(h: *mut c_void, t: u32, abort: bool) -> bool {
    match xs_of(h) {
        Some(d) => xs_bool(d.xs.transaction_end(TxId(t), !abort)),
        None => {
            set_errno(ENOENT);
            false
        }
    }
}

// --- libxenvchan itself ----------------------------------------------------------

/// `struct libxenvchan` (opaque except for the `blocking` bit, see
/// [`Vchan::set_blocking`]).
#[repr(C)]
pub struct LibXenVchan {
    _opaque: [u8; 0],
}

extern "C" {
    fn libxenvchan_server_init(
        logger: *mut c_void,
        domain: c_int,
        xs_path: *const c_char,
        read_min: usize,
        write_min: usize,
    ) -> *mut LibXenVchan;
    fn libxenvchan_client_init(
        logger: *mut c_void,
        domain: c_int,
        xs_path: *const c_char,
    ) -> *mut LibXenVchan;
    fn libxenvchan_close(ctrl: *mut LibXenVchan);
    fn libxenvchan_recv(ctrl: *mut LibXenVchan, data: *mut c_void, size: usize) -> c_int;
    fn libxenvchan_read(ctrl: *mut LibXenVchan, data: *mut c_void, size: usize) -> c_int;
    fn libxenvchan_send(ctrl: *mut LibXenVchan, data: *const c_void, size: usize) -> c_int;
    fn libxenvchan_write(ctrl: *mut LibXenVchan, data: *const c_void, size: usize) -> c_int;
    fn libxenvchan_wait(ctrl: *mut LibXenVchan) -> c_int;
    fn libxenvchan_is_open(ctrl: *mut LibXenVchan) -> c_int;
    fn libxenvchan_data_ready(ctrl: *mut LibXenVchan) -> c_int;
    fn libxenvchan_buffer_space(ctrl: *mut LibXenVchan) -> c_int;
}

/// Offsets in `struct libxenvchan` (x86-64 SysV layout of
/// `libxenvchan.h`): `ring` pointer, `event_port`, and the `int` holding
/// the bit-fields `is_server:1, server_persist:1, blocking:1`.
const OFF_RING: usize = 8;
const OFF_EVENT_PORT: usize = 24;
const OFF_FLAGS: usize = 28;
const BIT_IS_SERVER: u32 = 1 << 0;
const BIT_BLOCKING: u32 = 1 << 2;

/// One libxenvchan end, owned; closed (`libxenvchan_close`) on drop.
///
/// Its calls must run on one thread at a time (`&mut self`), as
/// libxenvchan requires; it may move between threads.
pub struct Vchan {
    /// The domain every call runs as (`libxenvchan_close` opens a new
    /// xenstore connection to remove the entry).
    dom: Arc<CDomain>,
    ctrl: NonNull<LibXenVchan>,
    /// The shared page's address, as the shim handed it out.
    ring: usize,
    port: u32,
}

// SAFETY: the C struct is only used through `&mut self` (one thread at a
// time); libxenvchan keeps no thread-local state, and the shim's handles
// are process-wide.
unsafe impl Send for Vchan {}

/// A failed libxenvchan call: its (negative) return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CError {
    /// The C return value.
    pub ret: c_int,
}

impl Vchan {
    /// `libxenvchan_server_init` as domain `d`, for `client`, at `path`.
    pub fn server(
        d: &Arc<CDomain>,
        client: DomId,
        path: &str,
        read_min: usize,
        write_min: usize,
    ) -> Option<Vchan> {
        let path = std::ffi::CString::new(path).ok()?;
        // SAFETY: NULL logger is allowed; `path` is a valid C string that
        // libxenvchan copies (strdup) before returning.
        let ctrl = enter(d, || unsafe {
            libxenvchan_server_init(
                ptr::null_mut(),
                c_int::from(client.0),
                path.as_ptr(),
                read_min,
                write_min,
            )
        });
        Self::adopt(d, ctrl, true)
    }

    /// `libxenvchan_client_init` as domain `d`, to `server`, at `path`.
    pub fn client(d: &Arc<CDomain>, server: DomId, path: &str) -> Option<Vchan> {
        let path = std::ffi::CString::new(path).ok()?;
        // SAFETY: NULL logger is allowed; `path` is a valid C string, only
        // used during the call.
        let ctrl = enter(d, || unsafe {
            libxenvchan_client_init(ptr::null_mut(), c_int::from(server.0), path.as_ptr())
        });
        Self::adopt(d, ctrl, false)
    }

    /// Checks the fields this wrapper relies on against what the shim
    /// handed out, so a layout mismatch fails loudly instead of poking the
    /// wrong bit.
    fn adopt(d: &Arc<CDomain>, ctrl: *mut LibXenVchan, server: bool) -> Option<Vchan> {
        let ctrl = NonNull::new(ctrl)?;
        let base = ctrl.as_ptr().cast::<u8>();
        // SAFETY: `ctrl` is a live `struct libxenvchan` (88 bytes on
        // x86-64) just returned by init; the reads are in bounds and
        // aligned (8 and 4); no other thread uses it yet.
        let (ring, port, flags) = unsafe {
            (
                base.add(OFF_RING).cast::<usize>().read(),
                base.add(OFF_EVENT_PORT).cast::<u32>().read(),
                base.add(OFF_FLAGS).cast::<u32>().read(),
            )
        };
        let known = registry()
            .regions
            .get(&ring)
            .is_some_and(|r| r.len == PAGE_SIZE);
        let v = Vchan {
            dom: d.clone(),
            ctrl,
            ring,
            port,
        };
        assert!(
            known,
            "struct libxenvchan layout: `ring` is not the page the shim handed out"
        );
        assert_eq!(
            flags & BIT_IS_SERVER != 0,
            server,
            "struct libxenvchan layout: is_server bit"
        );
        Some(v)
    }

    /// Sets the `blocking` bit-field.
    pub fn set_blocking(&mut self, on: bool) {
        let p = self.ctrl.as_ptr().cast::<u8>();
        // SAFETY: in bounds and aligned (see `adopt`, which checked the
        // neighbouring fields); `&mut self` excludes concurrent C calls.
        unsafe {
            let f = p.add(OFF_FLAGS).cast::<u32>();
            let v = f.read();
            f.write(if on {
                v | BIT_BLOCKING
            } else {
                v & !BIT_BLOCKING
            });
        }
    }

    /// The shared page's address (for the test's own look at it).
    pub fn ring_addr(&self) -> usize {
        self.ring
    }

    /// Our event-channel port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Runs one libxenvchan call on our struct, as our domain.
    fn call(&mut self, f: impl FnOnce(*mut LibXenVchan) -> c_int) -> Result<usize, CError> {
        let ctrl = self.ctrl.as_ptr();
        let r = enter(&self.dom, || f(ctrl));
        usize::try_from(r).map_err(|_| CError { ret: r })
    }

    /// `libxenvchan_read`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, CError> {
        // SAFETY: `buf` is writable for its length; `&mut self` gives
        // exclusive use of the C struct.
        self.call(|ctrl| unsafe { libxenvchan_read(ctrl, buf.as_mut_ptr().cast(), buf.len()) })
    }

    /// `libxenvchan_write`.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, CError> {
        // SAFETY: `buf` is readable for its length; exclusive use as above.
        self.call(|ctrl| unsafe { libxenvchan_write(ctrl, buf.as_ptr().cast(), buf.len()) })
    }

    /// `libxenvchan_recv`.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, CError> {
        // SAFETY: as `read`.
        self.call(|ctrl| unsafe { libxenvchan_recv(ctrl, buf.as_mut_ptr().cast(), buf.len()) })
    }

    /// `libxenvchan_send`.
    pub fn send(&mut self, buf: &[u8]) -> Result<usize, CError> {
        // SAFETY: as `write`.
        self.call(|ctrl| unsafe { libxenvchan_send(ctrl, buf.as_ptr().cast(), buf.len()) })
    }

    /// `libxenvchan_wait`.
    pub fn wait(&mut self) -> Result<(), CError> {
        // SAFETY: exclusive use of a live struct.
        self.call(|ctrl| unsafe { libxenvchan_wait(ctrl) })
            .map(|_| ())
    }

    /// `libxenvchan_is_open`.
    pub fn is_open(&mut self) -> bool {
        // SAFETY: exclusive use of a live struct.
        self.call(|ctrl| unsafe { libxenvchan_is_open(ctrl) }) != Ok(0)
    }

    /// `libxenvchan_data_ready`.
    pub fn data_ready(&mut self) -> usize {
        // SAFETY: exclusive use of a live struct.
        self.call(|ctrl| unsafe { libxenvchan_data_ready(ctrl) })
            .unwrap_or(0)
    }

    /// `libxenvchan_buffer_space`.
    pub fn buffer_space(&mut self) -> usize {
        // SAFETY: exclusive use of a live struct.
        self.call(|ctrl| unsafe { libxenvchan_buffer_space(ctrl) })
            .unwrap_or(0)
    }
}

impl Drop for Vchan {
    fn drop(&mut self) {
        let ctrl = self.ctrl.as_ptr();
        // SAFETY: the struct is live and ours; it is freed by the call and
        // never used again.
        enter(&self.dom, || unsafe { libxenvchan_close(ctrl) })
    }
}

/// How many areas handed to C as domain `d` are still shared or mapped
/// (0 once libxenvchan closed everything it opened, `munmap` included).
pub fn live_regions(d: &Arc<CDomain>) -> usize {
    registry()
        .regions
        .values()
        .filter(|r| Arc::ptr_eq(&r.dom, d))
        .count()
}

/// Reads a byte of a region handed out by the shim (the test's look at the
/// shared page libxenvchan set up), atomically; `None` if `addr` is not
/// the start of a region or `off` is outside it.
pub fn peek_u8(addr: usize, off: usize) -> Option<u8> {
    let r = registry();
    let reg = r.regions.get(&addr)?;
    let mem = reg.writable()?;
    (off < mem.len()).then(|| mem.atomic_u8(off).load(Ordering::SeqCst))
}

/// Reads an aligned `u32` of a region handed out by the shim.
pub fn peek_u32(addr: usize, off: usize) -> Option<u32> {
    let r = registry();
    let reg = r.regions.get(&addr)?;
    let mem = reg.writable()?;
    (off % 4 == 0 && off + 4 <= mem.len()).then(|| mem.atomic_u32(off).load(Ordering::SeqCst))
}
