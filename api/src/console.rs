//! XenAPI `console` objects and the console text over HTTP (host mode).
//!
//! XAPI gives a running VM's domain a `console` object and removes it at
//! shutdown; so does Windsor, but the objects are the **console backend's
//! runtime state** (one per domain whose console dom0 serves), not pool
//! database records: the API answers the `console` class from a
//! [`Consoles`] source, like `session.*`, instead of the toolstack.
//!
//! | call | answer |
//! |---|---|
//! | `console.get_all(s)` | refs of every console |
//! | `console.get_all_records(s)` | ref → record |
//! | `console.get_record(s, ref)`, `get_by_uuid(s, uuid)` | the record / the ref |
//! | `console.get_uuid`, `get_protocol`, `get_location`, `get_VM`, `get_other_config` | the field |
//! | `VM.get_consoles(s, vm)` | the refs of the VM's console (empty when halted) |
//!
//! A record is `{uuid, protocol: "vt100", location, VM, other_config}`;
//! the ref is `OpaqueRef:<uuid>` as for every Windsor object. `location`
//! is `http://<api address>/console?uuid=<uuid>`: a `GET` of it with the
//! `session_id=<session ref>` query parameter (XAPI's HTTP handlers take
//! the session that way) returns the console's recent output as
//! `text/plain; charset=utf-8`, control characters escaped as `\xNN`.
//! An `offset=<n>` parameter asks for the bytes from offset `n` of the
//! guest's output on; the response's `X-Console-Start` and
//! `X-Console-End` headers say which bytes the text covers, so a reader
//! follows the console by passing `X-Console-End` back as the next
//! `offset`; `X-Console-Closed: 1` says the domain is gone and nothing
//! more will come (the last consoles of gone domains stay readable by
//! their location for a while, though they are no longer objects).
//! `other_config` carries `domid`, `total_bytes` and `lines`
//! (what the backend took from the guest so far).
//!
//! The module is `no_std` + `alloc`: Xen mode's dom0 answers the same
//! calls from its own console backend.

#[allow(unused_imports)]
use crate::prelude::*;

use windsor_toolstack::action::{ref_of, uuid_of};

use crate::error::ApiError;
use crate::value::Value;

/// One console as its backend knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEntry {
    /// The console's uuid.
    pub uuid: String,
    /// The uuid of the VM whose domain it is (its domain's handle).
    pub vm_uuid: String,
    /// The domain.
    pub domid: u16,
    /// Bytes taken from the guest so far.
    pub total_bytes: u64,
    /// Lines taken so far.
    pub lines: u64,
}

/// A piece of a console's output (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleText {
    /// Offset of the first byte of `text` in the guest's output.
    pub start: u64,
    /// Offset just past the last one.
    pub end: u64,
    /// The text.
    pub text: String,
    /// The console's domain is gone: nothing more will come.
    pub closed: bool,
}

/// Where the API finds consoles: the console backend of the host.
pub trait Consoles: Send + Sync + 'static {
    /// Every console.
    fn list(&self) -> Vec<ConsoleEntry>;
    /// Console `uuid`'s output from byte offset `from`; `None` if no such
    /// console (or it ended too long ago).
    fn read(&self, uuid: &str, from: u64) -> Option<ConsoleText>;
}

/// The `console` fields, in XAPI's order.
const FIELDS: [&str; 5] = ["uuid", "protocol", "location", "VM", "other_config"];

/// The record of `c`, its location on `base` (`http://host:port`).
pub fn record(c: &ConsoleEntry, base: &str) -> Value {
    Value::record([
        ("uuid", Value::str(&c.uuid)),
        ("protocol", Value::str("vt100")),
        (
            "location",
            Value::str(format!("{base}/console?uuid={}", c.uuid)),
        ),
        ("VM", Value::str(ref_of(&c.vm_uuid))),
        (
            "other_config",
            Value::record([
                ("domid", Value::str(c.domid.to_string())),
                ("total_bytes", Value::str(c.total_bytes.to_string())),
                ("lines", Value::str(c.lines.to_string())),
            ]),
        ),
    ])
}

/// Whether the API answers `method` here.
pub fn is_console_method(method: &str) -> bool {
    method == "VM.get_consoles" || method.starts_with("console.")
}

/// The `console.*` methods, for `system.listMethods`.
pub fn methods() -> Vec<String> {
    let mut m: Vec<String> = ["get_all", "get_all_records", "get_record", "get_by_uuid"]
        .iter()
        .map(|op| format!("console.{op}"))
        .collect();
    m.extend(FIELDS.iter().map(|f| format!("console.get_{f}")));
    m.push("VM.get_consoles".into());
    m
}

/// Answers a console call (`params` without the session, already
/// checked). `vm_exists(ref)` checks a VM ref through the toolstack (the
/// toolstack's own error if it is not one).
pub fn call(
    consoles: &dyn Consoles,
    base: &str,
    method: &str,
    params: &[Value],
    vm_exists: impl Fn(&str) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let arg = |what: &str| -> Result<String, ApiError> {
        params
            .first()
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::field_type(what))
    };
    let all = consoles.list();
    let by_ref = |r: &str| -> Result<&ConsoleEntry, ApiError> {
        uuid_of(r)
            .and_then(|u| all.iter().find(|c| c.uuid == u))
            .ok_or_else(|| ApiError::handle_invalid("console", r))
    };
    let op = method.strip_prefix("console.").unwrap_or(method);
    Ok(match op {
        "VM.get_consoles" => {
            let vm = arg("vm")?;
            vm_exists(&vm)?;
            let uuid = uuid_of(&vm).unwrap_or_default();
            Value::strings(
                all.iter()
                    .filter(|c| c.vm_uuid == uuid)
                    .map(|c| ref_of(&c.uuid)),
            )
        }
        "get_all" => Value::strings(all.iter().map(|c| ref_of(&c.uuid))),
        "get_all_records" => Value::record(all.iter().map(|c| (ref_of(&c.uuid), record(c, base)))),
        "get_record" => record(by_ref(&arg("self")?)?, base),
        "get_by_uuid" => {
            let u = arg("uuid")?;
            let c = all
                .iter()
                .find(|c| c.uuid == u)
                .ok_or_else(|| ApiError::uuid_invalid("console", &u))?;
            Value::str(ref_of(&c.uuid))
        }
        _ => {
            let field = op
                .strip_prefix("get_")
                .filter(|f| FIELDS.contains(f))
                .ok_or_else(|| ApiError::method_unknown(method))?;
            let rec = record(by_ref(&arg("self")?)?, base);
            rec.get(field).cloned().unwrap_or(Value::str(""))
        }
    })
}

/// The parameters of `GET /console?uuid=..&session_id=..[&offset=n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// The console's uuid.
    pub uuid: &'a str,
    /// The session ref.
    pub session: &'a str,
    /// Where to start in the guest's output.
    pub offset: u64,
}

impl<'a> Query<'a> {
    /// Parses the query string; a missing or bad parameter is the HTTP
    /// status and message to answer (`401` without a session).
    pub fn parse(query: &'a str) -> Result<Query<'a>, (u16, String)> {
        let mut uuid = None;
        let mut session = None;
        let mut offset = 0u64;
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("uuid", v)) => uuid = Some(v),
                Some(("session_id", v)) => session = Some(v),
                Some(("offset", v)) => {
                    offset = v.parse().map_err(|_| (400, "bad offset\n".to_owned()))?
                }
                _ => {}
            }
        }
        let session = session.ok_or((401, "session_id missing\n".into()))?;
        let uuid = uuid.ok_or((400, "uuid missing\n".into()))?;
        Ok(Query {
            uuid,
            session,
            offset,
        })
    }
}

/// How many parameters (after the session) `method` takes, if it is one.
pub fn arity(method: &str) -> Option<usize> {
    let op = method.strip_prefix("console.").unwrap_or(method);
    match op {
        "get_all" | "get_all_records" => Some(0),
        "VM.get_consoles" | "get_record" | "get_by_uuid" => Some(1),
        _ if op.strip_prefix("get_").is_some_and(|f| FIELDS.contains(&f)) => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl Consoles for Two {
        fn list(&self) -> Vec<ConsoleEntry> {
            ["a", "b"]
                .iter()
                .enumerate()
                .map(|(i, u)| ConsoleEntry {
                    uuid: format!("c-{u}"),
                    vm_uuid: format!("vm-{u}"),
                    domid: i as u16 + 5,
                    total_bytes: 10,
                    lines: 1,
                })
                .collect()
        }
        fn read(&self, _: &str, _: u64) -> Option<ConsoleText> {
            None
        }
    }

    fn ok(_: &str) -> Result<(), ApiError> {
        Ok(())
    }

    #[test]
    fn records_and_lookups() {
        let base = "http://h:1";
        let c = |m: &str, p: &[Value]| call(&Two, base, m, p, ok);
        assert_eq!(
            c("console.get_all", &[]).unwrap(),
            Value::strings(["OpaqueRef:c-a", "OpaqueRef:c-b"])
        );
        let r = c("console.get_record", &[Value::str("OpaqueRef:c-b")]).unwrap();
        assert_eq!(r.get("protocol"), Some(&Value::str("vt100")));
        assert_eq!(r.get("VM"), Some(&Value::str("OpaqueRef:vm-b")));
        assert_eq!(
            r.get("location"),
            Some(&Value::str("http://h:1/console?uuid=c-b"))
        );
        assert_eq!(
            r.get("other_config").and_then(|o| o.get("domid")),
            Some(&Value::str("6"))
        );
        assert_eq!(
            c("console.get_location", &[Value::str("OpaqueRef:c-a")]).unwrap(),
            Value::str("http://h:1/console?uuid=c-a")
        );
        assert_eq!(
            c("console.get_by_uuid", &[Value::str("c-a")]).unwrap(),
            Value::str("OpaqueRef:c-a")
        );
        assert_eq!(
            c("VM.get_consoles", &[Value::str("OpaqueRef:vm-a")]).unwrap(),
            Value::strings(["OpaqueRef:c-a"])
        );
        assert_eq!(
            c("VM.get_consoles", &[Value::str("OpaqueRef:vm-x")]).unwrap(),
            Value::strings(Vec::<String>::new())
        );
        let all = c("console.get_all_records", &[]).unwrap();
        assert_eq!(all.as_struct().map(|m| m.len()), Some(2));
        let bad = c("console.get_record", &[Value::str("OpaqueRef:nope")]).unwrap_err();
        assert_eq!(bad, ApiError::handle_invalid("console", "OpaqueRef:nope"));
        let bad = c("console.get_by_uuid", &[Value::str("nope")]).unwrap_err();
        assert_eq!(bad, ApiError::uuid_invalid("console", "nope"));
        assert!(c("console.get_nonsense", &[Value::str("x")]).is_err());
    }

    #[test]
    fn queries() {
        let q = Query::parse("uuid=c-a&session_id=OpaqueRef:s&offset=7").unwrap();
        assert_eq!((q.uuid, q.session, q.offset), ("c-a", "OpaqueRef:s", 7));
        assert_eq!(Query::parse("uuid=c-a").unwrap_err().0, 401);
        assert_eq!(Query::parse("session_id=s").unwrap_err().0, 400);
        assert_eq!(
            Query::parse("uuid=c&session_id=s&offset=x").unwrap_err().0,
            400
        );
    }

    #[test]
    fn arities_and_method_list() {
        assert_eq!(arity("console.get_all"), Some(0));
        assert_eq!(arity("console.get_VM"), Some(1));
        assert_eq!(arity("VM.get_consoles"), Some(1));
        assert_eq!(arity("console.destroy"), None);
        for m in methods() {
            assert!(arity(&m).is_some(), "{m}");
            assert!(is_console_method(&m));
        }
    }
}
