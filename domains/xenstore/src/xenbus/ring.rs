//! The byte rings of `struct xenstore_domain_interface`
//! (`xen/include/public/io/xs_wire.h`, Xen 4.17).
//!
//! Producer and consumer: the *client* (every domain's xenbus driver)
//! produces into `req` and consumes from `rsp`; the *server* (the xenstore
//! domain) does the opposite. Each side writes only its own two indices and
//! reads the peer's:
//!
//! ```text
//!    0  req[1024]   client -> server      2048  req_cons   (server)
//! 1024  rsp[1024]   server -> client      2052  req_prod   (client)
//!                                         2056  rsp_cons   (client)
//!                                         2060  rsp_prod   (server)
//!                                         2064  server_features (server)
//!                                         2068  connection (client: RECONNECT, server: CONNECTED)
//!                                         2072  error      (server)
//! ```
//!
//! Indices are free-running `u32`s; `MASK_XENSTORE_IDX` gives the byte
//! offset. [`RingIo`] is one end of both rings. It keeps its *own* indices
//! in private memory (a peer that scribbles on them changes nothing: they
//! are overwritten at the next publish), reads the peer's index once per
//! operation with `Acquire` (so the bytes it covers are read after it),
//! rejects an index that puts more than 1024 bytes between producer and
//! consumer ([`RingError::BadIndex`], the caller disconnects the peer),
//! copies bytes through [`xen::shmem`] views into private buffers, and
//! publishes its own index with `Release` (so the bytes are written before
//! the peer can see them). It takes the page as a parameter, never a
//! reference into it, so the owner of a mapping can keep the ring state
//! next to it.
//!
//! Nothing here notifies the peer: the caller batches moves of an index
//! and sends one event per batch.

use core::sync::atomic::fence;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use xen::abi::xs_wire::{
    mask_xenstore_idx, XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_RING_SIZE,
};
use xen::{SharedMem, SharedRo};

/// Byte offsets of the fields of `xenstore_domain_interface`.
pub mod field {
    /// `req`: requests, client to server.
    pub const REQ: usize = 0;
    /// `rsp`: replies and watch events, server to client.
    pub const RSP: usize = 1024;
    /// `req_cons` (server).
    pub const REQ_CONS: usize = 2048;
    /// `req_prod` (client).
    pub const REQ_PROD: usize = 2052;
    /// `rsp_cons` (client).
    pub const RSP_CONS: usize = 2056;
    /// `rsp_prod` (server).
    pub const RSP_PROD: usize = 2060;
    /// `server_features` (server).
    pub const SERVER_FEATURES: usize = 2064;
    /// `connection`.
    pub const CONNECTION: usize = 2068;
    /// `error` (server).
    pub const ERROR: usize = 2072;
    /// Bytes of the page the interface uses.
    pub const END: usize = 2076;
}

/// Which end of the rings we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Produces requests, consumes replies (every domain).
    Client,
    /// Consumes requests, produces replies (the xenstore domain).
    Server,
}

/// Why a ring operation failed. Both are fatal for the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The peer's index is more than a ring's worth away from ours (a
    /// misbehaving or hostile peer: `XENSTORE_ERROR_RINGIDX`).
    #[error("peer index {peer} is inconsistent with ours ({own})")]
    BadIndex {
        /// The peer's index as read.
        peer: u32,
        /// Our own index.
        own: u32,
    },
    /// The page is smaller than `xenstore_domain_interface`.
    #[error("ring page of {0} bytes is too small")]
    PageTooSmall(usize),
}

/// What a [`RingIo::read`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Bytes consumed.
    pub bytes: usize,
    /// The ring was full before: the producer may be waiting for room.
    pub notify: bool,
}

/// One end of the two rings of a xenstore page; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIo {
    side: Side,
    /// Our producer index of the ring we write.
    prod: u32,
    /// Our consumer index of the ring we read.
    cons: u32,
}

/// `(ring, own index, peer index)` offsets.
type Lanes = (usize, usize, usize);

impl RingIo {
    /// An end with both own indices at 0 (a fresh or freshly reset page).
    pub const fn new(side: Side) -> Self {
        RingIo {
            side,
            prod: 0,
            cons: 0,
        }
    }

    /// Checks that `page` can hold the interface.
    pub fn check(page: SharedRo<'_>) -> Result<(), RingError> {
        if page.len() < field::END {
            return Err(RingError::PageTooSmall(page.len()));
        }
        Ok(())
    }

    /// Our side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Our own (producer, consumer) indices.
    pub fn indices(&self) -> (u32, u32) {
        (self.prod, self.cons)
    }

    /// The ring we write: (ring, our producer index, peer's consumer index).
    fn out(&self) -> Lanes {
        match self.side {
            Side::Client => (field::REQ, field::REQ_PROD, field::REQ_CONS),
            Side::Server => (field::RSP, field::RSP_PROD, field::RSP_CONS),
        }
    }

    /// The ring we read: (ring, our consumer index, peer's producer index).
    fn inp(&self) -> Lanes {
        match self.side {
            Side::Client => (field::RSP, field::RSP_CONS, field::RSP_PROD),
            Side::Server => (field::REQ, field::REQ_CONS, field::REQ_PROD),
        }
    }

    /// Takes our own indices from the page (a client starting on a page
    /// that was used before, or after the server reset it).
    pub fn resync(&mut self, page: SharedRo<'_>) -> Result<(), RingError> {
        Self::check(page)?;
        self.prod = page.load_u32(self.out().1, Acquire);
        self.cons = page.load_u32(self.inp().1, Acquire);
        Ok(())
    }

    /// Sets all four indices to 0, `error` to none and `connection` to
    /// connected (the server's reset at `XS_INTRODUCE` and on a reconnect
    /// request). Bytes in flight are lost.
    pub fn reset(&mut self, page: SharedMem<'_>) -> Result<(), RingError> {
        Self::check(page.ro())?;
        for at in [
            field::REQ_CONS,
            field::REQ_PROD,
            field::RSP_CONS,
            field::RSP_PROD,
        ] {
            page.atomic_u32(at).store(0, Relaxed);
        }
        page.atomic_u32(field::ERROR)
            .store(XENSTORE_ERROR_NONE, Relaxed);
        page.atomic_u32(field::CONNECTION)
            .store(XENSTORE_CONNECTED, Release);
        self.prod = 0;
        self.cons = 0;
        Ok(())
    }

    /// Bytes the peer has produced that we have not consumed.
    pub fn readable(&self, page: SharedRo<'_>) -> Result<usize, RingError> {
        Self::check(page)?;
        let (_, _, peer_at) = self.inp();
        let prod = page.load_u32(peer_at, Acquire);
        Self::distance(self.cons, prod)
    }

    /// Room left in the ring we write.
    pub fn writable(&self, page: SharedRo<'_>) -> Result<usize, RingError> {
        Self::check(page)?;
        let (_, _, peer_at) = self.out();
        let cons = page.load_u32(peer_at, Acquire);
        let used = Self::distance(cons, self.prod).map_err(|_| RingError::BadIndex {
            peer: cons,
            own: self.prod,
        })?;
        Ok(XENSTORE_RING_SIZE - used)
    }

    /// `prod - cons`, if it is a possible fill level.
    fn distance(cons: u32, prod: u32) -> Result<usize, RingError> {
        let d = prod.wrapping_sub(cons) as usize;
        if d > XENSTORE_RING_SIZE {
            return Err(RingError::BadIndex {
                peer: prod,
                own: cons,
            });
        }
        Ok(d)
    }

    /// Consumes up to `buf.len()` bytes into `buf`. Publishes our consumer
    /// index if it moved, and says whether the peer must be notified: only
    /// if the ring was full, so the producer may be waiting for room (the
    /// rule of Linux's `xb_read`: after publishing, re-read the producer
    /// index behind a full fence and compare with the old consumer index).
    pub fn read(&mut self, page: SharedMem<'_>, buf: &mut [u8]) -> Result<Moved, RingError> {
        Self::check(page.ro())?;
        let (ring, own_at, peer_at) = self.inp();
        // The peer's producer index, once, before the bytes it covers.
        let prod = page.ro().load_u32(peer_at, Acquire);
        let avail = Self::distance(self.cons, prod)?;
        let n = avail.min(buf.len());
        let mut done = 0;
        while done < n {
            let at = mask_xenstore_idx(self.cons.wrapping_add(done as u32));
            let k = (XENSTORE_RING_SIZE - at).min(n - done);
            page.read_bytes(ring + at, &mut buf[done..done + k]);
            done += k;
        }
        let mut notify = false;
        if n > 0 {
            let old = self.cons;
            self.cons = self.cons.wrapping_add(n as u32);
            // The bytes are copied out before the peer may reuse them.
            page.atomic_u32(own_at).store(self.cons, Release);
            // A producer that saw the ring full (against `old`) and went to
            // sleep is visible now; one that looks later sees our index.
            fence(SeqCst);
            let now = page.ro().load_u32(peer_at, Relaxed);
            notify = now.wrapping_sub(old) as usize >= XENSTORE_RING_SIZE;
        }
        Ok(Moved { bytes: n, notify })
    }

    /// Produces as much of `data` as fits; returns how many bytes.
    /// Publishes our producer index if it moved.
    pub fn write(&mut self, page: SharedMem<'_>, data: &[u8]) -> Result<usize, RingError> {
        Self::check(page.ro())?;
        let (ring, own_at, peer_at) = self.out();
        // The peer's consumer index, once, before we overwrite the space
        // it has freed.
        let cons = page.ro().load_u32(peer_at, Acquire);
        let used = Self::distance(cons, self.prod).map_err(|_| RingError::BadIndex {
            peer: cons,
            own: self.prod,
        })?;
        let n = (XENSTORE_RING_SIZE - used).min(data.len());
        let mut done = 0;
        while done < n {
            let at = mask_xenstore_idx(self.prod.wrapping_add(done as u32));
            let k = (XENSTORE_RING_SIZE - at).min(n - done);
            page.write_bytes(ring + at, &data[done..done + k]);
            done += k;
        }
        if n > 0 {
            self.prod = self.prod.wrapping_add(n as u32);
            // The bytes are in the ring before the peer sees the index.
            page.atomic_u32(own_at).store(self.prod, Release);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use xen::platform::{CreateConfig, GrantTable, LocalPages};

    fn with_page(f: impl FnOnce(SharedMem<'_>)) {
        let hv = xen_sim::Hypervisor::new();
        let d = hv.test_domain(&CreateConfig::default()).expect("domain");
        let pages = d.alloc_pages(1).expect("page");
        f(pages.mem());
    }

    #[test]
    fn bytes_cross_both_ways_across_the_wrap() {
        with_page(|page| {
            let mut c = RingIo::new(Side::Client);
            let mut s = RingIo::new(Side::Server);
            let mut buf = [0u8; 1024];
            for round in 0u32..25 {
                let msg: Vec<u8> = (0..700u32).map(|i| (i * 7 + round) as u8).collect();
                assert_eq!(c.write(page, &msg), Ok(700));
                assert_eq!(s.readable(page.ro()), Ok(700));
                assert_eq!(s.read(page, &mut buf).map(|m| m.bytes), Ok(700));
                assert_eq!(&buf[..700], &msg[..]);
                assert_eq!(s.write(page, &msg[..333]), Ok(333));
                assert_eq!(c.read(page, &mut buf[..100]).map(|m| m.bytes), Ok(100));
                assert_eq!(c.read(page, &mut buf[100..]).map(|m| m.bytes), Ok(233));
                assert_eq!(&buf[..333], &msg[..333]);
            }
            assert_eq!(c.indices(), (25 * 700, 25 * 333));
            assert_eq!(page.ro().load_u32(field::REQ_CONS, Acquire), 25 * 700);
        });
    }

    #[test]
    fn a_full_ring_takes_nothing_more() {
        with_page(|page| {
            let mut c = RingIo::new(Side::Client);
            assert_eq!(c.write(page, &[1; 3000]), Ok(1024));
            assert_eq!(c.writable(page.ro()), Ok(0));
            assert_eq!(c.write(page, &[1; 10]), Ok(0));
            let mut s = RingIo::new(Side::Server);
            let mut buf = [0u8; 100];
            assert_eq!(
                s.read(page, &mut buf),
                Ok(Moved {
                    bytes: 100,
                    notify: true
                }),
                "the producer may be waiting for room"
            );
            assert_eq!(
                s.read(page, &mut buf),
                Ok(Moved {
                    bytes: 100,
                    notify: false
                })
            );
        });
    }

    #[test]
    fn indices_wrap_at_u32_max() {
        with_page(|page| {
            let start = u32::MAX - 100;
            for at in [
                field::REQ_CONS,
                field::REQ_PROD,
                field::RSP_CONS,
                field::RSP_PROD,
            ] {
                page.atomic_u32(at).store(start, Relaxed);
            }
            let mut c = RingIo::new(Side::Client);
            let mut s = RingIo::new(Side::Server);
            c.resync(page.ro()).unwrap();
            s.resync(page.ro()).unwrap();
            let mut buf = [0u8; 512];
            let msg: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
            assert_eq!(c.write(page, &msg), Ok(500));
            assert_eq!(s.read(page, &mut buf).map(|m| m.bytes), Ok(500));
            assert_eq!(&buf[..500], &msg[..]);
            assert_eq!(s.indices().1, start.wrapping_add(500));
        });
    }

    #[test]
    fn a_lying_peer_is_caught_and_own_indices_stay_private() {
        with_page(|page| {
            let mut s = RingIo::new(Side::Server);
            let mut buf = [0u8; 16];
            // Producer claims more than a ring's worth.
            page.atomic_u32(field::REQ_PROD).store(1025, Release);
            assert_eq!(
                s.read(page, &mut buf),
                Err(RingError::BadIndex { peer: 1025, own: 0 })
            );
            // Producer "behind" our consumer index.
            page.atomic_u32(field::REQ_PROD).store(u32::MAX, Release);
            assert!(s.read(page, &mut buf).is_err());
            // Consumer index ahead of our producer index.
            page.atomic_u32(field::RSP_CONS).store(5, Release);
            assert!(s.write(page, b"x").is_err());
            // The peer scribbles on our index: we go on from our own copy.
            page.atomic_u32(field::REQ_PROD).store(3, Release);
            page.atomic_u32(field::RSP_CONS).store(0, Release);
            page.atomic_u32(field::REQ_CONS).store(1000, Release);
            assert_eq!(s.read(page, &mut buf).map(|m| m.bytes), Ok(3));
            assert_eq!(page.ro().load_u32(field::REQ_CONS, Acquire), 3);
        });
    }

    #[test]
    fn reset_clears_indices_error_and_reconnect() {
        with_page(|page| {
            let mut s = RingIo::new(Side::Server);
            page.atomic_u32(field::REQ_PROD).store(9, Relaxed);
            page.atomic_u32(field::ERROR).store(2, Relaxed);
            page.atomic_u32(field::CONNECTION).store(1, Relaxed);
            s.reset(page).unwrap();
            for at in [
                field::REQ_CONS,
                field::REQ_PROD,
                field::RSP_CONS,
                field::RSP_PROD,
                field::ERROR,
                field::CONNECTION,
            ] {
                assert_eq!(page.ro().load_u32(at, Acquire), 0);
            }
            assert_eq!(s.readable(page.ro()), Ok(0));
        });
    }

    #[test]
    fn small_pages_are_refused() {
        with_page(|page| {
            let small = page.slice(0, 2048).unwrap();
            let mut s = RingIo::new(Side::Server);
            assert_eq!(
                s.read(small, &mut [0; 4]),
                Err(RingError::PageTooSmall(2048))
            );
        });
    }
}
