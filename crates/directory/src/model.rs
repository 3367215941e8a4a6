//! The topology model: the plain values every backend stores and every caller
//! reads. Nothing here knows about SQL or any other storage.
//!
//! A [`Topology`] is a consistent snapshot of the whole directory: machines,
//! slots, stores (master first, then replicas in failover order), users and
//! the last check result of every store. The validation rules for names and
//! values live here too, so that every backend applies the same ones.

use crate::error::DirectoryError;
use crate::limits::{
    DATA_DIR_LEN_MAX_BYTES, ID_LEN_MAX_BYTES, SLOT_WEIGHT_MAX, TEXT_LEN_MAX_BYTES,
    USER_NAME_LEN_MAX_BYTES,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A host. In tests and the demo, each machine is its own loopback address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Machine {
    /// The machine's name (an id: see [`validate_id`]).
    pub name: String,
    /// The address its slots listen on; unique in the directory.
    pub address: IpAddr,
}

/// One mail-server instance with its own data directory and listeners.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    /// The slot's id, such as `a1`.
    pub id: String,
    /// The machine it runs on.
    pub machine: String,
    /// Its data directory on that machine; unique per machine.
    pub data_dir: String,
    /// IMAP listener port (on the machine's address).
    pub imap_port: u16,
    /// LMTP listener port.
    pub lmtp_port: u16,
    /// Replication (sync) listener port.
    pub sync_port: u16,
    /// Capacity weight, 1 to [`SLOT_WEIGHT_MAX`]: how much of the machine the
    /// slot is meant to take, relative to its other slots.
    pub weight: u32,
}

/// The outcome of the last replication check of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Master and replicas present the same thing to a client.
    Ok,
    /// The check found differences.
    Differences,
    /// The check could not complete (a slot unreachable, a login refused).
    Failed,
}

impl CheckStatus {
    /// The status as stored and shown (`ok`, `differences`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Differences => "differences",
            CheckStatus::Failed => "failed",
        }
    }

    /// Parse what [`CheckStatus::as_str`] returns.
    pub fn parse(s: &str) -> Option<CheckStatus> {
        match s {
            "ok" => Some(CheckStatus::Ok),
            "differences" => Some(CheckStatus::Differences),
            "failed" => Some(CheckStatus::Failed),
            _ => None,
        }
    }
}

/// The result of one replication check of a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckResult {
    /// When the check finished, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What it found.
    pub status: CheckStatus,
    /// One line for `ctl status`, at most [`TEXT_LEN_MAX_BYTES`].
    pub summary: String,
}

/// Two or more slots on distinct machines holding the same users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Store {
    /// The store's id.
    pub id: String,
    /// The store's slots: the master first, then the replicas in failover
    /// order (a failover promotes the first replica that is alive).
    pub slots: Vec<String>,
    /// Grows by one at every change of master; starts at 1 (or one above the
    /// last epoch a store of the same id ever had).
    pub epoch: u64,
    /// Durable delivery: LMTP answers 250 only once a replica holds the
    /// message too.
    pub sync: bool,
    /// The last check result recorded, if any.
    pub last_check: Option<CheckResult>,
}

impl Store {
    /// The master slot.
    pub fn master(&self) -> &str {
        &self.slots[0]
    }

    /// The replicas, in failover order.
    pub fn replicas(&self) -> &[String] {
        &self.slots[1..]
    }
}

/// What is needed to create a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSpec {
    /// The new store's id.
    pub id: String,
    /// Its slots: the master first, then the replicas in failover order.
    pub slots: Vec<String>,
    /// Durable delivery.
    pub sync: bool,
}

/// One change of a store's master, as kept in the history. Creating a store
/// is recorded too, with no old master.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleChange {
    /// Position in the history, growing.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Which store.
    pub store: String,
    /// The master before (none when the store was created).
    pub old_master: Option<String>,
    /// The master after.
    pub new_master: String,
    /// The store's epoch after the change.
    pub epoch: u64,
    /// Why (operator's words, `switchover`, `failover: machine b down`, ...).
    pub reason: String,
}

/// Where a user's mail is served now: what the proxy needs per login or
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The user.
    pub user: String,
    /// The user's store.
    pub store: String,
    /// The store's epoch, carried by writes and replication for fencing.
    pub epoch: u64,
    /// The master slot.
    pub master: Slot,
    /// The master's machine address.
    pub address: IpAddr,
}

/// A consistent snapshot of the whole directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Grows by one at every applied mutation; a cheap "has anything
    /// changed" for caches (see [`crate::Directory::revision`]).
    pub revision: u64,
    /// Machines by name.
    pub machines: BTreeMap<String, Machine>,
    /// Slots by id.
    pub slots: BTreeMap<String, Slot>,
    /// Stores by id.
    pub stores: BTreeMap<String, Store>,
    /// Users by name → store id.
    pub users: BTreeMap<String, String>,
    /// Fenced slots by id (docs/failover.md): old masters of a failover
    /// that serve nothing writable and accept no replication until
    /// reconciled.
    #[serde(default)]
    pub fenced: BTreeMap<String, Fence>,
    /// Users being moved between stores, by user (`ctl user move`): a user
    /// stays routed to its old store until the move switches it.
    #[serde(default)]
    pub moves: BTreeMap<String, UserMove>,
}

/// A move of one user from one store to another in progress
/// (docs/operations.md, "Moving a user"). While it exists the user cannot
/// be deleted or moved elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserMove {
    pub user: String,
    /// The store the user is moving out of.
    pub from: String,
    /// The store the user is moving into.
    pub to: String,
    /// Where the move is.
    pub phase: MovePhase,
    /// When the move began, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// The steps of a user move, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// The mail is being copied while the user keeps working on the old
    /// store; routed to the old store.
    Copying,
    /// The user's writes are refused on the old store for the final round
    /// and the equality proof; still routed to the old store.
    Final,
    /// Routed to the new store; the old store's copy is being removed.
    Switched,
}

impl MovePhase {
    /// The phase's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            MovePhase::Copying => "copying",
            MovePhase::Final => "final",
            MovePhase::Switched => "switched",
        }
    }

    /// The phase of a name.
    pub fn parse(s: &str) -> Option<MovePhase> {
        match s {
            "copying" => Some(MovePhase::Copying),
            "final" => Some(MovePhase::Final),
            "switched" => Some(MovePhase::Switched),
            _ => None,
        }
    }
}

/// A fenced slot: an old master replaced by a failover. It refuses client
/// writes and replication until `ctl reconcile` (or `ctl rebuild`) lifts
/// the fence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The fenced slot.
    pub slot: String,
    /// The store it was master of.
    pub store: String,
    /// The store's epoch that fenced it (the new master's).
    pub epoch: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Why (the failover's reason).
    pub reason: String,
}

impl Topology {
    /// The store a slot belongs to, if any.
    pub fn store_of_slot(&self, slot: &str) -> Option<&Store> {
        self.stores
            .values()
            .find(|s| s.slots.iter().any(|x| x == slot))
    }

    /// Whether a slot is fenced.
    pub fn is_fenced(&self, slot: &str) -> bool {
        self.fenced.contains_key(slot)
    }

    /// The slots of a machine, by id.
    pub fn slots_on<'a>(&'a self, machine: &'a str) -> impl Iterator<Item = &'a Slot> + 'a {
        self.slots.values().filter(move |s| s.machine == machine)
    }

    /// The machine a slot is on, if the slot exists.
    pub fn machine_of(&self, slot: &str) -> Option<&str> {
        self.slots.get(slot).map(|s| s.machine.as_str())
    }

    /// Slots in no store, by id.
    pub fn free_slots(&self) -> Vec<&Slot> {
        let used: std::collections::BTreeSet<&str> = self
            .stores
            .values()
            .flat_map(|s| s.slots.iter().map(String::as_str))
            .collect();
        self.slots
            .values()
            .filter(|s| !used.contains(s.id.as_str()))
            .collect()
    }

    /// Number of stores whose master is on each machine (machines without
    /// masters are listed with 0).
    pub fn masters_per_machine(&self) -> BTreeMap<&str, usize> {
        let mut out: BTreeMap<&str, usize> =
            self.machines.keys().map(|m| (m.as_str(), 0)).collect();
        for store in self.stores.values() {
            if let Some(m) = self.machine_of(store.master()) {
                *out.entry(m).or_insert(0) += 1;
            }
        }
        out
    }

    /// Number of users in each store (stores without users are listed with 0).
    pub fn users_per_store(&self) -> BTreeMap<&str, usize> {
        let mut out: BTreeMap<&str, usize> = self.stores.keys().map(|s| (s.as_str(), 0)).collect();
        for store in self.users.values() {
            *out.entry(store.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// Where a user is served now, or `None` if the user is unknown.
    pub fn route(&self, user: &str) -> Option<Route> {
        let store = self.stores.get(self.users.get(user)?)?;
        let master = self.slots.get(store.master())?.clone();
        let address = self.machines.get(&master.machine)?.address;
        Some(Route {
            user: user.to_string(),
            store: store.id.clone(),
            epoch: store.epoch,
            master,
            address,
        })
    }
}

/// Which kind of name a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// A machine name.
    Machine,
    /// A slot id.
    Slot,
    /// A store id.
    Store,
    /// A user name.
    User,
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Machine => "machine name",
            IdKind::Slot => "slot id",
            IdKind::Store => "store id",
            IdKind::User => "user name",
        })
    }
}

/// Machine names, slot ids and store ids: 1 to [`ID_LEN_MAX_BYTES`] bytes of
/// lower-case ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit. They appear in file names, logs and command lines unquoted.
pub fn validate_id(kind: IdKind, id: &str) -> Result<(), DirectoryError> {
    let ok = !id.is_empty()
        && id.len() <= ID_LEN_MAX_BYTES
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::InvalidId {
            kind,
            id: id.to_string(),
            rule: "1 to 64 bytes of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
        })
    }
}

/// User names as the mail store accepts them: 1 to
/// [`USER_NAME_LEN_MAX_BYTES`] bytes, no whitespace, control characters,
/// quotes or backslashes.
pub fn validate_user(name: &str) -> Result<(), DirectoryError> {
    let ok = !name.is_empty()
        && name.len() <= USER_NAME_LEN_MAX_BYTES
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::InvalidId {
            kind: IdKind::User,
            id: name.to_string(),
            rule: "1 to 255 bytes, no spaces, quotes, backslashes or control characters",
        })
    }
}

/// A slot's own values: its id, ports (non-zero, pairwise distinct), data
/// directory (non-empty, bounded, no NUL) and weight. Conflicts with other
/// slots are the backend's to check.
pub fn validate_slot(slot: &Slot) -> Result<(), DirectoryError> {
    validate_id(IdKind::Slot, &slot.id)?;
    validate_id(IdKind::Machine, &slot.machine)?;
    let ports = [slot.imap_port, slot.lmtp_port, slot.sync_port];
    if ports.contains(&0) {
        return Err(DirectoryError::InvalidValue(format!(
            "slot {}: ports must be non-zero",
            slot.id
        )));
    }
    if ports[0] == ports[1] || ports[0] == ports[2] || ports[1] == ports[2] {
        return Err(DirectoryError::InvalidValue(format!(
            "slot {}: IMAP, LMTP and sync ports must differ",
            slot.id
        )));
    }
    if slot.data_dir.is_empty()
        || slot.data_dir.len() > DATA_DIR_LEN_MAX_BYTES
        || slot.data_dir.contains('\0')
    {
        return Err(DirectoryError::InvalidValue(format!(
            "slot {}: the data directory must be 1 to {DATA_DIR_LEN_MAX_BYTES} bytes without NUL",
            slot.id
        )));
    }
    if slot.weight == 0 || slot.weight > SLOT_WEIGHT_MAX {
        return Err(DirectoryError::InvalidValue(format!(
            "slot {}: weight {} is not in 1..={SLOT_WEIGHT_MAX}",
            slot.id, slot.weight
        )));
    }
    Ok(())
}

/// A free text (a reason, a check summary): at most [`TEXT_LEN_MAX_BYTES`],
/// no NUL.
pub fn validate_text(what: &str, text: &str) -> Result<(), DirectoryError> {
    if text.len() > TEXT_LEN_MAX_BYTES || text.contains('\0') {
        return Err(DirectoryError::InvalidValue(format!(
            "{what}: at most {TEXT_LEN_MAX_BYTES} bytes, no NUL"
        )));
    }
    Ok(())
}
