//! The ACPI tables a PVH guest gets from the builder, as libxl gives them.
//!
//! Producer: the Xen-mode builder (dom0), once per guest; consumer: the
//! guest's ACPI code (Linux reads `hvm_start_info.rsdp_paddr`). Without a
//! MADT, Linux logs `APIC: ACPI MADT or MP tables are not detected`, runs
//! without its local APIC, and — since Xen delivers event channels (its
//! timer included) through a LAPIC vector — its clock stops.
//!
//! libxl builds PVH tables with libacpi (`tools/libs/light/libxl_x86_acpi.c`,
//! Xen 4.17): an RSDP, an XSDT, a FADT pointing at a small DSDT, and a MADT
//! with one local APIC per vCPU whose APIC id is `2 * vcpu` (Xen's vLAPIC
//! numbering) and no I/O APIC (a PVH domain emulates the LAPIC only). We
//! build the same set with rust-vmm's `acpi_tables` crate, with two
//! differences, both because a PVH domain has no emulated ACPI hardware:
//! the FADT says `HW_REDUCED_ACPI` (no PM timer, no SCI, no PM1 blocks for
//! the guest to poke) and that there is no CMOS RTC, VGA, MSI or ASPM
//! ([`IAPC_BOOT_ARCH`]), and the DSDT has no AML body.
//!
//! Layout of the one page the builder reserves for them (`base` is its
//! guest-physical address):
//!
//! ```text
//! base + 0      RSDP (revision 2, 36 bytes) -> XSDT
//! base + 64     XSDT -> FADT, MADT
//! then, each 16-byte aligned: FADT -> DSDT; DSDT (header only); MADT
//! ```

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{EnabledStatus, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use alloc::vec::Vec;

/// OEM id in every table header.
pub const OEM_ID: [u8; 6] = *b"WINDSR";
/// OEM table id in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"WINDSOR ";
/// Guest-physical address of every vCPU's local APIC.
pub const LAPIC_BASE: u32 = 0xfee0_0000;
/// Most vCPUs the tables describe (APIC ids `2 * vcpu` must fit in a byte).
pub const MAX_VCPUS: u32 = 128;
/// FADT `IAPC_BOOT_ARCH`: no VGA (bit 2), no MSI (bit 3), no PCIe ASPM
/// (bit 4), no CMOS RTC (bit 5); legacy devices (bit 0) and an 8042 (bit 1)
/// absent. A PVH domain emulates none of them, and a guest that probes
/// them anyway (Linux's `rtc_cmos`) spends seconds of TCG time on port
/// accesses that go nowhere.
pub const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5);
/// Offset of the XSDT in the page.
const XSDT_AT: usize = 64;

/// Why no tables were built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No vCPU, or more than [`MAX_VCPUS`].
    VcpuCount(u32),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::VcpuCount(n) => {
                write!(f, "ACPI tables: {n} vCPUs (1 to {MAX_VCPUS} supported)")
            }
        }
    }
}

/// The local APIC id Xen gives `vcpu` (`2 * vcpu`, as libxl's tables say).
pub const fn lapic_id(vcpu: u32) -> u32 {
    vcpu * 2
}

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn place(page: &mut Vec<u8>, table: &[u8]) -> usize {
    let at = page.len().next_multiple_of(16);
    page.resize(at, 0);
    page.extend_from_slice(table);
    at
}

/// Builds the tables for a guest with `vcpus` vCPUs, to be copied to
/// guest-physical `base`; the RSDP is at `base` itself. The result is at
/// most one page for any allowed vCPU count.
pub fn pvh_tables(base: u64, vcpus: u32) -> Result<Vec<u8>, AcpiError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(AcpiError::VcpuCount(vcpus));
    }
    let mut page = Vec::with_capacity(4096);
    page.resize(XSDT_AT, 0);
    // The XSDT goes in last (it needs the others' addresses); keep its room:
    // header + two 8-byte entries.
    let xsdt_len = 36 + 2 * 8;
    page.resize(XSDT_AT + xsdt_len, 0);

    let dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, 1);
    let dsdt_at = place(&mut page, dsdt.as_slice());
    let dsdt_paddr = base + dsdt_at as u64;

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
        .dsdt_64(dsdt_paddr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    let fadt = fadt.finalize();
    let fadt_at = place(&mut page, &bytes(&fadt));

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        1,
        LocalInterruptController::Address(LAPIC_BASE),
    );
    for v in 0..vcpus {
        // Both fit in a byte: vcpus <= MAX_VCPUS.
        madt.add_structure(ProcessorLocalApic::new(
            v as u8,
            lapic_id(v) as u8,
            EnabledStatus::Enabled,
        ));
    }
    let madt_at = place(&mut page, &bytes(&madt));

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(base + fadt_at as u64);
    xsdt.add_entry(base + madt_at as u64);
    let x = bytes(&xsdt);
    debug_assert_eq!(x.len(), xsdt_len);
    page[XSDT_AT..XSDT_AT + x.len()].copy_from_slice(&x);

    let rsdp = bytes(&Rsdp::new(OEM_ID, base + XSDT_AT as u64));
    page[..rsdp.len()].copy_from_slice(&rsdp);
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }
    /// The table at guest-physical `paddr`, checked: signature, length
    /// inside the page, checksum zero.
    fn table(page: &[u8], base: u64, paddr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let at = (paddr - base) as usize;
        assert_eq!(&page[at..at + 4], sig);
        let len = u32_at(page, at + 4) as usize;
        assert!(at + len <= page.len(), "{sig:?} runs past the page");
        let t = page[at..at + len].to_vec();
        assert_eq!(sum(&t), 0, "{sig:?} checksum");
        t
    }

    #[test]
    fn rsdp_xsdt_fadt_dsdt_madt_chain_up() {
        let base = 0x0fff_c000;
        for vcpus in [1, 2, 4, MAX_VCPUS] {
            let page = pvh_tables(base, vcpus).unwrap();
            assert!(page.len() <= 4096, "{} bytes", page.len());
            // RSDP: signature, revision 2, both checksums, XSDT address.
            assert_eq!(&page[..8], b"RSD PTR ");
            assert_eq!(page[15], 2);
            assert_eq!(sum(&page[..20]), 0);
            assert_eq!(sum(&page[..36]), 0);
            let xsdt = table(&page, base, u64_at(&page, 24), b"XSDT");
            assert_eq!(xsdt.len(), 36 + 16);
            let fadt = table(&page, base, u64_at(&xsdt, 36), b"FACP");
            let madt = table(&page, base, u64_at(&xsdt, 44), b"APIC");
            // FADT: revision >= 5 (HW-reduced needs it), the flag, X_DSDT.
            assert!(fadt[8] >= 5);
            assert_ne!(u32_at(&fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
            assert_eq!(u16::from_le_bytes([fadt[109], fadt[110]]), IAPC_BOOT_ARCH);
            let dsdt = table(&page, base, u64_at(&fadt, 140), b"DSDT");
            assert_eq!(dsdt.len(), 36);
            // MADT: LAPIC address, one enabled LAPIC per vCPU, ids 2n.
            assert_eq!(u32_at(&madt, 36), LAPIC_BASE);
            assert_eq!(madt.len(), 44 + 8 * vcpus as usize);
            for v in 0..vcpus as usize {
                let e = &madt[44 + 8 * v..52 + 8 * v];
                assert_eq!((e[0], e[1]), (0, 8), "type and length");
                assert_eq!(e[2] as usize, v, "processor uid");
                assert_eq!(e[3] as usize, 2 * v, "APIC id");
                assert_eq!(u32_at(e, 4), 1, "enabled");
            }
        }
    }

    #[test]
    fn vcpu_counts_outside_the_range_are_refused() {
        assert_eq!(pvh_tables(0, 0), Err(AcpiError::VcpuCount(0)));
        assert_eq!(
            pvh_tables(0, MAX_VCPUS + 1),
            Err(AcpiError::VcpuCount(MAX_VCPUS + 1))
        );
    }
}
