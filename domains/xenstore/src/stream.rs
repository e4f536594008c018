//! [`StreamStore`]: a [`XenStore`] client over a Unix stream (host mode).
//!
//! It speaks `xs_wire.h` over a connected stream: the xenstored socket (as
//! dom0's tools do, `XENSTORED_PATH`), or one end of a socket pair whose
//! other end a [`Daemon`](crate::daemon::Daemon) adopted for a given
//! domain. One reader thread routes replies to their callers by `req_id` and
//! queues watch events for [`XenStore::next_event`]; calls may come from
//! several threads at once (the daemon answers a connection's requests in
//! order, and each caller waits for its own `req_id`).

extern crate std;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::string::String;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use std::vec::Vec;

use xen::{DomId, Errno, EvtchnPort};

use crate::client::{ops, Call, ClientError, Result, TxId, WatchEvent, XenStore};
use crate::wire::{error_from_name, Header, Packet, XsOp, HEADER_LEN, PAYLOAD_MAX};

/// Watch events kept for [`XenStore::next_event`]; older ones are dropped
/// beyond this.
pub const MAX_QUEUED_EVENTS: usize = 4096;

#[derive(Default)]
struct State {
    replies: HashMap<u32, Packet>,
    events: VecDeque<WatchEvent>,
    closed: bool,
}

struct Inner {
    writer: Mutex<UnixStream>,
    state: Mutex<State>,
    cond: Condvar,
    next_req: AtomicU32,
    shutdown: UnixStream,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A xenstore connection over a Unix stream. Cheap to clone (clones share
/// the connection); the connection closes when the last clone drops.
#[derive(Clone)]
pub struct StreamStore {
    inner: Arc<Inner>,
    _closer: Arc<Closer>,
}

/// Shuts the stream down when the last [`StreamStore`] clone goes, which
/// ends the reader thread.
struct Closer(Arc<Inner>);

impl Drop for Closer {
    fn drop(&mut self) {
        let _ = self.0.shutdown.shutdown(std::net::Shutdown::Both);
    }
}

impl core::fmt::Debug for StreamStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamStore").finish_non_exhaustive()
    }
}

impl StreamStore {
    /// Connects to a xenstored socket (the connection is dom0's).
    pub fn connect(socket: &Path) -> std::io::Result<StreamStore> {
        Self::from_stream(UnixStream::connect(socket)?)
    }

    /// A client over an already connected stream.
    pub fn from_stream(stream: UnixStream) -> std::io::Result<StreamStore> {
        let reader = stream.try_clone()?;
        let shutdown = stream.try_clone()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream),
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            next_req: AtomicU32::new(1),
            shutdown,
        });
        let r = inner.clone();
        std::thread::Builder::new()
            .name("xs-stream-reader".into())
            .spawn(move || read_loop(reader, &r))?;
        Ok(StreamStore {
            _closer: Arc::new(Closer(inner.clone())),
            inner,
        })
    }

    /// `XS_INTRODUCE` (dom0 only).
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

    /// Whether the store closed the connection.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

fn read_loop(mut stream: UnixStream, inner: &Inner) {
    let mut header = [0u8; HEADER_LEN];
    loop {
        if stream.read_exact(&mut header).is_err() {
            break;
        }
        let h = Header::parse(&header);
        if h.check_len().is_err() {
            tracing::warn!(len = h.len, "oversized message from xenstore; closing");
            break;
        }
        let mut payload = std::vec![0u8; h.len as usize];
        if stream.read_exact(&mut payload).is_err() {
            break;
        }
        let p = Packet::new(h.op().unwrap_or(XsOp::Error), h.req_id, h.tx_id, payload);
        let mut st = inner.lock();
        if h.op() == Some(XsOp::WatchEvent) {
            if st.events.len() >= MAX_QUEUED_EVENTS {
                st.events.pop_front();
            }
            st.events.push_back(ops::watch_event(&p.payload));
        } else {
            st.replies.insert(h.req_id, p);
        }
        inner.cond.notify_all();
    }
    inner.lock().closed = true;
    inner.cond.notify_all();
}

impl Call for StreamStore {
    fn call(&self, op: XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>> {
        if payload.len() > PAYLOAD_MAX {
            return Err(ClientError::Store(Errno::E2BIG));
        }
        let req_id = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        let bytes = Packet::new(op, req_id, tx.0, payload.to_vec()).to_vec();
        {
            let mut w = self
                .inner
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            w.write_all(&bytes).map_err(|_| ClientError::Disconnected)?;
        }
        let mut st = self.inner.lock();
        loop {
            if let Some(p) = st.replies.remove(&req_id) {
                return match p.op() {
                    Some(XsOp::Error) => Err(ClientError::Store(
                        error_from_name(&p.payload).unwrap_or(Errno::EIO),
                    )),
                    Some(o) if o == op => Ok(p.payload),
                    _ => Err(ClientError::Protocol),
                };
            }
            if st.closed {
                return Err(ClientError::Disconnected);
            }
            st = self
                .inner
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl XenStore for StreamStore {
    crate::xenstore_via_call!();

    fn next_event(&self, timeout: Option<Duration>) -> Result<WatchEvent> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.lock();
        loop {
            if let Some(e) = st.events.pop_front() {
                return Ok(e);
            }
            if st.closed {
                return Err(ClientError::Disconnected);
            }
            st = match deadline {
                None => self
                    .inner
                    .cond
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(ClientError::Timeout);
                    }
                    self.inner
                        .cond
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}
