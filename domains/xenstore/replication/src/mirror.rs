//! The seam with the xenstore daemon: mirroring the replicated `/pool`
//! into a host's local [`windsor_xenstore::Store`].
//!
//! Every host's daemon keeps serving reads of `/pool` from its own tree,
//! which this module keeps in step with the replicated one: for each
//! entry of the applied-entry stream ([`crate::storage::Applied`]) it
//! gives the [`Mutation`]s that bring the local nodes to the replicated
//! state ([`Store::apply`](windsor_xenstore::Store::apply) takes them) and
//! the paths whose watches the daemon fires. The mirror copies the
//! *current* replicated state of each changed path, so it converges even
//! if it runs behind the stream; a snapshot install (`changed == ["/pool"]`)
//! resends the whole subtree.
//!
//! The daemon side is [`crate::xenstored`]: it routes `/pool` mutations
//! to the replicated log (as [`crate::sm::Command::As`] with the caller's
//! domain, so permissions are checked at apply time on every replica) and
//! hands each [`MirrorStep`] to the daemon's loop, which applies it with
//! `Store::apply_external` (mutations unlogged, watches fired). Linearizable
//! reads of `/pool` go to the leader (`ClientRequest::Read`); the local
//! mirror is for watches and for reads that accept the host's applied
//! state.

use std::sync::Arc;

use windsor_xenstore::perms::Perms;
use windsor_xenstore::Mutation;

use crate::sm::{PoolTree, ROOT};
use crate::storage::Applied;

/// True for `/pool` and the paths below it: the replicated subtree.
pub fn is_pool_path(path: &str) -> bool {
    path == ROOT || path.starts_with("/pool/")
}

/// What the daemon does for one applied entry.
#[derive(Debug, Default)]
pub struct MirrorStep {
    /// Mutations for [`windsor_xenstore::Store::apply`], in order.
    pub mutations: Vec<Mutation>,
    /// Paths whose watches fire.
    pub fire: Vec<String>,
    /// Replicated revisions of the changed nodes and of their parents
    /// (whose children changed), `None` for a removed node: what the
    /// daemon's transactions record in their read sets.
    pub revs: Vec<(String, Option<u64>)>,
}

fn write_of(path: &str, n: &crate::sm::Node) -> Mutation {
    Mutation::Write {
        path: path.into(),
        value: Arc::from(n.value.as_slice()),
        perms: Perms::parse(&n.perms).unwrap_or_else(|_| Perms::dom0_only()),
    }
}

/// The local mutations and watch events for `ev`, read from `tree` (the
/// replicated state as applied on this host).
pub fn step(ev: &Applied, tree: &PoolTree) -> MirrorStep {
    let mut out = MirrorStep::default();
    if ev.changed.iter().any(|p| p == ROOT) {
        // A snapshot (or the root itself): resend everything.
        out.mutations.push(Mutation::Remove { path: ROOT.into() });
        out.mutations
            .extend(tree.iter().map(|(p, n)| write_of(p, n)));
        out.fire.push(ROOT.to_string());
        out.revs.push((ROOT.to_string(), None));
        out.revs
            .extend(tree.iter().map(|(p, n)| (p.to_string(), Some(n.rev))));
        return out;
    }
    for p in &ev.changed {
        match tree.get(p) {
            Some(n) => {
                out.mutations.push(write_of(p, n));
                out.revs.push((p.clone(), Some(n.rev)));
            }
            None => {
                out.mutations.push(Mutation::Remove {
                    path: p.as_str().into(),
                });
                out.revs.push((p.clone(), None));
            }
        }
        if let Some(parent) = p.rfind('/').map(|i| &p[..i]).filter(|q| is_pool_path(q)) {
            if let Some(n) = tree.get(parent) {
                out.revs.push((parent.to_string(), Some(n.rev)));
            }
        }
        out.fire.push(p.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm::{Command, Op};
    use windsor_xenstore::{Config, Store};

    fn apply(tree: &mut PoolTree, store: &mut Store, index: u64, op: Op) -> MirrorStep {
        let o = tree.apply(index, &Command::Op(op));
        assert_eq!(o.result, Ok(()));
        let s = step(
            &Applied {
                index,
                changed: o.changed,
            },
            tree,
        );
        for m in &s.mutations {
            store.apply(m);
        }
        s
    }

    fn local(store: &Store, p: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        store.tree().get(p).map(|n| {
            let mut perms = Vec::new();
            n.perms.emit(&mut perms);
            (n.value.to_vec(), perms)
        })
    }

    #[test]
    fn local_store_follows_the_replicated_tree() {
        let mut tree = PoolTree::default();
        let mut store = Store::new(Config::default());
        let s = apply(
            &mut tree,
            &mut store,
            1,
            Op::Write {
                path: "/pool/host/h1/name".into(),
                value: b"alpha".to_vec(),
            },
        );
        assert_eq!(
            s.fire,
            vec!["/pool/host", "/pool/host/h1", "/pool/host/h1/name"]
        );
        assert_eq!(local(&store, "/pool/host/h1/name").unwrap().0, b"alpha");
        apply(
            &mut tree,
            &mut store,
            2,
            Op::SetPerms {
                path: "/pool/host/h1/name".into(),
                perms: b"n0\0r5\0".to_vec(),
            },
        );
        assert_eq!(local(&store, "/pool/host/h1/name").unwrap().1, b"n0\0r5\0");
        let s = apply(
            &mut tree,
            &mut store,
            3,
            Op::Rm {
                path: "/pool/host/h1".into(),
            },
        );
        assert_eq!(s.fire, vec!["/pool/host/h1"]);
        assert!(local(&store, "/pool/host/h1").is_none());
        // The removed node goes, and its parent's revision moves on.
        assert_eq!(
            s.revs,
            vec![
                ("/pool/host/h1".to_string(), None),
                ("/pool/host".to_string(), Some(3))
            ]
        );
        assert!(local(&store, "/pool/host/h1/name").is_none());
        assert!(local(&store, "/pool/host").is_some());
        assert!(store.check_consistency());
    }

    #[test]
    fn snapshot_resends_the_subtree() {
        let mut tree = PoolTree::default();
        tree.apply(
            1,
            &Command::Op(Op::Write {
                path: "/pool/a/b".into(),
                value: b"1".to_vec(),
            }),
        );
        let mut store = Store::new(Config::default());
        // A stale local node the snapshot no longer has.
        store.apply(&Mutation::Write {
            path: "/pool/stale".into(),
            value: Arc::from(&b"x"[..]),
            perms: Perms::dom0_only(),
        });
        let s = step(
            &Applied {
                index: 1,
                changed: vec![ROOT.into()],
            },
            &tree,
        );
        for m in &s.mutations {
            store.apply(m);
        }
        assert!(local(&store, "/pool/stale").is_none());
        assert_eq!(local(&store, "/pool/a/b").unwrap().0, b"1");
        assert!(is_pool_path("/pool/a") && is_pool_path("/pool"));
        assert!(!is_pool_path("/poolx") && !is_pool_path("/local/domain/0"));
    }
}
