//! Three members in one process through the library entry
//! ([`PoolNode::start`]): the applied-entry stream fires on every member
//! (what each host's watches on `/pool` hang on), and a transaction whose
//! read set changed fails with `EAGAIN` on the replicated path.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use windsor_xenstore_replication::client::PoolClient;
use windsor_xenstore_replication::node::{NodeConfig, PoolNode};
use windsor_xenstore_replication::sm::{Command, Op, PoolError};
use windsor_xenstore_replication::tls::{self, Tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_on_every_member_and_transactions_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    tls::create_ca(&ca).unwrap();
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", common::free_port("127.0.0.1"))))
        .collect();
    let mut streams = Vec::new();
    let mut nodes = Vec::new();
    for (&id, addr) in &addrs {
        let t = dir.path().join(format!("tls{id}"));
        tls::issue_member(&ca, id, &t).unwrap();
        let cfg = NodeConfig {
            id,
            listen: addr.clone(),
            data_dir: dir.path().join(format!("data{id}")),
            tls_dir: t,
            bootstrap: (id == 1).then(|| addrs.clone()),
        };
        let (node, listener) = PoolNode::start(&cfg).await.unwrap();
        streams.push(node.sm.subscribe());
        tokio::spawn(node.clone().serve(listener));
        nodes.push(node);
    }
    tls::issue_member(&ca, common::CLIENT_ID, &dir.path().join("c")).unwrap();
    let mut cl = PoolClient::new(
        Tls::load(&dir.path().join("c")).unwrap(),
        addrs.values().cloned().collect(),
    );
    cl.deadline = Duration::from_secs(10);

    let (o, idx) = cl
        .submit(Command::Op(Op::Write {
            path: "/pool/vm/v1/state".into(),
            value: b"running".to_vec(),
        }))
        .await
        .unwrap();
    assert_eq!(o.result, Ok(()));
    for (i, s) in streams.iter_mut().enumerate() {
        let ev = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ev = s.recv().await.unwrap();
                if ev.index == idx {
                    return ev;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("member {} saw no event", i + 1));
        assert_eq!(
            ev.changed.last().map(String::as_str),
            Some("/pool/vm/v1/state")
        );
        // Each member's tree has it.
        let v = nodes[i]
            .sm
            .read(|d| d.tree.get("/pool/vm/v1/state").cloned());
        assert_eq!(v.unwrap().value, b"running");
    }

    // A transaction read /pool/vm/v1/state at its revision; another write
    // commits first; the transaction's entry fails with EAGAIN everywhere
    // and changes nothing.
    let (_, rev) = cl.read("/pool/vm/v1/state").await.unwrap().unwrap();
    cl.submit(Command::Op(Op::Write {
        path: "/pool/vm/v1/state".into(),
        value: b"paused".to_vec(),
    }))
    .await
    .unwrap();
    let txn = |rev| Command::Txn {
        reads: vec![("/pool/vm/v1/state".into(), Some(rev))],
        ops: vec![Op::Write {
            path: "/pool/vm/v1/state".into(),
            value: b"halted".to_vec(),
        }],
    };
    let (o, _) = cl.submit(txn(rev)).await.unwrap();
    assert_eq!(o.result, Err(PoolError::Again));
    assert_eq!(
        cl.read("/pool/vm/v1/state").await.unwrap().unwrap().0,
        b"paused"
    );
    // Retried with a fresh read set, it commits.
    let (_, rev) = cl.read("/pool/vm/v1/state").await.unwrap().unwrap();
    let (o, _) = cl.submit(txn(rev)).await.unwrap();
    assert_eq!(o.result, Ok(()));
    assert_eq!(
        cl.read("/pool/vm/v1/state").await.unwrap().unwrap().0,
        b"halted"
    );
    for n in &nodes {
        n.raft.shutdown().await.unwrap();
    }
}
