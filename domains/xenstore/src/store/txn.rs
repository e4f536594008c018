//! Transactions as overlays with generation checks.
//!
//! A transaction never copies the tree. The first time it touches a path
//! (read or write) it records the node's committed generation (or that the
//! node was absent) and its permissions; writes and deletes go to an
//! overlay keyed by path. At commit every touched path is checked against
//! the committed tree: if any generation differs, the commit fails with
//! `EAGAIN` and nothing is applied. Otherwise the overlay is written back
//! in path order (parents before children), each node with a fresh
//! generation, and the queued watch events fire. This is the scheme of
//! `xenstored_transaction.c` (4.17) without its per-transaction TDB copy.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

use xen::Errno;

use super::tree::{Node, Tree};
use crate::perms::Perms;

/// What a transaction knows about one path.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Committed generation when first touched; `None`: absent then.
    pub orig_gen: Option<u64>,
    /// Committed permissions when first touched (for watch checks).
    pub orig_perms: Option<Perms>,
    /// The committed node when first touched (what reads see until the
    /// transaction writes it).
    pub orig: Option<Node>,
    /// `None`: only read. `Some(None)`: deleted. `Some(Some(n))`: written.
    pub state: Option<Option<Node>>,
    /// A watch event to fire at commit; `Some(true)` if exact.
    pub fire: Option<bool>,
}

/// One open transaction of a connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Txn {
    pub entries: BTreeMap<Box<str>, Entry>,
    /// Set when an operation inside hit a quota: the commit must fail.
    pub failed: bool,
    /// Nodes created inside (for the node quota at commit).
    pub created: u32,
    /// Bytes written into the overlay so far.
    pub bytes: usize,
}

impl Txn {
    /// Records the first access to `path`: its generation (or absence) and
    /// a copy of the node, so that later reads in the transaction see what
    /// the first one saw, as in xenstored. Unprivileged transactions may
    /// touch at most `max_nodes` paths (`quota_trans_nodes`, XSA-326);
    /// every transaction holds at most `max_bytes` of copies and writes
    /// (the caller's budget: the quota, the connection's and the store's
    /// bounds on transaction memory).
    pub fn touch(
        &mut self,
        tree: &Tree,
        path: &str,
        unlimited: bool,
        max_nodes: usize,
        max_bytes: usize,
    ) -> Result<&mut Entry, Errno> {
        if !self.entries.contains_key(path) {
            if !unlimited && self.entries.len() >= max_nodes {
                self.failed = true;
                return Err(Errno::ENOSPC);
            }
            let n = tree.get(path);
            if let Some(n) = n {
                self.bytes = self
                    .bytes
                    .saturating_add(n.value.len() + n.children.len() + path.len());
                if self.bytes > max_bytes {
                    self.failed = true;
                    return Err(Errno::ENOSPC);
                }
            }
            self.entries.insert(
                path.into(),
                Entry {
                    orig_gen: n.map(|n| n.gen),
                    orig_perms: n.map(|n| n.perms.clone()),
                    orig: n.cloned(),
                    state: None,
                    fire: None,
                },
            );
        }
        self.entries.get_mut(path).ok_or(Errno::EIO)
    }

    /// True if every touched path is unchanged in `tree`.
    pub fn validate(&self, tree: &Tree) -> bool {
        self.entries
            .iter()
            .all(|(p, e)| tree.gen_of(p) == e.orig_gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;

    fn node() -> Node {
        Node::new(Arc::from(&b"v"[..]), Perms::dom0_only())
    }

    #[test]
    fn touch_records_first_sight_and_validate_compares() {
        let mut tree = Tree::new(0, false);
        tree.put("/a", node());
        let mut t = Txn::default();
        let g = t
            .touch(&tree, "/a", false, 10, usize::MAX)
            .unwrap()
            .orig_gen;
        assert_eq!(g, tree.gen_of("/a"));
        assert_eq!(
            t.touch(&tree, "/nope", false, 10, usize::MAX)
                .unwrap()
                .orig_gen,
            None
        );
        assert!(t.validate(&tree));
        // Touching again keeps the first generation.
        tree.put("/a", node());
        assert_eq!(
            t.touch(&tree, "/a", false, 10, usize::MAX)
                .unwrap()
                .orig_gen,
            g
        );
        assert!(!t.validate(&tree));
    }

    #[test]
    fn absent_nodes_conflict_when_created() {
        let mut tree = Tree::new(0, false);
        let mut t = Txn::default();
        t.touch(&tree, "/x", false, 10, usize::MAX).unwrap();
        tree.put("/x", node());
        assert!(!t.validate(&tree));
    }

    #[test]
    fn touch_limit_fails_the_transaction() {
        let tree = Tree::new(0, false);
        let mut t = Txn::default();
        t.touch(&tree, "/a", false, 1, usize::MAX).unwrap();
        assert_eq!(
            t.touch(&tree, "/b", false, 1, usize::MAX).err(),
            Some(Errno::ENOSPC)
        );
        assert!(t.failed);
        // Privileged callers are not limited.
        let mut t = Txn::default();
        t.touch(&tree, "/a", true, 1, usize::MAX).unwrap();
        t.touch(&tree, "/b", true, 1, usize::MAX).unwrap();
        assert!(!t.failed);
    }
}
