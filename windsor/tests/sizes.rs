//! Impossible VM sizes are refused through the API with XAPI's error codes
//! (issue 16 item 7), and a record larger than one xenstore node survives
//! a restart of `windsor up`.

mod common;

use common::*;

#[test]
fn impossible_sizes_get_xapi_errors_and_big_records_persist() {
    let dir = std::env::temp_dir().join(format!("windsor-sizes-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = Up::start(&dir);

    // Refused at VM.create.
    for (args, code) in [
        (
            &["vm", "create", "m0", "--memory-mib", "0"][..],
            "INVALID_VALUE",
        ),
        (
            &["vm", "create", "mneg", "--memory-mib=-1"],
            "INVALID_VALUE",
        ),
        (&["vm", "create", "v0", "--vcpus", "0"], "INVALID_VALUE"),
    ] {
        let err = windsor_fails(&dir, args);
        assert!(err.contains(code), "{args:?}: {err}");
    }
    // Valid records the host cannot run: refused at VM.start.
    windsor(&dir, &["vm", "create", "pib", "--memory-mib", "1073741824"]);
    let err = windsor_fails(&dir, &["vm", "start", "pib"]);
    assert!(err.contains("HOST_NOT_ENOUGH_FREE_MEMORY"), "{err}");
    windsor(&dir, &["vm", "create", "wide", "--vcpus", "100000"]);
    let err = windsor_fails(&dir, &["vm", "start", "wide"]);
    assert!(err.contains("HOST_NOT_ENOUGH_PCPUS"), "{err}");
    assert_eq!(power_state(&dir, "wide").as_deref(), Some("Halted"));

    // A 3,500-character name: more than one xenstore node once encoded.
    let long = "n".repeat(3500);
    windsor(&dir, &["vm", "create", &long]);
    up.interrupt();

    let up = Up::start(&dir);
    assert_eq!(
        power_state(&dir, &long).as_deref(),
        Some("Halted"),
        "the long-named record survived the restart"
    );
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
