//! Persistence: an append-only record log with group commit, and snapshots.
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
//! pre-extended with zeros so that a synchronous overwrite needs no
//! metadata update, which makes each commit about 1.6x cheaper here):
//!
//! ```text
//! +--------+--------+--------+----------------+
//! | magic  | len    | crc32c | payload (len)  |   magic = "XSL1", le32 each;
//! +--------+--------+--------+----------------+   crc32c over len and payload
//! ```
//!
//! A snapshot file is one such record holding the whole dump.
//!
//! # Durability
//!
//! [`Log::append`] only queues a record and returns its log sequence number
//! ([`Lsn`]). A commit thread takes everything queued and writes it with one
//! `O_DSYNC` write (group commit: all connections' mutations since the last
//! write share one flush). Several commit threads may run at once, so the
//! next batch is being flushed while the previous one still is (see
//! [`DEFAULT_WRITERS`]); batches get their
//! place in the segment in queue order, and the durable LSN advances only
//! when every batch before it is written. Each advance calls `notify`; the
//! daemon holds each reply until its LSN is durable.
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
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::string::String;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::vec::Vec;

pub mod records;

/// A log sequence number: the n-th record appended since the log was opened
/// (1-based; 0 means "nothing").
pub type Lsn = u64;

const MAGIC: u32 = u32::from_le_bytes(*b"XSL1");
const HEADER: usize = 12;
/// Largest record accepted, as a sanity bound when reading.
const MAX_RECORD: usize = 256 << 20;
/// Segments grow by this many zero bytes at a time.
const EXTEND: u64 = 4 << 20;
/// Zero bytes a new segment starts with (small: every start-up and every
/// snapshot opens one).
const INITIAL: u64 = 256 << 10;

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
    /// The commit thread stopped after a write error; nothing more can be made durable.
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
}

impl Batch {
    /// Frames `payload` as the batch's next record.
    pub fn push(&mut self, payload: &[u8]) {
        encode_record(&mut self.bytes, payload);
        self.count += 1;
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

enum Item {
    Records { bytes: Vec<u8>, last: Lsn },
    Snapshot { seq: u64, state: Vec<u8> },
}

struct State {
    queue: VecDeque<Item>,
    appended: Lsn,
    durable: Lsn,
    seq: u64,
    failed: Option<String>,
    shutdown: bool,
    /// The segment new batches go to, its write position and its
    /// zero-filled size.
    segment: Arc<Segment>,
    end: u64,
    allocated: u64,
    /// A writer is extending `segment` (outside the lock).
    extending: bool,
    /// A writer is switching to a new segment (outside the lock).
    rotating: bool,
    /// Batches being written, in LSN order: (last LSN, written).
    inflight: VecDeque<(Lsn, bool)>,
    /// Snapshots queued or being written.
    snapshots: usize,
    /// Threads blocked on `done` (it is signalled only if there are any).
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the commit threads.
    work: Condvar,
    /// Wakes callers of [`Log::wait_durable`].
    done: Condvar,
    /// `State::durable`, readable without the lock (the event loop asks
    /// every round). Stored and loaded `SeqCst`: a caller that announces
    /// it is about to sleep and then reads it pairs with the `notify`
    /// callback that checks the announcement after the store.
    durable: AtomicU64,
    /// `State::failed.is_some()`, readable without the lock.
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
}

/// The durable log of one data directory. See the module docs.
pub struct Log {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Default number of commit threads. With more than one, a new batch
/// starts while earlier ones are still being flushed. Measured here
/// (`xs-load -t 16 -m mixed`, 2 cores shared with other work): 1 thread
/// 41-53k ops/s, 2 threads 48k, 4 threads 38-41k; the disk gains little
/// from concurrent flushes under load, so the default is 2.
pub const DEFAULT_WRITERS: usize = 2;

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
    /// holds and starts the commit thread on a fresh segment. `notify` is
    /// called from the commit thread each time the durable LSN advances.
    pub fn open(
        dir: &Path,
        writers: usize,
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                appended: 0,
                durable: 0,
                seq,
                failed: None,
                shutdown: false,
                end: 0,
                allocated: segment.initial,
                segment: Arc::new(segment),
                extending: false,
                rotating: false,
                inflight: VecDeque::new(),
                snapshots: 0,
                waiting: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            notify,
            dir: dir.to_path_buf(),
        });
        let mut threads = Vec::new();
        for i in 0..writers.max(1) {
            let thread_shared = Arc::clone(&shared);
            let t = std::thread::Builder::new()
                .name(std::format!("xs-commit-{i}"))
                .spawn(move || writer(&thread_shared))
                .map_err(io_err("spawn commit thread for", dir))?;
            threads.push(t);
        }
        Ok((Log { shared, threads }, recovered))
    }

    /// Queues every record of `batch` at once (one lock, one wake-up of a
    /// commit thread) and empties it; returns the LSN of its last record
    /// (its records get consecutive LSNs in the order pushed), or
    /// [`Log::appended`] if it was empty.
    pub fn append_batch(&self, batch: &mut Batch) -> Lsn {
        if batch.count == 0 {
            return self.appended();
        }
        let bytes = core::mem::take(&mut batch.bytes);
        let mut st = self.shared.lock();
        st.appended += core::mem::take(&mut batch.count);
        let lsn = st.appended;
        st.queue.push_back(Item::Records { bytes, last: lsn });
        drop(st);
        self.shared.work.notify_one();
        lsn
    }

    /// Queues one record; returns its LSN. It is durable once
    /// [`Log::durable`] reaches that LSN.
    pub fn append(&self, payload: &[u8]) -> Lsn {
        let mut st = self.shared.lock();
        st.appended += 1;
        let lsn = st.appended;
        match st.queue.back_mut() {
            Some(Item::Records { bytes, last }) => {
                encode_record(bytes, payload);
                *last = lsn;
            }
            _ => {
                let mut bytes = Vec::with_capacity(HEADER + payload.len() + 256);
                encode_record(&mut bytes, payload);
                st.queue.push_back(Item::Records { bytes, last: lsn });
            }
        }
        drop(st);
        self.shared.work.notify_one();
        lsn
    }

    /// Queues a snapshot: `state` must hold the effect of every record
    /// appended so far. Records appended afterwards go to a new segment; old
    /// files are removed once the snapshot is durable.
    pub fn snapshot(&self, state: Vec<u8>) {
        let mut st = self.shared.lock();
        st.seq += 1;
        let seq = st.seq;
        st.queue.push_back(Item::Snapshot { seq, state });
        st.snapshots += 1;
        drop(st);
        self.shared.work.notify_one();
    }

    /// The LSN of the last record appended.
    pub fn appended(&self) -> Lsn {
        self.shared.lock().appended
    }

    /// Every record up to this LSN is on stable storage.
    pub fn durable(&self) -> Lsn {
        self.shared.durable.load(Ordering::SeqCst)
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

    /// Blocks until `lsn` is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), PersistError> {
        let mut st = self.shared.lock();
        loop {
            if st.durable >= lsn {
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

    /// Blocks until everything queued (records and snapshots) is written.
    pub fn flush(&self) -> Result<(), PersistError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.failed {
                return Err(PersistError::WriterFailed(e.clone()));
            }
            if st.queue.is_empty() && st.durable >= st.appended && st.snapshots == 0 {
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
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One log segment file, opened for synchronous (`O_DSYNC`) writes.
struct Segment {
    file: File,
    path: PathBuf,
    /// Zero-filled bytes at creation.
    initial: u64,
}

impl Segment {
    fn create(dir: &Path, seq: u64) -> Result<Segment, PersistError> {
        let path = dir.join(std::format!("log-{seq}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DSYNC)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let seg = Segment {
            file,
            path,
            initial: INITIAL,
        };
        seg.zero(0, INITIAL)?;
        sync_dir(dir)?;
        Ok(seg)
    }

    /// Writes `len` zero bytes at `at` (pre-extension; see the module docs).
    fn zero(&self, at: u64, len: u64) -> Result<(), PersistError> {
        let zeros = std::vec![0u8; len as usize];
        self.file
            .write_all_at(&zeros, at)
            .map_err(io_err("extend", &self.path))
    }
}

/// How far ahead of the write position the zero-filled area is kept, and
/// by how much it grows: doubling from [`INITIAL`] up to [`EXTEND`].
fn headroom(allocated: u64) -> u64 {
    EXTEND.min(allocated.max(INITIAL))
}

fn fail(shared: &Shared, mut st: MutexGuard<'_, State>, e: &PersistError) {
    tracing::error!(error = %e, "log writer failed; no further write is acknowledged");
    st.failed = Some(std::format!("{e}"));
    shared.failed.store(true, Ordering::Release);
    st.shutdown = true;
    drop(st);
    shared.done.notify_all();
    shared.work.notify_all();
}

/// One commit thread: takes everything queued, writes it as one batch.
fn writer(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        while !st.shutdown
            && (st.queue.is_empty()
                || st.rotating
                || (st.extending && st.allocated - st.end < headroom(st.allocated) / 2)
                // A batch being extended for goes back to the queue's front
                // and must land in the current segment: no rotation meanwhile.
                || (st.extending && matches!(st.queue.front(), Some(Item::Snapshot { .. }))))
        {
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.failed.is_some() || (st.shutdown && st.queue.is_empty()) {
            return;
        }
        if st.rotating {
            // Shutting down while another writer rotates: let it finish.
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        match st.queue.pop_front() {
            Some(Item::Records {
                mut bytes,
                mut last,
            }) => {
                while let Some(Item::Records { .. }) = st.queue.front() {
                    if let Some(Item::Records {
                        bytes: more,
                        last: l,
                    }) = st.queue.pop_front()
                    {
                        bytes.extend_from_slice(&more);
                        last = l;
                    }
                }
                let len = bytes.len() as u64;
                // Make room: extend the zero-filled area if needed.
                if st.end + len > st.allocated
                    || st.allocated - st.end - len < headroom(st.allocated)
                {
                    if st.extending {
                        // Another writer is extending; requeue and wait.
                        st.queue.push_front(Item::Records { bytes, last });
                        st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                    st.extending = true;
                    let seg = Arc::clone(&st.segment);
                    let from = st.allocated;
                    let size = headroom(from).max(len);
                    drop(st);
                    let r = seg.zero(from, size);
                    st = shared.lock();
                    st.extending = false;
                    if let Err(e) = r {
                        fail(shared, st, &e);
                        return;
                    }
                    if Arc::ptr_eq(&seg, &st.segment) {
                        st.allocated = from + size;
                    }
                    shared.work.notify_all();
                    st.queue.push_front(Item::Records { bytes, last });
                    continue;
                }
                let at = st.end;
                st.end += len;
                let seg = Arc::clone(&st.segment);
                st.inflight.push_back((last, false));
                drop(st);
                let r = seg
                    .file
                    .write_all_at(&bytes, at)
                    .map_err(io_err("write", &seg.path));
                st = shared.lock();
                if let Err(e) = r {
                    fail(shared, st, &e);
                    return;
                }
                if let Some(entry) = st.inflight.iter_mut().find(|(l, _)| *l == last) {
                    entry.1 = true;
                }
                let before = st.durable;
                while let Some(&(l, true)) = st.inflight.front() {
                    st.durable = l;
                    st.inflight.pop_front();
                }
                if st.durable != before {
                    let durable = st.durable;
                    shared.durable.store(durable, Ordering::SeqCst);
                    let waiting = st.waiting > 0;
                    drop(st);
                    if waiting {
                        shared.done.notify_all();
                    }
                    (shared.notify)(durable);
                    st = shared.lock();
                }
            }
            Some(Item::Snapshot { seq, state }) => {
                st.rotating = true;
                drop(st);
                let r = Segment::create(&shared.dir, seq);
                st = shared.lock();
                st.rotating = false;
                let seg = match r {
                    Ok(seg) => seg,
                    Err(e) => {
                        fail(shared, st, &e);
                        return;
                    }
                };
                st.end = 0;
                st.allocated = seg.initial;
                st.segment = Arc::new(seg);
                shared.work.notify_all();
                drop(st);
                let r = write_snapshot(&shared.dir, seq, &state);
                st = shared.lock();
                st.snapshots -= 1;
                if let Err(e) = r {
                    fail(shared, st, &e);
                    return;
                }
                shared.done.notify_all();
            }
            None => {}
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
            let (log, _) = open(&dir);
            let mut batch = Batch::default();
            assert_eq!(
                log.append_batch(&mut batch),
                0,
                "an empty batch appends nothing"
            );
            assert_eq!(log.append(b"single"), 1);
            batch.push(b"b1");
            batch.push(b"b2");
            batch.push(b"b3");
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
            let (log, rec) = open(&dir);
            assert!(rec.snapshot.is_none() && rec.records.is_empty());
            let a = log.append(b"one");
            let b = log.append(b"two");
            assert_eq!((a, b), (1, 2));
            log.wait_durable(b).expect("durable");
        }
        let (log, rec) = open(&dir);
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
            let (log, _) = open(&dir);
            log.append(b"a");
            log.append(b"b");
            log.snapshot(b"STATE-ab".to_vec());
            let c = log.append(b"c");
            log.wait_durable(c).expect("durable");
            log.flush().expect("flush");
        }
        let (log, rec) = open(&dir);
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
            let (log, _) = open(&dir);
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
            let (log, rec) = open(&dir);
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
            let (log, _) = open(&dir);
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
            let (log, _) = open(&dir);
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
    fn group_commit_notifies_and_batches() {
        let dir = tempdir("group");
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = Arc::clone(&seen);
        let (log, _) = Log::open(
            &dir,
            DEFAULT_WRITERS,
            Box::new(move |lsn| {
                seen2.fetch_max(lsn, Ordering::SeqCst);
            }),
        )
        .expect("open");
        let log = Arc::new(log);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        let lsn = log.append(&(t * 1000 + i).to_le_bytes());
                        log.wait_durable(lsn).expect("durable");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(log.durable(), 400);
        drop(log); // joins the commit thread, so the last notify has run
        assert_eq!(seen.load(Ordering::SeqCst), 400);
        let (_log, rec) = open(&dir);
        assert_eq!(rec.records.len(), 400);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshots_interleaved_with_growing_segments() {
        for writers in [1, 4] {
            interleave(writers);
        }
    }

    fn interleave(writers: usize) {
        let dir = tempdir(&std::format!("interleave{writers}"));
        let total = 3000u64;
        {
            let (log, _) = Log::open(&dir, writers, Box::new(|_| {})).expect("open");
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
