//! Boot sequence, the [`Xen`] platform object and the panic handler.
//!
//! [`start`] runs once, from the architecture entry:
//!
//! 1. note the TSC (the domain's start time, converted once the clock is up),
//!    load the exception IDT;
//! 2. install the hypercall page;
//! 3. read the `hvm_start_info` header and pick the console (dom0 or not);
//! 4. give the heap the largest free RAM range after the image;
//! 5. parse the rest of the start info (command line, modules, memory map);
//! 6. map `shared_info` and the grant-table frames into reserved pages of
//!    the image (`XENMEM_add_to_physmap`), mask upcalls;
//! 7. call the image's entry (see [`crate::main!`]) and shut down with the
//!    reason it returns.
//!
//! Shared pages (`shared_info`, grant frames) are only ever touched through
//! `xen::shmem` views made here.

use crate::error::OpError;
use crate::start_info::{Header, MemRegion, PhysRead, StartInfo, MEMMAP_RAM};
use crate::{arch, console, heap, hypercall, time};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use core::cell::{Cell, UnsafeCell};
use core::mem::offset_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use xen::abi::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use xen::abi::memory::{XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO};
use xen::abi::xen::{vcpu_info_offset, VcpuInfo};
use xen::platform::{Clock, Console, Platform, ShutdownReason, StoreRing};
use xen::{DomId, EvtchnPort, SharedMem, PAGE_SIZE};

/// Grant-table frames the runtime maps (512 v1 entries each).
pub(crate) const GRANT_FRAMES: usize = 4;

/// Page-aligned pages inside the image that Xen's frames are mapped over.
#[repr(C, align(4096))]
struct Pages<const N: usize>(UnsafeCell<[[u8; PAGE_SIZE]; N]>);

// SAFETY: the pages are never accessed through Rust references, only
// through `SharedMem` views built from their raw address.
unsafe impl<const N: usize> Sync for Pages<N> {}

impl<const N: usize> Pages<N> {
    fn addr(&self) -> u64 {
        self.0.get() as u64
    }
    /// A view of all the pages.
    ///
    /// # Safety
    /// The frames Xen mapped here are live for the rest of the domain's
    /// life, and nothing else makes references to them.
    unsafe fn view(&'static self) -> SharedMem<'static> {
        // SAFETY: forwarded; the pointer is non-null and page-aligned.
        unsafe { SharedMem::from_raw(NonNull::new_unchecked(self.0.get().cast()), N * PAGE_SIZE) }
    }
}

#[link_section = ".bss.pages"]
static SHARED_INFO_PAGE: Pages<1> = Pages(UnsafeCell::new([[0; PAGE_SIZE]; 1]));
#[link_section = ".bss.pages"]
static GRANT_PAGES: Pages<GRANT_FRAMES> = Pages(UnsafeCell::new([[0; PAGE_SIZE]; GRANT_FRAMES]));

static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);
static BOOT_NS: AtomicU64 = AtomicU64::new(0);

extern "C" {
    static __image_end: u8;
}

extern "Rust" {
    fn __windsor_main(xen: &'static Xen) -> ShutdownReason;
}

/// Reads guest-physical memory through the identity map (first 4 GiB).
struct IdentityMap;

impl PhysRead for IdentityMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = paddr.checked_add(buf.len() as u64) else {
            return false;
        };
        if paddr == 0 || end > 1 << 32 {
            return false;
        }
        // SAFETY: the range is inside the identity map built by the entry
        // code; boot data is private to us (Xen wrote it before we started)
        // and `buf` is distinct memory.
        unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

/// Xen system time when the domain's entry point ran.
pub fn boot_time() -> Duration {
    Duration::from_nanos(BOOT_NS.load(Ordering::Relaxed))
}

fn fatal(what: &str, detail: &dyn core::fmt::Debug) -> ! {
    crate::println!("windsor: boot failed: {what}: {detail:?}");
    hypercall::shutdown(ShutdownReason::Crash as u32);
    arch::halt_forever()
}

/// The memory map: from `hvm_start_info` (version 1) or, as Xen 4.17
/// gives a PVH dom0 a version-0 start info, from `XENMEM_memory_map`.
fn memory_map(h: &Header, out: &mut [MemRegion]) -> Result<usize, xen::Errno> {
    if h.memmap_entries > 0 {
        let n = (h.memmap_entries as usize).min(out.len());
        for (i, slot) in out.iter_mut().enumerate().take(n) {
            *slot = h
                .memmap_entry(&IdentityMap, i as u32)
                .map_err(|_| xen::Errno::EFAULT)?;
        }
        return Ok(n);
    }
    hypercall::memory_map(out)
}

/// Picks the largest RAM range above the image that no boot data occupies.
fn heap_range(h: &Header, map: &[MemRegion]) -> Option<(u64, u64)> {
    const MAX_RANGES: usize = 80;
    let mut boot = [(0u64, 0u64); MAX_RANGES];
    let mut n = 0;
    let mut overflow = false;
    let r = h.for_each_boot_range(&IdentityMap, |a, l| {
        if n < MAX_RANGES {
            boot[n] = (a, a.saturating_add(l));
            n += 1;
        } else {
            overflow = true;
        }
    });
    if r.is_err() || overflow {
        return None;
    }
    let boot = &boot[..n];
    // A linker-script symbol: only its address is used.
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let page_up = |x: u64| (x + PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1);
    let mut best = None::<(u64, u64)>;
    for region in map {
        if region.kind != MEMMAP_RAM || region.end() <= image_end {
            continue;
        }
        let lo = page_up(region.addr.max(image_end));
        let hi = region.end().min(1 << 32) & !(PAGE_SIZE as u64 - 1);
        // Candidate starts: the region start and every boot range end.
        for s in core::iter::once(lo).chain(boot.iter().map(|b| page_up(b.1))) {
            if s < lo || s >= hi || boot.iter().any(|b| b.0 <= s && s < b.1) {
                continue;
            }
            let e = boot
                .iter()
                .filter(|b| b.0 > s)
                .map(|b| b.0 & !(PAGE_SIZE as u64 - 1))
                .fold(hi, u64::min);
            if e > s && best.is_none_or(|(bs, be)| e - s > be - bs) {
                best = Some((s, e));
            }
        }
    }
    best
}

/// The domain's view of Xen: implements the `xen::platform` traits.
pub struct Xen {
    pub(crate) start: StartInfo,
    pub(crate) domid: DomId,
    pub(crate) shared: SharedMem<'static>,
    pub(crate) gnttab: crate::gnttab::GrantState,
    /// `HVM_PARAM_STORE_PFN` / `_EVTCHN`, if the builder set them.
    store: Option<(u64, EvtchnPort)>,
    /// The last failed domain-control or builder op (see [`Xen::last_error`]).
    last_error: Cell<Option<OpError>>,
}

impl Xen {
    /// What Xen passed at boot (command line, modules, memory map).
    pub fn start_info(&self) -> &StartInfo {
        &self.start
    }

    /// The bytes of boot module `index` (its image or blob).
    pub fn module(&self, index: usize) -> Option<&'static [u8]> {
        let m = self.start.modules.get(index)?;
        let end = m.paddr.checked_add(m.size)?;
        if m.paddr == 0 || end > 1 << 32 {
            return None;
        }
        // SAFETY: the module lies in the identity map (checked), was written
        // by Xen before we started, and the heap never covers boot data
        // (see `heap_range`), so it stays untouched for the domain's life.
        Some(unsafe { core::slice::from_raw_parts(m.paddr as *const u8, m.size as usize) })
    }

    /// `(major, minor)` of the running hypervisor.
    pub fn xen_version(&self) -> (u16, u16) {
        hypercall::xen_version()
    }

    /// True if we are the initial domain.
    pub fn is_dom0(&self) -> bool {
        self.start.header.is_initdomain()
    }

    /// Free heap bytes.
    pub fn heap_free(&self) -> usize {
        heap::free()
    }

    /// The last `DomainControl` or `DomainBuilder` call that failed: which
    /// hypercall or check, for which domain, with which code.
    ///
    /// The platform traits return only the code; right after one of their
    /// calls fails, this says which op it was (every failure of those
    /// traits is recorded here before it is returned). Successful calls
    /// leave it as it is.
    pub fn last_error(&self) -> Option<OpError> {
        self.last_error.get()
    }

    /// What to print for `e`, just returned by a `DomainControl` or
    /// `DomainBuilder` call: the op that failed with its code
    /// ([`Xen::last_error`]) if it is the one that produced `e`, else
    /// `e` itself.
    pub fn describe(&self, e: xen::platform::Error) -> String {
        match self.last_error() {
            Some(op) if xen::platform::Error::from(op) == e => op.to_string(),
            _ => e.to_string(),
        }
    }

    /// Records a failure for [`Xen::last_error`] and converts it to the
    /// platform error.
    pub(crate) fn note<T>(&self, r: Result<T, OpError>) -> xen::platform::Result<T> {
        r.map_err(|e| {
            self.last_error.set(Some(e));
            e.into()
        })
    }
}

impl Console for Xen {
    fn write(&self, bytes: &[u8]) {
        console::write_bytes(bytes)
    }
}

impl Clock for Xen {
    fn now(&self) -> Duration {
        Duration::from_nanos(now_ns(self.shared))
    }
}

fn now_ns(shared: SharedMem<'static>) -> u64 {
    let t = shared
        .ro()
        .slice(time::vcpu_time_offset(0), 32)
        .expect("vcpu_time_info inside shared_info");
    time::system_time(t, arch::rdtsc)
}

impl Platform for Xen {
    fn domid(&self) -> DomId {
        self.domid
    }
    fn cmdline(&self) -> &str {
        &self.start.cmdline
    }
    fn store_ring(&self) -> Option<StoreRing<'_>> {
        let (gfn, port) = self.store?;
        // SAFETY: the builder placed the ring page in our e820-reserved
        // range below 4 GiB (checked at boot), so it is identity-mapped, is
        // never heap memory, and stays for the domain's life; it is only
        // accessed through views.
        let page = unsafe { SharedMem::from_raw(NonNull::new(gfn as *mut u8)?, PAGE_SIZE) };
        Some(StoreRing { page, port })
    }
    fn shutdown_self(&self, reason: ShutdownReason) {
        let e = hypercall::shutdown(reason as u32);
        crate::println!("windsor: SCHEDOP_shutdown({reason:?}) failed: {e}");
        arch::halt_forever()
    }
}

/// Our domain id: 0 for dom0; otherwise `domid=N` on the command line
/// (the Windsor builder passes it), else `DOMID_SELF`.
fn domid_from(start: &StartInfo) -> DomId {
    if start.header.is_initdomain() {
        return DomId::DOM0;
    }
    start
        .cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("domid=")?.parse().ok())
        .map(DomId)
        .unwrap_or(DomId::SELF)
}

/// The boot sequence (see the module doc). Never returns.
pub(crate) fn start(start_info_paddr: u64) -> ! {
    ENTRY_TSC.store(arch::rdtsc(), Ordering::Relaxed);
    arch::idt::init();
    if let Err(e) = arch::hypercall::init() {
        // No hypercalls: the debug port is all we have.
        console::write_bytes(b"windsor: not running on Xen\n");
        let _ = e;
        arch::halt_forever();
    }
    let header = match Header::read(&IdentityMap, start_info_paddr) {
        Ok(h) => h,
        Err(e) => fatal("hvm_start_info", &e),
    };
    console::init(header.is_initdomain());
    let mut map = [MemRegion::default(); 128];
    let map = match memory_map(&header, &mut map) {
        Ok(n) => &map[..n],
        Err(e) => fatal("memory map", &e),
    };
    let Some((lo, hi)) = heap_range(&header, map) else {
        fatal("no RAM for the heap", &map)
    };
    // SAFETY: `heap_range` returns RAM above the image that no boot data
    // uses; nothing else in the runtime allocates from raw RAM.
    unsafe { heap::init(lo, hi) };
    let mut start = match StartInfo::parse(&IdentityMap, header) {
        Ok(s) => s,
        Err(e) => fatal("hvm_start_info", &e),
    };
    if start.memmap.is_empty() {
        start.memmap = map.to_vec();
    }

    if let Err(e) = hypercall::add_to_physmap(
        DomId::SELF.0,
        XENMAPSPACE_SHARED_INFO,
        0,
        SHARED_INFO_PAGE.addr() >> 12,
    ) {
        fatal("map shared_info", &e);
    }
    // SAFETY: Xen now backs this page with shared_info for the domain's life.
    let shared = unsafe { SHARED_INFO_PAGE.view() };
    // No upcalls: events are polled (see the crate doc).
    shared
        .atomic_u8(vcpu_info_offset(0) + offset_of!(VcpuInfo, evtchn_upcall_mask))
        .store(1, Ordering::Relaxed);
    let boot = time::system_time(
        shared
            .ro()
            .slice(time::vcpu_time_offset(0), 32)
            .expect("in page"),
        || ENTRY_TSC.load(Ordering::Relaxed),
    );
    BOOT_NS.store(boot, Ordering::Relaxed);

    for i in 0..GRANT_FRAMES {
        let gfn = (GRANT_PAGES.addr() >> 12) + i as u64;
        if let Err(e) =
            hypercall::add_to_physmap(DomId::SELF.0, XENMAPSPACE_GRANT_TABLE, i as u64, gfn)
        {
            fatal("map grant table frame", &e);
        }
    }
    // SAFETY: Xen now backs these pages with our grant-table frames.
    let frames = unsafe { GRANT_PAGES.view() };

    let domid = domid_from(&start);
    let store = if start.header.is_initdomain() {
        None
    } else {
        let pfn = hypercall::get_hvm_param(DomId::SELF.0, HVM_PARAM_STORE_PFN).unwrap_or(0);
        let port = hypercall::get_hvm_param(DomId::SELF.0, HVM_PARAM_STORE_EVTCHN).unwrap_or(0);
        (pfn != 0 && pfn < 1 << 20).then_some((pfn << 12, EvtchnPort(port as u32)))
    };
    if !start.header.is_initdomain() {
        // The PV console ring, in the same reserved range as the store's.
        let pfn = hypercall::get_hvm_param(DomId::SELF.0, HVM_PARAM_CONSOLE_PFN).unwrap_or(0);
        let port = hypercall::get_hvm_param(DomId::SELF.0, HVM_PARAM_CONSOLE_EVTCHN).unwrap_or(0);
        if pfn != 0 && pfn < 1 << 20 && port != 0 {
            console::attach_ring((pfn << 12) as usize, port as u32);
        }
    }
    let xen: &'static Xen = Box::leak(Box::new(Xen {
        domid,
        shared,
        gnttab: crate::gnttab::GrantState::new(frames, &start),
        store,
        start,
        last_error: Cell::new(None),
    }));
    // SAFETY: the image defines `__windsor_main` with this signature
    // through `windsor_unikernel::main!`.
    let reason = unsafe { __windsor_main(xen) };
    xen.shutdown_self(reason);
    arch::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("windsor: panic: {info}");
    hypercall::shutdown(ShutdownReason::Crash as u32);
    arch::halt_forever()
}
