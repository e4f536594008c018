//! Storage rules: SRs, their PBDs (an SR's attachment to a host) and VDIs.
//!
//! * `SR.create` makes the SR and a plugged PBD to the host;
//!   `SR.introduce` makes a record only (no PBD, sizes unknown: -1).
//! * `SR.destroy` and `SR.forget` need every PBD unplugged
//!   (`SR_HAS_PBD`); destroy needs no VDI left, forget drops the VDI
//!   records unless a VM uses one (`VDI_IN_USE`). The PBDs go, and pool
//!   fields naming the SR are reset to `OpaqueRef:NULL`.
//! * A VDI belongs to an SR (it must exist) and adds its virtual size to
//!   the SR's `virtual_allocation`; it cannot be destroyed while a VBD
//!   points at it.

use alloc::string::ToString;
use alloc::vec;

use crate::action::{
    ref_of, uuid_of, ActionError, ActionResult, Class, EventOp, Map, PbdRecord, Record, Reply,
    SrRecord, SrSpec, VdiRecord, NULL_REF,
};
use crate::engine::Engine;
use crate::records::is_uuid;

impl Engine {
    /// The record of a new VDI `uuid`, linked into its SR.
    pub(crate) fn vdi_create(
        &mut self,
        mut d: VdiRecord,
        uuid: &str,
    ) -> Result<Record, ActionError> {
        d.uuid = uuid.to_string();
        d.VBDs.clear();
        if !self.settings.sr_dir.is_empty() && !d.sm_config.contains_key("path") {
            let path = alloc::format!("{}/{uuid}.img", self.settings.sr_dir);
            d.sm_config.insert("path".into(), path.clone());
            self.effects.push(crate::effect::Effect::CreateDisk {
                path,
                size: u64::try_from(d.virtual_size).unwrap_or(0),
            });
        }
        if let Record::Sr(mut s) = self.recs.get(Class::Sr, &d.SR)?.clone() {
            s.VDIs.push(ref_of(uuid));
            s.virtual_allocation += d.virtual_size;
            self.put(Record::Sr(s), EventOp::Mod);
        }
        Ok(Record::Vdi(d))
    }

    /// `VDI.destroy`: not while a VBD uses it.
    pub(crate) fn vdi_destroy(&mut self, d: VdiRecord, r: &str) -> Result<(), ActionError> {
        if !d.VBDs.is_empty() {
            return Err(ActionError::HasDependents {
                class: Class::Vdi,
                r: r.to_string(),
                dependents: Class::Vbd,
            });
        }
        if let Ok(Record::Sr(mut s)) = self.recs.get(Class::Sr, &d.SR).cloned() {
            s.VDIs.retain(|x| x != r);
            s.virtual_allocation -= d.virtual_size;
            self.put(Record::Sr(s), EventOp::Mod);
        }
        if let Some(path) = d.sm_config.get("path") {
            let dir = &self.settings.sr_dir;
            // Only the files this host made (in its SR directory).
            if !dir.is_empty() && path.starts_with(dir.as_str()) {
                self.effects
                    .push(crate::effect::Effect::RemoveDisk(path.clone()));
            }
        }
        self.remove(Class::Vdi, &d.uuid);
        Ok(())
    }

    /// `SR.create`: the SR and a plugged PBD to `host`.
    pub(crate) fn sr_create(
        &mut self,
        host: &str,
        device_config: Map,
        spec: SrSpec,
    ) -> ActionResult {
        let Record::Host(mut h) = self.recs.get(Class::Host, host)?.clone() else {
            return Err(ActionError::HandleInvalid {
                class: Class::Host,
                r: host.to_string(),
            });
        };
        let su = self.ids.uuid();
        let pu = self.ids.uuid();
        let sr = Record::Sr(SrRecord {
            uuid: su.clone(),
            name_label: spec.name_label,
            name_description: spec.name_description,
            ty: spec.ty.to_ascii_lowercase(),
            content_type: spec.content_type,
            shared: spec.shared,
            sm_config: spec.sm_config,
            physical_size: spec.physical_size,
            PBDs: vec![ref_of(&pu)],
            ..SrRecord::default()
        });
        self.put(sr, EventOp::Add);
        let pbd = Record::Pbd(PbdRecord {
            uuid: pu.clone(),
            host: host.to_string(),
            SR: ref_of(&su),
            device_config,
            currently_attached: true,
            other_config: Map::new(),
        });
        self.put(pbd, EventOp::Add);
        h.PBDs.push(ref_of(&pu));
        self.put(Record::Host(h), EventOp::Mod);
        Ok(Reply::Ref(ref_of(&su)))
    }

    /// `SR.introduce`: a record, no PBD; sizes unknown (-1) as in XAPI.
    pub(crate) fn sr_introduce(&mut self, spec: SrSpec) -> ActionResult {
        let uuid = if spec.uuid.is_empty() {
            self.ids.uuid()
        } else if is_uuid(&spec.uuid) {
            spec.uuid.to_ascii_lowercase()
        } else {
            return Err(ActionError::ValueNotSupported {
                field: "uuid".into(),
                value: spec.uuid,
                reason: "not a uuid".into(),
            });
        };
        if self.recs.contains(Class::Sr, &uuid) {
            return Err(ActionError::SrUuidExists { uuid });
        }
        let sr = Record::Sr(SrRecord {
            uuid: uuid.clone(),
            name_label: spec.name_label,
            name_description: spec.name_description,
            ty: spec.ty.to_ascii_lowercase(),
            content_type: spec.content_type,
            shared: spec.shared,
            sm_config: spec.sm_config,
            physical_size: -1,
            physical_utilisation: -1,
            ..SrRecord::default()
        });
        self.put(sr, EventOp::Add);
        Ok(Reply::Ref(ref_of(&uuid)))
    }

    /// `SR.destroy` (`destroy`) and `SR.forget`: see the module doc.
    pub(crate) fn sr_drop(&mut self, r: &str, destroy: bool) -> ActionResult {
        let Record::Sr(sr) = self.recs.get(Class::Sr, r)?.clone() else {
            return Err(ActionError::HandleInvalid {
                class: Class::Sr,
                r: r.to_string(),
            });
        };
        let attached = sr.PBDs.iter().any(
            |p| matches!(self.recs.get(Class::Pbd, p), Ok(Record::Pbd(p)) if p.currently_attached),
        );
        if attached {
            return Err(ActionError::SrHasPbd { sr: r.to_string() });
        }
        if destroy && !sr.VDIs.is_empty() {
            return Err(ActionError::HasDependents {
                class: Class::Sr,
                r: r.to_string(),
                dependents: Class::Vdi,
            });
        }
        for vdi in &sr.VDIs {
            if matches!(self.recs.get(Class::Vdi, vdi), Ok(Record::Vdi(d)) if !d.VBDs.is_empty()) {
                return Err(ActionError::VdiInUse {
                    vdi: vdi.clone(),
                    op: "forget",
                });
            }
        }
        for vdi in &sr.VDIs {
            if let Some(u) = uuid_of(vdi) {
                if self.recs.contains(Class::Vdi, u) {
                    self.remove(Class::Vdi, u);
                }
            }
        }
        for pbd in &sr.PBDs {
            let Ok(Record::Pbd(p)) = self.recs.get(Class::Pbd, pbd).cloned() else {
                continue;
            };
            if let Ok(Record::Host(mut h)) = self.recs.get(Class::Host, &p.host).cloned() {
                h.PBDs.retain(|x| x != pbd);
                self.put(Record::Host(h), EventOp::Mod);
            }
            self.remove(Class::Pbd, &p.uuid);
        }
        self.remove(Class::Sr, &sr.uuid);
        for mut p in self.recs.pools() {
            let before = p.clone();
            for f in p.sr_fields_mut() {
                if f == r {
                    *f = NULL_REF.into();
                }
            }
            if p != before {
                self.put(Record::Pool(p), EventOp::Mod);
            }
        }
        Ok(Reply::Unit)
    }

    /// `PBD.plug` / `PBD.unplug`.
    pub(crate) fn pbd_plug(&mut self, r: &str, attached: bool) -> ActionResult {
        let mut rec = self.recs.get(Class::Pbd, r)?.clone();
        if let Record::Pbd(p) = &mut rec {
            p.currently_attached = attached;
        }
        self.put(rec, EventOp::Mod);
        Ok(Reply::Unit)
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;

    use super::*;
    use crate::action::{Action, PoolRecord, VbdRecord};
    use crate::engine::testing::*;

    fn spec(name: &str) -> SrSpec {
        SrSpec {
            uuid: String::new(),
            name_label: name.into(),
            name_description: String::new(),
            ty: "EXT".into(),
            content_type: "user".into(),
            shared: false,
            sm_config: Map::new(),
            physical_size: 1 << 30,
        }
    }

    fn sr(e: &Engine, r: &str) -> SrRecord {
        match e.recs.get(Class::Sr, r) {
            Ok(Record::Sr(s)) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn pool(e: &Engine) -> PoolRecord {
        e.recs.pools().pop().unwrap()
    }

    #[test]
    fn create_plugs_a_pbd_and_destroy_needs_it_unplugged() {
        let mut e = engine();
        let host = e.host_ref().into();
        let s = made(call(
            &mut e,
            Action::SrCreate {
                host,
                device_config: Map::new(),
                spec: spec("x"),
            },
        ));
        let rec = sr(&e, &s);
        assert_eq!(rec.ty, "ext");
        assert_eq!(rec.PBDs.len(), 1);
        let pbd = rec.PBDs[0].clone();
        assert_eq!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Sr,
                    r: s.clone()
                }
            ),
            Err(ActionError::SrHasPbd { sr: s.clone() })
        );
        call(&mut e, Action::PbdUnplug { pbd: pbd.clone() }).unwrap();
        call(
            &mut e,
            Action::Destroy {
                class: Class::Sr,
                r: s.clone(),
            },
        )
        .unwrap();
        assert!(e.recs.get(Class::Pbd, &pbd).is_err());
        let Ok(Record::Host(h)) = e.recs.get(Class::Host, e.host_ref()) else {
            panic!()
        };
        assert!(!h.PBDs.contains(&pbd));
    }

    #[test]
    fn introduce_checks_the_uuid_and_has_no_pbd() {
        let mut e = engine();
        let bad = SrSpec {
            uuid: "../x".into(),
            ..spec("x")
        };
        assert!(matches!(
            call(&mut e, Action::SrIntroduce { spec: bad }),
            Err(ActionError::ValueNotSupported { .. })
        ));
        let u = "0123abcd-0000-4000-8000-00000000000A";
        let s = made(call(
            &mut e,
            Action::SrIntroduce {
                spec: SrSpec {
                    uuid: u.into(),
                    ..spec("x")
                },
            },
        ));
        assert_eq!(s, ref_of(&u.to_ascii_lowercase()));
        assert!(sr(&e, &s).PBDs.is_empty());
        assert_eq!(sr(&e, &s).physical_size, -1);
        assert!(matches!(
            call(
                &mut e,
                Action::SrIntroduce {
                    spec: SrSpec {
                        uuid: u.into(),
                        ..spec("y")
                    }
                }
            ),
            Err(ActionError::SrUuidExists { .. })
        ));
    }

    #[test]
    fn vdis_get_an_image_file_in_the_sr_directory() {
        let mut e = engine();
        e.settings.sr_dir = "/data/sr".into();
        let local = pool(&e).default_SR;
        let vdi = made(call(
            &mut e,
            Action::Create(crate::action::NewRecord::Vdi(VdiRecord {
                SR: local.clone(),
                virtual_size: 3 << 20,
                ..VdiRecord::default()
            })),
        ));
        let Ok(Record::Vdi(d)) = e.recs.get(Class::Vdi, &vdi).cloned() else {
            panic!("no VDI")
        };
        let path = alloc::format!("/data/sr/{}.img", d.uuid);
        assert_eq!(d.sm_config.get("path"), Some(&path));
        let fx = e.take_effects();
        assert!(fx.contains(&crate::effect::Effect::CreateDisk {
            path: path.clone(),
            size: 3 << 20
        }));
        // A VDI given its own path (not in the SR directory) keeps it, and
        // its file is neither made nor removed.
        let mut own = Map::new();
        own.insert("path".into(), "/elsewhere/x.img".into());
        let other = made(call(
            &mut e,
            Action::Create(crate::action::NewRecord::Vdi(VdiRecord {
                SR: local.clone(),
                virtual_size: 1 << 20,
                sm_config: own,
                ..VdiRecord::default()
            })),
        ));
        for r in [vdi, other] {
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Vdi,
                    r,
                },
            )
            .unwrap();
        }
        let fx = e.take_effects();
        let removed: alloc::vec::Vec<_> = fx
            .iter()
            .filter(|x| matches!(x, crate::effect::Effect::RemoveDisk(_)))
            .collect();
        assert_eq!(removed, [&crate::effect::Effect::RemoveDisk(path)]);
        assert!(!fx
            .iter()
            .any(|x| matches!(x, crate::effect::Effect::CreateDisk { .. })));
    }

    #[test]
    fn vdis_count_against_their_sr_and_block_destroy_and_forget() {
        let mut e = engine();
        let local = pool(&e).default_SR;
        let vdi = made(call(
            &mut e,
            Action::Create(crate::action::NewRecord::Vdi(VdiRecord {
                SR: local.clone(),
                virtual_size: 1 << 20,
                ..VdiRecord::default()
            })),
        ));
        assert_eq!(sr(&e, &local).virtual_allocation, 1 << 20);
        let vm = new_vm(&mut e, "a");
        let vbd = made(call(
            &mut e,
            Action::Create(crate::action::NewRecord::Vbd(VbdRecord {
                vm: vm.clone(),
                VDI: vdi.clone(),
                userdevice: "0".into(),
                ..VbdRecord::default()
            })),
        ));
        assert!(matches!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Vdi,
                    r: vdi.clone()
                }
            ),
            Err(ActionError::HasDependents {
                dependents: Class::Vbd,
                ..
            })
        ));
        let pbd = sr(&e, &local).PBDs[0].clone();
        call(&mut e, Action::PbdUnplug { pbd }).unwrap();
        assert!(matches!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Sr,
                    r: local.clone()
                }
            ),
            Err(ActionError::HasDependents {
                dependents: Class::Vdi,
                ..
            })
        ));
        assert_eq!(
            call(&mut e, Action::SrForget { sr: local.clone() }),
            Err(ActionError::VdiInUse {
                vdi: vdi.clone(),
                op: "forget"
            })
        );
        call(
            &mut e,
            Action::Destroy {
                class: Class::Vbd,
                r: vbd,
            },
        )
        .unwrap();
        // Forget drops the VDI records, the PBD, and resets the pool's fields.
        call(&mut e, Action::SrForget { sr: local.clone() }).unwrap();
        assert!(e.recs.get(Class::Vdi, &vdi).is_err());
        let p = pool(&e);
        assert_eq!(p.default_SR, NULL_REF);
        assert_eq!(p.suspend_image_SR, NULL_REF);
    }
}
