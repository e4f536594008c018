//! XML-RPC codec: `methodCall` in, `methodResponse` out (and the reverse for
//! the client).
//!
//! Producer and consumer: XenAPI clients (PyPI `XenAPI`, `xe`, XenCenter)
//! POST a `methodCall` to `/`; the server answers a `methodResponse` whose
//! single param is XAPI's envelope struct `{Status, Value}` or
//! `{Status, ErrorDescription}` (XAPI never uses XML-RPC faults).
//!
//! ```text
//! <methodCall><methodName>VM.start</methodName>
//!   <params><param><value>OpaqueRef:…</value></param>…</params></methodCall>
//! ```
//!
//! Values follow the XML-RPC spec plus XAPI's conventions
//! (`ocaml/doc/wire-protocol.md` in xapi-project/xen-api): a `<value>` with no
//! type element is a string, XenAPI `int` is emitted as a string of digits,
//! `<nil/>` is accepted. Output is compact: no whitespace between tags, since
//! some clients choke on it.
//!
//! Parsing uses `quick-xml` into a small element tree first (bounded depth
//! and size, so hostile input cannot exhaust the stack), then interprets it.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{ApiError, WireError};
use crate::value::Value;

/// Deepest element nesting accepted in a document.
pub const MAX_DEPTH: usize = 64;

/// A parsed `methodCall`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// The method name, e.g. `VM.start`.
    pub method: String,
    /// The positional parameters.
    pub params: Vec<Value>,
}

#[derive(Debug)]
enum Node {
    Elem(Elem),
    Text(String),
}

#[derive(Debug)]
struct Elem {
    name: String,
    children: Vec<Node>,
}

impl Elem {
    fn elems(&self) -> impl Iterator<Item = &Elem> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    fn child(&self, name: &str) -> Option<&Elem> {
        self.elems().find(|e| e.name == name)
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::Malformed(msg.into())
}

fn parse_tree(input: &[u8]) -> Result<Elem, WireError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    loop {
        let ev = reader.read_event().map_err(|e| bad(format!("XML: {e}")))?;
        match ev {
            Event::Start(s) => {
                if root.is_some() {
                    return Err(bad("content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad("XML nested too deeply"));
                }
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                stack.push(Elem {
                    name,
                    children: Vec::new(),
                });
            }
            Event::Empty(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                let e = Elem {
                    name,
                    children: Vec::new(),
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Elem(e)),
                    None if root.is_none() => root = Some(e),
                    None => return Err(bad("content after the root element")),
                }
            }
            Event::End(_) => {
                let e = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Elem(e)),
                    None => root = Some(e),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| bad(format!("XML text: {e}")))?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::Text(s.into_owned()));
                } else if !s.trim().is_empty() {
                    return Err(bad("text outside the root element"));
                }
            }
            Event::CData(c) => {
                let s = String::from_utf8(c.into_inner().into_owned())
                    .map_err(|_| bad("CDATA is not UTF-8"))?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::Text(s));
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("unexpected end of document"));
    }
    root.ok_or_else(|| bad("empty document"))
}

fn parse_value(v: &Elem) -> Result<Value, WireError> {
    let Some(ty) = v.elems().next() else {
        // No type element: a string (the XML-RPC default).
        return Ok(Value::String(v.text()));
    };
    let text = ty.text();
    Ok(match ty.name.as_str() {
        "string" => Value::String(text),
        "int" | "i4" | "i8" => Value::Int(
            text.trim()
                .parse()
                .map_err(|_| bad(format!("bad int {text:?}")))?,
        ),
        "boolean" => match text.trim() {
            "1" | "true" => Value::Bool(true),
            "0" | "false" => Value::Bool(false),
            _ => return Err(bad(format!("bad boolean {text:?}"))),
        },
        "double" => Value::Double(
            text.trim()
                .parse()
                .map_err(|_| bad(format!("bad double {text:?}")))?,
        ),
        "dateTime.iso8601" => Value::DateTime(text.trim().to_owned()),
        "base64" => Value::String(text.trim().to_owned()),
        "nil" => Value::Nil,
        "array" => {
            let data = ty.child("data").ok_or_else(|| bad("array without data"))?;
            let mut items = Vec::new();
            for e in data.elems() {
                if e.name != "value" {
                    return Err(bad(format!("unexpected <{}> in array", e.name)));
                }
                items.push(parse_value(e)?);
            }
            Value::Array(items)
        }
        "struct" => {
            let mut m = BTreeMap::new();
            for member in ty.elems() {
                if member.name != "member" {
                    return Err(bad(format!("unexpected <{}> in struct", member.name)));
                }
                let name = member
                    .child("name")
                    .ok_or_else(|| bad("member without name"))?
                    .text();
                let value = member
                    .child("value")
                    .ok_or_else(|| bad("member without value"))?;
                m.insert(name, parse_value(value)?);
            }
            Value::Struct(m)
        }
        other => return Err(bad(format!("unknown value type <{other}>"))),
    })
}

fn parse_params(params: Option<&Elem>) -> Result<Vec<Value>, WireError> {
    let mut out = Vec::new();
    if let Some(params) = params {
        for p in params.elems() {
            if p.name != "param" {
                return Err(bad(format!("unexpected <{}> in params", p.name)));
            }
            let v = p.child("value").ok_or_else(|| bad("param without value"))?;
            out.push(parse_value(v)?);
        }
    }
    Ok(out)
}

/// Parses a `methodCall` document.
pub fn parse_call(input: &[u8]) -> Result<MethodCall, WireError> {
    let root = parse_tree(input)?;
    if root.name != "methodCall" {
        return Err(bad(format!("expected <methodCall>, got <{}>", root.name)));
    }
    let method = root
        .child("methodName")
        .ok_or_else(|| bad("methodCall without methodName"))?
        .text()
        .trim()
        .to_owned();
    let params = parse_params(root.child("params"))?;
    Ok(MethodCall { method, params })
}

/// Parses a `methodResponse` and unwraps XAPI's `{Status, Value}` envelope.
///
/// The outer `Err` is a wire problem; the inner one a XenAPI failure.
pub fn parse_response(input: &[u8]) -> Result<Result<Value, ApiError>, WireError> {
    let root = parse_tree(input)?;
    if root.name != "methodResponse" {
        return Err(bad(format!(
            "expected <methodResponse>, got <{}>",
            root.name
        )));
    }
    if let Some(fault) = root.child("fault") {
        let v = fault
            .child("value")
            .ok_or_else(|| bad("fault without value"))?;
        let v = parse_value(v)?;
        let msg = v
            .get("faultString")
            .and_then(Value::as_str)
            .unwrap_or("XML-RPC fault")
            .to_owned();
        return Err(WireError::Fault(msg));
    }
    let mut params = parse_params(root.child("params"))?;
    if params.len() != 1 {
        return Err(bad("methodResponse must carry exactly one param"));
    }
    unwrap_envelope(params.remove(0))
}

/// Unwraps XAPI's `{Status, Value}` / `{Status, ErrorDescription}` struct.
pub fn unwrap_envelope(v: Value) -> Result<Result<Value, ApiError>, WireError> {
    let Value::Struct(mut m) = v else {
        return Err(bad("response is not a struct"));
    };
    match m.get("Status").and_then(Value::as_str) {
        Some("Success") => Ok(Ok(m.remove("Value").unwrap_or(Value::Nil))),
        Some("Failure") => {
            let desc = m
                .remove("ErrorDescription")
                .ok_or_else(|| bad("Failure without ErrorDescription"))?;
            Ok(Err(ApiError::from_description(&desc)))
        }
        _ => Err(bad("response without Status")),
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Appends `<value>…</value>` for `v`, compact.
pub fn write_value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        Value::String(s) => escape_into(out, s),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Bool(b) => {
            out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            });
        }
        Value::Double(d) => {
            out.push_str("<double>");
            out.push_str(&format_double(*d));
            out.push_str("</double>");
        }
        Value::DateTime(s) => {
            out.push_str("<dateTime.iso8601>");
            escape_into(out, s);
            out.push_str("</dateTime.iso8601>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                write_value(out, item);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(m) => {
            out.push_str("<struct>");
            for (k, v) in m {
                out.push_str("<member><name>");
                escape_into(out, k);
                out.push_str("</name>");
                write_value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
}

fn format_double(d: f64) -> String {
    if d.is_finite() {
        let s = format!("{d}");
        if s.contains('.') || s.contains('e') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        "0.0".to_owned()
    }
}

/// The XAPI envelope for a result.
pub fn envelope(result: &Result<Value, ApiError>) -> Value {
    match result {
        Ok(v) => Value::record([("Status", Value::str("Success")), ("Value", v.clone())]),
        Err(e) => Value::record([
            ("Status", Value::str("Failure")),
            ("ErrorDescription", e.description()),
        ]),
    }
}

/// Emits the `methodResponse` for a result, wrapped in XAPI's envelope.
pub fn emit_response(result: &Result<Value, ApiError>) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodResponse><params><param>");
    write_value(&mut out, &envelope(result));
    out.push_str("</param></params></methodResponse>");
    out
}

/// Emits a `methodCall` (the client side).
pub fn emit_call(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodCall><methodName>");
    escape_into(&mut out, method);
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        write_value(&mut out, p);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static PYTHON_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>VM.create</methodName>\n<params>\n<param>\n<value><string>OpaqueRef:s</string></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>name_label</name>\n<value><string>a &amp; b</string></value>\n</member>\n<member>\n<name>VCPUs_max</name>\n<value><int>2</int></value>\n</member>\n<member>\n<name>tags</name>\n<value><array><data>\n<value><string>x</string></value>\n</data></array></value>\n</member>\n<member>\n<name>other</name>\n<value><nil/></value>\n</member>\n<member>\n<name>flag</name>\n<value><boolean>1</boolean></value>\n</member>\n<member>\n<name>f</name>\n<value><double>1.5</double></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodCall>\n";

    #[test]
    fn parses_python_style_call() {
        let c = parse_call(PYTHON_CALL.as_bytes()).unwrap();
        assert_eq!(c.method, "VM.create");
        assert_eq!(c.params.len(), 2);
        assert_eq!(c.params[0], Value::str("OpaqueRef:s"));
        let r = &c.params[1];
        assert_eq!(r.get("name_label"), Some(&Value::str("a & b")));
        assert_eq!(r.get("VCPUs_max"), Some(&Value::Int(2)));
        assert_eq!(r.get("tags"), Some(&Value::strings(["x"])));
        assert_eq!(r.get("other"), Some(&Value::Nil));
        assert_eq!(r.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(r.get("f"), Some(&Value::Double(1.5)));
    }

    #[test]
    fn untyped_value_is_a_string_with_its_spaces() {
        let c = parse_call(
            b"<methodCall><methodName>a.b</methodName><params><param><value> x </value></param><param><value/></param></params></methodCall>",
        )
        .unwrap();
        assert_eq!(c.params, vec![Value::str(" x "), Value::str("")]);
    }

    #[test]
    fn response_is_compact_and_enveloped() {
        let ok = emit_response(&Ok(Value::record([
            ("n", Value::Int(7)),
            ("l", Value::strings(["a"])),
            ("z", Value::Nil),
        ])));
        assert_eq!(
            ok,
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>\
<member><name>Status</name><value>Success</value></member>\
<member><name>Value</name><value><struct>\
<member><name>l</name><value><array><data><value>a</value></data></array></value></member>\
<member><name>n</name><value>7</value></member>\
<member><name>z</name><value><nil/></value></member>\
</struct></value></member></struct></value></param></params></methodResponse>"
        );
        let err = emit_response(&Err(ApiError::new("SESSION_INVALID", ["OpaqueRef:x"])));
        assert!(err.contains("<name>ErrorDescription</name><value><array><data><value>SESSION_INVALID</value><value>OpaqueRef:x</value></data></array></value>"));
        assert!(!err.contains("> <") && !err.contains(">\n<"));
    }

    #[test]
    fn call_and_response_round_trip() {
        let params = vec![
            Value::str("<&>"),
            Value::Bool(false),
            Value::Double(2.0),
            Value::Array(vec![]),
            Value::empty_map(),
        ];
        let c = parse_call(emit_call("x.y", &params).as_bytes()).unwrap();
        assert_eq!(c.method, "x.y");
        assert_eq!(c.params, params);
        let resp = emit_response(&Err(ApiError::new("HANDLE_INVALID", ["VM", "r"])));
        let e = parse_response(resp.as_bytes()).unwrap().unwrap_err();
        assert_eq!(e.code, "HANDLE_INVALID");
        assert_eq!(e.params, vec!["VM".to_owned(), "r".to_owned()]);
        // Ints come back as strings, as from XAPI.
        let resp = emit_response(&Ok(Value::Int(5)));
        assert_eq!(
            parse_response(resp.as_bytes()).unwrap().unwrap(),
            Value::str("5")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"<",
            b"<methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><int>q</int></value></param></params></methodCall>",
            b"<methodCall><params/></methodCall>",
            b"<foo/>",
            b"<methodCall><methodName>x</methodName><params><param><value><struct><member><value/></member></struct></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><x/>",
            b"\xff\xfe",
        ] {
            assert!(parse_call(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<value><array><data>".repeat(200);
        let doc = format!("<methodCall><methodName>x</methodName><params><param>{deep}");
        assert!(parse_call(doc.as_bytes()).is_err());
    }
}
