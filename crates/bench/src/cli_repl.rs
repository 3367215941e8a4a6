//! Run the replication benchmark from the command line:
//!
//! ```text
//! slotmail bench repl --corpus corpus.mbox --json repl.json
//! slotmail bench repl --samples 50 --burst 0 --full-sync 0      # lag only
//! slotmail bench repl --master 127.0.0.1:13143 --replica 127.0.0.1:13144 \
//!     --master-lmtp 127.0.0.1:13024 --full-sync-command 'sync_client …'  # any pair
//! ```
//!
//! See `slotmail_bench::repl` for what is measured.

use crate::repl::{ChangeKind, ReplBenchOptions, Watch, run_repl_bench};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Replication lag, burst catch-up and full sync between a master and a
/// replica, measured over IMAP from the outside.
#[derive(Parser, Debug)]
#[command(name = "slotmail bench repl")]
struct Args {
    /// Working directory of the managed slots [default: a new directory
    /// under the system's temporary directory, removed at the end].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the working directory (slot logs, data) at the end.
    #[arg(long)]
    keep: bool,
    /// The slotmail binary that runs the managed slots [default: this one].
    #[arg(long)]
    slotmail: Option<PathBuf>,
    /// Loopback address of the managed master.
    #[arg(long, default_value = "127.0.0.1")]
    master_ip: String,
    /// Loopback address of the managed replica.
    #[arg(long, default_value = "127.0.0.2")]
    replica_ip: String,
    /// External master's IMAP, host:port (no slots are started).
    #[arg(long, requires = "replica")]
    master: Option<String>,
    /// External replica's IMAP, host:port.
    #[arg(long, requires = "master")]
    replica: Option<String>,
    /// External master's LMTP, host:port (for the burst).
    #[arg(long)]
    master_lmtp: Option<String>,
    /// External: IMAP of the empty replica that the full sync fills
    /// [default: --replica].
    #[arg(long)]
    full_sync_replica: Option<String>,
    /// External: shell command that runs the full sync (timed from its start).
    #[arg(long)]
    full_sync_command: Option<String>,
    /// External: only append the full-sync messages to the master, then stop.
    #[arg(long)]
    fill_only: bool,
    /// IMAP connections that fill the full-sync user's INBOX, each
    /// appending its share of the messages in order.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    fill_connections: u32,
    /// Password of every user.
    #[arg(long, default_value = "pw")]
    password: String,
    #[arg(long, default_value = "lag")]
    lag_user: String,
    #[arg(long, default_value = "burst")]
    burst_user: String,
    #[arg(long, default_value = "full")]
    full_user: String,
    /// Users of the load generator; %d is 1..=--load-users.
    #[arg(long, default_value = "u%d")]
    load_user: String,
    #[arg(long, default_value_t = 20)]
    load_users: u32,
    /// LMTP recipient of the burst; %u is the burst user.
    #[arg(long, default_value = "%u@bench.test")]
    lmtp_rcpt: String,
    /// Prefix of the mailboxes that the create and rename samples make.
    #[arg(long, default_value = "")]
    mailbox_prefix: String,
    /// Corpus (mbox); messages of at most --message-max-bytes are used,
    /// cycled [default: synthetic messages of --synthetic-bytes].
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[arg(long, default_value_t = 2300)]
    synthetic_bytes: usize,
    #[arg(long, default_value_t = 102_400)]
    message_max_bytes: usize,
    /// Samples per kind of change and phase.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Kinds of change, comma-separated: append, flags, expunge, create, rename.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "append,flags,expunge,create,rename"
    )]
    kinds: Vec<ChangeKind>,
    /// Random pause before each sample: 0..this many ms.
    #[arg(long, default_value_t = 200)]
    pause_max_ms: u64,
    /// How the replica is watched for messages and flags: idle or poll.
    #[arg(long, default_value = "idle")]
    watch: Watch,
    /// Skip the lag phase without load.
    #[arg(long)]
    no_idle_lag: bool,
    /// Clients of the IMAP load generator during the second lag phase
    /// (0: no such phase).
    #[arg(long, default_value_t = 10)]
    load_clients: usize,
    /// Messages of the LMTP burst (0: none).
    #[arg(long, default_value_t = 10_000)]
    burst: u32,
    /// Messages of the full sync (0: none).
    #[arg(long, default_value_t = 10_000)]
    full_sync: u32,
    /// Seed of the pauses and of the load generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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
    let slotmail = match args
        .slotmail
        .clone()
        .map(Ok)
        .unwrap_or_else(std::env::current_exe)
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("repl bench: finding the slotmail binary: {e}");
            return ExitCode::from(2);
        }
    };
    let (dir, own_dir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("slotmail-repl-bench.{}", std::process::id())),
            !args.keep,
        ),
    };
    let opts = ReplBenchOptions {
        master_ip: args.master_ip,
        replica_ip: args.replica_ip,
        master_imap: args.master,
        replica_imap: args.replica,
        master_lmtp: args.master_lmtp,
        full_sync_replica_imap: args.full_sync_replica,
        full_sync_command: args.full_sync_command,
        password: args.password,
        lag_user: args.lag_user,
        burst_user: args.burst_user,
        full_user: args.full_user,
        load_user_pattern: args.load_user,
        load_users: args.load_users,
        lmtp_rcpt: args.lmtp_rcpt,
        mailbox_prefix: args.mailbox_prefix,
        corpus: args.corpus,
        synthetic_bytes: args.synthetic_bytes,
        message_max_bytes: args.message_max_bytes,
        samples: args.samples,
        kinds: args.kinds,
        pause_max: Duration::from_millis(args.pause_max_ms),
        watch: args.watch,
        lag_idle: !args.no_idle_lag,
        load_clients: args.load_clients,
        burst_messages: args.burst,
        full_sync_messages: args.full_sync,
        fill_only: args.fill_only,
        fill_connections: args.fill_connections as usize,
        seed: args.seed,
        ..ReplBenchOptions::new(dir.clone(), slotmail)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("repl bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run_repl_bench(opts));
    drop(runtime);
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    } else if args.dir.is_none() {
        eprintln!("repl bench: kept {}", dir.display());
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("repl bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.to_table());
    crate::cli_report::write_json("repl bench", &report, args.json.as_deref())
}
