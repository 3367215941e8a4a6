//! `ctl switchover STORE [--to SLOT]` and `ctl evacuate MACHINE`: planned
//! changes of master without losing a write (docs/failover.md).

use crate::verify::{
    self, Equality, POLL_INTERVAL, digests, ms, prove_equal, reload, set_read_only, slot,
    wait_status,
};
use crate::{CtlError, Ctx, Exit, Report};
use serde::Serialize;
use serde_json::json;
use slotmail_directory::{Directory, DirectoryError, Topology};
use slotmail_slot::admin_mail::DigestSide;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Default bound on the target's replication lag before a switchover.
pub const SWITCH_LAG_MAX_MS_DEFAULT: u64 = 10_000;
/// Default bound on draining; past it the switchover is aborted.
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// How long the new master may take to restart and accept writes.
pub const PROMOTE_WAIT: Duration = Duration::from_secs(30);

/// Options of one switchover.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub max_lag_ms: u64,
    pub drain_timeout_ms: u64,
    pub reason: String,
}

/// What one switchover did and how long each step took.
#[derive(Debug, Clone, Serialize)]
pub struct Switched {
    pub store: String,
    pub old_master: String,
    pub new_master: String,
    pub epoch: u64,
    /// Master set read-only → target drained and proven equal.
    pub drain_ms: u64,
    /// → directory changed.
    pub flip_ms: u64,
    /// Master set read-only → new master accepts writes: the window of
    /// refused writes.
    pub write_refusal_ms: u64,
    /// Master set read-only → old master back as a replica.
    pub old_master_back_ms: Option<u64>,
    pub equality: Equality,
    pub warnings: Vec<String>,
}

/// Switch store `store_id` over to `to` (or its first replica).
pub(crate) fn switch_store(
    ctx: &Ctx,
    t: &Topology,
    store_id: &str,
    to: Option<&str>,
    opts: &SwitchOptions,
) -> Result<Switched, CtlError> {
    let store = t
        .stores
        .get(store_id)
        .ok_or_else(|| DirectoryError::UnknownStore(store_id.to_string()))?;
    let target_id = match to {
        Some(id) => {
            slot(t, id)?;
            if store.master() == id {
                return Err(CtlError::Usage(format!(
                    "slot {id} is the master of store {store_id} already"
                )));
            }
            if !store.replicas().iter().any(|r| r == id) {
                return Err(CtlError::Usage(format!(
                    "slot {id} is not a replica of store {store_id} (replicas: {})",
                    store.replicas().join(", ")
                )));
            }
            id.to_string()
        }
        None => store
            .replicas()
            .iter()
            .find(|r| !t.is_fenced(r))
            .cloned()
            .ok_or_else(|| CtlError::Usage(format!("store {store_id} has no usable replica")))?,
    };
    if t.is_fenced(&target_id) {
        return Err(CtlError::Usage(format!(
            "slot {target_id} is fenced: reconcile or rebuild it first"
        )));
    }
    let master = slot(t, store.master())?.clone();
    let target = slot(t, &target_id)?.clone();
    // Both must answer before anything changes.
    let master_status = verify::status(ctx, &master)?;
    verify::status(ctx, &target)?;
    if master_status.read_only {
        return Err(CtlError::Usage(format!(
            "master {} is read-only already (another switchover running?)",
            master.id
        )));
    }
    if let Some(view) = crate::status::read_replication(&ctx.cluster, &master.data_dir)
        && let Some(lag) = view.replicas.get(&target_id).and_then(|r| r.lag_ms)
        && lag > opts.max_lag_ms
    {
        return Err(CtlError::Usage(format!(
            "replica {target_id} lags {lag} ms behind (more than {} ms): not switching over",
            opts.max_lag_ms
        )));
    }
    let epoch = store.epoch;
    let mut warnings = Vec::new();

    // 1. Stop writes on the master.
    let t0 = Instant::now();
    set_read_only(ctx, &master, true)?;
    // 2. + 3. Drain and prove equality.
    let limit = Duration::from_millis(opts.drain_timeout_ms);
    let equality = loop {
        let m = digests(ctx, &master, DigestSide::Master);
        let r = digests(ctx, &target, DigestSide::Replica);
        let (m, r) = match (m, r) {
            (Ok(m), Ok(r)) => (m, r),
            (Err(e), _) | (_, Err(e)) => {
                let _ = set_read_only(ctx, &master, false);
                return Err(CtlError::Failed(format!(
                    "switchover of {store_id} aborted, writes resumed on {}: {e}",
                    master.id
                )));
            }
        };
        let e = prove_equal(&m, &r);
        if e.equal {
            break e;
        }
        if t0.elapsed() >= limit {
            let _ = set_read_only(ctx, &master, false);
            return Err(CtlError::Failed(format!(
                "switchover of {store_id} aborted after {} ms, writes resumed on {}: replica {target_id} is {} (users differing: {})",
                ms(t0),
                master.id,
                if e.drained {
                    "drained but not equal"
                } else {
                    "not drained"
                },
                e.differing.join(", ")
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let drain_ms = ms(t0);
    // 4. Flip.
    let new_epoch = match ctx
        .directory
        .set_master(store_id, &target_id, epoch, &opts.reason)
    {
        Ok(e) => e,
        Err(e) => {
            let _ = set_read_only(ctx, &master, false);
            return Err(e.into());
        }
    };
    let flip_ms = ms(t0);
    // 5. Nudge both supervisors (the new master's first).
    for m in [&target.machine, &master.machine] {
        if let Err(e) = reload(ctx, m) {
            warnings.push(format!(
                "supervisor of {m} not reached ({e}); it follows at its next poll"
            ));
        }
    }
    // 6. Writes resume when the target is a writable master.
    let Some(_) = wait_status(ctx, &target, PROMOTE_WAIT, |s| !s.read_only) else {
        return Err(CtlError::Failed(format!(
            "store {store_id} is at epoch {new_epoch} with master {target_id}, but {target_id} does not accept writes after {} s; see its log",
            PROMOTE_WAIT.as_secs()
        )));
    };
    let write_refusal_ms = ms(t0);
    let old_pid = master_status.pid;
    let old_master_back_ms = wait_status(ctx, &master, PROMOTE_WAIT, |s| {
        s.pid != old_pid && s.read_only
    })
    .map(|_| ms(t0));
    if old_master_back_ms.is_none() {
        warnings.push(format!(
            "old master {} is not back as a replica after {} s",
            master.id,
            PROMOTE_WAIT.as_secs()
        ));
    }
    Ok(Switched {
        store: store_id.to_string(),
        old_master: master.id,
        new_master: target_id,
        epoch: new_epoch,
        drain_ms,
        flip_ms,
        write_refusal_ms,
        old_master_back_ms,
        equality,
        warnings,
    })
}

fn describe(s: &Switched) -> String {
    let mut text = format!(
        "store {}: master {} -> {} at epoch {}\n  writes refused {} ms (drained and proven equal after {} ms: {} users; directory changed at {} ms){}\n",
        s.store,
        s.old_master,
        s.new_master,
        s.epoch,
        s.write_refusal_ms,
        s.drain_ms,
        s.equality.users,
        s.flip_ms,
        s.old_master_back_ms
            .map(|b| format!("; old master back as a replica at {b} ms"))
            .unwrap_or_default()
    );
    for w in &s.warnings {
        let _ = writeln!(text, "  warning: {w}");
    }
    text
}

/// `ctl switchover STORE [--to SLOT]`.
pub(crate) fn switchover(
    ctx: &Ctx,
    store: &str,
    to: Option<&str>,
    opts: &SwitchOptions,
) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let s = switch_store(ctx, &t, store, to, opts)?;
    Ok(Report {
        text: describe(&s),
        json: serde_json::to_value(&s).expect("reports serialize"),
        exit: Exit::Ok,
    })
}

/// `ctl evacuate MACHINE`: switch over every master off the machine, each
/// to the replica on the machine with the fewest masters at that moment.
pub(crate) fn evacuate(ctx: &Ctx, machine: &str, opts: &SwitchOptions) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    if !t.machines.contains_key(machine) {
        return Err(DirectoryError::UnknownMachine(machine.to_string()).into());
    }
    let stores: Vec<String> = t
        .stores
        .values()
        .filter(|s| t.machine_of(s.master()) == Some(machine))
        .map(|s| s.id.clone())
        .collect();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut text = String::new();
    for id in &stores {
        let now = ctx.directory.snapshot()?;
        let store = &now.stores[id];
        let per_machine = now.masters_per_machine();
        let target = store
            .replicas()
            .iter()
            .filter(|r| !now.is_fenced(r) && now.machine_of(r) != Some(machine))
            .filter(|r| {
                now.slots
                    .get(*r)
                    .is_some_and(|s| verify::status(ctx, s).is_ok())
            })
            .min_by_key(|r| {
                now.machine_of(r)
                    .and_then(|m| per_machine.get(m))
                    .copied()
                    .unwrap_or(0)
            })
            .cloned();
        let result = match target {
            None => Err(CtlError::Failed(format!(
                "store {id} has no reachable replica off {machine}"
            ))),
            Some(target) => {
                let mut o = opts.clone();
                o.reason = format!("{}: evacuate {machine}", opts.reason);
                switch_store(ctx, &now, id, Some(&target), &o)
            }
        };
        match result {
            Ok(s) => {
                text.push_str(&describe(&s));
                done.push(s);
            }
            Err(e) => {
                let _ = writeln!(text, "store {id}: FAILED: {e}");
                failed.push(json!({"store": id, "error": e.to_string()}));
            }
        }
    }
    if stores.is_empty() {
        let _ = writeln!(text, "machine {machine} holds no master");
    }
    let exit = if failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    };
    Ok(Report {
        text,
        json: json!({"machine": machine, "switched": done, "failed": failed}),
        exit,
    })
}
