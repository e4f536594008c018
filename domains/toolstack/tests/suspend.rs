//! Suspend and resume keep the guest: the platform saves the suspended
//! domain, resume restores it into a new domain, and the fuzz-target's
//! in-memory state (its boot id, its resume counter) proves it survived.

mod common;

use common::{destroy_vm, ok, vm, wait_until};
use std::time::Duration;

use windsor_toolstack::action::{
    Action, ActionError, Class, NewRecord, PowerState, Reply, VmRecord, NULL_REF,
};
use windsor_toolstack::host::{Host, Transport};
use windsor_toolstack::ToolstackConfig;
use windsor_xenstore::client::{TxId, XenStore};
use xen::DomId;

const T: TxId = TxId::NONE;
const LONG: Duration = Duration::from_secs(60);

fn host() -> Host {
    Host::start(ToolstackConfig {
        shutdown_timeout: LONG,
        seed: 11,
        ..ToolstackConfig::default()
    })
    .unwrap()
}

fn create(h: &Host, name: &str) -> String {
    let v = VmRecord {
        name_label: name.into(),
        PV_kernel: "fuzz-target".into(),
        ..VmRecord::default()
    };
    match ok(h, Action::Create(NewRecord::Vm(v))) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    }
}

fn node(h: &Host, d: DomId, rel: &str) -> Option<Vec<u8>> {
    h.store
        .read(T, &format!("/local/domain/{}/{rel}", d.0))
        .ok()
}

fn wait_node(h: &Host, d: DomId, rel: &str, want: &[u8]) {
    wait_until(rel, || node(h, d, rel).as_deref() == Some(want));
}

fn start(h: &Host, r: &str) -> DomId {
    ok(
        h,
        Action::VmStart {
            vm: r.into(),
            start_paused: false,
            force: false,
        },
    );
    let d = h.toolstack.domid(r).unwrap();
    // The guest writes its boot id, then `data/resumes`, last.
    wait_node(h, d, "data/resumes", b"0");
    d
}

fn resume(h: &Host, r: &str, paused: bool) -> Result<Reply, ActionError> {
    h.toolstack.handle(Action::VmResume {
        vm: r.into(),
        start_paused: paused,
        force: false,
    })
}

/// Nothing of domain `d` is left: not in the hypervisor, not in the store.
fn assert_gone(h: &Host, d: DomId) {
    assert!(!h.hv.domains().contains(&d), "domain {d:?} still exists");
    assert!(node(h, d, "").is_none(), "its nodes are removed");
    wait_until("guest connection closed", || h.store.connections() == 1);
}

/// Suspends `r` (running in `d`) and checks the VM is Suspended with no
/// domain.
fn suspend(h: &Host, r: &str, d: DomId) {
    ok(h, Action::VmSuspend { vm: r.into() });
    let v = vm(h, r);
    assert_eq!(v.power_state, PowerState::Suspended);
    assert_eq!(v.domid, -1);
    assert_eq!(v.last_shutdown_reason, "suspend");
    assert_eq!(h.toolstack.domid(r), None);
    assert_gone(h, d);
}

#[test]
fn suspend_and_resume_twice_keep_the_guest() {
    let h = host();
    let frames = h.hv.frames_in_use();
    let r = create(&h, "keeper");
    let d = start(&h, &r);
    let boot_id = node(&h, d, "data/boot-id").expect("the guest reports its boot id");
    assert_eq!(node(&h, d, "data/resumes").as_deref(), Some(&b"0"[..]));

    let mut cur = d;
    for round in 1..=2u32 {
        suspend(&h, &r, cur);
        assert_eq!(
            h.hv.frames_in_use(),
            frames,
            "a saved VM holds no guest frames"
        );
        resume(&h, &r, false).unwrap();
        let v = vm(&h, &r);
        assert_eq!(v.power_state, PowerState::Running);
        let nd = h.toolstack.domid(&r).unwrap();
        assert_ne!(nd, cur, "resume makes a new domain");
        assert_eq!(v.domid, i64::from(nd.0));
        assert_eq!(v.resident_on, h.toolstack.host_ref());
        wait_node(&h, nd, "data/resumes", round.to_string().as_bytes());
        assert_eq!(
            node(&h, nd, "data/boot-id"),
            Some(boot_id.clone()),
            "the same guest, not a new boot"
        );
        assert_eq!(node(&h, nd, "name").as_deref(), Some(&b"keeper"[..]));
        cur = nd;
    }
    // The resumed guest still answers its control node.
    ok(&h, Action::VmCleanShutdown { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    assert_gone(&h, cur);
    assert_eq!(h.hv.frames_in_use(), frames, "every page returned");
    // A fresh start is a new boot.
    let d2 = start(&h, &r);
    assert_ne!(node(&h, d2, "data/boot-id"), Some(boot_id));
    assert_eq!(node(&h, d2, "data/resumes").as_deref(), Some(&b"0"[..]));
    ok(&h, Action::VmHardShutdown { vm: r });
}

#[test]
fn resume_paused_resumes_the_guest_at_unpause() {
    let h = host();
    let r = create(&h, "paused");
    let d = start(&h, &r);
    let boot_id = node(&h, d, "data/boot-id").unwrap();
    suspend(&h, &r, d);
    resume(&h, &r, true).unwrap();
    assert_eq!(vm(&h, &r).power_state, PowerState::Paused);
    let nd = h.toolstack.domid(&r).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        node(&h, nd, "data/resumes"),
        None,
        "a paused domain does not run"
    );
    ok(&h, Action::VmUnpause { vm: r.clone() });
    wait_node(&h, nd, "data/resumes", b"1");
    assert_eq!(node(&h, nd, "data/boot-id"), Some(boot_id));
    ok(&h, Action::VmHardShutdown { vm: r });
}

#[test]
fn hard_shutdown_of_a_suspended_vm_discards_its_image() {
    let h = host();
    let frames = h.hv.frames_in_use();
    let r = create(&h, "discard");
    let d = start(&h, &r);
    let boot_id = node(&h, d, "data/boot-id").unwrap();
    suspend(&h, &r, d);
    ok(&h, Action::VmHardShutdown { vm: r.clone() });
    let v = vm(&h, &r);
    assert_eq!(v.power_state, PowerState::Halted);
    assert_eq!(h.hv.frames_in_use(), frames);
    assert_eq!(h.hv.domains(), h.service_domains());
    assert!(matches!(
        resume(&h, &r, false),
        Err(ActionError::VmBadPowerState {
            expected: PowerState::Suspended,
            actual: PowerState::Halted,
            ..
        })
    ));
    // What was discarded does not come back: the next start boots anew.
    let d2 = start(&h, &r);
    assert_ne!(node(&h, d2, "data/boot-id"), Some(boot_id));
    assert_eq!(node(&h, d2, "data/resumes").as_deref(), Some(&b"0"[..]));
    ok(&h, Action::VmHardShutdown { vm: r });
    assert_eq!(h.hv.frames_in_use(), frames);
}

#[test]
fn destroying_a_suspended_vm_frees_it() {
    let h = host();
    let frames = h.hv.frames_in_use();
    let r = create(&h, "gone");
    let d = start(&h, &r);
    suspend(&h, &r, d);
    destroy_vm(&h, &r);
    assert_eq!(h.hv.domains(), h.service_domains());
    assert_eq!(h.hv.frames_in_use(), frames);
}

#[test]
fn without_its_image_a_suspended_vm_cannot_resume_but_can_be_shut_down() {
    let mut h = host();
    let r = create(&h, "lost");
    let d = start(&h, &r);
    suspend(&h, &r, d);
    // The image lives in the toolstack's memory: a new toolstack has none.
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert_eq!(vm(&h, &r).power_state, PowerState::Suspended);
    match resume(&h, &r, false) {
        Err(ActionError::HandleInvalid { class, r }) => {
            assert_eq!(class, Class::Vdi);
            assert_eq!(r, NULL_REF);
        }
        other => panic!("expected HANDLE_INVALID(VDI, null), got {other:?}"),
    }
    assert_eq!(vm(&h, &r).power_state, PowerState::Suspended);
    assert_eq!(h.hv.domains(), h.service_domains());
    ok(&h, Action::VmHardShutdown { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    start(&h, &r);
    ok(&h, Action::VmHardShutdown { vm: r });
}

#[test]
fn direct_transport_guest_reconnects_after_resume() {
    let h = Host::start_with(
        ToolstackConfig {
            seed: 12,
            ..ToolstackConfig::default()
        },
        Transport::Direct,
    )
    .unwrap();
    let r = create(&h, "direct");
    let d = start(&h, &r);
    let boot_id = node(&h, d, "data/boot-id").unwrap();
    suspend(&h, &r, d);
    resume(&h, &r, false).unwrap();
    let nd = h.toolstack.domid(&r).unwrap();
    wait_node(&h, nd, "data/resumes", b"1");
    assert_eq!(node(&h, nd, "data/boot-id"), Some(boot_id));
    ok(&h, Action::VmCleanShutdown { vm: r });
    assert_gone(&h, nd);
}
