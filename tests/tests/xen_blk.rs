//! Xen mode, block devices: Debian's Linux guest with its own
//! `xen-blkfront` gets a disk from Windsor's blkback domain
//! (`unikernel/images/blkback`, a RAM disk), makes a file system on it,
//! writes and syncs files, reboots (a new domain plugged to the same disk)
//! and reads them back verified; blkback saw the guest's flushes.
//!
//! One QEMU boot of `boot-config/examples/linux-disk.toml` (two Linux
//! boots inside it), bounded by its `timeout_secs`; like `xen_mode.rs` it
//! runs the code of `cargo xtask xen-boot`, which fetches Debian's kernel
//! and busybox-static once (cached under `target/`).

#[allow(dead_code)]
#[path = "../../xtask/src/xen_boot.rs"]
mod xen_boot;

use xen_boot::{boot, XenBootArgs};

/// The text after `key` up to the next `,` or end of line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    Some(line[at..].split(',').next()?.trim())
}

#[test]
fn debian_linux_makes_a_file_system_on_a_blkback_disk_and_reads_it_back_after_a_reboot() {
    let config = xen_boot::workspace_root().join("boot-config/examples/linux-disk.toml");
    let r = boot(&XenBootArgs {
        config: Some(config),
        cmdline: "reboot=linux0".into(),
        quiet: true,
        ..XenBootArgs::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let console = |text: &str| -> Vec<&String> {
        r.lines
            .iter()
            .filter(|l| l.starts_with("[linux0] ") && l.contains(text))
            .collect()
    };
    let fails = console("WINDSOR-BLK-FAIL");
    assert!(fails.is_empty(), "{fails:?}");
    // First boot: a file system made and written; second: verified.
    let written = console("WINDSOR-BLK-WRITTEN");
    let verified = console("WINDSOR-BLK-VERIFIED");
    assert_eq!(
        (written.len(), verified.len()),
        (1, 1),
        "{written:?} {verified:?}"
    );
    let (w, v) = (written[0], verified[0]);
    assert!(w.contains("WINDSOR-BLK-WRITTEN 9 files"), "{w}");
    assert!(v.contains("WINDSOR-BLK-VERIFIED 9 files"), "{v}");
    let sums = field(w, "sums ").expect("sums on the written line");
    assert_eq!(sums.len(), 16, "{w}");
    assert_eq!(
        field(v, "sums "),
        Some(sums),
        "the same SHA256SUMS file read back"
    );
    assert!(w.contains(&format!("{} sectors", 64 * 2048)), "{w}");
    // The order: written, reboot, verified.
    let at = |l: &String| r.lines.iter().position(|x| x == l).unwrap();
    let reboot = r
        .lines
        .iter()
        .position(|l| {
            l.contains("guest \"linux0\" d") && l.contains("rebooting on control/shutdown")
        })
        .expect("dom0 rebooted the guest");
    assert!(at(w) < reboot && reboot < at(v));
    assert_eq!(console("WINDSOR-LINUX-INIT up").len(), 2, "two boots");
    // blkback (its lines are `(dN) [time] blkback: ...` in Xen's log): up
    // with its RAM disk; served the first boot's device, flushes included,
    // and let it go when the guest rebooted.
    let blkback = |text: &str| -> Vec<&String> {
        r.lines
            .iter()
            .filter(|l| l.starts_with("(d") && l.contains("] blkback: ") && l.contains(text))
            .collect()
    };
    assert_eq!(blkback("RAM disks [linux0-xvda (64 MiB)]").len(), 1);
    assert_eq!(
        blkback("connected to d").len(),
        2,
        "one connection per boot"
    );
    let removed = blkback("/51712: removed:");
    assert!(!removed.is_empty(), "the first boot's device removed");
    let flushes: u64 = field(removed[0], "flushes=")
        .and_then(|f| f.split_whitespace().next()?.parse().ok())
        .expect("flush count");
    let writes: u64 = field(removed[0], "writes=")
        .and_then(|f| f.split_whitespace().next()?.parse().ok())
        .expect("write count");
    assert!(
        flushes >= 1,
        "Linux flushed (feature-flush-cache): {}",
        removed[0]
    );
    assert!(writes >= 1, "{}", removed[0]);
    assert!(!r.lines.iter().any(|l| l.contains("crashed")));
    assert_eq!(r.failed_steps, Some(0), "every planned step succeeded");
    eprintln!(
        "xen-mode blk: {} | {} | first device: {} | QEMU wall {:.1} s",
        w.split_once("write+fsync: ").map_or("?", |x| x.1),
        v.split_once("read: ").map_or("?", |x| x.1),
        removed[0].split("removed: ").nth(1).unwrap_or("?"),
        r.wall_total.as_secs_f64()
    );
}
