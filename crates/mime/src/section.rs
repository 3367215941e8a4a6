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
use crate::content::MimeFields;
use crate::decode::transfer_decode;
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

/// Why `BINARY[part]` cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part's `Content-Transfer-Encoding` is not one this decoder
    /// knows (RFC 3516 §4.2: the server answers `NO [UNKNOWN-CTE]`).
    #[error("unknown content transfer encoding {0:?}")]
    UnknownEncoding(String),
}

/// The bytes of `BINARY[part]` (RFC 3516 §4.2, RFC 9051 §6.4.5): the part's
/// body with its content transfer encoding undone. No part numbers means
/// the whole message, as is. A multipart or `message/rfc822` part is
/// returned as is (its encoding must be an identity one, RFC 2045 §6.4). A
/// part that does not exist yields an empty string, as for `BODY[]`.
pub fn binary_bytes<'a>(
    raw: &'a [u8],
    info: &MessageInfo,
    part: &[u32],
) -> Result<Cow<'a, [u8]>, BinaryError> {
    if part.is_empty() {
        return Ok(Cow::Borrowed(raw));
    }
    let Some(p) = find_part(&info.root, part) else {
        return Ok(Cow::Borrowed(&[][..]));
    };
    let body = p.body.slice(raw);
    if !matches!(p.kind, PartKind::Single) {
        return Ok(Cow::Borrowed(body));
    }
    let fields = header::fields_in(raw, p.header.range());
    let encoding = MimeFields::parse(raw, &fields, false).encoding_lower();
    match encoding.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Cow::Borrowed(body)),
        "base64" | "quoted-printable" => Ok(transfer_decode(body, &encoding)),
        _ => Err(BinaryError::UnknownEncoding(encoding)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze;

    const MIXED: &[u8] = b"From: a@example.org\r\n\
Subject: parts\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
caf=C3=A9 =3D ok\r\n\
--b\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQ=\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\
\r\n\
begin 644 x\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--b--\r\n";

    fn binary(raw: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
        binary_bytes(raw, &analyze(raw), part).map(Cow::into_owned)
    }

    #[test]
    fn binary_undoes_transfer_encodings() {
        assert_eq!(binary(MIXED, &[1]).unwrap(), "café = ok".as_bytes());
        assert_eq!(binary(MIXED, &[2]).unwrap(), [0u8, 1, 2, 3, 4]);
        assert_eq!(binary(MIXED, &[4]).unwrap(), b"plain");
    }

    #[test]
    fn binary_refuses_unknown_encodings() {
        assert_eq!(
            binary(MIXED, &[3]),
            Err(BinaryError::UnknownEncoding("x-uuencode".into()))
        );
    }

    #[test]
    fn binary_of_whole_message_and_missing_parts() {
        assert_eq!(binary(MIXED, &[]).unwrap(), MIXED);
        assert!(binary(MIXED, &[9]).unwrap().is_empty());
        assert!(binary(MIXED, &[1, 1]).unwrap().is_empty());
    }

    #[test]
    fn binary_of_single_part_message_uses_message_header() {
        let raw = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n";
        assert_eq!(binary(raw, &[1]).unwrap(), b"hello");
    }
}
