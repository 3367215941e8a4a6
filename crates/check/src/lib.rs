//! The replication check, `slotmail check`: does a store's replica show an
//! IMAP client exactly what its master shows? For each user it logs in to
//! the master slot and to each replica slot directly (not through a
//! proxy), as the user, by admin authorization, and compares everything a
//! client sees: the mailboxes with their attributes and special use, the
//! subscriptions, per mailbox UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and the
//! message count, per message UID, flags, INTERNALDATE, RFC822.SIZE,
//! BODYSTRUCTURE and a hash of its bytes (BODY.PEEK[]), and the quota.
//!
//! - [`view`]: one slot's view of one user, as plain values.
//! - [`compare`]: the comparison of two views and the settling of a first
//!   comparison against a later one (pure, no I/O).
//! - [`collect`]: reading a view over IMAP (`slotmail-imap-client`).
//! - [`account`]: the check's admin account on every master and its
//!   password file.
//! - [`run`]: one run — targets, re-check after the replication lag,
//!   "lagging" versus "diverged", records in the directory.
//! - [`progress`]: rate limit and progress bar.
//!
//! [`main_check`] is the command; docs/operations.md shows it at work.

pub mod account;
pub mod collect;
pub mod compare;
pub mod progress;
pub mod run;
pub mod view;

pub use collect::Level;
pub use compare::{Class, Difference};
pub use run::{Depth, Report, RunOptions, Scope, run_once};

use clap::{ArgGroup, Args};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Shortest `--every` period.
pub const EVERY_MIN: Duration = Duration::from_secs(1);
/// Longest `--rolling` period, in days.
pub const ROLLING_DAYS_MAX: u32 = 366;

/// Exit code: divergence found.
pub const EXIT_DIVERGED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the check could not complete.
pub const EXIT_FAILED: u8 = 3;

/// `slotmail check`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["user", "store", "all"])))]
pub struct CheckArgs {
    /// The cluster file (default: ./cluster.toml).
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Check one user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Check every user of one store.
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// Check every user of the cluster.
    #[arg(long)]
    pub all: bool,
    /// Metadata of every message, bytes of the newest few per mailbox
    /// (the default).
    #[arg(long, conflicts_with_all = ["full", "rolling"])]
    pub quick: bool,
    /// Metadata and bytes of every message.
    #[arg(long, conflicts_with = "rolling")]
    pub full: bool,
    /// Full for one slice of the users (a different one every day), quick
    /// for the rest: every user is byte-checked once every DAYS days.
    #[arg(long, value_name = "DAYS")]
    pub rolling: Option<u32>,
    /// Read at most this many megabytes (10^6) per second of message data
    /// from the slots, both sides together.
    #[arg(long, value_name = "MB_PER_S")]
    pub rate_limit: Option<f64>,
    /// Run again every DURATION (e.g. 90s, 15m, 6h, 1d) until SIGINT or
    /// SIGTERM; each run is printed and recorded.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Print one JSON document per run instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// `90s`, `15m`, `6h`, `1d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a number with an optional unit s, m, h or d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    Ok(Duration::from_secs(secs))
}

fn options(args: &CheckArgs) -> Result<(RunOptions, Option<Duration>), String> {
    let scope = match (&args.user, &args.store, args.all) {
        (Some(u), _, _) => Scope::User(u.clone()),
        (_, Some(s), _) => Scope::Store(s.clone()),
        _ => Scope::All,
    };
    let depth = match args.rolling {
        Some(days) if (1..=ROLLING_DAYS_MAX).contains(&days) => Depth::Rolling { days },
        Some(days) => {
            return Err(format!("--rolling {days}: 1 to {ROLLING_DAYS_MAX} days"));
        }
        None if args.full => Depth::Level(Level::Full),
        None => Depth::Level(Level::Quick),
    };
    let rate_limit_bytes_per_s = match args.rate_limit {
        Some(mb) if mb.is_finite() && mb > 0.0 => Some((mb * 1e6) as u64),
        Some(mb) => return Err(format!("--rate-limit {mb}: a positive number of MB/s")),
        None => None,
    };
    let every = match &args.every {
        Some(s) => {
            let d = parse_duration(s).map_err(|e| format!("--every {e}"))?;
            if d < EVERY_MIN {
                return Err(format!("--every {s}: at least {EVERY_MIN:?}"));
            }
            Some(d)
        }
        None => None,
    };
    Ok((
        RunOptions {
            scope,
            depth,
            rate_limit_bytes_per_s,
            progress: !args.no_progress && std::io::stderr().is_terminal(),
        },
        every,
    ))
}

/// Run `slotmail check`; returns the exit code (of the last run with
/// `--every`).
pub fn main_check(args: CheckArgs) -> u8 {
    let usage = |msg: String| {
        eprintln!("slotmail check: {msg}");
        EXIT_USAGE
    };
    let (options, every) = match options(&args) {
        Ok(v) => v,
        Err(e) => return usage(e),
    };
    let file = slotmail_ctl::cluster::Cluster::locate(args.cluster.as_deref());
    let cluster = match slotmail_ctl::cluster::Cluster::load(&file) {
        Ok(c) => c,
        Err(e) => return usage(e.to_string()),
    };
    let directory = match slotmail_ctl::open_directory(&cluster) {
        Ok(d) => d,
        Err(e) => return usage(e.to_string()),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("slotmail check: starting the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    runtime.block_on(async {
        // With --every, SIGINT and SIGTERM end the loop: the handlers are
        // installed before the first run, so a signal during a run is not
        // lost (the run is abandoned).
        let stop = match every {
            Some(_) => match Stop::install() {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("slotmail check: installing signal handlers: {e}");
                    return EXIT_FAILED;
                }
            },
            None => None,
        };
        let mut stop = std::pin::pin!(async move {
            match stop {
                Some(mut s) => s.wait().await,
                None => std::future::pending().await,
            }
        });
        // The exit code if a signal comes before any run completed.
        let mut last = EXIT_FAILED;
        loop {
            let outcome = tokio::select! {
                r = run_once(&cluster, &directory, &options) => r,
                () = &mut stop => return last,
            };
            last = match outcome {
                Ok(report) => {
                    let mut out = std::io::stdout().lock();
                    if args.json {
                        let _ = writeln!(
                            out,
                            "{}",
                            serde_json::to_string_pretty(&report).expect("reports serialize")
                        );
                    } else {
                        let _ = write!(out, "{}", report.text());
                    }
                    let _ = out.flush();
                    report.exit
                }
                Err(run::RunError::Usage(e)) => return usage(e),
                Err(e) => {
                    eprintln!("slotmail check: error: {e}");
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({"error": e.to_string(), "exit": EXIT_FAILED})
                        );
                    }
                    EXIT_FAILED
                }
            };
            let Some(period) = every else {
                return last;
            };
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                () = &mut stop => return last,
            }
        }
    })
}

/// SIGINT and SIGTERM, listened to from creation on.
struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> std::io::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        check: CheckArgs,
    }

    fn parse(args: &[&str]) -> Result<(RunOptions, Option<Duration>), String> {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        options(&cli.check)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn options_from_the_command_line() {
        let (o, every) = parse(&["--user", "alice"]).unwrap();
        assert_eq!(o.scope, Scope::User("alice".into()));
        assert_eq!(o.depth, Depth::Level(Level::Quick));
        assert_eq!(every, None);
        let (o, every) =
            parse(&["--all", "--full", "--rate-limit", "2.5", "--every", "1h"]).unwrap();
        assert_eq!(o.scope, Scope::All);
        assert_eq!(o.depth, Depth::Level(Level::Full));
        assert_eq!(o.rate_limit_bytes_per_s, Some(2_500_000));
        assert_eq!(every, Some(Duration::from_secs(3600)));
        let (o, _) = parse(&["--store", "s1", "--rolling", "7"]).unwrap();
        assert_eq!(o.scope, Scope::Store("s1".into()));
        assert_eq!(o.depth, Depth::Rolling { days: 7 });

        // Exactly one scope; levels exclude each other.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--user", "a", "--all"]).is_err());
        assert!(parse(&["--all", "--quick", "--full"]).is_err());
        assert!(parse(&["--all", "--full", "--rolling", "3"]).is_err());
        assert!(parse(&["--all", "--rolling", "0"]).is_err());
        assert!(parse(&["--all", "--rate-limit", "0"]).is_err());
        assert!(parse(&["--all", "--every", "0s"]).is_err());
    }
}
