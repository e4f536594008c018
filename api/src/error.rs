//! XenAPI errors and wire errors.
//!
//! A XenAPI failure is a code plus string parameters, exactly what XAPI puts
//! in `ErrorDescription` (XML-RPC) or in `error.message`/`error.data`
//! (JSON-RPC 2.0). This module is the only place in Windsor that spells the
//! codes: the toolstack reports typed errors and `api/` maps them here.

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
    /// The operation is not allowed on a template. Params: none.
    pub const VM_IS_TEMPLATE: &str = "VM_IS_TEMPLATE";
    /// The guest did not shut down in time. Params: vm.
    pub const VM_SHUTDOWN_TIMEOUT: &str = "VM_SHUTDOWN_TIMEOUT";
    /// Not enough memory on the host. Params: needed, available.
    pub const HOST_NOT_ENOUGH_FREE_MEMORY: &str = "HOST_NOT_ENOUGH_FREE_MEMORY";
    /// The operation is known but not supported here. Params: detail.
    pub const OPERATION_NOT_ALLOWED: &str = "OPERATION_NOT_ALLOWED";
    /// The event token is older than the retained history. Params: none.
    pub const EVENTS_LOST: &str = "EVENTS_LOST";
    /// The event.from token could not be parsed. Params: the token.
    pub const EVENT_FROM_TOKEN_PARSE_FAILURE: &str = "EVENT_FROM_TOKEN_PARSE_FAILURE";
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

fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) | Value::DateTime(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Double(d) => d.to_string(),
        other => format!("{other:?}"),
    }
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
}
