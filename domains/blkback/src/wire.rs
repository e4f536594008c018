//! Typed views of blkif ring requests (`io/blkif.h`, Xen 4.17).
//!
//! Produced by the frontend (a guest's blkfront) in the request ring,
//! consumed here after the slot has been copied into private memory (see
//! [`crate::ring`]). A slot is [`BLKIF_ENTRY_SIZE`] bytes; its first byte is
//! always `operation`, which selects the C struct laid over the rest:
//!
//! ```text
//! read/write/barrier/flush  blkif_request           seg[nr_segments] inline (<= 11)
//! discard                   blkif_request_discard   sector_number, nr_sectors
//! indirect                  blkif_request_indirect  indirect_op, nr_segments, indirect_grefs[]
//! ```
//!
//! [`Request::parse`] validates everything that can be validated from the
//! slot alone (operation, segment counts, each segment's sector range, the
//! number of indirect pages) against the [`Limits`] the backend advertised.
//! A request that fails keeps its `id` and `operation` in [`Rejected`], so
//! the backend can still answer it (`BLKIF_RSP_ERROR` or
//! `BLKIF_RSP_EOPNOTSUPP`) and go on, as Linux's blkback does. The
//! segments of an indirect request live in granted pages; once the backend
//! has copied those pages, [`parse_indirect_segments`] validates them the
//! same way.
//!
//! Sector quantities are in 512-byte units ([`BLKIF_SECTOR_SIZE`]): Windsor
//! never offers `sector-size` other than 512, which is what frontends
//! without `feature-large-sector-size` (Linux's among them) require.

use alloc::vec::Vec;

use xen::abi::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment,
    BLKIF_DISCARD_SECURE, BLKIF_ENTRY_SIZE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR,
    BLKIF_SEGS_PER_INDIRECT_FRAME,
};
use xen::GrantRef;
use zerocopy::FromBytes;

/// 512-byte sectors in one 4 KiB page: a segment's `last_sect` is below this.
pub const SECTORS_PER_PAGE: u8 = (xen::PAGE_SIZE / 512) as u8;

/// Segments a backend may allow in one indirect request: 8 pages of 512.
pub const MAX_INDIRECT_SEGMENTS: u16 =
    (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_FRAME) as u16;

/// What the backend advertised, which bounds what a request may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `feature-max-indirect-segments`; 0 when indirect requests are not
    /// offered (then `BLKIF_OP_INDIRECT` is answered `EOPNOTSUPP`).
    pub max_indirect_segments: u16,
    /// `feature-discard`.
    pub discard: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-flush-cache`.
    pub flush: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_indirect_segments: 256,
            discard: true,
            barrier: true,
            flush: true,
        }
    }
}

/// One validated segment: sectors `first..=last` of the page granted by `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// The grant of the buffer page.
    pub gref: GrantRef,
    /// First 512-byte sector of the page (inclusive), `<= last`.
    pub first: u8,
    /// Last sector (inclusive), `< 8`.
    pub last: u8,
}

impl Segment {
    /// Validates a wire segment.
    pub fn parse(s: &BlkifRequestSegment) -> Option<Segment> {
        (s.first_sect <= s.last_sect && s.last_sect < SECTORS_PER_PAGE).then_some(Segment {
            gref: GrantRef(s.gref),
            first: s.first_sect,
            last: s.last_sect,
        })
    }

    /// Byte offset in the page.
    pub fn offset(&self) -> u16 {
        u16::from(self.first) * 512
    }

    /// Sectors covered (1..=8).
    pub fn sectors(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Bytes covered.
    pub fn len(&self) -> usize {
        self.sectors() as usize * 512
    }

    /// Never empty: a valid segment covers at least one sector.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Direction of a data transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Disk to guest (`BLKIF_OP_READ`).
    Read,
    /// Guest to disk (`BLKIF_OP_WRITE`).
    Write,
}

/// A validated request, as the frontend asked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read or write with inline segments (1..=11).
    Rw {
        /// Echoed in the response.
        id: u64,
        /// Direction.
        dir: Dir,
        /// First sector on disk.
        sector: u64,
        /// The segments, contiguous on disk in order.
        segs: Vec<Segment>,
    },
    /// `BLKIF_OP_FLUSH_DISKCACHE` (`barrier = false`) or
    /// `BLKIF_OP_WRITE_BARRIER` (`barrier = true`), with 0..=11 segments to
    /// write. Windsor treats both alike: every earlier request completes,
    /// the segments (if any) are written, then the storage is flushed, and
    /// only then does a later request start. That is at least as strong as
    /// `blkif.h` asks of a barrier and of a flush (Linux sends the data of a
    /// flush with its pre-flush semantics, and a FUA write as a barrier).
    Flush {
        /// Echoed in the response.
        id: u64,
        /// Which of the two operations it was (echoed in the response).
        barrier: bool,
        /// First sector of the data.
        sector: u64,
        /// The data to write, possibly none.
        segs: Vec<Segment>,
    },
    /// `BLKIF_OP_DISCARD`.
    Discard {
        /// Echoed in the response.
        id: u64,
        /// First sector.
        sector: u64,
        /// Sectors to discard.
        nr_sectors: u64,
        /// `BLKIF_DISCARD_SECURE`.
        secure: bool,
    },
    /// `BLKIF_OP_INDIRECT`: the segments are in granted pages the backend
    /// must fetch, then check with [`parse_indirect_segments`].
    Indirect {
        /// Echoed in the response.
        id: u64,
        /// Direction (`indirect_op`).
        dir: Dir,
        /// First sector on disk.
        sector: u64,
        /// Segments (1..=the advertised maximum).
        nr_segments: u16,
        /// Grants of the pages holding the segments, exactly as many as
        /// `nr_segments` needs.
        pages: Vec<GrantRef>,
    },
}

impl Request {
    /// The `id` to echo.
    pub fn id(&self) -> u64 {
        match self {
            Request::Rw { id, .. }
            | Request::Flush { id, .. }
            | Request::Discard { id, .. }
            | Request::Indirect { id, .. } => *id,
        }
    }

    /// The `operation` to echo in the response. For an indirect request
    /// that is its `indirect_op` (read or write), as Linux's blkback
    /// answers and Linux's blkfront checks (a response carrying
    /// `BLKIF_OP_INDIRECT` makes it disable the disk).
    pub fn operation(&self) -> u8 {
        match self {
            Request::Rw { dir: Dir::Read, .. } => BLKIF_OP_READ,
            Request::Rw {
                dir: Dir::Write, ..
            } => BLKIF_OP_WRITE,
            Request::Flush { barrier: true, .. } => BLKIF_OP_WRITE_BARRIER,
            Request::Flush { barrier: false, .. } => BLKIF_OP_FLUSH_DISKCACHE,
            Request::Discard { .. } => BLKIF_OP_DISCARD,
            Request::Indirect { dir: Dir::Read, .. } => BLKIF_OP_READ,
            Request::Indirect {
                dir: Dir::Write, ..
            } => BLKIF_OP_WRITE,
        }
    }

    /// Validates one ring slot (at least [`BLKIF_ENTRY_SIZE`] bytes; a
    /// shorter one is rejected with id 0).
    pub fn parse(slot: &[u8], limits: &Limits) -> Result<Request, Rejected> {
        let Ok((r, _)) = BlkifRequest::read_from_prefix(slot) else {
            return Err(Rejected::new(0, 0, Reason::Truncated));
        };
        if slot.len() < BLKIF_ENTRY_SIZE {
            return Err(Rejected::new(r.id, r.operation, Reason::Truncated));
        }
        let reject = |why| Err(Rejected::new(r.id, r.operation, why));
        let inline = |n: u8, allow_empty: bool| -> Result<Vec<Segment>, Reason> {
            let n = usize::from(n);
            if n > BLKIF_MAX_SEGMENTS_PER_REQUEST || (n == 0 && !allow_empty) {
                return Err(Reason::SegmentCount);
            }
            r.seg[..n]
                .iter()
                .map(|s| Segment::parse(s).ok_or(Reason::BadSegment))
                .collect()
        };
        match r.operation {
            BLKIF_OP_READ | BLKIF_OP_WRITE => match inline(r.nr_segments, false) {
                Ok(segs) => Ok(Request::Rw {
                    id: r.id,
                    dir: if r.operation == BLKIF_OP_READ {
                        Dir::Read
                    } else {
                        Dir::Write
                    },
                    sector: r.sector_number,
                    segs,
                }),
                Err(why) => reject(why),
            },
            BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
                let barrier = r.operation == BLKIF_OP_WRITE_BARRIER;
                if (barrier && !limits.barrier) || (!barrier && !limits.flush) {
                    return reject(Reason::NotSupported);
                }
                match inline(r.nr_segments, true) {
                    Ok(segs) => Ok(Request::Flush {
                        id: r.id,
                        barrier,
                        sector: r.sector_number,
                        segs,
                    }),
                    Err(why) => reject(why),
                }
            }
            BLKIF_OP_DISCARD => {
                if !limits.discard {
                    return reject(Reason::NotSupported);
                }
                let Ok((d, _)) = BlkifRequestDiscard::read_from_prefix(slot) else {
                    return reject(Reason::Truncated);
                };
                Ok(Request::Discard {
                    id: d.id,
                    sector: d.sector_number,
                    nr_sectors: d.nr_sectors,
                    secure: d.flag & BLKIF_DISCARD_SECURE != 0,
                })
            }
            BLKIF_OP_INDIRECT => {
                if limits.max_indirect_segments == 0 {
                    return reject(Reason::NotSupported);
                }
                let Ok((ind, _)) = BlkifRequestIndirect::read_from_prefix(slot) else {
                    return reject(Reason::Truncated);
                };
                // Answers echo the inner operation (see `operation`).
                let reject = |why| Err(Rejected::new(ind.id, ind.indirect_op, why));
                let dir = match ind.indirect_op {
                    BLKIF_OP_READ => Dir::Read,
                    BLKIF_OP_WRITE => Dir::Write,
                    _ => return reject(Reason::BadIndirectOp),
                };
                let n = ind.nr_segments;
                if n == 0 || n > limits.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS) {
                    return reject(Reason::SegmentCount);
                }
                let pages = usize::from(n).div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
                Ok(Request::Indirect {
                    id: ind.id,
                    dir,
                    sector: ind.sector_number,
                    nr_segments: n,
                    pages: ind.indirect_grefs[..pages]
                        .iter()
                        .map(|&g| GrantRef(g))
                        .collect(),
                })
            }
            _ => reject(Reason::NotSupported),
        }
    }
}

/// Validates the first `nr_segments` segments of the indirect pages of a
/// request (the pages' bytes, concatenated, as copied from the grants).
pub fn parse_indirect_segments(pages: &[u8], nr_segments: u16) -> Result<Vec<Segment>, Reason> {
    let size = core::mem::size_of::<BlkifRequestSegment>();
    let n = usize::from(nr_segments);
    let Some(bytes) = pages.get(..n * size) else {
        return Err(Reason::Truncated);
    };
    bytes
        .chunks_exact(size)
        .map(|c| {
            BlkifRequestSegment::read_from_bytes(c)
                .ok()
                .and_then(|s| Segment::parse(&s))
                .ok_or(Reason::BadSegment)
        })
        .collect()
}

/// Why a request cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reason {
    /// The slot or the indirect pages are shorter than the request needs.
    #[error("request truncated")]
    Truncated,
    /// An operation the backend does not know or did not offer.
    #[error("operation not supported")]
    NotSupported,
    /// `nr_segments` is 0 (for a read or write) or above the limit.
    #[error("bad segment count")]
    SegmentCount,
    /// A segment with `first_sect > last_sect` or `last_sect >= 8`.
    #[error("bad segment sector range")]
    BadSegment,
    /// An indirect request whose `indirect_op` is not read or write.
    #[error("bad indirect operation")]
    BadIndirectOp,
    /// The sectors lie (partly) beyond the end of the disk.
    #[error("sectors out of range")]
    OutOfRange,
    /// A write or discard on a read-only disk.
    #[error("disk is read-only")]
    ReadOnly,
    /// A grant could not be copied or mapped.
    #[error("bad grant")]
    BadGrant,
    /// The storage failed.
    #[error("storage I/O error")]
    Io,
}

impl Reason {
    /// The `status` of the response that answers a request refused for
    /// this reason.
    pub fn status(self) -> i16 {
        match self {
            Reason::NotSupported => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

/// A request that fails validation, with what is needed to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("request {id} (op {operation}) rejected: {reason}")]
pub struct Rejected {
    /// The request's `id`.
    pub id: u64,
    /// Its `operation` byte.
    pub operation: u8,
    /// Why.
    pub reason: Reason,
}

impl Rejected {
    /// A rejection.
    pub fn new(id: u64, operation: u8, reason: Reason) -> Self {
        Rejected {
            id,
            operation,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::abi::blkif::BLKIF_RSP_OKAY;
    use zerocopy::IntoBytes;

    fn slot(r: &BlkifRequest) -> [u8; BLKIF_ENTRY_SIZE] {
        let mut s = [0u8; BLKIF_ENTRY_SIZE];
        s.copy_from_slice(r.as_bytes());
        s
    }

    fn seg(gref: u32, first: u8, last: u8) -> BlkifRequestSegment {
        BlkifRequestSegment {
            gref,
            first_sect: first,
            last_sect: last,
            _pad0: 0,
        }
    }

    #[test]
    fn read_with_two_segments() {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_READ,
            nr_segments: 2,
            id: 77,
            sector_number: 100,
            ..Default::default()
        };
        r.seg[0] = seg(9, 0, 7);
        r.seg[1] = seg(10, 2, 3);
        let req = Request::parse(&slot(&r), &Limits::default()).unwrap();
        let Request::Rw {
            id,
            dir,
            sector,
            segs,
        } = &req
        else {
            panic!("{req:?}")
        };
        assert_eq!((*id, *dir, *sector), (77, Dir::Read, 100));
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[1].offset(), segs[1].len()), (1024, 1024));
        assert_eq!(req.operation(), BLKIF_OP_READ);
    }

    #[test]
    fn bad_counts_and_segments_are_rejected_with_their_id() {
        let l = Limits::default();
        let mut r = BlkifRequest {
            operation: BLKIF_OP_WRITE,
            nr_segments: 0,
            id: 5,
            ..Default::default()
        };
        assert_eq!(
            Request::parse(&slot(&r), &l).unwrap_err(),
            Rejected::new(5, BLKIF_OP_WRITE, Reason::SegmentCount)
        );
        r.nr_segments = 12;
        assert_eq!(
            Request::parse(&slot(&r), &l).unwrap_err().reason,
            Reason::SegmentCount
        );
        r.nr_segments = 1;
        r.seg[0] = seg(1, 3, 2);
        assert_eq!(
            Request::parse(&slot(&r), &l).unwrap_err().reason,
            Reason::BadSegment
        );
        r.seg[0] = seg(1, 0, 8);
        assert_eq!(
            Request::parse(&slot(&r), &l).unwrap_err().reason,
            Reason::BadSegment
        );
        r.operation = 0x42;
        let e = Request::parse(&slot(&r), &l).unwrap_err();
        assert_eq!(e.reason.status(), BLKIF_RSP_EOPNOTSUPP);
        assert_ne!(Reason::BadSegment.status(), BLKIF_RSP_OKAY);
    }

    #[test]
    fn flush_may_be_empty_and_can_be_refused() {
        let r = BlkifRequest {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            id: 3,
            ..Default::default()
        };
        let req = Request::parse(&slot(&r), &Limits::default()).unwrap();
        assert!(matches!(req, Request::Flush { barrier: false, ref segs, .. } if segs.is_empty()));
        let no = Limits {
            flush: false,
            ..Limits::default()
        };
        assert_eq!(
            Request::parse(&slot(&r), &no).unwrap_err().reason,
            Reason::NotSupported
        );
    }

    #[test]
    fn discard_and_indirect_use_their_layouts() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: BLKIF_DISCARD_SECURE,
            id: 9,
            sector_number: 8,
            nr_sectors: 16,
            ..Default::default()
        };
        let mut s = [0u8; BLKIF_ENTRY_SIZE];
        s[..32].copy_from_slice(d.as_bytes());
        assert_eq!(
            Request::parse(&s, &Limits::default()).unwrap(),
            Request::Discard {
                id: 9,
                sector: 8,
                nr_sectors: 16,
                secure: true
            }
        );
        let mut ind = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_WRITE,
            nr_segments: 513,
            id: 11,
            sector_number: 4,
            ..Default::default()
        };
        ind.indirect_grefs = [20, 21, 22, 23, 24, 25, 26, 27];
        let mut s = [0u8; BLKIF_ENTRY_SIZE];
        s[..64].copy_from_slice(ind.as_bytes());
        let big = Limits {
            max_indirect_segments: 4096,
            ..Limits::default()
        };
        let req = Request::parse(&s, &big).unwrap();
        assert_eq!(
            req.operation(),
            BLKIF_OP_WRITE,
            "answered as its indirect_op"
        );
        let Request::Indirect { pages, .. } = req else {
            panic!()
        };
        assert_eq!(pages, [GrantRef(20), GrantRef(21)]);
        // Above the advertised limit (256 by default): refused, answered
        // as a write too.
        let e = Request::parse(&s, &Limits::default()).unwrap_err();
        assert_eq!(
            (e.reason, e.operation),
            (Reason::SegmentCount, BLKIF_OP_WRITE)
        );
        s[1] = BLKIF_OP_FLUSH_DISKCACHE;
        assert_eq!(
            Request::parse(&s, &big).unwrap_err().reason,
            Reason::BadIndirectOp
        );
    }

    #[test]
    fn indirect_pages_are_validated() {
        let mut page = [0u8; 4096];
        page[..8].copy_from_slice(seg(5, 0, 7).as_bytes());
        page[8..16].copy_from_slice(seg(6, 1, 1).as_bytes());
        let segs = parse_indirect_segments(&page, 2).unwrap();
        assert_eq!(segs[1].gref, GrantRef(6));
        page[8..16].copy_from_slice(seg(6, 5, 1).as_bytes());
        assert_eq!(parse_indirect_segments(&page, 2), Err(Reason::BadSegment));
        assert_eq!(parse_indirect_segments(&page, 600), Err(Reason::Truncated));
    }

    #[test]
    fn short_slots_are_rejected() {
        assert_eq!(
            Request::parse(&[0u8; 10], &Limits::default())
                .unwrap_err()
                .reason,
            Reason::Truncated
        );
    }
}
