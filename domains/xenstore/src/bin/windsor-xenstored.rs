//! `windsor-xenstored --socket PATH --data-dir DIR`: a drop-in xenstored for
//! a Linux host, with durable writes. See [`windsor_xenstore::daemon`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use windsor_xenstore::daemon::{Config, Daemon, Limits};

/// Serve xenstore on a Unix socket, persisting every acknowledged write.
#[derive(Parser, Debug)]
#[command(name = "windsor-xenstored", version)]
struct Args {
    /// Unix socket to listen on (clients use XENSTORED_PATH=PATH).
    #[arg(long, default_value = "/var/run/xenstored/socket")]
    socket: PathBuf,
    /// Directory holding the log and snapshots.
    #[arg(long, default_value = "/var/lib/windsor-xenstored")]
    data_dir: PathBuf,
    /// Take a snapshot (and start a new log segment) after this many logged mutations.
    #[arg(long, default_value_t = 200_000)]
    snapshot_every: u64,
    /// Threads flushing the log concurrently (group commit pipelining).
    #[arg(long, default_value_t = windsor_xenstore::persist::DEFAULT_WRITERS)]
    commit_threads: usize,
    /// Seconds a partial request may wait for its remaining bytes before
    /// its client is disconnected.
    #[arg(long, default_value_t = 10.0)]
    partial_timeout: f64,
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
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    let config = Config {
        socket: args.socket.clone(),
        data_dir: args.data_dir.clone(),
        snapshot_every: args.snapshot_every,
        commit_threads: args.commit_threads,
    };
    let mut daemon =
        Daemon::bind(config).with_context(|| format!("starting on {}", args.socket.display()))?;
    daemon.set_limits(Limits {
        partial_timeout: std::time::Duration::try_from_secs_f64(args.partial_timeout)
            .context("--partial-timeout")?,
        ..Limits::default()
    });
    tracing::info!(socket = %args.socket.display(), data_dir = %args.data_dir.display(), "windsor-xenstored ready");
    daemon.run(&stop).context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
