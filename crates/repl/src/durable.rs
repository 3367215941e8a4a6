//! Durable delivery (docs/replication.md, "Durable delivery"): wait, with a
//! bound, until at least one replica acknowledged a change.
//!
//! A replica acknowledges a user's position with the `Ok` to `Commit`, sent
//! after its own commit (bodies fsynced before the index). Every
//! [`Replicator`] of a slot shares one [`AckSignal`]; a round that ends
//! bumps it, and waiters re-check every replicator's acknowledged position.
//! The wait is synchronous: callers are on blocking threads already (the
//! store is synchronous), so no async plumbing reaches the IMAP session.

use crate::client::Replicator;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bumped whenever a replicator's acknowledged positions may have moved.
#[derive(Debug, Default)]
pub struct AckSignal {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl AckSignal {
    /// A round ended: wake every waiter to re-check.
    pub fn notify(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.changed.notify_all();
    }

    fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleep until the generation differs from `seen` or `until` passes.
    fn wait_past(&self, seen: u64, until: Instant) {
        let g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let left = until.saturating_duration_since(Instant::now());
        let _ = self
            .changed
            .wait_timeout_while(g, left, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// Block until one of `replicators` has acknowledged `user` at `modseq` or
/// later (true), or `limit` passed (false). With no replicator it returns
/// false at once. `signal` must be the one the replicators were started
/// with ([`crate::ReplicatorConfig::acks`]).
pub fn wait_acked(
    replicators: &[Replicator],
    signal: &AckSignal,
    user: &str,
    modseq: u64,
    limit: Duration,
) -> bool {
    if replicators.is_empty() {
        return false;
    }
    let until = Instant::now() + limit;
    loop {
        // Read the generation before checking, so an acknowledgement that
        // lands in between wakes the wait below at once.
        let seen = signal.generation();
        if replicators.iter().any(|r| r.acked(user, modseq)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        signal.wait_past(seen, until);
    }
}
