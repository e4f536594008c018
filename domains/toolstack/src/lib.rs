//! The toolstack domain (dom0): VM lifecycle with XAPI's power states, the
//! pool records kept in xenstore, device plumbing, and the host-mode runner.
//!
//! Layers:
//! * [`action`] — the interface: one [`Action`](action::Action) per XenAPI
//!   call, typed replies and XAPI errors. The API (`api/`) only parses into
//!   it.
//! * core (no_std + alloc, sans-IO): [`lifecycle`] (power states and legal
//!   transitions), [`db`] (records under `/pool/<class>/<uuid>` in
//!   xenstore), [`layout`] (the standard xenstore paths of a domain and its
//!   devices), [`task`] (the bookkeeping of `Async.*` tasks).
//! * service (`std` feature): `service::Toolstack`, generic over the
//!   platform traits, a [`XenStore`](windsor_xenstore::client::XenStore)
//!   client and an `Introducer`, which builds, starts and stops domains,
//!   watches `VIRQ_DOM_EXC`, and publishes changes for `event.from`.
//! * host mode (`std` feature): `host` wires the toolstack to the
//!   simulated hypervisor, the in-process store (`localstore`) and a
//!   xenstore domain serving the guests' xenbus rings, and registers the
//!   built-in guest images.
//!
//! Domain introduction is the `service::Introducer` trait: the `XenStore`
//! client trait has no `XS_INTRODUCE`/`XS_RELEASE`, which only the
//! toolstack may send; host mode implements it on `localstore::LocalStore`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod action;
pub mod db;
pub mod layout;
pub mod lifecycle;
pub mod task;

#[cfg(feature = "std")]
pub mod host;
#[cfg(feature = "std")]
pub mod localstore;
#[cfg(feature = "std")]
pub mod service;
#[cfg(feature = "std")]
pub mod xsapi;

#[cfg(feature = "std")]
pub use service::{Config, Introducer, Toolstack};
