//! The toolstack domain (dom0): VM lifecycle with XAPI's power states, the
//! pool records kept in xenstore, device plumbing, and the host-mode runner.
//!
//! Layers:
//! * [`action`] — the interface: one [`Action`](action::Action) per XenAPI
//!   call, typed replies and XAPI errors. The API (`api/`) only parses into
//!   it.
//! * the core (no_std + alloc, sans-IO; no thread, lock, clock or loop):
//!   [`engine::Engine`] takes actions, platform observations and the time
//!   and answers with replies and [`effect`]s (pool-database writes, one
//!   xenstore transaction per domain). Its concerns, one module each:
//!   [`records`] (the record table, uuids), [`events`] (the log behind
//!   `event.from`), [`lifecycle`] (power states and legal transitions),
//!   [`limits`] (valid memory and vCPU values, field and record sizes;
//!   `meter` measures a record against them without encoding it),
//!   [`power`] (power operations and domain exits as executor steps),
//!   [`storage`] (SR/PBD/VDI rules), [`devices`] (VIF/VBD records and a
//!   domain's xenstore tree), [`bootstrap`] (first-start records,
//!   re-attaching after a restart), [`task`] (`Async.*` bookkeeping), with
//!   [`db`] (record encoding under `/pool/<class>/<uuid>`) and [`layout`]
//!   (the standard xenstore paths).
//! * the executor (`std` feature): `service::Toolstack` runs the engine
//!   over the platform traits, a
//!   [`XenStore`](windsor_xenstore_client::XenStore) client and an
//!   `Introducer` (one module per concern under `service`, listed in its
//!   doc); `watcher` is its `VIRQ_DOM_EXC` thread; `xs_calls` serves the
//!   `xenstore.*` calls. Devices: the engine writes a domain's VIF/VBD
//!   directories (VIFs under `backend_domid`, VBDs under
//!   `vbd_backend_domid`); an attached `service::DeviceBackends` (host
//!   mode: netback and blkback over their `windsor-control` vchans) is
//!   then asked to serve each attached VIF and VBD before the guest runs,
//!   at `VIF.plug`/`VBD.plug` on a running VM, and to stop at `unplug` and
//!   teardown. `Toolstack::backend_restarted` moves the running VMs'
//!   devices to a restarted driver domain. A VDI created with an `sr_dir`
//!   set gets a sparse raw image file there.
//! * host mode's composition (`host` feature, off by default: it pulls in
//!   the simulated hypervisor and the test guest): `host` composes every
//!   host-mode host — the simulated hypervisor, a xenstore domain (any
//!   `host::XenstoreDomain`), the built-in guest images and this
//!   toolstack on dom0, and the teardown order. Tests and benchmarks give
//!   it the in-process store (`localstore`, with a xenstore domain serving
//!   the guests' xenbus rings); `windsor up` (the `windsor` crate) gives it
//!   the persistent xenstore daemon and adds the driver domains and the
//!   API.
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
pub mod bootstrap;
pub mod db;
pub mod devices;
pub mod effect;
pub mod engine;
pub mod events;
pub mod layout;
pub mod lifecycle;
pub mod limits;
mod meter;
pub mod power;
pub mod records;
pub mod storage;
pub mod task;

#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "std")]
pub mod localstore;
#[cfg(feature = "std")]
pub mod service;
#[cfg(feature = "std")]
pub mod watcher;
#[cfg(feature = "std")]
pub mod xs_calls;

pub use engine::{Engine, Handled, Settings};

#[cfg(feature = "std")]
pub use service::{Introducer, Toolstack, ToolstackConfig};
