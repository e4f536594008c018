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
//!   poll; misbehaving guests are ignored (the `error` field) until they
//!   reconnect.
//! * [`client`]: [`XenbusClient`], a domain's [`XenStore`](crate::client::XenStore)
//!   over its own ring.
//!
//! All of it is `no_std` + `alloc` and free of `unsafe`: shared memory is
//! reached only through [`xen::shmem`] views. A hostile guest cannot make
//! the server panic, loop or allocate beyond two messages per guest.

pub mod client;
pub mod ring;
pub mod server;

pub use client::XenbusClient;
pub use ring::{RingError, RingIo, Side};
pub use server::{Progress, ServerConfig, ServerError, XenbusServer};
