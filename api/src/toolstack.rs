//! The seam to the toolstack: the server hands every parsed
//! [`Action`] to a [`Toolstack`].
//!
//! In Windsor that is the toolstack service
//! ([`windsor_toolstack::service::Toolstack`] implements [`Toolstack`]; in
//! host mode serve `Arc::new(host.toolstack.clone())`). There is no second
//! implementation: the API's tests run against the real toolstack in host
//! mode, so the rules (power states, storage, events, tasks) live in one
//! place.

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{eprintln, format, println, vec};

use windsor_toolstack::action::{Action, ActionResult};

/// What the API needs from the toolstack: one action in, one reply out.
pub trait Toolstack: Send + Sync + 'static {
    /// Performs one action; may block (clean shutdown, `event.from`,
    /// `xenstore.watch`).
    fn handle(&self, action: Action) -> ActionResult;
}

impl<P, S, I> Toolstack for windsor_toolstack::service::Toolstack<P, S, I>
where
    P: xen::platform::DomainControl
        + xen::platform::DomainBuilder
        + xen::platform::DomainSave
        + xen::platform::EventChannel
        + Send
        + Sync
        + 'static,
    S: windsor_xenstore::client::XenStore + Send + Sync + 'static,
    I: windsor_toolstack::service::Introducer + Send + Sync + 'static,
{
    fn handle(&self, action: Action) -> ActionResult {
        windsor_toolstack::service::Toolstack::handle(self, action)
    }
}
