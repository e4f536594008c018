//! XAPI's VM power states and which operation is legal in which state.
//!
//! Pure functions, no I/O: the service asks [`check`] before doing
//! anything, and [`after_exit`] what a domain's own shutdown means for its
//! VM.
//!
//! ```text
//!            start                pause
//!  Halted ─────────────▶ Running ◀────────▶ Paused
//!    ▲  ▲  start_paused    │  │    unpause     │
//!    │  └──────────────────┼──┼────────────────┘ (start paused lands here)
//!    │   clean/hard_shutdown│  │ suspend
//!    └──────────────────────┘  ▼
//!    ◀────hard_shutdown──── Suspended ──resume──▶ Running / Paused
//! ```
//!
//! The table is XAPI's (`xapi_vm_lifecycle.ml`), restricted to the
//! operations Windsor implements.

use crate::action::PowerState;
use xen::platform::ShutdownReason;

/// A lifecycle operation that depends on the power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `VM.start`.
    Start,
    /// `VM.pause`.
    Pause,
    /// `VM.unpause`.
    Unpause,
    /// `VM.clean_shutdown` and `VM.shutdown`.
    CleanShutdown,
    /// `VM.hard_shutdown`.
    HardShutdown,
    /// `VM.clean_reboot`.
    CleanReboot,
    /// `VM.hard_reboot`.
    HardReboot,
    /// `VM.suspend`.
    Suspend,
    /// `VM.resume`.
    Resume,
    /// `VM.destroy`.
    Destroy,
    /// `VM.clone` / `VM.copy`.
    Clone,
    /// Changing static limits (`set_memory*`, `set_VCPUs_max`).
    SetStatic,
}

impl Op {
    /// Every operation, in the order `allowed_operations` lists them.
    pub const ALL: [Op; 12] = [
        Op::Start,
        Op::Pause,
        Op::Unpause,
        Op::CleanShutdown,
        Op::HardShutdown,
        Op::CleanReboot,
        Op::HardReboot,
        Op::Suspend,
        Op::Resume,
        Op::Destroy,
        Op::Clone,
        Op::SetStatic,
    ];

    /// XAPI's `vm_operations` name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Pause => "pause",
            Op::Unpause => "unpause",
            Op::CleanShutdown => "clean_shutdown",
            Op::HardShutdown => "hard_shutdown",
            Op::CleanReboot => "clean_reboot",
            Op::HardReboot => "hard_reboot",
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Destroy => "destroy",
            Op::Clone => "clone",
            Op::SetStatic => "changing_static_range",
        }
    }

    /// The power states in which the operation is legal; the first is the
    /// one reported as `expected` in
    /// [`ActionError::VmBadPowerState`](crate::action::ActionError::VmBadPowerState).
    pub fn legal_in(self) -> &'static [PowerState] {
        use PowerState::*;
        match self {
            Op::Start => &[Halted],
            Op::Pause => &[Running],
            Op::Unpause => &[Paused],
            Op::CleanShutdown | Op::CleanReboot | Op::Suspend => &[Running],
            Op::HardShutdown => &[Running, Paused, Suspended],
            Op::HardReboot => &[Running, Paused],
            Op::Resume => &[Suspended],
            Op::Destroy | Op::Clone => &[Halted, Suspended],
            Op::SetStatic => &[Halted],
        }
    }

    /// Whether templates may do it (templates are never started).
    pub fn allowed_for_template(self) -> bool {
        matches!(self, Op::Destroy | Op::Clone | Op::SetStatic)
    }
}

/// Whether `op` is legal in `state`; `Err(expected)` if not.
pub fn check(op: Op, state: PowerState) -> Result<(), PowerState> {
    let legal = op.legal_in();
    if legal.contains(&state) {
        Ok(())
    } else {
        Err(legal[0])
    }
}

/// The power state an operation leaves the VM in, when it succeeds.
pub fn target(op: Op, state: PowerState, start_paused: bool) -> PowerState {
    use PowerState::*;
    match op {
        Op::Start | Op::Resume if start_paused => Paused,
        Op::Start | Op::Resume | Op::Unpause | Op::CleanReboot => Running,
        Op::HardReboot => state,
        Op::Pause => Paused,
        Op::CleanShutdown | Op::HardShutdown => Halted,
        Op::Suspend => Suspended,
        Op::Destroy | Op::Clone | Op::SetStatic => state,
    }
}

/// XAPI's `allowed_operations` for a VM in `state`.
pub fn allowed_operations(state: PowerState, is_template: bool) -> impl Iterator<Item = Op> {
    Op::ALL
        .into_iter()
        .filter(move |op| check(*op, state).is_ok() && (!is_template || op.allowed_for_template()))
}

/// What to do after a domain shut itself down (or crashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// Destroy the domain; the VM is Halted.
    Halt,
    /// Destroy the domain and start a new one; the VM stays Running.
    Restart,
    /// Save the domain through the platform (the image is kept for
    /// resume), destroy it, and keep the VM Suspended.
    Suspend,
}

/// The action for a domain exit, from the VM's `actions_after_*` fields
/// (`restart` and `coredump_and_restart`/`rename_restart` restart; the rest
/// halt).
pub fn after_exit(
    reason: ShutdownReason,
    after_shutdown: &str,
    after_reboot: &str,
    after_crash: &str,
) -> AfterExit {
    let restart = |a: &str| a == "restart" || a.ends_with("_restart");
    match reason {
        ShutdownReason::Suspend => AfterExit::Suspend,
        ShutdownReason::Poweroff if restart(after_shutdown) => AfterExit::Restart,
        ShutdownReason::Reboot | ShutdownReason::SoftReset if restart(after_reboot) => {
            AfterExit::Restart
        }
        ShutdownReason::Crash | ShutdownReason::Watchdog if restart(after_crash) => {
            AfterExit::Restart
        }
        _ => AfterExit::Halt,
    }
}

/// The `last_shutdown_reason` / `control/shutdown` word for a reason.
pub fn reason_word(r: ShutdownReason) -> &'static str {
    match r {
        ShutdownReason::Poweroff => "poweroff",
        ShutdownReason::Reboot => "reboot",
        ShutdownReason::Suspend => "suspend",
        ShutdownReason::Crash => "crash",
        ShutdownReason::Watchdog => "watchdog",
        ShutdownReason::SoftReset => "soft_reset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PowerState::*;

    #[test]
    fn table_is_xapis() {
        let all = [Halted, Paused, Running, Suspended];
        let legal = |op: Op| all.into_iter().filter(move |s| check(op, *s).is_ok());
        assert!(legal(Op::Start).eq([Halted]));
        assert!(legal(Op::Pause).eq([Running]));
        assert!(legal(Op::Unpause).eq([Paused]));
        assert!(legal(Op::HardShutdown).eq([Paused, Running, Suspended]));
        assert!(legal(Op::Resume).eq([Suspended]));
        assert_eq!(check(Op::Start, Running), Err(Halted));
        assert_eq!(check(Op::Destroy, Running), Err(Halted));
        assert_eq!(target(Op::Start, Halted, true), Paused);
        assert_eq!(target(Op::Resume, Suspended, false), Running);
    }

    #[test]
    fn templates_are_never_started() {
        assert!(allowed_operations(Halted, true).all(|o| o != Op::Start));
        assert!(allowed_operations(Halted, false).any(|o| o == Op::Start));
    }

    #[test]
    fn exits() {
        let r = |reason| after_exit(reason, "destroy", "restart", "destroy");
        assert_eq!(r(ShutdownReason::Poweroff), AfterExit::Halt);
        assert_eq!(r(ShutdownReason::Reboot), AfterExit::Restart);
        assert_eq!(r(ShutdownReason::Crash), AfterExit::Halt);
        assert_eq!(r(ShutdownReason::Suspend), AfterExit::Suspend);
        assert_eq!(
            after_exit(
                ShutdownReason::Crash,
                "destroy",
                "restart",
                "coredump_and_restart"
            ),
            AfterExit::Restart
        );
    }
}
