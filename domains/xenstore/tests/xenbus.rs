//! The xenbus ring transport in host mode: a xenstore domain serving
//! guests built by `DomainBuilder` on a simulated hypervisor.
//!
//! The server runs on its own thread (a custom loop around
//! `XenbusServer::poll`, so the test can see which guests it serves,
//! ignores or lost); each guest is a registered image that parks, and the
//! test drives its `XenbusClient` from the test thread through the guest's
//! own platform handle. The proptest at the end runs the server in the
//! test thread, deterministically, against random ring contents.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use windsor_xenstore::client::{ClientError, TxId, XenStore};
use windsor_xenstore::wire::{error_from_name, Header, Packet, XsOp};
use windsor_xenstore::xenbus::ring::{field, RingIo, Side};
use windsor_xenstore::xenbus::{ServerConfig, XenbusClient, XenbusServer};
use windsor_xenstore::{Config, ConnId, Store};
use xen::abi::xs_wire::{XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX};
use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, EventChannel, Platform, PortStatus,
};
use xen::{DomId, Errno, EvtchnPort};
use xen_sim::{Hypervisor, SimDomain};

const T: TxId = TxId::NONE;
const LONG: Duration = Duration::from_secs(10);

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn args(a: &[&str]) -> Vec<u8> {
    a.iter().flat_map(|s| cstr(s)).collect()
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the server thread reports.
#[derive(Default)]
struct Seen {
    served: Vec<(DomId, EvtchnPort)>,
    ignored: Vec<DomId>,
    gone: Vec<DomId>,
}

/// A host: dom0 (played by the test, straight on the store), a xenstore
/// domain running the server, and parked guests.
struct Host {
    hv: Hypervisor,
    d0: SimDomain,
    xsd: SimDomain,
    store: Arc<Mutex<Store>>,
    dom0: ConnId,
    kick: EvtchnPort,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
    parked: Receiver<SimDomain>,
    req: u32,
}

/// A running guest: its own platform handle.
struct Guest {
    dom: SimDomain,
}

impl Guest {
    fn id(&self) -> DomId {
        self.dom.domid()
    }

    fn client(&self) -> XenbusClient<'_, SimDomain> {
        let mut c = XenbusClient::new(&self.dom).expect("guest has a ring");
        c.set_reply_timeout(LONG);
        c
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    fn new() -> Host {
        let hv = Hypervisor::new();
        let d0 = hv.dom0();
        let xsd = hv
            .test_domain(&CreateConfig::default())
            .expect("xenstore domain");
        let (tx, parked) = channel::<SimDomain>();
        let tx = Mutex::new(tx);
        hv.register_image("parked", move |dom: SimDomain| {
            let _ = lock(&tx).send(dom.clone());
            // Park until destroyed or shut down (every call then fails).
            while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
        });
        let store = Arc::new(Mutex::new(Store::new(Config::default())));
        let dom0 = lock(&store).connect(DomId::DOM0);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ktx, krx) = channel();
        let server = {
            let (xsd, store, seen, stop) = (xsd.clone(), store.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut srv = XenbusServer::new(&xsd, ServerConfig::default()).expect("server");
                ktx.send(srv.kick_port()).expect("kick port");
                while !stop.load(Ordering::Acquire) {
                    let more = {
                        let mut s = lock(&store);
                        let p = srv.poll(&mut s);
                        for e in s.take_effects() {
                            srv.apply(&mut s, &e).expect("effect applied");
                        }
                        let _ = s.take_ready();
                        let mut seen = lock(&seen);
                        seen.served = srv
                            .domains()
                            .map(|d| (d, srv.port(d).expect("port")))
                            .collect();
                        seen.ignored.extend(p.ignored);
                        seen.gone.extend(p.gone);
                        p.more
                    };
                    if !more {
                        srv.wait(Some(Duration::from_millis(50))).expect("wait");
                    }
                }
            })
        };
        let kick = krx.recv_timeout(LONG).expect("server started");
        Host {
            hv,
            d0,
            xsd,
            store,
            dom0,
            kick,
            seen,
            stop,
            server: Some(server),
            parked,
            req: 0,
        }
    }

    /// A dom0 request straight to the store (the toolstack's part); wakes
    /// the server so that ring output and effects are handled.
    fn dom0(&mut self, op: XsOp, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        self.req += 1;
        let reply = {
            let mut s = lock(&self.store);
            let h = Header::new(op, self.req, 0, payload.len() as u32);
            s.handle(self.dom0, &h, payload).expect("dom0 accepted");
            let mut reply = None;
            while let Some(p) = s.pop(self.dom0) {
                if p.header.req_id == self.req && p.op() != Some(XsOp::WatchEvent) {
                    reply = Some(p);
                }
            }
            reply.expect("reply")
        };
        self.xsd.notify(self.kick).expect("kick");
        match reply.op() {
            Some(XsOp::Error) => Err(error_from_name(&reply.payload).expect("errno")),
            _ => Ok(reply.payload),
        }
    }

    fn served(&self) -> Vec<DomId> {
        lock(&self.seen).served.iter().map(|s| s.0).collect()
    }

    /// Builds a guest, gives it `/local/domain/<id>`, introduces it, waits
    /// until the server maps its ring, starts it.
    fn guest(&mut self) -> Guest {
        let d = self.d0.create(&CreateConfig::default()).expect("create");
        let image = DomainImage {
            kernel: b"parked",
            cmdline: "",
            xenstore_domid: self.xsd.domid(),
            console_domid: DomId::DOM0,
        };
        let built = self.d0.build(d, &image).expect("build");
        let home = format!("/local/domain/{}", d.0);
        self.dom0(XsOp::Write, &cstr(&home)).expect("home");
        self.dom0(XsOp::SetPerms, &args(&[&home, &format!("n{}", d.0)]))
            .expect("home perms");
        let intro = args(&[
            &d.0.to_string(),
            &built.store_gfn.0.to_string(),
            &built.store_port.0.to_string(),
        ]);
        self.dom0(XsOp::Introduce, &intro).expect("introduce");
        wait_until("the server to map the ring", || self.served().contains(&d));
        self.d0.unpause(d).expect("unpause");
        let dom = self.parked.recv_timeout(LONG).expect("guest started");
        assert_eq!(dom.domid(), d);
        Guest { dom }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.xsd.notify(self.kick);
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        for d in self.hv.domains() {
            if d != DomId::DOM0 && d != self.xsd.domid() {
                let _ = self.d0.destroy(d);
            }
        }
    }
}

#[test]
fn two_guests_read_write_and_watch_with_their_own_permissions() {
    let mut host = Host::new();
    let a = host.guest();
    let b = host.guest();
    let (xa, xb) = (a.client(), b.client());

    // Relative paths land in each guest's home.
    xa.write(T, "data/secret", b"for a only").expect("a writes");
    xb.write(T, "data/name", b"b").expect("b writes");
    assert_eq!(xa.read(T, "data/secret").expect("a reads"), b"for a only");
    let a_secret = format!("/local/domain/{}/data/secret", a.id().0);
    assert_eq!(
        host.dom0(XsOp::Read, &cstr(&a_secret)).expect("dom0 reads"),
        b"for a only"
    );
    // The connection's identity is the domain: b may not read or write a's nodes.
    assert_eq!(
        xb.read(T, &a_secret),
        Err(ClientError::Store(Errno::EACCES))
    );
    assert_eq!(
        xb.write(T, &a_secret, b"x"),
        Err(ClientError::Store(Errno::EACCES))
    );
    assert_eq!(
        xa.directory(T, &format!("/local/domain/{}/data", a.id().0))
            .expect("dir"),
        ["secret"]
    );
    let perms = xa.get_perms(T, "data/secret").expect("perms");
    assert_eq!(perms[0].dom, a.id(), "a owns what it created");

    // Watches: the first event at once, then one per change, by any writer.
    xb.watch("data/ping", "tok").expect("watch");
    let first = xb.next_event(Some(LONG)).expect("first event");
    assert_eq!(
        (first.path.as_str(), first.token.as_str()),
        ("data/ping", "tok")
    );
    let ping = format!("/local/domain/{}/data/ping", b.id().0);
    host.dom0(
        XsOp::Write,
        &args(&[&ping]).into_iter().chain(*b"1").collect::<Vec<_>>(),
    )
    .expect("dom0 writes");
    let e = xb.next_event(Some(LONG)).expect("event from dom0's write");
    assert_eq!(e.path, "data/ping");
    xb.write(T, "data/ping", b"2").expect("own write");
    assert_eq!(
        xb.next_event(Some(LONG)).expect("own event").path,
        "data/ping"
    );
    assert_eq!(
        xb.next_event(Some(Duration::from_millis(30))),
        Err(ClientError::Timeout)
    );
    xb.unwatch("data/ping", "tok").expect("unwatch");

    // Transactions over the ring.
    let tx = xa.transaction_start().expect("tx");
    xa.write(tx, "data/t", b"in tx").expect("tx write");
    assert_eq!(xa.read(T, "data/t"), Err(ClientError::Store(Errno::ENOENT)));
    xa.transaction_end(tx, true).expect("commit");
    assert_eq!(xa.read(T, "data/t").expect("committed"), b"in tx");

    // Messages larger than the 1 KiB rings stream through them.
    let big: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    xa.write(T, "data/big", &big).expect("big write");
    assert_eq!(xa.read(T, "data/big").expect("big read"), big);
    let many: Vec<String> = (0..40)
        .map(|i| format!("child-with-a-long-name-{i:03}"))
        .collect();
    for c in &many {
        xb.write(T, &format!("data/many/{c}"), b"").expect("child");
    }
    assert_eq!(xb.directory(T, "data/many").expect("directory"), many);
    assert_eq!(
        xa.domain_path(a.id()).expect("path"),
        format!("/local/domain/{}", a.id().0)
    );
    assert!(lock(&host.seen).ignored.is_empty());
}

#[test]
fn quotas_apply_per_domain_over_the_ring() {
    let mut host = Host::new();
    let g = host.guest();
    let xs = g.client();
    let big = vec![b'x'; 3000];
    // Value size quota of an unprivileged domain (2048).
    assert_eq!(
        xs.write(T, "data/too-big", &big),
        Err(ClientError::Store(Errno::ENOSPC))
    );
    // Introduction and other privileged operations are refused to a guest.
    assert_eq!(
        xs.introduce(DomId(77), 1, EvtchnPort(3)),
        Err(ClientError::Store(Errno::EACCES))
    );
}

#[test]
fn garbage_indices_disconnect_only_that_guest_until_it_reconnects() {
    let mut host = Host::new();
    let good = host.guest();
    let bad = host.guest();
    let (xg, xb) = (good.client(), bad.client());
    xg.write(T, "data/v", b"1").expect("good works");
    xb.watch("data/w", "t").expect("bad works too, at first");

    let ring = bad.dom.store_ring().expect("ring");
    ring.page
        .atomic_u32(field::REQ_PROD)
        .store(0x4000_0000, Ordering::Release);
    bad.dom.notify(ring.port).expect("notify");
    wait_until("the bad guest to be ignored", || {
        lock(&host.seen).ignored.contains(&bad.id())
    });
    assert_eq!(
        ring.page.ro().load_u32(field::ERROR, Ordering::Acquire),
        XENSTORE_ERROR_RINGIDX
    );
    assert_eq!(xb.read(T, "data/w"), Err(ClientError::Disconnected));

    // The other guest goes on.
    for i in 0..20 {
        xg.write(T, "data/v", format!("{i}").as_bytes())
            .expect("good still served");
    }
    assert_eq!(xg.read(T, "data/v").expect("read"), b"19");

    // The reconnect handshake clears the error and starts afresh
    // (the watch is gone).
    xb.reconnect(LONG).expect("reconnect");
    assert_eq!(ring.page.ro().load_u32(field::ERROR, Ordering::Acquire), 0);
    xb.write(T, "data/w", b"back").expect("served again");
    assert_eq!(xb.read(T, "data/w").expect("read"), b"back");
    assert_eq!(
        xb.next_event(Some(Duration::from_millis(30))),
        Err(ClientError::Timeout),
        "watches do not survive a reconnect"
    );
}

#[test]
fn an_oversized_message_is_a_protocol_error() {
    let mut host = Host::new();
    let bad = host.guest();
    let ring = bad.dom.store_ring().expect("ring");
    let mut io = RingIo::new(Side::Client);
    let h = Header::new(XsOp::Write, 1, 0, 5000);
    assert_eq!(io.write(ring.page, &h.to_bytes()), Ok(16));
    bad.dom.notify(ring.port).expect("notify");
    wait_until("the guest to be ignored", || {
        lock(&host.seen).ignored.contains(&bad.id())
    });
    assert_eq!(
        ring.page.ro().load_u32(field::ERROR, Ordering::Acquire),
        XENSTORE_ERROR_PROTO
    );
    // Nothing was allocated for it: the store has no connection of its.
    let other = host.guest();
    other
        .client()
        .write(T, "data/x", b"y")
        .expect("others go on");
}

#[test]
fn destroying_a_guest_releases_its_mapping_and_port() {
    let mut host = Host::new();
    let g = host.guest();
    let stay = host.guest();
    g.client().write(T, "data/x", b"1").expect("write");
    let port = lock(&host.seen)
        .served
        .iter()
        .find(|s| s.0 == g.id())
        .expect("served")
        .1;
    assert!(matches!(
        host.xsd.status(port),
        Ok(PortStatus::Interdomain { .. })
    ));
    host.d0.destroy(g.id()).expect("destroy");
    wait_until("the server to drop the guest", || {
        lock(&host.seen).gone.contains(&g.id()) && !host.served().contains(&g.id())
    });
    assert_eq!(host.xsd.status(port), Ok(PortStatus::Closed));
    // The toolstack's XS_RELEASE still cleans the store.
    host.dom0(XsOp::Release, &cstr(&g.id().0.to_string()))
        .expect("release");
    assert_eq!(
        host.dom0(
            XsOp::Read,
            &cstr(&format!("/local/domain/{}/data/x", g.id().0))
        ),
        Err(Errno::ENOENT)
    );
    stay.client()
        .write(T, "data/x", b"2")
        .expect("the other goes on");

    // XS_RELEASE of a live guest unmaps and unbinds too.
    host.dom0(XsOp::Release, &cstr(&stay.id().0.to_string()))
        .expect("release");
    wait_until("the server to release", || {
        !host.served().contains(&stay.id())
    });
}

#[test]
fn run_serves_introduced_domains_through_store_effects() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let xsd = hv.test_domain(&CreateConfig::default()).expect("xsd");
    let (tx, rx) = channel::<SimDomain>();
    let tx = Mutex::new(tx);
    hv.register_image("parked", move |dom: SimDomain| {
        let _ = lock(&tx).send(dom.clone());
        while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
    });
    let store = Arc::new(Mutex::new(Store::new(Config::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let (ktx, krx): (Sender<EvtchnPort>, _) = channel();
    let server = {
        let (xsd, store, stop) = (xsd.clone(), store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut srv = XenbusServer::new(&xsd, ServerConfig::default()).expect("server");
            ktx.send(srv.kick_port()).expect("kick");
            srv.run(
                |f| f(&mut lock(&store)),
                &|| stop.load(Ordering::Acquire),
                Duration::from_millis(20),
            )
            .expect("run");
        })
    };
    let kick = krx.recv_timeout(LONG).expect("kick port");
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
    {
        let mut s = lock(&store);
        let c = s.connect(DomId::DOM0);
        let p = args(&[
            &d.0.to_string(),
            &built.store_gfn.0.to_string(),
            &built.store_port.0.to_string(),
        ]);
        s.handle(c, &Header::new(XsOp::Introduce, 1, 0, p.len() as u32), &p)
            .expect("introduce");
        assert_eq!(s.pop(c).expect("reply").payload, b"OK\0");
    }
    xsd.notify(kick).expect("kick");
    d0.unpause(d).expect("unpause");
    let g = rx.recv_timeout(LONG).expect("guest");
    let ring = g.store_ring().expect("ring");
    wait_until("the server features to appear", || {
        ring.page
            .ro()
            .load_u32(field::SERVER_FEATURES, Ordering::Acquire)
            != 0
    });
    let mut xs = XenbusClient::new(&g).expect("client");
    xs.set_reply_timeout(LONG);
    // dom0 owns /, so the guest may not create nodes outside its rights.
    assert_eq!(
        xs.write(T, "/x", b"1"),
        Err(ClientError::Store(Errno::EACCES))
    );
    assert_eq!(
        xs.domain_path(d).expect("path"),
        format!("/local/domain/{}", d.0)
    );
    stop.store(true, Ordering::Release);
    xsd.notify(kick).expect("kick");
    server.join().expect("server thread");
    let _ = d0.destroy(d);
}

// ---------------------------------------------------------------------
// Random ring contents against the server, deterministically.

/// One thing a hostile guest does to its page.
#[derive(Clone, Debug)]
enum Act {
    /// Store a value into one of the seven index/flag words.
    Word(usize, u32),
    /// Write bytes at an offset of the rings.
    Bytes(usize, Vec<u8>),
    /// Produce a well-formed request through a proper ring end.
    Request(u32, Vec<u8>),
    /// Produce random bytes through a proper ring end.
    Stream(Vec<u8>),
    /// Consume whatever is in the response ring.
    Drain,
    /// Ring the doorbell.
    Notify,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        (0usize..7, any::<u32>()).prop_map(|(w, v)| Act::Word(field::REQ_CONS + 4 * w, v)),
        (0usize..2048, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(o, b)| Act::Bytes(o, b)),
        (0u32..24, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(t, p)| Act::Request(t, p)),
        proptest::collection::vec(any::<u8>(), 0..700).prop_map(Act::Stream),
        Just(Act::Drain),
        Just(Act::Notify),
    ]
}

/// Starts a guest on `hv` and returns its handle and its build.
fn start_parked(
    hv: &Hypervisor,
    d0: &SimDomain,
    xsd: DomId,
    rx: &Receiver<SimDomain>,
) -> (SimDomain, xen::platform::BuiltDomain) {
    let d = d0.create(&CreateConfig::default()).expect("create");
    let built = d0
        .build(
            d,
            &DomainImage {
                kernel: b"parked",
                cmdline: "",
                xenstore_domid: xsd,
                console_domid: DomId::DOM0,
            },
        )
        .expect("build");
    d0.unpause(d).expect("unpause");
    let _ = hv;
    (rx.recv_timeout(LONG).expect("guest"), built)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_ring_contents_never_hurt_the_server_or_the_other_guest(
        acts in proptest::collection::vec(act(), 1..40),
    ) {
        let hv = Hypervisor::new();
        let d0 = hv.dom0();
        let xsd = hv.test_domain(&CreateConfig::default()).expect("xsd");
        let (tx, rx) = channel::<SimDomain>();
        let tx = Mutex::new(tx);
        hv.register_image("parked", move |dom: SimDomain| {
            let _ = lock(&tx).send(dom.clone());
            while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
        });
        let mut store = Store::new(Config::default());
        let mut srv = XenbusServer::new(&xsd, ServerConfig::default()).expect("server");
        let (evil, eb) = start_parked(&hv, &d0, xsd.domid(), &rx);
        let (good, gb) = start_parked(&hv, &d0, xsd.domid(), &rx);
        for (d, b) in [(&evil, &eb), (&good, &gb)] {
            srv.introduce(&mut store, d.domid(), b.store_gfn.0, b.store_port).expect("introduce");
        }
        let ering = evil.store_ring().expect("ring");
        let mut eio = RingIo::new(Side::Client);
        let mut sink = [0u8; 1024];
        for (i, a) in acts.iter().enumerate() {
            match a {
                Act::Word(off, v) => ering.page.atomic_u32(*off).store(*v, Ordering::Release),
                Act::Bytes(off, b) => {
                    let n = b.len().min(2048 - off);
                    ering.page.write_bytes(*off, &b[..n]);
                }
                Act::Request(t, p) => {
                    let pkt = Packet { header: Header { ty: *t, req_id: i as u32, tx_id: 0, len: p.len() as u32 }, payload: p.clone() };
                    let _ = eio.write(ering.page, &pkt.to_vec());
                }
                Act::Stream(b) => { let _ = eio.write(ering.page, b); }
                Act::Drain => { let _ = eio.read(ering.page, &mut sink); }
                Act::Notify => { let _ = evil.notify(ering.port); }
            }
            // Every poll returns (bounded work) and never panics.
            let p = srv.poll(&mut store);
            prop_assert!(p.requests <= 2 * ServerConfig::default().requests_per_poll);
            prop_assert!(p.ignored.iter().all(|d| *d == evil.domid()));
            prop_assert!(store.stats().queued_bytes <= 2 * Config::default().max_queued_bytes);
        }
        // The other guest is served as if nothing happened.
        let gring = good.store_ring().expect("ring");
        let mut gio = RingIo::new(Side::Client);
        let req = Packet::new(XsOp::GetDomainPath, 99, 0, cstr(&good.domid().0.to_string()));
        prop_assert_eq!(gio.write(gring.page, &req.to_vec()), Ok(req.buffer_len()));
        good.notify(gring.port).expect("notify");
        let mut got = Vec::new();
        for _ in 0..4 {
            srv.poll(&mut store);
            let mut buf = [0u8; 1024];
            let m = gio.read(gring.page, &mut buf).expect("sane server");
            got.extend_from_slice(&buf[..m.bytes]);
        }
        let (reply, _) = Packet::parse(&got).expect("a whole reply");
        prop_assert_eq!(reply.header.req_id, 99);
        prop_assert_eq!(reply.payload, cstr(&format!("/local/domain/{}", good.domid().0)));
        prop_assert!(store.check_consistency());
        for d in [evil.domid(), good.domid()] {
            srv.release(&mut store, d);
            let _ = d0.destroy(d);
        }
    }
}

#[test]
fn reintroducing_a_served_domain_rebinds_and_resets_its_ring() {
    let mut host = Host::new();
    let g = host.guest();
    let old_port = lock(&host.seen).served[0].1;
    {
        let xs = g.client();
        xs.watch("data/w", "t").expect("watch");
        xs.next_event(Some(LONG)).expect("first event");
    }
    let ring = g.dom.store_ring().expect("ring");
    let intro = args(&[&g.id().0.to_string(), "0", &ring.port.0.to_string()]);
    assert_ne!(
        ring.page.ro().load_u32(field::REQ_PROD, Ordering::Acquire),
        0
    );
    host.dom0(XsOp::Introduce, &intro).expect("re-introduce");
    wait_until("the ring to be reset", || {
        ring.page.ro().load_u32(field::REQ_PROD, Ordering::Acquire) == 0
    });
    // Our old port was closed and the guest's port bound again.
    let port = lock(&host.seen).served[0].1;
    assert_eq!(port, old_port, "the lowest free port is reused");
    assert!(matches!(
        host.xsd.status(port),
        Ok(PortStatus::Interdomain { dom, port: p }) if dom == g.id() && p == ring.port
    ));
    // A client starting on the reset ring is served; the watch is gone.
    let xs = g.client();
    xs.write(T, "data/w", b"1").expect("served");
    assert_eq!(
        xs.next_event(Some(Duration::from_millis(30))),
        Err(ClientError::Timeout)
    );
}

#[test]
fn a_guest_that_does_not_read_replies_is_throttled_not_buffered() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let xsd = hv.test_domain(&CreateConfig::default()).expect("xsd");
    let (tx, rx) = channel::<SimDomain>();
    let tx = Mutex::new(tx);
    hv.register_image("parked", move |dom: SimDomain| {
        let _ = lock(&tx).send(dom.clone());
        while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
    });
    let mut store = Store::new(Config::default());
    let mut srv = XenbusServer::new(&xsd, ServerConfig::default()).expect("server");
    let (g, built) = start_parked(&hv, &d0, xsd.domid(), &rx);
    srv.introduce(&mut store, g.domid(), built.store_gfn.0, built.store_port)
        .expect("introduce");
    let ring = g.store_ring().expect("ring");
    let mut io = RingIo::new(Side::Client);
    let arg = cstr(&g.domid().0.to_string());
    let reqs: Vec<u8> = (1..=200u32)
        .flat_map(|i| Packet::new(XsOp::GetDomainPath, i, 0, arg.clone()).to_vec())
        .collect();
    // Pipeline 200 requests without reading a single reply.
    let mut sent = 0;
    for _ in 0..50 {
        sent += io.write(ring.page, &reqs[sent..]).expect("ring");
        srv.poll(&mut store);
    }
    assert!(sent < reqs.len(), "the server stopped taking requests");
    let quota = Config::default().quotas.outstanding as usize;
    assert!(
        store.stats().queued <= quota,
        "unread replies stay within the outstanding quota"
    );
    // Reading the replies lets everything through, in order.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..2000 {
        sent += io.write(ring.page, &reqs[sent..]).expect("ring");
        srv.poll(&mut store);
        let m = io.read(ring.page, &mut buf).expect("ring");
        got.extend_from_slice(&buf[..m.bytes]);
        if sent == reqs.len()
            && m.bytes == 0
            && !store.has_output(srv.conn(g.domid()).expect("conn"))
        {
            break;
        }
    }
    let mut at = 0;
    let mut ids = Vec::new();
    while at < got.len() {
        let (p, n) = Packet::parse(&got[at..]).expect("whole replies");
        assert_eq!(p.op(), Some(XsOp::GetDomainPath));
        ids.push(p.header.req_id);
        at += n;
    }
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    srv.release(&mut store, g.domid());
    let _ = d0.destroy(g.domid());
}

#[test]
fn concurrent_guests_stream_large_replies_without_lost_wakeups() {
    let mut host = Host::new();
    let guests = [host.guest(), host.guest(), host.guest()];
    let handles: Vec<_> = guests
        .iter()
        .map(|g| {
            let dom = g.dom.clone();
            std::thread::spawn(move || {
                let mut xs = XenbusClient::new(&dom).expect("ring");
                xs.set_reply_timeout(LONG);
                xs.watch("data", "mine").expect("watch");
                for i in 0..60u32 {
                    // Replies of 2 KiB need two ring-fulls: the store waits
                    // for the guest to make room, the guest tells it.
                    let v: Vec<u8> = (0..2000u32).map(|j| (i + j) as u8).collect();
                    xs.write(T, &format!("data/k{}", i % 4), &v).expect("write");
                    assert_eq!(xs.read(T, &format!("data/k{}", i % 4)).expect("read"), v);
                }
                let mut events = 0;
                while xs.next_event(Some(Duration::from_millis(50))).is_ok() {
                    events += 1;
                }
                events
            })
        })
        .collect();
    for h in handles {
        let events = h.join().expect("guest thread");
        assert!(events >= 2, "watch events arrived ({events})");
    }
    assert!(lock(&host.seen).ignored.is_empty());
}

#[test]
fn receive_holds_replies_until_transmit() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let xsd = hv.test_domain(&CreateConfig::default()).expect("xsd");
    let (tx, rx) = channel::<SimDomain>();
    let tx = Mutex::new(tx);
    hv.register_image("parked", move |dom: SimDomain| {
        let _ = lock(&tx).send(dom.clone());
        while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
    });
    let mut store = Store::new(Config {
        record_mutations: true,
        ..Config::default()
    });
    let mut srv = XenbusServer::new(&xsd, ServerConfig::default()).expect("server");
    let (g, built) = start_parked(&hv, &d0, xsd.domid(), &rx);
    srv.introduce(&mut store, g.domid(), built.store_gfn.0, built.store_port)
        .expect("introduce");
    let home = format!("/local/domain/{}/x", g.domid().0);
    let mut payload = cstr(&home);
    payload.extend_from_slice(b"v");
    let ring = g.store_ring().expect("ring");
    let mut io = RingIo::new(Side::Client);
    // dom0 gives the guest its home, as a toolstack does.
    let d0c = store.connect(DomId::DOM0);
    let dir = format!("/local/domain/{}", g.domid().0);
    for (op, p) in [
        (XsOp::Write, cstr(&dir)),
        (XsOp::SetPerms, args(&[&dir, &format!("n{}", g.domid().0)])),
    ] {
        store
            .handle(d0c, &Header::new(op, 1, 0, p.len() as u32), &p)
            .expect("dom0");
        assert_eq!(store.pop(d0c).expect("reply").payload, b"OK\0");
    }
    let _ = store.take_mutations();
    let req = Packet::new(XsOp::Write, 7, 0, payload);
    io.write(ring.page, &req.to_vec()).expect("ring");
    g.notify(ring.port).expect("notify");
    let p = srv.receive(&mut store);
    assert_eq!((p.requests, p.bytes_out), (1, 0));
    assert_eq!(
        ring.page.ro().load_u32(field::RSP_PROD, Ordering::Acquire),
        0
    );
    assert!(
        !store.take_mutations().is_empty(),
        "the write is there to be logged"
    );
    let p = srv.transmit(&mut store);
    assert!(p.bytes_out > 0);
    let mut buf = [0u8; 64];
    let m = io.read(ring.page, &mut buf).expect("ring");
    let (reply, _) = Packet::parse(&buf[..m.bytes]).expect("reply");
    assert_eq!(reply.header.req_id, 7);
    assert_eq!(reply.op(), Some(XsOp::Write));
    srv.release(&mut store, g.domid());
    let _ = d0.destroy(g.domid());
}
