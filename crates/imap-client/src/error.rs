//! The client's error type and the escaping of server bytes for messages.
//!
//! [`Error::No`] and [`Error::Bad`] are the server's answers and leave the
//! connection usable, as does [`Error::Limit`]. [`Error::Io`],
//! [`Error::Timeout`], [`Error::Closed`] and [`Error::ResponseTooLarge`]
//! always break it ([`Error::breaks_connection`]); a
//! [`Error::Protocol`] breaks it when the stream cannot be followed any more
//! (an unexpected continuation request, a foreign tag) and not when a
//! well-framed response was merely not understood. After a break every
//! call fails with [`Error::Broken`]; [`crate::Client::is_usable`] tells.

use std::time::Duration;

use slotmail_imap_proto::ResponseCode;

/// Most bytes of a server line quoted in an error message.
pub const MAX_QUOTED_LINE_BYTES: usize = 300;

/// Everything that can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket (or TLS, or deflate) failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An operation did not finish within its limit from
    /// [`crate::ClientOptions`].
    #[error("{operation} timed out after {limit:?}")]
    Timeout {
        /// The command or phase (`connect`, `UID FETCH`, ...).
        operation: &'static str,
        /// The limit that expired.
        limit: Duration,
    },
    /// The server sent something that is not valid IMAP here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered `NO`.
    #[error("NO{}: {text}", code_suffix(.code))]
    No {
        /// The response code, e.g. `NONEXISTENT`, `CORRUPTION`.
        code: Option<ResponseCode>,
        /// The human-readable text.
        text: String,
    },
    /// The server answered `BAD`.
    #[error("BAD{}: {text}", code_suffix(.code))]
    Bad {
        /// The response code, if any.
        code: Option<ResponseCode>,
        /// The human-readable text.
        text: String,
    },
    /// The server closed the connection, with the code and text of its
    /// `BYE` if one came first.
    #[error("connection closed by the server{}: {text}", code_suffix(.code))]
    Closed {
        /// The `BYE` response code, e.g. `UNAVAILABLE`.
        code: Option<ResponseCode>,
        /// The `BYE` text, or a description when there was none.
        text: String,
    },
    /// A result was larger than [`crate::ClientOptions`] allow (buffered
    /// FETCH or LIST bytes, expanded UIDs). The command was read to its
    /// end; the connection stays usable.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A response broke the reader's limits
    /// ([`crate::ClientOptions::response_limits`]): the stream cannot be
    /// followed any more.
    #[error("response too large: {0}")]
    ResponseTooLarge(String),
    /// The caller asked for something this connection cannot do (invalid
    /// mailbox name, malformed FETCH items, IDLE in progress, ...). Nothing
    /// was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The server does not advertise a capability the call needs. Nothing
    /// was sent.
    #[error("server does not advertise {0}")]
    MissingCapability(String),
    /// An earlier error left the connection in an unknown state.
    #[error("connection unusable after an earlier error: {0}")]
    Broken(String),
}

fn code_suffix(code: &Option<ResponseCode>) -> String {
    match code {
        Some(c) => {
            let mut out = b" [".to_vec();
            c.write(&mut out);
            out.push(b']');
            String::from_utf8_lossy(&out).into_owned()
        }
        None => String::new(),
    }
}

impl Error {
    /// The server's response code of a `NO`, `BAD` or `BYE`.
    pub fn code(&self) -> Option<&ResponseCode> {
        match self {
            Error::No { code, .. } | Error::Bad { code, .. } | Error::Closed { code, .. } => {
                code.as_ref()
            }
            _ => None,
        }
    }

    /// Whether this is a `NO` carrying `code`.
    pub fn is_no_with(&self, code: &ResponseCode) -> bool {
        matches!(self, Error::No { code: Some(c), .. } if c == code)
    }

    /// Whether the connection can never be used after this error (see the
    /// module docs for [`Error::Protocol`]).
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::Timeout { .. }
                | Error::Closed { .. }
                | Error::ResponseTooLarge(_)
                | Error::Broken(_)
        )
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shows server bytes in an error message: printable ASCII as is, `\r`,
/// `\n`, `\t`, `\\` and `\xNN` escapes for the rest, cut after
/// [`MAX_QUOTED_LINE_BYTES`] bytes.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(MAX_QUOTED_LINE_BYTES) + 8);
    for &b in bytes.iter().take(MAX_QUOTED_LINE_BYTES) {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > MAX_QUOTED_LINE_BYTES {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_8bit_bytes() {
        assert_eq!(escape_bytes(b"* OK hi\r\n"), "* OK hi\\r\\n");
        assert_eq!(escape_bytes(b"a\\b\x00\xff\t"), "a\\\\b\\x00\\xff\\t");
        let long = vec![b'x'; MAX_QUOTED_LINE_BYTES + 5];
        let e = escape_bytes(&long);
        assert!(e.ends_with(&format!("... ({} bytes)", MAX_QUOTED_LINE_BYTES + 5)));
    }

    #[test]
    fn display_carries_the_code() {
        let e = Error::No {
            code: Some(ResponseCode::Corruption),
            text: "message damaged".into(),
        };
        assert_eq!(e.to_string(), "NO [CORRUPTION]: message damaged");
        assert!(e.is_no_with(&ResponseCode::Corruption));
        assert!(!e.breaks_connection());
        let c = Error::Closed {
            code: Some(ResponseCode::Unavailable),
            text: "shutting down".into(),
        };
        assert_eq!(c.code(), Some(&ResponseCode::Unavailable));
        assert!(c.breaks_connection());
    }
}
