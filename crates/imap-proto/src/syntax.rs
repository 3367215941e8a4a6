//! Character classes of the IMAP grammar (RFC 3501 §9, RFC 9051 §9) and
//! the choice between atom, quoted string and literal when writing.

/// `CHAR` minus `atom-specials`: `( ) { SP CTL % * " \ ]` and 8-bit.
pub(crate) fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">`.
pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `list-char = ATOM-CHAR / list-wildcards / resp-specials`.
pub(crate) fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// A non-empty run of atom characters.
pub(crate) fn is_atom(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_atom_char(b))
}

/// Bytes that can go in a quoted string without a literal: 7-bit
/// `TEXT-CHAR` (no NUL, CR, LF).
pub(crate) fn is_quotable(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80)
}

/// Like [`is_quotable`] but also allowing UTF-8 (RFC 9051 `QUOTED-CHAR`).
pub(crate) fn is_quotable_utf8(s: &[u8]) -> bool {
    std::str::from_utf8(s).is_ok() && s.iter().all(|&b| b != 0 && b != b'\r' && b != b'\n')
}

/// Writes `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends the decimal form of `n`.
pub(crate) fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Replaces CR, LF and NUL so `text` fits in one `TEXT-CHAR` line.
pub(crate) fn push_text(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        out.push(if b == b'\r' || b == b'\n' || b == 0 {
            b' '
        } else {
            b
        });
    }
}
