//! The slot's admin endpoint: a Unix-domain socket in the slot's data
//! directory (`DATA/admin.sock`) through which `slotmail ctl` manages the
//! slot's accounts while it runs, asks for its status, scrubs it, and flips
//! its read-only switch (switchover), and releases users replication holds
//! (the mass-deletion guard, docs/replication.md).
//!
//! # Protocol
//!
//! JSON lines: the client writes one [`Request`] object per line, the slot
//! answers each with one [`Response`] object per line, in order. A
//! connection may carry any number of requests.
//!
//! ```text
//! > {"op":"create_user","name":"alice","password_hash":"$argon2id$...","admin":false}
//! < {"type":"user","user":{"name":"alice","user_id":"…","admin":false,"quota_bytes":null,"quota_messages":null}}
//! > {"op":"status"}
//! < {"type":"status","read_only":false,"data_dir":"/srv/slots/a/a1","users":1,"uptime_ms":5123,"pid":4242}
//! > {"op":"delete_user","name":"nobody"}
//! < {"type":"error","code":"no_such_user","message":"no such user: nobody"}
//! ```
//!
//! # Security and bounds
//!
//! The socket is removed and re-created at start and made mode 0600; a
//! connection from another user id than the slot's (other than root) is
//! refused. A request line is at most [`REQUEST_LINE_MAX_BYTES`]; at most
//! [`CONNECTIONS_MAX`] connections are served at once (more get a `busy`
//! error and are closed); a client that sends nothing for
//! [`IDLE_TIMEOUT`] is disconnected; an operation runs at most
//! [`OPERATION_TIMEOUT`] ([`SCRUB_TIMEOUT`] for a scrub). Store calls run on
//! blocking threads, never on the async executor.

use crate::unix_socket::PrivateListener;
use serde::{Deserialize, Serialize};
use slotmail_store::{Slot, StoreError};
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The socket's file name in the slot's data directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// Longest request line, in bytes, newline included.
pub const REQUEST_LINE_MAX_BYTES: usize = 64 * 1024;
/// Longest response line a client accepts, in bytes (a user list of a big
/// slot is long).
pub const RESPONSE_LINE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most connections served at once.
pub const CONNECTIONS_MAX: usize = 16;
/// A connection that sends no complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time one operation (other than scrub) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time a scrub may take.
pub const SCRUB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest time writing a response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrub findings returned in a reply, at most (the count is always exact).
pub const SCRUB_FINDINGS_MAX: usize = 1_000;
/// Mailboxes listed in a `user_info` reply, at most.
pub const USER_INFO_MAILBOXES_MAX: usize = 10_000;
/// Longest path a Unix socket address holds (`sun_path` less its NUL).
pub const SOCKET_PATH_LEN_MAX_BYTES: usize = 107;
/// The client's connect timeout.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One request to a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Create a user (with the default mailboxes) from a password hash (a
    /// PHC string, see `slotmail_store::hash_password`).
    CreateUser {
        name: String,
        password_hash: String,
        #[serde(default)]
        admin: bool,
    },
    /// Delete a user and all their mail.
    DeleteUser { name: String },
    /// Replace a user's password hash.
    SetPasswordHash { name: String, password_hash: String },
    /// Set a user's quota limits (`null` = unlimited).
    SetQuota {
        name: String,
        bytes: Option<u64>,
        messages: Option<u64>,
    },
    /// Every account of the slot.
    ListUsers,
    /// One user's account, mailboxes, message count and quota usage.
    UserInfo { name: String },
    /// Verify every record and message of the slot (no repair).
    Scrub,
    /// The slot's role, data directory, user count and uptime.
    Status,
    /// Refuse (true) or allow (false) client writes from now on.
    SetReadOnly { read_only: bool },
    /// Release a user the mass-deletion guard holds: its next round applies
    /// the held deletions. On a master; every replica holding the user, or
    /// only `replica`.
    ReplConfirm {
        user: String,
        #[serde(default)]
        replica: Option<String>,
    },
    /// Every user's position and digest (switchover, failover).
    UserDigests { side: crate::admin_mail::DigestSide },
    /// One user's mailboxes and message records (reconcile).
    MailState {
        name: String,
        #[serde(default)]
        expunged_since: u64,
    },
    /// Apply one reconcile change to a user.
    MailApply {
        name: String,
        change: crate::admin_mail::MailChange,
    },
    /// One user's position and digest (user move); none if absent.
    UserDigest {
        name: String,
        side: crate::admin_mail::DigestSide,
    },
    /// Refuse (`frozen`) or allow one user's client writes; a freeze ends by
    /// itself after `ttl_ms` if given (user move).
    FreezeUser {
        name: String,
        frozen: bool,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    /// On a master: accept (`grant`) or stop accepting replication of
    /// `name` from slot `from_slot` (the user moves in; `crate::moves`).
    MoveIn {
        name: String,
        from_slot: String,
        grant: bool,
    },
    /// On a master: copy `name` to `target` by replication (user move).
    MoveOutStart {
        name: String,
        target: slotmail_repl::MoveTarget,
    },
    /// How the copy of `name` goes.
    MoveOutStatus { name: String },
    /// Stop copying `name`.
    MoveOutStop { name: String },
}

impl Request {
    /// The operation's name, as in the protocol.
    pub fn op(&self) -> &'static str {
        match self {
            Request::CreateUser { .. } => "create_user",
            Request::DeleteUser { .. } => "delete_user",
            Request::SetPasswordHash { .. } => "set_password_hash",
            Request::SetQuota { .. } => "set_quota",
            Request::ListUsers => "list_users",
            Request::UserInfo { .. } => "user_info",
            Request::Scrub => "scrub",
            Request::Status => "status",
            Request::SetReadOnly { .. } => "set_read_only",
            Request::ReplConfirm { .. } => "repl_confirm",
            Request::UserDigests { .. } => "user_digests",
            Request::MailState { .. } => "mail_state",
            Request::MailApply { .. } => "mail_apply",
            Request::UserDigest { .. } => "user_digest",
            Request::FreezeUser { .. } => "freeze_user",
            Request::MoveIn { .. } => "move_in",
            Request::MoveOutStart { .. } => "move_out_start",
            Request::MoveOutStatus { .. } => "move_out_status",
            Request::MoveOutStop { .. } => "move_out_stop",
        }
    }
}

/// An account as the admin endpoint shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub user_id: String,
    pub admin: bool,
    pub quota_bytes: Option<u64>,
    pub quota_messages: Option<u64>,
}

impl From<&slotmail_store::Account> for UserSummary {
    fn from(a: &slotmail_store::Account) -> Self {
        UserSummary {
            name: a.name.clone(),
            user_id: a.user_id.clone(),
            admin: a.is_admin,
            quota_bytes: a.quota_bytes,
            quota_messages: a.quota_messages,
        }
    }
}

/// One mailbox in a `user_info` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSummary {
    pub name: String,
    pub messages: u32,
    pub size: u64,
}

/// A user's account and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user: UserSummary,
    /// Number of mailboxes.
    pub mailboxes: usize,
    /// Messages in all mailboxes.
    pub messages: u64,
    /// Quota usage and limits.
    pub quota_used_bytes: u64,
    pub quota_used_messages: u64,
    /// The mailboxes, by name (at most [`USER_INFO_MAILBOXES_MAX`]).
    pub mailbox_list: Vec<MailboxSummary>,
}

/// The result of a scrub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubSummary {
    pub users: u64,
    pub messages: u64,
    pub bytes_verified: u64,
    /// No damage found (unreferenced files do not count).
    pub clean: bool,
    /// Findings that are damage.
    pub damage: u64,
    /// All findings, one line each (at most [`SCRUB_FINDINGS_MAX`]).
    pub findings: Vec<String>,
    pub elapsed_ms: u64,
}

/// A running slot's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// Whether client writes are refused (a replica, or a master being
    /// switched over).
    pub read_only: bool,
    pub data_dir: PathBuf,
    pub users: u64,
    /// Since the admin endpoint started (with the slot).
    pub uptime_ms: u64,
    /// The slot's process id.
    pub pid: u32,
}

/// Why a request failed, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a request of this protocol.
    BadRequest,
    /// The request line is longer than [`REQUEST_LINE_MAX_BYTES`].
    TooLarge,
    /// Too many connections; try again.
    Busy,
    /// No such user.
    NoSuchUser,
    /// A user of that name exists.
    UserExists,
    /// A value was refused (user name, password hash, limit).
    Invalid,
    /// Stored data failed verification.
    Corrupt,
    /// The operation took too long.
    Timeout,
    /// An I/O or database error on the slot's side.
    Internal,
}

impl ErrorCode {
    /// Whether the request itself was refused (repeating it unchanged fails
    /// again), as opposed to the slot failing.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorCode::BadRequest
                | ErrorCode::TooLarge
                | ErrorCode::NoSuchUser
                | ErrorCode::UserExists
                | ErrorCode::Invalid
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// A mutation without a value to return was applied.
    Done,
    /// The user as it is now (create_user).
    User { user: UserSummary },
    /// list_users.
    Users { users: Vec<UserSummary> },
    /// user_info.
    UserInfo { info: UserInfo },
    /// scrub.
    Scrub { report: ScrubSummary },
    /// status.
    Status { status: SlotStatus },
    /// set_read_only: the switch's position before and now.
    ReadOnly { was: bool, read_only: bool },
    /// repl_confirm: the replicas whose hold on the user was released.
    Confirmed { replicas: Vec<String> },
    /// user_digests.
    Digests {
        users: Vec<crate::admin_mail::UserDigest>,
    },
    /// mail_state.
    MailState { state: crate::admin_mail::MailState },
    /// mail_apply.
    MailApplied {
        applied: crate::admin_mail::MailApplied,
    },
    /// freeze_user: whether the user was frozen before, and is now.
    Frozen {
        name: String,
        was: bool,
        frozen: bool,
    },
    /// move_in: every (user, source slot) this master accepts now.
    MoveGrants { grants: Vec<(String, String)> },
    /// move_out_*: the copy's state (none: no copy runs).
    MoveOut {
        status: Option<crate::moves::MoveOutStatus>,
    },
    /// The request failed.
    Error { code: ErrorCode, message: String },
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

/// Why the endpoint could not start, or a client request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The socket path does not fit a Unix socket address.
    #[error("socket path {} is {len} bytes; a Unix socket path has at most {SOCKET_PATH_LEN_MAX_BYTES}", path.display())]
    PathTooLong { path: PathBuf, len: usize },
    /// Binding or preparing the socket failed.
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing answers on the socket (the slot is not running).
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or timed out mid-request.
    #[error("talking to {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The slot's reply was not a response of this protocol.
    #[error("{}: bad reply: {detail}", path.display())]
    Protocol { path: PathBuf, detail: String },
    /// The slot refused or failed the request.
    #[error("slot refused {op}: {message} ({code})")]
    Remote {
        op: &'static str,
        code: ErrorCode,
        message: String,
    },
}

/// Run the admin endpoint at `path` until `shutdown` resolves. Returns an
/// error only if the socket cannot be set up; the socket file is removed on
/// the way out.
pub async fn serve_admin(
    path: PathBuf,
    slot: Arc<Slot>,
    read_only: slotmail_imap::ReadOnlySwitch,
    shutdown: impl Future,
) -> Result<(), AdminError> {
    serve_admin_with_replication(path, slot, read_only, Vec::new(), None, shutdown).await
}

/// [`serve_admin`] for a slot that replicates: `repl_confirm` reaches its
/// `replicators`.
pub async fn serve_admin_with_replication(
    path: PathBuf,
    slot: Arc<Slot>,
    read_only: slotmail_imap::ReadOnlySwitch,
    replicators: Vec<slotmail_repl::Replicator>,
    server: Option<slotmail_repl::SyncServer>,
    shutdown: impl Future,
) -> Result<(), AdminError> {
    serve_admin_with_moves(path, slot, read_only, replicators, server, None, shutdown).await
}

/// [`serve_admin_with_replication`] for a slot that takes part in user
/// moves (`crate::moves`).
pub async fn serve_admin_with_moves(
    path: PathBuf,
    slot: Arc<Slot>,
    read_only: slotmail_imap::ReadOnlySwitch,
    replicators: Vec<slotmail_repl::Replicator>,
    server: Option<slotmail_repl::SyncServer>,
    moves: Option<Arc<crate::moves::MoveHub>>,
    shutdown: impl Future,
) -> Result<(), AdminError> {
    let listener = bind(&path)?;
    tracing::info!(socket = %path.display(), "admin endpoint listening");
    let ctx = Arc::new(Ctx {
        slot,
        read_only,
        replicators,
        server,
        moves,
        started: Instant::now(),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            stream = listener.accept() => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    connections.spawn(refuse_busy(stream));
                    continue;
                };
                let ctx = ctx.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    serve_connection(stream, ctx).await;
                });
            }
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&path);
    tracing::info!(socket = %path.display(), "admin endpoint stopped");
    Ok(())
}

/// Remove a leftover socket, bind, and make the socket 0600 (accepting the
/// slot's user and root only).
fn bind(path: &Path) -> Result<PrivateListener, AdminError> {
    PrivateListener::bind(path, "admin")
}

struct Ctx {
    slot: Arc<Slot>,
    read_only: slotmail_imap::ReadOnlySwitch,
    /// On a master: one per replica.
    replicators: Vec<slotmail_repl::Replicator>,
    /// On a replica: its sync listener (a scrub marks bad bodies there).
    server: Option<slotmail_repl::SyncServer>,
    /// User moves (a slot with replication).
    moves: Option<Arc<crate::moves::MoveHub>>,
    started: Instant,
}

async fn refuse_busy(mut stream: UnixStream) {
    let mut line = serde_json::to_vec(&error(
        ErrorCode::Busy,
        format!("more than {CONNECTIONS_MAX} admin connections; try again"),
    ))
    .expect("responses serialize");
    line.push(b'\n');
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line)).await;
}

async fn serve_connection(stream: UnixStream, ctx: Arc<Ctx>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let limit = REQUEST_LINE_MAX_BYTES as u64;
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        let (response, close) = match read {
            Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!(cause = %e, "admin connection read failed");
                return;
            }
            Ok(Ok(0)) => return,
            Ok(Ok(_)) if line.last() != Some(&b'\n') => {
                if line.len() as u64 >= limit {
                    (
                        error(
                            ErrorCode::TooLarge,
                            format!("a request line has at most {REQUEST_LINE_MAX_BYTES} bytes"),
                        ),
                        true,
                    )
                } else {
                    // End of input without a newline: the last request.
                    (handle_line(&line, &ctx).await, true)
                }
            }
            Ok(Ok(_)) => (handle_line(&line, &ctx).await, false),
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        if close {
            return;
        }
    }
}

async fn handle_line(line: &[u8], ctx: &Arc<Ctx>) -> Response {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(_) => return error(ErrorCode::BadRequest, "a request is UTF-8 JSON"),
    };
    let request: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return error(ErrorCode::BadRequest, format!("not a request: {e}")),
    };
    let op = request.op();
    let timeout = if request == Request::Scrub {
        SCRUB_TIMEOUT
    } else {
        OPERATION_TIMEOUT
    };
    if request == Request::Scrub
        && let Some(repair) = scrub_with_repair(ctx)
    {
        return match tokio::time::timeout(timeout, repair).await {
            Ok(response) => response,
            Err(_) => error(
                ErrorCode::Timeout,
                format!("{op} took longer than {timeout:?}"),
            ),
        };
    }
    let task_ctx = ctx.clone();
    let task = tokio::task::spawn_blocking(move || execute(request, &task_ctx));
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(response)) => {
            if let Response::Error { code, message } = &response {
                tracing::info!(op, %code, message, "admin request failed");
            } else {
                tracing::debug!(op, "admin request done");
            }
            response
        }
        Ok(Err(e)) => {
            tracing::error!(op, cause = %e, "admin request panicked");
            error(ErrorCode::Internal, format!("{op} failed: {e}"))
        }
        // The blocking work goes on to its end; the client is told now.
        Err(_) => error(
            ErrorCode::Timeout,
            format!("{op} did not finish within {} s", timeout.as_secs()),
        ),
    }
}

/// Map a store error to a reply.
fn store_error(e: StoreError) -> Response {
    let code = match &e {
        StoreError::NoSuchUser(_) => ErrorCode::NoSuchUser,
        StoreError::UserExists(_) => ErrorCode::UserExists,
        StoreError::InvalidUserName(_)
        | StoreError::Password(_)
        | StoreError::Limit(_)
        | StoreError::NotAllowed(_) => ErrorCode::Invalid,
        StoreError::Corrupt { .. } => ErrorCode::Corrupt,
        _ => ErrorCode::Internal,
    };
    error(code, e.to_string())
}

/// Run one request on a blocking thread.
fn execute(request: Request, ctx: &Ctx) -> Response {
    let slot = &ctx.slot;
    let result = match request {
        Request::CreateUser {
            name,
            password_hash,
            admin,
        } => slot
            .create_user_with_hash(&name, &password_hash, admin, None)
            .map(|a| Response::User {
                user: UserSummary::from(&a),
            }),
        Request::DeleteUser { name } => slot.delete_user(&name).map(|()| {
            // An explicit admin action: the replicas delete their copy
            // without waiting for an operator's confirmation.
            for r in &ctx.replicators {
                r.confirm(&name);
            }
            Response::Done
        }),
        Request::SetPasswordHash {
            name,
            password_hash,
        } => slot
            .set_password_hash(&name, &password_hash)
            .map(|()| Response::Done),
        Request::SetQuota {
            name,
            bytes,
            messages,
        } => slot
            .set_quota(&name, bytes, messages)
            .map(|()| Response::Done),
        Request::ListUsers => slot.accounts().map(|accounts| Response::Users {
            users: accounts.iter().map(UserSummary::from).collect(),
        }),
        Request::UserInfo { name } => {
            user_info(slot, &name).map(|info| Response::UserInfo { info })
        }
        Request::Scrub => Ok(scrub(slot)),
        Request::Status => slot.accounts().map(|accounts| Response::Status {
            status: SlotStatus {
                read_only: ctx.read_only.is_read_only(),
                data_dir: slot.root().to_path_buf(),
                users: accounts.len() as u64,
                uptime_ms: ctx.started.elapsed().as_millis() as u64,
                pid: std::process::id(),
            },
        }),
        Request::SetReadOnly { read_only } => {
            let was = ctx.read_only.is_read_only();
            ctx.read_only.set(read_only);
            tracing::info!(
                was,
                read_only,
                "read-only switch set over the admin endpoint"
            );
            Ok(Response::ReadOnly { was, read_only })
        }
        Request::ReplConfirm { user, replica } => return repl_confirm(ctx, &user, replica),
        Request::UserDigests { side } => {
            crate::admin_mail::all_user_digests(slot, side).map(|users| Response::Digests { users })
        }
        Request::MailState {
            name,
            expunged_since,
        } => crate::admin_mail::mail_state(slot, &name, expunged_since)
            .map(|state| Response::MailState { state }),
        Request::MailApply { name, change } => crate::admin_mail::mail_apply(slot, &name, change)
            .map(|applied| Response::MailApplied { applied }),
        Request::UserDigest { name, side } => crate::admin_mail::one_user_digest(slot, &name, side)
            .map(|d| Response::Digests {
                users: d.into_iter().collect(),
            }),
        Request::FreezeUser {
            name,
            frozen,
            ttl_ms,
        } => {
            let until = ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
            return match ctx.read_only.freeze_user(&name, frozen.then_some(until)) {
                Ok(was) => {
                    tracing::info!(user = %name, was, frozen, "user's writes frozen over the admin endpoint");
                    Response::Frozen { name, was, frozen }
                }
                Err(max) => error(
                    ErrorCode::Invalid,
                    format!("{max} users are frozen already"),
                ),
            };
        }
        Request::MoveIn {
            name,
            from_slot,
            grant,
        } => {
            return with_moves(ctx, |m| {
                m.move_in(&name, &from_slot, grant)
                    .map(|grants| Response::MoveGrants { grants })
            });
        }
        Request::MoveOutStart { name, target } => {
            return with_moves(ctx, |m| {
                m.move_out_start(&name, target)
                    .map(|s| Response::MoveOut { status: Some(s) })
            });
        }
        Request::MoveOutStatus { name } => {
            return with_moves(ctx, |m| {
                Ok(Response::MoveOut {
                    status: m.move_out_status(&name),
                })
            });
        }
        Request::MoveOutStop { name } => {
            return with_moves(ctx, |m| {
                Ok(Response::MoveOut {
                    status: m.move_out_stop(&name),
                })
            });
        }
    };
    result.unwrap_or_else(store_error)
}

/// Run a move request on the slot's move hub.
fn with_moves(
    ctx: &Ctx,
    f: impl FnOnce(&crate::moves::MoveHub) -> Result<Response, crate::moves::MoveError>,
) -> Response {
    match &ctx.moves {
        Some(m) => f(m).unwrap_or_else(|e| error(ErrorCode::Invalid, e.to_string())),
        None => error(
            ErrorCode::Invalid,
            "this slot does not replicate: it takes no part in user moves",
        ),
    }
}

/// Release `user` on every replica that holds it (or only `replica`).
fn repl_confirm(ctx: &Ctx, user: &str, replica: Option<String>) -> Response {
    if ctx.replicators.is_empty() {
        return error(
            ErrorCode::Invalid,
            "this slot replicates to no replica (it is not a store's master)",
        );
    }
    let chosen: Vec<&slotmail_repl::Replicator> = ctx
        .replicators
        .iter()
        .filter(|r| replica.as_deref().is_none_or(|want| r.replica() == want))
        .collect();
    if chosen.is_empty() {
        return error(
            ErrorCode::Invalid,
            format!(
                "this slot does not replicate to {}",
                replica.as_deref().unwrap_or("")
            ),
        );
    }
    let mut released = Vec::new();
    for r in chosen {
        if r.is_held(user) && r.confirm(user) {
            tracing::warn!(
                user,
                replica = r.replica(),
                "held deletions confirmed by an operator"
            );
            released.push(r.replica().to_string());
        }
    }
    if released.is_empty() {
        return error(
            ErrorCode::Invalid,
            format!("replication does not hold user {user}"),
        );
    }
    Response::Confirmed { replicas: released }
}

fn user_info(slot: &Slot, name: &str) -> slotmail_store::Result<UserInfo> {
    let account = slot
        .account(name)?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
    let user = slot.user(name)?;
    let mailboxes = user.mailboxes()?;
    let mut messages = 0u64;
    let mut mailbox_list = Vec::with_capacity(mailboxes.len().min(USER_INFO_MAILBOXES_MAX));
    for mb in &mailboxes {
        let status = user.status(mb.id)?;
        messages += u64::from(status.messages);
        if mailbox_list.len() < USER_INFO_MAILBOXES_MAX {
            mailbox_list.push(MailboxSummary {
                name: mb.name.clone(),
                messages: status.messages,
                size: status.size,
            });
        }
    }
    let quota = user.quota()?;
    Ok(UserInfo {
        user: UserSummary::from(&account),
        mailboxes: mailboxes.len(),
        messages,
        quota_used_bytes: quota.used_bytes,
        quota_used_messages: quota.used_messages,
        mailbox_list,
    })
}

fn scrub(slot: &Slot) -> Response {
    let started = Instant::now();
    scrub_response(&slot.scrub(false), started)
}

/// A scrub of a slot that replicates repairs what it finds: a master
/// fetches each corrupt or missing body from its (first) replica
/// (`Replicator::scrub_and_repair`); a replica marks them bad, so its master
/// sends them again at its next full comparison (`SyncServer::scrub`; the
/// marks survive a restart). `None` for a slot without replication.
fn scrub_with_repair(ctx: &Arc<Ctx>) -> Option<impl Future<Output = Response> + use<>> {
    let replicator = ctx.replicators.first().cloned();
    let server = ctx.server.clone();
    if replicator.is_none() && server.is_none() {
        return None;
    }
    Some(async move {
        let started = Instant::now();
        let report = match (replicator, server) {
            (Some(r), _) => r.scrub_and_repair().await,
            (None, Some(s)) => s.scrub().await,
            (None, None) => unreachable!("checked above"),
        };
        scrub_response(&report, started)
    })
}

fn scrub_response(report: &slotmail_store::scrub::Report, started: Instant) -> Response {
    Response::Scrub {
        report: ScrubSummary {
            users: report.users,
            messages: report.messages,
            bytes_verified: report.bytes_verified,
            clean: report.is_clean(),
            damage: report.damage().count() as u64,
            findings: report
                .findings
                .iter()
                .take(SCRUB_FINDINGS_MAX)
                .map(ToString::to_string)
                .collect(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    }
}

/// Send one request to the admin endpoint at `path` and return its reply
/// (a blocking client, for `slotmail ctl`). An error reply becomes
/// [`AdminError::Remote`]. `timeout` bounds connecting, writing and waiting
/// for the reply.
pub fn admin_request_with_timeout(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| AdminError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .set_write_timeout(Some(timeout.min(WRITE_TIMEOUT)))
        .map_err(io_err)?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io_err)?;
    let mut reader =
        std::io::BufReader::new(std::io::Read::take(&stream, RESPONSE_LINE_MAX_BYTES as u64));
    let mut reply = Vec::new();
    reader.read_until(b'\n', &mut reply).map_err(io_err)?;
    let protocol = |detail: String| AdminError::Protocol {
        path: path.to_path_buf(),
        detail,
    };
    if reply.last() != Some(&b'\n') {
        return Err(protocol(if reply.is_empty() {
            "the connection closed without a reply".into()
        } else {
            format!("reply longer than {RESPONSE_LINE_MAX_BYTES} bytes or cut short")
        }));
    }
    let response: Response =
        serde_json::from_slice(&reply).map_err(|e| protocol(format!("not a response: {e}")))?;
    match response {
        Response::Error { code, message } => Err(AdminError::Remote {
            op: request.op(),
            code,
            message,
        }),
        other => Ok(other),
    }
}

/// [`admin_request_with_timeout`] with the timeout the operation needs
/// ([`SCRUB_TIMEOUT`] for a scrub, [`OPERATION_TIMEOUT`] otherwise, plus a
/// margin so the slot's own timeout answers first).
pub fn admin_request(path: &Path, request: &Request) -> Result<Response, AdminError> {
    let timeout = if *request == Request::Scrub {
        SCRUB_TIMEOUT
    } else {
        OPERATION_TIMEOUT
    } + CLIENT_CONNECT_TIMEOUT;
    admin_request_with_timeout(path, request, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_store::Options;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream as StdStream;

    struct Running {
        _dir: tempfile::TempDir,
        path: PathBuf,
        switch: slotmail_imap::ReadOnlySwitch,
        stop: tokio_util::sync::CancellationToken,
        task: tokio::task::JoinHandle<Result<(), AdminError>>,
    }

    async fn start(read_only: bool) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let slot = Arc::new(Slot::open(dir.path().join("data"), Options::default()).unwrap());
        let path = dir.path().join("data").join(SOCKET_NAME);
        // A stale file where the socket goes is replaced.
        std::fs::write(&path, b"stale").unwrap();
        let switch = slotmail_imap::ReadOnlySwitch::new(read_only);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(serve_admin(
            path.clone(),
            slot,
            switch.clone(),
            stop.clone().cancelled_owned(),
        ));
        for _ in 0..200 {
            if StdStream::connect(&path).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running {
            _dir: dir,
            path,
            switch,
            stop,
            task,
        }
    }

    async fn ask(path: &Path, request: Request) -> Result<Response, AdminError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || admin_request(&path, &request))
            .await
            .unwrap()
    }

    /// Write raw bytes, half-close, read every reply line.
    async fn raw(path: &Path, bytes: Vec<u8>) -> Vec<serde_json::Value> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut s = StdStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The server may close before reading everything (too large).
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .await
        .unwrap()
    }

    fn hash() -> String {
        slotmail_store::hash_password("secret-1").unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn manages_users_over_a_real_socket() {
        let r = start(false).await;
        let mode = std::fs::metadata(&r.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

        let created = ask(
            &r.path,
            Request::CreateUser {
                name: "alice".into(),
                password_hash: hash(),
                admin: false,
            },
        )
        .await
        .unwrap();
        let Response::User { user } = created else {
            panic!("{created:?}")
        };
        assert_eq!(user.name, "alice");
        assert!(!user.admin);

        let dup = ask(
            &r.path,
            Request::CreateUser {
                name: "alice".into(),
                password_hash: hash(),
                admin: false,
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                dup,
                AdminError::Remote {
                    code: ErrorCode::UserExists,
                    ..
                }
            ),
            "{dup}"
        );
        let bad_hash = ask(
            &r.path,
            Request::CreateUser {
                name: "bob".into(),
                password_hash: "plain".into(),
                admin: false,
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                bad_hash,
                AdminError::Remote {
                    code: ErrorCode::Invalid,
                    ..
                }
            ),
            "{bad_hash}"
        );

        ask(
            &r.path,
            Request::SetQuota {
                name: "alice".into(),
                bytes: Some(1_000_000),
                messages: Some(10),
            },
        )
        .await
        .unwrap();
        let new_hash = slotmail_store::hash_password("secret-2").unwrap();
        ask(
            &r.path,
            Request::SetPasswordHash {
                name: "alice".into(),
                password_hash: new_hash,
            },
        )
        .await
        .unwrap();

        let info = ask(
            &r.path,
            Request::UserInfo {
                name: "alice".into(),
            },
        )
        .await
        .unwrap();
        let Response::UserInfo { info } = info else {
            panic!("{info:?}")
        };
        assert_eq!(info.user.quota_bytes, Some(1_000_000));
        assert_eq!(info.user.quota_messages, Some(10));
        assert_eq!(info.messages, 0);
        assert!(info.mailboxes >= 1);
        assert!(info.mailbox_list.iter().any(|m| m.name == "INBOX"));

        let Response::Users { users } = ask(&r.path, Request::ListUsers).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["alice"]
        );

        let Response::Scrub { report } = ask(&r.path, Request::Scrub).await.unwrap() else {
            panic!()
        };
        assert!(report.clean);
        assert_eq!(report.users, 1);

        ask(
            &r.path,
            Request::DeleteUser {
                name: "alice".into(),
            },
        )
        .await
        .unwrap();
        let gone = ask(
            &r.path,
            Request::UserInfo {
                name: "alice".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                gone,
                AdminError::Remote {
                    code: ErrorCode::NoSuchUser,
                    ..
                }
            ),
            "{gone}"
        );

        r.stop.cancel();
        r.task.await.unwrap().unwrap();
        assert!(!r.path.exists(), "socket removed at shutdown");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn status_and_read_only_switch() {
        let r = start(true).await;
        let Response::Status { status } = ask(&r.path, Request::Status).await.unwrap() else {
            panic!()
        };
        assert!(status.read_only);
        assert_eq!(status.users, 0);
        assert_eq!(status.pid, std::process::id());
        assert!(status.data_dir.ends_with("data"));

        let reply = ask(&r.path, Request::SetReadOnly { read_only: false })
            .await
            .unwrap();
        assert_eq!(
            reply,
            Response::ReadOnly {
                was: true,
                read_only: false
            }
        );
        assert!(!r.switch.is_read_only());
        r.stop.cancel();
        r.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_and_oversized_requests_get_typed_errors() {
        let r = start(false).await;
        // Several requests on one connection, answered in order.
        let replies = raw(
            &r.path,
            b"{\"op\":\"status\"}\nnot json\n{\"op\":\"delete_user\",\"name\":\"x\",\"typo\":1}\n{\"op\":\"explode\"}\n\xff\n".to_vec(),
        )
        .await;
        assert_eq!(replies.len(), 5, "{replies:?}");
        assert_eq!(replies[0]["type"], "status");
        for r in &replies[1..] {
            assert_eq!(r["type"], "error", "{r}");
            assert_eq!(r["code"], "bad_request", "{r}");
        }

        let mut big = vec![b'x'; REQUEST_LINE_MAX_BYTES + 10];
        big.push(b'\n');
        let replies = raw(&r.path, big).await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["code"], "too_large");

        // The endpoint still serves after both.
        assert!(matches!(
            ask(&r.path, Request::Status).await.unwrap(),
            Response::Status { .. }
        ));
        r.stop.cancel();
        r.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn connections_over_the_limit_are_told_busy() {
        let r = start(false).await;
        let path = r.path.clone();
        let replies = tokio::task::spawn_blocking(move || {
            // Hold CONNECTIONS_MAX idle connections open...
            let held: Vec<StdStream> = (0..CONNECTIONS_MAX)
                .map(|_| {
                    let s = StdStream::connect(&path).unwrap();
                    // Prove each is being served.
                    (&s).write_all(b"{\"op\":\"status\"}\n").unwrap();
                    let mut line = String::new();
                    std::io::BufReader::new(&s).read_line(&mut line).unwrap();
                    assert!(line.contains("\"status\""), "{line}");
                    s
                })
                .collect();
            // ...then one more is refused with `busy`.
            let extra = StdStream::connect(&path).unwrap();
            extra
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&extra)
                .read_line(&mut line)
                .unwrap();
            drop(held);
            line
        })
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&replies).unwrap();
        assert_eq!(v["code"], "busy", "{v}");
        // Once they are gone, connections are served again.
        let mut served = false;
        for _ in 0..100 {
            if ask(&r.path, Request::Status).await.is_ok() {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served);
        r.stop.cancel();
        r.task.await.unwrap().unwrap();
    }

    #[test]
    fn client_reports_a_missing_socket_and_long_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = admin_request(&dir.path().join("nothing.sock"), &Request::Status).unwrap_err();
        assert!(matches!(err, AdminError::Connect { .. }), "{err}");
        let long = dir.path().join("x".repeat(SOCKET_PATH_LEN_MAX_BYTES));
        assert!(matches!(bind(&long), Err(AdminError::PathTooLong { .. })));
    }

    #[test]
    fn requests_round_trip_as_documented() {
        let r: Request = serde_json::from_str(
            r#"{"op":"create_user","name":"a","password_hash":"h","admin":true}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::CreateUser {
                name: "a".into(),
                password_hash: "h".into(),
                admin: true
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"op":"set_read_only","read_only":true}"#).unwrap();
        assert_eq!(r.op(), "set_read_only");
        assert_eq!(ErrorCode::NoSuchUser.to_string(), "no_such_user");
    }
}
