//! HVM parameters, `HVMOP_set_param`/`get_param` and the PVH start of day
//! (`xen/include/public/hvm/params.h`, `hvm/hvm_op.h` and
//! `arch-x86/hvm/start_info.h`, Xen 4.17).
//!
//! * HVM params: set by the toolstack's domain builder (`HVMOP_set_param` on
//!   the new domain: where the xenstore and console rings are, their event
//!   channels), read by the guest (`HVMOP_get_param` on `DOMID_SELF`).
//! * `hvm_start_info`: written by Xen (for dom0) or the domain builder (for
//!   every other PVH domain) into guest memory; its physical address is in
//!   `%ebx` at the [`XEN_ELFNOTE_PHYS32_ENTRY`](super::elfnote::XEN_ELFNOTE_PHYS32_ENTRY)
//!   entry point. Read by the unikernel runtime.
//!
//! ```text
//! xen_hvm_param           0: domid u16  2: pad u16  4: index u32  8: value u64   (16)
//! hvm_start_info          0: magic  4: version  8: flags  12: nr_modules          (u32s)
//!                        16: modlist_paddr  24: cmdline_paddr  32: rsdp_paddr    (u64s)
//!                        40: memmap_paddr   48: memmap_entries u32  52: reserved (56)
//! hvm_modlist_entry       0: paddr  8: size  16: cmdline_paddr  24: reserved     (32)
//! hvm_memmap_table_entry  0: addr   8: size  16: type u32  20: reserved u32      (24)
//! ```
//!
//! Fields of `hvm_start_info` from `memmap_paddr` on exist only when
//! `version >= 1`; Xen 4.17 writes version 1.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `HVMOP_set_param`: argument [`XenHvmParam`].
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`: argument [`XenHvmParam`], `value` is written back.
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_set_evtchn_upcall_vector`: per-vCPU event upcall vector (x86).
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// `HVM_PARAM_CALLBACK_IRQ`: how event upcalls are delivered (type in the top byte).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_CALLBACK_IRQ_TYPE_MASK`: the type byte of `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xFF00_0000_0000_0000;
/// Shift of the type byte within `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// `HVM_PARAM_CALLBACK_TYPE_GSI`: value is a GSI (0 disables upcalls).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_PCI_INTX`: value is a PCI INTx line.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR`: value is an x86 interrupt vector.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;
/// The `HVM_PARAM_CALLBACK_IRQ` value asking Xen to deliver event upcalls
/// as x86 interrupt `vector` on every vCPU (what a PVH guest sets).
pub const fn hvm_param_callback_vector(vector: u8) -> u64 {
    (HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) | vector as u64
}

/// `HVM_PARAM_STORE_PFN`: frame of the xenstore ring.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: event channel of the xenstore ring.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_PAE_ENABLED` (deprecated, tools only).
pub const HVM_PARAM_PAE_ENABLED: u32 = 4;
/// `HVM_PARAM_IOREQ_PFN`: device-model I/O request page.
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN`: buffered I/O request page.
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN`: Hyper-V enlightenment mask.
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE`: virtual timer mode.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED`.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT`: identity-map page table (unpaged real mode).
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_DM_DOMAIN` (deprecated, tools only).
pub const HVM_PARAM_DM_DOMAIN: u32 = 13;
/// `HVM_PARAM_ACPI_S_STATE`: ACPI sleep state.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS`: TSS used for real-mode emulation.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN`: align virtual platform timers.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN`: frame of the PV console ring.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: event channel of the PV console ring.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`: PM1a/TMR I/O port block selector.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_NESTEDHVM` (deprecated, tools only).
pub const HVM_PARAM_NESTEDHVM: u32 = 24;
/// `HVM_PARAM_BUFIOREQ_EVTCHN` (deprecated, tools only).
pub const HVM_PARAM_BUFIOREQ_EVTCHN: u32 = 26;
/// `HVM_PARAM_PAGING_RING_PFN`: mem-paging ring.
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN`: vm_event monitor ring.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN`: mem-sharing ring.
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_TRIPLE_FAULT_REASON`: shutdown reason on triple fault.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN`: first ioreq-server page.
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES`: number of ioreq-server pages.
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`: VM generation id location.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`: alternate-p2m mode.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`: width of the saved x87 FIP/FDP.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`: VM86 TSS location and size.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP`: machine-check capabilities.
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS`: params are indices below this.
pub const HVM_NR_PARAMS: u32 = 39;

/// `struct xen_hvm_param`: argument of `HVMOP_set_param`/`HVMOP_get_param`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenHvmParam {
    /// Target domain (`domid_t`; `DOMID_SELF` for the caller).
    pub domid: u16,
    /// Padding, zero.
    pub pad: u16,
    /// An `HVM_PARAM_*` index.
    pub index: u32,
    /// The value set, or written back by `HVMOP_get_param`.
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector`: argument of
/// `HVMOP_set_evtchn_upcall_vector`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenHvmEvtchnUpcallVector {
    /// The vCPU whose upcall vector is set.
    pub vcpu: u32,
    /// The x86 interrupt vector.
    pub vector: u8,
    /// Implicit C padding.
    pub _pad0: [u8; 3],
}

/// `XEN_HVM_START_MAGIC_VALUE`: `hvm_start_info.magic` ("xEn3" with the
/// 0x80 bit of the "E" set).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `XEN_HVM_MEMMAP_TYPE_RAM`: usable RAM.
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED`: reserved, not usable.
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI`: ACPI reclaimable.
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS`: ACPI non-volatile storage.
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`: memory with errors.
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED`: disabled memory.
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM`: persistent memory.
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// The type of an [`HvmMemmapTableEntry`] (E820 numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum HvmMemmapType {
    /// `XEN_HVM_MEMMAP_TYPE_RAM`.
    Ram = XEN_HVM_MEMMAP_TYPE_RAM,
    /// `XEN_HVM_MEMMAP_TYPE_RESERVED`.
    Reserved = XEN_HVM_MEMMAP_TYPE_RESERVED,
    /// `XEN_HVM_MEMMAP_TYPE_ACPI`.
    Acpi = XEN_HVM_MEMMAP_TYPE_ACPI,
    /// `XEN_HVM_MEMMAP_TYPE_NVS`.
    Nvs = XEN_HVM_MEMMAP_TYPE_NVS,
    /// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`.
    Unusable = XEN_HVM_MEMMAP_TYPE_UNUSABLE,
    /// `XEN_HVM_MEMMAP_TYPE_DISABLED`.
    Disabled = XEN_HVM_MEMMAP_TYPE_DISABLED,
    /// `XEN_HVM_MEMMAP_TYPE_PMEM`.
    Pmem = XEN_HVM_MEMMAP_TYPE_PMEM,
}

impl HvmMemmapType {
    /// Decodes a memory map type; `None` for unknown values (treat as reserved).
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            XEN_HVM_MEMMAP_TYPE_RAM => Self::Ram,
            XEN_HVM_MEMMAP_TYPE_RESERVED => Self::Reserved,
            XEN_HVM_MEMMAP_TYPE_ACPI => Self::Acpi,
            XEN_HVM_MEMMAP_TYPE_NVS => Self::Nvs,
            XEN_HVM_MEMMAP_TYPE_UNUSABLE => Self::Unusable,
            XEN_HVM_MEMMAP_TYPE_DISABLED => Self::Disabled,
            XEN_HVM_MEMMAP_TYPE_PMEM => Self::Pmem,
            _ => return None,
        })
    }
}

/// `struct hvm_start_info`: what a PVH guest finds at `%ebx` on entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure (0 or 1; fields from `memmap_paddr` need 1).
    pub version: u32,
    /// `SIF_*` flags (see [`super::xen`]).
    pub flags: u32,
    /// Number of entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (0: none).
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP (0: none).
    pub rsdp_paddr: u64,
    /// Physical address of an array of [`HvmMemmapTableEntry`] (version 1).
    pub memmap_paddr: u64,
    /// Number of entries at `memmap_paddr`; 0 when no map is given (version 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

impl HvmStartInfo {
    /// Size of a version 0 structure (up to and excluding `memmap_paddr`).
    pub const V0_SIZE: usize = 40;

    /// True if `magic` is [`XEN_HVM_START_MAGIC_VALUE`].
    pub const fn magic_ok(&self) -> bool {
        self.magic == XEN_HVM_START_MAGIC_VALUE
    }

    /// True if the memory map fields are present (`version >= 1`).
    pub const fn has_memmap(&self) -> bool {
        self.version >= 1
    }
}

/// `struct hvm_modlist_entry`: one boot module of a PVH guest.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Physical address of the module's command line (0: none).
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`: one region of a PVH guest's memory map.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// Base address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// An `XEN_HVM_MEMMAP_TYPE_*` (decode with [`HvmMemmapType::from_raw`]).
    pub r#type: u32,
    /// Must be zero.
    pub reserved: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_headers() {
        assert_layout!(XenHvmParam, size 16, align 8, domid @ 0, pad @ 2, index @ 4, value @ 8);
        assert_layout!(XenHvmEvtchnUpcallVector, size 8, align 4, vcpu @ 0, vector @ 4);
        assert_layout!(HvmStartInfo, size 56, align 8,
            magic @ 0, version @ 4, flags @ 8, nr_modules @ 12, modlist_paddr @ 16,
            cmdline_paddr @ 24, rsdp_paddr @ 32, memmap_paddr @ 40, memmap_entries @ 48,
            reserved @ 52);
        assert_eq!(
            HvmStartInfo::V0_SIZE,
            core::mem::offset_of!(HvmStartInfo, memmap_paddr)
        );
        assert_layout!(HvmModlistEntry, size 32, align 8,
            paddr @ 0, size @ 8, cmdline_paddr @ 16, reserved @ 24);
        assert_layout!(HvmMemmapTableEntry, size 24, align 8,
            addr @ 0, size @ 8, r#type @ 16, reserved @ 20);
    }

    #[test]
    fn start_info_parses_from_bytes() {
        let mut raw = [0u8; 56];
        raw[..4].copy_from_slice(&0x336e_c578u32.to_le_bytes());
        raw[4] = 1;
        raw[48] = 3;
        let si = HvmStartInfo::read_from_bytes(&raw).unwrap();
        assert!(si.magic_ok());
        assert!(si.has_memmap());
        assert_eq!(si.memmap_entries, 3);
        assert_eq!(si.as_bytes(), &raw);
    }

    #[test]
    fn memmap_types_decode() {
        assert_eq!(HvmMemmapType::from_raw(1), Some(HvmMemmapType::Ram));
        assert_eq!(HvmMemmapType::from_raw(7), Some(HvmMemmapType::Pmem));
        assert_eq!(HvmMemmapType::from_raw(0), None);
        assert_eq!(HvmMemmapType::from_raw(8), None);
        assert_eq!(HVM_PARAM_STORE_PFN, 1);
        assert_eq!(HVM_PARAM_STORE_EVTCHN, 2);
        assert_eq!(HVM_PARAM_CONSOLE_PFN, 17);
        assert_eq!(HVM_PARAM_CONSOLE_EVTCHN, 18);
    }

    #[test]
    fn callback_vector_value() {
        let v = hvm_param_callback_vector(0xf3);
        assert_eq!(v, 0x0200_0000_0000_00f3);
        assert_eq!(v & HVM_PARAM_CALLBACK_IRQ_TYPE_MASK, 2 << 56);
    }
}
