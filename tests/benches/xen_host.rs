//! Xen-mode host benchmarks (`cargo xtask bench`, or `cargo bench -p
//! windsor-tests --bench xen_host`): boots the default host as `cargo
//! xtask xen-up` does, under QEMU TCG, and measures from outside
//!
//! * `xen_qemu_start_to_api`: QEMU spawned → the first XenAPI call
//!   (`session.login_with_password`, Windsor's Rust client over the
//!   forwarded port) answered; one sample per boot;
//! * `xen_vm_start_api`: `VM.start` of the fuzz-target VM (the boot
//!   bundle's image) → the call returns with the VM Running (client wall
//!   time, XML-RPC), p50 of the starts of one boot (each followed by
//!   `VM.hard_shutdown`).
//!
//! Nothing runs Xen mode for comparison on this machine, so `baseline`
//! is the goal under TCG (3 s and 50 ms) and `ratio` says how far
//! off it is. `XEN_BENCH_BOOTS` (default 3) and `XEN_BENCH_STARTS`
//! (default 10) set the sample counts.

// Its unit tests are compiled but not run in a bench: their imports are
// unused here.
#[allow(dead_code, unused_imports)]
#[path = "../../xtask/src/xen_boot.rs"]
mod xen_boot;
#[allow(dead_code)]
#[path = "../../xtask/src/xen_up.rs"]
mod xen_up;

use std::time::{Duration, Instant};

use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_api::Value;
use xen_up::{XenHost, XenUpArgs};

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn line(name: &str, value: f64, unit: &str, baseline: f64) {
    println!(
        "{}",
        serde_json::json!({
            "name": name,
            "value": value,
            "unit": unit,
            "baseline": baseline,
            "ratio": value / baseline,
        })
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let boots = env_n("XEN_BENCH_BOOTS", 3);
    let starts = env_n("XEN_BENCH_STARTS", 10);
    let mut to_api = Vec::new();
    let mut vm_start = Vec::new();
    for boot in 0..boots {
        let mut host = XenHost::start(&XenUpArgs {
            port: 0,
            password: Some("bench".into()),
            boot_timeout: 150,
            quiet: true,
            ..XenUpArgs::default()
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        let mut c = Client::connect(Endpoint::parse(&host.url()).unwrap(), Protocol::XmlRpc)
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.login("root", &host.password) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("login: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        to_api.push(host.uptime().as_secs_f64());
        if boot == 0 {
            let mut spec = VmSpec::fuzz_target("bench-vm");
            spec.memory = 32 << 20;
            let vm = c.vm_create(&spec).expect("VM.create");
            for _ in 0..starts {
                let t = Instant::now();
                c.vm_start(&vm, false).expect("VM.start");
                vm_start.push(t.elapsed().as_secs_f64() * 1000.0);
                let state = c
                    .session_call("VM.get_power_state", &[Value::str(vm.clone())])
                    .expect("power state");
                assert_eq!(state.as_str(), Some("Running"));
                c.vm_hard_shutdown(&vm).expect("VM.hard_shutdown");
            }
            c.vm_destroy(&vm).expect("VM.destroy");
        }
        let h = c.hosts().expect("hosts")[0].0.clone();
        c.session_call("host.shutdown", &[Value::str(h)])
            .expect("host.shutdown");
        host.wait_down(Some(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "xen_host bench: boot {boot}: API answered {:.2} s after QEMU started",
            to_api[boot]
        );
    }
    eprintln!("xen_host bench: QEMU start -> API samples (s): {to_api:.2?}");
    eprintln!("xen_host bench: VM.start samples (ms): {vm_start:.1?}");
    line("xen_qemu_start_to_api", p50(to_api), "s", 3.0);
    line("xen_vm_start_api", p50(vm_start), "ms", 50.0);
}
