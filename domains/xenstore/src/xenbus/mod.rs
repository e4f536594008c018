//! The xenbus ring transport: `struct xenstore_domain_interface` of
//! `xen/include/public/io/xs_wire.h` (Xen 4.17), both ends, over the
//! platform traits.
//!
//! * [`ring`]: the two 1 KiB byte rings of the page, one end of them as a
//!   small private state that takes the shared page as a parameter. Peer
//!   indices are read once (Acquire) and validated; bytes are copied into
//!   private buffers before anything parses them.
//! * [`server`]: [`XenbusServer`], the xenstore domain's side: maps each
//!   introduced guest's ring (grant `GNTTAB_RESERVED_XENSTORE`), binds its
//!   port, feeds requests to the core [`Store`](crate::Store) with the
//!   domain id as the connection's identity (so permissions and quotas
//!   apply), writes replies and watch events back, with bounded work per
//!   poll that grows with the guests that have something to do, not with
//!   the guests served; misbehaving guests are ignored (the `error` field) until they
//!   reconnect.
//! * [`client`]: [`XenbusClient`], a domain's [`XenStore`](crate::client::XenStore)
//!   over its own ring.
//!
//! All of it is `no_std` + `alloc` and free of `unsafe`: shared memory is
//! reached only through [`xen::shmem`] views. A hostile guest cannot make
//! the server panic, loop or allocate beyond two messages per guest.
//!
//! # Hosting the server
//!
//! The server never owns the store; each call borrows it:
//!
//! ```text
//! let mut srv = XenbusServer::new(&xenstore_domain, ServerConfig::default())?;
//! loop {
//!     {   let store: &mut Store = ...;            // e.g. a MutexGuard
//!         let p = srv.poll(store);                // rings -> store -> rings
//!         for e in store.take_effects() { srv.apply(store, &e)?; }  // INTRODUCE / RELEASE
//!         // p.gone: guests whose port closed (destroyed): send XS_RELEASE for them
//!     }
//!     if !p.more { srv.wait(Some(idle))?; }       // all ring ports + the kick port
//! }
//! ```
//!
//! [`XenbusServer::run`] is that loop for a store with no other transport.
//! When the store is shared with another transport (the Unix-socket daemon
//! of host mode), that side must: leave the output of ring connections in
//! the store ([`XenbusServer::owns`]; `Store::take_ready` may name them:
//! the server finds them through `Store::with_output`),
//! hand `Effect::Introduce`/`Release` to the server's thread instead of
//! dropping them, and notify [`XenbusServer::kick_port`] after queueing
//! output for a ring connection (a watch event fired by a socket client),
//! since the server only wakes on event channels. For durable replies,
//! use the two halves of `poll`: [`XenbusServer::receive`] (requests into
//! the store, nothing written), then log `Store::take_mutations` and wait
//! until it is durable, then [`XenbusServer::transmit`] (replies and
//! events out), or [`XenbusServer::transmit_gated`] to hold back, packet
//! by packet, what is not durable yet while the rest goes out.
//!
//! [`crate::daemon::Daemon::serve_rings`] is that recipe, with the Unix
//! socket, the log and group commit (see `daemon::rings`).

pub mod client;
pub mod ring;
pub mod server;

pub use client::XenbusClient;
pub use ring::{RingError, RingIo, Side};
pub use server::{Progress, ServerConfig, ServerError, XenbusServer};
