//! Crash test: `kill -9` at random moments loses nothing acknowledged and
//! leaves nothing half-written (docs/storage.md, "Durability guarantee").
//!
//! A child process (`store-torture`) appends, re-flags, copies and expunges on
//! one slot directory, printing an intent line before and an acknowledgement
//! line after every operation. The parent SIGKILLs it after a random delay,
//! reopens the slot in-process and compares it with a model built from the
//! acknowledgements: an acknowledged change must be there, the one
//! unacknowledged intent may or may not be (but whole), nothing else may
//! appear, a UID never shows other content, and scrub finds no damage. Every
//! round continues on the same directory and sequence numbers.
//!
//! `SLOTMAIL_CRASH_SEED=<n>` replays a run; `SLOTMAIL_CRASH_ROUNDS=<n>` sets
//! the number of rounds (default 60).

#[allow(dead_code)]
#[path = "../src/bin/store-torture.rs"]
mod torture;

use slotmail_store::{DELETED, Guid, Options, Slot};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use torture::{Rng, USER, code_of, message};

const INBOX: usize = 0;
const ARCHIVE: usize = 1;
const MAILBOX_NAMES: [&str; 2] = ["INBOX", "Archive"];

fn mb_index(s: &str) -> usize {
    match s {
        "i" => INBOX,
        "a" => ARCHIVE,
        other => panic!("unknown mailbox tag {other:?}"),
    }
}

/// An operation the child announced.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
    Append { seq: u64, code: u8 },
    Flags { mb: usize, uid: u32, code: u8 },
    Copy { uid: u32 },
    Expunge { mb: usize, uid: u32 },
}

/// A message the model knows is in a mailbox.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Msg {
    seq: u64,
    code: u8,
}

/// What the slot must hold, built from acknowledgements (and, after each
/// round, from how the one pending intent turned out).
struct Model {
    seed: u64,
    ids: [i64; 2],
    uidvalidity: [u32; 2],
    /// Highest UIDNEXT observed per mailbox: never goes down.
    uidnext: [u32; 2],
    msgs: [BTreeMap<u32, Msg>; 2],
    /// Every (mailbox, UID) ever seen, with the content it had: never changes.
    ever: [BTreeMap<u32, u64>; 2],
    /// Expunged (mailbox, UID)s: never come back.
    gone: [BTreeSet<u32>; 2],
    /// Messages whose bytes were compared in full once already.
    compared: [BTreeSet<u32>; 2],
    /// GUID of each sequence number's bytes, computed once.
    guids: HashMap<u64, Guid>,
    next_seq: u64,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    rounds_ready: u64,
    acked: BTreeMap<&'static str, u64>,
    interrupted: u64,
    interrupted_committed: u64,
}

impl Model {
    fn guid(&mut self, seq: u64) -> Guid {
        let seed = self.seed;
        *self
            .guids
            .entry(seq)
            .or_insert_with(|| Guid::of(&message(seed, seq)))
    }

    /// Record that (mb, uid) holds content `seq`: a UID never changes content.
    fn remember(&mut self, mb: usize, uid: u32, seq: u64, why: &str) {
        let before = *self.ever[mb].entry(uid).or_insert(seq);
        assert_eq!(
            before, seq,
            "{why}: {}:{uid} held message {before} before and now message {seq} (UID reused)",
            MAILBOX_NAMES[mb]
        );
        assert!(
            !self.gone[mb].contains(&uid),
            "{why}: {}:{uid} was expunged and came back",
            MAILBOX_NAMES[mb]
        );
    }

    fn ack(&mut self, kind: &'static str) {
        *self.stats.acked.entry(kind).or_default() += 1;
    }

    /// Apply an acknowledged operation.
    fn apply_ack(&mut self, intent: &Intent, ack: &[&str], round: u64) {
        let why = format!("round {round}, ack {ack:?} of {intent:?}");
        match *intent {
            Intent::Append { seq, code } => {
                assert_eq!(ack[0], "A", "{why}");
                assert_eq!(ack[1].parse::<u64>().unwrap(), seq, "{why}");
                let uid: u32 = ack[2].parse().unwrap();
                let guid: Guid = ack[3].parse().unwrap();
                assert_eq!(
                    guid,
                    self.guid(seq),
                    "{why}: acknowledged GUID is not the hash of the bytes"
                );
                assert!(
                    uid >= self.uidnext[INBOX],
                    "{why}: UID below UIDNEXT {}",
                    self.uidnext[INBOX]
                );
                self.remember(INBOX, uid, seq, &why);
                self.msgs[INBOX].insert(uid, Msg { seq, code });
                self.uidnext[INBOX] = uid + 1;
                self.ack("append");
            }
            Intent::Flags { mb, uid, code } => {
                assert_eq!(
                    ack[..],
                    ["F", ["i", "a"][mb], &uid.to_string(), &code.to_string()],
                    "{why}"
                );
                let m = self.msgs[mb].get_mut(&uid).unwrap_or_else(|| {
                    panic!("{why}: flags acknowledged on a message the model does not have")
                });
                m.code = code;
                self.ack("flags");
            }
            Intent::Copy { uid } => {
                assert_eq!(ack[..2], ["C", &uid.to_string()], "{why}");
                let new_uid: u32 = ack[2].parse().unwrap();
                let src = *self.msgs[INBOX]
                    .get(&uid)
                    .unwrap_or_else(|| panic!("{why}: copy of a message the model does not have"));
                assert!(
                    new_uid >= self.uidnext[ARCHIVE],
                    "{why}: UID below UIDNEXT {}",
                    self.uidnext[ARCHIVE]
                );
                self.remember(ARCHIVE, new_uid, src.seq, &why);
                self.msgs[ARCHIVE].insert(new_uid, src);
                self.uidnext[ARCHIVE] = new_uid + 1;
                self.ack("copy");
            }
            Intent::Expunge { mb, uid } => {
                assert_eq!(ack[..3], ["E", ["i", "a"][mb], &uid.to_string()], "{why}");
                let m = self.msgs[mb].get(&uid).copied();
                let m = m.unwrap_or_else(|| {
                    panic!("{why}: expunge of a message the model does not have")
                });
                assert!(
                    m.code & DELETED != 0,
                    "{why}: the model's message is not \\Deleted"
                );
                assert_eq!(
                    ack[3], "1",
                    "{why}: UID EXPUNGE of a \\Deleted message expunged nothing"
                );
                self.msgs[mb].remove(&uid);
                self.gone[mb].insert(uid);
                self.ack("expunge");
            }
        }
    }
}

fn parse_intent(words: &[&str]) -> Intent {
    let n = |i: usize| {
        words[i]
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("bad intent {words:?}"))
    };
    match words[0] {
        "A" => Intent::Append {
            seq: n(1),
            code: n(2) as u8,
        },
        "F" => Intent::Flags {
            mb: mb_index(words[1]),
            uid: n(2) as u32,
            code: n(3) as u8,
        },
        "C" => Intent::Copy { uid: n(1) as u32 },
        "E" => Intent::Expunge {
            mb: mb_index(words[1]),
            uid: n(2) as u32,
        },
        _ => panic!("unknown intent {words:?}"),
    }
}

/// Run one child until the kill; returns its complete stdout lines.
fn run_child(dir: &Path, seed: u64, round: u64, next_seq: u64, delay: Duration) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-torture"))
        .arg(dir)
        .args([seed.to_string(), round.to_string(), next_seq.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn store-torture");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = stderr.read_to_string(&mut buf);
        buf
    });
    std::thread::sleep(delay);
    // SIGKILL; fails only if the child is already gone, which the status shows.
    let _ = child.kill();
    let status = child.wait().expect("wait for store-torture");
    let out = out.join().unwrap().expect("read child stdout");
    let err = err.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "round {round}: store-torture ended by itself ({status}) instead of by our SIGKILL; stderr:\n{err}"
    );
    let text = String::from_utf8(out).expect("child output is UTF-8");
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    // The last piece is empty, or a line cut by the kill: never acted upon,
    // since an intent is flushed before the operation and an ack after it.
    lines.pop();
    lines
}

/// Reopen the slot after a kill and check it against the model.
fn check_round(model: &mut Model, dir: &Path, lines: &[String], round: u64) {
    // 1. Acknowledged operations.
    let mut pending: Option<Intent> = None;
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words[0] {
            "R" => model.stats.rounds_ready += 1,
            "I" => {
                assert!(
                    pending.is_none(),
                    "round {round}: two intents without an ack: {pending:?}, {line}"
                );
                let intent = parse_intent(&words[1..]);
                if let Intent::Append { seq, .. } = intent {
                    assert_eq!(
                        seq, model.next_seq,
                        "round {round}: sequence numbers do not continue"
                    );
                    model.next_seq = seq + 1;
                }
                pending = Some(intent);
            }
            "K" => {
                let intent = pending
                    .take()
                    .unwrap_or_else(|| panic!("round {round}: ack without intent: {line}"));
                model.apply_ack(&intent, &words[1..], round);
            }
            _ => panic!("round {round}: unexpected line from store-torture: {line:?}"),
        }
    }

    // 2. The slot as it is after the kill.
    let slot = Slot::open(dir, Options::default()).expect("reopen the slot after kill -9");
    let user = slot.user(USER).expect("open the user after kill -9");
    let mut found: [BTreeMap<u32, slotmail_store::MessageMeta>; 2] = Default::default();
    let uidnext_before = model.uidnext;
    for mb in [INBOX, ARCHIVE] {
        let (info, msgs) = user
            .snapshot(model.ids[mb])
            .expect("snapshot after kill -9");
        assert_eq!(
            info.uidvalidity, model.uidvalidity[mb],
            "round {round}: UIDVALIDITY of {} changed",
            info.name
        );
        assert!(
            info.uidnext >= model.uidnext[mb],
            "round {round}: UIDNEXT of {} went down from {} to {} (a UID may be reused)",
            info.name,
            model.uidnext[mb],
            info.uidnext
        );
        model.uidnext[mb] = info.uidnext;
        for m in msgs {
            assert!(
                m.uid < info.uidnext,
                "round {round}: {}:{} is not below UIDNEXT",
                info.name,
                m.uid
            );
            found[mb].insert(m.uid, m);
        }
    }
    assert!(
        tmp_is_empty(&user.dir().join("tmp")),
        "round {round}: tmp/ not emptied when the user was opened"
    );

    // 3. The one operation that may have been cut short: either outcome, whole.
    if let Some(intent) = pending {
        model.stats.interrupted += 1;
        let why = format!("round {round}: interrupted {intent:?}");
        let extra = |model: &Model, mb: usize| -> Vec<u32> {
            found[mb]
                .keys()
                .filter(|u| !model.msgs[mb].contains_key(u))
                .copied()
                .collect()
        };
        let committed = match intent {
            Intent::Append { seq, code } => match extra(model, INBOX)[..] {
                [] => false,
                [uid] => {
                    let m = &found[INBOX][&uid];
                    assert!(
                        uid >= uidnext_before[INBOX],
                        "{why}: appeared at a used UID {uid}"
                    );
                    assert_eq!(
                        m.guid,
                        model.guid(seq),
                        "{why}: a message appeared that is not the intended one"
                    );
                    assert_eq!(
                        code_of(&m.flags),
                        Some(code),
                        "{why}: appeared with other flags"
                    );
                    model.remember(INBOX, uid, seq, &why);
                    model.msgs[INBOX].insert(uid, Msg { seq, code });
                    true
                }
                ref more => panic!("{why}: several unacknowledged messages appeared: {more:?}"),
            },
            Intent::Flags { mb, uid, code } => {
                let m = found[mb]
                    .get(&uid)
                    .unwrap_or_else(|| panic!("{why}: the message vanished"));
                let now = code_of(&m.flags)
                    .unwrap_or_else(|| panic!("{why}: unexpected flags {:?}", m.flags));
                let before = model.msgs[mb][&uid].code;
                assert!(
                    now == before || now == code,
                    "{why}: flags are {now}, neither the last acknowledged {before} nor the intent"
                );
                model.msgs[mb].get_mut(&uid).unwrap().code = now;
                now == code && before != code
            }
            Intent::Copy { uid } => match extra(model, ARCHIVE)[..] {
                [] => false,
                [new_uid] => {
                    assert!(
                        new_uid >= uidnext_before[ARCHIVE],
                        "{why}: appeared at a used UID {new_uid}"
                    );
                    let src = model.msgs[INBOX][&uid];
                    let m = &found[ARCHIVE][&new_uid];
                    assert_eq!(
                        m.guid,
                        model.guid(src.seq),
                        "{why}: the copy has other content"
                    );
                    assert_eq!(
                        code_of(&m.flags),
                        Some(src.code),
                        "{why}: the copy has other flags"
                    );
                    model.remember(ARCHIVE, new_uid, src.seq, &why);
                    model.msgs[ARCHIVE].insert(new_uid, src);
                    true
                }
                ref more => panic!("{why}: several unacknowledged copies appeared: {more:?}"),
            },
            Intent::Expunge { mb, uid } => {
                if found[mb].contains_key(&uid) {
                    false
                } else {
                    let m = model.msgs[mb]
                        .remove(&uid)
                        .unwrap_or_else(|| panic!("{why}: not in the model"));
                    assert!(
                        m.code & DELETED != 0,
                        "{why}: a message without \\Deleted was expunged"
                    );
                    model.gone[mb].insert(uid);
                    true
                }
            }
        };
        if committed {
            model.stats.interrupted_committed += 1;
        }
    }

    // 4. Exactly the model: nothing acknowledged lost, nothing else appeared.
    for mb in [INBOX, ARCHIVE] {
        let have: Vec<u32> = found[mb].keys().copied().collect();
        let want: Vec<u32> = model.msgs[mb].keys().copied().collect();
        assert_eq!(
            have, want,
            "round {round}: UIDs in {} differ from the acknowledged ones",
            MAILBOX_NAMES[mb]
        );
        let max_ever = model.ever[mb].keys().next_back().copied().unwrap_or(0);
        assert!(
            model.uidnext[mb] > max_ever,
            "round {round}: UIDNEXT {} of {} is not above UID {max_ever} used before",
            model.uidnext[mb],
            MAILBOX_NAMES[mb]
        );
        for (uid, m) in &found[mb] {
            let want = model.msgs[mb][uid];
            let expected_guid = model.guid(want.seq);
            let why = format!(
                "round {round}: {}:{uid} (message {})",
                MAILBOX_NAMES[mb], want.seq
            );
            assert_eq!(m.guid, expected_guid, "{why}: other content");
            assert_eq!(
                code_of(&m.flags),
                Some(want.code),
                "{why}: flags {:?}",
                m.flags
            );
            let bytes = user
                .read_message(&m.guid, m.size)
                .unwrap_or_else(|e| panic!("{why}: read: {e}"));
            if model.compared[mb].insert(*uid) {
                assert!(
                    bytes == message(model.seed, want.seq),
                    "{why}: bytes differ from what was appended"
                );
            }
        }
    }
    let quota = user.quota().unwrap();
    let (count, bytes) = found
        .iter()
        .flat_map(|f| f.values())
        .fold((0, 0), |(c, b), m| (c + 1, b + m.size));
    assert_eq!(
        (quota.used_messages, quota.used_bytes),
        (count, bytes),
        "round {round}: quota counters disagree with the messages"
    );

    // 5. Scrub: no damage; leftovers only of interrupted writes of our messages.
    let report = slot.scrub(false);
    assert!(
        report.is_clean(),
        "round {round}: scrub found damage: {:#?}",
        report.damage().collect::<Vec<_>>()
    );
    for f in &report.findings {
        let guid: Guid = f
            .guid
            .as_deref()
            .unwrap_or_else(|| panic!("round {round}: garbage that is not a message file: {f}"))
            .parse()
            .unwrap();
        let ours = (0..model.next_seq).any(|seq| model.guid(seq) == guid);
        assert!(
            ours,
            "round {round}: unreferenced file that no operation wrote: {f}"
        );
    }
}

fn tmp_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[test]
fn kill_9_loses_nothing_acknowledged_and_leaves_nothing_half_written() {
    let seed = env_u64("SLOTMAIL_CRASH_SEED").unwrap_or_else(rand::random);
    let rounds = env_u64("SLOTMAIL_CRASH_ROUNDS").unwrap_or(60);
    // Shown by the test harness when the test fails.
    println!("crash test seed {seed}, {rounds} rounds (replay: SLOTMAIL_CRASH_SEED={seed})");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slot");

    let (ids, uidvalidity) = {
        let slot = Slot::open(&dir, Options::default()).unwrap();
        slot.create_user(USER, "torture", false).unwrap();
        let user = slot.user(USER).unwrap();
        let inbox = user.mailbox("INBOX").unwrap();
        let archive = user.mailbox("Archive").unwrap();
        (
            [inbox.id, archive.id],
            [inbox.uidvalidity, archive.uidvalidity],
        )
    };
    let mut model = Model {
        seed,
        ids,
        uidvalidity,
        uidnext: [1, 1],
        msgs: Default::default(),
        ever: Default::default(),
        gone: Default::default(),
        compared: Default::default(),
        guids: HashMap::new(),
        next_seq: 0,
        stats: Stats::default(),
    };
    let mut rng = Rng::new(seed);
    for round in 0..rounds {
        let delay = Duration::from_millis(5 + rng.below(146));
        let lines = run_child(&dir, seed, round, model.next_seq, delay);
        check_round(&mut model, &dir, &lines, round);
    }

    // Finally: repair removes the leftovers, and then there is nothing to report.
    let slot = Slot::open(&dir, Options::default()).unwrap();
    let repaired = slot.scrub(true);
    assert!(repaired.is_clean());
    let after = slot.scrub(false);
    assert!(
        after.findings.is_empty(),
        "after repair: {:#?}",
        after.findings
    );

    let s = &model.stats;
    println!(
        "crash test: {rounds} rounds in {:.1} s, {} reached the store, acknowledged {:?}, \
         {} interrupted ({} of those committed), {} messages at the end, {} leftover files removed",
        started.elapsed().as_secs_f64(),
        s.rounds_ready,
        s.acked,
        s.interrupted,
        s.interrupted_committed,
        model.msgs[0].len() + model.msgs[1].len(),
        repaired.removed,
    );
    // The run must have exercised what it claims to test.
    for kind in ["append", "flags", "copy"] {
        assert!(
            s.acked.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} was acknowledged in {rounds} rounds"
        );
    }
    assert!(s.interrupted > 0, "no kill interrupted an operation");
}
