//! `slotmail bench imap` as a standalone program; see `slotmail_bench::cli_imap`.

fn main() -> std::process::ExitCode {
    slotmail_bench::cli_imap::main_from(std::env::args_os())
}
