//! The frontend's end of a blkif shared ring (`io/ring.h`, Xen 4.17).
//!
//! The frontend owns the pages: it initialises the ring, produces requests
//! (`req_prod`) and consumes responses. The backend's `rsp_prod` is read
//! once per call (Acquire) and bounded: a backend claiming more responses
//! than requests outstanding is broken ([`RingError::Overflow`]).

use core::sync::atomic::{fence, Ordering};

use xen::abi::blkif::{BlkifResponse, BLKIF_ENTRY_SIZE};
use xen::abi::ring::{
    ring_size, slot_offset, RingIdx, SRING_REQ_EVENT_OFFSET, SRING_REQ_PROD_OFFSET,
    SRING_RSP_EVENT_OFFSET, SRING_RSP_PROD_OFFSET,
};
use xen::SharedMem;
use zerocopy::FromBytes;

/// Why the ring cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The memory holds no whole ring.
    #[error("ring memory too small")]
    TooSmall,
    /// The backend's `rsp_prod` runs ahead of the requests it was given.
    #[error("backend response producer overflows the ring")]
    Overflow,
}

/// The frontend ring's private indices; every call takes the ring's
/// memory (the pages the frontend owns and granted).
#[derive(Clone, Copy, Debug)]
pub struct FrontRing {
    size: u32,
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
}

impl FrontRing {
    /// Initialises the shared ring in `mem` (`SHARED_RING_INIT` +
    /// `FRONT_RING_INIT`).
    pub fn init(mem: &SharedMem<'_>) -> Result<Self, RingError> {
        let size = ring_size(BLKIF_ENTRY_SIZE, mem.len());
        if size == 0 {
            return Err(RingError::TooSmall);
        }
        mem.fill(0, mem.len(), 0);
        mem.atomic_u32(SRING_REQ_EVENT_OFFSET)
            .store(1, Ordering::Relaxed);
        mem.atomic_u32(SRING_RSP_EVENT_OFFSET)
            .store(1, Ordering::Release);
        Ok(FrontRing {
            size,
            req_prod_pvt: 0,
            rsp_cons: 0,
        })
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Free slots for requests.
    pub fn free(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes a request (its bytes, at most one slot) into the next slot;
    /// false if the ring is full.
    pub fn push(&mut self, mem: &SharedMem<'_>, req: &[u8]) -> bool {
        if self.free() == 0 || req.len() > BLKIF_ENTRY_SIZE {
            return false;
        }
        let off = slot_offset(self.req_prod_pvt, self.size, BLKIF_ENTRY_SIZE);
        mem.write_bytes(off, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes pushed requests; true if the backend wants an event
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn publish(&mut self, mem: &SharedMem<'_>) -> bool {
        let ro = mem.ro();
        let old = ro.load_u32(SRING_REQ_PROD_OFFSET, Ordering::Relaxed);
        let new = self.req_prod_pvt;
        mem.atomic_u32(SRING_REQ_PROD_OFFSET)
            .store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = ro.load_u32(SRING_REQ_EVENT_OFFSET, Ordering::Acquire);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Takes the next response, if any.
    pub fn next_response(
        &mut self,
        mem: &SharedMem<'_>,
    ) -> Result<Option<BlkifResponse>, RingError> {
        let prod = mem.ro().load_u32(SRING_RSP_PROD_OFFSET, Ordering::Acquire);
        if prod.wrapping_sub(self.rsp_cons) > self.req_prod_pvt.wrapping_sub(self.rsp_cons) {
            return Err(RingError::Overflow);
        }
        if prod == self.rsp_cons {
            return Ok(None);
        }
        let mut b = [0u8; core::mem::size_of::<BlkifResponse>()];
        mem.read_bytes(
            slot_offset(self.rsp_cons, self.size, BLKIF_ENTRY_SIZE),
            &mut b,
        );
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(BlkifResponse::read_from_bytes(&b).ok())
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: asks for an event at the next
    /// response; true if one arrived meanwhile.
    pub fn final_check(&mut self, mem: &SharedMem<'_>) -> bool {
        let ro = mem.ro();
        if ro.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Acquire) != self.rsp_cons {
            return true;
        }
        mem.atomic_u32(SRING_RSP_EVENT_OFFSET)
            .store(self.rsp_cons.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        ro.load_u32(SRING_RSP_PROD_OFFSET, Ordering::Acquire) != self.rsp_cons
    }

    /// Requests pushed and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }
}
