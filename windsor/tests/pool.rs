//! Pools of `windsor up` processes, each host in its own network
//! namespace made by the test (joined by a bridge in a hub namespace;
//! only 10.78.0.0/24, which exists nowhere else, is used), its xenstore
//! domain in pool mode. Client threads run concurrent reads and writes of
//! `/pool` registers through the hosts' xenstore sockets while the test
//! kills the leader's whole host with `kill -9` and restarts it on its
//! old data directory, cuts a host off (its bridge port down, all its
//! traffic dropped) and heals it, and slows a follower (`tc netem`
//! delay). The history, final reads on every host included, is checked
//! by stateright's `LinearizabilityTester`: every acknowledged write is
//! there, on every host. Needs root and iproute2 (`cargo xtask setup`).

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use windsor_xenstore::client::{ClientError, TxId, XenStore};
use windsor_xenstore::stream::StreamStore;
use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::proto::{ClientReply, ClientRequest};
use windsor_xenstore_replication::tls::{self, Tls};

const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");
const KEYS: usize = 3;
const CLIENT_NS: u64 = 100;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("running ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// The namespaces: one per host and one for the test's pool client.
struct Net {
    tag: String,
    ids: Vec<u64>,
}

impl Net {
    fn ns(&self, i: u64) -> String {
        format!("{}n{i}", self.tag)
    }
    fn hub(&self) -> String {
        format!("{}h", self.tag)
    }

    fn new(hosts: u64) -> Net {
        let tag = format!("wpo{}x{hosts}", std::process::id() % 100_000);
        let mut ids: Vec<u64> = (1..=hosts).collect();
        ids.push(CLIENT_NS);
        let net = Net { tag, ids };
        let hub = net.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for &i in &net.ids {
            let ns = net.ns(i);
            let port = format!("v{i}");
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.78.0.{i}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// Drops all traffic of host `i` (its bridge port down).
    fn cut(&self, i: u64) {
        ip(&["-n", &self.hub(), "link", "set", &format!("v{i}"), "down"]);
    }

    fn heal(&self, i: u64) {
        ip(&["-n", &self.hub(), "link", "set", &format!("v{i}"), "up"]);
    }

    /// Delays everything host `i` sends by `ms` (a slow follower); false
    /// if `tc netem` is not available here.
    fn slow(&self, i: u64, ms: u32) -> bool {
        Command::new("tc")
            .args([
                "-n",
                &self.ns(i),
                "qdisc",
                "add",
                "dev",
                "eth0",
                "root",
                "netem",
            ])
            .args(["delay", &format!("{ms}ms")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Moves the calling thread into the client namespace.
    fn enter_client(&self) {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.ns(CLIENT_NS))).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for &i in &self.ids {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
    }
}

/// The hosts: `windsor up` processes in their namespaces.
struct Pool {
    dir: tempfile::TempDir,
    n: u64,
    net: Net,
    procs: BTreeMap<u64, Child>,
    client: PoolClient,
    rt: tokio::runtime::Runtime,
}

impl Pool {
    fn new(n: u64) -> Pool {
        let net = Net::new(n);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        tls::create_ca(&ca).unwrap();
        for i in 1..=n {
            tls::issue_member(&ca, i, &dir.path().join(format!("tls{i}"))).unwrap();
        }
        tls::issue_member(&ca, 1000, &dir.path().join("tls-client")).unwrap();
        let client = PoolClient::new(
            Tls::load(&dir.path().join("tls-client")).unwrap(),
            (1..=n).map(Self::addr).collect(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut p = Pool {
            dir,
            n,
            net,
            procs: BTreeMap::new(),
            client,
            rt,
        };
        for i in 1..=n {
            p.start(i);
        }
        p
    }

    fn addr(i: u64) -> String {
        format!("10.78.0.{i}:7000")
    }

    fn socket(&self, i: u64) -> PathBuf {
        self.dir.path().join(format!("data{i}/xenstored.sock"))
    }

    /// Starts host `i` (again: same data directory).
    fn start(&mut self, i: u64) {
        let d = self.dir.path();
        let peers: Vec<String> = (1..=self.n)
            .map(|j| format!("{j}={}", Self::addr(j)))
            .collect();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join(format!("host{i}.log")))
            .unwrap();
        let _ = std::fs::remove_file(self.socket(i));
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.net.ns(i),
            WINDSOR,
            "up",
            "--data-dir",
        ])
        .arg(d.join(format!("data{i}")))
        .args(["--api", &format!("10.78.0.{i}:8080")])
        .args(["--pool-id", &i.to_string(), "--pool-listen", &Self::addr(i)])
        .args(["--pool-peers", &peers.join(",")])
        .arg("--pool-tls-dir")
        .arg(d.join(format!("tls{i}")));
        if i == 1 {
            cmd.arg("--pool-bootstrap");
        }
        let child = cmd
            .env("WINDSOR_ROOT_PASSWORD", "test-password")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(i, child);
    }

    /// `kill -9` of host `i`'s whole process.
    fn kill(&mut self, i: u64) {
        if let Some(mut c) = self.procs.remove(&i) {
            // `ip netns exec` execs the binary: the child is `windsor up`.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The leader that a member among `ids` knows, if it is among `ids`.
    fn leader_among(&mut self, ids: &[u64], within: Duration) -> u64 {
        let end = Instant::now() + within;
        loop {
            for &i in ids {
                let r = self
                    .rt
                    .block_on(self.client.call_at(&Self::addr(i), ClientRequest::Status));
                if let Ok(Ok(ClientReply::Status(s))) = r {
                    if let Some(l) = s.leader.filter(|l| ids.contains(l)) {
                        return l;
                    }
                }
            }
            assert!(
                Instant::now() < end,
                "no leader among {ids:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn leader(&mut self, within: Duration) -> u64 {
        let all: Vec<u64> = (1..=self.n).collect();
        self.leader_among(&all, within)
    }

    fn pid(&self, i: u64) -> Option<nix::unistd::Pid> {
        self.procs
            .get(&i)
            .map(|c| nix::unistd::Pid::from_raw(c.id() as i32))
    }

    fn logs(&self) -> String {
        (1..=self.n)
            .map(|i| {
                let l = std::fs::read_to_string(self.dir.path().join(format!("host{i}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = l.lines().collect();
                // Panics first (with what follows), then the tail.
                let mut out: Vec<&str> = Vec::new();
                for (n, line) in lines.iter().enumerate() {
                    if line.contains("panicked at") {
                        out.extend(lines[n..(n + 3).min(lines.len())].iter());
                    }
                }
                out.extend(lines[lines.len().saturating_sub(10)..].iter());
                format!("--- host {i}\n{}", out.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for i in 1..=self.n {
            self.kill(i);
        }
    }
}

/// A xenstore connection to `socket`, every call bounded.
fn connect(socket: &Path, within: Duration) -> Option<StreamStore> {
    let end = Instant::now() + within;
    loop {
        if let Ok(s) = UnixStream::connect(socket) {
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            if let Ok(c) = StreamStore::from_stream(s) {
                return Some(c);
            }
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Invoke(u64, usize, RegisterOp<u64>),
    Return(u64, usize, RegisterRet<u64>),
}

fn key(k: usize) -> String {
    format!("/pool/reg/k{k}")
}

/// A client thread: random reads and writes through host `home`'s
/// xenstore (another host's if that one is down). An operation without a
/// definite answer stays in flight for ever in the history (it may or
/// may not have happened), and the thread goes on under a new id.
fn client_loop(
    id: u64,
    sockets: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Ev>>>,
) -> (u64, u64) {
    let mut thread = id;
    let mut seed = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let (mut ok, mut unknown, mut n) = (0, 0, 0u64);
    let mut at = id as usize % sockets.len();
    let mut conn: Option<StreamStore> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_ref() else {
            conn = connect(&sockets[at], Duration::from_millis(500));
            if conn.is_none() {
                at = (at + 1) % sockets.len();
            }
            continue;
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let k = (seed % KEYS as u64) as usize;
        n += 1;
        let op = if (seed >> 8) % 2 == 0 {
            RegisterOp::Write(id * 1_000_000 + n)
        } else {
            RegisterOp::Read
        };
        log.lock().unwrap().push(Ev::Invoke(thread, k, op.clone()));
        let ret = match op {
            RegisterOp::Write(v) => c
                .write(TxId::NONE, &key(k), v.to_string().as_bytes())
                .map(|()| RegisterRet::WriteOk),
            RegisterOp::Read => match c.read(TxId::NONE, &key(k)) {
                Ok(v) => Ok(RegisterRet::ReadOk(
                    String::from_utf8_lossy(&v).parse().unwrap_or(u64::MAX),
                )),
                Err(ClientError::Store(xen::Errno::ENOENT)) => Ok(RegisterRet::ReadOk(0)),
                Err(e) => Err(e),
            },
        };
        match ret {
            Ok(r) => {
                ok += 1;
                log.lock().unwrap().push(Ev::Return(thread, k, r));
            }
            Err(e) => {
                unknown += 1;
                thread += 1000;
                if matches!(e, ClientError::Disconnected | ClientError::Protocol) {
                    conn = None;
                    at = (at + 1) % sockets.len();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    (ok, unknown)
}

fn run_pool(n: u64, clients: u64) {
    let started = Instant::now();
    let mut pool = Pool::new(n);
    pool.net.enter_client();
    let leader = pool.leader(Duration::from_secs(60));
    // Every host up: its xenstore answers a /pool write.
    for i in 1..=n {
        let c = connect(&pool.socket(i), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("host {i} not up\n{}", pool.logs()));
        let end = Instant::now() + Duration::from_secs(30);
        while c.write(TxId::NONE, &format!("/pool/up/{i}"), b"1").is_err() {
            assert!(
                Instant::now() < end,
                "host {i}: no /pool write\n{}",
                pool.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("{n} hosts up in {:?}, leader {leader}", started.elapsed());

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<PathBuf> = (1..=n).map(|i| pool.socket(i)).collect();
    let workers: Vec<_> = (1..=clients)
        .map(|id| {
            let (s, st, l) = (sockets.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || client_loop(id, s, st, l))
        })
        .collect();

    // A slow follower: its sends delayed by tc netem for the whole run,
    // or, without netem in this kernel, the host stopped (SIGSTOP) for
    // 60 ms of every 300: longer than the heartbeat interval (30 ms, so
    // the leader's RPCs to it time out) and shorter than the election
    // timeout (100-200 ms, so it is slow, not gone).
    let slow = (1..=n).find(|i| *i != leader).unwrap();
    let slowed = pool.net.slow(slow, 20);
    let stall_stop = Arc::new(AtomicBool::new(false));
    let stall = (!slowed).then(|| {
        let pid = pool.pid(slow).unwrap();
        let st = stall_stop.clone();
        std::thread::spawn(move || {
            use nix::sys::signal::{kill, Signal};
            while !st.load(Ordering::Relaxed) {
                let _ = kill(pid, Signal::SIGSTOP);
                std::thread::sleep(Duration::from_millis(60));
                let _ = kill(pid, Signal::SIGCONT);
                std::thread::sleep(Duration::from_millis(240));
            }
        })
    });
    std::thread::sleep(Duration::from_millis(2000));
    // (The stalls stop here: a follower stopped 60 ms of every 300 on a
    // loaded CI machine can hold an election up for long.)
    stall_stop.store(true, Ordering::Relaxed);
    if let Some(h) = stall {
        h.join().unwrap();
    }
    // kill -9 of the leader's host; the others elect and go on.
    let t = Instant::now();
    pool.kill(leader);
    let rest: Vec<u64> = (1..=n).filter(|i| *i != leader).collect();
    let l2 = pool.leader_among(&rest, Duration::from_secs(20));
    eprintln!(
        "killed leader {leader}; leader {l2} after {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1500));
    // It comes back on its old data directory.
    pool.start(leader);
    std::thread::sleep(Duration::from_millis(1500));
    // A partition: the current leader's traffic dropped, then healed.
    let l3 = pool.leader(Duration::from_secs(20));
    pool.net.cut(l3);
    let rest: Vec<u64> = (1..=n).filter(|i| *i != l3).collect();
    let t = Instant::now();
    let l4 = pool.leader_among(&rest, Duration::from_secs(20));
    eprintln!("cut leader {l3} off; leader {l4} after {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(1500));
    pool.net.heal(l3);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut unknown) = (0, 0);
    for w in workers {
        let (o, u) = w.join().unwrap();
        ok += o;
        unknown += u;
    }

    // Final reads of every register on every host take part in the check:
    // an acknowledged write missing anywhere would not linearize.
    let mut log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    let mut reader = 900_000u64;
    for i in 1..=n {
        let c = connect(&pool.socket(i), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("host {i} not back\n{}", pool.logs()));
        for k in 0..KEYS {
            reader += 1;
            let end = Instant::now() + Duration::from_secs(30);
            let v = loop {
                match c.read(TxId::NONE, &key(k)) {
                    Ok(v) => break String::from_utf8_lossy(&v).parse().unwrap_or(u64::MAX),
                    Err(ClientError::Store(xen::Errno::ENOENT)) => break 0,
                    Err(e) => {
                        assert!(Instant::now() < end, "host {i} read: {e}\n{}", pool.logs());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            log.push(Ev::Invoke(reader, k, RegisterOp::Read));
            log.push(Ev::Return(reader, k, RegisterRet::ReadOk(v)));
        }
    }
    eprintln!(
        "{n} hosts: {ok} operations answered, {unknown} without a definite answer; \
         slow follower {slow} ({}) ; {:?} in all",
        if slowed {
            "netem 20 ms"
        } else {
            "SIGSTOP 60 ms of every 300 for 2 s"
        },
        started.elapsed()
    );
    assert!(
        ok > 50,
        "too few operations answered: {ok}\n{}",
        pool.logs()
    );
    // `windsor pool status`: every member live, one leader, one term.
    let out = Command::new(WINDSOR)
        .args(["pool", "status", "--json", "--members"])
        .arg((1..=n).map(Pool::addr).collect::<Vec<_>>().join(","))
        .arg("--tls-dir")
        .arg(pool.dir.path().join("tls-client"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len() as u64, n, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["live"] == true && r["voter"] == true),
        "{rows:?}"
    );
    let leaders = rows.iter().filter(|r| r["leader"] == true).count();
    assert_eq!(leaders, 1, "{rows:?}");

    let checking = Instant::now();
    for k in 0..KEYS {
        let mut t = LinearizabilityTester::new(Register(0u64));
        for ev in &log {
            match ev {
                Ev::Invoke(th, kk, op) if *kk == k => {
                    t.on_invoke(*th, op.clone()).unwrap();
                }
                Ev::Return(th, kk, r) if *kk == k => {
                    t.on_return(*th, r.clone()).unwrap();
                }
                _ => {}
            }
        }
        assert!(
            t.serialized_history().is_some(),
            "register {k}: history not linearizable"
        );
    }
    eprintln!("linearizability checked in {:?}", checking.elapsed());
}

#[test]
fn three_hosts_linearizable_through_kill_partition_restart_and_slow_follower() {
    run_pool(3, 4);
}

#[test]
fn five_hosts_linearizable_through_kill_partition_restart_and_slow_follower() {
    run_pool(5, 4);
}
