//! The replicated state machine: the `/pool` subtree of xenstore.
//!
//! Sans-IO and deterministic: every replica applies the same committed
//! [`Command`]s in log order and reaches the same [`PoolTree`]. Each node
//! carries a *revision*, the log index of the entry that last changed it
//! (its value, its permissions or its list of children). Revisions are log
//! indices, so they are the same on every replica — unlike the local
//! generation counter of `windsor_xenstore::store`, which a transaction on
//! `/pool` therefore cannot use.
//!
//! A xenstore transaction becomes one log entry, [`Command::Txn`]: the
//! revision (or absence) of every path it read or wrote when it first
//! touched it (its *read set*) and the operations it did, in order. At
//! apply time, on every replica, the read set is compared with the tree:
//! if any path changed since, the entry applies nothing and its outcome is
//! [`PoolError::Again`] (`EAGAIN`), exactly as xenstored fails a commit
//! whose touched nodes changed. Since the comparison uses only replicated
//! state, every replica reaches the same verdict.
//!
//! Permissions are stored as xenstore's wire form (`"n0\0r1\0"`), opaque
//! here: checking them against the caller stays with the daemon, which
//! knows the caller's domain (see the crate doc).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest path accepted (`XENSTORE_ABS_PATH_MAX`).
pub const MAX_PATH: usize = 3072;
/// Largest value accepted (`XENSTORE_PAYLOAD_MAX`).
pub const MAX_VALUE: usize = 4096;
/// Most operations in one transaction entry.
pub const MAX_TXN_OPS: usize = 1024;
/// The root of the replicated subtree.
pub const ROOT: &str = "/pool";
/// Permissions of nodes created without a parent to inherit from: dom0
/// owns, nobody else may read (`"n0"`).
pub const DEFAULT_PERMS: &[u8] = b"n0\0";

/// Why a command failed. The outcome is replicated: every replica sees the
/// same error for the same entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PoolError {
    /// `ENOENT`: the node does not exist.
    #[error("ENOENT: no such node")]
    NoEnt,
    /// `EAGAIN`: a transaction's read set changed before it committed.
    #[error("EAGAIN: the transaction conflicted; retry it")]
    Again,
    /// `EINVAL`: a path outside `/pool`, malformed, or too long.
    #[error("EINVAL: bad path or argument")]
    Inval,
    /// `E2BIG`: a value or a transaction over its bound.
    #[error("E2BIG: value or transaction too large")]
    TooBig,
    /// `EACCES`: the root `/pool` itself cannot be removed.
    #[error("EACCES: the pool root cannot be removed")]
    Access,
}

impl PoolError {
    /// The xenstore error name, as in the `XS_ERROR` reply.
    pub fn errno_name(&self) -> &'static str {
        match self {
            PoolError::NoEnt => "ENOENT",
            PoolError::Again => "EAGAIN",
            PoolError::Inval => "EINVAL",
            PoolError::TooBig => "E2BIG",
            PoolError::Access => "EACCES",
        }
    }
}

/// One xenstore operation on `/pool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `XS_WRITE`: create (with missing parents) or overwrite.
    Write {
        /// Absolute path under `/pool`.
        path: String,
        /// New value.
        value: Vec<u8>,
    },
    /// `XS_MKDIR`: create with an empty value if absent.
    Mkdir {
        /// Absolute path under `/pool`.
        path: String,
    },
    /// `XS_RM`: remove a node and its subtree.
    Rm {
        /// Absolute path under `/pool`.
        path: String,
    },
    /// `XS_SET_PERMS`, perms in wire form.
    SetPerms {
        /// Absolute path under `/pool`.
        path: String,
        /// Permissions as on the wire (`"n0\0r1\0"`).
        perms: Vec<u8>,
    },
}

impl Op {
    /// The path the operation names.
    pub fn path(&self) -> &str {
        match self {
            Op::Write { path, .. }
            | Op::Mkdir { path }
            | Op::Rm { path }
            | Op::SetPerms { path, .. } => path,
        }
    }
}

/// One log entry's worth of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A single operation outside a transaction.
    Op(Op),
    /// A whole xenstore transaction, validated against its read set.
    Txn {
        /// Every path the transaction touched, with its revision when it
        /// was first touched (`None`: absent then).
        reads: Vec<(String, Option<u64>)>,
        /// The operations, in the order they were issued.
        ops: Vec<Op>,
    },
}

/// What applying one entry did: the outcome the writer gets, and the paths
/// whose watches fire (on every host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `Ok` or the replicated error.
    pub result: Result<(), PoolError>,
    /// Paths changed (watch events to fire), in order.
    pub changed: Vec<String>,
}

/// A node of the replicated subtree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The value.
    pub value: Vec<u8>,
    /// Permissions in wire form.
    pub perms: Vec<u8>,
    /// Log index of the entry that last changed this node (value, perms or
    /// children); 0 for the root made at start.
    pub rev: u64,
}

/// The `/pool` subtree: paths to nodes. `/pool` itself always exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTree {
    nodes: BTreeMap<String, Node>,
}

impl Default for PoolTree {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT.to_string(),
            Node {
                value: Vec::new(),
                perms: DEFAULT_PERMS.to_vec(),
                rev: 0,
            },
        );
        PoolTree { nodes }
    }
}

/// Checks that `path` is `/pool` or below it, with xenstore's characters.
pub fn check_path(path: &str) -> Result<(), PoolError> {
    if path.len() > MAX_PATH {
        return Err(PoolError::Inval);
    }
    if path == ROOT {
        return Ok(());
    }
    let rest = path.strip_prefix("/pool/").ok_or(PoolError::Inval)?;
    if rest.is_empty() || rest.starts_with('/') || rest.ends_with('/') || rest.contains("//") {
        return Err(PoolError::Inval);
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b))
    {
        return Err(PoolError::Inval);
    }
    Ok(())
}

fn parent(path: &str) -> Option<&str> {
    if path == ROOT {
        return None;
    }
    path.rfind('/').map(|i| &path[..i])
}

impl PoolTree {
    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The revision of `path`, `None` if absent (what a transaction
    /// records in its read set).
    pub fn rev(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.rev)
    }

    /// Every node, parents before their children.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, n)| (k.as_str(), n))
    }

    /// Number of nodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Names of the direct children of `path`, sorted.
    pub fn children(&self, path: &str) -> Result<Vec<String>, PoolError> {
        check_path(path)?;
        if !self.nodes.contains_key(path) {
            return Err(PoolError::NoEnt);
        }
        let prefix = format!("{path}/");
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect())
    }

    /// Applies one committed entry at log `index`. Deterministic; a failed
    /// command leaves the tree as it was.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Outcome {
        let mut undo = Vec::new();
        let mut changed = Vec::new();
        let result = match cmd {
            Command::Op(op) => self.apply_op(index, op, &mut undo, &mut changed),
            Command::Txn { reads, ops } => {
                if ops.len() > MAX_TXN_OPS || reads.len() > MAX_TXN_OPS {
                    Err(PoolError::TooBig)
                } else if reads.iter().any(|(p, r)| self.rev(p) != *r) {
                    Err(PoolError::Again)
                } else {
                    ops.iter()
                        .try_for_each(|op| self.apply_op(index, op, &mut undo, &mut changed))
                }
            }
        };
        if result.is_err() {
            for (path, old) in undo.into_iter().rev() {
                match old {
                    Some(n) => self.nodes.insert(path, n),
                    None => self.nodes.remove(&path),
                };
            }
            changed.clear();
        }
        Outcome { result, changed }
    }

    fn save(&self, undo: &mut Vec<(String, Option<Node>)>, path: &str) {
        undo.push((path.to_string(), self.nodes.get(path).cloned()));
    }

    fn touch(&mut self, index: u64, path: &str, undo: &mut Vec<(String, Option<Node>)>) {
        self.save(undo, path);
        if let Some(n) = self.nodes.get_mut(path) {
            n.rev = index;
        }
    }

    /// Creates `path` and missing parents, each inheriting its parent's
    /// permissions as xenstored does; bumps the revision of the parent
    /// whose children changed.
    fn create(
        &mut self,
        index: u64,
        path: &str,
        undo: &mut Vec<(String, Option<Node>)>,
        changed: &mut Vec<String>,
    ) {
        if self.nodes.contains_key(path) {
            return;
        }
        let Some(p) = parent(path) else { return };
        self.create(index, p, undo, changed);
        let perms = self
            .nodes
            .get(p)
            .map_or_else(|| DEFAULT_PERMS.to_vec(), |n| n.perms.clone());
        self.touch(index, p, undo);
        self.save(undo, path);
        self.nodes.insert(
            path.to_string(),
            Node {
                value: Vec::new(),
                perms,
                rev: index,
            },
        );
        changed.push(path.to_string());
    }

    fn apply_op(
        &mut self,
        index: u64,
        op: &Op,
        undo: &mut Vec<(String, Option<Node>)>,
        changed: &mut Vec<String>,
    ) -> Result<(), PoolError> {
        check_path(op.path())?;
        match op {
            Op::Write { path, value } => {
                if value.len() > MAX_VALUE {
                    return Err(PoolError::TooBig);
                }
                self.create(index, path, undo, changed);
                self.save(undo, path);
                if let Some(n) = self.nodes.get_mut(path.as_str()) {
                    n.value.clone_from(value);
                    n.rev = index;
                }
                if changed.last() != Some(path) {
                    changed.push(path.clone());
                }
            }
            Op::Mkdir { path } => self.create(index, path, undo, changed),
            Op::Rm { path } => {
                if path == ROOT {
                    return Err(PoolError::Access);
                }
                if !self.nodes.contains_key(path.as_str()) {
                    return Err(PoolError::NoEnt);
                }
                let prefix = format!("{path}/");
                let doomed: Vec<String> = core::iter::once(path.clone())
                    .chain(
                        self.nodes
                            .range(prefix.clone()..)
                            .take_while(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, _)| k.clone()),
                    )
                    .collect();
                for d in doomed {
                    self.save(undo, &d);
                    self.nodes.remove(&d);
                }
                if let Some(p) = parent(path) {
                    self.touch(index, p, undo);
                }
                changed.push(path.clone());
            }
            Op::SetPerms { path, perms } => {
                if perms.len() > MAX_VALUE {
                    return Err(PoolError::TooBig);
                }
                self.save(undo, path);
                let n = self.nodes.get_mut(path.as_str()).ok_or(PoolError::NoEnt)?;
                n.perms.clone_from(perms);
                n.rev = index;
                changed.push(path.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str, v: &str) -> Op {
        Op::Write {
            path: p.into(),
            value: v.into(),
        }
    }

    #[test]
    fn write_creates_parents_and_bumps_revisions() {
        let mut t = PoolTree::default();
        let o = t.apply(5, &Command::Op(w("/pool/a/b", "x")));
        assert_eq!(o.result, Ok(()));
        assert_eq!(o.changed, vec!["/pool/a", "/pool/a/b"]);
        assert_eq!(t.get("/pool/a/b").unwrap().value, b"x");
        assert_eq!(t.rev("/pool/a"), Some(5));
        assert_eq!(t.rev("/pool"), Some(5));
        assert_eq!(t.children("/pool").unwrap(), vec!["a"]);
        // Overwrite bumps only the node.
        t.apply(6, &Command::Op(w("/pool/a/b", "y")));
        assert_eq!(t.rev("/pool/a/b"), Some(6));
        assert_eq!(t.rev("/pool/a"), Some(5));
    }

    #[test]
    fn paths_outside_pool_are_refused() {
        let mut t = PoolTree::default();
        for p in [
            "/local/domain/0",
            "/poolx",
            "/pool/",
            "/pool//a",
            "/pool/a b",
        ] {
            assert_eq!(
                t.apply(1, &Command::Op(w(p, "v"))).result,
                Err(PoolError::Inval),
                "{p}"
            );
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn rm_removes_the_subtree_and_not_the_root() {
        let mut t = PoolTree::default();
        t.apply(1, &Command::Op(w("/pool/a/b/c", "x")));
        t.apply(2, &Command::Op(w("/pool/ab", "x")));
        let o = t.apply(
            3,
            &Command::Op(Op::Rm {
                path: "/pool/a".into(),
            }),
        );
        assert_eq!(o.result, Ok(()));
        assert_eq!(t.children("/pool").unwrap(), vec!["ab"]);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.apply(4, &Command::Op(Op::Rm { path: ROOT.into() }))
                .result,
            Err(PoolError::Access)
        );
        assert_eq!(
            t.apply(
                5,
                &Command::Op(Op::Rm {
                    path: "/pool/a".into()
                })
            )
            .result,
            Err(PoolError::NoEnt)
        );
    }

    #[test]
    fn txn_conflicts_with_eagain_and_applies_nothing() {
        let mut t = PoolTree::default();
        t.apply(1, &Command::Op(w("/pool/x", "0")));
        // A transaction that read /pool/x at revision 1 and writes /pool/y.
        let txn = Command::Txn {
            reads: vec![
                ("/pool/x".into(), t.rev("/pool/x")),
                ("/pool/y".into(), None),
            ],
            ops: vec![w("/pool/y", "1"), w("/pool/x", "1")],
        };
        // Another writer changes /pool/x first.
        t.apply(2, &Command::Op(w("/pool/x", "2")));
        let before = t.clone();
        let o = t.apply(3, &txn);
        assert_eq!(o.result, Err(PoolError::Again));
        assert!(o.changed.is_empty());
        assert_eq!(t, before);
        // Retried with the fresh read set it commits, as one entry.
        let txn = Command::Txn {
            reads: vec![("/pool/x".into(), Some(2)), ("/pool/y".into(), None)],
            ops: vec![w("/pool/y", "1"), w("/pool/x", "1")],
        };
        assert_eq!(t.apply(4, &txn).result, Ok(()));
        assert_eq!(t.get("/pool/x").unwrap().value, b"1");
        assert_eq!(t.get("/pool/y").unwrap().value, b"1");
    }

    #[test]
    fn failing_op_in_txn_rolls_back_the_earlier_ones() {
        let mut t = PoolTree::default();
        let before = t.clone();
        let txn = Command::Txn {
            reads: vec![],
            ops: vec![
                w("/pool/new/deep", "1"),
                Op::Rm {
                    path: "/pool/missing".into(),
                },
            ],
        };
        assert_eq!(t.apply(1, &txn).result, Err(PoolError::NoEnt));
        assert_eq!(t, before);
    }

    #[test]
    fn set_perms_and_children_inherit() {
        let mut t = PoolTree::default();
        t.apply(1, &Command::Op(w("/pool/h", "")));
        t.apply(
            2,
            &Command::Op(Op::SetPerms {
                path: "/pool/h".into(),
                perms: b"n0\0r3\0".to_vec(),
            }),
        );
        t.apply(3, &Command::Op(w("/pool/h/k", "v")));
        assert_eq!(t.get("/pool/h/k").unwrap().perms, b"n0\0r3\0");
        assert_eq!(
            t.apply(
                4,
                &Command::Op(Op::SetPerms {
                    path: "/pool/none".into(),
                    perms: b"n0\0".to_vec()
                })
            )
            .result,
            Err(PoolError::NoEnt)
        );
    }
}
