//! The protocol's limits, as named constants with their units.
//!
//! This module owns every number that bounds what a peer may send or make us
//! hold: frame and chunk sizes, list lengths per message, and the decoder's
//! buffer. The values are part of the protocol (version 3) (docs/replication.md,
//! "Limits"): a peer that exceeds one is refused, so changing a value that
//! makes us refuse what a peer of this version may send is a protocol change.

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest value of a frame's `length` field (type + payload + CRC), in
/// bytes: 16 MiB.
pub const FRAME_LEN_MAX: u32 = 16 * 1024 * 1024;

/// Largest value of a frame's `length` field while the handshake is not yet
/// complete, in bytes: 64 KiB. Handshake frames are small; the bound keeps an
/// unauthenticated peer from making the listener buffer 16 MiB.
pub const HANDSHAKE_FRAME_LEN_MAX: u32 = 64 * 1024;

/// Smallest value of a frame's `length` field, in bytes: the type byte and the
/// CRC around an empty payload.
pub const FRAME_LEN_MIN: u32 = 1 + 4;

/// Bytes of the `length` field that starts every frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Largest `bytes` of one `Body` chunk, in bytes: 1 MiB.
pub const BODY_CHUNK_MAX: usize = 1024 * 1024;

/// Largest read the decoder is sure to take whole after it has been drained
/// (see [`crate::FrameDecoder::feed`]), in bytes: 64 KiB.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Capabilities in one `Hello` or `Challenge`.
pub const CAPABILITIES_MAX: usize = 64;

/// Users in one `Users` response (a page of `ListUsers`).
pub const USERS_PER_FRAME_MAX: usize = 4096;

/// Mailboxes in one `UserState` response.
pub const MAILBOXES_PER_USER_MAX: usize = 16_384;

/// GUIDs in one `HaveGuids` request or `Missing` response.
pub const GUIDS_PER_FRAME_MAX: usize = 8192;

/// Message records in one `ApplyMailbox` request.
pub const MESSAGES_PER_APPLY_MAX: usize = 8192;

/// Expunge entries in one `ApplyMailbox` request.
pub const EXPUNGES_PER_APPLY_MAX: usize = 65_536;

/// Subscription records in one `ApplySubscriptions` request.
pub const SUBSCRIPTIONS_PER_FRAME_MAX: usize = 65_536;

/// Keywords in one mailbox or message record.
pub const KEYWORDS_PER_RECORD_MAX: usize = 256;

/// Seconds of idle time after which the master sends `Ping`.
pub const PING_IDLE_SECS: u64 = 10;
