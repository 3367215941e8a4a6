//! The `slotmail` binary: command-line parsing and glue only. Every
//! capability lives in a library crate (ARCHITECTURE.md, "Code map").
//!
//! Exit codes: 0 success; 1 the command ran and found a problem (scrub found
//! damage); 2 usage or configuration error; 3 the operation failed.

mod cli;
mod demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    pin_malloc_mmap_threshold();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::main()
}

/// Large allocations (argon2's 19 MiB matrix per password check, big
/// literals) must go back to the kernel when freed. glibc raises its mmap
/// threshold after the first large free, after which such blocks come from
/// the heap and stay resident: a slot grew by ~13 MiB per distinct user
/// logging in (measured). Pinning the threshold turns that adjustment off.
#[allow(unsafe_code)]
fn pin_malloc_mmap_threshold() {
    /// Allocations at or above this size are mmapped (glibc's default start).
    const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;
    // SAFETY: called first thing in main, before any other thread exists;
    // mallopt only changes allocator tuning and has no memory-safety
    // preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}
