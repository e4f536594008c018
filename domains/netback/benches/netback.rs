//! Guest-to-guest forwarding through netback in host mode, against a veth
//! pair between two Linux network namespaces in the same run, as JSON lines
//! `{"name","value","unit","baseline","ratio"}`:
//!
//! * `guest_to_guest_64b_fps_vs_veth`: frames/s of 64-byte frames from one
//!   guest's netfront to another's through the netback domain (three
//!   threads on `xen-sim`), against UDP datagrams making 64-byte frames
//!   sent from one namespace to the other over veth (goal ≥ 1 M frames/s);
//! * `guest_to_guest_1500b_gbps_vs_veth`: the same with 1514-byte frames
//!   (1500-byte IP packets), in Gbit/s of frame bytes (goal ≥ 10).
//!
//! Each figure is the best of 3 runs of `NETBACK_BENCH_SECS` (default 2)
//! seconds. The veth reference needs root and iproute2 (the bench re-runs
//! itself inside `ip netns exec` as the UDP sender and receiver); without
//! them the baseline is reported as 0. Run with
//! `cargo bench -p windsor-netback --bench netback`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use windsor_netback::service::NoUplink;
use windsor_netfront::Netfront;
use xen::platform::Platform;

const RUNS: usize = 3;

fn secs() -> f64 {
    std::env::var("NETBACK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

fn line(name: &str, value: f64, unit: &str, baseline: f64) {
    let ratio = if baseline > 0.0 {
        value / baseline
    } else {
        0.0
    };
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"ratio\":{ratio:.3}}}"
    );
}

/// Frames per second from guest A to guest B, `len`-byte frames.
fn guests(len: usize) -> f64 {
    let h = Host::new::<NoUplink>(None);
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (da, xa) = h.guest(&mut ctl, "10.0.0.2");
    let (db, xb) = h.guest(&mut ctl, "10.0.0.3");
    let mac_b = mac(db.domid());
    let mac_a = mac(da.domid());
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let (s2, g2, r2) = (stop.clone(), got.clone(), ready.clone());
    let rx = std::thread::spawn(move || {
        let mut nf = Netfront::connect(&db, &xb, 0, T).unwrap();
        // Announce B's address to the switch.
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&mac_a);
        f[6..12].copy_from_slice(&mac_b);
        nf.send(&f);
        r2.store(true, Ordering::Release);
        let mut n = 0u64;
        while !s2.load(Ordering::Relaxed) {
            let mut any = false;
            while nf.recv().is_some() {
                n += 1;
                any = true;
            }
            g2.store(n, Ordering::Relaxed);
            if !any {
                nf.wait(Duration::from_millis(1));
            }
        }
        nf.close(&xb);
    });
    let s3 = stop.clone();
    let tx = std::thread::spawn(move || {
        let mut nf = Netfront::connect(&da, &xa, 0, T).unwrap();
        while !ready.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut f = vec![0x5au8; len];
        f[..6].copy_from_slice(&mac_b);
        f[6..12].copy_from_slice(&mac_a);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        while !s3.load(Ordering::Relaxed) {
            if !nf.send(&f) {
                nf.wait(Duration::from_micros(200));
            }
        }
        nf.close(&xa);
    });
    // Warm up, then measure.
    std::thread::sleep(Duration::from_millis(300));
    let (n0, t0) = (got.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs()));
    let (n1, t1) = (got.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    tx.join().unwrap();
    rx.join().unwrap();
    (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Frames per second over a veth pair between two namespaces, UDP
/// datagrams sized to make `len`-byte frames.
fn veth(len: usize) -> f64 {
    let id = std::process::id() % 100_000;
    let (n1, n2) = (format!("wbA{id}"), format!("wbB{id}"));
    let (v1, v2) = (format!("wvA{id}"), format!("wvB{id}"));
    let _ = ip(&["netns", "del", &n1]);
    let _ = ip(&["netns", "del", &n2]);
    let ok = ip(&["netns", "add", &n1])
        && ip(&["netns", "add", &n2])
        && ip(&[
            "link", "add", &v1, "netns", &n1, "type", "veth", "peer", "name", &v2, "netns", &n2,
        ])
        && ip(&["-n", &n1, "addr", "add", "10.9.0.1/24", "dev", &v1])
        && ip(&["-n", &n2, "addr", "add", "10.9.0.2/24", "dev", &v2])
        && ip(&["-n", &n1, "link", "set", &v1, "up"])
        && ip(&["-n", &n2, "link", "set", &v2, "up"]);
    let mut rate = 0.0;
    if ok {
        let exe = std::env::current_exe().unwrap();
        let payload = (len - 14 - 20 - 8).to_string();
        let s = secs().to_string();
        let recv = Command::new("ip")
            .args(["netns", "exec", &n2])
            .arg(&exe)
            .args(["--udp-recv", &s])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let send = Command::new("ip")
            .args(["netns", "exec", &n1])
            .arg(&exe)
            .args(["--udp-send", &payload, &s])
            .spawn()
            .unwrap();
        let out = recv.wait_with_output().unwrap();
        let _ = send.wait_with_output();
        rate = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
    }
    let _ = ip(&["netns", "del", &n1]);
    let _ = ip(&["netns", "del", &n2]);
    rate
}

/// In the receiving namespace: counts datagrams for `secs` after the first
/// and prints datagrams per second.
fn udp_recv(secs: f64) {
    let s = UdpSocket::bind("10.9.0.2:9000").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    if s.recv(&mut buf).is_err() {
        println!("0");
        return;
    }
    let warm = Instant::now() + Duration::from_millis(300);
    while Instant::now() < warm {
        let _ = s.recv(&mut buf);
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        if s.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    println!("{}", n as f64 / t0.elapsed().as_secs_f64());
}

/// In the sending namespace: sends `payload`-byte datagrams as fast as
/// possible for a little longer than the receiver counts.
fn udp_send(payload: usize, secs: f64) {
    let s = UdpSocket::bind("10.9.0.1:0").unwrap();
    s.connect("10.9.0.2:9000").unwrap();
    let buf = vec![0x5au8; payload];
    let end = Instant::now() + Duration::from_secs_f64(secs + 1.0);
    while Instant::now() < end {
        let _ = s.send(&buf);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--udp-recv") => return udp_recv(args[2].parse().unwrap()),
        Some("--udp-send") => return udp_send(args[2].parse().unwrap(), args[3].parse().unwrap()),
        _ => {}
    }
    for (len, name) in [(64usize, "64b"), (1514, "1500b")] {
        let mut ours = 0f64;
        let mut base = 0f64;
        for _ in 0..RUNS {
            ours = ours.max(guests(len));
            base = base.max(veth(len));
        }
        if len == 64 {
            line(
                &format!("guest_to_guest_{name}_fps_vs_veth"),
                ours,
                "frames/s",
                base,
            );
        } else {
            let g = |fps: f64| fps * len as f64 * 8.0 / 1e9;
            line(
                &format!("guest_to_guest_{name}_gbps_vs_veth"),
                g(ours),
                "Gbit/s",
                g(base),
            );
        }
    }
}
