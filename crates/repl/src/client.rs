//! The master's sync client: one [`Replicator`] per replica
//! (docs/replication.md, "State machine: the master's sync client").
//!
//! ```text
//!             change listener (user, modseq)
//!                         │ mark dirty, wake
//!                         ▼
//!    ┌──────────┐  connect+handshake   ┌──────────┐  full comparison    ┌─────────┐
//!    │ Waiting  │────────────────────▶│ Greeting │────────────────────▶│ Rolling │
//!    └──────────┘                      └──────────┘                     └─────────┘
//!         ▲   backoff 50 ms → 5 s                                            │
//!         └──────────────── connection lost / error ◀────────────────────────┘
//! ```
//!
//! The store's change listener marks the user dirty in a de-duplicating
//! queue and wakes the workers at once: there is no polling timer on the
//! change path. `STREAMS` workers each own one connection; a worker takes
//! the next dirty user that no other worker is syncing, runs one round for
//! it (`round.rs`), and goes back to the queue. A user changed during its
//! round is queued again when the round ends, so rounds of one user never
//! overlap and changes arriving under load are batched into the next round.
//!
//! When the replicator starts, whenever the replica comes back after every
//! stream was lost, and every [`COMPARE_INTERVAL`], one worker runs a full
//! comparison (`ListUsers`, paged): every user whose position, account or
//! digest differs is queued, so a replica that was down catches up without
//! waiting for a new write.
//!
//! A failed round is retried: at once on another connection when the stream
//! broke, after a growing per-user delay when the replica refused the
//! change. The mass-deletion guard holds a user until [`Replicator::confirm`].

use crate::conn::{Conn, SharedConnector};
use crate::durable::AckSignal;
use crate::error::SyncError;
use crate::exec::Exec;
use crate::limits::{
    BACKOFF_MAX, BACKOFF_MIN, COMPARE_INTERVAL, CONNECT_RETRY_MAX, CORRUPT_LISTED_MAX,
    DIRTY_USERS_MAX, HANDSHAKE_TIMEOUT, HELD_LISTED_MAX, STREAMS, USER_RETRY_MAX, USER_RETRY_MIN,
};
use crate::records::{DigestCache, Side, user_digests};
use crate::round::{self, Outcome};
use crate::status::{CorruptStatus, HeldStatus, ReplicaStatus, StreamsState, unix_ms_now};
use slotmail_repl_proto::{
    ClientConfig, ClientHandshake, ClientStep, ErrorCode, PING_IDLE_SECS, UserSummary,
};
use slotmail_store::{Guid, Slot, scrub::Kind};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a master's replicator needs to reach and convince one replica.
#[derive(Clone)]
pub struct ReplicatorConfig {
    /// The cluster secret (keys the handshake proofs).
    pub secret: [u8; 32],
    pub cluster: String,
    pub store: String,
    /// This (master) slot's id.
    pub from_slot: String,
    /// The replica's slot id.
    pub to_slot: String,
    /// The store's epoch as the directory gives it to this master.
    pub epoch: u64,
    /// Streams to keep open ([`STREAMS`]).
    pub streams: usize,
    /// Interval of the anti-entropy full comparison ([`COMPARE_INTERVAL`]).
    pub compare_interval: Duration,
    pub exec: Exec,
    /// Bumped after every round, for durable delivery's waiters; share one
    /// among the replicators of a slot ([`crate::durable::wait_acked`]).
    pub acks: Arc<AckSignal>,
    /// Replicate this one user and nothing else (a user moving to another
    /// store, `crate::migrate`): other users' changes are ignored and the
    /// full comparison compares only this user.
    pub only_user: Option<String>,
}

impl ReplicatorConfig {
    /// A configuration with the default streams, interval and executor.
    pub fn new(
        secret: [u8; 32],
        cluster: &str,
        store: &str,
        from_slot: &str,
        to_slot: &str,
        epoch: u64,
    ) -> Self {
        ReplicatorConfig {
            secret,
            cluster: cluster.to_string(),
            store: store.to_string(),
            from_slot: from_slot.to_string(),
            to_slot: to_slot.to_string(),
            epoch,
            streams: STREAMS,
            compare_interval: COMPARE_INTERVAL,
            exec: Exec::Blocking,
            acks: Arc::new(AckSignal::default()),
            only_user: None,
        }
    }
}

impl std::fmt::Debug for ReplicatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorConfig")
            .field("secret", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("store", &self.store)
            .field("from_slot", &self.from_slot)
            .field("to_slot", &self.to_slot)
            .field("epoch", &self.epoch)
            .field("streams", &self.streams)
            .finish()
    }
}

/// What a user's next round must do beyond sending the changes since the
/// replica's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dirty {
    /// Compare every mailbox digest and full-sync those that differ (a full
    /// comparison found the user's digest different).
    pub check: bool,
    /// Send the whole user.
    pub full_user: bool,
    /// Mailboxes (by `mailbox_id`) to send whole.
    pub full_mailboxes: BTreeSet<String>,
    /// Bodies corrupt here to fetch from the replica and repair.
    pub repair: BTreeSet<Guid>,
}

impl Dirty {
    fn merge(&mut self, other: Dirty) {
        self.check |= other.check;
        self.full_user |= other.full_user;
        self.full_mailboxes.extend(other.full_mailboxes);
        self.repair.extend(other.repair);
    }
}

/// Replication lag of one user (kept only while it is behind).
#[derive(Debug, Clone, Default)]
struct Lag {
    /// The newest MODSEQ the store announced (or a comparison found).
    notified: u64,
    /// The newest MODSEQ the replica acknowledged.
    acked: u64,
    /// When the oldest change not yet acknowledged happened.
    since: Option<Instant>,
    /// When the first change after the running round's start happened.
    newer_since: Option<Instant>,
    /// Consecutive failed rounds.
    failures: u32,
    /// A retry is scheduled.
    retry_pending: bool,
}

#[derive(Debug, Default)]
struct Counters {
    rounds: u64,
    comparisons: u64,
    body_bytes_sent: u64,
    bytes_out: u64,
    bytes_in: u64,
    errors: u64,
    guid_mismatches: u64,
    digest_mismatches: u64,
    repaired: u64,
    corrupt_skipped: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Dirty users not being synced, in the order they became dirty.
    queue: VecDeque<String>,
    /// Every dirty user (queued, or changed again during its round).
    dirty: HashMap<String, Dirty>,
    /// Users whose round is running.
    running: HashSet<String>,
    lag: HashMap<String, Lag>,
    held: BTreeMap<String, HeldStatus>,
    /// Users whose next round may pass the mass-deletion guard, each with
    /// the confirmation's number: a round uses up only the confirmation it
    /// started under, not one given while it ran.
    confirmed: HashMap<String, u64>,
    /// The last confirmation's number.
    confirmations: u64,
    /// The replica's count of bad-body marks, as its last `Pong` said.
    replica_marks: u64,
    compare_needed: bool,
    comparing: bool,
    connected: usize,
    counters: Counters,
    corrupt: VecDeque<CorruptStatus>,
    last_error: Option<String>,
}

impl State {
    fn mark_dirty(&mut self, user: &str, dirty: Dirty) {
        if let Some(d) = self.dirty.get_mut(user) {
            d.merge(dirty);
            return;
        }
        if self.dirty.len() >= DIRTY_USERS_MAX {
            // Too many to track one by one: forget them and let a full
            // comparison find every difference again.
            tracing::warn!(
                limit = DIRTY_USERS_MAX,
                "replication queue overflow; a full comparison follows"
            );
            self.dirty.clear();
            self.queue.clear();
            self.compare_needed = true;
            return;
        }
        self.dirty.insert(user.to_string(), dirty);
        if !self.running.contains(user) {
            self.queue.push_back(user.to_string());
        }
    }

    fn take_job(&mut self) -> Option<(String, Dirty)> {
        while let Some(user) = self.queue.pop_front() {
            if let Some(d) = self.dirty.remove(&user) {
                self.running.insert(user.clone());
                if let Some(lag) = self.lag.get_mut(&user) {
                    lag.newer_since = None;
                }
                return Some((user, d));
            }
        }
        None
    }

    fn behind(&mut self, user: &str, modseq: u64, acked: Option<u64>) {
        let lag = self.lag.entry(user.to_string()).or_default();
        lag.notified = lag.notified.max(modseq);
        if let Some(a) = acked {
            lag.acked = a;
        }
        if lag.since.is_none() {
            lag.since = Some(Instant::now());
        }
    }

    /// A round that ran under `confirmation` ended: it is used up, unless
    /// a newer one was given meanwhile.
    fn use_confirmation(&mut self, user: &str, confirmation: Option<u64>) {
        if confirmation.is_some() && self.confirmed.get(user).copied() == confirmation {
            self.confirmed.remove(user);
        }
    }

    fn error(&mut self, text: String) {
        self.counters.errors += 1;
        self.last_error = Some(text);
    }
}

/// A round that failed: whether its stream is unusable, why, and what the
/// retry must do.
struct Failed {
    ends_stream: bool,
    text: String,
    dirty: Dirty,
}

impl Failed {
    fn new(e: &SyncError, dirty: Dirty) -> Self {
        Failed {
            ends_stream: e.ends_stream(),
            text: e.to_string(),
            dirty,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) slot: Arc<Slot>,
    pub(crate) config: ReplicatorConfig,
    connector: SharedConnector,
    state: Mutex<State>,
    wake: Notify,
    pub(crate) cache: DigestCache,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn exec(&self) -> Exec {
        self.config.exec
    }

    /// The store's change listener: the user changed at `modseq`.
    fn changed(&self, user: &str, modseq: u64) {
        if self.config.only_user.as_deref().is_some_and(|u| u != user) {
            return;
        }
        {
            let mut st = self.state();
            let running = st.running.contains(user);
            let lag = st.lag.entry(user.to_string()).or_default();
            lag.notified = lag.notified.max(modseq);
            let now = Instant::now();
            if lag.since.is_none() {
                lag.since = Some(now);
            } else if running && lag.newer_since.is_none() {
                lag.newer_since = Some(now);
            }
            if st.held.contains_key(user) {
                return;
            }
            st.mark_dirty(user, Dirty::default());
        }
        self.wake.notify_waiters();
    }

    /// The replica reported (`Pong`) how many bodies it marked bad since it
    /// started: when that grew, its digests changed without a change here,
    /// so compare at once (the comparison resends the bodies).
    fn replica_marks(&self, marks: u64) {
        let compare = {
            let mut st = self.state();
            let grew = marks > st.replica_marks;
            st.replica_marks = marks;
            if grew {
                st.compare_needed = true;
            }
            grew
        };
        if compare {
            tracing::warn!(replica = %self.config.to_slot, marks, "the replica found bad bodies; comparing");
            self.wake.notify_waiters();
        }
    }

    /// The confirmation a round of `user` may pass the guard under.
    pub(crate) fn confirmation(&self, user: &str) -> Option<u64> {
        self.state().confirmed.get(user).copied()
    }

    pub(crate) fn count_body(&self, bytes: u64) {
        self.state().counters.body_bytes_sent += bytes;
    }

    pub(crate) fn count_guid_mismatch(&self) {
        self.state().counters.guid_mismatches += 1;
    }

    pub(crate) fn count_digest_mismatch(&self, user: &str, mailbox: &str) {
        let mut st = self.state();
        st.counters.digest_mismatches += 1;
        st.last_error = Some(format!(
            "digest of mailbox {mailbox} of {user} differs after a round"
        ));
    }

    pub(crate) fn count_repaired(&self) {
        self.state().counters.repaired += 1;
    }

    pub(crate) fn report_corrupt(&self, report: CorruptStatus) {
        tracing::error!(user = %report.user, mailbox = %report.mailbox, uid = report.uid, guid = %report.guid,
            "message not replicated: its body is corrupt here and the replica has no good copy");
        let mut st = self.state();
        st.counters.corrupt_skipped += 1;
        st.corrupt.retain(|c| c != &report);
        st.corrupt.push_front(report);
        st.corrupt.truncate(CORRUPT_LISTED_MAX);
    }

    fn take_bytes(&self, conn: &mut Conn) {
        let mut st = self.state();
        st.counters.bytes_in += std::mem::take(&mut conn.bytes_in);
        st.counters.bytes_out += std::mem::take(&mut conn.bytes_out);
    }

    /// A round ended.
    fn finish(self: &Arc<Self>, user: &str, result: Result<Outcome, Failed>) {
        let mut st = self.state();
        st.running.remove(user);
        match result {
            Ok(Outcome::Done {
                modseq,
                refull,
                confirmation,
            }) => {
                st.counters.rounds += 1;
                st.use_confirmation(user, confirmation);
                let still_dirty = st.dirty.contains_key(user);
                if let Some(lag) = st.lag.get_mut(user) {
                    lag.acked = lag.acked.max(modseq);
                    lag.failures = 0;
                    if lag.acked >= lag.notified && !still_dirty && refull.is_empty() {
                        st.lag.remove(user);
                    } else if lag.acked >= lag.notified {
                        lag.since = lag.newer_since.take().or(lag.since);
                    } else {
                        lag.since = Some(lag.newer_since.take().unwrap_or_else(Instant::now));
                    }
                }
                if !refull.is_empty() {
                    st.mark_dirty(
                        user,
                        Dirty {
                            full_mailboxes: refull,
                            ..Dirty::default()
                        },
                    );
                }
            }
            Ok(Outcome::Gone { confirmation }) => {
                st.counters.rounds += 1;
                st.use_confirmation(user, confirmation);
                st.lag.remove(user);
            }
            // A confirmation (an admin deletion, `ctl repl confirm`) that
            // came while the round ran: the round did not see it (a round
            // that sees one never holds), so the user runs again with it
            // instead of waiting for a confirmation already given. An
            // admin deletion confirms right after the store's change
            // notice, which can start the round first.
            Ok(Outcome::Held { .. }) if st.confirmed.contains_key(user) => {
                st.held.remove(user);
                // Queued again below, as a user with changes left.
                st.dirty.entry(user.to_string()).or_default().merge(Dirty {
                    check: true,
                    ..Dirty::default()
                });
            }
            Ok(Outcome::Held { reason }) => {
                tracing::warn!(user, %reason, "replication of the user is held until an operator confirms");
                st.dirty.remove(user);
                st.queue.retain(|u| u != user);
                if st.held.len() < HELD_LISTED_MAX || st.held.contains_key(user) {
                    st.held.insert(
                        user.to_string(),
                        HeldStatus {
                            user: user.to_string(),
                            reason,
                            since_unix_ms: unix_ms_now(),
                        },
                    );
                }
            }
            Err(Failed {
                ends_stream: true,
                dirty,
                ..
            }) => {
                // The stream broke: the next connection takes the user again.
                st.mark_dirty(user, dirty);
            }
            Err(Failed { text, dirty, .. }) => {
                st.error(format!("round for {user}: {text}"));
                tracing::warn!(user, cause = %text, "replication round failed; retrying later");
                let lag = st.lag.entry(user.to_string()).or_default();
                lag.failures = lag.failures.saturating_add(1);
                let delay = USER_RETRY_MIN
                    .saturating_mul(1 << lag.failures.min(16))
                    .min(USER_RETRY_MAX);
                if lag.since.is_none() {
                    lag.since = Some(Instant::now());
                }
                if lag.retry_pending {
                    return;
                }
                lag.retry_pending = true;
                let me = self.clone();
                let user = user.to_string();
                self.tracker.spawn(async move {
                    tokio::select! {
                        biased;
                        _ = me.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    {
                        let mut st = me.state();
                        if let Some(lag) = st.lag.get_mut(&user) {
                            lag.retry_pending = false;
                        }
                        if !st.held.contains_key(&user) {
                            st.mark_dirty(&user, dirty);
                            // Changes that arrived during the failed round
                            // left the user dirty but not queued (a running
                            // user is not queued, and the failure returned
                            // before the requeue below): queue it now, or it
                            // would never be replicated again.
                            if st.dirty.contains_key(&user)
                                && !st.running.contains(&user)
                                && !st.queue.contains(&user)
                            {
                                st.queue.push_back(user.clone());
                            }
                        }
                    }
                    me.wake.notify_waiters();
                });
                return;
            }
        }
        let more = st.dirty.contains_key(user);
        if more {
            st.queue.push_back(user.to_string());
        }
        drop(st);
        self.config.acks.notify();
        if more {
            self.wake.notify_waiters();
        }
    }
}

/// The master's replication to one replica. Dropping it (or a clone) does
/// not stop it: call [`Replicator::shutdown`].
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
}

impl Replicator {
    /// Start replicating `slot` to the replica `connector` reaches: registers
    /// the store change listener, starts the streams and queues a full
    /// comparison.
    pub fn start(slot: Arc<Slot>, config: ReplicatorConfig, connector: SharedConnector) -> Self {
        let streams = config.streams.max(1);
        let shared = Arc::new(Shared {
            slot: slot.clone(),
            config,
            connector,
            state: Mutex::new(State {
                compare_needed: true,
                ..State::default()
            }),
            wake: Notify::new(),
            cache: DigestCache::default(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        slot.add_change_listener(Arc::new(move |user: &str, modseq: u64| {
            if let Some(shared) = weak.upgrade()
                && !shared.stop.is_cancelled()
            {
                shared.changed(user, modseq);
            }
        }));
        for index in 0..streams {
            let s = shared.clone();
            shared.tracker.spawn(async move { worker(s, index).await });
        }
        Replicator { shared }
    }

    /// Queue `guid`, found corrupt or missing in this (master) slot, for
    /// repair from this replica: the user's next round fetches the
    /// replica's copy (as after [`Replicator::scrub_and_repair`]).
    pub fn repair(&self, user: &str, guid: Guid) {
        self.shared.state().mark_dirty(
            user,
            Dirty {
                repair: BTreeSet::from([guid]),
                ..Dirty::default()
            },
        );
        self.shared.wake.notify_waiters();
    }

    /// On a master: read every body of this slot once in the background,
    /// paced ([`crate::verify`]), and queue each one that fails for repair
    /// from every replica in `replicators`. A repair a scrub queued lives
    /// only in memory; after a restart this pass finds the damage again.
    /// The pass ends when the first replicator is shut down.
    pub fn verify_and_repair_in_background(replicators: &[Replicator]) {
        let Some(first) = replicators.first() else {
            return;
        };
        let shared = first.shared.clone();
        let all = replicators.to_vec();
        first.shared.tracker.spawn(async move {
            let pass = crate::verify::verify_bodies(
                shared.slot.clone(),
                shared.exec(),
                crate::limits::VERIFY_BYTES_PER_SEC,
                |_, _| false,
                |user, guid| {
                    for r in &all {
                        r.repair(user, guid);
                    }
                },
            );
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => {}
                _ = pass => {}
            }
        });
    }

    /// The replica's slot id.
    pub fn replica(&self) -> &str {
        &self.shared.config.to_slot
    }

    /// Queue a round for a user (for changes the store does not announce,
    /// such as account changes).
    pub fn nudge(&self, user: &str) {
        let modseq = self
            .shared
            .slot
            .user(user)
            .and_then(|u| u.modseq())
            .unwrap_or(0);
        self.shared.changed(user, modseq);
    }

    /// Queue a round for a user that compares every mailbox digest and
    /// sends the differing mailboxes whole: for a user whose records carry
    /// MODSEQs older than the replica's position, which a delta would miss
    /// (a user that moved in from another store, `crate::migrate`).
    pub fn check_user(&self, user: &str) {
        let modseq = self
            .shared
            .slot
            .user(user)
            .and_then(|u| u.modseq())
            .unwrap_or(0);
        mark(&self.shared, user, modseq, None, true);
    }

    /// Whether the replica has acknowledged (`Ok` to `Commit`, after its
    /// commit) `user` at `modseq` or later. The store announces a change
    /// before the call that made it returns, so a change made before this
    /// call is either acknowledged or still counted as pending here.
    pub fn acked(&self, user: &str, modseq: u64) -> bool {
        self.shared
            .state()
            .lag
            .get(user)
            .is_none_or(|l| l.acked >= modseq)
    }

    /// Run a full comparison as soon as a stream is free.
    pub fn compare_now(&self) {
        self.shared.state().compare_needed = true;
        self.shared.wake.notify_waiters();
    }

    /// Let a user held by the mass-deletion guard continue: its next round
    /// applies the held deletions. Returns whether the user was held. An
    /// explicit admin action (the admin endpoint's user deletion) calls it
    /// too, after its change committed, so the deletion it made is not
    /// held: only rounds that start after the call pass under it.
    pub fn confirm(&self, user: &str) -> bool {
        let was_held = {
            let mut st = self.shared.state();
            let was = st.held.remove(user).is_some();
            st.confirmations += 1;
            let number = st.confirmations;
            st.confirmed.insert(user.to_string(), number);
            st.mark_dirty(
                user,
                Dirty {
                    check: true,
                    ..Dirty::default()
                },
            );
            was
        };
        self.shared.wake.notify_waiters();
        was_held
    }

    /// Whether the mass-deletion guard holds `user` (until
    /// [`Replicator::confirm`]).
    pub fn is_held(&self, user: &str) -> bool {
        self.shared.state().held.contains_key(user)
    }

    /// Scrub this (master) slot and, for every body found corrupt or
    /// missing, fetch the replica's copy and repair the local file. Returns
    /// the scrub's report; the repairs run as rounds of the users.
    pub async fn scrub_and_repair(&self) -> slotmail_store::scrub::Report {
        let slot = self.shared.slot.clone();
        let report = self.shared.exec().run(move || slot.scrub(false)).await;
        let mut repairs: BTreeMap<String, BTreeSet<Guid>> = BTreeMap::new();
        for f in report.damage() {
            if matches!(f.kind, Kind::CorruptFile | Kind::MissingFile)
                && let Some(guid) = f.guid.as_deref().and_then(|g| g.parse::<Guid>().ok())
            {
                repairs.entry(f.user.clone()).or_default().insert(guid);
            }
        }
        {
            let mut st = self.shared.state();
            for (user, repair) in repairs {
                st.mark_dirty(
                    &user,
                    Dirty {
                        repair,
                        ..Dirty::default()
                    },
                );
            }
        }
        self.shared.wake.notify_waiters();
        report
    }

    /// The replication state towards this replica.
    pub fn status(&self) -> ReplicaStatus {
        let st = self.shared.state();
        let now = Instant::now();
        let mut pending: HashSet<&str> = st.dirty.keys().map(String::as_str).collect();
        pending.extend(st.running.iter().map(String::as_str));
        pending.extend(st.held.keys().map(String::as_str));
        pending.extend(
            st.lag
                .iter()
                .filter(|(_, l)| l.since.is_some() || l.retry_pending)
                .map(|(u, _)| u.as_str()),
        );
        let lag_ms = st
            .lag
            .values()
            .filter_map(|l| l.since)
            .min()
            .map(|since| now.saturating_duration_since(since).as_millis() as u64)
            .unwrap_or(0);
        let state = if st.connected == 0 {
            StreamsState::Waiting
        } else if st.comparing || st.compare_needed {
            StreamsState::Greeting
        } else {
            StreamsState::Rolling
        };
        let c = &st.counters;
        ReplicaStatus {
            slot: self.shared.config.to_slot.clone(),
            address: self.shared.connector.describe(),
            state,
            connected_streams: st.connected,
            streams: self.shared.config.streams.max(1),
            pending_users: pending.len(),
            pending_modseq_max: st
                .lag
                .values()
                .map(|l| l.notified.saturating_sub(l.acked))
                .max()
                .unwrap_or(0),
            lag_ms,
            rounds: c.rounds,
            comparisons: c.comparisons,
            body_bytes_sent: c.body_bytes_sent,
            bytes_out: c.bytes_out,
            bytes_in: c.bytes_in,
            errors: c.errors,
            guid_mismatches: c.guid_mismatches,
            digest_mismatches: c.digest_mismatches,
            repaired: c.repaired,
            corrupt_skipped: c.corrupt_skipped,
            last_error: st.last_error.clone(),
            held: st.held.values().cloned().collect(),
            corrupt: st.corrupt.iter().cloned().collect(),
        }
    }

    /// Whether the replica holds every change announced so far and no
    /// comparison or round is pending (tests wait for this).
    pub fn is_idle(&self) -> bool {
        let st = self.shared.state();
        st.connected > 0
            && !st.compare_needed
            && !st.comparing
            && st.dirty.is_empty()
            && st.running.is_empty()
            && st
                .lag
                .values()
                .all(|l| l.since.is_none() && !l.retry_pending)
    }

    /// Stop every stream and wait for the workers to end.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.wake.notify_waiters();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

/// Why a connection attempt failed.
enum ConnectError {
    /// The replica did not answer (connection refused, reset, timeout):
    /// retried soon.
    Down(SyncError),
    /// The replica answered and refused, or broke the protocol: backoff.
    Refused(SyncError),
}

async fn connect(shared: &Shared) -> Result<Conn, ConnectError> {
    let channel = shared
        .connector
        .connect()
        .await
        .map_err(|e| ConnectError::Down(e.into()))?;
    let mut conn = Conn::new(channel.stream);
    let c = &shared.config;
    let (mut machine, hello) = ClientHandshake::start(
        ClientConfig {
            secret: c.secret,
            cluster: c.cluster.clone(),
            store: c.store.clone(),
            from_slot: c.from_slot.clone(),
            to_slot: c.to_slot.clone(),
            epoch: c.epoch,
            capabilities: Vec::new(),
            binding: channel.binding,
        },
        rand::random(),
    );
    let steps = async {
        conn.send_unchecked(&hello).await?;
        loop {
            let frame = match conn.recv().await {
                Ok(f) => f,
                Err(SyncError::Frame(e)) => {
                    let failure = machine.undecodable(&e);
                    if let Some(f) = &failure.send {
                        let _ = conn.send_unchecked(f).await;
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
                ClientStep::Send(f) => conn.send_unchecked(&f).await?,
                ClientStep::Established(_) => return Ok(()),
                ClientStep::Failed(failure) => {
                    if let Some(f) = &failure.send {
                        let _ = conn.send_unchecked(f).await;
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
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, steps).await {
        Ok(Ok(())) => {
            conn.established();
            Ok(conn)
        }
        Ok(Err(e @ (SyncError::Io(_) | SyncError::Closed))) => Err(ConnectError::Down(e)),
        Ok(Err(e)) => Err(ConnectError::Refused(e)),
        Err(_) => Err(ConnectError::Down(SyncError::Timeout("the handshake"))),
    }
}

/// Sleep, unless the replicator stops first (then `false`).
async fn pause(shared: &Shared, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = shared.stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

async fn worker(shared: Arc<Shared>, index: usize) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let attempt = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return,
            c = connect(&shared) => c,
        };
        let mut conn = match attempt {
            Ok(conn) => conn,
            Err(failure) => {
                let (delay, e) = match failure {
                    ConnectError::Down(e) => (backoff.min(CONNECT_RETRY_MAX), e),
                    ConnectError::Refused(e) => (backoff, e),
                };
                if backoff == BACKOFF_MIN || !matches!(e, SyncError::Io(_)) {
                    tracing::info!(replica = %shared.config.to_slot, stream = index, cause = %e, "cannot connect to the replica");
                }
                let refused = matches!(
                    e,
                    SyncError::Handshake {
                        code: ErrorCode::StaleEpoch | ErrorCode::Auth | ErrorCode::NotReplica,
                        ..
                    }
                );
                {
                    let mut st = shared.state();
                    st.error(format!("connecting: {e}"));
                    if refused {
                        tracing::error!(replica = %shared.config.to_slot, cause = %e, "the replica refuses this master");
                    }
                }
                if !pause(&shared, delay).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        tracing::debug!(replica = %shared.config.to_slot, stream = index, "sync stream established");
        shared.state().connected += 1;
        let result = run_stream(&shared, &mut conn).await;
        shared.take_bytes(&mut conn);
        {
            let mut st = shared.state();
            st.connected -= 1;
            // The replica may have been away (restarted, or rebuilt empty,
            // while other streams reconnected): compare when it is back.
            // Not only when the last stream went: idle streams notice a
            // restart one by one, at their next ping.
            st.compare_needed = true;
        }
        match result {
            Ok(()) => {
                conn.shutdown().await;
                return;
            }
            Err(e) => {
                if let SyncError::Frame(fe) = &e {
                    let _ = conn.send_unchecked(&fe.to_frame()).await;
                }
                tracing::info!(replica = %shared.config.to_slot, stream = index, cause = %e, "sync stream lost");
                shared.state().error(format!("stream: {e}"));
                if !pause(&shared, BACKOFF_MIN).await {
                    return;
                }
            }
        }
    }
}

enum Work {
    Compare,
    Round(String, Dirty),
}

/// Serve jobs on one established stream until it fails (`Err`) or the
/// replicator stops (`Ok`).
async fn run_stream(shared: &Arc<Shared>, conn: &mut Conn) -> Result<(), SyncError> {
    let mut next_compare = Instant::now() + shared.config.compare_interval;
    let ping_idle = Duration::from_secs(PING_IDLE_SECS);
    // When this stream pings if it has sent nothing by then. Kept across
    // wake-ups that bring it no work (another stream took the job, or the
    // changed user is in a round elsewhere): a fresh timer per wake-up
    // never fired while a long round's user kept changing, and the replica
    // closed the quiet stream (chaos finding 7).
    let mut ping_at = Instant::now() + ping_idle;
    loop {
        let work = {
            let notified = shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let work = {
                let mut st = shared.state();
                if st.compare_needed && !st.comparing {
                    st.compare_needed = false;
                    st.comparing = true;
                    Some(Work::Compare)
                } else {
                    st.take_job().map(|(u, d)| Work::Round(u, d))
                }
            };
            match work {
                Some(w) => w,
                None => {
                    let idle = tokio::time::sleep_until(ping_at);
                    tokio::select! {
                        biased;
                        _ = shared.stop.cancelled() => return Ok(()),
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(next_compare) => {
                            shared.state().compare_needed = true;
                            next_compare = Instant::now() + shared.config.compare_interval;
                        }
                        _ = idle => {
                            let marks = round::ping(conn).await?;
                            shared.replica_marks(marks);
                            ping_at = Instant::now() + ping_idle;
                        }
                    }
                    continue;
                }
            }
        };
        match work {
            Work::Compare => {
                let result = compare(shared, conn).await;
                shared.take_bytes(conn);
                let mut st = shared.state();
                st.comparing = false;
                match result {
                    Ok(()) => {
                        st.counters.comparisons += 1;
                        next_compare = Instant::now() + shared.config.compare_interval;
                    }
                    Err(e) => {
                        if e.ends_stream() {
                            st.compare_needed = true;
                            return Err(e);
                        }
                        // Our own store failed: try again later, not at once.
                        st.error(format!("comparison: {e}"));
                        next_compare = Instant::now() + BACKOFF_MAX;
                    }
                }
                drop(st);
                shared.wake.notify_waiters();
            }
            Work::Round(user, dirty) => {
                let result = tokio::select! {
                    biased;
                    _ = shared.stop.cancelled() => {
                        shared.finish(&user, Err(Failed::new(&SyncError::Closed, dirty)));
                        return Ok(());
                    }
                    r = round::run(shared, conn, &user, dirty.clone()) => r,
                };
                shared.take_bytes(conn);
                match result {
                    Ok(outcome) => shared.finish(&user, Ok(outcome)),
                    Err(e) => {
                        shared.finish(&user, Err(Failed::new(&e, dirty)));
                        if e.ends_stream() {
                            return Err(e);
                        }
                    }
                }
            }
        }
        ping_at = Instant::now() + ping_idle;
    }
}

/// The full comparison: page through the replica's users and queue every
/// user whose position, account or digest differs from the master's.
async fn compare(shared: &Arc<Shared>, conn: &mut Conn) -> Result<(), SyncError> {
    if let Some(user) = &shared.config.only_user {
        // One user: its round compares every mailbox digest.
        mark(shared, user, 0, None, true);
        return Ok(());
    }
    let slot = shared.slot.clone();
    let mut names: Vec<String> = shared
        .exec()
        .run(move || slot.accounts())
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    names.sort();
    let mut next = 0;
    let mut after: Option<String> = None;
    let mut differ = 0usize;
    loop {
        let page = round::list_users(conn, after.clone()).await?;
        for summary in page.users {
            if after.as_ref().is_some_and(|a| summary.name <= *a) {
                return Err(SyncError::Unexpected {
                    request: slotmail_repl_proto::FrameType::ListUsers,
                    got: slotmail_repl_proto::FrameType::Users,
                });
            }
            while next < names.len() && names[next] < summary.name {
                differ += usize::from(compare_user(shared, &names[next], None).await?);
                next += 1;
            }
            if next < names.len() && names[next] == summary.name {
                differ += usize::from(compare_user(shared, &names[next], Some(&summary)).await?);
                next += 1;
            } else {
                // The replica holds a user the master does not.
                differ += 1;
                mark(shared, &summary.name, 0, None, true);
            }
            after = Some(summary.name);
        }
        if !page.more {
            break;
        }
        if after.is_none() {
            return Err(SyncError::Unexpected {
                request: slotmail_repl_proto::FrameType::ListUsers,
                got: slotmail_repl_proto::FrameType::Users,
            });
        }
    }
    while next < names.len() {
        differ += usize::from(compare_user(shared, &names[next], None).await?);
        next += 1;
    }
    tracing::info!(replica = %shared.config.to_slot, users = names.len(), differ, "full comparison done");
    Ok(())
}

fn mark(shared: &Shared, user: &str, modseq: u64, acked: Option<u64>, check: bool) {
    {
        let mut st = shared.state();
        st.behind(user, modseq, acked);
        if st.held.contains_key(user) {
            return;
        }
        st.mark_dirty(
            user,
            Dirty {
                check,
                ..Dirty::default()
            },
        );
    }
    shared.wake.notify_waiters();
}

/// Compare one user; queue it if it differs. Returns whether it differs.
async fn compare_user(
    shared: &Arc<Shared>,
    name: &str,
    replica: Option<&UserSummary>,
) -> Result<bool, SyncError> {
    let slot = shared.slot.clone();
    let me = shared.clone();
    let user = name.to_string();
    let digests = shared
        .exec()
        .run(move || user_digests(&slot, &user, Side::Master, &me.cache, &|_| false, false))
        .await;
    let d = match digests {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(false),
        Err(e) => {
            // One user's damage does not stop the comparison: its round
            // meets the error again and retries with backoff.
            tracing::warn!(user = name, cause = %e, "cannot digest user for the comparison");
            mark(shared, name, 0, None, true);
            return Ok(true);
        }
    };
    let same = replica.is_some_and(|r| {
        r.user_id == d.account.user_id
            && r.modseq == d.modseq
            && r.account_modseq == d.account.modseq
            && r.digest == d.digest
    });
    if same {
        let mut st = shared.state();
        let busy = st.dirty.contains_key(name) || st.running.contains(name);
        if let Some(lag) = st.lag.get_mut(name) {
            lag.acked = lag.acked.max(d.modseq);
            if !busy && lag.acked >= lag.notified && !lag.retry_pending {
                st.lag.remove(name);
            }
        }
        return Ok(false);
    }
    let acked = replica
        .filter(|r| r.user_id == d.account.user_id)
        .map(|r| r.modseq);
    mark(shared, name, d.modseq, acked, true);
    Ok(true)
}

/// Sync-client side helpers used by tests: wait until a replicator is idle.
pub async fn wait_idle(replicator: &Replicator, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if replicator.is_idle() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replicator.is_idle()
}
