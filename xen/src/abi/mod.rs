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
pub mod vchan;
pub mod xen;
pub mod xenbus;
pub mod xs_wire;
