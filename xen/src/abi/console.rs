//! The PV console ring (`xen/include/public/io/console.h`, Xen 4.17).
//!
//! One page shared by a guest and its console backend (in Windsor, the
//! toolstack): the guest produces `out` bytes and consumes `in`; the backend
//! the reverse. The page's frame and event channel reach the guest through
//! `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN` (or `GNTTAB_RESERVED_CONSOLE`).
//!
//! ```text
//!    0: in  [u8; 1024]   backend -> guest
//! 1024: out [u8; 2048]   guest -> backend
//! 3072: in_cons  3076: in_prod  3080: out_cons  3084: out_prod     (3088)
//! ```
//!
//! Indices are free-running `u32`s; mask them with [`mask_xencons_in`] or
//! [`mask_xencons_out`] (`MASK_XENCONS_IDX(idx, ring)`). Both sides write the
//! page concurrently: go through [`crate::shmem`] at these offsets.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of the `in` ring.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the `out` ring.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// `struct xencons_interface`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenconsInterface {
    /// Input to the guest.
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Output from the guest.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Consumer index of `in` (written by the guest).
    pub in_cons: XenconsRingIdx,
    /// Producer index of `in` (written by the backend).
    pub in_prod: XenconsRingIdx,
    /// Consumer index of `out` (written by the backend).
    pub out_cons: XenconsRingIdx,
    /// Producer index of `out` (written by the guest).
    pub out_prod: XenconsRingIdx,
}

/// `MASK_XENCONS_IDX(idx, intf->in)`.
pub const fn mask_xencons_in(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// `MASK_XENCONS_IDX(idx, intf->out)`.
pub const fn mask_xencons_out(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_console_h() {
        assert_layout!(XenconsInterface, size 3088, align 4,
            r#in @ 0, out @ 1024, in_cons @ 3072, in_prod @ 3076, out_cons @ 3080,
            out_prod @ 3084);
    }

    #[test]
    fn masking() {
        assert_eq!(mask_xencons_in(1024 + 5), 5);
        assert_eq!(mask_xencons_out(2048 + 5), 5);
        assert_eq!(mask_xencons_out(1024 + 5), 1029);
        assert_eq!(mask_xencons_in(u32::MAX), 1023);
    }
}
