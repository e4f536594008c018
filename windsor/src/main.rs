//! The `windsor` command line.
//!
//! * `windsor up` runs a whole Windsor host on this Linux machine (host
//!   mode): the simulated hypervisor, the xenstore domain, the toolstack and
//!   its XenAPI-compatible API. Ctrl-C stops it cleanly.
//! * `windsor vm …` and `windsor host status` drive a running host through
//!   the API's Rust client (`windsor_api::client`).
//! * `windsor xs …` reads and writes the host's xenstore over its socket.
//!
//! Tables for people by default; `--json` for scripts.

mod host;

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
    /// Read and write the host's xenstore.
    Xs {
        /// The xenstore socket [default: $XENSTORED_PATH, else
        /// DATA_DIR/xenstored.sock].
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
}

#[derive(Subcommand)]
enum HostOp {
    /// The host record.
    Status,
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
        Command::Xs { socket, op } => xs(socket, op),
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
        data_dir,
        xenstore_mib: args.xenstore_mib,
    };
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;

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
    let password = conn
        .password
        .clone()
        .or_else(|| std::env::var("WINDSOR_PASSWORD").ok())
        .or_else(|| std::env::var("WINDSOR_ROOT_PASSWORD").ok())
        .context("no password: use --password or set WINDSOR_PASSWORD")?;
    let mut c = Client::connect(Endpoint::parse(&endpoint)?, Protocol::XmlRpc)
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
    }
    let _ = c.logout();
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
                    let field = |k: &str| {
                        v.get(k)
                            .map(|f| {
                                f.as_str()
                                    .map(str::to_owned)
                                    .or_else(|| f.as_int().map(|i| i.to_string()))
                                    .unwrap_or_else(|| format!("{f:?}"))
                            })
                            .unwrap_or_default()
                    };
                    println!("host {r}");
                    for k in [
                        "name_label",
                        "uuid",
                        "enabled",
                        "API_version_major",
                        "API_version_minor",
                        "API_version_vendor",
                    ] {
                        println!("  {k:<20} {}", field(k));
                    }
                }
            }
        }
    }
    let _ = c.logout();
    Ok(())
}

fn xs(socket: Option<PathBuf>, op: XsOp) -> Result<()> {
    let socket = socket
        .or_else(|| std::env::var_os("XENSTORED_PATH").map(PathBuf::from))
        .unwrap_or_else(|| host::default_data_dir().join("xenstored.sock"));
    let store = StreamStore::connect(&socket)
        .with_context(|| format!("connecting to xenstore at {}", socket.display()))?;
    let none = TxId::NONE;
    match op {
        XsOp::Read { path } => {
            let v = store.read(none, &path)?;
            println!("{}", String::from_utf8_lossy(&v));
        }
        XsOp::Write { path, value } => store.write(none, &path, value.as_bytes())?,
        XsOp::Ls { path } => {
            for child in store.directory(none, &path)? {
                let full = if path.ends_with('/') {
                    format!("{path}{child}")
                } else {
                    format!("{path}/{child}")
                };
                match store.read(none, &full) {
                    Ok(v) => println!("{child} = \"{}\"", String::from_utf8_lossy(&v)),
                    Err(_) => println!("{child}"),
                }
            }
        }
        XsOp::Watch { path, count } => {
            store.watch(&path, "windsor")?;
            let mut seen = 0usize;
            loop {
                let ev = store.next_event(Some(Duration::from_secs(3600)));
                match ev {
                    Ok(e) => {
                        println!("{}", e.path);
                        seen += 1;
                        if count.is_some_and(|n| seen >= n) {
                            break;
                        }
                    }
                    Err(windsor_xenstore::client::ClientError::Timeout) => continue,
                    Err(e) => bail!("watch ended: {e}"),
                }
            }
        }
    }
    Ok(())
}
