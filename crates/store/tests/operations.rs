//! Behaviour of the store's operations, one story per test, through the
//! public API only.

use slotmail_store::*;

fn slot() -> (tempfile::TempDir, Slot) {
    let dir = tempfile::tempdir().unwrap();
    let slot = Slot::open(dir.path().join("slot"), Options::default()).unwrap();
    (dir, slot)
}

fn msg(n: u32) -> Vec<u8> {
    format!("From: a@example.com\r\nTo: b@example.com\r\nSubject: test {n}\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

#[test]
fn new_user_has_default_mailboxes_subscribed() {
    let (_d, slot) = slot();
    slot.create_user("alice", "secret", false).unwrap();
    let user = slot.user("alice").unwrap();
    let names: Vec<String> = user
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    assert_eq!(user.subscriptions().unwrap().len(), 6);
    let sent = user.mailbox("Sent").unwrap();
    assert_eq!(sent.special_use.as_deref(), Some("\\Sent"));
}

#[test]
fn append_read_back_byte_identical_and_uids_grow() {
    let (_d, slot) = slot();
    slot.create_user("alice", "secret", false).unwrap();
    let user = slot.user("alice").unwrap();
    let inbox = user.mailbox("inbox").unwrap();
    let a = user
        .append(inbox.id, &msg(1), &Flags::empty(), None)
        .unwrap();
    let b = user
        .append(
            inbox.id,
            &msg(2),
            &Flags::from_names(["\\Seen"]).unwrap(),
            Some((1_000_000, 60)),
        )
        .unwrap();
    assert_eq!((a.uid, b.uid), (1, 2));
    assert!(b.modseq > a.modseq);
    assert_eq!(a.uidvalidity, inbox.uidvalidity);
    let (info, msgs) = user.snapshot(inbox.id).unwrap();
    assert_eq!(info.uidnext, 3);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].internaldate, 1_000_000);
    assert_eq!(msgs[1].tz_offset_min, 60);
    assert!(msgs[1].flags.has(SEEN));
    assert_eq!(
        user.read_message(&msgs[0].guid, msgs[0].size).unwrap(),
        msg(1)
    );
    let q = user.quota().unwrap();
    assert_eq!(q.used_messages, 2);
    assert_eq!(q.used_bytes, (msg(1).len() + msg(2).len()) as u64);
}

#[test]
fn store_flags_with_unchangedsince() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let a = user.append(inbox, &msg(1), &Flags::empty(), None).unwrap();
    let seen = Flags::from_names(["\\Seen"]).unwrap();
    let out = user
        .store_flags(inbox, &[a.uid, 99], FlagOp::Add, &seen, None)
        .unwrap();
    assert_eq!(out.changed.len(), 1);
    let m1 = out.changed[0].modseq;
    assert!(m1 > a.modseq);
    // Same change again: nothing changes, no new MODSEQ.
    let again = user
        .store_flags(inbox, &[a.uid], FlagOp::Add, &seen, None)
        .unwrap();
    assert!(again.changed.is_empty() && again.unchanged.len() == 1);
    // UNCHANGEDSINCE older than the message's MODSEQ: refused as MODIFIED.
    let refused = user
        .store_flags(inbox, &[a.uid], FlagOp::Remove, &seen, Some(a.modseq))
        .unwrap();
    assert_eq!(refused.modified, [a.uid]);
    let kw = Flags::from_names(["$Label1"]).unwrap();
    user.store_flags(inbox, &[a.uid], FlagOp::Add, &kw, Some(m1))
        .unwrap();
    assert_eq!(user.mailbox_by_id(inbox).unwrap().keywords, ["$Label1"]);
}

#[test]
fn expunge_copy_move_and_vanished() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let arch = user.mailbox("Archive").unwrap().id;
    for n in 1..=5 {
        user.append(inbox, &msg(n), &Flags::empty(), None).unwrap();
    }
    let before = user.modseq().unwrap();
    let copied = user.copy(inbox, &[1, 2, 42], arch).unwrap();
    assert_eq!(copied.pairs, [(1, 1), (2, 2)]);
    let moved = user.move_messages(inbox, &[3], arch).unwrap();
    assert_eq!(moved.pairs, [(3, 3)]);
    assert_eq!(moved.expunged, [3]);
    let del = Flags::from_names(["\\Deleted"]).unwrap();
    user.store_flags(inbox, &[1, 4], FlagOp::Add, &del, None)
        .unwrap();
    assert_eq!(user.expunge(inbox, Some(&[4])).unwrap(), [4]);
    assert_eq!(user.expunge(inbox, None).unwrap(), [1]);
    assert_eq!(user.expunged_since(inbox, before).unwrap(), [1, 3, 4]);
    let delta = user.delta(inbox, before).unwrap();
    assert_eq!(delta.expunged, [1, 3, 4]);
    let some = user.messages_by_uid(inbox, &[5, 3, 2, 99]).unwrap();
    assert_eq!(some.iter().map(|m| m.uid).collect::<Vec<_>>(), [5, 2]);
    let (_, left) = user.snapshot(inbox).unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), [2, 5]);
    // Message 1 is gone from INBOX but its copy in Archive still reads.
    let (_, arch_msgs) = user.snapshot(arch).unwrap();
    assert_eq!(
        user.read_message(&arch_msgs[0].guid, arch_msgs[0].size)
            .unwrap(),
        msg(1)
    );
    let q = user.quota().unwrap();
    assert_eq!(q.used_messages, 5);
    assert!(slot.scrub(false).is_clean());
}

#[test]
fn mailbox_hierarchy_rename_delete() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let c = user.create_mailbox("a/b/c", None).unwrap();
    assert!(user.mailbox("a").is_ok() && user.mailbox("a/b").is_ok());
    assert!(matches!(
        user.create_mailbox("a/b", None),
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        user.delete_mailbox("a"),
        Err(StoreError::HasChildren(_))
    ));
    user.rename_mailbox("a", "x/y").unwrap();
    let renamed = user.mailbox("x/y/b/c").unwrap();
    assert_eq!(
        (renamed.mailbox_id, renamed.uidvalidity),
        (c.mailbox_id, c.uidvalidity)
    );
    assert!(user.mailbox("a").is_err());
    user.delete_mailbox("x/y/b/c").unwrap();
    assert!(matches!(
        user.delete_mailbox("INBOX"),
        Err(StoreError::NotAllowed(_))
    ));
    let changes = user.changes_since(0).unwrap();
    assert!(changes.deleted.iter().any(|t| t.name == "x/y/b/c"));
    // Re-creating a deleted name gives a new UIDVALIDITY.
    let again = user.create_mailbox("x/y/b/c", None).unwrap();
    assert_ne!(again.uidvalidity, c.uidvalidity);
}

#[test]
fn rename_inbox_moves_messages_and_keeps_inbox() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    user.append(inbox, &msg(1), &Flags::empty(), None).unwrap();
    user.rename_mailbox("INBOX", "Old").unwrap();
    assert_eq!(user.status(inbox).unwrap().messages, 0);
    let old = user.mailbox("Old").unwrap();
    assert_eq!(user.status(old.id).unwrap().messages, 1);
    assert_eq!(user.quota().unwrap().used_messages, 1);
}

#[test]
fn passwords_and_accounts() {
    let (_d, slot) = slot();
    slot.create_user("alice", "correct horse", true).unwrap();
    assert!(
        slot.verify_password("alice", "correct horse")
            .unwrap()
            .is_some()
    );
    assert!(
        slot.verify_password("alice", "correct horse")
            .unwrap()
            .unwrap()
            .is_admin
    );
    assert!(slot.verify_password("alice", "wrong").unwrap().is_none());
    assert!(slot.verify_password("nobody", "x").unwrap().is_none());
    slot.set_password("alice", "new one").unwrap();
    assert!(
        slot.verify_password("alice", "correct horse")
            .unwrap()
            .is_none()
    );
    assert!(slot.verify_password("alice", "new one").unwrap().is_some());
    assert!(matches!(
        slot.create_user("alice", "x", false),
        Err(StoreError::UserExists(_))
    ));
    assert!(matches!(
        slot.create_user("bad name", "x", false),
        Err(StoreError::InvalidUserName(_))
    ));
    let hash = slot.password_hash("alice").unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$"));
    slot.delete_user("alice").unwrap();
    assert!(slot.account("alice").unwrap().is_none());
}

#[test]
fn quota_is_enforced() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    slot.set_quota("u", Some(100), None).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    user.append(inbox, &msg(1), &Flags::empty(), None).unwrap();
    let big = vec![b'x'; 200];
    assert!(matches!(
        user.append(inbox, &big, &Flags::empty(), None),
        Err(StoreError::OverQuota(_))
    ));
    assert_eq!(user.quota().unwrap().used_messages, 1);
}

/// Two messages for `append_many`, dated a second apart at UTC+01:00.
fn pair<'a>(raws: [&'a [u8]; 2], flags: [&'a Flags; 2]) -> [NewMessage<'a>; 2] {
    [0, 1].map(|i| NewMessage {
        raw: raws[i],
        flags: flags[i],
        internaldate: Some((1_700_000_000 + i as i64, 60)),
    })
}

#[test]
fn append_many_is_all_or_nothing() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    slot.set_quota("u", None, Some(3)).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let seen = Flags::from_names(["\\Seen"]).unwrap();
    let none = Flags::empty();
    let (a, b, c, d) = (msg(1), msg(2), msg(3), msg(4));
    let done = user
        .append_many(inbox, &pair([&a, &b], [&seen, &none]))
        .unwrap();
    assert_eq!(done.iter().map(|d| d.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        done[0].modseq, done[1].modseq,
        "one transaction, one MODSEQ"
    );
    // Two more would exceed the 3-message quota: neither is stored, and
    // their files are gone.
    assert!(matches!(
        user.append_many(inbox, &pair([&c, &d], [&seen, &none])),
        Err(StoreError::OverQuota(_))
    ));
    let (info, metas) = user.snapshot(inbox).unwrap();
    assert_eq!(metas.len(), 2);
    assert_eq!(info.uidnext, 3, "a refused batch uses no UIDs");
    assert!(user.read_message(&Guid::of(&c), c.len() as u64).is_err());
    assert_eq!(metas[0].flags, seen);
    assert_eq!(metas[1].flags, none);
    assert_eq!(
        (metas[1].internaldate, metas[1].tz_offset_min),
        (1_700_000_001, 60)
    );
    assert_eq!(user.read_message(&metas[1].guid, metas[1].size).unwrap(), b);
    assert_eq!(user.quota().unwrap().used_messages, 2);
    assert!(user.append_many(inbox, &[]).unwrap().is_empty());
}

#[test]
fn second_process_is_locked_out_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot");
    let slot = Slot::open(&path, Options::default()).unwrap();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let a = user.append(inbox, &msg(7), &Flags::empty(), None).unwrap();
    assert!(matches!(
        Slot::open(&path, Options::default()),
        Err(OpenError::Locked(_))
    ));
    drop(user);
    drop(slot);
    let slot = Slot::open(&path, Options::default()).unwrap();
    let user = slot.user("u").unwrap();
    let (_, msgs) = user.snapshot(inbox).unwrap();
    assert_eq!(msgs[0].guid, a.guid);
    assert_eq!(user.read_message(&a.guid, msgs[0].size).unwrap(), msg(7));
}

#[test]
fn unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), "slotmail-slot 99\n").unwrap();
    assert!(matches!(
        Slot::open(dir.path(), Options::default()),
        Err(OpenError::UnknownFormat { .. })
    ));
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("something"), "x").unwrap();
    assert!(matches!(
        Slot::open(other.path(), Options::default()),
        Err(OpenError::UnknownFormat { .. })
    ));
}

#[test]
fn change_listener_sees_every_commit() {
    use std::sync::{Arc, Mutex};
    let (_d, slot) = slot();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    slot.add_change_listener(Arc::new(move |user, modseq| {
        s2.lock().unwrap().push((user.to_string(), modseq))
    }));
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let a = user.append(inbox, &msg(1), &Flags::empty(), None).unwrap();
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &("u".to_string(), a.modseq)
    );
}

/// Regression: hierarchy checks compared a byte length with SQLite's
/// character count, so non-ASCII parents lost track of their children.
#[test]
fn non_ascii_parent_keeps_its_children() {
    let (_d, slot) = slot();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    user.create_mailbox("Entwürfe/Alt/Ältere", None).unwrap();
    assert!(matches!(
        user.delete_mailbox("Entwürfe"),
        Err(StoreError::HasChildren(_))
    ));
    user.rename_mailbox("Entwürfe", "Brouillons é").unwrap();
    assert!(user.mailbox("Brouillons é/Alt/Ältere").is_ok());
    assert!(user.mailbox("Entwürfe/Alt").is_err());
}

/// A user is built as `users/<id>.new` and renamed after its account is
/// committed: both crash windows recover without losing or inventing a user.
#[test]
fn interrupted_user_creation_and_deletion_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot");
    let slot = Slot::open(&path, Options::default()).unwrap();
    let account = slot.create_user("u", "pw", false).unwrap();
    drop(slot);
    // Crash after the catalogue commit, before the rename.
    let users = path.join("users");
    std::fs::rename(
        users.join(&account.user_id),
        users.join(format!("{}.new", account.user_id)),
    )
    .unwrap();
    // Crash before the catalogue commit of another user, and during a delete.
    std::fs::create_dir(users.join("0123456789abcdef0123456789abcdef.new")).unwrap();
    std::fs::create_dir(users.join("fedcba9876543210fedcba9876543210.deleted")).unwrap();
    let slot = Slot::open(&path, Options::default()).unwrap();
    let user = slot.user("u").unwrap();
    assert_eq!(user.mailbox("INBOX").unwrap().name, "INBOX");
    let report = slot.scrub(false);
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.kind == scrub::Kind::Garbage)
            .count(),
        2
    );
    let repaired = slot.scrub(true);
    assert_eq!(repaired.removed, 2);
    assert!(slot.scrub(false).findings.is_empty());
}
