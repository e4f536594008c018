//! Helpers shared by the toolstack's integration tests (each test file
//! uses a part of them).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use windsor_toolstack::action::{Action, ActionError, Class, Record, Reply, VmRecord};
use windsor_toolstack::host::Host;

/// How long a test waits for something before it fails.
pub const LONG: Duration = Duration::from_secs(60);

/// Runs `a`, which must succeed.
pub fn ok(h: &Host, a: Action) -> Reply {
    h.toolstack.handle(a).unwrap()
}

/// The VM record `r`.
pub fn vm(h: &Host, r: &str) -> VmRecord {
    match h.toolstack.handle(Action::GetRecord {
        class: Class::Vm,
        r: r.into(),
    }) {
        Ok(Reply::Record(Record::Vm(v))) => v,
        other => panic!("{other:?}"),
    }
}

/// Polls `f` until it holds; fails after [`LONG`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("timed out waiting for {what}");
}

/// Destroys VM `r`; its record must be gone afterwards.
pub fn destroy_vm(h: &Host, r: &str) {
    ok(
        h,
        Action::Destroy {
            class: Class::Vm,
            r: r.into(),
        },
    );
    assert!(matches!(
        h.toolstack.handle(Action::GetRecord {
            class: Class::Vm,
            r: r.into()
        }),
        Err(ActionError::HandleInvalid { .. })
    ));
}
