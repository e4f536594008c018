//! The backend in one loop, without threads: the server of a driver domain
//! with one vCPU and no scheduler (the Xen-mode blkback image).
//!
//! The protocol is the crate's own — [`wire`](crate::wire) parses,
//! [`vbd`](crate::vbd) plans, [`ring`](crate::ring) moves slots and
//! [`xenbus`](crate::xenbus) runs the handshake — and [`plan`] is the step
//! both runtimes share (the threaded host `service` calls it too). What
//! differs is only the scheduling: here one [`Server::poll`] round looks at
//! xenstore if something changed there, then serves every connected ring
//! for at most [`Config::batch`] requests, synchronously, answering each
//! request when its I/O is done. The caller sleeps on [`Server::ports`]
//! (plus its xenstore port) between rounds.
//!
//! ```text
//! poll(changed)
//!   changed: list backend/vbd/<front>/<dev>; new devices: open the
//!            storage (caller's `open`), probe (InitWait); every device:
//!            frontend_changed -> Connect (map ring, bind port, Connected)
//!                             | Disconnect / Remove (unmap, close)
//!   each connected ring: clear its port, then up to `batch` requests:
//!            copy the slot, plan, grant-copy data in/out, storage I/O,
//!            push the response; publish (+notify) every 16 and at the end
//! ```
//!
//! Data moves by grant copy (`GNTTABOP_copy`) through one bounce buffer of
//! the largest request; nothing of the guest stays mapped but its ring. A
//! flush runs after every earlier request of its ring has been answered
//! (they are answered in order here) and its storage flush is done before
//! its answer is pushed. Memory is bounded: one bounce buffer, one page of
//! indirect segments per indirect page allowed, the devices the toolstack
//! plugged. A frontend that breaks its ring (producer overflow) is
//! disconnected with an `error` node; others go on.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::abi::blkif::{
    BlkifResponse, BLKIF_ENTRY_SIZE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_WRITE_BARRIER,
    BLKIF_RSP_OKAY, VDISK_READONLY,
};
use xen::abi::ring::RingIdx;
use xen::platform::{CopySeg, EventChannel, ForeignMapping, GrantTable, PortStatus};
use xen::{DomId, EvtchnPort, PAGE_SIZE};

use crate::ring::{self, Slot};
use crate::storage::Storage;
use crate::vbd::{Ask, Disk, Io};
use crate::wire::{parse_indirect_segments, Limits, Reason, Rejected, Request};
use crate::xenbus::{Action, Backend, FrontendRing, Offer, MAX_RING_PAGE_ORDER};

const T: TxId = TxId::NONE;

/// A request ready to be performed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The request's `id`.
    pub id: u64,
    /// Its `operation` byte.
    pub operation: u8,
    /// What it does to the disk.
    pub io: Io,
}

/// Plans one copied request slot: parses it against `limits`, fetches the
/// segments of an indirect request from `front`'s grants (by grant copy,
/// into `scratch`), and checks the request against `disk`. A refusal
/// carries what its answer needs.
pub fn plan<G: GrantTable + ?Sized>(
    grants: &G,
    front: DomId,
    slot: &Slot,
    limits: &Limits,
    disk: &Disk,
    scratch: &mut Vec<u8>,
) -> Result<Planned, Rejected> {
    let req = Request::parse(slot, limits)?;
    let (id, operation) = (req.id(), req.operation());
    let rej = |reason| Rejected::new(id, operation, reason);
    let ask = match Ask::of(req) {
        Ok(a) => a,
        Err(Request::Indirect {
            dir,
            sector,
            nr_segments,
            pages,
            ..
        }) => {
            scratch.clear();
            scratch.resize(pages.len() * PAGE_SIZE, 0);
            for (page, g) in scratch.chunks_exact_mut(PAGE_SIZE).zip(pages.iter()) {
                grants
                    .copy_from_grant(front, *g, 0, page)
                    .map_err(|_| rej(Reason::BadGrant))?;
            }
            let segs = parse_indirect_segments(scratch, nr_segments).map_err(rej)?;
            Ask::Rw(dir, sector, segs)
        }
        Err(_) => return Err(rej(Reason::NotSupported)),
    };
    let io = disk.plan(ask).map_err(rej)?;
    Ok(Planned { id, operation, io })
}

/// Moves the data of one planned request between `front`'s grants and
/// the storage, by grant copy through `buf` (grown to the request's size).
pub fn perform<G: GrantTable + ?Sized>(
    grants: &G,
    front: DomId,
    storage: &dyn Storage,
    io: &Io,
    buf: &mut Vec<u8>,
) -> Result<(), Reason> {
    let len = io.data_len();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let gather = |segs: &[crate::wire::Segment], buf: &mut [u8]| -> Result<(), Reason> {
        let mut ops = Vec::with_capacity(segs.len());
        let mut rest = buf;
        for s in segs {
            let (here, next) = rest.split_at_mut(s.len());
            ops.push(CopySeg::FromGrant {
                dom: front,
                gref: s.gref,
                offset: s.offset(),
                buf: here,
            });
            rest = next;
        }
        grants.copy_batch(&mut ops).map_err(|_| Reason::BadGrant)
    };
    match io {
        Io::Read { offset, segs } => {
            let bytes = &mut buf[..len];
            storage.read_at(bytes, *offset).map_err(|_| Reason::Io)?;
            let mut ops = Vec::with_capacity(segs.len());
            let mut rest: &[u8] = bytes;
            for s in segs {
                let (here, next) = rest.split_at(s.len());
                ops.push(CopySeg::ToGrant {
                    dom: front,
                    gref: s.gref,
                    offset: s.offset(),
                    buf: here,
                });
                rest = next;
            }
            grants.copy_batch(&mut ops).map_err(|_| Reason::BadGrant)
        }
        Io::Write { offset, segs } => {
            gather(segs, &mut buf[..len])?;
            storage
                .write_at(&buf[..len], *offset)
                .map_err(|_| Reason::Io)
        }
        Io::Flush { offset, segs } => {
            if !segs.is_empty() {
                gather(segs, &mut buf[..len])?;
                storage
                    .write_at(&buf[..len], *offset)
                    .map_err(|_| Reason::Io)?;
            }
            storage.flush().map_err(|_| Reason::Io)
        }
        Io::Discard { offset, len } => storage.discard(*offset, *len).map_err(|_| Reason::Io),
    }
}

/// The devices under `root` (`<root>/<front>/<devid>`).
pub fn list_devices<X: XenStore + ?Sized>(xs: &X, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    for front in xs.directory(T, root).unwrap_or_default() {
        for dev in xs
            .directory(T, &format!("{root}/{front}"))
            .unwrap_or_default()
        {
            out.push(format!("{root}/{front}/{dev}"));
        }
    }
    out
}

/// Tunables of the [`Server`].
#[derive(Clone, Debug)]
pub struct Config {
    /// `feature-max-indirect-segments` (0: indirect requests not offered).
    pub max_indirect_segments: u16,
    /// `max-ring-page-order`.
    pub max_ring_page_order: u32,
    /// Requests served per ring in one round before the next ring's turn.
    pub batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_indirect_segments: 32,
            max_ring_page_order: 2,
            batch: 64,
        }
    }
}

/// What one device did while connected (reported when it disconnects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Read requests answered OK.
    pub reads: u64,
    /// Write requests answered OK.
    pub writes: u64,
    /// `BLKIF_OP_FLUSH_DISKCACHE` requests answered OK.
    pub flushes: u64,
    /// `BLKIF_OP_WRITE_BARRIER` requests answered OK.
    pub barriers: u64,
    /// Discards answered OK.
    pub discards: u64,
    /// Requests answered with an error status.
    pub refused: u64,
    /// Bytes read from the disk.
    pub bytes_read: u64,
    /// Bytes written to the disk.
    pub bytes_written: u64,
}

impl core::fmt::Display for Counters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "reads={} writes={} flushes={} barriers={} discards={} refused={} \
             bytes_read={} bytes_written={}",
            self.reads,
            self.writes,
            self.flushes,
            self.barriers,
            self.discards,
            self.refused,
            self.bytes_read,
            self.bytes_written
        )
    }
}

/// Something the caller may want to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A device appeared and was offered (InitWait).
    Probed {
        /// Its backend directory.
        dir: String,
        /// Disk size in sectors.
        sectors: u64,
    },
    /// A device's storage could not be opened or its directory is
    /// incomplete; it stays refused until its directory goes away.
    Refused {
        /// Its backend directory.
        dir: String,
        /// Why.
        why: String,
    },
    /// A frontend connected.
    Connected {
        /// Its backend directory.
        dir: String,
        /// The frontend's domain.
        front: DomId,
        /// Ring pages.
        pages: usize,
        /// Its ring entries.
        entries: u32,
    },
    /// A connection ended (frontend closed, failed or was removed).
    Disconnected {
        /// Its backend directory.
        dir: String,
        /// Why.
        why: String,
        /// The device's totals so far.
        counters: Counters,
    },
    /// A device was removed (its directory or its frontend went away).
    Removed {
        /// Its backend directory.
        dir: String,
        /// The device's totals.
        counters: Counters,
    },
}

impl core::fmt::Display for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Event::Probed { dir, sectors } => write!(f, "{dir}: offered, {sectors} sectors"),
            Event::Refused { dir, why } => write!(f, "{dir}: refused: {why}"),
            Event::Connected {
                dir,
                front,
                pages,
                entries,
            } => write!(
                f,
                "{dir}: connected to d{front}, {pages}-page ring of {entries} entries"
            ),
            Event::Disconnected { dir, why, counters } => {
                write!(f, "{dir}: disconnected ({why}): {counters}")
            }
            Event::Removed { dir, counters } => write!(f, "{dir}: removed: {counters}"),
        }
    }
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The xenstore connection failed.
    #[error(transparent)]
    Store(#[from] ClientError),
    /// The handshake failed in a way that is not one frontend's fault.
    #[error(transparent)]
    Handshake(crate::xenbus::Error),
}

impl From<crate::xenbus::Error> for Error {
    fn from(e: crate::xenbus::Error) -> Error {
        match e {
            crate::xenbus::Error::Store(s) => Error::Store(s),
            e => Error::Handshake(e),
        }
    }
}

/// A connected ring.
struct Conn<M> {
    mapping: M,
    port: EvtchnPort,
    front: DomId,
    consumed: RingIdx,
    published: RingIdx,
    limits: Limits,
}

struct Device<M> {
    be: Backend,
    storage: Arc<dyn Storage>,
    disk: Disk,
    conn: Option<Conn<M>>,
    counters: Counters,
}

/// Opens the storage a device's `params` names (writable or not).
pub type Open<'a> = dyn FnMut(&str, bool) -> Result<Arc<dyn Storage>, String> + 'a;

/// The one-loop backend of a driver domain (see the module doc).
pub struct Server<'p, P: GrantTable + EventChannel> {
    plat: &'p P,
    root: String,
    cfg: Config,
    devices: Vec<Device<P::Mapping>>,
    /// Directories refused once (not retried while they exist).
    refused: Vec<String>,
    events: Vec<Event>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'p, P: GrantTable + EventChannel> Server<'p, P> {
    /// A server of the devices under `/local/domain/<me>/backend/vbd`. The
    /// caller watches that directory and passes `changed` to
    /// [`poll`](Self::poll) when the watch fired.
    pub fn new(plat: &'p P, me: DomId, cfg: Config) -> Self {
        Server {
            plat,
            root: format!("/local/domain/{}/backend/vbd", me.0),
            cfg,
            devices: Vec::new(),
            refused: Vec::new(),
            events: Vec::new(),
            buf: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The directory to watch.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The ports of the connected rings (wait on them, and on the
    /// xenstore port, between rounds).
    pub fn ports(&self) -> Vec<EvtchnPort> {
        self.devices
            .iter()
            .filter_map(|d| d.conn.as_ref().map(|c| c.port))
            .collect()
    }

    /// Devices known (offered or connected).
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Each known device: its frontend domain, device id, whether a ring
    /// is connected, and its counters.
    pub fn device_list(&self) -> Vec<(DomId, u32, bool, Counters)> {
        self.devices
            .iter()
            .filter_map(|d| {
                let mut it = d.be.dir().rsplit('/');
                let devid = it.next()?.parse().ok()?;
                let _front: u16 = it.next()?.parse().ok()?;
                Some((d.be.frontend_id(), devid, d.conn.is_some(), d.counters))
            })
            .collect()
    }

    /// What happened since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    /// One round (see the module doc). Returns true if a ring still has
    /// requests waiting (poll again before sleeping).
    pub fn poll<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        changed: bool,
        open: &mut Open<'_>,
    ) -> Result<bool, Error> {
        if changed {
            self.scan(xs, open)?;
            // A frontend domain that went away (destroyed before the
            // toolstack removed its device) closed its end of the port:
            // let go of its ring, so its memory can be freed.
            for i in 0..self.devices.len() {
                let gone = self.devices[i].conn.as_ref().is_some_and(|c| {
                    !matches!(self.plat.status(c.port), Ok(PortStatus::Interdomain { .. }))
                });
                if gone {
                    self.disconnect(i, "frontend's event channel closed");
                }
            }
            let mut i = 0;
            while i < self.devices.len() {
                if self.changed(xs, i)? {
                    i += 1;
                }
            }
        }
        let mut more = false;
        for i in 0..self.devices.len() {
            more |= self.serve(xs, i)?;
        }
        Ok(more)
    }

    /// Takes the devices that appeared; forgets refusals whose directory
    /// went away.
    fn scan<X: XenStore + ?Sized>(&mut self, xs: &X, open: &mut Open<'_>) -> Result<(), Error> {
        let present = list_devices(xs, &self.root);
        self.refused.retain(|d| present.contains(d));
        for dir in present {
            if self.refused.contains(&dir) || self.devices.iter().any(|d| d.be.dir() == dir) {
                continue;
            }
            match self.probe(xs, &dir, open) {
                Ok(d) => {
                    xs.watch(&format!("{}/state", d.be.frontend_dir()), &dir)?;
                    self.events.push(Event::Probed {
                        dir: dir.clone(),
                        sectors: d.disk.sectors,
                    });
                    self.devices.push(d);
                }
                Err(ProbeError::Store(e)) => return Err(e.into()),
                Err(ProbeError::Refused(why)) => {
                    self.events.push(Event::Refused {
                        dir: dir.clone(),
                        why,
                    });
                    self.refused.push(dir);
                }
            }
        }
        Ok(())
    }

    fn probe<X: XenStore + ?Sized>(
        &self,
        xs: &X,
        dir: &str,
        open: &mut Open<'_>,
    ) -> Result<Device<P::Mapping>, ProbeError> {
        let read = |k: &str| -> Result<Option<String>, ClientError> {
            match xs.read(T, &format!("{dir}/{k}")) {
                Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
                Err(ClientError::Store(xen::Errno::ENOENT)) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let Some(params) = read("params")? else {
            // The toolstack is still writing the directory (it does so in
            // one transaction, so this is a half-removed one): not ours.
            return Err(ProbeError::Refused("no params".into()));
        };
        let writable = read("mode")?.is_some_and(|m| m.starts_with('w'));
        let storage = open(&params, writable).map_err(|e| {
            let _ = xs.write(T, &format!("{dir}/error"), e.as_bytes());
            let _ = xs.write(
                T,
                &format!("{dir}/state"),
                xen::abi::xenbus::XenbusState::Closing.as_text().as_bytes(),
            );
            ProbeError::Refused(format!("opening {params:?}: {e}"))
        })?;
        let disk = Disk {
            sectors: storage.len() / 512,
            readonly: !writable,
        };
        let offer = Offer {
            sectors: disk.sectors,
            physical_sector_size: storage.physical_sector_size(),
            info: if writable { 0 } else { VDISK_READONLY },
            flush: true,
            barrier: true,
            discard: writable,
            persistent: false,
            max_indirect_segments: self.cfg.max_indirect_segments,
            max_ring_page_order: self.cfg.max_ring_page_order.min(MAX_RING_PAGE_ORDER),
        };
        let be = match Backend::probe(xs, dir, offer) {
            Ok(b) => b,
            Err(crate::xenbus::Error::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ProbeError::Refused(e.to_string())),
        };
        Ok(Device {
            be,
            storage,
            disk,
            conn: None,
            counters: Counters::default(),
        })
    }

    /// Acts on device `i`'s frontend state; false if it was removed.
    fn changed<X: XenStore + ?Sized>(&mut self, xs: &X, i: usize) -> Result<bool, Error> {
        let action = self.devices[i].be.frontend_changed(xs)?;
        match action {
            Action::None => {}
            Action::Connect(ring) => {
                // A reconnect without a close seen in between: start over.
                self.disconnect(i, "frontend reconnected");
                if let Err(why) = self.connect(xs, i, &ring)? {
                    self.devices[i].be.fail(xs, &why)?;
                    self.events.push(Event::Disconnected {
                        dir: self.devices[i].be.dir().into(),
                        why,
                        counters: self.devices[i].counters,
                    });
                }
            }
            Action::Disconnect => self.disconnect(i, "frontend closed"),
            Action::Remove => {
                self.disconnect(i, "device removed");
                let d = self.devices.remove(i);
                let _ = xs.unwatch(&format!("{}/state", d.be.frontend_dir()), d.be.dir());
                self.events.push(Event::Removed {
                    dir: d.be.dir().into(),
                    counters: d.counters,
                });
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Maps the ring and binds the port; `Ok(Err(why))` if the frontend's
    /// grants or port are unusable (this device fails, others go on).
    fn connect<X: XenStore + ?Sized>(
        &mut self,
        xs: &X,
        i: usize,
        ring: &FrontendRing,
    ) -> Result<Result<(), String>, Error> {
        let plat = self.plat;
        let d = &mut self.devices[i];
        let front = d.be.frontend_id();
        let mapping = match plat.map(front, &ring.refs, false) {
            Ok(m) => m,
            Err(e) => return Ok(Err(format!("cannot map the ring: {e}"))),
        };
        let entries = match mapping.rw().map(ring::attach) {
            Some(Ok((rq, _))) => rq.size(),
            _ => return Ok(Err("ring too small or not writable".into())),
        };
        let port = match plat.bind_interdomain(front, ring.port) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("cannot bind the event channel: {e}"))),
        };
        let _ = plat.clear_pending(port);
        d.conn = Some(Conn {
            mapping,
            port,
            front,
            consumed: 0,
            published: 0,
            limits: d.be.offer().limits(),
        });
        d.be.connected(xs)?;
        self.events.push(Event::Connected {
            dir: d.be.dir().into(),
            front,
            pages: ring.refs.len(),
            entries,
        });
        Ok(Ok(()))
    }

    fn disconnect(&mut self, i: usize, why: &str) {
        let d = &mut self.devices[i];
        if let Some(c) = d.conn.take() {
            let _ = self.plat.close(c.port);
            drop(c.mapping);
            self.events.push(Event::Disconnected {
                dir: d.be.dir().into(),
                why: why.into(),
                counters: d.counters,
            });
        }
    }

    /// Serves device `i`'s ring for up to `batch` requests; true if more
    /// are waiting.
    fn serve<X: XenStore + ?Sized>(&mut self, xs: &X, i: usize) -> Result<bool, Error> {
        let plat = self.plat;
        let batch = self.cfg.batch.max(1);
        let d = &mut self.devices[i];
        let Some(c) = d.conn.as_mut() else {
            return Ok(false);
        };
        let _ = plat.clear_pending(c.port);
        let Some(Ok((mut rq, mut rs))) = c
            .mapping
            .rw()
            .map(|m| ring::resume(m, c.consumed, c.published))
        else {
            return Ok(false);
        };
        let mut slot: Slot = [0; BLKIF_ENTRY_SIZE];
        let mut served = 0;
        let mut more = false;
        let mut broken = None;
        loop {
            match rq.next(|| rs.published(), &mut slot) {
                Ok(true) => {}
                Ok(false) if rq.final_check() => continue,
                Ok(false) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
            let (id, operation, status) =
                match plan(plat, c.front, &slot, &c.limits, &d.disk, &mut self.scratch) {
                    Ok(p) => {
                        let r = perform(plat, c.front, &*d.storage, &p.io, &mut self.buf);
                        count(&mut d.counters, &p, r.is_ok());
                        (
                            p.id,
                            p.operation,
                            r.map_or_else(Reason::status, |()| BLKIF_RSP_OKAY),
                        )
                    }
                    Err(r) => {
                        d.counters.refused += 1;
                        (r.id, r.operation, r.reason.status())
                    }
                };
            rs.push(&BlkifResponse {
                id,
                operation,
                status,
                ..Default::default()
            });
            served += 1;
            if served % 16 == 0 && rs.publish() {
                let _ = plat.notify(c.port);
            }
            if served >= batch {
                more = true;
                break;
            }
        }
        if rs.publish() {
            let _ = plat.notify(c.port);
        }
        c.consumed = rq.consumed();
        c.published = rs.published();
        if let Some(e) = broken {
            let why = format!("hostile frontend: {e}");
            self.disconnect(i, &why);
            self.devices[i].be.fail(xs, &why)?;
            return Ok(false);
        }
        Ok(more)
    }
}

fn count(c: &mut Counters, p: &Planned, ok: bool) {
    if !ok {
        c.refused += 1;
        return;
    }
    let n = p.io.data_len() as u64;
    match &p.io {
        Io::Read { .. } => {
            c.reads += 1;
            c.bytes_read += n;
        }
        Io::Write { .. } => {
            c.writes += 1;
            c.bytes_written += n;
        }
        Io::Flush { .. } => {
            c.bytes_written += n;
            if p.operation == BLKIF_OP_FLUSH_DISKCACHE {
                c.flushes += 1;
            } else if p.operation == BLKIF_OP_WRITE_BARRIER {
                c.barriers += 1;
            }
        }
        Io::Discard { .. } => c.discards += 1,
    }
}

enum ProbeError {
    Store(ClientError),
    Refused(String),
}

impl From<ClientError> for ProbeError {
    fn from(e: ClientError) -> Self {
        ProbeError::Store(e)
    }
}
