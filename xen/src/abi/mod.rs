//! Mirrors of Xen 4.17's public headers (`xen/include/public/`).
//!
//! One module per header. Every `#[repr(C)]` struct has a unit test pinning
//! its size, alignment and field offsets to the C layout on x86_64, and
//! `xen/tests/c_layout.rs` checks the same numbers (and the constants) against
//! the real headers compiled by a C compiler.
//!
//! Conventions shared by every module:
//!
//! * Structs keep Xen's field names; their Rust names are the C tag in
//!   CamelCase (`struct sched_poll` is [`sched::SchedPoll`]).
//! * Padding that C inserts implicitly is an explicit `_padN` field, so that
//!   every struct derives zerocopy's `IntoBytes` and can be copied into or out
//!   of shared memory without `unsafe`. `IntoBytes` also proves the fields
//!   tile the struct with no gap, so pinning the offsets of the C fields
//!   pins the padding too; the layout tests list only the C fields.
//! * C unions are mirrored as a word array of the union's size and alignment,
//!   with typed accessors that go through zerocopy (unions cannot derive
//!   `IntoBytes`).
//! * Guest handles (`XEN_GUEST_HANDLE(x)`) are 64-bit guest virtual addresses
//!   on x86_64 and appear as `u64`.
//! * Constants keep Xen's names, minus a leading `__`; where a field has a
//!   closed set of values a small enum with `from_raw` decodes it (bytes from
//!   another domain are untrusted, so unknown values give `None`).

/// Asserts size, alignment and field offsets of a mirror (unit tests only).
#[cfg(test)]
macro_rules! assert_layout {
    ($ty:ty, size $size:expr, align $align:expr $(, $field:ident @ $off:expr)* $(,)?) => {{
        assert_eq!(core::mem::size_of::<$ty>(), $size, "size_of {}", stringify!($ty));
        assert_eq!(core::mem::align_of::<$ty>(), $align, "align_of {}", stringify!($ty));
        $(
            assert_eq!(
                core::mem::offset_of!($ty, $field),
                $off,
                "offset_of {}.{}",
                stringify!($ty),
                stringify!($field)
            );
        )*
    }};
}

pub mod errno;

pub mod blkif;
pub mod console;
pub mod console_io;
pub mod domctl;
pub mod elfnote;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod hvm_save;
pub mod hypercall;
pub mod memory;
pub mod netif;
pub mod ring;
pub mod sched;
pub mod sysctl;
pub mod vchan;
pub mod xen;
pub mod xenbus;
pub mod xs_wire;

#[cfg(test)]
mod tests {
    //! Decoders of peer-controlled values never panic and agree with their
    //! encoders: an exhaustive sweep over the small value spaces.

    use zerocopy::FromBytes;

    #[test]
    fn closed_enums_round_trip_or_reject() {
        for v in 0..=0x1_0000u32 {
            if let Some(t) = super::xs_wire::XsdSockmsgType::from_raw(v) {
                assert_eq!(t as u32, v);
            }
            if let Some(s) = super::xenbus::XenbusState::from_raw(v) {
                assert_eq!(s as u32, v);
            }
            if let Some(s) = super::sched::ShutdownReason::from_raw(v) {
                assert_eq!(s as u32, v);
            }
            if let Some(s) = super::event_channel::EvtchnStat::from_raw(v) {
                assert_eq!(s as u32, v);
            }
            if let Some(s) = super::memory::MapSpace::from_raw(v) {
                assert_eq!(s as u32, v);
            }
            if let Some(s) = super::hvm::HvmMemmapType::from_raw(v) {
                assert_eq!(s as u32, v);
            }
        }
        for v in 0..=u8::MAX {
            if let Some(op) = super::blkif::BlkifOp::from_raw(v) {
                assert_eq!(op as u8, v);
            }
        }
    }

    #[test]
    fn garbage_slots_decode_without_panicking() {
        let mut decoded = 0;
        for ty in 0..=u8::MAX {
            // Byte 5 is `gso.pad`, which encode writes as zero.
            let raw = [ty, 0xa5, 1, 2, 3, 0, 5, 6];
            let slot = super::netif::NetifExtraInfo::read_from_bytes(&raw).unwrap();
            if let Some(e) = slot.decode() {
                assert_eq!(super::netif::NetifExtraInfo::encode(e, 0xa5), slot);
                decoded += 1;
            }
        }
        assert_eq!(decoded, 4);
        for status in 0..64u32 {
            let mut raw = [0xffu8; 24];
            raw[8..12].copy_from_slice(&status.to_ne_bytes());
            let st = super::event_channel::EvtchnStatus::read_from_bytes(&raw).unwrap();
            assert_eq!(st.binding().is_some(), status <= 5);
        }
        for a in 0..=u8::MAX {
            for b in [0u8, b'\n', b'0', b'9', 0xff] {
                let _ = super::xenbus::XenbusState::parse(&[a, b]);
            }
        }
    }
}
