//! `windsor xs read|write|ls|watch` against a running `windsor up`: through
//! the API's `xenstore.*` calls by default, over the xenstore socket with
//! `--socket`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WINDSOR: &str = env!("CARGO_BIN_EXE_windsor");
const PASSWORD: &str = "xs-test-password";

/// `windsor up` in the background; killed when dropped.
struct Up {
    child: Child,
    dir: PathBuf,
    /// The API's TCP address (`http://…`).
    tcp: String,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let mut child = Command::new(WINDSOR)
            .args(["up", "--api", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("WINDSOR_ROOT_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn windsor up");
        let lines = lines_of(child.stdout.take().unwrap());
        let mut tcp = String::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.contains("press Ctrl-C") => break,
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix("windsor: API ") {
                        tcp = rest.split_whitespace().next().unwrap_or("").to_owned();
                    }
                }
                Err(_) => panic!("windsor up did not come up"),
            }
        }
        Up {
            child,
            dir: dir.to_owned(),
            tcp,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(WINDSOR);
        c.args(args)
            .arg("--api")
            .arg(format!("unix:{}", self.dir.join("api.sock").display()))
            .env("WINDSOR_PASSWORD", PASSWORD)
            .env_remove("XENSTORED_PATH");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `windsor ARGS`, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "windsor {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn xs_commands_go_through_the_api() {
    let dir = std::env::temp_dir().join(format!("windsor-xs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = Up::start(&dir);

    up.ok(&["xs", "write", "/windsor/xs/a", "hello world"]);
    assert_eq!(up.ok(&["xs", "read", "/windsor/xs/a"]), "hello world\n");
    let j: serde_json::Value =
        serde_json::from_str(&up.ok(&["xs", "read", "/windsor/xs/a", "--json"])).unwrap();
    assert_eq!(j["value"], "hello world");
    up.ok(&["xs", "write", "/windsor/xs/b", "2"]);
    let ls = up.ok(&["xs", "ls", "/windsor/xs"]);
    assert_eq!(ls, "a = \"hello world\"\nb = \"2\"\n");
    let j: serde_json::Value =
        serde_json::from_str(&up.ok(&["xs", "ls", "/windsor/xs", "--json"])).unwrap();
    assert_eq!(j, serde_json::json!({ "a": "hello world", "b": "2" }));

    // Errors are the API's.
    let out = up.run(&["xs", "read", "/windsor/no/such"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("XENSTORE_ERROR") && err.contains("ENOENT"),
        "{err}"
    );
    // Over TCP a wrong password is refused ...
    let out = Command::new(WINDSOR)
        .args(["xs", "read", "/windsor/xs/a", "--api", &up.tcp])
        .env("WINDSOR_PASSWORD", "wrong")
        .env_remove("XENSTORED_PATH")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong password is refused");
    // ... while on the local socket the server's own user needs none (peer
    // credentials, as `xe` in a XAPI dom0).
    let out = up
        .command(&["xs", "read", "/windsor/xs/a"])
        .env_remove("WINDSOR_PASSWORD")
        .env_remove("WINDSOR_ROOT_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");
    // The data directory and the credentials are private.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&up.dir), 0o700);
        assert_eq!(mode(&up.dir.join("api-credentials")), 0o600);
    }

    // A watch sees writes made by other clients, in order.
    let mut w = up
        .command(&["xs", "watch", "/windsor/xs", "--count", "3", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(w.stdout.take().unwrap());
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(first, r#"{"path":"/windsor/xs"}"#, "a new watch fires once");
    up.ok(&["xs", "write", "/windsor/xs/c", "3"]);
    up.ok(&["xs", "write", "/windsor/xs/a", "again"]);
    let rest: Vec<String> = (0..2)
        .map(|_| lines.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    assert_eq!(
        rest,
        [r#"{"path":"/windsor/xs/c"}"#, r#"{"path":"/windsor/xs/a"}"#]
    );
    assert!(
        w.wait().unwrap().success(),
        "watch --count 3 ends by itself"
    );

    // Direct socket access, for hosts without the API.
    let socket = dir.join("xenstored.sock");
    let s = socket.to_str().unwrap();
    assert_eq!(
        up.ok(&["xs", "--socket", s, "read", "/windsor/xs/a"]),
        "again\n"
    );
    up.ok(&["xs", "--socket", s, "write", "/windsor/xs/d", "via socket"]);
    assert_eq!(up.ok(&["xs", "read", "/windsor/xs/d"]), "via socket\n");

    // rm, through the API and through the socket.
    up.ok(&["xs", "rm", "/windsor/xs/d"]);
    assert!(!up.run(&["xs", "read", "/windsor/xs/d"]).status.success());
    up.ok(&["xs", "--socket", s, "rm", "/windsor/xs/c"]);
    assert_eq!(
        up.ok(&["xs", "ls", "/windsor/xs"]),
        "a = \"again\"\nb = \"2\"\n"
    );

    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}
