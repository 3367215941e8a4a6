//! One sync stream as frames: a byte stream, a bounded [`FrameDecoder`], and
//! the ways to reach a replica ([`Connector`]).
//!
//! Streams are boxed ([`BoxStream`]) so the same client and server code runs
//! over TLS on TCP in the service and over the simulated network of the
//! tests; a connector returns a [`Channel`]: the stream and its channel
//! binding. The
//! connection holds at most one frame plus one read of input (the decoder's
//! bound) and writes each frame whole before the next.

use crate::error::SyncError;
use crate::limits::{CONNECT_TIMEOUT, WRITE_TIMEOUT};
use crate::tls::Channel;
use slotmail_repl_proto::{
    FRAME_LEN_MAX, Frame, FrameDecoder, READ_CHUNK_BYTES, encode_frame, try_encode_frame,
};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a sync connection runs over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A future returned by a [`Connector`].
pub type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<Channel>> + Send>>;

/// How the master reaches one replica: opens a new channel per call.
pub trait Connector: Send + Sync + 'static {
    /// Open a stream to the replica (TLS established).
    fn connect(&self) -> ConnectFuture;
    /// The replica's address, for status and logs.
    fn describe(&self) -> String;
}

/// Open a TCP connection within [`CONNECT_TIMEOUT`], with `TCP_NODELAY`.
pub async fn tcp_connect(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A replica reached over TLS on TCP.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    pub addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl TlsConnector {
    /// Reach the sync listener at `addr`.
    pub fn new(addr: SocketAddr) -> TlsConnector {
        TlsConnector {
            addr,
            tls: crate::tls::client_config(),
        }
    }
}

impl Connector for TlsConnector {
    fn connect(&self) -> ConnectFuture {
        let addr = self.addr;
        let tls = self.tls.clone();
        Box::pin(async move { crate::tls::connect(tcp_connect(addr).await?, tls).await })
    }

    fn describe(&self) -> String {
        self.addr.to_string()
    }
}

/// A shared connector.
pub type SharedConnector = Arc<dyn Connector>;

/// A stream of frames.
pub struct Conn {
    stream: BoxStream,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
    /// `buf[start..end]` was read but not yet taken by the decoder.
    start: usize,
    end: usize,
    /// Bytes read and written, for the status.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Conn {
    /// A connection still in its handshake (64 KiB frame limit).
    pub fn new(stream: BoxStream) -> Conn {
        Conn {
            stream,
            decoder: FrameDecoder::for_handshake(),
            buf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The handshake succeeded: accept frames up to 16 MiB.
    pub fn established(&mut self) {
        self.decoder.set_frame_len_max(FRAME_LEN_MAX);
    }

    /// Send one frame after checking it against the protocol's limits.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), SyncError> {
        let bytes = try_encode_frame(frame)?;
        self.write(&bytes).await
    }

    /// Send a frame without the size check (handshake and error frames we
    /// built ourselves, which are small).
    pub async fn send_unchecked(&mut self, frame: &Frame) -> Result<(), SyncError> {
        let bytes = encode_frame(frame);
        self.write(&bytes).await
    }

    /// Send frames already encoded (and checked) by the caller, in one
    /// write.
    pub async fn send_encoded(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        self.write(bytes).await
    }

    /// The next frame if one is buffered or can be read without waiting,
    /// else `None` (nothing is lost: reading is cancel-safe here, since the
    /// only await point is the stream's read).
    pub async fn try_recv(&mut self) -> Result<Option<Frame>, SyncError> {
        match tokio::time::timeout(Duration::ZERO, self.recv()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, io)
            .await
            .map_err(|_| SyncError::Timeout("a frame to be written"))??;
        self.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// The next frame, waiting at most `limit`.
    pub async fn recv_within(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Frame, SyncError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| SyncError::Timeout(what))?
    }

    /// The next frame. A decoding error is final: the caller tells the peer
    /// (`FrameError::to_frame`) and closes.
    pub async fn recv(&mut self) -> Result<Frame, SyncError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(frame);
            }
            if self.start < self.end {
                let taken = self.decoder.feed(&self.buf[self.start..self.end]);
                self.start += taken;
                if taken > 0 {
                    continue;
                }
                // The decoder's bound guarantees room once its frames are
                // taken out; no frame and no room means a broken invariant.
                return Err(SyncError::Closed);
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                self.decoder.finish()?;
                return Err(SyncError::Closed);
            }
            self.bytes_in += n as u64;
            self.start = 0;
            self.end = n;
        }
    }

    /// Close the write side (best effort).
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}
