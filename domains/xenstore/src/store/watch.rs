//! Watches: who watches which path, indexed for firing.
//!
//! A fired path looks up itself and each of its ancestors in the index
//! (an event for `/a/b/c` goes to watches on `/a/b/c`, `/a/b`, `/a`, `/`),
//! so firing costs the depth of the path, not the number of watches.
//! Whether a watcher may see the event is decided by the store
//! (XSA-115): it needs read access to the node, its old permissions, or
//! its parent, as `watch_permitted` in `xenstored_watch.c`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::tree::{Map, SeededState};
use super::ConnId;

/// One watch of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Canonical path or special name (`@introduceDomain`).
    pub path: Arc<[u8]>,
    /// The caller's token (any bytes but NUL).
    pub token: Arc<[u8]>,
    /// Bytes of `/local/domain/<id>` to strip from event paths for a watch
    /// set with a relative path; 0 for absolute ones.
    pub rel: usize,
}

/// A watch as the index stores it.
#[derive(Clone, Debug)]
pub(crate) struct WatchRef {
    pub conn: ConnId,
    pub token: Arc<[u8]>,
    pub rel: usize,
}

/// Path → watches on exactly that path.
#[derive(Debug)]
pub(crate) struct WatchIndex {
    by_path: Map<Arc<[u8]>, Vec<WatchRef>>,
    total: usize,
}

impl WatchIndex {
    pub fn new(seed: u64) -> Self {
        WatchIndex {
            by_path: Map::with_hasher(SeededState::new(seed.rotate_left(29))),
            total: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// `path` as an `Arc`, shared with the index's key if the path is
    /// watched already (many connections watching one path hold one copy).
    pub fn intern(&self, path: &[u8]) -> Arc<[u8]> {
        match self.by_path.get_key_value(path) {
            Some((k, _)) => k.clone(),
            None => Arc::from(path),
        }
    }

    pub fn add(&mut self, conn: ConnId, w: &Watch) {
        self.by_path
            .entry(w.path.clone())
            .or_default()
            .push(WatchRef {
                conn,
                token: w.token.clone(),
                rel: w.rel,
            });
        self.total += 1;
    }

    pub fn remove(&mut self, conn: ConnId, w: &Watch) {
        if let Some(v) = self.by_path.get_mut(&w.path[..]) {
            if let Some(i) = v.iter().position(|r| r.conn == conn && r.token == w.token) {
                v.swap_remove(i);
                self.total -= 1;
            }
            if v.is_empty() {
                self.by_path.remove(&w.path[..]);
            }
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&[WatchRef]> {
        self.by_path.get(path).map(|v| &v[..])
    }
}

/// Ancestors of a node path, itself first, `/` last.
pub(crate) fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    core::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" {
            None
        } else {
            Some(crate::path::parent(cur))
        };
        Some(cur)
    })
}

/// A pending watch firing, produced by an operation.
#[derive(Clone, Debug)]
pub(crate) struct Fire {
    pub path: Box<str>,
    pub exact: bool,
    /// Permissions before a `SET_PERMS`, or at transaction start.
    pub old: Option<crate::perms::Perms>,
    /// The node's permissions when it is deleted by the firing operation.
    pub node: Option<crate::perms::Perms>,
    /// Its parent's, likewise.
    pub parent: Option<crate::perms::Perms>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors() {
        let v: Vec<_> = self_and_ancestors("/a/b").collect();
        assert_eq!(v, ["/a/b", "/a", "/"]);
        let v: Vec<_> = self_and_ancestors("/").collect();
        assert_eq!(v, ["/"]);
    }

    #[test]
    fn index_add_remove() {
        let mut ix = WatchIndex::new(0);
        let w = Watch {
            path: Arc::from(&b"/a"[..]),
            token: Arc::from(&b"t"[..]),
            rel: 0,
        };
        ix.add(ConnId(1), &w);
        ix.add(ConnId(2), &w);
        assert_eq!(ix.get(b"/a").unwrap().len(), 2);
        ix.remove(ConnId(1), &w);
        assert_eq!(ix.get(b"/a").unwrap()[0].conn, ConnId(2));
        ix.remove(ConnId(2), &w);
        assert!(ix.get(b"/a").is_none());
        assert!(ix.is_empty());
    }
}
