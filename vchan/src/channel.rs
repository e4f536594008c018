//! [`Vchan`]: one end of a channel, over the platform traits.
//!
//! The service layer: it allocates or maps the shared pages through
//! [`GrantTable`], signals and waits through [`EventChannel`], advertises or
//! finds the channel through a [`XenStore`] client, and drives the sans-IO
//! [`Endpoint`] of [`crate::ring`].
//!
//! # Modes
//!
//! * **Stream** ([`Vchan::read`], [`Vchan::write`]): partial transfers, like
//!   `libxenvchan_read` / `libxenvchan_write`.
//! * **Packet** ([`Vchan::recv`], [`Vchan::send`]): all or nothing, like
//!   `libxenvchan_recv` / `libxenvchan_send`; a packet larger than its ring
//!   is [`Error::TooLarge`]. As in libxenvchan there is no framing on the
//!   wire: the receiver asks for the size it expects.
//! * **Blocking** (default) or **non-blocking** ([`Vchan::set_blocking`]):
//!   a non-blocking call that cannot make progress returns
//!   [`Error::WouldBlock`].
//!
//! # Waiting: spin, then block (adaptive)
//!
//! A blocking call that cannot make progress first **spins**: it re-reads
//! the peer's index, with `spin_loop` hints in between, for a time measured
//! on the platform [`Clock`] (the clock read every 32 checks), without
//! touching the notify bits, so a busy peer is never asked for an event.
//! Then it arms the notify bit, re-checks, and **blocks** in
//! [`EventChannel::wait`] on the channel's port, clearing the pending bit
//! when woken.
//!
//! The spin time adapts, as adaptive mutexes do: it starts at the maximum
//! set by [`Vchan::set_spin`] (default [`DEFAULT_SPIN`] = 50 µs), halves each
//! time a spin ends in blocking anyway, and doubles (plus 1 µs, up to the
//! maximum) each time spinning succeeds. When both ends run on their own
//! CPUs the spin almost always succeeds and small round trips cost well
//! under a few µs; on an oversubscribed host, where a spinner only delays
//! the peer it waits for, the spin quickly falls towards zero. Set the
//! maximum to zero on a single-vCPU domain whose peer cannot run meanwhile.
//!
//! While blocked, the wait times out every [`Vchan::set_liveness_poll`]
//! (default 100 ms) and before every wait the port's status is checked: a
//! port no longer connected while the peer's live flag is still set means
//! the peer's domain died ([`Error::PeerDied`]).
//!
//! # Closing
//!
//! Dropping a `Vchan` (or [`Vchan::close`]) does what `libxenvchan_close`
//! does: clear our live flag, notify the peer unconditionally, close the
//! port, withdraw grants (server). The server's xenstore entry is removed
//! by [`Vchan::close_and_withdraw`]; a `Vchan` keeps no xenstore handle.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::{Acquire, Release};
use core::time::Duration;

use windsor_xenstore_client::XenStore;
use xen::platform::{Clock, EventChannel, ForeignMapping, GrantTable, LocalPages, PortStatus};
use xen::shmem::{SharedMem, SharedRo};
use xen::{DomId, Errno, EvtchnPort, GrantRef, PAGE_SIZE};

use crate::layout::{
    field, grant_offset, Layout, Placement, LIVE_CONNECTED, LIVE_EXITED, LIVE_WAITING, NOTIFY_WRITE,
};
use crate::rendezvous::{self, Entry};
use crate::ring::{client_connect, Endpoint, PeerState, Role, Stall};
use crate::{Error, Result};

/// Default time a blocking call spins before it blocks (see the module docs).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default interval at which a blocked call re-checks the peer's liveness.
pub const DEFAULT_LIVENESS_POLL: Duration = Duration::from_millis(100);

/// What a server needs to offer a channel.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig<'a> {
    /// Our own domain id (owner of the xenstore nodes).
    pub server: DomId,
    /// The domain allowed to connect.
    pub client: DomId,
    /// The xenstore base path, e.g. [`rendezvous::path`].
    pub path: &'a str,
    /// Minimum size of the ring we read (left, client→server).
    pub read_min: usize,
    /// Minimum size of the ring we write (right, server→client).
    pub write_min: usize,
}

enum Mem<P: GrantTable> {
    Server {
        ctrl: P::Pages,
        left: Option<P::Pages>,
        right: Option<P::Pages>,
        grants: Vec<GrantRef>,
        path: String,
    },
    Client {
        ctrl: P::Mapping,
        left: Option<P::Mapping>,
        right: Option<P::Mapping>,
    },
}

/// The views one operation uses: control page, receive ring, send ring.
struct Views<'a> {
    ctrl: SharedMem<'a>,
    rx: SharedRo<'a>,
    tx: SharedMem<'a>,
}

const WRITABLE: &str = "mapping made writable at connect";

impl<P: GrantTable> Mem<P> {
    fn views(&self, layout: Layout) -> Views<'_> {
        fn in_page(ctrl: SharedMem<'_>, p: Placement, order: u8) -> Option<SharedMem<'_>> {
            match p {
                Placement::InPage { offset } => ctrl.slice(offset, 1 << order),
                Placement::Granted { .. } => None,
            }
        }
        let (lo, ro) = (layout.left_order(), layout.right_order());
        match self {
            Mem::Server {
                ctrl, left, right, ..
            } => {
                let ctrl = ctrl.mem();
                let rx = match left {
                    Some(p) => Some(p.mem()),
                    None => in_page(ctrl, layout.left(), lo),
                };
                let tx = match right {
                    Some(p) => Some(p.mem()),
                    None => in_page(ctrl, layout.right(), ro),
                };
                Views {
                    ctrl,
                    rx: rx.expect("ring allocated at init").ro(),
                    tx: tx.expect("ring allocated at init"),
                }
            }
            Mem::Client { ctrl, left, right } => {
                let ctrl = ctrl.rw().expect(WRITABLE);
                let rx = match right {
                    Some(m) => Some(m.ro()),
                    None => in_page(ctrl, layout.right(), ro).map(|m| m.ro()),
                };
                let tx = match left {
                    Some(m) => m.rw(),
                    None => in_page(ctrl, layout.left(), lo),
                };
                Views {
                    ctrl,
                    rx: rx.expect("ring mapped at connect"),
                    tx: tx.expect(WRITABLE),
                }
            }
        }
    }
}

/// One end of a vchan.
///
/// Every ring index, order and grant reference read from shared memory is
/// validated before use; a peer that breaks the protocol gets
/// [`Error::Protocol`] and the channel is closed.
pub struct Vchan<'p, P: GrantTable + EventChannel + Clock> {
    plat: &'p P,
    mem: Mem<P>,
    layout: Layout,
    ep: Endpoint,
    port: EvtchnPort,
    peer: DomId,
    blocking: bool,
    spin: Duration,
    /// The current (adaptive) spin time, at most `spin`.
    spin_now: Duration,
    liveness_poll: Duration,
    closed: bool,
}

/// Closes a port on early return from a constructor.
struct PortGuard<'p, P: EventChannel> {
    plat: &'p P,
    port: Option<EvtchnPort>,
}

impl<P: EventChannel> Drop for PortGuard<'_, P> {
    fn drop(&mut self) {
        if let Some(p) = self.port {
            let _ = self.plat.close(p);
        }
    }
}

impl<'p, P: GrantTable + EventChannel + Clock> Vchan<'p, P> {
    /// Offers a channel to `cfg.client` (`libxenvchan_server_init`):
    /// allocates and grants the shared page and ring pages, allocates an
    /// unbound port, and publishes both under `cfg.path` in xenstore.
    pub fn server<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        cfg: &ServerConfig<'_>,
    ) -> Result<Self> {
        let layout = Layout::for_sizes(cfg.read_min, cfg.write_min)?;
        let mut guard = PortGuard {
            plat,
            port: Some(plat.alloc_unbound(cfg.client)?),
        };
        let port = guard.port.expect("just set");
        plat.unmask(port)?;

        let mut grants = Vec::new();
        let res = (|| -> Result<_> {
            let ctrl = plat.alloc_pages(1)?;
            grants.push(plat.grant_access(&ctrl, 0, cfg.client, false)?);
            let mut ring = |order: u8| -> Result<Option<P::Pages>> {
                let n = Layout::pages(order);
                if n == 0 {
                    return Ok(None);
                }
                let pages = plat.alloc_pages(n)?;
                for i in 0..n {
                    grants.push(plat.grant_access(&pages, i, cfg.client, false)?);
                }
                Ok(Some(pages))
            };
            let left = ring(layout.left_order())?;
            let right = ring(layout.right_order())?;
            Ok((ctrl, left, right))
        })();
        let (ctrl, left, right) = match res {
            Ok(v) => v,
            Err(e) => {
                for g in grants {
                    let _ = plat.end_access(g);
                }
                return Err(e);
            }
        };

        let page = ctrl.mem();
        page.fill(0, PAGE_SIZE, 0);
        page.atomic_u16(field::LEFT_ORDER)
            .store(layout.left_order().into(), Release);
        page.atomic_u16(field::RIGHT_ORDER)
            .store(layout.right_order().into(), Release);
        for (i, g) in grants[1..].iter().enumerate() {
            page.atomic_u32(grant_offset(i)).store(g.0, Release);
        }
        page.atomic_u8(field::CLI_LIVE).store(LIVE_WAITING, Release);
        page.atomic_u8(field::SRV_NOTIFY).store(0, Release);
        page.atomic_u8(field::CLI_NOTIFY)
            .store(NOTIFY_WRITE, Release);
        page.atomic_u8(field::SRV_LIVE)
            .store(LIVE_CONNECTED, Release);
        let ep = Endpoint::new(
            Role::Server,
            layout.left_order(),
            layout.right_order(),
            &page,
        );

        let entry = Entry {
            ring_ref: grants[0],
            evtchn: port,
        };
        let mem = Mem::Server {
            ctrl,
            left,
            right,
            grants,
            path: cfg.path.into(),
        };
        guard.port = None;
        let v = Vchan::assemble(plat, mem, layout, ep, port, cfg.client);
        rendezvous::publish(xs, cfg.server, cfg.client, cfg.path, entry)?;
        tracing::debug!(
            client = cfg.client.0,
            path = cfg.path,
            ?layout,
            "vchan offered"
        );
        Ok(v)
    }

    /// Connects to the channel `server` offers under `path`
    /// (`libxenvchan_client_init`). Orders and grant lists found in the
    /// shared page are validated before anything is mapped from them.
    pub fn client<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        server: DomId,
        path: &str,
    ) -> Result<Self> {
        let entry = rendezvous::lookup(xs, path)?;
        let port = plat.bind_interdomain(server, entry.evtchn)?;
        let mut guard = PortGuard {
            plat,
            port: Some(port),
        };
        plat.unmask(port)?;
        plat.clear_pending(port)?;

        let ctrl = plat.map(server, &[entry.ring_ref], false)?;
        let page = match ctrl.rw() {
            Some(p) if p.len() >= PAGE_SIZE => p,
            _ => return Err(Error::Platform(Errno::EFAULT.into())),
        };
        let ro = page.ro();
        let layout = Layout::new(
            ro.load_u16(field::LEFT_ORDER, Acquire),
            ro.load_u16(field::RIGHT_ORDER, Acquire),
        )?;
        // Private copy of the grant list: read once, never re-read.
        let refs: Vec<GrantRef> = (0..layout.grant_count())
            .map(|i| GrantRef(ro.load_u32(grant_offset(i), Acquire)))
            .collect();
        let map = |p: Placement, readonly: bool| -> Result<Option<P::Mapping>> {
            match p {
                Placement::InPage { .. } => Ok(None),
                Placement::Granted { first, pages } => {
                    let m = plat.map(server, &refs[first..first + pages], readonly)?;
                    let ok = m.ro().len() == pages * PAGE_SIZE && (readonly || m.rw().is_some());
                    if !ok {
                        return Err(Error::Platform(Errno::EFAULT.into()));
                    }
                    Ok(Some(m))
                }
            }
        };
        let left = map(layout.left(), false)?;
        let right = map(layout.right(), true)?;
        let ep = Endpoint::new(
            Role::Client,
            layout.right_order(),
            layout.left_order(),
            &page,
        );
        client_connect(&ep, &page);
        let mem = Mem::Client { ctrl, left, right };
        guard.port = None;
        let v = Vchan::assemble(plat, mem, layout, ep, port, server);
        // Wake the server (libxenvchan does the same).
        plat.notify(port)?;
        tracing::debug!(server = server.0, path, ?layout, "vchan connected");
        Ok(v)
    }

    fn assemble(
        plat: &'p P,
        mem: Mem<P>,
        layout: Layout,
        ep: Endpoint,
        port: EvtchnPort,
        peer: DomId,
    ) -> Self {
        Vchan {
            plat,
            mem,
            layout,
            ep,
            port,
            peer,
            blocking: true,
            spin: DEFAULT_SPIN,
            spin_now: DEFAULT_SPIN,
            liveness_poll: DEFAULT_LIVENESS_POLL,
            closed: false,
        }
    }

    /// Blocking (default) or non-blocking calls.
    pub fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
    }

    /// The longest a blocking call re-checks the ring before it blocks
    /// (the spin adapts below this; see the module docs).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
        self.spin_now = spin;
    }

    /// How often a blocked call wakes to check the peer's liveness.
    pub fn set_liveness_poll(&mut self, every: Duration) {
        self.liveness_poll = every;
    }

    /// Our event-channel port (to wait on it together with others).
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// The peer domain.
    pub fn peer(&self) -> DomId {
        self.peer
    }

    /// The ring orders in use.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Size of the ring we read, in bytes.
    pub fn read_ring_size(&self) -> usize {
        self.ep.rx_size() as usize
    }

    /// Size of the ring we write, in bytes.
    pub fn write_ring_size(&self) -> usize {
        self.ep.tx_size() as usize
    }

    /// Whether the channel is usable: not closed by us or after an error,
    /// the peer has not closed (`libxenvchan_is_open`; a server whose
    /// client has not connected yet is open), and the peer's domain is
    /// still there (one `EVTCHNOP_status`).
    pub fn is_open(&self) -> bool {
        let state = self.ep.peer_state(&self.mem.views(self.layout).ctrl);
        !self.closed && state != PeerState::Closed && self.peer_alive(state)
    }

    /// Whether the peer is connected (the client has set its live flag).
    pub fn is_connected(&self) -> bool {
        !self.closed
            && self.ep.peer_state(&self.mem.views(self.layout).ctrl) == PeerState::Connected
    }

    /// Bytes ready to read; asks the peer to notify us when it writes more
    /// (`libxenvchan_data_ready`).
    pub fn data_ready(&mut self) -> Result<usize> {
        self.usable()?;
        let v = self.mem.views(self.layout);
        let r = self.ep.arm_data_ready(&v.ctrl);
        self.checked(r).map(|n| n as usize)
    }

    /// Bytes of space to write; asks the peer to notify us when it reads
    /// (`libxenvchan_buffer_space`).
    pub fn buffer_space(&mut self) -> Result<usize> {
        self.usable()?;
        let v = self.mem.views(self.layout);
        let r = self.ep.arm_buffer_space(&v.ctrl);
        self.checked(r).map(|n| n as usize)
    }

    /// Stream read: at least one byte (blocking) or what is there
    /// (non-blocking). `Ok(0)` means the peer closed and everything it sent
    /// has been read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.run(|v, arm| v.step_read(buf, 1, arm)) {
            Err(Error::Closed) if !self.closed => Ok(0),
            r => r,
        }
    }

    /// Stream write: blocking writes everything (or fails); non-blocking
    /// writes what fits now, [`Error::WouldBlock`] if nothing does.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.blocking {
            return self.run(|v, arm| v.step_write(buf, 1, arm));
        }
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            done += self.run(|v, arm| v.step_write(rest, 1, arm))?;
        }
        Ok(done)
    }

    /// Packet receive: exactly `buf.len()` bytes, or nothing.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let max = self.read_ring_size();
        if buf.len() > max {
            return Err(Error::TooLarge {
                len: buf.len(),
                max,
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        self.run(|v, arm| v.step_read(buf, len, arm)).map(|_| ())
    }

    /// Packet send: all of `buf`, or nothing.
    pub fn send(&mut self, buf: &[u8]) -> Result<()> {
        let max = self.write_ring_size();
        if buf.len() > max {
            return Err(Error::TooLarge {
                len: buf.len(),
                max,
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.run(|v, arm| v.step_write(buf, buf.len(), arm))
            .map(|_| ())
    }

    /// Waits for the next event on the channel's port (`libxenvchan_wait`),
    /// up to `timeout`; returns whether one arrived.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let hit = self.plat.wait(&[self.port], timeout)?;
        if hit {
            self.plat.clear_pending(self.port)?;
        }
        Ok(hit)
    }

    /// Closes our end (the same as dropping it).
    pub fn close(self) {}

    /// Closes our end and, on the server, removes the xenstore entry
    /// (`libxenvchan_close` does both).
    pub fn close_and_withdraw<X: XenStore + ?Sized>(mut self, xs: &X) -> Result<()> {
        self.shutdown();
        if let Mem::Server { path, .. } = &self.mem {
            rendezvous::withdraw(xs, path)?;
        }
        Ok(())
    }

    fn usable(&self) -> Result<()> {
        if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Turns a ring error into a closed channel.
    fn checked<T>(&mut self, r: core::result::Result<T, crate::ring::RingError>) -> Result<T> {
        r.map_err(|e| {
            tracing::warn!(peer = self.peer.0, error = %e, "vchan peer broke the protocol; closing");
            self.shutdown();
            Error::Protocol(e)
        })
    }

    fn kick(&self, k: crate::ring::Kick) -> Result<()> {
        if k.0 {
            self.plat.notify(self.port)?;
        }
        Ok(())
    }

    fn step_read(&mut self, dst: &mut [u8], min: usize, arm: bool) -> Result<Option<usize>> {
        self.usable()?;
        let v = self.mem.views(self.layout);
        let r = self.ep.try_read(&v.ctrl, &v.rx, dst, min, arm);
        match self.checked(r)? {
            Ok((n, k)) => {
                self.kick(k)?;
                Ok(Some(n))
            }
            Err(Stall::Wait) => Ok(None),
            Err(Stall::PeerClosed) => Err(Error::Closed),
        }
    }

    fn step_write(&mut self, src: &[u8], min: usize, arm: bool) -> Result<Option<usize>> {
        self.usable()?;
        let v = self.mem.views(self.layout);
        let r = self.ep.try_write(&v.ctrl, &v.tx, src, min, arm);
        match self.checked(r)? {
            Ok((n, k)) => {
                self.kick(k)?;
                Ok(Some(n))
            }
            Err(Stall::Wait) => Ok(None),
            Err(Stall::PeerClosed) => Err(Error::Closed),
        }
    }

    /// Runs `step` until it makes progress: once if non-blocking, else
    /// spin then block (see the module docs).
    fn run<T>(&mut self, mut step: impl FnMut(&mut Self, bool) -> Result<Option<T>>) -> Result<T> {
        if !self.blocking {
            if let Some(t) = step(self, true)? {
                return Ok(t);
            }
            self.check_peer()?;
            return Err(Error::WouldBlock);
        }
        if !self.spin_now.is_zero() {
            let deadline = self.plat.now().saturating_add(self.spin_now);
            loop {
                for _ in 0..32 {
                    if let Some(t) = step(self, false)? {
                        let grown = self.spin_now.saturating_mul(2);
                        self.spin_now = grown
                            .saturating_add(Duration::from_micros(1))
                            .min(self.spin);
                        return Ok(t);
                    }
                    core::hint::spin_loop();
                }
                if self.plat.now() >= deadline {
                    break;
                }
            }
            self.spin_now /= 2;
        } else if !self.spin.is_zero() {
            // Spinning is at zero: give it a chance to grow again.
            self.spin_now = Duration::from_micros(1);
        }
        let mut woken = false;
        loop {
            if let Some(t) = step(self, true)? {
                return Ok(t);
            }
            // Only after a wake-up or timeout that brought nothing: a
            // destroyed peer's port is raised, so death wakes us.
            if woken {
                self.check_peer()?;
            }
            if self.plat.wait(&[self.port], Some(self.liveness_poll))? {
                self.plat.clear_pending(self.port)?;
            }
            woken = true;
        }
    }

    /// Peer death: our port is no longer connected although the peer never
    /// cleared its live flag.
    fn check_peer(&mut self) -> Result<()> {
        let state = self.ep.peer_state(&self.mem.views(self.layout).ctrl);
        // Our own domain being gone is an error of its own, not peer death.
        self.plat.status(self.port)?;
        if self.peer_alive(state) {
            return Ok(());
        }
        tracing::debug!(peer = self.peer.0, "vchan peer died");
        self.shutdown();
        Err(Error::PeerDied)
    }

    fn peer_alive(&self, state: PeerState) -> bool {
        match (self.plat.status(self.port), state) {
            (Ok(PortStatus::Interdomain { .. }), _) => true,
            (Ok(PortStatus::Unbound { .. }), PeerState::Waiting) => true,
            // A clean close is reported as such by the ring, not as death.
            (_, PeerState::Closed) => true,
            _ => false,
        }
    }

    /// `libxenvchan_close`, minus xenstore: live flag, notify, close port,
    /// withdraw grants. Idempotent.
    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let v = self.mem.views(self.layout);
        self.ep.set_live(&v.ctrl, LIVE_EXITED);
        let _ = self.plat.notify(self.port);
        let _ = self.plat.close(self.port);
        if let Mem::Server { grants, .. } = &self.mem {
            for g in grants {
                if let Err(e) = self.plat.end_access(*g) {
                    tracing::debug!(gref = g.0, error = %e, "grant still mapped by the peer at close");
                }
            }
        }
    }
}

impl<P: GrantTable + EventChannel + Clock> Drop for Vchan<'_, P> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<P: GrantTable + EventChannel + Clock> core::fmt::Debug for Vchan<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vchan")
            .field("role", &self.ep.role())
            .field("peer", &self.peer)
            .field("port", &self.port)
            .field("layout", &self.layout)
            .field("closed", &self.closed)
            .finish()
    }
}
