//! The cluster's metadata and the placement planner.
//!
//! - [`model`]: machines, slots, stores (master, replicas, epoch, durable
//!   delivery flag), users, role-change history and check results, as plain
//!   values; [`Topology`] is a snapshot of all of it.
//! - [`Directory`]: the operations on that metadata, each validated and
//!   atomic; [`SqliteDirectory`] implements it on one SQLite file shared by
//!   the CLI and the running services.
//! - [`placement`]: [`plan`] proposes stores over machines' slots so that a
//!   dead machine's masters spread evenly over the survivors and two dead
//!   machines take out as few stores as possible; [`rebalance`] suggests the
//!   moves that restore those properties after machines come or go.

pub mod directory;
pub mod error;
pub mod limits;
pub mod model;
pub mod placement;
pub mod sqlite;

pub use directory::{Directory, Result};
pub use error::DirectoryError;
pub use model::{
    CheckResult, CheckStatus, Fence, IdKind, Machine, MovePhase, RoleChange, Route, Slot, Store,
    StoreSpec, Topology, UserMove,
};
pub use placement::{
    FailureImpact, Layout, Move, Plan, PlanError, PlannedSlot, PlannedStore, plan, rebalance,
};
pub use sqlite::{SqliteDirectory, SqliteOptions};
