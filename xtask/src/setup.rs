//! Installs what the tests need on a fresh Debian 12 machine. Idempotent:
//! each step checks first and does nothing when its part is there.
//!
//! | what | why |
//! |---|---|
//! | rustup target `x86_64-unknown-none` | the `no_std` cores and unikernel images |
//! | `fio`, `qemu-utils` | blkback: the reference of its benchmarks; `qemu-img` creates and checks qcow2 images in its tests |
//! | `libxen-dev` | the C layout test of `xen::abi`; `vchan-interop` links the real `libxenvchan.a`; `xs-load` links libxenstore |
//! | `xenstore-utils`, `xen-utils-4.17` | real xenstore clients and Xen's `test-xenstore` |
//! | `g++` | libFuzzer, built by `libfuzzer-sys` for the fuzz step (no cargo-fuzz, no nightly: see `fuzz.rs`) |
//! | `qemu-system-x86`, `xen-hypervisor-4.17-amd64` | Xen-mode boots (see `xen_boot::ensure_xen_tools`) |
//! | `etcd-server` | the reference of the `/pool` replication benchmark (`pool_vs_etcd`) |
//! | `iproute2`, `iputils-ping` | network namespaces: the `/pool` partition test; netback's TAP-uplink test (a namespace pings and connects to a guest) |
//! | PyPI `pyxs`, `XenAPI` | real Python clients of the xenstore and the lifecycle API |
//! | PyPI `ansible` | Ansible's `community.general.xenserver_*` modules against `windsor up` |
//! | npm `xen-api` (`api/tests/node/package.json`) | the real JavaScript client of the lifecycle API |

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::xen_boot;

/// Debian packages the tests use (QEMU and Xen come from `ensure_xen_tools`).
const DEBIAN: &[&str] = &[
    "libxen-dev",
    "xenstore-utils",
    "xen-utils-4.17",
    "fio",
    "qemu-utils",
    "etcd-server",
    "iproute2",
    "iputils-ping",
    "g++",
];
/// Python modules: (import name, pip name).
const PYTHON: &[(&str, &str)] = &[
    ("pyxs", "pyxs"),
    ("XenAPI", "XenAPI"),
    // Bundles community.general (its xenserver_* modules); Ansible's galaxy
    // server is not reachable here, PyPI is.
    ("ansible_collections.community.general", "ansible"),
];
/// npm projects of the tests, installed with `npm install --prefix DIR`.
const NPM_PROJECTS: &[&str] = &["api/tests/node"];

/// Everything, in order.
pub fn all() -> Result<()> {
    rust_target()?;
    debian()?;
    xen_boot::ensure_xen_tools()?;
    python()?;
    npm()?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("setup: {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn rust_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the x86_64-unknown-none target")?;
    if String::from_utf8_lossy(&out.stdout).contains("x86_64-unknown-none") {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "x86_64-unknown-none"]))
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn debian() -> Result<()> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=600",
            "--no-install-recommends",
        ])
        .args(&missing))
}

fn python() -> Result<()> {
    let missing: Vec<&str> = PYTHON
        .iter()
        .filter(|(module, _)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(|(_, pip)| *pip)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("python3")
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(&missing))
}

fn npm() -> Result<()> {
    for project in NPM_PROJECTS {
        let dir = xen_boot::workspace_root().join(project);
        if dir.join("node_modules").is_dir() {
            continue;
        }
        run(Command::new("npm")
            .arg("install")
            .args(["--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir))?;
    }
    Ok(())
}
