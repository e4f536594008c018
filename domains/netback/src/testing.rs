//! A scripted frontend over private memory, for tests and fuzz targets
//! (feature `test-utils`): it writes tx requests and rx buffers into
//! [`LocalRing`]s and packet bytes into [`MemGrants`].

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use xen::abi::netif::{
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETIF_RX_ENTRY_SIZE,
    NETIF_TX_ENTRY_SIZE, NETTXF_MORE_DATA,
};
use xen::abi::ring::{slot_offset, SRING_REQ_PROD_OFFSET, SRING_RSP_PROD_OFFSET};
use zerocopy::{FromBytes, IntoBytes};

use crate::copy::MemGrants;
use crate::ring::{LocalRing, RingMem};

/// Grant refs `0..DATA_PAGES` hold tx data; `DATA_PAGES..2*DATA_PAGES`
/// are rx buffers.
pub const DATA_PAGES: usize = 64;

/// A frontend in private memory.
#[derive(Debug)]
pub struct TestFront {
    /// The tx ring page.
    pub tx: LocalRing,
    /// The rx ring page.
    pub rx: LocalRing,
    /// Grants.
    pub grants: MemGrants,
    tx_prod: u32,
    tx_rsp: u32,
    rx_prod: u32,
    rx_rsp: u32,
    next_page: usize,
}

impl Default for TestFront {
    fn default() -> Self {
        Self::new()
    }
}

impl TestFront {
    /// Fresh rings, no buffers posted.
    pub fn new() -> Self {
        TestFront {
            tx: LocalRing::new(),
            rx: LocalRing::new(),
            grants: MemGrants::new(2 * DATA_PAGES),
            tx_prod: 0,
            tx_rsp: 0,
            rx_prod: 0,
            rx_rsp: 0,
            next_page: 0,
        }
    }

    /// Writes raw tx requests and publishes them.
    pub fn push_raw(&mut self, reqs: &[NetifTxRequest]) {
        for r in reqs {
            self.tx.write(
                slot_offset(self.tx_prod, 256, NETIF_TX_ENTRY_SIZE),
                r.as_bytes(),
            );
            self.tx_prod = self.tx_prod.wrapping_add(1);
        }
        self.tx
            .store_u32(SRING_REQ_PROD_OFFSET, self.tx_prod, Ordering::Release);
    }

    /// Sets `req_prod` of the tx ring to anything.
    pub fn set_tx_prod(&mut self, v: u32) {
        self.tx
            .store_u32(SRING_REQ_PROD_OFFSET, v, Ordering::Release);
    }

    /// Sends `data` in slots of at most `slot` bytes (each in its own page).
    pub fn send(&mut self, data: &[u8], slot: usize) {
        let chunks: Vec<&[u8]> = data.chunks(slot.max(1)).collect();
        let mut reqs = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let page = self.next_page % DATA_PAGES;
            self.next_page += 1;
            self.grants.pages.borrow_mut()[page][..c.len()].copy_from_slice(c);
            reqs.push(NetifTxRequest {
                gref: page as u32,
                offset: 0,
                flags: if i + 1 < chunks.len() {
                    NETTXF_MORE_DATA
                } else {
                    0
                },
                id: (self.tx_prod as usize + i) as u16 & 255,
                size: if i == 0 {
                    data.len() as u16
                } else {
                    c.len() as u16
                },
            });
        }
        self.push_raw(&reqs);
    }

    /// Tx responses published since the last call.
    pub fn tx_responses(&mut self) -> Vec<NetifTxResponse> {
        let prod = self.tx.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Acquire);
        let mut out = Vec::new();
        while self.tx_rsp != prod {
            let mut b = [0u8; 4];
            self.tx
                .read(slot_offset(self.tx_rsp, 256, NETIF_TX_ENTRY_SIZE), &mut b);
            out.push(NetifTxResponse::read_from_bytes(&b).unwrap_or_default());
            self.tx_rsp = self.tx_rsp.wrapping_add(1);
        }
        out
    }

    /// Posts `n` rx buffers.
    pub fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let r = NetifRxRequest {
                id: (self.rx_prod & 255) as u16,
                pad: 0,
                gref: (DATA_PAGES + (self.rx_prod as usize % DATA_PAGES)) as u32,
            };
            self.rx.write(
                slot_offset(self.rx_prod, 256, NETIF_RX_ENTRY_SIZE),
                r.as_bytes(),
            );
            self.rx_prod = self.rx_prod.wrapping_add(1);
        }
        self.rx
            .store_u32(SRING_REQ_PROD_OFFSET, self.rx_prod, Ordering::Release);
    }

    /// Packets received since the last call (their slots joined).
    pub fn received(&mut self) -> Vec<Vec<u8>> {
        let prod = self.rx.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Acquire);
        let mut out = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        while self.rx_rsp != prod {
            let mut b = [0u8; 8];
            self.rx
                .read(slot_offset(self.rx_rsp, 256, NETIF_RX_ENTRY_SIZE), &mut b);
            let r = NetifRxResponse::read_from_bytes(&b).unwrap_or_default();
            let gref = DATA_PAGES + (self.rx_rsp as usize % DATA_PAGES);
            self.rx_rsp = self.rx_rsp.wrapping_add(1);
            if r.status > 0 {
                let len = r.status as usize;
                cur.extend_from_slice(&self.grants.pages.borrow()[gref][..len]);
            }
            if r.flags & xen::abi::netif::NETRXF_MORE_DATA == 0 {
                out.push(core::mem::take(&mut cur));
            }
        }
        out
    }
}
