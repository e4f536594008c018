//! A blkif frontend (`io/blkif.h`, Xen 4.17) for Windsor's own guests.
//!
//! Layers:
//!
//! * [`ring`]: the frontend's indices over the shared ring pages it owns;
//! * [`request`]: read/write/flush requests built from granted pages,
//!   direct (up to 11 segments) or indirect (segments in an indirect page);
//! * [`xenbus`]: the frontend's side of the handshake (backend features in,
//!   ring references and event channel out, states) over a
//!   [`XenStore`](windsor_xenstore_client::XenStore) client;
//! * [`driver`], a blocking driver on the platform traits that grants its
//!   data pages once and reuses them (as a frontend using persistent
//!   grants does); the fuzz-target guest uses it.
//!
//! Everything is `no_std` + alloc (the ring, request and handshake layers
//! are also sans-IO); nothing here is `unsafe`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod request;
pub mod ring;
pub mod xenbus;

pub mod driver;
