//! Any XML-RPC body through the call path of the cores: parse, the call
//! table, the toolstack engine's rules (records, storage, networks, tasks),
//! and the reply rendered back. Whatever comes in, the answer is a XenAPI
//! envelope that parses again; nothing panics. The session argument is not
//! checked here (sessions live in the API's std shell); calls the engine
//! hands back to an executor (power operations, `event.from`, `xenstore.*`)
//! stop at that seam. Built on the `no_std` cores only, so the fuzz build
//! needs neither hyper/tokio nor the simulated hypervisor.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use windsor_api::call;
use windsor_api::error::{clip, codes};
use windsor_api::value::Value;
use windsor_api::{xmlrpc, ApiError};
use windsor_toolstack::{Engine, Handled, Settings};

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new({
        let mut e = Engine::new(Settings::default(), 0x5eed, Vec::new());
        e.bootstrap(&[]);
        e.take_effects();
        e
    });
}

fn dispatch(method: &str, params: &[Value]) -> Result<Value, ApiError> {
    let m = call::lookup(method).ok_or_else(|| ApiError::method_unknown(method))?;
    // The first parameter is the session; the rest must match the arity.
    let args = params.get(1..).unwrap_or(&[]);
    if args.len() != m.arity() {
        return Err(ApiError::new(codes::MESSAGE_PARAMETER_COUNT_MISMATCH, [clip(method)]));
    }
    let parsed = call::build(m, args)?;
    ENGINE.with(|e| {
        let mut e = e.borrow_mut();
        match e.handle(parsed.action, 1_700_000_000) {
            Handled::Reply(r) => {
                e.take_effects();
                let reply = r.map_err(ApiError::from)?;
                call::reply_to_value(&reply, &parsed.shape)
            }
            Handled::Execute(_) => Ok(Value::str("executor")),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(c) = xmlrpc::parse_call(data) else {
        return;
    };
    let result = dispatch(&c.method, &c.params);
    let doc = xmlrpc::emit_response(&result);
    assert!(xmlrpc::parse_response(doc.as_bytes()).is_ok());
});
