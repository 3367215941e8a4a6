//! SMTP/LMTP replies with RFC 3463 enhanced status codes.
//!
//! A [`Reply`] is a three-digit code, an optional [`EnhancedCode`] and one or
//! more text lines. [`Reply::write_to`] serialises it (multi-line replies use
//! `code-text` continuation lines); [`Reply::sanitized`] makes a reply that
//! came from a backend safe to put on the wire (valid code, matching
//! enhanced-code class, no control characters, bounded line length).

use std::fmt;

use crate::config::MAX_REPLY_LINE_BYTES;

/// An enhanced mail system status code (RFC 3463), e.g. `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// Class: 2 (success), 4 (persistent transient failure) or 5 (permanent).
    pub class: u8,
    /// Subject sub-code.
    pub subject: u16,
    /// Detail sub-code.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds an enhanced code.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// Parses `c.s.d` at the start of `text`; returns the code and the rest
    /// of the text after one separating space.
    pub fn parse_prefix(text: &str) -> Option<(Self, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let class = parse_digits::<u8>(parts.next()?, 1)?;
        let subject = parse_digits::<u16>(parts.next()?, 3)?;
        let detail = parse_digits::<u16>(parts.next()?, 3)?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        let rest = text.get(end + 1..).unwrap_or("");
        Some((Self::new(class, subject, detail), rest))
    }
}

fn parse_digits<N: std::str::FromStr>(s: &str, max_len: usize) -> Option<N> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (200..=599).
    pub code: u16,
    /// Enhanced status code, repeated on every line when present.
    pub enhanced: Option<EnhancedCode>,
    /// Text lines; an empty vector is written as one line without text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status code.
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// `250 2.0.0 <text>`.
    pub fn ok(text: impl Into<String>) -> Self {
        Self::new(250, EnhancedCode::new(2, 0, 0), text)
    }

    /// `550 5.1.1 <text>`: unknown user.
    pub fn unknown_user(text: impl Into<String>) -> Self {
        Self::new(550, EnhancedCode::new(5, 1, 1), text)
    }

    /// `452 4.2.2 <text>`: mailbox full / over quota.
    pub fn over_quota(text: impl Into<String>) -> Self {
        Self::new(452, EnhancedCode::new(4, 2, 2), text)
    }

    /// `451 4.3.0 <text>`: temporary local failure.
    pub fn temporary_failure(text: impl Into<String>) -> Self {
        Self::new(451, EnhancedCode::new(4, 3, 0), text)
    }

    /// The first digit of the code.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// True for 2xx replies.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// True for 3xx replies.
    pub fn is_intermediate(&self) -> bool {
        self.class() == 3
    }

    /// True for 4xx replies.
    pub fn is_transient(&self) -> bool {
        self.class() == 4
    }

    /// True for 5xx replies.
    pub fn is_permanent(&self) -> bool {
        self.class() == 5
    }

    /// All text lines joined by a single space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Makes a reply produced outside this crate safe to send: the code is
    /// forced into one of `allowed_classes` (otherwise the reply becomes
    /// `451 4.3.0`), an enhanced code of the matching class is supplied when
    /// missing or inconsistent, and control characters are replaced.
    pub fn sanitized(mut self, allowed_classes: &[u16]) -> Self {
        if !(200..=599).contains(&self.code) || !allowed_classes.contains(&self.class()) {
            tracing::warn!(code = self.code, "backend returned an invalid reply code");
            return Self::temporary_failure("Internal error: invalid reply from delivery backend");
        }
        let class = self.class() as u8;
        match self.enhanced {
            Some(e) if e.class == class => {}
            _ => self.enhanced = Some(EnhancedCode::new(class, 0, 0)),
        }
        for line in &mut self.lines {
            if line.chars().any(|c| c.is_control()) {
                *line = line
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
            }
        }
        self
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`. Control
    /// characters are replaced by spaces and each line is truncated to
    /// [`MAX_REPLY_LINE_BYTES`], so the output is always well formed.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let start = out.len();
            out.extend_from_slice(format!("{code}{sep}").as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(format!("{e} ").as_bytes());
            }
            let budget = MAX_REPLY_LINE_BYTES.saturating_sub(out.len() - start + 2);
            let mut used = 0;
            for c in line.chars() {
                let c = if c.is_control() { ' ' } else { c };
                if used + c.len_utf8() > budget {
                    break;
                }
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                used += c.len_utf8();
            }
            if used == 0 && self.enhanced.is_some() {
                // Drop the space after the enhanced code when there is no text.
                out.pop();
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        write!(f, " {}", self.text())
    }
}

/// Error while parsing a reply line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyParseError {
    /// The line does not start with a three-digit code and a separator.
    #[error("malformed reply line")]
    Malformed,
    /// A continuation line carried a different code than the first line.
    #[error("reply code changed within a multi-line reply")]
    CodeMismatch,
}

/// Incremental parser for (possibly multi-line) replies, used by the client.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// A parser with no lines buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of lines buffered for the reply in progress.
    pub fn pending_lines(&self) -> usize {
        self.lines.len()
    }

    /// Feeds one line (without CRLF). Returns the reply when this was its
    /// last line.
    /// After an error the partial reply is discarded.
    pub fn push_line(&mut self, line: &str) -> Result<Option<Reply>, ReplyParseError> {
        let result = self.push_line_inner(line);
        if result.is_err() {
            self.code = None;
            self.lines.clear();
        }
        result
    }

    fn push_line_inner(&mut self, line: &str) -> Result<Option<Reply>, ReplyParseError> {
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyParseError::Malformed);
        }
        let code: u16 = line[..3].parse().map_err(|_| ReplyParseError::Malformed)?;
        if !(200..=599).contains(&code) {
            return Err(ReplyParseError::Malformed);
        }
        let last = match bytes.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(ReplyParseError::Malformed),
        };
        if let Some(prev) = self.code
            && prev != code
        {
            return Err(ReplyParseError::CodeMismatch);
        }
        self.code = Some(code);
        self.lines.push(line.get(4..).unwrap_or("").to_owned());
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        self.code = None;
        Ok(Some(split_enhanced(code, lines)))
    }
}

/// Splits the enhanced status code off every line when all lines carry the
/// same one and its class matches the reply code.
fn split_enhanced(code: u16, lines: Vec<String>) -> Reply {
    let class = (code / 100) as u8;
    let first = lines
        .first()
        .and_then(|l| EnhancedCode::parse_prefix(l))
        .map(|(e, _)| e)
        .filter(|e| e.class == class);
    if let Some(e) = first {
        let mut stripped = Vec::with_capacity(lines.len());
        for line in &lines {
            match EnhancedCode::parse_prefix(line) {
                Some((other, rest)) if other == e => stripped.push(rest.to_owned()),
                _ => {
                    return Reply {
                        code,
                        enhanced: None,
                        lines,
                    };
                }
            }
        }
        return Reply {
            code,
            enhanced: Some(e),
            lines: stripped,
        };
    }
    Reply {
        code,
        enhanced: None,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_single_and_multi_line() {
        assert_eq!(
            Reply::unknown_user("no such user").to_bytes(),
            b"550 5.1.1 no such user\r\n"
        );
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["host".into(), "PIPELINING".into(), "SIZE 10".into()],
        };
        assert_eq!(
            r.to_bytes(),
            b"250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        let r = Reply {
            code: 250,
            enhanced: Some(EnhancedCode::new(2, 0, 0)),
            lines: vec![],
        };
        assert_eq!(r.to_bytes(), b"250 2.0.0\r\n");
    }

    #[test]
    fn strips_control_characters_and_truncates() {
        let r = Reply::ok("evil\r\n250 injected");
        assert_eq!(r.to_bytes(), b"250 2.0.0 evil  250 injected\r\n");
        let long = Reply::ok("x".repeat(2000)).to_bytes();
        assert_eq!(long.len(), MAX_REPLY_LINE_BYTES);
        assert!(long.ends_with(b"xx\r\n"));
    }

    #[test]
    fn sanitizes_backend_replies() {
        let r = Reply::plain(250, "fine").sanitized(&[2, 4, 5]);
        assert_eq!(r.to_bytes(), b"250 2.0.0 fine\r\n");
        let r = Reply::new(550, EnhancedCode::new(2, 1, 5), "mismatch").sanitized(&[2, 4, 5]);
        assert_eq!(r.to_bytes(), b"550 5.0.0 mismatch\r\n");
        let r = Reply::ok("not allowed").sanitized(&[4, 5]);
        assert_eq!(r.code, 451);
        let r = Reply::plain(999, "bogus").sanitized(&[2, 4, 5]);
        assert_eq!(r.code, 451);
    }

    #[test]
    fn parses_replies() {
        let mut p = ReplyParser::new();
        assert_eq!(p.push_line("250-host").unwrap(), None);
        assert_eq!(p.pending_lines(), 1);
        let r = p.push_line("250 SIZE 100").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, vec!["host", "SIZE 100"]);

        let r = p.push_line("550 5.1.1 unknown user").unwrap().unwrap();
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert_eq!(r.lines, vec!["unknown user"]);
        assert_eq!(r.to_string(), "550 5.1.1 unknown user");

        let r = p.push_line("354 go ahead").unwrap().unwrap();
        assert!(r.is_intermediate());
        assert_eq!(p.push_line("25x oops"), Err(ReplyParseError::Malformed));
        assert_eq!(p.push_line("250-a").unwrap(), None);
        assert_eq!(p.push_line("251 b"), Err(ReplyParseError::CodeMismatch));
        assert_eq!(p.push_line("250"), Ok(Some(Reply::plain(250, ""))));
    }

    #[test]
    fn enhanced_code_prefix() {
        assert_eq!(
            EnhancedCode::parse_prefix("4.2.2 over quota"),
            Some((EnhancedCode::new(4, 2, 2), "over quota"))
        );
        assert_eq!(EnhancedCode::parse_prefix("2.0"), None);
        assert_eq!(EnhancedCode::parse_prefix("3.0.0 x"), None);
        assert_eq!(EnhancedCode::parse_prefix("2.1000.0 x"), None);
        assert_eq!(EnhancedCode::new(2, 1, 5).to_string(), "2.1.5");
    }
}
