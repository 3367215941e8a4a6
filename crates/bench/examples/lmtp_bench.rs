//! `slotmail bench lmtp` as a standalone program; see `slotmail_bench::cli_lmtp`.

fn main() -> std::process::ExitCode {
    slotmail_bench::cli_lmtp::main_from(std::env::args_os())
}
