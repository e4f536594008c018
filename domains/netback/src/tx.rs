//! The tx ring: packets a frontend sends, parsed into typed views.
//!
//! A packet is a chain of [`NetifTxRequest`] slots (`NETTXF_more_data`),
//! the first optionally followed by extra-info slots (`NETTXF_extra_info`,
//! chained by `XEN_NETIF_EXTRA_FLAG_MORE`). The first slot's `size` is the
//! whole packet; every other slot's `size` is its own bytes, so the first
//! slot carries `size - sum(others)`.
//!
//! [`parse`] reads the chain from the ring (copies, never references) and
//! decides, as Linux netback does:
//! * a chain of more than [`MAX_SLOTS`] (18, `XEN_NETIF_NR_SLOTS_MIN`) data
//!   slots is **dropped** (every slot answered `NETIF_RSP_ERROR`), and more
//!   than [`FATAL_SLOTS`] (20, Linux's `fatal_skb_slots`) is **fatal**;
//! * a slot crossing its page, a slot bigger than the packet, a chain that
//!   runs past `req_prod`, an unknown extra type or a bad GSO descriptor
//!   are **fatal**: the VIF is disconnected;
//! * a runt (under an Ethernet header) or a non-GSO packet over the MTU is
//!   dropped.
//!
//! Fatal means the frontend is broken or hostile; a drop answers the
//! slots and goes on.

use heapless::Vec as HVec;
use xen::abi::netif::{
    NetifExtra, NetifExtraInfo, NetifTxRequest, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO,
    NETTXF_MORE_DATA, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_GSO_TYPE_TCPV4,
    XEN_NETIF_GSO_TYPE_TCPV6,
};
use xen::{GrantRef, PAGE_SIZE};
use zerocopy::{FromBytes, IntoBytes};

use crate::ring::{BackRing, RingError, RingMem};

/// Data slots a packet may use (`XEN_NETIF_NR_SLOTS_MIN`).
pub const MAX_SLOTS: usize = 18;
/// Beyond this many data slots a packet is fatal (Linux's default
/// `fatal_skb_slots`).
pub const FATAL_SLOTS: usize = 20;
/// Extra-info slots a packet may carry (one per type).
pub const MAX_EXTRAS: usize = 4;
/// Bytes of an Ethernet header: the smallest packet we forward.
pub const ETH_HLEN: u16 = 14;

/// One data slot of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSlot {
    /// Grant of the page holding the bytes.
    pub gref: GrantRef,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes in this slot.
    pub len: u16,
}

/// Segmentation offload asked for by the frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// Segment size.
    pub size: u16,
    /// `XEN_NETIF_GSO_TYPE_TCPV4` or `_TCPV6`.
    pub gso_type: u8,
}

/// A packet's slots, as read from the ring (the bytes are still in the
/// guest's pages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    /// Data slots, in order.
    pub slots: HVec<TxSlot, MAX_SLOTS>,
    /// Total bytes.
    pub size: u16,
    /// `NETTXF_csum_blank` on the first slot: the checksum is partial.
    pub csum_blank: bool,
    /// The GSO extra, if any.
    pub gso: Option<Gso>,
}

/// What to answer for each ring slot a packet used, in ring order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Answers {
    /// `(id, is_extra)` for every slot consumed; extras answer
    /// `NETIF_RSP_NULL`, data slots the packet's status.
    pub slots: HVec<(u16, bool), { FATAL_SLOTS + MAX_EXTRAS }>,
}

/// Why a packet was dropped (the frontend may go on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDrop {
    /// More than [`MAX_SLOTS`] data slots.
    TooManySlots(usize),
    /// Shorter than an Ethernet header.
    Runt(u16),
    /// Over the MTU without a GSO descriptor.
    OverMtu(u16),
}

/// The frontend broke the protocol: disconnect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The ring indices are impossible.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The chain runs past the requests the frontend published.
    #[error("packet chain runs past req_prod ({0} slots published)")]
    MissingSlots(u32),
    /// More than [`FATAL_SLOTS`] data slots.
    #[error("packet uses more than {FATAL_SLOTS} slots")]
    TooManySlots,
    /// A slot's bytes cross the end of its page.
    #[error("slot offset {offset} + size {size} crosses the page")]
    CrossesPage {
        /// The slot's offset.
        offset: u16,
        /// The slot's size.
        size: u16,
    },
    /// The other slots hold more bytes than the first slot says the packet has.
    #[error("slots hold {slots} bytes, more than the packet's {size}")]
    SlotsBiggerThanPacket {
        /// Bytes of the other slots.
        slots: u32,
        /// The packet size of the first slot.
        size: u16,
    },
    /// An extra-info slot of an unknown or repeated type.
    #[error("bad extra-info type {0}")]
    BadExtra(u8),
    /// A GSO descriptor with size 0 or an unknown type.
    #[error("bad GSO descriptor (size {size}, type {gso_type})")]
    BadGso {
        /// The segment size.
        size: u16,
        /// The type.
        gso_type: u8,
    },
}

/// One packet taken from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A packet to copy and forward.
    Packet(TxPacket, Answers),
    /// A packet to drop: answer its slots with `NETIF_RSP_ERROR`.
    Drop(TxDrop, Answers),
}

/// Takes the next packet off the ring (the caller saw `unconsumed() > 0`),
/// consuming its slots. On `Err` the ring is left as it was; the VIF is
/// to be disconnected.
pub fn parse<M: RingMem + ?Sized>(
    ring: &mut BackRing,
    mem: &M,
    mtu: u16,
) -> Result<Parsed, TxError> {
    let avail = ring.unconsumed(mem)?;
    let mut ahead = 0u32;
    let next = |ahead: &mut u32| -> Result<NetifTxRequest, TxError> {
        if *ahead >= avail {
            return Err(TxError::MissingSlots(avail));
        }
        let r: NetifTxRequest = ring.peek(mem, *ahead);
        *ahead += 1;
        Ok(r)
    };
    let mut answers = Answers::default();
    let first = next(&mut ahead)?;
    let _ = answers.slots.push((first.id, false));
    let mut gso = None;
    if first.flags & NETTXF_EXTRA_INFO != 0 {
        let mut seen = 0u8;
        loop {
            if answers.slots.len() > MAX_EXTRAS {
                // Every extra type at most once: more is a repeat.
                return Err(TxError::BadExtra(0));
            }
            let raw = next(&mut ahead)?;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&raw.as_bytes()[..8]);
            let extra =
                NetifExtraInfo::read_from_bytes(&bytes).map_err(|_| TxError::BadExtra(0))?;
            let _ = answers.slots.push((raw.id, true));
            let bit = 1u8.checked_shl(u32::from(extra.r#type)).unwrap_or(0);
            if seen & bit != 0 {
                return Err(TxError::BadExtra(extra.r#type));
            }
            seen |= bit;
            match extra.decode() {
                Some(NetifExtra::Gso { size, gso_type, .. }) => {
                    if size == 0
                        || (gso_type != XEN_NETIF_GSO_TYPE_TCPV4
                            && gso_type != XEN_NETIF_GSO_TYPE_TCPV6)
                    {
                        return Err(TxError::BadGso { size, gso_type });
                    }
                    gso = Some(Gso { size, gso_type });
                }
                // Multicast filters and hashes are accepted and ignored
                // (we flood multicast; no hashing).
                Some(_) => {}
                None => return Err(TxError::BadExtra(extra.r#type)),
            }
            if extra.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                break;
            }
        }
    }
    let mut slots: HVec<TxSlot, FATAL_SLOTS> = HVec::new();
    let _ = slots.push(TxSlot {
        gref: GrantRef(first.gref),
        offset: first.offset,
        len: 0,
    });
    let mut rest: u32 = 0;
    let mut cur = first;
    while cur.flags & NETTXF_MORE_DATA != 0 {
        cur = next(&mut ahead)?;
        if slots.is_full() {
            return Err(TxError::TooManySlots);
        }
        let _ = answers.slots.push((cur.id, false));
        if usize::from(cur.offset) + usize::from(cur.size) > PAGE_SIZE {
            return Err(TxError::CrossesPage {
                offset: cur.offset,
                size: cur.size,
            });
        }
        rest += u32::from(cur.size);
        let _ = slots.push(TxSlot {
            gref: GrantRef(cur.gref),
            offset: cur.offset,
            len: cur.size,
        });
    }
    if rest > u32::from(first.size) {
        return Err(TxError::SlotsBiggerThanPacket {
            slots: rest,
            size: first.size,
        });
    }
    // The first slot carries what the others do not.
    let first_len = first.size - rest as u16;
    if usize::from(first.offset) + usize::from(first_len) > PAGE_SIZE {
        return Err(TxError::CrossesPage {
            offset: first.offset,
            size: first_len,
        });
    }
    slots[0].len = first_len;
    ring.consume(ahead);
    let drop = if slots.len() > MAX_SLOTS {
        Some(TxDrop::TooManySlots(slots.len()))
    } else if first.size < ETH_HLEN {
        Some(TxDrop::Runt(first.size))
    } else if gso.is_none() && first.size > mtu.saturating_add(ETH_HLEN) {
        Some(TxDrop::OverMtu(first.size))
    } else {
        None
    };
    if let Some(d) = drop {
        return Ok(Parsed::Drop(d, answers));
    }
    let mut data = HVec::new();
    for s in slots {
        let _ = data.push(s);
    }
    Ok(Parsed::Packet(
        TxPacket {
            slots: data,
            size: first.size,
            csum_blank: first.flags & NETTXF_CSUM_BLANK != 0,
            gso,
        },
        answers,
    ))
}
