//! The store's values as the protocol's records, and back; the digests both
//! sides compute from them.
//!
//! Both sides digest the records their store holds with
//! `slotmail_repl_proto::{mailbox_digest, user_digest}` (docs/replication.md,
//! "Digests"). A mailbox digest costs a read of the mailbox's message
//! records, so [`DigestCache`] remembers them per mailbox record: on the
//! master every change of a message changes its mailbox's `HIGHESTMODSEQ`,
//! so an unchanged record means an unchanged digest; on the replica the
//! sync server, the only writer, replaces a mailbox's entry whenever it
//! applies to that mailbox (a full sync may change messages without
//! changing the record).

use crate::limits::DIGEST_CACHE_MAILBOXES_MAX;
use slotmail_repl_proto::{
    AccountRecord, Digest, HeldUser, MailboxRecord, MailboxSummary, MessageRecord,
    SubscriptionRecord, mailbox_digest, user_digest,
};
use slotmail_store::{
    Account, Guid, MailboxApply, MailboxInfo, MessageMeta, Slot, StoreError, Subscription, User,
    flags_from_parts,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// A mailbox's replicated record.
pub fn mailbox_record(m: &MailboxInfo) -> MailboxRecord {
    MailboxRecord {
        mailbox_id: m.mailbox_id.clone(),
        name: m.name.clone(),
        uidvalidity: m.uidvalidity,
        uidnext: m.uidnext,
        highestmodseq: m.highestmodseq,
        special_use: m.special_use.clone(),
        keywords: m.keywords.clone(),
        modseq: m.modseq,
    }
}

/// The store's form of a mailbox record (without its keywords).
pub fn mailbox_apply(r: &MailboxRecord) -> MailboxApply {
    MailboxApply {
        mailbox_id: r.mailbox_id.clone(),
        name: r.name.clone(),
        uidvalidity: r.uidvalidity,
        uidnext: r.uidnext,
        highestmodseq: r.highestmodseq,
        special_use: r.special_use.clone(),
        modseq: r.modseq,
    }
}

/// A message's replicated record.
pub fn message_record(m: &MessageMeta) -> MessageRecord {
    MessageRecord {
        uid: m.uid,
        guid: m.guid.0,
        size: m.size,
        internaldate: m.internaldate,
        tz_offset: m.tz_offset_min,
        flags: m.flags.system,
        keywords: m.flags.keywords().map(str::to_string).collect(),
        modseq: m.modseq,
    }
}

/// The store's form of a message record; refused if a keyword is not one a
/// client could set.
pub fn message_meta(r: &MessageRecord) -> Result<MessageMeta, StoreError> {
    Ok(MessageMeta {
        uid: r.uid,
        guid: Guid(r.guid),
        size: r.size,
        internaldate: r.internaldate,
        tz_offset_min: r.tz_offset,
        flags: flags_from_parts(r.flags, &r.keywords)?,
        modseq: r.modseq,
    })
}

/// An account's replicated record; `modseq` is the master's account MODSEQ.
pub fn account_record(a: &Account, password_hash: &str, modseq: u64) -> AccountRecord {
    AccountRecord {
        name: a.name.clone(),
        user_id: a.user_id.clone(),
        password_hash: password_hash.to_string(),
        is_admin: a.is_admin,
        quota_bytes: a.quota_bytes,
        quota_messages: a.quota_messages,
        modseq,
    }
}

/// The store's form of an account record.
pub fn account_from_record(r: &AccountRecord) -> Account {
    Account {
        name: r.name.clone(),
        user_id: r.user_id.clone(),
        is_admin: r.is_admin,
        quota_bytes: r.quota_bytes,
        quota_messages: r.quota_messages,
        modseq: r.modseq,
    }
}

/// A subscription's replicated record.
pub fn subscription_record(s: &Subscription) -> SubscriptionRecord {
    SubscriptionRecord {
        name: s.name.clone(),
        subscribed: s.subscribed,
        modseq: s.modseq,
    }
}

/// The store's form of a subscription record.
pub fn subscription(r: &SubscriptionRecord) -> Subscription {
    Subscription {
        name: r.name.clone(),
        subscribed: r.subscribed,
        modseq: r.modseq,
    }
}

/// The digest of a mailbox as one snapshot holds it, leaving out the
/// messages `skip` names (bodies the replica knows to be bad).
pub fn snapshot_digest(
    info: &MailboxInfo,
    messages: &[MessageMeta],
    skip: impl Fn(&Guid) -> bool,
) -> Digest {
    let records: Vec<MessageRecord> = messages
        .iter()
        .filter(|m| !skip(&m.guid))
        .map(message_record)
        .collect();
    mailbox_digest(&mailbox_record(info), &records)
}

/// Mailbox digests remembered by mailbox record (see the module docs), with
/// the mailbox's message count (what `UserState` reports beside the digest).
#[derive(Debug, Default)]
pub struct DigestCache {
    map: Mutex<HashMap<(String, String), Cached>>,
}

/// One cached mailbox: the record it was computed for, its digest and how
/// many messages it held.
type Cached = (MailboxRecord, Digest, u64);

impl DigestCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, user_id: &str, record: &MailboxRecord) -> Option<(Digest, u64)> {
        match self
            .lock()
            .get(&(user_id.to_string(), record.mailbox_id.clone()))
        {
            Some((r, d, n)) if r == record => Some((*d, *n)),
            _ => None,
        }
    }

    /// Remember a digest and message count (the cache is emptied when it is
    /// full).
    pub fn put(&self, user_id: &str, record: MailboxRecord, digest: Digest, messages: u64) {
        let mut map = self.lock();
        if map.len() >= DIGEST_CACHE_MAILBOXES_MAX {
            map.clear();
        }
        map.insert(
            (user_id.to_string(), record.mailbox_id.clone()),
            (record, digest, messages),
        );
    }

    /// Forget one mailbox's digest (the replica, when it applies to it).
    pub fn forget_mailbox(&self, user_id: &str, mailbox_id: &str) {
        self.lock()
            .remove(&(user_id.to_string(), mailbox_id.to_string()));
    }

    /// Forget every digest of a user (the replica, when it deletes the
    /// user).
    pub fn forget_user(&self, user_id: &str) {
        self.lock().retain(|(u, _), _| u != user_id);
    }
}

/// A user's position and digest tree, computed from its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDigests {
    pub account: AccountRecord,
    /// The user's MODSEQ (master) or the committed position (replica).
    pub modseq: u64,
    pub digest: Digest,
    /// Ascending by `mailbox_id`.
    pub mailboxes: Vec<MailboxSummary>,
}

impl UserDigests {
    /// As `GetUser` reports it.
    pub fn held(&self) -> HeldUser {
        HeldUser {
            user_id: self.account.user_id.clone(),
            modseq: self.modseq,
            account_modseq: self.account.modseq,
            digest: self.digest,
            mailboxes: self.mailboxes.clone(),
        }
    }
}

/// Which side a digest tree is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The master: the user's own MODSEQ and account MODSEQ.
    Master,
    /// A replica: the committed position and the master's account MODSEQ.
    Replica,
}

/// The digest tree of user `name`, or `None` if the slot has no such user.
/// `skip(user_id, guid)` names bodies to leave out (the replica's known-bad
/// bodies: it does not hold them in a form it could serve).
pub fn user_digests(
    slot: &Slot,
    name: &str,
    side: Side,
    cache: &DigestCache,
    skip: &dyn Fn(&Guid) -> bool,
    has_skips: bool,
) -> Result<Option<UserDigests>, StoreError> {
    let Some(account) = slot.account(name)? else {
        return Ok(None);
    };
    let Some(hash) = slot.password_hash(name)? else {
        return Ok(None);
    };
    let user = match slot.user(name) {
        Ok(u) => u,
        Err(StoreError::NoSuchUser(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (modseq, account_modseq) = match side {
        Side::Master => (user.modseq()?, account.modseq),
        Side::Replica => (user.repl_modseq()?, user.repl_account_modseq()?),
    };
    let mut mailboxes = Vec::new();
    for mb in user.mailboxes()? {
        if let Some((digest, messages)) = mailbox_digest_cached(&user, &mb, cache, skip, has_skips)?
        {
            mailboxes.push(MailboxSummary {
                mailbox_id: mb.mailbox_id.clone(),
                digest,
                messages,
                uidnext: mb.uidnext,
            });
        }
    }
    mailboxes.sort();
    let subscriptions: Vec<SubscriptionRecord> = user
        .subscription_records()?
        .iter()
        .map(subscription_record)
        .collect();
    let account = account_record(&account, &hash, account_modseq);
    let digest = user_digest(&account, &subscriptions, &mailboxes);
    Ok(Some(UserDigests {
        account,
        modseq,
        digest,
        mailboxes,
    }))
}

/// One mailbox's digest and message count, from the cache when its record
/// is unchanged. `None` if the mailbox went away meanwhile.
fn mailbox_digest_cached(
    user: &User,
    mb: &MailboxInfo,
    cache: &DigestCache,
    skip: &dyn Fn(&Guid) -> bool,
    has_skips: bool,
) -> Result<Option<(Digest, u64)>, StoreError> {
    let record = mailbox_record(mb);
    if !has_skips && let Some(hit) = cache.get(user.user_id(), &record) {
        return Ok(Some(hit));
    }
    let (info, messages) = match user.snapshot(mb.id) {
        Ok(s) => s,
        Err(StoreError::NoSuchMailbox(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let digest = snapshot_digest(&info, &messages, skip);
    let count = messages.len() as u64;
    if !has_skips {
        cache.put(user.user_id(), mailbox_record(&info), digest, count);
    }
    Ok(Some((digest, count)))
}
