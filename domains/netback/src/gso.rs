//! Software segmentation of TCPv4 GSO packets, for frontends that did not
//! ask for them (no `feature-gso-tcpv4`, such as Windsor's netfront).
//!
//! A frontend that takes GSO (Linux's xen-netfront) sends TCP segments of
//! up to 64 KiB with a `XEN_NETIF_GSO_TYPE_TCPV4` extra slot giving the
//! segment size; a peer that cannot take them gets them cut here, as
//! Linux's stack does before handing a packet to a device without TSO:
//! each segment carries `size` bytes of the payload with the headers
//! copied, the IPv4 total length, id (`+1` per segment) and header
//! checksum rewritten, the TCP sequence number advanced, `FIN`/`PSH` only
//! on the last segment and `CWR` only on the first, and a full TCP
//! checksum (the segments leave with no offload metadata).
//!
//! IPv4 behind Ethernet (one optional 802.1Q tag), TCP. Every offset is
//! checked against the frame first; anything else is refused (`None`), and
//! so is a packet that would make more than [`MAX_SEGMENTS`] segments.

use alloc::vec::Vec;

use crate::csum::{fold, sum};

/// Most segments one packet is cut into (a 64 KiB packet with a 536-byte
/// MSS makes 123).
pub const MAX_SEGMENTS: usize = 256;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Cuts a TCPv4 `frame` into segments of at most `mss` payload bytes.
/// `None` if it is not an IPv4 TCP frame, its headers do not fit, `mss`
/// is 0, or it would make more than [`MAX_SEGMENTS`] segments.
pub fn segment_tcpv4(frame: &[u8], mss: u16) -> Option<Vec<Vec<u8>>> {
    let mss = usize::from(mss);
    let mut l3 = 14;
    let mut ty = be16(frame, 12)?;
    if ty == ETH_P_8021Q {
        ty = be16(frame, 16)?;
        l3 = 18;
    }
    if ty != ETH_P_IP || mss == 0 || frame.len() < l3 + 20 || frame[l3] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    if ihl < 20 || frame[l3 + 9] != IPPROTO_TCP {
        return None;
    }
    // The IPv4 total length bounds the packet (Ethernet padding after it
    // is not payload); 0 or a length past the frame is refused.
    let total = usize::from(be16(frame, l3 + 2)?);
    let end = l3 + total;
    let l4 = l3 + ihl;
    if total < ihl + 20 || end > frame.len() {
        return None;
    }
    let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
    let data = l4 + doff;
    if doff < 20 || data > end {
        return None;
    }
    let payload = &frame[data..end];
    let n = payload.len().div_ceil(mss).max(1);
    if n > MAX_SEGMENTS {
        return None;
    }
    let id = be16(frame, l3 + 4)?;
    let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().ok()?);
    let flags = frame[l4 + 13];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let mut s = Vec::with_capacity(data + chunk.len());
        s.extend_from_slice(&frame[..data]);
        s.extend_from_slice(chunk);
        // IPv4: length, id, header checksum.
        put16(&mut s, l3 + 2, (ihl + doff + chunk.len()) as u16);
        put16(&mut s, l3 + 4, id.wrapping_add(i as u16));
        put16(&mut s, l3 + 10, 0);
        let c = fold(sum(0, &s[l3..l4]));
        put16(&mut s, l3 + 10, c);
        // TCP: sequence number, flags, checksum.
        let sq = seq.wrapping_add((i * mss) as u32);
        s[l4 + 4..l4 + 8].copy_from_slice(&sq.to_be_bytes());
        let mut f = flags;
        if i + 1 < n {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        s[l4 + 13] = f;
        put16(&mut s, l4 + 16, 0);
        let len = doff + chunk.len();
        let mut acc = sum(0, &s[l3 + 12..l3 + 20]);
        acc += u32::from(IPPROTO_TCP) + len as u32;
        acc = sum(acc, &s[l4..]);
        put16(&mut s, l4 + 16, fold(acc));
        out.push(s);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// An Ethernet + IPv4 + TCP frame with `payload`.
    fn tcp_frame(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        put16(&mut f, 16, (40 + payload.len()) as u16);
        put16(&mut f, 18, 0x1234);
        f[14 + 8] = 64;
        f[14 + 9] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        put16(&mut f, 34, 40000);
        put16(&mut f, 36, 7);
        f[38..42].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f.extend_from_slice(payload);
        f
    }

    /// The Internet checksum over `b` verifies (sums to 0xffff).
    fn verifies(acc: u32) -> bool {
        fold(acc) == 0
    }

    #[test]
    fn segments_carry_the_payload_with_valid_headers() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let f = tcp_frame(&payload, TCP_PSH | TCP_FIN | TCP_CWR | 0x10);
        let segs = segment_tcpv4(&f, 1448).expect("segments");
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let tot = usize::from(be16(s, 16).unwrap());
            assert_eq!(tot + 14, s.len());
            assert_eq!(be16(s, 18).unwrap(), 0x1234 + i as u16);
            assert!(verifies(sum(0, &s[14..34])), "ip checksum of {i}");
            let len = s.len() - 34;
            let acc = sum(0, &s[26..34]) + u32::from(IPPROTO_TCP) + len as u32;
            assert!(verifies(sum(acc, &s[34..])), "tcp checksum of {i}");
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(i as u32 * 1448));
            let fl = s[47];
            assert_eq!(fl & (TCP_FIN | TCP_PSH) != 0, i == 2, "fin/psh on {i}");
            assert_eq!(fl & TCP_CWR != 0, i == 0, "cwr on {i}");
            assert_eq!(fl & 0x10, 0x10, "ack kept on {i}");
            joined.extend_from_slice(&s[54..]);
        }
        assert_eq!(joined, payload);
        assert_eq!(segs[2].len(), 54 + 3000 - 2 * 1448);
    }

    #[test]
    fn non_tcp_bad_lengths_and_too_many_segments_are_refused() {
        let f = tcp_frame(&[1; 100], 0);
        assert!(segment_tcpv4(&f, 0).is_none());
        let mut udp = f.clone();
        udp[23] = 17;
        assert!(segment_tcpv4(&udp, 50).is_none());
        let mut long = f.clone();
        put16(&mut long, 16, 2000);
        assert!(segment_tcpv4(&long, 50).is_none());
        // A TCP header (60 bytes) longer than the 30 bytes after the IP header.
        let mut doff = tcp_frame(&[1; 10], 0);
        doff[46] = 15 << 4;
        assert!(segment_tcpv4(&doff, 50).is_none());
        let big = tcp_frame(&vec![0; 60000], 0);
        assert!(segment_tcpv4(&big, 100).is_none());
        assert_eq!(segment_tcpv4(&big, 1448).map(|s| s.len()), Some(42));
        // Garbage never panics.
        for n in 0..80 {
            let _ = segment_tcpv4(&f[..n], 10);
        }
    }
}
