//! The committed tree: nodes keyed by canonical path, an index of nodes
//! by the domains their permissions name, the generation counter and the
//! mutation log hook.
//!
//! Every change to the committed tree goes through [`Tree::put`] and
//! [`Tree::remove`], which bump generations, keep the per-domain index
//! (a node is charged to its owner, as xenstored does, and listed under
//! every other domain its ACL names) and, when enabled, record a
//! [`Mutation`](super::Mutation) for persistence. The index is what makes
//! `XS_RELEASE` cost the released domain's own nodes rather than the whole
//! tree; its owner sets also give the node quota's counts.
//!
//! Nodes live in a `hashbrown` map with a seeded hasher: paths come from
//! guests, so the seed (from [`Config::hash_seed`](super::Config)) keeps
//! them from choosing colliding keys cheaply.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};

use hashbrown::{HashMap, HashSet};
use xen::DomId;

use super::Mutation;
use crate::perms::Perms;

/// A seeded, fast hasher for guest-chosen keys (folded multiply).
#[derive(Clone, Copy, Debug)]
pub struct SeededState(u64);

impl SeededState {
    /// A state keyed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededState(seed ^ 0x243f_6a88_85a3_08d3)
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The hasher of [`SeededState`].
#[derive(Clone, Copy, Debug)]
pub struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = fold(h ^ u64::from_le_bytes(w), K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = fold(h ^ u64::from_le_bytes(w), K ^ rest.len() as u64);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = fold(self.0 ^ u64::from(i), K);
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = fold(self.0 ^ i as u64, K);
    }
    fn finish(&self) -> u64 {
        fold(self.0, 0x5851_f42d_4c95_7f2d)
    }
}

/// A map with the seeded hasher.
pub type Map<K, V> = HashMap<K, V, SeededState>;

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The value.
    pub value: Arc<[u8]>,
    /// Owner and ACL.
    pub perms: Perms,
    /// Names of the children, each followed by a NUL, in creation order
    /// (exactly the `XS_DIRECTORY` reply).
    pub children: Vec<u8>,
    /// Generation of the last change (0 inside a transaction overlay).
    pub gen: u64,
}

impl Node {
    /// A childless node.
    pub fn new(value: Arc<[u8]>, perms: Perms) -> Self {
        Node {
            value,
            perms,
            children: Vec::new(),
            gen: 0,
        }
    }

    /// Iterates over child names.
    pub fn child_names(&self) -> impl Iterator<Item = &str> {
        self.children
            .split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| core::str::from_utf8(s).unwrap_or(""))
    }

    /// Appends a child name.
    pub fn add_child(&mut self, name: &str) {
        self.children.extend_from_slice(name.as_bytes());
        self.children.push(0);
    }

    /// Removes a child name; false if absent.
    pub fn remove_child(&mut self, name: &str) -> bool {
        let mut off = 0;
        while off < self.children.len() {
            let end = self.children[off..]
                .iter()
                .position(|&c| c == 0)
                .map_or(self.children.len(), |e| off + e);
            if &self.children[off..end] == name.as_bytes() {
                let stop = (end + 1).min(self.children.len());
                self.children.drain(off..stop);
                return true;
            }
            off = end + 1;
        }
        false
    }
}

/// A set with the seeded hasher.
type Set<K> = HashSet<K, SeededState>;

/// The nodes whose permissions name one domain. Paths are the tree's own
/// keys (shared, not copied).
#[derive(Debug)]
struct DomNodes {
    /// Nodes it owns (first entry of the permissions).
    owned: Set<Arc<str>>,
    /// Nodes whose ACL (the entries after the owner) names it.
    acl: Set<Arc<str>>,
}

/// The committed tree.
#[derive(Debug)]
pub struct Tree {
    nodes: Map<Arc<str>, Node>,
    /// Domain -> the nodes its id appears in; no empty entries.
    doms: Map<DomId, DomNodes>,
    /// Hasher of the index's path sets.
    set_state: SeededState,
    gen: u64,
    log: Option<Vec<Mutation>>,
}

impl Tree {
    /// A tree holding `/`, `/tool` and `/tool/xenstored`, all `n0`
    /// (`setup_structure`).
    pub fn new(seed: u64, record: bool) -> Self {
        let st = SeededState::new(seed);
        let mut t = Tree {
            nodes: HashMap::with_hasher(st),
            doms: HashMap::with_hasher(SeededState::new(seed.rotate_left(17))),
            set_state: SeededState::new(seed.rotate_left(53)),
            gen: 0,
            log: None,
        };
        let p = Perms::dom0_only();
        let mut root = Node::new(Arc::from(&[][..]), p.clone());
        root.add_child("tool");
        let mut tool = Node::new(Arc::from(&[][..]), p.clone());
        tool.add_child("xenstored");
        t.put("/", root);
        t.put("/tool", tool);
        t.put("/tool/xenstored", Node::new(Arc::from(&[][..]), p));
        t.log = if record { Some(Vec::new()) } else { None };
        t
    }

    /// Looks a node up.
    #[inline]
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Current generation of a node, `None` if absent.
    pub fn gen_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.gen)
    }

    /// The global generation counter.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Hands out a fresh generation.
    pub fn next_gen(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    /// Number of nodes owned by `dom`.
    pub fn count(&self, dom: DomId) -> u32 {
        self.doms
            .get(&dom)
            .map_or(0, |d| u32::try_from(d.owned.len()).unwrap_or(u32::MAX))
    }

    /// Paths of the nodes `dom` owns (unordered).
    pub fn owned_by(&self, dom: DomId) -> impl Iterator<Item = &str> {
        self.doms
            .get(&dom)
            .into_iter()
            .flat_map(|d| d.owned.iter().map(|p| &**p))
    }

    /// Paths of the nodes whose ACL names `dom` after the owner entry
    /// (unordered).
    pub fn acl_names(&self, dom: DomId) -> impl Iterator<Item = &str> {
        self.doms
            .get(&dom)
            .into_iter()
            .flat_map(|d| d.acl.iter().map(|p| &**p))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Lists `path` under (`add`) or removes it from every domain `perms`
    /// names: its owner's `owned` set, the others' `acl` sets.
    fn index(&mut self, path: &Arc<str>, perms: &Perms, add: bool) {
        for (i, p) in perms.as_slice().iter().enumerate() {
            if add {
                let st = self.set_state;
                let d = self.doms.entry(p.dom).or_insert_with(|| DomNodes {
                    owned: Set::with_hasher(st),
                    acl: Set::with_hasher(st),
                });
                let set = if i == 0 { &mut d.owned } else { &mut d.acl };
                set.insert(path.clone());
            } else if let Some(d) = self.doms.get_mut(&p.dom) {
                let set = if i == 0 { &mut d.owned } else { &mut d.acl };
                set.remove(&**path);
                if d.owned.is_empty() && d.acl.is_empty() {
                    self.doms.remove(&p.dom);
                }
            }
        }
    }

    /// Creates or replaces a node (its children list included) with a
    /// fresh generation.
    pub fn put(&mut self, path: &str, mut node: Node) {
        node.gen = self.next_gen();
        let changed = |old: &Node| {
            !(Arc::ptr_eq(&old.value, &node.value) || old.value == node.value)
                || old.perms != node.perms
        };
        // A change of the children list alone is implied by the child's own
        // record, so it is not logged.
        let log_it = self.nodes.get(path).is_none_or(changed);
        if let (Some(log), true) = (&mut self.log, log_it) {
            log.push(Mutation::Write {
                path: path.into(),
                value: node.value.clone(),
                perms: node.perms.clone(),
            });
        }
        match self.nodes.get_key_value_mut(path) {
            Some((key, old)) => {
                if old.perms == node.perms {
                    *old = node;
                    return;
                }
                let (key, perms) = (key.clone(), node.perms.clone());
                let old_perms = core::mem::replace(old, node).perms;
                self.index(&key, &old_perms, false);
                self.index(&key, &perms, true);
            }
            None => {
                let key: Arc<str> = Arc::from(path);
                self.index(&key, &node.perms, true);
                self.nodes.insert(key, node);
            }
        }
    }

    /// Removes one node (not its children; callers walk subtrees).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let (key, n) = self.nodes.remove_entry(path)?;
        self.gen += 1;
        if let Some(log) = &mut self.log {
            log.push(Mutation::Remove { path: path.into() });
        }
        self.index(&key, &n.perms, false);
        Some(n)
    }

    /// Paths of all nodes (unordered).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(|k| &**k)
    }

    /// All nodes (unordered).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (&**k, v))
    }

    /// True if the per-domain index lists exactly the domains each node's
    /// permissions name (for [`Store::check_consistency`](super::Store::check_consistency)).
    pub fn check_index(&self) -> bool {
        let listed = |dom: DomId, owner: bool, p: &str| {
            self.doms
                .get(&dom)
                .is_some_and(|d| if owner { &d.owned } else { &d.acl }.contains(p))
        };
        let nodes_ok = self.nodes.iter().all(|(p, n)| {
            let perms = n.perms.as_slice();
            listed(perms[0].dom, true, p) && perms[1..].iter().all(|e| listed(e.dom, false, p))
        });
        let index_ok = self.doms.iter().all(|(dom, d)| {
            let names = |p: &Arc<str>, owner: bool| {
                self.nodes.get(&**p).is_some_and(|n| {
                    let perms = n.perms.as_slice();
                    if owner {
                        perms[0].dom == *dom
                    } else {
                        perms[1..].iter().any(|e| e.dom == *dom)
                    }
                })
            };
            !(d.owned.is_empty() && d.acl.is_empty())
                && d.owned.iter().all(|p| names(p, true))
                && d.acl.iter().all(|p| names(p, false))
        });
        nodes_ok && index_ok
    }

    /// Takes the recorded mutations.
    pub fn take_log(&mut self) -> Vec<Mutation> {
        self.log.as_mut().map(core::mem::take).unwrap_or_default()
    }

    /// Turns recording off (while replaying) or back on.
    pub fn set_recording(&mut self, on: bool) -> bool {
        let was = self.log.is_some();
        if on && self.log.is_none() {
            self.log = Some(Vec::new());
        } else if !on {
            self.log = None;
        }
        was
    }

    /// Pushes a non-node mutation to the log, if recording.
    pub fn record(&mut self, m: Mutation) {
        if let Some(log) = &mut self.log {
            log.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists() {
        let mut n = Node::new(Arc::from(&[][..]), Perms::dom0_only());
        n.add_child("a");
        n.add_child("bb");
        n.add_child("c");
        assert!(n.remove_child("bb"));
        assert!(!n.remove_child("b"));
        assert_eq!(n.children, b"a\0c\0");
        assert_eq!(n.child_names().collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn counts_follow_owners() {
        let mut t = Tree::new(1, true);
        let base = t.count(DomId(0));
        t.put(
            "/x",
            Node::new(
                Arc::from(&b"1"[..]),
                Perms::owner(DomId(3), crate::client::Access::None),
            ),
        );
        assert_eq!(t.count(DomId(3)), 1);
        t.put("/x", Node::new(Arc::from(&b"1"[..]), Perms::dom0_only()));
        assert_eq!(t.count(DomId(3)), 0);
        assert_eq!(t.count(DomId(0)), base + 1);
        t.remove("/x");
        assert_eq!(t.count(DomId(0)), base);
        assert_eq!(t.take_log().len(), 3);
    }

    #[test]
    fn the_index_follows_owners_and_acls() {
        use crate::client::{Access, Perm};
        let mut t = Tree::new(1, false);
        let acl = |owner: u16, others: &[u16]| {
            let mut v = alloc::vec![Perm {
                dom: DomId(owner),
                access: Access::None
            }];
            v.extend(others.iter().map(|&d| Perm {
                dom: DomId(d),
                access: Access::Read,
            }));
            Perms::from_slice(&v).unwrap()
        };
        let v: Arc<[u8]> = Arc::from(&b""[..]);
        t.put("/a", Node::new(v.clone(), acl(3, &[4, 4, 5])));
        t.put("/b", Node::new(v.clone(), acl(4, &[3])));
        let sorted = |it: &mut dyn Iterator<Item = &str>| {
            let mut v: Vec<alloc::string::String> = it.map(Into::into).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&mut t.owned_by(DomId(3))), ["/a"]);
        assert_eq!(sorted(&mut t.acl_names(DomId(3))), ["/b"]);
        assert_eq!(sorted(&mut t.acl_names(DomId(4))), ["/a"]);
        assert_eq!(sorted(&mut t.owned_by(DomId(4))), ["/b"]);
        assert!(t.check_index());
        // A value change keeps the entries; a perms change moves them.
        t.put("/a", Node::new(Arc::from(&b"x"[..]), acl(3, &[4, 4, 5])));
        t.put("/b", Node::new(v, acl(5, &[])));
        assert_eq!(t.owned_by(DomId(4)).count(), 0);
        assert_eq!(t.acl_names(DomId(3)).count(), 0);
        assert_eq!(sorted(&mut t.owned_by(DomId(5))), ["/b"]);
        assert!(t.check_index());
        t.remove("/a");
        t.remove("/b");
        assert!(t.doms.keys().all(|d| *d == DomId(0)), "no empty entries");
        assert!(t.check_index());
    }

    #[test]
    fn hasher_depends_on_seed() {
        let a = SeededState::new(1).hash_one("/local/domain/1");
        let b = SeededState::new(2).hash_one("/local/domain/1");
        assert_ne!(a, b);
    }
}
