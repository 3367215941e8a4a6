//! A slot's part in moving users between stores (`slotmail ctl user move`,
//! docs/operations.md "Moving a user"), reached through the admin socket:
//!
//! - on the **target** store's master, `move_in` grants (or revokes) a user
//!   moving in from the source master: its sync server then accepts that
//!   user's replication from that slot (`slotmail_repl::migrate`), and the
//!   user's client writes here are refused while it is granted (nobody is
//!   routed here yet; a direct login must not fork the copy). Revoking
//!   queues a comparing round of the user on this master's replicators, so
//!   its replicas take the user at once and whole (its records carry the
//!   source's MODSEQs, older than a replica's position may be);
//! - on the **source** store's master, `move_out_start` runs a one-user
//!   replicator towards the target master, `move_out_status` reports it and
//!   `move_out_stop` ends it.
//!
//! Everything here is in memory: a restarted slot forgets its grants and
//! outgoing moves, and `ctl user move`, run again, sets them up again (the
//! copy is state-based and goes on where it was).

use serde::{Deserialize, Serialize};
pub use slotmail_repl::MoveTarget;
use slotmail_repl::{Replicator, SyncServer};
use slotmail_store::Slot;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most moves a slot runs out at once.
pub const MOVES_OUT_MAX: usize = 64;

/// An outgoing move as `move_out_*` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOutStatus {
    pub user: String,
    pub target: MoveTarget,
    /// The stream's state: `waiting` (not connected), `greeting`, `rolling`.
    pub state: String,
    /// Rounds the target acknowledged.
    pub rounds: u64,
    /// Failed attempts and rounds.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Why the copy is held (the target holds another user of that name).
    pub held: Option<String>,
    /// Age of the oldest change the target has not acknowledged, ms.
    pub lag_ms: u64,
}

/// Why a move request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// This slot cannot take the part asked of it (not a master, no sync).
    #[error("{0}")]
    NotHere(String),
    /// The request conflicts with a move in progress, or a limit.
    #[error("{0}")]
    Refused(String),
}

/// What a slot needs to take part in moves.
pub struct MoveHub {
    slot: Arc<Slot>,
    secret: [u8; 32],
    cluster: String,
    name: String,
    /// The store this slot is master of, if it is one.
    master_of: Option<String>,
    server: Option<SyncServer>,
    replicators: Vec<Replicator>,
    read_only: slotmail_imap::ReadOnlySwitch,
    outgoing: Mutex<BTreeMap<String, (MoveTarget, Replicator)>>,
}

impl std::fmt::Debug for MoveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveHub")
            .field("slot", &self.name)
            .field("master_of", &self.master_of)
            .finish_non_exhaustive()
    }
}

impl MoveHub {
    /// The hub of a slot with replication configured.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        slot: Arc<Slot>,
        secret: [u8; 32],
        cluster: &str,
        name: &str,
        master_of: Option<String>,
        server: Option<SyncServer>,
        replicators: Vec<Replicator>,
        read_only: slotmail_imap::ReadOnlySwitch,
    ) -> MoveHub {
        MoveHub {
            slot,
            secret,
            cluster: cluster.to_string(),
            name: name.to_string(),
            master_of,
            server,
            replicators,
            read_only,
            outgoing: Mutex::new(BTreeMap::new()),
        }
    }

    fn outgoing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (MoveTarget, Replicator)>> {
        self.outgoing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn master(&self, what: &str) -> Result<&str, MoveError> {
        self.master_of.as_deref().ok_or_else(|| {
            MoveError::NotHere(format!(
                "slot {} is not a store's master: it cannot {what}",
                self.name
            ))
        })
    }

    /// Target side: accept (`grant`) or stop accepting `user` from
    /// `from_slot`. Returns the users granted afterwards.
    pub fn move_in(
        &self,
        user: &str,
        from_slot: &str,
        grant: bool,
    ) -> Result<Vec<(String, String)>, MoveError> {
        self.master("take a user in")?;
        let server = self.server.as_ref().ok_or_else(|| {
            MoveError::NotHere(format!("slot {} has no sync listener", self.name))
        })?;
        let grants = server.move_grants();
        if grant {
            grants
                .grant(user, from_slot)
                .map_err(|e| MoveError::Refused(e.to_string()))?;
            self.read_only
                .freeze_user(user, Some(None))
                .map_err(|max| MoveError::Refused(format!("{max} users are frozen already")))?;
            tracing::info!(user, from = from_slot, "user moving in");
        } else {
            grants.revoke(user);
            let _ = self.read_only.freeze_user(user, None);
            // Replicas take the arrived user now, not at the next full
            // comparison, and whole: its records carry the source's MODSEQs,
            // which may be older than a replica's position (a delta round
            // would skip them).
            for r in &self.replicators {
                r.check_user(user);
            }
            tracing::info!(user, from = from_slot, "user no longer moving in");
        }
        Ok(grants.list())
    }

    /// Source side: replicate `user` to `target` (again: the same target
    /// keeps the running copy; another one replaces it).
    pub fn move_out_start(
        &self,
        user: &str,
        target: MoveTarget,
    ) -> Result<MoveOutStatus, MoveError> {
        let store = self.master("move a user out")?;
        if store == target.store {
            return Err(MoveError::Refused(format!(
                "user {user} is in store {store} already"
            )));
        }
        if self.slot.account(user).ok().flatten().is_none() {
            return Err(MoveError::Refused(format!(
                "slot {} has no user {user}",
                self.name
            )));
        }
        let replaced = {
            let mut out = self.outgoing();
            match out.get(user) {
                Some((t, r)) if *t == target => return Ok(status(user, t, r)),
                Some(_) => out.remove(user),
                None if out.len() >= MOVES_OUT_MAX => {
                    return Err(MoveError::Refused(format!(
                        "at most {MOVES_OUT_MAX} users move out of one slot at once"
                    )));
                }
                None => None,
            }
        };
        if let Some((_, old)) = replaced {
            block_on(old.shutdown());
        }
        let r = slotmail_repl::migrate::start(
            self.slot.clone(),
            self.secret,
            &self.cluster,
            &self.name,
            user,
            &target,
            slotmail_repl::Exec::Blocking,
        );
        tracing::info!(user, to = %target.store, master = %target.slot, "user moving out");
        let s = status(user, &target, &r);
        self.outgoing().insert(user.to_string(), (target, r));
        Ok(s)
    }

    /// Source side: how the copy of `user` goes, if one runs.
    pub fn move_out_status(&self, user: &str) -> Option<MoveOutStatus> {
        self.outgoing().get(user).map(|(t, r)| status(user, t, r))
    }

    /// Source side: stop copying `user`; its last status.
    pub fn move_out_stop(&self, user: &str) -> Option<MoveOutStatus> {
        let (t, r) = self.outgoing().remove(user)?;
        block_on(r.shutdown());
        tracing::info!(user, to = %t.store, "user no longer moving out");
        Some(status(user, &t, &r))
    }
}

fn status(user: &str, target: &MoveTarget, r: &Replicator) -> MoveOutStatus {
    let s = r.status();
    MoveOutStatus {
        user: user.to_string(),
        target: target.clone(),
        state: serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        rounds: s.rounds,
        errors: s.errors,
        last_error: s.last_error,
        held: s
            .held
            .into_iter()
            .find(|h| h.user == user)
            .map(|h| h.reason),
        lag_ms: s.lag_ms,
    }
}

/// Wait for `f` on a blocking thread of the runtime (admin requests run
/// there).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}
