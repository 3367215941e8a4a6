//! The values the store hands out: accounts, mailboxes, messages, outcomes.
//!
//! These are plain data (no handles into the database), so callers can keep
//! them across calls; the IMAP session keeps `MessageMeta` lists as its view
//! of a selected mailbox.

use crate::flags::Flags;
use crate::guid::Guid;

/// A user account as the catalogue holds it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub user_id: String,
    pub is_admin: bool,
    pub quota_bytes: Option<u64>,
    pub quota_messages: Option<u64>,
    pub modseq: u64,
}

/// A mailbox's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Local handle, valid in this user's index only. Operations take it so a
    /// selected mailbox keeps working across a rename by another session.
    pub id: i64,
    /// Stable id, the same on master and replicas, kept across renames.
    pub mailbox_id: String,
    /// Full name, UTF-8, separator `/`.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub special_use: Option<String>,
    /// Keywords used in this mailbox so far (for the FLAGS response).
    pub keywords: Vec<String>,
    /// UIDs at or above this are `\Recent` to the next session that claims them.
    pub recent_uid: u32,
    /// Change counter of the record itself (create, rename, special-use).
    pub modseq: u64,
}

/// One message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub guid: Guid,
    /// RFC822.SIZE: the exact byte length.
    pub size: u64,
    /// INTERNALDATE, unix seconds.
    pub internaldate: i64,
    /// INTERNALDATE's zone, minutes east of UTC.
    pub tz_offset_min: i32,
    pub flags: Flags,
    pub modseq: u64,
}

/// STATUS figures of a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub recent: u32,
    /// Sum of RFC822.SIZE.
    pub size: u64,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub highestmodseq: u64,
}

/// One message of [`crate::User::append_many`].
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// The message bytes.
    pub raw: &'a [u8],
    /// Its initial flags.
    pub flags: &'a Flags,
    /// INTERNALDATE as (unix seconds, minutes east of UTC); `None` is now.
    pub internaldate: Option<(i64, i32)>,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub uidvalidity: u32,
    pub uid: u32,
    pub modseq: u64,
    pub guid: Guid,
}

/// The result of COPY or MOVE: (source UID, new UID) pairs, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    pub uidvalidity: u32,
    pub pairs: Vec<(u32, u32)>,
    /// For MOVE, the source UIDs expunged; empty for COPY.
    pub expunged: Vec<u32>,
    pub modseq: u64,
}

/// The result of a STORE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Messages whose flags changed, with their new flags and MODSEQ.
    pub changed: Vec<MessageMeta>,
    /// Messages whose flags already were as asked (no new MODSEQ).
    pub unchanged: Vec<MessageMeta>,
    /// UIDs refused because their MODSEQ exceeded UNCHANGEDSINCE (RFC 7162 MODIFIED).
    pub modified: Vec<u32>,
}

/// What changed in a mailbox after a given MODSEQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxDelta {
    pub mailbox: MailboxInfo,
    /// Messages added or changed after `since`, by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged after `since`, ascending.
    pub expunged: Vec<u32>,
}

/// Quota usage and limits of a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub used_bytes: u64,
    pub used_messages: u64,
    pub limit_bytes: Option<u64>,
    pub limit_messages: Option<u64>,
}

/// A deleted mailbox, remembered for replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxTombstone {
    pub mailbox_id: String,
    pub name: String,
    pub modseq: u64,
}

/// A subscription record (or the tombstone of an unsubscribe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub name: String,
    pub subscribed: bool,
    pub modseq: u64,
}

/// Everything of a user that changed after a MODSEQ: the change log as
/// replication reads it (docs/storage.md, "The change log").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    pub since: u64,
    /// The user's MODSEQ when the change set was taken.
    pub modseq: u64,
    /// Mailboxes created, renamed, changed, or with changed messages.
    pub mailboxes: Vec<MailboxInfo>,
    pub deleted: Vec<MailboxTombstone>,
    pub subscriptions: Vec<Subscription>,
}
