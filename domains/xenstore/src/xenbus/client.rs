//! The client end: a domain's [`XenStore`] over its xenbus ring.
//!
//! [`XenbusClient`] writes one request at a time into `req` (streaming it
//! when it is longer than the free space), notifies the store, and reads
//! `rsp` until the reply with its `req_id` arrives; watch events read on
//! the way are queued (up to [`MAX_QUEUED_EVENTS`]) for
//! [`XenStore::next_event`]. Blocking is `EventChannel::wait` on the ring's
//! port, always after clearing the port's pending bit and looking at the
//! ring again, so no notification is lost. `no_std` + `alloc`: the
//! unikernel guests use it unchanged in Xen mode.
//!
//! The client is `!Sync` (one call at a time, `RefCell` inside): give each
//! thread its own ring, as each domain has one.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::Ordering::{Acquire, Release};
use core::time::Duration;

use xen::abi::xs_wire::{
    XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_RECONNECT,
    XENSTORE_SERVER_FEATURE_RECONNECTION,
};
use xen::platform::Platform;
use xen::{DomId, Errno, EvtchnPort, SharedMem};

use super::ring::{field, RingIo, Side};
use crate::client::{ops, Call, ClientError, Perm, Result, TxId, WatchEvent, XenStore};
use crate::wire::{error_from_name, Decoder, Packet, XsOp, PAYLOAD_MAX};

/// Watch events kept for [`XenStore::next_event`]; older ones are dropped
/// beyond this.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Default bound on the wait for one reply.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct State {
    ring: RingIo,
    dec: Decoder,
    next_req: u32,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
    broken: bool,
}

/// A xenstore client over the domain's own xenbus ring; see the module doc.
pub struct XenbusClient<'p, P: Platform + ?Sized> {
    plat: &'p P,
    page: SharedMem<'p>,
    port: EvtchnPort,
    reply_timeout: Duration,
    st: RefCell<State>,
}

impl<P: Platform + ?Sized> core::fmt::Debug for XenbusClient<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XenbusClient")
            .field("port", &self.port)
            .finish()
    }
}

impl<'p, P: Platform + ?Sized> XenbusClient<'p, P> {
    /// A client on the ring the domain was built with
    /// ([`Platform::store_ring`]); `None` if it has none.
    pub fn new(plat: &'p P) -> Option<Self> {
        let ring = plat.store_ring()?;
        Self::with_ring(plat, ring.page, ring.port)
    }

    /// A client on an explicit ring page and bound port.
    pub fn with_ring(plat: &'p P, page: SharedMem<'p>, port: EvtchnPort) -> Option<Self> {
        let mut ring = RingIo::new(Side::Client);
        ring.resync(page.ro()).ok()?;
        Some(XenbusClient {
            plat,
            page,
            port,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            st: RefCell::new(State {
                ring,
                dec: Decoder::new(),
                next_req: 1,
                events: VecDeque::new(),
                dropped_events: 0,
                broken: false,
            }),
        })
    }

    /// Sets the bound on the wait for one reply.
    pub fn set_reply_timeout(&mut self, t: Duration) {
        self.reply_timeout = t;
    }

    /// The ring's port.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Watch events dropped because [`MAX_QUEUED_EVENTS`] were waiting.
    pub fn dropped_events(&self) -> u64 {
        self.st.borrow().dropped_events
    }

    /// The `error` the server reported (`XENSTORE_ERROR_*`, 0 for none).
    pub fn server_error(&self) -> u32 {
        self.page.ro().load_u32(field::ERROR, Acquire)
    }

    fn waiting(&self, deadline: Option<Duration>) -> Result<()> {
        let slice = match deadline {
            Some(d) => {
                let now = self.plat.now();
                if now >= d {
                    return Err(ClientError::Timeout);
                }
                Some(d - now)
            }
            None => None,
        };
        self.plat
            .wait(&[self.port], slice)
            .map_err(|_| ClientError::Disconnected)?;
        Ok(())
    }

    fn fail(st: &mut State) -> ClientError {
        st.broken = true;
        ClientError::Disconnected
    }

    /// Reads every available byte; whole messages go to `f`.
    fn drain(&self, st: &mut State, mut f: impl FnMut(&mut State, Packet)) -> Result<()> {
        let mut buf = [0u8; 256];
        let mut notify = false;
        loop {
            let want = st.dec.need().min(buf.len());
            let m = st
                .ring
                .read(self.page, &mut buf[..want])
                .map_err(|_| Self::fail(st))?;
            notify |= m.notify;
            if m.bytes == 0 {
                break;
            }
            let (_, pkt) = st.dec.feed(&buf[..m.bytes]).map_err(|_| {
                st.broken = true;
                ClientError::Protocol
            })?;
            if let Some(p) = pkt {
                f(st, p);
            }
        }
        if notify {
            // The store stopped writing because the ring was full.
            self.plat
                .notify(self.port)
                .map_err(|_| ClientError::Disconnected)?;
        }
        Ok(())
    }

    fn queue_event(st: &mut State, p: &Packet) {
        if st.events.len() >= MAX_QUEUED_EVENTS {
            st.events.pop_front();
            st.dropped_events += 1;
        }
        st.events.push_back(ops::watch_event(&p.payload));
    }

    /// Sends one request and waits for its reply; returns the reply
    /// payload, or the store's error.
    pub fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
        if payload.len() > PAYLOAD_MAX {
            return Err(ClientError::Store(Errno::E2BIG));
        }
        let mut st = self.st.borrow_mut();
        if st.broken || self.server_error() != XENSTORE_ERROR_NONE {
            return Err(ClientError::Disconnected);
        }
        let req = st.next_req;
        st.next_req = st.next_req.wrapping_add(1).max(1);
        let bytes = Packet::new(op, req, tx.0, payload.to_vec()).to_vec();
        let deadline = self.plat.now() + self.reply_timeout;
        let mut sent = 0;
        let mut reply = None;
        loop {
            let _ = self.plat.clear_pending(self.port);
            if sent < bytes.len() {
                let n = st
                    .ring
                    .write(self.page, &bytes[sent..])
                    .map_err(|_| Self::fail(&mut st))?;
                if n > 0 {
                    sent += n;
                    self.plat
                        .notify(self.port)
                        .map_err(|_| ClientError::Disconnected)?;
                }
            }
            self.drain(&mut st, |st, p| {
                if p.op() == Some(XsOp::WatchEvent) {
                    Self::queue_event(st, &p);
                } else if p.header.req_id == req && reply.is_none() {
                    reply = Some(p);
                } else {
                    tracing::debug!(req_id = p.header.req_id, "xenbus: stray reply dropped");
                }
            })?;
            if let Some(p) = reply.take() {
                if p.op() == Some(XsOp::Error) {
                    return Err(ClientError::Store(
                        error_from_name(&p.payload).unwrap_or(Errno::EINVAL),
                    ));
                }
                return Ok(p.payload);
            }
            if self.server_error() != XENSTORE_ERROR_NONE {
                return Err(Self::fail(&mut st));
            }
            if let Err(e) = self.waiting(Some(deadline)) {
                // Half a request in the ring breaks framing for good; a
                // whole one only leaves a stray reply, dropped by req_id.
                if sent < bytes.len() {
                    st.broken = true;
                }
                return Err(e);
            }
        }
    }

    /// The `XENSTORE_RECONNECT` handshake: asks the store to drop this
    /// connection's state (watches, transactions, anything in flight) and
    /// reset the ring, and waits until it has. Also clears an `error` the
    /// store set. Needs `XENSTORE_SERVER_FEATURE_RECONNECTION`.
    pub fn reconnect(&self, timeout: Duration) -> Result<()> {
        let features = self.page.ro().load_u32(field::SERVER_FEATURES, Acquire);
        if features & XENSTORE_SERVER_FEATURE_RECONNECTION == 0 {
            return Err(ClientError::Store(Errno::ENOSYS));
        }
        let mut st = self.st.borrow_mut();
        let deadline = self.plat.now() + timeout;
        self.page
            .atomic_u32(field::CONNECTION)
            .store(XENSTORE_RECONNECT, Release);
        let _ = self.plat.notify(self.port);
        loop {
            let _ = self.plat.clear_pending(self.port);
            if self.page.ro().load_u32(field::CONNECTION, Acquire) == XENSTORE_CONNECTED {
                break;
            }
            self.waiting(Some(deadline))?;
        }
        st.ring
            .resync(self.page.ro())
            .map_err(|_| ClientError::Protocol)?;
        st.dec = Decoder::new();
        st.events.clear();
        st.broken = false;
        Ok(())
    }

    /// `XS_INTRODUCE` (dom0 only): the store should serve `dom`'s ring at
    /// frame `gfn`, port `port` of `dom`.
    pub fn introduce(&self, dom: DomId, gfn: u64, port: EvtchnPort) -> Result<()> {
        ops::introduce(self, dom, gfn, port)
    }

    /// `XS_RELEASE` (dom0 only).
    pub fn release(&self, dom: DomId) -> Result<()> {
        ops::release(self, dom)
    }

    /// `XS_GET_DOMAIN_PATH`.
    pub fn domain_path(&self, dom: DomId) -> Result<String> {
        ops::domain_path(self, dom)
    }
}

impl<P: Platform + ?Sized> Call for XenbusClient<'_, P> {
    fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
        XenbusClient::call(self, op, tx, payload)
    }
}

impl<P: Platform + ?Sized> XenStore for XenbusClient<'_, P> {
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>> {
        ops::read(self, tx, path)
    }
    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<()> {
        ops::write(self, tx, path, value)
    }
    fn mkdir(&self, tx: TxId, path: &str) -> Result<()> {
        ops::mkdir(self, tx, path)
    }
    fn rm(&self, tx: TxId, path: &str) -> Result<()> {
        ops::rm(self, tx, path)
    }
    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>> {
        ops::directory(self, tx, path)
    }
    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<Perm>> {
        ops::get_perms(self, tx, path)
    }
    fn set_perms(&self, tx: TxId, path: &str, perms: &[Perm]) -> Result<()> {
        ops::set_perms(self, tx, path, perms)
    }
    fn transaction_start(&self) -> Result<TxId> {
        ops::transaction_start(self)
    }
    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<()> {
        ops::transaction_end(self, tx, commit)
    }
    fn watch(&self, path: &str, token: &str) -> Result<()> {
        ops::watch(self, path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<()> {
        ops::unwatch(self, path, token)
    }
    fn next_event(&self, timeout: Option<Duration>) -> Result<WatchEvent> {
        let deadline = timeout.map(|t| self.plat.now() + t);
        loop {
            {
                let mut st = self.st.borrow_mut();
                if let Some(e) = st.events.pop_front() {
                    return Ok(e);
                }
                if st.broken || self.server_error() != XENSTORE_ERROR_NONE {
                    return Err(ClientError::Disconnected);
                }
                let _ = self.plat.clear_pending(self.port);
                self.drain(&mut st, |st, p| {
                    if p.op() == Some(XsOp::WatchEvent) {
                        Self::queue_event(st, &p);
                    }
                })?;
                if let Some(e) = st.events.pop_front() {
                    return Ok(e);
                }
            }
            self.waiting(deadline)?;
        }
    }
}
