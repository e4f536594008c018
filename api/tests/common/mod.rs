//! Shared set-up for the integration tests: a server over the real
//! toolstack in host mode on a free TCP port and a Unix socket.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::server::{Api, Config, Listen, Server};
use windsor_api::toolstack::Toolstack;

/// The root password the test servers accept.
pub const PASSWORD: &str = "windsor-test-pw";

/// A running test server.
pub struct TestServer {
    /// The server (stopped on drop).
    pub server: Server,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The Unix socket (no `_` in it: PyPI XenAPI's Unix transport maps
    /// `_` to `/`).
    pub socket: PathBuf,
    /// The host the server serves (when the test server started it).
    pub host: Option<windsor_toolstack::host::Host>,
}

/// A host-mode toolstack for tests, serving `xenstore.watch` as `windsor
/// up` does (generous shutdown timeout: the machine is shared and loaded).
pub fn host() -> windsor_toolstack::host::Host {
    let h = windsor_toolstack::host::Host::start(windsor_toolstack::ToolstackConfig {
        shutdown_timeout: Duration::from_secs(60),
        seed: 7,
        ..windsor_toolstack::ToolstackConfig::default()
    })
    .expect("host mode starts");
    h.toolstack
        .attach_xs_watch(
            h.store.connect(xen::DomId::DOM0),
            windsor_toolstack::xs_calls::WatchLimits::default(),
        )
        .expect("xenstore watches");
    h
}

/// Starts a server with `config` over a host-mode toolstack of its own.
pub fn start_with(config: Config) -> TestServer {
    let host = host();
    let mut srv = serve(Arc::new(host.toolstack.clone()), config);
    srv.host = Some(host);
    srv
}

/// Starts a server with `config` over `toolstack`.
pub fn serve(toolstack: Arc<dyn Toolstack>, config: Config) -> TestServer {
    serve_with(
        toolstack,
        Credentials::single("root", PASSWORD, HashStrength::TestOnlyWeak).unwrap(),
        config,
    )
}

/// Starts a server with `config` over `toolstack`, checking `credentials`.
pub fn serve_with(
    toolstack: Arc<dyn Toolstack>,
    credentials: Credentials,
    config: Config,
) -> TestServer {
    static N: AtomicUsize = AtomicUsize::new(0);
    let socket = std::env::temp_dir().join(format!(
        "windsor-api-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let api = Api::new(toolstack, credentials, config);
    let server = Server::start(
        Arc::new(api),
        &Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: Some(socket.clone()),
        },
    )
    .expect("server starts");
    let addr = server.tcp_addr().unwrap().to_string();
    TestServer {
        url: format!("http://{addr}"),
        addr,
        socket,
        server,
        host: None,
    }
}

/// Starts a server with the default limits.
pub fn start() -> TestServer {
    start_with(Config::default())
}

/// A kept-alive HTTP/1.1 connection speaking XML-RPC by hand (for floods:
/// many of them, each on a thread of its own).
pub struct RawConn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr` from `from` (any loopback address: Linux routes
    /// all of 127/8 to lo), so that one test can be several clients.
    pub fn connect_from(addr: &str, from: std::net::Ipv4Addr) -> std::io::Result<RawConn> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let stream = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind((from, 0).into())?;
            s.connect(addr).await?.into_std()
        })?;
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects from 127.0.0.1.
    pub fn connect(addr: &str) -> std::io::Result<RawConn> {
        Self::connect_from(addr, std::net::Ipv4Addr::LOCALHOST)
    }

    /// Posts an XML-RPC call, returns the response body.
    pub fn call(&mut self, method: &str, params: &[windsor_api::Value]) -> std::io::Result<String> {
        let body = windsor_api::xmlrpc::emit_call(method, params);
        self.post(body.as_bytes())
    }

    /// Posts `body` to `/`, returns the response body.
    pub fn post(&mut self, body: &[u8]) -> std::io::Result<String> {
        self.post_to("/", "text/xml", body)
    }

    /// Posts `body` to `path` as `content_type`, returns the response body.
    pub fn post_to(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> std::io::Result<String> {
        use std::io::Write;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req)?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<String> {
        use std::io::Read;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body =
                        String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                    self.buf.drain(..end + 4 + len);
                    return Ok(body);
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// This process's resident set size, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
