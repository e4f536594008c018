//! Ansible's XenServer modules (`community.general`, bundled with the PyPI
//! `ansible` package) against `windsor up`, as an automation user would run
//! them: `xenserver_guest` deploys a VM from the built-in template,
//! with a disk (a new VDI in the local SR) and a network interface,
//! `xenserver_guest_info` reads its facts, `xenserver_guest_powerstate`
//! starts it (the guest's blkfront connects to its disk through blkback)
//! and shuts it down through the guest, and `xenserver_guest` removes it
//! with its disk. Each reads `host.software_version['product_version']`
//! first.
//!
//! Fails, with the install command, when Ansible is missing
//! (`cargo xtask setup` installs it: `python3 -m pip install ansible`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs an Ansible module on the implicit localhost; returns the JSON it
/// printed after `localhost | SUCCESS =>` (or panics with the output).
fn module(name: &str, args: &str) -> serde_json::Value {
    let home = std::env::temp_dir().join(format!("windsor-ansible-{}", std::process::id()));
    let mut child = Command::new("python3")
        .args(["-m", "ansible.cli.adhoc", "localhost", "-m"])
        .arg(format!("community.general.{name}"))
        .args(["-a", args, "-e", "ansible_python_interpreter=python3"])
        .env("ANSIBLE_HOME", &home)
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("ansible {name} timed out");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = text
        .split_once("| SUCCESS =>")
        .or_else(|| text.split_once("| CHANGED =>"))
        .map(|(_, j)| j)
        .unwrap_or_else(|| {
            panic!(
                "ansible {name} {args}:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn ansible_xenserver_modules_drive_a_vm() {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import ansible, ansible_collections.community.general, XenAPI",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Ansible or XenAPI is missing: `python3 -m pip install ansible XenAPI` (cargo xtask setup)"
    );
    let dir = std::env::temp_dir().join(format!("windsor-ansible-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = Up::start(&dir);
    let url = up
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("windsor: API "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the API address")
        .to_owned();
    let login = format!("hostname={url} username=root password={PASSWORD} name=ansible1");
    let net = "Pool-wide network associated with eth0";
    let deployed = module(
        "xenserver_guest",
        &serde_json::json!({
            "hostname": url,
            "username": "root",
            "password": PASSWORD,
            "name": "ansible1",
            "template": "Windsor fuzz-target",
            "state": "present",
            "disks": [{"size_mb": 8, "sr": "Local storage"}],
            "networks": [{"name": net}],
        })
        .to_string(),
    );
    assert_eq!(deployed["changed"], true, "{deployed}");
    assert_eq!(power_state(&dir, "ansible1").as_deref(), Some("Halted"));
    let sr_files = || {
        std::fs::read_dir(dir.join("sr"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let images = sr_files();
    assert_eq!(images.len(), 1, "one VDI file: {images:?}");
    assert_eq!(std::fs::metadata(&images[0]).unwrap().len(), 8 << 20);

    let info = module("xenserver_guest_info", &login);
    let vm = &info["instance"];
    assert_eq!(vm["name"], "ansible1", "{info}");
    assert_eq!(vm["state"], "poweredoff", "{info}");
    assert_eq!(vm["is_template"], false, "{info}");
    assert_eq!(vm["hardware"]["num_cpus"], 1, "{info}");
    let disks = vm["disks"].as_array().expect("disks");
    assert_eq!(disks.len(), 1, "{info}");
    assert_eq!(disks[0]["size"], 8 << 20, "{info}");
    assert_eq!(disks[0]["sr"], "Local storage", "{info}");
    let nics = vm["networks"].as_array().expect("networks");
    assert_eq!(nics.len(), 1, "{info}");
    assert_eq!(nics[0]["name"], net, "{info}");
    assert_eq!(nics[0]["mac"].as_str().map(str::len), Some(17), "{info}");
    let list: serde_json::Value =
        serde_json::from_str(&windsor(&dir, &["vm", "list", "--json"])).unwrap();
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name_label"] == "ansible1")
        .unwrap();
    assert_eq!(vm["uuid"], mine["uuid"], "{info}");

    let on = module(
        "xenserver_guest_powerstate",
        &format!("{login} state=powered-on state_change_timeout=60"),
    );
    assert_eq!(on["changed"], true, "{on}");
    assert_eq!(on["instance"]["state"], "poweredon", "{on}");
    assert_eq!(power_state(&dir, "ansible1").as_deref(), Some("Running"));
    // Its disk is served by blkback, its VIF by netback.
    let d = domid(&dir, "ansible1").expect("a domain");
    let socket = dir.join("xenstored.sock");
    let read = |p: &str| {
        let out = Command::new("xenstore-read")
            .env("XENSTORED_PATH", &socket)
            .arg(p)
            .output()
            .expect("xenstore-read (cargo xtask test installs xenstore-utils)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let end = Instant::now() + Duration::from_secs(20);
    while read(&format!("/local/domain/{d}/data/disk")) != "connected 16384" {
        assert!(Instant::now() < end, "the guest's disk did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    let be = read(&format!("/local/domain/{d}/device/vif/0/backend"));
    assert!(be.contains("/backend/vif/"), "{be}");
    assert_eq!(read(&format!("{be}/state")), "2", "netback offers the VIF");

    let off = module(
        "xenserver_guest_powerstate",
        &format!("{login} state=shutdown-guest state_change_timeout=60"),
    );
    assert_eq!(off["changed"], true, "{off}");
    assert_eq!(off["instance"]["state"], "poweredoff", "{off}");
    assert_eq!(power_state(&dir, "ansible1").as_deref(), Some("Halted"));

    let gone = module("xenserver_guest", &format!("{login} state=absent"));
    assert_eq!(gone["changed"], true, "{gone}");
    assert_eq!(power_state(&dir, "ansible1"), None);
    assert_eq!(
        sr_files(),
        Vec::<std::path::PathBuf>::new(),
        "its disk is removed with it"
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}
