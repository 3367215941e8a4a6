//! What replication reports about itself: [`ReplicationStatus`], written by
//! the slot as `DATA/replication-status.json` every second for
//! `slotmail ctl status`.
//!
//! A master reports one [`ReplicaStatus`] per replica (lag, counters, held
//! users, corrupt bodies); every slot with a sync listener reports its
//! [`ServerStatus`].

use serde::{Deserialize, Serialize};

/// A slot's replication state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The slot's id.
    pub slot: String,
    /// The store it belongs to.
    pub store: String,
    /// `master` or `replica`.
    pub role: String,
    /// The store's epoch in force on this slot.
    pub epoch: u64,
    /// When this status was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// On a master: one entry per replica.
    pub replicas: Vec<ReplicaStatus>,
    /// The sync listener, if this slot runs one.
    pub server: Option<ServerStatus>,
    /// Durable delivery, when the store has it on.
    #[serde(default)]
    pub durable: Option<DurableStatus>,
}

/// Durable delivery's counters (docs/replication.md, "Durable delivery").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableStatus {
    /// The bound of one wait, in milliseconds.
    pub wait_ms: u64,
    /// `tempfail` or `accept`.
    pub on_timeout: String,
    /// Appends and deliveries a replica acknowledged within the wait.
    pub confirmed: u64,
    /// Those no replica acknowledged within the wait.
    pub timed_out: u64,
    /// Of those, withdrawn and answered with a temporary failure.
    pub withdrawn: u64,
}

/// A [`ReplicaStatus`]'s connection state, as in docs/replication.md's
/// state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamsState {
    /// No stream is connected; reconnecting with backoff.
    Waiting,
    /// Connected; the full comparison is running.
    Greeting,
    /// Connected and compared; rounds run as users change.
    Rolling,
}

/// One replica as its master sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The replica's slot id.
    pub slot: String,
    /// Where it is reached.
    pub address: String,
    pub state: StreamsState,
    /// Streams connected, of `streams`.
    pub connected_streams: usize,
    pub streams: usize,
    /// Users with changes the replica has not acknowledged (queued, running
    /// or waiting for a retry).
    pub pending_users: usize,
    /// The largest (master MODSEQ − acknowledged MODSEQ) over users.
    pub pending_modseq_max: u64,
    /// Age of the oldest change not yet acknowledged, in milliseconds.
    pub lag_ms: u64,
    /// Rounds completed (a `Commit` acknowledged).
    pub rounds: u64,
    /// Full comparisons completed.
    pub comparisons: u64,
    /// Body bytes sent.
    pub body_bytes_sent: u64,
    /// Bytes written to and read from the replica's streams.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Failed connections, handshakes and rounds.
    pub errors: u64,
    /// Bodies the replica refused as not matching their GUID.
    pub guid_mismatches: u64,
    /// Mailboxes whose digest differed after a round (a bug or damage;
    /// each is followed by a full sync of the mailbox).
    pub digest_mismatches: u64,
    /// Corrupt local bodies repaired from the replica's copy.
    pub repaired: u64,
    /// Messages skipped because no good copy of their body exists.
    pub corrupt_skipped: u64,
    /// The most recent error.
    pub last_error: Option<String>,
    /// Users whose replication is held by the mass-deletion guard.
    pub held: Vec<HeldStatus>,
    /// Bodies with no good copy (most recent first, at most 256).
    pub corrupt: Vec<CorruptStatus>,
}

/// A user held by the mass-deletion guard, until an operator confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStatus {
    pub user: String,
    pub reason: String,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

/// A message that could not be replicated because its body is corrupt on
/// the master and the replica has no good copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptStatus {
    pub user: String,
    pub mailbox: String,
    pub uid: u32,
    /// 64 hex digits.
    pub guid: String,
}

/// The sync listener's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Where it listens.
    pub listen: String,
    /// Streams being served now.
    pub connections: usize,
    /// Handshakes accepted and refused.
    pub accepted: u64,
    pub refused: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with `Error` (store failures, missing bodies…).
    pub errors: u64,
    /// Bodies received and stored.
    pub bodies: u64,
    pub body_bytes: u64,
    /// Bodies refused because they did not hash to their GUID.
    pub guid_mismatches: u64,
    /// Bodies this slot knows to be bad and asks the master to resend.
    pub bad_bodies: usize,
    /// The master of the most recent accepted stream.
    pub last_master: Option<String>,
    pub last_error: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
