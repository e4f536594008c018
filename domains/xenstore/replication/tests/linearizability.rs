//! Concurrent clients on `/pool` while leaders are killed (`kill -9`) and
//! restarted on their old data: the history of every register is checked
//! by stateright's `LinearizabilityTester`, and no acknowledged write is
//! lost (the final reads take part in the same check).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use windsor_xenstore_replication::sm::{Command, Op};

const KEYS: usize = 3;
const CLIENTS: u64 = 4;

#[derive(Debug, Clone)]
enum Ev {
    Invoke(u64, usize, RegisterOp<u64>),
    Return(u64, usize, RegisterRet<u64>),
}

fn key(k: usize) -> String {
    format!("/pool/reg/k{k}")
}

fn parse(v: Option<(Vec<u8>, u64)>) -> u64 {
    v.map_or(0, |(v, _)| {
        String::from_utf8_lossy(&v).parse().unwrap_or(u64::MAX)
    })
}

async fn client_loop(
    mut cl: windsor_xenstore_replication::client::PoolClient,
    client: u64,
    until: Instant,
    log: Arc<Mutex<Vec<Ev>>>,
) -> (u64, u64) {
    let mut thread = client;
    let mut seed = client.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut n = 0u64;
    let (mut ok, mut unknown) = (0, 0);
    while Instant::now() < until {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let k = (seed % KEYS as u64) as usize;
        let write = (seed >> 8) % 2 == 0;
        n += 1;
        let op = if write {
            RegisterOp::Write(client * 1_000_000 + n)
        } else {
            RegisterOp::Read
        };
        log.lock().unwrap().push(Ev::Invoke(thread, k, op.clone()));
        let ret = match op {
            RegisterOp::Write(v) => cl
                .submit(Command::Op(Op::Write {
                    path: key(k),
                    value: v.to_string().into_bytes(),
                }))
                .await
                .map(|(o, _)| {
                    assert_eq!(o.result, Ok(()));
                    RegisterRet::WriteOk
                }),
            RegisterOp::Read => cl
                .read(&key(k))
                .await
                .map(|v| RegisterRet::ReadOk(parse(v))),
        };
        match ret {
            Ok(r) => {
                ok += 1;
                log.lock().unwrap().push(Ev::Return(thread, k, r));
            }
            Err(_) => {
                // Outcome unknown: the operation stays in flight for ever
                // (it may or may not have happened); go on as a new thread.
                unknown += 1;
                thread += 1000;
            }
        }
    }
    (ok, unknown)
}

#[test]
fn concurrent_history_is_linearizable_across_leader_kills() {
    let mut c = Cluster::new(3);
    c.wait_leader(Duration::from_secs(10));
    let log = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(7);
    let handles: Vec<_> = (1..=CLIENTS)
        .map(|i| {
            let mut cl = c.client();
            cl.deadline = Duration::from_secs(3);
            cl.reply_timeout = Duration::from_secs(1);
            c.rt.spawn(client_loop(cl, i, until, log.clone()))
        })
        .collect();
    // Two rounds: kill -9 the leader, let the others elect, restart it.
    let mut kills = 0;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1200));
        let l = c.wait_leader(Duration::from_secs(5));
        c.kill(l);
        kills += 1;
        std::thread::sleep(Duration::from_millis(1200));
        c.start(l);
    }
    let mut ok = 0;
    let mut unknown = 0;
    for h in handles {
        let (o, u) = c.rt.block_on(h).unwrap();
        ok += o;
        unknown += u;
    }
    // Final reads, after everything: acknowledged writes must show.
    let mut cl = c.client();
    for k in 0..KEYS {
        let t = 999_999;
        log.lock().unwrap().push(Ev::Invoke(t, k, RegisterOp::Read));
        let v = c.rt.block_on(cl.read(&key(k))).unwrap();
        log.lock()
            .unwrap()
            .push(Ev::Return(t, k, RegisterRet::ReadOk(parse(v))));
    }
    eprintln!("{ok} operations acknowledged, {unknown} with unknown outcome, {kills} leader kills");
    assert!(
        ok >= 100,
        "too few operations to mean anything: {ok}\n{}",
        c.logs()
    );

    let events = log.lock().unwrap().clone();
    // stateright's search recurses once per operation of a key's history:
    // a long history needs more than a test thread's stack.
    let writes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut writes = 0;
            for k in 0..KEYS {
                let mut t = LinearizabilityTester::new(Register(0u64));
                for e in &events {
                    match e {
                        Ev::Invoke(th, kk, op) if *kk == k => {
                            if matches!(op, RegisterOp::Write(_)) {
                                writes += 1;
                            }
                            t.on_invoke(*th, op.clone()).unwrap();
                        }
                        Ev::Return(th, kk, r) if *kk == k => {
                            t.on_return(*th, r.clone()).unwrap();
                        }
                        _ => {}
                    }
                }
                assert!(
                    t.is_consistent(),
                    "history of {} is not linearizable",
                    key(k)
                );
            }
            writes
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(writes > 20, "too few writes: {writes}");
}

/// The way histories are fed to the checker can catch a lost write.
#[test]
fn checker_rejects_a_lost_write() {
    let mut t = LinearizabilityTester::new(Register(0u64));
    t.on_invoke(1, RegisterOp::Write(7)).unwrap();
    t.on_return(1, RegisterRet::WriteOk).unwrap();
    t.on_invoke(2, RegisterOp::Read).unwrap();
    t.on_return(2, RegisterRet::ReadOk(0)).unwrap();
    assert!(!t.is_consistent());
    // An operation left in flight may or may not have happened.
    let mut t = LinearizabilityTester::new(Register(0u64));
    t.on_invoke(1, RegisterOp::Write(7)).unwrap();
    t.on_invoke(2, RegisterOp::Read).unwrap();
    t.on_return(2, RegisterRet::ReadOk(7)).unwrap();
    t.on_invoke(3, RegisterOp::Read).unwrap();
    t.on_return(3, RegisterRet::ReadOk(7)).unwrap();
    assert!(t.is_consistent());
}
