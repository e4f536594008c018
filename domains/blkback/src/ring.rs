//! The backend's end of a blkif shared ring (`io/ring.h` over `io/blkif.h`).
//!
//! The frontend produces requests (`req_prod`) and consumes responses; the
//! backend consumes requests and produces responses (`rsp_prod`). The ring
//! is one or more contiguous pages (a multi-page ring is `2^ring-page-order`
//! pages mapped in order); its entry count is the power of two that fits.
//!
//! The two halves are separate values so that the request side (one
//! dispatcher) and the response side (whoever completes I/O, under a lock)
//! can live on different threads:
//!
//! * [`Requests`]: reads `req_prod` once per call (Acquire), refuses a
//!   producer index that claims more outstanding requests than the ring
//!   holds (a hostile or broken frontend: [`RingError::Overflow`]), and
//!   copies each slot into private memory before anything parses it;
//! * [`Responses`]: writes responses into the slots of answered requests,
//!   publishes `rsp_prod` (Release) and says whether the frontend asked for
//!   an event (`rsp_event`), as `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` does.
//!
//! All peer-written memory is reached through [`xen::shmem`] views: no
//! reference to shared bytes is ever formed.

use core::sync::atomic::{fence, Ordering};

use xen::abi::blkif::{BlkifResponse, BLKIF_ENTRY_SIZE};
use xen::abi::ring::{
    ring_size, slot_offset, RingIdx, SRING_REQ_EVENT_OFFSET, SRING_REQ_PROD_OFFSET,
    SRING_RSP_EVENT_OFFSET, SRING_RSP_PROD_OFFSET,
};
use xen::SharedMem;
use zerocopy::IntoBytes;

/// One copied request slot.
pub type Slot = [u8; BLKIF_ENTRY_SIZE];

/// Why a ring cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The mapped memory holds no whole ring (too small).
    #[error("ring memory too small")]
    TooSmall,
    /// `req_prod` claims more unanswered requests than the ring holds.
    #[error("frontend request producer overflows the ring")]
    Overflow,
}

/// Entries in a blkif ring of `bytes` bytes (0 if none fits).
pub fn entries(bytes: usize) -> u32 {
    ring_size(BLKIF_ENTRY_SIZE, bytes)
}

/// Initialises a fresh shared ring (`SHARED_RING_INIT`), as a frontend does.
pub fn init_shared(mem: &SharedMem<'_>) {
    mem.atomic_u32(SRING_REQ_PROD_OFFSET)
        .store(0, Ordering::Relaxed);
    mem.atomic_u32(SRING_RSP_PROD_OFFSET)
        .store(0, Ordering::Relaxed);
    mem.atomic_u32(SRING_REQ_EVENT_OFFSET)
        .store(1, Ordering::Relaxed);
    mem.atomic_u32(SRING_RSP_EVENT_OFFSET)
        .store(1, Ordering::Release);
}

/// The request half of the backend's ring.
#[derive(Clone, Copy)]
pub struct Requests<'a> {
    mem: SharedMem<'a>,
    size: u32,
    cons: RingIdx,
}

/// The response half of the backend's ring.
#[derive(Clone, Copy)]
pub struct Responses<'a> {
    mem: SharedMem<'a>,
    size: u32,
    prod_pvt: RingIdx,
    published: RingIdx,
}

/// Attaches to a ring the frontend initialised (`BACK_RING_INIT`: our
/// indices start at 0, whatever the page says).
pub fn attach(mem: SharedMem<'_>) -> Result<(Requests<'_>, Responses<'_>), RingError> {
    resume(mem, 0, 0)
}

/// Attaches again to a ring served before, at the indices it had reached:
/// `consumed` requests ([`Requests::consumed`]) and `published` responses
/// ([`Responses::published`], every pushed response published). For a
/// server that keeps the mapping but not the halves between two rounds
/// (one loop serving several rings, [`crate::poll`]).
pub fn resume(
    mem: SharedMem<'_>,
    consumed: RingIdx,
    published: RingIdx,
) -> Result<(Requests<'_>, Responses<'_>), RingError> {
    let size = entries(mem.len());
    if size == 0 {
        return Err(RingError::TooSmall);
    }
    Ok((
        Requests {
            mem,
            size,
            cons: consumed,
        },
        Responses {
            mem,
            size,
            prod_pvt: published,
            published,
        },
    ))
}

impl<'a> Requests<'a> {
    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests consumed so far.
    pub fn consumed(&self) -> RingIdx {
        self.cons
    }

    /// Copies the next request into `out` and consumes it; `Ok(false)` if
    /// there is none. `rsp_published` gives the response producer index
    /// the backend has published (its own copy, never read back from the
    /// page): the frontend cannot have more than the ring size of requests
    /// outstanding beyond it. It is asked *after* `req_prod` is read, so
    /// that responses published meanwhile (by other threads) are counted.
    pub fn next(
        &mut self,
        rsp_published: impl FnOnce() -> RingIdx,
        out: &mut Slot,
    ) -> Result<bool, RingError> {
        let prod = self
            .mem
            .ro()
            .load_u32(SRING_REQ_PROD_OFFSET, Ordering::Acquire);
        let rsp_published = rsp_published();
        if prod.wrapping_sub(rsp_published) > self.size
            || self.cons.wrapping_sub(rsp_published) > self.size
        {
            return Err(RingError::Overflow);
        }
        if prod == self.cons {
            return Ok(false);
        }
        let off = slot_offset(self.cons, self.size, BLKIF_ENTRY_SIZE);
        self.mem.read_bytes(off, out);
        self.cons = self.cons.wrapping_add(1);
        Ok(true)
    }

    /// True if the frontend has produced requests not consumed yet (a
    /// hint: the next [`next`](Self::next) validates).
    pub fn has_unconsumed(&self) -> bool {
        self.mem
            .ro()
            .load_u32(SRING_REQ_PROD_OFFSET, Ordering::Acquire)
            != self.cons
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: asks for an event at the next
    /// request and says whether one arrived meanwhile (then keep going
    /// instead of sleeping).
    pub fn final_check(&mut self) -> bool {
        let ro = self.mem.ro();
        if ro.load_u32(SRING_REQ_PROD_OFFSET, Ordering::Acquire) != self.cons {
            return true;
        }
        self.mem
            .atomic_u32(SRING_REQ_EVENT_OFFSET)
            .store(self.cons.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        ro.load_u32(SRING_REQ_PROD_OFFSET, Ordering::Acquire) != self.cons
    }
}

impl<'a> Responses<'a> {
    /// Writes a response into the next slot (not yet visible: see
    /// [`publish`](Self::publish)).
    pub fn push(&mut self, rsp: &BlkifResponse) {
        let off = slot_offset(self.prod_pvt, self.size, BLKIF_ENTRY_SIZE);
        self.mem.write_bytes(off, rsp.as_bytes());
        self.prod_pvt = self.prod_pvt.wrapping_add(1);
    }

    /// Makes the pushed responses visible; true if the frontend wants an
    /// event for them (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn publish(&mut self) -> bool {
        let old = self.published;
        let new = self.prod_pvt;
        if old == new {
            return false;
        }
        self.mem
            .atomic_u32(SRING_RSP_PROD_OFFSET)
            .store(new, Ordering::Release);
        self.published = new;
        fence(Ordering::SeqCst);
        let event = self
            .mem
            .ro()
            .load_u32(SRING_RSP_EVENT_OFFSET, Ordering::Acquire);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// The response producer index last published.
    pub fn published(&self) -> RingIdx {
        self.published
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::abi::blkif::BlkifRequest;
    use xen::platform::{CreateConfig, GrantTable, LocalPages};

    #[test]
    fn requests_in_responses_out_and_overflow_refused() {
        let hv = xen_sim::Hypervisor::new();
        let d = hv.test_domain(&CreateConfig::default()).unwrap();
        let pages = d.alloc_pages(1).unwrap();
        let mem = pages.mem();
        init_shared(&mem);
        let (mut rq, mut rs) = attach(mem).unwrap();
        assert_eq!(rq.size(), 32);
        let mut slot = [0u8; BLKIF_ENTRY_SIZE];
        assert!(!rq.next(|| 0, &mut slot).unwrap());
        // The frontend writes two requests.
        for i in 0..2u32 {
            let r = BlkifRequest {
                id: u64::from(i) + 100,
                ..Default::default()
            };
            mem.write_bytes(slot_offset(i, 32, BLKIF_ENTRY_SIZE), r.as_bytes());
        }
        mem.atomic_u32(SRING_REQ_PROD_OFFSET)
            .store(2, Ordering::Release);
        assert!(rq.next(|| 0, &mut slot).unwrap());
        assert_eq!(slot[8], 100);
        assert!(rq.next(|| 0, &mut slot).unwrap());
        assert!(!rq.next(|| 0, &mut slot).unwrap());
        assert!(!rq.final_check());
        assert_eq!(
            mem.ro().load_u32(SRING_REQ_EVENT_OFFSET, Ordering::Relaxed),
            3
        );
        rs.push(&BlkifResponse {
            id: 100,
            ..Default::default()
        });
        // rsp_event is 1: the first response wants an event.
        assert!(rs.publish());
        assert_eq!(
            mem.ro().load_u32(SRING_RSP_PROD_OFFSET, Ordering::Relaxed),
            1
        );
        rs.push(&BlkifResponse::default());
        assert!(!rs.publish(), "rsp_event still 1: no event for the second");
        // A producer index claiming 40 outstanding requests is refused.
        mem.atomic_u32(SRING_REQ_PROD_OFFSET)
            .store(2 + 40, Ordering::Release);
        assert_eq!(
            rq.next(|| rs.published(), &mut slot),
            Err(RingError::Overflow)
        );
        assert_eq!(
            attach(mem.slice(0, 64).unwrap()).err(),
            Some(RingError::TooSmall)
        );
    }
}
