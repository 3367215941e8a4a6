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
    pack_dir: PathBuf,
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
            pack_dir: user_dir.join("pack"),
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

    /// Make a batch of bodies durable as one pack file (docs/storage.md,
    /// "Pack files"): written whole to `tmp/` and fsynced, renamed to
    /// `pack/<id>.pack`, `pack/` fsynced (and the user's directory when
    /// `pack/` was created now). Returns the pack id and each body's offset.
    /// On error nothing is left behind (best effort; a leftover is garbage
    /// that no index row names).
    pub(crate) fn put_pack(
        &self,
        items: &[(Guid, &[u8])],
    ) -> Result<(String, Vec<u64>), StoreError> {
        assert!(!items.is_empty(), "an empty pack");
        let total: usize = items
            .iter()
            .map(|(_, b)| PACK_ENTRY_HEADER + b.len())
            .sum::<usize>()
            + PACK_MAGIC.len();
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(PACK_MAGIC);
        let mut offsets = Vec::with_capacity(items.len());
        for (guid, bytes) in items {
            debug_assert_eq!(
                Guid::of(bytes),
                *guid,
                "put with a GUID that is not the bytes' hash"
            );
            buf.extend_from_slice(&guid.0);
            buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            offsets.push(buf.len() as u64);
            buf.extend_from_slice(bytes);
        }
        let id = crate::user::random_id();
        let tmp = self.tmp_dir.join(format!(
            "{}.{}.pack",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let final_path = self.pack_path(&id);
        let result = (|| {
            self.disk
                .write_synced(&tmp, &buf)
                .map_err(io_err("write pack file", &tmp))?;
            let created = self
                .disk
                .create_dir(&self.pack_dir)
                .map_err(io_err("create directory", &self.pack_dir))?;
            if created {
                let user_dir = self.pack_dir.parent().expect("pack/ has a parent");
                self.disk
                    .sync_dir(user_dir)
                    .map_err(io_err("fsync directory", user_dir))?;
            }
            self.disk
                .rename(&tmp, &final_path)
                .map_err(io_err("rename pack file", &final_path))?;
            self.disk
                .sync_dir(&self.pack_dir)
                .map_err(io_err("fsync directory", &self.pack_dir))
        })();
        if let Err(e) = result {
            let _ = self.disk.remove(&tmp);
            let _ = self.disk.remove(&final_path);
            return Err(e);
        }
        Ok((id, offsets))
    }

    pub(crate) fn pack_path(&self, id: &str) -> PathBuf {
        self.pack_dir.join(format!("{id}.pack"))
    }

    pub(crate) fn pack_exists(&self, id: &str) -> bool {
        self.pack_path(id).is_file()
    }

    /// Unlink a pack no row references any more.
    pub(crate) fn remove_pack(&self, id: &str) {
        let path = self.pack_path(id);
        if let Err(e) = self.disk.remove(&path) {
            tracing::warn!(user = %self.user, path = %path.display(), cause = %e, "could not remove pack file");
        }
    }

    /// Every pack present, by id, plus names in `pack/` that are not packs.
    pub(crate) fn list_packs(&self) -> Result<(Vec<String>, Vec<PathBuf>), StoreError> {
        let mut ids = Vec::new();
        let mut strays = Vec::new();
        let entries = match std::fs::read_dir(&self.pack_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((ids, strays)),
            Err(e) => return Err(io_err("list directory", &self.pack_dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list directory", &self.pack_dir))?;
            let name = entry.file_name();
            match name.to_str().and_then(|n| n.strip_suffix(".pack")) {
                Some(id) if is_pack_id(id) => ids.push(id.to_string()),
                _ => strays.push(entry.path()),
            }
        }
        Ok((ids, strays))
    }

    /// Read and verify a body stored in a pack.
    pub(crate) fn read_packed(
        &self,
        guid: &Guid,
        size: u64,
        pack: &str,
        offset: u64,
    ) -> Result<Read, StoreError> {
        let path = self.pack_path(pack);
        let len = usize::try_from(size).map_err(|_| {
            io_err("read pack file", &path)(io::Error::from(io::ErrorKind::InvalidData))
        })?;
        let bytes = match self.disk.read_at(&path, offset, len) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Read::Bad(format!(
                    "message {guid}: pack {pack} ends before offset {offset} + {size}"
                )));
            }
            Err(e) => return Err(io_err("read pack file", path)(e)),
        };
        let actual = Guid::of(&bytes);
        if actual != *guid {
            return Ok(Read::Bad(format!(
                "message {guid} in pack {pack} at {offset} hashes to {actual}"
            )));
        }
        Ok(Read::Good(bytes))
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

/// First bytes of a pack file (docs/storage.md, "Pack files").
pub(crate) const PACK_MAGIC: &[u8; 16] = b"slotmail-pack 1\n";

/// Bytes before each body in a pack: its GUID and its length.
pub(crate) const PACK_ENTRY_HEADER: usize = 32 + 8;

fn is_pack_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
