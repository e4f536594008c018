//! Unit tests of the store through its wire-level entry point.

use super::*;
use alloc::string::ToString;

pub(crate) struct T {
    pub s: Store,
    req: u32,
}

impl T {
    pub fn new() -> Self {
        T {
            s: Store::new(Config {
                record_mutations: true,
                ..Config::default()
            }),
            req: 0,
        }
    }

    pub fn req(&mut self, c: ConnId, op: XsOp, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        self.req += 1;
        let h = Header::new(op, self.req, tx, payload.len() as u32);
        self.s.handle(c, &h, payload).expect("handled");
        // Replies come first among what this request queued for c; events
        // queued before are skipped.
        let mut reply = None;
        let mut rest = VecDeque::new();
        while let Some(p) = self.s.pop(c) {
            if reply.is_none() && p.header.req_id == self.req && p.op() != Some(XsOp::WatchEvent) {
                assert_eq!(p.header.tx_id, tx);
                reply = Some(p);
            } else {
                rest.push_back(p);
            }
        }
        // Put events back.
        for p in rest {
            let reply = p.op() != Some(XsOp::WatchEvent);
            self.s.push(c, p, reply);
        }
        let p = reply.expect("a reply");
        if p.op() == Some(XsOp::Error) {
            Err(crate::wire::error_from_name(&p.payload).expect("known error"))
        } else {
            assert_eq!(p.op(), Some(op));
            Ok(p.payload)
        }
    }

    pub fn write(&mut self, c: ConnId, tx: u32, p: &str, v: &[u8]) -> Result<(), Errno> {
        let mut b = cstr(p);
        b.extend_from_slice(v);
        self.req(c, XsOp::Write, tx, &b).map(|_| ())
    }

    pub fn read(&mut self, c: ConnId, tx: u32, p: &str) -> Result<Vec<u8>, Errno> {
        self.req(c, XsOp::Read, tx, &cstr(p))
    }

    pub fn one(&mut self, c: ConnId, op: XsOp, tx: u32, p: &str) -> Result<Vec<u8>, Errno> {
        self.req(c, op, tx, &cstr(p))
    }

    pub fn two(&mut self, c: ConnId, op: XsOp, a: &str, b: &str) -> Result<Vec<u8>, Errno> {
        let mut v = cstr(a);
        v.extend_from_slice(&cstr(b));
        self.req(c, op, 0, &v)
    }

    pub fn set_perms(&mut self, c: ConnId, p: &str, perms: &[&str]) -> Result<(), Errno> {
        let mut v = cstr(p);
        for x in perms {
            v.extend_from_slice(&cstr(x));
        }
        self.req(c, XsOp::SetPerms, 0, &v).map(|_| ())
    }

    pub fn start(&mut self, c: ConnId) -> u32 {
        let r = self.req(c, XsOp::TransactionStart, 0, b"\0").unwrap();
        core::str::from_utf8(&r[..r.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn end(&mut self, c: ConnId, tx: u32, commit: bool) -> Result<(), Errno> {
        self.req(
            c,
            XsOp::TransactionEnd,
            tx,
            if commit { b"T\0" } else { b"F\0" },
        )
        .map(|_| ())
    }

    /// Watch events queued for c, as (path, token).
    pub fn events(&mut self, c: ConnId) -> Vec<(String, String)> {
        let mut v = Vec::new();
        while let Some(p) = self.s.pop(c) {
            assert_eq!(p.op(), Some(XsOp::WatchEvent));
            let parts: Vec<&[u8]> = p.payload.split(|&b| b == 0).collect();
            v.push((
                String::from_utf8_lossy(parts[0]).to_string(),
                String::from_utf8_lossy(parts[1]).to_string(),
            ));
        }
        v
    }

    /// A guest domain with its home directory, introduced, as the toolstack does.
    pub fn guest(&mut self, d: u16) -> ConnId {
        let c0 = self.dom0();
        let home = format!("/local/domain/{d}");
        self.write(c0, 0, &home, b"").unwrap();
        self.set_perms(c0, &home, &[&format!("n{d}")]).unwrap();
        self.req(
            c0,
            XsOp::Introduce,
            0,
            format!("{d}\0{}\0{}\0", 100 + d, 5).as_bytes(),
        )
        .unwrap();
        self.s.connect(DomId(d))
    }

    pub fn dom0(&mut self) -> ConnId {
        match self.s.conns.iter().find(|(_, c)| c.domid == DomId::DOM0) {
            Some((id, _)) => *id,
            None => self.s.connect(DomId::DOM0),
        }
    }
}

#[test]
fn write_read_directory() {
    let mut t = T::new();
    let c = t.dom0();
    t.write(c, 0, "/a/b/c", b"hello").unwrap();
    assert_eq!(t.read(c, 0, "/a/b/c").unwrap(), b"hello");
    assert_eq!(t.read(c, 0, "/a/b").unwrap(), b"");
    assert_eq!(t.one(c, XsOp::Directory, 0, "/a").unwrap(), b"b\0");
    assert_eq!(t.read(c, 0, "/nope"), Err(Errno::ENOENT));
    assert_eq!(t.read(c, 0, "/a/"), Err(Errno::EINVAL));
    t.one(c, XsOp::Mkdir, 0, "/a/d").unwrap();
    assert_eq!(t.one(c, XsOp::Directory, 0, "/a").unwrap(), b"b\0d\0");
    t.one(c, XsOp::Rm, 0, "/a/b").unwrap();
    assert_eq!(t.read(c, 0, "/a/b/c"), Err(Errno::ENOENT));
    assert_eq!(t.one(c, XsOp::Directory, 0, "/a").unwrap(), b"d\0");
    // rm of a missing node whose parent exists is fine.
    t.one(c, XsOp::Rm, 0, "/a/zz").unwrap();
    assert_eq!(t.one(c, XsOp::Rm, 0, "/q/zz"), Err(Errno::ENOENT));
    assert_eq!(t.one(c, XsOp::Rm, 0, "/"), Err(Errno::EINVAL));
    assert!(t.s.check_consistency());
}

#[test]
fn unknown_and_reply_only_types_get_enosys() {
    let mut t = T::new();
    let c = t.dom0();
    for ty in [20u32, 23, 999, XsOp::WatchEvent as u32, XsOp::Error as u32] {
        let h = Header {
            ty,
            req_id: 9,
            tx_id: 0,
            len: 0,
        };
        t.s.handle(c, &h, b"").unwrap();
        let p = t.s.pop(c).unwrap();
        assert_eq!(p.op(), Some(XsOp::Error));
        assert_eq!(p.payload, b"ENOSYS\0");
        assert_eq!(p.header.req_id, 9);
    }
}

#[test]
fn relative_paths_and_perms() {
    let mut t = T::new();
    let g = t.guest(3);
    t.write(g, 0, "x", b"1").unwrap();
    let c0 = t.dom0();
    assert_eq!(t.read(c0, 0, "/local/domain/3/x").unwrap(), b"1");
    assert_eq!(
        t.one(c0, XsOp::GetPerms, 0, "/local/domain/3/x").unwrap(),
        b"n3\0"
    );
    // A guest cannot read dom0's nodes nor create at the root.
    t.write(c0, 0, "/secret", b"s").unwrap();
    assert_eq!(t.read(g, 0, "/secret"), Err(Errno::EACCES));
    assert_eq!(t.read(g, 0, "/nothere"), Err(Errno::EACCES));
    assert_eq!(t.write(g, 0, "/mine", b""), Err(Errno::EACCES));
    assert_eq!(t.read(g, 0, "nothere"), Err(Errno::ENOENT));
    // Read ACL.
    t.set_perms(c0, "/secret", &["n0", "r3"]).unwrap();
    assert_eq!(t.read(g, 0, "/secret").unwrap(), b"s");
    assert_eq!(t.write(g, 0, "/secret", b"x"), Err(Errno::EACCES));
    assert_eq!(
        t.one(c0, XsOp::GetDomainPath, 0, "3").unwrap(),
        b"/local/domain/3\0"
    );
}

#[test]
fn watches_fire_with_permission_checks() {
    let mut t = T::new();
    let c0 = t.dom0();
    let g = t.guest(4);
    t.two(c0, XsOp::Watch, "/a", "tok").unwrap();
    assert_eq!(t.events(c0), [("/a".to_string(), "tok".to_string())]);
    t.two(g, XsOp::Watch, "/a", "g").unwrap();
    assert_eq!(t.events(g).len(), 1);
    t.write(c0, 0, "/a/b", b"1").unwrap();
    assert_eq!(t.events(c0), [("/a/b".to_string(), "tok".to_string())]);
    assert!(t.events(g).is_empty(), "XSA-115: no read access, no event");
    t.write(c0, 0, "/ab", b"1").unwrap();
    assert!(t.events(c0).is_empty());
    // Relative watches report relative paths.
    t.two(g, XsOp::Watch, "dev", "r").unwrap();
    assert_eq!(t.events(g), [("dev".to_string(), "r".to_string())]);
    t.write(g, 0, "dev/x", b"").unwrap();
    assert_eq!(t.events(g), [("dev/x".to_string(), "r".to_string())]);
    t.two(g, XsOp::Unwatch, "dev", "r").unwrap();
    assert_eq!(t.two(g, XsOp::Unwatch, "dev", "r"), Err(Errno::ENOENT));
    assert_eq!(t.two(c0, XsOp::Watch, "/a", "tok"), Err(Errno::EEXIST));
}

#[test]
fn rm_fires_exact_for_children() {
    let mut t = T::new();
    let c0 = t.dom0();
    t.write(c0, 0, "/a/b/c", b"").unwrap();
    t.two(c0, XsOp::Watch, "/a", "A").unwrap();
    t.two(c0, XsOp::Watch, "/a/b/c", "C").unwrap();
    t.events(c0);
    t.one(c0, XsOp::Rm, 0, "/a/b").unwrap();
    let mut ev = t.events(c0);
    ev.sort();
    assert_eq!(
        ev,
        [
            ("/a/b".to_string(), "A".to_string()),
            ("/a/b/c".to_string(), "C".to_string())
        ]
    );
}

#[test]
fn special_watches() {
    let mut t = T::new();
    let c0 = t.dom0();
    t.two(c0, XsOp::Watch, "@introduceDomain", "i").unwrap();
    t.two(c0, XsOp::Watch, "@releaseDomain", "r").unwrap();
    t.events(c0);
    let g = t.guest(5);
    assert_eq!(
        t.events(c0),
        [("@introduceDomain".to_string(), "i".to_string())]
    );
    t.two(g, XsOp::Watch, "@releaseDomain", "g").unwrap();
    t.events(g);
    t.one(c0, XsOp::Release, 0, "5").unwrap();
    assert_eq!(
        t.events(c0),
        [("@releaseDomain".to_string(), "r".to_string())]
    );
    assert!(matches!(
        t.s.take_effects().last(),
        Some(Effect::Release {
            domid: DomId(5),
            ..
        })
    ));
    assert_eq!(
        t.s.handle(g, &Header::default(), b""),
        Err(HandleError::UnknownConn)
    );
    assert_eq!(t.one(c0, XsOp::IsDomainIntroduced, 0, "5").unwrap(), b"F\0");
}

#[test]
fn transactions_conflict_only_on_touched_nodes() {
    let mut t = T::new();
    let c0 = t.dom0();
    let c1 = t.s.connect(DomId(0));
    t.write(c0, 0, "/x", b"0").unwrap();
    t.write(c0, 0, "/y", b"0").unwrap();
    let tx = t.start(c0);
    assert_eq!(t.read(c0, tx, "/x").unwrap(), b"0");
    t.write(c0, tx, "/z/new", b"1").unwrap();
    assert_eq!(t.read(c1, 0, "/z/new"), Err(Errno::ENOENT), "isolated");
    assert_eq!(t.read(c0, tx, "/z/new").unwrap(), b"1");
    t.write(c1, 0, "/y", b"other").unwrap(); // untouched: no conflict
    t.end(c0, tx, true).unwrap();
    assert_eq!(t.read(c1, 0, "/z/new").unwrap(), b"1");

    let tx = t.start(c0);
    t.read(c0, tx, "/x").unwrap();
    t.write(c0, tx, "/y", b"mine").unwrap();
    t.write(c1, 0, "/x", b"changed").unwrap();
    assert_eq!(t.end(c0, tx, true), Err(Errno::EAGAIN));
    assert_eq!(t.read(c1, 0, "/y").unwrap(), b"other");
    // The transaction is gone either way.
    assert_eq!(t.end(c0, tx, true), Err(Errno::ENOENT));
    assert_eq!(t.end(c0, 0, true), Err(Errno::ENOENT));
    // Abort discards.
    let tx = t.start(c0);
    t.write(c0, tx, "/y", b"nope").unwrap();
    t.end(c0, tx, false).unwrap();
    assert_eq!(t.read(c1, 0, "/y").unwrap(), b"other");
    assert!(t.s.check_consistency());
}

#[test]
fn transaction_watches_fire_at_commit() {
    let mut t = T::new();
    let c0 = t.dom0();
    let c1 = t.s.connect(DomId(0));
    t.two(c1, XsOp::Watch, "/w", "t").unwrap();
    t.events(c1);
    let tx = t.start(c0);
    t.write(c0, tx, "/w/a", b"1").unwrap();
    assert!(t.events(c1).is_empty());
    t.end(c0, tx, true).unwrap();
    let ev = t.events(c1);
    assert!(
        ev.contains(&("/w/a".to_string(), "t".to_string())),
        "{ev:?}"
    );
}

#[test]
fn directory_part_pages() {
    let mut t = T::new();
    let c0 = t.dom0();
    for i in 0..600 {
        t.write(c0, 0, &format!("/d/child-number-{i:04}"), b"")
            .unwrap();
    }
    let mut names = Vec::new();
    let mut off = 0usize;
    loop {
        let r = t
            .two(c0, XsOp::DirectoryPart, "/d", &off.to_string())
            .unwrap();
        assert!(r.len() <= PAYLOAD_MAX);
        let parts: Vec<&[u8]> = r.split(|&b| b == 0).collect();
        for p in parts[1..].iter().filter(|p| !p.is_empty()) {
            off += p.len() + 1;
            names.push(String::from_utf8(p.to_vec()).unwrap());
        }
        if r.ends_with(b"\0\0") {
            break;
        }
    }
    assert_eq!(names.len(), 600);
    assert_eq!(t.one(c0, XsOp::Directory, 0, "/d"), Err(Errno::E2BIG));
}

#[test]
fn mutations_replay_to_the_same_tree() {
    let mut t = T::new();
    let c0 = t.dom0();
    let g = t.guest(7);
    t.write(g, 0, "a/b", b"v").unwrap();
    let tx = t.start(c0);
    t.write(c0, tx, "/t/x", b"1").unwrap();
    t.one(c0, XsOp::Rm, tx, "/local/domain/7/a").unwrap();
    t.end(c0, tx, true).unwrap();
    t.set_perms(c0, "/t", &["b0", "r7"]).unwrap();
    let log = t.s.take_mutations();
    let mut r = Store::new(Config::default());
    for m in &log {
        r.apply(m);
    }
    let dump = |s: &Store| {
        let mut v: Vec<(String, Vec<u8>, Perms, Vec<u8>)> = s
            .tree()
            .iter()
            .map(|(p, n)| {
                (p.to_string(), n.value.to_vec(), n.perms.clone(), {
                    let mut c: Vec<&str> = n.child_names().collect();
                    c.sort();
                    c.join(",").into_bytes()
                })
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(dump(&t.s), dump(&r));
    assert!(r.check_consistency());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "/",
        "/a",
        "/a/b",
        "/a/b/c",
        "a",
        "a/b",
        "/local/domain/1",
        "/local/domain/2/x",
        "x",
        "@introduceDomain",
        "@releaseDomain",
        "/tool",
        "",
        "b0",
        "r1",
        "n2",
        "w1",
        "T",
        "F",
        "1",
        "2",
        "0",
        "7",
        "tok",
        "..",
        "/a//b",
    ];

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(0..WORDS.len(), 0..5).prop_map(|ix| {
                let mut v = Vec::new();
                for i in ix {
                    v.extend_from_slice(WORDS[i].as_bytes());
                    v.push(0);
                }
                v
            }),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn request() -> impl Strategy<Value = (usize, u32, u32, Vec<u8>)> {
        (
            0usize..4,
            prop_oneof![0u32..24, any::<u32>()],
            0u32..4,
            payload(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn request_sequences_never_panic_and_keep_invariants(
            reqs in proptest::collection::vec(request(), 1..80)
        ) {
            let mut s = Store::new(Config {
                record_mutations: true,
                quotas: Quotas { nodes_per_domain: 30, outstanding: 4, ..Quotas::default() },
                max_queued_bytes: 2048,
                ..Config::default()
            });
            let mut conns = alloc::vec![
                s.connect(DomId(0)),
                s.connect(DomId(1)),
                s.connect(DomId(2)),
                s.connect(DomId(0)),
            ];
            let mut log = Vec::new();
            for (i, (c, ty, tx, p)) in reqs.into_iter().enumerate() {
                let h = Header { ty, req_id: i as u32, tx_id: tx, len: p.len() as u32 };
                match s.handle(conns[c], &h, &p) {
                    Ok(()) => {}
                    Err(HandleError::Busy) => { while s.pop(conns[c]).is_some() {} }
                    Err(HandleError::UnknownConn) => {
                        let d = [0, 1, 2, 0][c];
                        conns[c] = s.connect(DomId(d));
                    }
                }
                if i % 3 == 0 {
                    for c in s.take_ready() { while let Some(p) = s.pop(c) { prop_assert!(p.payload.len() <= PAYLOAD_MAX); } }
                }
                log.extend(s.take_mutations());
                prop_assert!(s.check_consistency());
            }
            let mut r = Store::new(Config::default());
            for m in &log { r.apply(m); }
            prop_assert!(r.check_consistency());
            let mut a: Vec<(String, Vec<u8>, Perms)> = s.tree().iter().map(|(p, n)| (p.to_string(), n.value.to_vec(), n.perms.clone())).collect();
            let mut b: Vec<(String, Vec<u8>, Perms)> = r.tree().iter().map(|(p, n)| (p.to_string(), n.value.to_vec(), n.perms.clone())).collect();
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            prop_assert_eq!(a, b);
        }
    }
}

mod release_props {
    use super::*;
    use proptest::prelude::*;

    /// What `XS_RELEASE` of `dom` leaves, computed by walking every node
    /// (the release before the per-domain index): subtrees of nodes `dom`
    /// owns (but `/`) are gone, ACL entries naming it are dropped.
    fn walk_model(tree: &Tree, dom: DomId) -> Vec<(String, Vec<u8>, Perms)> {
        let owned: Vec<&str> = tree
            .iter()
            .filter(|(p, n)| *p != "/" && n.perms.owner_dom() == dom)
            .map(|(p, _)| p)
            .collect();
        let gone = |p: &str| {
            owned
                .iter()
                .any(|o| p == *o || (p.starts_with(o) && p.as_bytes().get(o.len()) == Some(&b'/')))
        };
        let mut v: Vec<(String, Vec<u8>, Perms)> = tree
            .iter()
            .filter(|(p, _)| !gone(p))
            .map(|(p, n)| {
                let perms = n.perms.without(dom).unwrap_or_else(|| n.perms.clone());
                (p.to_string(), n.value.to_vec(), perms)
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    fn nodes(tree: &Tree) -> Vec<(String, Vec<u8>, Perms)> {
        let mut v: Vec<(String, Vec<u8>, Perms)> = tree
            .iter()
            .map(|(p, n)| (p.to_string(), n.value.to_vec(), n.perms.clone()))
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    const PATHS: &[&str] = &[
        "/a",
        "/a/b",
        "/a/b/c",
        "/a/d",
        "/e",
        "/e/f",
        "/local/domain/2/x",
    ];

    /// A dom0 write, then perms naming domains 1..=3 (owner first).
    fn op() -> impl Strategy<Value = (usize, Vec<(u8, u16)>)> {
        (
            0..PATHS.len(),
            proptest::collection::vec((0u8..4, 0u16..4), 1..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn release_matches_a_whole_tree_walk(
            ops in proptest::collection::vec(op(), 1..30),
            dom in 1u16..4,
        ) {
            let mut t = T::new();
            let c0 = t.dom0();
            for d in 1..4 {
                t.guest(d);
            }
            for (i, acl) in ops {
                let p = PATHS[i];
                t.write(c0, 0, p, p.as_bytes()).unwrap();
                let perms: Vec<String> = acl
                    .iter()
                    .map(|&(a, d)| format!("{}{}", ["n", "r", "w", "b"][a as usize], d))
                    .collect();
                let perms: Vec<&str> = perms.iter().map(String::as_str).collect();
                t.set_perms(c0, p, &perms).unwrap();
            }
            prop_assert!(t.s.check_consistency());
            let want = walk_model(t.s.tree(), DomId(dom));
            t.one(c0, XsOp::Release, 0, &dom.to_string()).unwrap();
            prop_assert!(t.s.check_consistency());
            prop_assert_eq!(nodes(t.s.tree()), want);
            prop_assert_eq!(t.s.tree().count(DomId(dom)), 0);
            prop_assert_eq!(t.s.tree().acl_names(DomId(dom)).count(), 0);
        }
    }
}

#[test]
fn snapshot_rebuilds_everything() {
    let mut t = T::new();
    let c0 = t.dom0();
    let g = t.guest(9);
    t.write(g, 0, "z", b"1").unwrap();
    t.write(g, 0, "a", b"2").unwrap();
    t.write(c0, 0, "/tool/x", b"3").unwrap();
    t.set_perms(c0, "@releaseDomain", &["n0", "r9"]).unwrap();
    let mut r = Store::new(Config::default());
    for m in t.s.snapshot() {
        r.apply(&m);
    }
    assert_eq!(r.snapshot(), t.s.snapshot());
    assert!(r.check_consistency());
    assert_eq!(r.tree().get("/local/domain/9").unwrap().children, b"z\0a\0");
}

/// The reference C xenstored 4.17, started with the ref tool
/// (`../shared/tools/ref-xenstored/start.sh cx DIR`, needs
/// `xen-utils-4.17` and gcc, which `cargo xtask setup` installs) and killed
/// on drop; or, with `XS_REF_SOCKET` set, one already running there.
struct RefXenstored {
    socket: std::path::PathBuf,
    pid: Option<u32>,
    dir: Option<std::path::PathBuf>,
}

impl RefXenstored {
    fn get() -> RefXenstored {
        extern crate std;
        if let Some(s) = std::env::var_os("XS_REF_SOCKET") {
            return RefXenstored {
                socket: s.into(),
                pid: None,
                dir: None,
            };
        }
        let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/tools/ref-xenstored/start.sh");
        assert!(tool.exists(), "the ref tool is missing: {}", tool.display());
        let dir = std::env::temp_dir().join(format!("windsor-ref-cx-{}", std::process::id()));
        let out = std::process::Command::new(&tool)
            .arg("cx")
            .arg(&dir)
            .output()
            .expect("run the ref tool");
        assert!(
            out.status.success(),
            "starting C xenstored failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        assert!(pid.is_some(), "the ref tool prints the daemon's pid");
        RefXenstored {
            socket: dir.join("socket"),
            pid,
            dir: Some(dir),
        }
    }
}

impl Drop for RefXenstored {
    fn drop(&mut self) {
        extern crate std;
        if let Some(pid) = self.pid {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Differential test against C xenstored 4.17 (a socket client acts as
/// dom0): the same requests to both, replies and events compared byte for
/// byte (generation counts in `DIRECTORY_PART` aside). The reference is
/// started here ([`RefXenstored`]); about 15 s, most of it waiting 30 ms
/// after each reply for watch events that must not come.
#[test]
fn differential_against_c_xenstored() {
    extern crate std;
    use crate::wire::Decoder;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    let reference = RefXenstored::get();
    let sock = &reference.socket;
    let mut ux = UnixStream::connect(sock).expect("connect to reference");
    ux.set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let mut dec = Decoder::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut recv_all = |ux: &mut UnixStream, want_req: u32| -> Vec<Packet> {
        let mut got = Vec::new();
        let mut seen_reply = false;
        let mut buf = [0u8; 8192];
        loop {
            while !pending.is_empty() {
                let (u, p) = dec.feed(&pending).unwrap();
                pending.drain(..u);
                if let Some(p) = p {
                    if p.op() != Some(XsOp::WatchEvent) && p.header.req_id == want_req {
                        seen_reply = true;
                    }
                    got.push(p);
                }
            }
            match ux.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(_) if seen_reply => break,
                Err(_) => continue,
            }
        }
        got
    };

    let mut s = Store::new(Config::default());
    let c = s.connect(DomId(0));
    let script: Vec<(XsOp, u32, Vec<u8>)> = {
        let a = |xs: &[&[u8]]| -> Vec<u8> {
            let mut v = Vec::new();
            for x in xs {
                v.extend_from_slice(x);
                v.push(0);
            }
            v
        };
        let raw = |x: &[u8]| x.to_vec();
        let long = alloc::vec![b'v'; 4000];
        let mut w_long = b"/d/long\0".to_vec();
        w_long.extend_from_slice(&long);
        let deep = format!("/{}", "p".repeat(3000));
        alloc::vec![
            (XsOp::Read, 0, a(&[b"/"])),
            (XsOp::Directory, 0, a(&[b"/"])),
            (XsOp::Directory, 0, a(&[b"/tool"])),
            (XsOp::GetPerms, 0, a(&[b"/"])),
            (XsOp::Write, 0, raw(b"/d/a\0x")),
            (XsOp::Write, 0, raw(b"/d/bin\0a\0b\0")),
            (XsOp::Read, 0, a(&[b"/d/bin"])),
            (XsOp::Read, 0, a(&[b"/d"])),
            (XsOp::Directory, 0, a(&[b"/d"])),
            (XsOp::Mkdir, 0, a(&[b"/d/m"])),
            (XsOp::Mkdir, 0, a(&[b"/d/m"])),
            (XsOp::Directory, 0, a(&[b"/d"])),
            (XsOp::GetPerms, 0, a(&[b"/d/a"])),
            (XsOp::SetPerms, 0, a(&[b"/d/a", b"b0", b"r5", b"w7"])),
            (XsOp::GetPerms, 0, a(&[b"/d/a"])),
            (XsOp::SetPerms, 0, a(&[b"/d/a", b"x0"])),
            (XsOp::SetPerms, 0, a(&[b"/d/a"])),
            (XsOp::SetPerms, 0, a(&[b"/d/nope", b"b0"])),
            (XsOp::SetPerms, 0, a(&[b"@releaseDomain", b"n0", b"r3"])),
            (XsOp::SetPerms, 0, a(&[b"@other", b"n0"])),
            (XsOp::Read, 0, a(&[b"/nope"])),
            (XsOp::Read, 0, a(&[b"/nope/deeper"])),
            (XsOp::Read, 0, a(&[b""])),
            (XsOp::Read, 0, a(&[b"/d/"])),
            (XsOp::Read, 0, a(&[b"/d//a"])),
            (XsOp::Read, 0, a(&[b"/d/a b"])),
            (XsOp::Read, 0, raw(b"/d/a")),
            (XsOp::Read, 0, raw(b"/d/a\0\0")),
            (XsOp::Read, 0, raw(b"")),
            (XsOp::Write, 0, raw(b"/d/nonul")),
            (XsOp::Write, 0, raw(b"")),
            (XsOp::Read, 0, a(&[b"rel"])),
            (XsOp::Write, 0, raw(b"rel/x\0y")),
            (XsOp::Read, 0, a(&[b"/local/domain/0/rel/x"])),
            (XsOp::Directory, 0, a(&[b"/local/domain"])),
            (XsOp::Write, 0, w_long),
            (XsOp::Read, 0, a(&[b"/d/long"])),
            (XsOp::Write, 0, a(&[deep.as_bytes()])),
            (XsOp::Rm, 0, a(&[b"/d/zz"])),
            (XsOp::Rm, 0, a(&[b"/q/zz"])),
            (XsOp::Rm, 0, a(&[b"/"])),
            (XsOp::Watch, 0, a(&[b"/d", b"tok"])),
            (XsOp::Watch, 0, a(&[b"/d", b"tok"])),
            (XsOp::Watch, 0, a(&[b"rel", b"rtok"])),
            (XsOp::Watch, 0, a(&[b"@introduceDomain", b"i"])),
            (XsOp::Watch, 0, a(&[b"/d"])),
            (XsOp::Write, 0, raw(b"/d/c\0v")),
            (XsOp::Write, 0, raw(b"rel/x/y\0v")),
            (XsOp::SetPerms, 0, a(&[b"/d/c", b"n0"])),
            (XsOp::Rm, 0, a(&[b"/d/m"])),
            (XsOp::Unwatch, 0, a(&[b"/d", b"tok"])),
            (XsOp::Unwatch, 0, a(&[b"/d", b"tok"])),
            (XsOp::Unwatch, 0, a(&[b"rel", b"rtok"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Write, 1, raw(b"/t/x\0in-txn")),
            (XsOp::Read, 1, a(&[b"/t/x"])),
            (XsOp::Read, 0, a(&[b"/t/x"])),
            (XsOp::Directory, 1, a(&[b"/t"])),
            (XsOp::TransactionStart, 1, a(&[b""])),
            (XsOp::TransactionStart, 77, a(&[b""])),
            (XsOp::GetDomainPath, 77, a(&[b"1"])),
            (XsOp::Watch, 77, a(&[b"/w77", b"t"])),
            (XsOp::Unwatch, 77, a(&[b"/w77", b"t"])),
            (XsOp::TransactionEnd, 1, a(&[b"X"])),
            (XsOp::TransactionEnd, 1, a(&[b"T"])),
            (XsOp::Read, 0, a(&[b"/t/x"])),
            (XsOp::TransactionEnd, 1, a(&[b"T"])),
            (XsOp::TransactionEnd, 0, a(&[b"T"])),
            (XsOp::Read, 9, a(&[b"/t/x"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Read, 2, a(&[b"/t/x"])),
            (XsOp::Write, 0, raw(b"/t/x\0outside")),
            (XsOp::Write, 2, raw(b"/t/y\0inside")),
            (XsOp::TransactionEnd, 2, a(&[b"T"])),
            (XsOp::Read, 0, a(&[b"/t/y"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Rm, 3, a(&[b"/t"])),
            (XsOp::Read, 3, a(&[b"/t/x"])),
            (XsOp::TransactionEnd, 3, a(&[b"F"])),
            (XsOp::Read, 0, a(&[b"/t/x"])),
            (XsOp::GetDomainPath, 0, a(&[b"5"])),
            (XsOp::GetDomainPath, 0, a(&[b"abc"])),
            (XsOp::GetDomainPath, 0, a(&[b"-1"])),
            (XsOp::GetDomainPath, 0, a(&[b" +7x"])),
            (XsOp::GetDomainPath, 0, a(&[b"4294967296"])),
            (XsOp::GetDomainPath, 0, a(&[b"99999999999999999999999"])),
            (XsOp::IsDomainIntroduced, 0, a(&[b"32752"])),
            (XsOp::IsDomainIntroduced, 0, a(&[b"-1"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d", b"-1"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d", b"x"])),
            (XsOp::GetDomainPath, 0, raw(b"5")),
            (XsOp::IsDomainIntroduced, 0, a(&[b"0"])),
            (XsOp::IsDomainIntroduced, 0, a(&[b"5"])),
            (XsOp::Release, 0, a(&[b"5"])),
            (XsOp::Release, 0, a(&[b"0"])),
            (XsOp::Resume, 0, a(&[b"5"])),
            (XsOp::SetTarget, 0, a(&[b"5", b"6"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d", b"0"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d", b"3"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d", b"100"])),
            (XsOp::DirectoryPart, 0, a(&[b"/d"])),
            (XsOp::Write, 0, raw(b"/e/a\0")),
            (XsOp::Write, 0, raw(b"/e/b/c\0")),
            (XsOp::Write, 0, raw(b"/e/b/d\0")),
            (XsOp::Watch, 0, a(&[b"/e/b/c", b"x"])),
            (XsOp::Watch, 0, a(&[b"/e", b"y"])),
            (XsOp::Watch, 0, a(&[b"/", b"z"])),
            (XsOp::Watch, 0, a(&[b"/e/b", b"w"])),
            (XsOp::Rm, 0, a(&[b"/e"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Write, 4, raw(b"/e/t1\0a")),
            (XsOp::Write, 4, raw(b"/e/b/t2\0b")),
            (XsOp::Rm, 4, a(&[b"/e/b"])),
            (XsOp::TransactionEnd, 4, a(&[b"T"])),
            (XsOp::Unwatch, 0, a(&[b"/", b"z"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Read, 5, a(&[b"/e/t1"])),
            (XsOp::Write, 0, raw(b"/e/t1\0changed")),
            (XsOp::Write, 5, raw(b"/e/t3\0b")),
            (XsOp::TransactionEnd, 5, a(&[b"T"])),
            (XsOp::Read, 0, a(&[b"/e/t3"])),
            (XsOp::TransactionStart, 0, a(&[b""])),
            (XsOp::Read, 6, a(&[b"/e/none"])),
            (XsOp::Write, 0, raw(b"/e/none\0now")),
            (XsOp::TransactionEnd, 6, a(&[b"T"])),
            (XsOp::ResetWatches, 0, a(&[b""])),
            (XsOp::Write, 0, raw(b"/d/after-reset\0v")),
            (XsOp::Rm, 0, a(&[b"/d"])),
            (XsOp::Rm, 0, a(&[b"/t"])),
            (XsOp::Rm, 0, a(&[b"/local"])),
            (XsOp::Rm, 0, a(&[deep.as_bytes()])),
        ]
    };
    let mut raw_ops: Vec<(u32, u32, Vec<u8>)> = script
        .into_iter()
        .map(|(op, tx, p)| (op as u32, tx, p))
        .collect();
    for i in 0..300 {
        raw_ops.push((
            XsOp::Write as u32,
            0,
            format!("/big/a-rather-long-child-name-{i:04}\0").into_bytes(),
        ));
    }
    for off in [0usize, 100, 4000, 4070, 9000, 11000, 11100, 11500] {
        raw_ops.push((
            XsOp::DirectoryPart as u32,
            0,
            format!("/big\0{off}\0").into_bytes(),
        ));
    }
    raw_ops.push((XsOp::Directory as u32, 0, b"/big\0".to_vec()));
    raw_ops.push((XsOp::Rm as u32, 0, b"/big\0".to_vec()));
    raw_ops.push((XsOp::Rm as u32, 0, b"/e\0".to_vec()));
    raw_ops.push((20, 0, Vec::new()));
    raw_ops.push((99, 0, Vec::new()));
    raw_ops.push((XsOp::WatchEvent as u32, 0, Vec::new()));
    let mut mismatches = 0;
    for (i, (ty, tx, p)) in raw_ops.iter().enumerate() {
        let req = 1000 + i as u32;
        let h = Header {
            ty: *ty,
            req_id: req,
            tx_id: *tx,
            len: p.len() as u32,
        };
        ux.write_all(
            &Packet {
                header: h,
                payload: p.clone(),
            }
            .to_vec(),
        )
        .unwrap();
        let theirs = recv_all(&mut ux, req);
        s.handle(c, &h, p).unwrap();
        let mut ours = Vec::new();
        while let Some(x) = s.pop(c) {
            ours.push(x);
        }
        let norm = |v: &[Packet]| -> Vec<(u32, u32, Vec<u8>)> {
            v.iter()
                .map(|p| {
                    let mut pl = p.payload.clone();
                    if p.op() == Some(XsOp::DirectoryPart) {
                        let i = pl.iter().position(|&b| b == 0).unwrap_or(0);
                        pl.drain(..i);
                    }
                    (p.header.ty, p.header.req_id, pl)
                })
                .collect()
        };
        if norm(&theirs) != norm(&ours) {
            mismatches += 1;
            let show = |v: &[Packet]| -> Vec<(Option<XsOp>, String)> {
                v.iter()
                    .map(|p| {
                        let mut s = String::from_utf8_lossy(&p.payload).into_owned();
                        s.truncate(80);
                        (p.op(), s)
                    })
                    .collect()
            };
            std::println!(
                "step {i} ty {ty} tx {tx} {:?}:\n   C: {:?}\n  us: {:?}",
                String::from_utf8_lossy(&p[..p.len().min(60)]),
                show(&theirs),
                show(&ours)
            );
        }
    }
    assert_eq!(mismatches, 0);
}

#[test]
fn duplicate_pending_events_are_dropped() {
    let mut t = T::new();
    let c0 = t.dom0();
    let w = t.s.connect(DomId(0));
    t.two(w, XsOp::Watch, "/x", "t").unwrap();
    t.events(w);
    for _ in 0..10 {
        t.write(c0, 0, "/x/a", b"1").unwrap();
    }
    t.write(c0, 0, "/x/b", b"1").unwrap();
    assert_eq!(t.events(w).len(), 2);
    t.write(c0, 0, "/x/a", b"1").unwrap();
    assert_eq!(t.events(w).len(), 1, "delivered events no longer count");
}

#[test]
fn transaction_reads_are_repeatable() {
    let mut t = T::new();
    let c0 = t.dom0();
    let c1 = t.s.connect(DomId(0));
    t.write(c0, 0, "/r", b"0").unwrap();
    let tx = t.start(c0);
    assert_eq!(t.read(c0, tx, "/r").unwrap(), b"0");
    t.write(c1, 0, "/r", b"outside").unwrap();
    assert_eq!(t.read(c0, tx, "/r").unwrap(), b"0", "as C xenstored");
    assert_eq!(t.end(c0, tx, true), Err(Errno::EAGAIN));
}

#[test]
fn reintroduce_resets_the_domain_connection() {
    let mut t = T::new();
    let c0 = t.dom0();
    let g = t.guest(6);
    t.two(g, XsOp::Watch, "x", "t").unwrap();
    let tx = t.start(g);
    t.write(c0, 0, "/local/domain/6/x", b"queued").unwrap();
    assert!(t.s.has_output(g));
    t.req(c0, XsOp::Introduce, 0, b"6\x00101\x005\x00").unwrap();
    assert!(!t.s.has_output(g));
    assert_eq!(t.s.stats().watches, 0);
    assert_eq!(t.end(g, tx, true), Err(Errno::ENOENT));
}

#[test]
fn drained_connection_holds_no_queue_memory() {
    let mut t = T::new();
    let c0 = t.dom0();
    let w = t.s.connect(DomId::DOM0);
    t.two(w, XsOp::Watch, "/burst", "tok").unwrap();
    assert_eq!(t.events(w).len(), 1);
    {
        let c = &t.s.conns[&w];
        assert_eq!(c.watches.capacity(), 1, "one watch, room for one");
    }
    // A burst of distinct events piles up in the watcher's queue...
    for i in 0..200 {
        t.write(c0, 0, &format!("/burst/{i}"), b"x").unwrap();
    }
    {
        let c = &t.s.conns[&w];
        assert_eq!(c.out.len(), 200);
        assert!(c.out.capacity() >= 200);
        assert_eq!(c.pending_events.len(), 200);
    }
    // ... and once it is read, the queue's memory is given back.
    assert_eq!(t.events(w).len(), 200);
    let c = &t.s.conns[&w];
    assert_eq!(c.out.capacity(), 0);
    assert!(c.pending_events.is_empty());
    assert_eq!(c.out_bytes, 0);
}

#[test]
fn watchers_of_one_path_share_its_bytes() {
    let mut t = T::new();
    let a = t.dom0();
    let b = t.s.connect(DomId::DOM0);
    t.two(a, XsOp::Watch, "/shared/p", "x").unwrap();
    t.two(b, XsOp::Watch, "/shared/p", "y").unwrap();
    let pa = t.s.conns[&a].watches[0].path.clone();
    let pb = t.s.conns[&b].watches[0].path.clone();
    assert!(Arc::ptr_eq(&pa, &pb));
    assert_eq!(&*pa, b"/shared/p");
    // Both still fire, each with its own token.
    t.events(a);
    t.events(b);
    t.write(a, 0, "/shared/p", b"1").unwrap();
    assert_eq!(t.events(a), [("/shared/p".to_string(), "x".to_string())]);
    assert_eq!(t.events(b), [("/shared/p".to_string(), "y".to_string())]);
}

/// Issue 16 item 5: open transactions hold bounded memory, per connection
/// and in total, dom0's too; what they held is given back at their end.
#[test]
fn transaction_memory_is_bounded_per_connection_and_in_total() {
    let mut t = T {
        s: Store::new(Config {
            record_mutations: true,
            txn_bytes_per_conn: 40_000,
            txn_bytes_total: 100_000,
            ..Config::default()
        }),
        req: 0,
    };
    let value = [b'v'; 4000];
    let a = t.dom0();
    // One connection: its transactions together stop near 40 kB.
    let (tx1, tx2) = (t.start(a), t.start(a));
    let mut ok = 0;
    for i in 0..20 {
        let tx = if i % 2 == 0 { tx1 } else { tx2 };
        if t.write(a, tx, &format!("/big/a{i}"), &value).is_ok() {
            ok += 1;
        } else {
            assert_eq!(t.write(a, tx, "/big/more", &value), Err(Errno::ENOSPC));
        }
    }
    assert!((8..=10).contains(&ok), "{ok} writes of 4 kB fit in 40 kB");
    assert!(t.s.txn_bytes <= 40_000 + 4000, "{}", t.s.txn_bytes);
    // The failed transaction cannot commit; ending both gives it all back.
    assert_eq!(t.end(a, tx1, true), Err(Errno::ENOMEM));
    t.end(a, tx2, false).unwrap();
    assert_eq!(t.s.txn_bytes, 0);
    // Many connections: the store's total bound holds.
    let conns: Vec<ConnId> = (0..5).map(|_| t.s.connect(DomId::DOM0)).collect();
    let mut ok = 0;
    let mut txs = Vec::new();
    for (k, &c) in conns.iter().enumerate() {
        let tx = t.start(c);
        txs.push((c, tx));
        for i in 0..10 {
            if t.write(c, tx, &format!("/big/c{k}/{i}"), &value).is_ok() {
                ok += 1;
            }
        }
    }
    assert!(ok <= 26, "{ok} writes of 4 kB in a 100 kB total");
    assert!(t.s.txn_bytes <= 100_000 + 4100, "{}", t.s.txn_bytes);
    assert!(t.s.check_consistency());
    // A disconnect frees its transactions' share for the others.
    let (gone, _) = txs.remove(0);
    t.s.disconnect(gone);
    assert!(t.s.txn_bytes <= 100_000 - 30_000, "{}", t.s.txn_bytes);
    for (c, tx) in txs {
        let _ = t.end(c, tx, false);
    }
    assert_eq!(t.s.txn_bytes, 0);
    assert!(t.s.check_consistency());
}

#[test]
fn external_changes_fire_like_their_own_requests() {
    let mut t = T::new();
    let c0 = t.dom0();
    let g = t.guest(4);
    let w = |p: &str, perms: &str| Mutation::Write {
        path: p.into(),
        value: Arc::from(&b"v"[..]),
        perms: Perms::parse(perms.as_bytes()).unwrap(),
    };
    t.s.apply_external(&[w("/pool/a/b/c", "n0\0")], &["/pool/a/b/c".to_string()]);
    t.two(c0, XsOp::Watch, "/pool", "P").unwrap();
    t.two(c0, XsOp::Watch, "/pool/a/b/c", "C").unwrap();
    t.two(g, XsOp::Watch, "/pool", "G").unwrap();
    t.events(c0);
    t.events(g);
    // A write fires the node's and its ancestors' watches, not for a
    // guest without read access.
    t.s.apply_external(&[w("/pool/a/b/c", "n0\0")], &["/pool/a/b/c".to_string()]);
    let mut ev = t.events(c0);
    ev.sort();
    assert_eq!(
        ev,
        [
            ("/pool/a/b/c".to_string(), "C".to_string()),
            ("/pool/a/b/c".to_string(), "P".to_string())
        ]
    );
    assert!(t.events(g).is_empty());
    // Readable by the guest: it hears of it.
    t.s.apply_external(&[w("/pool/d", "n0\0r4\0")], &["/pool/d".to_string()]);
    assert_eq!(t.events(g), [("/pool/d".to_string(), "G".to_string())]);
    t.events(c0);
    // A removal fires the watches below the removed node too.
    t.s.apply_external(
        &[Mutation::Remove {
            path: "/pool/a".into(),
        }],
        &["/pool/a".to_string()],
    );
    let mut ev = t.events(c0);
    ev.sort();
    assert_eq!(
        ev,
        [
            ("/pool/a".to_string(), "P".to_string()),
            ("/pool/a/b/c".to_string(), "C".to_string())
        ]
    );
    assert_eq!(t.read(c0, 0, "/pool/a/b/c"), Err(Errno::ENOENT));
    assert!(t.s.check_consistency());
}

#[test]
fn txn_view_shows_what_a_transaction_did_and_drop_ends_it() {
    let mut t = T::new();
    let c = t.s.connect(DomId(0));
    t.write(c, 0, "/pool/a", b"1").unwrap();
    t.write(c, 0, "/pool/b", b"2").unwrap();
    let tx = t.start(c);
    assert_eq!(t.read(c, tx, "/pool/a").unwrap(), b"1");
    t.write(c, tx, "/pool/new/deep", b"x").unwrap();
    t.one(c, XsOp::Rm, tx, "/pool/b").unwrap();
    let v = t.s.txn_view(c, tx).expect("open");
    assert!(v.valid && !v.failed);
    let find = |p: &str| v.touched.iter().find(|x| x.path == p).expect(p);
    assert!(matches!(find("/pool/a").change, TxnChange::Read));
    assert!(find("/pool/a").existed);
    assert!(matches!(find("/pool/b").change, TxnChange::Removed));
    match &find("/pool/new/deep").change {
        TxnChange::Written {
            value,
            value_changed,
            perms_changed,
            ..
        } => {
            assert_eq!(&**value, b"x");
            assert!(*value_changed && *perms_changed);
        }
        c => panic!("{c:?}"),
    }
    assert!(!find("/pool/new").existed);
    // The parent only gained a child: neither value nor perms changed.
    match &find("/pool").change {
        TxnChange::Written {
            value_changed,
            perms_changed,
            ..
        } => assert!(!value_changed && !perms_changed),
        c => panic!("{c:?}"),
    }
    // A change outside makes it invalid; dropping it ends it unapplied.
    t.write(c, 0, "/pool/a", b"2").unwrap();
    assert!(!t.s.txn_view(c, tx).unwrap().valid);
    assert!(t.s.drop_txn(c, tx));
    assert!(t.s.txn_view(c, tx).is_none());
    assert!(!t.s.drop_txn(c, tx));
    assert_eq!(t.read(c, 0, "/pool/b").unwrap(), b"2");
    assert_eq!(t.s.txn_bytes(), 0);
    assert!(t.s.check_consistency());
}
