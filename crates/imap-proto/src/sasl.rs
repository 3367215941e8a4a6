//! SASL for `AUTHENTICATE PLAIN`: BASE64 (RFC 4648 §4) and the PLAIN
//! message (RFC 4616, `authzid NUL authcid NUL passwd`), shared by the
//! slot's IMAP server and the proxy, which both decode what a client sends
//! as its initial response (SASL-IR) or on the continuation line.
//!
//! ```
//! use slotmail_imap_proto::sasl::{PlainError, SaslPlain};
//!
//! let plain = SaslPlain::decode(b"AGFsaWNlAHNlY3JldA==").unwrap();
//! assert_eq!(plain.authcid, b"alice");
//! assert_eq!(plain.to_utf8(), Some((None, "alice", "secret")));
//! assert_eq!(SaslPlain::decode_initial(b"="), Err(PlainError::Malformed));
//! assert_eq!(SaslPlain::decode(b"not base64!"), Err(PlainError::Base64));
//! ```

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard BASE64 (RFC 4648 §4), with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard BASE64 (RFC 4648 §4). Padding may be left out; when
/// present it must complete the last quantum, and the bits it stands for
/// must be zero. `None` on bad input.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let trimmed = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    if !input.len().is_multiple_of(4) && trimmed.len() != input.len() {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in trimmed {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros; 6 leftover bits is a truncated
    // quantum.
    if bits >= 6 || acc != 0 {
        return None;
    }
    Some(out)
}

/// Why a client's PLAIN response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// Not BASE64.
    #[error("invalid BASE64")]
    Base64,
    /// Not `authzid NUL authcid NUL passwd` (exactly two NULs).
    #[error("malformed PLAIN message (expected authzid NUL authcid NUL password)")]
    Malformed,
}

/// A SASL PLAIN message (RFC 4616), as bytes: the server decides how to
/// treat names that are not UTF-8 (a failed login, after its throttle has
/// seen the name). The password is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslPlain {
    /// The identity to act as; empty for "the authentication identity".
    pub authzid: Vec<u8>,
    /// The authentication identity.
    pub authcid: Vec<u8>,
    /// The password.
    pub password: Vec<u8>,
}

impl fmt::Debug for SaslPlain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslPlain")
            .field("authzid", &String::from_utf8_lossy(&self.authzid))
            .field("authcid", &String::from_utf8_lossy(&self.authcid))
            .field("password", &"<hidden>")
            .finish()
    }
}

impl SaslPlain {
    /// Split a decoded message into its three parts.
    pub fn parse(message: &[u8]) -> Result<SaslPlain, PlainError> {
        let mut parts = message.split(|&b| b == 0);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authzid), Some(authcid), Some(password), None) => Ok(SaslPlain {
                authzid: authzid.to_vec(),
                authcid: authcid.to_vec(),
                password: password.to_vec(),
            }),
            _ => Err(PlainError::Malformed),
        }
    }

    /// Decode a client's response on the continuation line: BASE64 of the
    /// message.
    pub fn decode(response: &[u8]) -> Result<SaslPlain, PlainError> {
        SaslPlain::parse(&base64_decode(response).ok_or(PlainError::Base64)?)
    }

    /// Decode an initial response (SASL-IR, RFC 4959): as [`Self::decode`],
    /// where a lone `=` is the empty response (malformed for PLAIN).
    pub fn decode_initial(response: &[u8]) -> Result<SaslPlain, PlainError> {
        if response == b"=" {
            return SaslPlain::parse(b"");
        }
        SaslPlain::decode(response)
    }

    /// The message `authzid NUL authcid NUL passwd`.
    pub fn message(&self) -> Vec<u8> {
        let mut m =
            Vec::with_capacity(self.authzid.len() + self.authcid.len() + self.password.len() + 2);
        m.extend_from_slice(&self.authzid);
        m.push(0);
        m.extend_from_slice(&self.authcid);
        m.push(0);
        m.extend_from_slice(&self.password);
        m
    }

    /// The parts as text, `None` if one is not UTF-8: (the identity to act
    /// as — `None` when empty or the authentication identity itself —, the
    /// authentication identity, the password).
    pub fn to_utf8(&self) -> Option<(Option<&str>, &str, &str)> {
        let authz = std::str::from_utf8(&self.authzid).ok()?;
        let authc = std::str::from_utf8(&self.authcid).ok()?;
        let pass = std::str::from_utf8(&self.password).ok()?;
        let authz = (!authz.is_empty() && authz != authc).then_some(authz);
        Some((authz, authc, pass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_test_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64_encode(b"\0alice\0secret"), "AGFsaWNlAHNlY3JldA==");
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(base64_encode(b""), "");
        assert_eq!(
            base64_decode(b"AGFsaWNlAHNlY3JldA==").unwrap(),
            b"\0alice\0secret"
        );
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert_eq!(base64_decode(b"Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode(b"Zm8").unwrap(), b"fo", "padding left out");
        assert!(base64_decode(b"Zm9v!").is_none());
        assert!(base64_decode(b"Zm9=").is_none(), "non-zero padding bits");
        assert!(base64_decode(b"Z").is_none());
        assert!(
            base64_decode(b"Zm=").is_none(),
            "padding short of a quantum"
        );
        assert!(base64_decode(b"!!!!").is_none());
    }

    #[test]
    fn plain_messages() {
        let p = SaslPlain::parse(b"carol\0admin\0pw").unwrap();
        assert_eq!(p.authzid, b"carol");
        assert_eq!(p.authcid, b"admin");
        assert_eq!(p.password, b"pw");
        assert_eq!(p.to_utf8(), Some((Some("carol"), "admin", "pw")));
        // An authzid equal to the authcid is no authorization.
        let p = SaslPlain::parse(b"bob\0bob\0pw").unwrap();
        assert_eq!(p.to_utf8(), Some((None, "bob", "pw")));
        // Empty parts are parts; the caller refuses empty names.
        let p = SaslPlain::parse(b"\0\0").unwrap();
        assert_eq!(p.to_utf8(), Some((None, "", "")));
        for bad in [&b""[..], b"bob", b"\0bob", b"a\0b\0c\0d", b"\0\0\0"] {
            assert_eq!(SaslPlain::parse(bad), Err(PlainError::Malformed), "{bad:?}");
        }
        // Not UTF-8: the bytes are kept, the text is refused.
        let p = SaslPlain::parse(b"\0b\xffb\0pw").unwrap();
        assert_eq!(p.authcid, b"b\xffb");
        assert_eq!(p.to_utf8(), None);
        assert_eq!(
            SaslPlain::decode(base64_encode(b"\0bob\0secret").as_bytes())
                .unwrap()
                .to_utf8(),
            Some((None, "bob", "secret"))
        );
        assert_eq!(SaslPlain::decode_initial(b"="), Err(PlainError::Malformed));
        assert_eq!(SaslPlain::decode(b"="), Err(PlainError::Base64));
        assert_eq!(SaslPlain::decode(b"*"), Err(PlainError::Base64));
        assert_eq!(
            SaslPlain::decode_initial(b"AGJvYgBwdw=="),
            SaslPlain::decode(b"AGJvYgBwdw==")
        );
        let shown = format!("{:?}", SaslPlain::parse(b"\0bob\0hunter2").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    proptest! {
        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let encoded = base64_encode(&data);
            prop_assert_eq!(encoded.len() % 4, 0);
            prop_assert_eq!(base64_decode(encoded.as_bytes()).unwrap(), data.clone());
            // Without its padding too.
            prop_assert_eq!(base64_decode(encoded.trim_end_matches('=').as_bytes()).unwrap(), data);
        }

        #[test]
        fn base64_decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(bytes) = base64_decode(&input) {
                // What decodes re-encodes to the same text, up to padding.
                let again = base64_encode(&bytes);
                let given = String::from_utf8(input.clone()).unwrap();
                prop_assert_eq!(again.trim_end_matches('='), given.trim_end_matches('='));
            }
        }

        #[test]
        fn plain_round_trip(
            authzid in proptest::collection::vec(1u8..=255, 0..20),
            authcid in proptest::collection::vec(1u8..=255, 0..20),
            password in proptest::collection::vec(1u8..=255, 0..40),
        ) {
            let p = SaslPlain { authzid, authcid, password };
            let response = base64_encode(&p.message());
            prop_assert_eq!(SaslPlain::decode(response.as_bytes()), Ok(p.clone()));
            prop_assert_eq!(SaslPlain::parse(&p.message()), Ok(p));
        }

        #[test]
        fn plain_decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = SaslPlain::decode_initial(&input) {
                prop_assert_eq!(p.message().iter().filter(|&&b| b == 0).count(), 2);
                prop_assert_eq!(SaslPlain::parse(&p.message()), Ok(p));
            }
        }
    }
}
