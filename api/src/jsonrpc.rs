//! JSON-RPC codec, versions 1.0 and 2.0, as XAPI answers them at `/jsonrpc`.
//!
//! Producer and consumer: JSON clients (npm `xen-api`, XenCenter's
//! `JsonRpcClient`) POST a request object; the reply is sent with
//! `Content-Type: application/json` (exactly: the npm client compares the
//! header verbatim and falls back to XML-RPC otherwise).
//!
//! ```text
//! 2.0 request   {"jsonrpc":"2.0","method":"VM.start","params":[s,vm,false,false],"id":1}
//! 2.0 success   {"jsonrpc":"2.0","result":…,"id":1}
//! 2.0 failure   {"jsonrpc":"2.0","error":{"code":1,"message":"CODE","data":[params…]},"id":1}
//! 1.0 request   {"method":"VM.start","params":[…],"id":1}
//! 1.0 success   {"result":…,"error":null,"id":1}
//! 1.0 failure   {"result":null,"error":["CODE",params…],"id":1}
//! ```
//!
//! The version is chosen by the presence of `"jsonrpc":"2.0"`. XenAPI `int`s
//! are JSON numbers here (not strings as in XML-RPC).

#[allow(unused_imports)]
use crate::prelude::*;

use serde_json::value::RawValue;
use serde_json::{json, Map, Number};

use crate::error::{codes, ApiError, WireError};
use crate::value::Value;

/// The error `code` XAPI puts on every XenAPI failure in JSON-RPC 2.0; the
/// XenAPI code itself is the `message`.
pub const XAPI_ERROR_CODE: i64 = 1;
/// JSON-RPC 2.0 "Parse error".
pub const PARSE_ERROR_CODE: i64 = -32700;

/// The JSON-RPC version of a request, which decides the reply's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// JSON-RPC 1.0 (no `jsonrpc` member).
    V1,
    /// JSON-RPC 2.0.
    V2,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The version, from the `jsonrpc` member.
    pub version: Version,
    /// The id, echoed in the reply (any JSON value).
    pub id: serde_json::Value,
    /// The method name.
    pub method: String,
    /// The positional parameters.
    pub params: Vec<Value>,
}

/// What a request that failed to parse still tells us about how to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    /// The version to answer in (2.0 when unknown).
    pub version: Version,
    /// The id to echo (null when unknown).
    pub id: serde_json::Value,
    /// What was wrong.
    pub error: WireError,
}

/// Converts a JSON value to a XenAPI value.
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => Value::Struct(
            o.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Converts a XenAPI value to JSON.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) | Value::DateTime(s) => serde_json::Value::String(s.clone()),
        Value::Int(i) => serde_json::Value::Number((*i).into()),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Double(d) => Number::from_f64(*d)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Struct(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Nil => serde_json::Value::Null,
    }
}

/// Longest `id` echoed back (longer ones are refused).
pub const MAX_ID_BYTES: usize = 1024;

/// A request whose parameters are still raw JSON: the server parses the
/// first (the session) and checks it before it builds the others' trees.
#[derive(Debug)]
pub struct LazyRequest<'a> {
    /// The version, from the `jsonrpc` member.
    pub version: Version,
    /// The id, echoed in the reply.
    pub id: serde_json::Value,
    /// The method name.
    pub method: String,
    /// The positional parameters, unparsed.
    pub params: Vec<&'a RawValue>,
}

impl LazyRequest<'_> {
    /// Parameter `i` as a value (`None` past the end).
    pub fn param(&self, i: usize) -> Option<Result<Value, WireError>> {
        self.params.get(i).map(|raw| {
            serde_json::from_str::<serde_json::Value>(raw.get())
                .map(|j| from_json(&j))
                .map_err(|e| WireError::Malformed(format!("JSON: {e}")))
        })
    }

    /// Whether parameter `i` is a JSON string (cheap: looks at one byte).
    pub fn param_is_string(&self, i: usize) -> bool {
        self.params
            .get(i)
            .is_some_and(|raw| raw.get().trim_start().starts_with('"'))
    }

    /// Every parameter as a value.
    pub fn into_request(self) -> Result<Request, BadRequest> {
        let mut params = Vec::with_capacity(self.params.len());
        for i in 0..self.params.len() {
            match self.param(i) {
                Some(Ok(v)) => params.push(v),
                Some(Err(error)) => {
                    return Err(BadRequest {
                        version: self.version,
                        id: self.id,
                        error,
                    })
                }
                None => break,
            }
        }
        Ok(Request {
            version: self.version,
            id: self.id,
            method: self.method,
            params,
        })
    }
}

/// Parses a request body down to its members; the parameters stay raw
/// (their syntax is checked, no tree is built).
pub fn parse_request_lazy(body: &[u8]) -> Result<LazyRequest<'_>, BadRequest> {
    let fail = |version, id, msg: String| BadRequest {
        version,
        id,
        error: WireError::Malformed(msg),
    };
    let null = || serde_json::Value::Null;
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|e| fail(Version::V2, null(), format!("JSON: {e}")))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(fail(
            Version::V2,
            null(),
            "request is not a JSON object".into(),
        ));
    }
    let o: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|e| fail(Version::V2, null(), format!("JSON: {e}")))?;
    let small = |r: &RawValue| -> Option<serde_json::Value> {
        (r.get().len() <= MAX_ID_BYTES)
            .then(|| serde_json::from_str(r.get()).ok())
            .flatten()
    };
    let version = match o.get("jsonrpc") {
        None => Version::V1,
        Some(r) if r.get().trim() == "\"2.0\"" => Version::V2,
        Some(other) => {
            return Err(fail(
                Version::V2,
                null(),
                format!(
                    "unsupported jsonrpc version {}",
                    crate::error::clip(other.get())
                ),
            ))
        }
    };
    let id = match o.get("id") {
        None => null(),
        Some(r) => match small(r) {
            Some(id) => id,
            None => return Err(fail(version, null(), "id too large".into())),
        },
    };
    let method = match o
        .get("method")
        .map(|r| serde_json::from_str::<String>(r.get()))
    {
        Some(Ok(m)) => m,
        _ => return Err(fail(version, id, "missing method".into())),
    };
    let params = match o.get("params") {
        None => Vec::new(),
        Some(r) if r.get().trim() == "null" => Vec::new(),
        Some(r) => match serde_json::from_str::<Vec<&RawValue>>(r.get()) {
            Ok(p) => p,
            Err(_) => return Err(fail(version, id, "params must be an array".into())),
        },
    };
    Ok(LazyRequest {
        version,
        id,
        method,
        params,
    })
}

/// Parses a request body in one pass (what the server does for small
/// bodies; see [`parse_request_lazy`] for big ones).
pub fn parse_request(body: &[u8]) -> Result<Request, BadRequest> {
    let fail = |version, id, msg: String| BadRequest {
        version,
        id,
        error: WireError::Malformed(msg),
    };
    let j: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| fail(Version::V2, serde_json::Value::Null, format!("JSON: {e}")))?;
    let serde_json::Value::Object(o) = j else {
        return Err(fail(
            Version::V2,
            serde_json::Value::Null,
            "request is not a JSON object".into(),
        ));
    };
    let version = match o.get("jsonrpc") {
        None => Version::V1,
        Some(serde_json::Value::String(s)) if s == "2.0" => Version::V2,
        Some(other) => {
            return Err(fail(
                Version::V2,
                serde_json::Value::Null,
                format!(
                    "unsupported jsonrpc version {}",
                    crate::error::clip(&other.to_string())
                ),
            ))
        }
    };
    let id = o.get("id").cloned().unwrap_or(serde_json::Value::Null);
    // Echoed ids are bounded as in `parse_request_lazy`.
    let id_len = match &id {
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => 0,
        other => serde_json::to_string(other).map_or(usize::MAX, |t| t.len()),
    };
    if id_len > MAX_ID_BYTES {
        return Err(fail(
            version,
            serde_json::Value::Null,
            "id too large".into(),
        ));
    }
    let method = match o.get("method") {
        Some(serde_json::Value::String(m)) => m.clone(),
        _ => return Err(fail(version, id, "missing method".into())),
    };
    let params = match o.get("params") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(a)) => a.iter().map(from_json).collect(),
        Some(_) => return Err(fail(version, id, "params must be an array".into())),
    };
    Ok(Request {
        version,
        id,
        method,
        params,
    })
}

/// Emits the reply to a request.
pub fn emit_response(
    version: Version,
    id: &serde_json::Value,
    result: &Result<Value, ApiError>,
) -> String {
    let j = match (version, result) {
        (Version::V2, Ok(v)) => json!({"jsonrpc": "2.0", "result": to_json(v), "id": id}),
        (Version::V2, Err(e)) => json!({
            "jsonrpc": "2.0",
            "error": {"code": XAPI_ERROR_CODE, "message": e.code, "data": e.params},
            "id": id,
        }),
        (Version::V1, Ok(v)) => json!({"result": to_json(v), "error": null, "id": id}),
        (Version::V1, Err(e)) => {
            let mut desc = vec![serde_json::Value::String(e.code.clone())];
            desc.extend(e.params.iter().cloned().map(serde_json::Value::String));
            json!({"result": null, "error": desc, "id": id})
        }
    };
    j.to_string()
}

/// Emits the reply to a request that could not be parsed.
pub fn emit_bad_request(bad: &BadRequest) -> String {
    let detail = bad.error.to_string();
    match bad.version {
        Version::V2 => json!({
            "jsonrpc": "2.0",
            "error": {
                "code": PARSE_ERROR_CODE,
                "message": codes::JSONRPC_UNMARSHAL_FAILURE,
                "data": [detail],
            },
            "id": bad.id,
        })
        .to_string(),
        Version::V1 => json!({
            "result": null,
            "error": [codes::JSONRPC_UNMARSHAL_FAILURE, detail],
            "id": bad.id,
        })
        .to_string(),
    }
}

/// Emits a 2.0 request (the client side).
pub fn emit_request(id: u64, method: &str, params: &[Value]) -> String {
    json!({
        "jsonrpc": "2.0",
        "method": method,
        "params": params.iter().map(to_json).collect::<Vec<_>>(),
        "id": id,
    })
    .to_string()
}

/// Parses a reply of either version (the client side).
///
/// The outer `Err` is a wire problem; the inner one a XenAPI failure.
pub fn parse_response(body: &[u8]) -> Result<Result<Value, ApiError>, WireError> {
    let j: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WireError::Malformed(format!("JSON: {e}")))?;
    let o = j
        .as_object()
        .ok_or_else(|| WireError::Malformed("reply is not an object".into()))?;
    match o.get("error") {
        None | Some(serde_json::Value::Null) => Ok(Ok(from_json(
            o.get("result").unwrap_or(&serde_json::Value::Null),
        ))),
        Some(serde_json::Value::Array(desc)) => Ok(Err(ApiError::from_description(&from_json(
            &serde_json::Value::Array(desc.clone()),
        )))),
        Some(serde_json::Value::Object(e)) => {
            let code = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("UNKNOWN")
                .to_owned();
            let params = match e.get("data") {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Err(ApiError { code, params }))
        }
        Some(other) => Err(WireError::Malformed(format!("bad error member {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_request_and_replies() {
        let r = parse_request(
            br#"{"jsonrpc":"2.0","method":"VM.get_record","params":["s",{"a":1,"b":[true,null,1.5]}],"id":7}"#,
        )
        .unwrap();
        assert_eq!(r.version, Version::V2);
        assert_eq!(r.id, json!(7));
        assert_eq!(r.method, "VM.get_record");
        assert_eq!(r.params[0], Value::str("s"));
        assert_eq!(
            r.params[1].get("b"),
            Some(&Value::Array(vec![
                Value::Bool(true),
                Value::Nil,
                Value::Double(1.5)
            ]))
        );
        let ok = emit_response(Version::V2, &r.id, &Ok(Value::Int(1 << 40)));
        assert_eq!(ok, r#"{"id":7,"jsonrpc":"2.0","result":1099511627776}"#);
        let err = emit_response(
            Version::V2,
            &r.id,
            &Err(ApiError::new("HANDLE_INVALID", ["VM", "x"])),
        );
        let j: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(
            j,
            json!({"jsonrpc":"2.0","error":{"code":1,"message":"HANDLE_INVALID","data":["VM","x"]},"id":7})
        );
        assert_eq!(
            parse_response(err.as_bytes()).unwrap().unwrap_err(),
            ApiError::new("HANDLE_INVALID", ["VM", "x"])
        );
    }

    #[test]
    fn v1_request_and_replies() {
        let r = parse_request(br#"{"method":"session.logout","params":["s"],"id":"a"}"#).unwrap();
        assert_eq!(r.version, Version::V1);
        let ok: serde_json::Value =
            serde_json::from_str(&emit_response(Version::V1, &r.id, &Ok(Value::Nil))).unwrap();
        assert_eq!(ok, json!({"result":null,"error":null,"id":"a"}));
        let err = emit_response(
            Version::V1,
            &r.id,
            &Err(ApiError::new("SESSION_INVALID", ["s"])),
        );
        let j: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(
            j,
            json!({"result":null,"error":["SESSION_INVALID","s"],"id":"a"})
        );
        assert_eq!(
            parse_response(err.as_bytes()).unwrap().unwrap_err().code,
            "SESSION_INVALID"
        );
    }

    #[test]
    fn bad_requests_keep_what_they_can() {
        let b = parse_request(b"{").unwrap_err();
        assert_eq!(b.version, Version::V2);
        let j: serde_json::Value = serde_json::from_str(&emit_bad_request(&b)).unwrap();
        assert_eq!(j["error"]["code"], json!(-32700));
        assert_eq!(j["error"]["message"], json!("JSONRPC_UNMARSHAL_FAILURE"));
        assert_eq!(j["id"], json!(null));
        let b = parse_request(br#"{"jsonrpc":"2.0","id":3,"params":[]}"#).unwrap_err();
        assert_eq!(b.id, json!(3));
        let b = parse_request(br#"{"id":4,"method":"x","params":{}}"#).unwrap_err();
        assert_eq!(b.version, Version::V1);
        assert!(parse_request(b"[1,2]").is_err());
        assert!(parse_request(br#"{"jsonrpc":"3","method":"x"}"#).is_err());
    }

    /// The one-pass parse (small bodies) and the lazy one (big bodies)
    /// read a request alike, and both bound the echoed id.
    #[test]
    fn both_parses_agree() {
        let body = br#"{"jsonrpc":"2.0","id":"r1","method":"VM.start","params":["s",true,{"a":[1,2.5,null]}]}"#;
        let one = parse_request(body).unwrap();
        let lazy = parse_request_lazy(body).unwrap().into_request().unwrap();
        assert_eq!(
            (one.version, &one.id, &one.method, &one.params),
            (lazy.version, &lazy.id, &lazy.method, &lazy.params)
        );
        let big = format!(
            r#"{{"id":"{}","method":"x","params":[]}}"#,
            "i".repeat(MAX_ID_BYTES)
        );
        for e in [
            parse_request(big.as_bytes()).unwrap_err(),
            parse_request_lazy(big.as_bytes()).unwrap_err(),
        ] {
            assert_eq!(e.id, serde_json::Value::Null);
            assert!(matches!(e.error, WireError::Malformed(ref m) if m == "id too large"));
        }
    }

    #[test]
    fn client_request_shape() {
        let r = parse_request(emit_request(9, "a.b", &[Value::Int(1), Value::str("x")]).as_bytes())
            .unwrap();
        assert_eq!(r.version, Version::V2);
        assert_eq!(r.params, vec![Value::Int(1), Value::str("x")]);
    }

    #[test]
    fn lazy_and_eager_parsing_agree() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":7,"method":"VM.get_all","params":["OpaqueRef:s"]}"#[..],
            br#"{"id":"x","method":"VM.start","params":["s","v",false,true]}"#,
            br#"{"method":"system.listMethods"}"#,
            br#"{"jsonrpc":"2.0","method":"m","params":null,"id":null}"#,
            br#"{"jsonrpc":"2.0","method":"m","params":[{"a":[1,2.5,"\u00e9"]}],"id":1}"#,
        ] {
            let eager = parse_request(body).unwrap();
            let lazy = parse_request_lazy(body).unwrap().into_request().unwrap();
            assert_eq!(eager, lazy, "{}", String::from_utf8_lossy(body));
        }
        for body in [
            &b"[1]"[..],
            b"{",
            br#"{"jsonrpc":"1.5","method":"m"}"#,
            br#"{"params":[]}"#,
            br#"{"method":"m","params":{}}"#,
        ] {
            let eager = parse_request(body).unwrap_err();
            let lazy = parse_request_lazy(body).unwrap_err();
            assert_eq!(eager.version, lazy.version);
            assert_eq!(eager.id, lazy.id);
        }
        let big_id = format!(r#"{{"method":"m","id":"{}"}}"#, "x".repeat(2000));
        assert!(parse_request_lazy(big_id.as_bytes()).is_err());
        let r = parse_request_lazy(br#"{"method":"m","params":["s",[1,2]]}"#).unwrap();
        assert!(r.param_is_string(0) && !r.param_is_string(1));
        assert_eq!(r.param(0).unwrap().unwrap(), Value::str("s"));
        assert!(r.param(2).is_none());
    }
}
