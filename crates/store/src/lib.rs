//! The mail store of one slot: users, mailboxes, messages and the change log,
//! durable and checksummed.
//!
//! # Layout
//! - [`Slot`] (`slot.rs`): a slot's data directory, its process lock, the
//!   account catalogue and the registry of open users.
//! - [`User`] (`user.rs`): one user's index database and message files: the
//!   unit of isolation. Every write is one transaction that bumps the user's
//!   MODSEQ; that MODSEQ-indexed state is the change log replication reads.
//! - `blobs.rs`: content-addressed message files, verified on every read.
//! - [`Disk`] (`disk.rs`): the file operations on message files, behind a
//!   trait so tests can inject ENOSPC and EIO.
//! - `scrub.rs`: the consistency walk behind `slotmail slot scrub`.
//!
//! The on-disk format and the commit protocol are specified in
//! `docs/storage.md`; this crate implements exactly that document.

mod argon;
mod blobs;
mod disk;
mod error;
mod flags;
mod guid;
mod model;
mod names;
mod record;
mod replica;
pub mod scrub;
mod slot;
mod user;

pub use disk::{Disk, Fault, FaultyDisk, RealDisk};
pub use error::{OpenError, Result, StoreError};
pub use flags::{
    ANSWERED, DELETED, DRAFT, FLAGGED, FlagOp, Flags, KEYWORD_LEN_MAX, SEEN, validate_keyword,
};
pub use guid::Guid;
pub use model::*;
pub use names::{
    MAILBOX_DEPTH_MAX, MAILBOX_NAME_LEN_MAX, SEPARATOR, is_inferior,
    normalize as normalize_mailbox_name,
};
pub use replica::{ApplyOutcome, MailboxApply, PACK_MIN, flags_from_parts};
pub use slot::{Options, Slot, hash_password, validate_user_name};
pub use user::{DEFAULT_MAILBOXES, SPECIAL_USES, User};

use std::path::Path;
use std::sync::Arc;

/// Called after every committed change: (user name, the user's new MODSEQ).
pub type ChangeListener = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// Limits the store enforces (docs/storage.md, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub message_size_max: u64,
    /// Most mailboxes per user.
    pub mailboxes_max: u32,
    /// Most distinct keywords per mailbox.
    pub keywords_per_mailbox_max: usize,
}

/// Default largest message: 64 MiB.
pub const MESSAGE_SIZE_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_size_max: MESSAGE_SIZE_MAX_DEFAULT,
            mailboxes_max: 10_000,
            keywords_per_mailbox_max: 256,
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// fsync a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(error::io_err("fsync directory", dir))
}

/// Write a small file durably: temp file, fsync, rename, fsync directory.
pub(crate) fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("file has a parent directory");
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(error::io_err("create", &tmp))?;
    f.write_all(bytes).map_err(error::io_err("write", &tmp))?;
    f.sync_all().map_err(error::io_err("fsync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(error::io_err("rename", path))?;
    sync_dir(dir)
}
