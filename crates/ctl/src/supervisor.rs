//! `slotmail machine run --cluster FILE --machine NAME`: the supervisor of
//! one machine's slots.
//!
//! It reads the directory, writes every slot's configuration
//! (`STATE/NAME/SLOT.toml`, see [`crate::slotconf`]), and runs each slot as
//! its own child process (`slotmail slot run --config STATE/NAME/SLOT.toml`,
//! standard output and error appended to `STATE/NAME/SLOT.log`), in its own
//! process group so a terminal's Ctrl-C reaches the supervisor only.
//!
//! - **Restarts.** A slot that exits on its own is restarted after a
//!   backoff that starts at [`BACKOFF_INITIAL`] and doubles up to
//!   [`BACKOFF_MAX`]; it goes back to the start once a process ran
//!   [`BACKOFF_RESET_AFTER`]. More than [`RESTARTS_PER_WINDOW_MAX`]
//!   restarts within [`RESTART_WINDOW`] and the supervisor gives up on the
//!   slot (state `failed`, logged at `error`) until `ctl slot start`.
//! - **Directory changes.** Every [`RECONCILE_INTERVAL`] it checks the
//!   directory's revision; when it changed, it regenerates the configs:
//!   new slots are started, removed ones stopped, and a slot whose config
//!   changed (it joined a store, its role or epoch changed) is restarted.
//! - **Control socket** `STATE/machine-NAME.sock` ([`crate::control`]):
//!   status, start, stop, restart.
//! - **Shutdown** (the future passed in resolves: SIGTERM or SIGINT in the
//!   binary): SIGTERM to every child, SIGKILL to any still running after
//!   [`STOP_TIMEOUT`], then the socket is removed.
//!
//! Only the supervisor's own children are signalled, by the PID of a child
//! it has not yet reaped (so the PID cannot have been reused).

use crate::CtlError;
use crate::cluster::Cluster;
use crate::control::{
    CONNECTIONS_MAX, ControlErrorCode, ControlRequest, ControlResponse, IDLE_TIMEOUT, ProcState,
    REQUEST_LINE_MAX_BYTES, SlotProcess,
};
use slotmail_directory::{Directory, SqliteDirectory};
use slotmail_slot::admin::AdminError;
use slotmail_slot::unix_socket::PrivateListener;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// First delay before restarting a slot that exited.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest delay before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long resets the backoff.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// The window in which restarts are counted.
pub const RESTART_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Most restarts within [`RESTART_WINDOW`] before the slot is given up.
pub const RESTARTS_PER_WINDOW_MAX: usize = 10;
/// How long a slot has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the supervisor checks its children.
pub const TICK: Duration = Duration::from_millis(50);
/// How often the supervisor checks the directory for changes.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// A slot log larger than this is moved to `SLOT.log.1` at the next start.
pub const SLOT_LOG_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// Control requests queued for the supervisor, at most.
pub const CONTROL_QUEUE_MAX: usize = 64;

/// `slotmail machine run`.
#[derive(Debug, Clone, clap::Args)]
pub struct MachineRunArgs {
    /// The cluster file (default: ./cluster.toml).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// The machine whose slots to run (as in `ctl machine list`).
    #[arg(long)]
    pub machine: String,
}

/// `slotmail machine ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MachineCommand {
    /// Run and supervise every slot of one machine, each its own process,
    /// until SIGTERM or SIGINT.
    Run(MachineRunArgs),
}

/// How slots are started: `program ARGS... CONFIG`. The binary uses its
/// own executable with `slot run --config`.
#[derive(Debug, Clone)]
pub struct SlotLauncher {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl SlotLauncher {
    /// This executable, `slot run --config CONFIG`.
    pub fn current_exe() -> Result<SlotLauncher, CtlError> {
        let program = std::env::current_exe().map_err(|source| CtlError::Io {
            what: "finding this program",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Ok(SlotLauncher {
            program,
            args: vec!["slot".into(), "run".into(), "--config".into()],
        })
    }
}

/// Run the supervisor of `args.machine` until `shutdown` resolves, with
/// this executable as the slot program.
pub async fn run_machine(
    args: MachineRunArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CtlError> {
    let launcher = SlotLauncher::current_exe()?;
    let cluster = Cluster::load(&Cluster::locate(args.cluster.as_deref()))?;
    supervise(cluster, args.machine, launcher, shutdown).await
}

/// Run the supervisor of `machine` with a given slot launcher.
pub async fn supervise(
    cluster: Cluster,
    machine: String,
    launcher: SlotLauncher,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CtlError> {
    let directory = Arc::new(crate::open_directory(&cluster)?);
    let topology = {
        let d = directory.clone();
        tokio::task::spawn_blocking(move || d.snapshot())
            .await
            .map_err(|e| CtlError::Failed(e.to_string()))??
    };
    if !topology.machines.contains_key(&machine) {
        return Err(CtlError::Usage(format!(
            "machine {machine} is not in the directory (see `slotmail ctl machine list`)"
        )));
    }
    let state_dir = cluster.machine_state_dir(&machine);
    std::fs::create_dir_all(&state_dir).map_err(|source| CtlError::Io {
        what: "creating",
        path: state_dir.clone(),
        source,
    })?;
    let socket = cluster.machine_socket(&machine);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(CtlError::Usage(format!(
            "machine {machine}'s supervisor is running already ({} answers)",
            socket.display()
        )));
    }
    let listener = bind_control(&socket)?;
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE_MAX);
    let stop_accepting = tokio_util_free::Flag::default();
    let accept_task = tokio::spawn(accept_loop(listener, tx, stop_accepting.clone()));
    tracing::info!(%machine, socket = %socket.display(), "machine supervisor started");
    let mut sup = Supervisor {
        cluster,
        machine,
        directory,
        launcher,
        state_dir,
        slots: BTreeMap::new(),
        revision: None,
        last_reconcile: None,
        reload_waiters: Vec::new(),
        shutting_down: false,
    };
    sup.reconcile(topology).await;
    let result = sup.run(rx, shutdown).await;
    stop_accepting.set();
    accept_task.abort();
    let _ = accept_task.await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!(machine = %sup.machine, "machine supervisor stopped");
    result
}

/// A tiny shared flag (no extra dependency for a cancellation token).
mod tokio_util_free {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Flag(Arc<AtomicBool>);

    impl Flag {
        pub fn set(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
        pub fn is_set(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
}

fn bind_control(path: &Path) -> Result<PrivateListener, CtlError> {
    PrivateListener::bind(path, "control").map_err(|e| match e {
        AdminError::PathTooLong { len, .. } => CtlError::Usage(format!(
            "control socket path {} is {len} bytes; a Unix socket path has at most {} (use a shorter state_dir)",
            path.display(),
            slotmail_slot::admin::SOCKET_PATH_LEN_MAX_BYTES
        )),
        AdminError::Listen { source, .. } => CtlError::Io {
            what: "listening on",
            path: path.to_path_buf(),
            source,
        },
        other => CtlError::Io {
            what: "listening on",
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

type Job = (ControlRequest, oneshot::Sender<ControlResponse>);

async fn accept_loop(
    listener: PrivateListener,
    tx: mpsc::Sender<Job>,
    stop: tokio_util_free::Flag,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let stream = listener.accept().await;
        if stop.is_set() {
            return;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(reply_once(
                stream,
                ControlResponse::Error {
                    code: ControlErrorCode::Busy,
                    message: format!("more than {CONNECTIONS_MAX} control connections"),
                },
            ));
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_control(stream, tx).await;
        });
    }
}

async fn reply_once(mut stream: UnixStream, response: ControlResponse) {
    let mut line = serde_json::to_vec(&response).expect("responses serialize");
    line.push(b'\n');
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&line)).await;
}

async fn serve_control(stream: UnixStream, tx: mpsc::Sender<Job>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = REQUEST_LINE_MAX_BYTES as u64;
        let n = match tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return;
        }
        let too_large = line.last() != Some(&b'\n') && line.len() as u64 >= limit;
        let response = if too_large {
            ControlResponse::Error {
                code: ControlErrorCode::TooLarge,
                message: format!("a request line has at most {REQUEST_LINE_MAX_BYTES} bytes"),
            }
        } else {
            match serde_json::from_slice::<ControlRequest>(&line) {
                Err(e) => ControlResponse::Error {
                    code: ControlErrorCode::BadRequest,
                    message: format!("not a request: {e}"),
                },
                Ok(request) => {
                    let (reply_tx, reply_rx) = oneshot::channel();
                    if tx.send((request, reply_tx)).await.is_err() {
                        shutting_down()
                    } else {
                        reply_rx.await.unwrap_or_else(|_| shutting_down())
                    }
                }
            }
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || too_large {
            return;
        }
    }
}

fn shutting_down() -> ControlResponse {
    ControlResponse::Error {
        code: ControlErrorCode::ShuttingDown,
        message: "the supervisor is shutting down".into(),
    }
}

/// What to do once a stopping process has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keep it stopped (operator's stop).
    Hold,
    /// Start it again (restart, config change).
    Start,
    /// Forget the slot (it left the machine, or the supervisor stops).
    Forget,
}

enum Proc {
    Running {
        child: Child,
        since: Instant,
    },
    Stopping {
        child: Child,
        since: Instant,
        deadline: Instant,
        killed: bool,
        then: After,
    },
    Backoff {
        until: Instant,
    },
    Stopped,
    Failed,
}

struct Entry {
    id: String,
    config_path: PathBuf,
    log_path: PathBuf,
    config_text: String,
    proc: Proc,
    backoff: Duration,
    recent_restarts: VecDeque<Instant>,
    restarts: u64,
    last_exit: Option<String>,
    /// Replies owed once the current stop completes.
    waiters: Vec<oneshot::Sender<ControlResponse>>,
}

impl Entry {
    fn state(&self) -> ProcState {
        match self.proc {
            Proc::Running { .. } => ProcState::Running,
            Proc::Stopping { .. } => ProcState::Stopping,
            Proc::Backoff { .. } => ProcState::Backoff,
            Proc::Stopped => ProcState::Stopped,
            Proc::Failed => ProcState::Failed,
        }
    }

    fn view(&self) -> SlotProcess {
        let (pid, uptime_ms) = match &self.proc {
            Proc::Running { child, since } | Proc::Stopping { child, since, .. } => {
                (child.id(), Some(since.elapsed().as_millis() as u64))
            }
            _ => (None, None),
        };
        SlotProcess {
            id: self.id.clone(),
            state: self.state(),
            pid,
            uptime_ms,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            config: self.config_path.clone(),
            log: self.log_path.clone(),
        }
    }

    fn reply_waiters(&mut self) {
        let view = self.view();
        for w in self.waiters.drain(..) {
            let _ = w.send(ControlResponse::Slot { slot: view.clone() });
        }
    }
}

struct Supervisor {
    cluster: Cluster,
    machine: String,
    directory: Arc<SqliteDirectory>,
    launcher: SlotLauncher,
    state_dir: PathBuf,
    slots: BTreeMap<String, Entry>,
    revision: Option<u64>,
    last_reconcile: Option<Instant>,
    /// `reload` requests, answered after the next reading of the directory.
    reload_waiters: Vec<oneshot::Sender<ControlResponse>>,
    shutting_down: bool,
}

impl Supervisor {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Job>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), CtlError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown, if !self.shutting_down => {
                    tracing::info!(machine = %self.machine, "stopping every slot");
                    self.shutting_down = true;
                    let ids: Vec<String> = self.slots.keys().cloned().collect();
                    for id in ids {
                        self.stop(&id, After::Forget);
                    }
                }
                Some((request, reply)) = rx.recv() => self.control(request, reply),
                _ = tick.tick() => {
                    self.check_children();
                    if self.shutting_down {
                        if self.slots.is_empty() {
                            return Ok(());
                        }
                    } else if self.last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_INTERVAL) {
                        self.last_reconcile = Some(Instant::now());
                        self.maybe_reconcile().await;
                        for reply in std::mem::take(&mut self.reload_waiters) {
                            let _ = reply.send(self.status_response());
                        }
                    }
                }
            }
        }
    }

    async fn maybe_reconcile(&mut self) {
        let d = self.directory.clone();
        let revision = match tokio::task::spawn_blocking(move || d.revision()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "reading the directory's revision failed");
                return;
            }
            Err(_) => return,
        };
        if self.revision == Some(revision) {
            return;
        }
        let d = self.directory.clone();
        match tokio::task::spawn_blocking(move || d.snapshot()).await {
            Ok(Ok(t)) => self.reconcile(t).await,
            Ok(Err(e)) => tracing::warn!(cause = %e, "reading the directory failed"),
            Err(_) => {}
        }
    }

    /// Bring the slots in line with the directory.
    async fn reconcile(&mut self, topology: slotmail_directory::Topology) {
        self.revision = Some(topology.revision);
        if !topology.machines.contains_key(&self.machine) {
            tracing::warn!(machine = %self.machine, "this machine is no longer in the directory");
        }
        let wanted = crate::slotconf::machine_slot_configs(&self.cluster, &topology, &self.machine);
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(slot = %id, "slot left this machine in the directory; stopping it");
            self.stop(&id, After::Forget);
        }
        for (id, text) in wanted {
            let config_path = self.state_dir.join(format!("{id}.toml"));
            let changed = self.slots.get(&id).is_none_or(|e| e.config_text != text);
            if !changed {
                continue;
            }
            if let Err(e) = write_atomically(&config_path, text.as_bytes()) {
                tracing::error!(slot = %id, cause = %e, "writing the slot's config failed");
                continue;
            }
            match self.slots.get_mut(&id) {
                None => {
                    tracing::info!(slot = %id, "starting slot");
                    let entry = Entry {
                        id: id.clone(),
                        log_path: self.state_dir.join(format!("{id}.log")),
                        config_path,
                        config_text: text,
                        proc: Proc::Stopped,
                        backoff: BACKOFF_INITIAL,
                        recent_restarts: VecDeque::new(),
                        restarts: 0,
                        last_exit: None,
                        waiters: Vec::new(),
                    };
                    self.slots.insert(id.clone(), entry);
                    self.spawn(&id);
                }
                Some(entry) => {
                    entry.config_text = text;
                    if matches!(entry.proc, Proc::Running { .. }) {
                        tracing::info!(slot = %id, "slot's config changed in the directory; restarting it");
                        self.stop(&id, After::Start);
                    }
                }
            }
        }
    }

    fn status_response(&self) -> ControlResponse {
        ControlResponse::Slots {
            machine: self.machine.clone(),
            pid: std::process::id(),
            slots: self.slots.values().map(Entry::view).collect(),
        }
    }

    fn control(&mut self, request: ControlRequest, reply: oneshot::Sender<ControlResponse>) {
        if self.shutting_down && request != ControlRequest::Status {
            let _ = reply.send(shutting_down());
            return;
        }
        let id = match &request {
            ControlRequest::Status => {
                let _ = reply.send(self.status_response());
                return;
            }
            ControlRequest::Reload => {
                // Read the directory at the next tick, then answer.
                self.last_reconcile = None;
                self.reload_waiters.push(reply);
                return;
            }
            ControlRequest::Start { slot }
            | ControlRequest::Stop { slot }
            | ControlRequest::Restart { slot } => slot.clone(),
        };
        let Some(entry) = self.slots.get_mut(&id) else {
            let _ = reply.send(ControlResponse::Error {
                code: ControlErrorCode::UnknownSlot,
                message: format!("machine {} runs no slot {id}", self.machine),
            });
            return;
        };
        match request {
            ControlRequest::Status | ControlRequest::Reload => unreachable!("answered above"),
            ControlRequest::Stop { .. } => {
                tracing::info!(slot = %id, "stop requested");
                match &mut entry.proc {
                    Proc::Running { .. } => {
                        entry.waiters.push(reply);
                        self.stop(&id, After::Hold);
                    }
                    Proc::Stopping { then, .. } => {
                        *then = After::Hold;
                        entry.waiters.push(reply);
                    }
                    Proc::Backoff { .. } | Proc::Failed | Proc::Stopped => {
                        entry.proc = Proc::Stopped;
                        let _ = reply.send(ControlResponse::Slot { slot: entry.view() });
                    }
                }
            }
            ControlRequest::Start { .. } | ControlRequest::Restart { .. } => {
                let restart = matches!(request, ControlRequest::Restart { .. });
                tracing::info!(slot = %id, restart, "start requested");
                entry.backoff = BACKOFF_INITIAL;
                entry.recent_restarts.clear();
                match &mut entry.proc {
                    Proc::Running { .. } if restart => {
                        entry.waiters.push(reply);
                        self.stop(&id, After::Start);
                    }
                    Proc::Running { .. } => {
                        let _ = reply.send(ControlResponse::Slot { slot: entry.view() });
                    }
                    Proc::Stopping { then, .. } => {
                        *then = After::Start;
                        entry.waiters.push(reply);
                    }
                    Proc::Backoff { .. } | Proc::Failed | Proc::Stopped => {
                        self.spawn(&id);
                        let entry = self.slots.get(&id).expect("entry exists");
                        let _ = reply.send(ControlResponse::Slot { slot: entry.view() });
                    }
                }
            }
        }
    }

    /// Start the slot's process now. A failure to spawn counts as an exit.
    fn spawn(&mut self, id: &str) {
        let Some(entry) = self.slots.get_mut(id) else {
            return;
        };
        rotate_log(&entry.log_path);
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&entry.log_path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(slot = %id, cause = %e, "opening the slot's log failed");
                entry.last_exit = Some(format!("cannot open log: {e}"));
                schedule_restart(entry, None);
                return;
            }
        };
        let log2 = match log.try_clone() {
            Ok(f) => f,
            Err(e) => {
                entry.last_exit = Some(format!("cannot open log: {e}"));
                schedule_restart(entry, None);
                return;
            }
        };
        let spawned = Command::new(&self.launcher.program)
            .args(&self.launcher.args)
            .arg(&entry.config_path)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false)
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!(slot = %id, pid = child.id(), "slot process started");
                entry.proc = Proc::Running {
                    child,
                    since: Instant::now(),
                };
            }
            Err(e) => {
                tracing::error!(slot = %id, cause = %e, program = %self.launcher.program.display(), "starting the slot failed");
                entry.last_exit = Some(format!("spawn failed: {e}"));
                schedule_restart(entry, None);
            }
        }
    }

    /// SIGTERM the slot's process (if it runs) and do `then` once it exited.
    fn stop(&mut self, id: &str, then: After) {
        let Some(entry) = self.slots.get_mut(id) else {
            return;
        };
        let proc = std::mem::replace(&mut entry.proc, Proc::Stopped);
        let next = match proc {
            Proc::Running { child, since } => {
                send_sigterm(id, &child);
                Proc::Stopping {
                    child,
                    since,
                    deadline: Instant::now() + STOP_TIMEOUT,
                    killed: false,
                    then,
                }
            }
            Proc::Stopping {
                child,
                since,
                deadline,
                killed,
                then: old,
            } => Proc::Stopping {
                child,
                since,
                deadline,
                killed,
                // Forgetting wins over anything else.
                then: if old == After::Forget { old } else { then },
            },
            _ => match then {
                After::Hold => Proc::Stopped,
                After::Forget => {
                    if let Some(mut e) = self.slots.remove(id) {
                        e.reply_waiters();
                    }
                    return;
                }
                After::Start => {
                    self.spawn(id);
                    return;
                }
            },
        };
        entry.proc = next;
    }

    /// Reap exited children, escalate overdue stops, start due restarts.
    fn check_children(&mut self) {
        let now = Instant::now();
        let ids: Vec<String> = self.slots.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.slots.get_mut(&id) else {
                continue;
            };
            // What to do once the entry is no longer borrowed.
            let mut then = None;
            match &mut entry.proc {
                Proc::Running { child, since } => {
                    if let Some(status) = reaped(&id, child) {
                        let ran = since.elapsed();
                        tracing::warn!(slot = %id, %status, ran_ms = ran.as_millis() as u64, "slot exited on its own");
                        entry.last_exit = Some(status);
                        schedule_restart(entry, Some(ran));
                    }
                }
                Proc::Stopping {
                    child,
                    deadline,
                    killed,
                    then: after,
                    ..
                } => {
                    if let Some(status) = reaped(&id, child) {
                        tracing::info!(slot = %id, %status, "slot stopped");
                        then = Some(*after);
                        entry.last_exit = Some(status);
                        entry.proc = Proc::Stopped;
                    } else if !*killed && now >= *deadline {
                        tracing::warn!(slot = %id, timeout_ms = STOP_TIMEOUT.as_millis() as u64, "slot did not stop after SIGTERM; sending SIGKILL");
                        let _ = child.start_kill();
                        *killed = true;
                    }
                }
                Proc::Backoff { until } => {
                    if now >= *until && !self.shutting_down {
                        tracing::info!(slot = %id, "restarting slot");
                        then = Some(After::Start);
                    }
                }
                Proc::Stopped | Proc::Failed => {}
            }
            match then {
                None => {}
                Some(After::Hold) => entry.reply_waiters(),
                Some(After::Forget) => {
                    if let Some(mut e) = self.slots.remove(&id) {
                        e.reply_waiters();
                    }
                }
                Some(After::Start) => {
                    self.spawn(&id);
                    if let Some(e) = self.slots.get_mut(&id) {
                        e.reply_waiters();
                    }
                }
            }
        }
    }
}

/// The exit status if the child has exited (and is now reaped).
fn reaped(id: &str, child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(slot = %id, cause = %e, "waiting for the slot's process failed");
            Some(format!("wait failed: {e}"))
        }
    }
}

/// After an unplanned exit (`ran`: how long the process ran, if it did):
/// back off, or give up after too many restarts in the window.
fn schedule_restart(entry: &mut Entry, ran: Option<Duration>) {
    let now = Instant::now();
    if ran.is_some_and(|r| r >= BACKOFF_RESET_AFTER) {
        entry.backoff = BACKOFF_INITIAL;
    }
    while entry
        .recent_restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
    {
        entry.recent_restarts.pop_front();
    }
    if entry.recent_restarts.len() >= RESTARTS_PER_WINDOW_MAX {
        tracing::error!(
            slot = %entry.id,
            restarts = entry.recent_restarts.len(),
            window_s = RESTART_WINDOW.as_secs(),
            last_exit = entry.last_exit.as_deref().unwrap_or("-"),
            "slot keeps exiting; giving up until `slotmail ctl slot start`"
        );
        entry.proc = Proc::Failed;
        entry.reply_waiters();
        return;
    }
    entry.recent_restarts.push_back(now);
    entry.restarts += 1;
    let delay = entry.backoff;
    entry.backoff = (entry.backoff * 2).min(BACKOFF_MAX);
    tracing::info!(slot = %entry.id, delay_ms = delay.as_millis() as u64, restarts_in_window = entry.recent_restarts.len(), "slot restarts after backoff");
    entry.proc = Proc::Backoff { until: now + delay };
    entry.reply_waiters();
}

fn send_sigterm(id: &str, child: &Child) {
    // `id()` is `None` once the child was reaped: nothing to signal then.
    let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
        tracing::warn!(slot = %id, cause = %e, "SIGTERM failed");
    }
}

fn rotate_log(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > SLOT_LOG_ROTATE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        let _ = std::fs::rename(path, PathBuf::from(old));
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{InitOptions, PortScheme};
    use crate::control::{CLIENT_TIMEOUT, control_request};
    use slotmail_directory::{Machine, Slot};

    struct Fixture {
        _dir: tempfile::TempDir,
        cluster: Cluster,
        directory: SqliteDirectory,
    }

    fn fixture(slots: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::init(
            &dir.path().join("cluster.toml"),
            &InitOptions {
                name: "t".into(),
                ports: PortScheme::default(),
                allow_plaintext_auth: true,
            },
        )
        .unwrap();
        let directory = SqliteDirectory::create(&cluster.directory).unwrap();
        directory
            .add_machine(&Machine {
                name: "m".into(),
                address: "127.0.0.1".parse().unwrap(),
            })
            .unwrap();
        for i in 1..=slots {
            add_slot(&directory, i);
        }
        Fixture {
            _dir: dir,
            cluster,
            directory,
        }
    }

    fn add_slot(d: &SqliteDirectory, i: u32) {
        d.add_slot(&Slot {
            id: format!("m{i}"),
            machine: "m".into(),
            data_dir: format!("m/m{i}"),
            imap_port: 1142 + i as u16,
            lmtp_port: 2423 + i as u16,
            sync_port: 2499 + i as u16,
            weight: 1,
        })
        .unwrap();
    }

    /// A slot program: `sh -c SCRIPT sh CONFIG`.
    fn launcher(script: &str) -> SlotLauncher {
        SlotLauncher {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into(), "sh".into()],
        }
    }

    async fn ask(cluster: &Cluster, request: ControlRequest) -> ControlResponse {
        let path = cluster.machine_socket("m");
        tokio::task::spawn_blocking(move || {
            control_request("m", &path, &request, CLIENT_TIMEOUT).unwrap()
        })
        .await
        .unwrap()
    }

    async fn slots(cluster: &Cluster) -> Vec<SlotProcess> {
        match ask(cluster, ControlRequest::Status).await {
            ControlResponse::Slots { slots, .. } => slots,
            other => panic!("{other:?}"),
        }
    }

    async fn wait_for(cluster: &Cluster, what: &str, f: impl Fn(&[SlotProcess]) -> bool) {
        let start = Instant::now();
        loop {
            let s = if cluster.machine_socket("m").exists() {
                slots(cluster).await
            } else {
                Vec::new()
            };
            if f(&s) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid_alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn runs_stops_starts_and_shuts_down_its_children() {
        let f = fixture(2);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let cluster = f.cluster.clone();
        let task = tokio::spawn(supervise(
            cluster,
            "m".into(),
            launcher("exec sleep 600"),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let c = &f.cluster;
        wait_for(c, "two running slots", |s| {
            s.len() == 2 && s.iter().all(|p| p.state == ProcState::Running)
        })
        .await;
        let config = std::fs::read_to_string(c.machine_state_dir("m").join("m1.toml")).unwrap();
        assert!(config.contains("listen = \"127.0.0.1:1143\""), "{config}");

        // Stop answers once the process is gone, and it stays stopped.
        let before = slots(c).await;
        let pid = before[0].pid.unwrap();
        let ControlResponse::Slot { slot } =
            ask(c, ControlRequest::Stop { slot: "m1".into() }).await
        else {
            panic!()
        };
        assert_eq!(slot.state, ProcState::Stopped);
        assert!(!pid_alive(pid), "pid {pid} still alive");
        tokio::time::sleep(BACKOFF_INITIAL * 2).await;
        assert_eq!(slots(c).await[0].state, ProcState::Stopped);

        // Start it again; restart gives a new process.
        let ControlResponse::Slot { slot } =
            ask(c, ControlRequest::Start { slot: "m1".into() }).await
        else {
            panic!()
        };
        assert_eq!(slot.state, ProcState::Running);
        let pid1 = slot.pid.unwrap();
        let ControlResponse::Slot { slot } =
            ask(c, ControlRequest::Restart { slot: "m1".into() }).await
        else {
            panic!()
        };
        assert_eq!(slot.state, ProcState::Running);
        assert_ne!(slot.pid.unwrap(), pid1);
        assert!(!pid_alive(pid1));

        let unknown = tokio::task::spawn_blocking({
            let path = c.machine_socket("m");
            move || {
                control_request(
                    "m",
                    &path,
                    &ControlRequest::Stop { slot: "zz".into() },
                    CLIENT_TIMEOUT,
                )
            }
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(
                unknown,
                crate::control::ControlError::Refused {
                    code: ControlErrorCode::UnknownSlot,
                    ..
                }
            ),
            "{unknown}"
        );

        // A second supervisor for the same machine is refused.
        let second = supervise(
            f.cluster.clone(),
            "m".into(),
            launcher("exec sleep 600"),
            std::future::ready(()),
        )
        .await
        .unwrap_err();
        assert!(second.to_string().contains("running already"), "{second}");

        // A slot added to the directory is started without a restart of
        // the supervisor.
        add_slot(&f.directory, 3);
        wait_for(c, "the new slot", |s| {
            s.len() == 3 && s.iter().all(|p| p.state == ProcState::Running)
        })
        .await;

        let pids: Vec<u32> = slots(c).await.iter().filter_map(|p| p.pid).collect();
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        for pid in pids {
            assert!(!pid_alive(pid), "pid {pid} outlived the supervisor");
        }
        assert!(!c.machine_socket("m").exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn restarts_a_crashing_slot_with_backoff_and_kills_a_stubborn_one() {
        let f = fixture(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // Exits at once the first times (a marker file counts the runs),
        // then ignores SIGTERM.
        let marker = f.cluster.state_dir.join("runs");
        let script = format!(
            "echo run >> {m}; if [ $(wc -l < {m}) -lt 3 ]; then exit 7; fi; trap '' TERM; echo ready > {m}.ready; while true; do sleep 0.1; done",
            m = marker.display()
        );
        let task = tokio::spawn(supervise(
            f.cluster.clone(),
            "m".into(),
            launcher(&script),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let c = &f.cluster;
        let started = Instant::now();
        wait_for(c, "a running slot after two crashes", |s| {
            s.len() == 1 && s[0].state == ProcState::Running && s[0].restarts == 2
        })
        .await;
        // 0.5 s then 1 s of backoff.
        assert!(
            started.elapsed() >= BACKOFF_INITIAL * 3,
            "{:?}",
            started.elapsed()
        );
        let s = slots(c).await;
        assert!(s[0].last_exit.as_deref().unwrap().contains('7'), "{s:?}");
        let pid = s[0].pid.unwrap();

        // It ignores SIGTERM (once its trap is set): shutdown SIGKILLs it
        // after the stop timeout.
        let ready = f.cluster.state_dir.join("runs.ready");
        let wait_ready = Instant::now();
        while !ready.exists() {
            assert!(
                wait_ready.elapsed() < Duration::from_secs(10),
                "the stubborn child never set its trap"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = Instant::now();
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(t.elapsed() >= STOP_TIMEOUT, "{:?}", t.elapsed());
        assert!(t.elapsed() < STOP_TIMEOUT * 3, "{:?}", t.elapsed());
        assert!(!pid_alive(pid));
    }

    #[test]
    fn gives_up_after_too_many_restarts_in_the_window() {
        let mut e = Entry {
            id: "x".into(),
            config_path: "x.toml".into(),
            log_path: "x.log".into(),
            config_text: String::new(),
            proc: Proc::Stopped,
            backoff: BACKOFF_INITIAL,
            recent_restarts: VecDeque::new(),
            restarts: 0,
            last_exit: None,
            waiters: Vec::new(),
        };
        let mut delays = Vec::new();
        for _ in 0..RESTARTS_PER_WINDOW_MAX {
            delays.push(e.backoff);
            schedule_restart(&mut e, Some(Duration::from_millis(10)));
            assert_eq!(e.state(), ProcState::Backoff);
        }
        assert_eq!(delays[0], BACKOFF_INITIAL);
        assert_eq!(delays[1], BACKOFF_INITIAL * 2);
        assert_eq!(*delays.last().unwrap(), BACKOFF_MAX);
        schedule_restart(&mut e, Some(Duration::from_millis(10)));
        assert_eq!(e.state(), ProcState::Failed);
        // A long run resets the backoff.
        e.recent_restarts.clear();
        e.backoff = BACKOFF_MAX;
        schedule_restart(&mut e, Some(BACKOFF_RESET_AFTER));
        assert_eq!(e.backoff, BACKOFF_INITIAL * 2);
    }
}
