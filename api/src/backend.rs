//! The seam to the toolstack, and an in-memory stand-in for tests.
//!
//! The server hands every parsed [`Action`] to a [`Backend`]; in Windsor
//! that is the toolstack service
//! ([`Toolstack`](windsor_toolstack::service::Toolstack) implements
//! [`Backend`]; in host mode serve `Arc::new(host.toolstack.clone())`). [`MemoryBackend`]
//! implements the same contract over records in memory (power-state rules,
//! XAPI errors, the event sequence) so the API and its real-client tests run
//! without a hypervisor. It holds no devices and boots nothing: it is a test
//! double, not a toolstack. Its `xenstore.*` calls go to an in-process store
//! of its own ([`MemoryBackend::store`]) through the toolstack's own code
//! (`windsor_toolstack::xsapi`), watches included.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use windsor_toolstack::action::{
    ref_of, Action, ActionError, ActionResult, Class, Event, EventBatch, EventOp, HostRecord, Map,
    NetworkRecord, NewRecord, PbdRecord, PifRecord, PoolRecord, PowerState, Record, Reply,
    SrRecord, SrSpec, TaskOutcome, VmRecord,
};
use windsor_toolstack::lifecycle::Op;
use windsor_toolstack::localstore::LocalStore;
use windsor_toolstack::task::{self, TaskBook, TaskLimits};
use windsor_toolstack::xsapi::{self, WatchHub, WatchLimits};

/// What the API server needs from the toolstack.
pub trait Backend: Send + Sync + 'static {
    /// Performs one action; may block (clean shutdown, `event.from`).
    fn handle(&self, action: Action) -> ActionResult;
}

impl<P, S, I> Backend for windsor_toolstack::service::Toolstack<P, S, I>
where
    P: xen::platform::DomainControl
        + xen::platform::DomainBuilder
        + xen::platform::DomainSave
        + xen::platform::EventChannel
        + Send
        + Sync
        + 'static,
    S: windsor_xenstore::client::XenStore + Send + Sync + 'static,
    I: windsor_toolstack::service::Introducer + Send + Sync + 'static,
{
    fn handle(&self, action: Action) -> ActionResult {
        windsor_toolstack::service::Toolstack::handle(self, action)
    }
}

/// Events kept for `event.from`; older tokens get `EVENTS_LOST`.
const EVENT_HISTORY: usize = 10_000;

#[derive(Default)]
struct State {
    objects: BTreeMap<Class, BTreeMap<String, Record>>,
    events: Vec<Event>,
    counter: u64,
    next_domid: i64,
    tasks: TaskBook,
}

/// An in-memory backend with XAPI's lifecycle rules (see the module doc).
pub struct MemoryBackend {
    state: Mutex<State>,
    changed: Condvar,
    host: String,
    xs: LocalStore,
    hub: Option<WatchHub>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn set_uuid(r: &mut Record, u: &str) {
    match r {
        Record::Vm(x) => x.uuid = u.into(),
        Record::Host(x) => x.uuid = u.into(),
        Record::Pool(x) => x.uuid = u.into(),
        Record::Network(x) => x.uuid = u.into(),
        Record::Sr(x) => x.uuid = u.into(),
        Record::Vdi(x) => x.uuid = u.into(),
        Record::Vif(x) => x.uuid = u.into(),
        Record::Vbd(x) => x.uuid = u.into(),
        Record::Pbd(x) => x.uuid = u.into(),
        Record::Pif(x) => x.uuid = u.into(),
        Record::Task(x) => x.uuid = u.into(),
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    task::datetime(secs)
}

fn bad_state(vm: &str, expected: PowerState, actual: PowerState) -> ActionError {
    ActionError::VmBadPowerState {
        vm: vm.to_owned(),
        expected,
        actual,
    }
}

impl MemoryBackend {
    /// A backend holding one pool, one host, its local SR (with a plugged
    /// PBD), one network and the `Windsor fuzz-target` template.
    pub fn new() -> MemoryBackend {
        Self::with_task_limits(TaskLimits::default())
    }

    /// [`MemoryBackend::new`] keeping at most `limits` tasks.
    pub fn with_task_limits(limits: TaskLimits) -> MemoryBackend {
        Self::with_limits(limits, WatchLimits::default())
    }

    /// The store `xenstore.*` calls act on (a dom0 connection; connect
    /// others to play a guest).
    pub fn store(&self) -> &LocalStore {
        &self.xs
    }

    /// Open `xenstore.watch` watchers (0 when watches are not served).
    pub fn xs_watchers(&self) -> usize {
        self.hub.as_ref().map_or(0, WatchHub::watchers)
    }

    /// [`MemoryBackend::new`] with task and xenstore watch limits.
    pub fn with_limits(limits: TaskLimits, watch: WatchLimits) -> MemoryBackend {
        // The counter starts at 1: token 0 means "from the start".
        let mut st = State {
            next_domid: 1,
            counter: 1,
            tasks: TaskBook::new(limits),
            ..State::default()
        };
        let host_uuid = uuid();
        let host = ref_of(&host_uuid);
        let mut insert = |rec: Record| {
            let u = rec.uuid().to_owned();
            st.objects
                .entry(rec.class())
                .or_default()
                .insert(ref_of(&u), rec);
        };
        let sr = uuid();
        let pbd = uuid();
        let net = uuid();
        let pif = uuid();
        insert(Record::Host(HostRecord {
            uuid: host_uuid.clone(),
            PBDs: vec![ref_of(&pbd)],
            PIFs: vec![ref_of(&pif)],
            name_label: "windsor".into(),
            hostname: "windsor".into(),
            address: "127.0.0.1".into(),
            ..HostRecord::default()
        }));
        insert(Record::Sr(SrRecord {
            uuid: sr.clone(),
            name_label: "Local storage".into(),
            ty: "ext".into(),
            PBDs: vec![ref_of(&pbd)],
            ..SrRecord::default()
        }));
        insert(Record::Pbd(PbdRecord {
            uuid: pbd,
            host: host.clone(),
            SR: ref_of(&sr),
            currently_attached: true,
            ..PbdRecord::default()
        }));
        insert(Record::Pool(PoolRecord {
            uuid: uuid(),
            name_label: String::new(),
            master: host.clone(),
            default_SR: ref_of(&sr),
            suspend_image_SR: ref_of(&sr),
            crash_dump_SR: ref_of(&sr),
            ..PoolRecord::default()
        }));
        insert(Record::Pif(PifRecord {
            uuid: pif.clone(),
            device: "eth0".into(),
            network: ref_of(&net),
            host: host.clone(),
            MAC: "00:16:3e:00:00:01".into(),
            currently_attached: true,
            management: true,
            ..PifRecord::default()
        }));
        insert(Record::Network(NetworkRecord {
            uuid: net,
            PIFs: vec![ref_of(&pif)],
            name_label: "Pool-wide network associated with eth0".into(),
            bridge: "xenbr0".into(),
            ..NetworkRecord::default()
        }));
        insert(Record::Vm(VmRecord {
            uuid: uuid(),
            name_label: "Windsor fuzz-target".into(),
            is_a_template: true,
            is_default_template: true,
            PV_kernel: "fuzz-target".into(),
            memory_static_max: 16 << 20,
            memory_dynamic_max: 16 << 20,
            memory_dynamic_min: 16 << 20,
            memory_target: 16 << 20,
            ..VmRecord::default()
        }));
        let xs = LocalStore::new();
        let hub = match WatchHub::new(xs.connect(xen::DomId::DOM0), watch) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "no xenstore watches: cannot start the pump thread");
                None
            }
        };
        MemoryBackend {
            state: Mutex::new(st),
            changed: Condvar::new(),
            host,
            xs,
            hub,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_event(&self, st: &mut State, class: Class, r: &str, op: EventOp) {
        st.counter += 1;
        let snapshot = st.objects.get(&class).and_then(|m| m.get(r)).cloned();
        st.events.push(Event {
            id: st.counter,
            class,
            operation: op,
            r: r.to_owned(),
            snapshot: if op == EventOp::Del { None } else { snapshot },
        });
        if st.events.len() > EVENT_HISTORY {
            let drop = st.events.len() - EVENT_HISTORY;
            st.events.drain(..drop);
        }
        self.changed.notify_all();
    }

    fn vm_mut<'a>(st: &'a mut State, vm: &str) -> Result<&'a mut VmRecord, ActionError> {
        match st.objects.get_mut(&Class::Vm).and_then(|m| m.get_mut(vm)) {
            Some(Record::Vm(v)) => Ok(v),
            _ => Err(ActionError::HandleInvalid {
                class: Class::Vm,
                r: vm.to_owned(),
            }),
        }
    }

    /// Moves `vm` from one of `from` to `to`, as a power operation named `op`.
    fn transition(&self, vm: &str, from: &[PowerState], to: PowerState, op: Op) -> ActionResult {
        let mut st = self.lock();
        let domid = st.next_domid;
        let host = self.host.clone();
        let v = Self::vm_mut(&mut st, vm)?;
        if v.is_a_template {
            return Err(ActionError::VmIsTemplate {
                vm: vm.to_owned(),
                op,
            });
        }
        if !from.contains(&v.power_state) {
            return Err(bad_state(vm, from[0], v.power_state));
        }
        let had_domain = matches!(v.power_state, PowerState::Running | PowerState::Paused);
        let fresh_domain = matches!(
            op,
            Op::Start | Op::Resume | Op::CleanReboot | Op::HardReboot
        );
        v.power_state = to;
        let mut used_domid = false;
        match to {
            PowerState::Running | PowerState::Paused => {
                if fresh_domain || !had_domain {
                    v.domid = domid;
                    used_domid = true;
                }
                v.resident_on = host;
            }
            PowerState::Halted | PowerState::Suspended => {
                v.domid = -1;
                v.resident_on = windsor_toolstack::action::NULL_REF.into();
            }
        }
        if used_domid {
            st.next_domid += 1;
        }
        self.record_event(&mut st, Class::Vm, vm, EventOp::Mod);
        Ok(Reply::Unit)
    }

    fn get(&self, class: Class, r: &str) -> Result<Record, ActionError> {
        self.lock()
            .objects
            .get(&class)
            .and_then(|m| m.get(r))
            .cloned()
            .ok_or_else(|| ActionError::HandleInvalid {
                class,
                r: r.to_owned(),
            })
    }

    fn modify(
        &self,
        class: Class,
        r: &str,
        f: impl FnOnce(&mut Record) -> Result<(), ActionError>,
    ) -> ActionResult {
        let mut st = self.lock();
        let rec = st
            .objects
            .get_mut(&class)
            .and_then(|m| m.get_mut(r))
            .ok_or_else(|| ActionError::HandleInvalid {
                class,
                r: r.to_owned(),
            })?;
        f(rec)?;
        self.record_event(&mut st, class, r, EventOp::Mod);
        Ok(Reply::Unit)
    }

    fn modify_vm(
        &self,
        vm: &str,
        f: impl FnOnce(&mut VmRecord) -> Result<(), ActionError>,
    ) -> ActionResult {
        self.modify(Class::Vm, vm, |rec| match rec {
            Record::Vm(v) => f(v),
            _ => Err(ActionError::internal("not a VM")),
        })
    }

    fn insert(&self, st: &mut State, rec: Record) -> String {
        let class = rec.class();
        let r = ref_of(rec.uuid());
        st.objects.entry(class).or_default().insert(r.clone(), rec);
        self.record_event(st, class, &r, EventOp::Add);
        r
    }

    fn remove(&self, st: &mut State, class: Class, r: &str) {
        if let Some(m) = st.objects.get_mut(&class) {
            m.remove(r);
        }
        self.record_event(st, class, r, EventOp::Del);
    }

    fn sr_add(&self, spec: SrSpec, pbd_to: Option<(String, Map)>) -> ActionResult {
        let mut st = self.lock();
        let u = if spec.uuid.is_empty() {
            uuid()
        } else {
            spec.uuid.clone()
        };
        let r = ref_of(&u);
        if st
            .objects
            .get(&Class::Sr)
            .is_some_and(|m| m.contains_key(&r))
        {
            return Err(ActionError::SrUuidExists { uuid: u });
        }
        let mut sr = SrRecord {
            uuid: u,
            name_label: spec.name_label,
            name_description: spec.name_description,
            ty: spec.ty.to_ascii_lowercase(),
            content_type: spec.content_type,
            shared: spec.shared,
            sm_config: spec.sm_config,
            physical_size: spec.physical_size,
            ..SrRecord::default()
        };
        if let Some((host, device_config)) = pbd_to {
            let Some(Record::Host(h)) = st
                .objects
                .get_mut(&Class::Host)
                .and_then(|m| m.get_mut(&host))
            else {
                return Err(ActionError::HandleInvalid {
                    class: Class::Host,
                    r: host,
                });
            };
            let pbd = uuid();
            h.PBDs.push(ref_of(&pbd));
            sr.PBDs.push(ref_of(&pbd));
            self.record_event(&mut st, Class::Host, &host, EventOp::Mod);
            self.insert(
                &mut st,
                Record::Pbd(PbdRecord {
                    uuid: pbd,
                    host,
                    SR: r.clone(),
                    device_config,
                    currently_attached: true,
                    other_config: Map::new(),
                }),
            );
        }
        Ok(Reply::Ref(self.insert(&mut st, Record::Sr(sr))))
    }

    /// `SR.destroy` (`destroy`) and `SR.forget`, with XAPI's checks.
    fn sr_drop(&self, r: &str, destroy: bool) -> ActionResult {
        let Record::Sr(sr) = self.get(Class::Sr, r)? else {
            return Err(ActionError::internal("not an SR"));
        };
        let mut st = self.lock();
        let pbd = |st: &State, p: &str| match st.objects.get(&Class::Pbd).and_then(|m| m.get(p)) {
            Some(Record::Pbd(p)) => Some(p.clone()),
            _ => None,
        };
        if sr
            .PBDs
            .iter()
            .any(|p| pbd(&st, p).is_some_and(|p| p.currently_attached))
        {
            return Err(ActionError::SrHasPbd { sr: r.to_owned() });
        }
        if destroy && !sr.VDIs.is_empty() {
            return Err(ActionError::HasDependents {
                class: Class::Sr,
                r: r.to_owned(),
                dependents: Class::Vdi,
            });
        }
        for v in &sr.VDIs {
            self.remove(&mut st, Class::Vdi, v);
        }
        for p in &sr.PBDs {
            if let Some(p) = pbd(&st, p) {
                if let Some(Record::Host(h)) = st
                    .objects
                    .get_mut(&Class::Host)
                    .and_then(|m| m.get_mut(&p.host))
                {
                    h.PBDs.retain(|x| *x != ref_of(&p.uuid));
                    self.record_event(&mut st, Class::Host, &p.host, EventOp::Mod);
                }
                self.remove(&mut st, Class::Pbd, &ref_of(&p.uuid));
            }
        }
        self.remove(&mut st, Class::Sr, r);
        Ok(Reply::Unit)
    }

    fn task_mut<'a>(
        st: &'a mut State,
        r: &str,
    ) -> Result<&'a mut windsor_toolstack::action::TaskRecord, ActionError> {
        match st.objects.get_mut(&Class::Task).and_then(|m| m.get_mut(r)) {
            Some(Record::Task(t)) => Ok(t),
            _ => Err(ActionError::HandleInvalid {
                class: Class::Task,
                r: r.to_owned(),
            }),
        }
    }

    fn task_finish(&self, r: &str, outcome: TaskOutcome) -> ActionResult {
        let mut st = self.lock();
        let mut t = Self::task_mut(&mut st, r)?.clone();
        let gone = st.tasks.finish(&mut t, outcome, &now());
        st.objects
            .entry(Class::Task)
            .or_default()
            .insert(r.to_owned(), Record::Task(t));
        self.record_event(&mut st, Class::Task, r, EventOp::Mod);
        for u in gone {
            self.remove(&mut st, Class::Task, &ref_of(&u));
        }
        Ok(Reply::Unit)
    }

    fn event_from(
        &self,
        classes: &[String],
        token: u64,
        timeout: std::time::Duration,
    ) -> ActionResult {
        let wants = |class: Class, r: &str| {
            classes.iter().any(|c| {
                if c == "*" {
                    return true;
                }
                match c.split_once('/') {
                    Some((cl, obj)) => Class::parse(cl) == Some(class) && obj == r,
                    None => Class::parse(c) == Some(class),
                }
            })
        };
        let mut st = self.lock();
        if token == 0 {
            let mut events = Vec::new();
            for (class, objs) in &st.objects {
                for (r, rec) in objs {
                    if wants(*class, r) {
                        events.push(Event {
                            id: st.counter,
                            class: *class,
                            operation: EventOp::Add,
                            r: r.clone(),
                            snapshot: Some(rec.clone()),
                        });
                    }
                }
            }
            return Ok(Reply::Events(EventBatch {
                events,
                token: st.counter,
            }));
        }
        if let Some(first) = st.events.first() {
            if token + 1 < first.id {
                return Err(ActionError::EventsLost);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Newest change per object, in sequence order; `add` if the
            // object is new since the token (and still there).
            let mut latest: BTreeMap<(Class, String), (Event, bool)> = BTreeMap::new();
            for e in st.events.iter().filter(|e| e.id > token) {
                if wants(e.class, &e.r) {
                    let key = (e.class, e.r.clone());
                    let added =
                        e.operation == EventOp::Add || latest.get(&key).is_some_and(|x| x.1);
                    latest.insert(key, (e.clone(), added));
                }
            }
            let now = Instant::now();
            if !latest.is_empty() || now >= deadline {
                let mut events: Vec<Event> = latest
                    .into_values()
                    .map(|(mut e, added)| {
                        if added && e.operation != EventOp::Del {
                            e.operation = EventOp::Add;
                        }
                        e
                    })
                    .collect();
                events.sort_by_key(|e| e.id);
                return Ok(Reply::Events(EventBatch {
                    events,
                    token: st.counter.max(token),
                }));
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Backend for MemoryBackend {
    fn handle(&self, action: Action) -> ActionResult {
        use PowerState::*;
        match action {
            Action::Create(new) => {
                let u = uuid();
                let mut rec = match new {
                    NewRecord::Vm(mut v) => {
                        v.power_state = Halted;
                        v.domid = -1;
                        Record::Vm(v)
                    }
                    NewRecord::Network(n) => Record::Network(n),
                    NewRecord::Sr(s) => Record::Sr(s),
                    NewRecord::Vdi(v) => Record::Vdi(v),
                    NewRecord::Vif(v) => Record::Vif(v),
                    NewRecord::Vbd(v) => Record::Vbd(v),
                };
                set_uuid(&mut rec, &u);
                let class = rec.class();
                let r = ref_of(&u);
                let mut st = self.lock();
                if let Record::Vdi(d) = &rec {
                    match st
                        .objects
                        .get_mut(&Class::Sr)
                        .and_then(|m| m.get_mut(&d.SR))
                    {
                        Some(Record::Sr(s)) => s.VDIs.push(r.clone()),
                        _ => {
                            return Err(ActionError::HandleInvalid {
                                class: Class::Sr,
                                r: d.SR.clone(),
                            })
                        }
                    }
                }
                st.objects.entry(class).or_default().insert(r.clone(), rec);
                self.record_event(&mut st, class, &r, EventOp::Add);
                Ok(Reply::Ref(r))
            }
            Action::Destroy { class, r } => {
                let mut st = self.lock();
                let rec = st
                    .objects
                    .get(&class)
                    .and_then(|m| m.get(&r))
                    .ok_or_else(|| ActionError::HandleInvalid {
                        class,
                        r: r.clone(),
                    })?;
                if let Record::Vm(v) = rec {
                    if !matches!(v.power_state, Halted | Suspended) {
                        return Err(bad_state(&r, Halted, v.power_state));
                    }
                }
                if let Record::Network(n) = rec {
                    if !n.PIFs.is_empty() {
                        return Err(ActionError::NetworkContainsPif {
                            pifs: n.PIFs.clone(),
                        });
                    }
                }
                if matches!(class, Class::Host | Class::Pool | Class::Pbd | Class::Pif) {
                    return Err(ActionError::MethodUnknown {
                        class,
                        method: "destroy",
                    });
                }
                if class == Class::Sr {
                    drop(st);
                    return self.sr_drop(&r, true);
                }
                if class == Class::Task {
                    let mut t = Self::task_mut(&mut st, &r)?.clone();
                    match st.tasks.destroy(&mut t) {
                        task::Destroy::Now => self.remove(&mut st, class, &r),
                        task::Destroy::WhenFinished => {
                            st.objects
                                .entry(Class::Task)
                                .or_default()
                                .insert(r.clone(), Record::Task(t));
                            self.record_event(&mut st, class, &r, EventOp::Mod);
                        }
                    }
                    return Ok(Reply::Unit);
                }
                if let Some(Record::Vdi(d)) = st.objects.get(&Class::Vdi).and_then(|m| m.get(&r)) {
                    let sr = d.SR.clone();
                    if let Some(Record::Sr(s)) =
                        st.objects.get_mut(&Class::Sr).and_then(|m| m.get_mut(&sr))
                    {
                        s.VDIs.retain(|x| *x != r);
                    }
                }
                self.record_event(&mut st, class, &r, EventOp::Del);
                if let Some(m) = st.objects.get_mut(&class) {
                    m.remove(&r);
                }
                Ok(Reply::Unit)
            }
            Action::GetRecord { class, r } => self.get(class, &r).map(Reply::Record),
            Action::GetAll { class } => Ok(Reply::Refs(
                self.lock()
                    .objects
                    .get(&class)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            )),
            Action::GetAllRecords { class } => Ok(Reply::Records(
                self.lock()
                    .objects
                    .get(&class)
                    .map(|m| m.iter().map(|(r, v)| (r.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Action::GetByUuid { class, uuid } => {
                let r = ref_of(&uuid);
                match self.get(class, &r) {
                    Ok(_) => Ok(Reply::Ref(r)),
                    Err(_) => Err(ActionError::UuidInvalid { class, uuid }),
                }
            }
            Action::GetByNameLabel { class, label } => Ok(Reply::Refs(
                self.lock()
                    .objects
                    .get(&class)
                    .map(|m| {
                        m.iter()
                            .filter(|(_, rec)| rec.name_label() == Some(label.as_str()))
                            .map(|(r, _)| r.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
            Action::SetNameLabel { class, r, value } => self.modify(class, &r, |rec| {
                match rec {
                    Record::Vm(x) => x.name_label = value,
                    Record::Host(x) => x.name_label = value,
                    Record::Pool(x) => x.name_label = value,
                    Record::Network(x) => x.name_label = value,
                    Record::Sr(x) => x.name_label = value,
                    Record::Vdi(x) => x.name_label = value,
                    Record::Task(x) => x.name_label = value,
                    Record::Vif(_) | Record::Vbd(_) | Record::Pbd(_) | Record::Pif(_) => {
                        return Err(ActionError::internal("no name_label"))
                    }
                }
                Ok(())
            }),
            Action::SetNameDescription { class, r, value } => self.modify(class, &r, |rec| {
                match rec {
                    Record::Vm(x) => x.name_description = value,
                    Record::Host(x) => x.name_description = value,
                    Record::Pool(x) => x.name_description = value,
                    Record::Network(x) => x.name_description = value,
                    Record::Sr(x) => x.name_description = value,
                    Record::Vdi(x) => x.name_description = value,
                    Record::Task(x) => x.name_description = value,
                    Record::Vif(_) | Record::Vbd(_) | Record::Pbd(_) | Record::Pif(_) => {
                        return Err(ActionError::internal("no name_description"))
                    }
                }
                Ok(())
            }),
            Action::SetOtherConfig { class, r, value } => self.modify(class, &r, |rec| {
                *rec.other_config_mut() = value;
                Ok(())
            }),
            Action::AddToOtherConfig {
                class,
                r,
                key,
                value,
            } => self.modify(class, &r.clone(), |rec| {
                let m = rec.other_config_mut();
                if m.contains_key(&key) {
                    return Err(ActionError::MapDuplicateKey {
                        class,
                        field: "other_config".into(),
                        r,
                        key,
                    });
                }
                m.insert(key, value);
                Ok(())
            }),
            Action::RemoveFromOtherConfig { class, r, key } => self.modify(class, &r, |rec| {
                rec.other_config_mut().remove(&key);
                Ok(())
            }),
            Action::VmClone { vm, new_name } => {
                let Record::Vm(mut v) = self.get(Class::Vm, &vm)? else {
                    return Err(ActionError::internal("not a VM"));
                };
                if v.power_state != Halted {
                    return Err(bad_state(&vm, Halted, v.power_state));
                }
                v.name_label = new_name;
                v.is_default_template = false;
                v.parent = vm;
                v.VIFs.clear();
                v.VBDs.clear();
                self.handle(Action::Create(NewRecord::Vm(v)))
            }
            Action::VmProvision { vm } => self.modify_vm(&vm, |v| {
                v.is_a_template = false;
                Ok(())
            }),
            Action::VmStart {
                vm, start_paused, ..
            } => self.transition(
                &vm,
                &[Halted],
                if start_paused { Paused } else { Running },
                Op::Start,
            ),
            Action::VmPause { vm } => self.transition(&vm, &[Running], Paused, Op::Pause),
            Action::VmUnpause { vm } => self.transition(&vm, &[Paused], Running, Op::Unpause),
            Action::VmCleanShutdown { vm } | Action::VmShutdown { vm } => {
                self.transition(&vm, &[Running], Halted, Op::CleanShutdown)
            }
            Action::VmHardShutdown { vm } => {
                self.transition(&vm, &[Running, Paused, Suspended], Halted, Op::HardShutdown)
            }
            Action::VmCleanReboot { vm } => {
                self.transition(&vm, &[Running], Running, Op::CleanReboot)
            }
            Action::VmHardReboot { vm } => {
                self.transition(&vm, &[Running, Paused], Running, Op::HardReboot)
            }
            Action::VmSuspend { vm } => self.transition(&vm, &[Running], Suspended, Op::Suspend),
            Action::VmResume {
                vm, start_paused, ..
            } => self.transition(
                &vm,
                &[Suspended],
                if start_paused { Paused } else { Running },
                Op::Resume,
            ),
            Action::VmSetMemoryLimits {
                vm,
                static_min,
                static_max,
                dynamic_min,
                dynamic_max,
            } => {
                if !(static_min <= dynamic_min
                    && dynamic_min <= dynamic_max
                    && dynamic_max <= static_max)
                {
                    return Err(ActionError::MemoryConstraintViolation {
                        static_min,
                        dynamic_min,
                        dynamic_max,
                        static_max,
                    });
                }
                self.modify_vm(&vm.clone(), |v| {
                    if v.power_state != Halted {
                        return Err(bad_state(&vm, Halted, v.power_state));
                    }
                    v.memory_static_min = static_min;
                    v.memory_static_max = static_max;
                    v.memory_dynamic_min = dynamic_min;
                    v.memory_dynamic_max = dynamic_max;
                    v.memory_target = dynamic_max;
                    Ok(())
                })
            }
            Action::VmSetMemory { vm, value } => self.modify_vm(&vm.clone(), |v| {
                if v.power_state != Halted {
                    return Err(bad_state(&vm, Halted, v.power_state));
                }
                v.memory_static_max = value;
                v.memory_dynamic_max = value;
                v.memory_dynamic_min = value;
                v.memory_target = value;
                Ok(())
            }),
            Action::VmSetVcpusMax { vm, value } => self.modify_vm(&vm.clone(), |v| {
                if v.power_state != Halted {
                    return Err(bad_state(&vm, Halted, v.power_state));
                }
                v.VCPUs_max = value;
                Ok(())
            }),
            Action::VmSetVcpusAtStartup { vm, value } => self.modify_vm(&vm, |v| {
                if value < 1 || value > v.VCPUs_max {
                    return Err(ActionError::ValueNotSupported {
                        field: "VCPUs_at_startup".into(),
                        value: value.to_string(),
                        reason: "must be between 1 and VCPUs_max".into(),
                    });
                }
                v.VCPUs_at_startup = value;
                Ok(())
            }),
            Action::SrCreate {
                host,
                device_config,
                spec,
            } => self.sr_add(
                SrSpec {
                    uuid: String::new(),
                    ..spec
                },
                Some((host, device_config)),
            ),
            Action::SrIntroduce { spec } => self.sr_add(
                SrSpec {
                    physical_size: -1,
                    ..spec
                },
                None,
            ),
            Action::SrForget { sr } => self.sr_drop(&sr, false),
            Action::PbdPlug { pbd } => self.modify(Class::Pbd, &pbd, |rec| {
                if let Record::Pbd(p) = rec {
                    p.currently_attached = true;
                }
                Ok(())
            }),
            Action::PbdUnplug { pbd } => self.modify(Class::Pbd, &pbd, |rec| {
                if let Record::Pbd(p) = rec {
                    p.currently_attached = false;
                }
                Ok(())
            }),
            Action::TaskCreate { label, description } => {
                let mut st = self.lock();
                let u = uuid();
                let t = st
                    .tasks
                    .create(u, label, description, self.host.clone(), &now())?;
                Ok(Reply::Ref(self.insert(&mut st, Record::Task(t))))
            }
            Action::TaskFinish { task, outcome } => self.task_finish(&task, outcome),
            Action::TaskCancel { task } => {
                let mut st = self.lock();
                let t = Self::task_mut(&mut st, &task)?.clone();
                st.tasks.cancel(&t)?;
                Ok(Reply::Unit)
            }
            Action::EventFrom {
                classes,
                token,
                timeout,
            } => self.event_from(&classes, token, timeout),
            Action::XsRead { path } => xsapi::read(&self.xs, &path),
            Action::XsWrite { path, value } => xsapi::write(&self.xs, &path, &value),
            Action::XsDirectory { path } => xsapi::directory(&self.xs, &path),
            Action::XsRm { path } => xsapi::rm(&self.xs, &path),
            Action::XsWatch {
                owner,
                path,
                cursor,
                timeout,
            } => self.hub()?.watch(&owner, &path, &cursor, timeout),
            Action::XsUnwatch { owner, cursor } => self.hub()?.unwatch(&owner, &cursor),
            Action::XsDropOwner { owner } => {
                if let Some(h) = &self.hub {
                    h.drop_owner(&owner);
                }
                Ok(Reply::Unit)
            }
        }
    }
}

impl MemoryBackend {
    fn hub(&self) -> Result<&WatchHub, ActionError> {
        self.hub
            .as_ref()
            .ok_or_else(|| ActionError::internal("xenstore watches are not served"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use PowerState::*;

    fn create(b: &MemoryBackend) -> String {
        match b
            .handle(Action::Create(NewRecord::Vm(VmRecord {
                name_label: "t".into(),
                ..VmRecord::default()
            })))
            .unwrap()
        {
            Reply::Ref(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lifecycle_rules() {
        let b = MemoryBackend::new();
        let vm = create(&b);
        let e = b.handle(Action::VmPause { vm: vm.clone() }).unwrap_err();
        assert_eq!(
            e,
            ActionError::VmBadPowerState {
                vm: vm.clone(),
                expected: Running,
                actual: Halted
            }
        );
        b.handle(Action::VmStart {
            vm: vm.clone(),
            start_paused: false,
            force: false,
        })
        .unwrap();
        let e = b
            .handle(Action::Destroy {
                class: Class::Vm,
                r: vm.clone(),
            })
            .unwrap_err();
        assert_eq!(e, bad_state(&vm, Halted, Running));
        b.handle(Action::VmSuspend { vm: vm.clone() }).unwrap();
        b.handle(Action::VmHardShutdown { vm: vm.clone() }).unwrap();
        b.handle(Action::Destroy {
            class: Class::Vm,
            r: vm.clone(),
        })
        .unwrap();
        let e = b
            .handle(Action::GetRecord {
                class: Class::Vm,
                r: vm.clone(),
            })
            .unwrap_err();
        assert_eq!(
            e,
            ActionError::HandleInvalid {
                class: Class::Vm,
                r: vm
            }
        );
    }

    #[test]
    fn template_clone_provision_start() {
        let b = MemoryBackend::new();
        let Reply::Refs(t) = b
            .handle(Action::GetByNameLabel {
                class: Class::Vm,
                label: "Windsor fuzz-target".into(),
            })
            .unwrap()
        else {
            panic!()
        };
        let start = |vm: &str| {
            b.handle(Action::VmStart {
                vm: vm.into(),
                start_paused: false,
                force: false,
            })
        };
        let template = |vm: &str| ActionError::VmIsTemplate {
            vm: vm.into(),
            op: Op::Start,
        };
        assert_eq!(start(&t[0]).unwrap_err(), template(&t[0]));
        let Reply::Ref(c) = b
            .handle(Action::VmClone {
                vm: t[0].clone(),
                new_name: "c".into(),
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(start(&c).unwrap_err(), template(&c));
        b.handle(Action::VmProvision { vm: c.clone() }).unwrap();
        start(&c).unwrap();
    }

    #[test]
    fn events_follow_changes_and_wait() {
        let b = std::sync::Arc::new(MemoryBackend::new());
        let Reply::Events(first) = b
            .handle(Action::EventFrom {
                classes: vec!["vm".into()],
                token: 0,
                timeout: Duration::ZERO,
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(first.events.len(), 1, "the template");
        let token = first.token;
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            create(&b2)
        });
        let Reply::Events(next) = b
            .handle(Action::EventFrom {
                classes: vec!["*".into()],
                token,
                timeout: Duration::from_secs(10),
            })
            .unwrap()
        else {
            panic!()
        };
        let vm = t.join().unwrap();
        assert_eq!(next.events.len(), 1);
        assert_eq!(next.events[0].r, vm);
        assert_eq!(next.events[0].operation, EventOp::Add);
        let Reply::Events(none) = b
            .handle(Action::EventFrom {
                classes: vec!["host".into()],
                token: next.token,
                timeout: Duration::from_millis(10),
            })
            .unwrap()
        else {
            panic!()
        };
        assert!(none.events.is_empty());
        assert_eq!(none.token, next.token);
    }
}
