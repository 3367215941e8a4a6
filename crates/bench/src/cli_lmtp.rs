//! Run the LMTP delivery benchmark from the command line:
//!
//! ```text
//! cargo run --release -p slotmail-bench --example lmtp_bench -- \
//!     --addr 127.0.0.1:2424 --users 100 --connections 4 --count 2000 --corpus corpus-2000.mbox
//! cargo run --release -p slotmail-bench --example lmtp_bench -- \
//!     --addr 127.0.0.1:2424 --recipients 10 --count 200 --secs 60 --corpus corpus-2000.mbox \
//!     --server-pid 4242 --json report.json
//! ```
//!
//! Works against any LMTP server on which users `u1..uN@bench.test` exist
//! (`--user`, `--domain`). See `slotmail_bench::lmtp` for what is measured.

use crate::lmtp::{LmtpBenchOptions, run_lmtp_bench};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// LMTP delivery rate: corpus messages over concurrent connections.
#[derive(Parser, Debug)]
#[command(name = "slotmail bench lmtp")]
struct Args {
    /// The LMTP server, host:port.
    #[arg(long)]
    addr: String,
    /// The corpus: an mbox file (mboxrd), e.g. from the corpus generator.
    #[arg(long)]
    corpus: PathBuf,
    /// Use only the first N corpus messages.
    #[arg(long)]
    limit: Option<usize>,
    /// Users are numbered 1..=N.
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Local part of a recipient; %d is the user number.
    #[arg(long, default_value = "u%d")]
    user: String,
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Envelope sender.
    #[arg(long, default_value = "sender@bench.test")]
    sender: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Recipients per transaction (distinct users).
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Transactions to run (the corpus is reused when it is shorter).
    #[arg(long)]
    count: Option<u64>,
    /// Stop starting transactions after this many seconds.
    #[arg(long)]
    secs: Option<f64>,
    /// Skip the untimed warm-up (one small message to every user).
    #[arg(long)]
    no_warmup: bool,
    /// Root of the server's process tree, for its CPU (repeatable).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Timeout of each client read or write, seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the full report as JSON to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Parse `args` (the first item is the program name) and run.
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
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
    if args.count.is_none() && args.secs.is_none() {
        eprintln!("lmtp bench: give --count, --secs or both (the run must be bounded)");
        return ExitCode::from(2);
    }
    let opts = LmtpBenchOptions {
        limit: args.limit,
        users: args.users,
        user_pattern: args.user,
        domain: args.domain,
        sender: args.sender,
        connections: args.connections,
        recipients_per_message: args.recipients,
        count: args.count,
        duration: args.secs.map(Duration::from_secs_f64),
        warmup: !args.no_warmup,
        server_pids: args.server_pid,
        timeout: Duration::from_secs(args.timeout_secs),
        ..LmtpBenchOptions::new(args.addr, args.corpus)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lmtp bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run_lmtp_bench(opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lmtp bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.to_table());
    crate::cli_report::write_json("lmtp bench", &report, args.json.as_deref())
}
