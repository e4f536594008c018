//! `sysctl.h` (Xen 4.17): host-wide queries of the privileged toolstack.
//!
//! Producer: dom0 (the builder asks for the processor's raw CPUID policy);
//! consumer: Xen. Only what Windsor uses is mirrored:
//!
//! ```text
//! xen_sysctl:            0 cmd u32   4 interface_version u32   8 u (union, 128 bytes)
//! xen_sysctl_cpu_policy: 0 index u32  4 nr_leaves u32  8 nr_msrs u32  12 _rsvd u32
//!                        16 leaves (handle, u64)  24 msrs (handle, u64)
//! ```

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XEN_SYSCTL_get_cpu_policy` (x86).
pub const XEN_SYSCTL_GET_CPU_POLICY: u32 = 29;
/// `XEN_SYSCTL_cpu_policy_raw`: the processor's own values.
pub const XEN_SYSCTL_CPU_POLICY_RAW: u32 = 0;
/// `XEN_SYSCTL_cpu_policy_host`: the values Xen uses.
pub const XEN_SYSCTL_CPU_POLICY_HOST: u32 = 1;
/// Size of the `u` union of [`XenSysctl`].
pub const XEN_SYSCTL_PAYLOAD_SIZE: usize = 128;

/// `struct xen_sysctl_cpu_policy`: payload of `XEN_SYSCTL_get_cpu_policy`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XenSysctlCpuPolicy {
    /// IN: which policy (`XEN_SYSCTL_cpu_policy_*`).
    pub index: u32,
    /// IN/OUT: entries at `leaves` (the most Xen would write if null).
    pub nr_leaves: u32,
    /// IN/OUT: entries at `msrs` (the same).
    pub nr_msrs: u32,
    /// Must be zero.
    pub _rsvd: u32,
    /// Guest address of an array of `xen_cpuid_leaf_t` (0: none).
    pub leaves: u64,
    /// Guest address of an array of `xen_msr_entry_t` (0: none).
    pub msrs: u64,
}

/// `struct xen_sysctl`: the argument of every `__HYPERVISOR_sysctl` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenSysctl {
    /// A `XEN_SYSCTL_*` command.
    pub cmd: u32,
    /// Must be [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The union `u`, zero-padded.
    pub u: [u64; XEN_SYSCTL_PAYLOAD_SIZE / 8],
}

impl XenSysctl {
    /// A sysctl for `cmd` carrying `payload` at the start of the union.
    pub fn with_payload<T: IntoBytes + Immutable>(cmd: u32, payload: &T) -> Self {
        const { assert!(core::mem::size_of::<T>() <= XEN_SYSCTL_PAYLOAD_SIZE) };
        let mut s = Self {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: [0; XEN_SYSCTL_PAYLOAD_SIZE / 8],
        };
        let b = payload.as_bytes();
        s.u.as_mut_bytes()[..b.len()].copy_from_slice(b);
        s
    }

    /// Reads the union as `T`.
    pub fn payload<T: FromBytes>(&self) -> T {
        const { assert!(core::mem::size_of::<T>() <= XEN_SYSCTL_PAYLOAD_SIZE) };
        match T::read_from_prefix(self.u.as_bytes()) {
            Ok((v, _)) => v,
            Err(_) => unreachable!("sysctl payload larger than the union"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_sysctl_h() {
        assert_layout!(XenSysctlCpuPolicy, size 32, align 8,
            index @ 0, nr_leaves @ 4, nr_msrs @ 8, _rsvd @ 12, leaves @ 16, msrs @ 24);
        assert_layout!(XenSysctl, size 136, align 8, cmd @ 0, interface_version @ 4, u @ 8);
        let p = XenSysctlCpuPolicy {
            index: XEN_SYSCTL_CPU_POLICY_RAW,
            nr_leaves: 7,
            ..Default::default()
        };
        let s = XenSysctl::with_payload(XEN_SYSCTL_GET_CPU_POLICY, &p);
        assert_eq!(s.payload::<XenSysctlCpuPolicy>(), p);
        assert_eq!(&s.as_bytes()[..8], &[29, 0, 0, 0, 0x15, 0, 0, 0]);
    }
}
