//! Errors of the sync client and server.
//!
//! [`SyncError`] is what a stream, a handshake or a round can fail with; the
//! client maps it to "reconnect" (the stream is unusable) or "retry this
//! user later" (the stream goes on) with [`SyncError::ends_stream`].
//! [`SetupError`] is what starting the service can fail with (secret file,
//! epoch file, listener).

use slotmail_repl_proto::{BodyError, EncodeError, ErrorCode, ErrorReply, FrameError, FrameType};
use slotmail_store::StoreError;
use std::path::PathBuf;

/// Why a stream, a handshake or a round failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream.
    #[error("the peer closed the stream")]
    Closed,
    /// A wait exceeded its limit.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer sent bytes that are not a valid frame.
    #[error("invalid frame from the peer: {0}")]
    Frame(#[from] FrameError),
    /// A frame of ours would break the protocol's limits (a bug: we split
    /// lists to fit).
    #[error("cannot send a frame: {0}")]
    Encode(#[from] EncodeError),
    /// The handshake failed; `by_peer` when the peer refused us.
    #[error("handshake failed ({code}{}): {text}", if *by_peer { ", refused by the peer" } else { "" })]
    Handshake {
        code: ErrorCode,
        text: String,
        by_peer: bool,
    },
    /// The peer answered a request with `Error`.
    #[error("the peer answered {request} with an error: {reply}")]
    Peer {
        request: FrameType,
        reply: ErrorReply,
    },
    /// The peer answered with a frame that does not answer the request.
    #[error("the peer answered {request} with {got}")]
    Unexpected { request: FrameType, got: FrameType },
    /// The peer's chunks of a body broke the transfer rules.
    #[error("invalid body transfer: {0}")]
    Body(#[from] BodyError),
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl SyncError {
    /// Whether the stream cannot be used after this error. Errors the peer
    /// answers a request with (`store`, `missing`, `guid-mismatch`,
    /// `too-big`) and our own store's errors leave the stream usable.
    pub fn ends_stream(&self) -> bool {
        match self {
            SyncError::Peer { reply, .. } => !matches!(
                reply.code,
                ErrorCode::Store | ErrorCode::Missing | ErrorCode::GuidMismatch | ErrorCode::TooBig
            ),
            SyncError::Store(_) => false,
            _ => true,
        }
    }

    /// The peer's error code, when the peer answered with `Error`.
    pub fn peer_code(&self) -> Option<ErrorCode> {
        match self {
            SyncError::Peer { reply, .. } => Some(reply.code),
            _ => None,
        }
    }
}

/// Why the replication service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The cluster secret file is unreadable or not 64 hex digits.
    #[error("cluster secret {}: {what}", path.display())]
    Secret { path: PathBuf, what: String },
    /// The sync state file (the adopted epoch) is unreadable or damaged.
    #[error("sync state {}: {what}", path.display())]
    State { path: PathBuf, what: String },
    /// The sync listener's TLS certificate could not be generated.
    #[error("sync TLS: {0}")]
    Tls(String),
    /// The sync listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
