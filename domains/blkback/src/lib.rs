//! The block driver domain: a blkif backend (`io/blkif.h`, Xen 4.17).
//!
//! Layers, bottom up:
//!
//! * [`wire`]: ring slots parsed into typed, validated requests (read,
//!   write, flush, barrier, discard, indirect), each failure keeping the
//!   `id` needed to answer it;
//! * [`ring`]: the backend's halves of the shared ring over `xen::shmem`
//!   views (peer indices read once, overflow refused, slots copied out);
//! * [`vbd`]: a request resolved against the disk (bounds, read-only,
//!   ordering of flushes and barriers);
//! * [`xenbus`]: the handshake with the frontend as a state machine over a
//!   [`XenStore`](windsor_xenstore_client::XenStore) client;
//! * [`storage`]: the [`Storage`](storage::Storage) trait every image
//!   back-end implements (typed errors, aligned buffers), and
//!   [`RamDisk`](storage::ram::RamDisk), the back-end that needs no
//!   operating system;
//! * [`poll`]: the backend in one loop without threads, on the platform
//!   traits (the Xen-mode blkback image's server), and the request
//!   planning it shares with `service`;
//! * with `std`: [`storage::file`] (raw sparse files and qcow2 on host
//!   files), [`service`], which runs the backend on the platform traits:
//!   grants, event channels and a pool of I/O threads; [`control`], the
//!   domain driven by the toolstack over the `windsor-control` vchan
//!   (plug, unplug, counters, health).
//!
//! The core (everything but `storage::file`, `service` and `control`) is
//! `no_std` + alloc, and all of it but [`poll`] is sans-IO; nothing in the
//! crate is `unsafe`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod poll;
pub mod ring;
pub mod vbd;
pub mod wire;
pub mod xenbus;

#[cfg(feature = "std")]
pub mod control;
#[cfg(feature = "std")]
pub mod service;
pub mod storage;
