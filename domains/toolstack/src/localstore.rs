//! The host's in-process xenstore: [`LocalStore`] of the xenstore crate
//! (the one in-process store client, with the ring server loop of the
//! host's xenstore domain), and its [`Introducer`] implementation, since
//! `XS_INTRODUCE`/`XS_RELEASE` are the toolstack's to send.

use windsor_xenstore_client::Result;
use xen::{DomId, EvtchnPort, Gfn};

pub use windsor_xenstore::client::LocalStore;

use crate::service::Introducer;

impl Introducer for LocalStore {
    fn introduce(&self, dom: DomId, gfn: Gfn, port: EvtchnPort) -> Result<()> {
        LocalStore::introduce(self, dom, gfn.0, port)
    }

    fn release(&self, dom: DomId) -> Result<()> {
        LocalStore::release(self, dom)
    }
}
