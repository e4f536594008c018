//! The `xenstore.*` extension class: every call through the dispatcher over
//! the real toolstack in host mode, and over HTTP with XML-RPC and JSON-RPC through the Rust client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::client::{Client, ClientError, Endpoint, Protocol};
use windsor_api::server::{Api, Config};
use windsor_api::toolstack::Toolstack;
use windsor_api::Value;
use windsor_toolstack::host::Host;
use windsor_toolstack::localstore::LocalStore;
use windsor_toolstack::xs_calls::WatchLimits;
use windsor_xenstore::client::{TxId, XenStore};
use xen::DomId;

fn login(api: &Api) -> Value {
    api.call(
        "session.login_with_password",
        &[
            Value::str("root"),
            Value::str("pw"),
            Value::str("2.21"),
            Value::str("tests"),
        ],
    )
    .unwrap()
}

fn api(toolstack: Arc<dyn Toolstack>) -> (Api, Value) {
    let api = Api::new(
        toolstack,
        Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap(),
        Config::default(),
    );
    let s = login(&api);
    (api, s)
}

/// `method(session, args…)`, errors as their `ErrorDescription`.
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

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// `xenstore.watch`: (events, cursor).
fn watch(a: &Api, s: &Value, path: &str, timeout: f64, cursor: &str) -> (Vec<String>, String) {
    let v = ok(
        a,
        s,
        "xenstore.watch",
        &[Value::str(path), Value::Double(timeout), Value::str(cursor)],
    );
    (
        strs(v.get("events").unwrap()),
        v.get("cursor").unwrap().as_str().unwrap().to_owned(),
    )
}

/// The host-mode toolstack with API watches on a second dom0 connection.
fn host(limits: WatchLimits) -> Host {
    let h = Host::start(windsor_toolstack::ToolstackConfig {
        seed: 6,
        ..windsor_toolstack::ToolstackConfig::default()
    })
    .unwrap();
    h.toolstack
        .attach_xs_watch(h.store.connect(DomId::DOM0), limits)
        .unwrap();
    h
}

/// The toolstack under test: a name for messages, the toolstack, another
/// dom0 connection to its store, and the host that owns it (kept alive).
type Case = (&'static str, Arc<dyn Toolstack>, LocalStore, Host);

/// The toolstack under test, with the store to play another client on.
fn backends(limits: WatchLimits) -> Vec<Case> {
    let h = host(limits);
    let ts = Arc::new(h.toolstack.clone());
    let ts_store = h.store.connect(DomId::DOM0);
    vec![("toolstack", ts, ts_store, h)]
}

#[test]
fn read_write_directory_rm() {
    for (name, b, other, _h) in backends(WatchLimits::default()) {
        let (a, s) = api(b);
        let w = ok(
            &a,
            &s,
            "xenstore.write",
            &[Value::str("/test/a/b"), Value::str("héllo wörld")],
        );
        assert_eq!(w, Value::str(""), "{name}");
        assert_eq!(
            ok(&a, &s, "xenstore.read", &[Value::str("/test/a/b")]),
            Value::str("héllo wörld"),
            "{name}"
        );
        // What another connection sees: the same bytes.
        assert_eq!(
            other.read(TxId::NONE, "/test/a/b").unwrap(),
            "héllo wörld".as_bytes(),
            "{name}"
        );
        other.write(TxId::NONE, "/test/a/c", b"2").unwrap();
        let mut kids = strs(&ok(&a, &s, "xenstore.directory", &[Value::str("/test/a")]));
        kids.sort();
        assert_eq!(kids, ["b", "c"], "{name}");
        ok(&a, &s, "xenstore.rm", &[Value::str("/test/a")]);
        assert!(other.read(TxId::NONE, "/test/a/b").is_err(), "{name}");
        // The records of the toolstack are there too (it is the same store).
        if name == "toolstack" {
            assert!(
                strs(&ok(&a, &s, "xenstore.directory", &[Value::str("/")]))
                    .contains(&"pool".to_owned()),
                "{name}"
            );
        }
    }
}

#[test]
fn errors_are_xenapi_failures() {
    for (name, b, other, _h) in backends(WatchLimits::default()) {
        let (a, s) = api(b);
        for (m, args) in [
            ("xenstore.read", vec![Value::str("/no/such")]),
            ("xenstore.directory", vec![Value::str("/no/such")]),
        ] {
            assert_eq!(
                call(&a, &s, m, &args).unwrap_err(),
                ["XENSTORE_ERROR", "ENOENT", "/no/such"],
                "{name} {m}"
            );
        }
        assert_eq!(
            call(
                &a,
                &s,
                "xenstore.write",
                &[Value::str("relative//bad"), Value::str("x")]
            )
            .unwrap_err()[..2],
            ["XENSTORE_ERROR", "EINVAL"],
            "{name}"
        );
        // Bytes that are not UTF-8 are refused, not altered.
        other
            .write(TxId::NONE, "/bin", &[b'a', 0xff, 0xfe])
            .unwrap();
        assert_eq!(
            call(&a, &s, "xenstore.read", &[Value::str("/bin")]).unwrap_err(),
            ["XENSTORE_VALUE_NOT_UTF8", "/bin"],
            "{name}"
        );
        assert_eq!(other.read(TxId::NONE, "/bin").unwrap(), [b'a', 0xff, 0xfe]);
        // Sessions are checked as for every call.
        let bad = Value::str("OpaqueRef:bogus");
        for (m, args) in [
            ("xenstore.read", vec![Value::str("/bin")]),
            ("xenstore.write", vec![Value::str("/x"), Value::str("v")]),
            ("xenstore.directory", vec![Value::str("/")]),
            ("xenstore.rm", vec![Value::str("/bin")]),
            (
                "xenstore.watch",
                vec![Value::str("/"), Value::Double(0.0), Value::str("")],
            ),
            ("xenstore.unwatch", vec![Value::str("1:0")]),
        ] {
            assert_eq!(
                call(&a, &bad, m, &args).unwrap_err(),
                ["SESSION_INVALID", "OpaqueRef:bogus"],
                "{name} {m}"
            );
        }
        assert!(
            other.read(TxId::NONE, "/bin").is_ok(),
            "a refused rm did nothing"
        );
        // Types and counts.
        assert_eq!(
            call(&a, &s, "xenstore.read", &[Value::Int(3)]).unwrap_err(),
            ["FIELD_TYPE_ERROR", "path"]
        );
        assert_eq!(
            call(&a, &s, "xenstore.read", &[]).unwrap_err()[0],
            "MESSAGE_PARAMETER_COUNT_MISMATCH"
        );
        assert_eq!(
            call(&a, &s, "Async.xenstore.read", &[Value::str("/")]).unwrap_err()[0],
            "MESSAGE_METHOD_UNKNOWN"
        );
        let methods = a.call("system.listMethods", &[]).unwrap();
        assert!(strs(&methods).contains(&"xenstore.watch".to_owned()));
    }
}

#[test]
fn watch_sees_other_connections_and_loses_nothing() {
    for (name, b, other, _h) in backends(WatchLimits::default()) {
        let (a, s) = api(b);
        other.write(TxId::NONE, "/w", b"").unwrap();
        let (first, mut cursor) = watch(&a, &s, "/w", 5.0, "");
        assert_eq!(first, ["/w"], "{name}: a new watch fires once");
        // A writer on another connection, while the client polls.
        const N: usize = 200;
        let writer = {
            let other = other.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    other.write(TxId::NONE, &format!("/w/{i}"), b"x").unwrap();
                    if i % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        let mut seen = Vec::new();
        let mut polls = 0;
        while seen.len() < N && polls < 1000 {
            let (ev, next) = watch(&a, &s, "/w", 5.0, &cursor);
            if polls % 3 == 0 && !ev.is_empty() {
                // A reply lost on the way: the old cursor gives it again.
                let (again, next2) = watch(&a, &s, "/w", 5.0, &cursor);
                assert_eq!(again[..ev.len()], ev[..], "{name}");
                assert!(again.len() >= ev.len(), "{name}: replay lost events");
                let _ = next2;
            }
            seen.extend(ev);
            cursor = next;
            polls += 1;
        }
        writer.join().unwrap();
        let want: Vec<String> = (0..N).map(|i| format!("/w/{i}")).collect();
        assert_eq!(seen, want, "{name}: every write, once, in order");
        // Nothing more: the wait times out empty with the same cursor.
        let (ev, c2) = watch(&a, &s, "/w", 0.1, &cursor);
        assert!(ev.is_empty(), "{name}");
        assert_eq!(c2, cursor);
        // Another session cannot use the cursor; the owner can close it.
        let s2 = login(&a);
        assert_eq!(
            call(&a, &s2, "xenstore.unwatch", &[Value::str(&cursor)]).unwrap_err(),
            ["XENSTORE_WATCH_LOST", cursor.as_str(), "unknown"],
            "{name}"
        );
        ok(&a, &s, "xenstore.unwatch", &[Value::str(&cursor)]);
        assert_eq!(
            call(
                &a,
                &s,
                "xenstore.watch",
                &[Value::str("/w"), Value::Double(0.0), Value::str(&cursor)]
            )
            .unwrap_err(),
            ["XENSTORE_WATCH_LOST", cursor.as_str(), "unknown"],
            "{name}"
        );
    }
}

#[test]
fn watch_bounds() {
    let limits = WatchLimits {
        max_queued: 8,
        idle: Duration::from_millis(400),
        per_owner: 2,
        total: 3,
    };
    for (name, b, other, _h) in backends(limits) {
        let (a, s) = api(b);
        let (_, c1) = watch(&a, &s, "/b1", 0.0, "");
        watch(&a, &s, "/b2", 0.0, "");
        assert_eq!(
            call(
                &a,
                &s,
                "xenstore.watch",
                &[Value::str("/b3"), Value::Double(0.0), Value::str("")]
            )
            .unwrap_err(),
            ["XENSTORE_TOO_MANY_WATCHES", "2"],
            "{name}: per session"
        );
        let s2 = login(&a);
        watch(&a, &s2, "/b3", 0.0, "");
        let s3 = login(&a);
        assert_eq!(
            call(
                &a,
                &s3,
                "xenstore.watch",
                &[Value::str("/b4"), Value::Double(0.0), Value::str("")]
            )
            .unwrap_err(),
            ["XENSTORE_TOO_MANY_WATCHES", "3"],
            "{name}: in all"
        );
        // A client that does not poll: its queue overflows, the writer is
        // never held up, and the client learns it lost events.
        let t = std::time::Instant::now();
        for i in 0..100 {
            other.write(TxId::NONE, &format!("/b1/{i}"), b"x").unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{name}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            call(
                &a,
                &s,
                "xenstore.watch",
                &[Value::str("/b1"), Value::Double(0.0), Value::str(&c1)]
            )
            .unwrap_err(),
            ["XENSTORE_WATCH_LOST", c1.as_str(), "overflow"],
            "{name}"
        );
        // Idle watchers expire, which frees their slots.
        std::thread::sleep(Duration::from_millis(1500));
        watch(&a, &s3, "/b4", 0.0, "");
        watch(&a, &s, "/b5", 0.0, "");
        watch(&a, &s, "/b6", 0.0, "");
    }
}

#[test]
fn rust_client_over_both_wires() {
    let srv = common::start();
    for (ep, proto) in [
        (srv.url.clone(), Protocol::XmlRpc),
        (format!("unix:{}", srv.socket.display()), Protocol::JsonRpc),
    ] {
        let mut c = Client::connect(Endpoint::parse(&ep).unwrap(), proto).unwrap();
        c.login("root", common::PASSWORD).unwrap();
        c.xs_write("/c/k", "v<&>\"'").unwrap();
        assert_eq!(c.xs_read("/c/k").unwrap(), "v<&>\"'");
        assert_eq!(c.xs_directory("/c").unwrap(), ["k"]);
        let (ev, cur) = c.xs_watch("/c", 5.0, "").unwrap();
        assert_eq!(ev, ["/c"]);
        c.xs_write("/c/k", "w").unwrap();
        let (ev, cur) = c.xs_watch("/c", 5.0, &cur).unwrap();
        assert_eq!(ev, ["/c/k"]);
        c.xs_unwatch(&cur).unwrap();
        c.xs_rm("/c").unwrap();
        match c.xs_read("/c/k") {
            Err(ClientError::Api(e)) => {
                assert_eq!(e.code, "XENSTORE_ERROR");
                assert_eq!(e.params, ["ENOENT", "/c/k"]);
            }
            other => panic!("{other:?}"),
        }
        c.logout().unwrap();
    }
}

/// The toolstack under test for the session-end cases. Whether a session's
/// watchers are gone shows in the host-wide quota (`total`): a new session
/// gets slots only when they were freed.
struct EndCase {
    name: &'static str,
    toolstack: Arc<dyn Toolstack>,
    other: LocalStore,
    _host: Host,
}

fn end_cases(limits: WatchLimits) -> Vec<EndCase> {
    let h = host(limits);
    let ts = Arc::new(h.toolstack.clone());
    let ts_store = h.store.connect(DomId::DOM0);
    vec![EndCase {
        name: "toolstack",
        toolstack: ts,
        other: ts_store,
        _host: h,
    }]
}

fn api_with(toolstack: Arc<dyn Toolstack>, config: Config) -> Api {
    Api::new(
        toolstack,
        Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap(),
        config,
    )
}

/// `xenstore.watch` opening a watcher: its error, if any.
fn open_err(a: &Api, s: &Value, path: &str) -> Option<Vec<String>> {
    call(
        a,
        s,
        "xenstore.watch",
        &[Value::str(path), Value::Double(0.0), Value::str("")],
    )
    .err()
}

/// Watchers that would otherwise live a minute: only the session's end
/// can free them within the tests.
const END_LIMITS: WatchLimits = WatchLimits {
    max_queued: 64,
    idle: Duration::from_secs(60),
    per_owner: 2,
    total: 3,
};

#[test]
fn logout_closes_the_sessions_watchers() {
    for c in end_cases(END_LIMITS) {
        let name = c.name;
        let a = api_with(c.toolstack, Config::default());
        let s = login(&a);
        let o = login(&a);
        let (_, c1) = watch(&a, &s, "/l1", 5.0, "");
        watch(&a, &s, "/l2", 0.0, "");
        let (_, c3) = watch(&a, &o, "/l3", 5.0, "");
        let n = login(&a);
        assert_eq!(
            open_err(&a, &n, "/l4"),
            Some(vec!["XENSTORE_TOO_MANY_WATCHES".into(), "3".into()]),
            "{name}: the host is full"
        );
        std::thread::scope(|sc| {
            // A long poll of the session in progress is answered at once.
            let poll = sc.spawn(|| {
                let t = std::time::Instant::now();
                let r = call(
                    &a,
                    &s,
                    "xenstore.watch",
                    &[Value::str("/l1"), Value::Double(20.0), Value::str(&c1)],
                );
                (r, t.elapsed())
            });
            std::thread::sleep(Duration::from_millis(300));
            ok(&a, &s, "session.logout", &[]);
            let (r, took) = poll.join().unwrap();
            assert_eq!(
                r.unwrap_err(),
                ["XENSTORE_WATCH_LOST", c1.as_str(), "unknown"],
                "{name}"
            );
            assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        });
        // Gone at once: a new session gets the full per-session quota
        // from the host-wide one (3, of which `o` holds 1).
        watch(&a, &n, "/l4", 0.0, "");
        watch(&a, &n, "/l5", 0.0, "");
        assert_eq!(
            open_err(&a, &n, "/l6"),
            Some(vec!["XENSTORE_TOO_MANY_WATCHES".into(), "2".into()]),
            "{name}"
        );
        // The old cursor answers an error (its session is gone).
        assert_eq!(
            call(
                &a,
                &s,
                "xenstore.watch",
                &[Value::str("/l1"), Value::Double(0.0), Value::str(&c1)]
            )
            .unwrap_err()[0],
            "SESSION_INVALID",
            "{name}"
        );
        // Another session's watcher is untouched: it still sees changes.
        c.other.write(TxId::NONE, "/l3/x", b"1").unwrap();
        let (ev, _) = watch(&a, &o, "/l3", 5.0, &c3);
        assert!(ev.contains(&"/l3/x".to_owned()), "{name}: {ev:?}");
    }
}

#[test]
fn expired_and_evicted_sessions_lose_their_watchers() {
    for c in end_cases(END_LIMITS) {
        let name = c.name;
        let a = api_with(
            c.toolstack,
            Config {
                session_idle_timeout: Duration::from_secs(1),
                session_limit: 3,
                ..Config::default()
            },
        );
        let s = login(&a);
        let o = login(&a);
        watch(&a, &s, "/e1", 0.0, "");
        watch(&a, &s, "/e2", 0.0, "");
        let (_, co) = watch(&a, &o, "/e3", 5.0, "");
        // `s` idles past its timeout while `o` keeps calling: the sweep
        // that `o`'s calls run reaps `s` and closes its watchers.
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(2600) {
            ok(&a, &o, "xenstore.read", &[Value::str("/")]);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            call(&a, &s, "xenstore.read", &[Value::str("/")]).unwrap_err()[0],
            "SESSION_INVALID",
            "{name}"
        );
        let n = login(&a);
        watch(&a, &n, "/e4", 0.0, "");
        watch(&a, &n, "/e5", 0.0, "");
        // The host is full again; `o`'s watcher still works.
        c.other.write(TxId::NONE, "/e3/x", b"1").unwrap();
        let (ev, _) = watch(&a, &o, "/e3", 5.0, &co);
        assert!(ev.contains(&"/e3/x".to_owned()), "{name}: {ev:?}");
        assert_eq!(
            open_err(&a, &o, "/e6"),
            Some(vec!["XENSTORE_TOO_MANY_WATCHES".into(), "3".into()]),
            "{name}"
        );
        // At the session limit (3) a login evicts the least recently used
        // session (`n`): its watchers go with it.
        ok(&a, &o, "xenstore.read", &[Value::str("/")]);
        let _m = login(&a);
        let m2 = login(&a);
        // Their slots are free again (the host-wide quota is 3).
        watch(&a, &m2, "/e7", 0.0, "");
        watch(&a, &m2, "/e8", 0.0, "");
    }
}
