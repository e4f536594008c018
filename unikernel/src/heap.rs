//! The global allocator: `linked_list_allocator` over one RAM range.
//!
//! The runtime hands it the RAM region (from the `hvm_start_info` memory
//! map) that follows the image, minus the boot data Xen placed there
//! (start info, modules, command lines). Page-sized, page-aligned
//! allocations back [`LocalPages`](xen::platform::LocalPages), so the heap
//! also provides the pages a domain grants.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the allocator `[start, end)`.
///
/// # Safety
/// The range must be RAM that nothing else uses for the life of the domain
/// (identity-mapped, so the address is usable as a pointer). Call once.
pub(crate) unsafe fn init(start: u64, end: u64) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { HEAP.lock().init(start as *mut u8, (end - start) as usize) }
}

/// Bytes currently free in the heap.
pub(crate) fn free() -> usize {
    HEAP.lock().free()
}
