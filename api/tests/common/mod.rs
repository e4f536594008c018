//! Shared set-up for the integration tests: a server over the in-memory
//! backend on a free TCP port and a Unix socket.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::backend::{Backend, MemoryBackend};
use windsor_api::server::{Api, Config, Listen, Server};

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
}

/// Starts a server with `config` over the in-memory backend.
pub fn start_with(config: Config) -> TestServer {
    serve(Arc::new(MemoryBackend::new()), config)
}

/// Starts a server with `config` over `backend`.
pub fn serve(backend: Arc<dyn Backend>, config: Config) -> TestServer {
    static N: AtomicUsize = AtomicUsize::new(0);
    let socket = std::env::temp_dir().join(format!(
        "windsor-api-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let api = Api::new(
        backend,
        Credentials::single("root", PASSWORD, HashStrength::TestOnlyWeak).unwrap(),
        config,
    );
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
    }
}

/// Starts a server with the default limits.
pub fn start() -> TestServer {
    start_with(Config::default())
}
