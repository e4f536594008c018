//! One virtual block device: what a validated request means for the disk.
//!
//! [`Disk`] is what the backend knows of the storage behind a VBD (its
//! size in 512-byte sectors, whether it is read-only). [`Disk::plan`] turns
//! a validated [`Request`](crate::wire::Request) (with the segments of an
//! indirect request already fetched) into an [`Io`]: byte offsets on the
//! disk and the segments to copy, checked against the disk's end with
//! overflow-safe arithmetic. Nothing here touches memory or storage.
//!
//! Ordering ([`Io::is_ordered`]): a flush or barrier waits until every
//! earlier request of its ring has completed, runs alone, and completes
//! before any later request starts; reads, writes and discards run in any
//! order, as `blkif.h` allows. A response is sent only when its I/O is
//! done, so every write acknowledged before a flush's response is in the
//! storage's stable state once that response is sent.

use alloc::vec::Vec;

use xen::abi::blkif::BLKIF_SECTOR_SIZE;

use crate::wire::{Dir, Reason, Request, Segment};

/// What the backend knows of a VBD's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Refuse writes and discards.
    pub readonly: bool,
}

/// A request resolved against the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Io {
    /// Read the bytes at `offset` into the segments, in order.
    Read {
        /// Byte offset on the disk.
        offset: u64,
        /// Where the bytes go.
        segs: Vec<Segment>,
    },
    /// Write the segments, in order, at `offset`.
    Write {
        /// Byte offset on the disk.
        offset: u64,
        /// Where the bytes come from.
        segs: Vec<Segment>,
    },
    /// Write the segments (if any) at `offset`, then make everything
    /// written so far stable.
    Flush {
        /// Byte offset of the data.
        offset: u64,
        /// The data, possibly none.
        segs: Vec<Segment>,
    },
    /// Forget `len` bytes at `offset`.
    Discard {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
}

impl Io {
    /// A flush or barrier: runs after every earlier request and before
    /// every later one.
    pub fn is_ordered(&self) -> bool {
        matches!(self, Io::Flush { .. })
    }

    /// Bytes of data moved between guest and disk.
    pub fn data_len(&self) -> usize {
        match self {
            Io::Read { segs, .. } | Io::Write { segs, .. } | Io::Flush { segs, .. } => {
                segs.iter().map(Segment::len).sum()
            }
            Io::Discard { .. } => 0,
        }
    }
}

/// What a request asks, before it is checked against the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Transfer `segs` at `sector`.
    Rw(Dir, u64, Vec<Segment>),
    /// Flush (or barrier), with optional data at `sector`.
    Flush(u64, Vec<Segment>),
    /// Discard `nr` sectors at `sector`.
    Discard(u64, u64),
}

impl Ask {
    /// What a direct request asks; an indirect one is handed back, since
    /// its segments are in pages still to be fetched (then build
    /// [`Ask::Rw`] from them).
    pub fn of(req: Request) -> Result<Ask, Request> {
        match req {
            Request::Rw {
                dir, sector, segs, ..
            } => Ok(Ask::Rw(dir, sector, segs)),
            Request::Flush { sector, segs, .. } => Ok(Ask::Flush(sector, segs)),
            Request::Discard {
                sector, nr_sectors, ..
            } => Ok(Ask::Discard(sector, nr_sectors)),
            ind @ Request::Indirect { .. } => Err(ind),
        }
    }
}

impl Disk {
    /// Checks `ask` against the disk: the sectors must lie inside it, and a
    /// read-only disk takes no writes or discards.
    pub fn plan(&self, ask: Ask) -> Result<Io, Reason> {
        let end_ok = |sector: u64, n: u64| -> Result<u64, Reason> {
            let end = sector.checked_add(n).ok_or(Reason::OutOfRange)?;
            if end > self.sectors {
                return Err(Reason::OutOfRange);
            }
            // The end in bytes must fit too (a disk claiming 2^64 sectors).
            end.checked_mul(BLKIF_SECTOR_SIZE)
                .ok_or(Reason::OutOfRange)?;
            Ok(sector * BLKIF_SECTOR_SIZE)
        };
        let total = |segs: &[Segment]| segs.iter().map(Segment::sectors).sum::<u64>();
        match ask {
            Ask::Rw(dir, sector, segs) => {
                let offset = end_ok(sector, total(&segs))?;
                match dir {
                    Dir::Read => Ok(Io::Read { offset, segs }),
                    Dir::Write if self.readonly => Err(Reason::ReadOnly),
                    Dir::Write => Ok(Io::Write { offset, segs }),
                }
            }
            Ask::Flush(sector, segs) => {
                if segs.is_empty() {
                    return Ok(Io::Flush { offset: 0, segs });
                }
                if self.readonly {
                    return Err(Reason::ReadOnly);
                }
                let offset = end_ok(sector, total(&segs))?;
                Ok(Io::Flush { offset, segs })
            }
            Ask::Discard(sector, nr) => {
                if self.readonly {
                    return Err(Reason::ReadOnly);
                }
                let offset = end_ok(sector, nr)?;
                Ok(Io::Discard {
                    offset,
                    len: nr * BLKIF_SECTOR_SIZE,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use xen::GrantRef;

    fn seg(first: u8, last: u8) -> Segment {
        Segment {
            gref: GrantRef(8),
            first,
            last,
        }
    }

    #[test]
    fn in_range_requests_get_byte_offsets() {
        let d = Disk {
            sectors: 64,
            readonly: false,
        };
        let io = d.plan(Ask::Rw(Dir::Read, 56, vec![seg(0, 7)])).unwrap();
        assert_eq!(
            io,
            Io::Read {
                offset: 56 * 512,
                segs: vec![seg(0, 7)]
            }
        );
        assert_eq!(io.data_len(), 4096);
        assert!(!io.is_ordered());
        let f = d.plan(Ask::Flush(u64::MAX, vec![])).unwrap();
        assert!(f.is_ordered());
    }

    #[test]
    fn out_of_range_and_overflow_are_refused() {
        let d = Disk {
            sectors: 64,
            readonly: false,
        };
        assert_eq!(
            d.plan(Ask::Rw(Dir::Read, 57, vec![seg(0, 7)])),
            Err(Reason::OutOfRange)
        );
        assert_eq!(
            d.plan(Ask::Rw(Dir::Write, u64::MAX - 2, vec![seg(0, 7)])),
            Err(Reason::OutOfRange)
        );
        assert_eq!(d.plan(Ask::Discard(1, u64::MAX)), Err(Reason::OutOfRange));
        assert_eq!(
            d.plan(Ask::Discard(0, 64)),
            Ok(Io::Discard {
                offset: 0,
                len: 64 * 512
            })
        );
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let d = Disk {
            sectors: 64,
            readonly: true,
        };
        assert_eq!(
            d.plan(Ask::Rw(Dir::Write, 0, vec![seg(0, 0)])),
            Err(Reason::ReadOnly)
        );
        assert_eq!(
            d.plan(Ask::Flush(0, vec![seg(0, 0)])),
            Err(Reason::ReadOnly)
        );
        assert_eq!(d.plan(Ask::Discard(0, 1)), Err(Reason::ReadOnly));
        assert!(d.plan(Ask::Flush(0, vec![])).is_ok());
        assert!(d.plan(Ask::Rw(Dir::Read, 0, vec![seg(0, 0)])).is_ok());
    }
}
