//! The xenstore domain.
//!
//! This crate will own the `no_std` xenstore core (the tree, permissions,
//! transactions, watches and quotas, the `xs_wire.h` codec), its transports
//! (the xenbus ring over the platform traits, a Unix socket), persistence and
//! replication, and the `windsor-xenstored` daemon.
#![no_std]
#![forbid(unsafe_code)]
