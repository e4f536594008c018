//! dom0's network: the QEMU machine's virtio-net NIC
//! (`windsor_unikernel::pci`), smoltcp over it, and the XenAPI's TCP
//! listeners, each a connection slot that frames HTTP requests
//! ([`crate::http`]).
//!
//! The address is static: QEMU's user networking puts the guest at
//! 10.0.2.15/24 with the gateway at 10.0.2.2, and forwards the host's
//! port to [`API_PORT`] (`hostfwd`). The NIC is polled (dom0 runs with
//! interrupts off, see the runtime's doc): the main loop calls
//! [`Net::poll`] and waits at most [`Net::poll_delay`] between polls.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};
use windsor_unikernel::pci::Nic;

use crate::http::{self, Refused, Request};

/// The port the XenAPI listens on inside the machine.
pub const API_PORT: u16 = 80;
/// Connections served at once (one listening socket each).
const SLOTS: usize = 8;
const SOCKET_BUF: usize = 64 * 1024;
/// dom0's address on QEMU's user network.
const ADDRESS: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24);
const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// The NIC as a smoltcp device, with frame counters.
struct Dev(Nic, Counters);

/// Frames moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx: u64,
    /// Frames sent.
    pub tx: u64,
    /// Print a line per frame.
    pub trace: bool,
}

/// A frame received.
struct Rx(Vec<u8>);
/// A permit to send one frame.
struct Tx<'a>(&'a mut Nic, &'a mut Counters);

/// One line about a frame (debugging: `net.trace` on dom0's command line).
fn describe(dir: &str, f: &[u8]) {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
    let Ok(e) = EthernetFrame::new_checked(f) else {
        return;
    };
    let mut line = alloc::format!("{dir} {} bytes {:?}", f.len(), e.ethertype());
    if e.ethertype() == EthernetProtocol::Ipv4 {
        if let Ok(ip) = Ipv4Packet::new_checked(e.payload()) {
            line += &alloc::format!(
                " {} -> {} {:?}",
                ip.src_addr(),
                ip.dst_addr(),
                ip.next_header()
            );
            if ip.next_header() == IpProtocol::Tcp {
                if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                    line += &alloc::format!(
                        " {}->{} syn={} ack={} rst={} fin={} len={} csum_ok={}",
                        t.src_port(),
                        t.dst_port(),
                        t.syn(),
                        t.ack(),
                        t.rst(),
                        t.fin(),
                        t.payload().len(),
                        t.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into())
                    );
                }
            }
        }
    }
    windsor_unikernel::println!("windsor dom0: net: {line}");
}

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = self.0.new_tx_buffer(len);
        let r = f(b.packet_mut());
        self.1.tx += 1;
        if self.1.trace {
            describe("out", b.packet_mut());
        }
        if let Err(e) = self.0.send(b) {
            windsor_unikernel::println!("windsor dom0: net: send failed: {e:?}");
        }
        r
    }
}

impl Device for Dev {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let b = self.0.receive().ok()?;
        let frame = b.packet().to_vec();
        if let Err(e) = self.0.recycle_rx_buffer(b) {
            windsor_unikernel::println!("windsor dom0: net: recycling a buffer: {e:?}");
        }
        self.1.rx += 1;
        if self.1.trace {
            describe("in", &frame);
        }
        Some((Rx(frame), Tx(&mut self.0, &mut self.1)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        self.0.can_send().then_some(Tx(&mut self.0, &mut self.1))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(1);
        c
    }
}

/// Names one request of one connection: a reply for a connection that
/// has since closed (and whose slot took a new one) is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    slot: usize,
    generation: u64,
}

impl ConnId {
    /// No connection (an `Async.*` call's wait answers nobody).
    pub const NONE: ConnId = ConnId {
        slot: usize::MAX,
        generation: 0,
    };
}

/// A connection slot.
struct Slot {
    socket: SocketHandle,
    generation: u64,
    /// Bytes received and not yet framed.
    inbuf: Vec<u8>,
    /// Bytes to send that the socket has not taken yet.
    out: Vec<u8>,
    /// A request is being answered: read nothing more until it is.
    busy: bool,
    /// Close once `out` is sent.
    close_after: bool,
    /// Whether the socket was connected at the last poll.
    open: bool,
}

/// What a poll found: framed requests, or refusals (already answered).
pub type Incoming = Vec<(ConnId, Request)>;

/// The interface, its sockets and connection slots.
pub struct Net {
    dev: Dev,
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
}

fn instant(t: Duration) -> Instant {
    Instant::from_micros(t.as_micros() as i64)
}

impl Net {
    /// The stack on `nic` at [`ADDRESS`], listening on [`API_PORT`].
    pub fn new(nic: Nic, now: Duration, trace: bool) -> Net {
        let mut dev = Dev(
            nic,
            Counters {
                trace,
                ..Counters::default()
            },
        );
        let mac = dev.0.mac_address();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = now.as_nanos() as u64 ^ u64::from(mac[5]);
        let mut iface = Interface::new(cfg, &mut dev, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(ADDRESS));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY);
        let mut sockets = SocketSet::new(Vec::new());
        let slots = (0..SLOTS)
            .map(|_| {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; SOCKET_BUF]),
                    tcp::SocketBuffer::new(vec![0; SOCKET_BUF]),
                );
                let _ = s.listen(API_PORT);
                Slot {
                    socket: sockets.add(s),
                    generation: 0,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    busy: false,
                    close_after: false,
                    open: false,
                }
            })
            .collect();
        Net {
            dev,
            iface,
            sockets,
            slots,
        }
    }

    /// The TCP states of the slots (debugging).
    pub fn states(&self) -> alloc::string::String {
        let mut out = alloc::string::String::new();
        for s in &self.slots {
            let sock = self.sockets.get::<tcp::Socket>(s.socket);
            out += &alloc::format!("{} ", sock.state());
        }
        out
    }

    /// Frames moved so far.
    pub fn counters(&self) -> Counters {
        self.dev.1
    }

    /// The NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.dev.0.mac_address()
    }

    /// Moves frames, sends what is queued, frames new requests.
    pub fn poll(&mut self, now: Duration) -> Incoming {
        let _ = self.dev.0.ack_interrupt();
        self.iface
            .poll(instant(now), &mut self.dev, &mut self.sockets);
        let mut found = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let s = self.sockets.get_mut::<tcp::Socket>(slot.socket);
            if !s.is_open() {
                // Closed or reset: the slot listens again for a new client.
                if slot.open || !slot.inbuf.is_empty() || slot.busy {
                    slot.generation += 1;
                }
                slot.open = false;
                slot.inbuf.clear();
                slot.out.clear();
                slot.busy = false;
                slot.close_after = false;
                s.abort();
                let _ = s.listen(API_PORT);
                continue;
            }
            if s.is_active() && !slot.open {
                slot.open = true;
            }
            flush(s, slot);
            if !slot.busy && !slot.close_after {
                while s.can_recv() && slot.inbuf.len() <= http::MAX_HEAD + http::MAX_BODY {
                    let mut buf = [0u8; 4096];
                    match s.recv_slice(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => slot.inbuf.extend_from_slice(&buf[..n]),
                    }
                }
                match http::take_request(&mut slot.inbuf) {
                    Ok(Some(r)) => {
                        slot.busy = true;
                        found.push((
                            ConnId {
                                slot: i,
                                generation: slot.generation,
                            },
                            r,
                        ));
                    }
                    Ok(None) => {
                        if s.state() == tcp::State::CloseWait {
                            // The client closed its side between requests
                            // or mid-request.
                            s.close();
                        }
                    }
                    Err(e) => refuse(s, slot, e),
                }
            }
        }
        if !found.is_empty() || self.slots.iter().any(|s| !s.out.is_empty()) {
            self.iface
                .poll(instant(now), &mut self.dev, &mut self.sockets);
        }
        found
    }

    /// Answers request `id` (dropped if its connection is gone).
    pub fn reply(&mut self, id: ConnId, bytes: Vec<u8>, keep_alive: bool, now: Duration) {
        let Some(slot) = self.slots.get_mut(id.slot) else {
            return;
        };
        if slot.generation != id.generation || !slot.busy {
            return;
        }
        slot.busy = false;
        slot.close_after = !keep_alive;
        slot.out.extend_from_slice(&bytes);
        let s = self.sockets.get_mut::<tcp::Socket>(slot.socket);
        flush(s, slot);
        self.iface
            .poll(instant(now), &mut self.dev, &mut self.sockets);
    }

    /// The client address of request `id`'s connection.
    pub fn peer(&self, id: ConnId) -> Option<smoltcp::wire::IpAddress> {
        let slot = self.slots.get(id.slot)?;
        if slot.generation != id.generation {
            return None;
        }
        let s = self.sockets.get::<tcp::Socket>(slot.socket);
        s.remote_endpoint().map(|e| e.addr)
    }

    /// Whether any answer is still waiting to be sent.
    pub fn sending(&self) -> bool {
        self.slots.iter().any(|s| {
            !s.out.is_empty() || {
                let sock = self.sockets.get::<tcp::Socket>(s.socket);
                sock.send_queue() > 0
            }
        })
    }

    /// How long the loop may wait before the stack needs a poll.
    pub fn poll_delay(&mut self, now: Duration) -> Duration {
        self.iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_millis(50))
    }
}

/// Moves queued bytes into the socket; closes once all are in, if asked.
fn flush(s: &mut tcp::Socket<'_>, slot: &mut Slot) {
    if !slot.out.is_empty() && s.can_send() {
        if let Ok(n) = s.send_slice(&slot.out) {
            slot.out.drain(..n);
        }
    }
    if slot.out.is_empty() && slot.close_after {
        s.close();
        slot.close_after = false;
    }
}

/// Answers a request that cannot be served with its status, and closes.
fn refuse(s: &mut tcp::Socket<'_>, slot: &mut Slot, e: Refused) {
    let (code, reason) = e.status();
    slot.inbuf.clear();
    slot.out.extend_from_slice(&http::response(
        code,
        reason,
        "text/plain",
        reason.as_bytes(),
        false,
    ));
    slot.close_after = true;
    flush(s, slot);
}
