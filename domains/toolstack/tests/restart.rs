//! A host with many VMs restarts: the pool database is read back whole
//! even when a class directory is longer than one xenstore reply.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use windsor_toolstack::action::{Action, Class, NewRecord, PowerState, Record, Reply, VmRecord};
use windsor_toolstack::host::Host;
use windsor_toolstack::ToolstackConfig;

#[test]
fn a_thousand_vm_records_survive_a_toolstack_restart() {
    let t0 = Instant::now();
    let mut h = Host::start(ToolstackConfig::default()).unwrap();
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
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
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

/// Records larger than one xenstore node (a 3,500-character name, a full
/// `other_config`) are stored in chunks and read back whole; a record
/// over the field limits is refused with a clear error, not E2BIG.
#[test]
fn records_larger_than_a_node_survive_a_restart() {
    use windsor_toolstack::action::ActionError;
    use windsor_toolstack::limits::{MAX_MAP_ENTRIES, MAX_MAP_VALUE, MAX_STRING};

    let mut h = Host::start(ToolstackConfig::default()).unwrap();
    let label = "é".repeat(1750); // 3,500 bytes
    let Reply::Ref(vm) = h
        .toolstack
        .handle(Action::Create(NewRecord::Vm(VmRecord {
            name_label: label.clone(),
            PV_kernel: "fuzz-target".into(),
            memory_static_max: 16 << 20,
            ..VmRecord::default()
        })))
        .unwrap()
    else {
        panic!()
    };
    for i in 0..MAX_MAP_ENTRIES {
        h.toolstack
            .handle(Action::AddToOtherConfig {
                class: Class::Vm,
                r: vm.clone(),
                key: format!("key{i}"),
                value: char::from(b'a' + (i % 26) as u8)
                    .to_string()
                    .repeat(MAX_MAP_VALUE),
            })
            .unwrap();
    }
    let e = h
        .toolstack
        .handle(Action::SetNameDescription {
            class: Class::Vm,
            r: vm.clone(),
            value: "d".repeat(MAX_STRING + 1),
        })
        .unwrap_err();
    assert!(
        matches!(e, ActionError::ValueNotSupported { ref field, .. } if field == "name_description"),
        "{e:?}"
    );
    // Shrink another record back to one node after it was chunked.
    let Reply::Ref(small) = h
        .toolstack
        .handle(Action::Create(NewRecord::Vm(VmRecord {
            name_label: "s".repeat(3000),
            PV_kernel: "fuzz-target".into(),
            memory_static_max: 16 << 20,
            ..VmRecord::default()
        })))
        .unwrap()
    else {
        panic!()
    };
    h.toolstack
        .handle(Action::SetNameLabel {
            class: Class::Vm,
            r: small.clone(),
            value: "small".into(),
        })
        .unwrap();
    let before = h
        .toolstack
        .handle(Action::GetRecord {
            class: Class::Vm,
            r: vm.clone(),
        })
        .unwrap();
    h.restart_toolstack(ToolstackConfig::default()).unwrap();
    let get = |h: &Host, r: &str| {
        h.toolstack
            .handle(Action::GetRecord {
                class: Class::Vm,
                r: r.into(),
            })
            .unwrap()
    };
    let after = get(&h, &vm);
    assert_eq!(after, before, "the chunked record is read back whole");
    let Reply::Record(Record::Vm(v)) = after else {
        panic!()
    };
    assert_eq!(v.name_label, label);
    assert_eq!(v.other_config.len(), MAX_MAP_ENTRIES);
    let Reply::Record(Record::Vm(s)) = get(&h, &small) else {
        panic!()
    };
    assert_eq!(s.name_label, "small");
}
