//! `ctl user move NAME --to STORE`: move a user between stores by
//! replication (docs/operations.md, "Moving a user"; the stream itself is
//! `slotmail_repl::migrate`, docs/replication.md).
//!
//! ```text
//!  (none) ──begin──▶ copying ──freeze, drained, equal──▶ final ──switch──▶ switched ──old copy removed──▶ (none)
//!                       ▲                                   │
//!                       └──── not equal in time: thaw ──────┘
//!  copying/final ──--abort: stop, thaw, remove the partial copy──▶ (none), user where it was
//! ```
//!
//! The directory keeps the move and its phase, so every step is visible in
//! `ctl status` and `ctl user show`, a second move or a delete of the user
//! is refused, and running the command again continues from the phase it
//! finds (every step is idempotent: grants, the copy, the freeze, the
//! deletion of the old copy). Before the switch a move can also be undone
//! (`--abort`); after it, only finished.

use crate::verify::{self, POLL_INTERVAL, ask, ms, prove_equal};
use crate::{CtlError, Ctx, Exit, Report};
use serde_json::json;
use slotmail_directory::{Directory, DirectoryError, MovePhase, Slot, Topology, UserMove};
use slotmail_slot::admin::{AdminError, ErrorCode, Request, Response};
use slotmail_slot::admin_mail::{DigestSide, UserDigest};
use slotmail_slot::moves::MoveOutStatus;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Default bound on the first copy.
pub const COPY_TIMEOUT_SECS_DEFAULT: u64 = 600;
/// Default bound on the final round (the user's writes are refused).
pub const FREEZE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// A freeze ends by itself this long after its bound, should this command
/// die while the user is frozen.
pub const FREEZE_TTL_MARGIN: Duration = Duration::from_secs(30);
/// Longest wait for the old store's replicas to drop the user.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest wait for the new store's replicas to hold the moved user
/// before the switch (the rest of the freeze bound, at least this) ...
pub const REPLICA_SYNC_WAIT_MIN: Duration = Duration::from_millis(500);
/// ... and longest: a replica that is slower catches up after the switch
/// (reported as a warning).
pub const REPLICA_SYNC_WAIT_MAX: Duration = Duration::from_secs(2);
/// How often progress is printed during the copy.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Options of one `user move`.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    pub copy_only: bool,
    pub abort: bool,
    pub copy_timeout: Duration,
    pub freeze_timeout: Duration,
}

/// What the command does first, decided from the directory alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// No move yet: begin one from `from`.
    Begin { from: String, to: String },
    /// A move to the same store is under way: continue from its phase.
    Resume(UserMove),
    /// `--abort` of a move that has not switched.
    Abort(UserMove),
}

/// Decide what `user move` does with `user`, `to` and `--abort`, or refuse
/// (exit 2, nothing changed): unknown user or store, the store it is in,
/// a move elsewhere under way, an abort without a move or after the
/// switch.
pub(crate) fn decide(
    t: &Topology,
    user: &str,
    to: Option<&str>,
    abort: bool,
) -> Result<Start, CtlError> {
    let current = t
        .users
        .get(user)
        .ok_or_else(|| DirectoryError::UnknownUser(user.to_string()))?;
    if let Some(to) = to
        && !t.stores.contains_key(to)
    {
        return Err(DirectoryError::UnknownStore(to.to_string()).into());
    }
    let moving = t.moves.get(user);
    if abort {
        let m = moving.ok_or_else(|| DirectoryError::NotMoving(user.to_string()))?;
        if to.is_some_and(|to| to != m.to) {
            return Err(CtlError::Usage(format!(
                "user {user} is being moved to {}, not {}",
                m.to,
                to.unwrap_or_default()
            )));
        }
        if m.phase == MovePhase::Switched {
            return Err(CtlError::Usage(format!(
                "the move of {user} to {} has switched already: it can only be finished \
                 (run `ctl user move {user} --to {}` again)",
                m.to, m.to
            )));
        }
        return Ok(Start::Abort(m.clone()));
    }
    let to = to.ok_or_else(|| CtlError::Usage("--to STORE is required".into()))?;
    match moving {
        Some(m) if m.to == to => Ok(Start::Resume(m.clone())),
        Some(m) => Err(DirectoryError::UserMoving {
            user: user.to_string(),
            from: m.from.clone(),
            to: m.to.clone(),
            phase: m.phase.as_str(),
        }
        .into()),
        None if current == to => Err(DirectoryError::AlreadyInStore {
            user: user.to_string(),
            store: to.to_string(),
        }
        .into()),
        None => Ok(Start::Begin {
            from: current.clone(),
            to: to.to_string(),
        }),
    }
}

/// A store's master slot and its sync address.
fn master_of<'a>(t: &'a Topology, store: &str) -> Result<(&'a Slot, std::net::IpAddr), CtlError> {
    let st = t
        .stores
        .get(store)
        .ok_or_else(|| DirectoryError::UnknownStore(store.to_string()))?;
    let slot = verify::slot(t, st.master())?;
    let address = t
        .machines
        .get(&slot.machine)
        .ok_or_else(|| DirectoryError::UnknownMachine(slot.machine.clone()))?
        .address;
    Ok((slot, address))
}

/// One user's digest on a slot (`None`: the slot has no such user).
fn digest(
    ctx: &Ctx,
    s: &Slot,
    user: &str,
    side: DigestSide,
) -> Result<Option<UserDigest>, CtlError> {
    match ask(
        ctx,
        s,
        &Request::UserDigest {
            name: user.to_string(),
            side,
        },
    )? {
        Response::Digests { users } => Ok(users.into_iter().next()),
        other => Err(verify::unexpected(&s.id, &other)),
    }
}

/// Source (master side) and target (replica side) proven equal for `user`.
fn equal(ctx: &Ctx, source: &Slot, target: &Slot, user: &str) -> Result<(bool, u64), CtlError> {
    let a = digest(ctx, source, user, DigestSide::Master)?;
    let b = digest(ctx, target, user, DigestSide::Replica)?;
    let modseq = a.as_ref().map_or(0, |d| d.modseq);
    let one = |d: Option<UserDigest>| -> BTreeMap<String, UserDigest> {
        d.into_iter().map(|d| (d.name.clone(), d)).collect()
    };
    Ok((prove_equal(&one(a), &one(b)).equal, modseq))
}

fn move_out(ctx: &Ctx, s: &Slot, request: &Request) -> Result<Option<MoveOutStatus>, CtlError> {
    match ask(ctx, s, request)? {
        Response::MoveOut { status } => Ok(status),
        other => Err(verify::unexpected(&s.id, &other)),
    }
}

fn freeze(ctx: &Ctx, s: &Slot, user: &str, ttl: Option<Duration>) -> Result<(), CtlError> {
    ask(
        ctx,
        s,
        &Request::FreezeUser {
            name: user.to_string(),
            frozen: ttl.is_some(),
            ttl_ms: ttl.map(|d| d.as_millis() as u64),
        },
    )?;
    Ok(())
}

fn grant(ctx: &Ctx, target: &Slot, user: &str, from: &Slot, on: bool) -> Result<(), CtlError> {
    ask(
        ctx,
        target,
        &Request::MoveIn {
            name: user.to_string(),
            from_slot: from.id.clone(),
            grant: on,
        },
    )?;
    Ok(())
}

/// Whether an admin failure is "no such user" (an idempotent step done
/// before).
fn no_such_user(e: &CtlError) -> bool {
    matches!(
        e,
        CtlError::Admin {
            source: AdminError::Remote {
                code: ErrorCode::NoSuchUser,
                ..
            },
            ..
        }
    )
}

/// Remove `user` from store `store` (master `master`) and wait until its
/// replicas dropped it too. The master's replicators hold a deleted user
/// (mass-deletion guard); this is an explicit admin action, so each hold is
/// confirmed (`repl_confirm`) until every replica has let the user go.
/// Returns per replica what happened.
fn purge(
    ctx: &Ctx,
    t: &Topology,
    store: &str,
    master: &Slot,
    user: &str,
) -> Result<Vec<serde_json::Value>, CtlError> {
    match ask(
        ctx,
        master,
        &Request::DeleteUser {
            name: user.to_string(),
        },
    ) {
        Ok(_) => {}
        Err(e) if no_such_user(&e) => {}
        Err(e) => return Err(e),
    }
    let replicas: Vec<&Slot> = t.stores[store]
        .replicas()
        .iter()
        .filter(|r| !t.is_fenced(r))
        .filter_map(|r| t.slots.get(r))
        .collect();
    let start = Instant::now();
    let mut done = Vec::new();
    for r in replicas {
        loop {
            match digest(ctx, r, user, DigestSide::Replica) {
                Ok(None) => {
                    done.push(json!({"slot": r.id, "removed": true, "ms": ms(start)}));
                    break;
                }
                Ok(Some(_)) => {}
                Err(e) if start.elapsed() >= CLEANUP_TIMEOUT => {
                    return Err(CtlError::Failed(format!(
                        "replica {} of store {store} does not answer ({e}); once it is back, \
                         run the command again to remove {user} from it",
                        r.id
                    )));
                }
                Err(_) => {}
            }
            if start.elapsed() >= CLEANUP_TIMEOUT {
                return Err(CtlError::Failed(format!(
                    "replica {} of store {store} still holds {user} after {} s; run the \
                     command again to finish",
                    r.id,
                    CLEANUP_TIMEOUT.as_secs()
                )));
            }
            // Release the guard's hold, if it holds the user (an error
            // means it does not, yet).
            let _ = ask(
                ctx,
                master,
                &Request::ReplConfirm {
                    user: user.to_string(),
                    replica: Some(r.id.clone()),
                },
            );
            std::thread::sleep(POLL_INTERVAL * 5);
        }
    }
    Ok(done)
}

/// Wait (at most `limit`) until every replica of store `store` (master
/// `master`) holds `user` as the master does. Returns per replica whether
/// it did and when.
fn replicas_caught_up(
    ctx: &Ctx,
    t: &Topology,
    store: &str,
    master: &Slot,
    user: &str,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    let mut out = Vec::new();
    for r in t.stores[store]
        .replicas()
        .iter()
        .filter(|r| !t.is_fenced(r))
        .filter_map(|r| t.slots.get(r))
    {
        let equal = loop {
            if let Ok((true, _)) = equal(ctx, master, r, user) {
                break true;
            }
            if start.elapsed() >= limit {
                break false;
            }
            std::thread::sleep(POLL_INTERVAL * 5);
        };
        out.push(json!({"slot": r.id, "equal": equal, "ms": ms(start)}));
    }
    out
}

/// `ctl user move NAME --to STORE` (or `--abort`).
pub(crate) fn user_move(
    ctx: &Ctx,
    user: &str,
    to: Option<&str>,
    opts: &MoveOptions,
) -> Result<Report, CtlError> {
    let d = &ctx.directory;
    let t = d.snapshot()?;
    let started = Instant::now();
    let start = decide(&t, user, to, opts.abort)?;
    if let Start::Abort(m) = start {
        return abort(ctx, &t, &m);
    }
    let (from, to, resumed) = match &start {
        Start::Begin { from, to } => (from.clone(), to.clone(), None),
        Start::Resume(m) => (m.from.clone(), m.to.clone(), Some(m.phase)),
        Start::Abort(_) => unreachable!("handled above"),
    };
    let (source, _) = master_of(&t, &from)?;
    let (target, target_ip) = master_of(&t, &to)?;
    let mut steps: Vec<serde_json::Value> = Vec::new();
    // The source's MODSEQ the equality proof saw (this run's switch).
    let mut proven: Option<u64> = None;
    let mut new_replicas: Vec<serde_json::Value> = Vec::new();
    let step = |name: &str, steps: &mut Vec<serde_json::Value>| {
        steps.push(json!({"step": name, "at_ms": ms(started)}));
    };

    if resumed != Some(MovePhase::Switched) {
        // Both masters must answer before anything changes.
        for (s, which) in [(target, "target"), (source, "source")] {
            verify::status(ctx, s).map_err(|e| {
                CtlError::Failed(format!(
                    "the {which} store's master {} does not answer ({e}); nothing was changed",
                    s.id
                ))
            })?;
        }
        if resumed.is_none() {
            d.begin_move(user, &from, &to)?;
            step("begin", &mut steps);
        }
        if resumed == Some(MovePhase::Final) {
            // Interrupted in the final round: thaw, and run it again below.
            freeze(ctx, source, user, None)?;
            d.set_move_phase(user, MovePhase::Copying)?;
        }
        // The copy: the target accepts the user from the source master, the
        // source master replicates it there.
        grant(ctx, target, user, source, true)?;
        let move_target = slotmail_slot::moves::MoveTarget {
            store: to.clone(),
            slot: target.id.clone(),
            address: std::net::SocketAddr::new(target_ip, target.sync_port),
            epoch: t.stores[&to].epoch,
        };
        move_out(
            ctx,
            source,
            &Request::MoveOutStart {
                name: user.to_string(),
                target: move_target,
            },
        )?;
        step("copy started", &mut steps);
        let copy_started = Instant::now();
        let first = digest(ctx, source, user, DigestSide::Master)?.ok_or_else(|| {
            CtlError::Failed(format!(
                "the source master {} has no user {user}",
                source.id
            ))
        })?;
        let mut last_progress = Instant::now();
        loop {
            let status = move_out(
                ctx,
                source,
                &Request::MoveOutStatus {
                    name: user.to_string(),
                },
            )?;
            if let Some(reason) = status.as_ref().and_then(|s| s.held.clone()) {
                return Err(CtlError::Failed(format!(
                    "the copy of {user} into store {to} is held: {reason}. The move stays \
                     marked; remove the conflicting user from store {to} and run the \
                     command again, or undo it with --abort"
                )));
            }
            let there = digest(ctx, target, user, DigestSide::Replica)?;
            let position = there
                .as_ref()
                .filter(|d| d.user_id == first.user_id)
                .map_or(0, |d| d.modseq);
            if position >= first.modseq {
                break;
            }
            if copy_started.elapsed() >= opts.copy_timeout {
                return Err(CtlError::Failed(format!(
                    "the first copy of {user} did not complete within {} s (position {position} \
                     of {}; last error: {}). The copy goes on; run the command again to \
                     continue, or undo it with --abort",
                    opts.copy_timeout.as_secs(),
                    first.modseq,
                    status
                        .and_then(|s| s.last_error)
                        .unwrap_or_else(|| "none".into())
                )));
            }
            if last_progress.elapsed() >= PROGRESS_INTERVAL {
                let trouble = status
                    .as_ref()
                    .and_then(|s| s.last_error.as_deref())
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                eprintln!(
                    "moving {user} to {to}: copied up to MODSEQ {position} of {}{trouble}",
                    first.modseq
                );
                last_progress = Instant::now();
            }
            std::thread::sleep(POLL_INTERVAL * 5);
        }
        step("first copy done", &mut steps);
        let copy_ms = ms(copy_started);
        if opts.copy_only {
            return Ok(Report {
                text: format!(
                    "copying {user} from store {from} to {to}: the first copy took {copy_ms} ms; \
                     changes keep being copied. Finish with `slotmail ctl user move {user} --to {to}`\n"
                ),
                json: json!({
                    "user": user, "from": from, "to": to, "phase": "copying",
                    "resumed_from": resumed.map(MovePhase::as_str),
                    "copy_ms": copy_ms, "steps": steps,
                }),
                exit: Exit::Ok,
            });
        }

        // The final round: refuse the user's writes on the source, let the
        // copy catch up, prove equality.
        d.set_move_phase(user, MovePhase::Final)?;
        freeze(
            ctx,
            source,
            user,
            Some(opts.freeze_timeout + FREEZE_TTL_MARGIN),
        )?;
        let frozen_at = Instant::now();
        step("writes refused", &mut steps);
        let thaw = |why: String| -> CtlError {
            let _ = freeze(ctx, source, user, None);
            let _ = d.set_move_phase(user, MovePhase::Copying);
            CtlError::Failed(format!(
                "{why}; the user's writes resumed on store {from} and the copy goes on. Run \
                 the command again to retry the final round, or undo the move with --abort"
            ))
        };
        loop {
            match equal(ctx, source, target, user) {
                Ok((true, _)) => break,
                Ok((false, _)) => {}
                Err(e) => return Err(thaw(format!("the final round failed: {e}"))),
            }
            if frozen_at.elapsed() >= opts.freeze_timeout {
                return Err(thaw(format!(
                    "store {to} did not catch up with {user} within {} ms",
                    opts.freeze_timeout.as_millis()
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        // Stop the copy, then prove once more with nothing moving: a write
        // that was past its check when the freeze came would show here.
        move_out(
            ctx,
            source,
            &Request::MoveOutStop {
                name: user.to_string(),
            },
        )
        .map_err(|e| thaw(format!("stopping the copy failed: {e}")))?;
        grant(ctx, target, user, source, false)
            .map_err(|e| thaw(format!("ending the grant failed: {e}")))?;
        let (same, modseq) =
            equal(ctx, source, target, user).map_err(|e| thaw(format!("the proof failed: {e}")))?;
        if !same {
            return Err(thaw(format!(
                "{user} changed on store {from} after the final round"
            )));
        }
        step("proven equal", &mut steps);
        proven = Some(modseq);
        // The new store's replicas take the user by its master's ordinary
        // replication; nothing writes to the user there until the switch,
        // so they are proven equal now, within what is left of the bound
        // (a replica that is down catches up later; reported).
        let budget = opts
            .freeze_timeout
            .saturating_sub(frozen_at.elapsed())
            .clamp(REPLICA_SYNC_WAIT_MIN, REPLICA_SYNC_WAIT_MAX);
        new_replicas = replicas_caught_up(ctx, &t, &to, target, user, budget);
        step("new replicas checked", &mut steps);
        d.switch_move(user)?;
        step("switched", &mut steps);
        eprintln!("moved {user} to {to} (MODSEQ {modseq}); removing the old copy from {from}");
    }

    // Cleanup: the old store's copy goes, on its master and its replicas.
    let t = d.snapshot()?;
    let (source, _) = master_of(&t, &from)?;
    let switched_at = steps
        .iter()
        .find(|s| s["step"] == "switched")
        .and_then(|s| s["at_ms"].as_u64());
    let refused_from = steps
        .iter()
        .find(|s| s["step"] == "writes refused")
        .and_then(|s| s["at_ms"].as_u64());
    // A write that was past its check when the freeze came and committed
    // after the proof would be on the old copy only: keep it then.
    if let Some(m) = proven
        && let Some(now) = digest(ctx, source, user, DigestSide::Master)?
        && now.modseq != m
    {
        return Err(CtlError::Failed(format!(
            "{user} changed on the old store {from} after the proof (MODSEQ {m} -> {}); \
             its copy there is kept: look at it (`mail_state` on slot {}) before running the \
             command again, which removes it",
            now.modseq, source.id
        )));
    }
    let removed = purge(ctx, &t, &from, source, user)?;
    let _ = freeze(ctx, source, user, None);
    step("old copy removed", &mut steps);
    d.end_move(user)?;
    let route = d.route(user)?;
    let lagging: Vec<&str> = new_replicas
        .iter()
        .filter(|r| r["equal"] != true)
        .filter_map(|r| r["slot"].as_str())
        .collect();
    let warning = (!lagging.is_empty()).then(|| {
        format!(
            "replica(s) {} of store {to} do not hold {user} as its master does yet; see \
             `slotmail ctl repl status {to}`",
            lagging.join(" ")
        )
    });
    let write_refusal_ms = match (refused_from, switched_at) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let total_ms = ms(started);
    Ok(Report {
        text: format!(
            "moved {user} from store {from} to {to} (master {}){}; old copy removed from {from} \
             and {} replica(s); {total_ms} ms in all\n{}",
            route.master.id,
            write_refusal_ms
                .map(|w| format!(", writes refused for {w} ms"))
                .unwrap_or_default(),
            removed.len(),
            warning
                .as_ref()
                .map(|w| format!("warning: {w}\n"))
                .unwrap_or_default()
        ),
        json: json!({
            "user": user,
            "from": from,
            "to": to,
            "phase": "done",
            "resumed_from": resumed.map(MovePhase::as_str),
            "master": route.master.id,
            "epoch": route.epoch,
            "write_refusal_ms": write_refusal_ms,
            "total_ms": total_ms,
            "old_replicas": removed,
            "new_replicas": new_replicas,
            "warnings": warning.into_iter().collect::<Vec<_>>(),
            "steps": steps,
        }),
        exit: Exit::Ok,
    })
}

/// `--abort`: stop the copy, thaw the user, remove the partial copy from
/// the target store, forget the move. The user stays where it was.
fn abort(ctx: &Ctx, t: &Topology, m: &UserMove) -> Result<Report, CtlError> {
    let user = &m.user;
    let (source, _) = master_of(t, &m.from)?;
    let (target, _) = master_of(t, &m.to)?;
    move_out(ctx, source, &Request::MoveOutStop { name: user.clone() })?;
    freeze(ctx, source, user, None)?;
    grant(ctx, target, user, source, false)?;
    // Remove the partial copy only if it is this user's (same user id).
    let ours = digest(ctx, source, user, DigestSide::Master)?.map(|d| d.user_id);
    let theirs = digest(ctx, target, user, DigestSide::Replica)?.map(|d| d.user_id);
    let removed = match (&ours, &theirs) {
        (Some(a), Some(b)) if a == b => Some(purge(ctx, t, &m.to, target, user)?),
        _ => None,
    };
    ctx.directory.end_move(user)?;
    Ok(Report {
        text: format!(
            "aborted the move of {user} to {}: {} stays in store {}\n",
            m.to, user, m.from
        ),
        json: json!({
            "user": user,
            "from": m.from,
            "to": m.to,
            "phase": "aborted",
            "aborted_in": m.phase.as_str(),
            "partial_copy_removed": removed.is_some(),
            "user_id": ours,
            "target_user_id": theirs,
            "target_replicas": removed,
        }),
        exit: Exit::Ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_directory::Store;

    fn topology() -> Topology {
        let mut t = Topology::default();
        for id in ["s1", "s2"] {
            t.stores.insert(
                id.into(),
                Store {
                    id: id.into(),
                    slots: vec![],
                    epoch: 1,
                    sync: false,
                    last_check: None,
                },
            );
        }
        t.users.insert("ann".into(), "s1".into());
        t
    }

    fn moving(phase: MovePhase) -> UserMove {
        UserMove {
            user: "ann".into(),
            from: "s1".into(),
            to: "s2".into(),
            phase,
            started_unix_ms: 1,
        }
    }

    fn refusal(r: Result<Start, CtlError>) -> String {
        let e = r.expect_err("refused");
        assert_eq!(e.exit(), Exit::Usage, "{e}");
        e.to_string()
    }

    #[test]
    fn bad_input_is_refused_before_anything_changes() {
        let t = topology();
        assert!(refusal(decide(&t, "bob", Some("s2"), false)).contains("unknown user bob"));
        assert!(refusal(decide(&t, "ann", Some("s9"), false)).contains("unknown store s9"));
        assert!(refusal(decide(&t, "ann", Some("s1"), false)).contains("already"));
        assert!(refusal(decide(&t, "ann", None, false)).contains("--to"));
        assert!(refusal(decide(&t, "ann", None, true)).contains("not being moved"));
        assert_eq!(
            decide(&t, "ann", Some("s2"), false).unwrap(),
            Start::Begin {
                from: "s1".into(),
                to: "s2".into()
            }
        );
    }

    #[test]
    fn a_move_under_way_is_resumed_aborted_or_refused() {
        let mut t = topology();
        t.stores.insert(
            "s3".into(),
            Store {
                id: "s3".into(),
                slots: vec![],
                epoch: 1,
                sync: false,
                last_check: None,
            },
        );
        for phase in [MovePhase::Copying, MovePhase::Final] {
            t.moves.insert("ann".into(), moving(phase));
            assert_eq!(
                decide(&t, "ann", Some("s2"), false).unwrap(),
                Start::Resume(moving(phase))
            );
            // A second move elsewhere is refused.
            assert!(refusal(decide(&t, "ann", Some("s3"), false)).contains("being moved"));
            assert_eq!(
                decide(&t, "ann", None, true).unwrap(),
                Start::Abort(moving(phase))
            );
            assert!(refusal(decide(&t, "ann", Some("s3"), true)).contains("not s3"));
        }
        // Switched (the directory routes to s2 now): only finishing.
        t.users.insert("ann".into(), "s2".into());
        t.moves.insert("ann".into(), moving(MovePhase::Switched));
        assert_eq!(
            decide(&t, "ann", Some("s2"), false).unwrap(),
            Start::Resume(moving(MovePhase::Switched))
        );
        assert!(refusal(decide(&t, "ann", None, true)).contains("only be finished"));
    }
}
