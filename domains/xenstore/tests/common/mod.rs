//! Shared helpers of the daemon's integration tests: start
//! `windsor-xenstored` (or the reference C xenstored) on a temporary socket,
//! talk raw `xs_wire` to it, and require external tools.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon under test.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_windsor-xenstored");

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("wxs-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails the test if `path` is missing, naming the package that provides it.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists() || which(path),
        "{path} is missing: install {package} (`cargo xtask test` installs it)"
    );
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits for a Unix socket to accept connections.
pub fn wait_for_socket(path: &Path, timeout: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if UnixStream::connect(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no server on {} after {timeout:?}", path.display());
}

/// A running `windsor-xenstored`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub data: PathBuf,
}

impl Daemon {
    /// Starts the daemon with its socket and data directory in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let socket = dir.join("socket");
        let data = dir.join("data");
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(DAEMON)
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn windsor-xenstored");
        wait_for_socket(&socket, Duration::from_secs(20));
        Daemon {
            child,
            socket,
            data,
        }
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference C xenstored (`../shared/tools/ref-xenstored`), killed on drop.
pub struct RefDaemon {
    pub pid: i32,
    pub socket: PathBuf,
    _dir: TempDir,
}

/// The ref tool's start script, relative to this crate.
pub fn ref_tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/ref-xenstored/start.sh")
}

impl RefDaemon {
    pub fn start(kind: &str) -> Self {
        require("/usr/lib/xen-4.17/bin/xenstored", "xen-utils-4.17");
        require("gcc", "gcc (start.sh builds its shim)");
        let tool = ref_tool();
        assert!(
            tool.exists(),
            "reference tool missing at {}",
            tool.display()
        );
        let dir = TempDir::new(&format!("ref-{kind}"));
        let out = Command::new(&tool)
            .arg(kind)
            .arg(&dir.0)
            .output()
            .expect("run ref-xenstored start.sh");
        assert!(
            out.status.success(),
            "start.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("start.sh prints a pid");
        let socket = dir.0.join("socket");
        wait_for_socket(&socket, Duration::from_secs(20));
        RefDaemon {
            pid,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for RefDaemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// One `xsd_sockmsg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

pub const XS_DIRECTORY: u32 = 1;
pub const XS_READ: u32 = 2;
pub const XS_GET_PERMS: u32 = 3;
pub const XS_WATCH: u32 = 4;
pub const XS_UNWATCH: u32 = 5;
pub const XS_TRANSACTION_START: u32 = 6;
pub const XS_TRANSACTION_END: u32 = 7;
pub const XS_GET_DOMAIN_PATH: u32 = 10;
pub const XS_WRITE: u32 = 11;
pub const XS_MKDIR: u32 = 12;
pub const XS_RM: u32 = 13;
pub const XS_SET_PERMS: u32 = 14;
pub const XS_WATCH_EVENT: u32 = 15;
pub const XS_ERROR: u32 = 16;
pub const XS_DIRECTORY_PART: u32 = 22;

pub fn encode(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + payload.len());
    for w in [ty, req_id, tx_id, payload.len() as u32] {
        m.extend_from_slice(&w.to_le_bytes());
    }
    m.extend_from_slice(payload);
    m
}

/// A raw xenstore connection with a read timeout.
pub struct Conn {
    pub s: UnixStream,
    next_req: u32,
}

impl Conn {
    pub fn open(socket: &Path) -> Self {
        let s = UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn { s, next_req: 1 }
    }

    pub fn from_stream(s: UnixStream) -> Self {
        Conn { s, next_req: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn recv(&mut self) -> std::io::Result<Msg> {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h)?;
        let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut payload = vec![0; w(12) as usize];
        self.s.read_exact(&mut payload)?;
        Ok(Msg {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            payload,
        })
    }

    /// Sends a request and returns its reply, collecting watch events seen
    /// before it into `events`.
    pub fn call_ev(&mut self, ty: u32, tx: u32, payload: &[u8], events: &mut Vec<Msg>) -> Msg {
        let req = self.next_req;
        self.next_req += 1;
        self.send_raw(&encode(ty, req, tx, payload)).expect("send");
        loop {
            let m = self.recv().expect("reply");
            if m.ty == XS_WATCH_EVENT {
                events.push(m);
                continue;
            }
            assert_eq!(m.req_id, req, "reply echoes req_id");
            return m;
        }
    }

    pub fn call(&mut self, ty: u32, tx: u32, payload: &[u8]) -> Msg {
        let mut ev = Vec::new();
        self.call_ev(ty, tx, payload, &mut ev)
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Msg {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value);
        self.call(XS_WRITE, 0, &p)
    }

    pub fn read(&mut self, path: &str) -> Msg {
        self.call(XS_READ, 0, &z(path))
    }
}

/// `s` with a NUL.
pub fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Runs a command with a time limit; returns (status ok, stdout, stderr).
pub fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} timed out after {limit:?}; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
