//! Durable storage of the Raft log, vote and snapshots in one `redb`
//! database, and the `/pool` state machine fed from it.
//!
//! `redb` commits are atomic and, with its default `Durability::Immediate`,
//! synced before `commit` returns: a crash at any point leaves either the
//! whole commit or none of it. The log store reports an append flushed only
//! after its commit, so openraft counts this node in a majority only for
//! entries on disk; the vote is synced before any reply that depends on it.
//!
//! The state machine lives in memory. It is rebuilt at start from the last
//! snapshot (kept in the same database) and openraft re-applies the log
//! from there up to the committed index, which is saved too
//! ([`RaftLogStorage::save_committed`]). Snapshots are taken every
//! [`SNAPSHOT_EVERY`] entries; the log before a snapshot is purged then,
//! and a node too far behind is sent the snapshot instead of the entries.

// The error type is the one openraft's storage traits return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::sm::{Outcome, PoolTree};
use crate::TypeConfig;

/// Entries between snapshots.
pub const SNAPSHOT_EVERY: u64 = 2000;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

type SErr = StorageError<u64>;

fn w_err<E: std::error::Error + 'static>(e: E) -> SErr {
    StorageIOError::write(AnyError::new(&e)).into()
}

fn r_err<E: std::error::Error + 'static>(e: E) -> SErr {
    StorageIOError::read(AnyError::new(&e)).into()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, SErr> {
    postcard::to_stdvec(v).map_err(w_err)
}

fn dec<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, SErr> {
    postcard::from_bytes(b).map_err(r_err)
}

/// Opens (creating if needed) the database of a node.
pub fn open_db(dir: &Path) -> Result<Arc<Database>, redb::Error> {
    let db = Database::create(dir.join("raft.redb"))?;
    let tx = db.begin_write()?;
    tx.open_table(LOG)?;
    tx.open_table(META)?;
    tx.commit()?;
    Ok(Arc::new(db))
}

fn get_meta(db: &Database, key: &str) -> Result<Option<Vec<u8>>, SErr> {
    let tx = db.begin_read().map_err(r_err)?;
    let t = tx.open_table(META).map_err(r_err)?;
    Ok(t.get(key).map_err(r_err)?.map(|v| v.value().to_vec()))
}

fn put_meta(db: &Database, key: &str, val: &[u8]) -> Result<(), SErr> {
    let tx = db.begin_write().map_err(w_err)?;
    {
        let mut t = tx.open_table(META).map_err(w_err)?;
        t.insert(key, val).map_err(w_err)?;
    }
    tx.commit().map_err(w_err)
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// The log store over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let tx = self.db.begin_read().map_err(r_err)?;
        let t = tx.open_table(LOG).map_err(r_err)?;
        let mut out = Vec::new();
        for item in t.range(range).map_err(r_err)? {
            let (_, v) = item.map_err(r_err)?;
            out.push(dec(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let purged: Option<LogId<u64>> = match get_meta(&self.db, "purged")? {
            Some(b) => dec(&b)?,
            None => None,
        };
        let tx = self.db.begin_read().map_err(r_err)?;
        let t = tx.open_table(LOG).map_err(r_err)?;
        let last = match t.last().map_err(r_err)? {
            Some((_, v)) => Some(dec::<Entry<TypeConfig>>(v.value())?.log_id),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        put_meta(&self.db, "vote", &enc(vote)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        get_meta(&self.db, "vote")?.map(|b| dec(&b)).transpose()
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        // Synced like every other commit of this database: with a
        // non-durable (`Durability::None`) commit here, a whole-pool
        // kill -9 lost the last acknowledged write in about one run in
        // three (`tests/cluster.rs`), and none in the same runs synced.
        put_meta(&self.db, "committed", &enc(&committed)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        Ok(match get_meta(&self.db, "committed")? {
            Some(b) => dec(&b)?,
            None => None,
        })
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.clone();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, enc(&e)?)))
            .collect::<Result<_, SErr>>()?;
        // The commit syncs; keep it off the runtime's other tasks.
        let r = tokio::task::block_in_place(|| -> Result<(), SErr> {
            let tx = db.begin_write().map_err(w_err)?;
            {
                let mut t = tx.open_table(LOG).map_err(w_err)?;
                for (i, b) in &encoded {
                    t.insert(*i, b.as_slice()).map_err(w_err)?;
                }
            }
            tx.commit().map_err(w_err)
        });
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        let tx = self.db.begin_write().map_err(w_err)?;
        {
            let mut t = tx.open_table(LOG).map_err(w_err)?;
            t.retain_in(log_id.index.., |_, _| false).map_err(w_err)?;
        }
        tx.commit().map_err(w_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        let tx = self.db.begin_write().map_err(w_err)?;
        {
            let mut m = tx.open_table(META).map_err(w_err)?;
            m.insert("purged", enc(&Some(log_id))?.as_slice())
                .map_err(w_err)?;
            let mut t = tx.open_table(LOG).map_err(w_err)?;
            t.retain_in(..=log_id.index, |_, _| false).map_err(w_err)?;
        }
        tx.commit().map_err(w_err)
    }
}

/// An entry applied to the `/pool` tree, for firing watches on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Its log index.
    pub index: u64,
    /// The paths it changed (empty entries are not sent). After a snapshot
    /// was installed, `["/pool"]`: everything may have changed.
    pub changed: Vec<String>,
}

/// What the state machine holds, as a snapshot stores it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SmData {
    /// The tree.
    pub tree: PoolTree,
    /// Last entry applied.
    pub last_applied: Option<LogId<u64>>,
    /// Last membership applied.
    pub membership: StoredMembership<u64, BasicNode>,
}

/// The `/pool` state machine. Clones share the same state.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    data: Arc<RwLock<SmData>>,
    applied: broadcast::Sender<Applied>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

impl StateMachineStore {
    /// The state machine over `db`, restored from its last snapshot.
    pub fn open(db: Arc<Database>) -> Result<Self, SErr> {
        let data = match get_meta(&db, "snapshot")? {
            Some(b) => {
                let s: StoredSnapshot = dec(&b)?;
                dec(&s.data)?
            }
            None => SmData::default(),
        };
        let (applied, _) = broadcast::channel(4096);
        Ok(StateMachineStore {
            db,
            data: Arc::new(RwLock::new(data)),
            applied,
        })
    }

    /// Reads the state (the tree as applied so far on this node).
    pub fn read<T>(&self, f: impl FnOnce(&SmData) -> T) -> T {
        let g = self.data.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    /// The stream of applied entries; watches on `/pool` fire from it.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.applied.subscribe()
    }

    fn store_snapshot(&self, s: &StoredSnapshot) -> Result<(), SErr> {
        let b = enc(s)?;
        tokio::task::block_in_place(|| put_meta(&self.db, "snapshot", &b))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let (bytes, last, membership) =
            self.read(|d| (enc(d), d.last_applied, d.membership.clone()));
        let bytes = bytes?;
        let id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: id,
        };
        self.store_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: bytes.clone(),
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), SErr> {
        Ok(self.read(|d| (d.last_applied, d.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut events = Vec::new();
        {
            let mut d = self.data.write().unwrap_or_else(|e| e.into_inner());
            for e in entries {
                d.last_applied = Some(e.log_id);
                let o = match e.payload {
                    EntryPayload::Blank => Outcome {
                        result: Ok(()),
                        changed: Vec::new(),
                    },
                    EntryPayload::Normal(cmd) => d.tree.apply(e.log_id.index, &cmd),
                    EntryPayload::Membership(m) => {
                        d.membership = StoredMembership::new(Some(e.log_id), m);
                        Outcome {
                            result: Ok(()),
                            changed: Vec::new(),
                        }
                    }
                };
                if !o.changed.is_empty() {
                    events.push(Applied {
                        index: e.log_id.index,
                        changed: o.changed.clone(),
                    });
                }
                out.push(o);
            }
        }
        for ev in events {
            // No subscriber is not an error.
            let _ = self.applied.send(ev);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let bytes = snapshot.into_inner();
        let new: SmData = dec(&bytes)?;
        self.store_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        })?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        *self.data.write().unwrap_or_else(|e| e.into_inner()) = new;
        let _ = self.applied.send(Applied {
            index,
            changed: vec![crate::sm::ROOT.to_string()],
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        Ok(match get_meta(&self.db, "snapshot")? {
            Some(b) => {
                let s: StoredSnapshot = dec(&b)?;
                Some(Snapshot {
                    meta: s.meta,
                    snapshot: Box::new(Cursor::new(s.data)),
                })
            }
            None => None,
        })
    }
}
