//! The HTTP server: XML-RPC at `/` (also `/xmlrpc`, where the npm `xen-api`
//! XML-RPC transport posts, and `/RPC2`), JSON-RPC at `/jsonrpc` (and at `/`
//! with `Content-Type: application/json`), over TCP and a Unix socket.
//!
//! [`Server`] is hyper (HTTP/1.1) on a tokio runtime of its own thread,
//! serving an [`Api`] (the dispatcher, [`crate::dispatch`]; re-exported
//! here with [`Client`], [`Admission`] and [`admission`]). Bodies are
//! bounded in size ([`Config::max_body_bytes`]) and in time
//! ([`Config::body_timeout`]); calls run on the blocking pool (they may
//! wait: clean shutdown, `event.from`). Every bad request gets a XenAPI
//! error in the request's own format, never a dropped connection.
//!
//! # Admission
//!
//! Hostile and busy clients must not starve the others (`docs/api.md`):
//! * calls wait for slots by [`admission`]: ordinary calls
//!   ([`Config::max_concurrent_calls`]), long polls
//!   ([`Config::max_long_polls`]) and logins ([`Config::max_password_checks`],
//!   whose Argon2 memory the [`Verifier`](crate::auth::Verifier) owns) each have their own; a
//!   client out of failed logins ([`LoginLimiter`](crate::auth::LoginLimiter)) is refused before it
//!   queues;
//! * TCP connections are bounded in total and per address
//!   ([`Config::max_connections_per_client`]); the local socket has its own
//!   capacity ([`Config::max_local_connections`]) and its peers' credentials
//!   decide [`Client::Local`]`{ owner }`;
//! * bodies over 64 KiB are parsed off the runtime thread, two at a time,
//!   the session (the first parameter) checked before the rest is parsed.

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{eprintln, format, println, vec};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method as HttpMethod, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, Semaphore};

pub use crate::dispatch::{admission, Admission, Api, Client};

use crate::dispatch::{rate_limited, sessionless};
use crate::error::{codes, ApiError, WireError};
use crate::jsonrpc::{self, Version};
use crate::value::Value;
use crate::xmlrpc;

/// Server limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest time to receive a request body.
    pub body_timeout: Duration,
    /// Most sessions open at once (the least recently used is dropped).
    pub session_limit: usize,
    /// A session unused this long is gone. Expiry is checked lazily: on
    /// the session's next use, at a login, or by a sweep any call runs at
    /// most once a second ([`crate::auth::SWEEP_EVERY`]); the watchers of a
    /// session that ends (this way, by `session.logout` or by eviction at
    /// `session_limit`) are closed then, at once. With no call at all, an
    /// expired session's watchers go at their own idle expiry.
    pub session_idle_timeout: Duration,
    /// Most calls running at once; more wait their turn.
    pub max_concurrent_calls: usize,
    /// Most TCP connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Longest time to receive a request's headers (also the idle limit of
    /// a kept-alive connection).
    pub header_timeout: Duration,
    /// Most password checks at once (each holds Argon2's memory, 19 MiB
    /// by default); logins beyond wait, without taking call slots.
    pub max_password_checks: usize,
    /// Failed logins a client (TCP address, local user) may make at once
    /// before it must wait ...
    pub login_failure_burst: u32,
    /// ... and how many a second it gets back.
    pub login_failures_per_sec: f64,
    /// Most long polls (`event.from`, `xenstore.watch` with a timeout)
    /// waiting at once, apart from [`Config::max_concurrent_calls`].
    pub max_long_polls: usize,
    /// Most TCP connections from one address; more are closed at once.
    pub max_connections_per_client: usize,
    /// Connections reserved for the local socket, apart from
    /// [`Config::max_connections`] (which counts TCP).
    pub max_local_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 4 << 20,
            body_timeout: Duration::from_secs(30),
            session_limit: 500,
            session_idle_timeout: Duration::from_secs(24 * 3600),
            max_concurrent_calls: 256,
            max_connections: 1024,
            header_timeout: Duration::from_secs(60),
            max_password_checks: 2,
            login_failure_burst: 8,
            login_failures_per_sec: 2.0,
            max_long_polls: 512,
            max_connections_per_client: 64,
            max_local_connections: 128,
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// A TCP address (port 0 picks a free port).
    pub tcp: Option<SocketAddr>,
    /// A Unix socket path (a stale socket file is replaced).
    pub unix: Option<PathBuf>,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("binding {what}: {source}")]
    Bind {
        /// The address or path.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The runtime thread could not be started.
    #[error("starting the server thread: {0}")]
    Thread(std::io::Error),
}

/// A running server; dropping it stops it.
pub struct Server {
    tcp_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners and serves `api` on a thread of its own.
    pub fn start(api: Arc<Api>, listen: &Listen) -> Result<Server, ServerError> {
        let tcp = match listen.tcp {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                    what: addr.to_string(),
                    source,
                })?;
                l.set_nonblocking(true).map_err(ServerError::Thread)?;
                Some(l)
            }
            None => None,
        };
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let unix = match &listen.unix {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        // The server's user: the owner of the socket it just made.
        let uid = listen.unix.as_ref().and_then(|p| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).ok().map(|m| m.uid())
        });
        if let Some(a) = tcp_addr {
            let _ = api.base.set(format!("http://{a}"));
        }
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("windsor-api".into())
            .spawn(move || run(api, tcp, unix, uid, stopped))
            .map_err(ServerError::Thread)?;
        if let Some(a) = tcp_addr {
            tracing::info!(addr = %a, "XenAPI listening on TCP");
        }
        Ok(Server {
            tcp_addr,
            unix_path: listen.unix.clone(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound TCP address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The Unix socket path, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// Stops accepting, drops open connections and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, ServerError> {
    let err = |source| ServerError::Bind {
        what: path.display().to_string(),
        source,
    };
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

/// What the connections and calls of one server share: the dispatcher and
/// the admission bounds.
struct Shared {
    api: Arc<Api>,
    /// Ordinary calls.
    calls: Arc<Semaphore>,
    /// Long polls.
    polls: Arc<Semaphore>,
    /// Logins (their password checks are bounded again by the verifier).
    logins: Arc<Semaphore>,
    /// Request bodies being parsed.
    parses: Arc<Semaphore>,
    /// Open TCP connections per address.
    per_client: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// The server's user id (the local socket's owner).
    uid: Option<u32>,
}

/// Big bodies parsed at once, off the runtime thread.
const MAX_PARSES: usize = 2;

/// Bodies up to this size are parsed on the runtime thread (a few
/// milliseconds at most); larger ones by the bounded parse pool.
const INLINE_PARSE_BYTES: usize = 64 << 10;

/// Elements the first parameter (the session) may take before the rest of
/// a request is parsed.
const SESSION_ELEMENTS: usize = 8;

/// A TCP connection's place in its address's budget.
struct ClientSlot {
    shared: Arc<Shared>,
    addr: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.addr);
            }
        }
    }
}

impl Shared {
    /// Takes a connection slot of `addr`, if it has one left.
    fn client_slot(self: &Arc<Self>, addr: std::net::IpAddr) -> Option<ClientSlot> {
        let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(addr).or_insert(0);
        if *n >= self.api.config().max_connections_per_client.max(1) {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            shared: self.clone(),
            addr,
        })
    }
}

fn run(
    api: Arc<Api>,
    tcp: Option<std::net::TcpListener>,
    unix: Option<std::os::unix::net::UnixListener>,
    uid: Option<u32>,
    stopped: oneshot::Receiver<()>,
) {
    let c = api.config();
    let (calls, polls, logins) = (
        c.max_concurrent_calls.max(1),
        c.max_long_polls.max(1),
        c.max_password_checks.max(1),
    );
    // Every blocking task holds one of the permits below, so the pool
    // never queues a call behind waiting long polls.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(calls + polls + logins + MAX_PARSES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the API runtime");
            return;
        }
    };
    let shared = Arc::new(Shared {
        calls: Arc::new(Semaphore::new(calls)),
        polls: Arc::new(Semaphore::new(polls)),
        logins: Arc::new(Semaphore::new(logins)),
        parses: Arc::new(Semaphore::new(MAX_PARSES)),
        per_client: std::sync::Mutex::new(std::collections::HashMap::new()),
        uid,
        api,
    });
    let conns = Arc::new(Semaphore::new(shared.api.config().max_connections.max(1)));
    let local_conns = Arc::new(Semaphore::new(
        shared.api.config().max_local_connections.max(1),
    ));
    rt.block_on(async move {
        if let Some(l) = tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(slot) = conns.clone().acquire_owned().await else {
                                return;
                            };
                            match l.accept().await {
                                Ok((s, peer)) => {
                                    // Over its budget, a client's new
                                    // connection is closed at once.
                                    let Some(mine) = shared.client_slot(peer.ip()) else {
                                        tracing::debug!(%peer, "too many connections");
                                        continue;
                                    };
                                    let _ = s.set_nodelay(true);
                                    let client = Client::Tcp(peer.ip());
                                    serve_conn(shared.clone(), client, s, (slot, Some(mine)));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "accept (TCP)");
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "TCP listener"),
            }
        }
        if let Some(l) = unix {
            match tokio::net::UnixListener::from_std(l) {
                Ok(l) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(slot) = local_conns.clone().acquire_owned().await else {
                                return;
                            };
                            match l.accept().await {
                                Ok((s, _)) => {
                                    let uid = s.peer_cred().ok().map(|c| c.uid());
                                    let owner =
                                        uid.is_some_and(|u| u == 0 || Some(u) == shared.uid);
                                    let client = Client::Local { uid, owner };
                                    serve_conn(shared.clone(), client, s, (slot, None));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "accept (Unix)");
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "Unix listener"),
            }
        }
        let _ = stopped.await;
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn serve_conn<S>(
    shared: Arc<Shared>,
    client: Client,
    stream: S,
    slots: (tokio::sync::OwnedSemaphorePermit, Option<ClientSlot>),
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _slots = slots;
        let header_timeout = shared.api.config().header_timeout;
        let svc = service_fn(move |req| handle(shared.clone(), client, req));
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .await
        {
            tracing::debug!(error = %e, "connection closed");
        }
    });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

fn respond(status: StatusCode, format: Format, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = match format {
        Format::Xml => "text/xml",
        Format::Json => "application/json",
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn failure(status: StatusCode, format: Format, e: ApiError) -> Response<Full<Bytes>> {
    let body = match format {
        Format::Xml => xmlrpc::emit_response(&Err(e)),
        Format::Json => jsonrpc::emit_response(Version::V2, &serde_json::Value::Null, &Err(e)),
    };
    respond(status, format, body)
}

async fn handle(
    shared: Arc<Shared>,
    client: Client,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let api = &shared.api;
    let is_json_ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if req.uri().path() == "/console" && req.method() == HttpMethod::GET {
        return Ok(console_response(api, req.uri().query().unwrap_or("")));
    }
    let format = match req.uri().path() {
        "/jsonrpc" => Format::Json,
        "/" | "/RPC2" | "/xmlrpc" if is_json_ct => Format::Json,
        "/" | "/RPC2" | "/xmlrpc" => Format::Xml,
        other => {
            return Ok(failure(
                StatusCode::NOT_FOUND,
                Format::Xml,
                ApiError::method_unknown(&format!("HTTP {other}")),
            ))
        }
    };
    if req.method() != HttpMethod::POST {
        return Ok(failure(
            StatusCode::METHOD_NOT_ALLOWED,
            format,
            ApiError::new(
                codes::MESSAGE_METHOD_UNKNOWN,
                [format!("HTTP {}", req.method())],
            ),
        ));
    }
    let limit = api.config().max_body_bytes;
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format,
            ApiError::new(codes::REQUEST_TOO_LARGE, [limit.to_string()]),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(too_large());
    }
    let body = Limited::new(req.into_body(), limit);
    let body = match tokio::time::timeout(api.config().body_timeout, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Ok(too_large());
            }
            return Ok(failure(
                StatusCode::BAD_REQUEST,
                format,
                ApiError::internal(format!("reading the request: {e}")),
            ));
        }
        Err(_) => {
            return Ok(failure(
                StatusCode::REQUEST_TIMEOUT,
                format,
                ApiError::internal("timed out reading the request"),
            ))
        }
    };
    // Small bodies (every ordinary call) are parsed here at once; big ones
    // off the runtime thread, a few at a time, so they never hold up the
    // small. The session is checked before the rest of a body is parsed.
    let prepared = if body.len() <= INLINE_PARSE_BYTES {
        Ok(prepare(api, format, &body))
    } else {
        let Ok(parse_slot) = shared.parses.clone().acquire_owned().await else {
            return Ok(failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format,
                ApiError::internal("server shutting down"),
            ));
        };
        let a = api.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = parse_slot;
            prepare(&a, format, &body)
        })
        .await
    };
    let (reply_to, method, params) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(done)) => return Ok(*done),
        Err(e) => {
            tracing::error!(error = %e, "parsing panicked");
            return Ok(failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format,
                ApiError::internal("the request failed inside the server"),
            ));
        }
    };
    let result = run_call(&shared, client, method, params).await;
    Ok(match reply_to {
        ReplyTo::Xml => respond(StatusCode::OK, Format::Xml, xmlrpc::emit_response(&result)),
        ReplyTo::Json(version, id) => respond(
            StatusCode::OK,
            Format::Json,
            jsonrpc::emit_response(version, &id, &result),
        ),
    })
}

/// `GET /console` (see [`crate::console`]).
fn console_response(api: &Api, query: &str) -> Response<Full<Bytes>> {
    let (status, body, range) = match api.console_text(query) {
        Ok(t) => (StatusCode::OK, t.text, Some((t.start, t.end, t.closed))),
        Err((code, msg)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            msg,
            None,
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some((start, end, closed)) = range {
        h.insert("x-console-start", HeaderValue::from(start));
        h.insert("x-console-end", HeaderValue::from(end));
        if closed {
            h.insert("x-console-closed", HeaderValue::from_static("1"));
        }
    }
    r
}

/// A response of the server.
type HttpResponse = Response<Full<Bytes>>;

/// How to answer a parsed request.
enum ReplyTo {
    Xml,
    Json(Version, serde_json::Value),
}

/// Parses a body into (how to answer, method, params), or answers it at
/// once: a malformed body, or a call whose session is not open (checked
/// before the rest of an XML-RPC body is parsed, so an unauthenticated
/// client cannot make the server build its big trees).
fn prepare(
    api: &Api,
    format: Format,
    body: &[u8],
) -> Result<(ReplyTo, String, Vec<Value>), Box<HttpResponse>> {
    let xml_fail = |e: ApiError| {
        Box::new(respond(
            StatusCode::OK,
            Format::Xml,
            xmlrpc::emit_response(&Err(e)),
        ))
    };
    let unmarshal = |e: WireError| match e {
        WireError::Malformed(m) | WireError::Fault(m) => {
            ApiError::new(codes::XMLRPC_UNMARSHAL_FAILURE, [m])
        }
    };
    match format {
        Format::Xml => {
            let mut r = xmlrpc::CallReader::new(body).map_err(|e| xml_fail(unmarshal(e)))?;
            let method = r.method().to_owned();
            let mut params = Vec::new();
            match r.next_param_bounded(SESSION_ELEMENTS) {
                Ok(xmlrpc::Head::Param(first)) => {
                    // Small bodies are checked by the call itself.
                    if body.len() > INLINE_PARSE_BYTES && !sessionless(&method) {
                        let s = first.as_str().unwrap_or_default();
                        api.check_session_ref(s).map_err(xml_fail)?;
                    }
                    params.push(first);
                    params.extend(r.rest().map_err(|e| xml_fail(unmarshal(e)))?);
                }
                Ok(xmlrpc::Head::End) => {}
                Ok(xmlrpc::Head::TooLarge) if !sessionless(&method) => {
                    return Err(xml_fail(ApiError::session_invalid("")));
                }
                Ok(xmlrpc::Head::TooLarge) => {
                    return Err(xml_fail(ApiError::new(
                        codes::XMLRPC_UNMARSHAL_FAILURE,
                        ["the first parameter is too large"],
                    )))
                }
                Err(e) => return Err(xml_fail(unmarshal(e))),
            }
            Ok((ReplyTo::Xml, method, params))
        }
        Format::Json => {
            let bad = |bad: jsonrpc::BadRequest| {
                Box::new(respond(
                    StatusCode::OK,
                    Format::Json,
                    jsonrpc::emit_bad_request(&bad),
                ))
            };
            if body.len() <= INLINE_PARSE_BYTES {
                // Small: one pass (the lazy parse would read the
                // parameters twice).
                let r = jsonrpc::parse_request(body).map_err(bad)?;
                return Ok((ReplyTo::Json(r.version, r.id), r.method, r.params));
            }
            let r = jsonrpc::parse_request_lazy(body).map_err(bad)?;
            if !sessionless(&r.method) && !r.params.is_empty() {
                // The session first: no tree is built for a client
                // without one.
                let session = match r.param_is_string(0).then(|| r.param(0)).flatten() {
                    Some(Ok(Value::String(s))) => s,
                    _ => String::new(),
                };
                if let Err(e) = api.check_session_ref(&session) {
                    let body = jsonrpc::emit_response(r.version, &r.id, &Err(e));
                    return Err(Box::new(respond(StatusCode::OK, Format::Json, body)));
                }
            }
            let r = r.into_request().map_err(bad)?;
            Ok((ReplyTo::Json(r.version, r.id), r.method, r.params))
        }
    }
}

async fn run_call(
    shared: &Arc<Shared>,
    client: Client,
    method: String,
    params: Vec<Value>,
) -> Result<Value, ApiError> {
    let sem = match admission(&method, &params) {
        // A client out of failed logins is refused before it queues.
        Admission::Login if !shared.api.login_allowed(&client) => {
            let user = params.first().and_then(Value::as_str).unwrap_or_default();
            return Err(rate_limited(user));
        }
        Admission::Login => &shared.logins,
        Admission::LongPoll => &shared.polls,
        Admission::Call => &shared.calls,
    };
    let Ok(_permit) = sem.clone().acquire_owned().await else {
        return Err(ApiError::internal("server shutting down"));
    };
    let api = shared.api.clone();
    match tokio::task::spawn_blocking(move || api.call_as(&client, &method, &params)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "call panicked");
            Err(ApiError::internal("the call failed inside the server"))
        }
    }
}
