//! How the host-mode toolstack runs: [`ToolstackConfig`], the engine's
//! [`Settings`] plus the executor's own.

use std::string::String;
use std::time::Duration;

use xen::DomId;

use crate::engine::Settings;
use crate::task::TaskLimits;

/// How the toolstack service runs: the engine's [`Settings`] plus the
/// executor's own (shutdown timeout, uuid seed).
#[derive(Clone, Debug)]
pub struct ToolstackConfig {
    /// `name_label` of the host record created at first start.
    pub host_name: String,
    /// The domain serving guests' xenstore rings.
    pub xenstore_domid: DomId,
    /// The domain serving VIF and VBD backends.
    pub backend_domid: DomId,
    /// The domain serving VBD backends, if not `backend_domid`.
    pub vbd_backend_domid: Option<DomId>,
    /// Directory of VDI image files (see [`Settings::sr_dir`]).
    pub sr_dir: String,
    /// How long a clean shutdown/reboot/suspend waits for the guest
    /// (XAPI waits 1200 s by default).
    pub shutdown_timeout: Duration,
    /// How many changes `event.from` can look back.
    pub event_history: usize,
    /// Create the `Windsor fuzz-target` template at first start.
    pub fuzz_template: bool,
    /// Seed of uuid generation; 0 takes one from the host.
    pub seed: u64,
    /// How many `Async.*` tasks are kept (see [`crate::task`]).
    pub task_limits: TaskLimits,
    /// What the host offers one VM, checked at `VM.start`.
    pub host_limits: crate::limits::HostLimits,
}

impl Default for ToolstackConfig {
    fn default() -> Self {
        let s = Settings::default();
        ToolstackConfig {
            host_name: s.host_name,
            xenstore_domid: s.xenstore_domid,
            backend_domid: s.backend_domid,
            vbd_backend_domid: s.vbd_backend_domid,
            sr_dir: s.sr_dir,
            shutdown_timeout: Duration::from_secs(60),
            event_history: s.event_history,
            fuzz_template: s.fuzz_template,
            seed: 0,
            task_limits: s.task_limits,
            host_limits: s.host_limits,
        }
    }
}

impl ToolstackConfig {
    /// What the engine needs of it.
    pub fn settings(&self) -> Settings {
        Settings {
            host_name: self.host_name.clone(),
            xenstore_domid: self.xenstore_domid,
            backend_domid: self.backend_domid,
            vbd_backend_domid: self.vbd_backend_domid,
            sr_dir: self.sr_dir.clone(),
            event_history: self.event_history,
            fuzz_template: self.fuzz_template,
            task_limits: self.task_limits,
            host_limits: self.host_limits,
        }
    }
}
