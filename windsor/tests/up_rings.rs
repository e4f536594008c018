//! `windsor up` serves its guests over xenbus rings: the xenstore daemon
//! reports each guest's connection as a ring (not a socket), a guest's
//! write acknowledged over its ring survives `kill -9` of the whole host,
//! destroying a guest fires `@releaseDomain` and drops its ring, and a
//! clean stop leaves no introduced domain behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use windsor_xenstore::client::{Call, TxId, XenStore};
use windsor_xenstore::stream::StreamStore;
use windsor_xenstore::wire::XsOp;

const T: TxId = TxId::NONE;
const LONG: Duration = Duration::from_secs(20);

/// `XS_CONTROL connections`: `(domid, kind)` for every connection.
fn connections(xs: &StreamStore) -> Vec<(u16, String)> {
    windsor_xenstore::client::ops::connections(xs).expect("XS_CONTROL connections")
}

/// Reads `path` from the xenstore data of `windsor up`'s data directory,
/// served by the daemon alone (no toolstack, no guests).
fn store_alone(dir: &Path, path: &str) -> Result<Vec<u8>, windsor_xenstore::client::ClientError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use windsor_xenstore::daemon::{Config, Daemon};
    let socket = dir.join("alone.sock");
    let mut daemon = Daemon::bind(Config {
        socket: socket.clone(),
        data_dir: dir.join("xenstore"),
        snapshot_every: 200_000,
        commit_threads: windsor_xenstore::persist::DEFAULT_WRITERS,
    })
    .expect("the xenstore daemon opens the host's data");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || daemon.run(&flag).expect("daemon run"));
    let value = StreamStore::connect(&socket)
        .expect("daemon socket")
        .read(TxId::NONE, path);
    stop.store(true, Ordering::Relaxed);
    t.join().expect("daemon thread");
    value
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_vm(dir: &Path, name: &str) -> u16 {
    windsor(dir, &["vm", "create", name]);
    windsor(dir, &["vm", "start", name]);
    domid(dir, name).expect("a running VM has a domain")
}

#[test]
fn up_guests_use_rings_their_acked_writes_survive_kill_9_and_destroy_releases() {
    let dir = std::env::temp_dir().join(format!("windsor-up-rings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");
    let up = Up::start(&dir);
    let xs = StreamStore::connect(&socket).expect("xenstore socket");
    xs.watch("@releaseDomain", "rel").expect("watch");
    assert_eq!(
        xs.next_event(Some(LONG)).expect("initial event").token,
        "rel"
    );

    let (d1, d2) = (start_vm(&dir, "ring1"), start_vm(&dir, "ring2"));
    // The guest writes data/booted, and data/state only once the first
    // write was acknowledged over its ring.
    for d in [d1, d2] {
        wait_until("the guest to boot", || {
            xs.read(T, &format!("/local/domain/{d}/data/state"))
                .is_ok_and(|v| v == b"running")
        });
    }
    let conns = connections(&xs);
    for d in [d1, d2] {
        assert!(conns.contains(&(d, "ring".into())), "{conns:?}");
        assert!(!conns.contains(&(d, "socket".into())), "{conns:?}");
    }
    assert!(
        conns.contains(&(0, "socket".into())),
        "host clients keep the socket: {conns:?}"
    );

    // Destroying a guest fires @releaseDomain and takes its ring away.
    windsor(&dir, &["vm", "shutdown", "--force", "ring2"]);
    let e = xs.next_event(Some(LONG)).expect("@releaseDomain");
    assert_eq!(
        (e.path.as_str(), e.token.as_str()),
        ("@releaseDomain", "rel")
    );
    wait_until("the ring of the destroyed guest to go", || {
        !connections(&xs).iter().any(|(d, _)| *d == d2)
    });
    assert!(connections(&xs).contains(&(d1, "ring".into())));

    // kill -9 of the whole host: what ring1 saw acknowledged is kept. Read
    // it with the xenstore daemon alone on the host's data: a restarted
    // `windsor up` rightly removes the nodes of the guest that died with
    // the host.
    drop(xs);
    up.kill9();
    assert_eq!(
        store_alone(&dir, &format!("/local/domain/{d1}/data/booted"))
            .expect("the acknowledged write survived"),
        b"1"
    );
    let up = Up::start(&dir);
    let xs = StreamStore::connect(&socket).expect("xenstore socket");
    assert!(
        xs.read(T, &format!("/local/domain/{d1}")).is_err(),
        "the restarted host keeps no nodes of dom{d1}, which died with the old one"
    );

    // A clean stop releases the guests it destroys: after a restart, the
    // store holds no introduced domain that no longer exists.
    let d3 = start_vm(&dir, "ring3");
    wait_until("ring3 to boot", || {
        xs.read(T, &format!("/local/domain/{d3}/data/state"))
            .is_ok_and(|v| v == b"running")
    });
    drop(xs);
    up.interrupt();
    let up = Up::start(&dir);
    let xs = StreamStore::connect(&socket).expect("xenstore socket");
    let introduced = xs
        .call(XsOp::IsDomainIntroduced, T, format!("{d3}\0").as_bytes())
        .expect("XS_IS_DOMAIN_INTRODUCED");
    assert_eq!(introduced, b"F\0", "domain {d3} was released at stop");
    drop(xs);
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
