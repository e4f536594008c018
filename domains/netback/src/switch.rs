//! A learning switch between the ports of a host: the VIFs and the uplink.
//!
//! The switch learns which port each source MAC address was seen on and
//! forwards unicast frames there; broadcast, multicast and unknown
//! destinations are flooded to every other port. The table is bounded
//! ([`MAX_ENTRIES`]): when full, the oldest entry is forgotten, so a guest
//! sending from random source addresses cannot grow our memory. Entries
//! expire after [`AGEING`]. Time is passed in.

use alloc::collections::BTreeMap;
use core::time::Duration;

/// A switch port (the service numbers VIFs and the uplink).
pub type Port = u32;
/// Most MAC addresses remembered.
pub const MAX_ENTRIES: usize = 1024;
/// How long an address is remembered without traffic (as Linux bridges).
pub const AGEING: Duration = Duration::from_secs(300);

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// To this port only.
    Port(Port),
    /// To every port but the source.
    Flood,
    /// Nowhere (the destination is on the source port).
    Drop,
}

/// The MAC table.
#[derive(Debug, Default)]
pub struct Switch {
    table: BTreeMap<[u8; 6], (Port, Duration)>,
}

impl Switch {
    /// An empty switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns the source of `frame` (from `src`) and says where it goes.
    /// Frames shorter than two addresses are dropped.
    pub fn forward(&mut self, now: Duration, src: Port, frame: &[u8]) -> Forward {
        if frame.len() < 12 {
            return Forward::Drop;
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let mut from = [0u8; 6];
        from.copy_from_slice(&frame[6..12]);
        if from[0] & 1 == 0 {
            self.learn(now, from, src);
        }
        if dst[0] & 1 != 0 {
            return Forward::Flood;
        }
        match self.table.get(&dst) {
            Some(&(p, seen)) if now.saturating_sub(seen) < AGEING => {
                if p == src {
                    Forward::Drop
                } else {
                    Forward::Port(p)
                }
            }
            _ => Forward::Flood,
        }
    }

    fn learn(&mut self, now: Duration, mac: [u8; 6], port: Port) {
        if let Some(e) = self.table.get_mut(&mac) {
            *e = (port, now);
            return;
        }
        if self.table.len() >= MAX_ENTRIES {
            // Forget the stalest entry.
            if let Some(old) = self
                .table
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| *k)
            {
                self.table.remove(&old);
            }
        }
        self.table.insert(mac, (port, now));
    }

    /// Forgets every address learned on `port` (it was unplugged).
    pub fn forget_port(&mut self, port: Port) {
        self.table.retain(|_, (p, _)| *p != port);
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> [u8; 14] {
        let mut f = [0u8; 14];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    #[test]
    fn learns_floods_and_forwards() {
        let t = Duration::ZERO;
        let a = [0, 0x16, 0x3e, 0, 0, 1];
        let b = [0, 0x16, 0x3e, 0, 0, 2];
        let mut s = Switch::new();
        assert_eq!(s.forward(t, 1, &frame(b, a)), Forward::Flood, "b unknown");
        assert_eq!(s.forward(t, 2, &frame(a, b)), Forward::Port(1), "a learned");
        assert_eq!(s.forward(t, 1, &frame(b, a)), Forward::Port(2));
        assert_eq!(s.forward(t, 1, &frame([0xff; 6], a)), Forward::Flood);
        assert_eq!(s.forward(t, 1, &frame(a, a)), Forward::Drop);
        // Ageing.
        assert_eq!(s.forward(AGEING, 1, &frame(b, a)), Forward::Flood);
        s.forget_port(1);
        assert_eq!(s.forward(AGEING, 2, &frame(a, b)), Forward::Flood);
        assert_eq!(s.forward(t, 1, &[0; 5]), Forward::Drop);
    }

    #[test]
    fn table_is_bounded() {
        let mut s = Switch::new();
        for i in 0..(MAX_ENTRIES as u32 * 3) {
            let b = i.to_be_bytes();
            let src = [2, 0, b[0], b[1], b[2], b[3]];
            s.forward(
                Duration::from_micros(u64::from(i)),
                1,
                &frame([0xff; 6], src),
            );
        }
        assert_eq!(s.len(), MAX_ENTRIES);
    }
}
