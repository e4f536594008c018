//! The generic shared I/O ring (`xen/include/public/io/ring.h`, Xen 4.17).
//!
//! Every split-driver protocol (netif tx/rx, blkif) lays one page out as an
//! `sring`: a 64-byte header of free-running indices, then an array of
//! entries, each the union of the protocol's request and response. The
//! frontend produces requests (`req_prod`) and consumes responses; the
//! backend the reverse. `req_event`/`rsp_event` say at which index the other
//! side wants an event-channel notification.
//!
//! ```text
//!  0: req_prod u32   4: req_event u32   8: rsp_prod u32   12: rsp_event u32
//! 16: pvt [u8; 4] (netif.smartpoll_active | tapif_user.msg | pvt_pad)
//! 20: __pad [u8; 44]
//! 64: ring[n]  entries of size max(req, rsp), n = __RING_SIZE (a power of two)
//! ```
//!
//! The page is written by both ends at once; read the indices through
//! [`crate::shmem`] atomics at the offsets below and copy entries out before
//! validating them.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `RING_IDX`: a free-running ring index; `idx & (n - 1)` is the slot.
pub type RingIdx = u32;

/// `struct <name>_sring` without its `ring[]` entries: the ring header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SringHeader {
    /// Requests produced (written by the frontend).
    pub req_prod: RingIdx,
    /// Notify the backend when `req_prod` passes this (written by the backend).
    pub req_event: RingIdx,
    /// Responses produced (written by the backend).
    pub rsp_prod: RingIdx,
    /// Notify the frontend when `rsp_prod` passes this (written by the frontend).
    pub rsp_event: RingIdx,
    /// The `pvt` union (`netif.smartpoll_active`, `tapif_user.msg`, `pvt_pad`).
    pub pvt: [u8; 4],
    /// `__pad`: reserved, zero.
    pub _pad: [u8; 44],
}

impl SringHeader {
    /// The state `SHARED_RING_INIT` leaves: indices 0, both event indices 1.
    pub const INIT: SringHeader = SringHeader {
        req_prod: 0,
        req_event: 1,
        rsp_prod: 0,
        rsp_event: 1,
        pvt: [0; 4],
        _pad: [0; 44],
    };
}

/// Byte offset of `ring[0]` in every shared ring.
pub const SRING_RING_OFFSET: usize = core::mem::size_of::<SringHeader>();
/// Byte offset of `req_prod`.
pub const SRING_REQ_PROD_OFFSET: usize = core::mem::offset_of!(SringHeader, req_prod);
/// Byte offset of `req_event`.
pub const SRING_REQ_EVENT_OFFSET: usize = core::mem::offset_of!(SringHeader, req_event);
/// Byte offset of `rsp_prod`.
pub const SRING_RSP_PROD_OFFSET: usize = core::mem::offset_of!(SringHeader, rsp_prod);
/// Byte offset of `rsp_event`.
pub const SRING_RSP_EVENT_OFFSET: usize = core::mem::offset_of!(SringHeader, rsp_event);

/// `__RD32(x)`: `x` rounded down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// `__RING_SIZE` / `__CONST_RING_SIZE`: entries of `entry_size` bytes that
/// fit in a ring of `ring_bytes` (header included), rounded down to a power
/// of two. 0 if not even one fits.
pub const fn ring_size(entry_size: usize, ring_bytes: usize) -> u32 {
    if entry_size == 0 || ring_bytes <= SRING_RING_OFFSET {
        return 0;
    }
    let n = (ring_bytes - SRING_RING_OFFSET) / entry_size;
    let n = if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    };
    round_down_pow2(n)
}

/// Size of `union <name>_sring_entry { Req req; Rsp rsp; }`.
pub const fn entry_size<Req, Rsp>() -> usize {
    let (s1, s2) = (core::mem::size_of::<Req>(), core::mem::size_of::<Rsp>());
    let (a1, a2) = (core::mem::align_of::<Req>(), core::mem::align_of::<Rsp>());
    let size = if s1 > s2 { s1 } else { s2 };
    let align = if a1 > a2 { a1 } else { a2 };
    size.div_ceil(align) * align
}

/// Byte offset of slot `idx` (masked by the ring size `n`, a power of two)
/// in a ring whose entries are `entry_size` bytes.
pub const fn slot_offset(idx: RingIdx, n: u32, entry_size: usize) -> usize {
    SRING_RING_OFFSET + (idx & n.wrapping_sub(1)) as usize * entry_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_ring_h() {
        assert_layout!(SringHeader, size 64, align 4,
            req_prod @ 0, req_event @ 4, rsp_prod @ 8, rsp_event @ 12, pvt @ 16, _pad @ 20);
        assert_eq!(SRING_RING_OFFSET, 64);
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(round_down_pow2(0), 0);
        assert_eq!(round_down_pow2(1), 1);
        assert_eq!(round_down_pow2(36), 32);
        assert_eq!(round_down_pow2(u32::MAX), 1 << 31);
        // blkif: 112-byte entries -> 32; netif tx: 12 -> 256; netif rx: 8 -> 256.
        assert_eq!(ring_size(112, 4096), 32);
        assert_eq!(ring_size(12, 4096), 256);
        assert_eq!(ring_size(8, 4096), 256);
        assert_eq!(ring_size(8, 64), 0);
        assert_eq!(ring_size(0, 4096), 0);
        assert_eq!(ring_size(4096, 4096), 0);
        assert_eq!(entry_size::<[u32; 3], u16>(), 12);
        assert_eq!(entry_size::<[u16; 5], u64>(), 16);
        assert_eq!(slot_offset(33, 32, 112), 64 + 112);
        assert_eq!(SringHeader::INIT.req_event, 1);
    }
}
