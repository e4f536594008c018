//! Kernel images as users have them, turned into what the Xen-mode builder
//! loads: a PVH ELF.
//!
//! Accepted: an ELF (a Windsor image, or Linux's `vmlinux`), passed on
//! unchanged apart from the trimming below; or an x86 **bzImage** (what
//! Debian installs as `/boot/vmlinuz-*`) whose payload is XZ-compressed
//! (`CONFIG_KERNEL_XZ`, Debian's choice). The payload of a bzImage is the
//! kernel's own ELF `vmlinux`, found through the boot protocol's setup
//! header (`payload_offset`/`payload_length`, protocol 2.08+, Linux's
//! `Documentation/arch/x86/boot.rst`); it carries the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note when the kernel has `CONFIG_PVH`.
//!
//! **Where the decompression happens, and why here.** When the boot bundle
//! is made (this crate, `std`, on the build host), not in dom0's builder:
//! * dom0 runs under QEMU's TCG in CI, where XZ-decoding the 65 MB
//!   `vmlinux` would cost seconds of emulated time on every boot, whereas
//!   the host does it once in well under a second with liblzma (the `xz`
//!   project's own decoder, which also handles the x86 BCJ filter the
//!   kernel's build uses);
//! * the builder copies `PT_LOAD` segments at their physical addresses,
//!   which needs the whole ELF at hand: decompressing in dom0 would need the
//!   decompressed image in dom0's heap anyway.
//!
//! The price is a larger bundle, which trimming keeps down: each `PT_LOAD`
//! segment's trailing zero bytes (`.bss`, `.brk`, padding: 30 MB of
//! Debian's 66 MB `vmlinux`) are dropped from the file by lowering its
//! `p_filesz`, which the ELF format defines as zero-filled up to
//! `p_memsz` — the builder zeroes that memory. Section headers, which no
//! loader reads, are dropped too.

use std::string::ToString;
use std::vec::Vec;

use crate::error::KernelError;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const XZ_MAGIC: &[u8; 6] = b"\xfd7zXZ\0";
const GZIP_MAGIC: &[u8; 2] = b"\x1f\x8b";
const ZSTD_MAGIC: &[u8; 4] = b"\x28\xb5\x2f\xfd";
/// Largest decompressed kernel accepted (the decoder stops there).
pub const MAX_VMLINUX: u64 = 512 << 20;

/// The setup header fields of the x86 boot protocol this module reads.
mod setup {
    /// `setup_sects`: 512-byte sectors of real-mode setup after the boot sector.
    pub const SETUP_SECTS: usize = 0x1f1;
    /// `boot_flag`: `0xaa55`.
    pub const BOOT_FLAG: usize = 0x1fe;
    /// `header`: `"HdrS"`.
    pub const HEADER: usize = 0x202;
    /// `version`: the boot protocol version.
    pub const VERSION: usize = 0x206;
    /// `payload_offset`: from the start of the protected-mode code.
    pub const PAYLOAD_OFFSET: usize = 0x248;
    /// `payload_length`.
    pub const PAYLOAD_LENGTH: usize = 0x24c;
    /// Bytes needed to read all of the above.
    pub const LEN: usize = 0x250;
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Whether `bytes` starts like an x86 bzImage (boot sector flag and `HdrS`).
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.len() >= setup::LEN
        && u16_at(bytes, setup::BOOT_FLAG) == 0xaa55
        && &bytes[setup::HEADER..setup::HEADER + 4] == b"HdrS"
}

/// The compressed payload of a bzImage.
pub fn bzimage_payload(bytes: &[u8]) -> Result<&[u8], KernelError> {
    if !is_bzimage(bytes) {
        return Err(KernelError::NotAKernel);
    }
    let version = u16_at(bytes, setup::VERSION);
    if version < 0x208 {
        return Err(KernelError::OldBootProtocol { version });
    }
    let sects = match bytes[setup::SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (sects + 1) * 512 + u32_at(bytes, setup::PAYLOAD_OFFSET) as usize;
    let len = u32_at(bytes, setup::PAYLOAD_LENGTH) as usize;
    start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or(KernelError::PayloadOutOfBounds {
            start,
            len,
            file: bytes.len(),
        })
}

/// What the bundle carries for a domain's kernel file: a bzImage becomes
/// its trimmed PVH ELF (or an error: a bzImage that cannot be unpacked is
/// the user's mistake to hear about now); an ELF is trimmed when its layout
/// allows; anything else goes in unchanged, for the builder to refuse with
/// its own message (`ENOEXEC`) as it refuses any bad image.
pub fn bundle_image(bytes: Vec<u8>) -> Result<Vec<u8>, KernelError> {
    if is_bzimage(&bytes) {
        pvh_elf(&bytes)
    } else if bytes.starts_with(ELF_MAGIC) {
        Ok(trim_elf(&bytes).unwrap_or(bytes))
    } else {
        Ok(bytes)
    }
}

/// Turns a kernel image (ELF or bzImage, see the module doc) into the
/// trimmed PVH ELF that goes into the boot bundle.
pub fn pvh_elf(bytes: &[u8]) -> Result<Vec<u8>, KernelError> {
    if bytes.starts_with(ELF_MAGIC) {
        return trim_elf(bytes);
    }
    let payload = bzimage_payload(bytes)?;
    let elf = if payload.starts_with(XZ_MAGIC) {
        xz_decode(payload)?
    } else if payload.starts_with(GZIP_MAGIC) {
        return Err(KernelError::UnsupportedCompression("gzip"));
    } else if payload.starts_with(ZSTD_MAGIC) {
        return Err(KernelError::UnsupportedCompression("zstd"));
    } else {
        return Err(KernelError::UnsupportedCompression("unknown"));
    };
    if !elf.starts_with(ELF_MAGIC) {
        return Err(KernelError::PayloadNotElf);
    }
    trim_elf(&elf)
}

fn xz_decode(payload: &[u8]) -> Result<Vec<u8>, KernelError> {
    use std::io::Read;
    let mut out = Vec::new();
    let dec = liblzma::read::XzDecoder::new(payload);
    dec.take(MAX_VMLINUX + 1)
        .read_to_end(&mut out)
        .map_err(|e| KernelError::Decompress(e.to_string()))?;
    if out.len() as u64 > MAX_VMLINUX {
        return Err(KernelError::TooLarge { max: MAX_VMLINUX });
    }
    Ok(out)
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// Rewrites an ELF64 with each `PT_LOAD`'s trailing zeros dropped and no
/// section headers. `PT_NOTE` headers inside a `PT_LOAD` keep pointing at
/// the same bytes. Refuses what it cannot lay out safely.
fn trim_elf(elf: &[u8]) -> Result<Vec<u8>, KernelError> {
    let bad = KernelError::BadElf;
    if elf.len() < 64 || elf[4] != 2 || elf[5] != 1 {
        return Err(bad("not a little-endian ELF64"));
    }
    let phoff = u64_at(elf, 32) as usize;
    let phentsize = usize::from(u16_at(elf, 54));
    let phnum = usize::from(u16_at(elf, 56));
    if phentsize != 56 || phnum == 0 || phnum > 64 {
        return Err(bad("unexpected program header table"));
    }
    let ph_end = phoff
        .checked_add(phnum * 56)
        .filter(|&e| e <= elf.len())
        .ok_or(bad("program headers outside the file"))?;
    let phdrs = &elf[phoff..ph_end];
    // Output: ELF header, program headers, then each PT_LOAD's kept bytes.
    let head = 64 + phnum * 56;
    let mut out = Vec::with_capacity(elf.len().min(64 << 20));
    out.extend_from_slice(&elf[..64]);
    out.extend_from_slice(phdrs);
    out.resize(head, 0);
    // (old offset, old filesz, new offset) of each PT_LOAD, for the notes.
    let mut moved: Vec<(u64, u64, u64)> = Vec::new();
    for i in 0..phnum {
        let h = &phdrs[i * 56..(i + 1) * 56];
        if u32_at(h, 0) != PT_LOAD {
            continue;
        }
        let off = u64_at(h, 8);
        let filesz = u64_at(h, 32);
        let align = u64_at(h, 48).clamp(1, 4096);
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| elf.get(o..o.checked_add(n)?))
            .ok_or(bad("a PT_LOAD segment lies outside the file"))?;
        let kept = data.len() - data.iter().rev().take_while(|&&b| b == 0).count();
        // p_offset must stay congruent to p_vaddr modulo the alignment.
        let vaddr = u64_at(h, 16);
        let mut at = out.len() as u64;
        at += (vaddr % align + align - at % align) % align;
        out.resize(at as usize, 0);
        out.extend_from_slice(&data[..kept]);
        moved.push((off, filesz, at));
        let ph = 64 + i * 56;
        out[ph + 8..ph + 16].copy_from_slice(&at.to_le_bytes());
        out[ph + 32..ph + 40].copy_from_slice(&(kept as u64).to_le_bytes());
    }
    for i in 0..phnum {
        let ph = 64 + i * 56;
        if u32_at(&out, ph) != PT_NOTE {
            continue;
        }
        let off = u64_at(&out, ph + 8);
        let size = u64_at(&out, ph + 32);
        let inside = moved
            .iter()
            .find(|(o, n, _)| off >= *o && off.saturating_add(size) <= o + n);
        let Some(&(o, _, new)) = inside else {
            return Err(bad("a PT_NOTE outside every PT_LOAD"));
        };
        let new_off = new + (off - o);
        // The note must still be in the file after trimming.
        if new_off + size > out.len() as u64 {
            return Err(bad("a PT_NOTE lies in a trimmed tail"));
        }
        out[ph + 8..ph + 16].copy_from_slice(&new_off.to_le_bytes());
    }
    // No section headers: e_shoff, e_shnum, e_shstrndx.
    out[40..48].fill(0);
    out[60..64].fill(0);
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 with one PT_LOAD (data then zeros) and a PT_NOTE inside it.
    fn elf(data: &[u8], zeros: usize) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 2 * 56];
        e[..4].copy_from_slice(ELF_MAGIC);
        e[4] = 2;
        e[5] = 1;
        e[18] = 62;
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[40..48].copy_from_slice(&0x1234u64.to_le_bytes()); // e_shoff
        e[54] = 56;
        e[56] = 2;
        let seg_off = 0x1000u64;
        let filesz = (data.len() + zeros) as u64;
        let ph = |e: &mut Vec<u8>, i: usize, t: u32, off: u64, pa: u64, fs: u64, ms: u64| {
            let p = 64 + i * 56;
            e[p..p + 4].copy_from_slice(&t.to_le_bytes());
            e[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            e[p + 16..p + 24].copy_from_slice(&pa.to_le_bytes());
            e[p + 24..p + 32].copy_from_slice(&pa.to_le_bytes());
            e[p + 32..p + 40].copy_from_slice(&fs.to_le_bytes());
            e[p + 40..p + 48].copy_from_slice(&ms.to_le_bytes());
            e[p + 48..p + 56].copy_from_slice(&0x20_0000u64.to_le_bytes());
        };
        ph(&mut e, 0, PT_LOAD, seg_off, 0x20_0000, filesz, filesz + 64);
        ph(&mut e, 1, PT_NOTE, seg_off + 4, 0x20_0004, 4, 4);
        e.resize(seg_off as usize, 0);
        e.extend_from_slice(data);
        e.resize(e.len() + zeros, 0);
        e
    }

    #[test]
    fn trailing_zeros_are_trimmed_and_the_note_follows() {
        let data = b"CODE\x12\x00\x00\x00tail";
        let out = pvh_elf(&elf(data, 5000)).unwrap();
        let off = u64_at(&out, 64 + 8) as usize;
        assert_eq!(u64_at(&out, 64 + 32), data.len() as u64, "filesz trimmed");
        assert_eq!(
            u64_at(&out, 64 + 40),
            (data.len() + 5000 + 64) as u64,
            "memsz kept"
        );
        assert_eq!(&out[off..off + data.len()], data);
        assert_eq!(off as u64 % 4096, 0, "offset congruent with the address");
        let note = u64_at(&out, 64 + 56 + 8) as usize;
        assert_eq!(&out[note..note + 4], b"\x12\x00\x00\x00");
        assert_eq!(u64_at(&out, 40), 0, "no section headers");
        assert!(out.len() < 4096 + 100);
    }

    #[test]
    fn bzimage_with_xz_payload_decompresses_to_the_elf() {
        use std::io::Write;
        let inner = elf(b"vmlinux!", 100);
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&inner).unwrap();
        let xz = enc.finish().unwrap();
        // Boot sector + 1 setup sector, then the payload at offset 16.
        let mut bz = vec![0u8; 1024 + 16];
        bz[setup::SETUP_SECTS] = 1;
        bz[setup::BOOT_FLAG..setup::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        bz[setup::HEADER..setup::HEADER + 4].copy_from_slice(b"HdrS");
        bz[setup::VERSION..setup::VERSION + 2].copy_from_slice(&0x20fu16.to_le_bytes());
        bz[setup::PAYLOAD_OFFSET..setup::PAYLOAD_OFFSET + 4].copy_from_slice(&16u32.to_le_bytes());
        bz[setup::PAYLOAD_LENGTH..setup::PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(xz.len() as u32).to_le_bytes());
        bz.extend_from_slice(&xz);
        assert!(is_bzimage(&bz));
        assert_eq!(pvh_elf(&bz).unwrap(), trim_elf(&inner).unwrap());

        // Payload length past the end of the file.
        let mut short = bz.clone();
        short.truncate(bz.len() - 1);
        assert!(matches!(
            pvh_elf(&short),
            Err(KernelError::PayloadOutOfBounds { .. })
        ));
        // A gzip payload is named, not silently mangled.
        let mut gz = bz.clone();
        gz[1024 + 16..1024 + 18].copy_from_slice(GZIP_MAGIC);
        assert_eq!(
            pvh_elf(&gz),
            Err(KernelError::UnsupportedCompression("gzip"))
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert_eq!(pvh_elf(b"MZ"), Err(KernelError::NotAKernel));
        assert!(pvh_elf(&[0u8; 4096]).is_err());
        let mut e = elf(b"x", 0);
        e[56] = 60; // phnum: table past the end
        assert!(matches!(pvh_elf(&e), Err(KernelError::BadElf(_))));
    }
}
