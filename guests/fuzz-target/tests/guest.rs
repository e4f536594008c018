//! The guest core against an in-memory store and the simulated hypervisor.

use std::time::{Duration, Instant};

use windsor_guest_fuzz_target::{host, Outcome};
use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
use xen::platform::{CreateConfig, DomainControl, RunState, ShutdownReason};
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
        ("suspend", ShutdownReason::Suspend),
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
