//! The committed tree: nodes keyed by canonical path, per-owner node
//! counts, the generation counter and the mutation log hook.
//!
//! Every change to the committed tree goes through [`Tree::put`] and
//! [`Tree::remove`], which bump generations, keep the per-domain node
//! counts (charged to each node's owner, as xenstored does) and, when
//! enabled, record a [`Mutation`](super::Mutation) for persistence.
//!
//! Nodes live in a `hashbrown` map with a seeded hasher: paths come from
//! guests, so the seed (from [`Config::hash_seed`](super::Config)) keeps
//! them from choosing colliding keys cheaply.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};

use hashbrown::HashMap;
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

/// The committed tree.
#[derive(Debug)]
pub struct Tree {
    nodes: Map<Box<str>, Node>,
    counts: Map<DomId, u32>,
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
            counts: HashMap::with_hasher(SeededState::new(seed.rotate_left(17))),
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
        self.counts.get(&dom).copied().unwrap_or(0)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn charge(&mut self, dom: DomId, up: bool) {
        let c = self.counts.entry(dom).or_insert(0);
        if up {
            *c = c.saturating_add(1);
        } else {
            *c = c.saturating_sub(1);
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
        let new_owner = node.perms.owner_dom();
        match self.nodes.get_mut(path) {
            Some(old) => {
                let old_owner = old.perms.owner_dom();
                *old = node;
                if old_owner != new_owner {
                    self.charge(old_owner, false);
                    self.charge(new_owner, true);
                }
            }
            None => {
                self.nodes.insert(path.into(), node);
                self.charge(new_owner, true);
            }
        }
    }

    /// Removes one node (not its children; callers walk subtrees).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let n = self.nodes.remove(path)?;
        self.gen += 1;
        if let Some(log) = &mut self.log {
            log.push(Mutation::Remove { path: path.into() });
        }
        self.charge(n.perms.owner_dom(), false);
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
    fn hasher_depends_on_seed() {
        let a = SeededState::new(1).hash_one("/local/domain/1");
        let b = SeededState::new(2).hash_one("/local/domain/1");
        assert_ne!(a, b);
    }
}
