//! Driver-domain restart by the toolstack in `windsor up`.
//!
//! A driver domain is killed with host mode's `SIGKILL` (dom0 writes its
//! domid to `/windsor/fault/kill-driver`: the domain crashes at once, its
//! threads stop at their next hypervisor call, nothing is cleaned up or
//! written back); the supervisor notices, starts a new one (a new domid),
//! the toolstack writes the running VMs' devices anew under it and plugs
//! them, and the guests' frontends reconnect.
//!
//! * blkback, while a guest writes a checksummed pattern to a qcow2 VDI
//!   and flushes: the guest goes on after the restart and reads back every
//!   block intact; repeated a few times; then `qemu-img check` passes and
//!   every block of the image, read by `qemu-img convert`, carries the last
//!   pattern.
//! * netback, during a TCP transfer between two guests: it completes, and
//!   every byte comes back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_api::value::Value;
use windsor_guest_fuzz_target::disk::{check, BLOCK};

const KILL_NODE: &str = "/windsor/fault/kill-driver";

fn read(socket: &Path, path: &str) -> Option<String> {
    let out = Command::new("xenstore-read")
        .env("XENSTORED_PATH", socket)
        .arg(path)
        .output()
        .expect("xenstore-read (cargo xtask test installs xenstore-utils)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write(socket: &Path, path: &str, v: &str) {
    xs(socket, "xenstore-write", &[path, v]);
}

/// Polls until `f` holds (at most `secs`).
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for(socket: &Path, path: &str, want: &str, secs: u64) {
    let mut got = None;
    wait_until(&format!("{path} = {want:?} (last: {got:?})"), secs, || {
        got = read(socket, path);
        got.as_deref() == Some(want)
    });
}

fn domid_of(c: &mut Client, vm: &str) -> i64 {
    match c
        .session_call("VM.get_domid", &[Value::str(vm.to_string())])
        .unwrap()
    {
        Value::Int(d) => d,
        Value::String(s) => s.parse().unwrap(),
        v => panic!("domid {v:?}"),
    }
}

fn login(dir: &Path) -> Client {
    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::XmlRpc).unwrap();
    c.login("root", PASSWORD).unwrap();
    c
}

#[test]
fn blkback_killed_during_flushed_writes_loses_nothing_flushed() {
    let dir = std::env::temp_dir().join(format!("windsor-blk-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let mut c = login(&dir);
    let srs = c
        .session_call("SR.get_by_name_label", &[Value::str("Local storage")])
        .unwrap();
    let sr = srs.as_array().unwrap()[0].as_str().unwrap().to_string();
    let vdi = c
        .session_call(
            "VDI.create",
            &[Value::record([
                ("name_label", Value::str("disk")),
                ("SR", Value::str(sr)),
                ("virtual_size", Value::Int(8 << 20)),
                ("type", Value::str("user")),
            ])],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let uuid = c
        .session_call("VDI.get_uuid", &[Value::str(vdi.clone())])
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    // The VDI's file made a qcow2 image (blkback picks the format from
    // its magic).
    let image = dir.join("sr").join(format!("{uuid}.img"));
    std::fs::remove_file(&image).unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("8M")
        .status()
        .expect("qemu-img (cargo xtask test installs qemu-utils)");
    assert!(made.success());

    let vm = c.vm_create(&VmSpec::fuzz_target("writer")).unwrap();
    c.session_call(
        "VBD.create",
        &[Value::record([
            ("VM", Value::str(vm.clone())),
            ("VDI", Value::str(vdi.clone())),
            ("userdevice", Value::str("0")),
            ("mode", Value::str("RW")),
            ("type", Value::str("Disk")),
        ])],
    )
    .unwrap();
    c.vm_start(&vm, false).unwrap();
    let d = domid_of(&mut c, &vm);
    let fe = format!("/local/domain/{d}/device/vbd/51712");
    let data = format!("/local/domain/{d}/data");
    // The guest's blkfront connected through blkback.
    wait_for(&socket, &format!("{data}/disk"), "connected 16384", 20);
    wait_for(&socket, &format!("{fe}/state"), "4", 20);

    const BLOCKS: u64 = 2048;
    const ROUNDS: u64 = 3;
    let t0 = Instant::now();
    let mut restarts = Vec::new();
    for round in 0..ROUNDS {
        let seed = 0x5eed_0000 + round;
        write(&socket, &format!("{data}/disk"), "");
        write(&socket, &format!("{data}/disk-flushed"), "0");
        write(
            &socket,
            &format!("/local/domain/{d}/control/disk"),
            &format!("write {BLOCKS} {seed}"),
        );
        // Kill blkback once some batches are flushed, mid-way.
        let mut flushed = 0;
        wait_until("flushed writes", 30, || {
            flushed = read(&socket, &format!("{data}/disk-flushed"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64);
            flushed >= 64
        });
        let old = read(&socket, &format!("{fe}/backend-id")).unwrap();
        let killed = Instant::now();
        write(&socket, KILL_NODE, &old);
        // A new blkback serves the disk, the guest reconnects to it.
        let mut new = old.clone();
        wait_until("a new blkback", 30, || {
            new = read(&socket, &format!("{fe}/backend-id")).unwrap_or_default();
            !new.is_empty() && new != old
        });
        wait_for(&socket, &format!("{fe}/state"), "4", 30);
        restarts.push(killed.elapsed());
        // The guest finishes its writes (again from the first block not
        // flushed), then reads every block back intact.
        wait_for(
            &socket,
            &format!("{data}/disk"),
            &format!("written {BLOCKS}"),
            60,
        );
        assert!(
            flushed < BLOCKS,
            "round {round}: all written before the kill"
        );
        let reconnects: u64 = read(&socket, &format!("{data}/disk-reconnects"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            reconnects,
            round + 1,
            "round {round}: one reconnection each"
        );
        write(&socket, &format!("{data}/disk"), "");
        write(
            &socket,
            &format!("/local/domain/{d}/control/disk"),
            &format!("verify {BLOCKS} {seed}"),
        );
        wait_for(
            &socket,
            &format!("{data}/disk"),
            &format!("verified {BLOCKS}"),
            60,
        );
    }
    println!(
        "blkback restarts (kill to frontend reconnected): {restarts:?}; {ROUNDS} rounds in {:?}",
        t0.elapsed()
    );

    // The image is sound, and holds the last round's pattern everywhere.
    c.vm_hard_shutdown(&vm).unwrap();
    let out = Command::new("qemu-img")
        .arg("check")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = dir.join("image.raw");
    let conv = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(conv.success());
    let bytes = std::fs::read(&raw).unwrap();
    let seed = 0x5eed_0000 + ROUNDS - 1;
    for i in 0..BLOCKS {
        let b = &bytes[i as usize * BLOCK..(i as usize + 1) * BLOCK];
        assert_eq!(check(b), Some((i, seed)), "block {i} of the image");
    }
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}

fn vm_with_vif(c: &mut Client, name: &str, net: &str, ip: &str) -> String {
    let vm = c.vm_create(&VmSpec::fuzz_target(name)).unwrap();
    let vif = Value::record([
        ("device", Value::str("0")),
        ("network", Value::str(net)),
        ("VM", Value::str(vm.clone())),
        ("MAC", Value::str("")),
        ("MTU", Value::Int(1500)),
        ("other_config", Value::record([("ip", Value::str(ip))])),
    ]);
    c.session_call("VIF.create", &[vif]).unwrap();
    vm
}

#[test]
fn netback_killed_during_a_tcp_transfer_between_guests() {
    let dir = std::env::temp_dir().join(format!("windsor-net-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let mut c = login(&dir);
    let nets = c
        .session_call(
            "network.get_by_name_label",
            &[Value::str("Pool-wide network associated with eth0")],
        )
        .unwrap();
    let net = nets.as_array().unwrap()[0].as_str().unwrap().to_string();
    let a = vm_with_vif(&mut c, "echo-server", &net, "10.0.0.2/24");
    let b = vm_with_vif(&mut c, "echo-client", &net, "10.0.0.3/24");
    let mut doms = Vec::new();
    for (vm, ip) in [(&a, "10.0.0.2/24"), (&b, "10.0.0.3/24")] {
        c.vm_start(vm, false).unwrap();
        let d = domid_of(&mut c, vm);
        wait_for(
            &socket,
            &format!("/local/domain/{d}/data/net"),
            &format!("up {ip}"),
            20,
        );
        doms.push(d);
    }
    let db = doms[1];
    const LEN: usize = 4_000_000;
    write(
        &socket,
        &format!("/local/domain/{db}/control/net-echo"),
        &format!("10.0.0.2 {LEN}"),
    );
    let progress = format!("/local/domain/{db}/data/net-echo-progress");
    wait_until("the transfer under way", 60, || {
        read(&socket, &progress)
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n >= 256 << 10)
    });
    let fe = format!("/local/domain/{db}/device/vif/0");
    let old = read(&socket, &format!("{fe}/backend-id")).unwrap();
    let killed = Instant::now();
    write(&socket, KILL_NODE, &old);
    let result = format!("/local/domain/{db}/data/net-echo");
    assert_eq!(read(&socket, &result), None, "transfer too short to be cut");
    let mut new = old.clone();
    wait_until("a new netback", 30, || {
        new = read(&socket, &format!("{fe}/backend-id")).unwrap_or_default();
        !new.is_empty() && new != old
    });
    for d in &doms {
        wait_for(
            &socket,
            &format!("/local/domain/{d}/device/vif/0/state"),
            "4",
            30,
        );
    }
    let reconnected = killed.elapsed();
    wait_for(&socket, &result, &format!("ok {LEN}"), 120);
    println!(
        "netback restart: frontends reconnected {reconnected:?} after the kill; transfer done {:?} after it",
        killed.elapsed()
    );
    // VMs started now use the new netback.
    c.vm_hard_shutdown(&a).unwrap();
    c.vm_start(&a, false).unwrap();
    let d = domid_of(&mut c, &a);
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/net"),
        "up 10.0.0.2/24",
        20,
    );
    assert_eq!(
        read(
            &socket,
            &format!("/local/domain/{d}/device/vif/0/backend-id")
        ),
        Some(new)
    );
    let seen = up.interrupt();
    assert!(
        !seen.iter().any(|l| l.contains("no clean shutdown")),
        "{seen:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A netback that hangs (its domain paused: it runs on but its control
/// channel answers nothing) is judged hung by the health probe and
/// restarted; the guest's VIF comes back on the new one.
#[test]
fn a_hung_netback_is_restarted_after_missed_health_checks() {
    let dir = std::env::temp_dir().join(format!("windsor-hang-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let mut c = login(&dir);
    let nets = c
        .session_call(
            "network.get_by_name_label",
            &[Value::str("Pool-wide network associated with eth0")],
        )
        .unwrap();
    let net = nets.as_array().unwrap()[0].as_str().unwrap().to_string();
    let vm = vm_with_vif(&mut c, "hang", &net, "10.0.0.5/24");
    c.vm_start(&vm, false).unwrap();
    let d = domid_of(&mut c, &vm);
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/net"),
        "up 10.0.0.5/24",
        20,
    );
    let fe = format!("/local/domain/{d}/device/vif/0");
    let old = read(&socket, &format!("{fe}/backend-id")).unwrap();
    let hung = Instant::now();
    write(&socket, "/windsor/fault/hang-driver", &old);
    let mut new = old.clone();
    wait_until("a new netback", 30, || {
        new = read(&socket, &format!("{fe}/backend-id")).unwrap_or_default();
        !new.is_empty() && new != old
    });
    wait_for(&socket, &format!("{fe}/state"), "4", 30);
    println!(
        "hung netback replaced, VIF reconnected {:?} after the hang",
        hung.elapsed()
    );
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
