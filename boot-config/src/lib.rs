//! The host description: a TOML file validated into a boot plan and the
//! artifacts Xen, QEMU and GRUB need.
//!
//! This crate is `no_std` + `alloc` and free of `unsafe`. Its layers:
//!
//! - [`plan`] (always built, `no_std`): the [`BootPlan`] dom0 executes, its
//!   versioned postcard encoding ([`BootPlan::to_postcard`],
//!   [`BootPlan::from_postcard`]).
//! - [`bundle`] (always built, `no_std`): the one multiboot module that
//!   carries the plan and every domain image to dom0, and its checked reader.
//! - `config` (feature `std`, on by default): TOML → [`HostConfig`], with
//!   validation errors that name the file, line, column, field, what is wrong
//!   and what is expected ([`ConfigError`]).
//! - [`render`] (feature `std`): the Xen command line, the multiboot module
//!   list, the QEMU command line, a GRUB multiboot2 stanza and the bundle
//!   bytes.
//!
//! dom0 depends on the crate with `default-features = false` and only ever
//! sees `plan` and `bundle`.
//!
//! # The host description
//!
//! `examples/default.toml` is the working default (the xenstore domain and
//! one fuzz-target guest), with every field commented. In short:
//!
//! ```toml
//! [host]                 # optional
//! name = "windsor"
//!
//! [dom0]                 # the toolstack unikernel
//! image = "windsor-toolstack.elf"
//! memory_mib = 64        # dom0_mem=
//! vcpus = 1              # dom0_max_vcpus=
//! log_level = "info"     # error | warn | info | debug | trace
//! [dom0.xenstore]        # quotas the xenstore domain enforces per domain
//! [dom0.timeouts]        # domain_ready_ms, shutdown_ms
//!
//! [[services]]           # exactly one of kind "xenstore"; netback, blkback at most once
//! kind = "xenstore"
//! image = "windsor-xenstore.elf"
//! memory_mib = 32
//!
//! [[guests]]             # at most MAX_GUESTS, built in file order
//! name = "fuzz0"
//! image = "windsor-fuzz-target.elf"
//! memory_mib = 32
//! cmdline = "..."
//!
//! [qemu]                 # the test machine: memory_mib, smp, timeout_secs
//! ```
//!
//! **Image paths are relative to the build output directory** (where
//! `cargo xtask` puts the `x86_64-unknown-none` images and `xen`), not to the
//! TOML file: the same description works for any build profile. They must
//! not contain commas, whitespace, quotes or control characters, because they
//! end up on QEMU and GRUB command lines.
//!
//! # The module order contract
//!
//! Xen 4.17 on x86 gives a PVH dom0 exactly **one** module: multiboot module
//! 0 is dom0's kernel, the first unclaimed module after it becomes dom0's
//! initrd (its only `hvm_start_info` module), and any further module is
//! dropped with `Multiple initrd candidates` and its memory freed. So the
//! multiboot list is always exactly:
//!
//! 1. dom0's kernel (`[dom0] image`);
//! 2. the boot bundle ([`bundle`]): entry 0 is the encoded [`BootPlan`],
//!    entry *i* ≥ 1 is a domain image.
//!
//! Xen copies the bundle into dom0's own memory at a page-aligned address
//! right after dom0's kernel, so every bundle entry is page-aligned in dom0
//! too, and the bundle counts against `dom0_mem`
//! ([`render::bundle`] checks that it leaves
//! [`render::DOM0_HEADROOM_MIB`] to spare).
//!
//! dom0 relies on: `hvm_start_info` module 0 being the bundle; bundle entry 0
//! being the plan; [`PlanDomain::module`] being the bundle entry of that
//! domain's ELF image (shared when two domains name the same image);
//! [`BootPlan::domains`] being in build order, the xenstore domain first,
//! then the other service domains, then the guests in file order. Plan and
//! bundle both carry a magic and a version, and dom0 refuses a mismatch with
//! a [`PlanError`] or [`BundleError`] that says what to rebuild.
//!
//! # Use
//!
//! ```no_run
//! # #[cfg(feature = "std")] fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use windsor_boot_config::{load, render};
//! let host = load("boot-config/examples/default.toml")?;
//! let layout = render::Layout::in_dir("target/xen");
//! host.check_images(&layout.images_dir)?;
//! std::fs::write(&layout.bundle, render::bundle(&host, &layout.images_dir)?)?;
//! let qemu = render::qemu_argv(&host, &layout)?;
//! println!("{qemu}");
//! # Ok(()) }
//! # #[cfg(not(feature = "std"))] fn main() {}
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
#[macro_use]
extern crate std;

pub mod bundle;
pub mod plan;

#[cfg(feature = "std")]
mod config;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
pub mod kernel;
#[cfg(feature = "std")]
pub mod render;

pub use bundle::{Bundle, BundleError};
pub use plan::{
    BootPlan, Dom0Settings, DomainKind, LogLevel, PlanDomain, PlanError, PlanRamdisk, Timeouts,
    XenstoreQuotas,
};

#[cfg(feature = "std")]
pub use config::{
    DomainConfig, HostConfig, Image, QemuSettings, MAX_CMDLINE, MAX_GUESTS, MEMORY_MIB,
    QEMU_MEMORY_MIB, QEMU_SMP, QEMU_TIMEOUT_SECS, RESERVED_NAMES, TIMEOUT_MS, VCPUS,
};
#[cfg(feature = "std")]
pub use error::{ConfigError, KernelError, Location, PathProblem, XEN_RESERVE_MIB};

/// Reads and validates the host description at `path`.
///
/// Error messages name the file as `path` was given. Images are not checked
/// here (they live in the build output directory): call
/// [`HostConfig::check_images`].
#[cfg(feature = "std")]
pub fn load(path: impl AsRef<std::path::Path>) -> Result<HostConfig, ConfigError> {
    use std::borrow::ToOwned;
    use std::string::ToString;
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    HostConfig::parse(&text, &path.display().to_string())
}
