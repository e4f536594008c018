//! The toolstack is generic over its store: it runs against the xenstore
//! crate's test double (`MemStore`) with no introducer.

use std::time::Duration;

use windsor_toolstack::action::{Action, NewRecord, PowerState, Record, Reply, VmRecord};
use windsor_toolstack::{Toolstack, ToolstackConfig};
use windsor_xenstore::client::{MemStore, TxId, XenStore};
use xen::platform::Platform;
use xen_sim::{Hypervisor, SimDomain};

#[test]
fn lifecycle_over_memstore() {
    let hv = Hypervisor::new();
    let store = MemStore::new();
    let s = store.clone();
    hv.register_image("fuzz-target", move |dom: SimDomain| {
        let xs = s.connect(dom.domid());
        windsor_guest_fuzz_target::host::entry(dom, xs.clone());
        xs.close();
    });
    let ts = Toolstack::new(hv.dom0(), store.clone(), (), ToolstackConfig::default()).unwrap();
    let r = match ts
        .handle(Action::Create(NewRecord::Vm(VmRecord {
            name_label: "m".into(),
            PV_kernel: "fuzz-target".into(),
            ..VmRecord::default()
        })))
        .unwrap()
    {
        Reply::Ref(r) => r,
        r => panic!("{r:?}"),
    };
    ts.handle(Action::VmStart {
        vm: r.clone(),
        start_paused: false,
        force: false,
    })
    .unwrap();
    let d = ts.domid(&r).unwrap();
    let booted = format!("/local/domain/{}/data/booted", d.0);
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while store.read(TxId::NONE, &booted).is_err() {
        assert!(std::time::Instant::now() < end, "guest never booted");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The record is in the store, as JSON under /pool/VM/<uuid>.
    let uuid = r.strip_prefix("OpaqueRef:").unwrap();
    let raw = store.read(TxId::NONE, &format!("/pool/VM/{uuid}")).unwrap();
    assert!(std::str::from_utf8(&raw)
        .unwrap()
        .contains("\"power_state\":\"Running\""));
    ts.handle(Action::VmCleanShutdown { vm: r.clone() })
        .unwrap();
    match ts
        .handle(Action::GetRecord {
            class: windsor_toolstack::action::Class::Vm,
            r,
        })
        .unwrap()
    {
        Reply::Record(Record::Vm(v)) => assert_eq!(v.power_state, PowerState::Halted),
        r => panic!("{r:?}"),
    }
    assert_eq!(hv.domains(), vec![xen::DomId::DOM0]);
    ts.stop();
}
