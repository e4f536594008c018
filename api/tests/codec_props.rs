//! Property tests of the codecs: values survive a round trip through each
//! wire (with XenAPI's int-as-string rule in XML-RPC), and garbage never
//! panics any parser.

use proptest::prelude::*;
use windsor_api::error::ApiError;
use windsor_api::value::Value;
use windsor_api::{jsonrpc, xmlrpc};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[ -~\n\t\u{e9}\u{4e16}]{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        (-1.0e12f64..1.0e12).prop_map(Value::Double),
        Just(Value::Nil),
        "[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z".prop_map(Value::DateTime),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_:<&]{0,8}", inner, 0..6).prop_map(Value::Struct),
        ]
    })
}

/// What XML-RPC gives back: XenAPI ints travel as strings.
fn via_xml(v: &Value) -> Value {
    match v {
        Value::Int(i) => Value::String(i.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(via_xml).collect()),
        Value::Struct(m) => Value::Struct(m.iter().map(|(k, v)| (k.clone(), via_xml(v))).collect()),
        other => other.clone(),
    }
}

/// What JSON gives back: datetimes are strings.
fn via_json(v: &Value) -> Value {
    match v {
        Value::DateTime(s) => Value::String(s.clone()),
        Value::Array(a) => Value::Array(a.iter().map(via_json).collect()),
        Value::Struct(m) => {
            Value::Struct(m.iter().map(|(k, v)| (k.clone(), via_json(v))).collect())
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn xmlrpc_round_trip(params in prop::collection::vec(value(), 0..4), result in value()) {
        let call = xmlrpc::parse_call(xmlrpc::emit_call("VM.x", &params).as_bytes()).unwrap();
        prop_assert_eq!(call.method, "VM.x");
        let want: Vec<Value> = params.iter().map(via_xml).collect();
        prop_assert_eq!(call.params, want);
        let resp = xmlrpc::emit_response(&Ok(result.clone()));
        let back = xmlrpc::parse_response(resp.as_bytes()).unwrap().unwrap();
        prop_assert_eq!(back, via_xml(&result));
    }

    #[test]
    fn jsonrpc_round_trip(params in prop::collection::vec(value(), 0..4), result in value()) {
        let req = jsonrpc::parse_request(jsonrpc::emit_request(3, "VM.x", &params).as_bytes()).unwrap();
        prop_assert_eq!(req.params, params.iter().map(via_json).collect::<Vec<_>>());
        for version in [jsonrpc::Version::V1, jsonrpc::Version::V2] {
            let resp = jsonrpc::emit_response(version, &req.id, &Ok(result.clone()));
            let back = jsonrpc::parse_response(resp.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(back, via_json(&result));
        }
    }

    #[test]
    fn errors_round_trip(code in "[A-Z_]{1,20}", params in prop::collection::vec("[ -~]{0,10}", 0..4)) {
        let e = ApiError { code, params };
        let xml = xmlrpc::emit_response(&Err(e.clone()));
        prop_assert_eq!(xmlrpc::parse_response(xml.as_bytes()).unwrap().unwrap_err(), e.clone());
        for version in [jsonrpc::Version::V1, jsonrpc::Version::V2] {
            let j = jsonrpc::emit_response(version, &serde_json::Value::Null, &Err(e.clone()));
            prop_assert_eq!(jsonrpc::parse_response(j.as_bytes()).unwrap().unwrap_err(), e.clone());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = xmlrpc::parse_call(&bytes);
        let _ = xmlrpc::parse_response(&bytes);
        let _ = jsonrpc::parse_request(&bytes);
        let _ = jsonrpc::parse_response(&bytes);
    }

    #[test]
    fn mutated_calls_never_panic(params in prop::collection::vec(value(), 0..3), cut in 0usize..2000, flip in any::<u8>()) {
        let mut doc = xmlrpc::emit_call("VM.start", &params).into_bytes();
        if !doc.is_empty() {
            let i = cut % doc.len();
            doc[i] ^= flip;
            let _ = xmlrpc::parse_call(&doc);
            let _ = xmlrpc::parse_call(&doc[..i]);
        }
    }
}
