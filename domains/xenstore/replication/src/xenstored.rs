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
//! * Reads of `/pool` are served from the local mirror: they see every
//!   write this host acknowledged, but they are **not linearizable**
//!   across hosts (a follower's mirror may lag the leader by the entries
//!   in flight); a linearizable read is `ClientRequest::Read` (ReadIndex)
//!   on the pool, not yet wired into the xenstore protocol.
//! * Transactions that write under `/pool` are refused with `ENOSYS` by
//!   the daemon (not silently applied locally); `Command::Txn` exists in
//!   the state machine but the daemon does not build it yet.
//! * Guests' xenbus rings are not routed: pool mode is for the socket
//!   (the toolstack's connections).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use windsor_xenstore::daemon::{Daemon, PoolEvent, PoolRequest, PoolSender};
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

/// A reply waiting until its entry is mirrored.
struct Pending {
    index: u64,
    ticket: u64,
    bytes: Vec<u8>,
}

/// Puts `daemon` in pool mode with `node` (already serving) and `peers`
/// (every member's address, for following the leader). Spawns its tasks
/// on `rt`.
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

async fn submit_task(
    node: Arc<PoolNode>,
    client: PoolClient,
    mut rx: mpsc::UnboundedReceiver<PoolRequest>,
    pend: mpsc::UnboundedSender<Pending>,
    sender: PoolSender,
) {
    // Requests of different connections commit concurrently (a connection
    // has one at a time); those forwarded to another leader share one
    // connection to it.
    let client = Arc::new(tokio::sync::Mutex::new(client));
    while let Some(r) = rx.recv().await {
        tokio::spawn(submit_one(
            node.clone(),
            client.clone(),
            r,
            pend.clone(),
            sender.clone(),
        ));
    }
}

async fn submit_one(
    node: Arc<PoolNode>,
    client: Arc<tokio::sync::Mutex<PoolClient>>,
    r: PoolRequest,
    pend: mpsc::UnboundedSender<Pending>,
    sender: PoolSender,
) {
    let Some(op) = op_of(&r.header, &r.payload) else {
        let _ = sender.send(PoolEvent::Reply {
            ticket: r.ticket,
            bytes: error(&r.header, "EINVAL"),
        });
        return;
    };
    let cmd = Command::As {
        caller: Caller {
            dom: r.dom.0,
            privileged: r.privileged,
            target: None,
        },
        cmd: Box::new(Command::Op(op)),
    };
    // This member first (no round trip if it leads), else the leader. A
    // leader cut off from its majority may never answer: bounded.
    let local = tokio::time::timeout(
        SUBMIT_DEADLINE,
        node.client(ClientRequest::Submit(cmd.clone())),
    )
    .await
    .unwrap_or_else(|_| Err(ClientError::Unknown("no commit within the deadline".into())));
    let res = match local {
        Ok(ClientReply::Outcome(o, i)) => Ok((o, i)),
        Err(ClientError::NotLeader(_)) => client.lock().await.submit(cmd).await,
        Ok(other) => Err(ClientError::Unknown(format!("unexpected reply {other:?}"))),
        Err(e) => Err(e),
    };
    match res {
        Ok((o, index)) => {
            let bytes = match o.result {
                Ok(()) => reply(&r.header, b"OK\0"),
                Err(e) => error(&r.header, e.errno_name()),
            };
            let _ = pend.send(Pending {
                index,
                ticket: r.ticket,
                bytes,
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "pool write not known to be committed");
            let _ = sender.send(PoolEvent::Reply {
                ticket: r.ticket,
                bytes: error(&r.header, "EIO"),
            });
        }
    }
}

/// How long this member may take to commit a write it leads.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(5);

fn forward(node: &PoolNode, ev: &Applied, sender: &PoolSender) {
    let step = node.sm.read(|d| mirror::step(ev, &d.tree));
    let _ = sender.send(PoolEvent::Apply {
        mutations: step.mutations,
        fire: step.fire,
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
        pending.retain(|p| {
            if p.index <= done {
                let _ = sender.send(PoolEvent::Reply {
                    ticket: p.ticket,
                    bytes: p.bytes.clone(),
                });
                false
            } else {
                true
            }
        });
    }
}
