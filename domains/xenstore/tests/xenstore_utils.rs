//! Debian's `xenstore-utils` against `windsor-xenstored`, unmodified: they
//! find the daemon through `XENSTORED_PATH`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require, run, Daemon, TempDir};

const LIMIT: Duration = Duration::from_secs(20);

fn xs(d: &Daemon, tool: &str, args: &[&str]) -> (bool, String, String) {
    let path = format!("/usr/bin/{tool}");
    require(&path, "xenstore-utils");
    run(
        Command::new(&path)
            .args(args)
            .env("XENSTORED_PATH", &d.socket),
        LIMIT,
    )
}

fn ok(d: &Daemon, tool: &str, args: &[&str]) -> String {
    let (good, out, err) = xs(d, tool, args);
    assert!(good, "{tool} {args:?} failed: {out}{err}");
    out
}

#[test]
fn read_write_ls_list_exists_rm() {
    let dir = TempDir::new("utils");
    let d = Daemon::start(&dir.0);
    ok(
        &d,
        "xenstore-write",
        &["/vm/a/name", "alpha", "/vm/a/mem", "512"],
    );
    assert_eq!(ok(&d, "xenstore-read", &["/vm/a/name"]), "alpha\n");
    assert_eq!(
        ok(&d, "xenstore-read", &["/vm/a/name", "/vm/a/mem"]),
        "alpha\n512\n"
    );
    let ls = ok(&d, "xenstore-ls", &["-f", "-p", "/vm"]);
    assert!(ls.contains("/vm/a/name = \"alpha\""), "{ls}");
    assert!(ls.contains("(n0)"), "{ls}");
    let list = ok(&d, "xenstore-list", &["/vm/a"]);
    let mut names: Vec<&str> = list.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["mem", "name"]);
    assert!(xs(&d, "xenstore-exists", &["/vm/a/name"]).0);
    assert!(!xs(&d, "xenstore-exists", &["/vm/nope"]).0);
    assert!(!xs(&d, "xenstore-read", &["/vm/nope"]).0);
    ok(&d, "xenstore-rm", &["/vm/a/mem"]);
    assert!(!xs(&d, "xenstore-exists", &["/vm/a/mem"]).0);
    // -t: remove the parent too if it becomes empty.
    ok(&d, "xenstore-write", &["/t/x/y", "1"]);
    ok(&d, "xenstore-rm", &["-t", "/t/x/y"]);
    assert!(!xs(&d, "xenstore-exists", &["/t"]).0);
}

#[test]
fn chmod_recursive_and_upward() {
    let dir = TempDir::new("chmod");
    let d = Daemon::start(&dir.0);
    ok(&d, "xenstore-write", &["/c/d/e", "v"]);
    // Only dom0 exists here, and C xenstored refuses ACLs naming unknown domains.
    ok(&d, "xenstore-chmod", &["-r", "/c", "b0", "r0"]);
    let ls = ok(&d, "xenstore-ls", &["-f", "-p", "/c"]);
    assert!(ls.contains("/c/d = \"\"   (b0,r0)"), "{ls}");
    assert!(ls.contains("/c/d/e = \"v\"   (b0,r0)"), "{ls}");
    ok(&d, "xenstore-write", &["/u/v/w", "x"]);
    ok(&d, "xenstore-chmod", &["-u", "/u/v/w", "r0"]);
    let ls = ok(&d, "xenstore-ls", &["-f", "-p", "/u"]);
    assert!(ls.contains("/u/v = \"\"   (r0)"), "{ls}");
    assert!(ls.contains("/u/v/w = \"x\"   (r0)"), "{ls}");
}

#[test]
fn watch_sees_writes() {
    let dir = TempDir::new("watch");
    let d = Daemon::start(&dir.0);
    require("/usr/bin/xenstore-watch", "xenstore-utils");
    ok(&d, "xenstore-write", &["/w/k", "0"]);
    // -n 3: the initial event plus two writes.
    let mut watch = Command::new("/usr/bin/xenstore-watch");
    watch
        .args(["-n", "3", "/w"])
        .env("XENSTORED_PATH", &d.socket);
    let handle = std::thread::spawn(move || run(&mut watch, LIMIT));
    // Write until the watcher exits (it may not be watching yet at first).
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while !handle.is_finished() && t0.elapsed() < LIMIT {
        ok(&d, "xenstore-write", &["/w/k", &i.to_string()]);
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (good, out, err) = handle.join().expect("watcher");
    assert!(good, "xenstore-watch failed: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "/w");
    assert_eq!(lines[1], "/w/k");
}
