//! Hypercall argument layouts the runtime needs that `xen::abi` does not
//! provide yet (Xen 4.17, x86_64).
//!
//! Each item names the public header it mirrors. They move to `xen::abi`,
//! with layout tests against the headers, as that crate grows; the sizes
//! are pinned here by `const` assertions meanwhile.

#![allow(dead_code)]

/// Hypercall numbers (`xen.h`).
pub mod nr {
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u32 = 12;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u32 = 17;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u32 = 18;
    /// `__HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u32 = 20;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u32 = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u32 = 32;
}

/// `CONSOLEIO_write` (`xen.h`).
pub const CONSOLEIO_WRITE: u64 = 0;

/// `SCHEDOP_*` (`sched.h`).
pub mod sched {
    /// `SCHEDOP_yield`.
    pub const YIELD: u64 = 0;
    /// `SCHEDOP_shutdown`, argument [`Shutdown`].
    pub const SHUTDOWN: u64 = 2;
    /// `SCHEDOP_poll`, argument [`Poll`].
    pub const POLL: u64 = 3;

    /// `struct sched_shutdown`.
    #[repr(C)]
    pub struct Shutdown {
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }

    /// `struct sched_poll`.
    #[repr(C)]
    pub struct Poll {
        /// `XEN_GUEST_HANDLE(evtchn_port_t) ports`.
        pub ports: u64,
        /// `unsigned int nr_ports`.
        pub nr_ports: u32,
        /// Absolute system time in ns; 0 for none.
        pub timeout: u64,
    }
    const _: () = assert!(core::mem::size_of::<Poll>() == 24);
}

/// `XENVER_version` (`version.h`): returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;

/// `memory.h`.
pub mod memory {
    /// `XENMEM_add_to_physmap`, argument [`AddToPhysmap`].
    pub const ADD_TO_PHYSMAP: u64 = 7;
    /// `XENMEM_memory_map`, argument [`MemoryMap`]: the caller's e820.
    pub const MEMORY_MAP: u64 = 9;
    /// Size of one `struct e820entry` (packed: addr u64, size u64, type u32).
    pub const E820_ENTRY: usize = 20;

    /// `struct xen_memory_map`.
    #[repr(C)]
    pub struct MemoryMap {
        /// IN: entries the buffer holds; OUT: entries written.
        pub nr_entries: u32,
        /// `XEN_GUEST_HANDLE(void) buffer`.
        pub buffer: u64,
    }
    const _: () = assert!(core::mem::size_of::<MemoryMap>() == 16);

    /// `XENMAPSPACE_shared_info`.
    pub const SPACE_SHARED_INFO: u32 = 0;
    /// `XENMAPSPACE_grant_table`.
    pub const SPACE_GRANT_TABLE: u32 = 1;

    /// `struct xen_add_to_physmap`.
    #[repr(C)]
    pub struct AddToPhysmap {
        /// `domid_t domid`.
        pub domid: u16,
        /// `uint16_t size` (for `gmfn_range`).
        pub size: u16,
        /// `unsigned int space`.
        pub space: u32,
        /// `xen_ulong_t idx`.
        pub idx: u64,
        /// `xen_pfn_t gpfn`.
        pub gpfn: u64,
    }
    const _: () = assert!(core::mem::size_of::<AddToPhysmap>() == 24);
}

/// `event_channel.h`.
pub mod evtchn {
    /// `EVTCHNOP_bind_interdomain`.
    pub const BIND_INTERDOMAIN: u64 = 0;
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = 1;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = 3;
    /// `EVTCHNOP_send`.
    pub const SEND: u64 = 4;
    /// `EVTCHNOP_status`.
    pub const STATUS: u64 = 5;
    /// `EVTCHNOP_alloc_unbound`.
    pub const ALLOC_UNBOUND: u64 = 6;

    /// `EVTCHNSTAT_*`.
    pub const STAT_CLOSED: u32 = 0;
    /// `EVTCHNSTAT_unbound`.
    pub const STAT_UNBOUND: u32 = 1;
    /// `EVTCHNSTAT_interdomain`.
    pub const STAT_INTERDOMAIN: u32 = 2;
    /// `EVTCHNSTAT_virq`.
    pub const STAT_VIRQ: u32 = 4;

    /// `struct evtchn_alloc_unbound`.
    #[repr(C)]
    pub struct AllocUnbound {
        /// `domid_t dom`.
        pub dom: u16,
        /// `domid_t remote_dom`.
        pub remote_dom: u16,
        /// OUT `evtchn_port_t port`.
        pub port: u32,
    }
    const _: () = assert!(core::mem::size_of::<AllocUnbound>() == 8);

    /// `struct evtchn_bind_interdomain`.
    #[repr(C)]
    pub struct BindInterdomain {
        /// `domid_t remote_dom`.
        pub remote_dom: u16,
        /// `evtchn_port_t remote_port`.
        pub remote_port: u32,
        /// OUT `evtchn_port_t local_port`.
        pub local_port: u32,
    }
    const _: () = assert!(core::mem::size_of::<BindInterdomain>() == 12);

    /// `struct evtchn_bind_virq`.
    #[repr(C)]
    pub struct BindVirq {
        /// `uint32_t virq`.
        pub virq: u32,
        /// `uint32_t vcpu`.
        pub vcpu: u32,
        /// OUT `evtchn_port_t port`.
        pub port: u32,
    }

    /// `struct evtchn_close`, `evtchn_send`, `evtchn_unmask`: just a port.
    #[repr(C)]
    pub struct Port {
        /// `evtchn_port_t port`.
        pub port: u32,
    }

    /// `struct evtchn_status`.
    #[repr(C)]
    pub struct Status {
        /// `domid_t dom`.
        pub dom: u16,
        /// `evtchn_port_t port`.
        pub port: u32,
        /// OUT `uint32_t status`.
        pub status: u32,
        /// OUT `uint32_t vcpu`.
        pub vcpu: u32,
        /// OUT union `u`: unbound `{dom}`, interdomain `{dom, port}`, virq.
        pub u: [u32; 2],
    }
    const _: () = assert!(core::mem::size_of::<Status>() == 24);
}

/// `grant_table.h` (v1).
pub mod gnttab {
    /// `GNTTABOP_map_grant_ref`.
    pub const MAP_GRANT_REF: u64 = 0;
    /// `GNTTABOP_unmap_grant_ref`.
    pub const UNMAP_GRANT_REF: u64 = 1;
    /// `GNTTABOP_copy`.
    pub const COPY: u64 = 5;
    /// `GNTTABOP_query_size`.
    pub const QUERY_SIZE: u64 = 6;

    /// `GTF_permit_access`.
    pub const GTF_PERMIT_ACCESS: u16 = 1;
    /// `GTF_readonly`.
    pub const GTF_READONLY: u16 = 1 << 2;
    /// `GTF_reading`.
    pub const GTF_READING: u16 = 1 << 3;
    /// `GTF_writing`.
    pub const GTF_WRITING: u16 = 1 << 4;

    /// `GNTMAP_host_map`.
    pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
    /// `GNTMAP_readonly`.
    pub const GNTMAP_READONLY: u32 = 1 << 2;

    /// `GNTCOPY_source_gref`.
    pub const GNTCOPY_SOURCE_GREF: u16 = 1;
    /// `GNTCOPY_dest_gref`.
    pub const GNTCOPY_DEST_GREF: u16 = 2;

    /// Size of a v1 entry (`grant_entry_v1_t`: flags u16, domid u16, frame u32).
    pub const ENTRY_V1_SIZE: usize = 8;

    /// `struct gnttab_map_grant_ref`.
    #[repr(C)]
    pub struct MapGrantRef {
        /// `uint64_t host_addr`: guest-physical address for auto-translated guests.
        pub host_addr: u64,
        /// `uint32_t flags` (`GNTMAP_*`).
        pub flags: u32,
        /// `grant_ref_t ref`.
        pub gref: u32,
        /// `domid_t dom`.
        pub dom: u16,
        /// OUT `int16_t status`.
        pub status: i16,
        /// OUT `grant_handle_t handle`.
        pub handle: u32,
        /// OUT `uint64_t dev_bus_addr`.
        pub dev_bus_addr: u64,
    }
    const _: () = assert!(core::mem::size_of::<MapGrantRef>() == 32);

    /// `struct gnttab_unmap_grant_ref`.
    #[repr(C)]
    pub struct UnmapGrantRef {
        /// `uint64_t host_addr`.
        pub host_addr: u64,
        /// `uint64_t dev_bus_addr`.
        pub dev_bus_addr: u64,
        /// `grant_handle_t handle`.
        pub handle: u32,
        /// OUT `int16_t status`.
        pub status: i16,
    }
    const _: () = assert!(core::mem::size_of::<UnmapGrantRef>() == 24);

    /// One side of `struct gnttab_copy`.
    #[repr(C)]
    pub struct CopyPtr {
        /// union `{ grant_ref_t ref; xen_pfn_t gmfn; }`.
        pub u: u64,
        /// `domid_t domid`.
        pub domid: u16,
        /// `uint16_t offset`.
        pub offset: u16,
    }

    /// `struct gnttab_copy`.
    #[repr(C)]
    pub struct Copy {
        /// Source.
        pub source: CopyPtr,
        /// Destination.
        pub dest: CopyPtr,
        /// `uint16_t len`.
        pub len: u16,
        /// `uint16_t flags` (`GNTCOPY_*`).
        pub flags: u16,
        /// OUT `int16_t status`.
        pub status: i16,
    }
    const _: () = assert!(core::mem::size_of::<Copy>() == 40);

    /// `struct gnttab_query_size`.
    #[repr(C)]
    pub struct QuerySize {
        /// `domid_t dom`.
        pub dom: u16,
        /// OUT `uint32_t nr_frames`.
        pub nr_frames: u32,
        /// OUT `uint32_t max_nr_frames`.
        pub max_nr_frames: u32,
        /// OUT `int16_t status`.
        pub status: i16,
    }
    const _: () = assert!(core::mem::size_of::<QuerySize>() == 16);
}

/// `shared_info` layout (`xen.h`, `arch-x86/xen.h`, x86_64).
pub mod shared_info {
    /// Offset of `vcpu_info[0].time` (`struct vcpu_time_info`).
    pub const VCPU0_TIME: usize = 32;
    /// Offset of `evtchn_pending[]` (64 x `xen_ulong_t`).
    pub const EVTCHN_PENDING: usize = 2048;
    /// Offset of `evtchn_mask[]`.
    pub const EVTCHN_MASK: usize = 2560;
    /// Number of 2-level event channel ports on x86_64.
    pub const NR_PORTS: u32 = 64 * 64;

    /// Offsets inside `struct vcpu_time_info`.
    pub mod time {
        /// `uint32_t version`.
        pub const VERSION: usize = 0;
        /// `uint64_t tsc_timestamp`.
        pub const TSC_TIMESTAMP: usize = 8;
        /// `uint64_t system_time`.
        pub const SYSTEM_TIME: usize = 16;
        /// `uint32_t tsc_to_system_mul`.
        pub const TSC_TO_SYSTEM_MUL: usize = 24;
        /// `int8_t tsc_shift` (followed by `uint8_t flags`).
        pub const TSC_SHIFT: usize = 28;
    }
}
