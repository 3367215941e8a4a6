//! SEARCH support: decoded header values, decoded body text, and the
//! case-insensitive substring match IMAP SEARCH uses.
//!
//! RFC 3501 §6.4.4 / RFC 9051 §6.4.4 make string matches case-insensitive
//! substring matches; servers compare decoded text, so header values are
//! RFC 2047-decoded and unfolded, and bodies are transfer-decoded and
//! converted from their charset (HTML reduced to its text). Matching uses
//! Unicode simple case folding (one character to one character).

use mail_parser::HeaderValue;
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;

use crate::decode::{charset_decode, transfer_decode};
use crate::header;
use crate::imap_string::header_text;
use crate::structure::{self, Kind, Node};

/// Values of the top-level header fields called `name` (case-insensitive),
/// in header order, unfolded and with RFC 2047 encoded words decoded.
/// 8-bit bytes that are not UTF-8 are read as windows-1252.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let raw = &raw[..raw.len().min(crate::MESSAGE_BYTES_MAX)];
    let block = header::scan::<()>(raw, 0, raw.len(), |_| None);
    block
        .fields
        .iter()
        .filter(|f| f.is(raw, name))
        .map(|f| decode_unstructured(f.raw_value(raw)))
        .collect()
}

/// RFC 2047-decodes and unfolds one raw header value.
fn decode_unstructured(value: &[u8]) -> String {
    let mut text = header_text(value).into_bytes();
    text.push(b'\n');
    match crate::decode::guarded(|| MessageStream::new(&text).parse_unstructured()) {
        Some(HeaderValue::Text(t)) => t.into_owned(),
        Some(_) => String::new(),
        None => String::from_utf8_lossy(&text).trim_end().to_string(),
    }
}

/// The decoded text of every `text/*` part (embedded messages included),
/// in message order, separated by newlines: what SEARCH BODY looks in.
pub fn body_text(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(crate::MESSAGE_BYTES_MAX)];
    let tree = structure::parse(raw);
    let mut out = String::new();
    collect_text(raw, &tree, &mut out);
    out
}

fn collect_text(raw: &[u8], node: &Node, out: &mut String) {
    match &node.kind {
        Kind::Multipart(children) => {
            for child in children {
                collect_text(raw, child, out);
            }
        }
        Kind::Message(inner) => collect_text(raw, inner, out),
        Kind::Leaf { opaque: true } => {}
        Kind::Leaf { opaque: false } => {
            let ct = &node.mime.content_type;
            if !ct.is("text") {
                return;
            }
            let body = raw.get(node.body.0..node.body.1).unwrap_or_default();
            let bytes = transfer_decode(body, &node.mime.encoding_lower());
            let text = charset_decode(&bytes, ct.param("charset"));
            let text = if ct.subtype.eq_ignore_ascii_case("html") {
                crate::decode::guarded(|| html_to_text(&text)).unwrap_or(text)
            } else {
                text
            };
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&text);
        }
    }
}

/// Unicode simple case folding of one character (maps every member of a
/// case class to the same character, one character to one character).
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    single(upper.to_lowercase()).unwrap_or(upper)
}

/// Case-insensitive substring test with SEARCH semantics: `true` when
/// `needle` occurs in `haystack` after simple case folding of both. An
/// empty needle matches everything.
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        return n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    let needle: String = needle.chars().map(fold).collect();
    let haystack: String = haystack.chars().map(fold).collect();
    haystack.contains(&needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_cases() {
        assert!(contains_ci("Hello World", "o wOR"));
        assert!(!contains_ci("Hello", "hellO!"));
        assert!(contains_ci("anything", ""));
        assert!(contains_ci("GRÜSSE aus KÖLN", "köln"));
        assert!(contains_ci("ΟΔΥΣΣΕΥΣ", "οδυσσευς"));
        assert!(contains_ci("final ς", "Σ"));
        assert!(contains_ci("Kelvin \u{212A}", "kelvin k"));
        assert!(contains_ci("straße", "STRAẞE"));
        assert!(!contains_ci("strasse", "straße"));
        assert!(contains_ci("ǅemal", "ǆ"));
    }

    #[test]
    fn header_values_are_decoded_and_unfolded() {
        let raw =
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n  aus Bonn\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody";
        assert_eq!(header_values(raw, "subject"), ["Grüße aus Bonn"]);
        assert_eq!(header_values(raw, "X-A"), ["1", "2"]);
        assert!(header_values(raw, "Missing").is_empty());
        assert_eq!(header_values(b"Subject: Caf\xe9\n\n", "Subject"), ["Café"]);
        assert_eq!(header_values(b"Subject:\r\n\r\n", "Subject"), [""]);
    }
}
