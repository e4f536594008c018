//! The action interface: every XenAPI lifecycle call as one [`Action`], and
//! what comes back ([`Reply`] or [`ActionError`]).
//!
//! Producer: the API (`api/`) parses each XenAPI call (`<Class>.<method>`)
//! into one [`Action`] and never touches VM state. Consumer: the toolstack
//! (`Toolstack::handle`) decides what is legal and does it. This is
//! Firecracker's `VmmAction` shape applied to XenAPI.
//!
//! # Mapping from XenAPI
//!
//! Each variant's doc names the XenAPI call it is. The API's call table
//! (`windsor_api::call`, one row per call: its name, its parameters and
//! the action it becomes) is the one place that maps calls onto actions;
//! adding a call is a variant here, its handling in the engine, and a row
//! there. `<Class>.get_<field>(ref)` is [`Action::GetRecord`], then the
//! field of the serialized record (the field names are XAPI's); every
//! `Async.<Class>.<call>` is [`Action::TaskCreate`], the call, then
//! [`Action::TaskFinish`] (see [`crate::task`]).
//!
//! The `xenstore` class is Windsor's: XAPI has no xenstore calls. The
//! calls act with dom0's rights on the host's store (see the toolstack's
//! `xs_calls` module for watches, their cursor and their bounds).
//!
//! Errors are typed: one [`ActionError`] variant per cause, carrying its
//! data (the VM, the expected and actual power states, ...). The toolstack
//! spells no XenAPI error codes; the API maps each variant to XAPI's code and
//! parameters (`windsor_api::error::action_error`), as it owns sessions and
//! login.
//!
//! # Refs
//!
//! An object's ref is `OpaqueRef:<uuid>` with the object's own uuid
//! ([`ref_of`], [`uuid_of`]); XAPI uses an unrelated uuid in refs, but no
//! client may rely on a ref's contents. The null ref is [`NULL_REF`].
//!
//! # Events
//!
//! Every change to a record bumps one toolstack-wide counter; [`Event::id`]
//! is its value and [`EventBatch::token`] the newest one seen. `event.from`
//! with token `""` (parsed by the API as 0) returns nothing old, only the
//! current token, as XAPI's `event.from` with an empty token returns every
//! object: here [`Action::EventFrom`] with `token: 0` returns an `add` per
//! existing object of the requested classes. Tokens are decimal strings on
//! the wire.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::Op;

/// An object reference as XenAPI sends it (`OpaqueRef:...`).
pub type Ref = String;

/// XAPI's null reference.
pub const NULL_REF: &str = "OpaqueRef:NULL";

/// The ref of the object with `uuid`.
pub fn ref_of(uuid: &str) -> Ref {
    format!("OpaqueRef:{uuid}")
}

/// The uuid inside a ref made by [`ref_of`], if it is one.
pub fn uuid_of(r: &str) -> Option<&str> {
    r.strip_prefix("OpaqueRef:").filter(|u| *u != "NULL")
}

/// A XenAPI class this toolstack serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Class {
    /// `VM`.
    #[serde(rename = "VM")]
    Vm,
    /// `host`.
    #[serde(rename = "host")]
    Host,
    /// `pool`.
    #[serde(rename = "pool")]
    Pool,
    /// `network`.
    #[serde(rename = "network")]
    Network,
    /// `SR`.
    #[serde(rename = "SR")]
    Sr,
    /// `VDI`.
    #[serde(rename = "VDI")]
    Vdi,
    /// `VIF`.
    #[serde(rename = "VIF")]
    Vif,
    /// `VBD`.
    #[serde(rename = "VBD")]
    Vbd,
    /// `PBD`: connects an SR to a host.
    #[serde(rename = "PBD")]
    Pbd,
    /// `PIF`: a host's interface on a network.
    #[serde(rename = "PIF")]
    Pif,
    /// `task`: an `Async.*` call in flight or finished (not persisted).
    #[serde(rename = "task")]
    Task,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 11] = [
        Class::Vm,
        Class::Host,
        Class::Pool,
        Class::Network,
        Class::Sr,
        Class::Vdi,
        Class::Vif,
        Class::Vbd,
        Class::Pbd,
        Class::Pif,
        Class::Task,
    ];

    /// Whether records of the class are kept in the pool database (tasks
    /// are not: XAPI does not persist them either).
    pub fn persisted(self) -> bool {
        self != Class::Task
    }

    /// The name XenAPI uses in method names (`VM`, `host`, `SR`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Class::Vm => "VM",
            Class::Host => "host",
            Class::Pool => "pool",
            Class::Network => "network",
            Class::Sr => "SR",
            Class::Vdi => "VDI",
            Class::Vif => "VIF",
            Class::Vbd => "VBD",
            Class::Pbd => "PBD",
            Class::Pif => "PIF",
            Class::Task => "task",
        }
    }

    /// The lower-case name used in events and `event.from` class lists
    /// (`vm`, `host`, `sr`, ...).
    pub fn event_name(self) -> &'static str {
        match self {
            Class::Vm => "vm",
            Class::Host => "host",
            Class::Pool => "pool",
            Class::Network => "network",
            Class::Sr => "sr",
            Class::Vdi => "vdi",
            Class::Vif => "vif",
            Class::Vbd => "vbd",
            Class::Pbd => "pbd",
            Class::Pif => "pif",
            Class::Task => "task",
        }
    }

    /// Parses a class name, case-insensitively (`VM`, `vm`, `SR` ...).
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// XAPI's `vm_power_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PowerState {
    /// `Halted`: no domain.
    #[default]
    Halted,
    /// `Paused`: a domain exists, its vCPUs do not run.
    Paused,
    /// `Running`.
    Running,
    /// `Suspended`: no domain, state saved.
    Suspended,
}

impl PowerState {
    /// The XenAPI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Halted => "Halted",
            PowerState::Paused => "Paused",
            PowerState::Running => "Running",
            PowerState::Suspended => "Suspended",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// String-to-string maps (`other_config`, `platform`, ...).
pub type Map = BTreeMap<String, String>;

/// A `VM` record, fields named as XAPI names them. Every field has XAPI's
/// default (serde `default`), so `VM.create` may omit any of them.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// Current power state (read-only through the API).
    pub power_state: PowerState,
    /// Counts user-visible configuration changes.
    pub user_version: i64,
    /// Whether this is a template (templates cannot be started).
    pub is_a_template: bool,
    /// Whether this is a default template shipped with the host.
    pub is_default_template: bool,
    /// Whether this is the control domain.
    pub is_control_domain: bool,
    /// The host it runs on, or [`NULL_REF`].
    pub resident_on: Ref,
    /// Preferred host, or [`NULL_REF`].
    pub affinity: Ref,
    /// Static maximum memory, bytes.
    pub memory_static_max: i64,
    /// Dynamic maximum memory, bytes. 0 in `VM.create` (the default):
    /// `memory_static_max`.
    pub memory_dynamic_max: i64,
    /// Dynamic minimum memory, bytes. 0 in `VM.create` (the default):
    /// `memory_dynamic_max`.
    pub memory_dynamic_min: i64,
    /// Static minimum memory, bytes.
    pub memory_static_min: i64,
    /// Target memory, bytes. 0 in `VM.create` (the default):
    /// `memory_dynamic_max`.
    pub memory_target: i64,
    /// Maximum vCPUs.
    pub VCPUs_max: i64,
    /// vCPUs at boot.
    pub VCPUs_at_startup: i64,
    /// vCPU parameters.
    pub VCPUs_params: Map,
    /// What to do when the guest powers off: `destroy` or `restart`.
    pub actions_after_shutdown: String,
    /// What to do when the guest reboots: `restart` or `destroy`.
    pub actions_after_reboot: String,
    /// What to do when the guest crashes: `destroy`, `restart`,
    /// `preserve`, ... (`destroy` and `restart` are implemented; others act
    /// as `destroy`).
    pub actions_after_crash: String,
    /// The kernel: in host mode, the name of a registered guest image
    /// (`fuzz-target`).
    pub PV_kernel: String,
    /// The initrd.
    pub PV_ramdisk: String,
    /// The kernel command line.
    pub PV_args: String,
    /// The bootloader (unused: Windsor boots PVH kernels directly).
    pub PV_bootloader: String,
    /// Bootloader arguments.
    pub PV_bootloader_args: String,
    /// Legacy PV arguments.
    pub PV_legacy_args: String,
    /// HVM boot policy (empty for PV/PVH).
    pub HVM_boot_policy: String,
    /// HVM boot parameters.
    pub HVM_boot_params: Map,
    /// `pv`, `hvm`, `pvh` or `unspecified`.
    pub domain_type: String,
    /// Platform flags.
    pub platform: Map,
    /// PCI bus path (unused).
    pub PCI_bus: String,
    /// The domain id while it has a domain, else -1.
    pub domid: i64,
    /// Free-form configuration.
    pub other_config: Map,
    /// Keys written to `/local/domain/<id>/` when the VM starts
    /// (`vm-data/...`).
    pub xenstore_data: Map,
    /// Its VIFs.
    pub VIFs: Vec<Ref>,
    /// Its VBDs.
    pub VBDs: Vec<Ref>,
    /// Operations that are legal now (computed from the power state).
    pub allowed_operations: Vec<String>,
    /// Operations in progress: task id to operation name.
    pub current_operations: Map,
    /// Why it last shut down, as reported by the domain (`poweroff`,
    /// `reboot`, `suspend`, `crash`, `halted` by the toolstack).
    pub last_shutdown_reason: String,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Recommendations (templates).
    pub recommendations: String,
    /// The VM it was cloned from, or [`NULL_REF`].
    pub parent: Ref,
    /// The hardware platform version.
    pub hardware_platform_version: i64,
    /// Whether a guest agent is present.
    pub has_vendor_device: bool,
}

impl Default for VmRecord {
    fn default() -> Self {
        VmRecord {
            uuid: String::new(),
            name_label: String::new(),
            name_description: String::new(),
            power_state: PowerState::Halted,
            user_version: 1,
            is_a_template: false,
            is_default_template: false,
            is_control_domain: false,
            resident_on: NULL_REF.to_string(),
            affinity: NULL_REF.to_string(),
            memory_static_max: 256 << 20,
            memory_dynamic_max: 0,
            memory_dynamic_min: 0,
            memory_static_min: 0,
            memory_target: 0,
            VCPUs_max: 1,
            VCPUs_at_startup: 1,
            VCPUs_params: Map::new(),
            actions_after_shutdown: "destroy".to_string(),
            actions_after_reboot: "restart".to_string(),
            actions_after_crash: "destroy".to_string(),
            PV_kernel: String::new(),
            PV_ramdisk: String::new(),
            PV_args: String::new(),
            PV_bootloader: String::new(),
            PV_bootloader_args: String::new(),
            PV_legacy_args: String::new(),
            HVM_boot_policy: String::new(),
            HVM_boot_params: Map::new(),
            domain_type: "pvh".to_string(),
            platform: Map::new(),
            PCI_bus: String::new(),
            domid: -1,
            other_config: Map::new(),
            xenstore_data: Map::new(),
            VIFs: Vec::new(),
            VBDs: Vec::new(),
            allowed_operations: Vec::new(),
            current_operations: Map::new(),
            last_shutdown_reason: String::new(),
            tags: Vec::new(),
            recommendations: String::new(),
            parent: NULL_REF.to_string(),
            hardware_platform_version: 0,
            has_vendor_device: false,
        }
    }
}

/// A `host` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// XenAPI major version (2, as XAPI 2.21).
    pub API_version_major: i64,
    /// XenAPI minor version (21).
    pub API_version_minor: i64,
    /// XenAPI vendor.
    pub API_version_vendor: String,
    /// Vendor implementation details.
    pub API_version_vendor_implementation: Map,
    /// Whether new VMs may start here.
    pub enabled: bool,
    /// Software versions (`product_brand`, `xen`, ...).
    pub software_version: Map,
    /// Host name.
    pub hostname: String,
    /// Management address.
    pub address: String,
    /// VMs with a domain on this host.
    pub resident_VMs: Vec<Ref>,
    /// Its PBDs (the SRs it is connected to).
    pub PBDs: Vec<Ref>,
    /// Its PIFs (its interfaces).
    pub PIFs: Vec<Ref>,
    /// Where suspend images go ([`NULL_REF`]: the pool's).
    pub suspend_image_sr: Ref,
    /// Where crash dumps go ([`NULL_REF`]: the pool's).
    pub crash_dump_sr: Ref,
    /// CPU details.
    pub cpu_info: Map,
    /// Free-form configuration.
    pub other_config: Map,
    /// Allowed operations.
    pub allowed_operations: Vec<String>,
    /// Operations in progress.
    pub current_operations: Map,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl Default for HostRecord {
    fn default() -> Self {
        let mut software_version = Map::new();
        software_version.insert("product_brand".into(), "Windsor".into());
        software_version.insert("xen".into(), "4.17".into());
        software_version.insert("xapi".into(), "2.21".into());
        HostRecord {
            uuid: String::new(),
            name_label: String::new(),
            name_description: String::new(),
            API_version_major: 2,
            API_version_minor: 21,
            API_version_vendor: "XenSource".into(),
            API_version_vendor_implementation: Map::new(),
            enabled: true,
            software_version,
            hostname: String::new(),
            address: String::new(),
            resident_VMs: Vec::new(),
            PBDs: Vec::new(),
            PIFs: Vec::new(),
            suspend_image_sr: NULL_REF.into(),
            crash_dump_sr: NULL_REF.into(),
            cpu_info: Map::new(),
            other_config: Map::new(),
            allowed_operations: Vec::new(),
            current_operations: Map::new(),
            tags: Vec::new(),
        }
    }
}

/// A `pool` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// The master host.
    pub master: Ref,
    /// Default SR for new VDIs.
    pub default_SR: Ref,
    /// Default SR for suspend images.
    pub suspend_image_SR: Ref,
    /// Default SR for crash dumps.
    pub crash_dump_SR: Ref,
    /// Free-form configuration.
    pub other_config: Map,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl PoolRecord {
    /// The pool's SR references: default, suspend image, crash dump.
    pub fn sr_fields_mut(&mut self) -> [&mut String; 3] {
        [
            &mut self.default_SR,
            &mut self.suspend_image_SR,
            &mut self.crash_dump_SR,
        ]
    }
}

/// A `network` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// Bridge (switch) name in netback.
    pub bridge: String,
    /// MTU.
    pub MTU: i64,
    /// VIFs on it.
    pub VIFs: Vec<Ref>,
    /// Host interfaces on it.
    pub PIFs: Vec<Ref>,
    /// Free-form configuration.
    pub other_config: Map,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl Default for NetworkRecord {
    fn default() -> Self {
        NetworkRecord {
            uuid: String::new(),
            name_label: String::new(),
            name_description: String::new(),
            bridge: String::new(),
            MTU: 1500,
            VIFs: Vec::new(),
            PIFs: Vec::new(),
            other_config: Map::new(),
            tags: Vec::new(),
        }
    }
}

/// A `PIF` record: a host's interface on a network. In host mode the
/// interface is netback's uplink; Windsor configures no addresses on it.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PifRecord {
    /// Unique identifier.
    pub uuid: String,
    /// The interface name (`eth0`).
    pub device: String,
    /// Its network.
    pub network: Ref,
    /// Its host.
    pub host: Ref,
    /// MAC address.
    pub MAC: String,
    /// MTU.
    pub MTU: i64,
    /// VLAN tag, -1 for none.
    pub VLAN: i64,
    /// Whether it is a physical interface.
    pub physical: bool,
    /// Whether it is up.
    pub currently_attached: bool,
    /// Whether the management interface is on it.
    pub management: bool,
    /// `None`, `DHCP` or `Static`.
    pub ip_configuration_mode: String,
    /// Free-form configuration.
    pub other_config: Map,
}

impl Default for PifRecord {
    fn default() -> Self {
        PifRecord {
            uuid: String::new(),
            device: String::new(),
            network: NULL_REF.into(),
            host: NULL_REF.into(),
            MAC: String::new(),
            MTU: 1500,
            VLAN: -1,
            physical: true,
            currently_attached: false,
            management: false,
            ip_configuration_mode: "None".into(),
            other_config: Map::new(),
        }
    }
}

/// An `SR` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SrRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// SR type (`file` in host mode).
    #[serde(rename = "type")]
    pub ty: String,
    /// Content type (`user`, `iso`).
    pub content_type: String,
    /// Size, bytes.
    pub physical_size: i64,
    /// Bytes used.
    pub physical_utilisation: i64,
    /// Sum of virtual sizes of its VDIs.
    pub virtual_allocation: i64,
    /// Whether all hosts see it.
    pub shared: bool,
    /// Its VDIs.
    pub VDIs: Vec<Ref>,
    /// Its PBDs (empty: no PBD class yet).
    pub PBDs: Vec<Ref>,
    /// Free-form configuration.
    pub other_config: Map,
    /// SM configuration.
    pub sm_config: Map,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl Default for SrRecord {
    fn default() -> Self {
        SrRecord {
            uuid: String::new(),
            name_label: String::new(),
            name_description: String::new(),
            ty: "file".into(),
            content_type: "user".into(),
            physical_size: 0,
            physical_utilisation: 0,
            virtual_allocation: 0,
            shared: false,
            VDIs: Vec::new(),
            PBDs: Vec::new(),
            other_config: Map::new(),
            sm_config: Map::new(),
            tags: Vec::new(),
        }
    }
}

/// A `VDI` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VdiRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Human-readable name.
    pub name_label: String,
    /// Human-readable description.
    pub name_description: String,
    /// The SR holding it.
    pub SR: Ref,
    /// Size seen by the guest, bytes.
    pub virtual_size: i64,
    /// Bytes used on the SR.
    pub physical_utilisation: i64,
    /// `user`, `system`, ...
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether several VBDs may attach it at once.
    pub sharable: bool,
    /// Whether it is read-only.
    pub read_only: bool,
    /// VBDs attaching it.
    pub VBDs: Vec<Ref>,
    /// Free-form configuration.
    pub other_config: Map,
    /// SM configuration (e.g. the image file in host mode).
    pub sm_config: Map,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl Default for VdiRecord {
    fn default() -> Self {
        VdiRecord {
            uuid: String::new(),
            name_label: String::new(),
            name_description: String::new(),
            SR: NULL_REF.into(),
            virtual_size: 0,
            physical_utilisation: 0,
            ty: "user".into(),
            sharable: false,
            read_only: false,
            VBDs: Vec::new(),
            other_config: Map::new(),
            sm_config: Map::new(),
            tags: Vec::new(),
        }
    }
}

/// A `VIF` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VifRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Device number in the guest (`0`, `1`, ...): the `<n>` of
    /// `device/vif/<n>`.
    pub device: String,
    /// Its network.
    pub network: Ref,
    /// Its VM.
    #[serde(rename = "VM")]
    pub vm: Ref,
    /// MAC address (`aa:bb:...`); generated when empty.
    pub MAC: String,
    /// MTU.
    pub MTU: i64,
    /// Whether the backend is connected.
    pub currently_attached: bool,
    /// Free-form configuration.
    pub other_config: Map,
}

impl Default for VifRecord {
    fn default() -> Self {
        VifRecord {
            uuid: String::new(),
            device: "0".into(),
            network: NULL_REF.into(),
            vm: NULL_REF.into(),
            MAC: String::new(),
            MTU: 1500,
            currently_attached: false,
            other_config: Map::new(),
        }
    }
}

/// A `VBD` record.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VbdRecord {
    /// Unique identifier.
    pub uuid: String,
    /// Its VM.
    #[serde(rename = "VM")]
    pub vm: Ref,
    /// Its VDI, or [`NULL_REF`] when empty.
    pub VDI: Ref,
    /// Device name in the guest (`xvda`).
    pub device: String,
    /// Device position requested (`0`, `1`, ...): the `<n>` of
    /// `device/vbd/<n>` is derived from it.
    pub userdevice: String,
    /// Whether to boot from it.
    pub bootable: bool,
    /// `RW` or `RO`.
    pub mode: String,
    /// `Disk` or `CD`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether no VDI is inserted.
    pub empty: bool,
    /// Whether the backend is connected.
    pub currently_attached: bool,
    /// Free-form configuration.
    pub other_config: Map,
}

impl Default for VbdRecord {
    fn default() -> Self {
        VbdRecord {
            uuid: String::new(),
            vm: NULL_REF.into(),
            VDI: NULL_REF.into(),
            device: String::new(),
            userdevice: "0".into(),
            bootable: false,
            mode: "RW".into(),
            ty: "Disk".into(),
            empty: false,
            currently_attached: false,
            other_config: Map::new(),
        }
    }
}

/// A `PBD` record: the connection of an SR to a host.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PbdRecord {
    /// Unique identifier.
    pub uuid: String,
    /// The host.
    pub host: Ref,
    /// The SR.
    pub SR: Ref,
    /// How the host reaches the SR's storage.
    pub device_config: Map,
    /// Whether the SR is attached on the host (`PBD.plug`).
    pub currently_attached: bool,
    /// Free-form configuration.
    pub other_config: Map,
}

impl Default for PbdRecord {
    fn default() -> Self {
        PbdRecord {
            uuid: String::new(),
            host: NULL_REF.into(),
            SR: NULL_REF.into(),
            device_config: Map::new(),
            currently_attached: false,
            other_config: Map::new(),
        }
    }
}

/// XAPI's `task_status_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Running.
    #[default]
    Pending,
    /// Finished; `result` holds the value.
    Success,
    /// Finished; `error_info` holds the error.
    Failure,
    /// Cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// XAPI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Success => "success",
            TaskStatus::Failure => "failure",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A `task` record: one `Async.*` call (or a client's `task.create`).
/// Times are XenAPI datetimes (`20261123T22:50:00Z`).
#[allow(non_snake_case)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRecord {
    /// Unique identifier.
    pub uuid: String,
    /// The call (`Async.VM.start`) or the client's label.
    pub name_label: String,
    /// Description.
    pub name_description: String,
    /// `cancel` while it can be cancelled.
    pub allowed_operations: Vec<String>,
    /// Operations in progress on the task itself.
    pub current_operations: Map,
    /// When it was created.
    pub created: String,
    /// When it finished (the epoch while pending, as in XAPI).
    pub finished: String,
    /// Where it is.
    pub status: TaskStatus,
    /// The host running it.
    pub resident_on: Ref,
    /// Fraction done, 0.0 to 1.0.
    pub progress: f64,
    /// `<none/>` (XAPI declares it as the class of the result but never
    /// sets it).
    #[serde(rename = "type")]
    pub ty: String,
    /// On success: the call's result as an XML-RPC `<value>`, `""` for
    /// void (what XAPI stores).
    pub result: String,
    /// On failure: the XenAPI error, code first.
    pub error_info: Vec<String>,
    /// Free-form configuration.
    pub other_config: Map,
    /// The parent task, or [`NULL_REF`].
    pub subtask_of: Ref,
    /// Child tasks.
    pub subtasks: Vec<Ref>,
}

/// How a task ended ([`Action::TaskFinish`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// The call succeeded: its result as XAPI stores it (an XML-RPC
    /// `<value>`, or `""` for void).
    Success {
        /// `result`.
        result: String,
    },
    /// The call failed: the XenAPI error, code first.
    Failure {
        /// `error_info`.
        error_info: Vec<String>,
    },
}

/// A record of any class.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // records are moved once per call
pub enum Record {
    /// `VM`.
    Vm(VmRecord),
    /// `host`.
    Host(HostRecord),
    /// `pool`.
    Pool(PoolRecord),
    /// `network`.
    Network(NetworkRecord),
    /// `SR`.
    Sr(SrRecord),
    /// `VDI`.
    Vdi(VdiRecord),
    /// `VIF`.
    Vif(VifRecord),
    /// `VBD`.
    Vbd(VbdRecord),
    /// `PBD`.
    Pbd(PbdRecord),
    /// `PIF`.
    Pif(PifRecord),
    /// `task`.
    Task(TaskRecord),
}

impl Record {
    /// The record's `other_config` map, for the `other_config` calls every
    /// class has.
    pub fn other_config_mut(&mut self) -> &mut Map {
        match self {
            Record::Vm(r) => &mut r.other_config,
            Record::Host(r) => &mut r.other_config,
            Record::Pool(r) => &mut r.other_config,
            Record::Network(r) => &mut r.other_config,
            Record::Sr(r) => &mut r.other_config,
            Record::Vdi(r) => &mut r.other_config,
            Record::Vif(r) => &mut r.other_config,
            Record::Vbd(r) => &mut r.other_config,
            Record::Pbd(r) => &mut r.other_config,
            Record::Pif(r) => &mut r.other_config,
            Record::Task(r) => &mut r.other_config,
        }
    }

    /// The class of the record.
    pub fn class(&self) -> Class {
        match self {
            Record::Vm(_) => Class::Vm,
            Record::Host(_) => Class::Host,
            Record::Pool(_) => Class::Pool,
            Record::Network(_) => Class::Network,
            Record::Sr(_) => Class::Sr,
            Record::Vdi(_) => Class::Vdi,
            Record::Vif(_) => Class::Vif,
            Record::Vbd(_) => Class::Vbd,
            Record::Pbd(_) => Class::Pbd,
            Record::Pif(_) => Class::Pif,
            Record::Task(_) => Class::Task,
        }
    }

    /// The record's uuid.
    pub fn uuid(&self) -> &str {
        match self {
            Record::Vm(r) => &r.uuid,
            Record::Host(r) => &r.uuid,
            Record::Pool(r) => &r.uuid,
            Record::Network(r) => &r.uuid,
            Record::Sr(r) => &r.uuid,
            Record::Vdi(r) => &r.uuid,
            Record::Vif(r) => &r.uuid,
            Record::Vbd(r) => &r.uuid,
            Record::Pbd(r) => &r.uuid,
            Record::Pif(r) => &r.uuid,
            Record::Task(r) => &r.uuid,
        }
    }

    /// The record's `name_label`, for classes that have one.
    pub fn name_label(&self) -> Option<&str> {
        Some(match self {
            Record::Vm(r) => &r.name_label,
            Record::Host(r) => &r.name_label,
            Record::Pool(r) => &r.name_label,
            Record::Network(r) => &r.name_label,
            Record::Sr(r) => &r.name_label,
            Record::Vdi(r) => &r.name_label,
            Record::Task(r) => &r.name_label,
            Record::Vif(_) | Record::Vbd(_) | Record::Pbd(_) | Record::Pif(_) => return None,
        })
    }

    /// The record as a JSON-like value with XAPI's field names (what the
    /// API puts in a struct, and what `get_<field>` picks from).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A record for `<Class>.create`. Fields that the toolstack owns (uuid,
/// power state, domid, back-references) are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // records are moved once per call
pub enum NewRecord {
    /// `VM.create`.
    Vm(VmRecord),
    /// `network.create`.
    Network(NetworkRecord),
    /// `SR.create` / `SR.introduce`.
    Sr(SrRecord),
    /// `VDI.create`.
    Vdi(VdiRecord),
    /// `VIF.create`.
    Vif(VifRecord),
    /// `VBD.create`.
    Vbd(VbdRecord),
}

impl NewRecord {
    /// The class being created.
    pub fn class(&self) -> Class {
        match self {
            NewRecord::Vm(_) => Class::Vm,
            NewRecord::Network(_) => Class::Network,
            NewRecord::Sr(_) => Class::Sr,
            NewRecord::Vdi(_) => Class::Vdi,
            NewRecord::Vif(_) => Class::Vif,
            NewRecord::Vbd(_) => Class::Vbd,
        }
    }
}

/// What `SR.create` and `SR.introduce` are told about the SR.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SrSpec {
    /// The uuid (`SR.introduce`; empty: a fresh one).
    pub uuid: String,
    /// `name_label`.
    pub name_label: String,
    /// `name_description`.
    pub name_description: String,
    /// `type` (stored lower-case, as XAPI does).
    pub ty: String,
    /// `content_type`.
    pub content_type: String,
    /// `shared`.
    pub shared: bool,
    /// `sm_config`.
    pub sm_config: Map,
    /// `physical_size` (`SR.create`), bytes.
    pub physical_size: i64,
}

/// One lifecycle or record operation: one XenAPI call (see the module doc
/// for the mapping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // records are moved once per call
pub enum Action {
    /// `<Class>.create(record)`.
    Create(NewRecord),
    /// `<Class>.destroy(ref)`; a VM must be Halted (or Suspended: its saved
    /// state is dropped).
    Destroy {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
    },
    /// `<Class>.get_record(ref)`.
    GetRecord {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
    },
    /// `<Class>.get_all()`.
    GetAll {
        /// The class.
        class: Class,
    },
    /// `<Class>.get_all_records()`.
    GetAllRecords {
        /// The class.
        class: Class,
    },
    /// `<Class>.get_by_uuid(uuid)`.
    GetByUuid {
        /// The class.
        class: Class,
        /// The uuid.
        uuid: String,
    },
    /// `<Class>.get_by_name_label(label)`.
    GetByNameLabel {
        /// The class.
        class: Class,
        /// The label.
        label: String,
    },
    /// `<Class>.set_name_label(ref, value)`.
    SetNameLabel {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
        /// The new label.
        value: String,
    },
    /// `<Class>.set_name_description(ref, value)`.
    SetNameDescription {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
        /// The new description.
        value: String,
    },
    /// `<Class>.set_other_config(ref, map)`.
    SetOtherConfig {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
        /// The new map.
        value: Map,
    },
    /// `<Class>.add_to_other_config(ref, key, value)` ([`ActionError::MapDuplicateKey`]
    /// if present).
    AddToOtherConfig {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `<Class>.remove_from_other_config(ref, key)`.
    RemoveFromOtherConfig {
        /// The class.
        class: Class,
        /// The object.
        r: Ref,
        /// The key.
        key: String,
    },
    /// `VM.clone(vm, new_name)` (and `VM.copy`): a Halted copy, with fresh
    /// uuid, whose `parent` is `vm`.
    VmClone {
        /// The VM or template.
        vm: Ref,
        /// The `name_label` of the copy.
        new_name: String,
    },
    /// `VM.provision(vm)`: turns a template copy into a startable VM
    /// (`is_a_template = false`; disks named in `other_config:disks` are
    /// not created yet).
    VmProvision {
        /// The VM.
        vm: Ref,
    },
    /// `VM.start(vm, start_paused, force)`: Halted → Running (or Paused).
    VmStart {
        /// The VM.
        vm: Ref,
        /// Leave it Paused.
        start_paused: bool,
        /// Ignored (XAPI: skip some checks).
        force: bool,
    },
    /// `VM.pause(vm)`: Running → Paused.
    VmPause {
        /// The VM.
        vm: Ref,
    },
    /// `VM.unpause(vm)`: Paused → Running.
    VmUnpause {
        /// The VM.
        vm: Ref,
    },
    /// `VM.clean_shutdown(vm)`: Running → Halted, asking the guest
    /// (`control/shutdown = poweroff`) and waiting for it.
    VmCleanShutdown {
        /// The VM.
        vm: Ref,
    },
    /// `VM.hard_shutdown(vm)`: Running/Paused/Suspended → Halted.
    VmHardShutdown {
        /// The VM.
        vm: Ref,
    },
    /// `VM.shutdown(vm)`: clean shutdown, hard shutdown if the guest does
    /// not comply in time.
    VmShutdown {
        /// The VM.
        vm: Ref,
    },
    /// `VM.clean_reboot(vm)`: asks the guest (`control/shutdown = reboot`),
    /// waits for it, starts a new domain.
    VmCleanReboot {
        /// The VM.
        vm: Ref,
    },
    /// `VM.hard_reboot(vm)`: destroys the domain and starts a new one.
    VmHardReboot {
        /// The VM.
        vm: Ref,
    },
    /// `VM.suspend(vm)`: Running → Suspended, asking the guest
    /// (`control/shutdown = suspend`).
    VmSuspend {
        /// The VM.
        vm: Ref,
    },
    /// `VM.resume(vm, start_paused, force)`: Suspended → Running (or Paused).
    VmResume {
        /// The VM.
        vm: Ref,
        /// Leave it Paused.
        start_paused: bool,
        /// Ignored.
        force: bool,
    },
    /// `VM.set_memory_limits(vm, static_min, static_max, dynamic_min,
    /// dynamic_max)` (bytes); needs `static_min <= dynamic_min <=
    /// dynamic_max <= static_max`. `static_*` only while Halted.
    VmSetMemoryLimits {
        /// The VM.
        vm: Ref,
        /// `memory_static_min`.
        static_min: i64,
        /// `memory_static_max`.
        static_max: i64,
        /// `memory_dynamic_min`.
        dynamic_min: i64,
        /// `memory_dynamic_max`.
        dynamic_max: i64,
    },
    /// `VM.set_memory(vm, value)`: static max and the dynamic range to
    /// `value` bytes (Halted only).
    VmSetMemory {
        /// The VM.
        vm: Ref,
        /// Bytes.
        value: i64,
    },
    /// `VM.set_VCPUs_max(vm, n)` (Halted only).
    VmSetVcpusMax {
        /// The VM.
        vm: Ref,
        /// vCPUs.
        value: i64,
    },
    /// `VM.set_VCPUs_at_startup(vm, n)`; at most `VCPUs_max`.
    VmSetVcpusAtStartup {
        /// The VM.
        vm: Ref,
        /// vCPUs.
        value: i64,
    },
    /// `SR.create(host, device_config, physical_size, name_label,
    /// name_description, type, content_type, shared, sm_config)`: a new SR
    /// with a PBD to `host`, plugged.
    SrCreate {
        /// The host the SR is created on.
        host: Ref,
        /// The PBD's `device_config`.
        device_config: Map,
        /// What the SR is (`uuid` is ignored).
        spec: SrSpec,
    },
    /// `SR.introduce(uuid, name_label, name_description, type,
    /// content_type, shared, sm_config)`: a record for an existing SR, no
    /// PBD (`uuid` empty: a fresh one).
    SrIntroduce {
        /// What the SR is.
        spec: SrSpec,
    },
    /// `SR.forget(sr)`: drops the records of the SR, its PBDs and its VDIs
    /// (every PBD must be unplugged). `SR.destroy` is [`Action::Destroy`]
    /// (every PBD unplugged, no VDIs left).
    SrForget {
        /// The SR.
        sr: Ref,
    },
    /// `PBD.plug(pbd)`: attaches the SR on the host.
    PbdPlug {
        /// The PBD.
        pbd: Ref,
    },
    /// `PBD.unplug(pbd)`: detaches it.
    PbdUnplug {
        /// The PBD.
        pbd: Ref,
    },
    /// `task.create(label, description)`, and what the API does before it
    /// runs an `Async.*` call: a pending task.
    TaskCreate {
        /// `name_label`.
        label: String,
        /// `name_description`.
        description: String,
    },
    /// The end of a pending task (the API, when the `Async.*` call
    /// returns). Not a XenAPI call.
    TaskFinish {
        /// The task.
        task: Ref,
        /// Its result or error.
        outcome: TaskOutcome,
    },
    /// `task.cancel(task)`.
    TaskCancel {
        /// The task.
        task: Ref,
    },
    /// `event.from(classes, token, timeout)`: changes after `token` to
    /// objects of `classes` (`"*"` for all, `"vm"`, or `"vm/<ref>"`),
    /// waiting up to `timeout` for at least one.
    EventFrom {
        /// Class names, as XAPI takes them.
        classes: Vec<String>,
        /// The last token seen (0: start, returns every object as `add`).
        token: u64,
        /// How long to wait for a change.
        timeout: Duration,
    },
    /// `xenstore.read(path)`: a node's value (UTF-8 only).
    XsRead {
        /// The node.
        path: String,
    },
    /// `xenstore.write(path, value)`: creates missing parents.
    XsWrite {
        /// The node.
        path: String,
        /// Its new value.
        value: String,
    },
    /// `xenstore.directory(path)`: the names of a node's children.
    XsDirectory {
        /// The node.
        path: String,
    },
    /// `xenstore.rm(path)`: removes the node and its subtree.
    XsRm {
        /// The node.
        path: String,
    },
    /// `xenstore.watch(path, timeout, cursor)`: the changes under `path`
    /// after `cursor` (`""`: open a watcher), waiting up to `timeout` for
    /// one.
    XsWatch {
        /// Who asks (the API passes an id of the session); a watcher
        /// answers only its owner.
        owner: String,
        /// The watched path.
        path: String,
        /// The cursor of the last reply, or `""`.
        cursor: String,
        /// How long to wait for a change.
        timeout: Duration,
    },
    /// `xenstore.unwatch(cursor)`: closes a watcher.
    XsUnwatch {
        /// Who asks.
        owner: String,
        /// A cursor of the watcher.
        cursor: String,
    },
    /// Closes every `xenstore.watch` watcher of `owner` at once, freeing
    /// their queues and their slots in the per-session and total bounds.
    /// Not a XenAPI call: the API sends it when a session ends (logout,
    /// idle expiry, eviction at the session limit). Answers
    /// [`Reply::Unit`], also when watches are not served.
    XsDropOwner {
        /// The owner id, as in [`Action::XsWatch`].
        owner: String,
    },
}

impl Action {
    /// The XenAPI-style name of the operation, for logs and
    /// `current_operations` (`start`, `clean_shutdown`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create(_) => "create",
            Action::Destroy { .. } => "destroy",
            Action::GetRecord { .. } => "get_record",
            Action::GetAll { .. } => "get_all",
            Action::GetAllRecords { .. } => "get_all_records",
            Action::GetByUuid { .. } => "get_by_uuid",
            Action::GetByNameLabel { .. } => "get_by_name_label",
            Action::SetNameLabel { .. } => "set_name_label",
            Action::SetNameDescription { .. } => "set_name_description",
            Action::SetOtherConfig { .. } => "set_other_config",
            Action::AddToOtherConfig { .. } => "add_to_other_config",
            Action::RemoveFromOtherConfig { .. } => "remove_from_other_config",
            Action::VmClone { .. } => "clone",
            Action::VmProvision { .. } => "provision",
            Action::VmStart { .. } => "start",
            Action::VmPause { .. } => "pause",
            Action::VmUnpause { .. } => "unpause",
            Action::VmCleanShutdown { .. } => "clean_shutdown",
            Action::VmHardShutdown { .. } => "hard_shutdown",
            Action::VmShutdown { .. } => "shutdown",
            Action::VmCleanReboot { .. } => "clean_reboot",
            Action::VmHardReboot { .. } => "hard_reboot",
            Action::VmSuspend { .. } => "suspend",
            Action::VmResume { .. } => "resume",
            Action::VmSetMemoryLimits { .. } => "set_memory_limits",
            Action::VmSetMemory { .. } => "set_memory",
            Action::VmSetVcpusMax { .. } => "set_VCPUs_max",
            Action::VmSetVcpusAtStartup { .. } => "set_VCPUs_at_startup",
            Action::SrCreate { .. } => "create",
            Action::SrIntroduce { .. } => "introduce",
            Action::SrForget { .. } => "forget",
            Action::PbdPlug { .. } => "plug",
            Action::PbdUnplug { .. } => "unplug",
            Action::TaskCreate { .. } => "create",
            Action::TaskFinish { .. } => "finish",
            Action::TaskCancel { .. } => "cancel",
            Action::EventFrom { .. } => "event.from",
            Action::XsRead { .. } => "xenstore.read",
            Action::XsWrite { .. } => "xenstore.write",
            Action::XsDirectory { .. } => "xenstore.directory",
            Action::XsRm { .. } => "xenstore.rm",
            Action::XsWatch { .. } => "xenstore.watch",
            Action::XsUnwatch { .. } => "xenstore.unwatch",
            Action::XsDropOwner { .. } => "xenstore.drop_owner",
        }
    }
}

/// What an event says happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventOp {
    /// Created.
    Add,
    /// Changed.
    Mod,
    /// Destroyed.
    Del,
}

impl EventOp {
    /// XAPI's spelling (`add`, `mod`, `del`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventOp::Add => "add",
            EventOp::Mod => "mod",
            EventOp::Del => "del",
        }
    }
}

/// One change, as `event.from` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Position in the toolstack-wide change sequence (strictly increasing).
    pub id: u64,
    /// The object's class.
    pub class: Class,
    /// What happened.
    pub operation: EventOp,
    /// The object.
    #[serde(rename = "ref")]
    pub r: Ref,
    /// The record after the change (`None` for `del`).
    pub snapshot: Option<Record>,
}

/// The answer to `event.from`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventBatch {
    /// The changes, oldest first; only the newest change per object.
    pub events: Vec<Event>,
    /// Pass this back as the next `token` (decimal string on the wire).
    pub token: u64,
}

/// The answer to `xenstore.watch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct XsWatchBatch {
    /// The paths that changed, oldest first (a path may repeat).
    pub events: Vec<String>,
    /// Pass this back to get what follows (it acknowledges `events`).
    pub cursor: String,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[allow(clippy::large_enum_variant)] // one reply per call
pub enum Reply {
    /// Nothing (XenAPI returns `""`).
    Unit,
    /// One reference.
    Ref(Ref),
    /// References.
    Refs(Vec<Ref>),
    /// One record.
    Record(Record),
    /// Records by reference.
    Records(Vec<(Ref, Record)>),
    /// Changes.
    Events(EventBatch),
    /// A string (`xenstore.read`).
    Str(String),
    /// Strings (`xenstore.directory`).
    Strings(Vec<String>),
    /// Watch events (`xenstore.watch`).
    XsWatch(XsWatchBatch),
}

/// Why an action failed: one variant per cause, with the data a caller
/// needs to act on it. The API (`api/`) turns each into XAPI's error code
/// and parameters; the toolstack spells no XenAPI codes. `Display` is a
/// message for people (logs, the command line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No object of `class` has the ref `r`.
    #[error("no {class} {r}")]
    HandleInvalid {
        /// Its class.
        class: Class,
        /// The ref given.
        r: Ref,
    },
    /// No object of `class` has the uuid `uuid`.
    #[error("no {class} with uuid {uuid}")]
    UuidInvalid {
        /// Its class.
        class: Class,
        /// The uuid given.
        uuid: String,
    },
    /// The operation needs another power state.
    #[error("{vm} is {actual}, the operation needs {expected}")]
    VmBadPowerState {
        /// The VM.
        vm: Ref,
        /// A state the operation accepts (the first of
        /// [`Op::legal_in`](crate::lifecycle::Op::legal_in)).
        expected: PowerState,
        /// Its state.
        actual: PowerState,
    },
    /// The VM is a template, and templates cannot do `op` (they are never
    /// started).
    #[error("{vm} is a template and cannot {}", op.name())]
    VmIsTemplate {
        /// The VM.
        vm: Ref,
        /// The refused operation.
        op: Op,
    },
    /// A lifecycle operation on the object has not finished.
    #[error("{} is in progress on {class} {r}", op.name())]
    OtherOperationInProgress {
        /// Its class.
        class: Class,
        /// The object.
        r: Ref,
        /// The running operation.
        op: Op,
    },
    /// The object cannot be destroyed while objects of class `dependents`
    /// still use it (a VDI with VBDs, an SR with VDIs, a network with
    /// VIFs).
    #[error("{class} {r} still has {dependents}s")]
    HasDependents {
        /// Its class.
        class: Class,
        /// The object.
        r: Ref,
        /// The class of the objects that use it.
        dependents: Class,
    },
    /// The SR is still attached to a host (a PBD is plugged): it cannot
    /// be destroyed or forgotten.
    #[error("{sr} is still attached to a host")]
    SrHasPbd {
        /// The SR.
        sr: Ref,
    },
    /// An SR with this uuid exists already (`SR.introduce`).
    #[error("an SR with uuid {uuid} exists")]
    SrUuidExists {
        /// The uuid.
        uuid: String,
    },
    /// The network still has host interfaces: it cannot be destroyed.
    #[error("the network still has PIFs {pifs:?}")]
    NetworkContainsPif {
        /// The PIFs.
        pifs: Vec<Ref>,
    },
    /// A VDI is attached to a VM, so `op` cannot drop it.
    #[error("{vdi} is in use, cannot {op}")]
    VdiInUse {
        /// The VDI.
        vdi: Ref,
        /// The refused operation.
        op: &'static str,
    },
    /// As many tasks are pending as the toolstack allows.
    #[error("too many pending tasks")]
    TooManyPendingTasks,
    /// The task cannot be cancelled (the call runs to its end).
    #[error("{task} cannot be cancelled")]
    TaskNotCancellable {
        /// The task.
        task: Ref,
    },
    /// The guest did not acknowledge `control/shutdown` in time.
    #[error("{vm} did not acknowledge the shutdown request")]
    VmFailedShutdownAck {
        /// The VM.
        vm: Ref,
    },
    /// The guest acknowledged the shutdown request but did not shut down
    /// within `timeout`.
    #[error("{vm} did not shut down within {timeout:?}")]
    VmShutdownTimeout {
        /// The VM.
        vm: Ref,
        /// How long it was given.
        timeout: Duration,
    },
    /// The domain crashed during the operation.
    #[error("{vm} crashed")]
    VmCrashed {
        /// The VM.
        vm: Ref,
    },
    /// The guest rebooted instead of doing what it was asked.
    #[error("{vm} rebooted instead")]
    VmRebooted {
        /// The VM.
        vm: Ref,
    },
    /// The guest halted instead of doing what it was asked.
    #[error("{vm} halted instead")]
    VmHalted {
        /// The VM.
        vm: Ref,
    },
    /// The kernel (`PV_kernel`) names no guest image this host can load.
    #[error("{vm}: no kernel image {kernel:?}")]
    BootloaderFailed {
        /// The VM.
        vm: Ref,
        /// The `PV_kernel` given.
        kernel: String,
    },
    /// The host has not enough free memory for the domain.
    #[error("not enough free memory: {needed} bytes needed, {available} available")]
    HostNotEnoughFreeMemory {
        /// Bytes needed (the VM's `memory_static_max`).
        needed: i64,
        /// Bytes available.
        available: i64,
    },
    /// The VM's memory limits (at `VM.create` or `VM.start`) are not
    /// ordered `0 <= static_min <= dynamic_min <= dynamic_max <=
    /// static_max`; XAPI's `MEMORY_CONSTRAINT_VIOLATION`.
    #[error(
        "memory limits out of order: static_min {static_min}, dynamic_min {dynamic_min}, \
         dynamic_max {dynamic_max}, static_max {static_max}"
    )]
    MemoryConstraintViolation {
        /// `memory_static_min` given, bytes.
        static_min: i64,
        /// `memory_dynamic_min` given, bytes.
        dynamic_min: i64,
        /// `memory_dynamic_max` given, bytes.
        dynamic_max: i64,
        /// `memory_static_max` given, bytes.
        static_max: i64,
    },
    /// The memory limits given to `VM.set_memory_limits` (or
    /// `set_memory`) are not ordered
    /// `static_min <= dynamic_min <= dynamic_max <= static_max`; XAPI's
    /// `MEMORY_CONSTRAINT_VIOLATION_ORDER` (a VM record that is out of
    /// order at create or start is [`Self::MemoryConstraintViolation`]).
    #[error(
        "memory limits out of order: static_min {static_min}, dynamic_min {dynamic_min}, \
         dynamic_max {dynamic_max}, static_max {static_max}"
    )]
    MemoryConstraintViolationOrder {
        /// `memory_static_min` given, bytes.
        static_min: i64,
        /// `memory_dynamic_min` given, bytes.
        dynamic_min: i64,
        /// `memory_dynamic_max` given, bytes.
        dynamic_max: i64,
        /// `memory_static_max` given, bytes.
        static_max: i64,
    },
    /// The VM has more vCPUs than the host offers one domain.
    #[error("{vcpus} vCPUs needed, the host offers {pcpus}")]
    HostNotEnoughPcpus {
        /// The VM's `VCPUs_max`.
        vcpus: i64,
        /// The host's limit.
        pcpus: i64,
    },
    /// A field was given a value that can never be valid (a vCPU count
    /// below 1, a negative or zero memory size); XAPI's `INVALID_VALUE`.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field (XAPI's spelling).
        field: String,
        /// The value given.
        value: String,
    },
    /// A field was given a value this toolstack does not accept.
    #[error("{field}={value}: {reason}")]
    ValueNotSupported {
        /// The field.
        field: String,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// The map `field` of the object already has `key`.
    #[error("{class} {r}: {field} already has the key {key:?}")]
    MapDuplicateKey {
        /// Its class.
        class: Class,
        /// The map field.
        field: String,
        /// The object.
        r: Ref,
        /// The key.
        key: String,
    },
    /// The class does not support the method (`host.destroy`).
    #[error("{class}.{method} is not supported")]
    MethodUnknown {
        /// The class.
        class: Class,
        /// The method, without the class (`destroy`).
        method: &'static str,
    },
    /// The event token is older than the kept history (or newer than any
    /// event): the caller must start again from token 0.
    #[error("events lost: the token is outside the kept history")]
    EventsLost,
    /// The store refused a `xenstore.*` call.
    #[error("xenstore: {error} on {path}")]
    XenStore {
        /// The store's error name (`ENOENT`, `EACCES`, `EINVAL`, ...).
        error: &'static str,
        /// The path of the call.
        path: String,
    },
    /// A node's value is not valid UTF-8, so it cannot be a XenAPI string.
    #[error("the value of {path} is not valid UTF-8")]
    XsNotUtf8 {
        /// The node.
        path: String,
    },
    /// The watcher of a `xenstore.watch` cursor is gone: `overflow` (too
    /// many unacknowledged events), `unknown` (expired, closed or never
    /// opened by this caller) or `closed` (the store connection went).
    /// Open a new one (cursor `""`) and re-read what matters.
    #[error("xenstore watch {cursor:?} lost: {reason}")]
    XsWatchLost {
        /// The cursor given.
        cursor: String,
        /// Why.
        reason: &'static str,
    },
    /// The caller (or the host) has as many xenstore watchers as allowed.
    #[error("too many xenstore watches (at most {limit})")]
    XsTooManyWatches {
        /// The limit reached.
        limit: usize,
    },
    /// The platform or the store failed.
    #[error("internal error: {msg}")]
    Internal {
        /// What failed.
        msg: String,
    },
}

impl ActionError {
    /// An [`ActionError::Internal`] with `msg`.
    pub fn internal(msg: impl fmt::Display) -> Self {
        ActionError::Internal {
            msg: msg.to_string(),
        }
    }
}

/// Result of `Toolstack::handle`.
pub type ActionResult = core::result::Result<Reply, ActionError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_create_record_takes_defaults() {
        let r: VmRecord =
            serde_json::from_str(r#"{"name_label":"a","PV_kernel":"fuzz-target"}"#).unwrap();
        assert_eq!(r.name_label, "a");
        assert_eq!(r.domain_type, "pvh");
        assert_eq!(r.power_state, PowerState::Halted);
        assert_eq!(r.domid, -1);
        assert_eq!(r.resident_on, NULL_REF);
        let v = Record::Vm(r).to_value();
        assert_eq!(v["VCPUs_max"], 1);
        assert_eq!(v["power_state"], "Halted");
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = ActionError::VmBadPowerState {
            vm: ref_of("u"),
            expected: PowerState::Halted,
            actual: PowerState::Running,
        };
        assert_eq!(
            e.to_string(),
            "OpaqueRef:u is Running, the operation needs Halted"
        );
        let e = ActionError::HasDependents {
            class: Class::Sr,
            r: ref_of("s"),
            dependents: Class::Vdi,
        };
        assert_eq!(e.to_string(), "SR OpaqueRef:s still has VDIs");
        let e = ActionError::VmIsTemplate {
            vm: ref_of("t"),
            op: Op::Start,
        };
        assert_eq!(e.to_string(), "OpaqueRef:t is a template and cannot start");
    }

    #[test]
    fn classes_parse() {
        assert_eq!(Class::parse("vm"), Some(Class::Vm));
        assert_eq!(Class::parse("SR"), Some(Class::Sr));
        assert_eq!(Class::parse("bogus"), None);
        assert_eq!(uuid_of("OpaqueRef:abc"), Some("abc"));
        assert_eq!(uuid_of(NULL_REF), None);
    }
}
