//! The netback service: the event loop of the network driver domain,
//! generic over the platform ([`GrantTable`] + [`EventChannel`] +
//! [`Clock`]), a [`XenStore`] client and an optional [`Uplink`].
//!
//! One call of [`Netback::step`] does a bounded amount of work: xenstore
//! watch events (frontend state changes), control requests, up to
//! [`TX_BUDGET`](crate::vif::TX_BUDGET) packets per VIF, the uplink, the
//! switch, rx delivery. [`Netback::run`] loops over `step` and waits on the
//! VIFs' and control channel's ports when there is nothing to do.
//!
//! A VIF whose frontend breaks the protocol is disconnected with one
//! `warn` line naming the domain, device and cause, and its backend state
//! goes to `Closed`; the other VIFs are not touched.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use windsor_control::endpoint::Server;
use windsor_control::{
    DeviceCounters, DeviceId, DeviceKind, DeviceParams, DeviceState, ErrorCode, Health, Request,
    Response, VifCounters, VifParams,
};
use windsor_xenstore_client::XenStore;
use xen::abi::xenbus::XenbusState;
use xen::platform::{Clock, EventChannel, ForeignMapping, GrantTable};
use xen::{DomId, EvtchnPort};

use crate::switch::{Forward, Port, Switch};
use crate::vif::{Frame, Vif, VifConfig, VifError};
use crate::xenbus::{self, FrontendPorts};

/// The host's link to the outside (a TAP device in host mode).
pub trait Uplink {
    /// Sends one frame; may drop it.
    fn send(&mut self, frame: &[u8]);
    /// Receives one frame into `buf` if one is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// No uplink: a host whose guests only talk among themselves.
#[derive(Debug)]
pub struct NoUplink;

impl Uplink for NoUplink {
    fn send(&mut self, _: &[u8]) {}
    fn recv(&mut self, _: &mut [u8]) -> Option<usize> {
        None
    }
}

/// A frame as the uplink takes it: no offload metadata, so a partial
/// checksum is completed here.
fn for_uplink(mut f: Frame) -> Frame {
    if f.csum_blank {
        crate::csum::complete(&mut f.data);
        f.csum_blank = false;
    }
    f
}

/// The switch port of the uplink.
pub const UPLINK_PORT: Port = 0;
/// Most VIFs one service serves.
pub const MAX_VIFS: usize = 256;
/// Frames taken from the uplink per step.
pub const UPLINK_BUDGET: usize = 64;

struct Conn<P: GrantTable> {
    vif: Vif,
    tx_map: P::Mapping,
    rx_map: P::Mapping,
    tx_port: EvtchnPort,
    rx_port: EvtchnPort,
}

struct Slot<P: GrantTable> {
    port: Port,
    params: VifParams,
    state: DeviceState,
    conn: Option<Conn<P>>,
    /// Counters of earlier connections of this device.
    past: VifCounters,
    be_path: String,
    fe_path: String,
    token: String,
}

/// The service.
pub struct Netback<'p, P: GrantTable + EventChannel + Clock, X: XenStore, U: Uplink> {
    plat: &'p P,
    xs: &'p X,
    me: DomId,
    toolstack: DomId,
    slots: BTreeMap<(u16, u32), Slot<P>>,
    next_port: Port,
    switch: Switch,
    uplink: Option<U>,
    control: Option<Server<'p, P>>,
    started: Duration,
    buf: Vec<u8>,
    dead: bool,
    slow_at: Duration,
    idle_rounds: u32,
    /// When the control channel was last offered (or tried).
    offered_at: Duration,
}

/// How often xenstore and the control channel are looked at while packets
/// flow (every round when idle).
pub const SLOW_EVERY: Duration = Duration::from_millis(1);
/// How long after a failed offer of the control channel it is offered
/// again.
pub const OFFER_AGAIN: Duration = Duration::from_secs(1);

fn add(a: &mut VifCounters, b: VifCounters) {
    a.tx_packets += b.tx_packets;
    a.tx_bytes += b.tx_bytes;
    a.tx_dropped += b.tx_dropped;
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.rx_dropped += b.rx_dropped;
    a.rate_limited += b.rate_limited;
}

impl<'p, P: GrantTable + EventChannel + Clock, X: XenStore, U: Uplink> Netback<'p, P, X, U> {
    /// A service in domain `me`, taking control requests from `toolstack`
    /// (the control channel is offered at once).
    pub fn new(plat: &'p P, xs: &'p X, me: DomId, toolstack: DomId, uplink: Option<U>) -> Self {
        let control = match Server::offer(plat, xs, me, toolstack, "netback") {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%e, "netback: control channel not offered");
                None
            }
        };
        Netback {
            plat,
            xs,
            me,
            toolstack,
            slots: BTreeMap::new(),
            next_port: UPLINK_PORT + 1,
            switch: Switch::new(),
            uplink,
            control,
            started: plat.now(),
            buf: alloc::vec![0; 65536],
            dead: false,
            slow_at: Duration::ZERO,
            idle_rounds: 0,
            offered_at: plat.now(),
        }
    }

    /// Serves a VIF (what `Plug` does).
    pub fn plug(&mut self, fe: DomId, devid: u32, params: VifParams) -> Result<(), ErrorCode> {
        if self.slots.contains_key(&(fe.0, devid)) {
            return Err(ErrorCode::AlreadyPlugged);
        }
        if self.slots.len() >= MAX_VIFS {
            return Err(ErrorCode::Full);
        }
        if params.mac[0] & 1 != 0 || !(68..=9000).contains(&params.mtu) {
            return Err(ErrorCode::BadParams);
        }
        let be_path = xenbus::backend_path(self.me, fe, devid);
        let fe_path = xenbus::frontend_path(fe, devid);
        let token = format!("vif/{}/{}", fe.0, devid);
        xenbus::offer(self.xs, &be_path).map_err(|_| ErrorCode::Store)?;
        self.xs
            .watch(&format!("{fe_path}/state"), &token)
            .map_err(|_| ErrorCode::Store)?;
        let port = self.next_port;
        self.next_port += 1;
        self.slots.insert(
            (fe.0, devid),
            Slot {
                port,
                params,
                state: DeviceState::Waiting,
                conn: None,
                past: VifCounters::default(),
                be_path,
                fe_path,
                token,
            },
        );
        tracing::info!(fe = fe.0, devid, "netback: vif plugged");
        Ok(())
    }

    /// Stops serving a VIF.
    pub fn unplug(&mut self, fe: DomId, devid: u32) -> Result<(), ErrorCode> {
        let mut s = self
            .slots
            .remove(&(fe.0, devid))
            .ok_or(ErrorCode::NoSuchDevice)?;
        self.disconnect(&mut s);
        let _ = self.xs.unwatch(&format!("{}/state", s.fe_path), &s.token);
        let _ = xenbus::set_state(self.xs, &s.be_path, XenbusState::Closed);
        self.switch.forget_port(s.port);
        Ok(())
    }

    fn disconnect(&self, s: &mut Slot<P>) {
        if let Some(c) = s.conn.take() {
            add(&mut s.past, c.vif.counters());
            let _ = self.plat.close(c.tx_port);
            if c.rx_port != c.tx_port {
                let _ = self.plat.close(c.rx_port);
            }
        }
    }

    /// Counters of one VIF (all its connections).
    pub fn counters(&self, fe: DomId, devid: u32) -> Option<VifCounters> {
        let s = self.slots.get(&(fe.0, devid))?;
        let mut c = s.past;
        if let Some(conn) = &s.conn {
            add(&mut c, conn.vif.counters());
        }
        Some(c)
    }

    /// A VIF's state.
    pub fn state(&self, fe: DomId, devid: u32) -> Option<DeviceState> {
        self.slots.get(&(fe.0, devid)).map(|s| s.state)
    }

    fn connect(&mut self, key: (u16, u32)) {
        let now = self.plat.now();
        let (plat, xs) = (self.plat, self.xs);
        let Some(s) = self.slots.get_mut(&key) else {
            return;
        };
        let fe = DomId(key.0);
        let res = (|| -> Result<Conn<P>, String> {
            let cfg = xenbus::read_frontend(xs, &s.fe_path).map_err(|e| format!("{e}"))?;
            let tx_map = plat
                .map(fe, &[cfg.tx_ring_ref], false)
                .map_err(|e| format!("mapping tx ring: {e}"))?;
            let rx_map = plat
                .map(fe, &[cfg.rx_ring_ref], false)
                .map_err(|e| format!("mapping rx ring: {e}"))?;
            let (tx_port, rx_port) = match cfg.ports {
                FrontendPorts::Single(p) => {
                    let l = plat
                        .bind_interdomain(fe, p)
                        .map_err(|e| format!("binding port: {e}"))?;
                    (l, l)
                }
                FrontendPorts::Split { tx, rx } => {
                    let t = plat
                        .bind_interdomain(fe, tx)
                        .map_err(|e| format!("binding tx port: {e}"))?;
                    let r = match plat.bind_interdomain(fe, rx) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = plat.close(t);
                            return Err(format!("binding rx port: {e}"));
                        }
                    };
                    (t, r)
                }
            };
            let vif = Vif::new(
                VifConfig {
                    frontend: fe,
                    mtu: s.params.mtu,
                    rate: s.params.rate,
                    rx_sg: cfg.sg,
                    rx_gso_tcpv4: cfg.gso_tcpv4,
                    rx_csum_partial: !cfg.no_csum_offload,
                },
                now,
            );
            Ok(Conn {
                vif,
                tx_map,
                rx_map,
                tx_port,
                rx_port,
            })
        })();
        match res {
            Ok(c) => {
                s.conn = Some(c);
                s.state = DeviceState::Connected;
                let _ = xenbus::set_state(xs, &s.be_path, XenbusState::Connected);
                tracing::info!(fe = fe.0, devid = key.1, "netback: vif connected");
            }
            Err(e) => {
                tracing::warn!(
                    fe = fe.0,
                    devid = key.1,
                    "netback: vif handshake failed: {e}"
                );
                s.state = DeviceState::Failed;
                let _ = xenbus::set_state(xs, &s.be_path, XenbusState::Closed);
            }
        }
    }

    /// Follows the frontend's state.
    fn frontend_changed(&mut self, key: (u16, u32)) {
        let Some(s) = self.slots.get(&key) else {
            return;
        };
        let Ok(fs) = xenbus::state(self.xs, &s.fe_path) else {
            return;
        };
        let Ok(bs) = xenbus::state(self.xs, &s.be_path) else {
            return;
        };
        match fs {
            XenbusState::Initialised | XenbusState::Connected
                if s.conn.is_none() && bs == XenbusState::InitWait =>
            {
                self.connect(key)
            }
            XenbusState::Closing | XenbusState::Closed => {
                let s = self.slots.get_mut(&key).expect("checked");
                if let Some(c) = s.conn.take() {
                    add(&mut s.past, c.vif.counters());
                    let _ = self.plat.close(c.tx_port);
                    if c.rx_port != c.tx_port {
                        let _ = self.plat.close(c.rx_port);
                    }
                }
                if s.state != DeviceState::Failed {
                    s.state = DeviceState::Closed;
                }
                let _ = xenbus::set_state(self.xs, &s.be_path, XenbusState::Closed);
            }
            XenbusState::Initialising
                if bs == XenbusState::Closed || bs == XenbusState::Closing =>
            {
                // The frontend starts over: offer again.
                let s = self.slots.get_mut(&key).expect("checked");
                s.state = DeviceState::Waiting;
                let _ = xenbus::offer(self.xs, &s.be_path);
            }
            _ => {}
        }
    }

    fn fail(&mut self, key: (u16, u32), e: VifError) {
        if matches!(e, VifError::Copy(c) if c.is_own_death()) {
            // Our domain is being destroyed: nothing to blame, stop.
            self.dead = true;
            return;
        }
        let xs = self.xs;
        if let Some(s) = self.slots.get_mut(&key) {
            // A frontend that is closing (or whose domain is gone) takes
            // its grants away: that is not an attack.
            let leaving = matches!(
                xenbus::state(xs, &s.fe_path),
                Ok(XenbusState::Closing | XenbusState::Closed | XenbusState::Unknown) | Err(_)
            );
            if leaving {
                tracing::info!(
                    fe = key.0,
                    devid = key.1,
                    "netback: vif frontend went away: {e}"
                );
            } else {
                tracing::warn!(
                    fe = key.0,
                    devid = key.1,
                    "netback: vif disconnected, frontend broke the protocol: {e}"
                );
            }
            let c = s.conn.take();
            s.state = if leaving {
                DeviceState::Closed
            } else {
                DeviceState::Failed
            };
            if let Some(c) = c {
                add(&mut s.past, c.vif.counters());
                let _ = self.plat.close(c.tx_port);
                if c.rx_port != c.tx_port {
                    let _ = self.plat.close(c.rx_port);
                }
            }
            let _ = xenbus::set_state(self.xs, &s.be_path, XenbusState::Closed);
            let port = s.port;
            self.switch.forget_port(port);
        }
    }

    fn handle(&mut self, req: Request) -> (Response, bool) {
        let vif = |d: DeviceId| (DomId(d.frontend), d.devid);
        let r = match req {
            Request::Plug { device, params } => match (device.kind, params) {
                (DeviceKind::Vif, DeviceParams::Vif(p)) => {
                    let (fe, id) = vif(device);
                    self.plug(fe, id, p)
                        .map(|_| Response::Ok)
                        .unwrap_or_else(Response::Error)
                }
                _ => Response::Error(ErrorCode::WrongKind),
            },
            Request::Unplug { device } if device.kind == DeviceKind::Vif => {
                let (fe, id) = vif(device);
                self.unplug(fe, id)
                    .map(|_| Response::Ok)
                    .unwrap_or_else(Response::Error)
            }
            Request::Unplug { .. } => Response::Error(ErrorCode::WrongKind),
            Request::Counters { device } => {
                let all: Vec<_> = self
                    .slots
                    .keys()
                    .map(|&(fe, id)| DeviceId {
                        kind: DeviceKind::Vif,
                        frontend: fe,
                        devid: id,
                    })
                    .filter(|d| device.is_none_or(|x| x == *d))
                    .filter_map(|d| {
                        let (fe, id) = vif(d);
                        self.counters(fe, id).map(|c| (d, DeviceCounters::Vif(c)))
                    })
                    .collect();
                if device.is_some() && all.is_empty() {
                    Response::Error(ErrorCode::NoSuchDevice)
                } else {
                    Response::Counters(all)
                }
            }
            Request::Health => Response::Health(Health {
                uptime_ms: self.plat.now().saturating_sub(self.started).as_millis() as u64,
                devices: self
                    .slots
                    .iter()
                    .map(|(&(fe, id), s)| {
                        (
                            DeviceId {
                                kind: DeviceKind::Vif,
                                frontend: fe,
                                devid: id,
                            },
                            s.state,
                        )
                    })
                    .collect(),
            }),
            Request::Restart => return (Response::Ok, true),
            Request::Hello => Response::Ok,
        };
        (r, false)
    }

    /// Watch events (frontend state changes) and control requests.
    fn slow_step(&mut self) -> (bool, bool) {
        let mut busy = false;
        let mut restart = false;
        // xenstore: frontend state changes.
        while let Ok(ev) = self.xs.next_event(Some(Duration::ZERO)) {
            busy = true;
            let key = self
                .slots
                .iter()
                .find(|(_, s)| s.token == ev.token)
                .map(|(k, _)| *k);
            if let Some(k) = key {
                self.frontend_changed(k);
            }
        }
        // A control channel that could not be offered (xenstore failed us)
        // is offered again: without it nobody can plug a VIF.
        let now = self.plat.now();
        if self.control.is_none() && now.saturating_sub(self.offered_at) >= OFFER_AGAIN {
            self.offered_at = now;
            match Server::offer(self.plat, self.xs, self.me, self.toolstack, "netback") {
                Ok(s) => {
                    tracing::info!("netback: control channel offered");
                    self.control = Some(s);
                }
                Err(e) => tracing::warn!(%e, "netback: control channel not offered"),
            }
        }
        // Control requests.
        if let Some(mut ctl) = self.control.take() {
            let res = ctl.poll(|r| {
                let (rsp, again) = self.handle(r);
                restart |= again;
                rsp
            });
            match res {
                Ok(n) => {
                    busy |= n > 0;
                    self.control = Some(ctl);
                }
                Err(e) => {
                    // The toolstack left or misbehaved: offer a new channel.
                    tracing::info!(%e, "netback: control channel closed; offering it again");
                    ctl.close(self.xs);
                    self.offered_at = self.plat.now();
                    self.control =
                        Server::offer(self.plat, self.xs, self.me, self.toolstack, "netback").ok();
                }
            }
        }
        (busy, restart)
    }

    /// Does one round of bounded work; returns whether anything happened
    /// and whether a restart was asked for.
    pub fn step(&mut self) -> (bool, bool) {
        let now = self.plat.now();
        let mut busy = false;
        let mut restart = false;
        // xenstore and the control channel: at most every SLOW_EVERY while
        // packets flow (they need no speed, and each look takes locks).
        if self.idle_rounds > 0 || now.saturating_sub(self.slow_at) >= SLOW_EVERY {
            self.slow_at = now;
            let (b, r) = self.slow_step();
            busy |= b;
            restart |= r;
        }
        // Tx from every VIF into the switch.
        let mut frames: Vec<(Port, Frame)> = Vec::new();
        let mut failed = Vec::new();
        for (&key, s) in self.slots.iter_mut() {
            let Some(c) = s.conn.as_mut() else { continue };
            let Some(mem) = c.tx_map.rw() else { continue };
            let port = s.port;
            let r = c.vif.poll_tx(now, &mem, self.plat, usize::MAX, &mut |f| {
                frames.push((port, f))
            });
            match r {
                Ok(p) => {
                    busy |= p.packets > 0;
                    if p.notify {
                        let _ = self.plat.notify(c.tx_port);
                    }
                }
                Err(e) => failed.push((key, e)),
            }
        }
        // The uplink.
        if let Some(u) = self.uplink.as_mut() {
            for _ in 0..UPLINK_BUDGET {
                match u.recv(&mut self.buf) {
                    Some(n) => frames.push((UPLINK_PORT, Frame::new(self.buf[..n].to_vec()))),
                    None => break,
                }
            }
        }
        busy |= !frames.is_empty();
        for (src, f) in frames {
            match self.switch.forward(now, src, &f.data) {
                Forward::Drop => {}
                Forward::Port(UPLINK_PORT) => {
                    if let Some(u) = self.uplink.as_mut() {
                        u.send(&for_uplink(f).data);
                    }
                }
                Forward::Port(p) => {
                    if let Some(c) = self
                        .slots
                        .values_mut()
                        .find(|s| s.port == p)
                        .and_then(|s| s.conn.as_mut())
                    {
                        c.vif.enqueue(f);
                    }
                }
                Forward::Flood => {
                    if src != UPLINK_PORT {
                        if let Some(u) = self.uplink.as_mut() {
                            u.send(&for_uplink(f.clone()).data);
                        }
                    }
                    for s in self.slots.values_mut().filter(|s| s.port != src) {
                        if let Some(c) = s.conn.as_mut() {
                            c.vif.enqueue(f.clone());
                        }
                    }
                }
            }
        }
        // Rx into every VIF with queued frames.
        for (&key, s) in self.slots.iter_mut() {
            let Some(c) = s.conn.as_mut() else { continue };
            if c.vif.queued() == 0 {
                continue;
            }
            let Some(mem) = c.rx_map.rw() else { continue };
            match c.vif.flush_rx(&mem, self.plat) {
                Ok(true) => {
                    let _ = self.plat.notify(c.rx_port);
                }
                Ok(false) => {}
                Err(e) => failed.push((key, e)),
            }
        }
        for (k, e) in failed {
            self.fail(k, e);
        }
        (busy, restart)
    }

    /// The ports to wait on.
    fn ports(&self) -> Vec<EvtchnPort> {
        let mut v: Vec<EvtchnPort> = self
            .control
            .as_ref()
            .map(|c| c.port())
            .into_iter()
            .collect();
        for c in self.slots.values().filter_map(|s| s.conn.as_ref()) {
            v.push(c.tx_port);
            if c.rx_port != c.tx_port {
                v.push(c.rx_port);
            }
        }
        v
    }

    /// Runs until a `Restart` request or until the platform refuses a
    /// wait (the domain is being destroyed). Between rounds with nothing to
    /// do it waits on every port, at most `idle` (the xenstore watches and
    /// the uplink are polled at least that often).
    pub fn run(&mut self, idle: Duration) {
        let mut quiet = 0u32;
        loop {
            let (busy, restart) = self.step();
            if self.dead {
                return;
            }
            if restart {
                tracing::info!("netback: restart requested");
                return;
            }
            if busy {
                quiet = 0;
                self.idle_rounds = 0;
                continue;
            }
            self.idle_rounds = self.idle_rounds.saturating_add(1);
            // Spin a little before sleeping: a busy peer refills quickly.
            quiet += 1;
            if quiet < 64 {
                core::hint::spin_loop();
                continue;
            }
            // About to sleep: clear the ports' pending bits, then look
            // once more, so an event that came in between is not slept
            // through. (Rounds do not clear them: a bit left set only
            // makes the next wait return at once.)
            let ports = self.ports();
            for &p in &ports {
                let _ = self.plat.clear_pending(p);
            }
            let (busy, restart) = self.step();
            if self.dead {
                return;
            }
            if restart {
                tracing::info!("netback: restart requested");
                return;
            }
            if busy {
                quiet = 0;
                continue;
            }
            if self.plat.wait(&ports, Some(idle)).is_err() {
                return;
            }
        }
    }
}
