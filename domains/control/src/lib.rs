//! The control protocol of Windsor's service domains.
//!
//! The toolstack (the client) and each service domain (netback, blkback,
//! later others; the server) exchange typed messages over a vchan: plug and
//! unplug a device, read its counters, ask for health, ask for a restart.
//! The service domain is the vchan *server* and announces the channel
//! under `/local/domain/<service>/data/vchan/<toolstack>/control`.
//!
//! `#![no_std]` + `alloc`, free of `unsafe`. Layers, bottom up:
//!
//! * [`msg`]: the messages ([`Request`], [`Response`]) and the envelope
//!   ([`Envelope`]: version, request id, body), serde types;
//! * [`wire`]: framing: a 4-byte little-endian length, then the postcard
//!   encoding of one envelope, at most [`wire::MAX_FRAME`] bytes; an
//!   incremental [`wire::Decoder`] that never reads by itself;
//! * [`endpoint`]: both ends over a [`vchan::Vchan`]: non-blocking
//!   `poll` for the server, a blocking `call` for the client.
//!
//! See `docs/control-protocol.md` for the protocol page.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod endpoint;
pub mod msg;
pub mod wire;

pub use msg::{
    Body, DeviceCounters, DeviceId, DeviceKind, DeviceParams, DeviceState, Envelope, ErrorCode,
    Health, Request, Response, VbdCounters, VbdParams, VifCounters, VifParams, VERSION,
};
pub use wire::{Decoder, WireError};

/// The vchan port name (the last element of the rendezvous path).
pub const VCHAN_PORT: &str = "control";
