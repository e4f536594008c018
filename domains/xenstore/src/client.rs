//! The client side of xenstore: the API lives in its own crate,
//! `windsor-xenstore-client` (re-exported here whole, so
//! `windsor_xenstore::client::XenStore` and the rest keep their paths);
//! this module adds [`MemStore`], an in-memory store on the real store
//! core for other crates' tests (`test-utils` feature).

pub use windsor_xenstore_client::*;

#[cfg(feature = "test-utils")]
pub use mem::MemStore;

/// An in-memory [`XenStore`] on the real store core, for other crates' tests.
#[cfg(feature = "test-utils")]
mod mem {
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::vec::Vec;
    use core::time::Duration;
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    use xen::{DomId, Errno};

    use super::{Call, ClientError, Result, TxId, WatchEvent, XenStore};
    use crate::store::{Config, ConnId, Store};
    use crate::wire::{error_from_name, Header, XsOp};

    struct Shared {
        store: Store,
        events: BTreeMap<ConnId, VecDeque<WatchEvent>>,
        req: u32,
    }

    /// An in-memory xenstore with real semantics (permissions, relative
    /// paths, transactions, watches): [`Store`] behind a mutex.
    ///
    /// `MemStore::new()` is a dom0 client; [`MemStore::connect`] adds a
    /// client of another domain to the same store, so a test can play
    /// toolstack and guest at once. Clones share the connection. Watch
    /// events are delivered through [`XenStore::next_event`], which blocks
    /// (across threads) up to its timeout.
    #[derive(Clone)]
    pub struct MemStore {
        shared: Arc<(Mutex<Shared>, Condvar)>,
        conn: ConnId,
        domid: DomId,
    }

    impl core::fmt::Debug for MemStore {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("MemStore")
                .field("conn", &self.conn)
                .field("domid", &self.domid)
                .finish()
        }
    }

    impl Default for MemStore {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MemStore {
        /// A fresh store and a dom0 client of it.
        pub fn new() -> Self {
            Self::with_config(Config::default())
        }

        /// A fresh store with `cfg` and a dom0 client of it.
        pub fn with_config(cfg: Config) -> Self {
            let mut store = Store::new(cfg);
            let conn = store.connect(DomId::DOM0);
            MemStore {
                shared: Arc::new((
                    Mutex::new(Shared {
                        store,
                        events: BTreeMap::new(),
                        req: 0,
                    }),
                    Condvar::new(),
                )),
                conn,
                domid: DomId::DOM0,
            }
        }

        /// Another client, of domain `domid`, on the same store. (Its
        /// relative paths are under `/local/domain/<domid>`; it is subject
        /// to permissions and quotas like a guest.)
        pub fn connect(&self, domid: DomId) -> MemStore {
            let conn = self.lock().store.connect(domid);
            MemStore {
                shared: self.shared.clone(),
                conn,
                domid,
            }
        }

        /// The domain this client acts as.
        pub fn domid(&self) -> DomId {
            self.domid
        }

        /// Direct access to the store core.
        pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
            f(&mut self.lock().store)
        }

        /// Drops this client's connection (watches, transactions).
        pub fn close(&self) {
            let mut g = self.lock();
            g.store.disconnect(self.conn);
            g.events.remove(&self.conn);
        }

        fn lock(&self) -> MutexGuard<'_, Shared> {
            // A panic in another test thread must not hide this one's result.
            self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
            let mut g = self.lock();
            g.req = g.req.wrapping_add(1);
            let req = g.req;
            let len = u32::try_from(payload.len()).map_err(|_| ClientError::Protocol)?;
            let h = Header::new(op, req, tx.0, len);
            g.store
                .handle(self.conn, &h, payload)
                .map_err(|_| ClientError::Disconnected)?;
            let mut reply = None;
            let Shared { store, events, .. } = &mut *g;
            for c in store.take_ready() {
                while let Some(p) = store.pop(c) {
                    if p.op() == Some(XsOp::WatchEvent) {
                        events
                            .entry(c)
                            .or_default()
                            .push_back(super::ops::watch_event(&p.payload));
                    } else if c == self.conn && p.header.req_id == req {
                        reply = Some(p);
                    }
                }
            }
            drop(g);
            self.shared.1.notify_all();
            let p = reply.ok_or(ClientError::Protocol)?;
            if p.op() == Some(XsOp::Error) {
                return Err(ClientError::Store(
                    error_from_name(&p.payload).unwrap_or(Errno::EINVAL),
                ));
            }
            Ok(p.payload)
        }
    }

    impl Call for MemStore {
        fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
            MemStore::call(self, op, tx, payload)
        }
    }

    impl XenStore for MemStore {
        crate::xenstore_via_call!();

        fn next_event(&self, timeout: Option<Duration>) -> Result<WatchEvent> {
            let deadline = timeout.map(|t| std::time::Instant::now() + t);
            let mut g = self.lock();
            loop {
                if let Some(e) = g.events.get_mut(&self.conn).and_then(VecDeque::pop_front) {
                    return Ok(e);
                }
                if g.store.domid(self.conn).is_none() {
                    return Err(ClientError::Disconnected);
                }
                g = match deadline {
                    None => self.shared.1.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = std::time::Instant::now();
                        if now >= d {
                            return Err(ClientError::Timeout);
                        }
                        self.shared
                            .1
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
