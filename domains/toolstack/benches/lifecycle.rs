//! VM create+start to Running, with the guest connected to xenstore, in
//! host mode: p50 and p99 with 1, 100 and 1,000 VMs running, and xenstore
//! operations per VM start (the toolstack's requests for create + start,
//! counted, plus the guest's six boot requests).
//!
//! Guests talk to xenstore over their xenbus rings, served by the host's
//! xenstore domain (`BENCH_TRANSPORT=direct` for in-process connections).
//!
//! Run: `cargo bench -p windsor-toolstack --bench lifecycle`. Prints one
//! JSON object per line: `{"name","value","unit","baseline","ratio"}`.
//! Latency baselines are the goal (1 ms p50); the flatness line
//! compares the 1,000-VM p50 with the 1-VM p50 (goal: ratio ≤ 1.5); the
//! ops lines compare with the 1-VM count (goal: ratio 1).
//!
//! A sample: `VM.create`, `VM.start`, then wait until the guest has
//! written `data/booted` (a dom0 watch on `/local/domain`); then the VM is
//! hard-shut-down and destroyed outside the timed part, so the number of
//! running VMs stays at the level; samples are 3 ms apart so that each
//! is taken on a quiet host (the teardown makes the watcher scan every
//! domain, which would otherwise overlap the next sample).

use std::time::{Duration, Instant};

use windsor_toolstack::action::{Action, Class, NewRecord, Reply, VmRecord};
use windsor_toolstack::host::{Host, Transport};
use windsor_toolstack::localstore::LocalStore;
use windsor_toolstack::ToolstackConfig;
use windsor_xenstore::client::XenStore;
use xen::DomId;

/// Requests the fuzz-target makes to come up: two watches, `data/booted`,
/// `data/state`, then `data/boot-id` and `data/resumes` (counted from its
/// code: the guest's connection is not reachable from here, and its last
/// requests race the timer).
const GUEST_BOOT_OPS: u64 = 6;

fn vm_record(name: &str) -> VmRecord {
    VmRecord {
        name_label: name.into(),
        PV_kernel: "fuzz-target".into(),
        memory_static_max: 16 << 20,
        memory_dynamic_max: 16 << 20,
        memory_dynamic_min: 16 << 20,
        memory_target: 16 << 20,
        ..VmRecord::default()
    }
}

/// Creates and starts one VM and waits for its guest's `data/booted`.
/// Returns the ref and the xenstore ops it took.
fn create_start(h: &Host, watcher: &LocalStore, name: &str) -> (String, u64) {
    let ops0 = h.store.conn_ops();
    let t0 = Instant::now();
    let r = match h
        .toolstack
        .handle(Action::Create(NewRecord::Vm(vm_record(name))))
    {
        Ok(Reply::Ref(r)) => r,
        other => panic!("create: {other:?}"),
    };
    let t_create = t0.elapsed();
    h.toolstack
        .handle(Action::VmStart {
            vm: r.clone(),
            start_paused: false,
            force: false,
        })
        .expect("start");
    let t_start = Instant::now();
    let d = h.toolstack.domid(&r).expect("domid");
    let want = format!("/local/domain/{}/data/booted", d.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = watcher
            .next_event(Some(deadline.saturating_duration_since(Instant::now())))
            .expect("guest never booted");
        if e.path == want {
            break;
        }
    }
    if std::env::var_os("BENCH_PHASES").is_some() {
        eprintln!(
            "phases_us {} {} {}",
            t_create.as_micros(),
            (t_start - t0 - t_create).as_micros(),
            t_start.elapsed().as_micros()
        );
    }
    (r, h.store.conn_ops() - ops0 + GUEST_BOOT_OPS)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn line(name: &str, value: f64, unit: &str, baseline: f64) {
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"ratio\":{:.3}}}",
        value / baseline
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // BENCH_LEVELS="1000:50,1:50" picks levels (running VMs:samples).
    let env_levels: Option<Vec<(usize, usize)>> = std::env::var("BENCH_LEVELS").ok().map(|s| {
        s.split(',')
            .filter_map(|l| {
                let (a, b) = l.split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect()
    });
    let levels: &[(usize, usize)] = match &env_levels {
        Some(l) => l,
        None if quick => &[(1, 20), (100, 20)],
        None => &[(1, 300), (100, 300), (1000, 200)],
    };
    // BENCH_TRANSPORT=direct: guests on in-process connections instead of
    // their xenbus rings (names get a `_direct` suffix).
    let (transport, sfx) = match std::env::var("BENCH_TRANSPORT").as_deref() {
        Ok("direct") => (Transport::Direct, "_direct"),
        _ => (Transport::Ring, ""),
    };
    let mut p50_at_1 = None;
    let mut ops_at_1 = None;
    for &(running, samples) in levels {
        let h = Host::start_with(
            ToolstackConfig {
                shutdown_timeout: Duration::from_secs(5),
                ..ToolstackConfig::default()
            },
            transport,
        )
        .expect("host");
        let watcher = h.store.connect(DomId::DOM0);
        watcher.watch("/local/domain", "bench").expect("watch");
        for i in 0..running - 1 {
            create_start(&h, &watcher, &format!("bg{i}"));
        }
        let mut lat = Vec::with_capacity(samples);
        let mut ops = Vec::with_capacity(samples);
        for i in 0..samples {
            // Drain stale events so the wait below sees this VM's.
            while watcher.next_event(Some(Duration::ZERO)).is_ok() {}
            let t0 = Instant::now();
            let (r, n) = create_start(&h, &watcher, &format!("s{i}"));
            lat.push(t0.elapsed().as_secs_f64() * 1e6);
            ops.push(n as f64);
            h.toolstack
                .handle(Action::VmHardShutdown { vm: r.clone() })
                .expect("hard_shutdown");
            h.toolstack
                .handle(Action::Destroy {
                    class: Class::Vm,
                    r,
                })
                .expect("destroy");
            // Let the teardown's aftermath (the guest thread's exit, the
            // watcher's domain scan on VIRQ_DOM_EXC) finish before the
            // next sample: a start is measured on a quiet host.
            std::thread::sleep(Duration::from_millis(3));
        }
        lat.sort_by(f64::total_cmp);
        ops.sort_by(f64::total_cmp);
        let p50 = pct(&lat, 0.5);
        let p99 = pct(&lat, 0.99);
        let ops50 = pct(&ops, 0.5);
        line(
            &format!("vm_create_start_p50_{running}vms{sfx}"),
            p50,
            "us",
            1000.0,
        );
        line(
            &format!("vm_create_start_p99_{running}vms{sfx}"),
            p99,
            "us",
            1000.0,
        );
        line(
            &format!("xenstore_ops_per_vm_start_{running}vms{sfx}"),
            ops50,
            "ops",
            *ops_at_1.get_or_insert(ops50),
        );
        let base = *p50_at_1.get_or_insert(p50);
        if running > 1 {
            line(
                &format!("vm_create_start_p50_flatness_{running}vs1{sfx}"),
                p50 / base,
                "x",
                1.5,
            );
        }
        h.toolstack.stop();
    }
}
