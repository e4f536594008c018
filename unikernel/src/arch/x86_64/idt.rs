//! The interrupt descriptor table: CPU exceptions only.
//!
//! Interrupts stay disabled (events are polled, see the crate doc), so the
//! IDT only catches faults: a page fault, general protection fault or
//! invalid opcode prints the vector, error code, `rip` and `cr2` on the
//! console and shuts the domain down as crashed, instead of the silent
//! triple fault Xen would report otherwise. The entry stubs are in
//! `exceptions.s`.
//!
//! Exceptions run on the current stack (no IST): a stack overflow is not
//! caught.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

global_asm!(include_str!("exceptions.s"), options(att_syntax));

const VECTORS: usize = 32;
/// The 64-bit code selector of the boot GDT (entry.s).
const CODE_SELECTOR: u16 = 0x08;

extern "C" {
    static __windsor_exc_table: [u64; VECTORS];
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; VECTORS]>);

// SAFETY: written once by `init` on the only vCPU before `lidt`; read only
// by the CPU afterwards.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; VECTORS]));

const NAMES: [&str; VECTORS] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 floating point",
    "alignment check",
    "machine check",
    "SIMD floating point",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// A 64-bit interrupt gate for `handler` (present, DPL 0, type 0xE).
fn gate(handler: u64) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | (u64::from(CODE_SELECTOR) << 16)
        | (0x8e << 40)
        | ((handler >> 16) & 0xffff) << 48;
    [lo, handler >> 32]
}

/// Fills and loads the IDT. Call once, early, with interrupts disabled.
pub fn init() {
    // SAFETY: the table is emitted by exceptions.s with one address per vector.
    let table = unsafe { &*core::ptr::addr_of!(__windsor_exc_table) };
    let idt = IDT.0.get();
    for (v, &h) in table.iter().enumerate() {
        // SAFETY: single vCPU, interrupts off, IDT not loaded yet: nothing
        // else reads or writes it.
        unsafe { (*idt)[v] = gate(h) };
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (VECTORS * 16 - 1) as u16,
        base: idt as u64,
    };
    // SAFETY: the IDT is static, filled above, and its gates point at the
    // stubs in exceptions.s.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) };
}

/// Called by the stubs with the frame `[vector, error, rip, cs, rflags, rsp, ss]`.
#[no_mangle]
extern "C" fn windsor_exception(frame: *const u64) -> ! {
    // SAFETY: the stub passes its stack pointer; the seven words above it
    // were pushed by the CPU and the stub.
    let f = unsafe { core::slice::from_raw_parts(frame, 7) };
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let name = NAMES.get(f[0] as usize).copied().unwrap_or("?");
    panic!(
        "CPU exception {} ({name}), error {:#x}, rip {:#x}, rsp {:#x}, rflags {:#x}, cr2 {cr2:#x}",
        f[0], f[1], f[2], f[5], f[4]
    );
}
