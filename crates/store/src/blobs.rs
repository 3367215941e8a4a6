//! Message files of one user: content-addressed, immutable, verified on read.
//!
//! Layout and commit order are in docs/storage.md ("Message files", "Append").
//! A file is written to `tmp/`, fsynced, renamed to `msg/<aa>/<guid>` and the
//! directory fsynced, all before the index commit that makes it visible.

use crate::disk::Disk;
use crate::error::{StoreError, io_err};
use crate::guid::Guid;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary file names are unique per process by this counter plus the pid.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    user: String,
    msg_dir: PathBuf,
    tmp_dir: PathBuf,
    disk: Arc<dyn Disk>,
}

/// Outcome of reading a message file.
pub(crate) enum Read {
    Good(Vec<u8>),
    Missing,
    Bad(String),
}

impl Blobs {
    pub(crate) fn new(user: &str, user_dir: &Path, disk: Arc<dyn Disk>) -> Blobs {
        Blobs {
            user: user.to_string(),
            msg_dir: user_dir.join("msg"),
            tmp_dir: user_dir.join("tmp"),
            disk,
        }
    }

    pub(crate) fn path(&self, guid: &Guid) -> PathBuf {
        let hex = guid.to_hex();
        self.msg_dir.join(&hex[..2]).join(hex)
    }

    /// Make `bytes` durable under its GUID. On error nothing is left in `msg/`
    /// that was not there before, and the temporary file is removed.
    pub(crate) fn put(&self, guid: &Guid, bytes: &[u8]) -> Result<(), StoreError> {
        debug_assert_eq!(
            Guid::of(bytes),
            *guid,
            "put with a GUID that is not the bytes' hash"
        );
        let tmp = self.tmp_path(guid);
        let result = self.put_via(&tmp, guid, bytes);
        if result.is_err() {
            // Best effort: a leftover in tmp/ is also removed at the next open.
            let _ = self.disk.remove(&tmp);
        }
        result
    }

    fn put_via(&self, tmp: &Path, guid: &Guid, bytes: &[u8]) -> Result<(), StoreError> {
        self.disk
            .write_synced(tmp, bytes)
            .map_err(io_err("write message file", tmp))?;
        let final_path = self.path(guid);
        let fan_dir = final_path.parent().expect("message path has a parent");
        let created = self
            .disk
            .create_dir(fan_dir)
            .map_err(io_err("create directory", fan_dir))?;
        self.disk
            .rename(tmp, &final_path)
            .map_err(io_err("rename message file", &final_path))?;
        self.disk
            .sync_dir(fan_dir)
            .map_err(io_err("fsync directory", fan_dir))?;
        if created {
            self.disk
                .sync_dir(&self.msg_dir)
                .map_err(io_err("fsync directory", &self.msg_dir))?;
        }
        Ok(())
    }

    /// Make a batch of files durable together (docs/storage.md, "Batch of
    /// bodies"): each written to `tmp/` and fsynced, up to
    /// [`BATCH_FLUSH_THREADS`] at a time, renamed to `msg/<aa>/<guid>`,
    /// then each fan-out directory the batch touched fsynced once (also
    /// concurrently). On error the temporary files are removed and the
    /// error comes with the GUIDs already renamed into `msg/` (the caller
    /// removes those nothing references).
    pub(crate) fn put_batch(&self, items: &[(Guid, &[u8])]) -> Result<(), (StoreError, Vec<Guid>)> {
        let mut tmps: Vec<PathBuf> = Vec::with_capacity(items.len());
        let mut renamed: Vec<Guid> = Vec::new();
        let result = self.put_batch_via(items, &mut tmps, &mut renamed);
        if let Err(e) = result {
            for tmp in &tmps {
                // Best effort: a leftover in tmp/ is also removed at the next open.
                let _ = self.disk.remove(tmp);
            }
            return Err((e, renamed));
        }
        Ok(())
    }

    fn put_batch_via(
        &self,
        items: &[(Guid, &[u8])],
        tmps: &mut Vec<PathBuf>,
        renamed: &mut Vec<Guid>,
    ) -> Result<(), StoreError> {
        for (guid, bytes) in items {
            debug_assert_eq!(
                Guid::of(bytes),
                *guid,
                "put with a GUID that is not the bytes' hash"
            );
            tmps.push(self.tmp_path(guid));
        }
        // Concurrent fsyncs let the disk take the whole batch in few
        // flushes, and unlike syncfs they wait for our files only.
        let paths: &[PathBuf] = tmps;
        concurrently(items.len(), |i| {
            self.disk
                .write_synced(&paths[i], items[i].1)
                .map_err(io_err("write message file", &paths[i]))
        })?;
        let mut fan_dirs: Vec<PathBuf> = Vec::new();
        let mut created_any = false;
        for ((guid, _), tmp) in items.iter().zip(tmps.iter()) {
            let final_path = self.path(guid);
            let fan_dir = final_path.parent().expect("message path has a parent");
            created_any |= self
                .disk
                .create_dir(fan_dir)
                .map_err(io_err("create directory", fan_dir))?;
            self.disk
                .rename(tmp, &final_path)
                .map_err(io_err("rename message file", &final_path))?;
            renamed.push(*guid);
            if !fan_dirs.iter().any(|d| d == fan_dir) {
                fan_dirs.push(fan_dir.to_path_buf());
            }
        }
        tmps.clear();
        concurrently(fan_dirs.len(), |i| {
            self.disk
                .sync_dir(&fan_dirs[i])
                .map_err(io_err("fsync directory", &fan_dirs[i]))
        })?;
        if created_any {
            self.disk
                .sync_dir(&self.msg_dir)
                .map_err(io_err("fsync directory", &self.msg_dir))?;
        }
        Ok(())
    }

    fn tmp_path(&self, guid: &Guid) -> PathBuf {
        self.tmp_dir.join(format!(
            "{}.{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed),
            &guid.to_hex()[..8]
        ))
    }

    pub(crate) fn exists(&self, guid: &Guid) -> bool {
        self.path(guid).is_file()
    }

    /// Read and verify a message file against its GUID and size.
    pub(crate) fn read(&self, guid: &Guid, size: u64) -> Result<Read, StoreError> {
        let path = self.path(guid);
        let bytes = match self.disk.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(io_err("read message file", path)(e)),
        };
        if bytes.len() as u64 != size {
            return Ok(Read::Bad(format!(
                "message {guid} has {} bytes, the index says {size}",
                bytes.len()
            )));
        }
        let actual = Guid::of(&bytes);
        if actual != *guid {
            return Ok(Read::Bad(format!("message {guid} hashes to {actual}")));
        }
        Ok(Read::Good(bytes))
    }

    pub(crate) fn remove(&self, guid: &Guid) {
        let path = self.path(guid);
        if let Err(e) = self.disk.remove(&path) {
            // The file is unreferenced already: a leftover costs space, not
            // correctness, and scrub --repair removes it.
            tracing::warn!(user = %self.user, path = %path.display(), cause = %e, "could not remove message file");
        }
    }

    /// Remove everything in tmp/ (interrupted writes of an earlier process).
    pub(crate) fn clean_tmp(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let entries = match std::fs::read_dir(&self.tmp_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list directory", &self.tmp_dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list directory", &self.tmp_dir))?;
            self.disk
                .remove(&entry.path())
                .map_err(io_err("remove temporary file", entry.path()))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Every message file present, by GUID, plus names that are not GUIDs.
    pub(crate) fn list(&self) -> Result<(Vec<Guid>, Vec<PathBuf>), StoreError> {
        let mut guids = Vec::new();
        let mut strays = Vec::new();
        let fans = match std::fs::read_dir(&self.msg_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((guids, strays)),
            Err(e) => return Err(io_err("list directory", &self.msg_dir)(e)),
        };
        for fan in fans {
            let fan = fan.map_err(io_err("list directory", &self.msg_dir))?;
            if !fan.path().is_dir() {
                strays.push(fan.path());
                continue;
            }
            for file in
                std::fs::read_dir(fan.path()).map_err(io_err("list directory", fan.path()))?
            {
                let file = file.map_err(io_err("list directory", fan.path()))?;
                match file
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<Guid>().ok())
                {
                    Some(g) => guids.push(g),
                    None => strays.push(file.path()),
                }
            }
        }
        Ok((guids, strays))
    }
}

/// How many files of a batch are written and fsynced at the same time
/// (docs/storage.md, "Batch of bodies").
pub const BATCH_FLUSH_THREADS: usize = 16;

/// Run `job(0..n)` on up to [`BATCH_FLUSH_THREADS`] scoped threads; the
/// first error is returned (the remaining jobs are not started).
fn concurrently<F>(n: usize, job: F) -> Result<(), StoreError>
where
    F: Fn(usize) -> Result<(), StoreError> + Sync,
{
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    if n == 0 {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<StoreError>> = Mutex::new(None);
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            if let Err(e) = job(i) {
                let mut slot = failed.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                // Stop every worker: no further job starts.
                next.store(n, Ordering::Relaxed);
                return;
            }
        }
    };
    let threads = n.min(BATCH_FLUSH_THREADS);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
