//! The xenstore domain.
//!
//! This crate will own the `no_std` xenstore core (the tree, permissions,
//! transactions, watches and quotas, the `xs_wire.h` codec), its transports
//! (the xenbus ring over the platform traits, a Unix socket), persistence and
//! replication, and the `windsor-xenstored` daemon.
//!
//! Today it provides [`client::XenStore`], the trait through which every
//! other domain (toolstack, netback, blkback, vchan rendezvous) talks to a
//! xenstore, and, behind the `test-utils` feature, [`client::MemStore`], an
//! in-memory store for their tests.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
#[cfg(feature = "std")]
pub mod persist;
#[cfg(feature = "std")]
pub mod daemon;
