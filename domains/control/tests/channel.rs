//! A service and a toolstack domain on the simulated hypervisor exchanging
//! control messages over a real vchan.

use std::thread;
use std::time::Duration;

use windsor_control::endpoint::{Client, EndpointError, Server};
use windsor_control::{
    DeviceCounters, DeviceId, DeviceKind, DeviceParams, ErrorCode, Request, Response, VifCounters,
    VifParams,
};
use windsor_xenstore::client::MemStore;
use xen::platform::{CreateConfig, EventChannel, Platform};
use xen_sim::Hypervisor;

const T: Duration = Duration::from_secs(10);

fn cfg() -> CreateConfig {
    CreateConfig {
        max_mem_kib: 64 * 1024,
        ..CreateConfig::default()
    }
}

#[test]
fn plug_counters_unplug_and_errors() {
    let hv = Hypervisor::new();
    let srv = hv.test_domain(&cfg()).unwrap();
    let cli = hv.test_domain(&cfg()).unwrap();
    let xs = MemStore::new();
    let (sd, cd) = (srv.domid(), cli.domid());
    let sxs = xs.clone();
    let service = thread::spawn(move || {
        let mut s = Server::offer(&srv, &sxs, sd, cd, "netback").unwrap();
        let mut plugged: Vec<DeviceId> = Vec::new();
        let mut handled = 0;
        loop {
            let r = s.poll(|req| match req {
                Request::Plug { device, params } => {
                    if device.kind != DeviceKind::Vif || !matches!(params, DeviceParams::Vif(_)) {
                        Response::Error(ErrorCode::WrongKind)
                    } else if plugged.contains(&device) {
                        Response::Error(ErrorCode::AlreadyPlugged)
                    } else {
                        plugged.push(device);
                        Response::Ok
                    }
                }
                Request::Unplug { device } => match plugged.iter().position(|d| *d == device) {
                    Some(i) => {
                        plugged.remove(i);
                        Response::Ok
                    }
                    None => Response::Error(ErrorCode::NoSuchDevice),
                },
                Request::Counters { .. } => Response::Counters(
                    plugged
                        .iter()
                        .map(|d| {
                            (
                                *d,
                                DeviceCounters::Vif(VifCounters {
                                    tx_packets: u64::from(d.devid) + 1,
                                    ..Default::default()
                                }),
                            )
                        })
                        .collect(),
                ),
                _ => Response::Error(ErrorCode::WrongKind),
            });
            match r {
                Ok(n) => handled += n,
                Err(EndpointError::Channel(_)) => return handled,
                Err(e) => panic!("{e}"),
            }
            let _ = srv.wait(&[s.port()], Some(Duration::from_millis(50)));
            let _ = srv.clear_pending(s.port());
        }
    });
    // Wait for the offer, then connect.
    let client = loop {
        match Client::connect(&cli, &xs, sd, cd, T) {
            Ok(c) => break c,
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    };
    let (mut c, name) = client;
    assert_eq!(name, "netback");
    let dev = DeviceId {
        kind: DeviceKind::Vif,
        frontend: 5,
        devid: 1,
    };
    let vif = DeviceParams::Vif(VifParams {
        mac: [0, 0x16, 0x3e, 0, 0, 5],
        mtu: 1500,
        rate: None,
    });
    let plug = Request::Plug {
        device: dev,
        params: vif.clone(),
    };
    assert_eq!(c.call(plug.clone(), T).unwrap(), Response::Ok);
    assert_eq!(
        c.call(plug, T).unwrap(),
        Response::Error(ErrorCode::AlreadyPlugged)
    );
    match c.call(Request::Counters { device: None }, T).unwrap() {
        Response::Counters(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].0, dev);
            assert!(matches!(
                v[0].1,
                DeviceCounters::Vif(VifCounters { tx_packets: 2, .. })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.call(Request::Unplug { device: dev }, T).unwrap(),
        Response::Ok
    );
    assert_eq!(
        c.call(Request::Unplug { device: dev }, T).unwrap(),
        Response::Error(ErrorCode::NoSuchDevice)
    );
    // Many requests in a row stay in order.
    for i in 0..50 {
        let d = DeviceId { devid: i, ..dev };
        assert_eq!(
            c.call(
                Request::Plug {
                    device: d,
                    params: vif.clone()
                },
                T
            )
            .unwrap(),
            Response::Ok
        );
    }
    match c.call(Request::Counters { device: None }, T).unwrap() {
        Response::Counters(v) => assert_eq!(v.len(), 50),
        other => panic!("{other:?}"),
    }
    drop(c);
    let handled = service.join().unwrap();
    assert_eq!(handled, 1 + 2 + 1 + 2 + 50 + 1, "hello + every request");
}
