//! The daemon hosting the xenbus ring server: guests of a simulated
//! hypervisor reach the daemon's persistent store over their rings while
//! host clients use the socket (and dom0 an adopted connection).
//!
//! Each test runs a `Daemon` in process, on a thread of its own, serving
//! the rings of a xenstore domain of the simulator; guests are parked
//! images whose `XenbusClient` the test drives. Covered: rings, not
//! sockets, carry the guests (`XS_CONTROL connections`); per-domain
//! permissions and one quota per domain across transports; watch events
//! both ways; a ring write is on disk before the
//! guest sees its reply, and survives a restart; a hostile ring loses only
//! its own connection; `XS_RELEASE` and a guest's death tear the ring down
//! and fire `@releaseDomain`; special-path permissions and per-domain state
//! survive a restart.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::TempDir;
use windsor_xenstore::client::{Access, Call, ClientError, Perm, TxId, XenStore};
use windsor_xenstore::daemon::{Adopter, Config, Daemon, Engine, Rings};
use windsor_xenstore::persist::Log;
use windsor_xenstore::stream::StreamStore;
use windsor_xenstore::wire::XsOp;
use windsor_xenstore::xenbus::ring::field;
use windsor_xenstore::xenbus::{ServerConfig, XenbusClient};
use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, EventChannel, Platform,
};
use xen::{DomId, Errno};
use xen_sim::{Hypervisor, SimDomain};

const T: TxId = TxId::NONE;
const LONG: Duration = Duration::from_secs(10);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The daemon on its thread, serving `xsd`'s rings.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    adopter: Adopter,
    socket: std::path::PathBuf,
}

impl Running {
    fn start(dir: &Path, xsd: Option<&SimDomain>) -> Running {
        let socket = dir.join("socket");
        let cfg = Config {
            socket: socket.clone(),
            data_dir: dir.join("data"),
            snapshot_every: 1_000_000,
            commit_threads: 2,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let xsd = xsd.cloned();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut d = Daemon::bind(cfg).expect("daemon binds");
                if let Some(xsd) = xsd {
                    let rings =
                        Rings::new(Arc::new(xsd), ServerConfig::default()).expect("ring server");
                    d.serve_rings(rings).expect("rings served");
                }
                tx.send(d.adopter()).expect("adopter");
                d.run(&stop).expect("daemon runs");
            })
        };
        let adopter = rx.recv_timeout(LONG).expect("daemon started");
        Running {
            stop,
            thread: Some(thread),
            adopter,
            socket,
        }
    }

    fn dom0(&self) -> StreamStore {
        StreamStore::from_stream(self.adopter.connect(DomId::DOM0).expect("connect"))
            .expect("dom0 store")
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("daemon thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `XS_CONTROL connections` of the daemon, as `(domid, kind)`.
fn connections(xs: &StreamStore) -> Vec<(u16, String)> {
    windsor_xenstore::client::ops::connections(xs).expect("connections")
}

/// A simulated host: dom0 (the test), the xenstore domain, parked guests.
struct Sim {
    hv: Hypervisor,
    d0: SimDomain,
    xsd: SimDomain,
    parked: Receiver<SimDomain>,
}

impl Sim {
    fn new() -> Sim {
        let hv = Hypervisor::new();
        let d0 = hv.dom0();
        let xsd = hv
            .test_domain(&CreateConfig {
                max_evtchn_port: 4095,
                ..CreateConfig::default()
            })
            .expect("xenstore domain");
        let (tx, parked) = channel::<SimDomain>();
        let tx = Mutex::new(tx);
        hv.register_image("parked", move |dom: SimDomain| {
            let _ = tx.lock().expect("lock").send(dom.clone());
            while dom.wait(&[], Some(Duration::from_millis(20))).is_ok() {}
        });
        Sim {
            hv,
            d0,
            xsd,
            parked,
        }
    }

    /// Builds a guest, gives it its home, introduces it through `dom0`
    /// (the daemon maps its ring before it replies), starts it.
    fn guest(&self, dom0: &StreamStore) -> SimDomain {
        let d = self.d0.create(&CreateConfig::default()).expect("create");
        let built = self
            .d0
            .build(
                d,
                &DomainImage {
                    kernel: b"parked",
                    cmdline: "",
                    xenstore_domid: self.xsd.domid(),
                    console_domid: DomId::DOM0,
                },
            )
            .expect("build");
        let home = format!("/local/domain/{}", d.0);
        dom0.write(T, &home, b"").expect("home");
        dom0.set_perms(
            T,
            &home,
            &[Perm {
                dom: d,
                access: Access::None,
            }],
        )
        .expect("home perms");
        dom0.introduce(d, built.store_gfn.0, built.store_port)
            .expect("introduce");
        self.d0.unpause(d).expect("unpause");
        let dom = self.parked.recv_timeout(LONG).expect("guest started");
        assert_eq!(dom.domid(), d);
        dom
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for d in self.hv.domains() {
            if d != DomId::DOM0 && d != self.xsd.domid() {
                let _ = self.d0.destroy(d);
            }
        }
    }
}

fn client(dom: &SimDomain) -> XenbusClient<'_, SimDomain> {
    let mut c = XenbusClient::new(dom).expect("guest has a ring");
    c.set_reply_timeout(LONG);
    c
}

#[test]
fn guests_use_rings_with_their_own_permissions_and_watches_cross_transports() {
    let dir = TempDir::new("rings-perms");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let (a, b) = (sim.guest(&dom0), sim.guest(&dom0));
    let (xa, xb) = (client(&a), client(&b));

    let conns = connections(&dom0);
    for g in [&a, &b] {
        assert!(
            conns.contains(&(g.domid().0, "ring".to_string())),
            "{conns:?}"
        );
        assert!(
            !conns.contains(&(g.domid().0, "socket".to_string())),
            "{conns:?}"
        );
    }

    let only_a = dom0
        .call(
            XsOp::Control,
            T,
            format!("connections\0{}\0", a.domid().0).as_bytes(),
        )
        .expect("connections of one domain");
    assert_eq!(only_a, format!("{} ring\n\0", a.domid().0).as_bytes());

    xa.write(T, "data/v", b"from a").expect("a writes its home");
    let pa = format!("/local/domain/{}/data/v", a.domid().0);
    assert_eq!(dom0.read(T, &pa).expect("dom0 reads"), b"from a");
    // The socket sees the same store.
    let sock = StreamStore::connect(&daemon.socket).expect("socket client");
    assert_eq!(sock.read(T, &pa).expect("socket reads"), b"from a");
    // b may not read a's home, nor write outside its own.
    assert_eq!(xb.read(T, &pa), Err(ClientError::Store(Errno::EACCES)));
    assert_eq!(
        xb.write(T, "/elsewhere", b"x"),
        Err(ClientError::Store(Errno::EACCES))
    );

    // Ring -> socket and socket -> ring watch events.
    sock.watch(&pa, "s").expect("socket watch");
    assert_eq!(sock.next_event(Some(LONG)).expect("initial").token, "s");
    xa.watch("control/x", "g").expect("guest watch");
    assert_eq!(xa.next_event(Some(LONG)).expect("initial").token, "g");
    xa.write(T, "data/v", b"again").expect("write");
    let e = sock.next_event(Some(LONG)).expect("event for the socket");
    assert_eq!((e.path.as_str(), e.token.as_str()), (pa.as_str(), "s"));
    let pc = format!("/local/domain/{}/control/x", a.domid().0);
    dom0.write(T, &pc, b"go").expect("dom0 writes control");
    let e = xa.next_event(Some(LONG)).expect("event for the guest");
    assert_eq!(e.token, "g");
    assert_eq!(xa.read(T, "control/x").expect("read"), b"go");
}

#[test]
fn an_acknowledged_ring_write_is_on_disk_and_survives_a_restart() {
    let dir = TempDir::new("rings-durable");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let g = sim.guest(&dom0);
    let xg = client(&g);
    let path = format!("/local/domain/{}/data/n", g.domid().0);
    for i in 0..20 {
        let v = format!("value-{i}");
        xg.write(T, "data/n", v.as_bytes()).expect("write");
        // What is in the log files the moment the guest has its reply. (A
        // copy also sees writes still in the page cache, so this checks
        // the plumbing; the gate itself is checked deterministically by
        // the unit test `daemon::rings::tests`.)
        let copy = TempDir::new("rings-durable-copy");
        for f in std::fs::read_dir(dir.0.join("data")).expect("data dir") {
            let f = f.expect("entry");
            std::fs::copy(f.path(), copy.0.join(f.file_name())).expect("copy");
        }
        let (log, recovered) = Log::open(&copy.0, 1, Box::new(|_| {})).expect("recover");
        drop(log);
        let mut engine = Engine::new();
        engine.recover(&recovered).expect("replay");
        let node = engine.store().tree().get(&path).map(|n| n.value.to_vec());
        assert_eq!(
            node.as_deref(),
            Some(v.as_bytes()),
            "write {i} was acknowledged before it was durable"
        );
    }
    drop(xg);
    drop(dom0);
    daemon.stop();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let sock = StreamStore::connect(&daemon.socket).expect("socket client");
    assert_eq!(sock.read(T, &path).expect("read"), b"value-19");
}

#[test]
fn a_hostile_ring_disconnects_only_its_domain() {
    let dir = TempDir::new("rings-hostile");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let sock = StreamStore::connect(&daemon.socket).expect("socket client");
    let (good, bad, big) = (sim.guest(&dom0), sim.guest(&dom0), sim.guest(&dom0));
    let (xg, xb) = (client(&good), client(&bad));
    xg.write(T, "data/v", b"1").expect("good works");
    xb.write(T, "data/v", b"1").expect("bad works, at first");

    // Bad indices.
    let ring = bad.store_ring().expect("ring");
    ring.page
        .atomic_u32(field::REQ_PROD)
        .store(0x4000_0000, Ordering::Release);
    bad.notify(ring.port).expect("notify");
    // An oversized length.
    let ring2 = big.store_ring().expect("ring");
    let mut io =
        windsor_xenstore::xenbus::ring::RingIo::new(windsor_xenstore::xenbus::ring::Side::Client);
    let h = windsor_xenstore::wire::Header::new(XsOp::Write, 1, 0, 5000);
    assert_eq!(io.write(ring2.page, &h.to_bytes()), Ok(16));
    big.notify(ring2.port).expect("notify");

    wait_until("both hostile rings to be ignored", || {
        let c = connections(&dom0);
        c.contains(&(bad.domid().0, "ring-ignored".into()))
            && c.contains(&(big.domid().0, "ring-ignored".into()))
    });
    assert_ne!(ring.page.ro().load_u32(field::ERROR, Ordering::Acquire), 0);
    assert_ne!(ring2.page.ro().load_u32(field::ERROR, Ordering::Acquire), 0);
    // Everyone else goes on: the good guest, the socket client, dom0.
    for i in 0..20 {
        xg.write(T, "data/v", i.to_string().as_bytes())
            .expect("good guest served");
        sock.write(T, "/hostile/s", i.to_string().as_bytes())
            .expect("socket served");
    }
    assert_eq!(xg.read(T, "data/v").expect("read"), b"19");
    assert_eq!(sock.read(T, "/hostile/s").expect("read"), b"19");
    assert!(
        connections(&dom0).contains(&(good.domid().0, "ring".into())),
        "the good guest keeps its ring"
    );
}

#[test]
fn release_and_death_tear_rings_down_and_fire_release_domain() {
    let dir = TempDir::new("rings-release");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let sock = StreamStore::connect(&daemon.socket).expect("socket client");
    sock.watch("@releaseDomain", "rel").expect("watch");
    assert_eq!(sock.next_event(Some(LONG)).expect("initial").token, "rel");
    let (dead, released, other) = (sim.guest(&dom0), sim.guest(&dom0), sim.guest(&dom0));
    let xo = client(&other);
    xo.write(T, "data/v", b"1").expect("write");

    // Death: the ring's port closes; the daemon releases the domain.
    sim.d0.destroy(dead.domid()).expect("destroy");
    let e = sock
        .next_event(Some(LONG))
        .expect("@releaseDomain on death");
    assert_eq!(
        (e.path.as_str(), e.token.as_str()),
        ("@releaseDomain", "rel")
    );
    wait_until("the dead guest's ring to go", || {
        !connections(&dom0).iter().any(|(d, _)| *d == dead.domid().0)
    });
    let intro = |d: DomId| {
        dom0.call(XsOp::IsDomainIntroduced, T, format!("{}\0", d.0).as_bytes())
            .expect("is introduced")
    };
    assert_eq!(intro(dead.domid()), b"F\0");

    // XS_RELEASE from dom0.
    dom0.release(released.domid()).expect("release");
    let e = sock
        .next_event(Some(LONG))
        .expect("@releaseDomain on release");
    assert_eq!(e.path, "@releaseDomain");
    assert!(!connections(&dom0)
        .iter()
        .any(|(d, _)| *d == released.domid().0));
    assert_eq!(intro(released.domid()), b"F\0");
    let mut xr = client(&released);
    xr.set_reply_timeout(Duration::from_millis(200));
    assert!(
        xr.read(T, "data/v").is_err(),
        "a released guest's ring is not served"
    );

    // The third goes on.
    xo.write(T, "data/v", b"2").expect("still served");
    assert_eq!(intro(other.domid()), b"T\0");
}

#[test]
fn special_path_perms_and_domain_state_survive_a_restart() {
    let dir = TempDir::new("special-perms");
    let daemon = Running::start(&dir.0, None);
    let dom0 = daemon.dom0();
    let (d5, d6) = (DomId(5), DomId(6));
    dom0.introduce(d5, 0x1000, xen::EvtchnPort(3))
        .expect("introduce 5");
    dom0.introduce(d6, 0x2000, xen::EvtchnPort(4))
        .expect("introduce 6");
    // Domain 6 acts for domain 5.
    dom0.call(XsOp::SetTarget, T, b"6\x005\0")
        .expect("set target");
    // C xenstored answers GET_PERMS on special paths with EINVAL (so do
    // we); what the perms do is gate the events, checked below.
    let p = |d: u16| {
        [
            Perm {
                dom: DomId::DOM0,
                access: Access::None,
            },
            Perm {
                dom: DomId(d),
                access: Access::Read,
            },
        ]
    };
    dom0.set_perms(T, "@introduceDomain", &p(5))
        .expect("perms of @introduceDomain");
    dom0.set_perms(T, "@releaseDomain", &p(9))
        .expect("perms of @releaseDomain");
    dom0.write(T, "/only5", b"x").expect("write");
    dom0.set_perms(
        T,
        "/only5",
        &[Perm {
            dom: d5,
            access: Access::None,
        }],
    )
    .expect("perms");
    drop(dom0);
    daemon.stop();

    let daemon = Running::start(&dir.0, None);
    let dom0 = daemon.dom0();
    for d in [d5, d6] {
        let r = dom0
            .call(XsOp::IsDomainIntroduced, T, format!("{}\0", d.0).as_bytes())
            .expect("is introduced");
        assert_eq!(r, b"T\0", "domain {d:?} is still introduced");
    }
    // The target relation survived: domain 6 acts for 5.
    let as6 =
        StreamStore::from_stream(daemon.adopter.connect(d6).expect("connect")).expect("dom6 store");
    assert_eq!(as6.read(T, "/only5").expect("6 reads 5's node"), b"x");
    // The perms of the special paths still gate their events: domain 5
    // may read @introduceDomain only, domain 9 @releaseDomain only.
    let watcher = |d: DomId| {
        let s =
            StreamStore::from_stream(daemon.adopter.connect(d).expect("connect")).expect("store");
        s.watch("@introduceDomain", "i").expect("watch");
        s.watch("@releaseDomain", "r").expect("watch");
        while s.next_event(Some(Duration::from_millis(100))).is_ok() {}
        s
    };
    let (as5, as9) = (watcher(d5), watcher(DomId(9)));
    let quiet = |s: &StreamStore, what: &str| {
        assert_eq!(
            s.next_event(Some(Duration::from_millis(200))),
            Err(ClientError::Timeout),
            "{what}"
        );
    };
    dom0.introduce(DomId(7), 0x3000, xen::EvtchnPort(5))
        .expect("introduce 7");
    assert_eq!(
        as5.next_event(Some(LONG)).expect("event").path,
        "@introduceDomain"
    );
    quiet(&as9, "no @introduceDomain event for domain 9");
    dom0.release(DomId(7)).expect("release 7");
    assert_eq!(
        as9.next_event(Some(LONG)).expect("event").path,
        "@releaseDomain"
    );
    quiet(&as5, "no @releaseDomain event for domain 5");
}

#[test]
fn a_domain_has_one_quota_whatever_the_transport() {
    let dir = TempDir::new("rings-quota");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let g = sim.guest(&dom0);
    let xg = client(&g);
    // The same domain on an adopted stream (as a host-side helper of it).
    let side = StreamStore::from_stream(daemon.adopter.connect(g.domid()).expect("connect"))
        .expect("store");
    // 128 watches per domain, and one more as C xenstored counts.
    for i in 0..100 {
        xg.watch(&format!("data/w{i}"), "t").expect("ring watch");
    }
    for i in 100..129 {
        side.watch(&format!("data/w{i}"), "t")
            .expect("stream watch");
    }
    assert_eq!(
        xg.watch("data/over", "t"),
        Err(ClientError::Store(Errno::E2BIG))
    );
    assert_eq!(
        side.watch("data/over", "t"),
        Err(ClientError::Store(Errno::E2BIG))
    );
    // dom0 is exempt.
    dom0.watch("/any", "t").expect("dom0 watch");
}

/// Issue 16 item 6: `XS_INTRODUCE` says `OK` only for a ring the daemon
/// serves, and a stray one cannot take a running guest's ring away.
#[test]
fn introduce_fails_for_an_unmappable_ring_and_spares_a_running_guest() {
    let dir = TempDir::new("rings-introduce");
    let sim = Sim::new();
    let daemon = Running::start(&dir.0, Some(&sim.xsd));
    let dom0 = daemon.dom0();
    let a = sim.guest(&dom0);
    let xa = client(&a);
    let ad = a.domid();
    let introduced = |d: u16| {
        dom0.call(XsOp::IsDomainIntroduced, T, format!("{d}\0").as_bytes())
            .expect("XS_IS_DOMAIN_INTRODUCED")
    };
    let introduce = |d: u16, gfn: u64, port: u32| {
        dom0.call(
            XsOp::Introduce,
            T,
            format!("{d}\0{gfn}\0{port}\0").as_bytes(),
        )
    };

    // A domain that does not exist, and one that exists with no ring
    // granted (created, never built): no ring to map, so no OK, and the
    // store does not call them introduced.
    assert!(introduce(900, 1, 1).is_err(), "no such domain");
    assert_eq!(introduced(900), b"F\0");
    let bare = sim.d0.create(&CreateConfig::default()).expect("create");
    let r = introduce(bare.0, 1, 1);
    assert!(
        matches!(r, Err(ClientError::Store(_))),
        "unmappable ring: {r:?}"
    );
    assert_eq!(introduced(bare.0), b"F\0");
    assert!(!connections(&dom0).iter().any(|(d, _)| *d == bare.0));

    // The guest watches; `XS_INTRODUCE <running domid> 1 1` is refused and
    // changes nothing: its ring, its watch and its port still work.
    xa.watch("control/x", "g").expect("guest watch");
    assert_eq!(xa.next_event(Some(LONG)).expect("initial").token, "g");
    assert_eq!(
        introduce(ad.0, 1, 1),
        Err(ClientError::Store(Errno::EINVAL))
    );
    assert_eq!(introduced(ad.0), b"T\0");
    assert!(connections(&dom0).contains(&(ad.0, "ring".to_string())));
    let pc = format!("/local/domain/{}/control/x", ad.0);
    dom0.write(T, &pc, b"still").expect("dom0 writes control");
    assert_eq!(xa.next_event(Some(LONG)).expect("event").token, "g");
    xa.write(T, "data/alive", b"1")
        .expect("the guest's ring works");

    // Removing its home does not take its ring either: it gets errors for
    // what is gone, and the connection stays.
    dom0.rm(T, &format!("/local/domain/{}", ad.0))
        .expect("rm home");
    assert_eq!(xa.next_event(Some(LONG)).expect("rm fires").token, "g");
    assert!(matches!(
        xa.read(T, "control/x"),
        Err(ClientError::Store(Errno::ENOENT | Errno::EACCES))
    ));
    assert!(connections(&dom0).contains(&(ad.0, "ring".to_string())));
    assert_eq!(introduced(ad.0), b"T\0");
    let _ = sim.d0.destroy(bare);
}
