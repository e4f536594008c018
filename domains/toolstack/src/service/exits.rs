//! Domain exits: listing the domains after `VIRQ_DOM_EXC` (or a poll)
//! and settling every VM whose domain shut down, crashed or suspended —
//! saving a suspended image, tearing the domain down, and restarting or
//! halting the VM as its `actions_after_*` say.

use std::vec::Vec;

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};
use xen::{DomId, Errno};

use super::executor::Trash;
use super::{internal, Inner, Introducer};
use crate::action::PowerState;
use crate::engine::Engine;
use crate::lifecycle::{self, AfterExit};
use crate::power::Scan;
use crate::watcher;

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    /// Lists the domains (without the lock: with a thousand VMs the list
    /// is the longest thing the watcher does) and settles every VM whose
    /// domain exited.
    pub(crate) fn settle_exits(&self) {
        if !self.lock().has_domains() {
            return;
        }
        let Some(scan) = watcher::list(&self.p).map(|l| watcher::scan(&l)) else {
            return;
        };
        let _ = self.locked(|eng, _| {
            self.apply_scan(eng, &scan);
            Ok(())
        });
    }

    /// Lists the domains and settles exits, with the lock held.
    pub(super) fn settle(&self, eng: &mut Engine, _trash: &mut Trash<P::Saved>) {
        if !eng.has_domains() {
            return;
        }
        if let Some(scan) = watcher::list(&self.p).map(|l| watcher::scan(&l)) {
            self.apply_scan(eng, &scan);
        }
    }

    pub(super) fn apply_scan(&self, eng: &mut Engine, scan: &Scan) {
        // A domain started after the scan is not in it either: ask again
        // before judging it gone.
        let gone: Vec<DomId> = eng
            .missing(scan)
            .into_iter()
            .filter(|d| {
                matches!(
                    self.p.info(*d),
                    Err(xen::platform::Error::Errno(Errno::ESRCH))
                )
            })
            .collect();
        for x in eng.exits(scan, &gone) {
            tracing::info!(vm = %x.vm, dom = x.dom.0, why = ?x.why, after = ?x.after, "domain exited");
            if x.after == AfterExit::Suspend {
                match self.p.save(x.dom) {
                    // A stale image (none is expected) is replaced.
                    Ok(img) => drop(self.images().insert(x.vm.clone(), img)),
                    Err(e) => {
                        tracing::warn!(vm = %x.vm, dom = x.dom.0, ?e, "save failed: suspended without an image");
                    }
                }
            }
            self.teardown(eng, &x.vm, x.dom);
            let Some(v) = eng.exited(&x) else { continue };
            let word = lifecycle::reason_word(x.why);
            let booted = self.boot(eng, &v).and_then(|nd| {
                self.p.unpause(nd).map_err(internal)?;
                Ok(nd)
            });
            match booted {
                Ok(nd) => eng.restarted(v, nd, word),
                Err(e) => {
                    tracing::warn!(vm = %x.vm, %e, "restart failed; halting");
                    eng.halted(v, PowerState::Halted, word);
                }
            }
        }
    }
}
