//! The tokio shell around [`Session`]: listeners, connection limits, TLS
//! (implicit and STARTTLS), COMPRESS=DEFLATE, literal continuations, IDLE
//! wake-ups, the end of a deleted user's sessions (a removal notice from
//! the `Hub` runs `Session::account_check`, which says `* BYE
//! [UNAVAILABLE]`), timers and graceful shutdown.
//!
//! Each connection is one task. Commands run on a blocking thread
//! (`spawn_blocking`), since the session calls the store synchronously;
//! their output streams back through a small channel in chunks, so a FETCH
//! of many bodies is written while it is produced. Between commands a
//! connection holds a 4 KiB read buffer, an empty framer and the session's
//! compact mailbox view; buffers grown for a large literal are dropped as
//! soon as the command is done.

use crate::config::ImapConfig;
use crate::session::{Action, Context, Out, Outcome, Session, State};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use slotmail_imap_proto::{Framer, FramerEvent, Limits};
use slotmail_store::Slot;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Most bytes inflated in one step (COMPRESS input).
const INFLATE_STEP_BYTES: usize = 16 * 1024;

/// Serve IMAP until `shutdown` resolves: on `listener` (plaintext, with
/// STARTTLS when `starttls` is given) and, when `tls` is given, on an
/// implicit-TLS listener. Installs the slot's change listener (so IDLE
/// wakes on every committed change); use [`serve_with_context`] to share
/// the listener with something else. On shutdown, stops accepting, says
/// `* BYE` to every connection between commands and returns once they are
/// closed (or after `timeouts.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    starttls: Option<Arc<rustls::ServerConfig>>,
    slot: Arc<Slot>,
    config: ImapConfig,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Context::new(slot.clone(), config);
    let hub = ctx.hub.clone();
    slot.add_change_listener(Arc::new(move |user: &str, modseq: u64| {
        hub.notify(user, modseq)
    }));
    serve_with_context(listener, tls, starttls, ctx, shutdown).await;
}

/// [`serve`] with a prepared [`Context`]; the caller feeds
/// `ctx.hub.notify(user, modseq)` from the store's change listener.
pub async fn serve_with_context(
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    starttls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let cancel = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(ctx.config.limits.connections_max));
    let mut tasks = JoinSet::new();
    let (tls_listener, tls_config) = match tls {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, implicit_tls) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((s, p)) => (s, p, false),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            r = accept_optional(tls_listener.as_ref()) => match r {
                Ok((s, p)) => (s, p, true),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "IMAP: connection limit reached, refusing");
            if !implicit_tls {
                tasks.spawn(refuse(stream));
            }
            continue;
        };
        let conn = Connection::new(stream, peer, ctx.clone(), starttls.clone(), cancel.clone());
        let tls_config = if implicit_tls {
            tls_config.clone()
        } else {
            None
        };
        tasks.spawn(async move {
            let _permit = permit;
            conn.run(tls_config).await;
        });
    }
    tracing::info!(connections = tasks.len(), "IMAP: shutting down");
    cancel.cancel();
    let grace = ctx.config.timeouts.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "IMAP: connections still busy after the shutdown grace, closing them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

async fn accept_optional(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_failed(e: io::Error) {
    tracing::warn!(cause = %e, "IMAP: accept failed");
    // Out of file descriptors and the like: do not spin.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn refuse(mut stream: TcpStream) {
    let bye = b"* BYE Too many connections, try again later\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(bye)).await;
}

/// The byte stream under the IMAP session.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

/// COMPRESS=DEFLATE state (RFC 4978): raw deflate both ways.
struct Deflate {
    inflate: Decompress,
    deflate: Compress,
    /// Compressed input not inflated yet.
    input: Vec<u8>,
    /// The last step produced output and more may follow without reading.
    more: bool,
}

/// The socket side of a connection: transport, compression, read buffer.
struct Conn {
    io: Transport,
    deflate: Option<Box<Deflate>>,
    rbuf: Vec<u8>,
    small: usize,
    large: usize,
    write_timeout: Duration,
}

impl Conn {
    async fn read(&mut self, room: usize) -> io::Result<usize> {
        let n = self.rbuf.len().min(room.max(1));
        let buf = &mut self.rbuf[..n];
        match &mut self.io {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
            Transport::Closed => Ok(0),
        }
    }

    /// Hand `n` freshly read bytes to the framer (inflating if needed).
    fn feed(&mut self, n: usize, framer: &mut Framer) -> io::Result<()> {
        match self.deflate.as_mut() {
            None => framer.feed(&self.rbuf[..n]).map_err(io::Error::other),
            Some(d) => {
                d.input.extend_from_slice(&self.rbuf[..n]);
                self.inflate_step(framer)
            }
        }
    }

    /// Whether inflated input may be available without reading the socket.
    fn has_buffered_input(&self) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.more)
    }

    fn inflate_step(&mut self, framer: &mut Framer) -> io::Result<()> {
        let Some(d) = self.deflate.as_mut() else {
            return Ok(());
        };
        let room = framer.input_room().min(INFLATE_STEP_BYTES);
        if room == 0 {
            return Err(io::Error::other("input buffer full"));
        }
        let mut out = Vec::with_capacity(room);
        let before = d.inflate.total_in();
        let status = d
            .inflate
            .decompress_vec(&d.input, &mut out, FlushDecompress::Sync)
            .map_err(io::Error::other)?;
        let consumed = (d.inflate.total_in() - before) as usize;
        d.input.drain(..consumed);
        d.more = !out.is_empty() && (out.len() == room || !d.input.is_empty());
        if d.input.capacity() > 64 * 1024 && d.input.len() < 1024 {
            d.input.shrink_to(1024);
        }
        if status == Status::StreamEnd {
            d.more = false;
        }
        framer.feed(&out).map_err(io::Error::other)
    }

    fn start_deflate(&mut self, already_read: Vec<u8>) {
        self.deflate = Some(Box::new(Deflate {
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            more: !already_read.is_empty(),
            input: already_read,
        }));
    }

    /// Write (compressed if COMPRESS is on) and flush.
    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let compressed;
        let bytes = match self.deflate.as_mut() {
            None => data,
            Some(d) => {
                compressed = deflate_sync(&mut d.deflate, data)?;
                &compressed[..]
            }
        };
        let write = async {
            match &mut self.io {
                Transport::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Transport::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Transport::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
            }
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Use the large read buffer (a literal is coming).
    fn grow(&mut self) {
        if self.rbuf.len() < self.large {
            self.rbuf.resize(self.large, 0);
        }
    }

    /// Back to the small read buffer between commands.
    fn shrink(&mut self) {
        if self.rbuf.len() > self.small {
            self.rbuf = vec![0; self.small];
        }
    }

    async fn close(&mut self) {
        match std::mem::replace(&mut self.io, Transport::Closed) {
            Transport::Plain(mut s) => {
                let _ = s.shutdown().await;
            }
            Transport::Tls(mut s) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
            }
            Transport::Closed => {}
        }
    }
}

/// Deflate `data` and sync-flush (RFC 4978 §4: every response batch is
/// flushed so the client can read it).
fn deflate_sync(z: &mut Compress, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(data.len().max(4096));
        }
        let before = z.total_in();
        z.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        consumed += (z.total_in() - before) as usize;
        if consumed == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// One client connection.
struct Connection {
    conn: Conn,
    framer: Framer,
    session: Option<Box<Session>>,
    changes: Option<watch::Receiver<u64>>,
    /// Removal notices of the logged-in user (see `Hub`).
    removals: Option<watch::Receiver<u64>>,
    ctx: Arc<Context>,
    starttls: Option<Arc<rustls::ServerConfig>>,
    cancel: CancellationToken,
    peer: SocketAddr,
}

fn framer_limits(config: &ImapConfig) -> Limits {
    Limits {
        max_line_bytes: config.limits.line_bytes_max,
        max_command_bytes: config.limits.command_bytes_max,
        max_literal_bytes: config.limits.literal_bytes_max,
        max_non_sync_literal_bytes: config.limits.literal_bytes_max,
        ..Limits::default()
    }
}

impl Connection {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        ctx: Arc<Context>,
        starttls: Option<Arc<rustls::ServerConfig>>,
        cancel: CancellationToken,
    ) -> Connection {
        let limits = &ctx.config.limits;
        Connection {
            conn: Conn {
                io: Transport::Plain(stream),
                deflate: None,
                rbuf: vec![0; limits.read_buffer_bytes.max(512)],
                small: limits.read_buffer_bytes.max(512),
                large: limits
                    .literal_read_buffer_bytes
                    .max(limits.read_buffer_bytes.max(512)),
                write_timeout: ctx.config.timeouts.write,
            },
            framer: Framer::new(framer_limits(&ctx.config)),
            session: None,
            changes: None,
            removals: None,
            ctx,
            starttls,
            cancel,
            peer,
        }
    }

    async fn run(mut self, implicit_tls: Option<Arc<rustls::ServerConfig>>) {
        let peer = self.peer;
        if let Some(config) = implicit_tls
            && !self.upgrade(config).await
        {
            tracing::debug!(%peer, "IMAP: TLS handshake failed");
            return;
        }
        let tls = matches!(self.conn.io, Transport::Tls(_));
        let mut session = Session::new(self.ctx.clone(), tls, self.starttls.is_some() && !tls);
        session.set_peer(peer.ip());
        let mut out = Out::new();
        session.greeting(&mut out);
        self.session = Some(Box::new(session));
        tracing::debug!(%peer, tls, "IMAP connection");
        let result = match self.conn.send(&out).await {
            Ok(()) => self.serve().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!(%peer, cause = %e, "IMAP connection ended");
        }
        self.conn.close().await;
    }

    /// TLS handshake on the plain stream.
    async fn upgrade(&mut self, config: Arc<rustls::ServerConfig>) -> bool {
        let Transport::Plain(tcp) = std::mem::replace(&mut self.conn.io, Transport::Closed) else {
            return false;
        };
        let acceptor = TlsAcceptor::from(config);
        match tokio::time::timeout(self.ctx.config.timeouts.tls_handshake, acceptor.accept(tcp))
            .await
        {
            Ok(Ok(stream)) => {
                self.conn.io = Transport::Tls(Box::new(stream));
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, cause = %e, "IMAP: TLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("the session is home between commands")
    }

    /// Write `* BYE text` and end the session.
    async fn bye(&mut self, text: &str) {
        let mut out = Out::new();
        self.session().bye(text, &mut out);
        let _ = self.conn.send(&out).await;
    }

    /// Run `f` on the session on a blocking thread, streaming its output.
    async fn run_session<F>(&mut self, f: F) -> io::Result<Outcome>
    where
        F: FnOnce(&mut Session, &mut Out) -> Outcome + Send + 'static,
    {
        if let Some(rx) = self.changes.as_mut() {
            // Changes from now on wake a following IDLE.
            rx.borrow_and_update();
        }
        let mut session = self
            .session
            .take()
            .expect("the session is home between commands");
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
        let chunk = self.ctx.config.limits.output_chunk_bytes;
        let task = tokio::task::spawn_blocking(move || {
            let mut out = Out::streaming(chunk, move |bytes| tx.blocking_send(bytes).is_ok());
            let outcome = f(&mut session, &mut out);
            let rest = out.take();
            (session, outcome, rest)
        });
        let mut write_error = None;
        while let Some(bytes) = rx.recv().await {
            if write_error.is_none()
                && let Err(e) = self.conn.send(&bytes).await
            {
                write_error = Some(e);
                rx.close();
            }
        }
        let (session, outcome, rest) = match task.await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(peer = %self.peer, cause = %e, "IMAP: session failed");
                return Err(io::Error::other("session failed"));
            }
        };
        if self.changes.is_none() {
            self.changes = session.changes();
            self.removals = session.removals();
        }
        self.session = Some(session);
        if let Some(e) = write_error {
            return Err(e);
        }
        if let Some(delay) = outcome.delay {
            tokio::time::sleep(delay).await;
        }
        self.conn.send(&rest).await?;
        Ok(outcome)
    }

    /// The main loop: frame input, run commands, wait with timeouts.
    async fn serve(&mut self) -> io::Result<()> {
        loop {
            while let Some(event) = self.framer.next_event() {
                if !self.event(event).await? {
                    return Ok(());
                }
            }
            if self.framer.is_closed() {
                return Ok(());
            }
            if self.conn.has_buffered_input() {
                self.conn.inflate_step(&mut self.framer)?;
                continue;
            }
            if !self.framer.in_command() {
                self.conn.shrink();
                if self.framer.pending_input() == 0 && !self.session().awaiting_auth_data() {
                    // Drop whatever the last command made the framer grow.
                    self.framer = Framer::new(framer_limits(&self.ctx.config));
                }
            }
            let timeout = match self.session().state() {
                State::NotAuthenticated => self.ctx.config.timeouts.preauth,
                _ => self.ctx.config.timeouts.authenticated,
            };
            let room = self.framer.input_room();
            tokio::select! {
                r = self.conn.read(room) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.conn.feed(n, &mut self.framer)?;
                }
                () = changed(&mut self.removals) => {
                    // The user's account may be gone (deleted, moved away):
                    // the session says BYE [UNAVAILABLE] if it is.
                    let outcome = self.run_session(|s, out| s.account_check(out)).await?;
                    if outcome.action == Action::Close {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(timeout) => {
                    self.bye("Autologout; idle for too long").await;
                    return Ok(());
                }
                _ = self.cancel.cancelled() => {
                    self.bye("Server shutting down").await;
                    return Ok(());
                }
            }
        }
    }

    /// Handle one framer event; false when the connection must close.
    async fn event(&mut self, event: FramerEvent) -> io::Result<bool> {
        match event {
            FramerEvent::LiteralAnnounced {
                tag, size, sync, ..
            } => {
                match self.session().check_literal(tag.as_ref(), size) {
                    Ok(()) => {
                        if size > self.conn.small as u64 {
                            self.conn.grow();
                        }
                        if sync {
                            self.framer.accept_literal();
                            self.conn.send(b"+ Ready for literal data\r\n").await?;
                        }
                    }
                    Err(refusal) => {
                        self.framer.reject_literal();
                        self.conn.send(&refusal).await?;
                    }
                }
                Ok(true)
            }
            FramerEvent::Command(frame) => {
                let outcome = self
                    .run_session(move |s, out| s.handle(&frame, out))
                    .await?;
                self.after(outcome).await
            }
            FramerEvent::RawLine(line) => {
                let outcome = self
                    .run_session(move |s, out| s.auth_data(&line, out))
                    .await?;
                self.after(outcome).await
            }
            FramerEvent::Error(e) => {
                let mut out = Out::new();
                let outcome = self.session().framing_error(&e, &mut out);
                self.conn.send(&out).await?;
                Ok(outcome.action != Action::Close)
            }
        }
    }

    /// Carry out what the session asked for; false when closing.
    async fn after(&mut self, outcome: Outcome) -> io::Result<bool> {
        match outcome.action {
            Action::None => Ok(true),
            Action::Close => Ok(false),
            Action::AuthContinue => {
                if !self.framer.expect_raw_line() {
                    // Only possible if the client sent data before the "+".
                    let outcome = self.run_session(|s, out| s.auth_data(b"*", out)).await?;
                    return Ok(outcome.action != Action::Close);
                }
                Ok(true)
            }
            Action::StartTls => {
                let dropped = self.framer.discard_pending_input();
                if dropped > 0 {
                    tracing::debug!(peer = %self.peer, dropped, "IMAP: plaintext after STARTTLS dropped");
                }
                let Some(config) = self.starttls.clone() else {
                    return Ok(false);
                };
                if !self.upgrade(config).await {
                    return Ok(false);
                }
                self.session().tls_started();
                Ok(true)
            }
            Action::Compress => {
                let pending = self.framer.take_pending_input();
                self.conn.start_deflate(pending);
                Ok(true)
            }
            Action::Idle => self.idle().await,
        }
    }

    /// IDLE: wait for DONE, report changes as they happen.
    async fn idle(&mut self) -> io::Result<bool> {
        if !self.framer.expect_raw_line() {
            // Only possible if the client sent data before "+ idling".
            let outcome = self.run_session(|s, out| s.idle_done(b"", out)).await?;
            return Ok(outcome.action != Action::Close);
        }
        let deadline = tokio::time::Instant::now() + self.ctx.config.timeouts.idle;
        loop {
            while let Some(event) = self.framer.next_event() {
                let line = match event {
                    FramerEvent::RawLine(line) => line,
                    // A line too long to be DONE.
                    FramerEvent::Error(_) => b"(line too long)".to_vec(),
                    FramerEvent::Command(_) | FramerEvent::LiteralAnnounced { .. } => continue,
                };
                let outcome = self
                    .run_session(move |s, out| s.idle_done(&line, out))
                    .await?;
                // DONE ends in a tagged reply: go on, or close after BYE.
                return Ok(outcome.action != Action::Close);
            }
            if self.framer.is_closed() {
                return Ok(false);
            }
            if self.conn.has_buffered_input() {
                self.conn.inflate_step(&mut self.framer)?;
                continue;
            }
            let room = self.framer.input_room();
            tokio::select! {
                r = self.conn.read(room) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(false);
                    }
                    self.conn.feed(n, &mut self.framer)?;
                }
                () = changed(&mut self.changes) => {
                    let outcome = self.run_session(|s, out| s.idle_poll(out)).await?;
                    if outcome.action == Action::Close {
                        return Ok(false);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.bye("Autologout; IDLE for too long").await;
                    return Ok(false);
                }
                _ = self.cancel.cancelled() => {
                    self.bye("Server shutting down").await;
                    return Ok(false);
                }
            }
        }
    }
}

/// Resolves when the watched value changed (never without a receiver).
async fn changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_round_trip_with_sync_flushes() {
        let mut z = Compress::new(Compression::default(), false);
        let mut d = Decompress::new(false);
        let mut all = Vec::new();
        for i in 0..50 {
            let msg = format!("* {i} FETCH (FLAGS (\\Seen))\r\n").repeat(i + 1);
            let packed = deflate_sync(&mut z, msg.as_bytes()).unwrap();
            // Each batch can be inflated completely on its own (sync flush).
            let mut out = Vec::with_capacity(msg.len() + 64);
            d.decompress_vec(&packed, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, msg.as_bytes());
            all.extend_from_slice(&packed);
        }
        assert!(!all.is_empty());
        let big = vec![b'x'; 1 << 20];
        let packed = deflate_sync(&mut z, &big).unwrap();
        let mut out = Vec::with_capacity(big.len() + 64);
        d.decompress_vec(&packed, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out.len(), big.len());
    }
}
