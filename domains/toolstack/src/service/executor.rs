//! The executor loop: each action goes through the engine with its lock
//! held; what the engine answers itself is returned, what needs the
//! platform, xenstore or a wait is dispatched to the executor's steps, and
//! the effects the engine queued (pool-database writes, dropped images,
//! VDI files) are carried out before the lock is released.

use std::collections::HashMap;
use std::string::String;
use std::sync::MutexGuard;
use std::vec::Vec;

use windsor_xenstore_client::{ClientError, XenStore};
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};

use super::{internal, Inner, Introducer};
use crate::action::{Action, ActionError, ActionResult, Reply};
use crate::db;
use crate::effect::{Effect, XsTransaction};
use crate::engine::{Engine, Handled};
use crate::lifecycle::Op;

/// Creates the sparse raw image of a new VDI (its directory too).
pub(super) fn disk_file(path: &str, size: u64) {
    let p = std::path::Path::new(path);
    let made = p
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        })
        .and_then(|f| f.set_len(size));
    if let Err(e) = made {
        tracing::warn!(%path, %e, "cannot create a VDI's file");
    }
}

/// Now, in Unix seconds (task timestamps).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Saved images dropped by an action; dropped in turn (ending their
/// parked guests) once the engine lock is released.
pub(super) type Trash<T> = Vec<T>;

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    pub(super) fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn images(&self) -> MutexGuard<'_, HashMap<String, P::Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out the engine's effects; wakes the waiters of
    /// `event.from` and clean operations if anything changed since
    /// `token`. The first failed write is the answer (the rest are still
    /// tried).
    pub(super) fn flush(
        &self,
        eng: &mut Engine,
        token: u64,
        trash: &mut Trash<P::Saved>,
    ) -> Result<(), ActionError> {
        let mut first = Ok(());
        for e in eng.take_effects() {
            let r = match &e {
                Effect::Save(class, uuid) => match eng.record(*class, uuid) {
                    Some(rec) => db::save(&self.xs, rec),
                    None => Ok(()),
                },
                Effect::Remove(class, uuid) => db::remove(&self.xs, *class, uuid),
                Effect::DropImage(uuid) => {
                    trash.extend(self.images().remove(uuid));
                    Ok(())
                }
                Effect::CreateDisk { path, size } => {
                    disk_file(path, *size);
                    Ok(())
                }
                Effect::RemoveDisk(path) => {
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(%path, %e, "cannot remove a VDI's file"),
                    }
                    Ok(())
                }
            };
            if let Err(err) = r {
                tracing::error!(?e, %err, "pool database write failed");
                if first.is_ok() {
                    first = Err(internal(err));
                }
            }
        }
        if eng.token() != token {
            self.changed.notify_all();
        }
        first
    }

    /// Runs `f` on the engine with the lock held, then its effects.
    pub(super) fn locked<T>(
        &self,
        f: impl FnOnce(&mut Engine, &mut Trash<P::Saved>) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        let mut trash = Vec::new();
        let r = {
            let mut eng = self.lock();
            let token = eng.token();
            let r = f(&mut eng, &mut trash);
            let flushed = self.flush(&mut eng, token, &mut trash);
            r.and_then(|x| flushed.map(|()| x))
        };
        drop(trash);
        r
    }

    /// Commits one transaction of the engine's.
    pub(super) fn commit(&self, tx: &XsTransaction) -> Result<(), ClientError> {
        crate::effect::commit(&self.xs, tx)
    }

    pub(super) fn handle(&self, action: Action) -> ActionResult {
        let mut pass = None;
        let r = self.locked(|eng, _| match eng.handle(action, unix_now()) {
            Handled::Reply(r) => r,
            Handled::Execute(a) => {
                pass = Some(a);
                Ok(Reply::Unit)
            }
        });
        match pass {
            Some(a) => self.execute(a),
            None => r,
        }
    }

    /// The actions that need the platform, xenstore or a wait.
    pub(super) fn execute(&self, action: Action) -> ActionResult {
        use Action as A;
        match action {
            A::VmStart {
                vm, start_paused, ..
            } => self.start(&vm, Op::Start, start_paused),
            A::VmResume {
                vm, start_paused, ..
            } => self.start(&vm, Op::Resume, start_paused),
            A::DevicePlug { class, device } => self.hotplug(class, &device, true),
            A::DeviceUnplug { class, device } => self.hotplug(class, &device, false),
            A::VmPause { vm } => self.pause(&vm, Op::Pause),
            A::VmUnpause { vm } => self.pause(&vm, Op::Unpause),
            A::VmHardShutdown { vm } => self.hard_shutdown(&vm),
            A::VmHardReboot { vm } => self.hard_reboot(&vm),
            A::VmCleanShutdown { vm } => self.clean(&vm, Op::CleanShutdown, false),
            A::VmShutdown { vm } => self.clean(&vm, Op::CleanShutdown, true),
            A::VmCleanReboot { vm } => self.clean(&vm, Op::CleanReboot, false),
            A::VmSuspend { vm } => self.clean(&vm, Op::Suspend, false),
            A::EventFrom {
                classes,
                token,
                timeout,
            } => self.event_from(&classes, token, timeout),
            a @ (A::XsRead { .. }
            | A::XsWrite { .. }
            | A::XsDirectory { .. }
            | A::XsRm { .. }
            | A::XsWatch { .. }
            | A::XsUnwatch { .. }
            | A::XsDropOwner { .. }) => self.xs_call(a),
            other => Err(internal(format_args!("not an executor action: {other:?}"))),
        }
    }
}
