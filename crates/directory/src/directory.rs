//! The `Directory` trait: every operation callers (the CLI, the proxy, the
//! machine supervisor, replication) need on the cluster's metadata.
//!
//! The trait speaks only the plain values of [`crate::model`] and
//! [`DirectoryError`], so a shared backend (etcd) can implement it later
//! without touching callers. Contract for every implementation:
//!
//! - every mutation validates first and then applies fully, atomically, or
//!   returns an error and leaves the directory unchanged;
//! - [`Directory::set_master`] is a compare-and-set on the store's epoch: of
//!   two callers that read the same epoch, one wins and the other gets
//!   [`DirectoryError::StaleEpoch`];
//! - every applied mutation raises [`Directory::revision`] by one;
//! - several processes may use the same directory at once.

use crate::error::DirectoryError;
use crate::model::{
    CheckResult, Fence, Machine, MovePhase, RoleChange, Route, Slot, Store, StoreSpec, Topology,
    UserMove,
};

/// Result of a directory operation.
pub type Result<T> = std::result::Result<T, DirectoryError>;

/// The cluster's metadata: machines, slots, stores, roles and epochs, users.
pub trait Directory: Send + Sync {
    /// The whole directory, read consistently at one moment.
    fn snapshot(&self) -> Result<Topology>;

    /// A number that grows by one at every applied mutation: a cache of the
    /// snapshot is current while this has not changed.
    fn revision(&self) -> Result<u64>;

    /// Declare a machine. Refused if the name or the address is taken.
    fn add_machine(&self, machine: &Machine) -> Result<()>;

    /// Forget a machine. Refused while it has any slot (and so any master).
    fn remove_machine(&self, name: &str) -> Result<()>;

    /// Declare a slot on a known machine. Refused if the id is taken, or the
    /// ports or data directory clash with another slot of that machine.
    fn add_slot(&self, slot: &Slot) -> Result<()>;

    /// Forget a slot. Refused while it belongs to a store.
    fn remove_slot(&self, id: &str) -> Result<()>;

    /// Create a store of 2 or more free slots on distinct machines, the first
    /// one its master. Its epoch starts at 1, or one above the last epoch a
    /// store of that id ever had (so a re-created store's epoch never goes
    /// back). Recorded in the history with `reason`.
    fn create_store(&self, spec: &StoreSpec, reason: &str) -> Result<Store>;

    /// Forget a store and free its slots. Refused while it has users.
    fn remove_store(&self, id: &str) -> Result<()>;

    /// Add a free slot as the store's last replica. Refused if the slot's
    /// machine holds a slot of the store already.
    fn add_replica(&self, store: &str, slot: &str) -> Result<()>;

    /// Remove a replica from the store. Refused for the master and if the
    /// store would be left with fewer than 2 slots.
    fn drop_replica(&self, store: &str, slot: &str) -> Result<()>;

    /// Make the replica `new_master` the store's master if the store is at
    /// `expected_epoch`; the epoch grows by one and the old master takes the
    /// new master's place in the replica order. Returns the new epoch.
    /// Recorded in the history with `reason`.
    fn set_master(
        &self,
        store: &str,
        new_master: &str,
        expected_epoch: u64,
        reason: &str,
    ) -> Result<u64>;

    /// Failover: like [`Directory::set_master`], and in the same
    /// transaction fence the old master (it refuses writes and replication
    /// until [`Directory::unfence`]). Returns the new epoch.
    fn fail_over(
        &self,
        store: &str,
        new_master: &str,
        expected_epoch: u64,
        reason: &str,
    ) -> Result<u64>;

    /// Lift a slot's fence (after `ctl reconcile` or `ctl rebuild`); the slot
    /// becomes a plain replica of its store. Refused if it is not fenced.
    fn unfence(&self, slot: &str) -> Result<Fence>;

    /// Set the replicas' failover order (`replicas` must be a reordering of
    /// the store's replicas; the master and the epoch stay).
    fn set_replica_order(&self, store: &str, replicas: &[String]) -> Result<()>;

    /// Turn durable delivery on or off for a store.
    fn set_sync(&self, store: &str, sync: bool) -> Result<()>;

    /// Put a new user in a store.
    fn assign_user(&self, user: &str, store: &str) -> Result<()>;

    /// Move a user from store `from` to store `to` (the routing switch at the
    /// end of a move; copying the mail is the caller's). Refused if the user
    /// is not in `from` (someone else moved it) or `to` is where it is.
    fn move_user(&self, user: &str, from: &str, to: &str) -> Result<()>;

    /// Forget a user. Refused while the user is being moved.
    fn remove_user(&self, user: &str) -> Result<()>;

    /// Mark the start of a move of `user` from its store `from` to `to`
    /// (phase [`MovePhase::Copying`]; the user stays routed to `from`).
    /// Refused if the user is not in `from`, `to` is unknown or is `from`,
    /// or a move of the user exists already.
    fn begin_move(&self, user: &str, from: &str, to: &str) -> Result<UserMove>;

    /// Set the phase of a move to [`MovePhase::Copying`] or
    /// [`MovePhase::Final`] (the routing does not change). Refused once the
    /// move has switched.
    fn set_move_phase(&self, user: &str, phase: MovePhase) -> Result<UserMove>;

    /// The switch of a move, in one transaction: the user is routed to the
    /// move's `to` store and the move becomes [`MovePhase::Switched`].
    /// Refused unless the move is in [`MovePhase::Final`].
    fn switch_move(&self, user: &str) -> Result<UserMove>;

    /// Forget a move: after the switch (`ctl user move` removed the old
    /// copy), or to abort one that has not switched (the user stays where
    /// it was). Returns the move as it was.
    fn end_move(&self, user: &str) -> Result<UserMove>;

    /// Where a user is served now (store, epoch, master slot and address).
    fn route(&self, user: &str) -> Result<Route>;

    /// Record the result of a replication check of a store (replacing the
    /// previous one).
    fn record_check(&self, store: &str, result: &CheckResult) -> Result<()>;

    /// Record in the store's history a step that changes no role (a
    /// replica added or dropped by `ctl rebalance`): old and new master are
    /// the store's current master, the epoch its current epoch.
    fn record_step(&self, store: &str, reason: &str) -> Result<()>;

    /// Role changes, newest first, at most `limit` (at most
    /// [`crate::limits::HISTORY_ENTRIES_MAX`]), of one store or of all.
    fn history(&self, store: Option<&str>, limit: usize) -> Result<Vec<RoleChange>>;
}
