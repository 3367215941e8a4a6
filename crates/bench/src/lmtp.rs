//! The LMTP delivery benchmark: corpus messages delivered to any LMTP server
//! over `connections` concurrent connections (`docs/benchmarks.md`, "LMTP
//! delivery (one slot, loopback)"; `bench/lmtp-vs-dovecot.sh` runs it
//! against a slotmail slot and Dovecot's LMTP).
//!
//! # What one run does
//!
//! 1. Reads the corpus (an mboxrd file, [`crate::mbox`]): the messages as an
//!    MTA hands them over, CRLF line ends.
//! 2. Opens `connections` connections (greeting, `LHLO`); none of this is
//!    timed.
//! 3. Warm-up (optional, untimed): the smallest corpus message once to every
//!    user, so that mailboxes exist and the server's per-user state (Dovecot
//!    creates a user's mail directory and index on the first delivery) is in
//!    the state of a running server, not of an empty one.
//! 4. The measured window: each connection takes the next transaction number
//!    `i` (one counter shared by all connections) and delivers corpus message
//!    `i mod n` in one transaction (`MAIL`, `RCPT`…, `DATA`, pipelined when
//!    the server offers `PIPELINING`) to `recipients_per_message` recipients:
//!    users `(i·k + j) mod users + 1` for `j < k`, so single-recipient
//!    transactions go round-robin over the users and a k-recipient
//!    transaction goes to k distinct users. It waits for every recipient's
//!    reply after the data before starting its next transaction. The run
//!    ends after `count` transactions or once `duration` has passed (a
//!    transaction under way then still completes and counts), whichever
//!    comes first.
//!
//! # Figures
//!
//! - **messages/s**: transactions in which every recipient got a 2xx reply,
//!   per second of the measured window; **recipients/s**: delivered copies
//!   (2xx replies after the data) per second; **MB/s**: message bytes
//!   (10^6, CRLF, as sent once per transaction; the server adds its trace
//!   headers) of those transactions per second.
//! - **latency**: one transaction, from writing `MAIL FROM` to the last
//!   recipient's reply after the data; p50, p90, p99 and maximum over every
//!   transaction that got its replies.
//! - **errors**: transactions with a recipient that was not delivered (any
//!   reply other than 2xx; a sample of the replies is kept) plus client
//!   failures (I/O, timeout, a closed connection: the connection is opened
//!   again, at most [`RECONNECTS_MAX`] times in a row).
//! - **server CPU** (with `server_pids`): utime+stime+cutime+cstime summed
//!   over the process trees rooted there (`/proc/PID/stat`; children reaped
//!   during the window are in their parent's cutime), read at the start and
//!   the end of the window; per message and per recipient. For a
//!   multi-process server (Dovecot) that includes its master, auth and log
//!   processes. The machine's busy CPU (`/proc/stat`) and this process's
//!   own CPU give what other tenants used meanwhile.

use crate::machine::MachineFacts;
use crate::mbox::{MboxError, read_mbox};
use serde::Serialize;
use slotmail_lmtp::{Client, ClientConfig, ClientError, DeliveryReport};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Recipients per transaction of the multi-recipient variant.
pub const MULTI_RECIPIENTS_DEFAULT: usize = 10;
/// Connections opened again in a row after client failures before a
/// connection gives up.
pub const RECONNECTS_MAX: u32 = 3;
/// Most error messages kept as samples in a report.
const ERROR_SAMPLES_MAX: usize = 20;
/// Timeout of each network operation of the client.
pub const CLIENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone)]
pub struct LmtpBenchOptions {
    /// The server, `host:port`.
    pub addr: String,
    /// An mbox file (mboxrd), e.g. made by the corpus generator.
    pub corpus: PathBuf,
    /// Use only the first N corpus messages.
    pub limit: Option<usize>,
    /// Users `1..=users`.
    pub users: u32,
    /// Local part of a recipient; `%d` is the user number.
    pub user_pattern: String,
    /// Domain of the recipients.
    pub domain: String,
    /// Envelope sender (`MAIL FROM`), without angle brackets.
    pub sender: String,
    /// Concurrent connections, each running one transaction at a time.
    pub connections: usize,
    /// Recipients of each transaction (1, or e.g. 10 for the multi-recipient
    /// variant); at most `users`.
    pub recipients_per_message: usize,
    /// Stop after this many transactions (the corpus is reused from its
    /// start when it has fewer messages).
    pub count: Option<u64>,
    /// Stop starting transactions after this long.
    pub duration: Option<Duration>,
    /// Deliver the smallest corpus message to every user first (untimed).
    pub warmup: bool,
    /// Roots of the server's process tree, for its CPU.
    pub server_pids: Vec<u32>,
    /// Name sent with `LHLO`.
    pub lhlo_name: String,
    /// Timeout of each client read or write.
    pub timeout: Duration,
}

impl LmtpBenchOptions {
    /// Defaults: 100 users `u1..u100@bench.test`, one connection, one
    /// recipient per message, the whole corpus once, with the warm-up.
    pub fn new(addr: impl Into<String>, corpus: impl Into<PathBuf>) -> Self {
        LmtpBenchOptions {
            addr: addr.into(),
            corpus: corpus.into(),
            limit: None,
            users: 100,
            user_pattern: "u%d".into(),
            domain: "bench.test".into(),
            sender: "sender@bench.test".into(),
            connections: 1,
            recipients_per_message: 1,
            count: None,
            duration: None,
            warmup: true,
            server_pids: Vec::new(),
            lhlo_name: "lmtp-bench.test".into(),
            timeout: CLIENT_TIMEOUT_DEFAULT,
        }
    }

    /// The address of user `k` (1-based).
    pub fn recipient(&self, k: u32) -> String {
        format!(
            "{}@{}",
            self.user_pattern.replace("%d", &k.to_string()),
            self.domain
        )
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum LmtpBenchError {
    #[error(transparent)]
    Corpus(#[from] MboxError),
    #[error("the corpus has no messages")]
    EmptyCorpus,
    #[error("invalid options: {0}")]
    Options(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: ClientError,
    },
    #[error("reading the corpus: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The corpus as used.
#[derive(Debug, Clone, Serialize)]
pub struct LmtpCorpusFacts {
    pub path: String,
    pub messages: usize,
    /// Total bytes (CRLF line ends, as sent).
    pub bytes: u64,
    pub median_bytes: u64,
    pub max_bytes: u64,
}

/// Latency of one transaction, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LmtpLatency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// CPU used by the server's process trees during the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCpu {
    pub pids: Vec<u32>,
    /// Processes in the trees at the start and at the end of the window.
    pub processes_start: usize,
    pub processes_end: usize,
    pub cpu_s: f64,
    /// Percent of one CPU over the window.
    pub cpu_pct: f64,
    /// Server CPU per delivered message (transaction), milliseconds.
    pub cpu_ms_per_message: Option<f64>,
    /// Server CPU per delivered copy (recipient), milliseconds.
    pub cpu_ms_per_recipient: Option<f64>,
}

/// The warm-up's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupReport {
    pub users: u32,
    pub delivered: u64,
    pub failed: u64,
    pub message_bytes: u64,
    pub seconds: f64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LmtpBenchReport {
    pub machine: MachineFacts,
    pub addr: String,
    /// The server's greeting (names the software).
    pub greeting: String,
    pub corpus: LmtpCorpusFacts,
    pub users: u32,
    pub connections: usize,
    pub recipients_per_message: usize,
    pub count_limit: Option<u64>,
    pub duration_limit_s: Option<f64>,
    pub warmup: Option<WarmupReport>,
    /// Wall time of the measured window, seconds.
    pub seconds: f64,
    /// Transactions that got replies (delivered or not).
    pub transactions: u64,
    /// Transactions in which every recipient was delivered.
    pub messages_delivered: u64,
    /// Delivered copies (2xx after the data).
    pub recipients_delivered: u64,
    /// Recipients not delivered (a non-2xx reply) in transactions that got
    /// replies.
    pub recipients_failed: u64,
    /// Message bytes of the delivered transactions (once per transaction).
    pub bytes_delivered: u64,
    pub messages_per_s: f64,
    /// Decimal megabytes (10^6 bytes) of message per second.
    pub mb_per_s: f64,
    pub recipients_per_s: f64,
    /// Per transaction that got replies.
    pub latency_ms: Option<LmtpLatency>,
    /// Transactions not fully delivered plus client failures.
    pub errors: u64,
    /// Client failures (I/O, timeout, closed connection) among `errors`.
    pub client_failures: u64,
    pub error_samples: Vec<String>,
    pub server: Option<ServerCpu>,
    /// Machine-wide busy CPU over the window (all processes, /proc/stat),
    /// percent of one CPU.
    pub machine_busy_pct: Option<f64>,
    /// This load generator's own CPU, percent of one CPU.
    pub client_cpu_pct: Option<f64>,
    /// Busy CPU neither the server nor this process used: other tenants.
    pub foreign_cpu_pct: Option<f64>,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    transactions: u64,
    messages_delivered: u64,
    recipients_delivered: u64,
    recipients_failed: u64,
    bytes_delivered: u64,
    failed_transactions: u64,
    client_failures: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.transactions += other.transactions;
        self.messages_delivered += other.messages_delivered;
        self.recipients_delivered += other.recipients_delivered;
        self.recipients_failed += other.recipients_failed;
        self.bytes_delivered += other.bytes_delivered;
        self.failed_transactions += other.failed_transactions;
        self.client_failures += other.client_failures;
    }
}

/// State shared by the connections of a run.
struct Shared {
    opts: LmtpBenchOptions,
    messages: Vec<Vec<u8>>,
    /// Recipient addresses, index k-1 for user k.
    recipients: Vec<String>,
    next: AtomicU64,
    deadline: Option<Instant>,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn sample(&self, text: String) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < ERROR_SAMPLES_MAX {
            s.push(text);
        }
    }

    /// The recipients of transaction `i`.
    fn recipients_of(&self, i: u64) -> Vec<&str> {
        let k = self.opts.recipients_per_message as u64;
        let users = self.recipients.len() as u64;
        (0..k)
            .map(|j| self.recipients[((i * k + j) % users) as usize].as_str())
            .collect()
    }

    async fn connect(&self) -> Result<Client<TcpStream>, ClientError> {
        let mut config = ClientConfig::new(self.opts.lhlo_name.clone());
        config.timeout = self.opts.timeout;
        Client::connect(self.opts.addr.as_str(), config).await
    }
}

/// Run the benchmark (see the module documentation).
pub async fn run_lmtp_bench(opts: LmtpBenchOptions) -> Result<LmtpBenchReport, LmtpBenchError> {
    if opts.connections == 0 {
        return Err(LmtpBenchError::Options(
            "connections must be at least 1".into(),
        ));
    }
    if opts.users == 0 {
        return Err(LmtpBenchError::Options("users must be at least 1".into()));
    }
    if opts.recipients_per_message == 0 || opts.recipients_per_message > opts.users as usize {
        return Err(LmtpBenchError::Options(format!(
            "recipients per message must be 1 to users ({})",
            opts.users
        )));
    }
    if opts.count.is_none() && opts.duration.is_none() {
        return Err(LmtpBenchError::Options(
            "give a transaction count, a duration or both: the run must be bounded".into(),
        ));
    }
    let path = opts.corpus.clone();
    let limit = opts.limit;
    let mut messages: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        read_mbox(&path).map(|ms| ms.into_iter().map(|m| m.raw).collect::<Vec<_>>())
    })
    .await??;
    if let Some(n) = limit {
        messages.truncate(n);
    }
    if messages.is_empty() {
        return Err(LmtpBenchError::EmptyCorpus);
    }
    let corpus = corpus_facts(&opts.corpus, &messages);
    let machine = MachineFacts::gather(Path::new("."));
    let recipients = (1..=opts.users).map(|k| opts.recipient(k)).collect();

    // Connections, untimed.
    let mut shared = Shared {
        opts,
        messages,
        recipients,
        next: AtomicU64::new(0),
        deadline: None,
        samples: Mutex::new(Vec::new()),
    };
    let mut clients = Vec::with_capacity(shared.opts.connections);
    for _ in 0..shared.opts.connections {
        let client = shared
            .connect()
            .await
            .map_err(|source| LmtpBenchError::Connect {
                addr: shared.opts.addr.clone(),
                source,
            })?;
        clients.push(client);
    }
    let greeting = clients[0].greeting().text();

    let warmup = if shared.opts.warmup {
        let (report, back) = warm_up(&shared, clients).await;
        clients = back;
        Some(report)
    } else {
        None
    };

    // The measured window.
    shared.deadline = shared.opts.duration.map(|d| Instant::now() + d);
    let shared = Arc::new(shared);
    let clk = proc::clock_ticks_per_s();
    let server_start = (!shared.opts.server_pids.is_empty())
        .then(|| proc::tree_cpu_ticks(&shared.opts.server_pids));
    let busy_start = proc::machine_busy_ticks();
    let self_start = proc::self_cpu_ticks();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let shared = shared.clone();
        tasks.spawn(async move { connection(shared, client).await });
    }
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(t) => tally.add(t),
            Err(e) => shared.sample(format!("connection task failed: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_end = server_start.map(|_| proc::tree_cpu_ticks(&shared.opts.server_pids));
    let busy = busy_start
        .zip(proc::machine_busy_ticks())
        .map(|(a, b)| b.saturating_sub(a));
    let own = self_start
        .zip(proc::self_cpu_ticks())
        .map(|(a, b)| b.saturating_sub(a));

    let per_s = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    let pct = |ticks: u64| ticks as f64 / clk / seconds.max(1e-9) * 100.0;
    let server = match (server_start, server_end) {
        (Some((p0, c0)), Some((p1, c1))) => {
            let cpu_s = c1.saturating_sub(c0) as f64 / clk;
            Some(ServerCpu {
                pids: shared.opts.server_pids.clone(),
                processes_start: p0,
                processes_end: p1,
                cpu_s,
                cpu_pct: pct(c1.saturating_sub(c0)),
                cpu_ms_per_message: (tally.messages_delivered > 0)
                    .then(|| cpu_s * 1e3 / tally.messages_delivered as f64),
                cpu_ms_per_recipient: (tally.recipients_delivered > 0)
                    .then(|| cpu_s * 1e3 / tally.recipients_delivered as f64),
            })
        }
        _ => None,
    };
    let server_ticks = match (server_start, server_end) {
        (Some((_, a)), Some((_, b))) => b.saturating_sub(a),
        _ => 0,
    };
    let foreign = busy.map(|b| pct(b.saturating_sub(server_ticks + own.unwrap_or(0))));
    let error_samples = shared
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let opts = &shared.opts;
    Ok(LmtpBenchReport {
        machine,
        addr: opts.addr.clone(),
        greeting,
        corpus,
        users: opts.users,
        connections: opts.connections,
        recipients_per_message: opts.recipients_per_message,
        count_limit: opts.count,
        duration_limit_s: opts.duration.map(|d| d.as_secs_f64()),
        warmup,
        seconds,
        transactions: tally.transactions,
        messages_delivered: tally.messages_delivered,
        recipients_delivered: tally.recipients_delivered,
        recipients_failed: tally.recipients_failed,
        bytes_delivered: tally.bytes_delivered,
        messages_per_s: per_s(tally.messages_delivered as f64),
        mb_per_s: per_s(tally.bytes_delivered as f64 / 1e6),
        recipients_per_s: per_s(tally.recipients_delivered as f64),
        latency_ms: latency(&mut tally.latencies),
        errors: tally.failed_transactions + tally.client_failures,
        client_failures: tally.client_failures,
        error_samples,
        server,
        machine_busy_pct: busy.map(pct),
        client_cpu_pct: own.map(pct),
        foreign_cpu_pct: foreign,
    })
}

/// One connection's loop over the measured window.
async fn connection(shared: Arc<Shared>, client: Client<TcpStream>) -> Tally {
    let mut tally = Tally::default();
    let mut client = Some(client);
    let mut failures_in_a_row = 0u32;
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.opts.count.is_some_and(|c| i >= c) {
            break;
        }
        let c = match client.as_mut() {
            Some(c) => c,
            None => match shared.connect().await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    tally.client_failures += 1;
                    shared.sample(format!("reconnect: {e}"));
                    failures_in_a_row += 1;
                    if failures_in_a_row > RECONNECTS_MAX {
                        break;
                    }
                    continue;
                }
            },
        };
        let message = &shared.messages[(i % shared.messages.len() as u64) as usize];
        let rcpts = shared.recipients_of(i);
        let t = Instant::now();
        match c.deliver(&shared.opts.sender, &rcpts, message).await {
            Ok(report) => {
                failures_in_a_row = 0;
                tally.latencies.push(t.elapsed());
                tally.transactions += 1;
                let complete = count_report(&shared, &report, message.len() as u64, &mut tally);
                // A refused DATA leaves the transaction open (RFC 5321 §3.3).
                if !complete && c.rset().await.is_err() {
                    client = None;
                }
            }
            Err(e) => {
                tally.client_failures += 1;
                shared.sample(format!("transaction {i}: {e}"));
                client = None;
                failures_in_a_row += 1;
                if failures_in_a_row > RECONNECTS_MAX {
                    break;
                }
            }
        }
    }
    if let Some(c) = client {
        // Best effort: the figures are taken already.
        let _ = c.quit().await;
    }
    tally
}

/// Counts one transaction's replies; true when every recipient got the
/// message.
fn count_report(shared: &Shared, report: &DeliveryReport, bytes: u64, tally: &mut Tally) -> bool {
    let delivered = report.recipients.iter().filter(|r| r.delivered()).count() as u64;
    let failed = report.recipients.len() as u64 - delivered;
    tally.recipients_delivered += delivered;
    tally.recipients_failed += failed;
    let complete = failed == 0 && delivered > 0;
    if complete {
        tally.messages_delivered += 1;
        tally.bytes_delivered += bytes;
    } else {
        tally.failed_transactions += 1;
        let why = if !report.mail_reply.is_positive() {
            format!("MAIL: {}", report.mail_reply)
        } else if let Some(r) = report.recipients.iter().find(|r| !r.delivered()) {
            format!("{}: {}", r.recipient, r.final_reply())
        } else {
            format!("DATA: {}", report.data_reply)
        };
        shared.sample(why.trim_end().to_string());
    }
    complete
}

/// The smallest corpus message once to every user, spread over the
/// connections; untimed. Returns the connections that still work.
async fn warm_up(
    shared: &Shared,
    clients: Vec<Client<TcpStream>>,
) -> (WarmupReport, Vec<Client<TcpStream>>) {
    let smallest = shared
        .messages
        .iter()
        .min_by_key(|m| m.len())
        .expect("the corpus is not empty");
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let n = shared.recipients.len() as u64;
    let work = clients.into_iter().map(|mut c| {
        let next = &next;
        async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let rcpt = shared.recipients[k as usize].as_str();
                match c.deliver(&shared.opts.sender, &[rcpt], smallest).await {
                    Ok(r) if r.recipients.iter().all(|r| r.delivered()) => ok += 1,
                    Ok(r) => {
                        failed += 1;
                        if let Some(r) = r.recipients.first() {
                            shared.sample(format!("warm-up {rcpt}: {}", r.final_reply()));
                        }
                        if c.rset().await.is_err() {
                            match shared.connect().await {
                                Ok(fresh) => c = fresh,
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        shared.sample(format!("warm-up {rcpt}: {e}"));
                        match shared.connect().await {
                            Ok(fresh) => c = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (ok, failed, c)
        }
    });
    let results = join_all(work).await;
    let mut back = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for (o, f, c) in results {
        ok += o;
        failed += f;
        back.push(c);
    }
    (
        WarmupReport {
            users: shared.recipients.len() as u32,
            delivered: ok,
            failed,
            message_bytes: smallest.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
        },
        back,
    )
}

/// Runs the futures concurrently on this task and returns their outputs in
/// order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn corpus_facts(path: &Path, messages: &[Vec<u8>]) -> LmtpCorpusFacts {
    let mut sizes: Vec<u64> = messages.iter().map(|m| m.len() as u64).collect();
    sizes.sort_unstable();
    LmtpCorpusFacts {
        path: path.display().to_string(),
        messages: messages.len(),
        bytes: sizes.iter().sum(),
        median_bytes: sizes[sizes.len() / 2],
        max_bytes: *sizes.last().unwrap_or(&0),
    }
}

fn latency(samples: &mut [Duration]) -> Option<LmtpLatency> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    Some(LmtpLatency {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: at(1.0),
    })
}

impl LmtpBenchReport {
    /// A human-readable summary.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} CPUs ({}), {} MiB, kernel {}, {}",
            m.nproc,
            m.cpu.as_deref().unwrap_or("?"),
            m.memory_mib.unwrap_or(0),
            m.kernel.as_deref().unwrap_or("?"),
            m.date
        );
        let c = &self.corpus;
        let _ = writeln!(
            s,
            "corpus: {} messages, {:.1} MB (CRLF), median {} B, max {} B",
            c.messages,
            c.bytes as f64 / 1e6,
            c.median_bytes,
            c.max_bytes
        );
        let _ = writeln!(s, "server: {} ({})", self.addr, self.greeting);
        if let Some(w) = &self.warmup {
            let _ = writeln!(
                s,
                "warm-up: {} of {} users got a {} B message in {:.2} s ({} failed)",
                w.delivered, w.users, w.message_bytes, w.seconds, w.failed
            );
        }
        let _ = writeln!(
            s,
            "{} connection(s), {} recipient(s) per message, {} users: {} transactions in {:.2} s",
            self.connections,
            self.recipients_per_message,
            self.users,
            self.transactions,
            self.seconds
        );
        let _ = writeln!(
            s,
            "delivered: {:.1} messages/s, {:.2} MB/s, {:.1} recipients/s ({} messages, {} copies, {:.1} MB)",
            self.messages_per_s,
            self.mb_per_s,
            self.recipients_per_s,
            self.messages_delivered,
            self.recipients_delivered,
            self.bytes_delivered as f64 / 1e6
        );
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                s,
                "latency per transaction: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50, l.p90, l.p99, l.max
            );
        }
        let _ = writeln!(
            s,
            "errors: {} ({} client failures, {} recipients refused)",
            self.errors, self.client_failures, self.recipients_failed
        );
        for e in &self.error_samples {
            let _ = writeln!(s, "  {e}");
        }
        if let Some(cpu) = &self.server {
            let _ = writeln!(
                s,
                "server CPU: {:.2} s ({:.0} % of one CPU; {} → {} processes), {} ms per message, {} ms per recipient",
                cpu.cpu_s,
                cpu.cpu_pct,
                cpu.processes_start,
                cpu.processes_end,
                opt(cpu.cpu_ms_per_message),
                opt(cpu.cpu_ms_per_recipient)
            );
        }
        let _ = writeln!(
            s,
            "machine busy {} % of one CPU, this client {} %, others {} %",
            opt0(self.machine_busy_pct),
            opt0(self.client_cpu_pct),
            opt0(self.foreign_cpu_pct)
        );
        s
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.2}"))
}

fn opt0(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.0}"))
}

/// Reading processes' CPU from `/proc` (Linux); `None` or 0 elsewhere.
mod proc {
    use std::collections::HashMap;

    /// The fields after `pid (comm)`, starting with the state (field 3 of
    /// proc(5)), so that field k is at index k - 3.
    fn stat_fields(stat: &str) -> Option<Vec<&str>> {
        Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
    }

    /// `(pid, ppid, utime+stime+cutime+cstime)` of every process.
    fn all() -> Vec<(u32, u32, u64)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let f = stat_fields(&stat)?;
                let ppid = f.get(4 - 3)?.parse().ok()?;
                let mut ticks = 0u64;
                for k in 14..=17 {
                    ticks += f.get(k - 3)?.parse::<i64>().ok()?.max(0) as u64;
                }
                Some((pid, ppid, ticks))
            })
            .collect()
    }

    /// Processes in the trees rooted at `roots` and their CPU ticks, reaped
    /// children included.
    pub(super) fn tree_cpu_ticks(roots: &[u32]) -> (usize, u64) {
        let all = all();
        let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, &(_, ppid, _)) in all.iter().enumerate() {
            children.entry(ppid).or_default().push(i);
        }
        let mut seen = vec![false; all.len()];
        let mut todo: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, p)| roots.contains(&p.0))
            .map(|(i, _)| i)
            .collect();
        let (mut n, mut ticks) = (0, 0);
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            n += 1;
            ticks += all[i].2;
            if let Some(c) = children.get(&all[i].0) {
                todo.extend(c);
            }
        }
        (n, ticks)
    }

    /// utime + stime of this process.
    pub(super) fn self_cpu_ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let f = stat_fields(&stat)?;
        Some(f.get(14 - 3)?.parse::<u64>().ok()? + f.get(15 - 3)?.parse::<u64>().ok()?)
    }

    /// Busy ticks of the whole machine (all CPUs): total minus idle and
    /// iowait, from the first line of /proc/stat.
    pub(super) fn machine_busy_ticks() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = s
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() >= 5).then(|| v.iter().sum::<u64>() - v[3] - v[4])
    }

    /// USER_HZ (`getconf CLK_TCK`; 100 on Linux's common architectures).
    pub(super) fn clock_ticks_per_s() -> f64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_this_process() {
            let me = std::process::id();
            let (n, _) = tree_cpu_ticks(&[me]);
            assert!(n >= 1);
            assert_eq!(tree_cpu_ticks(&[u32::MAX]).0, 0);
            assert!(self_cpu_ticks().is_some());
            assert!(machine_busy_ticks().is_some());
        }

        #[test]
        fn stat_fields_skip_a_command_with_spaces_and_parens() {
            let f = stat_fields("42 (a (b) c) S 7 42 42 0 -1").unwrap();
            assert_eq!(f[0], "S");
            assert_eq!(f[4 - 3], "7");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(users: u32, k: usize) -> Shared {
        let opts = LmtpBenchOptions {
            users,
            recipients_per_message: k,
            ..LmtpBenchOptions::new("127.0.0.1:1", "x.mbox")
        };
        Shared {
            recipients: (1..=users).map(|u| opts.recipient(u)).collect(),
            opts,
            messages: vec![b"a\r\n".to_vec()],
            next: AtomicU64::new(0),
            deadline: None,
            samples: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn single_recipients_go_round_robin() {
        let s = shared(3, 1);
        let got: Vec<_> = (0..4).map(|i| s.recipients_of(i)[0].to_string()).collect();
        assert_eq!(
            got,
            [
                "u1@bench.test",
                "u2@bench.test",
                "u3@bench.test",
                "u1@bench.test"
            ]
        );
    }

    #[test]
    fn multi_recipient_transactions_name_distinct_users() {
        let s = shared(25, 10);
        for i in 0..50 {
            let mut r = s.recipients_of(i);
            assert_eq!(r.len(), 10);
            r.sort_unstable();
            r.dedup();
            assert_eq!(r.len(), 10, "transaction {i}");
        }
        assert_eq!(s.recipients_of(1)[0], "u11@bench.test");
    }

    #[test]
    fn latency_percentiles() {
        let mut d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = latency(&mut d).unwrap();
        assert_eq!((l.p50.round(), l.p99.round(), l.max), (51.0, 99.0, 100.0));
        assert!(latency(&mut []).is_none());
    }

    #[test]
    fn unbounded_or_impossible_runs_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for opts in [
            LmtpBenchOptions::new("127.0.0.1:1", "x.mbox"),
            LmtpBenchOptions {
                count: Some(1),
                recipients_per_message: 101,
                ..LmtpBenchOptions::new("127.0.0.1:1", "x.mbox")
            },
            LmtpBenchOptions {
                count: Some(1),
                connections: 0,
                ..LmtpBenchOptions::new("127.0.0.1:1", "x.mbox")
            },
        ] {
            assert!(matches!(
                rt.block_on(run_lmtp_bench(opts)),
                Err(LmtpBenchError::Options(_))
            ));
        }
    }
}
