//! A Xen-mode host that stays up: boots the default host description
//! under QEMU as `cargo xtask xen-up` does (the code is included from
//! `xtask/src/xen_up.rs`), then drives it from outside through the
//! forwarded port with the Python XenAPI client (PyPI `XenAPI`, installed
//! by `cargo xtask setup`) and Windsor's Rust client: login, a VM created
//! from the boot bundle's fuzz-target image, started, shut down cleanly,
//! destroyed, the changes seen through `event.from`, the VM's console
//! read through the API (its `console` object and `GET /console` text,
//! with the guest's boot line), and `host.shutdown`
//! taking the host down cleanly (Xen halts the machine after dom0's
//! `WINDSOR-DONE failed=0`).

#[allow(dead_code)]
#[path = "../../xtask/src/xen_boot.rs"]
mod xen_boot;
#[allow(dead_code)]
#[path = "../../xtask/src/xen_up.rs"]
mod xen_up;

use std::process::Command;
use std::time::{Duration, Instant};

use windsor_api::client::{Client, Endpoint, Protocol};
use windsor_api::Value;
use xen_up::{XenHost, XenUpArgs};

/// The XenAPI session the Python client runs: every step prints one JSON
/// line; a failure raises (non-zero exit).
const PY_LIFECYCLE: &str = r#"
import json, os, sys, time, XenAPI
url, pw = os.environ["XAPI_URL"], os.environ["XAPI_PW"]
s = XenAPI.Session(url)
event_from = getattr(s.xenapi.event, "from")
def step(name, **kw):
    print(json.dumps(dict(step=name, **kw)), flush=True)
t = time.time(); s.xenapi.login_with_password("root", pw, "1.0", "windsor-xen-host-test")
step("login", secs=time.time() - t)
step("session", uuid=s.xenapi.session.get_uuid(s._session),
     subjects=s.xenapi.session.get_all_subject_identifiers())
names = [r["name_label"] for r in s.xenapi.VM.get_all_records().values()]
step("records", names=names)
token = event_from(["vm"], "", 0.0)["token"]
seen = []
def events(vm):
    # What event.from reports about vm since the last call (changes to
    # one object between two calls are coalesced, as in XAPI).
    global token
    batch = event_from(["vm"], token, 5.0)
    token = batch["token"]
    for e in batch["events"]:
        if e["ref"] == vm:
            seen.append([e["operation"], (e.get("snapshot") or {}).get("power_state", "")])
mib = str(32 << 20)
vm = s.xenapi.VM.create({"name_label": "api-vm", "PV_kernel": "fuzz-target",
    "memory_static_max": mib, "memory_static_min": mib, "memory_dynamic_max": mib,
    "memory_dynamic_min": mib, "VCPUs_max": "1", "VCPUs_at_startup": "1"})
events(vm)
step("created", ref=vm, state=s.xenapi.VM.get_power_state(vm))
t = time.time(); s.xenapi.VM.start(vm, False, False); dt = time.time() - t
events(vm)
step("started", secs=dt, state=s.xenapi.VM.get_power_state(vm), domid=s.xenapi.VM.get_domid(vm))
# The VM's console: its object, then its text by the object's location,
# followed (offset = X-Console-End) until the guest's boot line is there.
import urllib.request
cons = s.xenapi.VM.get_consoles(vm)
rec = s.xenapi.console.get_record(cons[0])
everyone = s.xenapi.console.get_all()
text, offset, deadline = "", 0, time.time() + 30
while "up in" not in text and time.time() < deadline:
    with urllib.request.urlopen("%s&session_id=%s&offset=%d" % (rec["location"], s._session, offset)) as r:
        text += r.read().decode()
        offset = int(r.headers["X-Console-End"])
    time.sleep(0.2)
step("console", consoles=cons, all=everyone, record=rec,
     records=len(s.xenapi.console.get_all_records()), text=text, end=offset)
t = time.time(); s.xenapi.VM.clean_shutdown(vm); dt = time.time() - t
events(vm)
step("clean_shutdown", secs=dt, state=s.xenapi.VM.get_power_state(vm))
with urllib.request.urlopen("%s&session_id=%s" % (rec["location"], s._session)) as r:
    step("console_after", consoles=s.xenapi.VM.get_consoles(vm), closed=r.headers["X-Console-Closed"],
         text=r.read().decode())
s.xenapi.VM.destroy(vm)
events(vm)
step("destroyed", remaining=len(s.xenapi.VM.get_all()))
step("events", seen=seen)
s.xenapi.session.logout()
"#;

fn python_steps(url: &str, pw: &str) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args(["-c", PY_LIFECYCLE])
        .env("XAPI_URL", url)
        .env("XAPI_PW", pw)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python XenAPI session failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn step<'a>(steps: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

#[test]
fn a_xen_mode_host_serves_the_xenapi_runs_a_vm_and_shuts_down_on_request() {
    let t0 = Instant::now();
    let mut host = XenHost::start(&XenUpArgs {
        port: 0,
        password: Some("xen-host-test".into()),
        boot_timeout: 150,
        quiet: true,
        ..XenUpArgs::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let url = host.url();
    eprintln!(
        "xen_host: API ready {:.2} s after QEMU started: {}",
        host.api_ready.as_secs_f64(),
        host.ready_line
    );

    // The Rust client first: a wrong password is refused, the right one
    // logs in, and the host record is there.
    let mut rust = Client::connect(Endpoint::parse(&url).unwrap(), Protocol::JsonRpc).unwrap();
    let refused = rust.login("root", "not the password");
    assert!(refused.is_err(), "a wrong password logged in");
    rust.login("root", &host.password).expect("login");
    let hosts = rust.hosts().expect("host records");
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(
        hosts[0].1.get("name_label").and_then(Value::as_str),
        Some("windsor-dev")
    );

    // xenstore.* (Windsor's extension) with dom0's rights.
    assert_eq!(
        rust.xs_read("/local/domain/0/name").expect("xenstore.read"),
        "Domain-0"
    );
    rust.xs_write("/test/xen-host", "ok")
        .expect("xenstore.write");
    assert!(rust
        .xs_directory("/test")
        .expect("xenstore.directory")
        .contains(&"xen-host".to_string()));
    rust.xs_rm("/test").expect("xenstore.rm");
    assert!(rust.xs_read("/test/xen-host").is_err(), "removed node read");

    // The Python XenAPI client: the VM lifecycle.
    let steps = python_steps(&url, &host.password);
    let sess = step(&steps, "session");
    assert_eq!(sess["uuid"].as_str().map(str::len), Some(36), "{sess}");
    assert_eq!(sess["subjects"], serde_json::json!([]));
    let names = step(&steps, "records")["names"].clone();
    assert!(
        names.as_array().unwrap().iter().any(|n| n == "fuzz0"),
        "the planned guest is a VM: {names}"
    );
    assert_eq!(step(&steps, "created")["state"], "Halted");
    let started = step(&steps, "started");
    assert_eq!(started["state"], "Running", "{started}");
    let domid: i64 = started["domid"].as_str().unwrap().parse().unwrap();
    assert!(domid > 0, "{started}");
    // The VM's console through the API: one console object of the VM,
    // listed by console.get_all, whose text has the guest's boot line.
    let console = step(&steps, "console");
    let cons = console["consoles"].as_array().expect("VM.get_consoles");
    assert_eq!(cons.len(), 1, "{console}");
    assert!(
        console["all"].as_array().unwrap().contains(&cons[0]),
        "{console}"
    );
    assert!(console["records"].as_u64() >= Some(1), "{console}");
    let rec = &console["record"];
    assert_eq!(rec["protocol"], "vt100", "{console}");
    assert_eq!(
        rec["other_config"]["domid"].as_str(),
        Some(domid.to_string().as_str()),
        "{console}"
    );
    let boot_line = format!("fuzz-target: d{domid} up in");
    let text = console["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&boot_line),
        "no {boot_line:?} in the console text: {console}"
    );
    assert!(
        console["end"].as_u64() >= Some(text.len() as u64),
        "{console}"
    );
    let down = step(&steps, "clean_shutdown");
    assert_eq!(down["state"], "Halted", "{down}");
    // After the shutdown the VM has no console, but its last one stays
    // readable by its location, marked closed.
    let after = step(&steps, "console_after");
    assert_eq!(after["consoles"], serde_json::json!([]), "{after}");
    assert_eq!(after["closed"], "1", "{after}");
    assert!(
        after["text"]
            .as_str()
            .unwrap_or_default()
            .contains(&boot_line),
        "{after}"
    );
    assert_eq!(step(&steps, "destroyed")["remaining"], 1);
    let seen: Vec<(String, String)> = step(&steps, "events")["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap_or_default().to_string(),
                e[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |op: &str, state: &str| seen.iter().any(|(o, s)| o == op && s == state);
    assert!(has("add", "Halted"), "no add event: {seen:?}");
    assert!(has("mod", "Running"), "no Running: {seen:?}");
    assert!(
        has("mod", "Halted"),
        "no Halted after the shutdown: {seen:?}"
    );
    assert!(seen.iter().any(|(o, _)| o == "del"), "no del: {seen:?}");
    // host.shutdown through the Rust client ends QEMU cleanly.
    let h = hosts[0].0.clone();
    rust.session_call("host.shutdown", &[Value::str(h)])
        .expect("host.shutdown");
    let took = host
        .wait_down(Some(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        host.lines
            .iter()
            .any(|l| l.starts_with("WINDSOR-DONE failed=0")),
        "dom0 did not report a clean end: see {}",
        host.log_path.display()
    );
    assert!(
        host.lines
            .iter()
            .any(|l| l.contains("Hardware Dom0 halted: halting machine")),
        "Xen did not halt the machine"
    );
    // The VM's domain really ran the fuzz-target image.
    assert!(
        host.lines
            .iter()
            .any(|l| l.starts_with(&format!("(d{domid})")) && l.contains("fuzz-target: d")),
        "no line from the guest d{domid}"
    );
    eprintln!(
        "xen_host: login {:.3} s, VM.start {:.3} s, clean_shutdown {:.3} s (client wall time), \
         host down {:.2} s after host.shutdown; whole test {:.1} s",
        step(&steps, "login")["secs"].as_f64().unwrap(),
        started["secs"].as_f64().unwrap(),
        down["secs"].as_f64().unwrap(),
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
