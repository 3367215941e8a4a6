//! Configuration and resource limits for an LMTP session.
//!
//! Every buffer, queue and counter in the crate is bounded by a field of
//! [`Limits`]; the defaults are the `DEFAULT_*` constants below, whose names
//! carry their unit. [`Config`] adds the identity of the server and the
//! policy switches used by the state machine and the tokio shell.

use std::time::Duration;

/// Default maximum length of a command line, in octets, including the CRLF
/// (RFC 5321 §4.5.3.1.4 allows 512; we are liberal up to the text-line
/// limit of §4.5.3.1.6).
pub const DEFAULT_MAX_COMMAND_LINE_BYTES: usize = 1000;

/// Default maximum length of one line of message data, in octets, including
/// the CRLF. RFC 5321 says 1000; real mail exceeds that, so we accept up to
/// this bound and reject the message (per recipient) beyond it.
pub const DEFAULT_MAX_DATA_LINE_BYTES: usize = 64 * 1024;

/// Default maximum message size, in octets, counted after dot-unstuffing and
/// line-end normalisation, excluding the trace headers we prepend. Advertised
/// as `SIZE`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Default maximum number of accepted recipients per transaction
/// (RFC 5321 §4.5.3.1.8 requires at least 100).
pub const DEFAULT_MAX_RECIPIENTS: usize = 500;

/// Default number of error replies tolerated per session before the server
/// answers `421 4.7.0` and closes. The counter is reset whenever a
/// transaction completes with a delivery.
pub const DEFAULT_MAX_ERRORS: u32 = 50;

/// Default size, in octets, above which the state machine stops consuming
/// input until the caller has written out the pending replies.
pub const DEFAULT_MAX_PENDING_OUTPUT_BYTES: usize = 64 * 1024;

/// Default size of the shell's read buffer, in octets.
pub const DEFAULT_READ_BUFFER_BYTES: usize = 16 * 1024;

/// Default maximum length of the host name used in the greeting, in octets.
pub const MAX_HOSTNAME_BYTES: usize = 255;

/// Maximum length of a reverse- or forward-path including the angle
/// brackets, in octets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH_BYTES: usize = 256;

/// Maximum length of one reply line we emit, in octets, including the code
/// and the CRLF (RFC 5321 §4.5.3.1.5). Longer texts are truncated.
pub const MAX_REPLY_LINE_BYTES: usize = 512;

/// Default time a connection may stay silent while the server waits for the
/// next command, in seconds (RFC 5321 §4.5.3.2.7 suggests 5 minutes).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 5 * 60;

/// Default total time allowed between the `354` reply and the end of the
/// message data, in seconds.
pub const DEFAULT_DATA_TIMEOUT_SECS: u64 = 10 * 60;

/// Resource limits. All sizes are in octets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum command line length including CRLF.
    pub max_command_line_bytes: usize,
    /// Maximum message data line length including CRLF.
    pub max_data_line_bytes: usize,
    /// Maximum message size (after unstuffing, before trace headers).
    pub max_message_bytes: usize,
    /// Maximum accepted recipients per transaction.
    pub max_recipients: usize,
    /// Error replies tolerated before `421` and disconnect.
    pub max_errors: u32,
    /// Pending output above which input processing pauses.
    pub max_pending_output_bytes: usize,
    /// Size of the shell's read buffer.
    pub read_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_line_bytes: DEFAULT_MAX_COMMAND_LINE_BYTES,
            max_data_line_bytes: DEFAULT_MAX_DATA_LINE_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            max_pending_output_bytes: DEFAULT_MAX_PENDING_OUTPUT_BYTES,
            read_buffer_bytes: DEFAULT_READ_BUFFER_BYTES,
        }
    }
}

/// What to answer to `VRFY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VrfyPolicy {
    /// `252 2.5.2`: cannot verify, but will accept and attempt delivery.
    #[default]
    CannotVerify,
    /// `502 5.5.1`: the command is disabled.
    Disabled,
}

/// Server configuration shared by the state machine and the tokio shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Name of this server, used in the greeting, the LHLO reply and the
    /// `Received:` header. Must be printable ASCII without spaces; invalid
    /// characters are replaced when the session is created.
    pub hostname: String,
    /// Resource limits.
    pub limits: Limits,
    /// Separator between user and detail in a recipient local part
    /// (`user+detail@domain`); `None` disables detail parsing.
    pub detail_separator: Option<char>,
    /// Answer to `VRFY`.
    pub vrfy: VrfyPolicy,
    /// Longest silence allowed while waiting for a command.
    pub idle_timeout: Duration,
    /// Longest time allowed for the whole message data phase.
    pub data_timeout: Duration,
}

impl Config {
    /// A configuration with default limits for the given host name.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            limits: Limits::default(),
            detail_separator: Some('+'),
            vrfy: VrfyPolicy::default(),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            data_timeout: Duration::from_secs(DEFAULT_DATA_TIMEOUT_SECS),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new("localhost")
    }
}
