//! The host description.
//!
//! This crate will own the TOML host description (service domains, guests,
//! dom0 settings), its validation with file/line errors, the boot plan, and
//! the artifacts rendered from it: Xen and QEMU command lines, the multiboot
//! module list, a GRUB stanza and the postcard blob handed to dom0.
#![forbid(unsafe_code)]
