//! Raft's transport between hosts: one TLS connection per peer, opened on
//! first use and again after any failure.
//!
//! openraft also makes a short-lived client per peer for each ReadIndex
//! (the round of heartbeats that confirms the leader, see
//! [`crate::node::PoolNode::read_index`]), with the heartbeat interval as
//! its whole budget: a new TLS handshake each time would not fit on a
//! loaded host. Connections of dropped clients that are between requests
//! are therefore kept ([`IDLE_PER_PEER`] per peer) and reused.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::proto::{read_frame, write_frame, Request, Response};
use crate::tls::Tls;
use crate::TypeConfig;

/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The least time an RPC is given once sent. openraft's own TTL is the
/// heartbeat interval; a member that takes a few times that (a loaded
/// host, a slow disk) should answer late rather than have its connection
/// torn down and rebuilt with a new TLS handshake.
pub const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(500);

/// Opens a TLS connection to `addr` as a pool member.
pub async fn connect(tls: &Tls, addr: &str) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let c = TlsConnector::from(tls.client.clone());
    tokio::time::timeout(CONNECT_TIMEOUT, c.connect(Tls::server_name(), tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Idle connections kept per peer for reuse.
pub const IDLE_PER_PEER: usize = 4;

type Idle = Arc<Mutex<HashMap<String, Vec<TlsStream<TcpStream>>>>>;

/// Makes a [`PeerConn`] per peer.
#[derive(Clone)]
pub struct Network {
    tls: Tls,
    idle: Idle,
}

impl Network {
    /// Peers are reached with `tls`.
    pub fn new(tls: Tls) -> Self {
        Network {
            tls,
            idle: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerConn {
        PeerConn {
            tls: self.tls.clone(),
            target,
            addr: node.addr.clone(),
            stream: None,
            idle: self.idle.clone(),
            in_flight: false,
        }
    }
}

/// The connection to one peer.
pub struct PeerConn {
    tls: Tls,
    target: u64,
    addr: String,
    stream: Option<TlsStream<TcpStream>>,
    idle: Idle,
    /// A request was sent and its answer not read (the call was
    /// cancelled): the stream is not reusable, its next bytes may be that
    /// answer.
    in_flight: bool,
}

impl Drop for PeerConn {
    fn drop(&mut self) {
        let Some(s) = self.stream.take() else { return };
        if self.in_flight {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let v = idle.entry(self.addr.clone()).or_default();
            if v.len() < IDLE_PER_PEER {
                v.push(s);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("connecting to {0}: {1}")]
    Connect(String, io::Error),
    #[error("{0}")]
    Frame(#[from] crate::proto::FrameError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("peer answered another request kind")]
    Mismatch,
}

impl PeerConn {
    async fn call(&mut self, req: &Request, ttl: Duration) -> Result<Response, CallError> {
        if self.in_flight {
            // The previous call was cancelled (openraft bounds each RPC by
            // its own timeout and drops the future): its answer may still
            // come on this stream and would be taken for this request's.
            self.stream = None;
            self.in_flight = false;
        }
        if self.stream.is_none() {
            let reused = self
                .idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.get_mut(&self.addr).and_then(Vec::pop));
            self.stream = match reused {
                Some(s) => Some(s),
                // Bounded by CONNECT_TIMEOUT itself.
                None => Some(
                    connect(&self.tls, &self.addr)
                        .await
                        .map_err(|e| CallError::Connect(self.addr.clone(), e))?,
                ),
            };
        }
        let ttl = ttl.max(MIN_RPC_TIMEOUT);
        self.in_flight = true;
        let r = tokio::time::timeout(ttl, async {
            let Some(s) = self.stream.as_mut() else {
                return Err(CallError::Mismatch);
            };
            write_frame(s, req).await?;
            Ok(read_frame(s).await?)
        })
        .await
        .unwrap_or(Err(CallError::Timeout(ttl)));
        if r.is_err() {
            // The stream may hold half a frame: start again next time.
            self.stream = None;
        }
        self.in_flight = false;
        r
    }

    fn fail<E: std::error::Error>(e: CallError) -> RPCError<u64, BasicNode, E> {
        match e {
            CallError::Connect(..) => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(&Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::AppendEntries(Ok(r))) => Ok(r),
            Ok(Response::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(Self::fail(CallError::Mismatch)),
            Err(e) => Err(Self::fail(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(&Request::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Response::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(Self::fail(CallError::Mismatch)),
            Err(e) => Err(Self::fail(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(Self::fail(CallError::Mismatch)),
            Err(e) => Err(Self::fail(e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Retry an unreachable peer soon: a restarted host rejoins quickly.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
