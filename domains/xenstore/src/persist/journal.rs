//! What goes into the log: acknowledged mutations, as the requests that made them.
//!
//! The journal sits between the transport and the store ([`Engine`]) and
//! watches requests and replies go by. A request that changed the store
//! (`WRITE`, `MKDIR`, `RM`, `SET_PERMS` answered without `XS_ERROR`) becomes a
//! [`Record::Op`]. Inside a transaction, the successful mutations are kept
//! per `(connection, tx_id)` and become one [`Record::Tx`] when
//! `TRANSACTION_END` commits successfully (and are dropped on abort or
//! `EAGAIN`). Replaying a record means sending the same requests again, as
//! dom0, outside any transaction: a committed transaction did not conflict,
//! so its requests have the same effect replayed in order.
//!
//! Snapshots are the tree itself ([`Node`] list, parents first), read and
//! restored through the same request interface (`DIRECTORY`,
//! `DIRECTORY_PART`, `READ`, `GET_PERMS`; `WRITE`, `SET_PERMS`). This keeps
//! persistence independent of how the core stores its tree.
//!
//! Not journaled, as in the issue: watches and transactions in flight
//! (clients reconnect), and domain introductions (`INTRODUCE`, `RELEASE`,
//! `SET_TARGET`: a restarted daemon has its domains introduced again).

extern crate std;

use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};

use super::Recovered;

/// The store as the daemon drives it: whole `xsd_sockmsg` messages in,
/// messages out. Every connection is dom0.
pub trait Engine {
    /// A client connected as `conn`.
    fn connect(&mut self, conn: usize);
    /// Client `conn` is gone: drop its watches and transactions.
    fn disconnect(&mut self, conn: usize);
    /// Handles one request (`msg` is a whole message whose header length
    /// was checked against `XENSTORE_PAYLOAD_MAX`). Pushes every message to
    /// send — the reply to `conn`, watch events to anyone — onto `out`.
    fn request(&mut self, conn: usize, msg: &[u8], out: &mut Vec<(usize, Vec<u8>)>);
}

/// One mutation of a transaction: message type and payload.
pub type TxOp = (u32, Vec<u8>);

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// One mutation outside a transaction: message type and payload.
    Op(u32, Vec<u8>),
    /// A committed transaction's mutations, in order.
    Tx(Vec<TxOp>),
}

/// One node of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Absolute path.
    pub path: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// `GET_PERMS` reply payload (NUL-terminated permission strings).
    pub perms: Vec<u8>,
}

/// Why recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The snapshot does not decode.
    #[error("snapshot does not decode: {0}")]
    Snapshot(postcard::Error),
    /// A log record with a valid checksum does not decode (written by another version?).
    #[error("log record {index} does not decode: {source}")]
    Record {
        /// Position in the replayed log.
        index: usize,
        /// The decoding error.
        source: postcard::Error,
    },
}

const CONTROL_CONN: usize = usize::MAX - 1;

/// Message types of `xs_wire.h` the journal looks at.
mod op {
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
    pub const DIRECTORY_PART: u32 = 22;
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

/// Builds one request message.
pub fn message(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + payload.len());
    for w in [ty, req_id, tx_id, payload.len() as u32] {
        m.extend_from_slice(&w.to_le_bytes());
    }
    m.extend_from_slice(payload);
    m
}

/// The engine plus the bookkeeping that turns its traffic into records.
pub struct Journal<E> {
    engine: E,
    /// Mutations of open transactions, by (connection, tx_id).
    txs: HashMap<(usize, u32), Vec<TxOp>>,
    scratch: Vec<(usize, Vec<u8>)>,
}

impl<E: Engine> Journal<E> {
    /// Wraps `engine`.
    pub fn new(engine: E) -> Self {
        Journal {
            engine,
            txs: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The engine.
    pub fn engine(&mut self) -> &mut E {
        &mut self.engine
    }

    /// A client connected.
    pub fn connect(&mut self, conn: usize) {
        self.engine.connect(conn);
    }

    /// A client left; its open transactions are forgotten.
    pub fn disconnect(&mut self, conn: usize) {
        self.txs.retain(|&(c, _), _| c != conn);
        self.engine.disconnect(conn);
    }

    /// Passes one request to the engine, outputs onto `out`. Returns the
    /// encoded record to log if the request made a durable change.
    pub fn request(
        &mut self,
        conn: usize,
        msg: &[u8],
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> Option<Vec<u8>> {
        let start = out.len();
        self.engine.request(conn, msg, out);
        let ty = u32_at(msg, 0);
        let tx_id = u32_at(msg, 8);
        let payload = msg.get(16..).unwrap_or_default();
        // The reply is the message to `conn` that is not a watch event.
        let reply = out[start..]
            .iter()
            .find(|(to, m)| *to == conn && u32_at(m, 0) != op::WATCH_EVENT)
            .map(|(_, m)| m.as_slice())?;
        if u32_at(reply, 0) == op::ERROR {
            if ty == op::TRANSACTION_END {
                self.txs.remove(&(conn, tx_id));
            }
            return None;
        }
        match ty {
            op::WRITE | op::MKDIR | op::RM | op::SET_PERMS => {
                if tx_id == 0 {
                    return Some(encode(&Record::Op(ty, payload.to_vec())));
                }
                if let Some(ops) = self.txs.get_mut(&(conn, tx_id)) {
                    ops.push((ty, payload.to_vec()));
                }
                None
            }
            op::TRANSACTION_START => {
                let id = reply.get(16..).unwrap_or_default();
                let id = id.split(|&b| b == 0).next().unwrap_or_default();
                let id = core::str::from_utf8(id).ok()?.parse::<u32>().ok()?;
                self.txs.insert((conn, id), Vec::new());
                None
            }
            op::TRANSACTION_END => {
                let ops = self.txs.remove(&(conn, tx_id))?;
                let commit = payload.first() == Some(&b'T');
                (commit && !ops.is_empty()).then(|| encode(&Record::Tx(ops)))
            }
            _ => None,
        }
    }

    fn control(&mut self, ty: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = core::mem::take(&mut self.scratch);
        out.clear();
        self.engine
            .request(CONTROL_CONN, &message(ty, 0, 0, payload), &mut out);
        let reply = out
            .iter()
            .find(|(to, m)| *to == CONTROL_CONN && u32_at(m, 0) != op::WATCH_EVENT)
            .and_then(|(_, m)| (u32_at(m, 0) != op::ERROR).then(|| m[16.min(m.len())..].to_vec()));
        self.scratch = out;
        reply
    }

    fn children(&mut self, path: &[u8]) -> Vec<Vec<u8>> {
        let mut req = path.to_vec();
        req.push(0);
        let split = |b: &[u8]| -> Vec<Vec<u8>> {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        if let Some(names) = self.control(op::DIRECTORY, &req) {
            return split(&names);
        }
        // Too big for one reply (E2BIG): page through DIRECTORY_PART.
        let mut names = Vec::new();
        let mut offset = 0usize;
        loop {
            let mut req = path.to_vec();
            req.push(0);
            req.extend_from_slice(std::format!("{offset}").as_bytes());
            req.push(0);
            let Some(part) = self.control(op::DIRECTORY_PART, &req) else {
                break;
            };
            // generation\0 name\0 name\0 ... \0 (an empty name ends the list)
            let mut fields = part.split(|&c| c == 0).skip(1);
            let mut done = true;
            for name in fields.by_ref() {
                if name.is_empty() {
                    break;
                }
                done = false;
                offset += name.len() + 1;
                names.push(name.to_vec());
            }
            // The final part ends with an extra NUL.
            if done || part.ends_with(&[0, 0]) {
                break;
            }
        }
        names
    }

    /// The whole tree, parents before children, encoded as a snapshot.
    pub fn dump(&mut self) -> Vec<u8> {
        let mut nodes = Vec::new();
        let mut stack = std::vec![b"/".to_vec()];
        while let Some(path) = stack.pop() {
            let mut req = path.clone();
            req.push(0);
            let value = self.control(op::READ, &req).unwrap_or_default();
            let perms = self.control(op::GET_PERMS, &req).unwrap_or_default();
            let mut kids = self.children(&path);
            kids.reverse();
            for k in kids {
                let mut child = path.clone();
                if child != b"/" {
                    child.push(b'/');
                }
                child.extend_from_slice(&k);
                stack.push(child);
            }
            nodes.push(Node { path, value, perms });
        }
        postcard::to_allocvec(&nodes).unwrap_or_default()
    }

    fn restore_node(&mut self, n: &Node) {
        if n.path != b"/" {
            let mut req = n.path.clone();
            req.push(0);
            req.extend_from_slice(&n.value);
            if self.control(op::WRITE, &req).is_none() {
                tracing::warn!(path = %String::from_utf8_lossy(&n.path), "snapshot node not restored");
            }
        }
        if !n.perms.is_empty() {
            let mut req = n.path.clone();
            req.push(0);
            req.extend_from_slice(&n.perms);
            if self.control(op::SET_PERMS, &req).is_none() {
                tracing::warn!(path = %String::from_utf8_lossy(&n.path), "snapshot permissions not restored");
            }
        }
    }

    fn replay(&mut self, ty: u32, payload: &[u8]) {
        if self.control(ty, payload).is_none() {
            tracing::warn!(ty, "replayed mutation failed");
        }
    }

    /// Loads a recovered snapshot and log into the (fresh) engine.
    pub fn recover(&mut self, r: &Recovered) -> Result<(), RecoverError> {
        self.engine.connect(CONTROL_CONN);
        if let Some(snap) = &r.snapshot {
            let nodes: Vec<Node> = postcard::from_bytes(snap).map_err(RecoverError::Snapshot)?;
            for n in &nodes {
                self.restore_node(n);
            }
        }
        for (index, bytes) in r.records.iter().enumerate() {
            let rec: Record = postcard::from_bytes(bytes)
                .map_err(|source| RecoverError::Record { index, source })?;
            match rec {
                Record::Op(ty, p) => self.replay(ty, &p),
                Record::Tx(ops) => {
                    for (ty, p) in ops {
                        self.replay(ty, &p);
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode(r: &Record) -> Vec<u8> {
    postcard::to_allocvec(r).unwrap_or_default()
}
