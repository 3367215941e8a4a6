//! One user's mail: the index database and the message files, behind one
//! lock. This is the unit of isolation (docs/storage.md, goal 4): nothing here
//! touches another user's files, and a user can be moved or rebuilt alone.
//!
//! Every write is one SQLite transaction (`Tx`), which bumps the user's MODSEQ
//! at most once and stamps every record it changes with it. Message files are
//! made durable before the transaction that references them and unlinked only
//! after the transaction that dropped their last reference.

use crate::blobs::{Blobs, Read};
use crate::disk::Disk;
use crate::error::{Result, StoreError, io_err};
use crate::flags::{self, FlagOp, Flags};
use crate::guid::Guid;
use crate::model::*;
use crate::names;
use crate::record::RecordCrc;
use crate::{ChangeListener, Limits};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The index schema of format 2 (docs/storage.md).
const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE mailboxes (
  id INTEGER PRIMARY KEY, mailbox_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE,
  uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,
  special_use TEXT, keywords TEXT NOT NULL, recent_uid INTEGER NOT NULL,
  modseq INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE messages (
  mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, guid BLOB NOT NULL, size INTEGER NOT NULL,
  internaldate INTEGER NOT NULL, tz_offset INTEGER NOT NULL, flags INTEGER NOT NULL,
  keywords TEXT NOT NULL, modseq INTEGER NOT NULL, crc INTEGER NOT NULL,
  PRIMARY KEY (mailbox, uid)) WITHOUT ROWID;
CREATE INDEX messages_by_modseq ON messages (mailbox, modseq);
CREATE INDEX messages_by_guid ON messages (guid);
CREATE TABLE contents (guid BLOB PRIMARY KEY, size INTEGER NOT NULL, info BLOB NOT NULL,
  crc INTEGER NOT NULL, pack TEXT, pack_offset INTEGER) WITHOUT ROWID;
CREATE INDEX contents_by_pack ON contents (pack) WHERE pack IS NOT NULL;
CREATE TABLE expunged (mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
  PRIMARY KEY (mailbox, uid)) WITHOUT ROWID;
CREATE INDEX expunged_by_modseq ON expunged (mailbox, modseq);
CREATE TABLE mailbox_tombstones (mailbox_id TEXT PRIMARY KEY, name TEXT NOT NULL,
  modseq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE subscriptions (name TEXT PRIMARY KEY, subscribed INTEGER NOT NULL,
  modseq INTEGER NOT NULL) WITHOUT ROWID;
";

/// The format of a user's index (`meta.format`).
const INDEX_FORMAT: i64 = 2;

/// Upgrade of an index of format 1 to 2: pack files (docs/storage.md,
/// "Version history").
const UPGRADE_1_TO_2: &str = "
ALTER TABLE contents ADD COLUMN pack TEXT;
ALTER TABLE contents ADD COLUMN pack_offset INTEGER;
CREATE INDEX contents_by_pack ON contents (pack) WHERE pack IS NOT NULL;
UPDATE meta SET value = 2 WHERE key = 'format';
";

/// Where a body is stored (docs/storage.md, "Pack files").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Loose,
    Packed { pack: String, offset: u64 },
}

impl Location {
    pub(crate) fn from_columns(pack: Option<String>, offset: Option<i64>) -> Location {
        match pack {
            Some(pack) => Location::Packed {
                pack,
                offset: offset.unwrap_or(0).max(0) as u64,
            },
            None => Location::Loose,
        }
    }
}

/// Mailboxes every new user gets, with their special-use attribute.
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// The special-use attributes of RFC 6154.
pub const SPECIAL_USES: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// Columns of `mailboxes` in the order `mailbox_from_row` reads them.
pub(crate) const MAILBOX_COLUMNS: &str = "id, mailbox_id, name, uidvalidity, uidnext, highestmodseq, special_use, keywords, recent_uid, modseq, crc";
/// Columns of `messages` in the order `message_from_row` reads them.
const MESSAGE_COLUMNS: &str =
    "uid, guid, size, internaldate, tz_offset, flags, keywords, modseq, crc";

/// A user's mail store. Cheap to share (`Arc<User>`); all methods take `&self`.
pub struct User {
    name: String,
    user_id: String,
    dir: PathBuf,
    db_path: PathBuf,
    db: Mutex<Connection>,
    blobs: Blobs,
    limits: Limits,
    quota_limits: RwLock<(Option<u64>, Option<u64>)>,
    listeners: Arc<RwLock<Vec<ChangeListener>>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// Map a database error, naming the file.
pub(crate) trait DbContext<T> {
    fn db(self, path: &Path) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn db(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Db {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Open a database with the store's durability settings.
pub(crate) fn open_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).db(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .db(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .db(path)?;
    Ok(conn)
}

/// A random 128-bit id as 32 hex digits.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Create a new user's directory and index. The directory must not exist.
pub(crate) fn create_user_dir(dir: &Path, user_id: &str, with_defaults: bool) -> Result<()> {
    std::fs::create_dir(dir).map_err(io_err("create user directory", dir))?;
    for sub in ["msg", "tmp"] {
        let p = dir.join(sub);
        std::fs::create_dir(&p).map_err(io_err("create directory", &p))?;
    }
    let db_path = dir.join("index.db");
    let mut conn = open_db(&db_path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db(&db_path)?;
    tx.execute_batch(SCHEMA).db(&db_path)?;
    for (k, v) in [
        ("format", rusqlite::types::Value::Integer(INDEX_FORMAT)),
        ("user_id", rusqlite::types::Value::Text(user_id.to_string())),
        ("modseq", rusqlite::types::Value::Integer(0)),
        ("uidvalidity_last", rusqlite::types::Value::Integer(0)),
        ("quota_used_bytes", rusqlite::types::Value::Integer(0)),
        ("quota_used_messages", rusqlite::types::Value::Integer(0)),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![k, v],
        )
        .db(&db_path)?;
    }
    let mut w = Tx::begin(tx, &db_path, user_id)?;
    if with_defaults {
        for (name, special_use) in DEFAULT_MAILBOXES {
            w.create_mailbox_row(name, special_use, None, None)?;
            w.set_subscription(name, true)?;
        }
    }
    w.finish()?;
    crate::sync_dir(dir)?;
    Ok(())
}

impl User {
    pub(crate) fn open(
        name: &str,
        account: &Account,
        dir: PathBuf,
        disk: Arc<dyn Disk>,
        limits: Limits,
        listeners: Arc<RwLock<Vec<ChangeListener>>>,
    ) -> Result<User> {
        let db_path = dir.join("index.db");
        if !db_path.is_file() {
            return Err(StoreError::Corrupt {
                user: name.to_string(),
                what: format!("index {} is missing", db_path.display()),
            });
        }
        let mut conn = open_db(&db_path)?;
        upgrade_index(&mut conn, &db_path)?;
        let stored_id: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'user_id'", [], |r| {
                r.get(0)
            })
            .db(&db_path)?;
        if stored_id != account.user_id {
            return Err(StoreError::Corrupt {
                user: name.to_string(),
                what: format!(
                    "index belongs to user id {stored_id}, expected {}",
                    account.user_id
                ),
            });
        }
        let blobs = Blobs::new(name, &dir, disk);
        let removed = blobs.clean_tmp()?;
        if removed > 0 {
            tracing::info!(user = name, removed, "removed interrupted writes from tmp/");
        }
        Ok(User {
            name: name.to_string(),
            user_id: account.user_id.clone(),
            dir,
            db_path,
            db: Mutex::new(conn),
            blobs,
            limits,
            quota_limits: RwLock::new((account.quota_bytes, account.quota_messages)),
            listeners,
        })
    }

    /// The login name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stable user id (directory name).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The user's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn set_quota_limits(&self, bytes: Option<u64>, messages: Option<u64>) {
        *self.quota_limits.write().unwrap_or_else(|e| e.into_inner()) = (bytes, messages);
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back when the
        // Transaction was dropped, so the connection is still consistent.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> StoreError {
        let what = what.into();
        tracing::error!(user = %self.name, what = %what, "corrupt data");
        StoreError::Corrupt {
            user: self.name.clone(),
            what,
        }
    }

    /// Run `f` in one write transaction; commit, unlink freed files, notify.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db(&self.db_path)?;
        let mut w = Tx::begin(tx, &self.db_path, &self.name)?;
        w.blobs = Some(&self.blobs);
        let out = f(&mut w)?;
        let (modseq, unlink, packs) = w.finish()?;
        // Unlink under the lock: an append that finds its file present under
        // the lock can then rely on it until its own commit.
        for guid in &unlink {
            self.blobs.remove(guid);
        }
        for pack in &packs {
            self.settle_pack(&mut conn, pack);
        }
        drop(conn);
        if let Some(modseq) = modseq {
            let listeners = self
                .listeners
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for listener in listeners {
                listener(&self.name, modseq);
            }
        }
        Ok(out)
    }

    /// Run `f` with the connection for reading.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection, &Path) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        f(&conn, &self.db_path)
    }

    /// The user's current MODSEQ (the change counter).
    pub fn modseq(&self) -> Result<u64> {
        self.read(|c, p| meta_int(c, p, "modseq"))
    }

    // ----- mailboxes -------------------------------------------------------

    /// Every mailbox, ordered by name.
    pub fn mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes ORDER BY name"
                ))
                .db(p)?;
            let rows = stmt.query_map([], mailbox_from_row).db(p)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(self.check_mailbox(row.db(p)?)?);
            }
            Ok(out)
        })
    }

    /// A mailbox by name (normalised first).
    pub fn mailbox(&self, name: &str) -> Result<MailboxInfo> {
        let name = names::normalize(name)?;
        self.read(|c, p| self.mailbox_by_name_in(c, p, &name))?
            .ok_or(StoreError::NoSuchMailbox(name))
    }

    /// A mailbox by local handle.
    pub fn mailbox_by_id(&self, id: i64) -> Result<MailboxInfo> {
        self.read(|c, p| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
                ))
                .db(p)?
                .query_row([id], mailbox_from_row)
                .optional()
                .db(p)?;
            match row {
                Some(r) => self.check_mailbox(r).map(Some),
                None => Ok(None),
            }
        })?
        .ok_or_else(|| StoreError::NoSuchMailbox(format!("(mailbox {id} no longer exists)")))
    }

    fn mailbox_by_name_in(
        &self,
        c: &Connection,
        p: &Path,
        name: &str,
    ) -> Result<Option<MailboxInfo>> {
        let row = c
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE name = ?1"
            ))
            .db(p)?
            .query_row([name], mailbox_from_row)
            .optional()
            .db(p)?;
        row.map(|r| self.check_mailbox(r)).transpose()
    }

    pub(crate) fn check_mailbox(&self, (info, crc): (MailboxInfo, i64)) -> Result<MailboxInfo> {
        if mailbox_crc(&info) != crc {
            return Err(self.corrupt(format!("mailbox record {:?} fails its checksum", info.name)));
        }
        Ok(info)
    }

    /// Create a mailbox (and its missing superiors), optionally with a
    /// special-use attribute (RFC 6154).
    pub fn create_mailbox(&self, name: &str, special_use: Option<&str>) -> Result<MailboxInfo> {
        let name = names::normalize(name)?;
        if let Some(su) = special_use
            && !SPECIAL_USES.iter().any(|s| s.eq_ignore_ascii_case(su))
        {
            return Err(StoreError::NotAllowed(format!(
                "unknown special-use attribute {su}"
            )));
        }
        let special_use = special_use.map(|su| {
            SPECIAL_USES
                .iter()
                .find(|s| s.eq_ignore_ascii_case(su))
                .expect("checked above")
                .to_string()
        });
        let max = self.limits.mailboxes_max;
        self.write(|w| {
            if w.mailbox_by_name(&name)?.is_some() {
                return Err(StoreError::MailboxExists(name.clone()));
            }
            let count: i64 =
                w.tx.query_row("SELECT count(*) FROM mailboxes", [], |r| r.get(0))
                    .db(w.path)?;
            if count as u64 >= u64::from(max) {
                return Err(StoreError::Limit(format!(
                    "at most {max} mailboxes per user"
                )));
            }
            for sup in names::superiors(&name) {
                if w.mailbox_by_name(sup)?.is_none() {
                    w.create_mailbox_row(sup, None, None, None)?;
                }
            }
            let id = w.create_mailbox_row(&name, special_use.as_deref(), None, None)?;
            w.mailbox_by_id(id)
        })
    }

    /// Delete a mailbox and its messages. INBOX cannot be deleted; a mailbox
    /// with inferiors cannot be deleted (RFC 9051 HASCHILDREN).
    pub fn delete_mailbox(&self, name: &str) -> Result<()> {
        let name = names::normalize(name)?;
        if name == "INBOX" {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted".into()));
        }
        self.write(|w| {
            let mbox = w
                .mailbox_by_name(&name)?
                .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))?;
            let prefix = format!("{name}/");
            let children: i64 =
                w.tx.query_row(
                    // substr and length both count characters, not bytes.
                    "SELECT count(*) FROM mailboxes WHERE substr(name, 1, length(?1)) = ?1",
                    params![prefix],
                    |r| r.get(0),
                )
                .db(w.path)?;
            if children > 0 {
                return Err(StoreError::HasChildren(name.clone()));
            }
            w.delete_mailbox_row(&mbox)
        })
    }

    /// Rename a mailbox and its inferiors. Renaming INBOX moves its messages
    /// into a new mailbox and leaves INBOX empty (RFC 3501 §6.3.5).
    pub fn rename_mailbox(&self, from: &str, to: &str) -> Result<()> {
        let from = names::normalize(from)?;
        let to = names::normalize(to)?;
        if to == "INBOX" || names::is_inferior(&to, &from) || from == to {
            return Err(StoreError::NotAllowed(format!(
                "cannot rename {from} to {to}"
            )));
        }
        self.write(|w| {
            let src = w
                .mailbox_by_name(&from)?
                .ok_or_else(|| StoreError::NoSuchMailbox(from.clone()))?;
            if w.mailbox_by_name(&to)?.is_some() {
                return Err(StoreError::MailboxExists(to.clone()));
            }
            for sup in names::superiors(&to) {
                if w.mailbox_by_name(sup)?.is_none() {
                    w.create_mailbox_row(sup, None, None, None)?;
                }
            }
            if from == "INBOX" {
                let dest = w.create_mailbox_row(&to, None, None, None)?;
                let uids: Vec<u32> = w.uids(src.id)?;
                w.copy_messages(src.id, &uids, dest, true)?;
                return Ok(());
            }
            let prefix = format!("{from}/");
            let mut stmt = w
                .tx
                .prepare(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE name = ?1 OR substr(name, 1, length(?2)) = ?2"
                ))
                .db(w.path)?;
            let affected: Vec<MailboxInfo> = stmt
                .query_map(params![from, prefix], mailbox_from_row)
                .db(w.path)?
                .map(|r| r.map(|(m, _)| m))
                .collect::<rusqlite::Result<_>>()
                .db(w.path)?;
            drop(stmt);
            for mut m in affected {
                let new_name = format!("{to}{}", &m.name[from.len()..]);
                names::normalize(&new_name)?;
                if w.mailbox_by_name(&new_name)?.is_some() {
                    return Err(StoreError::MailboxExists(new_name));
                }
                m.name = new_name;
                m.modseq = w.modseq();
                w.update_mailbox(&m)?;
            }
            Ok(())
        })
    }

    /// Set or clear a mailbox's special-use attribute.
    pub fn set_special_use(&self, mailbox: i64, special_use: Option<&str>) -> Result<()> {
        if let Some(su) = special_use
            && !SPECIAL_USES.contains(&su)
        {
            return Err(StoreError::NotAllowed(format!(
                "unknown special-use attribute {su}"
            )));
        }
        self.write(|w| {
            let mut m = w.mailbox_by_id(mailbox)?;
            m.special_use = special_use.map(str::to_string);
            m.modseq = w.modseq();
            w.update_mailbox(&m)
        })
    }

    /// Mark the messages from `recent_uid` on as seen by a session: returns
    /// the previous `recent_uid`. UIDs at or above it are `\Recent` to the
    /// caller and to no later session. Not a change (no MODSEQ).
    pub fn claim_recent(&self, mailbox: i64) -> Result<u32> {
        self.write(|w| {
            let mut m = w.mailbox_by_id(mailbox)?;
            let old = m.recent_uid;
            if old < m.uidnext {
                m.recent_uid = m.uidnext;
                w.update_mailbox(&m)?;
            }
            Ok(old)
        })
    }

    /// Raise a mailbox's UIDNEXT by `gap` (a failover's UID gap,
    /// docs/failover.md): the UIDs skipped are never given. A change like an
    /// append: a new MODSEQ becomes the mailbox's HIGHESTMODSEQ, so
    /// replication sends the record (replicas never lower UIDNEXT). Returns
    /// the new UIDNEXT; refused (`Limit`) if it would pass `u32::MAX`.
    pub fn raise_uidnext(&self, mailbox: i64, gap: u32) -> Result<u32> {
        self.write(|w| {
            let mut m = w.mailbox_by_id(mailbox)?;
            let Some(next) = m.uidnext.checked_add(gap).filter(|n| *n < u32::MAX) else {
                return Err(StoreError::Limit(format!(
                    "mailbox {}: UIDNEXT {} cannot be raised by {gap}",
                    m.name, m.uidnext
                )));
            };
            m.uidnext = next;
            m.highestmodseq = w.modseq();
            w.update_mailbox(&m)?;
            Ok(next)
        })
    }

    // ----- subscriptions ---------------------------------------------------

    /// Subscribe to a name (it need not exist, RFC 3501 §6.3.6).
    pub fn subscribe(&self, name: &str) -> Result<()> {
        let name = names::normalize(name)?;
        self.write(|w| w.set_subscription(&name, true))
    }

    /// Unsubscribe from a name.
    pub fn unsubscribe(&self, name: &str) -> Result<()> {
        let name = names::normalize(name)?;
        self.write(|w| {
            let present: Option<i64> =
                w.tx.query_row(
                    "SELECT subscribed FROM subscriptions WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .db(w.path)?;
            if present != Some(1) {
                return Err(StoreError::NoSuchMailbox(format!(
                    "{name} is not subscribed"
                )));
            }
            w.set_subscription(&name, false)
        })
    }

    /// The subscribed names, sorted.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare_cached("SELECT name FROM subscriptions WHERE subscribed = 1 ORDER BY name")
                .db(p)?;
            let rows = stmt.query_map([], |r| r.get(0)).db(p)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().db(p)
        })
    }

    // ----- messages --------------------------------------------------------

    /// Append a message. `internaldate` is (unix seconds, minutes east of UTC);
    /// `None` means now, UTC.
    pub fn append(
        &self,
        mailbox: i64,
        raw: &[u8],
        flags: &Flags,
        internaldate: Option<(i64, i32)>,
    ) -> Result<AppendOutcome> {
        let mut done = self.append_many(
            mailbox,
            &[NewMessage {
                raw,
                flags,
                internaldate,
            }],
        )?;
        Ok(done.pop().expect("one outcome per message"))
    }

    /// Append several messages to one mailbox in one transaction: all of
    /// them or none (MULTIAPPEND, RFC 3502 §6.3.11). They get consecutive
    /// UIDs in the order given and share one MODSEQ. An empty list appends
    /// nothing.
    pub fn append_many(
        &self,
        mailbox: i64,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(messages.len());
        let mut total = 0u64;
        for m in messages {
            let size = m.raw.len() as u64;
            if size > self.limits.message_size_max {
                return Err(StoreError::TooBig {
                    size,
                    limit: self.limits.message_size_max,
                });
            }
            total += size;
            let guid = Guid::of(m.raw);
            let info = slotmail_mime::analyze(m.raw).to_bytes();
            let (date, tz) = m.internaldate.unwrap_or_else(|| (crate::now_secs(), 0));
            prepared.push((guid, info, date, tz));
        }
        let discard_all = |prepared: &[(Guid, Vec<u8>, i64, i32)]| {
            for (guid, ..) in prepared {
                self.discard_unreferenced(guid);
            }
        };
        // The files are made durable before taking the lock, so other
        // sessions of this user are not held up by our fsyncs.
        for (m, (guid, ..)) in messages.iter().zip(&prepared) {
            if let Err(e) = self.blobs.put(guid, m.raw) {
                discard_all(&prepared);
                return Err(e);
            }
        }
        let quota = *self.quota_limits.read().unwrap_or_else(|e| e.into_inner());
        let keywords_max = self.limits.keywords_per_mailbox_max;
        let result = self.write(|w| {
            w.check_quota(quota, total, messages.len() as u64)?;
            let mut mbox = w.mailbox_by_id(mailbox)?;
            let modseq = w.modseq();
            let mut out = Vec::with_capacity(messages.len());
            for (m, (guid, info, date, tz)) in messages.iter().zip(&prepared) {
                // An expunge may have unlinked this GUID's file between our
                // put and taking the lock; write it again if so (rare).
                if !self.blobs.exists(guid) {
                    self.blobs.put(guid, m.raw)?;
                }
                w.insert_content(guid, m.raw.len() as u64, info)?;
                let uid = mbox.uidnext;
                if uid == u32::MAX {
                    return Err(StoreError::Limit(format!(
                        "mailbox {} has used every UID",
                        mbox.name
                    )));
                }
                let meta = MessageMeta {
                    uid,
                    guid: *guid,
                    size: m.raw.len() as u64,
                    internaldate: *date,
                    tz_offset_min: *tz,
                    flags: m.flags.clone(),
                    modseq,
                };
                w.insert_message(mailbox, &meta)?;
                mbox.uidnext = uid + 1;
                merge_keywords(&mut mbox, m.flags, keywords_max)?;
                out.push(AppendOutcome {
                    uidvalidity: mbox.uidvalidity,
                    uid,
                    modseq,
                    guid: *guid,
                });
            }
            mbox.highestmodseq = modseq;
            w.update_mailbox(&mbox)?;
            w.add_quota(total as i64, messages.len() as i64)?;
            Ok(out)
        });
        if result.is_err() {
            // Refused (over quota, no such mailbox, ...) or failed: leave no
            // file behind, or every refused delivery would fill the disk
            // outside the quota until the next `scrub --repair`.
            discard_all(&prepared);
        }
        result
    }

    /// Remove a message file no message references (after a failed append).
    /// Under the lock, like every unlink: an append that found its file
    /// present under the lock can rely on it until its own commit, and one
    /// still waiting for the lock writes it again.
    fn discard_unreferenced(&self, guid: &Guid) {
        let conn = self.conn();
        let used = conn
            .prepare_cached("SELECT 1 FROM messages WHERE guid = ?1 LIMIT 1")
            .and_then(|mut s| s.exists([&guid.0[..]]));
        // On a database error keep the file: a leftover costs space, not correctness.
        if let Ok(false) = used {
            self.blobs.remove(guid);
        }
    }

    /// The mailbox record and all its messages, by UID, read consistently.
    pub fn snapshot(&self, mailbox: i64) -> Result<(MailboxInfo, Vec<MessageMeta>)> {
        self.read(|c, p| {
            let info = self.mailbox_in(c, p, mailbox)?;
            let msgs = self.messages_where(c, p, mailbox, None)?;
            Ok((info, msgs))
        })
    }

    /// The messages with the given UIDs that exist, in the order given:
    /// point lookups, so fetching one message of a large mailbox costs one
    /// index probe, not a scan.
    pub fn messages_by_uid(&self, mailbox: i64, uids: &[u32]) -> Result<Vec<MessageMeta>> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND uid = ?2"
                ))
                .db(p)?;
            let mut out = Vec::with_capacity(uids.len());
            for &uid in uids {
                let mut rows = stmt.query(params![mailbox, uid]).db(p)?;
                if let Some(row) = rows.next().db(p)? {
                    let (meta, crc) = message_from_row(row).db(p)?;
                    out.push(self.check_message(mailbox, meta, crc)?);
                }
            }
            Ok(out)
        })
    }

    fn mailbox_in(&self, c: &Connection, p: &Path, id: i64) -> Result<MailboxInfo> {
        let row = c
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
            ))
            .db(p)?
            .query_row([id], mailbox_from_row)
            .optional()
            .db(p)?;
        match row {
            Some(r) => self.check_mailbox(r),
            None => Err(StoreError::NoSuchMailbox(format!(
                "(mailbox {id} no longer exists)"
            ))),
        }
    }

    /// Messages of a mailbox by UID: all of them, or those changed after `since`.
    fn messages_where(
        &self,
        c: &Connection,
        p: &Path,
        mailbox: i64,
        since: Option<u64>,
    ) -> Result<Vec<MessageMeta>> {
        let sql = match since {
            None => format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND ?2 = 0 ORDER BY uid"
            ),
            Some(_) => format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid"
            ),
        };
        let mut stmt = c.prepare_cached(&sql).db(p)?;
        let mut rows = stmt
            .query(params![mailbox, since.unwrap_or(0) as i64])
            .db(p)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().db(p)? {
            let (meta, crc) = message_from_row(row).db(p)?;
            out.push(self.check_message(mailbox, meta, crc)?);
        }
        Ok(out)
    }

    fn check_message(
        &self,
        mailbox: i64,
        meta: Result<MessageMeta, String>,
        crc: i64,
    ) -> Result<MessageMeta> {
        let meta = meta
            .map_err(|why| self.corrupt(format!("message record in mailbox {mailbox}: {why}")))?;
        if message_crc(mailbox, &meta) != crc {
            return Err(self.corrupt(format!(
                "message record mailbox {mailbox} uid {} fails its checksum",
                meta.uid
            )));
        }
        Ok(meta)
    }

    /// What changed in a mailbox after MODSEQ `since`: the IMAP session's
    /// poll between commands, and QRESYNC.
    pub fn delta(&self, mailbox: i64, since: u64) -> Result<MailboxDelta> {
        self.read(|c, p| {
            let info = self.mailbox_in(c, p, mailbox)?;
            if info.highestmodseq <= since {
                return Ok(MailboxDelta {
                    mailbox: info,
                    changed: Vec::new(),
                    expunged: Vec::new(),
                });
            }
            let changed = self.messages_where(c, p, mailbox, Some(since))?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT uid FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid",
                )
                .db(p)?;
            let expunged = stmt
                .query_map(params![mailbox, since as i64], |r| r.get::<_, u32>(0))
                .db(p)?
                .collect::<rusqlite::Result<Vec<u32>>>()
                .db(p)?;
            Ok(MailboxDelta {
                mailbox: info,
                changed,
                expunged,
            })
        })
    }

    /// STATUS figures.
    pub fn status(&self, mailbox: i64) -> Result<MailboxStatus> {
        self.read(|c, p| {
            let info = self.mailbox_in(c, p, mailbox)?;
            let (messages, size, unseen, deleted, recent): (i64, i64, i64, i64, i64) = c
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(size), 0), coalesce(sum((flags & 1) = 0), 0),
                            coalesce(sum((flags & 8) != 0), 0), coalesce(sum(uid >= ?2), 0)
                     FROM messages WHERE mailbox = ?1",
                )
                .db(p)?
                .query_row(params![mailbox, info.recent_uid], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .db(p)?;
            Ok(MailboxStatus {
                messages: messages as u32,
                unseen: unseen as u32,
                deleted: deleted as u32,
                recent: recent as u32,
                size: size as u64,
                uidnext: info.uidnext,
                uidvalidity: info.uidvalidity,
                highestmodseq: info.highestmodseq,
            })
        })
    }

    /// Change flags of the given UIDs (missing UIDs are skipped, as STORE
    /// does for expunged messages). `unchanged_since` is RFC 7162's
    /// UNCHANGEDSINCE.
    pub fn store_flags(
        &self,
        mailbox: i64,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome> {
        let keywords_max = self.limits.keywords_per_mailbox_max;
        self.write(|w| {
            let mut mbox = w.mailbox_by_id(mailbox)?;
            let mut out = StoreOutcome::default();
            for &uid in uids {
                let Some(mut meta) = w.message(mailbox, uid)? else {
                    continue;
                };
                if let Some(limit) = unchanged_since
                    && meta.modseq > limit
                {
                    out.modified.push(uid);
                    continue;
                }
                let new = meta.flags.apply(op, flags);
                if new == meta.flags {
                    out.unchanged.push(meta);
                    continue;
                }
                meta.flags = new;
                meta.modseq = w.modseq();
                w.update_message_flags(mailbox, &meta)?;
                out.changed.push(meta);
            }
            if !out.changed.is_empty() {
                mbox.highestmodseq = w.modseq();
                merge_keywords(&mut mbox, flags, keywords_max)?;
                w.update_mailbox(&mbox)?;
            }
            Ok(out)
        })
    }

    /// Expunge messages flagged `\Deleted`, all of them or only those among
    /// `only` (UID EXPUNGE). Returns the expunged UIDs, ascending.
    pub fn expunge(&self, mailbox: i64, only: Option<&[u32]>) -> Result<Vec<u32>> {
        self.write(|w| {
            let mut uids = w.deleted_uids(mailbox)?;
            if let Some(only) = only {
                let only: BTreeSet<u32> = only.iter().copied().collect();
                uids.retain(|u| only.contains(u));
            }
            w.expunge_uids(mailbox, &uids)?;
            Ok(uids)
        })
    }

    /// Copy messages to another mailbox: new UIDs there, flags kept, no data
    /// copied. UIDs that do not exist are skipped.
    pub fn copy(&self, from: i64, uids: &[u32], to: i64) -> Result<CopyOutcome> {
        let quota = *self.quota_limits.read().unwrap_or_else(|e| e.into_inner());
        self.write(|w| {
            let (bytes, count) = w.sizes(from, uids)?;
            w.check_quota(quota, bytes, count)?;
            w.copy_messages(from, uids, to, false)
        })
    }

    /// Move messages (RFC 6851): copy and expunge the source in one
    /// transaction.
    pub fn move_messages(&self, from: i64, uids: &[u32], to: i64) -> Result<CopyOutcome> {
        if from == to {
            return Err(StoreError::NotAllowed(
                "source and destination are the same mailbox".into(),
            ));
        }
        self.write(|w| w.copy_messages(from, uids, to, true))
    }

    /// UIDs expunged after MODSEQ `since` (QRESYNC VANISHED (EARLIER)).
    pub fn expunged_since(&self, mailbox: i64, since: u64) -> Result<Vec<u32>> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT uid FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid",
                )
                .db(p)?;
            stmt.query_map(params![mailbox, since as i64], |r| r.get::<_, u32>(0))
                .db(p)?
                .collect::<rusqlite::Result<Vec<u32>>>()
                .db(p)
        })
    }

    /// The parsed facts of a message (envelope, body structure, offsets).
    pub fn message_info(&self, guid: &Guid) -> Result<slotmail_mime::MessageInfo> {
        let bytes = self.read(|c, p| {
            let row: Option<(i64, Vec<u8>, i64)> = c
                .prepare_cached("SELECT size, info, crc FROM contents WHERE guid = ?1")
                .db(p)?
                .query_row([&guid.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .db(p)?;
            let Some((size, info, crc)) = row else {
                return Err(StoreError::Expunged(guid.to_hex()));
            };
            if content_crc(guid, size as u64, &info) != crc {
                return Err(self.corrupt(format!("content record {guid} fails its checksum")));
            }
            Ok(info)
        })?;
        slotmail_mime::MessageInfo::from_bytes(&bytes)
            .map_err(|e| self.corrupt(format!("content record {guid}: {e}")))
    }

    /// The bytes of a message, verified against its GUID and size. A message
    /// that fails verification is never returned: `StoreError::Corrupt`.
    pub fn read_message(&self, guid: &Guid, size: u64) -> Result<Vec<u8>> {
        match self.read_stored(guid, size)? {
            Read::Good(bytes) => Ok(bytes),
            Read::Bad(why) => Err(self.corrupt(why)),
            Read::Missing => {
                // Expunged (and unlinked) since the caller looked it up, or lost?
                let referenced: bool = self.read(|c, p| {
                    c.prepare_cached("SELECT 1 FROM messages WHERE guid = ?1 LIMIT 1")
                        .db(p)?
                        .exists([&guid.0[..]])
                        .db(p)
                })?;
                if referenced {
                    Err(self.corrupt(format!("message file {guid} is missing")))
                } else {
                    Err(StoreError::Expunged(guid.to_hex()))
                }
            }
        }
    }

    /// The file holding the body of `guid` and the offset of its first byte
    /// there (0 for a loose file; docs/storage.md, "Pack files"); `None`
    /// without a content row. For operators and tests that must reach the
    /// bytes behind the store's back.
    pub fn stored_at(&self, guid: &Guid) -> Result<Option<(PathBuf, u64)>> {
        Ok(self.location(guid)?.map(|l| match l {
            Location::Loose => (self.blobs.path(guid), 0),
            Location::Packed { pack, offset } => (self.blobs.pack_path(&pack), offset),
        }))
    }

    /// Where the body of `guid` is stored; `None` without a content row.
    pub(crate) fn location(&self, guid: &Guid) -> Result<Option<Location>> {
        self.read(|c, p| location_in(c, p, guid))
    }

    /// Read a stored body, loose or packed, verified. A pack may be
    /// compacted (its bodies moved, then the pack unlinked) between looking
    /// the location up and reading it: a missing pack is looked up again.
    pub(crate) fn read_stored(&self, guid: &Guid, size: u64) -> Result<Read> {
        let mut location = self.location(guid)?.unwrap_or(Location::Loose);
        for _ in 0..PACK_READ_ATTEMPTS {
            let read = match &location {
                Location::Loose => return self.blobs.read(guid, size),
                Location::Packed { pack, offset } => {
                    self.blobs.read_packed(guid, size, pack, *offset)?
                }
            };
            let Read::Missing = read else {
                return Ok(read);
            };
            match self.location(guid)? {
                Some(now) if now != location => location = now,
                _ => return Ok(Read::Missing),
            }
        }
        Ok(Read::Missing)
    }

    /// Whether the body of `guid` is stored here (a content row whose file
    /// or pack is present).
    pub(crate) fn has_body(&self, c: &Connection, p: &Path, guid: &Guid) -> Result<bool> {
        Ok(match location_in(c, p, guid)? {
            None => false,
            Some(Location::Loose) => self.blobs.exists(guid),
            Some(Location::Packed { pack, .. }) => self.blobs.pack_exists(&pack),
        })
    }

    /// After a commit that released bodies of `pack` (under the lock):
    /// unlink it when nothing references it, compact it when less than half
    /// of its bytes are still referenced (docs/storage.md, "Pack files").
    /// Failures are logged: a pack left behind costs space, not correctness.
    fn settle_pack(&self, conn: &mut Connection, pack: &str) {
        if let Err(e) = self.settle_pack_in(conn, pack) {
            tracing::warn!(user = %self.name, pack, cause = %e, "could not compact pack file");
        }
    }

    fn settle_pack_in(&self, conn: &mut Connection, pack: &str) -> Result<()> {
        let p = &self.db_path;
        let live: Vec<(Guid, u64, u64)> = {
            let mut stmt = conn
                .prepare_cached("SELECT guid, size, pack_offset FROM contents WHERE pack = ?1")
                .db(p)?;
            let rows = stmt
                .query_map([pack], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
                .db(p)?;
            let mut live = Vec::new();
            for row in rows {
                let (raw, size, offset) = row.db(p)?;
                let guid = Guid::from_slice(&raw).ok_or_else(|| {
                    self.corrupt(format!("content record with a {}-byte GUID", raw.len()))
                })?;
                live.push((guid, size.max(0) as u64, offset.unwrap_or(0).max(0) as u64));
            }
            live
        };
        if live.is_empty() {
            self.blobs.remove_pack(pack);
            return Ok(());
        }
        let file_len = match std::fs::metadata(self.blobs.pack_path(pack)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(crate::error::io_err(
                    "stat pack file",
                    self.blobs.pack_path(pack),
                )(e));
            }
        };
        let entry = crate::blobs::PACK_ENTRY_HEADER as u64;
        let live_len: u64 = live.iter().map(|(_, size, _)| size + entry).sum::<u64>()
            + crate::blobs::PACK_MAGIC.len() as u64;
        if live_len.saturating_mul(2) >= file_len {
            return Ok(());
        }
        let mut bodies = Vec::with_capacity(live.len());
        for (guid, size, offset) in &live {
            match self.blobs.read_packed(guid, *size, pack, *offset)? {
                Read::Good(b) => bodies.push((*guid, b)),
                // A damaged body stays where it is, for repair to find.
                Read::Bad(_) | Read::Missing => return Ok(()),
            }
        }
        let items: Vec<(Guid, &[u8])> = bodies.iter().map(|(g, b)| (*g, b.as_slice())).collect();
        let (new_pack, offsets) = self.blobs.put_pack(&items)?;
        let moved = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .db(p)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE contents SET pack = ?1, pack_offset = ?2 WHERE guid = ?3 AND pack = ?4",
                    )
                    .db(p)?;
                for ((guid, _), offset) in items.iter().zip(&offsets) {
                    stmt.execute(params![new_pack, *offset as i64, &guid.0[..], pack])
                        .db(p)?;
                }
            }
            tx.commit().db(p)
        })();
        if let Err(e) = moved {
            self.blobs.remove_pack(&new_pack);
            return Err(e);
        }
        self.blobs.remove_pack(pack);
        tracing::debug!(user = %self.name, old = pack, new = %new_pack, bodies = items.len(), "compacted pack file");
        Ok(())
    }

    /// Quota usage and limits.
    pub fn quota(&self) -> Result<Quota> {
        let (limit_bytes, limit_messages) =
            *self.quota_limits.read().unwrap_or_else(|e| e.into_inner());
        self.read(|c, p| {
            Ok(Quota {
                used_bytes: meta_int(c, p, "quota_used_bytes")?,
                used_messages: meta_int(c, p, "quota_used_messages")?,
                limit_bytes,
                limit_messages,
            })
        })
    }

    /// The change log read for replication: everything after MODSEQ `since`.
    pub fn changes_since(&self, since: u64) -> Result<ChangeSet> {
        self.read(|c, p| {
            let modseq = meta_int(c, p, "modseq")?;
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE highestmodseq > ?1 OR modseq > ?1 ORDER BY name"
                ))
                .db(p)?;
            let mut mailboxes = Vec::new();
            for row in stmt.query_map([since as i64], mailbox_from_row).db(p)? {
                mailboxes.push(self.check_mailbox(row.db(p)?)?);
            }
            let mut stmt = c
                .prepare_cached("SELECT mailbox_id, name, modseq FROM mailbox_tombstones WHERE modseq > ?1 ORDER BY modseq")
                .db(p)?;
            let deleted = stmt
                .query_map([since as i64], |r| {
                    Ok(MailboxTombstone {
                        mailbox_id: r.get(0)?,
                        name: r.get(1)?,
                        modseq: r.get::<_, i64>(2)? as u64,
                    })
                })
                .db(p)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(p)?;
            let mut stmt = c
                .prepare_cached("SELECT name, subscribed, modseq FROM subscriptions WHERE modseq > ?1 ORDER BY name")
                .db(p)?;
            let subscriptions = stmt
                .query_map([since as i64], |r| {
                    Ok(Subscription {
                        name: r.get(0)?,
                        subscribed: r.get::<_, i64>(1)? == 1,
                        modseq: r.get::<_, i64>(2)? as u64,
                    })
                })
                .db(p)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(p)?;
            Ok(ChangeSet {
                since,
                modseq,
                mailboxes,
                deleted,
                subscriptions,
            })
        })
    }

    /// Scrub this user: see `crate::scrub`.
    pub(crate) fn scrub_into(&self, report: &mut crate::scrub::Report, repair: bool) -> Result<()> {
        crate::scrub::scrub_user(self, report, repair)
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T>,
    ) -> Result<T> {
        self.read(f)
    }
}

// ----- the write transaction ------------------------------------------------

/// One write transaction on a user's index.
pub(crate) struct Tx<'c> {
    pub(crate) tx: rusqlite::Transaction<'c>,
    pub(crate) path: &'c Path,
    user: &'c str,
    modseq_old: u64,
    modseq_new: Option<u64>,
    unlink: Vec<Guid>,
    /// Packs some of whose bodies this transaction released.
    packs: Vec<String>,
    blobs: Option<&'c Blobs>,
    /// Set by replication's apply: the MODSEQ to announce to listeners when
    /// nothing allocated a new one (the records carry the master's MODSEQs).
    pub(crate) notify: Option<u64>,
}

impl<'c> Tx<'c> {
    fn begin(tx: rusqlite::Transaction<'c>, path: &'c Path, user: &'c str) -> Result<Tx<'c>> {
        let modseq_old = meta_int(&tx, path, "modseq")?;
        Ok(Tx {
            tx,
            path,
            user,
            modseq_old,
            modseq_new: None,
            unlink: Vec::new(),
            packs: Vec::new(),
            blobs: None,
            notify: None,
        })
    }

    /// The MODSEQ of this transaction (allocated on first use).
    pub(crate) fn modseq(&mut self) -> u64 {
        *self.modseq_new.get_or_insert(self.modseq_old + 1)
    }

    /// Commit. Returns the new MODSEQ if anything changed, the GUIDs whose
    /// loose files may now be unlinked and the packs to settle.
    fn finish(self) -> Result<(Option<u64>, Vec<Guid>, Vec<String>)> {
        if let Some(m) = self.modseq_new {
            assert!(m > self.modseq_old, "MODSEQ must grow");
            self.tx
                .execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'modseq'",
                    [m as i64],
                )
                .db(self.path)?;
        }
        self.tx.commit().db(self.path)?;
        Ok((self.modseq_new.or(self.notify), self.unlink, self.packs))
    }

    fn corrupt(&self, what: String) -> StoreError {
        tracing::error!(user = %self.user, what = %what, "corrupt data");
        StoreError::Corrupt {
            user: self.user.to_string(),
            what,
        }
    }

    pub(crate) fn mailbox_by_name(&self, name: &str) -> Result<Option<MailboxInfo>> {
        let row = self
            .tx
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE name = ?1"
            ))
            .db(self.path)?
            .query_row([name], mailbox_from_row)
            .optional()
            .db(self.path)?;
        match row {
            Some((m, crc)) if mailbox_crc(&m) == crc => Ok(Some(m)),
            Some((m, _)) => {
                Err(self.corrupt(format!("mailbox record {:?} fails its checksum", m.name)))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn mailbox_by_id(&self, id: i64) -> Result<MailboxInfo> {
        let row = self
            .tx
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
            ))
            .db(self.path)?
            .query_row([id], mailbox_from_row)
            .optional()
            .db(self.path)?;
        match row {
            Some((m, crc)) if mailbox_crc(&m) == crc => Ok(m),
            Some((m, _)) => {
                Err(self.corrupt(format!("mailbox record {:?} fails its checksum", m.name)))
            }
            None => Err(StoreError::NoSuchMailbox(format!(
                "(mailbox {id} no longer exists)"
            ))),
        }
    }

    /// Insert a mailbox record; returns its local id. `mailbox_id` and
    /// `uidvalidity` are given by replication, chosen here otherwise.
    pub(crate) fn create_mailbox_row(
        &mut self,
        name: &str,
        special_use: Option<&str>,
        mailbox_id: Option<&str>,
        uidvalidity: Option<u32>,
    ) -> Result<i64> {
        let uidvalidity = match uidvalidity {
            Some(v) => v,
            None => {
                let last = meta_int(&self.tx, self.path, "uidvalidity_last")?;
                let now = crate::now_secs().clamp(1, i64::from(u32::MAX)) as u64;
                let v = now.max(last + 1);
                let v = u32::try_from(v)
                    .map_err(|_| StoreError::Limit("UIDVALIDITY space exhausted".into()))?;
                self.tx
                    .execute(
                        "UPDATE meta SET value = ?1 WHERE key = 'uidvalidity_last'",
                        [i64::from(v)],
                    )
                    .db(self.path)?;
                v
            }
        };
        // A replicated mailbox gets the master's MODSEQs right after this
        // insert (`apply_mailbox`); only a local creation is a change here.
        let modseq = if mailbox_id.is_some() {
            0
        } else {
            self.modseq()
        };
        let info = MailboxInfo {
            id: 0,
            mailbox_id: mailbox_id.map(str::to_string).unwrap_or_else(random_id),
            name: name.to_string(),
            uidvalidity,
            uidnext: 1,
            highestmodseq: modseq,
            special_use: special_use.map(str::to_string),
            keywords: Vec::new(),
            recent_uid: 1,
            modseq,
        };
        self.tx
            .execute(
                "INSERT INTO mailboxes (mailbox_id, name, uidvalidity, uidnext, highestmodseq, special_use,
                   keywords, recent_uid, modseq, crc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    info.mailbox_id,
                    info.name,
                    info.uidvalidity,
                    info.uidnext,
                    info.highestmodseq as i64,
                    info.special_use,
                    "",
                    info.recent_uid,
                    info.modseq as i64,
                    mailbox_crc(&info)
                ],
            )
            .db(self.path)?;
        Ok(self.tx.last_insert_rowid())
    }

    pub(crate) fn update_mailbox(&self, m: &MailboxInfo) -> Result<()> {
        let n = self
            .tx
            .prepare_cached(
                "UPDATE mailboxes SET mailbox_id = ?2, name = ?3, uidvalidity = ?4, uidnext = ?5,
                   highestmodseq = ?6, special_use = ?7, keywords = ?8, recent_uid = ?9, modseq = ?10,
                   crc = ?11 WHERE id = ?1",
            )
            .db(self.path)?
            .execute(params![
                m.id,
                m.mailbox_id,
                m.name,
                m.uidvalidity,
                m.uidnext,
                m.highestmodseq as i64,
                m.special_use,
                m.keywords.join(" "),
                m.recent_uid,
                m.modseq as i64,
                mailbox_crc(m)
            ])
            .db(self.path)?;
        assert_eq!(n, 1, "update of a mailbox read in this transaction");
        Ok(())
    }

    pub(crate) fn delete_mailbox_row(&mut self, mbox: &MailboxInfo) -> Result<()> {
        let modseq = self.modseq();
        self.delete_mailbox_row_at(mbox, modseq)
    }

    /// Delete a mailbox, its messages and expunge records; the tombstone
    /// carries `modseq` (this transaction's, or the master's on a replica).
    pub(crate) fn delete_mailbox_row_at(&mut self, mbox: &MailboxInfo, modseq: u64) -> Result<()> {
        let uids = self.uids(mbox.id)?;
        let (bytes, count) = self.sizes(mbox.id, &uids)?;
        let guids = self.guids_of(mbox.id)?;
        self.tx
            .execute("DELETE FROM messages WHERE mailbox = ?1", [mbox.id])
            .db(self.path)?;
        self.tx
            .execute("DELETE FROM expunged WHERE mailbox = ?1", [mbox.id])
            .db(self.path)?;
        self.tx
            .execute("DELETE FROM mailboxes WHERE id = ?1", [mbox.id])
            .db(self.path)?;
        self.tx
            .execute(
                "INSERT OR REPLACE INTO mailbox_tombstones (mailbox_id, name, modseq) VALUES (?1, ?2, ?3)",
                params![mbox.mailbox_id, mbox.name, modseq as i64],
            )
            .db(self.path)?;
        self.add_quota(-(bytes as i64), -(count as i64))?;
        self.collect_garbage(guids)?;
        Ok(())
    }

    pub(crate) fn set_subscription(&mut self, name: &str, subscribed: bool) -> Result<()> {
        let modseq = self.modseq();
        self.tx
            .execute(
                "INSERT OR REPLACE INTO subscriptions (name, subscribed, modseq) VALUES (?1, ?2, ?3)",
                params![name, subscribed as i64, modseq as i64],
            )
            .db(self.path)?;
        Ok(())
    }

    pub(crate) fn message(&self, mailbox: i64, uid: u32) -> Result<Option<MessageMeta>> {
        let row = self
            .tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND uid = ?2"
            ))
            .db(self.path)?
            .query_row(params![mailbox, uid], message_from_row)
            .optional()
            .db(self.path)?;
        match row {
            None => Ok(None),
            Some((Ok(meta), crc)) if message_crc(mailbox, &meta) == crc => Ok(Some(meta)),
            Some((Ok(meta), _)) => Err(self.corrupt(format!(
                "message record mailbox {mailbox} uid {} fails its checksum",
                meta.uid
            ))),
            Some((Err(why), _)) => {
                Err(self.corrupt(format!("message record mailbox {mailbox} uid {uid}: {why}")))
            }
        }
    }

    /// Record a body stored loose. A row that points at a pack is moved to
    /// the loose file (the pack's copy is released).
    pub(crate) fn insert_content(&mut self, guid: &Guid, size: u64, info: &[u8]) -> Result<()> {
        if let Some(Location::Packed { pack, .. }) = location_in(&self.tx, self.path, guid)? {
            self.tx
                .prepare_cached(
                    "UPDATE contents SET pack = NULL, pack_offset = NULL WHERE guid = ?1",
                )
                .db(self.path)?
                .execute([&guid.0[..]])
                .db(self.path)?;
            self.release_pack(pack);
            return Ok(());
        }
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO contents (guid, size, info, crc) VALUES (?1, ?2, ?3, ?4)",
            )
            .db(self.path)?
            .execute(params![
                &guid.0[..],
                size as i64,
                info,
                content_crc(guid, size, info)
            ])
            .db(self.path)?;
        Ok(())
    }

    /// Record a body stored in `pack` at `offset`. An existing row (a damaged
    /// or missing copy being healed) is pointed at the pack; what it pointed
    /// at before is released.
    pub(crate) fn insert_content_packed(
        &mut self,
        guid: &Guid,
        size: u64,
        info: &[u8],
        pack: &str,
        offset: u64,
    ) -> Result<()> {
        match location_in(&self.tx, self.path, guid)? {
            Some(Location::Loose) if !self.unlink.contains(guid) => self.unlink.push(*guid),
            Some(Location::Packed { pack: old, .. }) => self.release_pack(old),
            Some(Location::Loose) | None => {}
        }
        self.tx
            .prepare_cached(
                "INSERT INTO contents (guid, size, info, crc, pack, pack_offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (guid) DO UPDATE SET size = excluded.size, info = excluded.info,
                   crc = excluded.crc, pack = excluded.pack, pack_offset = excluded.pack_offset",
            )
            .db(self.path)?
            .execute(params![
                &guid.0[..],
                size as i64,
                info,
                content_crc(guid, size, info),
                pack,
                offset as i64
            ])
            .db(self.path)?;
        Ok(())
    }

    fn release_pack(&mut self, pack: String) {
        if !self.packs.contains(&pack) {
            self.packs.push(pack);
        }
    }

    pub(crate) fn insert_message(&self, mailbox: i64, m: &MessageMeta) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO messages (mailbox, uid, guid, size, internaldate, tz_offset, flags, keywords, modseq, crc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .db(self.path)?
            .execute(params![
                mailbox,
                m.uid,
                &m.guid.0[..],
                m.size as i64,
                m.internaldate,
                m.tz_offset_min,
                m.flags.system,
                m.flags.keywords_text(),
                m.modseq as i64,
                message_crc(mailbox, m)
            ])
            .db(self.path)?;
        Ok(())
    }

    pub(crate) fn update_message_flags(&self, mailbox: i64, m: &MessageMeta) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5, crc = ?6 WHERE mailbox = ?1 AND uid = ?2",
            )
            .db(self.path)?
            .execute(params![
                mailbox,
                m.uid,
                m.flags.system,
                m.flags.keywords_text(),
                m.modseq as i64,
                message_crc(mailbox, m)
            ])
            .db(self.path)?;
        Ok(())
    }

    pub(crate) fn uids(&self, mailbox: i64) -> Result<Vec<u32>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT uid FROM messages WHERE mailbox = ?1 ORDER BY uid")
            .db(self.path)?;
        stmt.query_map([mailbox], |r| r.get(0))
            .db(self.path)?
            .collect::<rusqlite::Result<Vec<u32>>>()
            .db(self.path)
    }

    fn deleted_uids(&self, mailbox: i64) -> Result<Vec<u32>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT uid FROM messages WHERE mailbox = ?1 AND (flags & ?2) != 0 ORDER BY uid",
            )
            .db(self.path)?;
        stmt.query_map(params![mailbox, flags::DELETED], |r| r.get(0))
            .db(self.path)?
            .collect::<rusqlite::Result<Vec<u32>>>()
            .db(self.path)
    }

    pub(crate) fn guids_of(&self, mailbox: i64) -> Result<Vec<Guid>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT DISTINCT guid FROM messages WHERE mailbox = ?1")
            .db(self.path)?;
        let blobs: Vec<Vec<u8>> = stmt
            .query_map([mailbox], |r| r.get(0))
            .db(self.path)?
            .collect::<rusqlite::Result<_>>()
            .db(self.path)?;
        blobs
            .iter()
            .map(|b| Guid::from_slice(b).ok_or_else(|| self.corrupt("GUID of wrong length".into())))
            .collect()
    }

    /// Total size and count of the given messages that exist.
    fn sizes(&self, mailbox: i64, uids: &[u32]) -> Result<(u64, u64)> {
        let mut bytes = 0;
        let mut count = 0;
        for &uid in uids {
            if let Some(m) = self.message(mailbox, uid)? {
                bytes += m.size;
                count += 1;
            }
        }
        Ok((bytes, count))
    }

    pub(crate) fn expunge_uids(&mut self, mailbox: i64, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mut mbox = self.mailbox_by_id(mailbox)?;
        let modseq = self.modseq();
        let mut freed = Vec::new();
        let (mut bytes, mut count) = (0u64, 0u64);
        for &uid in uids {
            let Some(m) = self.message(mailbox, uid)? else {
                continue;
            };
            self.tx
                .prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2")
                .db(self.path)?
                .execute(params![mailbox, uid])
                .db(self.path)?;
            self.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
                )
                .db(self.path)?
                .execute(params![mailbox, uid, modseq as i64])
                .db(self.path)?;
            bytes += m.size;
            count += 1;
            freed.push(m.guid);
        }
        mbox.highestmodseq = modseq;
        self.update_mailbox(&mbox)?;
        self.add_quota(-(bytes as i64), -(count as i64))?;
        self.collect_garbage(freed)
    }

    /// Drop `contents` rows (and, after commit, files) of GUIDs no message
    /// references any more.
    pub(crate) fn collect_garbage(&mut self, guids: Vec<Guid>) -> Result<()> {
        for guid in guids {
            let used = self
                .tx
                .prepare_cached("SELECT 1 FROM messages WHERE guid = ?1 LIMIT 1")
                .db(self.path)?
                .exists([&guid.0[..]])
                .db(self.path)?;
            if !used && !self.unlink.contains(&guid) {
                let location = location_in(&self.tx, self.path, &guid)?;
                self.tx
                    .prepare_cached("DELETE FROM contents WHERE guid = ?1")
                    .db(self.path)?
                    .execute([&guid.0[..]])
                    .db(self.path)?;
                match location {
                    Some(Location::Packed { pack, .. }) => self.release_pack(pack),
                    _ => self.unlink.push(guid),
                }
            }
        }
        Ok(())
    }

    fn copy_messages(
        &mut self,
        from: i64,
        uids: &[u32],
        to: i64,
        expunge_source: bool,
    ) -> Result<CopyOutcome> {
        let mut dest = self.mailbox_by_id(to)?;
        let src = self.mailbox_by_id(from)?;
        let modseq = self.modseq();
        let mut pairs = Vec::new();
        let mut bytes = 0u64;
        // The messages as they are before this copy: copying into the same
        // mailbox must not copy a UID that this very copy created.
        let mut sources = Vec::with_capacity(uids.len());
        for &uid in uids {
            sources.extend(self.message(from, uid)?);
        }
        for mut m in sources {
            let uid = m.uid;
            if dest.uidnext == u32::MAX {
                return Err(StoreError::Limit(format!(
                    "mailbox {} has used every UID",
                    dest.name
                )));
            }
            let new_uid = dest.uidnext;
            dest.uidnext += 1;
            bytes += m.size;
            m.uid = new_uid;
            m.modseq = modseq;
            self.insert_message(to, &m)?;
            for k in m.flags.keywords() {
                if !dest.keywords.iter().any(|d| d.eq_ignore_ascii_case(k)) {
                    dest.keywords.push(k.to_string());
                }
            }
            pairs.push((uid, new_uid));
        }
        dest.keywords.sort();
        if !pairs.is_empty() {
            dest.highestmodseq = modseq;
            self.update_mailbox(&dest)?;
        }
        // Quota counts copies; a MOVE's expunge below takes the source back out.
        self.add_quota(bytes as i64, pairs.len() as i64)?;
        let mut expunged = Vec::new();
        if expunge_source {
            expunged = pairs.iter().map(|(s, _)| *s).collect();
            self.expunge_uids(src.id, &expunged)?;
        }
        Ok(CopyOutcome {
            uidvalidity: dest.uidvalidity,
            pairs,
            expunged,
            modseq,
        })
    }

    fn check_quota(
        &self,
        (limit_bytes, limit_messages): (Option<u64>, Option<u64>),
        bytes: u64,
        count: u64,
    ) -> Result<()> {
        let used_bytes = meta_int(&self.tx, self.path, "quota_used_bytes")?;
        let used_messages = meta_int(&self.tx, self.path, "quota_used_messages")?;
        if let Some(limit) = limit_bytes
            && used_bytes + bytes > limit
        {
            return Err(StoreError::OverQuota(format!(
                "storage {} + {bytes} bytes exceeds {limit}",
                used_bytes
            )));
        }
        if let Some(limit) = limit_messages
            && used_messages + count > limit
        {
            return Err(StoreError::OverQuota(format!(
                "{used_messages} + {count} messages exceeds {limit}"
            )));
        }
        Ok(())
    }

    pub(crate) fn add_quota(&self, bytes: i64, messages: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE meta SET value = value + ?1 WHERE key = 'quota_used_bytes'")
            .db(self.path)?
            .execute([bytes])
            .db(self.path)?;
        self.tx
            .prepare_cached("UPDATE meta SET value = value + ?1 WHERE key = 'quota_used_messages'")
            .db(self.path)?
            .execute([messages])
            .db(self.path)?;
        Ok(())
    }

    #[allow(dead_code)]
    pub(crate) fn blobs(&self) -> Option<&Blobs> {
        self.blobs
    }
}

// ----- rows and checksums -----------------------------------------------------

/// How often a read follows a body that a compaction moved.
const PACK_READ_ATTEMPTS: usize = 3;

/// Where the body of `guid` is stored; `None` without a content row.
pub(crate) fn location_in(c: &Connection, p: &Path, guid: &Guid) -> Result<Option<Location>> {
    c.prepare_cached("SELECT pack, pack_offset FROM contents WHERE guid = ?1")
        .db(p)?
        .query_row([&guid.0[..]], |r| {
            Ok(Location::from_columns(r.get(0)?, r.get(1)?))
        })
        .optional()
        .db(p)
}

/// Bring an index of an older format up to [`INDEX_FORMAT`] (one
/// transaction; docs/storage.md, "Version history").
fn upgrade_index(conn: &mut Connection, p: &Path) -> Result<()> {
    let format = meta_int(conn, p, "format")?;
    match format as i64 {
        INDEX_FORMAT => Ok(()),
        1 => {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .db(p)?;
            tx.execute_batch(UPGRADE_1_TO_2).db(p)?;
            tx.commit().db(p)?;
            tracing::info!(index = %p.display(), "upgraded the index from format 1 to 2");
            Ok(())
        }
        other => Err(StoreError::Corrupt {
            user: p.display().to_string(),
            what: format!("index format {other} is unknown to this version"),
        }),
    }
}

pub(crate) fn meta_int(c: &Connection, p: &Path, key: &str) -> Result<u64> {
    let v: i64 = c
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .db(p)?
        .query_row([key], |r| r.get(0))
        .db(p)?;
    Ok(v.max(0) as u64)
}

pub(crate) fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(MailboxInfo, i64)> {
    let keywords: String = r.get(7)?;
    Ok((
        MailboxInfo {
            id: r.get(0)?,
            mailbox_id: r.get(1)?,
            name: r.get(2)?,
            uidvalidity: r.get(3)?,
            uidnext: r.get(4)?,
            highestmodseq: r.get::<_, i64>(5)? as u64,
            special_use: r.get(6)?,
            keywords: keywords
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
            recent_uid: r.get(8)?,
            modseq: r.get::<_, i64>(9)? as u64,
        },
        r.get(10)?,
    ))
}

pub(crate) fn mailbox_crc(m: &MailboxInfo) -> i64 {
    RecordCrc::new()
        .text(&m.mailbox_id)
        .text(&m.name)
        .int(i64::from(m.uidvalidity))
        .int(i64::from(m.uidnext))
        .int(m.highestmodseq as i64)
        .opt_text(m.special_use.as_deref())
        .text(&m.keywords.join(" "))
        .int(i64::from(m.recent_uid))
        .int(m.modseq as i64)
        .finish()
}

/// A message row; the inner `Err` is a row whose values cannot be valid.
pub(crate) fn message_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(Result<MessageMeta, String>, i64)> {
    message_from_row_at(r, 0)
}

/// A message row whose `MESSAGE_COLUMNS` start at column `at`.
pub(crate) fn message_from_row_at(
    r: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<(Result<MessageMeta, String>, i64)> {
    let uid: u32 = r.get(at)?;
    let guid: Vec<u8> = r.get(at + 1)?;
    let size: i64 = r.get(at + 2)?;
    let internaldate: i64 = r.get(at + 3)?;
    let tz_offset_min: i32 = r.get(at + 4)?;
    let system: i64 = r.get(at + 5)?;
    let keywords: String = r.get(at + 6)?;
    let modseq: i64 = r.get(at + 7)?;
    let crc: i64 = r.get(at + 8)?;
    let meta = (|| {
        let guid = Guid::from_slice(&guid)
            .ok_or_else(|| format!("uid {uid}: GUID of {} bytes", guid.len()))?;
        let system = u8::try_from(system).map_err(|_| format!("uid {uid}: flag bits {system}"))?;
        let flags = Flags::from_stored(system, &keywords).map_err(|e| format!("uid {uid}: {e}"))?;
        Ok(MessageMeta {
            uid,
            guid,
            size: size as u64,
            internaldate,
            tz_offset_min,
            flags,
            modseq: modseq as u64,
        })
    })();
    Ok((meta, crc))
}

pub(crate) fn message_crc(mailbox: i64, m: &MessageMeta) -> i64 {
    RecordCrc::new()
        .int(mailbox)
        .int(i64::from(m.uid))
        .bytes(&m.guid.0)
        .int(m.size as i64)
        .int(m.internaldate)
        .int(i64::from(m.tz_offset_min))
        .int(i64::from(m.flags.system))
        .text(&m.flags.keywords_text())
        .int(m.modseq as i64)
        .finish()
}

pub(crate) fn content_crc(guid: &Guid, size: u64, info: &[u8]) -> i64 {
    RecordCrc::new()
        .bytes(&guid.0)
        .int(size as i64)
        .bytes(info)
        .finish()
}

fn merge_keywords(mbox: &mut MailboxInfo, flags: &Flags, max: usize) -> Result<()> {
    for k in flags.keywords() {
        if !mbox.keywords.iter().any(|m| m.eq_ignore_ascii_case(k)) {
            if mbox.keywords.len() >= max {
                return Err(StoreError::Limit(format!(
                    "at most {max} keywords per mailbox"
                )));
            }
            mbox.keywords.push(k.to_string());
        }
    }
    mbox.keywords.sort();
    Ok(())
}
