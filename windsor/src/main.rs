//! The `windsor` command line.
//!
//! * `windsor up` runs a whole Windsor host on this Linux machine (host
//!   mode): the simulated hypervisor, the xenstore domain, the toolstack and
//!   its XenAPI-compatible API. Ctrl-C stops it cleanly.
//! * `windsor vm …` and `windsor host status` drive a running host through
//!   the API's Rust client (`windsor_api::client`).
//! * `windsor up --pool-*` runs the host as a member of a pool whose
//!   hosts replicate `/pool`; `windsor pool …` makes its keys and shows,
//!   adds and removes its members (see `pool.rs`).
//! * `windsor xs …` reads, writes, lists and watches the host's xenstore
//!   through the API's `xenstore.*` calls (a Windsor extension), or over
//!   the xenstore socket with `--socket`.
//!
//! Tables for people by default; `--json` for scripts.

mod drivers;
mod host;
mod pool;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_xenstore::client::{TxId, XenStore};
use windsor_xenstore::stream::StreamStore;
use xen::platform::RunState;

#[derive(Parser)]
#[command(name = "windsor", version, about = "A Xen host with no Linux dom0")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated Windsor host until Ctrl-C.
    Up(UpArgs),
    /// Manage VMs through the API.
    Vm {
        #[command(flatten)]
        conn: ApiArgs,
        #[command(subcommand)]
        op: VmOp,
    },
    /// The host, through the API.
    Host {
        #[command(flatten)]
        conn: ApiArgs,
        #[command(subcommand)]
        op: HostOp,
    },
    /// The pool of hosts sharing `/pool`: keys, members, liveness (see
    /// `windsor up --pool-*`).
    Pool {
        #[command(flatten)]
        conn: pool::PoolConn,
        #[command(subcommand)]
        op: pool::PoolOp,
    },
    /// Read and write the host's xenstore (through the API, or the
    /// xenstore socket with --socket).
    Xs {
        #[command(flatten)]
        conn: ApiArgs,
        /// Talk to this xenstore socket directly instead of the API (for
        /// scripts on a host without the API).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        op: XsOp,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where the host keeps its state [default: $XDG_DATA_HOME/windsor or
    /// ~/.local/share/windsor].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The xenstore socket for host clients [default: DATA_DIR/xenstored.sock].
    #[arg(long)]
    xenstore_socket: Option<PathBuf>,
    /// Memory of the xenstore domain, in MiB.
    #[arg(long, default_value_t = 256)]
    xenstore_mib: u64,
    /// TCP address of the lifecycle API (XenAPI).
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: SocketAddr,
    /// Unix socket of the lifecycle API [default: DATA_DIR/api.sock].
    #[arg(long)]
    api_socket: Option<PathBuf>,
    #[command(flatten)]
    pool: pool::UpPoolArgs,
}

#[derive(clap::Args)]
struct ApiArgs {
    /// The API: host:port, http://host:port or unix:/path [default:
    /// $WINDSOR_API, else unix:DATA_DIR/api.sock].
    #[arg(long, global = true)]
    api: Option<String>,
    /// User name.
    #[arg(long, global = true, default_value = "root")]
    user: String,
    /// Password [default: $WINDSOR_PASSWORD, else $WINDSOR_ROOT_PASSWORD].
    #[arg(long, global = true)]
    password: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum VmOp {
    /// List the VMs (templates with --all).
    List {
        /// Include templates.
        #[arg(long)]
        all: bool,
    },
    /// Create a VM (the built-in fuzz-target guest unless --kernel).
    Create {
        /// Its name.
        name: String,
        /// Guest image (`PV_kernel`).
        #[arg(long, default_value = "fuzz-target")]
        kernel: String,
        /// Memory in MiB.
        #[arg(long, default_value_t = 16)]
        memory_mib: i64,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: i64,
    },
    /// Start a VM.
    Start {
        /// Name, uuid or reference.
        vm: String,
        /// Leave it paused.
        #[arg(long)]
        paused: bool,
    },
    /// Shut a VM down (asks the guest; --force pulls the plug).
    Shutdown {
        /// Name, uuid or reference.
        vm: String,
        /// Hard shutdown.
        #[arg(long)]
        force: bool,
    },
    /// Reboot a VM (asks the guest; --force resets it).
    Reboot {
        /// Name, uuid or reference.
        vm: String,
        /// Hard reboot.
        #[arg(long)]
        force: bool,
    },
    /// Pause a running VM.
    Pause {
        /// Name, uuid or reference.
        vm: String,
    },
    /// Unpause a paused VM.
    Unpause {
        /// Name, uuid or reference.
        vm: String,
    },
    /// Suspend a running VM.
    Suspend {
        /// Name, uuid or reference.
        vm: String,
    },
    /// Resume a suspended VM.
    Resume {
        /// Name, uuid or reference.
        vm: String,
    },
    /// Destroy a halted VM's record.
    Destroy {
        /// Name, uuid or reference.
        vm: String,
    },
    /// Show a running VM's console output (its last lines; --follow for
    /// more as it comes, until the VM's console goes away).
    Console {
        /// Name, uuid or reference.
        vm: String,
        /// How many of the last lines to show.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new output until the VM stops.
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum HostOp {
    /// The host record.
    Status,
    /// Stop every VM and power the host off (`host.shutdown`; Xen mode).
    Shutdown,
    /// Stop every VM and reboot the host (`host.reboot`; Xen mode).
    Reboot,
}

#[derive(Subcommand)]
enum XsOp {
    /// Print a node's value.
    Read {
        /// The path.
        path: String,
    },
    /// Write a node's value.
    Write {
        /// The path.
        path: String,
        /// The value.
        value: String,
    },
    /// Remove a node and everything under it.
    Rm {
        /// The path.
        path: String,
    },
    /// List a node's children.
    Ls {
        /// The path.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print watch events on a path until Ctrl-C (or --count events).
    Watch {
        /// The path.
        path: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args),
        Command::Vm { conn, op } => vm(&conn, op),
        Command::Host { conn, op } => host_cmd(&conn, op),
        Command::Xs { conn, socket, op } => xs(&conn, socket, op),
        Command::Pool { conn, op } => pool::run(&conn, op),
    }
}

fn state_name(s: RunState) -> String {
    match s {
        RunState::Running => "running".into(),
        RunState::Paused => "paused".into(),
        RunState::Dying => "dying".into(),
        RunState::Shutdown(r) => format!("shutdown ({r:?})").to_lowercase(),
    }
}

fn up(args: UpArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(host::default_data_dir);
    let opts = host::Options {
        xenstore_socket: args
            .xenstore_socket
            .unwrap_or_else(|| data_dir.join("xenstored.sock")),
        api_socket: args.api_socket.unwrap_or_else(|| data_dir.join("api.sock")),
        api: args.api,
        pool: args.pool.config(&data_dir)?,
        data_dir,
        xenstore_mib: args.xenstore_mib,
    };
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;

    // The data directory holds the credential hash and the pool database:
    // private to this user, checked at every start.
    for fixed in windsor_api::auth::secure_data_dir(&opts.data_dir)
        .with_context(|| format!("securing data directory {}", opts.data_dir.display()))?
    {
        tracing::warn!("{fixed}");
        eprintln!("windsor: {fixed}");
    }
    let host = host::Host::start(&opts)?;
    println!(
        "windsor: simulated Xen host up in {:.1} ms (data dir {})",
        host.startup.as_secs_f64() * 1e3,
        opts.data_dir.display()
    );
    println!(
        "  {:<5} {:<10} {:<18} {:>8} {:>5}  SERVES",
        "DOMID", "NAME", "STATE", "MEM-KIB", "VCPUS"
    );
    for d in host.domains() {
        let serves = host
            .services()
            .iter()
            .find(|s| s.domid == d.domid)
            .map_or(String::new(), |s| s.serves.clone());
        println!(
            "  {:<5} {:<10} {:<18} {:>8} {:>5}  {}",
            d.domid.0,
            host.name_of(d.domid),
            state_name(d.state),
            d.tot_pages * 4,
            d.max_vcpus,
            serves
        );
    }
    println!("windsor: API http://{} user root", host.api_addr);
    if let Some(p) = &host.generated_password {
        println!("windsor: generated root password (shown once): {p}");
    }
    println!(
        "windsor: try  XENSTORED_PATH={} xenstore-ls /",
        opts.xenstore_socket.display()
    );
    println!("windsor: press Ctrl-C to stop");
    let _ = rx.recv();
    println!("windsor: stopping");
    for (s, state) in host.stop()? {
        println!(
            "windsor: {} (domain {}) ended: {}; destroyed",
            s.name,
            s.domid.0,
            state_name(state)
        );
    }
    println!("windsor: host stopped");
    Ok(())
}

/// Logs in to the API named by the options.
fn login(conn: &ApiArgs) -> Result<Client> {
    let endpoint = conn
        .api
        .clone()
        .or_else(|| std::env::var("WINDSOR_API").ok())
        .unwrap_or_else(|| {
            format!(
                "unix:{}",
                host::default_data_dir().join("api.sock").display()
            )
        });
    let endpoint_parsed = Endpoint::parse(&endpoint)?;
    // On the local socket, the server's own user needs no password (the
    // server checks the peer's credentials), as `xe` in a XAPI dom0.
    let local = matches!(endpoint_parsed, Endpoint::Unix(_));
    let password = conn
        .password
        .clone()
        .or_else(|| std::env::var("WINDSOR_PASSWORD").ok())
        .or_else(|| std::env::var("WINDSOR_ROOT_PASSWORD").ok())
        .or_else(|| local.then(String::new))
        .context("no password: use --password or set WINDSOR_PASSWORD")?;
    let mut c = Client::connect(endpoint_parsed, Protocol::XmlRpc)
        .with_context(|| format!("connecting to the API at {endpoint}"))?;
    c.login(&conn.user, &password)?;
    Ok(c)
}

fn vm(conn: &ApiArgs, op: VmOp) -> Result<()> {
    let mut c = login(conn)?;
    let done = |what: &str, vm: &str| {
        if conn.json {
            println!("{}", serde_json::json!({ "ok": what, "vm": vm }));
        } else {
            println!("{what} {vm}");
        }
    };
    match op {
        VmOp::List { all } => {
            let vms: Vec<_> = c
                .vm_list()?
                .into_iter()
                .filter(|v| all || !v.is_a_template)
                .collect();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&vms)?);
            } else {
                println!(
                    "{:<20} {:<36} {:<10} {:>5} {:>8} {:>5}",
                    "NAME", "UUID", "STATE", "DOMID", "MEM-MIB", "VCPUS"
                );
                for v in vms {
                    println!(
                        "{:<20} {:<36} {:<10} {:>5} {:>8} {:>5}",
                        v.name_label,
                        v.uuid,
                        v.power_state,
                        if v.domid >= 0 {
                            v.domid.to_string()
                        } else {
                            "-".into()
                        },
                        v.memory >> 20,
                        v.vcpus
                    );
                }
            }
        }
        VmOp::Create {
            name,
            kernel,
            memory_mib,
            vcpus,
        } => {
            let r = c.vm_create(&VmSpec {
                name: name.clone(),
                kernel,
                memory: memory_mib << 20,
                vcpus,
            })?;
            done("created", &r);
        }
        VmOp::Start { vm, paused } => {
            let r = c.vm_find(&vm)?;
            c.vm_start(&r, paused)?;
            done("started", &vm);
        }
        VmOp::Shutdown { vm, force } => {
            let r = c.vm_find(&vm)?;
            if force {
                c.vm_hard_shutdown(&r)?;
            } else {
                c.vm_clean_shutdown(&r)?;
            }
            done("shut down", &vm);
        }
        VmOp::Reboot { vm, force } => {
            let r = c.vm_find(&vm)?;
            if force {
                c.vm_hard_reboot(&r)?;
            } else {
                c.vm_clean_reboot(&r)?;
            }
            done("rebooted", &vm);
        }
        VmOp::Pause { vm } => {
            let r = c.vm_find(&vm)?;
            c.vm_pause(&r)?;
            done("paused", &vm);
        }
        VmOp::Unpause { vm } => {
            let r = c.vm_find(&vm)?;
            c.vm_unpause(&r)?;
            done("unpaused", &vm);
        }
        VmOp::Suspend { vm } => {
            let r = c.vm_find(&vm)?;
            c.vm_suspend(&r)?;
            done("suspended", &vm);
        }
        VmOp::Resume { vm } => {
            let r = c.vm_find(&vm)?;
            c.vm_resume(&r, false)?;
            done("resumed", &vm);
        }
        VmOp::Destroy { vm } => {
            let r = c.vm_find(&vm)?;
            c.vm_destroy(&r)?;
            done("destroyed", &vm);
        }
        VmOp::Console { vm, lines, follow } => vm_console(&mut c, &vm, lines, follow, conn.json)?,
    }
    let _ = c.logout();
    Ok(())
}

/// `windsor vm console`: the last `lines` lines of the VM's console
/// (`VM.get_consoles`, then the console's `location` over HTTP), then with
/// `follow` what comes next, polled, until the VM's domain is gone (a
/// reboot ends it too: the new domain has a new console).
fn vm_console(c: &mut Client, vm: &str, lines: usize, follow: bool, json: bool) -> Result<()> {
    use std::io::Write;
    let r = c.vm_find(vm)?;
    let path = c
        .vm_console_path(&r)
        .with_context(|| format!("reading the console of {vm}"))?;
    let first = c.console_read(&path, 0)?;
    let text = first.text.as_str();
    // The last `lines` lines (a final partial line counts as one).
    let body = text.strip_suffix('\n').unwrap_or(text);
    let cut = if lines == 0 {
        body.len()
    } else {
        body.rmatch_indices('\n')
            .nth(lines - 1)
            .map_or(0, |(i, _)| i + 1)
    };
    let tail = &text[cut..];
    if json && !follow {
        println!(
            "{}",
            serde_json::json!({ "vm": vm, "start": first.start, "end": first.end, "text": tail })
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(tail.as_bytes())?;
    out.flush()?;
    let mut offset = first.end;
    let mut closed = first.closed;
    while follow && !closed {
        std::thread::sleep(Duration::from_millis(200));
        let t = c.console_read(&path, offset)?;
        if t.start > offset {
            writeln!(out, "[... {} bytes not kept ...]", t.start - offset)?;
        }
        out.write_all(t.text.as_bytes())?;
        out.flush()?;
        offset = t.end;
        closed = t.closed;
    }
    if follow {
        eprintln!("windsor: {vm}'s console closed (its domain is gone)");
    }
    Ok(())
}

fn host_cmd(conn: &ApiArgs, op: HostOp) -> Result<()> {
    let mut c = login(conn)?;
    match op {
        HostOp::Status => {
            let hosts = c.hosts()?;
            if conn.json {
                let all: serde_json::Map<String, serde_json::Value> = hosts
                    .iter()
                    .map(|(r, v)| (r.clone(), windsor_api::jsonrpc::to_json(v)))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for (r, v) in &hosts {
                    // Plain values for people; `--json` has the typed ones.
                    let field = |k: &str| v.get(k).map(ToString::to_string).unwrap_or_default();
                    println!("host {r}");
                    for k in [
                        "name_label",
                        "uuid",
                        "enabled",
                        "API_version_major",
                        "API_version_minor",
                        "API_version_vendor",
                        "software_version",
                    ] {
                        println!("  {k:<20} {}", field(k));
                    }
                }
            }
        }
        HostOp::Shutdown | HostOp::Reboot => {
            let (method, what) = match op {
                HostOp::Reboot => ("host.reboot", "rebooting"),
                _ => ("host.shutdown", "shutting down"),
            };
            for (r, _) in c.hosts()? {
                c.session_call(method, &[windsor_api::Value::str(r.clone())])?;
                println!("host {r} {what}");
            }
            // The host is going down: its sessions go with it.
            return Ok(());
        }
    }
    let _ = c.logout();
    Ok(())
}

/// Where `windsor xs` sends its calls.
enum XsConn {
    /// The API's `xenstore.*` calls.
    Api(Client),
    /// The xenstore socket.
    Socket(StreamStore),
}

/// How long one `xenstore.watch` call waits before it is renewed.
const XS_WATCH_POLL_S: f64 = 30.0;

impl XsConn {
    fn read(&mut self, path: &str) -> Result<String> {
        match self {
            XsConn::Api(c) => Ok(c.xs_read(path)?),
            XsConn::Socket(s) => String::from_utf8(s.read(TxId::NONE, path)?)
                .map_err(|_| anyhow::anyhow!("the value of {path} is not valid UTF-8")),
        }
    }

    fn write(&mut self, path: &str, value: &str) -> Result<()> {
        match self {
            XsConn::Api(c) => c.xs_write(path, value)?,
            XsConn::Socket(s) => s.write(TxId::NONE, path, value.as_bytes())?,
        }
        Ok(())
    }

    fn rm(&mut self, path: &str) -> Result<()> {
        match self {
            XsConn::Api(c) => c.xs_rm(path)?,
            XsConn::Socket(s) => s.rm(TxId::NONE, path)?,
        }
        Ok(())
    }

    fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        Ok(match self {
            XsConn::Api(c) => c.xs_directory(path)?,
            XsConn::Socket(s) => s.directory(TxId::NONE, path)?,
        })
    }

    /// Calls `each` with every path that changes under `path` until it
    /// returns false.
    fn watch(&mut self, path: &str, mut each: impl FnMut(&str) -> bool) -> Result<()> {
        match self {
            XsConn::Api(c) => {
                let mut cursor = String::new();
                loop {
                    let (events, next) = c.xs_watch(path, XS_WATCH_POLL_S, &cursor)?;
                    cursor = next;
                    for e in &events {
                        if !each(e) {
                            let _ = c.xs_unwatch(&cursor);
                            return Ok(());
                        }
                    }
                }
            }
            XsConn::Socket(s) => {
                s.watch(path, "windsor")?;
                loop {
                    match s.next_event(Some(Duration::from_secs(3600))) {
                        Ok(e) => {
                            if !each(&e.path) {
                                return Ok(());
                            }
                        }
                        Err(windsor_xenstore::client::ClientError::Timeout) => continue,
                        Err(e) => bail!("watch ended: {e}"),
                    }
                }
            }
        }
    }
}

fn xs(conn: &ApiArgs, socket: Option<PathBuf>, op: XsOp) -> Result<()> {
    let mut x = match socket {
        Some(socket) => XsConn::Socket(
            StreamStore::connect(&socket)
                .with_context(|| format!("connecting to xenstore at {}", socket.display()))?,
        ),
        None => XsConn::Api(login(conn)?),
    };
    let json = conn.json;
    match op {
        XsOp::Read { path } => {
            let v = x.read(&path)?;
            if json {
                println!("{}", serde_json::json!({ "path": path, "value": v }));
            } else {
                println!("{v}");
            }
        }
        XsOp::Write { path, value } => {
            x.write(&path, &value)?;
            if json {
                println!("{}", serde_json::json!({ "ok": "written", "path": path }));
            }
        }
        XsOp::Rm { path } => {
            x.rm(&path)?;
            if json {
                println!("{}", serde_json::json!({ "ok": "removed", "path": path }));
            }
        }
        XsOp::Ls { path } => {
            let mut all = serde_json::Map::new();
            for child in x.directory(&path)? {
                let full = if path.ends_with('/') {
                    format!("{path}{child}")
                } else {
                    format!("{path}/{child}")
                };
                // A child may be gone already, or hold bytes that are not
                // UTF-8: listed without a value.
                let v = x.read(&full).ok();
                if json {
                    all.insert(child, v.map_or(serde_json::Value::Null, Into::into));
                } else {
                    match v {
                        Some(v) => println!("{child} = {v:?}"),
                        None => println!("{child}"),
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
        }
        XsOp::Watch { path, count } => {
            let mut seen = 0usize;
            x.watch(&path, |p| {
                if json {
                    println!("{}", serde_json::json!({ "path": p }));
                } else {
                    println!("{p}");
                }
                seen += 1;
                count.is_none_or(|n| seen < n)
            })?;
        }
    }
    if let XsConn::Api(mut c) = x {
        let _ = c.logout();
    }
    Ok(())
}
