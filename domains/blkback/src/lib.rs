//! The block driver domain.
//!
//! This crate will own the blkif backend (`io/blkif.h`, Xen 4.17): the
//! xenbus handshake with blkfront, the request/response ring over grants,
//! and the storage back-ends (raw image files first).
#![no_std]
#![forbid(unsafe_code)]
