//! The netif frontend: two rings and their buffers in our own pages,
//! granted to the backend; frames in and out by copy.
//!
//! One queue, one event channel, no scatter-gather (every frame fits one
//! page, `feature-sg` is not offered), full checksums on transmit
//! (`feature-no-csum-offload=1`), rx by copy (`request-rx-copy=1`).
//! [`NTX`] tx buffers and [`NRX`] rx buffers, each a page granted once at
//! connect. The backend is trusted no more than necessary: response ids
//! and sizes are checked before use.
//!
//! The misbehaviours ([`Netfront::misbehave`]) break the protocol on
//! purpose, so that the backend's defences can be tested with a real
//! guest.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};
use core::time::Duration;

use windsor_xenstore::client::{ClientError, TxId, XenStore};
use xen::abi::netif::{
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETIF_RX_ENTRY_SIZE,
    NETIF_TX_ENTRY_SIZE, NETRXF_MORE_DATA, NETTXF_MORE_DATA, NET_RX_RING_SIZE, NET_TX_RING_SIZE,
};
use xen::abi::ring::{
    slot_offset, SringHeader, SRING_REQ_EVENT_OFFSET, SRING_REQ_PROD_OFFSET,
    SRING_RSP_EVENT_OFFSET, SRING_RSP_PROD_OFFSET,
};
use xen::abi::xenbus::XenbusState;
use xen::platform::{Clock, EventChannel, GrantTable, LocalPages};
use xen::{DomId, EvtchnPort, GrantRef, SharedMem, PAGE_SIZE};
use zerocopy::{FromBytes, IntoBytes};

/// Tx buffers (pages).
pub const NTX: usize = 64;
/// Rx buffers (pages).
pub const NRX: usize = 64;
/// The largest frame we send or take.
pub const MAX_FRAME: usize = 1514;

const T: TxId = TxId::NONE;

/// Why the frontend could not connect or went down.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// xenstore failed.
    #[error(transparent)]
    Store(#[from] ClientError),
    /// The platform refused a grant or event-channel call.
    #[error(transparent)]
    Platform(#[from] xen::platform::Error),
    /// A node the toolstack should have written is missing or malformed.
    #[error("xenstore node {0} missing or malformed")]
    Node(String),
    /// The backend did not reach the state in time.
    #[error("backend did not reach {0:?} in time")]
    Timeout(XenbusState),
    /// The backend closed the device.
    #[error("backend closed the device")]
    Closed,
}

/// A way to break the ring protocol on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// A tx request naming a grant we never gave.
    BadGref,
    /// A packet chained over 21 slots.
    Oversize,
    /// `req_prod` moved a thousand slots ahead.
    IndexGames,
    /// A flood of broadcast frames, as fast as the ring takes them.
    Flood,
}

impl Misbehave {
    /// Parses the `control/misbehave` value (`net-bad-gref`, ...).
    pub fn parse(v: &[u8]) -> Option<Self> {
        Some(match v {
            b"net-bad-gref" => Misbehave::BadGref,
            b"net-oversize" => Misbehave::Oversize,
            b"net-index-games" => Misbehave::IndexGames,
            b"net-flood" => Misbehave::Flood,
            _ => return None,
        })
    }
}

/// Counters of the frontend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Frames sent.
    pub tx: u64,
    /// Frames received.
    pub rx: u64,
    /// Responses with an error status or a bad id.
    pub errors: u64,
}

/// A connected netif frontend.
pub struct Netfront<'p, P: GrantTable + EventChannel + Clock> {
    plat: &'p P,
    backend: DomId,
    mac: [u8; 6],
    rings: P::Pages,
    bufs: P::Pages,
    grants: Vec<GrantRef>,
    port: EvtchnPort,
    /// The rx ring's port: `port` itself unless split event channels are
    /// used.
    rx_port: EvtchnPort,
    tx_prod: u32,
    tx_cons: u32,
    tx_free: Vec<u16>,
    rx_prod: u32,
    rx_cons: u32,
    devid: u32,
    fe_path: String,
    be_path: String,
    stats: FrontStats,
}

fn read_str<X: XenStore + ?Sized>(xs: &X, path: &str) -> Result<String, FrontError> {
    let v = xs.read(T, path)?;
    String::from_utf8(v).map_err(|_| FrontError::Node(path.into()))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut it = s.trim().split(':');
    for b in &mut out {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(out)
}

impl<'p, P: GrantTable + EventChannel + Clock> Netfront<'p, P> {
    /// Connects `device/vif/<devid>`: allocates and grants the rings and
    /// buffers, walks the xenbus states with the backend (up to `timeout`
    /// for each), posts the rx buffers.
    pub fn connect<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        devid: u32,
        timeout: Duration,
    ) -> Result<Self, FrontError> {
        Self::connect_with(plat, xs, devid, timeout, false)
    }

    /// [`connect`](Self::connect), with split event channels
    /// (`event-channel-tx`, `event-channel-rx`) if `split`.
    pub fn connect_with<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        devid: u32,
        timeout: Duration,
        split: bool,
    ) -> Result<Self, FrontError> {
        let fe_path = format!("device/vif/{devid}");
        let be_path = read_str(xs, &format!("{fe_path}/backend"))?;
        let backend = read_str(xs, &format!("{fe_path}/backend-id"))?
            .trim()
            .parse::<u16>()
            .map(DomId)
            .map_err(|_| FrontError::Node(format!("{fe_path}/backend-id")))?;
        let mac = parse_mac(&read_str(xs, &format!("{fe_path}/mac"))?)
            .ok_or_else(|| FrontError::Node(format!("{fe_path}/mac")))?;
        let rings = plat.alloc_pages(2)?;
        let bufs = plat.alloc_pages(NTX + NRX)?;
        let mut grants = Vec::with_capacity(2 + NTX + NRX);
        for i in 0..2 {
            grants.push(plat.grant_access(&rings, i, backend, false)?);
        }
        for i in 0..NTX + NRX {
            grants.push(plat.grant_access(&bufs, i, backend, i < NTX)?);
        }
        let r = rings.mem();
        for i in 0..2 {
            r.write_bytes(i * PAGE_SIZE, SringHeader::INIT.as_bytes());
        }
        let port = plat.alloc_unbound(backend)?;
        plat.unmask(port)?;
        let rx_port = if split {
            let p = plat.alloc_unbound(backend)?;
            plat.unmask(p)?;
            p
        } else {
            port
        };
        let mut nf = Netfront {
            plat,
            backend,
            mac,
            rings,
            bufs,
            grants,
            port,
            rx_port,
            tx_prod: 0,
            tx_cons: 0,
            tx_free: (0..NTX as u16).rev().collect(),
            rx_prod: 0,
            rx_cons: 0,
            devid,
            fe_path,
            be_path,
            stats: FrontStats::default(),
        };
        nf.handshake(xs, timeout)?;
        Ok(nf)
    }

    fn wait_backend<X: XenStore + ?Sized>(
        &self,
        xs: &X,
        want: XenbusState,
        timeout: Duration,
    ) -> Result<(), FrontError> {
        let end = self.plat.now().saturating_add(timeout);
        loop {
            let s = xs
                .read(T, &format!("{}/state", self.be_path))
                .ok()
                .and_then(|v| XenbusState::parse(&v));
            if s == Some(want) {
                return Ok(());
            }
            if want == XenbusState::Connected && s == Some(XenbusState::Closed) {
                return Err(FrontError::Closed);
            }
            if self.plat.now() >= end {
                return Err(FrontError::Timeout(want));
            }
            let _ = self.plat.wait(&[], Some(Duration::from_millis(1)));
        }
    }

    fn handshake<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        timeout: Duration,
    ) -> Result<(), FrontError> {
        self.wait_backend(xs, XenbusState::InitWait, timeout)?;
        let f = &self.fe_path;
        if self.rx_port == self.port {
            xs.write(
                T,
                &format!("{f}/event-channel"),
                format!("{}", self.port.0).as_bytes(),
            )?;
        } else {
            xs.write(
                T,
                &format!("{f}/event-channel-tx"),
                format!("{}", self.port.0).as_bytes(),
            )?;
            xs.write(
                T,
                &format!("{f}/event-channel-rx"),
                format!("{}", self.rx_port.0).as_bytes(),
            )?;
        }
        for (k, v) in [
            ("tx-ring-ref", format!("{}", self.grants[0].0)),
            ("rx-ring-ref", format!("{}", self.grants[1].0)),
            ("request-rx-copy", "1".into()),
            ("feature-rx-notify", "1".into()),
            ("feature-no-csum-offload", "1".into()),
            ("feature-sg", "0".into()),
            ("feature-gso-tcpv4", "0".into()),
        ] {
            xs.write(T, &format!("{f}/{k}"), v.as_bytes())?;
        }
        xs.write(
            T,
            &format!("{f}/state"),
            XenbusState::Connected.as_text().as_bytes(),
        )?;
        self.wait_backend(xs, XenbusState::Connected, timeout)?;
        self.fill_rx();
        Ok(())
    }

    /// Whether the backend is still there: our port is still bound to it
    /// and its state is `Connected`.
    pub fn healthy<X: XenStore + ?Sized>(&self, xs: &X) -> bool {
        let bound = matches!(
            self.plat.status(self.port),
            Ok(xen::platform::PortStatus::Interdomain { dom, .. }) if dom == self.backend
        );
        let path = xs.read(T, &format!("{}/backend", self.fe_path)).ok();
        bound
            && path.as_deref() == Some(self.be_path.as_bytes())
            && xs
                .read(T, &format!("{}/state", self.be_path))
                .ok()
                .and_then(|v| XenbusState::parse(&v))
                == Some(XenbusState::Connected)
    }

    /// Connects again from scratch, to whatever backend `device/vif/<id>`
    /// names now (after a backend restart): fresh rings, buffers, grants
    /// and port; the old ones are let go. Frames in flight are lost (TCP
    /// retransmits them). On error the old, broken connection is kept and
    /// the caller tries again later.
    pub fn reconnect<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        timeout: Duration,
    ) -> Result<(), FrontError> {
        let stats = self.stats;
        let split = self.rx_port != self.port;
        let fresh = Netfront::connect_with(self.plat, xs, self.devid, timeout, split)?;
        *self = fresh;
        self.stats = stats;
        tracing::info!(backend = self.backend.0, "netfront reconnected");
        Ok(())
    }

    /// Walks our state to `Closed` (the backend lets go of the device).
    pub fn close<X: XenStore + ?Sized>(&self, xs: &X) {
        for s in [XenbusState::Closing, XenbusState::Closed] {
            let _ = xs.write(
                T,
                &format!("{}/state", self.fe_path),
                s.as_text().as_bytes(),
            );
        }
    }

    /// Our MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The event channel to wait on.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// The backend domain.
    pub fn backend(&self) -> DomId {
        self.backend
    }

    /// Counters.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }

    /// The platform.
    pub fn platform(&self) -> &'p P {
        self.plat
    }
}

fn ring_page<P: GrantTable>(rings: &P::Pages, i: usize) -> SharedMem<'_> {
    rings
        .mem()
        .slice(i * PAGE_SIZE, PAGE_SIZE)
        .expect("two ring pages")
}

fn push<P: EventChannel>(plat: &P, port: EvtchnPort, ring: SharedMem<'_>, prod: u32) {
    {
        let old = ring
            .atomic_u32(SRING_REQ_PROD_OFFSET)
            .load(Ordering::Relaxed);
        ring.atomic_u32(SRING_REQ_PROD_OFFSET)
            .store(prod, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = ring
            .atomic_u32(SRING_REQ_EVENT_OFFSET)
            .load(Ordering::Relaxed);
        if prod.wrapping_sub(event) < prod.wrapping_sub(old) {
            let _ = plat.notify(port);
        }
    }
}

impl<'p, P: GrantTable + EventChannel + Clock> Netfront<'p, P> {
    fn fill_rx(&mut self) {
        // Post every buffer not in the backend's hands: ids are buffer
        // indices, one request outstanding per buffer.
        let ring = ring_page::<P>(&self.rings, 1);
        while self.rx_prod.wrapping_sub(self.rx_cons) < NRX as u32 {
            let id = (self.rx_prod as usize % NRX) as u16;
            let req = NetifRxRequest {
                id,
                pad: 0,
                gref: self.grants[2 + NTX + id as usize].0,
            };
            ring.write_bytes(
                slot_offset(self.rx_prod, NET_RX_RING_SIZE, NETIF_RX_ENTRY_SIZE),
                req.as_bytes(),
            );
            self.rx_prod = self.rx_prod.wrapping_add(1);
        }
        push::<P>(self.plat, self.rx_port, ring, self.rx_prod);
    }

    /// Takes tx responses, freeing their buffers.
    fn reap_tx(&mut self) {
        let ring = ring_page::<P>(&self.rings, 0);
        let prod = ring
            .atomic_u32(SRING_RSP_PROD_OFFSET)
            .load(Ordering::Acquire);
        if prod.wrapping_sub(self.tx_cons) > NET_TX_RING_SIZE {
            self.stats.errors += 1;
            return;
        }
        while self.tx_cons != prod {
            let mut b = [0u8; 4];
            ring.read_bytes(
                slot_offset(self.tx_cons, NET_TX_RING_SIZE, NETIF_TX_ENTRY_SIZE),
                &mut b,
            );
            let rsp = NetifTxResponse::read_from_bytes(&b).unwrap_or_default();
            self.tx_cons = self.tx_cons.wrapping_add(1);
            if rsp.status != 0 {
                self.stats.errors += 1;
            }
            let id = rsp.id;
            if (id as usize) < NTX && !self.tx_free.contains(&id) {
                self.tx_free.push(id);
            }
        }
        ring.atomic_u32(SRING_RSP_EVENT_OFFSET)
            .store(self.tx_cons.wrapping_add(1), Ordering::Release);
    }

    /// Whether a frame can be sent now.
    pub fn can_send(&mut self) -> bool {
        if self.tx_free.is_empty() {
            self.reap_tx();
        }
        !self.tx_free.is_empty()
    }

    /// Sends one frame (at most [`MAX_FRAME`] bytes); `false` if no tx
    /// buffer is free or the frame is too big.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > PAGE_SIZE || !self.can_send() {
            return false;
        }
        let Some(id) = self.tx_free.pop() else {
            return false;
        };
        self.bufs.mem().write_bytes(id as usize * PAGE_SIZE, frame);
        self.put_tx(&[NetifTxRequest {
            gref: self.grants[2 + id as usize].0,
            offset: 0,
            flags: 0,
            id,
            size: frame.len() as u16,
        }]);
        self.stats.tx += 1;
        true
    }

    fn put_tx(&mut self, reqs: &[NetifTxRequest]) {
        let ring = ring_page::<P>(&self.rings, 0);
        for r in reqs {
            ring.write_bytes(
                slot_offset(self.tx_prod, NET_TX_RING_SIZE, NETIF_TX_ENTRY_SIZE),
                r.as_bytes(),
            );
            self.tx_prod = self.tx_prod.wrapping_add(1);
        }
        push::<P>(self.plat, self.port, ring, self.tx_prod);
    }

    /// Receives one frame, if one is waiting; reposts its buffer.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            let ring = ring_page::<P>(&self.rings, 1);
            let prod = ring
                .atomic_u32(SRING_RSP_PROD_OFFSET)
                .load(Ordering::Acquire);
            if prod.wrapping_sub(self.rx_cons) > NET_RX_RING_SIZE {
                // A backend claiming more responses than the ring holds.
                self.stats.errors += 1;
                return None;
            }
            if prod == self.rx_cons {
                ring.atomic_u32(SRING_RSP_EVENT_OFFSET)
                    .store(self.rx_cons.wrapping_add(1), Ordering::Release);
                fence(Ordering::SeqCst);
                if ring
                    .atomic_u32(SRING_RSP_PROD_OFFSET)
                    .load(Ordering::Acquire)
                    == self.rx_cons
                {
                    if self.rx_prod.wrapping_sub(self.rx_cons) < NRX as u32 {
                        self.fill_rx();
                    }
                    return None;
                }
                continue;
            }
            let mut b = [0u8; 8];
            ring.read_bytes(
                slot_offset(self.rx_cons, NET_RX_RING_SIZE, NETIF_RX_ENTRY_SIZE),
                &mut b,
            );
            let rsp = NetifRxResponse::read_from_bytes(&b).unwrap_or_default();
            self.rx_cons = self.rx_cons.wrapping_add(1);
            let id = rsp.id as usize;
            let ok = id < NRX
                && rsp.status > 0
                && rsp.flags & NETRXF_MORE_DATA == 0
                && usize::from(rsp.offset) + rsp.status as usize <= PAGE_SIZE;
            let frame = ok.then(|| {
                let mut v = vec![0u8; rsp.status as usize];
                self.bufs
                    .mem()
                    .read_bytes((NTX + id) * PAGE_SIZE + usize::from(rsp.offset), &mut v);
                v
            });
            // Repost buffers in batches: one publication (and at most one
            // notification) per 16 frames.
            if self.rx_prod.wrapping_sub(self.rx_cons) <= (NRX - 16) as u32 {
                self.fill_rx();
            }
            match frame {
                Some(f) => {
                    self.stats.rx += 1;
                    return Some(f);
                }
                None => self.stats.errors += 1,
            }
        }
    }

    /// Clears our port's pending bit (call after a wake-up).
    pub fn ack(&self) {
        let _ = self.plat.clear_pending(self.port);
        if self.rx_port != self.port {
            let _ = self.plat.clear_pending(self.rx_port);
        }
    }

    /// Waits for an event from the backend, up to `timeout`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let hit = self
            .plat
            .wait(&[self.port, self.rx_port], Some(timeout))
            .unwrap_or(false);
        if hit {
            self.ack();
        }
        hit
    }

    /// Breaks the protocol on purpose.
    pub fn misbehave(&mut self, how: Misbehave) {
        tracing::info!(?how, "netfront misbehaving on purpose");
        let req = |gref: u32, flags, id, size| NetifTxRequest {
            gref,
            offset: 0,
            flags,
            id,
            size,
        };
        match how {
            Misbehave::BadGref => self.put_tx(&[req(0xdead_beef, 0, 0, 60)]),
            Misbehave::Oversize => {
                let g = self.grants[2].0;
                let mut v: Vec<_> = (0..21u16)
                    .map(|i| req(g, NETTXF_MORE_DATA, i, 60))
                    .collect();
                v[0].size = 21 * 60;
                v[20].flags = 0;
                self.put_tx(&v);
            }
            Misbehave::IndexGames => {
                let ring = ring_page::<P>(&self.rings, 0);
                self.tx_prod = self.tx_prod.wrapping_add(1000);
                ring.atomic_u32(SRING_REQ_PROD_OFFSET)
                    .store(self.tx_prod, Ordering::Release);
                let _ = self.plat.notify(self.port);
            }
            Misbehave::Flood => {
                let mut f = [0u8; 60];
                f[..6].fill(0xff);
                f[6..12].copy_from_slice(&self.mac);
                for _ in 0..100_000 {
                    if !self.send(&f) {
                        let _ = self
                            .plat
                            .wait(&[self.port], Some(Duration::from_micros(100)));
                        self.ack();
                    }
                }
            }
        }
    }
}

impl<P: GrantTable + EventChannel + Clock> Drop for Netfront<'_, P> {
    fn drop(&mut self) {
        let _ = self.plat.close(self.port);
        if self.rx_port != self.port {
            let _ = self.plat.close(self.rx_port);
        }
        for g in &self.grants {
            let _ = self.plat.end_access(*g);
        }
    }
}
