//! A ring slot, the indirect pages behind it and a disk, all arbitrary:
//! parsing and planning must never panic, every rejection keeps the
//! request's id, and a planned transfer stays inside the disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_blkback::vbd::{Ask, Disk, Io};
use windsor_blkback::wire::{parse_indirect_segments, Limits, Request};
use xen::abi::blkif::BLKIF_ENTRY_SIZE;

fuzz_target!(|data: &[u8]| {
    if data.len() < BLKIF_ENTRY_SIZE + 10 {
        return;
    }
    let (head, rest) = data.split_at(10);
    let (slot, pages) = rest.split_at(BLKIF_ENTRY_SIZE);
    let limits = Limits {
        max_indirect_segments: u16::from_le_bytes([head[0], head[1]]),
        discard: head[2] & 1 != 0,
        barrier: head[2] & 2 != 0,
        flush: head[2] & 4 != 0,
    };
    let disk = Disk {
        sectors: u64::from(u32::from_le_bytes([head[3], head[4], head[5], head[6]])),
        readonly: head[7] & 1 != 0,
    };
    let id = u64::from_le_bytes(slot[8..16].try_into().unwrap());
    let req = match Request::parse(slot, &limits) {
        Ok(r) => r,
        Err(rej) => {
            assert_eq!(rej.id, id);
            return;
        }
    };
    let ask = match Ask::of(req) {
        Ok(ask) => ask,
        Err(Request::Indirect { dir, sector, nr_segments, .. }) => {
            match parse_indirect_segments(pages, nr_segments) {
                Ok(segs) => Ask::Rw(dir, sector, segs),
                Err(_) => return,
            }
        }
        Err(_) => unreachable!("only indirect requests are handed back"),
    };
    if let Ok(io) = disk.plan(ask) {
        let end = match &io {
            Io::Read { offset, .. } | Io::Write { offset, .. } | Io::Flush { offset, .. } => {
                offset + io.data_len() as u64
            }
            Io::Discard { offset, len } => offset + len,
        };
        assert!(end <= disk.sectors * 512 || matches!(io, Io::Flush { ref segs, .. } if segs.is_empty()));
    }
});
