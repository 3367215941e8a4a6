//! Replication between the slots of a store (docs/replication.md): the
//! replica's sync server ([`SyncServer`]) and the master's sync client, one
//! [`Replicator`] per replica.
//!
//! The wire protocol — frames, handshake, digests, body chunks — is
//! `slotmail-repl-proto`, which does no I/O; this crate owns the sockets,
//! timers, random nonces, queues and the store calls:
//!
//! - [`server`]: accept, handshake (an adopted epoch recorded durably in
//!   `DATA/sync-state.toml` first, [`epoch`]), then answer requests in
//!   order against the store; bodies verified on arrival.
//! - [`client`]: the change listener and de-duplicating queue of dirty
//!   users, `STREAMS` connections with reconnect backoff, the full
//!   comparison at (re)connect, the mass-deletion guard, lag accounting.
//! - `round`: one user's round (`GetUser` … `Commit`).
//! - [`records`]: the store's values as protocol records, and the digests.
//! - [`status`]: [`ReplicationStatus`], what `slotmail ctl status` shows.
//! - [`conn`]: a stream of frames; [`Connector`]s reach replicas (TLS on
//!   TCP, or the simulated network of the tests).
//! - [`tls`]: TLS 1.3 for sync streams and the channel binding the
//!   handshake's proofs cover.
//! - [`migrate`]: moving one user to another store's master.
//! - [`durable`]: durable delivery's bounded wait for a replica's
//!   acknowledgement.
//! - [`exec`]: where blocking store calls run.
//! - [`verify`]: a replica's paced verification of its bodies after it
//!   starts.
//! - [`limits`]: every bound and timing, named.
//!
//! # Running it
//!
//! ```no_run
//! # async fn example(slot: std::sync::Arc<slotmail_store::Slot>) -> Result<(), Box<dyn std::error::Error>> {
//! use slotmail_repl::*;
//! let secret = [7u8; 32];
//! // On the replica:
//! let epoch = std::sync::Arc::new(EpochState::open(slot.root(), 1)?);
//! let server = SyncServer::new(slot.clone(), ServerSettings {
//!     secret, cluster: "c".into(), slot: "b1".into(),
//!     role: SlotRole::Replica { store: "s1".into() }, exec: Exec::Blocking,
//! }, epoch)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.2:2500").await?;
//! tokio::spawn({ let server = server.clone(); async move { server.serve(listener).await } });
//! // On the master:
//! let replicator = Replicator::start(
//!     slot,
//!     ReplicatorConfig::new(secret, "c", "s1", "a1", "b1", 1),
//!     std::sync::Arc::new(TlsConnector::new("127.0.0.2:2500".parse()?)),
//! );
//! println!("{:?}", replicator.status());
//! # Ok(()) }
//! ```

pub mod client;
pub mod conn;
pub mod durable;
pub mod epoch;
pub mod error;
pub mod exec;
pub mod limits;
pub mod migrate;
pub mod records;
mod round;
pub mod secret;
pub mod server;
pub mod status;
pub mod tls;
pub mod verify;

pub use client::{Replicator, ReplicatorConfig, wait_idle};
pub use conn::{BoxStream, ConnectFuture, Connector, SharedConnector, Stream, TlsConnector};
pub use durable::{AckSignal, wait_acked};
pub use epoch::{EpochState, write_durably};
pub use error::{SetupError, SyncError};
pub use exec::Exec;
pub use migrate::{MoveGrants, MoveTarget};
pub use secret::{parse_secret, read_secret_file};
pub use server::{ServerSettings, SyncServer};
pub use slotmail_repl_proto::SlotRole;
pub use status::{
    CorruptStatus, DurableStatus, HeldStatus, ReplicaStatus, ReplicationStatus, ServerStatus,
    StreamsState,
};
pub use tls::Channel;
