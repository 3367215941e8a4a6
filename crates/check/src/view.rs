//! What one slot shows an IMAP client of one user, as plain values: the
//! input of the comparison. Collected by [`crate::collect`]; built by hand
//! in the comparison's unit tests.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One user's view on one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// Mailboxes by name (UTF-8, as LIST returns them).
    pub mailboxes: BTreeMap<String, MailboxView>,
    /// LSUB: the subscribed names (which need not exist).
    pub subscriptions: BTreeSet<String>,
    /// GETQUOTAROOT INBOX: by `ROOT RESOURCE`.
    pub quota: BTreeMap<String, QuotaFigure>,
}

impl UserView {
    /// Messages in every mailbox.
    pub fn message_count(&self) -> usize {
        self.mailboxes.values().map(|m| m.messages.len()).sum()
    }
}

/// One quota resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaFigure {
    pub usage: u64,
    pub limit: u64,
}

/// One mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailboxView {
    /// LIST attributes including special-use, sorted, without those that
    /// describe one session rather than the mailbox (`\Marked`,
    /// `\Unmarked`, `\Subscribed`).
    pub attributes: Vec<String>,
    /// EXAMINE's figures; `None` for a `\Noselect` mailbox.
    pub state: Option<MailboxState>,
    /// Messages by UID.
    pub messages: BTreeMap<u32, MessageView>,
}

/// What EXAMINE (with CONDSTORE) reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    /// `* n EXISTS`.
    pub exists: u32,
}

/// One message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// FLAGS without `\Recent` (which belongs to a session), sorted.
    pub flags: Vec<String>,
    /// INTERNALDATE as the server wrote it.
    pub internaldate: String,
    /// RFC822.SIZE.
    pub size: u64,
    /// BODYSTRUCTURE wire text (canonical form).
    pub bodystructure: String,
    /// What reading the whole message (BODY.PEEK[]) gave.
    pub body: Body,
}

/// The result of reading a message's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Not read at this level.
    #[default]
    NotRead,
    /// Read: the BLAKE3 hash and the length of the bytes.
    Digest { blake3: [u8; 32], len: u64 },
    /// The server refused to send it (it found the stored copy damaged) or
    /// sent something unusable.
    Unreadable(String),
}

impl Body {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Body {
        Body::Digest {
            blake3: *blake3::hash(bytes).as_bytes(),
            len: bytes.len() as u64,
        }
    }

    /// How the report shows it.
    pub fn describe(&self) -> String {
        match self {
            Body::NotRead => "not read".into(),
            Body::Digest { blake3, len } => {
                let hex: String = blake3[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("{len} bytes, blake3 {hex}…")
            }
            Body::Unreadable(why) => format!("unreadable ({why})"),
        }
    }
}
