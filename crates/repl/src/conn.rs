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
use crate::limits::{CONNECT_ATTEMPTS_MAX, CONNECT_RETRY_MAX, CONNECT_TIMEOUT, WRITE_TIMEOUT};
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
/// An attempt still hanging after [`CONNECT_RETRY_MAX`] (a machine that
/// answers nothing: its SYN is retried only after a second) is raced by a
/// fresh one, so a replica that comes back is reached at the reconnect
/// pace, not after the full timeout ([`race_connects`]).
pub async fn tcp_connect(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let stream = race_connects(
        || tokio::net::TcpStream::connect(addr),
        CONNECT_RETRY_MAX,
        CONNECT_ATTEMPTS_MAX,
        CONNECT_TIMEOUT,
    )
    .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Run `attempt` and, every `every` while no attempt has succeeded, a
/// fresh one beside those still pending (at most `most` at once: the
/// oldest is dropped for the new one). The first success wins and the
/// others are dropped. An attempt's error is returned once no attempt is
/// pending any more (a refused connection fails at once, as before);
/// after `limit` in all, `TimedOut`.
pub async fn race_connects<T, F, Fut>(
    mut attempt: F,
    every: Duration,
    most: usize,
    limit: Duration,
) -> std::io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    use std::task::Poll;
    assert!(most >= 1, "at least one connect attempt at a time");
    let deadline = tokio::time::Instant::now() + limit;
    let mut pending: std::collections::VecDeque<Pin<Box<Fut>>> =
        std::collections::VecDeque::with_capacity(most);
    pending.push_back(Box::pin(attempt()));
    let mut timer = Box::pin(tokio::time::sleep_until(
        (tokio::time::Instant::now() + every).min(deadline),
    ));
    std::future::poll_fn(|cx| {
        loop {
            let mut failed = None;
            let mut i = 0;
            while i < pending.len() {
                match pending[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(e)) => {
                        pending.remove(i);
                        failed = Some(e);
                    }
                    Poll::Pending => i += 1,
                }
            }
            if pending.is_empty() {
                let e = failed.expect("an attempt ended without a result");
                return Poll::Ready(Err(e));
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
            if pending.len() >= most {
                pending.pop_front();
            }
            pending.push_back(Box::pin(attempt()));
            timer.as_mut().reset((now + every).min(deadline));
        }
    })
    .await
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
    ///
    /// The read is polled once: a zero timeout would not do, since the
    /// timer fires on its next tick, about a millisecond later, and a
    /// window of bodies asks before every transfer.
    pub async fn try_recv(&mut self) -> Result<Option<Frame>, SyncError> {
        tokio::select! {
            biased;
            frame = self.recv() => frame.map(Some),
            () = std::future::ready(()) => Ok(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the attempts alive at once (started, not yet dropped).
    struct Alive(Arc<AtomicUsize>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// An attempt that hangs forever (a machine that answers nothing)
    /// unless `answers` says its number succeeds or fails at once.
    fn attempts(
        answers: impl Fn(usize) -> Option<std::io::Result<usize>> + Clone,
        started: Arc<AtomicUsize>,
        alive: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    ) -> impl FnMut() -> Pin<Box<dyn Future<Output = std::io::Result<usize>> + Send>> {
        move || {
            let n = started.fetch_add(1, Ordering::SeqCst) + 1;
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let guard = Alive(alive.clone());
            let answer = answers(n);
            Box::pin(async move {
                let _guard = guard;
                match answer {
                    Some(result) => result,
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn counters() -> [Arc<AtomicUsize>; 3] {
        [(); 3].map(|_| Arc::new(AtomicUsize::new(0)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_is_raced_by_a_fresh_one_that_wins() {
        let [started, alive, peak] = counters();
        let answers = |n: usize| (n == 3).then_some(Ok(n));
        let got = race_connects(
            attempts(answers, started.clone(), alive.clone(), peak.clone()),
            CONNECT_RETRY_MAX,
            CONNECT_ATTEMPTS_MAX,
            CONNECT_TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(got, 3, "the third attempt answered");
        assert_eq!(started.load(Ordering::SeqCst), 3);
        assert_eq!(alive.load(Ordering::SeqCst), 0, "the losers are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_attempts_are_bounded_and_time_out() {
        let [started, alive, peak] = counters();
        let started_at = tokio::time::Instant::now();
        let err = race_connects(
            attempts(|_| None, started.clone(), alive.clone(), peak.clone()),
            Duration::from_millis(150),
            4,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started_at.elapsed(), Duration::from_secs(5));
        // One at 0 ms, then one every 150 ms before the 5 s deadline.
        assert_eq!(started.load(Ordering::SeqCst), 34);
        assert_eq!(peak.load(Ordering::SeqCst), 4, "at most 4 at once");
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_attempt_fails_at_once_when_none_is_pending() {
        let [started, alive, peak] = counters();
        let started_at = tokio::time::Instant::now();
        let refused = |_| Some(Err(std::io::ErrorKind::ConnectionRefused.into()));
        let err = race_connects(
            attempts(refused, started.clone(), alive.clone(), peak.clone()),
            CONNECT_RETRY_MAX,
            CONNECT_ATTEMPTS_MAX,
            CONNECT_TIMEOUT,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(started_at.elapsed(), Duration::ZERO);
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_real_tcp_connect_still_reaches_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(tcp_connect(addr), listener.accept());
        let stream = connected.unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(accepted.unwrap().1, stream.local_addr().unwrap());
    }
}
