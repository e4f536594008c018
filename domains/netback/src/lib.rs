//! The network driver domain: the netif backend (`io/netif.h`, Xen 4.17),
//! a learning switch between the VIFs of a host, and its uplink.
//!
//! `#![no_std]` + `alloc`, free of `unsafe`. Layers, bottom up:
//!
//! * [`ring`]: the backend end of a shared ring, defensive against the
//!   frontend's indices;
//! * [`copy`]: grant copy, the only path of packet bytes;
//! * [`tx`]: tx requests parsed into typed packets, drop-or-disconnect
//!   decisions as Linux netback makes them;
//! * [`vif`]: one VIF: tx polling, rx delivery, counters, rate limit;
//! * [`rate`], [`switch`]: the credit limiter and the learning switch;
//! * [`csum`]: checksum completion for partial-checksum frames leaving by
//!   the uplink or for a frontend that takes full checksums only;
//! * [`gso`]: software segmentation of TCPv4 GSO packets for frontends
//!   that do not take them;
//! * [`xenbus`]: the xenstore handshake with netfront;
//! * [`service`]: the event loop over the platform traits, the control
//!   channel (`windsor-control`) and the uplink;
//! * `host` (feature `host`): the host-mode image, a thread on `xen-sim`,
//!   with a TAP uplink.
//!
//! Every frontend is hostile from the moment it connects: indices, grant
//! references, sizes and flags are validated before use; a violation
//! disconnects that VIF only.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod copy;
pub mod csum;
pub mod gso;
pub mod rate;
pub mod ring;
pub mod service;
pub mod switch;
pub mod tx;
pub mod vif;
pub mod xenbus;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

#[cfg(feature = "host")]
pub mod host;

/// The image name of the host-mode netback domain.
pub const IMAGE: &str = "netback";
