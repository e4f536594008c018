//! The XenAPI dispatcher ([`Api`]): one call at a time, synchronously.
//! Sessions and `system.*` are answered here, every other method is parsed
//! by the call table ([`crate::call`]) into an `Action` and handed to the
//! [`Toolstack`]; toolstack errors become XenAPI errors here.
//! `Async.<Class>.<call>` is checked the same way, then runs on a thread of
//! its own behind a task record the toolstack keeps (see
//! [`windsor_toolstack::task`]); the call answers with the task at once.
//! Which slots a call waits for in the HTTP server is [`admission`]'s
//! answer; the server itself is [`crate::server`].

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use windsor_toolstack::action::{uuid_of, Action, Reply, TaskOutcome};

use crate::auth::{
    authentication_failed, ClientKey, Credentials, LoginLimiter, Sessions, Verifier,
};
use crate::call::{self, all_methods, lookup, lookup_async, reply_to_value, ASYNC};
use crate::console::{self, Consoles};
use crate::error::{codes, ApiError};
use crate::server::Config;
use crate::toolstack::Toolstack;
use crate::value::Value;
use crate::xmlrpc;

/// The XenAPI dispatcher: sessions, the call table, the toolstack.
pub struct Api {
    toolstack: Arc<dyn Toolstack>,
    credentials: Credentials,
    sessions: Sessions,
    config: Config,
    /// Keys the owner ids of `xenstore.watch` watchers.
    owner_key: std::collections::hash_map::RandomState,
    verifier: Verifier,
    limiter: LoginLimiter,
    /// The host's console backend ([`Api::with_consoles`]).
    consoles: Option<Arc<dyn Consoles>>,
    /// `http://<address>` of the TCP listener, for console locations (set
    /// by the server).
    pub(crate) base: std::sync::OnceLock<String>,
}

/// Who is calling: where [`Api::call_as`] charges failed logins, and
/// whether a login needs a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A caller in this process (tests, embedding): no rate limit.
    InProcess,
    /// A TCP client.
    Tcp(std::net::IpAddr),
    /// A local-socket client, by the user id its peer credentials give;
    /// `owner` when that is the server's own user (or root): such a client
    /// logs in as any existing user without a password, as `xe` does in a
    /// XAPI dom0.
    Local {
        /// The peer's user id, if the kernel told.
        uid: Option<u32>,
        /// Whether the peer runs as the server's user or as root.
        owner: bool,
    },
}

impl Client {
    fn key(&self) -> Option<ClientKey> {
        match *self {
            Client::InProcess => None,
            Client::Tcp(a) => Some(ClientKey::Addr(a)),
            Client::Local { uid, .. } => uid.map(ClientKey::Uid),
        }
    }
}

/// Which slots a call waits for (see [`admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// `session.login_with_password`: a password check.
    Login,
    /// `event.from` or `xenstore.watch` with a timeout: may wait long.
    LongPoll,
    /// Everything else.
    Call,
}

/// The slots `method` waits for: logins and long polls have their own, so
/// that neither a login flood nor many waiting pollers hold the slots
/// ordinary calls need.
pub fn admission(method: &str, params: &[Value]) -> Admission {
    let timeout_at = match method {
        "session.login_with_password" => return Admission::Login,
        "event.from" => 3,
        "xenstore.watch" => 2,
        _ => return Admission::Call,
    };
    // As the call table reads it (`call::Seconds`): a double or an int.
    let timeout = params
        .get(timeout_at)
        .and_then(|t| t.as_double().or_else(|| t.as_int().map(|i| i as f64)));
    match timeout {
        Some(t) if t > 0.0 => Admission::LongPoll,
        _ => Admission::Call,
    }
}

/// A login refused because its client failed too often.
pub(crate) fn rate_limited(user: &str) -> ApiError {
    ApiError::new(
        codes::SESSION_AUTHENTICATION_FAILED,
        [
            crate::error::clip(user),
            "Too many failed logins from this client; try again later".into(),
        ],
    )
}

/// Methods that take no session.
pub(crate) fn sessionless(method: &str) -> bool {
    method == "session.login_with_password"
        || method == "session.logout"
        || method.starts_with("system.")
}

const SESSION_METHODS: &[&str] = &[
    "session.login_with_password",
    "session.logout",
    "session.get_this_host",
    "session.get_this_user",
    "session.get_record",
    "session.get_uuid",
    "session.get_all_subject_identifiers",
    "system.listMethods",
    "VM.get_allowed_VBD_devices",
    "VM.get_allowed_VIF_devices",
];

/// The device numbers XAPI offers a PV/PVH VM: `userdevice` of a VBD
/// (`xvda`…`xvdp`) and `device` of a VIF.
const VBD_DEVICES: u32 = 16;
/// See [`VBD_DEVICES`].
const VIF_DEVICES: u32 = 7;

fn count_mismatch(method: &str, expected: usize, got: usize) -> ApiError {
    ApiError::new(
        codes::MESSAGE_PARAMETER_COUNT_MISMATCH,
        [method.to_owned(), expected.to_string(), got.to_string()],
    )
}

impl Api {
    /// A dispatcher over `toolstack`, checking logins against `credentials`.
    pub fn new(toolstack: Arc<dyn Toolstack>, credentials: Credentials, config: Config) -> Api {
        let sessions = Sessions::new(config.session_limit, config.session_idle_timeout);
        Api {
            toolstack,
            credentials,
            sessions,
            verifier: Verifier::new(config.max_password_checks),
            limiter: LoginLimiter::new(config.login_failure_burst, config.login_failures_per_sec),
            config,
            owner_key: std::collections::hash_map::RandomState::new(),
            consoles: None,
            base: std::sync::OnceLock::new(),
        }
    }

    /// Serves the `console` class and `GET /console` from `consoles` (see
    /// [`crate::console`]); without it there are no console objects.
    pub fn with_consoles(mut self, consoles: Arc<dyn Consoles>) -> Api {
        self.consoles = Some(consoles);
        self
    }

    /// `console` calls (see [`crate::console`]).
    fn console_call(&self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
        let n = console::arity(method).ok_or_else(|| ApiError::method_unknown(method))?;
        if params.len() != n + 1 {
            return Err(count_mismatch(method, n + 1, params.len()));
        }
        self.check_session(params)?;
        let none = NoConsoles;
        let consoles: &dyn Consoles = self.consoles.as_deref().unwrap_or(&none);
        let base = self.base.get().map_or("", String::as_str);
        console::call(consoles, base, method, &params[1..], |vm| {
            self.toolstack
                .handle(Action::GetRecord {
                    class: windsor_toolstack::action::Class::Vm,
                    r: vm.to_owned(),
                })
                .map(|_| ())
                .map_err(ApiError::from)
        })
    }

    /// `GET /console?uuid=..&session_id=..[&offset=n]`: the text, or the
    /// HTTP status and message to answer.
    pub(crate) fn console_text(&self, query: &str) -> Result<console::ConsoleText, (u16, String)> {
        let q = console::Query::parse(query)?;
        self.check_session_ref(q.session)
            .map_err(|e| (401, format!("{e}\n")))?;
        self.consoles
            .as_ref()
            .and_then(|c| c.read(q.uuid, q.offset))
            .ok_or((404, format!("no console {}\n", q.uuid)))
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    fn check_session(&self, params: &[Value]) -> Result<(), ApiError> {
        let s = params
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::session_invalid(""))?;
        let now = Instant::now();
        self.sessions.sweep(now);
        let r = self.sessions.check(s, now);
        self.release_ended();
        r
    }

    /// The owner id of session `s`'s `xenstore.watch` watchers: a keyed
    /// hash, so the toolstack never sees the session reference.
    fn owner_of(&self, s: &str) -> String {
        format!("{:016x}", self.owner_key.hash_one(s))
    }

    /// Releases what the sessions that ended (logged out, expired or
    /// evicted; see [`Sessions::take_ended`]) held: their watchers are
    /// closed at once rather than at their own idle expiry.
    fn release_ended(&self) {
        for s in self.sessions.take_ended() {
            let owner = self.owner_of(&s);
            if let Err(e) = self.toolstack.handle(Action::XsDropOwner { owner }) {
                tracing::warn!(error = %e, "closing the watchers of an ended session");
            }
        }
    }

    /// Whether `client` may try a password now (it has not used up its
    /// failed logins).
    pub fn login_allowed(&self, client: &Client) -> bool {
        client
            .key()
            .is_none_or(|k| self.limiter.allow(k, Instant::now()))
    }

    /// Whether `session` is open, before the rest of a request is parsed.
    pub fn check_session_ref(&self, session: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        self.sessions.sweep(now);
        let r = self.sessions.check(session, now);
        self.release_ended();
        r
    }

    /// Performs one call from this process. May block (see
    /// [`Toolstack::handle`]).
    pub fn call(&self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
        self.call_as(&Client::InProcess, method, params)
    }

    /// Performs one call from `client`. May block (see
    /// [`Toolstack::handle`]).
    pub fn call_as(
        &self,
        client: &Client,
        method: &str,
        params: &[Value],
    ) -> Result<Value, ApiError> {
        match method {
            "session.login_with_password" => {
                if !(2..=4).contains(&params.len()) {
                    return Err(count_mismatch(method, 4, params.len()));
                }
                let user = params[0]
                    .as_str()
                    .ok_or_else(|| ApiError::field_type("uname"))?;
                let pass = params[1]
                    .as_str()
                    .ok_or_else(|| ApiError::field_type("pwd"))?;
                let originator = params.get(3).and_then(Value::as_str).unwrap_or("");
                let key = client.key();
                if !self.login_allowed(client) {
                    tracing::info!(?client, "login refused: too many failures");
                    return Err(rate_limited(user));
                }
                let trusted = matches!(client, Client::Local { owner: true, .. })
                    && self.credentials.has_user(user);
                if !trusted && !self.credentials.verify_with(&self.verifier, user, pass) {
                    if let Some(k) = key {
                        self.limiter.failed(k, Instant::now());
                    }
                    tracing::info!(user = %crate::error::clip(user), "login refused");
                    return Err(authentication_failed(&crate::error::clip(user)));
                }
                let s = self.sessions.open(user, originator, Instant::now());
                self.release_ended();
                tracing::debug!(user, originator, "login");
                Ok(Value::str(s))
            }
            "session.logout" => {
                if params.len() != 1 {
                    return Err(count_mismatch(method, 1, params.len()));
                }
                let s = params[0]
                    .as_str()
                    .ok_or_else(|| ApiError::session_invalid(""))?;
                self.sessions.close(s)?;
                self.release_ended();
                Ok(Value::str(""))
            }
            "session.get_this_host" => {
                if params.len() != 2 {
                    return Err(count_mismatch(method, 2, params.len()));
                }
                self.check_session(params)?;
                let hosts = self.dispatch("host.get_all", &[params[0].clone()])?;
                Ok(hosts
                    .as_array()
                    .and_then(|a| a.first().cloned())
                    .unwrap_or_else(|| Value::str("OpaqueRef:NULL")))
            }
            "session.get_this_user" | "session.get_record" | "session.get_uuid" => {
                if params.len() != 2 {
                    return Err(count_mismatch(method, 2, params.len()));
                }
                self.check_session(params)?;
                let record = self.session_record(&params[1])?;
                Ok(match method {
                    "session.get_record" => record,
                    "session.get_uuid" => record.get("uuid").cloned().unwrap_or(Value::str("")),
                    _ => Value::str("OpaqueRef:NULL"),
                })
            }
            "session.get_all_subject_identifiers" => {
                if params.len() != 1 {
                    return Err(count_mismatch(method, 1, params.len()));
                }
                self.check_session(params)?;
                // No external authentication: no subjects.
                Ok(Value::Array(Vec::new()))
            }
            "VM.get_allowed_VBD_devices" | "VM.get_allowed_VIF_devices" => {
                self.allowed_devices(method, params)
            }
            "system.listMethods" => {
                let mut all: Vec<String> = SESSION_METHODS.iter().map(|s| s.to_string()).collect();
                all.extend(all_methods());
                all.extend(console::methods());
                Ok(Value::strings(all))
            }
            _ if console::is_console_method(method) => self.console_call(method, params),
            _ if method.starts_with(ASYNC) => self.dispatch_async(method, params),
            _ => self.dispatch(method, params),
        }
    }

    /// `VM.get_allowed_VBD_devices` / `get_allowed_VIF_devices`: the
    /// device numbers its VBDs (`userdevice`) or VIFs (`device`) do not
    /// use yet, as XAPI answers for a PV/PVH VM. Composed from the VM's
    /// record and its devices' records.
    fn allowed_devices(&self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
        if params.len() != 2 {
            return Err(count_mismatch(method, 2, params.len()));
        }
        self.check_session(params)?;
        let (list, class, field, count) = match method {
            "VM.get_allowed_VBD_devices" => ("VBDs", "VBD", "userdevice", VBD_DEVICES),
            _ => ("VIFs", "VIF", "device", VIF_DEVICES),
        };
        let vm = self.dispatch("VM.get_record", params)?;
        let mut used = Vec::new();
        for r in vm.get(list).and_then(Value::as_array).unwrap_or_default() {
            let rec = self.dispatch(
                &format!("{class}.get_record"),
                &[params[0].clone(), r.clone()],
            )?;
            if let Some(d) = rec.get(field).and_then(Value::as_str) {
                used.push(d.to_owned());
            }
        }
        Ok(Value::strings(
            (0..count)
                .map(|n| n.to_string())
                .filter(|n| !used.contains(n)),
        ))
    }

    /// The record of session `s` (`HANDLE_INVALID` if it is not open).
    /// Windsor's users are local: `is_local_superuser`, no subject, no
    /// parent; `this_user` is null as for XAPI's local logins.
    fn session_record(&self, s: &Value) -> Result<Value, ApiError> {
        let r = s.as_str().ok_or_else(|| ApiError::field_type("self"))?;
        let sess = self
            .sessions
            .get(r)
            .ok_or_else(|| ApiError::handle_invalid("session", r))?;
        let this_host = self
            .dispatch("host.get_all", std::slice::from_ref(s))
            .ok()
            .and_then(|h| h.as_array().and_then(|a| a.first().cloned()))
            .unwrap_or_else(|| Value::str("OpaqueRef:NULL"));
        let idle = self.sessions.idle(&sess, Instant::now());
        let last = std::time::SystemTime::now()
            .checked_sub(idle)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let when = Value::DateTime(windsor_toolstack::task::datetime(last));
        Ok(Value::record([
            ("uuid", Value::str(uuid_of(r).unwrap_or(r))),
            ("this_host", this_host),
            ("this_user", Value::str("OpaqueRef:NULL")),
            ("last_active", when.clone()),
            ("pool", Value::Bool(false)),
            ("other_config", Value::empty_map()),
            ("is_local_superuser", Value::Bool(true)),
            ("subject", Value::str("OpaqueRef:NULL")),
            ("validation_time", when),
            ("auth_user_sid", Value::str("")),
            ("auth_user_name", Value::str(sess.user)),
            ("rbac_permissions", Value::Array(Vec::new())),
            ("tasks", Value::Array(Vec::new())),
            ("parent", Value::str("OpaqueRef:NULL")),
            ("originator", Value::str(sess.originator)),
            ("client_certificate", Value::Bool(false)),
        ]))
    }

    /// `Async.<Class>.<method>`: checks the call as [`Api::call`] would,
    /// creates a pending task, runs the call on a thread of its own and
    /// returns the task at once. When the call returns, the task gets its
    /// result as XAPI stores it (the XML-RPC `<value>`, `""` for void) or
    /// its `ErrorDescription`.
    ///
    /// The tasks live with the toolstack's other records so that
    /// `event.from` reports them like any object and one lock orders them with the changes they cause; the API owns only
    /// what XenAPI spells (the result encoding and the error codes). The
    /// toolstack bounds how many are pending, so the threads are bounded too.
    fn dispatch_async(&self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
        let m = lookup_async(method).ok_or_else(|| ApiError::method_unknown(method))?;
        let expected = m.arity() + 1;
        if params.len() != expected {
            return Err(count_mismatch(method, expected, params.len()));
        }
        self.check_session(params)?;
        let parsed = call::build(m, &params[1..])?;
        let task = match self.toolstack.handle(Action::TaskCreate {
            label: method.to_owned(),
            description: String::new(),
        })? {
            Reply::Ref(r) => r,
            _ => return Err(ApiError::internal("task.create answered without a ref")),
        };
        let toolstack = self.toolstack.clone();
        let t = task.clone();
        let run = move || {
            let outcome = match toolstack.handle(parsed.action) {
                Ok(reply) => match reply_to_value(&reply, &parsed.shape) {
                    Ok(v) => task_success(&reply, &v),
                    Err(e) => task_failure(&e),
                },
                Err(e) => task_failure(&ApiError::from(e)),
            };
            if let Err(e) = toolstack.handle(Action::TaskFinish { task: t, outcome }) {
                tracing::warn!(error = %e, "finishing a task");
            }
        };
        let spawned = std::thread::Builder::new()
            .name("windsor-async".into())
            .spawn(run);
        if let Err(e) = spawned {
            let outcome = task_failure(&ApiError::internal(format!("cannot start the call: {e}")));
            self.toolstack.handle(Action::TaskFinish {
                task: task.clone(),
                outcome,
            })?;
        }
        tracing::debug!(method, %task, "async call");
        Ok(Value::str(task))
    }

    fn dispatch(&self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
        let m = lookup(method).ok_or_else(|| ApiError::method_unknown(method))?;
        let expected = m.arity() + 1;
        if params.len() != expected {
            return Err(count_mismatch(method, expected, params.len()));
        }
        self.check_session(params)?;
        let mut parsed = call::build(m, &params[1..])?;
        let session = params[0].as_str().unwrap_or_default();
        let watch = matches!(parsed.action, Action::XsWatch { .. });
        if let Action::XsWatch { owner, .. } | Action::XsUnwatch { owner, .. } = &mut parsed.action
        {
            // Watchers answer only the session that opened them; the
            // toolstack gets an id of the session, not the session itself.
            *owner = self.owner_of(session);
        }
        tracing::debug!(method, "call");
        let reply = self.toolstack.handle(parsed.action);
        if watch && self.sessions.get(session).is_none() {
            // The session ended during the call (a logout racing a
            // `xenstore.watch` that opens a watcher): close what it may
            // have opened after the session's watchers were dropped.
            let owner = self.owner_of(session);
            if let Err(e) = self.toolstack.handle(Action::XsDropOwner { owner }) {
                tracing::warn!(error = %e, "closing the watchers of an ended session");
            }
        }
        reply_to_value(&reply.map_err(ApiError::from)?, &parsed.shape)
    }
}

/// A task's success: XAPI keeps the result as the XML-RPC `<value>` of
/// what the call returned, and nothing for a void call.
fn task_success(reply: &Reply, v: &Value) -> TaskOutcome {
    let mut result = String::new();
    if !matches!(reply, Reply::Unit) {
        xmlrpc::write_value(&mut result, v);
    }
    TaskOutcome::Success { result }
}

/// A task's failure: the `ErrorDescription`, code first.
fn task_failure(e: &ApiError) -> TaskOutcome {
    let mut error_info = vec![e.code.clone()];
    error_info.extend(e.params.iter().cloned());
    TaskOutcome::Failure { error_info }
}

/// No console backend: no consoles.
struct NoConsoles;

impl Consoles for NoConsoles {
    fn list(&self) -> Vec<console::ConsoleEntry> {
        Vec::new()
    }
    fn read(&self, _: &str, _: u64) -> Option<console::ConsoleText> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::HashStrength;
    use windsor_toolstack::host::Host;

    fn api() -> (Api, Host) {
        let host = Host::start(windsor_toolstack::ToolstackConfig {
            seed: 1,
            ..windsor_toolstack::ToolstackConfig::default()
        })
        .unwrap();
        let api = Api::new(
            Arc::new(host.toolstack.clone()),
            Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap(),
            Config::default(),
        );
        (api, host)
    }

    #[test]
    fn sessions_guard_calls() {
        let (a, _host) = api();
        let e = a
            .call(
                "session.login_with_password",
                &[Value::str("root"), Value::str("no")],
            )
            .unwrap_err();
        assert_eq!(e.code, codes::SESSION_AUTHENTICATION_FAILED);
        let s = a
            .call(
                "session.login_with_password",
                &[
                    Value::str("root"),
                    Value::str("pw"),
                    Value::str("1.0"),
                    Value::str("t"),
                ],
            )
            .unwrap();
        let e = a
            .call("VM.get_all", &[Value::str("OpaqueRef:bogus")])
            .unwrap_err();
        assert_eq!(e, ApiError::session_invalid("OpaqueRef:bogus"));
        let vms = a.call("VM.get_all", std::slice::from_ref(&s)).unwrap();
        assert_eq!(vms.as_array().unwrap().len(), 1);
        let e = a.call("VM.get_all", &[]).unwrap_err();
        assert_eq!(
            e.description(),
            Value::strings(["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_all", "1", "0"])
        );
        let e = a.call("VM.fly", std::slice::from_ref(&s)).unwrap_err();
        assert_eq!(
            e.description(),
            Value::strings(["MESSAGE_METHOD_UNKNOWN", "VM.fly"])
        );
        let e = a
            .call("VM.get_record", &[s.clone(), Value::str("OpaqueRef:nope")])
            .unwrap_err();
        assert_eq!(
            e.description(),
            Value::strings(["HANDLE_INVALID", "VM", "OpaqueRef:nope"])
        );
        let host = a
            .call("session.get_this_host", &[s.clone(), s.clone()])
            .unwrap();
        let major = a
            .call("host.get_API_version_major", &[s.clone(), host.clone()])
            .unwrap();
        assert_eq!(major, Value::Int(2));
        let minor = a
            .call("host.get_API_version_minor", &[s.clone(), host])
            .unwrap();
        assert_eq!(minor, Value::Int(21));
        a.call("session.logout", std::slice::from_ref(&s)).unwrap();
        assert_eq!(
            a.call("VM.get_all", std::slice::from_ref(&s))
                .unwrap_err()
                .code,
            codes::SESSION_INVALID
        );
        let methods = a.call("system.listMethods", &[]).unwrap();
        assert!(methods
            .as_array()
            .unwrap()
            .contains(&Value::str("VM.get_all_records")));
    }

    #[test]
    fn long_polls_are_admitted_apart() {
        let poll = |t: Value| {
            admission(
                "event.from",
                &[Value::str("s"), Value::Array(vec![]), Value::str(""), t],
            )
        };
        assert_eq!(poll(Value::Double(5.0)), Admission::LongPoll);
        assert_eq!(
            poll(Value::Int(5)),
            Admission::LongPoll,
            "an int timeout too"
        );
        assert_eq!(poll(Value::Double(0.0)), Admission::Call);
        assert_eq!(
            admission("session.login_with_password", &[]),
            Admission::Login
        );
        assert_eq!(admission("VM.start", &[]), Admission::Call);
    }
}
