//! The `xsd_sockmsg` codec (`xen/include/public/io/xs_wire.h`, Xen 4.17).
//!
//! Producers: clients (guests' xenbus drivers, `xenstore-*` tools over the
//! Unix socket) send requests; the store sends replies and watch events.
//! Consumers: the other side. Both directions use the same framing:
//!
//! ```text
//!  0        4        8        12       16
//!  +--------+--------+--------+--------+---------------------------+
//!  |  type  | req_id | tx_id  |  len   | payload (len <= 4096)     |
//!  +--------+--------+--------+--------+---------------------------+
//!  all u32, little endian (the byte order of x86 Xen guests)
//! ```
//!
//! [`Decoder`] is an incremental parser that never reads by itself: the
//! transport gives it whatever bytes it has, and it answers how many more it
//! needs ([`Decoder::need`]). Every length is bounded before anything is
//! allocated (`len > XENSTORE_PAYLOAD_MAX` is XSA-72's oversized message and
//! a fatal protocol error for the connection). [`Header::emit`] and
//! [`Packet::emit`] write the other direction.
//!
//! Message types, limits and the error table come from
//! `xen::abi::xs_wire`; [`XsOp`] is its `XsdSockmsgType`.

use alloc::vec::Vec;

use xen::Errno;

pub use xen::abi::xs_wire::XsdSockmsgType as XsOp;
use xen::abi::xs_wire::{xsd_error_from_name, xsd_error_name};

/// `XENSTORE_PAYLOAD_MAX`: the largest payload of one message.
pub const PAYLOAD_MAX: usize = xen::abi::xs_wire::XENSTORE_PAYLOAD_MAX;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = xen::abi::xs_wire::XENSTORE_ABS_PATH_MAX;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = xen::abi::xs_wire::XENSTORE_REL_PATH_MAX;
/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = core::mem::size_of::<xen::abi::xs_wire::XsdSockmsg>();

/// Byte ranges of the header fields.
pub mod field {
    use core::ops::Range;
    /// `type`.
    pub const TYPE: Range<usize> = 0..4;
    /// `req_id`.
    pub const REQ_ID: Range<usize> = 4..8;
    /// `tx_id`.
    pub const TX_ID: Range<usize> = 8..12;
    /// `len`.
    pub const LEN: Range<usize> = 12..16;
}

/// The `XS_ERROR` payload string for an errno (without the NUL). An errno
/// not in `xsd_errors[]` is sent as `EINVAL`, as xenstored does.
pub fn error_name(e: Errno) -> &'static str {
    xsd_error_name(e).unwrap_or("EINVAL")
}

/// Parses an `XS_ERROR` payload (with or without its NUL).
pub fn error_from_name(payload: &[u8]) -> Option<Errno> {
    xsd_error_from_name(payload.strip_suffix(b"\0").unwrap_or(payload))
}

/// Why bytes could not be decoded. Every variant is fatal for the stream:
/// the connection has lost framing and must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// `len` is larger than `XENSTORE_PAYLOAD_MAX` (XSA-72).
    #[error("payload length {0} exceeds XENSTORE_PAYLOAD_MAX")]
    PayloadTooLong(u32),
    /// The buffer is shorter than the message it should hold.
    #[error("buffer too short")]
    Truncated,
}

/// A decoded `xsd_sockmsg` header. `ty` stays raw so that unknown types can
/// be answered with `ENOSYS` instead of breaking the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// `type`: an [`XsOp`] number, or anything else a peer sent.
    pub ty: u32,
    /// `req_id`, echoed in the reply.
    pub req_id: u32,
    /// `tx_id`, echoed in the reply.
    pub tx_id: u32,
    /// `len` of the payload that follows.
    pub len: u32,
}

fn u32_at(b: &[u8; HEADER_LEN], r: core::ops::Range<usize>) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[r]);
    u32::from_le_bytes(w)
}

impl Header {
    /// A header for `op`.
    pub fn new(op: XsOp, req_id: u32, tx_id: u32, len: u32) -> Self {
        Header {
            ty: op as u32,
            req_id,
            tx_id,
            len,
        }
    }

    /// The typed message type, if known.
    pub fn op(&self) -> Option<XsOp> {
        XsOp::from_raw(self.ty)
    }

    /// Reads a header. Cannot fail: the length bound is checked by
    /// [`Header::check_len`] (the decoder does it).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            ty: u32_at(b, field::TYPE),
            req_id: u32_at(b, field::REQ_ID),
            tx_id: u32_at(b, field::TX_ID),
            len: u32_at(b, field::LEN),
        }
    }

    /// Rejects payload lengths beyond `XENSTORE_PAYLOAD_MAX`.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.len as usize > PAYLOAD_MAX {
            Err(WireError::PayloadTooLong(self.len))
        } else {
            Ok(())
        }
    }

    /// The 16 bytes of this header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::TYPE].copy_from_slice(&self.ty.to_le_bytes());
        b[field::REQ_ID].copy_from_slice(&self.req_id.to_le_bytes());
        b[field::TX_ID].copy_from_slice(&self.tx_id.to_le_bytes());
        b[field::LEN].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Writes the header into the first 16 bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let dst = out.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(())
    }
}

/// One whole message: header and payload, `header.len == payload.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The header; `len` matches the payload.
    pub header: Header,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Packet {
    /// A packet of `op` with `payload` (the caller keeps it within
    /// `PAYLOAD_MAX`; [`Packet::emit`] does not check).
    pub fn new(op: XsOp, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Self {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        Packet {
            header: Header::new(op, req_id, tx_id, len),
            payload,
        }
    }

    /// The message type.
    pub fn op(&self) -> Option<XsOp> {
        self.header.op()
    }

    /// Bytes [`Packet::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into `out`, which must hold
    /// [`Packet::buffer_len`] bytes.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let n = self.buffer_len();
        let out = out.get_mut(..n).ok_or(WireError::Truncated)?;
        self.header.emit(out)?;
        out[HEADER_LEN..].copy_from_slice(&self.payload);
        Ok(())
    }

    /// Header and payload as one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.buffer_len());
        v.extend_from_slice(&self.header.to_bytes());
        v.extend_from_slice(&self.payload);
        v
    }

    /// Parses exactly one message from the front of `bytes`; returns it and
    /// the number of bytes used.
    pub fn parse(bytes: &[u8]) -> Result<(Packet, usize), WireError> {
        let mut d = Decoder::new();
        let (used, pkt) = d.feed(bytes)?;
        pkt.map(|p| (p, used)).ok_or(WireError::Truncated)
    }
}

/// Incremental decoder of a stream of messages.
///
/// Feed it any number of bytes; it consumes at most one message per call
/// and tells how many it used. It never asks for more than
/// `HEADER_LEN + PAYLOAD_MAX` bytes of memory.
#[derive(Debug, Default)]
pub struct Decoder {
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    header: Option<Header>,
    payload: Vec<u8>,
}

impl Decoder {
    /// A decoder at a message boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes still needed before the current message is complete (at least
    /// 1; 16 at a message boundary).
    pub fn need(&self) -> usize {
        match &self.header {
            None => HEADER_LEN - self.hdr_len,
            Some(h) => (h.len as usize - self.payload.len()).max(1),
        }
    }

    /// True at a message boundary (no partial message buffered).
    pub fn is_idle(&self) -> bool {
        self.hdr_len == 0 && self.header.is_none()
    }

    /// Consumes bytes from `input`, up to the end of one message. Returns
    /// the bytes used and the message if it completed. After an error the
    /// decoder must not be used again (the stream has lost framing).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Packet>), WireError> {
        let mut used = 0;
        if self.header.is_none() {
            let take = (HEADER_LEN - self.hdr_len).min(input.len());
            self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
            self.hdr_len += take;
            used += take;
            if self.hdr_len < HEADER_LEN {
                return Ok((used, None));
            }
            let h = Header::parse(&self.hdr);
            h.check_len()?;
            self.payload = Vec::with_capacity(h.len as usize);
            self.header = Some(h);
        }
        let Some(h) = self.header else {
            return Ok((used, None));
        };
        let want = h.len as usize - self.payload.len();
        let take = want.min(input.len() - used);
        self.payload.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.payload.len() == h.len as usize {
            self.header = None;
            self.hdr_len = 0;
            let payload = core::mem::take(&mut self.payload);
            return Ok((used, Some(Packet { header: h, payload })));
        }
        Ok((used, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// `XS_READ` of "/a", req_id 7, tx 0.
    static READ_A: [u8; 19] = [
        2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'/', b'a', 0,
    ];

    #[test]
    fn parses_fixture() {
        let (p, n) = Packet::parse(&READ_A).unwrap();
        assert_eq!(n, 19);
        assert_eq!(p.op(), Some(XsOp::Read));
        assert_eq!(p.header.req_id, 7);
        assert_eq!(p.payload, b"/a\0");
        assert_eq!(p.to_vec(), READ_A);
    }

    #[test]
    fn byte_at_a_time() {
        let mut d = Decoder::new();
        assert_eq!(d.need(), 16);
        let mut got = None;
        for (i, b) in READ_A.iter().enumerate() {
            let (u, p) = d.feed(core::slice::from_ref(b)).unwrap();
            assert_eq!(u, 1);
            if i < 18 {
                assert!(p.is_none());
            } else {
                got = p;
            }
        }
        assert_eq!(got.unwrap().payload, b"/a\0");
        assert!(d.is_idle());
    }

    #[test]
    fn oversized_len_is_rejected_before_allocation() {
        let h = Header {
            ty: 2,
            req_id: 0,
            tx_id: 0,
            len: 4097,
        };
        let mut d = Decoder::new();
        assert_eq!(d.feed(&h.to_bytes()), Err(WireError::PayloadTooLong(4097)));
        let h = Header { len: u32::MAX, ..h };
        assert!(Decoder::new().feed(&h.to_bytes()).is_err());
    }

    #[test]
    fn two_messages_in_one_buffer() {
        let mut buf = READ_A.to_vec();
        buf.extend_from_slice(&READ_A);
        let mut d = Decoder::new();
        let (u, p) = d.feed(&buf).unwrap();
        assert_eq!(u, 19);
        assert!(p.is_some());
        let (u2, p2) = d.feed(&buf[u..]).unwrap();
        assert_eq!(u2, 19);
        assert!(p2.is_some());
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(Errno::EAGAIN), "EAGAIN");
        assert_eq!(error_name(Errno::ENOTDIR), "EINVAL");
        assert_eq!(error_from_name(b"E2BIG\0"), Some(Errno::E2BIG));
        assert_eq!(XsOp::from_raw(20), None);
        assert_eq!(XsOp::from_raw(22), Some(XsOp::DirectoryPart));
        assert_eq!(HEADER_LEN, 16);
        let p = Packet::new(XsOp::Write, 1, 2, vec![1, 2]);
        let mut small = [0u8; 10];
        assert_eq!(p.emit(&mut small), Err(WireError::Truncated));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip_in_any_chunking(
            ty in any::<u32>(), req in any::<u32>(), tx in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=PAYLOAD_MAX),
            cuts in proptest::collection::vec(1usize..600, 0..20),
        ) {
            let p = Packet { header: Header { ty, req_id: req, tx_id: tx, len: payload.len() as u32 }, payload };
            let bytes = p.to_vec();
            let mut d = Decoder::new();
            let mut off = 0;
            let mut got = None;
            let mut cuts = cuts.into_iter();
            while off < bytes.len() {
                let n = cuts.next().unwrap_or(bytes.len()).min(bytes.len() - off);
                let (u, pkt) = d.feed(&bytes[off..off + n]).unwrap();
                off += u;
                if pkt.is_some() { got = pkt; }
            }
            prop_assert_eq!(got, Some(p));
            prop_assert!(d.is_idle());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..10_000),
                                chunk in 1usize..64) {
            let mut d = Decoder::new();
            let mut rest: &[u8] = &bytes;
            let mut seen: Vec<Packet> = Vec::new();
            while !rest.is_empty() {
                let n = chunk.min(rest.len());
                match d.feed(&rest[..n]) {
                    Ok((u, p)) => { rest = &rest[u..]; seen.extend(p); prop_assert!(u > 0 || n == 0); }
                    Err(_) => break,
                }
            }
            for p in seen { prop_assert!(p.payload.len() <= PAYLOAD_MAX); }
        }
    }
}
