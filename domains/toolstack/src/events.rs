//! The event log behind `event.from`: every change to a record, numbered,
//! with the record as it was after the change; a bounded window of
//! history, and the token rules.
//!
//! Tokens: a token is the id of the newest event the client has seen; the
//! next batch holds what came after it. Token 0 means "everything": the
//! caller answers it with every record as `add` (the log is not needed).
//! Ids handed out start at 1, so a token from [`EventLog::token`] is
//! never 0.
//!
//! `EVENTS_LOST` (XAPI's rule): a token newer than any event ever handed
//! out (a token from another toolstack life, or forged), or one so old
//! that events after it have left the window.
//!
//! A batch holds the newest event per object; an object created since the
//! token (and not deleted) is reported as `add` even if it changed again.
//!
//! Sans-IO: [`EventLog::since`] answers "nothing yet" with `Ok(None)`;
//! waiting (until a change or a timeout) is the executor's.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::action::{ActionError, Class, Event, EventBatch, EventOp, Record, Ref};

/// The numbered changes, at most `cap` kept.
#[derive(Clone, Debug)]
pub struct EventLog {
    events: VecDeque<Event>,
    last_id: u64,
    cap: usize,
}

impl EventLog {
    /// An empty log keeping `cap` events (at least one).
    pub fn new(cap: usize) -> Self {
        EventLog {
            events: VecDeque::new(),
            // Token 0 means "everything": ids handed out start at 1.
            last_id: 1,
            cap: cap.max(1),
        }
    }

    /// The newest id (what `event.from` returns as the next token now).
    pub fn token(&self) -> u64 {
        self.last_id
    }

    /// Records one change; `snapshot` is the record after it (`None` for
    /// `del`). The oldest event leaves the window when it is full.
    pub fn push(&mut self, class: Class, r: Ref, operation: EventOp, snapshot: Option<Record>) {
        self.last_id += 1;
        self.events.push_back(Event {
            id: self.last_id,
            class,
            operation,
            r,
            snapshot,
        });
        while self.events.len() > self.cap {
            self.events.pop_front();
        }
    }

    /// Whether `token` can still be answered (see the module doc).
    pub fn check(&self, token: u64) -> Result<(), ActionError> {
        if token > self.last_id || self.events.front().is_some_and(|e| e.id > token + 1) {
            return Err(ActionError::EventsLost);
        }
        Ok(())
    }

    /// The changes after `token` that `want` selects, newest per object,
    /// oldest first, each snapshot passed through `view` (computed fields);
    /// `Ok(None)` when there is none yet. `token` must be non-zero.
    pub fn since(
        &self,
        token: u64,
        want: impl Fn(Class, &str) -> bool,
        view: impl Fn(&Record) -> Record,
    ) -> Result<Option<EventBatch>, ActionError> {
        self.check(token)?;
        let start = self.events.partition_point(|e| e.id <= token);
        let mut latest: BTreeMap<(Class, &str), (&Event, bool)> = BTreeMap::new();
        for e in self.events.range(start..) {
            if want(e.class, &e.r) {
                let added = e.operation == EventOp::Add
                    || latest.get(&(e.class, e.r.as_str())).is_some_and(|x| x.1);
                latest.insert((e.class, e.r.as_str()), (e, added));
            }
        }
        if latest.is_empty() {
            return Ok(None);
        }
        let mut events: Vec<Event> = latest
            .into_values()
            .map(|(e, added)| Event {
                snapshot: e.snapshot.as_ref().map(&view),
                operation: if added && e.operation != EventOp::Del {
                    EventOp::Add
                } else {
                    e.operation
                },
                ..e.clone()
            })
            .collect();
        events.sort_by_key(|e| e.id);
        Ok(Some(EventBatch {
            events,
            token: self.last_id,
        }))
    }
}

/// Whether `event.from`'s `classes` select an object: `*`, a class name
/// (any case), or `class/ref`.
pub fn selects(classes: &[String], class: Class, r: &str) -> bool {
    classes.iter().any(|c| {
        c == "*"
            || match c.split_once('/') {
                Some((cl, rf)) => Class::parse(cl) == Some(class) && rf == r,
                None => Class::parse(c) == Some(class),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::VmRecord;
    use alloc::string::ToString;
    use alloc::vec;

    fn vm(u: &str) -> Option<Record> {
        Some(Record::Vm(VmRecord {
            uuid: u.into(),
            ..VmRecord::default()
        }))
    }

    fn all(_: Class, _: &str) -> bool {
        true
    }

    #[test]
    fn tokens_start_at_one_and_batches_follow_them() {
        let mut log = EventLog::new(16);
        let t0 = log.token();
        assert_eq!(t0, 1);
        assert_eq!(log.since(t0, all, Clone::clone), Ok(None));
        log.push(Class::Vm, "OpaqueRef:a".into(), EventOp::Add, vm("a"));
        log.push(Class::Vm, "OpaqueRef:a".into(), EventOp::Mod, vm("a"));
        log.push(Class::Vm, "OpaqueRef:b".into(), EventOp::Mod, vm("b"));
        let b = log.since(t0, all, Clone::clone).unwrap().unwrap();
        assert_eq!(b.token, 4);
        // Newest per object; a stays `add` (created since the token).
        let ops: Vec<_> = b
            .events
            .iter()
            .map(|e| (e.r.as_str(), e.operation))
            .collect();
        assert_eq!(
            ops,
            [("OpaqueRef:a", EventOp::Add), ("OpaqueRef:b", EventOp::Mod)]
        );
        // From the newest token: nothing.
        assert_eq!(log.since(b.token, all, Clone::clone), Ok(None));
        // From token 2 (after a's add): a is a mod.
        let b = log.since(2, all, Clone::clone).unwrap().unwrap();
        assert_eq!(b.events[0].operation, EventOp::Mod);
    }

    #[test]
    fn deleted_objects_are_del_without_snapshot() {
        let mut log = EventLog::new(16);
        log.push(Class::Vm, "OpaqueRef:a".into(), EventOp::Add, vm("a"));
        log.push(Class::Vm, "OpaqueRef:a".into(), EventOp::Del, None);
        let b = log.since(1, all, Clone::clone).unwrap().unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].operation, EventOp::Del);
        assert_eq!(b.events[0].snapshot, None);
    }

    #[test]
    fn events_lost_for_future_and_forgotten_tokens() {
        let mut log = EventLog::new(2);
        assert_eq!(
            log.since(99, all, Clone::clone),
            Err(ActionError::EventsLost)
        );
        for i in 0..5 {
            log.push(Class::Vm, format_ref(i), EventOp::Mod, vm("x"));
        }
        // Ids 2..=6 were handed out; 5 and 6 are kept.
        assert_eq!(log.token(), 6);
        assert_eq!(
            log.since(1, all, Clone::clone),
            Err(ActionError::EventsLost)
        );
        assert_eq!(
            log.since(3, all, Clone::clone),
            Err(ActionError::EventsLost)
        );
        // Token 4: the next event (5) is still there.
        assert_eq!(
            log.since(4, all, Clone::clone)
                .unwrap()
                .unwrap()
                .events
                .len(),
            2
        );
        assert_eq!(
            log.since(7, all, Clone::clone),
            Err(ActionError::EventsLost)
        );
    }

    #[test]
    fn class_filters() {
        let classes = vec!["vm".to_string(), "sr/OpaqueRef:s".to_string()];
        assert!(selects(&classes, Class::Vm, "OpaqueRef:x"));
        assert!(selects(&classes, Class::Sr, "OpaqueRef:s"));
        assert!(!selects(&classes, Class::Sr, "OpaqueRef:t"));
        assert!(!selects(&classes, Class::Host, "OpaqueRef:h"));
        assert!(selects(&["*".to_string()], Class::Task, "OpaqueRef:t"));
        let mut log = EventLog::new(4);
        log.push(Class::Host, "OpaqueRef:h".into(), EventOp::Mod, None);
        let want = |c, r: &str| selects(&classes, c, r);
        assert_eq!(log.since(1, want, Clone::clone), Ok(None));
    }

    fn format_ref(i: u32) -> Ref {
        alloc::format!("OpaqueRef:{i}")
    }
}
