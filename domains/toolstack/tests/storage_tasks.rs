//! Storage, network and task records: the local SR, its PBD and the
//! default network from the first start (and added to an older pool
//! database), the SR calls with XAPI's refusals, and tasks with their
//! events and bounds.

mod common;

use common::ok;
use std::time::Duration;

use windsor_toolstack::action::{
    Action, ActionError, Class, EventOp, NewRecord, PbdRecord, PoolRecord, Record, Reply, SrRecord,
    SrSpec, TaskOutcome, TaskRecord, TaskStatus, VdiRecord, NULL_REF,
};
use windsor_toolstack::host::Host;
use windsor_toolstack::service::{DEFAULT_BRIDGE, DEFAULT_NETWORK, LOCAL_SR};
use windsor_toolstack::task::TaskLimits;
use windsor_toolstack::ToolstackConfig;
use windsor_xenstore::client::{TxId, XenStore};

const T: TxId = TxId::NONE;

fn host() -> Host {
    Host::start(ToolstackConfig {
        seed: 5,
        ..ToolstackConfig::default()
    })
    .unwrap()
}

fn refs(h: &Host, class: Class) -> Vec<String> {
    match ok(h, Action::GetAll { class }) {
        Reply::Refs(r) => r,
        r => panic!("{r:?}"),
    }
}

fn record(h: &Host, class: Class, r: &str) -> Record {
    match ok(h, Action::GetRecord { class, r: r.into() }) {
        Reply::Record(rec) => rec,
        r => panic!("{r:?}"),
    }
}

fn pool(h: &Host) -> PoolRecord {
    match record(h, Class::Pool, &refs(h, Class::Pool)[0]) {
        Record::Pool(p) => p,
        r => panic!("{r:?}"),
    }
}

fn sr(h: &Host, r: &str) -> SrRecord {
    match record(h, Class::Sr, r) {
        Record::Sr(s) => s,
        r => panic!("{r:?}"),
    }
}

fn pbd(h: &Host, r: &str) -> PbdRecord {
    match record(h, Class::Pbd, r) {
        Record::Pbd(p) => p,
        r => panic!("{r:?}"),
    }
}

fn task(h: &Host, r: &str) -> TaskRecord {
    match record(h, Class::Task, r) {
        Record::Task(t) => t,
        r => panic!("{r:?}"),
    }
}

fn new_ref(h: &Host, a: Action) -> String {
    match ok(h, a) {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    }
}

/// The local SR, its PBD, the network, and the pool's SR fields.
fn assert_defaults(h: &Host) {
    let host = h.toolstack.host_ref();
    let p = pool(h);
    let local = p.default_SR.clone();
    assert_ne!(local, NULL_REF);
    assert_eq!(p.suspend_image_SR, local);
    assert_eq!(p.crash_dump_SR, local);
    let s = sr(h, &local);
    assert_eq!(s.name_label, LOCAL_SR);
    assert_eq!(s.ty, "ext");
    assert_eq!(s.content_type, "user");
    assert_eq!(s.PBDs.len(), 1);
    let d = pbd(h, &s.PBDs[0]);
    assert_eq!(d.host, host);
    assert_eq!(d.SR, local);
    assert!(d.currently_attached);
    match record(h, Class::Host, &host) {
        Record::Host(hr) => assert!(hr.PBDs.contains(&s.PBDs[0]), "{:?}", hr.PBDs),
        r => panic!("{r:?}"),
    }
    let nets = refs(h, Class::Network);
    assert_eq!(nets.len(), 1);
    let pifs = refs(h, Class::Pif);
    assert_eq!(pifs.len(), 1);
    match record(h, Class::Network, &nets[0]) {
        Record::Network(n) => {
            assert_eq!(n.name_label, DEFAULT_NETWORK);
            assert_eq!(n.bridge, DEFAULT_BRIDGE);
            assert_eq!(n.PIFs, pifs);
        }
        r => panic!("{r:?}"),
    }
    match record(h, Class::Pif, &pifs[0]) {
        Record::Pif(p) => {
            assert_eq!(p.device, "eth0");
            assert_eq!(p.host, host);
            assert_eq!(p.network, nets[0]);
            assert!(p.currently_attached && p.management && p.physical);
            assert_eq!(p.MAC.len(), 17, "{}", p.MAC);
        }
        r => panic!("{r:?}"),
    }
    match record(h, Class::Host, &host) {
        Record::Host(hr) => assert_eq!(hr.PIFs, pifs),
        r => panic!("{r:?}"),
    }
    // The network cannot go while the host's interface is on it.
    assert_eq!(
        h.toolstack
            .handle(Action::Destroy {
                class: Class::Network,
                r: nets[0].clone()
            })
            .unwrap_err(),
        ActionError::NetworkContainsPif { pifs }
    );
    // Kept in the pool database.
    let uuid = local.strip_prefix("OpaqueRef:").unwrap();
    assert!(h.store.read(T, &format!("/pool/SR/{uuid}")).is_ok());
    let pu = s.PBDs[0].strip_prefix("OpaqueRef:").unwrap();
    assert!(h.store.read(T, &format!("/pool/PBD/{pu}")).is_ok());
}

fn counts(h: &Host) -> (usize, usize, usize, usize) {
    (
        refs(h, Class::Sr).len(),
        refs(h, Class::Pbd).len(),
        refs(h, Class::Network).len(),
        refs(h, Class::Pif).len(),
    )
}

#[test]
fn first_start_has_local_storage_and_a_network() {
    let mut h = host();
    assert_defaults(&h);
    assert_eq!(counts(&h), (1, 1, 1, 1));
    let before = pool(&h);
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert_eq!(counts(&h), (1, 1, 1, 1), "a restart adds nothing");
    assert_eq!(pool(&h), before);
    assert_defaults(&h);
}

/// A pool database written before Windsor had storage records: a host
/// and a pool whose `default_SR` is null, no SR, PBD or network.
#[test]
fn an_older_pool_database_gets_the_defaults() {
    let mut h = host();
    for dir in ["/pool/SR", "/pool/PBD", "/pool/network", "/pool/PIF"] {
        h.store.rm(T, dir).unwrap();
    }
    let p = pool(&h);
    let path = format!("/pool/pool/{}", p.uuid);
    let mut old: serde_json::Value =
        serde_json::from_slice(&h.store.read(T, &path).unwrap()).unwrap();
    let o = old.as_object_mut().unwrap();
    o.insert("default_SR".into(), NULL_REF.into());
    o.remove("suspend_image_SR");
    o.remove("crash_dump_SR");
    h.store
        .write(T, &path, &serde_json::to_vec(&old).unwrap())
        .unwrap();
    let host_uuid = h.toolstack.host_ref().replace("OpaqueRef:", "");
    let hpath = format!("/pool/host/{host_uuid}");
    let mut oldh: serde_json::Value =
        serde_json::from_slice(&h.store.read(T, &hpath).unwrap()).unwrap();
    oldh.as_object_mut().unwrap().remove("PBDs");
    oldh.as_object_mut().unwrap().remove("PIFs");
    h.store
        .write(T, &hpath, &serde_json::to_vec(&oldh).unwrap())
        .unwrap();

    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert_defaults(&h);
    assert_eq!(counts(&h), (1, 1, 1, 1));
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert_eq!(counts(&h), (1, 1, 1, 1), "the migration runs once");
    assert_defaults(&h);
}

#[test]
fn sr_calls_refuse_as_xapi_does() {
    let h = host();
    let host = h.toolstack.host_ref();
    let mut dc = std::collections::BTreeMap::new();
    dc.insert("path".to_string(), "/srv/extra".to_string());
    let s = new_ref(
        &h,
        Action::SrCreate {
            host: host.clone(),
            device_config: dc.clone(),
            spec: SrSpec {
                name_label: "extra".into(),
                ty: "EXT".into(),
                content_type: "user".into(),
                physical_size: 1 << 30,
                ..SrSpec::default()
            },
        },
    );
    let rec = sr(&h, &s);
    assert_eq!(rec.ty, "ext", "types are stored lower-case");
    assert_eq!(rec.physical_size, 1 << 30);
    let d = pbd(&h, &rec.PBDs[0]);
    assert!(d.currently_attached);
    assert_eq!(d.device_config, dc);
    assert_eq!(d.host, host);
    // Plugged: neither destroy nor forget.
    let has_pbd = ActionError::SrHasPbd { sr: s.clone() };
    let destroy = || {
        h.toolstack.handle(Action::Destroy {
            class: Class::Sr,
            r: s.clone(),
        })
    };
    assert_eq!(destroy().unwrap_err(), has_pbd);
    assert_eq!(
        h.toolstack
            .handle(Action::SrForget { sr: s.clone() })
            .unwrap_err(),
        has_pbd
    );
    ok(
        &h,
        Action::PbdUnplug {
            pbd: rec.PBDs[0].clone(),
        },
    );
    assert!(!pbd(&h, &rec.PBDs[0]).currently_attached);
    // Not empty.
    let vdi = new_ref(
        &h,
        Action::Create(NewRecord::Vdi(VdiRecord {
            name_label: "disk".into(),
            SR: s.clone(),
            virtual_size: 1 << 20,
            ..VdiRecord::default()
        })),
    );
    assert_eq!(sr(&h, &s).VDIs, vec![vdi.clone()]);
    assert_eq!(
        destroy().unwrap_err(),
        ActionError::HasDependents {
            class: Class::Sr,
            r: s.clone(),
            dependents: Class::Vdi,
        }
    );
    // Forget drops the SR, its VDIs and its PBDs.
    ok(&h, Action::SrForget { sr: s.clone() });
    for (class, r) in [
        (Class::Sr, &s),
        (Class::Vdi, &vdi),
        (Class::Pbd, &rec.PBDs[0]),
    ] {
        assert_eq!(
            h.toolstack
                .handle(Action::GetRecord {
                    class,
                    r: r.clone()
                })
                .unwrap_err(),
            ActionError::HandleInvalid {
                class,
                r: r.clone()
            }
        );
    }
    match record(&h, Class::Host, &host) {
        Record::Host(hr) => assert!(!hr.PBDs.contains(&rec.PBDs[0])),
        r => panic!("{r:?}"),
    }
    // Introduce: a record, no PBD, the uuid given; twice is refused.
    let spec = SrSpec {
        uuid: "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
        name_label: "iso".into(),
        ty: "iso".into(),
        content_type: "iso".into(),
        shared: true,
        ..SrSpec::default()
    };
    let i = new_ref(&h, Action::SrIntroduce { spec: spec.clone() });
    assert_eq!(i, "OpaqueRef:0f0e0d0c-0b0a-4908-8706-050403020100");
    let irec = sr(&h, &i);
    assert!(irec.PBDs.is_empty());
    assert!(irec.shared);
    assert_eq!(irec.physical_size, -1);
    assert_eq!(
        h.toolstack
            .handle(Action::SrIntroduce { spec: spec.clone() })
            .unwrap_err(),
        ActionError::SrUuidExists {
            uuid: spec.uuid.clone()
        }
    );
    let bad = h
        .toolstack
        .handle(Action::SrIntroduce {
            spec: SrSpec {
                uuid: "../../local".into(),
                ..spec
            },
        })
        .unwrap_err();
    assert!(
        matches!(bad, ActionError::ValueNotSupported { .. }),
        "{bad:?}"
    );
    ok(
        &h,
        Action::Destroy {
            class: Class::Sr,
            r: i.clone(),
        },
    );
    // The local SR cannot go while it is plugged, and the pool keeps it.
    let local = pool(&h).default_SR;
    assert_eq!(
        h.toolstack
            .handle(Action::Destroy {
                class: Class::Sr,
                r: local.clone()
            })
            .unwrap_err(),
        ActionError::SrHasPbd { sr: local }
    );
    assert_eq!(counts(&h), (1, 1, 1, 1));
}

fn events(h: &Host, token: u64) -> (Vec<(String, EventOp, Option<TaskStatus>)>, u64) {
    match ok(
        h,
        Action::EventFrom {
            classes: vec!["task".into()],
            token,
            timeout: Duration::from_millis(100),
        },
    ) {
        Reply::Events(b) => (
            b.events
                .into_iter()
                .map(|e| {
                    assert_eq!(e.class, Class::Task);
                    let st = match e.snapshot {
                        Some(Record::Task(t)) => Some(t.status),
                        _ => None,
                    };
                    (e.r, e.operation, st)
                })
                .collect(),
            b.token,
        ),
        r => panic!("{r:?}"),
    }
}

#[test]
fn tasks_are_bounded_records_with_events() {
    let mut h = Host::start(ToolstackConfig {
        seed: 9,
        task_limits: TaskLimits {
            max_pending: 2,
            max_finished: 2,
        },
        ..ToolstackConfig::default()
    })
    .unwrap();
    let token = h.toolstack.token();
    let create = |label: &str| Action::TaskCreate {
        label: label.into(),
        description: String::new(),
    };
    let t1 = new_ref(&h, create("Async.VM.start"));
    let t2 = new_ref(&h, create("two"));
    assert_eq!(
        h.toolstack.handle(create("three")).unwrap_err(),
        ActionError::TooManyPendingTasks
    );
    let r1 = task(&h, &t1);
    assert_eq!(r1.status, TaskStatus::Pending);
    assert_eq!(r1.name_label, "Async.VM.start");
    assert_eq!(r1.resident_on, h.toolstack.host_ref());
    assert_eq!(
        r1.created.len(),
        "20261123T22:50:00Z".len(),
        "{}",
        r1.created
    );
    assert_eq!(r1.finished, "19700101T00:00:00Z", "the epoch while pending");
    assert_eq!(r1.ty, "<none/>");
    let (ev, token) = events(&h, token);
    assert_eq!(
        ev,
        vec![
            (t1.clone(), EventOp::Add, Some(TaskStatus::Pending)),
            (t2.clone(), EventOp::Add, Some(TaskStatus::Pending)),
        ]
    );
    ok(
        &h,
        Action::TaskFinish {
            task: t1.clone(),
            outcome: TaskOutcome::Success {
                result: "<value>OpaqueRef:x</value>".into(),
            },
        },
    );
    let r1 = task(&h, &t1);
    assert_eq!(r1.status, TaskStatus::Success);
    assert_eq!(r1.progress, 1.0);
    assert_eq!(r1.result, "<value>OpaqueRef:x</value>");
    let (ev, token) = events(&h, token);
    assert_eq!(
        ev,
        vec![(t1.clone(), EventOp::Mod, Some(TaskStatus::Success))]
    );
    // A pending task cannot be cancelled; destroying it waits for its end.
    assert_eq!(
        h.toolstack
            .handle(Action::TaskCancel { task: t2.clone() })
            .unwrap_err(),
        ActionError::TaskNotCancellable { task: t2.clone() }
    );
    ok(
        &h,
        Action::Destroy {
            class: Class::Task,
            r: t2.clone(),
        },
    );
    assert_eq!(task(&h, &t2).status, TaskStatus::Pending);
    ok(
        &h,
        Action::TaskFinish {
            task: t2.clone(),
            outcome: TaskOutcome::Failure {
                error_info: vec!["VM_BAD_POWER_STATE".into()],
            },
        },
    );
    let gone = |t: &str| ActionError::HandleInvalid {
        class: Class::Task,
        r: t.into(),
    };
    assert_eq!(
        h.toolstack
            .handle(Action::GetRecord {
                class: Class::Task,
                r: t2.clone()
            })
            .unwrap_err(),
        gone(&t2)
    );
    let (ev, mut token) = events(&h, token);
    assert_eq!(ev, vec![(t2.clone(), EventOp::Del, None)]);
    // Finished tasks beyond the bound go, oldest first.
    let mut later = Vec::new();
    for n in 0..2 {
        let t = new_ref(&h, create(&format!("later {n}")));
        ok(
            &h,
            Action::TaskFinish {
                task: t.clone(),
                outcome: TaskOutcome::Success {
                    result: String::new(),
                },
            },
        );
        later.push(t);
    }
    assert_eq!(refs(&h, Class::Task), {
        let mut v = later.clone();
        v.sort();
        v
    });
    let (ev, t) = events(&h, token);
    token = t;
    assert!(ev.contains(&(t1.clone(), EventOp::Del, None)), "{ev:?}");
    // Cancelling a finished task does nothing.
    ok(
        &h,
        Action::TaskCancel {
            task: later[0].clone(),
        },
    );
    // Tasks do not survive a restart, and are not in the pool database.
    assert!(h.store.read(T, "/pool/task").is_err());
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    assert!(refs(&h, Class::Task).is_empty());
    let _ = token;
}
