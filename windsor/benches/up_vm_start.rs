//! VM create + start to Running through the API of a real `windsor up`.
//!
//! Spawns the `windsor` binary (`windsor up` on a fresh data directory in
//! the temporary directory), logs in over the API's Unix socket (JSON-RPC)
//! and times `VM.create` + `VM.start` with N VMs already running, for N in
//! 1 and 100 (`WINDSOR_BENCH_MAX_VMS` caps N, `WINDSOR_BENCH_SAMPLES` sets
//! samples per point, default 30). Background VMs are started through the
//! API too; every measured VM is shut down and destroyed afterwards
//! (untimed) so the running count stays N.
//!
//! Unlike `api_lifecycle` (the toolstack's in-process host mode), this
//! covers the whole `windsor up` stack: the persistent xenstore daemon with
//! its log (every acknowledged write fsynced), guests on xenbus rings.
//!
//! Prints one JSON object per line: p50 and p99 in milliseconds per N.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};

const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");
const PASSWORD: &str = "bench-password";

fn line(name: &str, value: f64, unit: &str) {
    println!("{{\"name\":\"{name}\",\"value\":{value:.4},\"unit\":\"{unit}\"}}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let max = env_usize("WINDSOR_BENCH_MAX_VMS", 100);
    let samples = env_usize("WINDSOR_BENCH_SAMPLES", 30).max(1);
    let dir = std::env::temp_dir().join(format!("windsor-up-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(WINDSOR)
        .args(["up", "--api", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("WINDSOR_ROOT_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn windsor up");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "windsor up did not start");
        match lines.next() {
            Some(Ok(l)) if l.contains("press Ctrl-C") => break,
            Some(Ok(_)) => {}
            _ => panic!("windsor up exited"),
        }
    }
    // Keep draining stdout so the host never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::JsonRpc)
        .expect("API connects");
    c.login("root", PASSWORD).expect("login");

    let mut running = 0usize;
    for n in [1usize, 100].into_iter().filter(|n| *n <= max.max(1)) {
        while running < n - 1 {
            let vm = c
                .vm_create(&VmSpec::fuzz_target(&format!("bg-{running}")))
                .expect("VM.create");
            c.vm_start(&vm, false).expect("VM.start");
            running += 1;
        }
        let mut times = Vec::with_capacity(samples);
        for i in 0..samples {
            let spec = VmSpec::fuzz_target(&format!("m-{n}-{i}"));
            let t = Instant::now();
            let vm = c.vm_create(&spec).expect("VM.create");
            c.vm_start(&vm, false).expect("VM.start");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            c.vm_hard_shutdown(&vm).expect("VM.hard_shutdown");
            c.vm_destroy(&vm).expect("VM.destroy");
        }
        times.sort_by(f64::total_cmp);
        line(
            &format!("up_vm_create_start_p50_{n}vms"),
            percentile(&times, 0.5),
            "ms",
        );
        line(
            &format!("up_vm_create_start_p99_{n}vms"),
            percentile(&times, 0.99),
            "ms",
        );
    }
    c.logout().ok();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
