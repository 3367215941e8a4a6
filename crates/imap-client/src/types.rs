//! The values the client returns: selected-mailbox state, LIST entries,
//! STATUS values, FETCH records and the UIDPLUS answers.

use slotmail_imap_proto::{
    DateTime, FetchItem, Flag, MailboxAttr, QuotaResource, Response, ResponseCode, SeqNum,
    SequenceSet, SpecialUse, StatusItem, StatusKind, Value, response,
};

use crate::error::{Error, Result};

/// Where the session is (RFC 9051 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Before LOGIN / AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
}

/// What SELECT / EXAMINE reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The mailbox name as given to SELECT.
    pub name: String,
    /// `* n EXISTS`.
    pub exists: u32,
    /// `* n RECENT` (IMAP4rev1 servers only).
    pub recent: Option<u32>,
    /// `[UIDVALIDITY n]` (required: a SELECT without it is a protocol
    /// error).
    pub uidvalidity: u32,
    /// `[UIDNEXT n]`.
    pub uidnext: Option<u32>,
    /// `[HIGHESTMODSEQ n]`; `None` without CONDSTORE or with `[NOMODSEQ]`.
    pub highestmodseq: Option<u64>,
    /// `* FLAGS (...)`.
    pub flags: Vec<Flag>,
    /// `[PERMANENTFLAGS (...)]` without `\*`.
    pub permanentflags: Vec<Flag>,
    /// `\*` in PERMANENTFLAGS: new keywords can be stored.
    pub allow_new_keywords: bool,
    /// `[UNSEEN n]` (IMAP4rev1).
    pub unseen: Option<u32>,
    /// `[READ-ONLY]` on the tagged OK (always for EXAMINE).
    pub read_only: bool,
}

/// The selected mailbox as the client tracks it after SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its name.
    pub name: String,
    /// Message count, kept current from EXISTS, EXPUNGE and VANISHED.
    pub exists: u32,
    /// UIDVALIDITY from SELECT.
    pub uidvalidity: u32,
    /// Selected with EXAMINE or answered `[READ-ONLY]`.
    pub read_only: bool,
}

/// SELECT with QRESYNC (RFC 7162 §3.2.5): the mailbox and what changed
/// since the given MODSEQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncSelect {
    /// The mailbox.
    pub mailbox: Mailbox,
    /// UIDs from `* VANISHED (EARLIER)`, ascending.
    pub vanished: Vec<u32>,
    /// Messages changed since the MODSEQ (flags, MODSEQ, UID).
    pub changed: Vec<FetchRecord>,
}

/// STATUS values of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The mailbox (UTF-8).
    pub name: String,
    /// Item values in the server's order.
    pub items: Vec<(StatusItem, u64)>,
}

impl MailboxStatus {
    /// The value of `item`, if the server sent it.
    pub fn get(&self, item: StatusItem) -> Option<u64> {
        self.items.iter().find(|(i, _)| *i == item).map(|(_, v)| *v)
    }
}

/// One LIST or LSUB line, with its LIST-STATUS values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Mailbox name, UTF-8 (decoded from modified UTF-7 unless UTF8=ACCEPT
    /// is enabled).
    pub name: String,
    /// Attributes (`\HasNoChildren`, `\Subscribed`, `\Sent`, ...).
    pub attributes: Vec<MailboxAttr>,
    /// Hierarchy delimiter (`None` = flat).
    pub delimiter: Option<char>,
    /// LIST-EXTENDED data such as `CHILDINFO`, unparsed.
    pub extended: Vec<(String, Value)>,
    /// The `* STATUS` that LIST-STATUS sent for this mailbox.
    pub status: Option<MailboxStatus>,
}

impl ListEntry {
    /// Whether the entry carries `attr`.
    pub fn has(&self, attr: &MailboxAttr) -> bool {
        self.attributes.contains(attr)
    }

    /// Its special-use attributes.
    pub fn special_use(&self) -> Vec<SpecialUse> {
        self.attributes
            .iter()
            .filter_map(MailboxAttr::special_use)
            .collect()
    }
}

/// `[APPENDUID uidvalidity uid]` (RFC 4315).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    /// UIDVALIDITY of the destination mailbox.
    pub uidvalidity: u32,
    /// UID of the appended message.
    pub uid: u32,
}

/// `[COPYUID uidvalidity source dest]` (RFC 4315), expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyUid {
    /// UIDVALIDITY of the destination mailbox.
    pub uidvalidity: u32,
    /// Source UIDs, in the server's order.
    pub source: Vec<u32>,
    /// Destination UIDs; `dest[i]` is the copy of `source[i]`.
    pub dest: Vec<u32>,
}

/// What EXPUNGE / UID EXPUNGE removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    /// Sequence numbers from `* n EXPUNGE`, in order (each relative to the
    /// mailbox after the previous ones).
    pub seqs: Vec<u32>,
    /// UIDs from `* VANISHED` (QRESYNC enabled), ascending.
    pub vanished: Vec<u32>,
}

/// What UID STORE reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// The untagged FETCH responses with UID (none with `.SILENT`, except
    /// MODSEQ updates under CONDSTORE).
    pub fetched: Vec<FetchRecord>,
    /// UIDs from `[MODIFIED ...]`: not stored because changed since
    /// UNCHANGEDSINCE.
    pub modified: Vec<u32>,
}

/// A QUOTA response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The quota root.
    pub root: String,
    /// Its resources.
    pub resources: Vec<QuotaResource>,
}

/// What GETQUOTAROOT answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaRoots {
    /// The mailbox's quota roots.
    pub roots: Vec<String>,
    /// The QUOTA responses that came with them.
    pub quotas: Vec<Quota>,
}

/// The outcome of [`crate::Client::command_raw`]: the tagged status
/// whatever its kind, and every untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// OK, NO or BAD.
    pub kind: StatusKind,
    /// The tagged response code.
    pub code: Option<ResponseCode>,
    /// The tagged text.
    pub text: String,
    /// Untagged responses in arrival order.
    pub untagged: Vec<Response>,
}

/// Fixed bytes counted per buffered FETCH record, besides its data.
pub(crate) const RECORD_OVERHEAD_BYTES: usize = 128;

/// One message's FETCH data. Text that the server sends as structures
/// (ENVELOPE, BODYSTRUCTURE, BODY) is kept as its wire text, re-written in
/// canonical form, so two servers can be compared byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRecord {
    /// Message sequence number.
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// `FLAGS`.
    pub flags: Option<Vec<Flag>>,
    /// `INTERNALDATE`.
    pub internaldate: Option<DateTime>,
    /// `RFC822.SIZE`.
    pub rfc822_size: Option<u64>,
    /// `MODSEQ`.
    pub modseq: Option<u64>,
    /// `ENVELOPE` wire text.
    pub envelope: Option<Vec<u8>>,
    /// `BODYSTRUCTURE` wire text.
    pub bodystructure: Option<Vec<u8>>,
    /// `BODY` (non-extensible structure) wire text.
    pub body: Option<Vec<u8>>,
    /// Body data by response name (`BODY[]`, `BODY[HEADER]`, `BODY[1]<0>`,
    /// `BINARY[2]`, `RFC822`, ...): `None` for NIL.
    pub sections: Vec<(String, Option<Vec<u8>>)>,
    /// `BINARY.SIZE[part]` values by name (`BINARY.SIZE[1]`).
    pub binary_sizes: Vec<(String, u64)>,
}

impl FetchRecord {
    /// The data of the section named `name` (case-insensitive, e.g.
    /// `BODY[]`), if sent and not NIL.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, d)| d.as_deref())
    }

    /// The whole message: `BODY[]`, `BINARY[]` or `RFC822`.
    pub fn message(&self) -> Option<&[u8]> {
        self.section("BODY[]")
            .or_else(|| self.section("BINARY[]"))
            .or_else(|| self.section("RFC822"))
    }

    /// Bytes counted against the buffered-fetch limit.
    pub(crate) fn size_bytes(&self) -> usize {
        let opt = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
        RECORD_OVERHEAD_BYTES
            + opt(&self.envelope)
            + opt(&self.bodystructure)
            + opt(&self.body)
            + self.flags.as_ref().map_or(0, |f| f.len() * 16)
            + self
                .sections
                .iter()
                .map(|(n, d)| n.len() + opt(d))
                .sum::<usize>()
            + self
                .binary_sizes
                .iter()
                .map(|(n, _)| n.len() + 8)
                .sum::<usize>()
    }

    /// Adds the items of one FETCH response; returns the UID if one came.
    pub(crate) fn absorb(&mut self, items: Vec<FetchItem>) -> Option<u32> {
        let mut uid = None;
        for item in items {
            match item {
                FetchItem::Uid(u) => {
                    uid = Some(u);
                    self.uid = u;
                }
                FetchItem::Flags(f) => self.flags = Some(f),
                FetchItem::InternalDate(d) => self.internaldate = Some(d),
                FetchItem::Rfc822Size(n) => self.rfc822_size = Some(n),
                FetchItem::ModSeq(m) => self.modseq = Some(m),
                FetchItem::Envelope(v) => self.envelope = Some(wire(&v)),
                FetchItem::BodyStructure(v) => self.bodystructure = Some(wire(&v)),
                FetchItem::Body(v) => self.body = Some(wire(&v)),
                FetchItem::BodySection {
                    section,
                    origin,
                    data,
                } => {
                    let mut name = b"BODY".to_vec();
                    response::write_section(&mut name, &section);
                    push_origin(&mut name, origin);
                    self.put_section(String::from_utf8_lossy(&name).into_owned(), data);
                }
                FetchItem::Binary { part, origin, data } => {
                    let mut name = format!("BINARY[{}]", part_path(&part)).into_bytes();
                    push_origin(&mut name, origin);
                    self.put_section(String::from_utf8_lossy(&name).into_owned(), data);
                }
                FetchItem::BinarySize { part, size } => {
                    let name = format!("BINARY.SIZE[{}]", part_path(&part));
                    match self.binary_sizes.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = size,
                        None => self.binary_sizes.push((name, size)),
                    }
                }
                FetchItem::Rfc822(d) => self.put_section("RFC822".into(), d),
                FetchItem::Rfc822Header(d) => self.put_section("RFC822.HEADER".into(), d),
                FetchItem::Rfc822Text(d) => self.put_section("RFC822.TEXT".into(), d),
            }
        }
        uid
    }

    fn put_section(&mut self, name: String, data: Option<Vec<u8>>) {
        match self.sections.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = data,
            None => self.sections.push((name, data)),
        }
    }
}

fn wire(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.write(&mut out);
    out
}

fn push_origin(name: &mut Vec<u8>, origin: Option<u32>) {
    if let Some(o) = origin {
        name.extend_from_slice(format!("<{o}>").as_bytes());
    }
}

fn part_path(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Expands a server-sent UID set (no `*`) in the order written, each range
/// ascending; fails beyond `max` numbers.
pub(crate) fn expand_set(set: &SequenceSet, max: usize) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for r in set.ranges() {
        let (SeqNum::Value(a), SeqNum::Value(b)) = (r.start, r.end) else {
            return Err(Error::Protocol(format!(
                "'*' in a UID set sent by the server: {set}"
            )));
        };
        let (lo, hi) = (a.min(b), a.max(b));
        let n = (hi - lo) as usize + 1;
        if out.len().saturating_add(n) > max {
            return Err(Error::Limit(format!(
                "UID set {set} has more than {max} UIDs"
            )));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// The number of UIDs a server-sent set names (no `*`: those ranges count
/// one).
pub(crate) fn set_len(set: &SequenceSet) -> u64 {
    set.ranges()
        .iter()
        .map(|r| match (r.start, r.end) {
            (SeqNum::Value(a), SeqNum::Value(b)) => u64::from(a.abs_diff(b)) + 1,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_imap_proto::{Section, SectionText};

    #[test]
    fn expand_keeps_order_and_bounds() {
        let s: SequenceSet = "5,1:3,9:7".parse().unwrap();
        assert_eq!(expand_set(&s, 100).unwrap(), vec![5, 1, 2, 3, 7, 8, 9]);
        assert_eq!(set_len(&s), 7);
        assert!(matches!(expand_set(&s, 6), Err(Error::Limit(_))));
        let star: SequenceSet = "1:*".parse().unwrap();
        assert!(matches!(expand_set(&star, 100), Err(Error::Protocol(_))));
        let huge: SequenceSet = "1:4294967295".parse().unwrap();
        assert!(matches!(expand_set(&huge, 1000), Err(Error::Limit(_))));
    }

    #[test]
    fn absorb_names_sections() {
        let mut r = FetchRecord {
            seq: 3,
            ..FetchRecord::default()
        };
        let uid = r.absorb(vec![
            FetchItem::Uid(42),
            FetchItem::BodySection {
                section: Section::default(),
                origin: None,
                data: Some(b"hello".to_vec()),
            },
            FetchItem::BodySection {
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime),
                },
                origin: Some(10),
                data: None,
            },
            FetchItem::Binary {
                part: vec![2],
                origin: None,
                data: Some(vec![0, 1]),
            },
            FetchItem::BinarySize {
                part: vec![2],
                size: 2,
            },
            FetchItem::Envelope(Value::List(vec![Value::Nil, Value::String(b"s".to_vec())])),
        ]);
        assert_eq!(uid, Some(42));
        assert_eq!(r.uid, 42);
        assert_eq!(r.message(), Some(&b"hello"[..]));
        assert_eq!(r.sections[1], ("BODY[1.2.MIME]<10>".to_owned(), None));
        assert_eq!(r.section("binary[2]"), Some(&[0u8, 1][..]));
        assert_eq!(r.binary_sizes, vec![("BINARY.SIZE[2]".to_owned(), 2)]);
        assert_eq!(r.envelope.as_deref(), Some(&b"(NIL \"s\")"[..]));
        assert!(r.size_bytes() > RECORD_OVERHEAD_BYTES + 5);
    }
}
