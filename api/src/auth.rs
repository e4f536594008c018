//! Credentials and sessions.
//!
//! [`Credentials`] hold one Argon2id hash (PHC string) per user, persisted
//! in the data directory as `api-credentials` (`user:hash` lines). At first
//! start the `root` password comes from `WINDSOR_ROOT_PASSWORD` when set,
//! otherwise it is generated and handed back once so the caller can print it.
//!
//! Password checks are bounded: a [`Verifier`] owns the Argon2 memory (a
//! few preallocated buffers, reused), so at most that many checks run at
//! once and a flood of logins cannot grow the heap; a [`LoginLimiter`]
//! spends a token per failed login from a client address and refuses
//! further attempts, without hashing, until tokens come back. A login as an
//! unknown user is checked against a real hash too, so it takes as long as
//! a wrong password for `root`.
//!
//! The data directory is the host's own (`0700`) and the credential file
//! is readable by its owner only (`0600`): [`secure_data_dir`] checks both
//! at start and tightens what is looser, saying so.
//!
//! [`Sessions`] is XAPI's session table ([`crate::session`], the no_std
//! state machine) behind a lock, on the monotonic clock.

#[allow(unused_imports)]
use std::prelude::v1::*;
#[allow(unused_imports)]
use std::{eprintln, format, println, vec};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Condvar;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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
                secure_data_dir(data_dir)?;
                let mut text = String::new();
                for (u, h) in &credentials.users {
                    text.push_str(&format!("{u}:{h}\n"));
                }
                let tmp = path.with_extension("tmp");
                {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(io)?;
                    f.write_all(text.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
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

    /// Whether `password` is `user`'s (with a verifier of its own; a
    /// server shares one [`Verifier`] through [`verify_with`](Self::verify_with)).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.verify_with(&Verifier::new(1), user, password)
    }

    /// Whether `password` is `user`'s, hashing in `verifier`'s memory. An
    /// unknown user is checked against another user's hash (and refused),
    /// so that both take the same time.
    pub fn verify_with(&self, verifier: &Verifier, user: &str, password: &str) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h, true),
            None => match self.users.values().next() {
                Some(h) => (h, false),
                None => return false,
            },
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let ok = verifier.with_memory(|blocks| check(&parsed, password.as_bytes(), blocks));
        ok && known
    }

    /// Whether `user` exists.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// Argon2 memory above this many 1 KiB blocks (1 GiB) is refused.
const MAX_BLOCKS: usize = 1 << 20;

/// Recomputes `hash` for `password` in `blocks` (resized as the hash's
/// parameters need); compares in constant time.
fn check(hash: &PasswordHash<'_>, password: &[u8], blocks: &mut Vec<Block>) -> bool {
    let (Ok(params), Ok(alg)) = (Params::try_from(hash), Algorithm::try_from(hash.algorithm))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let n = params.block_count();
    if n > MAX_BLOCKS {
        return false;
    }
    blocks.resize(n, Block::new());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(alg, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..n])
        .is_err()
    {
        return false;
    }
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// The memory of Argon2 checks: at most `max` buffers, made on first use
/// and reused, so at most `max` checks run at once (others wait) and the
/// heap does not grow with the number of logins.
#[derive(Debug)]
pub struct Verifier {
    max: usize,
    /// Free buffers and how many exist.
    state: Mutex<(Vec<Vec<Block>>, usize)>,
    freed: Condvar,
}

impl Verifier {
    /// A verifier running at most `max` checks at once.
    pub fn new(max: usize) -> Verifier {
        Verifier {
            max: max.max(1),
            state: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
        }
    }

    /// Most checks at once.
    pub fn max(&self) -> usize {
        self.max
    }

    fn with_memory<R>(&self, f: impl FnOnce(&mut Vec<Block>) -> R) -> R {
        let mut buf = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(b) = st.0.pop() {
                    break b;
                }
                if st.1 < self.max {
                    st.1 += 1;
                    break Vec::new();
                }
                st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let r = f(&mut buf);
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(buf);
        self.freed.notify_one();
        r
    }
}

/// Who a failed login is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A TCP client's address.
    Addr(std::net::IpAddr),
    /// A local-socket client's user id.
    Uid(u32),
}

/// Failed logins per client: a bucket of `burst` tokens refilled at
/// `per_sec`; a failed login spends one, and a client with none left is
/// refused without a password check. Time is passed in.
#[derive(Debug)]
pub struct LoginLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<ClientKey, (f64, Instant)>>,
}

/// Clients remembered by a [`LoginLimiter`] (full buckets go first).
const MAX_LIMITED_CLIENTS: usize = 4096;

impl LoginLimiter {
    /// `burst` failures at once, then `per_sec` a second.
    pub fn new(burst: u32, per_sec: f64) -> LoginLimiter {
        LoginLimiter {
            burst: f64::from(burst.max(1)),
            per_sec: per_sec.max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn tokens(&self, b: &mut (f64, Instant), now: Instant) -> f64 {
        let dt = now.saturating_duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + dt * self.per_sec).min(self.burst);
        b.1 = now;
        b.0
    }

    /// Whether `client` may try a password now.
    pub fn allow(&self, client: ClientKey, now: Instant) -> bool {
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&client) {
            Some(b) => self.tokens(b, now) >= 1.0,
            None => true,
        }
    }

    /// Charges a failed login to `client`.
    pub fn failed(&self, client: ClientKey, now: Instant) {
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_LIMITED_CLIENTS && !m.contains_key(&client) {
            let burst = self.burst;
            let per_sec = self.per_sec;
            m.retain(|_, b| {
                b.0 + now.saturating_duration_since(b.1).as_secs_f64() * per_sec < burst
            });
            if m.len() >= MAX_LIMITED_CLIENTS {
                return;
            }
        }
        let b = m.entry(client).or_insert((self.burst, now));
        self.tokens(b, now);
        b.0 = (b.0 - 1.0).max(0.0);
    }
}

/// Makes `data_dir` `0700` and the credential file in it `0600` when they
/// are looser (created if missing); returns what it had to tighten, for the
/// caller to log.
pub fn secure_data_dir(data_dir: &Path) -> Result<Vec<String>, AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let mut fixed = Vec::new();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthError::Io { path, source }
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io(data_dir))?;
    }
    for (path, want) in [
        (data_dir.to_path_buf(), 0o700),
        (data_dir.join(CREDENTIALS_FILE), 0o600),
    ] {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & !want != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
                .map_err(io(&path))?;
            fixed.push(format!(
                "{}: mode {mode:o} was looser than {want:o}; set to {want:o}",
                path.display()
            ));
        }
    }
    Ok(fixed)
}

pub use crate::session::{Session, SWEEP_EVERY};

/// The session table of a server: [`SessionTable`](crate::session::SessionTable)
/// behind a lock, on the monotonic clock, with fresh UUID references.
#[derive(Debug)]
pub struct Sessions {
    origin: Instant,
    table: Mutex<crate::session::SessionTable>,
}

impl Sessions {
    /// A table holding at most `limit` sessions, each dropped after
    /// `idle_timeout` without a call.
    pub fn new(limit: usize, idle_timeout: Duration) -> Sessions {
        Sessions {
            origin: Instant::now(),
            table: Mutex::new(crate::session::SessionTable::new(limit, idle_timeout)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::session::SessionTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// How long `session` has been idle at `now`.
    pub fn idle(&self, session: &Session, now: Instant) -> Duration {
        self.at(now).saturating_sub(session.last_used)
    }

    /// The sessions removed (logged out, expired, evicted) since the last
    /// call, each once.
    pub fn take_ended(&self) -> Vec<String> {
        self.lock().take_ended()
    }

    /// Removes every expired session, at most once per [`SWEEP_EVERY`]
    /// (the removed ones go to [`take_ended`](Self::take_ended)).
    pub fn sweep(&self, now: Instant) {
        let at = self.at(now);
        self.lock().sweep(at);
    }

    /// Opens a session and returns its reference.
    pub fn open(&self, user: &str, originator: &str, now: Instant) -> String {
        let r = format!("OpaqueRef:{}", uuid::Uuid::new_v4());
        let at = self.at(now);
        self.lock().open(r.clone(), user, originator, at);
        r
    }

    /// Checks a session and refreshes its idle timer.
    pub fn check(&self, session: &str, now: Instant) -> Result<(), ApiError> {
        let at = self.at(now);
        self.lock().check(session, at)
    }

    /// Closes a session.
    pub fn close(&self, session: &str) -> Result<(), ApiError> {
        self.lock().close(session)
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
        self.lock().is_empty()
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

    #[test]
    fn failed_logins_are_limited_per_client_with_time_passed_in() {
        let l = LoginLimiter::new(3, 2.0);
        let a = ClientKey::Addr([127, 0, 0, 1].into());
        let b = ClientKey::Uid(1000);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.allow(a, t0));
            l.failed(a, t0);
        }
        assert!(!l.allow(a, t0), "the burst is spent");
        assert!(l.allow(b, t0), "another client is not charged");
        assert!(!l.allow(a, t0 + Duration::from_millis(400)));
        assert!(
            l.allow(a, t0 + Duration::from_millis(600)),
            "2 a second come back"
        );
    }

    #[test]
    fn the_verifier_bounds_concurrent_checks() {
        let c = Credentials::single("root", "pw", HashStrength::TestOnlyWeak).unwrap();
        let v = std::sync::Arc::new(Verifier::new(1));
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (v, busy, peak, c) = (v.clone(), busy.clone(), peak.clone(), &c);
                s.spawn(move || {
                    for _ in 0..5 {
                        v.with_memory(|_| {
                            let n = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                            busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        });
                        assert!(c.verify_with(&v, "root", "pw"));
                        assert!(!c.verify_with(&v, "nobody", "pw"));
                    }
                });
            }
        });
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
