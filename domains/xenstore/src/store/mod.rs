//! The xenstore state machine: tree, permissions, transactions, watches
//! and quotas, with no I/O, no clock and no panics on any input.
//!
//! # API (stable: the daemon and the persistence layer build on it)
//!
//! ```text
//! let mut s = Store::new(Config::default());
//! let c = s.connect(DomId(0));              // one per ring / socket client
//! if s.can_accept(c) {                      // false: stop reading c (quota)
//!     s.handle(c, &header, &payload)?;      // one whole request
//! }
//! for c in s.take_ready() {                 // connections with output
//!     while let Some(pkt) = s.pop(c) { /* write pkt.to_vec() */ }
//! }
//! for e in s.take_effects() { /* Introduce: map ring, connect(); Release: drop conns */ }
//! let batch = s.take_mutations();           // log atomically, one record per handle()
//! // at recovery, on a fresh store:  for m in batch { s.apply(&m) }
//! s.disconnect(c);
//! ```
//!
//! * Replies echo `req_id` and `tx_id`; watch events are queued to the
//!   watching connections (`req_id` 0, `tx_id` 0), before the reply of the
//!   request that fired them (the first event of a new watch comes after
//!   its reply), and an event identical to one still queued is merged into
//!   it, all as C xenstored does. Output stays in the
//!   store until [`Store::pop`]: unread replies count against the
//!   outstanding-request quota ([`Store::can_accept`] turns false, and
//!   [`Store::handle`] answers [`HandleError::Busy`]), unread events
//!   against a per-connection byte budget beyond which events are dropped
//!   (XSA-326, XSA-416). dom0 and the privileged domain are exempt, as in
//!   C xenstored.
//! * Every committed change to the tree is recorded (when
//!   [`Config::record_mutations`]) as [`Mutation`]s; a transaction commit
//!   yields its writes in path order within one `handle`. Replaying them
//!   with [`Store::apply`] in order rebuilds the same tree.
//! * Things only the daemon can do (map a ring, close a domain's
//!   connection) come out as [`Effect`]s.
//!
//! Semantics follow C xenstored 4.17 (`tools/xenstore`): permission
//! checks and the errno a denied caller sees, implicit parent creation
//! with inherited permissions, watch firing rules, special watches,
//! quotas and their dom0 exemption, the transaction conflict rule and
//! repeatable reads inside a transaction, `XS_INTRODUCE` resetting a
//! connected domain, glibc `atoi` on numeric arguments. A differential
//! test (`differential_against_c_xenstored`, which starts the reference
//! with the ref tool, or uses the one at `XS_REF_SOCKET`) checks over 400
//! requests byte for byte against the reference daemon. Malformed single-argument requests get `EINVAL`
//! where C answers with whatever `errno` was left over.
//! Departures: domain-owned nodes are deleted and ACL entries naming a
//! domain are dropped at `XS_RELEASE` (C uses domain generations for the
//! latter); C's per-domain memory quota is replaced by bounds on
//! what each structure can hold (nodes x value size, watches, transaction
//! nodes and bytes, queued output).
//!
//! Snapshots: [`Store::snapshot`] gives mutations that rebuild the whole
//! state (domains, special permissions, nodes in directory order).

mod quota;
mod tree;
mod txn;
mod watch;

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use xen::{DomId, Errno};

pub use quota::{Config, Quotas};
pub use tree::{Node, Tree};

use crate::path;
use crate::perms::{Perms, Who};
use crate::wire::{Header, Packet, XsOp, PAYLOAD_MAX};
use txn::Txn;
use watch::{Fire, Watch, WatchIndex};

/// A connection to the store (a domain's ring or a socket client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// An open transaction as [`Store::txn_view`] shows it.
#[derive(Clone, Debug)]
pub struct TxnView {
    /// No touched node changed since the transaction first touched it
    /// (what a commit checks; `false` means `EAGAIN`).
    pub valid: bool,
    /// An operation inside hit a quota: a commit fails (`ENOMEM`).
    pub failed: bool,
    /// Every path touched, in path order (parents before children).
    pub touched: Vec<TxnTouch>,
}

/// One path a transaction touched.
#[derive(Clone, Debug)]
pub struct TxnTouch {
    /// The path.
    pub path: String,
    /// Whether the node existed when the transaction first touched it.
    pub existed: bool,
    /// What the transaction did to it.
    pub change: TxnChange,
}

/// What a transaction did to a path.
#[derive(Clone, Debug)]
pub enum TxnChange {
    /// Only read it (or saw it absent).
    Read,
    /// Removed it.
    Removed,
    /// Wrote it (or a child was created or removed below it).
    Written {
        /// Its value at commit.
        value: Arc<[u8]>,
        /// Its permissions at commit.
        perms: Perms,
        /// New node, value changed, or written explicitly (a watch fires).
        value_changed: bool,
        /// New node or permissions changed.
        perms_changed: bool,
    },
}

/// One committed change, for a persistence log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Create (with missing parents) or overwrite a node's value and perms.
    Write {
        /// Canonical path.
        path: Box<str>,
        /// New value.
        value: Arc<[u8]>,
        /// New permissions.
        perms: Perms,
    },
    /// Remove a node and its subtree.
    Remove {
        /// Canonical path.
        path: Box<str>,
    },
    /// Permissions of a special watch path (`@introduceDomain`, `@releaseDomain`).
    SpecialPerms {
        /// The special path.
        path: Box<str>,
        /// New permissions.
        perms: Perms,
    },
    /// A domain was introduced.
    Introduce {
        /// The domain.
        domid: DomId,
        /// Frame of its xenstore ring.
        gfn: u64,
        /// Its event channel port.
        port: u32,
    },
    /// A domain was released (its nodes and ACL entries go with it).
    Release {
        /// The domain.
        domid: DomId,
    },
    /// `XS_SET_TARGET`.
    SetTarget {
        /// The domain gaining rights.
        domid: DomId,
        /// The domain it acts for.
        target: DomId,
    },
}

/// Work for the daemon, outside the store's reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `XS_INTRODUCE`: map the domain's ring at `gfn`, bind `port`, then
    /// [`Store::connect`] it. If the domain is already connected, rebind
    /// the port and reset the ring indices: the store has already dropped
    /// that connection's watches, transactions and queued output.
    Introduce {
        /// The domain.
        domid: DomId,
        /// Ring frame.
        gfn: u64,
        /// Event channel port in the domain.
        port: u32,
    },
    /// `XS_RELEASE`: the store has dropped the domain's connections; unmap
    /// its ring and forget these ids.
    Release {
        /// The domain.
        domid: DomId,
        /// Its connections, already disconnected in the store.
        conns: Vec<ConnId>,
    },
    /// `XS_RESUME` of a domain.
    Resume {
        /// The domain.
        domid: DomId,
    },
}

/// Why a request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The connection id is not (or no longer) connected.
    #[error("unknown connection")]
    UnknownConn,
    /// The connection has too many unread replies; retry after `pop`.
    #[error("too many outstanding replies")]
    Busy,
}

#[derive(Debug, Default)]
struct Conn {
    domid: DomId,
    watches: Vec<Watch>,
    txns: BTreeMap<u32, Txn>,
    /// Bytes held by `txns` (the sum of their `bytes`).
    txn_bytes: usize,
    next_txid: u32,
    out: VecDeque<Packet>,
    out_bytes: usize,
    replies: u32,
    dropped_events: u64,
    /// Hashes of queued (non-special) watch events, to drop duplicates.
    pending_events: BTreeMap<u64, u32>,
}

fn event_key(payload: &[u8]) -> u64 {
    use core::hash::BuildHasher;
    tree::SeededState::new(0x000e_7e47).hash_one(payload)
}

#[derive(Debug, Default, Clone)]
struct Domain {
    introduced: bool,
    target: Option<DomId>,
    watches: u32,
    /// Ring frame and port given at introduction.
    ring: (u64, u32),
    /// Its connections (a ring, or host-side clients acting for it).
    conns: Vec<ConnId>,
}

/// Statistics, for tests and `CONTROL memreport`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Nodes in the tree.
    pub nodes: usize,
    /// Connections.
    pub conns: usize,
    /// Watches of all connections.
    pub watches: usize,
    /// Open transactions.
    pub txns: usize,
    /// Packets waiting in output queues.
    pub queued: usize,
    /// Bytes waiting in output queues.
    pub queued_bytes: usize,
    /// Watch events dropped because a queue was full.
    pub dropped_events: u64,
}

const OK: &[u8] = b"OK\0";
const INTRODUCE: &str = "@introduceDomain";
const RELEASE: &str = "@releaseDomain";

/// The store.
#[derive(Debug)]
pub struct Store {
    cfg: Config,
    tree: Tree,
    /// Boxed: the map keeps spare slots (load factor, doubling), and a
    /// spare slot costs a pointer rather than a whole `Conn`.
    conns: tree::Map<ConnId, Box<Conn>>,
    next_conn: u32,
    domains: BTreeMap<DomId, Domain>,
    watches: WatchIndex,
    special_intro: Perms,
    special_release: Perms,
    effects: Vec<Effect>,
    ready: Vec<ConnId>,
    /// Connections whose output queue is not empty.
    output: BTreeSet<ConnId>,
    fires: Vec<Fire>,
    /// Bytes held by every connection's open transactions.
    txn_bytes: usize,
}

/// Operations inside or outside a transaction.
struct Ctx<'a> {
    tree: &'a mut Tree,
    txn: Option<&'a mut Txn>,
    /// Bytes the transaction may hold in all (see [`Txn::touch`]).
    txn_budget: usize,
    who: Who,
    q: &'a Quotas,
    fires: &'a mut Vec<Fire>,
}

const R: u8 = 1;
const W: u8 = 2;
const O: u8 = 4;

fn bits(p: &Perms, who: &Who) -> u8 {
    let r = p.rights(who);
    (r.read as u8) | ((r.write as u8) << 1) | ((r.owner as u8) << 2)
}

impl Ctx<'_> {
    fn unlimited(&self) -> bool {
        self.who.privileged
    }

    fn get(&mut self, p: &str) -> Result<Option<&Node>, Errno> {
        if let Some(t) = self.txn.as_deref_mut() {
            let unl = self.who.privileged;
            let e = t.touch(self.tree, p, unl, self.q.txn_nodes, self.txn_budget)?;
            return Ok(match &e.state {
                Some(st) => st.as_ref(),
                None => e.orig.as_ref(),
            });
        }
        Ok(self.tree.get(p))
    }

    fn put(&mut self, p: &str, mut node: Node) -> Result<(), Errno> {
        match self.txn.as_deref_mut() {
            Some(t) => {
                let unl = self.who.privileged;
                t.bytes = t
                    .bytes
                    .saturating_add(node.value.len() + node.children.len() + p.len());
                if t.bytes > self.txn_budget {
                    t.failed = true;
                    return Err(Errno::ENOSPC);
                }
                node.gen = self.tree.next_gen();
                let e = t.touch(self.tree, p, unl, self.q.txn_nodes, self.txn_budget)?;
                e.state = Some(Some(node));
            }
            None => self.tree.put(p, node),
        }
        Ok(())
    }

    fn del(&mut self, p: &str) -> Result<(), Errno> {
        match self.txn.as_deref_mut() {
            Some(t) => {
                let unl = self.who.privileged;
                let e = t.touch(self.tree, p, unl, self.q.txn_nodes, self.txn_budget)?;
                e.state = Some(None);
            }
            None => {
                self.tree.remove(p);
            }
        }
        Ok(())
    }

    fn fire(&mut self, f: Fire) -> Result<(), Errno> {
        match self.txn.as_deref_mut() {
            Some(t) => {
                let unl = self.who.privileged;
                let e = t.touch(self.tree, &f.path, unl, self.q.txn_nodes, self.txn_budget)?;
                e.fire = Some(match e.fire {
                    None => f.exact,
                    Some(x) => x && f.exact,
                });
            }
            None => self.fires.push(f),
        }
        Ok(())
    }

    /// `get_node`: the node if the caller has all `need` rights; otherwise
    /// the errno xenstored gives (`ENOENT` only if the nearest existing
    /// ancestor grants some of `need`, else `EACCES`).
    fn node(&mut self, p: &str, need: u8) -> Result<&Node, Errno> {
        let who = self.who;
        if self.txn.is_none() {
            return node_committed(self.tree, &who, p, need);
        }
        let found = match self.get(p)? {
            Some(n) if bits(&n.perms, &who) & need == need => true,
            Some(_) => return Err(Errno::EACCES),
            None => false,
        };
        if found {
            return self.get(p)?.ok_or(Errno::EIO);
        }
        let mut a = p;
        while a != "/" {
            a = path::parent(a);
            if let Some(n) = self.get(a)? {
                return Err(if bits(&n.perms, &who) & need != 0 {
                    Errno::ENOENT
                } else {
                    Errno::EACCES
                });
            }
        }
        Err(Errno::EACCES)
    }

    /// Creates `p` and its missing parents; `p` gets `value`.
    fn create(&mut self, p: &str, value: Arc<[u8]>) -> Result<(), Errno> {
        let own_count = self.tree.count(self.who.dom);
        let mut missing: Vec<&str> = alloc::vec![p];
        let mut cur = path::parent(p);
        let parent = loop {
            if let Some(n) = self.get(cur)? {
                break n.clone();
            }
            if cur == "/" {
                return Err(Errno::EIO);
            }
            missing.push(cur);
            cur = path::parent(cur);
        };
        let n_new = u32::try_from(missing.len()).unwrap_or(u32::MAX);
        if !self.unlimited() {
            let created = self.txn.as_deref().map_or(0, |t| t.created);
            if own_count.saturating_add(created).saturating_add(n_new) > self.q.nodes_per_domain {
                return Err(Errno::ENOSPC);
            }
            let top = path::basename(missing[missing.len() - 1]);
            if parent.children.len() + top.len() + 1 + parent.value.len() > self.q.value_size {
                return Err(Errno::ENOSPC);
            }
        }
        let perms = if self.who.privileged {
            parent.perms.clone()
        } else {
            parent.perms.with_owner(self.who.dom)
        };
        let mut parent = parent;
        parent.add_child(path::basename(missing[missing.len() - 1]));
        self.put(cur, parent)?;
        let empty: Arc<[u8]> = Arc::from(&[][..]);
        for i in (0..missing.len()).rev() {
            let v = if i == 0 { value.clone() } else { empty.clone() };
            let mut n = Node::new(v, perms.clone());
            if i > 0 {
                n.add_child(path::basename(missing[i - 1]));
            }
            self.put(missing[i], n)?;
        }
        if let Some(t) = self.txn.as_deref_mut() {
            t.created = t.created.saturating_add(n_new);
        }
        Ok(())
    }

    /// Removes `p` (not `/`) and its subtree, firing watches.
    fn remove_tree(&mut self, p: &str) -> Result<(), Errno> {
        let mut stack: Vec<(String, Option<Perms>)> = alloc::vec![(p.to_owned(), None)];
        let mut order: Vec<(String, Perms, Option<Perms>)> = Vec::new();
        while let Some((cur, parent_perms)) = stack.pop() {
            let Some(n) = self.get(&cur)? else { continue };
            let perms = n.perms.clone();
            let kids: Vec<String> = n.child_names().map(|c| path::join(&cur, c)).collect();
            for k in kids {
                stack.push((k, Some(perms.clone())));
            }
            order.push((cur, perms, parent_perms));
        }
        for (cur, perms, parent_perms) in order.into_iter().rev() {
            self.del(&cur)?;
            let exact = cur != p;
            self.fire(Fire {
                path: cur.into(),
                exact,
                old: None,
                node: Some(perms),
                parent: parent_perms,
            })?;
        }
        let parent = path::parent(p);
        if let Some(pn) = self.get(parent)? {
            let mut pn = pn.clone();
            pn.remove_child(path::basename(p));
            self.put(parent, pn)?;
        }
        Ok(())
    }
}

/// [`Ctx::node`] outside transactions: one lookup on the hot path.
fn node_committed<'t>(tree: &'t Tree, who: &Who, p: &str, need: u8) -> Result<&'t Node, Errno> {
    if let Some(n) = tree.get(p) {
        return if bits(&n.perms, who) & need == need {
            Ok(n)
        } else {
            Err(Errno::EACCES)
        };
    }
    let mut a = p;
    while a != "/" {
        a = path::parent(a);
        if let Some(n) = tree.get(a) {
            return Err(if bits(&n.perms, who) & need != 0 {
                Errno::ENOENT
            } else {
                Errno::EACCES
            });
        }
    }
    Err(Errno::EACCES)
}

/// The arguments of a request: NUL-terminated strings.
fn onearg(p: &[u8]) -> Result<&[u8], Errno> {
    match p.split_last() {
        Some((0, rest)) if !rest.contains(&0) => Ok(rest),
        _ => Err(Errno::EINVAL),
    }
}

/// Up to `n` NUL-terminated strings from the front of `p` (`get_strings`).
fn strings(p: &[u8], n: usize) -> Vec<&[u8]> {
    let mut v = Vec::with_capacity(n);
    let mut rest = p;
    while v.len() < n {
        let Some(i) = rest.iter().position(|&c| c == 0) else {
            break;
        };
        v.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    v
}

/// Number of NUL-terminated strings in `p` (`xs_count_strings`).
fn count_strings(p: &[u8]) -> usize {
    p.iter().filter(|&&c| c == 0).count()
}

/// C `atoi` on an unsigned argument: leading digits, else 0.
fn atoi(s: &[u8]) -> u64 {
    let mut n: u64 = 0;
    for &c in s.iter().take_while(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(u64::from(c - b'0'));
    }
    n
}

/// `(unsigned)atoi(s)` as glibc computes it: blanks, a sign, digits
/// (saturating like `strtol`), then truncated to `int` and read unsigned.
fn c_atoi(s: &[u8]) -> u32 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i128 = 0;
    for &c in s[i..].iter().take_while(|c| c.is_ascii_digit()) {
        v = (v * 10 + i128::from(c - b'0')).min(i128::from(i64::MAX) + 1);
    }
    let v = if neg { -v } else { v };
    let long = v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    long as i32 as u32
}

/// A domid argument that must name an ordinary domain.
fn domid_arg(s: &[u8]) -> Result<DomId, Errno> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(Errno::EINVAL);
    }
    let n = atoi(s);
    u16::try_from(n)
        .ok()
        .map(DomId)
        .filter(|d| d.is_ordinary())
        .ok_or(Errno::EINVAL)
}

/// The arguments of an `XS_INTRODUCE` payload (`<domid>\0<gfn>\0<port>\0`),
/// parsed as the store parses them: for a daemon that must map the ring
/// before the store hears of the domain.
pub fn introduce_args(p: &[u8]) -> Result<(DomId, u64, u32), Errno> {
    let a = strings(p, 3);
    if a.len() < 3 {
        return Err(Errno::EINVAL);
    }
    let domid = domid_arg(a[0])?;
    let gfn = atoi(a[1]);
    let port = c_atoi(a[2]);
    if port == 0 {
        return Err(Errno::EINVAL);
    }
    Ok((domid, gfn, port))
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl Store {
    /// A store with the initial tree (`/`, `/tool`) and dom0 introduced.
    pub fn new(cfg: Config) -> Self {
        let tree = Tree::new(cfg.hash_seed, cfg.record_mutations);
        let mut domains = BTreeMap::new();
        domains.insert(
            DomId::DOM0,
            Domain {
                introduced: true,
                ..Domain::default()
            },
        );
        Store {
            watches: WatchIndex::new(cfg.hash_seed),
            cfg,
            tree,
            conns: tree::Map::with_hasher(tree::SeededState::new(cfg.hash_seed.rotate_left(41))),
            next_conn: 1,
            domains,
            special_intro: Perms::dom0_only(),
            special_release: Perms::dom0_only(),
            effects: Vec::new(),
            ready: Vec::new(),
            output: BTreeSet::new(),
            fires: Vec::new(),
            txn_bytes: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The committed tree (read-only), e.g. for snapshots.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    fn is_priv(&self, d: DomId) -> bool {
        d == DomId::DOM0 || self.cfg.priv_domid == Some(d)
    }

    fn who(&self, d: DomId) -> Who {
        Who {
            dom: d,
            privileged: self.is_priv(d),
            target: self.domains.get(&d).and_then(|x| x.target),
        }
    }

    /// Registers a connection of domain `domid` (a socket client of the
    /// host is dom0).
    pub fn connect(&mut self, domid: DomId) -> ConnId {
        let mut id = ConnId(self.next_conn);
        while self.conns.contains_key(&id) || id.0 == 0 {
            id = ConnId(id.0.wrapping_add(1));
        }
        self.next_conn = id.0.wrapping_add(1);
        self.conns.insert(
            id,
            Box::new(Conn {
                domid,
                next_txid: 1,
                ..Conn::default()
            }),
        );
        self.domains.entry(domid).or_default().conns.push(id);
        id
    }

    /// Forgets a connection: its watches, transactions and queued output.
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.txn_bytes -= c.txn_bytes;
            for w in &c.watches {
                self.watches.remove(conn, w);
            }
            if let Some(d) = self.domains.get_mut(&c.domid) {
                d.watches = d.watches.saturating_sub(c.watches.len() as u32);
                d.conns.retain(|x| *x != conn);
            }
            if !c.out.is_empty() {
                self.output.remove(&conn);
            }
        }
        self.ready.retain(|c| *c != conn);
    }

    /// The connections of `domid`, in the order they were made.
    fn conns_of(&self, domid: DomId) -> Vec<ConnId> {
        self.domains
            .get(&domid)
            .map(|d| d.conns.clone())
            .unwrap_or_default()
    }

    /// Whether `domid` is introduced (what `XS_IS_DOMAIN_INTRODUCED` says).
    pub fn is_introduced(&self, domid: DomId) -> bool {
        self.domains.get(&domid).is_some_and(|d| d.introduced)
    }

    /// Whether `domid` is privileged (dom0 or [`Config::priv_domid`]).
    pub fn is_privileged(&self, domid: DomId) -> bool {
        self.is_priv(domid)
    }

    /// The domain of a connection.
    pub fn domid(&self, conn: ConnId) -> Option<DomId> {
        self.conns.get(&conn).map(|c| c.domid)
    }

    /// Whether `conn` may send another request now (outstanding-reply
    /// quota; privileged domains always may).
    pub fn can_accept(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn) {
            Some(c) => self.is_priv(c.domid) || c.replies < self.cfg.quotas.outstanding,
            None => false,
        }
    }

    /// Next packet for `conn` (replies and events in order).
    pub fn pop(&mut self, conn: ConnId) -> Option<Packet> {
        let c = self.conns.get_mut(&conn)?;
        let p = c.out.pop_front()?;
        if c.out.is_empty() {
            self.output.remove(&conn);
            // An idle connection holds no queue memory: a drained queue
            // (whatever its peak) is freed, not kept at its capacity.
            c.out = VecDeque::new();
        }
        c.out_bytes = c.out_bytes.saturating_sub(p.buffer_len());
        if p.header.ty != XsOp::WatchEvent as u32 {
            c.replies = c.replies.saturating_sub(1);
        } else if p.payload.first() != Some(&b'@') {
            let k = event_key(&p.payload);
            if let Some(n) = c.pending_events.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    c.pending_events.remove(&k);
                    if c.pending_events.is_empty() {
                        // `remove` keeps an emptied map's root node.
                        c.pending_events = BTreeMap::new();
                    }
                }
            }
        }
        Some(p)
    }

    /// Packets queued for `conn` (0 if it is not connected).
    pub fn queued(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.out.len())
    }

    /// True if `conn` has queued output.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.out.is_empty())
    }

    /// Connections whose queue became non-empty since the last call.
    pub fn take_ready(&mut self) -> Vec<ConnId> {
        core::mem::take(&mut self.ready)
    }

    /// Every connection with queued output now, in id order, whether or
    /// not [`take_ready`](Self::take_ready) named it already: a transport
    /// that shares the store with another (which takes the ready list)
    /// finds its own connections' output here, at a cost proportional to
    /// the connections with output, not to all connections.
    pub fn with_output(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.output.iter().copied()
    }

    /// Effects for the daemon since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        core::mem::take(&mut self.effects)
    }

    /// Committed mutations since the last call (empty unless
    /// [`Config::record_mutations`]).
    pub fn take_mutations(&mut self) -> Vec<Mutation> {
        self.tree.take_log()
    }

    /// Bytes the open transactions of every connection hold (bounded by
    /// [`Config::txn_bytes_total`]).
    pub fn txn_bytes(&self) -> usize {
        self.txn_bytes
    }

    /// Pool mode: what the open transaction `tx` of `conn` did, without
    /// ending it (`None` if there is no such transaction). The daemon of
    /// a pool commits a transaction that wrote under `/pool` through the
    /// replicated log instead of [`Store::handle`]; this view is what it
    /// builds the replicated entry from.
    pub fn txn_view(&self, conn: ConnId, tx: u32) -> Option<TxnView> {
        let t = self.conns.get(&conn)?.txns.get(&tx)?;
        let touched = t
            .entries
            .iter()
            .map(|(p, e)| TxnTouch {
                path: String::from(&**p),
                existed: e.orig_gen.is_some(),
                change: match &e.state {
                    None => TxnChange::Read,
                    Some(None) => TxnChange::Removed,
                    Some(Some(n)) => TxnChange::Written {
                        value: n.value.clone(),
                        perms: n.perms.clone(),
                        value_changed: e.fire.is_some()
                            || e.orig.as_ref().is_none_or(|o| o.value != n.value),
                        perms_changed: e.orig.as_ref().is_none_or(|o| o.perms != n.perms),
                    },
                },
            })
            .collect();
        Some(TxnView {
            valid: t.validate(&self.tree),
            failed: t.failed,
            touched,
        })
    }

    /// Pool mode: ends transaction `tx` of `conn` without committing it
    /// (as `XS_TRANSACTION_END F`, without a reply). False if there is no
    /// such transaction.
    pub fn drop_txn(&mut self, conn: ConnId, tx: u32) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(t) = c.txns.remove(&tx) else {
            return false;
        };
        c.txn_bytes -= t.bytes;
        self.txn_bytes -= t.bytes;
        true
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            nodes: self.tree.len(),
            conns: self.conns.len(),
            ..Stats::default()
        };
        for c in self.conns.values() {
            s.watches += c.watches.len();
            s.txns += c.txns.len();
            s.queued += c.out.len();
            s.queued_bytes += c.out_bytes;
            s.dropped_events += c.dropped_events;
        }
        s
    }

    fn push(&mut self, conn: ConnId, pkt: Packet, reply: bool) {
        let limit = self.cfg.max_queued_bytes;
        let privileged = match self.conns.get(&conn) {
            Some(c) => self.is_priv(c.domid),
            None => return,
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !reply && !privileged && c.out_bytes + pkt.buffer_len() > limit {
            c.dropped_events += 1;
            tracing::debug!(?conn, "watch event dropped: output queue full");
            return;
        }
        if !reply && pkt.payload.first() != Some(&b'@') {
            // As xenstored: an event identical to one still queued is dropped.
            let k = event_key(&pkt.payload);
            if c.pending_events.contains_key(&k)
                && c.out
                    .iter()
                    .any(|q| q.header.ty == XsOp::WatchEvent as u32 && q.payload == pkt.payload)
            {
                return;
            }
            *c.pending_events.entry(k).or_insert(0) += 1;
        }
        if c.out.is_empty() {
            self.ready.push(conn);
            self.output.insert(conn);
        }
        c.out_bytes += pkt.buffer_len();
        if reply {
            c.replies += 1;
        }
        c.out.push_back(pkt);
    }

    /// Handles one request of `conn`. Replies and events are queued (see
    /// [`Store::pop`]); the request is not consumed on `Err`.
    pub fn handle(&mut self, conn: ConnId, h: &Header, payload: &[u8]) -> Result<(), HandleError> {
        let domid = self.conns.get(&conn).ok_or(HandleError::UnknownConn)?.domid;
        if !self.can_accept(conn) {
            return Err(HandleError::Busy);
        }
        let op = h.op();
        let (reply_op, body) = match self.dispatch(conn, domid, op, h, payload) {
            Ok(b) if b.len() <= PAYLOAD_MAX => (op.unwrap_or(XsOp::Error), b),
            Ok(_) => (XsOp::Error, cstr(crate::wire::error_name(Errno::E2BIG))),
            Err(e) => (XsOp::Error, cstr(crate::wire::error_name(e))),
        };
        // As in xenstored, the events an operation fires are queued before
        // its reply...
        let fires = core::mem::take(&mut self.fires);
        for f in &fires {
            self.fire(f);
        }
        self.fires = fires;
        self.fires.clear();
        let pkt = Packet::new(reply_op, h.req_id, h.tx_id, body);
        self.push(conn, pkt, true);
        // ... but the first event of a new watch follows its reply.
        if op == Some(XsOp::Watch) && reply_op == XsOp::Watch {
            if let Some(w) = self
                .conns
                .get(&conn)
                .and_then(|c| c.watches.last())
                .cloned()
            {
                self.send_event(conn, &w.path[w.rel_strip()..], &w.token);
            }
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        domid: DomId,
        op: Option<XsOp>,
        h: &Header,
        p: &[u8],
    ) -> Result<Vec<u8>, Errno> {
        use XsOp::*;
        let op = op.ok_or(Errno::ENOSYS)?;
        let privileged = self.is_priv(domid);
        match op {
            WatchEvent | Error => return Err(Errno::ENOSYS),
            Control | Introduce | Release | IsDomainIntroduced | Resume | SetTarget
                if !privileged =>
            {
                return Err(Errno::EACCES)
            }
            _ => {}
        }
        // Every request but (UN)WATCH names a transaction that must exist.
        if h.tx_id != 0
            && !matches!(op, Watch | Unwatch)
            && !self
                .conns
                .get(&conn)
                .is_some_and(|c| c.txns.contains_key(&h.tx_id))
        {
            return Err(Errno::ENOENT);
        }
        match op {
            Watch => return self.do_watch(conn, domid, p),
            Unwatch => return self.do_unwatch(conn, domid, p),
            TransactionStart => return self.do_txn_start(conn, h.tx_id, privileged),
            TransactionEnd => return self.do_txn_end(conn, domid, h.tx_id, p),
            Introduce => return self.do_introduce(p),
            Release => return self.do_release(p),
            Resume => return self.do_resume(p),
            SetTarget => return self.do_set_target(p),
            IsDomainIntroduced => {
                let s = onearg(p)?;
                let d = c_atoi(s);
                let yes = d == u32::from(DomId::SELF.0)
                    || u16::try_from(d)
                        .ok()
                        .and_then(|d| self.domains.get(&DomId(d)))
                        .is_some_and(|x| x.introduced);
                return Ok(if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                });
            }
            GetDomainPath => {
                let s = onearg(p)?;
                return Ok(cstr(&format!("/local/domain/{}", c_atoi(s))));
            }
            ResetWatches => {
                self.reset_watches(conn);
                return Ok(OK.to_vec());
            }
            Control => return self.do_control(p),
            _ => {}
        }
        // Tree operations, inside or outside a transaction.
        let (mut txn, budget) = if h.tx_id != 0 {
            let c = self.conns.get_mut(&conn).ok_or(Errno::EIO)?;
            let t = c.txns.remove(&h.tx_id).ok_or(Errno::ENOENT)?;
            // What this transaction may grow to: the others of the
            // connection and of the store keep what they hold.
            let conn_room = self
                .cfg
                .txn_bytes_per_conn
                .saturating_sub(c.txn_bytes - t.bytes);
            let total_room = self
                .cfg
                .txn_bytes_total
                .saturating_sub(self.txn_bytes - t.bytes);
            let mut budget = conn_room.min(total_room);
            if !privileged {
                budget = budget.min(self.cfg.quotas.txn_bytes);
            }
            (Some(t), budget)
        } else {
            (None, 0)
        };
        let before = txn.as_ref().map_or(0, |t| t.bytes);
        let r = self.tree_op(domid, op, p, txn.as_mut(), budget);
        if let Some(t) = txn {
            if let Some(c) = self.conns.get_mut(&conn) {
                // Bytes only grow inside a transaction.
                let grown = t.bytes - before;
                c.txn_bytes += grown;
                self.txn_bytes += grown;
                c.txns.insert(h.tx_id, t);
            }
        }
        r
    }

    fn tree_op(
        &mut self,
        domid: DomId,
        op: XsOp,
        p: &[u8],
        txn: Option<&mut Txn>,
        txn_budget: usize,
    ) -> Result<Vec<u8>, Errno> {
        let who = self.who(domid);
        let maxrel = self.cfg.quotas.path_len;
        let special_perm = |s: &Self, name: &[u8]| -> Option<Perms> {
            match name {
                b"@introduceDomain" => Some(s.special_intro.clone()),
                b"@releaseDomain" => Some(s.special_release.clone()),
                _ => None,
            }
        };
        if op == XsOp::SetPerms && p.first() == Some(&b'@') {
            // Special paths carry permissions but are not nodes.
            if count_strings(p) < 2 {
                return Err(Errno::EINVAL);
            }
            let name = strings(p, 1)[0];
            let perms = Perms::parse(&p[name.len() + 1..])?;
            let cur = special_perm(self, name).ok_or(Errno::ENOENT)?;
            if bits(&cur, &who) & (W | O) != (W | O) {
                return Err(Errno::EACCES);
            }
            if name == INTRODUCE.as_bytes() {
                self.special_intro = perms.clone();
            } else {
                self.special_release = perms.clone();
            }
            self.tree.record(Mutation::SpecialPerms {
                path: core::str::from_utf8(name).unwrap_or("").into(),
                perms,
            });
            return Ok(OK.to_vec());
        }
        let q = &self.cfg.quotas;
        let mut cx = Ctx {
            tree: &mut self.tree,
            txn,
            txn_budget,
            who,
            q,
            fires: &mut self.fires,
        };
        match op {
            XsOp::Read => {
                let name = path::canonical(domid, onearg(p)?, maxrel)?;
                Ok(cx.node(&name, R)?.value.to_vec())
            }
            XsOp::GetPerms => {
                let name = path::canonical(domid, onearg(p)?, maxrel)?;
                let mut out = Vec::new();
                cx.node(&name, R)?.perms.emit(&mut out);
                Ok(out)
            }
            XsOp::Directory => {
                let name = path::canonical(domid, onearg(p)?, maxrel)?;
                Ok(cx.node(&name, R)?.children.clone())
            }
            XsOp::DirectoryPart => {
                if count_strings(p) != 2 {
                    return Err(Errno::EINVAL);
                }
                let a = strings(p, 2);
                let name = path::canonical(domid, a[0], maxrel)?;
                let off = usize::try_from(c_atoi(a[1])).unwrap_or(usize::MAX);
                let n = cx.node(&name, R)?;
                Ok(directory_part(n, off))
            }
            XsOp::Write => {
                let a = strings(p, 1);
                let Some(raw) = a.first() else {
                    return Err(Errno::EINVAL);
                };
                let value = &p[raw.len() + 1..];
                let name = path::canonical(domid, raw, maxrel)?;
                if !who.privileged && value.len() > q.value_size {
                    return Err(Errno::ENOSPC);
                }
                match cx.node(&name, W) {
                    Ok(n) => {
                        if !who.privileged && value.len() + n.children.len() > q.value_size {
                            return Err(Errno::ENOSPC);
                        }
                        let mut n = n.clone();
                        n.value = Arc::from(value);
                        cx.put(&name, n)?;
                    }
                    Err(Errno::ENOENT) => cx.create(&name, Arc::from(value))?,
                    Err(e) => return Err(e),
                }
                cx.fire(Fire {
                    path: name.as_ref().into(),
                    exact: false,
                    old: None,
                    node: None,
                    parent: None,
                })?;
                Ok(OK.to_vec())
            }
            XsOp::Mkdir => {
                let name = path::canonical(domid, onearg(p)?, maxrel)?;
                match cx.node(&name, W) {
                    Ok(_) => {}
                    Err(Errno::ENOENT) => {
                        cx.create(&name, Arc::from(&[][..]))?;
                        cx.fire(Fire {
                            path: name.as_ref().into(),
                            exact: false,
                            old: None,
                            node: None,
                            parent: None,
                        })?;
                    }
                    Err(e) => return Err(e),
                }
                Ok(OK.to_vec())
            }
            XsOp::Rm => {
                let name = path::canonical(domid, onearg(p)?, maxrel)?;
                match cx.node(&name, W) {
                    Ok(_) => {}
                    Err(Errno::ENOENT) => {
                        return if cx.get(path::parent(&name))?.is_some() {
                            Ok(OK.to_vec())
                        } else {
                            Err(Errno::ENOENT)
                        };
                    }
                    Err(e) => return Err(e),
                }
                if &*name == "/" {
                    return Err(Errno::EINVAL);
                }
                cx.remove_tree(&name)?;
                Ok(OK.to_vec())
            }
            XsOp::SetPerms => {
                let n = count_strings(p);
                if n < 2 {
                    return Err(Errno::EINVAL);
                }
                if !who.privileged && n - 1 > q.perms_per_node {
                    return Err(Errno::ENOSPC);
                }
                let raw = strings(p, 1)[0];
                let perms = Perms::parse(&p[raw.len() + 1..])?;
                let name = path::canonical(domid, raw, maxrel)?;
                let node = cx.node(&name, W | O)?;
                if !who.privileged && perms.owner_dom() != node.perms.owner_dom() {
                    return Err(Errno::EPERM);
                }
                let old = node.perms.clone();
                let mut node = node.clone();
                node.perms = perms;
                cx.put(&name, node)?;
                cx.fire(Fire {
                    path: name.as_ref().into(),
                    exact: false,
                    old: Some(old),
                    node: None,
                    parent: None,
                })?;
                Ok(OK.to_vec())
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn do_watch(&mut self, conn: ConnId, domid: DomId, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let a = strings(p, 2);
        if a.len() != 2 {
            return Err(Errno::EINVAL);
        }
        let (raw, token) = (a[0], a[1]);
        let (wpath, rel): (Arc<[u8]>, usize) = if raw.first() == Some(&b'@') {
            if raw.len() > crate::wire::REL_PATH_MAX {
                return Err(Errno::EINVAL);
            }
            (self.watches.intern(raw), 0)
        } else {
            let c = path::canonical(domid, raw, self.cfg.quotas.path_len)?;
            let rel = if raw.first() == Some(&b'/') {
                0
            } else {
                path::domain_path(domid).len()
            };
            (self.watches.intern(c.as_bytes()), rel)
        };
        let privileged = self.is_priv(domid);
        let c = self.conns.get(&conn).ok_or(Errno::EIO)?;
        if c.watches
            .iter()
            .any(|w| *w.path == *wpath && *w.token == *token)
        {
            return Err(Errno::EEXIST);
        }
        let dw = self.domains.get(&domid).map_or(0, |d| d.watches);
        // `>` as C xenstored: one watch more than the quota fits.
        if !privileged && dw > self.cfg.quotas.watches_per_domain {
            return Err(Errno::E2BIG);
        }
        let w = Watch {
            path: wpath,
            token: Arc::from(token),
            rel,
        };
        self.watches.add(conn, &w);
        if let Some(c) = self.conns.get_mut(&conn) {
            // Most connections hold one watch: room for exactly one first
            // (`push` would make room for four).
            if c.watches.is_empty() {
                c.watches.reserve_exact(1);
            }
            c.watches.push(w);
        }
        self.domains.entry(domid).or_default().watches += 1;
        Ok(OK.to_vec())
    }

    fn do_unwatch(&mut self, conn: ConnId, domid: DomId, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let a = strings(p, 2);
        if a.len() != 2 {
            return Err(Errno::EINVAL);
        }
        let full: Vec<u8> = if matches!(a[0].first(), Some(b'/') | Some(b'@')) {
            a[0].to_vec()
        } else {
            let mut v = format!("/local/domain/{}/", domid.0).into_bytes();
            v.extend_from_slice(a[0]);
            v
        };
        let c = self.conns.get_mut(&conn).ok_or(Errno::EIO)?;
        let i = c
            .watches
            .iter()
            .position(|w| *w.path == *full && *w.token == *a[1])
            .ok_or(Errno::ENOENT)?;
        let w = c.watches.remove(i);
        self.watches.remove(conn, &w);
        if let Some(d) = self.domains.get_mut(&domid) {
            d.watches = d.watches.saturating_sub(1);
        }
        Ok(OK.to_vec())
    }

    fn reset_watches(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ws = core::mem::take(&mut c.watches);
        c.txns.clear();
        self.txn_bytes -= core::mem::take(&mut c.txn_bytes);
        let domid = c.domid;
        for w in &ws {
            self.watches.remove(conn, w);
        }
        if let Some(d) = self.domains.get_mut(&domid) {
            d.watches = d.watches.saturating_sub(ws.len() as u32);
        }
    }

    fn do_txn_start(&mut self, conn: ConnId, tx: u32, privileged: bool) -> Result<Vec<u8>, Errno> {
        let max = self.cfg.quotas.transactions;
        let c = self.conns.get_mut(&conn).ok_or(Errno::EIO)?;
        if tx != 0 {
            return Err(Errno::EBUSY);
        }
        // `>` as C xenstored: one transaction more than the quota fits.
        if !privileged && c.txns.len() > max {
            return Err(Errno::ENOSPC);
        }
        let mut id = c.next_txid;
        while id == 0 || c.txns.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        c.next_txid = id.wrapping_add(1);
        c.txns.insert(id, Txn::default());
        Ok(cstr(&format!("{id}")))
    }

    fn do_txn_end(
        &mut self,
        conn: ConnId,
        domid: DomId,
        tx: u32,
        p: &[u8],
    ) -> Result<Vec<u8>, Errno> {
        let arg = onearg(p)?;
        let commit = match arg {
            b"T" => true,
            b"F" => false,
            _ => return Err(Errno::EINVAL),
        };
        if tx == 0 {
            return Err(Errno::ENOENT);
        }
        let c = self.conns.get_mut(&conn).ok_or(Errno::EIO)?;
        let t = c.txns.remove(&tx).ok_or(Errno::ENOENT)?;
        c.txn_bytes -= t.bytes;
        self.txn_bytes -= t.bytes;
        if !commit {
            return Ok(OK.to_vec());
        }
        if t.failed {
            // As C xenstored (`trans->fail`).
            return Err(Errno::ENOMEM);
        }
        if !t.validate(&self.tree) {
            tracing::debug!(?conn, tx, "transaction conflict");
            return Err(Errno::EAGAIN);
        }
        if !self.is_priv(domid) && t.created > 0 {
            let mut delta: i64 = 0;
            for (path, e) in &t.entries {
                let before = self
                    .tree
                    .get(path)
                    .is_some_and(|n| n.perms.owner_dom() == domid);
                let after = matches!(&e.state, Some(Some(n)) if n.perms.owner_dom() == domid)
                    || (e.state.is_none() && before);
                delta += i64::from(after) - i64::from(before);
            }
            let now = i64::from(self.tree.count(domid));
            if now + delta > i64::from(self.cfg.quotas.nodes_per_domain) {
                tracing::debug!(?domid, "node quota hit at commit");
                return Err(Errno::ENOSPC);
            }
        }
        let mut fires = Vec::new();
        for (path, e) in t.entries {
            match e.state {
                Some(Some(n)) => self.tree.put(&path, n),
                Some(None) => {
                    self.tree.remove(&path);
                }
                None => {}
            }
            if let Some(exact) = e.fire {
                fires.push(Fire {
                    path,
                    exact,
                    old: e.orig_perms,
                    node: None,
                    parent: None,
                });
            }
        }
        self.fires.extend(fires);
        Ok(OK.to_vec())
    }

    fn do_introduce(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let (domid, gfn, port) = introduce_args(p)?;
        if domid != DomId::DOM0 {
            // `domain_conn_reset`: a (re-)introduced domain starts clean.
            for c in self.conns_of(domid) {
                self.reset_watches(c);
                self.output.remove(&c);
                if let Some(x) = self.conns.get_mut(&c) {
                    x.out.clear();
                    x.out_bytes = 0;
                    x.replies = 0;
                    x.pending_events.clear();
                }
            }
        }
        let d = self.domains.entry(domid).or_default();
        let fresh = !d.introduced;
        d.introduced = true;
        d.ring = (gfn, port);
        self.effects.push(Effect::Introduce { domid, gfn, port });
        if fresh {
            self.tree.record(Mutation::Introduce { domid, gfn, port });
            if domid != DomId::DOM0 {
                self.fires.push(special_fire(INTRODUCE));
            }
        }
        Ok(OK.to_vec())
    }

    fn introduced_arg(&self, p: &[u8]) -> Result<DomId, Errno> {
        let s = onearg(p)?;
        let d = c_atoi(s);
        if d == 0 {
            return Err(Errno::EINVAL);
        }
        let d = u16::try_from(d).map(DomId).map_err(|_| Errno::ENOENT)?;
        match self.domains.get(&d) {
            Some(x) if x.introduced => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    fn do_release(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let domid = self.introduced_arg(p)?;
        let conns = self.release_domain(domid);
        self.tree.record(Mutation::Release { domid });
        self.effects.push(Effect::Release { domid, conns });
        self.fires.push(special_fire(RELEASE));
        Ok(OK.to_vec())
    }

    /// Drops a domain: its connections, the nodes it owns, and its entries
    /// in other nodes' ACLs (so a re-created domid inherits nothing,
    /// XSA-322). Not recorded as node mutations: replay runs it again.
    ///
    /// The cost is proportional to the domain's own nodes and connections
    /// (the tree's per-domain index), not to the size of the store. Owned
    /// nodes go in path order, so a subtree is removed from its top.
    fn release_domain(&mut self, domid: DomId) -> Vec<ConnId> {
        let conns = self.conns_of(domid);
        for c in &conns {
            self.disconnect(*c);
        }
        self.domains.remove(&domid);
        let was = self.tree.set_recording(false);
        let mut owned: Vec<String> = self
            .tree
            .owned_by(domid)
            .filter(|p| *p != "/")
            .map(str::to_owned)
            .collect();
        owned.sort_unstable();
        for p in owned {
            if self.tree.get(&p).is_some() {
                let mut fires = Vec::new();
                let mut cx = Ctx {
                    tree: &mut self.tree,
                    txn: None,
                    txn_budget: 0,
                    who: Who {
                        dom: DomId::DOM0,
                        privileged: true,
                        target: None,
                    },
                    q: &self.cfg.quotas,
                    fires: &mut fires,
                };
                let _ = cx.remove_tree(&p);
                self.fires.extend(fires);
            }
        }
        let mut acl: Vec<(String, Perms)> = self
            .tree
            .acl_names(domid)
            .filter_map(|p| {
                let np = self.tree.get(p)?.perms.without(domid)?;
                Some((p.to_owned(), np))
            })
            .collect();
        acl.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (p, np) in acl {
            // A fresh generation, so that an open transaction that saw the
            // old list cannot commit it back.
            if let Some(n) = self.tree.get(&p) {
                let mut n = n.clone();
                n.perms = np;
                self.tree.put(&p, n);
            }
        }
        if let Some(np) = self.special_intro.without(domid) {
            self.special_intro = np;
        }
        if let Some(np) = self.special_release.without(domid) {
            self.special_release = np;
        }
        for d in self.domains.values_mut() {
            if d.target == Some(domid) {
                d.target = None;
            }
        }
        self.tree.set_recording(was);
        conns
    }

    fn do_resume(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let domid = self.introduced_arg(p)?;
        self.effects.push(Effect::Resume { domid });
        Ok(OK.to_vec())
    }

    fn do_set_target(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let a = strings(p, 2);
        if a.len() < 2 {
            return Err(Errno::EINVAL);
        }
        let d = domid_arg(a[0]).map_err(|_| Errno::ENOENT)?;
        let t = domid_arg(a[1]).map_err(|_| Errno::ENOENT)?;
        for x in [d, t] {
            if !self.domains.get(&x).is_some_and(|x| x.introduced) {
                return Err(Errno::ENOENT);
            }
        }
        if let Some(x) = self.domains.get_mut(&d) {
            x.target = Some(t);
        }
        self.tree.record(Mutation::SetTarget {
            domid: d,
            target: t,
        });
        Ok(OK.to_vec())
    }

    fn do_control(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let a = strings(p, 8);
        let cmd = a.first().copied().unwrap_or(b"");
        match cmd {
            b"check" | b"log" | b"print" | b"logfile" => Ok(OK.to_vec()),
            b"help" => Ok(cstr(
                "check\t\nlog\ton|off\nprint\t<string>\nquota\t\nmemreport\t\nhelp\t\n",
            )),
            b"quota" => {
                let q = &self.cfg.quotas;
                Ok(cstr(&format!(
                    "Max number of nodes per domain: {}\nMax size of a node: {}\nMax number of watches per domain: {}\nMax number of transactions per domain: {}\nMax number of outstanding requests per domain: {}\nMax number of permissions per node: {}\nMax number of nodes in a transaction: {}\nMax path length: {}\n",
                    q.nodes_per_domain, q.value_size, q.watches_per_domain, q.transactions,
                    q.outstanding, q.perms_per_node, q.txn_nodes, q.path_len
                )))
            }
            b"memreport" => {
                let s = self.stats();
                Ok(cstr(&format!(
                    "nodes {} conns {} watches {} txns {} queued {} bytes {} dropped {}\n",
                    s.nodes, s.conns, s.watches, s.txns, s.queued, s.queued_bytes, s.dropped_events
                )))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn send_event(&mut self, conn: ConnId, path: &[u8], token: &[u8]) {
        let len = path.len() + token.len() + 2;
        if len > PAYLOAD_MAX {
            return;
        }
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(path);
        body.push(0);
        body.extend_from_slice(token);
        body.push(0);
        self.push(conn, Packet::new(XsOp::WatchEvent, 0, 0, body), false);
    }

    fn readable(&self, who: &Who, f: &Fire) -> bool {
        if f.path.starts_with('@') {
            let p = match &*f.path {
                INTRODUCE => &self.special_intro,
                RELEASE => &self.special_release,
                _ => return false,
            };
            return bits(p, who) & R != 0;
        }
        if f.old.as_ref().is_some_and(|p| bits(p, who) & R != 0) {
            return true;
        }
        let node = match &f.node {
            Some(p) => p,
            None => match self.tree.get(&f.path) {
                Some(n) => &n.perms,
                None => return false,
            },
        };
        if bits(node, who) & R != 0 {
            return true;
        }
        if &*f.path == "/" {
            return false;
        }
        let parent = match &f.parent {
            Some(p) => Some(p),
            None => self.tree.get(path::parent(&f.path)).map(|n| &n.perms),
        };
        parent.is_some_and(|p| bits(p, who) & R != 0)
    }

    fn fire(&mut self, f: &Fire) {
        if self.watches.is_empty() {
            return;
        }
        let mut targets: Vec<(ConnId, Arc<[u8]>, usize)> = Vec::new();
        let mut visit = |s: &Self, key: &str| {
            if let Some(refs) = s.watches.get(key.as_bytes()) {
                for r in refs {
                    targets.push((r.conn, r.token.clone(), r.rel));
                }
            }
        };
        if f.exact || f.path.starts_with('@') {
            visit(self, &f.path);
        } else {
            for a in watch::self_and_ancestors(&f.path) {
                visit(self, a);
            }
        }
        for (conn, token, rel) in targets {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let who = self.who(c.domid);
            if !self.readable(&who, f) {
                continue;
            }
            let ev = f.path.as_bytes();
            let ev = if rel > 0 && ev.len() >= rel {
                let rest = &ev[rel..];
                rest.strip_prefix(b"/").unwrap_or(rest)
            } else {
                ev
            };
            self.send_event(conn, ev, &token);
        }
    }

    /// Applies changes made outside the store's request path (a
    /// replicated `/pool` entry mirrored here), like [`Store::apply`]
    /// (nothing is recorded or checked), then fires the watches of each
    /// path of `fire` as its own write or removal would: a changed node's
    /// watches and its ancestors'; for a removed node also those of every
    /// node removed below it. Who could read a node before or after the
    /// change hears of it.
    pub fn apply_external(&mut self, mutations: &[Mutation], fire: &[String]) {
        // What existed before: each fired path's permissions, and the
        // nodes below it with their own and their parents' permissions.
        // (path, its perms, its parent's perms) of each node below.
        type Below = Vec<(String, Perms, Perms)>;
        let mut before: Vec<(Option<Perms>, Below)> = Vec::new();
        for p in fire {
            let Some(n) = self.tree.get(p) else {
                before.push((None, Vec::new()));
                continue;
            };
            let mut below = Vec::new();
            let mut stack: Vec<(String, Perms)> = n
                .child_names()
                .map(|c| (path::join(p, c), n.perms.clone()))
                .collect();
            while let Some((cur, parent)) = stack.pop() {
                if let Some(c) = self.tree.get(&cur) {
                    stack.extend(
                        c.child_names()
                            .map(|k| (path::join(&cur, k), c.perms.clone())),
                    );
                    below.push((cur, c.perms.clone(), parent));
                }
            }
            before.push((Some(n.perms.clone()), below));
        }
        for m in mutations {
            self.apply(m);
        }
        for (p, (was, below)) in fire.iter().zip(before) {
            self.fire(&Fire {
                path: p.as_str().into(),
                exact: false,
                old: was,
                node: None,
                parent: None,
            });
            for (cur, perms, parent) in below {
                if self.tree.get(&cur).is_none() {
                    self.fire(&Fire {
                        path: cur.into(),
                        exact: true,
                        old: None,
                        node: Some(perms),
                        parent: Some(parent),
                    });
                }
            }
        }
    }

    /// Replays one logged mutation (recovery). Nothing fires, nothing is
    /// recorded, no permission or quota is checked.
    pub fn apply(&mut self, m: &Mutation) {
        let was = self.tree.set_recording(false);
        match m {
            Mutation::Write {
                path: p,
                value,
                perms,
            } => {
                if path::is_valid(p.as_bytes()) {
                    self.apply_write(p, value.clone(), perms.clone());
                }
            }
            Mutation::Remove { path: p } => {
                if &**p != "/" && self.tree.get(p).is_some() {
                    let mut fires = Vec::new();
                    let mut cx = Ctx {
                        tree: &mut self.tree,
                        txn: None,
                        txn_budget: 0,
                        who: Who {
                            dom: DomId::DOM0,
                            privileged: true,
                            target: None,
                        },
                        q: &self.cfg.quotas,
                        fires: &mut fires,
                    };
                    let _ = cx.remove_tree(p);
                }
            }
            Mutation::SpecialPerms { path: p, perms } => match &**p {
                INTRODUCE => self.special_intro = perms.clone(),
                RELEASE => self.special_release = perms.clone(),
                _ => {}
            },
            Mutation::Introduce { domid, gfn, port } => {
                let d = self.domains.entry(*domid).or_default();
                d.introduced = true;
                d.ring = (*gfn, *port);
            }
            Mutation::Release { domid } => {
                self.release_domain(*domid);
            }
            Mutation::SetTarget { domid, target } => {
                self.domains.entry(*domid).or_default().target = Some(*target);
            }
        }
        self.tree.set_recording(was);
    }

    /// The whole state as mutations that rebuild it on a fresh store with
    /// [`Store::apply`]: introduced domains and their targets, special
    /// permissions, then every node, parents before children and children
    /// in directory order. For snapshots of the persistence layer.
    pub fn snapshot(&self) -> Vec<Mutation> {
        let mut out = Vec::with_capacity(self.tree.len() + self.domains.len() + 2);
        for (d, x) in &self.domains {
            if x.introduced && *d != DomId::DOM0 {
                out.push(Mutation::Introduce {
                    domid: *d,
                    gfn: x.ring.0,
                    port: x.ring.1,
                });
            }
        }
        for (d, x) in &self.domains {
            if let (true, Some(t)) = (x.introduced, x.target) {
                out.push(Mutation::SetTarget {
                    domid: *d,
                    target: t,
                });
            }
        }
        for (name, p) in [
            (INTRODUCE, &self.special_intro),
            (RELEASE, &self.special_release),
        ] {
            out.push(Mutation::SpecialPerms {
                path: name.into(),
                perms: p.clone(),
            });
        }
        // Depth first along the children lists, without recursion.
        let mut stack: Vec<String> = alloc::vec!["/".to_owned()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.tree.get(&p) else { continue };
            out.push(Mutation::Write {
                path: p.as_str().into(),
                value: n.value.clone(),
                perms: n.perms.clone(),
            });
            let kids: Vec<&str> = n.child_names().collect();
            for c in kids.into_iter().rev() {
                stack.push(path::join(&p, c));
            }
        }
        out
    }

    fn apply_write(&mut self, p: &str, value: Arc<[u8]>, perms: Perms) {
        if let Some(n) = self.tree.get(p) {
            let mut n = n.clone();
            n.value = value;
            n.perms = perms;
            self.tree.put(p, n);
            return;
        }
        // Create missing parents with the nearest ancestor's permissions.
        let mut missing = alloc::vec![p.to_owned()];
        let mut cur = path::parent(p).to_owned();
        while self.tree.get(&cur).is_none() {
            missing.push(cur.clone());
            cur = path::parent(&cur).to_owned();
        }
        let inherit = self
            .tree
            .get(&cur)
            .map_or_else(Perms::dom0_only, |n| n.perms.clone());
        for m in missing.iter().rev() {
            let parent = path::parent(m);
            if let Some(pn) = self.tree.get(parent) {
                let mut pn = pn.clone();
                pn.add_child(path::basename(m));
                self.tree.put(parent, pn);
            }
            let (v, pr) = if m == p {
                (value.clone(), perms.clone())
            } else {
                (Arc::from(&[][..]), inherit.clone())
            };
            self.tree.put(m, Node::new(v, pr));
        }
    }

    /// Checks the tree's invariants (every node's parent exists and lists
    /// it, every listed child exists, counts match owners, the per-domain
    /// index matches the permissions, the bookkeeping of connections
    /// matches them). For tests and fuzzing.
    pub fn check_consistency(&self) -> bool {
        let mut counts: BTreeMap<DomId, u32> = BTreeMap::new();
        for (p, n) in self.tree.iter() {
            *counts.entry(n.perms.owner_dom()).or_default() += 1;
            for c in n.child_names() {
                if self.tree.get(&path::join(p, c)).is_none() {
                    return false;
                }
            }
            if p != "/" {
                match self.tree.get(path::parent(p)) {
                    Some(pn) => {
                        if !pn.child_names().any(|c| c == path::basename(p)) {
                            return false;
                        }
                    }
                    None => return false,
                }
            }
        }
        let conns_ok = self.conns.iter().all(|(id, c)| {
            self.output.contains(id) != c.out.is_empty()
                && self
                    .domains
                    .get(&c.domid)
                    .is_some_and(|d| d.conns.iter().filter(|x| *x == id).count() == 1)
        }) && self.output.iter().all(|id| self.conns.contains_key(id))
            && self
                .domains
                .values()
                .all(|d| d.conns.iter().all(|id| self.conns.contains_key(id)));
        let txns_ok = self
            .conns
            .values()
            .all(|c| c.txns.values().map(|t| t.bytes).sum::<usize>() == c.txn_bytes)
            && self.conns.values().map(|c| c.txn_bytes).sum::<usize>() == self.txn_bytes;
        txns_ok
            && counts.iter().all(|(d, c)| self.tree.count(*d) == *c)
            && self.tree.check_index()
            && conns_ok
    }
}

impl Watch {
    fn rel_strip(&self) -> usize {
        if self.rel == 0 {
            0
        } else {
            // "/local/domain/<id>" plus the '/' after it, bounded by the path.
            (self.rel + 1).min(self.path.len())
        }
    }
}

fn special_fire(name: &str) -> Fire {
    Fire {
        path: name.into(),
        exact: true,
        old: None,
        node: None,
        parent: None,
    }
}

/// `send_directory_part`: generation, then as many children from byte
/// offset `off` as fit, with an empty string after the last one.
fn directory_part(n: &Node, off: usize) -> Vec<u8> {
    let mut out = cstr(&format!("{}", n.gen));
    let genlen = out.len();
    let ch = &n.children;
    if off >= ch.len() {
        out.push(0);
        return out;
    }
    let maxlen = PAYLOAD_MAX - genlen - 1;
    let mut len = 0;
    loop {
        let start = off + len;
        let slen = ch[start..]
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(ch.len() - start);
        if len + slen >= maxlen {
            break;
        }
        len += slen + 1;
        if off + len >= ch.len() {
            break;
        }
    }
    let end = (off + len).min(ch.len());
    out.extend_from_slice(&ch[off..end]);
    if end == ch.len() {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod atoi_tests {
    use super::c_atoi;

    #[test]
    fn like_glibc() {
        assert_eq!(c_atoi(b"12"), 12);
        assert_eq!(c_atoi(b" +7x"), 7);
        assert_eq!(c_atoi(b"abc"), 0);
        assert_eq!(c_atoi(b"-1"), u32::MAX);
        assert_eq!(c_atoi(b"4294967296"), 0);
        assert_eq!(c_atoi(b"99999999999999999999999"), u32::MAX);
        assert_eq!(c_atoi(b"-99999999999999999999999"), 0);
    }
}
