//! Pool mode of the xenstore daemon: a [`PoolNode`] beside the store.
//!
//! [`attach`] puts a [`Daemon`] in pool mode ([`Daemon::set_pool`]):
//!
//! * `XS_WRITE`, `XS_MKDIR`, `XS_RM` and `XS_SET_PERMS` under `/pool`
//!   outside a transaction become one [`Command::As`] (the caller's domain:
//!   permissions are checked at apply time on every replica), committed
//!   through the leader (this member if it leads, else a [`PoolClient`]
//!   that follows the leader). The reply (`OK` or the replicated errno)
//!   goes out once the entry is committed by a majority **and** mirrored
//!   into this host's store, so the writer reads its own write locally.
//!   If the outcome is unknown (no leader reachable within the client's
//!   deadline) the reply is `EIO`: the write may or may not have
//!   committed. Requests of different connections commit concurrently.
//! * Every applied entry, from any host, is mirrored into the local
//!   store ([`crate::mirror`]) and its watches fire: a watch on `/pool`
//!   fires on every host. At start the whole replicated subtree replaces
//!   the local `/pool`.
//! * Reads of `/pool` outside a transaction (`XS_READ`, `XS_DIRECTORY`,
//!   `XS_DIRECTORY_PART`, `XS_GET_PERMS`) are **linearizable on every
//!   host**: each waits for a read barrier, then the daemon serves it from
//!   the local mirror. The barrier is Raft's ReadIndex: the leader (this
//!   member if it leads, else asked over [`PoolClient`]) confirms with a
//!   round of heartbeats to a majority that it still leads and gives its
//!   commit index; the read is released once this host's mirror has
//!   applied that index. Followers thus serve reads without a lease (see
//!   the crate's docs for why no lease) and the leader does not carry
//!   the reads' data. Without a confirmed leader within the deadline the
//!   read fails with `EIO` rather than answer from a possibly stale mirror.
//! * Transactions keep xenstore's semantics across the pool. Inside one,
//!   `/pool` is read and written in the store's overlay like any path;
//!   its first touch of `/pool` waits for a barrier (it sees every write
//!   acknowledged before). Its commit (`XS_TRANSACTION_END T`), if it
//!   wrote under `/pool`, is one [`Command::Txn`]: the replicated
//!   revisions of the `/pool` nodes it touched, as the local mirror had
//!   them when it first touched each (the daemon keeps them beside the
//!   mirror), and its net effect there; the state machine applies it on
//!   every replica only if none of those nodes changed since, else the
//!   reply is `EAGAIN`, so commits on different hosts conflict as on one
//!   xenstored. A transaction that only read `/pool` commits locally after
//!   a barrier. One that writes both `/pool` and local paths fails at
//!   commit with `ENOSYS` (the two parts could not commit atomically).
//! * Guests' xenbus rings are not routed: pool mode is for the socket
//!   (the toolstack's connections).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use windsor_xenstore::daemon::{Daemon, PoolEvent, PoolKind, PoolOp, PoolRequest, PoolSender};
use windsor_xenstore::wire::{Header, HEADER_LEN};

use crate::client::PoolClient;
use crate::mirror;
use crate::node::PoolNode;
use crate::proto::{ClientError, ClientReply, ClientRequest};
use crate::sm::{Caller, Command, Op, ROOT};
use crate::storage::Applied;

/// Parses a routed request into the replicated operation.
pub fn op_of(header: &Header, payload: &[u8]) -> Option<Op> {
    use windsor_xenstore::wire::XsOp;
    let nul = payload.iter().position(|&b| b == 0);
    let path = String::from_utf8(payload[..nul.unwrap_or(payload.len())].to_vec()).ok()?;
    let rest = nul.map_or(&[][..], |n| &payload[n + 1..]);
    Some(match header.op()? {
        XsOp::Write => Op::Write {
            path,
            value: rest.to_vec(),
        },
        XsOp::Mkdir => Op::Mkdir { path },
        XsOp::Rm => Op::Rm { path },
        XsOp::SetPerms => Op::SetPerms {
            path,
            perms: rest.to_vec(),
        },
        _ => return None,
    })
}

fn reply(h: &Header, body: &[u8]) -> Vec<u8> {
    let mut hd = *h;
    hd.len = body.len() as u32;
    let mut v = hd.to_bytes().to_vec();
    debug_assert_eq!(v.len(), HEADER_LEN);
    v.extend_from_slice(body);
    v
}

fn error(h: &Header, name: &str) -> Vec<u8> {
    use windsor_xenstore::wire::XsOp;
    let mut hd = Header::new(XsOp::Error, h.req_id, h.tx_id, 0);
    let mut body = name.as_bytes().to_vec();
    body.push(0);
    hd.len = body.len() as u32;
    let mut v = hd.to_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

/// How a daemon joins its pool (the `--pool-*` options of
/// `windsor-xenstored-pool` and of `windsor up`).
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// This host's id in the pool (non-zero).
    pub id: u64,
    /// Address for the pool's members and clients (TLS).
    pub listen: String,
    /// Every member, this one included.
    pub peers: std::collections::BTreeMap<u64, String>,
    /// Where `node.pem`, `node.key` and `ca.pem` are.
    pub tls_dir: std::path::PathBuf,
    /// Where the replicated log lives.
    pub data_dir: std::path::PathBuf,
    /// Initialize a new pool with `peers` as its voters (once).
    pub bootstrap: bool,
}

/// Starts this host's pool member and puts `daemon` in pool mode with it
/// ([`attach`]). The member runs on the returned runtime, which must
/// outlive the daemon's loop.
pub fn start_pool(
    daemon: &mut Daemon,
    cfg: &PoolConfig,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<PoolNode>)> {
    use anyhow::Context;
    if !cfg.peers.contains_key(&cfg.id) {
        anyhow::bail!("the pool's members must name this one ({})", cfg.id);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pool")
        .enable_all()
        .build()?;
    let node_cfg = crate::node::NodeConfig {
        id: cfg.id,
        listen: cfg.listen.clone(),
        data_dir: cfg.data_dir.clone(),
        tls_dir: cfg.tls_dir.clone(),
        bootstrap: cfg.bootstrap.then(|| cfg.peers.clone()),
    };
    let (node, listener) = rt
        .block_on(PoolNode::start(&node_cfg))
        .context("starting the pool member")?;
    rt.spawn(node.clone().serve(listener));
    let client = PoolClient::new(
        crate::tls::Tls::load(&cfg.tls_dir)?,
        cfg.peers.values().cloned().collect(),
    );
    attach(daemon, node.clone(), client, rt.handle());
    Ok((rt, node))
}

/// Waits until `node` knows a leader, at most `within`; false if not.
pub fn wait_leader(rt: &tokio::runtime::Runtime, node: &PoolNode, within: Duration) -> bool {
    rt.block_on(async {
        node.raft
            .wait(Some(within))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .is_ok()
    })
}

/// An answer waiting until the log is mirrored up to `index`.
struct Pending {
    index: u64,
    ev: PoolEvent,
}

/// Puts `daemon` in pool mode with `node` (already serving) and `client`
/// (following the leader, for what this member cannot do itself). Spawns
/// its tasks on `rt`.
pub fn attach(
    daemon: &mut Daemon,
    node: Arc<PoolNode>,
    client: PoolClient,
    rt: &tokio::runtime::Handle,
) {
    let (req_tx, req_rx) = mpsc::unbounded_channel::<PoolRequest>();
    let sender = daemon.set_pool(Box::new(move |r| {
        let _ = req_tx.send(r);
    }));
    let (pend_tx, pend_rx) = mpsc::unbounded_channel::<Pending>();
    // Subscribe before anything is submitted: no entry is missed.
    let applied = node.sm.subscribe();
    rt.spawn(mirror_task(node.clone(), applied, pend_rx, sender.clone()));
    rt.spawn(submit_task(node, client, req_rx, pend_tx, sender));
}

struct Shared {
    node: Arc<PoolNode>,
    /// Commits forwarded to the leader share one connection to it...
    writes: tokio::sync::Mutex<PoolClient>,
    /// ... and barriers another, so reads do not queue behind writes.
    reads: tokio::sync::Mutex<PoolClient>,
    pend: mpsc::UnboundedSender<Pending>,
    sender: PoolSender,
}

async fn submit_task(
    node: Arc<PoolNode>,
    client: PoolClient,
    mut rx: mpsc::UnboundedReceiver<PoolRequest>,
    pend: mpsc::UnboundedSender<Pending>,
    sender: PoolSender,
) {
    // Requests of different connections are served concurrently (a
    // connection has one at a time).
    let reads = client.clone_config();
    let shared = Arc::new(Shared {
        node,
        writes: tokio::sync::Mutex::new(client),
        reads: tokio::sync::Mutex::new(reads),
        pend,
        sender,
    });
    while let Some(r) = rx.recv().await {
        tokio::spawn(submit_one(shared.clone(), r));
    }
}

/// The replicated operation of a daemon-side one.
fn op_of_pool(op: PoolOp) -> Op {
    match op {
        PoolOp::Write { path, value } => Op::Write { path, value },
        PoolOp::Rm { path } => Op::Rm { path },
        PoolOp::SetPerms { path, perms } => Op::SetPerms { path, perms },
    }
}

async fn submit_one(sh: Arc<Shared>, r: PoolRequest) {
    let cmd = match r.kind {
        PoolKind::Barrier => return barrier(&sh, r).await,
        PoolKind::Op => match op_of(&r.header, &r.payload) {
            Some(op) => Command::Op(op),
            None => {
                let _ = sh.sender.send(PoolEvent::Reply {
                    ticket: r.ticket,
                    bytes: error(&r.header, "EINVAL"),
                });
                return;
            }
        },
        PoolKind::Txn(t) => Command::Txn {
            reads: t.reads,
            ops: t.ops.into_iter().map(op_of_pool).collect(),
        },
    };
    let cmd = Command::As {
        caller: Caller {
            dom: r.dom.0,
            privileged: r.privileged,
            target: None,
        },
        cmd: Box::new(cmd),
    };
    // This member first (no round trip if it leads), else the leader. A
    // leader cut off from its majority may never answer: bounded.
    let local = tokio::time::timeout(
        SUBMIT_DEADLINE,
        sh.node.client(ClientRequest::Submit(cmd.clone())),
    )
    .await
    .unwrap_or_else(|_| Err(ClientError::Unknown("no commit within the deadline".into())));
    let res = match local {
        Ok(ClientReply::Outcome(o, i)) => Ok((o, i)),
        Err(ClientError::NotLeader(_)) => sh.writes.lock().await.submit(cmd).await,
        Ok(other) => Err(ClientError::Unknown(format!("unexpected reply {other:?}"))),
        Err(e) => Err(e),
    };
    match res {
        Ok((o, index)) => {
            let bytes = match o.result {
                Ok(()) => reply(&r.header, b"OK\0"),
                Err(e) => error(&r.header, e.errno_name()),
            };
            let _ = sh.pend.send(Pending {
                index,
                ev: PoolEvent::Reply {
                    ticket: r.ticket,
                    bytes,
                },
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "pool write not known to be committed");
            let _ = sh.sender.send(PoolEvent::Reply {
                ticket: r.ticket,
                bytes: error(&r.header, "EIO"),
            });
        }
    }
}

/// A read barrier: ReadIndex at the leader (this member if it leads),
/// then the request is released once this host's mirror has the log up
/// to that index. Without a leader confirmed by a majority the read
/// fails with `EIO` rather than answer from a mirror that may be stale.
async fn barrier(sh: &Shared, r: PoolRequest) {
    let end = tokio::time::Instant::now() + SUBMIT_DEADLINE;
    let index = loop {
        let local = tokio::time::timeout_at(end, sh.node.read_index())
            .await
            .unwrap_or_else(|_| Err(ClientError::Unknown("no read index in time".into())));
        let index = match local {
            Err(ClientError::NotLeader(Some(_))) => sh.reads.lock().await.read_index().await,
            other => other,
        };
        // A round of heartbeats that timed out (a loaded host) or an
        // election under way: try again until the deadline.
        match index {
            Err(ClientError::Refused(_) | ClientError::NotLeader(None))
                if tokio::time::Instant::now() + RETRY_PAUSE < end =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => break other,
        }
    };
    match index {
        Ok(index) => {
            let _ = sh.pend.send(Pending {
                index,
                ev: PoolEvent::Release { ticket: r.ticket },
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "pool read barrier failed");
            let _ = sh.sender.send(PoolEvent::Reply {
                ticket: r.ticket,
                bytes: error(&r.header, "EIO"),
            });
        }
    }
}

/// Pause between attempts of a read barrier.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// How long this member may take to commit a write it leads.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(5);

fn forward(node: &PoolNode, ev: &Applied, sender: &PoolSender) {
    let step = node.sm.read(|d| mirror::step(ev, &d.tree));
    let _ = sender.send(PoolEvent::Apply {
        mutations: step.mutations,
        fire: step.fire,
        revs: step.revs,
    });
}

async fn mirror_task(
    node: Arc<PoolNode>,
    mut applied: broadcast::Receiver<Applied>,
    mut pend_rx: mpsc::UnboundedReceiver<Pending>,
    sender: PoolSender,
) {
    let resync = Applied {
        index: 0,
        changed: vec![ROOT.to_string()],
    };
    forward(&node, &resync, &sender);
    let mut metrics = node.raft.metrics();
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        tokio::select! {
            ev = applied.recv() => match ev {
                Ok(ev) => forward(&node, &ev, &sender),
                Err(broadcast::error::RecvError::Lagged(_)) => forward(&node, &resync, &sender),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            p = pend_rx.recv() => match p {
                Some(p) => pending.push(p),
                None => return,
            },
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)), if !pending.is_empty() => {}
        }
        if pending.is_empty() {
            continue;
        }
        // Every entry up to `last_applied` has had its event sent (the
        // state machine sends them before the engine counts them
        // applied): forward those still queued, then release the replies.
        let done = node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        loop {
            match applied.try_recv() {
                Ok(ev) => forward(&node, &ev, &sender),
                Err(broadcast::error::TryRecvError::Lagged(_)) => forward(&node, &resync, &sender),
                Err(_) => break,
            }
        }
        let (ready, wait): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| p.index <= done);
        pending = wait;
        for p in ready {
            let _ = sender.send(p.ev);
        }
    }
}
