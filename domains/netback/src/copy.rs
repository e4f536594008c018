//! Grant copy, the only way packet bytes cross between a frontend and us.
//!
//! Linux netback moves data with `GNTTABOP_copy` rather than mapping guest
//! pages; so do we (a mapping costs a map and an unmap hypercall per page and
//! lets a guest change bytes under our feet). The core asks for copies
//! through [`GrantCopy`], implemented for every [`GrantTable`] of the
//! platform and, in tests and fuzz targets, by [`MemGrants`].

pub use xen::platform::CopySeg;
use xen::platform::GrantTable;
use xen::{DomId, GrantRef};

/// A grant copy failed: the frontend named a grant it did not give us, or
/// one that is read-only where we must write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("grant copy of ref {gref} failed ({cause})")]
pub struct CopyError {
    /// The grant reference.
    pub gref: GrantRef,
    /// What the platform said (`ESRCH`: *we* are being destroyed).
    pub cause: xen::platform::Error,
}

impl CopyError {
    /// A bad reference (`GNTST_bad_gntref`).
    pub fn bad_ref(gref: GrantRef) -> Self {
        CopyError {
            gref,
            cause: xen::platform::Error::Grant(xen::platform::GrantStatus::BadGntref),
        }
    }

    /// The copy failed because our own domain is going away, not because
    /// of the frontend.
    pub fn is_own_death(&self) -> bool {
        self.cause == xen::platform::Error::Errno(xen::Errno::ESRCH)
    }
}

/// Copies between our private memory and a peer's granted pages
/// (`GNTTABOP_copy`). Offsets and lengths stay inside one page: the core
/// checks that before calling.
pub trait GrantCopy {
    /// Copies from `dom`'s grant `gref` at `offset` into `buf`.
    fn copy_in(
        &self,
        dom: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<(), CopyError>;
    /// Copies `buf` into `dom`'s writable grant `gref` at `offset`.
    fn copy_out(
        &self,
        dom: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &[u8],
    ) -> Result<(), CopyError>;

    /// Several copies at once, in order, stopping at the first failure
    /// (one `GNTTABOP_copy` call for all of them where the platform can).
    fn copy_batch(&self, segs: &mut [CopySeg<'_>]) -> Result<(), CopyError> {
        for s in segs.iter_mut() {
            match s {
                CopySeg::FromGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => self.copy_in(*dom, *gref, *offset, buf)?,
                CopySeg::ToGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => self.copy_out(*dom, *gref, *offset, buf)?,
            }
        }
        Ok(())
    }
}

fn seg_gref(s: &CopySeg<'_>) -> GrantRef {
    match s {
        CopySeg::FromGrant { gref, .. } | CopySeg::ToGrant { gref, .. } => *gref,
    }
}

impl<G: GrantTable> GrantCopy for G {
    fn copy_in(
        &self,
        dom: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<(), CopyError> {
        self.copy_from_grant(dom, gref, offset, buf)
            .map_err(|cause| CopyError { gref, cause })
    }
    fn copy_out(
        &self,
        dom: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &[u8],
    ) -> Result<(), CopyError> {
        self.copy_to_grant(dom, gref, offset, buf)
            .map_err(|cause| CopyError { gref, cause })
    }
    fn copy_batch(&self, segs: &mut [CopySeg<'_>]) -> Result<(), CopyError> {
        GrantTable::copy_batch(self, segs).map_err(|(i, cause)| CopyError {
            gref: segs.get(i).map(seg_gref).unwrap_or(GrantRef(u32::MAX)),
            cause,
        })
    }
}

/// Grants in private memory: `pages[gref]` is the page of grant `gref`
/// (any domain); refs past the end are bad. For tests and fuzz targets.
#[derive(Debug, Default)]
pub struct MemGrants {
    /// The pages, indexed by grant reference.
    pub pages: core::cell::RefCell<alloc::vec::Vec<[u8; xen::PAGE_SIZE]>>,
}

impl MemGrants {
    /// `n` zeroed pages, grant refs `0..n`.
    pub fn new(n: usize) -> Self {
        MemGrants {
            pages: core::cell::RefCell::new(alloc::vec![[0; xen::PAGE_SIZE]; n]),
        }
    }
}

impl GrantCopy for MemGrants {
    fn copy_in(
        &self,
        _: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<(), CopyError> {
        let pages = self.pages.borrow();
        let page = pages.get(gref.0 as usize).ok_or(CopyError::bad_ref(gref))?;
        let src = page
            .get(offset as usize..offset as usize + buf.len())
            .ok_or(CopyError::bad_ref(gref))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn copy_out(&self, _: DomId, gref: GrantRef, offset: u16, buf: &[u8]) -> Result<(), CopyError> {
        let mut pages = self.pages.borrow_mut();
        let page = pages
            .get_mut(gref.0 as usize)
            .ok_or(CopyError::bad_ref(gref))?;
        let dst = page
            .get_mut(offset as usize..offset as usize + buf.len())
            .ok_or(CopyError::bad_ref(gref))?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}
