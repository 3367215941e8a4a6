//! Benchmark programs of slotmail. Speed is measured here, by programs that
//! print figures with the machine they ran on, never asserted by timed tests.
//!
//! - [`store`]: the mail store of one slot, no network (`slotmail bench
//!   store`; `docs/benchmarks.md`, "Store (one slot, no network)").
//! - [`mbox`]: reading the corpus (an mboxrd file) into messages as a client
//!   would deliver them.
//! - [`repl`]: replication lag, burst catch-up and full sync between a
//!   master and a replica slot (`slotmail bench repl`).
//! - [`machine`]: the machine facts recorded with every report.

pub mod cli_imap;
pub mod cli_lmtp;
pub mod cli_repl;
mod cli_report;
pub mod cli_store;
pub mod imap;
pub mod lmtp;
pub mod machine;
pub mod mbox;
pub mod repl;
pub mod store;

pub use machine::MachineFacts;
pub use store::{BenchError, SelectFill, StoreBenchOptions, StoreBenchReport, run_store_bench};
