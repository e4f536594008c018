//! The client side of xenstore, as other domains see it: the wire
//! format of `xs_wire.h` ([`wire`]), permissions ([`perms`], [`Perm`]),
//! the [`XenStore`] client trait with transactions ([`in_transaction`]),
//! and the request encodings over any transport ([`Call`], [`ops`]).
//!
//! Cores of other domains (toolstack, netback, blkback, the vchan
//! rendezvous, guests) take a `&impl XenStore`, so they run unchanged
//! against the real xenstore domain (over the xenbus ring or a socket)
//! and, in tests, against an in-memory store (`windsor_xenstore`'s
//! `MemStore`, behind its `test-utils` feature). This crate has none of
//! the daemon's dependencies: depending on it does not pull in the store,
//! its persistence or its command line. Calls are synchronous: a call
//! returns when the store has answered.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod perms;
pub mod wire;

use alloc::string::String;
use alloc::vec::Vec;

use xen::{DomId, Errno};

/// Access a domain has to a node (`n`, `r`, `w`, `b` in `xs_wire.h` permission strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The permission letter of `xs_wire.h`.
    pub fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// Parses a permission letter.
    pub fn from_letter(c: u8) -> Option<Self> {
        Some(match c {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return None,
        })
    }
}

/// One entry of a node's permission list. The first entry names the owner
/// and the access of every domain not listed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain.
    pub dom: DomId,
    /// What it may do.
    pub access: Access,
}

/// A transaction id (`tx_id` of `xsd_sockmsg`); 0 is "no transaction".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TxId(pub u32);

impl TxId {
    /// Outside any transaction.
    pub const NONE: TxId = TxId(0);
}

/// Why a xenstore call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The store answered with an error (`XS_ERROR`, e.g. `ENOENT`, `EACCES`, `EAGAIN`).
    #[error("xenstore error {0}")]
    Store(Errno),
    /// The connection to the store is gone.
    #[error("connection to xenstore lost")]
    Disconnected,
    /// The store's reply could not be parsed.
    #[error("malformed reply from xenstore")]
    Protocol,
    /// No watch event arrived in time.
    #[error("timed out")]
    Timeout,
}

/// A fired watch: the path that changed and the token given to `watch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed (or the special path `@introduceDomain` ...).
    pub path: String,
    /// The caller's token.
    pub token: String,
}

/// Result of a client call.
pub type Result<T> = core::result::Result<T, ClientError>;

/// What a domain can ask of xenstore. Paths are absolute or relative to the
/// caller's `/local/domain/<id>`; `tx` is [`TxId::NONE`] outside transactions.
pub trait XenStore {
    /// `XS_READ`.
    fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>>;
    /// `XS_WRITE`: creates missing parents.
    fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<()>;
    /// `XS_MKDIR`.
    fn mkdir(&self, tx: TxId, path: &str) -> Result<()>;
    /// `XS_RM`: removes the node and its subtree.
    fn rm(&self, tx: TxId, path: &str) -> Result<()>;
    /// `XS_DIRECTORY`: names of the children.
    fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>>;
    /// `XS_GET_PERMS`.
    fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<Perm>>;
    /// `XS_SET_PERMS`.
    fn set_perms(&self, tx: TxId, path: &str, perms: &[Perm]) -> Result<()>;
    /// `XS_TRANSACTION_START`.
    fn transaction_start(&self) -> Result<TxId>;
    /// `XS_TRANSACTION_END`; `commit = false` aborts. A conflicting commit
    /// fails with `EAGAIN`.
    fn transaction_end(&self, tx: TxId, commit: bool) -> Result<()>;
    /// `XS_WATCH`. As in xenstored, the watch fires once right away.
    fn watch(&self, path: &str, token: &str) -> Result<()>;
    /// `XS_UNWATCH`.
    fn unwatch(&self, path: &str, token: &str) -> Result<()>;
    /// Waits for the next watch event, up to `timeout` (`None`: forever).
    fn next_event(&self, timeout: Option<core::time::Duration>) -> Result<WatchEvent>;
}

/// Commits [`in_transaction`] tries before it gives up with `EAGAIN`.
pub const TRANSACTION_ATTEMPTS: usize = 8;

/// Runs `f` in a transaction and commits it, starting over when the commit
/// conflicts (`EAGAIN`), at most [`TRANSACTION_ATTEMPTS`] times, so a peer
/// that keeps conflicting cannot hold the caller forever. An error from `f`
/// aborts the transaction and is returned.
pub fn in_transaction<X: XenStore + ?Sized, T>(
    xs: &X,
    mut f: impl FnMut(TxId) -> Result<T>,
) -> Result<T> {
    for _ in 0..TRANSACTION_ATTEMPTS {
        let tx = xs.transaction_start()?;
        match f(tx) {
            Ok(out) => match xs.transaction_end(tx, true) {
                Ok(()) => return Ok(out),
                Err(ClientError::Store(Errno::EAGAIN)) => continue,
                Err(e) => return Err(e),
            },
            Err(e) => {
                let _ = xs.transaction_end(tx, false);
                return Err(e);
            }
        }
    }
    Err(ClientError::Store(Errno::EAGAIN))
}

/// A transport that carries one request and returns its reply payload (the
/// store's `XS_ERROR` as [`ClientError::Store`]). [`ops`] builds every
/// [`XenStore`] call on top of it, so each transport (the xenbus ring, a
/// byte stream) encodes requests and decodes replies the same way.
pub trait Call {
    /// Sends `payload` as an `op` request in transaction `tx`; returns the
    /// reply payload.
    fn call(&self, op: crate::wire::XsOp, tx: TxId, payload: &[u8]) -> Result<Vec<u8>>;
}

/// The request payloads and reply decodings of `xs_wire.h`, over any [`Call`].
pub mod ops {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use xen::{DomId, Errno, EvtchnPort};

    use super::{Call, ClientError, Perm, Result, TxId, WatchEvent};
    use crate::perms::Perms;
    use crate::wire::XsOp;

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        v
    }

    fn two(a: &str, b: &str) -> Vec<u8> {
        let mut v = cstr(a);
        v.extend_from_slice(&cstr(b));
        v
    }

    fn text(r: &[u8]) -> String {
        String::from_utf8_lossy(r.strip_suffix(b"\0").unwrap_or(r)).into()
    }

    /// Decodes an `XS_WATCH_EVENT` payload (`path\0token\0`).
    pub fn watch_event(payload: &[u8]) -> WatchEvent {
        let mut parts = payload.split(|&b| b == 0);
        let path = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default();
        WatchEvent {
            path: String::from_utf8_lossy(path).into(),
            token: String::from_utf8_lossy(token).into(),
        }
    }

    /// `XS_READ`.
    pub fn read<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<Vec<u8>> {
        c.call(XsOp::Read, tx, &cstr(path))
    }

    /// `XS_WRITE`.
    pub fn write<C: Call + ?Sized>(c: &C, tx: TxId, path: &str, value: &[u8]) -> Result<()> {
        let mut v = cstr(path);
        v.extend_from_slice(value);
        c.call(XsOp::Write, tx, &v).map(|_| ())
    }

    /// `XS_MKDIR`.
    pub fn mkdir<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<()> {
        c.call(XsOp::Mkdir, tx, &cstr(path)).map(|_| ())
    }

    /// `XS_RM`.
    pub fn rm<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<()> {
        c.call(XsOp::Rm, tx, &cstr(path)).map(|_| ())
    }

    fn names(r: &[u8]) -> impl Iterator<Item = String> + '_ {
        r.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into())
    }

    /// `XS_DIRECTORY`; when the list does not fit in one reply (`E2BIG`:
    /// more than `XENSTORE_PAYLOAD_MAX` bytes of names, e.g. `/pool/VM`
    /// of a host with a hundred VMs), [`directory_part`] pages through it.
    pub fn directory<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<Vec<String>> {
        match c.call(XsOp::Directory, tx, &cstr(path)) {
            Ok(r) => Ok(names(&r).collect()),
            Err(ClientError::Store(Errno::E2BIG)) => directory_part(c, tx, path),
            Err(e) => Err(e),
        }
    }

    /// How many times [`directory_part`] starts over when the directory
    /// changes while it pages through it.
    pub const DIRECTORY_PART_ATTEMPTS: usize = 8;

    /// The children of `path` through `XS_DIRECTORY_PART` (Xen 4.9+):
    /// each reply is `<generation>\0` and the names from a byte offset,
    /// the last one ending in an extra `\0`. If the node's generation
    /// changes between parts the list starts over (at most
    /// [`DIRECTORY_PART_ATTEMPTS`] times, then `EAGAIN`); a reply that
    /// makes no progress is a protocol error, so a broken server cannot
    /// hold the caller in a loop.
    pub fn directory_part<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<Vec<String>> {
        'again: for _ in 0..DIRECTORY_PART_ATTEMPTS {
            let mut out = Vec::new();
            let mut off = 0usize;
            let mut generation: Option<Vec<u8>> = None;
            loop {
                let r = c.call(XsOp::DirectoryPart, tx, &two(path, &format!("{off}")))?;
                let Some(g) = r.iter().position(|&b| b == 0) else {
                    return Err(ClientError::Protocol);
                };
                let (gen, rest) = (&r[..g], &r[g + 1..]);
                match &generation {
                    Some(prev) if prev.as_slice() != gen => continue 'again,
                    Some(_) => {}
                    None => generation = Some(gen.to_vec()),
                }
                let last = rest == b"\0" || rest.ends_with(b"\0\0");
                let body = if last {
                    rest.strip_suffix(b"\0").unwrap_or(rest)
                } else {
                    rest
                };
                if !last && body.is_empty() {
                    return Err(ClientError::Protocol);
                }
                off += body.len();
                out.extend(names(body));
                if last {
                    return Ok(out);
                }
            }
        }
        Err(ClientError::Store(Errno::EAGAIN))
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms<C: Call + ?Sized>(c: &C, tx: TxId, path: &str) -> Result<Vec<Perm>> {
        let r = c.call(XsOp::GetPerms, tx, &cstr(path))?;
        let p = Perms::parse(&r).map_err(|_| ClientError::Protocol)?;
        Ok(p.as_slice().to_vec())
    }

    /// `XS_SET_PERMS`.
    pub fn set_perms<C: Call + ?Sized>(c: &C, tx: TxId, path: &str, perms: &[Perm]) -> Result<()> {
        let mut v = cstr(path);
        let p = Perms::from_slice(perms).ok_or(ClientError::Store(Errno::EINVAL))?;
        p.emit(&mut v);
        c.call(XsOp::SetPerms, tx, &v).map(|_| ())
    }

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start<C: Call + ?Sized>(c: &C) -> Result<TxId> {
        let r = c.call(XsOp::TransactionStart, TxId::NONE, b"\0")?;
        text(&r)
            .parse()
            .map(TxId)
            .map_err(|_| ClientError::Protocol)
    }

    /// `XS_TRANSACTION_END`.
    pub fn transaction_end<C: Call + ?Sized>(c: &C, tx: TxId, commit: bool) -> Result<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        c.call(XsOp::TransactionEnd, tx, arg).map(|_| ())
    }

    /// `XS_WATCH`.
    pub fn watch<C: Call + ?Sized>(c: &C, path: &str, token: &str) -> Result<()> {
        c.call(XsOp::Watch, TxId::NONE, &two(path, token))
            .map(|_| ())
    }

    /// `XS_UNWATCH`.
    pub fn unwatch<C: Call + ?Sized>(c: &C, path: &str, token: &str) -> Result<()> {
        c.call(XsOp::Unwatch, TxId::NONE, &two(path, token))
            .map(|_| ())
    }

    /// `XS_INTRODUCE` (dom0 only): serve `dom`'s ring at frame `gfn`, port `port`.
    pub fn introduce<C: Call + ?Sized>(
        c: &C,
        dom: DomId,
        gfn: u64,
        port: EvtchnPort,
    ) -> Result<()> {
        let arg = format!("{}\0{}\0{}\0", dom.0, gfn, port.0);
        c.call(XsOp::Introduce, TxId::NONE, arg.as_bytes())
            .map(|_| ())
    }

    /// `XS_RELEASE` (dom0 only).
    pub fn release<C: Call + ?Sized>(c: &C, dom: DomId) -> Result<()> {
        let arg = format!("{}\0", dom.0);
        c.call(XsOp::Release, TxId::NONE, arg.as_bytes())
            .map(|_| ())
    }

    /// `XS_GET_DOMAIN_PATH`.
    pub fn domain_path<C: Call + ?Sized>(c: &C, dom: DomId) -> Result<String> {
        let arg = format!("{}\0", dom.0);
        c.call(XsOp::GetDomainPath, TxId::NONE, arg.as_bytes())
            .map(|r| text(&r))
    }

    /// `XS_CONTROL connections` (a Windsor extension, dom0 only): every
    /// connection of the daemon as `(domid, kind)`, kind being `socket`,
    /// `ring` or `ring-ignored`. Lines that do not parse are skipped.
    pub fn connections<C: Call + ?Sized>(c: &C) -> Result<Vec<(u16, String)>> {
        let r = c.call(XsOp::Control, TxId::NONE, b"connections\0")?;
        Ok(text(&r)
            .lines()
            .filter_map(|l| {
                let (d, k) = l.split_once(' ')?;
                Some((d.parse().ok()?, String::from(k)))
            })
            .collect())
    }
}

#[cfg(test)]
mod directory_part_tests {
    use alloc::vec::Vec;
    use core::cell::RefCell;

    use super::*;
    use crate::wire::XsOp;

    /// A server that answers every XS_DIRECTORY with E2BIG and pages from
    /// a script of `(generation, part)` replies.
    struct Script(RefCell<Vec<&'static [u8]>>);

    impl Call for Script {
        fn call(&self, op: XsOp, _: TxId, _: &[u8]) -> Result<Vec<u8>> {
            match op {
                XsOp::Directory => Err(ClientError::Store(Errno::E2BIG)),
                XsOp::DirectoryPart => {
                    let mut s = self.0.borrow_mut();
                    if s.is_empty() {
                        return Err(ClientError::Protocol);
                    }
                    Ok(s.remove(0).to_vec())
                }
                _ => Err(ClientError::Store(Errno::ENOSYS)),
            }
        }
    }

    fn script(parts: &[&'static [u8]]) -> Script {
        Script(RefCell::new(parts.to_vec()))
    }

    #[test]
    fn parts_join_and_a_generation_change_starts_over() {
        let s = script(&[b"7\0a\0b\0", b"7\0c\0\0"]);
        assert_eq!(
            ops::directory(&s, TxId::NONE, "/d").unwrap(),
            ["a", "b", "c"]
        );
        // The node changed between parts: start over, keep the new list.
        let s = script(&[b"7\0a\0", b"8\0x\0\0", b"8\0a\0", b"8\0z\0\0"]);
        assert_eq!(ops::directory(&s, TxId::NONE, "/d").unwrap(), ["a", "z"]);
    }

    #[test]
    fn a_server_that_makes_no_progress_or_keeps_changing_is_refused() {
        let s = script(&[b"7\0", b"7\0"]);
        assert_eq!(
            ops::directory(&s, TxId::NONE, "/d"),
            Err(ClientError::Protocol)
        );
        let s = script(&[b"no-nul"]);
        assert_eq!(
            ops::directory(&s, TxId::NONE, "/d"),
            Err(ClientError::Protocol)
        );
        let mut flapping: Vec<&'static [u8]> = Vec::new();
        for _ in 0..ops::DIRECTORY_PART_ATTEMPTS {
            flapping.push(b"1\0a\0");
            flapping.push(b"2\0b\0\0");
        }
        let s = Script(RefCell::new(flapping));
        assert_eq!(
            ops::directory(&s, TxId::NONE, "/d"),
            Err(ClientError::Store(Errno::EAGAIN))
        );
    }
}

/// Paths the [`xenstore_via_call`](crate::xenstore_via_call) macro names, so
/// it works in `std` and `no_std` crates alike.
#[doc(hidden)]
pub mod __rt {
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

/// Implements every [`XenStore`] method but `next_event` through [`ops`],
/// for a type that implements [`Call`]. Use it inside the `impl XenStore`
/// block and write `next_event` beside it (how events arrive is the
/// transport's own business).
#[macro_export]
macro_rules! xenstore_via_call {
    () => {
        fn read(&self, tx: $crate::TxId, path: &str) -> $crate::Result<$crate::__rt::Vec<u8>> {
            $crate::ops::read(self, tx, path)
        }
        fn write(&self, tx: $crate::TxId, path: &str, value: &[u8]) -> $crate::Result<()> {
            $crate::ops::write(self, tx, path, value)
        }
        fn mkdir(&self, tx: $crate::TxId, path: &str) -> $crate::Result<()> {
            $crate::ops::mkdir(self, tx, path)
        }
        fn rm(&self, tx: $crate::TxId, path: &str) -> $crate::Result<()> {
            $crate::ops::rm(self, tx, path)
        }
        fn directory(
            &self,
            tx: $crate::TxId,
            path: &str,
        ) -> $crate::Result<$crate::__rt::Vec<$crate::__rt::String>> {
            $crate::ops::directory(self, tx, path)
        }
        fn get_perms(
            &self,
            tx: $crate::TxId,
            path: &str,
        ) -> $crate::Result<$crate::__rt::Vec<$crate::Perm>> {
            $crate::ops::get_perms(self, tx, path)
        }
        fn set_perms(
            &self,
            tx: $crate::TxId,
            path: &str,
            perms: &[$crate::Perm],
        ) -> $crate::Result<()> {
            $crate::ops::set_perms(self, tx, path, perms)
        }
        fn transaction_start(&self) -> $crate::Result<$crate::TxId> {
            $crate::ops::transaction_start(self)
        }
        fn transaction_end(&self, tx: $crate::TxId, commit: bool) -> $crate::Result<()> {
            $crate::ops::transaction_end(self, tx, commit)
        }
        fn watch(&self, path: &str, token: &str) -> $crate::Result<()> {
            $crate::ops::watch(self, path, token)
        }
        fn unwatch(&self, path: &str, token: &str) -> $crate::Result<()> {
            $crate::ops::unwatch(self, path, token)
        }
    };
}
