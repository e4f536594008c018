//! `cargo xtask fuzz`, and the fuzz step of `cargo xtask test`: every
//! cargo-fuzz target of the repository, a fixed time each, on the stable
//! toolchain.
//!
//! * Discovery: every directory named `fuzz` (at any depth; not under
//!   `target/`, `node_modules/` or hidden directories) whose `Cargo.toml`
//!   says `cargo-fuzz = true`; its targets are the `[[bin]]`s of that
//!   manifest. A crate added later (netback, blkback, ...) is picked up
//!   with nothing to register.
//! * Build: `cargo build --release --target <host>` of each such crate into
//!   one shared `target/fuzz` (the crates are outside the workspace, each
//!   its own `[workspace]`; a missing `Cargo.lock` is seeded from the
//!   workspace's so they build the same dependency versions, and the
//!   shared target dir compiles each of those once). The coverage
//!   instrumentation libFuzzer needs is asked for with stable `-C` flags
//!   (the sanitizer-coverage pass and its options, as cargo-fuzz passes
//!   them) plus `--cfg fuzzing`, debug assertions and overflow checks; no
//!   sanitizer, so no nightly and nothing to install beyond a C++ compiler
//!   for libFuzzer itself. `--target` keeps the flags off build scripts
//!   and proc macros.
//! * Run: each target for its share of the time budget on its checked-in
//!   corpus (`corpus/<target>/`, read only) plus a scratch directory for
//!   what it finds; a crash, a timeout (10 s per input) or a memory blow-up
//!   (2 GB) fails the step, and the input is left in
//!   `target/fuzz/artifacts/<crate>/<target>-*` to reproduce it:
//!   `target/fuzz/x86_64-unknown-linux-gnu/release/<target> <that file>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::xen_boot::workspace_root;

/// The coverage instrumentation of libFuzzer, as stable codegen flags.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// Run time of all targets together when nothing says otherwise; each
/// target gets an equal share, at least [`MIN_PER_TARGET`].
pub const DEFAULT_TOTAL: Duration = Duration::from_secs(60);
const MIN_PER_TARGET: Duration = Duration::from_secs(2);

/// A cargo-fuzz crate and its targets.
#[derive(Debug)]
pub struct FuzzCrate {
    pub dir: PathBuf,
    pub targets: Vec<String>,
}

/// Every cargo-fuzz crate under `root`, in path order.
pub fn discover(root: &Path) -> Result<Vec<FuzzCrate>> {
    let mut found = Vec::new();
    walk(root, 0, &mut found)?;
    found.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(found)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<FuzzCrate>) -> Result<()> {
    if depth > 6 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        if name == "fuzz" {
            let manifest = path.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&manifest) {
                if text.contains("cargo-fuzz = true") {
                    let targets = bins(&text);
                    if targets.is_empty() {
                        bail!("{} declares no [[bin]] target", manifest.display());
                    }
                    found.push(FuzzCrate { dir: path, targets });
                    continue;
                }
            }
        }
        walk(&path, depth + 1, found)?;
    }
    Ok(())
}

/// The `name`s of the `[[bin]]` sections of a manifest.
fn bins(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if in_bin {
            if let Some(v) = line.strip_prefix("name").map(str::trim_start) {
                if let Some(v) = v.strip_prefix('=') {
                    names.push(v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    names
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("no host triple in rustc -vV")
}

/// Builds every fuzz crate, then runs every target; `total` is the run
/// time of all targets together.
pub fn run(total: Duration) -> Result<()> {
    let root = workspace_root();
    let crates = discover(&root)?;
    let n: usize = crates.iter().map(|c| c.targets.len()).sum();
    if n == 0 {
        bail!("no cargo-fuzz crate found under {}", root.display());
    }
    let per = (total / n as u32).max(MIN_PER_TARGET);
    let triple = host_triple()?;
    let target_dir = root.join("target/fuzz");
    let t0 = Instant::now();
    for c in &crates {
        let lock = c.dir.join("Cargo.lock");
        if !lock.exists() {
            std::fs::copy(root.join("Cargo.lock"), &lock)
                .with_context(|| format!("seeding {}", lock.display()))?;
        }
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .env("RUSTFLAGS", RUSTFLAGS)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["build", "--release", "--bins", "--target", &triple])
            .arg("--manifest-path")
            .arg(lock.with_file_name("Cargo.toml"));
        crate::step(
            &format!("build fuzz targets of {}", rel(&root, &c.dir)),
            build,
        )?;
    }
    eprintln!(
        "fuzz: {} crates built in {:.1} s; {n} targets, {} s each",
        crates.len(),
        t0.elapsed().as_secs_f64(),
        per.as_secs()
    );
    let bin_dir = target_dir.join(&triple).join("release");
    let mut failed = Vec::new();
    for c in &crates {
        let name = rel(&root, &c.dir);
        let artifacts = target_dir.join("artifacts").join(name.replace('/', "-"));
        std::fs::create_dir_all(&artifacts)?;
        for t in &c.targets {
            let scratch = target_dir
                .join("corpus")
                .join(name.replace('/', "-"))
                .join(t);
            std::fs::create_dir_all(&scratch)?;
            let seeds = c.dir.join("corpus").join(t);
            let mut cmd = Command::new(bin_dir.join(t));
            cmd.arg(format!("-max_total_time={}", per.as_secs()))
                .arg("-timeout=10")
                .arg("-rss_limit_mb=2048")
                .arg("-print_final_stats=1")
                .arg(format!("-artifact_prefix={}/{t}-", artifacts.display()))
                .arg(&scratch);
            if seeds.is_dir() {
                cmd.arg(&seeds);
            }
            if let Err(e) = crate::step(&format!("fuzz {name} {t}"), cmd) {
                eprintln!("{e}: the input is in {}", artifacts.display());
                failed.push(format!("{name}/{t}"));
            }
        }
    }
    eprintln!(
        "fuzz: build and {n} targets in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

fn rel(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_read_from_the_manifest() {
        let m = "[package]\nname = \"x-fuzz\"\n[package.metadata]\ncargo-fuzz = true\n\
                 [[bin]]\nname = \"a\"\npath = \"fuzz_targets/a.rs\"\n\
                 [dependencies]\nname = \"not-a-bin\"\n[[bin]]\nname=\"b\"\n";
        assert_eq!(bins(m), ["a", "b"]);
    }

    #[test]
    fn every_fuzz_crate_of_the_repository_is_found() {
        let crates = discover(&workspace_root()).expect("discover");
        let names: Vec<String> = crates
            .iter()
            .flat_map(|c| c.targets.iter().cloned())
            .collect();
        for t in [
            "wire_decoder",
            "store_requests",
            "dispatch",
            "host_toml",
            "ring_hostile_peer",
        ] {
            assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
        }
        assert!(crates.iter().all(|c| c.dir.ends_with("fuzz")), "{crates:?}");
    }
}
