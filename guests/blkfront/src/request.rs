//! Building blkif requests (`io/blkif.h`): direct with up to 11 segments,
//! indirect with the segments in a granted page.

use xen::abi::blkif::{
    BlkifRequest, BlkifRequestIndirect, BlkifRequestSegment, BLKIF_ENTRY_SIZE,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
    BLKIF_OP_WRITE,
};
use xen::GrantRef;
use zerocopy::IntoBytes;

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read into the pages.
    Read,
    /// Write from the pages.
    Write,
    /// Flush the disk's cache (no data).
    Flush,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Read => BLKIF_OP_READ,
            Op::Write => BLKIF_OP_WRITE,
            Op::Flush => BLKIF_OP_FLUSH_DISKCACHE,
        }
    }
}

/// The segments covering `len` bytes from the start of consecutive pages
/// `grefs` (`len` a multiple of 512, at most `grefs.len()` pages).
pub fn segments(grefs: &[GrantRef], len: usize) -> impl Iterator<Item = BlkifRequestSegment> + '_ {
    let pages = len.div_ceil(xen::PAGE_SIZE);
    grefs[..pages.min(grefs.len())]
        .iter()
        .enumerate()
        .map(move |(i, g)| {
            let bytes = (len - i * xen::PAGE_SIZE).min(xen::PAGE_SIZE);
            BlkifRequestSegment {
                gref: g.0,
                first_sect: 0,
                last_sect: (bytes / 512).saturating_sub(1) as u8,
                _pad0: 0,
            }
        })
}

/// A direct request (at most 11 segments): the slot's bytes.
pub fn direct(
    op: Op,
    id: u64,
    sector: u64,
    grefs: &[GrantRef],
    len: usize,
) -> [u8; BLKIF_ENTRY_SIZE] {
    let mut r = BlkifRequest {
        operation: op.code(),
        id,
        sector_number: sector,
        ..Default::default()
    };
    if op != Op::Flush {
        for (i, s) in segments(grefs, len)
            .take(BLKIF_MAX_SEGMENTS_PER_REQUEST)
            .enumerate()
        {
            r.seg[i] = s;
            r.nr_segments = i as u8 + 1;
        }
    }
    let mut slot = [0u8; BLKIF_ENTRY_SIZE];
    slot.copy_from_slice(r.as_bytes());
    slot
}

/// An indirect read or write: the slot's bytes, and the segment array to
/// put in the indirect page granted as `indirect` (written into `page`,
/// which must hold 8 bytes per segment).
pub fn indirect(
    op: Op,
    id: u64,
    sector: u64,
    grefs: &[GrantRef],
    len: usize,
    indirect: GrantRef,
    page: &mut [u8],
) -> [u8; BLKIF_ENTRY_SIZE] {
    let mut n = 0u16;
    for (i, s) in segments(grefs, len).enumerate() {
        page[i * 8..i * 8 + 8].copy_from_slice(s.as_bytes());
        n += 1;
    }
    let mut r = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: op.code(),
        nr_segments: n,
        id,
        sector_number: sector,
        ..Default::default()
    };
    r.indirect_grefs[0] = indirect.0;
    let mut slot = [0u8; BLKIF_ENTRY_SIZE];
    slot[..64].copy_from_slice(r.as_bytes());
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_partial_last_page() {
        let g = [GrantRef(8), GrantRef(9)];
        let s: alloc::vec::Vec<_> = segments(&g, 4096 + 1024).collect();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].first_sect, s[0].last_sect), (0, 7));
        assert_eq!((s[1].gref, s[1].last_sect), (9, 1));
        let slot = direct(Op::Write, 5, 10, &g, 8192);
        assert_eq!(slot[0], BLKIF_OP_WRITE);
        assert_eq!(slot[1], 2);
        let mut page = [0u8; 16];
        let slot = indirect(Op::Read, 6, 0, &g, 8192, GrantRef(30), &mut page);
        assert_eq!(
            (slot[0], slot[1], slot[2]),
            (BLKIF_OP_INDIRECT, BLKIF_OP_READ, 2)
        );
        assert_eq!(page[8], 9);
    }
}
