//! PVH kernel images: the ELF64 checks and load plan a domain builder needs.
//!
//! Producer: whoever hands dom0 an image (a multiboot module: untrusted
//! bytes as far as this parser is concerned); consumer: the Xen-mode
//! [`DomainBuilder`](xen::platform::DomainBuilder). An image is accepted
//! when it is a little-endian ELF64 for x86_64 whose `PT_NOTE` segments
//! carry a `Xen` note of type `XEN_ELFNOTE_PHYS32_ENTRY` (`elfnote.h`,
//! Xen 4.17), and whose `PT_LOAD` segments lie inside the file with
//! `filesz <= memsz`. Everything is bounds-checked; garbage gives an
//! [`ImageError`], never a panic.

use alloc::vec::Vec;
use xen::abi::elfnote::{XEN_ELFNOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY};

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
/// Most program headers we look at.
pub const MAX_PHDRS: usize = 64;

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Not an ELF file (bad magic or too short for a header).
    NotElf,
    /// ELF, but not little-endian ELF64 for x86_64.
    WrongClass,
    /// The program header table or a segment lies outside the file, or is
    /// malformed (`filesz > memsz`, overflowing addresses, too many).
    Malformed,
    /// No `PT_LOAD` segment.
    NoLoadSegment,
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: Xen cannot start it as PVH.
    NoPvhEntry,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ImageError::NotElf => "not an ELF file",
            ImageError::WrongClass => "not a little-endian ELF64 x86_64 image",
            ImageError::Malformed => "malformed program headers or segments",
            ImageError::NoLoadSegment => "no PT_LOAD segment",
            ImageError::NoPvhEntry => "no XEN_ELFNOTE_PHYS32_ENTRY note",
        })
    }
}

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Offset of the bytes in the file.
    pub offset: usize,
    /// Bytes to copy from the file.
    pub filesz: usize,
    /// Bytes the segment occupies (the rest is zeroed).
    pub memsz: u64,
}

/// A checked PVH image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhImage {
    /// The 32-bit physical entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
    pub entry: u32,
    /// The segments to load.
    pub segments: Vec<Segment>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Finds the PHYS32 entry in a note segment's bytes.
fn phys32_entry(notes: &[u8]) -> Option<u32> {
    let mut at = 0usize;
    while at.checked_add(12)? <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let ty = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz.checked_add(3)? & !3)?;
        let next = desc_at.checked_add(descsz.checked_add(3)? & !3)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        if name == XEN_ELFNOTE_NAME && ty == XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4 {
            return u32_at(notes, desc_at);
        }
        at = next;
    }
    None
}

impl PvhImage {
    /// Checks `elf` and extracts the entry point and segments.
    pub fn parse(elf: &[u8]) -> Result<PvhImage, ImageError> {
        if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
            return Err(ImageError::NotElf);
        }
        if elf[4] != 2 || elf[5] != 1 || u16_at(elf, 18) != Some(EM_X86_64) {
            return Err(ImageError::WrongClass);
        }
        let bad = ImageError::Malformed;
        let phoff = usize::try_from(u64_at(elf, 32).ok_or(bad)?).map_err(|_| bad)?;
        let phentsize = usize::from(u16_at(elf, 54).ok_or(bad)?);
        let phnum = usize::from(u16_at(elf, 56).ok_or(bad)?);
        if phentsize < 56 || phnum > MAX_PHDRS {
            return Err(bad);
        }
        let mut entry = None;
        let mut segments = Vec::new();
        for i in 0..phnum {
            let ph = phoff.checked_add(i * phentsize).ok_or(bad)?;
            let hdr = elf.get(ph..ph.checked_add(56).ok_or(bad)?).ok_or(bad)?;
            let p_type = u32_at(hdr, 0).ok_or(bad)?;
            let offset = usize::try_from(u64_at(hdr, 8).ok_or(bad)?).map_err(|_| bad)?;
            let paddr = u64_at(hdr, 24).ok_or(bad)?;
            let filesz = usize::try_from(u64_at(hdr, 32).ok_or(bad)?).map_err(|_| bad)?;
            let memsz = u64_at(hdr, 40).ok_or(bad)?;
            let bytes = elf
                .get(offset..offset.checked_add(filesz).ok_or(bad)?)
                .ok_or(bad)?;
            match p_type {
                PT_NOTE if entry.is_none() => entry = phys32_entry(bytes),
                PT_LOAD => {
                    if filesz as u64 > memsz || paddr.checked_add(memsz).is_none() {
                        return Err(bad);
                    }
                    segments.push(Segment {
                        paddr,
                        offset,
                        filesz,
                        memsz,
                    });
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ImageError::NoLoadSegment);
        }
        Ok(PvhImage {
            entry: entry.ok_or(ImageError::NoPvhEntry)?,
            segments,
        })
    }

    /// `[lowest paddr, highest paddr + memsz)` of the loaded image.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// An ELF64 x86_64 image: one PT_LOAD of 16 bytes at 0x200000 (memsz
    /// 0x1000) and a PT_NOTE with the PHYS32 entry 0x200000.
    fn image() -> Vec<u8> {
        let mut e = vec![0u8; 0x200];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18] = 62;
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&2u16.to_le_bytes());
        // PT_LOAD
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes());
        e[ph + 24..ph + 32].copy_from_slice(&0x20_0000u64.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&16u64.to_le_bytes());
        e[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        // PT_NOTE
        let ph = 120;
        e[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&0x180u64.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&20u64.to_le_bytes());
        let n = 0x180;
        e[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        e[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
        e[n + 8..n + 12].copy_from_slice(&18u32.to_le_bytes());
        e[n + 12..n + 16].copy_from_slice(b"Xen\0");
        e[n + 16..n + 20].copy_from_slice(&0x20_0000u32.to_le_bytes());
        e
    }

    #[test]
    fn accepts_a_pvh_image() {
        let img = PvhImage::parse(&image()).unwrap();
        assert_eq!(img.entry, 0x20_0000);
        assert_eq!(
            img.segments,
            vec![Segment {
                paddr: 0x20_0000,
                offset: 0x100,
                filesz: 16,
                memsz: 0x1000
            }]
        );
        assert_eq!(img.span(), (0x20_0000, 0x20_1000));
    }

    #[test]
    fn refuses_broken_images() {
        assert_eq!(
            PvhImage::parse(b"not an elf at all"),
            Err(ImageError::NotElf)
        );
        let mut e = image();
        e[18] = 3; // EM_386
        assert_eq!(PvhImage::parse(&e), Err(ImageError::WrongClass));
        let mut e = image();
        e[0x180 + 8] = 1; // note type XEN_ELFNOTE_INFO
        assert_eq!(PvhImage::parse(&e), Err(ImageError::NoPvhEntry));
        let mut e = image();
        e[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes()); // filesz past EOF
        assert_eq!(PvhImage::parse(&e), Err(ImageError::Malformed));
        let mut e = image();
        e[56..58].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(PvhImage::parse(&e), Err(ImageError::Malformed));
        // Truncations never panic.
        let full = image();
        for n in 0..full.len() {
            let _ = PvhImage::parse(&full[..n]);
        }
    }
}
