//! Test-only crate: Windsor's `vchan` against Xen's own compiled
//! `libxenvchan`, both peers on the simulated hypervisor.
//!
//! There is no library here. `build.rs` finds Debian's `libxenvchan.a`
//! (package `libxen-dev`) and links it into this crate's tests only, so
//! `cargo build` works on a machine without it; `tests/libxenvchan.rs`
//! holds the tests and explains the set-up.
