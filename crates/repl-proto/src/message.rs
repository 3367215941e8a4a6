//! The protocol's messages: one struct per frame payload, the records they
//! carry, the error codes, and [`Frame`], the sum of them all.
//!
//! This module owns the *shape* of every message of docs/replication.md and
//! its postcard payload encoding (the field order of each struct is its wire
//! order), the frame type numbers ([`FrameType`]) and the per-message checks
//! that do not need any state ([`Frame::validate`]: list lengths, chunk size,
//! consistency of a chunk's offset and size). It does not know about bytes on
//! the wire around the payload (see [`crate::frame`]) or about what a message
//! means to a store.
//!
//! Records mirror the store's rows (docs/storage.md) with plain types: GUIDs
//! and digests are `[u8; 32]`, ids are `String`s of 32 hex digits, UIDs are
//! `u32`, MODSEQs `u64`.

use crate::bounded;
use crate::limits::{
    BODY_CHUNK_MAX, CAPABILITIES_MAX, EXPUNGES_PER_APPLY_MAX, GUIDS_PER_FRAME_MAX,
    KEYWORDS_PER_RECORD_MAX, MAILBOXES_PER_USER_MAX, MESSAGES_PER_APPLY_MAX,
    SUBSCRIPTIONS_PER_FRAME_MAX, USERS_PER_FRAME_MAX,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A message's GUID: BLAKE3-256 of its bytes.
pub type Guid = [u8; 32];

/// A 32-byte digest (record hash, mailbox digest, user digest).
pub type Digest = [u8; 32];

/// System flag bit `\Seen` (as in the store's `messages.flags`).
pub const FLAG_SEEN: u8 = 1;
/// System flag bit `\Answered`.
pub const FLAG_ANSWERED: u8 = 2;
/// System flag bit `\Flagged`.
pub const FLAG_FLAGGED: u8 = 4;
/// System flag bit `\Deleted`.
pub const FLAG_DELETED: u8 = 8;
/// System flag bit `\Draft`.
pub const FLAG_DRAFT: u8 = 16;
/// Every system flag bit the protocol defines; other bits are invalid.
pub const FLAGS_MASK: u8 = FLAG_SEEN | FLAG_ANSWERED | FLAG_FLAGGED | FLAG_DELETED | FLAG_DRAFT;

// ----- error codes -----------------------------------------------------------

/// Why a peer refused a handshake or a request. On the wire: the variant's
/// index as a postcard varint, in declaration order (`version` = 0 …
/// `protocol` = 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The peers speak different protocol versions.
    Version,
    /// A handshake proof was wrong: the peer does not know the cluster secret.
    Auth,
    /// The server is not a replica of the store the client names (or not the
    /// slot the client meant, or in another cluster).
    NotReplica,
    /// The client's epoch is older than the server's: a fenced old master.
    StaleEpoch,
    /// A body's bytes do not hash to its GUID.
    GuidMismatch,
    /// The asked-for thing (a body) is not there.
    Missing,
    /// Something exceeds a limit.
    TooBig,
    /// The replica's store refused the change; retried later.
    Store,
    /// The peer broke the protocol (undecodable frame, unexpected message…).
    Protocol,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Version,
        ErrorCode::Auth,
        ErrorCode::NotReplica,
        ErrorCode::StaleEpoch,
        ErrorCode::GuidMismatch,
        ErrorCode::Missing,
        ErrorCode::TooBig,
        ErrorCode::Store,
        ErrorCode::Protocol,
    ];

    /// The code's name as docs/replication.md spells it (`not-replica`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Version => "version",
            ErrorCode::Auth => "auth",
            ErrorCode::NotReplica => "not-replica",
            ErrorCode::StaleEpoch => "stale-epoch",
            ErrorCode::GuidMismatch => "guid-mismatch",
            ErrorCode::Missing => "missing",
            ErrorCode::TooBig => "too-big",
            ErrorCode::Store => "store",
            ErrorCode::Protocol => "protocol",
        }
    }

    /// The code named `name` (as [`ErrorCode::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of `Refused` and `Error`: a code and a human-readable text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub text: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        ErrorReply {
            code,
            text: text.into(),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.text)
    }
}

// ----- records -----------------------------------------------------------------

/// A mailbox's replicated record: the store's `mailboxes` row without its
/// local row id and without `recent_uid` (`\Recent` is per-slot session
/// state, not a change: it has no MODSEQ and is not replicated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Stable id, 32 hex digits, the same on master and replicas.
    pub mailbox_id: String,
    /// Full name, UTF-8, hierarchy separator `/`.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// `\Sent`, `\Drafts`, … or none.
    pub special_use: Option<String>,
    /// Keywords ever used in the mailbox (what FLAGS announces).
    #[serde(deserialize_with = "bounded::vec::<_, _, KEYWORDS_PER_RECORD_MAX>")]
    pub keywords: Vec<String>,
    /// Change counter of the record itself (create, rename, special-use).
    pub modseq: u64,
}

/// A message's replicated record: the store's `messages` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub uid: u32,
    pub guid: Guid,
    /// RFC822.SIZE: the body's exact length in bytes.
    pub size: u64,
    /// INTERNALDATE, unix seconds.
    pub internaldate: i64,
    /// INTERNALDATE's zone, minutes east of UTC.
    pub tz_offset: i32,
    /// System flags, a bit set of `FLAG_*` (only [`FLAGS_MASK`] bits).
    pub flags: u8,
    /// Keywords, as the store keeps them (sorted, case-insensitively unique).
    #[serde(deserialize_with = "bounded::vec::<_, _, KEYWORDS_PER_RECORD_MAX>")]
    pub keywords: Vec<String>,
    pub modseq: u64,
}

/// A user's account record, as the slot's catalogue holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Login name (the user's key in every request).
    pub name: String,
    /// 32 hex digits; names the user's directory.
    pub user_id: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    /// `None`: unlimited.
    pub quota_bytes: Option<u64>,
    /// `None`: unlimited.
    pub quota_messages: Option<u64>,
    /// The account record's change counter.
    pub modseq: u64,
}

/// A subscription record, or the tombstone of an unsubscribe
/// (`subscribed == false`). Ordered by name, then the other fields, which is
/// the order [`crate::user_digest`] hashes them in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub name: String,
    pub subscribed: bool,
    pub modseq: u64,
}

/// One expunged message: its UID and the MODSEQ of the expunge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expunged {
    pub uid: u32,
    pub modseq: u64,
}

/// An inclusive range of UIDs, `first ..= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

impl UidRange {
    /// Every UID: `1 ..= u32::MAX` (a whole mailbox in one `ApplyMailbox`).
    pub const ALL: UidRange = UidRange {
        first: 1,
        last: u32::MAX,
    };

    /// Whether `uid` is in the range.
    pub fn contains(&self, uid: u32) -> bool {
        self.first <= uid && uid <= self.last
    }
}

/// One user as `ListUsers` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub user_id: String,
    /// The user's MODSEQ the replica holds (set by `Commit`).
    pub modseq: u64,
    /// The account record's MODSEQ.
    pub account_modseq: u64,
    /// [`crate::user_digest`] of the user as the replica holds it.
    pub digest: Digest,
}

/// One mailbox's id and digest, as `UserState` reports it, with what the
/// master's mass-deletion guard weighs a whole-mailbox send or a mailbox
/// deletion against (the user digest covers only `mailbox_id` and `digest`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxSummary {
    pub mailbox_id: String,
    /// [`crate::mailbox_digest`] of the mailbox as the replica holds it.
    pub digest: Digest,
    /// How many messages the mailbox holds (every one, including those
    /// whose body is known bad and left out of `digest`).
    pub messages: u64,
    /// The mailbox's `UIDNEXT`: every message it holds has a lower UID.
    pub uidnext: u32,
}

/// A user the replica holds, as `UserState` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldUser {
    pub user_id: String,
    pub modseq: u64,
    pub account_modseq: u64,
    pub digest: Digest,
    /// Every mailbox of the user, ascending by `mailbox_id`.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAILBOXES_PER_USER_MAX>")]
    pub mailboxes: Vec<MailboxSummary>,
}

// ----- handshake -----------------------------------------------------------------

/// The client's (master's) opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always first in the payload, so that any version can read it.
    pub version: u32,
    #[serde(deserialize_with = "bounded::vec::<_, _, CAPABILITIES_MAX>")]
    pub capabilities: Vec<String>,
    pub cluster: String,
    pub store: String,
    pub from_slot: String,
    pub to_slot: String,
    /// The store's epoch as the client (the master) knows it.
    pub epoch: u64,
    pub nonce_c: [u8; 32],
}

/// The server's (replica's) answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Always first in the payload, so that any version can read it.
    pub version: u32,
    #[serde(deserialize_with = "bounded::vec::<_, _, CAPABILITIES_MAX>")]
    pub capabilities: Vec<String>,
    /// The server's slot id.
    pub slot: String,
    /// The store's epoch as the server knew it before this handshake.
    pub epoch: u64,
    pub nonce_s: [u8; 32],
    /// `proof(secret, Server, …)`: the server knows the secret.
    pub proof_s: [u8; 32],
}

/// The client's proof of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub proof_c: [u8; 32],
}

/// The server accepts: the stream is established at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub epoch: u64,
}

// ----- requests -------------------------------------------------------------------

/// Ask for a page of the users the replica holds, ascending by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsers {
    /// Start after this name (the last name of the previous page); `None`
    /// for the first page.
    pub after: Option<String>,
}

/// Ask for one user's position and digest tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUser {
    pub user: String,
}

/// Create or update an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyAccount {
    pub account: AccountRecord,
}

/// Ask which of these bodies the replica lacks for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveGuids {
    pub user: String,
    #[serde(deserialize_with = "bounded::vec::<_, _, GUIDS_PER_FRAME_MAX>")]
    pub guids: Vec<Guid>,
}

/// One chunk of a message body (master → replica as a request; replica →
/// master as the answer to `FetchBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub user: String,
    pub guid: Guid,
    /// The whole body's size in bytes; the same in every chunk.
    pub size: u64,
    /// Where `bytes` start in the body.
    pub offset: u64,
    /// This chunk ends the body: `offset + bytes.len() == size`.
    pub last: bool,
    /// At most [`BODY_CHUNK_MAX`] bytes.
    #[serde(with = "bounded::bytes")]
    pub bytes: Vec<u8>,
}

/// One mailbox's changes, applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyMailbox {
    pub user: String,
    /// The mailbox's record (created if absent, renamed by `mailbox_id`).
    pub mailbox: MailboxRecord,
    /// Messages added or changed, ascending by UID.
    #[serde(deserialize_with = "bounded::vec::<_, _, MESSAGES_PER_APPLY_MAX>")]
    pub messages: Vec<MessageRecord>,
    /// Messages expunged.
    #[serde(deserialize_with = "bounded::vec::<_, _, EXPUNGES_PER_APPLY_MAX>")]
    pub expunged: Vec<Expunged>,
    /// `None`: a delta. `Some(range)`: `messages` are all the messages the
    /// mailbox holds with a UID in `range`; the replica expunges the others
    /// in that range.
    pub full: Option<UidRange>,
}

/// Delete a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteMailbox {
    pub user: String,
    pub mailbox_id: String,
    /// MODSEQ of the deletion (the tombstone's).
    pub modseq: u64,
}

/// Subscription records to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySubscriptions {
    pub user: String,
    #[serde(deserialize_with = "bounded::vec::<_, _, SUBSCRIPTIONS_PER_FRAME_MAX>")]
    pub subscriptions: Vec<SubscriptionRecord>,
    /// The list is every subscription record of the user; the replica drops
    /// records not listed.
    pub full: bool,
}

/// The replica now holds the user at `modseq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub user: String,
    pub modseq: u64,
}

/// Delete a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUser {
    pub user: String,
}

/// Ask the replica for its copy of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchBody {
    pub user: String,
    pub guid: Guid,
}

// ----- responses --------------------------------------------------------------------

/// A page of users, ascending by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    #[serde(deserialize_with = "bounded::vec::<_, _, USERS_PER_FRAME_MAX>")]
    pub users: Vec<UserSummary>,
    /// More users follow: ask again with `after` = the last name here.
    pub more: bool,
}

/// One user's state on the replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// `None`: the replica does not hold the user.
    pub held: Option<HeldUser>,
}

/// The GUIDs of a `HaveGuids` the replica lacks, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    #[serde(deserialize_with = "bounded::vec::<_, _, GUIDS_PER_FRAME_MAX>")]
    pub guids: Vec<Guid>,
}

/// The answer to `Ping`: how many bodies the replica has marked bad since
/// it started (a counter that only grows while it runs). A master that sees
/// it change runs a full comparison, which finds the mailboxes whose
/// digests the marks changed and sends them whole with their bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub bad_marks: u64,
}

/// An `ApplyMailbox` was applied; the mailbox's digest afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub digest: Digest,
}

// ----- frames ---------------------------------------------------------------------------

/// A frame's type byte. The numbers are part of the protocol; those of
/// `Hello`, `Refused` and `Error` never change across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FrameType {
    Hello = 0x01,
    Challenge = 0x02,
    Proof = 0x03,
    Welcome = 0x04,
    Refused = 0x05,
    ListUsers = 0x10,
    GetUser = 0x11,
    ApplyAccount = 0x12,
    HaveGuids = 0x13,
    Body = 0x14,
    ApplyMailbox = 0x15,
    DeleteMailbox = 0x16,
    ApplySubscriptions = 0x17,
    Commit = 0x18,
    DeleteUser = 0x19,
    FetchBody = 0x1a,
    Ping = 0x1b,
    Users = 0x20,
    UserState = 0x21,
    Missing = 0x22,
    Applied = 0x23,
    Ok = 0x24,
    Pong = 0x25,
    Error = 0x2f,
}

impl FrameType {
    /// Every type, ascending by number.
    pub const ALL: [FrameType; 24] = [
        FrameType::Hello,
        FrameType::Challenge,
        FrameType::Proof,
        FrameType::Welcome,
        FrameType::Refused,
        FrameType::ListUsers,
        FrameType::GetUser,
        FrameType::ApplyAccount,
        FrameType::HaveGuids,
        FrameType::Body,
        FrameType::ApplyMailbox,
        FrameType::DeleteMailbox,
        FrameType::ApplySubscriptions,
        FrameType::Commit,
        FrameType::DeleteUser,
        FrameType::FetchBody,
        FrameType::Ping,
        FrameType::Users,
        FrameType::UserState,
        FrameType::Missing,
        FrameType::Applied,
        FrameType::Ok,
        FrameType::Pong,
        FrameType::Error,
    ];

    /// The type with this number, if this version defines one.
    pub fn from_u8(byte: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// The type's number.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The message's name as docs/replication.md spells it.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "Hello",
            FrameType::Challenge => "Challenge",
            FrameType::Proof => "Proof",
            FrameType::Welcome => "Welcome",
            FrameType::Refused => "Refused",
            FrameType::ListUsers => "ListUsers",
            FrameType::GetUser => "GetUser",
            FrameType::ApplyAccount => "ApplyAccount",
            FrameType::HaveGuids => "HaveGuids",
            FrameType::Body => "Body",
            FrameType::ApplyMailbox => "ApplyMailbox",
            FrameType::DeleteMailbox => "DeleteMailbox",
            FrameType::ApplySubscriptions => "ApplySubscriptions",
            FrameType::Commit => "Commit",
            FrameType::DeleteUser => "DeleteUser",
            FrameType::FetchBody => "FetchBody",
            FrameType::Ping => "Ping",
            FrameType::Users => "Users",
            FrameType::UserState => "UserState",
            FrameType::Missing => "Missing",
            FrameType::Applied => "Applied",
            FrameType::Ok => "Ok",
            FrameType::Pong => "Pong",
            FrameType::Error => "Error",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One protocol message: what a frame carries. `Ping` and `Ok` have an
/// empty payload. `Body` is used in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    // handshake
    Hello(Hello),
    Challenge(Challenge),
    Proof(Proof),
    Welcome(Welcome),
    Refused(ErrorReply),
    // requests (master → replica)
    ListUsers(ListUsers),
    GetUser(GetUser),
    ApplyAccount(ApplyAccount),
    HaveGuids(HaveGuids),
    Body(Body),
    ApplyMailbox(ApplyMailbox),
    DeleteMailbox(DeleteMailbox),
    ApplySubscriptions(ApplySubscriptions),
    Commit(Commit),
    DeleteUser(DeleteUser),
    FetchBody(FetchBody),
    Ping,
    // responses (replica → master)
    Users(Users),
    UserState(UserState),
    Missing(Missing),
    Applied(Applied),
    Ok,
    Pong(Pong),
    Error(ErrorReply),
}

/// A message that breaks a limit or is inconsistent in itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A list is longer than its limit.
    #[error("more than {max} {what}")]
    TooMany { what: &'static str, max: usize },
    /// A byte string is longer than its limit.
    #[error("{what} of {len} bytes, more than {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Fields contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

fn check_len<T>(list: &[T], max: usize, what: &'static str) -> Result<(), ValidationError> {
    if list.len() > max {
        Err(ValidationError::TooMany { what, max })
    } else {
        Ok(())
    }
}

fn check_mailbox(m: &MailboxRecord) -> Result<(), ValidationError> {
    check_len(
        &m.keywords,
        KEYWORDS_PER_RECORD_MAX,
        "keywords in a mailbox record",
    )
}

fn check_message(m: &MessageRecord) -> Result<(), ValidationError> {
    check_len(
        &m.keywords,
        KEYWORDS_PER_RECORD_MAX,
        "keywords in a message record",
    )?;
    if m.flags & !FLAGS_MASK != 0 {
        return Err(ValidationError::Inconsistent(
            "message flags with bits outside the five system flags",
        ));
    }
    Ok(())
}

/// The checks of one body chunk that need no other chunk.
pub(crate) fn check_body(b: &Body) -> Result<(), ValidationError> {
    if b.bytes.len() > BODY_CHUNK_MAX {
        return Err(ValidationError::TooLong {
            what: "body chunk",
            len: b.bytes.len(),
            max: BODY_CHUNK_MAX,
        });
    }
    let end = b
        .offset
        .checked_add(b.bytes.len() as u64)
        .ok_or(ValidationError::Inconsistent("body chunk offset overflows"))?;
    if end > b.size {
        return Err(ValidationError::Inconsistent(
            "body chunk extends past the body's size",
        ));
    }
    if b.last && end != b.size {
        return Err(ValidationError::Inconsistent(
            "last body chunk does not end at the body's size",
        ));
    }
    if !b.last && b.bytes.is_empty() {
        return Err(ValidationError::Inconsistent(
            "empty body chunk that is not the last",
        ));
    }
    Ok(())
}

impl Frame {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Challenge(_) => FrameType::Challenge,
            Frame::Proof(_) => FrameType::Proof,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::Refused(_) => FrameType::Refused,
            Frame::ListUsers(_) => FrameType::ListUsers,
            Frame::GetUser(_) => FrameType::GetUser,
            Frame::ApplyAccount(_) => FrameType::ApplyAccount,
            Frame::HaveGuids(_) => FrameType::HaveGuids,
            Frame::Body(_) => FrameType::Body,
            Frame::ApplyMailbox(_) => FrameType::ApplyMailbox,
            Frame::DeleteMailbox(_) => FrameType::DeleteMailbox,
            Frame::ApplySubscriptions(_) => FrameType::ApplySubscriptions,
            Frame::Commit(_) => FrameType::Commit,
            Frame::DeleteUser(_) => FrameType::DeleteUser,
            Frame::FetchBody(_) => FrameType::FetchBody,
            Frame::Ping => FrameType::Ping,
            Frame::Users(_) => FrameType::Users,
            Frame::UserState(_) => FrameType::UserState,
            Frame::Missing(_) => FrameType::Missing,
            Frame::Applied(_) => FrameType::Applied,
            Frame::Ok => FrameType::Ok,
            Frame::Pong(_) => FrameType::Pong,
            Frame::Error(_) => FrameType::Error,
        }
    }

    /// Check the message against the protocol's limits and its own
    /// consistency (list lengths, flag bits, a body chunk's size, offset and
    /// `last`, a UID range's order). The decoder refuses a frame that fails;
    /// a sender calls it (through [`crate::try_encode_frame`]) before sending.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Frame::Hello(h) => check_len(&h.capabilities, CAPABILITIES_MAX, "capabilities"),
            Frame::Challenge(c) => check_len(&c.capabilities, CAPABILITIES_MAX, "capabilities"),
            Frame::HaveGuids(h) => check_len(&h.guids, GUIDS_PER_FRAME_MAX, "GUIDs"),
            Frame::Missing(m) => check_len(&m.guids, GUIDS_PER_FRAME_MAX, "GUIDs"),
            Frame::Body(b) => check_body(b),
            Frame::ApplyMailbox(a) => {
                check_mailbox(&a.mailbox)?;
                check_len(&a.messages, MESSAGES_PER_APPLY_MAX, "message records")?;
                check_len(&a.expunged, EXPUNGES_PER_APPLY_MAX, "expunged UIDs")?;
                a.messages.iter().try_for_each(check_message)?;
                if let Some(range) = a.full
                    && range.first > range.last
                {
                    return Err(ValidationError::Inconsistent(
                        "UID range whose first UID is above its last",
                    ));
                }
                Ok(())
            }
            Frame::ApplySubscriptions(s) => check_len(
                &s.subscriptions,
                SUBSCRIPTIONS_PER_FRAME_MAX,
                "subscription records",
            ),
            Frame::Users(u) => check_len(&u.users, USERS_PER_FRAME_MAX, "users"),
            Frame::UserState(s) => match &s.held {
                Some(h) => check_len(&h.mailboxes, MAILBOXES_PER_USER_MAX, "mailboxes"),
                None => Ok(()),
            },
            Frame::Proof(_)
            | Frame::Welcome(_)
            | Frame::Refused(_)
            | Frame::ListUsers(_)
            | Frame::GetUser(_)
            | Frame::ApplyAccount(_)
            | Frame::DeleteMailbox(_)
            | Frame::Commit(_)
            | Frame::DeleteUser(_)
            | Frame::FetchBody(_)
            | Frame::Ping
            | Frame::Applied(_)
            | Frame::Ok
            | Frame::Pong(_)
            | Frame::Error(_) => Ok(()),
        }
    }

    /// Whether the frame is a request (sent by the master after the
    /// handshake). `Body` counts as a request; as the answer to `FetchBody`
    /// it is a response.
    pub fn is_request(&self) -> bool {
        matches!(self.frame_type() as u8, 0x10..=0x1f)
    }
}
