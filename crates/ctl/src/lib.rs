//! slotmail's management plane: the logic of `slotmail ctl ...` and of the
//! machine supervisor `slotmail machine run` (docs/operations.md).
//!
//! - [`cluster`]: `cluster.toml`, the file every command of one cluster
//!   shares (directory, secret, data and state directories, port scheme).
//! - [`CtlArgs`] / [`CtlCommand`] and [`main_ctl`]: every `ctl` command,
//!   parsed by clap in the binary and run here. Each prints text or, with
//!   `--json`, one JSON document, and returns an [`Exit`] code: 0 ok, 1 the
//!   command found problems, 2 usage or refused by validation (nothing was
//!   changed), 3 the operation failed.
//! - [`slotconf`]: a slot's TOML configuration generated from the directory.
//! - [`supervisor`]: `machine run`, which runs every slot of a machine as a
//!   child process, restarts them with backoff, follows the directory, and
//!   serves the control socket of [`control`].
//!
//! Running slots are managed through their admin socket
//! (`slotmail_slot::admin`, `DATA/admin.sock`), machines through their
//! supervisor's control socket (`STATE/machine-NAME.sock`). Both are Unix
//! sockets: `ctl` runs on the host that holds the slots' data directories
//! (every machine of a loopback cluster, in tests and the demo).

pub mod cluster;
mod commands;
pub mod control;
mod error;
mod failover;
mod history;
mod moves;
mod output;
pub mod rebalance;
mod reconcile;
mod repl;
pub mod slotconf;
mod status;
pub mod supervisor;
mod switchover;
mod users;
pub mod verify;

pub use error::CtlError;
pub use rebalance::RebalanceArgs;
pub use supervisor::{MachineCommand, MachineRunArgs, run_machine};

use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;

/// A command's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: the command ran and found problems (status, scrub).
    Findings = 1,
    /// 2: usage error, or refused by validation; nothing changed.
    Usage = 2,
    /// 3: the operation failed.
    Failed = 3,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// `slotmail ctl`: options shared by every command, and the command.
#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// The cluster file (default: ./cluster.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Every `ctl` command.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Create a cluster: cluster.toml, the directory, the secret (0600).
    Init(InitArgs),
    /// Machines: add, remove, list.
    #[command(subcommand)]
    Machine(MachineCtl),
    /// Slots: add, remove, list, start, stop, restart, scrub.
    #[command(subcommand)]
    Slot(SlotCtl),
    /// Propose stores over the machines' slots and show what each machine's
    /// death would do; --apply creates the stores.
    Plan(PlanArgs),
    /// Stores: create, remove, list, add-replica, drop-replica.
    #[command(subcommand)]
    Store(StoreCtl),
    /// Users: add, delete, passwd, quota, list, show, move.
    #[command(subcommand)]
    User(UserCtl),
    /// Every store: master, replicas, epoch, lag, last check, health.
    /// Exit 1 if anything is unhealthy.
    Status,
    /// Replication: per-replica state and held users; release a held user.
    #[command(subcommand)]
    Repl(ReplCtl),
    /// Planned change of a store's master: writes refused on the master,
    /// replication drained, equality proven, epoch + 1 (docs/failover.md).
    Switchover(SwitchoverArgs),
    /// Switch over every master off a machine (maintenance).
    Evacuate(EvacuateArgs),
    /// A machine died: promote the most up-to-date replica of each of its
    /// masters' stores, epoch + 1, and fence the old masters.
    Failover(FailoverArgs),
    /// Bring what a fenced old master accepted but never replicated into
    /// the new master, then rebuild it as a replica.
    Reconcile(ReconcileArgs),
    /// Make a slot an empty replica and fill it by full sync.
    Rebuild(RebuildArgs),
    /// Every role change: time, store, old and new master, epoch, reason.
    History(HistoryArgs),
    /// Move slots between stores to restore the placement properties after
    /// machines were added (or before `--remove`d ones go); --apply
    /// performs the moves.
    Rebalance(RebalanceArgs),
}

/// `ctl switchover`.
#[derive(Debug, Clone, Args)]
pub struct SwitchoverArgs {
    pub store: String,
    /// The replica to promote (default: the first replica).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub switch: SwitchFlags,
}

/// Options shared by switchover and evacuate.
#[derive(Debug, Clone, Args)]
pub struct SwitchFlags {
    /// Refuse if the target's replication lag is above this.
    #[arg(long, default_value_t = switchover::SWITCH_LAG_MAX_MS_DEFAULT)]
    pub max_lag_ms: u64,
    /// Abort (and resume writes on the old master) if draining takes longer.
    #[arg(long, default_value_t = switchover::DRAIN_TIMEOUT_MS_DEFAULT)]
    pub drain_timeout_ms: u64,
    /// Recorded in the history.
    #[arg(long, default_value = "switchover")]
    pub reason: String,
}

impl SwitchFlags {
    fn options(&self) -> switchover::SwitchOptions {
        switchover::SwitchOptions {
            max_lag_ms: self.max_lag_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            reason: self.reason.clone(),
        }
    }
}

/// `ctl evacuate`.
#[derive(Debug, Clone, Args)]
pub struct EvacuateArgs {
    pub machine: String,
    #[command(flatten)]
    pub switch: SwitchFlags,
}

/// `ctl failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    pub machine: String,
    /// Promote even if the machine seems alive or a replica's lag is above
    /// the bound or unknown.
    #[arg(long)]
    pub force: bool,
    /// Refuse (without --force) if the promoted replica's last known lag is
    /// above this.
    #[arg(long, default_value_t = failover::FAILOVER_LAG_MAX_MS_DEFAULT)]
    pub max_lag_ms: u64,
    /// Recorded in the history (default: "failover: machine M down").
    #[arg(long)]
    pub reason: Option<String>,
    /// How far the promoted slot raises UIDNEXT of every mailbox
    /// (docs/failover.md, "UID gap"); 0 takes none (reconcile then
    /// renumbers every UID collision).
    #[arg(long, default_value_t = failover::FAILOVER_UID_GAP)]
    pub uid_gap: u32,
}

/// `ctl reconcile`.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    pub slot: String,
    /// How long the rebuild afterwards may take.
    #[arg(long, default_value_t = reconcile::REBUILD_TIMEOUT_SECS_DEFAULT)]
    pub timeout_secs: u64,
}

/// `ctl rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    pub slot: String,
    /// Only wait for a rebuild already started to complete.
    #[arg(long)]
    pub resume: bool,
    /// How long to wait for the full sync.
    #[arg(long, default_value_t = reconcile::REBUILD_TIMEOUT_SECS_DEFAULT)]
    pub timeout_secs: u64,
}

/// `ctl history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only this store's changes.
    #[arg(long)]
    pub store: Option<String>,
    /// Most entries shown.
    #[arg(long, default_value_t = history::HISTORY_LIMIT_DEFAULT)]
    pub limit: usize,
}

/// `ctl repl ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ReplCtl {
    /// Per replica: state, lag, pending and held users. Exit 1 if a user
    /// is held.
    Status {
        /// Only this store.
        store: Option<String>,
    },
    /// Release a user the mass-deletion guard holds: the held deletions are
    /// applied to the replica(s).
    Confirm {
        store: String,
        user: String,
        /// Only on this replica (default: every replica holding the user).
        #[arg(long)]
        replica: Option<String>,
    },
}

/// `ctl init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The cluster's name (used in slot host names).
    #[arg(long, default_value = "slotmail")]
    pub name: String,
    /// First IMAP port (slot i of a machine: this + i - 1).
    #[arg(long, default_value_t = cluster::IMAP_PORT_BASE_DEFAULT)]
    pub imap_port: u16,
    /// First LMTP port.
    #[arg(long, default_value_t = cluster::LMTP_PORT_BASE_DEFAULT)]
    pub lmtp_port: u16,
    /// First replication (sync) port.
    #[arg(long, default_value_t = cluster::SYNC_PORT_BASE_DEFAULT)]
    pub sync_port: u16,
    /// Slots a machine may have under the port scheme.
    #[arg(long, default_value_t = cluster::SLOTS_PER_MACHINE_MAX_DEFAULT)]
    pub slots_per_machine_max: u16,
    /// Let IMAP clients log in without TLS (loopback tests and demos only).
    #[arg(long)]
    pub allow_plaintext_auth: bool,
}

/// `ctl machine ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum MachineCtl {
    /// Declare a machine and the address its slots listen on.
    Add {
        name: String,
        #[arg(long)]
        address: IpAddr,
    },
    /// Forget a machine (refused while it has slots).
    Remove { name: String },
    /// Machines with their slots, masters and supervisor.
    List,
}

/// `ctl slot ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SlotCtl {
    /// Add slots to a machine: ids MACHINE1, MACHINE2, ... and ports by the
    /// cluster's port scheme, the lowest free numbers first.
    Add {
        machine: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Capacity weight relative to the machine's other slots.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Forget a slot (refused while it is in a store).
    Remove { id: String },
    /// Every slot: machine, ports, store and role, process and health.
    List,
    /// Start a stopped slot (through its machine's supervisor).
    Start { id: String },
    /// Stop a slot and keep it stopped.
    Stop { id: String },
    /// Stop and start a slot.
    Restart { id: String },
    /// Verify every record and message of a running slot; exit 1 on damage.
    Scrub { id: String },
}

/// `ctl plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Replicas per store: 1 (stores of 2 slots) or 2 (stores of 3).
    #[arg(long)]
    pub replicas: u32,
    /// Create the planned stores in the directory.
    #[arg(long)]
    pub apply: bool,
}

/// `ctl store ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum StoreCtl {
    /// Create a store of free slots on distinct machines, master first.
    Create {
        id: String,
        /// Slots, master first, then replicas in failover order: a1,b1
        #[arg(long, value_delimiter = ',', required = true)]
        slots: Vec<String>,
        /// Durable delivery: LMTP answers 250 once a replica holds the message.
        #[arg(long)]
        sync: bool,
    },
    /// Forget a store and free its slots (refused while it has users).
    Remove { id: String },
    /// Every store with its master, replicas, epoch and users.
    List,
    /// Add a free slot as the store's last replica.
    AddReplica { store: String, slot: String },
    /// Remove a replica from a store.
    DropReplica { store: String, slot: String },
}

/// `ctl user ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCtl {
    /// Add a user; the password is read from standard input.
    Add {
        name: String,
        /// The store (default: the store with the fewest users).
        #[arg(long)]
        store: Option<String>,
        /// Read the password from standard input (required: passwords never
        /// go on a command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The user may authorize as any other user (operators, the check).
        #[arg(long)]
        admin: bool,
    },
    /// Delete a user and all their mail.
    Delete { name: String },
    /// Set a user's password, read from standard input.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a user's quota ("unlimited" or a number; both default to unlimited).
    Quota {
        name: String,
        /// Bytes, or "unlimited".
        #[arg(long, default_value = "unlimited")]
        bytes: String,
        /// Messages, or "unlimited".
        #[arg(long, default_value = "unlimited")]
        messages: String,
    },
    /// Users with their store and master slot.
    List {
        /// Only this store's users.
        #[arg(long)]
        store: Option<String>,
    },
    /// A user's store, master slot and addresses, mailboxes and quota.
    Show { name: String },
    /// Move a user to another store: copy by replication while the user
    /// works, refuse its writes for the final round, prove equality, switch
    /// the directory, remove the old copy. UIDs and UIDVALIDITY stay.
    /// Run again to continue an interrupted move.
    Move {
        name: String,
        /// The store to move to (required, except with --abort).
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Copy and keep copying, but do not switch yet (finish later by
        /// running the command again without it).
        #[arg(long, conflicts_with = "abort")]
        copy_only: bool,
        /// Undo a move that has not switched yet: stop the copy, remove the
        /// partial copy from the target store; the user stays where it is.
        #[arg(long)]
        abort: bool,
        /// Longest the first copy may take before the command gives up (the
        /// move stays marked; run again to continue).
        #[arg(long, default_value_t = moves::COPY_TIMEOUT_SECS_DEFAULT)]
        copy_timeout_secs: u64,
        /// Longest the user's writes may be refused for the final round.
        #[arg(long, default_value_t = moves::FREEZE_TIMEOUT_MS_DEFAULT)]
        freeze_timeout_ms: u64,
    },
}

/// What a command produced: text for people, JSON for programs, and the
/// exit code.
#[derive(Debug, Clone)]
pub struct Report {
    pub text: String,
    pub json: serde_json::Value,
    pub exit: Exit,
}

/// Run one `ctl` command: print its report (text, or JSON with `--json`)
/// to `stdout`, errors to `stderr` (and, with `--json`, as
/// `{"error": ..., "exit": N}` to `stdout`), and return the exit code.
pub fn main_ctl(
    args: CtlArgs,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit {
    let json = args.json;
    match run_ctl(args, stdin) {
        Ok(report) => {
            if json {
                let _ = writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&report.json).expect("reports serialize")
                );
            } else {
                let _ = write!(stdout, "{}", report.text);
            }
            report.exit
        }
        Err(e) => {
            let exit = e.exit();
            let message = e.to_string();
            let _ = writeln!(stderr, "slotmail ctl: error: {message}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                // Most messages embed their cause already.
                let text = c.to_string();
                if !message.contains(&text) {
                    let _ = writeln!(stderr, "  caused by: {text}");
                }
                cause = c.source();
            }
            if json {
                let doc = serde_json::json!({"error": message, "exit": exit.code()});
                let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&doc).unwrap());
            }
            exit
        }
    }
}

/// Run one `ctl` command and return its report.
pub fn run_ctl(args: CtlArgs, stdin: &mut dyn Read) -> Result<Report, CtlError> {
    let file = cluster::Cluster::locate(args.cluster.as_deref());
    if let CtlCommand::Init(init) = &args.command {
        return commands::init(&file, init);
    }
    let ctx = Ctx::open(&file)?;
    match args.command {
        CtlCommand::Init(_) => unreachable!("handled above"),
        CtlCommand::Machine(cmd) => commands::machine(&ctx, cmd),
        CtlCommand::Slot(cmd) => commands::slot(&ctx, cmd),
        CtlCommand::Plan(plan) => commands::plan(&ctx, &plan),
        CtlCommand::Store(cmd) => commands::store(&ctx, cmd),
        CtlCommand::User(cmd) => users::user(&ctx, cmd, stdin),
        CtlCommand::Status => status::status(&ctx),
        CtlCommand::Repl(cmd) => repl::repl(&ctx, cmd),
        CtlCommand::Switchover(a) => {
            switchover::switchover(&ctx, &a.store, a.to.as_deref(), &a.switch.options())
        }
        CtlCommand::Evacuate(a) => switchover::evacuate(&ctx, &a.machine, &a.switch.options()),
        CtlCommand::Failover(a) => failover::failover(
            &ctx,
            &a.machine,
            a.force,
            a.max_lag_ms,
            a.uid_gap,
            a.reason.as_deref(),
        ),
        CtlCommand::Reconcile(a) => reconcile::reconcile(
            &ctx,
            &a.slot,
            std::time::Duration::from_secs(a.timeout_secs),
        ),
        CtlCommand::Rebuild(a) => reconcile::rebuild(
            &ctx,
            &a.slot,
            a.resume,
            std::time::Duration::from_secs(a.timeout_secs),
        ),
        CtlCommand::History(a) => history::history(&ctx, a.store.as_deref(), a.limit),
        CtlCommand::Rebalance(a) => rebalance::rebalance(&ctx, &a),
    }
}

/// A loaded cluster and its open directory.
pub(crate) struct Ctx {
    pub cluster: cluster::Cluster,
    pub directory: slotmail_directory::SqliteDirectory,
}

impl Ctx {
    fn open(file: &std::path::Path) -> Result<Ctx, CtlError> {
        let cluster = cluster::Cluster::load(file)?;
        let directory = open_directory(&cluster)?;
        Ok(Ctx { cluster, directory })
    }
}

/// Open the cluster's directory (it must exist: `ctl init` creates it).
pub fn open_directory(
    cluster: &cluster::Cluster,
) -> Result<slotmail_directory::SqliteDirectory, CtlError> {
    Ok(slotmail_directory::SqliteDirectory::open(
        &cluster.directory,
    )?)
}

/// The first line of `stdin` (at most [`PASSWORD_INPUT_BYTES_MAX`]), without
/// its line end.
pub(crate) fn read_password(stdin: &mut dyn Read) -> Result<String, CtlError> {
    let mut input = String::new();
    stdin
        .take(PASSWORD_INPUT_BYTES_MAX)
        .read_to_string(&mut input)
        .map_err(|source| CtlError::Io {
            what: "reading the password from",
            path: PathBuf::from("standard input"),
            source,
        })?;
    let password = input.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(CtlError::Usage("no password on standard input".into()));
    }
    Ok(password)
}

/// Most bytes of standard input read for a password.
pub const PASSWORD_INPUT_BYTES_MAX: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    /// Run `ctl ARGS` against `cluster`; (exit, stdout, stderr).
    fn ctl(cluster: &std::path::Path, args: &[&str], stdin: &str) -> (Exit, String, String) {
        let mut all = vec!["ctl", "--cluster", cluster.to_str().unwrap()];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = main_ctl(cli.ctl, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            exit,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn exit_codes_json_errors_and_unchanged_directory_on_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("cluster.toml");
        // No cluster yet: a usage error that says how to make one.
        let (exit, _, err) = ctl(&c, &["status"], "");
        assert_eq!(exit, Exit::Usage);
        assert!(err.contains("ctl init"), "{err}");

        assert_eq!(ctl(&c, &["init", "--name", "t"], "").0, Exit::Ok);
        assert_eq!(ctl(&c, &["init"], "").0, Exit::Usage);
        for (m, a) in [("a", "127.0.0.31"), ("b", "127.0.0.32")] {
            assert_eq!(
                ctl(&c, &["machine", "add", m, "--address", a], "").0,
                Exit::Ok
            );
            assert_eq!(ctl(&c, &["slot", "add", m, "--count", "2"], "").0, Exit::Ok);
        }
        let (_, before, _) = ctl(&c, &["slot", "list", "--json"], "");

        // Refusals: exit 2, a JSON error document with --json, nothing changed.
        let (exit, out, err) = ctl(
            &c,
            &["machine", "add", "c", "--address", "127.0.0.31", "--json"],
            "",
        );
        assert_eq!(exit, Exit::Usage);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["exit"], 2);
        assert!(
            doc["error"].as_str().unwrap().contains("127.0.0.31"),
            "{doc}"
        );
        assert!(err.contains("error"), "{err}");
        assert_eq!(
            ctl(&c, &["store", "create", "s1", "--slots", "a1,a2"], "").0,
            Exit::Usage
        );
        assert_eq!(ctl(&c, &["plan", "--replicas", "2"], "").0, Exit::Usage);
        assert_eq!(ctl(&c, &["slot", "remove", "zz"], "").0, Exit::Usage);
        assert_eq!(ctl(&c, &["slot", "list", "--json"], "").1, before);

        // Stores and users without running slots.
        assert_eq!(
            ctl(&c, &["plan", "--replicas", "1", "--apply"], "").0,
            Exit::Ok
        );
        let (exit, out, _) = ctl(&c, &["status", "--json"], "");
        assert_eq!(exit, Exit::Findings, "every slot is down");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["stores"].as_array().unwrap().len(), 2);
        // The master does not answer: the user is not added anywhere.
        let (exit, _, err) = ctl(&c, &["user", "add", "u", "--password-stdin"], "pw\n");
        assert_eq!(exit, Exit::Failed, "{err}");
        assert!(err.contains("admin.sock"), "{err}");
        let (_, out, _) = ctl(&c, &["user", "list", "--json"], "");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["users"],
            serde_json::json!([])
        );
        // No supervisor: start fails with a hint.
        let (exit, _, err) = ctl(&c, &["slot", "start", "a1"], "");
        assert_eq!(exit, Exit::Failed);
        assert!(err.contains("machine run"), "{err}");
    }
}
