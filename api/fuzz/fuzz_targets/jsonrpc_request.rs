//! Any bytes through the JSON-RPC request parser; a parsed request's
//! replies must parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_api::error::ApiError;
use windsor_api::jsonrpc;
use windsor_api::value::Value;

fuzz_target!(|data: &[u8]| {
    match jsonrpc::parse_request(data) {
        Ok(req) => {
            let ok = jsonrpc::emit_response(req.version, &req.id, &Ok(Value::Array(req.params.clone())));
            assert!(jsonrpc::parse_response(ok.as_bytes()).unwrap().is_ok());
            let err = ApiError::new("MESSAGE_METHOD_UNKNOWN", [req.method.clone()]);
            let e = jsonrpc::emit_response(req.version, &req.id, &Err(err.clone()));
            assert_eq!(jsonrpc::parse_response(e.as_bytes()).unwrap(), Err(err));
        }
        Err(bad) => {
            let body = jsonrpc::emit_bad_request(&bad);
            assert!(jsonrpc::parse_response(body.as_bytes()).unwrap().is_err());
        }
    }
});
