//! VM power operations and domain exits, as steps the executor drives.
//!
//! A start, for example, is: [`Engine::begin`] (checks the power state,
//! template flag and operations in progress), then the executor creates
//! and builds a domain from [`Engine::create_config`] and
//! [`Engine::domain_image`] (errors mapped by [`create_error`] and
//! [`build_error`]), then [`Engine::attach`] (the domain becomes the VM's;
//! the answer is the domain's xenstore tree, one transaction), then the
//! executor introduces and unpauses it, then [`Engine::started`] records
//! the new power state. [`Engine::detach`] undoes `attach` (the answer is
//! the removal transaction).
//!
//! Domain exits: the executor lists the domains ([`Scan`]), asks
//! [`Engine::exits`] which VMs' domains shut down or vanished and what
//! follows ([`AfterExit`]), tears each down, then tells
//! [`Engine::exited`].
//!
//! Clean shutdown, reboot and suspend: [`Engine::clean_request`] says which
//! `control/shutdown` word to write, [`Engine::clean_started`] marks the
//! VM busy;
//! [`Engine::clean_outcome`] answers once the domain has gone (settled by
//! an exit), [`Engine::clean_timed_out`] if it has not by the deadline.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use xen::platform::{CreateConfig, DomainImage, ShutdownReason};
use xen::{DomId, Errno};

use crate::action::{
    ref_of, ActionError, ActionResult, Class, PowerState, Reply, VmRecord, NULL_REF,
};
use crate::effect::{Effect, XsTransaction};
use crate::engine::{Engine, Runtime};
use crate::layout;
use crate::lifecycle::{self, AfterExit, Op};
use crate::limits;
use crate::records::uuid_bytes;

/// What a domain list found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every domain id, in order.
    pub ids: Vec<u16>,
    /// Domains that shut down, and why.
    pub down: Vec<(u16, ShutdownReason)>,
}

/// A VM whose domain exited, and what follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The VM's uuid.
    pub vm: String,
    /// Its (former) domain.
    pub dom: DomId,
    /// Why it exited (vanished domains count as crashes).
    pub why: ShutdownReason,
    /// What follows.
    pub after: AfterExit,
}

/// A clean shutdown, reboot or suspend in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanRequest {
    /// The VM's uuid.
    pub vm: String,
    /// Its domain.
    pub dom: DomId,
    /// The node to write (`/local/domain/<id>/control/shutdown`).
    pub node: String,
    /// The word to write there.
    pub word: &'static str,
}

/// An error of the platform's `create`, as the API reports it.
pub fn create_error(e: xen::platform::Error, v: &VmRecord) -> ActionError {
    match e {
        xen::platform::Error::Errno(Errno::ENOMEM) => ActionError::HostNotEnoughFreeMemory {
            needed: v.memory_static_max,
            available: 0,
        },
        e => ActionError::internal(e),
    }
}

/// An error of the platform's `build`, as the API reports it.
pub fn build_error(e: xen::platform::Error, v: &VmRecord) -> ActionError {
    match e {
        xen::platform::Error::Errno(Errno::ENOEXEC) => ActionError::BootloaderFailed {
            vm: ref_of(&v.uuid),
            kernel: v.PV_kernel.clone(),
        },
        e => ActionError::internal(e),
    }
}

impl Engine {
    /// The VM `r` if `op` is legal for it now (for a start: if its sizes
    /// are valid and fit the host, see [`crate::limits`]).
    pub fn begin(&self, r: &str, op: Op) -> Result<VmRecord, ActionError> {
        let v = self.recs.vm(r)?.clone();
        self.check(&v, r, op)?;
        if op == Op::Start {
            limits::check_vm(&v)?;
            limits::check_host(&v, &self.settings.host_limits)?;
        }
        Ok(v)
    }

    /// The domain to create for `v`.
    pub fn create_config(&self, v: &VmRecord) -> CreateConfig {
        CreateConfig {
            handle: uuid_bytes(&v.uuid),
            max_vcpus: u32::try_from(v.VCPUs_max.max(1)).unwrap_or(1),
            max_mem_kib: u64::try_from(v.memory_static_max / 1024)
                .unwrap_or(0)
                .max(64),
            ..CreateConfig::default()
        }
    }

    /// What to build into `v`'s domain.
    pub fn domain_image<'a>(&self, v: &'a VmRecord) -> DomainImage<'a> {
        DomainImage {
            kernel: v.PV_kernel.as_bytes(),
            cmdline: &v.PV_args,
            xenstore_domid: self.settings.xenstore_domid,
            console_domid: DomId::DOM0,
        }
    }

    /// Makes `d` the domain of `v`; the answer is its xenstore tree, to
    /// write in one transaction before introducing it.
    pub fn attach(&mut self, v: &VmRecord, d: DomId) -> XsTransaction {
        self.by_dom.insert(d.0, v.uuid.clone());
        self.rt.entry(v.uuid.clone()).or_default().domid = Some(d);
        self.set_attached(v, true);
        self.domain_tree(v, d)
    }

    /// Domain `d` of VM `uuid` is being destroyed: forgets it; the answer
    /// removes its xenstore nodes (its own, its backends').
    pub fn detach(&mut self, uuid: &str, d: DomId) -> XsTransaction {
        self.by_dom.remove(&d.0);
        if let Some(rt) = self.rt.get_mut(uuid) {
            if rt.domid == Some(d) {
                rt.domid = None;
            }
        }
        if let Ok(v) = self.recs.vm(&ref_of(uuid)).cloned() {
            self.set_attached(&v, false);
        }
        self.domain_removal(d)
    }

    /// The domain of VM `uuid`, or an internal error.
    pub fn domain_of(&self, uuid: &str) -> Result<DomId, ActionError> {
        self.rt
            .get(uuid)
            .and_then(|x| x.domid)
            .ok_or_else(|| ActionError::internal("no domain"))
    }

    /// `v` runs (or is paused) in `d` after `op`.
    pub fn started(&mut self, mut v: VmRecord, op: Op, d: DomId, paused: bool) {
        v.power_state = lifecycle::target(op, v.power_state, paused);
        v.domid = i64::from(d.0);
        v.resident_on = self.host_ref.clone();
        self.put_vm(v);
    }

    /// `v` runs in a new domain `d` after a reboot (`why`).
    pub fn restarted(&mut self, mut v: VmRecord, d: DomId, why: &str) {
        v.power_state = PowerState::Running;
        v.domid = i64::from(d.0);
        v.last_shutdown_reason = why.into();
        self.put_vm(v);
    }

    /// `v` has no domain any more: `state` is Halted or Suspended.
    pub fn halted(&mut self, mut v: VmRecord, state: PowerState, why: &str) {
        v.power_state = state;
        v.domid = -1;
        v.resident_on = NULL_REF.into();
        v.last_shutdown_reason = why.into();
        self.put_vm(v);
    }

    /// `VM.hard_shutdown` is done (domain torn down): Halted, and a saved
    /// image (from Suspended) is dropped.
    pub fn hard_halted(&mut self, v: VmRecord) {
        self.effects.push(Effect::DropImage(v.uuid.clone()));
        self.halted(v, PowerState::Halted, "halted");
    }

    /// `VM.pause` / `VM.unpause` is done.
    pub fn paused(&mut self, mut v: VmRecord, op: Op) {
        v.power_state = lifecycle::target(op, v.power_state, false);
        self.put_vm(v);
    }

    /// Whether any VM has a domain (else a domain list is not needed).
    pub fn has_domains(&self) -> bool {
        !self.by_dom.is_empty()
    }

    /// Tracked domains missing from `scan`: destroyed behind the
    /// toolstack's back, or started after the scan. The executor asks the
    /// platform about each and passes the confirmed-gone ones to
    /// [`exits`](Self::exits).
    pub fn missing(&self, scan: &Scan) -> Vec<DomId> {
        self.by_dom
            .keys()
            .filter(|d| scan.ids.binary_search(d).is_err())
            .map(|d| DomId(*d))
            .collect()
    }

    /// The VMs whose domain shut down (per `scan`) or is `gone` (treated
    /// as a crash), with what follows for each.
    pub fn exits(&self, scan: &Scan, gone: &[DomId]) -> Vec<Exit> {
        let down = scan.down.iter().copied();
        let gone = gone.iter().map(|d| (d.0, ShutdownReason::Crash));
        down.chain(gone)
            .filter_map(|(d, why)| {
                let uuid = self.by_dom.get(&d)?;
                let v = self.recs.vm(&ref_of(uuid)).ok()?;
                let busy = self.rt.get(uuid).and_then(|x| x.busy);
                let after = match (busy, why) {
                    (Some(Op::CleanShutdown), ShutdownReason::Poweroff) => AfterExit::Halt,
                    (Some(Op::CleanReboot), ShutdownReason::Reboot) => AfterExit::Restart,
                    _ => lifecycle::after_exit(
                        why,
                        &v.actions_after_shutdown,
                        &v.actions_after_reboot,
                        &v.actions_after_crash,
                    ),
                };
                Some(Exit {
                    vm: uuid.clone(),
                    dom: DomId(d),
                    why,
                    after,
                })
            })
            .collect()
    }

    /// The exit `x` is torn down (the executor has called
    /// [`detach`](Self::detach)): remembers it for a clean operation
    /// waiting on it, and, unless the VM restarts, records its new state.
    /// The answer is the VM record, to boot again on [`AfterExit::Restart`].
    pub fn exited(&mut self, x: &Exit) -> Option<VmRecord> {
        if let Some(rt) = self.rt.get_mut(&x.vm) {
            rt.last_exit = Some((x.dom, x.why));
        }
        let v = self.recs.vm(&ref_of(&x.vm)).ok()?.clone();
        let word = lifecycle::reason_word(x.why);
        match x.after {
            AfterExit::Halt => self.halted(v, PowerState::Halted, word),
            AfterExit::Suspend => self.halted(v, PowerState::Suspended, word),
            AfterExit::Restart => return Some(v),
        }
        None
    }

    /// The request for a clean shutdown (`op` is `CleanShutdown`), reboot
    /// or suspend of VM `r`, if legal now. The executor writes it, then
    /// calls [`clean_started`](Self::clean_started).
    pub fn clean_request(&self, r: &str, op: Op) -> Result<CleanRequest, ActionError> {
        let v = self.begin(r, op)?;
        let d = self.domain_of(&v.uuid)?;
        let word = match op {
            Op::CleanReboot => "reboot",
            Op::Suspend => "suspend",
            _ => "poweroff",
        };
        Ok(CleanRequest {
            vm: v.uuid,
            node: alloc::format!("{}/control/shutdown", layout::domain(d)),
            dom: d,
            word,
        })
    }

    /// The guest was asked: VM `r` is busy with `op` until
    /// [`clean_outcome`](Self::clean_outcome) or
    /// [`clean_timed_out`](Self::clean_timed_out).
    pub fn clean_started(&mut self, r: &str, c: &CleanRequest, op: Op) {
        if let Some(rt) = self.rt.get_mut(&c.vm) {
            rt.busy = Some(op);
        }
        self.touch(Class::Vm, r);
    }

    /// Whether VM `r`'s domain still runs the clean request `c`.
    pub fn clean_pending(&self, c: &CleanRequest) -> bool {
        self.rt.get(&c.vm).is_some_and(|rt| rt.domid == Some(c.dom))
    }

    /// The answer to clean request `c` of `op` on VM `r` once its domain
    /// is gone (see [`clean_pending`](Self::clean_pending)); the VM is no
    /// longer busy.
    pub fn clean_outcome(&mut self, r: &str, c: &CleanRequest, op: Op) -> ActionResult {
        let rt = self.rt.get_mut(&c.vm);
        let exit = rt
            .as_ref()
            .and_then(|rt| rt.last_exit)
            .filter(|(x, _)| *x == c.dom);
        if let Some(rt) = rt {
            rt.busy = None;
        }
        let want = match op {
            Op::CleanReboot => ShutdownReason::Reboot,
            Op::Suspend => ShutdownReason::Suspend,
            _ => ShutdownReason::Poweroff,
        };
        let vm = r.to_string();
        match exit.map(|(_, why)| why) {
            Some(why) if why == want => Ok(Reply::Unit),
            Some(ShutdownReason::Crash) | Some(ShutdownReason::Watchdog) => {
                Err(ActionError::VmCrashed { vm })
            }
            Some(ShutdownReason::Reboot) => Err(ActionError::VmRebooted { vm }),
            Some(_) => Err(ActionError::VmHalted { vm }),
            // Someone else (hard_shutdown) ended it.
            None => Ok(Reply::Unit),
        }
    }

    /// Clean request `c` on VM `r` timed out after `timeout`; `acked` says
    /// whether the guest cleared `control/shutdown`. The VM is no longer
    /// busy; the answer is the error to report (unless the call falls back
    /// to a hard shutdown).
    pub fn clean_timed_out(
        &mut self,
        r: &str,
        c: &CleanRequest,
        acked: bool,
        timeout: Duration,
    ) -> ActionError {
        if let Some(rt) = self.rt.get_mut(&c.vm) {
            rt.busy = None;
        }
        self.touch(Class::Vm, r);
        if acked {
            ActionError::VmShutdownTimeout {
                vm: r.to_string(),
                timeout,
            }
        } else {
            ActionError::VmFailedShutdownAck { vm: r.to_string() }
        }
    }

    /// Registers runtime state for every VM after loading the database:
    /// re-attaches VMs whose domain still runs (`live`: the domains the
    /// platform knows, with their handles) and halts the others.
    pub(crate) fn reattach(&mut self, live: &[(DomId, [u8; 16])]) {
        for mut v in self.recs.vms() {
            let mut rt = Runtime::default();
            if v.power_state != PowerState::Halted && v.power_state != PowerState::Suspended {
                let alive = u16::try_from(v.domid)
                    .ok()
                    .and_then(|d| live.iter().find(|(x, _)| x.0 == d))
                    .filter(|(_, h)| *h == uuid_bytes(&v.uuid));
                match alive {
                    Some((d, _)) => {
                        rt.domid = Some(*d);
                        self.by_dom.insert(d.0, v.uuid.clone());
                    }
                    None => {
                        tracing::info!(vm = %v.uuid, "domain gone while the toolstack was down");
                        v.power_state = PowerState::Halted;
                        v.domid = -1;
                        v.resident_on = NULL_REF.into();
                        self.put_quiet(crate::action::Record::Vm(v.clone()));
                    }
                }
            }
            self.rt.insert(v.uuid.clone(), rt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, Record};
    use crate::engine::testing::*;
    use crate::engine::Handled;
    use crate::lifecycle::Op;
    use PowerState::*;

    /// Runs a start as the executor does, with domain `d`.
    fn start(e: &mut Engine, vm: &str, d: u16, paused: bool) -> XsTransaction {
        let v = e.begin(vm, Op::Start).unwrap();
        let tx = e.attach(&v, DomId(d));
        e.started(v, Op::Start, DomId(d), paused);
        tx
    }

    fn state(e: &Engine, vm: &str) -> PowerState {
        e.recs.vm(vm).unwrap().power_state
    }

    fn scan(ids: &[u16], down: &[(u16, ShutdownReason)]) -> Scan {
        Scan {
            ids: ids.to_vec(),
            down: down.to_vec(),
        }
    }

    #[test]
    fn power_actions_go_to_the_executor() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        let a = Action::VmStart {
            vm,
            start_paused: false,
            force: false,
        };
        assert!(matches!(
            e.handle(a, 0),
            Handled::Execute(Action::VmStart { .. })
        ));
    }

    #[test]
    fn start_writes_the_domain_in_one_transaction() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        let tx = start(&mut e, &vm, 7, false);
        assert_eq!(tx.written("/local/domain/7/domid"), Some(&b"7"[..]));
        assert_eq!(tx.written("/local/domain/7/name"), Some(&b"a"[..]));
        assert_eq!(
            tx.written("/local/domain/7/control/shutdown"),
            Some(&b""[..])
        );
        let v = e.recs.vm(&vm).unwrap();
        assert_eq!((v.power_state, v.domid), (Running, 7));
        assert_eq!(v.resident_on, e.host_ref());
        assert_eq!(e.domid(&vm), Some(DomId(7)));
        // Not twice.
        assert!(matches!(
            e.begin(&vm, Op::Start),
            Err(ActionError::VmBadPowerState {
                expected: Halted,
                actual: Running,
                ..
            })
        ));
        // The host lists it.
        let Record::Host(h) = e.view(e.recs.get(Class::Host, e.host_ref()).unwrap()) else {
            panic!()
        };
        assert_eq!(h.resident_VMs, core::slice::from_ref(&vm));
        // Removal takes the domain and its backends.
        let rm = e.detach(&e.recs.vm(&vm).unwrap().uuid.clone(), DomId(7));
        assert!(rm
            .ops
            .contains(&crate::effect::XsOp::Rm("/local/domain/7".into())));
        assert_eq!(e.domid(&vm), None);
    }

    #[test]
    fn power_state_table_through_the_engine() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        start(&mut e, &vm, 3, true);
        assert_eq!(state(&e, &vm), Paused);
        assert!(e.begin(&vm, Op::Pause).is_err());
        let v = e.begin(&vm, Op::Unpause).unwrap();
        e.paused(v, Op::Unpause);
        assert_eq!(state(&e, &vm), Running);
        assert!(e.begin(&vm, Op::Resume).is_err());
        assert!(matches!(
            e.handle(
                Action::Destroy {
                    class: Class::Vm,
                    r: vm.clone()
                },
                0
            ),
            Handled::Reply(Err(ActionError::VmBadPowerState { .. }))
        ));
        let v = e.begin(&vm, Op::HardShutdown).unwrap();
        let uuid = v.uuid.clone();
        e.detach(&uuid, DomId(3));
        e.hard_halted(v);
        assert_eq!(state(&e, &vm), Halted);
        assert!(e.take_effects().contains(&Effect::DropImage(uuid)));
        assert_eq!(e.recs.vm(&vm).unwrap().last_shutdown_reason, "halted");
    }

    #[test]
    fn exits_follow_actions_after() {
        let mut e = engine();
        let a = new_vm(&mut e, "a");
        let b = new_vm(&mut e, "b");
        let c = new_vm(&mut e, "c");
        start(&mut e, &a, 1, false);
        start(&mut e, &b, 2, false);
        start(&mut e, &c, 3, false);
        // a powers off, b reboots (restart by default), c vanished.
        let s = scan(
            &[1, 2],
            &[(1, ShutdownReason::Poweroff), (2, ShutdownReason::Reboot)],
        );
        assert_eq!(e.missing(&s), [DomId(3)]);
        let exits = e.exits(&s, &[DomId(3)]);
        let after: Vec<_> = exits.iter().map(|x| (x.dom.0, x.why, x.after)).collect();
        assert_eq!(
            after,
            [
                (1, ShutdownReason::Poweroff, AfterExit::Halt),
                (2, ShutdownReason::Reboot, AfterExit::Restart),
                (3, ShutdownReason::Crash, AfterExit::Halt),
            ]
        );
        for x in &exits {
            e.detach(&x.vm, x.dom);
            if let Some(v) = e.exited(x) {
                e.attach(&v, DomId(9));
                e.restarted(v, DomId(9), lifecycle::reason_word(x.why));
            }
        }
        assert_eq!(state(&e, &a), Halted);
        assert_eq!(e.recs.vm(&a).unwrap().last_shutdown_reason, "poweroff");
        assert_eq!((state(&e, &b), e.recs.vm(&b).unwrap().domid), (Running, 9));
        assert_eq!(e.recs.vm(&c).unwrap().last_shutdown_reason, "crash");
        assert_eq!(e.resident(), 1);
    }

    #[test]
    fn clean_shutdown_busy_then_outcome() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        start(&mut e, &vm, 4, false);
        let t = e.token();
        let c = e.clean_request(&vm, Op::CleanShutdown).unwrap();
        assert_eq!(
            (c.node.as_str(), c.word),
            ("/local/domain/4/control/shutdown", "poweroff")
        );
        e.clean_started(&vm, &c, Op::CleanShutdown);
        // Busy: no other operation, and current_operations shows it.
        assert!(matches!(
            e.begin(&vm, Op::HardShutdown),
            Err(ActionError::OtherOperationInProgress {
                op: Op::CleanShutdown,
                ..
            })
        ));
        let b = e.events_since(&["vm".into()], t).unwrap().unwrap();
        let Some(Record::Vm(v)) = &b.events[0].snapshot else {
            panic!()
        };
        assert_eq!(
            v.current_operations.values().next().map(String::as_str),
            Some("clean_shutdown")
        );
        assert!(e.clean_pending(&c));
        // The guest reboots instead: the clean shutdown reports it.
        let s = scan(&[4], &[(4, ShutdownReason::Reboot)]);
        let x = e.exits(&s, &[]).pop().unwrap();
        assert_eq!(x.after, AfterExit::Restart);
        e.detach(&x.vm, x.dom);
        let v = e.exited(&x).unwrap();
        // The executor boots it again.
        e.attach(&v, DomId(5));
        e.restarted(v, DomId(5), "reboot");
        assert!(!e.clean_pending(&c));
        assert_eq!(
            e.clean_outcome(&vm, &c, Op::CleanShutdown),
            Err(ActionError::VmRebooted { vm: vm.clone() })
        );
        // No longer busy; a second request times out unacknowledged.
        let c = e.clean_request(&vm, Op::Suspend).unwrap();
        e.clean_started(&vm, &c, Op::Suspend);
        let err = e.clean_timed_out(&vm, &c, false, Duration::from_secs(1));
        assert_eq!(err, ActionError::VmFailedShutdownAck { vm: vm.clone() });
        assert!(e.begin(&vm, Op::HardShutdown).is_ok());
    }

    #[test]
    fn restart_reattaches_live_domains_and_halts_the_rest() {
        let mut e = engine();
        let a = new_vm(&mut e, "a");
        let b = new_vm(&mut e, "b");
        start(&mut e, &a, 1, false);
        start(&mut e, &b, 2, false);
        let handle = uuid_bytes(&e.recs.vm(&a).unwrap().uuid);
        let recs: Vec<_> = e.recs.iter().map(|(_, _, r)| r.clone()).collect();
        let mut again = Engine::new(e.settings().clone(), 2, recs);
        // Domain 2 is gone; domain 1 still runs a's handle.
        again.bootstrap(&[(DomId(1), handle), (DomId(3), [0; 16])]);
        assert_eq!(again.domid(&a), Some(DomId(1)));
        assert_eq!(again.domid(&b), None);
        assert_eq!(state(&again, &b), Halted);
        assert_eq!(again.recs.vm(&b).unwrap().domid, -1);
    }
}
