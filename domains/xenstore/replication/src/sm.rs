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
//! Permissions are stored in xenstore's wire form (`"n0\0r1\0"`). A
//! command wrapped in [`Command::As`] names its caller, and its operations
//! are checked against the permissions *at apply time*, on every replica
//! (write on the node, or on its nearest existing ancestor to create it;
//! ownership to set permissions), so a permission change ordered before
//! an operation is honoured everywhere; nodes an unprivileged caller
//! creates are owned by it, as in xenstored. A bare command is the
//! privileged toolstack's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use windsor_xenstore::perms::{Perms, Who};
use xen::DomId;

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
    /// `EACCES`: the caller lacks the permission, or tried to remove the
    /// root `/pool`.
    #[error("EACCES: permission denied")]
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

/// Who issued a command, for the permission checks at apply time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The caller's domain.
    pub dom: u16,
    /// dom0 or the privileged domain: bypasses permissions.
    pub privileged: bool,
    /// Set by `XS_SET_TARGET`: the caller acts for this domain too.
    pub target: Option<u16>,
}

impl Caller {
    fn who(&self) -> Who {
        Who {
            dom: DomId(self.dom),
            privileged: self.privileged,
            target: self.target.map(DomId),
        }
    }
}

/// One log entry's worth of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `cmd` on behalf of `caller`, checked against the permissions of
    /// the nodes at apply time (`EACCES`).
    As {
        /// Who asks.
        caller: Caller,
        /// What (an `As` inside is refused with `EINVAL`).
        cmd: Box<Command>,
    },
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
        let (who, cmd) = match cmd {
            Command::As { caller, cmd } => (Some(caller.who()), &**cmd),
            c => (None, c),
        };
        let result = match cmd {
            Command::As { .. } => Err(PoolError::Inval),
            Command::Op(op) => self.apply_op(index, op, who.as_ref(), &mut undo, &mut changed),
            Command::Txn { reads, ops } => {
                if ops.len() > MAX_TXN_OPS || reads.len() > MAX_TXN_OPS {
                    Err(PoolError::TooBig)
                } else if reads.iter().any(|(p, r)| self.rev(p) != *r) {
                    Err(PoolError::Again)
                } else {
                    ops.iter().try_for_each(|op| {
                        self.apply_op(index, op, who.as_ref(), &mut undo, &mut changed)
                    })
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
        who: Option<&Who>,
        undo: &mut Vec<(String, Option<Node>)>,
        changed: &mut Vec<String>,
    ) {
        if self.nodes.contains_key(path) {
            return;
        }
        let Some(p) = parent(path) else { return };
        self.create(index, p, who, undo, changed);
        let mut perms = self
            .nodes
            .get(p)
            .map_or_else(|| DEFAULT_PERMS.to_vec(), |n| n.perms.clone());
        if let Some(w) = who.filter(|w| !w.privileged) {
            // An unprivileged creator owns what it creates.
            if let Ok(pp) = Perms::parse(&perms) {
                perms.clear();
                pp.with_owner(w.dom).emit(&mut perms);
            }
        }
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

    /// The caller's rights on `path`, or on its nearest existing ancestor
    /// if it does not exist (what creating it needs).
    fn rights(&self, who: &Who, path: &str) -> windsor_xenstore::perms::Rights {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return Perms::parse(&n.perms)
                    .map(|pp| pp.rights(who))
                    .unwrap_or_default();
            }
            match parent(p) {
                Some(q) => p = q,
                None => return Default::default(),
            }
        }
    }

    fn check(&self, who: Option<&Who>, op: &Op) -> Result<(), PoolError> {
        let Some(who) = who else { return Ok(()) };
        let r = self.rights(who, op.path());
        let exists = self.nodes.contains_key(op.path());
        let ok = match op {
            Op::Write { .. } | Op::Rm { .. } => r.write,
            Op::Mkdir { .. } => exists || r.write,
            // Absent: `ENOENT` from the operation itself.
            Op::SetPerms { .. } => !exists || r.owner,
        };
        if ok {
            Ok(())
        } else {
            Err(PoolError::Access)
        }
    }

    fn apply_op(
        &mut self,
        index: u64,
        op: &Op,
        who: Option<&Who>,
        undo: &mut Vec<(String, Option<Node>)>,
        changed: &mut Vec<String>,
    ) -> Result<(), PoolError> {
        check_path(op.path())?;
        self.check(who, op)?;
        match op {
            Op::Write { path, value } => {
                if value.len() > MAX_VALUE {
                    return Err(PoolError::TooBig);
                }
                self.create(index, path, who, undo, changed);
                self.save(undo, path);
                if let Some(n) = self.nodes.get_mut(path.as_str()) {
                    n.value.clone_from(value);
                    n.rev = index;
                }
                if changed.last() != Some(path) {
                    changed.push(path.clone());
                }
            }
            Op::Mkdir { path } => self.create(index, path, who, undo, changed),
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
                if Perms::parse(perms).is_err() {
                    return Err(PoolError::Inval);
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
    fn callers_are_checked_at_apply_time() {
        let as_dom = |dom: u16, cmd: Command| Command::As {
            caller: Caller {
                dom,
                privileged: false,
                target: None,
            },
            cmd: Box::new(cmd),
        };
        let mut t = PoolTree::default();
        // The toolstack makes /pool/guest writable by domain 5.
        t.apply(1, &Command::Op(w("/pool/guest", "")));
        let give = Command::Op(Op::SetPerms {
            path: "/pool/guest".into(),
            perms: b"n0\0b5\0".to_vec(),
        });
        // Before the grant is applied, domain 5 is refused everywhere.
        let deny = t.apply(2, &as_dom(5, Command::Op(w("/pool/guest/x", "1"))));
        assert_eq!(deny.result, Err(PoolError::Access));
        assert_eq!(t.apply(3, &give).result, Ok(()));
        let ok = t.apply(4, &as_dom(5, Command::Op(w("/pool/guest/x", "1"))));
        assert_eq!(ok.result, Ok(()));
        // It owns what it created; domain 6 may not touch it.
        assert_eq!(t.get("/pool/guest/x").unwrap().perms, b"n5\0b5\0");
        assert_eq!(
            t.apply(5, &as_dom(6, Command::Op(w("/pool/guest/x", "2"))))
                .result,
            Err(PoolError::Access)
        );
        // Only the owner sets permissions; bad permission strings are refused.
        let setp = |p: &[u8]| {
            Command::Op(Op::SetPerms {
                path: "/pool/guest".into(),
                perms: p.to_vec(),
            })
        };
        assert_eq!(
            t.apply(6, &as_dom(5, setp(b"n5\0"))).result,
            Err(PoolError::Access)
        );
        assert_eq!(t.apply(7, &setp(b"zz")).result, Err(PoolError::Inval));
        // Nor may it remove the root.
        assert_eq!(
            t.apply(8, &as_dom(5, Command::Op(Op::Rm { path: ROOT.into() })))
                .result,
            Err(PoolError::Access)
        );
        // Nested callers are refused.
        let nested = as_dom(0, as_dom(5, Command::Op(w("/pool/guest/y", "1"))));
        assert_eq!(t.apply(9, &nested).result, Err(PoolError::Inval));
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
