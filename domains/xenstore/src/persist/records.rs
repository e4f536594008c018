//! The encoding of the store's [`Mutation`]s in log records and snapshots.
//!
//! One log record is the postcard encoding of a `Vec<Rec>`: every mutation
//! of one request (a transaction commit is one record, so it is replayed
//! whole or not at all). A snapshot is a `Vec<Rec>` of `Write`s, parents
//! before children and siblings in creation order, so that replaying it
//! with [`Store::apply`] rebuilds the same tree, `XS_DIRECTORY` order
//! included. Permissions travel in their wire form (`b0\0r5\0`).

extern crate std;

use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use xen::DomId;

use crate::perms::Perms;
use crate::store::{Mutation, Store};

/// A [`Mutation`] in a serializable shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rec {
    /// [`Mutation::Write`].
    Write {
        /// Canonical path.
        path: String,
        /// Value.
        value: Vec<u8>,
        /// Permissions, wire form.
        perms: Vec<u8>,
    },
    /// [`Mutation::Remove`].
    Remove {
        /// Canonical path.
        path: String,
    },
    /// [`Mutation::SpecialPerms`].
    SpecialPerms {
        /// `@introduceDomain` or `@releaseDomain`.
        path: String,
        /// Permissions, wire form.
        perms: Vec<u8>,
    },
    /// [`Mutation::Introduce`].
    Introduce {
        /// Domain.
        domid: u16,
        /// Ring frame.
        gfn: u64,
        /// Event channel port.
        port: u32,
    },
    /// [`Mutation::Release`].
    Release {
        /// Domain.
        domid: u16,
    },
    /// [`Mutation::SetTarget`].
    SetTarget {
        /// Domain.
        domid: u16,
        /// Its target.
        target: u16,
    },
}

/// Why a record could not be turned back into mutations.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a postcard `Vec<Rec>`.
    #[error("record does not decode: {0}")]
    Postcard(#[from] postcard::Error),
    /// A permission list in the record is malformed.
    #[error("malformed permissions in record for {0}")]
    Perms(String),
}

fn perms_bytes(p: &Perms) -> Vec<u8> {
    let mut v = Vec::new();
    p.emit(&mut v);
    v
}

impl From<&Mutation> for Rec {
    fn from(m: &Mutation) -> Self {
        match m {
            Mutation::Write { path, value, perms } => Rec::Write {
                path: String::from(&**path),
                value: value.to_vec(),
                perms: perms_bytes(perms),
            },
            Mutation::Remove { path } => Rec::Remove {
                path: String::from(&**path),
            },
            Mutation::SpecialPerms { path, perms } => Rec::SpecialPerms {
                path: String::from(&**path),
                perms: perms_bytes(perms),
            },
            Mutation::Introduce { domid, gfn, port } => Rec::Introduce {
                domid: domid.0,
                gfn: *gfn,
                port: *port,
            },
            Mutation::Release { domid } => Rec::Release { domid: domid.0 },
            Mutation::SetTarget { domid, target } => Rec::SetTarget {
                domid: domid.0,
                target: target.0,
            },
        }
    }
}

impl Rec {
    /// Back to a [`Mutation`].
    pub fn to_mutation(&self) -> Result<Mutation, DecodeError> {
        let perms = |path: &str, p: &[u8]| {
            Perms::parse(p).map_err(|_| DecodeError::Perms(String::from(path)))
        };
        Ok(match self {
            Rec::Write {
                path,
                value,
                perms: p,
            } => Mutation::Write {
                path: path.as_str().into(),
                value: Arc::from(value.as_slice()),
                perms: perms(path, p)?,
            },
            Rec::Remove { path } => Mutation::Remove {
                path: path.as_str().into(),
            },
            Rec::SpecialPerms { path, perms: p } => Mutation::SpecialPerms {
                path: path.as_str().into(),
                perms: perms(path, p)?,
            },
            Rec::Introduce { domid, gfn, port } => Mutation::Introduce {
                domid: DomId(*domid),
                gfn: *gfn,
                port: *port,
            },
            Rec::Release { domid } => Mutation::Release {
                domid: DomId(*domid),
            },
            Rec::SetTarget { domid, target } => Mutation::SetTarget {
                domid: DomId(*domid),
                target: DomId(*target),
            },
        })
    }
}

/// Encodes one request's mutations as a log record.
pub fn encode(ms: &[Mutation]) -> Vec<u8> {
    let recs: Vec<Rec> = ms.iter().map(Rec::from).collect();
    postcard::to_allocvec(&recs).unwrap_or_default()
}

/// Decodes a log record or a snapshot.
pub fn decode(bytes: &[u8]) -> Result<Vec<Mutation>, DecodeError> {
    let recs: Vec<Rec> = postcard::from_bytes(bytes)?;
    recs.iter().map(Rec::to_mutation).collect()
}

/// The whole tree as a snapshot (see the module docs).
pub fn snapshot(store: &Store) -> Vec<u8> {
    let tree = store.tree();
    let mut recs = Vec::with_capacity(tree.len());
    let mut stack = std::vec![String::from("/")];
    while let Some(path) = stack.pop() {
        let Some(node) = tree.get(&path) else {
            continue;
        };
        let first_child = stack.len();
        for name in node.child_names() {
            stack.push(crate::path::join(&path, name));
        }
        // Pop children in creation order.
        stack[first_child..].reverse();
        recs.push(Rec::Write {
            value: node.value.to_vec(),
            perms: perms_bytes(&node.perms),
            path,
        });
    }
    postcard::to_allocvec(&recs).unwrap_or_default()
}
