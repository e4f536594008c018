//! `windsor up` end to end: it starts, reports its domains, serves the
//! xenstore to Debian's real `xenstore-utils`, runs a VM lifecycle driven by
//! `windsor vm …` through the API, stops cleanly on Ctrl-C (SIGINT), and a
//! restart on the same data directory keeps the writes and the VM records.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");
const PASSWORD: &str = "test-password";

/// Runs `windsor ARGS` against the API socket in `data`; returns stdout.
fn windsor(data: &Path, args: &[&str]) -> String {
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
fn power_state(data: &Path, name: &str) -> Option<String> {
    let list: serde_json::Value =
        serde_json::from_str(&windsor(data, &["vm", "list", "--json"])).unwrap();
    list.as_array()?
        .iter()
        .find(|v| v["name_label"] == name)
        .map(|v| v["power_state"].as_str().unwrap_or_default().to_string())
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(data: &Path) -> Up {
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

    fn wait_for(&mut self, needle: &str) {
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
    fn interrupt(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(ok.success());
        self.wait_for("host stopped");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "windsor up exited with {status}");
        std::mem::take(&mut self.seen)
    }
}

/// A failing assertion must not leave `windsor up` running.
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xs(socket: &Path, tool: &str, args: &[&str]) -> String {
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

#[test]
fn up_serves_xenstore_stops_on_ctrl_c_and_keeps_writes() {
    let dir = std::env::temp_dir().join(format!("windsor-up-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");

    let up = Up::start(&dir);
    let report = up.seen.join("\n");
    assert!(report.contains("toolstack"), "{report}");
    assert!(report.contains("xenstore"), "{report}");
    assert!(
        report.contains(&format!("unix:{}", socket.display())),
        "{report}"
    );
    xs(&socket, "xenstore-write", &["/windsor/test", "kept"]);
    assert_eq!(
        xs(&socket, "xenstore-read", &["/windsor/test"]).trim(),
        "kept"
    );
    // A VM lifecycle through the API's Rust client.
    windsor(&dir, &["vm", "create", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Halted"));
    windsor(&dir, &["vm", "start", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Running"));
    let table = windsor(&dir, &["vm", "list"]);
    assert!(
        table.contains("fuzz1") && table.contains("Running"),
        "{table}"
    );
    windsor(&dir, &["vm", "pause", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Paused"));
    windsor(&dir, &["vm", "unpause", "fuzz1"]);
    windsor(&dir, &["vm", "shutdown", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Halted"));
    let status = windsor(&dir, &["host", "status"]);
    assert!(status.contains("API_version_major"), "{status}");
    // The records are in the same store the host's clients see.
    let list: serde_json::Value =
        serde_json::from_str(&windsor(&dir, &["vm", "list", "--json"])).unwrap();
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    let record = xs(&socket, "xenstore-read", &[&format!("/pool/VM/{uuid}")]);
    assert!(
        record.contains("\"name_label\":\"fuzz1\""),
        "pool record: {record}"
    );

    let out = up.interrupt().join("\n");
    assert!(
        out.contains("xenstore (domain 1) ended: shutdown (poweroff)"),
        "{out}"
    );

    let up = Up::start(&dir);
    assert_eq!(
        xs(&socket, "xenstore-read", &["/windsor/test"]).trim(),
        "kept",
        "the write survived the restart"
    );
    assert_eq!(
        power_state(&dir, "fuzz1").as_deref(),
        Some("Halted"),
        "the VM record survived the restart; VMs now: {}; /pool/VM: {}",
        windsor(&dir, &["vm", "list", "--all"]),
        xs(&socket, "xenstore-ls", &["/pool/VM"])
    );
    windsor(&dir, &["vm", "destroy", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1"), None);
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
