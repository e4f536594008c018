//! Which Xen operation failed, on which domain, with which code: the typed
//! error of the Xen-mode domain builder and domain control.
//!
//! Producer: the runtime's `DomainControl` and `DomainBuilder` impls and
//! the builder primitives on `Xen` (`populate_physmap`, `map_foreign`, …);
//! consumer: dom0's orchestration, which prints it when a step fails.
//!
//! The `xen::platform` traits carry only the code
//! ([`xen::platform::Error`]): through them a failed build says `ENOMEM`
//! but not which of its twenty-odd hypercalls returned it. So every failure
//! is first an [`OpError`] naming the operation with Xen's own name
//! (`XEN_DOMCTL_createdomain`, `XENMEM_populate_physmap`, …), the domain
//! and the code; the trait impls record it (`Xen::last_error`) and convert
//! it with [`From`] into the platform error, whose code is
//! [`OpError::errno`]. Refusals made before any hypercall (an image that is
//! not PVH, a domain too small for it) say why, with the code the trait
//! reports for them (`ENOEXEC`, `EINVAL`).
//!
//! Display forms, e.g.:
//!
//! ```text
//! XEN_DOMCTL_createdomain failed: EINVAL (22)
//! XEN_DOMCTL_unpausedomain (dom 7) failed: ESRCH (3)
//! XENMEM_populate_physmap (dom 3, 4096 pages) failed: ENOMEM (12)
//! image check failed: ENOEXEC: no XEN_ELFNOTE_PHYS32_ENTRY note
//! ```
//!
//! Hand-written `Display` rather than `thiserror`: this crate has no other
//! use for the dependency, and the formats need a little logic (domctl
//! names, `createdomain` has no domain yet).

use crate::elf::ImageError;
use core::fmt;
use xen::abi::domctl::{
    XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO,
    XEN_DOMCTL_GETHVMCONTEXT, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_SETHVMCONTEXT, XEN_DOMCTL_UNPAUSEDOMAIN,
};
use xen::abi::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use xen::abi::memory::{XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO};
use xen::platform::{Error, GrantStatus};
use xen::{DomId, Errno};

/// A failed domain-control or builder operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpError {
    /// A `XEN_DOMCTL_*` op returned an error (for `getdomaininfo`, also:
    /// Xen reported a different domain, i.e. `dom` does not exist: `ESRCH`).
    Domctl {
        /// The `XEN_DOMCTL_*` command.
        cmd: u32,
        /// The domain the op was for (0 for `createdomain`: Xen picks).
        dom: DomId,
        /// Xen's code.
        errno: Errno,
    },
    /// `XENMEM_populate_physmap` failed, or populated nothing (`ENOMEM`).
    PopulatePhysmap {
        /// The domain being populated.
        dom: DomId,
        /// Pages asked for in all.
        pages: u64,
        /// Xen's code.
        errno: Errno,
    },
    /// `XENMEM_add_to_physmap_batch` (space `gmfn_foreign`) could not map
    /// another domain's frame into ours.
    MapForeign {
        /// The domain whose frames were being mapped.
        dom: DomId,
        /// Its first frame that failed (or the batch's first frame).
        gfn: u64,
        /// Xen's code.
        errno: Errno,
    },
    /// The runtime's window for foreign mappings is full (reported as the
    /// grant status `GNTST_no_space`).
    NoMappingSpace {
        /// Pages asked for.
        pages: usize,
    },
    /// `XENMEM_set_memory_map` failed.
    SetMemoryMap {
        /// The domain.
        dom: DomId,
        /// Xen's code.
        errno: Errno,
    },
    /// `HVMOP_set_param` failed.
    SetHvmParam {
        /// The domain.
        dom: DomId,
        /// The `HVM_PARAM_*` index.
        index: u32,
        /// Xen's code.
        errno: Errno,
    },
    /// `HVMOP_get_param` failed.
    GetHvmParam {
        /// The domain.
        dom: DomId,
        /// The `HVM_PARAM_*` index.
        index: u32,
        /// Xen's code.
        errno: Errno,
    },
    /// `EVTCHNOP_alloc_unbound` of a port of `dom` for `remote` failed.
    EvtchnAllocUnbound {
        /// The domain the port belongs to.
        dom: DomId,
        /// The domain allowed to bind it.
        remote: DomId,
        /// Xen's code.
        errno: Errno,
    },
    /// `XENMEM_add_to_physmap` of frame `idx` of a map space at `gfn` of
    /// `dom` failed.
    AddToPhysmap {
        /// The domain whose physmap was changed.
        dom: DomId,
        /// The `XENMAPSPACE_*`.
        space: u32,
        /// The frame index in that space.
        idx: u64,
        /// Where it was to go.
        gfn: u64,
        /// Xen's code.
        errno: Errno,
    },
    /// `XENMEM_remove_from_physmap` of `gfn` of `dom` failed.
    RemoveFromPhysmap {
        /// The domain.
        dom: DomId,
        /// The frame.
        gfn: u64,
        /// Xen's code.
        errno: Errno,
    },
    /// `SCHEDOP_remote_shutdown` failed.
    RemoteShutdown {
        /// The domain.
        dom: DomId,
        /// Xen's code.
        errno: Errno,
    },
    /// The image is not a PVH kernel the builder can load (`ENOEXEC`).
    Image(ImageError),
    /// The domain's memory is too small for any guest (`EINVAL`).
    TooLittleMemory {
        /// Its `max_mem`, KiB.
        kib: u64,
    },
    /// The image (with its start-info page) does not fit below the ring
    /// pages, or starts in page 0 (`EINVAL`).
    ImageDoesNotFit {
        /// Guest-physical end of the image and start info.
        end: u64,
        /// Guest-physical end of the domain's RAM.
        ram_end: u64,
    },
    /// The command line does not fit the start-info page (`EINVAL`).
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// The HVM context Xen returned cannot be turned into a boot context
    /// (`EINVAL`).
    VcpuContext(&'static str),
    /// An argument out of range, refused before any hypercall (`EINVAL`).
    InvalidArgument(&'static str),
}

impl OpError {
    /// The code the platform traits report for this failure.
    pub fn errno(&self) -> Errno {
        match *self {
            OpError::Domctl { errno, .. }
            | OpError::PopulatePhysmap { errno, .. }
            | OpError::MapForeign { errno, .. }
            | OpError::SetMemoryMap { errno, .. }
            | OpError::SetHvmParam { errno, .. }
            | OpError::GetHvmParam { errno, .. }
            | OpError::EvtchnAllocUnbound { errno, .. }
            | OpError::AddToPhysmap { errno, .. }
            | OpError::RemoveFromPhysmap { errno, .. }
            | OpError::RemoteShutdown { errno, .. } => errno,
            OpError::NoMappingSpace { .. } => Errno::ENOMEM,
            OpError::Image(_) => Errno::ENOEXEC,
            OpError::TooLittleMemory { .. }
            | OpError::ImageDoesNotFit { .. }
            | OpError::CmdlineTooLong { .. }
            | OpError::VcpuContext(_)
            | OpError::InvalidArgument(_) => Errno::EINVAL,
        }
    }
}

impl From<OpError> for Error {
    fn from(e: OpError) -> Error {
        match e {
            OpError::NoMappingSpace { .. } => Error::Grant(GrantStatus::NoSpace),
            e => Error::Errno(e.errno()),
        }
    }
}

/// Xen's name of a domctl command (`domctl.h`), for the ones the runtime
/// issues.
pub fn domctl_name(cmd: u32) -> Option<&'static str> {
    Some(match cmd {
        XEN_DOMCTL_CREATEDOMAIN => "XEN_DOMCTL_createdomain",
        XEN_DOMCTL_DESTROYDOMAIN => "XEN_DOMCTL_destroydomain",
        XEN_DOMCTL_PAUSEDOMAIN => "XEN_DOMCTL_pausedomain",
        XEN_DOMCTL_UNPAUSEDOMAIN => "XEN_DOMCTL_unpausedomain",
        XEN_DOMCTL_GETDOMAININFO => "XEN_DOMCTL_getdomaininfo",
        XEN_DOMCTL_MAX_MEM => "XEN_DOMCTL_max_mem",
        XEN_DOMCTL_MAX_VCPUS => "XEN_DOMCTL_max_vcpus",
        XEN_DOMCTL_GETHVMCONTEXT => "XEN_DOMCTL_gethvmcontext",
        XEN_DOMCTL_SETHVMCONTEXT => "XEN_DOMCTL_sethvmcontext",
        _ => return None,
    })
}

/// Xen's name of an HVM parameter (`hvm/params.h`), for the ones the
/// builder sets.
fn hvm_param_name(index: u32) -> Option<&'static str> {
    Some(match index {
        HVM_PARAM_STORE_PFN => "HVM_PARAM_STORE_PFN",
        HVM_PARAM_STORE_EVTCHN => "HVM_PARAM_STORE_EVTCHN",
        HVM_PARAM_CONSOLE_PFN => "HVM_PARAM_CONSOLE_PFN",
        HVM_PARAM_CONSOLE_EVTCHN => "HVM_PARAM_CONSOLE_EVTCHN",
        _ => return None,
    })
}

/// `HVM_PARAM_X` or the index.
struct Param(u32);

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match hvm_param_name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "param {}", self.0),
        }
    }
}

/// `XENMAPSPACE_x` name.
struct Space(u32);

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            XENMAPSPACE_SHARED_INFO => f.write_str("shared_info"),
            XENMAPSPACE_GRANT_TABLE => f.write_str("grant_table"),
            s => write!(f, "space {s}"),
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OpError::Domctl { cmd, dom, errno } => {
                match domctl_name(cmd) {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "XEN_DOMCTL op {cmd}")?,
                }
                if cmd != XEN_DOMCTL_CREATEDOMAIN {
                    write!(f, " (dom {dom})")?;
                }
                write!(f, " failed: {errno}")
            }
            OpError::PopulatePhysmap { dom, pages, errno } => write!(
                f,
                "XENMEM_populate_physmap (dom {dom}, {pages} pages) failed: {errno}"
            ),
            OpError::MapForeign { dom, gfn, errno } => write!(
                f,
                "XENMEM_add_to_physmap_batch (gmfn_foreign, dom {dom}, gfn {gfn:#x}) failed: {errno}"
            ),
            OpError::NoMappingSpace { pages } => write!(
                f,
                "no guest-physical space left to map {pages} foreign pages: {}",
                self.errno()
            ),
            OpError::SetMemoryMap { dom, errno } => {
                write!(f, "XENMEM_set_memory_map (dom {dom}) failed: {errno}")
            }
            OpError::SetHvmParam { dom, index, errno } => write!(
                f,
                "HVMOP_set_param (dom {dom}, {}) failed: {errno}",
                Param(index)
            ),
            OpError::GetHvmParam { dom, index, errno } => write!(
                f,
                "HVMOP_get_param (dom {dom}, {}) failed: {errno}",
                Param(index)
            ),
            OpError::EvtchnAllocUnbound { dom, remote, errno } => write!(
                f,
                "EVTCHNOP_alloc_unbound (dom {dom}, remote dom {remote}) failed: {errno}"
            ),
            OpError::AddToPhysmap {
                dom,
                space,
                idx,
                gfn,
                errno,
            } => write!(
                f,
                "XENMEM_add_to_physmap (dom {dom}, {} frame {idx} at gfn {gfn:#x}) failed: {errno}",
                Space(space)
            ),
            OpError::RemoveFromPhysmap { dom, gfn, errno } => write!(
                f,
                "XENMEM_remove_from_physmap (dom {dom}, gfn {gfn:#x}) failed: {errno}"
            ),
            OpError::RemoteShutdown { dom, errno } => {
                write!(f, "SCHEDOP_remote_shutdown (dom {dom}) failed: {errno}")
            }
            OpError::Image(reason) => write!(f, "image check failed: ENOEXEC: {reason}"),
            OpError::TooLittleMemory { kib } => write!(
                f,
                "domain has {kib} KiB, the builder needs at least 64 KiB: {}",
                self.errno()
            ),
            OpError::ImageDoesNotFit { end, ram_end } => write!(
                f,
                "image and start info (up to {end:#x}) do not fit the domain's RAM \
                 (page 1 to {ram_end:#x}): {}",
                self.errno()
            ),
            OpError::CmdlineTooLong { len, max } => write!(
                f,
                "command line of {len} bytes longer than the start-info page allows ({max}): {}",
                self.errno()
            ),
            OpError::VcpuContext(what) => {
                write!(f, "vCPU boot context: {what}: {}", self.errno())
            }
            OpError::InvalidArgument(what) => write!(f, "{what}: {}", self.errno()),
        }
    }
}

impl core::error::Error for OpError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn names_the_op_the_domain_and_the_code() {
        let create = OpError::Domctl {
            cmd: XEN_DOMCTL_CREATEDOMAIN,
            dom: DomId(0),
            errno: Errno::EINVAL,
        };
        assert_eq!(
            create.to_string(),
            "XEN_DOMCTL_createdomain failed: EINVAL (22)"
        );
        let unpause = OpError::Domctl {
            cmd: XEN_DOMCTL_UNPAUSEDOMAIN,
            dom: DomId(7),
            errno: Errno::ESRCH,
        };
        assert_eq!(
            unpause.to_string(),
            "XEN_DOMCTL_unpausedomain (dom 7) failed: ESRCH (3)"
        );
        let populate = OpError::PopulatePhysmap {
            dom: DomId(3),
            pages: 4096,
            errno: Errno::ENOMEM,
        };
        assert_eq!(
            populate.to_string(),
            "XENMEM_populate_physmap (dom 3, 4096 pages) failed: ENOMEM (12)"
        );
        let param = OpError::SetHvmParam {
            dom: DomId(3),
            index: HVM_PARAM_STORE_PFN,
            errno: Errno::EPERM,
        };
        assert_eq!(
            param.to_string(),
            "HVMOP_set_param (dom 3, HVM_PARAM_STORE_PFN) failed: EPERM (1)"
        );
        let unknown = OpError::Domctl {
            cmd: 999,
            dom: DomId(2),
            errno: Errno(200),
        };
        assert_eq!(
            unknown.to_string(),
            "XEN_DOMCTL op 999 (dom 2) failed: errno 200"
        );
    }

    #[test]
    fn a_refused_image_says_why() {
        let e = OpError::Image(ImageError::NoPvhEntry);
        assert_eq!(
            e.to_string(),
            "image check failed: ENOEXEC: no XEN_ELFNOTE_PHYS32_ENTRY note"
        );
        assert_eq!(Error::from(e), Error::Errno(Errno::ENOEXEC));
    }

    #[test]
    fn converts_to_the_platform_code() {
        let e = OpError::PopulatePhysmap {
            dom: DomId(3),
            pages: 1,
            errno: Errno::ENOMEM,
        };
        assert_eq!(Error::from(e), Error::Errno(Errno::ENOMEM));
        assert_eq!(
            Error::from(OpError::NoMappingSpace { pages: 2 }),
            Error::Grant(GrantStatus::NoSpace)
        );
        assert_eq!(
            Error::from(OpError::TooLittleMemory { kib: 4 }),
            Error::Errno(Errno::EINVAL)
        );
    }
}
