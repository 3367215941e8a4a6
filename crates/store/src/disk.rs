//! The file-system operations the store does on message files, behind a trait
//! so that tests can inject faults (ENOSPC, EIO, a failing fsync) at a chosen
//! operation and check that the store stays consistent.
//!
//! Only message files go through `Disk`; the SQLite databases do their own
//! I/O (their crash safety is SQLite's, under `synchronous = FULL`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// File operations used for message files.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Create (or truncate) `path`, write all of `data`, fsync it.
    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Atomically rename `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync a directory, making renames and creations in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Create a directory; `Ok(true)` if it was created now.
    fn create_dir(&self, dir: &Path) -> io::Result<bool>;
    /// Read a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Read `len` bytes at `offset` (a body in a pack file); a file that
    /// ends before is `UnexpectedEof`.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Remove a file; a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(data)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        match fs::create_dir(dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        File::open(path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Which operation a `FaultyDisk` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `write_synced` fails with ENOSPC after writing half of the data.
    NoSpace,
    /// `write_synced` fails with EIO at fsync.
    SyncFailed,
    /// `rename` fails with EIO.
    RenameFailed,
    /// `sync_dir` fails with EIO.
    DirSyncFailed,
}

/// A `RealDisk` that fails with `fault` from the `countdown`-th matching
/// operation on (0 = the next one), for as long as it is armed.
#[derive(Debug)]
pub struct FaultyDisk {
    fault: Fault,
    countdown: AtomicU64,
    failures: AtomicU64,
}

impl FaultyDisk {
    /// A disk that fails every matching operation after skipping `skip` of them.
    pub fn new(fault: Fault, skip: u64) -> Self {
        Self {
            fault,
            countdown: AtomicU64::new(skip),
            failures: AtomicU64::new(0),
        }
    }

    /// Stop failing.
    pub fn disarm(&self) {
        self.countdown.store(u64::MAX, Ordering::SeqCst);
    }

    /// How many operations were failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn trip(&self, op: Fault) -> bool {
        if op != self.fault {
            return false;
        }
        let left = self.countdown.load(Ordering::SeqCst);
        if left == u64::MAX {
            return false;
        }
        if left > 0 {
            self.countdown.store(left - 1, Ordering::SeqCst);
            return false;
        }
        self.failures.fetch_add(1, Ordering::SeqCst);
        true
    }
}

impl Disk for FaultyDisk {
    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.trip(Fault::NoSpace) {
            // A real ENOSPC leaves a partial file behind: so do we.
            let mut file = File::create(path)?;
            file.write_all(&data[..data.len() / 2])?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        RealDisk.write_synced(path, data)?;
        if self.trip(Fault::SyncFailed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.trip(Fault::RenameFailed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealDisk.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.trip(Fault::DirSyncFailed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealDisk.sync_dir(dir)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        RealDisk.create_dir(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealDisk.read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        RealDisk.read_at(path, offset, len)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        RealDisk.remove(path)
    }
}
