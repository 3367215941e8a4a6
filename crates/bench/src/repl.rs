//! The replication benchmark (`slotmail bench repl`; `docs/benchmarks.md`,
//! "Replication"; `bench/repl-vs-cyrus.sh` runs the same client-side
//! method against Cyrus's rolling replication).
//!
//! Everything is measured from the outside, as a client sees it: an action
//! on the master over IMAP (or LMTP), acknowledged, then the moment the
//! replica shows it over IMAP.
//!
//! # Where the servers come from
//!
//! - **Managed** (the default): the benchmark creates a master slot and a
//!   replica slot in its own directory, each a separate `slotmail slot run`
//!   process on its own loopback address (127.0.0.1 and 127.0.0.2), with a
//!   `[sync]` section and a fresh cluster secret, and stops both by PID at
//!   the end.
//! - **External** (`master_imap` and `replica_imap` given): any pair of IMAP
//!   servers with replication running between them, users and passwords
//!   already set up; the full sync is started by a command
//!   (`full_sync_command`).
//!
//! # Phases
//!
//! 1. **Full sync** ([`FullSyncReport`]): `full_sync_messages` messages are
//!    appended to the full-sync user's INBOX on the master while no replica
//!    runs; then (managed) the master is stopped, the empty replica started,
//!    and the clock starts when the master process is spawned; (external)
//!    the clock starts when `full_sync_command` is spawned. It stops when
//!    the replica's `STATUS INBOX (MESSAGES)`, polled every
//!    [`FULL_SYNC_POLL`], reaches the count. Then both sides'
//!    `UID FETCH 1:* (UID RFC822.SIZE)` must be equal.
//! 2. **Lag, idle** ([`LagPhase`]): per kind of change, `samples` times: a
//!    random pause of 0..`pause_max`, the change on the master, timed from
//!    its tagged OK to the replica showing it:
//!    - `append`: APPEND to INBOX → `* n EXISTS` on the replica's IDLE
//!      connection (INBOX examined), confirmed by `UID FETCH uid (UID)`;
//!    - `flags`: `UID STORE uid +FLAGS (\Flagged)` (then `-FLAGS` at the
//!      next sample) → `* n FETCH (FLAGS …)` on the IDLE connection,
//!      confirmed by `UID FETCH uid (FLAGS)`;
//!    - `expunge`: `UID STORE uid +FLAGS.SILENT (\Deleted)` and
//!      `UID EXPUNGE uid`, timed from the EXPUNGE's OK → `* n EXPUNGE` (or
//!      VANISHED), confirmed by an empty `UID FETCH uid (UID)`;
//!    - `create`, `rename`: CREATE (RENAME) of a mailbox → IMAP has no
//!      event for mailboxes, so `LIST "" "<name pattern>"` is polled on a
//!      second replica connection every [`POLL_PAUSE`].
//!
//!    The lag of a sample is taken when the event arrives (the replica has
//!    committed the change); `confirm` is taken after the confirming FETCH
//!    (one more round trip, an upper bound). With `watch = poll`, IDLE is
//!    not used: `NOOP` and the confirming FETCH are polled every
//!    [`POLL_PAUSE`] instead (for servers whose IDLE does not see
//!    replicated changes).
//! 3. **Lag under load**: the same, while the IMAP load generator
//!    ([`crate::imap`], imaptest's default mix) runs against the master with
//!    `load_clients` clients on users `load_user_pattern` 1..=`load_users`,
//!    on a runtime thread of its own.
//! 4. **Burst** ([`BurstReport`]): `burst_messages` LMTP deliveries to the
//!    burst user over one LMTP session, as fast as the master takes them,
//!    while a replica connection polls `STATUS INBOX (MESSAGES)` every
//!    [`FULL_SYNC_POLL`]; reported: how long after the last delivery's 250
//!    the replica held them all, confirmed by `UID FETCH 1:* (UID)`.
//!
//! Messages are the corpus messages of at most `message_max_bytes` (an
//! mbox), cycled, or synthetic messages of `synthetic_bytes` bytes; every
//! message sent gets a unique `X-Bench-Id` header first, so no two are
//! byte-identical (a content-addressed store would otherwise keep one).

use crate::imap::{ImapBenchMode, ImapBenchOptions, proc, run_imap_bench};
use crate::machine::MachineFacts;
use crate::mbox::{MboxError, read_mbox};
use serde::Serialize;
use slotmail_imap_client::{
    Client, ClientOptions, Data, Error as ImapError, Flag, Response, SequenceSet, StatusItem,
};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pause between two polls of a replica (LIST for mailboxes, NOOP + FETCH in
/// poll mode): short enough to add little to a lag, long enough not to take
/// a core of a two-core machine from the servers.
pub const POLL_PAUSE: Duration = Duration::from_millis(1);
/// Pause between two STATUS polls while a full sync runs.
pub const FULL_SYNC_POLL: Duration = Duration::from_millis(5);
/// Longest one lag sample may take; a sample that takes longer is recorded
/// as this long and counted as timed out.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// While watching with IDLE, after this long without the expected event
/// the replica is checked with a FETCH anyway (a server that does not
/// announce replicated changes still yields a bounded, if coarse, sample).
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// Longest the replica may take to hold the burst or the full sync.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest a slot may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a slot may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Password of every user the managed setup creates.
pub const MANAGED_PASSWORD: &str = "pw";

/// A kind of change whose lag is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Append,
    Flags,
    Expunge,
    Create,
    Rename,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 5] = [
        ChangeKind::Append,
        ChangeKind::Flags,
        ChangeKind::Expunge,
        ChangeKind::Create,
        ChangeKind::Rename,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Append => "append",
            ChangeKind::Flags => "flags",
            ChangeKind::Expunge => "expunge",
            ChangeKind::Create => "create",
            ChangeKind::Rename => "rename",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ChangeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown change kind {s:?} (append, flags, expunge, create, rename)")
            })
    }
}

/// How the replica is watched for messages and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Watch {
    /// IDLE on the examined INBOX; confirmed by a FETCH.
    Idle,
    /// NOOP + FETCH every [`POLL_PAUSE`].
    Poll,
}

impl std::str::FromStr for Watch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "idle" => Ok(Watch::Idle),
            "poll" => Ok(Watch::Poll),
            _ => Err(format!("unknown watch mode {s:?} (idle or poll)")),
        }
    }
}

/// Options of [`run_repl_bench`].
#[derive(Debug, Clone)]
pub struct ReplBenchOptions {
    /// Where the managed slots (and the synthetic corpus) live.
    pub dir: PathBuf,
    /// The `slotmail` binary that runs the managed slots.
    pub slotmail: PathBuf,
    /// Loopback addresses of the managed master and replica.
    pub master_ip: String,
    pub replica_ip: String,
    /// External servers: IMAP of the master and the replica (both or none).
    pub master_imap: Option<String>,
    pub replica_imap: Option<String>,
    /// External: the master's LMTP (for the burst).
    pub master_lmtp: Option<String>,
    /// External: the IMAP of the replica the full sync fills (default: the
    /// replica).
    pub full_sync_replica_imap: Option<String>,
    /// External: the command (`sh -c`) that runs the full sync.
    pub full_sync_command: Option<String>,
    /// Password of every user.
    pub password: String,
    pub lag_user: String,
    pub burst_user: String,
    pub full_user: String,
    /// Load users: `%d` is replaced by 1..=load_users.
    pub load_user_pattern: String,
    pub load_users: u32,
    /// LMTP recipient of the burst; `%u` is the burst user.
    pub lmtp_rcpt: String,
    /// Prefix of the mailboxes the create and rename samples make.
    pub mailbox_prefix: String,
    /// The corpus (mbox); `None`: synthetic messages.
    pub corpus: Option<PathBuf>,
    /// Size of a synthetic message, bytes.
    pub synthetic_bytes: usize,
    /// Corpus messages larger than this are not used.
    pub message_max_bytes: usize,
    /// Samples per kind of change and phase.
    pub samples: usize,
    pub kinds: Vec<ChangeKind>,
    /// Random pause before each sample: 0..pause_max.
    pub pause_max: Duration,
    pub watch: Watch,
    /// Measure lag without load.
    pub lag_idle: bool,
    /// Clients of the load generator for the lag-under-load phase (0: no
    /// such phase).
    pub load_clients: usize,
    /// Messages of the burst (0: no burst).
    pub burst_messages: u32,
    /// Messages of the full sync (0: no full sync).
    pub full_sync_messages: u32,
    /// Fill the full-sync user only (external): no timing.
    pub fill_only: bool,
    /// IMAP connections of the fill (each appends its share in order).
    pub fill_connections: usize,
    /// Seed of the pauses.
    pub seed: u64,
}

impl ReplBenchOptions {
    /// Defaults: managed slots in `dir`, synthetic 2.3 KB messages, 200
    /// samples of every kind, idle and under 10 clients of load, a burst and
    /// a full sync of 10,000 messages.
    pub fn new(dir: PathBuf, slotmail: PathBuf) -> Self {
        ReplBenchOptions {
            dir,
            slotmail,
            master_ip: "127.0.0.1".into(),
            replica_ip: "127.0.0.2".into(),
            master_imap: None,
            replica_imap: None,
            master_lmtp: None,
            full_sync_replica_imap: None,
            full_sync_command: None,
            password: MANAGED_PASSWORD.into(),
            lag_user: "lag".into(),
            burst_user: "burst".into(),
            full_user: "full".into(),
            load_user_pattern: "u%d".into(),
            load_users: 20,
            lmtp_rcpt: "%u@bench.test".into(),
            mailbox_prefix: String::new(),
            corpus: None,
            synthetic_bytes: 2300,
            message_max_bytes: 100 * 1024,
            samples: 200,
            kinds: ChangeKind::ALL.to_vec(),
            pause_max: Duration::from_millis(200),
            watch: Watch::Idle,
            lag_idle: true,
            load_clients: 10,
            burst_messages: 10_000,
            full_sync_messages: 10_000,
            fill_only: false,
            fill_connections: 1,
            seed: 1,
        }
    }

    fn managed(&self) -> bool {
        self.master_imap.is_none()
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplBenchError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("corpus: {0}")]
    Corpus(#[from] MboxError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} ({addr}): {source}")]
    Imap {
        what: String,
        addr: String,
        #[source]
        source: Box<ImapError>,
    },
    #[error("{0}")]
    Failed(String),
}

type Result<T, E = ReplBenchError> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReplBenchError {
    let what = what.into();
    move |source| ReplBenchError::Io { what, source }
}

fn imap_err(what: &str, addr: &str) -> impl FnOnce(ImapError) -> ReplBenchError {
    let (what, addr) = (what.to_string(), addr.to_string());
    move |e| ReplBenchError::Imap {
        what,
        addr,
        source: Box::new(e),
    }
}

// ------------------------------------------------------------------ report

/// Lag of one kind of change.
#[derive(Debug, Clone, Serialize)]
pub struct LagStats {
    pub kind: ChangeKind,
    /// Samples taken.
    pub n: usize,
    /// Samples that reached [`SAMPLE_TIMEOUT`] (counted at that value).
    pub timeouts: usize,
    /// Samples whose event did not come within the IDLE recheck interval
    /// and that were found by the fallback FETCH instead.
    pub found_by_recheck: usize,
    /// How the replica was watched: `idle`, `poll` or `list-poll`.
    pub watch: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    /// The same up to the confirming FETCH (or LIST).
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    /// Every sample, ms, in the order taken.
    pub samples_ms: Vec<f64>,
}

/// The load generator's figures during a lag phase.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub clients: usize,
    pub users: u32,
    pub secs: f64,
    pub sessions_per_s: f64,
    pub commands_per_s: f64,
    pub appends_per_s: f64,
    pub errors: u64,
    /// Whole-machine CPU busy during the load, percent of all cores.
    pub machine_busy_pct: f64,
}

/// Lag of every kind of change, idle or under load.
#[derive(Debug, Clone, Serialize)]
pub struct LagPhase {
    pub under_load: bool,
    pub kinds: Vec<LagStats>,
    pub load: Option<LoadSummary>,
    pub secs: f64,
}

/// The 10,000-message burst.
#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    pub messages: u32,
    pub bytes: u64,
    /// First delivery sent to last 250.
    pub deliver_secs: f64,
    pub deliver_per_s: f64,
    /// Last 250 to the replica holding every message (`EXISTS` reached the
    /// count); negative when the replica was complete first.
    pub complete_after_last_ms: f64,
    /// First delivery sent to the replica holding every message.
    pub complete_after_first_secs: f64,
    /// The replica's `UID FETCH 1:*` count after the burst.
    pub replica_messages: u64,
}

/// Full sync of one user into an empty replica.
#[derive(Debug, Clone, Serialize)]
pub struct FullSyncReport {
    pub messages: u32,
    /// Sum of RFC822.SIZE on the master.
    pub bytes: u64,
    /// Appending them to the master (no replica running).
    pub fill_secs: f64,
    pub fill_per_s: f64,
    /// Start (master spawned / command spawned) to replica complete.
    pub sync_secs: f64,
    pub messages_per_s: f64,
    pub mb_per_s: f64,
    /// Managed: of `sync_secs`, until the master's IMAP port accepted.
    pub master_start_secs: Option<f64>,
    /// Managed: CPU seconds of the master and the replica over the sync.
    pub master_cpu_s: Option<f64>,
    pub replica_cpu_s: Option<f64>,
    /// Both sides' (UID, RFC822.SIZE) lists were equal.
    pub verified: bool,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplBenchReport {
    pub machine: MachineFacts,
    /// `managed` (slotmail slots started here) or `external`.
    pub setup: &'static str,
    pub master: String,
    pub replica: String,
    /// Where the messages came from and their sizes.
    pub messages: String,
    pub pause_max_ms: f64,
    pub full_sync: Option<FullSyncReport>,
    pub lag: Vec<LagPhase>,
    pub burst: Option<BurstReport>,
}

impl ReplBenchReport {
    /// The report as a plain-text table.
    pub fn to_table(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "replication bench ({}), master {} → replica {}, {}",
            self.setup, self.master, self.replica, m.date
        );
        let _ = writeln!(
            s,
            "machine: {} CPUs {}, {} MiB, kernel {}, {} on {}",
            m.nproc,
            m.cpu.as_deref().unwrap_or("?"),
            m.memory_mib.unwrap_or(0),
            m.kernel.as_deref().unwrap_or("?"),
            m.filesystem.as_deref().unwrap_or("?"),
            m.device.as_deref().unwrap_or("?")
        );
        let _ = writeln!(s, "messages: {}", self.messages);
        if let Some(f) = &self.full_sync {
            let _ = writeln!(
                s,
                "full sync: {} messages, {:.1} MB in {:.3} s = {:.0} msg/s, {:.1} MB/s{}{} (fill {:.1} s, {:.0} msg/s; verified: {})",
                f.messages,
                f.bytes as f64 / 1e6,
                f.sync_secs,
                f.messages_per_s,
                f.mb_per_s,
                f.master_start_secs
                    .map(|x| format!(", master start-up {:.0} ms", x * 1000.0))
                    .unwrap_or_default(),
                match (f.master_cpu_s, f.replica_cpu_s) {
                    (Some(a), Some(b)) => format!(", CPU master {a:.2} s replica {b:.2} s"),
                    _ => String::new(),
                },
                f.fill_secs,
                f.fill_per_s,
                f.verified
            );
        }
        for phase in &self.lag {
            let _ = writeln!(
                s,
                "lag, {} ({:.0} s), pause 0–{:.0} ms before each sample:",
                if phase.under_load {
                    "under load"
                } else {
                    "idle"
                },
                phase.secs,
                self.pause_max_ms
            );
            if let Some(l) = &phase.load {
                let _ = writeln!(
                    s,
                    "  load: {} clients on {} users, {:.0} sessions/s, {:.0} commands/s, {:.0} APPENDs/s, {} errors, machine {:.0} % busy",
                    l.clients,
                    l.users,
                    l.sessions_per_s,
                    l.commands_per_s,
                    l.appends_per_s,
                    l.errors,
                    l.machine_busy_pct
                );
            }
            let _ = writeln!(
                s,
                "  {:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>6} {:>8}  watch",
                "kind",
                "n",
                "p50 ms",
                "p99 ms",
                "max ms",
                "min ms",
                "conf p50",
                "conf p99",
                "t/o",
                "recheck"
            );
            for k in &phase.kinds {
                let _ = writeln!(
                    s,
                    "  {:<8} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>12.2} {:>12.2} {:>6} {:>8}  {}",
                    k.kind.name(),
                    k.n,
                    k.p50_ms,
                    k.p99_ms,
                    k.max_ms,
                    k.min_ms,
                    k.confirm_p50_ms,
                    k.confirm_p99_ms,
                    k.timeouts,
                    k.found_by_recheck,
                    k.watch
                );
            }
        }
        if let Some(b) = &self.burst {
            let _ = writeln!(
                s,
                "burst: {} LMTP deliveries ({:.1} MB) in {:.2} s = {:.0} msg/s; replica complete {:.1} ms after the last 250 ({:.2} s after the first delivery); replica holds {}",
                b.messages,
                b.bytes as f64 / 1e6,
                b.deliver_secs,
                b.deliver_per_s,
                b.complete_after_last_ms,
                b.complete_after_first_secs,
                b.replica_messages
            );
        }
        s
    }
}

fn stats(
    kind: ChangeKind,
    watch: &'static str,
    samples: &[Sample],
    timeouts: usize,
    rechecks: usize,
) -> LagStats {
    let lag: Vec<f64> = samples.iter().map(|s| s.lag_ms).collect();
    let confirm: Vec<f64> = samples.iter().map(|s| s.confirm_ms).collect();
    let (p50, p99, max, min, mean) = summary(&lag);
    let (c50, c99, ..) = summary(&confirm);
    LagStats {
        kind,
        n: samples.len(),
        timeouts,
        found_by_recheck: rechecks,
        watch,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        min_ms: min,
        mean_ms: mean,
        confirm_p50_ms: c50,
        confirm_p99_ms: c99,
        samples_ms: lag,
    }
}

/// (p50, p99, max, min, mean) by nearest rank; zeros when empty.
pub fn summary(v: &[f64]) -> (f64, f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (
        rank(0.50),
        rank(0.99),
        s[s.len() - 1],
        s[0],
        s.iter().sum::<f64>() / s.len() as f64,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------- messages

/// The messages the benchmark sends, each made unique when taken.
struct Messages {
    bodies: Vec<Vec<u8>>,
    next: usize,
    /// Distinguishes this run's messages from an earlier run's.
    run: String,
}

impl Messages {
    fn load(opts: &ReplBenchOptions) -> Result<Messages> {
        let run = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        let bodies = match &opts.corpus {
            Some(path) => {
                let all = read_mbox(path)?;
                let bodies: Vec<Vec<u8>> = all
                    .into_iter()
                    .map(|m| m.raw)
                    .filter(|r| r.len() <= opts.message_max_bytes)
                    .collect();
                if bodies.is_empty() {
                    return Err(ReplBenchError::Options(format!(
                        "the corpus {} holds no message of at most {} bytes",
                        path.display(),
                        opts.message_max_bytes
                    )));
                }
                bodies
            }
            None => vec![synthetic(opts.synthetic_bytes)],
        };
        Ok(Messages {
            bodies,
            next: 0,
            run,
        })
    }

    fn describe(&self, opts: &ReplBenchOptions) -> String {
        let total: usize = self.bodies.iter().map(Vec::len).sum();
        match &opts.corpus {
            Some(p) => format!(
                "corpus {} ({} messages of at most {} bytes, mean {:.1} KB), cycled, each with a unique X-Bench-Id header",
                p.file_name().unwrap_or_default().to_string_lossy(),
                self.bodies.len(),
                opts.message_max_bytes,
                total as f64 / self.bodies.len() as f64 / 1000.0
            ),
            None => format!(
                "synthetic, {} bytes each, with a unique X-Bench-Id header",
                opts.synthetic_bytes
            ),
        }
    }

    /// The next message, with a header that makes it unique.
    fn take(&mut self, tag: &str) -> Vec<u8> {
        let body = &self.bodies[self.next % self.bodies.len()];
        let mut out = format!("X-Bench-Id: {}-{tag}-{}\r\n", self.run, self.next).into_bytes();
        out.extend_from_slice(body);
        self.next += 1;
        out
    }
}

/// A plain message of about `size` bytes (headers like a real one, a text
/// body of 72-character lines).
fn synthetic(size: usize) -> Vec<u8> {
    let mut m = String::from(
        "From: Bench Sender <sender@bench.test>\r\nTo: Bench User <user@bench.test>\r\nSubject: replication benchmark message\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\nMessage-ID: <repl-bench@bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    let line = "The quick brown fox jumps over the lazy dog, then replicates itself. \r\n";
    while m.len() + line.len() <= size {
        m.push_str(line);
    }
    m.into_bytes()
}

/// Write `count` messages of `messages` to an mbox (for the load generator,
/// which reads its corpus from a file).
fn write_mbox(path: &Path, bodies: &[Vec<u8>]) -> Result<()> {
    let mut out = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            // The empty line that separates two messages.
            out.push(b'\n');
        }
        out.extend_from_slice(b"From bench@bench.test Sun Nov 29 08:00:00 2026\n");
        let b = b.strip_suffix(b"\n").unwrap_or(b);
        for line in b.split(|&c| c == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"From ") || line.starts_with(b">From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    std::fs::write(path, out).map_err(io_err(format!("writing {}", path.display())))
}

// ------------------------------------------------------------------ slots

/// One managed slot process.
struct SlotProcess {
    dir: PathBuf,
    config: PathBuf,
    imap: SocketAddr,
    lmtp: SocketAddr,
    child: Option<Child>,
}

impl SlotProcess {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Spawn `slotmail slot run` (log appended to `slot.log`); returns at once.
    fn spawn(&mut self, slotmail: &Path) -> Result<()> {
        assert!(self.child.is_none(), "slot already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("slot.log"))
            .map_err(io_err("opening the slot log"))?;
        let child = Command::new(slotmail)
            .args(["slot", "run", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("starting {}", slotmail.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until the IMAP listener accepts; fails if the process exits.
    fn wait_listening(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&self.imap, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(ReplBenchError::Failed(format!(
                    "the slot in {} exited ({status}) before listening; see its slot.log",
                    self.dir.display()
                )));
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(ReplBenchError::Failed(format!(
                    "the slot in {} does not listen on {} after {START_TIMEOUT:?}",
                    self.dir.display(),
                    self.imap
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn start(&mut self, slotmail: &Path) -> Result<()> {
        self.spawn(slotmail)?;
        self.wait_listening()
    }

    /// SIGTERM by PID, wait, SIGKILL after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for SlotProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on `ip` (bound, then released).
fn free_port(ip: &str) -> Result<u16> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err(format!("binding a port on {ip}")))
}

fn addr(ip: &str) -> Result<SocketAddr> {
    format!("{ip}:{}", free_port(ip)?)
        .parse()
        .map_err(|e| ReplBenchError::Options(format!("address {ip}: {e}")))
}

/// The managed master and replica.
struct Pair {
    master: SlotProcess,
    replica: SlotProcess,
}

impl Pair {
    /// Create both slots' directories, users (on the master) and configs.
    fn create(opts: &ReplBenchOptions) -> Result<Pair> {
        let secret = opts.dir.join("cluster.secret");
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
            .map_err(io_err("reading /dev/urandom"))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&secret, hex + "\n").map_err(io_err("writing the cluster secret"))?;
        let master_sync = addr(&opts.master_ip)?;
        let replica_sync = addr(&opts.replica_ip)?;
        let connections = (opts.load_clients + 64) * 4;
        let make = |name: &str, ip: &str, sync: String| -> Result<SlotProcess> {
            let dir = opts.dir.join(name);
            std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            let imap = addr(ip)?;
            let lmtp = addr(ip)?;
            let config = dir.join("slot.toml");
            std::fs::write(
                &config,
                format!(
                    "version = 1\nname = \"{name}\"\ndata = \"data\"\nhostname = \"{name}.bench.test\"\n\n[imap]\nlisten = \"{imap}\"\nallow_plaintext_auth = true\n\n[lmtp]\nlisten = \"{lmtp}\"\n\n[limits]\nconnections_max = {connections}\nconnections_per_user_max = {connections}\n\n[sync]\nstore = \"bench\"\nepoch = 1\nsecret_file = \"{}\"\n{sync}\n",
                    secret.display()
                ),
            )
            .map_err(io_err("writing a slot config"))?;
            Ok(SlotProcess {
                dir,
                config,
                imap,
                lmtp,
                child: None,
            })
        };
        let master = make(
            "master",
            &opts.master_ip,
            format!(
                "role = \"master\"\nlisten = \"{master_sync}\"\nreplicas = [{{ slot = \"replica\", address = \"{replica_sync}\" }}]"
            ),
        )?;
        let replica = make(
            "replica",
            &opts.replica_ip,
            format!("role = \"replica\"\nlisten = \"{replica_sync}\""),
        )?;
        let mut users = vec![
            opts.lag_user.clone(),
            opts.burst_user.clone(),
            opts.full_user.clone(),
        ];
        users.extend(
            (1..=opts.load_users).map(|i| opts.load_user_pattern.replace("%d", &i.to_string())),
        );
        for user in users {
            let mut child = Command::new(&opts.slotmail)
                .args(["slot", "user", "add", "--data"])
                .arg(master.dir.join("data"))
                .arg(&user)
                .arg("--password-stdin")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(io_err("running slotmail slot user add"))?;
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, format!("{}\n", opts.password).as_bytes())
                    .map_err(io_err("writing the password"))?;
            }
            let out = child
                .wait_with_output()
                .map_err(io_err("running slotmail slot user add"))?;
            if !out.status.success() {
                return Err(ReplBenchError::Failed(format!(
                    "slotmail slot user add {user}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(Pair { master, replica })
    }
}

// ------------------------------------------------------------------ IMAP

fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(30),
        command_timeout: Duration::from_secs(300),
        max_buffered_fetch_bytes: 256 * 1024 * 1024,
        ..ClientOptions::default()
    }
}

async fn login(addr: &str, user: &str, password: &str) -> Result<Client> {
    let mut c = Client::connect(addr, client_options())
        .await
        .map_err(imap_err("connect", addr))?;
    c.login(user, password)
        .await
        .map_err(imap_err(&format!("LOGIN {user}"), addr))?;
    Ok(c)
}

fn uid_set(uid: u32) -> SequenceSet {
    SequenceSet::single(uid).expect("UIDs are non-zero")
}

/// (UID, RFC822.SIZE) of every message of the selected-or-examined INBOX.
async fn inbox_sizes(c: &mut Client, addr: &str) -> Result<Vec<(u32, u64)>> {
    c.examine("INBOX", false)
        .await
        .map_err(imap_err("EXAMINE INBOX", addr))?;
    let mut v: Vec<(u32, u64)> = Vec::new();
    c.uid_fetch_each(&SequenceSet::all(), "(UID RFC822.SIZE)", |r| {
        v.push((r.uid, r.rfc822_size.unwrap_or(0)));
    })
    .await
    .map_err(imap_err("UID FETCH 1:* (UID RFC822.SIZE)", addr))?;
    v.sort_unstable();
    Ok(v)
}

async fn inbox_count(addr: &str, user: &str, password: &str) -> Result<u64> {
    let mut c = login(addr, user, password).await?;
    let st = c
        .status("INBOX", &[StatusItem::Messages])
        .await
        .map_err(imap_err("STATUS INBOX", addr))?;
    let _ = c.logout().await;
    Ok(st.get(StatusItem::Messages).unwrap_or(0))
}

// ------------------------------------------------------------------ full sync

async fn fill(
    addr: &str,
    user: &str,
    password: &str,
    n: u32,
    connections: usize,
    messages: &mut Messages,
) -> Result<(f64, u64)> {
    let bodies: Vec<Vec<u8>> = (0..n).map(|_| messages.take("full")).collect();
    let bytes = bodies.iter().map(|m| m.len() as u64).sum();
    let connections = connections.clamp(1, bodies.len().max(1));
    let share = bodies.len().div_ceil(connections).max(1);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(login(addr, user, password).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut chunks = bodies.chunks(share).map(<[Vec<u8>]>::to_vec);
    for mut c in clients {
        let chunk = chunks.next().unwrap_or_default();
        let (addr, user) = (addr.to_string(), user.to_string());
        tasks.spawn(async move {
            for (i, m) in chunk.iter().enumerate() {
                c.append("INBOX", &[], None, m)
                    .await
                    .map_err(imap_err(&format!("APPEND {i} to {user}"), &addr))?;
            }
            let _ = c.logout().await;
            Ok::<(), ReplBenchError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| ReplBenchError::Failed(format!("a fill connection: {e}")))??;
    }
    Ok((start.elapsed().as_secs_f64(), bytes))
}

/// Poll the replica until `user`'s INBOX holds `n` messages; returns when.
async fn wait_inbox_count(addr: &str, user: &str, password: &str, n: u64) -> Result<Instant> {
    let start = Instant::now();
    let mut client: Option<Client> = None;
    loop {
        if start.elapsed() > COMPLETE_TIMEOUT {
            return Err(ReplBenchError::Failed(format!(
                "{user}'s INBOX on {addr} does not hold {n} messages after {COMPLETE_TIMEOUT:?}"
            )));
        }
        if client.is_none() {
            // The account itself may not be there yet.
            if let Ok(c) = login(addr, user, password).await {
                client = Some(c);
            }
        }
        if let Some(c) = client.as_mut() {
            match c.status("INBOX", &[StatusItem::Messages]).await {
                Ok(st) if st.get(StatusItem::Messages).unwrap_or(0) >= n => {
                    return Ok(Instant::now());
                }
                Ok(_) => {}
                Err(e) if e.breaks_connection() => client = None,
                Err(_) => {}
            }
        }
        tokio::time::sleep(FULL_SYNC_POLL).await;
    }
}

async fn run_full_sync(
    opts: &ReplBenchOptions,
    pair: Option<&mut Pair>,
    master_imap: &str,
    replica_imap: &str,
    messages: &mut Messages,
) -> Result<FullSyncReport> {
    let n = opts.full_sync_messages;
    // An external full sync is timed on a master filled by an earlier
    // `fill_only` run (the fill also replicates to the rolling replica,
    // which must be quiet again before the clock starts).
    let timed_external = pair.is_none() && opts.full_sync_command.is_some() && !opts.fill_only;
    let fill_secs = if timed_external {
        0.0
    } else {
        fill(
            master_imap,
            &opts.full_user,
            &opts.password,
            n,
            opts.fill_connections,
            messages,
        )
        .await?
        .0
    };
    let mut report = FullSyncReport {
        messages: n,
        bytes: 0,
        fill_secs,
        fill_per_s: if fill_secs > 0.0 {
            f64::from(n) / fill_secs
        } else {
            0.0
        },
        sync_secs: 0.0,
        messages_per_s: 0.0,
        mb_per_s: 0.0,
        master_start_secs: None,
        master_cpu_s: None,
        replica_cpu_s: None,
        verified: false,
    };
    if opts.fill_only {
        return Ok(report);
    }
    let tck = proc::clock_ticks_per_s();
    let start;
    let mut master_pid = None;
    let mut replica_ticks = None;
    match pair {
        Some(pair) => {
            // The replica starts empty; the clock starts with the master.
            pair.master.stop();
            pair.replica.start(&opts.slotmail)?;
            replica_ticks = pair.replica.pid().map(|p| (p, proc::tree_cpu_ticks(&[p])));
            start = Instant::now();
            pair.master.spawn(&opts.slotmail)?;
            master_pid = pair.master.pid();
            let addr = pair.master.imap;
            let listen = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                    if t.elapsed() > START_TIMEOUT {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Some(Instant::now())
            });
            let done =
                wait_inbox_count(replica_imap, &opts.full_user, &opts.password, u64::from(n))
                    .await?;
            report.sync_secs = (done - start).as_secs_f64();
            if let Ok(Some(t)) = listen.await {
                report.master_start_secs = Some((t - start).as_secs_f64());
            }
            pair.master.wait_listening()?;
        }
        None => {
            let cmd = opts.full_sync_command.as_deref().ok_or_else(|| {
                ReplBenchError::Options("an external full sync needs a full-sync command".into())
            })?;
            start = Instant::now();
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .spawn()
                .map_err(io_err("running the full-sync command"))?;
            let done =
                wait_inbox_count(replica_imap, &opts.full_user, &opts.password, u64::from(n)).await;
            let status = tokio::task::spawn_blocking(move || child.wait())
                .await
                .map_err(|e| ReplBenchError::Failed(format!("waiting for the command: {e}")))?
                .map_err(io_err("waiting for the full-sync command"))?;
            let done = done?;
            if !status.success() {
                return Err(ReplBenchError::Failed(format!(
                    "the full-sync command exited with {status}"
                )));
            }
            report.sync_secs = (done - start).as_secs_f64();
        }
    }
    if let Some(p) = master_pid {
        report.master_cpu_s = Some(proc::tree_cpu_ticks(&[p]) as f64 / tck);
    }
    if let Some((p, t0)) = replica_ticks {
        report.replica_cpu_s = Some(proc::tree_cpu_ticks(&[p]).saturating_sub(t0) as f64 / tck);
    }
    let mut m = login(master_imap, &opts.full_user, &opts.password).await?;
    let mut r = login(replica_imap, &opts.full_user, &opts.password).await?;
    let ms_list = inbox_sizes(&mut m, master_imap).await?;
    let rs_list = inbox_sizes(&mut r, replica_imap).await?;
    let _ = m.logout().await;
    let _ = r.logout().await;
    report.bytes = ms_list.iter().map(|(_, s)| s).sum();
    report.verified = ms_list == rs_list && ms_list.len() == n as usize;
    report.messages_per_s = f64::from(n) / report.sync_secs.max(1e-9);
    report.mb_per_s = report.bytes as f64 / 1e6 / report.sync_secs.max(1e-9);
    Ok(report)
}

// ------------------------------------------------------------------ lag

/// One sample: to the event, and to the confirmation.
#[derive(Debug, Clone, Copy)]
struct Sample {
    lag_ms: f64,
    confirm_ms: f64,
}

/// SplitMix64 for the pauses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pause(&mut self, max: Duration) -> Duration {
        let us = max.as_micros() as u64;
        if us == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.next() % us)
    }
}

/// What the watcher waits for.
#[derive(Debug, Clone)]
enum Expect {
    /// The message exists.
    Present(u32),
    /// The message has (`true`) or lacks the flag.
    Flagged(u32, Flag, bool),
    /// The message is gone.
    Gone(u32),
}

impl Expect {
    /// Whether an untagged response during IDLE is the event.
    fn event(&self, r: &Response) -> bool {
        matches!(
            (self, r),
            (Expect::Present(_), Response::Data(Data::Exists(_)))
                | (Expect::Flagged(..), Response::Data(Data::Fetch { .. }))
                | (
                    Expect::Gone(_),
                    Response::Data(Data::Expunge(_) | Data::Vanished { .. })
                )
        )
    }

    fn uid(&self) -> u32 {
        match self {
            Expect::Present(u) | Expect::Flagged(u, ..) | Expect::Gone(u) => *u,
        }
    }

    /// Confirm with a FETCH on `c` (not idling).
    async fn confirmed(&self, c: &mut Client, addr: &str) -> Result<bool> {
        let items = match self {
            Expect::Flagged(..) => "(UID FLAGS)",
            _ => "(UID)",
        };
        let recs = c
            .uid_fetch(&uid_set(self.uid()), items)
            .await
            .map_err(imap_err("UID FETCH on the replica", addr))?;
        let rec = recs.iter().find(|r| r.uid == self.uid());
        Ok(match self {
            Expect::Present(_) => rec.is_some(),
            Expect::Gone(_) => rec.is_none(),
            Expect::Flagged(_, flag, want) => {
                rec.is_some_and(|r| r.flags.as_ref().is_some_and(|f| f.contains(flag) == *want))
            }
        })
    }
}

/// The clients of the lag samples.
struct LagRig<'a> {
    opts: &'a ReplBenchOptions,
    master_addr: String,
    replica_addr: String,
    /// Master, lag user, INBOX selected.
    master: Client,
    /// Replica, lag user, INBOX examined; idling between samples (idle mode).
    watch: Client,
    idling: bool,
    /// Replica, lag user, for LIST polls.
    lister: Client,
    rng: Rng,
    /// UIDs appended by the append samples (used by flags and expunge).
    uids: Vec<u32>,
    /// Mailboxes made by the create samples (renamed by rename).
    made: Vec<String>,
    phase: &'static str,
}

impl<'a> LagRig<'a> {
    async fn new(
        opts: &'a ReplBenchOptions,
        master_addr: &str,
        replica_addr: &str,
        phase: &'static str,
        seed: u64,
    ) -> Result<LagRig<'a>> {
        let mut master = login(master_addr, &opts.lag_user, &opts.password).await?;
        master
            .select("INBOX", false)
            .await
            .map_err(imap_err("SELECT INBOX", master_addr))?;
        let mut watch = login(replica_addr, &opts.lag_user, &opts.password).await?;
        watch
            .examine("INBOX", false)
            .await
            .map_err(imap_err("EXAMINE INBOX", replica_addr))?;
        let lister = login(replica_addr, &opts.lag_user, &opts.password).await?;
        Ok(LagRig {
            opts,
            master_addr: master_addr.to_string(),
            replica_addr: replica_addr.to_string(),
            master,
            watch,
            idling: false,
            lister,
            rng: Rng(seed),
            uids: Vec::new(),
            made: Vec::new(),
            phase,
        })
    }

    /// Before a change: the watcher idles with nothing pending.
    async fn arm(&mut self) -> Result<()> {
        if self.opts.watch == Watch::Poll {
            return Ok(());
        }
        if self.idling {
            self.watch
                .idle_wait(Duration::ZERO)
                .await
                .map_err(imap_err("IDLE", &self.replica_addr))?;
        } else {
            self.watch
                .idle_start()
                .await
                .map_err(imap_err("IDLE", &self.replica_addr))?;
            self.idling = true;
        }
        Ok(())
    }

    async fn stop_idle(&mut self) -> Result<()> {
        if self.idling {
            self.idling = false;
            self.watch
                .idle_done()
                .await
                .map_err(imap_err("IDLE DONE", &self.replica_addr))?;
        }
        Ok(())
    }

    /// Wait until the replica shows `expect`; `t0` is the acknowledgement.
    /// Returns the sample and whether the IDLE recheck found it.
    async fn wait(&mut self, expect: Expect, t0: Instant) -> Result<(Sample, bool, bool)> {
        let addr = self.replica_addr.clone();
        loop {
            let waited = t0.elapsed();
            if waited >= SAMPLE_TIMEOUT {
                self.stop_idle().await?;
                let v = ms(SAMPLE_TIMEOUT);
                return Ok((
                    Sample {
                        lag_ms: v,
                        confirm_ms: v,
                    },
                    true,
                    false,
                ));
            }
            match self.opts.watch {
                Watch::Poll => {
                    self.watch.noop().await.map_err(imap_err("NOOP", &addr))?;
                    if expect.confirmed(&mut self.watch, &addr).await? {
                        let t = ms(t0.elapsed());
                        return Ok((
                            Sample {
                                lag_ms: t,
                                confirm_ms: t,
                            },
                            false,
                            false,
                        ));
                    }
                    tokio::time::sleep(POLL_PAUSE).await;
                }
                Watch::Idle => {
                    let limit = IDLE_RECHECK.min(SAMPLE_TIMEOUT - waited);
                    let events = self
                        .watch
                        .idle_wait(limit)
                        .await
                        .map_err(imap_err("IDLE", &addr))?;
                    let at = Instant::now();
                    let seen = events.iter().any(|r| expect.event(r));
                    let recheck = !seen && events.is_empty();
                    if seen || recheck {
                        self.stop_idle().await?;
                        if expect.confirmed(&mut self.watch, &addr).await? {
                            let done = Instant::now();
                            return Ok((
                                Sample {
                                    lag_ms: ms(at - t0),
                                    confirm_ms: ms(done - t0),
                                },
                                false,
                                !seen,
                            ));
                        }
                        self.arm().await?;
                    }
                }
            }
        }
    }

    async fn sample(
        &mut self,
        kind: ChangeKind,
        i: usize,
        messages: &mut Messages,
    ) -> Result<Option<(Sample, bool, bool)>> {
        self.arm().await?;
        tokio::time::sleep(self.rng.pause(self.opts.pause_max)).await;
        let maddr = self.master_addr.clone();
        match kind {
            ChangeKind::Append => {
                let m = messages.take(self.phase);
                let uid = self
                    .master
                    .append("INBOX", &[], None, &m)
                    .await
                    .map_err(imap_err("APPEND", &maddr))?;
                let t0 = Instant::now();
                let uid = uid
                    .ok_or_else(|| ReplBenchError::Failed("the master sent no APPENDUID".into()))?
                    .uid;
                self.uids.push(uid);
                self.wait(Expect::Present(uid), t0).await.map(Some)
            }
            ChangeKind::Flags => {
                let Some(&uid) = self.uids.get(i % self.uids.len().max(1)) else {
                    return Ok(None);
                };
                let on = (i / self.uids.len().max(1)).is_multiple_of(2);
                self.master
                    .uid_store(
                        &uid_set(uid),
                        if on { "+FLAGS.SILENT" } else { "-FLAGS.SILENT" },
                        &[Flag::Flagged],
                        None,
                    )
                    .await
                    .map_err(imap_err("UID STORE", &maddr))?;
                let t0 = Instant::now();
                self.wait(Expect::Flagged(uid, Flag::Flagged, on), t0)
                    .await
                    .map(Some)
            }
            ChangeKind::Expunge => {
                let Some(uid) = self.uids.pop() else {
                    return Ok(None);
                };
                self.master
                    .uid_store(&uid_set(uid), "+FLAGS.SILENT", &[Flag::Deleted], None)
                    .await
                    .map_err(imap_err("UID STORE \\Deleted", &maddr))?;
                // The flag change replicates first; wait it out so the
                // EXPUNGE's event is not mistaken for it.
                let t = Instant::now();
                let _ = self
                    .wait(Expect::Flagged(uid, Flag::Deleted, true), t)
                    .await?;
                self.arm().await?;
                self.master
                    .uid_expunge(&uid_set(uid))
                    .await
                    .map_err(imap_err("UID EXPUNGE", &maddr))?;
                let t0 = Instant::now();
                self.wait(Expect::Gone(uid), t0).await.map(Some)
            }
            ChangeKind::Create | ChangeKind::Rename => {
                let prefix = &self.opts.mailbox_prefix;
                let (pattern, want, old) = if kind == ChangeKind::Create {
                    let name = format!("{prefix}lagA-{}-{}-{i}", self.phase, messages.run);
                    self.master
                        .create(&name, &[])
                        .await
                        .map_err(imap_err("CREATE", &maddr))?;
                    self.made.push(name.clone());
                    (name.clone(), name, None)
                } else {
                    let Some(old) = self.made.pop() else {
                        return Ok(None);
                    };
                    let new = old.replacen("lagA-", "lagB-", 1);
                    self.master
                        .rename(&old, &new)
                        .await
                        .map_err(imap_err("RENAME", &maddr))?;
                    (old.replacen("lagA-", "lag%-", 1), new, Some(old))
                };
                let t0 = Instant::now();
                let raddr = self.replica_addr.clone();
                loop {
                    let list = self
                        .lister
                        .list("", &pattern)
                        .await
                        .map_err(imap_err("LIST", &raddr))?;
                    let has = |n: &str| list.iter().any(|e| e.name == n);
                    if has(&want) && old.as_deref().is_none_or(|o| !has(o)) {
                        let t = ms(t0.elapsed());
                        return Ok(Some((
                            Sample {
                                lag_ms: t,
                                confirm_ms: t,
                            },
                            false,
                            false,
                        )));
                    }
                    if t0.elapsed() >= SAMPLE_TIMEOUT {
                        let v = ms(SAMPLE_TIMEOUT);
                        return Ok(Some((
                            Sample {
                                lag_ms: v,
                                confirm_ms: v,
                            },
                            true,
                            false,
                        )));
                    }
                    tokio::time::sleep(POLL_PAUSE).await;
                }
            }
        }
    }

    async fn close(mut self) {
        let _ = self.stop_idle().await;
        let _ = self.watch.logout().await;
        let _ = self.lister.logout().await;
        let _ = self.master.logout().await;
    }
}

/// All kinds of change, `samples` each, in order (appends first: flags
/// and expunges work on the appended messages; creates before renames).
async fn run_lag(
    opts: &ReplBenchOptions,
    master_addr: &str,
    replica_addr: &str,
    phase: &'static str,
    messages: &mut Messages,
) -> Result<Vec<LagStats>> {
    let seed = opts.seed ^ if phase == "load" { 0x10ad } else { 0 };
    let mut rig = LagRig::new(opts, master_addr, replica_addr, phase, seed).await?;
    let mut out = Vec::new();
    let mut order = opts.kinds.clone();
    order.sort_by_key(|k| ChangeKind::ALL.iter().position(|x| x == k));
    for kind in order {
        let mut samples = Vec::new();
        let (mut timeouts, mut rechecks) = (0, 0);
        // Flags and expunges need messages: take them from an append run,
        // or make them now when appends are not measured.
        if matches!(kind, ChangeKind::Flags | ChangeKind::Expunge) && rig.uids.is_empty() {
            for _ in 0..opts.samples {
                let m = messages.take(phase);
                let uid = rig
                    .master
                    .append("INBOX", &[], None, &m)
                    .await
                    .map_err(imap_err("APPEND", master_addr))?;
                if let Some(u) = uid {
                    rig.uids.push(u.uid);
                }
            }
        }
        if kind == ChangeKind::Rename && rig.made.is_empty() {
            for i in 0..opts.samples {
                let name = format!(
                    "{}lagA-{phase}-{}-pre{i}",
                    opts.mailbox_prefix, messages.run
                );
                rig.master
                    .create(&name, &[])
                    .await
                    .map_err(imap_err("CREATE", master_addr))?;
                rig.made.push(name);
            }
            // Let them reach the replica before renames are timed.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for i in 0..opts.samples {
            if let Some((s, timed_out, recheck)) = rig.sample(kind, i, messages).await? {
                samples.push(s);
                timeouts += usize::from(timed_out);
                rechecks += usize::from(recheck);
            }
        }
        let watch = match kind {
            ChangeKind::Create | ChangeKind::Rename => "list-poll",
            _ if opts.watch == Watch::Poll => "poll",
            _ => "idle",
        };
        out.push(stats(kind, watch, &samples, timeouts, rechecks));
    }
    rig.close().await;
    Ok(out)
}

/// The lag phase under the IMAP load generator (on a runtime of its own).
async fn run_lag_under_load(
    opts: &ReplBenchOptions,
    master_addr: &str,
    replica_addr: &str,
    load_corpus: &Path,
    messages: &mut Messages,
) -> Result<LagPhase> {
    let (host, port) = master_addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| ReplBenchError::Options(format!("bad address {master_addr}")))?;
    // Run the load a little longer than the samples are expected to take;
    // samples still running when it ends are reported with the rest.
    let per_sample = opts.pause_max.as_secs_f64() / 2.0 + 0.05;
    let secs = (opts.samples * opts.kinds.len()) as f64 * per_sample * 2.0 + 20.0;
    let mut lo = ImapBenchOptions::new(host, port);
    lo.mode = ImapBenchMode::Load;
    lo.user_pattern = opts.load_user_pattern.clone();
    lo.users = opts.load_users;
    lo.password = opts.password.clone();
    lo.clients = opts.load_clients;
    lo.secs = secs;
    lo.corpus = Some(load_corpus.to_path_buf());
    lo.seed = opts.seed;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let loader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build();
        let r = match rt {
            Ok(rt) => rt.block_on(run_imap_bench(lo)).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let _ = tx.send(r);
    });
    // Let the load reach its steady state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let kinds = run_lag(opts, master_addr, replica_addr, "load", messages).await;
    let secs_taken = start.elapsed().as_secs_f64();
    let load = rx
        .await
        .map_err(|_| ReplBenchError::Failed("the load generator stopped".into()))?
        .map_err(|e| ReplBenchError::Failed(format!("load generator: {e}")))?;
    let _ = loader.join();
    let kinds = kinds?;
    if secs_taken + 3.0 > secs {
        eprintln!(
            "repl bench: note: the samples took {secs_taken:.0} s, longer than the {secs:.0} s of load"
        );
    }
    let load = load.load.map(|l| LoadSummary {
        clients: l.clients,
        users: opts.load_users,
        secs: l.secs,
        sessions_per_s: l.sessions_per_s,
        commands_per_s: l.commands.iter().map(|c| c.per_s).sum(),
        appends_per_s: l
            .commands
            .iter()
            .find(|c| c.name == "APPEND")
            .map_or(0.0, |c| c.per_s),
        errors: l.errors,
        machine_busy_pct: l.machine_busy_pct,
    });
    Ok(LagPhase {
        under_load: true,
        kinds,
        load,
        secs: secs_taken,
    })
}

// ------------------------------------------------------------------ burst

async fn run_burst(
    opts: &ReplBenchOptions,
    master_lmtp: &str,
    replica_imap: &str,
    messages: &mut Messages,
) -> Result<BurstReport> {
    let n = opts.burst_messages;
    let before = inbox_count(replica_imap, &opts.burst_user, &opts.password).await?;
    let target = before + u64::from(n);
    // A fresh connection polling STATUS: an IDLE session could be held up
    // by the very server it watches, and Cyrus's IMAP does not announce
    // replicated changes at all.
    let (raddr, user, password) = (
        replica_imap.to_string(),
        opts.burst_user.clone(),
        opts.password.clone(),
    );
    let watcher =
        tokio::spawn(async move { wait_inbox_count(&raddr, &user, &password, target).await });
    let rcpt = opts.lmtp_rcpt.replace("%u", &opts.burst_user);
    let mut lmtp = slotmail_lmtp::client::Client::connect(
        master_lmtp,
        slotmail_lmtp::client::ClientConfig::new("bench.test"),
    )
    .await
    .map_err(|e| ReplBenchError::Failed(format!("LMTP connect {master_lmtp}: {e}")))?;
    let mut bodies = Vec::with_capacity(n as usize);
    for _ in 0..n {
        bodies.push(messages.take("burst"));
    }
    let bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let first = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let r = lmtp
            .deliver("sender@bench.test", &[rcpt.as_str()], b)
            .await
            .map_err(|e| ReplBenchError::Failed(format!("LMTP delivery {i}: {e}")))?;
        if !r.recipients.first().is_some_and(|x| x.delivered()) {
            return Err(ReplBenchError::Failed(format!(
                "LMTP delivery {i} to {rcpt} refused: {:?}",
                r.recipients.first().map(|x| x.final_reply())
            )));
        }
    }
    let last = Instant::now();
    let _ = lmtp.quit().await;
    let done = watcher
        .await
        .map_err(|e| ReplBenchError::Failed(format!("burst watcher: {e}")))??;
    let mut watch = login(replica_imap, &opts.burst_user, &opts.password).await?;
    watch
        .examine("INBOX", false)
        .await
        .map_err(imap_err("EXAMINE INBOX", replica_imap))?;
    let mut count = 0u64;
    watch
        .uid_fetch_each(&SequenceSet::all(), "(UID)", |_| count += 1)
        .await
        .map_err(imap_err("UID FETCH 1:* (UID)", replica_imap))?;
    let _ = watch.logout().await;
    let signed_ms = if done >= last {
        ms(done - last)
    } else {
        -ms(last - done)
    };
    Ok(BurstReport {
        messages: n,
        bytes,
        deliver_secs: (last - first).as_secs_f64(),
        deliver_per_s: f64::from(n) / (last - first).as_secs_f64().max(1e-9),
        complete_after_last_ms: signed_ms,
        complete_after_first_secs: (done - first).as_secs_f64(),
        replica_messages: count,
    })
}

// ------------------------------------------------------------------ driver

/// Run the benchmark (see the module documentation).
pub async fn run_repl_bench(opts: ReplBenchOptions) -> Result<ReplBenchReport> {
    if opts.master_imap.is_some() != opts.replica_imap.is_some() {
        return Err(ReplBenchError::Options(
            "give both the master's and the replica's IMAP address, or neither".into(),
        ));
    }
    std::fs::create_dir_all(&opts.dir)
        .map_err(io_err(format!("creating {}", opts.dir.display())))?;
    let mut messages = Messages::load(&opts)?;
    let mut pair = if opts.managed() {
        Some(Pair::create(&opts)?)
    } else {
        None
    };
    let (master_imap, replica_imap, master_lmtp) = match &pair {
        Some(p) => (
            p.master.imap.to_string(),
            p.replica.imap.to_string(),
            Some(p.master.lmtp.to_string()),
        ),
        None => (
            opts.master_imap.clone().unwrap_or_default(),
            opts.replica_imap.clone().unwrap_or_default(),
            opts.master_lmtp.clone(),
        ),
    };
    let mut report = ReplBenchReport {
        machine: MachineFacts::gather(&opts.dir),
        setup: if pair.is_some() {
            "managed"
        } else {
            "external"
        },
        master: master_imap.clone(),
        replica: replica_imap.clone(),
        messages: messages.describe(&opts),
        pause_max_ms: ms(opts.pause_max),
        full_sync: None,
        lag: Vec::new(),
        burst: None,
    };

    // 1. Full sync: the master alone first, then the empty replica.
    if let Some(p) = pair.as_mut() {
        p.master.start(&opts.slotmail)?;
    }
    if opts.full_sync_messages > 0 {
        let target = opts
            .full_sync_replica_imap
            .clone()
            .unwrap_or_else(|| replica_imap.clone());
        eprintln!(
            "repl bench: full sync of {} messages (filling the master first)",
            opts.full_sync_messages
        );
        report.full_sync =
            Some(run_full_sync(&opts, pair.as_mut(), &master_imap, &target, &mut messages).await?);
        if opts.fill_only {
            return Ok(report);
        }
    }
    if let Some(p) = pair.as_mut() {
        if p.replica.child.is_none() {
            p.replica.start(&opts.slotmail)?;
        }
        if p.master.child.is_none() {
            p.master.start(&opts.slotmail)?;
        }
        // Every account on the replica before anything is timed.
        for user in [&opts.lag_user, &opts.burst_user] {
            wait_inbox_count(&replica_imap, user, &opts.password, 0).await?;
        }
        wait_inbox_count(
            &replica_imap,
            &opts
                .load_user_pattern
                .replace("%d", &opts.load_users.to_string()),
            &opts.password,
            0,
        )
        .await?;
    }

    // 2. and 3. Lag.
    if !opts.kinds.is_empty() && opts.samples > 0 {
        if opts.lag_idle {
            eprintln!("repl bench: lag, idle");
            let start = Instant::now();
            let kinds = run_lag(&opts, &master_imap, &replica_imap, "idle", &mut messages).await?;
            report.lag.push(LagPhase {
                under_load: false,
                kinds,
                load: None,
                secs: start.elapsed().as_secs_f64(),
            });
        }
        if opts.load_clients > 0 {
            eprintln!("repl bench: lag under load ({} clients)", opts.load_clients);
            let corpus = match &opts.corpus {
                Some(c) => c.clone(),
                None => {
                    let p = opts.dir.join("load-corpus.mbox");
                    write_mbox(&p, &messages.bodies)?;
                    p
                }
            };
            report.lag.push(
                run_lag_under_load(&opts, &master_imap, &replica_imap, &corpus, &mut messages)
                    .await?,
            );
        }
    }

    // 4. Burst.
    if opts.burst_messages > 0 {
        let lmtp = master_lmtp.ok_or_else(|| {
            ReplBenchError::Options("the burst needs the master's LMTP address".into())
        })?;
        eprintln!(
            "repl bench: burst of {} LMTP deliveries",
            opts.burst_messages
        );
        report.burst = Some(run_burst(&opts, &lmtp, &replica_imap, &mut messages).await?);
    }
    if let Some(mut p) = pair {
        p.master.stop();
        p.replica.stop();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let (p50, p99, max, min, mean) = summary(&v);
        assert_eq!((p50, p99, max, min), (50.0, 99.0, 100.0, 1.0));
        assert!((mean - 50.5).abs() < 1e-9);
        assert_eq!(summary(&[]), (0.0, 0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn messages_are_unique_and_synthetic_size_is_close() {
        let opts = ReplBenchOptions::new(PathBuf::from("."), PathBuf::from("slotmail"));
        let mut m = Messages::load(&opts).unwrap();
        let (a, b) = (m.take("x"), m.take("x"));
        assert_ne!(a, b);
        let body = synthetic(2300);
        assert!((2200..=2400).contains(&body.len()), "{}", body.len());
    }

    #[test]
    fn written_mbox_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mbox");
        let bodies = vec![b"Subject: a\r\n\r\nFrom here\r\n".to_vec(), synthetic(500)];
        write_mbox(&p, &bodies).unwrap();
        let back = read_mbox(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].raw, bodies[0]);
        assert_eq!(back[1].raw, bodies[1]);
    }

    #[test]
    fn pauses_stay_below_the_maximum() {
        let mut r = Rng(7);
        let max = Duration::from_millis(20);
        assert!((0..1000).all(|_| r.pause(max) < max));
        assert_eq!(r.pause(Duration::ZERO), Duration::ZERO);
    }
}
