//! The blkback service: the core on the platform traits, with I/O threads.
//!
//! [`run`] is the body of the block driver domain. It watches its
//! `backend/vbd` directory and serves each device the toolstack plugs there
//! on a thread of its own ([`serve_vbd`]), with its own xenstore connection
//! (from the caller's connector), so a device that fails or is disconnected
//! leaves the others alone.
//!
//! One device, while connected:
//!
//! ```text
//! dispatcher thread                         I/O workers (scoped threads)
//!   wait on the port (or 100 ms)              take a job
//!   copy each request slot out, parse          grant-copy in, pwrite / pread,
//!   fetch indirect pages (grant copy)          grant-copy out
//!   plan against the disk                      lock responses: push, publish,
//!   refuse -> answer BLKIF_RSP_ERROR now       notify if asked
//!   flush/barrier: drain, run inline
//!   ring overflow -> `error`, Closing
//! ```
//!
//! Data moves between the guest's pages and a private 4 KiB-aligned buffer
//! per worker, then one `pread`/`pwrite` per request. With persistent
//! grants (`feature-persistent`, when the frontend says it reuses its
//! grants) each data grant is mapped once, read-write, and kept mapped for
//! the connection ([`Config::max_persistent`] of them at most; beyond that,
//! and without the feature, a segment is moved by grant copy,
//! `GNTTABOP_copy`, one call per segment). Memory is bounded: `workers`
//! buffers of the largest request, a job queue no longer than the ring,
//! at most `max_persistent` mapped pages.
//!
//! A flush or barrier waits until every earlier request of the ring has
//! been answered, writes its data, then calls [`Storage::flush`]
//! (`fdatasync`), and only then are later requests taken from the ring: a
//! write acknowledged before a flush's answer is stable when that answer is
//! sent.

use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;
use std::vec::Vec;

use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::abi::blkif::{BlkifResponse, BLKIF_RSP_OKAY, VDISK_READONLY};
use xen::platform::{ForeignMapping, GrantTable, Platform};
use xen::{DomId, Errno, EvtchnPort, PAGE_SIZE};

use crate::ring::{self, Responses, Slot};
use crate::storage::{self, AlignedBuf, Storage};
use crate::vbd::{Disk, Io};
use crate::wire::Reason;
use crate::xenbus::{Action, Backend, FrontendRing, Offer, MAX_RING_PAGE_ORDER};

const T: TxId = TxId::NONE;

/// How often an idle loop looks at xenstore and at its domain's liveness.
const POLL: Duration = Duration::from_millis(100);

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// I/O threads per connected device.
    pub workers: usize,
    /// `feature-max-indirect-segments` (0: indirect requests not offered).
    pub max_indirect_segments: u16,
    /// `max-ring-page-order`.
    pub max_ring_page_order: u32,
    /// Open images with `O_DIRECT`.
    pub direct: bool,
    /// Offer `feature-persistent` and keep up to this many data grants
    /// mapped per connection (0: not offered).
    pub max_persistent: usize,
    /// Without persistent grants, map each request's grants for the
    /// request instead of grant-copying segment by segment.
    pub map_per_request: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 8,
            max_indirect_segments: 256,
            max_ring_page_order: MAX_RING_PAGE_ORDER,
            direct: false,
            max_persistent: 32 * 256,
            map_per_request: false,
        }
    }
}

/// Why the service (or one device) stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The domain was shut down or destroyed.
    #[error("domain gone")]
    DomainGone,
    /// A platform call failed.
    #[error(transparent)]
    Platform(#[from] xen::platform::Error),
    /// A xenstore call failed.
    #[error(transparent)]
    Store(#[from] ClientError),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] crate::xenbus::Error),
    /// The image could not be opened.
    #[error("opening the image: {0}")]
    Image(#[from] std::io::Error),
}

fn gone(e: &xen::platform::Error) -> bool {
    matches!(e, xen::platform::Error::Errno(Errno::ESRCH))
}

/// Counters of one device (all its connections), for the control
/// channel's `Counters`, tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered `BLKIF_RSP_ERROR` or `EOPNOTSUPP`.
    pub refused: AtomicU64,
    /// Connections served.
    pub connections: AtomicU64,
    /// Read requests served.
    pub reads: AtomicU64,
    /// Write requests served (flushes with data included).
    pub writes: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Whether a ring is connected now.
    pub connected: AtomicBool,
    /// Whether the last connection ended because the frontend broke the
    /// protocol (or its ring could not be mapped).
    pub failed: AtomicBool,
}

impl Stats {
    /// Counts one request that `perform` served.
    fn served(&self, io: &Io) {
        let n = io.data_len() as u64;
        match io {
            Io::Read { .. } => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                self.read_bytes.fetch_add(n, Ordering::Relaxed);
            }
            Io::Write { .. } | Io::Flush { .. } if n > 0 => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.write_bytes.fetch_add(n, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// The counters as the control protocol reports them.
    pub fn counters(&self) -> windsor_control::VbdCounters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        windsor_control::VbdCounters {
            reads: l(&self.reads),
            writes: l(&self.writes),
            read_bytes: l(&self.read_bytes),
            write_bytes: l(&self.write_bytes),
            errors: l(&self.refused),
        }
    }
}

/// Runs the block driver domain: serves every device under
/// `/local/domain/<me>/backend/vbd` until the domain dies.
/// `connect` gives a new xenstore connection of this domain, one per
/// device thread.
pub fn run<P, X, C>(plat: &P, connect: C, cfg: &Config) -> Error
where
    P: Platform + Clone + Send + Sync + 'static,
    P::Mapping: Send + Sync,
    X: XenStore + Send + 'static,
    C: Fn() -> X + Send + Sync + 'static,
{
    let connect = Arc::new(connect);
    let xs = connect();
    let root = format!("/local/domain/{}/backend/vbd", plat.domid().0);
    if let Err(e) = xs.watch(&root, "vbds") {
        return e.into();
    }
    let mut served: Vec<(String, thread::JoinHandle<()>)> = Vec::new();
    let err = loop {
        // Liveness: every platform call fails once the domain is gone.
        if let Err(e) = plat.wait(&[], Some(Duration::ZERO)) {
            break Error::from(e);
        }
        match xs.next_event(Some(POLL)) {
            Ok(_) | Err(ClientError::Timeout) => {}
            Err(e) => break e.into(),
        }
        // A device whose thread ended stays known (not retried) until the
        // toolstack removes its directory.
        let present = crate::poll::list_devices(&xs, &root);
        served.retain(|(d, h)| !h.is_finished() || present.contains(d));
        for dir in present {
            if served.iter().any(|(d, _)| *d == dir) {
                continue;
            }
            let (plat, connect, cfg, d) = (plat.clone(), connect.clone(), cfg.clone(), dir.clone());
            let h = thread::spawn(move || {
                let xs = connect();
                match serve_vbd(&plat, &xs, &d, &cfg, &Stats::default()) {
                    Ok(()) => tracing::info!(dir = %d, "device removed"),
                    Err(e) => tracing::warn!(dir = %d, error = %e, "device stopped"),
                }
            });
            served.push((dir, h));
        }
    };
    for (_, h) in served {
        let _ = h.join();
    }
    err
}

/// Serves the device whose backend directory is `dir` until it is removed
/// (`Ok`) or the domain dies.
pub fn serve_vbd<P, X>(
    plat: &P,
    xs: &X,
    dir: &str,
    cfg: &Config,
    stats: &Stats,
) -> Result<(), Error>
where
    P: Platform + Sync,
    P::Mapping: Send + Sync,
    X: XenStore,
{
    serve_vbd_until(plat, xs, dir, cfg, stats, &AtomicBool::new(false))
}

/// [`serve_vbd`], also ending (`Ok`, the backend walked to `Closed`) once
/// `stop` is set: what `Unplug` does. Requests taken from the ring are
/// answered first.
///
/// When the domain dies, the device's storage is leaked, not closed: a
/// destroyed domain writes nothing back (no cache flush of a qcow2
/// image's metadata), as a process killed with `SIGKILL` would not; only
/// what a flush made stable is on the disk.
pub fn serve_vbd_until<P, X>(
    plat: &P,
    xs: &X,
    dir: &str,
    cfg: &Config,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), Error>
where
    P: Platform + Sync,
    P::Mapping: Send + Sync,
    X: XenStore,
{
    let read = |k: &str| -> Result<String, Error> {
        Ok(String::from_utf8_lossy(&xs.read(T, &format!("{dir}/{k}"))?).into_owned())
    };
    let params = read("params")?;
    let writable = read("mode").map(|m| m.starts_with('w')).unwrap_or(false);
    let storage: Arc<dyn Storage> = match storage::open(
        std::path::Path::new(&params),
        storage::Options {
            writable,
            direct: cfg.direct,
        },
    ) {
        Ok(s) => Arc::from(s),
        Err(e) => {
            // As Linux's blkback: say why, and close.
            let _ = xs.write(
                T,
                &format!("{dir}/error"),
                format!("opening {params}: {e}").as_bytes(),
            );
            let _ = xs.write(
                T,
                &format!("{dir}/state"),
                xen::abi::xenbus::XenbusState::Closing.as_text().as_bytes(),
            );
            return Err(e.into());
        }
    };
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
        persistent: cfg.max_persistent > 0,
        max_indirect_segments: cfg.max_indirect_segments,
        max_ring_page_order: cfg.max_ring_page_order.min(MAX_RING_PAGE_ORDER),
    };
    let mut be = Backend::probe(xs, dir, offer)?;
    let token = format!("vbd:{dir}");
    xs.watch(&format!("{}/state", be.frontend_dir()), &token)?;
    xs.watch(&format!("{dir}/online"), &token)?;
    let result = loop {
        match be.frontend_changed(xs)? {
            Action::Connect(ring) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                stats.failed.store(false, Ordering::Relaxed);
                let r = connect_ring(plat, xs, &mut be, &ring, &disk, &*storage, cfg, stats, stop);
                stats.connected.store(false, Ordering::Relaxed);
                match r {
                    Ok(()) => {}
                    Err(Error::Platform(e)) if gone(&e) => break Err(Error::DomainGone),
                    Err(Error::Platform(e)) => {
                        // Bad ring grants or port: this device only.
                        stats.failed.store(true, Ordering::Relaxed);
                        be.fail(xs, &format!("cannot connect: {e}"))?;
                    }
                    Err(e) => break Err(e),
                }
            }
            Action::Remove => break Ok(()),
            Action::Disconnect | Action::None => {}
        }
        if stop.load(Ordering::Relaxed) {
            let _ = xs.write(
                T,
                &format!("{dir}/state"),
                xen::abi::xenbus::XenbusState::Closed.as_text().as_bytes(),
            );
            break Ok(());
        }
        if let Err(e) = plat.wait(&[], Some(Duration::ZERO)) {
            break Err(e.into());
        }
        match xs.next_event(Some(POLL)) {
            Ok(_) | Err(ClientError::Timeout) => {}
            Err(e) => break Err(e.into()),
        }
    };
    if matches!(result, Err(Error::DomainGone)) {
        // Killed: no clean-up (see above).
        core::mem::forget(storage);
        return result;
    }
    let _ = xs.unwatch(&format!("{}/state", be.frontend_dir()), &token);
    let _ = xs.unwatch(&format!("{dir}/online"), &token);
    result
}

/// The shared state of one connection's response side.
struct Answer<'a, P> {
    plat: &'a P,
    port: EvtchnPort,
    rsp: Mutex<Responses<'a>>,
    /// Requests taken from the ring and not yet answered.
    inflight: Mutex<usize>,
    drained: Condvar,
    stats: &'a Stats,
    dead: AtomicBool,
}

impl<P: Platform> Answer<'_, P> {
    fn send(&self, id: u64, operation: u8, status: i16) {
        let notify = {
            let mut r = self.rsp.lock().unwrap_or_else(PoisonError::into_inner);
            r.push(&BlkifResponse {
                id,
                operation,
                status,
                ..Default::default()
            });
            r.publish()
        };
        if status != BLKIF_RSP_OKAY {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        if notify {
            if let Err(e) = self.plat.notify(self.port) {
                if gone(&e) {
                    self.dead.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Answers `job` with the outcome of performing it, and counts it.
    fn finish(&self, job: &Job, r: Result<(), Reason>) {
        let status = match r {
            Ok(()) => {
                self.stats.served(&job.io);
                BLKIF_RSP_OKAY
            }
            Err(r) => r.status(),
        };
        self.send(job.id, job.operation, status);
    }

    /// A worker finished a job (after answering it).
    fn done(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.drained.notify_all();
        }
    }

    fn published(&self) -> u32 {
        self.rsp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .published()
    }

    fn idle(&self) -> bool {
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) == 0
    }

    fn drain(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self.drained.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How a connection reaches the frontend's data pages: grant copy, or
/// persistent mappings (one page each, kept until the connection ends).
struct Grants<'a, P: GrantTable> {
    plat: &'a P,
    front: DomId,
    persistent: Option<Mutex<std::collections::HashMap<u32, Arc<P::Mapping>>>>,
    max: usize,
    /// Without persistent grants: map a request's pages for the request
    /// (one `map` of all its grants) instead of grant-copying each segment.
    map_per_request: bool,
}

impl<P: GrantTable> Grants<'_, P> {
    /// Maps all the segments' grants at once, if this connection maps per
    /// request; `None` otherwise (or if the map fails: then copy).
    fn map_request(&self, segs: &[crate::wire::Segment]) -> Option<P::Mapping> {
        if !self.map_per_request || self.persistent.is_some() {
            return None;
        }
        let refs: Vec<xen::GrantRef> = segs.iter().map(|s| s.gref).collect();
        self.plat.map(self.front, &refs, false).ok()
    }
}

impl<P: GrantTable> Grants<'_, P>
where
    P::Mapping: Send + Sync,
{
    /// Makes sure `local` (a thread's view of the persistent mappings)
    /// holds the segments' grants: taken from the connection's cache (one
    /// lock per request, only for grants this thread has not seen) or
    /// mapped while there is room. A grant left out is grant-copied.
    fn fill(&self, local: &mut Local<P>, segs: &[crate::wire::Segment]) {
        let Some(cache) = self.persistent.as_ref() else {
            return;
        };
        let mut shared = None;
        for s in segs {
            if local.contains_key(&s.gref.0) {
                continue;
            }
            let c =
                shared.get_or_insert_with(|| cache.lock().unwrap_or_else(PoisonError::into_inner));
            let m = match c.get(&s.gref.0) {
                Some(m) => m.clone(),
                None if c.len() < self.max => {
                    let Ok(m) = self.plat.map(self.front, &[s.gref], false) else {
                        continue;
                    };
                    let m = Arc::new(m);
                    c.insert(s.gref.0, m.clone());
                    m
                }
                None => continue,
            };
            local.insert(s.gref.0, m);
        }
    }

    /// Copies segment `s` of the guest into `out`.
    fn read(
        &self,
        s: &crate::wire::Segment,
        m: Option<&Arc<P::Mapping>>,
        out: &mut [u8],
    ) -> Result<(), Reason> {
        if let Some(rw) = m.and_then(|m| m.rw()) {
            rw.read_bytes(usize::from(s.offset()), out);
            return Ok(());
        }
        self.plat
            .copy_from_grant(self.front, s.gref, s.offset(), out)
            .map_err(|_| Reason::BadGrant)
    }

    /// Copies `data` into segment `s` of the guest.
    fn write(
        &self,
        s: &crate::wire::Segment,
        m: Option<&Arc<P::Mapping>>,
        data: &[u8],
    ) -> Result<(), Reason> {
        if let Some(rw) = m.and_then(|m| m.rw()) {
            rw.write_bytes(usize::from(s.offset()), data);
            return Ok(());
        }
        self.plat
            .copy_to_grant(self.front, s.gref, s.offset(), data)
            .map_err(|_| Reason::BadGrant)
    }
}

/// A thread's own handles on the persistent mappings it has used (so the
/// data path touches no shared reference count).
type Local<P> = std::collections::HashMap<u32, Arc<<P as GrantTable>::Mapping>>;

/// A request ready for a worker.
struct Job {
    id: u64,
    operation: u8,
    io: Io,
}

#[allow(clippy::too_many_arguments)]
fn connect_ring<P, X>(
    plat: &P,
    xs: &X,
    be: &mut Backend,
    fr: &FrontendRing,
    disk: &Disk,
    storage: &dyn Storage,
    cfg: &Config,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), Error>
where
    P: Platform + Sync,
    P::Mapping: Send + Sync,
    X: XenStore,
{
    let front = be.frontend_id();
    let mapping = plat.map(front, &fr.refs, false)?;
    let mem = mapping
        .rw()
        .ok_or(xen::platform::Error::Errno(Errno::EACCES))?;
    let port = plat.bind_interdomain(front, fr.port)?;
    let _ = plat.clear_pending(port);
    let (mut reqs, rsps) =
        ring::attach(mem).map_err(|_| xen::platform::Error::Errno(Errno::EINVAL))?;
    be.connected(xs)?;
    stats.connected.store(true, Ordering::Relaxed);
    tracing::info!(
        dir = be.dir(),
        front = front.0,
        pages = fr.refs.len(),
        "connected"
    );
    let limits = be.offer().limits();
    let answer = Answer {
        plat,
        port,
        rsp: Mutex::new(rsps),
        inflight: Mutex::new(0),
        drained: Condvar::new(),
        stats,
        dead: AtomicBool::new(false),
    };
    let grants = Grants {
        plat,
        front,
        persistent: (fr.persistent && cfg.max_persistent > 0)
            .then(|| Mutex::new(std::collections::HashMap::new())),
        max: cfg.max_persistent,
        map_per_request: cfg.map_per_request,
    };
    let max_bytes = usize::from(limits.max_indirect_segments.max(11)) * PAGE_SIZE;
    let (tx, rx) = mpsc::sync_channel::<Job>(reqs.size() as usize);
    let rx = Mutex::new(rx);
    let result = thread::scope(|s| {
        for _ in 0..cfg.workers.max(1) {
            let (rx, answer, grants) = (&rx, &answer, &grants);
            s.spawn(move || {
                let mut buf = AlignedBuf::new(max_bytes);
                let mut local = Local::<P>::new();
                loop {
                    let job = match rx.lock().unwrap_or_else(PoisonError::into_inner).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    let r = perform(grants, &mut local, storage, &job.io, &mut buf);
                    answer.finish(&job, r);
                    answer.done();
                }
            });
        }
        let r = dispatch(
            plat, xs, be, &grants, &mut reqs, &answer, disk, &limits, storage, &tx, stop,
        );
        drop(tx);
        r
    });
    let _ = plat.close(port);
    drop(mapping);
    tracing::info!(dir = be.dir(), "disconnected");
    result
}

#[allow(clippy::too_many_arguments)]
fn dispatch<P, X>(
    plat: &P,
    xs: &X,
    be: &mut Backend,
    grants: &Grants<'_, P>,
    reqs: &mut ring::Requests<'_>,
    answer: &Answer<'_, P>,
    disk: &Disk,
    limits: &crate::wire::Limits,
    storage: &dyn Storage,
    tx: &mpsc::SyncSender<Job>,
    stop: &AtomicBool,
) -> Result<(), Error>
where
    P: Platform,
    P::Mapping: Send + Sync,
    X: XenStore,
{
    let front = grants.front;
    let mut slot: Slot = [0; xen::abi::blkif::BLKIF_ENTRY_SIZE];
    let mut indirect = Vec::new();
    let mut inline = AlignedBuf::new(PAGE_SIZE);
    let mut local = Local::<P>::new();
    loop {
        if answer.dead.load(Ordering::Relaxed) {
            return Err(Error::DomainGone);
        }
        if stop.load(Ordering::Relaxed) {
            // Unplugged: answer what was taken, then let go of the ring.
            answer.drain();
            return Ok(());
        }
        match reqs.next(|| answer.published(), &mut slot) {
            Ok(true) => {}
            Ok(false) => {
                if reqs.final_check() {
                    continue;
                }
                let woke = plat.wait(&[answer.port], Some(POLL))?;
                if woke {
                    plat.clear_pending(answer.port)?;
                    continue;
                }
                // Idle: has the frontend gone away or closed?
                if xs.next_event(Some(Duration::ZERO)).is_ok() {
                    match be.frontend_changed(xs)? {
                        Action::None => {}
                        _ => {
                            answer.drain();
                            return Ok(());
                        }
                    }
                }
                if matches!(
                    plat.status(answer.port),
                    Ok(xen::platform::PortStatus::Unbound { .. })
                ) {
                    // The frontend closed its port (or died).
                    answer.drain();
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(dir = be.dir(), error = %e, "hostile frontend: disconnecting");
                answer.drain();
                answer.stats.failed.store(true, Ordering::Relaxed);
                be.fail(xs, &e.to_string())?;
                return Ok(());
            }
        }
        let planned =
            crate::poll::plan(plat, front, &slot, limits, disk, &mut indirect).map(|p| Job {
                id: p.id,
                operation: p.operation,
                io: p.io,
            });
        match planned {
            Err(r) => answer.send(r.id, r.operation, r.reason.status()),
            Ok(job) if job.io.is_ordered() => {
                // Everything before it completes; it runs alone.
                answer.drain();
                let r = perform(grants, &mut local, storage, &job.io, &mut inline);
                answer.finish(&job, r);
            }
            Ok(job) if answer.idle() && !reqs.has_unconsumed() => {
                // A lone request (queue depth 1): serve it here rather
                // than wake a worker, one thread hop less.
                let r = perform(grants, &mut local, storage, &job.io, &mut inline);
                answer.finish(&job, r);
            }
            Ok(job) => {
                *answer
                    .inflight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += 1;
                if tx.send(job).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Moves the data of one request between the guest's grants and the
/// storage.
fn perform<P: GrantTable>(
    grants: &Grants<'_, P>,
    local: &mut Local<P>,
    storage: &dyn Storage,
    io: &Io,
    buf: &mut AlignedBuf,
) -> Result<(), Reason>
where
    P::Mapping: Send + Sync,
{
    let len = io.data_len();
    if buf.capacity() < len {
        *buf = AlignedBuf::new(len);
    }
    fn gather<P: GrantTable>(
        grants: &Grants<'_, P>,
        local: &mut Local<P>,
        segs: &[crate::wire::Segment],
        bytes: &mut [u8],
    ) -> Result<(), Reason>
    where
        P::Mapping: Send + Sync,
    {
        if let Some(m) = grants.map_request(segs) {
            let mem = m.ro();
            let mut at = 0;
            for (i, s) in segs.iter().enumerate() {
                mem.read_bytes(
                    i * PAGE_SIZE + usize::from(s.offset()),
                    &mut bytes[at..at + s.len()],
                );
                at += s.len();
            }
            return Ok(());
        }
        grants.fill(local, segs);
        let mut at = 0;
        for s in segs {
            grants.read(s, local.get(&s.gref.0), &mut bytes[at..at + s.len()])?;
            at += s.len();
        }
        Ok(())
    }
    match io {
        Io::Read { offset, segs } => {
            let bytes = buf.bytes_mut(len);
            storage.read_at(bytes, *offset).map_err(|_| Reason::Io)?;
            if let Some(rw) = grants.map_request(segs).as_ref().and_then(|m| m.rw()) {
                let mut at = 0;
                for (i, s) in segs.iter().enumerate() {
                    rw.write_bytes(
                        i * PAGE_SIZE + usize::from(s.offset()),
                        &bytes[at..at + s.len()],
                    );
                    at += s.len();
                }
                return Ok(());
            }
            grants.fill(local, segs);
            let mut at = 0;
            for s in segs {
                grants.write(s, local.get(&s.gref.0), &bytes[at..at + s.len()])?;
                at += s.len();
            }
            Ok(())
        }
        Io::Write { offset, segs } => {
            let bytes = buf.bytes_mut(len);
            gather(grants, local, segs, bytes)?;
            storage.write_at(bytes, *offset).map_err(|_| Reason::Io)
        }
        Io::Flush { offset, segs } => {
            if !segs.is_empty() {
                let bytes = buf.bytes_mut(len);
                gather(grants, local, segs, bytes)?;
                storage.write_at(bytes, *offset).map_err(|_| Reason::Io)?;
            }
            storage.flush().map_err(|_| Reason::Io)
        }
        Io::Discard { offset, len } => storage.discard(*offset, *len).map_err(|_| Reason::Io),
    }
}
