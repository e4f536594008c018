//! Device back-end plumbing: the [`DeviceBackends`] trait (the driver
//! domains' side of plugging), plugging a new domain's VIFs and VBDs into
//! it and unplugging them at teardown, `VIF.plug`/`VBD.plug` and `unplug`
//! on a running VM, and moving the running VMs' devices to a restarted
//! driver domain ([`Toolstack::backend_restarted`]).

use std::boxed::Box;
use std::string::String;

use windsor_xenstore_client::XenStore;
use xen::platform::{DomainBuilder, DomainControl, DomainSave, EventChannel};
use xen::DomId;

use super::{internal, Inner, Introducer, Toolstack};
use crate::action::{ActionError, ActionResult, Reply, VmRecord};
use crate::engine::Engine;

/// The driver domains' side of device plugging: after a domain's devices
/// are written to xenstore (backend and frontend directories, state
/// `Initialising`), the toolstack asks the backend domain to serve each
/// one, before the guest runs; at teardown it asks it to stop. Host mode
/// implements it over the `windsor-control` vchan to netback.
pub trait DeviceBackends: Send + Sync {
    /// Serve VIF `vif` of domain `fe`.
    fn plug_vif(&self, fe: DomId, vif: &crate::devices::VifPlug) -> Result<(), String>;
    /// Stop serving VIF `devid` of domain `fe` (unknown: not an error).
    fn unplug_vif(&self, fe: DomId, devid: u32);
    /// Serve VBD `vbd` of domain `fe` (default: its backend watches
    /// xenstore by itself).
    fn plug_vbd(&self, fe: DomId, vbd: &crate::devices::VbdPlug) -> Result<(), String> {
        let _ = (fe, vbd);
        Ok(())
    }
    /// Stop serving VBD `devid` of domain `fe` (unknown: not an error).
    fn unplug_vbd(&self, fe: DomId, devid: u32) {
        let _ = (fe, devid);
    }
}

impl<P, S, I> Toolstack<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel + Send + Sync + 'static,
    S: XenStore + Send + Sync + 'static,
    I: Introducer + Send + Sync + 'static,
{
    /// Plugs devices through `b` from now on (VIFs of VMs started later).
    /// A second call is ignored.
    pub fn attach_backends(&self, b: Box<dyn DeviceBackends>) {
        let _ = self.inner.backends.set(b);
    }

    /// The driver domain serving devices of `kind` died and was started
    /// again as domain `new`: the running VMs' devices of that kind move
    /// to it (written anew in xenstore, plugged through the attached
    /// backends), and VMs started later use it.
    pub fn backend_restarted(&self, kind: crate::layout::DeviceKind, new: DomId) {
        self.inner.backend_restarted(kind, new);
    }
}

impl<P, S, I> Inner<P, S, I>
where
    P: DomainControl + DomainBuilder + DomainSave + EventChannel,
    S: XenStore,
    I: Introducer,
{
    /// Plugs the VIFs and VBDs of `v`, now domain `d`, into the attached
    /// backends (if any). On failure the caller tears the domain down.
    pub(super) fn plug_domain(
        &self,
        eng: &mut Engine,
        v: &VmRecord,
        d: DomId,
    ) -> Result<(), ActionError> {
        if let Some(b) = self.backends.get() {
            for vif in eng.vif_plugs(v) {
                if let Err(e) = b.plug_vif(d, &vif) {
                    tracing::warn!(dom = d.0, devid = vif.devid, %e, "VIF plug failed");
                    return Err(internal(format_args!("plugging VIF {}: {e}", vif.devid)));
                }
            }
            for vbd in eng.vbd_plugs(v) {
                if let Err(e) = b.plug_vbd(d, &vbd) {
                    tracing::warn!(dom = d.0, devid = vbd.devid, %e, "VBD plug failed");
                    return Err(internal(format_args!("plugging VBD {}: {e}", vbd.devid)));
                }
            }
        }
        Ok(())
    }

    /// Unplugs every device of VM `uuid`'s domain `d` from the attached
    /// backends (if any).
    pub(super) fn unplug_domain(&self, eng: &mut Engine, uuid: &str, d: DomId) {
        if let Some(b) = self.backends.get() {
            for vif in eng.vif_plugs_of(uuid) {
                b.unplug_vif(d, vif.devid);
            }
            for vbd in eng.vbd_plugs_of(uuid) {
                b.unplug_vbd(d, vbd.devid);
            }
        }
    }

    /// `VIF.plug`/`VBD.plug` (`on`) and `unplug` on a running VM: the
    /// device's directories written then the device plugged into its
    /// backend, or unplugged from it then the directories removed. A plug
    /// the backend refuses is undone.
    pub(super) fn hotplug(&self, class: crate::action::Class, r: &str, on: bool) -> ActionResult {
        use crate::layout::DeviceKind as K;
        self.locked(|eng, _| {
            let h = eng.device_hotplug(class, r, on)?;
            let b = self.backends.get();
            if on {
                self.commit(&h.tx).map_err(internal)?;
                let plugged = match (b, &h.vif, &h.vbd) {
                    (Some(b), Some(vif), _) => b.plug_vif(h.domain, vif),
                    (Some(b), _, Some(vbd)) => b.plug_vbd(h.domain, vbd),
                    _ => Ok(()),
                };
                if let Err(e) = plugged {
                    tracing::warn!(dom = h.domain.0, devid = h.devid, %e, "hot-plug failed");
                    let undo = eng.device_hotplug(class, r, false)?;
                    let _ = self.commit(&undo.tx);
                    return Err(internal(format_args!("plugging device {}: {e}", h.devid)));
                }
            } else {
                if let Some(b) = b {
                    match h.kind {
                        K::Vif => b.unplug_vif(h.domain, h.devid),
                        K::Vbd => b.unplug_vbd(h.domain, h.devid),
                    }
                }
                self.commit(&h.tx).map_err(internal)?;
            }
            Ok(Reply::Unit)
        })
    }

    /// The driver domain serving devices of `kind` was restarted as `new`:
    /// every running VM's devices of that kind are written anew under it
    /// and plugged into it (see [`Engine::backend_restarted`]); VMs started
    /// later use it.
    pub(crate) fn backend_restarted(&self, kind: crate::layout::DeviceKind, new: DomId) {
        let _ = self.locked(|eng, _| {
            for (d, uuid, tx) in eng.backend_restarted(kind, new) {
                if let Err(e) = self.commit(&tx) {
                    tracing::warn!(dom = d.0, %e, "cannot move devices to the new backend");
                    continue;
                }
                let Some(b) = self.backends.get() else {
                    continue;
                };
                let r = match kind {
                    crate::layout::DeviceKind::Vif => eng
                        .vif_plugs_of(&uuid)
                        .iter()
                        .try_for_each(|p| b.plug_vif(d, p)),
                    crate::layout::DeviceKind::Vbd => eng
                        .vbd_plugs_of(&uuid)
                        .iter()
                        .try_for_each(|p| b.plug_vbd(d, p)),
                };
                if let Err(e) = r {
                    tracing::warn!(dom = d.0, %e, "re-plugging into the restarted backend failed");
                }
            }
            Ok(())
        });
    }
}
