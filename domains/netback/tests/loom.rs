//! loom model of the backend ring's notification protocol: a frontend
//! producing requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`) and netback
//! consuming them with [`BackRing::final_check`]
//! (`RING_FINAL_CHECK_FOR_REQUESTS`) before it sleeps on its event
//! channel. A lost wake-up leaves the backend blocked with requests
//! outstanding, which loom reports as a deadlock; a request slot read
//! without a happens-before from its write is a causality violation.
//!
//! `planted_relaxed_req_prod_is_caught` weakens the frontend's publication
//! of `req_prod` to Relaxed and must fail, so every run shows that loom
//! sees this class of bug.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p windsor-netback --release --test loom
//! ```
#![cfg(loom)]

use core::sync::atomic::Ordering;

use loom::cell::Cell;
use loom::sync::atomic::{fence, AtomicU32};
use loom::sync::{Arc, Condvar, Mutex};

use windsor_netback::ring::{BackRing, RingMem};
use xen::abi::netif::NetifTxRequest;
use xen::abi::ring::{slot_offset, SRING_REQ_EVENT_OFFSET, SRING_REQ_PROD_OFFSET};
use zerocopy::IntoBytes;

const SIZE: u32 = 4;
const ENTRY: usize = 12;

/// A ring page: header words as loom atomics, slot bytes as loom cells.
struct LoomRing {
    header: [AtomicU32; 4],
    slots: Vec<Cell<u8>>,
}

// SAFETY: loom runs one model thread at a time and checks every access to
// the cells for a happens-before with the previous conflicting access; an
// unsynchronised access fails the model instead of racing.
unsafe impl Sync for LoomRing {}

impl LoomRing {
    fn new() -> Self {
        LoomRing {
            header: [
                AtomicU32::new(0),
                AtomicU32::new(1),
                AtomicU32::new(0),
                AtomicU32::new(1),
            ],
            slots: (0..SIZE as usize * ENTRY).map(|_| Cell::new(0)).collect(),
        }
    }
}

impl RingMem for LoomRing {
    fn load_u32(&self, off: usize, order: Ordering) -> u32 {
        self.header[off / 4].load(order)
    }
    fn store_u32(&self, off: usize, v: u32, order: Ordering) {
        self.header[off / 4].store(v, order)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.slots[off - 64 + i].get();
        }
    }
    fn write(&self, off: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            self.slots[off - 64 + i].set(*b);
        }
    }
    fn fence(&self) {
        fence(Ordering::SeqCst)
    }
}

/// An event channel: a pending bit and a wait.
#[derive(Default)]
struct Port {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Port {
    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }
    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while !*p {
            p = self.cv.wait(p).unwrap();
        }
        *p = false;
    }
}

#[test]
fn no_request_is_slept_through() {
    model(Ordering::Release);
}

/// The model must catch a frontend that publishes `req_prod` before its
/// slot writes are visible (Relaxed): the backend's copy of the slot races.
/// Loom reports that race on the slot's cell as a read concurrent with a
/// write (in either order, both messages start the same); any other panic
/// (a wrong request, a deadlock) fails the test.
#[test]
#[should_panic(expected = "Causality violation: Concurrent read and write accesses")]
fn planted_relaxed_req_prod_is_caught() {
    model(Ordering::Relaxed);
}

fn model(publish: Ordering) {
    loom::model(move || {
        const N: u32 = 2;
        let ring = Arc::new(LoomRing::new());
        let port = Arc::new(Port::default());
        let (r2, p2) = (ring.clone(), port.clone());
        let front = loom::thread::spawn(move || {
            for k in 0..N {
                let req = NetifTxRequest {
                    gref: 100 + k,
                    id: k as u16,
                    size: 60,
                    ..Default::default()
                };
                r2.write(slot_offset(k, SIZE, ENTRY), req.as_bytes());
                let old = r2.load_u32(SRING_REQ_PROD_OFFSET, Ordering::Relaxed);
                let new = k + 1;
                r2.store_u32(SRING_REQ_PROD_OFFSET, new, publish);
                r2.fence();
                let event = r2.load_u32(SRING_REQ_EVENT_OFFSET, Ordering::Relaxed);
                if new.wrapping_sub(event) < new.wrapping_sub(old) {
                    p2.notify();
                }
            }
        });
        let mut back = BackRing::new(SIZE, ENTRY);
        let mut seen = 0;
        while seen < N {
            let n = back.unconsumed(&*ring).unwrap();
            for i in 0..n {
                let r: NetifTxRequest = back.peek(&*ring, i);
                assert_eq!(r.gref, 100 + seen + i);
            }
            back.consume(n);
            seen += n;
            if seen < N && !back.final_check(&*ring).unwrap() {
                port.wait();
            }
        }
        front.join().unwrap();
    });
}
