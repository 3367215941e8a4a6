//! `BODY[section]` addressing (RFC 3501 §6.4.5, RFC 9051 §6.4.5): which
//! bytes of the raw message a section specifier names.
//!
//! * Part numbers walk the tree: in a multipart, `n` is its n-th part; in a
//!   `message/rfc822` part, numbering continues inside the embedded message
//!   (its parts if it is multipart, else `1` is its body); in a
//!   non-multipart message, `1` is the body. A leaf part has no sub-parts.
//! * `HEADER`, `HEADER.FIELDS`, `HEADER.FIELDS.NOT` and `TEXT` apply to the
//!   message itself, or to the message inside a `message/rfc822` part; after
//!   a part number that is not `message/rfc822` they name nothing.
//! * `MIME` is the MIME header of a numbered part (for part `1` of a
//!   non-multipart message, the message header) and needs a part number.
//! * `HEADER.FIELDS[.NOT]` keeps whole fields (continuation lines included)
//!   in header order, matching names case-insensitively, and ends with the
//!   blank line (CRLF) that ends a header.
//!
//! A section that names nothing yields an empty string, as the RFC asks for
//! a non-existent part, rather than an error.

use std::borrow::Cow;

use crate::MessageInfo;
use crate::header;
use crate::part::{Part, PartKind};

/// A section specifier: part numbers (empty for the whole message) and an
/// optional text specifier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// 1-based part numbers, outermost first (`1.2.3` is `[1, 2, 3]`).
    pub part: Vec<u32>,
    /// `HEADER`, `TEXT`, ... or `None` for the part's body (or, with no
    /// part numbers, the whole message).
    pub text: Option<SectionText>,
}

/// The text part of a section specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `HEADER`
    Header,
    /// `HEADER.FIELDS (...)`, or `HEADER.FIELDS.NOT (...)` when `not`.
    HeaderFields {
        /// `HEADER.FIELDS.NOT`: every field except the listed ones.
        not: bool,
        /// Field names (compared case-insensitively).
        fields: Vec<String>,
    },
    /// `TEXT`
    Text,
    /// `MIME`
    Mime,
}

/// The part a list of part numbers names, if it exists.
pub fn find_part<'p>(root: &'p Part, numbers: &[u32]) -> Option<&'p Part> {
    let (&first, rest) = numbers.split_first()?;
    let mut cur = root.message_part(first)?;
    for &n in rest {
        cur = match &cur.kind {
            PartKind::Multipart(parts) => parts.get((n as usize).checked_sub(1)?)?,
            PartKind::Message { message, .. } => message.message_part(n)?,
            PartKind::Single => return None,
        };
    }
    Some(cur)
}

/// The bytes of `BODY[section]`, before any `<partial>` is applied. Empty
/// when the section names nothing. `info` must come from [`crate::analyze`]
/// of the same `raw`; if it does not, the result is wrong but this still
/// does not panic.
pub fn section_bytes<'a>(raw: &'a [u8], info: &MessageInfo, section: &Section) -> Cow<'a, [u8]> {
    let empty = Cow::Borrowed(&[][..]);
    if section.part.is_empty() {
        let root = &info.root;
        return match &section.text {
            None => Cow::Borrowed(raw),
            Some(SectionText::Header) => Cow::Borrowed(root.header.slice(raw)),
            Some(SectionText::Text) => Cow::Borrowed(root.body.slice(raw)),
            Some(SectionText::HeaderFields { not, fields }) => {
                Cow::Owned(header_fields(raw, root, *not, fields))
            }
            Some(SectionText::Mime) => empty,
        };
    }
    let Some(part) = find_part(&info.root, &section.part) else {
        return empty;
    };
    let message = match &part.kind {
        PartKind::Message { message, .. } => Some(&**message),
        _ => None,
    };
    match (&section.text, message) {
        (None, _) => Cow::Borrowed(part.body.slice(raw)),
        (Some(SectionText::Mime), _) => Cow::Borrowed(part.header.slice(raw)),
        (Some(SectionText::Header), Some(m)) => Cow::Borrowed(m.header.slice(raw)),
        (Some(SectionText::Text), Some(m)) => Cow::Borrowed(m.body.slice(raw)),
        (Some(SectionText::HeaderFields { not, fields }), Some(m)) => {
            Cow::Owned(header_fields(raw, m, *not, fields))
        }
        (Some(_), None) => empty,
    }
}

/// `HEADER.FIELDS` / `HEADER.FIELDS.NOT` of a message entity.
fn header_fields(raw: &[u8], message: &Part, not: bool, names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in header::fields_in(raw, message.header.range()) {
        let listed = names.iter().any(|n| field.is(raw, n));
        if listed != not {
            let lines = raw.get(field.lines.clone()).unwrap_or_default();
            out.extend_from_slice(lines);
            if !lines.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}
