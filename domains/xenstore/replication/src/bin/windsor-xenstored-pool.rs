//! `windsor-xenstored-pool`: `windsor-xenstored` in pool mode, a member of
//! the pool's replicated `/pool` beside the store (see
//! [`windsor_xenstore_replication::xenstored`]).
//!
//! ```text
//! windsor-xenstored-pool --socket S --data-dir D --pool-id N \
//!     --pool-listen ADDR --pool-peers 1=ADDR,2=ADDR,3=ADDR \
//!     --pool-tls-dir T [--pool-bootstrap]
//! ```
//!
//! (A separate binary because the daemon's crate cannot depend on this
//! one; `windsor-xenstored` itself is unchanged.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use windsor_xenstore::daemon::{Config, Daemon};
use windsor_xenstore_replication::node::parse_members;
use windsor_xenstore_replication::xenstored::{start_pool, PoolConfig};

/// Serve xenstore on a Unix socket with `/pool` replicated across the pool.
#[derive(Parser, Debug)]
#[command(name = "windsor-xenstored-pool", version)]
struct Args {
    /// Unix socket to listen on.
    #[arg(long, default_value = "/var/run/xenstored/socket")]
    socket: PathBuf,
    /// Directory holding the local log and snapshots (and, under `pool/`,
    /// the replicated log unless `--pool-data-dir` says otherwise).
    #[arg(long, default_value = "/var/lib/windsor-xenstored")]
    data_dir: PathBuf,
    /// This host's id in the pool (non-zero).
    #[arg(long)]
    pool_id: u64,
    /// Address for the pool's members and clients (TLS).
    #[arg(long)]
    pool_listen: String,
    /// Every member, this one included: `ID=ADDR,...`.
    #[arg(long)]
    pool_peers: String,
    /// Where `node.pem`, `node.key` and `ca.pem` are.
    #[arg(long)]
    pool_tls_dir: PathBuf,
    /// Where the replicated log lives (default: DATA_DIR/pool).
    #[arg(long)]
    pool_data_dir: Option<PathBuf>,
    /// Initialize a new pool with `--pool-peers` as its voters (once).
    #[arg(long)]
    pool_bootstrap: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let peers = parse_members(&args.pool_peers)?;
    if !peers.contains_key(&args.pool_id) {
        bail!("--pool-peers must name this member ({})", args.pool_id);
    }
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    let mut daemon = Daemon::bind(Config {
        socket: args.socket.clone(),
        data_dir: args.data_dir.clone(),
        snapshot_every: 200_000,
        commit_threads: windsor_xenstore::persist::DEFAULT_WRITERS,
    })
    .with_context(|| format!("starting on {}", args.socket.display()))?;
    let (_rt, _node) = start_pool(
        &mut daemon,
        &PoolConfig {
            id: args.pool_id,
            listen: args.pool_listen.clone(),
            peers,
            tls_dir: args.pool_tls_dir.clone(),
            data_dir: args
                .pool_data_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("pool")),
            bootstrap: args.pool_bootstrap,
        },
    )?;
    tracing::info!(socket = %args.socket.display(), pool_id = args.pool_id, "windsor-xenstored-pool ready");
    daemon.run(&stop).context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
