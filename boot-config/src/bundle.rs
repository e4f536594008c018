//! The boot bundle: the plan and every domain image in one multiboot module.
//!
//! Producer: the build (`cargo xtask`, through
//! [`render::bundle`](crate::render::bundle) or [`build`]). Consumer: dom0,
//! which receives the bundle as its one `hvm_start_info` module and reads it
//! with [`Bundle::parse`].
//!
//! # Why one module
//!
//! Xen 4.17 on x86 hands a PVH dom0 exactly one module: module 0 of the
//! multiboot list is dom0's kernel, and the first module no one else claims
//! (microcode, XSM policy) becomes dom0's "initrd"; Xen logs `Multiple initrd
//! candidates, picking module #1` for the rest, does not pass them on, and
//! frees their memory after building dom0 (`__start_xen` in
//! `xen/arch/x86/setup.c`, `pvh_load_kernel` in `hvm/dom0_build.c`). So the
//! plan and the images travel together in this container.
//!
//! # Layout
//!
//! All integers little-endian.
//!
//! ```text
//!  0        8     12      16                      16 + 16*count
//!  +--------+-----+-------+-----------------------+---------+--------+--
//!  |WNDSRBND| ver | count | count x (offset, len) | pad     | entry 0| ...
//!  +--------+-----+-------+ u64      u64          +---------+--------+--
//! ```
//!
//! Entry 0 is the encoded [`BootPlan`] ([`BootPlan::to_postcard`]); entry
//! *i* ≥ 1 is the image that [`PlanDomain::module`](crate::PlanDomain::module)
//! `== i` names. Every entry starts at a multiple of [`BUNDLE_ALIGN`] so
//! dom0 can read ELF headers in place. Once [`Bundle::parse`] has accepted a
//! bundle, [`Bundle::entry`] cannot panic: every range was checked.

use alloc::vec::Vec;

use crate::plan::{BootPlan, PlanError};

/// First eight bytes of a bundle.
pub const BUNDLE_MAGIC: [u8; 8] = *b"WNDSRBND";

/// Version of the bundle layout.
pub const BUNDLE_VERSION: u32 = 1;

/// Alignment of every entry's first byte, from the start of the bundle.
pub const BUNDLE_ALIGN: usize = 4096;

/// Most entries a bundle may have (the plan plus distinct images).
pub const BUNDLE_MAX_ENTRIES: usize = 256;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const VERSION: Range<usize> = 8..12;
    pub const COUNT: Range<usize> = 12..16;
    pub const TABLE: usize = 16;
    pub const ENTRY_LEN: usize = 16;
}

/// Why a bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Shorter than the fixed header or the entry table.
    #[error("boot bundle: {len} bytes is too short for its header and entry table")]
    Truncated {
        /// Length of the module.
        len: usize,
    },
    /// Does not start with [`BUNDLE_MAGIC`]: the module is not a bundle.
    #[error(
        "boot bundle: bad magic; expected \"WNDSRBND\" (is the module list in the wrong order?)"
    )]
    BadMagic,
    /// Written by a different bundle version.
    #[error("boot bundle: version {found} is not supported; expected {BUNDLE_VERSION}")]
    UnsupportedVersion {
        /// The version in the bundle.
        found: u32,
    },
    /// No entries, or more than [`BUNDLE_MAX_ENTRIES`].
    #[error("boot bundle: {count} entries; expected 1..={BUNDLE_MAX_ENTRIES}")]
    BadCount {
        /// The entry count in the header.
        count: u32,
    },
    /// An entry's range is misaligned or runs past the end of the bundle.
    #[error(
        "boot bundle: entry {index} (offset {offset}, {len} bytes) is misaligned or out of bounds"
    )]
    BadEntry {
        /// Index of the entry.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// Entry 0 is not a valid plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The plan names an entry the bundle does not have.
    #[error("boot bundle: the plan uses entry {module} but the bundle has {count}")]
    MissingEntry {
        /// The entry the plan names.
        module: u32,
        /// Entries in the bundle.
        count: usize,
    },
}

/// A checked view of a bundle.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    count: usize,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

impl<'a> Bundle<'a> {
    /// Checks the header and every entry's range. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() < field::TABLE {
            return Err(BundleError::Truncated { len: bytes.len() });
        }
        if bytes[field::MAGIC] != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = le_u32(&bytes[field::VERSION]);
        if version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion { found: version });
        }
        let count32 = le_u32(&bytes[field::COUNT]);
        let count = count32 as usize;
        if count == 0 || count > BUNDLE_MAX_ENTRIES {
            return Err(BundleError::BadCount { count: count32 });
        }
        let table_end = field::TABLE + count * field::ENTRY_LEN;
        if bytes.len() < table_end {
            return Err(BundleError::Truncated { len: bytes.len() });
        }
        let bundle = Bundle { bytes, count };
        for index in 0..count {
            let (offset, len) = bundle.raw_entry(index);
            let end = offset.checked_add(len);
            let ok = offset % BUNDLE_ALIGN as u64 == 0
                && offset >= table_end as u64
                && end.is_some_and(|e| e <= bytes.len() as u64);
            if !ok {
                return Err(BundleError::BadEntry { index, offset, len });
            }
        }
        Ok(bundle)
    }

    fn raw_entry(&self, index: usize) -> (u64, u64) {
        let at = field::TABLE + index * field::ENTRY_LEN;
        (
            le_u64(&self.bytes[at..at + 8]),
            le_u64(&self.bytes[at + 8..at + 16]),
        )
    }

    /// Number of entries (the plan plus the images).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a parsed bundle has at least the plan entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of entry `index`, or `None` past the end.
    pub fn entry(&self, index: usize) -> Option<&'a [u8]> {
        if index >= self.count {
            return None;
        }
        let (offset, len) = self.raw_entry(index);
        // Checked in `parse`: offset + len <= bytes.len() <= usize::MAX.
        self.bytes.get(offset as usize..(offset + len) as usize)
    }

    /// Decodes entry 0 and checks that every module it names exists.
    pub fn plan(&self) -> Result<BootPlan, BundleError> {
        let plan = BootPlan::from_postcard(self.entry(0).unwrap_or_default())?;
        if let Some(d) = plan
            .domains
            .iter()
            .find(|d| d.module as usize >= self.count)
        {
            return Err(BundleError::MissingEntry {
                module: d.module,
                count: self.count,
            });
        }
        Ok(plan)
    }
}

fn align_up(n: usize) -> usize {
    n.div_ceil(BUNDLE_ALIGN) * BUNDLE_ALIGN
}

/// Builds a bundle from the encoded plan and the images, in entry order
/// (the images of [`BootPlan::images`]). Pure: no I/O.
///
/// # Panics
///
/// If there are more than `BUNDLE_MAX_ENTRIES - 1` images (a validated host
/// description never has that many).
pub fn build(plan_blob: &[u8], images: &[&[u8]]) -> Vec<u8> {
    let count = images.len() + 1;
    assert!(count <= BUNDLE_MAX_ENTRIES, "too many bundle entries");
    let table_end = field::TABLE + count * field::ENTRY_LEN;
    let mut table = Vec::with_capacity(count);
    let mut at = align_up(table_end);
    for entry in core::iter::once(plan_blob).chain(images.iter().copied()) {
        table.push((at, entry.len()));
        at = align_up(at + entry.len());
    }
    let total = table.last().map_or(table_end, |&(o, l)| o + l);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&BUNDLE_MAGIC);
    out.extend_from_slice(&BUNDLE_VERSION.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for &(offset, len) in &table {
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    for (entry, &(offset, _)) in core::iter::once(plan_blob)
        .chain(images.iter().copied())
        .zip(&table)
    {
        out.resize(offset, 0);
        out.extend_from_slice(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::sample;

    /// Header and table of a bundle with a 3-byte plan and one 2-byte image.
    static SMALL_HEADER: [u8; 48] = [
        b'W', b'N', b'D', b'S', b'R', b'B', b'N', b'D', // magic
        1, 0, 0, 0, // version
        2, 0, 0, 0, // count
        0x00, 0x10, 0, 0, 0, 0, 0, 0, // entry 0 offset 4096
        3, 0, 0, 0, 0, 0, 0, 0, // entry 0 len 3
        0x00, 0x20, 0, 0, 0, 0, 0, 0, // entry 1 offset 8192
        2, 0, 0, 0, 0, 0, 0, 0, // entry 1 len 2
    ];

    #[test]
    fn layout_is_pinned() {
        let b = build(b"abc", &[b"xy"]);
        assert_eq!(&b[..48], &SMALL_HEADER[..]);
        assert_eq!(b.len(), 8192 + 2);
        assert_eq!(&b[4096..4099], b"abc");
        assert!(b[48..4096].iter().all(|&x| x == 0));
        assert_eq!(&b[8192..], b"xy");
        let p = Bundle::parse(&b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.entry(0), Some(&b"abc"[..]));
        assert_eq!(p.entry(1), Some(&b"xy"[..]));
        assert_eq!(p.entry(2), None);
    }

    #[test]
    fn plan_round_trip() {
        let plan = sample();
        let b = build(&plan.to_postcard(), &[b"\x7fELF-xs", b"\x7fELF-guest"]);
        let p = Bundle::parse(&b).unwrap();
        assert_eq!(p.plan().unwrap(), plan);
        assert_eq!(p.entry(2), Some(&b"\x7fELF-guest"[..]));
    }

    #[test]
    fn plan_naming_missing_entry_is_rejected() {
        let plan = sample();
        let b = build(&plan.to_postcard(), &[b"only-one"]);
        assert_eq!(
            Bundle::parse(&b).unwrap().plan(),
            Err(BundleError::MissingEntry {
                module: 2,
                count: 2
            })
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let good = build(b"abc", &[b"xy"]);
        assert_eq!(
            Bundle::parse(&good[..10]).unwrap_err(),
            BundleError::Truncated { len: 10 }
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(Bundle::parse(&b).unwrap_err(), BundleError::BadMagic);
        let mut b = good.clone();
        b[8] = 9;
        assert_eq!(
            Bundle::parse(&b).unwrap_err(),
            BundleError::UnsupportedVersion { found: 9 }
        );
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            Bundle::parse(&b).unwrap_err(),
            BundleError::BadCount { count: 0 }
        );
        let mut b = good.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Bundle::parse(&b),
            Err(BundleError::BadCount { .. })
        ));
        // Entry 1 running past the end.
        let b = &good[..good.len() - 1];
        assert_eq!(
            Bundle::parse(b).unwrap_err(),
            BundleError::BadEntry {
                index: 1,
                offset: 8192,
                len: 2
            }
        );
        // Misaligned entry.
        let mut b = good.clone();
        b[16] = 1;
        assert!(matches!(
            Bundle::parse(&b),
            Err(BundleError::BadEntry { index: 0, .. })
        ));
        // Offset + len overflowing u64.
        let mut b = good.clone();
        b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Bundle::parse(&b),
            Err(BundleError::BadEntry { index: 1, .. })
        ));
    }

    #[test]
    fn empty_images_are_allowed() {
        let b = build(b"", &[]);
        let p = Bundle::parse(&b).unwrap();
        assert_eq!(p.entry(0), Some(&[][..]));
        assert_eq!(b.len(), 4096);
    }
}
