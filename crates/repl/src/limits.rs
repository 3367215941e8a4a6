//! The replication service's own limits and timings, as named constants with
//! their units (the protocol's limits are in `slotmail_repl_proto::limits`).
//!
//! Every queue, buffer, retry and wait of the sync client and server is
//! bounded by one of these; docs/replication.md ("Limits") lists them.

use std::time::Duration;

/// Connections (streams) per replica the master keeps open.
pub const STREAMS: usize = 4;

/// First reconnect delay after a failed connection or handshake.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest reconnect delay: the backoff doubles from [`BACKOFF_MIN`] up to
/// this after a replica refused us (handshake refusal, protocol error).
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Longest reconnect delay while the replica does not answer at all
/// (connection refused, connect timeout): a replica coming back is found
/// within this, so it catches up within a second of its return.
pub const CONNECT_RETRY_MAX: Duration = Duration::from_millis(150);

/// Longest wait for a TCP connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most TCP connect attempts to one replica pending at once: an attempt
/// still hanging after [`CONNECT_RETRY_MAX`] is raced by a fresh one, the
/// oldest dropped beyond this many (`conn::race_connects`).
pub const CONNECT_ATTEMPTS_MAX: usize = 8;

/// Longest a handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the master waits for the answer to one request (a `ListUsers`
/// page makes the replica digest up to 4,096 users).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest the replica waits for the next request before it closes the
/// stream (the master pings after `PING_IDLE_SECS`).
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Longest one write of a frame may block.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most users waiting for a round per replica. Above it the queue is
/// dropped and a full comparison finds every difference again.
pub const DIRTY_USERS_MAX: usize = 1 << 20;

/// Most corrupt bodies the status lists per replica (the count goes on).
pub const CORRUPT_LISTED_MAX: usize = 256;

/// Most held users the status lists per replica.
pub const HELD_LISTED_MAX: usize = 1024;

/// First delay before a user whose round failed is tried again.
pub const USER_RETRY_MIN: Duration = Duration::from_millis(200);

/// Longest delay before a user whose rounds keep failing is tried again.
/// Short on purpose: a replica that refuses rounds while it is being
/// rebuilt or unfenced is served within this long of becoming ready (at
/// 60 s a rebuild once waited minutes on it); a user that keeps failing
/// costs one round per interval.
pub const USER_RETRY_MAX: Duration = Duration::from_secs(5);

/// Interval of the full comparison while connected (anti-entropy: heals
/// changes no listener announced, such as account changes and deletions).
pub const COMPARE_INTERVAL: Duration = Duration::from_secs(300);

/// A round that would expunge more than this fraction of a mailbox ...
pub const DELETE_GUARD_FRACTION: f64 = 0.5;

/// ... holding more than this many messages is held.
pub const DELETE_GUARD_MIN: usize = 100;

/// A round that would delete more than half of a user's mailboxes is held
/// when the user has more than this many mailboxes.
pub const DELETE_GUARD_MAILBOXES_MIN: usize = 10;

/// Bytes of message records per `ApplyMailbox` the master aims for (well
/// under the 16 MiB frame limit, so the frame never fails to encode).
pub const APPLY_BYTES_BUDGET: usize = 4 * 1024 * 1024;

/// Bytes of subscription records per `ApplySubscriptions` delta frame.
pub const SUBSCRIPTIONS_BYTES_BUDGET: usize = 8 * 1024 * 1024;

/// A body transfer's staging area on the replica, per connection, in bytes.
/// A body is refused (`too-big`) above the store's message limit, which is
/// below this.
pub const STAGING_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most body transfers the master has sent on one stream and not yet had
/// answered (its window; docs/replication.md, "Pipelined body transfers").
/// Four replica batches, so that the replica receives the next batch while
/// it makes the previous one durable; small enough that the answers of a
/// full window fit the socket buffers.
pub const BODIES_IN_FLIGHT_MAX: usize = 4 * BODY_BATCH_MAX;

/// Most body bytes in the master's window (a single larger body is sent
/// alone).
pub const BODY_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;

/// Most bodies the replica makes durable together (one `put_bodies`).
pub const BODY_BATCH_MAX: usize = 256;

/// Body bytes at which the replica stores its batch without waiting for
/// more (a batch is at most this plus one body).
pub const BODY_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most bodies the master reads from its store in one blocking call.
pub const BODY_READ_BATCH_MAX: usize = 64;

/// Body bytes after which the master's read of a group of bodies stops.
pub const BODY_READ_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Encoded frames the master gathers before one write of a body window.
pub const BODY_WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Most sync connections a replica serves at once (several masters'
/// streams during a switchover, plus one spare).
pub const SERVER_CONNECTIONS_MAX: usize = 32;

/// Most master-side mailbox digests cached per replicator.
pub const DIGEST_CACHE_MAILBOXES_MAX: usize = 100_000;

/// Most (user, GUID) pairs the replica remembers as known bad (a scrub or a
/// failed verified read found them); over it the oldest are forgotten.
pub const BAD_BODIES_MAX: usize = 65_536;

/// How fast a replica's sync server reads its bodies in the verification
/// pass after it starts (`verify.rs`): 32 MiB/s, so the pass over a store
/// of 10 GiB takes about five minutes and leaves the disk to clients and
/// replication.
pub const VERIFY_BYTES_PER_SEC: u64 = 32 * 1024 * 1024;

/// How long after its sync listener starts a replica begins that pass: the
/// master's catch-up after a restart has the disk first.
pub const VERIFY_DELAY: Duration = Duration::from_secs(1);
