//! The Xen 4.17 public ABI and the platform seam of Windsor.
//!
//! `#![no_std]`, no allocation. This crate is the only place in Windsor that
//! knows Xen's binary interface, and the only seam to a hypervisor:
//!
//! * [`abi`]: `#[repr(C)]` mirrors of `xen/include/public/` (hypercall
//!   numbers, event channels, grant tables, memory ops, domctl 0x15, HVM
//!   params, `hvm_start_info`, xenbus states, `xs_wire.h`, `libxenvchan.h`,
//!   netif, blkif, console ring), each pinned by a layout test;
//! * [`ids`]: newtypes for domain ids, grant references and ports;
//! * [`shmem`]: the one module that touches memory shared with another
//!   domain, handing out bounds-checked atomic and copy accessors;
//! * [`platform`]: the traits every domain is written against (grant table,
//!   event channels, domain control, builder, console, clock). The simulated
//!   hypervisor (`xen/sim`, crate `xen-sim`) and the unikernel runtime
//!   implement them;
//! * [`host`] (feature `std`): the few calls into the host's C library
//!   that host-mode daemons need.
#![no_std]
#![warn(missing_docs)]

pub mod abi;
#[cfg(feature = "std")]
pub mod host;
pub mod ids;
pub mod platform;
pub mod shmem;

pub use abi::errno::Errno;
pub use ids::{DomId, EvtchnPort, Gfn, GrantRef};
pub use shmem::{SharedMem, SharedRo, PAGE_SIZE};
