//! The libxenvchan shared page (`xen/include/public/io/libxenvchan.h`,
//! Xen 4.17).
//!
//! Produced by the vchan server (it allocates and grants the page, fills the
//! orders and grant list) and by both ends at run time (ring indices, live
//! and notify bytes); consumed by the client, which maps the page from the
//! grant reference it finds in xenstore. `left` carries client-to-server
//! bytes, `right` server-to-client.
//!
//! ```text
//!  0: left  { cons u32, prod u32 }     client writes, server reads
//!  8: right { cons u32, prod u32 }     server writes, client reads
//! 16: left_order u16  18: right_order u16
//! 20: cli_live u8  21: srv_live u8  22: cli_notify u8  23: srv_notify u8
//! 24: grants[]  u32 grant refs, left ring's first, then right's
//!
//! order 10: ring at byte 1024 of this page; 11: at byte 2048;
//! order >= 12: its own 2^(order-12) granted pages, listed in grants[]
//! ```
//!
//! `grants[]` is a C flexible array member; Rust has no such field, so
//! [`VCHAN_GRANTS_OFFSET`] gives its offset and [`VchanInterface`] stops
//! before it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VCHAN_NOTIFY_WRITE`: send a notification when data is written.
pub const VCHAN_NOTIFY_WRITE: u8 = 0x1;
/// `VCHAN_NOTIFY_READ`: send a notification when data is read.
pub const VCHAN_NOTIFY_READ: u8 = 0x2;

/// `cli_live`/`srv_live`: that end has exited.
pub const VCHAN_LIVE_EXITED: u8 = 0;
/// `cli_live`/`srv_live`: that end is connected.
pub const VCHAN_LIVE_CONNECTED: u8 = 1;
/// `cli_live`: the client has not connected yet.
pub const VCHAN_LIVE_WAITING: u8 = 2;

/// Order of a ring stored at byte 1024 of the shared page.
pub const VCHAN_ORDER_IN_PAGE_1024: u16 = 10;
/// Order of a ring stored at byte 2048 of the shared page.
pub const VCHAN_ORDER_IN_PAGE_2048: u16 = 11;
/// Smallest order of a ring in its own granted pages.
pub const VCHAN_ORDER_MIN_GRANTED: u16 = 12;

/// `struct ring_shared`: the indices of one direction.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RingShared {
    /// Bytes consumed (free-running).
    pub cons: u32,
    /// Bytes produced (free-running).
    pub prod: u32,
}

/// `struct vchan_interface`, without the flexible `grants[]`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VchanInterface {
    /// Client-to-server ring indices.
    pub left: RingShared,
    /// Server-to-client ring indices.
    pub right: RingShared,
    /// log2 of the left ring's size.
    pub left_order: u16,
    /// log2 of the right ring's size.
    pub right_order: u16,
    /// Client liveness (`VCHAN_LIVE_*`).
    pub cli_live: u8,
    /// Server liveness (`VCHAN_LIVE_*`).
    pub srv_live: u8,
    /// `VCHAN_NOTIFY_*` bits the client asks for.
    pub cli_notify: u8,
    /// `VCHAN_NOTIFY_*` bits the server asks for.
    pub srv_notify: u8,
}

/// Byte offset of `grants[]` in the shared page.
pub const VCHAN_GRANTS_OFFSET: usize = core::mem::size_of::<VchanInterface>();

/// Where a ring of `order` lives: `Some(byte offset in the shared page)` for
/// orders 10 and 11, `None` for a ring in its own granted pages.
pub const fn ring_offset_in_page(order: u16) -> Option<usize> {
    match order {
        VCHAN_ORDER_IN_PAGE_1024 => Some(1024),
        VCHAN_ORDER_IN_PAGE_2048 => Some(2048),
        _ => None,
    }
}

/// Grant references a ring of `order` needs in `grants[]` (0 for in-page rings).
pub const fn ring_grant_count(order: u16) -> usize {
    if order >= VCHAN_ORDER_MIN_GRANTED && order < 12 + 31 {
        1 << (order - VCHAN_ORDER_MIN_GRANTED)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_libxenvchan_h() {
        assert_layout!(RingShared, size 8, align 4, cons @ 0, prod @ 4);
        assert_layout!(VchanInterface, size 24, align 4,
            left @ 0, right @ 8, left_order @ 16, right_order @ 18, cli_live @ 20,
            srv_live @ 21, cli_notify @ 22, srv_notify @ 23);
        assert_eq!(VCHAN_GRANTS_OFFSET, 24);
    }

    #[test]
    fn ring_placement() {
        assert_eq!(ring_offset_in_page(10), Some(1024));
        assert_eq!(ring_offset_in_page(11), Some(2048));
        assert_eq!(ring_offset_in_page(12), None);
        assert_eq!(ring_grant_count(10), 0);
        assert_eq!(ring_grant_count(12), 1);
        assert_eq!(ring_grant_count(14), 4);
        assert_eq!(ring_grant_count(u16::MAX), 0);
    }
}
