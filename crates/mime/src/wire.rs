//! The cached form of [`MessageInfo`]: a version byte, then postcard.
//!
//! The part tree is stored flat, in depth-first order with a child count
//! per part, so decoding never recurses and a corrupt or hostile cache
//! entry cannot exhaust the stack. Decoding checks the shape (child counts,
//! nesting depth, part count, `message/rfc822` parts having exactly one
//! child) and fails with [`Error`] instead of building an impossible tree.
//!
//! Format version 1 (field order is the format; change it only together
//! with [`FORMAT_VERSION`]):
//! `envelope, body, bodystructure, sent_date, sent_date_offset, parts`
//! where each part is `header.start, header.end, body.start, body.end,
//! media_type, media_subtype, kind (0 single, 1 multipart, 2 message),
//! children, envelope (message parts only, else empty)`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::part::{ByteRange, Part, PartKind};
use crate::{Error, FORMAT_VERSION, MIME_DEPTH_MAX, MessageInfo, PARTS_MAX};

const KIND_SINGLE: u8 = 0;
const KIND_MULTIPART: u8 = 1;
const KIND_MESSAGE: u8 = 2;

/// Deepest tree accepted when decoding: every entity level may add one
/// part level, plus the root.
const TREE_DEPTH_MAX: usize = MIME_DEPTH_MAX + 2;

#[derive(Serialize, Deserialize)]
struct WirePart<'a> {
    header: (u32, u32),
    body: (u32, u32),
    #[serde(borrow)]
    media_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    media_subtype: std::borrow::Cow<'a, str>,
    kind: u8,
    children: u32,
    #[serde(borrow)]
    envelope: std::borrow::Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct WireInfo<'a> {
    #[serde(borrow)]
    envelope: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    body: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    bodystructure: std::borrow::Cow<'a, str>,
    sent_date: Option<i64>,
    sent_date_offset: i32,
    parts: Vec<WirePart<'a>>,
}

fn flatten<'a>(part: &'a Part, out: &mut Vec<WirePart<'a>>) {
    let (kind, children, envelope) = match &part.kind {
        PartKind::Single => (KIND_SINGLE, 0, ""),
        PartKind::Multipart(parts) => (
            KIND_MULTIPART,
            u32::try_from(parts.len()).unwrap_or(u32::MAX),
            "",
        ),
        PartKind::Message { envelope, .. } => (KIND_MESSAGE, 1, envelope.as_str()),
    };
    out.push(WirePart {
        header: (part.header.start, part.header.end),
        body: (part.body.start, part.body.end),
        media_type: part.media_type.as_str().into(),
        media_subtype: part.media_subtype.as_str().into(),
        kind,
        children,
        envelope: envelope.into(),
    });
    match &part.kind {
        PartKind::Single => {}
        PartKind::Multipart(parts) => parts.iter().for_each(|p| flatten(p, out)),
        PartKind::Message { message, .. } => flatten(message, out),
    }
}

fn to_wire(info: &MessageInfo) -> WireInfo<'_> {
    let mut parts = Vec::new();
    flatten(&info.root, &mut parts);
    WireInfo {
        envelope: info.envelope.as_str().into(),
        body: info.body.as_str().into(),
        bodystructure: info.bodystructure.as_str().into(),
        sent_date: info.sent_date,
        sent_date_offset: info.sent_date_offset,
        parts,
    }
}

/// A part being rebuilt: the part without its children yet, how many
/// children it still expects, and the ones collected so far.
struct Pending {
    part: Part,
    kind: u8,
    envelope: String,
    remaining: u32,
    children: Vec<Part>,
}

impl Pending {
    fn finish(self) -> Part {
        let Pending {
            mut part,
            kind,
            envelope,
            mut children,
            ..
        } = self;
        part.kind = match kind {
            KIND_MULTIPART => PartKind::Multipart(children),
            KIND_MESSAGE => match children.pop() {
                Some(message) => PartKind::Message {
                    envelope,
                    message: Box::new(message),
                },
                None => PartKind::Single,
            },
            _ => PartKind::Single,
        };
        part
    }
}

/// Rebuilds the tree from depth-first order without recursion.
fn unflatten(parts: Vec<WirePart<'_>>) -> Result<Part, Error> {
    if parts.is_empty() {
        return Err(Error::InvalidTree("no parts"));
    }
    if parts.len() > PARTS_MAX {
        return Err(Error::InvalidTree("too many parts"));
    }
    let total = parts.len();
    let mut stack: Vec<Pending> = Vec::new();
    let mut root = None;
    for (i, w) in parts.into_iter().enumerate() {
        if root.is_some() {
            return Err(Error::InvalidTree("parts after the root is complete"));
        }
        let expected = match w.kind {
            KIND_SINGLE => 0,
            KIND_MULTIPART => w.children,
            KIND_MESSAGE => 1,
            _ => return Err(Error::InvalidTree("unknown part kind")),
        };
        if w.children != expected || expected as usize > total - i - 1 {
            return Err(Error::InvalidTree("bad child count"));
        }
        if stack.len() >= TREE_DEPTH_MAX {
            return Err(Error::InvalidTree("tree too deep"));
        }
        let part = Part {
            header: ByteRange {
                start: w.header.0,
                end: w.header.1,
            },
            body: ByteRange {
                start: w.body.0,
                end: w.body.1,
            },
            media_type: w.media_type.into_owned(),
            media_subtype: w.media_subtype.into_owned(),
            kind: match w.kind {
                KIND_MULTIPART => PartKind::Multipart(Vec::new()),
                _ => PartKind::Single,
            },
        };
        let mut done = if expected > 0 {
            stack.push(Pending {
                part,
                kind: w.kind,
                envelope: w.envelope.into_owned(),
                remaining: expected,
                children: Vec::new(),
            });
            None
        } else {
            Some(part)
        };
        // Attach finished parts to their parents, closing parents that are
        // complete.
        while let Some(part) = done.take() {
            match stack.last_mut() {
                None => root = Some(part),
                Some(parent) => {
                    parent.children.push(part);
                    parent.remaining -= 1;
                    if parent.remaining == 0 {
                        done = stack.pop().map(Pending::finish);
                    }
                }
            }
        }
    }
    match (root, stack.is_empty()) {
        (Some(root), true) => Ok(root),
        _ => Err(Error::InvalidTree("truncated part list")),
    }
}

pub(crate) fn encode(info: &MessageInfo) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing plain strings, integers and sequences into a Vec cannot
    // fail; an empty payload would be rejected by `decode` anyway.
    if let Ok(body) = postcard::to_allocvec(&to_wire(info)) {
        out.extend_from_slice(&body);
    }
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<MessageInfo, Error> {
    let (&version, rest) = bytes.split_first().ok_or(Error::Empty)?;
    if version != FORMAT_VERSION {
        return Err(Error::UnknownVersion(version));
    }
    let (wire, tail): (WireInfo<'_>, &[u8]) = postcard::take_from_bytes(rest)?;
    if !tail.is_empty() {
        return Err(Error::InvalidTree("trailing bytes"));
    }
    from_wire(wire)
}

fn from_wire(wire: WireInfo<'_>) -> Result<MessageInfo, Error> {
    Ok(MessageInfo {
        envelope: wire.envelope.into_owned(),
        body: wire.body.into_owned(),
        bodystructure: wire.bodystructure.into_owned(),
        root: unflatten(wire.parts)?,
        sent_date: wire.sent_date,
        sent_date_offset: wire.sent_date_offset,
    })
}

impl Serialize for MessageInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        to_wire(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MessageInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireInfo::deserialize(deserializer)?;
        from_wire(wire).map_err(serde::de::Error::custom)
    }
}
