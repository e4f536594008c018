//! Framing: `len: u32 LE | postcard(Envelope)`, at most [`MAX_FRAME`]
//! bytes of body.
//!
//! ```text
//!  0: len u32 (little endian, 1..=MAX_FRAME)
//!  4: body [u8; len]   postcard encoding of msg::Envelope
//! ```
//!
//! [`Decoder`] is incremental and does no I/O: feed it what the channel
//! gave ([`Decoder::push`]), take envelopes out ([`Decoder::decode`]). It
//! holds at most one frame, so memory stays bounded whatever the peer
//! sends; a frame over the limit, a body that does not decode, or one
//! whose lists or strings exceed the bounds is an error and the caller
//! closes the channel.

use alloc::vec::Vec;

use crate::msg::Envelope;

/// The largest body of a frame.
pub const MAX_FRAME: usize = 32 * 1024;
/// Bytes of the length prefix.
pub const HEADER: usize = 4;

/// The peer sent something that is not a frame of this protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix is 0 or over [`MAX_FRAME`].
    #[error("frame length {0} out of bounds")]
    Length(u32),
    /// The body is not a postcard envelope.
    #[error("frame body does not decode")]
    Decode,
    /// A list or string in the envelope is over its bound.
    #[error("frame exceeds a protocol bound")]
    Bounds,
    /// Our own message does not fit in a frame (a caller bug).
    #[error("message too large to encode")]
    TooLarge,
}

/// Encodes `env` as one frame.
pub fn encode(env: &Envelope) -> Result<Vec<u8>, WireError> {
    let mut out = alloc::vec![0u8; HEADER];
    let body = postcard::to_allocvec(env).map_err(|_| WireError::TooLarge)?;
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(WireError::TooLarge);
    }
    out[..HEADER].copy_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Incremental frame decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bytes the decoder wants before it can make progress (at
    /// least 1). Feed at most this many with [`push`](Self::push) to keep
    /// the buffer within one frame.
    pub fn want(&self) -> usize {
        if self.buf.len() < HEADER {
            return HEADER - self.buf.len();
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        (HEADER + len.min(MAX_FRAME))
            .saturating_sub(self.buf.len())
            .max(1)
    }

    /// Appends bytes; at most [`want`](Self::want) are taken, the count is
    /// returned.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.want());
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Envelope>, WireError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 || len as usize > MAX_FRAME {
            return Err(WireError::Length(len));
        }
        if self.buf.len() < HEADER + len as usize {
            return Ok(None);
        }
        let res = postcard::from_bytes::<Envelope>(&self.buf[HEADER..]);
        self.buf.clear();
        let env = res.map_err(|_| WireError::Decode)?;
        if !env.check_bounds() {
            return Err(WireError::Bounds);
        }
        Ok(Some(env))
    }

    /// Feeds all of `bytes`, returning every envelope they complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<Envelope>, WireError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = self.push(bytes);
            bytes = &bytes[n..];
            if let Some(e) = self.decode()? {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::*;
    use alloc::vec;

    fn env(body: Body) -> Envelope {
        Envelope {
            version: VERSION,
            id: 42,
            body,
        }
    }

    fn samples() -> Vec<Envelope> {
        let dev = DeviceId {
            kind: DeviceKind::Vif,
            frontend: 3,
            devid: 0,
        };
        vec![
            env(Body::Request(Request::Hello)),
            env(Body::Request(Request::Plug {
                device: dev,
                params: DeviceParams::Vif(VifParams {
                    mac: [0, 0x16, 0x3e, 1, 2, 3],
                    mtu: 1500,
                    rate: Some((1_000_000, 20_000)),
                }),
            })),
            env(Body::Request(Request::Counters { device: None })),
            env(Body::Response(Response::Counters(vec![(
                dev,
                DeviceCounters::Vif(VifCounters {
                    tx_packets: 7,
                    ..Default::default()
                }),
            )]))),
            env(Body::Response(Response::Health(Health {
                uptime_ms: 5,
                devices: vec![(dev, DeviceState::Connected)],
            }))),
            env(Body::Response(Response::Error(ErrorCode::NoSuchDevice))),
        ]
    }

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let mut d = Decoder::new();
        for e in samples() {
            let f = encode(&e).unwrap();
            assert_eq!(
                u32::from_le_bytes(f[..4].try_into().unwrap()) as usize,
                f.len() - 4
            );
            let mut got = vec![];
            for b in &f {
                got.extend(d.feed(core::slice::from_ref(b)).unwrap());
            }
            assert_eq!(got, vec![e]);
        }
        // Several frames in one push.
        let all: Vec<u8> = samples().iter().flat_map(|e| encode(e).unwrap()).collect();
        assert_eq!(d.feed(&all).unwrap(), samples());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(&0u32.to_le_bytes()), Err(WireError::Length(0)));
        let mut d = Decoder::new();
        let big = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert_eq!(d.feed(&big), Err(WireError::Length(MAX_FRAME as u32 + 1)));
        let mut d = Decoder::new();
        assert_eq!(
            d.feed(&[3, 0, 0, 0, 0xff, 0xff, 0xff]),
            Err(WireError::Decode)
        );
        // Too many devices in a counters reply.
        let dev = DeviceId {
            kind: DeviceKind::Vbd,
            frontend: 1,
            devid: 51712,
        };
        let e = env(Body::Response(Response::Counters(vec![
            (
                dev,
                DeviceCounters::Vbd(VbdCounters::default())
            );
            MAX_DEVICES + 1
        ])));
        let mut d = Decoder::new();
        assert_eq!(d.feed(&encode(&e).unwrap()), Err(WireError::Bounds));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..16)) {
            let mut d = Decoder::new();
            for c in chunks {
                if d.feed(&c).is_err() {
                    d = Decoder::new();
                }
                proptest::prop_assert!(d.buf.len() <= HEADER + MAX_FRAME);
            }
        }
    }
}
