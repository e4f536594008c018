//! Differential layout test: the Rust mirrors in `xen::abi` against the real
//! Xen 4.17 public headers compiled by a C compiler.
//!
//! One table ([`checks`]) lists every struct (size, alignment, field offsets)
//! and every constant as a pair of a Rust value and a C expression. The test
//! writes one C file that prints all the C expressions, compiles it with one
//! `cc` invocation, runs it and compares line by line. A new struct is one
//! line of the `structs!` table.
//!
//! The headers come from Debian's `libxen-dev` (`/usr/include/xen`), which
//! `cargo xtask test` installs; `XEN_INCLUDE_DIR` points elsewhere (a
//! directory containing `xen/xen.h`). `__XEN_TOOLS__` is defined, as for the
//! toolstack: it selects the latest interface version and unlocks
//! `domctl.h` and `xen_arch_domainconfig`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use xen::abi;

/// One comparison: a value computed in Rust and the C expression that must
/// print the same number.
struct Check {
    rust: Value,
    c: String,
}

/// What a check compares: a number (printed by C as `long long`) or a string
/// (a C `const char *` expression, printed between brackets).
#[derive(Debug, PartialEq)]
enum Value {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Headers the C program includes, relative to the include directory.
const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/version.h",
    "xen/features.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/grant_table.h",
    "xen/memory.h",
    "xen/domctl.h",
    "xen/sysctl.h",
    "errno.h",
    "xen/io/xenbus.h",
    "xen/io/xs_wire.h",
    "xen/io/ring.h",
    "xen/io/libxenvchan.h",
    "xen/io/netif.h",
    "xen/io/blkif.h",
    "xen/io/console.h",
    "xen/elfnote.h",
    "xen/hvm/params.h",
    "xen/hvm/hvm_op.h",
    "xen/arch-x86/hvm/start_info.h",
];

/// `structs!(checks; RustType = "C type" { field, rust_field = "c_field", ... }; ...)`
macro_rules! structs {
    ($out:ident; $( $ty:ty = $cty:literal { $( $f:ident $(= $cf:literal)? ),* $(,)? } ; )*) => {
        $(
            $out.push(Check { rust: Value::Int(core::mem::size_of::<$ty>() as i64), c: format!("sizeof({})", $cty) });
            $out.push(Check { rust: Value::Int(core::mem::align_of::<$ty>() as i64), c: format!("_Alignof({})", $cty) });
            $(
                $out.push(Check {
                    rust: Value::Int(core::mem::offset_of!($ty, $f) as i64),
                    c: format!("offsetof({}, {})", $cty, structs!(@cname $f $($cf)?)),
                });
            )*
        )*
    };
    (@cname $f:ident $cf:literal) => { $cf };
    (@cname $f:ident) => { stringify!($f) };
}

/// `consts!(checks; rust_expr = "C_EXPR"; ...)`: values compared as `i64`.
macro_rules! consts {
    ($out:ident; $( $rust:expr => $c:expr ; )*) => {
        $( $out.push(Check { rust: Value::Int(($rust) as i64), c: String::from($c) }); )*
    };
}

/// `strings!(checks; rust_str = "C string expression"; ...)`.
macro_rules! strings {
    ($out:ident; $( $rust:expr => $c:expr ; )*) => {
        $( $out.push(Check { rust: Value::Str(String::from($rust)), c: String::from($c) }); )*
    };
}

/// Everything the test compares.
fn checks() -> Vec<Check> {
    let mut v = Vec::new();

    // ---- sched.h, hvm, start_info.h, xen.h ----
    structs!(v;
        abi::sched::SchedShutdown = "struct sched_shutdown" { reason };
        abi::sched::SchedPoll = "struct sched_poll" { ports, nr_ports, timeout };
        abi::sched::SchedRemoteShutdown = "struct sched_remote_shutdown" { domain_id, reason };
        abi::hvm::XenHvmParam = "struct xen_hvm_param" { domid, pad, index, value };
        abi::hvm::XenHvmEvtchnUpcallVector = "struct xen_hvm_evtchn_upcall_vector" { vcpu, vector };
        abi::hvm::HvmStartInfo = "struct hvm_start_info" {
            magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr,
            memmap_paddr, memmap_entries, reserved };
        abi::hvm::HvmModlistEntry = "struct hvm_modlist_entry" { paddr, size, cmdline_paddr, reserved };
        abi::hvm::HvmMemmapTableEntry = "struct hvm_memmap_table_entry" {
            addr, size, r#type = "type", reserved };
        abi::xen::VcpuTimeInfo = "struct vcpu_time_info" {
            version, pad0, tsc_timestamp, system_time, tsc_to_system_mul, tsc_shift, flags, pad1 };
        abi::xen::ArchVcpuInfo = "struct arch_vcpu_info" { cr2, pad };
        abi::xen::VcpuInfo = "struct vcpu_info" {
            evtchn_upcall_pending, evtchn_upcall_mask, evtchn_pending_sel, arch, time };
        abi::xen::ArchSharedInfo = "struct arch_shared_info" {
            max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation };
        abi::xen::SharedInfo = "struct shared_info" {
            vcpu_info, evtchn_pending, evtchn_mask, wc_version, wc_sec, wc_nsec, wc_sec_hi, arch };
        abi::xen::XenFeatureInfo = "struct xen_feature_info" { submap_idx, submap };
    );

    consts!(v;
        abi::hypercall::HYPERVISOR_SET_TRAP_TABLE => "__HYPERVISOR_set_trap_table";
        abi::hypercall::HYPERVISOR_MMU_UPDATE => "__HYPERVISOR_mmu_update";
        abi::hypercall::HYPERVISOR_SET_GDT => "__HYPERVISOR_set_gdt";
        abi::hypercall::HYPERVISOR_STACK_SWITCH => "__HYPERVISOR_stack_switch";
        abi::hypercall::HYPERVISOR_SET_CALLBACKS => "__HYPERVISOR_set_callbacks";
        abi::hypercall::HYPERVISOR_FPU_TASKSWITCH => "__HYPERVISOR_fpu_taskswitch";
        abi::hypercall::HYPERVISOR_SCHED_OP_COMPAT => "__HYPERVISOR_sched_op_compat";
        abi::hypercall::HYPERVISOR_PLATFORM_OP => "__HYPERVISOR_platform_op";
        abi::hypercall::HYPERVISOR_SET_DEBUGREG => "__HYPERVISOR_set_debugreg";
        abi::hypercall::HYPERVISOR_GET_DEBUGREG => "__HYPERVISOR_get_debugreg";
        abi::hypercall::HYPERVISOR_UPDATE_DESCRIPTOR => "__HYPERVISOR_update_descriptor";
        abi::hypercall::HYPERVISOR_MEMORY_OP => "__HYPERVISOR_memory_op";
        abi::hypercall::HYPERVISOR_MULTICALL => "__HYPERVISOR_multicall";
        abi::hypercall::HYPERVISOR_UPDATE_VA_MAPPING => "__HYPERVISOR_update_va_mapping";
        abi::hypercall::HYPERVISOR_SET_TIMER_OP => "__HYPERVISOR_set_timer_op";
        abi::hypercall::HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => "__HYPERVISOR_event_channel_op_compat";
        abi::hypercall::HYPERVISOR_XEN_VERSION => "__HYPERVISOR_xen_version";
        abi::hypercall::HYPERVISOR_CONSOLE_IO => "__HYPERVISOR_console_io";
        abi::hypercall::HYPERVISOR_PHYSDEV_OP_COMPAT => "__HYPERVISOR_physdev_op_compat";
        abi::hypercall::HYPERVISOR_GRANT_TABLE_OP => "__HYPERVISOR_grant_table_op";
        abi::hypercall::HYPERVISOR_VM_ASSIST => "__HYPERVISOR_vm_assist";
        abi::hypercall::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => "__HYPERVISOR_update_va_mapping_otherdomain";
        abi::hypercall::HYPERVISOR_IRET => "__HYPERVISOR_iret";
        abi::hypercall::HYPERVISOR_VCPU_OP => "__HYPERVISOR_vcpu_op";
        abi::hypercall::HYPERVISOR_SET_SEGMENT_BASE => "__HYPERVISOR_set_segment_base";
        abi::hypercall::HYPERVISOR_MMUEXT_OP => "__HYPERVISOR_mmuext_op";
        abi::hypercall::HYPERVISOR_XSM_OP => "__HYPERVISOR_xsm_op";
        abi::hypercall::HYPERVISOR_NMI_OP => "__HYPERVISOR_nmi_op";
        abi::hypercall::HYPERVISOR_SCHED_OP => "__HYPERVISOR_sched_op";
        abi::hypercall::HYPERVISOR_CALLBACK_OP => "__HYPERVISOR_callback_op";
        abi::hypercall::HYPERVISOR_XENOPROF_OP => "__HYPERVISOR_xenoprof_op";
        abi::hypercall::HYPERVISOR_EVENT_CHANNEL_OP => "__HYPERVISOR_event_channel_op";
        abi::hypercall::HYPERVISOR_PHYSDEV_OP => "__HYPERVISOR_physdev_op";
        abi::hypercall::HYPERVISOR_HVM_OP => "__HYPERVISOR_hvm_op";
        abi::hypercall::HYPERVISOR_SYSCTL => "__HYPERVISOR_sysctl";
        abi::hypercall::HYPERVISOR_DOMCTL => "__HYPERVISOR_domctl";
        abi::hypercall::HYPERVISOR_KEXEC_OP => "__HYPERVISOR_kexec_op";
        abi::hypercall::HYPERVISOR_TMEM_OP => "__HYPERVISOR_tmem_op";
        abi::hypercall::HYPERVISOR_ARGO_OP => "__HYPERVISOR_argo_op";
        abi::hypercall::HYPERVISOR_XENPMU_OP => "__HYPERVISOR_xenpmu_op";
        abi::hypercall::HYPERVISOR_DM_OP => "__HYPERVISOR_dm_op";
        abi::hypercall::HYPERVISOR_HYPFS_OP => "__HYPERVISOR_hypfs_op";
        abi::hypercall::HYPERVISOR_ARCH_0 => "__HYPERVISOR_arch_0";
        abi::hypercall::HYPERVISOR_ARCH_1 => "__HYPERVISOR_arch_1";
        abi::hypercall::HYPERVISOR_ARCH_7 => "__HYPERVISOR_arch_7";

        abi::sched::SCHEDOP_YIELD => "SCHEDOP_yield";
        abi::sched::SCHEDOP_BLOCK => "SCHEDOP_block";
        abi::sched::SCHEDOP_SHUTDOWN => "SCHEDOP_shutdown";
        abi::sched::SCHEDOP_POLL => "SCHEDOP_poll";
        abi::sched::SCHEDOP_REMOTE_SHUTDOWN => "SCHEDOP_remote_shutdown";
        abi::sched::SCHEDOP_SHUTDOWN_CODE => "SCHEDOP_shutdown_code";
        abi::sched::SCHEDOP_WATCHDOG => "SCHEDOP_watchdog";
        abi::sched::SCHEDOP_PIN_OVERRIDE => "SCHEDOP_pin_override";
        abi::sched::SHUTDOWN_POWEROFF => "SHUTDOWN_poweroff";
        abi::sched::SHUTDOWN_REBOOT => "SHUTDOWN_reboot";
        abi::sched::SHUTDOWN_SUSPEND => "SHUTDOWN_suspend";
        abi::sched::SHUTDOWN_CRASH => "SHUTDOWN_crash";
        abi::sched::SHUTDOWN_WATCHDOG => "SHUTDOWN_watchdog";
        abi::sched::SHUTDOWN_SOFT_RESET => "SHUTDOWN_soft_reset";
        abi::sched::SHUTDOWN_MAX => "SHUTDOWN_MAX";

        abi::console_io::CONSOLEIO_WRITE => "CONSOLEIO_write";
        abi::console_io::CONSOLEIO_READ => "CONSOLEIO_read";

        abi::elfnote::XEN_ELFNOTE_INFO => "XEN_ELFNOTE_INFO";
        abi::elfnote::XEN_ELFNOTE_ENTRY => "XEN_ELFNOTE_ENTRY";
        abi::elfnote::XEN_ELFNOTE_HYPERCALL_PAGE => "XEN_ELFNOTE_HYPERCALL_PAGE";
        abi::elfnote::XEN_ELFNOTE_VIRT_BASE => "XEN_ELFNOTE_VIRT_BASE";
        abi::elfnote::XEN_ELFNOTE_PADDR_OFFSET => "XEN_ELFNOTE_PADDR_OFFSET";
        abi::elfnote::XEN_ELFNOTE_XEN_VERSION => "XEN_ELFNOTE_XEN_VERSION";
        abi::elfnote::XEN_ELFNOTE_GUEST_OS => "XEN_ELFNOTE_GUEST_OS";
        abi::elfnote::XEN_ELFNOTE_GUEST_VERSION => "XEN_ELFNOTE_GUEST_VERSION";
        abi::elfnote::XEN_ELFNOTE_LOADER => "XEN_ELFNOTE_LOADER";
        abi::elfnote::XEN_ELFNOTE_PAE_MODE => "XEN_ELFNOTE_PAE_MODE";
        abi::elfnote::XEN_ELFNOTE_FEATURES => "XEN_ELFNOTE_FEATURES";
        abi::elfnote::XEN_ELFNOTE_BSD_SYMTAB => "XEN_ELFNOTE_BSD_SYMTAB";
        abi::elfnote::XEN_ELFNOTE_HV_START_LOW => "XEN_ELFNOTE_HV_START_LOW";
        abi::elfnote::XEN_ELFNOTE_L1_MFN_VALID => "XEN_ELFNOTE_L1_MFN_VALID";
        abi::elfnote::XEN_ELFNOTE_SUSPEND_CANCEL => "XEN_ELFNOTE_SUSPEND_CANCEL";
        abi::elfnote::XEN_ELFNOTE_INIT_P2M => "XEN_ELFNOTE_INIT_P2M";
        abi::elfnote::XEN_ELFNOTE_MOD_START_PFN => "XEN_ELFNOTE_MOD_START_PFN";
        abi::elfnote::XEN_ELFNOTE_SUPPORTED_FEATURES => "XEN_ELFNOTE_SUPPORTED_FEATURES";
        abi::elfnote::XEN_ELFNOTE_PHYS32_ENTRY => "XEN_ELFNOTE_PHYS32_ENTRY";
        abi::elfnote::XEN_ELFNOTE_MAX => "XEN_ELFNOTE_MAX";
        abi::elfnote::XEN_ELFNOTE_CRASH_INFO => "XEN_ELFNOTE_CRASH_INFO";
        abi::elfnote::XEN_ELFNOTE_CRASH_REGS => "XEN_ELFNOTE_CRASH_REGS";
        abi::elfnote::XEN_ELFNOTE_DUMPCORE_NONE => "XEN_ELFNOTE_DUMPCORE_NONE";
        abi::elfnote::XEN_ELFNOTE_DUMPCORE_HEADER => "XEN_ELFNOTE_DUMPCORE_HEADER";
        abi::elfnote::XEN_ELFNOTE_DUMPCORE_XEN_VERSION => "XEN_ELFNOTE_DUMPCORE_XEN_VERSION";
        abi::elfnote::XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION => "XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION";

        abi::hvm::HVMOP_SET_PARAM => "HVMOP_set_param";
        abi::hvm::HVMOP_GET_PARAM => "HVMOP_get_param";
        abi::hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => "HVMOP_set_evtchn_upcall_vector";
        abi::hvm::HVM_PARAM_CALLBACK_IRQ => "HVM_PARAM_CALLBACK_IRQ";
        abi::hvm::HVM_PARAM_CALLBACK_IRQ_TYPE_MASK => "HVM_PARAM_CALLBACK_IRQ_TYPE_MASK";
        abi::hvm::HVM_PARAM_CALLBACK_TYPE_GSI => "HVM_PARAM_CALLBACK_TYPE_GSI";
        abi::hvm::HVM_PARAM_CALLBACK_TYPE_PCI_INTX => "HVM_PARAM_CALLBACK_TYPE_PCI_INTX";
        abi::hvm::HVM_PARAM_CALLBACK_TYPE_VECTOR => "HVM_PARAM_CALLBACK_TYPE_VECTOR";
        abi::hvm::HVM_PARAM_STORE_PFN => "HVM_PARAM_STORE_PFN";
        abi::hvm::HVM_PARAM_STORE_EVTCHN => "HVM_PARAM_STORE_EVTCHN";
        abi::hvm::HVM_PARAM_PAE_ENABLED => "HVM_PARAM_PAE_ENABLED";
        abi::hvm::HVM_PARAM_IOREQ_PFN => "HVM_PARAM_IOREQ_PFN";
        abi::hvm::HVM_PARAM_BUFIOREQ_PFN => "HVM_PARAM_BUFIOREQ_PFN";
        abi::hvm::HVM_PARAM_VIRIDIAN => "HVM_PARAM_VIRIDIAN";
        abi::hvm::HVM_PARAM_TIMER_MODE => "HVM_PARAM_TIMER_MODE";
        abi::hvm::HVM_PARAM_HPET_ENABLED => "HVM_PARAM_HPET_ENABLED";
        abi::hvm::HVM_PARAM_IDENT_PT => "HVM_PARAM_IDENT_PT";
        abi::hvm::HVM_PARAM_DM_DOMAIN => "HVM_PARAM_DM_DOMAIN";
        abi::hvm::HVM_PARAM_ACPI_S_STATE => "HVM_PARAM_ACPI_S_STATE";
        abi::hvm::HVM_PARAM_VM86_TSS => "HVM_PARAM_VM86_TSS";
        abi::hvm::HVM_PARAM_VPT_ALIGN => "HVM_PARAM_VPT_ALIGN";
        abi::hvm::HVM_PARAM_CONSOLE_PFN => "HVM_PARAM_CONSOLE_PFN";
        abi::hvm::HVM_PARAM_CONSOLE_EVTCHN => "HVM_PARAM_CONSOLE_EVTCHN";
        abi::hvm::HVM_PARAM_ACPI_IOPORTS_LOCATION => "HVM_PARAM_ACPI_IOPORTS_LOCATION";
        abi::hvm::HVM_PARAM_NESTEDHVM => "HVM_PARAM_NESTEDHVM";
        abi::hvm::HVM_PARAM_BUFIOREQ_EVTCHN => "HVM_PARAM_BUFIOREQ_EVTCHN";
        abi::hvm::HVM_PARAM_PAGING_RING_PFN => "HVM_PARAM_PAGING_RING_PFN";
        abi::hvm::HVM_PARAM_MONITOR_RING_PFN => "HVM_PARAM_MONITOR_RING_PFN";
        abi::hvm::HVM_PARAM_SHARING_RING_PFN => "HVM_PARAM_SHARING_RING_PFN";
        abi::hvm::HVM_PARAM_TRIPLE_FAULT_REASON => "HVM_PARAM_TRIPLE_FAULT_REASON";
        abi::hvm::HVM_PARAM_IOREQ_SERVER_PFN => "HVM_PARAM_IOREQ_SERVER_PFN";
        abi::hvm::HVM_PARAM_NR_IOREQ_SERVER_PAGES => "HVM_PARAM_NR_IOREQ_SERVER_PAGES";
        abi::hvm::HVM_PARAM_VM_GENERATION_ID_ADDR => "HVM_PARAM_VM_GENERATION_ID_ADDR";
        abi::hvm::HVM_PARAM_ALTP2M => "HVM_PARAM_ALTP2M";
        abi::hvm::HVM_PARAM_X87_FIP_WIDTH => "HVM_PARAM_X87_FIP_WIDTH";
        abi::hvm::HVM_PARAM_VM86_TSS_SIZED => "HVM_PARAM_VM86_TSS_SIZED";
        abi::hvm::HVM_PARAM_MCA_CAP => "HVM_PARAM_MCA_CAP";
        abi::hvm::HVM_NR_PARAMS => "HVM_NR_PARAMS";
        abi::hvm::XEN_HVM_START_MAGIC_VALUE => "XEN_HVM_START_MAGIC_VALUE";
        abi::hvm::HvmMemmapType::Ram => "XEN_HVM_MEMMAP_TYPE_RAM";
        abi::hvm::HvmMemmapType::Reserved => "XEN_HVM_MEMMAP_TYPE_RESERVED";
        abi::hvm::HvmMemmapType::Acpi => "XEN_HVM_MEMMAP_TYPE_ACPI";
        abi::hvm::HvmMemmapType::Nvs => "XEN_HVM_MEMMAP_TYPE_NVS";
        abi::hvm::HvmMemmapType::Unusable => "XEN_HVM_MEMMAP_TYPE_UNUSABLE";
        abi::hvm::HvmMemmapType::Disabled => "XEN_HVM_MEMMAP_TYPE_DISABLED";
        abi::hvm::HvmMemmapType::Pmem => "XEN_HVM_MEMMAP_TYPE_PMEM";

        abi::xen::XEN_LEGACY_MAX_VCPUS => "XEN_LEGACY_MAX_VCPUS";
        abi::xen::EVTCHN_2L_NR_CHANNELS => "EVTCHN_2L_NR_CHANNELS";
        abi::xen::VIRQ_TIMER => "VIRQ_TIMER";
        abi::xen::VIRQ_DEBUG => "VIRQ_DEBUG";
        abi::xen::VIRQ_CONSOLE => "VIRQ_CONSOLE";
        abi::xen::VIRQ_DOM_EXC => "VIRQ_DOM_EXC";
        abi::xen::VIRQ_TBUF => "VIRQ_TBUF";
        abi::xen::VIRQ_DEBUGGER => "VIRQ_DEBUGGER";
        abi::xen::VIRQ_XENOPROF => "VIRQ_XENOPROF";
        abi::xen::VIRQ_CON_RING => "VIRQ_CON_RING";
        abi::xen::VIRQ_PCPU_STATE => "VIRQ_PCPU_STATE";
        abi::xen::VIRQ_MEM_EVENT => "VIRQ_MEM_EVENT";
        abi::xen::VIRQ_ARGO => "VIRQ_ARGO";
        abi::xen::VIRQ_ENOMEM => "VIRQ_ENOMEM";
        abi::xen::VIRQ_XENPMU => "VIRQ_XENPMU";
        abi::xen::VIRQ_ARCH_0 => "VIRQ_ARCH_0";
        abi::xen::VIRQ_ARCH_7 => "VIRQ_ARCH_7";
        abi::xen::NR_VIRQS => "NR_VIRQS";
        abi::xen::XENVER_VERSION => "XENVER_version";
        abi::xen::XENVER_EXTRAVERSION => "XENVER_extraversion";
        abi::xen::XENVER_COMPILE_INFO => "XENVER_compile_info";
        abi::xen::XENVER_CAPABILITIES => "XENVER_capabilities";
        abi::xen::XENVER_CHANGESET => "XENVER_changeset";
        abi::xen::XENVER_PLATFORM_PARAMETERS => "XENVER_platform_parameters";
        abi::xen::XENVER_GET_FEATURES => "XENVER_get_features";
        abi::xen::XENVER_PAGESIZE => "XENVER_pagesize";
        abi::xen::XENVER_GUEST_HANDLE => "XENVER_guest_handle";
        abi::xen::XENVER_COMMANDLINE => "XENVER_commandline";
        abi::xen::XENVER_BUILD_ID => "XENVER_build_id";
        abi::xen::XEN_EXTRAVERSION_LEN => "sizeof(xen_extraversion_t)";
        abi::xen::XENFEAT_WRITABLE_PAGE_TABLES => "XENFEAT_writable_page_tables";
        abi::xen::XENFEAT_AUTO_TRANSLATED_PHYSMAP => "XENFEAT_auto_translated_physmap";
        abi::xen::XENFEAT_HVM_CALLBACK_VECTOR => "XENFEAT_hvm_callback_vector";
        abi::xen::XENFEAT_HVM_SAFE_PVCLOCK => "XENFEAT_hvm_safe_pvclock";
        abi::xen::XENFEAT_DOM0 => "XENFEAT_dom0";
        abi::xen::XENFEAT_NR_SUBMAPS => "XENFEAT_NR_SUBMAPS";
        abi::xen::SIF_PRIVILEGED => "SIF_PRIVILEGED";
        abi::xen::SIF_INITDOMAIN => "SIF_INITDOMAIN";
        abi::xen::SIF_MULTIBOOT_MOD => "SIF_MULTIBOOT_MOD";
        abi::xen::SIF_MOD_START_PFN => "SIF_MOD_START_PFN";
        abi::xen::SIF_VIRT_P2M_4TOOLS => "SIF_VIRT_P2M_4TOOLS";
        abi::xen::SIF_PM_MASK => "SIF_PM_MASK";
        abi::xen::XEN_PVCLOCK_TSC_STABLE_BIT => "XEN_PVCLOCK_TSC_STABLE_BIT";
        abi::xen::XEN_PVCLOCK_GUEST_STOPPED => "XEN_PVCLOCK_GUEST_STOPPED";
        xen::DomId::SELF.0 => "DOMID_SELF";
        xen::DomId::INVALID.0 => "DOMID_INVALID";
        xen::DomId::IDLE.0 => "DOMID_IDLE";
    );

    // ---- event_channel.h ----
    structs!(v;
        abi::event_channel::EvtchnAllocUnbound = "struct evtchn_alloc_unbound" { dom, remote_dom, port };
        abi::event_channel::EvtchnBindInterdomain = "struct evtchn_bind_interdomain" {
            remote_dom, remote_port, local_port };
        abi::event_channel::EvtchnBindVirq = "struct evtchn_bind_virq" { virq, vcpu, port };
        abi::event_channel::EvtchnBindPirq = "struct evtchn_bind_pirq" { pirq, flags, port };
        abi::event_channel::EvtchnBindIpi = "struct evtchn_bind_ipi" { vcpu, port };
        abi::event_channel::EvtchnClose = "struct evtchn_close" { port };
        abi::event_channel::EvtchnSend = "struct evtchn_send" { port };
        abi::event_channel::EvtchnStatus = "struct evtchn_status" { dom, port, status, vcpu, u };
        abi::event_channel::EvtchnBindVcpu = "struct evtchn_bind_vcpu" { port, vcpu };
        abi::event_channel::EvtchnUnmask = "struct evtchn_unmask" { port };
        abi::event_channel::EvtchnReset = "struct evtchn_reset" { dom };
        abi::event_channel::EvtchnInitControl = "struct evtchn_init_control" {
            control_gfn, offset, vcpu, link_bits, _pad };
        abi::event_channel::EvtchnExpandArray = "struct evtchn_expand_array" { array_gfn };
        abi::event_channel::EvtchnSetPriority = "struct evtchn_set_priority" { port, priority };
        abi::event_channel::EvtchnOp = "struct evtchn_op" { cmd, u };
        abi::event_channel::EvtchnFifoControlBlock = "struct evtchn_fifo_control_block" {
            ready, _rsvd, head };
    );
    consts!(v;
        20 => "offsetof(struct evtchn_status, u.interdomain.port)";
        abi::event_channel::EVTCHN_OP_UNION_SIZE => "sizeof(((struct evtchn_op *)0)->u)";
        abi::event_channel::EVTCHNOP_BIND_INTERDOMAIN => "EVTCHNOP_bind_interdomain";
        abi::event_channel::EVTCHNOP_BIND_VIRQ => "EVTCHNOP_bind_virq";
        abi::event_channel::EVTCHNOP_BIND_PIRQ => "EVTCHNOP_bind_pirq";
        abi::event_channel::EVTCHNOP_CLOSE => "EVTCHNOP_close";
        abi::event_channel::EVTCHNOP_SEND => "EVTCHNOP_send";
        abi::event_channel::EVTCHNOP_STATUS => "EVTCHNOP_status";
        abi::event_channel::EVTCHNOP_ALLOC_UNBOUND => "EVTCHNOP_alloc_unbound";
        abi::event_channel::EVTCHNOP_BIND_IPI => "EVTCHNOP_bind_ipi";
        abi::event_channel::EVTCHNOP_BIND_VCPU => "EVTCHNOP_bind_vcpu";
        abi::event_channel::EVTCHNOP_UNMASK => "EVTCHNOP_unmask";
        abi::event_channel::EVTCHNOP_RESET => "EVTCHNOP_reset";
        abi::event_channel::EVTCHNOP_INIT_CONTROL => "EVTCHNOP_init_control";
        abi::event_channel::EVTCHNOP_EXPAND_ARRAY => "EVTCHNOP_expand_array";
        abi::event_channel::EVTCHNOP_SET_PRIORITY => "EVTCHNOP_set_priority";
        abi::event_channel::BIND_PIRQ_WILL_SHARE => "BIND_PIRQ__WILL_SHARE";
        abi::event_channel::EvtchnStat::Closed => "EVTCHNSTAT_closed";
        abi::event_channel::EvtchnStat::Unbound => "EVTCHNSTAT_unbound";
        abi::event_channel::EvtchnStat::Interdomain => "EVTCHNSTAT_interdomain";
        abi::event_channel::EvtchnStat::Pirq => "EVTCHNSTAT_pirq";
        abi::event_channel::EvtchnStat::Virq => "EVTCHNSTAT_virq";
        abi::event_channel::EvtchnStat::Ipi => "EVTCHNSTAT_ipi";
        abi::event_channel::EVTCHN_FIFO_PRIORITY_MAX => "EVTCHN_FIFO_PRIORITY_MAX";
        abi::event_channel::EVTCHN_FIFO_PRIORITY_DEFAULT => "EVTCHN_FIFO_PRIORITY_DEFAULT";
        abi::event_channel::EVTCHN_FIFO_PRIORITY_MIN => "EVTCHN_FIFO_PRIORITY_MIN";
        abi::event_channel::EVTCHN_FIFO_MAX_QUEUES => "EVTCHN_FIFO_MAX_QUEUES";
        abi::event_channel::EVTCHN_FIFO_PENDING => "EVTCHN_FIFO_PENDING";
        abi::event_channel::EVTCHN_FIFO_MASKED => "EVTCHN_FIFO_MASKED";
        abi::event_channel::EVTCHN_FIFO_LINKED => "EVTCHN_FIFO_LINKED";
        abi::event_channel::EVTCHN_FIFO_BUSY => "EVTCHN_FIFO_BUSY";
        abi::event_channel::EVTCHN_FIFO_LINK_BITS => "EVTCHN_FIFO_LINK_BITS";
        abi::event_channel::EVTCHN_FIFO_LINK_MASK => "EVTCHN_FIFO_LINK_MASK";
        abi::event_channel::EVTCHN_FIFO_NR_CHANNELS => "EVTCHN_FIFO_NR_CHANNELS";
    );

    // ---- grant_table.h ----
    structs!(v;
        abi::grant_table::GrantEntryV1 = "struct grant_entry_v1" { flags, domid, frame };
        abi::grant_table::GnttabMapGrantRef = "struct gnttab_map_grant_ref" {
            host_addr, flags, r#ref = "ref", dom, status, handle, dev_bus_addr };
        abi::grant_table::GnttabUnmapGrantRef = "struct gnttab_unmap_grant_ref" {
            host_addr, dev_bus_addr, handle, status };
        abi::grant_table::GnttabSetupTable = "struct gnttab_setup_table" {
            dom, nr_frames, status, frame_list };
        abi::grant_table::GnttabDumpTable = "struct gnttab_dump_table" { dom, status };
        abi::grant_table::GnttabTransfer = "struct gnttab_transfer" {
            mfn, domid, r#ref = "ref", status };
        abi::grant_table::GnttabCopyPtr = "struct gnttab_copy_ptr" { u, domid, offset };
        abi::grant_table::GnttabCopy = "struct gnttab_copy" { source, dest, len, flags, status };
        abi::grant_table::GnttabQuerySize = "struct gnttab_query_size" {
            dom, nr_frames, max_nr_frames, status };
        abi::grant_table::GnttabUnmapAndReplace = "struct gnttab_unmap_and_replace" {
            host_addr, new_addr, handle, status };
        abi::grant_table::GnttabSetVersion = "struct gnttab_set_version" { version };
        abi::grant_table::GnttabGetVersion = "struct gnttab_get_version" { dom, pad, version };
    );
    consts!(v;
        0 => "offsetof(struct gnttab_copy_ptr, u.ref)";
        0 => "offsetof(struct gnttab_copy_ptr, u.gmfn)";
        abi::grant_table::GNTTAB_NR_RESERVED_ENTRIES => "GNTTAB_NR_RESERVED_ENTRIES";
        abi::grant_table::GNTTAB_RESERVED_CONSOLE => "GNTTAB_RESERVED_CONSOLE";
        abi::grant_table::GNTTAB_RESERVED_XENSTORE => "GNTTAB_RESERVED_XENSTORE";
        xen::GrantRef::RESERVED_CONSOLE.0 => "GNTTAB_RESERVED_CONSOLE";
        xen::GrantRef::RESERVED_XENSTORE.0 => "GNTTAB_RESERVED_XENSTORE";
        xen::GrantRef::FIRST_FREE.0 => "GNTTAB_NR_RESERVED_ENTRIES";
        abi::grant_table::GTF_INVALID => "GTF_invalid";
        abi::grant_table::GTF_PERMIT_ACCESS => "GTF_permit_access";
        abi::grant_table::GTF_ACCEPT_TRANSFER => "GTF_accept_transfer";
        abi::grant_table::GTF_TRANSITIVE => "GTF_transitive";
        abi::grant_table::GTF_TYPE_MASK => "GTF_type_mask";
        abi::grant_table::GTF_READONLY => "GTF_readonly";
        abi::grant_table::GTF_READING => "GTF_reading";
        abi::grant_table::GTF_WRITING => "GTF_writing";
        abi::grant_table::GTF_PWT => "GTF_PWT";
        abi::grant_table::GTF_PCD => "GTF_PCD";
        abi::grant_table::GTF_PAT => "GTF_PAT";
        abi::grant_table::GTF_SUB_PAGE => "GTF_sub_page";
        abi::grant_table::GTF_TRANSFER_COMMITTED => "GTF_transfer_committed";
        abi::grant_table::GTF_TRANSFER_COMPLETED => "GTF_transfer_completed";
        abi::grant_table::GNTTABOP_MAP_GRANT_REF => "GNTTABOP_map_grant_ref";
        abi::grant_table::GNTTABOP_UNMAP_GRANT_REF => "GNTTABOP_unmap_grant_ref";
        abi::grant_table::GNTTABOP_SETUP_TABLE => "GNTTABOP_setup_table";
        abi::grant_table::GNTTABOP_DUMP_TABLE => "GNTTABOP_dump_table";
        abi::grant_table::GNTTABOP_TRANSFER => "GNTTABOP_transfer";
        abi::grant_table::GNTTABOP_COPY => "GNTTABOP_copy";
        abi::grant_table::GNTTABOP_QUERY_SIZE => "GNTTABOP_query_size";
        abi::grant_table::GNTTABOP_UNMAP_AND_REPLACE => "GNTTABOP_unmap_and_replace";
        abi::grant_table::GNTTABOP_SET_VERSION => "GNTTABOP_set_version";
        abi::grant_table::GNTTABOP_GET_STATUS_FRAMES => "GNTTABOP_get_status_frames";
        abi::grant_table::GNTTABOP_GET_VERSION => "GNTTABOP_get_version";
        abi::grant_table::GNTTABOP_SWAP_GRANT_REF => "GNTTABOP_swap_grant_ref";
        abi::grant_table::GNTTABOP_CACHE_FLUSH => "GNTTABOP_cache_flush";
        abi::grant_table::GNTMAP_DEVICE_MAP => "GNTMAP_device_map";
        abi::grant_table::GNTMAP_HOST_MAP => "GNTMAP_host_map";
        abi::grant_table::GNTMAP_READONLY => "GNTMAP_readonly";
        abi::grant_table::GNTMAP_APPLICATION_MAP => "GNTMAP_application_map";
        abi::grant_table::GNTMAP_CONTAINS_PTE => "GNTMAP_contains_pte";
        abi::grant_table::GNTMAP_GUEST_AVAIL_MASK => "GNTMAP_guest_avail_mask";
        abi::grant_table::GNTCOPY_SOURCE_GREF => "GNTCOPY_source_gref";
        abi::grant_table::GNTCOPY_DEST_GREF => "GNTCOPY_dest_gref";
        abi::grant_table::GNTST_OKAY => "GNTST_okay";
        abi::grant_table::GNTST_GENERAL_ERROR => "GNTST_general_error";
        abi::grant_table::GNTST_BAD_DOMAIN => "GNTST_bad_domain";
        abi::grant_table::GNTST_BAD_GNTREF => "GNTST_bad_gntref";
        abi::grant_table::GNTST_BAD_HANDLE => "GNTST_bad_handle";
        abi::grant_table::GNTST_BAD_VIRT_ADDR => "GNTST_bad_virt_addr";
        abi::grant_table::GNTST_BAD_DEV_ADDR => "GNTST_bad_dev_addr";
        abi::grant_table::GNTST_NO_DEVICE_SPACE => "GNTST_no_device_space";
        abi::grant_table::GNTST_PERMISSION_DENIED => "GNTST_permission_denied";
        abi::grant_table::GNTST_BAD_PAGE => "GNTST_bad_page";
        abi::grant_table::GNTST_BAD_COPY_ARG => "GNTST_bad_copy_arg";
        abi::grant_table::GNTST_ADDRESS_TOO_BIG => "GNTST_address_too_big";
        abi::grant_table::GNTST_EAGAIN => "GNTST_eagain";
        abi::grant_table::GNTST_NO_SPACE => "GNTST_no_space";
        xen::platform::GrantStatus::GeneralError => "GNTST_general_error";
        xen::platform::GrantStatus::BadDomain => "GNTST_bad_domain";
        xen::platform::GrantStatus::BadGntref => "GNTST_bad_gntref";
        xen::platform::GrantStatus::BadHandle => "GNTST_bad_handle";
        xen::platform::GrantStatus::BadVirtAddr => "GNTST_bad_virt_addr";
        xen::platform::GrantStatus::BadDevAddr => "GNTST_bad_dev_addr";
        xen::platform::GrantStatus::NoDeviceSpace => "GNTST_no_device_space";
        xen::platform::GrantStatus::PermissionDenied => "GNTST_permission_denied";
        xen::platform::GrantStatus::BadPage => "GNTST_bad_page";
        xen::platform::GrantStatus::BadCopyArg => "GNTST_bad_copy_arg";
        xen::platform::GrantStatus::AddressTooBig => "GNTST_address_too_big";
        xen::platform::GrantStatus::Eagain => "GNTST_eagain";
        xen::platform::GrantStatus::NoSpace => "GNTST_no_space";
        abi::grant_table::GNTTABOP_ERROR_MSGS.len() => "sizeof((const char *[])GNTTABOP_error_msgs) / sizeof(char *)";
    );
    for (i, msg) in abi::grant_table::GNTTABOP_ERROR_MSGS.iter().enumerate() {
        strings!(v; *msg => format!("((const char *[])GNTTABOP_error_msgs)[{i}]"););
    }

    // ---- memory.h ----
    structs!(v;
        abi::memory::XenMemoryReservation = "struct xen_memory_reservation" {
            extent_start, nr_extents, extent_order, mem_flags, domid };
        abi::memory::XenMemoryExchange = "struct xen_memory_exchange" { r#in = "in", out, nr_exchanged };
        abi::memory::XenAddToPhysmap = "struct xen_add_to_physmap" { domid, size, space, idx, gpfn };
        abi::memory::XenAddToPhysmapBatch = "struct xen_add_to_physmap_batch" {
            domid, space, size, foreign_domid = "u.foreign_domid", idxs, gpfns, errs };
        abi::memory::XenRemoveFromPhysmap = "struct xen_remove_from_physmap" { domid, gpfn };
        abi::memory::XenMemoryMap = "struct xen_memory_map" { nr_entries, buffer };
        abi::memory::XenForeignMemoryMap = "struct xen_foreign_memory_map" { domid, map };
    );
    consts!(v;
        abi::memory::XENMEM_INCREASE_RESERVATION => "XENMEM_increase_reservation";
        abi::memory::XENMEM_DECREASE_RESERVATION => "XENMEM_decrease_reservation";
        abi::memory::XENMEM_MAXIMUM_RAM_PAGE => "XENMEM_maximum_ram_page";
        abi::memory::XENMEM_CURRENT_RESERVATION => "XENMEM_current_reservation";
        abi::memory::XENMEM_MAXIMUM_RESERVATION => "XENMEM_maximum_reservation";
        abi::memory::XENMEM_MACHPHYS_MFN_LIST => "XENMEM_machphys_mfn_list";
        abi::memory::XENMEM_POPULATE_PHYSMAP => "XENMEM_populate_physmap";
        abi::memory::XENMEM_ADD_TO_PHYSMAP => "XENMEM_add_to_physmap";
        abi::memory::XENMEM_MEMORY_MAP => "XENMEM_memory_map";
        abi::memory::XENMEM_MACHINE_MEMORY_MAP => "XENMEM_machine_memory_map";
        abi::memory::XENMEM_EXCHANGE => "XENMEM_exchange";
        abi::memory::XENMEM_MACHPHYS_MAPPING => "XENMEM_machphys_mapping";
        abi::memory::XENMEM_SET_MEMORY_MAP => "XENMEM_set_memory_map";
        abi::memory::XENMEM_MAXIMUM_GPFN => "XENMEM_maximum_gpfn";
        abi::memory::XENMEM_REMOVE_FROM_PHYSMAP => "XENMEM_remove_from_physmap";
        abi::memory::XENMEM_SET_POD_TARGET => "XENMEM_set_pod_target";
        abi::memory::XENMEM_GET_POD_TARGET => "XENMEM_get_pod_target";
        abi::memory::XENMEM_ADD_TO_PHYSMAP_BATCH => "XENMEM_add_to_physmap_batch";
        abi::memory::XENMEM_CLAIM_PAGES => "XENMEM_claim_pages";
        abi::memory::XENMEM_MACHPHYS_COMPAT_MFN_LIST => "XENMEM_machphys_compat_mfn_list";
        abi::memory::XENMEM_GET_VNUMAINFO => "XENMEM_get_vnumainfo";
        abi::memory::XENMEM_RESERVED_DEVICE_MEMORY_MAP => "XENMEM_reserved_device_memory_map";
        abi::memory::XENMEM_ACQUIRE_RESOURCE => "XENMEM_acquire_resource";
        abi::memory::XENMEMF_POPULATE_ON_DEMAND => "XENMEMF_populate_on_demand";
        abi::memory::XENMEMF_EXACT_NODE_REQUEST => "XENMEMF_exact_node_request";
        abi::memory::XENMEMF_VNODE => "XENMEMF_vnode";
        abi::memory::xenmemf_address_bits(32) => "XENMEMF_address_bits(32)";
        abi::memory::xenmemf_node(3) => "XENMEMF_node(3)";
        abi::memory::MapSpace::SharedInfo => "XENMAPSPACE_shared_info";
        abi::memory::MapSpace::GrantTable => "XENMAPSPACE_grant_table";
        abi::memory::MapSpace::Gmfn => "XENMAPSPACE_gmfn";
        abi::memory::MapSpace::GmfnRange => "XENMAPSPACE_gmfn_range";
        abi::memory::MapSpace::GmfnForeign => "XENMAPSPACE_gmfn_foreign";
        abi::memory::MapSpace::DevMmio => "XENMAPSPACE_dev_mmio";
        abi::memory::XENMAPIDX_GRANT_TABLE_STATUS => "XENMAPIDX_grant_table_status";
        abi::memory::E820_RAM => "XEN_HVM_MEMMAP_TYPE_RAM";
        abi::memory::E820_RESERVED => "XEN_HVM_MEMMAP_TYPE_RESERVED";
        abi::memory::E820_ACPI => "XEN_HVM_MEMMAP_TYPE_ACPI";
        abi::memory::E820_NVS => "XEN_HVM_MEMMAP_TYPE_NVS";
        abi::memory::E820_UNUSABLE => "XEN_HVM_MEMMAP_TYPE_UNUSABLE";
    );

    // ---- domctl.h, arch-x86/xen.h, hvm/save.h ----
    structs!(v;
        abi::domctl::XenArchDomainconfig = "struct xen_arch_domainconfig" { emulation_flags, misc_flags };
        abi::domctl::XenDomctlCreatedomain = "struct xen_domctl_createdomain" {
            ssidref, handle, flags, iommu_opts, max_vcpus, max_evtchn_port, max_grant_frames,
            max_maptrack_frames, grant_opts, vmtrace_size, cpupool_id, arch };
        abi::domctl::XenDomctlGetdomaininfo = "struct xen_domctl_getdomaininfo" {
            domain, pad1, flags, tot_pages, max_pages, outstanding_pages, shr_pages, paged_pages,
            shared_info_frame, cpu_time, nr_online_vcpus, max_vcpu_id, ssidref, handle, cpupool,
            gpaddr_bits, pad2, arch_config };
        abi::domctl::XenDomctlMaxMem = "struct xen_domctl_max_mem" { max_memkb };
        abi::domctl::XenDomctlMaxVcpus = "struct xen_domctl_max_vcpus" { max };
        abi::domctl::XenDomctlHvmcontext = "struct xen_domctl_hvmcontext" { size, buffer };
        abi::domctl::XenDomctl = "struct xen_domctl" { cmd, interface_version, domain, _pad, u };
        abi::domctl::XenCpuidLeaf = "xen_cpuid_leaf_t" { leaf, subleaf, a, b, c, d };
        abi::domctl::XenMsrEntry = "xen_msr_entry_t" { idx, flags, val };
        abi::domctl::XenDomctlCpuPolicy = "struct xen_domctl_cpu_policy" {
            nr_leaves, nr_msrs, cpuid_policy = "leaves", msr_policy = "msrs", err_leaf, err_subleaf,
            err_msr };
        abi::sysctl::XenSysctlCpuPolicy = "struct xen_sysctl_cpu_policy" {
            index, nr_leaves, nr_msrs, _rsvd, leaves, msrs };
        abi::sysctl::XenSysctl = "struct xen_sysctl" { cmd, interface_version, u };
        abi::hvm_save::HvmSaveDescriptor = "struct hvm_save_descriptor" { typecode, instance, length };
        abi::hvm_save::HvmSaveHeader = "struct hvm_save_header" {
            magic, version, changeset, cpuid, gtsc_khz };
        abi::hvm_save::HvmHwCpu = "struct hvm_hw_cpu" {
            fpu_regs, rax, rbx, rcx, rdx, rbp, rsi, rdi,
            rsp, r8, r9, r10, r11, r12, r13, r14,
            r15, rip, rflags, cr0, cr2, cr3, cr4, dr0,
            dr1, dr2, dr3, dr6, dr7, cs_sel, ds_sel, es_sel,
            fs_sel, gs_sel, ss_sel, tr_sel, ldtr_sel, cs_limit, ds_limit, es_limit,
            fs_limit, gs_limit, ss_limit, tr_limit, ldtr_limit, idtr_limit, gdtr_limit, cs_base,
            ds_base, es_base, fs_base, gs_base, ss_base, tr_base, ldtr_base, idtr_base,
            gdtr_base, cs_arbytes, ds_arbytes, es_arbytes, fs_arbytes, gs_arbytes, ss_arbytes, tr_arbytes,
            ldtr_arbytes, sysenter_cs, sysenter_esp, sysenter_eip, shadow_gs, msr_flags, msr_lstar, msr_star,
            msr_cstar, msr_syscall_mask, msr_efer, msr_tsc_aux, tsc, pending_event, error_code, flags,
            pad0 };
    );
    consts!(v;
        abi::domctl::XEN_DOMCTL_PAYLOAD_SIZE => "sizeof(((struct xen_domctl *)0)->u)";
        16 => "offsetof(struct xen_domctl, u.createdomain)";
        std::mem::size_of::<abi::domctl::XenDomainHandle>() => "sizeof(xen_domain_handle_t)";
        abi::domctl::XEN_DOMCTL_INTERFACE_VERSION => "XEN_DOMCTL_INTERFACE_VERSION";
        abi::domctl::XEN_DOMCTL_CREATEDOMAIN => "XEN_DOMCTL_createdomain";
        abi::domctl::XEN_DOMCTL_DESTROYDOMAIN => "XEN_DOMCTL_destroydomain";
        abi::domctl::XEN_DOMCTL_PAUSEDOMAIN => "XEN_DOMCTL_pausedomain";
        abi::domctl::XEN_DOMCTL_UNPAUSEDOMAIN => "XEN_DOMCTL_unpausedomain";
        abi::domctl::XEN_DOMCTL_GETDOMAININFO => "XEN_DOMCTL_getdomaininfo";
        abi::domctl::XEN_DOMCTL_SETVCPUAFFINITY => "XEN_DOMCTL_setvcpuaffinity";
        abi::domctl::XEN_DOMCTL_SHADOW_OP => "XEN_DOMCTL_shadow_op";
        abi::domctl::XEN_DOMCTL_MAX_MEM => "XEN_DOMCTL_max_mem";
        abi::domctl::XEN_DOMCTL_SETVCPUCONTEXT => "XEN_DOMCTL_setvcpucontext";
        abi::domctl::XEN_DOMCTL_GETVCPUCONTEXT => "XEN_DOMCTL_getvcpucontext";
        abi::domctl::XEN_DOMCTL_GETVCPUINFO => "XEN_DOMCTL_getvcpuinfo";
        abi::domctl::XEN_DOMCTL_MAX_VCPUS => "XEN_DOMCTL_max_vcpus";
        abi::domctl::XEN_DOMCTL_SCHEDULER_OP => "XEN_DOMCTL_scheduler_op";
        abi::domctl::XEN_DOMCTL_SETDOMAINHANDLE => "XEN_DOMCTL_setdomainhandle";
        abi::domctl::XEN_DOMCTL_SETDEBUGGING => "XEN_DOMCTL_setdebugging";
        abi::domctl::XEN_DOMCTL_IRQ_PERMISSION => "XEN_DOMCTL_irq_permission";
        abi::domctl::XEN_DOMCTL_IOMEM_PERMISSION => "XEN_DOMCTL_iomem_permission";
        abi::domctl::XEN_DOMCTL_IOPORT_PERMISSION => "XEN_DOMCTL_ioport_permission";
        abi::domctl::XEN_DOMCTL_HYPERCALL_INIT => "XEN_DOMCTL_hypercall_init";
        abi::domctl::XEN_DOMCTL_SETTIMEOFFSET => "XEN_DOMCTL_settimeoffset";
        abi::domctl::XEN_DOMCTL_GETVCPUAFFINITY => "XEN_DOMCTL_getvcpuaffinity";
        abi::domctl::XEN_DOMCTL_REAL_MODE_AREA => "XEN_DOMCTL_real_mode_area";
        abi::domctl::XEN_DOMCTL_RESUMEDOMAIN => "XEN_DOMCTL_resumedomain";
        abi::domctl::XEN_DOMCTL_SENDTRIGGER => "XEN_DOMCTL_sendtrigger";
        abi::domctl::XEN_DOMCTL_SUBSCRIBE => "XEN_DOMCTL_subscribe";
        abi::domctl::XEN_DOMCTL_GETHVMCONTEXT => "XEN_DOMCTL_gethvmcontext";
        abi::domctl::XEN_DOMCTL_SETHVMCONTEXT => "XEN_DOMCTL_sethvmcontext";
        abi::domctl::XEN_DOMCTL_SET_ADDRESS_SIZE => "XEN_DOMCTL_set_address_size";
        abi::domctl::XEN_DOMCTL_GET_ADDRESS_SIZE => "XEN_DOMCTL_get_address_size";
        abi::domctl::XEN_DOMCTL_ASSIGN_DEVICE => "XEN_DOMCTL_assign_device";
        abi::domctl::XEN_DOMCTL_BIND_PT_IRQ => "XEN_DOMCTL_bind_pt_irq";
        abi::domctl::XEN_DOMCTL_MEMORY_MAPPING => "XEN_DOMCTL_memory_mapping";
        abi::domctl::XEN_DOMCTL_IOPORT_MAPPING => "XEN_DOMCTL_ioport_mapping";
        abi::domctl::XEN_DOMCTL_SET_EXT_VCPUCONTEXT => "XEN_DOMCTL_set_ext_vcpucontext";
        abi::domctl::XEN_DOMCTL_GET_EXT_VCPUCONTEXT => "XEN_DOMCTL_get_ext_vcpucontext";
        abi::domctl::XEN_DOMCTL_SET_OPT_FEATURE => "XEN_DOMCTL_set_opt_feature";
        abi::domctl::XEN_DOMCTL_TEST_ASSIGN_DEVICE => "XEN_DOMCTL_test_assign_device";
        abi::domctl::XEN_DOMCTL_SET_TARGET => "XEN_DOMCTL_set_target";
        abi::domctl::XEN_DOMCTL_DEASSIGN_DEVICE => "XEN_DOMCTL_deassign_device";
        abi::domctl::XEN_DOMCTL_UNBIND_PT_IRQ => "XEN_DOMCTL_unbind_pt_irq";
        abi::domctl::XEN_DOMCTL_GET_DEVICE_GROUP => "XEN_DOMCTL_get_device_group";
        abi::domctl::XEN_DOMCTL_DEBUG_OP => "XEN_DOMCTL_debug_op";
        abi::domctl::XEN_DOMCTL_GETHVMCONTEXT_PARTIAL => "XEN_DOMCTL_gethvmcontext_partial";
        abi::domctl::XEN_DOMCTL_VM_EVENT_OP => "XEN_DOMCTL_vm_event_op";
        abi::domctl::XEN_DOMCTL_MEM_SHARING_OP => "XEN_DOMCTL_mem_sharing_op";
        abi::domctl::XEN_DOMCTL_GETTSCINFO => "XEN_DOMCTL_gettscinfo";
        abi::domctl::XEN_DOMCTL_SETTSCINFO => "XEN_DOMCTL_settscinfo";
        abi::domctl::XEN_DOMCTL_GETPAGEFRAMEINFO3 => "XEN_DOMCTL_getpageframeinfo3";
        abi::domctl::XEN_DOMCTL_SETVCPUEXTSTATE => "XEN_DOMCTL_setvcpuextstate";
        abi::domctl::XEN_DOMCTL_GETVCPUEXTSTATE => "XEN_DOMCTL_getvcpuextstate";
        abi::domctl::XEN_DOMCTL_SET_ACCESS_REQUIRED => "XEN_DOMCTL_set_access_required";
        abi::domctl::XEN_DOMCTL_AUDIT_P2M => "XEN_DOMCTL_audit_p2m";
        abi::domctl::XEN_DOMCTL_SET_VIRQ_HANDLER => "XEN_DOMCTL_set_virq_handler";
        abi::domctl::XEN_DOMCTL_SET_BROKEN_PAGE_P2M => "XEN_DOMCTL_set_broken_page_p2m";
        abi::domctl::XEN_DOMCTL_SETNODEAFFINITY => "XEN_DOMCTL_setnodeaffinity";
        abi::domctl::XEN_DOMCTL_GETNODEAFFINITY => "XEN_DOMCTL_getnodeaffinity";
        abi::domctl::XEN_DOMCTL_CACHEFLUSH => "XEN_DOMCTL_cacheflush";
        abi::domctl::XEN_DOMCTL_GET_VCPU_MSRS => "XEN_DOMCTL_get_vcpu_msrs";
        abi::domctl::XEN_DOMCTL_SET_VCPU_MSRS => "XEN_DOMCTL_set_vcpu_msrs";
        abi::domctl::XEN_DOMCTL_SETVNUMAINFO => "XEN_DOMCTL_setvnumainfo";
        abi::domctl::XEN_DOMCTL_PSR_CMT_OP => "XEN_DOMCTL_psr_cmt_op";
        abi::domctl::XEN_DOMCTL_MONITOR_OP => "XEN_DOMCTL_monitor_op";
        abi::domctl::XEN_DOMCTL_PSR_ALLOC => "XEN_DOMCTL_psr_alloc";
        abi::domctl::XEN_DOMCTL_SOFT_RESET => "XEN_DOMCTL_soft_reset";
        abi::domctl::XEN_DOMCTL_VUART_OP => "XEN_DOMCTL_vuart_op";
        abi::domctl::XEN_DOMCTL_GET_CPU_POLICY => "XEN_DOMCTL_get_cpu_policy";
        abi::domctl::XEN_DOMCTL_SET_CPU_POLICY => "XEN_DOMCTL_set_cpu_policy";
        abi::domctl::XEN_CPUID_NO_SUBLEAF => "XEN_CPUID_NO_SUBLEAF";
        abi::sysctl::XEN_SYSCTL_INTERFACE_VERSION => "XEN_SYSCTL_INTERFACE_VERSION";
        abi::sysctl::XEN_SYSCTL_GET_CPU_POLICY => "XEN_SYSCTL_get_cpu_policy";
        abi::sysctl::XEN_SYSCTL_CPU_POLICY_RAW => "XEN_SYSCTL_cpu_policy_raw";
        abi::sysctl::XEN_SYSCTL_CPU_POLICY_HOST => "XEN_SYSCTL_cpu_policy_host";
        abi::domctl::XEN_DOMCTL_VMTRACE_OP => "XEN_DOMCTL_vmtrace_op";
        abi::domctl::XEN_DOMCTL_GET_PAGING_MEMPOOL_SIZE => "XEN_DOMCTL_get_paging_mempool_size";
        abi::domctl::XEN_DOMCTL_SET_PAGING_MEMPOOL_SIZE => "XEN_DOMCTL_set_paging_mempool_size";
        abi::domctl::XEN_DOMCTL_GDBSX_GUESTMEMIO => "XEN_DOMCTL_gdbsx_guestmemio";
        abi::domctl::XEN_DOMCTL_GDBSX_PAUSEVCPU => "XEN_DOMCTL_gdbsx_pausevcpu";
        abi::domctl::XEN_DOMCTL_GDBSX_UNPAUSEVCPU => "XEN_DOMCTL_gdbsx_unpausevcpu";
        abi::domctl::XEN_DOMCTL_GDBSX_DOMSTATUS => "XEN_DOMCTL_gdbsx_domstatus";
        abi::domctl::XEN_DOMCTL_CDF_HVM => "XEN_DOMCTL_CDF_hvm";
        abi::domctl::XEN_DOMCTL_CDF_HAP => "XEN_DOMCTL_CDF_hap";
        abi::domctl::XEN_DOMCTL_CDF_S3_INTEGRITY => "XEN_DOMCTL_CDF_s3_integrity";
        abi::domctl::XEN_DOMCTL_CDF_OOS_OFF => "XEN_DOMCTL_CDF_oos_off";
        abi::domctl::XEN_DOMCTL_CDF_XS_DOMAIN => "XEN_DOMCTL_CDF_xs_domain";
        abi::domctl::XEN_DOMCTL_CDF_IOMMU => "XEN_DOMCTL_CDF_iommu";
        abi::domctl::XEN_DOMCTL_CDF_NESTED_VIRT => "XEN_DOMCTL_CDF_nested_virt";
        abi::domctl::XEN_DOMCTL_CDF_VPMU => "XEN_DOMCTL_CDF_vpmu";
        abi::domctl::XEN_DOMCTL_CDF_MAX => "XEN_DOMCTL_CDF_MAX";
        abi::domctl::XEN_DOMCTL_IOMMU_NO_SHAREPT => "XEN_DOMCTL_IOMMU_no_sharept";
        abi::domctl::XEN_DOMCTL_GRANT_VERSION_MASK => "XEN_DOMCTL_GRANT_version_mask";
        abi::domctl::xen_domctl_grant_version(2) => "XEN_DOMCTL_GRANT_version(2)";
        abi::domctl::XEN_X86_EMU_LAPIC => "XEN_X86_EMU_LAPIC";
        abi::domctl::XEN_X86_EMU_HPET => "XEN_X86_EMU_HPET";
        abi::domctl::XEN_X86_EMU_PM => "XEN_X86_EMU_PM";
        abi::domctl::XEN_X86_EMU_RTC => "XEN_X86_EMU_RTC";
        abi::domctl::XEN_X86_EMU_IOAPIC => "XEN_X86_EMU_IOAPIC";
        abi::domctl::XEN_X86_EMU_PIC => "XEN_X86_EMU_PIC";
        abi::domctl::XEN_X86_EMU_VGA => "XEN_X86_EMU_VGA";
        abi::domctl::XEN_X86_EMU_IOMMU => "XEN_X86_EMU_IOMMU";
        abi::domctl::XEN_X86_EMU_PIT => "XEN_X86_EMU_PIT";
        abi::domctl::XEN_X86_EMU_USE_PIRQ => "XEN_X86_EMU_USE_PIRQ";
        abi::domctl::XEN_X86_EMU_VPCI => "XEN_X86_EMU_VPCI";
        abi::domctl::XEN_X86_EMU_ALL => "XEN_X86_EMU_ALL";
        abi::domctl::XEN_X86_MSR_RELAXED => "XEN_X86_MSR_RELAXED";
        abi::domctl::XEN_DOMINF_DYING => "XEN_DOMINF_dying";
        abi::domctl::XEN_DOMINF_HVM_GUEST => "XEN_DOMINF_hvm_guest";
        abi::domctl::XEN_DOMINF_SHUTDOWN => "XEN_DOMINF_shutdown";
        abi::domctl::XEN_DOMINF_PAUSED => "XEN_DOMINF_paused";
        abi::domctl::XEN_DOMINF_BLOCKED => "XEN_DOMINF_blocked";
        abi::domctl::XEN_DOMINF_RUNNING => "XEN_DOMINF_running";
        abi::domctl::XEN_DOMINF_DEBUGGED => "XEN_DOMINF_debugged";
        abi::domctl::XEN_DOMINF_XS_DOMAIN => "XEN_DOMINF_xs_domain";
        abi::domctl::XEN_DOMINF_HAP => "XEN_DOMINF_hap";
        abi::domctl::XEN_DOMINF_SHUTDOWNMASK => "XEN_DOMINF_shutdownmask";
        abi::domctl::XEN_DOMINF_SHUTDOWNSHIFT => "XEN_DOMINF_shutdownshift";
        abi::domctl::XEN_INVALID_MAX_VCPU_ID => "XEN_INVALID_MAX_VCPU_ID";
        abi::hvm_save::HVM_SAVE_CODE_END => "HVM_SAVE_CODE(END)";
        abi::hvm_save::HVM_SAVE_CODE_HEADER => "HVM_SAVE_CODE(HEADER)";
        abi::hvm_save::HVM_SAVE_CODE_CPU => "HVM_SAVE_CODE(CPU)";
        abi::hvm_save::HVM_SAVE_CODE_PIC => "HVM_SAVE_CODE(PIC)";
        abi::hvm_save::HVM_SAVE_CODE_IOAPIC => "HVM_SAVE_CODE(IOAPIC)";
        abi::hvm_save::HVM_SAVE_CODE_LAPIC => "HVM_SAVE_CODE(LAPIC)";
        abi::hvm_save::HVM_SAVE_CODE_LAPIC_REGS => "HVM_SAVE_CODE(LAPIC_REGS)";
        abi::hvm_save::HVM_SAVE_CODE_MTRR => "HVM_SAVE_CODE(MTRR)";
        abi::hvm_save::HVM_SAVE_CODE_TSC_ADJUST => "HVM_SAVE_CODE(TSC_ADJUST)";
        abi::hvm_save::HVM_SAVE_CODE_MAX => "HVM_SAVE_CODE_MAX";
        std::mem::size_of::<abi::hvm_save::HvmHwCpu>() => "HVM_SAVE_LENGTH(CPU)";
        std::mem::size_of::<abi::hvm_save::HvmSaveHeader>() => "HVM_SAVE_LENGTH(HEADER)";
        abi::hvm_save::HVM_FILE_MAGIC => "HVM_FILE_MAGIC";
        abi::hvm_save::HVM_FILE_VERSION => "HVM_FILE_VERSION";
        abi::hvm_save::XEN_X86_FPU_INITIALISED => "XEN_X86_FPU_INITIALISED";
    );

    // ---- io/xenbus.h, io/xs_wire.h ----
    consts!(v;
        abi::xenbus::XenbusState::Unknown => "XenbusStateUnknown";
        abi::xenbus::XenbusState::Initialising => "XenbusStateInitialising";
        abi::xenbus::XenbusState::InitWait => "XenbusStateInitWait";
        abi::xenbus::XenbusState::Initialised => "XenbusStateInitialised";
        abi::xenbus::XenbusState::Connected => "XenbusStateConnected";
        abi::xenbus::XenbusState::Closing => "XenbusStateClosing";
        abi::xenbus::XenbusState::Closed => "XenbusStateClosed";
        abi::xenbus::XenbusState::Reconfiguring => "XenbusStateReconfiguring";
        abi::xenbus::XenbusState::Reconfigured => "XenbusStateReconfigured";
        abi::xs_wire::XsdSockmsgType::Control => "XS_CONTROL";
        abi::xs_wire::XsdSockmsgType::Directory => "XS_DIRECTORY";
        abi::xs_wire::XsdSockmsgType::Read => "XS_READ";
        abi::xs_wire::XsdSockmsgType::GetPerms => "XS_GET_PERMS";
        abi::xs_wire::XsdSockmsgType::Watch => "XS_WATCH";
        abi::xs_wire::XsdSockmsgType::Unwatch => "XS_UNWATCH";
        abi::xs_wire::XsdSockmsgType::TransactionStart => "XS_TRANSACTION_START";
        abi::xs_wire::XsdSockmsgType::TransactionEnd => "XS_TRANSACTION_END";
        abi::xs_wire::XsdSockmsgType::Introduce => "XS_INTRODUCE";
        abi::xs_wire::XsdSockmsgType::Release => "XS_RELEASE";
        abi::xs_wire::XsdSockmsgType::GetDomainPath => "XS_GET_DOMAIN_PATH";
        abi::xs_wire::XsdSockmsgType::Write => "XS_WRITE";
        abi::xs_wire::XsdSockmsgType::Mkdir => "XS_MKDIR";
        abi::xs_wire::XsdSockmsgType::Rm => "XS_RM";
        abi::xs_wire::XsdSockmsgType::SetPerms => "XS_SET_PERMS";
        abi::xs_wire::XsdSockmsgType::WatchEvent => "XS_WATCH_EVENT";
        abi::xs_wire::XsdSockmsgType::Error => "XS_ERROR";
        abi::xs_wire::XsdSockmsgType::IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED";
        abi::xs_wire::XsdSockmsgType::Resume => "XS_RESUME";
        abi::xs_wire::XsdSockmsgType::SetTarget => "XS_SET_TARGET";
        abi::xs_wire::XsdSockmsgType::ResetWatches => "XS_RESET_WATCHES";
        abi::xs_wire::XsdSockmsgType::DirectoryPart => "XS_DIRECTORY_PART";
        abi::xs_wire::XS_CONTROL => "XS_CONTROL";
        abi::xs_wire::XS_DEBUG => "XS_DEBUG";
        abi::xs_wire::XS_TYPE_COUNT => "XS_TYPE_COUNT";
        abi::xs_wire::XS_INVALID => "XS_INVALID";
        abi::xs_wire::XS_WATCH_PATH => "XS_WATCH_PATH";
        abi::xs_wire::XS_WATCH_TOKEN => "XS_WATCH_TOKEN";
        abi::xs_wire::XENSTORE_RING_SIZE => "XENSTORE_RING_SIZE";
        abi::xs_wire::XENSTORE_PAYLOAD_MAX => "XENSTORE_PAYLOAD_MAX";
        abi::xs_wire::XENSTORE_ABS_PATH_MAX => "XENSTORE_ABS_PATH_MAX";
        abi::xs_wire::XENSTORE_REL_PATH_MAX => "XENSTORE_REL_PATH_MAX";
        abi::xs_wire::XENSTORE_SERVER_FEATURE_RECONNECTION => "XENSTORE_SERVER_FEATURE_RECONNECTION";
        abi::xs_wire::XENSTORE_SERVER_FEATURE_ERROR => "XENSTORE_SERVER_FEATURE_ERROR";
        abi::xs_wire::XENSTORE_CONNECTED => "XENSTORE_CONNECTED";
        abi::xs_wire::XENSTORE_RECONNECT => "XENSTORE_RECONNECT";
        abi::xs_wire::XENSTORE_ERROR_NONE => "XENSTORE_ERROR_NONE";
        abi::xs_wire::XENSTORE_ERROR_COMM => "XENSTORE_ERROR_COMM";
        abi::xs_wire::XENSTORE_ERROR_RINGIDX => "XENSTORE_ERROR_RINGIDX";
        abi::xs_wire::XENSTORE_ERROR_PROTO => "XENSTORE_ERROR_PROTO";
        abi::xs_wire::mask_xenstore_idx(5000) => "MASK_XENSTORE_IDX(5000)";
        abi::xs_wire::XSD_ERRORS.len() => "sizeof(xsd_errors) / sizeof(xsd_errors[0])";
    );
    strings!(v;
        abi::xs_wire::XS_WRITE_NONE => "XS_WRITE_NONE";
        abi::xs_wire::XS_WRITE_CREATE => "XS_WRITE_CREATE";
        abi::xs_wire::XS_WRITE_CREATE_EXCL => "XS_WRITE_CREATE_EXCL";
    );
    for (i, (errno, name)) in abi::xs_wire::XSD_ERRORS.iter().enumerate() {
        consts!(v; errno.0 => format!("xsd_errors[{i}].errnum"););
        strings!(v; *name => format!("xsd_errors[{i}].errstring"););
    }
    structs!(v;
        abi::xs_wire::XsdSockmsg = "struct xsd_sockmsg" { r#type = "type", req_id, tx_id, len };
        abi::xs_wire::XenstoreDomainInterface = "struct xenstore_domain_interface" {
            req, rsp, req_cons, req_prod, rsp_cons, rsp_prod, server_features, connection, error };
    );

    // ---- io/ring.h, io/libxenvchan.h, io/console.h ----
    consts!(v;
        abi::ring::SRING_RING_OFFSET => "offsetof(struct blkif_sring, ring)";
        abi::ring::SRING_REQ_PROD_OFFSET => "offsetof(struct blkif_sring, req_prod)";
        abi::ring::SRING_REQ_EVENT_OFFSET => "offsetof(struct blkif_sring, req_event)";
        abi::ring::SRING_RSP_PROD_OFFSET => "offsetof(struct blkif_sring, rsp_prod)";
        abi::ring::SRING_RSP_EVENT_OFFSET => "offsetof(struct blkif_sring, rsp_event)";
        std::mem::offset_of!(abi::ring::SringHeader, pvt) => "offsetof(struct blkif_sring, pvt)";
        std::mem::offset_of!(abi::ring::SringHeader, _pad) => "offsetof(struct blkif_sring, __pad)";
        std::mem::offset_of!(abi::ring::SringHeader, pvt) => "offsetof(struct netif_tx_sring, pvt.netif.smartpoll_active)";
        abi::ring::SRING_RING_OFFSET => "offsetof(struct netif_tx_sring, ring)";
        abi::ring::SRING_RING_OFFSET => "offsetof(struct netif_rx_sring, ring)";
        abi::ring::round_down_pow2(1000) => "__RD32(1000)";
        abi::ring::round_down_pow2(0x8000_0001) => "__RD32(0x80000001u)";
        abi::ring::ring_size(abi::blkif::BLKIF_ENTRY_SIZE, 4096) => "__CONST_RING_SIZE(blkif, 4096)";
        abi::ring::ring_size(abi::blkif::BLKIF_ENTRY_SIZE, 8192) => "__CONST_RING_SIZE(blkif, 8192)";
        abi::ring::ring_size(abi::netif::NETIF_TX_ENTRY_SIZE, 4096) => "__CONST_RING_SIZE(netif_tx, 4096)";
        abi::ring::ring_size(abi::netif::NETIF_RX_ENTRY_SIZE, 4096) => "__CONST_RING_SIZE(netif_rx, 4096)";
        abi::blkif::BLK_RING_SIZE => "__CONST_RING_SIZE(blkif, 4096)";
        abi::netif::NET_TX_RING_SIZE => "__CONST_RING_SIZE(netif_tx, 4096)";
        abi::netif::NET_RX_RING_SIZE => "__CONST_RING_SIZE(netif_rx, 4096)";
        abi::blkif::BLKIF_ENTRY_SIZE => "sizeof(union blkif_sring_entry)";
        abi::netif::NETIF_TX_ENTRY_SIZE => "sizeof(union netif_tx_sring_entry)";
        abi::netif::NETIF_RX_ENTRY_SIZE => "sizeof(union netif_rx_sring_entry)";
        abi::vchan::VCHAN_GRANTS_OFFSET => "offsetof(struct vchan_interface, grants)";
        abi::vchan::VCHAN_NOTIFY_WRITE => "VCHAN_NOTIFY_WRITE";
        abi::vchan::VCHAN_NOTIFY_READ => "VCHAN_NOTIFY_READ";
        abi::console::XENCONS_IN_SIZE => "sizeof(((struct xencons_interface *)0)->in)";
        abi::console::XENCONS_OUT_SIZE => "sizeof(((struct xencons_interface *)0)->out)";
        abi::console::mask_xencons_in(5000) => "MASK_XENCONS_IDX(5000, ((struct xencons_interface *)0)->in)";
        abi::console::mask_xencons_out(5000) => "MASK_XENCONS_IDX(5000, ((struct xencons_interface *)0)->out)";
    );
    structs!(v;
        abi::vchan::RingShared = "struct ring_shared" { cons, prod };
        abi::vchan::VchanInterface = "struct vchan_interface" {
            left, right, left_order, right_order, cli_live, srv_live, cli_notify, srv_notify };
        abi::console::XenconsInterface = "struct xencons_interface" {
            r#in = "in", out, in_cons, in_prod, out_cons, out_prod };
    );

    // ---- io/netif.h ----
    structs!(v;
        abi::netif::NetifTxRequest = "struct netif_tx_request" { gref, offset, flags, id, size };
        abi::netif::NetifTxResponse = "struct netif_tx_response" { id, status };
        abi::netif::NetifRxRequest = "struct netif_rx_request" { id, pad, gref };
        abi::netif::NetifRxResponse = "struct netif_rx_response" { id, offset, flags, status };
        abi::netif::NetifExtraInfo = "struct netif_extra_info" { r#type = "type", flags, u };
    );
    consts!(v;
        2 => "offsetof(struct netif_extra_info, u.gso.size)";
        4 => "offsetof(struct netif_extra_info, u.gso.type)";
        6 => "offsetof(struct netif_extra_info, u.gso.features)";
        2 => "offsetof(struct netif_extra_info, u.mcast.addr)";
        2 => "offsetof(struct netif_extra_info, u.hash.type)";
        3 => "offsetof(struct netif_extra_info, u.hash.algorithm)";
        4 => "offsetof(struct netif_extra_info, u.hash.value)";
        abi::netif::XEN_NETIF_NR_SLOTS_MIN => "XEN_NETIF_NR_SLOTS_MIN";
        abi::netif::XEN_NETIF_MAX_TX_SIZE => "XEN_NETIF_MAX_TX_SIZE";
        abi::netif::NETTXF_CSUM_BLANK => "NETTXF_csum_blank";
        abi::netif::NETTXF_DATA_VALIDATED => "NETTXF_data_validated";
        abi::netif::NETTXF_MORE_DATA => "NETTXF_more_data";
        abi::netif::NETTXF_EXTRA_INFO => "NETTXF_extra_info";
        abi::netif::NETRXF_DATA_VALIDATED => "NETRXF_data_validated";
        abi::netif::NETRXF_CSUM_BLANK => "NETRXF_csum_blank";
        abi::netif::NETRXF_MORE_DATA => "NETRXF_more_data";
        abi::netif::NETRXF_EXTRA_INFO => "NETRXF_extra_info";
        abi::netif::NETRXF_GSO_PREFIX => "NETRXF_gso_prefix";
        abi::netif::XEN_NETIF_EXTRA_TYPE_NONE => "XEN_NETIF_EXTRA_TYPE_NONE";
        abi::netif::XEN_NETIF_EXTRA_TYPE_GSO => "XEN_NETIF_EXTRA_TYPE_GSO";
        abi::netif::XEN_NETIF_EXTRA_TYPE_MCAST_ADD => "XEN_NETIF_EXTRA_TYPE_MCAST_ADD";
        abi::netif::XEN_NETIF_EXTRA_TYPE_MCAST_DEL => "XEN_NETIF_EXTRA_TYPE_MCAST_DEL";
        abi::netif::XEN_NETIF_EXTRA_TYPE_HASH => "XEN_NETIF_EXTRA_TYPE_HASH";
        abi::netif::XEN_NETIF_EXTRA_TYPE_MAX => "XEN_NETIF_EXTRA_TYPE_MAX";
        abi::netif::XEN_NETIF_EXTRA_FLAG_MORE => "XEN_NETIF_EXTRA_FLAG_MORE";
        abi::netif::XEN_NETIF_GSO_TYPE_NONE => "XEN_NETIF_GSO_TYPE_NONE";
        abi::netif::XEN_NETIF_GSO_TYPE_TCPV4 => "XEN_NETIF_GSO_TYPE_TCPV4";
        abi::netif::XEN_NETIF_GSO_TYPE_TCPV6 => "XEN_NETIF_GSO_TYPE_TCPV6";
        abi::netif::NETIF_RSP_DROPPED => "NETIF_RSP_DROPPED";
        abi::netif::NETIF_RSP_ERROR => "NETIF_RSP_ERROR";
        abi::netif::NETIF_RSP_OKAY => "NETIF_RSP_OKAY";
        abi::netif::NETIF_RSP_NULL => "NETIF_RSP_NULL";
    );

    // ---- io/blkif.h ----
    structs!(v;
        abi::blkif::BlkifRequestSegment = "struct blkif_request_segment" { gref, first_sect, last_sect };
        abi::blkif::BlkifRequest = "struct blkif_request" {
            operation, nr_segments, handle, id, sector_number, seg };
        abi::blkif::BlkifRequestDiscard = "struct blkif_request_discard" {
            operation, flag, handle, id, sector_number, nr_sectors };
        abi::blkif::BlkifRequestIndirect = "struct blkif_request_indirect" {
            operation, indirect_op, nr_segments, id, sector_number, handle, indirect_grefs };
        abi::blkif::BlkifResponse = "struct blkif_response" { id, operation, status };
    );
    consts!(v;
        abi::blkif::BlkifOp::Read => "BLKIF_OP_READ";
        abi::blkif::BlkifOp::Write => "BLKIF_OP_WRITE";
        abi::blkif::BlkifOp::WriteBarrier => "BLKIF_OP_WRITE_BARRIER";
        abi::blkif::BlkifOp::FlushDiskcache => "BLKIF_OP_FLUSH_DISKCACHE";
        abi::blkif::BlkifOp::Reserved1 => "BLKIF_OP_RESERVED_1";
        abi::blkif::BlkifOp::Discard => "BLKIF_OP_DISCARD";
        abi::blkif::BlkifOp::Indirect => "BLKIF_OP_INDIRECT";
        abi::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST => "BLKIF_MAX_SEGMENTS_PER_REQUEST";
        abi::blkif::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST => "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST";
        abi::blkif::BLKIF_DISCARD_SECURE => "BLKIF_DISCARD_SECURE";
        abi::blkif::BLKIF_RSP_EOPNOTSUPP => "BLKIF_RSP_EOPNOTSUPP";
        abi::blkif::BLKIF_RSP_ERROR => "BLKIF_RSP_ERROR";
        abi::blkif::BLKIF_RSP_OKAY => "BLKIF_RSP_OKAY";
        abi::blkif::VDISK_CDROM => "VDISK_CDROM";
        abi::blkif::VDISK_REMOVABLE => "VDISK_REMOVABLE";
        abi::blkif::VDISK_READONLY => "VDISK_READONLY";
    );

    v
}

/// The include directory holding `xen/xen.h`, or a failure explaining how
/// to get one.
fn include_dir() -> PathBuf {
    let dir = std::env::var_os("XEN_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    assert!(
        dir.join("xen/xen.h").is_file() && dir.join("xen/io/xs_wire.h").is_file(),
        "Xen public headers not found under {} (need xen/xen.h, xen/io/xs_wire.h): \
         install Debian's libxen-dev (`cargo xtask test` installs it: \
         apt-get install -y libxen-dev) or set XEN_INCLUDE_DIR",
        dir.display()
    );
    dir
}

/// The C program printing every check's C expression, one per line.
fn c_source(checks: &[Check]) -> String {
    let mut s = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n");
    for h in HEADERS {
        writeln!(s, "#include <{h}>").unwrap();
    }
    s.push_str("int main(void) {\n");
    for c in checks {
        match c.rust {
            Value::Int(_) => writeln!(s, "    printf(\"%lld\\n\", (long long)({}));", c.c),
            Value::Str(_) => writeln!(s, "    printf(\"[%s]\\n\", {});", c.c),
        }
        .unwrap();
    }
    s.push_str("    return 0;\n}\n");
    s
}

fn compile_and_run(dir: &Path, src: &str, include: &Path) -> String {
    let c_file = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-O0", "-w", "-D__XEN_TOOLS__", "-I"])
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}",
        c_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the layout program");
    assert!(run.status.success(), "layout program failed");
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn rust_mirrors_match_the_c_headers() {
    let include = include_dir();
    let checks = checks();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let out = compile_and_run(&dir, &c_source(&checks), &include);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        checks.len(),
        "C program printed a wrong number of lines"
    );
    let mut bad = Vec::new();
    for (check, line) in checks.iter().zip(&lines) {
        let c = match check.rust {
            Value::Int(_) => Value::Int(line.trim().parse().unwrap()),
            Value::Str(_) => Value::Str(
                line.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
        };
        if c != check.rust {
            bad.push(format!("{}: C {} != Rust {}", check.c, c, check.rust));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} checks differ:\n{}",
        bad.len(),
        checks.len(),
        bad.join("\n")
    );
    // The table is not trivially small: every module contributes.
    assert!(checks.len() > 100, "only {} checks", checks.len());
}
