//! Introducing domains to the xenstore domain: the [`Introducer`] trait
//! (`XS_INTRODUCE`/`XS_RELEASE`), which the toolstack alone may send.

use windsor_xenstore_client::ClientError;
use xen::{DomId, EvtchnPort, Gfn};

/// Tells the xenstore domain about a new domain (`XS_INTRODUCE`) and that
/// it is gone (`XS_RELEASE`). The [`XenStore`](windsor_xenstore_client::XenStore) client trait has no such
/// calls: they belong to the toolstack alone, and in host mode the
/// in-process store implements them ([`crate::localstore::LocalStore`]).
pub trait Introducer {
    /// `XS_INTRODUCE(dom, gfn, port)`: the store may map the domain's ring
    /// at `gfn` (reserved grant 1) and bind `port`.
    fn introduce(&self, dom: DomId, gfn: Gfn, port: EvtchnPort) -> Result<(), ClientError>;
    /// `XS_RELEASE(dom)`: drop its connections and the nodes it owns; fires
    /// `@releaseDomain`. Releasing an unknown domain is not an error.
    fn release(&self, dom: DomId) -> Result<(), ClientError>;
}

/// No xenstore domain to tell (tests of the toolstack alone).
impl Introducer for () {
    fn introduce(&self, _: DomId, _: Gfn, _: EvtchnPort) -> Result<(), ClientError> {
        Ok(())
    }
    fn release(&self, _: DomId) -> Result<(), ClientError> {
        Ok(())
    }
}
