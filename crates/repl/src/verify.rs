//! A replica's background verification of its bodies after it starts
//! (docs/replication.md, "Bad bodies on the replica").
//!
//! A body damaged while the replica was stopped is unknown to it: its index
//! still names the file, so its digests look right and the master has no
//! reason to resend it. When its sync listener starts, the replica reads
//! every body it holds once, through the store's verified read, at most
//! [`crate::limits::VERIFY_BYTES_PER_SEC`]; a body that fails is marked bad (reported
//! missing by `HaveGuids`, left out of the digests), and the mark counter
//! that `Pong` carries tells the master to compare again and resend it.
//!
//! The pass is bounded: one read of each distinct body per user, paced so
//! that clients and replication keep the disk, one body in memory at a
//! time, and it stops with the server.

use crate::exec::Exec;
use slotmail_store::{Guid, Slot, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// Distinct bodies read (per user).
    pub bodies: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Bodies that failed verification (corrupt or missing) and were
    /// marked bad.
    pub bad: u64,
}

/// Read every body of every user of `slot` once, at most `rate` bytes per
/// second, calling `mark(user, guid)` for each that fails verification;
/// `skip(user, guid)` names bodies already known bad.
pub async fn verify_bodies(
    slot: Arc<Slot>,
    exec: Exec,
    rate: u64,
    skip: impl Fn(&str, &Guid) -> bool,
    mark: impl Fn(&str, Guid),
) -> Verified {
    let mut done = Verified::default();
    // Let the catch-up that follows a restart go first.
    tokio::time::sleep(crate::limits::VERIFY_DELAY).await;
    let started = Instant::now();
    let s = slot.clone();
    let accounts = match exec.run(move || s.accounts()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(cause = %e, "body verification: cannot list the accounts");
            return done;
        }
    };
    for account in accounts {
        let name = account.name.clone();
        let s = slot.clone();
        // Every distinct body of the user with its size, from one read of
        // each mailbox.
        let listed = exec
            .run(move || -> Result<Vec<(Guid, u64)>, StoreError> {
                let user = s.user(&name)?;
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for mb in user.mailboxes()? {
                    let (_, messages) = match user.snapshot(mb.id) {
                        Ok(s) => s,
                        Err(StoreError::NoSuchMailbox(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    for m in messages {
                        if seen.insert(m.guid) {
                            out.push((m.guid, m.size));
                        }
                    }
                }
                Ok(out)
            })
            .await;
        let bodies = match listed {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(user = %account.name, cause = %e, "body verification: cannot list the user's bodies");
                continue;
            }
        };
        for (guid, size) in bodies {
            if skip(&account.name, &guid) {
                continue;
            }
            let s = slot.clone();
            let name = account.name.clone();
            let result = exec
                .run(move || s.user(&name)?.read_message(&guid, size).map(|_| ()))
                .await;
            done.bodies += 1;
            done.bytes += size;
            match result {
                Ok(()) | Err(StoreError::Expunged(_) | StoreError::NoSuchUser(_)) => {}
                Err(e) if e.is_corruption() => {
                    done.bad += 1;
                    tracing::error!(user = %account.name, %guid, cause = %e, "body verification: a body is bad");
                    mark(&account.name, guid);
                }
                Err(e) => {
                    tracing::warn!(user = %account.name, %guid, cause = %e, "body verification: cannot read a body");
                }
            }
            let wait = pace(done.bytes, rate, started.elapsed());
            if wait >= PACE_SLEEP_MIN {
                tokio::time::sleep(wait).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
    tracing::info!(
        bodies = done.bodies,
        bytes = done.bytes,
        bad = done.bad,
        ms = started.elapsed().as_millis() as u64,
        "body verification done"
    );
    done
}

/// Shortest pause worth a timer: below it the pass only yields, and the
/// pauses it skips add up into the next one.
const PACE_SLEEP_MIN: Duration = Duration::from_millis(10);

/// How long to wait after reading `bytes` in `elapsed` so that the reading
/// stays at most `rate` bytes per second.
fn pace(bytes: u64, rate: u64, elapsed: Duration) -> Duration {
    let due = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    due.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_is_paced_to_its_rate() {
        let mib = 1024 * 1024;
        assert_eq!(
            pace(32 * mib, 32 * mib, Duration::ZERO),
            Duration::from_secs(1)
        );
        assert_eq!(
            pace(32 * mib, 32 * mib, Duration::from_secs(2)),
            Duration::ZERO
        );
        assert_eq!(
            pace(16 * mib, 32 * mib, Duration::from_millis(100)),
            Duration::from_millis(400)
        );
    }
}
