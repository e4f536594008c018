//! The fuzz-target guest's network: it answers ping and TCP echo through
//! the netback domain, and breaks its tx ring when told to.

use std::time::{Duration, Instant};

use windsor_control::endpoint::Client;
use windsor_control::{
    DeviceId, DeviceKind, DeviceParams, DeviceState, Request, Response, VifParams,
};
use windsor_guest_fuzz_target::host;
use windsor_netback::service::{Netback, NoUplink};
use windsor_netback::xenbus;
use windsor_netfront::{parse_cidr, Ipv4Address, Netfront, Stack, ECHO_PORT};
use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
use xen::platform::{CreateConfig, Platform};
use xen::DomId;
use xen_sim::Hypervisor;

const T: Duration = Duration::from_secs(20);

fn cfg() -> CreateConfig {
    CreateConfig {
        max_mem_kib: 64 * 1024,
        max_grant_frames: 64,
        ..CreateConfig::default()
    }
}

/// `/local/domain/<d>` owned by `d`, and its control nodes readable.
fn home(xs: &MemStore, d: DomId) {
    let p = format!("/local/domain/{}", d.0);
    for (node, owner) in [
        ("", d),
        ("/control", DomId::DOM0),
        ("/control/shutdown", d),
        ("/control/misbehave", DomId::DOM0),
    ] {
        let path = format!("{p}{node}");
        xs.write(TxId::NONE, &path, b"").unwrap();
        let mut perms = vec![Perm {
            dom: owner,
            access: Access::None,
        }];
        if owner != d {
            perms.push(Perm {
                dom: d,
                access: Access::Read,
            });
        }
        xs.set_perms(TxId::NONE, &path, &perms).unwrap();
    }
}

fn plug(
    hv: &Hypervisor,
    xs: &MemStore,
    ctl: &mut Client<'_, xen_sim::SimDomain>,
    nb: DomId,
    ip: &str,
) -> xen_sim::SimDomain {
    let dom = hv.test_domain(&cfg()).unwrap();
    let d = dom.domid();
    home(xs, d);
    let mac = [0, 0x16, 0x3e, 0, 0, d.0 as u8];
    xenbus::announce(xs, nb, d, 0, mac, 1500).unwrap();
    xs.write(
        TxId::NONE,
        &format!("{}/ip", xenbus::backend_path(nb, d, 0)),
        ip.as_bytes(),
    )
    .unwrap();
    let device = DeviceId {
        kind: DeviceKind::Vif,
        frontend: d.0,
        devid: 0,
    };
    let params = DeviceParams::Vif(VifParams {
        mac,
        mtu: 1500,
        rate: None,
    });
    assert_eq!(
        ctl.call(Request::Plug { device, params }, T).unwrap(),
        Response::Ok
    );
    dom
}

fn wait_for(xs: &MemStore, path: &str, want: &[u8]) {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if xs.read(TxId::NONE, path).ok().as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{path} never became {:?}", String::from_utf8_lossy(want));
}

#[test]
fn guest_answers_ping_and_echo_then_misbehaves_when_told() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let nbd = hv.test_domain(&cfg()).unwrap();
    let nb = nbd.domid();
    home(&xs, nb);
    let nxs = xs.connect(nb);
    std::thread::spawn(move || {
        Netback::new(&nbd, &nxs, nb, DomId::DOM0, None::<NoUplink>).run(Duration::from_millis(1))
    });
    let dom0 = hv.dom0();
    let mut ctl = loop {
        match Client::connect(&dom0, &xs, nb, DomId::DOM0, T) {
            Ok((c, _)) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    // The fuzz-target guest, with its network.
    let g = plug(&hv, &xs, &mut ctl, nb, "10.1.0.2/24");
    let gid = g.domid();
    let gx = xs.connect(gid);
    let guest = std::thread::spawn(move || host::entry(g, gx));
    wait_for(
        &xs,
        &format!("/local/domain/{}/data/net", gid.0),
        b"up 10.1.0.2/24",
    );
    // A second Windsor guest talks to it.
    let c = plug(&hv, &xs, &mut ctl, nb, "10.1.0.3/24");
    let cx = xs.connect(c.domid());
    let client = std::thread::spawn(move || {
        let nf = Netfront::connect(&c, &cx, 0, T).unwrap();
        let mut st = Stack::new(nf, parse_cidr("10.1.0.3/24").unwrap());
        let dst = Ipv4Address::new(10, 1, 0, 2);
        st.ping(&cx, dst, T).expect("the guest answers ping");
        let data = b"hello fuzz-target, echo this".repeat(100);
        assert_eq!(
            st.tcp_exchange(&cx, dst, ECHO_PORT, &data, T)
                .expect("echo"),
            data
        );
    });
    client.join().unwrap();
    // Told to misbehave, its VIF is cut off.
    xs.write(
        TxId::NONE,
        &format!("/local/domain/{}/control/misbehave", gid.0),
        b"net-oversize",
    )
    .unwrap();
    let end = Instant::now() + T;
    loop {
        let Response::Health(h) = ctl.call(Request::Health, T).unwrap() else {
            panic!()
        };
        if h.devices
            .iter()
            .any(|(d, s)| d.frontend == gid.0 && *s == DeviceState::Failed)
        {
            break;
        }
        assert!(Instant::now() < end, "guest not cut off");
        std::thread::sleep(Duration::from_millis(5));
    }
    xs.write(
        TxId::NONE,
        &format!("/local/domain/{}/control/shutdown", gid.0),
        b"poweroff",
    )
    .unwrap();
    assert_eq!(
        guest.join().unwrap(),
        windsor_guest_fuzz_target::Outcome::Shutdown(xen::platform::ShutdownReason::Poweroff)
    );
}
