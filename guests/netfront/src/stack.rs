//! smoltcp on top of the frontend: an IPv4 interface that answers ping
//! (smoltcp replies to echo requests itself), a TCP echo service, and
//! blocking client helpers (ping, a TCP echo exchange) for guests that
//! test others.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
    Ipv4Cidr,
};
use windsor_xenstore::client::XenStore;
use xen::platform::{Clock, EventChannel, GrantTable};

use crate::front::{Netfront, MAX_FRAME};

/// The TCP echo port (RFC 862).
pub const ECHO_PORT: u16 = 7;
const ECHO_BUF: usize = 16 * 1024;

/// A frame received, handed to smoltcp.
pub struct Rx(Vec<u8>);
/// A permit to send one frame.
pub struct Tx<'a, 'p, P: GrantTable + EventChannel + Clock>(&'a mut Netfront<'p, P>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<P: GrantTable + EventChannel + Clock> TxToken for Tx<'_, '_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.send(&buf);
        r
    }
}

impl<'p, P: GrantTable + EventChannel + Clock> Device for Netfront<'p, P> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, 'p, P>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_, 'p, P>)> {
        let f = self.recv()?;
        Some((Rx(f), Tx(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_, 'p, P>> {
        self.can_send().then_some(Tx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MAX_FRAME;
        c
    }
}

fn instant(t: Duration) -> Instant {
    Instant::from_micros(t.as_micros() as i64)
}

/// Why a client helper failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection was refused or reset.
    #[error("connection failed")]
    Connection,
}

/// An interface and its sockets.
pub struct Stack<'p, P: GrantTable + EventChannel + Clock> {
    nf: Netfront<'p, P>,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo: SocketHandle,
    checked: Duration,
}

/// How often [`Stack::maintain`] looks at the backend.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long one reconnection attempt may wait for a backend.
pub const RECONNECT_WAIT: Duration = Duration::from_millis(200);

fn echo_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; ECHO_BUF]),
        tcp::SocketBuffer::new(vec![0; ECHO_BUF]),
    )
}

impl<'p, P: GrantTable + EventChannel + Clock> Stack<'p, P> {
    /// An interface with address `ip` on `nf`, serving TCP echo.
    pub fn new(mut nf: Netfront<'p, P>, ip: Ipv4Cidr) -> Self {
        let now = nf.platform().now();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(nf.mac())));
        cfg.random_seed = now.as_nanos() as u64 ^ u64::from(nf.mac()[5]);
        let mut iface = Interface::new(cfg, &mut nf, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(ip));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let echo = sockets.add(echo_socket());
        Stack {
            nf,
            iface,
            sockets,
            echo,
            checked: now,
        }
    }

    /// Every [`CHECK_EVERY`], checks that the backend is still there and,
    /// if it is not (it died or was restarted), reconnects to the backend
    /// xenstore names now. Sockets live on: TCP retransmits what was lost.
    pub fn maintain<X: XenStore + ?Sized>(&mut self, xs: &X) {
        let now = self.nf.platform().now();
        if now.saturating_sub(self.checked) < CHECK_EVERY {
            return;
        }
        self.checked = now;
        if !self.nf.healthy(xs) {
            if let Err(e) = self.nf.reconnect(xs, RECONNECT_WAIT) {
                tracing::debug!(%e, "netfront: backend not back yet");
            }
            self.checked = self.nf.platform().now();
        }
    }

    /// The frontend.
    pub fn netfront(&mut self) -> &mut Netfront<'p, P> {
        &mut self.nf
    }

    /// Gives the frontend back.
    pub fn into_netfront(self) -> Netfront<'p, P> {
        self.nf
    }

    /// Runs the interface and the echo service once; returns how long the
    /// caller may wait for an event before calling again.
    pub fn poll(&mut self) -> Duration {
        let now = self.nf.platform().now();
        self.nf.ack();
        self.iface
            .poll(instant(now), &mut self.nf, &mut self.sockets);
        let s = self.sockets.get_mut::<tcp::Socket>(self.echo);
        if !s.is_open() {
            s.abort();
            let _ = s.listen(ECHO_PORT);
        }
        if s.may_recv() && s.can_send() {
            let mut buf = [0u8; 2048];
            let room = s.send_capacity() - s.send_queue();
            let n = s.recv_slice(&mut buf[..room.min(2048)]).unwrap_or(0);
            if n > 0 {
                let _ = s.send_slice(&buf[..n]);
            }
        } else if !s.may_recv() && s.state() == tcp::State::CloseWait {
            s.close();
        }
        if s.recv_queue() > 0 || s.send_queue() > 0 {
            // Keep echoing without waiting for an event.
            self.iface
                .poll(instant(now), &mut self.nf, &mut self.sockets);
        }
        self.iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_millis(10))
            .min(Duration::from_millis(10))
    }

    /// Polls, then waits for the backend (at most what `poll` allows, and
    /// at most `cap`).
    pub fn poll_wait(&mut self, cap: Duration) {
        let d = self.poll().min(cap);
        if !d.is_zero() {
            self.nf.wait(d);
        }
    }

    fn run_until<T, X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        timeout: Duration,
        mut done: impl FnMut(&mut Self) -> Option<T>,
    ) -> Result<T, StackError> {
        let end = self.nf.platform().now().saturating_add(timeout);
        loop {
            self.maintain(xs);
            self.poll();
            if let Some(t) = done(self) {
                return Ok(t);
            }
            if self.nf.platform().now() >= end {
                return Err(StackError::Timeout);
            }
            self.nf.wait(Duration::from_millis(1));
        }
    }

    /// Sends ICMP echo requests to `dst` (one a second) until one is
    /// answered; returns the round-trip time.
    pub fn ping<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        dst: Ipv4Address,
        timeout: Duration,
    ) -> Result<Duration, StackError> {
        let h = self.sockets.add(icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        ));
        let ident = 0x5753;
        let _ = self
            .sockets
            .get_mut::<icmp::Socket>(h)
            .bind(icmp::Endpoint::Ident(ident));
        let mut sent_at: Option<Duration> = None;
        let mut seq = 0u16;
        let r = self.run_until(xs, timeout, |st| {
            let now = st.nf.platform().now();
            let caps = st.nf.capabilities().checksum;
            let s = st.sockets.get_mut::<icmp::Socket>(h);
            if sent_at.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1))
                && s.can_send()
            {
                seq = seq.wrapping_add(1);
                let repr = Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data: b"windsor",
                };
                if let Ok(buf) = s.send(repr.buffer_len(), IpAddress::Ipv4(dst)) {
                    repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                    sent_at = Some(now);
                }
            }
            while s.can_recv() {
                let Ok((payload, _)) = s.recv() else { break };
                let Ok(p) = Icmpv4Packet::new_checked(payload) else {
                    continue;
                };
                if let Ok(Icmpv4Repr::EchoReply { ident: i, .. }) = Icmpv4Repr::parse(&p, &caps) {
                    if i == ident {
                        return Some(now.saturating_sub(sent_at.unwrap_or(now)));
                    }
                }
            }
            None
        });
        self.sockets.remove(h);
        r
    }

    /// Connects to `dst:port`, sends `data`, reads as many bytes back and
    /// closes; returns what came back.
    pub fn tcp_exchange<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        dst: Ipv4Address,
        port: u16,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, StackError> {
        self.tcp_exchange_with(xs, dst, port, data, timeout, |_| {})
    }

    /// [`tcp_exchange`](Self::tcp_exchange), calling `progress` with the
    /// bytes received so far whenever more came.
    pub fn tcp_exchange_with<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        dst: Ipv4Address,
        port: u16,
        data: &[u8],
        timeout: Duration,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<u8>, StackError> {
        let h = self.sockets.add(echo_socket());
        let local = 49152 + (self.nf.platform().now().as_micros() % 16000) as u16;
        let cx = self.iface.context();
        if self
            .sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, (IpAddress::Ipv4(dst), port), local)
            .is_err()
        {
            self.sockets.remove(h);
            return Err(StackError::Connection);
        }
        let mut sent = 0usize;
        let mut got = Vec::with_capacity(data.len());
        let r = self.run_until(xs, timeout, |st| {
            let s = st.sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                return Some(Err(StackError::Connection));
            }
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap_or(0);
            }
            let before = got.len();
            while s.can_recv() {
                let mut buf = [0u8; 2048];
                match s.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if got.len() > before {
                progress(got.len());
            }
            (got.len() >= data.len()).then(|| Ok(core::mem::take(&mut got)))
        });
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.close();
        // Let the FIN go out.
        for _ in 0..8 {
            self.poll();
        }
        self.sockets.remove(h);
        r?
    }
}
