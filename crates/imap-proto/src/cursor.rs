//! A cursor over a [`Frame`] (lines plus literals) with the lexical
//! primitives of the IMAP grammar, shared by the command parser and the
//! response reader.
//!
//! The cursor never crosses a line end except through a literal: a string
//! whose marker ends line `i` takes `literals[i]` and continues at the start
//! of line `i + 1`. Every primitive returns a [`ParseErrorKind`] instead of
//! panicking.

use crate::datetime::{Date, DateTime};
use crate::framer::{Frame, literal_marker};
use crate::mutf7;
use crate::parse::ParseErrorKind;
use crate::seqset::{SequenceSet, parse_seq_set};
use crate::syntax::{is_astring_char, is_atom_char, is_list_char};
use crate::types::{Flag, MailboxEncoding, MailboxName};

pub(crate) type PResult<T> = Result<T, ParseErrorKind>;

/// Position in a frame plus parsing settings.
pub(crate) struct Cursor<'a> {
    frame: &'a Frame,
    line: usize,
    pos: usize,
    depth: usize,
    max_depth: usize,
    pub(crate) encoding: MailboxEncoding,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(frame: &'a Frame, max_depth: usize, encoding: MailboxEncoding) -> Self {
        Cursor {
            frame,
            line: 0,
            pos: 0,
            depth: 0,
            max_depth,
            encoding,
        }
    }

    fn cur(&self) -> &'a [u8] {
        self.frame.lines().get(self.line).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.cur().get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, off: usize) -> Option<u8> {
        self.cur().get(self.pos + off).copied()
    }

    /// Whether the rest of the current line starts with `s` (ASCII
    /// case-insensitive).
    pub(crate) fn looking_at_ci(&self, s: &[u8]) -> bool {
        self.cur()
            .get(self.pos..self.pos + s.len())
            .is_some_and(|r| r.eq_ignore_ascii_case(s))
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.cur().len() && self.line + 1 >= self.frame.lines().len()
    }

    pub(crate) fn bump(&mut self) {
        if self.pos < self.cur().len() {
            self.pos += 1;
        }
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(ParseErrorKind::Expected(what))
        }
    }

    pub(crate) fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "SP")
    }

    pub(crate) fn expect_end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(ParseErrorKind::TrailingData)
        }
    }

    /// Enters a parenthesised level, enforcing the nesting limit.
    pub(crate) fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ParseErrorKind::TooDeep(self.max_depth));
        }
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let line = self.cur();
        let start = self.pos.min(line.len());
        let mut end = start;
        while end < line.len() && f(line[end]) {
            end += 1;
        }
        self.pos = end;
        &line[start..end]
    }

    /// The rest of the current line (status-response text).
    pub(crate) fn rest_of_line(&mut self) -> &'a [u8] {
        self.take_while(|_| true)
    }

    /// `1*ATOM-CHAR`.
    pub(crate) fn atom(&mut self) -> PResult<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err(ParseErrorKind::Expected("atom"))
        } else {
            Ok(a)
        }
    }

    /// An atom as an upper-case string (for keywords).
    pub(crate) fn atom_upper(&mut self) -> PResult<String> {
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    /// Letters, digits, `.` and `-`: a FETCH attribute or item name.
    pub(crate) fn word(&mut self) -> &'a [u8] {
        self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    }

    fn digits(&mut self) -> PResult<&'a [u8]> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            Err(ParseErrorKind::Expected("number"))
        } else {
            Ok(d)
        }
    }

    /// `number` (32-bit).
    pub(crate) fn number(&mut self) -> PResult<u32> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseErrorKind::NumberOutOfRange)
    }

    /// `nz-number`.
    pub(crate) fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => Err(ParseErrorKind::Expected("non-zero number")),
            n => Ok(n),
        }
    }

    /// `number64` (0 ..= 2^63-1).
    pub(crate) fn number64(&mut self) -> PResult<u64> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or(ParseErrorKind::NumberOutOfRange)
    }

    /// `mod-sequence-value` (1 ..= 2^63-1).
    pub(crate) fn mod_seq(&mut self) -> PResult<u64> {
        match self.number64()? {
            0 => Err(ParseErrorKind::Expected("non-zero mod-sequence")),
            n => Ok(n),
        }
    }

    /// A quoted string (content unescaped).
    pub(crate) fn quoted(&mut self) -> PResult<Vec<u8>> {
        if !self.eat(b'"') {
            return Err(ParseErrorKind::Expected("quoted string"));
        }
        let line = self.cur();
        let mut out = Vec::new();
        let mut i = self.pos;
        loop {
            match line.get(i) {
                None => return Err(ParseErrorKind::InvalidString("unterminated quoted string")),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                Some(b'\\') => match line.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        i += 2;
                    }
                    _ => {
                        return Err(ParseErrorKind::InvalidString(
                            "invalid escape in quoted string",
                        ));
                    }
                },
                Some(0) => return Err(ParseErrorKind::InvalidString("NUL in quoted string")),
                Some(b'\r') => return Err(ParseErrorKind::InvalidString("CR in quoted string")),
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
    }

    /// A literal at the cursor (`{n}`, `{n+}`, and `~{n}` if
    /// `allow_binary`). Returns the bytes and whether it was literal8.
    pub(crate) fn literal(&mut self, allow_binary: bool) -> PResult<(&'a [u8], bool)> {
        let rest = &self.cur()[self.pos.min(self.cur().len())..];
        let m = match literal_marker(rest) {
            Some(m) if m.start == 0 => m,
            _ => return Err(ParseErrorKind::InvalidString("invalid literal")),
        };
        if m.binary && !allow_binary {
            return Err(ParseErrorKind::InvalidString("literal8 not allowed here"));
        }
        let lit = self
            .frame
            .literals()
            .get(self.line)
            .filter(|l| l.data.len() as u64 == m.size)
            .ok_or(ParseErrorKind::InvalidString("literal data missing"))?;
        self.line += 1;
        self.pos = 0;
        Ok((&lit.data, m.binary))
    }

    fn at_literal(&self) -> bool {
        self.peek() == Some(b'{') || (self.peek() == Some(b'~') && self.peek_at(1) == Some(b'{'))
    }

    /// `string` (quoted or literal), NUL-free.
    pub(crate) fn string(&mut self) -> PResult<Vec<u8>> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        if self.peek() == Some(b'{') {
            let (data, _) = self.literal(false)?;
            if data.contains(&0) {
                return Err(ParseErrorKind::InvalidString("NUL in literal"));
            }
            return Ok(data.to_vec());
        }
        Err(ParseErrorKind::Expected("string"))
    }

    /// `string` that may also be literal8 (data that may hold NUL).
    pub(crate) fn binary_string(&mut self) -> PResult<(Vec<u8>, bool)> {
        if self.at_literal() {
            let (data, binary) = self.literal(true)?;
            return Ok((data.to_vec(), binary));
        }
        Ok((self.quoted()?, false))
    }

    /// `astring`.
    pub(crate) fn astring(&mut self) -> PResult<Vec<u8>> {
        if self.peek() == Some(b'~') && self.peek_at(1) == Some(b'{') {
            return Err(ParseErrorKind::InvalidString("literal8 not allowed here"));
        }
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            Some(b) if is_astring_char(b) => Ok(self.take_while(is_astring_char).to_vec()),
            _ => Err(ParseErrorKind::Expected("string")),
        }
    }

    /// `astring` as UTF-8 text.
    pub(crate) fn astring_utf8(&mut self, what: &'static str) -> PResult<String> {
        String::from_utf8(self.astring()?).map_err(|_| ParseErrorKind::InvalidString(what))
    }

    /// `nstring` (`NIL` or a string).
    pub(crate) fn nstring(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.looking_at_ci(b"NIL") && !self.peek_at(3).is_some_and(is_atom_char) {
            self.pos += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// `nstring` that may be literal8 (BINARY fetch data).
    pub(crate) fn nstring_binary(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.looking_at_ci(b"NIL") && !self.peek_at(3).is_some_and(is_atom_char) {
            self.pos += 3;
            return Ok(None);
        }
        self.binary_string().map(|(d, _)| Some(d))
    }

    /// Whether the next token is `NIL`.
    pub(crate) fn eat_nil(&mut self) -> bool {
        if self.looking_at_ci(b"NIL") && !self.peek_at(3).is_some_and(is_atom_char) {
            self.pos += 3;
            true
        } else {
            false
        }
    }

    /// `list-mailbox`: list-chars (with `%`, `*`) or a string.
    pub(crate) fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            Some(b) if is_list_char(b) => Ok(self.take_while(is_list_char).to_vec()),
            _ => Err(ParseErrorKind::Expected("mailbox pattern")),
        }
    }

    /// Decodes a wire mailbox name per the connection's encoding.
    pub(crate) fn decode_name(&self, raw: &[u8]) -> PResult<String> {
        match self.encoding {
            MailboxEncoding::Utf8 => String::from_utf8(raw.to_vec())
                .map_err(|_| ParseErrorKind::InvalidMailboxName("not valid UTF-8".into())),
            MailboxEncoding::ModifiedUtf7 => mutf7::decode(raw).map_err(|e| {
                ParseErrorKind::InvalidMailboxName(format!("bad modified UTF-7: {e}"))
            }),
        }
    }

    /// `mailbox`: an astring decoded and validated.
    pub(crate) fn mailbox(&mut self) -> PResult<MailboxName> {
        let raw = self.astring().map_err(|e| match e {
            ParseErrorKind::Expected(_) => ParseErrorKind::Expected("mailbox name"),
            other => other,
        })?;
        let name = self.decode_name(&raw)?;
        MailboxName::new(&name).map_err(ParseErrorKind::InvalidMailboxName)
    }

    /// A `list-mailbox` decoded (wildcards kept, control characters refused).
    pub(crate) fn list_pattern(&mut self) -> PResult<String> {
        let raw = self.list_mailbox()?;
        let s = self.decode_name(&raw)?;
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(ParseErrorKind::InvalidMailboxName(format!(
                "control character U+{:04X} not allowed",
                u32::from(c)
            )));
        }
        Ok(s)
    }

    /// `sequence-set` (or a `uid-set`, which has the same shape here).
    pub(crate) fn seq_set(&mut self) -> PResult<SequenceSet> {
        let raw = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*' | b'$'));
        if raw.is_empty() {
            return Err(match self.peek() {
                Some(c) => ParseErrorKind::InvalidSequenceSet(format!(
                    "unexpected '{}'",
                    char::from(c).escape_default()
                )),
                None => ParseErrorKind::InvalidSequenceSet("missing".into()),
            });
        }
        if let Some(c) = self.peek().filter(|&c| c != b' ' && c != b')') {
            return Err(ParseErrorKind::InvalidSequenceSet(format!(
                "unexpected '{}'",
                char::from(c).escape_default()
            )));
        }
        parse_seq_set(raw).map_err(ParseErrorKind::InvalidSequenceSet)
    }

    /// A flag (`\Seen`, `$Forwarded`, `Junk`).
    pub(crate) fn flag(&mut self) -> PResult<Flag> {
        let start = self.pos;
        self.eat(b'\\');
        let a = self.take_while(is_atom_char);
        let raw = &self.cur()[start..self.pos];
        Flag::from_wire(raw).ok_or_else(|| {
            let mut shown = String::from_utf8_lossy(raw).into_owned();
            if a.is_empty() {
                shown = self
                    .peek()
                    .map(|c| char::from(c).to_string())
                    .unwrap_or_default();
            }
            ParseErrorKind::InvalidFlag(shown)
        })
    }

    /// `flag-list` = `"(" [flag *(SP flag)] ")"`.
    pub(crate) fn flag_list(&mut self) -> PResult<Vec<Flag>> {
        self.expect(b'(', "'('")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// SEARCH `date` (`1-Feb-1994` or quoted).
    pub(crate) fn date(&mut self) -> PResult<Date> {
        let text = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-')
                .to_vec()
        };
        Date::parse_text(&text).ok_or(ParseErrorKind::InvalidDate)
    }

    /// Quoted `date-time`.
    pub(crate) fn date_time(&mut self) -> PResult<DateTime> {
        if self.peek() != Some(b'"') {
            return Err(ParseErrorKind::Expected("date-time"));
        }
        let text = self.quoted()?;
        DateTime::parse_text(&text).ok_or(ParseErrorKind::InvalidDateTime)
    }

    /// `section-part` numbers: `1.2.3` (stops before `.TEXT` etc.).
    pub(crate) fn part_numbers(&mut self) -> PResult<Vec<u32>> {
        let mut parts = Vec::new();
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            parts.push(self.nz_number()?);
            if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
                self.bump();
            } else {
                break;
            }
        }
        Ok(parts)
    }
}
