//! The one-loop server (`poll`, what the Xen-mode blkback image runs) with
//! a RAM disk, against the Rust blkfront on the simulated hypervisor: data
//! survives the frontend going away and a new guest plugging the same
//! disk, flushes are counted, a hostile ring is disconnected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use windsor_blkback::poll::{Config, Event, Server};
use windsor_blkback::storage::ram::RamDisk;
use windsor_blkback::storage::Storage;
use windsor_blkback::xenbus::{plumb, Plumbing};
use windsor_blkfront::driver::{BlkFront, Geometry};
use windsor_xenstore::client::{MemStore, TxId, XenStore};
use xen::platform::{CreateConfig, EventChannel, Platform};
use xen::DomId;
use xen_sim::Hypervisor;

const MIB: u64 = 1 << 20;

fn cfg() -> CreateConfig {
    CreateConfig {
        max_mem_kib: 64 * 1024,
        ..CreateConfig::default()
    }
}

fn attach(xs: &MemStore, back: DomId, front: DomId, params: &str) -> String {
    plumb(
        xs,
        &Plumbing {
            backend: back,
            frontend: front,
            devid: 51712,
            params,
            writable: true,
        },
    )
    .unwrap()
    .0
}

#[test]
fn ram_disk_served_in_one_loop_keeps_data_across_frontends() {
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let back = hv.test_domain(&cfg()).unwrap();
    let bid = back.domid();
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let disk: Arc<dyn Storage> = Arc::new(RamDisk::new(8 * MIB).unwrap());
    let server = {
        let (back, bx, stop, events) =
            (back.clone(), xs.connect(bid), stop.clone(), events.clone());
        std::thread::spawn(move || {
            let mut s = Server::new(&back, bid, Config::default());
            bx.watch(s.root(), "vbds").unwrap();
            let mut open = |params: &str, _w: bool| -> Result<Arc<dyn Storage>, String> {
                if params == "ram0" {
                    Ok(disk.clone())
                } else {
                    Err(format!("no disk {params:?}"))
                }
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut changed = true;
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                while bx.next_event(Some(Duration::ZERO)).is_ok() {
                    changed = true;
                }
                let more = s.poll(&bx, changed, &mut open).unwrap();
                events.lock().unwrap().extend(s.take_events());
                changed = false;
                if !more {
                    // The in-memory store has no port: look at it, then
                    // sleep on the rings.
                    changed = bx.next_event(Some(Duration::from_millis(1))).is_ok();
                    let ports = s.ports();
                    if !changed && !ports.is_empty() {
                        back.wait(&ports, Some(Duration::from_millis(2))).unwrap();
                    }
                }
            }
        })
    };

    // First guest: writes a pattern (direct and indirect), flushes.
    let g1 = hv.test_domain(&cfg()).unwrap();
    let dir1 = attach(&xs, bid, g1.domid(), "ram0");
    let gx1 = xs.connect(g1.domid());
    let geo = Geometry {
        queue_depth: 4,
        pages_per_request: 32,
        ring_page_order: 1,
    };
    let mut f = BlkFront::connect(&g1, &gx1, 51712, geo).unwrap();
    assert_eq!(f.disk().sectors, 8 * MIB / 512);
    assert!(f.features().flush);
    let pattern: Vec<u8> = (0..32 * 4096u32).map(|i| (i * 13 % 251) as u8).collect();
    f.write(2048, &pattern).unwrap();
    f.write(0, &pattern[..4096]).unwrap();
    f.flush().unwrap();
    let mut back_bytes = vec![0u8; pattern.len()];
    f.read(2048, &mut back_bytes).unwrap();
    assert_eq!(back_bytes, pattern);
    // Out of range: refused, the device goes on.
    assert!(f.read(8 * MIB / 512 - 4, &mut [0u8; 4096]).is_err());
    f.read(0, &mut back_bytes[..4096]).unwrap();
    assert_eq!(back_bytes[..4096], pattern[..4096]);
    // The guest dies without closing (a `reboot -f`): the toolstack
    // removes its directories, the server lets the device go.
    drop(f);
    xs.rm(TxId::NONE, &dir1).unwrap();
    xs.rm(
        TxId::NONE,
        &format!("/local/domain/{}/device/vbd/51712", g1.domid().0),
    )
    .unwrap();
    let removed = wait_for(
        &events,
        |e| matches!(e, Event::Removed { dir, .. } if *dir == dir1),
    );
    let Event::Removed { counters, .. } = removed else {
        unreachable!()
    };
    assert_eq!(counters.flushes, 1, "{counters}");
    assert_eq!(counters.writes, 2, "{counters}");
    assert_eq!(counters.refused, 1, "{counters}");
    assert_eq!(counters.bytes_written, 33 * 4096, "{counters}");

    // A new guest plugs the same disk and reads the data back.
    let g2 = hv.test_domain(&cfg()).unwrap();
    attach(&xs, bid, g2.domid(), "ram0");
    let gx2 = xs.connect(g2.domid());
    let mut f = BlkFront::connect(&g2, &gx2, 51712, geo).unwrap();
    let mut again = vec![0u8; pattern.len()];
    f.read(2048, &mut again).unwrap();
    assert_eq!(again, pattern, "the RAM disk kept the first guest's data");
    // A hostile producer index: that ring is disconnected with an error.
    f.corrupt_req_prod(1000).unwrap();
    wait_for(
        &events,
        |e| matches!(e, Event::Disconnected { why, .. } if why.contains("hostile")),
    );
    let err = xs
        .read(
            TxId::NONE,
            &format!(
                "/local/domain/{}/backend/vbd/{}/51712/error",
                bid.0,
                g2.domid().0
            ),
        )
        .unwrap();
    assert!(!err.is_empty());

    // An unknown disk is refused with an error node, nothing else.
    let g3 = hv.test_domain(&cfg()).unwrap();
    let dir3 = attach(&xs, bid, g3.domid(), "nope");
    wait_for(
        &events,
        |e| matches!(e, Event::Refused { dir, .. } if *dir == dir3),
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

fn wait_for(events: &Mutex<Vec<Event>>, f: impl Fn(&Event) -> bool) -> Event {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = events.lock().unwrap().iter().find(|e| f(e)) {
            return e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "event not seen; events: {:?}",
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
