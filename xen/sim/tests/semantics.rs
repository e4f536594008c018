//! Xen semantics of the simulated hypervisor: grants, event channels,
//! domain lifecycle, crash isolation and fault injection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, Error, EventChannel, ForeignMapping,
    GrantStatus, GrantTable, LocalPages, Platform, PortStatus, RunState, ShutdownReason, Virq,
};
use xen::{DomId, Errno, GrantRef};
use xen_sim::{Hypervisor, SimDomain};

fn two_domains() -> (Hypervisor, SimDomain, SimDomain) {
    let hv = Hypervisor::new();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let b = hv.test_domain(&CreateConfig::default()).unwrap();
    (hv, a, b)
}

const SHORT: Option<Duration> = Some(Duration::from_millis(20));

#[test]
fn granted_page_is_shared_memory() {
    let (_hv, a, b) = two_domains();
    let pages = a.alloc_pages(2).unwrap();
    let g0 = a.grant_access(&pages, 0, b.domid(), false).unwrap();
    let g1 = a.grant_access(&pages, 1, b.domid(), false).unwrap();
    let m = b.map(a.domid(), &[g1, g0], false).unwrap();
    assert_eq!(m.granter(), a.domid());
    // b writes through its mapping; a sees it in its own pages.
    m.rw()
        .unwrap()
        .atomic_u32(0)
        .store(0xfeed, Ordering::Release);
    assert_eq!(pages.mem().ro().load_u32(4096, Ordering::Acquire), 0xfeed);
    pages.mem().write_bytes(8, b"from a");
    let mut buf = [0u8; 6];
    m.ro().read_bytes(4096 + 8, &mut buf);
    assert_eq!(&buf, b"from a");
}

#[test]
fn foreign_map_of_a_grant_for_someone_else_is_refused() {
    let hv = Hypervisor::new();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let b = hv.test_domain(&CreateConfig::default()).unwrap();
    let c = hv.test_domain(&CreateConfig::default()).unwrap();
    let pages = a.alloc_pages(1).unwrap();
    let g = a.grant_access(&pages, 0, b.domid(), false).unwrap();
    assert_eq!(
        c.map(a.domid(), &[g], true).err(),
        Some(Error::Grant(GrantStatus::BadGntref))
    );
    assert_eq!(
        b.map(a.domid(), &[GrantRef(g.0 + 100)], true).err(),
        Some(Error::Grant(GrantStatus::BadGntref))
    );
    assert_eq!(
        b.map(DomId(999), &[g], true).err(),
        Some(Error::Grant(GrantStatus::BadDomain))
    );
    let mut buf = [0u8; 4];
    assert_eq!(
        c.copy_from_grant(a.domid(), g, 0, &mut buf).err(),
        Some(Error::Grant(GrantStatus::BadGntref))
    );
}

#[test]
fn read_only_grants_are_honoured() {
    let (_hv, a, b) = two_domains();
    let pages = a.alloc_pages(1).unwrap();
    let g = a.grant_access(&pages, 0, b.domid(), true).unwrap();
    assert_eq!(
        b.map(a.domid(), &[g], false).err(),
        Some(Error::Grant(GrantStatus::PermissionDenied))
    );
    let m = b.map(a.domid(), &[g], true).unwrap();
    assert!(m.rw().is_none(), "a read-only mapping has no writable view");
    pages.mem().atomic_u64(16).store(5, Ordering::Relaxed);
    assert_eq!(m.ro().load_u64(16, Ordering::Relaxed), 5);
    assert_eq!(
        b.copy_to_grant(a.domid(), g, 0, b"x").err(),
        Some(Error::Grant(GrantStatus::PermissionDenied))
    );
    let mut out = [0u8; 8];
    b.copy_from_grant(a.domid(), g, 16, &mut out).unwrap();
    assert_eq!(u64::from_le_bytes(out), 5);
    assert_eq!(
        b.copy_from_grant(a.domid(), g, 4090, &mut out).err(),
        Some(Error::Grant(GrantStatus::BadCopyArg)),
        "a copy may not cross the page"
    );
}

#[test]
fn batched_copies_run_in_order_and_stop_at_the_first_failure() {
    use xen::platform::CopySeg;
    let (_hv, a, b) = two_domains();
    let pages = a.alloc_pages(2).unwrap();
    let rw = a.grant_access(&pages, 0, b.domid(), false).unwrap();
    let ro = a.grant_access(&pages, 1, b.domid(), true).unwrap();
    pages.mem().write_bytes(4096 + 8, b"source");
    let mut got = [0u8; 6];
    let mut segs = [
        CopySeg::FromGrant {
            dom: a.domid(),
            gref: ro,
            offset: 8,
            buf: &mut got,
        },
        CopySeg::ToGrant {
            dom: a.domid(),
            gref: rw,
            offset: 100,
            buf: b"dest",
        },
    ];
    b.copy_batch(&mut segs).unwrap();
    assert_eq!(&got, b"source");
    let mut back = [0u8; 4];
    pages.mem().read_bytes(100, &mut back);
    assert_eq!(&back, b"dest");
    // The second of three fails (read-only): the first is done, the
    // third is not.
    let mut segs = [
        CopySeg::ToGrant {
            dom: a.domid(),
            gref: rw,
            offset: 0,
            buf: b"one",
        },
        CopySeg::ToGrant {
            dom: a.domid(),
            gref: ro,
            offset: 0,
            buf: b"two",
        },
        CopySeg::ToGrant {
            dom: a.domid(),
            gref: rw,
            offset: 200,
            buf: b"three",
        },
    ];
    assert_eq!(
        b.copy_batch(&mut segs),
        Err((1, Error::Grant(GrantStatus::PermissionDenied)))
    );
    let mut one = [0u8; 3];
    pages.mem().read_bytes(0, &mut one);
    assert_eq!(&one, b"one");
    let mut three = [0u8; 5];
    pages.mem().read_bytes(200, &mut three);
    assert_eq!(three, [0; 5]);
}

#[test]
fn end_access_waits_for_unmap() {
    let (_hv, a, b) = two_domains();
    let pages = a.alloc_pages(1).unwrap();
    let g = a.grant_access(&pages, 0, b.domid(), false).unwrap();
    let m = b.map(a.domid(), &[g], false).unwrap();
    assert_eq!(a.end_access(g).err(), Some(Error::Errno(Errno::EBUSY)));
    drop(m);
    a.end_access(g).unwrap();
    assert!(b.map(a.domid(), &[g], false).is_err(), "revoked grant");
}

#[test]
fn destroy_revokes_grants_but_mappings_stay_valid() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let b = hv.test_domain(&CreateConfig::default()).unwrap();
    let pages = a.alloc_pages(1).unwrap();
    let g = a.grant_access(&pages, 0, b.domid(), false).unwrap();
    let m = b.map(a.domid(), &[g], false).unwrap();
    pages.mem().write_bytes(0, b"last words");
    d0.destroy(a.domid()).unwrap();
    // The mapping still reads the frame...
    let mut buf = [0u8; 10];
    m.ro().read_bytes(0, &mut buf);
    assert_eq!(&buf, b"last words");
    // ...but the grant is gone, and so is the domain.
    assert_eq!(
        b.map(a.domid(), &[g], true).err(),
        Some(Error::Grant(GrantStatus::BadDomain))
    );
    assert_eq!(a.alloc_pages(1).err(), Some(Error::Errno(Errno::ESRCH)));
    assert_eq!(d0.info(a.domid()).err(), Some(Error::Errno(Errno::ESRCH)));
}

#[test]
fn memory_limit_is_enforced() {
    let hv = Hypervisor::new();
    let a = hv
        .test_domain(&CreateConfig {
            max_mem_kib: 16,
            ..CreateConfig::default()
        })
        .unwrap();
    let p = a.alloc_pages(4).unwrap();
    assert_eq!(a.alloc_pages(1).err(), Some(Error::Errno(Errno::ENOMEM)));
    drop(p);
    a.alloc_pages(1)
        .expect("freed pages return to the domain's budget");
}

fn connect(a: &SimDomain, b: &SimDomain) -> (xen::EvtchnPort, xen::EvtchnPort) {
    let pa = a.alloc_unbound(b.domid()).unwrap();
    let pb = b.bind_interdomain(a.domid(), pa).unwrap();
    assert!(
        b.clear_pending(pb).unwrap(),
        "a new bound port starts pending"
    );
    (pa, pb)
}

#[test]
fn only_the_named_domain_may_bind() {
    let hv = Hypervisor::new();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let b = hv.test_domain(&CreateConfig::default()).unwrap();
    let c = hv.test_domain(&CreateConfig::default()).unwrap();
    let pa = a.alloc_unbound(b.domid()).unwrap();
    assert_eq!(
        c.bind_interdomain(a.domid(), pa).err(),
        Some(Error::Errno(Errno::EINVAL))
    );
    let pb = b.bind_interdomain(a.domid(), pa).unwrap();
    assert_eq!(
        a.status(pa).unwrap(),
        PortStatus::Interdomain {
            dom: b.domid(),
            port: pb
        }
    );
}

#[test]
fn notify_while_masked_stays_pending_and_fires_on_unmask() {
    let (_hv, a, b) = two_domains();
    let (pa, pb) = connect(&a, &b);
    b.mask(pb).unwrap();
    a.notify(pa).unwrap();
    assert!(!b.wait(&[pb], SHORT).unwrap(), "masked port does not wake");
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait(&[pb], Some(Duration::from_secs(5))));
    std::thread::sleep(Duration::from_millis(20));
    b.unmask(pb).unwrap();
    assert!(
        waiter.join().unwrap().unwrap(),
        "unmask fires the pending event"
    );
    assert!(b.clear_pending(pb).unwrap());
    assert!(!b.clear_pending(pb).unwrap(), "test-and-clear");
}

#[test]
fn closing_notifies_the_peer() {
    let (_hv, a, b) = two_domains();
    let (pa, pb) = connect(&a, &b);
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait(&[pb], Some(Duration::from_secs(5))));
    std::thread::sleep(Duration::from_millis(20));
    a.close(pa).unwrap();
    assert!(waiter.join().unwrap().unwrap());
    assert_eq!(
        b.status(pb).unwrap(),
        PortStatus::Unbound { remote: a.domid() }
    );
    assert_eq!(a.status(pa).unwrap(), PortStatus::Closed);
    assert_eq!(a.notify(pa).err(), Some(Error::Errno(Errno::EINVAL)));
}

#[test]
fn destroy_closes_channels_and_raises_dom_exc() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let exc = d0.bind_virq(Virq::DomExc).unwrap();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let b = hv.test_domain(&CreateConfig::default()).unwrap();
    let (_pa, pb) = connect(&a, &b);
    d0.destroy(a.domid()).unwrap();
    assert!(b.wait(&[pb], SHORT).unwrap(), "peer woken");
    assert_eq!(
        b.status(pb).unwrap(),
        PortStatus::Unbound { remote: a.domid() }
    );
    assert!(d0.wait(&[exc], SHORT).unwrap(), "VIRQ_DOM_EXC raised");
}

#[test]
fn dropped_notifications_are_lost_and_delayed_ones_arrive() {
    let (hv, a, b) = two_domains();
    let (pa, pb) = connect(&a, &b);
    hv.drop_notifications(a.domid(), 1);
    a.notify(pa).unwrap();
    assert!(!b.wait(&[pb], SHORT).unwrap(), "first notification dropped");
    a.notify(pa).unwrap();
    assert!(b.wait(&[pb], SHORT).unwrap());
    b.clear_pending(pb).unwrap();
    hv.delay_notifications(a.domid(), Some(Duration::from_millis(50)));
    a.notify(pa).unwrap();
    assert!(!b.wait(&[pb], Some(Duration::from_millis(5))).unwrap());
    assert!(b.wait(&[pb], Some(Duration::from_secs(5))).unwrap());
}

#[test]
fn unprivileged_domains_cannot_control_others() {
    let (_hv, a, b) = two_domains();
    assert_eq!(a.destroy(b.domid()).err(), Some(Error::Errno(Errno::EPERM)));
    assert_eq!(
        a.create(&CreateConfig::default()).err(),
        Some(Error::Errno(Errno::EPERM))
    );
}

fn image(kernel: &str) -> DomainImage<'_> {
    DomainImage {
        kernel: kernel.as_bytes(),
        cmdline: "hello=1",
        xenstore_domid: DomId::DOM0,
        console_domid: DomId::DOM0,
    }
}

fn wait_state(d0: &SimDomain, d: DomId, want: RunState) {
    for _ in 0..500 {
        if d0.info(d).map(|i| i.state) == Ok(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{d:?} never reached {want:?}: {:?}", d0.info(d));
}

#[test]
fn built_domain_runs_its_image_with_rings_and_shuts_down() {
    let hv = Hypervisor::new();
    hv.register_image("greeter", |dom: SimDomain| {
        let ring = dom.store_ring().expect("builder made a xenstore ring");
        ring.page.write_bytes(0, dom.cmdline().as_bytes());
        dom.notify(ring.port).ok();
        xen::platform::Console::write(&dom, b"hi from the guest\n");
        dom.shutdown_self(ShutdownReason::Reboot);
    });
    let d0 = hv.dom0();
    let d = d0.create(&CreateConfig::default()).unwrap();
    let built = d0.build(d, &image("greeter")).unwrap();
    // dom0 (acting as xenstored) binds the guest's store port and maps ref 1.
    let p = d0.bind_interdomain(d, built.store_port).unwrap();
    d0.clear_pending(p).unwrap();
    let ring = d0.map(d, &[GrantRef::RESERVED_XENSTORE], false).unwrap();
    assert_eq!(d0.info(d).unwrap().state, RunState::Paused);
    d0.unpause(d).unwrap();
    assert!(d0.wait(&[p], Some(Duration::from_secs(5))).unwrap());
    let mut buf = [0u8; 7];
    ring.ro().read_bytes(0, &mut buf);
    assert_eq!(&buf, b"hello=1");
    wait_state(&d0, d, RunState::Shutdown(ShutdownReason::Reboot));
    assert!(hv.join(d, Duration::from_secs(5)));
    assert!(hv.console_output(d).unwrap().contains("hi from the guest"));
    d0.destroy(d).unwrap();
    drop(ring);
    assert_eq!(hv.domains(), vec![DomId::DOM0]);
}

#[test]
fn a_panicking_domain_crashes_alone() {
    let hv = Hypervisor::new();
    hv.register_image("bomb", |_dom: SimDomain| panic!("on purpose"));
    let d0 = hv.dom0();
    let exc = d0.bind_virq(Virq::DomExc).unwrap();
    let d = d0.create(&CreateConfig::default()).unwrap();
    d0.build(d, &image("bomb")).unwrap();
    d0.unpause(d).unwrap();
    wait_state(&d0, d, RunState::Shutdown(ShutdownReason::Crash));
    assert!(d0.wait(&[exc], Some(Duration::from_secs(5))).unwrap());
    assert!(hv.console_output(d).unwrap().contains("on purpose"));
    // The host goes on.
    let e = d0.create(&CreateConfig::default()).unwrap();
    assert!(d0.info(e).is_ok());
}

#[test]
fn unknown_image_is_rejected_and_host_stays_up() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let d = d0.create(&CreateConfig::default()).unwrap();
    assert_eq!(
        d0.build(d, &image("no-such-image")).err(),
        Some(Error::Errno(Errno::ENOEXEC))
    );
    d0.destroy(d).unwrap();
}

#[test]
fn pause_stops_a_domain_at_its_next_notify() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let (pa, p0) = connect(&a, &d0);
    d0.pause(a.domid()).unwrap();
    assert_eq!(d0.info(a.domid()).unwrap().state, RunState::Paused);
    let a2 = a.clone();
    let t = std::thread::spawn(move || a2.notify(pa));
    assert!(!d0.wait(&[p0], Some(Duration::from_millis(50))).unwrap());
    d0.unpause(a.domid()).unwrap();
    t.join().unwrap().unwrap();
    assert!(d0.wait(&[p0], Some(Duration::from_secs(5))).unwrap());
}

#[test]
fn kill_crashes_a_domain_and_its_calls_fail() {
    let (hv, a, b) = two_domains();
    let (pa, _pb) = connect(&a, &b);
    hv.kill(a.domid()).unwrap();
    assert_eq!(a.notify(pa).err(), Some(Error::Errno(Errno::ESRCH)));
    assert_eq!(
        hv.dom0().info(a.domid()).unwrap().state,
        RunState::Shutdown(ShutdownReason::Crash)
    );
}
