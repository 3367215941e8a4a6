//! Decoding part bodies to text for SEARCH: content transfer encodings
//! (RFC 2045 §6) and charsets.
//!
//! The transfer decoders are our own and total: base64 ignores characters
//! outside its alphabet and quoted-printable keeps an invalid `=` sequence
//! as it is, as RFC 2045 suggests robust decoders should. (mail-parser
//! 0.11.9's quoted-printable decoder overflows on some input — our property
//! tests found it — so it is not used.) Charsets are decoded by mail-parser's
//! tables through [`guarded`]. Unknown charsets fall back to UTF-8 when
//! valid, else windows-1252.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;

use crate::imap_string::header_text;

/// Undoes a content transfer encoding (`encoding` in lower case). Unknown
/// encodings and identity encodings return the bytes unchanged.
pub(crate) fn transfer_decode<'a>(bytes: &'a [u8], encoding: &str) -> Cow<'a, [u8]> {
    match encoding {
        "base64" => Cow::Owned(lenient_base64(bytes)),
        "quoted-printable" => Cow::Owned(lenient_quoted_printable(bytes)),
        _ => Cow::Borrowed(bytes),
    }
}

/// Run a call into mail-parser so that a panic inside it (it has had some
/// on hostile input) becomes `None` instead of taking the caller down.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Base64 that never fails: characters outside the alphabet are skipped,
/// decoding stops at the first `=`, a dangling 6-bit group is dropped.
fn lenient_base64(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable that never fails: `=XX` decodes, `=` before a line
/// end (after optional blanks) is a soft break, any other `=` is literal.
fn lenient_quoted_printable(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        if let (Some(h), Some(l)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        let mut j = i + 1;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
            j += 1;
        }
        match bytes.get(j) {
            Some(b'\n') => i = j + 1,
            Some(b'\r') if bytes.get(j + 1) == Some(&b'\n') => i = j + 2,
            None => i = j,
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Decodes text in `charset` to UTF-8.
pub(crate) fn charset_decode(bytes: &[u8], charset: Option<&str>) -> String {
    let known = charset
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .and_then(|c| charset_decoder(c.as_bytes()));
    match known.and_then(|decode| guarded(|| decode(bytes))) {
        Some(text) => text,
        None => header_text(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_with_line_breaks_and_junk() {
        assert_eq!(&*transfer_decode(b"aGVs\r\nbG8=\r\n", "base64"), b"hello");
        assert_eq!(&*transfer_decode(b"aGVs*bG8=", "base64"), b"hello");
    }

    #[test]
    fn quoted_printable_soft_breaks_and_damage() {
        assert_eq!(
            &*transfer_decode(b"caf=C3=A9 =\r\nau lait", "quoted-printable"),
            "café au lait".as_bytes()
        );
        assert_eq!(lenient_quoted_printable(b"a=zz b=\r\nc= \nd="), b"a=zz bcd");
    }

    #[test]
    fn base64_known_answers() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(lenient_base64(enc.as_bytes()), dec.as_bytes(), "{enc}");
        }
    }

    /// Regression: mail-parser's quoted-printable decoder overflowed on
    /// input like this; ours is total.
    #[test]
    fn quoted_printable_never_panics_on_trailing_soft_breaks() {
        for input in [
            &b"="[..],
            b"=\r",
            b"= \r\n=",
            b"==\n=\r\n",
            b"\n=",
            b"=\n\n=",
        ] {
            let _ = transfer_decode(input, "quoted-printable");
        }
    }

    #[test]
    fn identity_encodings() {
        assert_eq!(&*transfer_decode(b"raw\xff", "8bit"), b"raw\xff");
        assert_eq!(&*transfer_decode(b"raw", "x-unknown"), b"raw");
    }

    #[test]
    fn charsets() {
        assert_eq!(charset_decode(b"caf\xe9", Some("ISO-8859-1")), "café");
        assert_eq!(charset_decode(b"\xcf\xf0\xe8", Some("windows-1251")), "При");
        assert_eq!(charset_decode("café".as_bytes(), Some("utf-8")), "café");
        assert_eq!(charset_decode(b"caf\xe9", Some("x-bogus")), "café");
        assert_eq!(charset_decode(b"plain", None), "plain");
    }
}
