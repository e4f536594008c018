//! The pool database: records kept in xenstore under `/pool/<Class>/<uuid>`,
//! one JSON document per record (field names are XAPI's).
//!
//! A record that fits one node ([`CHUNK`] bytes, most of them) is that
//! node's value: a record change is one `XS_WRITE`. A larger one (long
//! names, big `other_config` maps: up to [`crate::limits::MAX_RECORD`]) is
//! split into children `<uuid>/0`, `<uuid>/1`, ... of at most [`CHUNK`]
//! bytes each, with `chunks:<n>` as the record node's value, all written in
//! one transaction; so a record's size is bounded by its fields' limits
//! ([`crate::limits`]), not by the 4 KiB payload of `xs_wire.h`. A record
//! that shrinks back to one node leaves its old chunks until it is
//! removed (they are never read: the node's value says what it is).
//!
//! The service keeps a cache and writes through; [`load_all`] reads
//! everything back after a restart.

use alloc::string::String;
use alloc::vec::Vec;

use alloc::format;

use windsor_xenstore_client::{in_transaction, ClientError, TxId, XenStore};
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

/// Serializes a record. With `std` the buffer starts at a node's worth
/// ([`CHUNK`]): most records fit, and growing it from the 128 bytes
/// `serde_json::to_vec` starts with took five reallocations a save
/// (`serde_json` offers no writer without `std`).
pub fn encode(r: &Record) -> Vec<u8> {
    #[cfg(feature = "std")]
    {
        let mut out = Vec::with_capacity(CHUNK);
        match serde_json::to_writer(&mut out, r) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
    #[cfg(not(feature = "std"))]
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

/// The most bytes of a record in one node (a node's value quota in
/// C xenstored is 2048 bytes, value and child names together).
pub const CHUNK: usize = 2000;

/// The value of a chunked record's node.
const CHUNKED: &str = "chunks:";

/// Writes (creates or replaces) a record. Records of classes that are not
/// [persisted](Class::persisted) (tasks) are not written.
pub fn save<S: XenStore>(xs: &S, r: &Record) -> Result<(), DbError> {
    if !r.class().persisted() {
        return Ok(());
    }
    let path = layout::record(r.class(), r.uuid());
    let bytes = encode(r);
    if bytes.len() <= CHUNK {
        xs.write(TxId::NONE, &path, &bytes)?;
        return Ok(());
    }
    let n = bytes.len().div_ceil(CHUNK);
    in_transaction(xs, |tx| {
        match xs.rm(tx, &path) {
            Ok(()) | Err(ClientError::Store(Errno::ENOENT)) => {}
            Err(e) => return Err(e),
        }
        for (i, part) in bytes.chunks(CHUNK).enumerate() {
            xs.write(tx, &format!("{path}/{i}"), part)?;
        }
        xs.write(tx, &path, format!("{CHUNKED}{n}").as_bytes())
    })?;
    Ok(())
}

/// The bytes of the record at `path` (its node's value, or its chunks).
fn read_record<S: XenStore>(xs: &S, path: &str) -> Result<Option<Vec<u8>>, DbError> {
    let head = xs.read(TxId::NONE, path)?;
    let Some(n) = head.strip_prefix(CHUNKED.as_bytes()) else {
        return Ok(Some(head));
    };
    let Some(n) = core::str::from_utf8(n)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Ok(None);
    };
    if n > crate::limits::MAX_RECORD.div_ceil(CHUNK) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(n * CHUNK);
    for i in 0..n {
        match xs.read(TxId::NONE, &format!("{path}/{i}")) {
            Ok(part) => out.extend_from_slice(&part),
            Err(ClientError::Store(Errno::ENOENT)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(out))
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
            let bytes = read_record(xs, &path)?;
            match bytes.and_then(|b| decode(class, &b)) {
                Some(r) if r.uuid() == uuid => out.push(r),
                _ => bad.push(path),
            }
        }
    }
    Ok((out, bad))
}
