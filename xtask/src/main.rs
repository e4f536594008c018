//! `cargo xtask <task>`: Windsor's build, test, benchmark and QEMU tasks.
//!
//! * `test`: the project's one test command. It installs what the tests
//!   need (the `x86_64-unknown-none` target, Debian's Xen client tools and
//!   headers, QEMU and the Xen hypervisor, the Python and npm clients), then
//!   runs `cargo fmt --check`, clippy with warnings denied, the `no_std`
//!   builds for `x86_64-unknown-none`, every test of the workspace (host
//!   mode, real-client interop, Xen-mode boots under QEMU), the loom
//!   models and every cargo-fuzz target for a fixed time (see [`fuzz`]).
//!   CI (`.ci/run`) calls exactly this.
//! * `fuzz`: only the fuzz step (`--secs N`: run time of all targets).
//! * `bench`: runs the benchmark binaries and prints their JSON lines
//!   (`{"name","value","unit","baseline","ratio"}`), one per line.
//! * `xen-boot`: boots Windsor images on Xen 4.17 under QEMU.
//! * `setup`: only the installation part of `test`.

mod fuzz;
mod setup;
// Shared with `tests/tests/xen_mode.rs` (included there by path), which
// reads the parts of the boot report this binary does not print.
#[allow(dead_code)]
mod xen_boot;
#[allow(dead_code)]
mod xen_up;

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Windsor's build, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything, then run every check and test (what CI runs).
    Test(TestArgs),
    /// Install the toolchain target, packages and clients the tests need.
    Setup,
    /// Run the benchmarks and print JSON lines.
    Bench(BenchArgs),
    /// Boot Windsor images on Xen 4.17 under QEMU.
    XenBoot(xen_boot::XenBootArgs),
    /// Boot a Windsor host in Xen mode under QEMU that stays up and serves
    /// the XenAPI on 127.0.0.1:PORT.
    XenUp(xen_up::XenUpArgs),
    /// Build and run every cargo-fuzz target for a fixed time (stable).
    Fuzz(FuzzArgs),
}

#[derive(clap::Args)]
struct FuzzArgs {
    /// Run time of all targets together, in seconds (split evenly).
    #[arg(long, default_value_t = fuzz::DEFAULT_TOTAL.as_secs())]
    secs: u64,
}

#[derive(clap::Args)]
struct TestArgs {
    /// Skip installing packages (they are already there).
    #[arg(long)]
    no_setup: bool,
    /// Skip the format, clippy and no_std build checks.
    #[arg(long)]
    no_lint: bool,
    /// Skip the loom models.
    #[arg(long)]
    no_loom: bool,
    /// Skip the fuzz targets.
    #[arg(long)]
    no_fuzz: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Only benchmarks whose package or bench name contains this.
    filter: Option<String>,
}

/// `no_std` crates that must build for the unikernel target (with default
/// features off: `std` is a default feature of some of them).
const NO_STD_CRATES: &[&str] = &[
    "xen",
    "vchan",
    "windsor-xenstore",
    "windsor-xenstore-client",
    "windsor-netback",
    "windsor-control",
    "windsor-netfront",
    "windsor-blkback",
    "windsor-blkfront",
    "windsor-toolstack",
    "windsor-boot-config",
    "windsor-api",
    "windsor-console",
];

/// Benchmarks: (package, bench target). Each prints JSON lines.
const BENCHES: &[(&str, &str)] = &[
    ("vchan", "vchan"),
    ("windsor-netback", "netback"),
    ("windsor-xenstore", "xenstored"),
    ("windsor-xenstore-replication", "pool_vs_etcd"),
    ("windsor-toolstack", "lifecycle"),
    ("windsor-api", "api_lifecycle"),
    ("windsor", "up_vm_start"),
    ("windsor-blkback", "blkback"),
    ("windsor-tests", "xen_host"),
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Test(args) => test(args),
        Task::Setup => setup::all(),
        Task::Bench(args) => bench(args),
        Task::XenBoot(args) => xen_boot::run(args),
        Task::XenUp(args) => xen_up::run(args),
        Task::Fuzz(args) => fuzz::run(std::time::Duration::from_secs(args.secs)),
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a step, timing it; fails the task on a non-zero exit.
fn step(name: &str, mut cmd: Command) -> Result<()> {
    eprintln!("\n==> {name}\n    {cmd:?}");
    let t = Instant::now();
    let status = cmd
        .current_dir(xen_boot::workspace_root())
        .status()
        .with_context(|| format!("starting {name}"))?;
    eprintln!("<== {name}: {status} in {:.1} s", t.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn test(args: TestArgs) -> Result<()> {
    let t = Instant::now();
    if !args.no_setup {
        setup::all()?;
    }
    if !args.no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check"]);
        step("cargo fmt --check", fmt)?;

        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]);
        step("clippy", clippy)?;

        let mut nostd = cargo();
        nostd.args([
            "build",
            "--target",
            "x86_64-unknown-none",
            "--no-default-features",
        ]);
        for krate in NO_STD_CRATES {
            nostd.args(["-p", krate]);
        }
        step("no_std cores for x86_64-unknown-none", nostd)?;

        // The unikernel and its images, as they are built for Xen.
        let mut images = cargo();
        images.args([
            "clippy",
            "--target",
            "x86_64-unknown-none",
            "--release",
            "--config",
            "profile.release.panic=\"abort\"",
            "-p",
            "windsor-unikernel",
        ]);
        for name in unikernel_images()? {
            images.args(["-p", &name]);
        }
        images.args(["--", "-D", "warnings"]);
        step(
            "clippy of the unikernel images (x86_64-unknown-none)",
            images,
        )?;
    }

    let mut tests = cargo();
    tests.args(["test", "--workspace", "--all-features"]);
    step("workspace tests", tests)?;

    if !args.no_loom {
        // The loom models get their own target dir: `--cfg loom` rebuilds
        // every dependency, which must not invalidate the normal build.
        let mut loom = cargo();
        let target = xen_boot::workspace_root().join("target/loom");
        loom.env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "3")
            .env("CARGO_TARGET_DIR", target)
            .args([
                "test",
                "-p",
                "vchan",
                "-p",
                "windsor-netback",
                "--release",
                "--test",
                "loom",
            ]);
        step("loom models (vchan ring, netback ring)", loom)?;
    }
    if !args.no_fuzz {
        let secs = std::env::var("WINDSOR_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(fuzz::DEFAULT_TOTAL, std::time::Duration::from_secs);
        fuzz::run(secs)?;
    }
    eprintln!("\nall checks passed in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Package names of the images under `unikernel/images/`.
fn unikernel_images() -> Result<Vec<String>> {
    let dir = xen_boot::workspace_root().join("unikernel/images");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .with_context(|| format!("no package name in {}", manifest.display()))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

fn bench(args: BenchArgs) -> Result<()> {
    for (pkg, name) in BENCHES {
        if let Some(f) = &args.filter {
            if !pkg.contains(f.as_str()) && !name.contains(f.as_str()) {
                continue;
            }
        }
        let manifest = xen_boot::workspace_root();
        let mut c = cargo();
        c.current_dir(&manifest)
            .args(["bench", "-q", "-p", pkg, "--bench", name]);
        eprintln!("==> {c:?}");
        let out = c
            .output()
            .with_context(|| format!("running bench {pkg}/{name}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Benches print JSON lines on stdout; anything else goes to stderr.
        for line in stdout.lines().filter(|l| l.trim_start().starts_with('{')) {
            println!("{line}");
        }
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            bail!("bench {pkg}/{name} failed ({})", out.status);
        }
    }
    Ok(())
}
