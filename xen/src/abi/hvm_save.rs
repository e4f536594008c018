//! HVM save records (`xen/include/public/hvm/save.h` and
//! `arch-x86/hvm/save.h`, Xen 4.17).
//!
//! Produced by Xen (`XEN_DOMCTL_gethvmcontext`) and by the toolstack's PVH
//! domain builder, which writes a record stream to set a new domain's boot
//! vCPU state (`XEN_DOMCTL_sethvmcontext`, see [`super::domctl`]); consumed by
//! Xen. A stream is a sequence of records, each a descriptor followed by
//! `length` bytes, starting with a `HEADER` record and ending with `END`:
//!
//! ```text
//! hvm_save_descriptor  0: typecode u16  2: instance u16  4: length u32        (8)
//! hvm_save_header      0: magic  4: version  8: changeset u64  16: cpuid
//!                     20: gtsc_khz                                             (24)
//! hvm_hw_cpu           0: fpu_regs [u8; 512]  512: rax..dr7 (28 x u64)
//!                    736: 8 selectors u32  768: 10 limits u32  808: 10 bases u64
//!                    888: 8 arbytes u32    920: sysenter_cs .. tsc (12 x u64)
//!                   1016: pending_event u32  1020: error_code  1024: flags
//!                   1028: pad0                                                (1032)
//!
//! stream: [desc(HEADER,0,24) header] [desc(CPU,vcpu,1032) cpu]... [desc(END,0,0)]
//! ```
//!
//! `HVM_SAVE_CODE(x)` is computed in C from a `char c[code]` trick; here the
//! codes are plain constants.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `HVM_SAVE_CODE(END)`: terminates a stream.
pub const HVM_SAVE_CODE_END: u16 = 0;
/// `HVM_SAVE_CODE(HEADER)`: [`HvmSaveHeader`].
pub const HVM_SAVE_CODE_HEADER: u16 = 1;
/// `HVM_SAVE_CODE(CPU)`: [`HvmHwCpu`], one per vCPU (`instance` = vCPU id).
pub const HVM_SAVE_CODE_CPU: u16 = 2;
/// `HVM_SAVE_CODE(PIC)`.
pub const HVM_SAVE_CODE_PIC: u16 = 3;
/// `HVM_SAVE_CODE(IOAPIC)`.
pub const HVM_SAVE_CODE_IOAPIC: u16 = 4;
/// `HVM_SAVE_CODE(LAPIC)`.
pub const HVM_SAVE_CODE_LAPIC: u16 = 5;
/// `HVM_SAVE_CODE(LAPIC_REGS)`.
pub const HVM_SAVE_CODE_LAPIC_REGS: u16 = 6;
/// `HVM_SAVE_CODE(MTRR)`.
pub const HVM_SAVE_CODE_MTRR: u16 = 14;
/// `HVM_SAVE_CODE(TSC_ADJUST)`.
pub const HVM_SAVE_CODE_TSC_ADJUST: u16 = 19;
/// `HVM_SAVE_CODE_MAX`: codes are at most this.
pub const HVM_SAVE_CODE_MAX: u16 = 20;

/// `HVM_FILE_MAGIC`: [`HvmSaveHeader::magic`].
pub const HVM_FILE_MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`: [`HvmSaveHeader::version`].
pub const HVM_FILE_VERSION: u32 = 1;

/// `XEN_X86_FPU_INITIALISED` in [`HvmHwCpu::flags`]: `fpu_regs` is valid.
pub const XEN_X86_FPU_INITIALISED: u32 = 1 << 0;

/// `struct hvm_save_descriptor`: the header of every record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmSaveDescriptor {
    /// An `HVM_SAVE_CODE_*`.
    pub typecode: u16,
    /// Instance within the type (the vCPU id for `CPU`).
    pub instance: u16,
    /// Bytes following this descriptor.
    pub length: u32,
}

/// `struct hvm_save_header`: the first record of a stream.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmSaveHeader {
    /// [`HVM_FILE_MAGIC`].
    pub magic: u32,
    /// [`HVM_FILE_VERSION`].
    pub version: u32,
    /// Version of the Xen that saved the stream.
    pub changeset: u64,
    /// `CPUID[1].EAX` of the saving machine.
    pub cpuid: u32,
    /// Guest TSC frequency in kHz.
    pub gtsc_khz: u32,
}

/// `struct hvm_hw_cpu`: the architectural state of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct HvmHwCpu {
    /// FXSAVE image (x87/SSE state).
    pub fpu_regs: [u8; 512],
    /// `rax`.
    pub rax: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsp`.
    pub rsp: u64,
    /// `r8`.
    pub r8: u64,
    /// `r9`.
    pub r9: u64,
    /// `r10`.
    pub r10: u64,
    /// `r11`.
    pub r11: u64,
    /// `r12`.
    pub r12: u64,
    /// `r13`.
    pub r13: u64,
    /// `r14`.
    pub r14: u64,
    /// `r15`.
    pub r15: u64,
    /// `rip`.
    pub rip: u64,
    /// `rflags`.
    pub rflags: u64,
    /// `cr0`.
    pub cr0: u64,
    /// `cr2`.
    pub cr2: u64,
    /// `cr3`.
    pub cr3: u64,
    /// `cr4`.
    pub cr4: u64,
    /// `dr0`.
    pub dr0: u64,
    /// `dr1`.
    pub dr1: u64,
    /// `dr2`.
    pub dr2: u64,
    /// `dr3`.
    pub dr3: u64,
    /// `dr6`.
    pub dr6: u64,
    /// `dr7`.
    pub dr7: u64,
    /// `cs` selector.
    pub cs_sel: u32,
    /// `ds` selector.
    pub ds_sel: u32,
    /// `es` selector.
    pub es_sel: u32,
    /// `fs` selector.
    pub fs_sel: u32,
    /// `gs` selector.
    pub gs_sel: u32,
    /// `ss` selector.
    pub ss_sel: u32,
    /// `tr` selector.
    pub tr_sel: u32,
    /// `ldtr` selector.
    pub ldtr_sel: u32,
    /// `cs` limit.
    pub cs_limit: u32,
    /// `ds` limit.
    pub ds_limit: u32,
    /// `es` limit.
    pub es_limit: u32,
    /// `fs` limit.
    pub fs_limit: u32,
    /// `gs` limit.
    pub gs_limit: u32,
    /// `ss` limit.
    pub ss_limit: u32,
    /// `tr` limit.
    pub tr_limit: u32,
    /// `ldtr` limit.
    pub ldtr_limit: u32,
    /// `idtr` limit.
    pub idtr_limit: u32,
    /// `gdtr` limit.
    pub gdtr_limit: u32,
    /// `cs` base.
    pub cs_base: u64,
    /// `ds` base.
    pub ds_base: u64,
    /// `es` base.
    pub es_base: u64,
    /// `fs` base.
    pub fs_base: u64,
    /// `gs` base.
    pub gs_base: u64,
    /// `ss` base.
    pub ss_base: u64,
    /// `tr` base.
    pub tr_base: u64,
    /// `ldtr` base.
    pub ldtr_base: u64,
    /// `idtr` base.
    pub idtr_base: u64,
    /// `gdtr` base.
    pub gdtr_base: u64,
    /// `cs` access rights (VMX layout).
    pub cs_arbytes: u32,
    /// `ds` access rights (VMX layout).
    pub ds_arbytes: u32,
    /// `es` access rights (VMX layout).
    pub es_arbytes: u32,
    /// `fs` access rights (VMX layout).
    pub fs_arbytes: u32,
    /// `gs` access rights (VMX layout).
    pub gs_arbytes: u32,
    /// `ss` access rights (VMX layout).
    pub ss_arbytes: u32,
    /// `tr` access rights (VMX layout).
    pub tr_arbytes: u32,
    /// `ldtr` access rights (VMX layout).
    pub ldtr_arbytes: u32,
    /// `SYSENTER_CS` MSR.
    pub sysenter_cs: u64,
    /// `SYSENTER_ESP` MSR.
    pub sysenter_esp: u64,
    /// `SYSENTER_EIP` MSR.
    pub sysenter_eip: u64,
    /// Inactive GS base (`KERNEL_GS_BASE`).
    pub shadow_gs: u64,
    /// Obsolete, ignored.
    pub msr_flags: u64,
    /// `LSTAR` MSR.
    pub msr_lstar: u64,
    /// `STAR` MSR.
    pub msr_star: u64,
    /// `CSTAR` MSR.
    pub msr_cstar: u64,
    /// `SFMASK` MSR.
    pub msr_syscall_mask: u64,
    /// `EFER` MSR.
    pub msr_efer: u64,
    /// `TSC_AUX` MSR.
    pub msr_tsc_aux: u64,
    /// Guest TSC.
    pub tsc: u64,
    /// Union of the raw pending event and its bitfields (see [`HvmHwCpu::pending_vector`] etc.).
    pub pending_event: u32,
    /// Error code of the pending event.
    pub error_code: u32,
    /// `XEN_X86_FPU_*`.
    pub flags: u32,
    /// Padding.
    pub pad0: u32,
}

impl Default for HvmHwCpu {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl HvmHwCpu {
    /// `pending_vector` bitfield (bits 0..8 of `pending_event` on x86).
    pub const fn pending_vector(&self) -> u8 {
        (self.pending_event & 0xff) as u8
    }

    /// `pending_type` bitfield (bits 8..11).
    pub const fn pending_type(&self) -> u8 {
        ((self.pending_event >> 8) & 0x7) as u8
    }

    /// `pending_error_valid` bitfield (bit 11).
    pub const fn pending_error_valid(&self) -> bool {
        self.pending_event & (1 << 11) != 0
    }

    /// `pending_valid` bitfield (bit 31).
    pub const fn pending_valid(&self) -> bool {
        self.pending_event & (1 << 31) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_save_h() {
        assert_layout!(HvmSaveDescriptor, size 8, align 4, typecode @ 0, instance @ 2, length @ 4);
        assert_layout!(HvmSaveHeader, size 24, align 8,
            magic @ 0, version @ 4, changeset @ 8, cpuid @ 16, gtsc_khz @ 20);
        assert_layout!(HvmHwCpu, size 1032, align 8, fpu_regs @ 0, rax @ 512, rbx @ 520, rcx @ 528, rdx @ 536, rbp @ 544, rsi @ 552, rdi @ 560, rsp @ 568, r8 @ 576, r9 @ 584, r10 @ 592, r11 @ 600, r12 @ 608, r13 @ 616, r14 @ 624, r15 @ 632, rip @ 640, rflags @ 648, cr0 @ 656, cr2 @ 664, cr3 @ 672, cr4 @ 680, dr0 @ 688, dr1 @ 696, dr2 @ 704, dr3 @ 712, dr6 @ 720, dr7 @ 728, cs_sel @ 736, ds_sel @ 740, es_sel @ 744, fs_sel @ 748, gs_sel @ 752, ss_sel @ 756, tr_sel @ 760, ldtr_sel @ 764, cs_limit @ 768, ds_limit @ 772, es_limit @ 776, fs_limit @ 780, gs_limit @ 784, ss_limit @ 788, tr_limit @ 792, ldtr_limit @ 796, idtr_limit @ 800, gdtr_limit @ 804, cs_base @ 808, ds_base @ 816, es_base @ 824, fs_base @ 832, gs_base @ 840, ss_base @ 848, tr_base @ 856, ldtr_base @ 864, idtr_base @ 872, gdtr_base @ 880, cs_arbytes @ 888, ds_arbytes @ 892, es_arbytes @ 896, fs_arbytes @ 900, gs_arbytes @ 904, ss_arbytes @ 908, tr_arbytes @ 912, ldtr_arbytes @ 916, sysenter_cs @ 920, sysenter_esp @ 928, sysenter_eip @ 936, shadow_gs @ 944, msr_flags @ 952, msr_lstar @ 960, msr_star @ 968, msr_cstar @ 976, msr_syscall_mask @ 984, msr_efer @ 992, msr_tsc_aux @ 1000, tsc @ 1008, pending_event @ 1016, error_code @ 1020, flags @ 1024, pad0 @ 1028);
    }

    #[test]
    fn pending_event_bitfields() {
        let cpu = HvmHwCpu {
            pending_event: (1 << 31) | (1 << 11) | (3 << 8) | 14,
            ..Default::default()
        };
        assert_eq!(cpu.pending_vector(), 14);
        assert_eq!(cpu.pending_type(), 3);
        assert!(cpu.pending_error_valid());
        assert!(cpu.pending_valid());
        assert!(!HvmHwCpu::default().pending_valid());
        assert_eq!(HVM_SAVE_CODE_CPU, 2);
    }
}
