//! Three members as separate processes: kill -9 of the leader, restart
//! with the old data directory, no acknowledged write lost; a member that
//! was down catches up by snapshot; membership changes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::proto::{ClientError, ClientReply, ClientRequest};
use windsor_xenstore_replication::sm::{Command, Op};

/// Writes, retrying a write whose outcome was unknown (a write of the
/// same value twice is the same as once here).
fn put(c: &Cluster, cl: &mut PoolClient, path: &str, v: &str) -> u64 {
    for _ in 0..20 {
        match c.rt.block_on(cl.submit(write(path, v))) {
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

fn write(path: &str, v: &str) -> Command {
    Command::Op(Op::Write {
        path: path.into(),
        value: v.as_bytes().to_vec(),
    })
}

#[test]
fn leader_kill_and_restart_lose_no_acknowledged_write() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    let mut cl = c.client();
    let mut acked = Vec::new();
    for i in 0..40 {
        let p = format!("/pool/acked/k{i}");
        put(&c, &mut cl, &p, &i.to_string());
        acked.push((p, i.to_string()));
    }
    // kill -9 the leader: another is elected, writes go on.
    c.kill(leader);
    let t = Instant::now();
    let others: Vec<u64> = c.live();
    let new_leader = c.wait_leader_among(&others, Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    eprintln!("failover took {:?}", t.elapsed());
    let mut last = 0;
    for i in 40..80 {
        let p = format!("/pool/acked/k{i}");
        last = put(&c, &mut cl, &p, &i.to_string());
        acked.push((p, i.to_string()));
    }
    // The old leader restarts on its old data directory and catches up.
    c.start(leader);
    c.wait_applied(leader, last, Duration::from_secs(10));
    // Then the new leader dies too; the restarted one serves with the third.
    c.kill(new_leader);
    let l3 = c.wait_leader(Duration::from_secs(10));
    assert_ne!(l3, new_leader);
    for (p, v) in &acked {
        let got = c.rt.block_on(cl.read(p)).unwrap();
        assert_eq!(got.map(|(v, _)| v), Some(v.as_bytes().to_vec()), "{p} lost");
    }
}

#[test]
fn down_member_catches_up_by_snapshot_and_membership_changes() {
    let mut c = Cluster::prepare(4);
    // Only 1..=3 are voters at first (4 is not in the bootstrap).
    c.addrs.remove(&4);
    let addr4 = format!("127.0.0.1:{}", common::free_port("127.0.0.1"));
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.wait_leader(Duration::from_secs(10));
    let down = if leader == 3 { 2 } else { 3 };
    c.kill(down);
    let mut cl = c.client();
    let mut last = 0;
    for i in 0..60 {
        last = put(&c, &mut cl, &format!("/pool/s/k{i}"), "v");
    }
    // Snapshot and purge the log on the live members: the down one can
    // only catch up from a snapshot.
    for id in c.live() {
        let r =
            c.rt.block_on(cl.call_at(&c.addrs[&id], ClientRequest::Snapshot))
                .unwrap();
        assert_eq!(r, Ok(ClientReply::Done));
    }
    // Purging waits until no replication reads those entries.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.status(leader).unwrap();
        if s.purged.is_some_and(|p| p >= last) {
            break;
        }
        assert!(Instant::now() < end, "log not purged: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.start(down);
    let s = c.wait_applied(down, last, Duration::from_secs(10));
    assert!(s.applied >= last);

    // A fourth member joins: learner first, then voter through joint
    // consensus; then the first leader leaves the voters.
    c.addrs.insert(4, addr4.clone());
    c.start(4);
    let r =
        c.rt.block_on(cl.request(ClientRequest::AddLearner(4, addr4)))
            .unwrap();
    assert_eq!(r, ClientReply::Done);
    c.wait_applied(4, last, Duration::from_secs(10));
    let voters: BTreeSet<u64> = [1, 2, 3, 4].into();
    let r =
        c.rt.block_on(cl.request(ClientRequest::ChangeMembership(voters)))
            .unwrap();
    assert_eq!(r, ClientReply::Done);
    let without: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|i| *i != leader).collect();
    let r =
        c.rt.block_on(cl.request(ClientRequest::ChangeMembership(without.clone())))
            .unwrap();
    assert_eq!(r, ClientReply::Done);
    let rest: Vec<u64> = without.iter().copied().collect();
    let l = c.wait_leader_among(&rest, Duration::from_secs(10));
    let s = c.status(l).unwrap();
    assert_eq!(s.voters, rest);
    // The pool still takes writes, and member 4 has everything.
    let idx = put(&c, &mut cl, "/pool/s/after", "x");
    c.wait_applied(4, idx, Duration::from_secs(10));
    let v = c.rt.block_on(cl.read("/pool/s/k59")).unwrap();
    assert_eq!(v.map(|x| x.0), Some(b"v".to_vec()));
}

#[test]
fn slow_follower_does_not_slow_the_pool_and_catches_up() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let c = Cluster::new(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    let slow = if leader == 1 { 2 } else { 1 };
    let pid = Pid::from_raw(c.pid(slow).unwrap() as i32);
    let mut cl = c.client();
    // The follower runs 100 ms in every 400 (SIGSTOP/SIGCONT): a starved
    // host. The two others are a majority and keep the pace.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let starver = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            kill(pid, Signal::SIGSTOP).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            kill(pid, Signal::SIGCONT).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let t = Instant::now();
    let mut last = 0;
    for i in 0..100 {
        last = put(&c, &mut cl, &format!("/pool/slow/k{i}"), "v");
    }
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    starver.join().unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(took < Duration::from_secs(10), "100 writes took {took:?}");
    c.wait_applied(slow, last, Duration::from_secs(10));
    // The slow follower never took over: no leader change was needed.
    assert_eq!(c.wait_leader(Duration::from_secs(5)), leader);
}

#[test]
fn five_members_survive_two_kills() {
    let mut c = Cluster::new(5);
    let leader = c.wait_leader(Duration::from_secs(10));
    let mut cl = c.client();
    let mut acked = Vec::new();
    for i in 0..20 {
        let p = format!("/pool/five/a{i}");
        put(&c, &mut cl, &p, "v");
        acked.push(p);
    }
    // The leader and one follower die: three of five are a majority.
    let follower = (1..=5).find(|i| *i != leader).unwrap();
    c.kill(leader);
    c.kill(follower);
    let l2 = c.wait_leader(Duration::from_secs(10));
    assert!(l2 != leader && l2 != follower);
    let mut last = 0;
    for i in 0..20 {
        let p = format!("/pool/five/b{i}");
        last = put(&c, &mut cl, &p, "v");
        acked.push(p);
    }
    // A third death leaves no majority: a write cannot commit.
    let third = c.live().into_iter().find(|i| *i != l2).unwrap();
    c.kill(third);
    let mut short = c.client();
    short.deadline = Duration::from_secs(1);
    let r =
        c.rt.block_on(short.submit(write("/pool/five/no-majority", "x")));
    assert!(r.is_err(), "a write committed without a majority: {r:?}");
    // Back to four: everything acknowledged is there, on the restarted too.
    c.start(third);
    c.start(leader);
    c.wait_applied(leader, last, Duration::from_secs(15));
    for p in &acked {
        let v = c.rt.block_on(cl.read(p)).unwrap();
        assert!(v.is_some(), "{p} lost");
    }
}

#[test]
fn whole_pool_killed_at_once_keeps_every_acknowledged_write() {
    let mut c = Cluster::new(3);
    c.wait_leader(Duration::from_secs(10));
    let mut cl = c.client();
    let mut acked = Vec::new();
    for i in 0..30 {
        let p = format!("/pool/all/k{i}");
        put(&c, &mut cl, &p, &i.to_string());
        acked.push((p, i.to_string()));
    }
    // Every member is killed at once, then all come back on their data
    // directories: recovery from the log and snapshot alone. (kill -9
    // leaves the page cache, so this checks recovery, not the syncs.)
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    c.wait_leader(Duration::from_secs(10));
    let mut cl = c.client();
    for (p, v) in &acked {
        let got = c.rt.block_on(cl.read(p)).unwrap();
        assert_eq!(got.map(|(v, _)| v), Some(v.as_bytes().to_vec()), "{p} lost");
    }
}
