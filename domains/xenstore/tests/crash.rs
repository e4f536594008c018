//! Crash test: `kill -9` during concurrent writes, 100 times; every write
//! whose reply a client saw must be there after the restart. The writes
//! are outside `/pool`, so of class `Logged`: written to the log before
//! their replies, never synced on their own (`tests/durability.rs` counts
//! the syncs); the page cache keeps them when the daemon dies.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const CYCLES: usize = 100;
const WRITERS: usize = 4;

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let t0 = Instant::now();
    let dir = TempDir::new("crash");
    // (key, value) pairs whose WRITE was acknowledged.
    let mut acked_all: Vec<(String, String)> = Vec::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut seed = 0x2545_f491u32;
    for cycle in 0..CYCLES {
        // Small snapshot interval: kills also land during log rotation.
        let d = Daemon::start_with(&dir.0, &["--snapshot-every", "25"]);
        // Everything acknowledged before the last kill must be there.
        let mut check = Conn::open(&d.socket);
        for (k, v) in &pending {
            let r = check.read(k);
            assert!(
                r.ty == XS_READ && r.payload == v.as_bytes(),
                "cycle {cycle}: acknowledged write {k}={v} lost (got {r:?})"
            );
        }
        acked_all.append(&mut pending);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let socket = d.socket.clone();
                let stop = Arc::clone(&stop);
                let acked = Arc::clone(&acked);
                std::thread::spawn(move || {
                    let Ok(s) = std::os::unix::net::UnixStream::connect(&socket) else {
                        return;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut c = Conn::from_stream(s);
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("/crash/c{cycle}/w{w}/k{i}");
                        let val = format!("v{cycle}.{w}.{i}");
                        let mut p = key.clone().into_bytes();
                        p.push(0);
                        p.extend_from_slice(val.as_bytes());
                        if c.send_raw(&encode(XS_WRITE, i, 0, &p)).is_err() {
                            return;
                        }
                        match c.recv() {
                            Ok(m) if m.ty == XS_WRITE => {
                                acked.lock().expect("lock").push((key, val))
                            }
                            _ => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_millis(20 + u64::from(seed % 60)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer");
        }
        pending = std::mem::take(&mut *acked.lock().expect("lock"));
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "crash test too slow: {cycle} cycles in {:?}",
            t0.elapsed()
        );
    }
    let d = Daemon::start(&dir.0);
    let mut check = Conn::open(&d.socket);
    acked_all.append(&mut pending);
    for (k, v) in &acked_all {
        let r = check.read(k);
        assert!(
            r.ty == XS_READ && r.payload == v.as_bytes(),
            "lost {k}={v}: {r:?}"
        );
    }
    assert!(
        acked_all.len() > CYCLES,
        "too few writes acknowledged: {}",
        acked_all.len()
    );
    eprintln!(
        "{CYCLES} kill -9 cycles, {} acknowledged writes checked, {:?}",
        acked_all.len(),
        t0.elapsed()
    );
}
