//! The server end: the xenstore domain serving guests' rings.
//!
//! [`XenbusServer`] is generic over the platform (it maps grants and binds
//! event channels through [`xen::platform`] only) and does not own the
//! [`Store`]: every call that touches the store takes `&mut Store`, so the
//! store can live wherever its host wants it (owned by the xenstore
//! domain's loop, or behind a mutex shared with the Unix-socket daemon).
//!
//! Per guest it keeps the grant mapping of the ring page, the bound port,
//! the private ring state ([`RingIo`]), an incremental [`Decoder`], at most
//! one complete request the store could not take yet (outstanding-reply
//! quota: the guest's ring then fills and it waits, as in C xenstored), and
//! at most one reply being written. Memory per guest is therefore bounded by
//! two messages; everything else is the store's, bounded by its quotas.
//!
//! [`XenbusServer::poll`] does bounded work: per guest at most
//! [`ServerConfig::requests_per_poll`] requests and one ring's worth of
//! output. It visits only the guests that need it: those whose port is
//! pending, those with work of their own left from an earlier poll (a
//! backlog, a held request, a half-written reply: the `work` set) and
//! those whose store connection has queued output
//! ([`Store::with_output`]). Pending ports are found in two ways. The
//! guests visited by the previous poll (the ones just sent a reply, most
//! likely to answer) are tested and cleared one by one. The other ports
//! are searched by bisection with zero-timeout [`EventChannel::wait`]s
//! over the port list (each a single scan of a slice, so `k` pending
//! guests out of `n` cost `O(k log n)` calls, not `n`), and only the ports
//! found pending are cleared. The search is skipped when a recent guest
//! was pending, but never for more than [`SEARCH_EVERY`] polls in a row:
//! a port left pending keeps the next `wait` from blocking, so every guest
//! is served within that many polls however busy the others are. With a
//! thousand idle guests a poll therefore costs about what it costs with
//! one. A guest that breaks the ring protocol (inconsistent index,
//! oversized message, unmappable page) is *ignored* as C xenstored's
//! `ignore_connection` does: `error` is set in its page, its store
//! connection (watches, transactions, queued output) is dropped, its
//! mapping and port stay until release. The guest can recover with the
//! `XENSTORE_RECONNECT` handshake, which the server advertises in
//! `server_features` together with the `error` field.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::ops::Deref;
use core::sync::atomic::Ordering::{Acquire, Release};
use core::time::Duration;

use xen::abi::xs_wire::{
    XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX, XENSTORE_RECONNECT, XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
};
use xen::platform::{EventChannel, ForeignMapping, GrantTable, Platform, PortStatus};
use xen::{DomId, EvtchnPort, GrantRef, SharedMem};

use super::ring::{field, RingError, RingIo, Side};
use crate::store::{ConnId, Effect, HandleError, Store};
use crate::wire::{Decoder, Packet, WireError};

/// Why the server could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The guest's ring grant could not be mapped.
    #[error("cannot map the xenstore ring of {domid:?}: {source}")]
    Map {
        /// The guest.
        domid: DomId,
        /// The platform's error.
        source: xen::platform::Error,
    },
    /// The mapping is read-only or smaller than the interface.
    #[error("the xenstore ring of {0:?} is read-only or too small")]
    BadMapping(DomId),
    /// The guest's port could not be bound.
    #[error("cannot bind port {port} of {domid:?}: {source}")]
    Bind {
        /// The guest.
        domid: DomId,
        /// The guest's unbound port.
        port: EvtchnPort,
        /// The platform's error.
        source: xen::platform::Error,
    },
    /// An event channel operation of our own failed.
    #[error("event channel: {0}")]
    EventChannel(xen::platform::Error),
    /// [`ServerConfig::max_domains`] guests are served already.
    #[error("too many domains ({0})")]
    TooManyDomains(usize),
    /// The id is not one an ordinary domain can have.
    #[error("domain id {0:?} cannot have a xenstore ring")]
    BadDomain(DomId),
}

/// Polls that may find their guests among the recently served ones
/// before one searches every port (the bound on how long a pending guest
/// can wait for its turn while others keep the server busy).
pub const SEARCH_EVERY: u32 = 4;

/// Limits of a [`XenbusServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Requests taken from one guest per [`XenbusServer::poll`] (fairness).
    pub requests_per_poll: usize,
    /// Guests served at once.
    pub max_domains: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            requests_per_poll: 8,
            max_domains: 4096,
        }
    }
}

/// What one [`XenbusServer::poll`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests handed to the store.
    pub requests: usize,
    /// Bytes written into response rings.
    pub bytes_out: usize,
    /// Some guest has more input than its budget allowed: poll again
    /// before waiting.
    pub more: bool,
    /// Guests ignored during this poll for breaking the protocol.
    pub ignored: Vec<DomId>,
    /// Guests whose end of the event channel went away (destroyed or
    /// closed): their ring was released here; the toolstack should still
    /// send `XS_RELEASE` so the store forgets them.
    pub gone: Vec<DomId>,
}

/// Why a guest's connection is being dropped.
#[derive(Debug, thiserror::Error)]
enum Fault {
    /// An inconsistent ring index.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// A message that breaks framing (oversized length).
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// The mapping gives no writable view.
    #[error("ring page not writable")]
    NoMapping,
}

impl Fault {
    fn code(&self) -> u32 {
        match self {
            Fault::Wire(_) => XENSTORE_ERROR_PROTO,
            Fault::Ring(_) | Fault::NoMapping => XENSTORE_ERROR_RINGIDX,
        }
    }
}

struct Guest<M> {
    mapping: M,
    io: Io,
}

/// Everything of a guest but its mapping (borrowed separately).
struct Io {
    /// Our local port bound to the guest's.
    port: EvtchnPort,
    /// Where `port` is in the server's port list.
    slot: usize,
    gfn: u64,
    /// The guest's port, as introduced.
    remote: EvtchnPort,
    /// The store connection; `None` while the guest is ignored.
    conn: Option<ConnId>,
    ring: RingIo,
    dec: Decoder,
    /// A whole request the store was too busy to take.
    held: Option<Packet>,
    /// The message being written into `rsp`, and how much of it is out.
    out: Vec<u8>,
    out_at: usize,
    /// The request ring had more than the poll budget allowed.
    backlog: bool,
}

impl Io {
    fn clear_buffers(&mut self) {
        self.dec = Decoder::new();
        self.held = None;
        self.out.clear();
        self.out_at = 0;
        self.backlog = false;
    }

    /// Work of its own, whatever the store and the port say: input left
    /// over the budget, a request the store could not take, a reply half
    /// written.
    fn has_work(&self) -> bool {
        self.backlog || self.held.is_some() || self.out_at < self.out.len()
    }
}

type MappingOf<D> = <<D as Deref>::Target as GrantTable>::Mapping;

/// The xenstore domain's end of every guest's xenbus ring; see the module
/// doc.
///
/// `D` is how the server holds the platform: `&P`, `Arc<P>`, `Box<P>`...
pub struct XenbusServer<D>
where
    D: Deref,
    D::Target: Platform,
{
    plat: D,
    cfg: ServerConfig,
    guests: BTreeMap<DomId, Guest<MappingOf<D>>>,
    /// Every port to wait on: the kick port first, then the guests' (in no
    /// particular order; each guest knows its `slot`).
    ports: Vec<EvtchnPort>,
    /// The guest of each slot of `ports` (slot 0, the kick port's, is
    /// unused).
    slot_dom: Vec<DomId>,
    /// Guests whose [`Io::has_work`] is true.
    work: BTreeSet<DomId>,
    /// Guests visited by the last poll or just introduced: their ports are
    /// tested first.
    recent: BTreeSet<DomId>,
    /// Polls since the last search of every port.
    unsearched: u32,
    /// Loopback pair: notify `kick_tx` to wake `kick_rx`.
    kick_tx: EvtchnPort,
    kick_rx: EvtchnPort,
}

impl<D> core::fmt::Debug for XenbusServer<D>
where
    D: Deref,
    D::Target: Platform,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XenbusServer")
            .field("guests", &self.guests.keys().collect::<Vec<_>>())
            .field("ports", &self.ports)
            .finish()
    }
}

impl<D> XenbusServer<D>
where
    D: Deref,
    D::Target: Platform,
{
    /// A server with no guests. Allocates a loopback event channel (see
    /// [`kick_port`](Self::kick_port)).
    pub fn new(plat: D, cfg: ServerConfig) -> Result<Self, ServerError> {
        let me = plat.domid();
        let kick_tx = plat.alloc_unbound(me).map_err(ServerError::EventChannel)?;
        let kick_rx = match plat.bind_interdomain(me, kick_tx) {
            Ok(p) => p,
            Err(e) => {
                let _ = plat.close(kick_tx);
                return Err(ServerError::EventChannel(e));
            }
        };
        Ok(XenbusServer {
            plat,
            cfg,
            guests: BTreeMap::new(),
            ports: alloc::vec![kick_rx],
            slot_dom: alloc::vec![me],
            work: BTreeSet::new(),
            recent: BTreeSet::new(),
            unsearched: 0,
            kick_tx,
            kick_rx,
        })
    }

    /// The platform handle.
    pub fn platform(&self) -> &D::Target {
        &self.plat
    }

    /// A port of this domain whose notification wakes [`wait`](Self::wait):
    /// whoever else queues output for a ring connection in the store (the
    /// Unix-socket side firing a watch of a guest) calls
    /// `EventChannel::notify(kick_port)` on a handle of the same domain.
    pub fn kick_port(&self) -> EvtchnPort {
        self.kick_tx
    }

    /// The guests served, in id order.
    pub fn domains(&self) -> impl Iterator<Item = DomId> + '_ {
        self.guests.keys().copied()
    }

    /// The store connection of `domid`'s ring (`None` if not served or
    /// ignored).
    pub fn conn(&self, domid: DomId) -> Option<ConnId> {
        self.guests.get(&domid).and_then(|g| g.io.conn)
    }

    /// True if `conn` is the connection of a ring served here (so that a
    /// transport sharing the store leaves its output alone).
    pub fn owns(&self, conn: ConnId) -> bool {
        self.guests.values().any(|g| g.io.conn == Some(conn))
    }

    /// The ring frame given at introduction.
    pub fn gfn(&self, domid: DomId) -> Option<u64> {
        self.guests.get(&domid).map(|g| g.io.gfn)
    }

    /// Our local port for `domid`'s ring.
    pub fn port(&self, domid: DomId) -> Option<EvtchnPort> {
        self.guests.get(&domid).map(|g| g.io.port)
    }

    /// Takes `slot` out of the port list; the guest whose port moves into
    /// it learns its new slot.
    fn free_slot(&mut self, slot: usize) {
        if slot == 0 || slot >= self.ports.len() {
            return;
        }
        self.ports.swap_remove(slot);
        self.slot_dom.swap_remove(slot);
        if let Some(&moved) = self.slot_dom.get(slot) {
            if let Some(g) = self.guests.get_mut(&moved) {
                g.io.slot = slot;
            }
        }
    }

    /// Adds `domid` to the work set if it has work of its own, else takes
    /// it out.
    fn note(work: &mut BTreeSet<DomId>, domid: DomId, io: &Io) {
        if io.has_work() {
            work.insert(domid);
        } else {
            work.remove(&domid);
        }
    }

    /// Guests whose port is pending, with the pending bit cleared: the
    /// recent guests first; then, unless one of them was pending and fewer
    /// than [`SEARCH_EVERY`] polls skipped it, a search of every port.
    fn take_pending(&mut self, out: &mut BTreeSet<DomId>) {
        let mut found = false;
        for d in &self.recent {
            if let Some(g) = self.guests.get(d) {
                // Clear before looking at the ring: an event after this is
                // kept.
                if self.plat.clear_pending(g.io.port).unwrap_or(true) {
                    out.insert(*d);
                    found = true;
                }
            }
        }
        if found && self.unsearched + 1 < SEARCH_EVERY {
            self.unsearched += 1;
            return;
        }
        self.unsearched = 0;
        self.search_pending(out);
    }

    /// Searches every guest port: a zero-timeout `wait` on a range says
    /// whether to look inside it, and ranges of at most two ports are
    /// tested and cleared port by port. If `wait` fails, the whole range is
    /// treated as possibly pending.
    fn search_pending(&self, out: &mut BTreeSet<DomId>) {
        let mut ranges: Vec<(usize, usize)> = alloc::vec![(1, self.ports.len())];
        while let Some((lo, hi)) = ranges.pop() {
            if hi <= lo {
                continue;
            }
            let split = hi - lo > 2
                && match self.plat.wait(&self.ports[lo..hi], Some(Duration::ZERO)) {
                    Ok(false) => continue,
                    Ok(true) => true,
                    Err(_) => false,
                };
            if split {
                let mid = lo + (hi - lo) / 2;
                ranges.push((mid, hi));
                ranges.push((lo, mid));
                continue;
            }
            for i in lo..hi {
                // Clear before looking at the ring: an event after this is
                // kept.
                if self.plat.clear_pending(self.ports[i]).unwrap_or(true) {
                    out.insert(self.slot_dom[i]);
                }
            }
        }
    }

    /// Starts serving `domid` (what `XS_INTRODUCE domid gfn port` asks):
    /// maps its ring (grant [`GrantRef::RESERVED_XENSTORE`], as C
    /// xenstored does with gnttab), binds `remote_port`, resets the ring,
    /// advertises the server features and connects it to the store with
    /// `domid` as identity. A domain already served gets its port rebound
    /// and its ring reset, as in C xenstored.
    pub fn introduce(
        &mut self,
        store: &mut Store,
        domid: DomId,
        gfn: u64,
        remote_port: EvtchnPort,
    ) -> Result<ConnId, ServerError> {
        if !domid.is_ordinary() {
            return Err(ServerError::BadDomain(domid));
        }
        if let Some(g) = self.guests.get_mut(&domid) {
            // As C xenstored: unbind the old port, bind the one given now
            // (the guest's port is unbound again once we close ours).
            let _ = self.plat.close(g.io.port);
            let port = match self.plat.bind_interdomain(domid, remote_port) {
                Ok(p) => p,
                Err(source) => {
                    self.release(store, domid);
                    return Err(ServerError::Bind {
                        domid,
                        port: remote_port,
                        source,
                    });
                }
            };
            g.io.port = port;
            if let Some(p) = self.ports.get_mut(g.io.slot) {
                *p = port;
            }
            g.io.gfn = gfn;
            g.io.remote = remote_port;
            g.io.clear_buffers();
            self.work.remove(&domid);
            self.recent.insert(domid);
            let page = g.mapping.rw().ok_or(ServerError::BadMapping(domid))?;
            g.io.ring
                .reset(page)
                .map_err(|_| ServerError::BadMapping(domid))?;
            let conn = *g.io.conn.get_or_insert_with(|| store.connect(domid));
            let _ = self.plat.notify(port);
            tracing::info!(dom = domid.0, "xenbus: domain re-introduced");
            return Ok(conn);
        }
        if self.guests.len() >= self.cfg.max_domains {
            return Err(ServerError::TooManyDomains(self.guests.len()));
        }
        let mapping = self
            .plat
            .map(domid, &[GrantRef::RESERVED_XENSTORE], false)
            .map_err(|source| ServerError::Map { domid, source })?;
        let mut ring = RingIo::new(Side::Server);
        {
            let page = mapping.rw().ok_or(ServerError::BadMapping(domid))?;
            ring.reset(page)
                .map_err(|_| ServerError::BadMapping(domid))?;
            page.atomic_u32(field::SERVER_FEATURES).store(
                XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR,
                Release,
            );
        }
        let port = self
            .plat
            .bind_interdomain(domid, remote_port)
            .map_err(|source| ServerError::Bind {
                domid,
                port: remote_port,
                source,
            })?;
        let conn = store.connect(domid);
        let slot = self.ports.len();
        self.ports.push(port);
        self.slot_dom.push(domid);
        self.recent.insert(domid);
        self.guests.insert(
            domid,
            Guest {
                mapping,
                io: Io {
                    port,
                    slot,
                    gfn,
                    remote: remote_port,
                    conn: Some(conn),
                    ring,
                    dec: Decoder::new(),
                    held: None,
                    out: Vec::new(),
                    out_at: 0,
                    backlog: false,
                },
            },
        );
        // The guest may have been waiting for the reset (reconnect).
        let _ = self.plat.notify(port);
        tracing::info!(dom = domid.0, ?port, ?conn, "xenbus: domain introduced");
        Ok(conn)
    }

    /// The ring frame and port `domid` was introduced with, if it is served.
    pub fn ring_of(&self, domid: DomId) -> Option<(u64, EvtchnPort)> {
        self.guests.get(&domid).map(|g| (g.io.gfn, g.io.remote))
    }

    /// Stops serving `domid`: drops its store connection, unbinds its port
    /// and unmaps its ring. Returns whether it was served.
    pub fn release(&mut self, store: &mut Store, domid: DomId) -> bool {
        let Some(g) = self.guests.remove(&domid) else {
            return false;
        };
        if let Some(c) = g.io.conn {
            store.disconnect(c);
        }
        let _ = self.plat.close(g.io.port);
        drop(g.mapping);
        self.free_slot(g.io.slot);
        self.work.remove(&domid);
        self.recent.remove(&domid);
        tracing::info!(dom = domid.0, "xenbus: domain released");
        true
    }

    /// Carries out a store [`Effect`] that concerns rings: `Introduce`
    /// maps and connects, `Release` unmaps (the store has already dropped
    /// the connection).
    pub fn apply(&mut self, store: &mut Store, effect: &Effect) -> Result<(), ServerError> {
        match effect {
            Effect::Introduce { domid, gfn, port } => {
                self.introduce(store, *domid, *gfn, EvtchnPort(*port))?;
            }
            Effect::Release { domid, .. } => {
                self.release(store, *domid);
            }
            Effect::Resume { .. } => {}
        }
        Ok(())
    }

    /// Blocks until a guest's port or the kick port is pending, or
    /// `timeout` passes. Returns whether something is pending.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, ServerError> {
        self.plat
            .wait(&self.ports, timeout)
            .map_err(ServerError::EventChannel)
    }

    /// Serves every guest with pending events or work: moves queued output
    /// into response rings, takes up to the budget of requests into the
    /// store, moves their replies out, and notifies each guest at most
    /// once.
    pub fn poll(&mut self, store: &mut Store) -> Progress {
        self.pump(store, true)
    }

    /// The input half of [`poll`](Self::poll): takes requests into the
    /// store and writes nothing, so that a host can make the store's
    /// mutations durable before [`transmit`](Self::transmit) lets their
    /// replies out.
    pub fn receive(&mut self, store: &mut Store) -> Progress {
        self.pump(store, false)
    }

    /// The output half of [`poll`](Self::poll): moves every ring
    /// connection's queued output into its ring (as far as there is room)
    /// and notifies the guests that got some. Reads nothing and leaves
    /// pending events for the next `receive`.
    pub fn transmit(&mut self, store: &mut Store) -> Progress {
        self.transmit_gated(store, &mut |_| true)
    }

    /// [`transmit`](Self::transmit) with a gate: before each packet is
    /// taken from a ring connection's queue in the store, `allow(conn)`
    /// says whether it may go now (e.g. whether the log record it waits
    /// for is durable). A refused packet stays queued, and so does
    /// everything behind it on that connection.
    pub fn transmit_gated(
        &mut self,
        store: &mut Store,
        allow: &mut dyn FnMut(ConnId) -> bool,
    ) -> Progress {
        let mut prog = Progress::default();
        self.flush(store, &mut prog, allow);
        prog
    }

    /// Every port [`wait`](Self::wait) waits on: the kick port's loopback
    /// end first, then the guests' ports. A host that waits for events
    /// elsewhere (another thread) waits on these; the list changes when
    /// guests are introduced or released (the kick port never changes).
    pub fn ports(&self) -> &[EvtchnPort] {
        &self.ports
    }

    fn pump(&mut self, store: &mut Store, tx: bool) -> Progress {
        let mut prog = Progress::default();
        let _ = self.plat.clear_pending(self.kick_rx);
        // Who needs a turn: pending ports, work of their own, and (when we
        // write) queued output in the store.
        let mut due = self.work.clone();
        self.take_pending(&mut due);
        if tx {
            self.output_owners(store, &mut due);
        }
        let mut gone = Vec::new();
        self.recent.clear();
        for domid in due {
            self.recent.insert(domid);
            let Some(g) = self.guests.get_mut(&domid) else {
                continue;
            };
            match serve(&*self.plat, store, &self.cfg, domid, g, tx, &mut prog) {
                Ok(moved) => {
                    // Nothing moved though we were woken or have work: is
                    // the guest still there?
                    if !moved && peer_gone(&*self.plat, g.io.port) {
                        gone.push(domid);
                    }
                }
                Err(f) => {
                    ignore(&*self.plat, store, domid, g, &f);
                    prog.ignored.push(domid);
                }
            }
            Self::note(&mut self.work, domid, &g.io);
        }
        if tx {
            // Requests of later guests may have queued events for earlier ones.
            self.flush(store, &mut prog, &mut |_| true);
        }
        for domid in gone {
            self.recent.remove(&domid);
            tracing::info!(dom = domid.0, "xenbus: peer closed its port");
            self.release(store, domid);
            prog.gone.push(domid);
        }
        prog.more = self
            .work
            .iter()
            .any(|d| self.guests.get(d).is_some_and(|g| g.io.backlog));
        prog
    }

    /// Adds the guests whose store connection has queued output.
    fn output_owners(&self, store: &Store, due: &mut BTreeSet<DomId>) {
        for conn in store.with_output() {
            let Some(domid) = store.domid(conn) else {
                continue;
            };
            if self
                .guests
                .get(&domid)
                .is_some_and(|g| g.io.conn == Some(conn))
            {
                due.insert(domid);
            }
        }
    }

    fn flush(
        &mut self,
        store: &mut Store,
        prog: &mut Progress,
        allow: &mut dyn FnMut(ConnId) -> bool,
    ) {
        // Half-written replies (in `work`) and queued output.
        let mut due: BTreeSet<DomId> = self
            .work
            .iter()
            .copied()
            .filter(|d| {
                self.guests
                    .get(d)
                    .is_some_and(|g| g.io.out_at < g.io.out.len())
            })
            .collect();
        self.output_owners(store, &mut due);
        for domid in due {
            let Some(g) = self.guests.get_mut(&domid) else {
                continue;
            };
            self.recent.insert(domid);
            let Some(conn) = g.io.conn else { continue };
            let Some(page) = g.mapping.rw() else { continue };
            match send_queued(store, conn, &mut g.io, page, allow) {
                Ok(0) => {}
                Ok(n) => {
                    prog.bytes_out += n;
                    let _ = self.plat.notify(g.io.port);
                }
                Err(f) => {
                    ignore(&*self.plat, store, domid, g, &f);
                    prog.ignored.push(domid);
                }
            }
            Self::note(&mut self.work, domid, &g.io);
        }
    }

    /// Serves until `stop()` is true, owning the store's effects: use it
    /// when this server is the store's only transport (the xenstore domain
    /// in Xen mode). `with_store` gives the store for the duration of one
    /// poll (e.g. by locking a mutex); `idle` bounds each wait so `stop` is
    /// checked.
    pub fn run<S>(
        &mut self,
        mut with_store: S,
        stop: &dyn Fn() -> bool,
        idle: Duration,
    ) -> Result<(), ServerError>
    where
        S: FnMut(&mut dyn FnMut(&mut Store)),
    {
        while !stop() {
            let mut more = false;
            with_store(&mut |store: &mut Store| {
                more = self.poll(store).more;
                for e in store.take_effects() {
                    if let Err(err) = self.apply(store, &e) {
                        // The store has introduced the domain; its ring
                        // just is not served (as C xenstored when
                        // `map_interface` fails after the reply).
                        tracing::warn!(error = %err, "xenbus: effect not applied");
                    }
                }
                // Ring output is found through `Store::with_output`.
                let _ = store.take_ready();
            });
            if !more {
                self.wait(Some(idle))?;
            }
        }
        Ok(())
    }
}

impl<D> Drop for XenbusServer<D>
where
    D: Deref,
    D::Target: Platform,
{
    /// Unbinds every port; the mappings unmap as they drop. (The store's
    /// connections are the store owner's to drop.)
    fn drop(&mut self) {
        for g in self.guests.values() {
            let _ = self.plat.close(g.io.port);
        }
        let _ = self.plat.close(self.kick_rx);
        let _ = self.plat.close(self.kick_tx);
    }
}

/// Whether our end of an interdomain channel lost its peer.
fn peer_gone<P: EventChannel + ?Sized>(plat: &P, port: EvtchnPort) -> bool {
    !matches!(plat.status(port), Ok(PortStatus::Interdomain { .. }))
}

/// Drops a misbehaving guest's connection; keeps mapping and port so that
/// a reconnect can revive it.
fn ignore<P: EventChannel + ?Sized, M: ForeignMapping>(
    plat: &P,
    store: &mut Store,
    domid: DomId,
    g: &mut Guest<M>,
    f: &Fault,
) {
    tracing::warn!(dom = domid.0, fault = %f, "xenbus: guest broke the ring protocol, ignoring it");
    if let Some(c) = g.io.conn.take() {
        store.disconnect(c);
    }
    g.io.clear_buffers();
    if let Some(page) = g.mapping.rw() {
        page.atomic_u32(field::ERROR).store(f.code(), Release);
    }
    let _ = plat.notify(g.io.port);
}

/// One guest's turn (writing output only if `tx`). Returns whether any
/// index moved.
fn serve<P: EventChannel + ?Sized, M: ForeignMapping>(
    plat: &P,
    store: &mut Store,
    cfg: &ServerConfig,
    domid: DomId,
    g: &mut Guest<M>,
    tx: bool,
    prog: &mut Progress,
) -> Result<bool, Fault> {
    let page = g.mapping.rw().ok_or(Fault::NoMapping)?;
    if page.ro().load_u32(field::CONNECTION, Acquire) == XENSTORE_RECONNECT {
        // The guest asks for a fresh start: drop everything in flight.
        if let Some(c) = g.io.conn.take() {
            store.disconnect(c);
        }
        g.io.clear_buffers();
        g.io.ring.reset(page)?;
        g.io.conn = Some(store.connect(domid));
        let _ = plat.notify(g.io.port);
        tracing::info!(dom = domid.0, "xenbus: ring reconnected");
        return Ok(true);
    }
    let Some(conn) = g.io.conn else {
        // Ignored until it reconnects.
        return Ok(false);
    };
    let mut notify = false;
    let out1 = if tx {
        send_queued(store, conn, &mut g.io, page, &mut |_| true)?
    } else {
        0
    };
    let mut moved = out1 > 0;
    let mut taken = 0;
    let mut buf = [0u8; XENSTORE_RING_SIZE];
    g.io.backlog = false;
    loop {
        if let Some(p) = g.io.held.take() {
            match store.handle(conn, &p.header, &p.payload) {
                Ok(()) => {
                    taken += 1;
                    prog.requests += 1;
                }
                Err(HandleError::Busy) => {
                    // Wait for the guest to read replies.
                    g.io.held = Some(p);
                    break;
                }
                Err(HandleError::UnknownConn) => {
                    g.io.conn = None;
                    break;
                }
            }
            continue;
        }
        if taken >= cfg.requests_per_poll {
            g.io.backlog = g.io.ring.readable(page.ro())? > 0;
            break;
        }
        // Never take more than the current message needs: what we read is
        // always consumed by the decoder.
        let want = g.io.dec.need().min(buf.len());
        let m = g.io.ring.read(page, &mut buf[..want])?;
        if m.bytes == 0 {
            break;
        }
        moved = true;
        notify |= m.notify;
        let (used, pkt) = g.io.dec.feed(&buf[..m.bytes])?;
        debug_assert_eq!(used, m.bytes);
        g.io.held = pkt;
    }
    let out2 = match g.io.conn {
        Some(conn) if tx => send_queued(store, conn, &mut g.io, page, &mut |_| true)?,
        _ => 0,
    };
    prog.bytes_out += out1 + out2;
    if out1 + out2 > 0 {
        notify = true;
        moved = true;
    }
    if notify {
        let _ = plat.notify(g.io.port);
    }
    Ok(moved)
}

/// Moves queued output of `conn` into the response ring until it is full,
/// the queue is empty or `allow` refuses the next packet; returns bytes
/// written.
fn send_queued(
    store: &mut Store,
    conn: ConnId,
    io: &mut Io,
    page: SharedMem<'_>,
    allow: &mut dyn FnMut(ConnId) -> bool,
) -> Result<usize, Fault> {
    let mut total = 0;
    loop {
        if io.out_at == io.out.len() {
            if !store.has_output(conn) || !allow(conn) {
                break;
            }
            let Some(p) = store.pop(conn) else { break };
            io.out.clear();
            io.out.extend_from_slice(&p.header.to_bytes());
            io.out.extend_from_slice(&p.payload);
            io.out_at = 0;
        }
        let n = io.ring.write(page, &io.out[io.out_at..])?;
        if n == 0 {
            break;
        }
        io.out_at += n;
        total += n;
    }
    Ok(total)
}
