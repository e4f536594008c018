//! What a toolstack start does to the records: the host, pool and
//! template of a first start, the storage and network XAPI has from its
//! first start, and the runtime state of VMs whose domains survived.
//!
//! Runs at every start, so a pool database from an older Windsor gets the
//! records it lacks, and a restart adds nothing: the SR is created only
//! when there is no SR at all, the network only when there is no network,
//! the PIF only when the host has none (on the network bridged to
//! `xenbr0`), and a pool SR field is set only when it names no SR. No
//! event is published (no client is connected yet).

use alloc::format;
use alloc::vec;

use xen::DomId;

use crate::action::{
    ref_of, Class, HostRecord, Map, NetworkRecord, PbdRecord, PifRecord, PoolRecord, Record,
    SrRecord, VmRecord, NULL_REF,
};
use crate::engine::Engine;

/// The image name of the built-in fuzz-target guest (`PV_kernel`).
pub const FUZZ_IMAGE: &str = "fuzz-target";

/// Name of the template created at first start.
pub const FUZZ_TEMPLATE: &str = "Windsor fuzz-target";

/// `name_label` of the host's local SR created at first start.
pub const LOCAL_SR: &str = "Local storage";

/// `type` of the local SR: file-backed disk images on the host's own file
/// system, what XAPI calls an `ext` SR.
pub const LOCAL_SR_TYPE: &str = "ext";

/// `name_label` of the network created at first start (XAPI's name for
/// the network of the host's first NIC).
pub const DEFAULT_NETWORK: &str = "Pool-wide network associated with eth0";

/// `bridge` of that network.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// `device` of the host's PIF on it.
pub const DEFAULT_DEVICE: &str = "eth0";

impl Engine {
    /// Brings the loaded records up to date (see the module doc); `live`
    /// lists the domains that exist, with their handles, so VMs whose
    /// domain survived are re-attached and the others halted. The writes
    /// are in [`take_effects`](Self::take_effects).
    pub fn bootstrap(&mut self, live: &[(DomId, [u8; 16])]) {
        let host = self.recs.class(Class::Host).next().map(|(u, _)| u.into());
        let host = match host {
            Some(h) => h,
            None => self.first_start(),
        };
        self.host_ref = ref_of(&host);
        self.ensure_defaults(&host);
        self.reattach(live);
    }

    /// The host, pool and (if configured) template records.
    fn first_start(&mut self) -> alloc::string::String {
        let uuid = self.ids.uuid();
        let name = self.settings.host_name.clone();
        self.put_quiet(Record::Host(HostRecord {
            uuid: uuid.clone(),
            name_label: name.clone(),
            hostname: name,
            ..HostRecord::default()
        }));
        let pu = self.ids.uuid();
        self.put_quiet(Record::Pool(PoolRecord {
            uuid: pu,
            master: ref_of(&uuid),
            default_SR: NULL_REF.into(),
            ..PoolRecord::default()
        }));
        if self.settings.fuzz_template {
            let tu = self.ids.uuid();
            self.put_quiet(Record::Vm(VmRecord {
                uuid: tu,
                name_label: FUZZ_TEMPLATE.into(),
                name_description: "The built-in fuzz-target guest".into(),
                is_a_template: true,
                is_default_template: true,
                PV_kernel: FUZZ_IMAGE.into(),
                memory_static_max: 16 << 20,
                memory_dynamic_max: 16 << 20,
                memory_dynamic_min: 16 << 20,
                memory_target: 16 << 20,
                ..VmRecord::default()
            }));
        }
        uuid
    }

    /// The local SR with a plugged PBD, the pool-wide network with the
    /// host's PIF on it, and the pool's SR fields pointing at the local SR.
    fn ensure_defaults(&mut self, host: &str) {
        let host_ref = ref_of(host);
        if !self.recs.any(Class::Sr) {
            let su = self.ids.uuid();
            let pu = self.ids.uuid();
            let mut device_config = Map::new();
            device_config.insert("location".into(), "local".into());
            self.put_quiet(Record::Pbd(PbdRecord {
                uuid: pu.clone(),
                host: host_ref.clone(),
                SR: ref_of(&su),
                device_config,
                currently_attached: true,
                other_config: Map::new(),
            }));
            self.put_quiet(Record::Sr(SrRecord {
                uuid: su.clone(),
                name_label: LOCAL_SR.into(),
                name_description: format!("Local storage of {}", self.settings.host_name),
                ty: LOCAL_SR_TYPE.into(),
                content_type: "user".into(),
                PBDs: vec![ref_of(&pu)],
                ..SrRecord::default()
            }));
            if let Ok(Record::Host(mut h)) = self.recs.get(Class::Host, &host_ref).cloned() {
                h.PBDs.push(ref_of(&pu));
                self.put_quiet(Record::Host(h));
            }
            tracing::info!(sr = %su, "created the local SR");
        }
        if !self.recs.any(Class::Network) {
            let nu = self.ids.uuid();
            self.put_quiet(Record::Network(NetworkRecord {
                uuid: nu.clone(),
                name_label: DEFAULT_NETWORK.into(),
                bridge: DEFAULT_BRIDGE.into(),
                ..NetworkRecord::default()
            }));
            tracing::info!(network = %nu, "created the default network");
        }
        let has_pif = self
            .recs
            .class(Class::Pif)
            .any(|(_, r)| matches!(r, Record::Pif(p) if p.host == host_ref));
        let net = self.recs.class(Class::Network).find_map(|(_, r)| match r {
            Record::Network(n) if n.bridge == DEFAULT_BRIDGE => Some(n.clone()),
            _ => None,
        });
        if let (false, Some(mut net)) = (has_pif, net) {
            let pu = self.ids.uuid();
            let mac = self.ids.mac();
            self.put_quiet(Record::Pif(PifRecord {
                uuid: pu.clone(),
                device: DEFAULT_DEVICE.into(),
                network: ref_of(&net.uuid),
                host: host_ref.clone(),
                MAC: mac,
                MTU: net.MTU,
                currently_attached: true,
                management: true,
                ..PifRecord::default()
            }));
            net.PIFs.push(ref_of(&pu));
            self.put_quiet(Record::Network(net));
            if let Ok(Record::Host(mut h)) = self.recs.get(Class::Host, &host_ref).cloned() {
                h.PIFs.push(ref_of(&pu));
                self.put_quiet(Record::Host(h));
            }
        }
        // The local SR: one with a PBD to this host, else any.
        let local = self
            .recs
            .class(Class::Pbd)
            .find_map(|(_, r)| match r {
                Record::Pbd(p) if p.host == host_ref => Some(p.SR.clone()),
                _ => None,
            })
            .filter(|sr| self.recs.get(Class::Sr, sr).is_ok())
            .or_else(|| self.recs.class(Class::Sr).next().map(|(u, _)| ref_of(u)));
        let Some(local) = local else { return };
        for mut p in self.recs.pools() {
            let before = p.clone();
            for f in p.sr_fields_mut() {
                if self.recs.get(Class::Sr, f).is_err() {
                    *f = local.clone();
                }
            }
            if p != before {
                self.put_quiet(Record::Pool(p));
            }
        }
    }
}
