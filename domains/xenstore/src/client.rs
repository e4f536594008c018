//! The client side of xenstore, as other domains see it.
//!
//! Cores of other domains (toolstack, netback, blkback, the vchan
//! rendezvous) take a `&impl XenStore` so they run unchanged against the
//! real xenstore domain (over the xenbus ring or a socket) and, in tests,
//! against [`MemStore`]. Calls are synchronous: a call returns when the
//! store has answered.

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
