//! Modified UTF-7 mailbox-name encoding (RFC 3501 §5.1.3).
//!
//! Printable US-ASCII (0x20..=0x7E) stands for itself, except `&`, which is
//! written `&-`. Every other character is written as UTF-16BE in a modified
//! BASE64 (`,` instead of `/`, no padding) between `&` and `-`.
//!
//! [`decode`] is strict: it accepts exactly the strings [`encode`] produces,
//! so every name has one wire form. It rejects 8-bit and control bytes,
//! unterminated or empty shifts, bad BASE64 characters, non-zero padding
//! bits, unpaired surrogates, printable ASCII hidden in BASE64, and two
//! BASE64 runs back to back.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a modified UTF-7 string was rejected, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {position}")]
pub struct Mutf7Error {
    /// What is wrong.
    pub kind: Mutf7ErrorKind,
    /// Byte offset in the input where the problem was found.
    pub position: usize,
}

/// The kinds of modified UTF-7 errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutf7ErrorKind {
    /// A byte outside printable US-ASCII.
    InvalidByte(u8),
    /// A character not in the modified BASE64 alphabet inside a shift.
    InvalidBase64(u8),
    /// `&` without the closing `-`.
    Unterminated,
    /// The BASE64 run does not end on a UTF-16 unit boundary, or its
    /// padding bits are not zero.
    BadPadding,
    /// The UTF-16 sequence holds an unpaired surrogate.
    InvalidUtf16,
    /// A printable ASCII character was BASE64-encoded.
    EncodedAscii,
    /// A BASE64 run directly follows another one (they must be merged).
    AdjacentShifts,
}

impl fmt::Display for Mutf7ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutf7ErrorKind::InvalidByte(b) => write!(f, "byte 0x{b:02x} is not printable US-ASCII"),
            Mutf7ErrorKind::InvalidBase64(b) => {
                write!(f, "byte 0x{b:02x} is not modified BASE64")
            }
            Mutf7ErrorKind::Unterminated => f.write_str("'&' shift is not closed by '-'"),
            Mutf7ErrorKind::BadPadding => f.write_str("BASE64 run has bad length or padding"),
            Mutf7ErrorKind::InvalidUtf16 => f.write_str("unpaired UTF-16 surrogate"),
            Mutf7ErrorKind::EncodedAscii => {
                f.write_str("printable ASCII must not be BASE64-encoded")
            }
            Mutf7ErrorKind::AdjacentShifts => f.write_str("adjacent BASE64 runs must be merged"),
        }
    }
}

/// Encodes a UTF-8 string as modified UTF-7.
pub fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for ch in input.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn flush(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &unit in units.iter() {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
    units.clear();
}

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Decodes modified UTF-7 into UTF-8, strictly (see the module docs).
pub fn decode(input: impl AsRef<[u8]>) -> Result<String, Mutf7Error> {
    let input = input.as_ref();
    let err = |kind, position| Err(Mutf7Error { kind, position });
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    // Offset just past the '-' of the last BASE64 run, to spot adjacent runs.
    let mut last_run_end: Option<usize> = None;
    while i < input.len() {
        let b = input[i];
        if !(0x20..=0x7e).contains(&b) {
            return err(Mutf7ErrorKind::InvalidByte(b), i);
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let amp = i;
        i += 1;
        let start = i;
        while i < input.len() && input[i] != b'-' {
            if b64_value(input[i]).is_none() {
                if !(0x20..=0x7e).contains(&input[i]) {
                    return err(Mutf7ErrorKind::InvalidByte(input[i]), i);
                }
                return err(Mutf7ErrorKind::InvalidBase64(input[i]), i);
            }
            i += 1;
        }
        if i >= input.len() {
            return err(Mutf7ErrorKind::Unterminated, amp);
        }
        let run = &input[start..i];
        i += 1; // the '-'
        if run.is_empty() {
            out.push('&');
            continue;
        }
        if last_run_end == Some(amp) {
            return err(Mutf7ErrorKind::AdjacentShifts, amp);
        }
        last_run_end = Some(i);
        let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
        let mut acc: u32 = 0;
        let mut bits: u32 = 0;
        for &c in run {
            let v = b64_value(c).unwrap_or(0);
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xffff) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        if bits >= 6 || acc != 0 || units.is_empty() {
            return err(Mutf7ErrorKind::BadPadding, amp);
        }
        for decoded in char::decode_utf16(units.iter().copied()) {
            match decoded {
                Ok(ch) if (' '..='~').contains(&ch) => {
                    return err(Mutf7ErrorKind::EncodedAscii, amp);
                }
                Ok(ch) => out.push(ch),
                Err(_) => return err(Mutf7ErrorKind::InvalidUtf16, amp),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 §5.1.3: "~peter/mail/台北/日本語"
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(name), wire);
        assert_eq!(decode(wire).unwrap(), name);
    }

    #[test]
    fn ampersand() {
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("A&-B").unwrap(), "A&B");
        assert_eq!(decode("&-&-").unwrap(), "&&");
    }

    #[test]
    fn astral_plane() {
        let s = "x\u{1F600}y";
        let e = encode(s);
        assert_eq!(decode(&e).unwrap(), s);
    }

    #[test]
    fn rejects() {
        let k = |s: &[u8]| decode(s).unwrap_err().kind;
        assert_eq!(k(b"&U,BTFw"), Mutf7ErrorKind::Unterminated);
        assert_eq!(k(b"&U,B/Fw-"), Mutf7ErrorKind::InvalidBase64(b'/'));
        assert_eq!(k("caf\u{e9}".as_bytes()), Mutf7ErrorKind::InvalidByte(0xc3));
        assert_eq!(k(b"a\tb"), Mutf7ErrorKind::InvalidByte(b'\t'));
        // "A" (0x0041) encoded in BASE64.
        assert_eq!(k(b"&AEE-"), Mutf7ErrorKind::EncodedAscii);
        // Two runs that should have been one.
        assert_eq!(k(b"&AOQ-&APY-"), Mutf7ErrorKind::AdjacentShifts);
        // Non-zero padding bits: "&AOR-" differs from the canonical "&AOQ-".
        assert_eq!(k(b"&AOR-"), Mutf7ErrorKind::BadPadding);
        // Too short for one UTF-16 unit.
        assert_eq!(k(b"&AO-"), Mutf7ErrorKind::BadPadding);
        // Lone high surrogate D800.
        assert_eq!(k(b"&2AA-"), Mutf7ErrorKind::InvalidUtf16);
    }
}
