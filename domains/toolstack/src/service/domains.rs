//! Making and unmaking a VM's domain: creating and building it (or
//! restoring a saved image into it), writing its xenstore tree and
//! introducing it, and destroying it with every trace it left.

use windsor_xenstore_client::XenStore;
use xen::platform::{
    BuiltDomain, DomainBuilder, DomainControl, DomainSave, EventChannel, RestoreTarget,
};
use xen::{DomId, Errno};

use super::{internal, Inner, Introducer};
use crate::action::{ActionError, VmRecord};
use crate::engine::Engine;
use crate::power::{build_error, create_error};

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    /// Creates, builds and plumbs a domain for `v`, leaving it paused.
    pub(super) fn boot(&self, eng: &mut Engine, v: &VmRecord) -> Result<DomId, ActionError> {
        let d = self
            .p
            .create(&eng.create_config(v))
            .map_err(|e| create_error(e, v))?;
        let built = match self.p.build(d, &eng.domain_image(v)) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.p.destroy(d);
                return Err(build_error(e, v));
            }
        };
        self.attach(eng, v, d, Some(built))?;
        Ok(d)
    }

    /// Restores `v`'s saved image into a new domain, plumbed as at start
    /// and left paused; without an image it fails as XAPI does for a VM
    /// whose suspend VDI is gone.
    pub(super) fn restore(&self, eng: &mut Engine, v: &VmRecord) -> Result<DomId, ActionError> {
        let img = self.images().remove(&v.uuid).ok_or_else(|| {
            tracing::warn!(vm = %v.uuid, "resume: no saved image");
            ActionError::HandleInvalid {
                class: crate::action::Class::Vdi,
                r: crate::action::NULL_REF.into(),
            }
        })?;
        let target = RestoreTarget {
            xenstore_domid: self.cfg.xenstore_domid,
            console_domid: DomId::DOM0,
        };
        let restored = self
            .p
            .restore(img, &target)
            .map_err(|e| create_error(e, v))?;
        let d = restored.domid;
        self.attach(eng, v, d, restored.rings)?;
        Ok(d)
    }

    /// Makes `d` the domain of `v`: its xenstore tree, and its
    /// introduction (if it has a ring). On failure the domain is torn down.
    pub(super) fn attach(
        &self,
        eng: &mut Engine,
        v: &VmRecord,
        d: DomId,
        rings: Option<BuiltDomain>,
    ) -> Result<(), ActionError> {
        let tx = eng.attach(v, d);
        let plumbed = self.commit(&tx).and_then(|()| match rings {
            Some(b) => self.intro.introduce(d, b.store_gfn, b.store_port),
            None => Ok(()),
        });
        if let Err(e) = plumbed {
            self.teardown(eng, &v.uuid, d);
            return Err(internal(e));
        }
        if let Err(e) = self.plug_domain(eng, v, d) {
            self.teardown(eng, &v.uuid, d);
            return Err(e);
        }
        Ok(())
    }

    /// Destroys domain `d` of VM `uuid` and removes every trace of it.
    pub(super) fn teardown(&self, eng: &mut Engine, uuid: &str, d: DomId) {
        match self.p.destroy(d) {
            Ok(()) | Err(xen::platform::Error::Errno(Errno::ESRCH)) => {}
            Err(e) => tracing::warn!(dom = d.0, ?e, "destroy failed"),
        }
        if let Err(e) = self.intro.release(d) {
            tracing::warn!(dom = d.0, ?e, "xenstore release failed");
        }
        self.unplug_domain(eng, uuid, d);
        let tx = eng.detach(uuid, d);
        if let Err(e) = self.commit(&tx) {
            tracing::warn!(dom = d.0, ?e, "cannot remove the domain's nodes");
        }
    }
}
