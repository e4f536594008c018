//! [`LocalStore`]: the host's xenstore, in process, on the real store
//! core, with one wake-up per connection.
//!
//! The toolstack (dom0) talks to the shared [`Store`] through a
//! `LocalStore` connection acting for its domid: permissions, quotas and
//! relative paths apply as over a ring. Guests reach the same store over
//! their xenbus rings when a ring server is attached
//! ([`attach_ring_server`](LocalStore::attach_ring_server) +
//! [`serve_rings`](LocalStore::serve_rings), run by the host's xenstore
//! domain), or through their own `LocalStore` connections
//! ([`crate::host::Transport::Direct`]).
//!
//! It differs from `MemStore` (the test double of the xenstore crate) in
//! that each connection sleeps on its own condition variable, so a write
//! wakes only the connections that got a watch event — with a thousand
//! guests parked in `next_event`, `MemStore`'s single condition variable
//! would wake all of them on every call — and in that it shares the store
//! with a ring server: output of ring connections is left in the store for
//! the server, and `XS_INTRODUCE`/`XS_RELEASE` effects are handed to it.
//!
//! It also implements [`Introducer`]: `XS_INTRODUCE` and `XS_RELEASE` on
//! the store core. An introduction returns once the ring server has mapped
//! the guest's ring and bound its port, so the guest's first request is
//! never lost; a release disconnects the domain's connections, whose
//! blocked `next_event` returns [`ClientError::Disconnected`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use std::vec::Vec;

use windsor_xenstore::client::{ops, Call, ClientError, Result, TxId, WatchEvent, XenStore};
use windsor_xenstore::store::{Config, ConnId, Effect, Store};
use windsor_xenstore::wire::{error_from_name, Header, Packet, XsOp};
use windsor_xenstore::xenbus::XenbusServer;
use xen::{DomId, Errno, EvtchnPort, Gfn};

use crate::service::Introducer;

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
    windsor_xenstore::xenstore_via_call!();

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

impl Introducer for LocalStore {
    fn introduce(&self, dom: DomId, gfn: Gfn, port: EvtchnPort) -> Result<()> {
        ops::introduce(self, dom, gfn.0, port)?;
        self.wait_introduced()
    }

    fn release(&self, dom: DomId) -> Result<()> {
        match ops::release(self, dom) {
            Ok(_) | Err(ClientError::Store(Errno::ENOENT)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
