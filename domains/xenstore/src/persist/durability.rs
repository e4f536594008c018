//! Durability classes: how far a write must have gone before its reply.
//!
//! The daemon asks a [`Classify`] for the class of every path a request
//! changed; the request's log record gets the strongest class among them.
//! [`PoolSynced`], the default, is Windsor's promise (see the README):
//! `/pool` (the pool's records) is synced before the reply, everything
//! else (`/local/domain/*`, which describes domains a power loss kills
//! anyway, and the rest) is written to the log before the reply, unsynced.
//!
//! The seam for replication: a replicated `/pool` is one more class
//! (committed by a majority before the reply) that a classifier returns
//! for `/pool` paths, and that the daemon routes to the replicated log
//! instead of the local one.

/// How far a record must have gone before the replies it gates are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Durability {
    /// Written to the log file (the page cache): survives a crash of the
    /// daemon, not of the host.
    Logged,
    /// Synced to stable storage (`fdatasync`): survives a power loss.
    Synced,
}

/// Gives the durability class of a path a request changed.
pub trait Classify: Send {
    /// The class of a write or removal of `path` (canonical, absolute).
    fn class(&self, path: &str) -> Durability;

    /// The class of a change that names no path (domain introduction and
    /// release, special-path permissions, `XS_SET_TARGET`).
    fn domain_class(&self) -> Durability {
        Durability::Logged
    }
}

/// `/pool` and below: [`Durability::Synced`]; anything else:
/// [`Durability::Logged`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSynced;

impl Classify for PoolSynced {
    fn class(&self, path: &str) -> Durability {
        if is_under(path, "/pool") {
            Durability::Synced
        } else {
            Durability::Logged
        }
    }
}

/// Whether `path` is `top` or below it.
fn is_under(path: &str, top: &str) -> bool {
    path.strip_prefix(top)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every path: [`Durability::Synced`] (what the daemon did before
/// classes: one sync per write).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllSynced;

impl Classify for AllSynced {
    fn class(&self, _path: &str) -> Durability {
        Durability::Synced
    }

    fn domain_class(&self) -> Durability {
        Durability::Synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_below_are_synced_the_rest_logged() {
        let c = PoolSynced;
        for p in ["/pool", "/pool/VM/abc", "/pool/host/x/y"] {
            assert_eq!(c.class(p), Durability::Synced, "{p}");
        }
        for p in [
            "/",
            "/poolx",
            "/pools/a",
            "/local/domain/3/data",
            "/tool/pool",
        ] {
            assert_eq!(c.class(p), Durability::Logged, "{p}");
        }
        assert_eq!(c.domain_class(), Durability::Logged);
        assert_eq!(AllSynced.class("/local"), Durability::Synced);
        assert!(Durability::Synced > Durability::Logged);
    }
}
