//! One end of a vchan against a peer that writes anything into the shared
//! page: indices, live and notify flags, ring bytes, interleaved with our
//! own reads and writes. Nothing may panic; a step never moves more bytes
//! than asked or than the ring holds; the space and data counts it reports
//! never exceed the ring's size.
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use vchan::ring::{Endpoint, Flag, Idx, Page, Role};
use vchan::sync::{RingBuf, RingBufMut};

#[derive(Default)]
struct HeapPage {
    idx: [AtomicU32; 4],
    flags: [AtomicU8; 4],
}

impl Page for HeapPage {
    type A32 = AtomicU32;
    type A8 = AtomicU8;
    fn idx(&self, i: Idx) -> &AtomicU32 {
        &self.idx[i as usize]
    }
    fn flag(&self, f: Flag) -> &AtomicU8 {
        &self.flags[f as usize]
    }
}

struct HeapBuf(Vec<AtomicU8>);

impl RingBuf for HeapBuf {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        let n = dst.len();
        for (d, s) in dst.iter_mut().zip(&self.0[off..off + n]) {
            *d = s.load(Relaxed);
        }
    }
}

impl RingBufMut for HeapBuf {
    fn write(&self, off: usize, src: &[u8]) {
        for (s, d) in src.iter().zip(&self.0[off..off + src.len()]) {
            d.store(*s, Relaxed);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut it = data.iter().copied();
    let Some(first) = it.next() else { return };
    // Orders of the rings as a peer may advertise them (10..=13: 1 KiB
    // in the page up to 8 KiB in granted pages; the layout bounds them).
    let role = if first & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let rx_order = 10 + (first >> 1) % 4;
    let tx_order = 10 + (first >> 3) % 4;
    let page = HeapPage::default();
    let mut ep = Endpoint::new(role, rx_order, tx_order, &page);
    let rx = HeapBuf((0..ep.rx_size()).map(|_| AtomicU8::new(0)).collect());
    let tx = HeapBuf((0..ep.tx_size()).map(|_| AtomicU8::new(0)).collect());
    let mut buf = vec![0u8; 16 << 10];
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        match op % 8 {
            // The peer writes an index (four bytes of the input).
            0 => {
                let mut v = [0u8; 4];
                for b in &mut v {
                    *b = it.next().unwrap_or(0);
                }
                // `HeapPage` keeps the fields in `Idx`/`Flag` order.
                page.idx[usize::from(arg % 4)].store(u32::from_le_bytes(v), Relaxed);
            }
            // The peer writes a flag.
            1 => {
                let v = it.next().unwrap_or(0);
                page.flags[usize::from(arg % 4)].store(v, Relaxed);
            }
            // The peer scribbles on the ring bytes.
            2 => {
                let v = it.next().unwrap_or(0);
                let r = if arg & 1 == 0 { &rx } else { &tx };
                let off = usize::from(arg) * 31 % r.size();
                r.write(off, &[v]);
            }
            3 => {
                if let Ok(n) = ep.data_ready(&page) {
                    assert!(n <= ep.rx_size(), "{n} ready in a ring of {}", ep.rx_size());
                }
            }
            4 => {
                if let Ok(n) = ep.buffer_space(&page) {
                    assert!(n <= ep.tx_size(), "{n} free in a ring of {}", ep.tx_size());
                }
            }
            5 => {
                let want = usize::from(arg) * 64 + 1;
                let min = usize::from(it.next().unwrap_or(1)).max(1);
                if let Ok(Ok((n, _))) = ep.try_read(&page, &rx, &mut buf[..want], min, arg & 1 == 1)
                {
                    assert!(n <= want && n as u32 <= ep.rx_size());
                }
            }
            6 => {
                let want = usize::from(arg) * 64 + 1;
                let min = usize::from(it.next().unwrap_or(1)).max(1);
                if let Ok(Ok((n, _))) = ep.try_write(&page, &tx, &buf[..want], min, arg & 1 == 1) {
                    assert!(n <= want && n as u32 <= ep.tx_size());
                }
            }
            _ => {
                let _ = ep.peer_state(&page);
                ep.request_write_notify(&page);
                let _ = ep.arm_data_ready(&page);
                let _ = ep.arm_buffer_space(&page);
            }
        }
    }
});
