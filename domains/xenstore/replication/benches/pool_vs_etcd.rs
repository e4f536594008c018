//! `/pool` replication against etcd (Debian's `etcd-server`), same
//! machine, same cluster size: 3 members on loopback, each its own
//! process, fsync on for both (etcd's default; our log commits with
//! `redb`'s immediate durability).
//!
//! * sequential puts: one client, one put at a time, for a fixed time;
//!   puts/s and p50/p99 latency;
//! * failover: `kill -9` of the leader, then time until a put succeeds
//!   through the survivors (median of a few trials).
//!
//! Prints one JSON line per figure: `{"name","value","unit","baseline",
//! "ratio"}` with `baseline` etcd's figure from this run and `ratio` > 1
//! meaning Windsor is better. Our members speak mutual TLS 1.3; etcd is
//! run without TLS and driven through its JSON gateway (`/v3/kv/put`) on
//! a kept-alive HTTP/1.1 connection, which costs it a little (the gateway
//! is an in-process gRPC hop).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use windsor_xenstore_replication::sm::{Command as PoolCommand, Op};

const PUT_SECS: u64 = 5;
const FAILOVERS: usize = 3;

fn line(name: &str, value: f64, unit: &str, baseline: Option<f64>, ratio: Option<f64>) {
    let f = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.3}"));
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{},\"ratio\":{}}}",
        f(baseline),
        f(ratio)
    );
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    puts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failover_ms: f64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn summarize(mut lat: Vec<Duration>, total: Duration) -> (f64, f64, f64) {
    lat.sort();
    (
        lat.len() as f64 / total.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// ---------------------------------------------------------------- ours

fn put(
    c: &common::Cluster,
    cl: &mut windsor_xenstore_replication::client::PoolClient,
    i: u64,
) -> bool {
    let cmd = PoolCommand::Op(Op::Write {
        path: format!("/pool/bench/k{}", i % 1000),
        value: format!("value-{i}").into_bytes(),
    });
    c.rt.block_on(cl.submit(cmd)).is_ok()
}

fn pool() -> Figures {
    let mut c = common::Cluster::new(3);
    c.wait_leader(Duration::from_secs(20));
    let mut cl = c.client();
    for i in 0..100 {
        assert!(put(&c, &mut cl, i), "warm-up put failed");
    }
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(PUT_SECS) {
        let t = Instant::now();
        assert!(put(&c, &mut cl, i), "put failed");
        lat.push(t.elapsed());
        i += 1;
    }
    let (rate, p50, p99) = summarize(lat, t0.elapsed());
    let mut fo = Vec::new();
    for _ in 0..FAILOVERS {
        let leader = c.wait_leader(Duration::from_secs(20));
        let applied = c.status(leader).map_or(0, |s| s.applied);
        for id in c.live() {
            c.wait_applied(id, applied, Duration::from_secs(20));
        }
        let mut cl = c.client();
        cl.reply_timeout = Duration::from_millis(200);
        let t = Instant::now();
        c.kill(leader);
        let mut n = 0;
        while !put(&c, &mut cl, n) {
            n += 1;
        }
        fo.push(t.elapsed().as_secs_f64() * 1e3);
        c.start(leader);
    }
    Figures {
        puts_per_s: rate,
        p50_ms: p50,
        p99_ms: p99,
        failover_ms: median(fo),
    }
}

// ------------------------------------------- ours, through the daemon

/// Three `windsor-xenstored-pool` daemons on loopback, driven through
/// their xenstore sockets as the toolstack drives them: `XS_WRITE` of
/// `/pool/...` on the leader's host and on a follower's (forwarded to the
/// leader, the reply once the follower's mirror has the entry), and the
/// failover as a xenstore client sees it (`kill -9` of the leader's
/// daemon, then the time until a write through a survivor succeeds).
struct Daemons {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
    status: windsor_xenstore_replication::client::PoolClient,
    rt: tokio::runtime::Runtime,
}

impl Daemons {
    fn start() -> Daemons {
        use windsor_xenstore_replication::tls;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        tls::create_ca(&ca).unwrap();
        let addrs: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", common::free_port("127.0.0.1")))
            .collect();
        for i in 1..=3u64 {
            tls::issue_member(&ca, i, &dir.path().join(format!("tls{i}"))).unwrap();
        }
        tls::issue_member(&ca, 1000, &dir.path().join("tls-client")).unwrap();
        let status = windsor_xenstore_replication::client::PoolClient::new(
            tls::Tls::load(&dir.path().join("tls-client")).unwrap(),
            addrs.clone(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut d = Daemons {
            dir,
            addrs,
            procs: (0..3).map(|_| None).collect(),
            status,
            rt,
        };
        for i in 1..=3 {
            d.spawn(i);
        }
        d
    }

    fn socket(&self, i: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("xs{i}.sock"))
    }

    fn spawn(&mut self, i: u64) {
        let d = self.dir.path();
        let peers: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(j, a)| format!("{}={a}", j + 1))
            .collect();
        let _ = std::fs::remove_file(self.socket(i));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_windsor-xenstored-pool"));
        cmd.arg("--socket")
            .arg(self.socket(i))
            .arg("--data-dir")
            .arg(d.join(format!("data{i}")))
            .args(["--pool-id", &i.to_string()])
            .args(["--pool-listen", &self.addrs[i as usize - 1]])
            .args(["--pool-peers", &peers.join(",")])
            .arg("--pool-tls-dir")
            .arg(d.join(format!("tls{i}")));
        if i == 1 {
            cmd.arg("--pool-bootstrap");
        }
        self.procs[i as usize - 1] = Some(
            cmd.env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("windsor-xenstored-pool"),
        );
    }

    fn kill(&mut self, i: u64) {
        if let Some(mut c) = self.procs[i as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn leader(&mut self) -> u64 {
        use windsor_xenstore_replication::proto::{ClientReply, ClientRequest};
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ClientReply::Status(s)) =
                self.rt.block_on(self.status.request(ClientRequest::Status))
            {
                if let Some(l) = s.leader {
                    return l;
                }
            }
            assert!(Instant::now() < end, "the daemons elected no leader");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn xs(&self, i: u64) -> windsor_xenstore::stream::StreamStore {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(self.socket(i)) {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return windsor_xenstore::stream::StreamStore::from_stream(s).unwrap();
            }
            assert!(Instant::now() < end, "daemon {i} not up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for i in 1..=3 {
            self.kill(i);
        }
    }
}

fn xs_put(c: &windsor_xenstore::stream::StreamStore, i: u64) -> bool {
    use windsor_xenstore::client::{TxId, XenStore};
    c.write(
        TxId::NONE,
        &format!("/pool/bench/k{}", i % 1000),
        format!("value-{i}").as_bytes(),
    )
    .is_ok()
}

fn xs_puts(c: &windsor_xenstore::stream::StreamStore) -> (f64, f64, f64) {
    for i in 0..100 {
        assert!(xs_put(c, i), "warm-up put failed");
    }
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(PUT_SECS) {
        let t = Instant::now();
        assert!(xs_put(c, i), "put failed");
        lat.push(t.elapsed());
        i += 1;
    }
    summarize(lat, t0.elapsed())
}

/// Leader-host figures, follower-host figures.
fn daemons() -> (Figures, Figures) {
    let mut d = Daemons::start();
    let leader = d.leader();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (rate, p50, p99) = xs_puts(&d.xs(leader));
    let (frate, fp50, fp99) = xs_puts(&d.xs(follower));
    let mut fo = Vec::new();
    for _ in 0..FAILOVERS * 3 {
        if fo.len() == FAILOVERS {
            break;
        }
        let leader = d.leader();
        let other = (1..=3).find(|i| *i != leader).unwrap();
        let c = d.xs(other);
        // The pool settled (the restarted member caught up, the leader
        // known to this host): a put goes through.
        let end = Instant::now() + Duration::from_secs(20);
        while !xs_put(&c, 0) {
            assert!(Instant::now() < end, "no put before the failover");
            std::thread::sleep(Duration::from_millis(20));
        }
        let leader = d.leader();
        if leader == other {
            continue;
        }
        let t = Instant::now();
        d.kill(leader);
        let mut n = 0;
        while !xs_put(&c, n) {
            n += 1;
        }
        fo.push(t.elapsed().as_secs_f64() * 1e3);
        d.spawn(leader);
        // Its socket back, and caught up.
        let back = d.xs(leader);
        while !xs_put(&back, 1) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(!fo.is_empty(), "no failover measured");
    let failover_ms = median(fo);
    (
        Figures {
            puts_per_s: rate,
            p50_ms: p50,
            p99_ms: p99,
            failover_ms,
        },
        Figures {
            puts_per_s: frate,
            p50_ms: fp50,
            p99_ms: fp99,
            failover_ms,
        },
    )
}

// ---------------------------------------------------------------- etcd

struct Etcd {
    procs: Vec<Option<Child>>,
    clients: Vec<String>,
    args: Vec<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<u16> = (0..n).map(|_| common::free_port("127.0.0.1")).collect();
        let clients: Vec<u16> = (0..n).map(|_| common::free_port("127.0.0.1")).collect();
        let cluster: Vec<String> = (0..n)
            .map(|i| format!("e{i}=http://127.0.0.1:{}", peers[i]))
            .collect();
        let args: Vec<Vec<String>> = (0..n)
            .map(|i| {
                vec![
                    "--name".into(),
                    format!("e{i}"),
                    "--data-dir".into(),
                    dir.path().join(format!("e{i}")).display().to_string(),
                    "--listen-peer-urls".into(),
                    format!("http://127.0.0.1:{}", peers[i]),
                    "--initial-advertise-peer-urls".into(),
                    format!("http://127.0.0.1:{}", peers[i]),
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{}", clients[i]),
                    "--advertise-client-urls".into(),
                    format!("http://127.0.0.1:{}", clients[i]),
                    "--initial-cluster".into(),
                    cluster.join(","),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--log-level".into(),
                    "error".into(),
                ]
            })
            .collect();
        let mut e = Etcd {
            procs: (0..n).map(|_| None).collect(),
            clients: clients.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            args,
            _dir: dir,
        };
        for i in 0..n {
            e.spawn(i);
        }
        e
    }

    fn spawn(&mut self, i: usize) {
        let c = Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; `cargo xtask setup`)");
        self.procs[i] = Some(c);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// A kept-alive HTTP/1.1 connection to one etcd member.
struct Http {
    s: TcpStream,
    addr: String,
}

impl Http {
    fn connect(addr: &str) -> Option<Http> {
        let s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(200)).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        Some(Http {
            s,
            addr: addr.to_string(),
        })
    }

    fn post(&mut self, path: &str, body: &str) -> Option<(u16, String)> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = self.s.read(&mut tmp).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(off)) = resp.parse(&buf) {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())?;
                if buf.len() >= off + len {
                    let code = resp.code?;
                    return Some((code, String::from_utf8_lossy(&buf[off..off + len]).into()));
                }
            }
        }
    }
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= ch.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn etcd_put(h: &mut Http, i: u64) -> bool {
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\"}}",
        b64(&format!("/pool/bench/k{}", i % 1000)),
        b64(&format!("value-{i}"))
    );
    matches!(h.post("/v3/kv/put", &body), Some((200, _)))
}

/// The member index of the leader, by asking each member's status.
fn etcd_leader(e: &Etcd) -> Option<usize> {
    for (i, a) in e.clients.iter().enumerate() {
        if e.procs[i].is_none() {
            continue;
        }
        let mut h = Http::connect(a)?;
        let (_, body) = h.post("/v3/maintenance/status", "{}")?;
        let field = |name: &str| -> Option<String> {
            let at = body.find(&format!("\"{name}\""))?;
            let rest = &body[at + name.len() + 2..];
            let rest = rest.trim_start_matches([':', ' ', '"']);
            Some(rest.chars().take_while(|c| c.is_ascii_digit()).collect())
        };
        if field("leader")? == field("member_id")? {
            return Some(i);
        }
    }
    None
}

fn etcd() -> Figures {
    let mut e = Etcd::start(3);
    let end = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(l) = etcd_leader(&e) {
            break l;
        }
        assert!(Instant::now() < end, "etcd elected no leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut h = Http::connect(&e.clients[leader]).unwrap();
    for i in 0..100 {
        assert!(etcd_put(&mut h, i), "etcd warm-up put failed");
    }
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(PUT_SECS) {
        let t = Instant::now();
        assert!(etcd_put(&mut h, i), "etcd put failed");
        lat.push(t.elapsed());
        i += 1;
    }
    let (rate, p50, p99) = summarize(lat, t0.elapsed());
    let mut fo = Vec::new();
    for _ in 0..FAILOVERS {
        let end = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some(l) = etcd_leader(&e) {
                break l;
            }
            assert!(Instant::now() < end, "etcd elected no leader");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the restarted member catch up before the next kill.
        std::thread::sleep(Duration::from_millis(500));
        let others: Vec<usize> = (0..3).filter(|x| *x != leader).collect();
        let t = Instant::now();
        e.kill(leader);
        let mut n = 0u64;
        'outer: loop {
            for o in &others {
                if let Some(mut h) = Http::connect(&e.clients[*o]) {
                    if etcd_put(&mut h, n) {
                        break 'outer;
                    }
                }
                n += 1;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "etcd did not fail over"
            );
        }
        fo.push(t.elapsed().as_secs_f64() * 1e3);
        e.spawn(leader);
    }
    Figures {
        puts_per_s: rate,
        p50_ms: p50,
        p99_ms: p99,
        failover_ms: median(fo),
    }
}

fn main() {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("etcd is not installed (`cargo xtask setup`); no baseline");
    }
    let ours = pool();
    let (dl, df) = daemons();
    let theirs = etcd();
    eprintln!(
        "pool: {ours:?}\ndaemon (leader's host): {dl:?}\ndaemon (follower's host): {df:?}\netcd: {theirs:?}"
    );
    for (prefix, f) in [("pool_daemon", dl), ("pool_daemon_follower", df)] {
        line(
            &format!("{prefix}_put_seq"),
            f.puts_per_s,
            "puts/s",
            Some(theirs.puts_per_s),
            Some(f.puts_per_s / theirs.puts_per_s),
        );
        line(
            &format!("{prefix}_put_p50"),
            f.p50_ms,
            "ms",
            Some(theirs.p50_ms),
            Some(theirs.p50_ms / f.p50_ms),
        );
        line(
            &format!("{prefix}_put_p99"),
            f.p99_ms,
            "ms",
            Some(theirs.p99_ms),
            Some(theirs.p99_ms / f.p99_ms),
        );
    }
    line(
        "pool_daemon_failover",
        dl.failover_ms,
        "ms",
        Some(theirs.failover_ms),
        Some(theirs.failover_ms / dl.failover_ms),
    );
    line(
        "pool_put_seq",
        ours.puts_per_s,
        "puts/s",
        Some(theirs.puts_per_s),
        Some(ours.puts_per_s / theirs.puts_per_s),
    );
    line(
        "pool_put_p50",
        ours.p50_ms,
        "ms",
        Some(theirs.p50_ms),
        Some(theirs.p50_ms / ours.p50_ms),
    );
    line(
        "pool_put_p99",
        ours.p99_ms,
        "ms",
        Some(theirs.p99_ms),
        Some(theirs.p99_ms / ours.p99_ms),
    );
    line(
        "pool_failover",
        ours.failover_ms,
        "ms",
        Some(theirs.failover_ms),
        Some(theirs.failover_ms / ours.failover_ms),
    );
}
