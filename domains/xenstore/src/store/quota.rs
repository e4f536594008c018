//! Limits and configuration. Defaults are C xenstored 4.17's
//! (`quota_*` in `xenstored_core.c`). Privileged domains (dom0 and
//! [`Config::priv_domid`]) are exempt from every quota, as there.

use xen::DomId;

/// Per-domain and per-connection limits for unprivileged domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (`-E`, 1000).
    pub nodes_per_domain: u32,
    /// Bytes of value (plus child names) in one node (`-S`, 2048).
    pub value_size: usize,
    /// Watches per domain (`-W`, 128; as in C, one more is accepted).
    pub watches_per_domain: u32,
    /// Open transactions per connection (`-t`, 10; as in C, one more is
    /// accepted).
    pub transactions: usize,
    /// Entries in one permission list (`-A`, 5).
    pub perms_per_node: usize,
    /// Paths one transaction may touch (`-Q transaction-nodes`, 1024).
    pub txn_nodes: usize,
    /// Bytes (values, child lists, paths) one transaction may hold in its
    /// overlay (C bounds this with its per-domain memory quota; 256 KiB).
    pub txn_bytes: usize,
    /// Path length past `/local/domain/<id>/` (`-M`, 2048, never more).
    pub path_len: usize,
    /// Unread replies before a connection is not served (`-Q outstanding`, 20).
    pub outstanding: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes_per_domain: 1000,
            value_size: 2048,
            watches_per_domain: 128,
            transactions: 10,
            perms_per_node: 5,
            txn_nodes: 1024,
            txn_bytes: 256 * 1024,
            path_len: crate::wire::REL_PATH_MAX,
            outstanding: 20,
        }
    }
}

/// How a [`Store`](super::Store) behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The limits.
    pub quotas: Quotas,
    /// A second privileged domain besides dom0 (`--priv-domid`).
    pub priv_domid: Option<DomId>,
    /// Seed of the hash of guest-chosen paths; pass something random.
    pub hash_seed: u64,
    /// Record committed [`Mutation`](super::Mutation)s for a log.
    pub record_mutations: bool,
    /// Bytes of unread output an unprivileged connection may have queued
    /// before further watch events for it are dropped (replies are bounded
    /// by [`Quotas::outstanding`] instead).
    pub max_queued_bytes: usize,
    /// Bytes the open transactions of one connection may hold together,
    /// privileged or not (dom0 included: a bound on memory, not a quota).
    pub txn_bytes_per_conn: usize,
    /// Bytes the open transactions of all connections may hold together.
    pub txn_bytes_total: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quotas: Quotas::default(),
            priv_domid: None,
            hash_seed: 0x5eed_0f57_04e5,
            record_mutations: false,
            max_queued_bytes: 512 * 1024,
            txn_bytes_per_conn: 16 << 20,
            txn_bytes_total: 64 << 20,
        }
    }
}
