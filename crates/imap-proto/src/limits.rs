//! Size limits for every buffer the framer, the parser and the response
//! reader keep.
//!
//! Each default is a named constant whose name carries its unit. A server
//! builds a [`Limits`] (for instance with its configured APPENDLIMIT as
//! `max_literal_bytes`) and hands it to [`crate::Framer::new`]; a client does
//! the same with [`ResponseLimits`] for [`crate::ResponseReader::new`].

/// Longest command line, in bytes, excluding the CRLF (64 KiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest sum of all lines of one command, in bytes, literals excluded (1 MiB).
pub const DEFAULT_MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// Largest single literal, in bytes: the advertised APPENDLIMIT (64 MiB).
pub const DEFAULT_MAX_LITERAL_BYTES: u64 = 64 * 1024 * 1024;
/// Largest non-synchronizing literal (`{n+}`), in bytes. Equal to the
/// literal limit for LITERAL+; set it to 4096 bytes to implement LITERAL-.
pub const DEFAULT_MAX_NON_SYNC_LITERAL_BYTES: u64 = DEFAULT_MAX_LITERAL_BYTES;
/// Largest sum of all literals of one command, in bytes (MULTIAPPEND), 256 MiB.
pub const DEFAULT_MAX_COMMAND_LITERAL_BYTES: u64 = 256 * 1024 * 1024;
/// Most literals in one command (count).
pub const DEFAULT_MAX_LITERALS_PER_COMMAND: usize = 1024;
/// Most bytes the framer reads and throws away to resynchronise after
/// rejecting a command whose client keeps sending (16 MiB). Above this the
/// connection must be closed.
pub const DEFAULT_MAX_DISCARD_BYTES: u64 = 16 * 1024 * 1024;
/// Most unprocessed input bytes the framer or reader holds (1 MiB).
pub const DEFAULT_MAX_PENDING_INPUT_BYTES: usize = 1024 * 1024;
/// Longest tag, in bytes, that the framer reports in errors and events.
pub const DEFAULT_MAX_TAG_BYTES: usize = 64;
/// Deepest nesting of parentheses (search keys, lists), in levels.
pub const DEFAULT_MAX_NESTING_DEPTH: usize = 64;

/// Longest response line, in bytes, for the client-side reader (16 MiB: a
/// `* SEARCH` answer over a large mailbox is one long line).
pub const DEFAULT_RESPONSE_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Largest sum of all lines of one response, in bytes (32 MiB).
pub const DEFAULT_RESPONSE_MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// Largest literal inside a response, in bytes (256 MiB).
pub const DEFAULT_RESPONSE_MAX_LITERAL_BYTES: u64 = 256 * 1024 * 1024;
/// Most literals in one response (count).
pub const DEFAULT_RESPONSE_MAX_LITERALS: usize = 4096;
/// Most unprocessed input bytes the reader holds (4 MiB).
pub const DEFAULT_RESPONSE_MAX_PENDING_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Limits applied to client input by the [`crate::Framer`] and the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in bytes, CRLF excluded.
    pub max_line_bytes: usize,
    /// Largest sum of the lines of one command in bytes, literals excluded.
    pub max_command_bytes: usize,
    /// Largest literal in bytes (APPENDLIMIT).
    pub max_literal_bytes: u64,
    /// Largest non-synchronizing literal in bytes (4096 for LITERAL-).
    pub max_non_sync_literal_bytes: u64,
    /// Largest sum of all literals of one command in bytes.
    pub max_command_literal_bytes: u64,
    /// Most literals per command.
    pub max_literals_per_command: usize,
    /// Most bytes discarded while skipping a rejected command.
    pub max_discard_bytes: u64,
    /// Most unprocessed input bytes held by the framer.
    pub max_pending_input_bytes: usize,
    /// Longest tag in bytes reported in events and errors.
    pub max_tag_bytes: usize,
    /// Deepest parenthesis nesting accepted by the parser, in levels.
    pub max_nesting_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_command_bytes: DEFAULT_MAX_COMMAND_BYTES,
            max_literal_bytes: DEFAULT_MAX_LITERAL_BYTES,
            max_non_sync_literal_bytes: DEFAULT_MAX_NON_SYNC_LITERAL_BYTES,
            max_command_literal_bytes: DEFAULT_MAX_COMMAND_LITERAL_BYTES,
            max_literals_per_command: DEFAULT_MAX_LITERALS_PER_COMMAND,
            max_discard_bytes: DEFAULT_MAX_DISCARD_BYTES,
            max_pending_input_bytes: DEFAULT_MAX_PENDING_INPUT_BYTES,
            max_tag_bytes: DEFAULT_MAX_TAG_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

/// Limits applied to server output by the [`crate::ResponseReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Longest response line in bytes, CRLF excluded.
    pub max_line_bytes: usize,
    /// Largest sum of the lines of one response in bytes, literals excluded.
    pub max_total_bytes: usize,
    /// Largest literal in bytes.
    pub max_literal_bytes: u64,
    /// Most literals per response.
    pub max_literals: usize,
    /// Most unprocessed input bytes held by the reader.
    pub max_pending_input_bytes: usize,
    /// Deepest parenthesis nesting accepted, in levels.
    pub max_nesting_depth: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            max_line_bytes: DEFAULT_RESPONSE_MAX_LINE_BYTES,
            max_total_bytes: DEFAULT_RESPONSE_MAX_TOTAL_BYTES,
            max_literal_bytes: DEFAULT_RESPONSE_MAX_LITERAL_BYTES,
            max_literals: DEFAULT_RESPONSE_MAX_LITERALS,
            max_pending_input_bytes: DEFAULT_RESPONSE_MAX_PENDING_INPUT_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

/// `feed` was given more bytes than the pending-input limit allows. The
/// bytes were not taken; the caller should stop reading until the pending
/// input has been consumed (see `input_room`), or close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input buffer full: {pending} bytes pending, {offered} offered, limit {limit} bytes")]
pub struct InputOverflow {
    /// Bytes already pending.
    pub pending: usize,
    /// Bytes offered to `feed`.
    pub offered: usize,
    /// The configured limit in bytes.
    pub limit: usize,
}
