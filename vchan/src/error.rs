//! Errors of a vchan end.

use windsor_xenstore_client::ClientError;

use crate::layout::LayoutError;
use crate::ring::RingError;

/// Why a vchan operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Non-blocking mode, and the operation could not make progress now.
    #[error("operation would block")]
    WouldBlock,
    /// The channel is closed: the peer closed it, or it was shut after an
    /// earlier error.
    #[error("channel closed")]
    Closed,
    /// The peer's domain went away without closing (its port is no longer
    /// connected to ours).
    #[error("peer domain died")]
    PeerDied,
    /// A packet larger than the ring can never be sent or received whole.
    #[error("packet of {len} bytes larger than the {max}-byte ring")]
    TooLarge {
        /// The packet's length.
        len: usize,
        /// The ring's size.
        max: usize,
    },
    /// The peer broke the ring protocol; the channel is now closed.
    #[error("peer broke the ring protocol: {0}")]
    Protocol(#[from] RingError),
    /// The shared page describes impossible rings (client side), or the
    /// requested sizes are too large (server side); nothing was mapped.
    #[error("bad ring layout: {0}")]
    Layout(#[from] LayoutError),
    /// A xenstore entry of the rendezvous is missing its number or malformed.
    #[error("malformed rendezvous entry `{key}`")]
    BadEntry {
        /// The node name (`ring-ref` or `event-channel`).
        key: &'static str,
    },
    /// A hypercall (grant map, event channel) failed.
    #[error("platform: {0}")]
    Platform(#[from] xen::platform::Error),
    /// A xenstore call failed.
    #[error("xenstore: {0}")]
    Store(#[from] ClientError),
}

/// Result of a vchan operation.
pub type Result<T> = core::result::Result<T, Error>;
