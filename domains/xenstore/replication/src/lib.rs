//! Replication of xenstore's `/pool` subtree across a pool's hosts.
//!
//! The hosts of a pool share one `/pool` subtree (the pool's records, what
//! XAPI keeps in its pool database) while `/local/domain/*` stays per host.
//! This crate replicates `/pool` with Raft, using the `openraft` engine
//! (no consensus code of our own):
//!
//! * [`sm`]: the state machine, sans-IO and deterministic: the `/pool` tree
//!   and the xenstore operations on it (write, mkdir, rm, set-perms) and
//!   whole transactions as single log entries, validated against their
//!   read set at apply time on every replica (`EAGAIN` on conflict);
//! * [`storage`]: the log, vote and snapshots in `redb`, synced per commit;
//!   the state machine rebuilt from the last snapshot plus the log; the
//!   applied-entry stream ([`storage::StateMachineStore::subscribe`]) from
//!   which each host fires its `/pool` watches;
//! * [`tls`]: the pool CA and member certificates (`rcgen`), mutual TLS 1.3
//!   (`rustls`) for every connection;
//! * [`proto`], [`net`]: framed `postcard` messages, Raft RPCs between
//!   members;
//! * [`node`]: a member serving peers and clients; [`client`]: a client
//!   that follows the leader. The `windsor-pool-node` binary runs a member.
//!
//! # Promises
//!
//! * A write is acknowledged only once it is in the synced log of a
//!   majority and applied on the member that answers: no acknowledged
//!   write is lost while a majority's disks survive.
//! * Reads are **linearizable through ReadIndex** (openraft's
//!   `ensure_linearizable`): the leader notes its commit index, confirms
//!   it is still leader with a round of heartbeats to a majority, waits
//!   until that index is applied, then reads. We do not use a leader
//!   lease: a lease is only safe if clocks advance at bounded relative
//!   rates, and a xenstore domain can be paused, migrated or starved by the
//!   hypervisor for longer than any lease. ReadIndex costs one round trip
//!   and needs no assumption on time.
//! * Membership changes go through openraft's joint consensus; a new
//!   member is added as a learner, catches up (by snapshot if the log it
//!   needs was purged) and then becomes a voter.
//!
//! # The seam with the xenstore daemon
//!
//! The daemon keeps handling `/local/...` alone. For a request under
//! `/pool` it submits a [`sm::Command`] on behalf of the caller
//! ([`sm::Command::As`]: permissions are checked at apply time; a
//! transaction as one [`sm::Command::Txn`] with the revisions it read)
//! through [`client::PoolClient`] or an in-process
//! [`node::PoolNode`], and replies with the replicated outcome. Every
//! host's daemon subscribes to the applied-entry stream, mirrors the
//! changes into its tree and fires the watches ([`mirror`]).
//! [`xenstored`] does this for the daemon (the `windsor-xenstored-pool`
//! binary): single operations, transactions (one [`sm::Command::Txn`] per
//! commit, `EAGAIN` on conflict) and reads of `/pool` after a ReadIndex
//! barrier, linearizable on followers too.

pub mod client;
pub mod mirror;
pub mod net;
pub mod node;
pub mod proto;
pub mod sm;
pub mod storage;
pub mod tls;
pub mod xenstored;

openraft::declare_raft_types!(
    /// The Raft types of the pool: commands in, outcomes out, nodes named
    /// by their address.
    pub TypeConfig:
        D = sm::Command,
        R = sm::Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime
);
