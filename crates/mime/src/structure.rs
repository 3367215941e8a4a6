//! The MIME entity tree of a raw message with exact byte ranges (RFC 2045,
//! RFC 2046 §5.1, RFC 2046 §5.2.1).
//!
//! The parser is a single forward pass with a stack of the open multipart
//! boundaries. Each line starting with `--` is checked against all open
//! boundaries, so a part that lacks its closing delimiter still ends at its
//! parent's next delimiter. When several open boundaries match a line as a
//! prefix, the longest wins and, among equally long ones, the innermost
//! (the same rule Dovecot uses). The CRLF (or LF) before a delimiter line
//! belongs to the delimiter, as RFC 2046 §5.1.1 says, so a part's body ends
//! before it.
//!
//! Work is bounded: entities deeper than [`MIME_DEPTH_MAX`] and entities past
//! [`PARTS_MAX`] are not descended into (a multipart or `message/rfc822` part
//! there becomes an opaque leaf), recursion depth is bounded by the same
//! limit, and each byte is scanned once per open boundary at most.
//!
//! `message/rfc822` parts are always parsed as an embedded message, whatever
//! their transfer encoding claims, so the BODYSTRUCTURE form (envelope, body,
//! lines) stays what IMAP4rev1 clients expect for that type.

use crate::content::MimeFields;
use crate::header::{self, End, Field};
use crate::{MIME_DEPTH_MAX, PARTS_MAX};

/// What an entity is, structurally.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A leaf part (also a multipart/message part that was not descended).
    Leaf { opaque: bool },
    /// A multipart with its (possibly zero) parts.
    Multipart(Vec<Node>),
    /// A `message/rfc822` part and the message inside it.
    Message(Box<Node>),
}

/// One MIME entity: the message, a body part, or an embedded message.
#[derive(Debug)]
pub(crate) struct Node {
    /// Header (MIME header of a part, RFC 5322 header of a message),
    /// including the blank line that ends it when there is one.
    pub header: (usize, usize),
    /// Body: from after the header to before the next delimiter's line end.
    pub body: (usize, usize),
    /// The header fields.
    pub fields: Vec<Field>,
    /// `Content-*` information (defaults applied).
    pub mime: MimeFields,
    pub kind: Kind,
}

impl Node {
    /// End of the whole entity.
    fn end(&self) -> usize {
        self.body.1.max(self.header.1)
    }

    /// The lowercase (type, subtype) this entity is reported as.
    pub fn media(&self) -> (String, String) {
        match self.kind {
            Kind::Leaf { opaque: true } => ("application".into(), "octet-stream".into()),
            _ => (
                self.mime.content_type.type_.to_ascii_lowercase(),
                self.mime.content_type.subtype.to_ascii_lowercase(),
            ),
        }
    }
}

/// A delimiter line found while scanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stop {
    line_start: usize,
    /// After the delimiter line's line end.
    line_end: usize,
    /// Index into the boundary stack.
    level: usize,
    /// `--boundary--`
    close: bool,
}

struct Parser<'a> {
    raw: &'a [u8],
    /// Open multipart boundaries, outermost first.
    stack: Vec<Vec<u8>>,
    /// Entities created so far.
    parts: usize,
}

/// Parses the whole message.
pub(crate) fn parse(raw: &[u8]) -> Node {
    let mut p = Parser {
        raw,
        stack: Vec::new(),
        parts: 0,
    };
    p.entity(0, 0, false).0
}

/// Where a body that is ended by the delimiter line at `line_start` ends:
/// before the line end that precedes the delimiter, but not before `floor`.
fn end_before(raw: &[u8], line_start: usize, floor: usize) -> usize {
    let mut end = line_start;
    if end > floor && raw[end - 1] == b'\n' {
        end -= 1;
        if end > floor && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end.max(floor)
}

impl<'a> Parser<'a> {
    /// Is the line at `pos` (a line start) a delimiter of an open boundary?
    fn boundary_at(&self, pos: usize) -> Option<Stop> {
        let rest = self.raw.get(pos..)?.strip_prefix(b"--")?;
        let mut best: Option<(usize, usize)> = None;
        for (level, b) in self.stack.iter().enumerate().rev() {
            if rest.starts_with(b) && best.is_none_or(|(_, len)| b.len() > len) {
                best = Some((level, b.len()));
            }
        }
        let (level, len) = best?;
        Some(Stop {
            line_start: pos,
            line_end: header::next_line(self.raw, pos, self.raw.len()),
            level,
            close: rest[len..].starts_with(b"--"),
        })
    }

    /// The next delimiter line at or after `pos` (a line start).
    fn find_boundary(&self, mut pos: usize) -> Option<Stop> {
        if self.stack.is_empty() {
            return None;
        }
        let raw = self.raw;
        while pos < raw.len() {
            if raw[pos] == b'-'
                && raw.get(pos + 1) == Some(&b'-')
                && let Some(stop) = self.boundary_at(pos)
            {
                return Some(stop);
            }
            pos = match raw[pos..].iter().position(|&b| b == b'\n') {
                Some(i) => pos + i + 1,
                None => return None,
            };
        }
        None
    }

    /// Parses the entity starting at `start` (a line start). Returns it and
    /// the delimiter that ended it (`None`: it ran to the end of input).
    fn entity(&mut self, start: usize, depth: usize, in_digest: bool) -> (Node, Option<Stop>) {
        self.parts += 1;
        let raw = self.raw;
        let block = header::scan(raw, start, raw.len(), |pos| self.boundary_at(pos));
        let mime = MimeFields::parse(self.raw, &block.fields, in_digest);
        let (header_end, body_start) = match block.end {
            End::Blank(end) => (end, end),
            End::Eof(end) => (end, end),
            End::Boundary { line_start, stop } => {
                // No body at all: the header runs into a delimiter.
                let end = end_before(self.raw, line_start, start);
                let ct = &mime.content_type;
                let opaque = ct.is("multipart") || ct.is_type("message", "rfc822");
                let node = Node {
                    header: (start, end),
                    body: (end, end),
                    fields: block.fields,
                    mime,
                    kind: Kind::Leaf { opaque },
                };
                return (node, Some(stop));
            }
        };
        let ct = &mime.content_type;
        let can_descend = depth < MIME_DEPTH_MAX && self.parts < PARTS_MAX;
        // A multipart type always has a non-empty boundary here (content.rs
        // treats a multipart without one as invalid).
        let boundary = ct.param("boundary").unwrap_or_default().as_bytes().to_vec();

        let (kind, body_end, stop) = if ct.is("multipart") && can_descend {
            let digest = ct.subtype.eq_ignore_ascii_case("digest");
            let (children, end, stop) = self.multipart(body_start, &boundary, depth, digest);
            (Kind::Multipart(children), end, stop)
        } else if ct.is_type("message", "rfc822") && can_descend {
            let (inner, stop) = self.entity(body_start, depth + 1, false);
            let end = inner.end();
            (Kind::Message(Box::new(inner)), end, stop)
        } else {
            let opaque = ct.is("multipart") || ct.is_type("message", "rfc822");
            let stop = self.find_boundary(body_start);
            let end = stop.map_or(self.raw.len(), |s| {
                end_before(self.raw, s.line_start, body_start)
            });
            (Kind::Leaf { opaque }, end, stop)
        };
        let node = Node {
            header: (start, header_end),
            body: (body_start, body_end),
            fields: block.fields,
            mime,
            kind,
        };
        (node, stop)
    }

    /// Parses a multipart body starting at `body_start`. Returns the parts,
    /// where the multipart body ends, and the outer delimiter ending it.
    fn multipart(
        &mut self,
        body_start: usize,
        boundary: &[u8],
        depth: usize,
        digest: bool,
    ) -> (Vec<Node>, usize, Option<Stop>) {
        self.stack.push(boundary.to_vec());
        let own = self.stack.len() - 1;
        let mut children = Vec::new();
        let mut floor = body_start;
        let mut next = self.find_boundary(body_start);
        loop {
            match next {
                None => {
                    self.stack.truncate(own);
                    return (children, self.raw.len(), None);
                }
                Some(s) if s.level == own && !s.close => {
                    floor = floor.max(s.line_end);
                    if self.parts < PARTS_MAX {
                        let (child, stop) = self.entity(s.line_end, depth + 1, digest);
                        floor = floor.max(child.end());
                        children.push(child);
                        next = stop;
                    } else {
                        next = self.find_boundary(s.line_end);
                    }
                }
                Some(s) if s.level == own => {
                    // Close delimiter: the epilogue runs to an outer delimiter.
                    self.stack.truncate(own);
                    let floor = floor.max(s.line_start);
                    let stop = self.find_boundary(s.line_end);
                    let end = stop.map_or(self.raw.len(), |o| {
                        end_before(self.raw, o.line_start, floor)
                    });
                    return (children, end, stop);
                }
                Some(s) => {
                    // An outer delimiter ends this multipart early.
                    self.stack.truncate(own);
                    return (children, end_before(self.raw, s.line_start, floor), Some(s));
                }
            }
        }
    }
}
