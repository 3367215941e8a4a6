//! Crash test of replication's batched body put (docs/storage.md, "Batch of
//! bodies"): `kill -9` at random moments while `store-torture bodies` puts
//! batches of bodies loses no acknowledged body, never leaves a content
//! record without its complete file, and commits a batch whole or not at
//! all.
//!
//! Every batch carries one body announced under the GUID of other bytes:
//! it must be refused while the rest of its batch is stored. After each
//! kill the slot is reopened in-process and checked: every body of an
//! acknowledged batch is held and reads back verified, no refused GUID is
//! held, the interrupted batch is all there or all absent, `tmp/` was
//! emptied, and scrub finds no damage (only unreferenced files of our own
//! bodies, which `scrub --repair` removes at the end).
//!
//! `SLOTMAIL_CRASH_SEED=<n>` replays a run; `SLOTMAIL_CRASH_ROUNDS=<n>` sets
//! the number of rounds (default 30).

#[allow(dead_code)]
#[path = "../src/bin/store-torture.rs"]
mod torture;

use slotmail_store::{Guid, Options, Slot, User};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use torture::{Rng, USER, message};

/// Run one child until the kill; returns its complete stdout lines.
fn run_child(dir: &Path, seed: u64, round: u64, next_seq: u64, delay: Duration) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-torture"))
        .arg(dir)
        .args([seed.to_string(), round.to_string(), next_seq.to_string()])
        .arg("bodies")
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
    // The last piece is empty or cut by the kill: never acted upon.
    lines.pop();
    lines
}

/// Whether the user holds body `seq` (content record), checking that a
/// held body reads back verified and equal to the message.
fn held(user: &User, seed: u64, seq: u64, why: &str) -> bool {
    let bytes = message(seed, seq);
    let guid = Guid::of(&bytes);
    match user.content_size(&guid).unwrap() {
        None => false,
        Some(size) => {
            assert_eq!(size, bytes.len() as u64, "{why}: body {seq} recorded size");
            let read = user
                .read_message(&guid, size)
                .unwrap_or_else(|e| panic!("{why}: body {seq} is recorded but unreadable: {e}"));
            assert!(read == bytes, "{why}: body {seq} reads back other bytes");
            true
        }
    }
}

#[test]
fn kill_9_during_batched_body_puts_loses_no_acknowledged_body() {
    let seed = std::env::var("SLOTMAIL_CRASH_SEED")
        .map(|v| v.parse::<u64>().expect("SLOTMAIL_CRASH_SEED is a number"))
        .unwrap_or_else(|_| rand::random());
    let rounds = std::env::var("SLOTMAIL_CRASH_ROUNDS")
        .map(|v| v.parse::<u64>().expect("SLOTMAIL_CRASH_ROUNDS is a number"))
        .unwrap_or(30);
    println!("batch crash test seed {seed}, {rounds} rounds (replay: SLOTMAIL_CRASH_SEED={seed})");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slot");
    {
        let slot = Slot::open(&dir, Options::default()).unwrap();
        slot.create_user(USER, "torture", false).unwrap();
    }
    let mut rng = Rng::new(seed);
    let mut next_seq = 0;
    // Every acknowledged batch: (first seq, count, index of the bad body).
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    let (mut interrupted, mut interrupted_committed) = (0u64, 0u64);
    let mut verified = 0;
    // GUID of message seq, computed once.
    let mut guids: Vec<Guid> = Vec::new();
    let guid_of = |guids: &mut Vec<Guid>, seq: u64| -> Guid {
        while guids.len() as u64 <= seq {
            guids.push(Guid::of(&message(seed, guids.len() as u64)));
        }
        guids[seq as usize]
    };
    for round in 0..rounds {
        let delay = Duration::from_millis(50 + rng.below(450));
        let lines = run_child(&dir, seed, round, next_seq, delay);
        let mut pending: Option<(u64, u64, u64)> = None;
        for line in &lines {
            let words: Vec<&str> = line.split(' ').collect();
            let nums = || -> (u64, u64, u64) {
                let n = |i: usize| words[i].parse::<u64>().unwrap();
                (n(2), n(3), n(4))
            };
            match (words[0], words.get(1)) {
                ("R", None) => {}
                ("I", Some(&"B")) => {
                    assert!(pending.is_none(), "round {round}: two intents: {line}");
                    let b = nums();
                    assert_eq!(
                        b.0, next_seq,
                        "round {round}: sequence numbers do not continue"
                    );
                    next_seq = b.0 + b.1;
                    pending = Some(b);
                }
                ("K", Some(&"B")) => {
                    let b = nums();
                    assert_eq!(
                        pending.take(),
                        Some(b),
                        "round {round}: ack without its intent"
                    );
                    acked.push(b);
                }
                _ => panic!("round {round}: unexpected line {line:?}"),
            }
        }

        let slot = Slot::open(&dir, Options::default()).expect("reopen after kill -9");
        let user = slot.user(USER).expect("open the user after kill -9");
        assert!(
            std::fs::read_dir(user.dir().join("tmp"))
                .unwrap()
                .next()
                .is_none(),
            "round {round}: tmp/ not emptied when the user was opened"
        );
        // Batches acknowledged before were read back in full once: now
        // their content records must still be there (and scrub below reads
        // every file again).
        for (k, &(first, n, bad)) in acked.iter().enumerate() {
            for i in 0..n {
                let why = format!("round {round}, acknowledged batch at {first}");
                let has = if k < verified {
                    user.content_size(&guid_of(&mut guids, first + i))
                        .unwrap()
                        .is_some()
                } else {
                    held(&user, seed, first + i, &why)
                };
                assert_eq!(has, i != bad, "{why}: body {i} (bad: {bad})");
            }
        }
        verified = acked.len();
        if let Some((first, n, bad)) = pending {
            interrupted += 1;
            let why = format!("round {round}, interrupted batch at {first}");
            let got: Vec<bool> = (0..n)
                .filter(|&i| i != bad)
                .map(|i| held(&user, seed, first + i, &why))
                .collect();
            assert!(
                got.iter().all(|&h| h) || got.iter().all(|&h| !h),
                "{why}: committed in part: {got:?}"
            );
            assert!(
                !held(&user, seed, first + bad, &why),
                "{why}: the refused body is held"
            );
            if got[0] {
                interrupted_committed += 1;
                acked.push((first, n, bad));
            }
        }
        let report = slot.scrub(false);
        assert!(
            report.is_clean(),
            "round {round}: scrub found damage: {:#?}",
            report.damage().collect::<Vec<_>>()
        );
        for s in 0..next_seq {
            guid_of(&mut guids, s);
        }
        for f in &report.findings {
            // A pack written before the kill and never committed: whole
            // (it is renamed into pack/ only once fsynced) and holding only
            // bodies some batch wrote.
            if let Some(id) = f.detail.strip_prefix("unreferenced pack file ") {
                let user = slot.user(USER).unwrap();
                let pack =
                    std::fs::read(user.dir().join("pack").join(format!("{id}.pack"))).unwrap();
                for guid in pack_entries(&pack) {
                    assert!(
                        guids.contains(&guid),
                        "round {round}: pack {id} holds a body no batch wrote: {guid}"
                    );
                }
                continue;
            }
            let guid: Guid = f
                .guid
                .as_deref()
                .unwrap_or_else(|| panic!("round {round}: garbage that is no message file: {f}"))
                .parse()
                .unwrap();
            assert!(
                guids.contains(&guid),
                "round {round}: unreferenced file that no batch wrote: {f}"
            );
        }
    }
    let slot = Slot::open(&dir, Options::default()).unwrap();
    assert!(slot.scrub(true).is_clean());
    let after = slot.scrub(false);
    assert!(
        after.findings.is_empty(),
        "after repair: {:#?}",
        after.findings
    );
    println!(
        "batch crash test: {} batches acknowledged, {interrupted} interrupted ({interrupted_committed} of those committed)",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "no batch was acknowledged in {rounds} rounds"
    );
    assert!(interrupted > 0, "no kill interrupted a batch");
}

/// The GUIDs of a pack file's entries (docs/storage.md, "Pack files"),
/// checking that each entry's bytes hash to its GUID and that the entries
/// end exactly at the end of the file.
fn pack_entries(pack: &[u8]) -> Vec<Guid> {
    assert_eq!(&pack[..16], b"slotmail-pack 1\n", "pack magic");
    let mut at = 16;
    let mut out = Vec::new();
    while at < pack.len() {
        let guid = Guid::from_slice(&pack[at..at + 32]).unwrap();
        let len = u64::from_le_bytes(pack[at + 32..at + 40].try_into().unwrap()) as usize;
        let body = &pack[at + 40..at + 40 + len];
        assert_eq!(Guid::of(body), guid, "pack entry at {at}");
        out.push(guid);
        at += 40 + len;
    }
    assert_eq!(at, pack.len(), "pack entries end at the end of the file");
    out
}
