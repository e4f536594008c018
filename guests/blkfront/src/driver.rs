//! A blocking blkfront driver on the platform traits (host mode and
//! Windsor's unikernel guests; `no_std` + alloc).
//!
//! At connect it allocates the ring (`2^order` pages), `queue_depth` slots
//! of `pages_per_request` data pages and, when a request needs more than 11
//! segments, one indirect page per slot; it grants all of them to the
//! backend once and reuses them for every request. A request's `id` is its
//! slot. [`BlkFront::submit`] queues a request on a slot whose pages the
//! caller filled ([`BlkFront::slot_mem`]); [`BlkFront::complete`] waits for
//! answers. [`BlkFront::write`], [`BlkFront::read`] and [`BlkFront::flush`]
//! are the blocking forms on slot 0.

use alloc::vec::Vec;
use core::time::Duration;

use windsor_xenstore_client::XenStore;
use xen::abi::blkif::{BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_RSP_OKAY};
use xen::abi::xenbus::XenbusState;
use xen::platform::{LocalPages, Platform};
use xen::{EvtchnPort, GrantRef, SharedMem, PAGE_SIZE};

use crate::request::{self, Op};
use crate::ring::FrontRing;
use crate::xenbus::{self, DiskInfo, Features, Frontend};

/// How the driver lays out its memory.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// Requests in flight at most (slots).
    pub queue_depth: usize,
    /// Data pages per slot (more than 11 needs indirect requests).
    pub pages_per_request: usize,
    /// Ring pages, as an order (capped by the backend's offer).
    pub ring_page_order: u32,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            queue_depth: 8,
            pages_per_request: 11,
            ring_page_order: 0,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] xenbus::Error),
    /// A platform call failed (the backend may be gone).
    #[error(transparent)]
    Platform(#[from] xen::platform::Error),
    /// The ring is broken (the backend misbehaves).
    #[error(transparent)]
    Ring(#[from] crate::ring::RingError),
    /// The backend answered with an error status.
    #[error("request failed with status {0}")]
    Status(i16),
    /// The request does not fit the slot or the geometry.
    #[error("request too large or misaligned")]
    BadRequest,
    /// The backend closed the event channel (died or disconnected).
    #[error("backend gone")]
    BackendGone,
    /// No answer in time (the backend is gone).
    #[error("backend did not answer")]
    Timeout,
}

/// A connected blkfront.
pub struct BlkFront<'p, P: Platform> {
    plat: &'p P,
    fe: Frontend,
    port: EvtchnPort,
    ring_pages: P::Pages,
    ring_grefs: Vec<GrantRef>,
    ring: FrontRing,
    data: P::Pages,
    data_grefs: Vec<GrantRef>,
    ind: Option<(P::Pages, Vec<GrantRef>)>,
    geo: Geometry,
    disk: DiskInfo,
    features: Features,
}

/// How long a blocking call waits for the backend.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl<'p, P: Platform> BlkFront<'p, P> {
    /// Connects device `devid` of this domain.
    pub fn connect<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        devid: u32,
        geo: Geometry,
    ) -> Result<Self, Error> {
        let fe = Frontend::new(xs, plat.domid(), devid)?;
        fe.switch(xs, XenbusState::Initialising)?;
        // A backend still Closing/Closed from an earlier connection comes
        // back to InitWait when it sees us Initialising.
        fe.wait_backend(xs, ANSWER_TIMEOUT, false, |s| {
            matches!(s, XenbusState::InitWait | XenbusState::Connected)
        })?;
        let features = fe.features(xs)?;
        let order = geo.ring_page_order.min(features.max_ring_page_order);
        let back = fe.backend_id;
        let ring_pages = plat.alloc_pages(1 << order)?;
        let ring = FrontRing::init(&ring_pages.mem())?;
        let ring_grefs = (0..1usize << order)
            .map(|i| plat.grant_access(&ring_pages, i, back, false))
            .collect::<Result<Vec<_>, _>>()?;
        let slots = geo.queue_depth.clamp(1, ring.size() as usize);
        let geo = Geometry {
            queue_depth: slots,
            ..geo
        };
        if geo.pages_per_request > BLKIF_MAX_SEGMENTS_PER_REQUEST
            && (geo.pages_per_request as u32 > features.max_indirect_segments
                || geo.pages_per_request > PAGE_SIZE / 8)
        {
            return Err(Error::BadRequest);
        }
        let data = plat.alloc_pages(slots * geo.pages_per_request)?;
        let data_grefs = (0..slots * geo.pages_per_request)
            .map(|i| plat.grant_access(&data, i, back, false))
            .collect::<Result<Vec<_>, _>>()?;
        let ind = if geo.pages_per_request > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            let p = plat.alloc_pages(slots)?;
            let g = (0..slots)
                .map(|i| plat.grant_access(&p, i, back, true))
                .collect::<Result<Vec<_>, _>>()?;
            Some((p, g))
        } else {
            None
        };
        let port = plat.alloc_unbound(back)?;
        fe.publish(xs, &ring_grefs, port)?;
        fe.wait_backend(xs, ANSWER_TIMEOUT, true, |s| s == XenbusState::Connected)?;
        let disk = fe.connected(xs)?;
        Ok(BlkFront {
            plat,
            fe,
            port,
            ring_pages,
            ring_grefs,
            ring,
            data,
            data_grefs,
            ind,
            geo,
            disk,
            features,
        })
    }

    /// The disk as the backend described it.
    pub fn disk(&self) -> DiskInfo {
        self.disk
    }

    /// The backend's features.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The geometry in effect.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The frontend's handshake state.
    pub fn frontend(&self) -> &Frontend {
        &self.fe
    }

    /// Bytes a slot holds.
    pub fn slot_bytes(&self) -> usize {
        self.geo.pages_per_request * PAGE_SIZE
    }

    /// The grants of the data pages of `slot`.
    pub fn slot_grefs(&self, slot: usize) -> &[GrantRef] {
        let n = self.geo.pages_per_request;
        &self.data_grefs[slot * n..(slot + 1) * n]
    }

    /// The data pages of `slot`.
    pub fn slot_mem(&self, slot: usize) -> SharedMem<'_> {
        let n = self.slot_bytes();
        self.data
            .mem()
            .slice(slot * n, n)
            .expect("slot within the data pages")
    }

    /// Queues a request on `slot` (its pages hold the data to write, or
    /// receive what is read) and tells the backend.
    pub fn submit(&mut self, slot: usize, op: Op, sector: u64, len: usize) -> Result<(), Error> {
        self.queue(slot, op, sector, len)?;
        self.kick()
    }

    /// Like [`submit`](Self::submit) but does not tell the backend yet:
    /// queue several, then [`kick`](Self::kick) once.
    pub fn queue(&mut self, slot: usize, op: Op, sector: u64, len: usize) -> Result<(), Error> {
        if slot >= self.geo.queue_depth || len > self.slot_bytes() || len % 512 != 0 {
            return Err(Error::BadRequest);
        }
        let ppr = self.geo.pages_per_request;
        let grefs = &self.data_grefs[slot * ppr..(slot + 1) * ppr];
        let pages = len.div_ceil(PAGE_SIZE);
        let slot_bytes = if op != Op::Flush && pages > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            let (ip, ig) = self.ind.as_ref().ok_or(Error::BadRequest)?;
            let mut page = alloc::vec![0u8; pages * 8];
            let s = request::indirect(op, slot as u64, sector, grefs, len, ig[slot], &mut page);
            ip.mem().write_bytes(slot * PAGE_SIZE, &page);
            s
        } else {
            request::direct(op, slot as u64, sector, grefs, len)
        };
        let mem = self.ring_pages.mem();
        if !self.ring.push(&mem, &slot_bytes) {
            return Err(Error::BadRequest);
        }
        Ok(())
    }

    /// Publishes queued requests and tells the backend if it asked.
    pub fn kick(&mut self) -> Result<(), Error> {
        if self.ring.publish(&self.ring_pages.mem()) {
            self.plat.notify(self.port)?;
        }
        Ok(())
    }

    /// Waits for at least one answer (up to `timeout`) and returns every
    /// answer available as (slot, status).
    pub fn complete(&mut self, timeout: Duration) -> Result<Vec<(usize, i16)>, Error> {
        let mem = self.ring_pages.mem();
        let deadline = self.plat.now() + timeout;
        let mut out = Vec::new();
        loop {
            while let Some(r) = self.ring.next_response(&mem)? {
                out.push((r.id as usize, r.status));
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if self.ring.final_check(&mem) {
                continue;
            }
            // The backend closed its end (died or disconnected): what it
            // answered is all there will be.
            if matches!(
                self.plat.status(self.port)?,
                xen::platform::PortStatus::Unbound { .. }
            ) {
                while let Some(r) = self.ring.next_response(&mem)? {
                    out.push((r.id as usize, r.status));
                }
                return if out.is_empty() {
                    Err(Error::BackendGone)
                } else {
                    Ok(out)
                };
            }
            let now = self.plat.now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            if self.plat.wait(&[self.port], Some(deadline - now))? {
                self.plat.clear_pending(self.port)?;
            }
        }
    }

    fn one(&mut self, op: Op, sector: u64, len: usize) -> Result<(), Error> {
        self.submit(0, op, sector, len)?;
        let r = self.complete(ANSWER_TIMEOUT)?;
        match r.first() {
            Some(&(0, BLKIF_RSP_OKAY)) => Ok(()),
            Some(&(_, s)) => Err(Error::Status(s)),
            None => Err(Error::Timeout),
        }
    }

    /// Writes `data` (a multiple of 512 bytes, at most a slot) at `sector`.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.slot_bytes() {
            return Err(Error::BadRequest);
        }
        self.slot_mem(0).write_bytes(0, data);
        self.one(Op::Write, sector, data.len())
    }

    /// Reads `buf.len()` bytes at `sector`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        if buf.len() > self.slot_bytes() {
            return Err(Error::BadRequest);
        }
        self.one(Op::Read, sector, buf.len())?;
        self.slot_mem(0).read_bytes(0, buf);
        Ok(())
    }

    /// Flushes the disk's write cache: every write answered before is
    /// stable when this returns.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.one(Op::Flush, 0, 0)
    }

    /// Fault injection, for hostile-frontend tests: pushes `req` (at most
    /// one ring slot of arbitrary bytes) and tells the backend.
    pub fn push_raw(&mut self, req: &[u8]) -> Result<(), Error> {
        let mem = self.ring_pages.mem();
        if !self.ring.push(&mem, req) {
            return Err(Error::BadRequest);
        }
        if self.ring.publish(&mem) {
            self.plat.notify(self.port)?;
        }
        Ok(())
    }

    /// Fault injection: advances the shared `req_prod` by `by` without
    /// writing requests (a frontend lying about its ring), and tells the
    /// backend.
    pub fn corrupt_req_prod(&mut self, by: u32) -> Result<(), Error> {
        let a = self
            .ring_pages
            .mem()
            .atomic_u32(xen::abi::ring::SRING_REQ_PROD_OFFSET);
        a.fetch_add(by, core::sync::atomic::Ordering::Release);
        self.plat.notify(self.port)?;
        Ok(())
    }

    /// Closes the device (Closing, Closed) and ends the grants it can.
    pub fn close<X: XenStore + ?Sized>(self, xs: &X) -> Result<(), Error> {
        self.fe.switch(xs, XenbusState::Closing)?;
        let _ = self
            .fe
            .wait_backend(xs, Duration::from_secs(2), false, |s| {
                matches!(s, XenbusState::Closing | XenbusState::Closed)
            });
        self.fe.switch(xs, XenbusState::Closed)?;
        let _ = self.plat.close(self.port);
        self.fe.clear_ring(xs)?;
        for g in self.ring_grefs.iter().chain(&self.data_grefs) {
            let _ = self.plat.end_access(*g);
        }
        if let Some((_, g)) = &self.ind {
            for g in g {
                let _ = self.plat.end_access(*g);
            }
        }
        Ok(())
    }
}
