//! The platform seam: what a Windsor domain needs from a hypervisor.
//!
//! Every domain core and service is written against these traits and never
//! issues a hypercall or a Linux call itself. Two implementations exist:
//!
//! * host mode: `xen-sim`, an in-process simulated hypervisor where each
//!   domain is a thread and shared pages are real shared memory;
//! * Xen mode: the `unikernel` PVH runtime, which turns each call into the
//!   hypercall named in its doc comment.
//!
//! The semantics are Xen's (4.17), so that a protocol bug shows up in host
//! mode first. Where the simulation must differ, the implementation says so.
//!
//! | trait | Xen interface |
//! |---|---|
//! | [`GrantTable`] | `grant_table.h` v1: grant/end access, `GNTTABOP_map_grant_ref`, `unmap_grant_ref`, `copy` |
//! | [`EventChannel`] | `event_channel.h`: `alloc_unbound`, `bind_interdomain`, `bind_virq`, `send`, `close`, `status`; mask/pending bits of `shared_info`; `SCHEDOP_poll` |
//! | [`DomainControl`] | `domctl.h` 0x15: `createdomain`, `max_vcpus`, `max_mem`, `pausedomain`, `unpausedomain`, `shutdown`, `destroydomain`, `getdomaininfo` |
//! | [`DomainBuilder`] | the PVH builder: image, `hvm_start_info`, xenstore/console pages, HVM params, reserved grants |
//! | [`DomainSave`] | save/restore (`xc_domain_save`/`xc_domain_restore`): a suspended domain's memory and config out, a new domain back |
//! | [`Console`], [`Clock`] | `console_io` / port 0xe9 / console ring; vcpu time info |
//! | [`Platform`] | everything an unprivileged domain has, plus its start info and `SCHEDOP_shutdown` (and its suspend form) |

use core::time::Duration;

use crate::ids::{DomId, EvtchnPort, Gfn, GrantRef};
use crate::shmem::{SharedMem, SharedRo};
use crate::Errno;

/// Why a grant operation failed (`GNTST_*` of `grant_table.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum GrantStatus {
    /// `GNTST_general_error` (-1).
    GeneralError = -1,
    /// `GNTST_bad_domain` (-2): no such domain.
    BadDomain = -2,
    /// `GNTST_bad_gntref` (-3): no such grant, or not granted to the caller.
    BadGntref = -3,
    /// `GNTST_bad_handle` (-4).
    BadHandle = -4,
    /// `GNTST_bad_virt_addr` (-5).
    BadVirtAddr = -5,
    /// `GNTST_bad_dev_addr` (-6).
    BadDevAddr = -6,
    /// `GNTST_no_device_space` (-7).
    NoDeviceSpace = -7,
    /// `GNTST_permission_denied` (-8): e.g. a writable map of a read-only grant.
    PermissionDenied = -8,
    /// `GNTST_bad_page` (-9).
    BadPage = -9,
    /// `GNTST_bad_copy_arg` (-10): a copy crosses a page boundary.
    BadCopyArg = -10,
    /// `GNTST_address_too_big` (-11).
    AddressTooBig = -11,
    /// `GNTST_eagain` (-12).
    Eagain = -12,
    /// `GNTST_no_space` (-13): out of handles or grant entries.
    NoSpace = -13,
}

impl GrantStatus {
    /// Decodes a `GNTST_*` value; `None` for `GNTST_okay` or unknown codes.
    pub fn from_raw(v: i16) -> Option<Self> {
        use GrantStatus::*;
        Some(match v {
            -1 => GeneralError,
            -2 => BadDomain,
            -3 => BadGntref,
            -4 => BadHandle,
            -5 => BadVirtAddr,
            -6 => BadDevAddr,
            -7 => NoDeviceSpace,
            -8 => PermissionDenied,
            -9 => BadPage,
            -10 => BadCopyArg,
            -11 => AddressTooBig,
            -12 => Eagain,
            -13 => NoSpace,
            _ => return None,
        })
    }
}

/// An error from the platform: a failed hypercall or grant operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The hypercall returned an error number.
    #[error("hypercall failed: {0}")]
    Errno(#[from] Errno),
    /// A grant-table operation reported a `GNTST_*` status.
    #[error("grant operation failed: {0:?}")]
    Grant(GrantStatus),
}

/// Result of a platform call.
pub type Result<T> = core::result::Result<T, Error>;

/// Pages owned by the calling domain that it can grant to others.
///
/// The pages are mapped contiguously in the caller's address space.
pub trait LocalPages {
    /// The memory of all pages, contiguous.
    fn mem(&self) -> SharedMem<'_>;
    /// Number of pages.
    fn count(&self) -> usize;
    /// The guest frame number of page `index` (what a builder or a
    /// `GNTTABOP_setup_table` caller puts in a grant entry).
    fn gfn(&self, index: usize) -> Gfn;
}

/// A mapping of grants offered by another domain; unmapped on drop
/// (`GNTTABOP_unmap_grant_ref`).
///
/// If the granting domain dies or ends access, the mapped memory stays valid
/// until the mapping is dropped; it simply stops being shared.
pub trait ForeignMapping {
    /// The mapped memory, read-only view (always available).
    fn ro(&self) -> SharedRo<'_>;
    /// The mapped memory, writable view; `None` for a read-only mapping.
    fn rw(&self) -> Option<SharedMem<'_>>;
    /// The domain that granted the pages.
    fn granter(&self) -> DomId;
}

/// Grant table v1: share our pages with others, map others' pages.
pub trait GrantTable {
    /// Pages this domain owns and can grant.
    type Pages: LocalPages;
    /// A mapping of another domain's grants.
    type Mapping: ForeignMapping;

    /// Allocates `count` zeroed pages, counted against the domain's memory
    /// limit (`ENOMEM` beyond it).
    fn alloc_pages(&self, count: usize) -> Result<Self::Pages>;

    /// Offers page `index` of `pages` to domain `to` (`gnttab_grant_foreign_access`).
    fn grant_access(
        &self,
        pages: &Self::Pages,
        index: usize,
        to: DomId,
        readonly: bool,
    ) -> Result<GrantRef>;

    /// Withdraws a grant (`gnttab_end_foreign_access_ref`). Fails with
    /// `EBUSY` while the peer still has it mapped, as Xen does.
    fn end_access(&self, gref: GrantRef) -> Result<()>;

    /// Maps grants `refs` of domain `from`, contiguously, in order
    /// (`GNTTABOP_map_grant_ref`, one op per page). A writable mapping of a
    /// read-only grant fails with [`GrantStatus::PermissionDenied`]; a grant
    /// offered to another domain fails with [`GrantStatus::BadGntref`].
    fn map(&self, from: DomId, refs: &[GrantRef], readonly: bool) -> Result<Self::Mapping>;

    /// Copies from a peer's grant into private memory (`GNTTABOP_copy`,
    /// source by grant). `offset + buf.len()` must stay inside the page.
    fn copy_from_grant(
        &self,
        from: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<()>;

    /// Copies private memory into a peer's writable grant (`GNTTABOP_copy`,
    /// destination by grant). `offset + buf.len()` must stay inside the page.
    fn copy_to_grant(&self, to: DomId, gref: GrantRef, offset: u16, buf: &[u8]) -> Result<()>;

    /// Several copies in one `GNTTABOP_copy` call, in order. Stops at the
    /// first that fails and returns its index and error (the ones before
    /// it were done). The default makes one call per segment; a platform
    /// where a call has a fixed cost overrides it.
    fn copy_batch(&self, segs: &mut [CopySeg<'_>]) -> core::result::Result<(), (usize, Error)> {
        for (i, s) in segs.iter_mut().enumerate() {
            let r = match s {
                CopySeg::FromGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => self.copy_from_grant(*dom, *gref, *offset, buf),
                CopySeg::ToGrant {
                    dom,
                    gref,
                    offset,
                    buf,
                } => self.copy_to_grant(*dom, *gref, *offset, buf),
            };
            r.map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// One segment of a [`GrantTable::copy_batch`] (a `gnttab_copy` op with
/// one side a grant and the other our private memory).
#[derive(Debug)]
pub enum CopySeg<'a> {
    /// From `dom`'s grant `gref` at `offset` into `buf`.
    FromGrant {
        /// The granting domain.
        dom: DomId,
        /// Its grant.
        gref: GrantRef,
        /// Offset in the page.
        offset: u16,
        /// Where the bytes go.
        buf: &'a mut [u8],
    },
    /// From `buf` into `dom`'s writable grant `gref` at `offset`.
    ToGrant {
        /// The granting domain.
        dom: DomId,
        /// Its grant.
        gref: GrantRef,
        /// Offset in the page.
        offset: u16,
        /// The bytes.
        buf: &'a [u8],
    },
}

/// Virtual interrupts a domain can bind (`VIRQ_*` of `xen.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Virq {
    /// `VIRQ_TIMER` (0).
    Timer = 0,
    /// `VIRQ_DEBUG` (1).
    Debug = 1,
    /// `VIRQ_CONSOLE` (2).
    Console = 2,
    /// `VIRQ_DOM_EXC` (3): some domain shut down or died (privileged domain).
    DomExc = 3,
}

/// What a port is bound to (`EVTCHNOP_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortStatus {
    /// Not allocated (`EVTCHNSTAT_closed`).
    Closed,
    /// Allocated, waiting for `remote` to bind (`EVTCHNSTAT_unbound`).
    Unbound {
        /// The domain allowed to bind.
        remote: DomId,
    },
    /// Connected to `port` of `dom` (`EVTCHNSTAT_interdomain`).
    Interdomain {
        /// The peer domain.
        dom: DomId,
        /// The peer's port.
        port: EvtchnPort,
    },
    /// Bound to a virtual interrupt (`EVTCHNSTAT_virq`).
    Virq(Virq),
}

/// Event channels: the doorbells between domains.
///
/// Each port has a *pending* and a *mask* bit, as in `shared_info`. `notify`
/// sets the peer's pending bit; a masked port stays pending and wakes its
/// waiters when unmasked.
pub trait EventChannel {
    /// Allocates a port that `remote` may bind to (`EVTCHNOP_alloc_unbound`).
    fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort>;
    /// Connects to `remote_port` of `remote`, which must be unbound for us
    /// (`EVTCHNOP_bind_interdomain`). As in Xen, the new local port starts
    /// pending: clear it before waiting.
    fn bind_interdomain(&self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort>;
    /// Binds a virtual interrupt (`EVTCHNOP_bind_virq`).
    fn bind_virq(&self, virq: Virq) -> Result<EvtchnPort>;
    /// Signals the other end of `port` (`EVTCHNOP_send`).
    fn notify(&self, port: EvtchnPort) -> Result<()>;
    /// Sets the mask bit of `port`.
    fn mask(&self, port: EvtchnPort) -> Result<()>;
    /// Clears the mask bit of `port`; a pending event then fires (wakes waiters).
    fn unmask(&self, port: EvtchnPort) -> Result<()>;
    /// Closes `port` (`EVTCHNOP_close`). An interdomain peer's port goes back
    /// to unbound.
    fn close(&self, port: EvtchnPort) -> Result<()>;
    /// What `port` is bound to (`EVTCHNOP_status`).
    fn status(&self, port: EvtchnPort) -> Result<PortStatus>;
    /// Tests and clears the pending bit of `port`.
    fn clear_pending(&self, port: EvtchnPort) -> Result<bool>;
    /// Blocks until one of `ports` is pending and unmasked, or `timeout`
    /// passes (`SCHEDOP_poll`). Returns `true` if a port is pending, `false`
    /// on timeout. Pending bits are left set: clear them with
    /// [`clear_pending`](Self::clear_pending).
    fn wait(&self, ports: &[EvtchnPort], timeout: Option<Duration>) -> Result<bool>;
}

/// Why a domain shut down (`SHUTDOWN_*` of `sched.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff` (0): exited normally.
    Poweroff = 0,
    /// `SHUTDOWN_reboot` (1): wants to be restarted.
    Reboot = 1,
    /// `SHUTDOWN_suspend` (2): saved its state, wants to be resumed later.
    Suspend = 2,
    /// `SHUTDOWN_crash` (3): crashed.
    Crash = 3,
    /// `SHUTDOWN_watchdog` (4): its watchdog expired.
    Watchdog = 4,
    /// `SHUTDOWN_soft_reset` (5).
    SoftReset = 5,
}

impl ShutdownReason {
    /// Decodes a `SHUTDOWN_*` code.
    pub fn from_raw(v: u32) -> Option<Self> {
        use ShutdownReason::*;
        Some(match v {
            0 => Poweroff,
            1 => Reboot,
            2 => Suspend,
            3 => Crash,
            4 => Watchdog,
            5 => SoftReset,
            _ => return None,
        })
    }
}

/// The run state of a domain, as `getdomaininfo` flags report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Created or paused by the toolstack (`XEN_DOMINF_paused`).
    Paused,
    /// Running or runnable.
    Running,
    /// Shut down for `reason` (`XEN_DOMINF_shutdown`); resources still held
    /// until destroyed.
    Shutdown(ShutdownReason),
    /// Being destroyed (`XEN_DOMINF_dying`).
    Dying,
}

/// What `getdomaininfo` tells about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain.
    pub domid: DomId,
    /// Its run state.
    pub state: RunState,
    /// The handle (UUID) given at creation.
    pub handle: [u8; 16],
    /// Pages allocated to it.
    pub tot_pages: u64,
    /// Its memory limit, in KiB.
    pub max_mem_kib: u64,
    /// Its vCPU limit.
    pub max_vcpus: u32,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Whether it is privileged (the toolstack).
    pub privileged: bool,
}

/// Parameters of `XEN_DOMCTL_createdomain` that Windsor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateConfig {
    /// The handle (UUID) of the new domain.
    pub handle: [u8; 16],
    /// Initial vCPU limit (`max_vcpus` of `xen_domctl_createdomain`).
    pub max_vcpus: u32,
    /// Initial memory limit in KiB.
    pub max_mem_kib: u64,
    /// Maximum grant-table frames (`max_grant_frames`).
    pub max_grant_frames: u32,
    /// Maximum event channel ports (`max_evtchn_port`).
    pub max_evtchn_port: u32,
}

impl Default for CreateConfig {
    fn default() -> Self {
        CreateConfig {
            handle: [0; 16],
            max_vcpus: 1,
            max_mem_kib: 16 * 1024,
            max_grant_frames: 32,
            max_evtchn_port: 1023,
        }
    }
}

/// Domain control, for the privileged toolstack (`XEN_DOMCTL_*`).
///
/// Calls from an unprivileged domain fail with `EPERM`.
pub trait DomainControl {
    /// Creates a paused, empty domain (`createdomain`, then `max_vcpus`
    /// and `max_mem`).
    fn create(&self, cfg: &CreateConfig) -> Result<DomId>;
    /// Sets the vCPU limit (`max_vcpus`).
    fn set_max_vcpus(&self, dom: DomId, n: u32) -> Result<()>;
    /// Sets the memory limit (`max_mem`).
    fn set_max_mem(&self, dom: DomId, kib: u64) -> Result<()>;
    /// Pauses all vCPUs (`pausedomain`).
    fn pause(&self, dom: DomId) -> Result<()>;
    /// Lets a paused domain run (`unpausedomain`).
    fn unpause(&self, dom: DomId) -> Result<()>;
    /// Shuts the domain down for `reason` (`SCHEDOP_remote_shutdown`).
    fn shutdown(&self, dom: DomId, reason: ShutdownReason) -> Result<()>;
    /// Destroys the domain: closes its event channels, revokes its grants,
    /// frees its memory (`destroydomain`).
    fn destroy(&self, dom: DomId) -> Result<()>;
    /// Reports one domain (`getdomaininfo`); `ESRCH` if there is none.
    fn info(&self, dom: DomId) -> Result<DomainInfo>;
    /// Reports domains with ids from `start`, at most `out.len()` of them,
    /// in id order; returns how many were written.
    fn list(&self, start: DomId, out: &mut [DomainInfo]) -> Result<usize>;
}

/// A kernel image and how to start it.
#[derive(Clone, Copy, Debug)]
pub struct DomainImage<'a> {
    /// The kernel: a PVH ELF in Xen mode; in host mode, the name of an image
    /// registered with the simulator.
    pub kernel: &'a [u8],
    /// The command line (`hvm_start_info.cmdline_paddr`).
    pub cmdline: &'a str,
    /// The domain that will serve the guest's xenstore ring.
    pub xenstore_domid: DomId,
    /// The domain that will serve the guest's console ring.
    pub console_domid: DomId,
}

/// What the builder set up for the toolstack to announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltDomain {
    /// Frame of the xenstore ring page (`HVM_PARAM_STORE_PFN`), granted to
    /// the xenstore domain as [`GrantRef::RESERVED_XENSTORE`].
    pub store_gfn: Gfn,
    /// The guest's unbound port for the xenstore domain (`HVM_PARAM_STORE_EVTCHN`).
    pub store_port: EvtchnPort,
    /// Frame of the console ring page (`HVM_PARAM_CONSOLE_PFN`), granted to
    /// the console domain as [`GrantRef::RESERVED_CONSOLE`].
    pub console_gfn: Gfn,
    /// The guest's unbound port for the console domain (`HVM_PARAM_CONSOLE_EVTCHN`).
    pub console_port: EvtchnPort,
}

/// Loads an image into a created (paused) domain and prepares its start
/// info, xenstore and console rings. The domain stays paused.
pub trait DomainBuilder {
    /// Builds `dom` from `image`. A bad image fails with `ENOEXEC` and leaves
    /// the domain empty (the caller destroys it).
    fn build(&self, dom: DomId, image: &DomainImage<'_>) -> Result<BuiltDomain>;
}

/// Where a restored domain's rings are served: what the builder's
/// [`DomainImage`] names for a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreTarget {
    /// The domain that will serve the restored guest's xenstore ring.
    pub xenstore_domid: DomId,
    /// The domain that will serve its console ring.
    pub console_domid: DomId,
}

/// A domain brought back by [`DomainSave::restore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The new domain (paused; unpausing it lets the guest's suspend call
    /// return "resumed").
    pub domid: DomId,
    /// Its fresh xenstore and console rings, for the toolstack to announce
    /// (`XS_INTRODUCE`) as after a build; `None` for a domain that was not
    /// started by the builder and so has no rings.
    pub rings: Option<BuiltDomain>,
}

/// Save and restore, as `xc_domain_save`/`xc_domain_restore` do for the
/// toolstack: a domain that suspended itself (`SHUTDOWN_suspend`) is
/// captured, memory and configuration, into a [`Saved`](Self::Saved) image;
/// the domain is then destroyed as usual. Restoring builds a *new* domain
/// (new domid) from the image, with fresh xenstore and console rings; when
/// it is unpaused, the guest's suspend call returns
/// [`SuspendOutcome::Resumed`] and the guest reconnects.
///
/// The image is consumed by `restore`, so it cannot be restored twice.
/// Only host mode (`xen-sim`) implements it; the Xen-mode runtime has no
/// save/restore yet.
pub trait DomainSave {
    /// A saved domain. Dropping it without restoring discards the domain
    /// for good.
    type Saved: Send;
    /// Captures `dom`, which must have shut down with
    /// [`ShutdownReason::Suspend`] (`EINVAL` otherwise). The domain stays
    /// in the table, shut down, until destroyed.
    fn save(&self, dom: DomId) -> Result<Self::Saved>;
    /// Creates a paused domain from `saved`, its rings served by `target`.
    fn restore(&self, saved: Self::Saved, target: &RestoreTarget) -> Result<Restored>;
}

/// How a guest's suspend call (`SCHEDOP_shutdown(SHUTDOWN_suspend)`)
/// returned, as Xen reports it to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendOutcome {
    /// The hypercall returned 0: the domain was saved and restored, it now
    /// runs in a new domain. Event channels, grants and the xenstore
    /// connection of the old domain are gone: reconnect from the (new)
    /// start info.
    Resumed,
    /// The hypercall returned 1: the suspend was cancelled and the guest
    /// runs on in the same domain, its connections intact.
    Cancelled,
}

/// The domain's console.
pub trait Console {
    /// Writes bytes to the console; never blocks for long, may drop output.
    fn write(&self, bytes: &[u8]);
}

/// A monotonic clock.
pub trait Clock {
    /// Time since the host (hypervisor) started.
    fn now(&self) -> Duration;
}

/// The xenbus ring a domain was started with.
pub struct StoreRing<'a> {
    /// The `xenstore_domain_interface` page.
    pub page: SharedMem<'a>,
    /// The local port bound to the xenstore domain.
    pub port: EvtchnPort,
}

/// Everything an ordinary (unprivileged) domain can do.
pub trait Platform: GrantTable + EventChannel + Console + Clock {
    /// Our own domain id.
    fn domid(&self) -> DomId;
    /// The command line we were started with.
    fn cmdline(&self) -> &str;
    /// The xenbus ring to the xenstore domain, if the builder set one up.
    fn store_ring(&self) -> Option<StoreRing<'_>>;
    /// Shuts this domain down (`SCHEDOP_shutdown`). In Xen mode it does not
    /// return; in host mode every later call fails with `ESRCH` and the
    /// domain's entry function should return.
    fn shutdown_self(&self, reason: ShutdownReason);
    /// Suspends this domain (`SCHEDOP_shutdown(SHUTDOWN_suspend)`) and
    /// returns when it runs again: [`SuspendOutcome::Resumed`] in a new
    /// domain after a restore (the guest must then reconnect xenstore and
    /// its devices through [`store_ring`](Self::store_ring), whose port is
    /// new), or [`SuspendOutcome::Cancelled`]. Fails with `ESRCH` if the
    /// domain is destroyed (or its saved image discarded) instead, and the
    /// guest should then return.
    ///
    /// The default is `ENOSYS`, for platforms without save/restore (the
    /// Xen-mode runtime, so far).
    fn suspend_self(&self) -> Result<SuspendOutcome> {
        Err(Error::Errno(Errno::ENOSYS))
    }
}
