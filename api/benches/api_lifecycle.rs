//! VM create + start to Running through the API, in host mode.
//!
//! The real toolstack on the simulated hypervisor serves the API on
//! loopback TCP; the Rust client (JSON-RPC, one kept-alive connection)
//! times `VM.create` + `VM.start` with N VMs already running, for N in 1,
//! 100 and 1,000 (`WINDSOR_BENCH_MAX_VMS` lowers the top; `WINDSOR_BENCH_SAMPLES`
//! sets samples per point, default 50). Background VMs are started through
//! the toolstack directly; every measured VM is stopped and destroyed
//! afterwards (untimed) so the running count stays N.
//!
//! Prints one JSON object per line: p50 and p99 in milliseconds per N, the
//! 1,000-VM p50 against the 1-VM p50 (goal: ratio ≤ 1.5), and xenstore
//! operations per create+start (LightVM's point: flat in N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_api::server::{Api, Config, Listen, Server};
use windsor_toolstack::action::{Action, NewRecord, Reply, VmRecord};
use windsor_toolstack::host::Host;

fn line(name: &str, value: f64, unit: &str, baseline: Option<f64>) {
    let ratio = baseline.filter(|b| *b > 0.0).map(|b| value / b);
    let num = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.4}"));
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.4},\"unit\":\"{unit}\",\"baseline\":{},\"ratio\":{}}}",
        num(baseline),
        num(ratio)
    );
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
    let max = env_usize("WINDSOR_BENCH_MAX_VMS", 1000);
    let samples = env_usize("WINDSOR_BENCH_SAMPLES", 50).max(1);
    let host = Host::start(windsor_toolstack::ToolstackConfig {
        shutdown_timeout: Duration::from_secs(60),
        seed: 3,
        ..windsor_toolstack::ToolstackConfig::default()
    })
    .expect("host mode starts");
    let ts = host.toolstack.clone();
    let api = Api::new(
        Arc::new(ts.clone()),
        Credentials::single("root", "bench", HashStrength::TestOnlyWeak).unwrap(),
        Config::default(),
    );
    let server = Server::start(
        Arc::new(api),
        &Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: None,
        },
    )
    .expect("server starts");
    let mut c = Client::connect(
        Endpoint::Tcp(server.tcp_addr().unwrap().to_string()),
        Protocol::JsonRpc,
    )
    .unwrap();
    c.login("root", "bench").unwrap();

    let mut running = 0usize;
    let mut p50_at_1 = None;
    let mut ops_at_1 = None;
    for n in [1usize, 100, 1000].into_iter().filter(|n| *n <= max.max(1)) {
        // N - 1 in the background, the measured one makes N.
        while running < n - 1 {
            let vm = match ts
                .handle(Action::Create(NewRecord::Vm(VmRecord {
                    name_label: format!("bg-{running}"),
                    PV_kernel: "fuzz-target".into(),
                    memory_static_max: 16 << 20,
                    memory_dynamic_max: 16 << 20,
                    memory_dynamic_min: 16 << 20,
                    ..VmRecord::default()
                })))
                .expect("create")
            {
                Reply::Ref(r) => r,
                other => panic!("{other:?}"),
            };
            ts.handle(Action::VmStart {
                vm,
                start_paused: false,
                force: false,
            })
            .expect("start");
            running += 1;
        }
        let mut times = Vec::with_capacity(samples);
        let mut ops = 0u64;
        for i in 0..samples {
            let spec = VmSpec::fuzz_target(&format!("m-{n}-{i}"));
            let before = host.store.ops();
            let t = Instant::now();
            let vm = c.vm_create(&spec).expect("VM.create");
            c.vm_start(&vm, false).expect("VM.start");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            ops += host.store.ops() - before;
            c.vm_hard_shutdown(&vm).expect("VM.hard_shutdown");
            c.vm_destroy(&vm).expect("VM.destroy");
        }
        times.sort_by(f64::total_cmp);
        let p50 = percentile(&times, 0.5);
        let p99 = percentile(&times, 0.99);
        let per_start = ops as f64 / samples as f64;
        line(
            &format!("api_vm_create_start_p50_{n}vms"),
            p50,
            "ms",
            p50_at_1,
        );
        line(&format!("api_vm_create_start_p99_{n}vms"), p99, "ms", None);
        line(
            &format!("api_vm_create_start_xenstore_ops_{n}vms"),
            per_start,
            "ops",
            ops_at_1,
        );
        if n == 1 {
            p50_at_1 = Some(p50);
            ops_at_1 = Some(per_start);
        }
    }
    c.logout().ok();
    server.stop();
    ts.stop();
}
