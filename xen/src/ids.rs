//! Newtypes for the identifiers Xen hands out.
//!
//! Mirrors `domid_t` (`xen.h`), `grant_ref_t` (`grant_table.h`) and
//! `evtchn_port_t` (`event_channel.h`) of Xen 4.17. Using distinct types keeps
//! a port from being passed where a grant reference is expected.

use core::fmt;

/// A domain id (`domid_t`, 16 bits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct DomId(pub u16);

impl DomId {
    /// The first (privileged) domain, the Windsor toolstack.
    pub const DOM0: DomId = DomId(0);
    /// `DOMID_FIRST_RESERVED`: ids from here up are not ordinary domains.
    pub const FIRST_RESERVED: DomId = DomId(0x7FF0);
    /// `DOMID_SELF`: "the calling domain" in hypercall arguments.
    pub const SELF: DomId = DomId(0x7FF0);
    /// `DOMID_IO`.
    pub const IO: DomId = DomId(0x7FF1);
    /// `DOMID_XEN`.
    pub const XEN: DomId = DomId(0x7FF2);
    /// `DOMID_COW`.
    pub const COW: DomId = DomId(0x7FF3);
    /// `DOMID_INVALID`: no owner.
    pub const INVALID: DomId = DomId(0x7FF4);
    /// `DOMID_IDLE`.
    pub const IDLE: DomId = DomId(0x7FFF);

    /// True for ids an ordinary domain can have (below `DOMID_FIRST_RESERVED`).
    pub const fn is_ordinary(self) -> bool {
        self.0 < Self::FIRST_RESERVED.0
    }
}

impl fmt::Debug for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A grant reference (`grant_ref_t`): an index into a domain's grant table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

impl GrantRef {
    /// `GNTTAB_RESERVED_CONSOLE`: the entry a builder fills for the console ring.
    pub const RESERVED_CONSOLE: GrantRef = GrantRef(0);
    /// `GNTTAB_RESERVED_XENSTORE`: the entry a builder fills for the xenstore ring.
    pub const RESERVED_XENSTORE: GrantRef = GrantRef(1);
    /// `GNTTAB_NR_RESERVED_ENTRIES`: guests allocate their own grants from here.
    pub const FIRST_FREE: GrantRef = GrantRef(8);
}

impl fmt::Debug for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gref{}", self.0)
    }
}

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An event channel port (`evtchn_port_t`), local to one domain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct EvtchnPort(pub u32);

impl fmt::Debug for EvtchnPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

impl fmt::Display for EvtchnPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A guest frame number: a page index in a domain's physical address space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Gfn(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_domids_match_xen_h() {
        assert_eq!(DomId::FIRST_RESERVED.0, 0x7FF0);
        assert_eq!(DomId::INVALID.0, 0x7FF4);
        assert!(DomId(0x7FEF).is_ordinary());
        assert!(!DomId::SELF.is_ordinary());
    }

    #[test]
    fn id_sizes_match_c_types() {
        assert_eq!(core::mem::size_of::<DomId>(), 2);
        assert_eq!(core::mem::size_of::<GrantRef>(), 4);
        assert_eq!(core::mem::size_of::<EvtchnPort>(), 4);
    }
}
