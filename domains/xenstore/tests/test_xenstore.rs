//! Xen's own `test-xenstore` (package `xen-utils-4.17`) against
//! `windsor-xenstored`: every test once, then 30 s of random mode.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require, run, Daemon, TempDir};

const TEST_XENSTORE: &str = "/usr/lib/xen-4.17/bin/test-xenstore";

fn test_xenstore(d: &Daemon, args: &[&str], limit: Duration) {
    require(TEST_XENSTORE, "xen-utils-4.17");
    let (good, out, err) = run(
        Command::new(TEST_XENSTORE)
            .args(args)
            .env("XENSTORED_PATH", &d.socket),
        limit,
    );
    assert!(good, "test-xenstore {args:?} failed:\n{out}\n{err}");
}

#[test]
fn all_tests() {
    let dir = TempDir::new("txs");
    let d = Daemon::start(&dir.0);
    test_xenstore(&d, &[], Duration::from_secs(30));
}

#[test]
fn random_30s() {
    let dir = TempDir::new("txs-r");
    let d = Daemon::start(&dir.0);
    test_xenstore(&d, &["-r", "30"], Duration::from_secs(45));
}
