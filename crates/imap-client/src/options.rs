//! Client settings: timeouts and the limits that bound every buffer the
//! client keeps.

use std::time::Duration;

use slotmail_imap_proto::ResponseLimits;

/// Default limit for TCP connect, TLS handshake and greeting (30 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for one whole command, from sending it to its tagged
/// response (10 min: a UID FETCH of a large mailbox takes a while).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Default limit for one read or write to make progress (60 s).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on the bytes a buffered fetch keeps (256 MiB).
pub const DEFAULT_MAX_BUFFERED_FETCH_BYTES: usize = 256 * 1024 * 1024;
/// Default cap on queued unsolicited responses (count).
pub const DEFAULT_MAX_UNSOLICITED_RESPONSES: usize = 10_000;
/// Default cap on UIDs expanded from one server-sent set (VANISHED,
/// ESEARCH ALL, COPYUID, MODIFIED), count.
pub const DEFAULT_MAX_EXPANDED_UIDS: usize = 10_000_000;
/// Default size of one socket read, in bytes (64 KiB).
pub const DEFAULT_READ_CHUNK_BYTES: usize = 64 * 1024;

/// How a [`crate::Client`] behaves; [`ClientOptions::default`] suits most
/// uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Limit for TCP connect, TLS handshake and reading the greeting
    /// (each STARTTLS handshake too).
    pub connect_timeout: Duration,
    /// Limit for one whole command, from the first byte sent to the tagged
    /// response (for `IDLE`: up to the continuation request, and again for
    /// `DONE`).
    pub command_timeout: Duration,
    /// Limit for one socket read or write to make progress, within the
    /// command limit.
    pub io_timeout: Duration,
    /// Limits of the response reader (line, literal and response sizes).
    pub response_limits: ResponseLimits,
    /// Most bytes (section data, envelopes, structures and per-record
    /// overhead) one buffered [`crate::Client::uid_fetch`] or QRESYNC
    /// select keeps; beyond it the command is read to its end and fails
    /// with [`crate::Error::Limit`]. Streaming fetches hold one message.
    pub max_buffered_fetch_bytes: usize,
    /// Most unsolicited responses queued for
    /// [`crate::Client::take_unsolicited`]; older ones are dropped and
    /// counted ([`crate::Client::unsolicited_dropped`]).
    pub max_unsolicited_responses: usize,
    /// Most UIDs expanded from one server-sent set.
    pub max_expanded_uids: usize,
    /// Size of one socket read, in bytes.
    pub read_chunk_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            response_limits: ResponseLimits::default(),
            max_buffered_fetch_bytes: DEFAULT_MAX_BUFFERED_FETCH_BYTES,
            max_unsolicited_responses: DEFAULT_MAX_UNSOLICITED_RESPONSES,
            max_expanded_uids: DEFAULT_MAX_EXPANDED_UIDS,
            read_chunk_bytes: DEFAULT_READ_CHUNK_BYTES,
        }
    }
}
