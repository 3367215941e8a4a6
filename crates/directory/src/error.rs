//! The directory's error type: one enum, whose variants name conditions a
//! caller must tell apart (an unknown id, a refused change, a stale epoch, a
//! locked or corrupt database), never a storage implementation's types.
//!
//! Every refusal is returned before anything is written: a failed mutation
//! leaves the directory as it was.

use crate::model::IdKind;
use std::net::IpAddr;
use std::path::PathBuf;

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// A name or id breaks the naming rule.
    #[error("invalid {kind} {id:?}: {rule}")]
    InvalidId {
        kind: IdKind,
        id: String,
        rule: &'static str,
    },
    /// A value is out of range (ports, weight, data directory, text).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// No machine of that name.
    #[error("unknown machine {0}")]
    UnknownMachine(String),
    /// No slot of that id.
    #[error("unknown slot {0}")]
    UnknownSlot(String),
    /// No store of that id.
    #[error("unknown store {0}")]
    UnknownStore(String),
    /// No user of that name.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// A machine of that name exists already.
    #[error("machine {0} exists already")]
    MachineExists(String),
    /// A slot of that id exists already.
    #[error("slot {0} exists already")]
    SlotExists(String),
    /// A store of that id exists already.
    #[error("store {0} exists already")]
    StoreExists(String),
    /// The user exists already (in `store`).
    #[error("user {user} exists already, in store {store}")]
    UserExists { user: String, store: String },
    /// Another machine has that address.
    #[error("address {address} is machine {machine}'s already")]
    AddressInUse { address: IpAddr, machine: String },
    /// Another slot of the machine listens on that port.
    #[error("port {port} on machine {machine} is slot {slot}'s already")]
    PortInUse {
        machine: String,
        port: u16,
        slot: String,
    },
    /// Another slot of the machine has that data directory.
    #[error("data directory {data_dir} on machine {machine} is slot {slot}'s already")]
    DataDirInUse {
        machine: String,
        data_dir: String,
        slot: String,
    },
    /// The slot belongs to a store (so it cannot join another, or be removed).
    #[error("slot {slot} belongs to store {store}")]
    SlotInStore { slot: String, store: String },
    /// The same slot was named twice for one store.
    #[error("slot {slot} named twice for store {store}")]
    DuplicateSlot { store: String, slot: String },
    /// Two slots of the store would be on one machine.
    #[error("store {store} would have slots {first} and {second} on one machine, {machine}")]
    SameMachine {
        store: String,
        machine: String,
        first: String,
        second: String,
    },
    /// The machine still has slots (and maybe masters).
    #[error("machine {machine} still has {} slot(s) ({masters} master(s)): {}", slots.len(), slots.join(" "))]
    MachineNotEmpty {
        machine: String,
        slots: Vec<String>,
        masters: usize,
    },
    /// The store would have fewer slots than a store needs.
    #[error("store {store} would have {slots} slot(s); a store needs at least {min}")]
    TooFewSlots {
        store: String,
        slots: usize,
        min: usize,
    },
    /// The store would have more slots than allowed.
    #[error("store {store} would have {slots} slots; at most {max}")]
    TooManySlots {
        store: String,
        slots: usize,
        max: usize,
    },
    /// The slot is not one of the store's.
    #[error("slot {slot} is not in store {store}")]
    NotInStore { slot: String, store: String },
    /// The slot is the store's master (and cannot be dropped as a replica).
    #[error("slot {slot} is the master of store {store}")]
    IsMaster { slot: String, store: String },
    /// The slot is the store's master already.
    #[error("slot {slot} is the master of store {store} already")]
    AlreadyMaster { slot: String, store: String },
    /// The slot is not fenced (nothing to unfence).
    #[error("slot {slot} is not fenced")]
    NotFenced { slot: String },
    /// The caller's epoch is not the store's: someone else changed the
    /// master in between.
    #[error("store {store} is at epoch {actual}, not {expected}")]
    StaleEpoch {
        store: String,
        expected: u64,
        actual: u64,
    },
    /// The user is in that store already.
    #[error("user {user} is in store {store} already")]
    AlreadyInStore { user: String, store: String },
    /// The user is not in the store the caller expected.
    #[error("user {user} is in store {actual}, not {expected}")]
    UserNotInStore {
        user: String,
        expected: String,
        actual: String,
    },
    /// The user is being moved (`ctl user move`): finish or abort the move
    /// first.
    #[error("user {user} is being moved from store {from} to {to} ({phase})")]
    UserMoving {
        user: String,
        from: String,
        to: String,
        phase: &'static str,
    },
    /// No move of the user is in progress.
    #[error("user {0} is not being moved")]
    NotMoving(String),
    /// The move is not in the phase the caller expected.
    #[error("the move of user {user} is {actual}, not {expected}")]
    MovePhase {
        user: String,
        expected: &'static str,
        actual: &'static str,
    },
    /// The store still has users.
    #[error("store {store} still has {users} user(s)")]
    StoreHasUsers { store: String, users: u64 },
    /// A limit of the directory was reached.
    #[error("limit reached: at most {limit} {what}")]
    Limit { what: &'static str, limit: usize },
    /// Another process kept the database locked longer than the timeout.
    #[error("directory {} is locked by another process (waited {waited_ms} ms)", path.display())]
    Locked { path: PathBuf, waited_ms: u64 },
    /// The database file is damaged or is not a directory database.
    #[error("directory {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The database was written by a different version of the schema.
    #[error("directory {} has schema version {found}; this program reads version {supported}", path.display())]
    UnsupportedSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The directory does not exist (and was not to be created).
    #[error("directory {} does not exist", path.display())]
    NotFound { path: PathBuf },
    /// Any other failure of the storage backend.
    #[error("directory backend error: {detail}")]
    Backend {
        detail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl DirectoryError {
    /// Whether the request itself was refused (bad id, conflict, stale
    /// epoch, ...) as opposed to the backend failing. A refused request fails
    /// again if repeated unchanged.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            DirectoryError::Locked { .. }
                | DirectoryError::Corrupt { .. }
                | DirectoryError::UnsupportedSchema { .. }
                | DirectoryError::NotFound { .. }
                | DirectoryError::Backend { .. }
        )
    }

    /// Whether retrying later may succeed (the database was locked).
    pub fn is_transient(&self) -> bool {
        matches!(self, DirectoryError::Locked { .. })
    }
}
