//! The XenAPI object model Windsor serves: classes, their fields, and the
//! defaults XAPI fills in.
//!
//! Field tables say which `get_<field>` and `set_<field>` calls exist for a
//! class and what type a setter takes, so the parser can answer
//! `MESSAGE_METHOD_UNKNOWN` or `FIELD_TYPE_ERROR` without asking anyone.
//! The records themselves belong to the toolstack (the pool database lives
//! in xenstore); this module only knows their XenAPI shape.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::value::Value;

/// XenAPI's version numbers for this API (XAPI 2.21 speaks 2.21).
pub const API_VERSION_MAJOR: i64 = 2;
/// See [`API_VERSION_MAJOR`].
pub const API_VERSION_MINOR: i64 = 21;
/// The vendor string on the host record.
pub const API_VERSION_VENDOR: &str = "Windsor";

pub use windsor_toolstack::action::Class;

/// The fields of `class`'s record as XenAPI defines them (a superset of
/// what the toolstack keeps; the rest take [`default_record`] values).
pub fn fields(class: Class) -> &'static [Field] {
    match class {
        Class::Vm => VM_FIELDS,
        Class::Host => HOST_FIELDS,
        Class::Pool => POOL_FIELDS,
        Class::Sr => SR_FIELDS,
        Class::Vdi => VDI_FIELDS,
        Class::Vbd => VBD_FIELDS,
        Class::Vif => VIF_FIELDS,
        Class::Network => NETWORK_FIELDS,
        Class::Pbd => PBD_FIELDS,
        Class::Pif => PIF_FIELDS,
        Class::Task => TASK_FIELDS,
    }
}

/// The field of `class` called `name`.
pub fn field(class: Class, name: &str) -> Option<&'static Field> {
    fields(class).iter().find(|f| f.name == name)
}

/// Whether clients may call `create(record)` and `destroy` on the class
/// (`SR.create` and `task.create` take other parameters: see
/// [`crate::call`]).
pub fn creatable(class: Class) -> bool {
    matches!(
        class,
        Class::Vm | Class::Vdi | Class::Vbd | Class::Vif | Class::Network
    )
}

/// Whether the class has `get_by_name_label`.
pub fn has_name_label(class: Class) -> bool {
    matches!(
        class,
        Class::Vm | Class::Host | Class::Sr | Class::Vdi | Class::Network | Class::Task
    )
}

/// The XenAPI type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `string`, a ref, or an enum.
    String,
    /// `int`.
    Int,
    /// `bool`.
    Bool,
    /// `float`.
    Float,
    /// `(string -> string) map`.
    Map,
    /// `string set` / `ref set`.
    Set,
    /// `datetime`.
    DateTime,
}

impl Ty {
    /// Converts a client value to this type, leniently as XAPI does
    /// (ints and bools may arrive as strings); `None` if it does not fit.
    pub fn coerce(self, v: &Value) -> Option<Value> {
        match self {
            Ty::String => v.as_str().map(Value::str),
            Ty::Int => v.as_int().map(Value::Int),
            Ty::Bool => v.as_bool().map(Value::Bool),
            Ty::Float => v.as_double().map(Value::Double),
            Ty::DateTime => v.as_str().map(|s| Value::DateTime(s.to_owned())),
            Ty::Set => v
                .as_array()
                .filter(|a| a.iter().all(|x| x.as_str().is_some()))
                .map(|a| Value::Array(a.to_vec())),
            Ty::Map => v
                .as_struct()
                .filter(|m| m.values().all(|x| x.as_str().is_some()))
                .map(|m| Value::Struct(m.clone())),
        }
    }

    /// XAPI's default for a field of this type.
    pub fn default_value(self) -> Value {
        match self {
            Ty::String => Value::str(""),
            Ty::Int => Value::Int(0),
            Ty::Bool => Value::Bool(false),
            Ty::Float => Value::Double(0.0),
            Ty::DateTime => Value::DateTime("19700101T00:00:00Z".into()),
            Ty::Set => Value::Array(Vec::new()),
            Ty::Map => Value::empty_map(),
        }
    }
}

/// One field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as in the record and in `get_<name>`.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether `set_<name>` exists (and `create` may set it).
    pub writable: bool,
}

const fn ro(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        writable: false,
    }
}

const fn rw(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        writable: true,
    }
}

/// The VM record.
pub static VM_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("power_state", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    rw("user_version", Ty::Int),
    rw("is_a_template", Ty::Bool),
    ro("is_default_template", Ty::Bool),
    ro("is_control_domain", Ty::Bool),
    ro("is_a_snapshot", Ty::Bool),
    ro("snapshot_of", Ty::String),
    ro("snapshots", Ty::Set),
    rw("suspend_VDI", Ty::String),
    ro("resident_on", Ty::String),
    rw("affinity", Ty::String),
    ro("domid", Ty::Int),
    rw("memory_static_max", Ty::Int),
    rw("memory_static_min", Ty::Int),
    rw("memory_dynamic_max", Ty::Int),
    rw("memory_dynamic_min", Ty::Int),
    ro("memory_target", Ty::Int),
    ro("memory_overhead", Ty::Int),
    rw("VCPUs_params", Ty::Map),
    rw("VCPUs_max", Ty::Int),
    rw("VCPUs_at_startup", Ty::Int),
    rw("actions_after_shutdown", Ty::String),
    rw("actions_after_reboot", Ty::String),
    rw("actions_after_crash", Ty::String),
    ro("consoles", Ty::Set),
    ro("VIFs", Ty::Set),
    ro("VBDs", Ty::Set),
    ro("VUSBs", Ty::Set),
    ro("crash_dumps", Ty::Set),
    ro("VTPMs", Ty::Set),
    rw("PV_bootloader", Ty::String),
    rw("PV_kernel", Ty::String),
    rw("PV_ramdisk", Ty::String),
    rw("PV_args", Ty::String),
    rw("PV_bootloader_args", Ty::String),
    rw("PV_legacy_args", Ty::String),
    rw("HVM_boot_policy", Ty::String),
    rw("HVM_boot_params", Ty::Map),
    rw("HVM_shadow_multiplier", Ty::Float),
    rw("platform", Ty::Map),
    rw("PCI_bus", Ty::String),
    rw("other_config", Ty::Map),
    rw("xenstore_data", Ty::Map),
    rw("recommendations", Ty::String),
    rw("tags", Ty::Set),
    rw("blocked_operations", Ty::Map),
    rw("ha_restart_priority", Ty::String),
    rw("ha_always_run", Ty::Bool),
    rw("domain_type", Ty::String),
    ro("metrics", Ty::String),
    ro("guest_metrics", Ty::String),
    ro("last_booted_record", Ty::String),
    ro("last_boot_CPU_flags", Ty::Map),
    ro("start_time", Ty::DateTime),
    rw("order", Ty::Int),
    rw("shutdown_delay", Ty::Int),
    rw("start_delay", Ty::Int),
    rw("hardware_platform_version", Ty::Int),
    rw("has_vendor_device", Ty::Bool),
    rw("generation_id", Ty::String),
    rw("reference_label", Ty::String),
    rw("appliance", Ty::String),
    rw("protection_policy", Ty::String),
    rw("snapshot_schedule", Ty::String),
    rw("is_vmss_snapshot", Ty::Bool),
    ro("bios_strings", Ty::Map),
];

/// The host record.
pub static HOST_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("API_version_major", Ty::Int),
    ro("API_version_minor", Ty::Int),
    ro("API_version_vendor", Ty::String),
    ro("API_version_vendor_implementation", Ty::Map),
    ro("enabled", Ty::Bool),
    ro("software_version", Ty::Map),
    rw("other_config", Ty::Map),
    ro("capabilities", Ty::Set),
    ro("cpu_configuration", Ty::Map),
    ro("sched_policy", Ty::String),
    ro("supported_bootloaders", Ty::Set),
    ro("resident_VMs", Ty::Set),
    rw("logging", Ty::Map),
    ro("PIFs", Ty::Set),
    rw("suspend_image_sr", Ty::String),
    rw("crash_dump_sr", Ty::String),
    ro("PBDs", Ty::Set),
    ro("host_CPUs", Ty::Set),
    ro("cpu_info", Ty::Map),
    rw("hostname", Ty::String),
    rw("address", Ty::String),
    ro("metrics", Ty::String),
    ro("memory_overhead", Ty::Int),
    rw("tags", Ty::Set),
    ro("edition", Ty::String),
    ro("control_domain", Ty::String),
];

/// The pool record.
pub static POOL_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("master", Ty::String),
    rw("default_SR", Ty::String),
    rw("suspend_image_SR", Ty::String),
    rw("crash_dump_SR", Ty::String),
    rw("other_config", Ty::Map),
    ro("ha_enabled", Ty::Bool),
    rw("tags", Ty::Set),
    ro("restrictions", Ty::Map),
    ro("cpu_info", Ty::Map),
    rw("gui_config", Ty::Map),
];

/// The SR record.
pub static SR_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    ro("VDIs", Ty::Set),
    ro("PBDs", Ty::Set),
    ro("virtual_allocation", Ty::Int),
    ro("physical_utilisation", Ty::Int),
    ro("physical_size", Ty::Int),
    ro("type", Ty::String),
    ro("content_type", Ty::String),
    rw("shared", Ty::Bool),
    rw("other_config", Ty::Map),
    rw("tags", Ty::Set),
    ro("sm_config", Ty::Map),
];

/// The VDI record.
pub static VDI_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    rw("SR", Ty::String),
    ro("VBDs", Ty::Set),
    rw("virtual_size", Ty::Int),
    ro("physical_utilisation", Ty::Int),
    rw("type", Ty::String),
    rw("sharable", Ty::Bool),
    rw("read_only", Ty::Bool),
    rw("other_config", Ty::Map),
    ro("location", Ty::String),
    rw("sm_config", Ty::Map),
    rw("tags", Ty::Set),
];

/// The VBD record.
pub static VBD_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    rw("VM", Ty::String),
    rw("VDI", Ty::String),
    ro("device", Ty::String),
    rw("userdevice", Ty::String),
    rw("bootable", Ty::Bool),
    rw("mode", Ty::String),
    rw("type", Ty::String),
    rw("empty", Ty::Bool),
    rw("unpluggable", Ty::Bool),
    ro("currently_attached", Ty::Bool),
    rw("other_config", Ty::Map),
    rw("qos_algorithm_type", Ty::String),
    rw("qos_algorithm_params", Ty::Map),
];

/// The VIF record.
pub static VIF_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    rw("device", Ty::String),
    rw("network", Ty::String),
    rw("VM", Ty::String),
    rw("MAC", Ty::String),
    rw("MTU", Ty::Int),
    ro("currently_attached", Ty::Bool),
    rw("other_config", Ty::Map),
    rw("qos_algorithm_type", Ty::String),
    rw("qos_algorithm_params", Ty::Map),
    rw("locking_mode", Ty::String),
];

/// The network record.
pub static NETWORK_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    rw("name_label", Ty::String),
    rw("name_description", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    ro("VIFs", Ty::Set),
    ro("PIFs", Ty::Set),
    rw("MTU", Ty::Int),
    rw("other_config", Ty::Map),
    ro("bridge", Ty::String),
    rw("tags", Ty::Set),
];

/// The PBD record.
pub static PBD_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    ro("host", Ty::String),
    ro("SR", Ty::String),
    ro("device_config", Ty::Map),
    ro("currently_attached", Ty::Bool),
    rw("other_config", Ty::Map),
];

/// The PIF record.
pub static PIF_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    ro("device", Ty::String),
    ro("network", Ty::String),
    ro("host", Ty::String),
    ro("MAC", Ty::String),
    ro("MTU", Ty::Int),
    ro("VLAN", Ty::Int),
    ro("metrics", Ty::String),
    ro("physical", Ty::Bool),
    ro("currently_attached", Ty::Bool),
    ro("ip_configuration_mode", Ty::String),
    ro("IP", Ty::String),
    ro("netmask", Ty::String),
    ro("gateway", Ty::String),
    ro("DNS", Ty::String),
    ro("bond_slave_of", Ty::String),
    ro("bond_master_of", Ty::Set),
    ro("VLAN_master_of", Ty::String),
    ro("VLAN_slave_of", Ty::Set),
    ro("management", Ty::Bool),
    rw("other_config", Ty::Map),
    ro("disallow_unplug", Ty::Bool),
    ro("ipv6_configuration_mode", Ty::String),
    ro("IPv6", Ty::Set),
    ro("ipv6_gateway", Ty::String),
    ro("primary_address_type", Ty::String),
    ro("managed", Ty::Bool),
    ro("properties", Ty::Map),
    ro("capabilities", Ty::Set),
];

/// The task record.
pub static TASK_FIELDS: &[Field] = &[
    ro("uuid", Ty::String),
    ro("name_label", Ty::String),
    ro("name_description", Ty::String),
    ro("allowed_operations", Ty::Set),
    ro("current_operations", Ty::Map),
    ro("created", Ty::DateTime),
    ro("finished", Ty::DateTime),
    ro("status", Ty::String),
    ro("resident_on", Ty::String),
    ro("progress", Ty::Float),
    ro("type", Ty::String),
    ro("result", Ty::String),
    ro("error_info", Ty::Set),
    rw("other_config", Ty::Map),
    ro("subtask_of", Ty::String),
    ro("subtasks", Ty::Set),
    ro("backtrace", Ty::String),
];

/// The default record of a class: every field at XAPI's default, with the
/// overrides that differ from the type's zero.
pub fn default_record(class: Class) -> BTreeMap<String, Value> {
    let mut r: BTreeMap<String, Value> = fields(class)
        .iter()
        .map(|f| (f.name.to_owned(), f.ty.default_value()))
        .collect();
    let mut set = |k: &str, v: Value| {
        r.insert(k.to_owned(), v);
    };
    for k in [
        "snapshot_of",
        "suspend_VDI",
        "resident_on",
        "affinity",
        "metrics",
        "guest_metrics",
        "appliance",
        "protection_policy",
        "snapshot_schedule",
        "master",
        "default_SR",
        "suspend_image_SR",
        "crash_dump_SR",
        "suspend_image_sr",
        "crash_dump_sr",
        "SR",
        "VM",
        "VDI",
        "network",
        "control_domain",
        "host",
        "subtask_of",
        "bond_slave_of",
        "VLAN_master_of",
    ] {
        if field(class, k).is_some() {
            set(k, Value::str("OpaqueRef:NULL"));
        }
    }
    match class {
        Class::Vm => {
            set("power_state", Value::str("Halted"));
            set("domid", Value::Int(-1));
            set("user_version", Value::Int(1));
            set("memory_static_max", Value::Int(256 << 20));
            set("memory_static_min", Value::Int(256 << 20));
            set("memory_dynamic_max", Value::Int(256 << 20));
            set("memory_dynamic_min", Value::Int(256 << 20));
            set("VCPUs_max", Value::Int(1));
            set("VCPUs_at_startup", Value::Int(1));
            set("actions_after_shutdown", Value::str("destroy"));
            set("actions_after_reboot", Value::str("restart"));
            set("actions_after_crash", Value::str("restart"));
            set("ha_restart_priority", Value::str(""));
            set("domain_type", Value::str("pvh"));
            set("HVM_shadow_multiplier", Value::Double(1.0));
        }
        Class::Vbd => {
            set("mode", Value::str("RW"));
            set("type", Value::str("Disk"));
            set("bootable", Value::Bool(false));
            set("unpluggable", Value::Bool(true));
        }
        Class::Vif => {
            set("MTU", Value::Int(1500));
            set("locking_mode", Value::str("network_default"));
        }
        Class::Network => {
            set("MTU", Value::Int(1500));
        }
        Class::Vdi => {
            set("type", Value::str("user"));
        }
        Class::Pif => {
            set("MTU", Value::Int(1500));
            set("VLAN", Value::Int(-1));
            set("ip_configuration_mode", Value::str("None"));
            set("ipv6_configuration_mode", Value::str("None"));
            set("primary_address_type", Value::str("IPv4"));
            set("managed", Value::Bool(true));
        }
        _ => {}
    }
    r
}

/// Errors a client record can have in `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The value of this field has the wrong type.
    FieldType(String),
    /// The argument is not a struct.
    NotAStruct,
}

/// The fields of a client's `create` record that it may set, coerced to
/// their XenAPI types (XML-RPC clients send ints as strings). Unknown,
/// read-only and nil fields are dropped, as XAPI ignores them; the
/// toolstack's record type supplies the defaults of the rest.
pub fn coerce_for_create(
    class: Class,
    given: &Value,
) -> Result<BTreeMap<String, Value>, RecordError> {
    let given = given.as_struct().ok_or(RecordError::NotAStruct)?;
    let mut r = BTreeMap::new();
    for (k, v) in given {
        let Some(f) = field(class, k) else { continue };
        if !f.writable || matches!(v, Value::Nil) {
            continue;
        }
        let v =
            f.ty.coerce(v)
                .ok_or_else(|| RecordError::FieldType(k.clone()))?;
        r.insert(k.clone(), v);
    }
    Ok(r)
}

/// The host's `software_version` keys that clients read, with XAPI's
/// names. Automation reads `product_version` as a dotted number to pick
/// features (Ansible's `community.general.xenserver_*` modules need at least
/// 7.0); Windsor answers as the XAPI generation whose API it speaks (2.21,
/// XCP-ng / XenServer 8.x), and names itself in `product_brand`.
pub const SOFTWARE_VERSION: &[(&str, &str)] = &[
    ("product_brand", "Windsor"),
    ("product_version", "8.2.1"),
    ("product_version_text", "8.2"),
    ("product_version_text_short", "8.2"),
    ("platform_name", "XCP"),
    ("platform_version", "3.2.1"),
    ("build_number", "windsor"),
    ("xapi", "2.21"),
    ("xapi_build", "2.21"),
    ("xen", "4.17.0"),
    ("xencenter_min", "2.21"),
    ("xencenter_max", "2.21"),
    ("network_backend", "bridge"),
];

/// Keys a map field of `class` always has (XAPI's defaults); the
/// toolstack's own entries win.
fn map_defaults(class: Class, field: &str) -> &'static [(&'static str, &'static str)] {
    match (class, field) {
        (Class::Host, "software_version") => SOFTWARE_VERSION,
        _ => &[],
    }
}

/// Completes a record from the toolstack with XAPI's defaults for the
/// fields it does not keep, so clients see every field they expect, and
/// gives datetime fields their XML-RPC type.
pub fn complete_record(class: Class, record: Value) -> Value {
    match record {
        Value::Struct(mut m) => {
            for (k, v) in default_record(class) {
                m.entry(k).or_insert(v);
            }
            for f in fields(class).iter().filter(|f| f.ty == Ty::Map) {
                let defaults = map_defaults(class, f.name);
                if defaults.is_empty() {
                    continue;
                }
                if let Some(Value::Struct(map)) = m.get_mut(f.name) {
                    for (k, v) in defaults {
                        map.entry((*k).to_owned()).or_insert_with(|| Value::str(*v));
                    }
                }
            }
            for f in fields(class).iter().filter(|f| f.ty == Ty::DateTime) {
                if let Some(v) = m.get_mut(f.name) {
                    if let Value::String(s) = v {
                        *v = Value::DateTime(core::mem::take(s));
                    }
                }
            }
            Value::Struct(m)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_coerces_and_drops() {
        let given = Value::record([
            ("name_label", Value::str("a")),
            ("memory_static_max", Value::str("536870912")),
            ("power_state", Value::str("Running")),
            ("bogus", Value::Int(3)),
            ("tags", Value::Nil),
        ]);
        let r = coerce_for_create(Class::Vm, &given).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r["name_label"], Value::str("a"));
        assert_eq!(r["memory_static_max"], Value::Int(512 << 20));
        let bad = Value::record([("VCPUs_max", Value::str("many"))]);
        assert_eq!(
            coerce_for_create(Class::Vm, &bad),
            Err(RecordError::FieldType("VCPUs_max".into()))
        );
        assert_eq!(
            coerce_for_create(Class::Vm, &Value::Nil),
            Err(RecordError::NotAStruct)
        );
    }

    #[test]
    fn defaults_cover_every_field() {
        for c in Class::ALL {
            let r = default_record(c);
            assert_eq!(r.len(), fields(c).len());
            assert_eq!(fields(c)[0].name, "uuid");
        }
        let done = complete_record(Class::Vm, Value::record([("domid", Value::Int(3))]));
        assert_eq!(done.get("domid"), Some(&Value::Int(3)));
        assert_eq!(done.get("snapshots"), Some(&Value::Array(vec![])));
    }

    #[test]
    fn host_software_version_has_xapi_keys() {
        let given = Value::record([(
            "software_version",
            Value::record([("xen", Value::str("4.17-sim"))]),
        )]);
        let done = complete_record(Class::Host, given);
        let sv = done.get("software_version").unwrap();
        assert_eq!(
            sv.get("xen"),
            Some(&Value::str("4.17-sim")),
            "the toolstack's own wins"
        );
        let v = sv.get("product_version").and_then(Value::as_str).unwrap();
        let parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
        assert!(parts[0] >= 7, "{v}");
        for k in ["product_brand", "platform_version", "xapi"] {
            assert!(sv.get(k).is_some(), "{k}");
        }
    }
}
