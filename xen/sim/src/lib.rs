//! The simulated Xen hypervisor of host mode.
//!
//! One process is one Xen host: [`Hypervisor`] holds the domain table, the
//! grant tables and event channels of every domain, and all guest memory.
//! Each domain is reached through a [`SimDomain`] handle, which implements
//! every trait of [`xen::platform`], so the same domain cores run here and on
//! real Xen.
//!
//! Layers:
//! * `memory`: guest frames in one memfd, mapped contiguously; the only
//!   module with raw pointers. Mapped grants are real shared memory.
//! * `hypervisor`: the domain table, lifecycle (create, pause, shutdown,
//!   destroy), image registry, fault injection.
//! * `domain`: the per-domain handle and the trait implementations.
//! * `save`: save/restore of a suspended domain ([`SavedDomain`]).
//! * [`tap`]: a TAP device, the host network handed to the network driver
//!   domain as its uplink (host mode's stand-in for a NIC).
//!
//! Semantics follow Xen 4.17, so protocol bugs show up here first: a domain
//! can only map grants offered to it; a read-only grant cannot be mapped
//! writable; `end_access` on a mapped grant fails with `EBUSY`; masked ports
//! stay pending and fire on unmask; destroying a domain closes its channels
//! (peers' ports become unbound), revokes its grants (mappings keep their
//! memory) and raises `VIRQ_DOM_EXC`.
//!
//! Where the simulation departs from Xen:
//! * closing an interdomain port also raises the peer's port, so a peer
//!   blocked in `wait` notices (Xen only makes it unbound);
//! * a domain runs as a thread: `pause` takes effect at its next `wait` or
//!   `notify`, and a shut-down or destroyed domain's thread sees `ESRCH` from
//!   every call instead of being descheduled;
//! * in host mode an image is a registered Rust function, named by the
//!   kernel bytes given to the builder; a panic in it is a crash
//!   (`SHUTDOWN_crash`) of that domain only;
//! * gfns are host-wide frame numbers; a restored domain's pages keep their
//!   addresses in the guest but get new frames, hence new gfns (a PVH
//!   guest's gfns would stay the same);
//! * a guest's suspend call parks its thread; [`SavedDomain`] holds the
//!   thread and a copy of its memory in host RAM (see `save`).
#![warn(missing_docs)]

mod domain;
mod hypervisor;
mod memory;
mod save;
pub mod tap;

pub use domain::{SimDomain, SimMapping, SimPages};
pub use hypervisor::{Hypervisor, ImageEntry};
pub use save::SavedDomain;
