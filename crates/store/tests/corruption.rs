//! Corruption is detected, never served and never spread (docs/storage.md,
//! goal 3): damage message files and index records behind the store's back,
//! then check that every read of damaged data fails with `Corrupt`, that all
//! other data still reads, and that scrub reports exactly the damage.

use slotmail_store::scrub::Kind;
use slotmail_store::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A marker in every message body: an error must never carry message bytes.
const MARKER: &str = "BODY-MARKER-7f3a";

fn msg(user: &str, n: u32) -> Vec<u8> {
    let mut m = format!("From: {user}@example.com\r\nSubject: message {n}\r\n\r\n").into_bytes();
    for line in 0..(20 + n * 7) {
        m.extend_from_slice(format!("{MARKER} {user} {n} line {line}\r\n").as_bytes());
    }
    m
}

fn file_of(slot: &Slot, user: &str, guid: &Guid) -> PathBuf {
    let account = slot.account(user).unwrap().unwrap();
    let hex = guid.to_hex();
    slot.user_dir(&account.user_id)
        .join("msg")
        .join(&hex[..2])
        .join(hex)
}

fn index_of(slot: &Slot, user: &str) -> PathBuf {
    let account = slot.account(user).unwrap().unwrap();
    slot.user_dir(&account.user_id).join("index.db")
}

fn append_all(user: &User, mailbox: &str, msgs: &[Vec<u8>]) -> Vec<MessageMeta> {
    let id = user.mailbox(mailbox).unwrap().id;
    for m in msgs {
        user.append(id, m, &Flags::empty(), None).unwrap();
    }
    user.snapshot(id).unwrap().1
}

/// The error must be `Corrupt`, name the GUID and carry no message bytes.
fn assert_corrupt_naming(result: Result<Vec<u8>>, guid: &Guid, what: &str) {
    match result {
        Err(e @ StoreError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&guid.to_hex()),
                "{what}: error does not name the GUID: {text}"
            );
            assert!(
                !text.contains(MARKER),
                "{what}: error carries message bytes: {text}"
            );
        }
        Err(e) => panic!("{what}: expected Corrupt, got {e:?}"),
        Ok(_) => panic!("{what}: damaged message was served"),
    }
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

/// A finding reduced to what identifies it: (user, kind, mailbox, UID, GUID).
type Key = (String, String, Option<String>, Option<u32>, Option<String>);

fn keys<'a>(findings: impl Iterator<Item = &'a scrub::Finding>) -> BTreeSet<Key> {
    findings
        .map(|f| {
            (
                f.user.clone(),
                format!("{:?}", f.kind),
                f.mailbox.clone(),
                f.uid,
                f.guid.clone(),
            )
        })
        .collect()
}

fn key(
    user: &str,
    kind: Kind,
    mailbox: Option<&str>,
    uid: Option<u32>,
    guid: Option<&Guid>,
) -> Key {
    (
        user.into(),
        format!("{kind:?}"),
        mailbox.map(Into::into),
        uid,
        guid.map(Guid::to_hex),
    )
}

fn sql(db: &Path, statement: &str, params: impl rusqlite::Params) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let changed = conn.execute(statement, params).unwrap();
    assert_eq!(changed, 1, "{statement} changed {changed} rows");
}

#[test]
fn damage_is_detected_isolated_and_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slot");

    // ----- a slot with four users ---------------------------------------
    let slot = Slot::open(&root, Options::default()).unwrap();
    for name in ["alice", "bob", "carol", "dave"] {
        slot.create_user(name, "pw", false).unwrap();
    }
    let alice = slot.user("alice").unwrap();
    let a_inbox = append_all(
        &alice,
        "INBOX",
        &(1..=5).map(|n| msg("alice", n)).collect::<Vec<_>>(),
    );
    let a_sent = append_all(&alice, "Sent", &[msg("alice", 11), msg("alice", 12)]);
    let inbox_id = alice.mailbox("INBOX").unwrap().id;
    let archive_id = alice.mailbox("Archive").unwrap().id;
    // Message 3 is copied to Archive: two references, one file.
    alice.copy(inbox_id, &[a_inbox[2].uid], archive_id).unwrap();
    let a_archive = alice.snapshot(archive_id).unwrap().1;
    assert_eq!(a_archive[0].guid, a_inbox[2].guid);
    let bob = slot.user("bob").unwrap();
    let b_inbox = append_all(
        &bob,
        "INBOX",
        &(1..=4).map(|n| msg("bob", n)).collect::<Vec<_>>(),
    );
    let carol = slot.user("carol").unwrap();
    let c_inbox = append_all(
        &carol,
        "INBOX",
        &(1..=3).map(|n| msg("carol", n)).collect::<Vec<_>>(),
    );
    carol.create_mailbox("Work", None).unwrap();
    let c_work = append_all(&carol, "Work", &[msg("carol", 21)]);
    let dave = slot.user("dave").unwrap();
    let d_inbox = append_all(
        &dave,
        "INBOX",
        &(1..=3).map(|n| msg("dave", n)).collect::<Vec<_>>(),
    );
    assert!(
        slot.scrub(false).findings.is_empty(),
        "the slot is clean before the damage"
    );

    let flipped = a_inbox[2].clone(); // alice INBOX 3 = Archive 1
    let truncated = a_inbox[4].clone(); // alice INBOX 5
    let deleted = b_inbox[1].clone(); // bob INBOX 2
    let reflagged = a_sent[1].clone(); // alice Sent 2: record damage
    let resized = b_inbox[3].clone(); // bob INBOX 4: content record damage
    let flipped_path = file_of(&slot, "alice", &flipped.guid);
    let truncated_path = file_of(&slot, "alice", &truncated.guid);
    let deleted_path = file_of(&slot, "bob", &deleted.guid);
    let (alice_db, bob_db, carol_db) = (
        index_of(&slot, "alice"),
        index_of(&slot, "bob"),
        index_of(&slot, "carol"),
    );
    let sent_id = alice.mailbox("Sent").unwrap().id;
    let work_id = carol.mailbox("Work").unwrap().id;
    let carol_inbox_id = carol.mailbox("INBOX").unwrap().id;
    drop((alice, bob, carol, dave));
    drop(slot);

    // ----- damage, behind the store's back -------------------------------
    let mut bytes = std::fs::read(&flipped_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&flipped_path, bytes).unwrap();
    let len = std::fs::metadata(&truncated_path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated_path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    std::fs::remove_file(&deleted_path).unwrap();
    sql(
        &alice_db,
        "UPDATE messages SET flags = flags | 1 WHERE mailbox = ?1 AND uid = ?2",
        (sent_id, reflagged.uid),
    );
    sql(
        &carol_db,
        "UPDATE mailboxes SET uidnext = uidnext + 5 WHERE id = ?1",
        [work_id],
    );
    sql(
        &bob_db,
        "UPDATE contents SET size = size + 1 WHERE guid = ?1",
        [&resized.guid.0[..]],
    );

    // ----- every read of damaged data fails --------------------------------
    let slot = Slot::open(&root, Options::default()).unwrap();
    let alice = slot.user("alice").unwrap();
    let bob = slot.user("bob").unwrap();
    let carol = slot.user("carol").unwrap();
    let dave = slot.user("dave").unwrap();

    assert_corrupt_naming(
        alice.read_message(&flipped.guid, flipped.size),
        &flipped.guid,
        "flipped byte (INBOX)",
    );
    assert_corrupt_naming(
        alice.read_message(&a_archive[0].guid, a_archive[0].size),
        &flipped.guid,
        "flipped byte (the copy in Archive)",
    );
    assert_corrupt_naming(
        alice.read_message(&truncated.guid, truncated.size),
        &truncated.guid,
        "truncated file",
    );
    assert_corrupt_naming(
        bob.read_message(&deleted.guid, deleted.size),
        &deleted.guid,
        "deleted file",
    );
    // Damaged and missing files are still damaged on the second read (no caching).
    assert_corrupt_naming(
        alice.read_message(&flipped.guid, flipped.size),
        &flipped.guid,
        "flipped byte, again",
    );

    // A message record whose flags changed: every call that reads it.
    assert_corrupt(alice.snapshot(sent_id), "snapshot of Sent");
    assert_corrupt(alice.delta(sent_id, 0), "delta of Sent");
    let seen = Flags::from_names(["\\Seen"]).unwrap();
    assert_corrupt(
        alice.store_flags(sent_id, &[reflagged.uid], FlagOp::Add, &seen, None),
        "STORE on the damaged record",
    );
    assert_corrupt(
        alice.copy(sent_id, &[reflagged.uid], inbox_id),
        "COPY of the damaged record",
    );
    // The undamaged message next to it can still be changed and read.
    alice
        .store_flags(sent_id, &[a_sent[0].uid], FlagOp::Add, &seen, None)
        .unwrap();
    assert_eq!(
        alice.read_message(&a_sent[0].guid, a_sent[0].size).unwrap(),
        msg("alice", 11)
    );

    // A mailbox record whose UIDNEXT changed.
    assert_corrupt(carol.mailbox("Work"), "mailbox Work");
    assert_corrupt(carol.mailbox_by_id(work_id), "mailbox Work by id");
    assert_corrupt(carol.snapshot(work_id), "snapshot of Work");
    assert_corrupt(carol.status(work_id), "status of Work");
    assert_corrupt(carol.mailboxes(), "list of carol's mailboxes");
    assert_corrupt(
        carol.append(work_id, &msg("carol", 99), &Flags::empty(), None),
        "append to Work",
    );
    assert_corrupt(
        carol.copy(carol_inbox_id, &[c_inbox[0].uid], work_id),
        "copy to Work",
    );

    // A content record whose size changed: the parsed facts are refused.
    match bob.message_info(&resized.guid) {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(
                e.to_string().contains(&resized.guid.to_hex()),
                "does not name the GUID: {e}"
            )
        }
        other => {
            panic!("message_info of the damaged content record: expected Corrupt, got {other:?}")
        }
    }

    // ----- everything else still reads -------------------------------------
    let damaged: BTreeSet<Guid> = [flipped.guid, truncated.guid, deleted.guid].into();
    for (user, name, msgs, from) in [
        (&alice, "alice", &a_inbox, 1..=5),
        (&bob, "bob", &b_inbox, 1..=4),
        (&carol, "carol", &c_inbox, 1..=3),
        (&dave, "dave", &d_inbox, 1..=3),
    ] {
        for (m, n) in msgs.iter().zip(from) {
            if !damaged.contains(&m.guid) {
                assert_eq!(
                    user.read_message(&m.guid, m.size).unwrap(),
                    msg(name, n),
                    "{name} message {n}"
                );
            }
        }
    }
    assert_eq!(
        carol.read_message(&c_work[0].guid, c_work[0].size).unwrap(),
        msg("carol", 21)
    );
    // The body of the message whose content record is damaged is intact.
    assert_eq!(
        bob.read_message(&resized.guid, resized.size).unwrap(),
        msg("bob", 4)
    );
    // Snapshots of undamaged mailboxes, and other users entirely.
    assert_eq!(alice.snapshot(inbox_id).unwrap().1.len(), 5);
    assert_eq!(alice.snapshot(archive_id).unwrap().1.len(), 1);
    assert_eq!(carol.snapshot(carol_inbox_id).unwrap().1.len(), 3);
    assert_eq!(carol.mailbox("INBOX").unwrap().id, carol_inbox_id);
    assert_eq!(
        bob.snapshot(bob.mailbox("INBOX").unwrap().id)
            .unwrap()
            .1
            .len(),
        4
    );
    assert_eq!(dave.mailboxes().unwrap().len(), 6);
    let dave_inbox = dave.mailbox("INBOX").unwrap().id;
    assert_eq!(dave.snapshot(dave_inbox).unwrap().1, d_inbox);
    for m in &d_inbox {
        dave.message_info(&m.guid).unwrap();
    }
    // Writes elsewhere still work, for the damaged users too.
    dave.append(dave_inbox, &msg("dave", 4), &Flags::empty(), None)
        .unwrap();
    alice
        .append(inbox_id, &msg("alice", 6), &Flags::empty(), None)
        .unwrap();
    carol
        .append(carol_inbox_id, &msg("carol", 4), &Flags::empty(), None)
        .unwrap();

    // ----- a stray file: garbage, not damage --------------------------------
    let stray = msg("nobody", 1);
    let stray_guid = Guid::of(&stray);
    let stray_path = file_of(&slot, "dave", &stray_guid);
    std::fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    std::fs::write(&stray_path, &stray).unwrap();

    // ----- scrub reports exactly the damage ----------------------------------
    let report = slot.scrub(false);
    assert!(!report.is_clean());
    let want_damage: BTreeSet<Key> = [
        key("alice", Kind::CorruptFile, None, None, Some(&flipped.guid)),
        key(
            "alice",
            Kind::CorruptFile,
            None,
            None,
            Some(&truncated.guid),
        ),
        key(
            "alice",
            Kind::RecordChecksum,
            Some("Sent"),
            Some(reflagged.uid),
            Some(&reflagged.guid),
        ),
        key("bob", Kind::MissingFile, None, None, Some(&deleted.guid)),
        key("bob", Kind::RecordChecksum, None, None, Some(&resized.guid)),
        key("carol", Kind::RecordChecksum, Some("Work"), None, None),
    ]
    .into();
    assert_eq!(
        keys(report.damage()),
        want_damage,
        "damage findings: {:#?}",
        report.findings
    );
    let garbage: BTreeSet<Key> = keys(report.findings.iter().filter(|f| !f.kind.is_damage()));
    assert_eq!(
        garbage,
        [key("dave", Kind::Garbage, None, None, Some(&stray_guid))].into()
    );
    assert_eq!(report.users, 4);
    // Each finding is reported once.
    assert_eq!(
        report.findings.len(),
        want_damage.len() + 1,
        "{:#?}",
        report.findings
    );
    for f in &report.findings {
        assert!(
            !f.detail.contains(MARKER) && !f.to_string().contains(MARKER),
            "finding carries message bytes: {f}"
        );
    }

    // ----- repair removes the garbage and nothing else ----------------------
    let repaired = slot.scrub(true);
    assert_eq!(repaired.removed, 1);
    assert!(!stray_path.exists(), "scrub --repair left the stray file");
    assert!(
        flipped_path.exists() && truncated_path.exists(),
        "repair must not touch damaged files"
    );
    let after = slot.scrub(false);
    assert_eq!(
        keys(after.findings.iter()),
        want_damage,
        "after repair: {:#?}",
        after.findings
    );
    // Damaged messages are still refused after repair.
    assert_corrupt_naming(
        alice.read_message(&flipped.guid, flipped.size),
        &flipped.guid,
        "after repair",
    );
}

/// Found by the test above: scrub checked a message file against the size in
/// a content record that had failed its checksum, and so also reported the
/// intact file as `CorruptFile`, sending an operator to restore a good file.
#[test]
fn scrub_blames_a_damaged_content_record_not_its_intact_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slot");
    let slot = Slot::open(&root, Options::default()).unwrap();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let m = append_all(&user, "INBOX", &[msg("u", 1)]).remove(0);
    let db = index_of(&slot, "u");
    drop(user);
    drop(slot);
    for change in ["size = size + 1", "size = size - 1", "info = x'00'"] {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let before: (i64, Vec<u8>) = conn
            .query_row("SELECT size, info FROM contents", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        sql(
            &db,
            &format!("UPDATE contents SET {change} WHERE guid = ?1"),
            [&m.guid.0[..]],
        );
        let slot = Slot::open(&root, Options::default()).unwrap();
        let report = slot.scrub(false);
        let want: BTreeSet<Key> =
            [key("u", Kind::RecordChecksum, None, None, Some(&m.guid))].into();
        assert_eq!(
            keys(report.findings.iter()),
            want,
            "after {change}: {:#?}",
            report.findings
        );
        // The body still reads: its own message record is intact.
        assert_eq!(
            slot.user("u")
                .unwrap()
                .read_message(&m.guid, m.size)
                .unwrap(),
            msg("u", 1)
        );
        drop(slot);
        conn.execute(
            "UPDATE contents SET size = ?1, info = ?2",
            (before.0, before.1),
        )
        .unwrap();
    }
    // And a damaged record over a damaged file reports both.
    sql(
        &db,
        "UPDATE contents SET size = size + 1 WHERE guid = ?1",
        [&m.guid.0[..]],
    );
    let slot = Slot::open(&root, Options::default()).unwrap();
    let file = file_of(&slot, "u", &m.guid);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let want: BTreeSet<Key> = [
        key("u", Kind::RecordChecksum, None, None, Some(&m.guid)),
        key("u", Kind::CorruptFile, None, None, Some(&m.guid)),
    ]
    .into();
    assert_eq!(keys(slot.scrub(false).findings.iter()), want);
    std::fs::remove_file(&file).unwrap();
    let want: BTreeSet<Key> = [
        key("u", Kind::RecordChecksum, None, None, Some(&m.guid)),
        key("u", Kind::MissingFile, None, None, Some(&m.guid)),
    ]
    .into();
    assert_eq!(keys(slot.scrub(false).findings.iter()), want);
}
