//! The `xenstore.*` API calls: reads, writes, directory listings and
//! removals on the toolstack's own connection, and the watches served on
//! a connection of their own ([`Toolstack::attach_xs_watch`], the
//! [`WatchHub`](crate::xs_calls::WatchHub)).

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};

use super::{internal, Inner, Introducer, Toolstack};
use crate::action::{Action, ActionError, ActionResult, Reply};

impl<P, S, I> Toolstack<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel + Send + Sync + 'static,
    S: XenStore + Send + Sync + 'static,
    I: Introducer + Send + Sync + 'static,
{
    /// Serves `xenstore.watch` on `conn`, a dom0 store connection used
    /// for nothing else (the toolstack's own connection never carries a
    /// watch). Without one, `xenstore.watch` fails. A second call is
    /// ignored.
    pub fn attach_xs_watch(
        &self,
        conn: impl XenStore + Send + Sync + 'static,
        limits: crate::xs_calls::WatchLimits,
    ) -> std::io::Result<()> {
        if self.inner.xs_watch.get().is_none() {
            let hub = crate::xs_calls::WatchHub::new(conn, limits)?;
            let _ = self.inner.xs_watch.set(hub);
        }
        Ok(())
    }
}

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    /// Does one `xenstore.*` call.
    pub(super) fn xs_call(&self, action: Action) -> ActionResult {
        use Action as A;
        match action {
            A::XsRead { path } => crate::xs_calls::read(&self.xs, &path),
            A::XsWrite { path, value } => crate::xs_calls::write(&self.xs, &path, &value),
            A::XsDirectory { path } => crate::xs_calls::directory(&self.xs, &path),
            A::XsRm { path } => crate::xs_calls::rm(&self.xs, &path),
            A::XsWatch {
                owner,
                path,
                cursor,
                timeout,
            } => self.xs_hub()?.watch(&owner, &path, &cursor, timeout),
            A::XsUnwatch { owner, cursor } => self.xs_hub()?.unwatch(&owner, &cursor),
            A::XsDropOwner { owner } => {
                // Nothing to drop when watches are not served.
                if let Some(h) = self.xs_watch.get() {
                    h.drop_owner(&owner);
                }
                Ok(Reply::Unit)
            }
            other => Err(internal(format_args!("not a xenstore call: {other:?}"))),
        }
    }

    fn xs_hub(&self) -> Result<&crate::xs_calls::WatchHub, ActionError> {
        self.xs_watch
            .get()
            .ok_or_else(|| ActionError::internal("xenstore watches are not served on this host"))
    }
}
