//! The power operations that need the platform or a wait: start and
//! resume, pause and unpause, hard shutdown and reboot, and the clean
//! shutdown, reboot and suspend that ask the guest and wait for its exit.
//!
//! Suspend follows Xen: the guest acknowledges `control/shutdown =
//! suspend` and makes its suspend call; settling its `SHUTDOWN_suspend`
//! saves the domain through the platform ([`DomainSave`]), keeps the image
//! in memory with the VM's uuid, then destroys and releases the domain
//! like any exit ([`super::exits`]). Resume restores the image into a new
//! domain, writes its nodes and devices as a start does, and unpauses it
//! (unless resuming paused). A Suspended VM found at toolstack start has
//! no image: resuming it fails with `HANDLE_INVALID(VDI, OpaqueRef:NULL)`,
//! what XAPI reports for a VM whose `suspend_VDI` is gone;
//! `hard_shutdown` then discards it.

use std::time::Instant;
use std::vec::Vec;

use windsor_xenstore_client::{TxId, XenStore};
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel, RunState};

use super::{internal, Inner, Introducer};
use crate::action::{ActionResult, PowerState, Reply};
use crate::lifecycle::Op;
use crate::watcher;

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    pub(super) fn start(&self, r: &str, op: Op, paused: bool) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, op)?;
            let d = if op == Op::Resume {
                self.restore(eng, &v)?
            } else {
                self.boot(eng, &v)?
            };
            if !paused {
                if let Err(e) = self.p.unpause(d) {
                    self.teardown(eng, &v.uuid, d);
                    return Err(internal(e));
                }
            }
            eng.started(v, op, d, paused);
            Ok(Reply::Unit)
        })
    }

    pub(super) fn pause(&self, r: &str, op: Op) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, op)?;
            let d = eng.domain_of(&v.uuid)?;
            if op == Op::Pause {
                self.p.pause(d)
            } else {
                self.p.unpause(d)
            }
            .map_err(internal)?;
            eng.paused(v, op);
            Ok(Reply::Unit)
        })
    }

    pub(super) fn hard_shutdown(&self, r: &str) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, Op::HardShutdown)?;
            if let Ok(d) = eng.domain_of(&v.uuid) {
                self.teardown(eng, &v.uuid, d);
            }
            // From Suspended: the saved image is discarded.
            eng.hard_halted(v);
            Ok(Reply::Unit)
        })
    }

    pub(super) fn hard_reboot(&self, r: &str) -> ActionResult {
        self.locked(|eng, _| {
            let v = eng.begin(r, Op::HardReboot)?;
            if let Ok(d) = eng.domain_of(&v.uuid) {
                self.teardown(eng, &v.uuid, d);
            }
            match self.boot(eng, &v).and_then(|d| {
                self.p.unpause(d).map_err(internal)?;
                Ok(d)
            }) {
                Ok(d) => {
                    eng.restarted(v, d, "reboot");
                    Ok(Reply::Unit)
                }
                Err(e) => {
                    eng.halted(v, PowerState::Halted, "halted");
                    Err(e)
                }
            }
        })
    }

    /// Clean shutdown, reboot or suspend: ask the guest through
    /// `control/shutdown`, wait for the watcher to settle its exit.
    pub(super) fn clean(&self, r: &str, op: Op, fallback: bool) -> ActionResult {
        let c = self.locked(|eng, _| {
            let c = eng.clean_request(r, op)?;
            self.xs
                .write(TxId::NONE, &c.node, c.word.as_bytes())
                .map_err(internal)?;
            eng.clean_started(r, &c, op);
            Ok(c)
        })?;
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        let mut trash = Vec::new();
        let mut eng = self.lock();
        loop {
            if !eng.clean_pending(&c) {
                // Settled by the watcher (or the VM went away).
                return eng.clean_outcome(r, &c, op);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Wake at least every tick: the watcher may be slow to get the lock.
            let wait = (deadline - now).min(watcher::WATCH_TICK);
            eng = self
                .changed
                .wait_timeout(eng, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if eng.clean_pending(&c)
                && matches!(
                    self.p.info(c.dom).map(|i| i.state),
                    Ok(RunState::Shutdown(_)) | Err(_)
                )
            {
                // Settle now in case VIRQ_DOM_EXC raced our write.
                let token = eng.token();
                self.settle(&mut eng, &mut trash);
                let _ = self.flush(&mut eng, token, &mut trash);
            }
        }
        // Timed out.
        let acked = self
            .xs
            .read(TxId::NONE, &c.node)
            .map(|v| v.is_empty())
            .unwrap_or(true);
        let token = eng.token();
        let err = eng.clean_timed_out(r, &c, acked, self.cfg.shutdown_timeout);
        let _ = self.flush(&mut eng, token, &mut trash);
        drop(eng);
        drop(trash);
        if fallback {
            tracing::info!(vm = %c.vm, acked, "clean shutdown timed out; hard shutdown");
            return self.hard_shutdown(r);
        }
        Err(err)
    }
}
