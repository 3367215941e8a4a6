//! Errors of the mail store, one enum per family, in the redb manner.
//!
//! `StoreError` is what every operation on an open slot can return; callers
//! (IMAP, LMTP, replication) map its variants to protocol replies, so each
//! variant names a condition a caller must tell apart, not an implementation
//! detail. `OpenError` is what opening a slot directory can return.

use std::path::PathBuf;

/// An error from an operation on an open slot or user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such user in this slot.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// A user of that name already exists.
    #[error("user already exists: {0}")]
    UserExists(String),
    /// No such mailbox.
    #[error("no such mailbox: {0}")]
    NoSuchMailbox(String),
    /// A mailbox of that name already exists.
    #[error("mailbox already exists: {0}")]
    MailboxExists(String),
    /// The mailbox has inferior mailboxes (RFC 9051 HASCHILDREN).
    #[error("mailbox has children: {0}")]
    HasChildren(String),
    /// The message was expunged (its GUID is no longer referenced).
    #[error("message {0} has been expunged")]
    Expunged(String),
    /// The name is not acceptable as a mailbox name.
    #[error("invalid mailbox name: {0}")]
    InvalidName(String),
    /// The operation is not allowed on this mailbox (e.g. deleting INBOX).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The user's quota would be exceeded.
    #[error("over quota: {0}")]
    OverQuota(String),
    /// The message is larger than the store accepts.
    #[error("message too big: {size} bytes, limit {limit} bytes")]
    TooBig { size: u64, limit: u64 },
    /// A limit of the store was reached (mailboxes per user, keywords, ...).
    #[error("limit reached: {0}")]
    Limit(String),
    /// A flag or keyword is not acceptable.
    #[error("invalid flag: {0}")]
    InvalidFlag(String),
    /// Stored data failed verification: a message file whose bytes do not
    /// hash to its GUID, a missing file, a record whose checksum is wrong.
    /// The data is never returned as if it were good.
    #[error("corrupt data in user {user}: {what}")]
    Corrupt { user: String, what: String },
    /// An I/O error (including ENOSPC) while doing `op` on `path`.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The index database reported an error.
    #[error("index database error in {}: {source}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The user name is not acceptable.
    #[error("invalid user name: {0}")]
    InvalidUserName(String),
    /// Password hashing failed (not a wrong password: that is `Ok(false)`).
    #[error("password hashing failed: {0}")]
    Password(String),
}

impl StoreError {
    /// Whether the condition is on our side and might go away by itself
    /// (I/O, database busy) rather than being a property of the request.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::Db { .. })
    }

    /// Whether the error is about damaged stored data.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// An error while opening (or creating) a slot's data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the slot's lock.
    #[error("slot {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The directory holds something that is not a slot of a known format.
    #[error("{} is not a slotmail slot of a known format: {found}", path.display())]
    UnknownFormat { path: PathBuf, found: String },
    /// The directory does not exist and creation was not asked for.
    #[error("no slot at {}", .0.display())]
    Missing(PathBuf),
    /// I/O error.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The catalogue database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach an operation and a path to an I/O error.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}
