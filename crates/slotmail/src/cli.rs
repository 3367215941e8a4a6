//! Command-line interface: clap definitions and the dispatch to libraries.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use slotmail_ctl::{CtlArgs, MachineCommand};
use slotmail_slot::SlotConfig;
use slotmail_store::{Options, Slot};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: the command ran and found a problem.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the operation failed.
pub const EXIT_FAILED: u8 = 3;

#[derive(Parser)]
#[command(name = "slotmail", version, about = "A replicated IMAP mail store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load generators and benchmark programs (docs/benchmarks.md).
    Bench {
        /// Which benchmark: store, imap, lmtp, repl.
        kind: BenchKind,
        /// The benchmark's own options (`slotmail bench KIND -- --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Fault injection under load: `slotmail chaos run --seed N --duration 10m`
    /// (docs/reliability.md).
    Chaos {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a working mail system on this machine (see the README).
    Demo {
        /// Where the demo keeps its data; created on first run, reused after.
        #[arg(long, default_value = "slotmail-demo")]
        dir: PathBuf,
        /// IMAP port on 127.0.0.1.
        #[arg(long, default_value_t = 1143)]
        imap_port: u16,
        /// LMTP port on 127.0.0.1.
        #[arg(long, default_value_t = 2424)]
        lmtp_port: u16,
        /// Loopback address of the first of the three machines (the others
        /// follow it); only used when the demo is created.
        #[arg(long, default_value = "127.0.0.21")]
        machine_address: std::net::Ipv4Addr,
    },
    /// One slot: run it, scrub it, manage its accounts offline.
    #[command(subcommand)]
    Slot(SlotCommand),
    /// One machine: run and supervise all its slots, each its own process.
    #[command(subcommand)]
    Machine(MachineCommand),
    /// Manage a cluster: machines, slots, stores, users, placement, status
    /// (docs/operations.md).
    Ctl(CtlArgs),
    /// The replication check: compare what each store's master and
    /// replicas show an IMAP client; exit 1 on divergence.
    Check(slotmail_check::CheckArgs),
    /// The front door: IMAP and LMTP proxy routing each user to the master
    /// of the user's store.
    #[command(subcommand)]
    Proxy(slotmail_proxy::ProxyCommand),
}

#[derive(Subcommand)]
enum SlotCommand {
    /// Run one slot (IMAP and LMTP listeners) until SIGTERM or SIGINT.
    Run {
        /// The slot's configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify every message and record of a slot; exit 0 only when clean.
    Scrub {
        #[command(flatten)]
        data: DataArg,
        /// Remove unreferenced files left by interrupted writes.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage the accounts of a stopped slot directly in its data directory.
    #[command(subcommand)]
    User(SlotUserCommand),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    /// The store of one slot, no network: append, fetch, flags, select.
    Store,
    /// An imaptest-like mixed IMAP workload against any IMAP server.
    Imap,
    /// LMTP delivery rate against any LMTP server.
    Lmtp,
    /// Replication lag, burst catch-up and full sync, master to replica.
    Repl,
}

#[derive(Args)]
struct DataArg {
    /// The slot's data directory.
    #[arg(long)]
    data: PathBuf,
}

#[derive(Subcommand)]
enum SlotUserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        #[command(flatten)]
        data: DataArg,
        name: String,
        /// Read the password from standard input (required: passwords never go on a command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The user may authorize as any other user (replication check, operators).
        #[arg(long)]
        admin: bool,
    },
    /// List the users of the slot.
    List {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("slotmail: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Slot(cmd) => slot(cmd),
        Command::Bench { kind, args } => {
            let (name, main_from): (&str, fn(Vec<std::ffi::OsString>) -> ExitCode) = match kind {
                BenchKind::Store => ("slotmail bench store", |a| {
                    slotmail_bench::cli_store::main_from(a)
                }),
                BenchKind::Imap => ("slotmail bench imap", |a| {
                    slotmail_bench::cli_imap::main_from(a)
                }),
                BenchKind::Lmtp => ("slotmail bench lmtp", |a| {
                    slotmail_bench::cli_lmtp::main_from(a)
                }),
                BenchKind::Repl => ("slotmail bench repl", |a| {
                    slotmail_bench::cli_repl::main_from(a)
                }),
            };
            let mut argv = vec![std::ffi::OsString::from(name)];
            argv.extend(args);
            Ok(main_from(argv))
        }
        Command::Chaos { args } => {
            let mut argv = vec![std::ffi::OsString::from("slotmail chaos")];
            argv.extend(args);
            Ok(slotmail_chaos::cli::main_from(argv))
        }
        Command::Machine(MachineCommand::Run(args)) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            match runtime.block_on(slotmail_ctl::run_machine(args, shutdown_signal())) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("slotmail machine run: error: {e}");
                    Ok(ExitCode::from(e.exit().code()))
                }
            }
        }
        Command::Ctl(args) => {
            let exit = slotmail_ctl::main_ctl(
                args,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            Ok(ExitCode::from(exit.code()))
        }
        Command::Check(args) => Ok(ExitCode::from(slotmail_check::main_check(args))),
        Command::Proxy(slotmail_proxy::ProxyCommand::Run { config }) => {
            let config = match slotmail_proxy::ProxyConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("slotmail proxy run: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            match runtime.block_on(slotmail_proxy::run(config, shutdown_signal())) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("slotmail proxy run: error: {e}");
                    Ok(ExitCode::from(if e.is_usage() {
                        EXIT_USAGE
                    } else {
                        EXIT_FAILED
                    }))
                }
            }
        }
        Command::Demo {
            dir,
            imap_port,
            lmtp_port,
            machine_address,
        } => {
            crate::demo::run(crate::demo::DemoOptions {
                dir,
                imap_port,
                lmtp_port,
                first_machine: machine_address,
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn slot(cmd: SlotCommand) -> Result<ExitCode> {
    match cmd {
        SlotCommand::Run { config } => {
            let config = match SlotConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("slotmail: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(slotmail_slot::run(config, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        SlotCommand::Scrub { data, repair, json } => {
            let slot = Slot::open(
                &data.data,
                Options {
                    create: false,
                    lock: false,
                    ..Options::default()
                },
            )
            .with_context(|| format!("opening slot {}", data.data.display()))?;
            let report = slot.scrub(repair);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for f in &report.findings {
                    println!("{f}");
                }
                println!(
                    "scrubbed {} users, {} messages, {} bytes verified: {}{}",
                    report.users,
                    report.messages,
                    report.bytes_verified,
                    if report.is_clean() {
                        "clean"
                    } else {
                        "DAMAGE FOUND"
                    },
                    if report.removed > 0 {
                        format!(", {} unreferenced files removed", report.removed)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FINDINGS)
            })
        }
        SlotCommand::User(SlotUserCommand::Add {
            data,
            name,
            password_stdin: _,
            admin,
        }) => {
            let password = read_password_stdin()?;
            let slot = open_offline(&data)?;
            let account = slot.create_user(&name, &password, admin)?;
            println!("created user {} ({})", account.name, account.user_id);
            Ok(ExitCode::SUCCESS)
        }
        SlotCommand::User(SlotUserCommand::List { data, json }) => {
            let slot = open_offline(&data)?;
            let accounts = slot.accounts()?;
            if json {
                let list: Vec<_> = accounts
                    .iter()
                    .map(|a| serde_json::json!({"name": a.name, "user_id": a.user_id, "admin": a.is_admin}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for a in accounts {
                    println!(
                        "{}\t{}{}",
                        a.name,
                        a.user_id,
                        if a.is_admin { "\tadmin" } else { "" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_offline(data: &DataArg) -> Result<Slot> {
    Slot::open(
        &data.data,
        Options {
            create: true,
            ..Options::default()
        },
    )
    .with_context(|| {
        format!(
            "opening slot {} (is the slot running? stop it first)",
            data.data.display()
        )
    })
}

/// The first line of standard input, without its line end.
fn read_password_stdin() -> Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
