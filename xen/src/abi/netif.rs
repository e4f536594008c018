//! The network device protocol (`xen/include/public/io/netif.h`, Xen 4.17).
//!
//! Two [`super::ring`] rings per queue, both set up by the frontend (a
//! guest's netfront) and served by the backend (Windsor's netback):
//!
//! * tx: the frontend produces [`NetifTxRequest`]s (a packet is one request
//!   per slot, chained with `NETTXF_more_data`, optionally followed by
//!   [`NetifExtraInfo`] slots when `NETTXF_extra_info` is set); the backend
//!   copies the granted bytes out and answers [`NetifTxResponse`]s.
//! * rx: the frontend posts [`NetifRxRequest`]s (empty granted buffers); the
//!   backend fills them and answers [`NetifRxResponse`]s.
//!
//! ```text
//! netif_tx_request   0: gref u32  4: offset u16  6: flags u16  8: id u16  10: size u16  (12)
//! netif_tx_response  0: id u16  2: status i16                                           (4)
//! netif_rx_request   0: id u16  2: pad u16  4: gref u32                                 (8)
//! netif_rx_response  0: id u16  2: offset u16  4: flags u16  6: status i16              (8)
//! netif_extra_info   0: type u8  1: flags u8  2: u (6 bytes: gso | mcast | hash)        (8)
//!   gso:   2: size u16  4: type u8  5: pad u8  6: features u16
//!   mcast: 2: addr [u8; 6]
//!   hash:  2: type u8  3: algorithm u8  4: value [u8; 4]
//! ring entries: tx 12 bytes -> 256 per page, rx 8 bytes -> 256 per page
//! ```
//!
//! Every request and extra-info slot comes from the guest and is untrusted:
//! decode it with [`NetifExtraInfo::decode`] and the flag constants, and
//! check sizes and offsets against the page before touching grants.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{entry_size, ring_size};

/// `XEN_NETIF_NR_SLOTS_MIN`: slots a backend must accept for one packet.
pub const XEN_NETIF_NR_SLOTS_MIN: u32 = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: the largest packet on the tx ring.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

/// `NETTXF_csum_blank`: the checksum is not computed (partial).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the checksum has been validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: an extra-info slot follows.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated`: the checksum has been validated.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`: the checksum is not computed (partial).
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETRXF_gso_prefix`: a GSO prefix descriptor precedes the packet.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `XEN_NETIF_EXTRA_TYPE_NONE`: never used (invalid).
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO`: `u.gso`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`: `u.mcast`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`: `u.mcast`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`: `u.hash`.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: types are below this.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `NETIF_RSP_DROPPED`: the packet was dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`: the request was malformed or failed.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: a response for an extra-info slot (no data).
pub const NETIF_RSP_NULL: i16 = 1;

/// `struct netif_tx_request`: one slot of an outgoing packet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifTxRequest {
    /// Grant of the page holding the data.
    pub gref: u32,
    /// Offset of the data within the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: size of the whole packet; others: bytes in this slot.
    pub size: u16,
}

/// `struct netif_tx_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifTxResponse {
    /// The request's `id`.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request`: an empty buffer for an incoming packet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// Grant of the buffer page.
    pub gref: u32,
}

/// `struct netif_rx_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifRxResponse {
    /// The request's `id`.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes received (> 0) or a negative `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_extra_info`: an extra-info ring slot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The union `u` (6 bytes, 2-aligned), native byte order.
    pub u: [u16; 3],
}

/// A decoded [`NetifExtraInfo`] union.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetifExtra {
    /// `u.gso`: segmentation offload parameters.
    Gso {
        /// Maximum segment size.
        size: u16,
        /// `XEN_NETIF_GSO_TYPE_*`.
        gso_type: u8,
        /// Feature bits (none defined).
        features: u16,
    },
    /// `u.mcast` for `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
    McastAdd([u8; 6]),
    /// `u.mcast` for `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
    McastDel([u8; 6]),
    /// `u.hash`: the packet's hash.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
        hash_type: u8,
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// The hash value's bytes.
        value: [u8; 4],
    },
}

impl NetifExtraInfo {
    fn ubytes(&self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b.copy_from_slice(self.u.as_bytes());
        b
    }

    /// Decodes `type` and the union; `None` for `NONE` or unknown types.
    pub fn decode(&self) -> Option<NetifExtra> {
        let b = self.ubytes();
        Some(match self.r#type {
            XEN_NETIF_EXTRA_TYPE_GSO => NetifExtra::Gso {
                size: u16::from_ne_bytes([b[0], b[1]]),
                gso_type: b[2],
                features: u16::from_ne_bytes([b[4], b[5]]),
            },
            XEN_NETIF_EXTRA_TYPE_MCAST_ADD => NetifExtra::McastAdd(b),
            XEN_NETIF_EXTRA_TYPE_MCAST_DEL => NetifExtra::McastDel(b),
            XEN_NETIF_EXTRA_TYPE_HASH => NetifExtra::Hash {
                hash_type: b[0],
                algorithm: b[1],
                value: [b[2], b[3], b[4], b[5]],
            },
            _ => return None,
        })
    }

    /// Encodes an extra-info slot with `flags` (`XEN_NETIF_EXTRA_FLAG_*`).
    pub fn encode(extra: NetifExtra, flags: u8) -> Self {
        let mut b = [0u8; 6];
        let ty = match extra {
            NetifExtra::Gso {
                size,
                gso_type,
                features,
            } => {
                b[..2].copy_from_slice(&size.to_ne_bytes());
                b[2] = gso_type;
                b[4..].copy_from_slice(&features.to_ne_bytes());
                XEN_NETIF_EXTRA_TYPE_GSO
            }
            NetifExtra::McastAdd(a) => {
                b = a;
                XEN_NETIF_EXTRA_TYPE_MCAST_ADD
            }
            NetifExtra::McastDel(a) => {
                b = a;
                XEN_NETIF_EXTRA_TYPE_MCAST_DEL
            }
            NetifExtra::Hash {
                hash_type,
                algorithm,
                value,
            } => {
                b[0] = hash_type;
                b[1] = algorithm;
                b[2..].copy_from_slice(&value);
                XEN_NETIF_EXTRA_TYPE_HASH
            }
        };
        let mut u = [0u16; 3];
        u.as_mut_bytes().copy_from_slice(&b);
        Self {
            r#type: ty,
            flags,
            u,
        }
    }
}

/// Size of a tx ring entry (`union netif_tx_sring_entry`).
pub const NETIF_TX_ENTRY_SIZE: usize = entry_size::<NetifTxRequest, NetifTxResponse>();
/// Size of an rx ring entry (`union netif_rx_sring_entry`).
pub const NETIF_RX_ENTRY_SIZE: usize = entry_size::<NetifRxRequest, NetifRxResponse>();
/// `NET_TX_RING_SIZE` for one 4 KiB page.
pub const NET_TX_RING_SIZE: u32 = ring_size(NETIF_TX_ENTRY_SIZE, crate::PAGE_SIZE);
/// `NET_RX_RING_SIZE` for one 4 KiB page.
pub const NET_RX_RING_SIZE: u32 = ring_size(NETIF_RX_ENTRY_SIZE, crate::PAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_netif_h() {
        assert_layout!(NetifTxRequest, size 12, align 4,
            gref @ 0, offset @ 4, flags @ 6, id @ 8, size @ 10);
        assert_layout!(NetifTxResponse, size 4, align 2, id @ 0, status @ 2);
        assert_layout!(NetifRxRequest, size 8, align 4, id @ 0, pad @ 2, gref @ 4);
        assert_layout!(NetifRxResponse, size 8, align 2, id @ 0, offset @ 2, flags @ 4, status @ 6);
        assert_layout!(NetifExtraInfo, size 8, align 2, r#type @ 0, flags @ 1, u @ 2);
        assert_eq!(NETIF_TX_ENTRY_SIZE, 12);
        assert_eq!(NETIF_RX_ENTRY_SIZE, 8);
        assert_eq!(NET_TX_RING_SIZE, 256);
        assert_eq!(NET_RX_RING_SIZE, 256);
    }

    #[test]
    fn extra_info_round_trips() {
        let cases = [
            NetifExtra::Gso {
                size: 1448,
                gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
                features: 0,
            },
            NetifExtra::McastAdd([1, 0, 0x5e, 0, 0, 1]),
            NetifExtra::McastDel([0x33, 0x33, 0, 0, 0, 1]),
            NetifExtra::Hash {
                hash_type: 1,
                algorithm: 1,
                value: [1, 2, 3, 4],
            },
        ];
        for e in cases {
            let slot = NetifExtraInfo::encode(e, XEN_NETIF_EXTRA_FLAG_MORE);
            let back = NetifExtraInfo::read_from_bytes(slot.as_bytes()).unwrap();
            assert_eq!(back.decode(), Some(e));
            assert_eq!(back.flags, XEN_NETIF_EXTRA_FLAG_MORE);
        }
        // gso.size sits at byte 2 of the slot, gso.type at byte 4.
        let slot = NetifExtraInfo::encode(cases[0], 0);
        assert_eq!(&slot.as_bytes()[2..4], &1448u16.to_ne_bytes());
        assert_eq!(slot.as_bytes()[4], XEN_NETIF_GSO_TYPE_TCPV4);
        for bad in [XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_MAX, 0xff] {
            let slot = NetifExtraInfo {
                r#type: bad,
                ..Default::default()
            };
            assert_eq!(slot.decode(), None);
        }
    }
}
