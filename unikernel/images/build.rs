//! Links every image with the unikernel's linker script (Xen mode only);
//! each image's `Cargo.toml` names this file as its `build` script.
//!
//! On the host target the binary is an empty `main`, linked normally.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::env::var("DEP_WINDSOR_UNIKERNEL_LINKER_SCRIPT")
            .expect("windsor-unikernel publishes its linker script");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        // Xen loads the image at its link address: no PIE, no relocations.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rerun-if-env-changed=DEP_WINDSOR_UNIKERNEL_LINKER_SCRIPT");
    }
}
