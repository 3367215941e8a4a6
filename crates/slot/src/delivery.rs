//! LMTP delivery into the slot's store: the `slotmail_lmtp::Backend` of a slot.
//!
//! A recipient is a login name of this slot (exact, then lower-cased), with an
//! optional `+folder` detail naming an existing mailbox (falling back to
//! INBOX). A 250 is returned only after `User::append` has returned, i.e.
//! after the message file, its directory and the index commit are fsynced
//! (docs/storage.md, "Append"), and with durable delivery on, only once a
//! replica acknowledged it (`durable.rs`; 451 4.4.1 when none did in time).

use slotmail_lmtp::{AcceptedRcpt, Backend, EnhancedCode, Envelope, RcptVerdict, Recipient, Reply};
use slotmail_store::{Flags, Slot, StoreError};
use std::sync::Arc;

/// Most copies of one message written at the same time.
pub const PARALLEL_COPIES_MAX: usize = 8;

/// Where one accepted recipient's copy goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    /// The mailbox named by the detail, if it exists; INBOX otherwise.
    pub mailbox: String,
}

/// Delivers into one slot.
#[derive(Clone)]
pub struct SlotDelivery {
    slot: Arc<Slot>,
    over_quota_permanent: bool,
    /// Closed on a replica: deliveries get 451 4.3.0 so the MTA retries
    /// (the proxy sends them to the master).
    read_only: slotmail_imap::ReadOnlySwitch,
    /// Durable delivery: a 250 only once a replica holds the copy.
    durable: Option<Arc<crate::durable::DurableDelivery>>,
}

impl SlotDelivery {
    pub fn new(
        slot: Arc<Slot>,
        over_quota_permanent: bool,
        read_only: slotmail_imap::ReadOnlySwitch,
    ) -> Self {
        SlotDelivery {
            slot,
            over_quota_permanent,
            read_only,
            durable: None,
        }
    }

    /// Answer 250 only once a replica holds the copy (the store's `sync`).
    pub fn with_durable(mut self, durable: Arc<crate::durable::DurableDelivery>) -> Self {
        self.durable = Some(durable);
        self
    }

    fn over_quota(&self) -> Reply {
        if self.over_quota_permanent {
            Reply::new(552, EnhancedCode::new(5, 2, 2), "Mailbox full")
        } else {
            Reply::new(
                452,
                EnhancedCode::new(4, 2, 2),
                "Mailbox full, try again later",
            )
        }
    }

    /// Resolve a recipient to a user and mailbox (blocking: store lookups).
    fn resolve(&self, rcpt: &Recipient) -> Result<Target, Reply> {
        let temporary = |e: StoreError| {
            tracing::error!(cause = %e, "recipient lookup failed");
            Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "Temporary failure, try again later",
            )
        };
        let mut user = None;
        for candidate in [rcpt.user.clone(), rcpt.user.to_lowercase()] {
            if self.slot.account(&candidate).map_err(temporary)?.is_some() {
                user = Some(candidate);
                break;
            }
        }
        let Some(user) = user else {
            return Err(Reply::new(
                550,
                EnhancedCode::new(5, 1, 1),
                "No such user here",
            ));
        };
        let store = self.slot.user(&user).map_err(temporary)?;
        let quota = store.quota().map_err(temporary)?;
        let full = quota.limit_bytes.is_some_and(|l| quota.used_bytes >= l)
            || quota
                .limit_messages
                .is_some_and(|l| quota.used_messages >= l);
        if full {
            return Err(self.over_quota());
        }
        let mailbox = rcpt
            .detail
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| store.mailbox(d).ok())
            .map(|m| m.name)
            .unwrap_or_else(|| "INBOX".to_string());
        Ok(Target { user, mailbox })
    }

    /// Append one copy (blocking).
    fn deliver_one(&self, target: &Target, message: &[u8]) -> Reply {
        if self.read_only.is_frozen(&target.user) {
            // Demoted between RCPT and DATA (switchover): the MTA retries.
            return Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "This slot stopped accepting mail; try again later",
            );
        }
        let result = self.slot.user(&target.user).and_then(|user| {
            let mailbox = match user.mailbox(&target.mailbox) {
                Ok(m) => m,
                // The folder went away since RCPT: INBOX, as for an unknown folder.
                Err(StoreError::NoSuchMailbox(_)) => user.mailbox("INBOX")?,
                Err(e) => return Err(e),
            };
            let out = user.append(mailbox.id, message, &Flags::empty(), None)?;
            Ok((user, mailbox.id, out))
        });
        match result {
            Ok((user, mailbox, out)) => {
                if let Some(durable) = &self.durable
                    && let Err(text) = durable.confirm(&user, mailbox, std::slice::from_ref(&out))
                {
                    return Reply::new(451, EnhancedCode::new(4, 4, 1), text);
                }
                Reply::new(
                    250,
                    EnhancedCode::new(2, 0, 0),
                    format!("Delivered to {} uid {}", target.mailbox, out.uid),
                )
            }
            Err(StoreError::OverQuota(_)) => self.over_quota(),
            Err(StoreError::TooBig { .. }) => Reply::new(
                552,
                EnhancedCode::new(5, 3, 4),
                "Message too big for this mailbox",
            ),
            Err(StoreError::NoSuchUser(_)) => {
                Reply::new(550, EnhancedCode::new(5, 1, 1), "No such user here")
            }
            Err(e) => {
                tracing::error!(user = %target.user, cause = %e, "delivery failed");
                Reply::new(
                    451,
                    EnhancedCode::new(4, 3, 0),
                    "Temporary failure, try again later",
                )
            }
        }
    }
}

impl Backend for SlotDelivery {
    type Token = Target;

    async fn check_recipient(&self, rcpt: &Recipient) -> RcptVerdict<Target> {
        if self.read_only.is_read_only() {
            return RcptVerdict::Reject(Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "This slot does not accept mail now (replica); try again later",
            ));
        }
        let this = self.clone();
        let rcpt = rcpt.clone();
        match tokio::task::spawn_blocking(move || this.resolve(&rcpt)).await {
            // A user being moved (docs/operations.md): the MTA retries,
            // and the proxy sends the retry to the new store.
            Ok(Ok(target)) if self.read_only.is_frozen(&target.user) => {
                RcptVerdict::Reject(Reply::new(
                    451,
                    EnhancedCode::new(4, 2, 1),
                    "This mailbox is being moved; try again later",
                ))
            }
            Ok(Ok(target)) => RcptVerdict::Accept(target),
            Ok(Err(reply)) => RcptVerdict::Reject(reply),
            Err(_) => RcptVerdict::Reject(Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "Temporary failure",
            )),
        }
    }

    async fn deliver(
        &self,
        _envelope: &Envelope,
        message: &[u8],
        rcpts: &[AcceptedRcpt<Target>],
    ) -> Vec<Reply> {
        // Users are independent stores: their copies are written in
        // parallel (each still fsynced before its 250), at most
        // `PARALLEL_COPIES_MAX` at a time.
        let message: Arc<[u8]> = Arc::from(message);
        let mut replies = Vec::with_capacity(rcpts.len());
        for chunk in rcpts.chunks(PARALLEL_COPIES_MAX) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|r| {
                    let (this, target, message) = (self.clone(), r.token.clone(), message.clone());
                    tokio::task::spawn_blocking(move || this.deliver_one(&target, &message))
                })
                .collect();
            for task in tasks {
                replies.push(task.await.unwrap_or_else(|_| {
                    Reply::new(451, EnhancedCode::new(4, 3, 0), "Temporary failure")
                }));
            }
        }
        replies
    }
}
