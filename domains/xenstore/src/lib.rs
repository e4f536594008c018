//! The xenstore domain.
//!
//! Layers, bottom up:
//!
//! * [`wire`]: the `xs_wire.h` codec, an incremental decoder that never
//!   reads by itself and bounds every length;
//! * [`path`], [`perms`]: node names and the owner/ACL permission model;
//! * [`store`]: the `no_std`, sans-IO state machine (tree, permissions,
//!   transactions, watches, quotas) that turns requests into queued
//!   replies, watch events, effects for the daemon and mutations for a log;
//! * with `std`: persistence and the `windsor-xenstored` daemon (transports:
//!   the xenbus ring over the platform traits, a Unix socket).
//!
//! It re-exports the client API of `windsor-xenstore-client` as
//! [`client`] ([`client::XenStore`], the trait through which every other
//! domain talks to a xenstore; other crates should depend on the client
//! crate alone) and adds, behind the `test-utils` feature,
//! [`client::MemStore`], an in-memory store for their tests.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod path;
pub mod store;
pub mod xenbus;

// The wire format and permissions are the client crate's; re-exported so
// `crate::wire`, `crate::perms` and the macro keep their paths.
pub use windsor_xenstore_client::{perms, wire, xenstore_via_call};

#[cfg(any(feature = "std", feature = "test-utils"))]
extern crate std;

pub use store::{Config, ConnId, Effect, HandleError, Mutation, Quotas, Store};
#[cfg(feature = "std")]
pub mod daemon;
#[cfg(feature = "std")]
pub mod persist;
#[cfg(feature = "std")]
pub mod stream;
