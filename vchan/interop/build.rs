//! Links Xen's `libxenvchan.a` into this package's integration tests only.
//!
//! The archive comes from Debian's `libxen-dev` (`cargo xtask test`
//! installs it) or from `$LIBXENVCHAN_A`. One thing is changed, in a copy
//! under `$OUT_DIR`: its single call of `munmap` (in `libxenvchan_close`,
//! which unmaps the separately granted ring pages itself, relying on the
//! gntalloc/gntdev drivers turning an `munmap` into "unshare"/"unmap") is
//! renamed to `windsor_shim_munmap`, so that the test's shim, which hands
//! out simulated-hypervisor memory instead of driver mappings, sees it.
//! Nothing else in the library is touched.
//!
//! When the archive (or `objcopy`) is missing, nothing is linked and the
//! cfg `libxenvchan` is not set: the crate still builds, and its test fails
//! saying how to get the library.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libxenvchan.a",
    "/usr/lib64/libxenvchan.a",
    "/usr/lib/libxenvchan.a",
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(libxenvchan)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=LIBXENVCHAN_A");
    println!("cargo::rerun-if-env-changed=OBJCOPY");
    let linux_x86 = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if !linux_x86 {
        return;
    }
    let found = match env::var_os("LIBXENVCHAN_A") {
        Some(p) => Some(PathBuf::from(p)),
        None => CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    let Some(src) = found.filter(|p| p.is_file()) else {
        // A missing path makes cargo re-run this script on every build, so
        // installing the library later is picked up.
        for c in CANDIDATES {
            println!("cargo::rerun-if-changed={c}");
        }
        return;
    };
    println!("cargo::rerun-if-changed={}", src.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("libxenvchan_windsor.a");
    let objcopy = env::var_os("OBJCOPY").unwrap_or_else(|| "objcopy".into());
    let status = Command::new(&objcopy)
        .arg("--redefine-sym=munmap=windsor_shim_munmap")
        .arg(&src)
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("cargo::rustc-link-arg-tests={}", out.display());
            println!("cargo::rustc-cfg=libxenvchan");
        }
        other => println!(
            "cargo::warning=cannot copy {} with {:?} ({other:?}): the libxenvchan interop test will fail",
            src.display(),
            objcopy
        ),
    }
}
