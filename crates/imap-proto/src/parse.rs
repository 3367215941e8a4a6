//! The command parser: [`Frame`] → [`Command`].
//!
//! Keywords are case-insensitive. Every failure is a [`ParseError`] with a
//! specific message and, when it was read, the tag, so the server can answer
//! `tag BAD <message>` ([`ParseError::response`]) and continue.

use std::fmt;

use crate::command::*;
use crate::cursor::{Cursor, PResult};
use crate::framer::{Frame, Framer, FramerEvent};
use crate::limits::{DEFAULT_MAX_NESTING_DEPTH, Limits};
use crate::response::{ResponseCode, StatusKind, write_status};
use crate::seqset::SequenceSet;
use crate::syntax::is_tag_char;
use crate::types::{Flag, MailboxEncoding, SpecialUse, StatusItem, Tag};

/// Why a command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The line was empty.
    EmptyCommand,
    /// The line does not start with a valid tag.
    InvalidTag,
    /// The tag is followed by something other than SP.
    MissingSpAfterTag,
    /// Only a tag was sent.
    MissingCommand,
    /// The command name is not known.
    UnknownCommand(String),
    /// Something else was expected here (e.g. "SP", "mailbox name").
    Expected(&'static str),
    /// Data follows a complete command.
    TrailingData,
    /// A sequence set is malformed.
    InvalidSequenceSet(String),
    /// A mailbox name is malformed.
    InvalidMailboxName(String),
    /// A number does not fit its type.
    NumberOutOfRange,
    /// A date is malformed or does not exist.
    InvalidDate,
    /// A date-time is malformed.
    InvalidDateTime,
    /// A string is malformed.
    InvalidString(&'static str),
    /// A flag is malformed.
    InvalidFlag(String),
    /// An unknown SEARCH key.
    UnknownSearchKey(String),
    /// An unknown FETCH attribute.
    UnknownFetchAttribute(String),
    /// An unknown STATUS item.
    UnknownStatusItem(String),
    /// An unknown option or parameter.
    UnknownOption(String),
    /// Valid syntax slotmail does not implement (e.g. `$`).
    Unsupported(String),
    /// Parentheses nested deeper than the limit.
    TooDeep(usize),
    /// Other semantic problems, with a message.
    Invalid(String),
    /// The bytes did not form exactly one complete command
    /// ([`parse_command_bytes`] only).
    Framing(String),
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseErrorKind::*;
        match self {
            EmptyCommand => f.write_str("Empty command"),
            InvalidTag => f.write_str("Invalid tag"),
            MissingSpAfterTag => f.write_str("Missing SP after tag"),
            MissingCommand => f.write_str("Missing command"),
            UnknownCommand(c) => write!(f, "Unknown command {c}"),
            Expected(w) => write!(f, "Expected {w}"),
            TrailingData => f.write_str("Unexpected characters after command"),
            InvalidSequenceSet(m) => write!(f, "Invalid sequence set: {m}"),
            InvalidMailboxName(m) => write!(f, "Invalid mailbox name: {m}"),
            NumberOutOfRange => f.write_str("Number out of range"),
            InvalidDate => f.write_str("Invalid date"),
            InvalidDateTime => f.write_str("Invalid date-time"),
            InvalidString(m) => write!(f, "Invalid string: {m}"),
            InvalidFlag(m) => write!(f, "Invalid flag: {m}"),
            UnknownSearchKey(k) => write!(f, "Unknown search key {k}"),
            UnknownFetchAttribute(k) => write!(f, "Unknown fetch attribute {k}"),
            UnknownStatusItem(k) => write!(f, "Unknown status item {k}"),
            UnknownOption(k) => write!(f, "Unknown option {k}"),
            Unsupported(m) => write!(f, "Not supported: {m}"),
            TooDeep(n) => write!(f, "Too deeply nested (limit {n} levels)"),
            Invalid(m) => f.write_str(m),
            Framing(m) => write!(f, "Framing: {m}"),
        }
    }
}

/// A parse failure with the tag when it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// The command's tag, if valid.
    pub tag: Option<Tag>,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// The response to send: `tag BAD <message>`, or `* BAD <message>` when
    /// the tag is unknown (`[CLIENTBUG]` is not added: BAD says it all).
    pub fn response(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let code = match self.kind {
            ParseErrorKind::Unsupported(_) => Some(ResponseCode::Cannot),
            _ => None,
        };
        write_status(
            &mut out,
            self.tag.as_ref(),
            StatusKind::Bad,
            code.as_ref(),
            &self.kind.to_string(),
        );
        out
    }
}

/// Parser settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Mailbox-name encoding of the session.
    pub encoding: MailboxEncoding,
    /// Deepest parenthesis nesting accepted, in levels.
    pub max_nesting_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            encoding: MailboxEncoding::ModifiedUtf7,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

/// Parses a frame with default options (modified UTF-7 mailbox names).
pub fn parse_command(frame: &Frame) -> Result<Command, ParseError> {
    parse_command_with(frame, &ParseOptions::default())
}

/// Parses a frame with explicit options.
pub fn parse_command_with(frame: &Frame, opts: &ParseOptions) -> Result<Command, ParseError> {
    let mut c = Cursor::new(frame, opts.max_nesting_depth, opts.encoding);
    if c.at_end() {
        return Err(ParseError {
            tag: None,
            kind: ParseErrorKind::EmptyCommand,
        });
    }
    let tag_bytes = c.take_while(is_tag_char);
    let Some(tag) = Tag::from_bytes(tag_bytes) else {
        return Err(ParseError {
            tag: None,
            kind: ParseErrorKind::InvalidTag,
        });
    };
    let fail = |kind| ParseError {
        tag: Some(tag.clone()),
        kind,
    };
    if c.at_end() {
        return Err(fail(ParseErrorKind::MissingCommand));
    }
    if !c.eat(b' ') {
        return Err(fail(ParseErrorKind::MissingSpAfterTag));
    }
    let body = command_body(&mut c).map_err(fail)?;
    c.expect_end().map_err(fail)?;
    Ok(Command { tag, body })
}

/// Frames and parses one complete command given as wire bytes (CRLF
/// included), accepting synchronizing literals. For tests and tools.
pub fn parse_command_bytes(bytes: &[u8]) -> Result<Command, ParseError> {
    parse_command_bytes_with(bytes, &ParseOptions::default())
}

/// [`parse_command_bytes`] with explicit parser options.
pub fn parse_command_bytes_with(bytes: &[u8], opts: &ParseOptions) -> Result<Command, ParseError> {
    let limits = Limits {
        max_pending_input_bytes: bytes.len().max(1),
        max_line_bytes: bytes.len().max(1),
        max_command_bytes: bytes.len().max(1),
        max_literal_bytes: bytes.len() as u64,
        max_non_sync_literal_bytes: bytes.len() as u64,
        max_command_literal_bytes: bytes.len() as u64,
        max_literals_per_command: bytes.len().max(1),
        ..Limits::default()
    };
    let framing = |m: String| ParseError {
        tag: None,
        kind: ParseErrorKind::Framing(m),
    };
    let mut framer = Framer::new(limits);
    framer.feed(bytes).map_err(|e| framing(e.to_string()))?;
    let mut frame = None;
    while let Some(ev) = framer.next_event() {
        match ev {
            FramerEvent::LiteralAnnounced { .. } => {
                framer.accept_literal();
            }
            FramerEvent::Command(f) if frame.is_none() => frame = Some(f),
            FramerEvent::Command(_) => return Err(framing("more than one command".into())),
            FramerEvent::RawLine(_) => return Err(framing("unexpected raw line".into())),
            FramerEvent::Error(e) => {
                return Err(ParseError {
                    tag: e.tag.clone(),
                    kind: ParseErrorKind::Framing(e.to_string()),
                });
            }
        }
    }
    if framer.in_command() || framer.pending_input() > 0 {
        return Err(framing("incomplete command".into()));
    }
    let frame = frame.ok_or_else(|| framing("no command".into()))?;
    parse_command_with(&frame, opts)
}

fn command_body(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    let name = c.atom().map_err(|_| ParseErrorKind::MissingCommand)?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    Ok(match name.as_str() {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "NAMESPACE" => CommandBody::Namespace,
        "IDLE" => CommandBody::Idle,
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "EXPUNGE" => CommandBody::Expunge,
        "AUTHENTICATE" => authenticate(c)?,
        "LOGIN" => {
            c.sp()?;
            let username = c.astring()?;
            c.sp()?;
            let password = c.astring()?;
            CommandBody::Login { username, password }
        }
        "ENABLE" => {
            let mut capabilities = Vec::new();
            while c.eat(b' ') {
                capabilities.push(String::from_utf8_lossy(c.atom()?).into_owned());
            }
            if capabilities.is_empty() {
                return Err(ParseErrorKind::Expected("capability"));
            }
            CommandBody::Enable { capabilities }
        }
        "SELECT" | "EXAMINE" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            let params = select_params(c)?;
            if name == "SELECT" {
                CommandBody::Select { mailbox, params }
            } else {
                CommandBody::Examine { mailbox, params }
            }
        }
        "CREATE" => create(c)?,
        "DELETE" => {
            c.sp()?;
            CommandBody::Delete {
                mailbox: c.mailbox()?,
            }
        }
        "RENAME" => {
            c.sp()?;
            let from = c.mailbox()?;
            c.sp()?;
            let to = c.mailbox()?;
            CommandBody::Rename { from, to }
        }
        "SUBSCRIBE" => {
            c.sp()?;
            CommandBody::Subscribe {
                mailbox: c.mailbox()?,
            }
        }
        "UNSUBSCRIBE" => {
            c.sp()?;
            CommandBody::Unsubscribe {
                mailbox: c.mailbox()?,
            }
        }
        "LIST" => CommandBody::List(list(c)?),
        "LSUB" => {
            c.sp()?;
            let reference = reference(c)?;
            c.sp()?;
            let pattern = c.list_pattern()?;
            CommandBody::Lsub { reference, pattern }
        }
        "STATUS" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            c.sp()?;
            let items = status_items(c)?;
            CommandBody::Status { mailbox, items }
        }
        "APPEND" => append(c)?,
        "SEARCH" => search(c, false)?,
        "FETCH" => fetch(c, false)?,
        "STORE" => store(c, false)?,
        "COPY" | "MOVE" => copy_move(c, false, name == "MOVE")?,
        "UID" => {
            c.sp()?;
            let sub = c
                .atom()
                .map_err(|_| ParseErrorKind::UnknownCommand("UID".into()))?;
            let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
            match sub.as_str() {
                "SEARCH" => search(c, true)?,
                "FETCH" => fetch(c, true)?,
                "STORE" => store(c, true)?,
                "COPY" | "MOVE" => copy_move(c, true, sub == "MOVE")?,
                "EXPUNGE" => {
                    c.sp()?;
                    CommandBody::UidExpunge { uids: c.seq_set()? }
                }
                _ => return Err(ParseErrorKind::UnknownCommand(format!("UID {sub}"))),
            }
        }
        "ID" => id(c)?,
        "GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota {
                root: c.astring_utf8("quota root is not UTF-8")?,
            }
        }
        "GETQUOTAROOT" => {
            c.sp()?;
            CommandBody::GetQuotaRoot {
                mailbox: c.mailbox()?,
            }
        }
        "COMPRESS" => {
            c.sp()?;
            CommandBody::Compress {
                mechanism: c.atom_upper()?,
            }
        }
        _ => return Err(ParseErrorKind::UnknownCommand(name)),
    })
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

fn authenticate(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mechanism = c.atom_upper()?;
    let initial_response = if c.eat(b' ') {
        let r = c.take_while(is_base64_char);
        let valid = r == b"="
            || (!r.is_empty() && {
                let body = r.iter().position(|&b| b == b'=').unwrap_or(r.len());
                r[body..].iter().all(|&b| b == b'=') && r.len() - body <= 2
            });
        if !valid {
            return Err(ParseErrorKind::Expected("BASE64 initial response"));
        }
        Some(String::from_utf8_lossy(r).into_owned())
    } else {
        None
    };
    Ok(CommandBody::Authenticate {
        mechanism,
        initial_response,
    })
}

fn select_params(c: &mut Cursor<'_>) -> PResult<SelectParams> {
    let mut params = SelectParams::default();
    if !c.eat(b' ') {
        return Ok(params);
    }
    c.expect(b'(', "'(' before select parameters")?;
    if c.eat(b')') {
        return Ok(params);
    }
    loop {
        let name = c.atom_upper()?;
        match name.as_str() {
            "CONDSTORE" => params.condstore = true,
            "QRESYNC" => {
                c.sp()?;
                c.expect(b'(', "'(' after QRESYNC")?;
                let uid_validity = c.nz_number()?;
                c.sp()?;
                let mod_seq = c.mod_seq()?;
                let mut known_uids = None;
                let mut seq_match = None;
                if c.eat(b' ') {
                    if c.peek() != Some(b'(') {
                        known_uids = Some(c.seq_set()?);
                        if c.eat(b' ') {
                            seq_match = Some(seq_match_data(c)?);
                        }
                    } else {
                        seq_match = Some(seq_match_data(c)?);
                    }
                }
                c.expect(b')', "')' after QRESYNC parameters")?;
                params.qresync = Some(QResyncParams {
                    uid_validity,
                    mod_seq,
                    known_uids,
                    seq_match,
                });
            }
            other => return Err(ParseErrorKind::UnknownOption(other.to_owned())),
        }
        if c.eat(b')') {
            return Ok(params);
        }
        c.sp()?;
    }
}

fn seq_match_data(c: &mut Cursor<'_>) -> PResult<(SequenceSet, SequenceSet)> {
    c.expect(b'(', "'(' before sequence match data")?;
    let seqs = c.seq_set()?;
    c.sp()?;
    let uids = c.seq_set()?;
    c.expect(b')', "')' after sequence match data")?;
    Ok((seqs, uids))
}

fn create(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut special_use = Vec::new();
    if c.eat(b' ') {
        c.expect(b'(', "'(' before CREATE parameters")?;
        loop {
            let name = c.atom_upper()?;
            if name != "USE" {
                return Err(ParseErrorKind::UnknownOption(name));
            }
            c.sp()?;
            c.expect(b'(', "'(' after USE")?;
            if !c.eat(b')') {
                loop {
                    c.expect(b'\\', "special-use attribute")?;
                    let a = c.atom()?;
                    special_use.push(SpecialUse::from_atom(&String::from_utf8_lossy(a)));
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

fn reference(c: &mut Cursor<'_>) -> PResult<String> {
    let raw = c
        .astring()
        .map_err(|_| ParseErrorKind::Expected("reference name"))?;
    let s = c.decode_name(&raw)?;
    if s.chars().any(char::is_control) {
        return Err(ParseErrorKind::InvalidMailboxName(
            "control character not allowed".into(),
        ));
    }
    Ok(s)
}

fn list(c: &mut Cursor<'_>) -> PResult<ListCommand> {
    c.sp()?;
    let mut selection = Vec::new();
    if c.eat(b'(') {
        if !c.eat(b')') {
            loop {
                let opt = c.atom_upper()?;
                selection.push(match opt.as_str() {
                    "SUBSCRIBED" => ListSelectOption::Subscribed,
                    "REMOTE" => ListSelectOption::Remote,
                    "RECURSIVEMATCH" => ListSelectOption::RecursiveMatch,
                    "SPECIAL-USE" => ListSelectOption::SpecialUse,
                    _ => return Err(ParseErrorKind::UnknownOption(opt)),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        c.sp()?;
        let has_base = selection.iter().any(|o| {
            matches!(
                o,
                ListSelectOption::Subscribed | ListSelectOption::SpecialUse
            )
        });
        if selection.contains(&ListSelectOption::RecursiveMatch) && !has_base {
            return Err(ParseErrorKind::Invalid(
                "RECURSIVEMATCH requires another selection option".into(),
            ));
        }
    }
    let reference = reference(c)?;
    c.sp()?;
    let mut patterns = Vec::new();
    if c.eat(b'(') {
        loop {
            patterns.push(c.list_pattern()?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    } else {
        patterns.push(c.list_pattern()?);
    }
    let mut return_opts = Vec::new();
    if c.eat(b' ') {
        let kw = c.atom_upper()?;
        if kw != "RETURN" {
            return Err(ParseErrorKind::Expected("RETURN"));
        }
        c.sp()?;
        c.expect(b'(', "'(' after RETURN")?;
        if !c.eat(b')') {
            loop {
                let opt = c.atom_upper()?;
                return_opts.push(match opt.as_str() {
                    "SUBSCRIBED" => ListReturnOption::Subscribed,
                    "CHILDREN" => ListReturnOption::Children,
                    "SPECIAL-USE" => ListReturnOption::SpecialUse,
                    "STATUS" => {
                        c.sp()?;
                        ListReturnOption::Status(status_items(c)?)
                    }
                    _ => return Err(ParseErrorKind::UnknownOption(opt)),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
    }
    Ok(ListCommand {
        selection,
        reference,
        patterns,
        return_opts,
    })
}

fn status_items(c: &mut Cursor<'_>) -> PResult<Vec<StatusItem>> {
    c.expect(b'(', "'(' before status items")?;
    let mut items = Vec::new();
    loop {
        let a = c
            .atom()
            .map_err(|_| ParseErrorKind::Expected("status item"))?;
        items.push(StatusItem::from_name(a).ok_or_else(|| {
            ParseErrorKind::UnknownStatusItem(String::from_utf8_lossy(a).into_owned())
        })?);
        if c.eat(b')') {
            return Ok(items);
        }
        c.sp()?;
    }
}

fn append(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut messages = Vec::new();
    loop {
        c.sp()?;
        let mut flags = Vec::new();
        if c.peek() == Some(b'(') {
            flags = c.flag_list()?;
            c.sp()?;
        }
        let mut date = None;
        if c.peek() == Some(b'"') {
            date = Some(c.date_time()?);
            c.sp()?;
        }
        match c.peek() {
            Some(b'{' | b'~') => {}
            _ if c.looking_at_ci(b"UTF8 ") => {
                return Err(ParseErrorKind::Unsupported("APPEND UTF8 (RFC 6855)".into()));
            }
            _ if c.looking_at_ci(b"CATENATE ") => {
                return Err(ParseErrorKind::Unsupported("CATENATE".into()));
            }
            _ => return Err(ParseErrorKind::Expected("message literal")),
        }
        let (data, binary) = c.literal(true)?;
        messages.push(AppendMessage {
            flags,
            date,
            data: data.to_vec(),
            binary,
        });
        if c.at_end() {
            break;
        }
    }
    Ok(CommandBody::Append { mailbox, messages })
}

fn search(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let mut return_opts = None;
    if c.looking_at_ci(b"RETURN ") {
        c.atom()?;
        c.sp()?;
        c.expect(b'(', "'(' after RETURN")?;
        let mut opts = Vec::new();
        if !c.eat(b')') {
            loop {
                let o = c.atom_upper()?;
                opts.push(match o.as_str() {
                    "MIN" => SearchReturnOpt::Min,
                    "MAX" => SearchReturnOpt::Max,
                    "ALL" => SearchReturnOpt::All,
                    "COUNT" => SearchReturnOpt::Count,
                    "SAVE" => SearchReturnOpt::Save,
                    _ => return Err(ParseErrorKind::UnknownOption(o)),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        c.sp()?;
        return_opts = Some(opts);
    }
    let mut charset = None;
    if c.looking_at_ci(b"CHARSET ") {
        c.atom()?;
        c.sp()?;
        charset = Some(c.astring_utf8("charset is not UTF-8")?);
        c.sp()?;
    }
    let mut criteria = vec![search_key(c)?];
    while c.eat(b' ') {
        criteria.push(search_key(c)?);
    }
    Ok(CommandBody::Search {
        uid,
        charset,
        criteria,
        return_opts,
    })
}

fn search_key(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    match c.peek() {
        Some(b'(') => {
            c.bump();
            c.enter()?;
            let mut keys = vec![search_key(c)?];
            while c.eat(b' ') {
                keys.push(search_key(c)?);
            }
            c.expect(b')', "')' closing search keys")?;
            c.leave();
            return Ok(SearchKey::And(keys));
        }
        Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SearchKey::SequenceSet(c.seq_set()?)),
        None => return Err(ParseErrorKind::Expected("search key")),
        _ => {}
    }
    let name = c
        .atom()
        .map_err(|_| ParseErrorKind::Expected("search key"))?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let arg = |c: &mut Cursor<'_>| -> PResult<Vec<u8>> {
        c.sp()?;
        c.astring()
    };
    let date = |c: &mut Cursor<'_>| -> PResult<crate::datetime::Date> {
        c.sp()?;
        c.date()
    };
    let keyword = |c: &mut Cursor<'_>| -> PResult<String> {
        c.sp()?;
        match c.flag()? {
            Flag::Keyword(k) => Ok(k),
            other => Err(ParseErrorKind::InvalidFlag(format!(
                "{other} is not a keyword"
            ))),
        }
    };
    Ok(match name.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => SearchKey::Answered,
        "BCC" => SearchKey::Bcc(arg(c)?),
        "BEFORE" => SearchKey::Before(date(c)?),
        "BODY" => SearchKey::Body(arg(c)?),
        "CC" => SearchKey::Cc(arg(c)?),
        "DELETED" => SearchKey::Deleted,
        "DRAFT" => SearchKey::Draft,
        "FLAGGED" => SearchKey::Flagged,
        "FROM" => SearchKey::From(arg(c)?),
        "HEADER" => {
            let field = arg(c)?;
            let value = arg(c)?;
            SearchKey::Header(field, value)
        }
        "KEYWORD" => SearchKey::Keyword(keyword(c)?),
        "LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number64()?)
        }
        "NEW" => SearchKey::New,
        "NOT" => {
            c.sp()?;
            c.enter()?;
            let k = search_key(c)?;
            c.leave();
            SearchKey::Not(Box::new(k))
        }
        "OLD" => SearchKey::Old,
        "OLDER" => {
            c.sp()?;
            SearchKey::Older(c.nz_number()?)
        }
        "ON" => SearchKey::On(date(c)?),
        "OR" => {
            c.sp()?;
            c.enter()?;
            let a = search_key(c)?;
            c.sp()?;
            let b = search_key(c)?;
            c.leave();
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        "RECENT" => SearchKey::Recent,
        "SEEN" => SearchKey::Seen,
        "SENTBEFORE" => SearchKey::SentBefore(date(c)?),
        "SENTON" => SearchKey::SentOn(date(c)?),
        "SENTSINCE" => SearchKey::SentSince(date(c)?),
        "SINCE" => SearchKey::Since(date(c)?),
        "SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number64()?)
        }
        "SUBJECT" => SearchKey::Subject(arg(c)?),
        "TEXT" => SearchKey::Text(arg(c)?),
        "TO" => SearchKey::To(arg(c)?),
        "UID" => {
            c.sp()?;
            SearchKey::Uid(c.seq_set()?)
        }
        "UNANSWERED" => SearchKey::Unanswered,
        "UNDELETED" => SearchKey::Undeleted,
        "UNDRAFT" => SearchKey::Undraft,
        "UNFLAGGED" => SearchKey::Unflagged,
        "UNKEYWORD" => SearchKey::Unkeyword(keyword(c)?),
        "UNSEEN" => SearchKey::Unseen,
        "YOUNGER" => {
            c.sp()?;
            SearchKey::Younger(c.nz_number()?)
        }
        "MODSEQ" => {
            c.sp()?;
            let mut entry = None;
            if c.peek() == Some(b'"') {
                let name = c.quoted()?;
                let flag = name
                    .get(..7)
                    .filter(|p| p.eq_ignore_ascii_case(b"/flags/"))
                    .and_then(|_| Flag::from_wire(&name[7..]))
                    .ok_or_else(|| ParseErrorKind::Invalid("Invalid MODSEQ entry name".into()))?;
                c.sp()?;
                let t = c.atom_upper()?;
                let entry_type = match t.as_str() {
                    "PRIV" => ModSeqEntryType::Private,
                    "SHARED" => ModSeqEntryType::Shared,
                    "ALL" => ModSeqEntryType::All,
                    _ => {
                        return Err(ParseErrorKind::Invalid(format!(
                            "Invalid MODSEQ entry type {t}"
                        )));
                    }
                };
                c.sp()?;
                entry = Some(ModSeqEntry { flag, entry_type });
            }
            SearchKey::ModSeq {
                entry,
                mod_seq: c.number64()?,
            }
        }
        _ => return Err(ParseErrorKind::UnknownSearchKey(name)),
    })
}

/// `section` = `"[" [section-spec] "]"`, the cursor on `[`.
pub(crate) fn section(c: &mut Cursor<'_>) -> PResult<Section> {
    c.expect(b'[', "'['")?;
    let part = c.part_numbers()?;
    let mut text = None;
    if c.peek() != Some(b']') {
        if !part.is_empty() {
            c.expect(b'.', "'.' after section part")?;
        }
        let w = c.word().to_ascii_uppercase();
        text = Some(match w.as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !part.is_empty() => SectionText::Mime,
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                c.sp()?;
                c.expect(b'(', "'(' before header field names")?;
                let mut names = Vec::new();
                loop {
                    names.push(c.astring_utf8("header field name is not UTF-8")?);
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
                if w.len() == b"HEADER.FIELDS".len() {
                    SectionText::HeaderFields(names)
                } else {
                    SectionText::HeaderFieldsNot(names)
                }
            }
            _ => {
                return Err(ParseErrorKind::Invalid(format!(
                    "Invalid section {}",
                    String::from_utf8_lossy(&w)
                )));
            }
        });
    }
    c.expect(b']', "']' closing section")?;
    Ok(Section { part, text })
}

/// `section-binary` = `"[" [section-part] "]"`.
pub(crate) fn binary_section(c: &mut Cursor<'_>) -> PResult<Vec<u32>> {
    c.expect(b'[', "'['")?;
    let part = c.part_numbers()?;
    c.expect(b']', "']' closing binary section")?;
    Ok(part)
}

fn partial(c: &mut Cursor<'_>) -> PResult<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let offset = c.number()?;
    c.expect(b'.', "'.' in partial range")?;
    let length = c.nz_number()?;
    c.expect(b'>', "'>' closing partial range")?;
    Ok(Some(Partial { offset, length }))
}

fn fetch_attr(c: &mut Cursor<'_>) -> PResult<FetchAttr> {
    let w = c.word();
    let name = String::from_utf8_lossy(w).to_ascii_uppercase();
    let bracket = c.peek() == Some(b'[');
    Ok(match (name.as_str(), bracket) {
        ("ENVELOPE", false) => FetchAttr::Envelope,
        ("FLAGS", false) => FetchAttr::Flags,
        ("INTERNALDATE", false) => FetchAttr::InternalDate,
        ("RFC822", false) => FetchAttr::Rfc822,
        ("RFC822.HEADER", false) => FetchAttr::Rfc822Header,
        ("RFC822.SIZE", false) => FetchAttr::Rfc822Size,
        ("RFC822.TEXT", false) => FetchAttr::Rfc822Text,
        ("BODY", false) => FetchAttr::Body,
        ("BODYSTRUCTURE", false) => FetchAttr::BodyStructure,
        ("UID", false) => FetchAttr::Uid,
        ("MODSEQ", false) => FetchAttr::ModSeq,
        ("BODY" | "BODY.PEEK", true) => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchAttr::BodySection {
                peek: name == "BODY.PEEK",
                section,
                partial,
            }
        }
        ("BINARY" | "BINARY.PEEK", true) => {
            let part = binary_section(c)?;
            let partial = partial(c)?;
            FetchAttr::Binary {
                peek: name == "BINARY.PEEK",
                part,
                partial,
            }
        }
        ("BINARY.SIZE", true) => FetchAttr::BinarySize {
            part: binary_section(c)?,
        },
        ("", _) => return Err(ParseErrorKind::Expected("fetch attribute")),
        _ => return Err(ParseErrorKind::UnknownFetchAttribute(name)),
    })
}

fn fetch(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.seq_set()?;
    c.sp()?;
    let attrs = if c.eat(b'(') {
        let mut v = vec![fetch_attr(c)?];
        while c.eat(b' ') {
            v.push(fetch_attr(c)?);
        }
        c.expect(b')', "')' closing fetch attributes")?;
        FetchAttrs::List(v)
    } else if c.looking_at_ci(b"ALL") && !c.peek_at(3).is_some_and(|b| b.is_ascii_alphanumeric()) {
        c.word();
        FetchAttrs::All
    } else if c.looking_at_ci(b"FAST") && !c.peek_at(4).is_some_and(|b| b.is_ascii_alphanumeric()) {
        c.word();
        FetchAttrs::Fast
    } else if c.looking_at_ci(b"FULL") && !c.peek_at(4).is_some_and(|b| b.is_ascii_alphanumeric()) {
        c.word();
        FetchAttrs::Full
    } else {
        FetchAttrs::List(vec![fetch_attr(c)?])
    };
    let mut modifiers = FetchModifiers::default();
    if c.eat(b' ') {
        c.expect(b'(', "'(' before fetch modifiers")?;
        loop {
            let m = c.atom_upper()?;
            match m.as_str() {
                "CHANGEDSINCE" => {
                    c.sp()?;
                    modifiers.changed_since = Some(c.mod_seq()?);
                }
                "VANISHED" => modifiers.vanished = true,
                _ => return Err(ParseErrorKind::UnknownOption(m)),
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
        if modifiers.vanished && (!uid || modifiers.changed_since.is_none()) {
            return Err(ParseErrorKind::Invalid(
                "VANISHED requires UID FETCH with CHANGEDSINCE".into(),
            ));
        }
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        attrs,
        modifiers,
    })
}

fn store(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.seq_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        loop {
            let m = c.atom_upper()?;
            if m != "UNCHANGEDSINCE" {
                return Err(ParseErrorKind::UnknownOption(m));
            }
            c.sp()?;
            unchanged_since = Some(c.number64()?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let item = c.word().to_ascii_uppercase();
    let silent = match item.as_slice() {
        b"FLAGS" => false,
        b"FLAGS.SILENT" => true,
        _ => {
            return Err(ParseErrorKind::Invalid(format!(
                "Invalid STORE item {}",
                String::from_utf8_lossy(&item)
            )));
        }
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut v = vec![c.flag()?];
        while c.eat(b' ') {
            v.push(c.flag()?);
        }
        v
    };
    Ok(CommandBody::Store {
        uid,
        set,
        unchanged_since,
        mode,
        silent,
        flags,
    })
}

fn copy_move(c: &mut Cursor<'_>, uid: bool, is_move: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.seq_set()?;
    c.sp()?;
    let mailbox = c.mailbox()?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}

fn id(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    if c.eat_nil() {
        return Ok(CommandBody::Id { params: None });
    }
    c.expect(b'(', "'(' or NIL")?;
    let mut params = Vec::new();
    if !c.eat(b')') {
        loop {
            let k = c.string()?;
            c.sp()?;
            let v = c.nstring()?;
            params.push((k, v));
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::Id {
        params: Some(params),
    })
}
