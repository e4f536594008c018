//! The toolstack on the simulated hypervisor with fuzz-target guests:
//! every transition, every illegal one, guests that comply, ignore, spin
//! and crash, and restarts over the same store.

mod common;

use common::{destroy_vm, ok, vm, wait_until};
use std::time::Duration;

use windsor_toolstack::action::{
    Action, ActionError, Class, EventOp, NetworkRecord, NewRecord, PowerState, Record, Reply,
    VifRecord, VmRecord,
};
use windsor_toolstack::host::{Host, Transport};
use windsor_toolstack::lifecycle::Op;
use windsor_toolstack::service::FUZZ_TEMPLATE;
use windsor_toolstack::ToolstackConfig;
use windsor_xenstore::client::{TxId, XenStore};
use xen::DomId;

const T: TxId = TxId::NONE;
/// Generous: the machine is shared and loaded.
const LONG: Duration = Duration::from_secs(60);

fn host_with(timeout: Duration) -> Host {
    Host::start(ToolstackConfig {
        shutdown_timeout: timeout,
        seed: 7,
        ..ToolstackConfig::default()
    })
    .unwrap()
}

fn host() -> Host {
    host_with(LONG)
}

fn create(h: &Host, name: &str, other: &[(&str, &str)]) -> String {
    let mut v = VmRecord {
        name_label: name.into(),
        PV_kernel: "fuzz-target".into(),
        ..VmRecord::default()
    };
    for (k, val) in other {
        v.other_config.insert((*k).into(), (*val).into());
    }
    match ok(h, Action::Create(NewRecord::Vm(v))) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    }
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
    wait_node(h, &format!("/local/domain/{}/data/booted", d.0), b"1");
    d
}

fn wait_node(h: &Host, path: &str, want: &[u8]) {
    wait_until(path, || h.store.read(T, path).ok().as_deref() == Some(want));
}

fn wait_power(h: &Host, r: &str, want: PowerState) {
    wait_until("power state", || vm(h, r).power_state == want);
}

/// Nothing of domain `d` is left: not in the hypervisor, not in the store.
fn assert_gone(h: &Host, d: DomId) {
    assert!(!h.hv.domains().contains(&d), "domain {d:?} still exists");
    assert!(h.store.read(T, &format!("/local/domain/{}", d.0)).is_err());
    wait_until("guest connection closed", || h.store.connections() == 1);
}

#[test]
fn full_lifecycle_and_cleanup() {
    let h = host();
    let frames = h.hv.frames_in_use();
    let r = create(&h, "one", &[]);
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    let d = start(&h, &r);
    let v = vm(&h, &r);
    assert_eq!(v.power_state, PowerState::Running);
    assert_eq!(v.domid, i64::from(d.0));
    assert_eq!(v.resident_on, h.toolstack.host_ref());
    assert_eq!(
        h.store
            .read(T, &format!("/local/domain/{}/name", d.0))
            .unwrap(),
        b"one"
    );
    ok(&h, Action::VmPause { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Paused);
    ok(&h, Action::VmUnpause { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Running);
    ok(&h, Action::VmSuspend { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Suspended);
    assert_gone(&h, d);
    ok(
        &h,
        Action::VmResume {
            vm: r.clone(),
            start_paused: false,
            force: false,
        },
    );
    let d2 = h.toolstack.domid(&r).unwrap();
    wait_node(&h, &format!("/local/domain/{}/data/booted", d2.0), b"1");
    ok(&h, Action::VmCleanShutdown { vm: r.clone() });
    let v = vm(&h, &r);
    assert_eq!(v.power_state, PowerState::Halted);
    assert_eq!(v.domid, -1);
    assert_eq!(v.last_shutdown_reason, "poweroff");
    assert_gone(&h, d2);
    let d3 = start(&h, &r);
    ok(&h, Action::VmHardShutdown { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    assert_gone(&h, d3);
    destroy_vm(&h, &r);
    assert_eq!(h.hv.domains(), h.service_domains());
    assert_eq!(h.hv.frames_in_use(), frames, "every page returned");
}

#[test]
fn start_paused_then_unpause() {
    let h = host();
    let r = create(&h, "p", &[]);
    ok(
        &h,
        Action::VmStart {
            vm: r.clone(),
            start_paused: true,
            force: false,
        },
    );
    assert_eq!(vm(&h, &r).power_state, PowerState::Paused);
    ok(&h, Action::VmUnpause { vm: r.clone() });
    let d = h.toolstack.domid(&r).unwrap();
    wait_node(&h, &format!("/local/domain/{}/data/booted", d.0), b"1");
    ok(&h, Action::VmHardShutdown { vm: r.clone() });
    assert_gone(&h, d);
}

#[test]
fn illegal_transitions_give_xapi_errors() {
    use PowerState::*;
    let h = host();
    let r = create(&h, "x", &[]);
    let vm_ = || r.clone();
    let halted_refusals: Vec<(Action, PowerState)> = vec![
        (Action::VmPause { vm: vm_() }, Running),
        (Action::VmUnpause { vm: vm_() }, Paused),
        (Action::VmCleanShutdown { vm: vm_() }, Running),
        (Action::VmShutdown { vm: vm_() }, Running),
        (Action::VmHardShutdown { vm: vm_() }, Running),
        (Action::VmCleanReboot { vm: vm_() }, Running),
        (Action::VmHardReboot { vm: vm_() }, Running),
        (Action::VmSuspend { vm: vm_() }, Running),
        (
            Action::VmResume {
                vm: vm_(),
                start_paused: false,
                force: false,
            },
            Suspended,
        ),
    ];
    for (a, expected) in halted_refusals {
        let name = a.name();
        let e = h.toolstack.handle(a).unwrap_err();
        assert_eq!(
            e,
            ActionError::VmBadPowerState {
                vm: r.clone(),
                expected,
                actual: Halted
            },
            "{name}"
        );
    }
    let d = start(&h, &r);
    let running_refusals: Vec<(Action, PowerState)> = vec![
        (
            Action::VmStart {
                vm: vm_(),
                start_paused: false,
                force: false,
            },
            Halted,
        ),
        (Action::VmUnpause { vm: vm_() }, Paused),
        (
            Action::VmResume {
                vm: vm_(),
                start_paused: false,
                force: false,
            },
            Suspended,
        ),
        (
            Action::Destroy {
                class: Class::Vm,
                r: vm_(),
            },
            Halted,
        ),
        (
            Action::VmSetMemory {
                vm: vm_(),
                value: 1 << 30,
            },
            Halted,
        ),
        (
            Action::VmSetVcpusMax {
                vm: vm_(),
                value: 2,
            },
            Halted,
        ),
        (
            Action::VmClone {
                vm: vm_(),
                new_name: "c".into(),
            },
            Halted,
        ),
    ];
    for (a, expected) in running_refusals {
        let name = a.name();
        let e = h.toolstack.handle(a).unwrap_err();
        assert_eq!(
            e,
            ActionError::VmBadPowerState {
                vm: r.clone(),
                expected,
                actual: Running
            },
            "{name}"
        );
    }
    ok(&h, Action::VmPause { vm: vm_() });
    for a in [
        Action::VmPause { vm: vm_() },
        Action::VmCleanShutdown { vm: vm_() },
        Action::VmSuspend { vm: vm_() },
    ] {
        assert_eq!(
            h.toolstack.handle(a).unwrap_err(),
            ActionError::VmBadPowerState {
                vm: r.clone(),
                expected: Running,
                actual: Paused
            }
        );
    }
    ok(&h, Action::VmHardShutdown { vm: vm_() });
    assert_gone(&h, d);

    // Templates are not started; bad handles are refused with their class.
    let t = match ok(
        &h,
        Action::GetByNameLabel {
            class: Class::Vm,
            label: FUZZ_TEMPLATE.into(),
        },
    ) {
        Reply::Refs(v) => v[0].clone(),
        r => panic!("{r:?}"),
    };
    let e = h
        .toolstack
        .handle(Action::VmStart {
            vm: t.clone(),
            start_paused: false,
            force: false,
        })
        .unwrap_err();
    assert_eq!(
        e,
        ActionError::VmIsTemplate {
            vm: t,
            op: Op::Start
        }
    );
    let e = h
        .toolstack
        .handle(Action::VmPause {
            vm: "OpaqueRef:nope".into(),
        })
        .unwrap_err();
    assert_eq!(
        e,
        ActionError::HandleInvalid {
            class: Class::Vm,
            r: "OpaqueRef:nope".into()
        }
    );
    let e = h
        .toolstack
        .handle(Action::GetByUuid {
            class: Class::Sr,
            uuid: "nope".into(),
        })
        .unwrap_err();
    assert_eq!(
        e,
        ActionError::UuidInvalid {
            class: Class::Sr,
            uuid: "nope".into()
        }
    );
    let e = h
        .toolstack
        .handle(Action::VmSetMemoryLimits {
            vm: vm_(),
            static_min: 0,
            static_max: 1,
            dynamic_min: 2,
            dynamic_max: 2,
        })
        .unwrap_err();
    assert_eq!(
        e,
        ActionError::MemoryConstraintViolationOrder {
            static_min: 0,
            dynamic_min: 2,
            dynamic_max: 2,
            static_max: 1
        }
    );
    let e = h
        .toolstack
        .handle(Action::Create(NewRecord::Vm(VmRecord {
            PV_kernel: "no-such-kernel".into(),
            ..VmRecord::default()
        })))
        .map(|r| match r {
            Reply::Ref(r) => h.toolstack.handle(Action::VmStart {
                vm: r,
                start_paused: false,
                force: false,
            }),
            r => panic!("{r:?}"),
        })
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ActionError::BootloaderFailed { kernel, .. } if kernel == "no-such-kernel"),
        "{e:?}"
    );
    assert_eq!(
        h.hv.domains(),
        h.service_domains(),
        "failed start leaves nothing"
    );
}

#[test]
fn template_clone_provision_start() {
    let h = host();
    let t = match ok(
        &h,
        Action::GetByNameLabel {
            class: Class::Vm,
            label: FUZZ_TEMPLATE.into(),
        },
    ) {
        Reply::Refs(v) => v[0].clone(),
        r => panic!("{r:?}"),
    };
    let c = match ok(
        &h,
        Action::VmClone {
            vm: t.clone(),
            new_name: "from-template".into(),
        },
    ) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    };
    assert!(vm(&h, &c).is_a_template);
    ok(&h, Action::VmProvision { vm: c.clone() });
    let v = vm(&h, &c);
    assert!(!v.is_a_template);
    assert_eq!(v.parent, t);
    let d = start(&h, &c);
    ok(&h, Action::VmCleanShutdown { vm: c });
    assert_gone(&h, d);
}

#[test]
fn ignored_shutdown_times_out_and_shutdown_falls_back_to_hard() {
    let h = host_with(Duration::from_millis(500));
    let r = create(&h, "deaf", &[("misbehave", "ignore-shutdown")]);
    let d = start(&h, &r);
    let e = h
        .toolstack
        .handle(Action::VmCleanShutdown { vm: r.clone() })
        .unwrap_err();
    assert_eq!(e, ActionError::VmFailedShutdownAck { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Running);
    assert!(vm(&h, &r).current_operations.is_empty());
    ok(&h, Action::VmShutdown { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    assert_gone(&h, d);
}

#[test]
fn spinning_guest_is_hard_shut_down() {
    let h = host_with(Duration::from_millis(500));
    let r = create(&h, "spin", &[]);
    let d = start(&h, &r);
    let base = format!("/local/domain/{}", d.0);
    h.store
        .write(T, &format!("{base}/control/misbehave"), b"spin")
        .unwrap();
    wait_node(&h, &format!("{base}/data/state"), b"spinning");
    let e = h
        .toolstack
        .handle(Action::VmCleanReboot { vm: r.clone() })
        .unwrap_err();
    assert_eq!(e, ActionError::VmFailedShutdownAck { vm: r.clone() });
    ok(&h, Action::VmShutdown { vm: r.clone() });
    assert_eq!(vm(&h, &r).power_state, PowerState::Halted);
    assert_gone(&h, d);
}

#[test]
fn crash_halts_the_vm_and_cleans_up() {
    let h = host();
    let frames = h.hv.frames_in_use();
    let r = create(&h, "crashy", &[]);
    let d = start(&h, &r);
    h.store
        .write(
            T,
            &format!("/local/domain/{}/control/misbehave", d.0),
            b"crash",
        )
        .unwrap();
    wait_power(&h, &r, PowerState::Halted);
    let v = vm(&h, &r);
    assert_eq!(v.last_shutdown_reason, "crash");
    assert_eq!(v.domid, -1);
    assert_gone(&h, d);
    assert_eq!(h.hv.frames_in_use(), frames);

    // A crash injected by the hypervisor, with actions_after_crash=restart.
    ok(
        &h,
        Action::AddToOtherConfig {
            class: Class::Vm,
            r: r.clone(),
            key: "k".into(),
            value: "v".into(),
        },
    );
    let mut v = vm(&h, &r);
    v.actions_after_crash = "restart".into();
    let r2 = match ok(&h, Action::Create(NewRecord::Vm(v))) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    };
    let d2 = start(&h, &r2);
    h.hv.kill(d2).unwrap();
    wait_until("restart", || {
        h.toolstack.domid(&r2).is_some_and(|nd| nd != d2)
    });
    assert_eq!(vm(&h, &r2).power_state, PowerState::Running);
    assert_eq!(vm(&h, &r2).last_shutdown_reason, "crash");
    assert!(!h.hv.domains().contains(&d2));
    ok(&h, Action::VmHardShutdown { vm: r2 });
    assert_eq!(h.hv.domains(), h.service_domains());
}

#[test]
fn reboots_give_a_new_domain() {
    let h = host();
    let r = create(&h, "rb", &[]);
    let d = start(&h, &r);
    ok(&h, Action::VmCleanReboot { vm: r.clone() });
    let d2 = h.toolstack.domid(&r).unwrap();
    assert_ne!(d, d2);
    assert_eq!(vm(&h, &r).power_state, PowerState::Running);
    wait_node(&h, &format!("/local/domain/{}/data/booted", d2.0), b"1");
    assert!(!h.hv.domains().contains(&d));
    ok(&h, Action::VmHardReboot { vm: r.clone() });
    let d3 = h.toolstack.domid(&r).unwrap();
    assert_ne!(d2, d3);
    wait_node(&h, &format!("/local/domain/{}/data/booted", d3.0), b"1");
    // A guest that reboots by itself comes back too (actions_after_reboot).
    h.store
        .write(
            T,
            &format!("/local/domain/{}/control/shutdown", d3.0),
            b"reboot",
        )
        .unwrap();
    wait_until("self reboot", || {
        h.toolstack.domid(&r).is_some_and(|nd| nd != d3)
    });
    ok(&h, Action::VmHardShutdown { vm: r });
    assert_eq!(h.hv.domains(), h.service_domains());
}

#[test]
fn devices_are_plumbed_in_the_standard_layout() {
    let h = host();
    let net = match ok(
        &h,
        Action::Create(NewRecord::Network(NetworkRecord {
            name_label: "n".into(),
            ..NetworkRecord::default()
        })),
    ) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    };
    let r = create(&h, "net", &[]);
    let vif = match ok(
        &h,
        Action::Create(NewRecord::Vif(VifRecord {
            vm: r.clone(),
            network: net.clone(),
            device: "0".into(),
            ..VifRecord::default()
        })),
    ) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    };
    assert_eq!(vm(&h, &r).VIFs, vec![vif.clone()]);
    let d = start(&h, &r);
    let fe = format!("/local/domain/{}/device/vif/0", d.0);
    let be = format!("/local/domain/0/backend/vif/{}/0", d.0);
    assert_eq!(
        h.store.read(T, &format!("{fe}/backend")).unwrap(),
        be.as_bytes()
    );
    assert_eq!(h.store.read(T, &format!("{fe}/state")).unwrap(), b"1");
    assert_eq!(
        h.store.read(T, &format!("{be}/frontend")).unwrap(),
        fe.as_bytes()
    );
    assert_eq!(
        h.store.read(T, &format!("{be}/frontend-id")).unwrap(),
        d.0.to_string().as_bytes()
    );
    assert_eq!(h.store.read(T, &format!("{be}/state")).unwrap(), b"1");
    ok(&h, Action::VmHardShutdown { vm: r.clone() });
    assert!(h.store.read(T, &be).is_err(), "backend removed");
    ok(
        &h,
        Action::Destroy {
            class: Class::Vm,
            r,
        },
    );
    assert!(h
        .toolstack
        .handle(Action::GetRecord {
            class: Class::Vif,
            r: vif
        })
        .is_err());
    ok(
        &h,
        Action::Destroy {
            class: Class::Network,
            r: net,
        },
    );
}

#[test]
fn records_survive_a_toolstack_restart() {
    let mut h = host();
    let a = create(&h, "a", &[]);
    let b = create(&h, "b", &[]);
    let db = start(&h, &b);
    let host_ref = h.toolstack.host_ref();
    // Same hypervisor, same store: the running VM is re-attached.
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert_eq!(h.toolstack.host_ref(), host_ref);
    assert_eq!(vm(&h, &a).name_label, "a");
    assert_eq!(vm(&h, &b).power_state, PowerState::Running);
    assert_eq!(h.toolstack.domid(&b), Some(db));
    let templates = match ok(
        &h,
        Action::GetByNameLabel {
            class: Class::Vm,
            label: FUZZ_TEMPLATE.into(),
        },
    ) {
        Reply::Refs(v) => v,
        r => panic!("{r:?}"),
    };
    assert_eq!(templates.len(), 1, "the template is not created twice");
    // The re-attached guest still answers.
    ok(&h, Action::VmCleanShutdown { vm: b.clone() });
    let db2 = start(&h, &b);
    let store = h.store.clone();
    // A stale domain's nodes (as a host crash leaves them) with no domain.
    store
        .write(TxId::NONE, "/local/domain/777/name", b"ghost")
        .unwrap();
    store
        .write(TxId::NONE, "/local/domain/0/backend/vif/777/0/state", b"1")
        .unwrap();
    drop(h);
    // A new hypervisor (host reboot): the VM is Halted, records are kept.
    let h3 = Host::with_store(store, ToolstackConfig::default(), Transport::default()).unwrap();
    let gone = |path: &str| {
        assert!(
            h3.store.read(TxId::NONE, path).is_err(),
            "{path} outlived its domain"
        );
    };
    gone("/local/domain/777");
    gone("/local/domain/0/backend/vif/777");
    // The old domain of `b` went with its hypervisor, and its nodes with
    // it — unless the new host gave that id to a live domain.
    let listed = h3.store.directory(TxId::NONE, "/local/domain").unwrap();
    assert!(
        !listed.contains(&db2.0.to_string()) || h3.hv.domains().contains(&db2),
        "stale nodes of dom{} kept",
        db2.0
    );
    assert_eq!(vm(&h3, &b).power_state, PowerState::Halted);
    assert_eq!(vm(&h3, &b).domid, -1);
    assert_eq!(vm(&h3, &a).name_label, "a");
    start(&h3, &b);
}

#[test]
fn event_from_sees_every_change() {
    let h = host();
    let all = match ok(
        &h,
        Action::EventFrom {
            classes: vec!["vm".into()],
            token: 0,
            timeout: Duration::ZERO,
        },
    ) {
        Reply::Events(b) => b,
        r => panic!("{r:?}"),
    };
    assert_eq!(all.events.len(), 1, "the template");
    let mut token = all.token;
    let r = create(&h, "ev", &[]);
    let mut seen = Vec::new();
    let mut step = |h: &Host, a: Action| {
        ok(h, a);
        let b = match ok(
            h,
            Action::EventFrom {
                classes: vec!["*".into()],
                token,
                timeout: Duration::from_secs(5),
            },
        ) {
            Reply::Events(b) => b,
            r => panic!("{r:?}"),
        };
        assert!(b.token > token);
        token = b.token;
        for e in b.events {
            if let Some(Record::Vm(v)) = &e.snapshot {
                seen.push((e.operation, v.power_state));
            } else {
                seen.push((e.operation, PowerState::Halted));
            }
        }
    };
    step(
        &h,
        Action::VmStart {
            vm: r.clone(),
            start_paused: false,
            force: false,
        },
    );
    step(&h, Action::VmPause { vm: r.clone() });
    step(&h, Action::VmUnpause { vm: r.clone() });
    step(&h, Action::VmHardShutdown { vm: r.clone() });
    step(
        &h,
        Action::Destroy {
            class: Class::Vm,
            r: r.clone(),
        },
    );
    assert_eq!(
        seen,
        [
            (EventOp::Add, PowerState::Running), // created and started: coalesced
            (EventOp::Mod, PowerState::Paused),
            (EventOp::Mod, PowerState::Running),
            (EventOp::Mod, PowerState::Halted),
            (EventOp::Del, PowerState::Halted),
        ]
    );
    // A timeout with no change returns no events and the same token.
    match ok(
        &h,
        Action::EventFrom {
            classes: vec!["vm".into()],
            token,
            timeout: Duration::from_millis(10),
        },
    ) {
        Reply::Events(b) => {
            assert!(b.events.is_empty());
            assert_eq!(b.token, token);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn operations_on_a_busy_vm_are_refused() {
    let h = host_with(Duration::from_secs(3));
    let r = create(&h, "busy", &[("misbehave", "ignore-shutdown")]);
    start(&h, &r);
    let ts = h.toolstack.clone();
    let r2 = r.clone();
    let t = std::thread::spawn(move || ts.handle(Action::VmCleanShutdown { vm: r2 }));
    wait_until("operation in progress", || {
        !vm(&h, &r).current_operations.is_empty()
    });
    assert!(vm(&h, &r).allowed_operations.is_empty());
    let e = h
        .toolstack
        .handle(Action::VmPause { vm: r.clone() })
        .unwrap_err();
    assert_eq!(
        e,
        ActionError::OtherOperationInProgress {
            class: Class::Vm,
            r: r.clone(),
            op: Op::CleanShutdown
        }
    );
    assert_eq!(
        t.join().unwrap().unwrap_err(),
        ActionError::VmFailedShutdownAck { vm: r.clone() }
    );
    ok(&h, Action::VmHardShutdown { vm: r });
}

#[test]
fn many_vms_in_parallel() {
    let h = host();
    let refs: Vec<String> = (0..16).map(|i| create(&h, &format!("p{i}"), &[])).collect();
    std::thread::scope(|s| {
        for chunk in refs.chunks(4) {
            let h = &h;
            s.spawn(move || {
                for r in chunk {
                    start(h, r);
                    ok(h, Action::VmCleanReboot { vm: r.clone() });
                    ok(h, Action::VmCleanShutdown { vm: r.clone() });
                }
            });
        }
    });
    for r in &refs {
        assert_eq!(vm(&h, r).power_state, PowerState::Halted);
    }
    assert_eq!(h.hv.domains(), h.service_domains());
    wait_until("guest connections closed", || h.store.connections() == 1);
}

#[test]
fn direct_transport_lifecycle() {
    let h = Host::start_with(
        ToolstackConfig {
            seed: 3,
            ..ToolstackConfig::default()
        },
        Transport::Direct,
    )
    .unwrap();
    assert_eq!(h.service_domains(), vec![DomId::DOM0]);
    let r = create(&h, "direct", &[]);
    let d = start(&h, &r);
    ok(&h, Action::VmCleanReboot { vm: r.clone() });
    let d2 = h.toolstack.domid(&r).unwrap();
    assert_ne!(d, d2);
    wait_node(&h, &format!("/local/domain/{}/data/booted", d2.0), b"1");
    ok(&h, Action::VmCleanShutdown { vm: r });
    assert_gone(&h, d2);
}
