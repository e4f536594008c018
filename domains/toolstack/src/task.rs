//! Tasks: XAPI's record of an `Async.*` call, and the bounds on how many
//! are kept.
//!
//! Who does what: the API (`api/`) turns `Async.<Class>.<call>` into
//! [`Action::TaskCreate`](crate::action::Action::TaskCreate), runs the call
//! in the background, and reports its end with
//! [`Action::TaskFinish`](crate::action::Action::TaskFinish) — it alone can
//! spell the XML-RPC result and the XenAPI error. The backend keeps the
//! task records beside its other records, so `event.from(["task"], ...)`
//! sees them come (`add`), finish (`mod`) and go (`del`) with no second
//! event stream. [`TaskBook`] is the bookkeeping both backends share (the
//! toolstack service and the API's in-memory test double): sans-IO, time
//! passed in.
//!
//! Tasks are not persisted (XAPI does not persist them either): after a
//! restart every task is gone, and a client polling one gets
//! `HANDLE_INVALID`.
//!
//! Bounds: at most [`TaskLimits::max_pending`] tasks run at once (more get
//! [`ActionError::TooManyPendingTasks`], XAPI's `TOO_MANY_PENDING_TASKS`),
//! and at most [`TaskLimits::max_finished`] finished tasks are kept; beyond
//! that the oldest finished one is dropped, as if destroyed. A client that
//! never destroys its tasks cannot exhaust memory.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::action::{ref_of, ActionError, Map, Ref, TaskOutcome, TaskRecord, TaskStatus, NULL_REF};

/// How many tasks are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLimits {
    /// Tasks running at once.
    pub max_pending: usize,
    /// Finished tasks kept for their clients to read.
    pub max_finished: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            max_pending: 256,
            max_finished: 1024,
        }
    }
}

/// Which tasks are pending, which finished (oldest first), and which are
/// to go as soon as they finish.
#[derive(Clone, Debug, Default)]
pub struct TaskBook {
    limits: TaskLimits,
    pending: BTreeSet<String>,
    finished: VecDeque<String>,
    doomed: BTreeSet<String>,
}

/// What a [`TaskBook::destroy`] asks the backend to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroy {
    /// Remove the record now.
    Now,
    /// The task is still running: it goes when it finishes (the record
    /// shows `destroy` in `current_operations` until then).
    WhenFinished,
}

impl TaskBook {
    /// An empty book with `limits`.
    pub fn new(limits: TaskLimits) -> Self {
        TaskBook {
            limits,
            ..TaskBook::default()
        }
    }

    /// How many tasks are pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many finished tasks are kept.
    pub fn finished(&self) -> usize {
        self.finished.len()
    }

    /// A new pending task, or [`ActionError::TooManyPendingTasks`].
    pub fn create(
        &mut self,
        uuid: String,
        label: String,
        description: String,
        host: Ref,
        now: &str,
    ) -> Result<TaskRecord, ActionError> {
        if self.pending.len() >= self.limits.max_pending {
            return Err(ActionError::TooManyPendingTasks);
        }
        self.pending.insert(uuid.clone());
        Ok(TaskRecord {
            uuid,
            name_label: label,
            name_description: description,
            allowed_operations: Vec::new(),
            current_operations: Map::new(),
            created: now.to_string(),
            finished: datetime(0),
            status: TaskStatus::Pending,
            resident_on: host,
            progress: 0.0,
            ty: "<none/>".into(),
            result: String::new(),
            error_info: Vec::new(),
            other_config: Map::new(),
            subtask_of: NULL_REF.into(),
            subtasks: Vec::new(),
        })
    }

    /// Records the end of `rec`. Returns the uuids of the tasks whose
    /// records must go now: the oldest finished ones beyond the bound, and
    /// `rec` itself if it was destroyed while pending. A task that is not
    /// pending is left as it is (XAPI ignores a second completion too).
    pub fn finish(&mut self, rec: &mut TaskRecord, outcome: TaskOutcome, now: &str) -> Vec<String> {
        if rec.status != TaskStatus::Pending || !self.pending.remove(&rec.uuid) {
            return Vec::new();
        }
        rec.finished = now.to_string();
        rec.progress = 1.0;
        rec.allowed_operations.clear();
        match outcome {
            TaskOutcome::Success { result } => {
                rec.status = TaskStatus::Success;
                rec.result = result;
            }
            TaskOutcome::Failure { error_info } => {
                rec.status = TaskStatus::Failure;
                rec.error_info = error_info;
            }
        }
        if self.doomed.remove(&rec.uuid) {
            return vec![rec.uuid.clone()];
        }
        self.finished.push_back(rec.uuid.clone());
        let mut drop = Vec::new();
        while self.finished.len() > self.limits.max_finished {
            if let Some(old) = self.finished.pop_front() {
                drop.push(old);
            }
        }
        drop
    }

    /// `task.cancel`: finished tasks ignore it (as XAPI's do); a pending
    /// one is cancelled only if it allows it, which the calls Windsor runs
    /// never do (they run to their end), so it fails with
    /// [`ActionError::TaskNotCancellable`].
    pub fn cancel(&self, rec: &TaskRecord) -> Result<(), ActionError> {
        if rec.status != TaskStatus::Pending {
            return Ok(());
        }
        Err(ActionError::TaskNotCancellable {
            task: ref_of(&rec.uuid),
        })
    }

    /// `task.destroy`: a finished task goes now, a pending one when it
    /// finishes (and `rec` shows that in `current_operations`).
    pub fn destroy(&mut self, rec: &mut TaskRecord) -> Destroy {
        if self.pending.contains(&rec.uuid) {
            self.doomed.insert(rec.uuid.clone());
            rec.current_operations
                .insert(format!("destroy-{}", rec.uuid), "destroy".into());
            Destroy::WhenFinished
        } else {
            self.finished.retain(|u| *u != rec.uuid);
            Destroy::Now
        }
    }
}

/// A XenAPI datetime (`20261123T22:50:00Z`, UTC) for a Unix time in
/// seconds.
pub fn datetime(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(max_pending: usize, max_finished: usize) -> TaskBook {
        TaskBook::new(TaskLimits {
            max_pending,
            max_finished,
        })
    }

    fn new(b: &mut TaskBook, u: &str) -> Result<TaskRecord, ActionError> {
        b.create(
            u.into(),
            "Async.VM.start".into(),
            String::new(),
            NULL_REF.into(),
            "t0",
        )
    }

    fn ok() -> TaskOutcome {
        TaskOutcome::Success {
            result: String::new(),
        }
    }

    #[test]
    fn pending_tasks_are_bounded() {
        let mut b = book(2, 10);
        let mut t1 = new(&mut b, "1").unwrap();
        new(&mut b, "2").unwrap();
        assert_eq!(new(&mut b, "3"), Err(ActionError::TooManyPendingTasks));
        assert!(b.finish(&mut t1, ok(), "t1").is_empty());
        assert_eq!(t1.status, TaskStatus::Success);
        assert_eq!(t1.progress, 1.0);
        assert_eq!(t1.finished, "t1");
        new(&mut b, "3").unwrap();
        assert_eq!(b.pending(), 2);
    }

    #[test]
    fn oldest_finished_tasks_are_dropped() {
        let mut b = book(10, 2);
        let mut ts: Vec<TaskRecord> = ["a", "b", "c"]
            .iter()
            .map(|u| new(&mut b, u).unwrap())
            .collect();
        assert!(b.finish(&mut ts[0], ok(), "t").is_empty());
        assert!(b.finish(&mut ts[1], ok(), "t").is_empty());
        let failed = TaskOutcome::Failure {
            error_info: vec!["VM_BAD_POWER_STATE".into()],
        };
        assert_eq!(b.finish(&mut ts[2], failed, "t"), vec!["a".to_string()]);
        assert_eq!(ts[2].status, TaskStatus::Failure);
        assert_eq!(ts[2].error_info, vec!["VM_BAD_POWER_STATE".to_string()]);
        assert_eq!(b.finished(), 2);
        // A second completion changes nothing.
        assert!(b.finish(&mut ts[2], ok(), "t").is_empty());
        assert_eq!(ts[2].status, TaskStatus::Failure);
    }

    #[test]
    fn destroy_and_cancel() {
        let mut b = book(10, 10);
        let mut t = new(&mut b, "p").unwrap();
        assert_eq!(
            b.cancel(&t),
            Err(ActionError::TaskNotCancellable { task: ref_of("p") })
        );
        assert_eq!(b.destroy(&mut t), Destroy::WhenFinished);
        assert_eq!(
            t.current_operations.values().next().map(String::as_str),
            Some("destroy")
        );
        assert_eq!(b.finish(&mut t, ok(), "t"), vec!["p".to_string()]);
        assert_eq!(b.finished(), 0);
        let mut u = new(&mut b, "q").unwrap();
        b.finish(&mut u, ok(), "t");
        assert_eq!(b.cancel(&u), Ok(()));
        assert_eq!(b.destroy(&mut u), Destroy::Now);
        assert_eq!(b.finished(), 0);
    }

    #[test]
    fn datetimes_are_xapi_shaped() {
        assert_eq!(datetime(0), "19700101T00:00:00Z");
        assert_eq!(datetime(951_782_400), "20000229T00:00:00Z");
        assert_eq!(datetime(1_795_474_200), "20261123T22:50:00Z");
    }
}
