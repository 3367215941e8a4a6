//! The replication API's exact forms: a mailbox's keyword list set to the
//! master's, full syncs by UID range, a full subscription list, the master's
//! account MODSEQ, and the reads the sync server answers with.

use slotmail_store::*;

fn slot(dir: &tempfile::TempDir, name: &str) -> Slot {
    Slot::open(dir.path().join(name), Options::default()).unwrap()
}

fn msg(n: u32) -> Vec<u8> {
    format!("Subject: m{n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn meta(n: u32, uid: u32, modseq: u64, flags: &[&str]) -> MessageMeta {
    let raw = msg(n);
    MessageMeta {
        uid,
        guid: Guid::of(&raw),
        size: raw.len() as u64,
        internaldate: 1_700_000_000,
        tz_offset_min: 0,
        flags: Flags::from_names(flags.iter().copied()).unwrap(),
        modseq,
    }
}

fn record(uidnext: u32, highestmodseq: u64) -> MailboxApply {
    MailboxApply {
        mailbox_id: "0123456789abcdef0123456789abcdef".into(),
        name: "INBOX".into(),
        uidvalidity: 7,
        uidnext,
        highestmodseq,
        special_use: None,
        modseq: 1,
    }
}

fn replica_user(replica: &Slot) -> std::sync::Arc<User> {
    let hash = hash_password("pw").unwrap();
    replica
        .create_replica_user("ann", &hash, false, "00112233445566778899aabbccddeeff")
        .unwrap();
    replica.user("ann").unwrap()
}

#[test]
fn keywords_are_set_exactly_and_ranges_remove_only_inside() {
    let dir = tempfile::tempdir().unwrap();
    let replica = slot(&dir, "r");
    let r = replica_user(&replica);
    for n in 1..=6 {
        r.put_body(&Guid::of(&msg(n)), &msg(n)).unwrap();
    }
    let all: Vec<MessageMeta> = (1..=6).map(|n| meta(n, n, u64::from(n), &[])).collect();
    r.apply_mailbox_exact(&record(7, 6), None, &all, &[], None)
        .unwrap();
    // The master's list names a keyword no message carries any more.
    let keywords = vec!["$Gone".to_string(), "$Kept".to_string()];
    let kept = [meta(2, 2, 8, &["$Kept"])];
    let out = r
        .apply_mailbox_exact(&record(7, 8), Some(&keywords), &kept, &[], Some((1, 3)))
        .unwrap();
    assert_eq!(
        out.removed, 2,
        "UIDs 1 and 3 are in the range and not listed"
    );
    let mbox = r
        .mailbox_by_mailbox_id(&record(7, 8).mailbox_id)
        .unwrap()
        .unwrap();
    assert_eq!(mbox.keywords, keywords);
    let (_, msgs) = r.snapshot(mbox.id).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [2, 4, 5, 6],
        "UIDs outside the range are untouched"
    );
    let mbox = r
        .mailbox_by_mailbox_id(&record(7, 8).mailbox_id)
        .unwrap()
        .unwrap();
    // A full sync that also lists an unlisted UID as expunged keeps the
    // master's expunge MODSEQ (9) for it, not the mailbox's (12).
    let out = r
        .apply_mailbox_exact(
            &record(7, 12),
            Some(&keywords),
            &kept,
            &[(4, 9)],
            Some((1, 4)),
        )
        .unwrap();
    assert_eq!((out.expunged, out.removed), (1, 0));
    assert_eq!(r.expunged_since(mbox.id, 8).unwrap(), [4]);
    assert!(r.expunged_since(mbox.id, 9).unwrap().is_empty());
    assert!(
        r.mailbox_by_mailbox_id("ffffffffffffffffffffffffffffffff")
            .unwrap()
            .is_none()
    );
    // A keyword a client could not have set is refused.
    let bad = vec!["a b".to_string()];
    assert!(
        r.apply_mailbox_exact(&record(7, 9), Some(&bad), &[], &[], None)
            .is_err()
    );
    assert_eq!(
        r.content_size(&Guid::of(&msg(2))).unwrap(),
        Some(msg(2).len() as u64)
    );
    assert_eq!(r.content_size(&Guid::of(b"nothing")).unwrap(), None);
}

#[test]
fn full_subscription_list_replaces_and_account_modseq_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let replica = slot(&dir, "r");
    let r = replica_user(&replica);
    let sub = |name: &str, subscribed, modseq| Subscription {
        name: name.into(),
        subscribed,
        modseq,
    };
    r.apply_subscriptions(&[sub("A", true, 3), sub("B", true, 4)])
        .unwrap();
    r.replace_subscriptions(&[sub("B", false, 5), sub("C", true, 6)])
        .unwrap();
    assert_eq!(
        r.subscription_records().unwrap(),
        [sub("B", false, 5), sub("C", true, 6)]
    );
    assert_eq!(r.subscriptions().unwrap(), ["C"]);
    assert!(r.modseq().unwrap() >= 6);
    assert_eq!(r.repl_account_modseq().unwrap(), 0);
    r.set_repl_account_modseq(9).unwrap();
    assert_eq!(r.repl_account_modseq().unwrap(), 9);
}
