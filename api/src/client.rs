//! The Rust client: what the `windsor` command line uses to talk to the API.
//!
//! [`Client`] is blocking (it owns a small current-thread tokio runtime) and
//! keeps one HTTP/1.1 connection open, reconnecting once if the server
//! closed it. It speaks XML-RPC or JSON-RPC ([`Protocol`]) over TCP or a
//! Unix socket ([`Endpoint`]).
//!
//! ```no_run
//! use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
//! let mut c = Client::connect(Endpoint::parse("127.0.0.1:8080")?, Protocol::JsonRpc)?;
//! c.login("root", "secret")?;
//! let vm = c.vm_create(&VmSpec::fuzz_target("demo"))?;
//! c.vm_start(&vm, false)?;
//! for v in c.vm_list()? {
//!     println!("{} {} {}", v.uuid, v.name_label, v.power_state);
//! }
//! # Ok::<(), windsor_api::client::ClientError>(())
//! ```

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{eprintln, format, println, vec};

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::error::{ApiError, WireError};
use crate::value::Value;
use crate::{jsonrpc, xmlrpc};

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` over TCP.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `host:port`, `http://host:port[/]`, `unix:/path` or `/path`.
    pub fn parse(s: &str) -> Result<Endpoint, ClientError> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
            return Err(ClientError::BadEndpoint(s.to_owned()));
        }
        Ok(Endpoint::Tcp(hostport.to_owned()))
    }
}

/// The wire format to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// XML-RPC at `/`.
    XmlRpc,
    /// JSON-RPC 2.0 at `/jsonrpc`.
    JsonRpc,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a XenAPI failure.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The endpoint string is not `host:port`, `http://host:port` or a path.
    #[error("bad endpoint {0:?}: expected host:port, http://host:port or unix:/path")]
    BadEndpoint(String),
    /// Connecting or the runtime failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with an HTTP error and no XenAPI body.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The reply did not parse.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A session call before `login`.
    #[error("not logged in")]
    NotLoggedIn,
    /// The reply had an unexpected shape for a typed helper.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// A VM as `windsor vm list` shows it (serializes for `--json`; for whole
/// records, [`crate::jsonrpc::to_json`] turns any [`Value`] into JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VmSummary {
    /// Its reference.
    pub r: String,
    /// Its uuid.
    pub uuid: String,
    /// Its name.
    pub name_label: String,
    /// `Halted`, `Running`, `Paused` or `Suspended`.
    pub power_state: String,
    /// Its domain id, -1 without a domain.
    pub domid: i64,
    /// `memory_static_max`, bytes.
    pub memory: i64,
    /// `VCPUs_max`.
    pub vcpus: i64,
    /// Whether it is a template.
    pub is_a_template: bool,
}

impl VmSummary {
    fn from_record(r: &str, v: &Value) -> VmSummary {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let i = |k: &str| v.get(k).and_then(Value::as_int).unwrap_or(0);
        VmSummary {
            r: r.to_owned(),
            uuid: s("uuid"),
            name_label: s("name_label"),
            power_state: s("power_state"),
            domid: v.get("domid").and_then(Value::as_int).unwrap_or(-1),
            memory: i("memory_static_max"),
            vcpus: i("VCPUs_max"),
            is_a_template: v
                .get("is_a_template")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

/// What `VM.create` is given by [`Client::vm_create`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    /// `name_label`.
    pub name: String,
    /// `PV_kernel`: a guest image name in host mode (`fuzz-target`).
    pub kernel: String,
    /// Memory, bytes (static max and the dynamic range).
    pub memory: i64,
    /// vCPUs (max and at startup).
    pub vcpus: i64,
}

impl VmSpec {
    /// The built-in fuzz-target guest with 16 MiB and one vCPU.
    pub fn fuzz_target(name: &str) -> VmSpec {
        VmSpec {
            name: name.to_owned(),
            kernel: "fuzz-target".into(),
            memory: 16 << 20,
            vcpus: 1,
        }
    }

    /// The record for `VM.create`.
    pub fn record(&self) -> Value {
        Value::record([
            ("name_label", Value::str(self.name.clone())),
            ("PV_kernel", Value::str(self.kernel.clone())),
            ("domain_type", Value::str("pvh")),
            ("memory_static_max", Value::Int(self.memory)),
            ("memory_static_min", Value::Int(self.memory)),
            ("memory_dynamic_max", Value::Int(self.memory)),
            ("memory_dynamic_min", Value::Int(self.memory)),
            ("VCPUs_max", Value::Int(self.vcpus)),
            ("VCPUs_at_startup", Value::Int(self.vcpus)),
        ])
    }
}

/// A blocking XenAPI client.
pub struct Client {
    rt: tokio::runtime::Runtime,
    endpoint: Endpoint,
    protocol: Protocol,
    session: Option<String>,
    conn: Option<SendRequest<Full<Bytes>>>,
    next_id: u64,
}

impl Client {
    /// A client for `endpoint`; connects lazily, at the first call.
    pub fn connect(endpoint: Endpoint, protocol: Protocol) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Client {
            rt,
            endpoint,
            protocol,
            session: None,
            conn: None,
            next_id: 0,
        })
    }

    /// The session reference, once logged in.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Uses an existing session reference.
    pub fn set_session(&mut self, session: Option<String>) {
        self.session = session;
    }

    async fn open(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        match endpoint {
            Endpoint::Tcp(hp) => {
                let s = tokio::net::TcpStream::connect(hp.as_str()).await?;
                let _ = s.set_nodelay(true);
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(send)
            }
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(send)
            }
        }
    }

    fn exchange(&mut self, body: String) -> Result<Bytes, ClientError> {
        let (path, ct) = match self.protocol {
            Protocol::XmlRpc => ("/", "text/xml"),
            Protocol::JsonRpc => ("/jsonrpc", "application/json"),
        };
        let body = Bytes::from(body);
        let (status, _, bytes) = self.send(|host| {
            Request::post(path)
                .header(HOST, host)
                .header(CONTENT_TYPE, ct)
                .body(Full::new(body.clone()))
        })?;
        if !(200..300).contains(&status) && bytes.is_empty() {
            return Err(ClientError::Status(status));
        }
        Ok(bytes)
    }

    /// `GET path` on the API's endpoint: (status, headers, body).
    fn get(&mut self, path: &str) -> Result<(u16, hyper::HeaderMap, Bytes), ClientError> {
        self.send(|host| {
            Request::get(path)
                .header(HOST, host)
                .body(Full::new(Bytes::new()))
        })
    }

    /// One request (made by `request` for the `Host` header) on the kept
    /// connection, or a new one: (status, headers, body). A kept-alive
    /// connection the server closed is retried once on a fresh one.
    fn send(
        &mut self,
        request: impl Fn(&str) -> Result<Request<Full<Bytes>>, hyper::http::Error>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), ClientError> {
        let host = match &self.endpoint {
            Endpoint::Tcp(hp) => hp.clone(),
            Endpoint::Unix(_) => "localhost".to_owned(),
        };
        let endpoint = self.endpoint.clone();
        let mut conn = self.conn.take();
        let result = self.rt.block_on(async {
            for attempt in 0..2 {
                let mut send = match conn.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => Self::open(&endpoint).await?,
                };
                let req = request(&host).map_err(|e| ClientError::Unexpected(e.to_string()))?;
                let resp = match send.ready().await {
                    Ok(()) => send.send_request(req).await,
                    Err(e) => Err(e),
                };
                match resp {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        let bytes = resp.into_body().collect().await?.to_bytes();
                        return Ok((send, (status, headers, bytes)));
                    }
                    Err(e) if attempt == 0 && (e.is_closed() || e.is_canceled()) => continue,
                    Err(e) => return Err(ClientError::Http(e)),
                }
            }
            Err(ClientError::Unexpected("connection closed twice".into()))
        });
        let (send, r) = result?;
        self.conn = Some(send);
        Ok(r)
    }

    /// Where the console of VM `vm` (a ref) is read: `VM.get_consoles`,
    /// then the path of its `location` (asked of this client's endpoint,
    /// since the location names the server's TCP address, which a client
    /// on the Unix socket or behind a tunnel may not reach). Fails with
    /// [`ClientError::Unexpected`] if the VM has no console (it is not
    /// running).
    pub fn vm_console_path(&mut self, vm: &str) -> Result<String, ClientError> {
        let consoles = self.session_call("VM.get_consoles", &[Value::str(vm)])?;
        let c = consoles
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ClientError::Unexpected("the VM has no console (is it running?)".into())
            })?
            .to_owned();
        let location = self.session_call("console.get_location", &[Value::str(c)])?;
        let location = location
            .as_str()
            .ok_or_else(|| ClientError::Unexpected("console location is not a string".into()))?;
        location
            .find("/console")
            .map(|i| location[i..].to_owned())
            .ok_or_else(|| ClientError::Unexpected(format!("console location {location:?}")))
    }

    /// The console text at `path` (from [`vm_console_path`](Self::vm_console_path))
    /// from byte `offset` of the guest's output (see [`crate::console`]).
    pub fn console_read(
        &mut self,
        path: &str,
        offset: u64,
    ) -> Result<crate::console::ConsoleText, ClientError> {
        let session = self.session.clone().ok_or(ClientError::NotLoggedIn)?;
        let (status, headers, body) =
            self.get(&format!("{path}&session_id={session}&offset={offset}"))?;
        if status != 200 {
            return Err(ClientError::Unexpected(format!(
                "console: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        let num = |h: &str| -> Result<u64, ClientError> {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| ClientError::Unexpected(format!("console: no {h} header")))
        };
        Ok(crate::console::ConsoleText {
            start: num("x-console-start")?,
            end: num("x-console-end")?,
            text: String::from_utf8_lossy(&body).into_owned(),
            closed: headers.contains_key("x-console-closed"),
        })
    }

    /// Calls `method` with exactly `params` (no session added).
    pub fn call(&mut self, method: &str, params: &[Value]) -> Result<Value, ClientError> {
        self.next_id += 1;
        let body = match self.protocol {
            Protocol::XmlRpc => xmlrpc::emit_call(method, params),
            Protocol::JsonRpc => jsonrpc::emit_request(self.next_id, method, params),
        };
        let bytes = self.exchange(body)?;
        let result = match self.protocol {
            Protocol::XmlRpc => xmlrpc::parse_response(&bytes)?,
            Protocol::JsonRpc => jsonrpc::parse_response(&bytes)?,
        };
        Ok(result?)
    }

    /// Calls `method` with the session first, then `params`.
    pub fn session_call(&mut self, method: &str, params: &[Value]) -> Result<Value, ClientError> {
        let s = self.session.clone().ok_or(ClientError::NotLoggedIn)?;
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(Value::str(s));
        all.extend_from_slice(params);
        self.call(method, &all)
    }

    /// `session.login_with_password`; keeps the session.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let s = self.call(
            "session.login_with_password",
            &[
                Value::str(user),
                Value::str(password),
                Value::str("2.21"),
                Value::str("windsor"),
            ],
        )?;
        let s = s
            .as_str()
            .ok_or_else(|| ClientError::Unexpected(format!("session {s:?}")))?;
        self.session = Some(s.to_owned());
        Ok(())
    }

    /// `session.logout`.
    pub fn logout(&mut self) -> Result<(), ClientError> {
        self.session_call("session.logout", &[])?;
        self.session = None;
        Ok(())
    }

    fn unit(&mut self, method: &str, params: &[Value]) -> Result<(), ClientError> {
        self.session_call(method, params).map(|_| ())
    }

    fn reference(&mut self, method: &str, params: &[Value]) -> Result<String, ClientError> {
        let v = self.session_call(method, params)?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("{method}: {v:?}")))
    }

    /// Every VM (templates included), from `VM.get_all_records`, by name.
    pub fn vm_list(&mut self) -> Result<Vec<VmSummary>, ClientError> {
        let v = self.session_call("VM.get_all_records", &[])?;
        let m = v
            .as_struct()
            .ok_or_else(|| ClientError::Unexpected("VM.get_all_records".into()))?;
        let mut out: Vec<VmSummary> = m
            .iter()
            .map(|(r, rec)| VmSummary::from_record(r, rec))
            .collect();
        out.sort_by(|a, b| a.name_label.cmp(&b.name_label).then(a.uuid.cmp(&b.uuid)));
        Ok(out)
    }

    /// Finds a VM by reference, uuid or name label (unique).
    pub fn vm_find(&mut self, key: &str) -> Result<String, ClientError> {
        if key.starts_with("OpaqueRef:") {
            return Ok(key.to_owned());
        }
        if uuid::Uuid::parse_str(key).is_ok() {
            return self.reference("VM.get_by_uuid", &[Value::str(key)]);
        }
        let v = self.session_call("VM.get_by_name_label", &[Value::str(key)])?;
        match v.as_array() {
            Some([one]) => one
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Unexpected(format!("{one:?}"))),
            Some([]) => Err(ApiError::new(crate::error::codes::UUID_INVALID, ["VM", key]).into()),
            _ => Err(ClientError::Unexpected(format!(
                "more than one VM is named {key:?}"
            ))),
        }
    }

    /// `VM.get_record`.
    pub fn vm_record(&mut self, vm: &str) -> Result<Value, ClientError> {
        self.session_call("VM.get_record", &[Value::str(vm)])
    }

    /// `VM.create` from a spec; returns the reference.
    pub fn vm_create(&mut self, spec: &VmSpec) -> Result<String, ClientError> {
        self.reference("VM.create", &[spec.record()])
    }

    /// `VM.clone(vm, name)` then `VM.provision`: a startable VM from a
    /// template.
    pub fn vm_install(&mut self, template: &str, name: &str) -> Result<String, ClientError> {
        let vm = self.reference("VM.clone", &[Value::str(template), Value::str(name)])?;
        self.unit("VM.provision", &[Value::str(vm.clone())])?;
        Ok(vm)
    }

    /// `VM.start(vm, paused, false)`.
    pub fn vm_start(&mut self, vm: &str, paused: bool) -> Result<(), ClientError> {
        self.unit(
            "VM.start",
            &[Value::str(vm), Value::Bool(paused), Value::Bool(false)],
        )
    }

    /// `VM.pause`.
    pub fn vm_pause(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.pause", &[Value::str(vm)])
    }

    /// `VM.unpause`.
    pub fn vm_unpause(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.unpause", &[Value::str(vm)])
    }

    /// `VM.clean_shutdown`.
    pub fn vm_clean_shutdown(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.clean_shutdown", &[Value::str(vm)])
    }

    /// `VM.hard_shutdown`.
    pub fn vm_hard_shutdown(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.hard_shutdown", &[Value::str(vm)])
    }

    /// `VM.clean_reboot`.
    pub fn vm_clean_reboot(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.clean_reboot", &[Value::str(vm)])
    }

    /// `VM.hard_reboot`.
    pub fn vm_hard_reboot(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.hard_reboot", &[Value::str(vm)])
    }

    /// `VM.suspend`.
    pub fn vm_suspend(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.suspend", &[Value::str(vm)])
    }

    /// `VM.resume(vm, paused, false)`.
    pub fn vm_resume(&mut self, vm: &str, paused: bool) -> Result<(), ClientError> {
        self.unit(
            "VM.resume",
            &[Value::str(vm), Value::Bool(paused), Value::Bool(false)],
        )
    }

    /// `VM.destroy`.
    pub fn vm_destroy(&mut self, vm: &str) -> Result<(), ClientError> {
        self.unit("VM.destroy", &[Value::str(vm)])
    }

    /// The host records (`host.get_all_records`), by reference.
    pub fn hosts(&mut self) -> Result<Vec<(String, Value)>, ClientError> {
        let v = self.session_call("host.get_all_records", &[])?;
        match v {
            Value::Struct(m) => Ok(m.into_iter().collect()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// `event.from(classes, token, timeout)`: the events and the next token.
    pub fn event_from(
        &mut self,
        classes: &[&str],
        token: &str,
        timeout_s: f64,
    ) -> Result<(Vec<Value>, String), ClientError> {
        let v = self.session_call(
            "event.from",
            &[
                Value::strings(classes.iter().copied()),
                Value::str(token),
                Value::Double(timeout_s),
            ],
        )?;
        let events = v
            .get("events")
            .and_then(Value::as_array)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Unexpected("event.from without token".into()))?
            .to_owned();
        Ok((events, token))
    }

    /// `xenstore.read(path)` (Windsor extension).
    pub fn xs_read(&mut self, path: &str) -> Result<String, ClientError> {
        self.reference("xenstore.read", &[Value::str(path)])
    }

    /// `xenstore.write(path, value)`.
    pub fn xs_write(&mut self, path: &str, value: &str) -> Result<(), ClientError> {
        self.unit("xenstore.write", &[Value::str(path), Value::str(value)])
    }

    /// `xenstore.directory(path)`: the children's names.
    pub fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, ClientError> {
        let v = self.session_call("xenstore.directory", &[Value::str(path)])?;
        strings(&v).ok_or_else(|| ClientError::Unexpected(format!("xenstore.directory: {v:?}")))
    }

    /// `xenstore.rm(path)`.
    pub fn xs_rm(&mut self, path: &str) -> Result<(), ClientError> {
        self.unit("xenstore.rm", &[Value::str(path)])
    }

    /// `xenstore.watch(path, timeout, cursor)`: the paths that changed
    /// after `cursor` (`""` opens a watcher) and the next cursor.
    pub fn xs_watch(
        &mut self,
        path: &str,
        timeout_s: f64,
        cursor: &str,
    ) -> Result<(Vec<String>, String), ClientError> {
        let v = self.session_call(
            "xenstore.watch",
            &[
                Value::str(path),
                Value::Double(timeout_s),
                Value::str(cursor),
            ],
        )?;
        let bad = || ClientError::Unexpected(format!("xenstore.watch: {v:?}"));
        let events = v.get("events").and_then(strings).ok_or_else(bad)?;
        let cursor = v
            .get("cursor")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_owned();
        Ok((events, cursor))
    }

    /// `xenstore.unwatch(cursor)`.
    pub fn xs_unwatch(&mut self, cursor: &str) -> Result<(), ClientError> {
        self.unit("xenstore.unwatch", &[Value::str(cursor)])
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_come_from_records_and_serialize() {
        let rec = Value::record([
            ("uuid", Value::str("u")),
            ("name_label", Value::str("n")),
            ("power_state", Value::str("Running")),
            ("domid", Value::str("7")),
            ("memory_static_max", Value::str("16777216")),
            ("VCPUs_max", Value::Int(2)),
            ("is_a_template", Value::Bool(false)),
        ]);
        let s = VmSummary::from_record("OpaqueRef:u", &rec);
        assert_eq!(s.domid, 7);
        assert_eq!(s.memory, 16 << 20);
        assert_eq!(s.vcpus, 2);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["power_state"], "Running");
        assert_eq!(j["r"], "OpaqueRef:u");
        let spec = VmSpec::fuzz_target("x").record();
        assert_eq!(spec.get("PV_kernel"), Some(&Value::str("fuzz-target")));
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:80").unwrap(),
            Endpoint::Tcp("127.0.0.1:80".into())
        );
        assert_eq!(
            Endpoint::parse("http://h:1/").unwrap(),
            Endpoint::Tcp("h:1".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/x").unwrap(),
            Endpoint::Unix("/run/x".into())
        );
        assert_eq!(
            Endpoint::parse("/run/x").unwrap(),
            Endpoint::Unix("/run/x".into())
        );
        assert!(Endpoint::parse("nohost").is_err());
        assert!(Endpoint::parse("http://h:1/x").is_err());
    }
}
