//! The call table: XenAPI method names and parameters → the toolstack's
//! [`Action`].
//!
//! Parsing never touches VM state (Firecracker's rule): it checks the
//! method exists ([`lookup`] → `MESSAGE_METHOD_UNKNOWN`), the parameter
//! count (`MESSAGE_PARAMETER_COUNT_MISMATCH`, counted with the session as
//! XAPI counts them) and the parameter types (`FIELD_TYPE_ERROR`), then
//! builds one [`Action`]. Whether the action is legal is the toolstack's
//! decision. [`reply_to_value`] turns the toolstack's typed reply back into
//! XenAPI's value shape.
//!
//! Sessions and `system.*` are not here: the server answers them itself.

#[allow(unused_imports)]
use crate::prelude::*;

use core::time::Duration;

use windsor_toolstack::action::{
    Action, EventBatch, Map, NetworkRecord, NewRecord, Record, Reply, SrSpec, VbdRecord, VdiRecord,
    VifRecord, VmRecord,
};

use crate::error::{codes, ApiError};
use crate::jsonrpc::{from_json, to_json};
use crate::model::{self, Class, RecordError, Ty};
use crate::value::Value;

/// Longest `event.from` wait a client may ask for.
pub const MAX_EVENT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a method does, before its arguments are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `get_all`.
    GetAll,
    /// `get_all_records`.
    GetAllRecords,
    /// `get_record`.
    GetRecord,
    /// `get_by_uuid`.
    GetByUuid,
    /// `get_by_name_label`.
    GetByNameLabel,
    /// `get_<field>`.
    GetField(&'static str),
    /// `set_name_label`.
    SetNameLabel,
    /// `set_name_description`.
    SetNameDescription,
    /// `set_other_config`.
    SetOtherConfig,
    /// `add_to_other_config`.
    AddToOtherConfig,
    /// `remove_from_other_config`.
    RemoveFromOtherConfig,
    /// `create`.
    Create,
    /// `destroy`.
    Destroy,
    /// `VM.clone`.
    VmClone,
    /// `VM.copy`.
    VmCopy,
    /// `VM.provision`.
    VmProvision,
    /// `VM.start`.
    VmStart,
    /// `VM.start_on`.
    VmStartOn,
    /// `VM.pause`.
    VmPause,
    /// `VM.unpause`.
    VmUnpause,
    /// `VM.clean_shutdown`.
    VmCleanShutdown,
    /// `VM.hard_shutdown`.
    VmHardShutdown,
    /// `VM.shutdown`.
    VmShutdown,
    /// `VM.clean_reboot`.
    VmCleanReboot,
    /// `VM.hard_reboot`.
    VmHardReboot,
    /// `VM.suspend`.
    VmSuspend,
    /// `VM.resume`.
    VmResume,
    /// `VM.resume_on`.
    VmResumeOn,
    /// `VM.set_memory_limits`.
    VmSetMemoryLimits,
    /// `VM.set_memory`.
    VmSetMemory,
    /// `VM.set_VCPUs_max`.
    VmSetVcpusMax,
    /// `VM.set_VCPUs_at_startup`.
    VmSetVcpusAtStartup,
    /// `SR.create`.
    SrCreate,
    /// `SR.introduce`.
    SrIntroduce,
    /// `SR.forget`.
    SrForget,
    /// `PBD.plug`.
    PbdPlug,
    /// `PBD.unplug`.
    PbdUnplug,
    /// `VM.add_to_xenstore_data`.
    VmAddToXenstoreData,
    /// `VM.remove_from_xenstore_data`.
    VmRemoveFromXenstoreData,
    /// `VIF.plug` / `VBD.plug`.
    DevicePlug,
    /// `VIF.unplug` / `VBD.unplug`.
    DeviceUnplug,
    /// `task.create`.
    TaskCreate,
    /// `task.cancel`.
    TaskCancel,
    /// `event.from`.
    EventFrom,
    /// `event.inject`.
    EventInject,
    /// `xenstore.read` (Windsor extension).
    XsRead,
    /// `xenstore.write`.
    XsWrite,
    /// `xenstore.directory`.
    XsDirectory,
    /// `xenstore.rm`.
    XsRm,
    /// `xenstore.watch`.
    XsWatch,
    /// `xenstore.unwatch`.
    XsUnwatch,
}

/// A method of the table: its class (none for `event.*`) and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// The class, or `None` for `event`.
    pub class: Option<Class>,
    /// What it does.
    pub kind: Kind,
}

impl Kind {
    /// Parameters after the session.
    pub fn arity(self) -> usize {
        use Kind::*;
        match self {
            GetAll | GetAllRecords => 0,
            GetRecord | GetByUuid | GetByNameLabel | GetField(_) | Create | Destroy
            | VmProvision | VmPause | VmUnpause | VmCleanShutdown | VmHardShutdown | VmShutdown
            | VmCleanReboot | VmHardReboot | VmSuspend | SrForget | PbdPlug | PbdUnplug
            | DevicePlug | DeviceUnplug | TaskCancel | XsRead | XsDirectory | XsRm | XsUnwatch => 1,
            SetNameLabel
            | SetNameDescription
            | SetOtherConfig
            | RemoveFromOtherConfig
            | VmClone
            | VmSetMemory
            | VmSetVcpusMax
            | VmSetVcpusAtStartup
            | EventInject
            | TaskCreate
            | VmRemoveFromXenstoreData
            | XsWrite => 2,
            AddToOtherConfig | VmAddToXenstoreData | VmCopy | VmStart | VmResume | EventFrom
            | XsWatch => 3,
            VmStartOn | VmResumeOn => 4,
            VmSetMemoryLimits => 5,
            SrIntroduce => 7,
            SrCreate => 9,
        }
    }

    /// Whether `Async.<Class>.<method>` exists: for everything but reads
    /// and `event.*`, as in XAPI (where getters are synchronous only).
    pub fn has_async(self) -> bool {
        use Kind::*;
        !matches!(
            self,
            GetAll
                | GetAllRecords
                | GetRecord
                | GetByUuid
                | GetByNameLabel
                | GetField(_)
                | EventFrom
                | EventInject
                | XsRead
                | XsWrite
                | XsDirectory
                | XsRm
                | XsWatch
                | XsUnwatch
        )
    }
}

const COMMON: &[(&str, Kind)] = &[
    ("get_all", Kind::GetAll),
    ("get_all_records", Kind::GetAllRecords),
    ("get_record", Kind::GetRecord),
    ("get_by_uuid", Kind::GetByUuid),
    ("set_other_config", Kind::SetOtherConfig),
    ("add_to_other_config", Kind::AddToOtherConfig),
    ("remove_from_other_config", Kind::RemoveFromOtherConfig),
];

const NAMED: &[(&str, Kind)] = &[
    ("get_by_name_label", Kind::GetByNameLabel),
    ("set_name_label", Kind::SetNameLabel),
    ("set_name_description", Kind::SetNameDescription),
];

const VM_ONLY: &[(&str, Kind)] = &[
    ("clone", Kind::VmClone),
    ("copy", Kind::VmCopy),
    ("provision", Kind::VmProvision),
    ("start", Kind::VmStart),
    ("start_on", Kind::VmStartOn),
    ("pause", Kind::VmPause),
    ("unpause", Kind::VmUnpause),
    ("clean_shutdown", Kind::VmCleanShutdown),
    ("hard_shutdown", Kind::VmHardShutdown),
    ("shutdown", Kind::VmShutdown),
    ("clean_reboot", Kind::VmCleanReboot),
    ("hard_reboot", Kind::VmHardReboot),
    ("suspend", Kind::VmSuspend),
    ("resume", Kind::VmResume),
    ("resume_on", Kind::VmResumeOn),
    ("set_memory_limits", Kind::VmSetMemoryLimits),
    ("set_memory", Kind::VmSetMemory),
    ("set_VCPUs_max", Kind::VmSetVcpusMax),
    ("set_VCPUs_at_startup", Kind::VmSetVcpusAtStartup),
    ("add_to_xenstore_data", Kind::VmAddToXenstoreData),
    ("remove_from_xenstore_data", Kind::VmRemoveFromXenstoreData),
];

const SR_ONLY: &[(&str, Kind)] = &[
    ("create", Kind::SrCreate),
    ("introduce", Kind::SrIntroduce),
    ("forget", Kind::SrForget),
    ("destroy", Kind::Destroy),
];

const PBD_ONLY: &[(&str, Kind)] = &[("plug", Kind::PbdPlug), ("unplug", Kind::PbdUnplug)];

/// `VIF` and `VBD`: hot-plug into a running VM.
const DEVICE_ONLY: &[(&str, Kind)] = &[("plug", Kind::DevicePlug), ("unplug", Kind::DeviceUnplug)];

const TASK_ONLY: &[(&str, Kind)] = &[
    ("create", Kind::TaskCreate),
    ("cancel", Kind::TaskCancel),
    ("destroy", Kind::Destroy),
];

/// The `xenstore` class: Windsor's extension (XAPI has none). Values are
/// strings; a node whose value is not UTF-8 is refused
/// (`XENSTORE_VALUE_NOT_UTF8`), never altered.
///
/// | call | returns |
/// |---|---|
/// | `xenstore.read(session, path)` | the value |
/// | `xenstore.write(session, path, value)` | `""` |
/// | `xenstore.directory(session, path)` | the children's names |
/// | `xenstore.rm(session, path)` | `""` |
/// | `xenstore.watch(session, path, timeout, cursor)` | `{events: [paths], cursor}` |
/// | `xenstore.unwatch(session, cursor)` | `""` |
///
/// `watch` with cursor `""` opens a watcher (it fires once with `path`,
/// as xenstored does); passing the returned cursor back acknowledges the
/// events it covers and waits up to `timeout` seconds (at most
/// [`MAX_EVENT_TIMEOUT`]) for more, so nothing is lost between calls and
/// an old cursor replays what it did not acknowledge. Bounds (the
/// toolstack's `xs_calls::WatchLimits`): queued events per watcher, idle
/// expiry, watchers per session and in all; a watcher that overflowed or
/// expired answers `XENSTORE_WATCH_LOST`.
pub const XENSTORE: &[(&str, Kind)] = &[
    ("read", Kind::XsRead),
    ("write", Kind::XsWrite),
    ("directory", Kind::XsDirectory),
    ("rm", Kind::XsRm),
    ("watch", Kind::XsWatch),
    ("unwatch", Kind::XsUnwatch),
];

/// The methods only `class` has.
fn class_only(class: Class) -> &'static [(&'static str, Kind)] {
    match class {
        Class::Vm => VM_ONLY,
        Class::Sr => SR_ONLY,
        Class::Pbd => PBD_ONLY,
        Class::Vif | Class::Vbd => DEVICE_ONLY,
        Class::Task => TASK_ONLY,
        _ => &[],
    }
}

/// The prefix of asynchronous calls (`Async.VM.start`).
pub const ASYNC: &str = "Async.";

/// Finds the method an `Async.<Class>.<method>` name runs; `None` if the
/// name is not one (or the method has no asynchronous form).
pub fn lookup_async(method: &str) -> Option<Method> {
    lookup(method.strip_prefix(ASYNC)?).filter(|m| m.kind.has_async())
}

/// Whether `set_name_label`/`set_name_description` exist (not for tasks).
fn names_writable(class: Class) -> bool {
    model::field(class, "name_label").is_some_and(|f| f.writable)
}

fn class_named(name: &str) -> Option<Class> {
    Class::ALL.into_iter().find(|c| c.name() == name)
}

/// Finds a method by its full name (`VM.start`); `None` if unknown.
/// Session and `system.*` methods are not in this table.
pub fn lookup(method: &str) -> Option<Method> {
    let (class, op) = method.split_once('.')?;
    if class == "event" {
        let kind = match op {
            "from" => Kind::EventFrom,
            "inject" => Kind::EventInject,
            _ => return None,
        };
        return Some(Method { class: None, kind });
    }
    if class == "xenstore" {
        let kind = XENSTORE.iter().find(|(n, _)| *n == op)?.1;
        return Some(Method { class: None, kind });
    }
    let class = class_named(class)?;
    let found = |table: &[(&str, Kind)]| table.iter().find(|(n, _)| *n == op).map(|(_, k)| *k);
    let kind = found(COMMON)
        .or_else(|| {
            model::has_name_label(class)
                .then(|| found(NAMED))
                .flatten()
                .filter(|k| names_writable(class) || *k == Kind::GetByNameLabel)
        })
        .or_else(|| found(class_only(class)))
        .or_else(|| {
            model::creatable(class)
                .then_some(match op {
                    "create" => Some(Kind::Create),
                    "destroy" => Some(Kind::Destroy),
                    _ => None,
                })
                .flatten()
        })
        .or_else(|| {
            let f = op.strip_prefix("get_")?;
            model::field(class, f).map(|f| Kind::GetField(f.name))
        })?;
    Some(Method {
        class: Some(class),
        kind,
    })
}

/// Every method of the table, for `system.listMethods`.
pub fn all_methods() -> Vec<String> {
    let mut out = Vec::new();
    for class in Class::ALL {
        let n = class.name();
        let mut push = |op: &str| out.push(format!("{n}.{op}"));
        COMMON.iter().for_each(|(op, _)| push(op));
        if model::has_name_label(class) {
            NAMED
                .iter()
                .filter(|(_, k)| names_writable(class) || *k == Kind::GetByNameLabel)
                .for_each(|(op, _)| push(op));
        }
        class_only(class).iter().for_each(|(op, _)| push(op));
        if model::creatable(class) {
            push("create");
            push("destroy");
        }
        for f in model::fields(class) {
            push(&format!("get_{}", f.name));
        }
    }
    let asyncs: Vec<String> = out
        .iter()
        .filter(|m| lookup(m).is_some_and(|m| m.kind.has_async()))
        .map(|m| format!("{ASYNC}{m}"))
        .collect();
    out.extend(asyncs);
    out.push("event.from".into());
    out.push("event.inject".into());
    out.extend(XENSTORE.iter().map(|(op, _)| format!("xenstore.{op}")));
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

fn arg_str(v: &Value, what: &str) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::field_type(what))
}

fn arg_int(v: &Value, what: &str) -> Result<i64, ApiError> {
    v.as_int().ok_or_else(|| ApiError::field_type(what))
}

fn arg_bool(v: &Value, what: &str) -> Result<bool, ApiError> {
    v.as_bool().ok_or_else(|| ApiError::field_type(what))
}

fn arg_map(v: &Value, what: &str) -> Result<Map, ApiError> {
    let m = v.as_struct().ok_or_else(|| ApiError::field_type(what))?;
    m.iter()
        .map(|(k, v)| Ok((k.clone(), arg_str(v, what)?)))
        .collect()
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
/// removed, count already checked against [`Kind::arity`]).
pub fn build(method: Method, args: &[Value]) -> Result<Parsed, ApiError> {
    debug_assert_eq!(args.len(), method.kind.arity());
    let class = method.class.unwrap_or(Class::Vm);
    let r = |i: usize| arg_str(&args[i], "ref");
    let plain = |action| {
        Ok(Parsed {
            action,
            shape: Shape::Plain,
        })
    };
    use Kind::*;
    match method.kind {
        GetAll => plain(Action::GetAll { class }),
        GetAllRecords => plain(Action::GetAllRecords { class }),
        GetRecord => plain(Action::GetRecord { class, r: r(0)? }),
        GetByUuid => plain(Action::GetByUuid {
            class,
            uuid: arg_str(&args[0], "uuid")?,
        }),
        GetByNameLabel => plain(Action::GetByNameLabel {
            class,
            label: arg_str(&args[0], "label")?,
        }),
        GetField(f) => Ok(Parsed {
            action: Action::GetRecord { class, r: r(0)? },
            shape: Shape::Field(class, f),
        }),
        SetNameLabel => plain(Action::SetNameLabel {
            class,
            r: r(0)?,
            value: arg_str(&args[1], "value")?,
        }),
        SetNameDescription => plain(Action::SetNameDescription {
            class,
            r: r(0)?,
            value: arg_str(&args[1], "value")?,
        }),
        SetOtherConfig => plain(Action::SetOtherConfig {
            class,
            r: r(0)?,
            value: arg_map(&args[1], "value")?,
        }),
        AddToOtherConfig => plain(Action::AddToOtherConfig {
            class,
            r: r(0)?,
            key: arg_str(&args[1], "key")?,
            value: arg_str(&args[2], "value")?,
        }),
        RemoveFromOtherConfig => plain(Action::RemoveFromOtherConfig {
            class,
            r: r(0)?,
            key: arg_str(&args[1], "key")?,
        }),
        Create => plain(Action::Create(new_record(class, &args[0])?)),
        Destroy => plain(Action::Destroy { class, r: r(0)? }),
        VmClone | VmCopy => plain(Action::VmClone {
            vm: r(0)?,
            new_name: arg_str(&args[1], "new_name")?,
        }),
        VmProvision => plain(Action::VmProvision { vm: r(0)? }),
        VmStart => plain(Action::VmStart {
            vm: r(0)?,
            start_paused: arg_bool(&args[1], "start_paused")?,
            force: arg_bool(&args[2], "force")?,
        }),
        VmStartOn => plain(Action::VmStart {
            vm: r(0)?,
            start_paused: arg_bool(&args[2], "start_paused")?,
            force: arg_bool(&args[3], "force")?,
        }),
        VmPause => plain(Action::VmPause { vm: r(0)? }),
        VmUnpause => plain(Action::VmUnpause { vm: r(0)? }),
        VmCleanShutdown => plain(Action::VmCleanShutdown { vm: r(0)? }),
        VmHardShutdown => plain(Action::VmHardShutdown { vm: r(0)? }),
        VmShutdown => plain(Action::VmShutdown { vm: r(0)? }),
        VmCleanReboot => plain(Action::VmCleanReboot { vm: r(0)? }),
        VmHardReboot => plain(Action::VmHardReboot { vm: r(0)? }),
        VmSuspend => plain(Action::VmSuspend { vm: r(0)? }),
        VmResume => plain(Action::VmResume {
            vm: r(0)?,
            start_paused: arg_bool(&args[1], "start_paused")?,
            force: arg_bool(&args[2], "force")?,
        }),
        VmResumeOn => plain(Action::VmResume {
            vm: r(0)?,
            start_paused: arg_bool(&args[2], "start_paused")?,
            force: arg_bool(&args[3], "force")?,
        }),
        VmSetMemoryLimits => plain(Action::VmSetMemoryLimits {
            vm: r(0)?,
            static_min: arg_int(&args[1], "static_min")?,
            static_max: arg_int(&args[2], "static_max")?,
            dynamic_min: arg_int(&args[3], "dynamic_min")?,
            dynamic_max: arg_int(&args[4], "dynamic_max")?,
        }),
        VmSetMemory => plain(Action::VmSetMemory {
            vm: r(0)?,
            value: arg_int(&args[1], "value")?,
        }),
        VmSetVcpusMax => plain(Action::VmSetVcpusMax {
            vm: r(0)?,
            value: arg_int(&args[1], "value")?,
        }),
        VmSetVcpusAtStartup => plain(Action::VmSetVcpusAtStartup {
            vm: r(0)?,
            value: arg_int(&args[1], "value")?,
        }),
        SrCreate => plain(Action::SrCreate {
            host: r(0)?,
            device_config: arg_map(&args[1], "device_config")?,
            spec: SrSpec {
                uuid: String::new(),
                physical_size: arg_int(&args[2], "physical_size")?,
                name_label: arg_str(&args[3], "name_label")?,
                name_description: arg_str(&args[4], "name_description")?,
                ty: arg_str(&args[5], "type")?,
                content_type: arg_str(&args[6], "content_type")?,
                shared: arg_bool(&args[7], "shared")?,
                sm_config: arg_map(&args[8], "sm_config")?,
            },
        }),
        SrIntroduce => plain(Action::SrIntroduce {
            spec: SrSpec {
                uuid: arg_str(&args[0], "uuid")?,
                name_label: arg_str(&args[1], "name_label")?,
                name_description: arg_str(&args[2], "name_description")?,
                ty: arg_str(&args[3], "type")?,
                content_type: arg_str(&args[4], "content_type")?,
                shared: arg_bool(&args[5], "shared")?,
                sm_config: arg_map(&args[6], "sm_config")?,
                physical_size: -1,
            },
        }),
        SrForget => plain(Action::SrForget { sr: r(0)? }),
        PbdPlug => plain(Action::PbdPlug { pbd: r(0)? }),
        PbdUnplug => plain(Action::PbdUnplug { pbd: r(0)? }),
        VmAddToXenstoreData => plain(Action::VmAddToXenstoreData {
            vm: r(0)?,
            key: arg_str(&args[1], "key")?,
            value: arg_str(&args[2], "value")?,
        }),
        VmRemoveFromXenstoreData => plain(Action::VmRemoveFromXenstoreData {
            vm: r(0)?,
            key: arg_str(&args[1], "key")?,
        }),
        DevicePlug => plain(Action::DevicePlug {
            class,
            device: r(0)?,
        }),
        DeviceUnplug => plain(Action::DeviceUnplug {
            class,
            device: r(0)?,
        }),
        TaskCreate => plain(Action::TaskCreate {
            label: arg_str(&args[0], "label")?,
            description: arg_str(&args[1], "description")?,
        }),
        TaskCancel => plain(Action::TaskCancel { task: r(0)? }),
        EventFrom => {
            let classes = args[0]
                .as_array()
                .ok_or_else(|| ApiError::field_type("classes"))?
                .iter()
                .map(|c| arg_str(c, "classes"))
                .collect::<Result<Vec<_>, _>>()?;
            let token = parse_token(&arg_str(&args[1], "token")?)?;
            let secs = args[2]
                .as_double()
                .ok_or_else(|| ApiError::field_type("timeout"))?;
            let timeout = if secs.is_finite() && secs > 0.0 {
                Duration::from_secs_f64(secs).min(MAX_EVENT_TIMEOUT)
            } else {
                Duration::ZERO
            };
            plain(Action::EventFrom {
                classes,
                token,
                timeout,
            })
        }
        XsRead => plain(Action::XsRead {
            path: arg_str(&args[0], "path")?,
        }),
        XsWrite => plain(Action::XsWrite {
            path: arg_str(&args[0], "path")?,
            value: arg_str(&args[1], "value")?,
        }),
        XsDirectory => plain(Action::XsDirectory {
            path: arg_str(&args[0], "path")?,
        }),
        XsRm => plain(Action::XsRm {
            path: arg_str(&args[0], "path")?,
        }),
        XsWatch => plain(Action::XsWatch {
            // The server fills in the session's owner id.
            owner: String::new(),
            path: arg_str(&args[0], "path")?,
            timeout: arg_timeout(&args[1], "timeout")?,
            cursor: arg_str(&args[2], "cursor")?,
        }),
        XsUnwatch => plain(Action::XsUnwatch {
            owner: String::new(),
            cursor: arg_str(&args[0], "cursor")?,
        }),
        EventInject => {
            // XAPI makes a fresh event on the object and returns its token;
            // clients use the token only as a starting point, so the
            // current token (what `event.from` from the start answers)
            // serves.
            let class = arg_str(&args[0], "class")?;
            let obj = r(1)?;
            Ok(Parsed {
                action: Action::EventFrom {
                    classes: vec![format!("{class}/{obj}")],
                    token: 0,
                    timeout: Duration::ZERO,
                },
                shape: Shape::Token,
            })
        }
    }
}

/// A timeout in seconds (a double, or an int), capped at
/// [`MAX_EVENT_TIMEOUT`]; negative or not finite is zero.
fn arg_timeout(v: &Value, field: &str) -> Result<Duration, ApiError> {
    let secs = v
        .as_double()
        .or_else(|| v.as_int().map(|i| i as f64))
        .ok_or_else(|| ApiError::field_type(field))?;
    Ok(if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.min(MAX_EVENT_TIMEOUT.as_secs_f64()))
    } else {
        Duration::ZERO
    })
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

    #[test]
    fn lookup_knows_the_table() {
        assert_eq!(lookup("VM.start").unwrap().kind, Kind::VmStart);
        assert_eq!(lookup("VM.start").unwrap().kind.arity(), 3);
        assert_eq!(
            lookup("host.get_API_version_major").unwrap().kind,
            Kind::GetField("API_version_major")
        );
        assert_eq!(
            lookup("pool.get_master").unwrap().kind,
            Kind::GetField("master")
        );
        assert!(lookup("host.create").is_none());
        assert!(lookup("host.start").is_none());
        assert!(lookup("pool.get_by_name_label").is_none());
        assert!(
            lookup("vm.start").is_none(),
            "class names are case-sensitive"
        );
        assert!(lookup("VM.get_bogus").is_none());
        assert!(lookup("nothing").is_none());
        assert_eq!(lookup("event.from").unwrap().kind.arity(), 3);
        let all = all_methods();
        assert!(all.contains(&"VM.get_all_records".to_owned()));
        for m in &all {
            assert!(lookup(m).or_else(|| lookup_async(m)).is_some(), "{m}");
        }
        assert!(all.contains(&"Async.VM.start".to_owned()));
        assert!(all.contains(&"SR.introduce".to_owned()));
        assert!(!all.contains(&"Async.VM.get_record".to_owned()));
        assert_eq!(lookup("SR.create").unwrap().kind, Kind::SrCreate);
        assert_eq!(lookup("SR.create").unwrap().kind.arity(), 9);
        assert_eq!(lookup("SR.introduce").unwrap().kind.arity(), 7);
        assert_eq!(lookup("SR.destroy").unwrap().kind, Kind::Destroy);
        assert_eq!(lookup("SR.get_VDIs").unwrap().kind, Kind::GetField("VDIs"));
        assert_eq!(
            lookup("pool.get_default_SR").unwrap().kind,
            Kind::GetField("default_SR")
        );
        assert_eq!(lookup("PBD.plug").unwrap().kind, Kind::PbdPlug);
        assert_eq!(lookup("VIF.plug").unwrap().kind, Kind::DevicePlug);
        assert_eq!(lookup("VBD.unplug").unwrap().kind, Kind::DeviceUnplug);
        assert!(lookup("VM.plug").is_none());
        assert_eq!(lookup("task.cancel").unwrap().kind, Kind::TaskCancel);
        assert_eq!(
            lookup("task.get_result").unwrap().kind,
            Kind::GetField("result")
        );
        assert!(
            lookup("task.set_name_label").is_none(),
            "task names are read-only"
        );
        assert!(lookup("PBD.create").is_none());
        assert_eq!(lookup_async("Async.VM.start").unwrap().kind, Kind::VmStart);
        assert!(lookup_async("Async.VM.get_record").is_none());
        assert!(lookup_async("VM.start").is_none());
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
