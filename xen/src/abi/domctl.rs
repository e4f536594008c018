//! Domain control, interface version 0x15 (`xen/include/public/domctl.h`
//! and the x86 `xen_arch_domainconfig` of `arch-x86/xen.h`, Xen 4.17).
//!
//! Produced only by the toolstack (dom0): the domain builder creates a
//! domain, sets its limits, loads its vCPU state through `sethvmcontext`,
//! unpauses it; the lifecycle code pauses, queries and destroys. Consumed by
//! Xen (and by the simulated hypervisor). Every call passes one
//! [`XenDomctl`], whose `interface_version` must be exactly
//! [`XEN_DOMCTL_INTERFACE_VERSION`] or Xen answers `-EACCES`.
//!
//! ```text
//! xen_domctl                0: cmd u32  4: interface_version u32  8: domain u16
//!                          10: _pad [u16; 3]  16: u (union, 128 bytes, 8-aligned)  (144)
//! xen_domctl_createdomain   0: ssidref  4: handle [u8; 16]  20: flags  24: iommu_opts
//!                          28: max_vcpus  32: max_evtchn_port  36: max_grant_frames i32
//!                          40: max_maptrack_frames i32  44: grant_opts  48: vmtrace_size
//!                          52: cpupool_id  56: arch (emulation_flags, misc_flags)   (64)
//! xen_domctl_getdomaininfo  0: domain u16  4: flags  8: tot_pages  16: max_pages
//!                          24: outstanding_pages  32: shr_pages  40: paged_pages
//!                          48: shared_info_frame  56: cpu_time  64: nr_online_vcpus
//!                          68: max_vcpu_id  72: ssidref  76: handle  92: cpupool
//!                          96: gpaddr_bits u8  104: arch_config                    (112)
//! xen_domctl_max_mem        0: max_memkb u64                                        (8)
//! xen_domctl_max_vcpus      0: max u32                                              (4)
//! xen_domctl_hvmcontext     0: size u32  8: buffer (ptr)                            (16)
//! ```
//!
//! The `u` union is kept as 128 bytes; [`XenDomctl::payload`] and
//! [`XenDomctl::set_payload`] read and write one member through zerocopy.
//! The HVM save records moved by `gethvmcontext`/`sethvmcontext` are in
//! [`super::hvm_save`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;

/// `XEN_DOMCTL_createdomain`: create a domain; payload [`XenDomctlCreatedomain`], `domain` is the wanted id or 0 for "any" (OUT: the new id).
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// `XEN_DOMCTL_destroydomain`: destroy a domain (may return `-ERESTART`: call again).
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// `XEN_DOMCTL_pausedomain`: pause every vCPU of a domain.
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// `XEN_DOMCTL_unpausedomain`: unpause a domain.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// `XEN_DOMCTL_getdomaininfo`: information about a domain; payload [`XenDomctlGetdomaininfo`].
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// `XEN_DOMCTL_setvcpuaffinity`.
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// `XEN_DOMCTL_shadow_op`.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// `XEN_DOMCTL_max_mem`: set the memory limit; payload [`XenDomctlMaxMem`].
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// `XEN_DOMCTL_setvcpucontext`.
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// `XEN_DOMCTL_getvcpucontext`.
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// `XEN_DOMCTL_getvcpuinfo`.
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// `XEN_DOMCTL_max_vcpus`: set the number of vCPUs; payload [`XenDomctlMaxVcpus`].
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// `XEN_DOMCTL_scheduler_op`.
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// `XEN_DOMCTL_setdomainhandle`.
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// `XEN_DOMCTL_setdebugging`.
pub const XEN_DOMCTL_SETDEBUGGING: u32 = 18;
/// `XEN_DOMCTL_irq_permission`.
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// `XEN_DOMCTL_iomem_permission`.
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// `XEN_DOMCTL_ioport_permission`.
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// `XEN_DOMCTL_hypercall_init`.
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;
/// `XEN_DOMCTL_settimeoffset`.
pub const XEN_DOMCTL_SETTIMEOFFSET: u32 = 24;
/// `XEN_DOMCTL_getvcpuaffinity`.
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// `XEN_DOMCTL_real_mode_area`.
pub const XEN_DOMCTL_REAL_MODE_AREA: u32 = 26;
/// `XEN_DOMCTL_resumedomain`.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// `XEN_DOMCTL_sendtrigger`.
pub const XEN_DOMCTL_SENDTRIGGER: u32 = 28;
/// `XEN_DOMCTL_subscribe`.
pub const XEN_DOMCTL_SUBSCRIBE: u32 = 29;
/// `XEN_DOMCTL_gethvmcontext`: read the HVM save record stream; payload [`XenDomctlHvmcontext`].
pub const XEN_DOMCTL_GETHVMCONTEXT: u32 = 33;
/// `XEN_DOMCTL_sethvmcontext`: load an HVM save record stream; payload [`XenDomctlHvmcontext`].
pub const XEN_DOMCTL_SETHVMCONTEXT: u32 = 34;
/// `XEN_DOMCTL_set_address_size`.
pub const XEN_DOMCTL_SET_ADDRESS_SIZE: u32 = 35;
/// `XEN_DOMCTL_get_address_size`.
pub const XEN_DOMCTL_GET_ADDRESS_SIZE: u32 = 36;
/// `XEN_DOMCTL_assign_device`.
pub const XEN_DOMCTL_ASSIGN_DEVICE: u32 = 37;
/// `XEN_DOMCTL_bind_pt_irq`.
pub const XEN_DOMCTL_BIND_PT_IRQ: u32 = 38;
/// `XEN_DOMCTL_memory_mapping`.
pub const XEN_DOMCTL_MEMORY_MAPPING: u32 = 39;
/// `XEN_DOMCTL_ioport_mapping`.
pub const XEN_DOMCTL_IOPORT_MAPPING: u32 = 40;
/// `XEN_DOMCTL_set_ext_vcpucontext`.
pub const XEN_DOMCTL_SET_EXT_VCPUCONTEXT: u32 = 42;
/// `XEN_DOMCTL_get_ext_vcpucontext`.
pub const XEN_DOMCTL_GET_EXT_VCPUCONTEXT: u32 = 43;
/// `XEN_DOMCTL_set_opt_feature`.
pub const XEN_DOMCTL_SET_OPT_FEATURE: u32 = 44;
/// `XEN_DOMCTL_test_assign_device`.
pub const XEN_DOMCTL_TEST_ASSIGN_DEVICE: u32 = 45;
/// `XEN_DOMCTL_set_target`.
pub const XEN_DOMCTL_SET_TARGET: u32 = 46;
/// `XEN_DOMCTL_deassign_device`.
pub const XEN_DOMCTL_DEASSIGN_DEVICE: u32 = 47;
/// `XEN_DOMCTL_unbind_pt_irq`.
pub const XEN_DOMCTL_UNBIND_PT_IRQ: u32 = 48;
/// `XEN_DOMCTL_get_device_group`.
pub const XEN_DOMCTL_GET_DEVICE_GROUP: u32 = 50;
/// `XEN_DOMCTL_debug_op`.
pub const XEN_DOMCTL_DEBUG_OP: u32 = 54;
/// `XEN_DOMCTL_gethvmcontext_partial`.
pub const XEN_DOMCTL_GETHVMCONTEXT_PARTIAL: u32 = 55;
/// `XEN_DOMCTL_vm_event_op`.
pub const XEN_DOMCTL_VM_EVENT_OP: u32 = 56;
/// `XEN_DOMCTL_mem_sharing_op`.
pub const XEN_DOMCTL_MEM_SHARING_OP: u32 = 57;
/// `XEN_DOMCTL_gettscinfo`.
pub const XEN_DOMCTL_GETTSCINFO: u32 = 59;
/// `XEN_DOMCTL_settscinfo`: set TSC mode (not mirrored).
pub const XEN_DOMCTL_SETTSCINFO: u32 = 60;
/// `XEN_DOMCTL_getpageframeinfo3`.
pub const XEN_DOMCTL_GETPAGEFRAMEINFO3: u32 = 61;
/// `XEN_DOMCTL_setvcpuextstate`.
pub const XEN_DOMCTL_SETVCPUEXTSTATE: u32 = 62;
/// `XEN_DOMCTL_getvcpuextstate`.
pub const XEN_DOMCTL_GETVCPUEXTSTATE: u32 = 63;
/// `XEN_DOMCTL_set_access_required`.
pub const XEN_DOMCTL_SET_ACCESS_REQUIRED: u32 = 64;
/// `XEN_DOMCTL_audit_p2m`.
pub const XEN_DOMCTL_AUDIT_P2M: u32 = 65;
/// `XEN_DOMCTL_set_virq_handler`.
pub const XEN_DOMCTL_SET_VIRQ_HANDLER: u32 = 66;
/// `XEN_DOMCTL_set_broken_page_p2m`.
pub const XEN_DOMCTL_SET_BROKEN_PAGE_P2M: u32 = 67;
/// `XEN_DOMCTL_setnodeaffinity`.
pub const XEN_DOMCTL_SETNODEAFFINITY: u32 = 68;
/// `XEN_DOMCTL_getnodeaffinity`.
pub const XEN_DOMCTL_GETNODEAFFINITY: u32 = 69;
/// `XEN_DOMCTL_cacheflush`.
pub const XEN_DOMCTL_CACHEFLUSH: u32 = 71;
/// `XEN_DOMCTL_get_vcpu_msrs`.
pub const XEN_DOMCTL_GET_VCPU_MSRS: u32 = 72;
/// `XEN_DOMCTL_set_vcpu_msrs`.
pub const XEN_DOMCTL_SET_VCPU_MSRS: u32 = 73;
/// `XEN_DOMCTL_setvnumainfo`.
pub const XEN_DOMCTL_SETVNUMAINFO: u32 = 74;
/// `XEN_DOMCTL_psr_cmt_op`.
pub const XEN_DOMCTL_PSR_CMT_OP: u32 = 75;
/// `XEN_DOMCTL_monitor_op`.
pub const XEN_DOMCTL_MONITOR_OP: u32 = 77;
/// `XEN_DOMCTL_psr_alloc`.
pub const XEN_DOMCTL_PSR_ALLOC: u32 = 78;
/// `XEN_DOMCTL_soft_reset`.
pub const XEN_DOMCTL_SOFT_RESET: u32 = 79;
/// `XEN_DOMCTL_vuart_op`.
pub const XEN_DOMCTL_VUART_OP: u32 = 81;
/// `XEN_DOMCTL_get_cpu_policy`.
pub const XEN_DOMCTL_GET_CPU_POLICY: u32 = 82;
/// `XEN_DOMCTL_set_cpu_policy`.
pub const XEN_DOMCTL_SET_CPU_POLICY: u32 = 83;
/// `XEN_DOMCTL_vmtrace_op`.
pub const XEN_DOMCTL_VMTRACE_OP: u32 = 84;
/// `XEN_DOMCTL_get_paging_mempool_size`.
pub const XEN_DOMCTL_GET_PAGING_MEMPOOL_SIZE: u32 = 85;
/// `XEN_DOMCTL_set_paging_mempool_size`.
pub const XEN_DOMCTL_SET_PAGING_MEMPOOL_SIZE: u32 = 86;
/// `XEN_DOMCTL_gdbsx_guestmemio`.
pub const XEN_DOMCTL_GDBSX_GUESTMEMIO: u32 = 1000;
/// `XEN_DOMCTL_gdbsx_pausevcpu`.
pub const XEN_DOMCTL_GDBSX_PAUSEVCPU: u32 = 1001;
/// `XEN_DOMCTL_gdbsx_unpausevcpu`.
pub const XEN_DOMCTL_GDBSX_UNPAUSEVCPU: u32 = 1002;
/// `XEN_DOMCTL_gdbsx_domstatus`.
pub const XEN_DOMCTL_GDBSX_DOMSTATUS: u32 = 1003;

/// `xen_domain_handle_t`: a domain's 16-byte handle (its UUID).
pub type XenDomainHandle = [u8; 16];

/// `XEN_DOMCTL_CDF_hvm`: an HVM (or PVH) domain.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `XEN_DOMCTL_CDF_hap`: use hardware-assisted paging.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `XEN_DOMCTL_CDF_s3_integrity`: tboot S3 integrity.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// `XEN_DOMCTL_CDF_oos_off`: disable out-of-sync shadow page tables.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// `XEN_DOMCTL_CDF_xs_domain`: the domain is the xenstore domain.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// `XEN_DOMCTL_CDF_iommu`: the domain uses an IOMMU.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// `XEN_DOMCTL_CDF_nested_virt`: nested virtualisation.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// `XEN_DOMCTL_CDF_vpmu`: virtual PMU.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// `XEN_DOMCTL_CDF_MAX`: the highest flag.
pub const XEN_DOMCTL_CDF_MAX: u32 = XEN_DOMCTL_CDF_VPMU;
/// `XEN_DOMCTL_IOMMU_no_sharept` in `iommu_opts`.
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1 << 0;
/// `XEN_DOMCTL_GRANT_version_mask`: the grant version bits of `grant_opts`.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;

/// `XEN_DOMCTL_GRANT_version(v)`: the `grant_opts` selecting max version `v`.
pub const fn xen_domctl_grant_version(v: u32) -> u32 {
    v & XEN_DOMCTL_GRANT_VERSION_MASK
}

/// `XEN_X86_EMU_LAPIC`: emulate a local APIC.
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// `XEN_X86_EMU_HPET`.
pub const XEN_X86_EMU_HPET: u32 = 1 << 1;
/// `XEN_X86_EMU_PM`: ACPI PM timer and registers.
pub const XEN_X86_EMU_PM: u32 = 1 << 2;
/// `XEN_X86_EMU_RTC`.
pub const XEN_X86_EMU_RTC: u32 = 1 << 3;
/// `XEN_X86_EMU_IOAPIC`.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// `XEN_X86_EMU_PIC`.
pub const XEN_X86_EMU_PIC: u32 = 1 << 5;
/// `XEN_X86_EMU_VGA`.
pub const XEN_X86_EMU_VGA: u32 = 1 << 6;
/// `XEN_X86_EMU_IOMMU`.
pub const XEN_X86_EMU_IOMMU: u32 = 1 << 7;
/// `XEN_X86_EMU_PIT`.
pub const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// `XEN_X86_EMU_USE_PIRQ`: route interrupts as PIRQs.
pub const XEN_X86_EMU_USE_PIRQ: u32 = 1 << 9;
/// `XEN_X86_EMU_VPCI`: virtual PCI (PVH dom0).
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;
/// `XEN_X86_EMU_ALL`: every emulated device (a full HVM guest).
pub const XEN_X86_EMU_ALL: u32 = XEN_X86_EMU_LAPIC
    | XEN_X86_EMU_HPET
    | XEN_X86_EMU_PM
    | XEN_X86_EMU_RTC
    | XEN_X86_EMU_IOAPIC
    | XEN_X86_EMU_PIC
    | XEN_X86_EMU_VGA
    | XEN_X86_EMU_IOMMU
    | XEN_X86_EMU_PIT
    | XEN_X86_EMU_USE_PIRQ
    | XEN_X86_EMU_VPCI;
/// `XEN_X86_MSR_RELAXED` in `misc_flags`: lenient MSR access policy.
pub const XEN_X86_MSR_RELAXED: u32 = 1 << 0;

/// `struct xen_arch_domainconfig` (x86).
///
/// A PVH guest sets `emulation_flags` to [`XEN_X86_EMU_LAPIC`] (Xen 4.17
/// rejects other combinations for PVH domUs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*`.
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_*`.
    pub misc_flags: u32,
}

/// `struct xen_domctl_createdomain`: payload of `XEN_DOMCTL_createdomain`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlCreatedomain {
    /// IN: XSM security label.
    pub ssidref: u32,
    /// IN: the domain's handle (UUID).
    pub handle: XenDomainHandle,
    /// IN: `XEN_DOMCTL_CDF_*`.
    pub flags: u32,
    /// IN: `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    /// IN: number of vCPUs.
    pub max_vcpus: u32,
    /// IN: highest event channel port.
    pub max_evtchn_port: u32,
    /// IN: grant table frames (-1: Xen's default).
    pub max_grant_frames: i32,
    /// IN: maptrack frames (-1: Xen's default).
    pub max_maptrack_frames: i32,
    /// IN: `XEN_DOMCTL_GRANT_version(v)` and future options.
    pub grant_opts: u32,
    /// IN: per-vCPU trace buffer size (0: none).
    pub vmtrace_size: u32,
    /// IN: CPU pool.
    pub cpupool_id: u32,
    /// IN: architecture configuration.
    pub arch: XenArchDomainconfig,
}

/// `XEN_DOMINF_dying`: the domain is being destroyed.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_hvm_guest`: an HVM/PVH guest.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `XEN_DOMINF_shutdown`: shut down; the reason is in the shutdown bits.
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused`: paused by the toolstack.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_blocked`: every vCPU is blocked.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `XEN_DOMINF_running`: some vCPU is running.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `XEN_DOMINF_debugged`: being debugged.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// `XEN_DOMINF_xs_domain`: the xenstore domain.
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// `XEN_DOMINF_hap`: uses hardware-assisted paging.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// `XEN_DOMINF_shutdownmask`: mask of the shutdown reason after shifting.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// `XEN_DOMINF_shutdownshift`: position of the shutdown reason in `flags`.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `XEN_INVALID_MAX_VCPU_ID`: `max_vcpu_id` of a domain without vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// `struct xen_domctl_getdomaininfo`: payload of `XEN_DOMCTL_getdomaininfo`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlGetdomaininfo {
    /// The domain (also echoed in `xen_domctl.domain`).
    pub domain: u16,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*`, with the shutdown reason at [`XEN_DOMINF_SHUTDOWNSHIFT`].
    pub flags: u32,
    /// Pages allocated.
    pub tot_pages: u64,
    /// Page limit.
    pub max_pages: u64,
    /// Pages claimed but not allocated.
    pub outstanding_pages: u64,
    /// Shared pages.
    pub shr_pages: u64,
    /// Paged-out pages.
    pub paged_pages: u64,
    /// GMFN of the shared-info page.
    pub shared_info_frame: u64,
    /// CPU time used, in ns.
    pub cpu_time: u64,
    /// vCPUs online.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id in use ([`XEN_INVALID_MAX_VCPU_ID`]: none).
    pub max_vcpu_id: u32,
    /// XSM security label.
    pub ssidref: u32,
    /// The domain's handle (UUID).
    pub handle: XenDomainHandle,
    /// CPU pool.
    pub cpupool: u32,
    /// Guest physical address width.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// The architecture configuration the domain was created with.
    pub arch_config: XenArchDomainconfig,
}

impl XenDomctlGetdomaininfo {
    /// The shutdown reason (`SHUTDOWN_*`, see [`super::sched::ShutdownReason`])
    /// if `XEN_DOMINF_shutdown` is set.
    pub const fn shutdown_reason(&self) -> Option<u32> {
        if self.flags & XEN_DOMINF_SHUTDOWN != 0 {
            Some((self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK)
        } else {
            None
        }
    }
}

/// `struct xen_domctl_max_mem`: payload of `XEN_DOMCTL_max_mem`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlMaxMem {
    /// IN: the limit in KiB.
    pub max_memkb: u64,
}

/// `struct xen_domctl_max_vcpus`: payload of `XEN_DOMCTL_max_vcpus`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlMaxVcpus {
    /// IN: number of vCPUs.
    pub max: u32,
}

/// `struct xen_domctl_hvmcontext`: payload of `XEN_DOMCTL_gethvmcontext` and
/// `XEN_DOMCTL_sethvmcontext`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlHvmcontext {
    /// IN: buffer size; OUT: bytes filled (or needed, with a null buffer).
    pub size: u32,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Guest address of the record stream (`XEN_GUEST_HANDLE_64(uint8)`).
    pub buffer: u64,
}

/// `XEN_CPUID_NO_SUBLEAF`: `subleaf` of a CPUID leaf that has none.
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;

/// `xen_cpuid_leaf_t` (`arch-x86/xen.h`): one serialised CPUID leaf of a
/// domain's policy.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenCpuidLeaf {
    /// The leaf (`eax` input).
    pub leaf: u32,
    /// The subleaf (`ecx` input), or [`XEN_CPUID_NO_SUBLEAF`].
    pub subleaf: u32,
    /// `eax` output.
    pub a: u32,
    /// `ebx` output.
    pub b: u32,
    /// `ecx` output.
    pub c: u32,
    /// `edx` output.
    pub d: u32,
}

/// `xen_msr_entry_t` (`arch-x86/xen.h`): one serialised MSR of a policy.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMsrEntry {
    /// The MSR index.
    pub idx: u32,
    /// Reserved, must be zero.
    pub flags: u32,
    /// The value.
    pub val: u64,
}

/// `struct xen_domctl_cpu_policy`: payload of `XEN_DOMCTL_get_cpu_policy`
/// and `XEN_DOMCTL_set_cpu_policy`.
///
/// `set` starts from the domain's current policy and overwrites only the
/// leaves and MSRs given; it is refused (`EEXIST`) once the domain has
/// run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenDomctlCpuPolicy {
    /// IN: entries at `cpuid_policy`; OUT: entries written (or, with a
    /// null buffer, the most Xen would write).
    pub nr_leaves: u32,
    /// IN/OUT: the same for `msr_policy`.
    pub nr_msrs: u32,
    /// Guest address of an array of [`XenCpuidLeaf`] (0: none); named
    /// `leaves` in Debian's 4.17.7 headers.
    pub cpuid_policy: u64,
    /// Guest address of an array of [`XenMsrEntry`] (0: none); `msrs` there.
    pub msr_policy: u64,
    /// OUT (set only): the leaf Xen's audit objected to.
    pub err_leaf: u32,
    /// OUT (set only): its subleaf.
    pub err_subleaf: u32,
    /// OUT (set only): the MSR Xen's audit objected to.
    pub err_msr: u32,
    /// Implicit C padding.
    pub _pad: u32,
}

/// Size of the `u` union of [`XenDomctl`] (its `pad[128]` member).
pub const XEN_DOMCTL_PAYLOAD_SIZE: usize = 128;

/// `struct xen_domctl`: the argument of every `__HYPERVISOR_domctl` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenDomctl {
    /// A `XEN_DOMCTL_*` command.
    pub cmd: u32,
    /// Must be [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The target domain.
    pub domain: u16,
    /// Padding.
    pub _pad: [u16; 3],
    /// The union `u`: the command's payload, zero-padded to 128 bytes.
    pub u: [u64; XEN_DOMCTL_PAYLOAD_SIZE / 8],
}

impl XenDomctl {
    /// A domctl for `cmd` on `domain` with an all-zero payload and the right
    /// interface version.
    pub const fn new(cmd: u32, domain: u16) -> Self {
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: [0; XEN_DOMCTL_PAYLOAD_SIZE / 8],
        }
    }

    /// A domctl carrying `payload` (one of the `XenDomctl*` structs).
    pub fn with_payload<T: IntoBytes + Immutable>(cmd: u32, domain: u16, payload: &T) -> Self {
        let mut d = Self::new(cmd, domain);
        d.set_payload(payload);
        d
    }

    /// Reads the union as `T` (one of the `XenDomctl*` structs).
    pub fn payload<T: FromBytes>(&self) -> T {
        const { assert!(core::mem::size_of::<T>() <= XEN_DOMCTL_PAYLOAD_SIZE) };
        match T::read_from_prefix(self.u.as_bytes()) {
            Ok((v, _)) => v,
            // Unreachable: the size is checked at compile time above.
            Err(_) => unreachable!("domctl payload larger than the union"),
        }
    }

    /// Writes `payload` at the start of the union and zeroes the rest.
    pub fn set_payload<T: IntoBytes + Immutable>(&mut self, payload: &T) {
        const { assert!(core::mem::size_of::<T>() <= XEN_DOMCTL_PAYLOAD_SIZE) };
        let bytes = payload.as_bytes();
        self.u = [0; XEN_DOMCTL_PAYLOAD_SIZE / 8];
        self.u.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_domctl_h() {
        assert_layout!(XenArchDomainconfig, size 8, align 4, emulation_flags @ 0, misc_flags @ 4);
        assert_layout!(XenDomctlCreatedomain, size 64, align 4,
            ssidref @ 0, handle @ 4, flags @ 20, iommu_opts @ 24, max_vcpus @ 28,
            max_evtchn_port @ 32, max_grant_frames @ 36, max_maptrack_frames @ 40,
            grant_opts @ 44, vmtrace_size @ 48, cpupool_id @ 52, arch @ 56);
        assert_layout!(XenDomctlGetdomaininfo, size 112, align 8,
            domain @ 0, pad1 @ 2, flags @ 4, tot_pages @ 8, max_pages @ 16,
            outstanding_pages @ 24, shr_pages @ 32, paged_pages @ 40, shared_info_frame @ 48,
            cpu_time @ 56, nr_online_vcpus @ 64, max_vcpu_id @ 68, ssidref @ 72, handle @ 76,
            cpupool @ 92, gpaddr_bits @ 96, pad2 @ 97, arch_config @ 104);
        assert_layout!(XenDomctlMaxMem, size 8, align 8, max_memkb @ 0);
        assert_layout!(XenDomctlMaxVcpus, size 4, align 4, max @ 0);
        assert_layout!(XenDomctlHvmcontext, size 16, align 8, size @ 0, buffer @ 8);
        assert_layout!(XenCpuidLeaf, size 24, align 4,
            leaf @ 0, subleaf @ 4, a @ 8, b @ 12, c @ 16, d @ 20);
        assert_layout!(XenMsrEntry, size 16, align 8, idx @ 0, flags @ 4, val @ 8);
        assert_layout!(XenDomctlCpuPolicy, size 40, align 8,
            nr_leaves @ 0, nr_msrs @ 4, cpuid_policy @ 8, msr_policy @ 16,
            err_leaf @ 24, err_subleaf @ 28, err_msr @ 32);
        assert_layout!(XenDomctl, size 144, align 8,
            cmd @ 0, interface_version @ 4, domain @ 8, _pad @ 10, u @ 16);
    }

    #[test]
    fn payload_round_trips() {
        let cd = XenDomctlCreatedomain {
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus: 1,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            grant_opts: xen_domctl_grant_version(1),
            arch: XenArchDomainconfig {
                emulation_flags: XEN_X86_EMU_LAPIC,
                misc_flags: 0,
            },
            ..Default::default()
        };
        let d = XenDomctl::with_payload(XEN_DOMCTL_CREATEDOMAIN, 0, &cd);
        assert_eq!(d.interface_version, 0x15);
        assert_eq!(d.payload::<XenDomctlCreatedomain>(), cd);
        // Bytes 16.. of the struct are the payload, the rest of the union zero.
        assert_eq!(&d.as_bytes()[16..80], cd.as_bytes());
        assert!(d.as_bytes()[80..].iter().all(|&b| b == 0));
    }

    #[test]
    fn shutdown_reason_from_flags() {
        let mut info = XenDomctlGetdomaininfo {
            flags: XEN_DOMINF_SHUTDOWN | (3 << XEN_DOMINF_SHUTDOWNSHIFT),
            ..Default::default()
        };
        assert_eq!(
            info.shutdown_reason(),
            Some(super::super::sched::SHUTDOWN_CRASH)
        );
        info.flags = XEN_DOMINF_RUNNING | (3 << XEN_DOMINF_SHUTDOWNSHIFT);
        assert_eq!(info.shutdown_reason(), None);
        assert_eq!(XEN_X86_EMU_ALL, 0x7ff);
    }
}
