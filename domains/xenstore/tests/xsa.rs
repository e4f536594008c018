//! One regression test per class of xenstored security advisory (XSA),
//! run against the store core through its wire entry point. Each test
//! names the advisory and the property it pins down.

use windsor_xenstore::wire::{error_from_name, Decoder, Header, Packet, WireError, XsOp};
use windsor_xenstore::{Config, ConnId, Effect, HandleError, Quotas, Store};
use xen::{DomId, Errno};

struct H {
    s: Store,
    req: u32,
    ev: Vec<Packet>,
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn args(a: &[&str]) -> Vec<u8> {
    a.iter().flat_map(|s| cstr(s)).collect()
}

impl H {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(cfg: Config) -> Self {
        H {
            s: Store::new(cfg),
            req: 0,
            ev: Vec::new(),
        }
    }

    fn dom0(&mut self) -> ConnId {
        self.s.connect(DomId(0))
    }

    /// Sends a request and returns its reply; events stay queued in `ev`.
    fn req(&mut self, c: ConnId, op: XsOp, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        self.req += 1;
        let h = Header::new(op, self.req, tx, payload.len() as u32);
        self.s.handle(c, &h, payload).expect("accepted");
        let mut reply = None;
        let mut events = Vec::new();
        while let Some(p) = self.s.pop(c) {
            if p.op() == Some(XsOp::WatchEvent) {
                events.push(p);
            } else if p.header.req_id == self.req {
                reply = Some(p);
            }
        }
        self.ev.extend(events);
        let p = reply.expect("reply");
        assert_eq!(p.header.tx_id, tx, "tx_id echoed");
        match p.op() {
            Some(XsOp::Error) => Err(error_from_name(&p.payload).expect("error name")),
            _ => Ok(p.payload),
        }
    }

    fn write(&mut self, c: ConnId, tx: u32, p: &str, v: &[u8]) -> Result<(), Errno> {
        let mut b = cstr(p);
        b.extend_from_slice(v);
        self.req(c, XsOp::Write, tx, &b).map(drop)
    }

    fn read(&mut self, c: ConnId, tx: u32, p: &str) -> Result<Vec<u8>, Errno> {
        self.req(c, XsOp::Read, tx, &cstr(p))
    }

    fn op(&mut self, c: ConnId, op: XsOp, tx: u32, a: &[&str]) -> Result<Vec<u8>, Errno> {
        self.req(c, op, tx, &args(a))
    }

    fn start(&mut self, c: ConnId) -> u32 {
        let r = self.op(c, XsOp::TransactionStart, 0, &[""]).unwrap();
        std::str::from_utf8(&r[..r.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    }

    fn end(&mut self, c: ConnId, tx: u32, commit: bool) -> Result<(), Errno> {
        self.op(
            c,
            XsOp::TransactionEnd,
            tx,
            &[if commit { "T" } else { "F" }],
        )
        .map(drop)
    }

    /// What the toolstack does for a new guest: home dir owned by it, introduce.
    fn guest(&mut self, d: u16) -> ConnId {
        let c0 = self.dom0();
        let home = format!("/local/domain/{d}");
        self.write(c0, 0, &home, b"").unwrap();
        self.op(c0, XsOp::SetPerms, 0, &[&home, &format!("n{d}")])
            .unwrap();
        self.op(c0, XsOp::Introduce, 0, &[&d.to_string(), "1234", "7"])
            .unwrap();
        self.s.disconnect(c0);
        self.s.connect(DomId(d))
    }
}

impl H {
    /// Watch events seen by `req` so far, as (path, token).
    fn ev_take(&mut self) -> Vec<(String, String)> {
        self.ev
            .drain(..)
            .map(|p| {
                let mut it = p.payload.split(|&b| b == 0);
                let mut next =
                    || String::from_utf8_lossy(it.next().unwrap_or_default()).into_owned();
                (next(), next())
            })
            .collect()
    }
}

#[test]
fn xsa_72_oversized_length_is_fatal_before_allocation() {
    let h = Header {
        ty: XsOp::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    let mut d = Decoder::new();
    assert_eq!(d.feed(&h.to_bytes()), Err(WireError::PayloadTooLong(4097)));
    let h = Header { len: 4096, ..h };
    let mut d = Decoder::new();
    assert_eq!(d.feed(&h.to_bytes()).unwrap().0, 16);
    assert_eq!(d.need(), 4096);
}

#[test]
fn xsa_115_watch_events_need_read_permission() {
    let mut t = H::new();
    let c0 = t.dom0();
    let g = t.guest(5);
    t.write(c0, 0, "/secret/key", b"x").unwrap();
    t.op(g, XsOp::Watch, 0, &["/secret", "snoop"]).unwrap();
    t.op(g, XsOp::Watch, 0, &["/", "root"]).unwrap();
    t.ev_take();
    t.write(c0, 0, "/secret/key", b"y").unwrap();
    t.write(c0, 0, "/secret/new", b"y").unwrap();
    t.op(c0, XsOp::Rm, 0, &["/secret"]).unwrap();
    // Events for g would have been queued on g; none are there.
    assert!(
        t.s.pop(g).is_none(),
        "a guest saw events for nodes it cannot read"
    );
    // Once readable, events flow.
    t.write(c0, 0, "/pub", b"").unwrap();
    t.op(c0, XsOp::SetPerms, 0, &["/pub", "n0", "r5"]).unwrap();
    let _ = t.s.pop(g); // the set_perms event itself
    t.write(c0, 0, "/pub/x", b"1").unwrap();
    assert!(t.s.pop(g).is_some());
}

#[test]
fn xsa_206_write_floods_do_not_starve_transactions() {
    let mut t = H::new();
    let c0 = t.dom0();
    let g = t.guest(6);
    t.write(c0, 0, "/tool/state", b"0").unwrap();
    for round in 0..20 {
        let tx = t.start(c0);
        t.read(c0, tx, "/tool/state").unwrap();
        // The guest hammers its own subtree meanwhile.
        for i in 0..50 {
            t.write(
                g,
                0,
                &format!("flood/{}", i % 5),
                format!("{round}").as_bytes(),
            )
            .unwrap();
        }
        t.write(c0, tx, "/tool/state", round.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            t.end(c0, tx, true),
            Ok(()),
            "unrelated writes made a commit fail"
        );
    }
}

#[test]
fn xsa_272_419_node_quota_cannot_be_bypassed() {
    let mut t = H::with(Config {
        quotas: Quotas {
            nodes_per_domain: 20,
            ..Quotas::default()
        },
        ..Config::default()
    });
    let g = t.guest(7);
    // The home dir is guest-owned: 1 node.
    for i in 0..19 {
        t.write(g, 0, &format!("n{i}"), b"").unwrap();
    }
    assert_eq!(t.write(g, 0, "one-more", b""), Err(Errno::ENOSPC));
    // Implicit parents count too.
    t.op(g, XsOp::Rm, 0, &["n0"]).unwrap();
    t.op(g, XsOp::Rm, 0, &["n1"]).unwrap();
    assert_eq!(t.write(g, 0, "a/b/c", b""), Err(Errno::ENOSPC));
    // Transactions cannot hide creations (XSA-419).
    let tx = t.start(g);
    t.write(g, tx, "t1", b"").unwrap();
    t.write(g, tx, "t2", b"").unwrap();
    assert_eq!(t.write(g, tx, "t3", b""), Err(Errno::ENOSPC));
    t.end(g, tx, true).unwrap();
    // Two transactions each within quota cannot together exceed it.
    t.op(g, XsOp::Rm, 0, &["t1"]).unwrap();
    t.op(g, XsOp::Rm, 0, &["t2"]).unwrap();
    let a = t.start(g);
    let b = t.start(g);
    t.write(g, a, "x1", b"").unwrap();
    t.write(g, a, "x2", b"").unwrap();
    t.write(g, b, "y1", b"").unwrap();
    t.write(g, b, "y2", b"").unwrap();
    t.end(g, a, true).unwrap();
    assert!(t.end(g, b, true).is_err());
    assert!(t.s.tree().count(DomId(7)) <= 20);
    assert!(t.s.check_consistency());
    // dom0 is exempt.
    let c0 = t.dom0();
    for i in 0..50 {
        t.write(c0, 0, &format!("/local/domain/7/d0-{i}"), b"")
            .unwrap();
    }
}

#[test]
fn xsa_322_recreated_domid_inherits_nothing() {
    let mut t = H::new();
    let c0 = t.dom0();
    let g = t.guest(8);
    t.write(g, 0, "mine", b"old").unwrap();
    t.write(c0, 0, "/shared", b"s").unwrap();
    t.op(c0, XsOp::SetPerms, 0, &["/shared", "n0", "b8"])
        .unwrap();
    t.op(c0, XsOp::Release, 0, &["8"]).unwrap();
    assert_eq!(t.read(c0, 0, "/local/domain/8/mine"), Err(Errno::ENOENT));
    // A new domain 8.
    let g2 = t.guest(8);
    assert_eq!(t.read(g2, 0, "/shared"), Err(Errno::EACCES));
    assert_eq!(t.op(c0, XsOp::GetPerms, 0, &["/shared"]).unwrap(), b"n0\0");
    let _ = g;
}

#[test]
fn xsa_323_path_length_is_bounded() {
    let mut t = H::new();
    let g = t.guest(9);
    // 2048 bytes past the home directory, in components a node can hold.
    let mut ok: String = (0..21).map(|_| format!("{}/", "a".repeat(99))).collect();
    ok.truncate(2048);
    assert!(!ok.ends_with('/'));
    t.write(g, 0, &ok, b"").unwrap();
    let long = format!("{ok}b");
    assert_eq!(t.write(g, 0, &long, b""), Err(Errno::EINVAL));
    let abs = format!("/{}", "b".repeat(2048));
    let c0 = t.dom0();
    assert_eq!(t.write(c0, 0, &abs, b""), Err(Errno::EINVAL));
    assert_eq!(
        t.op(g, XsOp::Watch, 0, &[&format!("@{}", "x".repeat(2048)), "t"]),
        Err(Errno::EINVAL)
    );
}

#[test]
fn xsa_324_oversized_watch_events_are_not_sent() {
    let mut t = H::new();
    let c0 = t.dom0();
    let base = format!("/{}", "p".repeat(1500));
    let token = "t".repeat(2500);
    t.op(c0, XsOp::Watch, 0, &[&base, &token]).unwrap();
    t.ev_take();
    let child = format!("{base}/{}", "c".repeat(100));
    t.write(c0, 0, &child, b"").unwrap();
    assert!(
        t.ev_take().is_empty(),
        "an event over XENSTORE_PAYLOAD_MAX was queued"
    );
}

#[test]
fn xsa_326_unread_output_is_bounded() {
    let mut t = H::with(Config {
        max_queued_bytes: 64 * 1024,
        ..Config::default()
    });
    let c0 = t.dom0();
    let g = t.guest(10);
    t.write(c0, 0, "/storm", b"").unwrap();
    t.op(c0, XsOp::SetPerms, 0, &["/storm", "n0", "r10"])
        .unwrap();
    // The guest watches and never reads.
    let h = Header::new(XsOp::Watch, 1, 0, 0);
    let p = args(&["/storm", "tok"]);
    t.s.handle(
        g,
        &Header {
            len: p.len() as u32,
            ..h
        },
        &p,
    )
    .unwrap();
    // Distinct paths: identical pending events are merged anyway.
    for i in 0..5_000 {
        t.write(c0, 0, &format!("/storm/n{i}"), &[b'x'; 64])
            .unwrap();
    }
    assert!(t.s.stats().queued_bytes <= 64 * 1024 + 4096);
    assert!(t.s.stats().dropped_events > 0);
    // Large transactions are bounded too.
    let tx = t.start(g);
    let mut hit = false;
    for i in 0..2000 {
        if t.read(g, tx, &format!("/storm/n{i}")) == Err(Errno::ENOSPC) {
            hit = true;
            break;
        }
    }
    assert!(hit, "a guest transaction touched unbounded nodes");
    assert!(t.end(g, tx, true).is_err());
    // ... in bytes as well as in nodes.
    let tx = t.start(g);
    let mut hit = false;
    for i in 0..1000 {
        if t.write(g, tx, &format!("big{}", i % 10), &[b'v'; 2000]) == Err(Errno::ENOSPC) {
            hit = true;
            break;
        }
    }
    assert!(hit, "a guest transaction held unbounded bytes");
    assert_eq!(t.end(g, tx, true), Err(Errno::ENOMEM));
    // ... and in number (10, plus the one C xenstored lets through).
    for _ in 0..11 {
        t.start(g);
    }
    assert_eq!(
        t.op(g, XsOp::TransactionStart, 0, &[""]),
        Err(Errno::ENOSPC)
    );
}

#[test]
fn xsa_330_484_reset_watches_drops_watches_and_transactions() {
    let mut t = H::new();
    let c0 = t.dom0();
    let g = t.guest(11);
    for i in 0..129 {
        t.op(g, XsOp::Watch, 0, &[&format!("w{i}"), "t"]).unwrap();
    }
    assert_eq!(
        t.op(g, XsOp::Watch, 0, &["w-extra", "t"]),
        Err(Errno::E2BIG)
    );
    let tx = t.start(g);
    t.write(g, tx, "x", b"1").unwrap();
    t.write(c0, 0, "/local/domain/11/w1", b"queued event")
        .unwrap();
    t.op(g, XsOp::ResetWatches, 0, &[""]).unwrap();
    assert_eq!(t.end(g, tx, true), Err(Errno::ENOENT));
    assert_eq!(t.read(g, 0, "x"), Err(Errno::ENOENT));
    t.write(c0, 0, "/local/domain/11/w2", b"").unwrap();
    // Queued output is still deliverable; new watches fit the quota again.
    t.op(g, XsOp::Watch, 0, &["again", "t"]).unwrap();
    t.op(g, XsOp::ResetWatches, 0, &[""]).unwrap();
    t.op(g, XsOp::ResetWatches, 0, &[""]).unwrap();
    assert_eq!(t.s.stats().watches, 0);
}

#[test]
fn xsa_352_guest_cannot_change_owner() {
    let mut t = H::new();
    let g = t.guest(12);
    t.write(g, 0, "n", b"").unwrap();
    assert_eq!(t.op(g, XsOp::SetPerms, 0, &["n", "b0"]), Err(Errno::EPERM));
    assert_eq!(t.op(g, XsOp::SetPerms, 0, &["n", "n13"]), Err(Errno::EPERM));
    t.op(g, XsOp::SetPerms, 0, &["n", "n12", "r13"]).unwrap();
}

#[test]
fn xsa_353_root_is_protected() {
    let mut t = H::new();
    let g = t.guest(14);
    assert_eq!(t.write(g, 0, "/", b"x"), Err(Errno::EACCES));
    assert_eq!(
        t.op(g, XsOp::SetPerms, 0, &["/", "b14"]),
        Err(Errno::EACCES)
    );
    assert_eq!(t.op(g, XsOp::Rm, 0, &["/"]), Err(Errno::EACCES));
    assert_eq!(t.op(g, XsOp::Rm, 0, &["/tool"]), Err(Errno::EACCES));
    assert_eq!(t.write(g, 0, "/newtop", b""), Err(Errno::EACCES));
    let c0 = t.dom0();
    assert_eq!(t.op(c0, XsOp::Rm, 0, &["/"]), Err(Errno::EINVAL));
    assert_eq!(t.op(c0, XsOp::GetPerms, 0, &["/"]).unwrap(), b"n0\0");
}

#[test]
fn xsa_414_415_failed_creation_in_transaction_leaves_nothing() {
    let mut t = H::with(Config {
        quotas: Quotas {
            nodes_per_domain: 5,
            ..Quotas::default()
        },
        ..Config::default()
    });
    let g = t.guest(15);
    let tx = t.start(g);
    assert_eq!(t.write(g, tx, "a/b/c/d/e/f", b""), Err(Errno::ENOSPC));
    t.write(g, tx, "ok", b"").unwrap();
    t.end(g, tx, true).unwrap();
    assert_eq!(t.read(g, 0, "a"), Err(Errno::ENOENT));
    // Touch-quota failure in the middle of a creation fails the commit.
    let mut t = H::with(Config {
        quotas: Quotas {
            txn_nodes: 3,
            ..Quotas::default()
        },
        ..Config::default()
    });
    let g = t.guest(15);
    let tx = t.start(g);
    let r = t.write(g, tx, "p/q/r", b"");
    assert!(r.is_err());
    assert!(t.end(g, tx, true).is_err());
    assert_eq!(t.read(g, 0, "p"), Err(Errno::ENOENT));
    assert!(t.s.check_consistency());
}

#[test]
fn xsa_416_unread_replies_stop_the_connection() {
    let mut t = H::new();
    let g = t.guest(16);
    let p = cstr("x");
    let h = Header::new(XsOp::Read, 1, 0, p.len() as u32);
    let mut n = 0;
    while t.s.can_accept(g) {
        t.s.handle(g, &h, &p).unwrap();
        n += 1;
        assert!(n <= 20);
    }
    assert_eq!(n, 20);
    assert_eq!(t.s.handle(g, &h, &p), Err(HandleError::Busy));
    t.s.pop(g).unwrap();
    assert!(t.s.can_accept(g));
}

#[test]
fn xsa_418_deep_trees_do_not_recurse() {
    let mut t = H::new();
    let c0 = t.dom0();
    // 1024 levels: as deep as the path limit allows.
    let deep: String = "/local/domain/0".to_string() + &"/a".repeat(1024);
    t.write(c0, 0, &deep, b"bottom").unwrap();
    t.op(c0, XsOp::Watch, 0, &["/local/domain/0/a", "t"])
        .unwrap();
    let tx = t.start(c0);
    t.op(c0, XsOp::Rm, tx, &["/local/domain/0/a"]).unwrap();
    t.end(c0, tx, true).unwrap();
    t.write(c0, 0, &deep, b"bottom").unwrap();
    t.op(c0, XsOp::Rm, 0, &["/local/domain/0/a"]).unwrap();
    assert!(t.s.check_consistency());
    assert_eq!(t.s.tree().len(), 6);
}

#[test]
fn xsa_420_negative_and_huge_numbers_are_harmless() {
    let mut t = H::new();
    let c0 = t.dom0();
    t.write(c0, 0, "/d/x", b"").unwrap();
    for off in ["-1", "4294967295", "99999999999999999999999", "abc", ""] {
        let r = t.op(c0, XsOp::DirectoryPart, 0, &["/d", off]).unwrap();
        assert!(r.len() <= 4096);
    }
    for d in ["-1", "65536", "99999999999999999999", "32752"] {
        assert!(t.op(c0, XsOp::Introduce, 0, &[d, "1", "1"]).is_err(), "{d}");
        assert!(t.op(c0, XsOp::Release, 0, &[d]).is_err());
    }
    let h = Header {
        ty: XsOp::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: 0x8000_0000,
    };
    assert!(Decoder::new().feed(&h.to_bytes()).is_err());
    assert_eq!(
        t.op(c0, XsOp::TransactionEnd, u32::MAX, &["T"]),
        Err(Errno::ENOENT)
    );
}

#[test]
fn xsa_421_delete_inside_transaction() {
    let mut t = H::new();
    let c0 = t.dom0();
    t.write(c0, 0, "/t/a/b", b"1").unwrap();
    let tx = t.start(c0);
    t.op(c0, XsOp::Rm, tx, &["/t/a"]).unwrap();
    assert_eq!(t.read(c0, tx, "/t/a/b"), Err(Errno::ENOENT));
    assert_eq!(t.read(c0, 0, "/t/a/b").unwrap(), b"1");
    t.write(c0, tx, "/t/a/c", b"2").unwrap();
    t.end(c0, tx, true).unwrap();
    assert_eq!(t.read(c0, 0, "/t/a/b"), Err(Errno::ENOENT));
    assert_eq!(t.read(c0, 0, "/t/a/c").unwrap(), b"2");
    assert!(t.s.check_consistency());
}

#[test]
fn xsa_425_release_is_safe_in_every_state() {
    let mut t = H::new();
    let c0 = t.dom0();
    let g = t.guest(17);
    let tx = t.start(g);
    t.write(g, tx, "pending", b"").unwrap();
    t.op(g, XsOp::Watch, 0, &["/local/domain/17", "w"]).unwrap();
    assert_eq!(t.op(g, XsOp::Release, 0, &["17"]), Err(Errno::EACCES));
    t.op(c0, XsOp::Release, 0, &["17"]).unwrap();
    let effects = t.s.take_effects();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Release { domid: DomId(17), conns } if conns == &[g])));
    assert_eq!(t.op(c0, XsOp::Release, 0, &["17"]), Err(Errno::ENOENT));
    assert_eq!(t.op(c0, XsOp::Release, 0, &["0"]), Err(Errno::EINVAL));
    assert_eq!(t.op(c0, XsOp::Release, 0, &["999"]), Err(Errno::ENOENT));
    assert_eq!(
        t.s.handle(g, &Header::new(XsOp::Read, 1, 0, 0), b""),
        Err(HandleError::UnknownConn)
    );
    assert_eq!(t.s.stats().txns, 0);
    assert!(t.s.check_consistency());
}

#[test]
fn xsa_440_conflicting_transactions_do_not_corrupt() {
    let mut t = H::new();
    let a = t.dom0();
    let b = t.dom0();
    t.write(a, 0, "/c/x/y", b"").unwrap();
    let ta = t.start(a);
    let tb = t.start(b);
    t.op(a, XsOp::Rm, ta, &["/c/x"]).unwrap();
    t.write(b, tb, "/c/other", b"").unwrap();
    t.write(b, 0, "/c/x/y", b"changed").unwrap();
    assert_eq!(t.end(a, ta, true), Err(Errno::EAGAIN));
    t.end(b, tb, true).unwrap();
    assert!(t.s.check_consistency());
    let ta = t.start(a);
    t.op(a, XsOp::Rm, ta, &["/c"]).unwrap();
    t.end(a, ta, true).unwrap();
    assert!(t.s.check_consistency());
}

#[test]
fn xsa_481_paths_are_canonical() {
    let mut t = H::new();
    let g = t.guest(18);
    for bad in [
        "",
        "../0/x",
        "a//b",
        "a/",
        "/local/domain/18/../0",
        "a b",
        "x\u{e9}",
        "@x",
    ] {
        let r = t.write(g, 0, bad, b"");
        // `..` and `.` are plain names in xenstore, but '.' is not allowed.
        assert_eq!(r, Err(Errno::EINVAL), "{bad:?}");
    }
    t.write(g, 0, "ok-_@", b"").unwrap();
    // Unwatch of a non-canonical spelling does not match the canonical watch.
    t.op(g, XsOp::Watch, 0, &["w", "t"]).unwrap();
    assert_eq!(t.op(g, XsOp::Unwatch, 0, &["w/", "t"]), Err(Errno::ENOENT));
    t.op(g, XsOp::Unwatch, 0, &["/local/domain/18/w", "t"])
        .unwrap();
}

#[test]
fn xsa_483_set_perms_is_quota_checked() {
    let mut t = H::new();
    let g = t.guest(19);
    t.write(g, 0, "n", b"").unwrap();
    let many: Vec<String> = std::iter::once("n19".to_string())
        .chain((1..=5).map(|i| format!("r{i}")))
        .collect();
    let mut a: Vec<&str> = vec!["n"];
    a.extend(many.iter().map(String::as_str));
    assert_eq!(t.op(g, XsOp::SetPerms, 0, &a), Err(Errno::ENOSPC));
    a.pop();
    t.op(g, XsOp::SetPerms, 0, &a).unwrap();
    // dom0 is exempt.
    let c0 = t.dom0();
    let mut b: Vec<&str> = vec!["/local/domain/19/n"];
    b.extend(many.iter().map(String::as_str));
    t.op(c0, XsOp::SetPerms, 0, &b).unwrap();
    // Oversized values are refused for guests only.
    assert_eq!(t.write(g, 0, "big", &[0u8; 2049]), Err(Errno::ENOSPC));
    t.write(c0, 0, "/big", &[0u8; 4000]).unwrap();
}
