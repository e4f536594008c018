//! Pool mode of `windsor up` and the `windsor pool` commands.
//!
//! `windsor up --pool-id N --pool-listen ADDR --pool-peers 1=ADDR,...
//! --pool-tls-dir DIR [--pool-bootstrap]` runs the host's xenstore domain
//! in pool mode (`windsor_xenstore_replication::xenstored`): its `/pool`
//! (the pool database) is replicated with Raft across the pool's hosts,
//! a write acknowledged once a majority has it in its synced log, reads
//! linearizable on every host, transactions checked by the replicated
//! state machine (`EAGAIN` on conflicts between hosts), watches firing on
//! every host. `/local/domain/*` stays per host. The host waits for the
//! pool to have a leader (a majority of its members up) before it starts
//! its toolstack.
//!
//! `windsor pool` talks to the members directly over mutually
//! authenticated TLS, with a certificate of the pool's CA:
//!
//! * `ca DIR` makes the pool's CA (its secret), `cert --ca DIR --id N
//!   --out DIR` a member's key and certificate, made when it joins;
//! * `status` lists every member with its liveness (whether it answers),
//!   role, term and applied index;
//! * `join ID ADDR` adds a member: a learner that catches up (by snapshot
//!   if the log it needs was purged), then a voter through the engine's
//!   joint consensus; `eject ID` removes one the same way.
//!
//! What XAPI's pool calls become here (their API form is not served yet):
//! `pool.join` is `cert` on the joining host plus `join` on the pool;
//! `pool.eject` is `eject`; there is no master to designate or to
//! emergency-reset: any live majority elects a leader by itself within
//! the election timeout (`pool.emergency_transition_to_master` and
//! `pool.emergency_reset_master` have nothing to do), and a minority
//! refuses writes and linearizable reads (`EIO`) rather than fork the
//! pool database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::node::parse_members;
use windsor_xenstore_replication::proto::{ClientReply, ClientRequest, Status};
use windsor_xenstore_replication::tls::{self, Tls};
pub use windsor_xenstore_replication::xenstored::PoolConfig;

/// The `--pool-*` options of `windsor up`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UpPoolArgs {
    /// Pool mode: this host's id in the pool (non-zero).
    #[arg(long, requires_all = ["pool_listen", "pool_peers", "pool_tls_dir"])]
    pub pool_id: Option<u64>,
    /// Address for the pool's members (TLS).
    #[arg(long)]
    pub pool_listen: Option<String>,
    /// Every member, this one included: `ID=ADDR,...`.
    #[arg(long)]
    pub pool_peers: Option<String>,
    /// Where this member's `node.pem`, `node.key` and the pool's `ca.pem` are.
    #[arg(long)]
    pub pool_tls_dir: Option<PathBuf>,
    /// Initialize a new pool with `--pool-peers` as its voters (once, on
    /// one host).
    #[arg(long)]
    pub pool_bootstrap: bool,
}

impl UpPoolArgs {
    /// The pool configuration, if pool mode was asked for; the replicated
    /// log goes under `data_dir`.
    pub fn config(&self, data_dir: &std::path::Path) -> Result<Option<PoolConfig>> {
        let Some(id) = self.pool_id else {
            return Ok(None);
        };
        let need = |o: &Option<String>, n: &str| o.clone().ok_or_else(|| anyhow!("{n} is needed"));
        let peers = parse_members(&need(&self.pool_peers, "--pool-peers")?)?;
        if !peers.contains_key(&id) {
            bail!("--pool-peers must name this host ({id})");
        }
        Ok(Some(PoolConfig {
            id,
            listen: need(&self.pool_listen, "--pool-listen")?,
            peers,
            tls_dir: self
                .pool_tls_dir
                .clone()
                .ok_or_else(|| anyhow!("--pool-tls-dir is needed"))?,
            data_dir: data_dir.join("pool"),
            bootstrap: self.pool_bootstrap,
        }))
    }
}

/// `windsor pool ...`.
#[derive(clap::Subcommand)]
pub enum PoolOp {
    /// Make the pool's CA (its secret) in DIR.
    Ca {
        /// Directory for `ca.pem` and `ca.key`.
        dir: PathBuf,
    },
    /// Make a member's (or a client's) key and certificate, signed by the CA.
    Cert {
        /// The CA's directory.
        #[arg(long)]
        ca: PathBuf,
        /// The member's id.
        #[arg(long)]
        id: u64,
        /// Where to put `node.pem`, `node.key` and `ca.pem`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Every member: liveness, role, term, applied index.
    Status,
    /// Add member ID at ADDR: a learner that catches up, then a voter.
    Join {
        /// Its id.
        id: u64,
        /// Its pool address.
        addr: String,
    },
    /// Remove member ID from the voters and the pool.
    Eject {
        /// Its id.
        id: u64,
    },
}

/// How `windsor pool` reaches the pool.
#[derive(clap::Args)]
pub struct PoolConn {
    /// Any members' pool addresses, comma-separated.
    #[arg(long, global = true)]
    pub members: Option<String>,
    /// A certificate of the pool's CA (`windsor pool cert`).
    #[arg(long, global = true)]
    pub tls_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// One member as `status` shows it.
#[derive(Debug, serde::Serialize)]
struct Member {
    id: u64,
    addr: String,
    voter: bool,
    live: bool,
    leader: bool,
    term: Option<u64>,
    applied: Option<u64>,
}

fn members_of(s: &Status) -> BTreeMap<u64, String> {
    s.nodes.clone()
}

/// Runs `windsor pool ...`.
pub fn run(conn: &PoolConn, op: PoolOp) -> Result<()> {
    match op {
        PoolOp::Ca { dir } => {
            tls::create_ca(&dir)
                .with_context(|| format!("creating the CA in {}", dir.display()))?;
            println!("pool CA in {}", dir.display());
            return Ok(());
        }
        PoolOp::Cert { ca, id, out } => {
            tls::issue_member(&ca, id, &out)
                .with_context(|| format!("issuing member {id}'s certificate"))?;
            println!("member {id}'s key and certificate in {}", out.display());
            return Ok(());
        }
        _ => {}
    }
    let addrs: Vec<String> = conn
        .members
        .as_deref()
        .ok_or_else(|| anyhow!("--members is needed"))?
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let tls_dir = conn
        .tls_dir
        .as_ref()
        .ok_or_else(|| anyhow!("--tls-dir is needed"))?;
    let tls = Tls::load(tls_dir).with_context(|| format!("loading {}", tls_dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cl = PoolClient::new(tls, addrs);
        cl.deadline = Duration::from_secs(10);
        let status = match cl.request(ClientRequest::Status).await? {
            ClientReply::Status(s) => s,
            r => bail!("unexpected reply {r:?}"),
        };
        match op {
            PoolOp::Status => {
                let voters: BTreeSet<u64> = status.voters.iter().copied().collect();
                let mut rows = Vec::new();
                for (id, addr) in members_of(&status) {
                    let s = match cl.call_at(&addr, ClientRequest::Status).await {
                        Ok(Ok(ClientReply::Status(s))) => Some(s),
                        _ => None,
                    };
                    rows.push(Member {
                        id,
                        voter: voters.contains(&id),
                        live: s.is_some(),
                        leader: s.as_ref().is_some_and(|s| s.leader == Some(id)),
                        term: s.as_ref().map(|s| s.term),
                        applied: s.as_ref().map(|s| s.applied),
                        addr,
                    });
                }
                if conn.json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    println!(
                        "{:<4} {:<22} {:<8} {:<5} {:<7} {:>6} {:>9}",
                        "ID", "ADDRESS", "ROLE", "LIVE", "LEADER", "TERM", "APPLIED"
                    );
                    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                    for m in rows {
                        println!(
                            "{:<4} {:<22} {:<8} {:<5} {:<7} {:>6} {:>9}",
                            m.id,
                            m.addr,
                            if m.voter { "voter" } else { "learner" },
                            if m.live { "yes" } else { "no" },
                            if m.leader { "*" } else { "" },
                            opt(m.term),
                            opt(m.applied)
                        );
                    }
                }
            }
            PoolOp::Join { id, addr } => {
                cl.request(ClientRequest::AddLearner(id, addr.clone()))
                    .await
                    .context("adding the learner")?;
                let mut voters: BTreeSet<u64> = status.voters.iter().copied().collect();
                voters.insert(id);
                cl.request(ClientRequest::ChangeMembership(voters))
                    .await
                    .context("making it a voter")?;
                println!("member {id} ({addr}) joined the pool");
            }
            PoolOp::Eject { id } => {
                let mut voters: BTreeSet<u64> = status.voters.iter().copied().collect();
                if !voters.remove(&id) {
                    bail!("{id} is not a voter of the pool");
                }
                cl.request(ClientRequest::ChangeMembership(voters))
                    .await
                    .context("removing it from the voters")?;
                println!("member {id} ejected from the pool");
            }
            PoolOp::Ca { .. } | PoolOp::Cert { .. } => {}
        }
        Ok(())
    })
}
