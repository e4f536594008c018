//! The lifecycle API: XenAPI over XML-RPC and JSON-RPC, and a Rust client.
//!
//! The core is `no_std` + `alloc` and does no I/O (build with
//! `--no-default-features`): [`value`], [`xmlrpc`], [`jsonrpc`], [`error`],
//! [`model`], [`call`], [`console`] and [`session`] (the session table, time passed in). The `std` feature (default) adds host mode's
//! shell: [`auth`], [`toolstack`], [`dispatch`], [`server`] (hyper on tokio) and
//! [`client`].
//!
//! Layers, bottom up:
//! * [`value`] — the XenAPI value tree both wires share.
//! * [`xmlrpc`], [`jsonrpc`] — the codecs (XML-RPC at `/`, JSON-RPC 1.0 and
//!   2.0 at `/jsonrpc`), compact output, XAPI's response envelopes.
//! * [`error`] — XenAPI errors (`[code, params…]`): the only place in
//!   Windsor where XAPI's error codes are spelled for clients.
//! * [`model`] — classes, fields and XAPI's defaults.
//! * [`call`] — the call table: method + params → the toolstack's
//!   [`Action`](windsor_toolstack::action::Action), typed reply → value.
//! * [`auth`] — hashed credentials and the session table.
//! * [`toolstack`] — the seam to the toolstack ([`toolstack::Toolstack`]).
//! * [`dispatch`] — the dispatcher ([`dispatch::Api`]): sessions,
//!   `system.*`, the call table over the toolstack, `Async.*` tasks.
//! * [`server`] — the HTTP server ([`server::Server`]) on TCP and a Unix
//!   socket, with admission control.
//! * [`console`] — XenAPI `console` objects and the console text over
//!   HTTP, answered from the host's console backend.
//! * [`client`] — the Rust client the `windsor` command line uses.
//!
//! # Windsor extension: the `xenstore` class
//!
//! XAPI has no xenstore calls; Windsor adds a small class so that clients
//! of the API (`windsor xs`) reach the host's store with dom0's rights:
//! `xenstore.read`, `write`, `directory`, `rm`, and the long-poll
//! `xenstore.watch(session, path, timeout, cursor)` / `unwatch` (see
//! [`call`](call#the-xenstore-class)). Sessions are checked as for every call; watchers
//! belong to the session that opened them and are closed, their slots and
//! queues freed, as soon as it ends (logout, idle expiry, eviction: see
//! [`server::Config::session_idle_timeout`]). Values are
//! strings: a node whose bytes are not UTF-8 is refused with
//! `XENSTORE_VALUE_NOT_UTF8`, never altered. Store errors are
//! `["XENSTORE_ERROR", <errno name>, path]` ([`error::codes`]).
//!
//! Serving a host (what `windsor up` does):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use windsor_api::auth::Credentials;
//! use windsor_api::server::{Api, Config, Listen, Server};
//!
//! let data_dir = std::path::Path::new("/var/lib/windsor");
//! let host = windsor_toolstack::host::Host::start(windsor_toolstack::ToolstackConfig::default())?;
//! let loaded = Credentials::load_or_init_from_env(data_dir)?;
//! if let Some(pw) = &loaded.generated_password {
//!     println!("root password (shown once): {pw}");
//! }
//! let api = Api::new(Arc::new(host.toolstack.clone()), loaded.credentials, Config::default());
//! let server = Server::start(
//!     Arc::new(api),
//!     &Listen {
//!         tcp: Some("127.0.0.1:8080".parse()?),
//!         unix: Some(data_dir.join("xapi.sock")),
//!     },
//! )?;
//! println!("XenAPI on http://{}", server.tcp_addr().unwrap());
//! # Ok(()) }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

/// What the core modules take from `alloc` (they are written as if for
/// `std`).
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::collections::BTreeMap;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

pub mod call;
pub mod console;
pub mod error;
pub mod jsonrpc;
pub mod model;
pub mod session;
pub mod value;
pub mod xmlrpc;

#[cfg(feature = "std")]
pub mod auth;
#[cfg(feature = "std")]
pub mod client;
#[cfg(feature = "std")]
pub mod dispatch;
#[cfg(feature = "std")]
pub mod server;
#[cfg(feature = "std")]
pub mod toolstack;

pub use error::{ApiError, WireError};
pub use value::Value;
