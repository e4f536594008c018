//! Xenbus device states (`xen/include/public/io/xenbus.h`, Xen 4.17).
//!
//! Produced by both ends of a split device: the frontend writes its state to
//! `<frontend>/state` and the backend to `<backend>/state` in xenstore, as
//! the decimal text of the number; each end watches the other's. Consumed by
//! the peer and by the toolstack (which waits for `Connected` and tears
//! devices down through `Closing`/`Closed`).
//!
//! ```text
//! Unknown(0) -> Initialising(1) -> InitWait(2) -> Initialised(3) -> Connected(4)
//!            -> Closing(5) -> Closed(6)        (Reconfiguring(7) <-> Reconfigured(8))
//! ```

use core::fmt;

/// `enum xenbus_state` (`XenbusState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u32)]
pub enum XenbusState {
    /// `XenbusStateUnknown`: no state written yet.
    #[default]
    Unknown = 0,
    /// `XenbusStateInitialising`: setting up.
    Initialising = 1,
    /// `XenbusStateInitWait`: early init done, waiting for the peer or hotplug.
    InitWait = 2,
    /// `XenbusStateInitialised`: waiting for the peer to connect.
    Initialised = 3,
    /// `XenbusStateConnected`: the device is usable.
    Connected = 4,
    /// `XenbusStateClosing`: closing on error or unplug.
    Closing = 5,
    /// `XenbusStateClosed`: closed.
    Closed = 6,
    /// `XenbusStateReconfiguring`.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured`.
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        Self::Unknown,
        Self::Initialising,
        Self::InitWait,
        Self::Initialised,
        Self::Connected,
        Self::Closing,
        Self::Closed,
        Self::Reconfiguring,
        Self::Reconfigured,
    ];

    /// Decodes a state number; `None` above 8.
    pub const fn from_raw(v: u32) -> Option<Self> {
        if (v as usize) < Self::ALL.len() {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Parses the xenstore text form: a decimal number, optionally followed
    /// by NUL or newline padding as some frontends write it.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let digits = text
            .iter()
            .position(|&b| b == 0 || b == b'\n')
            .map_or(text, |end| &text[..end]);
        if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = digits
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
        Self::from_raw(v)
    }

    /// The xenstore text form: one ASCII digit.
    pub const fn as_text(self) -> &'static str {
        match self {
            Self::Unknown => "0",
            Self::Initialising => "1",
            Self::InitWait => "2",
            Self::Initialised => "3",
            Self::Connected => "4",
            Self::Closing => "5",
            Self::Closed => "6",
            Self::Reconfiguring => "7",
            Self::Reconfigured => "8",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xenbus_h() {
        for (i, s) in XenbusState::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32);
            assert_eq!(XenbusState::from_raw(i as u32), Some(*s));
            assert_eq!(XenbusState::parse(s.as_text().as_bytes()), Some(*s));
        }
        assert_eq!(XenbusState::Connected as u32, 4);
        assert_eq!(XenbusState::from_raw(9), None);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(XenbusState::parse(b"4\0"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b"6\n"), Some(XenbusState::Closed));
        assert_eq!(XenbusState::parse(b""), None);
        assert_eq!(XenbusState::parse(b"-1"), None);
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::parse(b"4x"), None);
        assert_eq!(XenbusState::parse(b"99999999999"), None);
        assert_eq!(XenbusState::parse(b"004"), Some(XenbusState::Connected));
    }
}
