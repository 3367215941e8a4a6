//! `CtlError`: why a `ctl` command or the supervisor failed, and the exit
//! code each kind of failure maps to.

use crate::Exit;
use crate::cluster::ClusterError;
use crate::control::ControlError;
use slotmail_directory::{DirectoryError, PlanError};
use slotmail_slot::admin::AdminError;
use std::path::PathBuf;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The request is not acceptable as given (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The cluster file is missing or wrong (exit 2; 3 for I/O errors).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The directory refused (exit 2) or failed (exit 3).
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    /// No placement could be made (exit 2).
    #[error("plan: {0}")]
    Plan(#[from] PlanError),
    /// A slot's admin endpoint refused (exit 2) or could not be reached (3).
    #[error("slot {slot}: {source}")]
    Admin {
        slot: String,
        #[source]
        source: AdminError,
    },
    /// A machine supervisor could not be reached or refused (exit 3).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A local file operation failed (exit 3).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The operation is not available yet (exit 3).
    #[error("not yet supported: {0}")]
    NotSupported(String),
    /// The operation failed part-way or otherwise (exit 3).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// The exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            CtlError::Usage(_) | CtlError::Plan(_) => Exit::Usage,
            CtlError::Cluster(ClusterError::Io { .. }) => Exit::Failed,
            CtlError::Cluster(_) => Exit::Usage,
            CtlError::Directory(e) if e.is_refusal() => Exit::Usage,
            CtlError::Directory(_) => Exit::Failed,
            CtlError::Admin {
                source: AdminError::Remote { code, .. },
                ..
            } if code.is_refusal() => Exit::Usage,
            CtlError::Admin { .. }
            | CtlError::Control(_)
            | CtlError::Io { .. }
            | CtlError::NotSupported(_)
            | CtlError::Failed(_) => Exit::Failed,
        }
    }
}
