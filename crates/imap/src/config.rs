//! The server's configuration: names, limits, timeouts and the shared switch
//! that refuses client writes (for replica slots).
//!
//! Every limit has its unit in its name. `ImapConfig::default()` is what a
//! slot runs with unless its configuration file says otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Default APPENDLIMIT: 64 MiB, the store's default largest message.
pub const APPEND_LIMIT_BYTES_DEFAULT: u64 = slotmail_store::MESSAGE_SIZE_MAX_DEFAULT;

/// Configuration of an IMAP server (see [`crate::serve`]).
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Host name shown in the greeting.
    pub hostname: String,
    /// Accept LOGIN and AUTHENTICATE PLAIN on a connection without TLS.
    /// Off by default: plaintext credentials are refused with
    /// `NO [PRIVACYREQUIRED]` and LOGINDISABLED is advertised.
    pub allow_plaintext_auth: bool,
    /// Size and count limits.
    pub limits: ImapLimits,
    /// Timers.
    pub timeouts: Timeouts,
    /// When set, every client write (APPEND, STORE, EXPUNGE, COPY, MOVE,
    /// CREATE, ...) is refused with `NO [UNAVAILABLE]`. A replica slot sets
    /// it; it may be flipped at any time (switchover).
    pub read_only: ReadOnlySwitch,
    /// Durable delivery: when set, APPEND answers OK only once the hook
    /// confirmed the new message (a replica holds it).
    pub durable: Option<DurableHook>,
}

/// What the slot checks after an APPEND committed, before the tagged OK:
/// durable delivery (docs/replication.md). Called on the session's blocking
/// thread; it may block for a bounded time.
pub trait DurableAppend: Send + Sync {
    /// `Ok` to answer OK; `Err(text)` to answer `NO [UNAVAILABLE] text`
    /// (the hook has withdrawn the messages). `appended` are the messages
    /// of one APPEND (several with MULTIAPPEND), all or none confirmed.
    fn confirm(
        &self,
        user: &slotmail_store::User,
        mailbox: i64,
        appended: &[slotmail_store::AppendOutcome],
    ) -> Result<(), String>;
}

/// A shared [`DurableAppend`].
#[derive(Clone)]
pub struct DurableHook(pub Arc<dyn DurableAppend>);

impl std::fmt::Debug for DurableHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurableHook")
    }
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".to_string(),
            allow_plaintext_auth: false,
            limits: ImapLimits::default(),
            timeouts: Timeouts::default(),
            read_only: ReadOnlySwitch::default(),
            durable: None,
        }
    }
}

/// A shared on/off switch: clones see the same value. Besides the whole
/// slot, single users can be frozen (a user being moved to another store,
/// docs/operations.md): their writes are refused like a replica's, every
/// other user's go on.
#[derive(Debug, Clone, Default)]
pub struct ReadOnlySwitch(Arc<AtomicBool>, Arc<std::sync::RwLock<FrozenUsers>>);

/// Users whose writes are refused, each until an optional deadline.
#[derive(Debug, Default)]
struct FrozenUsers(std::collections::HashMap<String, Option<std::time::Instant>>);

/// Most users frozen at once on one slot (moves run one user at a time per
/// command; this bounds the set against a runaway caller).
pub const FROZEN_USERS_MAX: usize = 4096;

impl ReadOnlySwitch {
    /// A switch in the given position.
    pub fn new(read_only: bool) -> Self {
        ReadOnlySwitch(Arc::new(AtomicBool::new(read_only)), Arc::default())
    }

    /// Refuse (true) or allow (false) client writes from now on.
    pub fn set(&self, read_only: bool) {
        self.0.store(read_only, Ordering::SeqCst);
    }

    /// Whether client writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Refuse (`Some(until)`: until that instant, or for good with `None`
    /// inside) or allow (`None`) `user`'s writes from now on. Returns
    /// whether the user was frozen before. Refused (`Err`) when
    /// [`FROZEN_USERS_MAX`] other users are frozen.
    pub fn freeze_user(
        &self,
        user: &str,
        frozen: Option<Option<std::time::Instant>>,
    ) -> Result<bool, usize> {
        let mut set = self.1.write().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        set.0.retain(|_, until| until.is_none_or(|t| t > now));
        let was = set.0.contains_key(user);
        match frozen {
            Some(until) => {
                if !was && set.0.len() >= FROZEN_USERS_MAX {
                    return Err(FROZEN_USERS_MAX);
                }
                set.0.insert(user.to_string(), until);
            }
            None => {
                set.0.remove(user);
            }
        }
        Ok(was)
    }

    /// Whether `user`'s writes are refused (the whole slot, or the user).
    pub fn is_frozen(&self, user: &str) -> bool {
        if self.is_read_only() {
            return true;
        }
        let set = self.1.read().unwrap_or_else(|e| e.into_inner());
        set.0
            .get(user)
            .is_some_and(|until| until.is_none_or(|t| t > std::time::Instant::now()))
    }
}

/// Size and count limits of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapLimits {
    /// Longest command line, in bytes, CRLF excluded.
    pub line_bytes_max: usize,
    /// Largest sum of the lines of one command (literals excluded), in bytes.
    pub command_bytes_max: usize,
    /// Largest literal after login, in bytes: the advertised APPENDLIMIT.
    pub literal_bytes_max: u64,
    /// Largest literal before login (LOGIN credentials), in bytes.
    pub preauth_literal_bytes_max: u64,
    /// Most simultaneous connections.
    pub connections_max: usize,
    /// Most simultaneous logged-in connections of one user.
    pub connections_per_user_max: usize,
    /// Consecutive BAD replies after which the connection is closed.
    pub bad_commands_in_row_max: u32,
    /// Failed logins after which the connection is closed.
    pub failed_logins_max: u32,
    /// Failed logins of one user name from one client address, across
    /// connections, within `Timeouts::failed_login_window`, after which
    /// that pair's logins are refused (`NO [UNAVAILABLE]`) without a
    /// password check until the window has passed.
    pub failed_logins_per_address_user_max: u32,
    /// Most (address, user name) pairs the failed-login table remembers.
    pub failed_login_keys_max: usize,
    /// Read buffer between commands, in bytes.
    pub read_buffer_bytes: usize,
    /// Read buffer while a literal is being received, in bytes.
    pub literal_read_buffer_bytes: usize,
    /// Output is handed to the socket in chunks of about this size, in bytes.
    pub output_chunk_bytes: usize,
}

impl Default for ImapLimits {
    fn default() -> Self {
        ImapLimits {
            line_bytes_max: 64 * 1024,
            command_bytes_max: 1024 * 1024,
            literal_bytes_max: APPEND_LIMIT_BYTES_DEFAULT,
            preauth_literal_bytes_max: 8 * 1024,
            connections_max: 20_000,
            connections_per_user_max: 50,
            bad_commands_in_row_max: 10,
            failed_logins_max: 5,
            failed_logins_per_address_user_max: 10,
            failed_login_keys_max: 10_000,
            read_buffer_bytes: 4 * 1024,
            literal_read_buffer_bytes: 64 * 1024,
            output_chunk_bytes: 64 * 1024,
        }
    }
}

/// Timers of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Inactivity before login (greeting to LOGIN), then `* BYE`.
    pub preauth: Duration,
    /// Inactivity after login (RFC 9051 §5.4: at least 30 minutes).
    pub authenticated: Duration,
    /// Longest IDLE without any client traffic (RFC 2177: at least 30 minutes).
    pub idle: Duration,
    /// Longest time one write to the client may take.
    pub write: Duration,
    /// Longest TLS handshake.
    pub tls_handshake: Duration,
    /// Delay after the first failed login; doubles with every further
    /// failure on the same connection.
    pub failed_login_delay: Duration,
    /// Longest delay after a failed login.
    pub failed_login_delay_max: Duration,
    /// The window in which failed logins of one address and user name are
    /// counted (`ImapLimits::failed_logins_per_address_user_max`).
    pub failed_login_window: Duration,
    /// How long shutdown waits for connections to finish their command.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            preauth: Duration::from_secs(60),
            authenticated: Duration::from_secs(30 * 60),
            idle: Duration::from_secs(31 * 60),
            write: Duration::from_secs(5 * 60),
            tls_handshake: Duration::from_secs(30),
            failed_login_delay: Duration::from_millis(500),
            failed_login_delay_max: Duration::from_secs(8),
            failed_login_window: Duration::from_secs(10 * 60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// The delay before answering the `n`th failed login (n ≥ 1).
    pub fn login_delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        self.failed_login_delay
            .saturating_mul(1u32 << shift)
            .min(self.failed_login_delay_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_delay_grows_and_is_capped() {
        let t = Timeouts::default();
        assert_eq!(t.login_delay(1), Duration::from_millis(500));
        assert_eq!(t.login_delay(2), Duration::from_secs(1));
        assert_eq!(t.login_delay(3), Duration::from_secs(2));
        assert_eq!(t.login_delay(100), Duration::from_secs(8));
    }

    #[test]
    fn switch_is_shared() {
        let a = ReadOnlySwitch::default();
        let b = a.clone();
        assert!(!b.is_read_only());
        a.set(true);
        assert!(b.is_read_only());
    }

    #[test]
    fn single_users_freeze_and_thaw() {
        let a = ReadOnlySwitch::default();
        let b = a.clone();
        assert_eq!(a.freeze_user("ann", Some(None)), Ok(false));
        assert!(b.is_frozen("ann") && !b.is_frozen("bob") && !b.is_read_only());
        assert_eq!(a.freeze_user("ann", Some(None)), Ok(true));
        assert_eq!(a.freeze_user("ann", None), Ok(true));
        assert!(!b.is_frozen("ann"));
        // A deadline in the past thaws by itself.
        let past = std::time::Instant::now();
        a.freeze_user("bob", Some(Some(past))).unwrap();
        assert!(!b.is_frozen("bob"));
        // The whole switch freezes everyone.
        a.set(true);
        assert!(b.is_frozen("carol"));
    }
}
