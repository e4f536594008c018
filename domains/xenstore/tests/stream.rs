//! `StreamStore` against the daemon: dom0 over the socket, and streams the
//! daemon adopted for other domains, whose permissions apply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use windsor_xenstore::client::{Access, ClientError, Perm, TxId, XenStore};
use windsor_xenstore::daemon::{Config, Daemon};
use windsor_xenstore::stream::StreamStore;
use xen::{DomId, Errno};

struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: std::path::PathBuf,
    adopter: windsor_xenstore::daemon::Adopter,
    dir: std::path::PathBuf,
}

impl Running {
    fn start(name: &str) -> Running {
        let dir = std::env::temp_dir().join(format!("xs-stream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("socket");
        let mut d = Daemon::bind(Config {
            socket: socket.clone(),
            data_dir: dir.join("data"),
            snapshot_every: 1000,
            commit_threads: 1,
        })
        .unwrap();
        let adopter = d.adopter();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = Some(std::thread::spawn(move || d.run(&s).unwrap()));
        Running {
            stop,
            thread,
            socket,
            adopter,
            dir,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const NONE: TxId = TxId::NONE;

#[test]
fn dom0_over_the_socket_reads_writes_watches_and_commits() {
    let d = Running::start("dom0");
    let xs = StreamStore::connect(&d.socket).unwrap();
    xs.write(NONE, "/a/b", b"hello").unwrap();
    assert_eq!(xs.read(NONE, "/a/b").unwrap(), b"hello");
    assert_eq!(xs.directory(NONE, "/a").unwrap(), vec!["b".to_string()]);
    assert_eq!(
        xs.read(NONE, "/a/missing").unwrap_err(),
        ClientError::Store(Errno::ENOENT)
    );
    xs.watch("/a", "tok").unwrap();
    let first = xs.next_event(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((first.path.as_str(), first.token.as_str()), ("/a", "tok"));
    let other = xs.clone();
    std::thread::spawn(move || other.write(NONE, "/a/c", b"x").unwrap())
        .join()
        .unwrap();
    let ev = xs.next_event(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ev.path, "/a/c");
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/a/t", b"in tx").unwrap();
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(xs.read(NONE, "/a/t").unwrap(), b"in tx");
    assert_eq!(
        xs.next_event(Some(Duration::from_millis(10)))
            .map(|e| e.path),
        Ok("/a/t".into())
    );
}

#[test]
fn adopted_streams_act_for_their_domain() {
    let d = Running::start("adopt");
    let dom0 = StreamStore::connect(&d.socket).unwrap();
    dom0.write(NONE, "/secret", b"dom0 only").unwrap();
    dom0.write(NONE, "/local/domain/7/name", b"guest").unwrap();
    dom0.set_perms(
        NONE,
        "/local/domain/7",
        &[Perm {
            dom: DomId(7),
            access: Access::None,
        }],
    )
    .unwrap();
    let guest = StreamStore::from_stream(d.adopter.connect(DomId(7)).unwrap()).unwrap();
    assert_eq!(
        guest.read(NONE, "/secret").unwrap_err(),
        ClientError::Store(Errno::EACCES)
    );
    guest.write(NONE, "/local/domain/7/state", b"up").unwrap();
    assert_eq!(guest.read(NONE, "state").unwrap(), b"up", "relative path");
    assert_eq!(guest.domain_path(DomId(7)).unwrap(), "/local/domain/7");
    assert_eq!(
        dom0.read(NONE, "/local/domain/7/state").unwrap(),
        b"up",
        "one store for everyone"
    );
    drop(d);
    assert_eq!(
        guest.read(NONE, "state").unwrap_err(),
        ClientError::Disconnected,
        "a stopped daemon is seen as a lost connection"
    );
}
