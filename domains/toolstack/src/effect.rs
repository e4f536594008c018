//! What the [`Engine`](crate::engine::Engine) asks its executor to do:
//! pool-database writes, and xenstore transactions for a domain's nodes.
//!
//! The engine has already changed its own state when it hands out an
//! effect; the executor makes the outside world follow (the host-mode
//! service over a xenstore client, Xen mode's dom0 over its xenbus ring).

use alloc::string::String;
use alloc::vec::Vec;

use windsor_xenstore_client::{in_transaction, ClientError, Perm, XenStore};
use xen::Errno;

use crate::action::Class;

/// One thing to do outside the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write record `(class, uuid)` to the pool database, as the engine
    /// holds it when the effect is applied (gone by then: skip it).
    Save(Class, String),
    /// Remove record `(class, uuid)` from the pool database.
    Remove(Class, String),
    /// Discard the saved (suspend) image of VM `uuid`.
    DropImage(String),
    /// Create a sparse raw disk image file of `size` bytes (a new VDI).
    CreateDisk {
        /// Its path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Remove a VDI's image file (a missing file is not an error).
    RemoveDisk(String),
}

/// One xenstore operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsOp {
    /// `XS_WRITE path value`.
    Write(String, Vec<u8>),
    /// `XS_SET_PERMS path perms`.
    SetPerms(String, Vec<Perm>),
    /// `XS_RM path`; a missing node is not an error.
    Rm(String),
}

/// The operations of one xenstore transaction, in order: a domain's whole
/// `/local/domain/<id>` tree and its devices at start, or their removal
/// at teardown. The executor commits them together (retrying on `EAGAIN`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XsTransaction {
    /// The operations.
    pub ops: Vec<XsOp>,
}

impl XsTransaction {
    /// `XS_WRITE`.
    pub fn write(&mut self, path: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.ops.push(XsOp::Write(path.into(), value.into()));
    }

    /// `XS_SET_PERMS`.
    pub fn set_perms(&mut self, path: impl Into<String>, perms: &[Perm]) {
        self.ops.push(XsOp::SetPerms(path.into(), perms.to_vec()));
    }

    /// `XS_RM`, tolerating absence.
    pub fn rm(&mut self, path: impl Into<String>) {
        self.ops.push(XsOp::Rm(path.into()));
    }

    /// The value written at `path` by this transaction, if any (tests).
    pub fn written(&self, path: &str) -> Option<&[u8]> {
        self.ops.iter().rev().find_map(|o| match o {
            XsOp::Write(p, v) if p == path => Some(v.as_slice()),
            _ => None,
        })
    }
}

/// Commits `tx` through any xenstore client in one transaction (retried
/// on `EAGAIN`, see [`in_transaction`]): what every executor does with an
/// engine's [`XsTransaction`].
pub fn commit<X: XenStore + ?Sized>(xs: &X, tx: &XsTransaction) -> Result<(), ClientError> {
    in_transaction(xs, |t| {
        for op in &tx.ops {
            match op {
                XsOp::Write(p, v) => xs.write(t, p, v)?,
                XsOp::SetPerms(p, perms) => xs.set_perms(t, p, perms)?,
                XsOp::Rm(p) => match xs.rm(t, p) {
                    Ok(()) | Err(ClientError::Store(Errno::ENOENT)) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(())
    })
}
