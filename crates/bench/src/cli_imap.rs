//! Run the IMAP load generator from the command line:
//!
//! ```text
//! cargo run --release -p slotmail-bench --example imap_bench -- \
//!     --port 1143 --users 100 --clients 100 --secs 30 --corpus corpus-2000.mbox
//! cargo run --release -p slotmail-bench --example imap_bench -- \
//!     --port 1143 --mode prefill --prefill 20 --corpus corpus-2000.mbox
//! cargo run --release -p slotmail-bench --example imap_bench -- \
//!     --port 1143 --mode idle --connections 10000 --server-pid 4242
//! ```
//!
//! Works against any IMAP server that accepts LOGIN on a plaintext
//! connection (loopback). See `slotmail_bench::imap` for the mix.

use crate::imap::{ImapBenchMode, ImapBenchOptions, run_imap_bench};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// An imaptest-like IMAP load generator, pre-filler and IDLE tester.
#[derive(Parser, Debug)]
#[command(name = "slotmail bench imap")]
struct Args {
    /// load (the mixed workload), prefill or idle.
    #[arg(long, default_value = "load")]
    mode: ImapBenchMode,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    /// User name pattern; %d is the user number.
    #[arg(long, default_value = "u%d")]
    user: String,
    /// Users are numbered 1..=N.
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Password of every user (a benchmark password, not a secret).
    #[arg(long, default_value = "pw")]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// Concurrent clients (load, prefill).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Measured seconds (load).
    #[arg(long, default_value_t = 30.0)]
    secs: f64,
    /// Unmeasured seconds of the same load first.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// The mbox whose messages are appended (load, prefill).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// imaptest's msgs: target mailbox size of the mix.
    #[arg(long, default_value_t = 30)]
    msgs: u32,
    /// Messages per mailbox after pre-filling.
    #[arg(long, default_value_t = 20)]
    prefill: u32,
    /// IDLE connections to open.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Connections being set up at once (idle).
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Users whose mailbox gets one APPEND while all connections idle.
    #[arg(long, default_value_t = 10)]
    wake_users: u32,
    /// How soon, in milliseconds, an idling connection must see the APPEND.
    #[arg(long, default_value_t = 1000)]
    wake_window_ms: u64,
    /// Root of the server's process tree, for CPU and memory (repeatable).
    #[arg(long)]
    server_pid: Vec<u32>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads of the load generator's runtime.
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
    let opts = ImapBenchOptions {
        mode: args.mode,
        user_pattern: args.user,
        users: args.users,
        password: args.password,
        mailbox: args.mailbox,
        clients: args.clients,
        secs: args.secs,
        warmup_secs: args.warmup,
        corpus: args.corpus,
        msgs_target: args.msgs,
        prefill: args.prefill,
        connections: args.connections,
        connect_concurrency: args.connect_concurrency,
        wake_users: args.wake_users,
        wake_window: Duration::from_millis(args.wake_window_ms),
        server_pids: args.server_pid,
        seed: args.seed,
        ..ImapBenchOptions::new(args.host, args.port)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imap bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run_imap_bench(opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imap bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.to_table());
    crate::cli_report::write_json("imap bench", &report, args.json.as_deref())
}
