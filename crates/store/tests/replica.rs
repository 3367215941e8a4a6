//! The store's replication API: a user copied from one slot to another
//! through `changes_since` / `put_body` / `apply_*` ends up identical as a
//! client sees it — same mailbox ids, UIDVALIDITY, UIDs, flags, MODSEQs —
//! and stays identical through renames, expunges and deletions.

use slotmail_store::*;

fn slot(dir: &tempfile::TempDir, name: &str) -> Slot {
    Slot::open(dir.path().join(name), Options::default()).unwrap()
}

fn msg(n: u32) -> Vec<u8> {
    format!("Subject: m{n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// One replication round for one user, the way the sync client does it.
fn sync_user(master: &Slot, replica: &Slot, name: &str) {
    let account = master.account(name).unwrap().unwrap();
    let hash = master.password_hash(name).unwrap().unwrap();
    replica.apply_account(&account, &hash).unwrap();
    let m = master.user(name).unwrap();
    let r = replica.user(name).unwrap();
    let since = r.repl_modseq().unwrap();
    let changes = m.changes_since(since).unwrap();
    for t in &changes.deleted {
        r.apply_delete_mailbox(&t.mailbox_id, t.modseq).unwrap();
    }
    for mbox in &changes.mailboxes {
        let delta = m.delta(mbox.id, since).unwrap();
        let guids: Vec<Guid> = delta.changed.iter().map(|x| x.guid).collect();
        for g in r.missing_guids(&guids).unwrap() {
            let meta = delta.changed.iter().find(|x| x.guid == g).unwrap();
            r.put_body(&g, &m.read_message(&g, meta.size).unwrap())
                .unwrap();
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
    r.apply_subscriptions(&changes.subscriptions).unwrap();
    r.commit_repl_modseq(changes.modseq).unwrap();
}

/// Everything a client can see, in comparable form.
fn view(slot: &Slot, name: &str) -> Vec<String> {
    let u = slot.user(name).unwrap();
    let mut out = vec![format!("subs {:?}", u.subscriptions().unwrap())];
    for mb in u.mailboxes().unwrap() {
        out.push(format!(
            "{} {} uv={} next={} hms={} su={:?}",
            mb.mailbox_id, mb.name, mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use
        ));
        let (_, msgs) = u.snapshot(mb.id).unwrap();
        for x in msgs {
            let body = u.read_message(&x.guid, x.size).unwrap();
            out.push(format!(
                "  {} {} {:?} {} {} {}",
                x.uid,
                x.guid,
                x.flags.names().collect::<Vec<_>>(),
                x.modseq,
                x.internaldate,
                body.len()
            ));
        }
    }
    out
}

#[test]
fn replicated_user_matches_through_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let master = slot(&dir, "m");
    let replica = slot(&dir, "r");
    master.create_user("ann", "pw", false).unwrap();
    let u = master.user("ann").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for n in 0..5 {
        u.append(
            inbox,
            &msg(n),
            &Flags::empty(),
            Some((1_700_000_000 + i64::from(n), 60)),
        )
        .unwrap();
    }
    sync_user(&master, &replica, "ann");
    assert_eq!(view(&master, "ann"), view(&replica, "ann"));

    // Flags, expunge, copy, a new mailbox, a rename chain (A -> B, new A), a
    // deletion, subscriptions.
    u.store_flags(
        inbox,
        &[1, 2],
        FlagOp::Add,
        &Flags::from_names(["\\Seen", "$Important"]).unwrap(),
        None,
    )
    .unwrap();
    u.store_flags(
        inbox,
        &[3],
        FlagOp::Add,
        &Flags::from_names(["\\Deleted"]).unwrap(),
        None,
    )
    .unwrap();
    u.expunge(inbox, None).unwrap();
    let a = u.create_mailbox("A", None).unwrap();
    u.copy(inbox, &[1, 4], a.id).unwrap();
    sync_user(&master, &replica, "ann");
    assert_eq!(view(&master, "ann"), view(&replica, "ann"));
    u.rename_mailbox("A", "B").unwrap();
    let a2 = u.create_mailbox("A", Some("\\Archive")).unwrap();
    u.append(a2.id, &msg(99), &Flags::empty(), None).unwrap();
    u.delete_mailbox("Junk").unwrap();
    u.subscribe("B").unwrap();
    u.unsubscribe("Trash").unwrap();
    sync_user(&master, &replica, "ann");
    assert_eq!(view(&master, "ann"), view(&replica, "ann"));
    // Idempotent: a second round with nothing new changes nothing.
    let before = view(&replica, "ann");
    sync_user(&master, &replica, "ann");
    assert_eq!(before, view(&replica, "ann"));
    assert!(replica.scrub(false).is_clean());
    // The replica's MODSEQ covers every record: a promoted replica continues above.
    let r = replica.user("ann").unwrap();
    assert!(r.modseq().unwrap() >= u.modseq().unwrap());
    assert_eq!(r.quota().unwrap(), u.quota().unwrap());
}

#[test]
fn replica_refuses_a_body_that_does_not_match_its_guid() {
    let dir = tempfile::tempdir().unwrap();
    let replica = slot(&dir, "r");
    let master = slot(&dir, "m");
    let account = master.create_user("bo", "pw", false).unwrap();
    let hash = master.password_hash("bo").unwrap().unwrap();
    replica.apply_account(&account, &hash).unwrap();
    let r = replica.user("bo").unwrap();
    let good = msg(1);
    let err = r
        .put_body(&Guid::of(&good), b"Subject: m1\r\n\r\nEMPTY\r\n")
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert_eq!(
        r.missing_guids(&[Guid::of(&good)]).unwrap(),
        [Guid::of(&good)]
    );
    // A message whose body never arrived is refused, not stored empty.
    let meta = MessageMeta {
        uid: 1,
        guid: Guid::of(&good),
        size: good.len() as u64,
        internaldate: 0,
        tz_offset_min: 0,
        flags: Flags::empty(),
        modseq: 5,
    };
    let rec = MailboxApply {
        mailbox_id: "0123456789abcdef0123456789abcdef".into(),
        name: "INBOX".into(),
        uidvalidity: 7,
        uidnext: 2,
        highestmodseq: 5,
        special_use: None,
        modseq: 5,
    };
    assert!(r.apply_mailbox(&rec, &[meta], &[], false).is_err());
    assert!(
        r.mailbox("INBOX").is_err(),
        "nothing of the refused apply is visible"
    );
}

#[test]
fn a_batch_with_one_bad_body_stores_the_good_ones_and_refuses_the_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let replica = slot(&dir, "r");
    let master = slot(&dir, "m");
    let account = master.create_user("cy", "pw", false).unwrap();
    let hash = master.password_hash("cy").unwrap().unwrap();
    replica.apply_account(&account, &hash).unwrap();
    let r = replica.user("cy").unwrap();
    let bodies: Vec<Vec<u8>> = (1..=5).map(msg).collect();
    let damaged = b"Subject: m3\r\n\r\nDAMAGED\r\n".to_vec();
    let mut batch: Vec<(Guid, &[u8])> =
        bodies.iter().map(|b| (Guid::of(b), b.as_slice())).collect();
    batch[2].1 = &damaged;
    // The same good body twice in one batch is stored once.
    batch.push((Guid::of(&bodies[0]), &bodies[0]));
    let verdicts = r.put_bodies(&batch).unwrap();
    assert_eq!(verdicts.len(), batch.len());
    for (i, v) in verdicts.iter().enumerate() {
        if i == 2 {
            let err = v.as_ref().unwrap_err();
            assert!(err.is_corruption(), "{err}");
        } else {
            assert!(v.is_ok(), "body {i}: {v:?}");
        }
    }
    let guids: Vec<Guid> = bodies.iter().map(|b| Guid::of(b)).collect();
    assert_eq!(r.missing_guids(&guids).unwrap(), [guids[2]]);
    for (g, b) in guids.iter().zip(&bodies) {
        if *g == guids[2] {
            assert_eq!(r.content_size(g).unwrap(), None);
            continue;
        }
        assert_eq!(r.content_size(g).unwrap(), Some(b.len() as u64));
        assert_eq!(&r.read_message(g, b.len() as u64).unwrap(), b);
    }
    // Nothing of the refused body on disk; nothing left in tmp/.
    let bad_path = r
        .dir()
        .join("msg")
        .join(&guids[2].to_hex()[..2])
        .join(guids[2].to_hex());
    assert!(!bad_path.exists());
    assert!(
        std::fs::read_dir(r.dir().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    // Messages can reference the stored bodies; the slot scrubs clean.
    let metas: Vec<MessageMeta> = [0usize, 1, 3, 4]
        .iter()
        .map(|&i| MessageMeta {
            uid: i as u32 + 1,
            guid: guids[i],
            size: bodies[i].len() as u64,
            internaldate: 0,
            tz_offset_min: 0,
            flags: Flags::empty(),
            modseq: 5,
        })
        .collect();
    let rec = MailboxApply {
        mailbox_id: "0123456789abcdef0123456789abcdef".into(),
        name: "INBOX".into(),
        uidvalidity: 7,
        uidnext: 6,
        highestmodseq: 5,
        special_use: None,
        modseq: 5,
    };
    r.apply_mailbox(&rec, &metas, &[], false).unwrap();
    let report = replica.scrub(false);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    // A batch of nothing but refused bodies stores nothing and is no error.
    let verdicts = r.put_bodies(&[(guids[2], &damaged)]).unwrap();
    assert!(verdicts[0].as_ref().unwrap_err().is_corruption());
    assert_eq!(r.missing_guids(&[guids[2]]).unwrap(), [guids[2]]);
}

#[test]
fn a_raised_uidnext_is_durable_replicated_and_skips_its_uids() {
    let dir = tempfile::tempdir().unwrap();
    let master = slot(&dir, "m");
    let replica = slot(&dir, "r");
    master.create_user("alice", "pw", false).unwrap();
    let m = master.user("alice").unwrap();
    let inbox = m.mailbox("INBOX").unwrap();
    m.append(inbox.id, &msg(1), &Flags::empty(), None).unwrap();
    sync_user(&master, &replica, "alice");
    let before = m.modseq().unwrap();
    assert_eq!(m.raise_uidnext(inbox.id, 1000).unwrap(), 1002);
    assert!(m.modseq().unwrap() > before, "a raise is a change");
    sync_user(&master, &replica, "alice");
    assert_eq!(view(&master, "alice"), view(&replica, "alice"));
    let r_inbox = replica.user("alice").unwrap().mailbox("INBOX").unwrap();
    assert_eq!(r_inbox.uidnext, 1002);
    // The next append takes the first UID above the gap, on the master and,
    // after a reopen, durably so.
    drop(m);
    drop(master);
    let master = slot(&dir, "m");
    let m = master.user("alice").unwrap();
    let a = m.append(inbox.id, &msg(2), &Flags::empty(), None).unwrap();
    assert_eq!(a.uid, 1002);
    // A raise past the UID space is refused and changes nothing.
    assert!(matches!(
        m.raise_uidnext(inbox.id, u32::MAX - 10),
        Err(StoreError::Limit(_))
    ));
    assert_eq!(m.mailbox("INBOX").unwrap().uidnext, 1003);
}
