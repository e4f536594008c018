//! The per-VIF rate limit: a credit of bytes per period, as Linux
//! netback's `rate` key (`<bytes>,<usec>`).
//!
//! Each period the credit is refilled to `bytes`. A packet is sent if the
//! credit covers it, or if the credit is full (so a packet bigger than one
//! period's credit still goes, once per period); otherwise the VIF waits
//! until [`Credit::next_refill`]. Time is passed in.

use core::time::Duration;

/// A credit limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    bytes: u64,
    period: Duration,
    left: u64,
    refilled: Duration,
}

impl Credit {
    /// `bytes` per `usec` microseconds (a zero period is one microsecond).
    pub fn new(bytes: u64, usec: u32, now: Duration) -> Self {
        Credit {
            bytes,
            period: Duration::from_micros(u64::from(usec.max(1))),
            left: bytes,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        if now.saturating_sub(self.refilled) >= self.period {
            self.left = self.bytes;
            self.refilled = now;
        }
    }

    /// Takes `len` bytes of credit if the packet may go now.
    pub fn take(&mut self, now: Duration, len: u64) -> bool {
        self.refill(now);
        if len <= self.left {
            self.left -= len;
            true
        } else if self.left == self.bytes {
            self.left = 0;
            true
        } else {
            false
        }
    }

    /// When the credit is refilled next.
    pub fn next_refill(&self) -> Duration {
        self.refilled.saturating_add(self.period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_limits_bytes_per_period() {
        let ms = Duration::from_millis;
        let mut c = Credit::new(3000, 10_000, ms(0));
        assert!(c.take(ms(0), 1500));
        assert!(c.take(ms(1), 1500));
        assert!(!c.take(ms(2), 1500), "credit spent");
        assert_eq!(c.next_refill(), ms(10));
        assert!(!c.take(ms(9), 1));
        assert!(c.take(ms(10), 1500), "refilled");
        // A packet bigger than the credit goes when the credit is full.
        let mut c = Credit::new(100, 1000, ms(0));
        assert!(c.take(ms(0), 1500));
        assert!(!c.take(ms(0), 1));
    }
}
