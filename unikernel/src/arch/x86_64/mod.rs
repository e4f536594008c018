//! x86_64: PVH entry, the hypercall page, port I/O and the TSC.
//!
//! * `entry.s`: the 32-bit PVH entry point, its `XEN_ELFNOTE_PHYS32_ENTRY`
//!   note, the boot page tables (identity map of 4 GiB), the GDT and the
//!   jump to long mode; it calls [`windsor_rust_start`].
//! * [`hypercall`]: installs the hypercall page through the Xen CPUID leaves
//!   and calls into it.
//! * [`idt`]: CPU exceptions → a report on the console and a crash.

pub mod hypercall;
pub mod idt;

use core::arch::{asm, global_asm};

global_asm!(include_str!("entry.s"), options(att_syntax));

/// First Rust code to run, on the boot stack in long mode with the first
/// 4 GiB identity-mapped. `start_info` is the guest-physical address of
/// `hvm_start_info` that Xen passed in `%ebx`.
#[no_mangle]
extern "C" fn windsor_rust_start(start_info: u64) -> ! {
    crate::runtime::start(start_info)
}

/// Writes one byte to I/O port `port`.
pub fn outb(port: u16, byte: u8) {
    // SAFETY: port I/O has no memory effects; the only port written by the
    // runtime is the 0xe9 debug console, which Xen emulates for every PVH
    // domain.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") byte, options(nomem, nostack, preserves_flags))
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no side effects and is allowed at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Parks the vCPU forever without spinning hard, for use after a failed
/// shutdown hypercall. (A `hlt` with interrupts off makes Xen halt the
/// whole machine when we are dom0, which is what we want at that point.)
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `hlt` only stops the vCPU until the next interrupt.
        unsafe { asm!("hlt", options(nomem, nostack)) }
    }
}
