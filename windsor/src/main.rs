//! The `windsor` command line.
//!
//! `windsor up` runs a whole Windsor host on this Linux machine (host mode):
//! the simulated hypervisor with the toolstack as dom0 and the service
//! domains as threads. Ctrl-C stops it cleanly.

mod host;

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
