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

/// The PCI configuration mechanism #1 ports: address, then data.
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

/// Reads one 32-bit register of PCI configuration space through
/// mechanism #1 (`address` is the `0xcf8` word: enable bit, bus, device,
/// function, register). Xen emulates these ports for a PVH dom0 (vPCI).
pub fn pci_config_read(address: u32) -> u32 {
    let v: u32;
    // SAFETY: ports 0xcf8/0xcfc are the PCI configuration mechanism, owned
    // by this domain's single-threaded PCI code; they have no memory
    // effects.
    unsafe {
        asm!("out dx, eax", in("dx") PCI_CONFIG_ADDRESS, in("eax") address, options(nomem, nostack, preserves_flags));
        asm!("in eax, dx", in("dx") PCI_CONFIG_DATA, out("eax") v, options(nomem, nostack, preserves_flags));
    }
    v
}

/// Writes one 32-bit register of PCI configuration space (see
/// [`pci_config_read`]).
pub fn pci_config_write(address: u32, value: u32) {
    // SAFETY: as in `pci_config_read`; what the write does to the device
    // (BARs, command) is the caller's business, and no Rust memory is
    // touched by it.
    unsafe {
        asm!("out dx, eax", in("dx") PCI_CONFIG_ADDRESS, in("eax") address, options(nomem, nostack, preserves_flags));
        asm!("out dx, eax", in("dx") PCI_CONFIG_DATA, in("eax") value, options(nomem, nostack, preserves_flags));
    }
}

/// 64 random bits from the CPU's `RDRAND`, if it has one (CPUID leaf 1,
/// ECX bit 30) and it delivers within a few tries.
pub fn rdrand() -> Option<u64> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let v: u64;
        let ok: u8;
        // SAFETY: RDRAND exists (checked above); it only writes the
        // output register and the carry flag.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack));
        }
        if ok == 1 {
            return Some(v);
        }
    }
    None
}
