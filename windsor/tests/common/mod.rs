//! Helpers shared by the `windsor up` tests: run the binary, drive it with
//! `windsor …` and Debian's xenstore tools.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");
pub const PASSWORD: &str = "test-password";

/// Runs `windsor ARGS` against the API socket in `data`; returns stdout.
pub fn windsor(data: &Path, args: &[&str]) -> String {
    let out = Command::new(WINDSOR)
        .args(args)
        .arg("--api")
        .arg(format!("unix:{}", data.join("api.sock").display()))
        .env("WINDSOR_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "windsor {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The power state of `name` from `windsor vm list --json`.
pub fn power_state(data: &Path, name: &str) -> Option<String> {
    let list: serde_json::Value =
        serde_json::from_str(&windsor(data, &["vm", "list", "--json"])).unwrap();
    list.as_array()?
        .iter()
        .find(|v| v["name_label"] == name)
        .map(|v| v["power_state"].as_str().unwrap_or_default().to_string())
}

/// The domain id of `name` from `windsor vm list --json`.
pub fn domid(data: &Path, name: &str) -> Option<u16> {
    let list: serde_json::Value =
        serde_json::from_str(&windsor(data, &["vm", "list", "--json"])).unwrap();
    list.as_array()?
        .iter()
        .find(|v| v["name_label"] == name)
        .and_then(|v| v["domid"].as_i64())
        .and_then(|d| u16::try_from(d).ok())
}

pub struct Up {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Up {
    pub fn start(data: &Path) -> Up {
        let mut child = Command::new(WINDSOR)
            .args(["up", "--api", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("WINDSOR_ROOT_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn windsor up");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut up = Up {
            child,
            lines,
            seen: Vec::new(),
        };
        up.wait_for("press Ctrl-C");
        up
    }

    pub fn wait_for(&mut self, needle: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no {needle:?} from windsor up; saw {:#?}", self.seen),
            }
        }
    }

    /// Sends SIGINT and waits for a clean exit; returns everything printed.
    pub fn interrupt(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(ok.success());
        self.wait_for("host stopped");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "windsor up exited with {status}");
        std::mem::take(&mut self.seen)
    }

    /// `kill -9`: no clean shutdown of anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A failing assertion must not leave `windsor up` running.
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn xs(socket: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .env("XENSTORED_PATH", socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} is missing ({e}): `cargo xtask test` installs xenstore-utils")
        });
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `windsor ARGS` expecting it to fail; returns stderr.
pub fn windsor_fails(data: &Path, args: &[&str]) -> String {
    let out = Command::new(WINDSOR)
        .args(args)
        .arg("--api")
        .arg(format!("unix:{}", data.join("api.sock").display()))
        .env("WINDSOR_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success(), "windsor {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
