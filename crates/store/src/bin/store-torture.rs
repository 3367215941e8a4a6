//! `store-torture`: the child process of `tests/crash.rs`.
//!
//! Usage: `store-torture <slot-dir> <seed> <round> <first-seq>`.
//!
//! Opens the slot, then loops forever doing store operations on the user
//! [`USER`] (appends to INBOX, flag changes, COPY from INBOX to Archive, UID
//! EXPUNGE of `\Deleted` messages) until it is killed. Before each operation
//! it prints and flushes an intent line, after the operation returned `Ok` an
//! acknowledgement line:
//!
//! ```text
//! R                                   ready (slot and user open)
//! I A <seq> <code>                    append message <seq> with flags <code>
//! K A <seq> <uid> <guid>
//! I F <mb> <uid> <code>               set the flags of <mb>:<uid> to <code>
//! K F <mb> <uid> <code>
//! I C <uid>                           copy INBOX:<uid> to Archive
//! K C <uid> <new-uid>
//! I E <mb> <uid>                      UID EXPUNGE <uid> in <mb>
//! K E <mb> <uid> <number expunged>
//! ```
//!
//! `<mb>` is `i` (INBOX) or `a` (Archive); `<code>` is a flag set encoded by
//! [`flags_of`]. Message bytes are a pure function of (seed, seq)
//! ([`message`]), so the parent recomputes them exactly. Any store error is
//! printed to stderr and ends the process with status 2: the parent expects
//! the process to die only by its SIGKILL.
//!
//!
//! With a fifth argument `bodies` it exercises replication's batched body
//! put instead (`tests/crash_batch.rs`): it loops over batches of bodies
//! given to `User::put_bodies`, one of each batch announced under the GUID
//! of other bytes ([`bad_bytes`]), and prints:
//!
//! ```text
//! I B <seq> <n> <bad>                 put messages <seq>..<seq+n>, the one at
//!                                     <seq+bad> with damaged bytes
//! K B <seq> <n> <bad>                 every good body stored, the bad one refused
//! ```
//!
//! The test includes this file as a module for the shared definitions.

use slotmail_store::{FlagOp, Flags, Options, Slot};
use std::collections::BTreeMap;
use std::io::Write;

/// The user the torture runs on (created by the parent).
pub const USER: &str = "torture";
/// Smallest and largest message, in bytes.
pub const SIZE_MIN: usize = 100;
pub const SIZE_MAX: usize = 200_000;
/// The keywords flag codes may carry (bits 5 and 6).
pub const KEYWORDS: [&str; 2] = ["$Work", "$Later"];

/// SplitMix64: small, deterministic forever (unlike `StdRng` across versions).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The size of message `seq`: log-uniform in `SIZE_MIN..=SIZE_MAX`, so most
/// are small and some are large.
pub fn message_size(seed: u64, seq: u64) -> usize {
    let mut rng = Rng::new(seed ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5151);
    let (lo, hi) = ((SIZE_MIN as f64).ln(), (SIZE_MAX as f64).ln());
    let size = (lo + rng.unit() * (hi - lo)).exp().round() as usize;
    size.clamp(SIZE_MIN, SIZE_MAX)
}

/// The exact bytes of message `seq`: a small header naming seed and seq (so
/// no two sequence numbers share content), then lines of pseudo-random
/// printable text, cut to `message_size(seed, seq)` bytes.
pub fn message(seed: u64, seq: u64) -> Vec<u8> {
    let size = message_size(seed, seq);
    let mut out =
        format!("From: torture@example.com\r\nSubject: seed {seed} seq {seq}\r\n\r\n").into_bytes();
    assert!(
        out.len() <= SIZE_MIN,
        "header longer than the smallest message"
    );
    out.reserve(size.saturating_sub(out.len()));
    let mut rng = Rng::new(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut column = 0;
    while out.len() < size {
        let word = rng.next_u64().to_le_bytes();
        for b in word {
            if column == 76 {
                out.extend_from_slice(b"\r\n");
                column = 0;
            }
            out.push(b'!' + b % 94);
            column += 1;
        }
    }
    out.truncate(size);
    out
}

/// The flags a code stands for: bits 0–4 are the system flags (`SEEN` …
/// `DRAFT`), bits 5 and 6 the keywords in `KEYWORDS`.
pub fn flags_of(code: u8) -> Flags {
    let mut flags = Flags::empty();
    flags.system = code & 0x1f;
    for (i, k) in KEYWORDS.iter().enumerate() {
        if code & (0x20 << i) != 0 {
            flags.insert(k).expect("valid keyword");
        }
    }
    flags
}

/// The code of a flag set, if it is one `flags_of` can produce.
pub fn code_of(flags: &Flags) -> Option<u8> {
    let mut code = flags.system;
    for (i, k) in KEYWORDS.iter().enumerate() {
        if flags.has_keyword(k) {
            code |= 0x20 << i;
        }
    }
    (flags_of(code) == *flags).then_some(code)
}

/// A random flag code: half the time none, else any combination.
pub fn random_code(rng: &mut Rng) -> u8 {
    if rng.below(2) == 0 {
        0
    } else {
        rng.below(128) as u8
    }
}

/// The damaged bytes a batch announces under message `seq`'s GUID: the
/// message with its last byte changed.
pub fn bad_bytes(seed: u64, seq: u64) -> Vec<u8> {
    let mut bytes = message(seed, seq);
    let last = bytes.last_mut().expect("messages are not empty");
    *last = if *last == b'x' { b'y' } else { b'x' };
    bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bodies = args.len() == 6 && args[5] == "bodies";
    if args.len() != 5 && !bodies {
        eprintln!("usage: store-torture <slot-dir> <seed> <round> <first-seq> [bodies]");
        std::process::exit(64);
    }
    let parse = |s: &str| {
        s.parse::<u64>().unwrap_or_else(|_| {
            eprintln!("not a number: {s}");
            std::process::exit(64)
        })
    };
    let (dir, seed, round, first) = (&args[1], parse(&args[2]), parse(&args[3]), parse(&args[4]));
    let result = if bodies {
        run_bodies(dir, seed, round, first)
    } else {
        run(dir, seed, round, first)
    };
    if let Err(e) = result {
        eprintln!("store-torture: {e}");
        std::process::exit(2);
    }
}

/// Describe an error by the step that failed.
fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The `bodies` mode: batches of bodies through `User::put_bodies`.
fn run_bodies(dir: &str, seed: u64, round: u64, first_seq: u64) -> Result<(), String> {
    let slot = Slot::open(dir, Options::default()).map_err(ctx("open slot"))?;
    let user = slot.user(USER).map_err(ctx("open user"))?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    say("R".into())?;
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x6264);
    let mut seq = first_seq;
    loop {
        // Small batches (each file fsynced in turn) and large ones (one
        // pack file).
        let pack_min = slotmail_store::PACK_MIN as u64;
        let n = if rng.below(2) == 0 {
            2 + rng.below(pack_min - 2)
        } else {
            pack_min + rng.below(64)
        };
        let bad = rng.below(n);
        let owned: Vec<(slotmail_store::Guid, Vec<u8>)> = (seq..seq + n)
            .map(|s| {
                let good = message(seed, s);
                let guid = slotmail_store::Guid::of(&good);
                (
                    guid,
                    if s == seq + bad {
                        bad_bytes(seed, s)
                    } else {
                        good
                    },
                )
            })
            .collect();
        let batch: Vec<(slotmail_store::Guid, &[u8])> =
            owned.iter().map(|(g, b)| (*g, b.as_slice())).collect();
        say(format!("I B {seq} {n} {bad}"))?;
        let verdicts = user.put_bodies(&batch).map_err(ctx("put bodies"))?;
        for (i, v) in verdicts.iter().enumerate() {
            if v.is_ok() == (i as u64 == bad) {
                return Err(format!("batch at {seq}: body {i} answered {v:?}"));
            }
        }
        say(format!("K B {seq} {n} {bad}"))?;
        seq += n;
    }
}

fn run(dir: &str, seed: u64, round: u64, first_seq: u64) -> Result<(), String> {
    let slot = Slot::open(dir, Options::default()).map_err(ctx("open slot"))?;
    let user = slot.user(USER).map_err(ctx("open user"))?;
    let ids = [
        user.mailbox("INBOX").map_err(ctx("INBOX"))?.id,
        user.mailbox("Archive").map_err(ctx("Archive"))?.id,
    ];
    const NAMES: [&str; 2] = ["i", "a"];
    // What this process believes each mailbox holds: UID -> flag code.
    let mut state: [BTreeMap<u32, u8>; 2] = Default::default();
    for (mb, id) in ids.iter().enumerate() {
        let (_, msgs) = user.snapshot(*id).map_err(ctx("snapshot"))?;
        for m in msgs {
            let code =
                code_of(&m.flags).ok_or_else(|| format!("unexpected flags {:?}", m.flags))?;
            state[mb].insert(m.uid, code);
        }
    }
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    say("R".into())?;
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x7073);
    let mut seq = first_seq;
    let pick = |rng: &mut Rng, m: &BTreeMap<u32, u8>| -> Option<u32> {
        (!m.is_empty()).then(|| {
            *m.keys()
                .nth(rng.below(m.len() as u64) as usize)
                .expect("in range")
        })
    };
    loop {
        let r = rng.below(100);
        let total = state[0].len() + state[1].len();
        if r < 45 || total == 0 {
            let code = random_code(&mut rng);
            let bytes = message(seed, seq);
            say(format!("I A {seq} {code}"))?;
            let done = user
                .append(ids[0], &bytes, &flags_of(code), None)
                .map_err(ctx("append"))?;
            say(format!("K A {seq} {} {}", done.uid, done.guid))?;
            state[0].insert(done.uid, code);
            seq += 1;
        } else if r < 80 {
            let mb = if state[1].is_empty() || (rng.below(3) != 0 && !state[0].is_empty()) {
                0
            } else {
                1
            };
            let uid = pick(&mut rng, &state[mb]).expect("mailbox not empty");
            let code = random_code(&mut rng);
            say(format!("I F {} {uid} {code}", NAMES[mb]))?;
            let done = user
                .store_flags(ids[mb], &[uid], FlagOp::Set, &flags_of(code), None)
                .map_err(ctx("store flags"))?;
            if done.changed.len() + done.unchanged.len() != 1 {
                return Err(format!(
                    "store flags on {}:{uid} did not find it: {done:?}",
                    NAMES[mb]
                ));
            }
            say(format!("K F {} {uid} {code}", NAMES[mb]))?;
            state[mb].insert(uid, code);
        } else if r < 92 {
            let Some(uid) = pick(&mut rng, &state[0]) else {
                continue;
            };
            say(format!("I C {uid}"))?;
            let done = user.copy(ids[0], &[uid], ids[1]).map_err(ctx("copy"))?;
            let [(src, new_uid)] = done.pairs[..] else {
                return Err(format!("copy of INBOX:{uid} gave {done:?}"));
            };
            if src != uid {
                return Err(format!("copy of INBOX:{uid} gave {done:?}"));
            }
            say(format!("K C {uid} {new_uid}"))?;
            let code = state[0][&uid];
            state[1].insert(new_uid, code);
        } else {
            let deleted: Vec<(usize, u32)> = (0..2)
                .flat_map(|mb| {
                    state[mb]
                        .iter()
                        .filter(|(_, c)| **c & slotmail_store::DELETED != 0)
                        .map(move |(u, _)| (mb, *u))
                })
                .collect();
            if deleted.is_empty() {
                continue;
            }
            let (mb, uid) = deleted[rng.below(deleted.len() as u64) as usize];
            say(format!("I E {} {uid}", NAMES[mb]))?;
            let done = user
                .expunge(ids[mb], Some(&[uid]))
                .map_err(ctx("expunge"))?;
            say(format!("K E {} {uid} {}", NAMES[mb], done.len()))?;
            if done != [uid] {
                return Err(format!("UID EXPUNGE {}:{uid} expunged {done:?}", NAMES[mb]));
            }
            state[mb].remove(&uid);
        }
    }
}
