//! `windsor up` end to end: it starts, reports its domains, serves the
//! xenstore to Debian's real `xenstore-utils`, runs a VM lifecycle driven by
//! `windsor vm …` through the API, stops cleanly on Ctrl-C (SIGINT), and a
//! restart on the same data directory keeps the writes and the VM records.

mod common;

use common::*;

#[test]
fn up_serves_xenstore_stops_on_ctrl_c_and_keeps_writes() {
    let dir = std::env::temp_dir().join(format!("windsor-up-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("xenstored.sock");

    let up = Up::start(&dir);
    let report = up.seen.join("\n");
    assert!(report.contains("toolstack"), "{report}");
    assert!(report.contains("xenstore"), "{report}");
    assert!(
        report.contains(&format!("unix:{}", socket.display())),
        "{report}"
    );
    xs(&socket, "xenstore-write", &["/windsor/test", "kept"]);
    assert_eq!(
        xs(&socket, "xenstore-read", &["/windsor/test"]).trim(),
        "kept"
    );
    // A VM lifecycle through the API's Rust client.
    windsor(&dir, &["vm", "create", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Halted"));
    windsor(&dir, &["vm", "start", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Running"));
    let table = windsor(&dir, &["vm", "list"]);
    assert!(
        table.contains("fuzz1") && table.contains("Running"),
        "{table}"
    );
    windsor(&dir, &["vm", "pause", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Paused"));
    windsor(&dir, &["vm", "unpause", "fuzz1"]);
    windsor(&dir, &["vm", "shutdown", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1").as_deref(), Some("Halted"));
    let status = windsor(&dir, &["host", "status"]);
    assert!(status.contains("API_version_major"), "{status}");
    // Plain values for people, not Rust's debug form.
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["enabled", "true"]),
        "{status}"
    );
    assert!(
        !status.contains("Bool(") && !status.contains("String("),
        "{status}"
    );
    // The records are in the same store the host's clients see.
    let list: serde_json::Value =
        serde_json::from_str(&windsor(&dir, &["vm", "list", "--json"])).unwrap();
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    let record = xs(&socket, "xenstore-read", &[&format!("/pool/VM/{uuid}")]);
    assert!(
        record.contains("\"name_label\":\"fuzz1\""),
        "pool record: {record}"
    );

    let out = up.interrupt().join("\n");
    assert!(
        out.contains("xenstore (domain 1) ended: shutdown (poweroff)"),
        "{out}"
    );

    let up = Up::start(&dir);
    assert_eq!(
        xs(&socket, "xenstore-read", &["/windsor/test"]).trim(),
        "kept",
        "the write survived the restart"
    );
    assert_eq!(
        power_state(&dir, "fuzz1").as_deref(),
        Some("Halted"),
        "the VM record survived the restart; VMs now: {}; /pool/VM: {}",
        windsor(&dir, &["vm", "list", "--all"]),
        xs(&socket, "xenstore-ls", &["/pool/VM"])
    );
    windsor(&dir, &["vm", "destroy", "fuzz1"]);
    assert_eq!(power_state(&dir, "fuzz1"), None);
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
