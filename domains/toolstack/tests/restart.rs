//! A host with many VMs restarts: the pool database is read back whole
//! even when a class directory is longer than one xenstore reply.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use windsor_toolstack::action::{Action, Class, NewRecord, PowerState, Record, Reply, VmRecord};
use windsor_toolstack::host::Host;
use windsor_toolstack::Config;

#[test]
fn a_thousand_vm_records_survive_a_toolstack_restart() {
    let t0 = Instant::now();
    let mut h = Host::start(Config::default()).unwrap();
    let mut made = BTreeSet::new();
    for i in 0..1000 {
        let r = h
            .toolstack
            .handle(Action::Create(NewRecord::Vm(VmRecord {
                name_label: format!("vm{i}"),
                PV_kernel: "fuzz-target".into(),
                memory_static_max: 16 << 20,
                ..VmRecord::default()
            })))
            .unwrap();
        let Reply::Ref(r) = r else { panic!("{r:?}") };
        made.insert(r);
    }
    // One of them runs across the restart.
    let running = made.iter().next().unwrap().clone();
    h.toolstack
        .handle(Action::VmStart {
            vm: running.clone(),
            start_paused: false,
            force: false,
        })
        .unwrap();
    // /pool/VM lists 1,001 uuids (37 KiB of names): more than one
    // XS_DIRECTORY reply holds.
    h.restart_toolstack(Config::default()).unwrap();
    let Reply::Records(all) = h
        .toolstack
        .handle(Action::GetAllRecords { class: Class::Vm })
        .unwrap()
    else {
        panic!()
    };
    let back: BTreeSet<_> = all
        .iter()
        .filter(|(_, r)| matches!(r, Record::Vm(v) if !v.is_a_template))
        .map(|(r, _)| r.clone())
        .collect();
    assert_eq!(back, made, "every record is read back");
    let state = |r: &str| match h.toolstack.handle(Action::GetRecord {
        class: Class::Vm,
        r: r.into(),
    }) {
        Ok(Reply::Record(Record::Vm(v))) => v.power_state,
        other => panic!("{other:?}"),
    };
    assert_eq!(state(&running), PowerState::Running, "re-attached");
    assert!(h.toolstack.domid(&running).is_some());
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
}
