//! Pack files (docs/storage.md, "Pack files"): a replicated batch of bodies
//! stored as one file; read, verified, released by expunges, compacted when
//! sparse, repaired into loose files, and a slot of format 1 upgraded.

use slotmail_store::*;
use std::path::{Path, PathBuf};

fn slot(dir: &tempfile::TempDir, name: &str) -> Slot {
    Slot::open(dir.path().join(name), Options::default()).unwrap()
}

fn msg(n: u32) -> Vec<u8> {
    format!(
        "Subject: m{n}\r\nX-Pad: {}\r\n\r\nbody {n}\r\n",
        "p".repeat(200 + n as usize)
    )
    .into_bytes()
}

/// One round for `name`'s INBOX, bodies sent as one batch (as the sync
/// server stores them).
fn sync_inbox(master: &Slot, replica: &Slot, name: &str) {
    let account = master.account(name).unwrap().unwrap();
    let hash = master.password_hash(name).unwrap().unwrap();
    replica.apply_account(&account, &hash).unwrap();
    let m = master.user(name).unwrap();
    let r = replica.user(name).unwrap();
    let since = r.repl_modseq().unwrap();
    let changes = m.changes_since(since).unwrap();
    for mbox in &changes.mailboxes {
        let delta = m.delta(mbox.id, since).unwrap();
        let guids: Vec<Guid> = delta.changed.iter().map(|x| x.guid).collect();
        let missing = r.missing_guids(&guids).unwrap();
        let bodies: Vec<(Guid, Vec<u8>)> = missing
            .iter()
            .map(|g| {
                let meta = delta.changed.iter().find(|x| x.guid == *g).unwrap();
                (*g, m.read_message(g, meta.size).unwrap())
            })
            .collect();
        let batch: Vec<(Guid, &[u8])> = bodies.iter().map(|(g, b)| (*g, b.as_slice())).collect();
        if !batch.is_empty() {
            let verdicts = r.put_bodies(&batch).unwrap();
            assert!(verdicts.iter().all(|v| v.is_ok()), "{verdicts:?}");
        }
        let expunged = m.expunges_since(mbox.id, since).unwrap();
        r.apply_mailbox(
            &MailboxApply::from(&delta.mailbox),
            &delta.changed,
            &expunged,
            false,
        )
        .unwrap();
    }
    r.commit_repl_modseq(changes.modseq).unwrap();
}

fn expunge(u: &User, mailbox: i64, uids: std::ops::RangeInclusive<u32>) {
    let uids: Vec<u32> = uids.collect();
    let deleted = Flags::from_names(["\\Deleted"]).unwrap();
    u.store_flags(mailbox, &uids, FlagOp::Add, &deleted, None)
        .unwrap();
    u.expunge(mailbox, Some(&uids)).unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// UID and bytes of every message of the user's INBOX.
fn inbox(slot: &Slot, name: &str) -> Vec<(u32, Vec<u8>)> {
    let u = slot.user(name).unwrap();
    let id = u.mailbox("INBOX").unwrap().id;
    let (_, msgs) = u.snapshot(id).unwrap();
    msgs.iter()
        .map(|m| (m.uid, u.read_message(&m.guid, m.size).unwrap()))
        .collect()
}

/// A master with `n` messages in `name`'s INBOX and a replica synced from
/// it in one batch.
fn pair(dir: &tempfile::TempDir, name: &str, n: u32) -> (Slot, Slot) {
    let master = slot(dir, "master");
    let replica = slot(dir, "replica");
    master.create_user(name, "pw", false).unwrap();
    let u = master.user(name).unwrap();
    let inbox_id = u.mailbox("INBOX").unwrap().id;
    for i in 0..n {
        u.append(inbox_id, &msg(i), &Flags::empty(), None).unwrap();
    }
    sync_inbox(&master, &replica, name);
    (master, replica)
}

#[test]
fn a_replicated_batch_is_one_pack_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(&dir, "ann", 40);
    let r = replica.user("ann").unwrap();
    let packs = files(&r.dir().join("pack"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert!(files(&r.dir().join("msg")).is_empty(), "no loose file");
    assert_eq!(inbox(&replica, "ann"), inbox(&master, "ann"));
    let pack = std::fs::read(&packs[0]).unwrap();
    assert_eq!(&pack[..16], b"slotmail-pack 1\n");
    let scrub = replica.scrub(false);
    assert!(scrub.findings.is_empty(), "{:#?}", scrub.findings);
    assert_eq!(scrub.messages, 40);
}

#[test]
fn expunges_compact_a_sparse_pack_and_unlink_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(&dir, "bob", 40);
    let m = master.user("bob").unwrap();
    let r = replica.user("bob").unwrap();
    let inbox_id = m.mailbox("INBOX").unwrap().id;
    let first = files(&r.dir().join("pack"));
    // A quarter expunged: the pack is kept as it is.
    expunge(&m, inbox_id, 1..=10);
    sync_inbox(&master, &replica, "bob");
    assert_eq!(
        files(&r.dir().join("pack")),
        first,
        "a pack three quarters used is kept"
    );
    assert_eq!(inbox(&replica, "bob"), inbox(&master, "bob"));
    // Three quarters expunged: the live quarter moves to a new pack.
    expunge(&m, inbox_id, 11..=30);
    sync_inbox(&master, &replica, "bob");
    let second = files(&r.dir().join("pack"));
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(
        second, first,
        "the sparse pack was compacted into a new one"
    );
    let left = inbox(&replica, "bob");
    assert_eq!(left.len(), 10);
    assert_eq!(left, inbox(&master, "bob"));
    let len = std::fs::metadata(&second[0]).unwrap().len();
    let live: u64 = left.iter().map(|(_, b)| b.len() as u64 + 40).sum::<u64>() + 16;
    assert_eq!(len, live, "the new pack holds exactly the live bodies");
    assert!(replica.scrub(false).findings.is_empty());
    // Everything expunged: no pack is left.
    expunge(&m, inbox_id, 31..=40);
    sync_inbox(&master, &replica, "bob");
    assert!(files(&r.dir().join("pack")).is_empty());
    assert!(inbox(&replica, "bob").is_empty());
    assert!(replica.scrub(false).findings.is_empty());
}

#[test]
fn a_damaged_packed_body_is_detected_and_repaired_into_a_loose_file() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(&dir, "cat", 20);
    let r = replica.user("cat").unwrap();
    let packs = files(&r.dir().join("pack"));
    let inbox_id = r.mailbox("INBOX").unwrap().id;
    let (_, msgs) = r.snapshot(inbox_id).unwrap();
    let victim = &msgs[7];
    let good = master
        .user("cat")
        .unwrap()
        .read_message(&victim.guid, victim.size)
        .unwrap();
    // Flip one byte of the victim's body inside the pack.
    let mut pack = std::fs::read(&packs[0]).unwrap();
    let at = pack
        .windows(good.len())
        .position(|w| w == good.as_slice())
        .unwrap();
    pack[at + good.len() / 2] ^= 0x20;
    std::fs::write(&packs[0], &pack).unwrap();

    let err = r.read_message(&victim.guid, victim.size).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let scrub = replica.scrub(false);
    assert_eq!(scrub.findings.len(), 1, "{:#?}", scrub.findings);
    assert_eq!(scrub.findings[0].kind, scrub::Kind::CorruptFile);
    assert_eq!(
        scrub.findings[0].guid.as_deref(),
        Some(victim.guid.to_hex().as_str())
    );
    // The others are intact.
    assert_eq!(
        r.read_message(&msgs[8].guid, msgs[8].size).unwrap(),
        master
            .user("cat")
            .unwrap()
            .read_message(&msgs[8].guid, msgs[8].size)
            .unwrap()
    );
    // Repair writes a loose file and points the record at it.
    r.repair_body(&victim.guid, &good).unwrap();
    assert_eq!(r.read_message(&victim.guid, victim.size).unwrap(), good);
    assert_eq!(files(&r.dir().join("msg")).len(), 1);
    assert_eq!(
        files(&r.dir().join("pack")),
        packs,
        "the pack still holds the others"
    );
    assert!(replica.scrub(false).findings.is_empty());
    assert_eq!(inbox(&replica, "cat"), inbox(&master, "cat"));
}

#[test]
fn a_lost_pack_makes_its_bodies_missing_and_a_resend_heals_them() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(&dir, "dan", 12);
    let r = replica.user("dan").unwrap();
    let inbox_id = r.mailbox("INBOX").unwrap().id;
    let (_, msgs) = r.snapshot(inbox_id).unwrap();
    let guids: Vec<Guid> = msgs.iter().map(|m| m.guid).collect();
    assert!(r.missing_guids(&guids).unwrap().is_empty());
    for p in files(&r.dir().join("pack")) {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(r.missing_guids(&guids).unwrap(), guids);
    let m = master.user("dan").unwrap();
    let bodies: Vec<Vec<u8>> = msgs
        .iter()
        .map(|x| m.read_message(&x.guid, x.size).unwrap())
        .collect();
    let batch: Vec<(Guid, &[u8])> = guids
        .iter()
        .zip(&bodies)
        .map(|(g, b)| (*g, b.as_slice()))
        .collect();
    assert!(r.put_bodies(&batch).unwrap().iter().all(|v| v.is_ok()));
    assert!(r.missing_guids(&guids).unwrap().is_empty());
    assert_eq!(inbox(&replica, "dan"), inbox(&master, "dan"));
    assert!(replica.scrub(false).findings.is_empty());
}

#[test]
fn an_append_of_a_packed_body_stores_it_loose_and_releases_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let (_master, replica) = pair(&dir, "eve", 8);
    let r = replica.user("eve").unwrap();
    let archive = r.mailbox("Archive").unwrap().id;
    // The replica promoted: every body appended again, to another mailbox.
    for i in 0..8 {
        r.append(archive, &msg(i), &Flags::empty(), None).unwrap();
    }
    assert!(
        files(&r.dir().join("pack")).is_empty(),
        "no body is left in the pack"
    );
    assert_eq!(files(&r.dir().join("msg")).len(), 8);
    let inbox_id = r.mailbox("INBOX").unwrap().id;
    for id in [inbox_id, archive] {
        let (_, msgs) = r.snapshot(id).unwrap();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(r.read_message(&m.guid, m.size).unwrap(), msg(i as u32));
        }
    }
    assert!(replica.scrub(false).findings.is_empty());
}

#[test]
fn scrub_repair_removes_an_unreferenced_pack() {
    let dir = tempfile::tempdir().unwrap();
    let (_master, replica) = pair(&dir, "fay", 6);
    let r = replica.user("fay").unwrap();
    let stray = r
        .dir()
        .join("pack")
        .join(format!("{}.pack", "ab".repeat(16)));
    std::fs::write(&stray, b"slotmail-pack 1\n").unwrap();
    let scrub = replica.scrub(false);
    assert_eq!(scrub.findings.len(), 1, "{:#?}", scrub.findings);
    assert_eq!(scrub.findings[0].kind, scrub::Kind::Garbage);
    assert!(replica.scrub(true).is_clean());
    assert!(!stray.exists());
    assert!(replica.scrub(false).findings.is_empty());
    assert_eq!(files(&r.dir().join("pack")).len(), 1);
}

#[test]
fn a_slot_of_format_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("old");
    let before = {
        let s = Slot::open(&root, Options::default()).unwrap();
        s.create_user("gil", "pw", false).unwrap();
        let u = s.user("gil").unwrap();
        let inbox_id = u.mailbox("INBOX").unwrap().id;
        for i in 0..5 {
            u.append(inbox_id, &msg(i), &Flags::empty(), None).unwrap();
        }
        let before = inbox(&s, "gil");
        // Turn it into what format 1 wrote.
        let db = u.dir().join("index.db");
        drop(u);
        drop(s);
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "DROP INDEX contents_by_pack;
             ALTER TABLE contents DROP COLUMN pack;
             ALTER TABLE contents DROP COLUMN pack_offset;
             UPDATE meta SET value = 1 WHERE key = 'format';",
        )
        .unwrap();
        drop(c);
        std::fs::write(root.join("FORMAT"), "slotmail-slot 1\n").unwrap();
        before
    };
    let s = Slot::open(&root, Options::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("FORMAT")).unwrap(),
        "slotmail-slot 2\n"
    );
    assert_eq!(inbox(&s, "gil"), before);
    assert!(s.scrub(false).findings.is_empty());
    // A batch lands in a pack after the upgrade.
    let u = s.user("gil").unwrap();
    let bodies: Vec<Vec<u8>> = (100..110).map(msg).collect();
    let batch: Vec<(Guid, &[u8])> = bodies.iter().map(|b| (Guid::of(b), b.as_slice())).collect();
    assert!(u.put_bodies(&batch).unwrap().iter().all(|v| v.is_ok()));
    assert_eq!(files(&u.dir().join("pack")).len(), 1);
    let c = rusqlite::Connection::open(u.dir().join("index.db")).unwrap();
    let format: i64 = c
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(format, 2);
}
