//! `ctl rebalance [--remove MACHINE]... [--apply]`: restore the placement
//! properties after machines were added, or before machines are removed,
//! by moving slots between stores one at a time (docs/operations.md).
//!
//! The moves come from the planner (`slotmail_directory::rebalance`): a
//! slot moves as *add the new slot as a replica, wait until it is in sync,
//! (switch the master away if the old slot is the master,) drop the old
//! slot*, so a store never has fewer copies than before. Without `--apply`
//! the command only prints the moves and the failure-impact tables before
//! and after.
//!
//! With `--apply` the moves are carried out by [`execute`], a state machine
//! over the [`Ops`] it needs from the world (directory, supervisors,
//! slots), so that tests can drive it with fakes. Its progress is kept in a
//! journal (`STATE/rebalance.json`: the planned moves and how many are
//! done) written after every step; every step first looks at the directory
//! and skips what is done already, so a rebalance that was interrupted or
//! failed continues where the directory stands when it is run again. Every
//! step is recorded in the store's history (`ctl history`). A slot that
//! leaves a store keeps its data: its data directory is renamed aside
//! (`DATA.left-STORE-TIME`), never deleted.

use crate::control::{ControlError, ControlRequest};
use crate::switchover::{self, SwitchOptions};
use crate::verify::{self, Equality, POLL_INTERVAL, digests, now_unix_ms, prove_equal};
use crate::{CtlError, Ctx, Exit, Report};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;
use slotmail_directory::placement::apply_moves;
use slotmail_directory::{Directory, DirectoryError, FailureImpact, Layout, Move, Topology};
use slotmail_slot::admin_mail::{DigestSide, UserDigest};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default bound on one wait for a new replica to be in sync.
pub const SYNC_TIMEOUT_SECS_DEFAULT: u64 = 600;
/// How often the wait for sync compares master and new replica.
pub const SYNC_POLL: Duration = Duration::from_millis(200);
/// Attempts at one master switch (a switchover aborts cleanly, with writes
/// resumed, when draining takes too long under load).
pub const SWITCH_ATTEMPTS_MAX: u32 = 3;
/// Pause between two switch attempts.
pub const SWITCH_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The journal's file name in the cluster's state directory.
pub const JOURNAL_FILE: &str = "rebalance.json";
/// Journal format version.
const JOURNAL_VERSION: u32 = 1;
/// Most bytes of a journal read back.
pub const JOURNAL_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// `ctl rebalance`.
#[derive(Debug, Clone, Args)]
pub struct RebalanceArgs {
    /// A machine to empty (repeatable, or comma-separated): its slots leave
    /// their stores; afterwards `ctl slot remove` and `ctl machine remove`.
    #[arg(long, value_delimiter = ',', value_name = "MACHINE")]
    pub remove: Vec<String>,
    /// Perform the moves (default: only show them).
    #[arg(long)]
    pub apply: bool,
    /// How long one new replica may take to be in sync.
    #[arg(long = "timeout-secs", visible_alias = "timeout", default_value_t = SYNC_TIMEOUT_SECS_DEFAULT)]
    pub timeout_secs: u64,
    /// Forget an interrupted rebalance (its journal); the directory stays
    /// as it is.
    #[arg(long, conflicts_with = "apply")]
    pub abandon: bool,
}

/// A rebalance under way: what was planned and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub started_at_unix_ms: u64,
    /// The machines the cluster is to consist of.
    pub machines: Vec<String>,
    /// The machines being emptied.
    pub remove: Vec<String>,
    pub moves: Vec<Move>,
    /// Moves completed (a prefix of `moves`).
    pub done: usize,
    /// Data directories set aside, by the index of the drop that did it.
    #[serde(default)]
    pub aside: BTreeMap<usize, PathBuf>,
    /// The failure impact the moves lead to.
    pub impact_after: FailureImpact,
}

/// The moves for `t` over every machine but `remove`, and the failure
/// impact before and after.
#[derive(Debug, Clone)]
pub struct Planned {
    pub machines: Vec<String>,
    pub moves: Vec<Move>,
    pub before: FailureImpact,
    pub after: FailureImpact,
}

/// The layout of `t` over `machines` only (stores' slots on other machines
/// are left out).
fn layout_over(t: &Topology, machines: &[String]) -> Layout {
    let mut layout = Layout::from_topology(t);
    let keep: Vec<usize> = (0..layout.machines.len())
        .filter(|&i| machines.contains(&layout.machines[i]))
        .collect();
    let renumber: BTreeMap<usize, usize> = keep
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new))
        .collect();
    layout.machines = keep.iter().map(|&i| layout.machines[i].clone()).collect();
    for st in &mut layout.stores {
        *st = st.iter().filter_map(|m| renumber.get(m).copied()).collect();
    }
    layout
}

/// Plan a rebalance of `t` that empties `remove`: validated, nothing
/// changed.
pub fn plan(t: &Topology, remove: &[String]) -> Result<Planned, CtlError> {
    for m in remove {
        if !t.machines.contains_key(m) {
            return Err(DirectoryError::UnknownMachine(m.clone()).into());
        }
    }
    if let Some(f) = t.fenced.values().next() {
        return Err(CtlError::Usage(format!(
            "slot {} of store {} is fenced: `ctl reconcile {}` first",
            f.slot, f.store, f.slot
        )));
    }
    let machines: Vec<String> = t
        .machines
        .keys()
        .filter(|m| !remove.contains(m))
        .cloned()
        .collect();
    let moves = slotmail_directory::rebalance(t, &machines)?;
    let after = apply_moves(t, &moves)?;
    Ok(Planned {
        before: Layout::from_topology(t).failure_impact(),
        after: layout_over(&after, &machines).failure_impact(),
        machines,
        moves,
    })
}

/// Why `ctl machine remove` must refuse `machine` while its slots are in
/// stores, naming the commands that empty it; `None` if no slot of it is in
/// a store.
pub(crate) fn machine_remove_refusal(t: &Topology, machine: &str) -> Option<CtlError> {
    let held: Vec<String> = t
        .slots_on(machine)
        .filter_map(|s| {
            t.store_of_slot(&s.id).map(|st| {
                let role = if st.master() == s.id {
                    "master"
                } else {
                    "replica"
                };
                format!("{} ({role} of {})", s.id, st.id)
            })
        })
        .collect();
    if held.is_empty() {
        return None;
    }
    Some(CtlError::Usage(format!(
        "machine {machine} still holds slots in stores: {}. Move them to other machines first with `slotmail ctl rebalance --remove {machine} --apply` (`ctl evacuate {machine}` only moves its masters away, for maintenance), then `ctl slot remove` its slots",
        held.join(", ")
    )))
}

/// Follows a new replica's full sync from repeated comparisons of the
/// master's digests with the replica's.
///
/// "In sync" is proven as a switchover proves it (docs/failover.md):
/// drained and every digest equal, read from both slots. Under continuous
/// writes two readings one after the other rarely agree, so the wait looks
/// for *caught up* first: every user the master had at a reading at least
/// [`CATCH_UP_WINDOW`] old is on the replica at that position or beyond,
/// and the replica holds nobody else (the full sync is over and
/// replication keeps pace).
/// Then the master's writes are paused for the proof (as a switchover
/// does, bounded by [`PROOF_WAIT`]) unless a reading was equal already.
#[derive(Debug, Default, Clone)]
pub struct SyncTracker {
    /// The master's readings (time, user → (id, MODSEQ)), oldest first, at
    /// most [`READINGS_KEPT_MAX`].
    readings: std::collections::VecDeque<(Instant, Positions)>,
}

/// Users' (id, MODSEQ) in one reading of the master, by name.
type Positions = BTreeMap<String, (String, u64)>;

/// How far behind the master a replica may be and count as caught up.
pub const CATCH_UP_WINDOW: Duration = Duration::from_secs(1);
/// The master's readings a [`SyncTracker`] keeps.
pub const READINGS_KEPT_MAX: usize = 64;

/// One comparison's result for the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub users: usize,
    /// Users at or past the master's reading [`CATCH_UP_WINDOW`] ago.
    pub caught_up_users: usize,
    pub caught_up: bool,
    /// Drained and every digest equal in this reading.
    pub equal: bool,
}

impl SyncTracker {
    /// Note one comparison of the master's digests with the replica's.
    pub fn observe(
        &mut self,
        now: Instant,
        master: &BTreeMap<String, UserDigest>,
        replica: &BTreeMap<String, UserDigest>,
    ) -> SyncState {
        let e: Equality = prove_equal(master, replica);
        // The newest reading at least the window old.
        let reference = self
            .readings
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= CATCH_UP_WINDOW)
            .map(|(_, r)| r);
        let caught_up_users = match reference {
            None => 0,
            Some(prev) => master
                .keys()
                .filter(|name| match (prev.get(*name), replica.get(*name)) {
                    (Some((id, modseq)), Some(r)) => r.user_id == *id && r.modseq >= *modseq,
                    // New on the master since the previous reading.
                    (None, _) => false,
                    _ => false,
                })
                .count(),
        };
        let extra = replica.keys().any(|u| !master.contains_key(u));
        let caught_up = reference.is_some() && caught_up_users == master.len() && !extra;
        if self.readings.len() == READINGS_KEPT_MAX {
            self.readings.pop_front();
        }
        self.readings.push_back((
            now,
            master
                .iter()
                .map(|(n, d)| (n.clone(), (d.user_id.clone(), d.modseq)))
                .collect(),
        ));
        SyncState {
            users: master.len(),
            caught_up_users: if e.equal {
                master.len()
            } else {
                caught_up_users
            },
            caught_up: caught_up || e.equal,
            equal: e.equal,
        }
    }
}

/// How long the proof may pause the master's writes before it gives up
/// (writes resume; the wait goes on).
pub const PROOF_WAIT: Duration = Duration::from_secs(5);

/// What [`execute`] needs from the world. Errors are `CtlError`s.
pub trait Ops {
    fn snapshot(&self) -> Result<Topology, CtlError>;
    fn add_replica(&self, store: &str, slot: &str) -> Result<(), CtlError>;
    fn drop_replica(&self, store: &str, slot: &str) -> Result<(), CtlError>;
    fn set_replica_order(&self, store: &str, replicas: &[String]) -> Result<(), CtlError>;
    fn record_step(&self, store: &str, reason: &str) -> Result<(), CtlError>;
    /// Tell these machines' supervisors to read the directory now; one
    /// warning per supervisor that did not answer.
    fn reload(&self, machines: &BTreeSet<String>) -> Vec<String>;
    /// The slot answers and holds no user (it may join a store).
    fn check_joining(&self, t: &Topology, slot: &str) -> Result<(), CtlError>;
    /// The master's digests and the replica's, once the replica runs as a
    /// replica.
    #[allow(clippy::type_complexity)]
    fn compare(
        &self,
        t: &Topology,
        master: &str,
        replica: &str,
    ) -> Result<(BTreeMap<String, UserDigest>, BTreeMap<String, UserDigest>), CtlError>;
    /// Set the master's read-only switch (pause or resume client writes);
    /// its previous position.
    fn pause_writes(&self, t: &Topology, master: &str, paused: bool) -> Result<bool, CtlError>;
    /// A planned switchover (`ctl switchover`'s logic); its report.
    fn switch_master(
        &self,
        t: &Topology,
        store: &str,
        to: &str,
    ) -> Result<serde_json::Value, CtlError>;
    /// Stop a slot and keep it stopped; `Ok(false)` if its supervisor does
    /// not answer (the machine is gone).
    fn stop_slot(&self, t: &Topology, slot: &str) -> Result<bool, CtlError>;
    /// Rename a stopped slot's data directory aside; the new name, or
    /// `None` if it has none.
    fn set_aside(&self, t: &Topology, slot: &str, store: &str)
    -> Result<Option<PathBuf>, CtlError>;
    fn start_slot(&self, t: &Topology, slot: &str) -> Result<(), CtlError>;
    fn save(&self, journal: &Journal) -> Result<(), CtlError>;
    fn progress(&self, line: &str);
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

/// What one executed move did.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub index: usize,
    #[serde(rename = "move")]
    pub mv: Move,
    /// `done`, or `already done` (found so in the directory).
    pub outcome: String,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// What an execution did, also when it stopped on an error.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Executed {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
    /// Data directories set aside.
    pub kept: Vec<PathBuf>,
}

/// The machines of a store's slots.
fn store_machines(t: &Topology, store: &str) -> BTreeSet<String> {
    t.stores
        .get(store)
        .map(|st| {
            st.slots
                .iter()
                .filter_map(|s| t.machine_of(s).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn diverged(index: usize, mv: &Move, why: String) -> CtlError {
    CtlError::Failed(format!(
        "move {} ({mv}) no longer fits the directory: {why}; the directory changed since the rebalance began — look at `ctl store list`, then `ctl rebalance --abandon` and plan again",
        index + 1
    ))
}

/// Carry out `journal.moves[journal.done..]` one after the other, saving
/// the journal after each. On an error the journal stays at the failed
/// move (run again to continue) and the error says which move failed.
pub fn execute(
    ops: &dyn Ops,
    journal: &mut Journal,
    sync_timeout: Duration,
) -> (Executed, Result<(), CtlError>) {
    let mut out = Executed::default();
    let total = journal.moves.len();
    while journal.done < total {
        let index = journal.done;
        let mv = journal.moves[index].clone();
        ops.progress(&format!("rebalance: move {}/{total}: {mv}", index + 1));
        let started = ops.now();
        match step(ops, journal, index, &mv, sync_timeout, &mut out) {
            Ok((outcome, detail)) => {
                out.steps.push(Step {
                    index,
                    mv,
                    outcome,
                    elapsed_ms: ops.now().duration_since(started).as_millis() as u64,
                    detail,
                });
                journal.done = index + 1;
                if let Err(e) = ops.save(journal) {
                    return (out, Err(e));
                }
            }
            Err(e) => {
                let _ = ops.save(journal);
                let e = CtlError::Failed(format!(
                    "move {}/{total} ({mv}) failed: {e}. Every store keeps at least the slots it had; run `slotmail ctl rebalance --apply` again to continue",
                    index + 1
                ));
                return (out, Err(e));
            }
        }
    }
    (out, Ok(()))
}

fn step(
    ops: &dyn Ops,
    journal: &mut Journal,
    index: usize,
    mv: &Move,
    sync_timeout: Duration,
    out: &mut Executed,
) -> Result<(String, serde_json::Value), CtlError> {
    let t = ops.snapshot()?;
    let store_id = match mv {
        Move::AddReplica { store, .. }
        | Move::WaitForSync { store, .. }
        | Move::DropReplica { store, .. }
        | Move::SwitchMaster { store, .. }
        | Move::ReorderReplicas { store, .. } => store.clone(),
    };
    let Some(store) = t.stores.get(&store_id).cloned() else {
        return Err(diverged(index, mv, format!("store {store_id} is gone")));
    };
    let already = || Ok(("already done".to_string(), serde_json::Value::Null));
    match mv {
        Move::AddReplica { slot, .. } => {
            if store.slots.contains(slot) {
                return already();
            }
            if let Err(e) = apply_moves(&t, std::slice::from_ref(mv)) {
                return Err(diverged(index, mv, e.to_string()));
            }
            ops.check_joining(&t, slot)?;
            ops.add_replica(&store_id, slot)?;
            ops.record_step(&store_id, &format!("rebalance: add replica {slot}"))?;
            let t = ops.snapshot()?;
            out.warnings
                .extend(ops.reload(&store_machines(&t, &store_id)));
            Ok(("done".into(), serde_json::Value::Null))
        }
        Move::WaitForSync { slot, .. } => {
            if store.master() == slot.as_str() {
                return already();
            }
            if !store.replicas().contains(slot) {
                return Err(diverged(
                    index,
                    mv,
                    format!("{slot} is not in store {store_id}"),
                ));
            }
            let proof = wait_for_sync(ops, &store_id, slot, sync_timeout, out)?;
            ops.record_step(
                &store_id,
                &format!("rebalance: {slot} in sync ({} users equal)", proof["users"]),
            )?;
            Ok(("done".into(), proof))
        }
        Move::SwitchMaster { from, to, .. } => {
            if store.master() == to.as_str() {
                return already();
            }
            if store.master() != from.as_str() {
                return Err(diverged(
                    index,
                    mv,
                    format!("the master is {}", store.master()),
                ));
            }
            let mut attempt = 1;
            loop {
                let t = ops.snapshot()?;
                match ops.switch_master(&t, &store_id, to) {
                    Ok(report) => return Ok(("done".into(), report)),
                    Err(e @ CtlError::Failed(_)) if attempt < SWITCH_ATTEMPTS_MAX => {
                        ops.progress(&format!(
                            "rebalance: switchover of {store_id} (attempt {attempt}) failed: {e}; trying again"
                        ));
                        out.warnings
                            .push(format!("switchover of {store_id}, attempt {attempt}: {e}"));
                        attempt += 1;
                        ops.sleep(SWITCH_RETRY_PAUSE);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Move::DropReplica { slot, .. } => {
            let in_store = store.slots.contains(slot);
            if in_store {
                if store.master() == slot.as_str() {
                    return Err(diverged(
                        index,
                        mv,
                        format!("{slot} is the master of {store_id}"),
                    ));
                }
                // The move that precedes a drop adds its replacement: the
                // store keeps at least its size from before the move.
                if store.slots.len() <= slotmail_directory::limits::SLOTS_PER_STORE_MIN {
                    return Err(diverged(
                        index,
                        mv,
                        format!("store {store_id} would be left with too few slots"),
                    ));
                }
            } else if journal.aside.contains_key(&index) {
                return already();
            }
            let stopped = ops.stop_slot(&t, slot)?;
            if in_store {
                ops.drop_replica(&store_id, slot)?;
                ops.record_step(
                    &store_id,
                    &format!("rebalance: drop replica {slot} (its data is kept aside)"),
                )?;
            }
            let mut machines = store_machines(&t, &store_id);
            if let Some(m) = t.machine_of(slot) {
                machines.insert(m.to_string());
            }
            out.warnings.extend(ops.reload(&machines));
            if !stopped {
                out.warnings.push(format!(
                    "slot {slot}: its supervisor does not answer, so it was not stopped and its data directory stays in place; set it aside before the slot is used again"
                ));
                journal.aside.insert(index, PathBuf::new());
                return Ok(("done".into(), json!({"kept": null})));
            }
            let kept = ops.set_aside(&t, slot, &store_id)?;
            journal
                .aside
                .insert(index, kept.clone().unwrap_or_default());
            ops.save(journal)?;
            if let Some(k) = &kept {
                out.kept.push(k.clone());
            }
            if let Err(e) = ops.start_slot(&t, slot) {
                out.warnings
                    .push(format!("slot {slot} (now free) did not start again: {e}"));
            }
            Ok(("done".into(), json!({ "kept": kept })))
        }
        Move::ReorderReplicas { replicas, .. } => {
            if store.replicas() == replicas.as_slice() {
                return already();
            }
            if let Err(e) = apply_moves(&t, std::slice::from_ref(mv)) {
                return Err(diverged(index, mv, e.to_string()));
            }
            ops.set_replica_order(&store_id, replicas)?;
            ops.record_step(
                &store_id,
                &format!("rebalance: failover order {}", replicas.join(" ")),
            )?;
            out.warnings
                .extend(ops.reload(&store_machines(&t, &store_id)));
            Ok(("done".into(), serde_json::Value::Null))
        }
    }
}

/// Compare the store's master with `slot` until the slot is proven in
/// sync (see [`SyncTracker`]) or `timeout` passed, reporting progress.
fn wait_for_sync(
    ops: &dyn Ops,
    store_id: &str,
    slot: &str,
    timeout: Duration,
    out: &mut Executed,
) -> Result<serde_json::Value, CtlError> {
    let started = ops.now();
    let mut tracker = SyncTracker::default();
    let mut last_shown: Option<(usize, usize)> = None;
    let mut last_error: Option<String>;
    let mut proofs = 0u32;
    loop {
        let t = ops.snapshot()?;
        let master = t
            .stores
            .get(store_id)
            .map(|st| st.master().to_string())
            .ok_or_else(|| DirectoryError::UnknownStore(store_id.to_string()))?;
        let elapsed = |ops: &dyn Ops| ops.now().duration_since(started).as_millis() as u64;
        match ops.compare(&t, &master, slot) {
            Ok((m, r)) => {
                let state = tracker.observe(ops.now(), &m, &r);
                if last_shown != Some((state.caught_up_users, state.users)) {
                    ops.progress(&format!(
                        "rebalance {store_id}: {slot} has caught up on {}/{} users ({} ms)",
                        state.caught_up_users,
                        state.users,
                        elapsed(ops)
                    ));
                    last_shown = Some((state.caught_up_users, state.users));
                }
                last_error = None;
                if state.equal {
                    return Ok(json!({"users": state.users, "equal": true, "writes_paused_ms": 0}));
                }
                if state.caught_up {
                    proofs += 1;
                    match prove_paused(ops, &t, &master, slot) {
                        Ok(Some(paused_ms)) => {
                            ops.progress(&format!(
                                "rebalance {store_id}: {slot} proven equal to {master} (writes paused {paused_ms} ms)"
                            ));
                            return Ok(
                                json!({"users": state.users, "equal": true, "writes_paused_ms": paused_ms}),
                            );
                        }
                        Ok(None) => {
                            last_error = Some(format!(
                                "not equal within {} ms of paused writes",
                                PROOF_WAIT.as_millis()
                            ))
                        }
                        Err(e) => last_error = Some(e.to_string()),
                    }
                    if let Some(e) = &last_error {
                        out.warnings
                            .push(format!("{store_id}: proof {proofs}: {e}"));
                    }
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        if ops.now().duration_since(started) >= timeout {
            let (n, of) = last_shown.unwrap_or((0, 0));
            return Err(CtlError::Failed(format!(
                "{slot} is not in sync with the master of {store_id} after {} s ({n}/{of} users caught up{})",
                timeout.as_secs(),
                last_error
                    .map(|e| format!("; last: {e}"))
                    .unwrap_or_default()
            )));
        }
        ops.sleep(SYNC_POLL);
    }
}

/// Pause the master's writes, wait (at most [`PROOF_WAIT`]) until the
/// replica is drained and equal, resume writes. The pause in milliseconds
/// if proven, `None` if not.
fn prove_paused(
    ops: &dyn Ops,
    t: &Topology,
    master: &str,
    slot: &str,
) -> Result<Option<u64>, CtlError> {
    let was = ops.pause_writes(t, master, true)?;
    let paused = ops.now();
    let proven = loop {
        if let Ok((m, r)) = ops.compare(t, master, slot)
            && prove_equal(&m, &r).equal
        {
            break true;
        }
        if ops.now().duration_since(paused) >= PROOF_WAIT {
            break false;
        }
        ops.sleep(POLL_INTERVAL);
    };
    let paused_ms = ops.now().duration_since(paused).as_millis() as u64;
    if !was {
        ops.pause_writes(t, master, false)?;
    }
    Ok(proven.then_some(paused_ms))
}

/// The real world: the cluster's directory, supervisors and slots.
struct Live<'a> {
    ctx: &'a Ctx,
    journal_path: PathBuf,
}

impl Ops for Live<'_> {
    fn snapshot(&self) -> Result<Topology, CtlError> {
        Ok(self.ctx.directory.snapshot()?)
    }
    fn add_replica(&self, store: &str, slot: &str) -> Result<(), CtlError> {
        Ok(self.ctx.directory.add_replica(store, slot)?)
    }
    fn drop_replica(&self, store: &str, slot: &str) -> Result<(), CtlError> {
        Ok(self.ctx.directory.drop_replica(store, slot)?)
    }
    fn set_replica_order(&self, store: &str, replicas: &[String]) -> Result<(), CtlError> {
        Ok(self.ctx.directory.set_replica_order(store, replicas)?)
    }
    fn record_step(&self, store: &str, reason: &str) -> Result<(), CtlError> {
        Ok(self.ctx.directory.record_step(store, reason)?)
    }
    fn reload(&self, machines: &BTreeSet<String>) -> Vec<String> {
        machines
            .iter()
            .filter_map(|m| {
                verify::reload(self.ctx, m).err().map(|e| {
                    format!("supervisor of {m} not reached ({e}); it follows at its next poll")
                })
            })
            .collect()
    }
    fn check_joining(&self, t: &Topology, slot: &str) -> Result<(), CtlError> {
        let s = verify::slot(t, slot)?;
        let status = verify::status(self.ctx, s)?;
        if status.users > 0 {
            return Err(CtlError::Failed(format!(
                "slot {slot} holds {} user(s) although it is in no store: set its data directory aside (`ctl slot stop`, rename it, `ctl slot start`) before it joins a store",
                status.users
            )));
        }
        Ok(())
    }
    fn compare(
        &self,
        t: &Topology,
        master: &str,
        replica: &str,
    ) -> Result<(BTreeMap<String, UserDigest>, BTreeMap<String, UserDigest>), CtlError> {
        let r = verify::slot(t, replica)?;
        if !verify::status(self.ctx, r)?.read_only {
            return Err(CtlError::Failed(format!(
                "{replica} does not run as a replica yet"
            )));
        }
        let m = digests(self.ctx, verify::slot(t, master)?, DigestSide::Master)?;
        let rd = digests(self.ctx, r, DigestSide::Replica)?;
        Ok((m, rd))
    }
    fn pause_writes(&self, t: &Topology, master: &str, paused: bool) -> Result<bool, CtlError> {
        verify::set_read_only(self.ctx, verify::slot(t, master)?, paused)
    }
    fn switch_master(
        &self,
        t: &Topology,
        store: &str,
        to: &str,
    ) -> Result<serde_json::Value, CtlError> {
        // Both may be restarting after the last directory change.
        let st = t
            .stores
            .get(store)
            .ok_or_else(|| DirectoryError::UnknownStore(store.to_string()))?;
        let master = verify::slot(t, st.master())?;
        let target = verify::slot(t, to)?;
        if verify::wait_status(self.ctx, master, switchover::PROMOTE_WAIT, |s| !s.read_only)
            .is_none()
        {
            return Err(CtlError::Failed(format!(
                "master {} does not answer as a writable master",
                master.id
            )));
        }
        if verify::wait_status(self.ctx, target, switchover::PROMOTE_WAIT, |s| s.read_only)
            .is_none()
        {
            return Err(CtlError::Failed(format!(
                "{to} does not answer as a replica"
            )));
        }
        let opts = SwitchOptions {
            max_lag_ms: switchover::SWITCH_LAG_MAX_MS_DEFAULT,
            drain_timeout_ms: switchover::DRAIN_TIMEOUT_MS_DEFAULT,
            reason: "rebalance".into(),
        };
        let s = switchover::switch_store(self.ctx, t, store, Some(to), &opts)?;
        Ok(serde_json::to_value(&s).expect("serializes"))
    }
    fn stop_slot(&self, t: &Topology, slot: &str) -> Result<bool, CtlError> {
        let s = verify::slot(t, slot)?;
        match verify::control(
            self.ctx,
            s,
            ControlRequest::Stop {
                slot: slot.to_string(),
            },
        ) {
            Ok(()) => Ok(true),
            Err(CtlError::Control(ControlError::NotRunning { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn set_aside(
        &self,
        t: &Topology,
        slot: &str,
        store: &str,
    ) -> Result<Option<PathBuf>, CtlError> {
        let s = verify::slot(t, slot)?;
        let data = self.ctx.cluster.slot_data_dir(&s.data_dir);
        if !data.exists() {
            return Ok(None);
        }
        let aside = PathBuf::from(format!("{}.left-{store}-{}", data.display(), now_unix_ms()));
        std::fs::rename(&data, &aside).map_err(|source| CtlError::Io {
            what: "moving aside",
            path: data.clone(),
            source,
        })?;
        Ok(Some(aside))
    }
    fn start_slot(&self, t: &Topology, slot: &str) -> Result<(), CtlError> {
        let s = verify::slot(t, slot)?;
        verify::control(
            self.ctx,
            s,
            ControlRequest::Start {
                slot: slot.to_string(),
            },
        )
    }
    fn save(&self, journal: &Journal) -> Result<(), CtlError> {
        write_journal(&self.journal_path, journal)
    }
    fn progress(&self, line: &str) {
        eprintln!("{line}");
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d.max(POLL_INTERVAL));
    }
}

fn write_journal(path: &Path, journal: &Journal) -> Result<(), CtlError> {
    let io = |source| CtlError::Io {
        what: "writing the rebalance journal",
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(journal).expect("journals serialize");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_journal(path: &Path) -> Result<Option<Journal>, CtlError> {
    use std::io::Read as _;
    let io = |source| CtlError::Io {
        what: "reading the rebalance journal",
        path: path.to_path_buf(),
        source,
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    f.take(JOURNAL_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(io)?;
    let j: Journal = serde_json::from_str(&text).map_err(|e| {
        CtlError::Usage(format!(
            "the rebalance journal {} is damaged ({e}): look at it, then `ctl rebalance --abandon`",
            path.display()
        ))
    })?;
    if j.version != JOURNAL_VERSION || j.done > j.moves.len() {
        return Err(CtlError::Usage(format!(
            "the rebalance journal {} is not one this version understands: `ctl rebalance --abandon`",
            path.display()
        )));
    }
    Ok(Some(j))
}

fn render_moves(text: &mut String, moves: &[Move], first: usize) {
    for (i, mv) in moves.iter().enumerate() {
        let _ = writeln!(text, "  {:>3}. {mv}", first + i + 1);
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&String> = a.iter().collect();
    let b: BTreeSet<&String> = b.iter().collect();
    a == b
}

/// `ctl rebalance`.
pub(crate) fn rebalance(ctx: &Ctx, args: &RebalanceArgs) -> Result<Report, CtlError> {
    let journal_path = ctx.cluster.state_dir.join(JOURNAL_FILE);
    let journal = read_journal(&journal_path)?;
    if args.abandon {
        let Some(j) = journal else {
            return Err(CtlError::Usage("no rebalance is in progress".into()));
        };
        std::fs::remove_file(&journal_path).map_err(|source| CtlError::Io {
            what: "removing",
            path: journal_path.clone(),
            source,
        })?;
        return Ok(Report {
            text: format!(
                "abandoned the rebalance begun at {} after {} of {} moves; the directory stays as it is\n",
                crate::history::utc(j.started_at_unix_ms),
                j.done,
                j.moves.len()
            ),
            json: json!({"abandoned": true, "done": j.done, "moves": j.moves.len()}),
            exit: Exit::Ok,
        });
    }
    let t = ctx.directory.snapshot()?;
    let mut text = String::new();
    let mut journal = match journal {
        Some(j) => {
            if !args.remove.is_empty() && !same_set(&args.remove, &j.remove) {
                return Err(CtlError::Usage(format!(
                    "a rebalance removing [{}] is in progress ({} of {} moves done): finish it with `ctl rebalance --apply`, or `ctl rebalance --abandon` first",
                    j.remove.join(" "),
                    j.done,
                    j.moves.len()
                )));
            }
            let _ = writeln!(
                text,
                "a rebalance begun at {} is in progress: {} of {} moves done",
                crate::history::utc(j.started_at_unix_ms),
                j.done,
                j.moves.len()
            );
            if !args.apply {
                let _ = writeln!(text, "remaining moves:");
                render_moves(&mut text, &j.moves[j.done..], j.done);
                let _ = writeln!(text, "\nfailure impact now:");
                text.push_str(&Layout::from_topology(&t).failure_impact().render_text());
                let _ = writeln!(text, "\nfailure impact after:");
                text.push_str(&j.impact_after.render_text());
                let _ = writeln!(
                    text,
                    "\n(not applied: run with --apply to continue, or --abandon to forget it)"
                );
                return Ok(Report {
                    text,
                    json: json!({
                        "applied": false,
                        "in_progress": true,
                        "machines": j.machines,
                        "remove": j.remove,
                        "moves": j.moves,
                        "done": j.done,
                        "failure_impact": {
                            "before": Layout::from_topology(&t).failure_impact(),
                            "after": j.impact_after,
                        },
                    }),
                    exit: Exit::Ok,
                });
            }
            j
        }
        None => {
            let p = plan(&t, &args.remove)?;
            let _ = writeln!(
                text,
                "rebalance over {} machines ({}){}: {} moves",
                p.machines.len(),
                p.machines.join(" "),
                if args.remove.is_empty() {
                    String::new()
                } else {
                    format!(", emptying {}", args.remove.join(" "))
                },
                p.moves.len()
            );
            render_moves(&mut text, &p.moves, 0);
            let _ = writeln!(
                text,
                "\nfailure impact {}:",
                if args.apply { "before" } else { "now" }
            );
            text.push_str(&p.before.render_text());
            let _ = writeln!(text, "\nfailure impact after:");
            text.push_str(&p.after.render_text());
            let doc = json!({
                "machines": p.machines,
                "remove": args.remove,
                "moves": p.moves,
                "failure_impact": {"before": p.before, "after": p.after},
            });
            if p.moves.is_empty() {
                let _ = writeln!(
                    text,
                    "\nnothing to do: the placement properties hold over these machines"
                );
                let mut doc = doc;
                doc["applied"] = json!(false);
                return Ok(Report {
                    text,
                    json: doc,
                    exit: Exit::Ok,
                });
            }
            if !args.apply {
                let _ = writeln!(
                    text,
                    "\n(not applied: run with --apply to perform these moves)"
                );
                let mut doc = doc;
                doc["applied"] = json!(false);
                return Ok(Report {
                    text,
                    json: doc,
                    exit: Exit::Ok,
                });
            }
            preflight(ctx, &t, &p.moves)?;
            let j = Journal {
                version: JOURNAL_VERSION,
                started_at_unix_ms: now_unix_ms(),
                machines: p.machines,
                remove: args.remove.clone(),
                moves: p.moves,
                done: 0,
                aside: BTreeMap::new(),
                impact_after: p.after,
            };
            write_journal(&journal_path, &j)?;
            j
        }
    };
    let live = Live {
        ctx,
        journal_path: journal_path.clone(),
    };
    let started = Instant::now();
    let (executed, result) = execute(&live, &mut journal, Duration::from_secs(args.timeout_secs));
    result?;
    std::fs::remove_file(&journal_path).map_err(|source| CtlError::Io {
        what: "removing",
        path: journal_path.clone(),
        source,
    })?;
    let after = ctx.directory.snapshot()?;
    let impact = layout_over(&after, &journal.machines).failure_impact();
    let _ = writeln!(text, "\napplied:");
    for s in &executed.steps {
        let _ = writeln!(
            text,
            "  {:>3}. {} — {} ({} ms)",
            s.index + 1,
            s.mv,
            s.outcome,
            s.elapsed_ms
        );
    }
    for k in &executed.kept {
        let _ = writeln!(text, "kept aside: {}", k.display());
    }
    for w in &executed.warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    let _ = writeln!(text, "\nfailure impact now (after the moves):");
    text.push_str(&impact.render_text());
    if !journal.remove.is_empty() {
        let _ = writeln!(
            text,
            "\n{} hold(s) no slot in a store any more: `ctl slot remove` their slots, then `ctl machine remove`",
            journal.remove.join(" ")
        );
    }
    Ok(Report {
        text,
        json: json!({
            "applied": true,
            "machines": journal.machines,
            "remove": journal.remove,
            "moves": journal.moves,
            "steps": executed.steps,
            "kept": executed.kept,
            "warnings": executed.warnings,
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "failure_impact": {"after": impact},
        }),
        exit: Exit::Ok,
    })
}

/// Before anything changes: every store's master that a move touches and
/// every slot that joins a store answer, and the joining slots are empty.
fn preflight(ctx: &Ctx, t: &Topology, moves: &[Move]) -> Result<(), CtlError> {
    let live = Live {
        ctx,
        journal_path: PathBuf::new(),
    };
    let mut stores = BTreeSet::new();
    for mv in moves {
        match mv {
            Move::AddReplica { store, slot } => {
                stores.insert(store.clone());
                live.check_joining(t, slot).map_err(|e| {
                    CtlError::Failed(format!(
                        "not starting: {e} (is `slotmail machine run` running for its machine?); nothing was changed"
                    ))
                })?;
            }
            Move::SwitchMaster { store, .. } => {
                stores.insert(store.clone());
            }
            _ => {}
        }
    }
    for id in stores {
        let st = &t.stores[&id];
        let m = verify::slot(t, st.master())?;
        verify::status(ctx, m).map_err(|e| {
            CtlError::Failed(format!(
                "not starting: the master of store {id} does not answer: {e}; nothing was changed"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_directory::{Machine, Slot, SqliteDirectory, StoreSpec};
    use std::cell::{Cell, RefCell};

    /// A directory of `machines` × `slots` with planned stores of 2, and
    /// `extra` more machines with `slots` free slots each.
    fn directory(dir: &Path, machines: &[&str], extra: &[&str], slots: u32) -> SqliteDirectory {
        let d = SqliteDirectory::create(dir.join("directory.db")).unwrap();
        for (i, m) in machines.iter().chain(extra).enumerate() {
            d.add_machine(&Machine {
                name: m.to_string(),
                address: std::net::IpAddr::from([127, 0, 3, i as u8 + 1]),
            })
            .unwrap();
            for n in 1..=slots {
                let id = slotmail_directory::placement::slot_id(m, n);
                d.add_slot(&Slot {
                    id: id.clone(),
                    machine: m.to_string(),
                    data_dir: id.clone(),
                    imap_port: 20_000 + n as u16,
                    lmtp_port: 21_000 + n as u16,
                    sync_port: 22_000 + n as u16,
                    weight: 1,
                })
                .unwrap();
            }
        }
        let names: Vec<String> = machines.iter().map(|m| m.to_string()).collect();
        let p = slotmail_directory::plan(&names, slots, 1).unwrap();
        for st in &p.stores {
            d.create_store(
                &StoreSpec {
                    id: st.id.clone(),
                    slots: st.slots.iter().map(|x| x.id.clone()).collect(),
                    sync: false,
                },
                "plan",
            )
            .unwrap();
        }
        d
    }

    /// Directory for real, slots and supervisors faked: a new replica
    /// holds a store's users after `sync_after` comparisons; with `busy`
    /// the master takes a write before every reading and the replica is one
    /// behind unless the master's writes are paused; failures are injected
    /// by operation name.
    struct Fake {
        d: SqliteDirectory,
        sync_after: u32,
        busy: bool,
        paused: RefCell<BTreeSet<String>>,
        polls: RefCell<BTreeMap<String, u32>>,
        /// Operation name → how many more calls fail.
        fail: RefCell<BTreeMap<&'static str, u32>>,
        log: RefCell<Vec<String>>,
        saved: RefCell<Option<Journal>>,
        clock: Instant,
        elapsed: Cell<Duration>,
    }

    impl Fake {
        fn new(d: SqliteDirectory, sync_after: u32) -> Fake {
            Fake {
                d,
                sync_after,
                busy: false,
                paused: RefCell::default(),
                polls: RefCell::default(),
                fail: RefCell::default(),
                log: RefCell::default(),
                saved: RefCell::default(),
                clock: Instant::now(),
                elapsed: Cell::new(Duration::ZERO),
            }
        }
        fn failing(&self, op: &'static str) -> Result<(), CtlError> {
            let mut f = self.fail.borrow_mut();
            match f.get_mut(op) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Err(CtlError::Failed(format!("injected failure of {op}")))
                }
                _ => Ok(()),
            }
        }
        fn note(&self, what: String) {
            self.log.borrow_mut().push(what);
        }
        fn users(store: &str, modseq: u64) -> BTreeMap<String, UserDigest> {
            (1..=2)
                .map(|n| {
                    let name = format!("{store}-u{n}");
                    (
                        name.clone(),
                        UserDigest {
                            name: name.clone(),
                            user_id: format!("id-{name}"),
                            modseq,
                            digest: format!("d-{name}-{modseq}"),
                            mailboxes: 1,
                        },
                    )
                })
                .collect()
        }
    }

    impl Ops for Fake {
        fn snapshot(&self) -> Result<Topology, CtlError> {
            Ok(self.d.snapshot()?)
        }
        fn add_replica(&self, store: &str, slot: &str) -> Result<(), CtlError> {
            self.failing("add_replica")?;
            self.note(format!("add {store} {slot}"));
            Ok(self.d.add_replica(store, slot)?)
        }
        fn drop_replica(&self, store: &str, slot: &str) -> Result<(), CtlError> {
            self.failing("drop_replica")?;
            self.note(format!("drop {store} {slot}"));
            Ok(self.d.drop_replica(store, slot)?)
        }
        fn set_replica_order(&self, store: &str, replicas: &[String]) -> Result<(), CtlError> {
            Ok(self.d.set_replica_order(store, replicas)?)
        }
        fn record_step(&self, store: &str, reason: &str) -> Result<(), CtlError> {
            Ok(self.d.record_step(store, reason)?)
        }
        fn reload(&self, machines: &BTreeSet<String>) -> Vec<String> {
            self.note(format!(
                "reload {}",
                machines.iter().cloned().collect::<Vec<_>>().join(",")
            ));
            Vec::new()
        }
        fn check_joining(&self, t: &Topology, slot: &str) -> Result<(), CtlError> {
            self.failing("check_joining")?;
            assert!(t.store_of_slot(slot).is_none(), "{slot} joins twice");
            Ok(())
        }
        fn compare(
            &self,
            t: &Topology,
            master: &str,
            replica: &str,
        ) -> Result<(BTreeMap<String, UserDigest>, BTreeMap<String, UserDigest>), CtlError>
        {
            self.failing("compare")?;
            let store = t.store_of_slot(master).unwrap().id.clone();
            assert_eq!(t.store_of_slot(replica).unwrap().id, store);
            let mut polls = self.polls.borrow_mut();
            let n = polls.entry(replica.to_string()).or_insert(0);
            *n += 1;
            let paused = self.paused.borrow().contains(master);
            let modseq = if self.busy { 5 + u64::from(*n) } else { 5 };
            let m = Fake::users(&store, modseq);
            let r = if *n < self.sync_after {
                BTreeMap::new()
            } else if self.busy && !paused {
                Fake::users(&store, modseq - 1)
            } else {
                m.clone()
            };
            Ok((m, r))
        }
        fn pause_writes(
            &self,
            _t: &Topology,
            master: &str,
            paused: bool,
        ) -> Result<bool, CtlError> {
            self.note(format!(
                "{} {master}",
                if paused { "pause" } else { "resume" }
            ));
            let mut p = self.paused.borrow_mut();
            let was = p.contains(master);
            if paused {
                p.insert(master.to_string());
            } else {
                p.remove(master);
            }
            Ok(was)
        }
        fn switch_master(
            &self,
            t: &Topology,
            store: &str,
            to: &str,
        ) -> Result<serde_json::Value, CtlError> {
            self.failing("switch_master")?;
            self.note(format!("switch {store} {to}"));
            let epoch = self
                .d
                .set_master(store, to, t.stores[store].epoch, "rebalance")?;
            Ok(json!({"epoch": epoch}))
        }
        fn stop_slot(&self, _t: &Topology, slot: &str) -> Result<bool, CtlError> {
            self.note(format!("stop {slot}"));
            Ok(true)
        }
        fn set_aside(
            &self,
            _t: &Topology,
            slot: &str,
            store: &str,
        ) -> Result<Option<PathBuf>, CtlError> {
            self.failing("set_aside")?;
            self.note(format!("aside {slot}"));
            Ok(Some(PathBuf::from(format!("{slot}.left-{store}"))))
        }
        fn start_slot(&self, _t: &Topology, slot: &str) -> Result<(), CtlError> {
            self.note(format!("start {slot}"));
            Ok(())
        }
        fn save(&self, journal: &Journal) -> Result<(), CtlError> {
            *self.saved.borrow_mut() = Some(journal.clone());
            Ok(())
        }
        fn progress(&self, _line: &str) {}
        fn now(&self) -> Instant {
            self.clock + self.elapsed.get()
        }
        fn sleep(&self, d: Duration) {
            self.elapsed.set(self.elapsed.get() + d);
        }
    }

    fn journal(p: &Planned) -> Journal {
        Journal {
            version: JOURNAL_VERSION,
            started_at_unix_ms: 0,
            machines: p.machines.clone(),
            remove: Vec::new(),
            moves: p.moves.clone(),
            done: 0,
            aside: BTreeMap::new(),
            impact_after: p.after.clone(),
        }
    }

    /// The stores as `apply_moves` says the planned moves leave them.
    fn expected(before: &Topology, moves: &[Move]) -> BTreeMap<String, Vec<String>> {
        apply_moves(before, moves)
            .unwrap()
            .stores
            .into_iter()
            .map(|(id, st)| (id, st.slots))
            .collect()
    }

    fn stores(t: &Topology) -> BTreeMap<String, Vec<String>> {
        t.stores
            .iter()
            .map(|(id, st)| (id.clone(), st.slots.clone()))
            .collect()
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn executes_the_planned_moves_keeps_data_aside_and_records_history() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let before = d.snapshot().unwrap();
        let p = plan(&before, &[]).unwrap();
        assert!(
            p.moves
                .iter()
                .any(|m| matches!(m, Move::AddReplica { slot, .. } if slot.starts_with('d'))),
            "{:?}",
            p.moves
        );
        let want = expected(&before, &p.moves);
        let fake = Fake::new(d, 3);
        let mut j = journal(&p);
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert_eq!(j.done, p.moves.len());
        assert_eq!(fake.saved.borrow().as_ref().unwrap().done, p.moves.len());
        assert_eq!(done.steps.len(), p.moves.len());
        assert!(done.steps.iter().all(|s| s.outcome == "done"));
        let after = fake.d.snapshot().unwrap();
        assert_eq!(stores(&after), want);
        // The placement properties hold now: nothing more to do.
        assert!(plan(&after, &[]).unwrap().moves.is_empty());
        // Each slot that left: stopped before it was dropped, set aside
        // after, started again (as a free slot) last.
        let log = fake.log.borrow();
        let drops: Vec<&Move> = p
            .moves
            .iter()
            .filter(|m| matches!(m, Move::DropReplica { .. }))
            .collect();
        assert_eq!(done.kept.len(), drops.len());
        for mv in drops {
            let Move::DropReplica { store, slot } = mv else {
                unreachable!()
            };
            let at = |what: String| {
                log.iter()
                    .position(|l| *l == what)
                    .unwrap_or_else(|| panic!("{what} not in {log:?}"))
            };
            let (stop, drop, aside, start) = (
                at(format!("stop {slot}")),
                at(format!("drop {store} {slot}")),
                at(format!("aside {slot}")),
                at(format!("start {slot}")),
            );
            assert!(stop < drop && drop < aside && aside < start, "{log:?}");
        }
        // Every add is followed by a reload of the store's machines.
        let adds = log.iter().filter(|l| l.starts_with("add ")).count();
        assert!(log.iter().filter(|l| l.starts_with("reload ")).count() >= adds);
        // The history names each step.
        let h = fake.d.history(None, 1000).unwrap();
        let reasons: Vec<&str> = h.iter().map(|e| e.reason.as_str()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("rebalance: add replica"))
        );
        assert!(reasons.iter().any(|r| r.contains("in sync")));
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("rebalance: drop replica"))
        );
    }

    #[test]
    fn a_failed_wait_keeps_the_new_replica_and_a_rerun_continues() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let before = d.snapshot().unwrap();
        let p = plan(&before, &[]).unwrap();
        let want = expected(&before, &p.moves);
        // The new replica never catches up within the bound.
        let fake = Fake::new(d, u32::MAX);
        let mut j = journal(&p);
        let (_, result) = execute(&fake, &mut j, TIMEOUT);
        let e = result.unwrap_err();
        assert_eq!(e.exit(), Exit::Failed);
        let msg = e.to_string();
        assert!(msg.contains("not in sync"), "{msg}");
        assert!(msg.contains("rebalance --apply"), "{msg}");
        assert!(matches!(j.moves[j.done], Move::WaitForSync { .. }), "{j:?}");
        assert_eq!(*fake.saved.borrow().as_ref().unwrap(), j);
        // No store lost a slot: the one being filled has one more.
        let now = fake.d.snapshot().unwrap();
        for (id, st) in &before.stores {
            assert!(now.stores[id].slots.len() >= st.slots.len(), "{id}");
        }
        assert!(now.stores.values().any(|st| st.slots.len() == 3));
        assert!(!fake.log.borrow().iter().any(|l| l.starts_with("drop ")));

        // Run again (from the saved journal) with replication working.
        let fake = Fake {
            sync_after: 2,
            ..fake
        };
        let mut j = fake.saved.borrow().clone().unwrap();
        let (_, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert_eq!(stores(&fake.d.snapshot().unwrap()), want);
    }

    #[test]
    fn a_rerun_skips_what_the_directory_shows_done_and_sets_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let before = d.snapshot().unwrap();
        let p = plan(&before, &[]).unwrap();
        let want = expected(&before, &p.moves);
        let fake = Fake::new(d, 1);
        // Interrupted after the first add reached the directory, before the
        // journal said so.
        let Move::AddReplica { store, slot } = &p.moves[0] else {
            panic!("{:?}", p.moves)
        };
        fake.d.add_replica(store, slot).unwrap();
        // And the first set-aside fails once (after the drop).
        fake.fail.borrow_mut().insert("set_aside", 1);
        let mut j = journal(&p);
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        assert_eq!(done.steps[0].outcome, "already done");
        let e = result.unwrap_err();
        assert!(
            e.to_string().contains("injected failure of set_aside"),
            "{e}"
        );
        assert!(matches!(j.moves[j.done], Move::DropReplica { .. }));
        // The slot is out of its store already; the rerun sets it aside
        // and goes on.
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert_eq!(done.steps[0].outcome, "done");
        assert_eq!(stores(&fake.d.snapshot().unwrap()), want);
        let log = fake.log.borrow();
        for mv in &p.moves {
            if let Move::DropReplica { slot, .. } = mv {
                let n = log
                    .iter()
                    .filter(|l| **l == format!("aside {slot}"))
                    .count();
                assert_eq!(n, 1, "{slot}: {log:?}");
            }
        }
        // A third run has nothing left.
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert!(done.steps.is_empty());
    }

    #[test]
    fn removing_a_machine_moves_its_masters_by_switchover() {
        let dir = tempfile::tempdir().unwrap();
        // 4 machines × 2 slots planned over a, b, c, d with a third spare
        // slot each, then d goes.
        let d = directory(dir.path(), &["a", "b", "c", "d"], &[], 2);
        for m in ["a", "b", "c", "d"] {
            let id = slotmail_directory::placement::slot_id(m, 3);
            d.add_slot(&Slot {
                id: id.clone(),
                machine: m.into(),
                data_dir: id,
                imap_port: 20_003,
                lmtp_port: 21_003,
                sync_port: 22_003,
                weight: 1,
            })
            .unwrap();
        }
        let before = d.snapshot().unwrap();
        let p = plan(&before, &["d".to_string()]).unwrap();
        let switches = p
            .moves
            .iter()
            .filter(|m| matches!(m, Move::SwitchMaster { from, .. } if from.starts_with('d')))
            .count();
        assert!(switches > 0, "{:?}", p.moves);
        let want = expected(&before, &p.moves);
        let fake = Fake::new(d, 1);
        // The first switchover fails once: it is retried.
        fake.fail.borrow_mut().insert("switch_master", 1);
        let mut j = journal(&p);
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert_eq!(done.warnings.len(), 1, "{:?}", done.warnings);
        let after = fake.d.snapshot().unwrap();
        assert_eq!(stores(&after), want);
        assert!(
            after
                .slots_on("d")
                .all(|s| after.store_of_slot(&s.id).is_none())
        );
        let err = machine_remove_refusal(&before, "d").unwrap();
        assert_eq!(err.exit(), Exit::Usage);
        assert!(
            err.to_string().contains("ctl rebalance --remove d --apply"),
            "{err}"
        );
        assert!(machine_remove_refusal(&after, "d").is_none());
        // The switches are in the history with their new epochs.
        assert!(
            fake.d
                .history(None, 1000)
                .unwrap()
                .iter()
                .any(|e| e.reason == "rebalance"
                    && e.old_master.as_deref().is_some_and(|m| m.starts_with('d')))
        );
    }

    #[test]
    fn a_directory_changed_under_the_rebalance_is_reported_not_forced() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let before = d.snapshot().unwrap();
        let p = plan(&before, &[]).unwrap();
        let fake = Fake::new(d, 1);
        // Someone takes the first new slot into another store.
        let Move::AddReplica { store, slot } = &p.moves[0] else {
            panic!()
        };
        let other = before.stores.keys().find(|s| *s != store).unwrap();
        assert!(!store_machines(&before, other).contains(before.machine_of(slot).unwrap()));
        fake.d.add_replica(other, slot).unwrap();
        let mut j = journal(&p);
        let (_, result) = execute(&fake, &mut j, TIMEOUT);
        let e = result.unwrap_err().to_string();
        assert!(e.contains("no longer fits the directory"), "{e}");
        assert_eq!(j.done, 0);
        assert!(fake.log.borrow().is_empty(), "{:?}", fake.log.borrow());
    }

    #[test]
    fn caught_up_means_past_a_reading_a_window_ago_and_nobody_extra() {
        let digest = |name: &str, modseq: u64| {
            (
                name.to_string(),
                UserDigest {
                    name: name.into(),
                    user_id: format!("id-{name}"),
                    modseq,
                    digest: format!("{name}-{modseq}"),
                    mailboxes: 1,
                },
            )
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = SyncTracker::default();
        // Full sync under way: u1 copied, u2 not yet.
        let s = t.observe(
            at(0),
            &[digest("u1", 3), digest("u2", 9)].into(),
            &[digest("u1", 3)].into(),
        );
        assert_eq!((s.caught_up_users, s.caught_up, s.equal), (0, false, false));
        // Too soon after the first reading to judge.
        let s = t.observe(
            at(500),
            &[digest("u1", 5), digest("u2", 11)].into(),
            &[digest("u1", 4), digest("u2", 9)].into(),
        );
        assert!(!s.caught_up);
        // Both written to meanwhile; the replica is past the reading a
        // second ago (3, 9) but behind this one: caught up, not equal.
        let s = t.observe(
            at(1100),
            &[digest("u1", 5), digest("u2", 11)].into(),
            &[digest("u1", 4), digest("u2", 9)].into(),
        );
        assert_eq!((s.caught_up_users, s.caught_up, s.equal), (2, true, false));
        // Behind the reading a second ago (5, 11) on u2: not caught up.
        let s = t.observe(
            at(2200),
            &[digest("u1", 5), digest("u2", 12)].into(),
            &[digest("u1", 5), digest("u2", 10)].into(),
        );
        assert_eq!((s.caught_up_users, s.caught_up), (1, false));
        // Equal in one reading: in sync at once.
        let s = SyncTracker::default().observe(
            at(0),
            &[digest("u1", 5)].into(),
            &[digest("u1", 5)].into(),
        );
        assert!(s.equal && s.caught_up);
        // A user the master does not have: never caught up.
        let mut t = SyncTracker::default();
        for ms in [0, 2000] {
            let s = t.observe(
                at(ms),
                &[digest("u1", 1)].into(),
                &[digest("u1", 1), digest("x", 1)].into(),
            );
            assert!(!s.caught_up && !s.equal, "{s:?}");
        }
        // An empty store is in sync at once.
        assert!(
            SyncTracker::default()
                .observe(t0, &BTreeMap::new(), &BTreeMap::new())
                .equal
        );
    }

    #[test]
    fn under_writes_the_proof_pauses_the_master_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let before = d.snapshot().unwrap();
        let p = plan(&before, &[]).unwrap();
        let want = expected(&before, &p.moves);
        let mut fake = Fake::new(d, 2);
        fake.busy = true;
        let mut j = journal(&p);
        let (done, result) = execute(&fake, &mut j, TIMEOUT);
        result.unwrap();
        assert_eq!(stores(&fake.d.snapshot().unwrap()), want);
        // Every wait paused its master once and resumed it.
        let log = fake.log.borrow();
        let waits = p
            .moves
            .iter()
            .filter(|m| matches!(m, Move::WaitForSync { .. }))
            .count();
        assert_eq!(
            log.iter().filter(|l| l.starts_with("pause ")).count(),
            waits,
            "{log:?}"
        );
        assert_eq!(
            log.iter().filter(|l| l.starts_with("resume ")).count(),
            waits,
            "{log:?}"
        );
        assert!(fake.paused.borrow().is_empty());
        for s in done
            .steps
            .iter()
            .filter(|s| matches!(s.mv, Move::WaitForSync { .. }))
        {
            assert_eq!(s.detail["equal"], true, "{:?}", s.detail);
        }
    }

    #[test]
    fn bad_input_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &[], 2);
        let t = d.snapshot().unwrap();
        let e = plan(&t, &["zz".to_string()]).unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.to_string().contains("zz"), "{e}");
        // Removing a machine without room elsewhere: the planner refuses.
        let e = plan(&t, &["c".to_string()]).unwrap_err();
        assert_eq!(e.exit(), Exit::Usage, "{e}");
        // A fenced slot: reconcile first.
        let st = t.stores.values().next().unwrap();
        d.fail_over(&st.id, &st.replicas()[0], st.epoch, "test")
            .unwrap();
        let e = plan(&d.snapshot().unwrap(), &[]).unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.to_string().contains("reconcile"), "{e}");
        assert_eq!(d.snapshot().unwrap().stores.len(), t.stores.len());
    }

    #[test]
    fn journals_round_trip_and_damage_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path(), &["a", "b", "c"], &["d"], 2);
        let p = plan(&d.snapshot().unwrap(), &[]).unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        assert_eq!(read_journal(&path).unwrap(), None);
        let mut j = journal(&p);
        j.done = 2;
        j.aside.insert(1, PathBuf::from("x.left"));
        write_journal(&path, &j).unwrap();
        assert_eq!(read_journal(&path).unwrap(), Some(j));
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read_journal(&path).unwrap_err().exit(), Exit::Usage);
    }
}
