//! XenAPI calls beyond the VM lifecycle, through the dispatcher, over the
//! real toolstack in host mode:
//! `Async.*` and the task class, the SR calls and their errors, the default
//! SR, and the session getters.
// Argument lists are written inline, `&[a.clone()]` like `&[a.clone(), b]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::server::{Api, Config};
use windsor_api::toolstack::Toolstack;
use windsor_api::Value;
use windsor_toolstack::host::Host;
use windsor_toolstack::task::TaskLimits;

fn api(toolstack: Arc<dyn Toolstack>) -> (Api, Value) {
    let api = Api::new(
        toolstack,
        Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap(),
        Config::default(),
    );
    let s = api
        .call(
            "session.login_with_password",
            &[
                Value::str("root"),
                Value::str("pw"),
                Value::str("2.21"),
                Value::str("tests"),
            ],
        )
        .unwrap();
    (api, s)
}

fn toolstack(limits: TaskLimits) -> Host {
    Host::start(windsor_toolstack::ToolstackConfig {
        seed: 21,
        shutdown_timeout: Duration::from_secs(60),
        task_limits: limits,
        ..windsor_toolstack::ToolstackConfig::default()
    })
    .unwrap()
}

/// `method(session, args…)`.
fn call(a: &Api, s: &Value, method: &str, args: &[Value]) -> Result<Value, Vec<String>> {
    let mut p = vec![s.clone()];
    p.extend_from_slice(args);
    a.call(method, &p).map_err(|e| {
        let mut v = vec![e.code];
        v.extend(e.params);
        v
    })
}

fn ok(a: &Api, s: &Value, method: &str, args: &[Value]) -> Value {
    call(a, s, method, args).unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("{v:?}")).to_owned()
}

/// Polls a task until it is no longer pending; returns its status.
fn wait_task(a: &Api, s: &Value, task: &Value) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let st = text(&ok(a, s, "task.get_status", &[task.clone()]));
        if st != "pending" {
            return st;
        }
        assert!(Instant::now() < end, "task still pending");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn startable_vm(a: &Api, s: &Value, name: &str) -> Value {
    let t = ok(
        a,
        s,
        "VM.get_by_name_label",
        &[Value::str("Windsor fuzz-target")],
    );
    let t = t.as_array().unwrap()[0].clone();
    let vm = ok(a, s, "VM.clone", &[t, Value::str(name)]);
    ok(a, s, "VM.provision", &[vm.clone()]);
    vm
}

#[test]
fn async_and_tasks_over_the_toolstack() {
    let host = toolstack(TaskLimits::default());
    let (a, s) = api(Arc::new(host.toolstack.clone()));
    async_and_tasks(&a, &s);
}

fn async_and_tasks(a: &Api, s: &Value) {
    let events = ok(
        a,
        s,
        "event.from",
        &[Value::strings(["task"]), Value::str(""), Value::Double(0.0)],
    );
    let token = events.get("token").unwrap().clone();
    let vm = startable_vm(a, s, "async");

    // Success, void: result "".
    let t = ok(
        a,
        s,
        "Async.VM.start",
        &[vm.clone(), Value::Bool(false), Value::Bool(false)],
    );
    assert!(text(&t).starts_with("OpaqueRef:"), "{t:?}");
    assert_eq!(wait_task(a, s, &t), "success");
    assert_eq!(
        text(&ok(a, s, "VM.get_power_state", &[vm.clone()])),
        "Running"
    );
    assert_eq!(ok(a, s, "task.get_result", &[t.clone()]), Value::str(""));
    assert_eq!(
        ok(a, s, "task.get_progress", &[t.clone()]),
        Value::Double(1.0)
    );
    assert_eq!(
        ok(a, s, "task.get_name_label", &[t.clone()]),
        Value::str("Async.VM.start")
    );
    let rec = ok(a, s, "task.get_record", &[t.clone()]);
    assert_eq!(rec.get("status"), Some(&Value::str("success")));
    assert_eq!(rec.get("error_info"), Some(&Value::Array(vec![])));
    assert!(
        matches!(rec.get("created"), Some(Value::DateTime(_))),
        "{rec:?}"
    );
    assert!(matches!(
        ok(a, s, "task.get_finished", &[t.clone()]),
        Value::DateTime(_)
    ));
    let uuid = rec.get("uuid").unwrap().clone();
    assert_eq!(ok(a, s, "task.get_by_uuid", &[uuid]), t);
    assert!(ok(a, s, "task.get_all", &[])
        .as_array()
        .unwrap()
        .contains(&t));
    assert!(ok(a, s, "task.get_all_records", &[])
        .get(&text(&t))
        .is_some());
    // Cancelling a finished task does nothing.
    ok(a, s, "task.cancel", &[t.clone()]);

    // Success with a ref: the XML-RPC value, as XAPI stores it.
    let template = ok(
        a,
        s,
        "VM.get_by_name_label",
        &[Value::str("Windsor fuzz-target")],
    );
    let template = template.as_array().unwrap()[0].clone();
    let c = ok(
        a,
        s,
        "Async.VM.clone",
        &[template, Value::str("async-clone")],
    );
    assert_eq!(wait_task(a, s, &c), "success");
    let result = text(&ok(a, s, "task.get_result", &[c.clone()]));
    let inner = result
        .strip_prefix("<value>")
        .and_then(|r| r.strip_suffix("</value>"))
        .unwrap_or_else(|| panic!("{result}"));
    assert!(inner.starts_with("OpaqueRef:"), "{result}");
    assert_eq!(
        ok(a, s, "VM.get_name_label", &[Value::str(inner)]),
        Value::str("async-clone")
    );
    assert_eq!(
        ok(a, s, "task.get_type", &[c.clone()]),
        Value::str("<none/>")
    );

    // Failure: the ErrorDescription in error_info.
    let f = ok(a, s, "Async.VM.unpause", &[vm.clone()]);
    assert_eq!(wait_task(a, s, &f), "failure");
    assert_eq!(
        ok(a, s, "task.get_error_info", &[f.clone()]),
        Value::strings(["VM_BAD_POWER_STATE", &text(&vm), "paused", "running"])
    );
    // A wrong handle fails inside the task, as in XAPI.
    let bad = ok(
        a,
        s,
        "Async.VM.clean_shutdown",
        &[Value::str("OpaqueRef:nope")],
    );
    assert_eq!(wait_task(a, s, &bad), "failure");
    assert_eq!(
        ok(a, s, "task.get_error_info", &[bad.clone()]),
        Value::strings(["HANDLE_INVALID", "VM", "OpaqueRef:nope"])
    );

    // What is checked before a task exists.
    assert_eq!(
        call(a, s, "Async.VM.get_record", &[vm.clone()]).unwrap_err(),
        vec!["MESSAGE_METHOD_UNKNOWN", "Async.VM.get_record"]
    );
    assert_eq!(
        call(a, s, "Async.VM.fly", &[]).unwrap_err(),
        vec!["MESSAGE_METHOD_UNKNOWN", "Async.VM.fly"]
    );
    assert_eq!(
        call(a, s, "Async.VM.start", &[vm.clone()]).unwrap_err(),
        vec![
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "Async.VM.start",
            "4",
            "2"
        ]
    );
    assert_eq!(
        a.call(
            "Async.VM.clean_shutdown",
            &[Value::str("OpaqueRef:bogus"), vm.clone()]
        )
        .unwrap_err()
        .code,
        "SESSION_INVALID"
    );

    // The task handle: wrong, destroyed.
    assert_eq!(
        call(a, s, "task.get_record", &[Value::str("OpaqueRef:nope")]).unwrap_err(),
        vec!["HANDLE_INVALID", "task", "OpaqueRef:nope"]
    );
    ok(a, s, "task.destroy", &[t.clone()]);
    assert_eq!(
        call(a, s, "task.get_status", &[t.clone()]).unwrap_err(),
        vec!["HANDLE_INVALID".to_owned(), "task".to_owned(), text(&t)]
    );

    // The clean shutdown, asynchronously, then the events of its task.
    let sd = ok(a, s, "Async.VM.clean_shutdown", &[vm.clone()]);
    assert_eq!(wait_task(a, s, &sd), "success");
    assert_eq!(
        text(&ok(a, s, "VM.get_power_state", &[vm.clone()])),
        "Halted"
    );
    let batch = ok(
        a,
        s,
        "event.from",
        &[Value::strings(["task"]), token, Value::Double(1.0)],
    );
    let evs = batch.get("events").unwrap().as_array().unwrap();
    let ops = |r: &Value| -> Vec<(String, Option<String>)> {
        evs.iter()
            .filter(|e| e.get("ref") == Some(r))
            .map(|e| {
                (
                    text(e.get("operation").unwrap()),
                    e.get("snapshot").and_then(|s| s.get("status")).map(text),
                )
            })
            .collect()
    };
    assert!(evs
        .iter()
        .all(|e| e.get("class") == Some(&Value::str("task"))));
    // Newest change per object: created and finished since the token.
    assert_eq!(
        ops(&sd),
        vec![("add".to_owned(), Some("success".to_owned()))]
    );
    assert_eq!(ops(&t), vec![("del".to_owned(), None)]);

    // A client's own task stays pending: it cannot be cancelled.
    let own = ok(a, s, "task.create", &[Value::str("mine"), Value::str("d")]);
    assert_eq!(
        text(&ok(a, s, "task.get_status", &[own.clone()])),
        "pending"
    );
    assert_eq!(
        call(a, s, "task.cancel", &[own.clone()]).unwrap_err()[0],
        "OPERATION_NOT_ALLOWED"
    );
    assert!(call(a, s, "task.set_name_label", &[own, Value::str("x")]).is_err());
}

#[test]
fn tasks_are_bounded() {
    let host = toolstack(TaskLimits {
        max_pending: 2,
        max_finished: 1,
    });
    let (a, s) = api(Arc::new(host.toolstack.clone()));
    let vm = startable_vm(&a, &s, "bounded");
    let first = ok(
        &a,
        &s,
        "Async.VM.set_VCPUs_max",
        &[vm.clone(), Value::Int(2)],
    );
    assert_eq!(wait_task(&a, &s, &first), "success");
    let second = ok(
        &a,
        &s,
        "Async.VM.set_VCPUs_max",
        &[vm.clone(), Value::Int(1)],
    );
    assert_eq!(wait_task(&a, &s, &second), "success");
    // One finished task is kept: the first is gone.
    assert_eq!(
        call(&a, &s, "task.get_status", &[first.clone()]).unwrap_err()[0],
        "HANDLE_INVALID"
    );
    assert_eq!(
        ok(&a, &s, "task.get_all", &[]).as_array().unwrap(),
        &[second]
    );
    // Two pending tasks at most.
    ok(&a, &s, "task.create", &[Value::str("a"), Value::str("")]);
    ok(&a, &s, "task.create", &[Value::str("b"), Value::str("")]);
    assert_eq!(
        call(&a, &s, "Async.VM.provision", &[vm.clone()]).unwrap_err(),
        vec!["TOO_MANY_PENDING_TASKS"]
    );
}

fn storage(a: &Api, s: &Value) {
    let pool = ok(a, s, "pool.get_all", &[]).as_array().unwrap()[0].clone();
    let local = ok(a, s, "pool.get_default_SR", &[pool.clone()]);
    assert_eq!(
        ok(a, s, "pool.get_suspend_image_SR", &[pool.clone()]),
        local
    );
    assert_eq!(ok(a, s, "pool.get_crash_dump_SR", &[pool.clone()]), local);
    let rec = ok(a, s, "SR.get_record", &[local.clone()]);
    assert_eq!(rec.get("name_label"), Some(&Value::str("Local storage")));
    assert_eq!(rec.get("content_type"), Some(&Value::str("user")));
    assert_eq!(rec.get("type"), Some(&Value::str("ext")));
    let pbds = ok(a, s, "SR.get_PBDs", &[local.clone()]);
    let pbd = pbds.as_array().unwrap()[0].clone();
    assert_eq!(
        ok(a, s, "PBD.get_currently_attached", &[pbd.clone()]),
        Value::Bool(true)
    );
    let host = ok(a, s, "session.get_this_host", &[s.clone()]);
    assert_eq!(ok(a, s, "PBD.get_host", &[pbd.clone()]), host);
    assert!(ok(a, s, "host.get_PBDs", &[host.clone()])
        .as_array()
        .unwrap()
        .contains(&pbd));
    assert_eq!(
        ok(a, s, "SR.get_by_name_label", &[Value::str("Local storage")]),
        Value::Array(vec![local.clone()])
    );
    let nets = ok(a, s, "network.get_all", &[]);
    let net = nets.as_array().unwrap()[0].clone();
    assert_eq!(
        ok(a, s, "network.get_bridge", &[net.clone()]),
        Value::str("xenbr0")
    );
    let pifs = ok(a, s, "network.get_PIFs", &[net.clone()]);
    let pif = pifs.as_array().unwrap()[0].clone();
    assert_eq!(
        ok(a, s, "PIF.get_device", &[pif.clone()]),
        Value::str("eth0")
    );
    assert_eq!(ok(a, s, "PIF.get_host", &[pif.clone()]), host);
    assert_eq!(ok(a, s, "PIF.get_VLAN", &[pif.clone()]), Value::Int(-1));
    assert_eq!(ok(a, s, "host.get_PIFs", &[host.clone()]), pifs);
    assert_eq!(
        call(a, s, "network.destroy", &[net]).unwrap_err(),
        vec!["NETWORK_CONTAINS_PIF".to_owned(), text(&pif)]
    );

    // SR.create with XAPI's nine parameters.
    let sr = ok(
        a,
        s,
        "SR.create",
        &[
            host.clone(),
            Value::record([("path", Value::str("/srv/x"))]),
            Value::str("1073741824"),
            Value::str("extra"),
            Value::str("more room"),
            Value::str("ext"),
            Value::str("user"),
            Value::Bool(false),
            Value::empty_map(),
        ],
    );
    assert_eq!(
        ok(a, s, "SR.get_name_label", &[sr.clone()]),
        Value::str("extra")
    );
    assert_eq!(
        ok(a, s, "SR.get_physical_size", &[sr.clone()]),
        Value::Int(1 << 30)
    );
    let uuid = ok(a, s, "SR.get_uuid", &[sr.clone()]);
    assert_eq!(ok(a, s, "SR.get_by_uuid", &[uuid]), sr);
    assert!(ok(a, s, "SR.get_all", &[])
        .as_array()
        .unwrap()
        .contains(&sr));
    assert!(ok(a, s, "SR.get_all_records", &[])
        .get(&text(&sr))
        .is_some());
    assert_eq!(
        call(a, s, "SR.destroy", &[sr.clone()]).unwrap_err(),
        vec!["SR_HAS_PBD".to_owned(), text(&sr)]
    );
    let pbd = ok(a, s, "SR.get_PBDs", &[sr.clone()]).as_array().unwrap()[0].clone();
    ok(a, s, "PBD.unplug", &[pbd.clone()]);
    let vdi = ok(
        a,
        s,
        "VDI.create",
        &[Value::record([
            ("name_label", Value::str("d")),
            ("SR", sr.clone()),
            ("virtual_size", Value::str("1048576")),
        ])],
    );
    assert_eq!(
        ok(a, s, "SR.get_VDIs", &[sr.clone()]),
        Value::Array(vec![vdi.clone()])
    );
    assert_eq!(
        call(a, s, "SR.destroy", &[sr.clone()]).unwrap_err(),
        vec!["SR_NOT_EMPTY"]
    );
    ok(a, s, "VDI.destroy", &[vdi]);
    ok(a, s, "SR.destroy", &[sr.clone()]);
    assert_eq!(
        call(a, s, "SR.get_record", &[sr.clone()]).unwrap_err(),
        vec!["HANDLE_INVALID".to_owned(), "SR".to_owned(), text(&sr)]
    );
    assert_eq!(
        call(a, s, "PBD.get_record", &[pbd.clone()]).unwrap_err()[0],
        "HANDLE_INVALID"
    );
    // introduce + forget; the wrong parameter count is XAPI's.
    let args = [
        Value::str("1a2b3c4d-0000-4000-8000-000000000001"),
        Value::str("iso"),
        Value::str(""),
        Value::str("iso"),
        Value::str("iso"),
        Value::Bool(true),
        Value::empty_map(),
    ];
    let i = ok(a, s, "SR.introduce", &args);
    assert_eq!(
        call(a, s, "SR.introduce", &args).unwrap_err(),
        vec!["SR_UUID_EXISTS", "1a2b3c4d-0000-4000-8000-000000000001"]
    );
    assert_eq!(ok(a, s, "SR.get_PBDs", &[i.clone()]), Value::Array(vec![]));
    ok(a, s, "SR.forget", &[i.clone()]);
    assert_eq!(
        call(a, s, "SR.forget", &[i]).unwrap_err()[0],
        "HANDLE_INVALID"
    );
    assert_eq!(
        call(a, s, "SR.create", &[host]).unwrap_err(),
        vec!["MESSAGE_PARAMETER_COUNT_MISMATCH", "SR.create", "10", "2"]
    );
    // The local SR stays while plugged.
    assert_eq!(
        call(a, s, "SR.destroy", &[local]).unwrap_err()[0],
        "SR_HAS_PBD"
    );
}

fn session_getters(a: &Api, s: &Value) {
    let rec = ok(a, s, "session.get_record", &[s.clone()]);
    let uuid = ok(a, s, "session.get_uuid", &[s.clone()]);
    assert_eq!(format!("OpaqueRef:{}", text(&uuid)), text(s));
    assert_eq!(rec.get("uuid"), Some(&uuid));
    assert_eq!(
        rec.get("this_host"),
        Some(&ok(a, s, "session.get_this_host", &[s.clone()]))
    );
    assert_eq!(rec.get("originator"), Some(&Value::str("tests")));
    assert_eq!(rec.get("is_local_superuser"), Some(&Value::Bool(true)));
    assert!(matches!(rec.get("last_active"), Some(Value::DateTime(_))));
    assert_eq!(
        ok(a, s, "session.get_this_user", &[s.clone()]),
        Value::str("OpaqueRef:NULL")
    );
    assert_eq!(
        ok(a, s, "session.get_all_subject_identifiers", &[]),
        Value::Array(vec![])
    );
    assert_eq!(
        call(a, s, "session.get_record", &[Value::str("OpaqueRef:gone")]).unwrap_err(),
        vec!["HANDLE_INVALID", "session", "OpaqueRef:gone"]
    );
    let pool = ok(a, s, "pool.get_all", &[]).as_array().unwrap()[0].clone();
    let prec = ok(a, s, "pool.get_record", &[pool.clone()]);
    assert_eq!(
        prec.get("master"),
        Some(&ok(a, s, "pool.get_master", &[pool]))
    );
}

#[test]
fn storage_and_session_over_the_toolstack() {
    let host = toolstack(TaskLimits::default());
    let (a, s) = api(Arc::new(host.toolstack.clone()));
    storage(&a, &s);
    session_getters(&a, &s);
}

/// `VM.get_allowed_VBD_devices` / `get_allowed_VIF_devices`, which
/// Ansible's `xenserver_guest` reads: every number its devices do not use.
#[test]
fn allowed_devices_skip_the_used_ones() {
    let host = toolstack(TaskLimits::default());
    let (a, s) = api(Arc::new(host.toolstack.clone()));
    let vm = startable_vm(&a, &s, "devices");
    let all: Vec<String> = (0..16).map(|n| n.to_string()).collect();
    assert_eq!(
        ok(&a, &s, "VM.get_allowed_VBD_devices", &[vm.clone()]),
        Value::strings(all)
    );
    let net = ok(&a, &s, "network.get_all", &[]).as_array().unwrap()[0].clone();
    ok(
        &a,
        &s,
        "VIF.create",
        &[Value::record([
            ("device", Value::str("0")),
            ("network", net),
            ("VM", vm.clone()),
            ("MAC", Value::str("00:16:3e:00:00:02")),
            ("MTU", Value::str("1500")),
        ])],
    );
    assert_eq!(
        ok(&a, &s, "VM.get_allowed_VIF_devices", &[vm.clone()]),
        Value::strings(["1", "2", "3", "4", "5", "6"])
    );
    assert_eq!(
        call(
            &a,
            &s,
            "VM.get_allowed_VIF_devices",
            &[Value::str("OpaqueRef:nope")]
        )
        .unwrap_err(),
        vec!["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    );
    assert_eq!(
        a.call(
            "VM.get_allowed_VIF_devices",
            &[Value::str("OpaqueRef:bad"), vm]
        )
        .unwrap_err()
        .code,
        "SESSION_INVALID"
    );
}
