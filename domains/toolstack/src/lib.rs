//! The toolstack domain (dom0).
//!
//! This crate will own boot orchestration (build the xenstore domain first,
//! introduce every domain to it, then the guests of the boot plan), the PVH
//! domain builder used in Xen mode, the VM lifecycle state machine with
//! XAPI's power states, and device plumbing through xenstore.
#![no_std]
#![forbid(unsafe_code)]
