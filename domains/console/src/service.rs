//! The console backend as a service (feature `std`): xenconsoled's loop
//! over the platform traits, one thread serving every guest's console.
//!
//! [`ConsoleService::start`] runs a thread that, every
//! [`ServiceConfig::scan_every`], picks up what a second thread's
//! `discover` function (which may block) last found: which
//! domains have a console (their console port, as dom0 reads
//! `HVM_PARAM_CONSOLE_EVTCHN`; the page is the guest's reserved grant
//! entry `GNTTAB_RESERVED_CONSOLE`), maps and binds the new ones and drops
//! the ones that are gone. Between scans it waits on the consoles' ports
//! and polls every console in turn through the [`GuestConsole`] core, so
//! each guest is held to its own rate and no guest's output can hold up
//! another's. Lines go to `tracing` (target `console`, level debug: a
//! flooding guest must not flood the host's log) as `[name] text`.
//!
//! Readers ([`Consoles`], cheap to clone) list the consoles and read a
//! console's history from a byte offset (tail and follow). A console
//! exists from the scan that finds its domain until the scan that no
//! longer does: a console object of XenAPI lives as long as the VM's
//! domain.

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec;
use std::vec::Vec;

use xen::platform::{Clock, EventChannel, ForeignMapping, GrantTable};
use xen::{DomId, EvtchnPort, GrantRef};

use crate::{GuestConsole, Limits};

/// A domain with a console, as the discovery function reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The domain.
    pub dom: DomId,
    /// Its console port (`HVM_PARAM_CONSOLE_EVTCHN`).
    pub port: EvtchnPort,
    /// The tag of its lines (the VM's `name_label`, or a service's name).
    pub name: String,
    /// Its handle (the VM's uuid, as the toolstack created the domain).
    pub handle: [u8; 16],
}

/// What a reader sees of one console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// The console's uuid (new for each domain).
    pub uuid: String,
    /// The domain.
    pub dom: DomId,
    /// The tag of its lines.
    pub name: String,
    /// The domain's handle (the VM's uuid for a VM).
    pub handle: [u8; 16],
    /// Bytes taken from the guest so far.
    pub total_bytes: u64,
    /// Lines handed out so far.
    pub lines: u64,
    /// Why it was disconnected, if it was (garbage in its ring).
    pub error: Option<String>,
}

/// A piece of a console's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Byte offset (from the guest's first byte) where `text` starts.
    pub start: u64,
    /// Byte offset where it ends: pass it back to read what follows.
    pub end: u64,
    /// The output, control characters escaped.
    pub text: String,
    /// The console's domain is gone: nothing more will come.
    pub closed: bool,
}

/// How the service runs.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// Bounds applied to every guest's console.
    pub limits: Limits,
    /// How often domains are discovered.
    pub scan_every: Duration,
    /// Longest wait on the consoles' ports between polls.
    pub poll_wait: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            limits: Limits::default(),
            scan_every: Duration::from_millis(50),
            poll_wait: Duration::from_millis(20),
        }
    }
}

struct Entry<M> {
    info: ConsoleInfo,
    core: GuestConsole,
    /// The guest's console port it was attached with.
    remote: EvtchnPort,
    local: EvtchnPort,
    page: M,
    reported: bool,
}

struct Table<M> {
    entries: BTreeMap<u16, Entry<M>>,
    /// Consoles of domains that are gone, newest last: still readable by
    /// uuid (a follower gets the last bytes), no longer listed.
    ended: std::collections::VecDeque<(ConsoleInfo, GuestConsole)>,
}

/// How many ended consoles stay readable.
const ENDED_KEPT: usize = 16;

struct Shared<M> {
    table: Mutex<Table<M>>,
    /// The latest discovery, for the pumping thread to pick up.
    found: Mutex<Option<Vec<Guest>>>,
    stop: AtomicBool,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, Table<M>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The readers' handle on a running [`ConsoleService`].
pub struct Consoles<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Consoles<M> {
    fn clone(&self) -> Self {
        Consoles {
            shared: self.shared.clone(),
        }
    }
}

impl<M> Consoles<M> {
    /// Every console, by domain.
    pub fn list(&self) -> Vec<ConsoleInfo> {
        self.shared
            .lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// The console of `dom`.
    pub fn of_domain(&self, dom: DomId) -> Option<ConsoleInfo> {
        self.shared
            .lock()
            .entries
            .get(&dom.0)
            .map(|e| e.info.clone())
    }

    /// The history of console `uuid` from byte offset `from` (see
    /// [`GuestConsole::history_since`]); `None` if no such console.
    pub fn read(&self, uuid: &str, from: u64) -> Option<Text> {
        let t = self.shared.lock();
        let (core, closed) = match t.entries.values().find(|e| e.info.uuid == uuid) {
            Some(e) => (&e.core, false),
            None => (&t.ended.iter().find(|(i, _)| i.uuid == uuid)?.1, true),
        };
        let (start, text) = core.history_since(from);
        Some(Text {
            start,
            end: core.total_bytes(),
            text,
            closed,
        })
    }
}

/// The running console backend. Stops (and unbinds every console) when
/// dropped.
pub struct ConsoleService<M> {
    shared: Arc<Shared<M>>,
    threads: Vec<JoinHandle<()>>,
}

/// A uuid for a new console: random (keyed hashes of the process's random
/// state, the domain and a counter), in the version 4 layout.
fn new_uuid(dom: DomId, n: u64) -> String {
    use std::hash::BuildHasher;
    let k = std::collections::hash_map::RandomState::new();
    let a = k.hash_one((dom.0, n, 1u8));
    let b = k.hash_one((dom.0, n, 2u8));
    let mut x = [0u8; 16];
    x[..8].copy_from_slice(&a.to_be_bytes());
    x[8..].copy_from_slice(&b.to_be_bytes());
    x[6] = (x[6] & 0x0f) | 0x40;
    x[8] = (x[8] & 0x3f) | 0x80;
    let h: String = x.iter().map(|b| std::format!("{b:02x}")).collect();
    std::format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl<M: ForeignMapping + Send + 'static> ConsoleService<M> {
    /// Starts serving consoles as domain `p` (dom0, which the builder
    /// named as every guest's console domain), finding them with
    /// `discover`.
    pub fn start<P>(
        p: P,
        cfg: ServiceConfig,
        discover: impl FnMut() -> Vec<Guest> + Send + 'static,
    ) -> std::io::Result<Self>
    where
        P: GrantTable<Mapping = M> + EventChannel + Clock + Send + 'static,
    {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                entries: BTreeMap::new(),
                ended: std::collections::VecDeque::new(),
            }),
            found: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        // Discovery may block (the caller's name look-ups): a thread of
        // its own, so that pumping never waits for it.
        let s = shared.clone();
        let mut discover = discover;
        let finder = std::thread::Builder::new()
            .name("console-discover".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Acquire) {
                    let found = discover();
                    *s.found.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
                    std::thread::sleep(cfg.scan_every);
                }
            })?;
        let s = shared.clone();
        let pumper = std::thread::Builder::new()
            .name("console-backend".into())
            .spawn(move || run(p, cfg, &s));
        let pumper = match pumper {
            Ok(t) => t,
            Err(e) => {
                shared.stop.store(true, Ordering::Release);
                let _ = finder.join();
                return Err(e);
            }
        };
        Ok(ConsoleService {
            shared,
            threads: vec![finder, pumper],
        })
    }

    /// A readers' handle.
    pub fn consoles(&self) -> Consoles<M> {
        Consoles {
            shared: self.shared.clone(),
        }
    }

    /// Stops the service and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<M> Drop for ConsoleService<M> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run<P>(p: P, cfg: ServiceConfig, shared: &Shared<P::Mapping>)
where
    P: GrantTable + EventChannel + Clock,
{
    let mut next_scan = Duration::ZERO;
    let mut attached = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        let now = p.now();
        if now >= next_scan {
            next_scan = now + cfg.scan_every;
            let found = shared
                .found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(found) = found {
                rescan(&p, &cfg, shared, &found, &mut attached);
            }
        }
        let ports: Vec<EvtchnPort> = {
            let mut t = shared.lock();
            let now = p.now();
            for e in t.entries.values_mut() {
                pump(&p, now, e);
            }
            t.entries.values().map(|e| e.local).collect()
        };
        let wait = cfg.poll_wait.min(next_scan.saturating_sub(p.now()));
        if ports.is_empty() {
            std::thread::sleep(wait);
        } else if p.wait(&ports, Some(wait)).is_err() {
            break;
        }
        for port in ports {
            let _ = p.clear_pending(port);
        }
    }
    let mut t = shared.lock();
    for (_, e) in std::mem::take(&mut t.entries) {
        let ended = detach(&p, e);
        keep_ended(&mut t, ended);
    }
}

fn keep_ended<M>(t: &mut Table<M>, ended: (ConsoleInfo, GuestConsole)) {
    if t.ended.len() == ENDED_KEPT {
        t.ended.pop_front();
    }
    t.ended.push_back(ended);
}

/// Attaches the consoles of new domains, drops those of gone ones.
fn rescan<P>(
    p: &P,
    cfg: &ServiceConfig,
    shared: &Shared<P::Mapping>,
    found: &[Guest],
    attached: &mut u64,
) where
    P: GrantTable + EventChannel + Clock,
{
    let mut t = shared.lock();
    let gone: Vec<u16> = t
        .entries
        .iter()
        .filter(|(d, e)| {
            !found
                .iter()
                .any(|g| g.dom.0 == **d && g.port == e.remote && g.handle == e.info.handle)
        })
        .map(|(d, _)| *d)
        .collect();
    for d in gone {
        if let Some(e) = t.entries.remove(&d) {
            let ended = detach(p, e);
            keep_ended(&mut t, ended);
        }
    }
    for g in found {
        if t.entries.contains_key(&g.dom.0) {
            continue;
        }
        match attach(p, cfg, g, *attached) {
            Ok(e) => {
                *attached += 1;
                tracing::debug!(dom = g.dom.0, name = %g.name, uuid = %e.info.uuid, "console attached");
                t.entries.insert(g.dom.0, e);
            }
            // A domain dying under us, or one whose console is served
            // elsewhere: try again at the next scan.
            Err(e) => tracing::trace!(dom = g.dom.0, %e, "console not attached"),
        }
    }
}

fn attach<P>(
    p: &P,
    cfg: &ServiceConfig,
    g: &Guest,
    n: u64,
) -> Result<Entry<P::Mapping>, xen::platform::Error>
where
    P: GrantTable + EventChannel + Clock,
{
    let page = p.map(g.dom, &[GrantRef::RESERVED_CONSOLE], false)?;
    let local = p.bind_interdomain(g.dom, g.port)?;
    Ok(Entry {
        info: ConsoleInfo {
            uuid: new_uuid(g.dom, n),
            dom: g.dom,
            name: g.name.clone(),
            handle: g.handle,
            total_bytes: 0,
            lines: 0,
            error: None,
        },
        core: GuestConsole::new(g.name.clone(), cfg.limits),
        remote: g.port,
        local,
        page,
        reported: false,
    })
}

/// Takes what the guest wrote and tells it there is room again.
fn pump<P>(p: &P, now: Duration, e: &mut Entry<P::Mapping>)
where
    P: GrantTable + EventChannel + Clock,
{
    let Some(mem) = e.page.rw() else {
        return;
    };
    let lines = &mut e.info.lines;
    match e.core.poll(now, &mem, |name, line| {
        *lines += 1;
        tracing::debug!(target: "console", "[{name}] {line}");
    }) {
        Ok(polled) if polled.bytes > 0 => {
            let _ = p.notify(e.local);
        }
        Ok(_) => {}
        Err(err) => {
            if !e.reported {
                e.reported = true;
                tracing::warn!(dom = e.info.dom.0, name = %e.info.name, "{err}");
                e.info.error = Some(err.to_string());
            }
        }
    }
    e.info.total_bytes = e.core.total_bytes();
}

/// Takes the guest's last output (its page is still mapped), unbinds it;
/// returns what stays readable.
fn detach<P>(p: &P, mut e: Entry<P::Mapping>) -> (ConsoleInfo, GuestConsole)
where
    P: GrantTable + EventChannel + Clock,
{
    if let Some(mem) = e.page.rw() {
        let lines = &mut e.info.lines;
        let _ = e.core.drain(&mem, |name, line| {
            *lines += 1;
            tracing::debug!(target: "console", "[{name}] {line}");
        });
        e.info.total_bytes = e.core.total_bytes();
    }
    let lines = &mut e.info.lines;
    e.core.flush(|name, line| {
        *lines += 1;
        tracing::debug!(target: "console", "[{name}] {line}");
    });
    let _ = p.close(e.local);
    tracing::debug!(dom = e.info.dom.0, uuid = %e.info.uuid, "console detached");
    (e.info, e.core)
}
