//! xenbus: the xenstore ring between a domain and the xenstore domain.
//!
//! Producer/consumer: the *client* (any domain) writes requests into `req`
//! and reads replies and watch events from `rsp`; the *server* (the
//! xenstore domain) does the opposite. Each side owns one index per ring
//! and only reads the other's. The page mirrors `struct
//! xenstore_domain_interface` of `xen/include/public/io/xs_wire.h`
//! (Xen 4.17):
//!
//! ```text
//!    0      req[1024]      client → server
//! 1024      rsp[1024]      server → client
//! 2048      req_cons  req_prod  rsp_cons  rsp_prod   (u32 each, free-running)
//! 2064      server_features  connection  error
//! ```
//!
//! [`XsRing`] is the byte-ring core for either side: it reads the peer's
//! index once (Acquire), refuses an index that claims more than the ring
//! holds, copies bytes through `xen::shmem` views into private memory, and
//! publishes its own index with Release. [`XenbusClient`] implements
//! [`windsor_xenstore::client::XenStore`] over a ring and an event channel,
//! generic over the platform traits, so it runs in every Windsor domain.
//!
//! This module is a stand-in until the xenstore crate's own xenbus
//! transport (`domains/xenstore/src/xenbus/`) lands; its wire handling is
//! the store's own codec ([`windsor_xenstore::wire`]).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::time::Duration;

use windsor_xenstore::client::{ClientError, Perm, Result, TxId, WatchEvent, XenStore};
use windsor_xenstore::perms::Perms;
use windsor_xenstore::wire::{error_from_name, Decoder, Packet, XsOp};
use xen::abi::xs_wire::XENSTORE_RING_SIZE;
use xen::platform::{Clock, EventChannel};
use xen::{DomId, EvtchnPort, SharedMem};

/// Field offsets in the ring page (`xenstore_domain_interface`).
pub mod field {
    /// Request ring (client → server).
    pub const REQ: usize = 0;
    /// Response ring (server → client).
    pub const RSP: usize = 1024;
    /// Server's consumer index of `req`.
    pub const REQ_CONS: usize = 2048;
    /// Client's producer index of `req`.
    pub const REQ_PROD: usize = 2052;
    /// Client's consumer index of `rsp`.
    pub const RSP_CONS: usize = 2056;
    /// Server's producer index of `rsp`.
    pub const RSP_PROD: usize = 2060;
    /// Bytes of the page the interface uses.
    pub const END: usize = 2076;
}

/// Which end of the ring we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Writes requests, reads replies (every domain).
    Client,
    /// Reads requests, writes replies (the xenstore domain).
    Server,
}

/// The peer broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCorrupt {
    /// The peer's index.
    pub peer: u32,
    /// Our own index.
    pub own: u32,
}

/// One end of a xenstore ring page.
#[derive(Clone, Copy)]
pub struct XsRing<'a> {
    page: SharedMem<'a>,
    side: Side,
}

impl<'a> XsRing<'a> {
    /// A view of the ring in `page` (at least [`field::END`] bytes).
    pub fn new(page: SharedMem<'a>, side: Side) -> Option<Self> {
        (page.len() >= field::END).then_some(XsRing { page, side })
    }

    /// (ring we write, our producer index, peer's consumer index)
    fn out(&self) -> (usize, usize, usize) {
        match self.side {
            Side::Client => (field::REQ, field::REQ_PROD, field::REQ_CONS),
            Side::Server => (field::RSP, field::RSP_PROD, field::RSP_CONS),
        }
    }

    /// (ring we read, our consumer index, peer's producer index)
    fn inp(&self) -> (usize, usize, usize) {
        match self.side {
            Side::Client => (field::RSP, field::RSP_CONS, field::RSP_PROD),
            Side::Server => (field::REQ, field::REQ_CONS, field::REQ_PROD),
        }
    }

    /// Writes as much of `data` as fits; returns the bytes written.
    pub fn write(&self, data: &[u8]) -> core::result::Result<usize, RingCorrupt> {
        let (ring, own_at, peer_at) = self.out();
        let prod = self.page.atomic_u32(own_at).load(Relaxed);
        let cons = self.page.atomic_u32(peer_at).load(Acquire);
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENSTORE_RING_SIZE {
            return Err(RingCorrupt {
                peer: cons,
                own: prod,
            });
        }
        let n = data.len().min(XENSTORE_RING_SIZE - used);
        let mut done = 0;
        while done < n {
            let at = (prod as usize + done) % XENSTORE_RING_SIZE;
            let k = (XENSTORE_RING_SIZE - at).min(n - done);
            self.page.write_bytes(ring + at, &data[done..done + k]);
            done += k;
        }
        self.page
            .atomic_u32(own_at)
            .store(prod.wrapping_add(n as u32), Release);
        Ok(n)
    }

    /// Reads up to `buf.len()` available bytes; returns how many.
    pub fn read(&self, buf: &mut [u8]) -> core::result::Result<usize, RingCorrupt> {
        let (ring, own_at, peer_at) = self.inp();
        let cons = self.page.atomic_u32(own_at).load(Relaxed);
        let prod = self.page.atomic_u32(peer_at).load(Acquire);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > XENSTORE_RING_SIZE {
            return Err(RingCorrupt {
                peer: prod,
                own: cons,
            });
        }
        let n = buf.len().min(avail);
        let mut done = 0;
        while done < n {
            let at = (cons as usize + done) % XENSTORE_RING_SIZE;
            let k = (XENSTORE_RING_SIZE - at).min(n - done);
            self.page.read_bytes(ring + at, &mut buf[done..done + k]);
            done += k;
        }
        self.page
            .atomic_u32(own_at)
            .store(cons.wrapping_add(n as u32), Release);
        Ok(n)
    }

    /// Resets all four indices (the builder hands out zeroed pages; a
    /// server may call this before the client runs).
    pub fn reset(&self) {
        for at in [
            field::REQ_CONS,
            field::REQ_PROD,
            field::RSP_CONS,
            field::RSP_PROD,
        ] {
            self.page.atomic_u32(at).store(0, Release);
        }
    }
}

/// Default time a call waits for the store's reply.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

struct ClientState {
    dec: Decoder,
    next_req: u32,
    events: VecDeque<WatchEvent>,
    broken: bool,
}

/// A xenstore client over a xenbus ring and its event channel.
///
/// Calls are synchronous (one request in flight); watch events that arrive
/// while waiting for a reply are queued for [`XenStore::next_event`].
/// Every wait is bounded ([`DEFAULT_REPLY_TIMEOUT`] per call).
pub struct XenbusClient<'p, P: EventChannel + Clock> {
    plat: &'p P,
    ring: XsRing<'p>,
    port: EvtchnPort,
    reply_timeout: Duration,
    st: RefCell<ClientState>,
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl<'p, P: EventChannel + Clock> XenbusClient<'p, P> {
    /// A client on `page` (the domain's xenstore ring) and `port` (a bound
    /// local port to the store).
    pub fn new(plat: &'p P, page: SharedMem<'p>, port: EvtchnPort) -> Option<Self> {
        Some(XenbusClient {
            plat,
            ring: XsRing::new(page, Side::Client)?,
            port,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            st: RefCell::new(ClientState {
                dec: Decoder::new(),
                next_req: 1,
                events: VecDeque::new(),
                broken: false,
            }),
        })
    }

    /// The event channel port of the connection.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Sets how long a call waits for its reply.
    pub fn set_reply_timeout(&mut self, t: Duration) {
        self.reply_timeout = t;
    }

    fn wait(&self, deadline: Duration) -> Result<()> {
        let now = self.plat.now();
        if now >= deadline {
            return Err(ClientError::Timeout);
        }
        let slice = (deadline - now).min(Duration::from_millis(50));
        self.plat
            .wait(&[self.port], Some(slice))
            .map_err(|_| ClientError::Disconnected)?;
        Ok(())
    }

    /// Moves every available byte from the ring into the decoder; whole
    /// packets go to `f`. Returns whether anything was read.
    fn pump(&self, st: &mut ClientState, mut f: impl FnMut(Packet)) -> Result<bool> {
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        let mut any = false;
        loop {
            let n = self.ring.read(&mut buf).map_err(|_| {
                st.broken = true;
                ClientError::Protocol
            })?;
            if n == 0 {
                break;
            }
            any = true;
            let mut at = 0;
            while at < n {
                let (used, pkt) = st.dec.feed(&buf[at..n]).map_err(|_| {
                    st.broken = true;
                    ClientError::Protocol
                })?;
                at += used;
                if let Some(p) = pkt {
                    f(p);
                }
            }
        }
        if any {
            // The server may be waiting for room to write.
            let _ = self.plat.notify(self.port);
        }
        Ok(any)
    }

    fn event_of(p: &Packet) -> WatchEvent {
        let mut parts = p.payload.split(|&b| b == 0);
        let path = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default();
        WatchEvent {
            path: String::from_utf8_lossy(path).into(),
            token: String::from_utf8_lossy(token).into(),
        }
    }

    /// Sends one request and waits for its reply.
    pub fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
        let mut st = self.st.borrow_mut();
        if st.broken {
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
                let n = self.ring.write(&bytes[sent..]).map_err(|_| {
                    st.broken = true;
                    ClientError::Protocol
                })?;
                if n > 0 {
                    sent += n;
                    self.plat
                        .notify(self.port)
                        .map_err(|_| ClientError::Disconnected)?;
                }
            }
            let mut events = Vec::new();
            self.pump(&mut st, |p| {
                if p.op() == Some(XsOp::WatchEvent) {
                    events.push(Self::event_of(&p));
                } else if p.header.req_id == req && reply.is_none() {
                    reply = Some(p);
                }
            })?;
            st.events.extend(events);
            if let Some(p) = reply.take() {
                if p.op() == Some(XsOp::Error) {
                    let e = error_from_name(&p.payload).unwrap_or(xen::Errno::EINVAL);
                    return Err(ClientError::Store(e));
                }
                return Ok(p.payload);
            }
            // Wait for room (request not all written) or for the reply.
            self.wait(deadline)?;
        }
    }

    /// `XS_INTRODUCE`: tells the store about domain `dom`'s ring (frame
    /// `gfn`, event channel `port` in `dom`). dom0 only.
    pub fn introduce(&self, dom: DomId, gfn: u64, port: EvtchnPort) -> Result<()> {
        let arg = alloc::format!("{}\0{}\0{}\0", dom.0, gfn, port.0);
        self.call(XsOp::Introduce, TxId::NONE, arg.as_bytes())
            .map(|_| ())
    }

    /// `XS_RELEASE`: the store drops domain `dom`, its connection and the
    /// nodes it owns. dom0 only.
    pub fn release(&self, dom: DomId) -> Result<()> {
        let arg = alloc::format!("{}\0", dom.0);
        self.call(XsOp::Release, TxId::NONE, arg.as_bytes())
            .map(|_| ())
    }

    /// `XS_GET_DOMAIN_PATH`.
    pub fn domain_path(&self, dom: DomId) -> Result<String> {
        let arg = alloc::format!("{}\0", dom.0);
        let r = self.call(XsOp::GetDomainPath, TxId::NONE, arg.as_bytes())?;
        let s = r.strip_suffix(b"\0").unwrap_or(&r);
        Ok(String::from_utf8_lossy(s).into())
    }
}

impl<P: EventChannel + Clock> XenStore for XenbusClient<'_, P> {
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>> {
        self.call(XsOp::Read, tx, &cstr(path))
    }

    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<()> {
        let mut v = cstr(path);
        v.extend_from_slice(value);
        self.call(XsOp::Write, tx, &v).map(|_| ())
    }

    fn mkdir(&self, tx: TxId, path: &str) -> Result<()> {
        self.call(XsOp::Mkdir, tx, &cstr(path)).map(|_| ())
    }

    fn rm(&self, tx: TxId, path: &str) -> Result<()> {
        self.call(XsOp::Rm, tx, &cstr(path)).map(|_| ())
    }

    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>> {
        let r = self.call(XsOp::Directory, tx, &cstr(path))?;
        Ok(r.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into())
            .collect())
    }

    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<Perm>> {
        let r = self.call(XsOp::GetPerms, tx, &cstr(path))?;
        let p = Perms::parse(&r).map_err(|_| ClientError::Protocol)?;
        Ok(p.as_slice().to_vec())
    }

    fn set_perms(&self, tx: TxId, path: &str, perms: &[Perm]) -> Result<()> {
        let mut v = cstr(path);
        let p = Perms::from_slice(perms).ok_or(ClientError::Store(xen::Errno::EINVAL))?;
        p.emit(&mut v);
        self.call(XsOp::SetPerms, tx, &v).map(|_| ())
    }

    fn transaction_start(&self) -> Result<TxId> {
        let r = self.call(XsOp::TransactionStart, TxId::NONE, b"\0")?;
        let s = r.strip_suffix(b"\0").unwrap_or(&r);
        core::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(TxId)
            .ok_or(ClientError::Protocol)
    }

    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.call(XsOp::TransactionEnd, tx, arg).map(|_| ())
    }

    fn watch(&self, path: &str, token: &str) -> Result<()> {
        let mut v = cstr(path);
        v.extend_from_slice(&cstr(token));
        self.call(XsOp::Watch, TxId::NONE, &v).map(|_| ())
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<()> {
        let mut v = cstr(path);
        v.extend_from_slice(&cstr(token));
        self.call(XsOp::Unwatch, TxId::NONE, &v).map(|_| ())
    }

    fn next_event(&self, timeout: Option<Duration>) -> Result<WatchEvent> {
        // Without a timeout, wait in bounded slices forever.
        let deadline = timeout.map(|t| self.plat.now() + t);
        loop {
            {
                let mut st = self.st.borrow_mut();
                if let Some(e) = st.events.pop_front() {
                    return Ok(e);
                }
                if st.broken {
                    return Err(ClientError::Disconnected);
                }
                let _ = self.plat.clear_pending(self.port);
                let mut events = Vec::new();
                self.pump(&mut st, |p| {
                    if p.op() == Some(XsOp::WatchEvent) {
                        events.push(Self::event_of(&p));
                    }
                })?;
                st.events.extend(events);
                if let Some(e) = st.events.pop_front() {
                    return Ok(e);
                }
            }
            let d = deadline.unwrap_or_else(|| self.plat.now() + Duration::from_secs(1));
            self.wait(d)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use windsor_xenstore::{Config, ConnId, Store};

    const T: TxId = TxId::NONE;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    fn page() -> &'static mut Page {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(Page([0; 4096])))
    }

    fn view(p: &'static mut Page) -> SharedMem<'static> {
        // SAFETY: the page is leaked (lives forever), aligned, and only
        // accessed through this view from here on.
        unsafe { SharedMem::from_raw(NonNull::new(p.0.as_mut_ptr()).expect("non-null"), 4096) }
    }

    #[test]
    fn bytes_cross_in_both_directions_with_wrap_around() {
        let mem = view(page());
        let c = XsRing::new(mem, Side::Client).expect("ring");
        let s = XsRing::new(mem, Side::Server).expect("ring");
        let mut got = Vec::new();
        let mut buf = [0u8; 700];
        for round in 0u32..20 {
            let msg: Vec<u8> = (0..700).map(|i| (i as u32 * 7 + round) as u8).collect();
            assert_eq!(c.write(&msg), Ok(700));
            got.clear();
            let n = s.read(&mut buf).expect("read");
            got.extend_from_slice(&buf[..n]);
            assert_eq!(got, msg);
            assert_eq!(s.write(&msg[..300]), Ok(300));
            assert_eq!(c.read(&mut buf), Ok(300));
            assert_eq!(&buf[..300], &msg[..300]);
        }
    }

    #[test]
    fn a_full_ring_takes_no_more_and_a_lying_peer_is_caught() {
        let mem = view(page());
        let c = XsRing::new(mem, Side::Client).expect("ring");
        assert_eq!(c.write(&[1; 2000]), Ok(XENSTORE_RING_SIZE));
        assert_eq!(c.write(&[1; 10]), Ok(0));
        // The server claims to have produced more than the ring holds.
        mem.atomic_u32(field::RSP_PROD).store(5000, Release);
        let mut buf = [0u8; 16];
        assert!(c.read(&mut buf).is_err());
        // A consumer index ahead of our producer index is a lie too.
        mem.atomic_u32(field::REQ_CONS).store(9999, Release);
        assert!(c.write(&[1]).is_err());
    }

    /// A platform whose "other domain" is a [`Store`] serving the ring on
    /// every notify and wait, with a simulated clock.
    struct FakeXen {
        page: SharedMem<'static>,
        store: RefCell<Store>,
        dom0: ConnId,
        guest: ConnId,
        dec: RefCell<Decoder>,
        out: RefCell<VecDeque<u8>>,
        now: core::cell::Cell<Duration>,
        /// When false the server never answers.
        alive: bool,
    }

    impl FakeXen {
        fn new(alive: bool) -> Self {
            let mut store = Store::new(Config::default());
            let dom0 = store.connect(DomId::DOM0);
            let guest = store.connect(DomId(7));
            FakeXen {
                page: view(page()),
                store: RefCell::new(store),
                dom0,
                guest,
                dec: RefCell::new(Decoder::new()),
                out: RefCell::new(VecDeque::new()),
                now: core::cell::Cell::new(Duration::ZERO),
                alive,
            }
        }

        /// Serves the guest's ring: requests in, replies and events out.
        fn serve(&self) {
            if !self.alive {
                return;
            }
            let ring = XsRing::new(self.page, Side::Server).expect("ring");
            let mut buf = [0u8; 256];
            let mut store = self.store.borrow_mut();
            loop {
                let n = ring.read(&mut buf).expect("client keeps the protocol");
                if n == 0 {
                    break;
                }
                let mut at = 0;
                while at < n {
                    let (used, pkt) = self.dec.borrow_mut().feed(&buf[at..n]).expect("framing");
                    at += used;
                    if let Some(p) = pkt {
                        store
                            .handle(self.guest, &p.header, &p.payload)
                            .expect("handled");
                    }
                }
            }
            let mut out = self.out.borrow_mut();
            while let Some(p) = store.pop(self.guest) {
                out.extend(p.to_vec());
            }
            while let Some(p) = store.pop(self.dom0) {
                drop(p);
            }
            let (a, _) = out.as_slices();
            let n = ring.write(a).expect("client keeps the protocol");
            out.drain(..n);
        }

        /// dom0 creates `/local/domain/7`, owned by the guest (as the
        /// Windsor dom0 does before introducing it).
        fn give_subtree(&self) {
            self.dom0_write("/local/domain/7", b"");
            let perms = Perms::owner(DomId(7), windsor_xenstore::client::Access::None);
            let mut p = cstr("/local/domain/7");
            perms.emit(&mut p);
            let h = windsor_xenstore::wire::Header::new(XsOp::SetPerms, 2, 0, p.len() as u32);
            self.store
                .borrow_mut()
                .handle(self.dom0, &h, &p)
                .expect("set perms");
        }

        /// dom0 writes `path` (fires the guest's watches).
        fn dom0_write(&self, path: &str, value: &[u8]) {
            let mut payload = cstr(path);
            payload.extend_from_slice(value);
            let h = windsor_xenstore::wire::Header::new(XsOp::Write, 1, 0, payload.len() as u32);
            self.store
                .borrow_mut()
                .handle(self.dom0, &h, &payload)
                .expect("dom0 write");
        }
    }

    impl Clock for FakeXen {
        fn now(&self) -> Duration {
            self.now.get()
        }
    }

    impl EventChannel for FakeXen {
        fn alloc_unbound(&self, _: DomId) -> xen::platform::Result<EvtchnPort> {
            Ok(EvtchnPort(1))
        }
        fn bind_interdomain(&self, _: DomId, _: EvtchnPort) -> xen::platform::Result<EvtchnPort> {
            Ok(EvtchnPort(1))
        }
        fn bind_virq(&self, _: xen::platform::Virq) -> xen::platform::Result<EvtchnPort> {
            Ok(EvtchnPort(2))
        }
        fn notify(&self, _: EvtchnPort) -> xen::platform::Result<()> {
            self.serve();
            Ok(())
        }
        fn mask(&self, _: EvtchnPort) -> xen::platform::Result<()> {
            Ok(())
        }
        fn unmask(&self, _: EvtchnPort) -> xen::platform::Result<()> {
            Ok(())
        }
        fn close(&self, _: EvtchnPort) -> xen::platform::Result<()> {
            Ok(())
        }
        fn status(&self, _: EvtchnPort) -> xen::platform::Result<xen::platform::PortStatus> {
            Ok(xen::platform::PortStatus::Closed)
        }
        fn clear_pending(&self, _: EvtchnPort) -> xen::platform::Result<bool> {
            Ok(false)
        }
        fn wait(&self, _: &[EvtchnPort], t: Option<Duration>) -> xen::platform::Result<bool> {
            self.now
                .set(self.now.get() + t.unwrap_or(Duration::from_millis(1)));
            self.serve();
            Ok(true)
        }
    }

    #[test]
    fn client_calls_map_replies_and_errors() {
        let x = FakeXen::new(true);
        let c = XenbusClient::new(&x, x.page, EvtchnPort(1)).expect("client");
        x.give_subtree();

        c.write(T, "data/booted", b"1").expect("relative write");
        assert_eq!(
            c.read(T, "/local/domain/7/data/booted").expect("read"),
            b"1"
        );
        assert_eq!(c.directory(T, "data").expect("dir"), ["booted"]);
        assert_eq!(
            c.read(T, "data/nope"),
            Err(ClientError::Store(xen::Errno::ENOENT))
        );
        // dom0's node is not the guest's to write.
        assert_eq!(
            c.write(T, "/local/domain/0/x", b"1"),
            Err(ClientError::Store(xen::Errno::EACCES))
        );
        // A value bigger than the ring crosses it in pieces.
        let big = alloc::vec![b'x'; 2000];
        c.write(T, "data/big", &big).expect("big write");
        assert_eq!(c.read(T, "data/big").expect("big read"), big);
        let tx = c.transaction_start().expect("tx");
        c.write(tx, "data/t", b"1").expect("tx write");
        c.transaction_end(tx, true).expect("commit");
        assert_eq!(c.read(T, "data/t").expect("read"), b"1");
    }

    #[test]
    fn watch_events_are_delivered_and_queued_across_calls() {
        let x = FakeXen::new(true);
        let c = XenbusClient::new(&x, x.page, EvtchnPort(1)).expect("client");
        x.give_subtree();
        x.dom0_write("/local/domain/7/control/shutdown", b"");
        c.watch("/local/domain/7/control/shutdown", "tok")
            .expect("watch");
        // The initial event of a new watch.
        let e = c
            .next_event(Some(Duration::from_secs(1)))
            .expect("first event");
        assert_eq!(
            (e.path.as_str(), e.token.as_str()),
            ("/local/domain/7/control/shutdown", "tok")
        );
        // An event that arrives while a call waits for its reply is queued.
        x.dom0_write("/local/domain/7/control/shutdown", b"poweroff");
        let _ = c.read(T, "/local/domain/7/control/shutdown");
        let e = c
            .next_event(Some(Duration::from_secs(1)))
            .expect("queued event");
        assert_eq!(e.token, "tok");
        assert_eq!(
            c.next_event(Some(Duration::from_millis(100))),
            Err(ClientError::Timeout)
        );
    }

    #[test]
    fn a_store_that_never_answers_times_out() {
        let x = FakeXen::new(false);
        let c = XenbusClient::new(&x, x.page, EvtchnPort(1)).expect("client");
        assert_eq!(c.read(T, "x"), Err(ClientError::Timeout));
        assert!(x.now() >= DEFAULT_REPLY_TIMEOUT);
    }
}
