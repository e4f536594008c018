//! Xen mode: guests on a network through Windsor's netback domain, on real
//! Xen 4.17 under QEMU (TCG).
//!
//! One boot of `boot-config/examples/linux-net.toml` (the same code as
//! `cargo xtask xen-boot --config ...`; the module is included from
//! `xtask/src/xen_boot.rs`): dom0 starts the netback PVH domain and
//! connects to its control channel over vchan; a Windsor fuzz-target guest
//! (Windsor's netfront + smoltcp) and two Debian Linux guests (Debian's
//! kernel, its own `xen-netfront`) each get a VIF, written in the standard
//! backend/frontend layout and plugged into netback before they run. The
//! Linux guests' test init pings its peers and streams random bytes
//! through their TCP echo services (busybox `ping`, `nc`), printing
//! `WINDSOR-NET` lines on its console, which dom0's console backend shows
//! as `[linux0] ...`. So both cases of the issue run in one boot:
//! Linux <-> Windsor guest (linux0 and fuzz0) and Linux <-> Linux (linux0
//! and linux1). At teardown dom0 prints each VIF's
//! counters from netback and stops netback over the control channel.
//!
//! The kernel and busybox-static are fetched once with `apt-get download`
//! and cached under `target/`. Every wait is bounded: the guests' init
//! gives up on a silent peer after ~150 s, dom0 waits `domain_ready_ms`,
//! QEMU is killed at the host description's `timeout_secs`.

#[allow(dead_code)]
#[path = "../../xtask/src/xen_boot.rs"]
mod xen_boot;

use xen_boot::{boot, XenBootArgs};

/// The console lines of `guest` (dom0 prints them as `[guest] ...`) that
/// contain every one of `parts`.
fn console<'a>(r: &'a xen_boot::BootReport, guest: &str, parts: &[&str]) -> Vec<&'a str> {
    let tag = format!("[{guest}] ");
    r.lines
        .iter()
        .filter(|l| l.starts_with(&tag) && parts.iter().all(|p| l.contains(p)))
        .map(String::as_str)
        .collect()
}

/// `n` of `... <n> <word> ...` in `line`.
fn number_before(line: &str, word: &str) -> Option<f64> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|x| x.trim_end_matches(',') == word)?;
    w.get(i.checked_sub(1)?)?.parse().ok()
}

/// `(received, avg rtt ms)` of a guest's `WINDSOR-NET ping <peer>:` line.
fn ping(r: &xen_boot::BootReport, guest: &str, peer: &str) -> (u32, Option<f64>) {
    let head = format!("WINDSOR-NET ping {peer}:");
    let lines = console(r, guest, &[&head]);
    assert_eq!(lines.len(), 1, "{guest} -> {peer}: {lines:?}");
    let l = lines[0];
    // "5 packets transmitted, 4 packets received, 20% packet loss ..."
    let received = l
        .split(", ")
        .find_map(|p| p.strip_suffix(" packets received"))
        .and_then(|n| n.split_whitespace().last()?.parse().ok())
        .unwrap_or(0);
    let avg = l
        .split("min/avg/max = ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok());
    (received, avg)
}

/// The milliseconds of a guest's `WINDSOR-NET echo <peer>:7: <n> bytes ok
/// in <ms> ms` line (asserting it is there and says ok).
fn echo(r: &xen_boot::BootReport, guest: &str, peer: &str, bytes: u64) -> f64 {
    let head = format!("WINDSOR-NET echo {peer}:7: {bytes} bytes");
    let lines = console(r, guest, &[&head]);
    assert_eq!(lines.len(), 1, "{guest} -> {peer}: {lines:?}");
    assert!(lines[0].contains("bytes ok in"), "{}", lines[0]);
    number_before(lines[0], "ms").expect("echo time")
}

/// `(tx packets, tx bytes, rx packets, rx bytes)` of the counters dom0
/// printed for the VIF of domain `d<dom>`.
fn counters(r: &xen_boot::BootReport, dom: &str) -> (u64, u64, u64, u64) {
    let head = format!("windsor dom0: vif {dom}/0 counters from netback");
    let l = r
        .lines
        .iter()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no counters for {dom}"));
    let (tx, rx) = l.split_once(", rx ").expect("tx and rx");
    let n = |s: &str, w: &str| number_before(s, w).unwrap_or(-1.0) as u64;
    (
        n(tx, "packets"),
        n(tx, "bytes"),
        n(rx, "packets"),
        n(rx, "bytes"),
    )
}

/// The domain id dom0 gave guest `name` (`d<N>`).
fn domid(r: &xen_boot::BootReport, name: &str) -> String {
    let head = format!("guest \"{name}\" as d");
    let l = r
        .lines
        .iter()
        .find(|l| l.starts_with("windsor dom0: built ") && l.contains(&head))
        .unwrap_or_else(|| panic!("{name} not built"));
    let rest = &l[l.find(&head).unwrap() + head.len() - 1..];
    rest.split([':', ' ']).next().unwrap().to_string()
}

#[test]
fn linux_and_windsor_guests_exchange_ping_and_tcp_streams_through_netback() {
    let config = xen_boot::workspace_root().join("boot-config/examples/linux-net.toml");
    let r = boot(&XenBootArgs {
        config: Some(config),
        quiet: true,
        ..XenBootArgs::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let has = |parts: &[&str]| r.lines.iter().any(|l| parts.iter().all(|p| l.contains(p)));

    // The netback domain came up and answered on its control channel.
    assert!(has(&[
        "windsor dom0: netback domain \"netback\" d",
        "control channel to service \"netback\", serving vifs"
    ]));
    let (fuzz0, linux0, linux1) = (domid(&r, "fuzz0"), domid(&r, "linux0"), domid(&r, "linux1"));
    for d in [&fuzz0, &linux0, &linux1] {
        // Plugged by dom0 over the control channel, connected by netback
        // after the frontend's handshake.
        assert!(has(&[
            &format!("windsor dom0: vif {d}/0 (mac 00:16:3e:"),
            "plugged into netback d"
        ]));
        let fe = format!("vif connected fe={}", &d[1..]);
        assert!(has(&["netback: INFO", &fe]), "netback did not connect {d}");
    }
    // Debian's xen-netfront brought eth0 up with the toolstack's MAC.
    for (g, ip) in [("linux0", "10.0.0.2/24"), ("linux1", "10.0.0.3/24")] {
        let up = console(&r, g, &["WINDSOR-NET up: eth0", ip, "mac 00:16:3e:"]);
        assert_eq!(up.len(), 1, "{g}: {up:?}");
    }

    // Linux <-> Windsor guest: ping answered by smoltcp, TCP echo through
    // Windsor's netfront (Linux's GSO packets segmented by netback, its
    // partial checksums completed).
    let (got, rtt_w) = ping(&r, "linux0", "10.0.0.1");
    assert!(got > 0, "no ping answer from the Windsor guest");
    let ms_w = echo(&r, "linux0", "10.0.0.1", 65536);
    // Linux <-> Linux: pings both ways, a TCP stream through linux1's echo.
    let (got01, rtt_l) = ping(&r, "linux0", "10.0.0.3");
    let (got10, _) = ping(&r, "linux1", "10.0.0.2");
    assert!(
        got01 > 0 && got10 > 0,
        "no ping answers between the Linux guests"
    );
    let ms_l = echo(&r, "linux0", "10.0.0.3", 262144);

    // netback's own counters (over the control channel) saw the traffic:
    // the streams went both ways through each VIF.
    let (w_txp, w_txb, w_rxp, w_rxb) = counters(&r, &fuzz0);
    assert!(w_txp > 0 && w_rxp > 0, "fuzz0 vif idle");
    assert!(
        w_txb >= 65536 && w_rxb >= 65536,
        "fuzz0 echo bytes: tx {w_txb} rx {w_rxb}"
    );
    for d in [&linux0, &linux1] {
        let (_, txb, _, rxb) = counters(&r, d);
        assert!(txb >= 262144 && rxb >= 262144, "{d}: tx {txb} rx {rxb}");
    }

    // Everything went down cleanly, netback last, on request.
    assert!(has(&[
        "windsor dom0: netback domain \"netback\" d",
        "stopped on request (Poweroff) and destroyed"
    ]));
    assert!(!has(&["crashed"]) && !has(&["STILL PRESENT"]));
    assert_eq!(r.failed_steps, Some(0), "every planned step succeeded");

    let mbps = |bytes: f64, ms: f64| 2.0 * bytes / 1e6 / (ms / 1000.0);
    eprintln!(
        "xen-mode net (TCG): ping rtt avg linux0->fuzz0 {rtt_w:?} ms, linux0->linux1 {rtt_l:?} ms; \
         TCP echo linux0<->fuzz0 64 KiB in {ms_w} ms ({:.3} MB/s both ways), \
         linux0<->linux1 256 KiB in {ms_l} ms ({:.3} MB/s); ready after {:.1} s, \
         whole run {:.1} s of QEMU wall time",
        mbps(65536.0, ms_w),
        mbps(262144.0, ms_l),
        r.wall_to_ready.as_secs_f64(),
        r.wall_total.as_secs_f64()
    );
}
