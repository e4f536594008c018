//! Any XML-RPC body through the whole call path: parse, sessions, the call
//! table, the in-memory backend's lifecycle rules. Whatever comes in, the
//! answer is a XenAPI envelope; nothing panics. A session is logged in
//! first and `SESSION` in the input is replaced by it, so the fuzzer reaches
//! past the session check.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use windsor_api::auth::{Credentials, HashStrength};
use windsor_api::backend::MemoryBackend;
use windsor_api::server::{Api, Config};
use windsor_api::value::Value;
use windsor_api::xmlrpc;

fn api() -> &'static (Api, String) {
    static API: OnceLock<(Api, String)> = OnceLock::new();
    API.get_or_init(|| {
        let api = Api::new(
            Arc::new(MemoryBackend::new()),
            Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap(),
            Config::default(),
        );
        let s = api
            .call(
                "session.login_with_password",
                &[Value::str("root"), Value::str("pw")],
            )
            .unwrap();
        let s = s.as_str().unwrap().to_owned();
        (api, s)
    })
}

fuzz_target!(|data: &[u8]| {
    let (api, session) = api();
    let Ok(mut call) = xmlrpc::parse_call(data) else {
        return;
    };
    // Never log out the shared session, never wait on events.
    if call.method == "session.logout" || call.method == "event.from" {
        return;
    }
    for p in &mut call.params {
        if p.as_str() == Some("SESSION") {
            *p = Value::str(session.clone());
        }
    }
    let result = api.call(&call.method, &call.params);
    let doc = xmlrpc::emit_response(&result);
    assert!(xmlrpc::parse_response(doc.as_bytes()).is_ok());
});
