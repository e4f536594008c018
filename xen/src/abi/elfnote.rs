//! ELF note types a Xen kernel image carries (`xen/include/public/elfnote.h`,
//! Xen 4.17).
//!
//! Produced by every Windsor unikernel image (the PVH entry note sits next to
//! the entry symbol) and by the toolstack's domain builder when it reads an
//! image; consumed by Xen (for dom0) and the builder. Each note is a standard
//! ELF note with owner name `"Xen"`:
//!
//! ```text
//! 0: namesz u32 = 4   4: descsz u32   8: type u32 (XEN_ELFNOTE_*)
//! 12: "Xen\0"        16: desc[descsz], padded to 4 bytes
//! ```
//!
//! For PVH only [`XEN_ELFNOTE_PHYS32_ENTRY`] is required: a 32-bit physical
//! address where Xen starts the guest in 32-bit protected mode, paging off,
//! `%ebx` = physical address of `hvm_start_info` (see [`super::hvm`]).

/// The note owner name, including its NUL, as it appears in the name field.
pub const XEN_ELFNOTE_NAME: &[u8; 4] = b"Xen\0";

/// `XEN_ELFNOTE_INFO`: NAME=VALUE pairs (legacy `__xen_guest` section).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// `XEN_ELFNOTE_ENTRY`: PV virtual entry point.
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// `XEN_ELFNOTE_HYPERCALL_PAGE`: virtual address of the PV hypercall page.
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// `XEN_ELFNOTE_VIRT_BASE`: PV virtual base of the image.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// `XEN_ELFNOTE_PADDR_OFFSET`: PV physical-to-virtual offset.
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// `XEN_ELFNOTE_XEN_VERSION`: required Xen version string ("xen-3.0").
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// `XEN_ELFNOTE_GUEST_OS`: guest OS name string.
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// `XEN_ELFNOTE_GUEST_VERSION`: guest version string.
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// `XEN_ELFNOTE_LOADER`: loader type string ("generic").
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// `XEN_ELFNOTE_PAE_MODE`: PAE mode string (32-bit PV).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// `XEN_ELFNOTE_FEATURES`: `|`-separated feature string.
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// `XEN_ELFNOTE_BSD_SYMTAB`: load the symbol table ("yes").
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// `XEN_ELFNOTE_HV_START_LOW`: lowest address the hypervisor hole may start (PV).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// `XEN_ELFNOTE_L1_MFN_VALID`: mask/value pair for valid L1 entries (PV).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// `XEN_ELFNOTE_SUSPEND_CANCEL`: the guest supports suspend cancellation.
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// `XEN_ELFNOTE_INIT_P2M`: virtual address of the initial P2M table (PV).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// `XEN_ELFNOTE_MOD_START_PFN`: the kernel understands `SIF_MOD_START_PFN`.
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// `XEN_ELFNOTE_SUPPORTED_FEATURES`: bitmap of `XENFEAT_*` the kernel supports.
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_ELFNOTE_MAX`: the highest note number defined.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;
/// `XEN_ELFNOTE_CRASH_INFO`: system information in kexec crash notes.
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x0100_0001;
/// `XEN_ELFNOTE_CRASH_REGS`: per-CPU registers in kexec crash notes.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x0100_0002;
/// `XEN_ELFNOTE_DUMPCORE_NONE`: marks a Xen dump-core file.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x0200_0000;
/// `XEN_ELFNOTE_DUMPCORE_HEADER`: dump-core header note.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x0200_0001;
/// `XEN_ELFNOTE_DUMPCORE_XEN_VERSION`: dump-core Xen version note.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x0200_0002;
/// `XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION`: dump-core format version note.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x0200_0003;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_numbers_match_elfnote_h() {
        assert_eq!(XEN_ELFNOTE_ENTRY, 1);
        assert_eq!(XEN_ELFNOTE_HYPERCALL_PAGE, 2);
        assert_eq!(XEN_ELFNOTE_PHYS32_ENTRY, 18);
        assert_eq!(XEN_ELFNOTE_MAX, 18);
        assert_eq!(XEN_ELFNOTE_CRASH_REGS, 0x100_0002);
        assert_eq!(XEN_ELFNOTE_NAME.len(), 4);
    }
}
