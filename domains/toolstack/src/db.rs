//! The pool database: records kept in xenstore under `/pool/<Class>/<uuid>`,
//! one JSON document per record (field names are XAPI's).
//!
//! One node per record keeps a record change to one `XS_WRITE`; a record is
//! well under the 4 KiB payload limit of `xs_wire.h`. The service keeps a
//! cache and writes through; [`load_all`] reads everything back after a
//! restart.

use alloc::string::String;
use alloc::vec::Vec;

use windsor_xenstore_client::{ClientError, TxId, XenStore};
use xen::Errno;

use crate::action::{Class, Record};
use crate::layout;

/// Why the database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store failed.
    #[error("xenstore: {0}")]
    Store(#[from] ClientError),
    /// A record node does not hold a record of its class.
    #[error("bad record at {path}")]
    Corrupt {
        /// The node.
        path: String,
    },
}

/// Serializes a record.
pub fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

/// Parses a record of `class`.
pub fn decode(class: Class, bytes: &[u8]) -> Option<Record> {
    use serde_json::from_slice as p;
    Some(match class {
        Class::Vm => Record::Vm(p(bytes).ok()?),
        Class::Host => Record::Host(p(bytes).ok()?),
        Class::Pool => Record::Pool(p(bytes).ok()?),
        Class::Network => Record::Network(p(bytes).ok()?),
        Class::Sr => Record::Sr(p(bytes).ok()?),
        Class::Vdi => Record::Vdi(p(bytes).ok()?),
        Class::Vif => Record::Vif(p(bytes).ok()?),
        Class::Vbd => Record::Vbd(p(bytes).ok()?),
        Class::Pbd => Record::Pbd(p(bytes).ok()?),
        Class::Pif => Record::Pif(p(bytes).ok()?),
        Class::Task => Record::Task(p(bytes).ok()?),
    })
}

/// Writes (creates or replaces) a record. Records of classes that are not
/// [persisted](Class::persisted) (tasks) are not written.
pub fn save<S: XenStore>(xs: &S, r: &Record) -> Result<(), DbError> {
    if !r.class().persisted() {
        return Ok(());
    }
    xs.write(TxId::NONE, &layout::record(r.class(), r.uuid()), &encode(r))?;
    Ok(())
}

/// Removes a record.
pub fn remove<S: XenStore>(xs: &S, class: Class, uuid: &str) -> Result<(), DbError> {
    if !class.persisted() {
        return Ok(());
    }
    match xs.rm(TxId::NONE, &layout::record(class, uuid)) {
        Ok(()) | Err(ClientError::Store(Errno::ENOENT)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads every record of every persisted class. Unparsable nodes are skipped and
/// reported (a damaged record must not stop the host from coming up).
pub fn load_all<S: XenStore>(xs: &S) -> Result<(Vec<Record>, Vec<String>), DbError> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for class in Class::ALL.into_iter().filter(|c| c.persisted()) {
        let names = match xs.directory(TxId::NONE, &layout::class_dir(class)) {
            Ok(n) => n,
            Err(ClientError::Store(Errno::ENOENT)) => continue,
            Err(e) => return Err(e.into()),
        };
        for uuid in names {
            let path = layout::record(class, &uuid);
            let bytes = xs.read(TxId::NONE, &path)?;
            match decode(class, &bytes) {
                Some(r) if r.uuid() == uuid => out.push(r),
                _ => bad.push(path),
            }
        }
    }
    Ok((out, bad))
}
