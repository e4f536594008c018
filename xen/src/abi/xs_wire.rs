//! The xenstore wire protocol (`xen/include/public/io/xs_wire.h`, Xen 4.17).
//!
//! Produced by xenstore clients (every domain's xenbus code, the toolstack,
//! the Unix-socket clients of host mode) as requests and by the xenstore
//! domain as replies and watch events; both directions use the same framing:
//! a 16-byte [`XsdSockmsg`] header followed by `len` payload bytes (usually
//! NUL-separated strings), `len <= XENSTORE_PAYLOAD_MAX`.
//!
//! A guest talks to xenstore over one shared page, [`XenstoreDomainInterface`]:
//!
//! ```text
//! xsd_sockmsg                  0: type u32  4: req_id u32  8: tx_id u32  12: len u32 (16)
//! xenstore_domain_interface    0: req [u8; 1024]     (client -> xenstored)
//!                           1024: rsp [u8; 1024]     (xenstored -> client)
//!                           2048: req_cons  2052: req_prod  2056: rsp_cons  2060: rsp_prod
//!                           2064: server_features  2068: connection  2072: error      (2076)
//! ```
//!
//! Ring indices are free-running `u32`s; [`mask_xenstore_idx`] gives the
//! byte offset in a ring. The page is written concurrently by both sides:
//! use [`crate::shmem`] with the offsets of this struct, never a reference.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::errno::Errno;

/// `XS_CONTROL`: xenstored control commands (`XS_DEBUG` is an alias).
pub const XS_CONTROL: u32 = 0;
/// `XS_DEBUG`: old name of `XS_CONTROL`.
pub const XS_DEBUG: u32 = XS_CONTROL;
/// `XS_TYPE_COUNT`: number of valid types (including the removed 20).
pub const XS_TYPE_COUNT: u32 = 23;
/// `XS_INVALID`: guaranteed never to be a valid type.
pub const XS_INVALID: u32 = 0xffff;

/// `enum xsd_sockmsg_type`: the `type` of an [`XsdSockmsg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum XsdSockmsgType {
    /// `XS_CONTROL` (alias `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`: list children.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`: tell xenstored about a new domain's ring.
    Introduce = 8,
    /// `XS_RELEASE`: forget a domain.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: asynchronous watch firing (reply direction only).
    WatchEvent = 15,
    /// `XS_ERROR`: error reply; the payload is an errno name from [`XSD_ERRORS`].
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20, `XS_RESTRICT`, was removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: list children in chunks.
    DirectoryPart = 22,
}

impl XsdSockmsgType {
    /// Decodes a message type; `None` for 20 (removed), unknown values and
    /// `XS_INVALID`.
    pub const fn from_raw(v: u32) -> Option<Self> {
        use XsdSockmsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }

    /// The header's name for the type (`"XS_READ"`).
    pub const fn name(self) -> &'static str {
        use XsdSockmsgType::*;
        match self {
            Control => "XS_CONTROL",
            Directory => "XS_DIRECTORY",
            Read => "XS_READ",
            GetPerms => "XS_GET_PERMS",
            Watch => "XS_WATCH",
            Unwatch => "XS_UNWATCH",
            TransactionStart => "XS_TRANSACTION_START",
            TransactionEnd => "XS_TRANSACTION_END",
            Introduce => "XS_INTRODUCE",
            Release => "XS_RELEASE",
            GetDomainPath => "XS_GET_DOMAIN_PATH",
            Write => "XS_WRITE",
            Mkdir => "XS_MKDIR",
            Rm => "XS_RM",
            SetPerms => "XS_SET_PERMS",
            WatchEvent => "XS_WATCH_EVENT",
            Error => "XS_ERROR",
            IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED",
            Resume => "XS_RESUME",
            SetTarget => "XS_SET_TARGET",
            ResetWatches => "XS_RESET_WATCHES",
            DirectoryPart => "XS_DIRECTORY_PART",
        }
    }
}

/// `XS_WRITE_NONE`: an old write flag (payload prefix of ancient clients).
pub const XS_WRITE_NONE: &str = "NONE";
/// `XS_WRITE_CREATE`: an old write flag.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// `XS_WRITE_CREATE_EXCL`: an old write flag.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// `xsd_errors[]`: the errors an `XS_ERROR` reply may name, in the header's
/// order (new errors are only ever appended). The payload of an `XS_ERROR`
/// reply is the name, NUL-terminated.
pub const XSD_ERRORS: [(Errno, &str); 16] = [
    (Errno::EINVAL, "EINVAL"),
    (Errno::EACCES, "EACCES"),
    (Errno::EEXIST, "EEXIST"),
    (Errno::EISDIR, "EISDIR"),
    (Errno::ENOENT, "ENOENT"),
    (Errno::ENOMEM, "ENOMEM"),
    (Errno::ENOSPC, "ENOSPC"),
    (Errno::EIO, "EIO"),
    (Errno::ENOTEMPTY, "ENOTEMPTY"),
    (Errno::ENOSYS, "ENOSYS"),
    (Errno::EROFS, "EROFS"),
    (Errno::EBUSY, "EBUSY"),
    (Errno::EAGAIN, "EAGAIN"),
    (Errno::EISCONN, "EISCONN"),
    (Errno::E2BIG, "E2BIG"),
    (Errno::EPERM, "EPERM"),
];

/// The `XS_ERROR` name for `e`, if xenstore can send it.
pub fn xsd_error_name(e: Errno) -> Option<&'static str> {
    XSD_ERRORS.iter().find(|(n, _)| *n == e).map(|(_, s)| *s)
}

/// The errno an `XS_ERROR` payload names (without its NUL), if known.
pub fn xsd_error_from_name(name: &[u8]) -> Option<Errno> {
    XSD_ERRORS
        .iter()
        .find(|(_, s)| s.as_bytes() == name)
        .map(|(e, _)| *e)
}

/// `struct xsd_sockmsg`: the header of every message.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct XsdSockmsg {
    /// An `XS_*` type.
    pub r#type: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// Payload bytes following the header.
    pub len: u32,
}

/// `XS_WATCH_PATH`: index of the path in an `XS_WATCH_EVENT` payload.
pub const XS_WATCH_PATH: u32 = 0;
/// `XS_WATCH_TOKEN`: index of the token in an `XS_WATCH_EVENT` payload.
pub const XS_WATCH_TOKEN: u32 = 1;

/// `XENSTORE_RING_SIZE`: bytes in each ring (a power of two).
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `XENSTORE_PAYLOAD_MAX`: the largest `len` of a message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: the longest relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`: the `connection` field works.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the `error` field works.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`: `connection` in the steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`: `connection` while a reconnect is in progress.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_NONE`.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (e.g. payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `MASK_XENSTORE_IDX(idx)`: the byte offset in a ring of a free-running index.
pub const fn mask_xenstore_idx(idx: u32) -> usize {
    (idx as usize) & (XENSTORE_RING_SIZE - 1)
}

/// `struct xenstore_domain_interface`: the xenstore ring page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Consumer index of `req` (written by xenstored).
    pub req_cons: u32,
    /// Producer index of `req` (written by the client).
    pub req_prod: u32,
    /// Consumer index of `rsp` (written by the client).
    pub rsp_cons: u32,
    /// Producer index of `rsp` (written by xenstored).
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*` bits (written by xenstored).
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*` (written by xenstored).
    pub error: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_xs_wire_h() {
        assert_layout!(XsdSockmsg, size 16, align 4, r#type @ 0, req_id @ 4, tx_id @ 8, len @ 12);
        assert_layout!(XenstoreDomainInterface, size 2076, align 4,
            req @ 0, rsp @ 1024, req_cons @ 2048, req_prod @ 2052, rsp_cons @ 2056,
            rsp_prod @ 2060, server_features @ 2064, connection @ 2068, error @ 2072);
    }

    #[test]
    fn message_types_match_the_enum() {
        assert_eq!(XsdSockmsgType::from_raw(0), Some(XsdSockmsgType::Control));
        assert_eq!(XsdSockmsgType::SetTarget as u32, 19);
        assert_eq!(XsdSockmsgType::from_raw(20), None);
        assert_eq!(XsdSockmsgType::ResetWatches as u32, 21);
        assert_eq!(XsdSockmsgType::DirectoryPart as u32, 22);
        assert_eq!(XsdSockmsgType::from_raw(XS_TYPE_COUNT), None);
        assert_eq!(XsdSockmsgType::from_raw(XS_INVALID), None);
        for v in 0..XS_TYPE_COUNT {
            if let Some(t) = XsdSockmsgType::from_raw(v) {
                assert_eq!(t as u32, v);
                assert!(t.name().starts_with("XS_"));
            }
        }
    }

    #[test]
    fn error_table() {
        assert_eq!(XSD_ERRORS[0], (Errno::EINVAL, "EINVAL"));
        assert_eq!(XSD_ERRORS[15], (Errno::EPERM, "EPERM"));
        for (e, name) in XSD_ERRORS {
            assert_eq!(e.name(), Some(name));
            assert_eq!(xsd_error_from_name(name.as_bytes()), Some(e));
        }
        assert_eq!(xsd_error_name(Errno::ENOENT), Some("ENOENT"));
        assert_eq!(xsd_error_name(Errno::EFAULT), None);
        assert_eq!(xsd_error_from_name(b"EWHAT"), None);
    }

    #[test]
    fn index_masking() {
        assert_eq!(mask_xenstore_idx(0), 0);
        assert_eq!(mask_xenstore_idx(1024), 0);
        assert_eq!(mask_xenstore_idx(1025), 1);
        assert_eq!(mask_xenstore_idx(u32::MAX), 1023);
    }
}
