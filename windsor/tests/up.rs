//! `windsor up` end to end: it starts, reports its domains, serves the
//! xenstore to Debian's real `xenstore-utils`, stops cleanly on Ctrl-C
//! (SIGINT), and a restart on the same data directory keeps the writes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(data: &Path) -> Up {
        let mut child = Command::new(WINDSOR)
            .args(["up", "--data-dir"])
            .arg(data)
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

    fn interrupt(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(ok.success());
        self.wait_for("host stopped");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "windsor up exited with {status}");
        self.seen
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
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
