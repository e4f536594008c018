//! The `VIRQ_DOM_EXC` watcher thread of the host-mode service, and the
//! domain list it reads.
//!
//! Whenever the virq fires, the thread lists the domains and has the
//! service settle every VM whose domain shut down (see
//! [`crate::power`]). It holds only a `Weak` to the service, so it ends
//! when the toolstack is dropped, or on its stop flag (checked at least
//! every [`WATCH_TICK`]).

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;
use std::vec::Vec;

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainInfo, DomainSave, EventChannel, RunState};
use xen::DomId;

use crate::power::Scan;
use crate::service::{Inner, Introducer};

/// The longest the watcher sleeps between checks of its stop flag.
pub const WATCH_TICK: Duration = Duration::from_millis(200);

pub(crate) fn watch_dom_exc<P, S, I>(weak: Weak<Inner<P, S, I>>)
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        let exc = inner.exc;
        match inner.p.wait(&[exc], Some(WATCH_TICK)) {
            Ok(true) => {
                let _ = inner.p.clear_pending(exc);
                inner.settle_exits();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(?e, "VIRQ_DOM_EXC wait failed; watcher stops");
                return;
            }
        }
    }
}

/// Every domain but dom0, in id order; `None` if the list failed.
pub(crate) fn list<P: DomainControl>(p: &P) -> Option<Vec<DomainInfo>> {
    let mut out = Vec::new();
    let mut buf = [DomainInfo {
        domid: DomId(0),
        state: RunState::Running,
        handle: [0; 16],
        tot_pages: 0,
        max_mem_kib: 0,
        max_vcpus: 0,
        cpu_time_ns: 0,
        privileged: false,
    }; 128];
    let mut next = DomId(1);
    loop {
        let n = match p.list(next, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(?e, "domain list failed");
                return None;
            }
        };
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Some(out);
        }
        next = DomId(buf[n - 1].domid.0 + 1);
    }
}

/// The ids and the shut-down domains of a list.
pub(crate) fn scan(list: &[DomainInfo]) -> Scan {
    let mut scan = Scan::default();
    for i in list {
        scan.ids.push(i.domid.0);
        if let RunState::Shutdown(why) = i.state {
            scan.down.push((i.domid.0, why));
        }
    }
    scan
}
