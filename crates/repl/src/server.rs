//! The replica's sync server: accept a master's streams, run the handshake,
//! then answer each request against the store, in order, one response per
//! request (docs/replication.md, "State machine: the replica's sync
//! server").
//!
//! ```text
//!  Listening ─▶ Handshake ─(Welcome)─▶ Serving ─(connection lost)─▶ Listening
//!                   └─(Refused)─▶ closed
//! ```
//!
//! A slot that is not a replica of the master's store (a master, another
//! store's replica) refuses at the handshake (`not-replica`). An adopted
//! newer epoch is recorded durably before `Welcome`; a stream of an older
//! epoch than the one in force is cut at its next request (`stale-epoch`),
//! so a fenced master cannot write even on a stream it opened before.
//!
//! Bodies arrive as chunks into a per-connection staging buffer, are hashed
//! as they come ([`BodyReceiver`]) and gathered into a batch (at most
//! [`BODY_BATCH_MAX`] bodies, [`BODY_BATCH_BYTES_MAX`] bytes plus one body,
//! below [`STAGING_BYTES_MAX`]). The batch is stored with
//! `User::put_bodies`, which verifies every GUID again and makes the files
//! durable together before their content records commit, once it is full,
//! when another request arrives, or as soon as no more input is at hand:
//! the server never waits for input while it owes answers. A mismatch is
//! answered `Error { guid-mismatch }`, counted and logged; that body is not
//! stored, the rest of its batch is.
//!
//! Bodies this slot knows to be bad (a scrub found them, or a verified read
//! failed) are reported missing by `HaveGuids` and left out of the digests,
//! so the master's next comparison finds the difference and sends them
//! again.

use crate::conn::Conn;
use crate::epoch::EpochState;
use crate::error::{SetupError, SyncError};
use crate::exec::Exec;
use crate::limits::{
    BAD_BODIES_MAX, BODY_BATCH_BYTES_MAX, BODY_BATCH_MAX, HANDSHAKE_TIMEOUT,
    SERVER_CONNECTIONS_MAX, SERVER_IDLE_TIMEOUT, STAGING_BYTES_MAX,
};
use crate::records::{
    DigestCache, Side, account_from_record, mailbox_apply, mailbox_record, message_meta,
    snapshot_digest, subscription, user_digests,
};
use crate::status::ServerStatus;
use crate::tls::Channel;
use slotmail_repl_proto::{
    Applied, ApplyMailbox, BodyEvent, BodyReceiver, ErrorCode, ErrorReply, Frame, Guid as WireGuid,
    Missing, ServerConfig, ServerHandshake, ServerStep, SlotRole, USERS_PER_FRAME_MAX, UserState,
    UserSummary, Users, body_chunks, encode_frame,
};
use slotmail_store::{Guid, Slot, StoreError, scrub::Kind};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the sync server is and answers as.
#[derive(Clone)]
pub struct ServerSettings {
    /// The cluster secret (keys the handshake proofs).
    pub secret: [u8; 32],
    pub cluster: String,
    /// This slot's id.
    pub slot: String,
    /// This slot's role: only `Replica` accepts replication.
    pub role: SlotRole,
    pub exec: Exec,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("secret", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("slot", &self.slot)
            .field("role", &self.role)
            .finish()
    }
}

/// Bodies this slot knows to be bad, per user (bounded; the oldest are
/// forgotten first).
#[derive(Debug, Default)]
struct BadBodies {
    by_user: HashMap<String, HashSet<Guid>>,
    order: VecDeque<(String, Guid)>,
    /// Where the marks are kept across restarts (`DATA/`[`BAD_BODIES_FILE`]).
    path: Option<std::path::PathBuf>,
    /// Marks made since the server started (what `Pong` reports).
    made: u64,
}

/// The file, in the slot's data directory, that keeps a replica's known-bad
/// bodies across restarts: a JSON list of `[user, guid]`.
pub const BAD_BODIES_FILE: &str = "sync-bad-bodies.json";

/// Largest bad-bodies file read, in bytes (`BAD_BODIES_MAX` entries fit).
const BAD_BODIES_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

impl BadBodies {
    /// The marks recorded at `data_dir` (none if the file is absent; a
    /// damaged file is logged and ignored: a scrub finds the damage again).
    fn load(data_dir: &std::path::Path) -> BadBodies {
        let path = data_dir.join(BAD_BODIES_FILE);
        let mut bad = BadBodies::default();
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(f, BAD_BODIES_FILE_BYTES_MAX),
                &mut text,
            )?;
            Ok(text)
        });
        match read {
            Ok(text) => match serde_json::from_str::<Vec<(String, String)>>(&text) {
                Ok(list) => {
                    for (user, guid) in list {
                        if let Ok(guid) = guid.parse::<Guid>() {
                            bad.insert(&user, guid);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), cause = %e, "ignoring a damaged bad-bodies file")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(file = %path.display(), cause = %e, "cannot read the bad-bodies file")
            }
        }
        bad.path = Some(path);
        bad
    }

    /// Record the marks durably (whole file, renamed into place).
    fn save(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let list: Vec<(&str, String)> = self
            .order
            .iter()
            .filter(|(u, g)| self.by_user.get(u).is_some_and(|set| set.contains(g)))
            .map(|(u, g)| (u.as_str(), g.to_hex()))
            .collect();
        let bytes = serde_json::to_vec(&list).expect("pairs of strings serialize");
        if let Err(e) = crate::epoch::write_durably(path, &bytes) {
            tracing::error!(file = %path.display(), cause = %e, "cannot record the bad bodies");
        }
    }

    fn insert(&mut self, user: &str, guid: Guid) -> bool {
        let new = self
            .by_user
            .entry(user.to_string())
            .or_default()
            .insert(guid);
        if new {
            self.order.push_back((user.to_string(), guid));
        }
        while self.order.len() > BAD_BODIES_MAX {
            if let Some((u, g)) = self.order.pop_front() {
                self.remove(&u, &g);
            }
        }
        new
    }

    fn mark(&mut self, user: &str, guid: Guid) {
        if self.insert(user, guid) {
            self.made += 1;
            self.save();
        }
    }

    fn remove(&mut self, user: &str, guid: &Guid) -> bool {
        let Some(set) = self.by_user.get_mut(user) else {
            return false;
        };
        let removed = set.remove(guid);
        if set.is_empty() {
            self.by_user.remove(user);
        }
        removed
    }

    fn unmark(&mut self, user: &str, guid: &Guid) {
        if self.remove(user, guid) {
            self.order.retain(|(u, g)| !(u == user && g == guid));
            self.save();
        }
    }

    fn forget_user(&mut self, user: &str) {
        if self.by_user.remove(user).is_some() {
            self.order.retain(|(u, _)| u != user);
            self.save();
        }
    }

    fn of_user(&self, user: &str) -> HashSet<Guid> {
        self.by_user.get(user).cloned().unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.by_user.values().map(HashSet::len).sum()
    }
}

struct Inner {
    slot: Arc<Slot>,
    settings: ServerSettings,
    /// TLS for every stream (docs/replication.md, "Transport and framing").
    tls: Arc<rustls::ServerConfig>,
    epoch: Arc<EpochState>,
    cache: DigestCache,
    bad: Mutex<BadBodies>,
    stats: Mutex<ServerStatus>,
    permits: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
    tracker: TaskTracker,
    /// On a master: the users moving in from another store's master
    /// (`crate::migrate`).
    grants: crate::migrate::MoveGrants,
}

impl Inner {
    fn stats(&self) -> std::sync::MutexGuard<'_, ServerStatus> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bad(&self) -> std::sync::MutexGuard<'_, BadBodies> {
        self.bad.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sync listener of one slot. Cheap to clone.
#[derive(Clone)]
pub struct SyncServer {
    inner: Arc<Inner>,
}

/// What a request is answered with.
enum Answer {
    Frame(Frame),
    /// A body transfer (the answer to `FetchBody`).
    Body {
        user: String,
        guid: Guid,
        bytes: Vec<u8>,
    },
}

fn error(code: ErrorCode, text: impl Into<String>) -> Answer {
    Answer::Frame(Frame::Error(ErrorReply::new(code, text)))
}

/// A store failure as the master is told it: `missing` when a message names
/// a body that has not been received, `store` otherwise.
fn store_error(user: &str, e: &StoreError) -> Answer {
    tracing::warn!(user, cause = %e, "replication request refused by the store");
    match e {
        StoreError::Expunged(_) => error(ErrorCode::Missing, e.to_string()),
        _ => error(ErrorCode::Store, e.to_string()),
    }
}

impl SyncServer {
    /// A server for `slot`, with the epoch state it adopts epochs into. It
    /// generates its TLS certificate here (in memory).
    pub fn new(
        slot: Arc<Slot>,
        settings: ServerSettings,
        epoch: Arc<EpochState>,
    ) -> Result<SyncServer, SetupError> {
        let bad = BadBodies::load(slot.root());
        let tls = crate::tls::server_config(&settings.slot)
            .map_err(|e| SetupError::Tls(e.to_string()))?;
        Ok(SyncServer {
            inner: Arc::new(Inner {
                slot,
                settings,
                tls,
                epoch,
                cache: DigestCache::default(),
                bad: Mutex::new(bad),
                stats: Mutex::new(ServerStatus::default()),
                permits: Arc::new(tokio::sync::Semaphore::new(SERVER_CONNECTIONS_MAX)),
                stop: CancellationToken::new(),
                tracker: TaskTracker::new(),
                grants: crate::migrate::MoveGrants::default(),
            }),
        })
    }

    /// The users this (master) slot accepts moving in
    /// ([`crate::migrate`]); empty on a replica, where they do not apply.
    pub fn move_grants(&self) -> &crate::migrate::MoveGrants {
        &self.inner.grants
    }

    /// Accept streams on `listener` until [`SyncServer::shutdown`]; the
    /// verification pass over this slot's bodies (`verify.rs`) runs beside.
    pub async fn serve(&self, listener: TcpListener) {
        if let Ok(addr) = listener.local_addr() {
            self.inner.stats().listen = addr.to_string();
        }
        self.verify_in_background();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.inner.stop.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let tls = self.inner.tls.clone();
                    let peer = peer.to_string();
                    self.spawn(peer.clone(), async move {
                        crate::tls::accept(stream, tls).await.map_err(|e| {
                            tracing::info!(%peer, cause = %e, "sync TLS handshake failed");
                            e
                        })
                    });
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "sync accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serve one channel (TLS already established, or the simulated
    /// network of the tests) in a task of its own.
    pub fn spawn_stream(&self, channel: Channel, peer: String) {
        self.spawn(peer, async move { Ok(channel) });
    }

    /// Serve the channel `open` yields in a task of its own (refused at
    /// once when [`SERVER_CONNECTIONS_MAX`] streams are being served).
    fn spawn(
        &self,
        peer: String,
        open: impl std::future::Future<Output = std::io::Result<Channel>> + Send + 'static,
    ) {
        let Ok(permit) = self.inner.permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many sync connections; closing a new one");
            return;
        };
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let _permit = permit;
            inner.stats().connections += 1;
            let stop = inner.stop.clone();
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => Ok(()),
                r = async {
                    match open.await {
                        Ok(channel) => serve_stream(&inner, channel, &peer).await,
                        Err(e) => {
                            inner.stats().refused += 1;
                            Err(SyncError::Io(e))
                        }
                    }
                } => r,
            };
            let mut stats = inner.stats();
            stats.connections -= 1;
            if let Err(e) = result {
                tracing::info!(%peer, cause = %e, "sync stream ended");
                stats.last_error = Some(e.to_string());
            }
        });
    }

    /// Stop accepting, cut every stream and wait for their tasks to end.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// The listener's counters.
    pub fn status(&self) -> ServerStatus {
        let bad = self.inner.bad().len();
        let mut s = self.inner.stats().clone();
        s.bad_bodies = bad;
        s
    }

    /// Remember that this slot's copy of a body is bad: it is reported
    /// missing and left out of the digests until the master resends it.
    pub fn mark_bad(&self, user: &str, guid: Guid) {
        tracing::error!(user, %guid, "body marked bad; the master will resend it");
        self.inner.bad().mark(user, guid);
        if let Ok(Some(a)) = self.inner.slot.account(user) {
            self.inner.cache.forget_user(&a.user_id);
        }
    }

    /// Start the paced verification of every body this slot holds
    /// (`verify.rs`), once; it ends with the server.
    fn verify_in_background(&self) {
        let server = self.clone();
        let stop = self.inner.stop.clone();
        self.inner.tracker.spawn(async move {
            let inner = server.inner.clone();
            let pass = crate::verify::verify_bodies(
                inner.slot.clone(),
                inner.settings.exec,
                crate::limits::VERIFY_BYTES_PER_SEC,
                |user, guid| {
                    inner
                        .bad()
                        .by_user
                        .get(user)
                        .is_some_and(|s| s.contains(guid))
                },
                |user, guid| server.mark_bad(user, guid),
            );
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = pass => {}
            }
        });
    }

    /// Scrub the slot (reading every body) and mark every missing or
    /// corrupt body bad, so the next full comparison fetches it again from
    /// the master. Returns the scrub's report.
    pub async fn scrub(&self) -> slotmail_store::scrub::Report {
        let inner = self.inner.clone();
        let report = self
            .inner
            .settings
            .exec
            .run(move || inner.slot.scrub(false))
            .await;
        for f in report.damage() {
            if matches!(f.kind, Kind::CorruptFile | Kind::MissingFile)
                && let Some(guid) = f.guid.as_deref().and_then(|g| g.parse::<Guid>().ok())
            {
                self.mark_bad(&f.user, guid);
            }
        }
        report
    }
}

/// The answer to `Ping`: the count of bad-body marks made since start.
fn pong(inner: &Inner) -> Frame {
    Frame::Pong(slotmail_repl_proto::Pong {
        bad_marks: inner.bad().made,
    })
}

async fn serve_stream(inner: &Arc<Inner>, channel: Channel, peer: &str) -> Result<(), SyncError> {
    let mut conn = Conn::new(channel.stream);
    let (stream_epoch, moving_from) = match handshake(inner, &mut conn, peer, channel.binding).await
    {
        Ok(accepted) => accepted,
        Err(e) => {
            inner.stats().refused += 1;
            conn.shutdown().await;
            return Err(e);
        }
    };
    conn.established();
    let result = serve_requests(inner, &mut conn, stream_epoch, moving_from.as_deref()).await;
    if let Err(SyncError::Frame(e)) = &result {
        let _ = conn.send_unchecked(&e.to_frame()).await;
    }
    conn.shutdown().await;
    result
}

/// Run the handshake; the stream's epoch once `Welcome` is sent, and on a
/// master the slot a move stream comes from.
async fn handshake(
    inner: &Arc<Inner>,
    conn: &mut Conn,
    peer: &str,
    binding: [u8; 32],
) -> Result<(u64, Option<String>), SyncError> {
    let s = &inner.settings;
    // A master that users move into answers the handshake as a replica of
    // its own store, then admits only a move stream (`crate::migrate`).
    let moves_in = match &s.role {
        SlotRole::Master { store } if !inner.grants.is_empty() => Some(store.clone()),
        _ => None,
    };
    let config = ServerConfig {
        secret: s.secret,
        cluster: s.cluster.clone(),
        slot: s.slot.clone(),
        role: match &moves_in {
            Some(store) => SlotRole::Replica {
                store: store.clone(),
            },
            None => s.role.clone(),
        },
        epoch: inner.epoch.get(),
        capabilities: Vec::new(),
        binding,
    };
    let mut machine = ServerHandshake::new(config, rand::random());
    let steps = async {
        loop {
            let frame = match conn.recv().await {
                Ok(f) => f,
                Err(SyncError::Frame(e)) => {
                    let failure = machine.undecodable(&e);
                    if let Some(f) = &failure.send {
                        conn.send_unchecked(f).await?;
                    }
                    return Err(SyncError::Handshake {
                        code: failure.code,
                        text: failure.text,
                        by_peer: false,
                    });
                }
                Err(e) => return Err(e),
            };
            match machine.receive(frame) {
                ServerStep::Send(f) => conn.send_unchecked(&f).await?,
                ServerStep::Accept(a) => return Ok(a),
                ServerStep::Failed(failure) => {
                    if let Some(f) = &failure.send {
                        conn.send_unchecked(f).await?;
                    }
                    return Err(SyncError::Handshake {
                        code: failure.code,
                        text: failure.text,
                        by_peer: failure.by_peer,
                    });
                }
            }
        }
    };
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, steps)
        .await
        .map_err(|_| SyncError::Timeout("the handshake"))??;
    if moves_in.is_some()
        && let Err((stale, text)) =
            crate::migrate::admit(&inner.grants, &accepted, inner.epoch.get())
    {
        let code = if stale {
            ErrorCode::StaleEpoch
        } else {
            ErrorCode::NotReplica
        };
        let _ = conn
            .send_unchecked(&Frame::Refused(ErrorReply::new(code, text.clone())))
            .await;
        return Err(SyncError::Handshake {
            code,
            text,
            by_peer: false,
        });
    }
    // Record a newer epoch durably before Welcome; another stream may have
    // adopted a newer one still since the Challenge.
    let now = if accepted.adopt_epoch {
        let epoch = inner.epoch.clone();
        let wanted = accepted.epoch;
        inner
            .settings
            .exec
            .run(move || epoch.adopt(wanted))
            .await
            .map_err(|e| {
                (
                    ErrorCode::Store,
                    format!("cannot record epoch {wanted}: {e}"),
                )
            })
    } else {
        Ok(inner.epoch.get())
    };
    let verdict = now.and_then(|now| {
        if accepted.epoch < now {
            Err((
                ErrorCode::StaleEpoch,
                format!(
                    "epoch {} is older than the store's epoch {now} here",
                    accepted.epoch
                ),
            ))
        } else {
            Ok(())
        }
    });
    if let Err((code, text)) = verdict {
        let _ = conn
            .send_unchecked(&Frame::Refused(ErrorReply::new(code, text.clone())))
            .await;
        return Err(SyncError::Handshake {
            code,
            text,
            by_peer: false,
        });
    }
    conn.send_unchecked(&accepted.welcome).await?;
    tracing::info!(%peer, master = %accepted.from_slot, store = %accepted.store, epoch = accepted.epoch, "sync stream accepted");
    let mut stats = inner.stats();
    stats.accepted += 1;
    stats.last_master = Some(accepted.from_slot.clone());
    Ok((accepted.epoch, moves_in.map(|_| accepted.from_slot)))
}

/// The replica's batch of received bodies and the answers it owes, in
/// request order (docs/replication.md, "Pipelined body transfers").
#[derive(Default)]
struct Pending {
    /// Complete bodies not yet stored: (user, GUID, bytes).
    bodies: Vec<(String, Guid, Vec<u8>)>,
    bytes: usize,
    /// One entry per answered transfer: `None` for the next stored body's
    /// verdict, `Some` for an answer already known (a refused transfer).
    answers: Vec<Option<Frame>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    fn full(&self) -> bool {
        self.bodies.len() >= BODY_BATCH_MAX || self.bytes >= BODY_BATCH_BYTES_MAX
    }
}

/// A batch being made durable in the background while the stream reads
/// on, with the answers owed for it in request order.
struct Storing {
    task: tokio::task::JoinHandle<Vec<Frame>>,
    answers: Vec<Option<Frame>>,
}

/// Start storing the batch (one `put_bodies` per user in it) in the
/// background; its answers are sent by [`finish`]. The caller finishes the
/// batch before (answers go out in request order).
fn start_store(inner: &Arc<Inner>, pending: &mut Pending) -> Option<Storing> {
    if pending.is_empty() {
        return None;
    }
    let bodies = std::mem::take(&mut pending.bodies);
    pending.bytes = 0;
    let worker = inner.clone();
    Some(Storing {
        task: tokio::spawn(async move { store_bodies(&worker, bodies).await }),
        answers: std::mem::take(&mut pending.answers),
    })
}

/// Wait for a batch being stored and send every answer owed for it, in
/// order, in one write.
async fn finish(conn: &mut Conn, storing: &mut Option<Storing>) -> Result<(), SyncError> {
    let Some(Storing { task, answers }) = storing.take() else {
        return Ok(());
    };
    let verdicts = task.await.map_err(|e| {
        SyncError::Io(std::io::Error::other(format!(
            "storing a batch of bodies: {e}"
        )))
    })?;
    let mut verdicts = std::collections::VecDeque::from(verdicts);
    let mut out = Vec::new();
    for answer in answers {
        let frame = match answer {
            Some(frame) => frame,
            None => verdicts.pop_front().expect("one verdict per stored body"),
        };
        out.extend_from_slice(&encode_frame(&frame));
    }
    conn.send_encoded(&out).await
}

/// Store the pending batch and send every owed answer, the batch being
/// stored first: nothing is owed when this returns.
async fn flush(
    inner: &Arc<Inner>,
    conn: &mut Conn,
    pending: &mut Pending,
    storing: &mut Option<Storing>,
) -> Result<(), SyncError> {
    finish(conn, storing).await?;
    *storing = start_store(inner, pending);
    finish(conn, storing).await
}

async fn serve_requests(
    inner: &Arc<Inner>,
    conn: &mut Conn,
    stream_epoch: u64,
    moving_from: Option<&str>,
) -> Result<(), SyncError> {
    let size_max = inner.slot.limits().message_size_max;
    let mut receiver = BodyReceiver::new(size_max);
    let mut staging: Vec<u8> = Vec::new();
    let mut pending = Pending::default();
    // The previous batch, made durable while the next one is received.
    let mut storing: Option<Storing> = None;
    loop {
        // Never wait for input while answers are owed: once nothing more is
        // at hand, finish the batch being stored and start on the pending
        // one, and only wait when nothing is owed.
        let ready = if pending.is_empty() && storing.is_none() {
            None
        } else {
            match conn.try_recv().await {
                Ok(f) => f,
                Err(SyncError::Closed) if receiver.in_progress().is_none() => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        let frame = match ready {
            Some(f) => f,
            None if !pending.is_empty() || storing.is_some() => {
                finish(conn, &mut storing).await?;
                storing = start_store(inner, &mut pending);
                continue;
            }
            None => {
                match conn
                    .recv_within(SERVER_IDLE_TIMEOUT, "the master's next request")
                    .await
                {
                    Ok(f) => f,
                    Err(SyncError::Closed) if receiver.in_progress().is_none() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        let now = inner.epoch.get();
        if now > stream_epoch {
            let text = format!("this stream's epoch {stream_epoch} is older than epoch {now}");
            conn.send(&Frame::Error(ErrorReply::new(
                ErrorCode::StaleEpoch,
                text.clone(),
            )))
            .await?;
            return Err(SyncError::Handshake {
                code: ErrorCode::StaleEpoch,
                text,
                by_peer: false,
            });
        }
        if let Some(from) = moving_from
            && let Err(text) = inner.grants.permits(from, &frame)
        {
            conn.send(&Frame::Error(ErrorReply::new(
                ErrorCode::NotReplica,
                text.clone(),
            )))
            .await?;
            return Err(SyncError::Handshake {
                code: ErrorCode::NotReplica,
                text,
                by_peer: false,
            });
        }
        if let Frame::Body(chunk) = frame {
            match receiver.accept(&chunk) {
                Err(e) => {
                    let reply = ErrorReply::new(ErrorCode::Protocol, e.to_string());
                    conn.send(&Frame::Error(reply)).await?;
                    return Err(e.into());
                }
                Ok(BodyEvent::Partial) => {
                    if pending.bytes + staging.len() + chunk.bytes.len() > STAGING_BYTES_MAX {
                        // Unreachable with the store's limit and the batch
                        // bound below the staging bound; refuse rather than
                        // grow.
                        let reply = ErrorReply::new(ErrorCode::TooBig, "staging area full");
                        conn.send(&Frame::Error(reply)).await?;
                        return Err(SyncError::Closed);
                    }
                    staging.extend_from_slice(&chunk.bytes);
                }
                Ok(BodyEvent::Discarded) => {}
                Ok(BodyEvent::Complete { guid, .. }) => {
                    staging.extend_from_slice(&chunk.bytes);
                    let bytes = std::mem::take(&mut staging);
                    inner.stats().requests += 1;
                    pending.bytes += bytes.len();
                    pending.bodies.push((chunk.user, Guid(guid), bytes));
                    pending.answers.push(None);
                    if pending.full() {
                        finish(conn, &mut storing).await?;
                        storing = start_store(inner, &mut pending);
                    }
                }
                Ok(BodyEvent::Failed(reply)) => {
                    staging = Vec::new();
                    let mut stats = inner.stats();
                    stats.requests += 1;
                    stats.errors += 1;
                    if reply.code == ErrorCode::GuidMismatch {
                        stats.guid_mismatches += 1;
                        tracing::error!(user = %chunk.user, guid = %Guid(chunk.guid), detail = %reply.text, "received body does not match its GUID");
                    }
                    drop(stats);
                    pending.answers.push(Some(Frame::Error(reply)));
                }
            }
            continue;
        }
        // Any other request: the answers owed for bodies go first.
        flush(inner, conn, &mut pending, &mut storing).await?;
        if receiver.in_progress().is_some() {
            let text = format!("{} inside a body transfer", frame.frame_type());
            conn.send(&Frame::Error(ErrorReply::new(
                ErrorCode::Protocol,
                text.clone(),
            )))
            .await?;
            return Err(SyncError::Handshake {
                code: ErrorCode::Protocol,
                text,
                by_peer: false,
            });
        }
        if !frame.is_request() {
            let text = format!("{} is not a request", frame.frame_type());
            conn.send(&Frame::Error(ErrorReply::new(
                ErrorCode::Protocol,
                text.clone(),
            )))
            .await?;
            return Err(SyncError::Handshake {
                code: ErrorCode::Protocol,
                text,
                by_peer: false,
            });
        }
        let answer = if let Frame::Ping = frame {
            Answer::Frame(pong(inner))
        } else {
            let worker = inner.clone();
            inner
                .settings
                .exec
                .run(move || answer(&worker, frame))
                .await
        };
        inner.stats().requests += 1;
        match answer {
            Answer::Frame(f) => {
                if matches!(f, Frame::Error(_)) {
                    inner.stats().errors += 1;
                }
                conn.send(&f).await?
            }
            Answer::Body { user, guid, bytes } => {
                for chunk in body_chunks(&user, guid.0, &bytes) {
                    conn.send(&Frame::Body(chunk)).await?;
                }
            }
        }
    }
}

/// Store a batch of received bodies, one `put_bodies` per user, and give
/// each its answer, in the order received: `Ok`, or `Error { guid-mismatch
/// | too-big }` for a body the store refused, or `Error { store }` for
/// every body of a user whose batch could not be written.
async fn store_bodies(inner: &Arc<Inner>, bodies: Vec<(String, Guid, Vec<u8>)>) -> Vec<Frame> {
    let worker = inner.clone();
    let answers = inner
        .settings
        .exec
        .run(move || {
            let mut answers: Vec<Option<Frame>> = vec![None; bodies.len()];
            let mut users: Vec<&str> = bodies.iter().map(|(u, ..)| u.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            for name in users {
                let idx: Vec<usize> = (0..bodies.len())
                    .filter(|&i| bodies[i].0 == name)
                    .collect();
                let batch: Vec<(Guid, &[u8])> = idx
                    .iter()
                    .map(|&i| (bodies[i].1, bodies[i].2.as_slice()))
                    .collect();
                match worker.slot.user(name).and_then(|u| u.put_bodies(&batch)) {
                    Ok(verdicts) => {
                        for (&i, verdict) in idx.iter().zip(verdicts) {
                            answers[i] = Some(body_answer(&worker, name, &bodies[i], verdict));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(user = name, cause = %e, bodies = idx.len(), "a batch of bodies could not be stored");
                        worker.stats().errors += idx.len() as u64;
                        for &i in &idx {
                            let reply = ErrorReply::new(ErrorCode::Store, e.to_string());
                            answers[i] = Some(Frame::Error(reply));
                        }
                    }
                }
            }
            answers
        })
        .await;
    answers
        .into_iter()
        .map(|a| a.expect("every body answered"))
        .collect()
}

/// The answer to one stored (or refused) body of a batch.
fn body_answer(
    inner: &Inner,
    user: &str,
    (_, guid, bytes): &(String, Guid, Vec<u8>),
    verdict: Result<(), StoreError>,
) -> Frame {
    match verdict {
        Ok(()) => {
            inner.bad().unmark(user, guid);
            let mut stats = inner.stats();
            stats.bodies += 1;
            stats.body_bytes += bytes.len() as u64;
            Frame::Ok
        }
        Err(e) => {
            let mut stats = inner.stats();
            stats.errors += 1;
            let code = match &e {
                StoreError::TooBig { .. } => ErrorCode::TooBig,
                e if e.is_corruption() => {
                    stats.guid_mismatches += 1;
                    ErrorCode::GuidMismatch
                }
                _ => ErrorCode::Store,
            };
            Frame::Error(ErrorReply::new(code, e.to_string()))
        }
    }
}

/// Answer one request (blocking: store calls).
fn answer(inner: &Inner, request: Frame) -> Answer {
    let slot = &inner.slot;
    match request {
        Frame::ListUsers(req) => list_users(inner, req.after.as_deref()),
        Frame::GetUser(req) => match held_user(inner, &req.user) {
            Ok(held) => Answer::Frame(Frame::UserState(UserState { held })),
            Err(e) => store_error(&req.user, &e),
        },
        Frame::ApplyAccount(req) => {
            let r = req.account;
            let result = (|| {
                slot.apply_account(&account_from_record(&r), &r.password_hash)?;
                let u = slot.user(&r.name)?;
                if u.repl_account_modseq()? != r.modseq {
                    u.set_repl_account_modseq(r.modseq)?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => Answer::Frame(Frame::Ok),
                Err(e) => store_error(&r.name, &e),
            }
        }
        Frame::HaveGuids(req) => {
            let result = (|| {
                let u = slot.user(&req.user)?;
                let guids: Vec<Guid> = req.guids.iter().map(|g| Guid(*g)).collect();
                let absent: HashSet<Guid> = u.missing_guids(&guids)?.into_iter().collect();
                let bad = inner.bad().of_user(&req.user);
                let missing: Vec<WireGuid> = guids
                    .iter()
                    .filter(|g| absent.contains(g) || bad.contains(g))
                    .map(|g| g.0)
                    .collect();
                Ok(missing)
            })();
            match result {
                Ok(guids) => Answer::Frame(Frame::Missing(Missing { guids })),
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::ApplyMailbox(req) => apply_mailbox(inner, req),
        Frame::DeleteMailbox(req) => {
            let result = (|| {
                let u = slot.user(&req.user)?;
                u.apply_delete_mailbox(&req.mailbox_id, req.modseq)?;
                inner.cache.forget_mailbox(u.user_id(), &req.mailbox_id);
                Ok(())
            })();
            match result {
                Ok(()) => Answer::Frame(Frame::Ok),
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::ApplySubscriptions(req) => {
            let result = (|| {
                let u = slot.user(&req.user)?;
                let records: Vec<_> = req.subscriptions.iter().map(subscription).collect();
                if req.full {
                    u.replace_subscriptions(&records)?;
                } else {
                    u.apply_subscriptions(&records)?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => Answer::Frame(Frame::Ok),
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::Commit(req) => {
            match slot
                .user(&req.user)
                .and_then(|u| u.commit_repl_modseq(req.modseq))
            {
                Ok(()) => Answer::Frame(Frame::Ok),
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::DeleteUser(req) => {
            if let Ok(Some(a)) = slot.account(&req.user) {
                inner.cache.forget_user(&a.user_id);
            }
            match slot.delete_user(&req.user) {
                Ok(()) | Err(StoreError::NoSuchUser(_)) => {
                    inner.bad().forget_user(&req.user);
                    Answer::Frame(Frame::Ok)
                }
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::FetchBody(req) => {
            let guid = Guid(req.guid);
            let result = (|| {
                let u = slot.user(&req.user)?;
                let Some(size) = u.content_size(&guid)? else {
                    return Ok(None);
                };
                match u.read_message(&guid, size) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.is_corruption() => {
                        inner.bad().mark(&req.user, guid);
                        inner.cache.forget_user(u.user_id());
                        Ok(None)
                    }
                    Err(StoreError::Expunged(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })();
            match result {
                Ok(Some(bytes)) => Answer::Body {
                    user: req.user,
                    guid,
                    bytes,
                },
                Ok(None) => error(
                    ErrorCode::Missing,
                    format!("no good copy of {guid} for {}", req.user),
                ),
                Err(e) => store_error(&req.user, &e),
            }
        }
        Frame::Ping => Answer::Frame(pong(inner)),
        other => error(
            ErrorCode::Protocol,
            format!("{} is not a request", other.frame_type()),
        ),
    }
}

/// One user as `GetUser` reports it.
fn held_user(
    inner: &Inner,
    name: &str,
) -> Result<Option<slotmail_repl_proto::HeldUser>, StoreError> {
    let bad = inner.bad().of_user(name);
    let skip = |g: &Guid| bad.contains(g);
    Ok(user_digests(
        &inner.slot,
        name,
        Side::Replica,
        &inner.cache,
        &skip,
        !bad.is_empty(),
    )?
    .map(|d| d.held()))
}

fn list_users(inner: &Inner, after: Option<&str>) -> Answer {
    let accounts = match inner.slot.accounts() {
        Ok(a) => a,
        Err(e) => return store_error("", &e),
    };
    let mut names = accounts
        .into_iter()
        .map(|a| a.name)
        .filter(|n| after.is_none_or(|after| n.as_str() > after));
    let mut users = Vec::new();
    for name in names.by_ref().take(USERS_PER_FRAME_MAX) {
        let summary = match held_user(inner, &name) {
            Ok(Some(h)) => UserSummary {
                name,
                user_id: h.user_id,
                modseq: h.modseq,
                account_modseq: h.account_modseq,
                digest: h.digest,
            },
            Ok(None) => continue,
            Err(e) => {
                // Reported as holding nothing: the master's round for the
                // user then meets the error and retries later.
                tracing::warn!(user = %name, cause = %e, "cannot digest user");
                UserSummary {
                    name,
                    user_id: String::new(),
                    modseq: 0,
                    account_modseq: 0,
                    digest: [0; 32],
                }
            }
        };
        users.push(summary);
    }
    let more = names.next().is_some();
    Answer::Frame(Frame::Users(Users { users, more }))
}

fn apply_mailbox(inner: &Inner, req: ApplyMailbox) -> Answer {
    let result = (|| {
        let u = inner.slot.user(&req.user)?;
        let messages = req
            .messages
            .iter()
            .map(message_meta)
            .collect::<Result<Vec<_>, _>>()?;
        let expunged: Vec<(u32, u64)> = req.expunged.iter().map(|e| (e.uid, e.modseq)).collect();
        inner
            .cache
            .forget_mailbox(u.user_id(), &req.mailbox.mailbox_id);
        u.apply_mailbox_exact(
            &mailbox_apply(&req.mailbox),
            Some(&req.mailbox.keywords),
            &messages,
            &expunged,
            req.full.map(|r| (r.first, r.last)),
        )?;
        let mbox = u
            .mailbox_by_mailbox_id(&req.mailbox.mailbox_id)?
            .ok_or_else(|| StoreError::NoSuchMailbox(req.mailbox.name.clone()))?;
        let (info, msgs) = u.snapshot(mbox.id)?;
        let bad = inner.bad().of_user(&req.user);
        let digest = snapshot_digest(&info, &msgs, |g| bad.contains(g));
        if bad.is_empty() {
            inner.cache.put(
                u.user_id(),
                mailbox_record(&info),
                digest,
                msgs.len() as u64,
            );
        }
        Ok(digest)
    })();
    match result {
        Ok(digest) => Answer::Frame(Frame::Applied(Applied { digest })),
        Err(e) => store_error(&req.user, &e),
    }
}
