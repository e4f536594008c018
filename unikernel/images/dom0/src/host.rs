//! The host that stays up: dom0 serves the XenAPI over the QEMU machine's
//! NIC and runs VMs on request, until `host.shutdown` or `host.reboot`.
//!
//! One loop, no threads (the runtime's model): each turn polls the network
//! ([`crate::net`]), answers the requests it framed, settles domain exits
//! (`VIRQ_DOM_EXC`), completes the calls that wait (a clean shutdown until
//! the domain is gone, `event.from` until something changes or its
//! timeout), then blocks in `SCHEDOP_poll` until the next event or the
//! network's next deadline.
//!
//! The API is the same core host mode serves (`windsor-api` without `std`:
//! the XML-RPC and JSON-RPC codecs, the call table, XAPI's session table)
//! over the same toolstack core (`windsor_toolstack::Engine`). What host
//! mode's `server::Api` and `service::Toolstack` do with threads and
//! locks is done here in the loop:
//!
//! * `session.*`: `login_with_password` checks the password against the
//!   Argon2id hash (PHC string) dom0 got on its command line
//!   (`api.root=<hex of the PHC string>`, made by `cargo xtask xen-up`);
//!   session references are `OpaqueRef:<uuid>` from `RDRAND`.
//! * `host.shutdown(session, host)` / `host.reboot`: answered, then every
//!   running VM is asked to power off (the plan's `shutdown_ms`, then
//!   destroyed), the xenstore domain goes, and dom0 powers off (or
//!   reboots: QEMU's `-no-reboot` turns that into QEMU exiting).
//! * VM power operations: the engine's steps (`begin`, `create_config`,
//!   `attach`, `started`, ...) around Xen's domain control and the
//!   builder. `PV_kernel` names an image of the boot bundle: a plan
//!   image's file name (`windsor-fuzz-target.elf`) or its short name
//!   (`fuzz-target`). Uploads and VDIs are not readable yet.
//! * `Async.*`: the call runs to completion inside the loop and its task
//!   is finished before the task is returned.
//!
//! * `xenstore.read`/`write`/`directory`/`rm` (Windsor's extension) go
//!   through dom0's own xenstore connection, with dom0's rights.
//!
//! * Consoles: dom0 is every guest's console backend while it serves. Each
//!   running VM's console ring (planned or started through the API) is
//!   read in the loop by the `windsor-console` core ([`crate::console`]:
//!   rate limit, bounded history, lines on dom0's log), so no guest waits
//!   on a full ring. The captures answer `console.*`, `VM.get_consoles`
//!   and `GET /console?uuid=&session_id=&offset=` through the API's
//!   [`windsor_api::console`], as in host mode; the last
//!   [`ENDED_CONSOLES`] consoles of gone domains stay readable by uuid.
//!   The planned Linux guests' consoles are lent by `linux` while the host
//!   serves and read here too; they are not VMs of the engine, so not
//!   console objects.
//!
//! Not served yet: suspend/resume, `xenstore.watch`, VIF/VBD backends.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use windsor_api::call::{self, lookup, lookup_async, reply_to_value, Shape, ASYNC};
use windsor_api::console::{self as api_console, ConsoleEntry, ConsoleText, Consoles};
use windsor_api::error::codes;
use windsor_api::jsonrpc::{self, Version};
use windsor_api::session::SessionTable;
use windsor_api::{xmlrpc, ApiError, Value, WireError};
use windsor_boot_config::{BootPlan, Bundle};
use windsor_toolstack::action::{
    uuid_of, Action, ActionError, ActionResult, PowerState, Ref, Reply, TaskOutcome, VmRecord,
};
use windsor_toolstack::effect::commit;
use windsor_toolstack::lifecycle::{self, AfterExit, Op};
use windsor_toolstack::power::{build_error, create_error, CleanRequest, Scan};
use windsor_toolstack::Engine;
use windsor_unikernel::xen::platform::{
    Clock, DomainControl, DomainImage, DomainInfo, EventChannel, RunState,
};
use windsor_unikernel::xen::{DomId, Errno, EvtchnPort};
use windsor_unikernel::{println, Xen};
use windsor_xenstore::client::{TxId, XenStore};

use crate::console::Console;
use crate::http::{self, Request};
use crate::net::{ConnId, Net};

type Xs<'a> = windsor_xenstore::xenbus::XenbusClient<'a, Xen>;

/// Longest wait of the loop when nothing is going on.
const IDLE_WAIT: Duration = Duration::from_millis(10);
/// Longest wait right after a request (clients often send the next one at
/// once).
const BUSY_WAIT: Duration = Duration::from_millis(1);
/// How long the last answers get to leave before dom0 goes down.
const DRAIN: Duration = Duration::from_secs(2);
/// Sessions open at once, and their idle expiry (as host mode).
const SESSION_LIMIT: usize = 500;
const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Failed logins a client may make at once, and how many a second it
/// gets back (host mode's defaults, `server::Config`).
const LOGIN_FAILURE_BURST: f64 = 8.0;
const LOGIN_FAILURES_PER_SEC: f64 = 2.0;
/// Clients whose failures are remembered (the least recent is forgotten).
const LOGIN_CLIENTS: usize = 1024;

/// Failed logins per client address: a token bucket each, as host mode's
/// `auth::LoginLimiter`; a client out of tokens is refused before its
/// password is hashed.
#[derive(Default)]
struct LoginLimiter {
    clients: alloc::collections::BTreeMap<String, (f64, Duration)>,
}

impl LoginLimiter {
    fn tokens(&self, client: &str, now: Duration) -> f64 {
        match self.clients.get(client) {
            Some(&(t, at)) => (t + now.saturating_sub(at).as_secs_f64() * LOGIN_FAILURES_PER_SEC)
                .min(LOGIN_FAILURE_BURST),
            None => LOGIN_FAILURE_BURST,
        }
    }

    fn allow(&self, client: &str, now: Duration) -> bool {
        self.tokens(client, now) >= 1.0
    }

    fn failed(&mut self, client: &str, now: Duration) {
        let t = self.tokens(client, now) - 1.0;
        if self.clients.len() >= LOGIN_CLIENTS && !self.clients.contains_key(client) {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.clients.remove(&k);
            }
        }
        self.clients.insert(client.to_string(), (t.max(0.0), now));
    }
}

/// Consoles of gone domains kept readable (by their location).
pub const ENDED_CONSOLES: usize = 8;

/// A console the host serves: its own, or a planned Linux guest's, lent
/// by `linux` for the time the host serves (`linux` detaches it).
enum Slot<'a> {
    Own(alloc::boxed::Box<Console>),
    Lent(&'a mut Console),
}

impl core::ops::Deref for Slot<'_> {
    type Target = Console;
    fn deref(&self) -> &Console {
        match self {
            Slot::Own(c) => c,
            Slot::Lent(c) => c,
        }
    }
}

impl core::ops::DerefMut for Slot<'_> {
    fn deref_mut(&mut self) -> &mut Console {
        match self {
            Slot::Own(c) => c,
            Slot::Lent(c) => c,
        }
    }
}

/// A running VM's console, served by dom0.
struct Served<'a> {
    console: Slot<'a>,
    uuid: String,
    vm_uuid: String,
}

/// The console captures as the API sees them (a snapshot for one call).
struct Captured {
    entries: Vec<ConsoleEntry>,
    /// The text asked for (`GET /console`), if any.
    text: Option<(String, ConsoleText)>,
}

impl Consoles for Captured {
    fn list(&self) -> Vec<ConsoleEntry> {
        self.entries.clone()
    }
    fn read(&self, uuid: &str, _from: u64) -> Option<ConsoleText> {
        self.text
            .as_ref()
            .filter(|(u, _)| u == uuid)
            .map(|(_, t)| t.clone())
    }
}

/// What the host was asked to do at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `host.shutdown`.
    Shutdown,
    /// `host.reboot`.
    Reboot,
}

/// What the loop needs from the boot.
pub struct Ctx<'a> {
    pub xen: &'static Xen,
    pub xs: &'a Xs<'a>,
    pub bundle: &'a Bundle<'a>,
    pub plan: &'a BootPlan,
    pub dom_exc: EvtchnPort,
    /// The Argon2id PHC string of `root`'s password, if dom0 got one.
    pub root_hash: Option<String>,
    /// The consoles of the planned Linux guests (`crate::linux`), served
    /// here while the host serves.
    pub linux: Vec<&'a mut Console>,
}

/// How to answer a request.
#[derive(Debug, Clone)]
enum ReplyTo {
    Xml,
    Json(Version, serde_json::Value),
}

/// A call that waits for something the loop sees later.
enum Wait {
    /// A clean shutdown/reboot: until the domain's exit is settled.
    Clean {
        r: Ref,
        c: CleanRequest,
        op: Op,
        fallback: bool,
        deadline: Duration,
    },
    /// `event.from`: until a change or the deadline.
    Events {
        classes: Vec<String>,
        token: u64,
        deadline: Duration,
    },
}

struct Pending {
    conn: ConnId,
    reply: ReplyTo,
    keep_alive: bool,
    shape: Shape,
    /// For `Async.*`: the task to finish instead of answering.
    task: Option<Ref>,
    wait: Wait,
}

/// What a call did.
enum Outcome {
    Done(Result<Value, ApiError>),
    Wait(Wait, Shape),
}

/// The serving host.
pub struct Host<'a> {
    ctx: Ctx<'a>,
    eng: &'a mut Engine,
    sessions: SessionTable,
    pending: Vec<Pending>,
    stop: Option<Stop>,
    limiter: LoginLimiter,
    /// The client address of the request being answered.
    client: String,
    /// The `Host` header of the request being answered (console locations).
    host_header: String,
    /// The consoles of running VMs.
    consoles: Vec<Served<'a>>,
    /// The last consoles of gone domains: entry and the core's history.
    ended: alloc::collections::VecDeque<(ConsoleEntry, windsor_console::GuestConsole)>,
}

fn now_secs(xen: &Xen) -> u64 {
    xen.now().as_secs()
}

fn internal(e: impl core::fmt::Display) -> ActionError {
    ActionError::internal(e.to_string())
}

/// A xenstore call failed, as host mode reports it
/// (`["XENSTORE_ERROR", <errno name>, path]`).
fn store_error(e: windsor_xenstore::client::ClientError, path: &str) -> ActionError {
    match e {
        windsor_xenstore::client::ClientError::Store(errno) => ActionError::XenStore {
            error: windsor_xenstore::wire::error_name(errno),
            path: path.to_string(),
        },
        other => internal(format_args!("xenstore: {other}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random `OpaqueRef:<uuid v4>`.
fn new_ref() -> String {
    format!("OpaqueRef:{}", new_uuid())
}

/// A random uuid (v4).
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    if !windsor_unikernel::random_bytes(&mut b) {
        panic!("no RDRAND: cannot make unguessable session references");
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Decodes `api.root=<hex>`.
pub fn root_hash_from_cmdline(cmdline: &str) -> Option<String> {
    let h = cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("api.root="))?;
    if h.len() % 2 != 0 || h.len() > 1024 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

fn count_mismatch(method: &str, expected: usize, got: usize) -> ApiError {
    ApiError::new(
        codes::MESSAGE_PARAMETER_COUNT_MISMATCH,
        [method.to_string(), expected.to_string(), got.to_string()],
    )
}

fn render(reply: &ReplyTo, result: &Result<Value, ApiError>, keep_alive: bool) -> Vec<u8> {
    match reply {
        ReplyTo::Xml => http::response(
            200,
            "OK",
            "text/xml",
            xmlrpc::emit_response(result).as_bytes(),
            keep_alive,
        ),
        ReplyTo::Json(v, id) => http::response(
            200,
            "OK",
            "application/json",
            jsonrpc::emit_response(*v, id, result).as_bytes(),
            keep_alive,
        ),
    }
}

impl<'a> Host<'a> {
    /// A host over the booted domains.
    pub fn new(mut ctx: Ctx<'a>, eng: &'a mut Engine) -> Host<'a> {
        let consoles = core::mem::take(&mut ctx.linux)
            .into_iter()
            .map(|c| Served {
                console: Slot::Lent(c),
                uuid: new_uuid(),
                vm_uuid: String::new(),
            })
            .collect();
        Host {
            ctx,
            eng,
            sessions: SessionTable::new(SESSION_LIMIT, SESSION_IDLE),
            pending: Vec::new(),
            stop: None,
            limiter: LoginLimiter::default(),
            client: String::new(),
            host_header: String::new(),
            consoles,
            ended: alloc::collections::VecDeque::new(),
        }
    }

    // ---- consoles ---------------------------------------------------------------

    /// Serves the consoles of the VMs already running (the plan's guests).
    fn attach_running(&mut self) {
        let xen = self.ctx.xen;
        let refs = self
            .eng
            .handle(
                Action::GetAll {
                    class: windsor_toolstack::action::Class::Vm,
                },
                now_secs(xen),
            )
            .reply_refs();
        for r in refs {
            let Some(d) = self.eng.domid(&r) else {
                continue;
            };
            let uuid = uuid_of(&r).unwrap_or_default().to_string();
            if let Some(s) = self.consoles.iter_mut().find(|s| s.console.dom == d) {
                // A planned Linux guest's (lent).
                s.vm_uuid = uuid;
                continue;
            }
            let name = match self.eng.record(windsor_toolstack::action::Class::Vm, &uuid) {
                Some(windsor_toolstack::action::Record::Vm(v)) => v.name_label.clone(),
                _ => format!("d{d}"),
            };
            let port = xen.get_hvm_param(
                d,
                windsor_unikernel::xen::abi::hvm::HVM_PARAM_CONSOLE_EVTCHN,
            );
            match port {
                Ok(p) if p != 0 && p <= u64::from(u32::MAX) => {
                    self.attach_console(d, &uuid, &name, EvtchnPort(p as u32))
                }
                _ => println!("windsor dom0: VM {name:?} d{d}: no console port"),
            }
        }
    }

    /// Serves `d`'s console (VM `vm_uuid`, called `name`).
    fn attach_console(&mut self, d: DomId, vm_uuid: &str, name: &str, port: EvtchnPort) {
        if self.consoles.iter().any(|c| c.console.dom == d) {
            return;
        }
        match Console::attach_port(self.ctx.xen, d, name, port) {
            Ok(console) => self.consoles.push(Served {
                console: Slot::Own(alloc::boxed::Box::new(console)),
                uuid: new_uuid(),
                vm_uuid: vm_uuid.to_string(),
            }),
            Err(e) => println!("windsor dom0: VM {name:?} d{d}: console: {e}"),
        }
    }

    /// Takes `d`'s last console output and stops serving it; its text stays
    /// readable for a while.
    fn detach_console(&mut self, d: DomId) {
        let Some(i) = self.consoles.iter().position(|c| c.console.dom == d) else {
            return;
        };
        let s = self.consoles.swap_remove(i);
        let lines = s.console.lines();
        let console = match s.console {
            Slot::Own(c) => *c,
            // `linux` detaches it.
            Slot::Lent(_) => return,
        };
        let core = console.detach(self.ctx.xen);
        let entry = ConsoleEntry {
            uuid: s.uuid,
            vm_uuid: s.vm_uuid,
            domid: d.0,
            total_bytes: core.total_bytes(),
            lines,
        };
        if self.ended.len() >= ENDED_CONSOLES {
            self.ended.pop_front();
        }
        self.ended.push_back((entry, core));
    }

    /// Reads every served console once.
    fn pump_consoles(&mut self) {
        let xen = self.ctx.xen;
        for s in &mut self.consoles {
            s.console.pump(xen, None);
        }
    }

    fn entry(s: &Served) -> ConsoleEntry {
        ConsoleEntry {
            uuid: s.uuid.clone(),
            vm_uuid: s.vm_uuid.clone(),
            domid: s.console.dom.0,
            total_bytes: s.console.total_bytes(),
            lines: s.console.lines(),
        }
    }

    /// The console objects (of VMs).
    fn captured(&self) -> Captured {
        Captured {
            entries: self
                .consoles
                .iter()
                .filter(|s| !s.vm_uuid.is_empty())
                .map(Self::entry)
                .collect(),
            text: None,
        }
    }

    /// Console `uuid`'s text from `from` (also a gone domain's).
    fn console_read(&self, uuid: &str, from: u64) -> Option<ConsoleText> {
        if let Some(s) = self.consoles.iter().find(|s| s.uuid == uuid) {
            let (start, text) = s.console.history_since(from);
            return Some(ConsoleText {
                start,
                end: s.console.total_bytes(),
                text,
                closed: false,
            });
        }
        let (e, core) = self.ended.iter().find(|(e, _)| e.uuid == uuid)?;
        let (start, text) = core.history_since(from);
        Some(ConsoleText {
            start,
            end: e.total_bytes,
            text,
            closed: true,
        })
    }

    /// `console.*` and `VM.get_consoles`.
    fn console_call(
        &mut self,
        method: &str,
        params: &[Value],
        base: &str,
    ) -> Result<Value, ApiError> {
        let n = api_console::arity(method).ok_or_else(|| ApiError::method_unknown(method))?;
        if params.len() != n + 1 {
            return Err(count_mismatch(method, n + 1, params.len()));
        }
        self.check_session(params)?;
        let captured = self.captured();
        let eng = &*self.eng;
        api_console::call(&captured, base, method, &params[1..], |vm| {
            uuid_of(vm)
                .and_then(|u| eng.record(windsor_toolstack::action::Class::Vm, u))
                .map(|_| ())
                .ok_or_else(|| ApiError::handle_invalid("VM", vm))
        })
    }

    /// `GET /console?...` (see [`windsor_api::console`]).
    fn console_get(&mut self, query: &str, keep_alive: bool) -> Vec<u8> {
        let text = api_console::Query::parse(query).and_then(|q| {
            let now = self.ctx.xen.now();
            self.sessions.sweep(now);
            let checked = self.sessions.check(q.session, now);
            let _ = self.sessions.take_ended();
            checked.map_err(|e| (401, format!("{e}\n")))?;
            let captured = Captured {
                entries: Vec::new(),
                text: self
                    .console_read(q.uuid, q.offset)
                    .map(|t| (q.uuid.to_string(), t)),
            };
            captured
                .read(q.uuid, q.offset)
                .ok_or((404, format!("no console {}\n", q.uuid)))
        });
        let ct = "text/plain; charset=utf-8";
        match text {
            Ok(t) => {
                let mut extra = format!(
                    "X-Console-Start: {}\r\nX-Console-End: {}\r\n",
                    t.start, t.end
                );
                if t.closed {
                    extra.push_str("X-Console-Closed: 1\r\n");
                }
                http::response_with(200, "OK", ct, &extra, t.text.as_bytes(), keep_alive)
            }
            Err((code, msg)) => {
                let reason = match code {
                    401 => "Unauthorized",
                    404 => "Not Found",
                    _ => "Bad Request",
                };
                http::response(code, reason, ct, msg.as_bytes(), keep_alive)
            }
        }
    }

    /// Serves until `host.shutdown`/`host.reboot`; then stops every VM.
    pub fn run(mut self, net: &mut Net) -> Stop {
        let xen = self.ctx.xen;
        let mut last_request = xen.now();
        let mut stopping_since = None;
        let mut shown = (net.counters(), Duration::ZERO);
        self.attach_running();
        if net.counters().trace {
            println!("windsor dom0: net: sockets {}", net.states());
        }
        loop {
            let now = xen.now();
            let incoming = net.poll(now);
            if net.counters().trace
                && net.counters() != shown.0
                && now.saturating_sub(shown.1) > Duration::from_secs(5)
            {
                shown = (net.counters(), now);
                println!(
                    "windsor dom0: net: {} frames in, {} out; sockets {}",
                    shown.0.rx,
                    shown.0.tx,
                    net.states()
                );
            }
            if !incoming.is_empty() {
                last_request = now;
            }
            for (id, req) in incoming {
                self.request(net, id, req);
            }
            if xen.clear_pending(self.ctx.dom_exc).unwrap_or(false) || !self.pending.is_empty() {
                self.settle_exits();
            }
            self.complete(net);
            self.pump_consoles();
            if let Some(stop) = self.stop {
                let since = *stopping_since.get_or_insert(now);
                if !net.sending() || now.saturating_sub(since) > DRAIN {
                    self.stop_all();
                    return stop;
                }
            }
            let cap = if now.saturating_sub(last_request) < Duration::from_millis(100) {
                BUSY_WAIT
            } else {
                IDLE_WAIT
            };
            let wait = net.poll_delay(xen.now()).min(cap);
            if !wait.is_zero() {
                let mut ports = Vec::with_capacity(self.consoles.len() + 1);
                ports.push(self.ctx.dom_exc);
                ports.extend(self.consoles.iter().map(|c| c.console.port()));
                let _ = xen.wait(&ports, Some(wait));
            }
        }
    }

    // ---- HTTP and the wire formats -----------------------------------------

    fn request(&mut self, net: &mut Net, id: ConnId, req: Request) {
        let now = self.ctx.xen.now();
        let json_ct = req.content_type.starts_with("application/json");
        if req.path == "/console" && req.method == "GET" {
            let bytes = self.console_get(&req.query, req.keep_alive);
            net.reply(id, bytes, req.keep_alive, now);
            return;
        }
        self.host_header = req.host.clone();
        let json = match req.path.as_str() {
            "/jsonrpc" => true,
            "/" | "/RPC2" | "/xmlrpc" => json_ct,
            _ => {
                let e = ApiError::method_unknown(&format!("HTTP {}", req.path));
                let body = xmlrpc::emit_response(&Err(e));
                net.reply(
                    id,
                    http::response(
                        404,
                        "Not Found",
                        "text/xml",
                        body.as_bytes(),
                        req.keep_alive,
                    ),
                    req.keep_alive,
                    now,
                );
                return;
            }
        };
        let keep_alive = req.keep_alive;
        let parsed = if json {
            match jsonrpc::parse_request(&req.body) {
                Ok(r) => Ok((ReplyTo::Json(r.version, r.id), r.method, r.params)),
                Err(bad) => Err(http::response(
                    200,
                    "OK",
                    "application/json",
                    jsonrpc::emit_bad_request(&bad).as_bytes(),
                    keep_alive,
                )),
            }
        } else if req.method != "POST" {
            Err(render(
                &ReplyTo::Xml,
                &Err(ApiError::new(
                    codes::MESSAGE_METHOD_UNKNOWN,
                    [format!("HTTP {}", req.method)],
                )),
                keep_alive,
            ))
        } else {
            match xmlrpc::parse_call(&req.body) {
                Ok(c) => Ok((ReplyTo::Xml, c.method, c.params)),
                Err(WireError::Malformed(m) | WireError::Fault(m)) => Err(render(
                    &ReplyTo::Xml,
                    &Err(ApiError::new(codes::XMLRPC_UNMARSHAL_FAILURE, [m])),
                    keep_alive,
                )),
            }
        };
        let (reply, method, params) = match parsed {
            Ok(p) => p,
            Err(bytes) => {
                net.reply(id, bytes, keep_alive, now);
                return;
            }
        };
        self.client = net.peer(id).map(|a| a.to_string()).unwrap_or_default();
        match self.call(&method, &params) {
            Outcome::Done(result) => {
                let bytes = render(&reply, &result, keep_alive);
                net.reply(id, bytes, keep_alive, self.ctx.xen.now());
            }
            Outcome::Wait(wait, shape) => self.pending.push(Pending {
                conn: id,
                reply,
                keep_alive,
                shape,
                task: None,
                wait,
            }),
        }
    }

    // ---- the dispatcher -----------------------------------------------------

    fn check_session(&mut self, params: &[Value]) -> Result<(), ApiError> {
        let s = params
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::session_invalid(""))?;
        let now = self.ctx.xen.now();
        self.sessions.sweep(now);
        let r = self.sessions.check(s, now);
        let _ = self.sessions.take_ended();
        r
    }

    /// One call: sessions and `host.shutdown`/`reboot` here, the rest
    /// through the call table to the engine and the executor.
    fn call(&mut self, method: &str, params: &[Value]) -> Outcome {
        let done = Outcome::Done;
        match method {
            "session.login_with_password" => done(self.login(method, params)),
            "session.logout" => {
                if params.len() != 1 {
                    return done(Err(count_mismatch(method, 1, params.len())));
                }
                let s = params[0].as_str().unwrap_or_default();
                done(self.sessions.close(s).map(|()| Value::str("")))
            }
            "session.get_this_host" => {
                if params.len() != 2 {
                    return done(Err(count_mismatch(method, 2, params.len())));
                }
                done(
                    self.check_session(params)
                        .map(|()| Value::str(self.eng.host_ref())),
                )
            }
            "session.get_this_user" | "session.get_uuid" => {
                if params.len() != 2 {
                    return done(Err(count_mismatch(method, 2, params.len())));
                }
                if let Err(e) = self.check_session(params) {
                    return done(Err(e));
                }
                let r = params[1].as_str().unwrap_or_default();
                if self.sessions.get(r).is_none() {
                    return done(Err(ApiError::handle_invalid("session", r)));
                }
                done(Ok(Value::str(if method == "session.get_uuid" {
                    uuid_of(r).unwrap_or(r)
                } else {
                    // Local users only: no user record, as XAPI's local logins.
                    "OpaqueRef:NULL"
                })))
            }
            "session.get_all_subject_identifiers" => {
                if params.len() != 1 {
                    return done(Err(count_mismatch(method, 1, params.len())));
                }
                // No external authentication: no subjects.
                done(
                    self.check_session(params)
                        .map(|()| Value::Array(Vec::new())),
                )
            }
            "host.shutdown" | "host.reboot" => {
                if params.len() != 2 {
                    return done(Err(count_mismatch(method, 2, params.len())));
                }
                if let Err(e) = self.check_session(params) {
                    return done(Err(e));
                }
                if params[1].as_str() != Some(self.eng.host_ref()) {
                    let r = params[1].as_str().unwrap_or_default();
                    return done(Err(ApiError::handle_invalid("host", r)));
                }
                let stop = if method == "host.reboot" {
                    Stop::Reboot
                } else {
                    Stop::Shutdown
                };
                println!("windsor dom0: {method} requested through the API");
                self.stop = Some(stop);
                done(Ok(Value::str("")))
            }
            "system.listMethods" => {
                let mut all: Vec<String> = [
                    "session.login_with_password",
                    "session.logout",
                    "session.get_this_host",
                    "session.get_this_user",
                    "session.get_uuid",
                    "session.get_all_subject_identifiers",
                    "host.shutdown",
                    "host.reboot",
                    "system.listMethods",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                all.extend(call::all_methods());
                all.extend(api_console::methods());
                done(Ok(Value::strings(all)))
            }
            _ if api_console::is_console_method(method) => {
                let base = format!("http://{}", self.host_header);
                done(self.console_call(method, params, &base))
            }
            _ if method.starts_with(ASYNC) => self.dispatch_async(method, params),
            _ => self.dispatch(method, params),
        }
    }

    fn login(&mut self, method: &str, params: &[Value]) -> Result<Value, ApiError> {
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
        let t0 = self.ctx.xen.now();
        if !self.limiter.allow(&self.client, t0) {
            println!(
                "windsor dom0: API login refused: too many failures from {}",
                self.client
            );
            return Err(ApiError::new(
                codes::SESSION_AUTHENTICATION_FAILED,
                [
                    windsor_api::error::clip(user),
                    "Too many failed logins from this client; try again later".to_string(),
                ],
            ));
        }
        let ok = match &self.ctx.root_hash {
            // Every user but root is unknown; the hash is checked anyway so
            // that both take as long.
            Some(h) => verify_password(h, pass) && user == "root",
            None => false,
        };
        if !ok {
            self.limiter.failed(&self.client, self.ctx.xen.now());
            println!("windsor dom0: API login as {user:?} refused");
            return Err(ApiError::new(
                codes::SESSION_AUTHENTICATION_FAILED,
                [
                    windsor_api::error::clip(user),
                    "Authentication failure".to_string(),
                ],
            ));
        }
        println!(
            "windsor dom0: API login as {user:?} ({originator:?}): password checked in {} ms",
            self.ctx.xen.now().saturating_sub(t0).as_millis()
        );
        let s = new_ref();
        self.sessions
            .open(s.clone(), user, originator, self.ctx.xen.now());
        let _ = self.sessions.take_ended();
        Ok(Value::str(s))
    }

    fn dispatch(&mut self, method: &str, params: &[Value]) -> Outcome {
        let m = match lookup(method) {
            Some(m) => m,
            None => return Outcome::Done(Err(ApiError::method_unknown(method))),
        };
        let expected = m.arity() + 1;
        if params.len() != expected {
            return Outcome::Done(Err(count_mismatch(method, expected, params.len())));
        }
        if let Err(e) = self.check_session(params) {
            return Outcome::Done(Err(e));
        }
        let parsed = match call::build(m, &params[1..]) {
            Ok(p) => p,
            Err(e) => return Outcome::Done(Err(e)),
        };
        match self.action(parsed.action) {
            Ok(Step::Reply(reply)) => Outcome::Done(reply_to_value(&reply, &parsed.shape)),
            Ok(Step::Wait(w)) => Outcome::Wait(w, parsed.shape),
            Err(e) => Outcome::Done(Err(ApiError::from(e))),
        }
    }

    /// `Async.<Class>.<call>`: a task, finished when the call is.
    fn dispatch_async(&mut self, method: &str, params: &[Value]) -> Outcome {
        let Some(m) = lookup_async(method) else {
            return Outcome::Done(Err(ApiError::method_unknown(method)));
        };
        let expected = m.arity() + 1;
        if params.len() != expected {
            return Outcome::Done(Err(count_mismatch(method, expected, params.len())));
        }
        if let Err(e) = self.check_session(params) {
            return Outcome::Done(Err(e));
        }
        let parsed = match call::build(m, &params[1..]) {
            Ok(p) => p,
            Err(e) => return Outcome::Done(Err(e)),
        };
        let created = self.engine(Action::TaskCreate {
            label: method.to_string(),
            description: String::new(),
        });
        let task = match created {
            Ok(Reply::Ref(r)) => r,
            Ok(_) => return Outcome::Done(Err(ApiError::internal("task.create without a ref"))),
            Err(e) => return Outcome::Done(Err(ApiError::from(e))),
        };
        match self.action(parsed.action) {
            Ok(Step::Reply(reply)) => {
                let outcome = task_outcome(&reply_to_value(&reply, &parsed.shape), &reply);
                self.finish_task(&task, outcome);
            }
            Ok(Step::Wait(w)) => {
                // Answered with the task now; the task is finished when
                // the wait completes (see `complete`).
                self.pending.push(Pending {
                    conn: ConnId::NONE,
                    reply: ReplyTo::Xml,
                    keep_alive: false,
                    shape: parsed.shape,
                    task: Some(task.clone()),
                    wait: w,
                });
            }
            Err(e) => self.finish_task(&task, failure(&ApiError::from(e))),
        }
        Outcome::Done(Ok(Value::str(task)))
    }

    fn finish_task(&mut self, task: &str, outcome: TaskOutcome) {
        let _ = self.engine(Action::TaskFinish {
            task: task.to_string(),
            outcome,
        });
    }

    // ---- the executor ---------------------------------------------------------

    /// An action the engine answers by itself.
    fn engine(&mut self, a: Action) -> ActionResult {
        match self.eng.handle(a, now_secs(self.ctx.xen)) {
            windsor_toolstack::Handled::Reply(r) => {
                self.eng.take_effects();
                r
            }
            windsor_toolstack::Handled::Execute(a) => {
                Err(internal(format_args!("not an engine action: {}", a.name())))
            }
        }
    }

    fn action(&mut self, a: Action) -> Result<Step, ActionError> {
        let a = match self.eng.handle(a, now_secs(self.ctx.xen)) {
            windsor_toolstack::Handled::Reply(r) => {
                // Nothing persists in Xen mode yet: the pool database's
                // effects are dropped (see the crate doc).
                self.eng.take_effects();
                return r.map(Step::Reply);
            }
            windsor_toolstack::Handled::Execute(a) => a,
        };
        use Action as A;
        let r = match a {
            A::VmStart {
                vm, start_paused, ..
            } => self.start(&vm, start_paused).map(Step::Reply),
            A::VmPause { vm } => self.pause(&vm, Op::Pause).map(Step::Reply),
            A::VmUnpause { vm } => self.pause(&vm, Op::Unpause).map(Step::Reply),
            A::VmHardShutdown { vm } => self.hard_shutdown(&vm).map(Step::Reply),
            A::VmHardReboot { vm } => self.hard_reboot(&vm).map(Step::Reply),
            A::VmCleanShutdown { vm } => self.clean(&vm, Op::CleanShutdown, false),
            A::VmShutdown { vm } => self.clean(&vm, Op::CleanShutdown, true),
            A::VmCleanReboot { vm } => self.clean(&vm, Op::CleanReboot, false),
            A::EventFrom {
                classes,
                token,
                timeout,
            } => match self.eng.events_since(&classes, token)? {
                Some(b) => Ok(Step::Reply(Reply::Events(b))),
                None => Ok(Step::Wait(Wait::Events {
                    classes,
                    token,
                    deadline: self.ctx.xen.now() + timeout.min(call::MAX_EVENT_TIMEOUT),
                })),
            },
            A::XsRead { path } => {
                let v = self
                    .ctx
                    .xs
                    .read(TxId::NONE, &path)
                    .map_err(|e| store_error(e, &path))?;
                String::from_utf8(v)
                    .map(|v| Step::Reply(Reply::Str(v)))
                    .map_err(|_| ActionError::XsNotUtf8 { path })
            }
            A::XsWrite { path, value } => self
                .ctx
                .xs
                .write(TxId::NONE, &path, value.as_bytes())
                .map(|()| Step::Reply(Reply::Unit))
                .map_err(|e| store_error(e, &path)),
            A::XsDirectory { path } => self
                .ctx
                .xs
                .directory(TxId::NONE, &path)
                .map(|d| Step::Reply(Reply::Strings(d)))
                .map_err(|e| store_error(e, &path)),
            A::XsRm { path } => self
                .ctx
                .xs
                .rm(TxId::NONE, &path)
                .map(|()| Step::Reply(Reply::Unit))
                .map_err(|e| store_error(e, &path)),
            A::XsDropOwner { .. } => Ok(Step::Reply(Reply::Unit)),
            other => Err(internal(format_args!(
                "{} is not served in Xen mode yet",
                other.name()
            ))),
        };
        self.eng.take_effects();
        r
    }

    /// The bundle image `PV_kernel` names.
    fn image(&self, name: &str) -> Option<&'a [u8]> {
        if name.is_empty() {
            return None;
        }
        let long = format!("windsor-{name}.elf");
        let d = self
            .ctx
            .plan
            .domains
            .iter()
            .find(|d| d.image == name || d.image == long)?;
        self.ctx.bundle.entry(d.module as usize)
    }

    fn ramdisk(&self, name: &str) -> Option<&'a [u8]> {
        let r = self
            .ctx
            .plan
            .domains
            .iter()
            .filter_map(|d| d.ramdisk.as_ref())
            .find(|r| r.path == name)?;
        self.ctx.bundle.entry(r.module as usize)
    }

    /// Creates, builds and plumbs a domain for `v`, left paused.
    fn boot(&mut self, v: &VmRecord) -> Result<DomId, ActionError> {
        let xen = self.ctx.xen;
        let kernel = self
            .image(&v.PV_kernel)
            .ok_or_else(|| build_error(Errno::ENOEXEC.into(), v))?;
        let ramdisk = if v.PV_ramdisk.is_empty() {
            None
        } else {
            Some(
                self.ramdisk(&v.PV_ramdisk)
                    .ok_or_else(|| build_error(Errno::ENOEXEC.into(), v))?,
            )
        };
        let t0 = xen.now();
        let d = xen.create(&self.eng.create_config(v)).map_err(|e| {
            println!("windsor dom0: VM {:?}: {}", v.name_label, xen.describe(e));
            create_error(e, v)
        })?;
        let cmdline = format!("{} domid={}", v.PV_args, d.0);
        let image = DomainImage {
            kernel,
            cmdline: cmdline.trim(),
            xenstore_domid: self.eng.settings().xenstore_domid,
            console_domid: DomId::DOM0,
        };
        let t1 = xen.now();
        let built = match xen.build_with_ramdisk(d, &image, ramdisk) {
            Ok(b) => b,
            Err(e) => {
                println!("windsor dom0: VM {:?}: {}", v.name_label, xen.describe(e));
                let _ = xen.destroy(d);
                return Err(build_error(e, v));
            }
        };
        let t2 = xen.now();
        self.attach_console(d, &v.uuid, &v.name_label, built.console_port);
        let tx = self.eng.attach(v, d);
        let xs = self.ctx.xs;
        let plumbed =
            commit(xs, &tx).and_then(|()| xs.introduce(d, built.store_gfn.0, built.store_port));
        if let Err(e) = plumbed {
            self.teardown(&v.uuid, d);
            return Err(internal(format_args!("xenstore set-up of d{d}: {e}")));
        }
        let us = |a: Duration, b: Duration| b.saturating_sub(a).as_micros();
        println!(
            "windsor dom0: VM {:?} d{d}: create {} us, build {} us, xenstore tree and \
             introduction {} us",
            v.name_label,
            us(t0, t1),
            us(t1, t2),
            us(t2, xen.now())
        );
        Ok(d)
    }

    /// Destroys `d` of VM `uuid` and removes every trace of it.
    fn teardown(&mut self, uuid: &str, d: DomId) {
        let xen = self.ctx.xen;
        self.detach_console(d);
        if let Err(e) = self.ctx.xs.release(d) {
            println!("windsor dom0: release d{d} from xenstore: {e}");
        }
        let tx = self.eng.detach(uuid, d);
        if let Err(e) = commit(self.ctx.xs, &tx) {
            println!("windsor dom0: removing d{d}'s nodes: {e}");
        }
        match xen.destroy(d) {
            Ok(()) | Err(windsor_unikernel::xen::platform::Error::Errno(Errno::ESRCH)) => {}
            Err(e) => println!("windsor dom0: destroy d{d}: {}", xen.describe(e)),
        }
    }

    fn start(&mut self, r: &str, paused: bool) -> ActionResult {
        let xen = self.ctx.xen;
        let t0 = xen.now();
        let v = self.eng.begin(r, Op::Start)?;
        let d = self.boot(&v)?;
        if !paused {
            if let Err(e) = xen.unpause(d) {
                self.teardown(&v.uuid, d);
                return Err(internal(xen.describe(e)));
            }
        }
        println!(
            "windsor dom0: VM {:?} started as d{d} in {} us (VM.start)",
            v.name_label,
            xen.now().saturating_sub(t0).as_micros()
        );
        self.eng.started(v, Op::Start, d, paused);
        Ok(Reply::Unit)
    }

    fn pause(&mut self, r: &str, op: Op) -> ActionResult {
        let xen = self.ctx.xen;
        let v = self.eng.begin(r, op)?;
        let d = self.eng.domain_of(&v.uuid)?;
        if op == Op::Pause {
            xen.pause(d)
        } else {
            xen.unpause(d)
        }
        .map_err(|e| internal(xen.describe(e)))?;
        self.eng.paused(v, op);
        Ok(Reply::Unit)
    }

    fn hard_shutdown(&mut self, r: &str) -> ActionResult {
        let v = self.eng.begin(r, Op::HardShutdown)?;
        if let Ok(d) = self.eng.domain_of(&v.uuid) {
            self.teardown(&v.uuid, d);
        }
        self.eng.hard_halted(v);
        Ok(Reply::Unit)
    }

    fn hard_reboot(&mut self, r: &str) -> ActionResult {
        let v = self.eng.begin(r, Op::HardReboot)?;
        if let Ok(d) = self.eng.domain_of(&v.uuid) {
            self.teardown(&v.uuid, d);
        }
        let booted = self.boot(&v).and_then(|d| {
            self.ctx
                .xen
                .unpause(d)
                .map_err(|e| internal(self.ctx.xen.describe(e)))?;
            Ok(d)
        });
        match booted {
            Ok(d) => {
                self.eng.restarted(v, d, "reboot");
                Ok(Reply::Unit)
            }
            Err(e) => {
                self.eng.halted(v, PowerState::Halted, "halted");
                Err(e)
            }
        }
    }

    /// Clean shutdown or reboot: the request through `control/shutdown`;
    /// the call waits until the exit is settled.
    fn clean(&mut self, r: &str, op: Op, fallback: bool) -> Result<Step, ActionError> {
        let c = self.eng.clean_request(r, op)?;
        self.ctx
            .xs
            .write(TxId::NONE, &c.node, c.word.as_bytes())
            .map_err(internal)?;
        self.eng.clean_started(r, &c, op);
        let timeout = Duration::from_millis(self.ctx.plan.dom0.timeouts.shutdown_ms.into());
        Ok(Step::Wait(Wait::Clean {
            r: r.to_string(),
            c,
            op,
            fallback,
            deadline: self.ctx.xen.now() + timeout,
        }))
    }

    // ---- domain exits and waiting calls ---------------------------------------

    /// Lists the domains and settles every VM whose domain exited (as host
    /// mode's watcher does): tears it down, then halts or restarts it as
    /// its actions say.
    fn settle_exits(&mut self) {
        if !self.eng.has_domains() {
            return;
        }
        let xen = self.ctx.xen;
        let Some(list) = list(xen) else { return };
        let scan = Scan {
            ids: list.iter().map(|i| i.domid.0).collect(),
            down: list
                .iter()
                .filter_map(|i| match i.state {
                    RunState::Shutdown(r) => Some((i.domid.0, r)),
                    _ => None,
                })
                .collect(),
        };
        let gone: Vec<DomId> = self
            .eng
            .missing(&scan)
            .into_iter()
            .filter(|d| {
                matches!(
                    xen.info(*d),
                    Err(windsor_unikernel::xen::platform::Error::Errno(Errno::ESRCH))
                )
            })
            .collect();
        for x in self.eng.exits(&scan, &gone) {
            println!(
                "windsor dom0: VM {} d{} exited ({:?}); then {:?}",
                x.vm, x.dom, x.why, x.after
            );
            self.teardown(&x.vm, x.dom);
            let Some(v) = self.eng.exited(&x) else {
                continue;
            };
            if x.after == AfterExit::Suspend {
                self.eng.halted(v, PowerState::Halted, "suspend");
                continue;
            }
            let word = lifecycle::reason_word(x.why);
            let booted = self.boot(&v).and_then(|d| {
                xen.unpause(d).map_err(|e| internal(xen.describe(e)))?;
                Ok(d)
            });
            match booted {
                Ok(d) => self.eng.restarted(v, d, word),
                Err(e) => {
                    println!("windsor dom0: VM {}: restart failed ({e}); halted", x.vm);
                    self.eng.halted(v, PowerState::Halted, word);
                }
            }
        }
        self.eng.take_effects();
    }

    /// Completes the waiting calls whose wait is over.
    fn complete(&mut self, net: &mut Net) {
        if self.pending.is_empty() {
            return;
        }
        let now = self.ctx.xen.now();
        let mut still = Vec::new();
        for p in core::mem::take(&mut self.pending) {
            let result: Option<ActionResult> = match &p.wait {
                Wait::Clean {
                    r,
                    c,
                    op,
                    fallback,
                    deadline,
                } => {
                    if !self.eng.clean_pending(c) {
                        Some(self.eng.clean_outcome(r, c, *op))
                    } else if now >= *deadline {
                        let acked = self
                            .ctx
                            .xs
                            .read(TxId::NONE, &c.node)
                            .map(|v| v.is_empty())
                            .unwrap_or(true);
                        let timeout =
                            Duration::from_millis(self.ctx.plan.dom0.timeouts.shutdown_ms.into());
                        let err = self.eng.clean_timed_out(r, c, acked, timeout);
                        Some(if *fallback {
                            self.hard_shutdown(r)
                        } else {
                            Err(err)
                        })
                    } else {
                        None
                    }
                }
                Wait::Events {
                    classes,
                    token,
                    deadline,
                } => match self.eng.events_since(classes, *token) {
                    Ok(Some(b)) => Some(Ok(Reply::Events(b))),
                    Ok(None) if now >= *deadline => Some(Ok(Reply::Events(self.eng.empty_batch()))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                },
            };
            self.eng.take_effects();
            let Some(result) = result else {
                still.push(p);
                continue;
            };
            let value = result
                .as_ref()
                .map_err(|e| ApiError::from(e.clone()))
                .and_then(|reply| reply_to_value(reply, &p.shape));
            if let Some(task) = &p.task {
                let outcome = match &result {
                    Ok(reply) => task_outcome(&value, reply),
                    Err(e) => failure(&ApiError::from(e.clone())),
                };
                self.finish_task(task, outcome);
            } else {
                let bytes = render(&p.reply, &value, p.keep_alive);
                net.reply(p.conn, bytes, p.keep_alive, self.ctx.xen.now());
            }
        }
        self.pending = still;
    }

    /// The end of the host: every VM with a domain is asked to power off
    /// (the plan's `shutdown_ms`), then whatever is left is destroyed.
    fn stop_all(&mut self) {
        let xen = self.ctx.xen;
        let vms: Vec<(Ref, DomId)> = self
            .eng
            .handle(
                Action::GetAll {
                    class: windsor_toolstack::action::Class::Vm,
                },
                now_secs(xen),
            )
            .reply_refs()
            .into_iter()
            .filter_map(|r| self.eng.domid(&r).map(|d| (r, d)))
            .collect();
        let mut asked = Vec::new();
        for (r, d) in &vms {
            match self.eng.clean_request(r, Op::CleanShutdown) {
                Ok(c) => {
                    if self
                        .ctx
                        .xs
                        .write(TxId::NONE, &c.node, c.word.as_bytes())
                        .is_ok()
                    {
                        self.eng.clean_started(r, &c, Op::CleanShutdown);
                        asked.push((r.clone(), c));
                    }
                }
                Err(e) => println!("windsor dom0: VM d{d}: no clean shutdown: {e}"),
            }
        }
        let deadline =
            xen.now() + Duration::from_millis(self.ctx.plan.dom0.timeouts.shutdown_ms.into());
        while asked.iter().any(|(_, c)| self.eng.clean_pending(c)) && xen.now() < deadline {
            let _ = xen.clear_pending(self.ctx.dom_exc);
            self.settle_exits();
            let _ = xen.wait(&[self.ctx.dom_exc], Some(Duration::from_millis(10)));
        }
        self.settle_exits();
        for (r, c) in &asked {
            if self.eng.clean_pending(c) {
                let _ = self.eng.clean_timed_out(r, c, false, Duration::ZERO);
            }
            if let Some(d) = self.eng.domid(r) {
                println!("windsor dom0: VM d{d} did not power off in time; destroying it");
                let _ = self.hard_shutdown(r);
            }
        }
        for (r, _) in &vms {
            if let Some(d) = self.eng.domid(r) {
                let uuid = uuid_of(r).unwrap_or_default().to_string();
                self.teardown(&uuid, d);
            }
        }
        self.eng.take_effects();
        println!(
            "windsor dom0: every VM is down ({} had a domain)",
            vms.len()
        );
    }
}

/// What an executed action came to.
#[allow(clippy::large_enum_variant)] // one per call, moved once
enum Step {
    Reply(Reply),
    Wait(Wait),
}

/// A task's success (the XML-RPC `<value>` of the result, nothing for a
/// void call) or failure, as host mode records it.
fn task_outcome(value: &Result<Value, ApiError>, reply: &Reply) -> TaskOutcome {
    match value {
        Ok(v) => {
            let mut result = String::new();
            if !matches!(reply, Reply::Unit) {
                xmlrpc::write_value(&mut result, v);
            }
            TaskOutcome::Success { result }
        }
        Err(e) => failure(e),
    }
}

fn failure(e: &ApiError) -> TaskOutcome {
    let mut error_info = alloc::vec![e.code.clone()];
    error_info.extend(e.params.iter().cloned());
    TaskOutcome::Failure { error_info }
}

/// Every domain but dom0.
fn list(xen: &Xen) -> Option<Vec<DomainInfo>> {
    let mut out = Vec::new();
    let blank = DomainInfo {
        domid: DomId(0),
        state: RunState::Running,
        handle: [0; 16],
        tot_pages: 0,
        max_mem_kib: 0,
        max_vcpus: 0,
        cpu_time_ns: 0,
        privileged: false,
    };
    let mut buf = [blank; 64];
    let mut next = DomId(1);
    loop {
        let n = xen.list(next, &mut buf).ok()?;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Some(out);
        }
        next = DomId(buf[n - 1].domid.0 + 1);
    }
}

/// The refs a `GetAll` answered.
trait RefsOf {
    fn reply_refs(self) -> Vec<Ref>;
}

impl RefsOf for windsor_toolstack::Handled {
    fn reply_refs(self) -> Vec<Ref> {
        match self {
            windsor_toolstack::Handled::Reply(Ok(Reply::Refs(r))) => r,
            _ => Vec::new(),
        }
    }
}
