//! A netif frontend (`io/netif.h`, Xen 4.17) for Windsor's own guests,
//! with smoltcp on top.
//!
//! `#![no_std]` + `alloc`, free of `unsafe`: shared pages are reached
//! through [`xen::shmem`], grants and event channels through the platform
//! traits, so the same code runs in host mode (`xen-sim`) and in a PVH
//! guest. Layers:
//!
//! * [`front`]: the rings, buffers and xenbus handshake; frames in and
//!   out; misbehaviours on request;
//! * [`stack`]: a smoltcp `Device` over the frontend, an interface that
//!   answers ping and serves TCP echo, and client helpers (ping, a TCP
//!   exchange).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod front;
pub mod stack;

pub use front::{FrontError, Misbehave, Netfront};
pub use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
pub use stack::{Stack, StackError, ECHO_PORT};

/// Parses `a.b.c.d` or `a.b.c.d/len` (default /24).
pub fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let s = s.trim();
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()?),
        None => (s, 24),
    };
    let mut o = [0u8; 4];
    let mut it = a.split('.');
    for b in &mut o {
        *b = it.next()?.parse().ok()?;
    }
    if it.next().is_some() || len > 32 {
        return None;
    }
    Some(Ipv4Cidr::new(Ipv4Address::from(o), len))
}
