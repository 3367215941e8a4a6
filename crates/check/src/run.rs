//! One run of the check: pick the users, prepare the admin account,
//! compare each user's master with each replica, re-check what differs
//! after the replication lag, classify, and record per store.

use crate::account::{self, MasterSocket};
use crate::collect::{self, CollectError, Credentials, Level, Tls, collect};
use crate::compare::{Class, Difference, compare, confirmed};
use crate::progress::{Progress, RateLimiter};
use crate::view::UserView;
use serde::Serialize;
use slotmail_ctl::cluster::Cluster;
use slotmail_directory::{CheckResult, CheckStatus, Directory, Topology};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Re-checks of a difference before it is classified.
pub const RECHECKS_MAX: usize = 3;
/// Shortest wait before a re-check.
pub const RECHECK_WAIT_MIN: Duration = Duration::from_millis(200);
/// Longest wait before a re-check (a replica far behind is "lagging").
pub const RECHECK_WAIT_MAX: Duration = Duration::from_secs(30);
/// Added to the reported lag before a re-check.
pub const RECHECK_MARGIN: Duration = Duration::from_millis(200);
/// Wait before a re-check when the master reports no replication status.
pub const RECHECK_WAIT_UNKNOWN: Duration = Duration::from_secs(2);
/// A replication status older than this is not trusted.
pub const STATUS_STALE_MS: u64 = 10_000;
/// Largest replication status file read, in bytes.
pub const STATUS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// After creating the check account, how long a replica may take to get
/// it before a refused login counts as a failure.
pub const ACCOUNT_ARRIVAL_WAIT: Duration = Duration::from_secs(10);
/// Pause between logins while waiting for the account to arrive.
pub const ACCOUNT_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Differences kept in a report, at most (the counts stay exact).
pub const DIFFERENCES_REPORTED_MAX: usize = 10_000;

/// Which users a run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    User(String),
    Store(String),
    All,
}

/// How a run reads messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Level(Level),
    /// Full for the users of today's slice of `days`, quick for the rest:
    /// every user is fully checked once every `days` days.
    Rolling {
        days: u32,
    },
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scope: Scope,
    pub depth: Depth,
    pub rate_limit_bytes_per_s: Option<u64>,
    pub progress: bool,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The user or store named does not exist, or the cluster is unusable.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cluster(#[from] slotmail_ctl::cluster::ClusterError),
    #[error(transparent)]
    Ctl(#[from] slotmail_ctl::CtlError),
    #[error("directory: {0}")]
    Directory(#[from] slotmail_directory::DirectoryError),
    #[error("the check's account: {0}")]
    Account(#[from] account::AccountError),
    #[error("the slots' TLS certificate: {0}")]
    Tls(#[from] collect::TlsError),
}

/// A slot as the check reaches it.
#[derive(Debug, Clone)]
struct Endpoint {
    slot: String,
    address: SocketAddr,
    data_dir: String,
    /// `SLOT.CLUSTER`, the slot's host name.
    server_name: String,
}

/// One user to check.
#[derive(Debug, Clone)]
struct Target {
    user: String,
    store: String,
    level: Level,
    master: Endpoint,
    replicas: Vec<Endpoint>,
}

/// A user or slot the check could not compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub user: String,
    pub slot: String,
    pub error: String,
}

/// Per store: what the run found and what it recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreTally {
    pub users: u64,
    pub diverged: u64,
    pub lagging: u64,
    pub failed: u64,
    /// The result recorded in the directory, if the run recorded one.
    pub recorded: Option<CheckResult>,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `quick`, `full` or `rolling N days`.
    pub level: String,
    pub started_unix_ms: u64,
    pub elapsed_ms: u64,
    pub users: u64,
    /// Users checked at the full level.
    pub users_full: u64,
    /// Messages compared (master side).
    pub messages: u64,
    /// Message bytes read and hashed, both sides.
    pub bytes_read: u64,
    pub diverged: u64,
    pub lagging: u64,
    /// Differences of a first comparison that the re-check found gone
    /// (changes in flight).
    pub settled: u64,
    pub failures: Vec<Failure>,
    /// Confirmed differences (at most [`DIFFERENCES_REPORTED_MAX`]).
    pub differences: Vec<Difference>,
    pub stores: BTreeMap<String, StoreTally>,
    /// The exit code: 0 no divergence, 1 divergence, 3 the check failed.
    pub exit: u8,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `user` is in the slice of `days` fully checked on `day` (days
/// since the Unix epoch): each user falls in one slice, by a hash of its
/// name, so the slices partition the users.
pub fn in_slice(user: &str, days: u32, day: u64) -> bool {
    let days = u64::from(days.max(1));
    let h = blake3::hash(user.as_bytes());
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    n % days == day % days
}

fn endpoint(t: &Topology, cluster: &str, slot: &str) -> Result<Endpoint, RunError> {
    let s = t
        .slots
        .get(slot)
        .ok_or_else(|| RunError::Usage(format!("store slot {slot} is not in the directory")))?;
    let m = t.machines.get(&s.machine).ok_or_else(|| {
        RunError::Usage(format!(
            "machine {} of slot {slot} is not in the directory",
            s.machine
        ))
    })?;
    Ok(Endpoint {
        slot: s.id.clone(),
        address: SocketAddr::new(m.address, s.imap_port),
        data_dir: s.data_dir.clone(),
        server_name: format!("{}.{cluster}", s.id),
    })
}

fn targets(t: &Topology, cluster: &str, options: &RunOptions) -> Result<Vec<Target>, RunError> {
    let users: Vec<(&String, &String)> = match &options.scope {
        Scope::User(u) => vec![
            t.users
                .get_key_value(u)
                .ok_or_else(|| RunError::Usage(format!("no user {u} in the directory")))?,
        ],
        Scope::Store(s) => {
            if !t.stores.contains_key(s) {
                return Err(RunError::Usage(format!("no store {s} in the directory")));
            }
            t.users.iter().filter(|(_, st)| *st == s).collect()
        }
        Scope::All => t.users.iter().collect(),
    };
    let day = now_ms() / 86_400_000;
    users
        .into_iter()
        .map(|(user, store)| {
            let st = t.stores.get(store).ok_or_else(|| {
                RunError::Usage(format!(
                    "user {user}'s store {store} is not in the directory"
                ))
            })?;
            let level = match options.depth {
                Depth::Level(l) => l,
                Depth::Rolling { days } if in_slice(user, days, day) => Level::Full,
                Depth::Rolling { .. } => Level::Quick,
            };
            Ok(Target {
                user: user.clone(),
                store: store.clone(),
                level,
                master: endpoint(t, cluster, st.master())?,
                replicas: st
                    .replicas()
                    .iter()
                    .map(|r| endpoint(t, cluster, r))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// What the master's replication status says about one replica.
#[derive(Debug, Clone, Default)]
struct ReplicaLag {
    known: bool,
    rolling: bool,
    pending_users: u64,
    lag_ms: u64,
    held: Vec<String>,
}

fn replica_lag(cluster: &Cluster, master: &Endpoint, replica: &str) -> ReplicaLag {
    let path = cluster.replication_status_file(&master.data_dir);
    let Ok(file) = std::fs::File::open(path) else {
        return ReplicaLag::default();
    };
    let mut text = String::new();
    if std::io::Read::read_to_string(
        &mut std::io::Read::take(file, STATUS_FILE_BYTES_MAX),
        &mut text,
    )
    .is_err()
    {
        return ReplicaLag::default();
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return ReplicaLag::default();
    };
    let fresh = v["taken_at_unix_ms"]
        .as_u64()
        .is_some_and(|t| now_ms().saturating_sub(t) <= STATUS_STALE_MS);
    let Some(r) = v["replicas"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["slot"] == replica))
    else {
        return ReplicaLag::default();
    };
    ReplicaLag {
        known: fresh,
        rolling: r["state"] == "rolling",
        pending_users: r["pending_users"].as_u64().unwrap_or(u64::MAX),
        lag_ms: r["lag_ms"].as_u64().unwrap_or(u64::MAX),
        held: r["held"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|h| h["user"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl ReplicaLag {
    fn recheck_wait(&self) -> Duration {
        if !self.known {
            return RECHECK_WAIT_UNKNOWN;
        }
        (Duration::from_millis(self.lag_ms.min(RECHECK_WAIT_MAX.as_millis() as u64))
            + RECHECK_MARGIN)
            .clamp(RECHECK_WAIT_MIN, RECHECK_WAIT_MAX)
    }

    /// Whether the replica had received, by now, every change the master
    /// made before `since` ago: it is connected and compared, the user is
    /// not held, and nothing is pending or the oldest pending change is
    /// younger than `since`.
    fn caught_up(&self, user: &str, since: Duration) -> bool {
        self.known
            && self.rolling
            && !self.held.iter().any(|h| h == user)
            && (self.pending_users == 0 || u128::from(self.lag_ms) < since.as_millis())
    }
}

/// Shared by the comparisons of a run.
struct Ctx<'a> {
    cluster: &'a Cluster,
    credentials: Credentials,
    /// STARTTLS when the cluster's slots have a certificate.
    tls: Option<Tls>,
    /// The account was just created or changed: a refused login on a
    /// replica may be replication not having carried it yet.
    account_fresh: bool,
    limiter: RateLimiter,
    progress: Progress,
}

impl Ctx<'_> {
    async fn view(
        &self,
        at: &Endpoint,
        user: &str,
        level: Level,
    ) -> Result<UserView, CollectError> {
        let start = Instant::now();
        loop {
            let target = collect::Target {
                address: at.address,
                server_name: &at.server_name,
                tls: self.tls.as_ref(),
            };
            match collect(
                &target,
                user,
                &self.credentials,
                level,
                &self.limiter,
                &self.progress,
            )
            .await
            {
                Err(e)
                    if e.is_auth_refused()
                        && self.account_fresh
                        && start.elapsed() < ACCOUNT_ARRIVAL_WAIT =>
                {
                    tokio::time::sleep(ACCOUNT_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Both views at once, then their differences.
    async fn pair(
        &self,
        t: &Target,
        replica: &Endpoint,
    ) -> Result<(Vec<Difference>, u64), Failure> {
        let (m, r) = tokio::join!(
            self.view(&t.master, &t.user, t.level),
            self.view(replica, &t.user, t.level)
        );
        let fail = |slot: &str, e: CollectError| Failure {
            user: t.user.clone(),
            slot: slot.to_string(),
            error: e.to_string(),
        };
        let m = m.map_err(|e| fail(&t.master.slot, e))?;
        let r = r.map_err(|e| fail(&replica.slot, e))?;
        Ok((
            compare(&t.user, &replica.slot, &m, &r),
            m.message_count() as u64,
        ))
    }
}

/// What checking one user against one replica gave.
#[derive(Default)]
struct PairOutcome {
    differences: Vec<Difference>,
    settled: u64,
    messages: u64,
    failure: Option<Failure>,
}

async fn check_pair(ctx: &Ctx<'_>, t: &Target, replica: &Endpoint) -> PairOutcome {
    let first_at = Instant::now();
    let (first, messages) = match ctx.pair(t, replica).await {
        Ok(v) => v,
        Err(f) => {
            return PairOutcome {
                failure: Some(f),
                ..PairOutcome::default()
            };
        }
    };
    let mut out = PairOutcome {
        messages,
        ..PairOutcome::default()
    };
    if first.is_empty() {
        return out;
    }
    let found = first.len() as u64;
    let mut pending = first;
    for _ in 0..RECHECKS_MAX {
        let wait = replica_lag(ctx.cluster, &t.master, &replica.slot).recheck_wait();
        tokio::time::sleep(wait).await;
        let again = match ctx.pair(t, replica).await {
            Ok((d, _)) => d,
            Err(f) => {
                out.failure = Some(f);
                return out;
            }
        };
        pending = confirmed(&pending, &again);
        if pending.is_empty() {
            break;
        }
    }
    let lag = replica_lag(ctx.cluster, &t.master, &replica.slot);
    let class = if lag.caught_up(&t.user, first_at.elapsed()) {
        Class::Diverged
    } else {
        Class::Lagging
    };
    for d in &mut pending {
        d.class = class;
    }
    out.settled = found - pending.len() as u64;
    out.differences = pending;
    out
}

/// Run the check once.
pub async fn run_once(
    cluster: &Cluster,
    directory: &dyn Directory,
    options: &RunOptions,
) -> Result<Report, RunError> {
    let started = Instant::now();
    let started_unix_ms = now_ms();
    let topology = directory.snapshot()?;
    let targets = targets(&topology, &cluster.name, options)?;
    let tls = match &cluster.slot.tls_cert {
        Some(cert) => Some(Tls::trusting(cert)?),
        None => None,
    };
    let mut masters: Vec<MasterSocket> = targets
        .iter()
        .map(|t| MasterSocket {
            slot: t.master.slot.clone(),
            socket: cluster.admin_socket(&t.master.data_dir),
        })
        .collect();
    masters.sort_by(|a, b| a.slot.cmp(&b.slot));
    masters.dedup_by(|a, b| a.slot == b.slot);
    let (credentials, account_fresh) = account::ensure(&cluster.check_password_file, &masters)?;
    let ctx = Ctx {
        cluster,
        credentials,
        tls,
        account_fresh,
        limiter: RateLimiter::new(options.rate_limit_bytes_per_s),
        progress: Progress::new(),
    };
    ctx.progress.set_users(targets.len() as u64);
    let _bar = options.progress.then(|| ctx.progress.draw());

    let mut stores: BTreeMap<String, StoreTally> = BTreeMap::new();
    let mut report = Report {
        level: match options.depth {
            Depth::Level(Level::Quick) => "quick".into(),
            Depth::Level(Level::Full) => "full".into(),
            Depth::Rolling { days } => format!("rolling {days} days"),
        },
        started_unix_ms,
        elapsed_ms: 0,
        users: targets.len() as u64,
        users_full: targets.iter().filter(|t| t.level == Level::Full).count() as u64,
        messages: 0,
        bytes_read: 0,
        diverged: 0,
        lagging: 0,
        settled: 0,
        failures: Vec::new(),
        differences: Vec::new(),
        stores: BTreeMap::new(),
        exit: 0,
    };
    // Every store in scope gets a tally, even without users.
    match &options.scope {
        Scope::Store(s) => {
            stores.entry(s.clone()).or_default();
        }
        Scope::All => {
            for s in topology.stores.keys() {
                stores.entry(s.clone()).or_default();
            }
        }
        Scope::User(_) => {}
    }
    for t in &targets {
        let tally = stores.entry(t.store.clone()).or_default();
        tally.users += 1;
        let mut failed = false;
        // The master's messages, counted once however many replicas.
        let mut messages = 0;
        for replica in &t.replicas {
            let out = check_pair(&ctx, t, replica).await;
            messages = messages.max(out.messages);
            report.settled += out.settled;
            if let Some(f) = out.failure {
                tracing::debug!(user = %f.user, slot = %f.slot, error = %f.error, "check failed");
                report.failures.push(f);
                failed = true;
            }
            for d in out.differences {
                match d.class {
                    Class::Diverged => {
                        report.diverged += 1;
                        tally.diverged += 1;
                    }
                    _ => {
                        report.lagging += 1;
                        tally.lagging += 1;
                    }
                }
                if report.differences.len() < DIFFERENCES_REPORTED_MAX {
                    report.differences.push(d);
                }
            }
        }
        report.messages += messages;
        if failed {
            tally.failed += 1;
        }
        ctx.progress.user_done();
    }
    drop(_bar);
    report.bytes_read = ctx.progress.bytes_read();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.exit = if report.diverged > 0 {
        crate::EXIT_DIVERGED
    } else if !report.failures.is_empty() {
        crate::EXIT_FAILED
    } else {
        0
    };

    // Record per store: always when the whole store was in scope; for a
    // single user only what it found wrong (an "ok" for one user must not
    // hide another user's divergence).
    let whole = !matches!(options.scope, Scope::User(_));
    for (id, tally) in &mut stores {
        let status = if tally.diverged > 0 {
            CheckStatus::Differences
        } else if tally.failed > 0 {
            CheckStatus::Failed
        } else {
            CheckStatus::Ok
        };
        if !whole && status == CheckStatus::Ok {
            continue;
        }
        let result = CheckResult {
            at_unix_ms: now_ms(),
            status,
            summary: format!(
                "{}, {}{} users: {} diverged, {} lagging, {} failed",
                report.level,
                if whole { "" } else { "partial, " },
                tally.users,
                tally.diverged,
                tally.lagging,
                tally.failed
            ),
        };
        directory.record_check(id, &result)?;
        tally.recorded = Some(result);
    }
    report.stores = stores;
    Ok(report)
}

impl Report {
    /// The human report: one line per difference and failure, then the
    /// summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for d in &self.differences {
            s.push_str(&format!("{d}\n"));
        }
        let shown = self.differences.len() as u64;
        if shown < self.diverged + self.lagging {
            s.push_str(&format!(
                "... and {} more differences\n",
                self.diverged + self.lagging - shown
            ));
        }
        for f in &self.failures {
            s.push_str(&format!("failed {} {}: {}\n", f.user, f.slot, f.error));
        }
        let secs = self.elapsed_ms as f64 / 1000.0;
        s.push_str(&format!(
            "checked {} users ({}, {} at full) on {} stores in {secs:.1} s: {} messages, {} read ({}/s)\n",
            self.users,
            self.level,
            self.users_full,
            self.stores.len(),
            self.messages,
            bytes_text(self.bytes_read as f64),
            bytes_text(self.bytes_read as f64 / secs.max(1e-3))
        ));
        s.push_str(&format!(
            "{}: {} diverged, {} lagging, {} in flight, {} failed\n",
            match self.exit {
                0 if self.lagging > 0 => "NO DIVERGENCE (replication behind)",
                0 => "OK",
                1 => "DIVERGED",
                _ => "CHECK FAILED",
            },
            self.diverged,
            self.lagging,
            self.settled,
            self.failures.len()
        ));
        s
    }
}

/// Bytes in decimal units: `512 B`, `12.3 kB`, `4.5 MB`, `1.2 GB`.
pub fn bytes_text(b: f64) -> String {
    match b {
        b if b < 1e3 => format!("{b:.0} B"),
        b if b < 1e6 => format!("{:.1} kB", b / 1e3),
        b if b < 1e9 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.2} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes_text(512.0), "512 B");
        assert_eq!(bytes_text(12_345.0), "12.3 kB");
        assert_eq!(bytes_text(4_500_000.0), "4.5 MB");
        assert_eq!(bytes_text(1.234e9), "1.23 GB");
    }

    #[test]
    fn slices_partition_the_users() {
        let users: Vec<String> = (0..300).map(|i| format!("user{i}")).collect();
        for days in [1u32, 7, 30] {
            let mut hits = vec![0u32; users.len()];
            for day in 1000..1000 + u64::from(days) {
                for (i, u) in users.iter().enumerate() {
                    if in_slice(u, days, day) {
                        hits[i] += 1;
                    }
                }
            }
            assert!(hits.iter().all(|&h| h == 1), "days {days}");
        }
        // Roughly even: with 7 days every day gets some of 300 users.
        let per_day = (0..7)
            .map(|d| users.iter().filter(|u| in_slice(u, 7, d)).count())
            .collect::<Vec<_>>();
        assert!(per_day.iter().all(|&n| n > 20), "{per_day:?}");
    }

    #[test]
    fn caught_up_needs_a_fresh_connected_status_and_old_enough_lag() {
        let ok = ReplicaLag {
            known: true,
            rolling: true,
            pending_users: 0,
            lag_ms: 0,
            held: vec![],
        };
        let s = Duration::from_secs(1);
        assert!(ok.caught_up("u", s));
        assert!(!ReplicaLag::default().caught_up("u", s));
        assert!(
            !ReplicaLag {
                rolling: false,
                ..ok.clone()
            }
            .caught_up("u", s)
        );
        assert!(
            !ReplicaLag {
                held: vec!["u".into()],
                ..ok.clone()
            }
            .caught_up("u", s)
        );
        // Other users' changes pending, but younger than the first look.
        let busy = ReplicaLag {
            pending_users: 3,
            lag_ms: 40,
            ..ok.clone()
        };
        assert!(busy.caught_up("u", s));
        assert!(
            !ReplicaLag {
                lag_ms: 5_000,
                ..busy
            }
            .caught_up("u", s)
        );
        assert_eq!(ok.recheck_wait(), RECHECK_WAIT_MIN.max(RECHECK_MARGIN));
        assert_eq!(
            ReplicaLag {
                lag_ms: u64::MAX,
                ..ok
            }
            .recheck_wait(),
            RECHECK_WAIT_MAX
        );
        assert_eq!(ReplicaLag::default().recheck_wait(), RECHECK_WAIT_UNKNOWN);
    }
}
