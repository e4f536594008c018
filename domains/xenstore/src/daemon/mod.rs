//! The `windsor-xenstored` daemon: a Unix-socket xenstored with durable writes.
//!
//! ```text
//!  clients ──Unix socket──▶ event loop (mio, one thread) ──▶ Engine (the core)
//!  guests ──xenbus rings──▶     │  ▲                            │ replies, events
//!   (bridge thread wakes loop)  │  │ synced LSN (Waker)         ▼
//!            pwrite per round   │  │                    per-connection output
//!                               ▼  │                    queues, gated by LSN
//!                        persist::Log ── sync thread (fdatasync, group commit)
//! ```
//!
//! One thread owns the store and every connection. A request that changed
//! the store appends a log record ([`records`](crate::persist::records)),
//! with the durability class of the paths it changed
//! ([`Durability`](crate::persist::Durability), by default
//! [`PoolSynced`](crate::persist::PoolSynced): `/pool` synced, the rest
//! logged). At the end of each round the loop writes the round's records
//! into the log file with one `pwrite` (the page cache: they now survive a
//! crash of the daemon); if one of them is `Synced`, the sync thread
//! `fdatasync`s the segment, one sync covering every record written
//! before it (group commit). Every message a request produced (the reply,
//! watch events to other connections) waits in its connection's queue
//! until its record is as far as its class requires, and so does every
//! message behind it on the same connection (each connection sees its
//! messages in order), and every record after a `Synced` one not yet
//! synced (a reply never overtakes the sync of an earlier write). Reads
//! are answered at once; a read may see a write whose reply is still
//! waiting for the disk.
//!
//! Clients on the socket are dom0 (privileged), as with C xenstored. In host
//! mode, an [`Adopter`] hands the loop an already connected stream that acts
//! for a given domain (its permissions and quotas apply): that is how the
//! toolstack of `windsor up` reaches the store. A client that breaks framing
//! (oversized length) is disconnected; the rest go on.
//!
//! # Pool mode
//!
//! With [`Daemon::set_pool`] (used by `windsor-xenstored-pool` of the
//! `windsor-xenstore-replication` crate), `XS_WRITE`, `XS_MKDIR`, `XS_RM`
//! and `XS_SET_PERMS` of socket clients naming a path under `/pool` are not
//! applied to the store but handed to the replicated log; the connection is
//! not read further until their reply comes back ([`PoolEvent::Reply`]),
//! so its replies stay in order. The replicated entries come back as
//! [`PoolEvent::Apply`] and are applied to the store without being logged
//! locally (the replicated log holds them), firing their watches, and
//! with them the nodes' replicated revisions. Reads of `/pool` wait for a
//! barrier ([`PoolKind::Barrier`], ReadIndex) before the store serves them
//! from the mirror, so they are linearizable on every host. Inside a
//! transaction `/pool` is read and written in the store's overlay as any
//! path; its commit goes through the log ([`PoolKind::Txn`]): the
//! replicated revisions of the `/pool` nodes it saw are its read set,
//! checked by the state machine, and a conflict anywhere in the pool is
//! `EAGAIN`. Guests' ring requests are not routed (they reach the local
//! store as before). Off by default: without `set_pool` nothing changes.
//!
//! # Bounds on what clients make the daemon hold ([`Limits`])
//!
//! As C xenstored bounds unread output and requests per connection, and
//! for every client, dom0's included (memory is a host resource, not a
//! permission): a connection whose unsent output reaches
//! [`Limits::conn_output_soft`] is not read any more until it drains to
//! half of it, so a client that sends requests without reading replies
//! holds at most that much output and one read's worth of unparsed bytes
//! (the rest waits in its socket buffer, then its `write` blocks); no
//! connection is read while all of them together hold
//! [`Limits::total_output`]. Output a connection does not cause itself
//! (watch events) can still grow: a connection holding
//! [`Limits::conn_output_hard`], or more than the soft bound while the
//! total is over its bound, is disconnected, and while the total stays
//! over its bound the biggest queues are dropped (once a second) until it
//! is under half of it: the daemon never stops reading everyone for long.
//! A partial request (a header or a payload not yet whole) that is not
//! completed within [`Limits::partial_timeout`] disconnects its client. Open transactions'
//! memory is bounded per connection and in total by the store
//! ([`Config::txn_bytes_per_conn`](crate::store::Config::txn_bytes_per_conn),
//! [`Config::txn_bytes_total`](crate::store::Config::txn_bytes_total)):
//! a write beyond fails with `ENOSPC` and the transaction cannot commit.
//!
//! As the xenstore domain of host mode, the daemon also serves guests over
//! their xenbus rings ([`Daemon::serve_rings`], [`Rings`]): the same loop
//! takes ring requests into the same store (one tree, one accounting of
//! permissions and quotas per domain), logs their mutations with the
//! socket clients' in the same group commits, and puts a reply on a ring
//! only once its record is durable. A socket client's `XS_INTRODUCE` maps
//! the guest's ring and binds its port before the store hears of it: a
//! ring that cannot be served gets an error reply and the domain is not
//! introduced; a domain served already is introduced again only with its
//! own ring and port (`EINVAL` otherwise, nothing changes, so a stray
//! `XS_INTRODUCE` cannot take a running guest's ring); `XS_RELEASE` and the
//! guest's death (its port closes) undo it, and a death releases the
//! domain in the store as C xenstored does (`@releaseDomain` fires). A
//! guest that breaks the ring protocol loses its own connection only.
//! `XS_CONTROL connections [<domid>]` (dom0) lists every connection (of
//! one domain) as `<domid> socket`, `<domid> ring` or `<domid>
//! ring-ignored`.
//!
//! # What bounds the daemon
//!
//! Measured on the 2-core VM this was developed on, `xs-load -t 16 -m
//! mixed`, persistence on, A/B runs alternated with C xenstored and with
//! the null server of `benches/xenstored.rs` (one thread per connection,
//! no work): the null server reaches 3.5-4.9x C xenstored, Windsor
//! 1.1-1.6x (median ~1.2-1.3x), i.e. 0.25-0.37 of that ceiling. The
//! loop thread is not saturated (about 45% of one CPU); the store's own
//! code is a few percent of the samples. The time goes to the kernel's
//! scheduling of wake-ups, and cross-CPU wake-ups are interprocessor
//! interrupts that cost VM exits here (`_raw_spin_unlock_irqrestore`
//! under `try_to_wake_up` is ~20% of all samples, `finish_task_switch`
//! ~16%): each reply's `writev` wakes its client with a synchronous
//! wake-up, and the scheduler runs the client at once, preempting the
//! loop (~1.1 involuntary switches of the loop per request); reading a
//! request frees the client's buffer and wakes the client, asleep in
//! `read`, a first time for nothing (`unix_write_space`). With the
//! daemon and the clients pinned to one CPU, Windsor does 56-58k ops/s,
//! 0.58 of the null server on that CPU, more than on two CPUs. The disk
//! adds one `O_DSYNC` `pwrite` (~200 us, a virtio kick) per commit group.
//! (These measurements predate the durability classes: now only `/pool`
//! writes wait for a sync, and the others cost one page-cache `pwrite`
//! per loop round; see BENCHMARKS.md.)
//! Handing each round's records to the log at once, reading the durable
//! LSN without the lock and waking the loop only while it polls cut the
//! daemon's system calls from 3.0 to 2.5 per request (futex 0.4 -> 0.16,
//! eventfd writes 0.10 -> 0.01, `pwrite` 0.11 -> 0.075: bigger groups),
//! but throughput stayed within the run-to-run noise. Tried and not
//! kept, no gain beyond noise: 1 instead of 2 commit threads, `nice -10`
//! for the daemon (fewer preemptions, 0.4 per request, same
//! throughput), a 100 us EEVDF slice, pinning the daemon to one CPU
//! (worse). A second I/O thread is not indicated: the loop has idle
//! time, and more loops would add cross-CPU wake-ups, the dominant cost.
//!
//! # Memory
//!
//! Measured with 1,000 socket clients each holding one watch: about
//! 0.64 KB resident per connection (was 1.37 KB), as C xenstored. An idle
//! connection holds no read buffer (whole messages are parsed in place
//! from the loop's scratch) and no output queue (drained queues are
//! freed, in the daemon and in the store); the store's connections are
//! boxed so the map's spare slots are small; watchers of one path share
//! its bytes. At start the resident set is ~3.7 MB, of which ~0.4 MB is
//! anonymous: the rest is file-backed (the binary's code, ~1.7 MB, and
//! libc), shared and clean. The helper threads get malloc arenas of their
//! own; an operator who wants them shared sets `MALLOC_ARENA_MAX=2` in the
//! daemon's environment (about 0.1 MB less). What the store holds after a
//! load (the nodes written) stays: the benchmark's fan-out RSS (6.3 MB)
//! is measured after its `xs-load` runs. Output and transaction memory
//! freed after a burst (4 MiB or more) goes back to the host: the loop
//! then trims the heap (`xen::host::release_free_heap`).

extern crate std;

use std::boxed::Box;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use std::vec::Vec;

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use xen::DomId;

use crate::persist::{Batch, Durability, Log, Lsn, PersistError, SyncProbe};
use crate::store::Effect;
use crate::wire::{Header, Packet, XsOp};

pub use engine::{Engine, Record, RecoverError};
pub use rings::Rings;

mod engine;
mod rings;

/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 4096;
/// Output bytes a connection may leave unread before it is disconnected
/// (the default of [`Limits::conn_output_hard`]).
pub const MAX_QUEUED: usize = 4 << 20;

/// Bounds on what clients can make the daemon hold (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Unsent output at which a connection is no longer read.
    pub conn_output_soft: usize,
    /// Unsent output at which a connection is disconnected.
    pub conn_output_hard: usize,
    /// Unsent output of all connections at which none is read.
    pub total_output: usize,
    /// How long a partial request may wait for its remaining bytes.
    pub partial_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            conn_output_soft: 256 << 10,
            conn_output_hard: MAX_QUEUED,
            total_output: 64 << 20,
            partial_timeout: Duration::from_secs(10),
        }
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket could not be bound or polled.
    #[error("socket {}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Persistence failed (opening the data directory, or the log writer).
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The recovered state could not be loaded into the store.
    #[error(transparent)]
    Recover(#[from] RecoverError),
}

/// How to run the daemon.
#[derive(Clone, Debug)]
pub struct Config {
    /// Unix socket to listen on (replaced if it exists).
    pub socket: PathBuf,
    /// Directory for the log and snapshots.
    pub data_dir: PathBuf,
    /// Take a snapshot after this many log records.
    pub snapshot_every: u64,
    /// Commit threads writing the log concurrently.
    pub commit_threads: usize,
}

struct Out {
    lsn: Lsn,
    bytes: Vec<u8>,
}

struct Conn {
    stream: UnixStream,
    /// Received bytes not yet parsed into a whole message.
    rbuf: Vec<u8>,
    /// Messages not yet written, each gated by the LSN it waits for.
    out: VecDeque<Out>,
    /// Bytes of `out`'s front already written.
    written: usize,
    queued: usize,
    want_write: bool,
    /// Not read (output over its bound); `rbuf` may hold whole messages.
    paused: bool,
    /// When the partial message in `rbuf` started.
    partial_since: Option<Instant>,
    /// Pool mode: the ticket of this connection's request in the
    /// replicated log; nothing more is read until it is answered.
    pool_wait: Option<u64>,
}

/// Hands connected streams to a running [`Daemon`], each acting for a
/// domain. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Adopter {
    tx: mpsc::Sender<(std::os::unix::net::UnixStream, DomId)>,
    waker: Arc<Waker>,
}

impl Adopter {
    /// Serves `stream` as a connection of domain `dom`. Fails if the daemon
    /// is gone.
    pub fn adopt(&self, stream: std::os::unix::net::UnixStream, dom: DomId) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        self.tx
            .send((stream, dom))
            .map_err(|_| io::Error::from(io::ErrorKind::NotConnected))?;
        self.waker.wake()
    }

    /// A new connection for `dom`: the daemon adopts one end of a socket
    /// pair and the caller gets the other.
    pub fn connect(&self, dom: DomId) -> io::Result<std::os::unix::net::UnixStream> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        self.adopt(theirs, dom)?;
        Ok(ours)
    }
}

/// A request under `/pool` taken off the store's path in pool mode (see
/// [`Daemon::set_pool`]).
#[derive(Clone, Debug)]
pub struct PoolRequest {
    /// Names the request in its [`PoolEvent::Reply`] or
    /// [`PoolEvent::Release`].
    pub ticket: u64,
    /// The request's header (its type, id and transaction).
    pub header: Header,
    /// Its payload (path, then value or permissions).
    pub payload: Vec<u8>,
    /// The caller's domain.
    pub dom: DomId,
    /// Whether the caller is privileged.
    pub privileged: bool,
    /// What the replicated side is asked to do.
    pub kind: PoolKind,
}

/// What a [`PoolRequest`] asks of the replicated side.
#[derive(Clone, Debug)]
pub enum PoolKind {
    /// `XS_WRITE`, `XS_MKDIR`, `XS_RM` or `XS_SET_PERMS` outside a
    /// transaction: commit it; the answer is a [`PoolEvent::Reply`].
    Op,
    /// A read of `/pool` outside a transaction (`XS_READ`,
    /// `XS_DIRECTORY`, `XS_DIRECTORY_PART`, `XS_GET_PERMS`), or the commit
    /// of a transaction that touched `/pool` without writing there: a
    /// barrier. The answer is a [`PoolEvent::Release`] once every entry
    /// committed in the pool before the request arrived is mirrored here
    /// (ReadIndex); the daemon then serves the request from its store.
    Barrier,
    /// The commit (`XS_TRANSACTION_END T`) of a transaction that wrote
    /// under `/pool`: commit its `/pool` part as one replicated entry,
    /// validated against its read set (`EAGAIN` on conflict); the answer
    /// is a [`PoolEvent::Reply`]. The local transaction is already ended.
    Txn(PoolTxn),
}

/// The `/pool` part of a transaction, as the replicated log takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolTxn {
    /// Every `/pool` path it touched, with the replicated revision the
    /// node had when first touched (`None`: absent then).
    pub reads: Vec<(std::string::String, Option<u64>)>,
    /// Its net effect under `/pool`, parents before children.
    pub ops: Vec<PoolOp>,
}

/// One change of a [`PoolTxn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolOp {
    /// Create (with missing parents) or overwrite.
    Write {
        /// The path.
        path: std::string::String,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove with the subtree.
    Rm {
        /// The path.
        path: std::string::String,
    },
    /// Set the permissions (wire form).
    SetPerms {
        /// The path.
        path: std::string::String,
        /// Permissions as on the wire.
        perms: Vec<u8>,
    },
}

/// What the replication side hands the loop (see [`PoolSender`]).
#[derive(Debug)]
pub enum PoolEvent {
    /// The whole reply (header and payload) to the request `ticket`.
    Reply {
        /// From [`PoolRequest::ticket`].
        ticket: u64,
        /// The message to send.
        bytes: Vec<u8>,
    },
    /// A replicated entry to mirror: the mutations, applied in order
    /// without logging them locally (the replicated log holds them), then
    /// the watches of `fire` fire.
    Apply {
        /// Local mutations.
        mutations: Vec<crate::store::Mutation>,
        /// Paths whose watches fire.
        fire: Vec<std::string::String>,
        /// The replicated revisions of the nodes the mutations changed,
        /// in order (`None`: removed with its subtree), what a
        /// transaction's read set records (see [`PoolTxn::reads`]).
        revs: Vec<(std::string::String, Option<u64>)>,
    },
    /// The barrier of [`PoolKind::Barrier`] passed: serve the held
    /// request from the store now.
    Release {
        /// From [`PoolRequest::ticket`].
        ticket: u64,
    },
}

/// Hands [`PoolEvent`]s to a running [`Daemon`] from any thread.
#[derive(Clone)]
pub struct PoolSender {
    tx: mpsc::Sender<PoolEvent>,
    waker: Arc<Waker>,
}

impl PoolSender {
    /// Queues `ev` and wakes the loop. Fails if the daemon is gone.
    pub fn send(&self, ev: PoolEvent) -> io::Result<()> {
        self.tx
            .send(ev)
            .map_err(|_| io::Error::from(io::ErrorKind::NotConnected))?;
        self.waker.wake()
    }
}

/// True for `/pool` and the paths below it.
pub fn is_pool_path(path: &[u8]) -> bool {
    path == b"/pool" || path.starts_with(b"/pool/")
}

struct Pool {
    submit: Box<dyn FnMut(PoolRequest) + Send>,
    inbox: mpsc::Receiver<PoolEvent>,
    next_ticket: u64,
    /// Requests submitted and not yet answered: ticket to slot, and the
    /// request itself for a barrier.
    waiting: std::collections::HashMap<u64, (usize, Option<Vec<u8>>)>,
    /// The replicated revision of every mirrored `/pool` node.
    revs: BTreeMap<std::string::String, u64>,
    /// Open transactions (slot, id) that touched `/pool` after a barrier.
    fresh: std::collections::HashSet<(usize, u32)>,
}

/// A running daemon: build with [`Daemon::bind`], then [`Daemon::run`].
pub struct Daemon {
    /// Pool mode: requests under `/pool` go through the replicated log.
    pool: Option<Pool>,
    adopt_rx: mpsc::Receiver<(std::os::unix::net::UnixStream, DomId)>,
    adopter: Adopter,
    poll: Poll,
    listener: UnixListener,
    log: Log,
    engine: Engine,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections with messages waiting for durability.
    gated: Vec<usize>,
    /// LSNs of `Synced` records not yet durable, oldest first.
    pending_sync: VecDeque<Lsn>,
    /// Connections that got output during this round.
    touched: Vec<usize>,
    durable: Lsn,
    since_snapshot: u64,
    config: Config,
    scratch: Vec<u8>,
    outputs: Vec<(usize, Vec<u8>)>,
    /// The guests' rings, if this daemon serves any.
    rings: Option<rings::RingSide>,
    /// The newest log record appended since ring output was last gated.
    round_lsn: Lsn,
    /// The newest log record appended (possibly still in `batch`).
    newest_lsn: Lsn,
    /// This round's records, handed to the log at once at its end.
    batch: Batch,
    waker: Arc<Waker>,
    /// Set while the loop may be blocked in `poll`: only then do the
    /// commit threads wake it.
    polling: Arc<AtomicBool>,
    limits: Limits,
    /// Unsent output of all connections.
    total_queued: usize,
    /// Connections not read because of output bounds.
    paused: Vec<usize>,
    /// When partial requests were last looked at.
    last_sweep: Instant,
    /// The most output and transaction memory held since the heap was
    /// last trimmed.
    held_peak: usize,
}

/// Freed output and transaction memory after which the heap is trimmed.
const TRIM_AFTER: usize = 4 << 20;

/// Unparsed bytes kept at most between reads: a partial message is
/// shorter than a whole one.
const RBUF_KEEP: usize = HEADER_LEN + PAYLOAD_MAX;

/// Gives back a read buffer's spare room after a burst: an empty buffer
/// is freed, and one holding a partial message keeps no more than a
/// message's worth of capacity.
fn release_spare(rbuf: &mut Vec<u8>) {
    if rbuf.is_empty() {
        *rbuf = Vec::new();
    } else if rbuf.capacity() > RBUF_KEEP {
        rbuf.shrink_to(RBUF_KEEP);
    }
}

/// The `XS_ERROR` reply to request `h`, as bytes on the wire.
fn error_reply(h: &Header, e: xen::Errno) -> Vec<u8> {
    let mut body = crate::wire::error_name(e).as_bytes().to_vec();
    body.push(0);
    let p = Packet::new(XsOp::Error, h.req_id, h.tx_id, body);
    let mut bytes = p.header.to_bytes().to_vec();
    bytes.extend_from_slice(&p.payload);
    bytes
}

fn socket_err(path: &Path) -> impl FnOnce(io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Socket {
        path: path.to_path_buf(),
        source,
    }
}

impl Daemon {
    /// Recovers the store from `config.data_dir` into `engine`, then binds
    /// the socket.
    pub fn bind(config: Config) -> Result<Self, DaemonError> {
        let poll = Poll::new().map_err(socket_err(&config.socket))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(socket_err(&config.socket))?);
        let (adopt_tx, adopt_rx) = mpsc::channel();
        let adopter = Adopter {
            tx: adopt_tx,
            waker: waker.clone(),
        };
        let loop_waker = waker.clone();
        let polling = Arc::new(AtomicBool::new(false));
        let loop_polling = polling.clone();
        // Wake the loop only if it sleeps: a loop that is running checks
        // the durable LSN before it polls again (see `run`).
        let notify = Box::new(move |_lsn: Lsn| {
            if polling.load(Ordering::SeqCst) {
                let _ = waker.wake();
            }
        });
        let (mut log, recovered) = Log::open(&config.data_dir, config.commit_threads, notify)?;
        let mut engine = Engine::new();
        let replayed = recovered.records.len();
        engine.recover(&recovered)?;
        log.snapshot(engine.snapshot());
        log.flush()?;
        tracing::info!(
            records = replayed,
            snapshot = recovered.snapshot.is_some(),
            dropped_bytes = recovered.dropped_bytes,
            "store recovered"
        );
        let _ = std::fs::remove_file(&config.socket);
        let mut listener =
            UnixListener::bind(&config.socket).map_err(socket_err(&config.socket))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(socket_err(&config.socket))?;
        let newest_lsn = log.appended();
        Ok(Daemon {
            pool: None,
            adopt_rx,
            log,
            adopter,
            poll,
            listener,
            engine,
            conns: Vec::new(),
            free: Vec::new(),
            gated: Vec::new(),
            pending_sync: VecDeque::new(),
            touched: Vec::new(),
            durable: 0,
            since_snapshot: 0,
            config,
            scratch: std::vec![0; 64 << 10],
            outputs: Vec::new(),
            rings: None,
            round_lsn: 0,
            newest_lsn,
            batch: Batch::default(),
            waker: loop_waker,
            polling: loop_polling,
            limits: Limits::default(),
            total_queued: 0,
            paused: Vec::new(),
            last_sweep: Instant::now(),
            held_peak: 0,
        })
    }

    /// Replaces the bounds on what clients can make the daemon hold.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Replaces the durability classifier (by default
    /// [`PoolSynced`](crate::persist::PoolSynced)): the seam where a
    /// replicated `/pool` will route its records.
    pub fn set_classifier(&mut self, c: Box<dyn crate::persist::Classify>) {
        self.engine.set_classifier(c);
    }

    /// Serves guests' xenbus rings too (the xenstore domain of host mode):
    /// from now on `XS_INTRODUCE` maps the guest's ring and binds its port,
    /// `XS_RELEASE` and the guest's death undo it, and the guest's requests
    /// reach the same store, with its domain's permissions and quotas, its
    /// writes durable before their replies are put on the ring (see
    /// [`Rings`]). Domains introduced before this call (e.g. recovered
    /// from the log) are not mapped: dom0 introduces them again.
    pub fn serve_rings(&mut self, rings: Rings) -> Result<(), DaemonError> {
        let side = rings::RingSide::start(rings, self.waker.clone())
            .map_err(socket_err(&self.config.socket))?;
        self.rings = Some(side);
        Ok(())
    }

    /// Pool mode: from now on the requests of socket clients that involve
    /// `/pool` are handed to `submit` (on the loop's thread: it must not
    /// block) as [`PoolRequest`]s (see [`PoolKind`]): mutations outside a
    /// transaction, reads outside a transaction (after a barrier they are
    /// served from the mirror), and the commits of transactions that
    /// touched `/pool`. The connection is not read further until the
    /// answer ([`PoolEvent::Reply`] or [`PoolEvent::Release`]) comes
    /// through the returned sender, which also carries the replicated
    /// entries to mirror ([`PoolEvent::Apply`]).
    pub fn set_pool(&mut self, submit: Box<dyn FnMut(PoolRequest) + Send>) -> PoolSender {
        let (tx, inbox) = mpsc::channel();
        self.pool = Some(Pool {
            submit,
            inbox,
            next_ticket: 1,
            waiting: std::collections::HashMap::new(),
            revs: BTreeMap::new(),
            fresh: std::collections::HashSet::new(),
        });
        PoolSender {
            tx,
            waker: self.waker.clone(),
        }
    }

    /// Takes the replies and mirrored entries of the replicated log.
    fn receive_pool(&mut self) {
        loop {
            let Some(ev) = self.pool.as_mut().and_then(|p| p.inbox.try_recv().ok()) else {
                return;
            };
            match ev {
                PoolEvent::Reply { ticket, bytes } => {
                    if let Some((slot, _)) = self.pool_answered(ticket) {
                        self.outputs.push((slot, bytes));
                        self.log_and_queue(None);
                    }
                }
                PoolEvent::Release { ticket } => {
                    if let Some((slot, Some(msg))) = self.pool_answered(ticket) {
                        let record = self.engine.request(slot, &msg, &mut self.outputs);
                        self.log_and_queue(record);
                    }
                }
                PoolEvent::Apply {
                    mutations,
                    fire,
                    revs,
                } => {
                    if let Some(pool) = self.pool.as_mut() {
                        for (path, rev) in revs {
                            match rev {
                                Some(r) => {
                                    pool.revs.insert(path, r);
                                }
                                None => {
                                    let below = std::format!("{path}/");
                                    pool.revs.remove(&path);
                                    let doomed: Vec<_> = pool
                                        .revs
                                        .range(below.clone()..)
                                        .take_while(|(k, _)| k.starts_with(&below))
                                        .map(|(k, _)| k.clone())
                                        .collect();
                                    for k in doomed {
                                        pool.revs.remove(&k);
                                    }
                                }
                            }
                        }
                    }
                    self.engine.store_mut().apply_external(&mutations, &fire);
                    let record = self.engine.collect(None, &mut self.outputs);
                    self.log_and_queue(record);
                }
            }
        }
    }

    /// The connection waiting for `ticket`, no longer waiting, and the
    /// request held for it; `None` if it is gone.
    fn pool_answered(&mut self, ticket: u64) -> Option<(usize, Option<Vec<u8>>)> {
        let (slot, held) = self.pool.as_mut()?.waiting.remove(&ticket)?;
        let c = self.conns.get_mut(slot)?.as_mut()?;
        if c.pool_wait != Some(ticket) {
            return None;
        }
        c.pool_wait = None;
        Some((slot, held))
    }

    /// Hands `kind` to the replicated side for the request `msg` of
    /// `slot`, which is not read further until it is answered.
    fn pool_submit(
        &mut self,
        slot: usize,
        h: Header,
        msg: &[u8],
        kind: PoolKind,
    ) -> Option<Vec<u8>> {
        let dom = self
            .engine
            .conn(slot)
            .and_then(|c| self.engine.store().domid(c))?;
        let privileged = self.engine.store().is_privileged(dom);
        let pool = self.pool.as_mut()?;
        let ticket = pool.next_ticket;
        pool.next_ticket += 1;
        let held = matches!(kind, PoolKind::Barrier).then(|| msg.to_vec());
        pool.waiting.insert(ticket, (slot, held));
        (pool.submit)(PoolRequest {
            ticket,
            header: h,
            payload: msg[HEADER_LEN..].to_vec(),
            dom,
            privileged,
            kind,
        });
        if let Some(Some(c)) = self.conns.get_mut(slot) {
            c.pool_wait = Some(ticket);
        }
        Some(Vec::new())
    }

    /// Pool mode: routes `msg` through the replicated side if it involves
    /// `/pool` (see [`PoolKind`]). `Some(reply)` to send now (refused),
    /// `Some(empty)` if submitted (the answer comes later), `None` for the
    /// store.
    fn pool_route(&mut self, slot: usize, msg: &[u8]) -> Option<Vec<u8>> {
        self.pool.as_ref()?;
        let mut hdr = [0u8; HEADER_LEN];
        hdr.copy_from_slice(msg.get(..HEADER_LEN)?);
        let h = Header::parse(&hdr);
        let payload = &msg[HEADER_LEN..];
        let path = payload.split(|&b| b == 0).next().unwrap_or(&[]);
        match h.op()? {
            // Inside a transaction, mutations go to the store's overlay;
            // the commit sends them (`pool_commit`).
            XsOp::Write | XsOp::Mkdir | XsOp::Rm | XsOp::SetPerms
                if h.tx_id == 0 && is_pool_path(path) =>
            {
                self.pool_submit(slot, h, msg, PoolKind::Op)
            }
            XsOp::Read | XsOp::Directory | XsOp::DirectoryPart | XsOp::GetPerms
                if h.tx_id == 0 && is_pool_path(path) =>
            {
                self.pool_submit(slot, h, msg, PoolKind::Barrier)
            }
            // The first touch of /pool in a transaction waits for a
            // barrier: a transaction sees every write acknowledged before
            // it looked (its commit would fail otherwise).
            XsOp::Write
            | XsOp::Mkdir
            | XsOp::Rm
            | XsOp::SetPerms
            | XsOp::Read
            | XsOp::Directory
            | XsOp::DirectoryPart
            | XsOp::GetPerms
                if is_pool_path(path) =>
            {
                if self.pool.as_mut()?.fresh.insert((slot, h.tx_id)) {
                    self.pool_submit(slot, h, msg, PoolKind::Barrier)
                } else {
                    None
                }
            }
            XsOp::TransactionEnd => {
                self.pool.as_mut()?.fresh.remove(&(slot, h.tx_id));
                if h.tx_id != 0 && path == b"T" {
                    self.pool_commit(slot, h, msg)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Pool mode: `XS_TRANSACTION_END T` of a transaction that touched
    /// `/pool`. One that only read there commits in the store after a
    /// barrier (its reads are then checked against a mirror as new as the
    /// pool was when the commit arrived). One that wrote there is ended
    /// in the store and its `/pool` part committed through the log: its
    /// reads under `/pool` become the entry's read set (the replicated
    /// revisions of the nodes it saw), its net effect the entry's
    /// operations. It may read local paths (checked here, when the commit
    /// arrives) but not also write them: that fails with `ENOSYS`, as the
    /// two parts could not commit atomically.
    fn pool_commit(&mut self, slot: usize, h: Header, msg: &[u8]) -> Option<Vec<u8>> {
        let conn = self.engine.conn(slot)?;
        let view = self.engine.store().txn_view(conn, h.tx_id)?;
        if !view.valid || view.failed {
            // The store answers EAGAIN or ENOMEM.
            return None;
        }
        let writes = |t: &&crate::store::TxnTouch| match &t.change {
            crate::store::TxnChange::Read => false,
            crate::store::TxnChange::Removed => true,
            crate::store::TxnChange::Written {
                value_changed,
                perms_changed,
                ..
            } => *value_changed || *perms_changed,
        };
        let (pool, local): (Vec<_>, Vec<_>) = view
            .touched
            .iter()
            .partition(|t| is_pool_path(t.path.as_bytes()));
        if pool.is_empty() {
            return None;
        }
        if !pool.iter().any(writes) {
            return self.pool_submit(slot, h, msg, PoolKind::Barrier);
        }
        let revs = &self.pool.as_ref()?.revs;
        let mut txn = PoolTxn::default();
        let mut removed: Vec<&str> = Vec::new();
        let mut torn = false;
        for t in &pool {
            let rev = if t.existed {
                revs.get(&t.path).copied()
            } else {
                None
            };
            // A node seen locally but not in the replicated tree: the
            // mirror is behind its own revisions; refuse, do not guess.
            torn |= t.existed && rev.is_none();
            txn.reads.push((t.path.clone(), rev));
            match &t.change {
                crate::store::TxnChange::Read => {}
                crate::store::TxnChange::Removed => {
                    let under_removed = removed.iter().any(|r| {
                        t.path
                            .strip_prefix(r)
                            .is_some_and(|rest| rest.starts_with('/'))
                    });
                    if t.existed && !under_removed {
                        removed.push(&t.path);
                        txn.ops.push(PoolOp::Rm {
                            path: t.path.clone(),
                        });
                    }
                }
                crate::store::TxnChange::Written {
                    value,
                    perms,
                    value_changed,
                    perms_changed,
                } => {
                    if *value_changed {
                        txn.ops.push(PoolOp::Write {
                            path: t.path.clone(),
                            value: value.to_vec(),
                        });
                    }
                    if *perms_changed {
                        let mut wire = Vec::new();
                        perms.emit(&mut wire);
                        txn.ops.push(PoolOp::SetPerms {
                            path: t.path.clone(),
                            perms: wire,
                        });
                    }
                }
            }
        }
        self.engine.store_mut().drop_txn(conn, h.tx_id);
        if local.iter().any(writes) {
            return Some(error_reply(&h, xen::Errno::ENOSYS));
        }
        if torn {
            return Some(error_reply(&h, xen::Errno::EIO));
        }
        self.pool_submit(slot, h, msg, PoolKind::Txn(txn))
    }

    fn pool_waiting(&self, slot: usize) -> bool {
        self.conns
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.pool_wait.is_some())
    }

    /// Hands out connections acting for other domains (see [`Adopter`]).
    pub fn adopter(&self) -> Adopter {
        self.adopter.clone()
    }

    /// Registers the streams handed over by [`Adopter`]s.
    fn adopt_pending(&mut self) {
        while let Ok((stream, dom)) = self.adopt_rx.try_recv() {
            let slot = self.add_conn(UnixStream::from_std(stream), dom);
            tracing::debug!(?slot, dom = dom.0, "stream adopted");
        }
    }

    /// Registers a new connection acting for `dom`; `None` if it could not
    /// be registered.
    fn add_conn(&mut self, mut stream: UnixStream, dom: DomId) -> Option<usize> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(slot + FIRST_CONN), Interest::READABLE)
        {
            tracing::warn!(error = %e, "cannot register connection");
            self.free.push(slot);
            return None;
        }
        self.engine.connect_as(slot, dom);
        self.conns[slot] = Some(Conn {
            stream,
            rbuf: Vec::new(),
            out: VecDeque::new(),
            written: 0,
            queued: 0,
            want_write: false,
            paused: false,
            partial_since: None,
            pool_wait: None,
        });
        Some(slot)
    }

    /// Serves until `stop` is set (checked at least every 100 ms).
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DaemonError> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            // Announce the sleep, then look once more: either the commit
            // thread sees `polling` and wakes us, or we see its LSN here.
            self.polling.store(true, Ordering::SeqCst);
            let more = self.rings.as_ref().is_some_and(|r| r.more)
                || self.ready() != self.durable
                || self.resumable();
            let timeout = if more {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.polling.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(socket_err(&self.config.socket)(e));
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.adopt_pending(),
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(slot);
                        }
                        if ev.is_writable() {
                            self.touched.push(slot);
                        }
                    }
                }
            }
            self.receive_rings();
            self.receive_pool();
            self.hand_over();
            if let Some(e) = self.log.failure() {
                return Err(e.into());
            }
            let durable = self.ready();
            if durable != self.durable {
                self.durable = durable;
                let gated = std::mem::take(&mut self.gated);
                self.touched.extend(gated);
            }
            self.flush_touched();
            self.resume();
            let held = self.total_queued + self.engine.store().txn_bytes();
            self.held_peak = self.held_peak.max(held);
            self.sweep_partial();
            self.transmit_rings();
            if self.since_snapshot >= self.config.snapshot_every {
                self.since_snapshot = 0;
                self.hand_over();
                self.log.snapshot(self.engine.snapshot());
            }
        }
        self.hand_over();
        self.log.flush()?;
        Ok(())
    }

    /// The newest LSN whose messages may go out: every record up to it is
    /// as far as its class requires (written, or synced for
    /// [`Durability::Synced`] ones). `durable` here and in the fields
    /// below means this.
    fn ready(&mut self) -> Lsn {
        let synced = self.log.durable();
        while self.pending_sync.front().is_some_and(|&l| l <= synced) {
            self.pending_sync.pop_front();
        }
        let written = self.log.written();
        match self.pending_sync.front() {
            Some(&first) => written.min(first - 1),
            None => written,
        }
    }

    /// A handle on the log's sync counters (for tests: a `/pool` write's
    /// reply comes after its sync).
    pub fn sync_probe(&self) -> SyncProbe {
        self.log.probe()
    }

    /// Hands the round's records to the log: written at once (one
    /// `pwrite` per round), synced by the sync thread if a record's class
    /// asks for it.
    fn hand_over(&mut self) {
        if !self.batch.is_empty() {
            let last = self.log.append_batch(&mut self.batch);
            debug_assert_eq!(
                last, self.newest_lsn,
                "the daemon is the log's only producer"
            );
        }
    }

    /// Takes the guests' requests into the store if the bridge saw a
    /// pending port or a guest had more than one turn's worth.
    fn receive_rings(&mut self) {
        let Some(r) = self.rings.as_mut() else {
            return;
        };
        let due = r.take_due();
        if !due && !r.more {
            return;
        }
        let prog = r.receive(self.engine.store_mut());
        if due {
            r.rearm();
        }
        let record = self.engine.collect(None, &mut self.outputs);
        self.log_and_queue(record);
        for d in prog.gone {
            tracing::info!(dom = d.0, "xenbus: domain gone, releasing it");
            let record = self.engine.release_dead(d, &mut self.outputs);
            self.log_and_queue(record);
        }
    }

    /// Appends a record (if any), queues the socket output collected with
    /// it, and hands the store's effects to the ring server.
    fn log_and_queue(&mut self, record: Option<engine::Record>) {
        let lsn = match record {
            Some((bytes, class)) => {
                self.since_snapshot += 1;
                self.batch.push(&bytes, class);
                let l = self.newest_lsn + 1;
                self.round_lsn = l;
                self.newest_lsn = l;
                if class == Durability::Synced {
                    self.pending_sync.push_back(l);
                }
                l
            }
            None => 0,
        };
        for (to, bytes) in self.outputs.drain(..) {
            let Some(Some(c)) = self.conns.get_mut(to) else {
                continue;
            };
            c.queued += bytes.len();
            self.total_queued += bytes.len();
            c.out.push_back(Out { lsn, bytes });
            self.touched.push(to);
        }
        self.apply_effects();
    }

    fn apply_effects(&mut self) {
        let effects = self.engine.take_effects();
        let Some(r) = self.rings.as_mut() else {
            return;
        };
        for e in &effects {
            if matches!(e, Effect::Introduce { .. } | Effect::Release { .. }) {
                r.apply(self.engine.store_mut(), e);
            }
        }
        r.settle(self.engine.store_mut());
    }

    /// A socket client's `XS_INTRODUCE` while rings are served: the ring
    /// is readied first ([`rings::RingSide::prepare`]); `Some(error
    /// reply)` if it cannot be, and the store is not asked. `None` for
    /// every other message, and for what the store refuses anyway
    /// (unprivileged caller, malformed arguments, a transaction).
    fn introduce_first(&mut self, slot: usize, msg: &[u8]) -> Option<Vec<u8>> {
        self.rings.as_ref()?;
        let mut hdr = [0u8; HEADER_LEN];
        hdr.copy_from_slice(msg.get(..HEADER_LEN)?);
        let h = Header::parse(&hdr);
        if h.ty != XsOp::Introduce as u32 || h.tx_id != 0 {
            return None;
        }
        let caller = self
            .engine
            .conn(slot)
            .and_then(|c| self.engine.store().domid(c))?;
        if !self.engine.store().is_privileged(caller) {
            return None;
        }
        let (domid, gfn, port) = crate::store::introduce_args(&msg[HEADER_LEN..]).ok()?;
        let rings = self.rings.as_mut()?;
        match rings.prepare(self.engine.store_mut(), domid, gfn, port) {
            Ok(()) => None,
            Err(e) => Some(error_reply(&h, e)),
        }
    }

    /// Gates what the round queued for rings, and moves into the rings
    /// what the log has made durable.
    fn transmit_rings(&mut self) {
        let Some(r) = self.rings.as_mut() else {
            return;
        };
        let lsn = std::mem::take(&mut self.round_lsn);
        r.gate(self.engine.store(), lsn, self.newest_lsn);
        r.transmit(self.engine.store_mut(), self.durable);
    }

    /// `XS_CONTROL connections [<domid>]` (a Windsor extension, dom0
    /// only): one line per connection (of `only`, if given), `<domid>
    /// socket`, `<domid> ring` or `<domid> ring-ignored`, sockets first.
    /// `None` if the list does not fit in one message.
    fn connections(&self, only: Option<u16>) -> Option<Vec<u8>> {
        use core::fmt::Write as _;
        let mut lines = std::string::String::new();
        let wanted = |d: u16| only.is_none_or(|o| o == d);
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_none() {
                continue;
            }
            if let Some(d) = self
                .engine
                .conn(slot)
                .and_then(|c| self.engine.store().domid(c))
                .filter(|d| wanted(d.0))
            {
                let _ = writeln!(lines, "{} socket", d.0);
            }
        }
        if let Some(r) = &self.rings {
            for d in r.domains().into_iter().filter(|d| wanted(d.0)) {
                // An ignored ring (broken protocol) has no connection.
                let state = match r.conn(d) {
                    Some(_) => "ring",
                    None => "ring-ignored",
                };
                let _ = writeln!(lines, "{} {state}", d.0);
            }
        }
        let mut v = lines.into_bytes();
        v.push(0);
        (v.len() <= PAYLOAD_MAX).then_some(v)
    }

    /// Answers the daemon's own control commands (`connections`); `None`
    /// for every other message (the store's).
    fn control(&self, slot: usize, msg: &[u8]) -> Option<Vec<u8>> {
        let mut hdr = [0u8; HEADER_LEN];
        hdr.copy_from_slice(msg.get(..HEADER_LEN)?);
        let h = Header::parse(&hdr);
        let args = msg[HEADER_LEN..].strip_prefix(b"connections\0")?;
        if h.ty != XsOp::Control as u32 {
            return None;
        }
        let dom = self
            .engine
            .conn(slot)
            .and_then(|c| self.engine.store().domid(c))?;
        if dom != DomId::DOM0 {
            return None;
        }
        let only = match args {
            [] => Ok(None),
            [num @ .., 0] => core::str::from_utf8(num)
                .ok()
                .and_then(|n| n.parse::<u16>().ok())
                .map(Some)
                .ok_or(xen::Errno::EINVAL),
            _ => Err(xen::Errno::EINVAL),
        };
        match only.and_then(|o| self.connections(o).ok_or(xen::Errno::E2BIG)) {
            Ok(body) => {
                let p = Packet::new(XsOp::Control, h.req_id, h.tx_id, body);
                let mut bytes = p.header.to_bytes().to_vec();
                bytes.extend_from_slice(&p.payload);
                Some(bytes)
            }
            Err(e) => Some(error_reply(&h, e)),
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let slot = self.add_conn(stream, DomId::DOM0);
                    tracing::debug!(?slot, "connection accepted");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn read(&mut self, slot: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let closed = self.read_into(slot, &mut scratch);
        self.scratch = scratch;
        if closed {
            self.close(slot);
        }
    }

    /// Reads and handles what `slot` sent; true if it is to be closed.
    fn read_into(&mut self, slot: usize, scratch: &mut [u8]) -> bool {
        loop {
            if self.over_output(slot) || self.pool_waiting(slot) {
                self.pause(slot);
                return false;
            }
            let Some(Some(conn)) = self.conns.get_mut(slot) else {
                return false;
            };
            match conn.stream.read(scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    let short = n < scratch.len();
                    if let Err(why) = self.process(slot, &scratch[..n]) {
                        tracing::info!(slot, why, "disconnecting misbehaving client");
                        return true;
                    }
                    if short && !self.is_paused(slot) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Handles every whole message of the connection's unparsed bytes
    /// followed by `new`; keeps a partial message for the next read. Whole
    /// messages are parsed in place from `new` when nothing was pending,
    /// so a connection between requests holds no read buffer.
    fn process(&mut self, slot: usize, new: &[u8]) -> Result<(), &'static str> {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        let mut rbuf = std::mem::take(&mut conn.rbuf);
        let (at, result) = if rbuf.is_empty() {
            let (at, result) = self.handle_messages(slot, new);
            rbuf.extend_from_slice(&new[at..]);
            (0, result)
        } else {
            rbuf.extend_from_slice(new);
            self.handle_messages(slot, &rbuf)
        };
        rbuf.drain(..at);
        release_spare(&mut rbuf);
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            if rbuf.is_empty() || conn.paused {
                conn.partial_since = None;
            } else if at > 0 || conn.partial_since.is_none() {
                // A new partial message: its clock starts now.
                conn.partial_since = Some(Instant::now());
            }
            conn.rbuf = rbuf;
        }
        result
    }

    /// Handles the whole messages at the start of `buf`; returns how many
    /// bytes they took.
    fn handle_messages(&mut self, slot: usize, buf: &[u8]) -> (usize, Result<(), &'static str>) {
        let mut at = 0;
        while buf.len() - at >= HEADER_LEN {
            if self.over_output(slot) || self.pool_waiting(slot) {
                // The rest waits in the read buffer until the output drains.
                self.pause(slot);
                break;
            }
            let len = u32::from_le_bytes([buf[at + 12], buf[at + 13], buf[at + 14], buf[at + 15]])
                as usize;
            if len > PAYLOAD_MAX {
                return (at, Err("oversized message"));
            }
            if buf.len() - at < HEADER_LEN + len {
                break;
            }
            let msg = &buf[at..at + HEADER_LEN + len];
            at += HEADER_LEN + len;
            if let Some(reply) = self.pool_route(slot, msg) {
                if !reply.is_empty() {
                    self.outputs.push((slot, reply));
                    self.log_and_queue(None);
                }
                continue;
            }
            if let Some(reply) = self
                .control(slot, msg)
                .or_else(|| self.introduce_first(slot, msg))
            {
                self.outputs.push((slot, reply));
                self.log_and_queue(None);
                continue;
            }
            let record = self.engine.request(slot, msg, &mut self.outputs);
            self.log_and_queue(record);
        }
        (at, Ok(()))
    }

    fn flush_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &slot in &touched {
            self.flush(slot);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Writes what may be written of a connection's queue.
    fn flush(&mut self, slot: usize) {
        let durable = self.durable;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let mut iov: Vec<io::IoSlice<'_>> = Vec::new();
        let mut gated = false;
        for (i, o) in conn.out.iter().enumerate() {
            if o.lsn > durable {
                gated = true;
                break;
            }
            let start = if i == 0 { conn.written } else { 0 };
            iov.push(io::IoSlice::new(&o.bytes[start..]));
            if iov.len() >= 64 {
                break;
            }
        }
        let mut failed = false;
        if !iov.is_empty() {
            match conn.stream.write_vectored(&iov) {
                Ok(mut n) => {
                    drop(iov);
                    let n_done = n.min(conn.queued);
                    conn.queued -= n_done;
                    self.total_queued -= n_done;
                    while n > 0 {
                        let Some(front) = conn.out.front() else { break };
                        let left = front.bytes.len() - conn.written;
                        if n >= left {
                            n -= left;
                            conn.written = 0;
                            conn.out.pop_front();
                        } else {
                            conn.written += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => failed = true,
            }
        }
        if conn.out.is_empty() {
            // A drained queue is freed whatever its peak: an idle
            // connection holds no output memory.
            conn.out = VecDeque::new();
        }
        let hard = conn.queued > self.limits.conn_output_hard
            || (conn.queued > self.limits.conn_output_soft
                && self.total_queued >= self.limits.total_output);
        if failed || hard {
            if !failed {
                tracing::info!(slot, "disconnecting client that does not read its output");
            }
            self.close(slot);
            return;
        }
        // More to write once the socket drains: ask for WRITABLE.
        let ready_left = conn.out.front().is_some_and(|o| o.lsn <= durable);
        if ready_left != conn.want_write {
            conn.want_write = ready_left;
            let interest = if ready_left {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self.poll.registry().reregister(
                &mut conn.stream,
                Token(slot + FIRST_CONN),
                interest,
            );
        }
        if gated || conn.out.front().is_some_and(|o| o.lsn > durable) {
            self.gated.push(slot);
        }
    }

    /// Whether `slot` (or the daemon) holds too much output to read more.
    fn over_output(&self, slot: usize) -> bool {
        self.total_queued >= self.limits.total_output
            || self
                .conns
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.queued >= self.limits.conn_output_soft)
    }

    fn is_paused(&self, slot: usize) -> bool {
        self.conns
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.paused)
    }

    /// Stops reading `slot` until its output drains (see [`Self::resume`]).
    fn pause(&mut self, slot: usize) {
        if let Some(Some(c)) = self.conns.get_mut(slot) {
            if !c.paused {
                c.paused = true;
                c.partial_since = None;
                self.paused.push(slot);
            }
        }
    }

    /// Whether a paused connection may be read again: its output and the
    /// total are back under half their bounds.
    fn may_resume(&self, slot: usize) -> bool {
        self.total_queued < self.limits.total_output / 2
            && self
                .conns
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|c| {
                    c.queued < self.limits.conn_output_soft / 2 && c.pool_wait.is_none()
                })
    }

    fn resumable(&self) -> bool {
        self.paused.iter().any(|&s| self.may_resume(s))
    }

    /// Reads again the paused connections whose output drained: first the
    /// whole messages left in their buffers, then their sockets (readiness
    /// is edge-triggered: what arrived meanwhile gives no new event).
    fn resume(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let paused = std::mem::take(&mut self.paused);
        for slot in paused {
            let Some(Some(c)) = self.conns.get_mut(slot) else {
                continue;
            };
            if !c.paused {
                continue;
            }
            if !self.may_resume(slot) {
                self.paused.push(slot);
                continue;
            }
            if let Some(Some(c)) = self.conns.get_mut(slot) {
                c.paused = false;
            }
            if let Err(why) = self.process(slot, &[]) {
                tracing::info!(slot, why, "disconnecting misbehaving client");
                self.close(slot);
                continue;
            }
            if !self.is_paused(slot) {
                self.read(slot);
            }
        }
        self.flush_touched();
    }

    /// Disconnects clients whose partial request has waited too long for
    /// its remaining bytes (looked at about once a second).
    fn sweep_partial(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let limit = self.limits.partial_timeout;
        let stale: Vec<usize> = (0..self.conns.len())
            .filter(|&s| {
                self.conns[s]
                    .as_ref()
                    .and_then(|c| c.partial_since)
                    .is_some_and(|t| now.duration_since(t) >= limit)
            })
            .collect();
        for slot in stale {
            tracing::info!(slot, "disconnecting client whose partial request timed out");
            self.close(slot);
        }
        // Over the total bound no connection is read: the biggest unread
        // queues go, until the total is back under half its bound.
        if self.total_queued >= self.limits.total_output {
            let mut heavy: Vec<(usize, usize)> = (0..self.conns.len())
                .filter_map(|s| Some((self.conns[s].as_ref()?.queued, s)))
                .filter(|&(q, _)| q > 0)
                .collect();
            heavy.sort_unstable_by(|a, b| b.cmp(a));
            for (_, slot) in heavy {
                if self.total_queued < self.limits.total_output / 2 {
                    break;
                }
                tracing::info!(slot, "disconnecting client that does not read its output");
                self.close(slot);
            }
        }
        // After a burst of output or transactions was freed, give the
        // heap's free pages back (the allocator keeps those below live
        // memory otherwise).
        let held = self.total_queued + self.engine.store().txn_bytes();
        if self.held_peak >= held + TRIM_AFTER {
            let released = xen::host::release_free_heap();
            tracing::debug!(freed = self.held_peak - held, released, "heap trimmed");
        }
        self.held_peak = held;
    }

    fn close(&mut self, slot: usize) {
        if let Some(pool) = self.pool.as_mut() {
            pool.fresh.retain(|&(s, _)| s != slot);
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(mut c) = conn.take() {
            self.total_queued -= c.queued;
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.engine.disconnect(slot);
            self.free.push(slot);
            tracing::debug!(slot, "connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_returns_to_small_after_a_burst() {
        // A burst of requests grew the buffer; it drained to nothing.
        let mut rbuf = Vec::with_capacity(64 << 10);
        rbuf.extend_from_slice(&[1u8; 100]);
        rbuf.clear();
        release_spare(&mut rbuf);
        assert_eq!(rbuf.capacity(), 0);
        // A partial message is kept, in at most a message's worth of room.
        let mut rbuf = Vec::with_capacity(64 << 10);
        rbuf.extend_from_slice(&[7u8; 40]);
        release_spare(&mut rbuf);
        assert_eq!(rbuf, [7u8; 40]);
        assert!(rbuf.capacity() <= RBUF_KEEP);
        // Room for a partial message is not shrunk below what it needs.
        let mut rbuf = std::vec![3u8; RBUF_KEEP - 1];
        let cap = rbuf.capacity();
        release_spare(&mut rbuf);
        assert_eq!(rbuf.capacity(), cap);
        assert_eq!(rbuf.len(), RBUF_KEEP - 1);
    }
}
