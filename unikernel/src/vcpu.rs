//! The first vCPU context of a PVH guest, as an `hvm_save` record stream.
//!
//! Producer: the Xen-mode builder (dom0); consumer: Xen's
//! `XEN_DOMCTL_sethvmcontext` (`hvm/save.h`, `arch-x86/hvm/save.h`, Xen
//! 4.17). A new domain's vCPU is down, so Xen's own record has no CPU
//! entry; like libxc's PVH path we send Xen's header back, then a fresh
//! CPU record and the end marker:
//!
//! ```text
//! [desc HEADER][hvm_save_header] [desc CPU 0][hvm_hw_cpu] [desc END]
//! ```
//!
//! The CPU starts as the PVH ABI says: 32-bit protected mode, paging off,
//! flat 4 GiB code and data segments, `rip` = the PHYS32 entry, `rbx` =
//! the `hvm_start_info` address.

use alloc::vec::Vec;
use core::mem::size_of;
use xen::abi::hvm_save::{
    HvmHwCpu, HvmSaveDescriptor, HVM_SAVE_CODE_CPU, HVM_SAVE_CODE_END, HVM_SAVE_CODE_HEADER,
};
use zerocopy::{FromBytes, IntoBytes};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;

/// Builds the record stream from Xen's own context `full` (only its
/// header is kept). The error says what was wrong with `full`.
pub fn boot_context(full: &[u8], entry: u32, start_info: u64) -> Result<Vec<u8>, &'static str> {
    let dlen = size_of::<HvmSaveDescriptor>();
    let d = full
        .get(..dlen)
        .and_then(|b| HvmSaveDescriptor::read_from_bytes(b).ok())
        .ok_or("hvm context too short")?;
    if d.typecode != HVM_SAVE_CODE_HEADER {
        return Err("hvm context does not start with its header");
    }
    let header = full
        .get(..dlen + d.length as usize)
        .ok_or("hvm context header truncated")?;
    let c = HvmHwCpu {
        rip: entry.into(),
        rbx: start_info,
        rflags: 0x2,
        cr0: X86_CR0_PE | X86_CR0_ET,
        cs_limit: !0,
        ds_limit: !0,
        es_limit: !0,
        ss_limit: !0,
        tr_limit: 0x67,
        cs_arbytes: 0xc9b, // present, 32-bit, execute/read, accessed
        ds_arbytes: 0xc93, // present, 32-bit, read/write, accessed
        es_arbytes: 0xc93,
        ss_arbytes: 0xc93,
        tr_arbytes: 0x8b, // present, busy 32-bit TSS
        dr6: 0xffff_0ff0,
        dr7: 0x400,
        ..Default::default()
    };
    let cpu = HvmSaveDescriptor {
        typecode: HVM_SAVE_CODE_CPU,
        instance: 0,
        length: size_of::<HvmHwCpu>() as u32,
    };
    let end = HvmSaveDescriptor {
        typecode: HVM_SAVE_CODE_END,
        instance: 0,
        length: 0,
    };
    let mut out = Vec::with_capacity(header.len() + 2 * dlen + size_of::<HvmHwCpu>());
    out.extend_from_slice(header);
    out.extend_from_slice(cpu.as_bytes());
    out.extend_from_slice(c.as_bytes());
    out.extend_from_slice(end.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn desc(typecode: u16, length: u32) -> HvmSaveDescriptor {
        HvmSaveDescriptor {
            typecode,
            instance: 0,
            length,
        }
    }

    #[test]
    fn keeps_the_header_and_starts_at_the_entry() {
        // Xen's record: header (24 bytes of payload), a PIC record, end.
        let mut full = Vec::new();
        full.extend_from_slice(desc(HVM_SAVE_CODE_HEADER, 24).as_bytes());
        full.extend_from_slice(&[0xab; 24]);
        full.extend_from_slice(desc(3, 8).as_bytes());
        full.extend_from_slice(&[0xcd; 8]);
        full.extend_from_slice(desc(HVM_SAVE_CODE_END, 0).as_bytes());

        let out = boot_context(&full, 0x20_0000, 0x26_3000).unwrap();
        let dlen = size_of::<HvmSaveDescriptor>();
        assert_eq!(
            &out[..dlen + 24],
            &full[..dlen + 24],
            "header kept verbatim"
        );
        let cpu_d = HvmSaveDescriptor::read_from_bytes(&out[dlen + 24..2 * dlen + 24]).unwrap();
        assert_eq!((cpu_d.typecode, cpu_d.instance), (HVM_SAVE_CODE_CPU, 0));
        assert_eq!(cpu_d.length as usize, size_of::<HvmHwCpu>());
        let at = 2 * dlen + 24;
        let cpu = HvmHwCpu::read_from_bytes(&out[at..at + size_of::<HvmHwCpu>()]).unwrap();
        assert_eq!((cpu.rip, cpu.rbx), (0x20_0000, 0x26_3000));
        assert_eq!(
            cpu.cr0,
            X86_CR0_PE | X86_CR0_ET,
            "protected mode, paging off"
        );
        assert_eq!((cpu.cs_arbytes, cpu.cs_limit, cpu.cs_base), (0xc9b, !0, 0));
        let end = HvmSaveDescriptor::read_from_bytes(&out[out.len() - dlen..]).unwrap();
        assert_eq!((end.typecode, end.length), (HVM_SAVE_CODE_END, 0));
        assert_eq!(
            out.len(),
            3 * dlen + 24 + size_of::<HvmHwCpu>(),
            "PIC record dropped"
        );
    }

    #[test]
    fn refuses_a_record_without_its_header() {
        assert!(boot_context(&[], 0, 0).is_err());
        let mut full = Vec::new();
        full.extend_from_slice(desc(3, 8).as_bytes());
        full.extend_from_slice(&[0; 8]);
        assert!(boot_context(&full, 0, 0).is_err());
        let mut short = vec![];
        short.extend_from_slice(desc(HVM_SAVE_CODE_HEADER, 24).as_bytes());
        assert_eq!(
            boot_context(&short, 0, 0),
            Err("hvm context header truncated")
        );
    }
}
