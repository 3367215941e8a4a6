//! The client side: [`ResponseReader`], a sans-I/O reader fed the server's
//! bytes that yields parsed [`Response`]s.
//!
//! Literals anywhere in a response (`BODY[] {n}`, `~{n}` BINARY data, mailbox
//! names) are collected before parsing; status and continuation lines never
//! carry literals, so a `{5}` at the end of their text is only text. Sizes
//! are bounded by [`ResponseLimits`]: a breach is a fatal
//! [`ResponseError::Framing`] (the stream cannot be resynchronised), while a
//! well-framed response the parser does not understand is a non-fatal
//! [`ResponseError::Parse`] and reading goes on.

use crate::command::Section;
use crate::cursor::{Cursor, PResult};
use crate::framer::{Frame, Literal, literal_marker};
use crate::limits::{InputOverflow, ResponseLimits};
use crate::parse::{ParseErrorKind, binary_section, section};
use crate::response::{
    Data, FetchItem, ListData, NamespaceDescr, QuotaResource, Response, ResponseCode, SIMPLE_CODES,
    StatusKind, Value,
};
use crate::syntax::is_tag_char;
use crate::types::{MailboxAttr, MailboxEncoding, MailboxName, StatusItem, Tag};

/// A problem reading responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// A size limit was exceeded; the reader is closed.
    #[error("response framing: {0}")]
    Framing(String),
    /// The response was framed but not understood; reading continues.
    #[error("cannot parse response: {message}")]
    Parse {
        /// What is wrong.
        message: String,
        /// The response's first line, for logs.
        line: Vec<u8>,
    },
}

impl ResponseError {
    /// Whether the reader is closed after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ResponseError::Framing(_))
    }
}

/// Sans-I/O response reader (client side).
#[derive(Debug)]
pub struct ResponseReader {
    limits: ResponseLimits,
    encoding: MailboxEncoding,
    input: Vec<u8>,
    pos: usize,
    cur_line: Vec<u8>,
    lines: Vec<Vec<u8>>,
    literals: Vec<Literal>,
    cur_literal: Vec<u8>,
    /// Remaining bytes and literal8 flag of the literal being read.
    in_literal: Option<(u64, bool)>,
    line_total: usize,
    closed: bool,
}

impl ResponseReader {
    /// A reader with the given limits and modified UTF-7 mailbox names.
    pub fn new(limits: ResponseLimits) -> ResponseReader {
        ResponseReader {
            limits,
            encoding: MailboxEncoding::ModifiedUtf7,
            input: Vec::new(),
            pos: 0,
            cur_line: Vec::new(),
            lines: Vec::new(),
            literals: Vec::new(),
            cur_literal: Vec::new(),
            in_literal: None,
            line_total: 0,
            closed: false,
        }
    }

    /// Switches the mailbox-name encoding (after `ENABLE UTF8=ACCEPT` or
    /// `IMAP4rev2`).
    pub fn set_encoding(&mut self, encoding: MailboxEncoding) {
        self.encoding = encoding;
    }

    /// Adds received bytes; fails, taking nothing, beyond
    /// `max_pending_input_bytes` of unprocessed input.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), InputOverflow> {
        let pending = self.input.len() - self.pos;
        if pending.saturating_add(data.len()) > self.limits.max_pending_input_bytes {
            return Err(InputOverflow {
                pending,
                offered: data.len(),
                limit: self.limits.max_pending_input_bytes,
            });
        }
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        Ok(())
    }

    /// How many more bytes [`ResponseReader::feed`] accepts now.
    pub fn input_room(&self) -> usize {
        self.limits
            .max_pending_input_bytes
            .saturating_sub(self.input.len() - self.pos)
    }

    /// Whether a fatal error closed the reader.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether part of a response has been received.
    pub fn in_response(&self) -> bool {
        !self.cur_line.is_empty() || !self.lines.is_empty() || self.in_literal.is_some()
    }

    /// Removes and returns the received bytes not yet consumed, dropping
    /// any partly read response. A client calls it right after the tagged
    /// `OK` to `STARTTLS` (anything returned was sent in plaintext after
    /// that `OK`, i.e. injected, and must be refused) or to `COMPRESS
    /// DEFLATE` (the bytes are already compressed: inflate them and feed
    /// the result back).
    pub fn take_pending_input(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.pos);
        self.input.clear();
        self.pos = 0;
        self.cur_line.clear();
        self.lines.clear();
        self.literals.clear();
        self.cur_literal = Vec::new();
        self.in_literal = None;
        self.line_total = 0;
        rest
    }

    fn fatal(&mut self, msg: String) -> Option<Result<Response, ResponseError>> {
        self.closed = true;
        self.input.clear();
        self.pos = 0;
        self.lines.clear();
        self.literals.clear();
        self.cur_line.clear();
        self.cur_literal = Vec::new();
        self.in_literal = None;
        self.line_total = 0;
        Some(Err(ResponseError::Framing(msg)))
    }

    /// The next response, or `None` when more input is needed.
    pub fn next_response(&mut self) -> Option<Result<Response, ResponseError>> {
        loop {
            if self.closed {
                return None;
            }
            if let Some((remaining, binary)) = self.in_literal {
                if remaining > 0 {
                    let avail = self.input.len() - self.pos;
                    if avail == 0 {
                        return None;
                    }
                    let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    self.cur_literal
                        .extend_from_slice(&self.input[self.pos..self.pos + n]);
                    self.pos += n;
                    self.in_literal = Some((remaining - n as u64, binary));
                    continue;
                }
                let data = std::mem::take(&mut self.cur_literal);
                self.literals.push(Literal {
                    data,
                    sync: true,
                    binary,
                });
                self.in_literal = None;
            }
            let avail = &self.input[self.pos..];
            if avail.is_empty() {
                return None;
            }
            let (n, lf) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            let new_len = self.cur_line.len().saturating_add(n);
            if new_len > self.limits.max_line_bytes.saturating_add(1) {
                let limit = self.limits.max_line_bytes;
                return self.fatal(format!("line too long (limit {limit} bytes)"));
            }
            if self.line_total.saturating_add(new_len)
                > self.limits.max_total_bytes.saturating_add(1)
            {
                let limit = self.limits.max_total_bytes;
                return self.fatal(format!("response too long (limit {limit} bytes)"));
            }
            self.cur_line.extend_from_slice(&avail[..n]);
            self.pos += n;
            if !lf {
                return None;
            }
            self.pos += 1;
            let mut line = std::mem::take(&mut self.cur_line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.limits.max_line_bytes {
                let limit = self.limits.max_line_bytes;
                return self.fatal(format!("line too long (limit {limit} bytes)"));
            }
            self.line_total += line.len();
            if self.line_total > self.limits.max_total_bytes {
                let limit = self.limits.max_total_bytes;
                return self.fatal(format!("response too long (limit {limit} bytes)"));
            }
            let marker = if self.lines.is_empty() && is_text_line(&line) {
                None
            } else {
                literal_marker(&line)
            };
            self.lines.push(line);
            if let Some(m) = marker {
                if self.literals.len() >= self.limits.max_literals {
                    let limit = self.limits.max_literals;
                    return self.fatal(format!("too many literals (limit {limit})"));
                }
                if m.size > self.limits.max_literal_bytes {
                    let limit = self.limits.max_literal_bytes;
                    return self.fatal(format!(
                        "literal of {} bytes too large (limit {limit} bytes)",
                        m.size
                    ));
                }
                self.in_literal = Some((m.size, m.binary));
                self.cur_literal =
                    Vec::with_capacity(usize::try_from(m.size.min(64 * 1024)).unwrap_or(0));
                continue;
            }
            let frame = Frame::new_unchecked(
                std::mem::take(&mut self.lines),
                std::mem::take(&mut self.literals),
            );
            self.line_total = 0;
            return Some(self.parse(&frame));
        }
    }

    fn parse(&self, frame: &Frame) -> Result<Response, ResponseError> {
        let mut c = Cursor::new(frame, self.limits.max_nesting_depth, self.encoding);
        parse_response(&mut c)
            .and_then(|r| c.expect_end().map(|_| r))
            .map_err(|e| ResponseError::Parse {
                message: e.to_string(),
                line: frame.lines().first().cloned().unwrap_or_default(),
            })
    }
}

/// Status and continuation lines: their text never introduces a literal.
fn is_text_line(line: &[u8]) -> bool {
    if line.first() == Some(&b'+') {
        return true;
    }
    let mut words = line.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words.next().is_some_and(|w| {
        [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(w))
    })
}

/// Parses one complete response frame (exposed for the fuzz entry point).
pub(crate) fn parse_response(c: &mut Cursor<'_>) -> PResult<Response> {
    if c.eat(b'+') {
        c.eat(b' ');
        let text = line_text(c.rest_of_line());
        return Ok(Response::Continuation { text });
    }
    if c.eat(b'*') {
        c.sp()?;
        if c.peek().is_some_and(|b| b.is_ascii_digit()) {
            let n = c.number()?;
            c.sp()?;
            let w = c.atom_upper()?;
            return Ok(Response::Data(match w.as_str() {
                "EXISTS" => Data::Exists(n),
                "RECENT" => Data::Recent(n),
                "EXPUNGE" => Data::Expunge(n),
                "FETCH" => {
                    c.sp()?;
                    Data::Fetch {
                        seq: n,
                        items: fetch_items(c)?,
                    }
                }
                _ => return Err(ParseErrorKind::Invalid(format!("Unknown response {n} {w}"))),
            }));
        }
        let w = c.atom_upper()?;
        if let Some(kind) = status_kind(&w) {
            return status(c, None, kind);
        }
        return untagged(c, &w).map(Response::Data);
    }
    let tag = Tag::from_bytes(c.take_while(is_tag_char)).ok_or(ParseErrorKind::InvalidTag)?;
    c.sp()?;
    let w = c.atom_upper()?;
    match status_kind(&w) {
        Some(kind @ (StatusKind::Ok | StatusKind::No | StatusKind::Bad)) => {
            status(c, Some(tag), kind)
        }
        _ => Err(ParseErrorKind::Invalid(format!(
            "Unknown tagged response {w}"
        ))),
    }
}

/// Human-readable text, with CR and NUL shown as spaces (as written by
/// [`crate::response::write_status`]).
fn line_text(raw: &[u8]) -> String {
    let clean: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&clean).into_owned()
}

fn status_kind(w: &str) -> Option<StatusKind> {
    Some(match w {
        "OK" => StatusKind::Ok,
        "NO" => StatusKind::No,
        "BAD" => StatusKind::Bad,
        "PREAUTH" => StatusKind::PreAuth,
        "BYE" => StatusKind::Bye,
        _ => return None,
    })
}

fn status(c: &mut Cursor<'_>, tag: Option<Tag>, kind: StatusKind) -> PResult<Response> {
    let mut code = None;
    let mut text = String::new();
    if c.eat(b' ') {
        if c.peek() == Some(b'[') {
            code = Some(resp_code(c)?);
            c.eat(b' ');
        }
        text = line_text(c.rest_of_line());
    }
    Ok(Response::Status {
        tag,
        kind,
        code,
        text,
    })
}

fn resp_code(c: &mut Cursor<'_>) -> PResult<ResponseCode> {
    c.expect(b'[', "'['")?;
    let raw_name = c.take_while(|b| b != b' ' && b != b']' && b > 0x20 && b < 0x7f);
    if raw_name.is_empty() {
        return Err(ParseErrorKind::Expected("response code"));
    }
    let name = String::from_utf8_lossy(raw_name).to_ascii_uppercase();
    let code = if let Some((_, code)) = SIMPLE_CODES.iter().find(|(n, _)| *n == name) {
        code.clone()
    } else {
        match name.as_str() {
            "PERMANENTFLAGS" => {
                c.sp()?;
                c.expect(b'(', "'('")?;
                let mut flags = Vec::new();
                let mut allow_new_keywords = false;
                if !c.eat(b')') {
                    loop {
                        if c.peek() == Some(b'\\') && c.peek_at(1) == Some(b'*') {
                            c.bump();
                            c.bump();
                            allow_new_keywords = true;
                        } else {
                            flags.push(c.flag()?);
                        }
                        if c.eat(b')') {
                            break;
                        }
                        c.sp()?;
                    }
                }
                ResponseCode::PermanentFlags {
                    flags,
                    allow_new_keywords,
                }
            }
            "UIDNEXT" => {
                c.sp()?;
                ResponseCode::UidNext(c.nz_number()?)
            }
            "UIDVALIDITY" => {
                c.sp()?;
                ResponseCode::UidValidity(c.nz_number()?)
            }
            "UNSEEN" => {
                c.sp()?;
                ResponseCode::Unseen(c.nz_number()?)
            }
            "APPENDUID" => {
                c.sp()?;
                let uid_validity = c.nz_number()?;
                c.sp()?;
                ResponseCode::AppendUid {
                    uid_validity,
                    uids: set_until_bracket(c)?,
                }
            }
            "COPYUID" => {
                c.sp()?;
                let uid_validity = c.nz_number()?;
                c.sp()?;
                let source = c.seq_set()?;
                c.sp()?;
                ResponseCode::CopyUid {
                    uid_validity,
                    source,
                    dest: set_until_bracket(c)?,
                }
            }
            "HIGHESTMODSEQ" => {
                c.sp()?;
                ResponseCode::HighestModSeq(c.mod_seq()?)
            }
            "MODIFIED" => {
                c.sp()?;
                ResponseCode::Modified(set_until_bracket(c)?)
            }
            "CAPABILITY" => {
                let mut caps = Vec::new();
                while c.eat(b' ') {
                    caps.push(String::from_utf8_lossy(c.atom()?).into_owned());
                }
                ResponseCode::Capability(caps)
            }
            "BADCHARSET" => {
                let mut cs = Vec::new();
                if c.eat(b' ') {
                    c.expect(b'(', "'('")?;
                    loop {
                        cs.push(c.astring_utf8("charset is not UTF-8")?);
                        if c.eat(b')') {
                            break;
                        }
                        c.sp()?;
                    }
                }
                ResponseCode::BadCharset(cs)
            }
            _ => {
                let args = if c.eat(b' ') {
                    Some(line_text(c.take_while(|b| b != b']')))
                } else {
                    None
                };
                ResponseCode::Other {
                    name: String::from_utf8_lossy(raw_name).into_owned(),
                    args,
                }
            }
        }
    };
    c.expect(b']', "']' closing response code")?;
    Ok(code)
}

/// A sequence set directly followed by `]`.
fn set_until_bracket(c: &mut Cursor<'_>) -> PResult<crate::seqset::SequenceSet> {
    let raw = c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
    if c.peek() != Some(b']') {
        return Err(ParseErrorKind::Expected("']' after set"));
    }
    crate::seqset::parse_seq_set(raw).map_err(ParseErrorKind::InvalidSequenceSet)
}

fn atoms(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    let mut v = Vec::new();
    while c.eat(b' ') {
        v.push(String::from_utf8_lossy(c.atom()?).into_owned());
    }
    Ok(v)
}

fn delimiter(c: &mut Cursor<'_>) -> PResult<Option<char>> {
    if c.eat_nil() {
        return Ok(None);
    }
    let q = c.quoted()?;
    let s = String::from_utf8(q).map_err(|_| ParseErrorKind::Expected("delimiter"))?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(ch), None) => Ok(Some(ch)),
        _ => Err(ParseErrorKind::Expected("one-character delimiter")),
    }
}

fn mailbox_name(c: &mut Cursor<'_>) -> PResult<MailboxName> {
    c.mailbox()
}

fn untagged(c: &mut Cursor<'_>, w: &str) -> PResult<Data> {
    Ok(match w {
        "CAPABILITY" => Data::Capability(atoms(c)?),
        "ENABLED" => Data::Enabled(atoms(c)?),
        "LIST" | "LSUB" => {
            c.sp()?;
            c.expect(b'(', "'(' before mailbox attributes")?;
            let mut attributes = Vec::new();
            if !c.eat(b')') {
                loop {
                    c.expect(b'\\', "mailbox attribute")?;
                    attributes.push(MailboxAttr::from_atom(&String::from_utf8_lossy(c.atom()?)));
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
            }
            c.sp()?;
            let delimiter = delimiter(c)?;
            c.sp()?;
            let mailbox = mailbox_name(c)?;
            let mut extended = Vec::new();
            if c.eat(b' ') {
                c.expect(b'(', "'(' before extended data")?;
                if !c.eat(b')') {
                    loop {
                        let tag = c.astring_utf8("extended item tag is not UTF-8")?;
                        c.sp()?;
                        extended.push((tag, value(c)?));
                        if c.eat(b')') {
                            break;
                        }
                        c.sp()?;
                    }
                }
            }
            let l = ListData {
                attributes,
                delimiter,
                mailbox,
                extended,
            };
            if w == "LIST" {
                Data::List(l)
            } else {
                Data::Lsub(l)
            }
        }
        "STATUS" => {
            c.sp()?;
            let mailbox = mailbox_name(c)?;
            c.sp()?;
            c.expect(b'(', "'('")?;
            let mut items = Vec::new();
            if !c.eat(b')') {
                loop {
                    let a = c.atom()?;
                    let item = StatusItem::from_name(a).ok_or_else(|| {
                        ParseErrorKind::UnknownStatusItem(String::from_utf8_lossy(a).into_owned())
                    })?;
                    c.sp()?;
                    items.push((item, c.number64()?));
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
            }
            Data::Status { mailbox, items }
        }
        "SEARCH" => {
            let mut ids = Vec::new();
            let mut mod_seq = None;
            while c.eat(b' ') {
                if c.eat(b'(') {
                    if c.atom_upper()? != "MODSEQ" {
                        return Err(ParseErrorKind::Expected("MODSEQ"));
                    }
                    c.sp()?;
                    mod_seq = Some(c.mod_seq()?);
                    c.expect(b')', "')'")?;
                } else {
                    ids.push(c.nz_number()?);
                }
            }
            Data::Search { ids, mod_seq }
        }
        "ESEARCH" => {
            let (mut tag, mut uid, mut min, mut max, mut all, mut count, mut mod_seq) =
                (None, false, None, None, None, None, None);
            while c.eat(b' ') {
                if c.eat(b'(') {
                    if c.atom_upper()? != "TAG" {
                        return Err(ParseErrorKind::Expected("TAG"));
                    }
                    c.sp()?;
                    tag = Some(String::from_utf8_lossy(&c.string()?).into_owned());
                    c.expect(b')', "')'")?;
                    continue;
                }
                let k = c.atom_upper()?;
                match k.as_str() {
                    "UID" => uid = true,
                    "MIN" => {
                        c.sp()?;
                        min = Some(c.nz_number()?);
                    }
                    "MAX" => {
                        c.sp()?;
                        max = Some(c.nz_number()?);
                    }
                    "ALL" => {
                        c.sp()?;
                        all = Some(c.seq_set()?);
                    }
                    "COUNT" => {
                        c.sp()?;
                        count = Some(c.number()?);
                    }
                    "MODSEQ" => {
                        c.sp()?;
                        mod_seq = Some(c.mod_seq()?);
                    }
                    _ => return Err(ParseErrorKind::UnknownOption(k)),
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
            }
        }
        "FLAGS" => {
            c.sp()?;
            Data::Flags(c.flag_list()?)
        }
        "VANISHED" => {
            c.sp()?;
            let mut earlier = false;
            if c.eat(b'(') {
                if c.atom_upper()? != "EARLIER" {
                    return Err(ParseErrorKind::Expected("EARLIER"));
                }
                c.expect(b')', "')'")?;
                c.sp()?;
                earlier = true;
            }
            Data::Vanished {
                earlier,
                uids: c.seq_set()?,
            }
        }
        "NAMESPACE" => {
            let mut ns: [Vec<NamespaceDescr>; 3] = Default::default();
            for slot in ns.iter_mut() {
                c.sp()?;
                if c.eat_nil() {
                    continue;
                }
                c.expect(b'(', "'(' or NIL")?;
                loop {
                    c.expect(b'(', "'('")?;
                    let raw = c.string()?;
                    let prefix = c.decode_name(&raw)?;
                    c.sp()?;
                    let delimiter = delimiter(c)?;
                    // Namespace response extensions are skipped.
                    while c.eat(b' ') {
                        value(c)?;
                    }
                    c.expect(b')', "')'")?;
                    slot.push(NamespaceDescr { prefix, delimiter });
                    if c.eat(b')') {
                        break;
                    }
                }
            }
            let [personal, other, shared] = ns;
            Data::Namespace {
                personal,
                other,
                shared,
            }
        }
        "QUOTA" => {
            c.sp()?;
            let root = c.astring_utf8("quota root is not UTF-8")?;
            c.sp()?;
            c.expect(b'(', "'('")?;
            let mut resources = Vec::new();
            if !c.eat(b')') {
                loop {
                    let name = String::from_utf8_lossy(c.atom()?).into_owned();
                    c.sp()?;
                    let usage = c.number64()?;
                    c.sp()?;
                    let limit = c.number64()?;
                    resources.push(QuotaResource { name, usage, limit });
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
            }
            Data::Quota { root, resources }
        }
        "QUOTAROOT" => {
            c.sp()?;
            let mailbox = mailbox_name(c)?;
            let mut roots = Vec::new();
            while c.eat(b' ') {
                roots.push(c.astring_utf8("quota root is not UTF-8")?);
            }
            Data::QuotaRoot { mailbox, roots }
        }
        "ID" => {
            c.sp()?;
            if c.eat_nil() {
                Data::Id(None)
            } else {
                c.expect(b'(', "'(' or NIL")?;
                let mut params = Vec::new();
                if !c.eat(b')') {
                    loop {
                        let k = c.string()?;
                        c.sp()?;
                        params.push((k, c.nstring()?));
                        if c.eat(b')') {
                            break;
                        }
                        c.sp()?;
                    }
                }
                Data::Id(Some(params))
            }
        }
        _ => return Err(ParseErrorKind::Invalid(format!("Unknown response {w}"))),
    })
}

fn origin(c: &mut Cursor<'_>) -> PResult<Option<u32>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let n = c.number()?;
    c.expect(b'>', "'>'")?;
    Ok(Some(n))
}

fn fetch_items(c: &mut Cursor<'_>) -> PResult<Vec<FetchItem>> {
    c.expect(b'(', "'(' before fetch items")?;
    let mut items = Vec::new();
    if c.eat(b')') {
        return Ok(items);
    }
    loop {
        items.push(fetch_item(c)?);
        if c.eat(b')') {
            return Ok(items);
        }
        c.sp()?;
    }
}

fn fetch_item(c: &mut Cursor<'_>) -> PResult<FetchItem> {
    let name = String::from_utf8_lossy(c.word()).to_ascii_uppercase();
    let bracket = c.peek() == Some(b'[');
    Ok(match (name.as_str(), bracket) {
        ("UID", false) => {
            c.sp()?;
            FetchItem::Uid(c.nz_number()?)
        }
        ("FLAGS", false) => {
            c.sp()?;
            FetchItem::Flags(c.flag_list()?)
        }
        ("INTERNALDATE", false) => {
            c.sp()?;
            FetchItem::InternalDate(c.date_time()?)
        }
        ("RFC822.SIZE", false) => {
            c.sp()?;
            FetchItem::Rfc822Size(c.number64()?)
        }
        ("MODSEQ", false) => {
            c.sp()?;
            c.expect(b'(', "'('")?;
            let m = c.mod_seq()?;
            c.expect(b')', "')'")?;
            FetchItem::ModSeq(m)
        }
        ("BODY", true) => {
            let section: Section = section(c)?;
            let origin = origin(c)?;
            c.sp()?;
            FetchItem::BodySection {
                section,
                origin,
                data: c.nstring_binary()?,
            }
        }
        ("BINARY", true) => {
            let part = binary_section(c)?;
            let origin = origin(c)?;
            c.sp()?;
            FetchItem::Binary {
                part,
                origin,
                data: c.nstring_binary()?,
            }
        }
        ("BINARY.SIZE", true) => {
            let part = binary_section(c)?;
            c.sp()?;
            FetchItem::BinarySize {
                part,
                size: c.number64()?,
            }
        }
        ("RFC822", false) => {
            c.sp()?;
            FetchItem::Rfc822(c.nstring_binary()?)
        }
        ("RFC822.HEADER", false) => {
            c.sp()?;
            FetchItem::Rfc822Header(c.nstring_binary()?)
        }
        ("RFC822.TEXT", false) => {
            c.sp()?;
            FetchItem::Rfc822Text(c.nstring_binary()?)
        }
        ("ENVELOPE", false) => {
            c.sp()?;
            FetchItem::Envelope(value(c)?)
        }
        ("BODYSTRUCTURE", false) => {
            c.sp()?;
            FetchItem::BodyStructure(value(c)?)
        }
        ("BODY", false) => {
            c.sp()?;
            FetchItem::Body(value(c)?)
        }
        _ => return Err(ParseErrorKind::UnknownFetchAttribute(name)),
    })
}

/// Characters of a bare token inside a generic value.
fn is_value_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'(' | b')' | b'"' | b'{')
}

/// A generic value: NIL, number, atom, string or list.
fn value(c: &mut Cursor<'_>) -> PResult<Value> {
    match c.peek() {
        Some(b'(') => {
            c.bump();
            c.enter()?;
            let mut items = Vec::new();
            if !c.eat(b')') {
                loop {
                    items.push(value(c)?);
                    if c.eat(b')') {
                        break;
                    }
                    // RFC 3501 writes lists of lists without separators:
                    // `1*body` of a multipart BODYSTRUCTURE, `1*address`.
                    if matches!(items.last(), Some(Value::List(_))) && c.peek() == Some(b'(') {
                        continue;
                    }
                    c.sp()?;
                }
            }
            c.leave();
            Ok(Value::List(items))
        }
        Some(b'"') => Ok(Value::String(c.quoted()?)),
        Some(b'{') | Some(b'~') if c.peek() == Some(b'{') || c.peek_at(1) == Some(b'{') => {
            Ok(Value::String(c.literal(true)?.0.to_vec()))
        }
        _ => {
            let tok = c.take_while(is_value_atom_char);
            if tok.is_empty() {
                return Err(ParseErrorKind::Expected("value"));
            }
            if tok.eq_ignore_ascii_case(b"NIL") {
                return Ok(Value::Nil);
            }
            if tok.iter().all(u8::is_ascii_digit)
                && let Some(n) = std::str::from_utf8(tok).ok().and_then(|s| s.parse().ok())
            {
                return Ok(Value::Number(n));
            }
            Ok(Value::Atom(String::from_utf8_lossy(tok).into_owned()))
        }
    }
}

/// Parses a whole response given as bytes (for tests and tools): `Ok(None)`
/// if incomplete.
pub fn parse_response_bytes(bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
    let mut r = ResponseReader::new(ResponseLimits {
        max_pending_input_bytes: bytes.len().max(1),
        ..ResponseLimits::default()
    });
    r.feed(bytes)
        .map_err(|e| ResponseError::Framing(e.to_string()))?;
    r.next_response().transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_pending_input_returns_bytes_after_the_last_response() {
        let mut r = ResponseReader::new(ResponseLimits::default());
        r.feed(b"a1 OK begin TLS now\r\n\x16\x03\x01 injected")
            .unwrap();
        assert!(matches!(
            r.next_response(),
            Some(Ok(Response::Status {
                kind: StatusKind::Ok,
                ..
            }))
        ));
        assert_eq!(r.take_pending_input(), b"\x16\x03\x01 injected");
        assert!(r.take_pending_input().is_empty());
        // A partly read response is dropped with the rest.
        r.feed(b"* 1 FETCH (BODY[] {10}\r\nabc").unwrap();
        assert!(r.next_response().is_none());
        assert!(r.in_response());
        assert!(r.take_pending_input().is_empty());
        assert!(!r.in_response());
        r.feed(b"* 2 EXISTS\r\n").unwrap();
        assert_eq!(r.next_response(), Some(Ok(Response::Data(Data::Exists(2)))));
    }
}

#[cfg(test)]
mod adjacent_lists {
    use super::*;

    /// Regression: multipart BODYSTRUCTURE and address lists have no space
    /// between their parenthesized elements; the reader refused them.
    #[test]
    fn lists_without_separators_parse() {
        let line = b"* 1 FETCH (UID 7 BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 2 1) \"ALTERNATIVE\") ENVELOPE (NIL NIL ((NIL NIL \"a\" \"x\")(NIL NIL \"b\" \"y\")) NIL NIL NIL NIL NIL NIL NIL))\r\n";
        let parsed = parse_response_bytes(line);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
