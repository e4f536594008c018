//! Save and restore of a suspended domain: memory and the guest's own
//! state survive, the guest resumes in a new domain, the old domain's
//! grants and ports are gone, a discarded image ends its thread.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use xen::platform::{
    CreateConfig, DomainBuilder, DomainControl, DomainImage, DomainSave, Error, EventChannel,
    ForeignMapping, GrantStatus, GrantTable, LocalPages, Platform, PortStatus, RestoreTarget,
    RunState, ShutdownReason, SuspendOutcome,
};
use xen::{DomId, Errno, EvtchnPort, GrantRef, PAGE_SIZE};
use xen_sim::{Hypervisor, SimDomain};

const LONG: Duration = Duration::from_secs(10);

/// What the test guest reports.
#[derive(Debug)]
enum Report {
    /// Before suspending: its domid, the grant it offered dom0, its port
    /// for dom0, and the gfn of its first page.
    Ready(DomId, GrantRef, EvtchnPort, u64),
    /// After resuming: its new domid, whether its pages kept their bytes,
    /// its counter, the gfn of its first page, its new store port.
    Resumed(DomId, bool, u64, u64, EvtchnPort),
    /// Its suspend call failed with this error; it returned.
    Gone(Error),
}

fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

/// Registers "saver": fills two pages, grants one to dom0, keeps a counter
/// on its heap and its stack, suspends, and reports what it finds after.
fn register_saver(hv: &Hypervisor) -> mpsc::Receiver<Report> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    hv.register_image("saver", move |dom: SimDomain| {
        let tx = tx.lock().unwrap().clone();
        let pages = dom.alloc_pages(2).unwrap();
        let mut bytes = vec![0u8; 2 * PAGE_SIZE];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = pattern(i);
        }
        pages.mem().write_bytes(0, &bytes);
        let gref = dom.grant_access(&pages, 0, DomId::DOM0, false).unwrap();
        let port = dom.alloc_unbound(DomId::DOM0).unwrap();
        let mut counter = Box::new(41u64);
        let mut on_stack = 1u64;
        tx.send(Report::Ready(dom.domid(), gref, port, pages.gfn(0).0))
            .unwrap();
        match dom.suspend_self() {
            Ok(SuspendOutcome::Resumed) => {
                *counter += 1;
                on_stack += 1;
                let mut now = vec![0u8; 2 * PAGE_SIZE];
                pages.mem().read_bytes(0, &mut now);
                let port = dom.store_ring().map_or(EvtchnPort(0), |r| r.port);
                tx.send(Report::Resumed(
                    dom.domid(),
                    now == bytes,
                    *counter + on_stack,
                    pages.gfn(0).0,
                    port,
                ))
                .unwrap();
                dom.shutdown_self(ShutdownReason::Poweroff);
            }
            Ok(SuspendOutcome::Cancelled) => unreachable!("the simulator never cancels"),
            Err(e) => {
                tx.send(Report::Gone(e)).unwrap();
            }
        }
    });
    rx
}

fn image(name: &str) -> DomainImage<'_> {
    DomainImage {
        kernel: name.as_bytes(),
        cmdline: "",
        xenstore_domid: DomId::DOM0,
        console_domid: DomId::DOM0,
    }
}

fn wait_state(d0: &SimDomain, d: DomId, want: RunState) {
    let end = std::time::Instant::now() + LONG;
    while std::time::Instant::now() < end {
        if d0.info(d).map(|i| i.state) == Ok(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{d:?} never reached {want:?}: {:?}", d0.info(d));
}

const TARGET: RestoreTarget = RestoreTarget {
    xenstore_domid: DomId::DOM0,
    console_domid: DomId::DOM0,
};

/// Boots "saver" and waits until it has suspended.
fn boot_and_suspend(hv: &Hypervisor, rx: &mpsc::Receiver<Report>) -> (DomId, GrantRef, u64) {
    let d0 = hv.dom0();
    let d = d0.create(&CreateConfig::default()).unwrap();
    d0.build(d, &image("saver")).unwrap();
    d0.unpause(d).unwrap();
    let Report::Ready(id, gref, _port, gfn) = rx.recv_timeout(LONG).unwrap() else {
        panic!("guest did not get ready");
    };
    assert_eq!(id, d);
    wait_state(&d0, d, RunState::Shutdown(ShutdownReason::Suspend));
    (d, gref, gfn)
}

#[test]
fn memory_and_guest_state_survive_save_and_restore_into_a_new_domain() {
    let hv = Hypervisor::new();
    let rx = register_saver(&hv);
    let d0 = hv.dom0();
    let base = hv.frames_in_use();
    let (d, gref, old_gfn) = boot_and_suspend(&hv, &rx);
    // Two pages of its own plus the two ring pages.
    assert_eq!(hv.frames_in_use(), base + 4);
    // dom0 mapped the guest's grant before the save: a stale mapping.
    let stale = d0.map(d, &[gref], false).unwrap();

    let saved = d0.save(d).unwrap();
    assert_eq!(saved.saved_from(), d);
    assert_eq!(
        saved.memory_bytes(),
        2 * PAGE_SIZE,
        "ring pages are not saved"
    );
    // Saving twice is refused: the guest is no longer parked in the domain.
    assert_eq!(d0.save(d).err(), Some(Error::Errno(Errno::EINVAL)));
    d0.destroy(d).unwrap();
    assert_eq!(
        hv.frames_in_use(),
        base,
        "the destroyed domain's memory is back"
    );
    assert_eq!(
        d0.map(d, &[gref], false).err(),
        Some(Error::Grant(GrantStatus::BadDomain))
    );

    let r = d0.restore(saved, &TARGET).unwrap();
    let nd = r.domid;
    assert_ne!(nd, d, "a restore makes a new domain");
    assert_eq!(d0.info(nd).unwrap().state, RunState::Paused);
    assert_eq!(hv.frames_in_use(), base + 4);
    let rings = r.rings.expect("a built guest gets fresh rings");
    // The fresh rings are offered through the reserved grants, as a build does.
    let store = d0.map(nd, &[GrantRef::RESERVED_XENSTORE], false).unwrap();
    let mut first = [1u8; 16];
    store.ro().read_bytes(0, &mut first);
    assert_eq!(first, [0; 16], "a fresh, zeroed store ring");
    let p0 = d0.bind_interdomain(nd, rings.store_port).unwrap();
    // The old domain's grants and ports did not come along.
    assert_eq!(
        d0.map(nd, &[gref], false).err(),
        Some(Error::Grant(GrantStatus::BadGntref))
    );
    // The stale mapping kept its memory, but it is not the guest's any more.
    stale.rw().unwrap().write_bytes(0, b"stale write");

    d0.unpause(nd).unwrap();
    let Report::Resumed(now, kept, counter, gfn, port) = rx.recv_timeout(LONG).unwrap() else {
        panic!("guest did not resume");
    };
    assert_eq!(now, nd, "the guest's handle acts for the new domain");
    assert!(
        kept,
        "its pages kept their bytes (and the stale write missed them)"
    );
    assert_eq!(counter, 42 + 2, "heap and stack state survived");
    assert_ne!(gfn, old_gfn, "new frames behind the same guest addresses");
    assert_eq!(
        port, rings.store_port,
        "its start info has the new store port"
    );
    assert_eq!(
        d0.status(p0).unwrap(),
        PortStatus::Interdomain {
            dom: nd,
            port: rings.store_port
        }
    );
    wait_state(&d0, nd, RunState::Shutdown(ShutdownReason::Poweroff));
    assert!(hv.join(nd, LONG));
    drop((store, stale));
    d0.destroy(nd).unwrap();
    assert_eq!(hv.frames_in_use(), base);
}

#[test]
fn a_dropped_image_ends_its_guest_thread() {
    let hv = Hypervisor::new();
    let rx = register_saver(&hv);
    let d0 = hv.dom0();
    let (d, _, _) = boot_and_suspend(&hv, &rx);
    let saved = d0.save(d).unwrap();
    d0.destroy(d).unwrap();
    // Still parked: nothing reported.
    assert!(rx.recv_timeout(Duration::from_millis(30)).is_err());
    drop(saved);
    // Dropping waited for the thread; it saw ESRCH and returned.
    match rx.try_recv() {
        Ok(Report::Gone(e)) => assert_eq!(e, Error::Errno(Errno::ESRCH)),
        other => panic!("expected the guest to give up, got {other:?}"),
    }
    assert_eq!(hv.domains(), vec![DomId::DOM0]);
}

#[test]
fn destroying_an_unsaved_suspended_domain_ends_its_guest() {
    let hv = Hypervisor::new();
    let rx = register_saver(&hv);
    let d0 = hv.dom0();
    let (d, _, _) = boot_and_suspend(&hv, &rx);
    d0.destroy(d).unwrap();
    match rx.recv_timeout(LONG) {
        Ok(Report::Gone(e)) => assert_eq!(e, Error::Errno(Errno::ESRCH)),
        other => panic!("expected the guest to give up, got {other:?}"),
    }
}

#[test]
fn only_a_suspended_domain_can_be_saved_and_only_by_dom0() {
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    assert_eq!(d0.save(a.domid()).err(), Some(Error::Errno(Errno::EINVAL)));
    assert_eq!(a.save(a.domid()).err(), Some(Error::Errno(Errno::EPERM)));
    a.shutdown_self(ShutdownReason::Suspend);
    // Shut down for suspend, but nobody is parked in the suspend call.
    assert_eq!(d0.save(a.domid()).err(), Some(Error::Errno(Errno::EINVAL)));
    assert_eq!(d0.save(DomId(999)).err(), Some(Error::Errno(Errno::ESRCH)));
}

#[test]
fn a_test_domain_suspends_and_resumes_twice() {
    // A domain driven by the test itself: no image, no rings.
    let hv = Hypervisor::new();
    let d0 = hv.dom0();
    let a = hv.test_domain(&CreateConfig::default()).unwrap();
    let pages = a.alloc_pages(1).unwrap();
    pages.mem().write_bytes(100, b"twice");
    let a2 = a.clone();
    let t = std::thread::spawn(move || {
        let r1 = a2.suspend_self();
        let id1 = a2.domid();
        let r2 = a2.suspend_self();
        (r1, id1, r2, a2.domid())
    });
    let mut d = a.domid();
    let mut ids = Vec::new();
    for _ in 0..2 {
        wait_state(&d0, d, RunState::Shutdown(ShutdownReason::Suspend));
        let saved = d0.save(d).unwrap();
        d0.destroy(d).unwrap();
        let r = d0.restore(saved, &TARGET).unwrap();
        assert!(r.rings.is_none());
        d0.unpause(r.domid).unwrap();
        d = r.domid;
        ids.push(d);
    }
    let (r1, id1, r2, id2) = t.join().unwrap();
    assert_eq!(r1, Ok(SuspendOutcome::Resumed));
    assert_eq!(r2, Ok(SuspendOutcome::Resumed));
    assert_eq!(vec![id1, id2], ids);
    assert_eq!(a.domid(), ids[1], "every clone of the handle follows");
    let mut out = [0u8; 5];
    pages.mem().read_bytes(100, &mut out);
    assert_eq!(&out, b"twice");
    assert_eq!(d0.info(d).unwrap().tot_pages, 1);
}
