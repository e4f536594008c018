//! The shared page of a vchan: `struct vchan_interface` of
//! `xen/include/public/io/libxenvchan.h` (Xen 4.17), byte for byte.
//!
//! The *server* allocates and grants this page (and the ring pages, for
//! orders ≥ 12); the *client* maps it. Both sides then read and write it
//! concurrently. Offsets on x86 (all fields little-endian, naturally
//! aligned):
//!
//! ```text
//!  0  left.cons   u32   client→server ring: consumer (server) index
//!  4  left.prod   u32   client→server ring: producer (client) index
//!  8  right.cons  u32   server→client ring: consumer (client) index
//! 12  right.prod  u32   server→client ring: producer (server) index
//! 16  left_order  u16   log2 of the left ring's size
//! 18  right_order u16   log2 of the right ring's size
//! 20  cli_live    u8    0 exited, 1 connected, 2 not yet connected
//! 21  srv_live    u8    0 exited, 1 connected
//! 22  cli_notify  u8    bits the *client* acts on (set by the server)
//! 23  srv_notify  u8    bits the *server* acts on (set by the client)
//! 24  grants[]    u32…  grant refs of the ring pages: left's, then right's
//! ```
//!
//! Where the rings live depends on their order:
//!
//! * order 10: 1 KiB at offset 1024 of this page;
//! * order 11: 2 KiB at offset 2048 of this page;
//! * order 12..=20: `2^(order-12)` separately granted pages, listed in
//!   `grants[]` (left ring's pages first).
//!
//! The two rings may not both sit in the page at the same place, and the
//! grant list may not run into an in-page ring or past the page. The client
//! reads the orders and the grant list from memory the server controls: they
//! are untrusted and [`Layout::new`] validates them (the checks
//! `libxenvchan`'s `init_gnt_cli` makes, plus the grant-list bound the header
//! states but the C code does not check).
//!
//! Offsets come from the `#[repr(C)]` mirror `xen::abi::vchan`; the test at
//! the end of this file checks them against a second, private mirror of the
//! C struct and the literal offsets above.

use xen::abi::vchan as abi;
use xen::PAGE_SIZE;

/// Byte offsets of the fields of `struct vchan_interface`, taken from the
/// `#[repr(C)]` mirror in [`xen::abi::vchan`] (and checked again against a
/// private mirror by this module's tests).
pub mod field {
    use core::mem::offset_of;
    use xen::abi::vchan::{RingShared, VchanInterface, VCHAN_GRANTS_OFFSET};

    /// `left.cons` (`u32`): the server's consumer index of the left ring.
    pub const LEFT_CONS: usize = offset_of!(VchanInterface, left) + offset_of!(RingShared, cons);
    /// `left.prod` (`u32`): the client's producer index of the left ring.
    pub const LEFT_PROD: usize = offset_of!(VchanInterface, left) + offset_of!(RingShared, prod);
    /// `right.cons` (`u32`): the client's consumer index of the right ring.
    pub const RIGHT_CONS: usize = offset_of!(VchanInterface, right) + offset_of!(RingShared, cons);
    /// `right.prod` (`u32`): the server's producer index of the right ring.
    pub const RIGHT_PROD: usize = offset_of!(VchanInterface, right) + offset_of!(RingShared, prod);
    /// `left_order` (`u16`).
    pub const LEFT_ORDER: usize = offset_of!(VchanInterface, left_order);
    /// `right_order` (`u16`).
    pub const RIGHT_ORDER: usize = offset_of!(VchanInterface, right_order);
    /// `cli_live` (`u8`).
    pub const CLI_LIVE: usize = offset_of!(VchanInterface, cli_live);
    /// `srv_live` (`u8`).
    pub const SRV_LIVE: usize = offset_of!(VchanInterface, srv_live);
    /// `cli_notify` (`u8`).
    pub const CLI_NOTIFY: usize = offset_of!(VchanInterface, cli_notify);
    /// `srv_notify` (`u8`).
    pub const SRV_NOTIFY: usize = offset_of!(VchanInterface, srv_notify);
    /// `grants[]` (`u32` each).
    pub const GRANTS: usize = VCHAN_GRANTS_OFFSET;
}

/// `VCHAN_NOTIFY_WRITE`: "notify me when you write (produce) data".
pub const NOTIFY_WRITE: u8 = abi::VCHAN_NOTIFY_WRITE;
/// `VCHAN_NOTIFY_READ`: "notify me when you read (consume) data".
pub const NOTIFY_READ: u8 = abi::VCHAN_NOTIFY_READ;

/// `*_live` value: the end has exited (closed).
pub const LIVE_EXITED: u8 = abi::VCHAN_LIVE_EXITED;
/// `*_live` value: the end is connected.
pub const LIVE_CONNECTED: u8 = abi::VCHAN_LIVE_CONNECTED;
/// `cli_live` value: the client has not connected yet.
pub const LIVE_WAITING: u8 = abi::VCHAN_LIVE_WAITING;

/// Order of a ring at [`SMALL_RING_OFFSET`] of the shared page.
pub const SMALL_RING_ORDER: u8 = 10;
/// Offset of an order-10 ring in the shared page.
pub const SMALL_RING_OFFSET: usize = 1024;
/// Order of a ring at [`LARGE_RING_OFFSET`] of the shared page.
pub const LARGE_RING_ORDER: u8 = 11;
/// Offset of an order-11 ring in the shared page.
pub const LARGE_RING_OFFSET: usize = 2048;
/// Smallest valid ring order.
pub const MIN_ORDER: u8 = SMALL_RING_ORDER;
/// Largest ring order libxenvchan accepts (`MAX_RING_SHIFT`): 1 MiB.
pub const MAX_ORDER: u8 = 20;
/// The order at which rings move to their own pages (`PAGE_SHIFT`).
pub const PAGE_ORDER: u8 = 12;

/// Why a pair of ring orders cannot describe a vchan page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// An order is outside `10..=20`.
    #[error("ring order {0} outside 10..=20")]
    BadOrder(u16),
    /// Both rings would occupy the same place in the shared page.
    #[error("both rings have in-page order {0}")]
    SameInPageOrder(u8),
    /// The grant list would overlap an in-page ring or run off the page.
    #[error("grant list of {grants} entries overlaps the ring area")]
    GrantsOverlap {
        /// Number of grant entries the orders need.
        grants: usize,
    },
    /// A requested minimum ring size is larger than the largest ring.
    #[error("requested ring size {0} larger than 1 MiB")]
    TooBig(usize),
}

/// Where one ring's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Inside the shared page at this offset.
    InPage {
        /// Byte offset in the shared page.
        offset: usize,
    },
    /// In separately granted pages: entries `first..first + pages` of `grants[]`.
    Granted {
        /// Index of the first grant entry.
        first: usize,
        /// Number of pages (grant entries).
        pages: usize,
    },
}

/// A validated pair of ring orders and where each ring lives.
///
/// Once built, every offset it yields is inside the shared page or the
/// ring's own pages; nothing derived from it can index out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    left_order: u8,
    right_order: u8,
}

impl Layout {
    /// Validates `left_order` and `right_order` as found in a shared page.
    pub fn new(left_order: u16, right_order: u16) -> Result<Layout, LayoutError> {
        let check = |o: u16| {
            if (u16::from(MIN_ORDER)..=u16::from(MAX_ORDER)).contains(&o) {
                Ok(o as u8)
            } else {
                Err(LayoutError::BadOrder(o))
            }
        };
        let l = check(left_order)?;
        let r = check(right_order)?;
        if l == r && l < PAGE_ORDER {
            return Err(LayoutError::SameInPageOrder(l));
        }
        let layout = Layout {
            left_order: l,
            right_order: r,
        };
        let grants = layout.grant_count();
        let limit = [l, r]
            .iter()
            .filter_map(|&o| in_page_offset(o))
            .min()
            .unwrap_or(PAGE_SIZE);
        if field::GRANTS + grants * 4 > limit {
            return Err(LayoutError::GrantsOverlap { grants });
        }
        Ok(layout)
    }

    /// The orders a server picks for rings of at least `left_min` bytes
    /// (client→server) and `right_min` bytes (server→client), as
    /// `libxenvchan_server_init` does: in-page rings when both fit
    /// (1 KiB + 2 KiB), otherwise one 2 KiB in-page ring when one side fits,
    /// otherwise the smallest power of two ≥ 4 KiB.
    pub fn for_sizes(left_min: usize, right_min: usize) -> Result<Layout, LayoutError> {
        const SMALL: usize = 1 << SMALL_RING_ORDER;
        const LARGE: usize = 1 << LARGE_RING_ORDER;
        for n in [left_min, right_min] {
            if n > 1 << MAX_ORDER {
                return Err(LayoutError::TooBig(n));
            }
        }
        let min_order = |n: usize| {
            let mut o = PAGE_ORDER;
            while n > 1 << o {
                o += 1;
            }
            o
        };
        let (mut l, mut r) = (min_order(left_min), min_order(right_min));
        if left_min <= SMALL && right_min <= LARGE {
            (l, r) = (SMALL_RING_ORDER, LARGE_RING_ORDER);
        } else if left_min <= LARGE && right_min <= SMALL {
            (l, r) = (LARGE_RING_ORDER, SMALL_RING_ORDER);
        } else if left_min <= LARGE {
            l = LARGE_RING_ORDER;
        } else if right_min <= LARGE {
            r = LARGE_RING_ORDER;
        }
        Layout::new(l.into(), r.into())
    }

    /// Order of the left (client→server) ring.
    pub fn left_order(&self) -> u8 {
        self.left_order
    }

    /// Order of the right (server→client) ring.
    pub fn right_order(&self) -> u8 {
        self.right_order
    }

    /// Number of separately granted pages of a ring of `order`.
    pub fn pages(order: u8) -> usize {
        if order >= PAGE_ORDER {
            1 << (order - PAGE_ORDER)
        } else {
            0
        }
    }

    /// Total number of entries in `grants[]`.
    pub fn grant_count(&self) -> usize {
        Self::pages(self.left_order) + Self::pages(self.right_order)
    }

    /// Where the left ring lives.
    pub fn left(&self) -> Placement {
        placement(self.left_order, 0)
    }

    /// Where the right ring lives.
    pub fn right(&self) -> Placement {
        placement(self.right_order, Self::pages(self.left_order))
    }
}

fn in_page_offset(order: u8) -> Option<usize> {
    match order {
        SMALL_RING_ORDER => Some(SMALL_RING_OFFSET),
        LARGE_RING_ORDER => Some(LARGE_RING_OFFSET),
        _ => None,
    }
}

fn placement(order: u8, first: usize) -> Placement {
    match in_page_offset(order) {
        Some(offset) => Placement::InPage { offset },
        None => Placement::Granted {
            first,
            pages: Layout::pages(order),
        },
    }
}

/// Offset of grant entry `i` in the shared page.
pub fn grant_offset(i: usize) -> usize {
    field::GRANTS + 4 * i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C layout of `struct vchan_interface`, mirrored here so the offsets
    /// above are checked by the compiler's own layout algorithm.
    #[repr(C)]
    struct RingShared {
        cons: u32,
        prod: u32,
    }
    #[repr(C)]
    struct VchanInterface {
        left: RingShared,
        right: RingShared,
        left_order: u16,
        right_order: u16,
        cli_live: u8,
        srv_live: u8,
        cli_notify: u8,
        srv_notify: u8,
        grants: [u32; 0],
    }

    #[test]
    fn offsets_match_libxenvchan_h() {
        use core::mem::offset_of;
        assert_eq!(
            offset_of!(VchanInterface, left) + offset_of!(RingShared, cons),
            field::LEFT_CONS
        );
        assert_eq!(
            offset_of!(VchanInterface, left) + offset_of!(RingShared, prod),
            field::LEFT_PROD
        );
        assert_eq!(
            offset_of!(VchanInterface, right) + offset_of!(RingShared, cons),
            field::RIGHT_CONS
        );
        assert_eq!(
            offset_of!(VchanInterface, right) + offset_of!(RingShared, prod),
            field::RIGHT_PROD
        );
        assert_eq!(offset_of!(VchanInterface, left_order), field::LEFT_ORDER);
        assert_eq!(offset_of!(VchanInterface, right_order), field::RIGHT_ORDER);
        assert_eq!(offset_of!(VchanInterface, cli_live), field::CLI_LIVE);
        assert_eq!(offset_of!(VchanInterface, srv_live), field::SRV_LIVE);
        assert_eq!(offset_of!(VchanInterface, cli_notify), field::CLI_NOTIFY);
        assert_eq!(offset_of!(VchanInterface, srv_notify), field::SRV_NOTIFY);
        assert_eq!(offset_of!(VchanInterface, grants), field::GRANTS);
        assert_eq!(core::mem::size_of::<VchanInterface>(), 24);
        // The literal offsets of the module docs.
        assert_eq!(
            [
                field::LEFT_CONS,
                field::LEFT_PROD,
                field::RIGHT_CONS,
                field::RIGHT_PROD
            ],
            [0, 4, 8, 12]
        );
        assert_eq!(
            [field::LEFT_ORDER, field::RIGHT_ORDER, field::GRANTS],
            [16, 18, 24]
        );
        assert_eq!(
            [
                field::CLI_LIVE,
                field::SRV_LIVE,
                field::CLI_NOTIFY,
                field::SRV_NOTIFY
            ],
            [20, 21, 22, 23]
        );
        assert_eq!((NOTIFY_WRITE, NOTIFY_READ), (1, 2));
        assert_eq!((LIVE_EXITED, LIVE_CONNECTED, LIVE_WAITING), (0, 1, 2));
        assert_eq!(abi::ring_offset_in_page(10), Some(SMALL_RING_OFFSET));
        assert_eq!(abi::ring_offset_in_page(11), Some(LARGE_RING_OFFSET));
        for o in MIN_ORDER..=MAX_ORDER {
            assert_eq!(abi::ring_grant_count(o.into()), Layout::pages(o));
        }
    }

    #[test]
    fn server_order_choice_matches_libxenvchan() {
        let l = |a, b| Layout::for_sizes(a, b).map(|l| (l.left_order(), l.right_order()));
        assert_eq!(l(0, 0), Ok((10, 11)));
        assert_eq!(l(1024, 2048), Ok((10, 11)));
        assert_eq!(l(2048, 1024), Ok((11, 10)));
        assert_eq!(l(2048, 2048), Ok((11, 12)));
        assert_eq!(l(4096, 1000), Ok((12, 11)));
        assert_eq!(l(5000, 1 << 16), Ok((13, 16)));
        assert_eq!(l(1 << 20, 1 << 20), Ok((20, 20)));
        assert_eq!(l((1 << 20) + 1, 0), Err(LayoutError::TooBig((1 << 20) + 1)));
    }

    #[test]
    fn placements_and_grants() {
        let lay = Layout::new(13, 16).unwrap();
        assert_eq!(lay.left(), Placement::Granted { first: 0, pages: 2 });
        assert_eq!(
            lay.right(),
            Placement::Granted {
                first: 2,
                pages: 16
            }
        );
        assert_eq!(lay.grant_count(), 18);
        let lay = Layout::new(10, 11).unwrap();
        assert_eq!(lay.left(), Placement::InPage { offset: 1024 });
        assert_eq!(lay.right(), Placement::InPage { offset: 2048 });
        assert_eq!(lay.grant_count(), 0);
        let lay = Layout::new(14, 11).unwrap();
        assert_eq!(lay.left(), Placement::Granted { first: 0, pages: 4 });
        assert_eq!(lay.right(), Placement::InPage { offset: 2048 });
        assert_eq!(grant_offset(3), 36);
    }

    #[test]
    fn hostile_orders_are_refused() {
        assert_eq!(Layout::new(9, 12), Err(LayoutError::BadOrder(9)));
        assert_eq!(Layout::new(12, 21), Err(LayoutError::BadOrder(21)));
        assert_eq!(Layout::new(0xffff, 12), Err(LayoutError::BadOrder(0xffff)));
        assert_eq!(Layout::new(10, 10), Err(LayoutError::SameInPageOrder(10)));
        assert_eq!(Layout::new(11, 11), Err(LayoutError::SameInPageOrder(11)));
        // 256 grants (1 KiB) + 24-byte header run into a ring at 1024.
        assert_eq!(
            Layout::new(10, 20),
            Err(LayoutError::GrantsOverlap { grants: 256 })
        );
        // Two 1 MiB rings: 512 grants = 2048 + 24 bytes, still in the page.
        assert!(Layout::new(20, 20).is_ok());
        assert!(Layout::new(11, 20).is_ok());
        for a in 0..=30u16 {
            for b in 0..=30u16 {
                if let Ok(l) = Layout::new(a, b) {
                    assert!(grant_offset(l.grant_count()) <= PAGE_SIZE);
                }
            }
        }
    }
}
