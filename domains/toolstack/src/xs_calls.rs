//! The `xenstore.*` calls of the API (a Windsor extension, XAPI has none):
//! plain reads and writes on the toolstack's store connection, and
//! long-poll watches through a [`WatchHub`] on a connection of its own.
//!
//! # Values
//!
//! XenAPI strings are Unicode. A node whose value is not valid UTF-8 is
//! refused ([`ActionError::XsNotUtf8`]) rather than altered; writes carry
//! the string's UTF-8 bytes.
//!
//! # Watches
//!
//! `xenstore.watch(path, timeout, cursor)` with an empty cursor opens a
//! watcher: one xenstore watch (token `api/<id>`) on the hub's connection.
//! Its events are numbered 1, 2, … and queued; the reply holds the events
//! after the cursor and the next cursor (`<id>:<last seq>`). Passing that
//! cursor back acknowledges what it covers and waits (up to `timeout`) for
//! what follows; passing an older cursor again returns the same events
//! again, so a reply lost on the way loses nothing. As in xenstored, a new
//! watch fires once at once (its own path).
//!
//! Bounds ([`WatchLimits`]): a watcher keeps at most `max_queued` events —
//! one more and it is closed, and its next call answers
//! [`ActionError::XsWatchLost`] (`overflow`), so a client never silently
//! misses a change; a watcher no call has used for `idle` is closed (its
//! next call: `expired`); an owner (an API session) has at most
//! `per_owner` watchers and the hub at most `total`; when the owner's
//! session ends the API closes all its watchers at once
//! ([`WatchHub::drop_owner`], [`Action::XsDropOwner`](crate::action::Action::XsDropOwner));
//! one call at a time
//! waits on a watcher (a second concurrent call answers at once), so the
//! long polls hold at most `total` of the API's call slots (fewer than its
//! `max_concurrent_calls`, 256 by default). The pump thread only
//! appends to these queues under a short lock: a slow or vanished client
//! never blocks it, the store or the toolstack. The toolstack's own
//! connection never carries a watch, so its calls are never disturbed.

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

use windsor_xenstore_client::wire::error_name;
use windsor_xenstore_client::{ClientError, TxId, XenStore};

use crate::action::{ActionError, ActionResult, Reply, XsWatchBatch};

/// Bounds of the watch hub (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchLimits {
    /// Events a watcher may hold unacknowledged.
    pub max_queued: usize,
    /// A watcher unused this long is closed.
    pub idle: Duration,
    /// Watchers per owner (API session).
    pub per_owner: usize,
    /// Watchers in all.
    pub total: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            max_queued: 1024,
            idle: Duration::from_secs(120),
            per_owner: 16,
            total: 128,
        }
    }
}

/// Why a watcher is gone (the reason of [`ActionError::XsWatchLost`]).
pub const LOST_OVERFLOW: &str = "overflow";
/// The watcher expired or never existed (or belongs to another owner).
pub const LOST_UNKNOWN: &str = "unknown";
/// The hub's store connection is gone.
pub const LOST_CLOSED: &str = "closed";

/// How often the pump wakes to close idle watchers and see `stop`.
const TICK: Duration = Duration::from_millis(500);

/// A xenstore call failed: the typed error, naming the path.
pub fn store_error(e: ClientError, path: &str) -> ActionError {
    match e {
        ClientError::Store(errno) => ActionError::XenStore {
            error: error_name(errno),
            path: path.to_string(),
        },
        other => ActionError::internal(format!("xenstore: {other}")),
    }
}

/// `xenstore.read`: the value as a string.
pub fn read(xs: &impl XenStore, path: &str) -> ActionResult {
    let v = xs
        .read(TxId::NONE, path)
        .map_err(|e| store_error(e, path))?;
    String::from_utf8(v)
        .map(Reply::Str)
        .map_err(|_| ActionError::XsNotUtf8 {
            path: path.to_string(),
        })
}

/// `xenstore.write`.
pub fn write(xs: &impl XenStore, path: &str, value: &str) -> ActionResult {
    xs.write(TxId::NONE, path, value.as_bytes())
        .map_err(|e| store_error(e, path))?;
    Ok(Reply::Unit)
}

/// `xenstore.directory`: the children's names.
pub fn directory(xs: &impl XenStore, path: &str) -> ActionResult {
    xs.directory(TxId::NONE, path)
        .map(Reply::Strings)
        .map_err(|e| store_error(e, path))
}

/// `xenstore.rm`.
pub fn rm(xs: &impl XenStore, path: &str) -> ActionResult {
    xs.rm(TxId::NONE, path).map_err(|e| store_error(e, path))?;
    Ok(Reply::Unit)
}

struct Watcher {
    owner: String,
    path: String,
    /// Unacknowledged events: (seq, path).
    queue: VecDeque<(u64, String)>,
    /// Seq of the newest event queued.
    last_seq: u64,
    overflowed: bool,
    last_used: Instant,
    /// Calls waiting on it now (it is not idle while > 0).
    waiting: usize,
}

#[derive(Default)]
struct HubState {
    watchers: HashMap<u64, Watcher>,
    next_id: u64,
    closed: bool,
}

struct Shared {
    conn: Box<dyn XenStore + Send + Sync>,
    st: Mutex<HubState>,
    cond: Condvar,
    stop: AtomicBool,
    limits: WatchLimits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Long-poll watches for API clients, on a store connection of their own
/// (see the module doc). Dropping the hub stops its pump thread (within a
/// tick) and closes every watcher.
pub struct WatchHub {
    shared: Arc<Shared>,
    pump: Option<JoinHandle<()>>,
}

fn token(id: u64) -> String {
    format!("api/{id}")
}

fn cursor(id: u64, seq: u64) -> String {
    format!("{id}:{seq}")
}

fn parse_cursor(c: &str) -> Option<(u64, u64)> {
    let (a, b) = c.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl WatchHub {
    /// A hub on `conn`, a store connection used for nothing else.
    pub fn new(
        conn: impl XenStore + Send + Sync + 'static,
        limits: WatchLimits,
    ) -> std::io::Result<WatchHub> {
        let shared = Arc::new(Shared {
            conn: Box::new(conn),
            st: Mutex::new(HubState {
                next_id: 1,
                ..HubState::default()
            }),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            limits,
        });
        let s = shared.clone();
        let pump = std::thread::Builder::new()
            .name("xenstore-api-watch".into())
            .spawn(move || pump(&s))?;
        Ok(WatchHub {
            shared,
            pump: Some(pump),
        })
    }

    /// Open watchers.
    pub fn watchers(&self) -> usize {
        self.shared.lock().watchers.len()
    }

    /// `xenstore.watch(path, timeout, cursor)` for `owner`.
    pub fn watch(
        &self,
        owner: &str,
        path: &str,
        cursor_in: &str,
        timeout: Duration,
    ) -> ActionResult {
        let sh = &self.shared;
        let (id, after) = if cursor_in.is_empty() {
            (self.open(owner, path)?, 0)
        } else {
            parse_cursor(cursor_in).ok_or_else(|| ActionError::ValueNotSupported {
                field: "cursor".into(),
                value: cursor_in.into(),
                reason: "not a cursor returned by xenstore.watch".into(),
            })?
        };
        let lost = |reason: &'static str| ActionError::XsWatchLost {
            cursor: cursor_in.to_string(),
            reason,
        };
        let mut deadline = Instant::now() + timeout;
        let mut st = sh.lock();
        {
            let closed = st.closed;
            let w = match st.watchers.get_mut(&id) {
                Some(w) if w.owner == owner => w,
                _ if closed => return Err(lost(LOST_CLOSED)),
                _ => return Err(lost(LOST_UNKNOWN)),
            };
            if w.path != path {
                return Err(ActionError::ValueNotSupported {
                    field: "path".into(),
                    value: path.into(),
                    reason: format!("the cursor belongs to a watch on {}", w.path),
                });
            }
            if after > w.last_seq {
                return Err(ActionError::ValueNotSupported {
                    field: "cursor".into(),
                    value: cursor_in.into(),
                    reason: "newer than any event of the watch".into(),
                });
            }
            // The cursor acknowledges every event up to `after`.
            while w.queue.front().is_some_and(|(s, _)| *s <= after) {
                w.queue.pop_front();
            }
            if w.waiting > 0 {
                // One call waits per watcher: the others answer at once,
                // so waiting calls stay at most `total`.
                deadline = Instant::now();
            }
            w.waiting += 1;
            w.last_used = Instant::now();
        }
        loop {
            let closed = st.closed;
            let w = st.watchers.get_mut(&id);
            let Some(w) = w else {
                // Closed while waiting: the hub stopped, or the watcher
                // was unwatched or its owner dropped.
                return Err(lost(if closed { LOST_CLOSED } else { LOST_UNKNOWN }));
            };
            if w.overflowed {
                let path = w.path.clone();
                st.watchers.remove(&id);
                drop(st);
                let _ = sh.conn.unwatch(&path, &token(id));
                return Err(lost(LOST_OVERFLOW));
            }
            let now = Instant::now();
            if !w.queue.is_empty() || now >= deadline || closed {
                w.waiting -= 1;
                w.last_used = now;
                let events: Vec<String> = w.queue.iter().map(|(_, p)| p.clone()).collect();
                let last = w.queue.back().map_or(after, |(s, _)| *s);
                return Ok(Reply::XsWatch(XsWatchBatch {
                    events,
                    cursor: cursor(id, last),
                }));
            }
            st = sh
                .cond
                .wait_timeout(st, (deadline - now).min(TICK))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// `xenstore.unwatch(cursor)` for `owner`: closes the watcher.
    pub fn unwatch(&self, owner: &str, cursor_in: &str) -> ActionResult {
        let lost = |reason| ActionError::XsWatchLost {
            cursor: cursor_in.to_string(),
            reason,
        };
        let (id, _) = parse_cursor(cursor_in).ok_or_else(|| lost(LOST_UNKNOWN))?;
        let mut st = self.shared.lock();
        match st.watchers.get(&id) {
            Some(w) if w.owner == owner => {
                let path = w.path.clone();
                st.watchers.remove(&id);
                self.shared.cond.notify_all();
                drop(st);
                let _ = self.shared.conn.unwatch(&path, &token(id));
                Ok(Reply::Unit)
            }
            _ => Err(lost(LOST_UNKNOWN)),
        }
    }

    /// Closes every watcher of `owner` (its API session ended): their
    /// queues and their slots in the per-owner and total bounds are freed
    /// at once, their store watches removed, and a call waiting on one
    /// answers [`ActionError::XsWatchLost`] (`unknown`), as any later call
    /// with their cursors does. Returns how many were closed.
    pub fn drop_owner(&self, owner: &str) -> usize {
        let gone: Vec<(u64, String)> = {
            let mut st = self.shared.lock();
            let ids: Vec<u64> = st
                .watchers
                .iter()
                .filter(|(_, w)| w.owner == owner)
                .map(|(id, _)| *id)
                .collect();
            let gone: Vec<(u64, String)> = ids
                .into_iter()
                .filter_map(|id| st.watchers.remove(&id).map(|w| (id, w.path)))
                .collect();
            if !gone.is_empty() {
                self.shared.cond.notify_all();
            }
            gone
        };
        for (id, path) in &gone {
            tracing::debug!(id, %path, "xenstore API watch closed: its session ended");
            let _ = self.shared.conn.unwatch(path, &token(*id));
        }
        gone.len()
    }

    fn open(&self, owner: &str, path: &str) -> Result<u64, ActionError> {
        let sh = &self.shared;
        let lim = sh.limits;
        let id = {
            let mut st = sh.lock();
            if st.closed {
                return Err(ActionError::internal(
                    "xenstore watches: the store connection is gone",
                ));
            }
            let mine = st.watchers.values().filter(|w| w.owner == owner).count();
            if mine >= lim.per_owner || st.watchers.len() >= lim.total {
                return Err(ActionError::XsTooManyWatches {
                    limit: if mine >= lim.per_owner {
                        lim.per_owner
                    } else {
                        lim.total
                    },
                });
            }
            let id = st.next_id;
            st.next_id += 1;
            // In the table before the store watch exists, so the first
            // firing finds it.
            st.watchers.insert(
                id,
                Watcher {
                    owner: owner.to_string(),
                    path: path.to_string(),
                    queue: VecDeque::new(),
                    last_seq: 0,
                    overflowed: false,
                    last_used: Instant::now(),
                    waiting: 0,
                },
            );
            id
        };
        if let Err(e) = sh.conn.watch(path, &token(id)) {
            sh.lock().watchers.remove(&id);
            return Err(store_error(e, path));
        }
        Ok(id)
    }
}

impl WatchHub {
    /// Asks the pump to stop (it ends within its tick; `drop` joins it).
    /// After this, losing the store connection is expected, not an error.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.cond.notify_all();
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(h) = self.pump.take() {
            let _ = h.join();
        }
    }
}

fn pump(sh: &Shared) {
    loop {
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
        match sh.conn.next_event(Some(TICK)) {
            Ok(ev) => {
                let id = ev
                    .token
                    .strip_prefix("api/")
                    .and_then(|s| s.parse::<u64>().ok());
                let mut st = sh.lock();
                if let Some(w) = id.and_then(|id| st.watchers.get_mut(&id)) {
                    if w.overflowed {
                        continue;
                    }
                    if w.queue.len() >= sh.limits.max_queued {
                        w.overflowed = true;
                        w.queue = VecDeque::new();
                    } else {
                        w.last_seq += 1;
                        w.queue.push_back((w.last_seq, ev.path));
                    }
                    sh.cond.notify_all();
                }
            }
            Err(ClientError::Timeout) => {}
            Err(e) => {
                if sh.stop.load(Ordering::Acquire) {
                    tracing::debug!(error = %e, "xenstore API watches: connection closed at stop");
                } else {
                    tracing::warn!(error = %e, "xenstore API watches: connection lost");
                }
                break;
            }
        }
        expire(sh);
    }
    let mut st = sh.lock();
    st.closed = true;
    st.watchers.clear();
    sh.cond.notify_all();
}

/// Closes watchers unused for `idle`.
fn expire(sh: &Shared) {
    let now = Instant::now();
    let gone: Vec<(u64, String)> = {
        let mut st = sh.lock();
        let ids: Vec<u64> = st
            .watchers
            .iter()
            .filter(|(_, w)| {
                w.waiting == 0 && now.saturating_duration_since(w.last_used) >= sh.limits.idle
            })
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| st.watchers.remove(&id).map(|w| (id, w.path)))
            .collect()
    };
    for (id, path) in gone {
        tracing::debug!(id, %path, "xenstore API watch expired");
        let _ = sh.conn.unwatch(&path, &token(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localstore::LocalStore;
    use std::vec;
    use xen::DomId;

    fn hub(limits: WatchLimits) -> (LocalStore, WatchHub) {
        let s = LocalStore::new();
        let h = WatchHub::new(s.connect(DomId::DOM0), limits).unwrap();
        (s, h)
    }

    fn batch(r: ActionResult) -> XsWatchBatch {
        match r.unwrap() {
            Reply::XsWatch(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drop_owner_frees_slots_and_wakes_waiters() {
        let lim = WatchLimits {
            max_queued: 8,
            idle: Duration::from_secs(60),
            per_owner: 2,
            total: 3,
        };
        let (s, h) = hub(lim);
        let z = Duration::ZERO;
        let a = batch(h.watch("o", "/a", "", Duration::from_secs(5))).cursor;
        batch(h.watch("o", "/b", "", z));
        let p = batch(h.watch("p", "/p", "", Duration::from_secs(5))).cursor;
        assert!(h.watch("q", "/q", "", z).is_err(), "full");
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| h.watch("o", "/a", &a, Duration::from_secs(20)));
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(h.drop_owner("o"), 2);
            assert!(matches!(
                waiter.join().unwrap(),
                Err(ActionError::XsWatchLost {
                    reason: LOST_UNKNOWN,
                    ..
                })
            ));
        });
        assert_eq!(h.watchers(), 1);
        assert_eq!(h.drop_owner("o"), 0);
        assert!(matches!(
            h.watch("o", "/a", &a, z),
            Err(ActionError::XsWatchLost {
                reason: LOST_UNKNOWN,
                ..
            })
        ));
        batch(h.watch("q", "/q1", "", z));
        batch(h.watch("q", "/q2", "", z));
        // The other owner's watcher still gets its events.
        s.write(TxId::NONE, "/p/x", b"1").unwrap();
        let ev = batch(h.watch("p", "/p", &p, Duration::from_secs(5))).events;
        assert_eq!(ev, ["/p/x"]);
    }

    #[test]
    fn plain_calls_and_errors() {
        let s = LocalStore::new();
        assert_eq!(write(&s, "/a/b", "v").unwrap(), Reply::Unit);
        assert_eq!(read(&s, "/a/b").unwrap(), Reply::Str("v".into()));
        assert_eq!(
            directory(&s, "/a").unwrap(),
            Reply::Strings(vec!["b".into()])
        );
        assert_eq!(
            read(&s, "/nope").unwrap_err(),
            ActionError::XenStore {
                error: "ENOENT",
                path: "/nope".into()
            }
        );
        s.write(TxId::NONE, "/bin", &[0xff, 0xfe]).unwrap();
        assert_eq!(
            read(&s, "/bin").unwrap_err(),
            ActionError::XsNotUtf8 {
                path: "/bin".into()
            }
        );
        rm(&s, "/a").unwrap();
        assert!(read(&s, "/a/b").is_err());
    }

    #[test]
    fn cursor_loses_nothing_and_replays() {
        let (s, h) = hub(WatchLimits::default());
        let t = Duration::from_secs(5);
        let b = batch(h.watch("o", "/w", "", t));
        assert_eq!(b.events, vec!["/w".to_string()], "the first firing");
        s.write(TxId::NONE, "/w/x", b"1").unwrap();
        s.write(TxId::NONE, "/w/y", b"2").unwrap();
        // Between calls the events wait; replaying the old cursor gives
        // the same events again.
        let mut got = Vec::new();
        let mut c = b.cursor.clone();
        while got.len() < 2 {
            let b2 = batch(h.watch("o", "/w", &c, t));
            let again = batch(h.watch("o", "/w", &c, t));
            assert_eq!(b2, again, "an unacknowledged cursor replays");
            got.extend(b2.events);
            c = b2.cursor;
        }
        assert_eq!(got, vec!["/w/x".to_string(), "/w/y".to_string()]);
        let empty = batch(h.watch("o", "/w", &c, Duration::from_millis(50)));
        assert!(empty.events.is_empty());
        assert_eq!(empty.cursor, c);
        // Another owner cannot use it.
        assert!(matches!(
            h.watch("p", "/w", &c, t),
            Err(ActionError::XsWatchLost {
                reason: LOST_UNKNOWN,
                ..
            })
        ));
        // A second concurrent call on a watcher does not wait.
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| batch(h.watch("o", "/w", &c, Duration::from_secs(2))));
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            let b = batch(h.watch("o", "/w", &c, Duration::from_secs(2)));
            assert!(b.events.is_empty());
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            s.write(TxId::NONE, "/w/z", b"3").unwrap();
            assert_eq!(waiter.join().unwrap().events, vec!["/w/z".to_string()]);
        });
        h.unwatch("o", &c).unwrap();
        assert_eq!(h.watchers(), 0);
    }

    #[test]
    fn bounds() {
        let lim = WatchLimits {
            max_queued: 3,
            idle: Duration::from_millis(300),
            per_owner: 2,
            total: 3,
        };
        let (s, h) = hub(lim);
        let z = Duration::ZERO;
        let a = batch(h.watch("o", "/a", "", z)).cursor;
        batch(h.watch("o", "/b", "", z));
        assert_eq!(
            h.watch("o", "/c", "", z).unwrap_err(),
            ActionError::XsTooManyWatches { limit: 2 }
        );
        batch(h.watch("p", "/c", "", z));
        assert_eq!(
            h.watch("q", "/d", "", z).unwrap_err(),
            ActionError::XsTooManyWatches { limit: 3 }
        );
        // Overflow: more unacknowledged events than the queue holds.
        for i in 0..6 {
            s.write(TxId::NONE, &format!("/a/{i}"), b"x").unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(
            h.watch("o", "/a", &a, z),
            Err(ActionError::XsWatchLost {
                reason: LOST_OVERFLOW,
                ..
            })
        ));
        // Idle watchers expire.
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.watchers() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(h.watchers(), 0, "idle watchers are closed");
        batch(h.watch("q", "/d", "", z));
    }
}
