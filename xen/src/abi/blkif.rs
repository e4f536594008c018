//! The block device protocol (`xen/include/public/io/blkif.h`, Xen 4.17).
//!
//! One [`super::ring`] ring per queue, set up by the frontend (a guest's
//! blkfront), served by the backend (Windsor's blkback). The frontend
//! produces requests: [`BlkifRequest`] for read/write/flush/barrier,
//! [`BlkifRequestDiscard`] for `BLKIF_OP_DISCARD`, [`BlkifRequestIndirect`]
//! for `BLKIF_OP_INDIRECT`; all three share one ring slot (the first byte is
//! always `operation`). The backend answers [`BlkifResponse`]s.
//!
//! ```text
//! blkif_request_segment   0: gref u32  4: first_sect u8  5: last_sect u8                (8)
//! blkif_request           0: operation u8  1: nr_segments u8  2: handle u16  8: id u64
//!                        16: sector_number u64  24: seg[11]                              (112)
//! blkif_request_discard   0: operation  1: flag  2: handle  8: id  16: sector_number
//!                        24: nr_sectors u64                                              (32)
//! blkif_request_indirect  0: operation  1: indirect_op  2: nr_segments u16  8: id
//!                        16: sector_number  24: handle u16  28: indirect_grefs[8]        (64)
//! blkif_response          0: id u64  8: operation u8  10: status i16                     (16)
//! ring entry: 112 bytes -> 32 per 4 KiB page
//! ```
//!
//! Sectors are 512 bytes regardless of the disk's sector size; a segment
//! covers sectors `first_sect..=last_sect` (at most 7) of one granted page.
//! All of a request is guest-controlled: check `nr_segments` and every
//! segment before use.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{entry_size, ring_size};

/// `BLKIF_OP_READ`.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER`: write, ordered after all earlier writes.
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE`: flush the disk's write cache.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_RESERVED_1`: used by some Linux versions, never by Windsor.
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// `BLKIF_OP_DISCARD`: [`BlkifRequestDiscard`].
pub const BLKIF_OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT`: [`BlkifRequestIndirect`].
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// The `operation` of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlkifOp {
    /// `BLKIF_OP_READ`.
    Read = BLKIF_OP_READ,
    /// `BLKIF_OP_WRITE`.
    Write = BLKIF_OP_WRITE,
    /// `BLKIF_OP_WRITE_BARRIER`.
    WriteBarrier = BLKIF_OP_WRITE_BARRIER,
    /// `BLKIF_OP_FLUSH_DISKCACHE`.
    FlushDiskcache = BLKIF_OP_FLUSH_DISKCACHE,
    /// `BLKIF_OP_RESERVED_1`.
    Reserved1 = BLKIF_OP_RESERVED_1,
    /// `BLKIF_OP_DISCARD`.
    Discard = BLKIF_OP_DISCARD,
    /// `BLKIF_OP_INDIRECT`.
    Indirect = BLKIF_OP_INDIRECT,
}

impl BlkifOp {
    /// Decodes an operation byte; `None` for unknown values.
    pub const fn from_raw(v: u8) -> Option<Self> {
        Some(match v {
            BLKIF_OP_READ => Self::Read,
            BLKIF_OP_WRITE => Self::Write,
            BLKIF_OP_WRITE_BARRIER => Self::WriteBarrier,
            BLKIF_OP_FLUSH_DISKCACHE => Self::FlushDiskcache,
            BLKIF_OP_RESERVED_1 => Self::Reserved1,
            BLKIF_OP_DISCARD => Self::Discard,
            BLKIF_OP_INDIRECT => Self::Indirect,
            _ => return None,
        })
    }
}

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: indirect pages in one request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments described by one indirect page (`PAGE_SIZE / 8`).
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize =
    crate::PAGE_SIZE / core::mem::size_of::<BlkifRequestSegment>();
/// Bytes per blkif sector.
pub const BLKIF_SECTOR_SIZE: u64 = 512;
/// `BLKIF_DISCARD_SECURE` in [`BlkifRequestDiscard::flag`].
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// `BLKIF_RSP_EOPNOTSUPP`: operation not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// `BLKIF_RSP_ERROR`: the request failed.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_OKAY`.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `VDISK_CDROM` in the backend's `info` node.
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE`.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY`.
pub const VDISK_READONLY: u32 = 0x4;

/// `struct blkif_request_segment`: one granted page of a transfer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestSegment {
    /// Grant of the buffer page.
    pub gref: u32,
    /// First 512-byte sector of the page to transfer (inclusive).
    pub first_sect: u8,
    /// Last sector (inclusive).
    pub last_sect: u8,
    /// Implicit C padding.
    pub _pad0: u16,
}

/// `struct blkif_request`: read, write, barrier or flush.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Segments used in `seg` (at most 11).
    pub nr_segments: u8,
    /// `blkif_vdev_t`: the virtual device.
    pub handle: u16,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First sector on disk.
    pub sector_number: u64,
    /// The segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_discard`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    /// The virtual device.
    pub handle: u16,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First sector to discard.
    pub sector_number: u64,
    /// Sectors to discard.
    pub nr_sectors: u64,
}

/// `struct blkif_request_indirect` (x86_64 layout).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifRequestIndirect {
    /// `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// Segments, described in the indirect pages.
    pub nr_segments: u16,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First sector on disk.
    pub sector_number: u64,
    /// The virtual device.
    pub handle: u16,
    /// Implicit C padding.
    pub _pad1: u16,
    /// Grants of pages holding arrays of [`BlkifRequestSegment`].
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Implicit C padding (tail).
    pub _pad2: u32,
}

/// `struct blkif_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// Implicit C padding.
    pub _pad0: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Implicit C padding (tail).
    pub _pad1: u32,
}

/// Size of a ring entry (`union blkif_sring_entry`).
pub const BLKIF_ENTRY_SIZE: usize = entry_size::<BlkifRequest, BlkifResponse>();
/// `BLK_RING_SIZE` for one 4 KiB page.
pub const BLK_RING_SIZE: u32 = ring_size(BLKIF_ENTRY_SIZE, crate::PAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_blkif_h() {
        assert_layout!(BlkifRequestSegment, size 8, align 4, gref @ 0, first_sect @ 4, last_sect @ 5);
        assert_layout!(BlkifRequest, size 112, align 8,
            operation @ 0, nr_segments @ 1, handle @ 2, id @ 8, sector_number @ 16, seg @ 24);
        assert_layout!(BlkifRequestDiscard, size 32, align 8,
            operation @ 0, flag @ 1, handle @ 2, id @ 8, sector_number @ 16, nr_sectors @ 24);
        assert_layout!(BlkifRequestIndirect, size 64, align 8,
            operation @ 0, indirect_op @ 1, nr_segments @ 2, id @ 8, sector_number @ 16,
            handle @ 24, indirect_grefs @ 28);
        assert_layout!(BlkifResponse, size 16, align 8, id @ 0, operation @ 8, status @ 10);
        assert_eq!(BLKIF_ENTRY_SIZE, 112);
        assert_eq!(BLK_RING_SIZE, 32);
        assert_eq!(BLKIF_SEGS_PER_INDIRECT_FRAME, 512);
    }

    #[test]
    fn ops_decode() {
        assert_eq!(BlkifOp::from_raw(0), Some(BlkifOp::Read));
        assert_eq!(BlkifOp::from_raw(6), Some(BlkifOp::Indirect));
        assert_eq!(BlkifOp::from_raw(7), None);
        assert_eq!(BlkifOp::from_raw(0xff), None);
    }

    #[test]
    fn requests_share_the_operation_byte() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            id: 7,
            ..Default::default()
        };
        let mut slot = [0u8; BLKIF_ENTRY_SIZE];
        slot[..32].copy_from_slice(d.as_bytes());
        let (r, _) = BlkifRequest::read_from_prefix(&slot).unwrap();
        assert_eq!(BlkifOp::from_raw(r.operation), Some(BlkifOp::Discard));
        assert_eq!(r.id, 7);
    }
}
