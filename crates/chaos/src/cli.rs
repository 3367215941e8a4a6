//! `slotmail chaos run`: the command line of the harness.

use crate::schedule::{ALL, Kind};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "slotmail chaos",
    about = "Fault injection under load (docs/reliability.md)"
)]
struct Args {
    /// `run`: build a cluster, inject faults under load, check the history.
    action: String,
    /// The seed of the fault schedule and of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long faults are injected: `90s`, `10m`, or seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Working directory (cluster, logs, acknowledgements, report); created.
    #[arg(long, default_value = "slotmail-chaos")]
    dir: std::path::PathBuf,
    /// First of 5 loopback addresses 127.0.0.X: 3 machines, the proxy, relays.
    #[arg(long, default_value_t = 221)]
    address_base: u8,
    /// Users (each has one IMAP and one LMTP client).
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// Fault kinds, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Pause of each client after an acknowledged operation (ms).
    #[arg(long, default_value_t = 10)]
    client_pause_ms: u64,
    /// The slotmail binary (default: this one).
    #[arg(long)]
    slotmail: Option<std::path::PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    n.parse::<u64>()
        .map(|n| Duration::from_secs(n * unit))
        .map_err(|e| format!("{s:?}: {e}"))
}

pub fn main_from(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.action != "run" {
        eprintln!(
            "slotmail chaos: unknown action {:?} (only `run`)",
            args.action
        );
        return ExitCode::from(2);
    }
    let mut kinds = Vec::new();
    for f in &args.faults {
        match Kind::parse(f) {
            Some(k) => kinds.push(k),
            None => {
                eprintln!("slotmail chaos: unknown fault kind {f:?}");
                return ExitCode::from(2);
            }
        }
    }
    if kinds.is_empty() {
        kinds = ALL.to_vec();
    }
    let slotmail = match args.slotmail.map(Ok).unwrap_or_else(std::env::current_exe) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("slotmail chaos: finding the slotmail binary: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = if args.dir.is_absolute() {
        args.dir
    } else {
        std::env::current_dir().unwrap_or_default().join(args.dir)
    };
    if dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!("slotmail chaos: {} is not empty", dir.display());
        return ExitCode::from(2);
    }
    let opts = crate::Options {
        slotmail,
        dir,
        seed: args.seed,
        duration: args.duration,
        address_base: args.address_base,
        users: args.users,
        kinds,
        gap_ms: (1_000, 3_000),
        client_pause_ms: args.client_pause_ms,
    };
    match crate::run(opts) {
        Ok(report) => {
            print!("{}", report.text());
            println!("report: {}", report.dir.join("report.json").display());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("slotmail chaos: {e}");
            ExitCode::from(3)
        }
    }
}
