//! Builder primitives for the privileged toolstack: another domain's
//! memory, e820, HVM parameters and HVM context.
//!
//! These are the Xen-mode pieces a PVH domain builder needs (the sequence
//! XEN-BOOT-NOTES verified): populate the new domain's physmap, map its
//! frames into ours (`XENMEM_add_to_physmap_batch`, space `gmfn_foreign`)
//! at guest-physical addresses taken from the same unpopulated window as
//! grant mappings, copy the image in through a `SharedMem` view, and
//! remove the mapping again; set its memory map, HVM params and vCPU
//! context.
//!
//! Failures are [`OpError`]s naming the hypercall, the domain and the code
//! (the `DomainBuilder` impl converts them to the platform error).

use crate::error::OpError;
use crate::hypercall;
use crate::runtime::Xen;
use crate::start_info::MemRegion;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;
use xen::abi::domctl::{
    XenDomctl, XenDomctlHvmcontext, XEN_DOMCTL_GETHVMCONTEXT, XEN_DOMCTL_SETHVMCONTEXT,
};
use xen::{DomId, Errno, Gfn, SharedMem, PAGE_SIZE};

/// Result of a builder primitive.
type Result<T> = core::result::Result<T, OpError>;

/// Frames of another domain mapped contiguously into ours; removed from
/// our physmap on drop.
pub struct ForeignPages {
    addr: u64,
    count: usize,
    dom: DomId,
}

impl ForeignPages {
    /// The mapped memory.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: every page of the range is mapped until `drop`; it is
        // page-aligned and only accessed through views. The other domain
        // may run and write it concurrently, which views tolerate.
        unsafe {
            SharedMem::from_raw(
                NonNull::new_unchecked(self.addr as *mut u8),
                self.count * PAGE_SIZE,
            )
        }
    }

    /// The domain whose frames these are.
    pub fn owner(&self) -> DomId {
        self.dom
    }
}

impl Drop for ForeignPages {
    fn drop(&mut self) {
        for i in 0..self.count {
            let gfn = (self.addr >> 12) + i as u64;
            if let Err(e) = hypercall::remove_from_physmap(DomId::SELF.0, gfn) {
                crate::println!("windsor: remove_from_physmap({gfn:#x}) failed: {e}");
            }
        }
    }
}

impl Xen {
    /// Backs `count` frames of `dom` from `first` with fresh memory
    /// (`XENMEM_populate_physmap`, 2 MiB extents where aligned, 4 KiB
    /// otherwise). `ENOMEM` if Xen runs out.
    pub fn populate_physmap(&self, dom: DomId, first: Gfn, count: u64) -> Result<()> {
        const ORDER: u32 = 9;
        const SUPER: u64 = 1 << ORDER;
        let end = first.0.checked_add(count).ok_or(OpError::InvalidArgument(
            "populate_physmap: frame range overflows",
        ))?;
        let failed = |errno| OpError::PopulatePhysmap {
            dom,
            pages: count,
            errno,
        };
        let mut gfn = first.0;
        while gfn < end {
            let (order, n) = if gfn % SUPER == 0 && end - gfn >= SUPER {
                let n = ((end - gfn) / SUPER).min(512);
                (ORDER, n)
            } else {
                (0, (end - gfn).min(SUPER - gfn % SUPER).min(512))
            };
            let step = 1u64 << order;
            let mut gfns: Vec<u64> = (0..n).map(|i| gfn + i * step).collect();
            let done = hypercall::populate_physmap(dom.0, &mut gfns, order).map_err(failed)?;
            if done == 0 {
                return Err(failed(Errno::ENOMEM));
            }
            gfn += done as u64 * step;
        }
        Ok(())
    }

    /// Maps frames `gfns` of `dom` contiguously into our address space.
    pub fn map_foreign(&self, dom: DomId, gfns: &[Gfn]) -> Result<ForeignPages> {
        if gfns.is_empty() {
            return Err(OpError::InvalidArgument("map_foreign: no frames"));
        }
        let addr = self
            .gnttab
            .window(gfns.len())
            .map_err(|_| OpError::NoMappingSpace { pages: gfns.len() })?;
        let foreign: Vec<u64> = gfns.iter().map(|g| g.0).collect();
        let local: Vec<u64> = (0..gfns.len() as u64).map(|i| (addr >> 12) + i).collect();
        let mut errs = vec![0i32; gfns.len()];
        let mut mapped = ForeignPages {
            addr,
            count: 0,
            dom,
        };
        for ((f, l), e) in foreign
            .chunks(256)
            .zip(local.chunks(256))
            .zip(errs.chunks_mut(256))
        {
            hypercall::map_foreign_batch(dom.0, f, l, e).map_err(|errno| OpError::MapForeign {
                dom,
                gfn: f[0],
                errno,
            })?;
            // Dropping `mapped` removes whatever was mapped so far.
            if let Some(i) = e.iter().position(|&e| e != 0) {
                mapped.count += i;
                return Err(OpError::MapForeign {
                    dom,
                    gfn: f[i],
                    errno: Errno(u16::try_from(e[i].unsigned_abs()).unwrap_or(u16::MAX)),
                });
            }
            mapped.count += f.len();
        }
        Ok(mapped)
    }

    /// Sets the memory map `dom` reads with `XENMEM_memory_map`.
    pub fn set_memory_map(&self, dom: DomId, map: &[MemRegion]) -> Result<()> {
        hypercall::set_memory_map(dom.0, map).map_err(|errno| OpError::SetMemoryMap { dom, errno })
    }

    /// `HVMOP_set_param` for `dom` (`HVM_PARAM_*` of `hvm/params.h`).
    pub fn set_hvm_param(&self, dom: DomId, index: u32, value: u64) -> Result<()> {
        hypercall::set_hvm_param(dom.0, index, value).map_err(|errno| OpError::SetHvmParam {
            dom,
            index,
            errno,
        })
    }

    /// `HVMOP_get_param` for `dom`.
    pub fn get_hvm_param(&self, dom: DomId, index: u32) -> Result<u64> {
        hypercall::get_hvm_param(dom.0, index).map_err(|errno| OpError::GetHvmParam {
            dom,
            index,
            errno,
        })
    }

    /// The HVM context record of `dom` (`XEN_DOMCTL_gethvmcontext`): the
    /// `hvm_save` stream the builder edits and writes back. `dom` must have
    /// had `max_vcpus` set.
    pub fn hvm_context(&self, dom: DomId) -> Result<Vec<u8>> {
        // A null buffer asks for the size.
        let mut op = XenDomctl::with_payload(
            XEN_DOMCTL_GETHVMCONTEXT,
            dom.0,
            &XenDomctlHvmcontext::default(),
        );
        let failed = |errno| OpError::Domctl {
            cmd: XEN_DOMCTL_GETHVMCONTEXT,
            dom,
            errno,
        };
        hypercall::domctl(&mut op).map_err(failed)?;
        let size = op.payload::<XenDomctlHvmcontext>().size as usize;
        let mut buf = vec![0u8; size];
        let arg = XenDomctlHvmcontext {
            size: size as u32,
            buffer: buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        let mut op = XenDomctl::with_payload(XEN_DOMCTL_GETHVMCONTEXT, dom.0, &arg);
        hypercall::domctl(&mut op).map_err(failed)?;
        buf.truncate(op.payload::<XenDomctlHvmcontext>().size as usize);
        Ok(buf)
    }

    /// Loads an HVM context record into `dom` (`XEN_DOMCTL_sethvmcontext`).
    pub fn set_hvm_context(&self, dom: DomId, record: &[u8]) -> Result<()> {
        let arg = XenDomctlHvmcontext {
            size: record.len() as u32,
            buffer: record.as_ptr() as u64,
            ..Default::default()
        };
        let mut op = XenDomctl::with_payload(XEN_DOMCTL_SETHVMCONTEXT, dom.0, &arg);
        hypercall::domctl(&mut op).map_err(|errno| OpError::Domctl {
            cmd: XEN_DOMCTL_SETHVMCONTEXT,
            dom,
            errno,
        })
    }
}
