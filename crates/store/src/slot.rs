//! A slot's data directory: the format marker, the process lock, the account
//! catalogue (`slot.db`) and the registry of opened users.
//!
//! One process has a slot open at a time (`LOCK`, an exclusive file lock).
//! Users are opened lazily and kept open; each is independent (`User`).

use crate::disk::{Disk, RealDisk};
use crate::error::{OpenError, Result, StoreError, io_err};
use crate::model::Account;
use crate::record::RecordCrc;
use crate::user::{DbContext, User, create_user_dir, open_db, random_id};
use crate::{ChangeListener, Limits};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The content of `FORMAT` for this version.
pub const FORMAT_LINE: &str = "slotmail-slot 2\n";
/// The content of `FORMAT` of format 1 (upgraded at open).
const FORMAT_LINE_1: &str = "slotmail-slot 1\n";

/// Longest login name, in bytes.
pub const USER_NAME_LEN_MAX: usize = 255;
/// Longest password accepted, in bytes (argon2 takes any length; we bound work).
pub const PASSWORD_LEN_MAX: usize = 1024;
/// How long a verified password is remembered (see `Slot::verify_password`).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// How many verified passwords are remembered.
pub const AUTH_CACHE_ENTRIES_MAX: usize = 100_000;

const CATALOG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
  name TEXT PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
  is_admin INTEGER NOT NULL, quota_bytes INTEGER, quota_messages INTEGER,
  modseq INTEGER NOT NULL, crc INTEGER NOT NULL);
";

/// How to open a slot.
#[derive(Debug, Clone)]
pub struct Options {
    /// Create the slot if the directory is empty or absent.
    pub create: bool,
    /// Limits enforced by the store.
    pub limits: Limits,
    /// Take the process lock. Scrub of a live slot opens without it.
    pub lock: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create: true,
            limits: Limits::default(),
            lock: true,
        }
    }
}

/// An open slot.
pub struct Slot {
    root: PathBuf,
    catalog: Mutex<Connection>,
    catalog_path: PathBuf,
    users: Mutex<HashMap<String, Arc<User>>>,
    disk: Arc<dyn Disk>,
    limits: Limits,
    listeners: Arc<RwLock<Vec<ChangeListener>>>,
    auth_cache: Mutex<AuthCache>,
    _lock: Option<File>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("root", &self.root).finish()
    }
}

/// Verified passwords, remembered as keyed hashes under a per-process random
/// key, so a login storm does not pay argon2 on every login (Dovecot's
/// auth cache does the same). Never written anywhere.
struct AuthCache {
    key: [u8; 32],
    entries: HashMap<String, ([u8; 32], Instant)>,
}

impl AuthCache {
    fn new() -> Self {
        AuthCache {
            key: rand::random(),
            entries: HashMap::new(),
        }
    }

    fn tag(&self, name: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        for part in [name, password, hash] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        *h.finalize().as_bytes()
    }
}

impl Slot {
    /// Open (or create) the slot at `root`.
    pub fn open(root: impl AsRef<Path>, options: Options) -> Result<Slot, OpenError> {
        Self::open_with_disk(root, options, Arc::new(RealDisk))
    }

    /// Open with a given `Disk` (tests inject faults this way).
    pub fn open_with_disk(
        root: impl AsRef<Path>,
        options: Options,
        disk: Arc<dyn Disk>,
    ) -> Result<Slot, OpenError> {
        let root = root.as_ref().to_path_buf();
        let open_io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { op, path, source }
        };
        let format_path = root.join("FORMAT");
        match std::fs::read_to_string(&format_path) {
            Ok(s) if s == FORMAT_LINE => {}
            // Format 1 is upgraded in place (docs/storage.md, "Version
            // history"): FORMAT first, so that a binary of format 1 refuses
            // the slot from now on; each user's index when it is opened.
            Ok(s) if s == FORMAT_LINE_1 => {
                crate::write_file_durably(&format_path, FORMAT_LINE.as_bytes())?;
                tracing::info!(slot = %root.display(), "upgraded the slot from format 1 to 2");
            }
            Ok(found) => {
                return Err(OpenError::UnknownFormat {
                    path: root,
                    found: found.trim().to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !options.create {
                    return Err(OpenError::Missing(root));
                }
                std::fs::create_dir_all(&root).map_err(open_io("create directory", &root))?;
                let stray = std::fs::read_dir(&root)
                    .map_err(open_io("list directory", &root))?
                    .filter_map(|e| e.ok())
                    .find(|e| e.file_name() != "LOCK");
                if let Some(stray) = stray {
                    return Err(OpenError::UnknownFormat {
                        path: root,
                        found: format!("no FORMAT file but {:?} is present", stray.file_name()),
                    });
                }
                std::fs::create_dir_all(root.join("users"))
                    .map_err(open_io("create directory", &root))?;
                crate::write_file_durably(&format_path, FORMAT_LINE.as_bytes())?;
            }
            Err(e) => return Err(open_io("read", &format_path)(e)),
        }
        let lock = if options.lock {
            let lock_path = root.join("LOCK");
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(open_io("open", &lock_path))?;
            match file.try_lock() {
                Ok(()) => Some(file),
                Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(root)),
                Err(std::fs::TryLockError::Error(e)) => return Err(open_io("lock", &lock_path)(e)),
            }
        } else {
            None
        };
        let catalog_path = root.join("slot.db");
        let catalog = open_db(&catalog_path)?;
        catalog.execute_batch(CATALOG_SCHEMA).db(&catalog_path)?;
        Ok(Slot {
            root,
            catalog: Mutex::new(catalog),
            catalog_path,
            users: Mutex::new(HashMap::new()),
            disk,
            limits: options.limits,
            listeners: Arc::new(RwLock::new(Vec::new())),
            auth_cache: Mutex::new(AuthCache::new()),
            _lock: lock,
        })
    }

    /// The slot's data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Also call `listener(user, modseq)` after every committed change of any
    /// user. Listeners run on the committing thread, after the commit and
    /// outside the user's lock: they must be quick (wake a task, no I/O).
    /// IMAP sessions (IDLE), and replication hang off this.
    pub fn add_change_listener(&self, listener: ChangeListener) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create a user with the default mailboxes.
    pub fn create_user(&self, name: &str, password: &str, is_admin: bool) -> Result<Account> {
        validate_user_name(name)?;
        let hash = hash_password(password)?;
        self.create_user_with_hash(name, &hash, is_admin, None)
    }

    /// Create a user with an existing password hash (replication, moves).
    /// `user_id` is chosen when `None`.
    pub fn create_user_with_hash(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        user_id: Option<&str>,
    ) -> Result<Account> {
        self.create_user_inner(name, password_hash, is_admin, user_id, true)
    }

    /// Create a user with no mailboxes at all, as a replica receives it: its
    /// mailboxes (with their ids and UIDVALIDITYs) come from the master.
    pub fn create_replica_user(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        user_id: &str,
    ) -> Result<Account> {
        self.create_user_inner(name, password_hash, is_admin, Some(user_id), false)
    }

    fn create_user_inner(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        user_id: Option<&str>,
        with_defaults: bool,
    ) -> Result<Account> {
        validate_user_name(name)?;
        PasswordHash::new(password_hash).map_err(|e| StoreError::Password(e.to_string()))?;
        if self.account(name)?.is_some() {
            return Err(StoreError::UserExists(name.to_string()));
        }
        let user_id = user_id.map(str::to_string).unwrap_or_else(random_id);
        // Built under a temporary name, committed to the catalogue, then
        // renamed into place: a crash leaves either a `.new` directory
        // (garbage, no account) or an account whose directory `user()`
        // finishes renaming — never an account without its mail.
        let dir = self.user_dir(&user_id);
        let staging = self
            .root
            .join("users")
            .join(format!("{user_id}{STAGING_SUFFIX}"));
        for stale in [&dir, &staging] {
            if stale.exists() {
                std::fs::remove_dir_all(stale)
                    .map_err(io_err("remove stale user directory", stale))?;
            }
        }
        create_user_dir(&staging, &user_id, with_defaults)?;
        crate::sync_dir(&self.root.join("users"))?;
        let account = Account {
            name: name.to_string(),
            user_id,
            is_admin,
            quota_bytes: None,
            quota_messages: None,
            modseq: 1,
        };
        let conn = self.catalog();
        conn.execute(
            "INSERT INTO accounts (name, user_id, password_hash, is_admin, quota_bytes, quota_messages, modseq, crc)
             VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6)",
            params![
                account.name,
                account.user_id,
                password_hash,
                is_admin as i64,
                account.modseq as i64,
                account_crc(&account, password_hash)
            ],
        )
        .db(&self.catalog_path)?;
        drop(conn);
        match finish_staged_user(&staging, &dir) {
            // A concurrent `user()` saw the committed account and finished
            // the rename for us (replication serves several streams).
            Err(_) if dir.exists() && !staging.exists() => {}
            r => r?,
        }
        tracing::info!(user = name, user_id = %account.user_id, "created user");
        self.notify_account_change(name);
        Ok(account)
    }

    /// Delete a user and all their mail.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        let account = self
            .account(name)?
            .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
        self.catalog()
            .execute("DELETE FROM accounts WHERE name = ?1", [name])
            .db(&self.catalog_path)?;
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.auth_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .remove(name);
        // Renamed out of the way first, so a crash mid-removal leaves an
        // obvious `.deleted` leftover rather than a half-removed user.
        let dir = self.user_dir(&account.user_id);
        let doomed = self
            .root
            .join("users")
            .join(format!("{}{DELETED_SUFFIX}", account.user_id));
        std::fs::rename(&dir, &doomed).map_err(io_err("rename user directory", &dir))?;
        crate::sync_dir(&self.root.join("users"))?;
        std::fs::remove_dir_all(&doomed).map_err(io_err("remove user directory", &doomed))?;
        tracing::info!(user = name, "deleted user");
        self.notify_account_change(name);
        Ok(())
    }

    /// Change a user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = hash_password(password)?;
        self.set_password_hash(name, &hash)
    }

    /// Set a user's password hash (replication).
    pub fn set_password_hash(&self, name: &str, hash: &str) -> Result<()> {
        PasswordHash::new(hash).map_err(|e| StoreError::Password(e.to_string()))?;
        self.update_account(name, |_, h| *h = hash.to_string())?;
        self.auth_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .remove(name);
        Ok(())
    }

    /// Set quota limits (`None` = unlimited).
    pub fn set_quota(&self, name: &str, bytes: Option<u64>, messages: Option<u64>) -> Result<()> {
        self.update_account(name, |a, _| {
            a.quota_bytes = bytes;
            a.quota_messages = messages;
        })?;
        if let Some(user) = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            user.set_quota_limits(bytes, messages);
        }
        Ok(())
    }

    /// Grant or revoke the admin right (authorize as another user).
    pub fn set_admin(&self, name: &str, is_admin: bool) -> Result<()> {
        self.update_account(name, |a, _| a.is_admin = is_admin)
    }

    fn update_account(
        &self,
        name: &str,
        change: impl FnOnce(&mut Account, &mut String),
    ) -> Result<()> {
        let mut conn = self.catalog();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db(&self.catalog_path)?;
        let (mut account, mut hash) = read_account(&tx, &self.catalog_path, name)?
            .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
        change(&mut account, &mut hash);
        account.modseq += 1;
        tx.execute(
            "UPDATE accounts SET password_hash = ?2, is_admin = ?3, quota_bytes = ?4, quota_messages = ?5,
               modseq = ?6, crc = ?7 WHERE name = ?1",
            params![
                name,
                hash,
                account.is_admin as i64,
                account.quota_bytes.map(|v| v as i64),
                account.quota_messages.map(|v| v as i64),
                account.modseq as i64,
                account_crc(&account, &hash)
            ],
        )
        .db(&self.catalog_path)?;
        tx.commit().db(&self.catalog_path)?;
        drop(conn);
        self.notify_account_change(name);
        Ok(())
    }

    /// Account records live in the catalogue, outside the user's MODSEQ:
    /// tell the change listeners (replication) that this user changed, with
    /// the user's current MODSEQ (0 once the user is gone).
    fn notify_account_change(&self, name: &str) {
        let modseq = match self.account(name) {
            Ok(Some(_)) => self.user(name).and_then(|u| u.modseq()).unwrap_or(0),
            _ => 0,
        };
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for listener in listeners {
            listener(name, modseq);
        }
    }

    /// An account by login name.
    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        let conn = self.catalog();
        Ok(read_account(&conn, &self.catalog_path, name)?.map(|(a, _)| a))
    }

    /// The stored password hash of an account (for replication).
    pub fn password_hash(&self, name: &str) -> Result<Option<String>> {
        let conn = self.catalog();
        Ok(read_account(&conn, &self.catalog_path, name)?.map(|(_, h)| h))
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let conn = self.catalog();
        let mut stmt = conn
            .prepare("SELECT name FROM accounts ORDER BY name")
            .db(&self.catalog_path)?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .db(&self.catalog_path)?
            .collect::<rusqlite::Result<_>>()
            .db(&self.catalog_path)?;
        drop(stmt);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some((a, _)) = read_account(&conn, &self.catalog_path, &name)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Check a password. `Ok(None)` for an unknown user or a wrong password
    /// (callers must not tell the two apart to the client). CPU-heavy on a
    /// cache miss (argon2): call it off the async executor.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Account>> {
        if password.len() > PASSWORD_LEN_MAX {
            return Ok(None);
        }
        let found = {
            let conn = self.catalog();
            read_account(&conn, &self.catalog_path, name)?
        };
        let Some((account, hash)) = found else {
            return Ok(None);
        };
        {
            let cache = self.auth_cache.lock().unwrap_or_else(|e| e.into_inner());
            let tag = cache.tag(name, password, &hash);
            if let Some((stored, at)) = cache.entries.get(name)
                && *stored == tag
                && at.elapsed() < AUTH_CACHE_TTL
            {
                return Ok(Some(account));
            }
        }
        // A hash that does not parse is damage, not a wrong password.
        PasswordHash::new(&hash).map_err(|e| StoreError::Corrupt {
            user: name.to_string(),
            what: format!("password hash does not parse: {e}"),
        })?;
        let (hash_owned, password_owned) = (hash.clone(), password.to_string());
        let verified = crate::argon::run(move || {
            PasswordHash::new(&hash_owned)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password_owned.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        });
        if !verified {
            return Ok(None);
        }
        let mut cache = self.auth_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.entries.len() >= AUTH_CACHE_ENTRIES_MAX {
            cache
                .entries
                .retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
            if cache.entries.len() >= AUTH_CACHE_ENTRIES_MAX {
                cache.entries.clear();
            }
        }
        let tag = cache.tag(name, password, &hash);
        cache
            .entries
            .insert(name.to_string(), (tag, Instant::now()));
        Ok(Some(account))
    }

    /// The open store of a user.
    pub fn user(&self, name: &str) -> Result<Arc<User>> {
        if let Some(u) = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(u.clone());
        }
        let account = self
            .account(name)?
            .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = users.get(name) {
            return Ok(u.clone());
        }
        let dir = self.user_dir(&account.user_id);
        let staging = self
            .root
            .join("users")
            .join(format!("{}{STAGING_SUFFIX}", account.user_id));
        if !dir.exists() && staging.exists() {
            // A creation committed its account, then crashed before the rename.
            finish_staged_user(&staging, &dir)?;
        }
        let user = Arc::new(User::open(
            name,
            &account,
            dir,
            self.disk.clone(),
            self.limits.clone(),
            self.listeners.clone(),
        )?);
        users.insert(name.to_string(), user.clone());
        Ok(user)
    }

    /// The directory of a user id.
    pub fn user_dir(&self, user_id: &str) -> PathBuf {
        self.root.join("users").join(user_id)
    }

    /// Walk the slot and report every problem (docs/storage.md, "Scrub").
    pub fn scrub(&self, repair: bool) -> crate::scrub::Report {
        crate::scrub::scrub_slot(self, repair)
    }

    pub(crate) fn catalog_check(&self, report: &mut crate::scrub::Report) {
        let conn = self.catalog();
        crate::scrub::quick_check(&conn, &self.catalog_path, "", report);
        let rows: rusqlite::Result<Vec<(Account, String, i64)>> = conn
            .prepare("SELECT name, user_id, password_hash, is_admin, quota_bytes, quota_messages, modseq, crc FROM accounts")
            .and_then(|mut s| s.query_map([], account_from_row)?.collect());
        match rows {
            Err(e) => report.push(crate::scrub::Finding::new(
                "",
                crate::scrub::Kind::Database,
                e.to_string(),
            )),
            Ok(rows) => {
                for (a, hash, crc) in rows {
                    if account_crc(&a, &hash) != crc {
                        report.push(crate::scrub::Finding::new(
                            &a.name,
                            crate::scrub::Kind::RecordChecksum,
                            "account record fails its checksum".into(),
                        ));
                    }
                }
            }
        }
    }
}

/// Suffix of a user directory being created.
pub(crate) const STAGING_SUFFIX: &str = ".new";
/// Suffix of a user directory being deleted.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

fn finish_staged_user(staging: &Path, dir: &Path) -> Result<()> {
    std::fs::rename(staging, dir).map_err(io_err("rename user directory", dir))?;
    crate::sync_dir(dir.parent().expect("user directory has a parent"))
}

fn read_account(conn: &Connection, path: &Path, name: &str) -> Result<Option<(Account, String)>> {
    let row = conn
        .prepare_cached(
            "SELECT name, user_id, password_hash, is_admin, quota_bytes, quota_messages, modseq, crc
             FROM accounts WHERE name = ?1",
        )
        .db(path)?
        .query_row([name], account_from_row)
        .optional()
        .db(path)?;
    match row {
        None => Ok(None),
        Some((a, hash, crc)) if account_crc(&a, &hash) == crc => Ok(Some((a, hash))),
        Some(_) => {
            tracing::error!(user = name, "account record fails its checksum");
            Err(StoreError::Corrupt {
                user: name.to_string(),
                what: "account record fails its checksum".into(),
            })
        }
    }
}

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Account, String, i64)> {
    Ok((
        Account {
            name: r.get(0)?,
            user_id: r.get(1)?,
            is_admin: r.get::<_, i64>(3)? != 0,
            quota_bytes: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
            quota_messages: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            modseq: r.get::<_, i64>(6)? as u64,
        },
        r.get(2)?,
        r.get(7)?,
    ))
}

fn account_crc(a: &Account, hash: &str) -> i64 {
    RecordCrc::new()
        .text(&a.name)
        .text(&a.user_id)
        .text(hash)
        .int(a.is_admin as i64)
        .opt_int(a.quota_bytes.map(|v| v as i64))
        .opt_int(a.quota_messages.map(|v| v as i64))
        .int(a.modseq as i64)
        .finish()
}

/// Hash a password with argon2id (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > PASSWORD_LEN_MAX {
        return Err(StoreError::Password(format!(
            "a password has 1 to {PASSWORD_LEN_MAX} bytes"
        )));
    }
    let password = password.to_string();
    crate::argon::run(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Password(e.to_string()))
    })
}

/// Login names: 1 to 255 bytes, no whitespace or control characters.
pub fn validate_user_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > USER_NAME_LEN_MAX
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return Err(StoreError::InvalidUserName(format!(
            "{name:?}: 1 to {USER_NAME_LEN_MAX} bytes, no spaces, quotes, backslashes or control characters"
        )));
    }
    Ok(())
}
