//! Hands the unikernel's linker script to the image crates that link it.
//!
//! An image's build script reads `DEP_WINDSOR_UNIKERNEL_LINKER_SCRIPT` (see
//! [`windsor_unikernel::link`](src/link.rs)) and passes it to the linker.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("src/arch/x86_64/link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:linker_script={}", script.display());
}
