//! A pool member: the Raft engine over [`crate::storage`], serving peers
//! and clients on one TLS port.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::net::Network;
use crate::proto::{
    read_frame, write_frame, ClientError, ClientReply, ClientRequest, Request, Response, Status,
};
use crate::sm::check_path;
use crate::storage::{open_db, LogStore, StateMachineStore, SNAPSHOT_EVERY};
use crate::tls::Tls;
use crate::TypeConfig;

/// How a member is started.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its id in the pool (non-zero).
    pub id: u64,
    /// Address to listen on for peers and clients.
    pub listen: String,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Where `node.pem`, `node.key` and `ca.pem` are.
    pub tls_dir: PathBuf,
    /// On the first start of a new pool, on one member: the first voters.
    pub bootstrap: Option<BTreeMap<u64, String>>,
}

/// Raft timing: a heartbeat every 30 ms, an election after 100–200 ms
/// without one. openraft's voters refuse to vote for `election_timeout_max`
/// after the last heartbeat they saw (its leader lease, which also keeps a
/// member back from a pause from deposing a live leader), so failover takes
/// 200–400 ms plus a round of votes: within the 0.5 s goal, while a loaded
/// host may still miss a few heartbeats without an election.
pub fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "windsor-pool".into(),
        heartbeat_interval: 30,
        election_timeout_min: 100,
        election_timeout_max: 200,
        install_snapshot_timeout: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: 500,
        snapshot_max_chunk_size: 1 << 20,
        max_payload_entries: 256,
        ..Default::default()
    }
}

/// A running member.
pub struct PoolNode {
    /// Its id.
    pub id: u64,
    /// The engine.
    pub raft: Raft<TypeConfig>,
    /// The `/pool` tree as applied here, and the applied-entry stream.
    pub sm: StateMachineStore,
    tls: Tls,
}

fn not_leader(f: ForwardToLeader<u64, BasicNode>) -> ClientError {
    ClientError::NotLeader(f.leader_id.zip(f.leader_node.map(|n| n.addr)))
}

fn write_err(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ClientError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ClientError::Refused(c.to_string())
        }
        RaftError::Fatal(f) => ClientError::Unknown(f.to_string()),
    }
}

impl PoolNode {
    /// Opens the storage, starts the engine and binds the port. Needs
    /// tokio's multi-threaded runtime: log commits sync inside
    /// `block_in_place`.
    pub async fn start(cfg: &NodeConfig) -> anyhow::Result<(Arc<PoolNode>, TcpListener)> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let tls = Tls::load(&cfg.tls_dir)?;
        let db = open_db(&cfg.data_dir).context("opening the log database")?;
        let log = LogStore::new(db.clone());
        let sm = StateMachineStore::open(db)?;
        let config = Arc::new(raft_config().validate()?);
        let raft = Raft::new(cfg.id, config, Network::new(tls.clone()), log, sm.clone()).await?;
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        if let Some(members) = &cfg.bootstrap {
            if !raft.is_initialized().await? {
                let nodes: BTreeMap<u64, BasicNode> = members
                    .iter()
                    .map(|(id, a)| (*id, BasicNode::new(a)))
                    .collect();
                raft.initialize(nodes).await?;
            }
        }
        Ok((
            Arc::new(PoolNode {
                id: cfg.id,
                raft,
                sm,
                tls,
            }),
            listener,
        ))
    }

    /// Accepts peers and clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        let acceptor = TlsAcceptor::from(self.tls.server.clone());
        loop {
            let (tcp, peer) = listener.accept().await?;
            let node = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Err(e) = node.serve_conn(acceptor, tcp).await {
                    tracing::debug!(%peer, "connection closed: {e}");
                }
            });
        }
    }

    async fn serve_conn(&self, acceptor: TlsAcceptor, tcp: TcpStream) -> anyhow::Result<()> {
        tcp.set_nodelay(true)?;
        let mut s = tokio::time::timeout(Duration::from_secs(2), acceptor.accept(tcp))
            .await
            .context("TLS handshake timed out")??;
        loop {
            let req: Request = read_frame(&mut s).await?;
            let resp = match req {
                Request::AppendEntries(r) => {
                    Response::AppendEntries(self.raft.append_entries(r).await)
                }
                Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
                Request::InstallSnapshot(r) => {
                    Response::InstallSnapshot(self.raft.install_snapshot(r).await)
                }
                Request::Client(c) => Response::Client(self.client(c).await),
            };
            write_frame(&mut s, &resp).await?;
        }
    }

    async fn linearize(&self) -> Result<(), ClientError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(e) => Err(ClientError::Refused(e.to_string())),
        }
    }

    /// ReadIndex on this member if it leads: confirms with a round of
    /// heartbeats to a majority that it still does and gives the index a
    /// reader must have applied (not waiting for this member to apply it).
    pub async fn read_index(&self) -> Result<u64, ClientError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(e) => Err(ClientError::Refused(e.to_string())),
        }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let mc = m.membership_config.membership();
        Status {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: mc.voter_ids().collect(),
            nodes: mc.nodes().map(|(i, n)| (*i, n.addr.clone())).collect(),
        }
    }

    /// Serves one client request.
    pub async fn client(&self, req: ClientRequest) -> Result<ClientReply, ClientError> {
        match req {
            ClientRequest::Submit(cmd) => match self.raft.client_write(cmd).await {
                Ok(r) => Ok(ClientReply::Outcome(r.data, r.log_id.index)),
                Err(e) => Err(write_err(e)),
            },
            ClientRequest::Read(path) => {
                check_path(&path).map_err(|e| ClientError::Refused(e.to_string()))?;
                self.linearize().await?;
                Ok(ClientReply::Value(self.sm.read(|d| {
                    d.tree.get(&path).map(|n| (n.value.clone(), n.rev))
                })))
            }
            ClientRequest::Directory(path) => {
                self.linearize().await?;
                self.sm
                    .read(|d| d.tree.children(&path))
                    .map(ClientReply::Names)
                    .map_err(|e| ClientError::Refused(e.to_string()))
            }
            ClientRequest::Status => Ok(ClientReply::Status(self.status())),
            ClientRequest::ReadIndex => self.read_index().await.map(ClientReply::ReadIndex),
            ClientRequest::Init(members) => {
                let nodes: BTreeMap<u64, BasicNode> = members
                    .into_iter()
                    .map(|(id, a)| (id, BasicNode::new(a)))
                    .collect();
                self.raft
                    .initialize(nodes)
                    .await
                    .map(|_| ClientReply::Done)
                    .map_err(|e| ClientError::Refused(e.to_string()))
            }
            ClientRequest::AddLearner(id, addr) => self
                .raft
                .add_learner(id, BasicNode::new(addr), true)
                .await
                .map(|_| ClientReply::Done)
                .map_err(write_err),
            ClientRequest::ChangeMembership(ids) => {
                let ids: BTreeSet<u64> = ids;
                self.raft
                    .change_membership(ids, false)
                    .await
                    .map(|_| ClientReply::Done)
                    .map_err(write_err)
            }
            ClientRequest::Snapshot => {
                let fatal = |e: openraft::error::Fatal<u64>| ClientError::Unknown(e.to_string());
                let applied = self.status().applied;
                self.raft.trigger().snapshot().await.map_err(fatal)?;
                let mut rx = self.raft.metrics();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let snap = rx.borrow().snapshot.map_or(0, |l| l.index);
                    if snap >= applied {
                        self.raft.trigger().purge_log(snap).await.map_err(fatal)?;
                        return Ok(ClientReply::Done);
                    }
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        return Err(ClientError::Unknown("snapshot timed out".into()));
                    }
                }
            }
        }
    }
}

/// A member list as the command lines spell it, `ID=ADDR,ID=ADDR,...`
/// (empty parts ignored), refused with [`MembersError`] otherwise.
pub fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, MembersError> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| MembersError::NotIdAddr(part.to_string()))?;
        let id = id
            .parse()
            .map_err(|_| MembersError::BadId(id.to_string()))?;
        m.insert(id, addr.to_string());
    }
    Ok(m)
}

/// A member list that is not `ID=ADDR,...`.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// A part without `=`.
    #[error("expected ID=ADDR, got {0:?}")]
    NotIdAddr(String),
    /// An id that is not a number.
    #[error("member id {0:?} is not a number")]
    BadId(String),
}
