//! The store benchmark: the mail store of one slot, no network, no IMAP.
//!
//! On a fresh slot directory it measures, one after the other:
//!
//! 1. **append**: every corpus message appended to one user's INBOX, one
//!    `User::append` call (one durable commit) each — fsync on, the store's
//!    only mode;
//! 2. **fetch**: `snapshot` of the INBOX, then `read_message` of every message
//!    (BLAKE3-verified by the store), each compared with the corpus bytes;
//! 3. **flags**: `store_flags +\Seen` one message per call (one commit each),
//!    then `+\Flagged` on all messages in one call;
//! 4. **select**: a second user's INBOX filled with `select_messages` small
//!    messages; the slot is dropped and reopened (the state of a new process)
//!    and `Slot::open` + `user` + `mailbox` + `snapshot` are timed ("cold":
//!    the page cache is warm, the process is new), then `snapshot` and
//!    `status` again ("warm").
//!
//! Besides, the CPU-only parts of an append (BLAKE3 and MIME analysis) are
//! timed on the corpus in memory, so the rest of the append time can be
//! attributed to the file system and SQLite.

use crate::machine::MachineFacts;
use crate::mbox::{self, MboxMessage};
use serde::Serialize;
use slotmail_store::{FlagOp, Flags, Guid, Options, Slot, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the select mailbox is filled (the fill itself is not the measurement:
/// opening and listing a mailbox reads index rows, never message files, so
/// both fills give the same thing to measure; `Copy` takes seconds where
/// `Append` takes minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectFill {
    /// One `append` per message: every message its own file and commit.
    Append,
    /// A few thousand distinct messages appended, the rest made by `copy`
    /// within the mailbox: the index has as many rows, the files are shared.
    Copy,
}

impl std::str::FromStr for SelectFill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "append" => Ok(SelectFill::Append),
            "copy" => Ok(SelectFill::Copy),
            _ => Err(format!("select fill is \"append\" or \"copy\", not {s:?}")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StoreBenchOptions {
    /// An mbox file (mboxrd), e.g. made by the corpus generator.
    pub corpus: PathBuf,
    /// Parent directory: a fresh slot directory is made inside it and
    /// removed afterwards (unless `keep`). Put it on the disk to measure.
    pub dir: PathBuf,
    /// Use only the first N corpus messages.
    pub limit: Option<usize>,
    /// Messages in the mailbox whose open/select is timed (0 skips it).
    pub select_messages: u32,
    /// How that mailbox is filled.
    pub select_fill: SelectFill,
    /// Repetitions of the warm measurements (the median is reported).
    pub warm_repeats: u32,
    /// Keep the slot directory.
    pub keep: bool,
}

impl StoreBenchOptions {
    /// The defaults for a corpus and a directory.
    pub fn new(corpus: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        StoreBenchOptions {
            corpus: corpus.into(),
            dir: dir.into(),
            limit: None,
            select_messages: 100_000,
            select_fill: SelectFill::Copy,
            warm_repeats: 5,
            keep: false,
        }
    }
}

/// Why the benchmark could not run (or found wrong data).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Corpus(#[from] mbox::MboxError),
    #[error("the corpus has no messages")]
    EmptyCorpus,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the slot: {0}")]
    Open(#[from] slotmail_store::OpenError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("verification failed: {0}")]
    Verify(String),
}

/// The corpus as used.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusFacts {
    pub path: String,
    pub messages: usize,
    /// Total bytes after CRLF conversion (what is stored).
    pub bytes: u64,
    pub median_bytes: u64,
    pub p90_bytes: u64,
    pub max_bytes: u64,
}

/// A rate: `count` operations (messages) of `bytes` in `seconds`.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// Messages processed.
    pub messages: u64,
    /// Store calls made (one per message, or one for all).
    pub calls: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub messages_per_s: f64,
    /// Decimal megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Latency of one call, when there is more than one.
    pub call_ms: Option<Latency>,
    /// Where the wall time went (Linux scheduler statistics of this thread).
    pub time: Option<TimeSplit>,
}

/// Wall time split by the scheduler's accounting of the benchmark thread
/// (`/proc/thread-self/schedstat`): on a CPU, runnable but waiting for a CPU
/// (other tenants), and neither — blocked, mostly in fsync and disk I/O.
#[derive(Debug, Clone, Serialize)]
pub struct TimeSplit {
    pub on_cpu_s: f64,
    pub waiting_for_cpu_s: f64,
    pub blocked_s: f64,
}

/// A reading of the scheduler's counters for the current thread.
#[derive(Debug, Clone, Copy)]
struct Sched {
    at: Instant,
    on_cpu_ns: u64,
    runqueue_ns: u64,
}

impl Sched {
    fn now() -> Option<Sched> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some(Sched {
            at: Instant::now(),
            on_cpu_ns: f.next()??,
            runqueue_ns: f.next()??,
        })
    }

    fn split_since(start: Option<Sched>) -> Option<TimeSplit> {
        let (start, end) = (start?, Sched::now()?);
        let wall = end.at.duration_since(start.at).as_secs_f64();
        let cpu = end.on_cpu_ns.saturating_sub(start.on_cpu_ns) as f64 / 1e9;
        let queue = end.runqueue_ns.saturating_sub(start.runqueue_ns) as f64 / 1e9;
        Some(TimeSplit {
            on_cpu_s: cpu,
            waiting_for_cpu_s: queue,
            blocked_s: (wall - cpu - queue).max(0.0),
        })
    }
}

/// Percentiles of call latency, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Rate {
    fn new(messages: u64, bytes: u64, total: Duration, calls: &[Duration]) -> Rate {
        let seconds = total.as_secs_f64();
        let per = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        Rate {
            messages,
            calls: calls.len().max(1) as u64,
            bytes,
            seconds,
            messages_per_s: per(messages as f64),
            mb_per_s: per(bytes as f64 / 1e6),
            call_ms: (calls.len() > 1).then(|| latency(calls)),
            time: None,
        }
    }

    fn with_time(mut self, start: Option<Sched>) -> Rate {
        self.time = Sched::split_since(start);
        self
    }
}

fn latency(calls: &[Duration]) -> Latency {
    let mut ms: Vec<f64> = calls.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// CPU-only work of an append, measured on the corpus in memory.
#[derive(Debug, Clone, Serialize)]
pub struct CpuCosts {
    /// BLAKE3 over every message (the GUID; also paid again by every read).
    pub blake3_seconds: f64,
    pub blake3_mb_per_s: f64,
    /// `slotmail_mime::analyze` + serialization of every message.
    pub analyze_seconds: f64,
    pub analyze_mb_per_s: f64,
}

/// Opening a slot and selecting a large mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct SelectReport {
    pub messages: u32,
    pub fill: SelectFill,
    /// Time to fill the mailbox (not a measurement of interest; for scale).
    pub fill_seconds: f64,
    /// Size of the user's index.db (+ WAL) after the fill.
    pub index_bytes: u64,
    /// A new process: `Slot::open`, `slot.user`, `user.mailbox("INBOX")`,
    /// `user.snapshot`, in that order; and their sum.
    pub cold: ColdSelect,
    /// `snapshot` again on the open user, median of the repeats.
    pub warm_snapshot_seconds: f64,
    /// `status` (the STATUS figures) on the open user, median.
    pub warm_status_seconds: f64,
    /// `claim_recent` (one commit; an IMAP SELECT makes it once).
    pub claim_recent_seconds: f64,
}

/// The parts of a cold select.
#[derive(Debug, Clone, Serialize)]
pub struct ColdSelect {
    pub open_slot_seconds: f64,
    pub open_user_seconds: f64,
    pub mailbox_seconds: f64,
    pub snapshot_seconds: f64,
    pub total_seconds: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBenchReport {
    pub machine: MachineFacts,
    pub corpus: CorpusFacts,
    pub cpu: CpuCosts,
    pub append: Rate,
    pub fetch: Rate,
    /// `+\Seen`, one message per call.
    pub flags_each: Rate,
    /// `+\Flagged`, all messages in one call.
    pub flags_all: Rate,
    pub select: Option<SelectReport>,
    /// Bytes under the slot directory after the corpus appends.
    pub slot_bytes_after_append: u64,
}

const USER: &str = "bench";
const SELECT_USER: &str = "select";
/// Distinct messages appended before copies, in `SelectFill::Copy`.
const COPY_FILL_DISTINCT: u32 = 2_000;

/// Run the store benchmark (see the module documentation).
pub fn run_store_bench(opts: &StoreBenchOptions) -> Result<StoreBenchReport, BenchError> {
    let mut corpus = mbox::read_mbox(&opts.corpus)?;
    if let Some(limit) = opts.limit {
        corpus.truncate(limit);
    }
    if corpus.is_empty() {
        return Err(BenchError::EmptyCorpus);
    }
    std::fs::create_dir_all(&opts.dir).map_err(io("create directory", &opts.dir))?;
    let root = fresh_dir(&opts.dir)?;
    let result = run_in(opts, &corpus, &root);
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn run_in(
    opts: &StoreBenchOptions,
    corpus: &[MboxMessage],
    root: &Path,
) -> Result<StoreBenchReport, BenchError> {
    let machine = MachineFacts::gather(root);
    let corpus_facts = corpus_facts(&opts.corpus, corpus);
    let cpu = cpu_costs(corpus);
    let total_bytes = corpus_facts.bytes;
    let n = corpus.len() as u64;

    let slot = Slot::open(root, Options::default())?;
    slot.create_user(USER, "bench-password", false)?;
    let user = slot.user(USER)?;
    let inbox = user.mailbox("INBOX")?.id;

    // (a) append
    let mut calls = Vec::with_capacity(corpus.len());
    let sched = Sched::now();
    let started = Instant::now();
    for m in corpus {
        let t = Instant::now();
        user.append(inbox, &m.raw, &Flags::empty(), m.date.map(|d| (d, 0)))?;
        calls.push(t.elapsed());
    }
    let append = Rate::new(n, total_bytes, started.elapsed(), &calls).with_time(sched);
    let slot_bytes_after_append = dir_bytes(root);

    // (b) fetch: the message list, then every body, verified by the store
    // (BLAKE3) and here (against the corpus).
    let mut calls = Vec::with_capacity(corpus.len());
    let mut fetched = Vec::with_capacity(corpus.len());
    let sched = Sched::now();
    let started = Instant::now();
    let (_, msgs) = user.snapshot(inbox)?;
    for m in &msgs {
        let t = Instant::now();
        let bytes = user.read_message(&m.guid, m.size)?;
        calls.push(t.elapsed());
        fetched.push(bytes);
    }
    let elapsed = started.elapsed();
    let fetch_time = Sched::split_since(sched);
    if msgs.len() != corpus.len() {
        return Err(BenchError::Verify(format!(
            "INBOX has {} messages, {} were appended",
            msgs.len(),
            corpus.len()
        )));
    }
    for (i, (got, want)) in fetched.iter().zip(corpus).enumerate() {
        if *got != want.raw {
            return Err(BenchError::Verify(format!(
                "message {} reads back different bytes",
                i + 1
            )));
        }
    }
    drop(fetched);
    let mut fetch = Rate::new(n, total_bytes, elapsed, &calls);
    fetch.time = fetch_time;

    // (c) flags
    let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
    let seen = Flags::from_names(["\\Seen"])?;
    let mut calls = Vec::with_capacity(uids.len());
    let sched = Sched::now();
    let started = Instant::now();
    for &uid in &uids {
        let t = Instant::now();
        let out = user.store_flags(inbox, &[uid], FlagOp::Add, &seen, None)?;
        calls.push(t.elapsed());
        if out.changed.len() != 1 {
            return Err(BenchError::Verify(format!(
                "+\\Seen on UID {uid} changed nothing"
            )));
        }
    }
    let flags_each = Rate::new(n, 0, started.elapsed(), &calls).with_time(sched);
    let flagged = Flags::from_names(["\\Flagged"])?;
    let started = Instant::now();
    let out = user.store_flags(inbox, &uids, FlagOp::Add, &flagged, None)?;
    let flags_all = Rate::new(n, 0, started.elapsed(), &[]);
    if out.changed.len() != uids.len() {
        return Err(BenchError::Verify(format!(
            "+\\Flagged on all changed {} of {}",
            out.changed.len(),
            uids.len()
        )));
    }
    drop(user);

    // (d) select
    let select = if opts.select_messages > 0 {
        slot.create_user(SELECT_USER, "bench-password", false)?;
        Some(select_bench(opts, slot, root)?)
    } else {
        None
    };

    Ok(StoreBenchReport {
        machine,
        corpus: corpus_facts,
        cpu,
        append,
        fetch,
        flags_each,
        flags_all,
        select,
        slot_bytes_after_append,
    })
}

/// A small message (566 to 581 bytes), distinct for every `i`.
pub fn small_message(i: u32) -> Vec<u8> {
    let day = i % 28 + 1;
    format!(
        "Return-Path: <sender{s}@example.org>\r\n\
         Received: from mx.example.org (mx.example.org [192.0.2.7])\r\n\tby mail.example.com with LMTP; \
         Mon, {day} Jan 2024 10:{m:02}:{sec:02} +0000\r\n\
         From: Sender {s} <sender{s}@example.org>\r\n\
         To: Bench User <bench@example.com>\r\n\
         Subject: Message number {i} of the select benchmark\r\n\
         Date: Mon, {day} Jan 2024 10:{m:02}:{sec:02} +0000\r\n\
         Message-ID: <{i}.select@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello,\r\n\r\nthis is message {i}. It is short, as most mail in a large mailbox is:\r\n\
         a notification, a reply, a line or two of text.\r\n\r\n-- \r\nSender {s}\r\n",
        s = i % 97,
        m = i / 60 % 60,
        sec = i % 60,
    )
    .into_bytes()
}

fn select_bench(
    opts: &StoreBenchOptions,
    slot: Slot,
    root: &Path,
) -> Result<SelectReport, BenchError> {
    let target = opts.select_messages;
    let user = slot.user(SELECT_USER)?;
    let inbox = user.mailbox("INBOX")?.id;
    let started = Instant::now();
    let distinct = match opts.select_fill {
        SelectFill::Append => target,
        SelectFill::Copy => COPY_FILL_DISTINCT,
    };
    fill_mailbox(&user, inbox, target, distinct)?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let index_bytes = ["index.db", "index.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(user.dir().join(f)).ok())
        .map(|m| m.len())
        .sum();
    drop(user);
    drop(slot);

    // Cold: everything a new process does before it can answer SELECT.
    let t = Instant::now();
    let slot = Slot::open(root, Options::default())?;
    let open_slot = t.elapsed();
    let t = Instant::now();
    let user = slot.user(SELECT_USER)?;
    let open_user = t.elapsed();
    let t = Instant::now();
    let mbox = user.mailbox("INBOX")?;
    let mailbox = t.elapsed();
    let t = Instant::now();
    let (_, msgs) = user.snapshot(mbox.id)?;
    let snapshot = t.elapsed();
    if msgs.len() != target as usize {
        return Err(BenchError::Verify(format!(
            "select mailbox has {} messages, expected {target}",
            msgs.len()
        )));
    }
    drop(msgs);
    let cold = ColdSelect {
        open_slot_seconds: open_slot.as_secs_f64(),
        open_user_seconds: open_user.as_secs_f64(),
        mailbox_seconds: mailbox.as_secs_f64(),
        snapshot_seconds: snapshot.as_secs_f64(),
        total_seconds: (open_slot + open_user + mailbox + snapshot).as_secs_f64(),
    };
    let t = Instant::now();
    user.claim_recent(mbox.id)?;
    let claim_recent_seconds = t.elapsed().as_secs_f64();

    let repeats = opts.warm_repeats.max(1);
    let mut snaps = Vec::new();
    let mut stats = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let (_, msgs) = user.snapshot(mbox.id)?;
        snaps.push(t.elapsed());
        drop(msgs);
        let t = Instant::now();
        let status = user.status(mbox.id)?;
        stats.push(t.elapsed());
        if status.messages != target {
            return Err(BenchError::Verify(format!(
                "STATUS says {} messages",
                status.messages
            )));
        }
    }
    Ok(SelectReport {
        messages: target,
        fill: opts.select_fill,
        fill_seconds,
        index_bytes,
        cold,
        warm_snapshot_seconds: median(&mut snaps),
        warm_status_seconds: median(&mut stats),
        claim_recent_seconds,
    })
}

/// Fill a mailbox with `target` small messages: `distinct` of them appended,
/// the rest copies (UIDs 1, 2, … copied again, doubling at most each round).
fn fill_mailbox(
    user: &slotmail_store::User,
    mailbox: i64,
    target: u32,
    distinct: u32,
) -> Result<(), BenchError> {
    let none = Flags::empty();
    let distinct = distinct.clamp(1, target.max(1)).min(target);
    for i in 0..distinct {
        user.append(
            mailbox,
            &small_message(i),
            &none,
            Some((1_704_103_200 + i64::from(i), 0)),
        )?;
    }
    let mut have = distinct;
    while have < target {
        let k = (target - have).min(have);
        let uids: Vec<u32> = (1..=k).collect();
        have += user.copy(mailbox, &uids, mailbox)?.pairs.len() as u32;
    }
    Ok(())
}

fn median(ds: &mut [Duration]) -> f64 {
    ds.sort();
    ds[ds.len() / 2].as_secs_f64()
}

fn cpu_costs(corpus: &[MboxMessage]) -> CpuCosts {
    let bytes: u64 = corpus.iter().map(|m| m.raw.len() as u64).sum();
    let t = Instant::now();
    let mut x = 0u8;
    for m in corpus {
        x ^= Guid::of(&m.raw).0[0];
    }
    let blake3 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut len = 0usize;
    for m in corpus {
        len += slotmail_mime::analyze(&m.raw).to_bytes().len();
    }
    let analyze = t.elapsed().as_secs_f64();
    std::hint::black_box((x, len));
    let rate = |s: f64| if s > 0.0 { bytes as f64 / 1e6 / s } else { 0.0 };
    CpuCosts {
        blake3_seconds: blake3,
        blake3_mb_per_s: rate(blake3),
        analyze_seconds: analyze,
        analyze_mb_per_s: rate(analyze),
    }
}

fn corpus_facts(path: &Path, corpus: &[MboxMessage]) -> CorpusFacts {
    let mut sizes: Vec<u64> = corpus.iter().map(|m| m.raw.len() as u64).collect();
    sizes.sort_unstable();
    CorpusFacts {
        path: path.display().to_string(),
        messages: sizes.len(),
        bytes: sizes.iter().sum(),
        median_bytes: sizes[sizes.len() / 2],
        p90_bytes: sizes[sizes.len() * 9 / 10],
        max_bytes: sizes[sizes.len() - 1],
    }
}

/// A new, empty directory under `parent`.
fn fresh_dir(parent: &Path) -> Result<PathBuf, BenchError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = parent.join(format!("slotmail-bench-{}-{nanos:09}", std::process::id()));
    std::fs::create_dir(&dir).map_err(io("create directory", &dir))?;
    Ok(dir)
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.to_path_buf();
    move |source| BenchError::Io { op, path, source }
}

impl StoreBenchReport {
    /// The human-readable table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} CPUs ({}), {} MiB, kernel {}, {} on {} ({}), {}",
            m.nproc,
            m.cpu.as_deref().unwrap_or("?"),
            m.memory_mib.unwrap_or(0),
            m.kernel.as_deref().unwrap_or("?"),
            m.filesystem.as_deref().unwrap_or("?"),
            m.device.as_deref().unwrap_or("?"),
            m.mount_point.as_deref().unwrap_or("?"),
            m.date
        );
        let c = &self.corpus;
        let _ = writeln!(
            s,
            "corpus: {} messages, {:.1} MB (CRLF), median {} B, p90 {} B, max {} B",
            c.messages,
            c.bytes as f64 / 1e6,
            c.median_bytes,
            c.p90_bytes,
            c.max_bytes
        );
        let _ = writeln!(
            s,
            "cpu only: BLAKE3 {:.0} MB/s ({:.3} s), MIME analyze {:.0} MB/s ({:.3} s)",
            self.cpu.blake3_mb_per_s,
            self.cpu.blake3_seconds,
            self.cpu.analyze_mb_per_s,
            self.cpu.analyze_seconds
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>9} {:>10} {:>9} {:>22}",
            "workload", "messages", "seconds", "msgs/s", "MB/s", "per call p50/p99/max ms"
        );
        for (name, r) in [
            ("append (fsync, 1 commit/msg)", &self.append),
            ("fetch all (verified)", &self.fetch),
            ("flags +\\Seen, 1 per call", &self.flags_each),
            ("flags +\\Flagged, all in 1", &self.flags_all),
        ] {
            let lat = r
                .call_ms
                .as_ref()
                .map(|l| format!("{:.2}/{:.2}/{:.1}", l.p50, l.p99, l.max))
                .unwrap_or_else(|| "-".into());
            let mbs = if r.bytes > 0 {
                format!("{:.1}", r.mb_per_s)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "{name:<28} {:>9} {:>9.3} {:>10.0} {:>9} {:>22}",
                r.messages, r.seconds, r.messages_per_s, mbs, lat
            );
        }
        let _ = writeln!(s);
        for (name, r) in [
            ("append", &self.append),
            ("fetch", &self.fetch),
            ("flags 1 per call", &self.flags_each),
        ] {
            if let Some(t) = &r.time {
                let _ = writeln!(
                    s,
                    "{name}: {:.3} s on CPU, {:.3} s waiting for a CPU, {:.3} s blocked (I/O, fsync)",
                    t.on_cpu_s, t.waiting_for_cpu_s, t.blocked_s
                );
            }
        }
        if let Some(sel) = &self.select {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "select: {} messages (fill by {:?}: {:.1} s, index {:.1} MB)",
                sel.messages,
                sel.fill,
                sel.fill_seconds,
                sel.index_bytes as f64 / 1e6
            );
            let c = &sel.cold;
            let _ = writeln!(
                s,
                "  cold (reopen slot): {:.1} ms = open slot {:.1} + open user {:.1} + mailbox {:.2} + snapshot {:.1}",
                c.total_seconds * 1e3,
                c.open_slot_seconds * 1e3,
                c.open_user_seconds * 1e3,
                c.mailbox_seconds * 1e3,
                c.snapshot_seconds * 1e3
            );
            let _ = writeln!(
                s,
                "  warm: snapshot {:.1} ms, status {:.2} ms (median); claim_recent {:.2} ms",
                sel.warm_snapshot_seconds * 1e3,
                sel.warm_status_seconds * 1e3,
                sel.claim_recent_seconds * 1e3
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_are_distinct_and_parse() {
        let a = small_message(1);
        let b = small_message(2);
        assert_ne!(a, b);
        assert!(a.len() > 500 && a.len() < 1000, "{}", a.len());
        assert!(!a.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[test]
    fn copy_fill_reaches_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::open(dir.path().join("slot"), Options::default()).unwrap();
        slot.create_user("u", "pw", false).unwrap();
        let user = slot.user("u").unwrap();
        let inbox = user.mailbox("INBOX").unwrap().id;
        fill_mailbox(&user, inbox, 11, 3).unwrap();
        let (_, msgs) = user.snapshot(inbox).unwrap();
        assert_eq!(msgs.len(), 11);
        assert_eq!(
            msgs.iter()
                .map(|m| m.guid)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
    }

    #[test]
    fn runs_end_to_end_on_a_tiny_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus.mbox");
        let mut mbox = Vec::new();
        for i in 0..5 {
            mbox.extend_from_slice(
                format!("From a@example.org Mon Jun  3 12:00:0{i} 2024\n").as_bytes(),
            );
            mbox.extend_from_slice(
                &small_message(i)
                    .into_iter()
                    .filter(|&b| b != b'\r')
                    .collect::<Vec<_>>(),
            );
            mbox.extend_from_slice(b">From quoted\n\n");
        }
        std::fs::write(&corpus, mbox).unwrap();
        for fill in [SelectFill::Append, SelectFill::Copy] {
            let mut opts = StoreBenchOptions::new(&corpus, dir.path().join("work"));
            opts.select_messages = 7;
            opts.select_fill = fill;
            opts.warm_repeats = 2;
            let report = run_store_bench(&opts).unwrap();
            assert_eq!(report.append.messages, 5);
            assert_eq!(report.fetch.bytes, report.corpus.bytes);
            assert_eq!(report.select.as_ref().unwrap().messages, 7);
            assert!(report.to_table().contains("append"));
            serde_json::to_string(&report).unwrap();
        }
        // Nothing left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("work")).unwrap().count(),
            0
        );
    }
}
