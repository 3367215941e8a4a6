//! The IMAP load generator: imaptest's default mixed workload against any
//! IMAP server, pre-filling mailboxes, and IDLE connection tests, with the
//! server's CPU and memory read from `/proc` (`slotmail bench imap`;
//! `docs/benchmarks.md`, "IMAP (one slot, loopback)";
//! `bench/imap-vs-dovecot.sh` runs it against slotmail and Dovecot).
//!
//! # Load ([`ImapBenchMode::Load`])
//!
//! `clients` concurrent clients each loop through one session after another
//! until the time is up, as imaptest's default profile does (its
//! `client-state.c`, state table and `client_plan_send_next_cmd`):
//!
//! | step | probability | what is sent |
//! |---|---|---|
//! | connect | 100 % | TCP connect and greeting (timed as `CONNECT`) |
//! | LOGIN | 100 % | `LOGIN user password`, user drawn at random from 1..=users |
//! | LIST | 50 % | `LIST "" "*"` |
//! | STATUS | 50 % | `STATUS mailbox (MESSAGES UNSEEN RECENT)` |
//! | SELECT | 100 % | `SELECT mailbox`, `(CONDSTORE)` when advertised |
//! | FETCH | 100 % | `FETCH set (…)`: min(n, 100) random sequence numbers, 1–4 items drawn from UID, FLAGS, ENVELOPE, INTERNALDATE, BODY, BODYSTRUCTURE, RFC822.SIZE (¾) or `BODY.PEEK[HEADER.FIELDS (…)]` (¼) |
//! | FETCH2 | 100 %, again 30 % | `FETCH seq (UID x)`, x one of `BODY.PEEK[HEADER]`, `RFC822.HEADER`, `BODY.PEEK[]`, `BODY.PEEK[1]`, `BODY.PEEK[TEXT]` |
//! | STORE | 50 % | `STORE set [+-]FLAGS[.SILENT] (…)` on rand(n < 10 ? n : min(n/5, 50)) random messages, random flags and `$LabelN` keywords |
//! | DELETE | 100 % | `STORE set +FLAGS[.SILENT] \Deleted` on rand(n > msgs+5 ? n − msgs : 5) random messages |
//! | EXPUNGE | 100 % | `EXPUNGE` |
//! | APPEND | 100 % while n < msgs, again 5 % | the next corpus message (shared cursor), random flags ½, the mbox date as INTERNALDATE ½ |
//! | LOGOUT | 100 % | `LOGOUT` |
//!
//! `n` is the number of messages in the client's view of the mailbox (kept
//! current from EXISTS and EXPUNGE); commands of the selected state are
//! skipped when it is 0, a count of 0 skips the STORE, as in imaptest. The
//! DELETE and APPEND rules keep every mailbox near `msgs` messages (30).
//!
//! Differences from imaptest: commands are not pipelined (each waits for
//! its tagged response); no state tracking or consistency checks; the
//! APPEND of several messages is several APPENDs, not MULTIAPPEND.
//!
//! A command counts when its tagged OK arrives before the end of the run;
//! at the end every connection is dropped where it stands. Sessions per
//! second is the rate of successful LOGINs, as imaptest reports it.
//!
//! # Pre-fill ([`ImapBenchMode::Prefill`])
//!
//! Appends to every user's mailbox until it holds `prefill` messages; user
//! `k` (1-based) gets corpus messages `(k-1)·prefill …` in order, so two
//! servers pre-filled from the same corpus hold the same messages.
//!
//! # IDLE ([`ImapBenchMode::Idle`])
//!
//! Logs every user in once (so credential caches are warm and the baseline
//! is not an argon2 high-water mark), then opens `connections` connections
//! (user `i mod users`), each LOGIN, SELECT and IDLE, and reports the
//! server's memory growth per connection. Then one APPEND to each of
//! `wake_users` users' mailboxes, sent at once from separate connections,
//! and how many of those users' idling connections got `* n EXISTS` within
//! `wake_window` of the APPEND being sent. Finally every connection sends
//! DONE and LOGOUT; the number that completes cleanly shows the server
//! still held them all.
//!
//! # Server usage
//!
//! With `server_pids`, CPU is the sum of utime+stime+cutime+cstime over the
//! process trees rooted there (`/proc/PID/stat`; children the tree reaped
//! during the run are in their parent's cutime), taken at the start and
//! end of the measured window. Memory is the sum over the trees of VmRSS
//! (`/proc/PID/status`) and Pss (`/proc/PID/smaps_rollup`), sampled once a
//! second (load) or at fixed points (IDLE).

use crate::machine::MachineFacts;
use crate::mbox::{MboxError, MboxMessage, read_mbox};
use serde::Serialize;
use slotmail_imap_client::{
    Client, ClientOptions, Data, DateTime, Error as ImapError, Flag, Response, StatusItem,
    StatusKind,
};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// imaptest's `msgs` default: the mailbox size the mix steers towards.
pub const MESSAGE_COUNT_TARGET_DEFAULT: u32 = 30;
/// How long an IDLE client waits for `* n EXISTS` after the APPEND is sent.
pub const WAKE_WINDOW_DEFAULT: Duration = Duration::from_secs(1);
/// Connections being set up at once in IDLE mode.
pub const CONNECT_CONCURRENCY_DEFAULT: usize = 100;
/// Most error messages kept as samples in a report.
const ERROR_SAMPLES_MAX: usize = 20;
/// Longest a connection may take to reach IDLE before it counts as failed.
const IDLE_SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Settling time before memory is read (after connections opened or closed).
const SETTLE: Duration = Duration::from_secs(2);

/// What the benchmark does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImapBenchMode {
    /// imaptest's default mix for `secs` seconds.
    Load,
    /// Fill every user's mailbox up to `prefill` messages.
    Prefill,
    /// `connections` IDLE connections: memory per connection, wake-up.
    Idle,
}

impl std::str::FromStr for ImapBenchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "load" => Ok(ImapBenchMode::Load),
            "prefill" => Ok(ImapBenchMode::Prefill),
            "idle" => Ok(ImapBenchMode::Idle),
            _ => Err(format!("unknown mode {s:?} (load, prefill or idle)")),
        }
    }
}

/// Options of [`run_imap_bench`]; [`ImapBenchOptions::new`] gives the
/// imaptest defaults.
#[derive(Debug, Clone)]
pub struct ImapBenchOptions {
    pub mode: ImapBenchMode,
    /// Server host name or address.
    pub host: String,
    pub port: u16,
    /// User name pattern; `%d` is replaced by the user number.
    pub user_pattern: String,
    /// Users are numbered 1..=users.
    pub users: u32,
    /// Password of every user.
    pub password: String,
    /// The mailbox the mix works on.
    pub mailbox: String,
    /// Concurrent clients (load, prefill).
    pub clients: usize,
    /// Length of the measured run, seconds (load).
    pub secs: f64,
    /// Length of an unmeasured run before it, seconds (load).
    pub warmup_secs: f64,
    /// The mbox whose messages are appended (load and prefill; IDLE
    /// wake-ups append a small built-in message).
    pub corpus: Option<PathBuf>,
    /// imaptest's `msgs`: target mailbox size of the mix.
    pub msgs_target: u32,
    /// Messages per mailbox after pre-filling.
    pub prefill: u32,
    /// IDLE connections to open.
    pub connections: usize,
    /// Connections being set up at once (IDLE).
    pub connect_concurrency: usize,
    /// Users whose mailbox gets one APPEND while everyone idles.
    pub wake_users: u32,
    /// How soon an idling connection must see the new message.
    pub wake_window: Duration,
    /// Roots of the server's process trees, for CPU and memory.
    pub server_pids: Vec<u32>,
    /// Seed of the clients' random choices.
    pub seed: u64,
}

impl ImapBenchOptions {
    /// imaptest's defaults against `host:port`: users `u1..u100`, password
    /// `pw`, INBOX, 10 clients, 30 s, msgs 30.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ImapBenchOptions {
            mode: ImapBenchMode::Load,
            host: host.into(),
            port,
            user_pattern: "u%d".into(),
            users: 100,
            password: "pw".into(),
            mailbox: "INBOX".into(),
            clients: 10,
            secs: 30.0,
            warmup_secs: 0.0,
            corpus: None,
            msgs_target: MESSAGE_COUNT_TARGET_DEFAULT,
            prefill: 20,
            connections: 100,
            connect_concurrency: CONNECT_CONCURRENCY_DEFAULT,
            wake_users: 10,
            wake_window: WAKE_WINDOW_DEFAULT,
            server_pids: Vec::new(),
            seed: 1,
        }
    }

    fn user(&self, n: u32) -> String {
        self.user_pattern.replace("%d", &n.to_string())
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapBenchError {
    #[error("corpus: {0}")]
    Corpus(#[from] MboxError),
    #[error("the corpus {0} holds no messages")]
    EmptyCorpus(String),
    #[error("invalid options: {0}")]
    Options(String),
    #[error("{what} as {user} at {addr}: {source}")]
    Session {
        what: &'static str,
        user: String,
        addr: String,
        #[source]
        source: Box<ImapError>,
    },
    #[error("{0}")]
    Limit(String),
}

/// Everything a run found, with the machine it ran on.
#[derive(Debug, Clone, Serialize)]
pub struct ImapBenchReport {
    pub machine: MachineFacts,
    pub mode: ImapBenchMode,
    /// `host:port`.
    pub server: String,
    /// The server's greeting text.
    pub greeting: String,
    pub users: u32,
    pub load: Option<LoadReport>,
    pub prefill: Option<PrefillReport>,
    pub idle: Option<IdleReport>,
}

/// Results of the mixed load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub secs: f64,
    pub warmup_secs: f64,
    pub msgs_target: u32,
    /// Successful LOGINs per second (= sessions per second).
    pub sessions_per_s: f64,
    /// Per command type, in the order of the loop.
    pub commands: Vec<CommandStats>,
    /// NO, BAD and connection failures, all commands.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Untagged responses of completed commands that the client could not
    /// parse (the command still counts: the server answered it in full).
    pub unparsed_responses: u64,
    pub unparsed_samples: Vec<String>,
    /// Bytes of the APPENDed messages.
    pub appended_bytes: u64,
    pub server: Option<ServerUsage>,
    /// CPU of this load generator, % of one core.
    pub loadgen_cpu_pct: f64,
    /// Machine-wide busy CPU (all processes, /proc/stat), % of one core.
    pub machine_busy_pct: f64,
    /// Busy CPU not charged to the server or the load generator.
    pub foreign_cpu_pct: Option<f64>,
}

/// Counts and latencies of one command type.
#[derive(Debug, Clone, Serialize)]
pub struct CommandStats {
    pub name: &'static str,
    /// Tagged OKs within the run.
    pub count: u64,
    pub per_s: f64,
    /// Milliseconds from sending to the tagged response.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

/// The server's CPU and memory over a run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    pub pids: Vec<u32>,
    pub cpu_s: f64,
    /// % of one core over the measured window.
    pub cpu_pct: f64,
    pub pss_peak_mib: f64,
    pub pss_mean_mib: f64,
    pub rss_sum_peak_mib: f64,
    pub processes_peak: usize,
}

/// Results of pre-filling.
#[derive(Debug, Clone, Serialize)]
pub struct PrefillReport {
    pub per_user: u32,
    pub appended: u64,
    pub appended_bytes: u64,
    pub already_there: u64,
    pub seconds: f64,
}

/// Memory of the server's processes at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemSnapshot {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Results of the IDLE test.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    /// Connections that reached IDLE.
    pub established: usize,
    pub failed: usize,
    pub setup_error_samples: Vec<String>,
    /// Seconds from the first connect to the last IDLE continuation.
    pub open_secs: f64,
    /// Server memory: before anything, after one login per user, with all
    /// connections idling, after they logged out.
    pub server_fresh: Option<MemSnapshot>,
    pub server_warm: Option<MemSnapshot>,
    pub server_idle: Option<MemSnapshot>,
    pub server_closed: Option<MemSnapshot>,
    /// (idle − warm) / established.
    pub pss_per_connection_kib: Option<f64>,
    pub rss_per_connection_kib: Option<f64>,
    /// (idle − fresh) / established.
    pub pss_per_connection_from_fresh_kib: Option<f64>,
    /// This process's VmRSS with every connection open.
    pub loadgen_rss_mib: f64,
    pub wake: Option<WakeReport>,
    /// Connections still idling when the wake-up test ended.
    pub alive_before_logout: usize,
    /// Connections whose DONE and LOGOUT completed.
    pub logged_out: usize,
}

/// How fast an APPEND reaches the IDLE connections of its user.
#[derive(Debug, Clone, Serialize)]
pub struct WakeReport {
    pub users: u32,
    /// Idling connections of those users.
    pub connections: usize,
    pub woken_within_window: usize,
    pub window_ms: f64,
    /// Woken at all (within the window plus 2 s).
    pub woken: usize,
    /// From sending the APPEND to `* n EXISTS`, woken connections.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// APPEND round trips.
    pub append_p50_ms: f64,
    pub append_errors: usize,
}

/// Run the benchmark described by `opts`.
pub async fn run_imap_bench(opts: ImapBenchOptions) -> Result<ImapBenchReport, ImapBenchError> {
    if opts.users == 0 || !opts.user_pattern.contains("%d") {
        return Err(ImapBenchError::Options(
            "users must be at least 1 and the user pattern must contain %d".into(),
        ));
    }
    let opts = Arc::new(opts);
    // The greeting, and a first login: fails early on a wrong port or
    // password instead of producing a report full of errors.
    let greeting = probe(&opts).await?;
    let mut report = ImapBenchReport {
        machine: MachineFacts::gather(std::path::Path::new(".")),
        mode: opts.mode,
        server: opts.addr(),
        greeting,
        users: opts.users,
        load: None,
        prefill: None,
        idle: None,
    };
    match opts.mode {
        ImapBenchMode::Load => {
            let corpus = Corpus::load(&opts)?;
            if opts.clients == 0 || opts.secs <= 0.0 {
                return Err(ImapBenchError::Options(
                    "load needs clients ≥ 1 and secs > 0".into(),
                ));
            }
            report.load = Some(run_load(&opts, &corpus).await);
        }
        ImapBenchMode::Prefill => {
            let corpus = Corpus::load(&opts)?;
            report.prefill = Some(run_prefill(&opts, &corpus).await?);
        }
        ImapBenchMode::Idle => {
            check_fd_limit(opts.connections + 2 * opts.wake_users as usize + 64)?;
            report.idle = Some(run_idle(&opts).await?);
        }
    }
    Ok(report)
}

async fn probe(opts: &ImapBenchOptions) -> Result<String, ImapBenchError> {
    let user = opts.user(1);
    let fail = |what, source| ImapBenchError::Session {
        what,
        user: user.clone(),
        addr: opts.addr(),
        source: Box::new(source),
    };
    let mut c = Client::connect(opts.addr(), client_options())
        .await
        .map_err(|e| fail("connect", e))?;
    let greeting = c.greeting().to_string();
    c.login(&user, &opts.password)
        .await
        .map_err(|e| fail("LOGIN", e))?;
    c.logout().await.map_err(|e| fail("LOGOUT", e))?;
    Ok(greeting)
}

fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(30),
        command_timeout: Duration::from_secs(120),
        ..ClientOptions::default()
    }
}

// ------------------------------------------------------------------ corpus

/// The messages to append, with a cursor shared by all clients (imaptest
/// reads its mbox sequentially, wrapping around).
struct Corpus {
    messages: Vec<MboxMessage>,
    next: AtomicUsize,
}

impl Corpus {
    fn load(opts: &ImapBenchOptions) -> Result<Arc<Corpus>, ImapBenchError> {
        let Some(path) = &opts.corpus else {
            return Err(ImapBenchError::Options(
                "this mode needs a corpus (an mbox file)".into(),
            ));
        };
        let messages = read_mbox(path)?;
        if messages.is_empty() {
            return Err(ImapBenchError::EmptyCorpus(path.display().to_string()));
        }
        Ok(Arc::new(Corpus {
            messages,
            next: AtomicUsize::new(0),
        }))
    }

    fn next(&self) -> &MboxMessage {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.messages[i % self.messages.len()]
    }
}

fn internal_date(m: &MboxMessage) -> Option<DateTime> {
    m.date.and_then(|t| DateTime::from_unix_timestamp(t, 0))
}

// ------------------------------------------------------------------ random

/// SplitMix64: small, fast, deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n.max(1))) as u32
    }

    /// True with probability `pct` %.
    fn pct(&mut self, pct: u32) -> bool {
        self.below(100) < pct
    }
}

/// `count` random sequence numbers in 1..=msgs (drawn with replacement, as
/// imaptest does), as an IMAP sequence set.
fn random_seq_set(rng: &mut Rng, msgs: u32, count: u32) -> String {
    let set: BTreeSet<u32> = (0..count).map(|_| rng.below(msgs) + 1).collect();
    seq_set(&set)
}

/// `1:3,5,7:9` from a sorted set of numbers.
fn seq_set(set: &BTreeSet<u32>) -> String {
    let mut out = String::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
    }
    out
}

/// imaptest's `mailbox_view_get_random_flags`: each settable system flag
/// but `\Deleted` with ½, each of `$Label1..5` with ¼.
fn random_flags(rng: &mut Rng) -> Vec<Flag> {
    let mut flags = Vec::new();
    for f in [Flag::Answered, Flag::Flagged, Flag::Seen, Flag::Draft] {
        if rng.pct(50) {
            flags.push(f);
        }
    }
    for i in 1..=5 {
        if rng.pct(25) {
            flags.push(Flag::Keyword(format!("$Label{i}")));
        }
    }
    flags
}

fn flags_text(flags: &[Flag]) -> String {
    let names: Vec<String> = flags
        .iter()
        .map(|f| match f {
            Flag::Answered => "\\Answered".to_string(),
            Flag::Flagged => "\\Flagged".to_string(),
            Flag::Seen => "\\Seen".to_string(),
            Flag::Draft => "\\Draft".to_string(),
            Flag::Deleted => "\\Deleted".to_string(),
            Flag::Recent => "\\Recent".to_string(),
            Flag::Keyword(k) => k.clone(),
            Flag::Extension(x) => format!("\\{x}"),
        })
        .collect();
    names.join(" ")
}

/// imaptest's FETCH items: 1–4 of the fields (¾) or a HEADER.FIELDS
/// section of 1–4 header names (¼).
fn random_fetch_items(rng: &mut Rng) -> String {
    const FIELDS: [&str; 7] = [
        "UID",
        "FLAGS",
        "ENVELOPE",
        "INTERNALDATE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822.SIZE",
    ];
    const HEADERS: [&str; 8] = [
        "From",
        "To",
        "Cc",
        "Subject",
        "References",
        "In-Reply-To",
        "Message-ID",
        "Delivered-To",
    ];
    let n = rng.below(4) + 1;
    let mut items = Vec::new();
    for _ in 0..n {
        if rng.below(4) != 0 {
            items.push(FIELDS[rng.below(FIELDS.len() as u32) as usize].to_string());
        } else {
            let k = rng.below(4) + 1;
            let names: Vec<&str> = (0..k)
                .map(|_| HEADERS[rng.below(HEADERS.len() as u32) as usize])
                .collect();
            items.push(format!("BODY.PEEK[HEADER.FIELDS ({})]", names.join(" ")));
        }
    }
    format!("({})", items.join(" "))
}

fn random_fetch2_item(rng: &mut Rng) -> &'static str {
    const ITEMS: [&str; 5] = [
        "BODY.PEEK[HEADER]",
        "RFC822.HEADER",
        "BODY.PEEK[]",
        "BODY.PEEK[1]",
        "BODY.PEEK[TEXT]",
    ];
    ITEMS[rng.below(ITEMS.len() as u32) as usize]
}

// ------------------------------------------------------------------ load

/// Command types of the mix, in loop order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Connect,
    Login,
    List,
    Status,
    Select,
    Fetch,
    Fetch2,
    Store,
    Delete,
    Expunge,
    Append,
    Logout,
}

const CMDS: [Cmd; 12] = [
    Cmd::Connect,
    Cmd::Login,
    Cmd::List,
    Cmd::Status,
    Cmd::Select,
    Cmd::Fetch,
    Cmd::Fetch2,
    Cmd::Store,
    Cmd::Delete,
    Cmd::Expunge,
    Cmd::Append,
    Cmd::Logout,
];

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Connect => "CONNECT",
            Cmd::Login => "LOGIN",
            Cmd::List => "LIST",
            Cmd::Status => "STATUS",
            Cmd::Select => "SELECT",
            Cmd::Fetch => "FETCH",
            Cmd::Fetch2 => "FETCH2",
            Cmd::Store => "STORE",
            Cmd::Delete => "DELETE",
            Cmd::Expunge => "EXPUNGE",
            Cmd::Append => "APPEND",
            Cmd::Logout => "LOGOUT",
        }
    }
}

/// One client's (or the merged) counts and latencies.
#[derive(Default)]
struct Tally {
    /// Microseconds per successful command, by `Cmd as usize`.
    lat_us: [Vec<u32>; 12],
    errors: [u64; 12],
    samples: Vec<String>,
    appended_bytes: u64,
    unparsed: u64,
    unparsed_samples: Vec<String>,
}

impl Tally {
    fn ok(&mut self, cmd: Cmd, since: Instant) {
        let us = since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.lat_us[cmd as usize].push(us);
    }

    fn err(&mut self, cmd: Cmd, user: &str, e: &ImapError) {
        self.errors[cmd as usize] += 1;
        if self.samples.len() < ERROR_SAMPLES_MAX {
            self.samples.push(format!("{} ({user}): {e}", cmd.name()));
        }
    }

    fn unparsed(&mut self, cmd: Cmd, text: &str) {
        self.unparsed += 1;
        if self.unparsed_samples.len() < 3 {
            self.unparsed_samples
                .push(format!("{}: {text}", cmd.name()));
        }
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.lat_us.iter_mut().zip(other.lat_us) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for s in other.samples {
            if self.samples.len() < ERROR_SAMPLES_MAX {
                self.samples.push(s);
            }
        }
        self.appended_bytes += other.appended_bytes;
        self.unparsed += other.unparsed;
        for s in other.unparsed_samples {
            if self.unparsed_samples.len() < 3 {
                self.unparsed_samples.push(s);
            }
        }
    }
}

/// `NO` / `BAD` of a raw command as an error.
fn raw_status(r: slotmail_imap_client::RawResponse) -> Result<(), ImapError> {
    match r.kind {
        StatusKind::Ok => Ok(()),
        StatusKind::Bad => Err(ImapError::Bad {
            code: r.code,
            text: r.text,
        }),
        _ => Err(ImapError::No {
            code: r.code,
            text: r.text,
        }),
    }
}

/// Why a session ended early.
struct SessionOver;

struct Worker {
    opts: Arc<ImapBenchOptions>,
    corpus: Arc<Corpus>,
    rng: Rng,
    tally: Tally,
    user: String,
}

impl Worker {
    /// Run one command; `Err` when it failed (counted) and the session
    /// cannot go on because the connection broke.
    async fn step<T>(
        &mut self,
        cmd: Cmd,
        fut: impl Future<Output = Result<T, ImapError>>,
    ) -> Result<Option<T>, SessionOver> {
        let t = Instant::now();
        match fut.await {
            Ok(v) => {
                self.tally.ok(cmd, t);
                Ok(Some(v))
            }
            // The command completed, but our client did not understand a
            // response (see `LoadReport::unparsed_responses`).
            Err(ImapError::Protocol(text)) => {
                self.tally.ok(cmd, t);
                self.tally.unparsed(cmd, &text);
                Ok(None)
            }
            Err(e) => {
                self.tally.err(cmd, &self.user, &e);
                if e.breaks_connection() {
                    Err(SessionOver)
                } else {
                    Ok(None)
                }
            }
        }
    }

    async fn run(&mut self) {
        loop {
            if self.session().await.is_err() {
                // A refused or broken connection: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn session(&mut self) -> Result<(), SessionOver> {
        let opts = self.opts.clone();
        self.user = opts.user(self.rng.below(opts.users) + 1);
        let Some(mut c) = self
            .step(Cmd::Connect, Client::connect(opts.addr(), client_options()))
            .await?
        else {
            return Err(SessionOver);
        };
        let password = opts.password.clone();
        let user = self.user.clone();
        if self
            .step(Cmd::Login, c.login(&user, &password))
            .await?
            .is_none()
        {
            return Err(SessionOver);
        }
        let mailbox = opts.mailbox.as_str();
        if self.rng.pct(50) {
            self.step(Cmd::List, c.list("", "*")).await?;
        }
        if self.rng.pct(50) {
            let items = [StatusItem::Messages, StatusItem::Unseen, StatusItem::Recent];
            self.step(Cmd::Status, c.status(mailbox, &items)).await?;
        }
        let condstore = c.has_capability("CONDSTORE");
        if self
            .step(Cmd::Select, c.select(mailbox, condstore))
            .await?
            .is_none()
        {
            return Err(SessionOver);
        }
        let exists = |c: &Client| c.selected().map_or(0, |s| s.exists);

        let n = exists(&c);
        if n > 0 {
            let set = random_seq_set(&mut self.rng, n, n.min(100));
            let line = format!("FETCH {set} {}", random_fetch_items(&mut self.rng));
            self.raw(Cmd::Fetch, &mut c, &line).await?;
        }
        loop {
            let n = exists(&c);
            if n > 0 {
                let seq = self.rng.below(n) + 1;
                let item = random_fetch2_item(&mut self.rng);
                self.raw(Cmd::Fetch2, &mut c, &format!("FETCH {seq} (UID {item})"))
                    .await?;
            }
            if !self.rng.pct(30) {
                break;
            }
        }
        if self.rng.pct(50) {
            let n = exists(&c);
            let bound = if n < 10 { n } else { (n / 5).min(50) };
            let count = if bound > 0 { self.rng.below(bound) } else { 0 };
            if count > 0 {
                let set = random_seq_set(&mut self.rng, n, count);
                let op = ["+", "-", ""][self.rng.below(3) as usize];
                let silent = if self.rng.pct(50) { ".SILENT" } else { "" };
                let flags = flags_text(&random_flags(&mut self.rng));
                let line = format!("STORE {set} {op}FLAGS{silent} ({flags})");
                self.raw(Cmd::Store, &mut c, &line).await?;
            }
        }
        let n = exists(&c);
        let target = opts.msgs_target;
        let count = if n > target + 5 {
            self.rng.below(n - target)
        } else {
            self.rng.below(5)
        };
        if n > 0 && count > 0 {
            let set = random_seq_set(&mut self.rng, n, count);
            let silent = if self.rng.pct(50) { ".SILENT" } else { "" };
            let line = format!("STORE {set} +FLAGS{silent} \\Deleted");
            self.raw(Cmd::Delete, &mut c, &line).await?;
        }
        if exists(&c) > 0 {
            self.step(Cmd::Expunge, c.expunge()).await?;
        }
        loop {
            if exists(&c) >= target {
                break;
            }
            let corpus = self.corpus.clone();
            let msg = corpus.next();
            let flags = if self.rng.pct(50) {
                random_flags(&mut self.rng)
            } else {
                Vec::new()
            };
            let date = if self.rng.pct(50) {
                internal_date(msg)
            } else {
                None
            };
            if self
                .step(Cmd::Append, c.append(mailbox, &flags, date, &msg.raw))
                .await?
                .is_some()
            {
                self.tally.appended_bytes += msg.raw.len() as u64;
            }
            if !self.rng.pct(5) {
                break;
            }
        }
        self.step(Cmd::Logout, c.logout()).await?;
        Ok(())
    }

    async fn raw(&mut self, cmd: Cmd, c: &mut Client, line: &str) -> Result<(), SessionOver> {
        self.step(cmd, async { raw_status(c.command_raw(line).await?) })
            .await
            .map(drop)
    }
}

/// CPU ticks and memory of the server and of the machine at one moment.
struct CpuMark {
    at: Instant,
    server_ticks: Option<u64>,
    self_ticks: u64,
    machine_busy_ticks: u64,
}

impl CpuMark {
    fn take(pids: &[u32]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server_ticks: (!pids.is_empty()).then(|| proc::tree_cpu_ticks(pids)),
            self_ticks: proc::self_cpu_ticks(),
            machine_busy_ticks: proc::machine_busy_ticks(),
        }
    }
}

async fn run_load(opts: &Arc<ImapBenchOptions>, corpus: &Arc<Corpus>) -> LoadReport {
    if opts.warmup_secs > 0.0 {
        let _ = load_phase(opts, corpus, opts.warmup_secs, opts.seed ^ 0xFFFF).await;
    }
    let sampler = proc::MemSampler::start(opts.server_pids.clone(), Duration::from_secs(1));
    let start = CpuMark::take(&opts.server_pids);
    let tally = load_phase(opts, corpus, opts.secs, opts.seed).await;
    let end = CpuMark::take(&opts.server_pids);
    let mem = sampler.finish();

    let secs = opts.secs;
    let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let tck = proc::clock_ticks_per_s();
    let pct = |ticks: u64| ticks as f64 / tck / wall * 100.0;
    let server = match (start.server_ticks, end.server_ticks) {
        (Some(a), Some(b)) => {
            let ticks = b.saturating_sub(a);
            Some(ServerUsage {
                pids: opts.server_pids.clone(),
                cpu_s: ticks as f64 / tck,
                cpu_pct: pct(ticks),
                pss_peak_mib: mem.pss_peak_kib as f64 / 1024.0,
                pss_mean_mib: mem.pss_mean_kib / 1024.0,
                rss_sum_peak_mib: mem.rss_peak_kib as f64 / 1024.0,
                processes_peak: mem.processes_peak,
            })
        }
        _ => None,
    };
    let loadgen_cpu_pct = pct(end.self_ticks.saturating_sub(start.self_ticks));
    let machine_busy_pct = pct(end
        .machine_busy_ticks
        .saturating_sub(start.machine_busy_ticks));
    let foreign_cpu_pct = server
        .as_ref()
        .map(|s| (machine_busy_pct - s.cpu_pct - loadgen_cpu_pct).max(0.0));
    let commands: Vec<CommandStats> = CMDS
        .iter()
        .map(|&cmd| {
            let lat = &tally.lat_us[cmd as usize];
            let ms = Latencies::of(lat);
            CommandStats {
                name: cmd.name(),
                count: lat.len() as u64,
                per_s: lat.len() as f64 / secs,
                p50_ms: ms.p50,
                p99_ms: ms.p99,
                mean_ms: ms.mean,
                max_ms: ms.max,
                errors: tally.errors[cmd as usize],
            }
        })
        .collect();
    LoadReport {
        clients: opts.clients,
        secs,
        warmup_secs: opts.warmup_secs,
        msgs_target: opts.msgs_target,
        sessions_per_s: tally.lat_us[Cmd::Login as usize].len() as f64 / secs,
        commands,
        errors: tally.errors.iter().sum(),
        error_samples: tally.samples,
        unparsed_responses: tally.unparsed,
        unparsed_samples: tally.unparsed_samples,
        appended_bytes: tally.appended_bytes,
        server,
        loadgen_cpu_pct,
        machine_busy_pct,
        foreign_cpu_pct,
    }
}

/// `clients` workers for `secs`; every connection is dropped at the end.
async fn load_phase(
    opts: &Arc<ImapBenchOptions>,
    corpus: &Arc<Corpus>,
    secs: f64,
    seed: u64,
) -> Tally {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.clients {
        let mut w = Worker {
            opts: opts.clone(),
            corpus: corpus.clone(),
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
            tally: Tally::default(),
            user: String::new(),
        };
        tasks.spawn(async move {
            let _ = tokio::time::timeout_at(deadline, w.run()).await;
            w.tally
        });
    }
    let mut total = Tally::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(t) = r {
            total.merge(t);
        }
    }
    total
}

/// Percentiles of microsecond samples, in milliseconds.
struct Latencies {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

impl Latencies {
    fn of(us: &[u32]) -> Latencies {
        if us.is_empty() {
            return Latencies {
                p50: 0.0,
                p99: 0.0,
                mean: 0.0,
                max: 0.0,
            };
        }
        let mut v = us.to_vec();
        v.sort_unstable();
        let ms = |x: u32| f64::from(x) / 1000.0;
        Latencies {
            p50: ms(v[nearest_rank(v.len(), 0.50)]),
            p99: ms(v[nearest_rank(v.len(), 0.99)]),
            mean: v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64 / 1000.0,
            max: ms(v[v.len() - 1]),
        }
    }
}

/// Index of the `p` quantile of `n` sorted samples (nearest rank).
fn nearest_rank(n: usize, p: f64) -> usize {
    ((p * n as f64).ceil() as usize).clamp(1, n) - 1
}

// ------------------------------------------------------------------ prefill

async fn run_prefill(
    opts: &Arc<ImapBenchOptions>,
    corpus: &Arc<Corpus>,
) -> Result<PrefillReport, ImapBenchError> {
    let started = Instant::now();
    let next_user = Arc::new(AtomicUsize::new(1));
    let mut tasks: tokio::task::JoinSet<Result<(u64, u64, u64), ImapBenchError>> =
        tokio::task::JoinSet::new();
    for _ in 0..opts.clients.max(1) {
        let (opts, corpus, next_user) = (opts.clone(), corpus.clone(), next_user.clone());
        tasks.spawn(async move {
            let (mut appended, mut bytes, mut there) = (0u64, 0u64, 0u64);
            loop {
                let k = next_user.fetch_add(1, Ordering::Relaxed) as u32;
                if k > opts.users {
                    return Ok((appended, bytes, there));
                }
                let (a, b, t) = prefill_user(&opts, &corpus, k).await?;
                appended += a;
                bytes += b;
                there += t;
            }
        });
    }
    let (mut appended, mut appended_bytes, mut already_there) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, b, t) = r.map_err(|e| ImapBenchError::Options(format!("prefill task: {e}")))??;
        appended += a;
        appended_bytes += b;
        already_there += t;
    }
    Ok(PrefillReport {
        per_user: opts.prefill,
        appended,
        appended_bytes,
        already_there,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn prefill_user(
    opts: &ImapBenchOptions,
    corpus: &Corpus,
    k: u32,
) -> Result<(u64, u64, u64), ImapBenchError> {
    let user = opts.user(k);
    let fail = |what, source| ImapBenchError::Session {
        what,
        user: user.clone(),
        addr: opts.addr(),
        source: Box::new(source),
    };
    let mut c = Client::connect(opts.addr(), client_options())
        .await
        .map_err(|e| fail("connect", e))?;
    c.login(&user, &opts.password)
        .await
        .map_err(|e| fail("LOGIN", e))?;
    let have = c
        .select(&opts.mailbox, false)
        .await
        .map_err(|e| fail("SELECT", e))?
        .exists;
    let (mut appended, mut bytes) = (0, 0);
    for i in have..opts.prefill {
        let idx = (k as usize - 1) * opts.prefill as usize + i as usize;
        let msg = &corpus.messages[idx % corpus.messages.len()];
        c.append(&opts.mailbox, &[], internal_date(msg), &msg.raw)
            .await
            .map_err(|e| fail("APPEND", e))?;
        appended += 1;
        bytes += msg.raw.len() as u64;
    }
    c.logout().await.map_err(|e| fail("LOGOUT", e))?;
    Ok((appended, bytes, u64::from(have.min(opts.prefill))))
}

// ------------------------------------------------------------------ idle

/// Fails when this process may not open `need` files.
fn check_fd_limit(need: usize) -> Result<(), ImapBenchError> {
    if let Some(soft) = proc::open_files_limit()
        && soft < need as u64
    {
        return Err(ImapBenchError::Limit(format!(
            "this process may open {soft} files but needs about {need}: \
             raise the limit first (ulimit -n {need} or more; the server needs as many)"
        )));
    }
    Ok(())
}

/// The message appended to wake idling connections.
const WAKE_MESSAGE: &[u8] = b"From: bench@example.org\r\nTo: idle@example.org\r\n\
Subject: wake up\r\nMessage-ID: <wake@bench.example.org>\r\n\r\nA new message for IDLE.\r\n";

/// State one idling connection shares with the coordinator.
struct IdleShared {
    /// Reached IDLE or failed (counted once each).
    established: AtomicUsize,
    failed: AtomicUsize,
    /// Nanoseconds after `base` of the first EXISTS after `armed`, per
    /// connection (0: none).
    woke_at_ns: Vec<AtomicU64>,
    armed: AtomicBool,
    base: Instant,
    setup_errors: Mutex<Vec<String>>,
}

/// What one idling connection ended with.
struct IdleEnd {
    alive: bool,
    logged_out: bool,
}

async fn idle_connection(
    opts: Arc<ImapBenchOptions>,
    i: usize,
    user: String,
    shared: Arc<IdleShared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> IdleEnd {
    let failed = |e: String| {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        let mut s = shared
            .setup_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if s.len() < ERROR_SAMPLES_MAX {
            s.push(format!("{user}: {e}"));
        }
        IdleEnd {
            alive: false,
            logged_out: false,
        }
    };
    let options = ClientOptions {
        // 10,000 connections: keep the client's buffers small.
        read_chunk_bytes: 4096,
        ..client_options()
    };
    let setup = async {
        let _permit = gate.acquire().await.expect("the gate is never closed");
        let mut c = Client::connect(opts.addr(), options).await?;
        c.login(&user, &opts.password).await?;
        c.select(&opts.mailbox, false).await?;
        c.idle_start().await?;
        Ok::<Client, ImapError>(c)
    };
    let mut c = match tokio::time::timeout(IDLE_SETUP_TIMEOUT, setup).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(_) => return failed(format!("no IDLE within {IDLE_SETUP_TIMEOUT:?}")),
    };
    shared.established.fetch_add(1, Ordering::SeqCst);
    let mut alive = true;
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = c.idle_wait(Duration::from_secs(3600)) => match r {
                Ok(responses) => {
                    let exists = responses
                        .iter()
                        .any(|r| matches!(r, Response::Data(Data::Exists(_))));
                    if exists && shared.armed.load(Ordering::SeqCst) {
                        let ns = shared.base.elapsed().as_nanos().max(1) as u64;
                        let _ = shared.woke_at_ns[i].compare_exchange(
                            0, ns, Ordering::SeqCst, Ordering::SeqCst);
                    }
                }
                Err(_) => {
                    alive = false;
                    break;
                }
            },
            _ = stop.changed() => {}
        }
    }
    if !alive {
        return IdleEnd {
            alive,
            logged_out: false,
        };
    }
    let end = async {
        c.idle_done().await?;
        c.logout().await
    };
    let logged_out = matches!(
        tokio::time::timeout(Duration::from_secs(60), end).await,
        Ok(Ok(()))
    );
    IdleEnd { alive, logged_out }
}

async fn run_idle(opts: &Arc<ImapBenchOptions>) -> Result<IdleReport, ImapBenchError> {
    let pids = &opts.server_pids;
    let snap = |pids: &[u32]| (!pids.is_empty()).then(|| proc::tree_memory(pids));
    let used_users = opts.users.min(opts.connections.max(1) as u32);
    let server_fresh = snap(pids);

    // One login per user, one at a time: warm credential caches.
    for k in 1..=used_users {
        let user = opts.user(k);
        let fail = |what, source| ImapBenchError::Session {
            what,
            user: user.clone(),
            addr: opts.addr(),
            source: Box::new(source),
        };
        let mut c = Client::connect(opts.addr(), client_options())
            .await
            .map_err(|e| fail("connect", e))?;
        c.login(&user, &opts.password)
            .await
            .map_err(|e| fail("LOGIN", e))?;
        c.logout().await.map_err(|e| fail("LOGOUT", e))?;
    }
    tokio::time::sleep(SETTLE).await;
    let server_warm = snap(pids);

    let shared = Arc::new(IdleShared {
        established: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        woke_at_ns: (0..opts.connections).map(|_| AtomicU64::new(0)).collect(),
        armed: AtomicBool::new(false),
        base: Instant::now(),
        setup_errors: Mutex::new(Vec::new()),
    });
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut user_of = Vec::with_capacity(opts.connections);
    let mut tasks = Vec::with_capacity(opts.connections);
    let opening = Instant::now();
    for i in 0..opts.connections {
        let k = (i as u32 % used_users) + 1;
        user_of.push(k);
        tasks.push(tokio::spawn(idle_connection(
            opts.clone(),
            i,
            opts.user(k),
            shared.clone(),
            gate.clone(),
            stop_rx.clone(),
        )));
    }
    while shared.established.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst)
        < opts.connections
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_secs = opening.elapsed().as_secs_f64();
    let established = shared.established.load(Ordering::SeqCst);
    let failed = shared.failed.load(Ordering::SeqCst);
    tokio::time::sleep(SETTLE).await;
    let server_idle = snap(pids);
    let loadgen_rss_mib = proc::tree_memory(&[std::process::id()]).rss_kib as f64 / 1024.0;

    let wake = if opts.wake_users > 0 && established > 0 {
        Some(wake_up(opts, &shared, &user_of, used_users).await)
    } else {
        None
    };

    let alive_before_logout = tasks.iter().filter(|t| !t.is_finished()).count();
    let _ = stop_tx.send(true);
    let mut logged_out = 0;
    for t in tasks {
        if let Ok(end) = t.await
            && end.alive
            && end.logged_out
        {
            logged_out += 1;
        }
    }
    tokio::time::sleep(SETTLE).await;
    let server_closed = snap(pids);

    let per_conn =
        |a: Option<MemSnapshot>, b: Option<MemSnapshot>, f: fn(&MemSnapshot) -> u64| match (a, b) {
            (Some(a), Some(b)) if established > 0 => {
                Some((f(&b) as f64 - f(&a) as f64) / established as f64)
            }
            _ => None,
        };
    let setup_error_samples = shared
        .setup_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(IdleReport {
        connections: opts.connections,
        established,
        failed,
        setup_error_samples,
        open_secs,
        server_fresh,
        server_warm,
        server_idle,
        server_closed,
        pss_per_connection_kib: per_conn(server_warm, server_idle, |m| m.pss_kib),
        rss_per_connection_kib: per_conn(server_warm, server_idle, |m| m.rss_kib),
        pss_per_connection_from_fresh_kib: per_conn(server_fresh, server_idle, |m| m.pss_kib),
        loadgen_rss_mib,
        wake,
        alive_before_logout,
        logged_out,
    })
}

/// One APPEND to each of `wake_users` users, sent at once; who woke up.
async fn wake_up(
    opts: &Arc<ImapBenchOptions>,
    shared: &Arc<IdleShared>,
    user_of: &[u32],
    used_users: u32,
) -> WakeReport {
    let n = opts.wake_users.min(used_users);
    let stride = (used_users / n).max(1);
    let users: Vec<u32> = (0..n).map(|j| j * stride + 1).collect();
    // Log the appenders in first, so the APPENDs go out together.
    let mut appenders = Vec::new();
    for &k in &users {
        let user = opts.user(k);
        match Client::connect(opts.addr(), client_options()).await {
            Ok(mut c) => {
                if c.login(&user, &opts.password).await.is_ok() {
                    appenders.push((k, c));
                }
            }
            Err(e) => eprintln!("imap bench: wake-up appender {user}: {e}"),
        }
    }
    let append_errors = users.len() - appenders.len();
    shared.armed.store(true, Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for (k, mut c) in appenders {
        let opts = opts.clone();
        let base = shared.base;
        tasks.spawn(async move {
            let sent = base.elapsed();
            let r = c.append(&opts.mailbox, &[], None, WAKE_MESSAGE).await;
            let done = base.elapsed();
            let _ = c.logout().await;
            (k, sent, done, r.is_ok())
        });
    }
    let mut sent_at: HashMap<u32, Duration> = HashMap::new();
    let mut append_us = Vec::new();
    let mut append_errors = append_errors;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((k, sent, done, true)) => {
                sent_at.insert(k, sent);
                append_us.push((done - sent).as_micros().min(u128::from(u32::MAX)) as u32);
            }
            _ => append_errors += 1,
        }
    }
    // Wait out the window (from the last APPEND sent), plus a margin for
    // stragglers.
    let last_sent = sent_at.values().max().copied().unwrap_or_default();
    let until = shared.base + last_sent + opts.wake_window + Duration::from_secs(2);
    tokio::time::sleep_until(until.into()).await;

    let mut sample = 0;
    let mut within = 0;
    let mut woke_us = Vec::new();
    for (i, &k) in user_of.iter().enumerate() {
        let Some(&sent) = sent_at.get(&k) else {
            continue;
        };
        sample += 1;
        let ns = shared.woke_at_ns[i].load(Ordering::SeqCst);
        if ns == 0 {
            continue;
        }
        let after = Duration::from_nanos(ns).saturating_sub(sent);
        woke_us.push(after.as_micros().min(u128::from(u32::MAX)) as u32);
        if after <= opts.wake_window {
            within += 1;
        }
    }
    let lat = Latencies::of(&woke_us);
    WakeReport {
        users: sent_at.len() as u32,
        connections: sample,
        woken_within_window: within,
        window_ms: opts.wake_window.as_secs_f64() * 1000.0,
        woken: woke_us.len(),
        p50_ms: lat.p50,
        p99_ms: lat.p99,
        max_ms: lat.max,
        append_p50_ms: Latencies::of(&append_us).p50,
        append_errors,
    }
}

// ------------------------------------------------------------------ report

impl ImapBenchReport {
    /// A human-readable summary.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "IMAP bench ({:?}) against {} — {}",
            self.mode, self.server, self.greeting
        );
        let _ = writeln!(
            s,
            "machine: {} × {}, {} MiB, kernel {}, {}",
            m.nproc,
            m.cpu.as_deref().unwrap_or("?"),
            m.memory_mib.unwrap_or(0),
            m.kernel.as_deref().unwrap_or("?"),
            m.date
        );
        if let Some(l) = &self.load {
            let _ = writeln!(
                s,
                "load: {} clients, {} users, {:.0} s (warm-up {:.0} s), msgs {}",
                l.clients, self.users, l.secs, l.warmup_secs, l.msgs_target
            );
            let _ = writeln!(s, "sessions/s (LOGIN OK/s): {:.1}", l.sessions_per_s);
            let _ = writeln!(
                s,
                "{:<8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                "command", "count", "ops/s", "p50 ms", "p99 ms", "mean ms", "max ms", "errors"
            );
            for c in &l.commands {
                let _ = writeln!(
                    s,
                    "{:<8} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>7}",
                    c.name, c.count, c.per_s, c.p50_ms, c.p99_ms, c.mean_ms, c.max_ms, c.errors
                );
            }
            if let Some(u) = &l.server {
                let _ = writeln!(
                    s,
                    "server CPU {:.1} s = {:.0} % of a core; PSS peak {:.1} MiB (mean {:.1}), \
                     RSS sum peak {:.1} MiB, {} processes",
                    u.cpu_s,
                    u.cpu_pct,
                    u.pss_peak_mib,
                    u.pss_mean_mib,
                    u.rss_sum_peak_mib,
                    u.processes_peak
                );
            }
            let _ = writeln!(
                s,
                "load generator CPU {:.0} %, machine busy {:.0} %{}",
                l.loadgen_cpu_pct,
                l.machine_busy_pct,
                l.foreign_cpu_pct
                    .map(|f| format!(", foreign {f:.0} %"))
                    .unwrap_or_default()
            );
            let _ = writeln!(s, "errors: {}", l.errors);
            for e in &l.error_samples {
                let _ = writeln!(s, "  {e}");
            }
            if l.unparsed_responses > 0 {
                let _ = writeln!(
                    s,
                    "responses the client could not parse (commands counted): {}",
                    l.unparsed_responses
                );
                for e in &l.unparsed_samples {
                    let _ = writeln!(s, "  {e}");
                }
            }
        }
        if let Some(p) = &self.prefill {
            let _ = writeln!(
                s,
                "prefill: {} per user; appended {} ({:.1} MB), {} already there, {:.1} s",
                p.per_user,
                p.appended,
                p.appended_bytes as f64 / 1e6,
                p.already_there,
                p.seconds
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "idle: {} connections requested, {} in IDLE, {} failed, opened in {:.1} s",
                i.connections, i.established, i.failed, i.open_secs
            );
            for e in &i.setup_error_samples {
                let _ = writeln!(s, "  {e}");
            }
            let show = |name: &str, m: &Option<MemSnapshot>, s: &mut String| {
                if let Some(m) = m {
                    let _ = writeln!(
                        s,
                        "  server {name:<7} {:>5} processes, PSS {:>9.1} MiB, RSS sum {:>9.1} MiB",
                        m.processes,
                        m.pss_kib as f64 / 1024.0,
                        m.rss_kib as f64 / 1024.0
                    );
                }
            };
            show("fresh", &i.server_fresh, &mut s);
            show("warm", &i.server_warm, &mut s);
            show("idling", &i.server_idle, &mut s);
            show("closed", &i.server_closed, &mut s);
            if let (Some(p), Some(r)) = (i.pss_per_connection_kib, i.rss_per_connection_kib) {
                let _ = writeln!(
                    s,
                    "  per idle connection: PSS {p:.1} KiB, RSS {r:.1} KiB (from fresh: PSS {:.1} KiB)",
                    i.pss_per_connection_from_fresh_kib.unwrap_or(0.0)
                );
            }
            let _ = writeln!(s, "  load generator RSS {:.1} MiB", i.loadgen_rss_mib);
            if let Some(w) = &i.wake {
                let _ = writeln!(
                    s,
                    "  wake-up: APPEND to {} users; {} of their {} idling connections got EXISTS \
                     within {:.0} ms ({} at all); p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
                     APPEND p50 {:.1} ms, {} failed",
                    w.users,
                    w.woken_within_window,
                    w.connections,
                    w.window_ms,
                    w.woken,
                    w.p50_ms,
                    w.p99_ms,
                    w.max_ms,
                    w.append_p50_ms,
                    w.append_errors
                );
            }
            let _ = writeln!(
                s,
                "  still idling at the end: {}; DONE + LOGOUT completed: {}",
                i.alive_before_logout, i.logged_out
            );
        }
        s
    }
}

// ------------------------------------------------------------------ /proc

/// Reading processes' CPU and memory from `/proc` (Linux).
pub(crate) mod proc {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::MemSnapshot;

    /// `(pid, ppid)` of every process.
    fn all_parents() -> Vec<(u32, u32)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let fields = stat_fields(&stat)?;
                Some((pid, fields.first()?.parse().ok()?))
            })
            .collect()
    }

    /// The fields after `pid (comm)`, starting with the state (field 3).
    fn stat_fields(stat: &str) -> Option<Vec<&str>> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut v: Vec<&str> = rest.split_whitespace().collect();
        // Put ppid (field 4) first: drop the state.
        if v.is_empty() {
            return None;
        }
        v.remove(0);
        Some(v)
    }

    /// The roots and all their descendants that exist now.
    pub(super) fn tree(roots: &[u32]) -> Vec<u32> {
        let parents = all_parents();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(pid, ppid) in &parents {
            children.entry(ppid).or_default().push(pid);
        }
        let mut out = Vec::new();
        let mut todo: Vec<u32> = roots
            .iter()
            .copied()
            .filter(|p| parents.iter().any(|(q, _)| q == p))
            .collect();
        while let Some(p) = todo.pop() {
            if out.contains(&p) {
                continue;
            }
            out.push(p);
            if let Some(c) = children.get(&p) {
                todo.extend(c);
            }
        }
        out
    }

    /// utime + stime + cutime + cstime of one process, clock ticks.
    fn cpu_ticks(pid: &str) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f = stat_fields(&stat)?;
        // After dropping the state, field k of proc(5) is at index k - 4:
        // utime 14, stime 15, cutime 16, cstime 17.
        let mut sum = 0u64;
        for k in 14..=17 {
            let v: i64 = f.get(k - 4)?.parse().ok()?;
            sum += v.max(0) as u64;
        }
        Some(sum)
    }

    /// CPU of the trees rooted at `roots`, reaped children included.
    pub(crate) fn tree_cpu_ticks(roots: &[u32]) -> u64 {
        tree(roots)
            .iter()
            .filter_map(|p| cpu_ticks(&p.to_string()))
            .sum()
    }

    /// utime + stime of this process (children excluded).
    pub(super) fn self_cpu_ticks() -> u64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0;
        };
        let Some(f) = stat_fields(&stat) else {
            return 0;
        };
        [14usize, 15]
            .iter()
            .filter_map(|&k| f.get(k - 4)?.parse::<u64>().ok())
            .sum()
    }

    /// Busy ticks of the whole machine (all CPUs): total minus idle and
    /// iowait, from the first line of /proc/stat.
    pub(crate) fn machine_busy_ticks() -> u64 {
        let Ok(s) = std::fs::read_to_string("/proc/stat") else {
            return 0;
        };
        let Some(line) = s.lines().next() else {
            return 0;
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 5 {
            return 0;
        }
        v.iter().sum::<u64>() - v[3] - v[4]
    }

    /// USER_HZ (`getconf CLK_TCK`; 100 on Linux's common architectures).
    pub(crate) fn clock_ticks_per_s() -> f64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    }

    /// A `Key:   123 kB` line's number.
    fn kib_field(text: &str, key: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l[key.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// VmRSS and Pss summed over the trees rooted at `roots`.
    pub(super) fn tree_memory(roots: &[u32]) -> MemSnapshot {
        let pids = tree(roots);
        let mut m = MemSnapshot {
            processes: pids.len(),
            rss_kib: 0,
            pss_kib: 0,
        };
        for p in pids {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) {
                m.rss_kib += kib_field(&s, "VmRSS:").unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
                m.pss_kib += kib_field(&s, "Pss:").unwrap_or(0);
            }
        }
        m
    }

    /// The soft RLIMIT_NOFILE of this process.
    pub(super) fn open_files_limit() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = s.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Peak and mean of the trees' memory, sampled on a thread.
    pub(super) struct MemSampler {
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<MemSummary>>,
    }

    #[derive(Default)]
    pub(super) struct MemSummary {
        pub(super) pss_peak_kib: u64,
        pub(super) pss_mean_kib: f64,
        pub(super) rss_peak_kib: u64,
        pub(super) processes_peak: usize,
    }

    impl MemSampler {
        pub(super) fn start(roots: Vec<u32>, every: Duration) -> MemSampler {
            let stop = Arc::new(AtomicBool::new(false));
            if roots.is_empty() {
                return MemSampler { stop, handle: None };
            }
            let flag = stop.clone();
            let handle = std::thread::spawn(move || {
                let mut sum = MemSummary::default();
                let mut total = 0f64;
                let mut n = 0u32;
                loop {
                    let m = tree_memory(&roots);
                    sum.pss_peak_kib = sum.pss_peak_kib.max(m.pss_kib);
                    sum.rss_peak_kib = sum.rss_peak_kib.max(m.rss_kib);
                    sum.processes_peak = sum.processes_peak.max(m.processes);
                    total += m.pss_kib as f64;
                    n += 1;
                    // Sleep in small steps to stop promptly.
                    let mut slept = Duration::ZERO;
                    while slept < every && !flag.load(Ordering::SeqCst) {
                        let step = Duration::from_millis(50);
                        std::thread::sleep(step);
                        slept += step;
                    }
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                }
                sum.pss_mean_kib = total / f64::from(n.max(1));
                sum
            });
            MemSampler {
                stop,
                handle: Some(handle),
            }
        }

        pub(super) fn finish(mut self) -> MemSummary {
            self.stop.store(true, Ordering::SeqCst);
            self.handle
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_survive_spaces_and_parens_in_comm() {
            let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0";
            let f = stat_fields(stat).unwrap();
            assert_eq!(f[0], "7");
            assert_eq!(f[14 - 4], "11");
            assert_eq!(f[17 - 4], "44");
        }

        #[test]
        fn this_process_is_its_own_tree_and_has_memory() {
            let me = std::process::id();
            assert!(tree(&[me]).contains(&me));
            let m = tree_memory(&[me]);
            assert!(m.rss_kib > 0);
            assert!(open_files_limit().unwrap_or(1) > 0);
            assert!(machine_busy_ticks() > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_are_compressed() {
        let set: BTreeSet<u32> = [1, 2, 3, 5, 7, 8, 9, 12].into_iter().collect();
        assert_eq!(seq_set(&set), "1:3,5,7:9,12");
        assert_eq!(seq_set(&BTreeSet::new()), "");
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            let s = random_seq_set(&mut rng, 30, 30);
            assert!(!s.is_empty());
            for part in s.split(',') {
                for n in part.split(':') {
                    let n: u32 = n.parse().unwrap();
                    assert!((1..=30).contains(&n));
                }
            }
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(1, 0.5), 0);
        assert_eq!(nearest_rank(100, 0.5), 49);
        assert_eq!(nearest_rank(100, 0.99), 98);
        assert_eq!(nearest_rank(10, 0.99), 9);
        let l = Latencies::of(&[1000, 2000, 3000, 4000]);
        assert_eq!(l.p50, 2.0);
        assert_eq!(l.max, 4.0);
        assert_eq!(l.mean, 2.5);
    }

    #[test]
    fn random_choices_follow_imaptest_shapes() {
        let mut rng = Rng::new(1);
        let mut header_fields = 0;
        for _ in 0..1000 {
            let items = random_fetch_items(&mut rng);
            assert!(items.starts_with('(') && items.ends_with(')'));
            header_fields += usize::from(items.contains("HEADER.FIELDS"));
            let flags = random_flags(&mut rng);
            assert!(!flags.contains(&Flag::Deleted));
        }
        // About 1 - (3/4)^k over k = 1..4 items: roughly 40 %.
        assert!((250..=550).contains(&header_fields), "{header_fields}");
        let hits = (0..10_000).filter(|_| rng.pct(30)).count();
        assert!((2_700..=3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn flags_are_written_as_imap_flags() {
        let f = [Flag::Seen, Flag::Keyword("$Label1".into()), Flag::Draft];
        assert_eq!(flags_text(&f), "\\Seen $Label1 \\Draft");
        assert_eq!(flags_text(&[]), "");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("idle".parse::<ImapBenchMode>(), Ok(ImapBenchMode::Idle));
        assert!("nope".parse::<ImapBenchMode>().is_err());
    }
}
