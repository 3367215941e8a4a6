//! Run the store benchmark from the command line:
//!
//! ```text
//! cargo run --release -p slotmail-bench --example store_bench -- \
//!     --corpus corpus-2000.mbox --dir /var/tmp/bench [--json report.json]
//! ```
//!
//! `--dir` is a parent directory on the disk to measure; a fresh slot is made
//! inside it and removed at the end.

use crate::{SelectFill, StoreBenchOptions, run_store_bench};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// The store benchmark: append, fetch, flag and select on one slot, no network.
#[derive(Parser, Debug)]
#[command(name = "slotmail bench store")]
struct Args {
    /// The corpus: an mbox file (mboxrd), e.g. from the corpus generator.
    #[arg(long)]
    corpus: PathBuf,
    /// Parent directory of the fresh slot (on the disk to measure).
    #[arg(long)]
    dir: PathBuf,
    /// Use only the first N corpus messages.
    #[arg(long)]
    limit: Option<usize>,
    /// Messages in the mailbox whose open/select is timed (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    select_messages: u32,
    /// How that mailbox is filled: "copy" (2,000 appended, the rest copies
    /// of them: seconds) or "append" (one commit per message: minutes).
    #[arg(long, default_value = "copy")]
    select_fill: SelectFill,
    /// Repetitions of the warm select measurements.
    #[arg(long, default_value_t = 5)]
    warm_repeats: u32,
    /// Write the full report as JSON to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the slot directory afterwards.
    #[arg(long)]
    keep: bool,
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
    let opts = StoreBenchOptions {
        limit: args.limit,
        select_messages: args.select_messages,
        select_fill: args.select_fill,
        warm_repeats: args.warm_repeats,
        keep: args.keep,
        ..StoreBenchOptions::new(&args.corpus, &args.dir)
    };
    let report = match run_store_bench(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("store bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.to_table());
    crate::cli_report::write_json("store bench", &report, args.json.as_deref())
}
