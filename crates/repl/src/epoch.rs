//! The store's epoch as this slot durably knows it: `DATA/sync-state.toml`.
//!
//! A replica adopts a newer epoch from a master's handshake and must record
//! it durably *before* it answers `Welcome` (docs/replication.md,
//! "Handshake"): after a crash it must still refuse the fenced older master.
//! The file is written whole to a temporary name, fsynced, renamed over the
//! old one and the directory fsynced, so it is always either the old or the
//! new content. The epoch in force is the larger of the configured one and
//! the recorded one.

use crate::error::SetupError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Name of the state file in the slot's data directory.
pub const STATE_FILE: &str = "sync-state.toml";

/// First line of the state file.
const HEADER: &str = "# slotmail sync state: the store epoch this slot has adopted";

/// Largest state file read, in bytes.
const STATE_FILE_BYTES_MAX: u64 = 4096;

/// The epoch in force, backed by the state file.
#[derive(Debug)]
pub struct EpochState {
    path: PathBuf,
    epoch: Mutex<u64>,
}

impl EpochState {
    /// Read the recorded epoch of the slot at `data_dir` (none if the file
    /// does not exist yet); the epoch in force is the larger of it and
    /// `configured`.
    pub fn open(data_dir: &Path, configured: u64) -> Result<EpochState, SetupError> {
        let path = data_dir.join(STATE_FILE);
        let recorded = read_state(&path)?;
        Ok(EpochState {
            epoch: Mutex::new(configured.max(recorded.unwrap_or(0))),
            path,
        })
    }

    /// The epoch in force.
    pub fn get(&self) -> u64 {
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch recorded in the file, if any.
    pub fn recorded(&self) -> Result<Option<u64>, SetupError> {
        read_state(&self.path)
    }

    /// Adopt `epoch` if it is newer than the one in force: recorded durably
    /// before this returns. Returns the epoch in force afterwards.
    pub fn adopt(&self, epoch: u64) -> std::io::Result<u64> {
        let mut current = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if epoch > *current {
            write_durably(
                &self.path,
                format!("{HEADER}\nepoch = {epoch}\n").as_bytes(),
            )?;
            tracing::warn!(epoch, previous = *current, "adopted a newer store epoch");
            *current = epoch;
        }
        Ok(*current)
    }
}

fn read_state(path: &Path) -> Result<Option<u64>, SetupError> {
    let bad = |what: String| SetupError::State {
        path: path.to_path_buf(),
        what,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, STATE_FILE_BYTES_MAX),
        &mut text,
    )
    .map_err(|e| bad(e.to_string()))?;
    let mut epoch = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("epoch", v)) => {
                epoch = Some(
                    v.parse::<u64>()
                        .map_err(|e| bad(format!("epoch {v:?}: {e}")))?,
                )
            }
            _ => return Err(bad(format!("unexpected line {line:?}"))),
        }
    }
    epoch.map(Some).ok_or_else(|| bad("no epoch".into()))
}

/// Write a small file durably: temporary file, fsync, rename, fsync the
/// directory. Also used for the status file.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopts_only_newer_epochs_and_remembers_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = EpochState::open(dir.path(), 3).unwrap();
        assert_eq!(state.get(), 3);
        assert_eq!(state.recorded().unwrap(), None);
        assert_eq!(state.adopt(2).unwrap(), 3);
        assert_eq!(
            state.recorded().unwrap(),
            None,
            "an older epoch writes nothing"
        );
        assert_eq!(state.adopt(7).unwrap(), 7);
        assert_eq!(state.recorded().unwrap(), Some(7));
        // A restart with the old configured epoch keeps the adopted one.
        let again = EpochState::open(dir.path(), 3).unwrap();
        assert_eq!(again.get(), 7);
        let newer_config = EpochState::open(dir.path(), 9).unwrap();
        assert_eq!(newer_config.get(), 9);
    }

    #[test]
    fn refuses_a_damaged_state_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "epoch = x\n").unwrap();
        assert!(EpochState::open(dir.path(), 1).is_err());
        std::fs::write(dir.path().join(STATE_FILE), "# nothing\n").unwrap();
        assert!(EpochState::open(dir.path(), 1).is_err());
    }
}
