//! Writing IMAP `string`/`nstring` values into ENVELOPE and BODYSTRUCTURE
//! responses, and turning raw header bytes into text for them.
//!
//! A value that is 7-bit and has no CR, LF or NUL is written as a quoted
//! string (`"` and `\` escaped, RFC 3501 §4.3 / RFC 9051 §4.3). Anything
//! else (non-ASCII text) is written as a literal `{n}\r\n<n octets>`, which
//! the grammar allows wherever a string is. CR, LF and NUL never reach the
//! output: header values are unfolded first and NUL cannot be sent.

use mail_parser::decoders::charsets::map::charset_decoder;

/// Appends `value` as an IMAP string (quoted when possible, else literal).
pub(crate) fn push_string(out: &mut String, value: &str) {
    let clean: Option<String> = value
        .bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0))
        .then(|| {
            value
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                .collect()
        });
    let value = clean.as_deref().unwrap_or(value);
    if value.is_ascii() {
        out.reserve(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push('{');
        out.push_str(&value.len().to_string());
        out.push_str("}\r\n");
        out.push_str(value);
    }
}

/// Appends `NIL` or the string.
pub(crate) fn push_nstring(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_string(out, v),
        None => out.push_str("NIL"),
    }
}

/// Raw header bytes as text: UTF-8 when they are valid UTF-8 (RFC 6532
/// headers), otherwise read as windows-1252, the usual charset of legacy
/// 8-bit headers. Either way every byte is represented and the result is
/// valid UTF-8, as IMAP4rev2 clients require.
pub(crate) fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => match charset_decoder(b"windows-1252") {
            Some(decode) => decode(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, v);
        out
    }

    #[test]
    fn quoted_and_escaped() {
        assert_eq!(s("hello world"), "\"hello world\"");
        assert_eq!(s(""), "\"\"");
        assert_eq!(s(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(s("a\r\n b"), "\"a b\"");
    }

    #[test]
    fn non_ascii_becomes_literal() {
        assert_eq!(s("Grüße"), "{7}\r\nGrüße");
        let mut out = String::new();
        push_nstring(&mut out, None);
        assert_eq!(out, "NIL");
    }

    #[test]
    fn header_text_falls_back_to_windows_1252() {
        assert_eq!(header_text(b"Caf\xc3\xa9"), "Café");
        assert_eq!(header_text(b"Caf\xe9 \x80"), "Café €");
    }
}
