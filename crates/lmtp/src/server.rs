//! The tokio shell: drives a [`Session`] over an async byte stream and
//! answers its events with a [`Backend`].
//!
//! Replies are written in batches: the shell lets the state machine consume
//! everything that has been read, then writes all pending replies at once
//! before waiting for more input (RFC 2920 pipelining). Waiting for a
//! command is limited by `Config::idle_timeout` (reset whenever a command
//! completes); the whole data phase by `Config::data_timeout`. On timeout the
//! client gets `421 4.4.2` and the connection is closed. Backend calls are
//! not timed out here; a backend that can hang must bound its own calls.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::address::Recipient;
use crate::config::Config;
use crate::envelope::{AcceptedRcpt, Envelope, RcptVerdict};
use crate::reply::Reply;
use crate::session::{Event, Session, UsageError};

/// Time allowed for writing the final `421` after a timeout.
const CLOSING_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where messages go. Implemented by the mail store (slot) and by the
/// proxy; `Token` is whatever the backend wants to remember about an
/// accepted recipient (resolved user and folder, chosen route, ...).
///
/// The returned futures must be `Send` so that connections can be served
/// from `tokio::spawn`; implementations may simply use `async fn`.
pub trait Backend: Send + Sync {
    /// Per-recipient data handed from `check_recipient` to `deliver`.
    type Token: Send + Sync;

    /// Decides whether `rcpt` is deliverable: accept with a token, or reject
    /// with a reply such as `550 5.1.1` (unknown user), `452 4.2.2` (over
    /// quota) or `451 4.3.0` (temporary failure).
    fn check_recipient(
        &self,
        rcpt: &Recipient,
    ) -> impl Future<Output = RcptVerdict<Self::Token>> + Send;

    /// Delivers `message` (trace headers included, CRLF line ends) to every
    /// recipient in `rcpts` and returns one reply per recipient, in order.
    /// Missing replies are turned into `451 4.3.0`.
    fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        rcpts: &[AcceptedRcpt<Self::Token>],
    ) -> impl Future<Output = Vec<Reply>> + Send;
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The client was idle for too long or the data phase took too long;
    /// `421 4.4.2` was sent if possible.
    #[error("client timed out")]
    Timeout,
    /// The client closed the connection in the middle of a transaction or
    /// command.
    #[error("client disconnected in the middle of a transaction")]
    Disconnected,
    /// The shell misused the state machine (a bug in this crate).
    #[error("internal error: {0}")]
    Internal(#[from] UsageError),
}

/// A session id unique within this process and unlikely to repeat across
/// restarts: start time of the connection in seconds and a counter, in hex.
fn next_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs:X}-{n:X}")
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 address literal form).
fn format_peer(peer: SocketAddr) -> String {
    match peer {
        SocketAddr::V4(a) => format!("[{}]", a.ip()),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{}]", a.ip()),
        },
    }
}

/// Writes and flushes all pending output of `session`.
async fn write_out<S, T>(
    stream: &mut S,
    session: &mut Session<T>,
    limit: Duration,
) -> Result<(), Error>
where
    S: AsyncWrite + Unpin,
{
    if session.pending_output().is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(session.pending_output()).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(result) => {
            result?;
            let n = session.pending_output().len();
            session.consume_output(n);
            Ok(())
        }
        Err(_) => Err(Error::Timeout),
    }
}

/// Serves one LMTP connection until `QUIT`, timeout, error or disconnect.
///
/// `peer` is used for the `Received:` header. Returns `Ok(())` after `QUIT`,
/// after too many errors (the client got `421`), or when the client closes
/// the connection between transactions.
pub async fn serve_connection<S, B>(
    mut stream: S,
    peer: SocketAddr,
    backend: &B,
    config: &Config,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let session_id = next_session_id();
    let mut session = Session::<B::Token>::new(config, &format_peer(peer), &session_id);
    tracing::debug!(session = %session_id, %peer, "LMTP connection");
    let mut buf = vec![0u8; config.limits.read_buffer_bytes.max(1)];
    let (mut start, mut end) = (0usize, 0usize);
    let mut commands_seen = session.commands_processed();
    let mut idle_deadline = Instant::now() + config.idle_timeout;
    let mut data_deadline: Option<Instant> = None;

    loop {
        let step = session.receive(&buf[start..end], SystemTime::now());
        start += step.consumed;
        if start == end {
            (start, end) = (0, 0);
        }
        if !session.in_data() {
            // The data timer covers one data phase only.
            data_deadline = None;
        }
        if session.commands_processed() != commands_seen {
            commands_seen = session.commands_processed();
            idle_deadline = Instant::now() + config.idle_timeout;
        }
        match step.event {
            Some(Event::Recipient { rcpt }) => {
                let verdict = backend.check_recipient(&rcpt).await;
                tracing::debug!(
                    session = %session_id,
                    rcpt = %rcpt,
                    accepted = matches!(verdict, RcptVerdict::Accept(_)),
                    "recipient checked"
                );
                session.recipient_verdict(verdict)?;
            }
            Some(Event::Deliver {
                envelope,
                message,
                rcpts,
            }) => {
                let replies = backend.deliver(&envelope, &message, &rcpts).await;
                tracing::debug!(
                    id = %envelope.id,
                    bytes = message.len(),
                    recipients = rcpts.len(),
                    "message delivered"
                );
                session.delivery_replies(replies)?;
                idle_deadline = Instant::now() + config.idle_timeout;
            }
            Some(Event::Close) => {
                write_out(&mut stream, &mut session, config.idle_timeout).await?;
                // The client may already be gone; closing is best effort.
                let _ = stream.shutdown().await;
                tracing::debug!(session = %session_id, "LMTP session closed");
                return Ok(());
            }
            None => {
                write_out(&mut stream, &mut session, config.idle_timeout).await?;
                if start < end {
                    // Output was full; the rest of the input is still there.
                    continue;
                }
                let deadline = if session.in_data() {
                    *data_deadline.get_or_insert_with(|| Instant::now() + config.data_timeout)
                } else {
                    idle_deadline
                };
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Err(_) => {
                        tracing::debug!(session = %session_id, "LMTP client timed out");
                        session.timed_out();
                        // Best effort: the client may not be reading either.
                        let _ = write_out(&mut stream, &mut session, CLOSING_WRITE_TIMEOUT).await;
                        return Err(Error::Timeout);
                    }
                    Ok(Ok(0)) => {
                        return if session.in_transaction() {
                            Err(Error::Disconnected)
                        } else {
                            Ok(())
                        };
                    }
                    Ok(Ok(n)) => end = n,
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_formatting() {
        assert_eq!(format_peer("192.0.2.1:25".parse().unwrap()), "[192.0.2.1]");
        assert_eq!(
            format_peer("[2001:db8::1]:25".parse().unwrap()),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(
            format_peer("[::ffff:192.0.2.9]:25".parse().unwrap()),
            "[192.0.2.9]"
        );
    }

    #[test]
    fn session_ids_are_distinct() {
        let a = next_session_id();
        let b = next_session_id();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
    }
}
