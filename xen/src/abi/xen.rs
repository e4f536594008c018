//! The shared-info page, vCPU info and time, VIRQs, `XENVER_*` and start
//! flags (`xen/include/public/xen.h`, `arch-x86/xen.h`,
//! `arch-x86/xen-x86_64.h`, `version.h`, `features.h`, Xen 4.17).
//!
//! The shared-info page is produced by Xen (pending bits, time, wallclock)
//! and by the guest (mask bits, per-vCPU upcall mask); both write it at the
//! same time, so consumers (the unikernel runtime) reach its fields through
//! [`crate::shmem`] at the offsets these structs define, never by reference.
//!
//! ```text
//! shared_info (x86_64, 3136 bytes, in one 4 KiB page)
//!     0: vcpu_info[32]          64 bytes each
//!  2048: evtchn_pending[64]     u64 bitmap, one bit per 2-level port
//!  2560: evtchn_mask[64]        u64 bitmap
//!  3072: wc_version  3076: wc_sec  3080: wc_nsec  3084: wc_sec_hi   (u32s)
//!  3088: arch (arch_shared_info, 48 bytes)
//!
//! vcpu_info (64 bytes)
//!     0: evtchn_upcall_pending u8   1: evtchn_upcall_mask u8
//!     8: evtchn_pending_sel u64    16: arch (cr2, pad)   32: time (vcpu_time_info)
//!
//! vcpu_time_info (32 bytes)
//!     0: version u32  8: tsc_timestamp u64  16: system_time u64
//!    24: tsc_to_system_mul u32  28: tsc_shift i8  29: flags u8
//! ```

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_LEGACY_MAX_VCPUS` (x86): vCPUs whose `vcpu_info` lives in shared info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// `EVTCHN_2L_NR_CHANNELS` / `NR_EVENT_CHANNELS` on x86_64: ports of the
/// 2-level event channel ABI (64 × 64).
pub const EVTCHN_2L_NR_CHANNELS: usize = 4096;

/// `VIRQ_TIMER`: per-vCPU timer / timeout.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`: request to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`: bytes received on the emergency console (dom0).
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`: exceptional event for some domain, e.g. shutdown (dom0).
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF`: trace buffer records available (dom0).
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER`: a domain paused for debugging (dom0).
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF`: new profiling sample.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING`: bytes received on the console ring (dom0).
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE`: a physical CPU changed state (dom0).
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT`: a memory event occurred (dom0).
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO`: Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM`: Xen's heap is low (dom0).
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU`: PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// `VIRQ_ARCH_0`: first architecture-specific VIRQ.
pub const VIRQ_ARCH_0: u32 = 16;
/// `VIRQ_ARCH_7`: last architecture-specific VIRQ.
pub const VIRQ_ARCH_7: u32 = 23;
/// `NR_VIRQS`: VIRQ numbers are below this.
pub const NR_VIRQS: u32 = 24;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: fills a 16-byte string.
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info`.
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities`: fills a 1024-byte string.
pub const XENVER_CAPABILITIES: u32 = 3;
/// `XENVER_changeset`: fills a 64-byte string.
pub const XENVER_CHANGESET: u32 = 4;
/// `XENVER_platform_parameters`.
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features`: argument [`XenFeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;
/// `XENVER_pagesize`: returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// `XENVER_guest_handle`: fills the 16-byte domain handle.
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline`: fills Xen's 1024-byte command line.
pub const XENVER_COMMANDLINE: u32 = 9;
/// `XENVER_build_id`.
pub const XENVER_BUILD_ID: u32 = 10;
/// Size of the `xen_extraversion_t` string.
pub const XEN_EXTRAVERSION_LEN: usize = 16;

/// `struct xen_feature_info`: argument of `XENVER_get_features`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap to return (only 0 exists).
    pub submap_idx: u32,
    /// OUT: the bits `XENFEAT_*` of that submap.
    pub submap: u32,
}

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_auto_translated_physmap`: the guest sees GFNs, not MFNs (HVM/PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_hvm_callback_vector`: `HVM_PARAM_CALLBACK_TYPE_VECTOR` works.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_dom0`: the caller is the initial domain.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_NR_SUBMAPS`.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// `SIF_PRIVILEGED`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the domain is the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD`: modules are multiboot modules.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN`: `mod_start` is a PFN (PV).
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS`: tools understand a virtually mapped p2m (PV).
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `SIF_PM_MASK`: byte reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` in [`VcpuTimeInfo::flags`].
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` in [`VcpuTimeInfo::flags`].
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info`: Xen's per-vCPU clock parameters (a seqlock on
/// `version`: odd while Xen updates).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Incremented before and after each update.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// Multiplier (32.32 fixed point) from shifted TSC ticks to ns.
    pub tsc_to_system_mul: u32,
    /// Shift applied to the TSC delta before multiplying (may be negative).
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// System time in ns at TSC value `tsc`, from a consistent snapshot.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let delta = if self.tsc_shift >= 0 {
            delta << self.tsc_shift
        } else {
            delta >> -self.tsc_shift
        };
        let ns = ((delta as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(ns)
    }
}

/// `struct arch_vcpu_info` (x86_64).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault (PV).
    pub cr2: u64,
    /// Padding, keeps `vcpu_info` at 64 bytes.
    pub pad: u64,
}

/// `struct vcpu_info`: per-vCPU event state and time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU; cleared by the guest.
    pub evtchn_upcall_pending: u8,
    /// Non-zero: no upcall is delivered (x86 `XEN_HAVE_PV_UPCALL_MASK`).
    pub evtchn_upcall_mask: u8,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
    /// One bit per word of `shared_info.evtchn_pending` with pending ports.
    pub evtchn_pending_sel: u64,
    /// Architecture part.
    pub arch: ArchVcpuInfo,
    /// Clock parameters.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (x86_64): PV p2m bookkeeping.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Valid entries in the p2m.
    pub max_pfn: u64,
    /// Frame of the p2m frame-list list.
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// cr3 of the address space where `p2m_vaddr` is valid.
    pub p2m_cr3: u64,
    /// Virtual address of the linear p2m list.
    pub p2m_vaddr: u64,
    /// Generation count of the p2m mapping (odd while updating).
    pub p2m_generation: u64,
}

/// `struct shared_info`: the page Xen shares with every domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SharedInfo {
    /// Event and time state of the first [`XEN_LEGACY_MAX_VCPUS`] vCPUs.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Pending bit per port (2-level ABI); set by Xen, cleared by the guest.
    pub evtchn_pending: [u64; 64],
    /// Mask bit per port; written by the guest only.
    pub evtchn_mask: [u64; 64],
    /// Wallclock version counter (as [`VcpuTimeInfo::version`]).
    pub wc_version: u32,
    /// Wallclock seconds since the Unix epoch at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// High 32 bits of the wallclock seconds.
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}

/// Byte offset of the pending word that holds `port`'s bit.
pub const fn evtchn_pending_word_offset(port: u32) -> usize {
    core::mem::offset_of!(SharedInfo, evtchn_pending) + (port as usize / 64) * 8
}

/// Byte offset of the mask word that holds `port`'s bit.
pub const fn evtchn_mask_word_offset(port: u32) -> usize {
    core::mem::offset_of!(SharedInfo, evtchn_mask) + (port as usize / 64) * 8
}

/// Byte offset of `vcpu_info[vcpu]` in the shared-info page.
pub const fn vcpu_info_offset(vcpu: usize) -> usize {
    vcpu * core::mem::size_of::<VcpuInfo>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_xen_h() {
        assert_layout!(VcpuTimeInfo, size 32, align 8,
            version @ 0, pad0 @ 4, tsc_timestamp @ 8, system_time @ 16,
            tsc_to_system_mul @ 24, tsc_shift @ 28, flags @ 29, pad1 @ 30);
        assert_layout!(ArchVcpuInfo, size 16, align 8, cr2 @ 0, pad @ 8);
        assert_layout!(VcpuInfo, size 64, align 8,
            evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1, evtchn_pending_sel @ 8,
            arch @ 16, time @ 32);
        assert_layout!(ArchSharedInfo, size 48, align 8,
            max_pfn @ 0, pfn_to_mfn_frame_list_list @ 8, nmi_reason @ 16,
            p2m_cr3 @ 24, p2m_vaddr @ 32, p2m_generation @ 40);
        assert_layout!(SharedInfo, size 3136, align 8,
            vcpu_info @ 0, evtchn_pending @ 2048, evtchn_mask @ 2560, wc_version @ 3072,
            wc_sec @ 3076, wc_nsec @ 3080, wc_sec_hi @ 3084, arch @ 3088);
        assert_layout!(XenFeatureInfo, size 8, align 4, submap_idx @ 0, submap @ 4);
        assert!(core::mem::size_of::<SharedInfo>() <= crate::PAGE_SIZE);
    }

    #[test]
    fn offsets_of_ports_and_vcpus() {
        assert_eq!(evtchn_pending_word_offset(0), 2048);
        assert_eq!(evtchn_pending_word_offset(65), 2056);
        assert_eq!(evtchn_mask_word_offset(4095), 2560 + 63 * 8);
        assert_eq!(vcpu_info_offset(1), 64);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 64 * 64);
    }

    #[test]
    fn pvclock_arithmetic() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            // 0.5 ns per tick after a shift of 1: 1 ns per raw tick.
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 1,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1000), 5_000);
        assert_eq!(t.system_time_at(1100), 5_100);
        let t = VcpuTimeInfo {
            tsc_shift: -1,
            tsc_to_system_mul: 1 << 31,
            ..t
        };
        assert_eq!(t.system_time_at(1400), 5_100);
    }
}
