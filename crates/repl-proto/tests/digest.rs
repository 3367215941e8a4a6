//! Digests: known answers for a fixed mailbox and user (computed
//! independently from docs/replication.md), a byte-level rebuild of the
//! encoding, order independence, sensitivity to every field, and the
//! incremental accumulator against recomputation.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use slotmail_repl_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const MAILBOX_ID: &str = "0123456789abcdef0123456789abcdef";

fn mailbox() -> MailboxRecord {
    MailboxRecord {
        mailbox_id: MAILBOX_ID.into(),
        name: "INBOX".into(),
        uidvalidity: 1_700_000_000,
        uidnext: 5,
        highestmodseq: 42,
        special_use: None,
        keywords: vec!["work".into(), "$Junk".into()],
        modseq: 3,
    }
}

fn messages() -> Vec<MessageRecord> {
    vec![
        MessageRecord {
            uid: 1,
            guid: *blake3::hash(b"hello").as_bytes(),
            size: 5,
            internaldate: 1_700_000_000,
            tz_offset: 60,
            flags: FLAG_SEEN,
            keywords: vec![],
            modseq: 10,
        },
        MessageRecord {
            uid: 3,
            guid: [0x11; 32],
            size: 1234,
            internaldate: -1,
            tz_offset: -300,
            flags: FLAG_SEEN | FLAG_FLAGGED,
            keywords: vec!["work".into(), "$Junk".into()],
            modseq: 42,
        },
    ]
}

fn account() -> AccountRecord {
    AccountRecord {
        name: "alice".into(),
        user_id: "00112233445566778899aabbccddeeff".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        is_admin: false,
        quota_bytes: Some(1 << 30),
        quota_messages: None,
        modseq: 7,
    }
}

fn subscriptions() -> Vec<SubscriptionRecord> {
    vec![
        SubscriptionRecord {
            name: "Sent".into(),
            subscribed: true,
            modseq: 12,
        },
        SubscriptionRecord {
            name: "Archive".into(),
            subscribed: false,
            modseq: 20,
        },
    ]
}

/// Known answers computed by an independent implementation (Python, from the
/// byte layout in docs/replication.md). A change is a protocol version change.
#[test]
fn known_answers() {
    let m = messages();
    assert_eq!(
        hex(&record_hash(&m[0])),
        "68be68aa496f68a16d56331b6a37d4ceaee94dfe628804d441da0022d8ef3739"
    );
    assert_eq!(
        hex(&record_hash(&m[1])),
        "587f12dc3183ca018b4a921ab7b25ad23253f8f6e69cc25384eca7d1080d4680"
    );
    let digest = mailbox_digest(&mailbox(), &m);
    assert_eq!(
        hex(&digest),
        "b51779787d9697af9a285ec62a88158883594f79bb1ba4a24c2d03077319f17b"
    );
    assert_eq!(
        hex(&mailbox_digest(&mailbox(), &[])),
        "2850c233d5f3446271c94de0f28d37cb6649d98a2d71b82fe1fa7d8b506226a6"
    );
    let boxes = [
        MailboxSummary {
            mailbox_id: "ffffffffffffffffffffffffffffffff".into(),
            digest: [0x22; 32],
            messages: 7,
            uidnext: 9,
        },
        MailboxSummary {
            mailbox_id: MAILBOX_ID.into(),
            digest,
            messages: 7,
            uidnext: 9,
        },
    ];
    assert_eq!(
        hex(&user_digest(&account(), &subscriptions(), &boxes)),
        "8cba0d2daf5841fe04bc55b926353d770ec10c92c6c5007c706dfeb1eb786615"
    );
}

/// The record hash rebuilt byte by byte from the documented layout.
#[test]
fn record_hash_layout() {
    let m = &messages()[1];
    let mut b = Vec::new();
    let u = |b: &mut Vec<u8>, x: u64| b.extend_from_slice(&x.to_le_bytes());
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend_from_slice(&(x.len() as u64).to_le_bytes());
        b.extend_from_slice(x.as_bytes());
    };
    s(&mut b, "msg");
    u(&mut b, 3);
    b.extend_from_slice(&[0x11; 32]);
    u(&mut b, 1234);
    b.extend_from_slice(&(-1i64).to_le_bytes());
    b.extend_from_slice(&(-300i64).to_le_bytes());
    u(&mut b, 5);
    u(&mut b, 2);
    s(&mut b, "$Junk"); // sorted by bytes: '$' < 'w'
    s(&mut b, "work");
    u(&mut b, 42);
    assert_eq!(record_hash(m), *blake3::hash(&b).as_bytes());
}

#[test]
fn keyword_order_does_not_matter_but_case_does() {
    let mut a = messages()[1].clone();
    let mut b = a.clone();
    b.keywords.reverse();
    assert_eq!(record_hash(&a), record_hash(&b));
    a.keywords[1] = "$junk".into();
    assert_ne!(record_hash(&a), record_hash(&b));

    let mut mb = mailbox();
    let before = mailbox_digest(&mb, &[]);
    mb.keywords.reverse();
    assert_eq!(mailbox_digest(&mb, &[]), before);
}

#[test]
fn lists_in_any_order_give_the_same_user_digest() {
    let boxes = vec![
        MailboxSummary {
            mailbox_id: "b".into(),
            digest: [1; 32],
            messages: 7,
            uidnext: 9,
        },
        MailboxSummary {
            mailbox_id: "a".into(),
            digest: [2; 32],
            messages: 7,
            uidnext: 9,
        },
    ];
    let mut subs = subscriptions();
    let d = user_digest(&account(), &subs, &boxes);
    subs.reverse();
    let mut rev = boxes.clone();
    rev.reverse();
    assert_eq!(user_digest(&account(), &subs, &rev), d);
}

/// Every field of every record, changed alone, changes the digest.
#[test]
fn every_field_counts() {
    let mb = mailbox();
    let ms = messages();
    let base = mailbox_digest(&mb, &ms);

    type MailboxEdit = fn(&mut MailboxRecord);
    let mailbox_edits: [MailboxEdit; 9] = [
        |m| m.mailbox_id.push('0'),
        |m| m.name.push('x'),
        |m| m.uidvalidity += 1,
        |m| m.uidnext += 1,
        |m| m.highestmodseq += 1,
        |m| m.special_use = Some(String::new()),
        |m| m.keywords.push("x".into()),
        |m| m.keywords[0].push('x'),
        |m| m.modseq += 1,
    ];
    for (i, edit) in mailbox_edits.iter().enumerate() {
        let mut m = mb.clone();
        edit(&mut m);
        assert_ne!(mailbox_digest(&m, &ms), base, "mailbox edit {i}");
    }

    type MessageEdit = fn(&mut MessageRecord);
    let message_edits: [MessageEdit; 10] = [
        |m| m.uid += 1,
        |m| m.guid[31] ^= 1,
        |m| m.size += 1,
        |m| m.internaldate += 1,
        |m| m.tz_offset += 1,
        |m| m.flags ^= FLAG_DRAFT,
        |m| m.keywords.push("x".into()),
        |m| m.keywords.clear(),
        |m| m.keywords[0].push('x'),
        |m| m.modseq += 1,
    ];
    for (i, edit) in message_edits.iter().enumerate() {
        let mut changed = ms.clone();
        edit(&mut changed[1]);
        assert_ne!(mailbox_digest(&mb, &changed), base, "message edit {i}");
    }
    // A message removed, or duplicated (XOR alone would cancel a pair).
    assert_ne!(mailbox_digest(&mb, &ms[..1]), base);
    let doubled = [ms.clone(), vec![ms[1].clone(), ms[1].clone()]].concat();
    assert_ne!(mailbox_digest(&mb, &doubled), base);

    let subs = subscriptions();
    let boxes = vec![MailboxSummary {
        mailbox_id: MAILBOX_ID.into(),
        digest: base,
        messages: 7,
        uidnext: 9,
    }];
    let user = user_digest(&account(), &subs, &boxes);
    type AccountEdit = fn(&mut AccountRecord);
    let account_edits: [AccountEdit; 8] = [
        |a| a.name.push('x'),
        |a| a.user_id.push('0'),
        |a| a.password_hash.push('x'),
        |a| a.is_admin = !a.is_admin,
        |a| a.quota_bytes = None,
        |a| a.quota_messages = Some(0),
        |a| a.modseq += 1,
        |a| a.quota_bytes = Some(1 << 31),
    ];
    for (i, edit) in account_edits.iter().enumerate() {
        let mut a = account();
        edit(&mut a);
        assert_ne!(user_digest(&a, &subs, &boxes), user, "account edit {i}");
    }
    type SubEdit = fn(&mut SubscriptionRecord);
    let sub_edits: [SubEdit; 3] = [
        |s| s.name.push('x'),
        |s| s.subscribed = !s.subscribed,
        |s| s.modseq += 1,
    ];
    for (i, edit) in sub_edits.iter().enumerate() {
        let mut s = subs.clone();
        edit(&mut s[0]);
        assert_ne!(
            user_digest(&account(), &s, &boxes),
            user,
            "subscription edit {i}"
        );
    }
    assert_ne!(user_digest(&account(), &subs[..1], &boxes), user);
    let mut b = boxes.clone();
    b[0].digest[0] ^= 1;
    assert_ne!(user_digest(&account(), &subs, &b), user);
    b = boxes.clone();
    b[0].mailbox_id.push('0');
    assert_ne!(user_digest(&account(), &subs, &b), user);
    assert_ne!(user_digest(&account(), &subs, &[]), user);
}

#[test]
fn accumulator_round_trips_through_its_parts() {
    let d = MailboxDigest::from_records(&messages());
    let restored = MailboxDigest::from_parts(d.xor(), d.count());
    assert_eq!(restored, d);
    assert_eq!(
        restored.finish(&mailbox()),
        mailbox_digest(&mailbox(), &messages())
    );
    // Removing from empty and adding back is the identity (a group).
    let mut e = MailboxDigest::new();
    e.remove(&[7; 32]);
    e.add(&[7; 32]);
    assert_eq!(e, MailboxDigest::new());
}

/// Distinct UIDs, as in a mailbox.
fn mailbox_messages() -> impl Strategy<Value = Vec<MessageRecord>> {
    vec(common::message_record(), 0..12).prop_map(|mut ms| {
        ms.sort_by_key(|m| m.uid);
        ms.dedup_by_key(|m| m.uid);
        ms
    })
}

proptest! {
    #[test]
    fn order_independence(mb in common::mailbox_record(), ms in mailbox_messages(), seed in any::<u64>()) {
        let d = mailbox_digest(&mb, &ms);
        let mut shuffled = ms.clone();
        // A deterministic permutation from the seed.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(mailbox_digest(&mb, &shuffled), d);
    }

    /// Any sequence of adds, removes and changes, applied incrementally,
    /// equals recomputing from the final set.
    #[test]
    fn incremental_equals_recomputation(
        mb in common::mailbox_record(),
        start in mailbox_messages(),
        ops in vec((any::<prop::sample::Index>(), common::message_record(), 0u8..3), 0..24),
    ) {
        let mut present = start.clone();
        let mut acc = MailboxDigest::from_records(&start);
        for (index, record, op) in ops {
            match op {
                // add (a fresh UID)
                0 if present.iter().all(|m| m.uid != record.uid) => {
                    acc.add_record(&record);
                    present.push(record);
                }
                1 if !present.is_empty() => {
                    let removed = present.remove(index.index(present.len()));
                    acc.remove_record(&removed);
                }
                _ if !present.is_empty() => {
                    // change flags/keywords/modseq of one record
                    let i = index.index(present.len());
                    let old = present[i].clone();
                    let mut new = old.clone();
                    new.flags = record.flags;
                    new.keywords = record.keywords;
                    new.modseq = record.modseq;
                    acc.remove_record(&old);
                    acc.add_record(&new);
                    present[i] = new;
                }
                _ => {}
            }
        }
        prop_assert_eq!(acc, MailboxDigest::from_records(&present));
        prop_assert_eq!(acc.finish(&mb), mailbox_digest(&mb, &present));
        prop_assert_eq!(acc.count(), present.len() as u64);
    }

    #[test]
    fn distinct_records_hash_apart(a in common::message_record(), b in common::message_record()) {
        if a != b {
            // keywords compare as a multiset
            let mut ka = a.keywords.clone();
            let mut kb = b.keywords.clone();
            ka.sort();
            kb.sort();
            let same_but_order = MessageRecord { keywords: ka, ..a.clone() }
                == MessageRecord { keywords: kb, ..b.clone() };
            prop_assert_eq!(record_hash(&a) == record_hash(&b), same_but_order);
        }
    }
}
