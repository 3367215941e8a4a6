//! Transaction data exchanged between the state machine, the shell and the
//! delivery backend: the [`Envelope`], recipient verdicts and accepted
//! recipients carrying a backend-defined token.

use std::fmt;

use crate::address::{Address, Recipient};
use crate::reply::Reply;

/// The `BODY=` parameter of `MAIL FROM` (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

impl fmt::Display for BodyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SevenBit => "7BIT",
            Self::EightBitMime => "8BITMIME",
        })
    }
}

/// Everything known about a transaction apart from the recipients and the
/// message itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Transaction id (`<session id>.<n>`), also in the `Received:` header.
    pub id: String,
    /// Reverse-path; `None` for the null sender `<>`.
    pub sender: Option<Address>,
    /// Size declared with `SIZE=`, if any.
    pub declared_size: Option<u64>,
    /// Body type declared with `BODY=`, if any.
    pub body: Option<BodyType>,
    /// Name the client gave in `LHLO`.
    pub lhlo: String,
    /// Peer description supplied by the caller (e.g. `[192.0.2.1]`).
    pub peer: String,
}

impl Envelope {
    /// The reverse-path in angle brackets, e.g. `<a@b>` or `<>`.
    pub fn return_path(&self) -> String {
        match &self.sender {
            Some(a) => format!("<{a}>"),
            None => "<>".to_owned(),
        }
    }
}

/// The backend's answer to a recipient check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict<T> {
    /// Accept the recipient; the token is handed back at delivery.
    Accept(T),
    /// Reject with this reply, e.g. `550 5.1.1`, `452 4.2.2` or `451 4.3.0`.
    /// A reply that is not 4xx/5xx is replaced by `451 4.3.0`.
    Reject(Reply),
}

/// A recipient accepted by the backend, with the backend's token (e.g. the
/// resolved user and folder, or the route chosen by a proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRcpt<T> {
    /// The recipient as parsed from `RCPT TO`.
    pub rcpt: Recipient,
    /// The token returned by the backend with [`RcptVerdict::Accept`].
    pub token: T,
}
