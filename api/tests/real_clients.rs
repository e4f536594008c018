//! Real clients against a running server: the PyPI `XenAPI` package over
//! XML-RPC (TCP and the Unix socket) and the npm `xen-api` package over
//! JSON-RPC. Both drive a full lifecycle with `event.from` and check XAPI's
//! errors (the scripts are `tests/python/lifecycle.py` and
//! `tests/node/lifecycle.mjs`).
//!
//! These tests fail, with the install command, when a client is missing:
//! * `python3 -m pip install XenAPI`
//! * `npm install --prefix api/tests/node` (or point
//!   `WINDSOR_XEN_API_NODE_DIR` at a directory whose `node_modules` holds
//!   `xen-api`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command with a deadline; returns (success, stdout+stderr).
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            return (
                false,
                format!(
                    "timed out after {limit:?}\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The clients against the real toolstack: host mode on the simulated
/// hypervisor, fuzz-target guests that really boot, answer
/// `control/shutdown` and suspend.
#[test]
fn python_xenapi_full_lifecycle() {
    python_lifecycle(&common::start());
}

/// See [`python_xenapi_full_lifecycle`].
#[test]
fn npm_xen_api_full_lifecycle() {
    npm_lifecycle(&common::start());
}

/// The npm client's XML-RPC transport (it posts to `/xmlrpc`).
#[test]
fn npm_xen_api_over_xmlrpc() {
    npm_lifecycle_over(&common::start(), "xml-rpc");
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Runs the PyPI XenAPI script against `srv`.
pub fn python_lifecycle(srv: &common::TestServer) {
    let (ok, out) = run_bounded(
        Command::new("python3").args(["-c", "import XenAPI"]),
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "the PyPI XenAPI package is missing: install it with `python3 -m pip install XenAPI`\n{out}"
    );
    let script = here().join("python/lifecycle.py");
    let (ok, out) = run_bounded(
        Command::new("python3")
            .arg(&script)
            .arg(&srv.url)
            .arg(common::PASSWORD)
            .arg(&srv.socket),
        Duration::from_secs(120),
    );
    assert!(ok, "python XenAPI lifecycle failed:\n{out}");
    assert!(out.contains("python XenAPI: ok"), "{out}");
}

fn node_dir() -> PathBuf {
    std::env::var_os("WINDSOR_XEN_API_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| here().join("node"))
}

fn has_xen_api(dir: &Path) -> bool {
    dir.join("node_modules/xen-api/package.json").exists()
}

/// Runs the npm xen-api script against `srv` (JSON-RPC).
pub fn npm_lifecycle(srv: &common::TestServer) {
    npm_lifecycle_over(srv, "json-rpc");
}

/// Runs the npm xen-api script against `srv` with the client's `transport`.
pub fn npm_lifecycle_over(srv: &common::TestServer, transport: &str) {
    let (ok, out) = run_bounded(
        Command::new("node").arg("--version"),
        Duration::from_secs(30),
    );
    assert!(ok, "node is missing: install Node.js 18 or newer\n{out}");
    let dir = node_dir();
    assert!(
        has_xen_api(&dir),
        "the npm xen-api package is missing from {}: install it with `npm install --prefix api/tests/node` \
         (or set WINDSOR_XEN_API_NODE_DIR to a directory whose node_modules holds xen-api)",
        dir.display()
    );
    // Node resolves `xen-api` from the script's directory upwards: run the
    // script in place, or a copy inside another install directory.
    let original = here().join("node/lifecycle.mjs");
    let copied = dir != here().join("node");
    let script = if copied {
        // One name per run: the tests run in parallel in one process.
        static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let s = dir.join(format!("windsor-lifecycle-{}-{n}.mjs", std::process::id()));
        std::fs::copy(&original, &s).expect("copy the script");
        s
    } else {
        original
    };
    let (ok, out) = run_bounded(
        Command::new("node")
            .arg(&script)
            .arg(&srv.url)
            .arg(common::PASSWORD)
            .arg(transport)
            .current_dir(&dir),
        Duration::from_secs(120),
    );
    if copied {
        let _ = std::fs::remove_file(&script);
    }
    assert!(ok, "npm xen-api lifecycle failed:\n{out}");
    assert!(out.contains("npm xen-api: ok"), "{out}");
}
