//! Devices: VIF and VBD records (linked to their VM and network or VDI),
//! and a domain's xenstore tree — its runtime nodes and every device in
//! Xen's frontend/backend layout ([`crate::layout`]) — as one
//! [`XsTransaction`].

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use windsor_xenstore_client::{Access, Perm};
use xen::DomId;

use crate::action::{
    ActionError, Class, EventOp, Record, Ref, VbdRecord, VifRecord, VmRecord, NULL_REF,
};
use crate::effect::XsTransaction;
use crate::engine::Engine;
use crate::layout::{self, DeviceKind};
use crate::lifecycle::Op;

/// A VIF as its backend domain is told to serve it (see
/// `service::DeviceBackends`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifPlug {
    /// The `<n>` of `device/vif/<n>`.
    pub devid: u32,
    /// Its MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// Its MTU.
    pub mtu: u32,
}

/// What the executor does for a `plug`/`unplug` of a running VM's device
/// (see [`Engine::device_hotplug`]).
#[derive(Debug)]
pub struct Hotplug {
    /// The VM's domain.
    pub domain: DomId,
    /// VIF or VBD.
    pub kind: DeviceKind,
    /// The device's `<n>`.
    pub devid: u32,
    /// Plug: its directories; unplug: their removal.
    pub tx: XsTransaction,
    /// Plug of a VIF: what netback is told.
    pub vif: Option<VifPlug>,
    /// Plug of a VBD with a disk: what blkback is told.
    pub vbd: Option<VbdPlug>,
}

/// A VBD as its backend domain is told to serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbdPlug {
    /// The `<n>` of `device/vbd/<n>` (`xvd` numbering).
    pub devid: u32,
    /// The image (the `params` key).
    pub params: String,
    /// Read-only (`mode` `RO`).
    pub readonly: bool,
}

fn perm(dom: DomId, access: Access) -> Perm {
    Perm { dom, access }
}

/// The VM a VIF or VBD belongs to.
fn device_vm(rec: &Record) -> Option<Ref> {
    match rec {
        Record::Vif(f) => Some(f.vm.clone()),
        Record::Vbd(b) => Some(b.vm.clone()),
        _ => None,
    }
}

impl Engine {
    /// The record of a new VIF `uuid`, linked into its VM and network,
    /// detached. The VM must be halted or running (then `VIF.plug`
    /// attaches it); a missing MAC is generated.
    pub(crate) fn vif_create(
        &mut self,
        mut f: VifRecord,
        uuid: &str,
    ) -> Result<Record, ActionError> {
        let r = crate::action::ref_of(uuid);
        f.uuid = uuid.to_string();
        f.currently_attached = false;
        let mut vm = self.recs.vm(&f.vm)?.clone();
        self.check_device_change(&vm, &f.vm)?;
        let net = self.recs.get(Class::Network, &f.network)?.clone();
        if f.device.parse::<u32>().is_err() {
            return Err(ActionError::ValueNotSupported {
                field: "device".into(),
                value: f.device,
                reason: "must be a number".into(),
            });
        }
        if f.MAC.is_empty() {
            f.MAC = self.ids.mac();
        }
        vm.VIFs.push(r.clone());
        self.put_vm(vm);
        if let Record::Network(mut n) = net {
            n.VIFs.push(r);
            self.put(Record::Network(n), EventOp::Mod);
        }
        Ok(Record::Vif(f))
    }

    /// The record of a new VBD `uuid`, linked into its VM and VDI (none:
    /// an empty drive), detached. The VM must be halted or running (then
    /// `VBD.plug` attaches it).
    pub(crate) fn vbd_create(
        &mut self,
        mut b: VbdRecord,
        uuid: &str,
    ) -> Result<Record, ActionError> {
        let r = crate::action::ref_of(uuid);
        b.uuid = uuid.to_string();
        b.currently_attached = false;
        let mut vm = self.recs.vm(&b.vm)?.clone();
        self.check_device_change(&vm, &b.vm)?;
        if b.userdevice.parse::<u32>().is_err() {
            return Err(ActionError::ValueNotSupported {
                field: "userdevice".into(),
                value: b.userdevice,
                reason: "must be a number".into(),
            });
        }
        if b.VDI != NULL_REF {
            if let Record::Vdi(mut d) = self.recs.get(Class::Vdi, &b.VDI)?.clone() {
                d.VBDs.push(r.clone());
                self.put(Record::Vdi(d), EventOp::Mod);
            }
        } else {
            b.empty = true;
        }
        vm.VBDs.push(r);
        self.put_vm(vm);
        Ok(Record::Vbd(b))
    }

    /// Whether a device may be added to (or a detached one removed from)
    /// VM `v`: as XAPI, while it is halted or has a domain (the device is
    /// then created detached, to `plug`).
    fn check_device_change(&self, v: &VmRecord, r: &str) -> Result<(), ActionError> {
        use crate::action::PowerState as S;
        if matches!(v.power_state, S::Running | S::Paused) {
            return Ok(());
        }
        self.check(v, r, Op::SetStatic)
    }

    /// `VIF.destroy` / `VBD.destroy`: the VM (if any) must be halted, or the
    /// device detached from its domain.
    pub(crate) fn device_destroy(&mut self, rec: &Record, r: &str) -> Result<(), ActionError> {
        let attached = match rec {
            Record::Vif(f) => f.currently_attached,
            Record::Vbd(b) => b.currently_attached,
            _ => false,
        };
        if let Some(vm) = device_vm(rec) {
            if let Ok(v) = self.recs.vm(&vm) {
                if attached {
                    self.check(v, &vm, Op::SetStatic)?;
                } else {
                    self.check_device_change(v, &vm)?;
                }
            }
        }
        self.unlink_device(rec.class(), r)?;
        self.remove(rec.class(), rec.uuid());
        Ok(())
    }

    /// Drops a VIF/VBD ref from its VM and network/VDI.
    pub(crate) fn unlink_device(&mut self, class: Class, r: &str) -> Result<(), ActionError> {
        let rec = self.recs.get(class, r)?.clone();
        if let Some(vm) = device_vm(&rec) {
            if let Ok(v) = self.recs.vm(&vm) {
                let mut v = v.clone();
                v.VIFs.retain(|x| x != r);
                v.VBDs.retain(|x| x != r);
                self.put_vm(v);
            }
        }
        match rec {
            Record::Vif(f) => {
                if let Ok(Record::Network(mut n)) =
                    self.recs.get(Class::Network, &f.network).cloned()
                {
                    n.VIFs.retain(|x| x != r);
                    self.put(Record::Network(n), EventOp::Mod);
                }
            }
            Record::Vbd(b) => {
                if let Ok(Record::Vdi(mut d)) = self.recs.get(Class::Vdi, &b.VDI).cloned() {
                    d.VBDs.retain(|x| x != r);
                    self.put(Record::Vdi(d), EventOp::Mod);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `/local/domain/<d>` of VM `v`: runtime nodes with the guest's
    /// permissions, and every device in the standard frontend/backend
    /// layout. One transaction: one commit, so a persistent store syncs its
    /// log once per start, and no client ever sees a half-written domain.
    pub fn domain_tree(&self, v: &VmRecord, d: DomId) -> XsTransaction {
        let mut tx = XsTransaction::default();
        let base = layout::domain(d);
        tx.write(base.as_str(), "");
        tx.set_perms(
            base.as_str(),
            &[perm(DomId::DOM0, Access::None), perm(d, Access::Read)],
        );
        let owned = [perm(d, Access::None)];
        tx.write(format!("{base}/domid"), d.0.to_string());
        tx.write(format!("{base}/name"), v.name_label.as_bytes());
        tx.write(format!("{base}/vm"), layout::record(Class::Vm, &v.uuid));
        let sd = format!("{base}/control/shutdown");
        tx.write(sd.as_str(), "");
        tx.set_perms(sd, &owned);
        let data = format!("{base}/data");
        tx.write(data.as_str(), "");
        tx.set_perms(data, &owned);
        if let Some(m) = v.other_config.get("misbehave") {
            tx.write(format!("{base}/control/misbehave"), m.as_bytes());
        }
        for (k, val) in &v.xenstore_data {
            if k.starts_with("vm-data") || k.starts_with("FIST") {
                tx.write(format!("{base}/{k}"), val.as_bytes());
            }
        }
        self.devices_tree(&mut tx, v, d, DeviceKind::Vif);
        self.devices_tree(&mut tx, v, d, DeviceKind::Vbd);
        tx
    }

    /// The frontend and backend directories of `v`'s devices of `kind` in
    /// domain `d`, under the current backend domain of that kind.
    fn devices_tree(&self, tx: &mut XsTransaction, v: &VmRecord, d: DomId, kind: DeviceKind) {
        if kind == DeviceKind::Vif {
            self.vifs_tree(tx, v, d);
        } else {
            self.vbds_tree(tx, v, d);
        }
    }

    fn vifs_tree(&self, tx: &mut XsTransaction, v: &VmRecord, d: DomId) {
        for r in &v.VIFs {
            self.vif_tree(tx, r, d);
        }
    }

    /// One VIF's directories, if it is attached.
    fn vif_tree(&self, tx: &mut XsTransaction, r: &str, d: DomId) {
        let Ok(Record::Vif(f)) = self.recs.get(Class::Vif, r) else {
            return;
        };
        if !f.currently_attached {
            return;
        }
        let n: u32 = f.device.parse().unwrap_or(0);
        let bridge = match self.recs.get(Class::Network, &f.network) {
            Ok(Record::Network(net)) => net.bridge.clone(),
            _ => String::new(),
        };
        let mut be = vec![
            ("handle", n.to_string()),
            ("mac", f.MAC.clone()),
            ("bridge", bridge),
            ("mtu", f.MTU.to_string()),
        ];
        // The guest's address, where libxl writes it (`ip` in the
        // backend directory): from `other_config:ip`.
        if let Some(ip) = f.other_config.get("ip") {
            be.push(("ip", ip.clone()));
        }
        self.plumb(
            tx,
            self.settings.backend_domid,
            d,
            DeviceKind::Vif,
            n,
            &[("handle", n.to_string()), ("mac", f.MAC.clone())],
            &be,
        );
    }

    fn vbds_tree(&self, tx: &mut XsTransaction, v: &VmRecord, d: DomId) {
        for r in &v.VBDs {
            self.vbd_tree(tx, r, d);
        }
    }

    /// One VBD's directories, if it is attached.
    fn vbd_tree(&self, tx: &mut XsTransaction, r: &str, d: DomId) {
        let Ok(Record::Vbd(b)) = self.recs.get(Class::Vbd, r) else {
            return;
        };
        if !b.currently_attached {
            return;
        }
        let n = layout::xvd_number(b.userdevice.parse().unwrap_or(0));
        let params = match self.recs.get(Class::Vdi, &b.VDI) {
            Ok(Record::Vdi(vdi)) => vdi.sm_config.get("path").cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let dtype = if b.ty == "CD" { "cdrom" } else { "disk" };
        let mode = if b.mode == "RO" { "r" } else { "w" };
        self.plumb(
            tx,
            self.vbd_backend(),
            d,
            DeviceKind::Vbd,
            n,
            &[
                ("virtual-device", n.to_string()),
                ("device-type", dtype.into()),
            ],
            &[
                ("params", params),
                ("mode", mode.into()),
                ("type", "file".into()),
                ("device-type", dtype.into()),
            ],
        );
    }

    /// The driver domain serving devices of `kind` was restarted as
    /// domain `new` (a new domid): from now on devices of that kind are
    /// written under it, and every running VM's devices of that kind move
    /// there. The answer holds, per running domain, the transaction that
    /// removes its old backend directories and writes its devices' frontend
    /// and backend directories anew (both `Initialising`: the frontend
    /// sees its `backend` change and walks the states again), to commit
    /// before plugging the devices into the new domain.
    pub fn backend_restarted(
        &mut self,
        kind: DeviceKind,
        new: DomId,
    ) -> Vec<(DomId, String, XsTransaction)> {
        let old = match kind {
            DeviceKind::Vif => core::mem::replace(&mut self.settings.backend_domid, new),
            DeviceKind::Vbd => {
                let old = self.vbd_backend();
                self.settings.vbd_backend_domid = Some(new);
                old
            }
        };
        let mut out = Vec::new();
        for (&d, uuid) in &self.by_dom {
            let d = DomId(d);
            let Ok(v) = self.recs.vm(&crate::action::ref_of(uuid)) else {
                continue;
            };
            let mut tx = XsTransaction::default();
            tx.rm(layout::backend_guest_dir(old, kind, d));
            // The frontend directories too: their nodes carry the old
            // backend's read permission.
            let devs = if kind == DeviceKind::Vif {
                &v.VIFs
            } else {
                &v.VBDs
            };
            for r in devs {
                let n = match self
                    .recs
                    .get(Class::Vif, r)
                    .or_else(|_| self.recs.get(Class::Vbd, r))
                {
                    Ok(Record::Vif(f)) => f.device.parse().unwrap_or(0),
                    Ok(Record::Vbd(b)) => layout::xvd_number(b.userdevice.parse().unwrap_or(0)),
                    _ => continue,
                };
                tx.rm(layout::frontend(d, kind, n));
            }
            self.devices_tree(&mut tx, v, d, kind);
            out.push((d, uuid.clone(), tx));
        }
        out
    }

    /// `VIF.plug`/`VBD.plug` (`on`) or `unplug` of device `r` of class
    /// `class`: its VM must be running, the device detached (plug) or
    /// attached (unplug). Marks it, and answers what the executor does:
    /// for a plug, write the directories ([`Hotplug::tx`]) then plug it
    /// into its backend; for an unplug, unplug it from its backend then
    /// remove them.
    pub fn device_hotplug(
        &mut self,
        class: Class,
        r: &str,
        on: bool,
    ) -> Result<Hotplug, ActionError> {
        let rec = self.recs.get(class, r)?.clone();
        let vm_ref = device_vm(&rec).ok_or_else(|| ActionError::HandleInvalid {
            class,
            r: r.to_string(),
        })?;
        let v = self.recs.vm(&vm_ref)?.clone();
        if v.power_state != crate::action::PowerState::Running {
            return Err(ActionError::VmBadPowerState {
                vm: vm_ref,
                expected: crate::action::PowerState::Running,
                actual: v.power_state,
            });
        }
        let d = self.domain_of(&v.uuid)?;
        let attached = match &rec {
            Record::Vif(f) => f.currently_attached,
            Record::Vbd(b) => b.currently_attached,
            _ => false,
        };
        match (on, attached) {
            (true, true) => {
                return Err(ActionError::DeviceAlreadyAttached {
                    device: r.to_string(),
                })
            }
            (false, false) => {
                return Err(ActionError::DeviceAlreadyDetached {
                    device: r.to_string(),
                })
            }
            _ => {}
        }
        let (kind, devid, rec) = match rec {
            Record::Vif(mut f) => {
                f.currently_attached = on;
                (
                    DeviceKind::Vif,
                    f.device.parse().unwrap_or(0),
                    Record::Vif(f),
                )
            }
            Record::Vbd(mut b) => {
                b.currently_attached = on;
                let n = layout::xvd_number(b.userdevice.parse().unwrap_or(0));
                (DeviceKind::Vbd, n, Record::Vbd(b))
            }
            _ => unreachable!("device_vm answered for VIFs and VBDs only"),
        };
        self.put(rec, EventOp::Mod);
        let mut tx = XsTransaction::default();
        let bd = match kind {
            DeviceKind::Vif => self.settings.backend_domid,
            DeviceKind::Vbd => self.vbd_backend(),
        };
        if on {
            match kind {
                DeviceKind::Vif => self.vif_tree(&mut tx, r, d),
                DeviceKind::Vbd => self.vbd_tree(&mut tx, r, d),
            }
        } else {
            tx.rm(layout::frontend(d, kind, devid));
            tx.rm(layout::backend(bd, kind, d, devid));
        }
        let (vif, vbd) = match kind {
            DeviceKind::Vif => (
                self.vif_plugs(&v).into_iter().find(|p| p.devid == devid),
                None,
            ),
            DeviceKind::Vbd => (
                None,
                self.vbd_plugs(&v).into_iter().find(|p| p.devid == devid),
            ),
        };
        Ok(Hotplug {
            domain: d,
            kind,
            devid,
            tx,
            vif,
            vbd,
        })
    }

    /// `currently_attached` of `v`'s VIFs and VBDs (their devices were
    /// written for a new domain, or removed with it).
    pub(crate) fn set_attached(&mut self, v: &VmRecord, on: bool) {
        for r in v.VIFs.iter().chain(v.VBDs.iter()) {
            let rec = match self
                .recs
                .get(Class::Vif, r)
                .or_else(|_| self.recs.get(Class::Vbd, r))
            {
                Ok(Record::Vif(f)) if f.currently_attached != on => {
                    let mut f = f.clone();
                    f.currently_attached = on;
                    Record::Vif(f)
                }
                Ok(Record::Vbd(b)) if b.currently_attached != on => {
                    let mut b = b.clone();
                    b.currently_attached = on;
                    Record::Vbd(b)
                }
                _ => continue,
            };
            self.put(rec, EventOp::Mod);
        }
    }

    /// The domain serving VBD backends.
    pub fn vbd_backend(&self) -> DomId {
        self.settings
            .vbd_backend_domid
            .unwrap_or(self.settings.backend_domid)
    }

    /// The VIFs of VM `v`, as its network backend is told to serve them.
    pub fn vif_plugs(&self, v: &VmRecord) -> Vec<VifPlug> {
        v.VIFs
            .iter()
            .filter_map(|r| match self.recs.get(Class::Vif, r) {
                Ok(Record::Vif(f)) if f.currently_attached => Some(VifPlug {
                    devid: f.device.parse().unwrap_or(0),
                    mac: f.MAC.clone(),
                    mtu: u32::try_from(f.MTU).unwrap_or(1500),
                }),
                _ => None,
            })
            .collect()
    }

    /// The VBDs of VM `v` with a disk, as blkback is told to serve them.
    pub fn vbd_plugs(&self, v: &VmRecord) -> Vec<VbdPlug> {
        v.VBDs
            .iter()
            .filter_map(|r| match self.recs.get(Class::Vbd, r) {
                Ok(Record::Vbd(b)) if b.currently_attached => Some(VbdPlug {
                    devid: layout::xvd_number(b.userdevice.parse().unwrap_or(0)),
                    params: match self.recs.get(Class::Vdi, &b.VDI) {
                        Ok(Record::Vdi(vdi)) => vdi.sm_config.get("path").cloned()?,
                        _ => return None,
                    },
                    readonly: b.mode == "RO",
                }),
                _ => None,
            })
            .collect()
    }

    /// The VBDs of VM `uuid` (none if it is gone).
    pub fn vbd_plugs_of(&self, uuid: &str) -> Vec<VbdPlug> {
        match self.recs.vm(&crate::action::ref_of(uuid)) {
            Ok(v) => self.vbd_plugs(v),
            Err(_) => Vec::new(),
        }
    }

    /// The VIFs of VM `uuid` (none if it is gone).
    pub fn vif_plugs_of(&self, uuid: &str) -> Vec<VifPlug> {
        match self.recs.vm(&crate::action::ref_of(uuid)) {
            Ok(v) => self.vif_plugs(v),
            Err(_) => Vec::new(),
        }
    }

    /// One device's frontend and backend directories, each end owned by
    /// its domain and readable by the other, both `Initialising`.
    #[allow(clippy::too_many_arguments)]
    fn plumb(
        &self,
        tx: &mut XsTransaction,
        bd: DomId,
        d: DomId,
        kind: DeviceKind,
        n: u32,
        fe_extra: &[(&str, String)],
        be_extra: &[(&str, String)],
    ) {
        let fe = layout::frontend(d, kind, n);
        let be = layout::backend(bd, kind, d, n);
        tx.write(fe.as_str(), "");
        tx.set_perms(
            fe.as_str(),
            &[perm(d, Access::None), perm(bd, Access::Read)],
        );
        tx.write(be.as_str(), "");
        tx.set_perms(
            be.as_str(),
            &[perm(bd, Access::None), perm(d, Access::Read)],
        );
        let init = layout::initial_state();
        let mut fe_nodes = vec![
            ("backend", be.clone()),
            ("backend-id", bd.0.to_string()),
            ("state", init.into()),
        ];
        fe_nodes.extend(fe_extra.iter().map(|(k, v)| (*k, v.clone())));
        let mut be_nodes = vec![
            ("frontend", fe.clone()),
            ("frontend-id", d.0.to_string()),
            ("online", "1".into()),
            ("state", init.into()),
        ];
        be_nodes.extend(be_extra.iter().map(|(k, v)| (*k, v.clone())));
        for (k, v) in fe_nodes {
            tx.write(format!("{fe}/{k}"), v);
        }
        for (k, v) in be_nodes {
            tx.write(format!("{be}/{k}"), v);
        }
    }

    /// The removal of `/local/domain/<d>` and `d`'s backend directories
    /// (each may be missing), in one transaction.
    pub fn domain_removal(&self, d: DomId) -> XsTransaction {
        let mut tx = XsTransaction::default();
        tx.rm(layout::domain(d));
        for (bd, kind) in [
            (self.settings.backend_domid, DeviceKind::Vif),
            (self.vbd_backend(), DeviceKind::Vbd),
        ] {
            tx.rm(layout::backend_guest_dir(bd, kind, d));
        }
        tx
    }
}

/// The domains listed under `/local/domain` that no longer exist (`live`
/// holds every domain the platform knows, sorted): their nodes and
/// introduction are to be removed. dom0 is never one.
pub fn dead_domains(listed: &[String], live: &[u16]) -> Vec<DomId> {
    listed
        .iter()
        .filter_map(|n| n.parse::<u16>().ok())
        .filter(|d| *d != 0 && live.binary_search(d).is_err())
        .map(DomId)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, NewRecord, PowerState, VifRecord};
    use crate::effect::XsOp;
    use crate::engine::testing::*;
    use crate::lifecycle::Op;

    /// A VM with one VIF, started as domain 7; its VIF's ref.
    fn running_vm_with_vif(e: &mut Engine) -> (Ref, Ref) {
        let net = made(call(
            e,
            Action::Create(NewRecord::Network(Default::default())),
        ));
        let vm = new_vm(e, "a");
        let vif = made(call(
            e,
            Action::Create(NewRecord::Vif(VifRecord {
                device: "0".into(),
                network: net,
                vm: vm.clone(),
                MTU: 1500,
                ..VifRecord::default()
            })),
        ));
        let v = e.begin(&vm, Op::Start).unwrap();
        e.attach(&v, DomId(7));
        e.started(v, Op::Start, DomId(7), false);
        (vm, vif)
    }

    fn attached(e: &Engine, vif: &str) -> bool {
        match e.recs.get(Class::Vif, vif) {
            Ok(Record::Vif(f)) => f.currently_attached,
            r => panic!("{r:?}"),
        }
    }

    fn writes(tx: &XsTransaction, prefix: &str) -> bool {
        tx.ops
            .iter()
            .any(|o| matches!(o, XsOp::Write(p, _) if p.starts_with(prefix)))
    }

    #[test]
    fn hotplug_follows_xapi_rules() {
        let mut e = engine();
        let halted = new_vm(&mut e, "h");
        let (vm, vif) = running_vm_with_vif(&mut e);
        assert!(attached(&e, &vif));
        assert!(matches!(
            e.device_hotplug(Class::Vif, &vif, true),
            Err(ActionError::DeviceAlreadyAttached { .. })
        ));
        let h = e.device_hotplug(Class::Vif, &vif, false).unwrap();
        assert!(!attached(&e, &vif));
        assert_eq!((h.domain, h.devid, h.vif), (DomId(7), 0, None));
        assert!(h
            .tx
            .ops
            .contains(&XsOp::Rm("/local/domain/7/device/vif/0".into())));
        assert!(matches!(
            e.device_hotplug(Class::Vif, &vif, false),
            Err(ActionError::DeviceAlreadyDetached { .. })
        ));
        // A detached device is neither plugged nor moved at a restart.
        assert!(e
            .vif_plugs_of(crate::action::uuid_of(&vm).unwrap())
            .is_empty());
        let h = e.device_hotplug(Class::Vif, &vif, true).unwrap();
        assert!(attached(&e, &vif));
        assert!(writes(&h.tx, "/local/domain/7/device/vif/0/backend"));
        assert_eq!(h.vif.map(|p| p.devid), Some(0));
        // A VIF created on the running VM is detached until plugged, and
        // can be destroyed while detached, not while attached.
        let network0 = match e.recs.get(Class::Vif, &vif) {
            Ok(Record::Vif(f)) => f.network.clone(),
            r => panic!("{r:?}"),
        };
        let hot = made(call(
            &mut e,
            Action::Create(NewRecord::Vif(VifRecord {
                device: "1".into(),
                network: network0,
                vm: vm.clone(),
                MTU: 1500,
                ..VifRecord::default()
            })),
        ));
        assert!(!attached(&e, &hot));
        e.device_hotplug(Class::Vif, &hot, true).unwrap();
        assert!(matches!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Vif,
                    r: hot.clone()
                }
            ),
            Err(ActionError::VmBadPowerState { .. })
        ));
        e.device_hotplug(Class::Vif, &hot, false).unwrap();
        call(
            &mut e,
            Action::Destroy {
                class: Class::Vif,
                r: hot,
            },
        )
        .unwrap();
        // A halted VM's device: VM_BAD_POWER_STATE.
        let network = match e.recs.get(Class::Vif, &vif) {
            Ok(Record::Vif(f)) => f.network.clone(),
            r => panic!("{r:?}"),
        };
        let vif2 = made(call(
            &mut e,
            Action::Create(NewRecord::Vif(VifRecord {
                device: "0".into(),
                network,
                vm: halted,
                MTU: 1500,
                ..VifRecord::default()
            })),
        ));
        assert!(matches!(
            e.device_hotplug(Class::Vif, &vif2, true),
            Err(ActionError::VmBadPowerState {
                expected: PowerState::Running,
                actual: PowerState::Halted,
                ..
            })
        ));
    }

    #[test]
    fn a_restarted_backend_gets_the_running_vms_devices() {
        let mut e = engine();
        let (_vm, _vif) = running_vm_with_vif(&mut e);
        let old = e.settings.backend_domid;
        let moved = e.backend_restarted(DeviceKind::Vif, DomId(42));
        assert_eq!(e.settings.backend_domid, DomId(42));
        assert_eq!(moved.len(), 1);
        let (d, _, tx) = &moved[0];
        assert_eq!(*d, DomId(7));
        // Old directories go first, then the device is written anew under
        // the new backend, readable by it.
        assert_eq!(
            tx.ops[0],
            XsOp::Rm(layout::backend_guest_dir(old, DeviceKind::Vif, DomId(7)))
        );
        assert_eq!(tx.ops[1], XsOp::Rm("/local/domain/7/device/vif/0".into()));
        assert!(tx.ops.contains(&XsOp::Write(
            "/local/domain/7/device/vif/0/backend".into(),
            b"/local/domain/42/backend/vif/7/0".to_vec()
        )));
        assert!(tx.ops.iter().any(|o| matches!(o,
            XsOp::SetPerms(p, perms) if p == "/local/domain/7/device/vif/0"
                && perms.iter().any(|x| x.dom == DomId(42)))));
        // VBD backends are not touched by a netback restart.
        assert!(!writes(tx, "/local/domain/7/device/vbd"));
    }

    #[test]
    fn xenstore_data_add_and_remove() {
        let mut e = engine();
        let vm = new_vm(&mut e, "x");
        let add = |k: &str, v: &str| Action::VmAddToXenstoreData {
            vm: vm.clone(),
            key: k.into(),
            value: v.into(),
        };
        call(&mut e, add("vm-data/a", "1")).unwrap();
        assert!(matches!(
            call(&mut e, add("vm-data/a", "2")),
            Err(ActionError::MapDuplicateKey { .. })
        ));
        assert_eq!(
            e.recs
                .vm(&vm)
                .unwrap()
                .xenstore_data
                .get("vm-data/a")
                .map(String::as_str),
            Some("1")
        );
        for _ in 0..2 {
            call(
                &mut e,
                Action::VmRemoveFromXenstoreData {
                    vm: vm.clone(),
                    key: "vm-data/a".into(),
                },
            )
            .unwrap();
        }
        assert!(e.recs.vm(&vm).unwrap().xenstore_data.is_empty());
    }
}
