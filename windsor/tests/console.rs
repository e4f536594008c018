//! Consoles in host mode: each guest of `windsor up` writes its console
//! into its `io/console.h` ring; dom0's console backend captures it, the
//! API serves it as XenAPI `console` objects and over HTTP, and
//! `windsor vm console` shows it. A guest that floods its console is held
//! to its rate and does not hold up another guest's boot or shutdown.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use windsor_api::client::{Client, Endpoint, Protocol, VmSpec};
use windsor_api::value::Value;

/// The console backend's default rate and burst (windsor-console `Limits`).
const RATE: f64 = 64.0 * 1024.0;
const BURST: f64 = 16.0 * 1024.0;

fn domid(c: &mut Client, vm: &str) -> i64 {
    match c.session_call("VM.get_domid", &[Value::str(vm)]).unwrap() {
        Value::Int(d) => d,
        Value::String(s) => s.parse().unwrap(),
        v => panic!("domid {v:?}"),
    }
}

/// Polls `windsor vm console NAME` until its output contains `needle`;
/// returns how long that took.
fn console_shows(data: &std::path::Path, name: &str, needle: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let out = Command::new(WINDSOR)
            .args(["vm", "console", name, "-n", "1000", "--api"])
            .arg(format!("unix:{}", data.join("api.sock").display()))
            .env("WINDSOR_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(needle) {
            return t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let text = String::from_utf8_lossy(&out.stdout);
            let tail = &text[text.len().saturating_sub(300)..];
            panic!(
                "no {needle:?} on {name}'s console: {}; ...{tail}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn other_config_num(rec: &Value, key: &str) -> u64 {
    rec.get("other_config")
        .and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("other_config:{key} in {rec:?}"))
}

#[test]
fn consoles_are_captured_served_and_a_flooder_is_held_to_its_rate() {
    let dir = std::env::temp_dir().join(format!("windsor-console-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = Up::start(&dir);
    assert!(up.seen.join("\n").contains("console"), "{:?}", up.seen);
    let mut c = Client::connect(Endpoint::Unix(dir.join("api.sock")), Protocol::XmlRpc).unwrap();
    c.login("root", PASSWORD).unwrap();
    let quiet = c.vm_create(&VmSpec::fuzz_target("quiet")).unwrap();
    let flood = c.vm_create(&VmSpec::fuzz_target("flood")).unwrap();

    // 1. The quiet guest alone: its console line, as the CLI shows it.
    let t0 = Instant::now();
    c.vm_start(&quiet, false).unwrap();
    let d = domid(&mut c, &quiet);
    console_shows(&dir, "quiet", &format!("fuzz-target: dom {d} up"));
    let alone = t0.elapsed();

    // XenAPI console objects: one for the running VM, none for the halted.
    let cons = c
        .session_call("VM.get_consoles", &[Value::str(&quiet)])
        .unwrap();
    let cons = cons.as_array().unwrap().to_vec();
    assert_eq!(cons.len(), 1, "{cons:?}");
    let cref = cons[0].as_str().unwrap().to_string();
    let rec = c
        .session_call("console.get_record", &[Value::str(&cref)])
        .unwrap();
    assert_eq!(rec.get("protocol"), Some(&Value::str("vt100")));
    assert_eq!(rec.get("VM"), Some(&Value::str(&quiet)));
    assert_eq!(other_config_num(&rec, "domid"), d as u64);
    let uuid = rec.get("uuid").unwrap().as_str().unwrap().to_string();
    assert_eq!(
        c.session_call("console.get_by_uuid", &[Value::str(&uuid)])
            .unwrap(),
        Value::str(&cref)
    );
    let all = c.session_call("console.get_all", &[]).unwrap();
    assert_eq!(all.as_array().unwrap(), &[Value::str(&cref)][..]);
    let none = c
        .session_call("VM.get_consoles", &[Value::str(&flood)])
        .unwrap();
    assert_eq!(none.as_array().map(<[Value]>::len), Some(0));
    // The location serves the text over HTTP, with a session only.
    let location = rec.get("location").unwrap().as_str().unwrap().to_string();
    assert!(
        location.starts_with("http://127.0.0.1:") && location.contains("/console?uuid="),
        "{location}"
    );
    let curl = |url: &str| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(curl(&location).ends_with("\n401"), "no session, no console");
    let body = curl(&format!("{location}&session_id={}", c.session().unwrap()));
    assert!(body.contains(&format!("fuzz-target: dom {d} up")), "{body}");
    assert!(body.ends_with("\n200"), "{body}");
    c.vm_clean_shutdown(&quiet).unwrap();

    // 2. A flooder, then the quiet guest again beside it.
    c.vm_start(&flood, false).unwrap();
    let fd = domid(&mut c, &flood);
    // Flood once the backend serves its console (before that, what does
    // not fit in the ring is dropped, by design of the simulated guest).
    console_shows(&dir, "flood", &format!("fuzz-target: dom {fd} up"));
    c.xs_write(
        &format!("/local/domain/{fd}/control/misbehave"),
        "console-flood",
    )
    .unwrap();
    console_shows(&dir, "flood", "fuzz-target: flood ");
    let flood_t0 = Instant::now();
    let t1 = Instant::now();
    c.vm_start(&quiet, false).unwrap();
    let d = domid(&mut c, &quiet);
    console_shows(&dir, "quiet", &format!("fuzz-target: dom {d} up"));
    let beside = t1.elapsed();
    // `--follow` prints until the VM stops.
    let follow = Command::new(WINDSOR)
        .args(["vm", "console", "quiet", "--follow", "-n", "1", "--api"])
        .arg(format!("unix:{}", dir.join("api.sock").display()))
        .env("WINDSOR_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t2 = Instant::now();
    c.vm_clean_shutdown(&quiet).unwrap();
    let shutdown = t2.elapsed();
    let out = follow.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        followed.contains("fuzz-target: poweroff requested"),
        "{followed}"
    );

    // The flooder was held to its rate: what the backend took from it.
    std::thread::sleep(Duration::from_millis(1000));
    let fcons = c
        .session_call("VM.get_consoles", &[Value::str(&flood)])
        .unwrap();
    let fref = fcons.as_array().unwrap()[0].clone();
    let frec = c.session_call("console.get_record", &[fref]).unwrap();
    let elapsed = flood_t0.elapsed().as_secs_f64() + 2.0; // since misbehave, generously
    let taken = other_config_num(&frec, "total_bytes") as f64;
    let lines = other_config_num(&frec, "lines");
    assert!(
        taken <= BURST + RATE * elapsed,
        "flooder gave {taken} bytes in {elapsed:.1}s"
    );
    // The tail through the CLI: the last 5 lines, all flood lines (the
    // last may be cut short: the flooder is still writing it).
    let tail = windsor(&dir, &["vm", "console", "flood", "-n", "5"]);
    let tail_lines: Vec<&str> = tail.lines().collect();
    assert_eq!(tail_lines.len(), 5, "{tail}");
    assert!(
        tail_lines
            .iter()
            .all(|l| l.starts_with("fuzz-target: flood ") || "fuzz-target: flood ".starts_with(l)),
        "{tail}"
    );
    assert!(
        beside < Duration::from_secs(5) && shutdown < Duration::from_secs(5),
        "quiet guest held up: up in {beside:?}, shutdown {shutdown:?}"
    );
    // The flooder still answers its shutdown request; its console stays
    // readable at its location, closed, with its last words.
    let fpath = c.vm_console_path(&flood).unwrap();
    c.vm_clean_shutdown(&flood).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = c.console_read(&fpath, 0).unwrap();
    while !last.closed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        last = c.console_read(&fpath, 0).unwrap();
    }
    assert!(last.closed, "the flooder's console is closed");
    // What the guest wrote: its `up` line, flood lines 0..=n, and its
    // `poweroff requested` line; what the backend took: `end`.
    let n: u64 = last
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("fuzz-target: flood "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap();
    let flood_bytes: u64 = (0..=n)
        .map(|i| format!("fuzz-target: flood {i} {}\n", "x".repeat(62)).len() as u64)
        .sum();
    let up_line =
        format!("fuzz-target: dom {fd} up, boot-id 0000000000000000, resumes 0\n").len() as u64;
    let written = up_line + flood_bytes + "fuzz-target: poweroff requested\n".len() as u64;
    assert!(last.end <= written, "took {} of {written} bytes", last.end);
    eprintln!(
        "console flood: {} flood lines written by the guest in {:.1} s, {} bytes; the backend took {} bytes \
         ({} dropped: a write that found the ring full for 1 s); {lines} lines ({taken} bytes) captured at the record read; \
         quiet guest up in {alone:?} alone, {beside:?} beside the flooder; its clean shutdown took {shutdown:?}",
        n + 1,
        flood_t0.elapsed().as_secs_f64(),
        written,
        last.end,
        written - last.end
    );
    let gone = c.session_call("console.get_all", &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut gone = gone;
    while gone.as_array().is_some_and(|a| !a.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        gone = c.session_call("console.get_all", &[]).unwrap();
    }
    assert_eq!(
        gone.as_array().map(<[Value]>::len),
        Some(0),
        "consoles go with their domains"
    );
    let err = windsor_fails(&dir, &["vm", "console", "quiet"]);
    assert!(err.contains("no console"), "{err}");
    up.interrupt();
    let _ = std::fs::remove_dir_all(&dir);
}
