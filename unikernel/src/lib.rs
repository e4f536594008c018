//! The Windsor PVH unikernel runtime.
//!
//! Every Windsor domain in Xen mode links this crate, builds for
//! `x86_64-unknown-none`, and is started by Xen (dom0) or by the Windsor
//! domain builder as a PVH guest. Layers, bottom up:
//!
//! * `arch` (target only): the PVH entry (`XEN_ELFNOTE_PHYS32_ENTRY`,
//!   32-bit → long mode, identity map of 4 GiB), the hypercall page, port
//!   I/O and the TSC, behind a facade (`arch/x86_64/…`).
//! * `hypercall` (target only): every hypercall the runtime makes, typed
//!   with the `xen::abi` mirrors; no other module issues one.
//! * [`elf`] (portable): PVH image checks and load plan for the builder;
//!   [`error`] (portable): [`OpError`], which op of the builder or domain
//!   control failed, on which domain, with which code;
//!   [`vcpu`] (portable): a new guest's first vCPU context;
//!   [`acpi`] (portable): the ACPI tables a PVH guest gets, as libxl's;
//!   [`cpu_policy`] (portable): the CPUID bits hidden from guests;
//!   [`start_info`] (portable): `hvm_start_info` parsing — command line,
//!   modules, memory map — into owned values; [`time`] (portable): Xen system
//!   time from `vcpu_time_info`.
//! * `runtime` (target only): boot sequence (hypercall page, console, heap,
//!   start info, shared_info, grant frames), `Xen` — the implementation of
//!   the `xen::platform` traits over hypercalls (`Console`, `Clock`,
//!   `EventChannel`, `GrantTable`, `Platform`, and `DomainControl` for
//!   dom0), the builder primitives (another domain's physmap, foreign
//!   mappings, e820, HVM params and context) and `DomainBuilder` over them
//!   — and the panic handler
//!   (message on the console, then `SCHEDOP_shutdown(crash)`);
//!   `log` (target only): `tracing` events of the domain cores as console
//!   lines, for images that call `log::init`.
//!
//! An image is a `#![no_std] #![no_main]` binary that names its entry with
//! [`main!`]; it returns the [`ShutdownReason`](xen::platform::ShutdownReason)
//! the domain shuts down with. Images link with the script published as
//! `DEP_WINDSOR_UNIKERNEL_LINKER_SCRIPT` (see `images/dom0-hello/build.rs`).
//!
//! Events are delivered by *blocking poll* (`SCHEDOP_poll`), not by an
//! upcall vector: the platform traits are poll-style
//! ([`EventChannel::wait`](xen::platform::EventChannel::wait)), each domain
//! runs one vCPU with one event loop, and without interrupt handlers there
//! is no re-entrancy to reason about. Interrupts stay off (`IF = 0`) for
//! the life of the domain; the IDT only catches CPU exceptions, to report
//! them before crashing.
//!
//! Known limits (Xen 4.17 under QEMU is what is tested):
//!
//! * Windsor's own images use one vCPU and no timer interrupts (time comes
//!   from `vcpu_time_info`, waits from `SCHEDOP_poll` deadlines); guests
//!   the builder makes may have several vCPUs (other kernels bring up
//!   vCPUs 1.. themselves, from the MADT of [`acpi`]);
//! * Xen gives a PVH dom0 a single boot module: several images travel in
//!   one bundle (`boot-config`'s), which dom0 must unpack;
//! * the guest-physical window for grant and foreign mappings (above the
//!   memory map, below 3 GiB) is not reused yet;
//! * built guests get no MTRR record (all memory uncached-by-default on
//!   real hardware: fine under TCG, slow on metal);
//! * a guest's domain id reaches it as `domid=N` on its command line;
//! * exceptions run on the current stack: a stack overflow is not caught;
//! * the xenstore domain has no persistence in Xen mode (no block device
//!   yet): the store lives in its memory only, and it says so at start-up;
//! * after the ready marker the `dom0` image tears the host down (guests
//!   through `control/shutdown`, then the xenstore domain) and powers off,
//!   unless its command line says `serve`: then it serves the XenAPI on
//!   the QEMU machine's virtio-net NIC ([`pci`]) until `host.shutdown`.
//!
//! How the images boot a host together (the bundle, dom0's xenstore ring,
//! introductions, teardown): `unikernel/BOOT.md`.
//!
//! On a non-`none` target (host builds of the workspace) only the portable
//! modules are compiled, so `cargo test --workspace` runs their unit tests.
#![cfg_attr(target_os = "none", no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub use xen;

pub mod acpi;
pub mod cpu_policy;
pub mod elf;
pub mod error;
pub mod start_info;
pub mod time;
pub mod vcpu;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
mod builder;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
mod domctl;
#[cfg(target_os = "none")]
mod events;
#[cfg(target_os = "none")]
mod foreign;
#[cfg(target_os = "none")]
mod gnttab;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
pub mod log;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
mod runtime;

#[cfg(target_os = "none")]
pub use foreign::ForeignPages;
#[cfg(target_os = "none")]
pub use gnttab::{Mapping, Pages};
#[cfg(target_os = "none")]
pub use runtime::{boot_time, Xen};

pub use error::OpError;

/// Fills `buf` with random bytes from the CPU (`RDRAND`); false if the
/// CPU has none, leaving `buf` unspecified. For secrets such as session
/// references: there is no other entropy source in a unikernel.
#[cfg(target_os = "none")]
pub fn random_bytes(buf: &mut [u8]) -> bool {
    for chunk in buf.chunks_mut(8) {
        let Some(v) = arch::rdrand() else {
            return false;
        };
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    true
}

/// Names the image's entry function: `fn(&'static Xen) -> ShutdownReason`.
///
/// The runtime calls it once the heap, console, shared_info and grant
/// table are up, and shuts the domain down with the returned reason.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        #[no_mangle]
        fn __windsor_main(xen: &'static $crate::Xen) -> $crate::xen::platform::ShutdownReason {
            let f: fn(&'static $crate::Xen) -> $crate::xen::platform::ShutdownReason = $f;
            f(xen)
        }
    };
}

/// Prints to the domain's console (`console_io` for dom0, port 0xe9
/// otherwise), one hypercall per 256 bytes.
#[cfg(target_os = "none")]
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}
