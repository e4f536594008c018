//! The TAP uplink: Linux in a network namespace made by the test reaches a
//! Windsor guest through netback's switch (ping and a TCP connection).
//!
//! Needs root (CAP_NET_ADMIN for the TAP device and `ip netns`) and
//! iproute2 + iputils-ping, which `cargo xtask setup` installs.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use windsor_netback::host::TapUplink;
use xen_sim::tap::Tap;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        run(&["ip", "netns", "add", name]);
        Netns(name.into())
    }
    /// Runs `cmd` in the namespace; returns (success, stdout).
    fn exec(&self, cmd: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(cmd: &[&str]) {
    let st = Command::new(cmd[0]).args(&cmd[1..]).status().expect(cmd[0]);
    assert!(st.success(), "{cmd:?} failed");
}

#[test]
fn a_namespace_pings_and_connects_to_a_guest_through_the_tap_uplink() {
    let id = std::process::id() % 100_000;
    let tap_name = format!("wtap{id}");
    let tap = Tap::open(&tap_name).expect("TAP device (needs root)");
    let ns = Netns::new(&format!("wns{id}"));
    run(&["ip", "link", "set", &tap_name, "netns", &ns.0]);
    for cmd in [
        vec!["ip", "addr", "add", "10.2.0.1/24", "dev", &tap_name],
        vec!["ip", "link", "set", &tap_name, "up"],
        vec!["ip", "link", "set", "lo", "up"],
    ] {
        let (ok, out) = ns.exec(&cmd);
        assert!(ok, "{cmd:?}: {out}");
    }
    let h = Host::new(Some(TapUplink(tap)));
    let (dom0, cxs) = h.control();
    let mut ctl = connect_control(&dom0, &cxs, h.nb);
    let (dg, xg) = h.guest(&mut ctl, "10.2.0.2");
    let stop = Arc::new(AtomicBool::new(false));
    let guest = serve(dg, xg, "10.2.0.2/24", stop.clone());
    let (ok, out) = ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "10", "10.2.0.2"]);
    assert!(ok, "ping from the namespace: {out}");
    assert!(out.contains("3 received"), "{out}");
    // A TCP connection to the guest's echo service.
    let (ok, out) = ns.exec(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/10.2.0.2/7 && printf 'windsor-tap-echo' >&3 && timeout 10 head -c 16 <&3",
    ]);
    assert!(ok, "tcp from the namespace: {out}");
    assert_eq!(out, "windsor-tap-echo");
    stop.store(true, Ordering::Relaxed);
    guest.join().unwrap();
}
