//! Three `windsor-xenstored-pool` processes on loopback: `/pool` writes
//! from one host's xenstore clients are committed through the replicated
//! log and mirrored (with their watches) on every host; reads of `/pool`
//! on any host see every acknowledged write at once (read barrier);
//! `/local` stays local; transactions on `/pool` commit through the log
//! with `EAGAIN` on conflicts between hosts (concurrent increments of one
//! counter from three hosts lose none); writes go on after `kill -9` of
//! the leader's daemon.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use windsor_xenstore::wire::{Header, XsOp, HEADER_LEN};
use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::proto::{ClientReply, ClientRequest};
use windsor_xenstore_replication::tls::{self, Tls};

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal xenstore socket client: one request at a time, watch events
/// kept aside.
struct Xs {
    s: UnixStream,
    events: VecDeque<Vec<u8>>,
    req: u32,
}

impl Xs {
    fn connect(path: &Path) -> Xs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
                    return Xs {
                        s,
                        events: VecDeque::new(),
                        req: 0,
                    };
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connecting {}: {e}", path.display()),
            }
        }
    }

    fn read_msg(&mut self) -> std::io::Result<(Header, Vec<u8>)> {
        let mut h = [0u8; HEADER_LEN];
        self.s.read_exact(&mut h)?;
        let h = Header::parse(&h);
        let mut body = vec![0u8; h.len as usize];
        self.s.read_exact(&mut body)?;
        Ok((h, body))
    }

    /// The reply: `Ok(payload)` or `Err(errno name)`.
    fn call(&mut self, op: XsOp, tx: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.req += 1;
        let h = Header::new(op, self.req, tx, payload.len() as u32);
        let mut m = h.to_bytes().to_vec();
        m.extend_from_slice(payload);
        self.s.write_all(&m).unwrap();
        loop {
            let (h, body) = self.read_msg().expect("reply");
            if h.ty == XsOp::WatchEvent as u32 {
                self.events.push_back(body);
                continue;
            }
            assert_eq!(h.req_id, self.req);
            if h.ty == XsOp::Error as u32 {
                return Err(
                    String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).into_owned(),
                );
            }
            return Ok(body);
        }
    }

    fn write(&mut self, path: &str, value: &[u8]) -> Result<Vec<u8>, String> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value);
        self.call(XsOp::Write, 0, &p)
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>, String> {
        self.call(XsOp::Read, 0, format!("{path}\0").as_bytes())
    }

    /// The next watch event's path, within `within`.
    fn event(&mut self, within: Duration) -> Option<String> {
        if let Some(e) = self.events.pop_front() {
            return Some(first(&e));
        }
        self.s.set_read_timeout(Some(within)).unwrap();
        let r = self.read_msg();
        self.s
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        match r {
            Ok((h, body)) if h.ty == XsOp::WatchEvent as u32 => Some(first(&body)),
            Ok((h, _)) => panic!("unexpected message type {}", h.ty),
            Err(_) => None,
        }
    }
}

fn first(body: &[u8]) -> String {
    String::from_utf8_lossy(body.split(|&b| b == 0).next().unwrap()).into_owned()
}

struct Host {
    socket: PathBuf,
    child: Option<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Retries `f` until it gives `Ok`, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("not within {within:?}: {e}"),
        }
    }
}

/// Starts host `id`'s daemon (again: same data directory).
fn spawn_host(dir: &Path, id: u64, addr: &str, peers: &[String]) -> Host {
    let socket = dir.join(format!("xs{id}.sock"));
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join(format!("host{id}.log")))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_windsor-xenstored-pool"));
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(dir.join(format!("data{id}")))
        .args(["--pool-id", &id.to_string(), "--pool-listen", addr])
        .args(["--pool-peers", &peers.join(",")])
        .arg("--pool-tls-dir")
        .arg(dir.join(format!("tls{id}")));
    if id == 1 {
        cmd.arg("--pool-bootstrap");
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Host {
        socket,
        child: Some(child),
    }
}

#[test]
fn pool_writes_replicate_through_three_daemons() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    tls::create_ca(&ca).unwrap();
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let peers: Vec<String> = addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
    let mut hosts: BTreeMap<u64, Host> = BTreeMap::new();
    for id in 1..=3u64 {
        tls::issue_member(&ca, id, &dir.path().join(format!("tls{id}"))).unwrap();
        hosts.insert(id, spawn_host(dir.path(), id, &addrs[&id], &peers));
    }
    let mut xs: BTreeMap<u64, Xs> = hosts
        .iter()
        .map(|(id, h)| (*id, Xs::connect(&h.socket)))
        .collect();

    // The pool elects a leader; then a write on host 1 commits.
    eventually(Duration::from_secs(15), || {
        xs.get_mut(&1).unwrap().write("/pool/ready", b"1")
    });

    // A watch on host 3 (its first event is the registration's own).
    let c = xs.get_mut(&3).unwrap();
    c.call(XsOp::Watch, 0, b"/pool/x\0tok\0").unwrap();
    assert_eq!(c.event(Duration::from_secs(2)).as_deref(), Some("/pool/x"));

    // A write on host 1 is readable on 2 and 3 and fires 3's watch.
    assert_eq!(
        xs.get_mut(&1).unwrap().write("/pool/x/y", b"hello"),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(
        xs.get_mut(&1).unwrap().read("/pool/x/y"),
        Ok(b"hello".to_vec())
    );
    // Linearizable on the followers: no waiting for the mirror.
    for id in [2, 3] {
        let v = xs.get_mut(&id).unwrap().read("/pool/x/y");
        assert_eq!(v, Ok(b"hello".to_vec()), "host {id}");
    }
    let c = xs.get_mut(&3).unwrap();
    let mut seen = Vec::new();
    while let Some(p) = c.event(Duration::from_secs(3)) {
        seen.push(p.clone());
        if p == "/pool/x/y" {
            break;
        }
    }
    assert!(
        seen.iter().any(|p| p == "/pool/x/y"),
        "events on host 3: {seen:?}"
    );

    // A write from host 2 fires host 3's watch too.
    xs.get_mut(&2).unwrap().write("/pool/x/z", b"2").unwrap();
    let c = xs.get_mut(&3).unwrap();
    let mut seen = Vec::new();
    while let Some(p) = c.event(Duration::from_secs(3)) {
        seen.push(p.clone());
        if p == "/pool/x/z" {
            break;
        }
    }
    assert!(
        seen.iter().any(|p| p == "/pool/x/z"),
        "events on host 3: {seen:?}"
    );

    // Removing a subtree on host 1 fires a watch below it on host 2.
    xs.get_mut(&1)
        .unwrap()
        .write("/pool/gone/a/b", b"1")
        .unwrap();
    let b = xs.get_mut(&2).unwrap();
    eventually(Duration::from_secs(5), || b.read("/pool/gone/a/b"));
    b.call(XsOp::Watch, 0, b"/pool/gone/a/b\0deep\0").unwrap();
    assert_eq!(
        b.event(Duration::from_secs(2)).as_deref(),
        Some("/pool/gone/a/b")
    );
    assert_eq!(
        xs.get_mut(&1).unwrap().call(XsOp::Rm, 0, b"/pool/gone\0"),
        Ok(b"OK\0".to_vec())
    );
    let b = xs.get_mut(&2).unwrap();
    assert_eq!(
        b.event(Duration::from_secs(3)).as_deref(),
        Some("/pool/gone/a/b")
    );
    assert_eq!(b.read("/pool/gone/a"), Err("ENOENT".into()));

    // Concurrent writers on two hosts (each its own connection): every
    // write acknowledged and visible on a third host.
    let writers: Vec<_> = [1u64, 1, 2, 2]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let socket = hosts[&h].socket.clone();
            std::thread::spawn(move || {
                let mut c = Xs::connect(&socket);
                for j in 0..10 {
                    let v = format!("{i}-{j}");
                    assert_eq!(
                        c.write(&format!("/pool/conc/{i}/{j}"), v.as_bytes()),
                        Ok(b"OK\0".to_vec())
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let c = xs.get_mut(&3).unwrap();
    for i in 0..4 {
        for j in 0..10 {
            let v = c.read(&format!("/pool/conc/{i}/{j}"));
            assert_eq!(v, Ok(format!("{i}-{j}").into_bytes()));
        }
    }

    // Local paths stay local.
    xs.get_mut(&1)
        .unwrap()
        .write("/local/domain/0/only-here", b"a")
        .unwrap();
    assert_eq!(
        xs.get_mut(&1).unwrap().read("/local/domain/0/only-here"),
        Ok(b"a".to_vec())
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        xs.get_mut(&2).unwrap().read("/local/domain/0/only-here"),
        Err("ENOENT".into())
    );

    transactions(&hosts, &mut xs);
    let a = xs.get_mut(&1).unwrap();

    // The replicated permissions apply: an rm of the root is refused.
    assert_eq!(a.call(XsOp::Rm, 0, b"/pool\0"), Err("EACCES".into()));

    // kill -9 of the leader's daemon: the others go on.
    tls::issue_member(&ca, 1000, &dir.path().join("tls-client")).unwrap();
    let client_tls = Tls::load(&dir.path().join("tls-client")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let leader = rt.block_on(async {
        let mut cl = PoolClient::new(client_tls, addrs.values().cloned().collect());
        match cl.request(ClientRequest::Status).await.unwrap() {
            ClientReply::Status(s) => s.leader.expect("a leader"),
            r => panic!("unexpected {r:?}"),
        }
    });
    drop(xs.remove(&leader));
    drop(hosts.remove(&leader));
    let rest: Vec<u64> = hosts.keys().copied().collect();
    let (w, r) = (rest[0], rest[1]);
    let v = eventually(Duration::from_secs(10), || {
        xs.get_mut(&w).unwrap().write("/pool/after", b"failover")
    });
    assert_eq!(v, b"OK\0");
    let v = eventually(Duration::from_secs(5), || {
        xs.get_mut(&r).unwrap().read("/pool/after")
    });
    assert_eq!(v, b"failover");
    // What was written before is still there.
    assert_eq!(
        xs.get_mut(&r).unwrap().read("/pool/x/y"),
        Ok(b"hello".to_vec())
    );

    // The killed host comes back with its data directory: it catches up,
    // and its local /pool is the replicated one again.
    let _ = std::fs::remove_file(dir.path().join(format!("xs{leader}.sock")));
    hosts.insert(
        leader,
        spawn_host(dir.path(), leader, &addrs[&leader], &peers),
    );
    let mut back = Xs::connect(&hosts[&leader].socket);
    let v = eventually(Duration::from_secs(10), || back.read("/pool/after"));
    assert_eq!(v, b"failover");
    assert_eq!(back.read("/pool/x/y"), Ok(b"hello".to_vec()));
    assert_eq!(back.read("/pool/gone"), Err("ENOENT".into()));
    assert!(started.elapsed() < Duration::from_secs(60));
}

fn txn_start(c: &mut Xs) -> u32 {
    let tx = c.call(XsOp::TransactionStart, 0, b"\0").unwrap();
    first(&tx).parse().unwrap()
}

fn txn_write(c: &mut Xs, tx: u32, path: &str, value: &[u8]) -> Result<Vec<u8>, String> {
    let mut p = format!("{path}\0").into_bytes();
    p.extend_from_slice(value);
    c.call(XsOp::Write, tx, &p)
}

/// Transactions on `/pool` in pool mode.
fn transactions(hosts: &BTreeMap<u64, Host>, xs: &mut BTreeMap<u64, Xs>) {
    // A transaction writing /pool commits as one entry, visible at once
    // on another host; inside, it reads its own writes.
    let a = xs.get_mut(&1).unwrap();
    let tx = txn_start(a);
    txn_write(a, tx, "/pool/txn/a", b"1").unwrap();
    txn_write(a, tx, "/pool/txn/b", b"2").unwrap();
    assert_eq!(a.call(XsOp::Read, tx, b"/pool/txn/a\0"), Ok(b"1".to_vec()));
    assert_eq!(a.read("/pool/txn/a"), Err("ENOENT".into()));
    assert_eq!(
        a.call(XsOp::TransactionEnd, tx, b"T\0"),
        Ok(b"OK\0".to_vec())
    );
    let b = xs.get_mut(&2).unwrap();
    assert_eq!(b.read("/pool/txn/a"), Ok(b"1".to_vec()));
    assert_eq!(b.read("/pool/txn/b"), Ok(b"2".to_vec()));

    // A transaction whose read changed on another host fails with EAGAIN
    // and applies nothing.
    let a = xs.get_mut(&1).unwrap();
    let tx = txn_start(a);
    assert_eq!(a.call(XsOp::Read, tx, b"/pool/txn/a\0"), Ok(b"1".to_vec()));
    txn_write(a, tx, "/pool/txn/c", b"from-a").unwrap();
    xs.get_mut(&2)
        .unwrap()
        .write("/pool/txn/a", b"changed")
        .unwrap();
    let a = xs.get_mut(&1).unwrap();
    assert_eq!(
        a.call(XsOp::TransactionEnd, tx, b"T\0"),
        Err("EAGAIN".into())
    );
    assert_eq!(
        xs.get_mut(&3).unwrap().read("/pool/txn/c"),
        Err("ENOENT".into())
    );

    // Removal and permissions inside a transaction replicate too.
    let c = xs.get_mut(&3).unwrap();
    let tx = txn_start(c);
    c.call(XsOp::Rm, tx, b"/pool/txn/b\0").unwrap();
    c.call(XsOp::SetPerms, tx, b"/pool/txn/a\0n0\0r7\0")
        .unwrap();
    assert_eq!(
        c.call(XsOp::TransactionEnd, tx, b"T\0"),
        Ok(b"OK\0".to_vec())
    );
    let a = xs.get_mut(&1).unwrap();
    assert_eq!(a.read("/pool/txn/b"), Err("ENOENT".into()));
    assert_eq!(
        a.call(XsOp::GetPerms, 0, b"/pool/txn/a\0"),
        Ok(b"n0\0r7\0".to_vec())
    );

    // A read-only transaction on /pool commits; aborting one writing
    // /pool applies nothing.
    let tx = txn_start(a);
    assert_eq!(
        a.call(XsOp::Read, tx, b"/pool/txn/a\0"),
        Ok(b"changed".to_vec())
    );
    assert_eq!(
        a.call(XsOp::TransactionEnd, tx, b"T\0"),
        Ok(b"OK\0".to_vec())
    );
    let tx = txn_start(a);
    txn_write(a, tx, "/pool/txn/aborted", b"x").unwrap();
    a.call(XsOp::TransactionEnd, tx, b"F\0").unwrap();
    assert_eq!(a.read("/pool/txn/aborted"), Err("ENOENT".into()));

    // Writing both /pool and a local path in one transaction is refused
    // at commit (the two could not commit atomically): neither applies.
    let tx = txn_start(a);
    txn_write(a, tx, "/pool/txn/mixed", b"x").unwrap();
    txn_write(a, tx, "/local/domain/0/mixed", b"x").unwrap();
    assert_eq!(
        a.call(XsOp::TransactionEnd, tx, b"T\0"),
        Err("ENOSYS".into())
    );
    assert_eq!(a.read("/pool/txn/mixed"), Err("ENOENT".into()));
    assert_eq!(a.read("/local/domain/0/mixed"), Err("ENOENT".into()));

    // Increments of one counter in transactions from five connections on
    // three hosts, retried on EAGAIN: none is lost.
    xs.get_mut(&1)
        .unwrap()
        .write("/pool/counter", b"0")
        .unwrap();
    let per = 8u64;
    let workers: Vec<_> = [1u64, 1, 2, 2, 3]
        .into_iter()
        .map(|h| {
            let socket = hosts[&h].socket.clone();
            std::thread::spawn(move || {
                let mut c = Xs::connect(&socket);
                let mut again = 0u32;
                for _ in 0..per {
                    loop {
                        let tx = txn_start(&mut c);
                        let n: u64 =
                            String::from_utf8(c.call(XsOp::Read, tx, b"/pool/counter\0").unwrap())
                                .unwrap()
                                .parse()
                                .unwrap();
                        txn_write(&mut c, tx, "/pool/counter", (n + 1).to_string().as_bytes())
                            .unwrap();
                        match c.call(XsOp::TransactionEnd, tx, b"T\0") {
                            Ok(_) => break,
                            Err(e) if e == "EAGAIN" => again += 1,
                            Err(e) => panic!("commit: {e}"),
                        }
                        assert!(again < 500, "livelock");
                    }
                }
                again
            })
        })
        .collect();
    let again: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let total = (per * 5).to_string().into_bytes();
    for id in [1, 2, 3] {
        assert_eq!(
            xs.get_mut(&id).unwrap().read("/pool/counter"),
            Ok(total.clone()),
            "host {id} ({again} retries)"
        );
    }
}
