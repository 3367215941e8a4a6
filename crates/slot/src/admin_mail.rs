//! Admin operations for changing masters (docs/failover.md): every user's
//! replication position and digest (`user_digests`, what switchover and
//! failover compare), one user's mail state (`mail_state`) and the changes
//! reconcile applies to a new master (`mail_apply`). The digests are the
//! ones replication computes for its own convergence proof
//! (`slotmail_repl::records`).

use serde::{Deserialize, Serialize};
use slotmail_repl::records::{DigestCache, Side, user_digests};
use slotmail_store::{FlagOp, Flags, Guid, Slot, StoreError};
use std::path::PathBuf;
use std::sync::LazyLock;

/// Messages listed per mailbox in a `mail_state` reply, at most (a bigger
/// mailbox is refused rather than cut short).
pub const MAIL_STATE_MESSAGES_MAX: usize = 1_000_000;

/// Which position and account MODSEQ a digest is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestSide {
    /// The user's own MODSEQ (a master, or a slot that was one).
    Master,
    /// The committed replication position (a replica).
    Replica,
}

/// One user's position and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDigest {
    pub name: String,
    pub user_id: String,
    /// The user's MODSEQ (master side) or committed position (replica side).
    pub modseq: u64,
    /// The user digest (docs/replication.md), 64 hex digits.
    pub digest: String,
    pub mailboxes: usize,
}

/// One message as `mail_state` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    pub uid: u32,
    /// GUID, 64 hex digits.
    pub guid: String,
    pub size: u64,
    /// Flag names as IMAP shows them (system flags and keywords).
    pub flags: Vec<String>,
    pub internaldate: i64,
    pub tz_offset_min: i32,
    pub modseq: u64,
}

/// One mailbox with its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    pub mailbox_id: String,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// MODSEQ of the mailbox record (create, rename, special-use).
    pub modseq: u64,
    pub messages: Vec<MessageState>,
    /// UIDs expunged after the request's `expunged_since`.
    pub expunged: Vec<u32>,
}

/// A user's whole mail state (without bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailState {
    pub user: String,
    pub modseq: u64,
    /// The committed replication position (what this slot last held as a
    /// replica; 0 if it never was one).
    pub repl_modseq: u64,
    pub mailboxes: Vec<MailboxState>,
}

/// One change `mail_apply` makes, as a client would (new UIDs, new
/// MODSEQs; replication carries it to the replicas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum MailChange {
    CreateMailbox {
        name: String,
        special_use: Option<String>,
    },
    RenameMailbox {
        from: String,
        to: String,
    },
    /// Delete a mailbox; refused unless it is empty.
    DeleteEmptyMailbox {
        name: String,
    },
    /// Append the message in file `path` (which must hash to `guid`).
    Append {
        mailbox: String,
        path: PathBuf,
        guid: String,
        flags: Vec<String>,
        internaldate: i64,
        tz_offset_min: i32,
    },
    /// Replace a message's flags, unless it changed after `unchanged_since`.
    SetFlags {
        mailbox: String,
        uid: u32,
        flags: Vec<String>,
        unchanged_since: u64,
    },
    /// Raise UIDNEXT of every mailbox of the user by `gap` (a failover's UID
    /// gap, docs/failover.md). `applied` is false if a mailbox could not be
    /// raised (its UIDs nearly used up); the others are raised.
    RaiseUidNext {
        gap: u32,
    },
    /// Give the message at `uid` (if it still holds `guid`) a fresh UID in
    /// the same mailbox (same bytes, flags and INTERNALDATE), then expunge
    /// `uid`: a reconcile's answer to a UID collision. The copy comes first,
    /// so a failure in between leaves a duplicate, never a loss. `uid` is
    /// the new UID; `applied` is false if `uid` no longer holds `guid`.
    Renumber {
        mailbox: String,
        uid: u32,
        guid: String,
    },
}

/// What `mail_apply` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailApplied {
    /// The appended message's new UID, if an append.
    pub uid: Option<u32>,
    /// False if a `set_flags` found the message changed (or gone) meanwhile.
    pub applied: bool,
}

static DIGESTS: LazyLock<DigestCache> = LazyLock::new(DigestCache::default);

/// Every user's position and digest.
pub fn all_user_digests(slot: &Slot, side: DigestSide) -> slotmail_store::Result<Vec<UserDigest>> {
    let side = match side {
        DigestSide::Master => Side::Master,
        DigestSide::Replica => Side::Replica,
    };
    let mut out = Vec::new();
    for account in slot.accounts()? {
        if let Some(d) = user_digests(slot, &account.name, side, &DIGESTS, &|_| false, false)? {
            out.push(UserDigest {
                name: account.name.clone(),
                user_id: d.account.user_id.clone(),
                modseq: d.modseq,
                digest: Guid(d.digest).to_hex(),
                mailboxes: d.mailboxes.len(),
            });
        }
    }
    Ok(out)
}

/// One user's position and digest; `None` if the slot has no such user.
pub fn one_user_digest(
    slot: &Slot,
    name: &str,
    side: DigestSide,
) -> slotmail_store::Result<Option<UserDigest>> {
    let side = match side {
        DigestSide::Master => Side::Master,
        DigestSide::Replica => Side::Replica,
    };
    Ok(
        user_digests(slot, name, side, &DIGESTS, &|_| false, false)?.map(|d| UserDigest {
            name: name.to_string(),
            user_id: d.account.user_id.clone(),
            modseq: d.modseq,
            digest: Guid(d.digest).to_hex(),
            mailboxes: d.mailboxes.len(),
        }),
    )
}

/// One user's mail state.
pub fn mail_state(
    slot: &Slot,
    name: &str,
    expunged_since: u64,
) -> slotmail_store::Result<MailState> {
    let user = slot.user(name)?;
    let mut mailboxes = Vec::new();
    for mb in user.mailboxes()? {
        let (info, messages) = user.snapshot(mb.id)?;
        if messages.len() > MAIL_STATE_MESSAGES_MAX {
            return Err(StoreError::Limit(format!(
                "mailbox {} has more than {MAIL_STATE_MESSAGES_MAX} messages",
                info.name
            )));
        }
        mailboxes.push(MailboxState {
            mailbox_id: info.mailbox_id.clone(),
            name: info.name.clone(),
            special_use: info.special_use.clone(),
            uidvalidity: info.uidvalidity,
            uidnext: info.uidnext,
            highestmodseq: info.highestmodseq,
            modseq: info.modseq,
            messages: messages
                .iter()
                .map(|m| MessageState {
                    uid: m.uid,
                    guid: m.guid.to_hex(),
                    size: m.size,
                    flags: m.flags.names().map(str::to_string).collect(),
                    internaldate: m.internaldate,
                    tz_offset_min: m.tz_offset_min,
                    modseq: m.modseq,
                })
                .collect(),
            expunged: user.expunged_since(mb.id, expunged_since)?,
        });
    }
    Ok(MailState {
        user: name.to_string(),
        modseq: user.modseq()?,
        repl_modseq: user.repl_modseq()?,
        mailboxes,
    })
}

/// Apply one reconcile change to user `name`.
pub fn mail_apply(
    slot: &Slot,
    name: &str,
    change: MailChange,
) -> slotmail_store::Result<MailApplied> {
    let user = slot.user(name)?;
    let done = MailApplied {
        uid: None,
        applied: true,
    };
    match change {
        MailChange::CreateMailbox { name, special_use } => {
            user.create_mailbox(&name, special_use.as_deref())?;
            Ok(done)
        }
        MailChange::RenameMailbox { from, to } => {
            user.rename_mailbox(&from, &to)?;
            Ok(done)
        }
        MailChange::DeleteEmptyMailbox { name } => {
            let mb = user.mailbox(&name)?;
            if user.status(mb.id)?.messages > 0 {
                return Err(StoreError::NotAllowed(format!(
                    "mailbox {name} is not empty on this slot"
                )));
            }
            user.delete_mailbox(&name)?;
            Ok(done)
        }
        MailChange::Append {
            mailbox,
            path,
            guid,
            flags,
            internaldate,
            tz_offset_min,
        } => {
            let raw = std::fs::read(&path).map_err(|e| {
                StoreError::NotAllowed(format!("cannot read {}: {e}", path.display()))
            })?;
            if Guid::of(&raw).to_hex() != guid {
                return Err(StoreError::NotAllowed(format!(
                    "{} does not hash to {guid}",
                    path.display()
                )));
            }
            let flags = Flags::from_names(flags.iter().map(String::as_str))?;
            let mb = user.mailbox(&mailbox)?;
            let out = user.append(mb.id, &raw, &flags, Some((internaldate, tz_offset_min)))?;
            Ok(MailApplied {
                uid: Some(out.uid),
                applied: true,
            })
        }
        MailChange::SetFlags {
            mailbox,
            uid,
            flags,
            unchanged_since,
        } => {
            let flags = Flags::from_names(flags.iter().map(String::as_str))?;
            let mb = user.mailbox(&mailbox)?;
            let out =
                user.store_flags(mb.id, &[uid], FlagOp::Set, &flags, Some(unchanged_since))?;
            Ok(MailApplied {
                uid: None,
                applied: out.modified.is_empty()
                    && (!out.changed.is_empty() || !out.unchanged.is_empty()),
            })
        }
        MailChange::RaiseUidNext { gap } => {
            let mut all = true;
            for mb in user.mailboxes()? {
                match user.raise_uidnext(mb.id, gap) {
                    Ok(_) => {}
                    Err(StoreError::Limit(_)) => all = false,
                    Err(e) => return Err(e),
                }
            }
            Ok(MailApplied {
                uid: None,
                applied: all,
            })
        }
        MailChange::Renumber { mailbox, uid, guid } => {
            let mb = user.mailbox(&mailbox)?;
            let holds = user
                .messages_by_uid(mb.id, &[uid])?
                .iter()
                .any(|m| m.guid.to_hex() == guid);
            if !holds {
                return Ok(MailApplied {
                    uid: None,
                    applied: false,
                });
            }
            let copied = user.copy(mb.id, &[uid], mb.id)?;
            let new_uid = copied
                .pairs
                .iter()
                .find(|(from, _)| *from == uid)
                .map(|(_, to)| *to);
            assert!(new_uid.is_some(), "the copy of an existing UID has a UID");
            let deleted = Flags::from_names(["\\Deleted"])?;
            user.store_flags(mb.id, &[uid], FlagOp::Add, &deleted, None)?;
            user.expunge(mb.id, Some(&[uid]))?;
            Ok(MailApplied {
                uid: new_uid,
                applied: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> (tempfile::TempDir, Slot) {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::open(dir.path().join("slot"), slotmail_store::Options::default()).unwrap();
        slot.create_user("alice", "pw", false).unwrap();
        (dir, slot)
    }

    #[test]
    fn raise_uid_next_raises_every_mailbox() {
        let (_d, slot) = slot();
        let before = slot.user("alice").unwrap().mailboxes().unwrap();
        let r = mail_apply(&slot, "alice", MailChange::RaiseUidNext { gap: 500 }).unwrap();
        assert!(r.applied);
        let after = slot.user("alice").unwrap().mailboxes().unwrap();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a.uidnext, b.uidnext + 500, "{}", a.name);
        }
    }

    #[test]
    fn renumber_moves_a_message_to_a_fresh_uid_and_keeps_it_whole() {
        let (_d, slot) = slot();
        let user = slot.user("alice").unwrap();
        let inbox = user.mailbox("INBOX").unwrap();
        let raw = b"Subject: collided\r\n\r\nbody\r\n";
        let flags = Flags::from_names(["\\Seen", "$Work"]).unwrap();
        let a = user
            .append(inbox.id, raw, &flags, Some((1_700_000_000, 120)))
            .unwrap();
        let guid = a.guid.to_hex();
        // Another GUID than the one at the UID: nothing happens.
        let other = Guid::of(b"other").to_hex();
        let r = mail_apply(
            &slot,
            "alice",
            MailChange::Renumber {
                mailbox: "INBOX".into(),
                uid: a.uid,
                guid: other,
            },
        )
        .unwrap();
        assert!(!r.applied);
        assert_eq!(user.snapshot(inbox.id).unwrap().1.len(), 1);
        let r = mail_apply(
            &slot,
            "alice",
            MailChange::Renumber {
                mailbox: "INBOX".into(),
                uid: a.uid,
                guid: guid.clone(),
            },
        )
        .unwrap();
        assert!(r.applied);
        let new_uid = r.uid.expect("a new UID");
        assert!(new_uid > a.uid);
        let (_, msgs) = user.snapshot(inbox.id).unwrap();
        assert_eq!(msgs.len(), 1, "the old UID is expunged");
        let m = &msgs[0];
        assert_eq!((m.uid, m.guid.to_hex()), (new_uid, guid));
        assert_eq!((m.internaldate, m.tz_offset_min), (1_700_000_000, 120));
        assert_eq!(m.flags, flags, "flags kept, \\Deleted not carried over");
        assert_eq!(user.read_message(&m.guid, m.size).unwrap(), raw);
        assert!(user.expunged_since(inbox.id, 0).unwrap().contains(&a.uid));
    }
}
