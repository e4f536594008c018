//! What a VM's sizes and a record's fields may be: XAPI's checks of memory
//! and vCPU values, the host's limits, and the size limits of strings and
//! maps that bound every record.
//!
//! The checks and their XAPI errors (`xapi_vm_helpers.ml`
//! `validate_vcpus`/`validate_memory`, `vm_memory_constraints.ml`):
//! * `VCPUs_max < 1`: `INVALID_VALUE("VCPUs_max", n)`;
//! * `VCPUs_at_startup < 1`: `INVALID_VALUE("VCPUs-at-startup", n)`;
//! * `VCPUs_at_startup > VCPUs_max`: `VALUE_NOT_SUPPORTED("VCPUs-at-startup",
//!   n, "value greater than VCPUs-max")`;
//! * a memory value below 0, or a zero `memory_static_max` /
//!   `memory_dynamic_max`: `INVALID_VALUE(field, n)` (XAPI leaves a zero
//!   VM to fail in the domain builder; refusing it early is clearer);
//! * limits out of order at `VM.create`/`VM.start`:
//!   `MEMORY_CONSTRAINT_VIOLATION`; through `VM.set_memory_limits`:
//!   `MEMORY_CONSTRAINT_VIOLATION_ORDER`;
//! * at `VM.start`, more memory or vCPUs than the host offers one domain
//!   ([`HostLimits`]): `HOST_NOT_ENOUGH_FREE_MEMORY(needed, available)`,
//!   `HOST_NOT_ENOUGH_PCPUS(vcpus, pcpus)`.
//!
//! Field limits ([`check_fields`]): every string at most [`MAX_STRING`]
//! bytes, every map at most [`MAX_MAP_ENTRIES`] entries with keys of at
//! most [`MAX_MAP_KEY`] and values of at most [`MAX_MAP_VALUE`] bytes, and
//! the encoded record at most [`MAX_RECORD`] bytes; over a limit the call
//! fails with `VALUE_NOT_SUPPORTED(field, <the value's start>, reason)`.
//! The pool database ([`crate::db`]) stores any record within these.

use alloc::format;
use alloc::string::{String, ToString};

use serde::Serialize;

use crate::action::{ActionError, NewRecord, Record, VmRecord};
use crate::meter;

/// The longest string field, bytes.
pub const MAX_STRING: usize = 4096;
/// The most entries in one map field.
pub const MAX_MAP_ENTRIES: usize = 64;
/// The longest map key, bytes.
pub const MAX_MAP_KEY: usize = 256;
/// The longest map value, bytes.
pub const MAX_MAP_VALUE: usize = 1024;
/// The largest record, encoded (JSON) bytes.
pub const MAX_RECORD: usize = 192 * 1024;

/// What the host offers one domain, checked at `VM.start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// The most memory one VM may have, bytes.
    pub memory: i64,
    /// The most vCPUs one VM may have.
    pub vcpus: i64,
}

impl Default for HostLimits {
    /// 1 TiB and 128 vCPUs (Xen's `HVM_MAX_VCPUS`, the limit of a PVH
    /// domain).
    fn default() -> Self {
        HostLimits {
            memory: 1 << 40,
            vcpus: 128,
        }
    }
}

/// `INVALID_VALUE` for an integer field.
fn invalid(field: &str, value: i64) -> ActionError {
    ActionError::InvalidValue {
        field: field.into(),
        value: value.to_string(),
    }
}

/// XAPI's `validate_vcpus`.
pub fn check_vcpus(max: i64, at_startup: i64) -> Result<(), ActionError> {
    if max < 1 {
        return Err(invalid("VCPUs_max", max));
    }
    if at_startup < 1 {
        return Err(invalid("VCPUs-at-startup", at_startup));
    }
    if at_startup > max {
        return Err(ActionError::ValueNotSupported {
            field: "VCPUs-at-startup".into(),
            value: at_startup.to_string(),
            reason: "value greater than VCPUs-max".into(),
        });
    }
    Ok(())
}

/// The memory values one by one: none negative, a VM has some memory.
fn check_memory_values(smin: i64, smax: i64, dmin: i64, dmax: i64) -> Result<(), ActionError> {
    for (field, v) in [
        ("memory_static_min", smin),
        ("memory_static_max", smax),
        ("memory_dynamic_min", dmin),
        ("memory_dynamic_max", dmax),
    ] {
        if v < 0 {
            return Err(invalid(field, v));
        }
    }
    if smax == 0 {
        return Err(invalid("memory_static_max", 0));
    }
    if dmax == 0 {
        return Err(invalid("memory_dynamic_max", 0));
    }
    Ok(())
}

fn ordered(smin: i64, smax: i64, dmin: i64, dmax: i64) -> bool {
    smin <= dmin && dmin <= dmax && dmax <= smax
}

/// The limits given to `VM.set_memory_limits`.
pub fn check_memory_limits(smin: i64, smax: i64, dmin: i64, dmax: i64) -> Result<(), ActionError> {
    check_memory_values(smin, smax, dmin, dmax)?;
    if !ordered(smin, smax, dmin, dmax) {
        return Err(ActionError::MemoryConstraintViolationOrder {
            static_min: smin,
            dynamic_min: dmin,
            dynamic_max: dmax,
            static_max: smax,
        });
    }
    Ok(())
}

/// A VM record's sizes, at `VM.create` and `VM.start` (XAPI's
/// `validate_basic_parameters`).
pub fn check_vm(v: &VmRecord) -> Result<(), ActionError> {
    check_vcpus(v.VCPUs_max, v.VCPUs_at_startup)?;
    let (smin, smax, dmin, dmax) = (
        v.memory_static_min,
        v.memory_static_max,
        v.memory_dynamic_min,
        v.memory_dynamic_max,
    );
    check_memory_values(smin, smax, dmin, dmax)?;
    if !ordered(smin, smax, dmin, dmax) {
        return Err(ActionError::MemoryConstraintViolation {
            static_min: smin,
            dynamic_min: dmin,
            dynamic_max: dmax,
            static_max: smax,
        });
    }
    Ok(())
}

/// A VM about to start fits the host.
pub fn check_host(v: &VmRecord, host: &HostLimits) -> Result<(), ActionError> {
    if v.memory_static_max > host.memory {
        return Err(ActionError::HostNotEnoughFreeMemory {
            needed: v.memory_static_max,
            available: host.memory,
        });
    }
    if v.VCPUs_max > host.vcpus {
        return Err(ActionError::HostNotEnoughPcpus {
            vcpus: v.VCPUs_max,
            pcpus: host.vcpus,
        });
    }
    Ok(())
}

/// Fills a new VM's unset (zero) dynamic memory from its static maximum.
pub fn fill_memory_defaults(v: &mut VmRecord) {
    if v.memory_dynamic_max == 0 {
        v.memory_dynamic_max = v.memory_static_max;
    }
    if v.memory_dynamic_min == 0 {
        v.memory_dynamic_min = v.memory_dynamic_max;
    }
    if v.memory_target == 0 {
        v.memory_target = v.memory_dynamic_max;
    }
}

/// The start of a refused value, for the error (never the whole of it).
fn excerpt(s: &str) -> String {
    const SHOWN: usize = 64;
    if s.len() <= SHOWN {
        return s.to_string();
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

pub(crate) fn too_big(field: &str, value: &str, reason: String) -> ActionError {
    ActionError::ValueNotSupported {
        field: field.into(),
        value: excerpt(value),
        reason,
    }
}

/// Every field of a record to create within the limits.
pub fn check_new(new: &NewRecord) -> Result<(), ActionError> {
    match new {
        NewRecord::Vm(v) => check_serialized(v),
        NewRecord::Network(n) => check_serialized(n),
        NewRecord::Sr(s) => check_serialized(s),
        NewRecord::Vdi(d) => check_serialized(d),
        NewRecord::Vif(f) => check_serialized(f),
        NewRecord::Vbd(b) => check_serialized(b),
    }
}

/// Every field of `rec` within the limits (see the module doc).
pub fn check_fields(rec: &Record) -> Result<(), ActionError> {
    check_serialized(rec)
}

/// The checks of [`check_fields`] on a record as it serializes, measured
/// without encoding it ([`crate::meter`]).
fn check_serialized<T: Serialize + ?Sized>(rec: &T) -> Result<(), ActionError> {
    let m = meter::measure(rec)?;
    let size = if m.bound && m.size > MAX_RECORD {
        serde_json::to_vec(rec)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
    } else {
        m.size
    };
    if size > MAX_RECORD {
        return Err(too_big(
            "record",
            "",
            format!("{size} bytes encoded, more than {MAX_RECORD}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Map;

    fn vm() -> VmRecord {
        let mut v = VmRecord::default();
        fill_memory_defaults(&mut v);
        v
    }

    #[test]
    fn vcpus_as_xapi_checks_them() {
        assert_eq!(check_vcpus(1, 1), Ok(()));
        assert_eq!(check_vcpus(0, 1), Err(invalid("VCPUs_max", 0)));
        assert_eq!(check_vcpus(4, 0), Err(invalid("VCPUs-at-startup", 0)));
        assert!(matches!(
            check_vcpus(2, 3),
            Err(ActionError::ValueNotSupported { ref field, ref value, .. })
                if field == "VCPUs-at-startup" && value == "3"
        ));
    }

    #[test]
    fn memory_values_and_order() {
        let mut v = vm();
        assert_eq!(check_vm(&v), Ok(()));
        assert_eq!(v.memory_dynamic_max, v.memory_static_max);
        assert_eq!(v.memory_target, v.memory_static_max);
        v.memory_static_max = -1;
        assert_eq!(check_vm(&v), Err(invalid("memory_static_max", -1)));
        v.memory_static_max = 0;
        assert_eq!(check_vm(&v), Err(invalid("memory_static_max", 0)));
        let mut v = vm();
        v.memory_static_min = v.memory_static_max + 1;
        assert!(matches!(
            check_vm(&v),
            Err(ActionError::MemoryConstraintViolation { .. })
        ));
        assert!(matches!(
            check_memory_limits(2 << 20, 1 << 20, 1 << 20, 1 << 20),
            Err(ActionError::MemoryConstraintViolationOrder { .. })
        ));
        // The dynamic range outside the static one.
        assert!(matches!(
            check_memory_limits(0, 1 << 20, 0, 2 << 20),
            Err(ActionError::MemoryConstraintViolationOrder { .. })
        ));
        assert_eq!(check_memory_limits(0, 2 << 20, 1 << 20, 2 << 20), Ok(()));
    }

    #[test]
    fn host_limits() {
        let host = HostLimits::default();
        let mut v = vm();
        assert_eq!(check_host(&v, &host), Ok(()));
        v.memory_static_max = 1 << 50;
        assert_eq!(
            check_host(&v, &host),
            Err(ActionError::HostNotEnoughFreeMemory {
                needed: 1 << 50,
                available: host.memory
            })
        );
        let mut v = vm();
        v.VCPUs_max = 100_000;
        assert_eq!(
            check_host(&v, &host),
            Err(ActionError::HostNotEnoughPcpus {
                vcpus: 100_000,
                pcpus: 128
            })
        );
    }

    #[test]
    fn field_limits() {
        let mut v = vm();
        v.name_label = "x".repeat(3500);
        assert_eq!(check_fields(&Record::Vm(v.clone())), Ok(()));
        v.name_label = "x".repeat(MAX_STRING + 1);
        let e = check_fields(&Record::Vm(v)).unwrap_err();
        match e {
            ActionError::ValueNotSupported { field, value, .. } => {
                assert_eq!(field, "name_label");
                assert!(value.len() < 100, "the value is not echoed in full");
            }
            e => panic!("{e:?}"),
        }
        let mut v = vm();
        v.other_config = (0..MAX_MAP_ENTRIES)
            .map(|i| (format!("key{i:03}"), "v".repeat(MAX_MAP_VALUE)))
            .collect::<Map>();
        assert_eq!(check_fields(&Record::Vm(v.clone())), Ok(()));
        v.other_config.insert("one-too-many".into(), String::new());
        assert!(matches!(
            check_fields(&Record::Vm(v.clone())),
            Err(ActionError::ValueNotSupported { ref field, .. }) if field == "other_config"
        ));
        let mut v = vm();
        v.other_config
            .insert("k".repeat(MAX_MAP_KEY + 1), String::new());
        assert!(check_fields(&Record::Vm(v)).is_err());
        let mut v = vm();
        v.other_config
            .insert("k".into(), "v".repeat(MAX_MAP_VALUE + 1));
        assert!(check_fields(&Record::Vm(v)).is_err());
    }

    #[test]
    fn record_size_limit() {
        // Every string within its limit, but escaped quotes double them:
        // 60 tags of 2,000 bytes encode to about 240 KB.
        let mut v = vm();
        v.tags = (0..60).map(|_| "\"".repeat(2000)).collect();
        let size = serde_json::to_vec(&v).unwrap().len();
        assert!(size > MAX_RECORD);
        match check_new(&NewRecord::Vm(v.clone())) {
            Err(ActionError::ValueNotSupported { field, reason, .. }) => {
                assert_eq!(field, "record");
                assert!(reason.starts_with(&format!("{size} bytes")), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        v.tags.truncate(40);
        assert_eq!(check_fields(&Record::Vm(v)), Ok(()));
    }
}
