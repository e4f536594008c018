//! The CPUID policy the builder gives a guest: Xen's default for the
//! domain, minus what the processor cannot virtualise for it.
//!
//! Producer: the Xen-mode builder (dom0), through
//! `XEN_DOMCTL_get_cpu_policy` / `XEN_DOMCTL_set_cpu_policy` (`domctl.h`,
//! Xen 4.17; leaves serialised as `xen_cpuid_leaf_t`), before the domain
//! first runs; consumer: Xen's CPUID emulation for the guest.
//!
//! What is hidden, and why: on AMD SVM without *NRIP save* (QEMU's TCG
//! SVM has none), Xen cannot learn the length of an intercepted
//! instruction, so it cannot emulate `RDTSCP` (`0f 01 f9`): the guest dies
//! with `SVM Insn len emulation failed` as soon as Linux uses it (it does,
//! to set up per-CPU numbers). `RDPID` reads the same `TSC_AUX` and has
//! the same problem. Hiding both features in CPUID makes the guest use its
//! fallbacks; this is the fix libxl users apply with `cpuid=` in the guest
//! config, not a guest command-line workaround. On processors with NRIP
//! save nothing is hidden.
//!
//! This module is portable (host-tested): it edits a policy given as
//! leaves and returns only the leaves it changed, which is all
//! `set_cpu_policy` needs (Xen starts from the domain's current policy).

use alloc::vec::Vec;
use xen::abi::domctl::{XenCpuidLeaf, XEN_CPUID_NO_SUBLEAF};

/// Leaf `0x8000_0001` EDX bit 27: `RDTSCP`.
pub const RDTSCP: (u32, u32) = (0x8000_0001, 27);
/// Leaf 7 subleaf 0 ECX bit 22: `RDPID`.
pub const RDPID: (u32, u32) = (7, 22);
/// Leaf `0x8000_000a` EDX bit 3: SVM *NRIP save*.
pub const SVM_NRIPS: (u32, u32) = (0x8000_000a, 3);

/// Whether `leaves` (a host policy) says the processor has SVM without
/// NRIP save: the case where Xen cannot emulate `RDTSCP` for an HVM guest.
/// `None` if the policy has no SVM leaf (Intel VMX, or SVM hidden): VMX
/// always reports instruction lengths.
pub fn svm_without_nrips(leaves: &[XenCpuidLeaf]) -> Option<bool> {
    let l = leaves.iter().find(|l| l.leaf == SVM_NRIPS.0)?;
    Some(l.d & (1 << SVM_NRIPS.1) == 0)
}

/// Clears `RDTSCP` and `RDPID` in `leaves`; returns the leaves that
/// changed (at most two), ready for `set_cpu_policy`.
pub fn hide_tsc_aux_readers(leaves: &mut [XenCpuidLeaf]) -> Vec<XenCpuidLeaf> {
    let mut changed = Vec::new();
    for l in leaves.iter_mut() {
        let before = *l;
        if l.leaf == RDTSCP.0 {
            l.d &= !(1 << RDTSCP.1);
        }
        if l.leaf == RDPID.0 && (l.subleaf == 0 || l.subleaf == XEN_CPUID_NO_SUBLEAF) {
            l.c &= !(1 << RDPID.1);
        }
        if *l != before {
            changed.push(*l);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(leaf: u32, subleaf: u32, c: u32, d: u32) -> XenCpuidLeaf {
        XenCpuidLeaf {
            leaf,
            subleaf,
            a: 0x11,
            b: 0x22,
            c,
            d,
        }
    }

    #[test]
    fn rdtscp_and_rdpid_are_cleared_and_only_changed_leaves_returned() {
        let mut p = [
            leaf(0, XEN_CPUID_NO_SUBLEAF, 0, 0),
            leaf(7, 0, !0, !0),
            leaf(7, 1, !0, !0),
            leaf(0x8000_0001, XEN_CPUID_NO_SUBLEAF, !0, !0),
        ];
        let changed = hide_tsc_aux_readers(&mut p);
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].c, !(1 << 22), "RDPID gone, the rest kept");
        assert_eq!(changed[0].d, !0);
        assert_eq!(changed[1].d, !(1 << 27), "RDTSCP gone, the rest kept");
        assert_eq!((changed[1].a, changed[1].b, changed[1].c), (0x11, 0x22, !0));
        assert_eq!(p[2].c, !0, "leaf 7 subleaf 1 untouched");
        // Already hidden: nothing to send.
        assert!(hide_tsc_aux_readers(&mut p).is_empty());
    }

    #[test]
    fn nrip_save_is_read_from_the_svm_leaf() {
        assert_eq!(svm_without_nrips(&[]), None);
        let with = [leaf(0x8000_000a, XEN_CPUID_NO_SUBLEAF, 0, 1 << 3)];
        let without = [leaf(0x8000_000a, XEN_CPUID_NO_SUBLEAF, 0, 1 << 0)];
        assert_eq!(svm_without_nrips(&with), Some(false));
        assert_eq!(svm_without_nrips(&without), Some(true));
    }
}
