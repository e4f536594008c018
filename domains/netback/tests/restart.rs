//! A netback restart during a TCP transfer: the driver domain is crashed
//! and destroyed, a new one is started, the toolstack plugs the VIFs
//! again, the frontends reconnect by walking the xenbus states, and the
//! transfer completes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use windsor_control::{DeviceCounters, DeviceState, Request, Response};
use windsor_netback::service::NoUplink;
use windsor_netfront::{parse_cidr, Ipv4Address, Netfront, Stack, ECHO_PORT};
use xen::platform::Platform;

#[test]
fn tcp_transfer_survives_a_netback_restart() {
    let mut h = Host::new::<NoUplink>(None);
    let dom0 = h.hv.dom0();
    let cxs = h.xs.clone();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let (db, xb) = h.guest(&mut ctl, "10.0.0.3");
    let (ida, idb) = (da.domid(), db.domid());
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(da, xa, "10.0.0.2/24", stop.clone());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let want = data.clone();
    let client = std::thread::spawn(move || {
        let nf = Netfront::connect(&db, &xb, 0, T).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr("10.0.0.3/24").unwrap());
        let back = st
            .tcp_exchange(
                &xb,
                Ipv4Address::new(10, 0, 0, 2),
                ECHO_PORT,
                &data,
                Duration::from_secs(60),
            )
            .expect("the transfer completes");
        st.into_netfront().close(&xb);
        back
    });
    // Wait until the transfer is under way.
    let end = Instant::now() + T;
    loop {
        let Response::Counters(c) = ctl
            .call(
                Request::Counters {
                    device: Some(vif(idb)),
                },
                T,
            )
            .unwrap()
        else {
            panic!("counters")
        };
        let DeviceCounters::Vif(v) = c[0].1 else {
            panic!()
        };
        if v.tx_bytes > 300_000 {
            break;
        }
        assert!(Instant::now() < end, "transfer never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        !client.is_finished(),
        "transfer too short to be interrupted"
    );
    // Kill it and start a new one.
    drop(ctl);
    h.restart_netback::<NoUplink>(None);
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    h.plug(&mut ctl, ida, "10.0.0.2");
    h.plug(&mut ctl, idb, "10.0.0.3");
    let back = client.join().unwrap();
    assert_eq!(back.len(), want.len());
    assert!(back == want, "echoed bytes differ");
    // Both frontends came back to the new netback.
    let Response::Health(hl) = ctl.call(Request::Health, T).unwrap() else {
        panic!()
    };
    assert_eq!(hl.devices.len(), 2);
    assert!(
        hl.devices
            .iter()
            .all(|(_, s)| *s == DeviceState::Connected || *s == DeviceState::Closed),
        "{hl:?}"
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
