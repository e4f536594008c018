//! Credentials and sessions.
//!
//! [`Credentials`] hold one Argon2id hash (PHC string) per user, persisted
//! in the data directory as `api-credentials` (`user:hash` lines). At first
//! start the `root` password comes from `WINDSOR_ROOT_PASSWORD` when set,
//! otherwise it is generated and handed back once so the caller can print it.
//!
//! [`Sessions`] is XAPI's session table: `session.login_with_password`
//! creates an `OpaqueRef:<uuid>`; every call refreshes its idle timer; at
//! the session limit the least recently used session is dropped (XAPI also
//! destroys the oldest sessions rather than refusing a login). Time is passed
//! in, so the table is tested without sleeping.
//!
//! Expiry is lazy: an idle session is removed when it is next used, at the
//! next login, or by the sweep that any call runs at most once per
//! [`SWEEP_EVERY`]. Every session removed — logged out, expired or evicted —
//! is remembered until [`Sessions::take_ended`] hands it out, so the server
//! can release what the session held (its `xenstore.watch` watchers).

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{eprintln, format, println, vec};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{codes, ApiError};

/// The name of the credentials file inside the data directory.
pub const CREDENTIALS_FILE: &str = "api-credentials";
/// The environment variable that sets `root`'s initial password.
pub const ROOT_PASSWORD_ENV: &str = "WINDSOR_ROOT_PASSWORD";
/// The administrator's user name.
pub const ROOT_USER: &str = "root";

/// Errors loading or storing credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credentials file could not be read or written.
    #[error("credentials file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the credentials file is not `user:phc-hash`.
    #[error("credentials file {path}: line {line} is not `user:hash`")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// The password could not be hashed.
    #[error("hashing a password: {0}")]
    Hash(String),
}

/// How expensive new hashes are. Verification reads the parameters from the
/// stored hash, so a file written with either strength keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashStrength {
    /// Argon2id with the crate's recommended parameters (19 MiB, 2 passes).
    Default,
    /// Argon2id at the minimum cost, for tests only.
    TestOnlyWeak,
}

fn hasher(strength: HashStrength) -> Argon2<'static> {
    match strength {
        HashStrength::Default => Argon2::default(),
        HashStrength::TestOnlyWeak => Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(Params::MIN_M_COST.max(8), 1, 1, None).expect("valid minimum params"),
        ),
    }
}

/// Hashes a password into a PHC string.
pub fn hash_password(password: &str, strength: HashStrength) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    hasher(strength)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// User names and their password hashes.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: BTreeMap<String, String>,
}

/// What [`Credentials::load_or_init`] found or made.
#[derive(Debug)]
pub struct Loaded {
    /// The credentials.
    pub credentials: Credentials,
    /// The generated `root` password, when one was made just now: print it
    /// once, it is not stored anywhere in clear.
    pub generated_password: Option<String>,
}

impl Credentials {
    /// Credentials with one user.
    pub fn single(user: &str, password: &str, strength: HashStrength) -> Result<Self, AuthError> {
        let mut users = BTreeMap::new();
        users.insert(user.to_owned(), hash_password(password, strength)?);
        Ok(Credentials { users })
    }

    /// Credentials from stored hashes, e.g. from the host configuration:
    /// `(user, PHC string)` pairs as [`hash_password`] makes them.
    pub fn from_hashes<U: Into<String>, H: Into<String>>(
        users: impl IntoIterator<Item = (U, H)>,
    ) -> Result<Self, AuthError> {
        let mut map = BTreeMap::new();
        for (user, hash) in users {
            let (user, hash) = (user.into(), hash.into());
            PasswordHash::new(&hash).map_err(|e| AuthError::Hash(format!("{user}: {e}")))?;
            map.insert(user, hash);
        }
        Ok(Credentials { users: map })
    }

    /// Loads `DIR/api-credentials`, or creates it with user `root`: the
    /// password is `root_password` (normally `WINDSOR_ROOT_PASSWORD`) or a
    /// generated one, returned in [`Loaded::generated_password`].
    pub fn load_or_init(
        data_dir: &Path,
        root_password: Option<&str>,
        strength: HashStrength,
    ) -> Result<Loaded, AuthError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let io = |source| AuthError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut users = BTreeMap::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let (user, hash) = line.split_once(':').ok_or(AuthError::BadLine {
                        path: path.clone(),
                        line: i + 1,
                    })?;
                    PasswordHash::new(hash).map_err(|_| AuthError::BadLine {
                        path: path.clone(),
                        line: i + 1,
                    })?;
                    users.insert(user.to_owned(), hash.to_owned());
                }
                Ok(Loaded {
                    credentials: Credentials { users },
                    generated_password: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (password, generated) = match root_password {
                    Some(p) => (p.to_owned(), None),
                    None => {
                        let p = uuid::Uuid::new_v4().simple().to_string();
                        (p.clone(), Some(p))
                    }
                };
                let credentials = Credentials::single(ROOT_USER, &password, strength)?;
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let mut text = String::new();
                for (u, h) in &credentials.users {
                    text.push_str(&format!("{u}:{h}\n"));
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(Loaded {
                    credentials,
                    generated_password: generated,
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// [`load_or_init`](Self::load_or_init) with `root`'s initial password
    /// from `WINDSOR_ROOT_PASSWORD` (when set) and full-strength hashes: what
    /// `windsor up` does with its data directory.
    pub fn load_or_init_from_env(data_dir: &Path) -> Result<Loaded, AuthError> {
        let env = std::env::var(ROOT_PASSWORD_ENV).ok();
        Self::load_or_init(data_dir, env.as_deref(), HashStrength::Default)
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }
}

/// One logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub user: String,
    /// The `originator` the client gave (may be empty).
    pub originator: String,
    /// When the session was last used.
    pub last_used: Instant,
}

/// How often a call sweeps the whole table for expired sessions.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    limit: usize,
    idle_timeout: Duration,
    table: Mutex<HashMap<String, Session>>,
    /// Sessions removed and not yet handed out by `take_ended`, and when
    /// the table was last swept.
    ended: Mutex<(Vec<String>, Option<Instant>)>,
}

impl Sessions {
    /// A table holding at most `limit` sessions, each dropped after
    /// `idle_timeout` without a call.
    pub fn new(limit: usize, idle_timeout: Duration) -> Sessions {
        Sessions {
            limit: limit.max(1),
            idle_timeout,
            table: Mutex::new(HashMap::new()),
            ended: Mutex::new((Vec::new(), None)),
        }
    }

    fn ended(&self) -> std::sync::MutexGuard<'_, (Vec<String>, Option<Instant>)> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_ended(&self, refs: impl IntoIterator<Item = String>) {
        self.ended().0.extend(refs);
    }

    /// The sessions removed (logged out, expired, evicted) since the last
    /// call, each once.
    pub fn take_ended(&self) -> Vec<String> {
        std::mem::take(&mut self.ended().0)
    }

    /// Removes every expired session, at most once per [`SWEEP_EVERY`]
    /// (the removed ones go to [`take_ended`](Self::take_ended)).
    pub fn sweep(&self, now: Instant) {
        {
            let mut e = self.ended();
            if e.1
                .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
            {
                return;
            }
            e.1 = Some(now);
        }
        let gone = self.remove_expired(&mut self.lock(), now);
        self.record_ended(gone);
    }

    fn remove_expired(&self, t: &mut HashMap<String, Session>, now: Instant) -> Vec<String> {
        let idle = self.idle_timeout;
        let gone: Vec<String> = t
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= idle)
            .map(|(r, _)| r.clone())
            .collect();
        for r in &gone {
            t.remove(r);
            tracing::debug!(session = %r, "session expired");
        }
        gone
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session and returns its reference.
    pub fn open(&self, user: &str, originator: &str, now: Instant) -> String {
        let mut t = self.lock();
        let mut gone = self.remove_expired(&mut t, now);
        while t.len() >= self.limit {
            let oldest = t
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(r, _)| r.clone());
            match oldest {
                Some(r) => {
                    tracing::info!(session = %r, "session limit reached: dropping the least recently used session");
                    t.remove(&r);
                    gone.push(r);
                }
                None => break,
            }
        }
        let r = format!("OpaqueRef:{}", uuid::Uuid::new_v4());
        t.insert(
            r.clone(),
            Session {
                user: user.to_owned(),
                originator: originator.to_owned(),
                last_used: now,
            },
        );
        drop(t);
        self.record_ended(gone);
        r
    }

    /// Checks a session and refreshes its idle timer.
    pub fn check(&self, session: &str, now: Instant) -> Result<(), ApiError> {
        let mut t = self.lock();
        match t.get_mut(session) {
            Some(s) if now.saturating_duration_since(s.last_used) < self.idle_timeout => {
                s.last_used = now;
                Ok(())
            }
            Some(_) => {
                t.remove(session);
                drop(t);
                self.record_ended([session.to_owned()]);
                Err(ApiError::session_invalid(session))
            }
            None => Err(ApiError::session_invalid(session)),
        }
    }

    /// Closes a session.
    pub fn close(&self, session: &str) -> Result<(), ApiError> {
        let removed = self.lock().remove(session);
        match removed {
            Some(_) => {
                self.record_ended([session.to_owned()]);
                Ok(())
            }
            None => Err(ApiError::session_invalid(session)),
        }
    }

    /// The record of a session.
    pub fn get(&self, session: &str) -> Option<Session> {
        self.lock().get(session).cloned()
    }

    /// How many sessions are open (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `SESSION_AUTHENTICATION_FAILED(user, message)`.
pub fn authentication_failed(user: &str) -> ApiError {
    ApiError::new(
        codes::SESSION_AUTHENTICATION_FAILED,
        [user, "Authentication failure"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let c = Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap();
        assert!(c.verify("root", "pw"));
        assert!(!c.verify("root", "pw2"));
        assert!(!c.verify("bob", "pw"));
        let a = hash_password("pw", HashStrength::TestOnlyWeak).unwrap();
        let b = hash_password("pw", HashStrength::TestOnlyWeak).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        let c = Credentials::from_hashes([("admin", a)]).unwrap();
        assert!(c.verify("admin", "pw"));
        assert!(Credentials::from_hashes([("x", "plain")]).is_err());
    }

    #[test]
    fn first_start_generates_then_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            Credentials::load_or_init(dir.path(), None, HashStrength::TestOnlyWeak).unwrap();
        let pw = first.generated_password.expect("generated at first start");
        let text = std::fs::read_to_string(dir.path().join(CREDENTIALS_FILE)).unwrap();
        assert!(!text.contains(&pw), "the password is stored hashed");
        let again =
            Credentials::load_or_init(dir.path(), Some("other"), HashStrength::TestOnlyWeak)
                .unwrap();
        assert!(again.generated_password.is_none());
        assert!(again.credentials.verify("root", &pw));
        assert!(!again.credentials.verify("root", "other"));
    }

    #[test]
    fn env_password_is_used_at_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let l = Credentials::load_or_init(dir.path(), Some("s3cret"), HashStrength::TestOnlyWeak)
            .unwrap();
        assert!(l.generated_password.is_none());
        assert!(l.credentials.verify("root", "s3cret"));
        std::fs::write(dir.path().join(CREDENTIALS_FILE), "garbage\n").unwrap();
        assert!(matches!(
            Credentials::load_or_init(dir.path(), None, HashStrength::TestOnlyWeak),
            Err(AuthError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t0 = Instant::now();
        let s = Sessions::new(2, Duration::from_secs(10));
        let a = s.open("root", "", t0);
        assert!(a.starts_with("OpaqueRef:"));
        s.check(&a, t0 + Duration::from_secs(9)).unwrap();
        // The check refreshed the timer.
        s.check(&a, t0 + Duration::from_secs(18)).unwrap();
        assert!(s.take_ended().is_empty());
        let e = s.check(&a, t0 + Duration::from_secs(29)).unwrap_err();
        assert_eq!(e, ApiError::session_invalid(&a));
        assert!(s.is_empty());
        assert_eq!(s.take_ended(), vec![a.clone()], "expired on use");
        assert!(s.take_ended().is_empty(), "handed out once");

        let b = s.open("root", "x", t0);
        let c = s.open("root", "y", t0 + Duration::from_secs(1));
        s.check(&b, t0 + Duration::from_secs(2)).unwrap();
        let d = s.open("root", "z", t0 + Duration::from_secs(3));
        assert_eq!(s.len(), 2);
        assert!(
            s.check(&c, t0 + Duration::from_secs(3)).is_err(),
            "LRU dropped"
        );
        s.check(&b, t0 + Duration::from_secs(3)).unwrap();
        s.check(&d, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(s.take_ended(), [c], "evicted");
        s.close(&d).unwrap();
        assert!(s.close(&d).is_err());
        assert_eq!(s.take_ended(), [d], "logged out");
        assert!(s.check("bogus", t0).is_err());
        assert!(s.take_ended().is_empty());
    }

    #[test]
    fn sweep_reaps_expired_sessions_unused() {
        let t0 = Instant::now();
        let s = Sessions::new(10, Duration::from_secs(10));
        let a = s.open("root", "", t0);
        let b = s.open("root", "", t0 + Duration::from_secs(5));
        s.sweep(t0 + Duration::from_secs(9));
        assert!(s.take_ended().is_empty());
        // Within SWEEP_EVERY of the last sweep: nothing is done.
        s.sweep(t0 + Duration::from_millis(9500));
        assert_eq!(s.len(), 2);
        s.sweep(t0 + Duration::from_secs(11));
        assert_eq!(s.take_ended(), vec![a.clone()]);
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some());
        // A login reaps the expired ones too.
        s.open("root", "", t0 + Duration::from_secs(16));
        assert_eq!(s.take_ended(), [b]);
    }
}
