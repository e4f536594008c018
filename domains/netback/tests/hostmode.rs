//! Host mode end to end: guests with Windsor's netfront talk through the
//! netback domain, on the simulated hypervisor.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use windsor_control::{DeviceCounters, DeviceState, Request, Response};
use windsor_netback::service::NoUplink;
use windsor_netfront::{parse_cidr, Ipv4Address, Misbehave, Netfront, Stack, ECHO_PORT};
use windsor_xenstore::client::XenStore;

#[test]
fn two_guests_ping_and_tcp_echo_through_netback() {
    let h = Host::new::<NoUplink>(None);
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let (db, xb) = h.guest(&mut ctl, "10.0.0.3");
    let (ida, idb) = (
        xen::platform::Platform::domid(&da),
        xen::platform::Platform::domid(&db),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(da, xa, "10.0.0.2/24", stop.clone());
    let client = std::thread::spawn(move || {
        // This one uses split event channels; the server one port.
        let nf = Netfront::connect_with(&db, &xb, 0, T, true).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr("10.0.0.3/24").unwrap());
        let dst = Ipv4Address::new(10, 0, 0, 2);
        let rtt = st.ping(&xb, dst, T).expect("ping answered");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let back = st
            .tcp_exchange(&xb, dst, ECHO_PORT, &data, T)
            .expect("echo");
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echoed bytes differ");
        rtt
    });
    let rtt = client.join().unwrap();
    assert!(rtt < T);
    // The client really negotiated split event channels.
    let fe = |k: &str| {
        h.xs.read(
            windsor_xenstore::client::TxId::NONE,
            &format!("/local/domain/{}/device/vif/0/{k}", idb.0),
        )
    };
    assert!(fe("event-channel-rx").is_ok() && fe("event-channel").is_err());
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    match ctl.call(Request::Counters { device: None }, T).unwrap() {
        Response::Counters(c) => {
            assert_eq!(c.len(), 2);
            for (d, c) in c {
                let DeviceCounters::Vif(v) = c else {
                    panic!("not a vif")
                };
                assert!(d.frontend == ida.0 || d.frontend == idb.0);
                // 200 kB each way in ≤1460-byte segments.
                assert!(v.tx_packets > 100 && v.rx_packets > 100, "{v:?}");
                assert!(v.tx_bytes > 200_000 && v.rx_bytes > 200_000, "{v:?}");
            }
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn hostile_frontends_are_cut_off_and_the_rest_goes_on() {
    let h = Host::new::<NoUplink>(None);
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let (db, xb) = h.guest(&mut ctl, "10.0.0.3");
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(da, xa, "10.0.0.2/24", stop.clone());
    let client = std::thread::spawn(move || {
        let nf = Netfront::connect(&db, &xb, 0, T).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr("10.0.0.3/24").unwrap());
        st.ping(&xb, Ipv4Address::new(10, 0, 0, 2), T)
            .expect("ping");
    });
    // Each misbehaviour in its own guest; each is disconnected.
    for how in [
        Misbehave::BadGref,
        Misbehave::Oversize,
        Misbehave::IndexGames,
    ] {
        let (dc, xc) = h.guest(&mut ctl, "10.0.0.9");
        let idc = xen::platform::Platform::domid(&dc);
        let t = std::thread::spawn(move || {
            let mut nf = Netfront::connect(&dc, &xc, 0, T).expect("netfront connects");
            nf.misbehave(how);
            // Keep the domain (and its grants) alive until checked.
            std::thread::sleep(Duration::from_millis(300));
        });
        let end = std::time::Instant::now() + T;
        loop {
            let Response::Health(hl) = ctl.call(Request::Health, T).unwrap() else {
                panic!("health")
            };
            let st = hl.devices.iter().find(|(d, _)| *d == vif(idc)).map(|x| x.1);
            if st == Some(DeviceState::Failed) {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "{how:?} not cut off: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join().unwrap();
    }
    client.join().unwrap();
    // The well-behaved pair still talks after all that.
    let (db2, xb2) = h.guest(&mut ctl, "10.0.0.4");
    let t = std::thread::spawn(move || {
        let nf = Netfront::connect(&db2, &xb2, 0, T).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr("10.0.0.4/24").unwrap());
        st.ping(&xb2, Ipv4Address::new(10, 0, 0, 2), T)
            .expect("ping after hostile guests");
    });
    t.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn a_rate_limited_flood_does_not_stop_the_others() {
    let h = Host::new::<NoUplink>(None);
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let (db, xb) = h.guest(&mut ctl, "10.0.0.3");
    let (df, xf) = h.domain();
    let idf = xen::platform::Platform::domid(&df);
    // 64 kB per 10 ms: about 6.4 MB/s.
    h.plug_rate(&mut ctl, idf, "10.0.0.8", Some((64_000, 10_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(da, xa, "10.0.0.2/24", stop.clone());
    let flooding = Arc::new(AtomicBool::new(true));
    let fl = flooding.clone();
    let flood = std::thread::spawn(move || {
        let mut nf = Netfront::connect(&df, &xf, 0, T).expect("netfront connects");
        let t0 = std::time::Instant::now();
        nf.misbehave(Misbehave::Flood);
        fl.store(false, Ordering::Relaxed);
        nf.close(&xf);
        t0.elapsed()
    });
    let client = std::thread::spawn(move || {
        let nf = Netfront::connect(&db, &xb, 0, T).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr("10.0.0.3/24").unwrap());
        let mut pings = 0;
        // Ping through the flood.
        for _ in 0..3 {
            st.ping(&xb, Ipv4Address::new(10, 0, 0, 2), T)
                .expect("ping during the flood");
            pings += 1;
        }
        pings
    });
    assert_eq!(client.join().unwrap(), 3);
    let took = flood.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let Response::Counters(c) = ctl
        .call(
            Request::Counters {
                device: Some(vif(idf)),
            },
            T,
        )
        .unwrap()
    else {
        panic!("counters")
    };
    let DeviceCounters::Vif(v) = c[0].1 else {
        panic!("not a vif")
    };
    // 100,000 frames of 60 bytes at 6.4 MB/s: the limit held it back.
    assert!(v.rate_limited > 0, "{v:?}");
    assert!(v.tx_packets >= 90_000, "{v:?}");
    assert!(took >= Duration::from_millis(500), "flood took {took:?}");
    let Response::Health(hl) = ctl.call(Request::Health, T).unwrap() else {
        panic!("health")
    };
    let flooder = hl.devices.iter().find(|(d, _)| *d == vif(idf)).unwrap().1;
    assert_ne!(
        flooder,
        DeviceState::Failed,
        "a flood is not a protocol violation"
    );
}

#[test]
fn unplug_closes_the_backend_and_restart_ends_the_service() {
    use windsor_control::ErrorCode;
    let mut h = Host::new::<NoUplink>(None);
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let ida = xen::platform::Platform::domid(&da);
    let stop = Arc::new(AtomicBool::new(false));
    // The guest connects, says so, and holds its netfront until `stop`:
    // the unplug below must come after its connect returned (else it may
    // see the backend Closed before it saw it Connected).
    let (connected, is_connected) = std::sync::mpsc::channel();
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let nf = Netfront::connect(&da, &xa, 0, T).expect("netfront connects");
            connected.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(nf);
        })
    };
    is_connected.recv_timeout(T).expect("the guest connected");
    let state = |xs: &windsor_xenstore::client::MemStore| {
        xs.read(
            windsor_xenstore::client::TxId::NONE,
            &format!(
                "{}/state",
                windsor_netback::xenbus::backend_path(h.nb, ida, 0)
            ),
        )
        .unwrap()
    };
    let end = std::time::Instant::now() + T;
    while state(&h.xs) != b"4" {
        assert!(std::time::Instant::now() < end, "never connected");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        ctl.call(Request::Unplug { device: vif(ida) }, T).unwrap(),
        Response::Ok
    );
    assert_eq!(state(&h.xs), b"6", "backend Closed");
    assert_eq!(
        ctl.call(
            Request::Counters {
                device: Some(vif(ida))
            },
            T
        )
        .unwrap(),
        Response::Error(ErrorCode::NoSuchDevice)
    );
    let Response::Health(hl) = ctl.call(Request::Health, T).unwrap() else {
        panic!("health")
    };
    assert!(hl.devices.is_empty());
    // Restart: answered, then the service ends.
    assert_eq!(ctl.call(Request::Restart, T).unwrap(), Response::Ok);
    let t = h.nb_thread.take().unwrap();
    let end = std::time::Instant::now() + T;
    while !t.is_finished() {
        assert!(std::time::Instant::now() < end, "netback did not end");
        std::thread::sleep(Duration::from_millis(2));
    }
    t.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
