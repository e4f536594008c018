//! Xen system time from `vcpu_time_info`.
//!
//! Producer: Xen, which rewrites `shared_info.vcpu_info[0].time` whenever
//! it recalibrates; consumer: [`Clock::now`](xen::platform::Clock::now).
//! Mirrors `struct vcpu_time_info` of `xen.h` (Xen 4.17):
//!
//! ```text
//!  0 version u32 (odd while Xen updates)   8 tsc_timestamp u64
//! 16 system_time u64 (ns since Xen boot)   24 tsc_to_system_mul u32   28 tsc_shift i8
//! ```
//!
//! `now = system_time + ((tsc - tsc_timestamp) << tsc_shift) * mul >> 32`,
//! read under the version seqlock.

use crate::abi_local::shared_info::time;
use core::sync::atomic::{fence, Ordering};
use xen::SharedRo;

/// Scales a TSC delta to nanoseconds as Xen specifies (`pvclock`).
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift < 0 {
        delta >> shift.unsigned_abs().min(63)
    } else {
        delta << (shift as u32).min(63)
    };
    ((u128::from(d) * u128::from(mul)) >> 32) as u64
}

/// Xen system time in ns at TSC value `tsc`, from the `vcpu_time_info`
/// at the start of `t`. Retries while Xen is updating the record.
pub fn system_time(t: SharedRo<'_>, tsc: impl Fn() -> u64) -> u64 {
    loop {
        let v1 = t.load_u32(time::VERSION, Ordering::Acquire);
        if v1 & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let stamp = t.load_u64(time::TSC_TIMESTAMP, Ordering::Relaxed);
        let sys = t.load_u64(time::SYSTEM_TIME, Ordering::Relaxed);
        let mul = t.load_u32(time::TSC_TO_SYSTEM_MUL, Ordering::Relaxed);
        let shift = t.load_u8(time::TSC_SHIFT, Ordering::Relaxed) as i8;
        let now = tsc();
        fence(Ordering::Acquire);
        if t.load_u32(time::VERSION, Ordering::Relaxed) == v1 {
            return sys.wrapping_add(scale_delta(now.wrapping_sub(stamp), mul, shift));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use core::sync::atomic::AtomicU8;
    use xen::SharedMem;

    #[test]
    fn scaling_matches_pvclock() {
        // A 2 GHz TSC: mul = 2^31 (0.5 ns per tick), shift 0.
        assert_eq!(scale_delta(2_000_000_000, 1 << 31, 0), 1_000_000_000);
        // Same rate expressed with a shift.
        assert_eq!(scale_delta(2_000_000_000, 1 << 30, 1), 1_000_000_000);
        assert_eq!(scale_delta(4_000_000_000, 1 << 31, -1), 1_000_000_000);
        // Large deltas do not overflow.
        assert_eq!(scale_delta(u64::MAX, 1 << 31, 0), u64::MAX / 2);
    }

    #[test]
    fn reads_the_record() {
        #[repr(C, align(8))]
        struct Rec([AtomicU8; 32]);
        let rec = Rec([const { AtomicU8::new(0) }; 32]);
        // SAFETY: the record outlives the view, is 8-byte aligned and is only
        // accessed through the view.
        let m = unsafe { SharedMem::from_raw(NonNull::from(&rec.0).cast(), 32) };
        m.atomic_u32(time::VERSION).store(2, Ordering::Relaxed);
        m.atomic_u64(time::TSC_TIMESTAMP)
            .store(1000, Ordering::Relaxed);
        m.atomic_u64(time::SYSTEM_TIME)
            .store(5_000, Ordering::Relaxed);
        m.atomic_u32(time::TSC_TO_SYSTEM_MUL)
            .store(1 << 31, Ordering::Relaxed);
        assert_eq!(system_time(m.ro(), || 3000), 6_000);
    }
}
