//! Host mode: a whole Windsor host in one process.
//!
//! [`Host::start`] brings up the simulated hypervisor (dom0 is the toolstack,
//! i.e. this process's main thread) and builds the service domains on it:
//! today the xenstore domain, which serves the store to the host on a Unix
//! socket (`XENSTORED_PATH`) with every acknowledged write persisted in the
//! data directory. [`Host::stop`] shuts the domains down cleanly and
//! destroys them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use windsor_xenstore::daemon::{Config as XsConfig, Daemon};
use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, DomainInfo, RunState, ShutdownReason,
};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

/// How to run the host.
#[derive(Clone, Debug)]
pub struct Options {
    /// Persistent state (the xenstore log and snapshots).
    pub data_dir: PathBuf,
    /// The xenstore socket for host clients.
    pub xenstore_socket: PathBuf,
    /// Memory of the xenstore domain, in MiB.
    pub xenstore_mib: u64,
}

/// A service domain the host started.
#[derive(Clone, Debug)]
pub struct Service {
    /// Its domain id.
    pub domid: DomId,
    /// Its name.
    pub name: &'static str,
    /// What it offers to the host (e.g. the socket it serves).
    pub serves: String,
}

/// A running host.
pub struct Host {
    hv: Hypervisor,
    dom0: SimDomain,
    services: Vec<Service>,
    stop_xenstore: Arc<AtomicBool>,
    /// Time from start to every service ready.
    pub startup: Duration,
}

/// The registered image name of the xenstore domain in host mode.
const XENSTORE_IMAGE: &str = "xenstored";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Host {
    /// Starts the hypervisor and the service domains; returns once every
    /// service reported ready.
    pub fn start(opts: &Options) -> Result<Host> {
        let t0 = Instant::now();
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
        let hv = Hypervisor::new();
        let dom0 = hv.dom0();
        let stop_xenstore = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        register_xenstore_image(
            &hv,
            XsConfig {
                socket: opts.xenstore_socket.clone(),
                data_dir: opts.data_dir.join("xenstore"),
                snapshot_every: 200_000,
            },
            stop_xenstore.clone(),
            ready_tx,
        );

        let xs = dom0
            .create(&CreateConfig {
                handle: *b"windsor-xenstore",
                max_vcpus: 1,
                max_mem_kib: opts.xenstore_mib * 1024,
                ..CreateConfig::default()
            })
            .map_err(|e| anyhow!("creating the xenstore domain: {e}"))?;
        dom0.build(
            xs,
            &DomainImage {
                kernel: XENSTORE_IMAGE.as_bytes(),
                cmdline: "",
                xenstore_domid: xs,
                console_domid: DomId::DOM0,
            },
        )
        .map_err(|e| anyhow!("building the xenstore domain: {e}"))?;
        dom0.unpause(xs)
            .map_err(|e| anyhow!("starting the xenstore domain: {e}"))?;
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("the xenstore domain failed to start: {e}"),
            Err(_) => bail!(
                "the xenstore domain did not report ready within {READY_TIMEOUT:?}; console: {}",
                hv.console_output(xs).unwrap_or_default()
            ),
        }
        let services = vec![Service {
            domid: xs,
            name: "xenstore",
            serves: format!("unix:{}", opts.xenstore_socket.display()),
        }];
        Ok(Host {
            hv,
            dom0,
            services,
            stop_xenstore,
            startup: t0.elapsed(),
        })
    }

    /// The service domains, in start order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// What the hypervisor reports about every domain.
    pub fn domains(&self) -> Vec<DomainInfo> {
        self.hv
            .domains()
            .into_iter()
            .filter_map(|d| self.dom0.info(d).ok())
            .collect()
    }

    /// Name of a domain: dom0 is the toolstack, service domains by role.
    pub fn name_of(&self, d: DomId) -> &str {
        if d == DomId::DOM0 {
            return "toolstack";
        }
        self.services
            .iter()
            .find(|s| s.domid == d)
            .map_or("guest", |s| s.name)
    }

    /// Asks every service domain to stop, waits for its clean shutdown, and
    /// destroys it. Returns how each domain ended.
    pub fn stop(self) -> Result<Vec<(Service, RunState)>> {
        self.stop_xenstore.store(true, Ordering::Release);
        let mut ended = Vec::new();
        for s in &self.services {
            let deadline = Instant::now() + STOP_TIMEOUT;
            let state = loop {
                let st = self.dom0.info(s.domid).map(|i| i.state);
                match st {
                    Ok(RunState::Shutdown(r)) => break RunState::Shutdown(r),
                    _ if Instant::now() >= deadline => {
                        tracing::warn!(dom = s.domid.0, "no clean shutdown; destroying");
                        break st.unwrap_or(RunState::Dying);
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            self.hv.join(s.domid, STOP_TIMEOUT);
            self.dom0
                .destroy(s.domid)
                .map_err(|e| anyhow!("destroying {}: {e}", s.name))?;
            ended.push((s.clone(), state));
        }
        Ok(ended)
    }
}

/// The xenstore domain's image: the xenstore daemon, serving the host's
/// clients on a Unix socket until told to stop, then powering off.
fn register_xenstore_image(
    hv: &Hypervisor,
    cfg: XsConfig,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let ready = Mutex::new(Some(ready));
    hv.register_image(XENSTORE_IMAGE, move |dom: SimDomain| {
        use xen::platform::{Console, Platform};
        let tell = |r: Result<(), String>| {
            if let Some(tx) = ready.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(r);
            }
        };
        dom.write(
            b"xenstore domain: host mode, persistence on (log + snapshots in the data dir)\n",
        );
        let mut daemon = match Daemon::bind(cfg.clone()) {
            Ok(d) => d,
            Err(e) => {
                tell(Err(e.to_string()));
                dom.shutdown_self(ShutdownReason::Crash);
                return;
            }
        };
        tell(Ok(()));
        match daemon.run(&stop) {
            Ok(()) => dom.shutdown_self(ShutdownReason::Poweroff),
            Err(e) => {
                dom.write(format!("xenstore domain: {e}\n").as_bytes());
                dom.shutdown_self(ShutdownReason::Crash);
            }
        }
    });
}

/// The default data directory: `$XDG_DATA_HOME/windsor`, else
/// `$HOME/.local/share/windsor`, else `./windsor-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Path::new(&x).join("windsor");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Path::new(&h).join(".local/share/windsor");
    }
    PathBuf::from("windsor-data")
}
