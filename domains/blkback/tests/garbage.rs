//! Garbage never panics: any ring slot, any indirect page, any disk.

use proptest::prelude::*;
use windsor_blkback::vbd::{Ask, Disk};
use windsor_blkback::wire::{parse_indirect_segments, Limits, Request};
use xen::abi::blkif::BLKIF_ENTRY_SIZE;

fn limits() -> impl Strategy<Value = Limits> {
    (0u16..5000, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(m, d, b, f)| Limits {
        max_indirect_segments: m,
        discard: d,
        barrier: b,
        flush: f,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_slot_parses_or_is_rejected_with_its_id(
        mut slot in proptest::collection::vec(any::<u8>(), BLKIF_ENTRY_SIZE),
        op in 0u8..8,
        l in limits(),
        sectors in any::<u64>(),
        ro in any::<bool>(),
    ) {
        // Bias towards known operations so the deep paths are reached.
        slot[0] = if op < 7 { op } else { slot[0] };
        let id = u64::from_le_bytes(slot[8..16].try_into().unwrap());
        match Request::parse(&slot, &l) {
            Ok(req) => {
                prop_assert_eq!(req.id(), id);
                let disk = Disk { sectors, readonly: ro };
                match Ask::of(req) {
                    Ok(ask) => {
                        if let Ok(io) = disk.plan(ask) {
                            prop_assert!(io.data_len() <= 11 * 4096);
                        }
                    }
                    Err(Request::Indirect { nr_segments, pages, .. }) => {
                        prop_assert!(nr_segments >= 1 && nr_segments <= l.max_indirect_segments);
                        prop_assert_eq!(pages.len(), usize::from(nr_segments).div_ceil(512));
                    }
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
            }
            Err(rej) => prop_assert_eq!(rej.id, id),
        }
    }

    #[test]
    fn any_indirect_page_is_validated(
        bytes in proptest::collection::vec(any::<u8>(), 0..9000),
        n in any::<u16>(),
    ) {
        if let Ok(segs) = parse_indirect_segments(&bytes, n) {
            prop_assert_eq!(segs.len(), usize::from(n));
            prop_assert!(segs.iter().all(|s| s.first <= s.last && s.last < 8));
        }
    }
}
