//! The machine supervisor's control socket (`STATE/machine-NAME.sock`):
//! how `slotmail ctl slot start|stop|restart` and `slot list` reach the
//! `slotmail machine run` process of a machine.
//!
//! JSON lines, one [`ControlRequest`] per line, one [`ControlResponse`] per
//! request, in order:
//!
//! ```text
//! > {"op":"stop","slot":"a1"}
//! < {"type":"slot","slot":{"id":"a1","state":"stopped","pid":null,...}}
//! > {"op":"status"}
//! < {"type":"slots","machine":"a","pid":4242,"slots":[...]}
//! ```
//!
//! `stop` answers once the slot's process has exited (SIGTERM, then SIGKILL
//! after the supervisor's stop timeout); `start` answers once the process
//! is spawned; `restart` once the old process has exited and the new one is
//! spawned. The socket is mode 0600, bounded like the slot's admin socket
//! ([`REQUEST_LINE_MAX_BYTES`], [`CONNECTIONS_MAX`], timeouts).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest request line, in bytes, newline included.
pub const REQUEST_LINE_MAX_BYTES: usize = 64 * 1024;
/// Longest response line the client reads, in bytes.
pub const RESPONSE_LINE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Most control connections served at once.
pub const CONNECTIONS_MAX: usize = 16;
/// A control connection idle for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client waits for a reply (a stop may take the supervisor's
/// stop timeout and a restart twice that).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to a machine supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Every slot the supervisor runs, with its process state.
    Status,
    /// Start a stopped (or failed, or backing-off) slot now.
    Start { slot: String },
    /// Stop a slot and keep it stopped until `start`.
    Stop { slot: String },
    /// Stop and start a slot.
    Restart { slot: String },
    /// Read the directory now (not at the next poll) and apply it: used by
    /// switchover and failover so both slots restart at once.
    Reload,
}

/// A slot's process state as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcState {
    /// The process runs.
    Running,
    /// SIGTERM sent; waiting for the process to exit.
    Stopping,
    /// The process exited; it is restarted when its backoff delay ends.
    Backoff,
    /// Stopped by an operator (`ctl slot stop`); stays stopped.
    Stopped,
    /// Restarted too often within the restart window; given up until
    /// `ctl slot start`.
    Failed,
}

impl ProcState {
    /// The state as shown (`running`, `stopped`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Running => "running",
            ProcState::Stopping => "stopping",
            ProcState::Backoff => "backoff",
            ProcState::Stopped => "stopped",
            ProcState::Failed => "failed",
        }
    }
}

/// One slot under a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotProcess {
    pub id: String,
    pub state: ProcState,
    /// The process id while it runs.
    pub pid: Option<u32>,
    /// Since the process started, while it runs.
    pub uptime_ms: Option<u64>,
    /// Restarts after unplanned exits, since the supervisor started.
    pub restarts: u64,
    /// How the last process ended, if one did.
    pub last_exit: Option<String>,
    /// The generated configuration file.
    pub config: PathBuf,
    /// The slot's log (its process's standard error and output).
    pub log: PathBuf,
}

/// Why a control request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlErrorCode {
    /// Not a request of this protocol.
    BadRequest,
    /// The line was too long.
    TooLarge,
    /// Too many connections.
    Busy,
    /// The supervisor runs no slot of that id.
    UnknownSlot,
    /// The supervisor is shutting down.
    ShuttingDown,
}

/// A supervisor's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlResponse {
    /// status.
    Slots {
        machine: String,
        /// The supervisor's process id.
        pid: u32,
        slots: Vec<SlotProcess>,
    },
    /// start, stop, restart: the slot afterwards.
    Slot { slot: SlotProcess },
    /// The request failed.
    Error {
        code: ControlErrorCode,
        message: String,
    },
}

/// Why a control request could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Nothing answers on the socket.
    #[error("machine {machine}'s supervisor does not answer on {} ({source}); is `slotmail machine run --machine {machine}` running?", path.display())]
    NotRunning {
        machine: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or timed out.
    #[error("talking to {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not a reply of this protocol.
    #[error("{}: bad reply: {detail}", path.display())]
    Protocol { path: PathBuf, detail: String },
    /// The supervisor refused the request.
    #[error("machine {machine}'s supervisor refused: {message}")]
    Refused {
        machine: String,
        code: ControlErrorCode,
        message: String,
    },
}

/// Send one request to the supervisor of `machine` at `path`.
pub fn control_request(
    machine: &str,
    path: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
        ControlError::NotRunning {
            machine: machine.to_string(),
            path: path.to_path_buf(),
            source,
        }
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut reader =
        std::io::BufReader::new(std::io::Read::take(&stream, RESPONSE_LINE_MAX_BYTES as u64));
    let mut reply = Vec::new();
    reader.read_until(b'\n', &mut reply).map_err(io)?;
    let protocol = |detail: String| ControlError::Protocol {
        path: path.to_path_buf(),
        detail,
    };
    if reply.last() != Some(&b'\n') {
        return Err(protocol(
            "the connection closed without a full reply".into(),
        ));
    }
    match serde_json::from_slice(&reply).map_err(|e| protocol(e.to_string()))? {
        ControlResponse::Error { code, message } => Err(ControlError::Refused {
            machine: machine.to_string(),
            code,
            message,
        }),
        other => Ok(other),
    }
}
