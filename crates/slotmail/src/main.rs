//! The `slotmail` binary: command-line parsing and glue only. Every
//! capability lives in a library crate (ARCHITECTURE.md, "Code map").
//!
//! Exit codes: 0 success; 1 the command ran and found a problem (scrub found
//! damage); 2 usage or configuration error; 3 the operation failed.

mod cli;
mod demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::main()
}
