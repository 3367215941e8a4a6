//! The byte stream under the client: TCP or TLS, optionally DEFLATE
//! compressed (RFC 4978), feeding a [`ResponseReader`].
//!
//! Every read and write runs under two deadlines: the per-I/O progress
//! limit and the deadline of the operation in progress (set by
//! [`Transport::begin`]). Reads are cancel-safe: bytes are handed to the
//! reader synchronously after a read returns, so an expired `IDLE` wait
//! loses nothing.

use std::sync::Arc;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use slotmail_imap_proto::{Response, ResponseError, ResponseLimits, ResponseReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};

/// `now + d`, saturating far in the future instead of overflowing (for
/// options such as `Duration::MAX`).
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The socket, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Taken out during a STARTTLS handshake that failed.
    Gone,
}

/// Both directions of a `COMPRESS DEFLATE` layer (raw deflate, no zlib
/// header).
struct Deflate {
    inflate: Decompress,
    deflate: Compress,
    /// Compressed bytes read but not yet inflated.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The last inflate filled its output buffer: more output may be held
    /// inside the inflater even with no input left.
    output_pending: bool,
}

/// Which deadline bounds a wait.
#[derive(Debug, Clone, Copy)]
struct Operation {
    name: &'static str,
    deadline: Instant,
    limit: Duration,
    /// Waiting for news (IDLE): only `deadline` applies.
    wait: bool,
}

/// Socket plus response reader, with timeouts.
pub(crate) struct Transport {
    stream: Stream,
    reader: ResponseReader,
    deflate: Option<Box<Deflate>>,
    buf: Vec<u8>,
    io_timeout: Duration,
    op: Operation,
    /// The last timeout was the end of an IDLE wait.
    wait_expired: bool,
}

/// What [`Transport::next`] found.
pub(crate) enum Incoming {
    /// A parsed response.
    Response(Response),
    /// A well-framed response the parser did not understand.
    Unparsed {
        /// The parser's complaint.
        message: String,
        /// The response's first line.
        line: Vec<u8>,
    },
    /// The server closed the connection.
    Eof,
}

impl Transport {
    fn new(
        stream: Stream,
        limits: ResponseLimits,
        io_timeout: Duration,
        read_chunk_bytes: usize,
    ) -> Self {
        Transport {
            stream,
            reader: ResponseReader::new(limits),
            deflate: None,
            buf: vec![0; read_chunk_bytes.max(1)],
            io_timeout,
            op: Operation {
                name: "connect",
                deadline: deadline_after(io_timeout),
                limit: io_timeout,
                wait: false,
            },
            wait_expired: false,
        }
    }

    /// A plaintext transport.
    pub(crate) fn plain(
        tcp: TcpStream,
        limits: ResponseLimits,
        io_timeout: Duration,
        read_chunk_bytes: usize,
    ) -> Self {
        Transport::new(Stream::Plain(tcp), limits, io_timeout, read_chunk_bytes)
    }

    /// Starts an operation that must end within `limit`.
    pub(crate) fn begin(&mut self, name: &'static str, limit: Duration) {
        self.op = Operation {
            name,
            deadline: deadline_after(limit),
            limit,
            wait: false,
        };
    }

    /// The response reader (to switch its mailbox encoding).
    pub(crate) fn reader_mut(&mut self) -> &mut ResponseReader {
        &mut self.reader
    }

    /// The deadline of the next I/O step and the limit it stands for.
    fn step_deadline(&self) -> (Instant, Duration) {
        if self.op.wait {
            return (self.op.deadline, self.op.limit);
        }
        let io_deadline = deadline_after(self.io_timeout);
        if io_deadline < self.op.deadline {
            (io_deadline, self.io_timeout)
        } else {
            (self.op.deadline, self.op.limit)
        }
    }

    /// Waits until `deadline` at most for the next response: `Ok(None)`
    /// when it passes first. Used by IDLE, whose waits are bounded by
    /// neither the command nor the progress limit.
    pub(crate) async fn next_until(&mut self, deadline: Instant) -> Result<Option<Incoming>> {
        let saved = self.op;
        self.op = Operation {
            name: "IDLE",
            deadline,
            limit: deadline.saturating_duration_since(Instant::now()),
            wait: true,
        };
        self.wait_expired = false;
        let r = self.next().await;
        self.op = saved;
        match r {
            Err(Error::Timeout { .. }) if self.wait_expired => Ok(None),
            other => other.map(Some),
        }
    }

    /// The next response if one is complete in the buffer, without reading.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Incoming>> {
        match self.reader.next_response() {
            Some(Ok(r)) => Ok(Some(Incoming::Response(r))),
            Some(Err(ResponseError::Parse { message, line })) => {
                Ok(Some(Incoming::Unparsed { message, line }))
            }
            Some(Err(ResponseError::Framing(m))) => Err(Error::ResponseTooLarge(m)),
            None => Ok(None),
        }
    }

    /// The next response, reading as needed.
    pub(crate) async fn next(&mut self) -> Result<Incoming> {
        loop {
            if let Some(incoming) = self.next_buffered()? {
                return Ok(incoming);
            }
            if !self.fill().await? {
                return Ok(Incoming::Eof);
            }
        }
    }

    /// Reads once and feeds the reader; false at end of stream.
    async fn fill(&mut self) -> Result<bool> {
        loop {
            let room = self.reader.input_room().min(self.buf.len());
            if room == 0 {
                return Err(Error::ResponseTooLarge(
                    "response reader input buffer full".into(),
                ));
            }
            if let Some(d) = self.deflate.as_deref_mut() {
                if d.pending_pos < d.pending.len() || d.output_pending {
                    let before_in = d.inflate.total_in();
                    let before_out = d.inflate.total_out();
                    let status = d
                        .inflate
                        .decompress(
                            &d.pending[d.pending_pos..],
                            &mut self.buf[..room],
                            FlushDecompress::None,
                        )
                        .map_err(|e| {
                            Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                        })?;
                    let used = usize::try_from(d.inflate.total_in() - before_in)
                        .expect("inflate consumed more than it was given");
                    let made = usize::try_from(d.inflate.total_out() - before_out)
                        .expect("inflate wrote more than its buffer");
                    d.pending_pos += used;
                    d.output_pending = made == room;
                    if made > 0 {
                        self.reader
                            .feed(&self.buf[..made])
                            .map_err(|e| Error::ResponseTooLarge(e.to_string()))?;
                        return Ok(true);
                    }
                    if status == Status::StreamEnd {
                        return Ok(false);
                    }
                    if used > 0 {
                        continue;
                    }
                    // Neither consumed nor produced: more input is needed.
                    d.pending.drain(..d.pending_pos);
                    d.pending_pos = 0;
                }
                let n = self.read_step(None).await?;
                if n == 0 {
                    return Ok(false);
                }
                let d = self.deflate.as_deref_mut().expect("deflate layer present");
                if d.pending_pos == d.pending.len() {
                    d.pending.clear();
                    d.pending_pos = 0;
                }
                d.pending.extend_from_slice(&self.buf[..n]);
                continue;
            }
            let n = self.read_step(Some(room)).await?;
            if n == 0 {
                return Ok(false);
            }
            self.reader
                .feed(&self.buf[..n])
                .map_err(|e| Error::ResponseTooLarge(e.to_string()))?;
            return Ok(true);
        }
    }

    /// One socket read into `buf` (at most `max` bytes) under the step
    /// deadline.
    async fn read_step(&mut self, max: Option<usize>) -> Result<usize> {
        let (deadline, limit) = self.step_deadline();
        let len = max.unwrap_or(self.buf.len()).min(self.buf.len());
        let fut = read(&mut self.stream, &mut self.buf[..len]);
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => r.map_err(Error::Io),
            Err(_) => {
                self.wait_expired = self.op.wait;
                Err(Error::Timeout {
                    operation: self.op.name,
                    limit,
                })
            }
        }
    }

    /// Writes and flushes bytes (compressing them when COMPRESS is on).
    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<()> {
        let compressed;
        let bytes = match self.deflate.as_deref_mut() {
            Some(d) => {
                compressed = deflate_sync(&mut d.deflate, data)?;
                &compressed[..]
            }
            None => data,
        };
        let (deadline, limit) = self.step_deadline();
        let name = self.op.name;
        let stream = &mut self.stream;
        let write = async {
            match stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Gone => Err(gone()),
            }
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(r) => r.map_err(Error::Io),
            Err(_) => Err(Error::Timeout {
                operation: name,
                limit,
            }),
        }
    }

    /// Removes the bytes received after the last complete response.
    pub(crate) fn take_pending_input(&mut self) -> Vec<u8> {
        self.reader.take_pending_input()
    }

    /// Whether this transport runs over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Whether COMPRESS is active.
    pub(crate) fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Performs a TLS handshake over the plaintext socket (connect_tls and
    /// STARTTLS), within the current operation's deadline.
    pub(crate) async fn start_tls(
        &mut self,
        server_name: rustls::pki_types::ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<()> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.stream = other;
                return Err(Error::InvalidRequest(
                    "TLS is already active on this connection".into(),
                ));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let op = self.op;
        match tokio::time::timeout_at(op.deadline, connector.connect(server_name, tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => Err(Error::Io(e)),
            Err(_) => Err(Error::Timeout {
                operation: op.name,
                limit: op.limit,
            }),
        }
    }

    /// Turns DEFLATE on in both directions; `already_read` are the bytes
    /// that arrived after the tagged OK (already compressed).
    pub(crate) fn start_deflate(&mut self) {
        let already_read = self.reader.take_pending_input();
        self.deflate = Some(Box::new(Deflate {
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            pending: already_read,
            pending_pos: 0,
            output_pending: false,
        }));
    }

    /// Closes the write side (TLS close_notify, TCP FIN), ignoring errors:
    /// the session is over either way.
    pub(crate) async fn shutdown(&mut self) {
        let op = self.op;
        let stream = &mut self.stream;
        let fut = async {
            match stream {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
                Stream::Gone => Ok(()),
            }
        };
        let _ =
            tokio::time::timeout_at(op.deadline.min(deadline_after(self.io_timeout)), fut).await;
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the socket was lost in a failed TLS handshake",
    )
}

async fn read(stream: &mut Stream, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Stream::Plain(s) => s.read(buf).await,
        Stream::Tls(s) => s.read(buf).await,
        Stream::Gone => Err(gone()),
    }
}

/// Compresses `data` and ends with a sync flush so the server can inflate
/// everything sent so far.
fn deflate_sync(c: &mut Compress, data: &[u8]) -> Result<Vec<u8>> {
    let err =
        |e: flate2::CompressError| Error::Io(std::io::Error::other(format!("deflate failed: {e}")));
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut pos = 0;
    while pos < data.len() {
        out.reserve(data.len() - pos + 64);
        let before = c.total_in();
        c.compress_vec(&data[pos..], &mut out, FlushCompress::None)
            .map_err(err)?;
        pos += usize::try_from(c.total_in() - before).expect("deflate consumed more than given");
    }
    loop {
        out.reserve(256);
        c.compress_vec(&[], &mut out, FlushCompress::Sync)
            .map_err(err)?;
        if out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let far = deadline_after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(365 * 86_400));
        assert!(deadline_after(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn sync_flush_output_inflates_completely() {
        let mut c = Compress::new(Compression::default(), false);
        let mut d = Decompress::new(false);
        let mut got = Vec::new();
        for msg in [
            &b"A0001 NOOP\r\n"[..],
            &vec![b'x'; 100_000],
            b"A0002 LOGOUT\r\n",
        ] {
            let z = deflate_sync(&mut c, msg).unwrap();
            let mut out = vec![0; 200_000];
            let before = d.total_out();
            d.decompress(&z, &mut out, FlushDecompress::None).unwrap();
            let n = (d.total_out() - before) as usize;
            got.extend_from_slice(&out[..n]);
            assert!(got.ends_with(msg));
        }
    }
}
