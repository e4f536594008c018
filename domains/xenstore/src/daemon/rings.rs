//! The xenbus rings a [`Daemon`](super::Daemon) serves besides its socket.
//!
//! ```text
//!   guests ──rings/event channels──▶ XenbusServer ──receive──▶ Store ◀── socket clients
//!                    ▲                    ▲                      │
//!      bridge thread: waits on the        │ transmit_gated       ▼
//!      ring ports, wakes the mio loop     └── only packets whose log record is durable
//! ```
//!
//! The daemon's one thread owns both transports and the store. The ring
//! server only wakes on event channels, the daemon on file descriptors, so
//! a *bridge* thread waits on the server's ports ([`XenbusServer::ports`])
//! and, when one is pending, wakes the daemon's loop and waits until the
//! loop has taken the events (`receive` clears the pending bits) before it
//! waits again. The kick port is one of the ports: the loop notifies it
//! whenever the port list changes, so the bridge reloads it.
//!
//! Durability: requests from rings go into the store (`receive`), their
//! mutations become a log record like a socket request's, and the replies
//! and watch events they queue for ring connections stay in the store's
//! per-connection queues. Once per loop round, every ring connection's
//! newly queued packets are *gated* by the newest record appended during
//! the round (a run-length queue of `(packets, lsn)` per connection);
//! `transmit_gated` takes a packet out of the store only when its record is
//! durable. So a guest sees the reply of a write only after the write is on
//! disk, with one group commit covering the writes of every ring and socket
//! client of the round; messages behind a held one on the same ring wait
//! too, so each guest sees its messages in order.

extern crate std;

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec::Vec;

use mio::Waker;
use xen::platform::{GrantTable, Platform};
use xen::{DomId, EvtchnPort};

use crate::persist::Lsn;
use crate::store::{ConnId, Effect, Store};
use crate::xenbus::{Progress, ServerConfig, ServerError, XenbusServer};

/// How long the bridge waits before it looks at the stop flag again.
const BRIDGE_TICK: Duration = Duration::from_millis(100);

/// The ring server, whatever the platform (object-safe view of
/// [`XenbusServer`]). `Send`, so a daemon serving rings can be moved to
/// the thread that runs it.
trait RingHost: Send {
    fn receive(&mut self, store: &mut Store) -> Progress;
    fn transmit_gated(
        &mut self,
        store: &mut Store,
        allow: &mut dyn FnMut(ConnId) -> bool,
    ) -> Progress;
    fn apply(&mut self, store: &mut Store, e: &Effect) -> Result<(), ServerError>;
    fn introduce(
        &mut self,
        store: &mut Store,
        domid: DomId,
        gfn: u64,
        port: EvtchnPort,
    ) -> Result<ConnId, ServerError>;
    fn release(&mut self, store: &mut Store, domid: DomId) -> bool;
    fn ring_of(&self, domid: DomId) -> Option<(u64, EvtchnPort)>;
    fn conn(&self, domid: DomId) -> Option<ConnId>;
    fn domains(&self) -> Vec<DomId>;
    fn ports(&self) -> Vec<EvtchnPort>;
    fn kick(&self);
}

struct Served<P>
where
    P: Platform + Send + Sync + 'static,
{
    srv: XenbusServer<Arc<P>>,
}

impl<P> RingHost for Served<P>
where
    P: Platform + Send + Sync + 'static,
    <P as GrantTable>::Mapping: Send,
{
    fn receive(&mut self, store: &mut Store) -> Progress {
        self.srv.receive(store)
    }
    fn transmit_gated(
        &mut self,
        store: &mut Store,
        allow: &mut dyn FnMut(ConnId) -> bool,
    ) -> Progress {
        self.srv.transmit_gated(store, allow)
    }
    fn apply(&mut self, store: &mut Store, e: &Effect) -> Result<(), ServerError> {
        self.srv.apply(store, e)
    }
    fn introduce(
        &mut self,
        store: &mut Store,
        domid: DomId,
        gfn: u64,
        port: EvtchnPort,
    ) -> Result<ConnId, ServerError> {
        self.srv.introduce(store, domid, gfn, port)
    }
    fn release(&mut self, store: &mut Store, domid: DomId) -> bool {
        self.srv.release(store, domid)
    }
    fn ring_of(&self, domid: DomId) -> Option<(u64, EvtchnPort)> {
        self.srv.ring_of(domid)
    }
    fn conn(&self, domid: DomId) -> Option<ConnId> {
        self.srv.conn(domid)
    }
    fn domains(&self) -> Vec<DomId> {
        self.srv.domains().collect()
    }
    fn ports(&self) -> Vec<EvtchnPort> {
        self.srv.ports().to_vec()
    }
    fn kick(&self) {
        let _ = self.srv.platform().notify(self.srv.kick_port());
    }
}

/// The xenstore domain's end of the guests' rings, ready to be handed to
/// [`Daemon::serve_rings`](super::Daemon::serve_rings).
pub struct Rings {
    host: Box<dyn RingHost>,
    /// The bridge's view of the platform: waits on ports.
    wait: Arc<WaitFn>,
}

/// Blocks until one of the ports is pending or the time passes; `true` if
/// one is (or the wait failed).
type WaitFn = dyn Fn(&[EvtchnPort], Duration) -> bool + Send + Sync;

impl core::fmt::Debug for Rings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rings")
            .field("domains", &self.host.domains())
            .finish_non_exhaustive()
    }
}

impl Rings {
    /// A ring server of the xenstore domain `plat` (allocates its kick
    /// port); no guest is served until dom0 introduces one.
    pub fn new<P>(plat: Arc<P>, cfg: ServerConfig) -> Result<Rings, ServerError>
    where
        P: Platform + Send + Sync + 'static,
        <P as GrantTable>::Mapping: Send + 'static,
    {
        let srv = XenbusServer::new(plat.clone(), cfg)?;
        let wait = Arc::new(move |ports: &[EvtchnPort], t: Duration| {
            // An error (our domain is going away) counts as an event: the
            // loop then finds nothing and the bridge waits again.
            plat.wait(ports, Some(t)).unwrap_or(true)
        });
        Ok(Rings {
            host: Box::new(Served { srv }),
            wait,
        })
    }
}

/// The packets of a ring connection waiting for the log, oldest first.
#[derive(Default)]
struct Gate {
    runs: VecDeque<(usize, Lsn)>,
    total: usize,
}

/// A daemon's ring side while it runs.
pub(super) struct RingSide {
    host: Box<dyn RingHost>,
    gates: HashMap<ConnId, Gate>,
    /// Set by the bridge when a port is pending.
    due: Arc<AtomicBool>,
    rearm: mpsc::Sender<()>,
    ports: Arc<Mutex<Vec<EvtchnPort>>>,
    stop: Arc<AtomicBool>,
    bridge: Option<JoinHandle<()>>,
    /// Some guest has more input than one receive took.
    pub(super) more: bool,
    /// A domain whose ring [`RingSide::prepare`] mapped for an
    /// `XS_INTRODUCE` the store has not yet answered.
    fresh: Option<DomId>,
}

impl RingSide {
    pub(super) fn start(rings: Rings, waker: Arc<Waker>) -> std::io::Result<RingSide> {
        let due = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let ports = Arc::new(Mutex::new(rings.host.ports()));
        let (rearm, rearmed) = mpsc::channel::<()>();
        let bridge = {
            let (due, stop, ports, wait) = (due.clone(), stop.clone(), ports.clone(), rings.wait);
            std::thread::Builder::new()
                .name("xenstore-ring-bridge".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let list = ports.lock().unwrap_or_else(PoisonError::into_inner).clone();
                        if !wait(&list, BRIDGE_TICK) {
                            continue;
                        }
                        due.store(true, Ordering::Release);
                        if waker.wake().is_err() {
                            return;
                        }
                        // The loop clears the pending bits it serves, then
                        // rearms us; a lost rearm only costs one tick.
                        if let Err(mpsc::RecvTimeoutError::Disconnected) =
                            rearmed.recv_timeout(BRIDGE_TICK)
                        {
                            return;
                        }
                    }
                })?
        };
        Ok(RingSide {
            host: rings.host,
            gates: HashMap::new(),
            due,
            rearm,
            ports,
            stop,
            bridge: Some(bridge),
            more: false,
            fresh: None,
        })
    }

    /// Whether the bridge saw a pending port (and clears the flag).
    pub(super) fn take_due(&mut self) -> bool {
        self.due.swap(false, Ordering::AcqRel)
    }

    /// Lets the bridge wait again (after a `receive` it asked for).
    pub(super) fn rearm(&self) {
        let _ = self.rearm.send(());
    }

    pub(super) fn receive(&mut self, store: &mut Store) -> Progress {
        let p = self.host.receive(store);
        self.more = p.more;
        p
    }

    /// Readies the ring of an `XS_INTRODUCE` before the store hears of
    /// it, so that the store says `OK` (and `XS_IS_DOMAIN_INTRODUCED` says
    /// `T`) only for a ring that is served. A domain not served yet gets
    /// its ring mapped and its port bound now: if that fails, the error is
    /// the reply and the store is not asked. A domain served already may
    /// only be introduced again with the ring and port it has (the
    /// reconnection of C xenstored: the store resets its connection);
    /// other values are refused with `EINVAL` and change nothing, so a
    /// stray or hostile `XS_INTRODUCE` cannot take a running guest's ring
    /// away. Call [`RingSide::settle`] once the store has answered.
    pub(super) fn prepare(
        &mut self,
        store: &mut Store,
        domid: DomId,
        gfn: u64,
        port: u32,
    ) -> Result<(), xen::Errno> {
        if let Some(ring) = self.host.ring_of(domid) {
            return if ring == (gfn, EvtchnPort(port)) {
                Ok(())
            } else {
                tracing::warn!(
                    dom = domid.0,
                    gfn,
                    port,
                    "XS_INTRODUCE of a served domain with another ring refused"
                );
                Err(xen::Errno::EINVAL)
            };
        }
        match self.host.introduce(store, domid, gfn, EvtchnPort(port)) {
            Ok(_) => {
                self.fresh = Some(domid);
                self.ports_changed();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(dom = domid.0, error = %e, "XS_INTRODUCE: ring not served");
                Err(match e {
                    ServerError::TooManyDomains(_) => xen::Errno::ENOSPC,
                    ServerError::Map {
                        source: xen::platform::Error::Errno(errno),
                        ..
                    }
                    | ServerError::Bind {
                        source: xen::platform::Error::Errno(errno),
                        ..
                    } => errno,
                    _ => xen::Errno::EINVAL,
                })
            }
        }
    }

    /// After the store answered an `XS_INTRODUCE` readied by
    /// [`RingSide::prepare`]: if it refused it (no `Introduce` effect came),
    /// the ring mapped for it is released again.
    pub(super) fn settle(&mut self, store: &mut Store) {
        if let Some(d) = self.fresh.take() {
            if store.is_introduced(d) {
                return;
            }
            self.host.release(store, d);
            self.ports_changed();
        }
    }

    fn ports_changed(&mut self) {
        *self.ports.lock().unwrap_or_else(PoisonError::into_inner) = self.host.ports();
        self.host.kick();
    }

    /// Carries out an `Introduce`/`Release` effect; refreshes the bridge's
    /// port list.
    pub(super) fn apply(&mut self, store: &mut Store, e: &Effect) {
        if let Effect::Introduce { domid, .. } = e {
            if self.fresh == Some(*domid) {
                // `prepare` served it already.
                self.fresh = None;
                return;
            }
            // A re-introduction empties the domain's queues in the store.
            if let Some(c) = self.host.conn(*domid) {
                self.gates.remove(&c);
            }
        }
        if let Err(err) = self.host.apply(store, e) {
            // The store has introduced the domain; its ring just is not
            // served (as C xenstored when `map_interface` fails).
            tracing::warn!(error = %err, "xenbus: effect not applied");
        }
        if matches!(e, Effect::Introduce { .. } | Effect::Release { .. }) {
            *self.ports.lock().unwrap_or_else(PoisonError::into_inner) = self.host.ports();
            self.host.kick();
        }
    }

    /// Gates the packets queued for ring connections since the last call
    /// by `lsn` (the newest record appended meanwhile, 0 if none), and
    /// forgets connections that are gone. `newest` is the newest record
    /// appended ever: should a queue have shrunk behind our back, what is
    /// left in it waits for that.
    pub(super) fn gate(&mut self, store: &Store, lsn: Lsn, newest: Lsn) {
        let host = &self.host;
        let is_ring = |c: ConnId| store.domid(c).is_some_and(|d| host.conn(d) == Some(c));
        self.gates.retain(|c, _| is_ring(*c));
        for c in store.with_output() {
            if !is_ring(c) {
                continue;
            }
            let g = self.gates.entry(c).or_default();
            let n = store.queued(c);
            if n < g.total {
                g.runs.clear();
                g.runs.push_back((n, newest));
                g.total = n;
            } else if n > g.total {
                let new = n - g.total;
                match g.runs.back_mut() {
                    Some((k, l)) if *l == lsn => *k += new,
                    _ => g.runs.push_back((new, lsn)),
                }
                g.total = n;
            }
        }
    }

    /// Moves into the rings what `durable` allows.
    pub(super) fn transmit(&mut self, store: &mut Store, durable: Lsn) -> Progress {
        let gates = &mut self.gates;
        let mut allow = |c: ConnId| {
            let Some(g) = gates.get_mut(&c) else {
                // Not accounted yet: wait for the next `gate`.
                return false;
            };
            match g.runs.front_mut() {
                Some((k, l)) if *l <= durable => {
                    *k -= 1;
                    if *k == 0 {
                        g.runs.pop_front();
                    }
                    g.total -= 1;
                    true
                }
                _ => false,
            }
        };
        let p = self.host.transmit_gated(store, &mut allow);
        if p.bytes_out > 0 {
            // Replies taken out of the store may let a request held by the
            // outstanding-reply quota in: give the guests another turn.
            self.more = true;
        }
        p
    }

    /// The store connection of `domid`'s ring (`None` if not served or
    /// ignored).
    pub(super) fn conn(&self, domid: DomId) -> Option<ConnId> {
        self.host.conn(domid)
    }

    /// The domains served.
    pub(super) fn domains(&self) -> Vec<DomId> {
        self.host.domains()
    }
}

impl Drop for RingSide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.host.kick();
        if let Some(b) = self.bridge.take() {
            let _ = b.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Config;
    use crate::wire::{Header, XsOp};
    use crate::xenbus::ring::{field, RingIo, Side};
    use core::sync::atomic::Ordering::Acquire;
    use xen::platform::{CreateConfig, DomainBuilder, DomainControl, DomainImage, EventChannel};
    use xen_sim::{Hypervisor, SimDomain};

    /// The mechanism behind "a ring write is acknowledged only once it is
    /// durable": a reply gated by LSN 5 stays in the store while the log
    /// is durable up to 4, and reaches the ring at 5.
    #[test]
    fn ring_replies_wait_until_their_record_is_durable() {
        let hv = Hypervisor::new();
        let d0 = hv.dom0();
        let xsd = hv.test_domain(&CreateConfig::default()).expect("xsd");
        let (tx, parked) = mpsc::channel::<SimDomain>();
        let tx = Mutex::new(tx);
        hv.register_image("parked", move |dom: SimDomain| {
            let _ = tx.lock().expect("lock").send(dom.clone());
            while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
        });
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let rings = Rings::new(Arc::new(xsd.clone()), ServerConfig::default()).expect("rings");
        let mut side = RingSide::start(rings, waker).expect("side");
        let mut store = Store::new(Config::default());
        let dom0 = store.connect(DomId::DOM0);

        let d = d0.create(&CreateConfig::default()).expect("create");
        let built = d0
            .build(
                d,
                &DomainImage {
                    kernel: b"parked",
                    cmdline: "",
                    xenstore_domid: xsd.domid(),
                    console_domid: DomId::DOM0,
                },
            )
            .expect("build");
        let intro = std::format!("{}\0{}\0{}\0", d.0, built.store_gfn.0, built.store_port.0);
        let h = Header::new(XsOp::Introduce, 1, 0, intro.len() as u32);
        store.handle(dom0, &h, intro.as_bytes()).expect("introduce");
        for e in store.take_effects() {
            side.apply(&mut store, &e);
        }
        assert!(side.conn(d).is_some(), "the ring is served");
        d0.unpause(d).expect("unpause");
        let guest = parked
            .recv_timeout(Duration::from_secs(10))
            .expect("guest runs");
        let ring = guest.store_ring().expect("ring");

        // The guest writes a request.
        let body = b"/local/domain/x\0v";
        let req = Header::new(XsOp::Write, 7, 0, body.len() as u32);
        let mut io = RingIo::new(Side::Client);
        let mut msg = req.to_bytes().to_vec();
        msg.extend_from_slice(body);
        assert_eq!(io.write(ring.page, &msg), Ok(msg.len()));
        guest.notify(ring.port).expect("notify");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while side.receive(&mut store).requests == 0 {
            assert!(std::time::Instant::now() < deadline, "request taken");
            std::thread::sleep(Duration::from_millis(1));
        }
        let rsp = || ring.page.ro().load_u32(field::RSP_PROD, Acquire);
        side.gate(&store, 5, 5);
        side.transmit(&mut store, 4);
        assert_eq!(rsp(), 0, "no reply before its record is durable");
        assert_eq!(store.queued(side.conn(d).expect("conn")), 1);
        side.transmit(&mut store, 5);
        assert!(rsp() as usize > HEADER, "the reply once it is");
        assert_eq!(store.queued(side.conn(d).expect("conn")), 0);
        let _ = d0.destroy(d);
    }

    const HEADER: usize = crate::wire::HEADER_LEN;
}
