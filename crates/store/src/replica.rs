//! The store's side of replication (docs/replication.md): applying the
//! master's state on a replica with the master's own ids, UIDs, UIDVALIDITYs
//! and MODSEQs, and the few reads the master needs beyond the client API.
//!
//! Every apply is one transaction, idempotent (applying the same state twice
//! changes nothing) and verified: a body is accepted only if its bytes hash to
//! the GUID it is announced with, and a message is accepted only if its body
//! is present. The user's `meta.modseq` is raised to cover every applied
//! record, so a replica promoted to master continues MODSEQ strictly above
//! everything it holds; `meta.repl_modseq` is the position the master last
//! committed (what `GetUser` reports).

use crate::error::{Result, StoreError};
use crate::flags::Flags;
use crate::guid::Guid;
use crate::model::{Account, MailboxInfo, MessageMeta, Subscription};
use crate::slot::Slot;
use crate::user::{DbContext, Location, Tx, User, location_in, mailbox_from_row, meta_int};
use rusqlite::{OptionalExtension, params};

/// The smallest batch of bodies [`User::put_bodies`] stores as one pack
/// file (docs/storage.md, "Batch of bodies"); a smaller one stores each body
/// as a loose file, fsynced with its directory one after the other.
pub const PACK_MIN: usize = 4;

/// A mailbox record as the master sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxApply {
    pub mailbox_id: String,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub special_use: Option<String>,
    pub modseq: u64,
}

impl From<&MailboxInfo> for MailboxApply {
    fn from(m: &MailboxInfo) -> Self {
        MailboxApply {
            mailbox_id: m.mailbox_id.clone(),
            name: m.name.clone(),
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            special_use: m.special_use.clone(),
            modseq: m.modseq,
        }
    }
}

/// What `apply_mailbox` did, for the caller's log and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub created: bool,
    pub renamed_from: Option<String>,
    pub upserted: usize,
    pub expunged: usize,
    /// With `full`: messages the replica had that the master did not list.
    pub removed: usize,
}

/// Prefix of a temporary name given to a mailbox whose name another
/// mailbox takes over within one replication round (a rename chain such as
/// A → B, new A). Control characters cannot appear in a client's names.
const PARKED_PREFIX: &str = "\u{1}parked-";

impl User {
    /// The position the master last committed on this replica (0: never).
    pub fn repl_modseq(&self) -> Result<u64> {
        self.read(|c, p| {
            let v: Option<i64> = c
                .prepare_cached("SELECT value FROM meta WHERE key = 'repl_modseq'")
                .db(p)?
                .query_row([], |r| r.get(0))
                .optional()
                .db(p)?;
            Ok(v.unwrap_or(0).max(0) as u64)
        })
    }

    /// Which of these GUIDs this user does not hold a body for.
    pub fn missing_guids(&self, guids: &[Guid]) -> Result<Vec<Guid>> {
        self.read(|c, p| {
            let mut missing = Vec::new();
            for g in guids {
                if !self.has_body(c, p, g)? {
                    missing.push(*g);
                }
            }
            Ok(missing)
        })
    }

    /// Accept a body sent by the master: refused unless its bytes hash to
    /// `guid`. The file is durable and its content record committed when
    /// this returns; messages reference it in a later `apply_mailbox`.
    pub fn put_body(&self, guid: &Guid, raw: &[u8]) -> Result<()> {
        let actual = Guid::of(raw);
        if actual != *guid {
            tracing::error!(user = %self.name(), expected = %guid, got = %actual, "replicated body fails its GUID");
            return Err(StoreError::Corrupt {
                user: self.name().to_string(),
                what: format!("received body for {guid} hashes to {actual}"),
            });
        }
        let info = slotmail_mime::analyze(raw).to_bytes();
        self.put_verified(guid, raw, &info)
    }

    /// Accept a batch of bodies sent by the master, made durable together
    /// (docs/storage.md, "Batch of bodies"). Each body is verified on its
    /// own: one whose bytes do not hash to its GUID (or over the message
    /// limit) is refused in its slot of the returned list and the others
    /// are stored. `Err` means the batch could not be written: none of it
    /// is acknowledged (its files, if any, are unreferenced). A batch of
    /// one body takes the single-body path ([`User::put_body`]).
    pub fn put_bodies(&self, bodies: &[(Guid, &[u8])]) -> Result<Vec<Result<()>>> {
        let mut verdicts = Vec::with_capacity(bodies.len());
        let mut accepted: Vec<(Guid, &[u8], Vec<u8>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (guid, raw) in bodies {
            let size = raw.len() as u64;
            if size > self.limits().message_size_max {
                verdicts.push(Err(StoreError::TooBig {
                    size,
                    limit: self.limits().message_size_max,
                }));
                continue;
            }
            let actual = Guid::of(raw);
            if actual != *guid {
                tracing::error!(user = %self.name(), expected = %guid, got = %actual, "replicated body fails its GUID");
                verdicts.push(Err(StoreError::Corrupt {
                    user: self.name().to_string(),
                    what: format!("received body for {guid} hashes to {actual}"),
                }));
                continue;
            }
            verdicts.push(Ok(()));
            if seen.insert(*guid) {
                accepted.push((*guid, raw, slotmail_mime::analyze(raw).to_bytes()));
            }
        }
        match accepted.len() {
            0 => {}
            1 => {
                let (guid, raw, info) = &accepted[0];
                self.put_verified(guid, raw, info)?;
            }
            n if n >= PACK_MIN => {
                let items: Vec<(Guid, &[u8])> =
                    accepted.iter().map(|(g, raw, _)| (*g, *raw)).collect();
                let (pack, offsets) = self.blobs().put_pack(&items)?;
                let result = self.write(|w| {
                    for ((guid, raw, info), offset) in accepted.iter().zip(&offsets) {
                        w.insert_content_packed(guid, raw.len() as u64, info, &pack, *offset)?;
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    // Nothing references the pack: the commit failed.
                    self.blobs().remove_pack(&pack);
                    return Err(e);
                }
            }
            _ => {
                // Few bodies: each made durable on its own (its fsync and
                // its directory's), which costs less than a pack of its own;
                // still one commit for all.
                for (k, (guid, raw, _)) in accepted.iter().enumerate() {
                    if let Err(e) = self.blobs().put(guid, raw) {
                        // The failed one too: a failed directory fsync
                        // comes after its rename into msg/.
                        let done: Vec<Guid> = accepted[..=k].iter().map(|(g, ..)| *g).collect();
                        self.discard_uncontented(&done);
                        return Err(e);
                    }
                }
                let result = self.write(|w| {
                    for (guid, raw, info) in &accepted {
                        // An expunge may have unlinked a file between its
                        // put and taking the lock: write it again.
                        if !self.blobs().exists(guid) {
                            self.blobs().put(guid, raw)?;
                        }
                        w.insert_content(guid, raw.len() as u64, info)?;
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    let guids: Vec<Guid> = accepted.iter().map(|(g, ..)| *g).collect();
                    self.discard_uncontented(&guids);
                    return Err(e);
                }
            }
        }
        Ok(verdicts)
    }

    /// The single-body path of [`User::put_body`] for verified bytes.
    fn put_verified(&self, guid: &Guid, raw: &[u8], info: &[u8]) -> Result<()> {
        self.blobs().put(guid, raw)?;
        self.write(|w| {
            if !self.blobs().exists(guid) {
                self.blobs().put(guid, raw)?;
            }
            w.insert_content(guid, raw.len() as u64, info)
        })
    }

    /// Remove the files of these GUIDs that no content record names (after
    /// a failed batch). Under the lock, like every unlink; a database error
    /// keeps the file (a leftover costs space, not correctness).
    fn discard_uncontented(&self, guids: &[Guid]) {
        let _ = self.read(|c, p| {
            for g in guids {
                // No row, or a row whose body is in a pack: the loose file
                // is ours and unreferenced.
                if let Ok(None | Some(Location::Packed { .. })) = location_in(c, p, g) {
                    self.blobs().remove(g);
                }
            }
            Ok(())
        });
    }

    /// Replace a damaged local copy of a body with good bytes (from a
    /// replica, or from the master): verified against the GUID first. Never
    /// deletes anything.
    pub fn repair_body(&self, guid: &Guid, raw: &[u8]) -> Result<()> {
        if Guid::of(raw) != *guid {
            return Err(self.corrupt(format!("repair bytes for {guid} do not hash to it")));
        }
        let size = raw.len() as u64;
        let info = slotmail_mime::analyze(raw).to_bytes();
        self.write(|w| {
            self.blobs().put(guid, raw)?;
            // A packed copy is replaced by the loose file.
            w.insert_content(guid, size, &info)
        })?;
        tracing::warn!(user = %self.name(), %guid, "repaired message file from a good copy");
        Ok(())
    }

    /// Apply one mailbox's state: its record, upserted messages (bodies must
    /// already be present), expunged UIDs with their MODSEQs; with `full`,
    /// `messages` is the whole mailbox and anything else is removed.
    pub fn apply_mailbox(
        &self,
        record: &MailboxApply,
        messages: &[MessageMeta],
        expunged: &[(u32, u64)],
        full: bool,
    ) -> Result<ApplyOutcome> {
        let range = full.then_some((1, u32::MAX));
        self.apply_mailbox_exact(record, None, messages, expunged, range)
    }

    /// [`User::apply_mailbox`] as the replication protocol states it: with
    /// `keywords`, the mailbox's keyword list (what FLAGS announces) is set
    /// to exactly the master's instead of growing by the applied messages'
    /// keywords (a keyword set and cleared between two rounds stays in the
    /// master's list); with `full = Some((first, last))`, `messages` are all
    /// the mailbox holds with UIDs in `first ..= last` and the others in that
    /// range are removed (a large mailbox is synced in several ranges).
    pub fn apply_mailbox_exact(
        &self,
        record: &MailboxApply,
        keywords: Option<&[String]>,
        messages: &[MessageMeta],
        expunged: &[(u32, u64)],
        full: Option<(u32, u32)>,
    ) -> Result<ApplyOutcome> {
        crate::names::normalize(&record.name)?;
        // The count is bounded by the protocol (256 per record), as on the
        // master; each keyword must be one a client could have set.
        for k in keywords.unwrap_or_default() {
            crate::flags::validate_keyword(k)?;
        }
        self.write(|w| {
            let mut out = ApplyOutcome::default();
            let mut top = record.modseq.max(record.highestmodseq);
            let mut mbox = match w.mailbox_by_mailbox_id(&record.mailbox_id)? {
                Some(m) => m,
                None => {
                    w.park_name_holder(&record.name, &record.mailbox_id)?;
                    let id = w.create_mailbox_row(
                        &record.name,
                        record.special_use.as_deref(),
                        Some(&record.mailbox_id),
                        Some(record.uidvalidity),
                    )?;
                    out.created = true;
                    w.mailbox_by_id(id)?
                }
            };
            if mbox.name != record.name {
                w.park_name_holder(&record.name, &record.mailbox_id)?;
                out.renamed_from = Some(mbox.name.clone());
            }
            let (mut bytes, mut count) = (0i64, 0i64);
            let mut freed = Vec::new();
            for m in messages {
                top = top.max(m.modseq);
                let present = w.has_content(&m.guid)?;
                if !present {
                    return Err(StoreError::Expunged(format!(
                        "body {} of uid {} has not been received",
                        m.guid, m.uid
                    )));
                }
                match w.message(mbox.id, m.uid)? {
                    Some(old) if old.guid != m.guid => {
                        // Same UID, other content: the master is right.
                        w.delete_message_row(mbox.id, m.uid)?;
                        freed.push(old.guid);
                        bytes -= old.size as i64;
                        w.insert_message(mbox.id, m)?;
                        bytes += m.size as i64;
                    }
                    Some(old) if old == *m => {}
                    Some(_) => w.update_message_flags(mbox.id, m)?,
                    None => {
                        w.insert_message(mbox.id, m)?;
                        w.forget_expunged(mbox.id, m.uid)?;
                        bytes += m.size as i64;
                        count += 1;
                    }
                }
                out.upserted += 1;
                for k in m.flags.keywords() {
                    if !mbox.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                        mbox.keywords.push(k.to_string());
                    }
                }
            }
            let mut gone: Vec<(u32, u64)> = expunged.to_vec();
            if let Some((first, last)) = full {
                let listed: std::collections::HashSet<u32> =
                    messages.iter().map(|m| m.uid).collect();
                // An unlisted UID the master also lists as expunged keeps the
                // master's expunge MODSEQ (for QRESYNC VANISHED).
                let known: std::collections::HashSet<u32> =
                    expunged.iter().map(|(uid, _)| *uid).collect();
                for uid in w.uids(mbox.id)? {
                    if (first..=last).contains(&uid)
                        && !listed.contains(&uid)
                        && !known.contains(&uid)
                    {
                        gone.push((uid, record.highestmodseq));
                        out.removed += 1;
                    }
                }
            }
            for &(uid, modseq) in &gone {
                top = top.max(modseq);
                if let Some(old) = w.message(mbox.id, uid)? {
                    w.delete_message_row(mbox.id, uid)?;
                    freed.push(old.guid);
                    bytes -= old.size as i64;
                    count -= 1;
                    out.expunged += 1;
                }
                w.record_expunged(mbox.id, uid, modseq)?;
            }
            if let Some(keywords) = keywords {
                mbox.keywords = keywords.to_vec();
            }
            mbox.keywords.sort();
            mbox.name = record.name.clone();
            mbox.uidvalidity = record.uidvalidity;
            mbox.uidnext = record.uidnext.max(mbox.uidnext);
            mbox.highestmodseq = record.highestmodseq;
            mbox.special_use = record.special_use.clone();
            mbox.modseq = record.modseq;
            mbox.recent_uid = mbox.uidnext;
            w.update_mailbox(&mbox)?;
            w.add_quota(bytes, count)?;
            w.collect_garbage(freed)?;
            w.raise_modseq(top)?;
            w.notify = Some(top);
            Ok(out)
        })
    }

    /// Apply a mailbox deletion (by stable id; a missing mailbox is fine).
    pub fn apply_delete_mailbox(&self, mailbox_id: &str, modseq: u64) -> Result<bool> {
        self.write(|w| {
            let Some(mbox) = w.mailbox_by_mailbox_id(mailbox_id)? else {
                return Ok(false);
            };
            w.delete_mailbox_row_at(&mbox, modseq)?;
            w.raise_modseq(modseq)?;
            w.notify = Some(modseq);
            Ok(true)
        })
    }

    /// Apply subscription records (subscribe and unsubscribe tombstones).
    pub fn apply_subscriptions(&self, records: &[Subscription]) -> Result<()> {
        self.write(|w| {
            let mut top = 0;
            for s in records {
                w.tx
                    .execute(
                        "INSERT OR REPLACE INTO subscriptions (name, subscribed, modseq) VALUES (?1, ?2, ?3)",
                        params![s.name, s.subscribed as i64, s.modseq as i64],
                    )
                    .db(w.path)?;
                top = top.max(s.modseq);
            }
            w.raise_modseq(top)?;
            w.notify = Some(top);
            Ok(())
        })
    }

    /// Replace every subscription record by `records` (tombstones
    /// included): the replica's side of a full `ApplySubscriptions`.
    pub fn replace_subscriptions(&self, records: &[Subscription]) -> Result<()> {
        self.write(|w| {
            w.tx.execute("DELETE FROM subscriptions", [])
                .db(w.path)?;
            let mut top = 0;
            for s in records {
                w.tx
                    .execute(
                        "INSERT OR REPLACE INTO subscriptions (name, subscribed, modseq) VALUES (?1, ?2, ?3)",
                        params![s.name, s.subscribed as i64, s.modseq as i64],
                    )
                    .db(w.path)?;
                top = top.max(s.modseq);
            }
            w.raise_modseq(top)?;
            w.notify = Some(top);
            Ok(())
        })
    }

    /// The master's account MODSEQ this replica last applied (0: never).
    /// The catalogue numbers its own account changes; replication compares
    /// and digests the master's number, kept here.
    pub fn repl_account_modseq(&self) -> Result<u64> {
        self.read(|c, p| {
            let v: Option<i64> = c
                .prepare_cached("SELECT value FROM meta WHERE key = 'repl_account_modseq'")
                .db(p)?
                .query_row([], |r| r.get(0))
                .optional()
                .db(p)?;
            Ok(v.unwrap_or(0).max(0) as u64)
        })
    }

    /// Record the master's account MODSEQ after applying its account.
    pub fn set_repl_account_modseq(&self, modseq: u64) -> Result<()> {
        self.write(|w| {
            w.tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('repl_account_modseq', ?1)",
                [modseq as i64],
            )
            .db(w.path)?;
            Ok(())
        })
    }

    /// A mailbox by its stable id, if this user has it.
    pub fn mailbox_by_mailbox_id(&self, mailbox_id: &str) -> Result<Option<MailboxInfo>> {
        self.read(|c, p| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {} FROM mailboxes WHERE mailbox_id = ?1",
                    crate::user::MAILBOX_COLUMNS
                ))
                .db(p)?
                .query_row([mailbox_id], mailbox_from_row)
                .optional()
                .db(p)?;
            row.map(|r| self.check_mailbox(r)).transpose()
        })
    }

    /// The recorded size of a body this user holds (its content record),
    /// or `None` if it holds no such body. The bytes are read, verified,
    /// with [`User::read_message`].
    pub fn content_size(&self, guid: &Guid) -> Result<Option<u64>> {
        self.read(|c, p| {
            let v: Option<i64> = c
                .prepare_cached("SELECT size FROM contents WHERE guid = ?1")
                .db(p)?
                .query_row([&guid.0[..]], |r| r.get(0))
                .optional()
                .db(p)?;
            Ok(v.map(|v| v.max(0) as u64))
        })
    }

    /// Record that the replica now holds the master's state up to `modseq`.
    pub fn commit_repl_modseq(&self, modseq: u64) -> Result<()> {
        self.write(|w| {
            w.raise_modseq(modseq)?;
            w.tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('repl_modseq', ?1)",
                [modseq as i64],
            )
            .db(w.path)?;
            Ok(())
        })
    }

    /// Expunged UIDs after `since`, each with the MODSEQ of its expunge.
    pub fn expunges_since(&self, mailbox: i64, since: u64) -> Result<Vec<(u32, u64)>> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare_cached("SELECT uid, modseq FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid")
                .db(p)?;
            stmt.query_map(params![mailbox, since as i64], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64)))
                .db(p)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(p)
        })
    }

    /// Every subscription record, tombstones included.
    pub fn subscription_records(&self) -> Result<Vec<Subscription>> {
        Ok(self.changes_since(0)?.subscriptions)
    }
}

impl Tx<'_> {
    fn mailbox_by_mailbox_id(&self, mailbox_id: &str) -> Result<Option<MailboxInfo>> {
        let row = self
            .tx
            .prepare_cached(&format!(
                "SELECT {} FROM mailboxes WHERE mailbox_id = ?1",
                crate::user::MAILBOX_COLUMNS
            ))
            .db(self.path)?
            .query_row([mailbox_id], mailbox_from_row)
            .optional()
            .db(self.path)?;
        match row {
            None => Ok(None),
            Some((m, crc)) if crate::user::mailbox_crc(&m) == crc => Ok(Some(m)),
            Some((m, _)) => Err(StoreError::Corrupt {
                user: String::new(),
                what: format!("mailbox record {:?} fails its checksum", m.name),
            }),
        }
    }

    /// If another mailbox holds `name`, give it a temporary name; its own
    /// record (or its deletion) follows in the same round.
    fn park_name_holder(&mut self, name: &str, except_mailbox_id: &str) -> Result<()> {
        if let Some(mut holder) = self.mailbox_by_name(name)?
            && holder.mailbox_id != except_mailbox_id
        {
            holder.name = format!("{PARKED_PREFIX}{}", holder.mailbox_id);
            self.update_mailbox(&holder)?;
        }
        Ok(())
    }

    fn has_content(&self, guid: &Guid) -> Result<bool> {
        self.tx
            .prepare_cached("SELECT 1 FROM contents WHERE guid = ?1")
            .db(self.path)?
            .exists([&guid.0[..]])
            .db(self.path)
    }

    fn delete_message_row(&self, mailbox: i64, uid: u32) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2")
            .db(self.path)?
            .execute(params![mailbox, uid])
            .db(self.path)?;
        Ok(())
    }

    fn record_expunged(&self, mailbox: i64, uid: u32, modseq: u64) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
            )
            .db(self.path)?
            .execute(params![mailbox, uid, modseq as i64])
            .db(self.path)?;
        Ok(())
    }

    fn forget_expunged(&self, mailbox: i64, uid: u32) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM expunged WHERE mailbox = ?1 AND uid = ?2")
            .db(self.path)?
            .execute(params![mailbox, uid])
            .db(self.path)?;
        Ok(())
    }

    /// Keep the user's MODSEQ at or above every record it holds.
    fn raise_modseq(&mut self, modseq: u64) -> Result<()> {
        let now = meta_int(&self.tx, self.path, "modseq")?;
        if modseq > now {
            self.tx
                .execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'modseq'",
                    [modseq as i64],
                )
                .db(self.path)?;
        }
        let last_uv: u64 = meta_int(&self.tx, self.path, "uidvalidity_last")?;
        let max_uv: i64 = self
            .tx
            .query_row(
                "SELECT coalesce(max(uidvalidity), 0) FROM mailboxes",
                [],
                |r| r.get(0),
            )
            .db(self.path)?;
        if max_uv as u64 > last_uv {
            self.tx
                .execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'uidvalidity_last'",
                    [max_uv],
                )
                .db(self.path)?;
        }
        Ok(())
    }
}

impl Slot {
    /// Create or update an account as the master has it. A new account gets
    /// no mailboxes (they follow from the master).
    pub fn apply_account(&self, account: &Account, password_hash: &str) -> Result<Account> {
        let local = match self.account(&account.name)? {
            Some(a) if a.user_id == account.user_id => a,
            Some(a) => {
                return Err(StoreError::NotAllowed(format!(
                    "user {} has id {} here but {} on the master; rebuild this user",
                    account.name, a.user_id, account.user_id
                )));
            }
            None => self.create_replica_user(
                &account.name,
                password_hash,
                account.is_admin,
                &account.user_id,
            )?,
        };
        if self.password_hash(&account.name)?.as_deref() != Some(password_hash) {
            self.set_password_hash(&account.name, password_hash)?;
        }
        if local.is_admin != account.is_admin {
            self.set_admin(&account.name, account.is_admin)?;
        }
        if (local.quota_bytes, local.quota_messages)
            != (account.quota_bytes, account.quota_messages)
        {
            self.set_quota(&account.name, account.quota_bytes, account.quota_messages)?;
        }
        Ok(self.account(&account.name)?.expect("account applied above"))
    }
}

/// Flags from replication's wire form (system bits + keywords).
pub fn flags_from_parts(system: u8, keywords: &[String]) -> Result<Flags> {
    let mut f = Flags::from_stored(system, "").map_err(StoreError::InvalidFlag)?;
    for k in keywords {
        f.insert(k)?;
    }
    Ok(f)
}
