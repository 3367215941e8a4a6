//! Durable delivery on a master slot (docs/replication.md, "Durable
//! delivery"): after an APPEND or an LMTP copy committed here, wait, at most
//! the configured bound, until a replica acknowledged the change; if none
//! did, apply the store's policy:
//!
//! - `tempfail`: withdraw the message (flag it `\Deleted` and expunge that
//!   UID, which replicates like any expunge) and answer a temporary failure,
//!   so the answer is true — the message was not accepted — and the
//!   sender's retry does not leave a duplicate;
//! - `accept`: answer success anyway (the master holds the message
//!   durably; it replicates when a replica is back), logged and counted.
//!
//! The wait runs on the caller's blocking thread (the store is synchronous).

use crate::config::{Durable, OnTimeout};
use slotmail_repl::{AckSignal, DurableStatus, Replicator, wait_acked};
use slotmail_store::{AppendOutcome, FlagOp, Flags, User};
use std::sync::{Arc, Mutex};

/// The durable-delivery check of one master slot.
pub struct DurableDelivery {
    settings: Durable,
    replicators: Vec<Replicator>,
    acks: Arc<AckSignal>,
    stats: Mutex<DurableStatus>,
}

impl DurableDelivery {
    /// A check over `replicators`, which must have been started with `acks`.
    pub fn new(settings: Durable, replicators: Vec<Replicator>, acks: Arc<AckSignal>) -> Self {
        DurableDelivery {
            stats: Mutex::new(DurableStatus {
                wait_ms: settings.wait.as_millis() as u64,
                on_timeout: match settings.on_timeout {
                    OnTimeout::Tempfail => "tempfail".into(),
                    OnTimeout::Accept => "accept".into(),
                },
                ..DurableStatus::default()
            }),
            settings,
            replicators,
            acks,
        }
    }

    /// The counters, for the status file.
    pub fn status(&self) -> DurableStatus {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count(&self, f: impl FnOnce(&mut DurableStatus)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Wait for a replica to hold every message of `appended` (one APPEND
    /// or one LMTP copy); `Err(text)` when the policy refuses (they are all
    /// withdrawn then). Blocking.
    pub fn confirm(
        &self,
        user: &User,
        mailbox: i64,
        appended: &[AppendOutcome],
    ) -> Result<(), String> {
        let wait = self.settings.wait;
        let Some(modseq) = appended.iter().map(|a| a.modseq).max() else {
            return Ok(());
        };
        let uids: Vec<u32> = appended.iter().map(|a| a.uid).collect();
        if wait_acked(&self.replicators, &self.acks, user.name(), modseq, wait) {
            self.count(|s| s.confirmed += 1);
            return Ok(());
        }
        self.count(|s| s.timed_out += 1);
        match self.settings.on_timeout {
            OnTimeout::Accept => {
                tracing::warn!(
                    user = user.name(),
                    uids = ?uids,
                    wait_ms = wait.as_millis() as u64,
                    "no replica acknowledged the message in time; accepted on the master alone (durable_on_timeout = accept)"
                );
                Ok(())
            }
            OnTimeout::Tempfail => {
                let withdrawn = withdraw(user, mailbox, &uids);
                match &withdrawn {
                    Ok(()) => self.count(|s| s.withdrawn += 1),
                    Err(e) => {
                        tracing::error!(user = user.name(), uids = ?uids, cause = %e,
                            "could not withdraw a message no replica acknowledged; the sender's retry may duplicate it")
                    }
                }
                tracing::warn!(
                    user = user.name(),
                    uids = ?uids,
                    wait_ms = wait.as_millis() as u64,
                    "no replica acknowledged the message in time; withdrawn, temporary failure"
                );
                Err(format!(
                    "No replica confirmed the message within {} ms; it was not stored, try again later",
                    wait.as_millis()
                ))
            }
        }
    }
}

/// Remove messages just appended: `\Deleted`, then expunge those UIDs.
fn withdraw(user: &User, mailbox: i64, uids: &[u32]) -> Result<(), slotmail_store::StoreError> {
    let deleted = Flags::from_names(["\\Deleted"]).expect("a system flag");
    user.store_flags(mailbox, uids, FlagOp::Add, &deleted, None)?;
    user.expunge(mailbox, Some(uids))?;
    Ok(())
}

impl slotmail_imap::DurableAppend for DurableDelivery {
    fn confirm(&self, user: &User, mailbox: i64, appended: &[AppendOutcome]) -> Result<(), String> {
        DurableDelivery::confirm(self, user, mailbox, appended)
    }
}
