//! Property test: random sequences of mailbox operations against the store
//! and against a plain in-memory model of IMAP semantics, compared after
//! every step: UIDs (strictly increasing, never reused within a UIDVALIDITY),
//! MODSEQ (every change newer than anything before, HIGHESTMODSEQ never going
//! down), the expunge log (VANISHED, deltas), flags, STATUS and quota.

use proptest::prelude::*;
use slotmail_store::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Keywords a flag code may carry (bits 5–7); the upper-case spelling is the
/// same keyword (RFC 3501 §2.3.2: flags compare case-insensitively).
const KEYWORDS: [&str; 3] = ["$A", "$b", "kw"];
const KEYWORDS_OTHER_CASE: [&str; 3] = ["$a", "$B", "KW"];
const THIRD_NAMES: [&str; 2] = ["Third", "Renamed"];
const DEFAULT_NAMES: [&str; 6] = ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"];
const DATE: (i64, i32) = (1_700_000_000, -300);

fn flags_of(code: u8, other_case: bool) -> Flags {
    let mut f = Flags::empty();
    f.system = code & 0x1f;
    let names = if other_case {
        KEYWORDS_OTHER_CASE
    } else {
        KEYWORDS
    };
    for (i, k) in names.iter().enumerate() {
        if code & (0x20 << i) != 0 {
            f.insert(k).unwrap();
        }
    }
    f
}

fn code_of(f: &Flags) -> u8 {
    let mut code = f.system;
    for (i, k) in KEYWORDS.iter().enumerate() {
        if f.has_keyword(k) {
            code |= 0x20 << i;
        }
    }
    assert_eq!(
        f.keyword_count(),
        (code >> 5).count_ones() as usize,
        "unexpected keywords in {f:?}"
    );
    code
}

/// Twelve contents, so the same bytes are appended and copied many times
/// (one shared file, which must outlive every reference but the last).
fn content(n: u8) -> Vec<u8> {
    let mut m = format!("From: m@example.com\r\nSubject: content {n}\r\n\r\n").into_bytes();
    m.extend(std::iter::repeat_n(b'a' + n, usize::from(n) * 37));
    m.extend_from_slice(b"\r\n");
    m
}

#[derive(Debug, Clone, Copy)]
enum Since {
    None,
    Zero,
    /// The mailbox's current HIGHESTMODSEQ.
    Current,
    /// A MODSEQ from the history of this run.
    Past(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        mb: u8,
        content: u8,
        flags: u8,
    },
    Store {
        mb: u8,
        pick: u64,
        missing: bool,
        op: u8,
        flags: u8,
        other_case: bool,
        since: Since,
    },
    ExpungeAll {
        mb: u8,
    },
    UidExpunge {
        mb: u8,
        pick: u64,
        missing: bool,
    },
    Copy {
        from: u8,
        to: u8,
        pick: u64,
        missing: bool,
    },
    Move {
        from: u8,
        to: u8,
        pick: u64,
        missing: bool,
    },
    CreateThird {
        name: u8,
    },
    RenameThird,
    DeleteThird,
}

fn since() -> impl Strategy<Value = Since> {
    prop_oneof![
        3 => Just(Since::None),
        1 => Just(Since::Zero),
        1 => Just(Since::Current),
        2 => any::<u8>().prop_map(Since::Past),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..3, 0u8..12, any::<u8>()).prop_map(|(mb, content, flags)| Op::Append { mb, content, flags }),
        4 => (0u8..3, any::<u64>(), any::<bool>(), 0u8..3, any::<u8>(), any::<bool>(), since()).prop_map(
            |(mb, pick, missing, op, flags, other_case, since)| Op::Store { mb, pick, missing, op, flags, other_case, since }
        ),
        1 => (0u8..3).prop_map(|mb| Op::ExpungeAll { mb }),
        1 => (0u8..3, any::<u64>(), any::<bool>()).prop_map(|(mb, pick, missing)| Op::UidExpunge { mb, pick, missing }),
        2 => (0u8..3, 0u8..3, any::<u64>(), any::<bool>())
            .prop_map(|(from, to, pick, missing)| Op::Copy { from, to, pick, missing }),
        2 => (0u8..3, 0u8..3, any::<u64>(), any::<bool>())
            .prop_map(|(from, to, pick, missing)| Op::Move { from, to, pick, missing }),
        1 => (0u8..2).prop_map(|name| Op::CreateThird { name }),
        1 => Just(Op::RenameThird),
        1 => Just(Op::DeleteThird),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct MMsg {
    content: u8,
    code: u8,
    modseq: u64,
}

#[derive(Debug, Clone)]
struct MBox {
    id: i64,
    mailbox_id: String,
    name: String,
    uidvalidity: u32,
    uidnext: u32,
    highestmodseq: u64,
    msgs: BTreeMap<u32, MMsg>,
    /// UID -> MODSEQ of its expunge.
    expunged: BTreeMap<u32, u64>,
}

struct Model {
    /// INBOX, Archive, and the third mailbox while it exists.
    boxes: Vec<MBox>,
    /// The user's MODSEQ after the last step.
    modseq: u64,
    /// Every MODSEQ the user had, in order (for UNCHANGEDSINCE and deltas).
    history: Vec<u64>,
    max_uidvalidity: u32,
    /// Every UID ever given out, per (mailbox id, UIDVALIDITY).
    uids_ever: HashMap<(String, u32), BTreeSet<u32>>,
}

impl Model {
    fn give_uid(&mut self, b: usize, uid: u32) {
        let mb = &self.boxes[b];
        assert_eq!(uid, mb.uidnext, "{}: UID given out is not UIDNEXT", mb.name);
        let ever = self
            .uids_ever
            .entry((mb.mailbox_id.clone(), mb.uidvalidity))
            .or_default();
        assert!(
            ever.iter().all(|u| *u < uid),
            "{}: UID {uid} is not above every earlier UID",
            mb.name
        );
        assert!(
            ever.insert(uid),
            "{}: UID {uid} reused within UIDVALIDITY {}",
            mb.name,
            mb.uidvalidity
        );
        self.boxes[b].uidnext = uid + 1;
    }

    /// A change stamped `modseq` happened in box `b`.
    fn touch(&mut self, b: usize, modseq: u64) {
        let mb = &mut self.boxes[b];
        assert!(
            modseq > mb.highestmodseq,
            "{}: HIGHESTMODSEQ would not grow",
            mb.name
        );
        mb.highestmodseq = modseq;
    }

    /// A subset of the UIDs of box `b` chosen by the bits of `pick`, plus a
    /// UID that does not exist (expunged, or never given out) if `missing`.
    fn pick(&self, b: usize, pick: u64, missing: bool) -> Vec<u32> {
        let mb = &self.boxes[b];
        let mut uids: Vec<u32> = mb
            .msgs
            .keys()
            .enumerate()
            .filter(|(i, _)| pick & (1 << (i % 64)) != 0)
            .map(|(_, u)| *u)
            .collect();
        if missing {
            uids.push(mb.expunged.keys().next().copied().unwrap_or(mb.uidnext + 3));
        }
        uids.sort();
        uids
    }
}

fn check_all(user: &User, model: &mut Model, step: &str) {
    let modseq = user.modseq().unwrap();
    assert!(modseq >= model.modseq, "{step}: user MODSEQ went down");
    model.modseq = modseq;
    model.history.push(modseq);

    let mut names: Vec<String> = user
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    names.sort();
    let mut want: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    want.extend(model.boxes.get(2).map(|b| b.name.clone()));
    want.sort();
    assert_eq!(names, want, "{step}: mailbox list");

    let (mut count, mut bytes) = (0u64, 0u64);
    for mb in &model.boxes {
        let what = format!("{step}: {}", mb.name);
        let (info, msgs) = user.snapshot(mb.id).unwrap();
        assert_eq!(
            (
                &info.name,
                &info.mailbox_id,
                info.uidvalidity,
                info.uidnext,
                info.highestmodseq
            ),
            (
                &mb.name,
                &mb.mailbox_id,
                mb.uidvalidity,
                mb.uidnext,
                mb.highestmodseq
            ),
            "{what}: mailbox record"
        );
        assert!(
            info.highestmodseq <= modseq,
            "{what}: HIGHESTMODSEQ above the user's MODSEQ"
        );
        let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
        assert_eq!(
            uids,
            mb.msgs.keys().copied().collect::<Vec<_>>(),
            "{what}: UIDs"
        );
        for m in &msgs {
            let want = mb.msgs[&m.uid];
            let bytes_want = content(want.content);
            assert_eq!(
                m.guid,
                Guid::of(&bytes_want),
                "{what} uid {}: content",
                m.uid
            );
            assert_eq!(
                m.size,
                bytes_want.len() as u64,
                "{what} uid {}: size",
                m.uid
            );
            assert_eq!(
                (m.internaldate, m.tz_offset_min),
                DATE,
                "{what} uid {}: INTERNALDATE",
                m.uid
            );
            assert_eq!(code_of(&m.flags), want.code, "{what} uid {}: flags", m.uid);
            assert_eq!(m.modseq, want.modseq, "{what} uid {}: MODSEQ", m.uid);
            assert!(
                m.modseq <= info.highestmodseq,
                "{what} uid {}: MODSEQ above HIGHESTMODSEQ",
                m.uid
            );
            for k in m.flags.keywords() {
                assert!(
                    info.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)),
                    "{what}: keyword {k} in use but not in the mailbox's FLAGS {:?}",
                    info.keywords
                );
            }
            // The file is still there for every reference (shared contents).
            assert_eq!(
                user.read_message(&m.guid, m.size).unwrap(),
                bytes_want,
                "{what} uid {}",
                m.uid
            );
            count += 1;
            bytes += m.size;
        }

        let status = user.status(mb.id).unwrap();
        let want = MailboxStatus {
            messages: mb.msgs.len() as u32,
            unseen: mb.msgs.values().filter(|m| m.code & SEEN == 0).count() as u32,
            deleted: mb.msgs.values().filter(|m| m.code & DELETED != 0).count() as u32,
            // No session ever claimed \Recent here.
            recent: mb.msgs.len() as u32,
            size: mb
                .msgs
                .values()
                .map(|m| content(m.content).len() as u64)
                .sum(),
            uidnext: mb.uidnext,
            uidvalidity: mb.uidvalidity,
            highestmodseq: mb.highestmodseq,
        };
        assert_eq!(status, want, "{what}: STATUS");

        let mut points: BTreeSet<u64> =
            [0, mb.highestmodseq, mb.highestmodseq.saturating_sub(1)].into();
        points.extend(model.history.iter().rev().take(4));
        for since in points {
            let vanished: Vec<u32> = mb
                .expunged
                .iter()
                .filter(|(_, m)| **m > since)
                .map(|(u, _)| *u)
                .collect();
            assert_eq!(
                user.expunged_since(mb.id, since).unwrap(),
                vanished,
                "{what}: expunged since {since}"
            );
            let delta = user.delta(mb.id, since).unwrap();
            assert_eq!(delta.mailbox, info, "{what}: delta since {since}");
            assert_eq!(delta.expunged, vanished, "{what}: delta since {since}");
            let changed: Vec<u32> = mb
                .msgs
                .iter()
                .filter(|(_, m)| m.modseq > since)
                .map(|(u, _)| *u)
                .collect();
            assert_eq!(
                delta.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
                changed,
                "{what}: delta since {since}"
            );
        }
    }
    let quota = user.quota().unwrap();
    assert_eq!(
        (quota.used_messages, quota.used_bytes),
        (count, bytes),
        "{step}: quota"
    );
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let slot = Slot::open(dir.path().join("slot"), Options::default()).unwrap();
    slot.create_user("m", "pw", false).unwrap();
    let user = slot.user("m").unwrap();
    let mut model = Model {
        boxes: Vec::new(),
        modseq: user.modseq().unwrap(),
        history: Vec::new(),
        max_uidvalidity: user
            .mailboxes()
            .unwrap()
            .iter()
            .map(|m| m.uidvalidity)
            .max()
            .unwrap(),
        uids_ever: HashMap::new(),
    };
    for name in ["INBOX", "Archive"] {
        let info = user.mailbox(name).unwrap();
        model.boxes.push(MBox {
            id: info.id,
            mailbox_id: info.mailbox_id,
            name: info.name,
            uidvalidity: info.uidvalidity,
            uidnext: info.uidnext,
            highestmodseq: info.highestmodseq,
            msgs: BTreeMap::new(),
            expunged: BTreeMap::new(),
        });
    }
    check_all(&user, &mut model, "start");

    for (i, op) in ops.iter().enumerate() {
        let step = format!("step {i} {op:?}");
        let before = model.modseq;
        let n = model.boxes.len();
        let pick_box = |x: u8| usize::from(x) % n;
        match *op {
            Op::Append {
                mb,
                content: c,
                flags,
            } => {
                let b = pick_box(mb);
                let out = user
                    .append(
                        model.boxes[b].id,
                        &content(c),
                        &flags_of(flags, false),
                        Some(DATE),
                    )
                    .unwrap();
                assert_eq!(out.uidvalidity, model.boxes[b].uidvalidity, "{step}");
                assert_eq!(out.guid, Guid::of(&content(c)), "{step}");
                assert!(
                    out.modseq > before,
                    "{step}: append MODSEQ not newer than everything before"
                );
                assert_eq!(user.modseq().unwrap(), out.modseq, "{step}");
                model.give_uid(b, out.uid);
                model.touch(b, out.modseq);
                model.boxes[b].msgs.insert(
                    out.uid,
                    MMsg {
                        content: c,
                        code: flags,
                        modseq: out.modseq,
                    },
                );
            }
            Op::Store {
                mb,
                pick,
                missing,
                op,
                flags,
                other_case,
                since,
            } => {
                let b = pick_box(mb);
                let uids = model.pick(b, pick, missing);
                let since = match since {
                    Since::None => None,
                    Since::Zero => Some(0),
                    Since::Current => Some(model.boxes[b].highestmodseq),
                    Since::Past(k) => Some(model.history[usize::from(k) % model.history.len()]),
                };
                let (flag_op, apply): (FlagOp, fn(u8, u8) -> u8) = match op {
                    0 => (FlagOp::Set, |_, f| f),
                    1 => (FlagOp::Add, |old, f| old | f),
                    _ => (FlagOp::Remove, |old, f| old & !f),
                };
                let (mut changed, mut unchanged, mut modified) =
                    (Vec::new(), Vec::new(), Vec::new());
                for uid in &uids {
                    let Some(m) = model.boxes[b].msgs.get(uid) else {
                        continue;
                    };
                    if since.is_some_and(|s| m.modseq > s) {
                        modified.push(*uid);
                    } else if apply(m.code, flags) == m.code {
                        unchanged.push(*uid);
                    } else {
                        changed.push(*uid);
                    }
                }
                let out = user
                    .store_flags(
                        model.boxes[b].id,
                        &uids,
                        flag_op,
                        &flags_of(flags, other_case),
                        since,
                    )
                    .unwrap();
                let uids_of = |v: &[MessageMeta]| v.iter().map(|m| m.uid).collect::<Vec<_>>();
                assert_eq!(uids_of(&out.changed), changed, "{step}: changed");
                assert_eq!(uids_of(&out.unchanged), unchanged, "{step}: unchanged");
                assert_eq!(out.modified, modified, "{step}: MODIFIED");
                if changed.is_empty() {
                    assert_eq!(
                        user.modseq().unwrap(),
                        before,
                        "{step}: a STORE that changed nothing took a MODSEQ"
                    );
                } else {
                    let modseq = out.changed[0].modseq;
                    assert!(
                        modseq > before,
                        "{step}: STORE MODSEQ not newer than everything before"
                    );
                    assert_eq!(user.modseq().unwrap(), modseq, "{step}");
                    for m in &out.changed {
                        assert_eq!(m.modseq, modseq, "{step}: one STORE, several MODSEQs");
                        let mm = model.boxes[b].msgs.get_mut(&m.uid).unwrap();
                        mm.code = apply(mm.code, flags);
                        mm.modseq = modseq;
                        assert_eq!(code_of(&m.flags), mm.code, "{step}: returned flags");
                    }
                    model.touch(b, modseq);
                }
                for m in &out.unchanged {
                    assert_eq!(
                        m.modseq, model.boxes[b].msgs[&m.uid].modseq,
                        "{step}: unchanged message got a MODSEQ"
                    );
                }
            }
            Op::ExpungeAll { mb } | Op::UidExpunge { mb, .. } => {
                let b = pick_box(mb);
                let only = match *op {
                    Op::UidExpunge { pick, missing, .. } => Some(model.pick(b, pick, missing)),
                    _ => None,
                };
                let want: Vec<u32> = model.boxes[b]
                    .msgs
                    .iter()
                    .filter(|(u, m)| {
                        m.code & DELETED != 0 && only.as_ref().is_none_or(|o| o.contains(u))
                    })
                    .map(|(u, _)| *u)
                    .collect();
                let got = user.expunge(model.boxes[b].id, only.as_deref()).unwrap();
                assert_eq!(got, want, "{step}: expunged UIDs");
                let modseq = user.modseq().unwrap();
                if want.is_empty() {
                    assert_eq!(
                        modseq, before,
                        "{step}: an EXPUNGE of nothing took a MODSEQ"
                    );
                } else {
                    assert!(
                        modseq > before,
                        "{step}: EXPUNGE MODSEQ not newer than everything before"
                    );
                    for uid in &want {
                        model.boxes[b].msgs.remove(uid);
                        model.boxes[b].expunged.insert(*uid, modseq);
                    }
                    model.touch(b, modseq);
                }
            }
            Op::Copy {
                from,
                to,
                pick,
                missing,
            }
            | Op::Move {
                from,
                to,
                pick,
                missing,
            } => {
                let is_move = matches!(op, Op::Move { .. });
                let (s, d) = (pick_box(from), pick_box(to));
                let uids = model.pick(s, pick, missing);
                let (sid, did) = (model.boxes[s].id, model.boxes[d].id);
                if is_move && s == d {
                    let r = user.move_messages(sid, &uids, did);
                    assert!(matches!(r, Err(StoreError::NotAllowed(_))), "{step}: {r:?}");
                    assert_eq!(user.modseq().unwrap(), before, "{step}");
                } else {
                    let out = if is_move {
                        user.move_messages(sid, &uids, did)
                    } else {
                        user.copy(sid, &uids, did)
                    }
                    .unwrap();
                    let sources: Vec<u32> = uids
                        .iter()
                        .filter(|u| model.boxes[s].msgs.contains_key(u))
                        .copied()
                        .collect();
                    let want: Vec<(u32, u32)> = sources
                        .iter()
                        .enumerate()
                        .map(|(i, u)| (*u, model.boxes[d].uidnext + i as u32))
                        .collect();
                    assert_eq!(out.pairs, want, "{step}: COPYUID pairs");
                    assert_eq!(out.uidvalidity, model.boxes[d].uidvalidity, "{step}");
                    assert_eq!(
                        out.expunged,
                        if is_move { sources.clone() } else { Vec::new() },
                        "{step}"
                    );
                    if !want.is_empty() {
                        assert!(
                            out.modseq > before,
                            "{step}: MODSEQ not newer than everything before"
                        );
                        assert_eq!(user.modseq().unwrap(), out.modseq, "{step}");
                        for (src, new) in &want {
                            let m = model.boxes[s].msgs[src];
                            model.give_uid(d, *new);
                            model.boxes[d].msgs.insert(
                                *new,
                                MMsg {
                                    modseq: out.modseq,
                                    ..m
                                },
                            );
                        }
                        model.touch(d, out.modseq);
                        if is_move {
                            for src in &sources {
                                model.boxes[s].msgs.remove(src);
                                model.boxes[s].expunged.insert(*src, out.modseq);
                            }
                            model.touch(s, out.modseq);
                        }
                    }
                }
            }
            Op::CreateThird { name } => {
                if let Some(third) = model.boxes.get(2) {
                    let r = user.create_mailbox(&third.name, None);
                    assert!(
                        matches!(r, Err(StoreError::MailboxExists(_))),
                        "{step}: {r:?}"
                    );
                    assert_eq!(user.modseq().unwrap(), before, "{step}");
                } else {
                    let info = user
                        .create_mailbox(THIRD_NAMES[usize::from(name)], None)
                        .unwrap();
                    let modseq = user.modseq().unwrap();
                    assert!(modseq > before, "{step}");
                    assert!(
                        info.uidvalidity > model.max_uidvalidity,
                        "{step}: UIDVALIDITY not new"
                    );
                    assert_eq!(
                        (info.uidnext, info.highestmodseq, info.modseq),
                        (1, modseq, modseq),
                        "{step}"
                    );
                    model.max_uidvalidity = info.uidvalidity;
                    model.boxes.push(MBox {
                        id: info.id,
                        mailbox_id: info.mailbox_id,
                        name: info.name,
                        uidvalidity: info.uidvalidity,
                        uidnext: 1,
                        highestmodseq: modseq,
                        msgs: BTreeMap::new(),
                        expunged: BTreeMap::new(),
                    });
                }
            }
            Op::RenameThird => {
                if let Some(third) = model.boxes.get(2).cloned() {
                    let to = if third.name == THIRD_NAMES[0] {
                        THIRD_NAMES[1]
                    } else {
                        THIRD_NAMES[0]
                    };
                    user.rename_mailbox(&third.name, to).unwrap();
                    let modseq = user.modseq().unwrap();
                    assert!(modseq > before, "{step}");
                    let info = user.mailbox(to).unwrap();
                    assert_eq!(
                        (info.id, info.modseq),
                        (third.id, modseq),
                        "{step}: renamed record"
                    );
                    assert!(
                        matches!(user.mailbox(&third.name), Err(StoreError::NoSuchMailbox(_))),
                        "{step}"
                    );
                    let changes = user.changes_since(before).unwrap();
                    assert!(
                        changes
                            .mailboxes
                            .iter()
                            .any(|m| m.id == third.id && m.name == to),
                        "{step}: change log"
                    );
                    model.boxes[2].name = to.to_string();
                } else {
                    let r = user.rename_mailbox(THIRD_NAMES[0], THIRD_NAMES[1]);
                    assert!(
                        matches!(r, Err(StoreError::NoSuchMailbox(_))),
                        "{step}: {r:?}"
                    );
                    assert_eq!(user.modseq().unwrap(), before, "{step}");
                }
            }
            Op::DeleteThird => {
                if let Some(third) = model.boxes.get(2).cloned() {
                    user.delete_mailbox(&third.name).unwrap();
                    let modseq = user.modseq().unwrap();
                    assert!(modseq > before, "{step}");
                    assert!(
                        matches!(user.snapshot(third.id), Err(StoreError::NoSuchMailbox(_))),
                        "{step}"
                    );
                    let changes = user.changes_since(before).unwrap();
                    assert!(
                        changes
                            .deleted
                            .iter()
                            .any(|t| t.mailbox_id == third.mailbox_id && t.modseq == modseq),
                        "{step}: no tombstone in the change log: {changes:?}"
                    );
                    model.boxes.pop();
                } else {
                    let r = user.delete_mailbox(THIRD_NAMES[0]);
                    assert!(
                        matches!(r, Err(StoreError::NoSuchMailbox(_))),
                        "{step}: {r:?}"
                    );
                    assert_eq!(user.modseq().unwrap(), before, "{step}");
                }
            }
        }
        check_all(&user, &mut model, &step);
    }
    let report = slot.scrub(false);
    assert!(
        report.findings.is_empty(),
        "scrub after {} steps: {:#?}",
        ops.len(),
        report.findings
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn store_behaves_like_the_mailbox_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

/// Found by the model test: COPY into the same mailbox read its source UIDs
/// while inserting, so a UID that did not exist when the COPY began but was
/// created by it was copied as well (and past the quota check, which had
/// counted only the messages that existed).
#[test]
fn copy_into_the_same_mailbox_copies_only_messages_that_existed_before() {
    let dir = tempfile::tempdir().unwrap();
    let slot = Slot::open(dir.path().join("slot"), Options::default()).unwrap();
    slot.create_user("m", "pw", false).unwrap();
    slot.set_quota("m", None, Some(6)).unwrap();
    let user = slot.user("m").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    for n in 0..3 {
        user.append(inbox, &content(n), &Flags::empty(), Some(DATE))
            .unwrap();
    }
    let out = user.copy(inbox, &[1, 2, 3, 4, 5, 6], inbox).unwrap();
    assert_eq!(out.pairs, [(1, 4), (2, 5), (3, 6)]);
    let (info, msgs) = user.snapshot(inbox).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(info.uidnext, 7);
    assert_eq!(user.quota().unwrap().used_messages, 6);
    assert!(slot.scrub(false).findings.is_empty());
}
