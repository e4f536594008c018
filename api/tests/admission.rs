//! Admission control against hostile and busy clients (issue 16, items
//! 3, 4, 8 and 9): long polls do not hold the slots of ordinary calls; a
//! client's connections are bounded and the local socket keeps capacity of
//! its own, its owner logging in without a password; logins take as long
//! for an unknown user as for `root`; oversized input is not echoed; an
//! unauthenticated body is refused before it is parsed; the data directory
//! and the credentials are private.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::client::{Client, Endpoint, Protocol};
use windsor_api::server::{Api, Config};
use windsor_api::Value;

fn login(c: &mut common::RawConn) -> String {
    let body = c
        .call(
            "session.login_with_password",
            &[Value::str("root"), Value::str(common::PASSWORD)],
        )
        .unwrap();
    let v = windsor_api::xmlrpc::parse_response(body.as_bytes())
        .unwrap()
        .unwrap();
    v.as_str().unwrap().to_owned()
}

/// 256 `event.from(…, 15.0)` and 32 `xenstore.watch(…, 15.0, …)` long polls
/// wait while a new client logs in and lists VMs at once.
#[test]
fn long_polls_leave_room_for_calls() {
    let srv = common::start_with(Config {
        max_connections_per_client: 2048,
        ..Config::default()
    });
    let mut c = common::RawConn::connect(&srv.addr).unwrap();
    let s = login(&mut c);
    let body = c
        .call(
            "event.from",
            &[
                Value::str(&s),
                Value::strings(["vm"]),
                Value::str(""),
                Value::Double(0.0),
            ],
        )
        .unwrap();
    let batch = windsor_api::xmlrpc::parse_response(body.as_bytes())
        .unwrap()
        .unwrap();
    let token = batch.get("token").unwrap().as_str().unwrap().to_owned();
    let body = c
        .call(
            "xenstore.watch",
            &[
                Value::str(&s),
                Value::str("/poll"),
                Value::Double(0.0),
                Value::str(""),
            ],
        )
        .unwrap();
    let w = windsor_api::xmlrpc::parse_response(body.as_bytes())
        .unwrap()
        .unwrap();
    let cursor = w.get("cursor").unwrap().as_str().unwrap().to_owned();
    let mut polls = Vec::new();
    for i in 0..288 {
        let mut p = common::RawConn::connect(&srv.addr).unwrap();
        let call = if i < 256 {
            windsor_api::xmlrpc::emit_call(
                "event.from",
                &[
                    Value::str(&s),
                    Value::strings(["vm"]),
                    Value::str(&token),
                    Value::Double(15.0),
                ],
            )
        } else {
            windsor_api::xmlrpc::emit_call(
                "xenstore.watch",
                &[
                    Value::str(&s),
                    Value::str("/poll"),
                    Value::Double(15.0),
                    Value::str(&cursor),
                ],
            )
        };
        polls.push(std::thread::spawn(move || p.post(call.as_bytes())));
    }
    // Let every poll reach the server and wait there.
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let mut cl = Client::connect(Endpoint::parse(&srv.url).unwrap(), Protocol::JsonRpc).unwrap();
    cl.login("root", common::PASSWORD).unwrap();
    let vms = cl.vm_list().unwrap();
    let took = t.elapsed();
    assert!(!vms.is_empty());
    assert!(
        took < Duration::from_secs(5),
        "a call took {took:?} behind long polls"
    );
    // Wake them all: a VM event and a xenstore change.
    cl.vm_create(&windsor_api::client::VmSpec::fuzz_target("wake"))
        .unwrap();
    cl.xs_write("/poll/x", "1").unwrap();
    for p in polls {
        let body = p.join().unwrap().unwrap();
        assert!(body.contains("Success"), "{body}");
    }
}

/// 1,100 TCP connections trickling header bytes: one address gets its
/// budget, the local socket's owner logs in without a password and lists
/// VMs, and another address still gets through.
#[test]
fn a_header_trickle_does_not_lock_out_the_local_cli() {
    let srv = common::start();
    let mut trickle: Vec<TcpStream> = Vec::new();
    for _ in 0..1100 {
        match TcpStream::connect(&srv.addr) {
            Ok(mut s) => {
                let _ = s.write_all(b"POST / HTTP/1.1\r\n");
                trickle.push(s);
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dripper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut trickle {
                    let _ = s.write_all(b"X");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let ep = Endpoint::parse(&format!("unix:{}", srv.socket.display())).unwrap();
    let mut local = Client::connect(ep, Protocol::JsonRpc).unwrap();
    // Peer credentials: this process is the server's user.
    local.login("root", "").unwrap();
    assert!(!local.vm_list().unwrap().is_empty());
    let local_took = t.elapsed();
    let t = Instant::now();
    let mut other = common::RawConn::connect_from(&srv.addr, Ipv4Addr::new(127, 0, 0, 3)).unwrap();
    login(&mut other);
    let other_took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    dripper.join().unwrap();
    assert!(
        local_took < Duration::from_secs(5),
        "local CLI took {local_took:?}"
    );
    assert!(
        other_took < Duration::from_secs(5),
        "another address took {other_took:?}"
    );
    // Over TCP a password is still needed.
    let body = other
        .call(
            "session.login_with_password",
            &[Value::str("root"), Value::str("")],
        )
        .unwrap();
    assert!(body.contains("SESSION_AUTHENTICATION_FAILED"), "{body}");
}

/// An unknown user fails as slowly as `root` with a wrong password.
#[test]
fn unknown_users_take_as_long_as_root() {
    let host = common::host();
    let api = Api::new(
        Arc::new(host.toolstack.clone()),
        Credentials::single("root", "right", HashStrength::Default).unwrap(),
        Config::default(),
    );
    let once = |user: &str| {
        let t = Instant::now();
        let e = api
            .call(
                "session.login_with_password",
                &[Value::str(user), Value::str("wrong")],
            )
            .unwrap_err();
        assert_eq!(e.code, "SESSION_AUTHENTICATION_FAILED");
        t.elapsed()
    };
    // Interleaved, so that a burst of load on the machine hits both.
    let (mut root, mut nobody) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        root.push(once("root"));
        nobody.push(once("nobody"));
    }
    let (root, nobody) = (common::median(&mut root), common::median(&mut nobody));
    // Without the dummy check an unknown user fails ~100 times faster.
    let ratio = nobody.as_secs_f64() / root.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "root {root:?}, unknown user {nobody:?}"
    );
}

/// A 100 kB method name comes back clipped.
#[test]
fn oversized_method_names_are_not_echoed() {
    let srv = common::start();
    let mut c = common::RawConn::connect(&srv.addr).unwrap();
    let name = "x".repeat(100_000);
    let body = c.call(&name, &[]).unwrap();
    assert!(body.contains("MESSAGE_METHOD_UNKNOWN"), "{}", &body[..200]);
    assert!(body.len() < 1000, "{} bytes came back", body.len());
    let mut cl = Client::connect(Endpoint::parse(&srv.url).unwrap(), Protocol::JsonRpc).unwrap();
    let e = cl.call(&name, &[]).unwrap_err();
    assert!(e.to_string().len() < 1000);
}

/// Eight unauthenticated clients posting 4 MB arrays (four in XML-RPC,
/// four in JSON-RPC): each is refused (`SESSION_INVALID`) and a trivial
/// call stays fast.
#[test]
fn unauthenticated_bodies_are_refused_before_parsing() {
    let srv = common::start();
    let item = "<value><int>1</int></value>";
    let array = item.repeat((4 << 20) / item.len() - 100);
    let body = format!(
        "<methodCall><methodName>VM.get_all_records</methodName><params>\
         <param><value>OpaqueRef:bogus</value></param>\
         <param><value><array><data>{array}</data></array></value></param>\
         </params></methodCall>"
    );
    assert!(body.len() < 4 << 20);
    let ints = "1,".repeat((4 << 20) / 2 - 100);
    let json = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"VM.get_all_records\",\
         \"params\":[\"OpaqueRef:bogus\",[{ints}1]]}}"
    );
    assert!(json.len() < 4 << 20);
    let json = Arc::new(json);
    let mut c = common::RawConn::connect_from(&srv.addr, Ipv4Addr::new(127, 0, 0, 4)).unwrap();
    let s = login(&mut c);
    let trivial = |c: &mut common::RawConn| {
        let t = Instant::now();
        let r = c.call("VM.get_all", &[Value::str(&s)]).unwrap();
        assert!(r.contains("Success"), "{r}");
        t.elapsed()
    };
    // Before the posters: what a trivial call costs on this machine now.
    let mut quiet: Vec<Duration> = (0..5).map(|_| trivial(&mut c)).collect();
    let quiet = common::median(&mut quiet);
    let body = Arc::new(body);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let posters: Vec<_> = (0..8)
        .map(|i| {
            let (addr, body, json, stop) =
                (srv.addr.clone(), body.clone(), json.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = common::RawConn::connect(&addr).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = if i % 2 == 0 {
                        c.post(body.as_bytes()).unwrap()
                    } else {
                        c.post_to("/jsonrpc", "application/json", json.as_bytes())
                            .unwrap()
                    };
                    assert!(r.contains("SESSION_INVALID"), "{}", &r[..r.len().min(300)]);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut lat: Vec<Duration> = (0..10)
        .map(|_| {
            let d = trivial(&mut c);
            std::thread::sleep(Duration::from_millis(100));
            d
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let posted: usize = posters.into_iter().map(|p| p.join().unwrap()).sum();
    assert!(posted >= 8, "the big bodies were posted: {posted}");
    let m = common::median(&mut lat);
    // Generous for a loaded machine; parsing the bodies first costs seconds.
    let bound = (quiet * 3).max(Duration::from_millis(300));
    assert!(m < bound, "trivial calls took {lat:?} (quiet: {quiet:?})");
}

/// Loose permissions are tightened at start, and said so; new credentials
/// are private from the start.
#[test]
fn data_directory_and_credentials_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    windsor_api::auth::Credentials::load_or_init(&fresh, Some("pw"), HashStrength::TestOnlyWeak)
        .unwrap();
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("api-credentials")), 0o600);
    assert!(windsor_api::auth::secure_data_dir(&fresh)
        .unwrap()
        .is_empty());

    let loose = tmp.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cred = loose.join("api-credentials");
    std::fs::write(&cred, "root:x\n").unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fixed = windsor_api::auth::secure_data_dir(&loose).unwrap();
    assert_eq!(fixed.len(), 2, "{fixed:?}");
    assert_eq!(mode(&loose), 0o700);
    assert_eq!(mode(&cred), 0o600);
}
