//! PCI devices of a PVH dom0: configuration space through Xen's vPCI,
//! DMA through the IOMMU, and the virtio-net NIC of the QEMU machine.
//!
//! * Configuration space: mechanism #1 (ports `0xcf8`/`0xcfc`), which Xen
//!   4.17 emulates for a PVH dom0 (vPCI); enabling memory decoding makes
//!   Xen map the device's BARs into dom0's physmap at their own address,
//!   so the identity map reaches them (BARs below 4 GiB only).
//! * DMA: a PVH dom0's frame numbers are not machine frames, so devices
//!   must reach dom0's memory through an IOMMU that Xen programs with
//!   dom0's physmap (QEMU's `amd-iommu` on `q35`, Xen's `iommu=1`; see
//!   `shared/design/XEN-BOOT-NOTES.md`). A DMA address is then the
//!   guest-physical address, which is the identity-mapped virtual address
//!   of heap memory: [`DmaHal`].
//! * virtio: `virtio-drivers`' PCI transport. QEMU's virtio devices use
//!   the IOMMU only when the driver accepts `VIRTIO_F_ACCESS_PLATFORM`,
//!   and refuse `FEATURES_OK` without it when `iommu_platform=on`; the
//!   crate's net driver does not list it, so [`AccessPlatform`] adds it to
//!   the features the driver writes when the device offers it.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ptr::NonNull;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::arch;

/// `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.1, 6).
const ACCESS_PLATFORM: u64 = 1 << 33;

/// Queue size of the NIC's virtqueues.
pub const NET_QUEUE: usize = 64;
/// Receive buffer size (an Ethernet frame and the virtio-net header).
pub const NET_BUF: usize = 2048;

/// The virtio-net device type this module drives.
pub type Nic = VirtIONet<DmaHal, AccessPlatform<PciTransport>, NET_QUEUE>;

/// PCI configuration mechanism #1, as Xen's vPCI emulates it for dom0.
#[derive(Debug)]
pub struct PortCam;

fn cf8(df: DeviceFunction, register: u8) -> u32 {
    0x8000_0000
        | u32::from(df.bus) << 16
        | u32::from(df.device & 0x1f) << 11
        | u32::from(df.function & 0x7) << 8
        | u32::from(register & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        arch::pci_config_read(cf8(df, register_offset))
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        arch::pci_config_write(cf8(df, register_offset), data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// DMA for devices behind the IOMMU: heap pages, whose identity-mapped
/// address is the guest-physical address the IOMMU translates.
#[derive(Debug)]
pub struct DmaHal;

fn dma_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).expect("page layout")
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that stays
// allocated until `dma_dealloc`; the heap is identity-mapped below 4 GiB,
// so the virtual address is the guest-physical address, which is what
// the IOMMU (programmed by Xen with dom0's physmap) translates for the
// device. Shared buffers need no bounce: their address is their DMA
// address.
unsafe impl Hal for DmaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(dma_layout(pages)) };
        let p = NonNull::new(p).expect("DMA memory from the heap");
        (p.as_ptr() as PhysAddr, p)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: `vaddr` came from `dma_alloc` with the same page count
        // (the caller's contract).
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        assert!(paddr < 1 << 32, "BAR {paddr:#x} above the identity map");
        NonNull::new(paddr as *mut u8).expect("non-null BAR")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A transport that accepts `VIRTIO_F_ACCESS_PLATFORM` whenever the device
/// offers it (see the module doc).
#[derive(Debug)]
pub struct AccessPlatform<T> {
    inner: T,
    offered: bool,
}

impl<T: Transport> Transport for AccessPlatform<T> {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        let f = self.inner.read_device_features();
        self.offered = f & ACCESS_PLATFORM != 0;
        f
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        let extra = if self.offered { ACCESS_PLATFORM } else { 0 };
        self.inner.write_driver_features(driver_features | extra)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }
    fn read_config_space<V: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.inner.read_config_space(offset)
    }
    fn write_config_space<V: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.inner.write_config_space(offset, value)
    }
}

/// Why no NIC came up.
#[derive(Debug)]
pub enum NicError {
    /// No virtio-net function on bus 0.
    NotFound,
    /// The PCI transport refused the device.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    /// The net driver failed to initialise it.
    Driver(virtio_drivers::Error),
}

impl core::fmt::Display for NicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NicError::NotFound => f.write_str("no virtio-net device on PCI bus 0"),
            NicError::Transport(e) => write!(f, "virtio PCI transport: {e}"),
            NicError::Driver(e) => write!(f, "virtio-net driver: {e}"),
        }
    }
}

/// Finds the first virtio-net function on PCI bus 0, enables its memory
/// decoding and bus mastering, and brings the driver up. Returns the NIC
/// and where it sits (`bb:dd.f`).
pub fn virtio_net() -> Result<(Nic, DeviceFunction), NicError> {
    let mut root = PciRoot::new(PortCam);
    let mut found = None;
    for (df, info) in root.enumerate_bus(0) {
        if virtio_device_type(&info) == Some(DeviceType::Network) {
            found = Some(df);
            break;
        }
    }
    let df = found.ok_or(NicError::NotFound)?;
    let (_, cmd) = root.get_status_command(df);
    root.set_command(df, cmd | Command::MEMORY_SPACE | Command::BUS_MASTER);
    let t = PciTransport::new::<DmaHal, _>(&mut root, df).map_err(NicError::Transport)?;
    let t = AccessPlatform {
        inner: t,
        offered: false,
    };
    let nic = Nic::new(t, NET_BUF).map_err(NicError::Driver)?;
    Ok((nic, df))
}
