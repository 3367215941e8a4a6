//! Mailbox addresses and envelope paths (RFC 5321 §4.1.2).
//!
//! The parser accepts `<local@domain>`, the null reverse-path `<>`, quoted
//! local parts (`<"john doe"@example.org>`), address literals
//! (`<user@[192.0.2.1]>`), and skips obsolete source routes
//! (`<@relay:user@example.org>`) as RFC 5321 §4.1.1.3 requires. It is liberal
//! about dot placement in unquoted local parts (real mail has `a..b@x`) and
//! accepts UTF-8 outside ASCII, but it never accepts control characters, so
//! parsed values are safe to echo into headers and replies.
//!
//! A [`Recipient`] additionally splits the local part into user and detail at
//! a configurable separator: `user+detail@domain` becomes
//! (`user`, `Some("detail")`, `domain`).

use std::fmt;

use crate::config::MAX_PATH_BYTES;

/// A mailbox: local part and domain. The local part is stored unquoted
/// (`"john doe"` is stored as `john doe`); [`fmt::Display`] re-quotes it when
/// needed. The domain is stored as received (no case folding); it may be an
/// address literal including its brackets. It is empty only for the special
/// recipient `<postmaster>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Local part, without quoting.
    pub local: String,
    /// Domain or address literal; empty only for bare `postmaster`.
    pub domain: String,
}

impl Address {
    /// Builds an address from its parts (no validation).
    pub fn new(local: impl Into<String>, domain: impl Into<String>) -> Self {
        Self {
            local: local.into(),
            domain: domain.into(),
        }
    }

    /// Parses a mailbox with or without angle brackets, e.g. `a@b` or
    /// `<"x y"@b>`. The null path is not a mailbox and is rejected.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let owned;
        let s = if s.starts_with('<') {
            s
        } else {
            owned = format!("<{s}>");
            &owned
        };
        match parse_path(s, false)? {
            (Some(addr), "") => Ok(addr),
            (Some(_), _) => Err(AddressError::TrailingGarbage),
            (None, _) => Err(AddressError::NullPath),
        }
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || !c.is_ascii() && !c.is_control()
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_atom(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        if !self.domain.is_empty() {
            write!(f, "@{}", self.domain)?;
        }
        Ok(())
    }
}

/// Why a path could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The path does not start with `<`.
    #[error("address must be enclosed in <>")]
    MissingBrackets,
    /// No closing `>` (or closing quote) was found.
    #[error("unterminated address")]
    Unterminated,
    /// The path exceeds [`MAX_PATH_BYTES`].
    #[error("address too long")]
    TooLong,
    /// Invalid local part.
    #[error("invalid local part")]
    BadLocalPart,
    /// Missing `@domain`.
    #[error("missing domain")]
    MissingDomain,
    /// Invalid domain or address literal.
    #[error("invalid domain")]
    BadDomain,
    /// Invalid source route.
    #[error("invalid source route")]
    BadRoute,
    /// `<>` where a mailbox is required.
    #[error("null path not allowed here")]
    NullPath,
    /// Characters after the closing `>`.
    #[error("unexpected characters after address")]
    TrailingGarbage,
}

/// Parses a path at the start of `s`. Returns `None` for the null path `<>`
/// and the unparsed rest (starting right after `>`).
///
/// With `allow_bare_postmaster`, `<postmaster>` (any case) is accepted
/// without a domain, as RFC 5321 §4.5.1 requires for recipients.
pub(crate) fn parse_path(
    s: &str,
    allow_bare_postmaster: bool,
) -> Result<(Option<Address>, &str), AddressError> {
    let inner_start = 1;
    if !s.starts_with('<') {
        return Err(AddressError::MissingBrackets);
    }
    // Find the closing bracket, honouring quoted strings.
    let bytes = s.as_bytes();
    let mut i = inner_start;
    let mut in_quotes = false;
    let close = loop {
        let Some(&b) = bytes.get(i) else {
            return Err(AddressError::Unterminated);
        };
        if i >= MAX_PATH_BYTES {
            return Err(AddressError::TooLong);
        }
        match b {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'>' if !in_quotes => break i,
            _ => {}
        }
        i += 1;
    };
    let inner = &s[inner_start..close];
    let rest = &s[close + 1..];
    if inner.is_empty() {
        return Ok((None, rest));
    }
    if inner.chars().any(char::is_control) {
        return Err(AddressError::BadLocalPart);
    }
    let mailbox = strip_source_route(inner)?;
    let (local, after) = parse_local_part(mailbox)?;
    let domain = match after.strip_prefix('@') {
        Some(domain) => parse_domain(domain)?,
        None if after.is_empty()
            && allow_bare_postmaster
            && local.eq_ignore_ascii_case("postmaster") =>
        {
            String::new()
        }
        None if after.is_empty() => return Err(AddressError::MissingDomain),
        None => return Err(AddressError::BadLocalPart),
    };
    Ok((Some(Address { local, domain }), rest))
}

/// Skips `@dom1,@dom2:` in front of a mailbox.
fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::BadRoute)?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::BadRoute)?;
        parse_domain(domain).map_err(|_| AddressError::BadRoute)?;
    }
    Ok(&inner[colon + 1..])
}

/// Parses a local part; returns it unquoted together with the rest.
fn parse_local_part(s: &str) -> Result<(String, &str), AddressError> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((local, &quoted[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, e)) if e == ' ' || e.is_ascii_graphic() => local.push(e),
                    _ => return Err(AddressError::BadLocalPart),
                },
                c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => local.push(c),
                _ => return Err(AddressError::BadLocalPart),
            }
        }
        return Err(AddressError::Unterminated);
    }
    let end = s.find('@').unwrap_or(s.len());
    let local = &s[..end];
    if local.is_empty() || !local.chars().all(|c| c == '.' || is_atext(c)) {
        return Err(AddressError::BadLocalPart);
    }
    Ok((local.to_owned(), &s[end..]))
}

/// Validates a domain name or an address literal.
fn parse_domain(s: &str) -> Result<String, AddressError> {
    if let Some(literal) = s.strip_prefix('[') {
        let body = literal.strip_suffix(']').ok_or(AddressError::BadDomain)?;
        if body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'[' && b != b']' && b != b'\\')
        {
            return Err(AddressError::BadDomain);
        }
        return Ok(s.to_owned());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || c == '_'
                    || !c.is_ascii() && !c.is_control()
            })
    };
    if s.split('.').all(label_ok) {
        Ok(s.to_owned())
    } else {
        Err(AddressError::BadDomain)
    }
}

/// A forward-path from `RCPT TO`, split into user, detail and domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The full address as given.
    pub address: Address,
    /// Local part before the detail separator (the whole local part when
    /// there is none).
    pub user: String,
    /// Text after the first detail separator, if any (may be empty for
    /// `user+@domain`).
    pub detail: Option<String>,
    /// Domain (empty for bare `postmaster`).
    pub domain: String,
}

impl Recipient {
    /// Splits `address` at the first `separator` in its local part. A
    /// separator at the very start of the local part is not treated as one
    /// (the user would be empty).
    pub fn from_address(address: Address, separator: Option<char>) -> Self {
        let (user, detail) =
            match separator.and_then(|sep| address.local.find(sep).map(|i| (sep, i))) {
                Some((sep, i)) if i > 0 => (
                    address.local[..i].to_owned(),
                    Some(address.local[i + sep.len_utf8()..].to_owned()),
                ),
                _ => (address.local.clone(), None),
            };
        let domain = address.domain.clone();
        Self {
            address,
            user,
            detail,
            domain,
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.address.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<(Option<Address>, &str), AddressError> {
        parse_path(s, false)
    }

    #[test]
    fn parses_plain_null_and_rest() {
        assert_eq!(
            path("<a@b.example>"),
            Ok((Some(Address::new("a", "b.example")), ""))
        );
        assert_eq!(path("<> SIZE=5"), Ok((None, " SIZE=5")));
        assert_eq!(path("<a.b-c+d@x> BODY=7BIT").unwrap().1, " BODY=7BIT");
    }

    #[test]
    fn parses_quoted_local_parts() {
        let (a, _) = path(r#"<"john doe"@x.org>"#).unwrap();
        let a = a.unwrap();
        assert_eq!(a.local, "john doe");
        assert_eq!(a.to_string(), r#""john doe"@x.org"#);
        let (a, _) = path(r#"<"a\"b>c"@x>"#).unwrap();
        let a = a.unwrap();
        assert_eq!(a.local, "a\"b>c");
        assert_eq!(a.to_string(), r#""a\"b>c"@x"#);
        let (a, _) = path(r#"<"plain"@x>"#).unwrap();
        assert_eq!(a.unwrap().to_string(), "plain@x");
        assert_eq!(
            path(r#"<"unterminated@x>"#),
            Err(AddressError::Unterminated)
        );
    }

    #[test]
    fn source_routes_literals_and_postmaster() {
        assert_eq!(
            path("<@r1.example,@r2.example:u@d.example>").unwrap().0,
            Some(Address::new("u", "d.example"))
        );
        assert_eq!(path("<@r1:>"), Err(AddressError::BadLocalPart));
        assert_eq!(path("<@:u@d>"), Err(AddressError::BadRoute));
        assert_eq!(
            path("<u@[192.0.2.1]>").unwrap().0,
            Some(Address::new("u", "[192.0.2.1]"))
        );
        assert_eq!(
            path("<u@[IPv6:::1]>").unwrap().0.unwrap().domain,
            "[IPv6:::1]"
        );
        assert_eq!(path("<postmaster>"), Err(AddressError::MissingDomain));
        assert_eq!(
            parse_path("<PostMaster>", true).unwrap().0,
            Some(Address::new("PostMaster", ""))
        );
        assert_eq!(parse_path("<bob>", true), Err(AddressError::MissingDomain));
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(path("a@b"), Err(AddressError::MissingBrackets));
        assert_eq!(path("<a@b"), Err(AddressError::Unterminated));
        assert_eq!(path("<a b@c>"), Err(AddressError::BadLocalPart));
        assert_eq!(path("<a@b..c>"), Err(AddressError::BadDomain));
        assert_eq!(path("<a@-b>"), Err(AddressError::BadDomain));
        assert_eq!(path("<a@>"), Err(AddressError::BadDomain));
        assert_eq!(path("<@b>"), Err(AddressError::BadRoute));
        assert_eq!(path("<a@b\u{1}>"), Err(AddressError::BadLocalPart));
        let long = format!("<{}@b>", "a".repeat(300));
        assert_eq!(path(&long), Err(AddressError::TooLong));
        let max = format!("<{}@b>", "a".repeat(MAX_PATH_BYTES - 4));
        assert_eq!(max.len(), MAX_PATH_BYTES);
        assert!(path(&max).is_ok());
    }

    #[test]
    fn address_parse_helper() {
        assert_eq!(Address::parse("a@b"), Ok(Address::new("a", "b")));
        assert_eq!(Address::parse("<a@b>"), Ok(Address::new("a", "b")));
        assert_eq!(Address::parse("<>"), Err(AddressError::NullPath));
        assert_eq!(
            Address::parse("<a@b> x"),
            Err(AddressError::TrailingGarbage)
        );
    }

    #[test]
    fn splits_detail() {
        let r = Recipient::from_address(Address::new("user+folder+x", "d"), Some('+'));
        assert_eq!(
            (r.user.as_str(), r.detail.as_deref(), r.domain.as_str()),
            ("user", Some("folder+x"), "d")
        );
        let r = Recipient::from_address(Address::new("user+", "d"), Some('+'));
        assert_eq!(r.detail.as_deref(), Some(""));
        let r = Recipient::from_address(Address::new("+user", "d"), Some('+'));
        assert_eq!((r.user.as_str(), r.detail), ("+user", None));
        let r = Recipient::from_address(Address::new("a-b", "d"), Some('-'));
        assert_eq!((r.user.as_str(), r.detail.as_deref()), ("a", Some("b")));
        let r = Recipient::from_address(Address::new("u+d", "x"), None);
        assert_eq!((r.user.as_str(), r.detail.as_deref()), ("u+d", None));
        assert_eq!(r.to_string(), "u+d@x");
    }
}
