//! Memory reservation and physmap operations (`xen/include/public/memory.h`,
//! Xen 4.17), plus the E820 entry format of `XENMEM_memory_map` buffers.
//!
//! Produced by the unikernel runtime (populate its physmap, map the
//! shared-info page and grant-table frames with `XENMEM_add_to_physmap`, read
//! its memory map) and by the toolstack's domain builder (populate a new
//! domain, set its memory map); consumed by Xen.
//!
//! ```text
//! xen_memory_reservation   0: extent_start (ptr)  8: nr_extents u64  16: extent_order u32
//!                         20: mem_flags u32      24: domid u16                        (32)
//! xen_add_to_physmap       0: domid u16  2: size u16  4: space u32  8: idx  16: gpfn  (24)
//! xen_add_to_physmap_batch 0: domid  2: space u16  4: size u16  6: u.foreign_domid
//!                          8: idxs (ptr)  16: gpfns (ptr)  24: errs (ptr)             (32)
//! xen_remove_from_physmap  0: domid  8: gpfn                                          (16)
//! xen_memory_map           0: nr_entries u32  8: buffer (ptr)                         (16)
//! xen_foreign_memory_map   0: domid  8: map                                           (24)
//! e820entry (packed)       0: addr u64  8: size u64  16: type u32                     (20)
//! ```

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XENMEM_increase_reservation`: [`XenMemoryReservation`].
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`: [`XenMemoryReservation`].
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`: argument is a `domid_t`.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`: argument is a `domid_t`.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_machphys_mfn_list` (PV).
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_populate_physmap`: [`XenMemoryReservation`].
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`: [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`: the caller's memory map ([`XenMemoryMap`]).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_machine_memory_map`: the host's memory map ([`XenMemoryMap`], dom0).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// `XENMEM_exchange`: [`XenMemoryExchange`].
pub const XENMEM_EXCHANGE: u32 = 11;
/// `XENMEM_machphys_mapping` (PV).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// `XENMEM_set_memory_map`: set a domain's map ([`XenForeignMemoryMap`]).
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// `XENMEM_maximum_gpfn`: argument is a `domid_t`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`: [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_set_pod_target`.
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// `XENMEM_get_pod_target`.
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// `XENMEM_add_to_physmap_batch`: [`XenAddToPhysmapBatch`].
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// `XENMEM_claim_pages`: [`XenMemoryReservation`] with `extent_start` zero.
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// `XENMEM_machphys_compat_mfn_list` (PV).
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// `XENMEM_get_vnumainfo`.
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// `XENMEM_reserved_device_memory_map`.
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// `XENMEM_acquire_resource`.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `XENMEMF_populate_on_demand` in `mem_flags`.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request` in `mem_flags`.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode` in `mem_flags`.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMEMF_address_bits(x)`: restrict allocations below `2^bits`.
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits & 0xff
}

/// `XENMEMF_node(x)`: prefer NUMA node `node`.
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}

/// `struct xen_memory_reservation`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryReservation {
    /// Guest address of a `xen_pfn_t` array (IN and/or OUT by command).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// Domain whose reservation changes (`DOMID_SELF` unless privileged).
    pub domid: u16,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
}

/// `struct xen_memory_exchange`: trade extents for others.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryExchange {
    /// IN: extents given up.
    pub r#in: XenMemoryReservation,
    /// IN/OUT: extents received.
    pub out: XenMemoryReservation,
    /// OUT: input extents exchanged (must be zero on entry).
    pub nr_exchanged: u64,
}

/// `XENMAPSPACE_shared_info`: the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: a grant table frame (`idx`, optionally
/// `| XENMAPIDX_grant_table_status`).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`: move a GMFN.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`: move `size` GMFNs (`add_to_physmap` only).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`: a GMFN of another domain (`batch` only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`: device MMIO (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `XENMAPIDX_grant_table_status`: `idx` flag selecting a v2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// The `space` of an add-to-physmap request (`enum phys_map_space`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapSpace {
    /// `XENMAPSPACE_shared_info`.
    SharedInfo = XENMAPSPACE_SHARED_INFO,
    /// `XENMAPSPACE_grant_table`.
    GrantTable = XENMAPSPACE_GRANT_TABLE,
    /// `XENMAPSPACE_gmfn`.
    Gmfn = XENMAPSPACE_GMFN,
    /// `XENMAPSPACE_gmfn_range`.
    GmfnRange = XENMAPSPACE_GMFN_RANGE,
    /// `XENMAPSPACE_gmfn_foreign`.
    GmfnForeign = XENMAPSPACE_GMFN_FOREIGN,
    /// `XENMAPSPACE_dev_mmio`.
    DevMmio = XENMAPSPACE_DEV_MMIO,
}

impl MapSpace {
    /// Decodes a `XENMAPSPACE_*` value; `None` for unknown values.
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            XENMAPSPACE_SHARED_INFO => Self::SharedInfo,
            XENMAPSPACE_GRANT_TABLE => Self::GrantTable,
            XENMAPSPACE_GMFN => Self::Gmfn,
            XENMAPSPACE_GMFN_RANGE => Self::GmfnRange,
            XENMAPSPACE_GMFN_FOREIGN => Self::GmfnForeign,
            XENMAPSPACE_DEV_MMIO => Self::DevMmio,
            _ => return None,
        })
    }
}

/// `struct xen_add_to_physmap`: make a page of `space` appear at `gpfn`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes.
    pub domid: u16,
    /// Pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// A `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (e.g. grant table frame number).
    pub idx: u64,
    /// Where the page appears in `domid`'s physmap.
    pub gpfn: u64,
}

/// `struct xen_add_to_physmap_batch`: the batched form, incl. foreign pages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenAddToPhysmapBatch {
    /// The domain whose physmap changes.
    pub domid: u16,
    /// A `XENMAPSPACE_*`.
    pub space: u16,
    /// Number of pages.
    pub size: u16,
    /// Union `u`: `foreign_domid` for `XENMAPSPACE_gmfn_foreign`, else `res0` (0).
    pub foreign_domid: u16,
    /// Guest address of `size` `xen_ulong_t` indexes.
    pub idxs: u64,
    /// Guest address of `size` `xen_pfn_t` destinations.
    pub gpfns: u64,
    /// Guest address of `size` `int` per-page error codes (OUT).
    pub errs: u64,
}

/// `struct xen_remove_from_physmap`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenRemoveFromPhysmap {
    /// The domain whose physmap changes.
    pub domid: u16,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
    /// The page to remove.
    pub gpfn: u64,
}

/// `struct xen_memory_map`: a buffer of [`E820Entry`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries stored.
    pub nr_entries: u32,
    /// Implicit C padding.
    pub _pad0: u32,
    /// Guest address of the entries.
    pub buffer: u64,
}

/// `struct xen_foreign_memory_map`: argument of `XENMEM_set_memory_map`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenForeignMemoryMap {
    /// The domain whose map is set.
    pub domid: u16,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
    /// The map.
    pub map: XenMemoryMap,
}

/// E820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_RESERVED: u32 = 2;
/// E820 type: ACPI tables (reclaimable).
pub const E820_ACPI: u32 = 3;
/// E820 type: ACPI non-volatile storage.
pub const E820_NVS: u32 = 4;
/// E820 type: unusable.
pub const E820_UNUSABLE: u32 = 5;

/// One entry of a `XENMEM_*memory_map` buffer: the BIOS `INT 15h, E820h`
/// format, packed (Xen's `struct e820entry`; not in the public headers).
///
/// Fields are byte arrays in little-endian order (the BIOS format), so the
/// struct has no alignment requirement and can be read from any offset.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct E820Entry {
    /// Base address, little-endian.
    pub addr: [u8; 8],
    /// Size in bytes, little-endian.
    pub size: [u8; 8],
    /// An `E820_*` type (same numbers as `XEN_HVM_MEMMAP_TYPE_*`), little-endian.
    pub r#type: [u8; 4],
}

impl E820Entry {
    /// Builds an entry.
    pub const fn new(addr: u64, size: u64, ty: u32) -> Self {
        Self {
            addr: addr.to_le_bytes(),
            size: size.to_le_bytes(),
            r#type: ty.to_le_bytes(),
        }
    }

    /// Base address.
    pub const fn addr(&self) -> u64 {
        u64::from_le_bytes(self.addr)
    }

    /// Size in bytes.
    pub const fn size(&self) -> u64 {
        u64::from_le_bytes(self.size)
    }

    /// The `E820_*` type.
    pub const fn ty(&self) -> u32 {
        u32::from_le_bytes(self.r#type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_memory_h() {
        assert_layout!(XenMemoryReservation, size 32, align 8,
            extent_start @ 0, nr_extents @ 8, extent_order @ 16, mem_flags @ 20, domid @ 24);
        assert_layout!(XenMemoryExchange, size 72, align 8, r#in @ 0, out @ 32, nr_exchanged @ 64);
        assert_layout!(XenAddToPhysmap, size 24, align 8,
            domid @ 0, size @ 2, space @ 4, idx @ 8, gpfn @ 16);
        assert_layout!(XenAddToPhysmapBatch, size 32, align 8,
            domid @ 0, space @ 2, size @ 4, foreign_domid @ 6, idxs @ 8, gpfns @ 16, errs @ 24);
        assert_layout!(XenRemoveFromPhysmap, size 16, align 8, domid @ 0, gpfn @ 8);
        assert_layout!(XenMemoryMap, size 16, align 8, nr_entries @ 0, buffer @ 8);
        assert_layout!(XenForeignMemoryMap, size 24, align 8, domid @ 0, map @ 8);
        assert_layout!(E820Entry, size 20, align 1, addr @ 0, size @ 8, r#type @ 16);
    }

    #[test]
    fn e820_entries_parse() {
        let raw: [u8; 20] = [
            0, 0, 0x10, 0, 0, 0, 0, 0, // addr 1 MiB
            0, 0, 0, 0x40, 0, 0, 0, 0, // size 1 GiB
            1, 0, 0, 0, // RAM
        ];
        let e = E820Entry::read_from_bytes(&raw).unwrap();
        assert_eq!(e.addr(), 0x10_0000);
        assert_eq!(e.size(), 0x4000_0000);
        assert_eq!(e.ty(), E820_RAM);
        assert_eq!(E820Entry::new(0x10_0000, 0x4000_0000, 1).as_bytes(), &raw);
    }

    #[test]
    fn map_spaces_decode() {
        assert_eq!(MapSpace::from_raw(0), Some(MapSpace::SharedInfo));
        assert_eq!(MapSpace::from_raw(4), Some(MapSpace::GmfnForeign));
        assert_eq!(MapSpace::from_raw(6), None);
        assert_eq!(xenmemf_node(0), 0x100);
        assert_eq!(xenmemf_address_bits(32), 32);
    }
}
