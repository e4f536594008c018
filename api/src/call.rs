//! The call table: XenAPI method names and parameters → the toolstack's
//! [`Action`].
//!
//! Every call the API forwards to the toolstack is one row of [`CALLS`],
//! written with the `calls!` macro below: its class, its name, whether it
//! has an `Async.` form, its parameters (name and type, after the session)
//! and the [`Action`] it becomes. Everything else is derived from that row:
//! [`lookup`] and [`lookup_async`], the parameter count checked
//! (`MESSAGE_PARAMETER_COUNT_MISMATCH`, counted with the session as XAPI
//! counts them), the decoding of each parameter (`FIELD_TYPE_ERROR` naming
//! the parameter), and `system.listMethods` ([`all_methods`]). The one
//! family not written as rows is `<Class>.get_<field>`, derived from the
//! fields of [`model`].
//!
//! Parsing never touches VM state (Firecracker's rule): whether an action
//! is legal is the toolstack's decision. [`reply_to_value`] turns the
//! toolstack's typed reply back into XenAPI's value shape.
//!
//! Sessions, `system.*` and the calls the server composes from others
//! (`VM.get_allowed_VIF_devices`) are not here: the server answers them.
//!
//! # Adding a call
//!
//! 1. In the toolstack: an [`Action`] variant (`windsor_toolstack::action`)
//!    and the engine's handling of it.
//! 2. Here: one row in `calls!`, e.g.
//!    ```text
//!    [VIF] async plug(vif: Ref) => Action::VifPlug { vif };
//!    ```
//!    * the scope: a class (`[VM]`, `[SR]`, `[task]`: the name as XenAPI
//!      spells it), a class-less namespace (`[event]`, `[xenstore]`), or
//!      `[every pred]` for a call every class has where `pred(class)`
//!      holds (such rows may use `class`, the class called);
//!    * `sync` or `async` (`async`: `Async.<Class>.<name>` exists too, as
//!      XAPI has for everything but getters and `event.*`);
//!    * the parameters after the session, in order, each decoded by its
//!      type's [`Param`] impl (`Ref`, `String`, `bool`, `i64`, [`Map`],
//!      `Vec<String>`, [`Value`] as given, [`Seconds`], [`Token`]); a name
//!      starting with `_` is checked and ignored (XenAPI's `host` of
//!      `VM.start_on`), `r#type` is reported as `type`;
//!    * the action, an expression over the parameters (`?` works), or a
//!      [`Parsed`] when the reply needs another [`Shape`].
//!
//! A call on a new class also needs the class (`Class`, in the toolstack)
//! and its fields in [`model`].
//!
//! # The `xenstore` class
//!
//! Windsor's extension (XAPI has none). Values are strings; a node whose
//! value is not UTF-8 is refused (`XENSTORE_VALUE_NOT_UTF8`), never
//! altered.
//!
//! | call | returns |
//! |---|---|
//! | `xenstore.read(session, path)` | the value |
//! | `xenstore.write(session, path, value)` | `""` |
//! | `xenstore.directory(session, path)` | the children's names |
//! | `xenstore.rm(session, path)` | `""` |
//! | `xenstore.watch(session, path, timeout, cursor)` | `{events: [paths], cursor}` |
//! | `xenstore.unwatch(session, cursor)` | `""` |
//!
//! `watch` with cursor `""` opens a watcher (it fires once with `path`,
//! as xenstored does); passing the returned cursor back acknowledges the
//! events it covers and waits up to `timeout` seconds (at most
//! [`MAX_EVENT_TIMEOUT`]) for more, so nothing is lost between calls and
//! an old cursor replays what it did not acknowledge. Bounds (the
//! toolstack's `xs_calls::WatchLimits`): queued events per watcher, idle
//! expiry, watchers per session and in all; a watcher that overflowed or
//! expired answers `XENSTORE_WATCH_LOST`. The server fills in the watch's
//! owner (an id of the session).

#[allow(unused_imports)]
use crate::prelude::*;

use core::time::Duration;

use windsor_toolstack::action::{
    Action, EventBatch, Map, NetworkRecord, NewRecord, Record, Ref, Reply, SrSpec, VbdRecord,
    VdiRecord, VifRecord, VmRecord,
};

use crate::error::{codes, ApiError};
use crate::jsonrpc::{from_json, to_json};
use crate::model::{self, Class, RecordError, Ty};
use crate::value::Value;

/// Longest `event.from` wait a client may ask for.
pub const MAX_EVENT_TIMEOUT: Duration = Duration::from_secs(600);

/// The call table (see the module doc for how to add a row).
///
/// Rows are looked up in order; no two rows give the same
/// `<Class>.<name>` (a unit test checks it).
macro_rules! calls {
    (
        $class:ident;
        $( [$($scope:tt)+] $mode:ident $name:ident ( $($p:ident : $t:ty),* $(,)? ) => $body:expr ; )*
    ) => {
        /// Every call of the table, in the order [`lookup`] tries them.
        pub static CALLS: &[Row] = &[
            $( Row {
                scope: calls!(@scope $($scope)+),
                name: stringify!($name),
                params: &[$(stringify!($p)),*],
                has_async: calls!(@mode $mode),
                build: calls!(@build [$($scope)+] $class ($($p : $t),*) $body),
            }, )*
        ];
    };
    (@scope every $pred:path) => { Scope::Every($pred) };
    (@scope $c:ident) => { Scope::Named(stringify!($c)) };
    (@mode sync) => { false };
    (@mode async) => { true };
    (@build [every $pred:path] $class:ident ($($p:ident : $t:ty),*) $body:expr) => {
        Build::Generic(|$class: Class, args: &[Value]| {
            #[allow(unused_mut, unused_variables)]
            let mut args = args.iter();
            $( let $p: $t = decode(args.next(), stringify!($p))?; )*
            Ok(Parsed::from($body))
        })
    };
    (@build [$c:ident] $class:ident ($($p:ident : $t:ty),*) $body:expr) => {
        Build::Fixed(|args: &[Value]| {
            #[allow(unused_mut, unused_variables)]
            let mut args = args.iter();
            $( let $p: $t = decode(args.next(), stringify!($p))?; )*
            Ok(Parsed::from($body))
        })
    };
}

calls! {
    class;

    // Every class.
    [every any_class] sync get_all() => Action::GetAll { class };
    [every any_class] sync get_all_records() => Action::GetAllRecords { class };
    [every any_class] sync get_record(r#ref: Ref) => Action::GetRecord { class, r: r#ref };
    [every any_class] sync get_by_uuid(uuid: String) => Action::GetByUuid { class, uuid };
    [every any_class] async set_other_config(r#ref: Ref, value: Map) =>
        Action::SetOtherConfig { class, r: r#ref, value };
    [every any_class] async add_to_other_config(r#ref: Ref, key: String, value: String) =>
        Action::AddToOtherConfig { class, r: r#ref, key, value };
    [every any_class] async remove_from_other_config(r#ref: Ref, key: String) =>
        Action::RemoveFromOtherConfig { class, r: r#ref, key };
    [every model::has_name_label] sync get_by_name_label(label: String) =>
        Action::GetByNameLabel { class, label };
    [every renamable] async set_name_label(r#ref: Ref, value: String) =>
        Action::SetNameLabel { class, r: r#ref, value };
    [every renamable] async set_name_description(r#ref: Ref, value: String) =>
        Action::SetNameDescription { class, r: r#ref, value };
    [every model::creatable] async create(record: Value) =>
        Action::Create(new_record(class, &record)?);
    [every destroyable] async destroy(r#ref: Ref) => Action::Destroy { class, r: r#ref };

    // VM.
    [VM] async clone(vm: Ref, new_name: String) => Action::VmClone { vm, new_name };
    [VM] async copy(vm: Ref, new_name: String, _sr: Ref) => Action::VmClone { vm, new_name };
    [VM] async provision(vm: Ref) => Action::VmProvision { vm };
    [VM] async start(vm: Ref, start_paused: bool, force: bool) =>
        Action::VmStart { vm, start_paused, force };
    [VM] async start_on(vm: Ref, _host: Ref, start_paused: bool, force: bool) =>
        Action::VmStart { vm, start_paused, force };
    [VM] async pause(vm: Ref) => Action::VmPause { vm };
    [VM] async unpause(vm: Ref) => Action::VmUnpause { vm };
    [VM] async clean_shutdown(vm: Ref) => Action::VmCleanShutdown { vm };
    [VM] async hard_shutdown(vm: Ref) => Action::VmHardShutdown { vm };
    [VM] async shutdown(vm: Ref) => Action::VmShutdown { vm };
    [VM] async clean_reboot(vm: Ref) => Action::VmCleanReboot { vm };
    [VM] async hard_reboot(vm: Ref) => Action::VmHardReboot { vm };
    [VM] async suspend(vm: Ref) => Action::VmSuspend { vm };
    [VM] async resume(vm: Ref, start_paused: bool, force: bool) =>
        Action::VmResume { vm, start_paused, force };
    [VM] async resume_on(vm: Ref, _host: Ref, start_paused: bool, force: bool) =>
        Action::VmResume { vm, start_paused, force };
    [VM] async set_memory_limits(
        vm: Ref, static_min: i64, static_max: i64, dynamic_min: i64, dynamic_max: i64,
    ) => Action::VmSetMemoryLimits { vm, static_min, static_max, dynamic_min, dynamic_max };
    [VM] async set_memory(vm: Ref, value: i64) => Action::VmSetMemory { vm, value };
    [VM] async set_VCPUs_max(vm: Ref, value: i64) => Action::VmSetVcpusMax { vm, value };
    [VM] async set_VCPUs_at_startup(vm: Ref, value: i64) =>
        Action::VmSetVcpusAtStartup { vm, value };

    // SR and PBD.
    [SR] async create(
        host: Ref, device_config: Map, physical_size: i64, name_label: String,
        name_description: String, r#type: String, content_type: String, shared: bool,
        sm_config: Map,
    ) => Action::SrCreate {
        host,
        device_config,
        spec: SrSpec {
            uuid: String::new(),
            physical_size,
            name_label,
            name_description,
            ty: r#type,
            content_type,
            shared,
            sm_config,
        },
    };
    [SR] async introduce(
        uuid: String, name_label: String, name_description: String, r#type: String,
        content_type: String, shared: bool, sm_config: Map,
    ) => Action::SrIntroduce {
        spec: SrSpec {
            uuid,
            name_label,
            name_description,
            ty: r#type,
            content_type,
            shared,
            sm_config,
            physical_size: -1,
        },
    };
    [SR] async forget(sr: Ref) => Action::SrForget { sr };
    [PBD] async plug(pbd: Ref) => Action::PbdPlug { pbd };
    [PBD] async unplug(pbd: Ref) => Action::PbdUnplug { pbd };

    // Tasks (`Async.*` creates them too: see the server).
    [task] async create(label: String, description: String) =>
        Action::TaskCreate { label, description };
    [task] async cancel(task: Ref) => Action::TaskCancel { task };

    // Events.
    [event] sync from(classes: Vec<String>, token: Token, timeout: Seconds) =>
        Action::EventFrom { classes, token: token.0, timeout: timeout.0 };
    // XAPI makes a fresh event on the object and returns its token;
    // clients use the token only as a starting point, so the current token
    // (what `event.from` from the start answers) serves.
    [event] sync inject(class: String, r#ref: Ref) => Parsed {
        action: Action::EventFrom {
            classes: vec![format!("{class}/{}", r#ref)],
            token: 0,
            timeout: Duration::ZERO,
        },
        shape: Shape::Token,
    };

    // Windsor's `xenstore` class (see the module doc).
    [xenstore] sync read(path: String) => Action::XsRead { path };
    [xenstore] sync write(path: String, value: String) => Action::XsWrite { path, value };
    [xenstore] sync directory(path: String) => Action::XsDirectory { path };
    [xenstore] sync rm(path: String) => Action::XsRm { path };
    [xenstore] sync watch(path: String, timeout: Seconds, cursor: String) =>
        Action::XsWatch { owner: String::new(), path, timeout: timeout.0, cursor };
    [xenstore] sync unwatch(cursor: String) => Action::XsUnwatch { owner: String::new(), cursor };
}

/// The namespaces of rows that are not a class.
pub const NAMESPACES: &[&str] = &["event", "xenstore"];

fn any_class(_: Class) -> bool {
    true
}

/// Whether `set_name_label`/`set_name_description` exist (not for tasks).
fn renamable(class: Class) -> bool {
    model::has_name_label(class) && model::field(class, "name_label").is_some_and(|f| f.writable)
}

/// Whether `destroy(ref)` exists: what `create(record)` makes, SRs and
/// tasks.
fn destroyable(class: Class) -> bool {
    model::creatable(class) || matches!(class, Class::Sr | Class::Task)
}

/// One row of [`CALLS`].
#[derive(Debug)]
pub struct Row {
    /// Where the call is.
    pub scope: Scope,
    /// Its name after the class (`start`).
    pub name: &'static str,
    /// Its parameters after the session, as written in the table.
    pub params: &'static [&'static str],
    /// Whether `Async.<Class>.<name>` exists.
    pub has_async: bool,
    build: Build,
}

/// Where a row's call is.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// One class (its XenAPI name) or namespace ([`NAMESPACES`]).
    Named(&'static str),
    /// Every class for which the predicate holds.
    Every(fn(Class) -> bool),
}

#[derive(Debug, Clone, Copy)]
enum Build {
    Generic(fn(Class, &[Value]) -> Result<Parsed, ApiError>),
    Fixed(fn(&[Value]) -> Result<Parsed, ApiError>),
}

impl Row {
    /// Whether the row's call exists on `scope` (a class or namespace name).
    fn on(&self, scope: &str, class: Option<Class>) -> bool {
        match self.scope {
            Scope::Named(n) => n == scope,
            Scope::Every(pred) => class.is_some_and(pred),
        }
    }
}

/// The parameter name a table row reports (`_host` → `host`, `r#type` →
/// `type`).
fn param_name(p: &'static str) -> &'static str {
    p.trim_start_matches("r#").trim_start_matches('_')
}

/// A parameter type of the table: how one argument is decoded.
pub trait Param: Sized {
    /// Decodes `v`, the parameter `name`: `FIELD_TYPE_ERROR(name)` if it
    /// has the wrong type.
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError>;
}

fn decode<T: Param>(v: Option<&Value>, name: &'static str) -> Result<T, ApiError> {
    let name = param_name(name);
    let v = v.ok_or_else(|| ApiError::internal(format!("missing parameter {name}")))?;
    T::decode(v, name)
}

/// `FIELD_TYPE_ERROR(name)` unless `v` is something.
fn typed<T>(v: Option<T>, name: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::field_type(name))
}

impl Param for String {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        typed(v.as_str().map(str::to_owned), name)
    }
}

impl Param for bool {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        typed(v.as_bool(), name)
    }
}

impl Param for i64 {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        typed(v.as_int(), name)
    }
}

/// A map of strings (`other_config`, `device_config`).
impl Param for Map {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        typed(v.as_struct(), name)?
            .iter()
            .map(|(k, v)| Ok((k.clone(), String::decode(v, name)?)))
            .collect()
    }
}

/// A set of strings.
impl Param for Vec<String> {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        typed(v.as_array(), name)?
            .iter()
            .map(|v| String::decode(v, name))
            .collect()
    }
}

/// The value as given (a record for `create`, checked by the row).
impl Param for Value {
    fn decode(v: &Value, _: &str) -> Result<Self, ApiError> {
        Ok(v.clone())
    }
}

/// A wait in seconds (a double, or an int), capped at
/// [`MAX_EVENT_TIMEOUT`]; negative or not finite is zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl Param for Seconds {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        let secs = typed(v.as_double().or_else(|| v.as_int().map(|i| i as f64)), name)?;
        Ok(Seconds(if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs.min(MAX_EVENT_TIMEOUT.as_secs_f64()))
        } else {
            Duration::ZERO
        }))
    }
}

/// An `event.from` token ([`parse_token`]): a string, and
/// `EVENT_FROM_TOKEN_PARSE_FAILURE` if it is not a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Token(pub u64);

impl Param for Token {
    fn decode(v: &Value, name: &str) -> Result<Self, ApiError> {
        parse_token(&String::decode(v, name)?).map(Token)
    }
}

/// A method found in the table: a row, or a field getter.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// The class, or `None` for a namespace (`event`, `xenstore`).
    pub class: Option<Class>,
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Row(&'static Row),
    /// `get_<field>`.
    Field(&'static str),
}

impl Method {
    /// Parameters after the session.
    pub fn arity(&self) -> usize {
        match self.target {
            Target::Row(row) => row.params.len(),
            Target::Field(_) => 1,
        }
    }

    /// Whether `Async.<Class>.<method>` exists.
    pub fn has_async(&self) -> bool {
        match self.target {
            Target::Row(row) => row.has_async,
            Target::Field(_) => false,
        }
    }

    /// The row of the table, if the method is not a field getter.
    pub fn row(&self) -> Option<&'static Row> {
        match self.target {
            Target::Row(row) => Some(row),
            Target::Field(_) => None,
        }
    }
}

/// The prefix of asynchronous calls (`Async.VM.start`).
pub const ASYNC: &str = "Async.";

/// Finds the method an `Async.<Class>.<method>` name runs; `None` if the
/// name is not one (or the method has no asynchronous form).
pub fn lookup_async(method: &str) -> Option<Method> {
    lookup(method.strip_prefix(ASYNC)?).filter(Method::has_async)
}

fn class_named(name: &str) -> Option<Class> {
    Class::ALL.into_iter().find(|c| c.name() == name)
}

/// Finds a method by its full name (`VM.start`); `None` if unknown.
/// Session and `system.*` methods are not in this table.
pub fn lookup(method: &str) -> Option<Method> {
    let (scope, op) = method.split_once('.')?;
    let class = class_named(scope);
    if class.is_none() && !NAMESPACES.contains(&scope) {
        return None;
    }
    if let Some(row) = CALLS.iter().find(|r| r.name == op && r.on(scope, class)) {
        return Some(Method {
            class,
            target: Target::Row(row),
        });
    }
    let class = class?;
    let field = model::field(class, op.strip_prefix("get_")?)?;
    Some(Method {
        class: Some(class),
        target: Target::Field(field.name),
    })
}

/// Every method of the table, for `system.listMethods`.
pub fn all_methods() -> Vec<String> {
    let mut out = Vec::new();
    for class in Class::ALL {
        let n = class.name();
        for row in CALLS.iter().filter(|r| r.on(n, Some(class))) {
            out.push(format!("{n}.{}", row.name));
        }
        for f in model::fields(class) {
            out.push(format!("{n}.get_{}", f.name));
        }
    }
    let asyncs: Vec<String> = out
        .iter()
        .filter(|m| lookup(m).is_some_and(|m| m.has_async()))
        .map(|m| format!("{ASYNC}{m}"))
        .collect();
    out.extend(asyncs);
    for ns in NAMESPACES {
        for row in CALLS.iter().filter(|r| r.on(ns, None)) {
            out.push(format!("{ns}.{}", row.name));
        }
    }
    out
}

/// A parsed call: the action, and how to shape its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// What the toolstack is asked to do.
    pub action: Action,
    /// How the reply becomes a XenAPI value.
    pub shape: Shape,
}

impl From<Action> for Parsed {
    fn from(action: Action) -> Parsed {
        Parsed {
            action,
            shape: Shape::Plain,
        }
    }
}

/// How a reply is turned into the XenAPI value the method returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// As is ([`reply_to_value`]).
    Plain,
    /// One field of the returned record (`get_<field>`).
    Field(Class, &'static str),
    /// Only the token of an event batch (`event.inject`).
    Token,
}

/// Parses an `event.from` token: `""` is the start, otherwise a decimal
/// counter (`EVENT_FROM_TOKEN_PARSE_FAILURE` else).
pub fn parse_token(token: &str) -> Result<u64, ApiError> {
    let t = token.trim();
    if t.is_empty() {
        return Ok(0);
    }
    t.parse()
        .map_err(|_| ApiError::new(codes::EVENT_FROM_TOKEN_PARSE_FAILURE, [token]))
}

/// Formats an event token for the wire.
pub fn format_token(token: u64) -> String {
    format!("{token:020}")
}

fn new_record(class: Class, given: &Value) -> Result<NewRecord, ApiError> {
    let fields = model::coerce_for_create(class, given).map_err(|e| match e {
        RecordError::FieldType(f) => ApiError::field_type(&f),
        RecordError::NotAStruct => ApiError::field_type("record"),
    })?;
    let json = to_json(&Value::Struct(fields));
    let bad = |e: serde_json::Error| ApiError::field_type(&format!("record: {e}"));
    Ok(match class {
        Class::Vm => NewRecord::Vm(serde_json::from_value::<VmRecord>(json).map_err(bad)?),
        Class::Network => {
            NewRecord::Network(serde_json::from_value::<NetworkRecord>(json).map_err(bad)?)
        }
        Class::Vdi => NewRecord::Vdi(serde_json::from_value::<VdiRecord>(json).map_err(bad)?),
        Class::Vif => NewRecord::Vif(serde_json::from_value::<VifRecord>(json).map_err(bad)?),
        Class::Vbd => NewRecord::Vbd(serde_json::from_value::<VbdRecord>(json).map_err(bad)?),
        other => {
            return Err(ApiError::new(
                codes::MESSAGE_METHOD_UNKNOWN,
                [format!("{}.create", other.name())],
            ))
        }
    })
}

/// Builds the action of `method` from its arguments (the session already
/// removed, count already checked against [`Method::arity`]).
pub fn build(method: Method, args: &[Value]) -> Result<Parsed, ApiError> {
    debug_assert_eq!(args.len(), method.arity());
    match method.target {
        Target::Row(row) => match (row.build, method.class) {
            (Build::Fixed(f), _) => f(args),
            (Build::Generic(f), Some(class)) => f(class, args),
            (Build::Generic(_), None) => Err(ApiError::internal("a class call without a class")),
        },
        Target::Field(f) => {
            let class = method
                .class
                .ok_or_else(|| ApiError::internal("a field without a class"))?;
            Ok(Parsed {
                action: Action::GetRecord {
                    class,
                    r: decode(args.first(), "ref")?,
                },
                shape: Shape::Field(class, f),
            })
        }
    }
}

/// A record as a XenAPI struct, completed with XAPI's defaults.
pub fn record_to_value(record: &Record) -> Value {
    model::complete_record(record.class(), from_json(&record.to_value()))
}

fn events_to_value(batch: &EventBatch) -> Value {
    let events = batch
        .events
        .iter()
        .map(|e| {
            let mut m = BTreeMap::new();
            m.insert("id".to_owned(), Value::Int(e.id as i64));
            m.insert("timestamp".to_owned(), Value::str(format_token(e.id)));
            m.insert("class".to_owned(), Value::str(e.class.event_name()));
            m.insert("operation".to_owned(), Value::str(e.operation.as_str()));
            m.insert("ref".to_owned(), Value::str(e.r.clone()));
            if let Some(s) = &e.snapshot {
                m.insert("snapshot".to_owned(), record_to_value(s));
            }
            Value::Struct(m)
        })
        .collect();
    Value::record([
        ("events", Value::Array(events)),
        // XAPI counts live refs per class here; the toolstack does not
        // report them, and an absent count is what clients tolerate.
        ("valid_ref_counts", Value::empty_map()),
        ("token", Value::str(format_token(batch.token))),
    ])
}

/// Turns the toolstack's reply into the value the method returns.
pub fn reply_to_value(reply: &Reply, shape: &Shape) -> Result<Value, ApiError> {
    match (shape, reply) {
        (Shape::Field(class, f), Reply::Record(rec)) => {
            let v = record_to_value(rec);
            let ty = model::field(*class, f).map(|f| f.ty).unwrap_or(Ty::String);
            Ok(v.get(f).cloned().unwrap_or_else(|| ty.default_value()))
        }
        (Shape::Token, Reply::Events(b)) => Ok(Value::str(format_token(b.token))),
        (Shape::Plain, _) => Ok(match reply {
            Reply::Unit => Value::str(""),
            Reply::Ref(r) => Value::str(r.clone()),
            Reply::Refs(rs) => Value::strings(rs.iter().cloned()),
            Reply::Record(rec) => record_to_value(rec),
            Reply::Records(rs) => Value::Struct(
                rs.iter()
                    .map(|(r, rec)| (r.clone(), record_to_value(rec)))
                    .collect(),
            ),
            Reply::Events(b) => events_to_value(b),
            Reply::Str(v) => Value::str(v.clone()),
            Reply::Strings(v) => Value::strings(v.iter().cloned()),
            Reply::XsWatch(b) => Value::record([
                ("events", Value::strings(b.events.iter().cloned())),
                ("cursor", Value::str(b.cursor.clone())),
            ]),
        }),
        _ => Err(ApiError::internal(
            "the toolstack answered with the wrong kind of reply",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use windsor_toolstack::action::PowerState;

    fn parse(method: &str, args: &[Value]) -> Result<Parsed, ApiError> {
        let m = lookup(method).ok_or_else(|| ApiError::method_unknown(method))?;
        build(m, args)
    }

    /// What a method is: its row's name, or `get_<field>`.
    fn what(method: &str) -> String {
        let m = lookup(method).unwrap_or_else(|| panic!("{method} unknown"));
        match m.row() {
            Some(row) => format!("{}/{}", row.name, m.arity()),
            None => format!("field/{}", m.arity()),
        }
    }

    #[test]
    fn lookup_knows_the_table() {
        assert_eq!(what("VM.start"), "start/3");
        assert_eq!(what("host.get_API_version_major"), "field/1");
        assert_eq!(what("pool.get_master"), "field/1");
        assert!(lookup("host.create").is_none());
        assert!(lookup("host.start").is_none());
        assert!(lookup("pool.get_by_name_label").is_none());
        assert!(
            lookup("vm.start").is_none(),
            "class names are case-sensitive"
        );
        assert!(lookup("VM.get_bogus").is_none());
        assert!(lookup("nothing").is_none());
        assert!(lookup("event.bogus").is_none());
        assert!(
            lookup("xenstore.get_all").is_none(),
            "namespaces have no class calls"
        );
        assert_eq!(what("event.from"), "from/3");
        let all = all_methods();
        assert!(all.contains(&"VM.get_all_records".to_owned()));
        for m in &all {
            assert!(lookup(m).or_else(|| lookup_async(m)).is_some(), "{m}");
        }
        assert!(all.contains(&"Async.VM.start".to_owned()));
        assert!(all.contains(&"SR.introduce".to_owned()));
        assert!(all.contains(&"xenstore.watch".to_owned()));
        assert!(!all.contains(&"Async.VM.get_record".to_owned()));
        assert!(!all.contains(&"Async.event.from".to_owned()));
        assert_eq!(what("SR.create"), "create/9");
        assert_eq!(what("VM.create"), "create/1");
        assert_eq!(what("SR.introduce"), "introduce/7");
        assert_eq!(what("SR.destroy"), "destroy/1");
        assert_eq!(what("SR.get_VDIs"), "field/1");
        assert_eq!(what("pool.get_default_SR"), "field/1");
        assert_eq!(what("PBD.plug"), "plug/1");
        assert_eq!(what("task.cancel"), "cancel/1");
        assert_eq!(what("task.get_result"), "field/1");
        assert_eq!(what("VM.set_memory_limits"), "set_memory_limits/5");
        assert!(
            lookup("task.set_name_label").is_none(),
            "task names are read-only"
        );
        assert!(lookup("PBD.create").is_none());
        assert!(lookup_async("Async.VM.start").is_some());
        assert!(lookup_async("Async.VM.get_record").is_none());
        assert!(lookup_async("VM.start").is_none());
    }

    /// The table is well formed: scopes name a class or a namespace, no
    /// method is listed twice, and every row checks its parameters' types
    /// in order, naming the first wrong one.
    #[test]
    fn table_is_consistent() {
        for row in CALLS {
            if let Scope::Named(n) = row.scope {
                assert!(
                    class_named(n).is_some() || NAMESPACES.contains(&n),
                    "{n}.{}: no such class",
                    row.name
                );
            }
        }
        let all = all_methods();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a method is listed twice");
        for name in &all {
            let m = lookup(name).or_else(|| lookup_async(name)).unwrap();
            let Some(row) = m.row() else { continue };
            // Nil is no parameter type but `Value`'s: the first typed
            // parameter is the one reported.
            let nil = vec![Value::Nil; m.arity()];
            match build(m, &nil) {
                Err(e) => {
                    let first = row.params.iter().map(|p| param_name(p)).next();
                    assert_eq!(e.code, codes::FIELD_TYPE_ERROR, "{name}: {e:?}");
                    assert_eq!(e.params.first().map(String::as_str), first, "{name}");
                }
                Ok(p) => assert!(row.params.is_empty(), "{name} took nil: {p:?}"),
            }
        }
    }

    #[test]
    fn builds_actions() {
        let p = parse(
            "VM.start",
            &[
                Value::str("OpaqueRef:v"),
                Value::Bool(true),
                Value::Bool(false),
            ],
        )
        .unwrap();
        assert_eq!(
            p.action,
            Action::VmStart {
                vm: "OpaqueRef:v".into(),
                start_paused: true,
                force: false
            }
        );
        let p = parse(
            "VM.create",
            &[Value::record([
                ("name_label", Value::str("a")),
                ("PV_kernel", Value::str("fuzz-target")),
                ("memory_static_max", Value::str("134217728")),
                ("power_state", Value::str("Running")),
            ])],
        )
        .unwrap();
        let Action::Create(NewRecord::Vm(vm)) = p.action else {
            panic!("{p:?}")
        };
        assert_eq!(vm.name_label, "a");
        assert_eq!(vm.memory_static_max, 128 << 20);
        assert_eq!(vm.power_state, PowerState::Halted);
        let e = parse(
            "VM.create",
            &[Value::record([("VCPUs_max", Value::str("x"))])],
        )
        .unwrap_err();
        assert_eq!(e, ApiError::field_type("VCPUs_max"));
        let e = parse(
            "VM.start",
            &[Value::str("r"), Value::str("maybe"), Value::Bool(false)],
        )
        .unwrap_err();
        assert_eq!(e, ApiError::field_type("start_paused"));
        let p = parse(
            "event.from",
            &[Value::strings(["vm"]), Value::str(""), Value::Double(1e9)],
        )
        .unwrap();
        assert_eq!(
            p.action,
            Action::EventFrom {
                classes: vec!["vm".into()],
                token: 0,
                timeout: MAX_EVENT_TIMEOUT
            }
        );
        let e = parse(
            "event.from",
            &[Value::strings(["vm"]), Value::str("x1"), Value::Int(1)],
        )
        .unwrap_err();
        assert_eq!(e.code, codes::EVENT_FROM_TOKEN_PARSE_FAILURE);
    }

    #[test]
    fn replies_take_xapi_shape() {
        let rec = Record::Vm(VmRecord {
            uuid: "u".into(),
            ..VmRecord::default()
        });
        let v = reply_to_value(&Reply::Record(rec.clone()), &Shape::Plain).unwrap();
        assert_eq!(v.get("power_state"), Some(&Value::str("Halted")));
        assert_eq!(v.get("VCPUs_max"), Some(&Value::Int(1)));
        assert_eq!(v.get("consoles"), Some(&Value::Array(vec![])), "completed");
        let f = reply_to_value(&Reply::Record(rec), &Shape::Field(Class::Vm, "uuid")).unwrap();
        assert_eq!(f, Value::str("u"));
        assert_eq!(
            reply_to_value(&Reply::Unit, &Shape::Plain).unwrap(),
            Value::str("")
        );
        assert!(reply_to_value(&Reply::Unit, &Shape::Token).is_err());
        assert_eq!(format_token(42), "00000000000000000042");
        assert_eq!(parse_token(&format_token(42)).unwrap(), 42);
    }
}
