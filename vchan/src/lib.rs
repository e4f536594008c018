//! libxenvchan-compatible channels between domains.
//!
//! A vchan is a pair of byte rings in memory one domain (the *server*)
//! grants to another (the *client*), plus an event channel, advertised in
//! xenstore under `/local/domain/<server>/data/vchan/<client>/<port>`. This
//! crate speaks the protocol of Xen 4.17's `libxenvchan` byte for byte, so a
//! Linux domain using the C library can talk to a Windsor domain.
//!
//! `#![no_std]` + `alloc`, and free of `unsafe`: every access to shared
//! memory goes through [`xen::shmem`]. Layers, bottom up:
//!
//! * [`layout`]: the shared page (`io/libxenvchan.h`): field offsets, where
//!   rings of each order live, validation of orders and grant lists;
//! * [`sync`]: the atomic-handle seam, so the ring logic runs on the shared
//!   page in production and on `loom` atomics in the models;
//! * [`ring`]: the sans-IO ring protocol (indices, notification bits, live
//!   flags), defensive against a hostile peer;
//! * [`rendezvous`]: the xenstore entries (`ring-ref`, `event-channel`);
//! * [`channel`]: [`Vchan`], the server and client ends over the platform
//!   traits (`GrantTable` + `EventChannel`), blocking or not, stream or
//!   packet.
//!
//! # Testing
//!
//! Unit tests and proptests: `cargo test -p vchan`. The loom models of the
//! ring (producer/consumer with wrap-around, notification-bit races, close
//! during a blocked write, and a planted wrong ordering that must be caught):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p vchan --release --test loom
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS` defaults to 4 in the models, about 10 s of CPU after
//! a ~2 min build; see `tests/loom.rs`.)
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod channel;
mod error;
pub mod layout;
pub mod rendezvous;
pub mod ring;
pub mod sync;

pub use channel::{ServerConfig, Vchan};
pub use error::{Error, Result};

#[cfg(test)]
mod testmem;
