//! SASL PLAIN (RFC 4616) as a client sends it: the message and its BASE64
//! (RFC 4648 §4) come from `slotmail_imap_proto::sasl`, which the server
//! decodes with.

use slotmail_imap_proto::sasl::{SaslPlain, base64_encode};

/// The PLAIN message `authzid NUL authcid NUL password`, BASE64-encoded.
pub(crate) fn plain_response(authzid: Option<&str>, authcid: &str, password: &str) -> String {
    let plain = SaslPlain {
        authzid: authzid.unwrap_or("").as_bytes().to_vec(),
        authcid: authcid.as_bytes().to_vec(),
        password: password.as_bytes().to_vec(),
    };
    base64_encode(&plain.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_layout() {
        assert_eq!(
            plain_response(None, "tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(
            plain_response(Some("alice"), "admin", "pw"),
            base64_encode(b"alice\0admin\0pw")
        );
        // What the server decodes is what the client meant.
        let back =
            SaslPlain::decode(plain_response(Some("alice"), "admin", "pw").as_bytes()).unwrap();
        assert_eq!(back.to_utf8(), Some((Some("alice"), "admin", "pw")));
    }
}
