//! The daemon's own behaviour on its socket: replies echo ids, watch events
//! reach other connections, misbehaving clients are cut off while others go
//! on, and acknowledged writes survive `kill -9`.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

#[test]
fn replies_echo_req_id_and_tx_id() {
    let dir = TempDir::new("ids");
    let d = Daemon::start(&dir.0);
    let mut c = Conn::open(&d.socket);
    c.send_raw(&encode(XS_WRITE, 0xdead_beef, 0, b"/ids\0v"))
        .expect("send");
    let r = c.recv().expect("reply");
    assert_eq!((r.ty, r.req_id, r.tx_id), (XS_WRITE, 0xdead_beef, 0));
    let t = c.call(XS_TRANSACTION_START, 0, b"\0");
    assert_eq!(t.ty, XS_TRANSACTION_START, "{t:?}");
    let tx: u32 = std::str::from_utf8(&t.payload[..t.payload.len() - 1])
        .expect("utf8")
        .parse()
        .expect("tx id");
    c.send_raw(&encode(XS_READ, 77, tx, b"/ids\0"))
        .expect("send");
    let r = c.recv().expect("reply");
    assert_eq!(
        (r.ty, r.req_id, r.tx_id, r.payload.as_slice()),
        (XS_READ, 77, tx, &b"v"[..])
    );
    let e = c.call(XS_TRANSACTION_END, tx, b"T\0");
    assert_eq!(e.ty, XS_TRANSACTION_END, "{e:?}");
    // Pipelined requests are answered in order.
    let mut batch = Vec::new();
    for i in 0..50u32 {
        batch.extend(encode(
            XS_WRITE,
            1000 + i,
            0,
            format!("/p/{i}\0{i}").as_bytes(),
        ));
        batch.extend(encode(XS_READ, 2000 + i, 0, format!("/p/{i}\0").as_bytes()));
    }
    c.send_raw(&batch).expect("send");
    for i in 0..50u32 {
        let w = c.recv().expect("reply");
        assert_eq!((w.ty, w.req_id), (XS_WRITE, 1000 + i));
        let r = c.recv().expect("reply");
        assert_eq!((r.ty, r.req_id), (XS_READ, 2000 + i));
        assert_eq!(r.payload, i.to_string().as_bytes());
    }
}

#[test]
fn watch_events_reach_other_connections() {
    let dir = TempDir::new("events");
    let d = Daemon::start(&dir.0);
    let mut w = Conn::open(&d.socket);
    let mut events = Vec::new();
    let r = w.call_ev(XS_WATCH, 0, b"/ev\0tok\0", &mut events);
    assert_eq!(r.ty, XS_WATCH, "{r:?}");
    let first = if events.is_empty() {
        w.recv().expect("initial event")
    } else {
        events.remove(0)
    };
    assert_eq!(first.ty, XS_WATCH_EVENT);
    assert_eq!(first.payload, b"/ev\0tok\0");
    let mut c = Conn::open(&d.socket);
    assert_eq!(c.write("/ev/a", b"1").ty, XS_WRITE);
    let e = w.recv().expect("event");
    assert_eq!(
        (e.ty, e.payload.as_slice()),
        (XS_WATCH_EVENT, &b"/ev/a\0tok\0"[..])
    );
}

#[test]
fn oversized_message_disconnects_only_that_client() {
    let dir = TempDir::new("bad");
    let d = Daemon::start(&dir.0);
    let mut good = Conn::open(&d.socket);
    assert_eq!(good.write("/ok", b"1").ty, XS_WRITE);
    let mut bad = UnixStream::connect(&d.socket).expect("connect");
    bad.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // XSA-72: a length above XENSTORE_PAYLOAD_MAX.
    bad.write_all(&encode(XS_READ, 1, 0, &[b'a'; 5000])).ok();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut bad, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closes the misbehaving connection");
    assert_eq!(good.read("/ok").payload, b"1");
}

#[test]
fn client_that_never_reads_is_cut_off() {
    let dir = TempDir::new("noread");
    let d = Daemon::start(&dir.0);
    let mut good = Conn::open(&d.socket);
    assert_eq!(good.write("/big", &[b'x'; 4000]).ty, XS_WRITE);
    let mut greedy = UnixStream::connect(&d.socket).expect("connect");
    greedy
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = encode(XS_READ, 1, 0, b"/big\0");
    let batch: Vec<u8> = req.iter().copied().cycle().take(req.len() * 256).collect();
    // 8,000 reads of 4 KB: 32 MB of replies nobody reads.
    let mut cut = false;
    for _ in 0..32 {
        if greedy.write_all(&batch).is_err() {
            cut = true;
            break;
        }
        // The daemon must still answer others meanwhile.
        assert_eq!(good.read("/big").payload.len(), 4000);
    }
    // Either writes failed, or the socket is closed for reading.
    if !cut {
        greedy
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match std::io::Read::read(&mut greedy, &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        assert!(
            total < 32 << 20,
            "all {total} bytes were delivered: never cut off"
        );
    }
    assert_eq!(good.read("/big").payload.len(), 4000);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = TempDir::new("kill");
    let d = Daemon::start(&dir.0);
    let mut c = Conn::open(&d.socket);
    for i in 0..200 {
        assert_eq!(
            c.write(&format!("/k/{i}"), i.to_string().as_bytes()).ty,
            XS_WRITE
        );
    }
    let t = c.call(XS_TRANSACTION_START, 0, b"\0");
    let tx: u32 = std::str::from_utf8(&t.payload[..t.payload.len() - 1])
        .expect("utf8")
        .parse()
        .expect("tx id");
    c.call(XS_WRITE, tx, b"/k/tx\0committed");
    assert_eq!(
        c.call(XS_TRANSACTION_END, tx, b"T\0").ty,
        XS_TRANSACTION_END
    );
    assert_eq!(c.call(XS_RM, 0, b"/k/7\0").ty, XS_RM);
    assert_eq!(c.call(XS_SET_PERMS, 0, b"/k/8\0b0\0r0\0").ty, XS_SET_PERMS);
    d.kill9();
    let d = Daemon::start(&dir.0);
    let mut c = Conn::open(&d.socket);
    for i in (0..200).filter(|&i| i != 7) {
        assert_eq!(c.read(&format!("/k/{i}")).payload, i.to_string().as_bytes());
    }
    assert_eq!(c.read("/k/7").ty, XS_ERROR);
    assert_eq!(c.read("/k/tx").payload, b"committed");
    assert_eq!(c.call(XS_GET_PERMS, 0, b"/k/8\0").payload, b"b0\0r0\0");
    drop(d);
}

/// Everything a client can observe of a subtree: values, permissions and
/// `DIRECTORY` order, depth first.
fn observe(c: &mut Conn, path: &str, out: &mut Vec<String>) {
    let v = c.read(path);
    let p = c.call(XS_GET_PERMS, 0, &z(path));
    let d = c.call(XS_DIRECTORY, 0, &z(path));
    out.push(format!(
        "{path}={:?} {:?} {:?}",
        v.payload, p.payload, d.payload
    ));
    for name in d.payload.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let child = format!("{path}/{}", String::from_utf8_lossy(name));
        observe(c, &child, out);
    }
}

#[test]
fn state_survives_snapshots_and_restarts() {
    let dir = TempDir::new("snap");
    let d = Daemon::start_with(&dir.0, &["--snapshot-every", "10"]);
    let mut c = Conn::open(&d.socket);
    // Children created out of name order, to check DIRECTORY order survives.
    for i in (0..40).rev() {
        assert_eq!(
            c.write(&format!("/s/n{i}/leaf"), format!("v{i}").as_bytes())
                .ty,
            XS_WRITE
        );
    }
    for i in (0..40).step_by(3) {
        assert_eq!(c.call(XS_RM, 0, &z(&format!("/s/n{i}"))).ty, XS_RM);
    }
    assert_eq!(c.call(XS_SET_PERMS, 0, b"/s/n1\0b0\0r0\0").ty, XS_SET_PERMS);
    assert_eq!(c.call(XS_MKDIR, 0, b"/s/empty\0").ty, XS_MKDIR);
    let mut before = Vec::new();
    observe(&mut c, "/s", &mut before);
    d.kill9();
    let d = Daemon::start_with(&dir.0, &["--snapshot-every", "10"]);
    let mut c = Conn::open(&d.socket);
    let mut after = Vec::new();
    observe(&mut c, "/s", &mut after);
    assert_eq!(before, after);
    // Once more, after a restart that itself took a snapshot.
    d.kill9();
    let d = Daemon::start(&dir.0);
    let mut c = Conn::open(&d.socket);
    let mut again = Vec::new();
    observe(&mut c, "/s", &mut again);
    assert_eq!(before, again);
}
