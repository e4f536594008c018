//! Xen-mode tests: boot real Xen 4.17 under QEMU (TCG) with Windsor images.
//!
//! They drive the same code as `cargo xtask xen-boot` (the module is
//! included from `xtask/src/xen_boot.rs`), which installs QEMU and Xen if
//! missing, builds the images for `x86_64-unknown-none`, and always stops
//! QEMU. Each boot takes about 1–3 s of wall time; every boot has a hard
//! 60 s limit. Boots run one at a time so the measured times mean something.

#[allow(dead_code)]
#[path = "../../xtask/src/xen_boot.rs"]
mod xen_boot;

use std::sync::Mutex;
use xen_boot::{boot, XenBootArgs, READY_MARKER};

static ONE_BOOT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn args(image: &str) -> XenBootArgs {
    XenBootArgs {
        image: Some(image.into()),
        timeout: Some(60),
        quiet: true,
        ..XenBootArgs::default()
    }
}

#[test]
fn dom0_boots_to_ready_and_powers_off_cleanly() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = boot(&args("dom0-hello")).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(r.ready_line.contains(READY_MARKER), "{}", r.ready_line);
    let has = |s: &str| r.lines.iter().any(|l| l.contains(s));
    assert!(
        has("windsor dom0-hello: Xen 4.17, dom0"),
        "dom0 banner missing"
    );
    assert!(
        has("event channel loopback ok"),
        "event channel loopback missing"
    );
    assert!(has("grant copy ok"), "grant copy missing");
    assert!(
        has("windsor: domctl ok (created d1"),
        "domain create/destroy missing"
    );
    assert!(
        has("Hardware Dom0 halted: halting machine"),
        "no clean poweroff"
    );
    assert!(!has("crashed") && !has("Panic on CPU"));
    let dom0_ms = r.dom0_ms.expect("ready line carries dom0=… ms");
    assert!(
        dom0_ms > 0.0 && dom0_ms < 10_000.0,
        "dom0 start -> ready {dom0_ms} ms"
    );
    eprintln!(
        "xen-mode: ready after {:.2} s wall, dom0 start -> ready {dom0_ms:.1} ms, Xen uptime {:?} ms",
        r.wall_to_ready.as_secs_f64(),
        r.xen_ms
    );
}

#[test]
fn image_without_pvh_note_is_rejected_before_qemu_starts() {
    // This test binary is a host ELF: no XEN_ELFNOTE_PHYS32_ENTRY.
    let exe = std::env::current_exe().expect("test binary path");
    let err = boot(&args(exe.to_str().expect("utf-8 path"))).expect_err("must be refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("rejected") && msg.contains("XEN_ELFNOTE_PHYS32_ENTRY"),
        "{msg}"
    );
}

#[test]
fn xen_refusing_a_broken_dom0_fails_the_boot_with_the_log() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = xen_boot::work_dir();
    std::fs::create_dir_all(&dir).expect("work dir");
    let bad = dir.join("not-an-elf.bin");
    std::fs::write(&bad, b"this is not a kernel\n".repeat(64)).expect("write");
    let err = boot(&XenBootArgs {
        no_check: true,
        ..args(bad.to_str().expect("utf-8 path"))
    })
    .expect_err("Xen must refuse it");
    let msg = format!("{err:#}");
    assert!(msg.contains("xen-boot failed"), "{msg}");
    assert!(
        msg.contains("Panic on CPU") || msg.contains("crashed"),
        "{msg}"
    );
    assert!(msg.contains("last serial lines"), "{msg}");
}

#[test]
fn a_panicking_dom0_is_reported_as_crashed_with_its_message() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let err = boot(&XenBootArgs {
        cmdline: "panic".into(),
        ..args("dom0-hello")
    })
    .expect_err("a panicking dom0 must fail the boot");
    let msg = format!("{err:#}");
    assert!(msg.contains("Dom0 crashed"), "{msg}");
    assert!(
        msg.contains("windsor: panic: panicked at")
            && msg.contains("panic requested on the command line"),
        "{msg}"
    );
}

#[test]
fn a_faulting_dom0_reports_the_cpu_exception() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let err = boot(&XenBootArgs {
        cmdline: "fault".into(),
        ..args("dom0-hello")
    })
    .expect_err("a faulting dom0 must fail the boot");
    let msg = format!("{err:#}");
    assert!(msg.contains("Dom0 crashed"), "{msg}");
    assert!(
        msg.contains("CPU exception 14 (page fault)") && msg.contains("cr2 0x100000000"),
        "{msg}"
    );
}

#[test]
fn dom0_builds_runs_and_destroys_a_guest() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = boot(&XenBootArgs {
        modules: vec!["guest-hello".into()],
        ..args("dom0-hello")
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let has = |s: &str| r.lines.iter().any(|l| l.contains(s));
    assert!(has("windsor: module 0: built d2"), "guest not built");
    // The guest's own line, through port 0xe9: Xen prefixes it with (d2).
    assert!(
        r.lines.iter().any(|l| l.starts_with("(d2)")
            && l.contains("guest-hello: dom2 up")
            && l.contains("cmdline \"domid=2 module=0\"")
            && !l.contains("xenstore ring -1")),
        "guest did not report (with its xenstore ring)"
    );
    assert!(
        has("windsor: module 0: d2 shut down: Some(Poweroff)"),
        "guest did not power off"
    );
    assert!(has("Hardware Dom0 halted: halting machine"));
    eprintln!(
        "xen-mode guest: ready after {:.2} s wall, dom0 start -> ready {:?} ms",
        r.wall_to_ready.as_secs_f64(),
        r.dom0_ms
    );
}

#[test]
fn a_broken_guest_image_is_refused_and_the_host_stays_up() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = xen_boot::work_dir();
    std::fs::create_dir_all(&dir).expect("work dir");
    let bad = dir.join("broken-guest.bin");
    std::fs::write(&bad, b"definitely not an ELF image\n".repeat(32)).expect("write");
    let r = boot(&XenBootArgs {
        modules: vec![bad.to_str().expect("utf-8 path").into()],
        ..args("dom0-hello")
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let has = |s: &str| r.lines.iter().any(|l| l.contains(s));
    assert!(
        has("windsor: builder: d2: image refused: not an ELF file"),
        "no reason given"
    );
    assert!(
        has("windsor: module 0: build of d2 refused: hypercall failed: ENOEXEC"),
        "no ENOEXEC"
    );
    assert!(r.ready_line.contains(READY_MARKER));
    assert!(
        has("Hardware Dom0 halted: halting machine"),
        "host did not stay up to a clean poweroff"
    );
}

#[test]
fn more_than_one_module_is_refused_with_the_reason() {
    let err = boot(&XenBootArgs {
        modules: vec!["a".into(), "b".into()],
        ..args("dom0-hello")
    })
    .expect_err("Xen would silently drop the second module");
    assert!(
        format!("{err:#}").contains("only its first module"),
        "{err:#}"
    );
}

#[test]
fn a_crashing_guest_is_reported_and_cleaned_up_while_the_host_stays_up() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = boot(&XenBootArgs {
        modules: vec!["guest-hello".into()],
        cmdline: "guest.panic".into(),
        ..args("dom0-hello")
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let has = |s: &str| r.lines.iter().any(|l| l.contains(s));
    assert!(
        r.lines
            .iter()
            .any(|l| l.starts_with("(d2)") && l.contains("windsor: panic:")),
        "the guest's panic message is missing"
    );
    assert!(
        has("windsor: module 0: d2 shut down: Some(Crash)"),
        "crash not reported"
    );
    assert!(
        has("windsor: module 0: d2 destroyed and gone"),
        "crashed guest not cleaned up"
    );
    assert!(
        has("Hardware Dom0 halted: halting machine"),
        "host did not stay up"
    );
}
