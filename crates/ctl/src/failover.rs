//! `ctl failover MACHINE`: promote, for every store whose master was on a
//! dead machine, its most up-to-date replica, fence the old master, and
//! record what reconcile needs (docs/failover.md).

use crate::control::{CLIENT_TIMEOUT, ControlRequest, control_request};
use crate::switchover::PROMOTE_WAIT;
use crate::verify::{self, digests, ms, now_unix_ms, reload, wait_status};
use crate::{CtlError, Ctx, Exit, Report};
use serde::{Deserialize, Serialize};
use serde_json::json;
use slotmail_directory::{Directory, DirectoryError, Topology};
use slotmail_slot::admin::{Request, Response};
use slotmail_slot::admin_mail::{DigestSide, MailChange};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Default bound on the promoted replica's last known lag.
pub const FAILOVER_LAG_MAX_MS_DEFAULT: u64 = 10_000;

/// How far the promoted slot raises UIDNEXT of every mailbox before it
/// becomes master (docs/failover.md, "UID gap"): the UIDs the dead master
/// may have given to appends the replica never received are skipped. Under
/// the lag bound (10 s by default) one mailbox takes well under 1,000
/// appends per second, so at most about 10,000 unreplicated UIDs; the gap is
/// ten times that, 1/42,000 of the UID space. Reconcile handles a collision
/// that still happens.
pub const FAILOVER_UID_GAP: u32 = 100_000;

/// Raise UIDNEXT of every mailbox of every user of `slot` by `gap`
/// ([`FAILOVER_UID_GAP`] by default); returns the users raised and one warning per user
/// not (fully) raised.
fn raise_uid_gap(
    ctx: &Ctx,
    slot: &slotmail_directory::Slot,
    users: &[String],
    gap: u32,
) -> (usize, Vec<String>) {
    if gap == 0 {
        return (0, Vec::new());
    }
    let mut raised = 0;
    let mut warnings = Vec::new();
    for user in users {
        let r = verify::ask(
            ctx,
            slot,
            &Request::MailApply {
                name: user.clone(),
                change: MailChange::RaiseUidNext { gap },
            },
        );
        match r {
            Ok(Response::MailApplied { applied }) if applied.applied => raised += 1,
            Ok(Response::MailApplied { .. }) => warnings.push(format!(
                "{}: user {user}: a mailbox's UIDNEXT cannot be raised by {gap} (UIDs nearly used up); reconcile will renumber any collision",
                slot.id
            )),
            Ok(other) => warnings.push(verify::unexpected(&slot.id, &other).to_string()),
            Err(e) => warnings.push(format!(
                "{}: user {user}: UID gap not taken ({e}); reconcile will renumber any collision",
                slot.id
            )),
        }
    }
    (raised, warnings)
}

/// What `failover` records for `reconcile`, per store
/// (`STATE/failover/STORE-EPOCH.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub store: String,
    pub epoch: u64,
    pub old_master: String,
    pub new_master: String,
    pub at_unix_ms: u64,
    pub reason: String,
    /// The promoted slot's committed position per user at promotion.
    pub positions: BTreeMap<String, u64>,
    /// The last lag the old master published for the promoted replica.
    pub last_lag_ms: Option<u64>,
    pub last_pending_users: Option<u64>,
    /// Age of that status when the failover read it.
    pub last_status_age_ms: Option<u64>,
}

/// Where the record of store `store` at `epoch` is kept.
pub(crate) fn record_path(ctx: &Ctx, store: &str, epoch: u64) -> PathBuf {
    ctx.cluster
        .state_dir
        .join("failover")
        .join(format!("{store}-{epoch}.json"))
}

/// The chosen replica of one store and why.
struct Choice {
    store: String,
    epoch: u64,
    old_master: String,
    new_master: String,
    positions: BTreeMap<String, u64>,
    last_lag_ms: Option<u64>,
    last_pending_users: Option<u64>,
    last_status_age_ms: Option<u64>,
    refusal: Option<String>,
}

/// The candidate whose positions dominate: at least every other's for the
/// most users, then the largest sum, then failover order (first wins).
fn most_up_to_date(candidates: &[(String, BTreeMap<String, u64>)]) -> usize {
    let score = |i: usize| {
        let (_, mine) = &candidates[i];
        let users: std::collections::BTreeSet<&String> =
            candidates.iter().flat_map(|(_, p)| p.keys()).collect();
        let ahead = users
            .iter()
            .filter(|u| {
                let own = mine.get(**u).copied().unwrap_or(0);
                candidates
                    .iter()
                    .all(|(_, p)| p.get(**u).copied().unwrap_or(0) <= own)
            })
            .count();
        let sum: u64 = mine.values().sum();
        (ahead, sum)
    };
    let mut best = 0;
    for i in 1..candidates.len() {
        if score(i) > score(best) {
            best = i;
        }
    }
    best
}

fn choose(
    ctx: &Ctx,
    t: &Topology,
    machine: &str,
    store_id: &str,
    max_lag_ms: u64,
) -> Result<Choice, CtlError> {
    let store = &t.stores[store_id];
    let mut candidates = Vec::new();
    let mut unreachable = Vec::new();
    for r in store.replicas() {
        if t.is_fenced(r) || t.machine_of(r) == Some(machine) {
            continue;
        }
        let s = verify::slot(t, r)?;
        match digests(ctx, s, DigestSide::Replica) {
            Ok(d) => candidates.push((
                r.clone(),
                d.into_iter().map(|(u, x)| (u, x.modseq)).collect(),
            )),
            Err(e) => unreachable.push(format!("{r}: {e}")),
        }
    }
    if candidates.is_empty() {
        return Err(CtlError::Failed(format!(
            "store {store_id}: no replica answers ({})",
            unreachable.join("; ")
        )));
    }
    let best = most_up_to_date(&candidates);
    let (new_master, positions) = candidates.swap_remove(best);
    let master = verify::slot(t, store.master())?;
    let view = crate::status::read_replication(&ctx.cluster, &master.data_dir);
    let lag = view.as_ref().and_then(|v| v.replicas.get(&new_master));
    let last_lag_ms = lag.and_then(|l| l.lag_ms);
    let refusal = match last_lag_ms {
        None => Some(format!(
            "store {store_id}: the lag of {new_master} is unknown (no replication status of {} readable)",
            master.id
        )),
        Some(l) if l > max_lag_ms => Some(format!(
            "store {store_id}: {new_master} lagged {l} ms (more than {max_lag_ms} ms)"
        )),
        Some(_) => None,
    };
    Ok(Choice {
        store: store_id.to_string(),
        epoch: store.epoch,
        old_master: master.id.clone(),
        new_master,
        positions,
        last_lag_ms,
        last_pending_users: lag.and_then(|l| l.pending_users),
        last_status_age_ms: view.as_ref().and_then(|v| v.age_ms),
        refusal,
    })
}

/// `ctl failover MACHINE`.
pub(crate) fn failover(
    ctx: &Ctx,
    machine: &str,
    force: bool,
    max_lag_ms: u64,
    uid_gap: u32,
    reason: Option<&str>,
) -> Result<Report, CtlError> {
    let started = Instant::now();
    let t = ctx.directory.snapshot()?;
    if !t.machines.contains_key(machine) {
        return Err(DirectoryError::UnknownMachine(machine.to_string()).into());
    }
    let reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| format!("failover: machine {machine} down"));
    let stores: Vec<String> = t
        .stores
        .values()
        .filter(|s| t.machine_of(s.master()) == Some(machine))
        .map(|s| s.id.clone())
        .collect();
    // The machine must be dead: neither its supervisor nor a master answers.
    let supervisor_alive = control_request(
        machine,
        &ctx.cluster.machine_socket(machine),
        &ControlRequest::Status,
        CLIENT_TIMEOUT.min(std::time::Duration::from_secs(2)),
    )
    .is_ok();
    let live_masters: Vec<String> = stores
        .iter()
        .filter_map(|id| {
            let m = t.slots.get(t.stores[id].master())?;
            verify::status(ctx, m).ok().map(|_| m.id.clone())
        })
        .collect();
    if (supervisor_alive || !live_masters.is_empty()) && !force {
        return Err(CtlError::Usage(format!(
            "machine {machine} is alive ({}): use `ctl switchover` or `ctl evacuate`, or --force",
            if supervisor_alive {
                "its supervisor answers".to_string()
            } else {
                format!("masters {} answer", live_masters.join(", "))
            }
        )));
    }
    // Decide everything before changing anything.
    let mut choices = Vec::new();
    for id in &stores {
        choices.push(choose(ctx, &t, machine, id, max_lag_ms)?);
    }
    let refusals: Vec<&str> = choices
        .iter()
        .filter_map(|c| c.refusal.as_deref())
        .collect();
    if !refusals.is_empty() && !force {
        return Err(CtlError::Usage(format!(
            "{}; nothing changed (--force promotes anyway)",
            refusals.join("; ")
        )));
    }
    for m in &live_masters {
        if let Some(s) = t.slots.get(m) {
            let _ = verify::set_read_only(ctx, s, true);
        }
    }
    let mut text = String::new();
    let mut done = Vec::new();
    let mut warnings = Vec::new();
    let mut gap_raised = BTreeMap::new();
    for c in &choices {
        // The UID gap, while the slot is still a replica: it is writable
        // as a master only once the flip below is read by its supervisor,
        // so no client gets a UID below the gap.
        let users: Vec<String> = c.positions.keys().cloned().collect();
        let (raised, gap_warnings) =
            raise_uid_gap(ctx, verify::slot(&t, &c.new_master)?, &users, uid_gap);
        warnings.extend(gap_warnings);
        gap_raised.insert(c.store.clone(), raised);
        let epoch = ctx
            .directory
            .fail_over(&c.store, &c.new_master, c.epoch, &reason)?;
        let record = FailoverRecord {
            store: c.store.clone(),
            epoch,
            old_master: c.old_master.clone(),
            new_master: c.new_master.clone(),
            at_unix_ms: now_unix_ms(),
            reason: reason.clone(),
            positions: c.positions.clone(),
            last_lag_ms: c.last_lag_ms,
            last_pending_users: c.last_pending_users,
            last_status_age_ms: c.last_status_age_ms,
        };
        let path = record_path(ctx, &c.store, epoch);
        let write = std::fs::create_dir_all(path.parent().expect("has a parent")).and_then(|()| {
            crate::supervisor::write_atomically(
                &path,
                &serde_json::to_vec_pretty(&record).expect("records serialize"),
            )
        });
        if let Err(source) = write {
            warnings.push(format!("cannot write {}: {source}", path.display()));
        }
        done.push((record, epoch));
    }
    let machines: std::collections::BTreeSet<String> = choices
        .iter()
        .filter_map(|c| t.machine_of(&c.new_master).map(str::to_string))
        .collect();
    for m in &machines {
        if let Err(e) = reload(ctx, m) {
            warnings.push(format!("supervisor of {m} not reached ({e})"));
        }
    }
    let mut stores_json = Vec::new();
    for (record, epoch) in &done {
        let s = verify::slot(&t, &record.new_master)?;
        let writable = wait_status(ctx, s, PROMOTE_WAIT, |st| !st.read_only).is_some();
        let promoted_ms = ms(started);
        let highest = record.positions.values().max().copied().unwrap_or(0);
        let _ = writeln!(
            text,
            "store {}: {} -> {} at epoch {epoch}{}; old master {} fenced\n  last replicated: {} users, highest position {highest}\n  may be unreplicated: {}\n  UIDNEXT raised by {uid_gap} for {} of {} users",
            record.store,
            record.old_master,
            record.new_master,
            if writable {
                format!(", accepting writes after {promoted_ms} ms")
            } else {
                ", NOT accepting writes yet".to_string()
            },
            record.old_master,
            record.positions.len(),
            match (record.last_lag_ms, record.last_pending_users) {
                (Some(l), Some(p)) => format!(
                    "{p} user(s), lag {l} ms, in the old master's last status ({} ms old)",
                    record.last_status_age_ms.unwrap_or(0)
                ),
                (Some(l), None) => format!("lag {l} ms in the old master's last status"),
                _ => "unknown (no status of the old master readable)".to_string(),
            },
            gap_raised.get(&record.store).copied().unwrap_or(0),
            record.positions.len()
        );
        if !writable {
            warnings.push(format!(
                "{} does not accept writes after {} s",
                record.new_master,
                PROMOTE_WAIT.as_secs()
            ));
        }
        stores_json.push(json!({
            "store": record.store,
            "epoch": epoch,
            "old_master": record.old_master,
            "new_master": record.new_master,
            "fenced": record.old_master,
            "writable": writable,
            "promoted_ms": promoted_ms,
            "replicated_users": record.positions.len(),
            "highest_position": highest,
            "last_lag_ms": record.last_lag_ms,
            "last_pending_users": record.last_pending_users,
            "uid_gap": uid_gap,
            "uid_gap_users": gap_raised.get(&record.store).copied().unwrap_or(0),
            "record": record_path(ctx, &record.store, *epoch),
        }));
    }
    if stores.is_empty() {
        let _ = writeln!(text, "machine {machine} holds no master");
    }
    for w in &warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    let all_writable = stores_json.iter().all(|s| s["writable"] == true);
    Ok(Report {
        text,
        json: json!({
            "machine": machine,
            "stores": stores_json,
            "elapsed_ms": ms(started),
            "warnings": warnings,
        }),
        exit: if all_writable { Exit::Ok } else { Exit::Failed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_up_to_date_replica_wins() {
        let p = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|(u, m)| (u.to_string(), *m)).collect()
        };
        let c = vec![
            ("b1".to_string(), p(&[("a", 5), ("b", 3)])),
            ("c1".to_string(), p(&[("a", 5), ("b", 4)])),
        ];
        assert_eq!(most_up_to_date(&c), 1);
        // Ties keep the failover order.
        let c = vec![
            ("b1".to_string(), p(&[("a", 5)])),
            ("c1".to_string(), p(&[("a", 5)])),
        ];
        assert_eq!(most_up_to_date(&c), 0);
        // Ahead on more users beats a larger sum.
        let c = vec![
            ("b1".to_string(), p(&[("a", 100), ("b", 1), ("c", 1)])),
            ("c1".to_string(), p(&[("a", 99), ("b", 2), ("c", 2)])),
        ];
        assert_eq!(most_up_to_date(&c), 1);
    }
}
