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
//! `now = system_time + ((tsc - tsc_timestamp) << tsc_shift) * mul >> 32`
//! (`xen::abi::xen::VcpuTimeInfo::system_time_at`), read under the version
//! seqlock.

use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};
use xen::abi::xen::{vcpu_info_offset, VcpuInfo, VcpuTimeInfo};
use xen::SharedRo;

/// Offset of `vcpu_info[vcpu].time` in the shared-info page.
pub const fn vcpu_time_offset(vcpu: usize) -> usize {
    vcpu_info_offset(vcpu) + offset_of!(VcpuInfo, time)
}

/// Xen system time in ns at TSC value `tsc()`, from the `vcpu_time_info`
/// at the start of `t` (at least 32 bytes). Retries while Xen is updating
/// the record (odd or changed `version`).
pub fn system_time(t: SharedRo<'_>, tsc: impl Fn() -> u64) -> u64 {
    loop {
        let v1 = t.load_u32(offset_of!(VcpuTimeInfo, version), Ordering::Acquire);
        if v1 & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let snap = VcpuTimeInfo {
            version: v1,
            tsc_timestamp: t.load_u64(offset_of!(VcpuTimeInfo, tsc_timestamp), Ordering::Relaxed),
            system_time: t.load_u64(offset_of!(VcpuTimeInfo, system_time), Ordering::Relaxed),
            tsc_to_system_mul: t.load_u32(
                offset_of!(VcpuTimeInfo, tsc_to_system_mul),
                Ordering::Relaxed,
            ),
            tsc_shift: t.load_u8(offset_of!(VcpuTimeInfo, tsc_shift), Ordering::Relaxed) as i8,
            ..Default::default()
        };
        let now = tsc();
        fence(Ordering::Acquire);
        if t.load_u32(offset_of!(VcpuTimeInfo, version), Ordering::Relaxed) == v1 {
            return snap.system_time_at(now);
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
    fn reads_the_record() {
        #[repr(C, align(8))]
        struct Rec([AtomicU8; 32]);
        let rec = Rec([const { AtomicU8::new(0) }; 32]);
        // SAFETY: the record outlives the view, is 8-byte aligned and is only
        // accessed through the view.
        let m = unsafe { SharedMem::from_raw(NonNull::from(&rec.0).cast(), 32) };
        m.atomic_u32(offset_of!(VcpuTimeInfo, version))
            .store(2, Ordering::Relaxed);
        m.atomic_u64(offset_of!(VcpuTimeInfo, tsc_timestamp))
            .store(1000, Ordering::Relaxed);
        m.atomic_u64(offset_of!(VcpuTimeInfo, system_time))
            .store(5_000, Ordering::Relaxed);
        m.atomic_u32(offset_of!(VcpuTimeInfo, tsc_to_system_mul))
            .store(1 << 31, Ordering::Relaxed);
        assert_eq!(system_time(m.ro(), || 3000), 6_000);
        // A shifted rate: tsc_shift -1 halves the delta first.
        m.atomic_u8(offset_of!(VcpuTimeInfo, tsc_shift))
            .store(-1i8 as u8, Ordering::Relaxed);
        assert_eq!(system_time(m.ro(), || 5000), 6_000);
        assert_eq!(vcpu_time_offset(0), 32);
    }
}
