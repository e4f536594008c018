//! The Xen-mode PVH domain builder: [`DomainBuilder`] for dom0.
//!
//! Builds a created, paused domain from a PVH ELF image, following the
//! sequence XEN-BOOT-NOTES verified plus what a PVH guest needs to start:
//!
//! ```text
//! guest-physical layout (P = max_mem / 4 KiB pages)
//!   0 ........................ image (PT_LOAD at their paddr)
//!   next page after the image  start info: hvm_start_info @0, modlist @64,
//!                              memmap @128, cmdline @512
//!   next page                  the ramdisk, if any (start-info module 0)
//!   ...                        free RAM
//!   P-3                        ACPI tables (RSDP first)  e820 ACPI
//!   P-2                        console ring page   } e820 reserved
//!   P-1                        xenstore ring page  }
//!   P+16 (transient)           the guest's grant frame 0, while seeding it
//! ```
//!
//! What a PVH guest gets beside its image is what libxl gives it, so that
//! other people's kernels (Debian's Linux) boot unchanged: the ACPI tables
//! of [`crate::acpi`] (`rsdp_paddr`; a local APIC per vCPU), the ramdisk
//! as `hvm_start_info` module 0, the e820 both in the start info and
//! through `XENMEM_set_memory_map`, and the CPUID policy of
//! [`crate::cpu_policy`] (RDTSCP and RDPID hidden when the processor is SVM
//! without NRIP save, read from Xen's raw policy with
//! `XEN_SYSCTL_get_cpu_policy`; hidden too if that cannot be read). vCPUs
//! other than 0 stay down: the guest brings them up itself (Linux: INIT/SIPI
//! through its emulated local APIC, as with libxl).
//!
//! 1. check the image ([`PvhImage::parse`]; refused with `ENOEXEC`);
//! 2. populate all `P` pages; set the e820 (`XENMEM_set_memory_map`);
//! 3. map the image range and the start-info page into dom0, copy the
//!    segments, zero the rest, write `hvm_start_info` (version 1);
//! 4. clear the ring pages; allocate the guest's unbound ports for the
//!    xenstore and console domains; set `HVM_PARAM_{STORE,CONSOLE}_{PFN,EVTCHN}`;
//! 5. seed the reserved grant entries (`GNTTAB_RESERVED_CONSOLE` 0,
//!    `GNTTAB_RESERVED_XENSTORE` 1) through the guest's grant frame 0;
//! 6. write a vCPU context (`hvm_save` header + CPU + end): flat 32-bit
//!    protected mode, paging off, `rip` = PHYS32 entry, `rbx` = start info.
//!
//! The domain stays paused; the caller unpauses it.
//!
//! Every failure is an [`OpError`] naming the hypercall (or the check) that
//! failed, the domain and the code. [`DomainBuilder::build`] logs it
//! (`windsor: builder: d<N>: …`), records it for [`Xen::last_error`] and
//! returns its code (`ENOEXEC` for a refused image).

use crate::acpi::pvh_tables;
use crate::cpu_policy::{hide_tsc_aux_readers, svm_without_nrips};
use crate::domctl::domain_info;
use crate::elf::PvhImage;
use crate::error::OpError;
use crate::hypercall;
use crate::runtime::Xen;
use crate::start_info::MemRegion;
use crate::vcpu::boot_context;
use alloc::vec::Vec;
use core::mem::size_of;
use xen::abi::domctl::{
    XenCpuidLeaf, XenDomctl, XenDomctlCpuPolicy, XEN_DOMCTL_GET_CPU_POLICY,
    XEN_DOMCTL_SET_CPU_POLICY,
};
use xen::abi::grant_table::{GrantEntryV1, GTF_PERMIT_ACCESS};
use xen::abi::hvm::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN, XEN_HVM_MEMMAP_TYPE_ACPI,
    XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, XEN_HVM_START_MAGIC_VALUE,
};
use xen::abi::memory::XENMAPSPACE_GRANT_TABLE;
use xen::abi::sysctl::{
    XenSysctl, XenSysctlCpuPolicy, XEN_SYSCTL_CPU_POLICY_RAW, XEN_SYSCTL_GET_CPU_POLICY,
};
use xen::platform::{BuiltDomain, DomainBuilder, DomainImage, Result};
use xen::{DomId, EvtchnPort, Gfn, PAGE_SIZE};
use zerocopy::IntoBytes;

const PAGE: u64 = PAGE_SIZE as u64;
const SI_MODLIST_OFF: usize = 64;
const SI_MEMMAP_OFF: usize = 128;
const SI_CMDLINE_OFF: usize = 512;

impl DomainBuilder for Xen {
    fn build(&self, dom: DomId, image: &DomainImage<'_>) -> Result<BuiltDomain> {
        self.build_with_ramdisk(dom, image, None)
    }
}

impl Xen {
    /// [`DomainBuilder::build`] with a ramdisk (an initrd), handed to the
    /// guest as `hvm_start_info` module 0.
    pub fn build_with_ramdisk(
        &self,
        dom: DomId,
        image: &DomainImage<'_>,
        ramdisk: Option<&[u8]>,
    ) -> Result<BuiltDomain> {
        let r = self.build_pvh(dom, image, ramdisk);
        match &r {
            Ok(_) => {}
            Err(OpError::Image(reason)) => {
                crate::println!("windsor: builder: {dom:?}: image refused: {reason} (ENOEXEC)")
            }
            Err(e) => crate::println!("windsor: builder: {dom:?}: {e}"),
        }
        self.note(r)
    }

    /// Applies the guest's CPUID policy (see the module doc); returns how
    /// many leaves were changed and why.
    fn restrict_cpuid(&self, dom: DomId) -> core::result::Result<(usize, &'static str), OpError> {
        // The processor's own SVM leaf says whether Xen can emulate RDTSCP.
        let mut raw = XenSysctlCpuPolicy {
            index: XEN_SYSCTL_CPU_POLICY_RAW,
            ..Default::default()
        };
        let mut op = XenSysctl::with_payload(XEN_SYSCTL_GET_CPU_POLICY, &raw);
        let raw_leaves = hypercall::sysctl(&mut op).ok().and_then(|()| {
            raw.nr_leaves = op.payload::<XenSysctlCpuPolicy>().nr_leaves.min(1024);
            let mut leaves = alloc::vec![XenCpuidLeaf::default(); raw.nr_leaves as usize];
            raw.leaves = leaves.as_mut_ptr() as u64;
            let mut op = XenSysctl::with_payload(XEN_SYSCTL_GET_CPU_POLICY, &raw);
            hypercall::sysctl(&mut op).ok()?;
            leaves.truncate(op.payload::<XenSysctlCpuPolicy>().nr_leaves as usize);
            Some(leaves)
        });
        // Unknown (the query failed): hide, which is always safe.
        let why = match raw_leaves.as_deref().map(svm_without_nrips) {
            Some(Some(false)) => return Ok((0, "")),
            Some(None) => return Ok((0, "")),
            Some(Some(true)) => "the processor is SVM without NRIP save",
            None => "the processor's CPUID could not be read",
        };
        let failed = |cmd| move |errno| OpError::Domctl { cmd, dom, errno };
        let mut p = XenDomctlCpuPolicy::default();
        let mut op = XenDomctl::with_payload(XEN_DOMCTL_GET_CPU_POLICY, dom.0, &p);
        hypercall::domctl(&mut op).map_err(failed(XEN_DOMCTL_GET_CPU_POLICY))?;
        let n = op.payload::<XenDomctlCpuPolicy>().nr_leaves.min(1024);
        let mut leaves = alloc::vec![XenCpuidLeaf::default(); n as usize];
        p.nr_leaves = n;
        p.cpuid_policy = leaves.as_mut_ptr() as u64;
        let mut op = XenDomctl::with_payload(XEN_DOMCTL_GET_CPU_POLICY, dom.0, &p);
        hypercall::domctl(&mut op).map_err(failed(XEN_DOMCTL_GET_CPU_POLICY))?;
        leaves.truncate(op.payload::<XenDomctlCpuPolicy>().nr_leaves as usize);
        let changed = hide_tsc_aux_readers(&mut leaves);
        if changed.is_empty() {
            return Ok((0, why));
        }
        let set = XenDomctlCpuPolicy {
            nr_leaves: changed.len() as u32,
            cpuid_policy: changed.as_ptr() as u64,
            ..Default::default()
        };
        let mut op = XenDomctl::with_payload(XEN_DOMCTL_SET_CPU_POLICY, dom.0, &set);
        hypercall::domctl(&mut op).map_err(failed(XEN_DOMCTL_SET_CPU_POLICY))?;
        Ok((changed.len(), why))
    }

    /// [`DomainBuilder::build`] with the typed error (see the module doc).
    fn build_pvh(
        &self,
        dom: DomId,
        image: &DomainImage<'_>,
        ramdisk: Option<&[u8]>,
    ) -> core::result::Result<BuiltDomain, OpError> {
        let img = PvhImage::parse(image.kernel).map_err(OpError::Image)?;
        let info = domain_info(dom)?;
        let kib = info.max_mem_kib;
        let pages = kib / 4;
        if pages < 16 {
            return Err(OpError::TooLittleMemory { kib });
        }
        let console_gfn = pages - 2;
        let store_gfn = pages - 1;
        let acpi_gfn = pages - 3;
        let ram_end = acpi_gfn * PAGE;
        let (lo, hi) = img.span();
        let si_gfn = hi.div_ceil(PAGE);
        let rd_gfn = si_gfn + 1;
        let rd_len = ramdisk.map_or(0, <[u8]>::len) as u64;
        let end_gfn = rd_gfn + rd_len.div_ceil(PAGE);
        let cmdline = image.cmdline.as_bytes();
        if end_gfn >= acpi_gfn || lo < PAGE {
            return Err(OpError::ImageDoesNotFit {
                end: end_gfn * PAGE,
                ram_end,
            });
        }
        let acpi = pvh_tables(acpi_gfn * PAGE, info.max_vcpus.max(1))
            .map_err(|_| OpError::InvalidArgument("ACPI tables: vCPU count out of range"))?;
        if cmdline.len() >= PAGE_SIZE - SI_CMDLINE_OFF {
            return Err(OpError::CmdlineTooLong {
                len: cmdline.len(),
                max: PAGE_SIZE - SI_CMDLINE_OFF - 1,
            });
        }

        // 2. Memory and e820.
        self.populate_physmap(dom, Gfn(0), pages)?;
        let e820 = [
            MemRegion {
                addr: 0,
                size: ram_end,
                kind: XEN_HVM_MEMMAP_TYPE_RAM,
            },
            MemRegion {
                addr: ram_end,
                size: PAGE,
                kind: XEN_HVM_MEMMAP_TYPE_ACPI,
            },
            MemRegion {
                addr: console_gfn * PAGE,
                size: 2 * PAGE,
                kind: XEN_HVM_MEMMAP_TYPE_RESERVED,
            },
        ];
        self.set_memory_map(dom, &e820)?;

        // 3. Image and start info, through one mapping of the range.
        let first = lo / PAGE;
        let gfns: Vec<Gfn> = (first..=si_gfn).map(Gfn).collect();
        let m = self.map_foreign(dom, &gfns)?;
        let mem = m.mem();
        // Zero what the file does not cover (each segment's tail past
        // `filesz`, the gaps, the start-info page), copy the rest: the
        // copied bytes are not written twice.
        let mut zeroed_to = 0;
        let mut segments: Vec<_> = img.segments.iter().collect();
        segments.sort_by_key(|s| s.paddr);
        for s in segments {
            let at = (s.paddr - first * PAGE) as usize;
            if at > zeroed_to {
                mem.fill(zeroed_to, at - zeroed_to, 0);
            }
            mem.write_bytes(at, &image.kernel[s.offset..s.offset + s.filesz]);
            zeroed_to = zeroed_to.max(at + s.filesz);
        }
        mem.fill(zeroed_to, mem.len() - zeroed_to, 0);
        let si_at = ((si_gfn - first) * PAGE) as usize;
        let si_paddr = si_gfn * PAGE;
        let si = HvmStartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            nr_modules: u32::from(ramdisk.is_some()),
            modlist_paddr: if ramdisk.is_some() {
                si_paddr + SI_MODLIST_OFF as u64
            } else {
                0
            },
            cmdline_paddr: si_paddr + SI_CMDLINE_OFF as u64,
            rsdp_paddr: acpi_gfn * PAGE,
            memmap_paddr: si_paddr + SI_MEMMAP_OFF as u64,
            memmap_entries: e820.len() as u32,
            ..Default::default()
        };
        mem.write_bytes(si_at, si.as_bytes());
        if ramdisk.is_some() {
            let m = HvmModlistEntry {
                paddr: rd_gfn * PAGE,
                size: rd_len,
                ..Default::default()
            };
            mem.write_bytes(si_at + SI_MODLIST_OFF, m.as_bytes());
        }
        for (i, r) in e820.iter().enumerate() {
            let e = HvmMemmapTableEntry {
                addr: r.addr,
                size: r.size,
                r#type: r.kind,
                reserved: 0,
            };
            mem.write_bytes(
                si_at + SI_MEMMAP_OFF + i * size_of::<HvmMemmapTableEntry>(),
                e.as_bytes(),
            );
        }
        mem.write_bytes(si_at + SI_CMDLINE_OFF, cmdline);
        drop(m);
        if let Some(rd) = ramdisk.filter(|r| !r.is_empty()) {
            let gfns: Vec<Gfn> = (rd_gfn..end_gfn).map(Gfn).collect();
            let m = self.map_foreign(dom, &gfns)?;
            m.mem().write_bytes(0, rd);
            drop(m);
        }
        let m = self.map_foreign(dom, &[Gfn(acpi_gfn)])?;
        m.mem().fill(0, PAGE_SIZE, 0);
        m.mem().write_bytes(0, &acpi);
        drop(m);
        let (hidden, why) = self.restrict_cpuid(dom)?;
        if hidden > 0 {
            crate::println!(
                "windsor: builder: {dom:?}: CPUID: RDTSCP and RDPID hidden ({why}: \
                 Xen could not emulate them)"
            );
        }

        // 4. Rings, ports, HVM params.
        let rings = self.map_foreign(dom, &[Gfn(console_gfn), Gfn(store_gfn)])?;
        rings.mem().fill(0, 2 * PAGE_SIZE, 0);
        drop(rings);
        let alloc_port = |remote: DomId| {
            hypercall::evtchn_alloc_unbound(dom.0, remote.0)
                .map(EvtchnPort)
                .map_err(|errno| OpError::EvtchnAllocUnbound { dom, remote, errno })
        };
        let store_port = alloc_port(image.xenstore_domid)?;
        let console_port = alloc_port(image.console_domid)?;
        self.set_hvm_param(dom, HVM_PARAM_STORE_PFN, store_gfn)?;
        self.set_hvm_param(dom, HVM_PARAM_STORE_EVTCHN, store_port.0.into())?;
        self.set_hvm_param(dom, HVM_PARAM_CONSOLE_PFN, console_gfn)?;
        self.set_hvm_param(dom, HVM_PARAM_CONSOLE_EVTCHN, console_port.0.into())?;

        // 5. Reserved grant entries, through the guest's grant frame 0.
        let scratch = pages + 16;
        hypercall::add_to_physmap(dom.0, XENMAPSPACE_GRANT_TABLE, 0, scratch).map_err(|errno| {
            OpError::AddToPhysmap {
                dom,
                space: XENMAPSPACE_GRANT_TABLE,
                idx: 0,
                gfn: scratch,
                errno,
            }
        })?;
        let seeded = self.map_foreign(dom, &[Gfn(scratch)]).map(|g| {
            let t = g.mem();
            for (i, (to, frame)) in [
                (image.console_domid, console_gfn),
                (image.xenstore_domid, store_gfn),
            ]
            .into_iter()
            .enumerate()
            {
                let e = GrantEntryV1 {
                    flags: GTF_PERMIT_ACCESS,
                    domid: to.0,
                    frame: frame as u32,
                };
                t.write_bytes(i * size_of::<GrantEntryV1>(), e.as_bytes());
            }
        });
        let removed = hypercall::remove_from_physmap(dom.0, scratch).map_err(|errno| {
            OpError::RemoveFromPhysmap {
                dom,
                gfn: scratch,
                errno,
            }
        });
        seeded?;
        removed?;

        // 6. vCPU 0 at the PHYS32 entry.
        let full = self.hvm_context(dom)?;
        let ctx = boot_context(&full, img.entry, si_paddr).map_err(OpError::VcpuContext)?;
        self.set_hvm_context(dom, &ctx)?;

        Ok(BuiltDomain {
            store_gfn: Gfn(store_gfn),
            store_port,
            console_gfn: Gfn(console_gfn),
            console_port,
        })
    }
}
