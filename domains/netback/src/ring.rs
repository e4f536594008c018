//! The backend end of a shared I/O ring (`io/ring.h`, Xen 4.17), for the
//! netif tx and rx rings.
//!
//! The frontend owns `req_prod` and `rsp_event`; we own `rsp_prod` and
//! `req_event`. Our own indices (`req_cons`, `rsp_prod_pvt`) live in
//! private memory ([`BackRing`]) and are only ever *stored* to the page: a
//! frontend scribbling on them confuses only itself. The frontend's
//! `req_prod` is read once per check with **Acquire** (its slot writes
//! happen before) and validated: it may not claim more than a ring's worth
//! of requests beyond the responses we produced (`RING_REQUEST_PROD_OVERFLOW`
//! in Linux). Slots are copied into private memory before they are parsed.
//!
//! Responses are published with **Release** and then a full fence before
//! `rsp_event` is read (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`); the
//! "final check" re-arms `req_event` and fences before re-reading `req_prod`
//! (`RING_FINAL_CHECK_FOR_REQUESTS`), so no request is left unseen.
//!
//! The memory is reached through [`RingMem`], implemented for
//! [`xen::SharedMem`] (a mapped ring page) and for [`LocalRing`] (private
//! memory, for tests and fuzzing).

use core::cell::RefCell;
use core::sync::atomic::{fence, Ordering};

use alloc::vec;
use alloc::vec::Vec;
use xen::abi::ring::{
    slot_offset, RingIdx, SRING_REQ_EVENT_OFFSET, SRING_REQ_PROD_OFFSET, SRING_RSP_EVENT_OFFSET,
    SRING_RSP_PROD_OFFSET,
};
use zerocopy::{FromBytes, IntoBytes};

/// One page of ring memory, shared with (and written by) the frontend.
pub trait RingMem {
    /// Loads the `u32` at `off` (4-aligned, inside the page) with `order`.
    fn load_u32(&self, off: usize, order: Ordering) -> u32;
    /// Stores `v` at `off` with `order`.
    fn store_u32(&self, off: usize, v: u32, order: Ordering);
    /// Copies bytes at `off` into `dst`.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` to `off`.
    fn write(&self, off: usize, src: &[u8]);
    /// A full memory fence (`xen_mb()`); overridden by the loom models.
    fn fence(&self) {
        fence(Ordering::SeqCst)
    }
}

impl RingMem for xen::SharedMem<'_> {
    fn load_u32(&self, off: usize, order: Ordering) -> u32 {
        self.atomic_u32(off).load(order)
    }
    fn store_u32(&self, off: usize, v: u32, order: Ordering) {
        self.atomic_u32(off).store(v, order)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.read_bytes(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.write_bytes(off, src)
    }
}

/// A ring page in private memory: the frontend of tests and fuzz targets.
#[derive(Debug)]
pub struct LocalRing(RefCell<Vec<u8>>);

impl Default for LocalRing {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalRing {
    /// A zeroed page with the header `SHARED_RING_INIT` leaves.
    pub fn new() -> Self {
        let r = LocalRing(RefCell::new(vec![0; xen::PAGE_SIZE]));
        r.store_u32(SRING_REQ_EVENT_OFFSET, 1, Ordering::Relaxed);
        r.store_u32(SRING_RSP_EVENT_OFFSET, 1, Ordering::Relaxed);
        r
    }
    /// The whole page.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.borrow().clone()
    }
}

impl RingMem for LocalRing {
    fn load_u32(&self, off: usize, _: Ordering) -> u32 {
        let b = self.0.borrow();
        u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }
    fn store_u32(&self, off: usize, v: u32, _: Ordering) {
        self.0.borrow_mut()[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self.0.borrow()[off..off + dst.len()]);
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.0.borrow_mut()[off..off + src.len()].copy_from_slice(src);
    }
}

/// The frontend broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `req_prod` claims more outstanding requests than the ring holds
    /// (index games): `req_prod - rsp_prod_pvt > size`.
    #[error(
        "frontend req_prod {req_prod:#x} overflows the ring (rsp_prod {rsp_prod:#x}, {size} slots)"
    )]
    ReqProdOverflow {
        /// What the frontend published.
        req_prod: RingIdx,
        /// Responses we produced.
        rsp_prod: RingIdx,
        /// Slots in the ring.
        size: u32,
    },
}

/// Our private state of one backend ring with entries of `entry` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackRing {
    size: u32,
    entry: usize,
    req_cons: RingIdx,
    rsp_prod_pvt: RingIdx,
}

impl BackRing {
    /// A ring of `size` entries (a power of two) of `entry` bytes, at the
    /// start (`BACK_RING_INIT`: both indices 0).
    pub const fn new(size: u32, entry: usize) -> Self {
        BackRing {
            size,
            entry,
            req_cons: 0,
            rsp_prod_pvt: 0,
        }
    }

    /// Number of slots.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Next request index to consume.
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Requests published and not yet consumed, after validating
    /// `req_prod` (read once, Acquire).
    pub fn unconsumed<M: RingMem + ?Sized>(&self, mem: &M) -> Result<u32, RingError> {
        let req_prod = mem.load_u32(SRING_REQ_PROD_OFFSET, Ordering::Acquire);
        // Outstanding = published but not answered; never more than a ring.
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > self.size {
            return Err(RingError::ReqProdOverflow {
                req_prod,
                rsp_prod: self.rsp_prod_pvt,
                size: self.size,
            });
        }
        // rsp_prod_pvt <= req_cons <= req_prod (mod 2^32) holds by
        // construction, so this cannot wrap.
        Ok(req_prod.wrapping_sub(self.req_cons))
    }

    /// Copies the request at `req_cons + ahead` into private memory. The
    /// caller checked `ahead < unconsumed()`.
    pub fn peek<T: FromBytes + IntoBytes, M: RingMem + ?Sized>(&self, mem: &M, ahead: u32) -> T {
        let mut v = T::new_zeroed();
        let off = slot_offset(self.req_cons.wrapping_add(ahead), self.size, self.entry);
        mem.read(off, &mut v.as_mut_bytes()[..core::mem::size_of::<T>()]);
        v
    }

    /// Consumes `n` requests.
    pub fn consume(&mut self, n: u32) {
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Responses that can still be produced (requests consumed and not yet
    /// answered).
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Writes a response in the next slot (not yet visible to the
    /// frontend). The caller consumed a request for it.
    pub fn respond<T: IntoBytes + zerocopy::Immutable, M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        rsp: &T,
    ) {
        debug_assert!(self.unanswered() > 0);
        let off = slot_offset(self.rsp_prod_pvt, self.size, self.entry);
        mem.write(off, rsp.as_bytes());
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// Publishes the responses written so far; `true` if the frontend asked
    /// to be notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses<M: RingMem + ?Sized>(&self, mem: &M) -> bool {
        let old = mem.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        mem.store_u32(SRING_RSP_PROD_OFFSET, new, Ordering::Release);
        mem.fence();
        let event = mem.load_u32(SRING_RSP_EVENT_OFFSET, Ordering::Relaxed);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Asks for a notification at the next request and re-checks
    /// (`RING_FINAL_CHECK_FOR_REQUESTS`): `Ok(true)` if requests are
    /// waiting, so the caller must not sleep.
    pub fn final_check<M: RingMem + ?Sized>(&self, mem: &M) -> Result<bool, RingError> {
        if self.unconsumed(mem)? > 0 {
            return Ok(true);
        }
        mem.store_u32(
            SRING_REQ_EVENT_OFFSET,
            self.req_cons.wrapping_add(1),
            Ordering::Release,
        );
        mem.fence();
        Ok(self.unconsumed(mem)? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::abi::netif::{NetifTxRequest, NetifTxResponse, NETIF_TX_ENTRY_SIZE};

    #[test]
    fn requests_in_responses_out_with_notification() {
        let mem = LocalRing::new();
        let mut r = BackRing::new(256, NETIF_TX_ENTRY_SIZE);
        assert_eq!(r.unconsumed(&mem), Ok(0));
        let req = NetifTxRequest {
            gref: 9,
            offset: 2,
            flags: 0,
            id: 7,
            size: 60,
        };
        mem.write(slot_offset(0, 256, 12), req.as_bytes());
        mem.store_u32(SRING_REQ_PROD_OFFSET, 1, Ordering::Relaxed);
        assert_eq!(r.unconsumed(&mem), Ok(1));
        assert_eq!(r.peek::<NetifTxRequest, _>(&mem, 0), req);
        r.consume(1);
        r.respond(&mem, &NetifTxResponse { id: 7, status: 0 });
        // rsp_event is 1 (SHARED_RING_INIT): the frontend wants to hear.
        assert!(r.push_responses(&mem));
        assert_eq!(mem.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Relaxed), 1);
        assert!(!r.push_responses(&mem), "nothing new, no notification");
        assert_eq!(r.final_check(&mem), Ok(false));
        assert_eq!(mem.load_u32(SRING_REQ_EVENT_OFFSET, Ordering::Relaxed), 2);
    }

    #[test]
    fn req_prod_beyond_a_ring_is_an_error() {
        let mem = LocalRing::new();
        let r = BackRing::new(256, NETIF_TX_ENTRY_SIZE);
        mem.store_u32(SRING_REQ_PROD_OFFSET, 257, Ordering::Relaxed);
        assert!(matches!(
            r.unconsumed(&mem),
            Err(RingError::ReqProdOverflow { req_prod: 257, .. })
        ));
        // Backwards (wraps to a huge count) is caught too.
        mem.store_u32(SRING_REQ_PROD_OFFSET, u32::MAX, Ordering::Relaxed);
        assert!(r.unconsumed(&mem).is_err());
        mem.store_u32(SRING_REQ_PROD_OFFSET, 256, Ordering::Relaxed);
        assert_eq!(r.unconsumed(&mem), Ok(256));
    }
}
