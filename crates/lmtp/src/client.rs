//! A small LMTP client for tests, benchmarks and the proxy.
//!
//! [`Client::handshake`] reads the greeting and sends `LHLO`;
//! [`Client::deliver`] runs one transaction (`MAIL`, `RCPT`..., `DATA`,
//! dot-stuffed message) and returns the reply to every command, including
//! the per-recipient replies after the data (RFC 2033 §4.2). Commands are
//! pipelined in windows of [`PIPELINE_WINDOW`] when the server advertises
//! `PIPELINING`. Every read and write is bounded in time
//! ([`ClientConfig::timeout`]) and reply size ([`MAX_CLIENT_REPLY_LINE_BYTES`],
//! [`MAX_CLIENT_REPLY_LINES`]).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::config::MAX_PATH_BYTES;
use crate::data::DotStuffer;
use crate::reply::{Reply, ReplyParseError, ReplyParser};

/// Maximum length of one reply line accepted by the client, in octets.
pub const MAX_CLIENT_REPLY_LINE_BYTES: usize = 4096;

/// Maximum number of lines in one reply accepted by the client.
pub const MAX_CLIENT_REPLY_LINES: usize = 128;

/// Maximum number of commands sent before reading their replies.
pub const PIPELINE_WINDOW: usize = 64;

/// Size of the chunks in which message data is stuffed and written, in
/// octets of input.
const DATA_CHUNK_BYTES: usize = 32 * 1024;

/// Default timeout for each network operation, in seconds.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 5 * 60;

/// Client settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Name sent with `LHLO`.
    pub lhlo_name: String,
    /// Timeout for each read or write.
    pub timeout: Duration,
}

impl ClientConfig {
    /// Default settings with the given `LHLO` name.
    pub fn new(lhlo_name: impl Into<String>) -> Self {
        Self {
            lhlo_name: lhlo_name.into(),
            timeout: Duration::from_secs(DEFAULT_CLIENT_TIMEOUT_SECS),
        }
    }
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An operation exceeded [`ClientConfig::timeout`].
    #[error("timed out")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by server")]
    Closed,
    /// The server sent something that is not a valid reply.
    #[error("malformed reply: {0}")]
    Malformed(#[from] ReplyParseError),
    /// A reply exceeded the client's size limits.
    #[error("reply too long")]
    ReplyTooLong,
    /// The greeting or `LHLO` was refused.
    #[error("unexpected reply: {0}")]
    Unexpected(Reply),
    /// A command argument contains characters that cannot be sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

/// Replies for one recipient of [`Client::deliver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The recipient address as given.
    pub recipient: String,
    /// Reply to `RCPT TO`.
    pub rcpt_reply: Reply,
    /// Reply after the message data; `None` when the recipient was rejected
    /// at `RCPT` time or no data was sent.
    pub data_reply: Option<Reply>,
}

impl RecipientReport {
    /// The reply that decides this recipient's fate.
    pub fn final_reply(&self) -> &Reply {
        self.data_reply.as_ref().unwrap_or(&self.rcpt_reply)
    }

    /// True when the message was accepted for this recipient.
    pub fn delivered(&self) -> bool {
        self.rcpt_reply.is_positive() && self.data_reply.as_ref().is_some_and(Reply::is_positive)
    }
}

/// Outcome of [`Client::deliver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Reply to `MAIL FROM`.
    pub mail_reply: Reply,
    /// Reply to `DATA` (`354` when the message was sent).
    pub data_reply: Reply,
    /// One entry per recipient, in the order given.
    pub recipients: Vec<RecipientReport>,
}

/// An LMTP client connection.
#[derive(Debug)]
pub struct Client<S> {
    stream: BufReader<S>,
    config: ClientConfig,
    greeting: Reply,
    capabilities: Vec<String>,
    line: Vec<u8>,
}

impl Client<TcpStream> {
    /// Connects over TCP and performs the handshake.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(config.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        stream.set_nodelay(true)?;
        Self::handshake(stream, config).await
    }
}

/// Length of `message` once line ends are normalised as the server stores
/// it (see [`crate::normalize_line_endings`]), for `SIZE=`.
fn stored_len(message: &[u8]) -> usize {
    let bare_lf = message
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || message[i - 1] != b'\r'))
        .count();
    let unterminated = !message.is_empty() && !message.ends_with(b"\n");
    message.len() + bare_lf + if unterminated { 2 } else { 0 }
}

fn check_arg(s: &str, what: &'static str) -> Result<(), ClientError> {
    if s.len() > MAX_PATH_BYTES || s.chars().any(|c| c.is_control() || c == '<' || c == '>') {
        return Err(ClientError::InvalidArgument(what));
    }
    Ok(())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads the `220` greeting and sends `LHLO`.
    pub async fn handshake(stream: S, config: ClientConfig) -> Result<Self, ClientError> {
        if config.lhlo_name.is_empty() || !config.lhlo_name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidArgument("LHLO name"));
        }
        let mut client = Self {
            stream: BufReader::new(stream),
            config,
            greeting: Reply::plain(220, ""),
            capabilities: Vec::new(),
            line: Vec::new(),
        };
        let greeting = client.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Unexpected(greeting));
        }
        client.greeting = greeting;
        let lhlo = format!("LHLO {}", client.config.lhlo_name);
        let reply = client.command(&lhlo).await?;
        if reply.code != 250 {
            return Err(ClientError::Unexpected(reply));
        }
        client.capabilities = reply.lines.into_iter().skip(1).collect();
        Ok(client)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Capability lines from the `LHLO` reply (e.g. `SIZE 1000`).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// True if the server advertised the capability `name` (any case).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.split(' ')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(name))
        })
    }

    /// The advertised `SIZE` limit, if any.
    pub fn max_size(&self) -> Option<u64> {
        self.capabilities.iter().find_map(|c| {
            let (k, v) = c.split_once(' ')?;
            k.eq_ignore_ascii_case("SIZE")
                .then(|| v.trim().parse().ok())?
        })
    }

    /// Sends one command line (without CRLF) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        if line.contains(['\r', '\n']) {
            return Err(ClientError::InvalidArgument("command line"));
        }
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// `RSET`.
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        self.command("RSET").await
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<Reply, ClientError> {
        self.command("NOOP").await
    }

    /// `QUIT`, then returns the underlying stream.
    pub async fn quit(mut self) -> Result<(Reply, S), ClientError> {
        let reply = self.command("QUIT").await?;
        Ok((reply, self.stream.into_inner()))
    }

    /// Runs one transaction. `sender` and `recipients` are addresses without
    /// angle brackets (`""` is the null sender). `SIZE=` and `BODY=8BITMIME`
    /// are added when the server supports them. Line ends in `message` are
    /// sent as CRLF (see [`crate::normalize_line_endings`]).
    pub async fn deliver(
        &mut self,
        sender: &str,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<DeliveryReport, ClientError> {
        check_arg(sender, "sender")?;
        for r in recipients {
            check_arg(r, "recipient")?;
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if self.has_capability("SIZE") {
            mail.push_str(&format!(" SIZE={}", stored_len(message)));
        }
        if self.has_capability("8BITMIME") && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let mut commands = Vec::with_capacity(recipients.len() + 2);
        commands.push(mail);
        commands.extend(recipients.iter().map(|r| format!("RCPT TO:<{r}>")));
        commands.push("DATA".to_owned());

        let window = if self.has_capability("PIPELINING") {
            PIPELINE_WINDOW
        } else {
            1
        };
        let mut replies = Vec::with_capacity(commands.len());
        for batch in commands.chunks(window) {
            let mut out = Vec::new();
            for c in batch {
                out.extend_from_slice(c.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            self.write(&out).await?;
            for _ in batch {
                replies.push(self.read_reply().await?);
            }
        }
        let data_reply = replies.pop().ok_or(ClientError::Closed)?;
        let mut rcpt_replies = replies.split_off(1);
        let mail_reply = replies.pop().ok_or(ClientError::Closed)?;

        let mut data_replies: Vec<Option<Reply>> = vec![None; recipients.len()];
        if data_reply.code == 354 {
            let accepted: Vec<usize> = (0..recipients.len())
                .filter(|&i| rcpt_replies[i].is_positive())
                .collect();
            if accepted.is_empty() {
                // Non-conforming server; end the data at once (RFC 2920 §3.1).
                self.write(b".\r\n").await?;
                self.read_reply().await?;
            } else {
                self.send_message(message).await?;
                for i in accepted {
                    data_replies[i] = Some(self.read_reply().await?);
                }
            }
        }
        let recipients = recipients
            .iter()
            .zip(rcpt_replies.drain(..))
            .zip(data_replies)
            .map(|((r, rcpt_reply), data_reply)| RecipientReport {
                recipient: (*r).to_owned(),
                rcpt_reply,
                data_reply,
            })
            .collect();
        Ok(DeliveryReport {
            mail_reply,
            data_reply,
            recipients,
        })
    }

    async fn send_message(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::with_capacity(2 * DATA_CHUNK_BYTES + 8);
        for chunk in message.chunks(DATA_CHUNK_BYTES) {
            out.clear();
            stuffer.encode(chunk, &mut out);
            self.write(&out).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write(&out).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.config.timeout, write)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut parser = ReplyParser::new();
        loop {
            let line = self.read_line().await?;
            if let Some(reply) = parser.push_line(&line)? {
                return Ok(reply);
            }
            if parser.pending_lines() >= MAX_CLIENT_REPLY_LINES {
                return Err(ClientError::ReplyTooLong);
            }
        }
    }

    /// Reads one line, bounded by [`MAX_CLIENT_REPLY_LINE_BYTES`], and
    /// returns it without its line end.
    async fn read_line(&mut self) -> Result<String, ClientError> {
        self.line.clear();
        let timeout = self.config.timeout;
        let read = async {
            loop {
                let available = self.stream.fill_buf().await?;
                if available.is_empty() {
                    return Err(ClientError::Closed);
                }
                let (take, done) = match available.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (available.len(), false),
                };
                if self.line.len() + take > MAX_CLIENT_REPLY_LINE_BYTES {
                    return Err(ClientError::ReplyTooLong);
                }
                self.line.extend_from_slice(&available[..take]);
                self.stream.consume(take);
                if done {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ClientError::Timeout)??;
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(String::from_utf8_lossy(&self.line).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_len_matches_normalisation() {
        for m in [
            &b""[..],
            b"a",
            b"a\n",
            b"\n\n",
            b"a\r\nb\nc",
            b"x\r",
            b"\r\n",
        ] {
            assert_eq!(
                stored_len(m),
                crate::normalize_line_endings(m).len(),
                "{m:?}"
            );
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert!(check_arg("a@b", "x").is_ok());
        assert!(check_arg("", "x").is_ok());
        assert!(check_arg("a@b>\r\nRSET", "x").is_err());
        assert!(check_arg(&"a".repeat(300), "x").is_err());
    }
}
