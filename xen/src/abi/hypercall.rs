//! Hypercall numbers (`__HYPERVISOR_*` of `xen/include/public/xen.h`, Xen 4.17).
//!
//! Produced by the unikernel runtime (the only code that issues hypercalls),
//! consumed by Xen. On x86 a PVH guest calls entry `nr` of the hypercall page
//! at byte offset `nr * 32`:
//!
//! ```text
//! hypercall page: | 0: set_trap_table | 1: mmu_update | ... | 29: sched_op | ...
//!                   32 bytes each, 128 entries in one 4 KiB page
//! ```
//!
//! The `*_compat` numbers are what old guests (interface version < 3.1/3.2)
//! used; Windsor always uses the current ones.

/// `__HYPERVISOR_set_trap_table` (PV only).
pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
/// `__HYPERVISOR_mmu_update` (PV only).
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
/// `__HYPERVISOR_set_gdt` (PV only).
pub const HYPERVISOR_SET_GDT: u32 = 2;
/// `__HYPERVISOR_stack_switch` (PV only).
pub const HYPERVISOR_STACK_SWITCH: u32 = 3;
/// `__HYPERVISOR_set_callbacks` (PV only).
pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
/// `__HYPERVISOR_fpu_taskswitch` (PV only).
pub const HYPERVISOR_FPU_TASKSWITCH: u32 = 5;
/// `__HYPERVISOR_sched_op_compat`: the pre-3.1 scheduler op.
pub const HYPERVISOR_SCHED_OP_COMPAT: u32 = 6;
/// `__HYPERVISOR_platform_op` (formerly `dom0_op`).
pub const HYPERVISOR_PLATFORM_OP: u32 = 7;
/// `__HYPERVISOR_set_debugreg`.
pub const HYPERVISOR_SET_DEBUGREG: u32 = 8;
/// `__HYPERVISOR_get_debugreg`.
pub const HYPERVISOR_GET_DEBUGREG: u32 = 9;
/// `__HYPERVISOR_update_descriptor`.
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u32 = 10;
/// `__HYPERVISOR_memory_op`: see [`super::memory`].
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
/// `__HYPERVISOR_multicall`.
pub const HYPERVISOR_MULTICALL: u32 = 13;
/// `__HYPERVISOR_update_va_mapping` (PV only).
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
/// `__HYPERVISOR_set_timer_op`: one-shot timer at an absolute system time.
pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
/// `__HYPERVISOR_event_channel_op_compat`: the pre-3.2 event channel op.
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u32 = 16;
/// `__HYPERVISOR_xen_version`: see `XENVER_*` in [`super::xen`].
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
/// `__HYPERVISOR_console_io`: see [`super::console_io`].
pub const HYPERVISOR_CONSOLE_IO: u32 = 18;
/// `__HYPERVISOR_physdev_op_compat`.
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u32 = 19;
/// `__HYPERVISOR_grant_table_op`: see [`super::grant_table`].
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
/// `__HYPERVISOR_vm_assist`.
pub const HYPERVISOR_VM_ASSIST: u32 = 21;
/// `__HYPERVISOR_update_va_mapping_otherdomain` (PV only).
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u32 = 22;
/// `__HYPERVISOR_iret` (x86 PV only).
pub const HYPERVISOR_IRET: u32 = 23;
/// `__HYPERVISOR_vcpu_op`.
pub const HYPERVISOR_VCPU_OP: u32 = 24;
/// `__HYPERVISOR_set_segment_base` (x86-64 PV only).
pub const HYPERVISOR_SET_SEGMENT_BASE: u32 = 25;
/// `__HYPERVISOR_mmuext_op` (PV only).
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;
/// `__HYPERVISOR_xsm_op`.
pub const HYPERVISOR_XSM_OP: u32 = 27;
/// `__HYPERVISOR_nmi_op`.
pub const HYPERVISOR_NMI_OP: u32 = 28;
/// `__HYPERVISOR_sched_op`: see [`super::sched`].
pub const HYPERVISOR_SCHED_OP: u32 = 29;
/// `__HYPERVISOR_callback_op`.
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
/// `__HYPERVISOR_xenoprof_op`.
pub const HYPERVISOR_XENOPROF_OP: u32 = 31;
/// `__HYPERVISOR_event_channel_op`: see [`super::event_channel`].
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
/// `__HYPERVISOR_physdev_op`.
pub const HYPERVISOR_PHYSDEV_OP: u32 = 33;
/// `__HYPERVISOR_hvm_op`: see [`super::hvm`].
pub const HYPERVISOR_HVM_OP: u32 = 34;
/// `__HYPERVISOR_sysctl`.
pub const HYPERVISOR_SYSCTL: u32 = 35;
/// `__HYPERVISOR_domctl`: see [`super::domctl`].
pub const HYPERVISOR_DOMCTL: u32 = 36;
/// `__HYPERVISOR_kexec_op`.
pub const HYPERVISOR_KEXEC_OP: u32 = 37;
/// `__HYPERVISOR_tmem_op` (removed; always fails).
pub const HYPERVISOR_TMEM_OP: u32 = 38;
/// `__HYPERVISOR_argo_op`.
pub const HYPERVISOR_ARGO_OP: u32 = 39;
/// `__HYPERVISOR_xenpmu_op`.
pub const HYPERVISOR_XENPMU_OP: u32 = 40;
/// `__HYPERVISOR_dm_op`.
pub const HYPERVISOR_DM_OP: u32 = 41;
/// `__HYPERVISOR_hypfs_op`.
pub const HYPERVISOR_HYPFS_OP: u32 = 42;
/// `__HYPERVISOR_arch_0`: first of eight architecture-specific numbers.
pub const HYPERVISOR_ARCH_0: u32 = 48;
/// `__HYPERVISOR_arch_1` (on x86: `mca`).
pub const HYPERVISOR_ARCH_1: u32 = 49;
/// `__HYPERVISOR_arch_7`: last architecture-specific number.
pub const HYPERVISOR_ARCH_7: u32 = 55;

/// Size in bytes of one entry of the x86 hypercall page.
pub const HYPERCALL_PAGE_ENTRY_SIZE: usize = 32;

/// Byte offset of hypercall `nr` in the hypercall page.
pub const fn hypercall_page_offset(nr: u32) -> usize {
    nr as usize * HYPERCALL_PAGE_ENTRY_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen_h() {
        assert_eq!(HYPERVISOR_MEMORY_OP, 12);
        assert_eq!(HYPERVISOR_CONSOLE_IO, 18);
        assert_eq!(HYPERVISOR_GRANT_TABLE_OP, 20);
        assert_eq!(HYPERVISOR_SCHED_OP, 29);
        assert_eq!(HYPERVISOR_EVENT_CHANNEL_OP, 32);
        assert_eq!(HYPERVISOR_HVM_OP, 34);
        assert_eq!(HYPERVISOR_DOMCTL, 36);
        assert_eq!(hypercall_page_offset(HYPERVISOR_SCHED_OP), 928);
        // The page holds every number below 128.
        assert!(hypercall_page_offset(HYPERVISOR_ARCH_7) < 4096);
    }
}
