//! The hypercall transport: Xen's hypercall page.
//!
//! Xen advertises itself through CPUID leaves `0x4000_0000 + n·0x100`
//! (signature `"XenVMMXenVMM"`); leaf `base + 2` returns in `ebx` the MSR
//! to which the guest writes the physical address of a page, and Xen fills
//! that page with one 32-byte stub per hypercall (`mov $nr, %eax;
//! vmcall/vmmcall; ret`). Arguments go in `rdi, rsi, rdx, r10, r8`; the
//! result comes back in `rax` (negative errno on failure).
//!
//! Only [`crate::hypercall`] calls [`call`]; everything else goes through
//! the typed wrappers there.

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use core::cell::UnsafeCell;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: the page is written once by Xen (before any call) and then only
// executed; Rust code never reads or writes it through references.
unsafe impl Sync for Page {}

#[link_section = ".bss.pages"]
static HYPERCALL_PAGE: Page = Page(UnsafeCell::new([0; 4096]));

/// Why the hypercall page could not be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// No CPUID leaf carries the Xen signature: not running on Xen.
    NotXen,
    /// The Xen leaves lack the hypercall-page leaf.
    NoHypercallLeaf,
}

/// Finds the Xen CPUID base leaf.
fn xen_cpuid_base() -> Option<u32> {
    let mut base = 0x4000_0000u32;
    while base < 0x4001_0000 {
        // CPUID leaves above the hypervisor range return zeros.
        let r = __cpuid(base);
        if r.ebx == u32::from_le_bytes(*b"XenV")
            && r.ecx == u32::from_le_bytes(*b"MMXe")
            && r.edx == u32::from_le_bytes(*b"nVMM")
        {
            if r.eax.wrapping_sub(base) < 2 {
                return None;
            }
            return Some(base);
        }
        base += 0x100;
    }
    None
}

/// Asks Xen to fill the hypercall page. Must run before any [`call`].
pub fn init() -> Result<(), SetupError> {
    let base = xen_cpuid_base().ok_or(SetupError::NotXen)?;
    let leaf2 = __cpuid(base + 2);
    if leaf2.eax == 0 {
        return Err(SetupError::NoHypercallLeaf);
    }
    let msr = leaf2.ebx;
    // Identity map: the virtual address is the guest-physical address.
    let paddr = HYPERCALL_PAGE.0.get() as u64;
    // SAFETY: writing the hypercall MSR only makes Xen overwrite our own
    // page-aligned, reserved page with the stubs.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") paddr as u32, in("edx") (paddr >> 32) as u32,
             options(nostack, preserves_flags));
    }
    Ok(())
}

/// Issues hypercall `nr` with up to five arguments.
///
/// # Safety
/// [`init`] must have succeeded, and the arguments must be valid for
/// hypercall `nr`: pointers must point to live, correctly laid out
/// structures that Xen may read or write for the duration of the call.
pub unsafe fn call(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let entry = HYPERCALL_PAGE.0.get() as u64 + u64::from(nr) * 32;
    let ret: i64;
    // SAFETY: the caller upholds the argument contract; the stub follows
    // the System V convention for the registers listed as clobbered.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}
