//! Persistence: an append-only record log, durability classes, snapshots.
//!
//! Producer: the daemon's event loop, which appends one record per
//! acknowledged mutation (the encoding of a record is the caller's business;
//! this module stores opaque byte strings). Consumer: recovery at start-up,
//! which loads the newest valid snapshot and replays the log after it.
//!
//! # Files in the data directory
//!
//! ```text
//! snapshot-<seq>   state holding every record of the segments before <seq>
//! log-<seq>        records appended after snapshot <seq> was taken
//! ```
//!
//! A segment is a sequence of records, then zeros (segments are
//! pre-extended with zeros so that a sync of appended records needs no
//! metadata update, which makes each sync about 1.6x cheaper here):
//!
//! ```text
//! +--------+--------+--------+----------------+
//! | magic  | len    | crc32c | payload (len)  |   magic = "XSL1", le32 each;
//! +--------+--------+--------+----------------+   crc32c over len and payload
//! ```
//!
//! A snapshot file is one such record holding the whole dump.
//!
//! # Durability ([`Durability`])
//!
//! [`Log::append_batch`] writes the records into the segment at once, on
//! the caller's thread (a `pwrite` into the page cache, a few
//! microseconds): from then on they survive a crash of the daemon (the
//! kernel keeps them), and [`Log::written`] says so. A batch holding a
//! record of class [`Durability::Synced`] also asks the sync thread for an
//! `fdatasync` of the segment; [`Log::durable`] advances when it is done
//! (one sync covers everything written before it: group commit) and
//! `notify` is called. Records of class [`Durability::Logged`] are never
//! synced on their own: the kernel writes them back in its own time, a
//! later sync takes them along, and a power loss may lose the newest of
//! them (recovery then drops a torn tail), never one written before a
//! completed sync.
//!
//! # Recovery
//!
//! Segments are never appended to after a restart: [`Log::open`] replays the
//! newest valid snapshot and every later segment up to its first invalid
//! record (a torn or corrupted tail is dropped), then starts a fresh
//! segment. The caller is expected to call [`Log::snapshot`] with the
//! recovered state, which lets old files be removed.
//!
//! Departure from the house "sans-IO" rule: this module *is* the I/O layer of
//! persistence, so it is `std`-only and owns a thread.

extern crate std;

use std::boxed::Box;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::string::String;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::vec::Vec;

mod durability;
pub mod records;

pub use durability::{AllSynced, Classify, Durability, PoolSynced};

/// A log sequence number: the n-th record appended since the log was opened
/// (1-based; 0 means "nothing").
pub type Lsn = u64;

const MAGIC: u32 = u32::from_le_bytes(*b"XSL1");
const HEADER: usize = 12;
/// Largest record accepted, as a sanity bound when reading.
const MAX_RECORD: usize = 256 << 20;
/// Zero bytes a new segment starts with (small: every start-up and every
/// snapshot opens one).
const INITIAL: u64 = 256 << 10;
/// The zero-filled area is extended by this much, ahead of the writes
/// (on the appending thread: a bounded pause every megabyte of log).
const EXTEND_STEP: u64 = 1 << 20;

/// Why persistence failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// An I/O call on the data directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Every snapshot present is corrupt, and the log needed without it is gone.
    #[error("no valid snapshot in {}, and the log before the oldest snapshot is gone", .0.display())]
    NoValidSnapshot(PathBuf),
    /// A write or sync failed earlier; nothing more can be made durable.
    #[error("the log writer failed earlier: {0}")]
    WriterFailed(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Frames `payload` as one record and appends it to `out`.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses the valid prefix of a segment: the records before the first one
/// that is missing, torn or corrupt. Returns the payloads and the byte
/// length of the valid prefix.
pub fn decode_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if word(0) != MAGIC {
            break;
        }
        let len = word(4);
        let len_usize = len as usize;
        if len_usize > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len_usize) else {
            break;
        };
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload);
        if crc != word(8) {
            break;
        }
        records.push(payload);
        at += HEADER + len_usize;
    }
    (records, at)
}

/// Records framed for the log but not yet handed to it: a producer that
/// appends many records in a burst collects them here and hands them over
/// with one [`Log::append_batch`].
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    count: u64,
    /// Some record must be synced before its reply.
    sync: bool,
}

impl Batch {
    /// Frames `payload` as the batch's next record, of class `class`.
    pub fn push(&mut self, payload: &[u8], class: Durability) {
        encode_record(&mut self.bytes, payload);
        self.count += 1;
        self.sync |= class == Durability::Synced;
    }

    /// How many records the batch holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What [`Log::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest valid snapshot's payload, if any.
    pub snapshot: Option<Vec<u8>>,
    /// The records logged after that snapshot, oldest first.
    pub records: Vec<Vec<u8>>,
    /// How many bytes of torn or corrupt tails were dropped.
    pub dropped_bytes: u64,
}

/// Work for the sync thread, in order.
enum Item {
    /// `fdatasync` the segment: every record up to `upto` is in it (or in
    /// an older segment synced before).
    Sync { segment: Arc<Segment>, upto: Lsn },
    /// Write `snapshot-<seq>` (it holds every record before segment `seq`).
    Snapshot { seq: u64, state: Vec<u8> },
}

struct State {
    queue: VecDeque<Item>,
    /// Highest LSN a `Sync` was queued for.
    sync_asked: Lsn,
    durable: Lsn,
    failed: Option<String>,
    shutdown: bool,
    /// Snapshots queued or being written.
    snapshots: usize,
    /// Threads blocked on `done` (it is signalled only if there are any).
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sync thread.
    work: Condvar,
    /// Wakes callers of [`Log::wait_durable`] and [`Log::flush`].
    done: Condvar,
    /// `State::durable`, readable without the lock (the event loop asks
    /// every round). Stored and loaded `SeqCst`: a caller that announces
    /// it is about to sleep and then reads it pairs with the `notify`
    /// callback that checks the announcement after the store.
    durable: AtomicU64,
    /// `fdatasync`s of log segments done (for tests and statistics).
    syncs: AtomicU64,
    /// Whether the log failed, readable without the lock.
    failed: AtomicBool,
    notify: Box<dyn Fn(Lsn) + Send + Sync>,
    dir: PathBuf,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent
        // in a way that matters more than stopping, so take the data anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, e: &PersistError) {
        let mut st = self.lock();
        fail(self, &mut st, e);
    }
}

/// The log of one data directory. See the module docs. Appends happen on
/// the thread that owns the `Log` (the daemon's loop); one thread syncs.
pub struct Log {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The segment appends go to, its write position, its zero-filled size.
    segment: Arc<Segment>,
    end: u64,
    allocated: u64,
    seq: u64,
    /// The LSN of the last record written.
    appended: Lsn,
}

/// Kept for callers that name a number of commit threads: one sync thread
/// serves a log now (appends are written by the appending thread).
pub const DEFAULT_WRITERS: usize = 1;

/// How many syncs have been done, and how far: a handle that stays valid
/// while the log runs on another thread (for tests and statistics).
#[derive(Clone)]
pub struct SyncProbe(Arc<Shared>);

impl SyncProbe {
    /// `fdatasync`s of log segments done so far.
    pub fn syncs(&self) -> u64 {
        self.0.syncs.load(Ordering::SeqCst)
    }

    /// Every record up to this LSN is on stable storage.
    pub fn durable(&self) -> Lsn {
        self.0.durable.load(Ordering::SeqCst)
    }
}

fn seq_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.parse().ok()
}

fn read_file(path: &Path) -> Result<Vec<u8>, PersistError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read", path))?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

impl Log {
    /// Opens (creating if needed) the data directory `dir`, recovers what it
    /// holds and starts on a fresh segment. `notify` is called from the sync
    /// thread each time the durable LSN advances. `_writers` is ignored
    /// (see [`DEFAULT_WRITERS`]).
    pub fn open(
        dir: &Path,
        _writers: usize,
        notify: Box<dyn Fn(Lsn) + Send + Sync>,
    ) -> Result<(Log, Recovered), PersistError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mut snapshots = Vec::new();
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = seq_of(name, "snapshot-") {
                snapshots.push(seq);
            } else if let Some(seq) = seq_of(name, "log-") {
                segments.push(seq);
            } else if name.ends_with(".tmp") {
                // A snapshot that never got renamed into place.
                let _ = fs::remove_file(entry.path());
            }
        }
        snapshots.sort_unstable();
        segments.sort_unstable();

        let mut recovered = Recovered::default();
        // The newest snapshot that checks out; older segments are needed only
        // when no snapshot is found at all.
        let mut base = None;
        for &seq in snapshots.iter().rev() {
            let bytes = read_file(&dir.join(std::format!("snapshot-{seq}")))?;
            let (records, _) = decode_records(&bytes);
            if let [state] = records.as_slice() {
                recovered.snapshot = Some(state.to_vec());
                base = Some(seq);
                break;
            }
            tracing::warn!(seq, "ignoring corrupt snapshot");
        }
        let first = base.unwrap_or(0);
        if base.is_none() && !snapshots.is_empty() && segments.first().is_some_and(|&s| s > 0) {
            return Err(PersistError::NoValidSnapshot(dir.to_path_buf()));
        }
        for &seq in segments.iter().filter(|&&s| s >= first) {
            let path = dir.join(std::format!("log-{seq}"));
            let bytes = read_file(&path)?;
            let (records, valid) = decode_records(&bytes);
            recovered
                .records
                .extend(records.into_iter().map(<[u8]>::to_vec));
            let tail = &bytes[valid..];
            if tail.iter().any(|&b| b != 0) {
                let dropped = tail.len() - tail.iter().rev().take_while(|&&b| b == 0).count();
                tracing::warn!(seq, valid, dropped, "dropping torn or corrupt log tail");
                recovered.dropped_bytes += dropped as u64;
            }
        }
        let seq = snapshots
            .iter()
            .chain(segments.iter())
            .max()
            .map_or(0, |m| m + 1);
        let segment = Segment::create(dir, seq)?;
        segment.sync_entry(dir)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sync_asked: 0,
                durable: 0,
                failed: None,
                shutdown: false,
                snapshots: 0,
                waiting: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            notify,
            dir: dir.to_path_buf(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("xs-sync".into())
            .spawn(move || syncer(&thread_shared))
            .map_err(io_err("spawn sync thread for", dir))?;
        let allocated = segment.initial;
        Ok((
            Log {
                shared,
                thread: Some(thread),
                segment: Arc::new(segment),
                end: 0,
                allocated,
                seq,
                appended: 0,
            },
            recovered,
        ))
    }

    /// Writes every record of `batch` into the log (they get consecutive
    /// LSNs in the order pushed) and empties it; returns the LSN of its
    /// last record, or [`Log::written`] if it was empty. If a record of the
    /// batch is [`Durability::Synced`], a sync is queued: the batch is
    /// durable once [`Log::durable`] reaches the LSN returned. On a write
    /// error the log fails ([`Log::failure`]) and nothing more is written.
    pub fn append_batch(&mut self, batch: &mut Batch) -> Lsn {
        if batch.count == 0 {
            return self.appended;
        }
        let bytes = core::mem::take(&mut batch.bytes);
        let count = core::mem::take(&mut batch.count);
        let sync = core::mem::take(&mut batch.sync);
        if self.shared.failed.load(Ordering::Acquire) {
            return self.appended;
        }
        if let Err(e) = self.write(&bytes) {
            self.shared.fail(&e);
            return self.appended;
        }
        self.appended += count;
        if sync {
            self.request_sync(self.appended);
        }
        // Give the buffer back for the next batch (a burst's capacity is
        // not kept).
        if bytes.capacity() <= 64 << 10 {
            let mut bytes = bytes;
            bytes.clear();
            batch.bytes = bytes;
        }
        self.appended
    }

    /// Writes one record of class [`Durability::Logged`]; returns its LSN.
    pub fn append(&mut self, payload: &[u8]) -> Lsn {
        let mut b = Batch::default();
        b.push(payload, Durability::Logged);
        self.append_batch(&mut b)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PersistError> {
        let len = bytes.len() as u64;
        if self.end + len + EXTEND_STEP / 2 > self.allocated {
            // Keep zeros ahead of the writes (see the module docs).
            let size = EXTEND_STEP.max(len);
            self.segment.zero(self.allocated, size)?;
            self.allocated += size;
        }
        self.segment
            .file
            .write_all_at(bytes, self.end)
            .map_err(io_err("write", &self.segment.path))?;
        self.end += len;
        Ok(())
    }

    fn request_sync(&self, upto: Lsn) {
        let mut st = self.shared.lock();
        if upto <= st.sync_asked {
            return;
        }
        st.sync_asked = upto;
        // Consecutive syncs of one segment merge: one fdatasync covers all.
        if let Some(Item::Sync {
            segment,
            upto: last,
        }) = st.queue.back_mut()
        {
            if Arc::ptr_eq(segment, &self.segment) {
                *last = upto;
                return;
            }
        }
        st.queue.push_back(Item::Sync {
            segment: Arc::clone(&self.segment),
            upto,
        });
        drop(st);
        self.shared.work.notify_one();
    }

    /// Starts a new segment and queues a snapshot: `state` must hold the
    /// effect of every record appended so far. Old files are removed once
    /// the snapshot is durable.
    pub fn snapshot(&mut self, state: Vec<u8>) {
        if self.shared.failed.load(Ordering::Acquire) {
            return;
        }
        let seq = self.seq + 1;
        let segment = match Segment::create(&self.shared.dir, seq) {
            Ok(s) => s,
            Err(e) => {
                self.shared.fail(&e);
                return;
            }
        };
        self.seq = seq;
        self.allocated = segment.initial;
        self.end = 0;
        self.segment = Arc::new(segment);
        let mut st = self.shared.lock();
        st.snapshots += 1;
        st.queue.push_back(Item::Snapshot { seq, state });
        drop(st);
        self.shared.work.notify_one();
    }

    /// The LSN of the last record appended (and written: it survives a
    /// crash of the process from now on).
    pub fn written(&self) -> Lsn {
        self.appended
    }

    /// The LSN of the last record appended (same as [`Log::written`]).
    pub fn appended(&self) -> Lsn {
        self.appended
    }

    /// Every record up to this LSN is on stable storage.
    pub fn durable(&self) -> Lsn {
        self.shared.durable.load(Ordering::SeqCst)
    }

    /// A handle on the sync counters, usable from other threads.
    pub fn probe(&self) -> SyncProbe {
        SyncProbe(Arc::clone(&self.shared))
    }

    /// The writer's failure, if it has failed (nothing is durable after it).
    pub fn failure(&self) -> Option<PersistError> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return None;
        }
        self.shared
            .lock()
            .failed
            .clone()
            .map(PersistError::WriterFailed)
    }

    /// Syncs up to `lsn` (whatever its records' class) and blocks until
    /// it is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), PersistError> {
        self.request_sync(lsn.min(self.appended));
        let mut st = self.shared.lock();
        loop {
            if st.durable >= lsn.min(self.appended) {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(PersistError::WriterFailed(e.clone()));
            }
            st.waiting += 1;
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }

    /// Syncs everything written and blocks until it and every queued
    /// snapshot are on stable storage.
    pub fn flush(&self) -> Result<(), PersistError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.request_sync(self.appended);
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.failed {
                return Err(PersistError::WriterFailed(e.clone()));
            }
            if st.queue.is_empty() && st.durable >= self.appended && st.snapshots == 0 {
                return Ok(());
            }
            st.waiting += 1;
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One log segment file.
struct Segment {
    file: File,
    path: PathBuf,
    /// Zero-filled bytes at creation.
    initial: u64,
    /// Its directory entry is on stable storage.
    entry_synced: AtomicBool,
}

impl Segment {
    fn create(dir: &Path, seq: u64) -> Result<Segment, PersistError> {
        let path = dir.join(std::format!("log-{seq}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let seg = Segment {
            file,
            path,
            initial: INITIAL,
            entry_synced: AtomicBool::new(false),
        };
        seg.zero(0, INITIAL)?;
        Ok(seg)
    }

    /// Makes the file's directory entry durable (once).
    fn sync_entry(&self, dir: &Path) -> Result<(), PersistError> {
        if !self.entry_synced.load(Ordering::Acquire) {
            sync_dir(dir)?;
            self.entry_synced.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `at` (pre-extension; see the module docs).
    fn zero(&self, at: u64, len: u64) -> Result<(), PersistError> {
        let zeros = std::vec![0u8; len as usize];
        self.file
            .write_all_at(&zeros, at)
            .map_err(io_err("extend", &self.path))
    }
}

fn fail(shared: &Shared, st: &mut State, e: &PersistError) {
    tracing::error!(error = %e, "log failed; no further write is acknowledged");
    if st.failed.is_none() {
        st.failed = Some(std::format!("{e}"));
    }
    shared.failed.store(true, Ordering::Release);
    st.shutdown = true;
    shared.done.notify_all();
    shared.work.notify_all();
}

/// The sync thread: syncs segments and writes snapshots, in queue order.
fn syncer(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        while !st.shutdown && st.queue.is_empty() {
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.failed.is_some() || (st.shutdown && st.queue.is_empty()) {
            return;
        }
        let Some(item) = st.queue.pop_front() else {
            continue;
        };
        drop(st);
        let r = match &item {
            Item::Sync { segment, .. } => segment.sync_entry(&shared.dir).and_then(|()| {
                segment
                    .file
                    .sync_data()
                    .map_err(io_err("sync", &segment.path))
            }),
            Item::Snapshot { seq, state } => write_snapshot(&shared.dir, *seq, state),
        };
        st = shared.lock();
        if let Err(e) = r {
            fail(shared, &mut st, &e);
            return;
        }
        match item {
            Item::Sync { upto, .. } => {
                shared.syncs.fetch_add(1, Ordering::SeqCst);
                if upto > st.durable {
                    st.durable = upto;
                    shared.durable.store(upto, Ordering::SeqCst);
                    if st.waiting > 0 {
                        shared.done.notify_all();
                    }
                    drop(st);
                    (shared.notify)(upto);
                    st = shared.lock();
                }
            }
            Item::Snapshot { .. } => {
                st.snapshots -= 1;
                shared.done.notify_all();
            }
        }
    }
}

/// Writes `snapshot-<seq>` durably, then removes the files it supersedes.
/// Batches still being written to an older segment are covered by the
/// snapshot, so losing them with the file is fine.
fn write_snapshot(dir: &Path, seq: u64, state: &[u8]) -> Result<(), PersistError> {
    let path = dir.join(std::format!("snapshot-{seq}"));
    let tmp = dir.join(std::format!("snapshot-{seq}.tmp"));
    let mut bytes = Vec::with_capacity(HEADER + state.len());
    encode_record(&mut bytes, state);
    {
        let f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all_at(&bytes, 0).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let old = seq_of(name, "snapshot-").or_else(|| seq_of(name, "log-"));
            if old.is_some_and(|s| s < seq) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    tracing::debug!(seq, bytes = state.len(), "snapshot written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(std::format!(
            "windsor-persist-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path) -> (Log, Recovered) {
        Log::open(dir, DEFAULT_WRITERS, Box::new(|_| {})).expect("open")
    }

    fn payloads(r: &Recovered) -> Vec<&[u8]> {
        r.records.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn a_batch_gets_consecutive_lsns_and_keeps_its_order() {
        let dir = tempdir("batch");
        {
            let (mut log, _) = open(&dir);
            let mut batch = Batch::default();
            assert_eq!(
                log.append_batch(&mut batch),
                0,
                "an empty batch appends nothing"
            );
            assert_eq!(log.append(b"single"), 1);
            batch.push(b"b1", Durability::Logged);
            batch.push(b"b2", Durability::Logged);
            batch.push(b"b3", Durability::Logged);
            assert_eq!(batch.len(), 3);
            assert_eq!(log.append_batch(&mut batch), 4);
            assert!(batch.is_empty(), "the batch is handed over");
            assert_eq!(log.append(b"after"), 5);
            log.wait_durable(5).expect("durable");
            assert_eq!(log.durable(), 5);
            assert!(log.failure().is_none());
        }
        let (_log, rec) = open(&dir);
        assert_eq!(
            payloads(&rec),
            [&b"single"[..], b"b1", b"b2", b"b3", b"after"]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_round_trip_and_reopen() {
        let dir = tempdir("roundtrip");
        {
            let (mut log, rec) = open(&dir);
            assert!(rec.snapshot.is_none() && rec.records.is_empty());
            let a = log.append(b"one");
            let b = log.append(b"two");
            assert_eq!((a, b), (1, 2));
            log.wait_durable(b).expect("durable");
        }
        let (mut log, rec) = open(&dir);
        assert_eq!(payloads(&rec), [b"one".as_slice(), b"two"]);
        let c = log.append(b"three");
        log.wait_durable(c).expect("durable");
        drop(log);
        let (_log, rec) = open(&dir);
        assert_eq!(payloads(&rec), [b"one".as_slice(), b"two", b"three"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_replaces_older_records() {
        let dir = tempdir("snapshot");
        {
            let (mut log, _) = open(&dir);
            log.append(b"a");
            log.append(b"b");
            log.snapshot(b"STATE-ab".to_vec());
            let c = log.append(b"c");
            log.wait_durable(c).expect("durable");
            log.flush().expect("flush");
        }
        let (mut log, rec) = open(&dir);
        assert_eq!(rec.snapshot.as_deref(), Some(b"STATE-ab".as_slice()));
        assert_eq!(payloads(&rec), [b"c".as_slice()]);
        log.snapshot(b"STATE-abc".to_vec());
        log.flush().expect("flush");
        drop(log);
        let names: Vec<String> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        assert_eq!(
            names.iter().filter(|n| n.starts_with("snapshot-")).count(),
            1,
            "{names:?}"
        );
        let (_log, rec) = open(&dir);
        assert_eq!(rec.snapshot.as_deref(), Some(b"STATE-abc".as_slice()));
        assert!(rec.records.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| {
                let e = e.ok()?;
                let seq = seq_of(e.file_name().to_str()?, "log-")?;
                Some((seq, e.path()))
            })
            .collect();
        segs.sort();
        // The newest segment is the empty one opened last; the data is in
        // the one before it.
        segs.iter()
            .rev()
            .find(|(_, p)| decode_records(&fs::read(p).expect("read")).1 > 0)
            .expect("a segment with data")
            .1
            .clone()
    }

    #[test]
    fn torn_tail_is_dropped() {
        let dir = tempdir("torn");
        {
            let (mut log, _) = open(&dir);
            for i in 0..10u8 {
                log.append(&[i; 40]);
            }
            log.flush().expect("flush");
        }
        // Cut the last record in half (as a crash mid-write would leave it:
        // the zeros after it are still there).
        let seg = last_segment(&dir);
        let mut bytes = fs::read(&seg).expect("read");
        let (_, valid) = decode_records(&bytes);
        for b in &mut bytes[valid - 20..valid] {
            *b = 0;
        }
        fs::write(&seg, &bytes).expect("write");
        {
            let (mut log, rec) = open(&dir);
            assert_eq!(rec.records.len(), 9);
            assert!(rec.dropped_bytes > 0);
            let lsn = log.append(b"after");
            log.wait_durable(lsn).expect("durable");
        }
        let (_log, rec) = open(&dir);
        assert_eq!(rec.records.len(), 10);
        assert_eq!(rec.records[9], b"after");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bit_flip_drops_the_rest_of_the_segment() {
        let dir = tempdir("flip");
        {
            let (mut log, _) = open(&dir);
            for i in 0..10u8 {
                log.append(&[i; 40]);
            }
            log.flush().expect("flush");
        }
        let seg = last_segment(&dir);
        let mut bytes = fs::read(&seg).expect("read");
        // Flip one payload bit of the 5th record.
        bytes[4 * (HEADER + 40) + HEADER + 7] ^= 0x10;
        fs::write(&seg, &bytes).expect("write");
        let (_log, rec) = open(&dir);
        assert_eq!(rec.records.len(), 4);
        for (i, r) in rec.records.iter().enumerate() {
            assert_eq!(r.as_slice(), [i as u8; 40]);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_snapshot_falls_back_to_log() {
        let dir = tempdir("badsnap");
        {
            let (mut log, _) = open(&dir);
            log.append(b"x");
            log.flush().expect("flush");
        }
        // A snapshot with a bad checksum next to an intact log.
        let mut bad = Vec::new();
        encode_record(&mut bad, b"garbage");
        bad[HEADER] ^= 1;
        fs::write(dir.join("snapshot-7"), &bad).expect("write");
        let (_log, rec) = open(&dir);
        assert!(rec.snapshot.is_none());
        assert_eq!(payloads(&rec), [b"x".as_slice()]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let (_, valid) = decode_records(&bytes);
            assert!(valid <= bytes.len());
        }
        let mut huge = Vec::new();
        huge.extend_from_slice(&MAGIC.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(decode_records(&huge).1, 0);
    }

    #[test]
    fn only_synced_batches_are_synced_and_notify() {
        let dir = tempdir("classes");
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = Arc::clone(&seen);
        let (mut log, _) = Log::open(
            &dir,
            DEFAULT_WRITERS,
            Box::new(move |lsn| {
                seen2.fetch_max(lsn, Ordering::SeqCst);
            }),
        )
        .expect("open");
        let probe = log.probe();
        // Logged records: written at once, never synced on their own.
        for i in 0..100u32 {
            let lsn = log.append(&i.to_le_bytes());
            assert_eq!(log.written(), lsn);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(probe.syncs(), 0, "no sync for logged records");
        assert_eq!(log.durable(), 0);
        // A batch with one synced record: one sync covers it all.
        let mut batch = Batch::default();
        batch.push(b"l", Durability::Logged);
        batch.push(b"s", Durability::Synced);
        let last = log.append_batch(&mut batch);
        assert_eq!(last, 102);
        let t0 = std::time::Instant::now();
        while log.durable() < last {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(probe.syncs() >= 1);
        assert_eq!(probe.durable(), 102);
        drop(log); // joins the sync thread, so the last notify has run
        assert_eq!(seen.load(Ordering::SeqCst), 102);
        let (_log, rec) = open(&dir);
        assert_eq!(rec.records.len(), 102);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn logged_records_survive_the_process_without_a_sync() {
        // What a crash of the daemon alone leaves: the file as written
        // (the page cache), no sync, no clean shutdown.
        let dir = tempdir("nosync");
        let (mut log, _) = open(&dir);
        for i in 0..50u8 {
            log.append(&[i; 30]);
        }
        assert_eq!(log.probe().syncs(), 0);
        std::mem::forget(log); // no Drop: no flush
        let (_log, rec) = open(&dir);
        assert_eq!(rec.records.len(), 50);
        assert_eq!(rec.records[49], [49u8; 30]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshots_interleaved_with_growing_segments() {
        interleave(1);
    }

    fn interleave(writers: usize) {
        let dir = tempdir(&std::format!("interleave{writers}"));
        let total = 3000u64;
        {
            let (mut log, _) = Log::open(&dir, writers, Box::new(|_| {})).expect("open");
            let record = [7u8; 600];
            for i in 1..=total {
                log.append(&record);
                if i % 700 == 0 {
                    // The state after i records is "i".
                    log.snapshot(i.to_le_bytes().to_vec());
                }
            }
            log.flush().expect("flush");
        }
        let (_log, rec) = open(&dir);
        let base = rec
            .snapshot
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
            .unwrap_or(0);
        assert_eq!(base, 2800);
        assert_eq!(base + rec.records.len() as u64, total);
        let _ = fs::remove_dir_all(&dir);
    }
}
