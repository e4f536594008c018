//! Scheduler operations (`xen/include/public/sched.h`, Xen 4.17).
//!
//! Produced by the unikernel runtime (block until an event, poll ports, shut
//! itself down) and by the toolstack (`SCHEDOP_remote_shutdown` of another
//! domain); consumed by Xen. Each command takes a pointer to one of the
//! argument structs below:
//!
//! ```text
//! sched_shutdown         0: reason u32                                  (4 bytes)
//! sched_poll             0: ports (guest handle, u64)  8: nr_ports u32
//!                       16: timeout u64                                 (24 bytes)
//! sched_remote_shutdown  0: domain_id u16  4: reason u32                (8 bytes)
//! ```

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `SCHEDOP_yield`: give up the CPU, stay runnable.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`: sleep until an event is pending.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`: stop the calling domain ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`: block until one of some ports is pending ([`SchedPoll`]).
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown`: shut another domain down ([`SchedRemoteShutdown`]).
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`: record a shutdown reason without shutting down.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog`: arm, re-arm or remove a domain watchdog.
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// `SCHEDOP_pin_override`: temporarily pin the vCPU (hardware domain only).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// `SHUTDOWN_poweroff`: exited normally; clean up and destroy.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`: clean up, destroy, then restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`: clean up and save suspend state.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`: the domain crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`: the domain watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset`: reset the domain keeping its memory.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// `SHUTDOWN_MAX`: the largest valid reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Why a domain shut down (`enum sched_shutdown_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff = SHUTDOWN_POWEROFF,
    /// `SHUTDOWN_reboot`.
    Reboot = SHUTDOWN_REBOOT,
    /// `SHUTDOWN_suspend`.
    Suspend = SHUTDOWN_SUSPEND,
    /// `SHUTDOWN_crash`.
    Crash = SHUTDOWN_CRASH,
    /// `SHUTDOWN_watchdog`.
    Watchdog = SHUTDOWN_WATCHDOG,
    /// `SHUTDOWN_soft_reset`.
    SoftReset = SHUTDOWN_SOFT_RESET,
}

impl ShutdownReason {
    /// Decodes a `SHUTDOWN_*` value; `None` above [`SHUTDOWN_MAX`].
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            SHUTDOWN_POWEROFF => Self::Poweroff,
            SHUTDOWN_REBOOT => Self::Reboot,
            SHUTDOWN_SUSPEND => Self::Suspend,
            SHUTDOWN_CRASH => Self::Crash,
            SHUTDOWN_WATCHDOG => Self::Watchdog,
            SHUTDOWN_SOFT_RESET => Self::SoftReset,
            _ => return None,
        })
    }
}

/// `struct sched_shutdown`: argument of `SCHEDOP_shutdown` and
/// `SCHEDOP_shutdown_code`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedShutdown {
    /// A `SHUTDOWN_*` reason.
    pub reason: u32,
}

/// `struct sched_poll`: argument of `SCHEDOP_poll`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest address of an array of `evtchn_port_t` (u32) to wait on.
    pub ports: u64,
    /// Number of entries in `ports`.
    pub nr_ports: u32,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Absolute system time (ns) to give up at; 0 waits forever.
    pub timeout: u64,
}

/// `struct sched_remote_shutdown`: argument of `SCHEDOP_remote_shutdown`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    /// The domain to shut down (`domid_t`).
    pub domain_id: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// A `SHUTDOWN_*` reason.
    pub reason: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_sched_h() {
        assert_layout!(SchedShutdown, size 4, align 4, reason @ 0);
        assert_layout!(SchedPoll, size 24, align 8, ports @ 0, nr_ports @ 8, timeout @ 16);
        assert_layout!(SchedRemoteShutdown, size 8, align 4, domain_id @ 0, reason @ 4);
    }

    #[test]
    fn shutdown_reasons_decode() {
        assert_eq!(ShutdownReason::from_raw(0), Some(ShutdownReason::Poweroff));
        assert_eq!(ShutdownReason::from_raw(3), Some(ShutdownReason::Crash));
        assert_eq!(
            ShutdownReason::from_raw(SHUTDOWN_MAX),
            Some(ShutdownReason::SoftReset)
        );
        assert_eq!(ShutdownReason::from_raw(SHUTDOWN_MAX + 1), None);
        assert_eq!(SCHEDOP_POLL, 3);
        assert_eq!(SCHEDOP_REMOTE_SHUTDOWN, 4);
    }
}
