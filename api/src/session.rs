//! XAPI's session table as a state machine: no lock, no clock, no
//! randomness. The caller passes the time (any monotonic origin) and the
//! new session's reference; `auth::Sessions` (the `std` shell) adds the
//! lock, the clock and the UUIDs.
//!
//! `session.login_with_password` opens a session; every call refreshes its
//! idle timer; at the session limit the least recently used session is
//! dropped (XAPI also destroys the oldest sessions rather than refusing a
//! login). Expiry is lazy: an idle session is removed when it is next used,
//! at the next login, or by the sweep that any call runs at most once per
//! [`SWEEP_EVERY`]. Every session removed — logged out, expired or evicted —
//! is remembered until [`SessionTable::take_ended`] hands it out, so the
//! server can release what the session held (its `xenstore.watch`
//! watchers).

use core::time::Duration;

#[allow(unused_imports)]
use crate::prelude::*;

use crate::error::ApiError;

/// How often a call sweeps the whole table for expired sessions.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who logged in.
    pub user: String,
    /// The `originator` the client gave (may be empty).
    pub originator: String,
    /// When the session was last used (the caller's clock).
    pub last_used: Duration,
}

/// The session table.
#[derive(Debug, Default)]
pub struct SessionTable {
    limit: usize,
    idle_timeout: Duration,
    table: BTreeMap<String, Session>,
    /// Sessions removed and not yet handed out by `take_ended`.
    ended: Vec<String>,
    /// When the table was last swept.
    swept: Option<Duration>,
}

impl SessionTable {
    /// A table holding at most `limit` sessions, each dropped after
    /// `idle_timeout` without a call.
    pub fn new(limit: usize, idle_timeout: Duration) -> SessionTable {
        SessionTable {
            limit: limit.max(1),
            idle_timeout,
            ..SessionTable::default()
        }
    }

    /// The sessions removed (logged out, expired, evicted) since the last
    /// call, each once.
    pub fn take_ended(&mut self) -> Vec<String> {
        core::mem::take(&mut self.ended)
    }

    /// Removes every expired session, at most once per [`SWEEP_EVERY`]
    /// (the removed ones go to [`take_ended`](Self::take_ended)).
    pub fn sweep(&mut self, now: Duration) {
        if self
            .swept
            .is_some_and(|t| now.saturating_sub(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.remove_expired(now);
    }

    fn remove_expired(&mut self, now: Duration) {
        let idle = self.idle_timeout;
        let gone: Vec<String> = self
            .table
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.last_used) >= idle)
            .map(|(r, _)| r.clone())
            .collect();
        for r in gone {
            self.table.remove(&r);
            tracing::debug!(session = %r, "session expired");
            self.ended.push(r);
        }
    }

    /// Opens session `reference` (a fresh `OpaqueRef:<uuid>`), dropping
    /// expired sessions and, at the limit, the least recently used one.
    pub fn open(&mut self, reference: String, user: &str, originator: &str, now: Duration) {
        self.remove_expired(now);
        while self.table.len() >= self.limit {
            let oldest = self
                .table
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(r, _)| r.clone());
            let Some(r) = oldest else { break };
            tracing::info!(session = %r, "session limit reached: dropping the least recently used session");
            self.table.remove(&r);
            self.ended.push(r);
        }
        self.table.insert(
            reference,
            Session {
                user: user.to_owned(),
                originator: originator.to_owned(),
                last_used: now,
            },
        );
    }

    /// Checks a session and refreshes its idle timer.
    pub fn check(&mut self, session: &str, now: Duration) -> Result<(), ApiError> {
        match self.table.get_mut(session) {
            Some(s) if now.saturating_sub(s.last_used) < self.idle_timeout => {
                s.last_used = now;
                Ok(())
            }
            Some(_) => {
                self.table.remove(session);
                self.ended.push(session.to_owned());
                Err(ApiError::session_invalid(session))
            }
            None => Err(ApiError::session_invalid(session)),
        }
    }

    /// Closes a session.
    pub fn close(&mut self, session: &str) -> Result<(), ApiError> {
        match self.table.remove(session) {
            Some(_) => {
                self.ended.push(session.to_owned());
                Ok(())
            }
            None => Err(ApiError::session_invalid(session)),
        }
    }

    /// The record of a session.
    pub fn get(&self, session: &str) -> Option<&Session> {
        self.table.get(session)
    }

    /// How many sessions are open (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn expiry_limit_and_ended_without_a_clock() {
        let mut t = SessionTable::new(2, secs(10));
        t.open("OpaqueRef:a".into(), "root", "x", secs(0));
        t.open("OpaqueRef:b".into(), "root", "y", secs(1));
        assert!(t.check("OpaqueRef:a", secs(5)).is_ok());
        // At the limit the least recently used (b, last used at 1) goes.
        t.open("OpaqueRef:c".into(), "root", "z", secs(6));
        assert_eq!(t.take_ended(), ["OpaqueRef:b"]);
        assert!(t.check("OpaqueRef:b", secs(6)).is_err());
        // Idle past the timeout: gone on use.
        assert!(t.check("OpaqueRef:a", secs(14)).is_ok());
        assert!(t.check("OpaqueRef:c", secs(17)).is_err());
        assert_eq!(t.take_ended(), ["OpaqueRef:c"]);
        // The sweep reaps without a use, at most once a second.
        t.sweep(secs(30));
        assert_eq!(t.take_ended(), ["OpaqueRef:a"]);
        t.open("OpaqueRef:d".into(), "root", "", secs(10));
        t.sweep(Duration::from_millis(30_500));
        assert!(t.take_ended().is_empty(), "swept less than a second ago");
        assert_eq!(t.get("OpaqueRef:d").unwrap().originator, "");
        t.sweep(secs(31));
        assert_eq!(t.take_ended(), ["OpaqueRef:d"]);
        t.open("OpaqueRef:d".into(), "root", "", secs(31));
        assert!(t.close("OpaqueRef:d").is_ok());
        assert!(t.close("OpaqueRef:d").is_err());
        assert_eq!(t.take_ended(), ["OpaqueRef:d"]);
        assert!(t.is_empty());
    }
}
