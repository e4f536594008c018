//! The client side of xenstore: the API lives in its own crate,
//! `windsor-xenstore-client` (re-exported here whole, so
//! `windsor_xenstore::client::XenStore` and the rest keep their paths);
//! this module adds [`LocalStore`], the one in-process store client: a
//! host's xenstore on the real store core, connections acting for a
//! domain, and a xenbus ring server sharing it (`std` or `test-utils`).
//!
//! [`LocalStore`] is what host mode runs (the toolstack's connection, the
//! guests' direct connections, and the xenstore domain's ring loop,
//! [`LocalStore::serve_rings`]) and what other crates' tests run against
//! ([`MemStore`] is its old name). Each connection sleeps on its own
//! condition variable, so a write wakes only the connections that got a
//! watch event — with a thousand guests parked in `next_event`, one
//! shared condition variable would wake all of them on every call. With
//! a ring server attached ([`LocalStore::attach_ring_server`]), output of
//! ring connections is left in the store for the server, and
//! `XS_INTRODUCE`/`XS_RELEASE` effects are handed to it; an introduction
//! returns once the server has mapped the guest's ring and bound its port.

pub use windsor_xenstore_client::*;

#[cfg(any(feature = "std", feature = "test-utils"))]
pub use local::LocalStore;

/// The old name of [`LocalStore`] (tests of other crates use it).
#[cfg(any(feature = "std", feature = "test-utils"))]
pub type MemStore = LocalStore;

#[cfg(any(feature = "std", feature = "test-utils"))]
mod local {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    use xen::{DomId, Errno, EvtchnPort};

    use super::{ops, Call, ClientError, Result, TxId, WatchEvent, XenStore};
    use crate::store::{Config, ConnId, Effect, Store};
    use crate::wire::{error_from_name, Header, Packet, XsOp};
    use crate::xenbus::XenbusServer;

    #[derive(Default)]
    struct ConnQ {
        events: VecDeque<WatchEvent>,
        wake: Arc<Condvar>,
    }

    /// The link to a xenbus ring server sharing the store (see
    /// [`LocalStore::serve_rings`]).
    struct RingLink {
        /// Wakes the server thread.
        kick: Arc<dyn Fn() + Send + Sync>,
        /// Introduce/Release effects for the server to carry out.
        pending: Vec<Effect>,
        /// Effects handed over so far.
        queued: u64,
        /// Effects the server has carried out so far.
        applied: u64,
    }

    struct Inner {
        store: Store,
        conns: HashMap<ConnId, ConnQ>,
        req: u32,
        ring: Option<RingLink>,
        /// `queued` after the newest `XS_INTRODUCE`.
        last_introduce: u64,
    }

    impl Inner {
        /// Moves queued output of our own connections into their queues and
        /// wakes them; output of ring connections stays in the store for the
        /// ring server. Returns whether a ring connection has output.
        fn dispatch(&mut self, reply_to: Option<(ConnId, u32)>) -> (Option<Packet>, bool) {
            let mut reply = None;
            let mut ring_output = false;
            let Inner { store, conns, .. } = self;
            for c in store.take_ready() {
                let Some(q) = conns.get_mut(&c) else {
                    ring_output = true;
                    continue;
                };
                let mut woke = false;
                while let Some(p) = store.pop(c) {
                    if p.op() == Some(XsOp::WatchEvent) {
                        q.events.push_back(ops::watch_event(&p.payload));
                        woke = true;
                    } else if reply_to.is_some_and(|(rc, req)| rc == c && p.header.req_id == req) {
                        reply = Some(p);
                    }
                }
                if woke {
                    q.wake.notify_all();
                }
            }
            (reply, ring_output)
        }

        /// Wakes our connections that a release dropped.
        fn released(&mut self, e: &Effect) {
            if let Effect::Release { conns: gone, .. } = e {
                for c in gone {
                    if let Some(q) = self.conns.remove(c) {
                        q.wake.notify_all();
                    }
                }
            }
        }
    }

    struct Shared {
        inner: Mutex<Inner>,
        ops: AtomicU64,
        /// Signalled when the ring server has carried out effects.
        applied: Condvar,
    }

    /// A connection to the in-process store of a host, acting for one domain.
    /// Clones share the connection.
    #[derive(Clone)]
    pub struct LocalStore {
        shared: Arc<Shared>,
        conn: ConnId,
        domid: DomId,
        wake: Arc<Condvar>,
        conn_ops: Arc<AtomicU64>,
    }

    impl core::fmt::Debug for LocalStore {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("LocalStore")
                .field("conn", &self.conn)
                .field("domid", &self.domid)
                .finish()
        }
    }

    impl Default for LocalStore {
        fn default() -> Self {
            Self::new()
        }
    }

    impl LocalStore {
        /// A fresh store (random hash seed) and a dom0 connection to it.
        pub fn new() -> Self {
            use std::hash::BuildHasher;
            let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
            Self::with_config(Config {
                hash_seed: seed,
                ..Config::default()
            })
        }

        /// A fresh store with `cfg` and a dom0 connection to it.
        pub fn with_config(cfg: Config) -> Self {
            let store = Store::new(cfg);
            let shared = Arc::new(Shared {
                inner: Mutex::new(Inner {
                    store,
                    conns: HashMap::new(),
                    req: 0,
                    ring: None,
                    last_introduce: 0,
                }),
                ops: AtomicU64::new(0),
                applied: Condvar::new(),
            });
            Self::open(&shared, DomId::DOM0)
        }

        fn open(shared: &Arc<Shared>, domid: DomId) -> Self {
            let mut g = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
            let conn = g.store.connect(domid);
            let q = ConnQ::default();
            let wake = q.wake.clone();
            g.conns.insert(conn, q);
            LocalStore {
                shared: shared.clone(),
                conn,
                domid,
                wake,
                conn_ops: Arc::new(AtomicU64::new(0)),
            }
        }

        /// A new connection of domain `domid` to the same store.
        pub fn connect(&self, domid: DomId) -> LocalStore {
            Self::open(&self.shared, domid)
        }

        /// The domain this connection acts for.
        pub fn domid(&self) -> DomId {
            self.domid
        }

        /// Requests served by the store so far, over all connections.
        pub fn ops(&self) -> u64 {
            self.shared.ops.load(Ordering::Relaxed)
        }

        /// Requests sent on this connection (and its clones) so far.
        pub fn conn_ops(&self) -> u64 {
            self.conn_ops.load(Ordering::Relaxed)
        }

        /// Open connections (for leak checks).
        pub fn connections(&self) -> usize {
            self.lock().store.stats().conns
        }

        /// Direct access to the store core (tests, persistence).
        pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
            f(&mut self.lock().store)
        }

        /// Closes this connection (its watches and transactions go).
        pub fn close(&self) {
            let mut g = self.lock();
            g.store.disconnect(self.conn);
            g.conns.remove(&self.conn);
            self.wake.notify_all();
        }

        fn lock(&self) -> MutexGuard<'_, Inner> {
            self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
            self.shared.ops.fetch_add(1, Ordering::Relaxed);
            self.conn_ops.fetch_add(1, Ordering::Relaxed);
            let mut g = self.lock();
            g.req = g.req.wrapping_add(1);
            let req = g.req;
            let len = u32::try_from(payload.len()).map_err(|_| ClientError::Protocol)?;
            let h = Header::new(op, req, tx.0, len);
            g.store
                .handle(self.conn, &h, payload)
                .map_err(|_| ClientError::Disconnected)?;
            let (reply, ring_output) = g.dispatch(Some((self.conn, req)));
            let mut kick = ring_output;
            let effects = g.store.take_effects();
            for e in effects {
                g.released(&e);
                let introduce = matches!(e, Effect::Introduce { .. });
                if let Some(link) = g.ring.as_mut() {
                    link.pending.push(e);
                    link.queued += 1;
                    let q = link.queued;
                    kick = true;
                    if introduce {
                        g.last_introduce = q;
                    }
                }
            }
            let kicker = if kick {
                g.ring.as_ref().map(|l| l.kick.clone())
            } else {
                None
            };
            drop(g);
            if let Some(k) = kicker {
                k();
            }
            let p = reply.ok_or(ClientError::Protocol)?;
            if p.op() == Some(XsOp::Error) {
                return Err(ClientError::Store(
                    error_from_name(&p.payload).unwrap_or(Errno::EINVAL),
                ));
            }
            Ok(p.payload)
        }

        /// Shares this store with a xenbus ring server: from now on, output for
        /// connections that are not this store's own stays in the store, and
        /// `XS_INTRODUCE`/`XS_RELEASE` effects are handed to the server, which
        /// must run [`serve_rings`](Self::serve_rings). `kick` wakes it (a
        /// notification of its kick port).
        pub fn attach_ring_server(&self, kick: impl Fn() + Send + Sync + 'static) {
            self.lock().ring = Some(RingLink {
                kick: Arc::new(kick),
                pending: Vec::new(),
                queued: 0,
                applied: 0,
            });
        }

        /// The ring server's loop (on its own thread, in the xenstore domain):
        /// serves guests' rings against this store until `stop`, carrying out
        /// the effects handed over by [`attach_ring_server`](Self::attach_ring_server)
        /// and delivering watch events that guests' requests queue for this
        /// store's own connections.
        pub fn serve_rings<D>(&self, srv: &mut XenbusServer<D>, stop: &AtomicBool, idle: Duration)
        where
            D: core::ops::Deref,
            D::Target: xen::platform::Platform,
        {
            while !stop.load(Ordering::Acquire) {
                let more = {
                    let mut g = self.lock();
                    let mut effects = g
                        .ring
                        .as_mut()
                        .map(|l| core::mem::take(&mut l.pending))
                        .unwrap_or_default();
                    let handed = effects.len() as u64;
                    // Introductions first, so a new guest's first request is
                    // served in this round.
                    for e in &effects {
                        if let Err(err) = srv.apply(&mut g.store, e) {
                            tracing::warn!(error = %err, "xenbus: effect not applied");
                        }
                    }
                    let more = srv.poll(&mut g.store).more;
                    effects = g.store.take_effects();
                    for e in &effects {
                        g.released(e);
                        if let Err(err) = srv.apply(&mut g.store, e) {
                            tracing::warn!(error = %err, "xenbus: effect not applied");
                        }
                    }
                    g.dispatch(None);
                    if let Some(l) = g.ring.as_mut() {
                        l.applied += handed;
                    }
                    more
                };
                self.shared.applied.notify_all();
                if !more {
                    if let Err(e) = srv.wait(Some(idle)) {
                        tracing::error!(error = %e, "xenbus: ring server stops");
                        return;
                    }
                }
            }
        }

        /// `XS_INTRODUCE(dom, gfn, port)` (dom0 only); returns once the ring
        /// server (if one is attached) has mapped the ring and bound the port,
        /// so the guest's first request is never lost.
        pub fn introduce(&self, dom: DomId, gfn: u64, port: EvtchnPort) -> Result<()> {
            ops::introduce(self, dom, gfn, port)?;
            self.wait_introduced()
        }

        /// `XS_RELEASE(dom)` (dom0 only); releasing an unknown domain is not
        /// an error. The domain's connections are disconnected: their blocked
        /// `next_event` returns [`ClientError::Disconnected`].
        pub fn release(&self, dom: DomId) -> Result<()> {
            match ops::release(self, dom) {
                Ok(_) | Err(ClientError::Store(Errno::ENOENT)) => Ok(()),
                Err(e) => Err(e),
            }
        }

        /// Waits until the ring server has carried out the newest
        /// introduction (so the guest's ring is served before it runs).
        fn wait_introduced(&self) -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut g = self.lock();
            loop {
                let want = g.last_introduce;
                match g.ring.as_ref() {
                    None => return Ok(()),
                    Some(l) if l.applied >= want => return Ok(()),
                    Some(_) => {}
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(ClientError::Timeout);
                }
                g = self
                    .shared
                    .applied
                    .wait_timeout(g, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    impl Call for LocalStore {
        fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
            LocalStore::call(self, op, tx, payload)
        }
    }

    impl XenStore for LocalStore {
        crate::xenstore_via_call!();

        fn next_event(&self, timeout: Option<Duration>) -> Result<WatchEvent> {
            let deadline = timeout.map(|t| Instant::now() + t);
            let mut g = self.lock();
            loop {
                match g.conns.get_mut(&self.conn) {
                    None => return Err(ClientError::Disconnected),
                    Some(q) => {
                        if let Some(e) = q.events.pop_front() {
                            return Ok(e);
                        }
                    }
                }
                if g.store.domid(self.conn).is_none() {
                    return Err(ClientError::Disconnected);
                }
                g = match deadline {
                    None => self.wake.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(ClientError::Timeout);
                        }
                        self.wake
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::client::MemStore;
        use crate::client::{Access, Perm};

        #[test]
        fn basic_calls() {
            let s = MemStore::new();
            let t = TxId::NONE;
            s.write(t, "/a/b", b"1").unwrap();
            assert_eq!(s.read(t, "/a/b").unwrap(), b"1");
            assert_eq!(s.directory(t, "/a").unwrap(), ["b"]);
            assert_eq!(s.read(t, "/zz"), Err(ClientError::Store(Errno::ENOENT)));
            s.set_perms(
                t,
                "/a/b",
                &[
                    Perm {
                        dom: DomId(0),
                        access: Access::None,
                    },
                    Perm {
                        dom: DomId(3),
                        access: Access::Read,
                    },
                ],
            )
            .unwrap();
            assert_eq!(s.get_perms(t, "/a/b").unwrap().len(), 2);
            let g = s.connect(DomId(3));
            assert_eq!(g.read(t, "/a/b").unwrap(), b"1");
            assert_eq!(
                g.write(t, "/a/b", b"x"),
                Err(ClientError::Store(Errno::EACCES))
            );
            let tx = s.transaction_start().unwrap();
            s.write(tx, "/a/c", b"2").unwrap();
            s.transaction_end(tx, true).unwrap();
            assert_eq!(s.read(t, "/a/c").unwrap(), b"2");
            s.mkdir(t, "/m").unwrap();
            s.rm(t, "/m").unwrap();
        }

        #[test]
        fn directory_pages_past_the_payload_limit() {
            let s = MemStore::new();
            let t = TxId::NONE;
            for i in 0..600 {
                s.write(t, &alloc::format!("/d/child-number-{i:04}"), b"")
                    .unwrap();
            }
            // More than 4 KiB of names: XS_DIRECTORY alone says E2BIG.
            assert_eq!(
                crate::client::ops::directory_part(&s, t, "/d")
                    .unwrap()
                    .len(),
                600,
                "paged"
            );
            let names = s.directory(t, "/d").unwrap();
            assert_eq!(names.len(), 600);
            assert_eq!(names[599], "child-number-0599");
            // In a transaction too.
            let tx = s.transaction_start().unwrap();
            assert_eq!(s.directory(tx, "/d").unwrap().len(), 600);
            s.transaction_end(tx, false).unwrap();
            // Small and empty directories.
            s.write(t, "/e", b"").unwrap();
            assert!(s.directory(t, "/e").unwrap().is_empty());
            assert!(crate::client::ops::directory_part(&s, t, "/e")
                .unwrap()
                .is_empty());
            assert_eq!(
                crate::client::ops::directory_part(&s, t, "/a").map(|v| v.len()),
                Err(ClientError::Store(Errno::ENOENT))
            );
        }

        #[test]
        fn in_transaction_commits_retries_and_gives_up() {
            use crate::client::{in_transaction, TRANSACTION_ATTEMPTS};
            let s = MemStore::new();
            let other = s.connect(DomId(0));
            // No conflict: one attempt, committed.
            let mut tries = 0;
            in_transaction(&s, |tx| {
                tries += 1;
                s.write(tx, "/t/a", b"1")
            })
            .unwrap();
            assert_eq!(
                (tries, s.read(TxId::NONE, "/t/a").unwrap()),
                (1, b"1".to_vec())
            );
            // A conflict on the first attempt only: the second commits.
            let mut tries = 0;
            in_transaction(&s, |tx| {
                tries += 1;
                s.read(tx, "/t/a")?;
                if tries == 1 {
                    other.write(TxId::NONE, "/t/a", b"2")?;
                }
                s.write(tx, "/t/b", b"3")
            })
            .unwrap();
            assert_eq!(tries, 2);
            assert_eq!(s.read(TxId::NONE, "/t/b").unwrap(), b"3");
            // A conflict every time: bounded, then EAGAIN.
            let mut tries = 0;
            let r = in_transaction(&s, |tx| {
                tries += 1;
                s.read(tx, "/t/a")?;
                other.write(TxId::NONE, "/t/a", b"x")?;
                s.write(tx, "/t/c", b"4")
            });
            assert_eq!(r, Err(ClientError::Store(Errno::EAGAIN)));
            assert_eq!(tries, TRANSACTION_ATTEMPTS);
            assert!(s.read(TxId::NONE, "/t/c").is_err(), "nothing committed");
            // An error inside aborts: nothing of it is kept.
            let r = in_transaction(&s, |tx| {
                s.write(tx, "/t/d", b"5")?;
                s.read(tx, "/t/missing").map(|_| ())
            });
            assert_eq!(r, Err(ClientError::Store(Errno::ENOENT)));
            assert!(s.read(TxId::NONE, "/t/d").is_err());
        }

        #[test]
        fn watch_events_cross_threads() {
            let s = MemStore::new();
            let w = s.connect(DomId(0));
            w.watch("/x", "tok").unwrap();
            let first = w.next_event(Some(Duration::from_secs(1))).unwrap();
            assert_eq!(first.path, "/x");
            let h = std::thread::spawn(move || w.next_event(Some(Duration::from_secs(5))));
            std::thread::sleep(Duration::from_millis(20));
            s.write(TxId::NONE, "/x/y", b"").unwrap();
            let e = h.join().unwrap().unwrap();
            assert_eq!(
                e,
                WatchEvent {
                    path: "/x/y".into(),
                    token: "tok".into()
                }
            );
            let w2 = s.connect(DomId(0));
            assert_eq!(
                w2.next_event(Some(Duration::from_millis(10))),
                Err(ClientError::Timeout)
            );
        }
    }
}
