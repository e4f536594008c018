//! The server over real sockets: the Rust client on both wire formats and
//! both transports, and bad requests (malformed bodies, huge bodies, wrong
//! paths and verbs) answered with XenAPI errors, never a crash or a hang.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use windsor_api::client::{Client, ClientError, Endpoint, Protocol, VmSpec};
use windsor_api::server::Config;

/// Sends raw bytes, returns the whole response (the server closes after it
/// because of `Connection: close`).
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn post(addr: &str, path: &str, ct: &str, body: &[u8]) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

fn lifecycle(c: &mut Client) {
    c.login("root", common::PASSWORD).unwrap();
    let vm = c.vm_create(&VmSpec::fuzz_target("rust-client")).unwrap();
    let (_, mut token) = c.event_from(&["vm"], "", 0.0).unwrap();
    c.vm_start(&vm, false).unwrap();
    c.vm_pause(&vm).unwrap();
    c.vm_unpause(&vm).unwrap();
    c.vm_suspend(&vm).unwrap();
    c.vm_resume(&vm, false).unwrap();
    c.vm_clean_reboot(&vm).unwrap();
    c.vm_hard_reboot(&vm).unwrap();
    c.vm_clean_shutdown(&vm).unwrap();
    let (events, next) = c.event_from(&["vm"], &token, 1.0).unwrap();
    token = next;
    assert_eq!(events.len(), 1, "only the newest change per object");
    let snap = events[0].get("snapshot").unwrap();
    assert_eq!(snap.get("power_state").unwrap().as_str(), Some("Halted"));
    let list = c.vm_list().unwrap();
    let me = list.iter().find(|v| v.r == vm).unwrap();
    assert_eq!(me.power_state, "Halted");
    assert_eq!(me.memory, 16 << 20);
    assert_eq!(c.vm_find("rust-client").unwrap(), vm);
    assert_eq!(c.vm_find(&me.uuid).unwrap(), vm);
    match c.vm_pause(&vm) {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, "VM_BAD_POWER_STATE");
            assert_eq!(
                e.params,
                vec![vm.clone(), "running".into(), "halted".into()]
            );
        }
        other => panic!("{other:?}"),
    }
    let t = c.vm_find("Windsor fuzz-target").unwrap();
    let inst = c.vm_install(&t, "from-template").unwrap();
    c.vm_start(&inst, true).unwrap();
    c.vm_hard_shutdown(&inst).unwrap();
    c.vm_destroy(&inst).unwrap();
    c.vm_destroy(&vm).unwrap();
    let (events, _) = c.event_from(&["vm"], &token, 1.0).unwrap();
    assert!(events
        .iter()
        .any(|e| e.get("operation").and_then(|o| o.as_str()) == Some("del")));
    let hosts = c.hosts().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts[0].1.get("API_version_minor").unwrap().as_int(),
        Some(21)
    );
    c.logout().unwrap();
    assert!(matches!(c.vm_list(), Err(ClientError::NotLoggedIn)));
}

#[test]
fn rust_client_xmlrpc_over_tcp() {
    let srv = common::start();
    let mut c = Client::connect(Endpoint::parse(&srv.url).unwrap(), Protocol::XmlRpc).unwrap();
    lifecycle(&mut c);
}

#[test]
fn rust_client_jsonrpc_over_unix_socket() {
    let srv = common::start();
    let ep = Endpoint::parse(&format!("unix:{}", srv.socket.display())).unwrap();
    let mut c = Client::connect(ep, Protocol::JsonRpc).unwrap();
    lifecycle(&mut c);
}

#[test]
fn wrong_password_and_stale_session() {
    let srv = common::start();
    let mut c = Client::connect(Endpoint::parse(&srv.addr).unwrap(), Protocol::JsonRpc).unwrap();
    match c.login("root", "nope") {
        Err(ClientError::Api(e)) => assert_eq!(e.code, "SESSION_AUTHENTICATION_FAILED"),
        other => panic!("{other:?}"),
    }
    c.set_session(Some("OpaqueRef:stale".into()));
    match c.vm_list() {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, "SESSION_INVALID");
            assert_eq!(e.params, vec!["OpaqueRef:stale".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_limit_drops_the_least_recently_used() {
    let srv = common::start_with(Config {
        session_limit: 2,
        ..Config::default()
    });
    let ep = Endpoint::parse(&srv.addr).unwrap();
    let mut a = Client::connect(ep.clone(), Protocol::XmlRpc).unwrap();
    let mut b = Client::connect(ep.clone(), Protocol::XmlRpc).unwrap();
    let mut c = Client::connect(ep, Protocol::XmlRpc).unwrap();
    a.login("root", common::PASSWORD).unwrap();
    b.login("root", common::PASSWORD).unwrap();
    b.vm_list().unwrap();
    c.login("root", common::PASSWORD).unwrap();
    assert!(matches!(a.vm_list(), Err(ClientError::Api(e)) if e.code == "SESSION_INVALID"));
    b.vm_list().unwrap();
    c.vm_list().unwrap();
}

#[test]
fn malformed_xml_gets_a_xenapi_failure() {
    let srv = common::start();
    let r = post(
        &srv.addr,
        "/",
        "text/xml",
        b"<methodCall><methodName>VM.get_all",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("<value>Failure</value>"), "{r}");
    assert!(r.contains("XMLRPC_UNMARSHAL_FAILURE"), "{r}");
    let r = post(&srv.addr, "/", "text/xml", b"\x00\xff garbage");
    assert!(r.contains("XMLRPC_UNMARSHAL_FAILURE"), "{r}");
    let r = post(
        &srv.addr,
        "/",
        "text/xml",
        b"<?xml version=\"1.0\"?><methodCall><methodName>VM.nope</methodName><params/></methodCall>",
    );
    assert!(
        r.contains("<value>MESSAGE_METHOD_UNKNOWN</value><value>VM.nope</value>"),
        "{r}"
    );
    assert!(
        r.contains("Content-Type: text/xml") || r.contains("content-type: text/xml"),
        "{r}"
    );
}

#[test]
fn malformed_json_gets_a_jsonrpc_error() {
    let srv = common::start();
    let r = post(
        &srv.addr,
        "/jsonrpc",
        "application/json",
        b"{\"jsonrpc\":\"2.0\",",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("content-type: application/json\r\n"),
        "{r}"
    );
    assert!(r.contains("\"code\":-32700"), "{r}");
    assert!(r.contains("JSONRPC_UNMARSHAL_FAILURE"), "{r}");
    let r = post(
        &srv.addr,
        "/jsonrpc",
        "application/json",
        br#"{"jsonrpc":"2.0","method":"VM.get_all","params":[],"id":5}"#,
    );
    assert!(r.contains("MESSAGE_PARAMETER_COUNT_MISMATCH"), "{r}");
    assert!(r.contains("\"id\":5"), "{r}");
    // JSON posted at `/` is JSON-RPC too.
    let r = post(
        &srv.addr,
        "/",
        "application/json",
        br#"{"method":"VM.get_all","params":["OpaqueRef:x"],"id":1}"#,
    );
    assert!(
        r.contains(r#""error":["SESSION_INVALID","OpaqueRef:x"]"#),
        "{r}"
    );
}

#[test]
fn huge_bodies_are_refused_without_reading_them() {
    let srv = common::start_with(Config {
        max_body_bytes: 1024,
        ..Config::default()
    });
    // Declared too large.
    let r = raw(
        &srv.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n<methodCall>",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("REQUEST_TOO_LARGE"), "{r}");
    // Chunked, growing past the limit.
    let mut req = b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b' '; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(&srv.addr, &req);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("REQUEST_TOO_LARGE"), "{r}");
}

#[test]
fn wrong_paths_and_verbs() {
    let srv = common::start();
    let r = raw(
        &srv.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.contains("MESSAGE_METHOD_UNKNOWN"), "{r}");
    let r = post(&srv.addr, "/elsewhere", "text/xml", b"<x/>");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // Not HTTP at all: the connection is closed, the server lives on.
    let _ = raw(&srv.addr, b"\x16\x03\x01 not http\r\n\r\n");
    let mut c = Client::connect(Endpoint::parse(&srv.addr).unwrap(), Protocol::XmlRpc).unwrap();
    c.login("root", common::PASSWORD).unwrap();
}

#[test]
fn a_slow_body_times_out() {
    let srv = common::start_with(Config {
        body_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let r = raw(
        &srv.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 50\r\nConnection: close\r\n\r\n<meth",
    );
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
}

#[test]
fn rust_client_jsonrpc_over_tcp() {
    let srv = common::start();
    let mut c = Client::connect(Endpoint::parse(&srv.url).unwrap(), Protocol::JsonRpc).unwrap();
    lifecycle(&mut c);
}

#[test]
fn silent_connections_are_closed() {
    let srv = common::start_with(Config {
        header_timeout: Duration::from_millis(300),
        max_connections: 2,
        ..Config::default()
    });
    // Two connections that never speak hold both slots until the header
    // timeout closes them; then a real client gets through.
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    let t = std::time::Instant::now();
    let mut c = Client::connect(Endpoint::parse(&srv.addr).unwrap(), Protocol::XmlRpc).unwrap();
    c.login("root", common::PASSWORD).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
}
