//! Grant tables, version 1 (`xen/include/public/grant_table.h`, Xen 4.17).
//!
//! The grant table of a domain is produced by that domain (it fills entries
//! to offer its pages to a peer; the domain builder fills the reserved
//! console and xenstore entries of a new domain) and consumed by Xen, which
//! checks and updates the entry's flags when the peer maps or copies.
//! `GNTTABOP_*` arguments are produced by the mapping/copying domain (a
//! backend) and consumed by Xen.
//!
//! ```text
//! grant_entry_v1            0: flags u16 (GTF_*)  2: domid u16  4: frame u32       (8)
//! gnttab_map_grant_ref      0: host_addr  8: flags  12: ref  16: dom u16
//!                          18: status i16  20: handle  24: dev_bus_addr            (32)
//! gnttab_unmap_grant_ref    0: host_addr  8: dev_bus_addr  16: handle  20: status  (24)
//! gnttab_setup_table        0: dom  4: nr_frames  8: status  16: frame_list (ptr)  (24)
//! gnttab_copy_ptr           0: u (ref u32 | gmfn u64)  8: domid u16  10: offset   (16)
//! gnttab_copy               0: source  16: dest  32: len  34: flags  36: status    (40)
//! gnttab_query_size         0: dom  4: nr_frames  8: max_nr_frames  12: status     (16)
//! ```
//!
//! `status` fields hold `GNTST_*` codes: [`GNTST_OKAY`] or a negative value
//! that [`crate::platform::GrantStatus`] decodes (that enum is the one
//! decoder of these codes; [`check_status`] wraps it).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::platform::GrantStatus;

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries below this are reserved for tools.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`: the entry granting the console ring.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// `GNTTAB_RESERVED_XENSTORE`: the entry granting the xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: `domid` may map/copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: `domid` may transfer a page into `frame`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`: the type bits of `flags`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: the peer may only map read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by Xen while the frame is mapped or read. Do not reuse.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by Xen while the frame is mapped writable or written.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`: cache attribute, write-through.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`: cache attribute, cache disable.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`: cache attribute, PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_transfer_committed`: a transfer is in progress.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// `GTF_transfer_completed`: a transfer finished; `frame` holds the MFN.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// The type bits of a grant entry's `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum GrantType {
    /// `GTF_invalid`.
    Invalid = GTF_INVALID,
    /// `GTF_permit_access`.
    PermitAccess = GTF_PERMIT_ACCESS,
    /// `GTF_accept_transfer`.
    AcceptTransfer = GTF_ACCEPT_TRANSFER,
    /// `GTF_transitive`.
    Transitive = GTF_TRANSITIVE,
}

impl GrantType {
    /// The type encoded in `flags` (every 2-bit value is defined).
    pub const fn from_flags(flags: u16) -> Self {
        match flags & GTF_TYPE_MASK {
            GTF_INVALID => Self::Invalid,
            GTF_PERMIT_ACCESS => Self::PermitAccess,
            GTF_ACCEPT_TRANSFER => Self::AcceptTransfer,
            _ => Self::Transitive,
        }
    }
}

/// `struct grant_entry_v1`: one entry of a version 1 grant table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags (written by the granter and by Xen).
    pub flags: u16,
    /// The domain granted access (`domid_t`).
    pub domid: u16,
    /// The granted frame (GFN for auto-translated granters).
    pub frame: u32,
}

/// Grant entries in one 4 KiB frame of a v1 table.
pub const GRANT_ENTRIES_V1_PER_PAGE: usize = crate::PAGE_SIZE / 8;

/// `GNTTABOP_map_grant_ref`: [`GnttabMapGrantRef`].
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`: [`GnttabUnmapGrantRef`].
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`: [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`: [`GnttabDumpTable`].
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`: [`GnttabTransfer`].
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy`: [`GnttabCopy`].
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`: [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`: [`GnttabUnmapAndReplace`].
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version`: [`GnttabSetVersion`].
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames` (v2).
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`: [`GnttabGetVersion`].
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref`.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush` (Arm).
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// `GNTMAP_device_map`: map for I/O devices.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`: map for host CPUs.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`: read-only mapping.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map`: usable by applications too (PV).
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte`: `host_addr` is a PTE address (PV).
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// `GNTMAP_guest_avail_mask`: bits left to the guest.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

/// `GNTST_okay`: success.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr`.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space`.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big`.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain`.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space`.
pub const GNTST_NO_SPACE: i16 = -13;

/// `GNTTABOP_error_msgs`: message for `GNTST_*` code `-i` at index `i`.
pub const GNTTABOP_ERROR_MSGS: [&str; 14] = [
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
];

/// Checks a `status` field: `Ok` for `GNTST_okay`, otherwise the decoded
/// [`GrantStatus`]; codes Xen 4.17 does not define count as
/// [`GrantStatus::GeneralError`].
pub fn check_status(status: i16) -> Result<(), GrantStatus> {
    if status == GNTST_OKAY {
        Ok(())
    } else {
        Err(GrantStatus::from_raw(status).unwrap_or(GrantStatus::GeneralError))
    }
}

/// `struct gnttab_map_grant_ref`: map a peer's grant.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// IN: where to map (guest physical address for HVM/PVH callers).
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the grant reference in `dom`'s table.
    pub r#ref: u32,
    /// IN: the granting domain.
    pub dom: u16,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// OUT: handle for the unmap.
    pub handle: u32,
    /// OUT: bus address for `GNTMAP_device_map`.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`: undo a map.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    /// IN: the address given to the map (0: no host mapping).
    pub host_addr: u64,
    /// IN: the device address of the map (0: none).
    pub dev_bus_addr: u64,
    /// IN: the handle from the map.
    pub handle: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad0: u16,
}

/// `struct gnttab_setup_table`: size a domain's table and learn its frames.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabSetupTable {
    /// IN: the domain.
    pub dom: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// IN: frames wanted.
    pub nr_frames: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad1: [u8; 6],
    /// IN: guest address of a `xen_pfn_t` array receiving the frames.
    pub frame_list: u64,
}

/// `struct gnttab_dump_table`: dump a table to Xen's console.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabDumpTable {
    /// IN: the domain.
    pub dom: u16,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
}

/// `struct gnttab_transfer`: give a page to a peer (PV only in practice).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabTransfer {
    /// IN: the frame given away.
    pub mfn: u64,
    /// IN: the receiving domain.
    pub domid: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// IN: the receiver's `GTF_accept_transfer` grant.
    pub r#ref: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad1: [u8; 6],
}

/// `GNTCOPY_source_gref`: the source is a grant reference, not a frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the destination is a grant reference, not a frame.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `struct gnttab_copy_ptr`: one side of a [`GnttabCopy`].
///
/// `u` is the C union of `ref` (a `grant_ref_t`, in its first four bytes)
/// and `gmfn` (a `xen_pfn_t`); which one is meant depends on the copy's
/// `GNTCOPY_*` flags. Use [`GnttabCopyPtr::gref`] / [`GnttabCopyPtr::frame`]
/// to build one and [`GnttabCopyPtr::grant_ref`] / [`GnttabCopyPtr::gmfn`] to read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// The union `u`, as the 64-bit `gmfn` member.
    pub u: u64,
    /// The domain owning the grant or frame.
    pub domid: u16,
    /// Byte offset within the page.
    pub offset: u16,
    /// Implicit C padding.
    pub _pad0: u32,
}

impl GnttabCopyPtr {
    /// A side named by a grant reference (set `GNTCOPY_*_gref`).
    pub const fn gref(r: u32, domid: u16, offset: u16) -> Self {
        let b = r.to_ne_bytes();
        let u = u64::from_ne_bytes([b[0], b[1], b[2], b[3], 0, 0, 0, 0]);
        Self {
            u,
            domid,
            offset,
            _pad0: 0,
        }
    }

    /// A side named by a frame of `domid` (usually the caller's own).
    pub const fn frame(gmfn: u64, domid: u16, offset: u16) -> Self {
        Self {
            u: gmfn,
            domid,
            offset,
            _pad0: 0,
        }
    }

    /// The union read as `ref`.
    pub const fn grant_ref(&self) -> u32 {
        let b = self.u.to_ne_bytes();
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The union read as `gmfn`.
    pub const fn gmfn(&self) -> u64 {
        self.u
    }
}

/// `struct gnttab_copy`: copy bytes between grants and/or frames.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabCopy {
    /// IN: where to copy from.
    pub source: GnttabCopyPtr,
    /// IN: where to copy to.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy (neither side may cross a page).
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad0: u16,
}

/// `struct gnttab_query_size`: current and maximum table size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabQuerySize {
    /// IN: the domain.
    pub dom: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// OUT: frames in use.
    pub nr_frames: u32,
    /// OUT: the maximum.
    pub max_nr_frames: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad1: u16,
}

/// `struct gnttab_unmap_and_replace`: unmap, moving another mapping in (PV).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabUnmapAndReplace {
    /// IN: the mapped address.
    pub host_addr: u64,
    /// IN: the address whose mapping replaces it.
    pub new_addr: u64,
    /// IN: the handle from the map.
    pub handle: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Implicit C padding.
    pub _pad0: u16,
}

/// `struct gnttab_set_version`: choose grant table version 1 or 2.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabSetVersion {
    /// IN/OUT: the version.
    pub version: u32,
}

/// `struct gnttab_get_version`: read a domain's table version.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct GnttabGetVersion {
    /// IN: the domain.
    pub dom: u16,
    /// Padding.
    pub pad: u16,
    /// OUT: the version.
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_grant_table_h() {
        assert_layout!(GrantEntryV1, size 8, align 4, flags @ 0, domid @ 2, frame @ 4);
        assert_layout!(GnttabMapGrantRef, size 32, align 8,
            host_addr @ 0, flags @ 8, r#ref @ 12, dom @ 16, status @ 18, handle @ 20,
            dev_bus_addr @ 24);
        assert_layout!(GnttabUnmapGrantRef, size 24, align 8,
            host_addr @ 0, dev_bus_addr @ 8, handle @ 16, status @ 20);
        assert_layout!(GnttabSetupTable, size 24, align 8,
            dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 16);
        assert_layout!(GnttabDumpTable, size 4, align 2, dom @ 0, status @ 2);
        assert_layout!(GnttabTransfer, size 24, align 8, mfn @ 0, domid @ 8, r#ref @ 12, status @ 16);
        assert_layout!(GnttabCopyPtr, size 16, align 8, u @ 0, domid @ 8, offset @ 10);
        assert_layout!(GnttabCopy, size 40, align 8,
            source @ 0, dest @ 16, len @ 32, flags @ 34, status @ 36);
        assert_layout!(GnttabQuerySize, size 16, align 4,
            dom @ 0, nr_frames @ 4, max_nr_frames @ 8, status @ 12);
        assert_layout!(GnttabUnmapAndReplace, size 24, align 8,
            host_addr @ 0, new_addr @ 8, handle @ 16, status @ 20);
        assert_layout!(GnttabSetVersion, size 4, align 4, version @ 0);
        assert_layout!(GnttabGetVersion, size 8, align 4, dom @ 0, pad @ 2, version @ 4);
        assert_eq!(GRANT_ENTRIES_V1_PER_PAGE, 512);
    }

    #[test]
    fn copy_ptr_union() {
        let p = GnttabCopyPtr::gref(0x1234_5678, 3, 100);
        assert_eq!(p.grant_ref(), 0x1234_5678);
        assert_eq!(&p.as_bytes()[..4], &0x1234_5678u32.to_ne_bytes());
        assert_eq!(&p.as_bytes()[4..8], &[0; 4]);
        let f = GnttabCopyPtr::frame(0xABCD_EF01_2345, 0x7FF0, 0);
        assert_eq!(f.gmfn(), 0xABCD_EF01_2345);
    }

    #[test]
    fn status_codes_use_platform_decoder() {
        assert_eq!(check_status(GNTST_OKAY), Ok(()));
        assert_eq!(check_status(GNTST_BAD_GNTREF), Err(GrantStatus::BadGntref));
        assert_eq!(check_status(GNTST_NO_SPACE), Err(GrantStatus::NoSpace));
        assert_eq!(check_status(-99), Err(GrantStatus::GeneralError));
        assert_eq!(check_status(5), Err(GrantStatus::GeneralError));
        assert_eq!(
            GNTTABOP_ERROR_MSGS[(-GNTST_PERMISSION_DENIED) as usize],
            "permission denied"
        );
        for code in GNTST_NO_SPACE..GNTST_OKAY {
            assert_eq!(GrantStatus::from_raw(code).map(|s| s as i16), Some(code));
        }
    }

    #[test]
    fn grant_types_decode() {
        assert_eq!(
            GrantType::from_flags(GTF_PERMIT_ACCESS | GTF_READONLY),
            GrantType::PermitAccess
        );
        assert_eq!(GrantType::from_flags(GTF_READING), GrantType::Invalid);
        assert_eq!(GrantType::from_flags(0xFFFF), GrantType::Transitive);
    }
}
