//! The MIME `Content-*` header fields of one entity (RFC 2045, RFC 2183,
//! RFC 3282, RFC 2557, RFC 1864), parsed leniently into the values
//! BODYSTRUCTURE reports.
//!
//! Values keep the spelling and case the sender used (type, subtype,
//! parameter names and values, encoding); BODYSTRUCTURE consumers compare
//! them case-insensitively. Quoted strings are unquoted, comments dropped,
//! and RFC 2231 parameter continuations (`name*0`, `name*1*`, ...) merged
//! into one parameter (`name`, or `name*` when the value is still
//! charset-encoded) without decoding it, as IMAP leaves decoding to
//! clients. Invalid `Content-Type` values fall back to the RFC 2045 §5.2
//! default, `text/plain; charset=us-ascii`.

use crate::header::{self, Field};
use crate::imap_string::header_text;

/// A parsed `Content-Type` (or the default that applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    /// Type as sent (`TEXT` when defaulted).
    pub type_: String,
    /// Subtype as sent (`PLAIN` when defaulted).
    pub subtype: String,
    /// Parameters in order, names and values as sent (unquoted).
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// RFC 2045 §5.2 default (RFC 2046 §5.1.5: `message/rfc822` inside
    /// `multipart/digest`).
    pub fn default_for(in_digest: bool) -> Self {
        if in_digest {
            ContentType {
                type_: "MESSAGE".into(),
                subtype: "RFC822".into(),
                params: Vec::new(),
            }
        } else {
            ContentType {
                type_: "TEXT".into(),
                subtype: "PLAIN".into(),
                params: vec![("CHARSET".into(), "US-ASCII".into())],
            }
        }
    }

    pub fn is(&self, type_: &str) -> bool {
        self.type_.eq_ignore_ascii_case(type_)
    }

    pub fn is_type(&self, type_: &str, subtype: &str) -> bool {
        self.is(type_) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// First parameter called `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }
}

/// First parameter called `name` (case-insensitive).
pub(crate) fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// All `Content-*` information of one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MimeFields {
    pub content_type: ContentType,
    /// Transfer encoding as sent; `None` when absent or invalid (7BIT).
    pub encoding: Option<String>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub md5: Option<String>,
    /// Disposition type and parameters.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// Language tags; empty when absent.
    pub language: Vec<String>,
    pub location: Option<String>,
}

impl MimeFields {
    /// Reads the `Content-*` fields (first occurrence of each wins).
    pub fn parse(raw: &[u8], fields: &[Field], in_digest: bool) -> Self {
        let value = |name: &str| header::first(raw, fields, name).map(|f| f.raw_value(raw));
        let text = |name: &str| value(name).map(|v| header_text(&header::unfold(v)));
        // RFC 2046 §5.1.1: the boundary parameter is required; a multipart
        // type without one is an invalid Content-Type (RFC 2045 §5.2).
        let content_type = value("Content-Type")
            .and_then(parse_content_type)
            .filter(|ct| !ct.is("multipart") || ct.param("boundary").is_some_and(|b| !b.is_empty()))
            .unwrap_or_else(|| ContentType::default_for(in_digest));
        let encoding = value("Content-Transfer-Encoding").and_then(|v| {
            let mut c = Cursor::new(v);
            c.skip_cfws();
            c.token().map(header_text)
        });
        let disposition = value("Content-Disposition").and_then(|v| {
            let mut c = Cursor::new(v);
            c.skip_cfws();
            let kind = header_text(c.token()?);
            Some((kind, c.params()))
        });
        let language = value("Content-Language")
            .map(parse_language)
            .unwrap_or_default();
        MimeFields {
            content_type,
            encoding,
            id: text("Content-ID"),
            description: text("Content-Description"),
            md5: text("Content-MD5"),
            disposition,
            language,
            location: text("Content-Location"),
        }
    }

    /// The transfer encoding in lower case (`7bit` by default).
    pub fn encoding_lower(&self) -> String {
        self.encoding
            .as_deref()
            .map_or_else(|| "7bit".to_owned(), str::to_ascii_lowercase)
    }
}

fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let type_ = c.token()?;
    c.skip_cfws();
    if !c.eat(b'/') {
        return None;
    }
    c.skip_cfws();
    let subtype = c.token()?;
    Some(ContentType {
        type_: header_text(type_),
        subtype: header_text(subtype),
        params: c.params(),
    })
}

fn parse_language(value: &[u8]) -> Vec<String> {
    let mut c = Cursor::new(value);
    let mut out = Vec::new();
    loop {
        c.skip_cfws();
        if c.at_end() {
            break;
        }
        match c.token() {
            Some(tag) => out.push(header_text(tag)),
            None => c.i += 1,
        }
    }
    out
}

/// `true` for RFC 2045 token characters (8-bit bytes accepted leniently).
fn is_token(b: u8) -> bool {
    b > b' '
        && b != 0x7f
        && !matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
        )
}

/// A byte cursor for structured MIME header values.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8]) -> Self {
        Cursor { s, i: 0 }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Skips whitespace, line ends and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' => self.i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_token) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// A quoted string starting at the current `"`; returns its content
    /// with escapes resolved and folding line ends removed.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        out
    }

    /// Skips to just after the next `;` outside quoted strings/comments.
    fn skip_to_semicolon(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    self.quoted();
                }
                b'(' => self.skip_comment(),
                b';' => {
                    self.i += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
    }

    /// `*(";" attribute "=" value)`, lenient; RFC 2231 continuations merged.
    fn params(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            self.skip_cfws();
            if self.at_end() {
                break;
            }
            if self.eat(b';') {
                continue;
            }
            let Some(name) = self.token() else {
                self.skip_to_semicolon();
                continue;
            };
            self.skip_cfws();
            if !self.eat(b'=') {
                self.skip_to_semicolon();
                continue;
            }
            self.skip_cfws();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.token().unwrap_or_default().to_vec()
            };
            out.push((header_text(name), header_text(&value)));
            self.skip_cfws();
            if !self.at_end() && self.peek() != Some(b';') {
                self.skip_to_semicolon();
            }
        }
        merge_continuations(out)
    }
}

/// Splits an RFC 2231 section name `base*N` / `base*N*` into
/// `(base, N, encoded)`.
fn continuation(name: &str) -> Option<(&str, u32, bool)> {
    let (rest, encoded) = match name.strip_suffix('*') {
        Some(r) => (r, true),
        None => (name, false),
    };
    let star = rest.rfind('*')?;
    let digits = &rest[star + 1..];
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse().ok()?;
    Some((&rest[..star], n, encoded))
}

/// Merges RFC 2231 continuation sections into one parameter placed where
/// its first section was. The merged name is `base*` when section 0 was
/// encoded (the value keeps its `charset'lang'` prefix and %-escapes).
fn merge_continuations(params: Vec<(String, String)>) -> Vec<(String, String)> {
    if !params.iter().any(|(n, _)| continuation(n).is_some()) {
        return params;
    }
    /// The sections of one continued parameter.
    struct Group {
        /// Base name, lower case.
        key: String,
        /// Where the merged parameter goes in the output.
        slot: usize,
        /// (section number, encoded, value)
        sections: Vec<(u32, bool, String)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in params {
        match continuation(&name) {
            Some((base, n, encoded)) => {
                let key = base.to_ascii_lowercase();
                match groups.iter_mut().find(|g| g.key == key) {
                    Some(g) => g.sections.push((n, encoded, value)),
                    None => {
                        groups.push(Group {
                            key,
                            slot: out.len(),
                            sections: vec![(n, encoded, value)],
                        });
                        out.push((base.to_owned(), String::new()));
                    }
                }
            }
            None => out.push((name, value)),
        }
    }
    for mut g in groups {
        g.sections.sort_by_key(|s| s.0);
        let encoded = g.sections.first().is_some_and(|s| s.0 == 0 && s.1);
        if let Some((name, value)) = out.get_mut(g.slot) {
            if encoded {
                name.push('*');
            }
            *value = g.sections.iter().map(|s| s.2.as_str()).collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> Option<ContentType> {
        parse_content_type(v.as_bytes())
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn content_type_with_params() {
        let c = ct(" Text/HTML ; charset=\"UTF-8\"; format=flowed").unwrap();
        assert_eq!(c.type_, "Text");
        assert_eq!(c.subtype, "HTML");
        assert_eq!(c.params, p(&[("charset", "UTF-8"), ("format", "flowed")]));
        assert_eq!(c.param("CHARSET"), Some("UTF-8"));
    }

    #[test]
    fn comments_and_folding() {
        let c = ct("text/plain; charset=us-ascii (Plain text)").unwrap();
        assert_eq!(c.params, p(&[("charset", "us-ascii")]));
        let c = ct("multipart/mixed;\r\n boundary=\"foo\r\n bar\"").unwrap();
        assert_eq!(c.params, p(&[("boundary", "foo bar")]));
        let c = ct("(c) text (d) / (e) plain").unwrap();
        assert_eq!((c.type_.as_str(), c.subtype.as_str()), ("text", "plain"));
    }

    #[test]
    fn escapes_in_quoted_values() {
        let c = ct(r#"text/x-myown; charset=us-ascii; foo="quoted\"string""#).unwrap();
        assert_eq!(
            c.params,
            p(&[("charset", "us-ascii"), ("foo", "quoted\"string")])
        );
    }

    #[test]
    fn invalid_content_types() {
        assert_eq!(ct("text"), None);
        assert_eq!(ct("/plain"), None);
        assert_eq!(ct(""), None);
        assert_eq!(ct("text/"), None);
    }

    #[test]
    fn garbage_parameters_are_skipped() {
        let c = ct("a/b; ; junk; x=1 2; =3; y=\"unterminated").unwrap();
        assert_eq!(c.params, p(&[("x", "1"), ("y", "unterminated")]));
    }

    #[test]
    fn rfc2231_continuations_merge() {
        let c = ct("application/x; a=1; name*1=\"world.txt\"; name*0=\"hello \"; z=2").unwrap();
        assert_eq!(
            c.params,
            p(&[("a", "1"), ("name", "hello world.txt"), ("z", "2")])
        );
        let c = ct("application/x; filename*0*=utf-8''%E2%82; filename*1*=%AC.txt").unwrap();
        assert_eq!(c.params, p(&[("filename*", "utf-8''%E2%82%AC.txt")]));
        let c = ct("application/x; title*=us-ascii'en'x").unwrap();
        assert_eq!(c.params, p(&[("title*", "us-ascii'en'x")]));
    }

    #[test]
    fn mime_fields() {
        let raw = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: ?invalid\r\n\
Content-Disposition: attachment; filename=a.txt\r\nContent-Language: en, (c) fi\r\n\
Content-ID: <x@y>\r\nContent-Description: d\r\n e\r\n\r\n";
        let fields = header::fields_in(raw, 0..raw.len());
        let m = MimeFields::parse(raw, &fields, false);
        assert_eq!(m.encoding, None);
        assert_eq!(m.encoding_lower(), "7bit");
        assert_eq!(
            m.disposition,
            Some(("attachment".into(), p(&[("filename", "a.txt")])))
        );
        assert_eq!(m.language, ["en", "fi"]);
        assert_eq!(m.id.as_deref(), Some("<x@y>"));
        assert_eq!(m.description.as_deref(), Some("d e"));
        assert_eq!(m.md5, None);
    }

    #[test]
    fn multipart_without_boundary_is_invalid() {
        let raw = b"Content-Type: multipart/mixed\r\n\r\n";
        let fields = header::fields_in(raw, 0..raw.len());
        let m = MimeFields::parse(raw, &fields, false);
        assert!(m.content_type.is_type("text", "plain"));
        let raw = b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n";
        let fields = header::fields_in(raw, 0..raw.len());
        assert!(
            MimeFields::parse(raw, &fields, false)
                .content_type
                .is("text")
        );
    }

    #[test]
    fn digest_default() {
        let m = MimeFields::parse(b"", &[], true);
        assert!(m.content_type.is_type("message", "rfc822"));
        let m = MimeFields::parse(b"", &[], false);
        assert!(m.content_type.is_type("text", "plain"));
        assert_eq!(m.content_type.param("charset"), Some("US-ASCII"));
    }
}
