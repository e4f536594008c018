//! Mirrors of Xen 4.17's public headers (`xen/include/public/`).
//!
//! One module per header. Every `#[repr(C)]` struct has a test pinning its
//! size and field offsets to the C layout on x86_64.

pub mod errno;
