//! Checksum completion for frames a frontend sent with a partial checksum
//! (`NETTXF_csum_blank`), before they leave for a peer that cannot finish
//! it (the host's TAP uplink takes frames without offload metadata).
//!
//! Handles IPv4 (optionally behind one 802.1Q tag) carrying TCP or UDP:
//! the checksum field is recomputed from scratch over the pseudo-header
//! and the segment. Anything else is left as it is. Every offset is checked
//! against the frame first, so a hostile frame cannot make it panic.

const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// Adds `bytes` as big-endian 16-bit words to `acc` (an odd last byte is
/// the high half of a word).
pub(crate) fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut it = bytes.chunks_exact(2);
    for w in &mut it {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = it.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds the carries of `acc` and complements: the checksum field.
pub(crate) fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Fills in the TCP or UDP checksum of `frame`; `true` if it did.
pub fn complete(frame: &mut [u8]) -> bool {
    let mut l3 = 14;
    let Some(mut ty) = be16(frame, 12) else {
        return false;
    };
    if ty == ETH_P_8021Q {
        let Some(t) = be16(frame, 16) else {
            return false;
        };
        ty = t;
        l3 = 18;
    }
    if ty != ETH_P_IP || frame.len() < l3 + 20 {
        return false;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let Some(total) = be16(frame, l3 + 2).map(usize::from) else {
        return false;
    };
    if frame[l3] >> 4 != 4 || ihl < 20 || total < ihl || frame.len() < l3 + total {
        return false;
    }
    let proto = frame[l3 + 9];
    let l4 = l3 + ihl;
    let len = total - ihl;
    let field = match proto {
        IPPROTO_TCP if len >= 20 => l4 + 16,
        IPPROTO_UDP if len >= 8 => l4 + 6,
        _ => return false,
    };
    frame[field] = 0;
    frame[field + 1] = 0;
    let mut acc = sum(0, &frame[l3 + 12..l3 + 20]);
    acc += u32::from(proto) + len as u32;
    acc = sum(acc, &frame[l4..l4 + len]);
    let mut c = fold(acc);
    if proto == IPPROTO_UDP && c == 0 {
        c = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Ethernet + IPv4 10.0.0.2 -> 10.0.0.3 + `l4` (protocol `proto`).
    fn frame(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[0, 0x16, 0x3e, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + l4.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0x66, 0xc4]);
        f.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 3]);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn fills_tcp_and_udp_checksums() {
        // TCP 40000 -> 7, seq 1, PSH|ACK, window 65535, "windsor";
        // checksum 0x343b computed independently.
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&40000u16.to_be_bytes());
        tcp.extend_from_slice(&7u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff]);
        tcp.extend_from_slice(&[0xde, 0xad, 0, 0]); // partial checksum junk
        tcp.extend_from_slice(b"windsor");
        let mut f = frame(6, &tcp);
        assert!(complete(&mut f));
        assert_eq!(&f[14 + 20 + 16..14 + 20 + 18], &[0x34, 0x3b]);
        // UDP 5353 -> 53, "windsor": 0x0b70.
        let mut udp = Vec::new();
        udp.extend_from_slice(&5353u16.to_be_bytes());
        udp.extend_from_slice(&53u16.to_be_bytes());
        udp.extend_from_slice(&15u16.to_be_bytes());
        udp.extend_from_slice(&[0x12, 0x34]);
        udp.extend_from_slice(b"windsor");
        let mut f = frame(17, &udp);
        assert!(complete(&mut f));
        assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0x0b, 0x70]);
    }

    #[test]
    fn leaves_other_frames_alone() {
        let mut f = frame(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let before = f.clone();
        assert!(!complete(&mut f));
        assert_eq!(f, before);
        let mut short = frame(6, &[0; 4]);
        assert!(!complete(&mut short));
        assert!(!complete(&mut []));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(mut f in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = complete(&mut f);
        }
    }
}
