//! The toolstack core: the records, the VMs' runtime state, the event log
//! and the task book, driven by [`Action`]s, platform observations and the
//! time, answering with replies and [`Effect`]s.
//!
//! no_std + alloc and sans-IO: the engine owns no thread, lock, clock or
//! loop. It never calls the platform or xenstore; it says what to write
//! ([`Effect`], [`XsTransaction`](crate::effect::XsTransaction)) and is told what happened (a domain
//! built, a domain list). The host-mode service (`service`) and Xen
//! mode's dom0 are its executors.
//!
//! Split by concern, each in its own file, all `impl Engine`:
//! * here: construction, dispatch of [`Engine::handle`], the generic
//!   record calls (get, set, other_config), VM records (create, clone,
//!   memory, vCPUs), `event.from` and tasks;
//! * [`crate::bootstrap`]: the records of a first start and re-attaching
//!   domains after a restart;
//! * [`crate::storage`]: SR, PBD and VDI rules;
//! * [`crate::devices`]: VIFs and VBDs, and a domain's xenstore tree;
//! * [`crate::power`]: the power operations and domain exits.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use xen::platform::ShutdownReason;
use xen::DomId;

use crate::action::{
    ref_of, uuid_of, Action, ActionError, ActionResult, Class, Event, EventBatch, EventOp,
    NewRecord, PowerState, Record, Ref, Reply, TaskOutcome, TaskRecord, VmRecord, NULL_REF,
};
use crate::effect::Effect;
use crate::events::{self, EventLog};
use crate::lifecycle::{self, Op};
use crate::limits::{self, HostLimits};
use crate::records::{Ids, Records};
use crate::task::{self, TaskBook, TaskLimits};

/// What the engine needs to know about its host.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `name_label` of the host record created at first start.
    pub host_name: String,
    /// The domain serving guests' xenstore rings.
    pub xenstore_domid: DomId,
    /// The domain serving VIF and VBD backends.
    pub backend_domid: DomId,
    /// The domain serving VBD backends, if not `backend_domid`.
    pub vbd_backend_domid: Option<DomId>,
    /// Directory of VDI image files: a VDI created without
    /// `sm_config:path` gets a sparse raw file `<sr_dir>/<uuid>.img` of its
    /// virtual size (removed by `VDI.destroy`). Empty: no files.
    pub sr_dir: String,
    /// How many changes `event.from` can look back.
    pub event_history: usize,
    /// Create the `Windsor fuzz-target` template at first start.
    pub fuzz_template: bool,
    /// How many `Async.*` tasks are kept (see [`crate::task`]).
    pub task_limits: TaskLimits,
    /// What the host offers one VM, checked at `VM.start`.
    pub host_limits: HostLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host_name: "windsor".into(),
            xenstore_domid: DomId::DOM0,
            backend_domid: DomId::DOM0,
            vbd_backend_domid: None,
            sr_dir: String::new(),
            event_history: 16384,
            fuzz_template: true,
            task_limits: TaskLimits::default(),
            host_limits: HostLimits::default(),
        }
    }
}

/// Runtime state of a VM (not persisted).
#[derive(Clone, Debug, Default)]
pub(crate) struct Runtime {
    pub(crate) domid: Option<DomId>,
    /// The lifecycle operation in progress, if any.
    pub(crate) busy: Option<Op>,
    /// The last domain exit seen: which domain, why.
    pub(crate) last_exit: Option<(DomId, ShutdownReason)>,
}

/// What [`Engine::handle`] did with an action.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per call
pub enum Handled {
    /// Answered; apply [`Engine::take_effects`] before replying.
    Reply(ActionResult),
    /// The action needs the platform, xenstore or a wait: the executor
    /// runs it with the engine's [`crate::power`] steps (VM power
    /// operations), [`Engine::events_since`] (`event.from`) or its
    /// xenstore client (`xenstore.*`).
    Execute(Action),
}

/// The toolstack core. See the module doc.
#[derive(Debug)]
pub struct Engine {
    pub(crate) settings: Settings,
    pub(crate) recs: Records,
    pub(crate) rt: BTreeMap<String, Runtime>,
    pub(crate) by_dom: BTreeMap<u16, String>,
    pub(crate) log: EventLog,
    pub(crate) tasks: TaskBook,
    pub(crate) ids: Ids,
    pub(crate) host_ref: Ref,
    pub(crate) effects: Vec<Effect>,
}

impl Engine {
    /// An engine over the records loaded from the pool database; `seed`
    /// seeds uuid and MAC generation. Call [`bootstrap`](Self::bootstrap)
    /// next.
    pub fn new(settings: Settings, seed: u64, records: Vec<Record>) -> Self {
        let mut recs = Records::default();
        for r in records {
            recs.insert(r);
        }
        Engine {
            log: EventLog::new(settings.event_history),
            tasks: TaskBook::new(settings.task_limits),
            settings,
            recs,
            rt: BTreeMap::new(),
            by_dom: BTreeMap::new(),
            ids: Ids::new(seed),
            host_ref: NULL_REF.into(),
            effects: Vec::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The effects produced since the last call, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        core::mem::take(&mut self.effects)
    }

    /// The record `(class, uuid)` as stored (for the executor's writes).
    pub fn record(&self, class: Class, uuid: &str) -> Option<&Record> {
        self.recs.by_uuid(class, uuid)
    }

    /// The ref of this host's record.
    pub fn host_ref(&self) -> &str {
        &self.host_ref
    }

    /// The newest event id (the token `event.from` would return now).
    pub fn token(&self) -> u64 {
        self.log.token()
    }

    /// The domain of a VM while it has one.
    pub fn domid(&self, vm: &str) -> Option<DomId> {
        uuid_of(vm)
            .and_then(|u| self.rt.get(u))
            .and_then(|r| r.domid)
    }

    /// How many VMs have a domain.
    pub fn resident(&self) -> usize {
        self.by_dom.len()
    }

    /// Does one XenAPI call, or hands it back to the executor.
    pub fn handle(&mut self, action: Action, now: u64) -> Handled {
        use Action as A;
        Handled::Reply(match action {
            A::Create(new) => self.create(new),
            A::Destroy { class, r } => self.destroy(class, &r),
            A::GetRecord { class, r } => self
                .recs
                .get(class, &r)
                .map(|rec| Reply::Record(self.view(rec))),
            A::GetAll { class } => Ok(Reply::Refs(self.recs.refs(class))),
            A::GetAllRecords { class } => Ok(Reply::Records(
                self.recs
                    .class(class)
                    .map(|(u, r)| (ref_of(u), self.view(r)))
                    .collect(),
            )),
            A::GetByUuid { class, uuid } => {
                if self.recs.contains(class, &uuid) {
                    Ok(Reply::Ref(ref_of(&uuid)))
                } else {
                    Err(ActionError::UuidInvalid { class, uuid })
                }
            }
            A::GetByNameLabel { class, label } => Ok(Reply::Refs(
                self.recs
                    .class(class)
                    .filter(|(_, r)| r.name_label() == Some(label.as_str()))
                    .map(|(u, _)| ref_of(u))
                    .collect(),
            )),
            A::SetNameLabel { class, r, value } => self.edit(class, &r, |rec| {
                set_name(rec, Some(value), None);
                Ok(())
            }),
            A::SetNameDescription { class, r, value } => self.edit(class, &r, |rec| {
                set_name(rec, None, Some(value));
                Ok(())
            }),
            A::SetOtherConfig { class, r, value } => self.edit(class, &r, |rec| {
                *rec.other_config_mut() = value;
                Ok(())
            }),
            A::AddToOtherConfig {
                class,
                r,
                key,
                value,
            } => {
                let r2 = r.clone();
                self.edit(class, &r, move |rec| {
                    let m = rec.other_config_mut();
                    if m.contains_key(&key) {
                        return Err(ActionError::MapDuplicateKey {
                            class,
                            field: "other_config".into(),
                            r: r2,
                            key,
                        });
                    }
                    m.insert(key, value);
                    Ok(())
                })
            }
            A::RemoveFromOtherConfig { class, r, key } => self.edit(class, &r, |rec| {
                rec.other_config_mut().remove(&key);
                Ok(())
            }),
            A::VmAddToXenstoreData { vm, key, value } => {
                let r2 = vm.clone();
                self.edit_vm(&vm, None, move |v| {
                    if v.xenstore_data.contains_key(&key) {
                        return Err(ActionError::MapDuplicateKey {
                            class: Class::Vm,
                            field: "xenstore_data".into(),
                            r: r2,
                            key,
                        });
                    }
                    v.xenstore_data.insert(key, value);
                    Ok(())
                })
            }
            A::VmRemoveFromXenstoreData { vm, key } => self.edit_vm(&vm, None, |v| {
                v.xenstore_data.remove(&key);
                Ok(())
            }),
            A::VmClone { vm, new_name } => self.clone_vm(&vm, new_name),
            A::VmProvision { vm } => self.edit_vm(&vm, None, |v| {
                v.is_a_template = false;
                v.is_default_template = false;
                Ok(())
            }),
            A::VmSetMemoryLimits {
                vm,
                static_min,
                static_max,
                dynamic_min,
                dynamic_max,
            } => self.set_memory(&vm, static_min, static_max, dynamic_min, dynamic_max),
            A::VmSetMemory { vm, value } => self.set_memory(&vm, 0, value, value, value),
            A::VmSetVcpusMax { vm, value } => {
                if value < 1 {
                    return Handled::Reply(limits::check_vcpus(value, 1).map(|()| Reply::Unit));
                }
                self.edit_vm(&vm, Some(Op::SetStatic), move |v| {
                    v.VCPUs_max = value;
                    v.VCPUs_at_startup = v.VCPUs_at_startup.min(value);
                    Ok(())
                })
            }
            A::VmSetVcpusAtStartup { vm, value } => self.edit_vm(&vm, None, move |v| {
                limits::check_vcpus(v.VCPUs_max, value)?;
                v.VCPUs_at_startup = value;
                Ok(())
            }),
            A::SrCreate {
                host,
                device_config,
                spec,
            } => self.sr_create(&host, device_config, spec),
            A::SrIntroduce { spec } => self.sr_introduce(spec),
            A::SrForget { sr } => self.sr_drop(&sr, false),
            A::PbdPlug { pbd } => self.pbd_plug(&pbd, true),
            A::PbdUnplug { pbd } => self.pbd_plug(&pbd, false),
            A::TaskCreate { label, description } => self.task_create(label, description, now),
            A::TaskFinish { task, outcome } => self.task_finish(&task, outcome, now),
            A::TaskCancel { task } => self
                .task_of(&task)
                .and_then(|t| self.tasks.cancel(&t))
                .map(|()| Reply::Unit),
            other => return Handled::Execute(other),
        })
    }

    // ---- writing records -------------------------------------------------

    /// Stores a record, asks for its write and publishes the change.
    pub(crate) fn put(&mut self, rec: Record, op: EventOp) {
        let class = rec.class();
        let uuid = rec.uuid().to_string();
        let snapshot = (op != EventOp::Del).then(|| rec.clone());
        self.recs.insert(rec);
        self.log.push(class, ref_of(&uuid), op, snapshot);
        if class.persisted() {
            self.effects.push(Effect::Save(class, uuid));
        }
    }

    /// Stores a record with no event (at start: no client is connected).
    pub(crate) fn put_quiet(&mut self, rec: Record) {
        let class = rec.class();
        let uuid = rec.uuid().to_string();
        self.recs.insert(rec);
        if class.persisted() {
            self.effects.push(Effect::Save(class, uuid));
        }
    }

    pub(crate) fn put_vm(&mut self, vm: VmRecord) {
        self.put(Record::Vm(vm), EventOp::Mod)
    }

    /// Removes a record, asks for its removal and publishes it.
    pub(crate) fn remove(&mut self, class: Class, uuid: &str) {
        self.recs.remove(class, uuid);
        self.log.push(class, ref_of(uuid), EventOp::Del, None);
        if class.persisted() {
            self.effects.push(Effect::Remove(class, uuid.to_string()));
        }
    }

    /// Publishes a change of computed fields only (`current_operations`).
    pub(crate) fn touch(&mut self, class: Class, r: &str) {
        let snapshot = uuid_of(r)
            .and_then(|u| self.recs.by_uuid(class, u))
            .cloned();
        self.log.push(class, r.to_string(), EventOp::Mod, snapshot);
    }

    fn edit(
        &mut self,
        class: Class,
        r: &str,
        f: impl FnOnce(&mut Record) -> Result<(), ActionError>,
    ) -> ActionResult {
        let mut rec = self.recs.get(class, r)?.clone();
        f(&mut rec)?;
        limits::check_fields(&rec)?;
        self.put(rec, EventOp::Mod);
        Ok(Reply::Unit)
    }

    fn edit_vm(
        &mut self,
        r: &str,
        op: Option<Op>,
        f: impl FnOnce(&mut VmRecord) -> Result<(), ActionError>,
    ) -> ActionResult {
        let mut v = self.recs.vm(r)?.clone();
        if let Some(op) = op {
            self.check(&v, r, op)?;
        }
        f(&mut v)?;
        let rec = Record::Vm(v);
        limits::check_fields(&rec)?;
        self.put(rec, EventOp::Mod);
        Ok(Reply::Unit)
    }

    // ---- reading records -------------------------------------------------

    /// The refs of the VMs that have a domain here.
    fn resident_vms(&self) -> Vec<Ref> {
        self.by_dom.values().map(|u| ref_of(u)).collect()
    }

    /// A record as the API shows it (computed fields filled in).
    pub fn view(&self, rec: &Record) -> Record {
        match rec {
            Record::Vm(v) => {
                let mut v = v.clone();
                let busy = self.rt.get(&v.uuid).and_then(|r| r.busy);
                v.allowed_operations = if busy.is_some() {
                    Vec::new()
                } else {
                    lifecycle::allowed_operations(v.power_state, v.is_a_template)
                        .map(|o| o.name().to_string())
                        .collect()
                };
                v.current_operations = busy
                    .map(|o| {
                        [(
                            alloc::format!("OpaqueRef:task-{}", v.uuid),
                            o.name().to_string(),
                        )]
                    })
                    .into_iter()
                    .flatten()
                    .collect();
                Record::Vm(v)
            }
            Record::Host(h) => {
                let mut h = h.clone();
                h.resident_VMs = self.resident_vms();
                Record::Host(h)
            }
            other => other.clone(),
        }
    }

    // ---- VM records ------------------------------------------------------

    /// Checks the power state, template flag and operations in progress.
    pub(crate) fn check(&self, v: &VmRecord, r: &str, op: Op) -> Result<(), ActionError> {
        if let Some(busy) = self.rt.get(&v.uuid).and_then(|x| x.busy) {
            return Err(ActionError::OtherOperationInProgress {
                class: Class::Vm,
                r: r.to_string(),
                op: busy,
            });
        }
        if v.is_a_template && !op.allowed_for_template() {
            return Err(ActionError::VmIsTemplate {
                vm: r.to_string(),
                op,
            });
        }
        lifecycle::check(op, v.power_state).map_err(|expected| ActionError::VmBadPowerState {
            vm: r.to_string(),
            expected,
            actual: v.power_state,
        })
    }

    fn set_memory(&mut self, r: &str, smin: i64, smax: i64, dmin: i64, dmax: i64) -> ActionResult {
        limits::check_memory_limits(smin, smax, dmin, dmax)?;
        self.edit_vm(r, Some(Op::SetStatic), move |v| {
            v.memory_static_min = smin;
            v.memory_static_max = smax;
            v.memory_dynamic_min = dmin;
            v.memory_dynamic_max = dmax;
            v.memory_target = dmax;
            Ok(())
        })
    }

    fn create(&mut self, new: NewRecord) -> ActionResult {
        limits::check_new(&new)?;
        let uuid = self.ids.uuid();
        let r = ref_of(&uuid);
        let rec = match new {
            NewRecord::Vm(mut v) => {
                limits::fill_memory_defaults(&mut v);
                limits::check_vm(&v)?;
                v.uuid = uuid.clone();
                v.power_state = PowerState::Halted;
                v.domid = -1;
                v.resident_on = NULL_REF.into();
                v.VIFs.clear();
                v.VBDs.clear();
                v.allowed_operations.clear();
                v.current_operations.clear();
                self.rt.insert(uuid.clone(), Runtime::default());
                Record::Vm(v)
            }
            NewRecord::Network(mut n) => {
                n.uuid = uuid.clone();
                n.VIFs.clear();
                n.PIFs.clear();
                if n.bridge.is_empty() {
                    n.bridge = alloc::format!("xenbr{}", self.recs.class(Class::Network).count());
                }
                Record::Network(n)
            }
            NewRecord::Sr(mut s) => {
                s.uuid = uuid.clone();
                s.VDIs.clear();
                Record::Sr(s)
            }
            NewRecord::Vdi(d) => self.vdi_create(d, &uuid)?,
            NewRecord::Vif(f) => self.vif_create(f, &uuid)?,
            NewRecord::Vbd(b) => self.vbd_create(b, &uuid)?,
        };
        self.put(rec, EventOp::Add);
        Ok(Reply::Ref(r))
    }

    fn destroy(&mut self, class: Class, r: &str) -> ActionResult {
        let rec = self.recs.get(class, r)?.clone();
        match rec {
            Record::Vm(v) => {
                self.check(&v, r, Op::Destroy)?;
                for dev in v.VIFs.iter().chain(&v.VBDs) {
                    for c in [Class::Vif, Class::Vbd] {
                        if self.recs.get(c, dev).is_ok() {
                            self.unlink_device(c, dev)?;
                            self.remove(c, uuid_of(dev).unwrap_or_default());
                        }
                    }
                }
                self.rt.remove(&v.uuid);
                self.effects.push(Effect::DropImage(v.uuid.clone()));
                self.remove(Class::Vm, &v.uuid);
            }
            Record::Host(_) | Record::Pool(_) | Record::Pbd(_) | Record::Pif(_) => {
                return Err(ActionError::MethodUnknown {
                    class,
                    method: "destroy",
                })
            }
            Record::Task(mut t) => match self.tasks.destroy(&mut t) {
                task::Destroy::Now => self.remove(class, &t.uuid),
                task::Destroy::WhenFinished => self.put(Record::Task(t), EventOp::Mod),
            },
            Record::Vif(_) | Record::Vbd(_) => self.device_destroy(&rec, r)?,
            Record::Vdi(d) => self.vdi_destroy(d, r)?,
            Record::Sr(_) => return self.sr_drop(r, true),
            Record::Network(n) => {
                if !n.PIFs.is_empty() {
                    return Err(ActionError::NetworkContainsPif { pifs: n.PIFs });
                }
                if !n.VIFs.is_empty() {
                    return Err(ActionError::HasDependents {
                        class,
                        r: r.to_string(),
                        dependents: Class::Vif,
                    });
                }
                self.remove(class, &n.uuid);
            }
        }
        Ok(Reply::Unit)
    }

    fn clone_vm(&mut self, r: &str, new_name: String) -> ActionResult {
        let src = self.recs.vm(r)?.clone();
        self.check(&src, r, Op::Clone)?;
        let uuid = self.ids.uuid();
        let v = VmRecord {
            uuid: uuid.clone(),
            name_label: new_name,
            power_state: PowerState::Halted,
            domid: -1,
            resident_on: NULL_REF.into(),
            is_default_template: false,
            parent: r.to_string(),
            VIFs: Vec::new(),
            VBDs: Vec::new(),
            last_shutdown_reason: String::new(),
            ..src
        };
        let rec = Record::Vm(v);
        limits::check_fields(&rec)?;
        self.rt.insert(uuid.clone(), Runtime::default());
        self.put(rec, EventOp::Add);
        Ok(Reply::Ref(ref_of(&uuid)))
    }

    // ---- event.from --------------------------------------------------------

    /// `event.from(classes, token)` now: `Ok(None)` when nothing changed
    /// since `token` (the executor waits for a change or its timeout, then
    /// asks again or answers [`empty_batch`](Self::empty_batch)). Token 0
    /// answers every selected record as `add`.
    pub fn events_since(
        &self,
        classes: &[String],
        token: u64,
    ) -> Result<Option<EventBatch>, ActionError> {
        let want = |c: Class, r: &str| events::selects(classes, c, r);
        if token == 0 {
            let id = self.log.token();
            let events = self
                .recs
                .iter()
                .filter(|(c, u, _)| want(*c, &ref_of(u)))
                .map(|(c, u, rec)| Event {
                    id,
                    class: c,
                    operation: EventOp::Add,
                    r: ref_of(u),
                    snapshot: Some(self.view(rec)),
                })
                .collect();
            return Ok(Some(EventBatch { events, token: id }));
        }
        self.log.since(token, want, |r| self.view(r))
    }

    /// The answer to an `event.from` that timed out with nothing new.
    pub fn empty_batch(&self) -> EventBatch {
        EventBatch {
            events: Vec::new(),
            token: self.log.token(),
        }
    }

    // ---- tasks -------------------------------------------------------------

    /// A pending task (see [`crate::task`]); `now` in Unix seconds.
    fn task_create(&mut self, label: String, description: String, now: u64) -> ActionResult {
        let u = self.ids.uuid();
        let host = self.host_ref.clone();
        let t = self
            .tasks
            .create(u.clone(), label, description, host, &task::datetime(now))?;
        self.put(Record::Task(t), EventOp::Add);
        Ok(Reply::Ref(ref_of(&u)))
    }

    /// The end of a task; drops the tasks beyond the bound.
    fn task_finish(&mut self, r: &str, outcome: TaskOutcome, now: u64) -> ActionResult {
        let mut t = self.task_of(r)?;
        let gone = self.tasks.finish(&mut t, outcome, &task::datetime(now));
        self.put(Record::Task(t), EventOp::Mod);
        for u in gone {
            self.remove(Class::Task, &u);
        }
        Ok(Reply::Unit)
    }

    /// The task `r`, or `HANDLE_INVALID`.
    fn task_of(&self, r: &str) -> Result<TaskRecord, ActionError> {
        match self.recs.get(Class::Task, r)? {
            Record::Task(t) => Ok(t.clone()),
            _ => Err(ActionError::HandleInvalid {
                class: Class::Task,
                r: r.to_string(),
            }),
        }
    }
}

fn set_name(rec: &mut Record, label: Option<String>, desc: Option<String>) {
    macro_rules! set {
        ($r:expr) => {{
            if let Some(l) = label {
                $r.name_label = l;
            }
            if let Some(d) = desc {
                $r.name_description = d;
            }
        }};
    }
    match rec {
        Record::Vm(r) => set!(r),
        Record::Host(r) => set!(r),
        Record::Pool(r) => set!(r),
        Record::Network(r) => set!(r),
        Record::Sr(r) => set!(r),
        Record::Vdi(r) => set!(r),
        Record::Task(r) => set!(r),
        Record::Vif(_) | Record::Vbd(_) | Record::Pbd(_) | Record::Pif(_) => {}
    }
}

/// Helpers for the engine's unit tests (no platform, no store).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::action::VmRecord;

    /// A bootstrapped engine (no live domains), effects of the start
    /// taken.
    pub(crate) fn engine() -> Engine {
        let mut e = Engine::new(
            Settings {
                event_history: 64,
                ..Settings::default()
            },
            1,
            Vec::new(),
        );
        e.bootstrap(&[]);
        e.take_effects();
        e
    }

    /// Runs a record action; panics on an executor action.
    pub(crate) fn call(e: &mut Engine, a: Action) -> ActionResult {
        match e.handle(a, 1_700_000_000) {
            Handled::Reply(r) => r,
            Handled::Execute(a) => panic!("not a record action: {a:?}"),
        }
    }

    /// The ref a call answered.
    pub(crate) fn made(r: ActionResult) -> Ref {
        match r {
            Ok(Reply::Ref(r)) => r,
            other => panic!("expected a ref: {other:?}"),
        }
    }

    /// A new halted VM.
    pub(crate) fn new_vm(e: &mut Engine, name: &str) -> Ref {
        made(call(
            e,
            Action::Create(NewRecord::Vm(VmRecord {
                name_label: name.into(),
                PV_kernel: "fuzz-target".into(),
                memory_static_max: 16 << 20,
                VCPUs_max: 1,
                VCPUs_at_startup: 1,
                ..VmRecord::default()
            })),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::action::{TaskStatus, VmRecord};

    #[test]
    fn first_start_makes_host_pool_template_sr_network() {
        let mut e = Engine::new(Settings::default(), 1, Vec::new());
        e.bootstrap(&[]);
        let fx = e.take_effects();
        for class in [
            Class::Host,
            Class::Pool,
            Class::Sr,
            Class::Pbd,
            Class::Network,
            Class::Pif,
            Class::Vm,
        ] {
            assert_eq!(e.recs.class(class).count(), 1, "{class:?}");
            assert!(fx
                .iter()
                .any(|f| matches!(f, Effect::Save(c, _) if *c == class)));
        }
        // No event before a client can connect.
        assert_eq!(e.token(), 1);
        // A restart over the same records adds nothing.
        let recs: Vec<Record> = e.recs.iter().map(|(_, _, r)| r.clone()).collect();
        let mut again = Engine::new(Settings::default(), 2, recs);
        again.bootstrap(&[]);
        assert!(again.take_effects().is_empty());
        assert_eq!(again.recs.len(), e.recs.len());
    }

    #[test]
    fn create_emits_add_and_a_save() {
        let mut e = engine();
        let t = e.token();
        let vm = new_vm(&mut e, "a");
        assert_eq!(
            e.take_effects(),
            [Effect::Save(Class::Vm, uuid_of(&vm).unwrap().into())]
        );
        let b = e.events_since(&["vm".into()], t).unwrap().unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].operation, EventOp::Add);
        // The snapshot shows computed fields.
        let Some(Record::Vm(v)) = &b.events[0].snapshot else {
            panic!()
        };
        assert!(v.allowed_operations.iter().any(|o| o == "start"));
        // Token 0: every VM (the template too) as add.
        let all = e.events_since(&["vm".into()], 0).unwrap().unwrap();
        assert_eq!(all.events.len(), 2);
        assert_eq!(e.events_since(&["vm".into()], b.token), Ok(None));
        assert_eq!(
            e.events_since(&["vm".into()], b.token + 1),
            Err(ActionError::EventsLost)
        );
    }

    #[test]
    fn events_lost_after_the_window() {
        let mut e = engine();
        let t = e.token();
        let vm = new_vm(&mut e, "a");
        for i in 0..100 {
            call(
                &mut e,
                Action::SetNameLabel {
                    class: Class::Vm,
                    r: vm.clone(),
                    value: alloc::format!("n{i}"),
                },
            )
            .unwrap();
        }
        assert_eq!(
            e.events_since(&["*".into()], t),
            Err(ActionError::EventsLost)
        );
        let recent = e.token() - 10;
        let b = e.events_since(&["*".into()], recent).unwrap().unwrap();
        let Some(Record::Vm(v)) = &b.events[0].snapshot else {
            panic!()
        };
        assert_eq!(v.name_label, "n99");
    }

    #[test]
    fn memory_and_vcpu_rules() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        let limits = |smin, smax, dmin, dmax| Action::VmSetMemoryLimits {
            vm: vm.clone(),
            static_min: smin,
            static_max: smax,
            dynamic_min: dmin,
            dynamic_max: dmax,
        };
        assert!(matches!(
            call(&mut e, limits(2, 1, 1, 1)),
            Err(ActionError::MemoryConstraintViolationOrder { .. })
        ));
        assert!(matches!(
            call(&mut e, limits(-1, 1, 1, 1)),
            Err(ActionError::InvalidValue { ref field, .. }) if field == "memory_static_min"
        ));
        call(&mut e, limits(1 << 20, 64 << 20, 32 << 20, 64 << 20)).unwrap();
        assert_eq!(e.recs.vm(&vm).unwrap().memory_target, 64 << 20);
        assert!(matches!(
            call(
                &mut e,
                Action::VmSetVcpusMax {
                    vm: vm.clone(),
                    value: 0
                }
            ),
            Err(ActionError::InvalidValue { ref field, ref value })
                if field == "VCPUs_max" && value == "0"
        ));
        call(
            &mut e,
            Action::VmSetVcpusMax {
                vm: vm.clone(),
                value: 4,
            },
        )
        .unwrap();
        assert!(matches!(
            call(
                &mut e,
                Action::VmSetVcpusAtStartup {
                    vm: vm.clone(),
                    value: 5
                }
            ),
            Err(ActionError::ValueNotSupported { .. })
        ));
        call(
            &mut e,
            Action::VmSetVcpusAtStartup {
                vm: vm.clone(),
                value: 3,
            },
        )
        .unwrap();
        call(
            &mut e,
            Action::VmSetVcpusMax {
                vm: vm.clone(),
                value: 2,
            },
        )
        .unwrap();
        assert_eq!(e.recs.vm(&vm).unwrap().VCPUs_at_startup, 2);
    }

    #[test]
    fn create_and_start_refuse_impossible_sizes() {
        let mut e = engine();
        let create = |e: &mut Engine, f: &dyn Fn(&mut VmRecord)| {
            let mut v = VmRecord {
                name_label: "sized".into(),
                PV_kernel: "fuzz-target".into(),
                memory_static_max: 32 << 20,
                ..VmRecord::default()
            };
            f(&mut v);
            call(e, Action::Create(NewRecord::Vm(v)))
        };
        // The dynamic range follows a static_max given alone.
        let vm = made(create(&mut e, &|_| {}));
        let v = e.recs.vm(&vm).unwrap();
        assert_eq!(
            (v.memory_dynamic_min, v.memory_dynamic_max, v.memory_target),
            (32 << 20, 32 << 20, 32 << 20)
        );
        assert!(e.begin(&vm, Op::Start).is_ok());
        let refused = [
            create(&mut e, &|v| v.memory_static_max = -1),
            create(&mut e, &|v| v.memory_static_max = 0),
            create(&mut e, &|v| v.VCPUs_max = 0),
            create(&mut e, &|v| v.VCPUs_at_startup = 0),
            create(&mut e, &|v| v.VCPUs_at_startup = 2),
            create(&mut e, &|v| v.memory_static_min = 64 << 20),
            create(&mut e, &|v| v.memory_dynamic_max = 64 << 20),
        ];
        assert!(matches!(refused[0], Err(ActionError::InvalidValue { .. })));
        assert!(matches!(refused[1], Err(ActionError::InvalidValue { .. })));
        assert!(
            matches!(refused[2], Err(ActionError::InvalidValue { ref field, .. }) if field == "VCPUs_max")
        );
        assert!(
            matches!(refused[3], Err(ActionError::InvalidValue { ref field, .. }) if field == "VCPUs-at-startup")
        );
        assert!(matches!(
            refused[4],
            Err(ActionError::ValueNotSupported { .. })
        ));
        assert!(matches!(
            refused[5],
            Err(ActionError::MemoryConstraintViolation { .. })
        ));
        assert!(matches!(
            refused[6],
            Err(ActionError::MemoryConstraintViolation { .. })
        ));
        // Valid records the host cannot run: refused at start.
        let huge = made(create(&mut e, &|v| {
            v.memory_static_max = 1 << 50;
        }));
        assert!(matches!(
            e.begin(&huge, Op::Start),
            Err(ActionError::HostNotEnoughFreeMemory { needed, .. }) if needed == 1 << 50
        ));
        let wide = made(create(&mut e, &|v| v.VCPUs_max = 100_000));
        assert!(matches!(
            e.begin(&wide, Op::Start),
            Err(ActionError::HostNotEnoughPcpus { vcpus: 100_000, .. })
        ));
    }

    #[test]
    fn field_limits_hold_on_create_and_set() {
        let mut e = engine();
        let vm = new_vm(&mut e, "a");
        let label = |n| Action::SetNameLabel {
            class: Class::Vm,
            r: vm.clone(),
            value: "x".repeat(n),
        };
        call(&mut e, label(3500)).unwrap();
        assert_eq!(e.recs.vm(&vm).unwrap().name_label.len(), 3500);
        assert!(matches!(
            call(&mut e, label(limits::MAX_STRING + 1)),
            Err(ActionError::ValueNotSupported { ref field, .. }) if field == "name_label"
        ));
        assert_eq!(e.recs.vm(&vm).unwrap().name_label.len(), 3500);
        for i in 0..limits::MAX_MAP_ENTRIES {
            call(
                &mut e,
                Action::AddToOtherConfig {
                    class: Class::Vm,
                    r: vm.clone(),
                    key: alloc::format!("k{i}"),
                    value: "v".repeat(100),
                },
            )
            .unwrap();
        }
        assert!(matches!(
            call(
                &mut e,
                Action::AddToOtherConfig {
                    class: Class::Vm,
                    r: vm.clone(),
                    key: "last".into(),
                    value: String::new(),
                },
            ),
            Err(ActionError::ValueNotSupported { ref field, .. }) if field == "other_config"
        ));
        let long = VmRecord {
            name_label: "y".repeat(limits::MAX_STRING + 1),
            ..VmRecord::default()
        };
        let before = e.recs.refs(Class::Vm).len();
        assert!(call(&mut e, Action::Create(NewRecord::Vm(long))).is_err());
        assert_eq!(e.recs.refs(Class::Vm).len(), before);
    }

    #[test]
    fn templates_clone_but_never_start() {
        let mut e = engine();
        let tpl = e.recs.refs(Class::Vm).pop().unwrap();
        assert!(matches!(
            e.begin(&tpl, Op::Start),
            Err(ActionError::VmIsTemplate { .. })
        ));
        let vm = made(call(
            &mut e,
            Action::VmClone {
                vm: tpl.clone(),
                new_name: "c".into(),
            },
        ));
        let v = e.recs.vm(&vm).unwrap();
        assert!(v.is_a_template && !v.is_default_template);
        assert_eq!(v.parent, tpl);
        call(&mut e, Action::VmProvision { vm: vm.clone() }).unwrap();
        assert!(e.begin(&vm, Op::Start).is_ok());
    }

    #[test]
    fn task_lifecycle() {
        let mut e = engine();
        let t0 = e.token();
        let t = made(call(
            &mut e,
            Action::TaskCreate {
                label: "Async.VM.start".into(),
                description: String::new(),
            },
        ));
        let rec = |e: &Engine| match e.recs.get(Class::Task, &t) {
            Ok(Record::Task(t)) => Some(t.clone()),
            _ => None,
        };
        assert_eq!(rec(&e).unwrap().status, TaskStatus::Pending);
        assert_eq!(rec(&e).unwrap().created, "20231114T22:13:20Z");
        // Tasks are not persisted.
        assert!(e.take_effects().is_empty());
        // Destroying a running task defers it to its end.
        call(
            &mut e,
            Action::Destroy {
                class: Class::Task,
                r: t.clone(),
            },
        )
        .unwrap();
        assert!(rec(&e).is_some());
        call(
            &mut e,
            Action::TaskFinish {
                task: t.clone(),
                outcome: TaskOutcome::Success {
                    result: String::new(),
                },
            },
        )
        .unwrap();
        assert!(rec(&e).is_none());
        let b = e.events_since(&["task".into()], t0).unwrap().unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].operation, EventOp::Del);
        assert!(matches!(
            call(&mut e, Action::TaskCancel { task: t }),
            Err(ActionError::HandleInvalid { .. })
        ));
    }

    #[test]
    fn network_rules() {
        let mut e = engine();
        let net = made(call(
            &mut e,
            Action::Create(NewRecord::Network(Default::default())),
        ));
        let Ok(Record::Network(n)) = e.recs.get(Class::Network, &net) else {
            panic!()
        };
        assert_eq!(n.bridge, "xenbr1");
        let vm = new_vm(&mut e, "a");
        let vif = made(call(
            &mut e,
            Action::Create(NewRecord::Vif(crate::action::VifRecord {
                vm: vm.clone(),
                network: net.clone(),
                device: "0".into(),
                ..Default::default()
            })),
        ));
        assert!(matches!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Network,
                    r: net.clone()
                }
            ),
            Err(ActionError::HasDependents {
                dependents: Class::Vif,
                ..
            })
        ));
        let Ok(Record::Vif(f)) = e.recs.get(Class::Vif, &vif) else {
            panic!()
        };
        assert!(f.MAC.starts_with("00:16:3e:"));
        // The default network carries the host's PIF.
        let default = e
            .recs
            .class(Class::Network)
            .find(|(_, r)| matches!(r, Record::Network(n) if n.bridge == "xenbr0"))
            .map(|(u, _)| ref_of(u))
            .unwrap();
        assert!(matches!(
            call(
                &mut e,
                Action::Destroy {
                    class: Class::Network,
                    r: default
                }
            ),
            Err(ActionError::NetworkContainsPif { .. })
        ));
        // Destroying the VM takes its VIF and unlinks it.
        call(
            &mut e,
            Action::Destroy {
                class: Class::Vm,
                r: vm,
            },
        )
        .unwrap();
        assert!(e.recs.get(Class::Vif, &vif).is_err());
        call(
            &mut e,
            Action::Destroy {
                class: Class::Network,
                r: net,
            },
        )
        .unwrap();
        let _ = VmRecord::default();
    }
}
