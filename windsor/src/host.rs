//! Host mode: a whole Windsor host in one process.
//!
//! [`Host::start`] brings up the simulated hypervisor and, on it:
//!
//! 1. the **xenstore domain**: the xenstore daemon, serving host clients on
//!    a Unix socket (`XENSTORED_PATH`) and guests on their xenbus rings
//!    (`xenstore_domain_interface`), with every acknowledged write
//!    persisted in the data directory before its reply leaves;
//! 2. the **toolstack** (dom0, this process): the VM lifecycle over the
//!    same store, its records under `/pool` (the pool database);
//! 3. the **lifecycle API** (XenAPI XML-RPC at `/`, JSON-RPC at
//!    `/jsonrpc`) on TCP and a Unix socket.
//!
//! The toolstack reaches the store through a connection the daemon adopted
//! for dom0 (a socket pair). Each guest reaches it over the xenbus ring its
//! builder prepared (grant `GNTTAB_RESERVED_XENSTORE`, the port in its start
//! info): the toolstack's `XS_INTRODUCE`, sent over dom0's connection, makes
//! the daemon map the ring and bind the port, `XS_RELEASE` or the guest's
//! death undoes it. One store, so permissions and quotas apply per domain
//! whatever the transport.
//!
//! 4. the **console backend** (xenconsoled's job) runs in dom0, this
//!    process, as in Xen mode: a `windsor_console::service` finds every
//!    domain with a console ring (its console port as dom0 reads
//!    `HVM_PARAM_CONSOLE_EVTCHN`, its page by grant entry 0), captures
//!    each into a bounded, rate-limited history, and the API serves them
//!    as XenAPI `console` objects and over HTTP (`windsor vm console`).
//!
//! [`Host::stop`] destroys the guests, stops the API and shuts the xenstore
//! domain down cleanly.
//!
//! The composition itself (hypervisor, xenstore domain, guest images, the
//! toolstack on dom0, the teardown order) is the toolstack's
//! [`windsor_toolstack::host`], the one tests and benchmarks use; this
//! module gives it the persistent xenstore domain ([`DaemonXenstore`]) and
//! adds the driver domains and the API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use windsor_api::auth::Credentials;
use windsor_api::server::{Api, Config as ApiConfig, Listen, Server};
use windsor_console::service::{ConsoleService, Consoles, Guest, ServiceConfig};
use windsor_toolstack::host::{Host as ToolstackHost, XenstoreDomain};
use windsor_toolstack::service::{Introducer, ToolstackConfig};
use windsor_xenstore::client::ClientError;
use windsor_xenstore::daemon::{Adopter, Config as XsConfig, Daemon, Rings};
use windsor_xenstore::stream::StreamStore;
use windsor_xenstore::xenbus::ServerConfig;
use xen::platform::{
    Console, CreateConfig, DomainBuilder, DomainControl, DomainImage, DomainInfo, Platform,
    RunState, ShutdownReason,
};
use xen::{DomId, Errno, EvtchnPort, Gfn};
use xen_sim::{Hypervisor, SimDomain, SimMapping};

/// How to run the host.
#[derive(Clone, Debug)]
pub struct Options {
    /// Persistent state (the xenstore log and snapshots, API credentials).
    pub data_dir: PathBuf,
    /// The xenstore socket for host clients.
    pub xenstore_socket: PathBuf,
    /// Memory of the xenstore domain, in MiB.
    pub xenstore_mib: u64,
    /// TCP address of the lifecycle API.
    pub api: SocketAddr,
    /// Unix socket of the lifecycle API.
    pub api_socket: PathBuf,
    /// Pool mode: the xenstore domain replicates `/pool` with the pool's
    /// other hosts (see `crate::pool`).
    pub pool: Option<crate::pool::PoolConfig>,
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

/// `XS_INTRODUCE` / `XS_RELEASE` sent by dom0 over its store connection.
pub struct Intro(StreamStore);

impl Introducer for Intro {
    fn introduce(&self, dom: DomId, gfn: Gfn, port: EvtchnPort) -> Result<(), ClientError> {
        self.0.introduce(dom, gfn.0, port)
    }
    fn release(&self, dom: DomId) -> Result<(), ClientError> {
        match self.0.release(dom) {
            // The xenstore domain releases a guest by itself when it dies.
            Ok(()) | Err(ClientError::Store(Errno::ENOENT)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The xenstore domain of `windsor up`: the persistent xenstore daemon in
/// a domain of its own ([`register_xenstore_image`]), dom0 connected to it
/// through a socket pair the daemon adopted.
pub struct DaemonXenstore {
    domid: DomId,
    adopter: Adopter,
    dom0_store: StreamStore,
    stop: Arc<AtomicBool>,
}

impl DaemonXenstore {
    /// Registers the daemon's image, creates, builds and unpauses its
    /// domain, and returns once it serves.
    fn start(hv: &Hypervisor, opts: &Options) -> Result<DaemonXenstore> {
        let dom0 = hv.dom0();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        register_xenstore_image(
            hv,
            XsConfig {
                socket: opts.xenstore_socket.clone(),
                data_dir: opts.data_dir.join("xenstore"),
                snapshot_every: 200_000,
                commit_threads: 2,
            },
            opts.pool.clone(),
            stop.clone(),
            ready_tx,
        );
        let xs = dom0
            .create(&CreateConfig {
                handle: *b"windsor-xenstore",
                max_vcpus: 1,
                max_mem_kib: opts.xenstore_mib * 1024,
                // A port per guest ring.
                max_evtchn_port: RING_PORTS,
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
        let adopter = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => bail!("the xenstore domain failed to start: {e}"),
            Err(_) => bail!(
                "the xenstore domain did not report ready within {READY_TIMEOUT:?}; console: {}",
                hv.console_output(xs).unwrap_or_default()
            ),
        };
        let dom0_store = StreamStore::from_stream(adopter.connect(DomId::DOM0)?)?;
        Ok(DaemonXenstore {
            domid: xs,
            adopter,
            dom0_store,
            stop,
        })
    }
}

impl XenstoreDomain for DaemonXenstore {
    type Store = StreamStore;
    type Intro = Intro;

    fn domid(&self) -> Option<DomId> {
        Some(self.domid)
    }

    fn dom0_store(&self) -> StreamStore {
        self.dom0_store.clone()
    }

    fn introducer(&self) -> Intro {
        Intro(self.dom0_store.clone())
    }

    /// Tells the daemon to stop; it shuts its domain down cleanly
    /// ([`Host::stop`] waits for that).
    fn stop(&mut self, _: &Hypervisor) {
        self.stop.store(true, Ordering::Release);
    }
}

/// A running host.
pub struct Host {
    // Dropped first: the API, then the toolstack and the xenstore domain.
    api: Option<Server>,
    consoles: Option<ConsoleService<SimMapping>>,
    host: ToolstackHost<DaemonXenstore>,
    services: Vec<Service>,
    drivers: crate::drivers::ControlBackends,
    /// Where the API listens on TCP.
    pub api_addr: SocketAddr,
    /// The generated `root` password, on the first start only.
    pub generated_password: Option<String>,
    /// Time from start to every service ready.
    pub startup: Duration,
}

/// The registered image name of the xenstore domain in host mode.
const XENSTORE_IMAGE: &str = "xenstored";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Event channel ports of the xenstore domain (one per guest ring).
const RING_PORTS: u32 = 4095;
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Host {
    /// Starts the hypervisor, the xenstore domain, the driver domains, the
    /// toolstack and the API (composed by the toolstack's
    /// [`ToolstackHost::compose`]); returns once all are ready.
    pub fn start(opts: &Options) -> Result<Host> {
        let t0 = Instant::now();
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
        let hv = Hypervisor::new();

        // 1. The xenstore domain.
        let xenstore = DaemonXenstore::start(&hv, opts)?;
        let xs = xenstore.domid;

        // The driver domains (see `crate::drivers`).
        let drivers =
            crate::drivers::start(&hv, &xenstore.adopter).context("starting the driver domains")?;
        // `xenstore.watch` of the API: a dom0 connection of its own.
        let watch_conn = StreamStore::from_stream(xenstore.adopter.connect(DomId::DOM0)?)?;

        // 2. The toolstack, and the guest images it can start.
        let mut host = ToolstackHost::compose(
            hv,
            xenstore,
            ToolstackConfig {
                backend_domid: drivers.netback().domid(),
                vbd_backend_domid: Some(drivers.blkback().domid()),
                sr_dir: opts.data_dir.join("sr").to_string_lossy().into_owned(),
                ..ToolstackConfig::default()
            },
        )
        .context("starting the toolstack")?;
        host.add_service_domain(drivers.netback().domid());
        host.add_service_domain(drivers.blkback().domid());
        host.toolstack.attach_backends(Box::new(drivers.clone()));
        // A driver domain restarted: its devices move to the new one.
        let ts = host.toolstack.clone();
        drivers.on_restart(move |kind, d| ts.backend_restarted(kind, d));
        host.toolstack
            .attach_xs_watch(
                watch_conn,
                windsor_toolstack::xs_calls::WatchLimits::default(),
            )
            .context("starting the API's xenstore watches")?;

        // 4. The console backend (before the API, which serves it).
        let service_doms = vec![
            (xs, "xenstore"),
            (drivers.netback().domid(), "netback"),
            (drivers.blkback().domid(), "blkback"),
        ];
        let ts = host.toolstack.clone();
        let vm_name = move |uuid: &str| {
            use windsor_toolstack::action::{Action, Class, Record, Reply};
            match ts.handle(Action::GetRecord {
                class: Class::Vm,
                r: windsor_toolstack::action::ref_of(uuid),
            }) {
                Ok(Reply::Record(Record::Vm(v))) => Some(v.name_label),
                _ => None,
            }
        };
        let consoles = ConsoleService::start(
            host.hv.dom0(),
            ServiceConfig::default(),
            discover_consoles(host.hv.clone(), vm_name, service_doms.clone()),
        )
        .context("starting the console backend")?;
        let api_consoles = Arc::new(ApiConsoles {
            consoles: consoles.consoles(),
            services: service_doms.iter().map(|(d, _)| *d).collect(),
        });

        // 3. The API.
        let loaded = Credentials::load_or_init_from_env(&opts.data_dir)
            .context("loading the API credentials")?;
        let api = Arc::new(
            Api::new(
                Arc::new(host.toolstack.clone()),
                loaded.credentials,
                ApiConfig::default(),
            )
            .with_consoles(api_consoles),
        );
        let server = Server::start(
            api,
            &Listen {
                tcp: Some(opts.api),
                unix: Some(opts.api_socket.clone()),
            },
        )
        .with_context(|| format!("serving the API on {}", opts.api))?;
        let api_addr = server.tcp_addr().unwrap_or(opts.api);

        let services = vec![
            Service {
                domid: xs,
                name: "xenstore",
                serves: format!(
                    "unix:{} (host clients), xenbus rings (guests)",
                    opts.xenstore_socket.display()
                ),
            },
            Service {
                domid: DomId::DOM0,
                name: "toolstack",
                serves: format!(
                    "http://{api_addr} unix:{} (XenAPI)",
                    opts.api_socket.display()
                ),
            },
            Service {
                domid: drivers.netback().domid(),
                name: "netback",
                serves: "VIF backends, windsor-control vchan".into(),
            },
            Service {
                domid: drivers.blkback().domid(),
                name: "blkback",
                serves: "VBD backends (image files in the SR directory), windsor-control vchan"
                    .into(),
            },
            Service {
                domid: DomId::DOM0,
                name: "console",
                serves: "guests' consoles (XenAPI console objects, GET /console)".into(),
            },
        ];
        Ok(Host {
            api: Some(server),
            consoles: Some(consoles),
            host,
            services,
            drivers,
            api_addr,
            generated_password: loaded.generated_password,
            startup: t0.elapsed(),
        })
    }

    /// The service domains, in start order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// What the hypervisor reports about every domain.
    pub fn domains(&self) -> Vec<DomainInfo> {
        let dom0 = self.host.hv.dom0();
        self.host
            .hv
            .domains()
            .into_iter()
            .filter_map(|d| dom0.info(d).ok())
            .collect()
    }

    /// Name of a domain: dom0 is the toolstack, service domains by role.
    pub fn name_of(&self, d: DomId) -> &str {
        self.services
            .iter()
            .find(|s| s.domid == d)
            .map_or("guest", |s| s.name)
    }

    /// Stops the API and the toolstack, destroys the guests, stops the
    /// driver domains, then asks the xenstore domain to stop, waits for
    /// every service domain's clean shutdown and destroys it. Returns how
    /// each service domain ended.
    pub fn stop(mut self) -> Result<Vec<(Service, RunState)>> {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        if let Some(c) = self.consoles.take() {
            c.stop();
        }
        // Restarted driver domains have new ids: they are service domains
        // too, not guests to destroy.
        for s in self.services.iter_mut() {
            match s.name {
                "netback" => s.domid = self.drivers.netback().domid(),
                "blkback" => s.domid = self.drivers.blkback().domid(),
                _ => {}
            }
            self.host.add_service_domain(s.domid);
        }
        self.host.stop_guests();
        self.drivers.stop();
        self.host.stop_xenstore();
        let dom0 = self.host.hv.dom0();
        let mut ended = Vec::new();
        for s in self.services.iter().filter(|s| s.domid != DomId::DOM0) {
            let deadline = Instant::now() + STOP_TIMEOUT;
            let state = loop {
                let st = dom0.info(s.domid).map(|i| i.state);
                match st {
                    Ok(RunState::Shutdown(r)) => break RunState::Shutdown(r),
                    _ if Instant::now() >= deadline => {
                        tracing::warn!(dom = s.domid.0, "no clean shutdown; destroying");
                        break st.unwrap_or(RunState::Dying);
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            self.host.hv.join(s.domid, STOP_TIMEOUT);
            dom0.destroy(s.domid)
                .map_err(|e| anyhow!("destroying {}: {e}", s.name))?;
            ended.push((s.clone(), state));
        }
        Ok(ended)
    }
}

/// The xenstore domain's image: the xenstore daemon, serving the host's
/// clients on a Unix socket and the guests on their rings until told to
/// stop, then powering off. It hands the host an [`Adopter`] for in-process
/// connections once it serves.
/// How long a host in pool mode waits for its pool to elect a leader
/// before it gives up starting.
const POOL_LEADER_TIMEOUT: Duration = Duration::from_secs(25);

fn register_xenstore_image(
    hv: &Hypervisor,
    cfg: XsConfig,
    pool: Option<crate::pool::PoolConfig>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<Adopter, String>>,
) {
    let ready = Mutex::new(Some(ready));
    hv.register_image(XENSTORE_IMAGE, move |dom: SimDomain| {
        let tell = |r: Result<Adopter, String>| {
            if let Some(tx) = ready.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(r);
            }
        };
        dom.write(
            b"xenstore domain: host mode, persistence on (log + snapshots in the data dir)\n",
        );
        let rings = Rings::new(
            Arc::new(dom.clone()),
            ServerConfig {
                max_domains: RING_PORTS as usize - 8,
                ..ServerConfig::default()
            },
        )
        .map_err(|e| e.to_string());
        let daemon = rings.and_then(|rings| {
            let mut d = Daemon::bind(cfg.clone()).map_err(|e| e.to_string())?;
            d.serve_rings(rings).map_err(|e| e.to_string())?;
            // Pool mode: the member's runtime lives as long as the loop.
            let member = match &pool {
                Some(p) => {
                    let (rt, node) = windsor_xenstore_replication::xenstored::start_pool(&mut d, p)
                        .map_err(|e| format!("{e:#}"))?;
                    dom.write(format!("xenstore domain: pool member {}\n", p.id).as_bytes());
                    if !windsor_xenstore_replication::xenstored::wait_leader(
                        &rt,
                        &node,
                        POOL_LEADER_TIMEOUT,
                    ) {
                        return Err(format!(
                            "the pool elected no leader within {POOL_LEADER_TIMEOUT:?} \
                             (is a majority of its members up?)"
                        ));
                    }
                    Some((rt, node))
                }
                None => None,
            };
            Ok((d, member))
        });
        let (mut daemon, _member) = match daemon {
            Ok(d) => d,
            Err(e) => {
                tell(Err(e));
                dom.shutdown_self(ShutdownReason::Crash);
                return;
            }
        };
        tell(Ok(daemon.adopter()));
        match daemon.run(&stop) {
            Ok(()) => dom.shutdown_self(ShutdownReason::Poweroff),
            Err(e) => {
                dom.write(format!("xenstore domain: {e}\n").as_bytes());
                dom.shutdown_self(ShutdownReason::Crash);
            }
        }
    });
}

/// How the console backend finds consoles: every domain with a console
/// ring, named by its service role or its VM's `name_label` (looked up
/// once per domain).
fn discover_consoles(
    hv: Hypervisor,
    vm_name: impl Fn(&str) -> Option<String> + Send + 'static,
    services: Vec<(DomId, &'static str)>,
) -> impl FnMut() -> Vec<Guest> + Send + 'static {
    let dom0 = hv.dom0();
    let mut names: std::collections::HashMap<(u16, [u8; 16]), String> = Default::default();
    move || {
        let mut found = Vec::new();
        for d in hv.domains() {
            let (Some(port), Ok(info)) = (hv.console_port(d), dom0.info(d)) else {
                continue;
            };
            let name = names.entry((d.0, info.handle)).or_insert_with(|| {
                if let Some((_, n)) = services.iter().find(|(s, _)| *s == d) {
                    return (*n).to_owned();
                }
                vm_name(&uuid_string(&info.handle)).unwrap_or_else(|| format!("d{}", d.0))
            });
            found.push(Guest {
                dom: d,
                port,
                name: name.clone(),
                handle: info.handle,
            });
        }
        names.retain(|(d, _), _| found.iter().any(|g| g.dom.0 == *d));
        found
    }
}

/// A domain handle as a uuid string (the toolstack creates a VM's domain
/// with its uuid as the handle).
fn uuid_string(h: &[u8; 16]) -> String {
    let x: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// The API's view of the console backend: the VMs' consoles (service
/// domains' consoles are captured too, but are not XenAPI objects).
struct ApiConsoles {
    consoles: Consoles<SimMapping>,
    services: Vec<DomId>,
}

impl windsor_api::console::Consoles for ApiConsoles {
    fn list(&self) -> Vec<windsor_api::console::ConsoleEntry> {
        self.consoles
            .list()
            .into_iter()
            .filter(|c| !self.services.contains(&c.dom))
            .map(|c| windsor_api::console::ConsoleEntry {
                vm_uuid: uuid_string(&c.handle),
                uuid: c.uuid,
                domid: c.dom.0,
                total_bytes: c.total_bytes,
                lines: c.lines,
            })
            .collect()
    }

    fn read(&self, uuid: &str, from: u64) -> Option<windsor_api::console::ConsoleText> {
        let service = self
            .consoles
            .list()
            .into_iter()
            .any(|c| c.uuid == uuid && self.services.contains(&c.dom));
        if service {
            return None;
        }
        let t = self.consoles.read(uuid, from)?;
        Some(windsor_api::console::ConsoleText {
            start: t.start,
            end: t.end,
            text: t.text,
            closed: t.closed,
        })
    }
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
