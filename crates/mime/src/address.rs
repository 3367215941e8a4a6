//! RFC 5322 address lists (`From`, `To`, ...) parsed into the IMAP address
//! structure `(name adl mailbox host)` of RFC 3501 §7.4.2, with group
//! markers.
//!
//! Values stay raw as in the header: display names keep RFC 2047 encoded
//! words (IMAP clients decode them), quoted display names are unquoted, a
//! quoted local part keeps its quotes (so `mailbox@host` is still a valid
//! address), comments are dropped except that a comment stands in for a
//! missing display name (`user@host (Real Name)`). The parser is lenient:
//! a mailbox without a domain gets the host `MISSING_DOMAIN` (a NIL host
//! would read as a group marker), unterminated quotes, comments and groups
//! end at the end of the field, and stray specials are skipped.

/// Host reported for an address that has no `@domain`.
pub(crate) const MISSING_DOMAIN: &str = "MISSING_DOMAIN";
/// Mailbox reported for an address that has a domain but no local part.
pub(crate) const MISSING_MAILBOX: &str = "MISSING_MAILBOX";

/// One member of an IMAP address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Addr {
    Mailbox {
        name: Option<Vec<u8>>,
        adl: Option<Vec<u8>>,
        mailbox: Vec<u8>,
        host: Vec<u8>,
    },
    /// `(NIL NIL "name" NIL)`
    GroupStart(Vec<u8>),
    /// `(NIL NIL NIL NIL)`
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (any run of non-special, non-space bytes, 8-bit included).
    Atom(Vec<u8>),
    /// A quoted string: unescaped content and the raw text with quotes.
    Quoted { text: Vec<u8>, raw: Vec<u8> },
    /// A comment's content (nested comments flattened).
    Comment(Vec<u8>),
    /// A domain literal, raw with brackets.
    Literal(Vec<u8>),
    /// One of `< > @ , ; : .`
    Special(u8),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Whitespace or a comment came before this token.
    spaced: bool,
}

fn tokenize(s: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = false;
    while i < s.len() {
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | 0 => {
                spaced = true;
                i += 1;
                continue;
            }
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while i < s.len() {
                    let c = s[i];
                    i += 1;
                    match c {
                        b'(' => {
                            if depth > 0 {
                                text.push(c);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            text.push(c);
                        }
                        b'\\' => {
                            if let Some(&n) = s.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'\r' | b'\n' => {}
                        _ => text.push(c),
                    }
                }
                out.push(Token {
                    tok: Tok::Comment(text),
                    spaced: true,
                });
                spaced = true;
                continue;
            }
            b'"' => {
                let start = i;
                let mut text = Vec::new();
                i += 1;
                while i < s.len() {
                    let c = s[i];
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&n) = s.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'\r' | b'\n' => {}
                        _ => text.push(c),
                    }
                }
                let raw = s[start..i]
                    .iter()
                    .copied()
                    .filter(|&c| c != b'\r' && c != b'\n')
                    .collect();
                out.push(Token {
                    tok: Tok::Quoted { text, raw },
                    spaced,
                });
            }
            b'[' => {
                let start = i;
                while i < s.len() && s[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(s.len());
                let raw = s[start..i]
                    .iter()
                    .copied()
                    .filter(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
                    .collect();
                out.push(Token {
                    tok: Tok::Literal(raw),
                    spaced,
                });
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                out.push(Token {
                    tok: Tok::Special(b),
                    spaced,
                });
                i += 1;
            }
            b')' | b']' | b'\\' => {
                // Stray closing bracket or backslash: ignore.
                i += 1;
                continue;
            }
            _ => {
                let start = i;
                while i < s.len()
                    && !matches!(
                        s[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | 0
                            | b'('
                            | b')'
                            | b'"'
                            | b'['
                            | b']'
                            | b'\\'
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'.'
                    )
                {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Atom(s[start..i].to_vec()),
                    spaced,
                });
            }
        }
        spaced = false;
    }
    out
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

/// Words collected for a phrase or local part, plus comments seen.
#[derive(Default)]
struct Words {
    /// (token, spaced-before) of atoms, quoted strings and dots.
    words: Vec<(Tok, bool)>,
    comment: Option<Vec<u8>>,
}

impl Words {
    fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Display-name text: quoted strings unquoted, words separated by one
    /// space where the header had whitespace or a comment between them.
    fn phrase(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (k, (tok, spaced)) in self.words.iter().enumerate() {
            if k > 0 && *spaced {
                out.push(b' ');
            }
            match tok {
                Tok::Atom(a) | Tok::Literal(a) => out.extend_from_slice(a),
                Tok::Quoted { text, .. } => out.extend_from_slice(text),
                Tok::Special(c) => out.push(*c),
                Tok::Comment(_) => {}
            }
        }
        let trimmed = trim(&out);
        (!trimmed.is_empty()).then(|| trimmed.to_vec())
    }

    /// Local-part / domain text: tokens joined without whitespace, quoted
    /// strings kept quoted.
    fn joined(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (tok, _) in &self.words {
            match tok {
                Tok::Atom(a) | Tok::Literal(a) => out.extend_from_slice(a),
                Tok::Quoted { raw, .. } => out.extend_from_slice(raw),
                Tok::Special(c) => out.push(*c),
                Tok::Comment(_) => {}
            }
        }
        out
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &s[start..end]
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn peek_special(&self) -> Option<u8> {
        match self.peek() {
            Some(Tok::Special(c)) => Some(*c),
            _ => None,
        }
    }

    /// Collects words (and remembers the first comment) until one of
    /// `stops` or the end.
    fn words_until(&mut self, stops: &[u8], into: &mut Words) {
        while let Some(t) = self.toks.get(self.i) {
            match &t.tok {
                Tok::Special(c) if stops.contains(c) => break,
                Tok::Comment(c) => {
                    if into.comment.is_none() {
                        into.comment = Some(c.clone());
                    }
                }
                tok => into.words.push((tok.clone(), t.spaced)),
            }
            self.i += 1;
        }
    }

    fn list(&mut self, out: &mut Vec<Addr>) {
        while self.i < self.toks.len() {
            match self.peek_special() {
                Some(b',' | b';' | b'>') => self.i += 1,
                _ => self.address(false, out),
            }
        }
    }

    /// One mailbox or group (or, inside a group, one mailbox).
    fn address(&mut self, in_group: bool, out: &mut Vec<Addr>) {
        let start = self.i;
        let mut lead = Words::default();
        let stops: &[u8] = if in_group { b"<@,;>" } else { b"<:@,;>" };
        self.words_until(stops, &mut lead);
        match self.peek_special() {
            Some(b'<') => {
                self.i += 1;
                self.angle_addr(lead, out);
            }
            Some(b':') => {
                self.i += 1;
                out.push(Addr::GroupStart(lead.phrase().unwrap_or_default()));
                loop {
                    match self.peek_special() {
                        None if self.i >= self.toks.len() => break,
                        Some(b';') => {
                            self.i += 1;
                            break;
                        }
                        Some(b',' | b'>' | b':') => self.i += 1,
                        _ => self.address(true, out),
                    }
                }
                out.push(Addr::GroupEnd);
            }
            Some(b'@') => {
                let at_spaced = self.toks[self.i].spaced;
                self.i += 1;
                let mut domain = Words::default();
                self.words_until(b"<,;>", &mut domain);
                if self.peek_special() == Some(b'<') {
                    // `user@host Name <addr>`: an unquoted display name
                    // with an `@` in it.
                    self.i += 1;
                    let mut name = lead;
                    name.words.push((Tok::Special(b'@'), at_spaced));
                    name.words.extend(domain.words);
                    name.comment = name.comment.or(domain.comment);
                    self.angle_addr(name, out);
                    return;
                }
                let name = lead.comment.clone().or(domain.comment.clone());
                push_mailbox(out, name.and_then(|n| trimmed(&n)), None, &lead, &domain);
            }
            _ => {
                // `,` `;` `>` or the end: a bare word list without a domain.
                if !lead.is_empty() {
                    let name = lead.comment.clone().and_then(|n| trimmed(&n));
                    push_mailbox(out, name, None, &lead, &Words::default());
                }
            }
        }
        if self.i == start {
            // Nothing consumed (cannot normally happen): make progress.
            self.i += 1;
        }
    }

    /// After `<`: `[route ":"] local "@" domain ">"`.
    fn angle_addr(&mut self, lead: Words, out: &mut Vec<Addr>) {
        let mut route = None;
        if self.peek_special() == Some(b'@') {
            let mut r = Words::default();
            self.words_until(b":>", &mut r);
            if self.peek_special() == Some(b':') {
                self.i += 1;
                route = Some(r.joined());
            } else {
                // `<@domain>` without a local part: treat as the domain.
                let domain = Words {
                    words: r.words.into_iter().skip(1).collect(),
                    comment: None,
                };
                if self.peek_special() == Some(b'>') {
                    self.i += 1;
                }
                push_mailbox(out, lead.phrase(), None, &Words::default(), &domain);
                return;
            }
        }
        let mut local = Words::default();
        self.words_until(b"@>,;", &mut local);
        let mut domain = Words::default();
        if self.peek_special() == Some(b'@') {
            self.i += 1;
            self.words_until(b">,;", &mut domain);
        }
        if self.peek_special() == Some(b'>') {
            self.i += 1;
        }
        // Trailing comments after `>` may supply a name.
        let mut tail = Words::default();
        self.words_until(b",;", &mut tail);
        let name = lead.phrase().or_else(|| {
            lead.comment
                .clone()
                .or(local.comment.clone())
                .or(domain.comment.clone())
                .or(tail.comment.clone())
                .and_then(|n| trimmed(&n))
        });
        let route = route.filter(|r| !r.is_empty());
        if name.is_none() && route.is_none() && local.is_empty() && domain.is_empty() {
            return;
        }
        push_mailbox(out, name, route, &local, &domain);
    }
}

fn trimmed(s: &[u8]) -> Option<Vec<u8>> {
    let t = trim(s);
    (!t.is_empty()).then(|| t.to_vec())
}

fn push_mailbox(
    out: &mut Vec<Addr>,
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    local: &Words,
    domain: &Words,
) {
    let mut mailbox = local.joined();
    let mut host = domain.joined();
    if mailbox.is_empty() {
        mailbox = MISSING_MAILBOX.as_bytes().to_vec();
    }
    if host.is_empty() {
        host = MISSING_DOMAIN.as_bytes().to_vec();
    }
    out.push(Addr::Mailbox {
        name,
        adl,
        mailbox,
        host,
    });
}

/// Parses an address-list header value (raw, possibly folded).
pub(crate) fn parse_list(value: &[u8]) -> Vec<Addr> {
    let mut p = Parser {
        toks: tokenize(value),
        i: 0,
    };
    let mut out = Vec::new();
    p.list(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, adl: Option<&str>, mailbox: &str, host: &str) -> Addr {
        Addr::Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            adl: adl.map(|n| n.as_bytes().to_vec()),
            mailbox: mailbox.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
        }
    }

    fn parse(s: &str) -> Vec<Addr> {
        parse_list(s.as_bytes())
    }

    #[test]
    fn common_forms() {
        assert_eq!(
            parse("John Q. Public <john.q.public@example.com>"),
            [mb(
                Some("John Q. Public"),
                None,
                "john.q.public",
                "example.com"
            )]
        );
        assert_eq!(
            parse("\"Doe, Jane\" <jane@x.org>, bob@y.org"),
            [
                mb(Some("Doe, Jane"), None, "jane", "x.org"),
                mb(None, None, "bob", "y.org")
            ]
        );
        assert_eq!(
            parse("user@domain (Real Name)"),
            [mb(Some("Real Name"), None, "user", "domain")]
        );
        assert_eq!(
            parse("<@route:user@domain>"),
            [mb(None, Some("@route"), "user", "domain")]
        );
        assert_eq!(
            parse("=?utf-8?q?J=C3=B6rg?= <j@x>"),
            [mb(Some("=?utf-8?q?J=C3=B6rg?="), None, "j", "x")]
        );
        assert_eq!(
            parse("\"john doe\"@example.com"),
            [mb(None, None, "\"john doe\"", "example.com")]
        );
        assert_eq!(
            parse("foo@bar via List <list@x>, b@c"),
            [
                mb(Some("foo@bar via List"), None, "list", "x"),
                mb(None, None, "b", "c")
            ]
        );
        assert_eq!(
            parse("a@[192.168.0.1]"),
            [mb(None, None, "a", "[192.168.0.1]")]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse("group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;"),
            [
                Addr::GroupStart(b"group".to_vec()),
                mb(None, None, "g1", "d1.org"),
                mb(None, None, "g2", "d2.org"),
                Addr::GroupEnd,
                Addr::GroupStart(b"group2".to_vec()),
                mb(None, None, "g3", "d3.org"),
                Addr::GroupEnd,
            ]
        );
        assert_eq!(
            parse("undisclosed-recipients:;"),
            [
                Addr::GroupStart(b"undisclosed-recipients".to_vec()),
                Addr::GroupEnd
            ]
        );
        assert_eq!(
            parse("team: a@b"),
            [
                Addr::GroupStart(b"team".to_vec()),
                mb(None, None, "a", "b"),
                Addr::GroupEnd
            ]
        );
    }

    #[test]
    fn broken_input() {
        assert_eq!(parse(""), []);
        assert_eq!(parse(" , ;; "), []);
        assert_eq!(parse("<>"), []);
        assert_eq!(
            parse("undisclosed-recipients"),
            [mb(None, None, "undisclosed-recipients", MISSING_DOMAIN)]
        );
        assert_eq!(
            parse("Name <user@host"),
            [mb(Some("Name"), None, "user", "host")]
        );
        assert_eq!(
            parse("\"unterminated <a@b>"),
            [mb(None, None, "\"unterminated <a@b>", MISSING_DOMAIN)]
        );
        assert_eq!(parse("<@host>"), [mb(None, None, MISSING_MAILBOX, "host")]);
        assert_eq!(parse("(only a comment)"), []);
        assert_eq!(
            parse("a@b (x (nested) y) , c@d"),
            [
                mb(Some("x (nested) y"), None, "a", "b"),
                mb(None, None, "c", "d")
            ]
        );
    }
}
