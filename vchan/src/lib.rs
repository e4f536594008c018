//! libxenvchan-compatible channels between domains.
//!
//! This crate will own the shared ring layout of `io/libxenvchan.h` (Xen
//! 4.17), the xenstore rendezvous under
//! `/local/domain/<server>/data/vchan/<client>/<port>`, server and client
//! ends in stream and packet modes, and the loom models of its ring indices.
//! It is written against the platform traits of the `xen` crate.
#![no_std]
#![forbid(unsafe_code)]
