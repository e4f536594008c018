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
//! Parsing streams the tokens of `xmlparser` (a no_std tokenizer) straight
//! into [`Value`]s: no intermediate element tree, nesting bounded by
//! [`MAX_DEPTH`] so hostile input cannot exhaust the stack. A
//! [`CallReader`] reads the method name and then one parameter at a time,
//! so that a server can check the session (the first parameter, read with a
//! small element budget) before it parses the rest of a body.

use alloc::borrow::Cow;

use xmlparser::{ElementEnd, Token, Tokenizer};

#[allow(unused_imports)]
use crate::prelude::*;

use crate::error::{clip, ApiError, WireError};
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

fn bad(msg: impl Into<String>) -> WireError {
    WireError::Malformed(msg.into())
}

/// One step of the document, with entities resolved.
#[derive(Debug)]
enum Ev<'a> {
    Start(&'a str),
    End(&'a str),
    Text(Cow<'a, str>),
    Eof,
}

/// The event reader over `xmlparser`'s tokens: balanced tags, bounded
/// depth, an optional budget of elements.
struct Reader<'a> {
    tokens: Tokenizer<'a>,
    /// Names of the open elements (at most [`MAX_DEPTH`]).
    open: Vec<&'a str>,
    /// The element whose start tag is being read.
    starting: Option<&'a str>,
    /// The end of an empty element (`<nil/>`), delivered next.
    pending_end: bool,
    /// Elements still allowed before [`Reader::next`] refuses.
    budget: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Result<Reader<'a>, WireError> {
        let text = core::str::from_utf8(input).map_err(|_| bad("XML is not UTF-8"))?;
        Ok(Reader {
            tokens: Tokenizer::from(text),
            open: Vec::new(),
            starting: None,
            pending_end: false,
            budget: usize::MAX,
        })
    }

    fn next(&mut self) -> Result<Ev<'a>, WireError> {
        if self.pending_end {
            self.pending_end = false;
            let name = self.open.pop().ok_or_else(|| bad("unbalanced end tag"))?;
            return Ok(Ev::End(name));
        }
        loop {
            let Some(tok) = self.tokens.next() else {
                if !self.open.is_empty() || self.starting.is_some() {
                    return Err(bad("unexpected end of document"));
                }
                return Ok(Ev::Eof);
            };
            match tok.map_err(|e| bad(format!("XML: {e}")))? {
                Token::ElementStart { local, .. } => self.starting = Some(local.as_str()),
                Token::Attribute { .. } => {}
                Token::ElementEnd { end, .. } => match end {
                    ElementEnd::Open | ElementEnd::Empty => {
                        let name = self.starting.take().ok_or_else(|| bad("stray '>'"))?;
                        if self.open.len() >= MAX_DEPTH {
                            return Err(bad("XML nested too deeply"));
                        }
                        if self.budget == 0 {
                            return Err(bad("too many elements"));
                        }
                        self.budget -= 1;
                        self.open.push(name);
                        self.pending_end = matches!(end, ElementEnd::Empty);
                        return Ok(Ev::Start(name));
                    }
                    ElementEnd::Close(_, local) => {
                        let name = self.open.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                        if name != local.as_str() {
                            return Err(bad(format!(
                                "</{}> closes <{}>",
                                clip(local.as_str()),
                                clip(name)
                            )));
                        }
                        return Ok(Ev::End(name));
                    }
                },
                Token::Text { text } => {
                    let t = unescape(text.as_str())?;
                    if self.open.is_empty() {
                        if t.trim().is_empty() {
                            continue;
                        }
                        return Err(bad("text outside the root element"));
                    }
                    return Ok(Ev::Text(t));
                }
                Token::Cdata { text, .. } => {
                    if self.open.is_empty() {
                        return Err(bad("CDATA outside the root element"));
                    }
                    return Ok(Ev::Text(Cow::Borrowed(text.as_str())));
                }
                // Declarations, comments, processing instructions and DTDs
                // carry nothing XML-RPC uses (entities are never expanded).
                _ => {}
            }
        }
    }

    /// The next event that is not whitespace between elements.
    fn next_tag(&mut self) -> Result<Ev<'a>, WireError> {
        loop {
            match self.next()? {
                Ev::Text(t) if t.trim().is_empty() => {}
                Ev::Text(_) => return Err(bad("unexpected text")),
                ev => return Ok(ev),
            }
        }
    }

    fn expect_start(&mut self, name: &str) -> Result<(), WireError> {
        match self.next_tag()? {
            Ev::Start(n) if n == name => Ok(()),
            other => Err(bad(format!("expected <{name}>, got {}", describe(&other)))),
        }
    }

    fn expect_end(&mut self, name: &str) -> Result<(), WireError> {
        match self.next_tag()? {
            Ev::End(n) if n == name => Ok(()),
            other => Err(bad(format!("expected </{name}>, got {}", describe(&other)))),
        }
    }

    /// The text of the element just opened, up to its end tag.
    fn text_until_end(&mut self, name: &str) -> Result<String, WireError> {
        let mut s = String::new();
        loop {
            match self.next()? {
                Ev::Text(t) => s.push_str(&t),
                Ev::End(_) => return Ok(s),
                other => return Err(bad(format!("unexpected {} in <{name}>", describe(&other)))),
            }
        }
    }

    /// A value whose `<value>` start tag was just read, through its end.
    fn value(&mut self) -> Result<Value, WireError> {
        let mut text = String::new();
        let ty = loop {
            match self.next()? {
                Ev::Text(t) => text.push_str(&t),
                // No type element: a string (the XML-RPC default).
                Ev::End(_) => return Ok(Value::String(text)),
                Ev::Start(ty) => break ty,
                Ev::Eof => return Err(bad("unexpected end of document")),
            }
        };
        let v = self.typed(ty)?;
        self.expect_end("value")?;
        Ok(v)
    }

    /// The value inside `<ty>`, through `</ty>`.
    fn typed(&mut self, ty: &str) -> Result<Value, WireError> {
        Ok(match ty {
            "string" => Value::String(self.text_until_end(ty)?),
            "int" | "i4" | "i8" => {
                let text = self.text_until_end(ty)?;
                Value::Int(
                    text.trim()
                        .parse()
                        .map_err(|_| bad(format!("bad int {:?}", clip(&text))))?,
                )
            }
            "boolean" => {
                let text = self.text_until_end(ty)?;
                match text.trim() {
                    "1" | "true" => Value::Bool(true),
                    "0" | "false" => Value::Bool(false),
                    _ => return Err(bad(format!("bad boolean {:?}", clip(&text)))),
                }
            }
            "double" => {
                let text = self.text_until_end(ty)?;
                Value::Double(
                    text.trim()
                        .parse()
                        .map_err(|_| bad(format!("bad double {:?}", clip(&text))))?,
                )
            }
            "dateTime.iso8601" => Value::DateTime(self.text_until_end(ty)?.trim().to_owned()),
            "base64" => Value::String(self.text_until_end(ty)?.trim().to_owned()),
            "nil" => {
                self.expect_end("nil")?;
                Value::Nil
            }
            "array" => {
                self.expect_start("data")?;
                let mut items = Vec::new();
                loop {
                    match self.next_tag()? {
                        Ev::Start("value") => items.push(self.value()?),
                        Ev::End(_) => break,
                        other => {
                            return Err(bad(format!("unexpected {} in array", describe(&other))))
                        }
                    }
                }
                self.expect_end("array")?;
                Value::Array(items)
            }
            "struct" => {
                let mut m = BTreeMap::new();
                loop {
                    match self.next_tag()? {
                        Ev::Start("member") => {
                            let (name, value) = self.member()?;
                            m.insert(name, value);
                        }
                        Ev::End(_) => break,
                        other => {
                            return Err(bad(format!("unexpected {} in struct", describe(&other))))
                        }
                    }
                }
                Value::Struct(m)
            }
            other => return Err(bad(format!("unknown value type <{}>", clip(other)))),
        })
    }

    /// A struct member after `<member>`, through `</member>`.
    fn member(&mut self) -> Result<(String, Value), WireError> {
        let (mut name, mut value) = (None, None);
        loop {
            match self.next_tag()? {
                Ev::Start("name") => name = Some(self.text_until_end("name")?),
                Ev::Start("value") => value = Some(self.value()?),
                Ev::End(_) => break,
                other => return Err(bad(format!("unexpected {} in member", describe(&other)))),
            }
        }
        Ok((
            name.ok_or_else(|| bad("member without name"))?,
            value.ok_or_else(|| bad("member without value"))?,
        ))
    }

    /// The document is over: nothing but whitespace and comments left.
    fn expect_eof(&mut self) -> Result<(), WireError> {
        match self.next_tag()? {
            Ev::Eof => Ok(()),
            _ => Err(bad("content after the root element")),
        }
    }
}

fn describe(ev: &Ev<'_>) -> String {
    match ev {
        Ev::Start(n) => format!("<{}>", clip(n)),
        Ev::End(n) => format!("</{}>", clip(n)),
        Ev::Text(_) => "text".into(),
        Ev::Eof => "the end of the document".into(),
    }
}

/// Resolves XML's five entities and character references.
fn unescape(raw: &str) -> Result<Cow<'_, str>, WireError> {
    if !raw.contains('&') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| bad("unterminated entity"))?;
        let name = &after[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| bad(format!("unknown entity &{};", clip(name))))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// What [`CallReader::next_param_bounded`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    /// A parameter within the budget.
    Param(Value),
    /// No more parameters.
    End,
    /// The parameter is larger than the budget.
    TooLarge,
}

/// A `methodCall` read step by step: the method name first, then one
/// parameter at a time.
pub struct CallReader<'a> {
    r: Reader<'a>,
    method: String,
    /// Inside `<params>` (false before it and after `</params>`).
    in_params: bool,
    done: bool,
}

impl<'a> CallReader<'a> {
    /// Reads up to and including the `methodName` (which XML-RPC puts
    /// first).
    pub fn new(input: &'a [u8]) -> Result<CallReader<'a>, WireError> {
        let mut r = Reader::new(input)?;
        match r.next_tag()? {
            Ev::Start("methodCall") => {}
            Ev::Start(other) => {
                return Err(bad(format!("expected <methodCall>, got <{}>", clip(other))))
            }
            _ => return Err(bad("empty document")),
        }
        let method = match r.next_tag()? {
            Ev::Start("methodName") => r.text_until_end("methodName")?.trim().to_owned(),
            _ => return Err(bad("methodCall without methodName")),
        };
        Ok(CallReader {
            r,
            method,
            in_params: false,
            done: false,
        })
    }

    /// The method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The next parameter, or `None` after the last.
    pub fn next_param(&mut self) -> Result<Option<Value>, WireError> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.r.next_tag()? {
                Ev::Start("params") if !self.in_params => self.in_params = true,
                Ev::Start("param") if self.in_params => {
                    self.r.expect_start("value")?;
                    let v = self.r.value()?;
                    self.r.expect_end("param")?;
                    return Ok(Some(v));
                }
                Ev::End("params") => self.in_params = false,
                Ev::End("methodCall") => {
                    self.r.expect_eof()?;
                    self.done = true;
                    return Ok(None);
                }
                other => {
                    return Err(bad(format!(
                        "unexpected {} in methodCall",
                        describe(&other)
                    )))
                }
            }
        }
    }

    /// The next parameter if it fits in `elements` elements (a session
    /// reference needs 3: `<param><value><string>`), else
    /// [`Head::TooLarge`] — then the reader is spent. Lets a server check a
    /// session before it parses a big body.
    pub fn next_param_bounded(&mut self, elements: usize) -> Result<Head, WireError> {
        self.r.budget = elements;
        let v = self.next_param();
        let spent = self.r.budget == 0;
        self.r.budget = usize::MAX;
        match v {
            Ok(Some(v)) => Ok(Head::Param(v)),
            Ok(None) => Ok(Head::End),
            Err(_) if spent => Ok(Head::TooLarge),
            Err(e) => Err(e),
        }
    }

    /// The remaining parameters, through the end of the document.
    pub fn rest(mut self) -> Result<Vec<Value>, WireError> {
        let mut out = Vec::new();
        while let Some(v) = self.next_param()? {
            out.push(v);
        }
        Ok(out)
    }
}

/// Parses a `methodCall` document.
pub fn parse_call(input: &[u8]) -> Result<MethodCall, WireError> {
    let reader = CallReader::new(input)?;
    let method = reader.method().to_owned();
    let params = reader.rest()?;
    Ok(MethodCall { method, params })
}

/// Parses a `methodResponse` whose `<params>` or `<fault>` holds one value.
fn parse_response_value(input: &[u8]) -> Result<Result<Value, String>, WireError> {
    let mut r = Reader::new(input)?;
    match r.next_tag()? {
        Ev::Start("methodResponse") => {}
        Ev::Start(other) => {
            return Err(bad(format!(
                "expected <methodResponse>, got <{}>",
                clip(other)
            )))
        }
        _ => return Err(bad("empty document")),
    }
    let out = match r.next_tag()? {
        Ev::Start("fault") => {
            r.expect_start("value")?;
            let v = r.value()?;
            r.expect_end("fault")?;
            let msg = v
                .get("faultString")
                .and_then(Value::as_str)
                .unwrap_or("XML-RPC fault")
                .to_owned();
            Err(msg)
        }
        Ev::Start("params") => {
            r.expect_start("param")
                .map_err(|_| bad("methodResponse must carry exactly one param"))?;
            r.expect_start("value")?;
            let v = r.value()?;
            r.expect_end("param")?;
            r.expect_end("params")
                .map_err(|_| bad("methodResponse must carry exactly one param"))?;
            Ok(v)
        }
        _ => return Err(bad("methodResponse must carry exactly one param")),
    };
    r.expect_end("methodResponse")?;
    r.expect_eof()?;
    Ok(out)
}

/// Parses a `methodResponse` and unwraps XAPI's `{Status, Value}` envelope.
///
/// The outer `Err` is a wire problem; the inner one a XenAPI failure.
pub fn parse_response(input: &[u8]) -> Result<Result<Value, ApiError>, WireError> {
    match parse_response_value(input)? {
        Ok(v) => unwrap_envelope(v),
        Err(fault) => Err(WireError::Fault(fault)),
    }
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

    #[test]
    fn entities_cdata_and_tag_balance() {
        let c = parse_call(
            b"<?xml version='1.0'?><!-- hi --><methodCall><methodName>a&amp;b</methodName>\
              <params><param><value>&lt;&#65;&#x42;&quot;&apos;&gt;</value></param>\
              <param><value><string><![CDATA[<raw&>]]></string></value></param>\
              <param><value><nil/></value></param></params></methodCall>",
        )
        .unwrap();
        assert_eq!(c.method, "a&b");
        assert_eq!(
            c.params,
            vec![Value::str("<AB\"'>"), Value::str("<raw&>"), Value::Nil]
        );
        for bad in [
            &b"<methodCall><methodName>x</methodCall></methodName>"[..],
            b"<methodCall><methodName>&bogus;</methodName></methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><extra/>",
            b"<methodCall><params/><methodName>x</methodName></methodCall>",
        ] {
            assert!(
                parse_call(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_session_is_read_before_the_rest() {
        let big = "<value><i4>1</i4></value>".repeat(1000);
        let doc = format!(
            "<methodCall><methodName>VM.get_all</methodName><params>\
             <param><value>OpaqueRef:s</value></param>\
             <param><value><array><data>{big}</data></array></value></param>\
             </params></methodCall>"
        );
        let mut r = CallReader::new(doc.as_bytes()).unwrap();
        assert_eq!(r.method(), "VM.get_all");
        assert_eq!(
            r.next_param_bounded(4).unwrap(),
            Head::Param(Value::str("OpaqueRef:s"))
        );
        let rest = r.rest().unwrap();
        assert_eq!(rest[0].as_array().unwrap().len(), 1000);
        // A big first parameter is refused within the budget.
        let doc = format!(
            "<methodCall><methodName>VM.get_all</methodName><params>\
             <param><value><array><data>{big}</data></array></value></param>\
             </params></methodCall>"
        );
        let mut r = CallReader::new(doc.as_bytes()).unwrap();
        assert_eq!(r.next_param_bounded(4).unwrap(), Head::TooLarge);
    }
}
