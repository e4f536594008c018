//! Network partitions: each member in its own network namespace, made by
//! the test, joined by a bridge in a hub namespace; a partition is the
//! member's bridge port set down. Only addresses inside these namespaces
//! (10.77.0.0/24, which exists nowhere else) are used. Needs root.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::proto::ClientError;
use windsor_xenstore_replication::sm::{Command as PoolCommand, Op};

const CLIENT_NS: u64 = 100;

struct Net {
    tag: String,
    ids: Vec<u64>,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("running ip");
    assert!(st.success(), "ip {args:?} failed");
}

impl Net {
    fn ns(&self, i: u64) -> String {
        format!("{}n{i}", self.tag)
    }
    fn hub(&self) -> String {
        format!("{}h", self.tag)
    }

    fn new(members: u64) -> Net {
        let tag = format!("wpr{}", std::process::id());
        let mut ids: Vec<u64> = (1..=members).collect();
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
                &format!("10.77.0.{i}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// Cuts member `i` off from everyone.
    fn cut(&self, i: u64) {
        ip(&["-n", &self.hub(), "link", "set", &format!("v{i}"), "down"]);
    }

    fn heal(&self, i: u64) {
        ip(&["-n", &self.hub(), "link", "set", &format!("v{i}"), "up"]);
    }

    /// Moves the calling thread into the client namespace: the sockets it
    /// opens from now on are there.
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

fn put(c: &Cluster, cl: &mut PoolClient, path: &str) -> u64 {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let cmd = PoolCommand::Op(Op::Write {
            path: path.into(),
            value: b"v".to_vec(),
        });
        match c.rt.block_on(cl.submit(cmd)) {
            Ok((o, idx)) => {
                assert_eq!(o.result, Ok(()));
                return idx;
            }
            Err(ClientError::Unknown(_)) => continue,
            Err(e) => panic!("{path}: {e}"),
        }
    }
    panic!("{path}: no definite answer\n{}", c.logs());
}

#[test]
fn partitioned_leader_is_replaced_and_rejoins_without_loss() {
    let net = Net::new(3);
    let addrs = (1..=3).map(|i| (i, format!("10.77.0.{i}:7000"))).collect();
    let mut c = Cluster::prepare_at(addrs);
    for i in 1..=3 {
        c.wrap.insert(
            i,
            vec!["ip".into(), "netns".into(), "exec".into(), net.ns(i)],
        );
        c.start(i);
    }
    net.enter_client();
    let mut cl = c.client();
    cl.reply_timeout = Duration::from_millis(800);
    let leader = c.wait_leader(Duration::from_secs(10));
    let mut acked = Vec::new();
    for i in 0..20 {
        let p = format!("/pool/p/a{i}");
        put(&c, &mut cl, &p);
        acked.push(p);
    }

    // The leader is cut off: the majority elects another and goes on.
    net.cut(leader);
    let t = Instant::now();
    let rest: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let l2 = c.wait_leader_among(&rest, Duration::from_secs(10));
    eprintln!("new leader {l2} after {:?}", t.elapsed());
    let mut last = 0;
    for i in 0..20 {
        let p = format!("/pool/p/b{i}");
        last = put(&c, &mut cl, &p);
        acked.push(p);
    }
    // Healed, the old leader steps down and catches up.
    net.heal(leader);
    let s = c.wait_applied(leader, last, Duration::from_secs(15));
    assert_ne!(s.leader, Some(leader), "{s:?}");

    // A follower cut off does not stop the pool either.
    let f = rest.into_iter().find(|i| *i != l2).unwrap();
    net.cut(f);
    for i in 0..20 {
        let p = format!("/pool/p/c{i}");
        last = put(&c, &mut cl, &p);
        acked.push(p);
    }
    net.heal(f);
    c.wait_applied(f, last, Duration::from_secs(15));
    for p in &acked {
        let v = c.rt.block_on(cl.read(p)).unwrap();
        assert!(v.is_some(), "{p} lost");
    }
}
