//! `slotmail bench store` as a standalone program; see `slotmail_bench::cli_store`.

fn main() -> std::process::ExitCode {
    slotmail_bench::cli_store::main_from(std::env::args_os())
}
