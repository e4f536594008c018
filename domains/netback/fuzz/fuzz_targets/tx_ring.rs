//! A hostile frontend: the input is the tx ring's slots (12 bytes each,
//! up to 256), then `req_prod` (4 bytes), then rx ring slots. The VIF polls
//! its tx ring, forwards what it got into its own rx ring, and must never
//! panic nor hold more than its bounds.
#![no_main]

use core::sync::atomic::Ordering;
use core::time::Duration;

use libfuzzer_sys::fuzz_target;
use windsor_netback::ring::RingMem;
use windsor_netback::testing::TestFront;
use windsor_netback::vif::{Vif, VifConfig, RXQ_MAX};
use xen::abi::ring::{slot_offset, SRING_REQ_PROD_OFFSET};
use xen::DomId;

fuzz_target!(|data: &[u8]| {
    let f = TestFront::new();
    let (tx, rest) = data.split_at(data.len().min(256 * 12));
    for (i, s) in tx.chunks(12).enumerate() {
        f.tx.write(slot_offset(i as u32, 256, 12), s);
    }
    let prod = rest.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).unwrap_or(0);
    f.tx.store_u32(SRING_REQ_PROD_OFFSET, prod, Ordering::Relaxed);
    let rx = rest.get(4..).unwrap_or(&[]);
    for (i, s) in rx.chunks(8).take(256).enumerate() {
        f.rx.write(slot_offset(i as u32, 256, 8), s);
    }
    f.rx.store_u32(SRING_REQ_PROD_OFFSET, (rx.len() / 8) as u32, Ordering::Relaxed);
    let mut v = Vif::new(
        VifConfig { frontend: DomId(1), mtu: 1500, rate: None, rx_sg: true, rx_gso_tcpv4: true, rx_csum_partial: true },
        Duration::ZERO,
    );
    let mut frames = Vec::new();
    for _ in 0..8 {
        if v.poll_tx(Duration::ZERO, &f.tx, &f.grants, usize::MAX, &mut |fr| frames.push(fr)).is_err() {
            break;
        }
    }
    for fr in frames {
        assert!(fr.data.len() <= 65535);
        v.enqueue(fr);
    }
    let _ = v.flush_rx(&f.rx, &f.grants);
    assert!(v.queued() <= RXQ_MAX);
});
