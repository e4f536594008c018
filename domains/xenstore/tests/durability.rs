//! Issue 15, durability classes: a write under `/pool` is synced before its
//! reply; any other write is in the log before its reply but costs no
//! sync of its own. The syncs are counted through the persistence seam
//! ([`windsor_xenstore::persist::SyncProbe`]). That logged writes survive
//! `kill -9` of the daemon is `tests/crash.rs` (its writes are not under
//! `/pool`, so none of them is synced).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::TempDir;
use windsor_xenstore::client::{TxId, XenStore};
use windsor_xenstore::daemon::{Config, Daemon};
use windsor_xenstore::stream::StreamStore;
use xen::DomId;

const T: TxId = TxId::NONE;

#[test]
fn pool_writes_are_synced_before_the_reply_and_others_are_not_synced() {
    let dir = TempDir::new("durability");
    let mut d = Daemon::bind(Config {
        socket: dir.0.join("socket"),
        data_dir: dir.0.join("data"),
        snapshot_every: 1_000_000,
        commit_threads: 1,
    })
    .expect("daemon binds");
    let probe = d.sync_probe();
    let adopter = d.adopter();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || d.run(&flag).expect("daemon runs"));
    let xs = StreamStore::from_stream(adopter.connect(DomId::DOM0).expect("connect"))
        .expect("dom0 store");

    // 300 writes and removals outside /pool: no sync at all.
    let before = probe.syncs();
    for i in 0..100 {
        xs.write(T, &format!("/local/domain/0/k{i}"), b"v")
            .expect("write");
        xs.write(T, &format!("/tool/t{i}"), b"v").expect("write");
        xs.rm(T, &format!("/tool/t{i}")).expect("rm");
    }
    assert_eq!(probe.syncs(), before, "a logged write was synced");

    // Each /pool write: its sync is done when its reply arrives.
    for i in 0..20 {
        let n = probe.syncs();
        xs.write(T, &format!("/pool/VM/v{i}/name_label"), b"vm")
            .expect("pool write");
        assert!(
            probe.syncs() > n,
            "the reply of /pool write {i} came before its sync"
        );
    }
    // So is a transaction touching /pool, and an rm under it.
    let n = probe.syncs();
    let tx = xs.transaction_start().expect("start");
    xs.write(tx, "/local/domain/0/in-tx", b"1").expect("write");
    xs.write(tx, "/pool/VM/v0/power_state", b"Running")
        .expect("write");
    xs.transaction_end(tx, true).expect("commit");
    assert!(probe.syncs() > n, "a /pool transaction was not synced");
    let n = probe.syncs();
    xs.rm(T, "/pool/VM/v1").expect("rm");
    assert!(probe.syncs() > n, "an rm under /pool was not synced");
    // A transaction outside /pool is not.
    let n = probe.syncs();
    let tx = xs.transaction_start().expect("start");
    xs.write(tx, "/local/domain/0/tx2", b"1").expect("write");
    xs.transaction_end(tx, true).expect("commit");
    assert_eq!(probe.syncs(), n);

    stop.store(true, Ordering::Relaxed);
    t.join().expect("daemon thread");
}
