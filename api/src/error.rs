//! XenAPI errors and wire errors.
//!
//! A XenAPI failure is a code plus string parameters, exactly what XAPI puts
//! in `ErrorDescription` (XML-RPC) or in `error.message`/`error.data`
//! (JSON-RPC 2.0). This module is the only place in Windsor that spells the
//! codes: the toolstack reports a typed [`ActionError`] and
//! [`action_error`] maps each variant to XAPI's code and parameters, in
//! XAPI's order.

#[allow(unused_imports)]
use crate::prelude::*;

use windsor_toolstack::action::{ActionError, Class, PowerState};

use crate::value::Value;

/// XAPI's error codes used by Windsor (names as in XAPI's `api_errors.ml`).
pub mod codes {
    /// The session reference is unknown or has expired. Params: the session.
    pub const SESSION_INVALID: &str = "SESSION_INVALID";
    /// Bad user name or password. Params: user, message.
    pub const SESSION_AUTHENTICATION_FAILED: &str = "SESSION_AUTHENTICATION_FAILED";
    /// The method is not part of the API. Params: the method.
    pub const MESSAGE_METHOD_UNKNOWN: &str = "MESSAGE_METHOD_UNKNOWN";
    /// Wrong number of parameters. Params: method, expected, received.
    pub const MESSAGE_PARAMETER_COUNT_MISMATCH: &str = "MESSAGE_PARAMETER_COUNT_MISMATCH";
    /// A reference does not name an object of the class. Params: class, ref.
    pub const HANDLE_INVALID: &str = "HANDLE_INVALID";
    /// A uuid does not name an object of the class. Params: class, uuid.
    pub const UUID_INVALID: &str = "UUID_INVALID";
    /// A parameter has the wrong type. Params: the field.
    pub const FIELD_TYPE_ERROR: &str = "FIELD_TYPE_ERROR";
    /// A value is out of range or otherwise unacceptable. Params: field, value, reason.
    pub const INVALID_VALUE: &str = "INVALID_VALUE";
    /// The VM is in the wrong power state. Params: vm, expected, actual.
    pub const VM_BAD_POWER_STATE: &str = "VM_BAD_POWER_STATE";
    /// The operation is not allowed on a template. Params: vm, operation.
    pub const VM_IS_TEMPLATE: &str = "VM_IS_TEMPLATE";
    /// Another operation on the object has not finished. Params: class,
    /// ref, operation.
    pub const OTHER_OPERATION_IN_PROGRESS: &str = "OTHER_OPERATION_IN_PROGRESS";
    /// The SR still has VDIs. Params: none.
    pub const SR_NOT_EMPTY: &str = "SR_NOT_EMPTY";
    /// The SR is still attached to a host through a plugged PBD. Params: sr.
    pub const SR_HAS_PBD: &str = "SR_HAS_PBD";
    /// An SR with the uuid exists already. Params: uuid.
    pub const SR_UUID_EXISTS: &str = "SR_UUID_EXISTS";
    /// The network still has PIFs. Params: the PIFs.
    pub const NETWORK_CONTAINS_PIF: &str = "NETWORK_CONTAINS_PIF";
    /// The VDI is in use. Params: vdi, operation.
    pub const VDI_IN_USE: &str = "VDI_IN_USE";
    /// Too many tasks are pending. Params: none.
    pub const TOO_MANY_PENDING_TASKS: &str = "TOO_MANY_PENDING_TASKS";
    /// The guest did not acknowledge the shutdown request. Params: vm.
    pub const VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT: &str = "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT";
    /// The guest acknowledged but did not shut down in time. Params: vm,
    /// timeout (seconds).
    pub const VM_SHUTDOWN_TIMEOUT: &str = "VM_SHUTDOWN_TIMEOUT";
    /// The domain crashed during the operation. Params: vm.
    pub const VM_CRASHED: &str = "VM_CRASHED";
    /// `plug` of a device already attached. Params: the device.
    pub const DEVICE_ALREADY_ATTACHED: &str = "DEVICE_ALREADY_ATTACHED";
    /// `unplug` of a device not attached. Params: the device.
    pub const DEVICE_ALREADY_DETACHED: &str = "DEVICE_ALREADY_DETACHED";
    /// The guest rebooted instead. Params: vm.
    pub const VM_REBOOTED: &str = "VM_REBOOTED";
    /// The guest halted instead. Params: vm.
    pub const VM_HALTED: &str = "VM_HALTED";
    /// The kernel could not be loaded. Params: vm, message.
    pub const BOOTLOADER_FAILED: &str = "BOOTLOADER_FAILED";
    /// Not enough memory on the host. Params: needed, available.
    pub const HOST_NOT_ENOUGH_FREE_MEMORY: &str = "HOST_NOT_ENOUGH_FREE_MEMORY";
    /// The operation is known but not supported here. Params: detail.
    pub const OPERATION_NOT_ALLOWED: &str = "OPERATION_NOT_ALLOWED";
    /// The memory limits are not ordered. Params: the constraint.
    pub const MEMORY_CONSTRAINT_VIOLATION: &str = "MEMORY_CONSTRAINT_VIOLATION";
    /// The memory limits given are not ordered. Params: none.
    pub const MEMORY_CONSTRAINT_VIOLATION_ORDER: &str = "MEMORY_CONSTRAINT_VIOLATION_ORDER";
    /// The host has fewer pCPUs than the VM has vCPUs. Params: vcpus, pcpus.
    pub const HOST_NOT_ENOUGH_PCPUS: &str = "HOST_NOT_ENOUGH_PCPUS";
    /// A value is not supported here. Params: field, value, reason.
    pub const VALUE_NOT_SUPPORTED: &str = "VALUE_NOT_SUPPORTED";
    /// The map already has the key. Params: class, field, ref, key.
    pub const MAP_DUPLICATE_KEY: &str = "MAP_DUPLICATE_KEY";
    /// The event token is older than the retained history. Params: none.
    pub const EVENTS_LOST: &str = "EVENTS_LOST";
    /// The event.from token could not be parsed. Params: the token.
    pub const EVENT_FROM_TOKEN_PARSE_FAILURE: &str = "EVENT_FROM_TOKEN_PARSE_FAILURE";
    /// Windsor extension: the store refused a `xenstore.*` call. Params:
    /// the store's error name (`ENOENT`, `EACCES`, `EINVAL`, `E2BIG`, ...),
    /// the path.
    pub const XENSTORE_ERROR: &str = "XENSTORE_ERROR";
    /// Windsor extension: a node's value is not valid UTF-8, so it cannot
    /// be sent as a XenAPI string. Params: the path.
    pub const XENSTORE_VALUE_NOT_UTF8: &str = "XENSTORE_VALUE_NOT_UTF8";
    /// Windsor extension: a `xenstore.watch` watcher is gone. Params: the
    /// cursor, why (`overflow`, `unknown`, `closed`).
    pub const XENSTORE_WATCH_LOST: &str = "XENSTORE_WATCH_LOST";
    /// Windsor extension: too many `xenstore.watch` watchers. Params: the
    /// limit.
    pub const XENSTORE_TOO_MANY_WATCHES: &str = "XENSTORE_TOO_MANY_WATCHES";
    /// The XML-RPC request could not be parsed. Params: detail.
    pub const XMLRPC_UNMARSHAL_FAILURE: &str = "XMLRPC_UNMARSHAL_FAILURE";
    /// The JSON-RPC request could not be parsed. Params: detail.
    pub const JSONRPC_UNMARSHAL_FAILURE: &str = "JSONRPC_UNMARSHAL_FAILURE";
    /// The request body is larger than the server accepts. Params: the limit.
    pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
    /// Something failed inside the server. Params: detail.
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
}

/// A XenAPI failure: `[code, params…]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}({})", params.join(", "))]
pub struct ApiError {
    /// The XAPI error code, e.g. `VM_BAD_POWER_STATE`.
    pub code: String,
    /// The parameters, as strings.
    pub params: Vec<String>,
}

impl ApiError {
    /// Builds an error from a code and its parameters.
    pub fn new<S: Into<String>>(code: &str, params: impl IntoIterator<Item = S>) -> ApiError {
        ApiError {
            code: code.to_owned(),
            params: params.into_iter().map(Into::into).collect(),
        }
    }

    /// `MESSAGE_METHOD_UNKNOWN(method)`, the name [`clip`]ped.
    pub fn method_unknown(method: &str) -> ApiError {
        ApiError::new(codes::MESSAGE_METHOD_UNKNOWN, [clip(method)])
    }

    /// `SESSION_INVALID(session)`.
    pub fn session_invalid(session: &str) -> ApiError {
        ApiError::new(codes::SESSION_INVALID, [session])
    }

    /// `HANDLE_INVALID(class, ref)`.
    pub fn handle_invalid(class: &str, reference: &str) -> ApiError {
        ApiError::new(codes::HANDLE_INVALID, [class, reference])
    }

    /// `UUID_INVALID(class, uuid)`.
    pub fn uuid_invalid(class: &str, uuid: &str) -> ApiError {
        ApiError::new(codes::UUID_INVALID, [class, uuid])
    }

    /// `FIELD_TYPE_ERROR(field)`.
    pub fn field_type(field: &str) -> ApiError {
        ApiError::new(codes::FIELD_TYPE_ERROR, [field])
    }

    /// `INTERNAL_ERROR(detail)`.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(codes::INTERNAL_ERROR, [detail.into()])
    }

    /// `ErrorDescription` as XAPI sends it: an array of strings.
    pub fn description(&self) -> Value {
        let mut v = Vec::with_capacity(1 + self.params.len());
        v.push(Value::str(self.code.clone()));
        v.extend(self.params.iter().map(|p| Value::str(p.clone())));
        Value::Array(v)
    }

    /// Rebuilds an error from an `ErrorDescription` (client side).
    pub fn from_description(desc: &Value) -> ApiError {
        let items = desc.as_array().unwrap_or(&[]);
        let mut strings = items.iter().map(value_to_string);
        let code = strings.next().unwrap_or_else(|| "UNKNOWN".to_owned());
        ApiError {
            code,
            params: strings.collect(),
        }
    }
}

/// The XenAPI error for a toolstack error: XAPI's code and parameters, in
/// XAPI's order (`api_errors.ml`).
///
/// | [`ActionError`] | code | params |
/// |---|---|---|
/// | `HandleInvalid` | `HANDLE_INVALID` | class, ref |
/// | `UuidInvalid` | `UUID_INVALID` | class, uuid |
/// | `VmBadPowerState` | `VM_BAD_POWER_STATE` | vm, expected, actual (lower-case, as XAPI writes them) |
/// | `VmIsTemplate` | `VM_IS_TEMPLATE` | vm, operation |
/// | `OtherOperationInProgress` | `OTHER_OPERATION_IN_PROGRESS` | class, ref, operation |
/// | `HasDependents` (an SR with VDIs) | `SR_NOT_EMPTY` | none |
/// | `HasDependents` (others) | `OPERATION_NOT_ALLOWED` | `"<class> has <dependents>s"` |
/// | `SrHasPbd` | `SR_HAS_PBD` | sr |
/// | `SrUuidExists` | `SR_UUID_EXISTS` | uuid |
/// | `NetworkContainsPif` | `NETWORK_CONTAINS_PIF` | the PIFs |
/// | `VdiInUse` | `VDI_IN_USE` | vdi, operation |
/// | `TooManyPendingTasks` | `TOO_MANY_PENDING_TASKS` | none |
/// | `TaskNotCancellable` | `OPERATION_NOT_ALLOWED` | `"<task> cannot be cancelled"` |
/// | `VmFailedShutdownAck` | `VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT` | vm |
/// | `VmShutdownTimeout` | `VM_SHUTDOWN_TIMEOUT` | vm, timeout in seconds |
/// | `VmCrashed` / `VmRebooted` / `VmHalted` | `VM_CRASHED` / `VM_REBOOTED` / `VM_HALTED` | vm |
/// | `BootloaderFailed` | `BOOTLOADER_FAILED` | vm, `no kernel image "<kernel>"` |
/// | `HostNotEnoughFreeMemory` | `HOST_NOT_ENOUGH_FREE_MEMORY` | needed, available (bytes) |
/// | `MemoryConstraintViolation` | `MEMORY_CONSTRAINT_VIOLATION` | the constraint |
/// | `MemoryConstraintViolationOrder` | `MEMORY_CONSTRAINT_VIOLATION_ORDER` | none |
/// | `HostNotEnoughPcpus` | `HOST_NOT_ENOUGH_PCPUS` | vcpus, pcpus |
/// | `InvalidValue` | `INVALID_VALUE` | field, value |
/// | `ValueNotSupported` | `VALUE_NOT_SUPPORTED` | field, value, reason |
/// | `MapDuplicateKey` | `MAP_DUPLICATE_KEY` | class, field, ref, key |
/// | `MethodUnknown` | `MESSAGE_METHOD_UNKNOWN` | `<class>.<method>` |
/// | `EventsLost` | `EVENTS_LOST` | none |
/// | `XenStore` | `XENSTORE_ERROR` | error name, path |
/// | `XsNotUtf8` | `XENSTORE_VALUE_NOT_UTF8` | path |
/// | `XsWatchLost` | `XENSTORE_WATCH_LOST` | cursor, reason |
/// | `XsTooManyWatches` | `XENSTORE_TOO_MANY_WATCHES` | limit |
/// | `Internal` | `INTERNAL_ERROR` | message |
pub fn action_error(e: &ActionError) -> ApiError {
    use codes::*;
    let state = |s: &PowerState| s.as_str().to_ascii_lowercase();
    match e {
        ActionError::HandleInvalid { class, r } => ApiError::handle_invalid(class.name(), r),
        ActionError::UuidInvalid { class, uuid } => ApiError::uuid_invalid(class.name(), uuid),
        ActionError::VmBadPowerState {
            vm,
            expected,
            actual,
        } => ApiError::new(
            VM_BAD_POWER_STATE,
            [vm.clone(), state(expected), state(actual)],
        ),
        ActionError::VmIsTemplate { vm, op } => ApiError::new(VM_IS_TEMPLATE, [vm.as_str(), op.name()]),
        ActionError::OtherOperationInProgress { class, r, op } => ApiError::new(
            OTHER_OPERATION_IN_PROGRESS,
            [class.name(), r.as_str(), op.name()],
        ),
        ActionError::HasDependents {
            class: Class::Sr,
            dependents: Class::Vdi,
            ..
        } => ApiError::new(SR_NOT_EMPTY, [""; 0]),
        ActionError::HasDependents {
            class, dependents, ..
        } => ApiError::new(
            OPERATION_NOT_ALLOWED,
            [format!("{} has {}s", class.name(), dependents.name())],
        ),
        ActionError::SrHasPbd { sr } => ApiError::new(SR_HAS_PBD, [sr]),
        ActionError::SrUuidExists { uuid } => ApiError::new(SR_UUID_EXISTS, [uuid]),
        ActionError::NetworkContainsPif { pifs } => ApiError::new(NETWORK_CONTAINS_PIF, pifs),
        ActionError::VdiInUse { vdi, op } => ApiError::new(VDI_IN_USE, [vdi.as_str(), op]),
        ActionError::TooManyPendingTasks => ApiError::new(TOO_MANY_PENDING_TASKS, [""; 0]),
        ActionError::TaskNotCancellable { task } => ApiError::new(
            OPERATION_NOT_ALLOWED,
            [format!("{task} cannot be cancelled")],
        ),
        ActionError::VmFailedShutdownAck { vm } => {
            ApiError::new(VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT, [vm])
        }
        ActionError::VmShutdownTimeout { vm, timeout } => ApiError::new(
            VM_SHUTDOWN_TIMEOUT,
            [vm.clone(), timeout.as_secs_f64().to_string()],
        ),
        ActionError::VmCrashed { vm } => ApiError::new(VM_CRASHED, [vm]),
        ActionError::DeviceAlreadyAttached { device } => {
            ApiError::new(DEVICE_ALREADY_ATTACHED, [device])
        }
        ActionError::DeviceAlreadyDetached { device } => {
            ApiError::new(DEVICE_ALREADY_DETACHED, [device])
        }
        ActionError::VmRebooted { vm } => ApiError::new(VM_REBOOTED, [vm]),
        ActionError::VmHalted { vm } => ApiError::new(VM_HALTED, [vm]),
        ActionError::BootloaderFailed { vm, kernel } => ApiError::new(
            BOOTLOADER_FAILED,
            [vm.clone(), format!("no kernel image {kernel:?}")],
        ),
        ActionError::HostNotEnoughFreeMemory { needed, available } => ApiError::new(
            HOST_NOT_ENOUGH_FREE_MEMORY,
            [needed.to_string(), available.to_string()],
        ),
        ActionError::MemoryConstraintViolation { .. } => ApiError::new(
            MEMORY_CONSTRAINT_VIOLATION,
            ["memory_static_min <= memory_dynamic_min <= memory_dynamic_max <= memory_static_max"],
        ),
        ActionError::MemoryConstraintViolationOrder { .. } => {
            ApiError::new(MEMORY_CONSTRAINT_VIOLATION_ORDER, [""; 0])
        }
        ActionError::HostNotEnoughPcpus { vcpus, pcpus } => ApiError::new(
            HOST_NOT_ENOUGH_PCPUS,
            [vcpus.to_string(), pcpus.to_string()],
        ),
        ActionError::InvalidValue { field, value } => ApiError::new(INVALID_VALUE, [field, value]),
        ActionError::ValueNotSupported {
            field,
            value,
            reason,
        } => ApiError::new(VALUE_NOT_SUPPORTED, [field, value, reason]),
        ActionError::MapDuplicateKey {
            class,
            field,
            r,
            key,
        } => ApiError::new(MAP_DUPLICATE_KEY, [class.name(), field.as_str(), r.as_str(), key.as_str()]),
        ActionError::MethodUnknown { class, method } => ApiError::new(
            MESSAGE_METHOD_UNKNOWN,
            [format!("{}.{method}", class.name())],
        ),
        ActionError::EventsLost => ApiError::new(EVENTS_LOST, [""; 0]),
        ActionError::XenStore { error, path } => ApiError::new(XENSTORE_ERROR, [error, path.as_str()]),
        ActionError::XsNotUtf8 { path } => ApiError::new(XENSTORE_VALUE_NOT_UTF8, [path]),
        ActionError::XsWatchLost { cursor, reason } => {
            ApiError::new(XENSTORE_WATCH_LOST, [cursor.as_str(), reason])
        }
        ActionError::XsTooManyWatches { limit } => {
            ApiError::new(XENSTORE_TOO_MANY_WATCHES, [limit.to_string()])
        }
        ActionError::Internal { msg } => ApiError::internal(msg.clone()),
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        action_error(&e)
    }
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) | Value::DateTime(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Double(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Longest piece of a client's input echoed in an error.
pub const MAX_ECHO: usize = 128;

/// `s` as echoed in an error: at most [`MAX_ECHO`] bytes (cut at a
/// character boundary), `…` marking a cut.
pub fn clip(s: &str) -> String {
    if s.len() <= MAX_ECHO {
        return s.to_owned();
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A request or response that is not valid on the wire.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The document does not parse, or does not have the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer answered with an XML-RPC fault (XAPI itself never does).
    #[error("XML-RPC fault: {0}")]
    Fault(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_take_xapi_codes() {
        let e = action_error(&ActionError::InvalidValue {
            field: "VCPUs_max".into(),
            value: "0".into(),
        });
        assert_eq!(e, ApiError::new(codes::INVALID_VALUE, ["VCPUs_max", "0"]));
        let e = action_error(&ActionError::HostNotEnoughPcpus {
            vcpus: 100_000,
            pcpus: 128,
        });
        assert_eq!(
            e,
            ApiError::new(codes::HOST_NOT_ENOUGH_PCPUS, ["100000", "128"])
        );
        let e = action_error(&ActionError::MemoryConstraintViolationOrder {
            static_min: 2,
            dynamic_min: 1,
            dynamic_max: 1,
            static_max: 1,
        });
        assert_eq!(e.code, "MEMORY_CONSTRAINT_VIOLATION_ORDER");
        assert!(e.params.is_empty());
    }

    #[test]
    fn description_round_trip() {
        let e = ApiError::new(
            codes::VM_BAD_POWER_STATE,
            ["OpaqueRef:v", "halted", "running"],
        );
        assert_eq!(
            e.description(),
            Value::strings(["VM_BAD_POWER_STATE", "OpaqueRef:v", "halted", "running"])
        );
        assert_eq!(ApiError::from_description(&e.description()), e);
        assert_eq!(
            e.to_string(),
            "VM_BAD_POWER_STATE(OpaqueRef:v, halted, running)"
        );
        assert_eq!(ApiError::from_description(&Value::Nil).code, "UNKNOWN");
    }

    /// Every toolstack error, with the `ErrorDescription` clients have
    /// always been sent for it.
    #[test]
    fn action_errors_map_to_xapi_codes() {
        use core::time::Duration;
        use windsor_toolstack::lifecycle::Op;
        let vm = || "OpaqueRef:v".to_owned();
        let cases: Vec<(ActionError, Vec<&str>)> = vec![
            (
                ActionError::HandleInvalid {
                    class: Class::Vm,
                    r: "OpaqueRef:x".into(),
                },
                vec!["HANDLE_INVALID", "VM", "OpaqueRef:x"],
            ),
            (
                ActionError::UuidInvalid {
                    class: Class::Sr,
                    uuid: "nope".into(),
                },
                vec!["UUID_INVALID", "SR", "nope"],
            ),
            (
                ActionError::VmBadPowerState {
                    vm: vm(),
                    expected: PowerState::Halted,
                    actual: PowerState::Running,
                },
                vec!["VM_BAD_POWER_STATE", "OpaqueRef:v", "halted", "running"],
            ),
            (
                ActionError::VmIsTemplate {
                    vm: vm(),
                    op: Op::Start,
                },
                vec!["VM_IS_TEMPLATE", "OpaqueRef:v", "start"],
            ),
            (
                ActionError::OtherOperationInProgress {
                    class: Class::Vm,
                    r: vm(),
                    op: Op::CleanShutdown,
                },
                vec![
                    "OTHER_OPERATION_IN_PROGRESS",
                    "VM",
                    "OpaqueRef:v",
                    "clean_shutdown",
                ],
            ),
            (
                ActionError::HasDependents {
                    class: Class::Vdi,
                    r: "OpaqueRef:d".into(),
                    dependents: Class::Vbd,
                },
                vec!["OPERATION_NOT_ALLOWED", "VDI has VBDs"],
            ),
            (
                ActionError::HasDependents {
                    class: Class::Sr,
                    r: "OpaqueRef:s".into(),
                    dependents: Class::Vdi,
                },
                vec!["SR_NOT_EMPTY"],
            ),
            (
                ActionError::SrHasPbd {
                    sr: "OpaqueRef:s".into(),
                },
                vec!["SR_HAS_PBD", "OpaqueRef:s"],
            ),
            (
                ActionError::SrUuidExists { uuid: "u".into() },
                vec!["SR_UUID_EXISTS", "u"],
            ),
            (
                ActionError::VdiInUse {
                    vdi: "OpaqueRef:d".into(),
                    op: "forget",
                },
                vec!["VDI_IN_USE", "OpaqueRef:d", "forget"],
            ),
            (
                ActionError::NetworkContainsPif {
                    pifs: vec!["OpaqueRef:p".into()],
                },
                vec!["NETWORK_CONTAINS_PIF", "OpaqueRef:p"],
            ),
            (
                ActionError::TooManyPendingTasks,
                vec!["TOO_MANY_PENDING_TASKS"],
            ),
            (
                ActionError::TaskNotCancellable {
                    task: "OpaqueRef:t".into(),
                },
                vec!["OPERATION_NOT_ALLOWED", "OpaqueRef:t cannot be cancelled"],
            ),
            (
                ActionError::HasDependents {
                    class: Class::Network,
                    r: "OpaqueRef:n".into(),
                    dependents: Class::Vif,
                },
                vec!["OPERATION_NOT_ALLOWED", "network has VIFs"],
            ),
            (
                ActionError::VmFailedShutdownAck { vm: vm() },
                vec!["VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", "OpaqueRef:v"],
            ),
            (
                ActionError::VmShutdownTimeout {
                    vm: vm(),
                    timeout: Duration::from_millis(1500),
                },
                vec!["VM_SHUTDOWN_TIMEOUT", "OpaqueRef:v", "1.5"],
            ),
            (
                ActionError::VmShutdownTimeout {
                    vm: vm(),
                    timeout: Duration::from_secs(60),
                },
                vec!["VM_SHUTDOWN_TIMEOUT", "OpaqueRef:v", "60"],
            ),
            (
                ActionError::VmCrashed { vm: vm() },
                vec!["VM_CRASHED", "OpaqueRef:v"],
            ),
            (
                ActionError::VmRebooted { vm: vm() },
                vec!["VM_REBOOTED", "OpaqueRef:v"],
            ),
            (
                ActionError::VmHalted { vm: vm() },
                vec!["VM_HALTED", "OpaqueRef:v"],
            ),
            (
                ActionError::BootloaderFailed {
                    vm: vm(),
                    kernel: "no-such-kernel".into(),
                },
                vec![
                    "BOOTLOADER_FAILED",
                    "OpaqueRef:v",
                    "no kernel image \"no-such-kernel\"",
                ],
            ),
            (
                ActionError::HostNotEnoughFreeMemory {
                    needed: 268_435_456,
                    available: 0,
                },
                vec!["HOST_NOT_ENOUGH_FREE_MEMORY", "268435456", "0"],
            ),
            (
                ActionError::MemoryConstraintViolation {
                    static_min: 0,
                    dynamic_min: 2,
                    dynamic_max: 2,
                    static_max: 1,
                },
                vec![
                    "MEMORY_CONSTRAINT_VIOLATION",
                    "memory_static_min <= memory_dynamic_min <= memory_dynamic_max <= memory_static_max",
                ],
            ),
            (
                ActionError::ValueNotSupported {
                    field: "device".into(),
                    value: "x".into(),
                    reason: "must be a number".into(),
                },
                vec!["VALUE_NOT_SUPPORTED", "device", "x", "must be a number"],
            ),
            (
                ActionError::MapDuplicateKey {
                    class: Class::Vm,
                    field: "other_config".into(),
                    r: vm(),
                    key: "k".into(),
                },
                vec![
                    "MAP_DUPLICATE_KEY",
                    "VM",
                    "other_config",
                    "OpaqueRef:v",
                    "k",
                ],
            ),
            (
                ActionError::MethodUnknown {
                    class: Class::Host,
                    method: "destroy",
                },
                vec!["MESSAGE_METHOD_UNKNOWN", "host.destroy"],
            ),
            (ActionError::EventsLost, vec!["EVENTS_LOST"]),
            (
                ActionError::XenStore {
                    error: "ENOENT",
                    path: "/a/b".into(),
                },
                vec!["XENSTORE_ERROR", "ENOENT", "/a/b"],
            ),
            (
                ActionError::XsNotUtf8 { path: "/bin".into() },
                vec!["XENSTORE_VALUE_NOT_UTF8", "/bin"],
            ),
            (
                ActionError::XsWatchLost {
                    cursor: "3:7".into(),
                    reason: "overflow",
                },
                vec!["XENSTORE_WATCH_LOST", "3:7", "overflow"],
            ),
            (
                ActionError::XsTooManyWatches { limit: 16 },
                vec!["XENSTORE_TOO_MANY_WATCHES", "16"],
            ),
            (
                ActionError::Internal { msg: "boom".into() },
                vec!["INTERNAL_ERROR", "boom"],
            ),
        ];
        for (e, want) in cases {
            let api = ApiError::from(e.clone());
            assert_eq!(api.description(), Value::strings(want), "{e:?}");
        }
    }
}
