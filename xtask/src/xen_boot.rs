//! `cargo xtask xen-boot`: boot Windsor images on real Xen 4.17 under QEMU.
//!
//! Steps (facts behind each in `XEN-BOOT-NOTES.md` of the design notes):
//!
//! 1. [`ensure_xen_tools`]: installs Debian's `qemu-system-x86` and
//!    `xen-hypervisor-4.17-amd64` if missing, pinning `qemu-utils` to the
//!    version `apt-cache policy` offers for QEMU 7.2 (the machine's
//!    backported qemu-utils conflicts). Idempotent: a no-op once installed.
//! 2. [`build_image`]: builds an image binary for `x86_64-unknown-none`
//!    (release, `panic = "abort"`) in its own target directory, so that it
//!    can run from inside `cargo test` without waiting on the outer lock.
//! 3. [`check_pvh_image`]: refuses an ELF without a `PT_NOTE` carrying
//!    `XEN_ELFNOTE_PHYS32_ENTRY` before QEMU is started (the builder's own
//!    check, `windsor_unikernel::elf`).
//! 4. [`boot`]: `zcat /boot/xen-4.17-amd64.gz` once, runs
//!    `qemu-system-x86_64 -accel tcg -cpu max` with the images as multiboot
//!    modules (with `--config`, or by default: dom0 and the boot bundle
//!    rendered by `windsor_boot_config::render::bundle`, and the Xen
//!    command line of `render::xen_cmdline` plus [`QEMU_XEN_OPTIONS`]),
//!    streams the serial log, and stops QEMU (always, also on
//!    timeout or panic) once the outcome is known:
//!    * success: the ready marker appeared, then Xen reported
//!      `Hardware Dom0 halted: halting machine` (dom0 powered off); for a
//!      host boot, the command also needs dom0's `WINDSOR-DONE failed=0`
//!      (every planned step succeeded) — [`boot`] returns the count in the
//!      report, [`run`] fails on anything else;
//!    * failure: `Panic on CPU`, `Hardware Dom0 crashed`, `rebooting
//!      machine`, a halt before the marker, QEMU exiting, or the timeout;
//!      the error carries the last log lines.
//!
//!    The marker counts only at the start of a line (dom0's `console_io`
//!    output is unprefixed; guests' lines start with `(dN)`), and Xen's
//!    verdicts only on `(XEN)` lines, so a guest cannot fake either.
//!
//! This file is also compiled into the Xen-mode tests
//! (`tests/tests/xen_mode.rs` includes it with `#[path]`), so it uses
//! nothing from the rest of xtask.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The line prefix a Windsor dom0 prints when the host is ready.
pub const READY_MARKER: &str = "WINDSOR-READY";
/// The line prefix the `dom0` image prints before powering off:
/// `WINDSOR-DONE failed=<planned steps that failed>`.
pub const DONE_MARKER: &str = "WINDSOR-DONE";
/// The Xen binary Debian's `xen-hypervisor-4.17-amd64` installs.
pub const XEN_GZ: &str = "/boot/xen-4.17-amd64.gz";
/// Xen's command line: serial console, everything logged, PVH dom0.
pub const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all \
     noreboot console_timestamps=boot dom0=pvh dom0-iommu=none dom0_mem=64M";
/// Xen options xen-boot adds for the QEMU machine only: QEMU's RAM starts
/// zeroed, so Xen's boot-time scrubbing of free memory is pure cost there
/// (about 0.3 s of TCG time for the default host's 64 MiB of domains,
/// which dom0 allocates before idle scrubbing has reached them). Real
/// hardware keeps Xen's default (the GRUB stanza has no such option).
pub const QEMU_XEN_OPTIONS: &str = "bootscrub=0";
const TAIL_LINES: usize = 40;

/// Options of `cargo xtask xen-boot`.
///
/// With neither `--image` nor `--config`, boots the default host,
/// `boot-config/examples/default.toml`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct XenBootArgs {
    /// A host description (boot-config TOML): builds the images it names
    /// (see [`image_binary`]), renders the boot bundle and boots dom0 with it.
    #[arg(long, conflicts_with = "image")]
    pub config: Option<PathBuf>,
    /// With `--config`: the build output directory the description's
    /// image paths are relative to (default `<target>/xen-boot/images`).
    /// Images that are not Windsor image binaries must already be there.
    #[arg(long, requires = "config")]
    pub images_dir: Option<PathBuf>,
    /// The dom0 image: a path to a PVH ELF, or the name of an image binary
    /// in the workspace (built for x86_64-unknown-none).
    #[arg(long)]
    pub image: Option<String>,
    /// An image or blob handed to dom0 as its boot module (a path or an
    /// image binary name). Xen 4.17 gives a PVH dom0 only one module (its
    /// "initrd"), so at most one; several images must be bundled into one.
    #[arg(long = "module", requires = "image")]
    pub modules: Vec<String>,
    /// dom0's command line.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Hard limit for the whole boot, in seconds (QEMU is killed after it);
    /// default 60, or the description's `[qemu] timeout_secs`.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Do not echo the serial log while it streams.
    #[arg(long)]
    pub quiet: bool,
    /// Skip the PVH note check (to watch Xen refuse a bad image).
    #[arg(long)]
    pub no_check: bool,
}

/// The default host description, relative to the workspace root.
pub const DEFAULT_CONFIG: &str = "boot-config/examples/default.toml";

/// The Windsor image binary that provides an image file named in a host
/// description, if any: the names of `boot-config/examples/default.toml`
/// (`windsor-toolstack.elf` is `dom0`, `windsor-xenstore.elf` is
/// `xenstore-domain`, `windsor-netback.elf` is `netback-domain`,
/// `windsor-blkback.elf` is `blkback-domain`), and `windsor-<bin>.elf` for
/// every image binary (`windsor-fuzz-target.elf` is the `fuzz-target`
/// image).
pub fn image_binary(file: &str) -> Option<&'static str> {
    const BINS: [&str; 7] = [
        "dom0",
        "dom0-hello",
        "fuzz-target",
        "guest-hello",
        "xenstore-domain",
        "netback-domain",
        "blkback-domain",
    ];
    match file {
        "windsor-toolstack.elf" => Some("dom0"),
        "windsor-xenstore.elf" => Some("xenstore-domain"),
        "windsor-netback.elf" => Some("netback-domain"),
        "windsor-blkback.elf" => Some("blkback-domain"),
        _ => {
            let bin = file.strip_prefix("windsor-")?.strip_suffix(".elf")?;
            BINS.iter().copied().find(|b| *b == bin)
        }
    }
}

/// The QEMU machine and Xen command line of one boot.
pub(crate) struct Machine {
    pub(crate) xen_cmdline: String,
    pub(crate) memory_mib: u32,
    pub(crate) smp: u32,
    pub(crate) timeout: u64,
}

/// What a successful boot measured.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// The ready line as dom0 printed it.
    pub ready_line: String,
    /// QEMU wall time from spawn to the ready marker.
    pub wall_to_ready: Duration,
    /// QEMU wall time from spawn to Xen halting the machine.
    pub wall_total: Duration,
    /// dom0 start → ready, in ms, as dom0 measured it (`dom0=… ms`).
    pub dom0_ms: Option<f64>,
    /// Xen system time at ready, in ms (`xen=… ms`).
    pub xen_ms: Option<f64>,
    /// Planned steps that failed, from dom0's `WINDSOR-DONE failed=N`
    /// (only the `dom0` image prints it).
    pub failed_steps: Option<u32>,
    /// The full serial log.
    pub log_path: PathBuf,
    /// Every serial line.
    pub lines: Vec<String>,
}

/// `cargo xtask xen-boot`: boots, prints the serial log and a summary;
/// fails with the last log lines unless dom0 reported ready and powered off.
pub fn run(args: XenBootArgs) -> Result<()> {
    let r = boot(&args)?;
    let host_boot = args.image.is_none();
    let tail = || {
        let from = r.lines.len().saturating_sub(TAIL_LINES);
        r.lines[from..].join("\n")
    };
    match r.failed_steps {
        Some(0) => {}
        Some(n) => bail!(
            "xen-boot failed: dom0 reported {n} failed planned step(s)\n--- last serial lines ({}) ---\n{}",
            r.log_path.display(),
            tail()
        ),
        None if host_boot => bail!(
            "xen-boot failed: dom0 never reported its steps ({DONE_MARKER})\n--- last serial lines ({}) ---\n{}",
            r.log_path.display(),
            tail()
        ),
        None => {}
    }
    println!(
        "xen-boot: ready in {:.2} s of QEMU wall time (dom0 start -> ready {}, Xen uptime {}); \
         clean poweroff at {:.2} s; log {}",
        r.wall_to_ready.as_secs_f64(),
        r.dom0_ms.map_or("?".into(), |v| format!("{v:.1} ms")),
        r.xen_ms.map_or("?".into(), |v| format!("{v:.0} ms")),
        r.wall_total.as_secs_f64(),
        r.log_path.display()
    );
    Ok(())
}

/// The workspace root (this file lives in `xtask/src/` or is included
/// from `tests/tests/`; both crates sit one level below the root).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where xen-boot keeps its files: `<target dir>/xen-boot`.
pub fn work_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("xen-boot")
}

fn have_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `Candidate:` version of `apt-cache policy PKG` (`None` if apt has
/// no candidate, e.g. before `apt-get update`).
fn apt_candidate(pkg: &str) -> Result<Option<String>> {
    let text = output(Command::new("apt-cache").args(["policy", pkg]))?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| v != "(none)"))
}

/// Versions `apt-cache policy PKG` lists in its version table: lines
/// `[***] VERSION PRIORITY`, each followed by `PRIORITY SOURCE` lines.
fn apt_versions(pkg: &str) -> Result<Vec<String>> {
    let text = output(Command::new("apt-cache").args(["policy", pkg]))?;
    Ok(parse_apt_versions(&text))
}

fn parse_apt_versions(policy: &str) -> Vec<String> {
    let table = policy.split("Version table:").nth(1).unwrap_or("");
    table
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().filter(|t| *t != "***").collect();
            match t.as_slice() {
                [v, prio] if v.parse::<i64>().is_err() && prio.parse::<i64>().is_ok() => {
                    Some(v.to_string())
                }
                _ => None,
            }
        })
        .collect()
}

/// Installs QEMU 7.2 and the Xen 4.17 hypervisor from Debian if they are
/// missing. Idempotent; needs root (apt-get) only when something is missing.
pub fn ensure_xen_tools() -> Result<()> {
    // One installer at a time in this process (tests boot from several
    // threads; concurrent apt-get runs fight over apt's locks).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if have_command("qemu-system-x86_64") && Path::new(XEN_GZ).is_file() {
        return Ok(());
    }
    eprintln!("xen-boot: installing qemu-system-x86 and xen-hypervisor-4.17-amd64");
    if apt_candidate("qemu-system-x86")?.is_none() {
        output(Command::new("apt-get").args(["update", "-q"]))?;
    }
    let qemu = apt_candidate("qemu-system-x86")?
        .ok_or_else(|| anyhow!("apt has no qemu-system-x86 (is this Debian 12?)"))?;
    // The backported qemu-utils conflicts with QEMU 7.2: pin it to the
    // version matching qemu-system-x86, as `apt-cache policy` lists it.
    let utils = apt_versions("qemu-utils")?;
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "-o",
        "DPkg::Lock::Timeout=600",
        "--no-install-recommends",
        "--allow-downgrades",
        "qemu-system-x86",
        "xen-hypervisor-4.17-amd64",
    ]);
    if utils.contains(&qemu) {
        cmd.arg(format!("qemu-utils={qemu}"));
    }
    let mut status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        // Stale package lists name versions the mirror no longer has.
        output(Command::new("apt-get").args(["update", "-q"]))?;
        status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    }
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    if !have_command("qemu-system-x86_64") || !Path::new(XEN_GZ).is_file() {
        bail!("installed, but qemu-system-x86_64 or {XEN_GZ} is still missing");
    }
    Ok(())
}

/// Unpacks the multiboot Xen ELF (`zcat /boot/xen-4.17-amd64.gz`) into the
/// work directory, once.
pub fn xen_elf() -> Result<PathBuf> {
    let dir = work_dir();
    fs::create_dir_all(&dir)?;
    let out = dir.join("xen-4.17");
    let fresh = match (fs::metadata(&out), fs::metadata(XEN_GZ)) {
        (Ok(o), Ok(g)) => o.modified()? >= g.modified()? && o.len() > 0,
        _ => false,
    };
    if !fresh {
        let bytes = Command::new("zcat")
            .arg(XEN_GZ)
            .output()
            .context("running zcat")?;
        if !bytes.status.success() || bytes.stdout.is_empty() {
            bail!(
                "zcat {XEN_GZ} failed: {}",
                String::from_utf8_lossy(&bytes.stderr)
            );
        }
        // A private temporary name: concurrent callers each write a whole
        // file and rename it into place atomically.
        static TMP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("xen-4.17.tmp-{}-{n}", std::process::id()));
        fs::write(&tmp, &bytes.stdout)?;
        fs::rename(&tmp, &out)?;
    }
    Ok(out)
}

/// Builds image binary `bin` (package `windsor-<bin>`, by convention) for
/// `x86_64-unknown-none` and returns its path.
pub fn build_image(bin: &str) -> Result<PathBuf> {
    let mut v = build_images(&[bin])?;
    Ok(v.remove(0))
}

/// Builds several image binaries in one cargo run; returns their paths in
/// the order given.
///
/// Packages are named explicitly so that features are resolved for the
/// images alone (the host crates enable `std` features the images must not
/// get). Release, `panic = "abort"`, no debug info (smaller boot bundles).
pub fn build_images(bins: &[&str]) -> Result<Vec<PathBuf>> {
    let target_dir = work_dir().join("cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "x86_64-unknown-none",
        ]);
    for bin in bins {
        cmd.args(["--package", &format!("windsor-{bin}"), "--bin", bin]);
    }
    let status = cmd
        .args(["--config", "profile.release.panic=\"abort\""])
        .args(["--config", "profile.release.debug=0"])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("running cargo build for x86_64-unknown-none")?;
    if !status.success() {
        bail!("building images {bins:?} for x86_64-unknown-none failed: {status}");
    }
    Ok(bins
        .iter()
        .map(|b| target_dir.join("x86_64-unknown-none/release").join(b))
        .collect())
}

/// A path as given, or an image binary name built on the fly.
fn resolve_image(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if spec.contains('/') {
        bail!("image {spec}: no such file");
    }
    build_image(spec)
}

/// Checks that `bytes` is an x86_64 ELF that Xen can start as PVH: the
/// same check the Xen-mode builder makes (`windsor_unikernel::elf`): a
/// `PT_NOTE` with `XEN_ELFNOTE_PHYS32_ENTRY`, sane `PT_LOAD` segments.
/// Returns the 32-bit entry address.
pub fn check_pvh_image(bytes: &[u8]) -> Result<u32> {
    match windsor_unikernel::elf::PvhImage::parse(bytes) {
        Ok(img) => Ok(img.entry),
        Err(e) => bail!("{e}: Xen cannot start it as a PVH kernel"),
    }
}

/// File names, in the images directory, of the Linux guest files that
/// [`linux_guest_files`] makes: Debian's kernel as packaged (a bzImage)
/// and the test initramfs.
pub const LINUX_KERNEL: &str = "debian-vmlinuz";
/// See [`LINUX_KERNEL`].
pub const LINUX_INITRAMFS: &str = "linux-test-initramfs.cpio";
/// The line the test initramfs's init prints on its console once it runs
/// (a host description's `ready_console` for its Linux guests).
pub const LINUX_INIT_MARKER: &str = "WINDSOR-LINUX-INIT";
/// The Xen modules of the kernel package that go into the initramfs and
/// are loaded by its init (paths under `lib/modules/<version>/kernel/`).
const LINUX_MODULES: &[&str] = &[
    "drivers/net/xen-netfront.ko",
    "drivers/block/xen-blkfront.ko",
];
/// The file system modules of the `windsor.blk=fs` case (Debian builds
/// ext4, which also mounts the ext2 that busybox's `mke2fs` makes, as a
/// module; it asks the crypto API for crc32c at mount), in load order;
/// they go under `lib/modules/fs/` and only that case loads them.
const LINUX_FS_MODULES: &[&str] = &[
    "lib/crc16.ko",
    "crypto/crc32c_generic.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

/// The test initramfs's `/init` (busybox sh): reports on the console,
/// then waits for the toolstack's shutdown request, which Linux's xenbus
/// handler turns into `/sbin/poweroff` or `/sbin/reboot` (wrappers below).
///
/// With `windsor.net=<ip>/<len>[,serve:<port>][,ping:<ip>][,echo:<ip>:<port>:<bytes>]`
/// on the kernel command line (the toolstack gave the guest a VIF), before
/// the ready line it brings `eth0` (xen-netfront) up with that address,
/// serves TCP echo on `serve` ports (busybox `nc -ll -e cat`), waits for
/// each `ping` peer to answer (at most ~150 s: peers boot at their own
/// pace) and pings it 5 times, and sends `<bytes>` random bytes to each
/// `echo` peer's TCP echo service, comparing what comes back. Each result
/// is one `WINDSOR-NET ...` console line.
const LINUX_INIT: &str = r#"#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 1 > /proc/sys/kernel/sysrq
mods=""
for m in /lib/modules/*.ko; do $b insmod "$m" && mods="$mods $($b basename "$m" .ko)"; done
case " $($b cat /proc/cmdline) " in
*" windsor.blk=fs "*)
    # The block device test, before the init line (dom0 acts on that line):
    # /dev/xvda is served by the blkback domain. A disk without a file
    # system: make one (ext2), write files of random bytes, record their
    # SHA-256 on the disk, time a 16 MiB write with fsync, unmount.
    # A disk with one (after a reboot): mount, check every file, time a
    # read of the 16 MiB file.
    # "<MB/s> MB/s (16 MiB in <s> s)" of a command moving 16 MiB.
    timed() {
        t0=$($b cut -d' ' -f1 /proc/uptime)
        "$@" 2>/dev/null
        t1=$($b cut -d' ' -f1 /proc/uptime)
        $b awk "BEGIN { d = $t1 - $t0; if (d < 0.01) d = 0.01; printf \"%.1f MB/s (16 MiB in %.2f s)\", 16.777216 / d, d }"
    }
    for m in crc16 crc32c_generic mbcache jbd2 ext4; do $b insmod /lib/modules/fs/$m.ko || echo "WINDSOR-BLK-FAIL insmod $m"; done
    i=0
    while [ ! -b /dev/xvda ] && [ $i -lt 600 ]; do $b sleep 0.1; i=$((i+1)); done
    $b mkdir -p /mnt
    if [ ! -b /dev/xvda ]; then
        echo "WINDSOR-BLK-FAIL no /dev/xvda after 60 s"
    elif $b mount -t ext4 /dev/xvda /mnt 2>/dev/null && [ -f /mnt/SHA256SUMS ]; then
        t=$(timed $b dd if=/mnt/big of=/dev/null bs=1M)
        if r=$(cd /mnt && $b sha256sum -c SHA256SUMS 2>&1); then
            echo "WINDSOR-BLK-VERIFIED $($b grep -c . /mnt/SHA256SUMS) files, sums $($b sha256sum /mnt/SHA256SUMS | $b cut -c1-16), read: $t"
        else
            echo "WINDSOR-BLK-FAIL verify: $r"
        fi
        $b umount /mnt
    else
        $b umount /mnt 2>/dev/null
        sectors=$($b blockdev --getsz /dev/xvda)
        $b mke2fs -F /dev/xvda >/dev/null
        if $b mount -t ext4 /dev/xvda /mnt; then
            for n in 1 2 3 4 5 6 7 8; do $b dd if=/dev/urandom of=/mnt/f$n bs=4k count=$((n * 16)) 2>/dev/null; done
            t=$(timed $b dd if=/dev/zero of=/mnt/big bs=1M count=16 conv=fsync)
            (cd /mnt && $b sha256sum f? big > SHA256SUMS)
            $b sync
            echo "WINDSOR-BLK-WRITTEN $($b grep -c . /mnt/SHA256SUMS) files, sums $($b sha256sum /mnt/SHA256SUMS | $b cut -c1-16), $sectors sectors, write+fsync: $t"
            $b umount /mnt
        else
            echo "WINDSOR-BLK-FAIL mount after mke2fs"
        fi
    fi
    ;;
esac
net=""
for w in $($b cat /proc/cmdline); do
    case "$w" in windsor.net=*) net="${w#windsor.net=}";; esac
done
if [ -n "$net" ]; then
    # windsor.net=<ip>/<len>[,serve:<port>][,ping:<ip>][,echo:<ip>:<port>:<bytes>]
    up() { $b cut -d' ' -f1 /proc/uptime; }
    ms() { $b awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
    $b mkdir -p /tmp
    $b ip link set lo up
    $b ip link set eth0 up
    $b ip addr add "${net%%,*}" dev eth0
    echo "WINDSOR-NET up: eth0 ${net%%,*} mac $($b cat /sys/class/net/eth0/address) mtu $($b cat /sys/class/net/eth0/mtu)"
    IFS=,
    set -- $net
    unset IFS
    shift
    for item; do
        case "$item" in serve:*)
            $b ln -sf busybox /bin/cat
            $b nc -ll -p "${item#serve:}" -e /bin/cat &
            echo "WINDSOR-NET serve: tcp echo on port ${item#serve:}";;
        esac
    done
    for item; do
        case "$item" in
        ping:*)
            peer="${item#ping:}"; n=0; t0=$(up)
            until $b ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
                n=$((n + 1)); [ $n -ge 150 ] && break
            done
            echo "WINDSOR-NET reach $peer: first answer after $(ms $t0 $(up)) ms"
            $b ping -c 5 "$peer" > /tmp/ping 2>&1
            rc=$?
            echo "WINDSOR-NET ping $peer: $($b tail -2 /tmp/ping | $b tr '\n' ' ')(exit $rc)";;
        echo:*)
            set -- $(echo "${item#echo:}" | $b tr ':' ' ')
            $b head -c "$3" /dev/urandom > /tmp/tx
            t0=$(up)
            $b timeout 120 $b nc -w 30 "$1" "$2" < /tmp/tx > /tmp/rx
            t=$(ms $t0 $(up))
            if $b cmp -s /tmp/tx /tmp/rx; then r=ok; else r="MISMATCH ($($b wc -c < /tmp/rx) bytes back)"; fi
            echo "WINDSOR-NET echo $1:$2: $3 bytes $r in $t ms";;
        esac
    done
fi
echo "WINDSOR-LINUX-INIT up: kernel $($b uname -r), $($b nproc) cpu(s), uptime $($b cut -d' ' -f1 /proc/uptime) s, rdtscp in cpuinfo: $($b grep -c -w rdtscp /proc/cpuinfo), modules:$mods"
case " $($b cat /proc/cmdline) " in
*" windsor.shutdown=ignore "*)
    # Misbehave for the tests: ignore the toolstack's shutdown requests.
    for c in poweroff reboot; do
        printf '#!/bin/busybox sh\necho "WINDSOR-LINUX-IGNORED $0"\n' > /sbin/$c
    done
    echo "WINDSOR-LINUX-WILL-IGNORE-SHUTDOWN"
    ;;
esac
case " $($b cat /proc/cmdline) " in
*" windsor.console=garbage "*)
    # Misbehave for the tests: point our console ring's out_prod (offset
    # 3084 of the page, the first reserved page at the end of RAM) far
    # past out_cons; the backend must disconnect this console only.
    # (Busybox has been seen to segfault in this pipeline under TCG: try
    # again.)
    page=""
    for try in 1 2 3; do
        [ -n "$page" ] && break
        page=$($b dmesg | $b grep 'BIOS-e820:' | $b grep reserved | $b tail -1 | $b sed 's/.*\[mem \(0x[0-9a-f]*\)-.*/\1/')
    done
    echo "WINDSOR-LINUX-GARBAGE: out_prod of the console page at $page := 0x7fff0000"
    # Let the backend read these lines first (under load it may be busy
    # with another guest's console).
    $b sleep 3
    $b devmem $(($page + 3084)) 32 0x7fff0000
    ;;
*" windsor.console=flood "*)
    # Misbehave for the tests: write numbered lines to the console as fast
    # as it takes them, for good; the backend must hold us to our rate.
    echo "WINDSOR-LINUX-FLOODING"
    (i=0; while :; do echo "WINDSOR-LINUX-FLOOD $i ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"; i=$((i+1)); done) &
    ;;
esac
while :; do $b sleep 3600; done
"#;

/// `/sbin/poweroff` and `/sbin/reboot`: what the kernel runs on
/// `control/shutdown`. `-f`: straight to the reboot system call (there is
/// no init system to signal).
const LINUX_POWEROFF: &str = "#!/bin/busybox sh\nexec /bin/busybox poweroff -f\n";
const LINUX_REBOOT: &str = "#!/bin/busybox sh\nexec /bin/busybox reboot -f\n";

/// Appends one `newc` cpio entry.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The test initramfs (uncompressed `newc` cpio): busybox-static, init and
/// its shutdown wrappers, `/dev/console`, and the kernel's Xen modules.
pub fn linux_initramfs<S: AsRef<str>>(busybox: &[u8], modules: &[(S, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 1;
    let mut add = |out: &mut Vec<u8>, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        cpio_entry(out, ino, name, mode, rdev, data);
        ino += 1;
    };
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib/modules",
        "lib/modules/fs",
    ] {
        add(&mut out, d, 0o040755, (0, 0), b"");
    }
    add(&mut out, "dev/console", 0o020600, (5, 1), b"");
    add(&mut out, "bin/busybox", 0o100755, (0, 0), busybox);
    add(&mut out, "bin/sh", 0o120777, (0, 0), b"busybox");
    add(&mut out, "init", 0o100755, (0, 0), LINUX_INIT.as_bytes());
    add(
        &mut out,
        "sbin/poweroff",
        0o100755,
        (0, 0),
        LINUX_POWEROFF.as_bytes(),
    );
    add(
        &mut out,
        "sbin/reboot",
        0o100755,
        (0, 0),
        LINUX_REBOOT.as_bytes(),
    );
    for (name, data) in modules {
        add(
            &mut out,
            &format!("lib/modules/{}", name.as_ref()),
            0o100644,
            (0, 0),
            data,
        );
    }
    cpio_entry(&mut out, 0, "TRAILER!!!", 0, (0, 0), b"");
    out
}

/// Downloads (once, cached under `<target>/xen-boot/debian`) Debian's
/// kernel package (`linux-image-amd64`'s dependency, `linux-image-6.1.0-*-amd64`)
/// and `busybox-static` with `apt-get download`, unpacks them with
/// `dpkg-deb -x` (nothing is installed), and writes [`LINUX_KERNEL`] (the
/// package's `/boot/vmlinuz-*`, unchanged) and [`LINUX_INITRAMFS`] into
/// `images_dir`.
pub fn linux_guest_files(images_dir: &Path) -> Result<()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = work_dir().join("debian");
    let root = cache.join("root");
    let done = cache.join(".unpacked");
    if !done.is_file() {
        fs::create_dir_all(&cache)?;
        let kernel_pkg = || -> Result<Option<String>> {
            let deps = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
            Ok(deps
                .split_whitespace()
                .find(|w| w.starts_with("linux-image-6.") && w.ends_with("-amd64"))
                .map(str::to_string))
        };
        let download = |pkg: &str| -> Result<()> {
            for p in [pkg, "busybox-static"] {
                output(
                    Command::new("apt-get")
                        .current_dir(&cache)
                        .args(["download", "-q", p]),
                )
                .with_context(|| format!("downloading Debian package {p}"))?;
            }
            Ok(())
        };
        let pkg = kernel_pkg().ok().flatten();
        let pkg = match pkg.map(|p| download(&p).map(|()| p)) {
            Some(Ok(p)) => p,
            // No package lists yet, or stale ones naming a version the
            // mirror no longer has: refresh them once.
            _ => {
                output(Command::new("apt-get").args(["update", "-q"]))?;
                let p = kernel_pkg()?.ok_or_else(|| anyhow!("apt knows no linux-image-amd64"))?;
                download(&p)?;
                p
            }
        };
        let _ = fs::remove_dir_all(&root);
        for deb in fs::read_dir(&cache)? {
            let deb = deb?.path();
            if deb.extension().is_some_and(|e| e == "deb") {
                output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
                fs::remove_file(&deb)?;
            }
        }
        fs::write(&done, pkg)?;
    }
    let vmlinuz = fs::read_dir(root.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| anyhow!("no /boot/vmlinuz-* in the kernel package"))?;
    let version = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    let kdir = root.join("lib/modules").join(&version).join("kernel");
    let mut modules = Vec::new();
    for m in LINUX_MODULES {
        let data = fs::read(kdir.join(m)).with_context(|| format!("module {m}"))?;
        let name = m.rsplit('/').next().unwrap_or(m);
        modules.push((name.to_string(), data));
    }
    for m in LINUX_FS_MODULES {
        let data = fs::read(kdir.join(m)).with_context(|| format!("module {m}"))?;
        let name = m.rsplit('/').next().unwrap_or(m);
        modules.push((format!("fs/{name}"), data));
    }
    let busybox = fs::read(root.join("bin/busybox")).context("busybox-static's /bin/busybox")?;
    fs::create_dir_all(images_dir)?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = images_dir.join(format!(".{name}-{}-{n}", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, images_dir.join(name))?;
        Ok(())
    };
    write(LINUX_KERNEL, &fs::read(&vmlinuz)?)?;
    write(LINUX_INITRAMFS, &linux_initramfs(&busybox, &modules))?;
    Ok(())
}

/// Kills QEMU when dropped, whatever happened.
pub(crate) struct Qemu(pub(crate) Child);

impl Qemu {
    /// QEMU's stdout and stderr, line by line, each read by a thread of
    /// its own; `None` when one of the two streams ends.
    pub(crate) fn lines(&mut self) -> mpsc::Receiver<Option<String>> {
        let (tx, rx) = mpsc::channel::<Option<String>>();
        for stream in [
            self.0
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            self.0
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf)
                                .trim_end_matches(['\r', '\n'])
                                .to_string();
                            if tx.send(Some(line)).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(None);
            });
        }
        rx
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_ms(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

fn failure(what: &str, log: &Path, tail: &VecDeque<String>) -> anyhow::Error {
    let mut msg = format!(
        "xen-boot failed: {what}\n--- last serial lines ({}) ---\n",
        log.display()
    );
    for l in tail {
        msg.push_str(l);
        msg.push('\n');
    }
    anyhow!(msg)
}

/// Boots Xen with the images of `args` (or the host of `--config`) and
/// watches the serial log (see the module doc for what counts as success).
pub fn boot(args: &XenBootArgs) -> Result<BootReport> {
    let Some(image) = &args.image else {
        let config = args
            .config
            .clone()
            .unwrap_or_else(|| workspace_root().join(DEFAULT_CONFIG));
        return boot_host(args, &config);
    };
    if args.modules.len() > 1 {
        bail!(
            "{} modules given, but Xen 4.17 hands a PVH dom0 only its first module \
             (\"Multiple initrd candidates, picking module #1\"): bundle the images into one",
            args.modules.len()
        );
    }
    let mut images = vec![resolve_image(image)?];
    for m in &args.modules {
        images.push(resolve_image(m)?);
    }
    let machine = Machine {
        xen_cmdline: XEN_CMDLINE.into(),
        memory_mib: 1024,
        smp: 1,
        timeout: args.timeout.unwrap_or(60),
    };
    run_qemu(args, &images, &machine)
}

/// Builds the images a host description names, renders its bundle, boots.
fn boot_host(args: &XenBootArgs, config: &Path) -> Result<BootReport> {
    let (images, machine, bundle_path) = prepare_host(args, config)?;
    let r = run_qemu(args, &images, &machine);
    let _ = fs::remove_file(&bundle_path);
    r
}

/// Builds the images a host description names and renders its bundle:
/// the QEMU images (dom0, the bundle), the machine, and the bundle's path
/// (the caller removes it once QEMU has read it).
pub(crate) fn prepare_host(
    args: &XenBootArgs,
    config: &Path,
) -> Result<(Vec<PathBuf>, Machine, PathBuf)> {
    let host = windsor_boot_config::load(config).map_err(|e| anyhow!("{e}"))?;
    let dir = args
        .images_dir
        .clone()
        .unwrap_or_else(|| work_dir().join("images"));
    fs::create_dir_all(&dir)?;
    let mut bins: Vec<&str> = Vec::new();
    for i in host.images() {
        if let Some(b) = image_binary(&i.path) {
            if !bins.contains(&b) {
                bins.push(b);
            }
        }
    }
    let built = build_images(&bins)?;
    if host
        .images()
        .any(|i| i.path == LINUX_KERNEL || i.path == LINUX_INITRAMFS)
    {
        linux_guest_files(&dir)?;
    }
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for i in host.images() {
        let Some(b) = image_binary(&i.path) else {
            continue;
        };
        let from = &built[bins.iter().position(|x| *x == b).expect("built above")];
        let to = dir.join(&i.path);
        // Copy, then rename into place: parallel boots never see half a file.
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".copy-{}-{n}", std::process::id()));
        fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
        fs::rename(&tmp, &to)?;
    }
    host.check_images(&dir).map_err(|e| anyhow!("{e}"))?;
    let bundle = windsor_boot_config::render::bundle(&host, &dir).map_err(|e| anyhow!("{e}"))?;
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bundle_path = work_dir().join(format!("host-{}-{n}.bundle", std::process::id()));
    fs::write(&bundle_path, &bundle)?;
    let images = vec![dir.join(&host.dom0_image.path), bundle_path.clone()];
    let machine = Machine {
        xen_cmdline: windsor_boot_config::render::xen_cmdline(&host).to_string(),
        memory_mib: host.qemu.memory_mib,
        smp: host.qemu.smp,
        timeout: args
            .timeout
            .unwrap_or_else(|| host.qemu.timeout_secs.into()),
    };
    if !args.quiet {
        println!(
            "xen-boot: host {:?} from {}: bundle {} KiB ({} entries) at {}",
            host.name,
            config.display(),
            bundle.len() / 1024,
            host.plan().images().len() + 1,
            bundle_path.display()
        );
    }
    Ok((images, machine, bundle_path))
}

/// QEMU's `-initrd` list: dom0 (with its command line), then its module.
pub(crate) fn initrd_arg(args: &XenBootArgs, images: &[PathBuf]) -> Result<String> {
    let mut initrd = String::new();
    for (i, img) in images.iter().enumerate() {
        let s = img
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 path {}", img.display()))?;
        if s.contains(',') || s.contains(' ') {
            bail!("image path {s} contains ',' or ' ' (QEMU's -initrd separators)");
        }
        if i > 0 {
            initrd.push(',');
        }
        initrd.push_str(s);
        if i == 0 && !args.cmdline.is_empty() {
            if args.cmdline.contains(',') {
                bail!("dom0 command line must not contain ','");
            }
            initrd.push(' ');
            initrd.push_str(&args.cmdline);
        }
    }
    Ok(initrd)
}

/// Runs QEMU with dom0 `images[0]` and its module `images[1]`.
fn run_qemu(args: &XenBootArgs, images: &[PathBuf], machine: &Machine) -> Result<BootReport> {
    let dom0 = fs::read(&images[0]).with_context(|| format!("reading {}", images[0].display()))?;
    if !args.no_check {
        check_pvh_image(&dom0)
            .with_context(|| format!("dom0 image {} rejected", images[0].display()))?;
    }
    ensure_xen_tools()?;
    let xen = xen_elf()?;
    let initrd = initrd_arg(args, images)?;

    let dir = work_dir();
    fs::create_dir_all(&dir)?;
    static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_path = dir.join(format!("serial-{}-{n}.log", std::process::id()));
    let mut log = File::create(&log_path)?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(machine.timeout);
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max"])
        .args(["-m", &machine.memory_mib.to_string()])
        .args(["-smp", &machine.smp.to_string()])
        .args([
            "-display",
            "none",
            "-vga",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .args(["-serial", "stdio", "-parallel", "none"])
        .arg("-kernel")
        .arg(&xen)
        .args([
            "-append",
            &format!("{} {QEMU_XEN_OPTIONS}", machine.xen_cmdline),
        ])
        .args(["-initrd", &initrd])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut qemu = Qemu(child);

    let rx = qemu.lines();

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut lines = Vec::new();
    let mut ready: Option<(String, Duration)> = None;
    let mut failed_steps = None;
    let mut open_streams = 2;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(failure(
                &format!(
                    "timed out after {} s (ready marker {})",
                    machine.timeout,
                    if ready.is_some() {
                        "seen, no poweroff"
                    } else {
                        "never seen"
                    }
                ),
                &log_path,
                &tail,
            ));
        }
        let line = match rx.recv_timeout(deadline - now) {
            Ok(Some(l)) => l,
            Ok(None) => {
                open_streams -= 1;
                if open_streams == 0 {
                    let status = qemu.0.wait()?;
                    return Err(failure(
                        &format!("QEMU exited ({status})"),
                        &log_path,
                        &tail,
                    ));
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(failure("QEMU output closed", &log_path, &tail));
            }
        };
        if !args.quiet {
            println!("{line}");
        }
        writeln!(log, "{line}")?;
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        lines.push(line.clone());

        // Only dom0 writes unprefixed lines (console_io); guests' lines
        // start with `(dN)` and Xen's with `(XEN)`, so neither can fake the
        // marker, and a guest's words cannot fake Xen's verdicts.
        if line.starts_with(READY_MARKER) && ready.is_none() {
            ready = Some((line.clone(), started.elapsed()));
        }
        if line.starts_with(DONE_MARKER) && failed_steps.is_none() {
            failed_steps = parse_ms(&line, "failed=").map(|v| v as u32);
        }
        let xen_says = |what: &str| line.starts_with("(XEN)") && line.contains(what);
        if xen_says("Panic on CPU") || xen_says("Dom0 crashed") || xen_says("rebooting machine") {
            // Give Xen a moment to print the rest of the panic message.
            let until = Instant::now() + Duration::from_millis(300);
            while let Ok(Some(l)) = rx.recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                writeln!(log, "{l}")?;
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(l);
            }
            return Err(failure(
                &format!("Xen reported: {}", line.trim()),
                &log_path,
                &tail,
            ));
        }
        if xen_says("Dom0 halted: halting machine") {
            let Some((ready_line, wall_to_ready)) = ready else {
                return Err(failure(
                    "dom0 halted before the ready marker",
                    &log_path,
                    &tail,
                ));
            };
            let report = BootReport {
                dom0_ms: parse_ms(&ready_line, "dom0="),
                xen_ms: parse_ms(&ready_line, "xen="),
                failed_steps,
                ready_line,
                wall_to_ready,
                wall_total: started.elapsed(),
                log_path,
                lines,
            };
            drop(qemu);
            return Ok(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_policy_version_table_parses() {
        let policy = "qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.example/debian bookworm/main amd64 Packages
";
        assert_eq!(
            parse_apt_versions(policy),
            ["1:10.0.2+ds-2+deb13u1~bpo12+1", "1:7.2+dfsg-7+deb12u18+b3"]
        );
    }

    #[test]
    fn initramfs_is_a_newc_archive_with_init_console_and_modules() {
        let a = linux_initramfs(b"BUSYBOX", &[("xen-netfront.ko", vec![1, 2, 3])]);
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        let (mut at, mut names) = (0, Vec::new());
        loop {
            let h = &a[at..at + 110];
            assert_eq!(&h[..6], b"070701", "header at {at}");
            let (mode, size, namesize) = (field(h, 1), field(h, 6) as usize, field(h, 11) as usize);
            let name = std::str::from_utf8(&a[at + 110..at + 110 + namesize - 1]).unwrap();
            let data_at = (at + 110 + namesize).next_multiple_of(4);
            let data = &a[data_at..data_at + size];
            match name {
                "dev/console" => assert_eq!((mode, field(h, 9), field(h, 10)), (0o020600, 5, 1)),
                "init" => assert!(data.starts_with(b"#!/bin/busybox sh") && mode == 0o100755),
                "bin/busybox" => assert_eq!(data, b"BUSYBOX"),
                "lib/modules/xen-netfront.ko" => assert_eq!(data, [1, 2, 3]),
                _ => {}
            }
            names.push(name.to_string());
            at = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                break;
            }
        }
        assert_eq!(at, a.len());
        for n in [
            "init",
            "dev/console",
            "sbin/poweroff",
            "sbin/reboot",
            "lib/modules/xen-netfront.ko",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
        }
    }

    #[test]
    fn ready_line_fields_parse() {
        let l = "WINDSOR-READY dom0=55.702 ms xen=1030 ms";
        assert_eq!(parse_ms(l, "dom0="), Some(55.702));
        assert_eq!(parse_ms(l, "xen="), Some(1030.0));
        assert_eq!(parse_ms(l, "nope="), None);
        let done = "WINDSOR-DONE failed=2 (1234.5 ms since dom0 start)";
        assert_eq!(parse_ms(done, "failed="), Some(2.0));
    }

    #[test]
    fn non_elf_and_empty_images_are_refused() {
        let err = check_pvh_image(b"MZ not an elf").unwrap_err().to_string();
        assert!(err.contains("not an ELF"), "{err}");
        // A minimal ELF64 x86_64 header with no program headers. (An image
        // with segments but no note: `image_without_pvh_note_…` in
        // tests/tests/xen_mode.rs.)
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        elf[54] = 56;
        let err = check_pvh_image(&elf).unwrap_err().to_string();
        assert!(err.contains("no PT_LOAD segment"), "{err}");
    }
}
