//! The public part tree: byte ranges of every MIME entity of a message,
//! kept in the cache so `BODY[section]` is a slice of the raw message.
//!
//! Numbering follows the tree: the parts of a multipart are its children in
//! order (1-based in IMAP), and the parts of a `message/rfc822` part are
//! those of the message it contains ([`PartKind::Message`]).

use std::ops::Range;

use crate::envelope;
use crate::structure::{Kind, Node};

/// A byte range `[start, end)` into the raw message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByteRange {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl ByteRange {
    /// Length in bytes (0 for a malformed range with `end < start`).
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// `true` when the range holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As a `usize` range for slicing.
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The bytes of `raw` in this range; empty when the range does not fit
    /// `raw` (never panics).
    pub fn slice<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.range()).unwrap_or_default()
    }

    pub(crate) fn from_pair((start, end): (usize, usize)) -> Self {
        // Offsets are bounded by MESSAGE_BYTES_MAX = u32::MAX.
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        ByteRange {
            start: clamp(start),
            end: clamp(end),
        }
    }
}

/// One MIME entity: the message itself, a body part, or a message embedded
/// in a `message/rfc822` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The header: the RFC 5322 header for a message, the MIME header for a
    /// body part. Includes the blank line that ends it, if present.
    pub header: ByteRange,
    /// The body, from after the header's blank line up to (not including)
    /// the line end before the next MIME delimiter.
    pub body: ByteRange,
    /// Media type in lower case, defaults applied (`text` when absent).
    /// Parts kept opaque because of the depth or part limits are
    /// `application/octet-stream`.
    pub media_type: String,
    /// Media subtype in lower case.
    pub media_subtype: String,
    /// Leaf, multipart or embedded message.
    pub kind: PartKind,
}

/// What a [`Part`] contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// A leaf part (not multipart, not `message/rfc822`).
    Single,
    /// A multipart and its parts. May be empty when no delimiter was found.
    Multipart(Vec<Part>),
    /// A `message/rfc822` part: the message inside it and that message's
    /// ENVELOPE value.
    Message {
        /// The ENVELOPE value of the embedded message.
        envelope: String,
        /// The embedded message (its header and body ranges lie inside
        /// this part's body).
        message: Box<Part>,
    },
}

impl Part {
    /// Child `n` (1-based) for IMAP part numbering *inside this message*:
    /// a multipart message's parts, or (`n == 1`) the body of a
    /// non-multipart message, which is the message entity itself.
    pub fn message_part(&self, n: u32) -> Option<&Part> {
        match &self.kind {
            PartKind::Multipart(parts) => parts.get((n as usize).checked_sub(1)?),
            _ if n == 1 => Some(self),
            _ => None,
        }
    }

    /// Number of entities in this subtree (this part included).
    pub fn count(&self) -> usize {
        let mut n = 0;
        self.walk(&mut |_| n += 1);
        n
    }

    /// Visits this part and every part below it, depth first, in order.
    pub fn walk<'s>(&'s self, f: &mut impl FnMut(&'s Part)) {
        f(self);
        match &self.kind {
            PartKind::Single => {}
            PartKind::Multipart(parts) => parts.iter().for_each(|p| p.walk(f)),
            PartKind::Message { message, .. } => message.walk(f),
        }
    }
}

/// Converts the parser's tree into the public tree.
pub(crate) fn from_node(raw: &[u8], node: &Node) -> Part {
    let (media_type, media_subtype) = node.media();
    let kind = match &node.kind {
        Kind::Leaf { .. } => PartKind::Single,
        Kind::Multipart(children) => {
            PartKind::Multipart(children.iter().map(|c| from_node(raw, c)).collect())
        }
        Kind::Message(inner) => PartKind::Message {
            envelope: envelope::build(raw, &inner.fields),
            message: Box::new(from_node(raw, inner)),
        },
    };
    Part {
        header: ByteRange::from_pair(node.header),
        body: ByteRange::from_pair(node.body),
        media_type,
        media_subtype,
        kind,
    }
}
