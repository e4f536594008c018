//! `windsor up` plugs networks the XenAPI way: a VM made through the API
//! with a VIF on the default network gets its VIF served by the netback
//! domain at `VM.start` (the standard backend/frontend layout, both ends
//! `Connected`, the guest's network up), and shutdown or destroy unplugs
//! it (its backend directory is gone).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_api::value::Value;

/// `xenstore-read`, or `None` if the node does not exist.
fn read(socket: &std::path::Path, path: &str) -> Option<String> {
    let out = Command::new("xenstore-read")
        .env("XENSTORED_PATH", socket)
        .arg(path)
        .output()
        .expect("xenstore-read (cargo xtask test installs xenstore-utils)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `path` until it reads `want` (20 s at most).
fn wait_for(socket: &std::path::Path, path: &str, want: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read(socket, path);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < end, "{path}: {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
fn vifs_are_plugged_at_start_by_netback_and_unplugged_at_shutdown() {
    let dir = std::env::temp_dir().join(format!("windsor-net-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let report = up.seen.join("\n");
    assert!(report.contains("netback"), "{report}");

    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::XmlRpc).unwrap();
    c.login("root", PASSWORD).unwrap();
    let nets = c
        .session_call(
            "network.get_by_name_label",
            &[Value::str("Pool-wide network associated with eth0")],
        )
        .unwrap();
    let net = nets.as_array().unwrap()[0].as_str().unwrap().to_string();

    let a = vm_with_vif(&mut c, "net-a", &net, "10.0.0.2/24");
    let b = vm_with_vif(&mut c, "net-b", &net, "10.0.0.3/24");
    let mut doms = Vec::new();
    for (vm, ip) in [(&a, "10.0.0.2/24"), (&b, "10.0.0.3/24")] {
        c.vm_start(vm, false).unwrap();
        let d = c
            .session_call("VM.get_domid", &[Value::str(vm.clone())])
            .unwrap();
        let d = match d {
            Value::Int(d) => d,
            Value::String(s) => s.parse().unwrap(),
            v => panic!("domid {v:?}"),
        };
        let fe = format!("/local/domain/{d}/device/vif/0");
        // The guest's netfront connected through netback.
        wait_for(
            &socket,
            &format!("/local/domain/{d}/data/net"),
            &format!("up {ip}"),
        );
        wait_for(&socket, &format!("{fe}/state"), "4");
        let be = read(&socket, &format!("{fe}/backend")).expect("backend path");
        let bid = read(&socket, &format!("{fe}/backend-id")).expect("backend-id");
        assert_ne!(bid, "0", "the VIF is served by the netback domain");
        assert!(be.starts_with(&format!("/local/domain/{bid}/backend/vif/{d}/0")));
        wait_for(&socket, &format!("{be}/state"), "4");
        // A MAC was assigned, the same on both ends.
        let mac = read(&socket, &format!("{be}/mac")).unwrap();
        assert_eq!(mac.len(), 17, "{mac}");
        assert_eq!(read(&socket, &format!("{fe}/mac")).as_deref(), Some(&*mac));
        doms.push((d, be));
    }
    let macs: Vec<_> = doms
        .iter()
        .map(|(_, be)| read(&socket, &format!("{be}/mac")).unwrap())
        .collect();
    assert_ne!(macs[0], macs[1], "each VIF gets its own MAC");

    // Clean shutdown and hard shutdown both unplug.
    c.vm_clean_shutdown(&a).unwrap();
    c.vm_hard_shutdown(&b).unwrap();
    for (d, be) in &doms {
        assert_eq!(read(&socket, be), None, "backend dir of dom{d} left");
    }
    // And the VMs start again, plugged anew.
    c.vm_start(&a, false).unwrap();
    let d = c
        .session_call("VM.get_domid", &[Value::str(a.clone())])
        .unwrap();
    let d = match d {
        Value::Int(d) => d,
        Value::String(s) => s.parse().unwrap(),
        v => panic!("domid {v:?}"),
    };
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/net"),
        "up 10.0.0.2/24",
    );

    // The netback domain stops cleanly with the host.
    let seen = up.interrupt();
    assert!(
        !seen.iter().any(|l| l.contains("no clean shutdown")),
        "{seen:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A VM's disk the XenAPI way: `VDI.create` makes a sparse raw file in the
/// SR directory, a VBD on it is written at `VM.start` under the blkback
/// domain's `backend/vbd`, blkback opens the image and offers it
/// (`InitWait`, its features); shutdown removes the backend directory,
/// `VDI.destroy` the file. The fuzz-target guest's blkfront connects to it
/// (both ends `Connected`) and runs its verifying workload on request.
#[test]
fn vbds_on_new_vdis_are_served_by_blkback() {
    let dir = std::env::temp_dir().join(format!("windsor-vbd-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    assert!(up.seen.join("\n").contains("blkback"), "{:#?}", up.seen);

    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::XmlRpc).unwrap();
    c.login("root", PASSWORD).unwrap();
    let srs = c
        .session_call("SR.get_by_name_label", &[Value::str("Local storage")])
        .unwrap();
    let sr = srs.as_array().unwrap()[0].as_str().unwrap().to_string();
    let size: i64 = 8 << 20;
    let vdi = c
        .session_call(
            "VDI.create",
            &[Value::record([
                ("name_label", Value::str("disk")),
                ("SR", Value::str(sr)),
                ("virtual_size", Value::Int(size)),
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
    let file = dir.join("sr").join(format!("{uuid}.img"));
    let meta = std::fs::metadata(&file).expect("the VDI's image file");
    assert_eq!(meta.len(), size as u64);
    {
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < size as u64, "not sparse: {meta:?}");
    }

    let vm = c.vm_create(&VmSpec::fuzz_target("disk-vm")).unwrap();
    let vbd = c
        .session_call(
            "VBD.create",
            &[Value::record([
                ("VM", Value::str(vm.clone())),
                ("VDI", Value::str(vdi.clone())),
                ("userdevice", Value::str("0")),
                ("mode", Value::str("RW")),
                ("type", Value::str("Disk")),
            ])],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    c.vm_start(&vm, false).unwrap();
    let d = match c
        .session_call("VM.get_domid", &[Value::str(vm.clone())])
        .unwrap()
    {
        Value::Int(d) => d,
        Value::String(s) => s.parse().unwrap(),
        v => panic!("domid {v:?}"),
    };
    // xvda: (202 << 8) | (0 << 4).
    let fe = format!("/local/domain/{d}/device/vbd/51712");
    let be = read(&socket, &format!("{fe}/backend")).expect("backend path");
    let bid = read(&socket, &format!("{fe}/backend-id")).unwrap();
    assert!(be.starts_with(&format!("/local/domain/{bid}/backend/vbd/{d}/51712")));
    assert_eq!(
        read(&socket, &format!("{be}/params")).as_deref(),
        Some(file.to_str().unwrap())
    );
    // blkback opened the image and offers it; the guest's blkfront
    // connected.
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/disk"),
        "connected 16384",
    );
    wait_for(&socket, &format!("{be}/state"), "4");
    wait_for(&socket, &format!("{fe}/state"), "4");
    // (It writes `error` and goes `Closing` when it cannot open it.)
    assert_eq!(read(&socket, &format!("{be}/error")), None);
    assert_eq!(
        read(&socket, &format!("{be}/feature-flush-cache")).as_deref(),
        Some("1")
    );
    // The guest's workload: write, flush, read back and check.
    let ctl = format!("/local/domain/{d}/control/disk");
    let out = format!("/local/domain/{d}/data/disk");
    for (req, want) in [("write 64 7", "written 64"), ("verify 64 7", "verified 64")] {
        let w = Command::new("xenstore-write")
            .env("XENSTORED_PATH", &socket)
            .args([ctl.as_str(), req])
            .status()
            .unwrap();
        assert!(w.success());
        wait_for(&socket, &out, want);
    }
    // A different pattern does not verify: the check can fail.
    let w = Command::new("xenstore-write")
        .env("XENSTORED_PATH", &socket)
        .args([ctl.as_str(), "verify 64 8"])
        .status()
        .unwrap();
    assert!(w.success());
    wait_for(&socket, &out, "bad 0");

    let attached = |c: &mut Client| {
        c.session_call("VBD.get_currently_attached", &[Value::str(vbd.clone())])
            .unwrap()
    };
    assert_eq!(attached(&mut c), Value::Bool(true));
    c.vm_hard_shutdown(&vm).unwrap();
    assert_eq!(read(&socket, &be), None, "backend dir left");
    assert_eq!(attached(&mut c), Value::Bool(false));
    c.session_call("VBD.destroy", &[Value::str(vbd)]).unwrap();
    c.session_call("VDI.destroy", &[Value::str(vdi)]).unwrap();
    assert!(!file.exists(), "the VDI's file is removed with it");
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The XAPI error code of a failed call.
fn code(r: Result<Value, windsor_api::client::ClientError>) -> String {
    match r {
        Err(windsor_api::client::ClientError::Api(e)) => e.code,
        r => panic!("expected a XenAPI failure, got {r:?}"),
    }
}

/// `VIF.plug`/`unplug` and `VBD.plug`/`unplug` on a running VM, with
/// XAPI's errors: the devices leave and come back (xenstore, backend,
/// `currently_attached`), the guest's frontends reconnect to them.
#[test]
fn vifs_and_vbds_hot_plug_on_a_running_vm() {
    let dir = std::env::temp_dir().join(format!("windsor-hotplug-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::XmlRpc).unwrap();
    c.login("root", PASSWORD).unwrap();
    let nets = c
        .session_call(
            "network.get_by_name_label",
            &[Value::str("Pool-wide network associated with eth0")],
        )
        .unwrap();
    let net = nets.as_array().unwrap()[0].as_str().unwrap().to_string();
    let vm = vm_with_vif(&mut c, "hotplug", &net, "10.0.0.9/24");
    let vif = c
        .session_call("VM.get_VIFs", &[Value::str(vm.clone())])
        .unwrap()
        .as_array()
        .unwrap()[0]
        .as_str()
        .unwrap()
        .to_string();
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
                ("virtual_size", Value::Int(4 << 20)),
                ("type", Value::str("user")),
            ])],
        )
        .unwrap();
    let vbd = c
        .session_call(
            "VBD.create",
            &[Value::record([
                ("VM", Value::str(vm.clone())),
                ("VDI", vdi),
                ("userdevice", Value::str("0")),
                ("mode", Value::str("RW")),
                ("type", Value::str("Disk")),
            ])],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    // Halted: no hot-plug.
    for call in ["VIF.plug", "VIF.unplug"] {
        assert_eq!(
            code(c.session_call(call, &[Value::str(vif.clone())])),
            "VM_BAD_POWER_STATE"
        );
    }
    assert_eq!(
        code(c.session_call("VBD.plug", &[Value::str(vbd.clone())])),
        "VM_BAD_POWER_STATE"
    );
    c.vm_start(&vm, false).unwrap();
    let d = match c
        .session_call("VM.get_domid", &[Value::str(vm.clone())])
        .unwrap()
    {
        Value::Int(d) => d,
        Value::String(s) => s.parse().unwrap(),
        v => panic!("domid {v:?}"),
    };
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/net"),
        "up 10.0.0.9/24",
    );
    wait_for(
        &socket,
        &format!("/local/domain/{d}/data/disk"),
        "connected 8192",
    );
    let attached = |c: &mut Client, class: &str, r: &str| {
        c.session_call(
            &format!("{class}.get_currently_attached"),
            &[Value::str(r.to_string())],
        )
        .unwrap()
    };
    for (class, r, fe) in [
        ("VIF", &vif, format!("/local/domain/{d}/device/vif/0")),
        ("VBD", &vbd, format!("/local/domain/{d}/device/vbd/51712")),
    ] {
        let plug = format!("{class}.plug");
        let unplug = format!("{class}.unplug");
        assert_eq!(
            code(c.session_call(&plug, &[Value::str(r.clone())])),
            "DEVICE_ALREADY_ATTACHED"
        );
        let be = read(&socket, &format!("{fe}/backend")).unwrap();
        c.session_call(&unplug, &[Value::str(r.clone())]).unwrap();
        assert_eq!(attached(&mut c, class, r), Value::Bool(false));
        assert_eq!(read(&socket, &be), None, "{class}: backend dir left");
        assert_eq!(read(&socket, &fe), None, "{class}: frontend dir left");
        assert_eq!(
            code(c.session_call(&unplug, &[Value::str(r.clone())])),
            "DEVICE_ALREADY_DETACHED"
        );
        c.session_call(&plug, &[Value::str(r.clone())]).unwrap();
        assert_eq!(attached(&mut c, class, r), Value::Bool(true));
        assert_eq!(read(&socket, &format!("{fe}/backend")), Some(be.clone()));
    }
    // A VIF created on the running VM is detached until plugged; then
    // netback offers it; unplugged, it can be destroyed.
    let hot = c
        .session_call(
            "VIF.create",
            &[Value::record([
                ("device", Value::str("1")),
                ("network", Value::str(net.clone())),
                ("VM", Value::str(vm.clone())),
                ("MAC", Value::str("")),
                ("MTU", Value::Int(1500)),
                ("other_config", Value::record::<&str>([])),
            ])],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(attached(&mut c, "VIF", &hot), Value::Bool(false));
    let fe1 = format!("/local/domain/{d}/device/vif/1");
    assert_eq!(read(&socket, &fe1), None);
    c.session_call("VIF.plug", &[Value::str(hot.clone())])
        .unwrap();
    let be1 = read(&socket, &format!("{fe1}/backend")).expect("plugged VIF 1");
    wait_for(&socket, &format!("{be1}/state"), "2");
    assert_eq!(
        code(c.session_call("VIF.destroy", &[Value::str(hot.clone())])),
        "VM_BAD_POWER_STATE"
    );
    c.session_call("VIF.unplug", &[Value::str(hot.clone())])
        .unwrap();
    assert_eq!(read(&socket, &be1), None);
    c.session_call("VIF.destroy", &[Value::str(hot)]).unwrap();
    // The guest's frontends connect to the devices again: the netfront by
    // itself, the blkfront when its next request finds the old ring gone.
    wait_for(
        &socket,
        &format!("/local/domain/{d}/device/vif/0/state"),
        "4",
    );
    let ctl = format!("/local/domain/{d}/control/disk");
    let out = format!("/local/domain/{d}/data/disk");
    let w = Command::new("xenstore-write")
        .env("XENSTORED_PATH", &socket)
        .args([ctl.as_str(), "write 16 3"])
        .status()
        .unwrap();
    assert!(w.success());
    wait_for(&socket, &out, "written 16");
    wait_for(
        &socket,
        &format!("/local/domain/{d}/device/vbd/51712/state"),
        "4",
    );
    // Shutdown detaches both.
    c.vm_hard_shutdown(&vm).unwrap();
    assert_eq!(attached(&mut c, "VIF", &vif), Value::Bool(false));
    assert_eq!(attached(&mut c, "VBD", &vbd), Value::Bool(false));
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
