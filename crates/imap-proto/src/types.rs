//! Small value types shared by commands and responses: tags, flags,
//! mailbox names, mailbox attributes and STATUS items.

use std::fmt;

use crate::syntax::{is_atom, is_tag_char};

/// A command tag (`1*<any ASTRING-CHAR except "+">`, RFC 3501 §9).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// A tag; `None` if `s` is empty or has a character tags cannot hold.
    pub fn new(s: &str) -> Option<Tag> {
        Tag::from_bytes(s.as_bytes())
    }
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Tag> {
        if b.is_empty() || !b.iter().all(|&c| is_tag_char(c)) {
            return None;
        }
        // All tag characters are ASCII.
        std::str::from_utf8(b).ok().map(|s| Tag(s.to_owned()))
    }
    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message flag (RFC 3501 §2.3.2, RFC 9051 §2.3.2).
///
/// System flags compare case-insensitively on the wire and are normalised
/// to their variants; keywords keep the client's spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Seen`
    Seen,
    /// `\Draft`
    Draft,
    /// `\Recent` (IMAP4rev1 only; never settable).
    Recent,
    /// A keyword such as `$Forwarded` or `NonJunk` (an atom, no backslash).
    Keyword(String),
    /// Another `\`-flag; holds the atom after the backslash.
    Extension(String),
}

impl Flag {
    /// A keyword flag; `None` unless `s` is a valid atom.
    pub fn keyword(s: &str) -> Option<Flag> {
        is_atom(s.as_bytes()).then(|| Flag::Keyword(s.to_owned()))
    }

    /// Interprets a flag as written on the wire (`\Seen`, `$Junk`).
    pub(crate) fn from_wire(b: &[u8]) -> Option<Flag> {
        if let Some(rest) = b.strip_prefix(b"\\") {
            if !is_atom(rest) {
                return None;
            }
            let s = std::str::from_utf8(rest).ok()?;
            Some(match s.to_ascii_uppercase().as_str() {
                "ANSWERED" => Flag::Answered,
                "FLAGGED" => Flag::Flagged,
                "DELETED" => Flag::Deleted,
                "SEEN" => Flag::Seen,
                "DRAFT" => Flag::Draft,
                "RECENT" => Flag::Recent,
                _ => Flag::Extension(s.to_owned()),
            })
        } else if is_atom(b) {
            Some(Flag::Keyword(std::str::from_utf8(b).ok()?.to_owned()))
        } else {
            None
        }
    }

    /// Appends the wire form.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let s: &str = match self {
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Seen => "\\Seen",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Keyword(k) => k,
            Flag::Extension(e) => {
                out.push(b'\\');
                e
            }
        };
        out.extend_from_slice(s.as_bytes());
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::new();
        self.write(&mut v);
        f.write_str(&String::from_utf8_lossy(&v))
    }
}

/// A mailbox name in UTF-8 (already decoded from modified UTF-7).
///
/// `INBOX` in any case is normalised to `INBOX`; names never hold control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

impl MailboxName {
    /// A mailbox name; `Err` with a reason if it holds a control character.
    pub fn new(name: &str) -> Result<MailboxName, String> {
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(format!(
                "control character U+{:04X} not allowed",
                u32::from(c)
            ));
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(MailboxName::inbox());
        }
        Ok(MailboxName(name.to_owned()))
    }
    /// `INBOX`.
    pub fn inbox() -> MailboxName {
        MailboxName("INBOX".to_owned())
    }
    /// Whether this is `INBOX`.
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
    /// The UTF-8 name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Consumes the name, returning the string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for MailboxName {
    type Error = String;
    fn try_from(s: &str) -> Result<Self, String> {
        MailboxName::new(s)
    }
}

/// A special-use attribute requested by `CREATE ... (USE (...))`
/// (RFC 6154 §5.2; `\Important` from RFC 8457).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\All`
    All,
    /// `\Archive`
    Archive,
    /// `\Drafts`
    Drafts,
    /// `\Flagged`
    Flagged,
    /// `\Junk`
    Junk,
    /// `\Sent`
    Sent,
    /// `\Trash`
    Trash,
    /// `\Important`
    Important,
    /// Any other `\`-attribute (the server answers `NO [USEATTR]`); the
    /// atom after the backslash.
    Extension(String),
}

impl SpecialUse {
    pub(crate) fn from_atom(name: &str) -> SpecialUse {
        match name.to_ascii_uppercase().as_str() {
            "ALL" => SpecialUse::All,
            "ARCHIVE" => SpecialUse::Archive,
            "DRAFTS" => SpecialUse::Drafts,
            "FLAGGED" => SpecialUse::Flagged,
            "JUNK" => SpecialUse::Junk,
            "SENT" => SpecialUse::Sent,
            "TRASH" => SpecialUse::Trash,
            "IMPORTANT" => SpecialUse::Important,
            _ => SpecialUse::Extension(name.to_owned()),
        }
    }
    /// The wire form with its backslash, e.g. `\Sent`.
    pub fn as_wire(&self) -> String {
        match self {
            SpecialUse::All => "\\All".into(),
            SpecialUse::Archive => "\\Archive".into(),
            SpecialUse::Drafts => "\\Drafts".into(),
            SpecialUse::Flagged => "\\Flagged".into(),
            SpecialUse::Junk => "\\Junk".into(),
            SpecialUse::Sent => "\\Sent".into(),
            SpecialUse::Trash => "\\Trash".into(),
            SpecialUse::Important => "\\Important".into(),
            SpecialUse::Extension(e) => format!("\\{e}"),
        }
    }
}

/// A mailbox attribute in a LIST/LSUB response (RFC 3501 §7.2.2, RFC 5258
/// §3, RFC 6154 §2, RFC 9051 §7.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxAttr {
    /// `\NoInferiors`
    NoInferiors,
    /// `\NoSelect`
    NoSelect,
    /// `\NonExistent`
    NonExistent,
    /// `\Subscribed`
    Subscribed,
    /// `\Remote`
    Remote,
    /// `\HasChildren`
    HasChildren,
    /// `\HasNoChildren`
    HasNoChildren,
    /// `\Marked`
    Marked,
    /// `\Unmarked`
    Unmarked,
    /// Special use `\All`
    All,
    /// Special use `\Archive`
    Archive,
    /// Special use `\Drafts`
    Drafts,
    /// Special use `\Flagged`
    Flagged,
    /// Special use `\Junk`
    Junk,
    /// Special use `\Sent`
    Sent,
    /// Special use `\Trash`
    Trash,
    /// Special use `\Important`
    Important,
    /// Another `\`-attribute: the atom after the backslash.
    Extension(String),
}

impl MailboxAttr {
    pub(crate) fn from_atom(name: &str) -> MailboxAttr {
        match name.to_ascii_uppercase().as_str() {
            "NOINFERIORS" => MailboxAttr::NoInferiors,
            "NOSELECT" => MailboxAttr::NoSelect,
            "NONEXISTENT" => MailboxAttr::NonExistent,
            "SUBSCRIBED" => MailboxAttr::Subscribed,
            "REMOTE" => MailboxAttr::Remote,
            "HASCHILDREN" => MailboxAttr::HasChildren,
            "HASNOCHILDREN" => MailboxAttr::HasNoChildren,
            "MARKED" => MailboxAttr::Marked,
            "UNMARKED" => MailboxAttr::Unmarked,
            "ALL" => MailboxAttr::All,
            "ARCHIVE" => MailboxAttr::Archive,
            "DRAFTS" => MailboxAttr::Drafts,
            "FLAGGED" => MailboxAttr::Flagged,
            "JUNK" => MailboxAttr::Junk,
            "SENT" => MailboxAttr::Sent,
            "TRASH" => MailboxAttr::Trash,
            "IMPORTANT" => MailboxAttr::Important,
            _ => MailboxAttr::Extension(name.to_owned()),
        }
    }
    /// The wire form with its backslash, e.g. `\HasNoChildren`.
    pub fn as_wire(&self) -> String {
        let s = match self {
            MailboxAttr::NoInferiors => "NoInferiors",
            MailboxAttr::NoSelect => "Noselect",
            MailboxAttr::NonExistent => "NonExistent",
            MailboxAttr::Subscribed => "Subscribed",
            MailboxAttr::Remote => "Remote",
            MailboxAttr::HasChildren => "HasChildren",
            MailboxAttr::HasNoChildren => "HasNoChildren",
            MailboxAttr::Marked => "Marked",
            MailboxAttr::Unmarked => "Unmarked",
            MailboxAttr::All => "All",
            MailboxAttr::Archive => "Archive",
            MailboxAttr::Drafts => "Drafts",
            MailboxAttr::Flagged => "Flagged",
            MailboxAttr::Junk => "Junk",
            MailboxAttr::Sent => "Sent",
            MailboxAttr::Trash => "Trash",
            MailboxAttr::Important => "Important",
            MailboxAttr::Extension(e) => e,
        };
        format!("\\{s}")
    }
    /// The matching special-use attribute, if this is one.
    pub fn special_use(&self) -> Option<SpecialUse> {
        Some(match self {
            MailboxAttr::All => SpecialUse::All,
            MailboxAttr::Archive => SpecialUse::Archive,
            MailboxAttr::Drafts => SpecialUse::Drafts,
            MailboxAttr::Flagged => SpecialUse::Flagged,
            MailboxAttr::Junk => SpecialUse::Junk,
            MailboxAttr::Sent => SpecialUse::Sent,
            MailboxAttr::Trash => SpecialUse::Trash,
            MailboxAttr::Important => SpecialUse::Important,
            _ => return None,
        })
    }
}

impl From<&SpecialUse> for MailboxAttr {
    fn from(s: &SpecialUse) -> MailboxAttr {
        match s {
            SpecialUse::All => MailboxAttr::All,
            SpecialUse::Archive => MailboxAttr::Archive,
            SpecialUse::Drafts => MailboxAttr::Drafts,
            SpecialUse::Flagged => MailboxAttr::Flagged,
            SpecialUse::Junk => MailboxAttr::Junk,
            SpecialUse::Sent => MailboxAttr::Sent,
            SpecialUse::Trash => MailboxAttr::Trash,
            SpecialUse::Important => MailboxAttr::Important,
            SpecialUse::Extension(e) => MailboxAttr::from_atom(e),
        }
    }
}

/// A STATUS data item (RFC 3501 §6.3.10, RFC 9051 §6.3.11, RFC 7162 §3.1.2,
/// RFC 7889 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusItem {
    /// `MESSAGES`
    Messages,
    /// `RECENT` (IMAP4rev1)
    Recent,
    /// `UIDNEXT`
    UidNext,
    /// `UIDVALIDITY`
    UidValidity,
    /// `UNSEEN`
    Unseen,
    /// `DELETED` (IMAP4rev2)
    Deleted,
    /// `SIZE` (IMAP4rev2)
    Size,
    /// `HIGHESTMODSEQ` (CONDSTORE)
    HighestModSeq,
    /// `APPENDLIMIT` (RFC 7889)
    AppendLimit,
}

impl StatusItem {
    /// Every item, in wire order.
    pub const ALL: [StatusItem; 9] = [
        StatusItem::Messages,
        StatusItem::Recent,
        StatusItem::UidNext,
        StatusItem::UidValidity,
        StatusItem::Unseen,
        StatusItem::Deleted,
        StatusItem::Size,
        StatusItem::HighestModSeq,
        StatusItem::AppendLimit,
    ];
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
    /// Looks an item up by name, case-insensitively.
    pub fn from_name(name: &[u8]) -> Option<StatusItem> {
        StatusItem::ALL
            .into_iter()
            .find(|i| i.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// How mailbox names travel on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MailboxEncoding {
    /// Modified UTF-7 (RFC 3501 §5.1.3), the IMAP4rev1 default. Names with
    /// 8-bit bytes are rejected.
    #[default]
    ModifiedUtf7,
    /// Raw UTF-8, after `ENABLE UTF8=ACCEPT` (RFC 6855 §3) or
    /// `ENABLE IMAP4rev2` (RFC 9051 §5.1): names are taken verbatim.
    Utf8,
}
