//! The BODY and BODYSTRUCTURE response values (RFC 3501 §7.4.2 and its
//! `body` grammar in §9; RFC 9051 §7.5.2).
//!
//! Strings from the headers keep the sender's spelling; values this module
//! supplies (defaults) are upper case as in the RFC examples: a part without
//! `Content-Type` is `"TEXT" "PLAIN" ("CHARSET" "US-ASCII")`, a `text/*` part
//! without a charset gets `"CHARSET" "US-ASCII"` appended (RFC 2046 §4.1.2),
//! the default encoding is `"7BIT"`. Sizes are octets of the part body and
//! line counts are the number of LFs in it, as bytes were given to
//! [`crate::analyze`].
//!
//! BODYSTRUCTURE adds extension data to every part: for a single part
//! `md5 disposition language location`, for a multipart `parameters
//! disposition language location`. A multipart with no parts (no delimiter
//! found) is written with one empty text part, since the grammar needs at
//! least one. Parts kept opaque by the depth or part limits are written as
//! `"APPLICATION" "OCTET-STREAM"` with no parameters, so the result always
//! parses with the IMAP4rev1 grammar.

use crate::content::MimeFields;
use crate::envelope;
use crate::imap_string::{push_nstring, push_string};
use crate::structure::{Kind, Node};

/// Written in place of the parts of a multipart that has none.
const EMPTY_PART: &str = r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)"#;

/// Writes the BODY (`extended == false`) or BODYSTRUCTURE value of `node`.
pub(crate) fn write(raw: &[u8], node: &Node, extended: bool) -> String {
    let mut out = String::with_capacity(256);
    write_node(&mut out, raw, node, extended);
    out
}

fn push_params(out: &mut String, params: &[(String, String)]) {
    if params.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_string(out, name);
        out.push(' ');
        push_string(out, value);
    }
    out.push(')');
}

/// ` disposition language location`, shared by both extension forms.
fn push_common_ext(out: &mut String, mime: &MimeFields) {
    out.push(' ');
    match &mime.disposition {
        Some((kind, params)) => {
            out.push('(');
            push_string(out, kind);
            out.push(' ');
            push_params(out, params);
            out.push(')');
        }
        None => out.push_str("NIL"),
    }
    out.push(' ');
    if mime.language.is_empty() {
        out.push_str("NIL");
    } else {
        out.push('(');
        for (i, tag) in mime.language.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_string(out, tag);
        }
        out.push(')');
    }
    out.push(' ');
    push_nstring(out, mime.location.as_deref());
}

fn lines(raw: &[u8], range: (usize, usize)) -> usize {
    raw.get(range.0..range.1)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn write_node(out: &mut String, raw: &[u8], node: &Node, extended: bool) {
    let mime = &node.mime;
    let ct = &mime.content_type;
    out.push('(');
    if let Kind::Multipart(children) = &node.kind {
        if children.is_empty() {
            out.push_str(EMPTY_PART);
        }
        for child in children {
            write_node(out, raw, child, extended);
        }
        out.push(' ');
        push_string(out, &ct.subtype);
        if extended {
            out.push(' ');
            push_params(out, &ct.params);
            push_common_ext(out, mime);
        }
        out.push(')');
        return;
    }

    let opaque = matches!(node.kind, Kind::Leaf { opaque: true });
    let is_text = !opaque && ct.is("text");
    if opaque {
        out.push_str(r#""APPLICATION" "OCTET-STREAM" NIL"#);
    } else {
        push_string(out, &ct.type_);
        out.push(' ');
        push_string(out, &ct.subtype);
        out.push(' ');
        if is_text && ct.param("charset").is_none() {
            let mut params = ct.params.clone();
            params.push(("CHARSET".into(), "US-ASCII".into()));
            push_params(out, &params);
        } else {
            push_params(out, &ct.params);
        }
    }
    out.push(' ');
    push_nstring(out, mime.id.as_deref());
    out.push(' ');
    push_nstring(out, mime.description.as_deref());
    out.push(' ');
    push_string(out, mime.encoding.as_deref().unwrap_or("7BIT"));
    out.push(' ');
    out.push_str(&node.body.1.saturating_sub(node.body.0).to_string());
    if is_text {
        out.push(' ');
        out.push_str(&lines(raw, node.body).to_string());
    } else if let Kind::Message(inner) = &node.kind {
        out.push(' ');
        out.push_str(&envelope::build(raw, &inner.fields));
        out.push(' ');
        write_node(out, raw, inner, extended);
        out.push(' ');
        out.push_str(&lines(raw, node.body).to_string());
    }
    if extended {
        out.push(' ');
        push_nstring(out, mime.md5.as_deref());
        push_common_ext(out, mime);
    }
    out.push(')');
}
