//! Xen-mode tests: boot real Xen 4.17 under QEMU (TCG) with Windsor images.
//!
//! They drive the same code as `cargo xtask xen-boot` (the module is
//! included from `xtask/src/xen_boot.rs`), which installs QEMU and Xen if
//! missing, builds the images for `x86_64-unknown-none`, and always stops
//! QEMU. Each boot takes about 1–3 s of wall time; every boot has a hard
//! 60 s limit. Boots run one at a time so the measured times mean something.
//!
//! Two groups: the runtime's own checks (`dom0-hello`, raw modules), and
//! the boot orchestration of a host description (`dom0` with a boot-config
//! bundle: the xenstore domain, guests introduced to it, their lifecycle
//! through xenstore, a vchan, crashes, refused images and plans). The
//! orchestration tests write small host descriptions (8 MiB domains, so
//! the builds are quick) except the default-host test, which boots
//! `boot-config/examples/default.toml` as `cargo xtask xen-boot` does.

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
    // A failing domctl is reported with its name, domain and Xen's code.
    assert!(
        has("windsor: domctl failure reported: XEN_DOMCTL_unpausedomain (dom 32751) failed: ESRCH (3)"),
        "domctl failure without the op and code"
    );
    assert!(
        has("windsor: domctl failure reported: XEN_DOMCTL_createdomain failed: EINVAL (22)"),
        "createdomain failure without the op and code"
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
    // The failing step by name, the code, and the reason.
    assert!(
        has("windsor: builder: d2: image refused: not an ELF file (ENOEXEC)"),
        "builder line without the code"
    );
    assert!(
        has("build of d2 refused: hypercall failed: ENOEXEC (8); image check failed: ENOEXEC: not an ELF file"),
        "refusal without the failing step and its reason"
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

// ---------------------------------------------------------------------------
// Boot orchestration: dom0 (`unikernel/images/dom0`) builds the host of a
// boot-config description from the bundle.

/// A host description with a small xenstore domain and `guests` (TOML
/// `[[guests]]` tables), written with its images dir under the work dir.
fn host(name: &str, guests: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    host_with(name, guests, 5000)
}

/// [`host`] with dom0's `shutdown_ms`.
fn host_with(
    name: &str,
    guests: &str,
    shutdown_ms: u32,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = xen_boot::work_dir().join(format!("host-{name}"));
    std::fs::create_dir_all(&dir).expect("host dir");
    let toml = format!(
        r#"[host]
name = "{name}"

[dom0]
image = "windsor-dom0.elf"
memory_mib = 64

[dom0.timeouts]
domain_ready_ms = 5000
shutdown_ms = {shutdown_ms}

[[services]]
kind = "xenstore"
image = "windsor-xenstore-domain.elf"
memory_mib = 8

{guests}
[qemu]
timeout_secs = 60
"#
    );
    let path = dir.join("host.toml");
    std::fs::write(&path, toml).expect("write host.toml");
    (path, dir)
}

fn boot_host(name: &str, guests: &str) -> xen_boot::BootReport {
    boot_config(host(name, guests), "")
}

fn boot_config(
    (config, dir): (std::path::PathBuf, std::path::PathBuf),
    dom0_cmdline: &str,
) -> xen_boot::BootReport {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    boot(&XenBootArgs {
        config: Some(config),
        images_dir: Some(dir),
        cmdline: dom0_cmdline.into(),
        quiet: true,
        ..XenBootArgs::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn has_line(r: &xen_boot::BootReport, parts: &[&str]) -> bool {
    r.lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn default_host_boots_to_ready_and_runs_a_guest_lifecycle() {
    let r = {
        let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // No image, no config: the default host description.
        boot(&XenBootArgs {
            quiet: true,
            ..XenBootArgs::default()
        })
        .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let has = |parts: &[&str]| has_line(&r, parts);
    assert!(has(&[
        "windsor dom0: plan for host \"windsor-dev\": 2 domains"
    ]));
    // The xenstore domain runs the store and says it has no persistence.
    assert!(has(&["(d1)", "xenstore-domain", "WITHOUT persistence"]));
    assert!(has(&["xenstore domain \"xenstore\" is d1 and answers"]));
    // The guest (the fuzz-target core in its Xen-mode image) is built from
    // the bundle, introduced, and reports through xenstore (dom0 read
    // data/booted and data/state).
    assert!(has(&["built guest \"fuzz0\" as d2 from bundle entry 2"]));
    assert!(has(&["(d2)", "fuzz-target: d2 up in"]));
    assert!(has(&["(d1)", "introduced d2"]));
    assert!(has(&[
        "guest \"fuzz0\" d2 running (data/booted=1, data/state=running)"
    ]));
    assert!(
        r.ready_line.contains("host=windsor-dev guests=1"),
        "{}",
        r.ready_line
    );
    let dom0_ms = r.dom0_ms.expect("ready line carries dom0=… ms");
    assert!(dom0_ms > 0.0 && dom0_ms < 20_000.0, "{dom0_ms}");
    // Asked through control/shutdown, the guest acknowledged and went.
    assert!(has(&[
        "guest \"fuzz0\" d2 shut down on request: Poweroff",
        "control/shutdown acknowledged"
    ]));
    // Released from xenstore (ring unmapped, port closed, nodes removed),
    // destroyed, and gone from Xen's list (grants and ports released).
    assert!(has(&[
        "(d1)",
        "released d2: ring unmapped, port",
        "closed, its nodes removed"
    ]));
    assert!(has(&[
        "guest \"fuzz0\" d2 cleaned up",
        "xenstore nodes gone, domain gone"
    ]));
    assert!(has(&["xenstore domain d1 destroyed; host down"]));
    assert!(has(&["Hardware Dom0 halted: halting machine"]));
    assert!(!has(&["crashed"]) && !has(&["STILL PRESENT"]));
    assert_eq!(r.failed_steps, Some(0), "every planned step succeeded");
    eprintln!(
        "xen-mode default host: ready after {:.2} s of QEMU wall time, dom0 start -> ready {dom0_ms:.1} ms",
        r.wall_to_ready.as_secs_f64()
    );
}

#[test]
fn a_vchan_stream_between_a_guest_and_dom0_has_a_matching_checksum() {
    let r = boot_host(
        "vchan",
        r#"[[guests]]
name = "streamer"
image = "windsor-guest-hello.elf"
memory_mib = 8
cmdline = "vchan=1048576"
"#,
    );
    let has = |parts: &[&str]| has_line(&r, parts);
    assert!(has(&["(d2)", "sent 1048576 bytes over vchan", "fnv1a64"]));
    assert!(
        has(&["vchan d2 -> dom0: 1048576 bytes", "matches the guest's"]),
        "no matching checksum"
    );
    assert!(!has(&["MISMATCH"]));
    assert_eq!(r.failed_steps, Some(0));
    assert!(has(&["guest \"streamer\" d2 cleaned up", "domain gone"]));
    assert!(has(&["Hardware Dom0 halted: halting machine"]));
}

#[test]
fn a_guest_that_crashes_is_reported_and_cleaned_up_and_the_host_comes_up() {
    let r = boot_host(
        "crash",
        r#"[[guests]]
name = "crasher"
image = "windsor-guest-hello.elf"
memory_mib = 8
cmdline = "panic"

[[guests]]
name = "survivor"
image = "windsor-guest-hello.elf"
memory_mib = 8
"#,
    );
    let has = |parts: &[&str]| has_line(&r, parts);
    assert!(has(&["(d2)", "windsor: panic: panicked at"]));
    assert!(has(&["(d2)", "guest panic requested on the command line"]));
    assert!(has(&["guest \"crasher\" d2 crashed while starting"]));
    assert!(has(&[
        "guest \"crasher\" d2 cleaned up (was Ok(Shutdown(Crash)))",
        "xenstore nodes gone, domain gone"
    ]));
    // Its xenstore connection was released too.
    assert!(has(&["(d1)", "released d2"]));
    assert!(has(&["guest \"survivor\" d3 running"]));
    assert!(r.ready_line.contains("guests=1"), "{}", r.ready_line);
    assert!(has(&[
        "guest \"survivor\" d3 shut down on request: Poweroff"
    ]));
    // The crash is a failed step: the host stayed up, the command fails.
    assert_eq!(r.failed_steps, Some(1));
    assert!(has(&["Hardware Dom0 halted: halting machine"]));
}

#[test]
fn a_broken_guest_image_in_the_bundle_is_refused_and_the_host_comes_up() {
    let (_, dir) = host("broken", "");
    std::fs::write(
        dir.join("broken.elf"),
        b"\x7fELF but not really\n".repeat(64),
    )
    .expect("write broken image");
    let r = boot_host(
        "broken",
        r#"[[guests]]
name = "broken"
image = "broken.elf"
memory_mib = 8

[[guests]]
name = "fine"
image = "windsor-guest-hello.elf"
memory_mib = 8
"#,
    );
    let has = |parts: &[&str]| has_line(&r, parts);
    assert!(has(&["windsor: builder: d2: image refused:"]));
    assert!(has(&[
        "guest \"broken\" not started: image \"broken.elf\" refused by the builder",
        "ENOEXEC",
        "(domain d2 destroyed)"
    ]));
    // dom0 names the failing step and the code, with the reason.
    assert!(has(&[
        "guest \"broken\" not started: image \"broken.elf\" refused by the builder: \
         image check failed: ENOEXEC: not a little-endian ELF64 x86_64 image (domain d2 destroyed)"
    ]));
    assert!(has(&[
        "windsor: builder: d2: image refused: not a little-endian ELF64 x86_64 image (ENOEXEC)"
    ]));
    assert!(has(&["guest \"fine\" d3 running"]));
    assert_eq!(
        r.failed_steps,
        Some(1),
        "the refused image is a failed step"
    );
    assert!(r.ready_line.contains("guests=1"), "{}", r.ready_line);
    assert!(has(&["Hardware Dom0 halted: halting machine"]));
}

#[test]
fn dom0_refuses_a_module_that_is_not_a_boot_bundle_with_the_reason() {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let err = boot(&XenBootArgs {
        modules: vec!["guest-hello".into()],
        ..args("dom0")
    })
    .expect_err("dom0 must refuse a module that is not a bundle");
    let msg = format!("{err:#}");
    assert!(msg.contains("Dom0 crashed"), "{msg}");
    assert!(
        msg.contains("boot bundle refused: boot bundle: bad magic"),
        "{msg}"
    );
}

#[test]
fn misbehaving_fuzz_targets_are_reported_destroyed_and_cleaned_up() {
    let fuzz = |name: &str| {
        format!(
            "[[guests]]\nname = \"{name}\"\nimage = \"windsor-fuzz-target.elf\"\nmemory_mib = 8\n\n"
        )
    };
    let guests = [fuzz("runner"), fuzz("stubborn"), fuzz("hang")].concat();
    let r = boot_config(
        host_with("misbehave", &guests, 300),
        "misbehave=runner:crash misbehave=stubborn:ignore-shutdown misbehave=hang:spin",
    );
    let has = |parts: &[&str]| has_line(&r, parts);
    assert!(r.ready_line.contains("guests=3"), "{}", r.ready_line);
    // Crashes while running: Xen reports it, dom0 says so and cleans up.
    assert!(has(&["guest \"runner\" d2 told to misbehave: crash"]));
    assert!(has(&[
        "guest \"runner\" d2 is already shut down: Crash (crashed)"
    ]));
    assert!(has(&[
        "guest \"runner\" d2 cleaned up",
        "xenstore nodes gone, domain gone"
    ]));
    // Ignores control/shutdown, or hangs: destroyed after shutdown_ms.
    for (name, d) in [("stubborn", "d3"), ("hang", "d4")] {
        assert!(has(&[&format!(
            "guest \"{name}\" {d} did not shut down within 300 ms; destroying it"
        )]));
        assert!(has(&[
            &format!("guest \"{name}\" {d} cleaned up"),
            "xenstore nodes gone, domain gone"
        ]));
    }
    assert!(has(&["(d1)", "released d4"]));
    assert_eq!(r.failed_steps, Some(3));
    assert!(has(&["Hardware Dom0 halted: halting machine"]));
}

#[test]
fn dom0_refuses_a_plan_from_another_version_with_the_plans_error() {
    // A bundle whose plan blob carries version 99 of the plan encoding.
    let mut blob = windsor_boot_config::plan::PLAN_MAGIC.to_vec();
    blob.extend_from_slice(&99u16.to_le_bytes());
    blob.extend_from_slice(b"whatever a future plan holds");
    let bundle = windsor_boot_config::bundle::build(&blob, &[]);
    let dir = xen_boot::work_dir();
    std::fs::create_dir_all(&dir).expect("work dir");
    let path = dir.join("plan-v99.bundle");
    std::fs::write(&path, bundle).expect("write bundle");
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let err = boot(&XenBootArgs {
        modules: vec![path.to_str().expect("utf-8 path").into()],
        ..args("dom0")
    })
    .expect_err("dom0 must refuse the plan");
    let msg = format!("{err:#}");
    assert!(msg.contains("Dom0 crashed"), "{msg}");
    assert!(
        msg.contains("boot plan refused: boot plan: version 99 is not supported")
            && msg.contains("rebuild dom0 and the plan from the same tree"),
        "{msg}"
    );
}

/// The `unpause -> init <ms> ms` dom0 printed for `guest`, every boot.
fn init_times(r: &xen_boot::BootReport, guest: &str) -> Vec<f64> {
    let who = format!("guest \"{guest}\" d");
    r.lines
        .iter()
        .filter(|l| l.starts_with("windsor dom0:") && l.contains(&who))
        .filter_map(|l| {
            let rest = &l[l.find("unpause -> init ")? + "unpause -> init ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Debian's own Linux kernel (`linux-image-6.1.0-*-amd64`, the package's
/// bzImage) as two PVH guests beside a Windsor fuzz-target guest, from
/// `boot-config/examples/linux-multi.toml`: the builder's ACPI tables
/// (two vCPUs come up), the initramfs as a start-info module, the console
/// served by dom0 with the guest's name on each line, `control/sysrq`,
/// a reboot through `control/shutdown` followed by a second boot, and
/// poweroff through `control/shutdown`. One guest (`console-garbage=`)
/// writes a garbage producer index into its console ring: dom0 disconnects
/// that console alone and the others go on; the same guest
/// (`ignore-shutdown=`) ignores the poweroff request and is hard-stopped
/// after `shutdown_ms`. The other (`console-flood=`) floods its console
/// from its init on, through its reboot: dom0 holds it to its rate (the
/// bytes it took, per boot, within the burst plus the rate times the
/// time), while linux0 and the fuzz-target boot, and the flooder itself
/// still reboots and powers off on request. The kernel and busybox-static
/// are fetched once with `apt-get download` and cached under `target/`.
#[test]
fn debian_linux_guests_boot_report_on_their_console_reboot_and_power_off() {
    let config = xen_boot::workspace_root().join("boot-config/examples/linux-multi.toml");
    let r = {
        let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        boot(&XenBootArgs {
            config: Some(config),
            cmdline: "reboot=linux1 console-garbage=linux0 ignore-shutdown=linux0 \
                      console-flood=linux1"
                .into(),
            quiet: true,
            ..XenBootArgs::default()
        })
        .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let has = |parts: &[&str]| has_line(&r, parts);
    let count = |parts: &[&str]| {
        r.lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    };
    // Only dom0 prints unprefixed lines: `[name] ...` is what its console
    // backend read from the guest's ring.
    let console = |guest: &str, text: &str| {
        let tag = format!("[{guest}] ");
        r.lines
            .iter()
            .filter(|l| l.starts_with(&tag) && l.contains(text))
            .count()
    };
    // linux0 booted with both vCPUs from the MADT; linux1 twice (before
    // and after its reboot).
    assert_eq!(console("linux0", "WINDSOR-LINUX-INIT up: kernel 6.1"), 1);
    assert_eq!(console("linux0", "2 cpu(s)"), 1, "both vCPUs up");
    assert_eq!(console("linux1", "WINDSOR-LINUX-INIT up: kernel 6.1"), 2);
    assert!(console("linux0", "ACPI: APIC") >= 1, "MADT seen by Linux");
    // The CPUID policy hid RDTSCP (QEMU's SVM has no NRIP save).
    assert!(has(&["windsor: builder:", "RDTSCP and RDPID hidden"]));
    assert_eq!(console("linux0", "rdtscp in cpuinfo: 0,"), 1);
    assert!(console("linux0", "modules: xen-blkfront xen-netfront") >= 1);
    for g in ["linux0", "linux1"] {
        assert!(has(&[
            &format!("guest \"{g}\" d"),
            "console shows \"WINDSOR-LINUX-INIT\""
        ]));
        assert!(has(&[
            &format!("guest \"{g}\" d"),
            "cleaned up: xenstore nodes gone"
        ]));
    }
    // linux1: sysrq, reboot and a second boot, poweroff.
    assert!(has(&[
        "guest \"linux1\" d",
        "control/sysrq = h handled",
        "node cleared"
    ]));
    assert!(console("linux1", "sysrq: HELP") >= 1);
    assert!(has(&[
        "guest \"linux1\" d",
        "rebooting on control/shutdown"
    ]));
    assert!(has(&["guest \"linux1\" booted again as d"]));
    assert!(console("linux1", "reboot: Restarting system") >= 1);
    assert!(has(&[
        "guest \"linux1\" d",
        "powered off on control/shutdown"
    ]));
    // linux0 wrote garbage into its console ring: disconnected, nothing
    // read from it after that; it ignored the poweroff request and was
    // hard-stopped (the only failed step).
    assert_eq!(console("linux0", "WINDSOR-LINUX-WILL-IGNORE-SHUTDOWN"), 1);
    assert_eq!(console("linux0", "WINDSOR-LINUX-GARBAGE"), 1);
    assert!(has(&[
        "guest \"linux0\" d",
        "console ring indices out of range",
        "console disconnected"
    ]));
    assert!(has(&[
        "guest \"linux0\" d",
        "console disconnected, sysrq not checked"
    ]));
    let last = r
        .lines
        .iter()
        .rposition(|l| l.starts_with("[linux0] "))
        .unwrap();
    assert!(
        r.lines[last].contains("WINDSOR-LINUX-GARBAGE"),
        "read after garbage: {}",
        r.lines[last]
    );
    let hard_stopped = count(&[
        "guest \"linux0\" d",
        "ignored control/shutdown",
        "hard-stopping",
    ]);
    assert_eq!(hard_stopped, 1);
    // The Windsor guest beside them went through its usual lifecycle.
    assert!(has(&["guest \"fuzz0\" d2 running (data/booted=1"]));
    assert!(has(&["guest \"fuzz0\" d2 shut down on request: Poweroff"]));
    assert!(r.ready_line.contains("guests=3"), "{}", r.ready_line);
    assert!(!has(&["crashed"]) && !has(&["STILL PRESENT"]));
    assert_eq!(
        r.failed_steps,
        Some(1),
        "every planned step succeeded but the guest that ignored poweroff"
    );
    // linux1 flooded its console, each boot: held to dom0's rate (a
    // 32 KiB burst, then 4 KiB/s; its last ring, at most 2 KiB, is taken
    // at teardown whatever the rate).
    // (Its second boot is powered off as soon as its init line is seen,
    // usually before it starts flooding again.)
    assert!(console("linux1", "WINDSOR-LINUX-FLOODING") >= 1);
    let flood_lines = console("linux1", "WINDSOR-LINUX-FLOOD ");
    // How long it floods depends on the machine's speed (63 lines on a
    // quiet CI machine, hundreds under load): enough to cross the burst.
    assert!(flood_lines >= 20, "the flooder wrote: {flood_lines} lines");
    let closed: Vec<(u64, u64, f64)> = r
        .lines
        .iter()
        .filter(|l| l.contains("guest \"linux1\" d") && l.contains("console closed: "))
        .filter_map(|l| {
            let rest = &l[l.find("console closed: ")? + "console closed: ".len()..];
            let w: Vec<&str> = rest.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(2)?.parse().ok()?,
                w.get(6)?.parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(closed.len(), 2, "one console per boot of linux1");
    for &(lines, bytes, secs) in &closed {
        let bound = 32768.0 + 4096.0 * secs + 2048.0;
        assert!(
            (bytes as f64) <= bound,
            "linux1 gave {bytes} bytes ({lines} lines) in {secs} s, bound {bound}"
        );
    }
    let (l0, l1) = (init_times(&r, "linux0"), init_times(&r, "linux1"));
    assert_eq!((l0.len(), l1.len()), (1, 2), "{l0:?} {l1:?}");
    eprintln!(
        "xen-mode console flood: linux1 {flood_lines} flood lines printed; per boot (lines, bytes, s) {closed:?}"
    );
    eprintln!(
        "xen-mode linux: unpause -> init linux0 {l0:?} ms, linux1 {l1:?} ms; \
         ready after {:.1} s, whole run {:.1} s of QEMU wall time",
        r.wall_to_ready.as_secs_f64(),
        r.wall_total.as_secs_f64()
    );
}
