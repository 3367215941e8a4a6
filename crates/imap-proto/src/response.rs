//! Server responses: the model shared by the server (encoding) and our
//! client ([`crate::ResponseReader`], decoding), plus low-level writers.
//!
//! A server can build a [`Response`] and call [`Response::encode`], or write
//! lines itself with [`write_status`], [`write_astring`], [`write_nstring`],
//! [`write_quoted_or_literal`], [`write_flag_list`], [`write_id_set`] and
//! friends. Literals in responses are always `{n}` (or `~{n}` for BINARY
//! data holding NUL bytes).

use crate::command::{IdParams, Section};
use crate::datetime::DateTime;
use crate::encode::{self, Sink};
use crate::seqset::SequenceSet;
use crate::syntax::{push_num, push_quoted, push_text};
use crate::types::{Flag, MailboxAttr, MailboxEncoding, MailboxName, StatusItem, Tag};

/// The five status-response kinds (RFC 9051 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKind {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
    /// `PREAUTH` (greeting only)
    PreAuth,
    /// `BYE`
    Bye,
}

impl StatusKind {
    /// The wire word.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::PreAuth => "PREAUTH",
            StatusKind::Bye => "BYE",
        }
    }
}

/// A response code (`[...]` in a status response; RFC 3501 §7.1, RFC 9051
/// §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 6154, RFC 4978).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCode {
    /// `ALERT`
    Alert,
    /// `PARSE`
    Parse,
    /// `PERMANENTFLAGS (flags [\*])`
    PermanentFlags {
        /// Flags that can be changed permanently.
        flags: Vec<Flag>,
        /// `\*`: new keywords may be created.
        allow_new_keywords: bool,
    },
    /// `READ-ONLY`
    ReadOnly,
    /// `READ-WRITE`
    ReadWrite,
    /// `TRYCREATE`
    TryCreate,
    /// `UIDNEXT n`
    UidNext(u32),
    /// `UIDVALIDITY n`
    UidValidity(u32),
    /// `UNSEEN n` (IMAP4rev1)
    Unseen(u32),
    /// `APPENDUID uidvalidity uid-set` (RFC 4315)
    AppendUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// Assigned UIDs.
        uids: SequenceSet,
    },
    /// `COPYUID uidvalidity source-set dest-set` (RFC 4315)
    CopyUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// Source UIDs.
        source: SequenceSet,
        /// Destination UIDs, in matching order.
        dest: SequenceSet,
    },
    /// `UIDNOTSTICKY`
    UidNotSticky,
    /// `HIGHESTMODSEQ n` (RFC 7162)
    HighestModSeq(u64),
    /// `NOMODSEQ`
    NoModSeq,
    /// `MODIFIED set` (RFC 7162)
    Modified(SequenceSet),
    /// `CLOSED` (RFC 7162)
    Closed,
    /// `UNAVAILABLE`
    Unavailable,
    /// `AUTHENTICATIONFAILED`
    AuthenticationFailed,
    /// `AUTHORIZATIONFAILED`
    AuthorizationFailed,
    /// `EXPIRED`
    Expired,
    /// `PRIVACYREQUIRED`
    PrivacyRequired,
    /// `CONTACTADMIN`
    ContactAdmin,
    /// `NOPERM`
    NoPerm,
    /// `INUSE`
    InUse,
    /// `EXPUNGEISSUED`
    ExpungeIssued,
    /// `CORRUPTION`
    Corruption,
    /// `SERVERBUG`
    ServerBug,
    /// `CLIENTBUG`
    ClientBug,
    /// `CANNOT`
    Cannot,
    /// `LIMIT`
    Limit,
    /// `OVERQUOTA`
    OverQuota,
    /// `ALREADYEXISTS`
    AlreadyExists,
    /// `NONEXISTENT`
    NonExistent,
    /// `TOOBIG`
    TooBig,
    /// `CAPABILITY caps...`
    Capability(Vec<String>),
    /// `COMPRESSIONACTIVE` (RFC 4978)
    CompressionActive,
    /// `USEATTR` (RFC 6154)
    UseAttr,
    /// `HASCHILDREN` (RFC 9051)
    HasChildren,
    /// `UNKNOWN-CTE` (RFC 3516): BINARY of a part whose transfer encoding
    /// the server cannot decode.
    UnknownCte,
    /// `BADCHARSET [(charsets)]`
    BadCharset(Vec<String>),
    /// Any other code: its atom and optional argument text.
    Other {
        /// The code's name.
        name: String,
        /// Text after the name (no `]`).
        args: Option<String>,
    },
}

/// Codes without arguments, with their names.
pub(crate) const SIMPLE_CODES: &[(&str, ResponseCode)] = &[
    ("ALERT", ResponseCode::Alert),
    ("PARSE", ResponseCode::Parse),
    ("READ-ONLY", ResponseCode::ReadOnly),
    ("READ-WRITE", ResponseCode::ReadWrite),
    ("TRYCREATE", ResponseCode::TryCreate),
    ("UIDNOTSTICKY", ResponseCode::UidNotSticky),
    ("NOMODSEQ", ResponseCode::NoModSeq),
    ("CLOSED", ResponseCode::Closed),
    ("UNAVAILABLE", ResponseCode::Unavailable),
    ("AUTHENTICATIONFAILED", ResponseCode::AuthenticationFailed),
    ("AUTHORIZATIONFAILED", ResponseCode::AuthorizationFailed),
    ("EXPIRED", ResponseCode::Expired),
    ("PRIVACYREQUIRED", ResponseCode::PrivacyRequired),
    ("CONTACTADMIN", ResponseCode::ContactAdmin),
    ("NOPERM", ResponseCode::NoPerm),
    ("INUSE", ResponseCode::InUse),
    ("EXPUNGEISSUED", ResponseCode::ExpungeIssued),
    ("CORRUPTION", ResponseCode::Corruption),
    ("SERVERBUG", ResponseCode::ServerBug),
    ("CLIENTBUG", ResponseCode::ClientBug),
    ("CANNOT", ResponseCode::Cannot),
    ("LIMIT", ResponseCode::Limit),
    ("OVERQUOTA", ResponseCode::OverQuota),
    ("ALREADYEXISTS", ResponseCode::AlreadyExists),
    ("NONEXISTENT", ResponseCode::NonExistent),
    ("TOOBIG", ResponseCode::TooBig),
    ("COMPRESSIONACTIVE", ResponseCode::CompressionActive),
    ("USEATTR", ResponseCode::UseAttr),
    ("HASCHILDREN", ResponseCode::HasChildren),
    ("UNKNOWN-CTE", ResponseCode::UnknownCte),
];

impl ResponseCode {
    /// Appends the code without brackets.
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Some((name, _)) = SIMPLE_CODES.iter().find(|(_, c)| c == self) {
            out.extend_from_slice(name.as_bytes());
            return;
        }
        match self {
            ResponseCode::PermanentFlags {
                flags,
                allow_new_keywords,
            } => {
                out.extend_from_slice(b"PERMANENTFLAGS (");
                for (i, f) in flags.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    f.write(out);
                }
                if *allow_new_keywords {
                    if !flags.is_empty() {
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"\\*");
                }
                out.push(b')');
            }
            ResponseCode::UidNext(n) => out.extend_from_slice(format!("UIDNEXT {n}").as_bytes()),
            ResponseCode::UidValidity(n) => {
                out.extend_from_slice(format!("UIDVALIDITY {n}").as_bytes());
            }
            ResponseCode::Unseen(n) => out.extend_from_slice(format!("UNSEEN {n}").as_bytes()),
            ResponseCode::AppendUid { uid_validity, uids } => {
                out.extend_from_slice(format!("APPENDUID {uid_validity} {uids}").as_bytes());
            }
            ResponseCode::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                out.extend_from_slice(format!("COPYUID {uid_validity} {source} {dest}").as_bytes());
            }
            ResponseCode::HighestModSeq(n) => {
                out.extend_from_slice(format!("HIGHESTMODSEQ {n}").as_bytes());
            }
            ResponseCode::Modified(set) => {
                out.extend_from_slice(format!("MODIFIED {set}").as_bytes())
            }
            ResponseCode::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                for c in caps {
                    out.push(b' ');
                    out.extend_from_slice(c.as_bytes());
                }
            }
            ResponseCode::BadCharset(cs) => {
                out.extend_from_slice(b"BADCHARSET");
                if !cs.is_empty() {
                    out.extend_from_slice(b" (");
                    for (i, c) in cs.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        encode::astring(out, c.as_bytes());
                    }
                    out.push(b')');
                }
            }
            ResponseCode::Other { name, args } => {
                out.extend_from_slice(name.as_bytes());
                if let Some(a) = args {
                    out.push(b' ');
                    for &b in a.as_bytes() {
                        out.push(if matches!(b, b']' | b'\r' | b'\n' | 0) {
                            b' '
                        } else {
                            b
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// A generic IMAP value, used for ENVELOPE, BODYSTRUCTURE and LIST
/// extension data, which the client keeps unparsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// `NIL`
    Nil,
    /// A number.
    Number(u64),
    /// An atom other than `NIL` (e.g. a flag-like `\Seen`).
    Atom(String),
    /// A quoted string or literal.
    String(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Value>),
}

impl Value {
    /// Appends the wire form.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Nil => out.extend_from_slice(b"NIL"),
            Value::Number(n) => push_num(out, *n),
            Value::Atom(a) => out.extend_from_slice(a.as_bytes()),
            Value::String(s) => encode::string(out, s),
            Value::List(items) => {
                out.push(b'(');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    v.write(out);
                }
                out.push(b')');
            }
        }
    }
    /// The string content, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A LIST or LSUB line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListData {
    /// Mailbox attributes.
    pub attributes: Vec<MailboxAttr>,
    /// Hierarchy delimiter (`None` = flat).
    pub delimiter: Option<char>,
    /// The mailbox.
    pub mailbox: MailboxName,
    /// LIST-EXTENDED items such as `("CHILDINFO" ("SUBSCRIBED"))`.
    pub extended: Vec<(String, Value)>,
}

/// A namespace (RFC 2342 / RFC 9051 §7.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDescr {
    /// Prefix, e.g. `""` or `"Other Users/"`.
    pub prefix: String,
    /// Hierarchy delimiter.
    pub delimiter: Option<char>,
}

/// One resource of a QUOTA response (RFC 9208 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaResource {
    /// Resource name, e.g. `STORAGE` (in KiB) or `MESSAGE`.
    pub name: String,
    /// Current usage.
    pub usage: u64,
    /// Limit.
    pub limit: u64,
}

/// A FETCH response item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    /// `UID n`
    Uid(u32),
    /// `FLAGS (...)`
    Flags(Vec<Flag>),
    /// `INTERNALDATE "..."`
    InternalDate(DateTime),
    /// `RFC822.SIZE n`
    Rfc822Size(u64),
    /// `MODSEQ (n)`
    ModSeq(u64),
    /// `BODY[section]<origin> data`
    BodySection {
        /// The section.
        section: Section,
        /// Start offset of a partial fetch.
        origin: Option<u32>,
        /// The bytes (`None` for NIL).
        data: Option<Vec<u8>>,
    },
    /// `BINARY[part]<origin> data` (RFC 3516)
    Binary {
        /// Part path.
        part: Vec<u32>,
        /// Start offset of a partial fetch.
        origin: Option<u32>,
        /// The decoded bytes (`None` for NIL).
        data: Option<Vec<u8>>,
    },
    /// `BINARY.SIZE[part] n`
    BinarySize {
        /// Part path.
        part: Vec<u32>,
        /// Decoded size.
        size: u64,
    },
    /// `RFC822 data`
    Rfc822(Option<Vec<u8>>),
    /// `RFC822.HEADER data`
    Rfc822Header(Option<Vec<u8>>),
    /// `RFC822.TEXT data`
    Rfc822Text(Option<Vec<u8>>),
    /// `ENVELOPE (...)`, unparsed.
    Envelope(Value),
    /// `BODYSTRUCTURE (...)`, unparsed.
    BodyStructure(Value),
    /// `BODY (...)` (non-extensible structure), unparsed.
    Body(Value),
}

/// Untagged data responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `* CAPABILITY ...`
    Capability(Vec<String>),
    /// `* ENABLED ...` (RFC 5161)
    Enabled(Vec<String>),
    /// `* LIST ...`
    List(ListData),
    /// `* LSUB ...`
    Lsub(ListData),
    /// `* STATUS mailbox (...)`
    Status {
        /// The mailbox.
        mailbox: MailboxName,
        /// Item values in order.
        items: Vec<(StatusItem, u64)>,
    },
    /// `* SEARCH n... [(MODSEQ n)]`
    Search {
        /// Matching numbers.
        ids: Vec<u32>,
        /// Highest mod-sequence of the matches (CONDSTORE).
        mod_seq: Option<u64>,
    },
    /// `* ESEARCH [(TAG "t")] [UID] ...` (RFC 4731)
    ESearch {
        /// Correlator tag.
        tag: Option<String>,
        /// Results are UIDs.
        uid: bool,
        /// `MIN n`
        min: Option<u32>,
        /// `MAX n`
        max: Option<u32>,
        /// `ALL set`
        all: Option<SequenceSet>,
        /// `COUNT n`
        count: Option<u32>,
        /// `MODSEQ n`
        mod_seq: Option<u64>,
    },
    /// `* FLAGS (...)`
    Flags(Vec<Flag>),
    /// `* n EXISTS`
    Exists(u32),
    /// `* n RECENT`
    Recent(u32),
    /// `* n EXPUNGE`
    Expunge(u32),
    /// `* n FETCH (...)`
    Fetch {
        /// Message sequence number.
        seq: u32,
        /// Items.
        items: Vec<FetchItem>,
    },
    /// `* VANISHED [(EARLIER)] uids` (RFC 7162)
    Vanished {
        /// `(EARLIER)`
        earlier: bool,
        /// The UIDs.
        uids: SequenceSet,
    },
    /// `* NAMESPACE personal other shared` (empty list = NIL)
    Namespace {
        /// Personal namespaces.
        personal: Vec<NamespaceDescr>,
        /// Other users' namespaces.
        other: Vec<NamespaceDescr>,
        /// Shared namespaces.
        shared: Vec<NamespaceDescr>,
    },
    /// `* QUOTA root (resource usage limit ...)`
    Quota {
        /// Quota root.
        root: String,
        /// Resources.
        resources: Vec<QuotaResource>,
    },
    /// `* QUOTAROOT mailbox root...`
    QuotaRoot {
        /// The mailbox.
        mailbox: MailboxName,
        /// Its quota roots.
        roots: Vec<String>,
    },
    /// `* ID (...)` / `* ID NIL` (RFC 2971)
    Id(Option<IdParams>),
}

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `tag OK/NO/BAD [code] text` or untagged `* OK/NO/BAD/PREAUTH/BYE`.
    Status {
        /// The tag (`None` = untagged).
        tag: Option<Tag>,
        /// OK, NO, ...
        kind: StatusKind,
        /// Response code.
        code: Option<ResponseCode>,
        /// Human-readable text.
        text: String,
    },
    /// `+ text` (command continuation request; may be BASE64).
    Continuation {
        /// The text after `+ `.
        text: String,
    },
    /// Untagged data.
    Data(Data),
}

impl Response {
    /// Appends the wire form with modified UTF-7 mailbox names.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(out, MailboxEncoding::ModifiedUtf7);
    }

    /// Appends the wire form with the given mailbox encoding.
    pub fn encode_with(&self, out: &mut Vec<u8>, enc: MailboxEncoding) {
        match self {
            Response::Status {
                tag,
                kind,
                code,
                text,
            } => {
                write_status(out, tag.as_ref(), *kind, code.as_ref(), text);
            }
            Response::Continuation { text } => write_continuation(out, text),
            Response::Data(d) => {
                out.extend_from_slice(b"* ");
                write_data(out, d, enc);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn write_delimiter(out: &mut Vec<u8>, d: Option<char>) {
    match d {
        None => out.extend_from_slice(b"NIL"),
        Some(c) => {
            let mut buf = [0u8; 4];
            push_quoted(out, c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

fn write_data(out: &mut Vec<u8>, d: &Data, enc: MailboxEncoding) {
    match d {
        Data::Capability(caps) => {
            out.extend_from_slice(b"CAPABILITY");
            for c in caps {
                out.push(b' ');
                out.extend_from_slice(c.as_bytes());
            }
        }
        Data::Enabled(caps) => {
            out.extend_from_slice(b"ENABLED");
            for c in caps {
                out.push(b' ');
                out.extend_from_slice(c.as_bytes());
            }
        }
        Data::List(l) | Data::Lsub(l) => {
            out.extend_from_slice(if matches!(d, Data::List(_)) {
                b"LIST ("
            } else {
                b"LSUB ("
            });
            let attrs: Vec<String> = l.attributes.iter().map(MailboxAttr::as_wire).collect();
            out.extend_from_slice(attrs.join(" ").as_bytes());
            out.extend_from_slice(b") ");
            write_delimiter(out, l.delimiter);
            out.push(b' ');
            write_mailbox(out, &l.mailbox, enc);
            if !l.extended.is_empty() {
                out.extend_from_slice(b" (");
                for (i, (tag, v)) in l.extended.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    encode::string(out, tag.as_bytes());
                    out.push(b' ');
                    v.write(out);
                }
                out.push(b')');
            }
        }
        Data::Status { mailbox, items } => {
            out.extend_from_slice(b"STATUS ");
            write_mailbox(out, mailbox, enc);
            out.extend_from_slice(b" (");
            for (i, (item, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(format!("{} {v}", item.as_str()).as_bytes());
            }
            out.push(b')');
        }
        Data::Search { ids, mod_seq } => {
            out.extend_from_slice(b"SEARCH");
            for id in ids {
                out.push(b' ');
                push_num(out, u64::from(*id));
            }
            if let Some(m) = mod_seq {
                out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
            }
        }
        Data::ESearch {
            tag,
            uid,
            min,
            max,
            all,
            count,
            mod_seq,
        } => {
            out.extend_from_slice(b"ESEARCH");
            if let Some(t) = tag {
                out.extend_from_slice(b" (TAG ");
                encode::string(out, t.as_bytes());
                out.push(b')');
            }
            if *uid {
                out.extend_from_slice(b" UID");
            }
            if let Some(n) = min {
                out.extend_from_slice(format!(" MIN {n}").as_bytes());
            }
            if let Some(n) = max {
                out.extend_from_slice(format!(" MAX {n}").as_bytes());
            }
            if let Some(s) = all {
                out.extend_from_slice(format!(" ALL {s}").as_bytes());
            }
            if let Some(n) = count {
                out.extend_from_slice(format!(" COUNT {n}").as_bytes());
            }
            if let Some(n) = mod_seq {
                out.extend_from_slice(format!(" MODSEQ {n}").as_bytes());
            }
        }
        Data::Flags(flags) => {
            out.extend_from_slice(b"FLAGS ");
            write_flag_list(out, flags);
        }
        Data::Exists(n) => out.extend_from_slice(format!("{n} EXISTS").as_bytes()),
        Data::Recent(n) => out.extend_from_slice(format!("{n} RECENT").as_bytes()),
        Data::Expunge(n) => out.extend_from_slice(format!("{n} EXPUNGE").as_bytes()),
        Data::Fetch { seq, items } => {
            out.extend_from_slice(format!("{seq} FETCH (").as_bytes());
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_fetch_item(out, item);
            }
            out.push(b')');
        }
        Data::Vanished { earlier, uids } => {
            out.extend_from_slice(b"VANISHED ");
            if *earlier {
                out.extend_from_slice(b"(EARLIER) ");
            }
            uids.write(out);
        }
        Data::Namespace {
            personal,
            other,
            shared,
        } => {
            out.extend_from_slice(b"NAMESPACE");
            for ns in [personal, other, shared] {
                out.push(b' ');
                if ns.is_empty() {
                    out.extend_from_slice(b"NIL");
                    continue;
                }
                out.push(b'(');
                for n in ns {
                    out.push(b'(');
                    encode::mailbox_string(out, &n.prefix, enc);
                    out.push(b' ');
                    write_delimiter(out, n.delimiter);
                    out.push(b')');
                }
                out.push(b')');
            }
        }
        Data::Quota { root, resources } => {
            out.extend_from_slice(b"QUOTA ");
            encode::astring(out, root.as_bytes());
            out.extend_from_slice(b" (");
            for (i, r) in resources.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(format!("{} {} {}", r.name, r.usage, r.limit).as_bytes());
            }
            out.push(b')');
        }
        Data::QuotaRoot { mailbox, roots } => {
            out.extend_from_slice(b"QUOTAROOT ");
            write_mailbox(out, mailbox, enc);
            for r in roots {
                out.push(b' ');
                encode::astring(out, r.as_bytes());
            }
        }
        Data::Id(params) => {
            out.extend_from_slice(b"ID ");
            match params {
                None => out.extend_from_slice(b"NIL"),
                Some(p) => {
                    out.push(b'(');
                    for (i, (k, v)) in p.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        encode::string(out, k);
                        out.push(b' ');
                        encode::nstring(out, v.as_deref());
                    }
                    out.push(b')');
                }
            }
        }
    }
}

fn write_origin(out: &mut Vec<u8>, origin: Option<u32>) {
    if let Some(o) = origin {
        out.extend_from_slice(format!("<{o}>").as_bytes());
    }
}

/// Appends one FETCH item.
pub fn write_fetch_item(out: &mut Vec<u8>, item: &FetchItem) {
    match item {
        FetchItem::Uid(n) => out.extend_from_slice(format!("UID {n}").as_bytes()),
        FetchItem::Flags(f) => {
            out.extend_from_slice(b"FLAGS ");
            write_flag_list(out, f);
        }
        FetchItem::InternalDate(d) => {
            out.extend_from_slice(b"INTERNALDATE ");
            d.write(out);
        }
        FetchItem::Rfc822Size(n) => out.extend_from_slice(format!("RFC822.SIZE {n}").as_bytes()),
        FetchItem::ModSeq(n) => out.extend_from_slice(format!("MODSEQ ({n})").as_bytes()),
        FetchItem::BodySection {
            section,
            origin,
            data,
        } => {
            out.extend_from_slice(b"BODY");
            encode::section(out, section);
            write_origin(out, *origin);
            out.push(b' ');
            write_nstring(out, data.as_deref());
        }
        FetchItem::Binary { part, origin, data } => {
            out.extend_from_slice(b"BINARY");
            encode::binary_section(out, part);
            write_origin(out, *origin);
            out.push(b' ');
            match data {
                Some(d) if d.contains(&0) => out.literal(d, true),
                d => write_nstring(out, d.as_deref()),
            }
        }
        FetchItem::BinarySize { part, size } => {
            out.extend_from_slice(b"BINARY.SIZE");
            encode::binary_section(out, part);
            out.extend_from_slice(format!(" {size}").as_bytes());
        }
        FetchItem::Rfc822(d) | FetchItem::Rfc822Header(d) | FetchItem::Rfc822Text(d) => {
            out.extend_from_slice(match item {
                FetchItem::Rfc822(_) => b"RFC822 ".as_slice(),
                FetchItem::Rfc822Header(_) => b"RFC822.HEADER ",
                _ => b"RFC822.TEXT ",
            });
            write_nstring(out, d.as_deref());
        }
        FetchItem::Envelope(v) | FetchItem::BodyStructure(v) | FetchItem::Body(v) => {
            out.extend_from_slice(match item {
                FetchItem::Envelope(_) => b"ENVELOPE ".as_slice(),
                FetchItem::BodyStructure(_) => b"BODYSTRUCTURE ",
                _ => b"BODY ",
            });
            v.write(out);
        }
    }
}

/// Appends a status line: `tag KIND [code] text\r\n` (`*` when untagged).
/// CR, LF and NUL in `text` become spaces.
pub fn write_status(
    out: &mut Vec<u8>,
    tag: Option<&Tag>,
    kind: StatusKind,
    code: Option<&ResponseCode>,
    text: &str,
) {
    out.extend_from_slice(tag.map_or("*", Tag::as_str).as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_str().as_bytes());
    if let Some(c) = code {
        out.extend_from_slice(b" [");
        c.write(out);
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        push_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a continuation request `+ text\r\n`.
pub fn write_continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Appends an `astring`: atom if possible, else quoted or literal.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    encode::astring(out, s);
}

/// Appends a `string`: quoted when 7-bit text, `{n}` literal otherwise.
pub fn write_quoted_or_literal(out: &mut Vec<u8>, s: &[u8]) {
    encode::string(out, s);
}

/// Appends an `nstring`: `NIL` or a string.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    encode::nstring(out, s);
}

/// Appends a `{n}` literal.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.literal(s, false);
}

/// Appends the value of a `BINARY[...]` item: a `~{n}` literal8 when the
/// bytes contain NUL (RFC 3516 §4.2), else a plain `{n}` literal.
pub fn write_binary_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.literal(s, s.contains(&0));
}

/// Appends a mailbox name, encoded per `enc`, as a string.
pub fn write_mailbox(out: &mut Vec<u8>, name: &MailboxName, enc: MailboxEncoding) {
    encode::mailbox_string(out, name.as_str(), enc);
}

/// Appends `(flag flag ...)`.
pub fn write_flag_list(out: &mut Vec<u8>, flags: &[Flag]) {
    encode::flag_list(out, flags);
}

/// Appends a sequence set.
pub fn write_seq_set(out: &mut Vec<u8>, set: &SequenceSet) {
    set.write(out);
}

/// Appends numbers compressed into ranges (`1:3,5`), in the given order;
/// sort first for the shortest form. Returns false (writing nothing) if
/// there is no non-zero number.
pub fn write_id_set(out: &mut Vec<u8>, ids: &[u32]) -> bool {
    match SequenceSet::from_ids(ids) {
        Some(s) => {
            s.write(out);
            true
        }
        None => false,
    }
}

/// Appends `[section]` (as in `BODY[1.HEADER]`).
pub fn write_section(out: &mut Vec<u8>, section: &Section) {
    encode::section(out, section);
}
