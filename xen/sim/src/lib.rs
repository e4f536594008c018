//! The simulated hypervisor (host mode).
#![warn(missing_docs)]
