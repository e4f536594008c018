//! Serves the API for manual testing with real clients.
//!
//! `cargo run -p windsor-api --example serve -- [ADDR] [SOCKET]` serves
//! the real toolstack in host mode on ADDR (default 127.0.0.1:8080) and, if given, a Unix
//! socket. User `root`, password from `WINDSOR_ROOT_PASSWORD` (default
//! `root`). Runs until killed.

use std::sync::Arc;
use std::time::Instant;

use windsor_api::auth::{Credentials, HashStrength, ROOT_PASSWORD_ENV, ROOT_USER};
use windsor_api::server::{Api, Config, Listen, Server};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map(String::as_str).unwrap_or("127.0.0.1:8080");
    let password = std::env::var(ROOT_PASSWORD_ENV).unwrap_or_else(|_| "root".into());
    let t = Instant::now();
    let creds = Credentials::single(ROOT_USER, &password, HashStrength::Default).unwrap();
    let hashed = t.elapsed();
    let t = Instant::now();
    assert!(creds.verify(ROOT_USER, &password));
    eprintln!("argon2id: hash {hashed:?}, verify {:?}", t.elapsed());
    let host = windsor_toolstack::host::Host::start(windsor_toolstack::ToolstackConfig::default())
        .expect("host mode starts");
    let api = Arc::new(Api::new(
        Arc::new(host.toolstack.clone()),
        creds,
        Config::default(),
    ));
    let server = Server::start(
        api,
        &Listen {
            tcp: Some(addr.parse().expect("ADDR is host:port")),
            unix: args.get(1).map(Into::into),
        },
    )
    .expect("server starts");
    eprintln!(
        "serving XenAPI on http://{} (user root)",
        server.tcp_addr().unwrap()
    );
    loop {
        std::thread::park();
    }
}
