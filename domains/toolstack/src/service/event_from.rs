//! `event.from`: waiting, with the engine lock released, until an event
//! of the asked classes is newer than the caller's token or the timeout
//! passes.

use std::string::String;
use std::time::{Duration, Instant};

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};

use super::{Inner, Introducer};
use crate::action::{ActionResult, Reply};

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    pub(super) fn event_from(
        &self,
        classes: &[String],
        token: u64,
        timeout: Duration,
    ) -> ActionResult {
        let deadline = Instant::now() + timeout;
        let mut eng = self.lock();
        loop {
            if let Some(batch) = eng.events_since(classes, token)? {
                return Ok(Reply::Events(batch));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Reply::Events(eng.empty_batch()));
            }
            eng = self
                .changed
                .wait_timeout(eng, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
