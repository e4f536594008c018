//! `hvm_start_info`: what Xen tells a PVH domain at entry.
//!
//! Producer: Xen's PVH loader (or a domain builder); consumer: this
//! runtime, once, at boot. Mirrors
//! `xen/include/public/arch-x86/hvm/start_info.h` (Xen 4.17):
//!
//! ```text
//!  0 magic u32 (0x336ec578)   4 version u32   8 flags u32 (SIF_*)  12 nr_modules u32
//! 16 modlist_paddr u64       24 cmdline_paddr u64                  32 rsdp_paddr u64
//! 40 memmap_paddr u64 (v1+)  48 memmap_entries u32 (v1+)           52 reserved u32
//! modlist entry (32 bytes): paddr u64, size u64, cmdline_paddr u64, reserved u64
//! memmap entry  (24 bytes): addr u64, size u64, type u32, reserved u32
//! ```
//!
//! The layouts are `xen::abi::hvm`'s mirrors. Parsing is portable and pure: it reads guest-physical memory only
//! through a [`PhysRead`], so the host tests feed it byte fixtures and the
//! runtime feeds it the identity map. Everything is copied into owned
//! values; nothing Xen wrote is trusted for lengths without a bound.

use alloc::string::String;
use alloc::vec::Vec;
use xen::abi::hvm::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo};
use zerocopy::FromBytes;

pub use xen::abi::hvm::{
    XEN_HVM_MEMMAP_TYPE_RAM as MEMMAP_RAM, XEN_HVM_START_MAGIC_VALUE as MAGIC,
};
pub use xen::abi::xen::{SIF_INITDOMAIN, SIF_PRIVILEGED};

/// Longest command line we accept (bytes before the NUL).
pub const MAX_CMDLINE: usize = 4096;
/// Most modules we accept.
pub const MAX_MODULES: u32 = 64;
/// Most memory-map entries we accept.
pub const MAX_MEMMAP: u32 = 128;

const HEADER_V0: usize = HvmStartInfo::V0_SIZE;
const HEADER_V1: usize = size_of::<HvmStartInfo>();
const MODLIST_ENTRY: usize = size_of::<HvmModlistEntry>();
const MEMMAP_ENTRY: usize = size_of::<HvmMemmapTableEntry>();

/// Reads guest-physical memory.
pub trait PhysRead {
    /// Fills `buf` from guest-physical `paddr`; `false` if any byte is
    /// outside readable memory.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// Why the start info was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartInfoError {
    /// The magic value is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// A structure lies outside readable memory.
    Unreadable(u64),
    /// More modules than [`MAX_MODULES`].
    TooManyModules(u32),
    /// More memory-map entries than [`MAX_MEMMAP`].
    TooManyMemmapEntries(u32),
    /// A command line is not NUL-terminated within [`MAX_CMDLINE`] bytes.
    CmdlineTooLong(u64),
}

/// A module (an image or a blob the boot loader passed along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Guest-physical address of the first byte.
    pub paddr: u64,
    /// Length in bytes.
    pub size: u64,
    /// The module's command line (empty if none).
    pub cmdline: String,
}

/// One memory-map (e820-style) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemRegion {
    /// Guest-physical start.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*` (1 = RAM).
    pub kind: u32,
}

impl MemRegion {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// The fixed part of `hvm_start_info`, read without allocating (the heap
/// is set up from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Guest-physical address of the structure itself.
    pub paddr: u64,
    /// `version` (0 or 1).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// `nr_modules`.
    pub nr_modules: u32,
    /// `modlist_paddr`.
    pub modlist_paddr: u64,
    /// `cmdline_paddr` (0: none).
    pub cmdline_paddr: u64,
    /// `rsdp_paddr`.
    pub rsdp_paddr: u64,
    /// `memmap_paddr` (version 1; 0 otherwise).
    pub memmap_paddr: u64,
    /// `memmap_entries` (version 1; 0 otherwise).
    pub memmap_entries: u32,
}

impl Header {
    /// Reads and checks the header at `paddr`.
    pub fn read(mem: &impl PhysRead, paddr: u64) -> Result<Header, StartInfoError> {
        let mut b = [0u8; HEADER_V1];
        if !mem.read(paddr, &mut b[..HEADER_V0]) {
            return Err(StartInfoError::Unreadable(paddr));
        }
        let si = HvmStartInfo::read_from_bytes(&b).expect("buffer is the struct's size");
        if !si.magic_ok() {
            return Err(StartInfoError::BadMagic(si.magic));
        }
        let si = if si.has_memmap() {
            if !mem.read(paddr + HEADER_V0 as u64, &mut b[HEADER_V0..]) {
                return Err(StartInfoError::Unreadable(paddr));
            }
            HvmStartInfo::read_from_bytes(&b).expect("buffer is the struct's size")
        } else {
            HvmStartInfo {
                memmap_paddr: 0,
                memmap_entries: 0,
                ..si
            }
        };
        if si.nr_modules > MAX_MODULES {
            return Err(StartInfoError::TooManyModules(si.nr_modules));
        }
        if si.memmap_entries > MAX_MEMMAP {
            return Err(StartInfoError::TooManyMemmapEntries(si.memmap_entries));
        }
        Ok(Header {
            paddr,
            version: si.version,
            flags: si.flags,
            nr_modules: si.nr_modules,
            modlist_paddr: si.modlist_paddr,
            cmdline_paddr: si.cmdline_paddr,
            rsdp_paddr: si.rsdp_paddr,
            memmap_paddr: si.memmap_paddr,
            memmap_entries: si.memmap_entries,
        })
    }

    /// True for the initial domain (dom0).
    pub fn is_initdomain(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }

    /// Memory-map entry `i` (< `memmap_entries`).
    pub fn memmap_entry(&self, mem: &impl PhysRead, i: u32) -> Result<MemRegion, StartInfoError> {
        let at = self.memmap_paddr + u64::from(i) * MEMMAP_ENTRY as u64;
        let mut b = [0u8; MEMMAP_ENTRY];
        if i >= self.memmap_entries || !mem.read(at, &mut b) {
            return Err(StartInfoError::Unreadable(at));
        }
        let e = HvmMemmapTableEntry::read_from_bytes(&b).expect("buffer is the struct's size");
        Ok(MemRegion {
            addr: e.addr,
            size: e.size,
            kind: e.r#type,
        })
    }

    /// Module-list entry `i`: `(paddr, size, cmdline_paddr)`.
    fn module_raw(&self, mem: &impl PhysRead, i: u32) -> Result<(u64, u64, u64), StartInfoError> {
        let at = self.modlist_paddr + u64::from(i) * MODLIST_ENTRY as u64;
        let mut b = [0u8; MODLIST_ENTRY];
        if i >= self.nr_modules || !mem.read(at, &mut b) {
            return Err(StartInfoError::Unreadable(at));
        }
        let e = HvmModlistEntry::read_from_bytes(&b).expect("buffer is the struct's size");
        Ok((e.paddr, e.size, e.cmdline_paddr))
    }

    /// Every guest-physical range the boot data occupies (the structure,
    /// module list, modules, command lines, memory map), so the heap can
    /// stay clear of them. Command lines count as [`MAX_CMDLINE`] + 1 bytes.
    pub fn for_each_boot_range(
        &self,
        mem: &impl PhysRead,
        mut f: impl FnMut(u64, u64),
    ) -> Result<(), StartInfoError> {
        f(self.paddr, HEADER_V1 as u64);
        let cl = MAX_CMDLINE as u64 + 1;
        if self.cmdline_paddr != 0 {
            f(self.cmdline_paddr, cl);
        }
        if self.nr_modules > 0 {
            f(
                self.modlist_paddr,
                u64::from(self.nr_modules) * MODLIST_ENTRY as u64,
            );
        }
        for i in 0..self.nr_modules {
            let (paddr, size, cmdline) = self.module_raw(mem, i)?;
            f(paddr, size);
            if cmdline != 0 {
                f(cmdline, cl);
            }
        }
        if self.memmap_entries > 0 {
            f(
                self.memmap_paddr,
                u64::from(self.memmap_entries) * MEMMAP_ENTRY as u64,
            );
        }
        Ok(())
    }
}

/// Reads the NUL-terminated string at `paddr` (lossy UTF-8).
fn read_cstr(mem: &impl PhysRead, paddr: u64) -> Result<String, StartInfoError> {
    if paddr == 0 {
        return Ok(String::new());
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    while out.len() <= MAX_CMDLINE {
        let at = paddr + out.len() as u64;
        // Read byte-wise near the end of readable memory.
        let n = if mem.read(at, &mut chunk) {
            chunk.len()
        } else if mem.read(at, &mut chunk[..1]) {
            1
        } else {
            return Err(StartInfoError::Unreadable(at));
        };
        if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
            out.extend_from_slice(&chunk[..z]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Err(StartInfoError::CmdlineTooLong(paddr))
}

/// The whole start info, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfo {
    /// The fixed part.
    pub header: Header,
    /// The domain's command line.
    pub cmdline: String,
    /// Modules in boot-loader order.
    pub modules: Vec<Module>,
    /// The memory map (empty for version 0).
    pub memmap: Vec<MemRegion>,
}

impl StartInfo {
    /// Reads everything the header points at.
    pub fn parse(mem: &impl PhysRead, header: Header) -> Result<StartInfo, StartInfoError> {
        let cmdline = read_cstr(mem, header.cmdline_paddr)?;
        let mut modules = Vec::with_capacity(header.nr_modules as usize);
        for i in 0..header.nr_modules {
            let (paddr, size, cl) = header.module_raw(mem, i)?;
            modules.push(Module {
                paddr,
                size,
                cmdline: read_cstr(mem, cl)?,
            });
        }
        let mut memmap = Vec::with_capacity(header.memmap_entries as usize);
        for i in 0..header.memmap_entries {
            memmap.push(header.memmap_entry(mem, i)?);
        }
        Ok(StartInfo {
            header,
            cmdline,
            modules,
            memmap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory fixture: `len` bytes at physical 0.
    struct Mem(Vec<u8>);

    impl PhysRead for Mem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Ok(start) = usize::try_from(paddr) else {
                return false;
            };
            match start.checked_add(buf.len()) {
                Some(end) if end <= self.0.len() => {
                    buf.copy_from_slice(&self.0[start..end]);
                    true
                }
                _ => false,
            }
        }
    }

    impl Mem {
        fn put(&mut self, at: usize, b: &[u8]) {
            self.0[at..at + b.len()].copy_from_slice(b);
        }
        fn put32(&mut self, at: usize, v: u32) {
            self.put(at, &v.to_le_bytes())
        }
        fn put64(&mut self, at: usize, v: u64) {
            self.put(at, &v.to_le_bytes())
        }
    }

    /// What Xen's PVH dom0 builder lays out: start info at 0x1000, a module
    /// list with one module and a command line, and a two-entry memory map.
    fn fixture() -> Mem {
        let mut m = Mem(vec![0; 0x4000]);
        m.put32(0x1000, MAGIC);
        m.put32(0x1004, 1);
        m.put32(0x1008, SIF_PRIVILEGED | SIF_INITDOMAIN);
        m.put32(0x100c, 1);
        m.put64(0x1010, 0x1100); // modlist
        m.put64(0x1018, 0x1200); // cmdline
        m.put64(0x1028, 0x1300); // memmap
        m.put32(0x1030, 2);
        m.put64(0x1100, 0x2000);
        m.put64(0x1108, 0x800);
        m.put64(0x1110, 0x1280);
        m.put(0x1200, b"console=xen ready\0");
        m.put(0x1280, b"xenstored\0");
        m.put64(0x1300, 0);
        m.put64(0x1308, 0x10_0000);
        m.put32(0x1310, MEMMAP_RAM);
        m.put64(0x1318, 0xfee0_0000);
        m.put64(0x1320, 0x1000);
        m.put32(0x1328, 2);
        m
    }

    #[test]
    fn parses_what_xen_lays_out() {
        let m = fixture();
        let h = Header::read(&m, 0x1000).unwrap();
        assert!(h.is_initdomain());
        let si = StartInfo::parse(&m, h).unwrap();
        assert_eq!(si.cmdline, "console=xen ready");
        assert_eq!(
            si.modules,
            vec![Module {
                paddr: 0x2000,
                size: 0x800,
                cmdline: "xenstored".into()
            }]
        );
        assert_eq!(si.memmap.len(), 2);
        assert_eq!(
            si.memmap[0],
            MemRegion {
                addr: 0,
                size: 0x10_0000,
                kind: MEMMAP_RAM
            }
        );
        assert_eq!(si.memmap[1].end(), 0xfee0_1000);
        let mut ranges = Vec::new();
        h.for_each_boot_range(&m, |a, l| ranges.push((a, l)))
            .unwrap();
        assert!(ranges.contains(&(0x2000, 0x800)));
        assert!(ranges.contains(&(0x1300, 48)));
    }

    #[test]
    fn version_0_has_no_memmap() {
        let mut m = fixture();
        m.put32(0x1004, 0);
        let h = Header::read(&m, 0x1000).unwrap();
        assert_eq!(h.memmap_entries, 0);
        assert!(StartInfo::parse(&m, h).unwrap().memmap.is_empty());
    }

    #[test]
    fn rejects_bad_magic_and_absurd_counts() {
        let mut m = fixture();
        m.put32(0x100c, 10_000);
        assert_eq!(
            Header::read(&m, 0x1000),
            Err(StartInfoError::TooManyModules(10_000))
        );
        m.put32(0x1000, 0xdead_beef);
        assert_eq!(
            Header::read(&m, 0x1000),
            Err(StartInfoError::BadMagic(0xdead_beef))
        );
        assert_eq!(
            Header::read(&m, 0x3ff0),
            Err(StartInfoError::Unreadable(0x3ff0))
        );
    }

    #[test]
    fn unterminated_or_unreadable_strings_are_errors() {
        let mut m = fixture();
        // Command line running off the end of memory.
        m.put64(0x1018, 0x3ffe);
        m.put(0x3ffe, b"ab");
        let h = Header::read(&m, 0x1000).unwrap();
        assert_eq!(
            StartInfo::parse(&m, h),
            Err(StartInfoError::Unreadable(0x4000))
        );
        // Module list pointing outside memory.
        let mut m = fixture();
        m.put64(0x1010, 0x10_0000);
        let h = Header::read(&m, 0x1000).unwrap();
        assert!(matches!(
            StartInfo::parse(&m, h),
            Err(StartInfoError::Unreadable(_))
        ));
    }
}
