//! The host-mode executor of the toolstack [`Engine`]: [`Toolstack::handle`]
//! runs each action through the engine and carries out what it asks over
//! the platform traits, a xenstore client and an [`Introducer`].
//!
//! Generic over the platform (`P`: domain control, the builder, event
//! channels, save/restore), a xenstore client (`S`) and an [`Introducer`]
//! (`I`). One mutex guards the engine; platform and xenstore calls are
//! made with it held (they are short and never call back), except the
//! waits of clean shutdown/reboot/suspend and `event.from`, which sleep on
//! a condition variable with the lock released. The `VIRQ_DOM_EXC`
//! watcher thread is [`crate::watcher`].
//!
//! This module owns the [`Toolstack`] handle and the state its clones
//! share; the executor's other concerns, one module each:
//! * `config` — [`ToolstackConfig`], how the service runs;
//! * `introducer` — the [`Introducer`] trait (`XS_INTRODUCE`/`XS_RELEASE`);
//! * `startup` — [`Toolstack::new`] and [`StartError`]: loading the pool
//!   database, re-attaching VMs, forgetting dead domains;
//! * `executor` — the loop that feeds the engine and runs its effects;
//! * `domains` — making and unmaking a VM's domain;
//! * `power_ops` — power operations that need the platform or a wait
//!   (and how suspend and resume follow Xen);
//! * `exits` — settling the VMs whose domains exited;
//! * `event_from` — the `event.from` wait;
//! * `backends` — device back-end plumbing: [`DeviceBackends`], hot-plug,
//!   [`Toolstack::backend_restarted`];
//! * `xs_watch` — the `xenstore.*` calls and the watches served for them.

mod backends;
mod config;
mod domains;
mod event_from;
mod executor;
mod exits;
mod introducer;
mod power_ops;
mod startup;
mod xs_watch;

use std::boxed::Box;
use std::collections::HashMap;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};
use xen::{DomId, EvtchnPort};

use crate::action::{Action, ActionError, ActionResult, Ref};
use crate::engine::Engine;

pub use crate::bootstrap::{
    DEFAULT_BRIDGE, DEFAULT_DEVICE, DEFAULT_NETWORK, FUZZ_IMAGE, FUZZ_TEMPLATE, LOCAL_SR,
    LOCAL_SR_TYPE,
};
pub use backends::DeviceBackends;
pub use config::ToolstackConfig;
pub use introducer::Introducer;
pub use startup::StartError;

pub(crate) struct Inner<P: DomainSave, S, I> {
    pub(crate) p: P,
    xs: S,
    intro: I,
    cfg: ToolstackConfig,
    engine: Mutex<Engine>,
    changed: Condvar,
    pub(crate) exc: EvtchnPort,
    pub(crate) stop: AtomicBool,
    /// Watches of the `xenstore.*` API calls, on a connection of their own
    /// ([`Toolstack::attach_xs_watch`]).
    xs_watch: std::sync::OnceLock<crate::xs_calls::WatchHub>,
    /// The driver domains ([`Toolstack::attach_backends`]); without them
    /// devices are written to xenstore only.
    backends: std::sync::OnceLock<Box<dyn DeviceBackends>>,
    /// Saved images of Suspended VMs, by VM uuid (memory only). Locked
    /// after `engine`, never the other way round.
    saved: Mutex<HashMap<String, P::Saved>>,
}

/// The toolstack: `handle` an [`Action`], get a
/// [`Reply`](crate::action::Reply). Cheap to clone; all clones share one
/// toolstack. The `VIRQ_DOM_EXC` watcher thread ends with
/// [`stop`](Self::stop) or when the last clone is dropped.
pub struct Toolstack<P: DomainSave, S, I> {
    inner: Arc<Inner<P, S, I>>,
    watcher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<P: DomainSave, S, I> Clone for Toolstack<P, S, I> {
    fn clone(&self) -> Self {
        Toolstack {
            inner: self.inner.clone(),
            watcher: self.watcher.clone(),
        }
    }
}

fn internal(e: impl core::fmt::Display) -> ActionError {
    ActionError::internal(e)
}

impl<P, S, I> Toolstack<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel + Send + Sync + 'static,
    S: XenStore + Send + Sync + 'static,
    I: Introducer + Send + Sync + 'static,
{
    /// Does one XenAPI call.
    pub fn handle(&self, action: Action) -> ActionResult {
        let r = self.inner.handle(action);
        if let Err(e) = &r {
            tracing::debug!(error = ?e, "action failed: {e}");
        }
        r
    }

    /// Settles domains that shut down, now (the watcher does this when
    /// `VIRQ_DOM_EXC` fires; tests may call it to be deterministic).
    pub fn poll_domains(&self) {
        self.inner.settle_exits();
    }

    /// The ref of this host's record.
    pub fn host_ref(&self) -> Ref {
        self.inner.lock().host_ref().to_string()
    }

    /// The domain of a VM while it has one.
    pub fn domid(&self, vm: &str) -> Option<DomId> {
        self.inner.lock().domid(vm)
    }

    /// The xenstore client the toolstack uses.
    pub fn store(&self) -> &S {
        &self.inner.xs
    }

    /// The newest event id (the token `event.from` would return now).
    pub fn token(&self) -> u64 {
        self.inner.lock().token()
    }

    /// Stops the watcher thread (the toolstack still answers `handle`).
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(hub) = self.inner.xs_watch.get() {
            hub.shutdown();
        }
        let _ = self.inner.p.notify(self.inner.exc);
        let h = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = h {
            // The watcher wakes at least every WATCH_TICK.
            let _ = h.join();
            // Unbind VIRQ_DOM_EXC, so that a new toolstack can bind it.
            let _ = self.inner.p.close(self.inner.exc);
        }
    }
}

impl<P: DomainSave, S, I> Drop for Toolstack<P, S, I> {
    fn drop(&mut self) {
        // The watcher holds only a Weak: when the last clone goes it exits
        // at its next tick.
        if Arc::strong_count(&self.inner) == 1 {
            self.inner.stop.store(true, Ordering::Release);
        }
    }
}
