//! The console service on the simulated hypervisor: guests write through
//! the platform `Console` (their ring), dom0's backend captures each one
//! into its own bounded, rate-limited history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use windsor_console::service::{ConsoleService, Guest, ServiceConfig};
use windsor_console::Limits;
use xen::platform::{Console, CreateConfig, DomainBuilder, DomainControl, DomainImage, Platform};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

fn guest(hv: &Hypervisor, image: &str, tag: u8) -> DomId {
    let dom0 = hv.dom0();
    let d = dom0
        .create(&CreateConfig {
            handle: [tag; 16],
            max_vcpus: 1,
            max_mem_kib: 4096,
            ..CreateConfig::default()
        })
        .unwrap();
    dom0.build(
        d,
        &DomainImage {
            kernel: image.as_bytes(),
            cmdline: "",
            xenstore_domid: DomId::DOM0,
            console_domid: DomId::DOM0,
        },
    )
    .unwrap();
    d
}

fn discover(hv: Hypervisor) -> impl FnMut() -> Vec<Guest> + Send {
    move || {
        hv.domains()
            .into_iter()
            .filter_map(|d| {
                Some(Guest {
                    dom: d,
                    port: hv.console_port(d)?,
                    name: format!("d{}", d.0),
                    handle: [0; 16],
                })
            })
            .collect()
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn a_flooding_guest_is_rate_limited_and_a_quiet_one_is_not_held_up() {
    let hv = Hypervisor::new();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    hv.register_image("flood", move |dom: SimDomain| {
        let mut n = 0u64;
        while !s.load(Ordering::Acquire) && dom.domid() != DomId::INVALID {
            dom.write(format!("flood line {n} {}\n", "x".repeat(50)).as_bytes());
            n += 1;
        }
    });
    hv.register_image("quiet", |dom: SimDomain| {
        for i in 0..20 {
            dom.write(format!("quiet line {i}\n").as_bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
        dom.write(b"quiet done\n");
        std::thread::sleep(Duration::from_secs(30));
    });
    let rate = 20_000u32;
    let svc = ConsoleService::start(
        hv.dom0(),
        ServiceConfig {
            limits: Limits {
                history_bytes: 8 * 1024,
                max_line: 256,
                rate_bytes_per_sec: rate,
                burst_bytes: 4 * 1024,
            },
            ..ServiceConfig::default()
        },
        discover(hv.clone()),
    )
    .unwrap();
    let consoles = svc.consoles();
    let flood = guest(&hv, "flood", 1);
    let quiet = guest(&hv, "quiet", 2);
    // Let the backend attach both before they run.
    assert!(wait_until(Duration::from_secs(5), || consoles.list().len() == 2));
    let t0 = Instant::now();
    hv.dom0().unpause(flood).unwrap();
    hv.dom0().unpause(quiet).unwrap();
    let quiet_uuid = consoles.of_domain(quiet).unwrap().uuid;
    let done = wait_until(Duration::from_secs(10), || {
        consoles
            .read(&quiet_uuid, 0)
            .is_some_and(|t| t.text.contains("quiet done\n"))
    });
    let quiet_time = t0.elapsed();
    assert!(done, "the quiet guest's output arrived");
    // 21 lines with 5 ms sleeps: well under a second, flood or not.
    assert!(
        quiet_time < Duration::from_secs(3),
        "quiet guest took {quiet_time:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let elapsed = t0.elapsed().as_secs_f64();
    let f = consoles.of_domain(flood).unwrap();
    let allowed = 4096.0 + f64::from(rate) * (elapsed + 0.2);
    assert!(
        (f.total_bytes as f64) <= allowed,
        "flooder took {} bytes in {elapsed:.2}s (allowed {allowed})",
        f.total_bytes
    );
    assert!(f.total_bytes >= 4096, "the flooder still makes progress");
    let hist = consoles.read(&f.uuid, 0).unwrap();
    assert!(hist.text.len() <= 8 * 1024 + 64, "history bounded");
    assert!(hist.text.contains("flood line"));
    eprintln!(
        "flood: {} bytes / {} lines captured in {elapsed:.2}s, {} bytes dropped by the guest, quiet guest done in {quiet_time:?}",
        f.total_bytes, f.lines, hv.console_dropped(flood).unwrap()
    );
    stop.store(true, Ordering::Release);
    hv.dom0().destroy(flood).unwrap();
    hv.dom0().destroy(quiet).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || consoles.list().is_empty()),
        "consoles go with their domains"
    );
    svc.stop();
}

#[test]
fn garbage_indices_disconnect_one_console_only() {
    let hv = Hypervisor::new();
    hv.register_image("talk", |dom: SimDomain| {
        for i in 0..3 {
            dom.write(format!("hello {i}\n").as_bytes());
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let svc =
        ConsoleService::start(hv.dom0(), ServiceConfig::default(), discover(hv.clone())).unwrap();
    let c = svc.consoles();
    let a = guest(&hv, "talk", 1);
    let b = guest(&hv, "talk", 2);
    assert!(wait_until(Duration::from_secs(5), || c.list().len() == 2));
    // Guest `a` scribbles on its own out_prod through its console page.
    {
        use xen::platform::{ForeignMapping, GrantTable};
        let m = hv
            .dom0()
            .map(a, &[xen::GrantRef::RESERVED_CONSOLE], false)
            .unwrap();
        m.rw()
            .unwrap()
            .atomic_u32(windsor_console::field::OUT_PROD)
            .store(1 << 20, Ordering::Release);
    }
    hv.dom0().unpause(b).unwrap();
    let ub = c.of_domain(b).unwrap().uuid;
    assert!(wait_until(Duration::from_secs(5), || c
        .read(&ub, 0)
        .is_some_and(|t| t.text == "hello 0\nhello 1\nhello 2\n")));
    assert!(wait_until(Duration::from_secs(5), || c
        .of_domain(a)
        .unwrap()
        .error
        .is_some()));
    assert!(c.of_domain(b).unwrap().error.is_none());
    let _ = hv.dom0().destroy(a);
    let _ = hv.dom0().destroy(b);
    svc.stop();
}
