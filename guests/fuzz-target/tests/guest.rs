//! The guest core against an in-memory store and the simulated hypervisor.

use std::time::{Duration, Instant};

use windsor_guest_fuzz_target::{host, Outcome};
use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
use xen::platform::{
    CreateConfig, DomainControl, DomainSave, RestoreTarget, RunState, ShutdownReason,
};
use xen::DomId;
use xen_sim::Hypervisor;

const T: TxId = TxId::NONE;

/// What a toolstack prepares: the domain's nodes, guest-writable where the
/// guest writes.
fn prepare(xs: &MemStore, d: DomId) -> String {
    let base = format!("/local/domain/{}", d.0);
    for (node, owner) in [
        ("", DomId::DOM0),
        ("/data", d),
        ("/control", DomId::DOM0),
        ("/control/shutdown", d),
        ("/control/misbehave", DomId::DOM0),
    ] {
        let p = format!("{base}{node}");
        xs.write(T, &p, b"").unwrap();
        let perms = [
            Perm {
                dom: owner,
                access: Access::None,
            },
            Perm {
                dom: d,
                access: Access::Read,
            },
        ];
        xs.set_perms(T, &p, if owner == d { &perms[..1] } else { &perms })
            .unwrap();
    }
    base
}

fn wait_for(xs: &MemStore, path: &str, want: &[u8]) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if xs.read(T, path).ok().as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{path} never became {want:?}");
}

fn boot(hv: &Hypervisor, xs: &MemStore) -> (DomId, String, std::thread::JoinHandle<Outcome>) {
    let dom = hv.test_domain(&CreateConfig::default()).unwrap();
    let d = xen::platform::Platform::domid(&dom);
    let base = prepare(xs, d);
    let gx = xs.connect(d);
    let t = std::thread::spawn(move || host::entry(dom, gx));
    wait_for(xs, &format!("{base}/data/booted"), b"1");
    (d, base, t)
}

#[test]
fn reports_itself_and_answers_each_request() {
    for (req, reason) in [
        ("poweroff", ShutdownReason::Poweroff),
        ("reboot", ShutdownReason::Reboot),
    ] {
        let hv = Hypervisor::new();
        let xs = MemStore::new();
        let (d, base, t) = boot(&hv, &xs);
        assert_eq!(
            xs.read(T, &format!("{base}/data/state")).unwrap(),
            b"running"
        );
        xs.write(T, &format!("{base}/control/shutdown"), req.as_bytes())
            .unwrap();
        assert_eq!(t.join().unwrap(), Outcome::Shutdown(reason));
        assert_eq!(
            xs.read(T, &format!("{base}/control/shutdown")).unwrap(),
            b"",
            "acknowledged"
        );
        assert_eq!(hv.dom0().info(d).unwrap().state, RunState::Shutdown(reason));
    }
}

#[test]
fn ignores_shutdown_when_told_then_crashes_when_told() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let (d, base, t) = boot(&hv, &xs);
    xs.write(T, &format!("{base}/control/misbehave"), b"ignore-shutdown")
        .unwrap();
    // The guest sees its watch events in order: misbehave first.
    xs.write(T, &format!("{base}/control/shutdown"), b"poweroff")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        xs.read(T, &format!("{base}/control/shutdown")).unwrap(),
        b"poweroff"
    );
    assert!(!t.is_finished());
    xs.write(T, &format!("{base}/control/misbehave"), b"crash")
        .unwrap();
    assert_eq!(t.join().unwrap(), Outcome::Shutdown(ShutdownReason::Crash));
    assert_eq!(
        hv.dom0().info(d).unwrap().state,
        RunState::Shutdown(ShutdownReason::Crash)
    );
}

/// Issue 16 item 6: dom0 removing the guest's directory (its watches
/// fire, the reads fail with `EACCES`) does not end the guest.
#[test]
fn keeps_running_when_its_directory_is_removed() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let (d, base, t) = boot(&hv, &xs);
    // Its boot writes done (`resumes` is the last): a write refused
    // after that is not what this test is about.
    wait_for(&xs, &format!("{base}/data/resumes"), b"0");
    xs.rm(T, &base).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "the guest ended when its directory went");
    // Still listening: give its nodes back, then ask it to power off.
    prepare(&xs, d);
    xs.write(T, &format!("{base}/control/shutdown"), b"poweroff")
        .unwrap();
    assert_eq!(
        t.join().unwrap(),
        Outcome::Shutdown(ShutdownReason::Poweroff)
    );
}

#[test]
fn spins_until_destroyed() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let (d, base, t) = boot(&hv, &xs);
    xs.write(T, &format!("{base}/control/misbehave"), b"spin")
        .unwrap();
    wait_for(&xs, &format!("{base}/data/state"), b"spinning");
    xs.write(T, &format!("{base}/control/shutdown"), b"poweroff")
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(!t.is_finished(), "a spinning guest does not answer");
    hv.dom0().destroy(d).unwrap();
    assert_eq!(t.join().unwrap(), Outcome::Killed);
}

#[test]
fn leaves_when_its_store_connection_goes() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let dom = hv.test_domain(&CreateConfig::default()).unwrap();
    let d = xen::platform::Platform::domid(&dom);
    let base = prepare(&xs, d);
    let gx = xs.connect(d);
    let gx2 = gx.clone();
    let t = std::thread::spawn(move || host::entry(dom, gx2));
    wait_for(&xs, &format!("{base}/data/booted"), b"1");
    gx.close();
    // Wake the guest's blocking wait: any store activity notifies waiters.
    xs.write(T, "/wake", b"").unwrap();
    assert_eq!(t.join().unwrap(), Outcome::StoreGone);
}

fn read(xs: &MemStore, path: &str) -> Vec<u8> {
    xs.read(T, path).unwrap()
}

fn wait_state(hv: &Hypervisor, d: DomId, want: RunState) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if hv.dom0().info(d).map(|i| i.state) == Ok(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{d:?} never reached {want:?}");
}

#[test]
fn suspends_resumes_in_a_new_domain_and_keeps_its_memory() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let d0 = hv.dom0();
    let dom = hv.test_domain(&CreateConfig::default()).unwrap();
    let d = xen::platform::Platform::domid(&dom);
    let xs2 = xs.clone();
    // The test is the toolstack: it prepares each domain's nodes before
    // the guest connects for it.
    let t = std::thread::spawn(move || {
        host::entry_with(dom, |id| {
            prepare(&xs2, id);
            Some(xs2.connect(id))
        })
    });
    let base = format!("/local/domain/{}", d.0);
    wait_for(&xs, &format!("{base}/data/resumes"), b"0");
    let boot_id = read(&xs, &format!("{base}/data/boot-id"));
    assert_eq!(boot_id.len(), 16, "hex boot id");

    let mut cur = d;
    for round in 1..=2u32 {
        let base = format!("/local/domain/{}", cur.0);
        xs.write(T, &format!("{base}/control/shutdown"), b"suspend")
            .unwrap();
        wait_state(&hv, cur, RunState::Shutdown(ShutdownReason::Suspend));
        assert_eq!(
            read(&xs, &format!("{base}/control/shutdown")),
            b"",
            "acknowledged"
        );
        let saved = d0.save(cur).unwrap();
        d0.destroy(cur).unwrap();
        xs.rm(T, &base).unwrap();
        let r = d0
            .restore(
                saved,
                &RestoreTarget {
                    xenstore_domid: DomId::DOM0,
                    console_domid: DomId::DOM0,
                },
            )
            .unwrap();
        assert_ne!(r.domid, cur);
        cur = r.domid;
        d0.unpause(cur).unwrap();
        let nbase = format!("/local/domain/{}", cur.0);
        wait_for(
            &xs,
            &format!("{nbase}/data/resumes"),
            round.to_string().as_bytes(),
        );
        assert_eq!(read(&xs, &format!("{nbase}/data/boot-id")), boot_id);
        assert_eq!(read(&xs, &format!("{nbase}/data/state")), b"running");
    }
    xs.write(
        T,
        &format!("/local/domain/{}/control/shutdown", cur.0),
        b"poweroff",
    )
    .unwrap();
    assert_eq!(
        t.join().unwrap(),
        Outcome::Shutdown(ShutdownReason::Poweroff)
    );
}

#[test]
fn a_suspended_guest_ends_when_destroyed_unsaved() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let (d, base, t) = boot(&hv, &xs);
    xs.write(T, &format!("{base}/control/shutdown"), b"suspend")
        .unwrap();
    wait_state(&hv, d, RunState::Shutdown(ShutdownReason::Suspend));
    assert!(!t.is_finished(), "parked in its suspend call");
    hv.dom0().destroy(d).unwrap();
    assert_eq!(t.join().unwrap(), Outcome::Killed);
}
