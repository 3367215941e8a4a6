//! The directory's and the planner's limits, each a named constant with its
//! unit in the name. Every mutation and every plan request is checked against
//! them before anything is written or computed.

/// Machines in one directory or one plan.
pub const MACHINES_MAX: usize = 1_000;
/// Slots declared on one machine (and slots per machine in a plan).
pub const SLOTS_PER_MACHINE_MAX: usize = 1_000;
/// Slots in one store: the master and its replicas.
pub const SLOTS_PER_STORE_MAX: usize = 8;
/// Slots in one store, at least: a master and one replica on another machine.
pub const SLOTS_PER_STORE_MIN: usize = 2;
/// Stores in one directory.
pub const STORES_MAX: usize = 1_000_000;
/// Users in one directory.
pub const USERS_MAX: usize = 100_000_000;
/// Bytes of a machine name, a slot id or a store id.
pub const ID_LEN_MAX_BYTES: usize = 64;
/// Bytes of a user name (as the mail store accepts them).
pub const USER_NAME_LEN_MAX_BYTES: usize = 255;
/// Bytes of a slot's data directory path.
pub const DATA_DIR_LEN_MAX_BYTES: usize = 4_096;
/// Bytes of a role change's reason or a check result's summary.
pub const TEXT_LEN_MAX_BYTES: usize = 4_096;
/// A slot's capacity weight, at most (at least 1).
pub const SLOT_WEIGHT_MAX: u32 = 1_000;
/// Role changes returned by one `history` call, at most.
pub const HISTORY_ENTRIES_MAX: usize = 100_000;
/// How long a write waits for another process's write to finish before it
/// fails with `DirectoryError::Locked`, by default.
pub const BUSY_TIMEOUT_DEFAULT_MS: u64 = 5_000;
/// Replicas per store that the planner can place (stores of 2 or 3 slots).
pub const PLAN_REPLICAS_PER_STORE_MAX: u32 = 2;
/// Replicas per store that the planner can place, at least.
pub const PLAN_REPLICAS_PER_STORE_MIN: u32 = 1;
/// Slots in one plan (machines × slots per machine), at most: the planner's
/// time and memory grow with it.
pub const PLAN_SLOTS_MAX: usize = 200_000;
/// Improving steps the planner's local search takes, at most, per plan.
pub const PLAN_SEARCH_STEPS_MAX: usize = 200_000;
