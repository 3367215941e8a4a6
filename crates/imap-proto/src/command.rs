//! The typed command AST produced by [`crate::parse_command`] and written by
//! [`Command::encode`].
//!
//! Strings that are mail data (LOGIN credentials, SEARCH text, ID values)
//! are kept as bytes, since their charset is not known here; mailbox names
//! are decoded to UTF-8 [`MailboxName`]s; sequence sets stay symbolic.

use crate::datetime::{Date, DateTime};
use crate::seqset::SequenceSet;
use crate::types::{Flag, MailboxName, SpecialUse, StatusItem, Tag};

/// A tagged client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's tag, echoed in the tagged response.
    pub tag: Tag,
    /// What the command asks.
    pub body: CommandBody,
}

/// The command proper. Each variant names the RFC section defining it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// `CAPABILITY` — RFC 3501 §6.1.1, RFC 9051 §6.1.1.
    Capability,
    /// `NOOP` — RFC 3501 §6.1.2, RFC 9051 §6.1.2.
    Noop,
    /// `LOGOUT` — RFC 3501 §6.1.3, RFC 9051 §6.1.3.
    Logout,
    /// `STARTTLS` — RFC 3501 §6.2.1, RFC 9051 §6.2.1.
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` — RFC 3501 §6.2.2,
    /// RFC 9051 §6.2.2; initial response from SASL-IR, RFC 4959 §3.
    Authenticate {
        /// SASL mechanism name, upper-cased (`PLAIN`, `SCRAM-SHA-256`).
        mechanism: String,
        /// The BASE64 initial response as sent; `=` stands for an empty one.
        initial_response: Option<String>,
    },
    /// `LOGIN userid password` — RFC 3501 §6.2.3, RFC 9051 §6.2.3.
    Login {
        /// User name bytes.
        username: Vec<u8>,
        /// Password bytes.
        password: Vec<u8>,
    },
    /// `ENABLE capability...` — RFC 5161 §3.1, RFC 9051 §6.3.1.
    Enable {
        /// Capability names as sent (compare case-insensitively).
        capabilities: Vec<String>,
    },
    /// `SELECT mailbox [(params)]` — RFC 3501 §6.3.1, RFC 9051 §6.3.2;
    /// CONDSTORE/QRESYNC parameters from RFC 7162 §3.1.8 and §3.2.5.
    Select {
        /// Mailbox to select.
        mailbox: MailboxName,
        /// CONDSTORE / QRESYNC parameters.
        params: SelectParams,
    },
    /// `EXAMINE mailbox [(params)]` — RFC 3501 §6.3.2, RFC 9051 §6.3.3;
    /// parameters as for SELECT (RFC 7162).
    Examine {
        /// Mailbox to examine.
        mailbox: MailboxName,
        /// CONDSTORE / QRESYNC parameters.
        params: SelectParams,
    },
    /// `CREATE mailbox [(USE (attrs))]` — RFC 3501 §6.3.3, RFC 9051 §6.3.4;
    /// USE parameter from RFC 6154 §3.
    Create {
        /// Mailbox to create.
        mailbox: MailboxName,
        /// Requested special-use attributes (empty when none).
        special_use: Vec<SpecialUse>,
    },
    /// `DELETE mailbox` — RFC 3501 §6.3.4, RFC 9051 §6.3.5.
    Delete {
        /// Mailbox to delete.
        mailbox: MailboxName,
    },
    /// `RENAME from to` — RFC 3501 §6.3.5, RFC 9051 §6.3.6.
    Rename {
        /// Existing name.
        from: MailboxName,
        /// New name.
        to: MailboxName,
    },
    /// `SUBSCRIBE mailbox` — RFC 3501 §6.3.6, RFC 9051 §6.3.7.
    Subscribe {
        /// Mailbox to subscribe to.
        mailbox: MailboxName,
    },
    /// `UNSUBSCRIBE mailbox` — RFC 3501 §6.3.7, RFC 9051 §6.3.8.
    Unsubscribe {
        /// Mailbox to unsubscribe from.
        mailbox: MailboxName,
    },
    /// `LIST [(select-opts)] reference pattern(s) [RETURN (opts)]` —
    /// RFC 3501 §6.3.8, RFC 9051 §6.3.9, LIST-EXTENDED RFC 5258 §3,
    /// LIST-STATUS RFC 5819 §2, SPECIAL-USE RFC 6154 §4.
    List(ListCommand),
    /// `LSUB reference pattern` — RFC 3501 §6.3.9 (IMAP4rev1 only).
    Lsub {
        /// Reference name (decoded).
        reference: String,
        /// Pattern with `%` / `*` wildcards (decoded).
        pattern: String,
    },
    /// `NAMESPACE` — RFC 2342 §5, RFC 9051 §6.3.10.
    Namespace,
    /// `STATUS mailbox (items)` — RFC 3501 §6.3.10, RFC 9051 §6.3.11.
    Status {
        /// Mailbox to report on.
        mailbox: MailboxName,
        /// Requested items, in request order.
        items: Vec<StatusItem>,
    },
    /// `APPEND mailbox [flags] [date-time] literal` — RFC 3501 §6.3.11,
    /// RFC 9051 §6.3.12; several messages per MULTIAPPEND, RFC 3502 §6.3.11;
    /// `~{n}` literal8 per BINARY, RFC 3516 §4.4.
    Append {
        /// Destination mailbox.
        mailbox: MailboxName,
        /// One or more messages (more than one only with MULTIAPPEND).
        messages: Vec<AppendMessage>,
    },
    /// `IDLE` — RFC 2177 §3, RFC 9051 §6.3.13.
    Idle,
    /// `CHECK` — RFC 3501 §6.4.1 (IMAP4rev1 only).
    Check,
    /// `CLOSE` — RFC 3501 §6.4.2, RFC 9051 §6.4.1.
    Close,
    /// `UNSELECT` — RFC 3691 §2, RFC 9051 §6.4.2.
    Unselect,
    /// `EXPUNGE` — RFC 3501 §6.4.3, RFC 9051 §6.4.3.
    Expunge,
    /// `UID EXPUNGE uid-set` — UIDPLUS RFC 4315 §2.1, RFC 9051 §6.4.9.
    UidExpunge {
        /// UIDs to expunge (if also `\Deleted`).
        uids: SequenceSet,
    },
    /// `[UID] SEARCH [RETURN (opts)] [CHARSET c] keys` — RFC 3501 §6.4.4,
    /// RFC 9051 §6.4.4; ESEARCH RETURN options RFC 4731 §3.1; MODSEQ key
    /// RFC 7162 §3.1.5; UID form RFC 3501 §6.4.8.
    Search {
        /// `UID SEARCH` (results are UIDs).
        uid: bool,
        /// `CHARSET` argument, if given.
        charset: Option<String>,
        /// Search keys, implicitly ANDed; never empty.
        criteria: Vec<SearchKey>,
        /// `RETURN (...)`; `Some(vec![])` for `RETURN ()`.
        return_opts: Option<Vec<SearchReturnOpt>>,
    },
    /// `[UID] FETCH set items [(modifiers)]` — RFC 3501 §6.4.5, RFC 9051
    /// §6.4.5; CHANGEDSINCE/VANISHED RFC 7162 §3.1.4.1 and §3.2.6; BINARY
    /// RFC 3516 §4.2; UID form RFC 3501 §6.4.8.
    Fetch {
        /// `UID FETCH`.
        uid: bool,
        /// Messages to fetch.
        set: SequenceSet,
        /// What to fetch.
        attrs: FetchAttrs,
        /// CHANGEDSINCE / VANISHED.
        modifiers: FetchModifiers,
    },
    /// `[UID] STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags` —
    /// RFC 3501 §6.4.6, RFC 9051 §6.4.6; UNCHANGEDSINCE RFC 7162 §3.1.3;
    /// UID form RFC 3501 §6.4.8.
    Store {
        /// `UID STORE`.
        uid: bool,
        /// Messages to change.
        set: SequenceSet,
        /// `UNCHANGEDSINCE` mod-sequence, if given.
        unchanged_since: Option<u64>,
        /// Replace, add or remove.
        mode: StoreMode,
        /// `.SILENT`: no untagged FETCH for the change.
        silent: bool,
        /// The flags.
        flags: Vec<Flag>,
    },
    /// `[UID] COPY set mailbox` — RFC 3501 §6.4.7, RFC 9051 §6.4.7; UID
    /// form RFC 3501 §6.4.8.
    Copy {
        /// `UID COPY`.
        uid: bool,
        /// Messages to copy.
        set: SequenceSet,
        /// Destination.
        mailbox: MailboxName,
    },
    /// `[UID] MOVE set mailbox` — RFC 6851 §3.1, RFC 9051 §6.4.8.
    Move {
        /// `UID MOVE`.
        uid: bool,
        /// Messages to move.
        set: SequenceSet,
        /// Destination.
        mailbox: MailboxName,
    },
    /// `ID (params) / ID NIL` — RFC 2971 §3.1.
    Id {
        /// Field/value pairs, or `None` for `NIL`.
        params: Option<IdParams>,
    },
    /// `GETQUOTA root` — RFC 9208 §4.2.
    GetQuota {
        /// Quota root name.
        root: String,
    },
    /// `GETQUOTAROOT mailbox` — RFC 9208 §4.3.
    GetQuotaRoot {
        /// Mailbox whose quota roots are wanted.
        mailbox: MailboxName,
    },
    /// `COMPRESS mechanism` — RFC 4978 §3 (only `DEFLATE` is defined).
    Compress {
        /// Mechanism, upper-cased.
        mechanism: String,
    },
}

impl CommandBody {
    /// The command's name as it appears on the wire, e.g. `UID FETCH`.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Enable { .. } => "ENABLE",
            CommandBody::Select { .. } => "SELECT",
            CommandBody::Examine { .. } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete { .. } => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe { .. } => "SUBSCRIBE",
            CommandBody::Unsubscribe { .. } => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge => "EXPUNGE",
            CommandBody::UidExpunge { .. } => "UID EXPUNGE",
            CommandBody::Search { uid: false, .. } => "SEARCH",
            CommandBody::Search { uid: true, .. } => "UID SEARCH",
            CommandBody::Fetch { uid: false, .. } => "FETCH",
            CommandBody::Fetch { uid: true, .. } => "UID FETCH",
            CommandBody::Store { uid: false, .. } => "STORE",
            CommandBody::Store { uid: true, .. } => "UID STORE",
            CommandBody::Copy { uid: false, .. } => "COPY",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Move { uid: false, .. } => "MOVE",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::Id { .. } => "ID",
            CommandBody::GetQuota { .. } => "GETQUOTA",
            CommandBody::GetQuotaRoot { .. } => "GETQUOTAROOT",
            CommandBody::Compress { .. } => "COMPRESS",
        }
    }
}

/// ID field/value pairs (RFC 2971): field names and `nstring` values.
pub type IdParams = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// SELECT/EXAMINE parameters (RFC 4466 §2.4, RFC 7162 §3.1.8, §3.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    /// `(CONDSTORE)` was given.
    pub condstore: bool,
    /// `(QRESYNC (...))` was given.
    pub qresync: Option<QResyncParams>,
}

/// `QRESYNC (uidvalidity modseq [known-uids] [(seq-match-data)])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResyncParams {
    /// The UIDVALIDITY the client knows (non-zero).
    pub uid_validity: u32,
    /// The last known HIGHESTMODSEQ (non-zero).
    pub mod_seq: u64,
    /// UIDs the client knows about.
    pub known_uids: Option<SequenceSet>,
    /// `(known-sequence-set known-uid-set)` pairs.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// A LIST command (RFC 5258 §3 syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCommand {
    /// Selection options (empty for a basic LIST).
    pub selection: Vec<ListSelectOption>,
    /// Reference name (decoded, not normalised).
    pub reference: String,
    /// One or more mailbox patterns (decoded, wildcards kept).
    pub patterns: Vec<String>,
    /// Return options (empty when no RETURN was given).
    pub return_opts: Vec<ListReturnOption>,
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListSelectOption {
    /// `SUBSCRIBED`
    Subscribed,
    /// `REMOTE`
    Remote,
    /// `RECURSIVEMATCH` (only together with another option it modifies)
    RecursiveMatch,
    /// `SPECIAL-USE`
    SpecialUse,
}

/// LIST return options (RFC 5258 §3.2, RFC 5819, RFC 6154 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturnOption {
    /// `SUBSCRIBED`
    Subscribed,
    /// `CHILDREN`
    Children,
    /// `SPECIAL-USE`
    SpecialUse,
    /// `STATUS (items)` (LIST-STATUS)
    Status(Vec<StatusItem>),
}

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags to set (empty when none given).
    pub flags: Vec<Flag>,
    /// INTERNALDATE to set.
    pub date: Option<DateTime>,
    /// The message bytes.
    pub data: Vec<u8>,
    /// Sent as literal8 (`~{n}`, may hold NUL bytes).
    pub binary: bool,
}

/// A SEARCH key (RFC 3501 §6.4.4, RFC 9051 §6.4.4).
///
/// Text arguments are bytes in the command's CHARSET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// `ALL`
    All,
    /// `ANSWERED`
    Answered,
    /// `BCC string`
    Bcc(Vec<u8>),
    /// `BEFORE date` (internal date)
    Before(Date),
    /// `BODY string`
    Body(Vec<u8>),
    /// `CC string`
    Cc(Vec<u8>),
    /// `DELETED`
    Deleted,
    /// `DRAFT`
    Draft,
    /// `FLAGGED`
    Flagged,
    /// `FROM string`
    From(Vec<u8>),
    /// `HEADER field-name string`
    Header(Vec<u8>, Vec<u8>),
    /// `KEYWORD flag`
    Keyword(String),
    /// `LARGER n`
    Larger(u64),
    /// `NEW` (IMAP4rev1)
    New,
    /// `NOT key`
    Not(Box<SearchKey>),
    /// `OLD` (IMAP4rev1)
    Old,
    /// `OLDER seconds` (WITHIN, RFC 5032)
    Older(u32),
    /// `ON date`
    On(Date),
    /// `OR key key`
    Or(Box<SearchKey>, Box<SearchKey>),
    /// `RECENT` (IMAP4rev1)
    Recent,
    /// `SEEN`
    Seen,
    /// `SENTBEFORE date`
    SentBefore(Date),
    /// `SENTON date`
    SentOn(Date),
    /// `SENTSINCE date`
    SentSince(Date),
    /// `SINCE date`
    Since(Date),
    /// `SMALLER n`
    Smaller(u64),
    /// `SUBJECT string`
    Subject(Vec<u8>),
    /// `TEXT string`
    Text(Vec<u8>),
    /// `TO string`
    To(Vec<u8>),
    /// `UID set`
    Uid(SequenceSet),
    /// `UNANSWERED`
    Unanswered,
    /// `UNDELETED`
    Undeleted,
    /// `UNDRAFT`
    Undraft,
    /// `UNFLAGGED`
    Unflagged,
    /// `UNKEYWORD flag`
    Unkeyword(String),
    /// `UNSEEN`
    Unseen,
    /// `YOUNGER seconds` (WITHIN, RFC 5032)
    Younger(u32),
    /// A bare sequence set.
    SequenceSet(SequenceSet),
    /// `( key key ... )`: all must match.
    And(Vec<SearchKey>),
    /// `MODSEQ ["/flags/flag" type] n` (RFC 7162 §3.1.5).
    ModSeq {
        /// Optional per-flag entry.
        entry: Option<ModSeqEntry>,
        /// Messages with a mod-sequence at least this.
        mod_seq: u64,
    },
}

/// The optional entry of a MODSEQ search key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModSeqEntry {
    /// The flag of `"/flags/<flag>"`.
    pub flag: Flag,
    /// `priv`, `shared` or `all`.
    pub entry_type: ModSeqEntryType,
}

/// `entry-type-req` of RFC 7162.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModSeqEntryType {
    /// `priv`
    Private,
    /// `shared`
    Shared,
    /// `all`
    All,
}

/// ESEARCH return options (RFC 4731 §3.1). `SAVE` (SEARCHRES) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchReturnOpt {
    /// `MIN`
    Min,
    /// `MAX`
    Max,
    /// `ALL`
    All,
    /// `COUNT`
    Count,
    /// `SAVE` (SEARCHRES, RFC 5182 §2.4): keep the result for `$`.
    Save,
}

/// What a FETCH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttrs {
    /// `ALL` = `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)`
    All,
    /// `FAST` = `(FLAGS INTERNALDATE RFC822.SIZE)`
    Fast,
    /// `FULL` = `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)`
    Full,
    /// An explicit list (a single attribute without parentheses too).
    List(Vec<FetchAttr>),
}

impl FetchAttrs {
    /// The attributes, with macros expanded.
    pub fn expand(&self) -> Vec<FetchAttr> {
        use FetchAttr::*;
        match self {
            FetchAttrs::All => vec![Flags, InternalDate, Rfc822Size, Envelope],
            FetchAttrs::Fast => vec![Flags, InternalDate, Rfc822Size],
            FetchAttrs::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
            FetchAttrs::List(v) => v.clone(),
        }
    }
}

/// A FETCH attribute (RFC 3501 §6.4.5, RFC 9051 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    /// `ENVELOPE`
    Envelope,
    /// `FLAGS`
    Flags,
    /// `INTERNALDATE`
    InternalDate,
    /// `RFC822` (= `BODY[]`, IMAP4rev1)
    Rfc822,
    /// `RFC822.HEADER` (= `BODY.PEEK[HEADER]`)
    Rfc822Header,
    /// `RFC822.SIZE`
    Rfc822Size,
    /// `RFC822.TEXT` (= `BODY[TEXT]`)
    Rfc822Text,
    /// `BODY` (non-extensible BODYSTRUCTURE)
    Body,
    /// `BODYSTRUCTURE`
    BodyStructure,
    /// `UID`
    Uid,
    /// `MODSEQ` (RFC 7162)
    ModSeq,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        /// `.PEEK`: do not set `\Seen`.
        peek: bool,
        /// The section.
        section: Section,
        /// `<offset.length>`.
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516).
    Binary {
        /// `.PEEK`
        peek: bool,
        /// Part numbers (empty for the whole message).
        part: Vec<u32>,
        /// `<offset.length>`.
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]` (RFC 3516).
    BinarySize {
        /// Part numbers.
        part: Vec<u32>,
    },
}

/// `<offset.length>` of a partial fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// First octet.
    pub offset: u32,
    /// Octet count (non-zero).
    pub length: u32,
}

/// A body section specifier (`section` in RFC 3501 §9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// Part path (`1.2.3`), empty for the whole message. All non-zero.
    pub part: Vec<u32>,
    /// What of that part.
    pub text: Option<SectionText>,
}

/// The text specifier of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `HEADER`
    Header,
    /// `HEADER.FIELDS (names)`
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (names)`
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`
    Text,
    /// `MIME` (only after a part number)
    Mime,
}

/// FETCH modifiers (RFC 7162 §3.1.4.1, §3.2.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchModifiers {
    /// `CHANGEDSINCE n`.
    pub changed_since: Option<u64>,
    /// `VANISHED` (only in UID FETCH with CHANGEDSINCE).
    pub vanished: bool,
}

/// How STORE changes the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}
