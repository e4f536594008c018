//! `cargo xtask xen-up`: a Windsor host in Xen mode that stays up under
//! QEMU and serves the XenAPI on `127.0.0.1:PORT`.
//!
//! The host description (`--config`, default
//! `boot-config/examples/default.toml`) is built and bundled as for
//! `xen-boot`; the machine differs:
//!
//! * `-machine q35 -device amd-iommu` and Xen's `iommu=1` (instead of
//!   `dom0-iommu=none`): a PVH dom0's frames are not machine frames, so its
//!   NIC reaches dom0's memory through the IOMMU, which Xen programs with
//!   dom0's physmap (`XEN-BOOT-NOTES.md`, "IOMMU under QEMU");
//! * a virtio-net NIC (`disable-legacy=on,iommu_platform=on`, so its DMA
//!   goes through the IOMMU) on QEMU's user network, with
//!   `hostfwd=tcp:127.0.0.1:PORT-10.0.2.15:80`;
//! * dom0's command line says `serve` (stay up after the boot plan) and
//!   `api.root=<hex of an Argon2id PHC string>`: the hash of `root`'s
//!   password, as host mode keeps it in `api-credentials`. The password is
//!   `--password`, else `$WINDSOR_ROOT_PASSWORD`, else generated and
//!   printed once.
//!
//! The host runs until `host.shutdown`/`host.reboot` through the API
//! (`windsor host shutdown`), after which Xen halts and QEMU is stopped,
//! or until Ctrl-C (QEMU is killed with xtask).
//!
//! Also compiled into `tests/tests/xen_host.rs` (with `xen_boot.rs`), so it
//! uses nothing else from xtask.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::xen_boot::{
    ensure_xen_tools, initrd_arg, prepare_host, work_dir, workspace_root, xen_elf, Qemu,
    XenBootArgs, DEFAULT_CONFIG, QEMU_XEN_OPTIONS,
};

/// The line dom0 prints once the XenAPI answers on its NIC.
pub const API_READY_MARKER: &str = "WINDSOR-API-READY";
/// The port the XenAPI listens on inside the machine.
pub const GUEST_PORT: u16 = 80;
const TAIL_LINES: usize = 60;

/// Options of `cargo xtask xen-up`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct XenUpArgs {
    /// The host description (default `boot-config/examples/default.toml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The local port the XenAPI is forwarded to (0: a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// `root`'s password [default: $WINDSOR_ROOT_PASSWORD, else generated].
    #[arg(long)]
    pub password: Option<String>,
    /// Seconds to wait for the XenAPI to answer before giving up.
    #[arg(long, default_value_t = 120)]
    pub boot_timeout: u64,
    /// Do not echo the serial log.
    #[arg(long)]
    pub quiet: bool,
}

/// A running Xen-mode host.
pub struct XenHost {
    qemu: Qemu,
    /// The local port of the XenAPI.
    pub port: u16,
    /// `root`'s password.
    pub password: String,
    /// Wall time from QEMU's start to `WINDSOR-API-READY`.
    pub api_ready: Duration,
    /// The ready line.
    pub ready_line: String,
    /// The serial log file.
    pub log_path: PathBuf,
    rx: mpsc::Receiver<Option<String>>,
    log: File,
    tail: VecDeque<String>,
    /// Every serial line so far.
    pub lines: Vec<String>,
    echo: bool,
    started: Instant,
}

/// Argon2id cost of the hash dom0 checks: 4 MiB, one pass. Host mode's
/// default (19 MiB, two passes) takes dom0 more than a minute under QEMU
/// TCG (nested paging in software makes every memory access a walk); the
/// PHC string carries its parameters, so a host description for real
/// hardware can use the default again.
const XEN_MODE_M_COST_KIB: u32 = 4096;
const XEN_MODE_T_COST: u32 = 1;

/// An Argon2id PHC string of `password` (cost: [`XEN_MODE_M_COST_KIB`],
/// [`XEN_MODE_T_COST`]), salted from `/dev/urandom`.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt))
        .context("reading /dev/urandom")?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("salt: {e}"))?;
    let params = argon2::Params::new(XEN_MODE_M_COST_KIB, XEN_MODE_T_COST, 1, None)
        .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("hashing the password: {e}"))
}

/// A random password (24 hex digits from `/dev/urandom`).
fn generate_password() -> Result<String> {
    let mut b = [0u8; 12];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl XenHost {
    /// Builds, boots and waits until the XenAPI answers (`boot_timeout`).
    pub fn start(args: &XenUpArgs) -> Result<XenHost> {
        let config = args
            .config
            .clone()
            .unwrap_or_else(|| workspace_root().join(DEFAULT_CONFIG));
        let password = match (&args.password, std::env::var("WINDSOR_ROOT_PASSWORD")) {
            (Some(p), _) => p.clone(),
            (None, Ok(p)) if !p.is_empty() => p,
            _ => generate_password()?,
        };
        let hash = hash_password(&password)?;
        let hash_hex: String = hash.bytes().map(|b| format!("{b:02x}")).collect();
        let port = if args.port == 0 {
            free_port()?
        } else {
            args.port
        };
        let boot = XenBootArgs {
            config: Some(config.clone()),
            cmdline: format!(
                "serve api.root={hash_hex}{}",
                if std::env::var_os("WINDSOR_NET_TRACE").is_some() {
                    " net.trace"
                } else {
                    ""
                }
            ),
            quiet: args.quiet,
            ..XenBootArgs::default()
        };
        let (images, machine, bundle_path) = prepare_host(&boot, &config)?;
        ensure_xen_tools()?;
        let xen = xen_elf()?;
        let initrd = initrd_arg(&boot, &images)?;
        let xen_cmdline = machine.xen_cmdline.replace("dom0-iommu=none", "iommu=1");
        let dir = work_dir();
        fs::create_dir_all(&dir)?;
        let log_path = dir.join(format!("xen-up-{}-{port}.log", std::process::id()));
        let log = File::create(&log_path)?;
        let started = Instant::now();
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-machine", "q35"])
            .args(["-m", &machine.memory_mib.to_string()])
            .args(["-smp", &machine.smp.to_string()])
            .args(["-display", "none", "-vga", "none", "-no-reboot"])
            .args(["-monitor", "none", "-serial", "stdio", "-parallel", "none"])
            .args(["-device", "amd-iommu"])
            .args([
                "-netdev",
                &format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:{GUEST_PORT}"),
            ])
            .args([
                "-device",
                "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=on",
            ])
            .arg("-kernel")
            .arg(&xen)
            .args(["-append", &format!("{xen_cmdline} {QEMU_XEN_OPTIONS}")])
            .args(["-initrd", &initrd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64")?;
        let mut qemu = Qemu(child);
        let rx = qemu.lines();
        let mut host = XenHost {
            qemu,
            port,
            password,
            api_ready: Duration::ZERO,
            ready_line: String::new(),
            log_path,
            rx,
            log,
            tail: VecDeque::new(),
            lines: Vec::new(),
            echo: !args.quiet,
            started,
        };
        let ready = host.wait_for(API_READY_MARKER, Duration::from_secs(args.boot_timeout));
        let _ = fs::remove_file(&bundle_path);
        host.ready_line = ready?;
        host.api_ready = started.elapsed();
        Ok(host)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{what}\n--- last serial lines ({}) ---\n{}",
            self.log_path.display(),
            self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }

    fn record(&mut self, line: String) {
        if self.echo {
            println!("{line}");
        }
        let _ = writeln!(self.log, "{line}");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.lines.push(line);
    }

    /// Waits for a line starting with `prefix`; fails on a Xen panic, a
    /// crashed dom0, QEMU's output closing, or the timeout.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.failure(&format!(
                    "no {prefix:?} line within {} s",
                    timeout.as_secs()
                )));
            }
            let line = match self.rx.recv_timeout(deadline - now) {
                Ok(Some(l)) => l,
                // One of QEMU's two streams ended.
                Ok(None) | Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.failure("QEMU exited"));
                }
            };
            self.record(line.clone());
            if line.starts_with(prefix) {
                return Ok(line);
            }
            let xen_says = |w: &str| line.starts_with("(XEN)") && line.contains(w);
            if xen_says("Panic on CPU") || xen_says("Dom0 crashed") {
                return Err(self.failure(&format!("Xen reported: {}", line.trim())));
            }
        }
    }

    /// Echoes the log until QEMU exits or Xen halts the machine (then
    /// QEMU is stopped); `None` waits for ever.
    pub fn wait_down(&mut self, timeout: Option<Duration>) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let left = match timeout {
                Some(t) => match t.checked_sub(t0.elapsed()) {
                    Some(l) => l,
                    None => return Err(self.failure("the host did not go down in time")),
                },
                None => Duration::from_secs(3600),
            };
            match self.rx.recv_timeout(left) {
                Ok(Some(line)) => {
                    self.record(line.clone());
                    if line.starts_with("(XEN)") && line.contains("halting machine")
                        || line.starts_with("(XEN)") && line.contains("rebooting machine")
                    {
                        return Ok(t0.elapsed());
                    }
                }
                Ok(None) | Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(t0.elapsed()),
            }
        }
    }

    /// QEMU's exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.qemu.0.try_wait().ok().flatten()
    }

    /// Wall time since QEMU started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `cargo xtask xen-up`.
pub fn run(args: XenUpArgs) -> Result<()> {
    let mut host = XenHost::start(&args)?;
    println!(
        "xen-up: XenAPI on {} (user root, password {}) {:.2} s after QEMU started; \
         XML-RPC at /, JSON-RPC at /jsonrpc. Stop: host.shutdown \
         (`windsor host shutdown --api {}`) or Ctrl-C. Log: {}",
        host.url(),
        host.password,
        host.api_ready.as_secs_f64(),
        host.url(),
        host.log_path.display()
    );
    host.wait_down(None)?;
    if !host
        .lines
        .iter()
        .any(|l| l.starts_with("WINDSOR-DONE failed=0"))
    {
        bail!(
            "the host went down with failed steps (see {})",
            host.log_path.display()
        );
    }
    println!("xen-up: host down");
    Ok(())
}
