//! The IMAP shell: listeners, TLS, the pre-login conversation
//! ([`crate::preauth`]), the backend login ([`crate::backend`]) and the
//! relay.
//!
//! After login the proxy copies bytes both ways without looking at them
//! (so COMPRESS, IDLE and every extension pass through), through one
//! buffer of `relay_buffer_bytes` per direction. It ends the session when
//! either side closes, when the proxy shuts down, or when the session's
//! slot stops being its store's master: the client then gets
//! `* BYE [UNAVAILABLE]` and reconnects, and its next login goes to the new
//! master. The same holds when the slot ends the session first, as it does
//! for a user moved to another store (deleted there as the move's last
//! step) before the proxy's snapshot shows the switch: a slot's BYE then
//! passes (or is replaced by the proxy's when the master moved), and a
//! slot that closes without one makes the proxy read the directory at once
//! and say BYE [UNAVAILABLE] itself if the user's master moved or the user
//! is being moved. The client never gets two BYEs. A BYE is written only
//! where it cannot land inside another response (the last byte relayed
//! ended a line) and the stream is not compressed (a `COMPRESS` was never
//! sent); otherwise the connection is just closed, which clients treat the
//! same way.

use crate::backend::{self, BackendError, BackendSession, contains_ci};
use crate::config::Limits;
use crate::limits::{LoginThrottle, UserLease, UserSessions};
use crate::preauth::{Credentials, LoginFailure, PreAuth, PreAuthConfig, Step};
use crate::routes::{Binding, Routes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Size of the read buffer before login, in bytes.
const PREAUTH_READ_BYTES: usize = 4096;
/// Time allowed for a farewell line (`BYE`) to be written.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// What every IMAP connection shares.
pub struct ImapShared {
    /// The pre-login settings (TLS availability is per listener).
    pub preauth: PreAuthConfig,
    /// Limits.
    pub limits: Limits,
    /// Routing.
    pub routes: Arc<Routes>,
    /// Failed logins per client address.
    pub throttle: LoginThrottle,
    /// Sessions per user.
    pub users: UserSessions,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Client connections at once.
    pub connections: Arc<Semaphore>,
    /// Cancelled when the proxy shuts down.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for ImapShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapShared")
            .field("preauth", &self.preauth)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Accept IMAP connections on `listener` until shutdown; `implicit_tls`
/// for the TLS port.
pub async fn serve(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<ImapShared>,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(cause = %e, "IMAP proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "IMAP proxy: connection limit reached");
            // One non-blocking write and close: a flood costs no task.
            let _ =
                stream.try_write(b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n");
            continue;
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            connection(stream, peer, implicit_tls, &shared).await;
            drop(permit);
        });
    }
}

/// How the pre-login phase ended.
enum Pre<S> {
    StartTls(S),
    Session(Box<Session<S>>),
    Closed,
}

/// A logged-in client and its backend.
struct Session<S> {
    client: S,
    backend: BackendSession,
    /// Client bytes received after its login command.
    pending: Vec<u8>,
    binding: Binding,
    _lease: UserLease,
}

async fn connection(tcp: TcpStream, peer: SocketAddr, implicit_tls: bool, shared: &ImapShared) {
    let _ = tcp.set_nodelay(true);
    let mut config = shared.preauth.clone();
    config.starttls_available = shared.tls.is_some();
    let mut pre = PreAuth::new(config, implicit_tls);
    if implicit_tls {
        let Some(tls) = handshake(tcp, peer, shared).await else {
            return;
        };
        pre.greeting();
        if let Pre::Session(s) = preauth(tls, &mut pre, peer, shared).await {
            relay(*s, peer, shared).await;
        }
        return;
    }
    pre.greeting();
    match preauth(tcp, &mut pre, peer, shared).await {
        Pre::StartTls(tcp) => {
            let Some(tls) = handshake(tcp, peer, shared).await else {
                return;
            };
            pre.tls_started();
            if let Pre::Session(s) = preauth(tls, &mut pre, peer, shared).await {
                relay(*s, peer, shared).await;
            }
        }
        Pre::Session(s) => relay(*s, peer, shared).await,
        Pre::Closed => {}
    }
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &ImapShared,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = shared.tls.as_ref()?;
    match tokio::time::timeout(shared.limits.tls_handshake_timeout(), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, cause = %e, "IMAP proxy: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "IMAP proxy: TLS handshake timed out");
            None
        }
    }
}

/// Write everything `pre` has queued; false when the client is gone.
async fn flush_pre<S: AsyncWrite + Unpin>(
    stream: &mut S,
    pre: &mut PreAuth,
    limits: &Limits,
) -> bool {
    if pre.output().is_empty() {
        return true;
    }
    let write = async {
        stream.write_all(pre.output()).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limits.client_write_timeout(), write).await {
        Ok(Ok(())) => {
            let n = pre.output().len();
            pre.consume_output(n);
            true
        }
        _ => false,
    }
}

async fn farewell<S: AsyncWrite + Unpin>(stream: &mut S, line: &[u8]) {
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        stream.write_all(line).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

async fn preauth<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    pre: &mut PreAuth,
    peer: SocketAddr,
    shared: &ImapShared,
) -> Pre<S> {
    let mut buf = [0u8; PREAUTH_READ_BYTES];
    loop {
        let step = pre.step();
        if !flush_pre(&mut stream, pre, &shared.limits).await {
            return Pre::Closed;
        }
        match step {
            Step::Read => {
                let room = pre.input_room().min(buf.len());
                assert!(room > 0, "the pre-login framer holds a full buffer");
                let read = tokio::select! {
                    _ = shared.shutdown.cancelled() => {
                        farewell(&mut stream, b"* BYE [UNAVAILABLE] Proxy shutting down\r\n").await;
                        return Pre::Closed;
                    }
                    r = tokio::time::timeout(shared.limits.preauth_idle_timeout(), stream.read(&mut buf[..room])) => r,
                };
                match read {
                    Err(_) => {
                        farewell(&mut stream, b"* BYE Idle for too long\r\n").await;
                        return Pre::Closed;
                    }
                    Ok(Ok(0)) | Ok(Err(_)) => return Pre::Closed,
                    Ok(Ok(n)) => pre
                        .receive(&buf[..n])
                        .expect("read no more than the framer's room"),
                }
            }
            Step::StartTls => return Pre::StartTls(stream),
            Step::Close => {
                let _ = tokio::time::timeout(FAREWELL_TIMEOUT, stream.shutdown()).await;
                return Pre::Closed;
            }
            Step::Login(creds) => match login(&creds, peer, shared, pre.is_tls()).await {
                Ok((backend, binding, lease)) => {
                    let pending = pre.login_succeeded();
                    let mut out = backend.untagged.clone();
                    out.extend_from_slice(creds.tag.as_str().as_bytes());
                    out.extend_from_slice(&backend.tagged_rest);
                    let write = async {
                        stream.write_all(&out).await?;
                        stream.flush().await
                    };
                    match tokio::time::timeout(shared.limits.client_write_timeout(), write).await {
                        Ok(Ok(())) => {}
                        _ => return Pre::Closed,
                    }
                    return Pre::Session(Box::new(Session {
                        client: stream,
                        backend,
                        pending,
                        binding,
                        _lease: lease,
                    }));
                }
                Err((failure, delay)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    pre.login_failed(&creds.tag, failure);
                }
            },
        }
    }
}

/// Route and log in; on failure what to tell the client and how long to
/// wait before telling it.
async fn login(
    creds: &Credentials,
    peer: SocketAddr,
    shared: &ImapShared,
    tls: bool,
) -> Result<(BackendSession, Binding, UserLease), (LoginFailure, Duration)> {
    let ip = peer.ip();
    let user = creds.mailbox_user();
    if !shared.throttle.allowed(ip, Instant::now()) {
        tracing::warn!(%peer, user, "IMAP proxy: login refused, too many failures from the address");
        return Err((LoginFailure::Throttled, Duration::ZERO));
    }
    let binding = match shared.routes.route(user).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            // Answered like a wrong password: no telling who exists.
            tracing::info!(%peer, user, "IMAP proxy: login for an unknown user");
            let delay = shared.throttle.failed(ip, Instant::now());
            return Err((LoginFailure::Credentials, delay));
        }
        Err(e) => {
            tracing::error!(user, cause = %e, "IMAP proxy: directory lookup failed");
            return Err((
                LoginFailure::Unavailable("Directory unavailable; try again later".into()),
                Duration::ZERO,
            ));
        }
    };
    let Some(lease) = shared.users.acquire(user) else {
        tracing::warn!(user, "IMAP proxy: too many sessions for the user");
        return Err((LoginFailure::UserLimit, Duration::ZERO));
    };
    let started = Instant::now();
    match backend::login(
        binding.imap,
        creds,
        shared.limits.backend_connect_timeout(),
        shared.limits.backend_login_timeout(),
    )
    .await
    {
        Ok(session) => {
            tracing::info!(
                %peer, user, store = %binding.store, slot = %binding.slot, epoch = binding.epoch,
                tls, ms = started.elapsed().as_millis() as u64, "IMAP proxy: login"
            );
            Ok((session, binding, lease))
        }
        Err(e) => {
            let failure = match &e {
                BackendError::Auth { .. } => {
                    tracing::info!(%peer, user, slot = %binding.slot, "IMAP proxy: authentication failed");
                    let delay = shared.throttle.failed(ip, Instant::now());
                    return Err((LoginFailure::Credentials, delay));
                }
                BackendError::Refusal { rest, .. } => LoginFailure::Backend(rest.clone()),
                _ => LoginFailure::Unavailable(format!(
                    "Mail store temporarily unavailable ({}); try again shortly",
                    e.kind()
                )),
            };
            tracing::warn!(
                user, store = %binding.store, slot = %binding.slot, kind = e.kind(), cause = %e,
                "IMAP proxy: backend login failed"
            );
            Err((failure, Duration::ZERO))
        }
    }
}

/// Why a relayed session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// One side closed or failed.
    Closed,
    /// The slot is no longer the master of the user's store, or the user
    /// is in another store now.
    MasterMoved,
    /// The backend ended the session while the user is being moved to
    /// another store (`ctl user move`), before the switch.
    Moving,
    /// The proxy is shutting down.
    Shutdown,
}

async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    session: Session<S>,
    peer: SocketAddr,
    shared: &ImapShared,
) {
    let Session {
        client,
        backend,
        pending,
        binding,
        _lease,
    } = session;
    let (client_r, client_w) = tokio::io::split(client);
    let (backend_r, mut backend_w) = backend.stream.into_split();
    let write_timeout = shared.limits.client_write_timeout();
    if !pending.is_empty() {
        let sent = tokio::time::timeout(write_timeout, backend_w.write_all(&pending)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
    let stop = CancellationToken::new();
    let mut topology = shared.routes.subscribe();
    let watch = async {
        if !binding.still_current(&topology.borrow_and_update()) {
            stop.cancel();
            return End::MasterMoved;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return End::Closed,
                _ = shared.shutdown.cancelled() => {
                    stop.cancel();
                    return End::Shutdown;
                }
                r = topology.changed() => {
                    if r.is_err() {
                        return End::Closed;
                    }
                    if !binding.still_current(&topology.borrow_and_update()) {
                        stop.cancel();
                        return End::MasterMoved;
                    }
                }
            }
        }
    };
    let size = shared.limits.relay_buffer_bytes;
    let compressed_flag = AtomicBool::new(false);
    let up = pump_up(
        client_r,
        backend_w,
        size,
        write_timeout,
        &stop,
        &compressed_flag,
    );
    let moved = MovedCheck {
        routes: &shared.routes,
        binding: &binding,
    };
    let down = pump_down(
        backend_r,
        client_w,
        backend.leftover,
        size,
        write_timeout,
        &stop,
        &compressed_flag,
        moved,
    );
    let (up, down, watched) = tokio::join!(up, down, watch);
    let (compressed, up_bytes) = up;
    let Down {
        writer: mut client_w,
        clean,
        bytes: down_bytes,
        bye_last,
        end: down_end,
    } = down;
    // What the relay found out when the backend spoke BYE or ended wins
    // over the watcher's "closed".
    let end = down_end.unwrap_or(watched);
    let bye: Option<&[u8]> = match end {
        // The client has its BYE already (the slot's, or ours in its place).
        _ if bye_last => None,
        End::MasterMoved => Some(MOVED_BYE),
        End::Moving => Some(MOVING_BYE),
        End::Shutdown => Some(b"* BYE [UNAVAILABLE] Proxy shutting down; please reconnect\r\n"),
        End::Closed => None,
    };
    match bye {
        Some(line) if clean && !compressed => farewell(&mut client_w, line).await,
        _ => {
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client_w.shutdown()).await;
        }
    }
    tracing::info!(
        %peer, user = %binding.user, slot = %binding.slot, ?end,
        bytes_in = up_bytes, bytes_out = down_bytes, "IMAP proxy: session ended"
    );
}

/// Client → backend. Returns whether the client may have started
/// compression, and the bytes relayed.
async fn pump_up<R, W>(
    mut r: R,
    mut w: W,
    size: usize,
    write_timeout: Duration,
    stop: &CancellationToken,
    compressed_flag: &AtomicBool,
) -> (bool, u64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    const WORD: &[u8] = b"COMPRESS";
    let mut buf = vec![0u8; size];
    let mut compressed = false;
    let mut tail: Vec<u8> = Vec::with_capacity(2 * WORD.len());
    let mut total = 0u64;
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => { stop.cancel(); break; }
                Ok(n) => n,
            },
        };
        let chunk = &buf[..n];
        if !compressed {
            // The word may straddle two reads: look at the seam too.
            tail.extend_from_slice(&chunk[..n.min(WORD.len())]);
            compressed = contains_ci(chunk, WORD) || contains_ci(&tail, WORD);
            compressed_flag.store(compressed, Ordering::Relaxed);
            tail.clear();
            tail.extend_from_slice(&chunk[n.saturating_sub(WORD.len() - 1)..]);
        }
        let write = tokio::time::timeout(write_timeout, w.write_all(chunk));
        tokio::select! {
            _ = stop.cancelled() => break,
            r = write => if !matches!(r, Ok(Ok(()))) { stop.cancel(); break; },
        }
        total += n as u64;
    }
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, w.shutdown()).await;
    (compressed, total)
}

/// How the backend → client direction ended.
struct Down<W> {
    /// The client's writer.
    writer: W,
    /// The last byte written ended a line, and nothing was cut short.
    clean: bool,
    /// Bytes relayed.
    bytes: u64,
    /// The last line the client got is a `* BYE` (the slot's or ours).
    bye_last: bool,
    /// Why the session ended, when the relay found out itself: the slot
    /// said BYE or closed while the directory says the user's master
    /// moved or the user is in a move.
    end: Option<End>,
}

/// Backend → client, starting with `first`.
///
/// A slot's `* BYE` is replaced by the proxy's `BYE [UNAVAILABLE]` when the
/// directory says the master moved. When the slot closes without a BYE
/// (it deleted the moved user before this proxy saw the switch), the
/// directory is read at once: if the user's master moved or the user is
/// being moved, `end` says so and the caller says BYE [UNAVAILABLE].
#[allow(clippy::too_many_arguments)]
async fn pump_down<R, W>(
    mut r: R,
    mut w: W,
    first: Vec<u8>,
    size: usize,
    write_timeout: Duration,
    stop: &CancellationToken,
    compressed: &AtomicBool,
    moved: MovedCheck<'_>,
) -> Down<W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = first;
    let mut n = buf.len();
    buf.resize(size.max(n), 0);
    let mut clean = true;
    let mut total = 0u64;
    let mut bye_last = false;
    let mut end = None;
    loop {
        if n > 0 {
            // A slot says BYE when it shuts down, as it does when it stops
            // being master: if the directory says the master moved, the
            // client gets the proxy's BYE [UNAVAILABLE] instead.
            let mut replaced = false;
            if clean
                && starts_with_bye(&buf[..n])
                && !compressed.load(Ordering::Relaxed)
                && moved.check().await == Some(End::MasterMoved)
            {
                buf.clear();
                buf.extend_from_slice(MOVED_BYE);
                n = buf.len();
                replaced = true;
                end = Some(End::MasterMoved);
            }
            let chunk = &buf[..n];
            let write = tokio::time::timeout(write_timeout, async {
                w.write_all(chunk).await?;
                w.flush().await
            });
            tokio::select! {
                _ = stop.cancelled() => { clean = false; break; }
                r = write => if !matches!(r, Ok(Ok(()))) {
                    clean = false;
                    stop.cancel();
                    break;
                },
            }
            bye_last = last_line_is_bye(chunk, clean);
            clean = chunk.ends_with(b"\r\n");
            total += n as u64;
            if replaced {
                stop.cancel();
                break;
            }
        }
        n = tokio::select! {
            _ = stop.cancelled() => break,
            r = r.read(&mut buf[..size]) => match r {
                Ok(0) | Err(_) => {
                    // The slot ended the session without a BYE: a user it
                    // no longer serves (moved away) still gets one.
                    if clean && !bye_last && !compressed.load(Ordering::Relaxed) {
                        end = moved.check().await;
                    }
                    stop.cancel();
                    break;
                }
                Ok(n) => n,
            },
        };
    }
    Down {
        writer: w,
        clean,
        bytes: total,
        bye_last,
        end,
    }
}

/// Whether `chunk` starts with an untagged BYE.
fn starts_with_bye(chunk: &[u8]) -> bool {
    const BYE: &[u8] = b"* BYE ";
    chunk.len() >= BYE.len() && chunk[..BYE.len()].eq_ignore_ascii_case(BYE)
}

/// Whether the last complete line of `chunk` is an untagged BYE;
/// `at_line_start`: the chunk begins a line. Only the chunk's own bytes
/// are looked at (the relay keeps no parse state): a BYE split across two
/// reads, or a literal's last line that reads like one, is taken as what
/// it looks like in this chunk, which at worst costs the client the
/// proxy's own BYE.
fn last_line_is_bye(chunk: &[u8], at_line_start: bool) -> bool {
    let Some(body) = chunk.strip_suffix(b"\r\n") else {
        return false;
    };
    match body.windows(2).rposition(|w| w == b"\r\n") {
        Some(i) => starts_with_bye(&body[i + 2..]),
        None => at_line_start && starts_with_bye(body),
    }
}

/// The BYE for sessions whose slot stopped being master.
const MOVED_BYE: &[u8] = b"* BYE [UNAVAILABLE] Your mail store moved; please reconnect\r\n";

/// The BYE for sessions that a slot ended while their user is being moved.
const MOVING_BYE: &[u8] =
    b"* BYE [UNAVAILABLE] Your mailbox is being moved to another server; please reconnect\r\n";

/// Longest wait for the directory when a session's backend spoke BYE or
/// ended; after it the last snapshot decides.
const DIRECTORY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the directory, now, whether a session's slot still serves its user.
#[derive(Clone, Copy)]
struct MovedCheck<'a> {
    routes: &'a Routes,
    binding: &'a Binding,
}

impl MovedCheck<'_> {
    /// `MasterMoved` when the slot is no longer the master of the user's
    /// store (or the user is in another store), `Moving` when the user is
    /// in a move, `None` otherwise.
    async fn check(&self) -> Option<End> {
        match tokio::time::timeout(DIRECTORY_CHECK_TIMEOUT, self.routes.refresh()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(cause = %e, "reading the directory failed"),
            Err(_) => tracing::warn!("reading the directory timed out"),
        }
        let topology = self.routes.snapshot();
        if !self.binding.still_current(&topology) {
            Some(End::MasterMoved)
        } else if topology.moves.contains_key(&self.binding.user) {
            Some(End::Moving)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_detection_looks_at_the_chunk_only() {
        assert!(starts_with_bye(b"* BYE [UNAVAILABLE] gone\r\n"));
        assert!(starts_with_bye(b"* bye x\r\n"));
        assert!(!starts_with_bye(b"* BY"));
        assert!(!starts_with_bye(b"a1 OK done\r\n* BYE x\r\n"));
        // The last complete line.
        assert!(last_line_is_bye(b"* BYE [UNAVAILABLE] gone\r\n", true));
        assert!(last_line_is_bye(
            b"t OK done\r\n* BYE [UNAVAILABLE] gone\r\n",
            true
        ));
        assert!(last_line_is_bye(b"t OK done\r\n* BYE x\r\n", false));
        assert!(!last_line_is_bye(b"* BYE x\r\nt OK done\r\n", true));
        assert!(!last_line_is_bye(b"* BYE x\r\n* 3 EXISTS", true));
        assert!(!last_line_is_bye(b"t OK done\r\n", true));
        // A chunk that starts inside a line is no BYE line by itself.
        assert!(!last_line_is_bye(b"* BYE x\r\n", false));
        assert!(!last_line_is_bye(b"", true));
        assert!(!last_line_is_bye(b"\r\n", true));
    }
}
