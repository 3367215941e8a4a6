//! Message parsing done once at append time, cached, and served from the
//! cache on every FETCH and SEARCH.
//!
//! An IMAP server answers `FETCH ENVELOPE`, `BODY`, `BODYSTRUCTURE` and
//! `BODY[section]` for the same message many times. This crate computes
//! everything those answers need in one pass over the raw bytes
//! ([`analyze`]), in a form the store can serialize next to the message
//! ([`MessageInfo::to_bytes`] / [`MessageInfo::from_bytes`]), so that FETCH
//! never parses MIME again:
//!
//! * the ENVELOPE, BODY and BODYSTRUCTURE response values as ready-made IMAP
//!   strings (RFC 3501 §7.4.2, RFC 9051 §7.5.2);
//! * a [`Part`] tree with exact byte offsets into the raw message, which
//!   [`section_bytes`] uses to cut out `BODY[section]` (RFC 3501 §6.4.5);
//! * the `Date:` header as a timestamp for `SENTBEFORE`/`SENTON`/`SENTSINCE`.
//!
//! SEARCH helpers work on the raw message: [`header_values`] (decoded header
//! values), [`body_text`] (decoded text of all `text/*` parts) and
//! [`contains_ci`] (case-insensitive substring match).
//!
//! Messages come from the internet, so nothing here fails or panics on any
//! input: malformed MIME, missing headers, bare LF line ends, 8-bit garbage
//! and hostile nesting all produce a best-effort, syntactically valid result.
//! Work is bounded by [`MIME_DEPTH_MAX`] and [`PARTS_MAX`].
//!
//! Offsets are byte offsets into the exact bytes given to [`analyze`]; sizes
//! and line counts in BODYSTRUCTURE are of those bytes too. A store that wants
//! to serve CRLF-only messages (as IMAP expects) canonicalizes first with
//! [`canonicalize_line_endings`] and stores and analyzes the result.

#![warn(missing_docs)]

mod address;
mod bodystructure;
mod content;
mod date;
mod decode;
mod envelope;
mod header;
mod imap_string;
mod part;
mod search;
mod section;
mod structure;
mod wire;

use std::borrow::Cow;

pub use part::{ByteRange, Part, PartKind};
pub use search::{body_text, contains_ci, header_values};
pub use section::{BinaryError, Section, SectionText, binary_bytes, find_part, section_bytes};

/// Deepest MIME entity nesting that is parsed, counted in entity levels
/// (the message itself is level 0; each multipart child and each message
/// embedded in a `message/rfc822` part is one level deeper). A multipart or
/// `message/rfc822` part at this level is kept as an opaque leaf part.
pub const MIME_DEPTH_MAX: usize = 64;

/// Most MIME entities (the message, its parts, embedded messages and their
/// parts, all counted) recorded for one message. Parts past this count are
/// not recorded: their bytes stay inside the enclosing part.
pub const PARTS_MAX: usize = 10_000;

/// Largest message, in bytes, whose offsets are recorded. Offsets are `u32`;
/// bytes past this length are ignored by the analysis (but still returned by
/// `BODY[]`).
pub const MESSAGE_BYTES_MAX: usize = u32::MAX as usize;

/// Version byte that starts the output of [`MessageInfo::to_bytes`].
pub const FORMAT_VERSION: u8 = 1;

/// Errors from decoding a cached [`MessageInfo`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input was empty: not even the version byte is there.
    #[error("message info is empty")]
    Empty,
    /// The version byte names a format this build does not know.
    #[error("unknown message info format version {0}")]
    UnknownVersion(u8),
    /// The bytes after the version byte are not a valid encoding.
    #[error("corrupt message info: {0}")]
    Decode(#[from] postcard::Error),
    /// The encoding was read but describes an impossible part tree.
    #[error("corrupt message info: {0}")]
    InvalidTree(&'static str),
}

/// Everything FETCH and SEARCH need about one message, computed at append.
///
/// Serializable (via serde, or [`MessageInfo::to_bytes`] with a leading
/// format version byte). The serialized form is a flat, versioned list of
/// parts, so decoding untrusted or corrupt bytes cannot recurse deeply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The ENVELOPE value, parenthesized, e.g.
    /// `("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" ((...)) ...)`.
    /// Strings are IMAP quoted strings or literals (`{n}\r\n...`).
    pub envelope: String,
    /// The BODY value (non-extensible form), parenthesized.
    pub body: String,
    /// The BODYSTRUCTURE value (with extension data), parenthesized.
    pub bodystructure: String,
    /// The part tree; `root` is the message itself.
    pub root: Part,
    /// The first `Date:` header as seconds since the Unix epoch (UTC), when
    /// it parses as an RFC 5322 date.
    pub sent_date: Option<i64>,
    /// Offset of the `Date:` header's own zone, in seconds east of UTC
    /// (0 when there is no usable date).
    pub sent_date_offset: i32,
}

impl MessageInfo {
    /// Serializes for the store's cache: [`FORMAT_VERSION`] then postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Reads what [`MessageInfo::to_bytes`] wrote. Fails on an unknown
    /// version byte or corrupt input; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        wire::decode(bytes)
    }

    /// The calendar day of the `Date:` header in the header's own time
    /// zone, as days since 1970-01-01. IMAP `SENTBEFORE`/`SENTON`/
    /// `SENTSINCE` compare this day ("disregarding time and timezone").
    pub fn sent_day(&self) -> Option<i64> {
        self.sent_date
            .map(|t| (t + i64::from(self.sent_date_offset)).div_euclid(86_400))
    }
}

/// Analyzes a raw message. Never fails and never panics: malformed input
/// yields a best-effort result that is still valid IMAP syntax.
pub fn analyze(raw: &[u8]) -> MessageInfo {
    let view = &raw[..raw.len().min(MESSAGE_BYTES_MAX)];
    let tree = structure::parse(view);
    let envelope = envelope::build(view, &tree.fields);
    let body = bodystructure::write(view, &tree, false);
    let bodystructure = bodystructure::write(view, &tree, true);
    let (sent_date, sent_date_offset) = envelope::sent_date(view, &tree.fields);
    let root = part::from_node(view, &tree);
    MessageInfo {
        envelope,
        body,
        bodystructure,
        root,
        sent_date,
        sent_date_offset,
    }
}

/// Rewrites bare LF line ends as CRLF (a CR already before an LF is kept;
/// lone CRs are left alone). Returns the input unchanged, without copying,
/// when it has no bare LF.
///
/// IMAP sizes and `BODY[]` bytes are expected in CRLF form; a store that
/// accepts LF-only input canonicalizes before storing and analyzing.
pub fn canonicalize_line_endings(raw: &[u8]) -> Cow<'_, [u8]> {
    let bare = raw
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Cow::Owned(out)
}

/// A fuzzing entry point: everything the server does with a message it
/// received, on arbitrary bytes. Checks that the cached facts round-trip,
/// that `BODY[]` is the message, that the part tree stays within
/// [`MIME_DEPTH_MAX`] and [`PARTS_MAX`] with every part's ranges inside
/// the message, and that every part's section is inside it. A cargo-fuzz
/// target and a property test call it.
pub fn fuzz_message(raw: &[u8]) {
    let info = analyze(raw);
    let (parts, depth) = tree_size(&info.root, raw.len(), 0);
    assert!(parts <= PARTS_MAX + 1, "{parts} parts recorded");
    assert!(depth <= MIME_DEPTH_MAX + 1, "part tree {depth} levels deep");
    let back = MessageInfo::from_bytes(&info.to_bytes()).expect("cache round trip");
    assert_eq!(back.bodystructure, info.bodystructure);
    assert_eq!(back.envelope, info.envelope);
    let whole = section_bytes(
        raw,
        &info,
        &Section {
            part: Vec::new(),
            text: None,
        },
    );
    assert_eq!(&*whole, raw, "BODY[] is the message");
    let mut numbers = Vec::new();
    for n in 1..=4u32 {
        numbers.push(vec![n]);
        numbers.push(vec![n, 1]);
    }
    for part in numbers {
        for text in [
            None,
            Some(SectionText::Header),
            Some(SectionText::Text),
            Some(SectionText::Mime),
        ] {
            let bytes = section_bytes(
                raw,
                &info,
                &Section {
                    part: part.clone(),
                    text,
                },
            );
            assert!(
                bytes.len() <= raw.len(),
                "a section is never longer than the message"
            );
        }
    }
    let _ = header_values(raw, "subject");
    let _ = body_text(raw);
}

/// (entities, depth) of a part tree, checking that every range lies in a
/// message of `len` bytes. Recursion is bounded by the tree's own depth,
/// which the caller checks against [`MIME_DEPTH_MAX`].
fn tree_size(part: &Part, len: usize, level: usize) -> (usize, usize) {
    for r in [&part.header, &part.body] {
        assert!(
            r.start <= r.end && r.end as usize <= len,
            "range {r:?} outside a {len}-byte message"
        );
    }
    assert!(
        level <= MIME_DEPTH_MAX + 2,
        "part tree deeper than its bound"
    );
    let mut parts = 1;
    let mut depth = level;
    let children: Vec<&Part> = match &part.kind {
        PartKind::Single => Vec::new(),
        PartKind::Multipart(ps) => ps.iter().collect(),
        PartKind::Message { message, .. } => vec![message],
    };
    for child in children {
        let (p, d) = tree_size(child, len, level + 1);
        parts += p;
        depth = depth.max(d);
    }
    (parts, depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalize_adds_cr_only_before_bare_lf() {
        assert_eq!(
            &*canonicalize_line_endings(b"\na\r\nb\nc\r"),
            b"\r\na\r\nb\r\nc\r"
        );
        assert_eq!(&*canonicalize_line_endings(b"\n\n"), b"\r\n\r\n");
        assert!(matches!(
            canonicalize_line_endings(b"a\r\nb\r\n"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(canonicalize_line_endings(b""), Cow::Borrowed(_)));
    }

    #[test]
    fn sent_day_uses_the_header_zone() {
        // 23:30 on 1 March in -0500 is already 2 March in UTC.
        let info = analyze(b"Date: Tue, 1 Mar 2016 23:30:00 -0500\r\n\r\n");
        assert_eq!(info.sent_date, Some(1_456_893_000));
        assert_eq!(info.sent_day(), Some(16_861)); // 2016-03-01
        assert_eq!(info.sent_date.map(|t| t.div_euclid(86_400)), Some(16_862));
    }
}
