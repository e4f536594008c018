//! The daemon's view of the [`Store`]: socket slots in, wire messages and
//! log records out.

extern crate std;

use std::collections::HashMap;
use std::vec::Vec;

use xen::DomId;

use crate::persist::records::{self, DecodeError};
use crate::persist::{Classify, Durability, PoolSynced, Recovered};
use crate::store::{Config, ConnId, Effect, Mutation, Store};
use crate::wire::{Header, XsOp, HEADER_LEN};

/// The store plus the mapping between socket slots and store connections.
pub struct Engine {
    store: Store,
    conn_of: HashMap<usize, ConnId>,
    slot_of: HashMap<ConnId, usize>,
    /// Effects for the daemon's ring server (if it has one).
    effects: Vec<Effect>,
    /// The daemon's own (dom0) connection, for releasing dead domains.
    internal: Option<ConnId>,
    /// The durability class of each change.
    classify: std::boxed::Box<dyn Classify>,
}

/// A log record and how far it must go before the replies it gates.
pub type Record = (Vec<u8>, Durability);

/// Why the recovered state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The snapshot does not decode.
    #[error("snapshot: {0}")]
    Snapshot(DecodeError),
    /// A log record with a valid checksum does not decode.
    #[error("log record {index}: {source}")]
    Record {
        /// Position in the replayed log.
        index: usize,
        /// Why.
        source: DecodeError,
    },
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// A fresh store that records its mutations for the log.
    pub fn new() -> Self {
        // A per-process random seed for the hash of guest-chosen paths.
        let hash_seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        };
        let cfg = Config {
            record_mutations: true,
            hash_seed,
            ..Config::default()
        };
        Engine {
            store: Store::new(cfg),
            conn_of: HashMap::new(),
            slot_of: HashMap::new(),
            effects: Vec::new(),
            internal: None,
            classify: std::boxed::Box::new(PoolSynced),
        }
    }

    /// Replaces the durability classifier ([`PoolSynced`] by default).
    pub fn set_classifier(&mut self, c: std::boxed::Box<dyn Classify>) {
        self.classify = c;
    }

    /// The store, for a transport that serves it directly (the rings).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The `Introduce`, `Release` and `Resume` effects since the last call
    /// (for a ring server; a daemon without one drops them).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        core::mem::take(&mut self.effects)
    }

    /// The socket slot of a store connection.
    pub fn slot(&self, conn: ConnId) -> Option<usize> {
        self.slot_of.get(&conn).copied()
    }

    /// The store connection of a socket slot.
    pub fn conn(&self, slot: usize) -> Option<ConnId> {
        self.conn_of.get(&slot).copied()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Socket client `slot` connected (as dom0, like C xenstored's socket).
    pub fn connect(&mut self, slot: usize) {
        self.connect_as(slot, DomId::DOM0);
    }

    /// Connection `slot` acts for domain `dom` (an adopted stream, see
    /// [`Adopter`](super::Adopter)): its permissions and quotas apply.
    pub fn connect_as(&mut self, slot: usize, dom: DomId) {
        let c = self.store.connect(dom);
        self.conn_of.insert(slot, c);
        self.slot_of.insert(c, slot);
    }

    /// Socket client `slot` is gone.
    pub fn disconnect(&mut self, slot: usize) {
        if let Some(c) = self.conn_of.remove(&slot) {
            self.slot_of.remove(&c);
            self.store.disconnect(c);
        }
    }

    /// Handles one whole message of `slot`; pushes the messages to send onto
    /// `out`; returns the log record of the mutations it made, if any.
    pub fn request(
        &mut self,
        slot: usize,
        msg: &[u8],
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> Option<Record> {
        let conn = *self.conn_of.get(&slot)?;
        let mut hdr = [0u8; HEADER_LEN];
        hdr.copy_from_slice(msg.get(..HEADER_LEN)?);
        let header = Header::parse(&hdr);
        if let Err(e) = self.store.handle(conn, &header, &msg[HEADER_LEN..]) {
            tracing::warn!(slot, error = %e, "request not taken");
        }
        self.collect(Some((conn, header.ty)), out)
    }

    /// Moves the output the store queued for socket connections onto
    /// `out` (output of other connections, the rings', stays in the
    /// store), keeps the effects, and returns the log record of the
    /// mutations made since the last call, if any. `from` is the socket
    /// request that caused them, if one did.
    pub fn collect(
        &mut self,
        from: Option<(ConnId, u32)>,
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> Option<Record> {
        for c in self.store.take_ready() {
            let Some(to) = self.slot_of.get(&c).copied() else {
                if Some(c) == self.internal {
                    while self.store.pop(c).is_some() {}
                }
                continue;
            };
            let first = out.len();
            while let Some(pkt) = self.store.pop(c) {
                out.push((to, pkt.to_vec()));
            }
            // C xenstored fires watches before it acknowledges the request
            // that caused them, so the requester sees its own events first
            // (except the initial event of WATCH, which follows its reply).
            let own = from.is_some_and(|(conn, ty)| c == conn && ty != XsOp::Watch as u32);
            if own && out.len() - first > 1 {
                let is_event =
                    |m: &[u8]| m.get(..4) == Some(&(XsOp::WatchEvent as u32).to_le_bytes()[..]);
                if !is_event(&out[first].1) && out[first + 1..].iter().all(|(_, m)| is_event(m)) {
                    out[first..].rotate_left(1);
                }
            }
        }
        for e in self.store.take_effects() {
            if let Effect::Release { conns, .. } = &e {
                for c in conns {
                    if let Some(s) = self.slot_of.remove(c) {
                        self.conn_of.remove(&s);
                    }
                }
                if self.internal.is_some_and(|i| conns.contains(&i)) {
                    self.internal = None;
                }
            }
            // Without rings (a Linux host) introduced domains exist in
            // the store only (their nodes, permissions and quotas).
            self.effects.push(e);
        }
        let ms = self.store.take_mutations();
        if ms.is_empty() {
            return None;
        }
        let class = ms
            .iter()
            .map(|m| match m {
                Mutation::Write { path, .. } | Mutation::Remove { path } => {
                    self.classify.class(path)
                }
                _ => self.classify.domain_class(),
            })
            .max()
            .unwrap_or(Durability::Logged);
        Some((records::encode(&ms), class))
    }

    /// Releases a domain that died (its ring's port closed) as `XS_RELEASE`
    /// from dom0 would, as C xenstored does on `VIRQ_DOM_EXC`: its
    /// connections go, `@releaseDomain` fires. Returns the log record, if
    /// the domain was introduced.
    pub fn release_dead(
        &mut self,
        domid: DomId,
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> Option<Record> {
        let conn = *self
            .internal
            .get_or_insert_with(|| self.store.connect(DomId::DOM0));
        let arg = std::format!("{}\0", domid.0);
        let h = Header::new(XsOp::Release, 0, 0, arg.len() as u32);
        if let Err(e) = self.store.handle(conn, &h, arg.as_bytes()) {
            tracing::warn!(dom = domid.0, error = %e, "release of a dead domain not taken");
        }
        self.collect(None, out)
    }

    /// The tree as a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        records::snapshot(&self.store)
    }

    /// Loads a recovered snapshot and log into the (fresh) store.
    pub fn recover(&mut self, r: &Recovered) -> Result<(), RecoverError> {
        if let Some(s) = &r.snapshot {
            for m in records::decode(s).map_err(RecoverError::Snapshot)? {
                self.store.apply(&m);
            }
        }
        for (index, bytes) in r.records.iter().enumerate() {
            let ms =
                records::decode(bytes).map_err(|source| RecoverError::Record { index, source })?;
            for m in &ms {
                self.store.apply(m);
            }
        }
        let _ = self.store.take_mutations();
        Ok(())
    }
}
