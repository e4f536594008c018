//! `windsor-pool-node`: one member of a pool's replicated `/pool`.
//!
//! ```text
//! windsor-pool-node ca --dir CA                      # new pool: its CA
//! windsor-pool-node member --ca-dir CA --id N --out T # a member's key
//! windsor-pool-node run --id N --listen ADDR --data-dir D --tls-dir T \
//!     [--bootstrap 1=ADDR,2=ADDR,3=ADDR]
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use windsor_xenstore_replication::node::{parse_members, NodeConfig, PoolNode};
use windsor_xenstore_replication::tls;

#[derive(Parser)]
#[command(about = "A member of a pool's replicated /pool subtree")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the pool's CA (its secret) in DIR.
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Make member ID's key and certificate, signed by the CA.
    Member {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a member.
    Run {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        listen: String,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        tls_dir: PathBuf,
        /// First voters of a new pool, `ID=ADDR,...` (ignored once initialized).
        #[arg(long)]
        bootstrap: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Ca { dir } => Ok(tls::create_ca(&dir)?),
        Cmd::Member { ca_dir, id, out } => Ok(tls::issue_member(&ca_dir, id, &out)?),
        Cmd::Run {
            id,
            listen,
            data_dir,
            tls_dir,
            bootstrap,
        } => {
            let cfg = NodeConfig {
                id,
                listen,
                data_dir,
                tls_dir,
                bootstrap: bootstrap.as_deref().map(parse_members).transpose()?,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (node, listener) = PoolNode::start(&cfg).await?;
                eprintln!(
                    "windsor-pool-node {id} listening on {}",
                    listener.local_addr()?
                );
                node.serve(listener).await
            })
        }
    }
}
