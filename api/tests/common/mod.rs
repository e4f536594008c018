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
    let h = windsor_toolstack::host::Host::start(windsor_toolstack::Config {
        shutdown_timeout: Duration::from_secs(60),
        seed: 7,
        ..windsor_toolstack::Config::default()
    })
    .expect("host mode starts");
    h.toolstack
        .attach_xs_watch(
            h.store.connect(xen::DomId::DOM0),
            windsor_toolstack::xsapi::WatchLimits::default(),
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
    static N: AtomicUsize = AtomicUsize::new(0);
    let socket = std::env::temp_dir().join(format!(
        "windsor-api-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let api = Api::new(
        toolstack,
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
        host: None,
    }
}

/// Starts a server with the default limits.
pub fn start() -> TestServer {
    start_with(Config::default())
}
