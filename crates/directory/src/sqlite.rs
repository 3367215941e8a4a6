//! `SqliteDirectory`: the directory in one SQLite file.
//!
//! The file is shared by several processes at once (the CLI, the proxy, the
//! machine supervisors): WAL journal, `synchronous = FULL`, every write in a
//! `BEGIN IMMEDIATE` transaction that first validates (refusals roll back and
//! leave nothing behind) and then writes. A write that cannot get the lock
//! within the busy timeout fails with [`DirectoryError::Locked`]; a damaged
//! or foreign file with [`DirectoryError::Corrupt`]; a file of another schema
//! version with [`DirectoryError::UnsupportedSchema`].
//!
//! Schema (version 1): `schema_version`, `meta` (the revision), `machines`,
//! `slots`, `stores`, `store_slots` (position 0 is the master), `users`,
//! `history`.

use crate::directory::{Directory, Result};
use crate::error::DirectoryError;
use crate::limits::{
    BUSY_TIMEOUT_DEFAULT_MS, HISTORY_ENTRIES_MAX, MACHINES_MAX, SLOTS_PER_MACHINE_MAX,
    SLOTS_PER_STORE_MAX, SLOTS_PER_STORE_MIN, STORES_MAX, USERS_MAX,
};
use crate::model::{
    CheckResult, CheckStatus, Fence, IdKind, Machine, MovePhase, RoleChange, Route, Slot, Store,
    StoreSpec, Topology, UserMove, validate_id, validate_slot, validate_text, validate_user,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE machines (
    name TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE
);
CREATE TABLE slots (
    id TEXT PRIMARY KEY,
    machine TEXT NOT NULL REFERENCES machines(name),
    data_dir TEXT NOT NULL,
    imap_port INTEGER NOT NULL,
    lmtp_port INTEGER NOT NULL,
    sync_port INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    UNIQUE (machine, data_dir)
);
CREATE INDEX slots_machine ON slots(machine);
CREATE TABLE stores (
    id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    sync INTEGER NOT NULL,
    check_at INTEGER,
    check_status TEXT,
    check_summary TEXT
);
CREATE TABLE store_slots (
    store TEXT NOT NULL REFERENCES stores(id),
    slot TEXT NOT NULL UNIQUE REFERENCES slots(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (store, position)
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    store TEXT NOT NULL REFERENCES stores(id)
);
CREATE INDEX users_store ON users(store);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    store TEXT NOT NULL,
    old_master TEXT,
    new_master TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX history_store ON history(store, seq);
INSERT INTO meta (key, value) VALUES ('revision', 0);
";

/// Added to schema version 1 without a version change (older programs ignore
/// it): created on open if missing. Fenced slots (docs/failover.md).
const FENCES: &str = "
CREATE TABLE IF NOT EXISTS fences (
    slot TEXT PRIMARY KEY REFERENCES slots(id),
    store TEXT NOT NULL REFERENCES stores(id),
    epoch INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
";

/// Added to schema version 1 without a version change, like [`FENCES`]:
/// users being moved between stores (`ctl user move`).
const USER_MOVES: &str = "
CREATE TABLE IF NOT EXISTS user_moves (
    user TEXT PRIMARY KEY REFERENCES users(name),
    from_store TEXT NOT NULL REFERENCES stores(id),
    to_store TEXT NOT NULL REFERENCES stores(id),
    phase TEXT NOT NULL,
    started_ms INTEGER NOT NULL
);
";

/// How to open a directory file.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Create the file (and the schema) if it does not exist.
    pub create: bool,
    /// How long a write waits for another process's write, in milliseconds,
    /// before failing with [`DirectoryError::Locked`].
    pub busy_timeout_ms: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            create: false,
            busy_timeout_ms: BUSY_TIMEOUT_DEFAULT_MS,
        }
    }
}

/// The directory in one SQLite file. Cheap to share between threads; open
/// one per process.
pub struct SqliteDirectory {
    path: PathBuf,
    busy_timeout_ms: u64,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDirectory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Converts a SQLite failure into the directory's terms.
struct Ctx<'a> {
    path: &'a Path,
    busy_timeout_ms: u64,
}

impl Ctx<'_> {
    fn err(&self, e: rusqlite::Error) -> DirectoryError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                DirectoryError::Locked {
                    path: self.path.to_path_buf(),
                    waited_ms: self.busy_timeout_ms,
                }
            }
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                DirectoryError::Corrupt {
                    path: self.path.to_path_buf(),
                    detail: e.to_string(),
                }
            }
            _ => DirectoryError::Backend {
                detail: format!("{}: {e}", self.path.display()),
                source: Some(Box::new(e)),
            },
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> DirectoryError {
        DirectoryError::Corrupt {
            path: self.path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

trait DbResult<T> {
    fn db(self, ctx: &Ctx<'_>) -> Result<T>;
}

impl<T> DbResult<T> for rusqlite::Result<T> {
    fn db(self, ctx: &Ctx<'_>) -> Result<T> {
        self.map_err(|e| ctx.err(e))
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteDirectory {
    /// Open an existing directory file.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteDirectory> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// Open a directory file, creating it (and its schema) if it does not
    /// exist. Safe to race with other processes doing the same.
    pub fn create(path: impl AsRef<Path>) -> Result<SqliteDirectory> {
        Self::open_with(
            path,
            &SqliteOptions {
                create: true,
                ..SqliteOptions::default()
            },
        )
    }

    /// Open with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<SqliteDirectory> {
        let path = path.as_ref().to_path_buf();
        let ctx = Ctx {
            path: &path,
            busy_timeout_ms: options.busy_timeout_ms,
        };
        if !options.create && !path.exists() {
            return Err(DirectoryError::NotFound { path });
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut conn = Connection::open_with_flags(&path, flags).db(&ctx)?;
        conn.busy_timeout(Duration::from_millis(options.busy_timeout_ms))
            .db(&ctx)?;
        // journal_mode reads the header: a foreign file fails here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .db(&ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DirectoryError::Backend {
                detail: format!("{}: cannot use WAL journal (got {mode})", path.display()),
                source: None,
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .db(&ctx)?;
        Self::check_schema(&mut conn, &ctx, options.create)?;
        let has_fences: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fences'",
                [],
                |r| r.get(0),
            )
            .db(&ctx)?;
        if has_fences == 0 {
            conn.execute_batch(FENCES).db(&ctx)?;
        }
        conn.execute_batch(USER_MOVES).db(&ctx)?;
        Ok(SqliteDirectory {
            busy_timeout_ms: options.busy_timeout_ms,
            conn: Mutex::new(conn),
            path,
        })
    }

    fn check_schema(conn: &mut Connection, ctx: &Ctx<'_>, create: bool) -> Result<()> {
        if let Some(version) = Self::read_version(conn, ctx)? {
            return Self::accept_version(version, ctx);
        }
        if !create {
            return Err(ctx.corrupt("not a slotmail directory (no schema version)"));
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db(ctx)?;
        // Another process may have created it while we waited for the lock.
        if let Some(version) = Self::read_version(&tx, ctx)? {
            return Self::accept_version(version, ctx);
        }
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .db(ctx)?;
        if tables != 0 {
            return Err(ctx.corrupt("not a slotmail directory (foreign tables, no schema version)"));
        }
        tx.execute_batch(SCHEMA).db(ctx)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![SCHEMA_VERSION],
        )
        .db(ctx)?;
        tx.commit().db(ctx)?;
        tracing::info!(path = %ctx.path.display(), "created directory");
        Ok(())
    }

    fn read_version(conn: &Connection, ctx: &Ctx<'_>) -> Result<Option<i64>> {
        let has: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .db(ctx)?;
        if has == 0 {
            return Ok(None);
        }
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_version")
            .db(ctx)?
            .query_map([], |r| r.get(0))
            .db(ctx)?
            .collect::<rusqlite::Result<_>>()
            .db(ctx)?;
        match versions.as_slice() {
            [v] => Ok(Some(*v)),
            _ => Err(ctx.corrupt(format!("schema_version has {} rows, not 1", versions.len()))),
        }
    }

    fn accept_version(version: i64, ctx: &Ctx<'_>) -> Result<()> {
        if version == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(DirectoryError::UnsupportedSchema {
                path: ctx.path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            })
        }
    }

    /// The file this directory lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run SQLite's full integrity check over the file (slow on a large
    /// directory; for `ctl` diagnostics, not for every open).
    pub fn verify(&self) -> Result<()> {
        let conn = self.lock();
        let ctx = self.ctx();
        let rows: Vec<String> = conn
            .prepare("PRAGMA integrity_check")
            .db(&ctx)?
            .query_map([], |r| r.get(0))
            .db(&ctx)?
            .collect::<rusqlite::Result<_>>()
            .db(&ctx)?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(ctx.corrupt(rows.join("; ")))
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            path: &self.path,
            busy_timeout_ms: self.busy_timeout_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which
        // rolled back: the connection is fine to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` in a read transaction (one consistent view).
    fn read<T>(&self, f: impl FnOnce(&Connection, &Ctx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let ctx = self.ctx();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .db(&ctx)?;
        let out = f(&tx, &ctx)?;
        tx.commit().db(&ctx)?;
        Ok(out)
    }

    /// Run `f` in a write transaction; commit and raise the revision if it
    /// returns `Ok`, roll back if it returns `Err`.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection, &Ctx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let ctx = self.ctx();
        let started = Instant::now();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| match ctx.err(e) {
                DirectoryError::Locked { path, .. } => DirectoryError::Locked {
                    path,
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                other => other,
            })?;
        let out = f(&tx, &ctx)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )
        .db(&ctx)?;
        tx.commit().db(&ctx)?;
        tracing::debug!(op, path = %self.path.display(), "directory updated");
        Ok(out)
    }
}

// ---- row helpers (all run inside a transaction) ----

fn revision(c: &Connection, ctx: &Ctx<'_>) -> Result<u64> {
    let v: Option<i64> = c
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .optional()
        .db(ctx)?;
    let v = v.ok_or_else(|| ctx.corrupt("meta has no revision"))?;
    u64::try_from(v).map_err(|_| ctx.corrupt("negative revision"))
}

fn count(c: &Connection, ctx: &Ctx<'_>, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
    let n: i64 = c.query_row(sql, p, |r| r.get(0)).db(ctx)?;
    usize::try_from(n).map_err(|_| ctx.corrupt("negative count"))
}

fn parse_address(ctx: &Ctx<'_>, name: &str, s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| ctx.corrupt(format!("machine {name} has a bad address {s:?}")))
}

fn get_machine(c: &Connection, ctx: &Ctx<'_>, name: &str) -> Result<Option<Machine>> {
    let row: Option<String> = c
        .query_row(
            "SELECT address FROM machines WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .db(ctx)?;
    row.map(|a| {
        Ok(Machine {
            name: name.to_string(),
            address: parse_address(ctx, name, &a)?,
        })
    })
    .transpose()
}

fn port(ctx: &Ctx<'_>, v: i64) -> Result<u16> {
    u16::try_from(v).map_err(|_| ctx.corrupt(format!("bad port {v}")))
}

fn slot_from_row(ctx: &Ctx<'_>, r: &rusqlite::Row<'_>) -> Result<Slot> {
    let g = |i| -> Result<i64> { r.get(i).db(ctx) };
    Ok(Slot {
        id: r.get(0).db(ctx)?,
        machine: r.get(1).db(ctx)?,
        data_dir: r.get(2).db(ctx)?,
        imap_port: port(ctx, g(3)?)?,
        lmtp_port: port(ctx, g(4)?)?,
        sync_port: port(ctx, g(5)?)?,
        weight: u32::try_from(g(6)?).map_err(|_| ctx.corrupt("bad slot weight"))?,
    })
}

const SLOT_COLUMNS: &str = "id, machine, data_dir, imap_port, lmtp_port, sync_port, weight";

fn get_slot(c: &Connection, ctx: &Ctx<'_>, id: &str) -> Result<Option<Slot>> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {SLOT_COLUMNS} FROM slots WHERE id = ?1"))
        .db(ctx)?;
    let mut rows = stmt.query([id]).db(ctx)?;
    match rows.next().db(ctx)? {
        Some(r) => Ok(Some(slot_from_row(ctx, r)?)),
        None => Ok(None),
    }
}

fn slots_of_machine(c: &Connection, ctx: &Ctx<'_>, machine: &str) -> Result<Vec<Slot>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {SLOT_COLUMNS} FROM slots WHERE machine = ?1 ORDER BY id"
        ))
        .db(ctx)?;
    let mut rows = stmt.query([machine]).db(ctx)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db(ctx)? {
        out.push(slot_from_row(ctx, r)?);
    }
    Ok(out)
}

fn store_of_slot(c: &Connection, ctx: &Ctx<'_>, slot: &str) -> Result<Option<(String, usize)>> {
    let row: Option<(String, i64)> = c
        .query_row(
            "SELECT store, position FROM store_slots WHERE slot = ?1",
            [slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .db(ctx)?;
    row.map(|(s, p)| {
        Ok((
            s,
            usize::try_from(p).map_err(|_| ctx.corrupt("bad position"))?,
        ))
    })
    .transpose()
}

fn get_store(c: &Connection, ctx: &Ctx<'_>, id: &str) -> Result<Option<Store>> {
    type Row = (i64, bool, Option<i64>, Option<String>, Option<String>);
    let row: Option<Row> = c
        .query_row(
            "SELECT epoch, sync, check_at, check_status, check_summary FROM stores WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .db(ctx)?;
    let Some((epoch, sync, at, status, summary)) = row else {
        return Ok(None);
    };
    let slots: Vec<String> = c
        .prepare_cached("SELECT slot FROM store_slots WHERE store = ?1 ORDER BY position")
        .db(ctx)?
        .query_map([id], |r| r.get(0))
        .db(ctx)?
        .collect::<rusqlite::Result<_>>()
        .db(ctx)?;
    Ok(Some(store_from_parts(
        ctx, id, epoch, sync, at, status, summary, slots,
    )?))
}

#[allow(clippy::too_many_arguments)]
fn store_from_parts(
    ctx: &Ctx<'_>,
    id: &str,
    epoch: i64,
    sync: bool,
    at: Option<i64>,
    status: Option<String>,
    summary: Option<String>,
    slots: Vec<String>,
) -> Result<Store> {
    if slots.len() < SLOTS_PER_STORE_MIN {
        return Err(ctx.corrupt(format!("store {id} has {} slot(s)", slots.len())));
    }
    let last_check = match (at, status, summary) {
        (Some(at), Some(status), Some(summary)) => Some(CheckResult {
            at_unix_ms: u64::try_from(at).map_err(|_| ctx.corrupt("bad check time"))?,
            status: CheckStatus::parse(&status)
                .ok_or_else(|| ctx.corrupt(format!("store {id}: bad check status {status:?}")))?,
            summary,
        }),
        (None, None, None) => None,
        _ => return Err(ctx.corrupt(format!("store {id}: partial check result"))),
    };
    Ok(Store {
        id: id.to_string(),
        slots,
        epoch: u64::try_from(epoch).map_err(|_| ctx.corrupt("negative epoch"))?,
        sync,
        last_check,
    })
}

fn require_store(c: &Connection, ctx: &Ctx<'_>, id: &str) -> Result<Store> {
    get_store(c, ctx, id)?.ok_or_else(|| DirectoryError::UnknownStore(id.to_string()))
}

fn require_slot(c: &Connection, ctx: &Ctx<'_>, id: &str) -> Result<Slot> {
    get_slot(c, ctx, id)?.ok_or_else(|| DirectoryError::UnknownSlot(id.to_string()))
}

fn user_store(c: &Connection, ctx: &Ctx<'_>, user: &str) -> Result<Option<String>> {
    c.query_row("SELECT store FROM users WHERE name = ?1", [user], |r| {
        r.get(0)
    })
    .optional()
    .db(ctx)
}

fn write_store_slots(c: &Connection, ctx: &Ctx<'_>, store: &str, slots: &[String]) -> Result<()> {
    c.execute("DELETE FROM store_slots WHERE store = ?1", [store])
        .db(ctx)?;
    let mut stmt = c
        .prepare_cached("INSERT INTO store_slots (store, slot, position) VALUES (?1, ?2, ?3)")
        .db(ctx)?;
    for (i, slot) in slots.iter().enumerate() {
        stmt.execute(params![store, slot, to_i64(i as u64)])
            .db(ctx)?;
    }
    Ok(())
}

const MOVE_COLUMNS: &str = "user, from_store, to_store, phase, started_ms";

fn move_from_row(ctx: &Ctx<'_>, r: &rusqlite::Row<'_>) -> Result<UserMove> {
    let user: String = r.get(0).db(ctx)?;
    let phase: String = r.get(3).db(ctx)?;
    let phase = MovePhase::parse(&phase)
        .ok_or_else(|| ctx.corrupt(format!("move of user {user}: unknown phase {phase:?}")))?;
    Ok(UserMove {
        user,
        from: r.get(1).db(ctx)?,
        to: r.get(2).db(ctx)?,
        phase,
        started_unix_ms: r.get::<_, i64>(4).db(ctx)?.max(0) as u64,
    })
}

fn all_moves(c: &Connection, ctx: &Ctx<'_>) -> Result<Vec<UserMove>> {
    let mut stmt = c
        .prepare(&format!(
            "SELECT {MOVE_COLUMNS} FROM user_moves ORDER BY user"
        ))
        .db(ctx)?;
    let mut rows = stmt.query([]).db(ctx)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db(ctx)? {
        out.push(move_from_row(ctx, r)?);
    }
    Ok(out)
}

fn get_move(c: &Connection, ctx: &Ctx<'_>, user: &str) -> Result<Option<UserMove>> {
    let mut stmt = c
        .prepare(&format!(
            "SELECT {MOVE_COLUMNS} FROM user_moves WHERE user = ?1"
        ))
        .db(ctx)?;
    let mut rows = stmt.query([user]).db(ctx)?;
    match rows.next().db(ctx)? {
        Some(r) => Ok(Some(move_from_row(ctx, r)?)),
        None => Ok(None),
    }
}

/// Refuse a change of a user that is being moved.
fn refuse_moving(c: &Connection, ctx: &Ctx<'_>, user: &str) -> Result<()> {
    match get_move(c, ctx, user)? {
        Some(m) => Err(DirectoryError::UserMoving {
            user: m.user,
            from: m.from,
            to: m.to,
            phase: m.phase.as_str(),
        }),
        None => Ok(()),
    }
}

fn require_move(c: &Connection, ctx: &Ctx<'_>, user: &str) -> Result<UserMove> {
    get_move(c, ctx, user)?.ok_or_else(|| DirectoryError::NotMoving(user.to_string()))
}

fn write_phase(c: &Connection, ctx: &Ctx<'_>, user: &str, phase: MovePhase) -> Result<()> {
    c.execute(
        "UPDATE user_moves SET phase = ?1 WHERE user = ?2",
        params![phase.as_str(), user],
    )
    .db(ctx)?;
    Ok(())
}

fn all_fences(c: &Connection, ctx: &Ctx<'_>) -> Result<Vec<Fence>> {
    let mut stmt = c
        .prepare("SELECT slot, store, epoch, at_ms, reason FROM fences ORDER BY slot")
        .db(ctx)?;
    let mut rows = stmt.query([]).db(ctx)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db(ctx)? {
        let epoch: i64 = r.get(2).db(ctx)?;
        let at: i64 = r.get(3).db(ctx)?;
        out.push(Fence {
            slot: r.get(0).db(ctx)?,
            store: r.get(1).db(ctx)?,
            epoch: u64::try_from(epoch).map_err(|_| ctx.corrupt("negative fence epoch"))?,
            at_unix_ms: u64::try_from(at).unwrap_or(0),
            reason: r.get(4).db(ctx)?,
        });
    }
    Ok(out)
}

/// The master change shared by `set_master` and `fail_over`: returns (old
/// master, new epoch).
/// Refuse to make `slot` a master while it is fenced: `InvalidValue`
/// "slot S is fenced: `why`".
fn refuse_fenced(c: &Connection, ctx: &Ctx<'_>, slot: &str, why: &str) -> Result<()> {
    let fenced: Option<String> = c
        .query_row(
            "SELECT slot FROM fences WHERE slot = ?1",
            params![slot],
            |r| r.get(0),
        )
        .optional()
        .db(ctx)?;
    match fenced {
        Some(_) => Err(DirectoryError::InvalidValue(format!(
            "slot {slot} is fenced: {why}"
        ))),
        None => Ok(()),
    }
}

fn change_master(
    c: &Connection,
    ctx: &Ctx<'_>,
    store: &str,
    new_master: &str,
    expected_epoch: u64,
    reason: &str,
) -> Result<(String, u64)> {
    let mut st = require_store(c, ctx, store)?;
    if st.epoch != expected_epoch {
        return Err(DirectoryError::StaleEpoch {
            store: store.to_string(),
            expected: expected_epoch,
            actual: st.epoch,
        });
    }
    let Some(pos) = st.slots.iter().position(|s| s == new_master) else {
        return Err(DirectoryError::NotInStore {
            slot: new_master.to_string(),
            store: store.to_string(),
        });
    };
    if pos == 0 {
        return Err(DirectoryError::AlreadyMaster {
            slot: new_master.to_string(),
            store: store.to_string(),
        });
    }
    let old = st.slots[0].clone();
    st.slots.swap(0, pos);
    let epoch = st.epoch + 1;
    let changed = c
        .execute(
            "UPDATE stores SET epoch = ?1 WHERE id = ?2 AND epoch = ?3",
            params![to_i64(epoch), store, to_i64(expected_epoch)],
        )
        .db(ctx)?;
    assert_eq!(
        changed, 1,
        "the store's epoch changed inside our write transaction"
    );
    write_store_slots(c, ctx, store, &st.slots)?;
    add_history(c, ctx, store, Some(&old), new_master, epoch, reason)?;
    tracing::info!(store, old_master = %old, new_master, epoch, reason, "master changed");
    Ok((old, epoch))
}

fn add_history(
    c: &Connection,
    ctx: &Ctx<'_>,
    store: &str,
    old_master: Option<&str>,
    new_master: &str,
    epoch: u64,
    reason: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO history (at_ms, store, old_master, new_master, epoch, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            to_i64(now_unix_ms()),
            store,
            old_master,
            new_master,
            to_i64(epoch),
            reason
        ],
    )
    .db(ctx)?;
    Ok(())
}

/// The store's slots must be on distinct machines: the first clash found.
fn check_distinct_machines(
    c: &Connection,
    ctx: &Ctx<'_>,
    store: &str,
    slots: &[String],
) -> Result<()> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for id in slots {
        let slot = require_slot(c, ctx, id)?;
        if let Some(first) = seen.get(&slot.machine) {
            return Err(DirectoryError::SameMachine {
                store: store.to_string(),
                machine: slot.machine,
                first: first.clone(),
                second: id.clone(),
            });
        }
        seen.insert(slot.machine, id.clone());
    }
    Ok(())
}

impl Directory for SqliteDirectory {
    fn snapshot(&self) -> Result<Topology> {
        self.read(|c, ctx| {
            let mut topo = Topology {
                revision: revision(c, ctx)?,
                ..Topology::default()
            };
            let machines: Vec<(String, String)> = c
                .prepare("SELECT name, address FROM machines")
                .db(ctx)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .db(ctx)?
                .collect::<rusqlite::Result<_>>()
                .db(ctx)?;
            for (name, address) in machines {
                let address = parse_address(ctx, &name, &address)?;
                topo.machines
                    .insert(name.clone(), Machine { name, address });
            }
            let mut stmt = c
                .prepare(&format!("SELECT {SLOT_COLUMNS} FROM slots"))
                .db(ctx)?;
            let mut rows = stmt.query([]).db(ctx)?;
            while let Some(r) = rows.next().db(ctx)? {
                let slot = slot_from_row(ctx, r)?;
                topo.slots.insert(slot.id.clone(), slot);
            }
            let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut stmt = c
                .prepare("SELECT store, slot FROM store_slots ORDER BY store, position")
                .db(ctx)?;
            let mut rows = stmt.query([]).db(ctx)?;
            while let Some(r) = rows.next().db(ctx)? {
                members
                    .entry(r.get(0).db(ctx)?)
                    .or_default()
                    .push(r.get(1).db(ctx)?);
            }
            let mut stmt = c
                .prepare(
                    "SELECT id, epoch, sync, check_at, check_status, check_summary FROM stores",
                )
                .db(ctx)?;
            let mut rows = stmt.query([]).db(ctx)?;
            while let Some(r) = rows.next().db(ctx)? {
                let id: String = r.get(0).db(ctx)?;
                let slots = members.remove(&id).unwrap_or_default();
                let store = store_from_parts(
                    ctx,
                    &id,
                    r.get(1).db(ctx)?,
                    r.get(2).db(ctx)?,
                    r.get(3).db(ctx)?,
                    r.get(4).db(ctx)?,
                    r.get(5).db(ctx)?,
                    slots,
                )?;
                topo.stores.insert(id, store);
            }
            if let Some(store) = members.keys().next() {
                return Err(ctx.corrupt(format!("slots listed for missing store {store}")));
            }
            let mut stmt = c.prepare("SELECT name, store FROM users").db(ctx)?;
            let mut rows = stmt.query([]).db(ctx)?;
            while let Some(r) = rows.next().db(ctx)? {
                topo.users.insert(r.get(0).db(ctx)?, r.get(1).db(ctx)?);
            }
            for fence in all_fences(c, ctx)? {
                topo.fenced.insert(fence.slot.clone(), fence);
            }
            for m in all_moves(c, ctx)? {
                topo.moves.insert(m.user.clone(), m);
            }
            Ok(topo)
        })
    }

    fn revision(&self) -> Result<u64> {
        self.read(revision)
    }

    fn add_machine(&self, machine: &Machine) -> Result<()> {
        validate_id(IdKind::Machine, &machine.name)?;
        self.write("add_machine", |c, ctx| {
            if get_machine(c, ctx, &machine.name)?.is_some() {
                return Err(DirectoryError::MachineExists(machine.name.clone()));
            }
            let owner: Option<String> = c
                .query_row(
                    "SELECT name FROM machines WHERE address = ?1",
                    [machine.address.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .db(ctx)?;
            if let Some(owner) = owner {
                return Err(DirectoryError::AddressInUse {
                    address: machine.address,
                    machine: owner,
                });
            }
            if count(c, ctx, "SELECT count(*) FROM machines", [])? >= MACHINES_MAX {
                return Err(DirectoryError::Limit {
                    what: "machines",
                    limit: MACHINES_MAX,
                });
            }
            c.execute(
                "INSERT INTO machines (name, address) VALUES (?1, ?2)",
                params![machine.name, machine.address.to_string()],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn remove_machine(&self, name: &str) -> Result<()> {
        self.write("remove_machine", |c, ctx| {
            if get_machine(c, ctx, name)?.is_none() {
                return Err(DirectoryError::UnknownMachine(name.to_string()));
            }
            let slots = slots_of_machine(c, ctx, name)?;
            if !slots.is_empty() {
                let mut masters = 0;
                for slot in &slots {
                    if let Some((_, 0)) = store_of_slot(c, ctx, &slot.id)? {
                        masters += 1;
                    }
                }
                return Err(DirectoryError::MachineNotEmpty {
                    machine: name.to_string(),
                    slots: slots.into_iter().map(|s| s.id).collect(),
                    masters,
                });
            }
            c.execute("DELETE FROM machines WHERE name = ?1", [name])
                .db(ctx)?;
            Ok(())
        })
    }

    fn add_slot(&self, slot: &Slot) -> Result<()> {
        validate_slot(slot)?;
        self.write("add_slot", |c, ctx| {
            if get_slot(c, ctx, &slot.id)?.is_some() {
                return Err(DirectoryError::SlotExists(slot.id.clone()));
            }
            if get_machine(c, ctx, &slot.machine)?.is_none() {
                return Err(DirectoryError::UnknownMachine(slot.machine.clone()));
            }
            let others = slots_of_machine(c, ctx, &slot.machine)?;
            if others.len() >= SLOTS_PER_MACHINE_MAX {
                return Err(DirectoryError::Limit {
                    what: "slots per machine",
                    limit: SLOTS_PER_MACHINE_MAX,
                });
            }
            for other in &others {
                for port in [slot.imap_port, slot.lmtp_port, slot.sync_port] {
                    if [other.imap_port, other.lmtp_port, other.sync_port].contains(&port) {
                        return Err(DirectoryError::PortInUse {
                            machine: slot.machine.clone(),
                            port,
                            slot: other.id.clone(),
                        });
                    }
                }
                if other.data_dir == slot.data_dir {
                    return Err(DirectoryError::DataDirInUse {
                        machine: slot.machine.clone(),
                        data_dir: slot.data_dir.clone(),
                        slot: other.id.clone(),
                    });
                }
            }
            c.execute(
                &format!("INSERT INTO slots ({SLOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    slot.id,
                    slot.machine,
                    slot.data_dir,
                    slot.imap_port,
                    slot.lmtp_port,
                    slot.sync_port,
                    slot.weight
                ],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn remove_slot(&self, id: &str) -> Result<()> {
        self.write("remove_slot", |c, ctx| {
            require_slot(c, ctx, id)?;
            if let Some((store, _)) = store_of_slot(c, ctx, id)? {
                return Err(DirectoryError::SlotInStore {
                    slot: id.to_string(),
                    store,
                });
            }
            c.execute("DELETE FROM slots WHERE id = ?1", [id]).db(ctx)?;
            Ok(())
        })
    }

    fn create_store(&self, spec: &StoreSpec, reason: &str) -> Result<Store> {
        validate_id(IdKind::Store, &spec.id)?;
        validate_text("reason", reason)?;
        if spec.slots.len() < SLOTS_PER_STORE_MIN {
            return Err(DirectoryError::TooFewSlots {
                store: spec.id.clone(),
                slots: spec.slots.len(),
                min: SLOTS_PER_STORE_MIN,
            });
        }
        if spec.slots.len() > SLOTS_PER_STORE_MAX {
            return Err(DirectoryError::TooManySlots {
                store: spec.id.clone(),
                slots: spec.slots.len(),
                max: SLOTS_PER_STORE_MAX,
            });
        }
        for (i, slot) in spec.slots.iter().enumerate() {
            if spec.slots[..i].contains(slot) {
                return Err(DirectoryError::DuplicateSlot {
                    store: spec.id.clone(),
                    slot: slot.clone(),
                });
            }
        }
        self.write("create_store", |c, ctx| {
            if get_store(c, ctx, &spec.id)?.is_some() {
                return Err(DirectoryError::StoreExists(spec.id.clone()));
            }
            for slot in &spec.slots {
                require_slot(c, ctx, slot)?;
                if let Some((store, _)) = store_of_slot(c, ctx, slot)? {
                    return Err(DirectoryError::SlotInStore {
                        slot: slot.clone(),
                        store,
                    });
                }
            }
            check_distinct_machines(c, ctx, &spec.id, &spec.slots)?;
            if count(c, ctx, "SELECT count(*) FROM stores", [])? >= STORES_MAX {
                return Err(DirectoryError::Limit {
                    what: "stores",
                    limit: STORES_MAX,
                });
            }
            let last: Option<i64> = c
                .query_row(
                    "SELECT max(epoch) FROM history WHERE store = ?1",
                    [&spec.id],
                    |r| r.get(0),
                )
                .db(ctx)?;
            let epoch =
                u64::try_from(last.unwrap_or(0)).map_err(|_| ctx.corrupt("negative epoch"))? + 1;
            c.execute(
                "INSERT INTO stores (id, epoch, sync) VALUES (?1, ?2, ?3)",
                params![spec.id, to_i64(epoch), spec.sync],
            )
            .db(ctx)?;
            write_store_slots(c, ctx, &spec.id, &spec.slots)?;
            add_history(c, ctx, &spec.id, None, &spec.slots[0], epoch, reason)?;
            Ok(Store {
                id: spec.id.clone(),
                slots: spec.slots.clone(),
                epoch,
                sync: spec.sync,
                last_check: None,
            })
        })
    }

    fn remove_store(&self, id: &str) -> Result<()> {
        self.write("remove_store", |c, ctx| {
            require_store(c, ctx, id)?;
            // A store a user is moving into counts as holding that user.
            let users = count(c, ctx, "SELECT count(*) FROM users WHERE store = ?1", [id])?
                + count(
                    c,
                    ctx,
                    "SELECT count(*) FROM user_moves WHERE to_store = ?1",
                    [id],
                )?;
            if users > 0 {
                return Err(DirectoryError::StoreHasUsers {
                    store: id.to_string(),
                    users: users as u64,
                });
            }
            c.execute("DELETE FROM store_slots WHERE store = ?1", [id])
                .db(ctx)?;
            c.execute("DELETE FROM stores WHERE id = ?1", [id])
                .db(ctx)?;
            Ok(())
        })
    }

    fn add_replica(&self, store: &str, slot: &str) -> Result<()> {
        self.write("add_replica", |c, ctx| {
            let mut st = require_store(c, ctx, store)?;
            require_slot(c, ctx, slot)?;
            if let Some((owner, _)) = store_of_slot(c, ctx, slot)? {
                return Err(DirectoryError::SlotInStore {
                    slot: slot.to_string(),
                    store: owner,
                });
            }
            if st.slots.len() >= SLOTS_PER_STORE_MAX {
                return Err(DirectoryError::TooManySlots {
                    store: store.to_string(),
                    slots: st.slots.len() + 1,
                    max: SLOTS_PER_STORE_MAX,
                });
            }
            st.slots.push(slot.to_string());
            check_distinct_machines(c, ctx, store, &st.slots)?;
            write_store_slots(c, ctx, store, &st.slots)
        })
    }

    fn drop_replica(&self, store: &str, slot: &str) -> Result<()> {
        self.write("drop_replica", |c, ctx| {
            let mut st = require_store(c, ctx, store)?;
            let Some(pos) = st.slots.iter().position(|s| s == slot) else {
                return Err(DirectoryError::NotInStore {
                    slot: slot.to_string(),
                    store: store.to_string(),
                });
            };
            if pos == 0 {
                return Err(DirectoryError::IsMaster {
                    slot: slot.to_string(),
                    store: store.to_string(),
                });
            }
            if st.slots.len() - 1 < SLOTS_PER_STORE_MIN {
                return Err(DirectoryError::TooFewSlots {
                    store: store.to_string(),
                    slots: st.slots.len() - 1,
                    min: SLOTS_PER_STORE_MIN,
                });
            }
            st.slots.remove(pos);
            write_store_slots(c, ctx, store, &st.slots)
        })
    }

    fn set_master(
        &self,
        store: &str,
        new_master: &str,
        expected_epoch: u64,
        reason: &str,
    ) -> Result<u64> {
        validate_text("reason", reason)?;
        self.write("set_master", |c, ctx| {
            refuse_fenced(c, ctx, new_master, "reconcile or rebuild it first")?;
            Ok(change_master(c, ctx, store, new_master, expected_epoch, reason)?.1)
        })
    }

    fn fail_over(
        &self,
        store: &str,
        new_master: &str,
        expected_epoch: u64,
        reason: &str,
    ) -> Result<u64> {
        validate_text("reason", reason)?;
        self.write("fail_over", |c, ctx| {
            refuse_fenced(c, ctx, new_master, "it cannot be promoted")?;
            let (old, epoch) = change_master(c, ctx, store, new_master, expected_epoch, reason)?;
            c.execute(
                "INSERT OR REPLACE INTO fences (slot, store, epoch, at_ms, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![old, store, to_i64(epoch), to_i64(now_unix_ms()), reason],
            )
            .db(ctx)?;
            tracing::info!(store, slot = %old, epoch, "old master fenced");
            Ok(epoch)
        })
    }

    fn unfence(&self, slot: &str) -> Result<Fence> {
        self.write("unfence", |c, ctx| {
            let Some(fence) = all_fences(c, ctx)?.into_iter().find(|f| f.slot == slot) else {
                return Err(DirectoryError::NotFenced {
                    slot: slot.to_string(),
                });
            };
            c.execute("DELETE FROM fences WHERE slot = ?1", params![slot])
                .db(ctx)?;
            tracing::info!(slot, store = %fence.store, "fence lifted");
            Ok(fence)
        })
    }

    fn set_replica_order(&self, store: &str, replicas: &[String]) -> Result<()> {
        self.write("set_replica_order", |c, ctx| {
            let st = require_store(c, ctx, store)?;
            for slot in replicas {
                if !st.replicas().contains(slot) {
                    return Err(if st.master() == slot {
                        DirectoryError::IsMaster {
                            slot: slot.clone(),
                            store: store.to_string(),
                        }
                    } else {
                        DirectoryError::NotInStore {
                            slot: slot.clone(),
                            store: store.to_string(),
                        }
                    });
                }
            }
            let mut want = replicas.to_vec();
            want.sort();
            want.dedup();
            if want.len() != replicas.len() || want.len() != st.replicas().len() {
                return Err(DirectoryError::InvalidValue(format!(
                    "store {store}: the new order must name each of its {} replicas once",
                    st.replicas().len()
                )));
            }
            let mut slots = vec![st.master().to_string()];
            slots.extend(replicas.iter().cloned());
            write_store_slots(c, ctx, store, &slots)
        })
    }

    fn set_sync(&self, store: &str, sync: bool) -> Result<()> {
        self.write("set_sync", |c, ctx| {
            require_store(c, ctx, store)?;
            c.execute(
                "UPDATE stores SET sync = ?1 WHERE id = ?2",
                params![sync, store],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn assign_user(&self, user: &str, store: &str) -> Result<()> {
        validate_user(user)?;
        self.write("assign_user", |c, ctx| {
            if let Some(current) = user_store(c, ctx, user)? {
                return Err(DirectoryError::UserExists {
                    user: user.to_string(),
                    store: current,
                });
            }
            require_store(c, ctx, store)?;
            if count(c, ctx, "SELECT count(*) FROM users", [])? >= USERS_MAX {
                return Err(DirectoryError::Limit {
                    what: "users",
                    limit: USERS_MAX,
                });
            }
            c.execute(
                "INSERT INTO users (name, store) VALUES (?1, ?2)",
                params![user, store],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn move_user(&self, user: &str, from: &str, to: &str) -> Result<()> {
        self.write("move_user", |c, ctx| {
            refuse_moving(c, ctx, user)?;
            let current = user_store(c, ctx, user)?
                .ok_or_else(|| DirectoryError::UnknownUser(user.to_string()))?;
            if current == to {
                return Err(DirectoryError::AlreadyInStore {
                    user: user.to_string(),
                    store: current,
                });
            }
            if current != from {
                return Err(DirectoryError::UserNotInStore {
                    user: user.to_string(),
                    expected: from.to_string(),
                    actual: current,
                });
            }
            require_store(c, ctx, to)?;
            c.execute(
                "UPDATE users SET store = ?1 WHERE name = ?2",
                params![to, user],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn remove_user(&self, user: &str) -> Result<()> {
        self.write("remove_user", |c, ctx| {
            refuse_moving(c, ctx, user)?;
            if c.execute("DELETE FROM users WHERE name = ?1", [user])
                .db(ctx)?
                == 0
            {
                return Err(DirectoryError::UnknownUser(user.to_string()));
            }
            Ok(())
        })
    }

    fn begin_move(&self, user: &str, from: &str, to: &str) -> Result<UserMove> {
        self.write("begin_move", |c, ctx| {
            refuse_moving(c, ctx, user)?;
            let current = user_store(c, ctx, user)?
                .ok_or_else(|| DirectoryError::UnknownUser(user.to_string()))?;
            if current == to {
                return Err(DirectoryError::AlreadyInStore {
                    user: user.to_string(),
                    store: current,
                });
            }
            if current != from {
                return Err(DirectoryError::UserNotInStore {
                    user: user.to_string(),
                    expected: from.to_string(),
                    actual: current,
                });
            }
            require_store(c, ctx, to)?;
            let m = UserMove {
                user: user.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                phase: MovePhase::Copying,
                started_unix_ms: now_unix_ms(),
            };
            c.execute(
                &format!("INSERT INTO user_moves ({MOVE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![
                    m.user,
                    m.from,
                    m.to,
                    m.phase.as_str(),
                    to_i64(m.started_unix_ms)
                ],
            )
            .db(ctx)?;
            Ok(m)
        })
    }

    fn set_move_phase(&self, user: &str, phase: MovePhase) -> Result<UserMove> {
        self.write("set_move_phase", |c, ctx| {
            let mut m = require_move(c, ctx, user)?;
            if m.phase == MovePhase::Switched || phase == MovePhase::Switched {
                return Err(DirectoryError::MovePhase {
                    user: user.to_string(),
                    expected: "copying or final",
                    actual: m.phase.as_str(),
                });
            }
            write_phase(c, ctx, user, phase)?;
            m.phase = phase;
            Ok(m)
        })
    }

    fn switch_move(&self, user: &str) -> Result<UserMove> {
        self.write("switch_move", |c, ctx| {
            let mut m = require_move(c, ctx, user)?;
            if m.phase != MovePhase::Final {
                return Err(DirectoryError::MovePhase {
                    user: user.to_string(),
                    expected: MovePhase::Final.as_str(),
                    actual: m.phase.as_str(),
                });
            }
            let current = user_store(c, ctx, user)?
                .ok_or_else(|| ctx.corrupt(format!("move of missing user {user}")))?;
            if current != m.from {
                return Err(DirectoryError::UserNotInStore {
                    user: user.to_string(),
                    expected: m.from.clone(),
                    actual: current,
                });
            }
            require_store(c, ctx, &m.to)?;
            c.execute(
                "UPDATE users SET store = ?1 WHERE name = ?2",
                params![m.to, user],
            )
            .db(ctx)?;
            write_phase(c, ctx, user, MovePhase::Switched)?;
            m.phase = MovePhase::Switched;
            Ok(m)
        })
    }

    fn end_move(&self, user: &str) -> Result<UserMove> {
        self.write("end_move", |c, ctx| {
            let m = require_move(c, ctx, user)?;
            c.execute("DELETE FROM user_moves WHERE user = ?1", [user])
                .db(ctx)?;
            Ok(m)
        })
    }

    fn route(&self, user: &str) -> Result<Route> {
        self.read(|c, ctx| {
            let store_id = user_store(c, ctx, user)?
                .ok_or_else(|| DirectoryError::UnknownUser(user.to_string()))?;
            let store = get_store(c, ctx, &store_id)?
                .ok_or_else(|| ctx.corrupt(format!("user {user} in missing store {store_id}")))?;
            let master = get_slot(c, ctx, store.master())?
                .ok_or_else(|| ctx.corrupt(format!("store {store_id}: missing master slot")))?;
            let machine = get_machine(c, ctx, &master.machine)?
                .ok_or_else(|| ctx.corrupt(format!("slot {}: missing machine", master.id)))?;
            Ok(Route {
                user: user.to_string(),
                store: store_id,
                epoch: store.epoch,
                master,
                address: machine.address,
            })
        })
    }

    fn record_check(&self, store: &str, result: &CheckResult) -> Result<()> {
        validate_text("check summary", &result.summary)?;
        self.write("record_check", |c, ctx| {
            require_store(c, ctx, store)?;
            c.execute(
                "UPDATE stores SET check_at = ?1, check_status = ?2, check_summary = ?3 WHERE id = ?4",
                params![
                    to_i64(result.at_unix_ms),
                    result.status.as_str(),
                    result.summary,
                    store
                ],
            )
            .db(ctx)?;
            Ok(())
        })
    }

    fn record_step(&self, store: &str, reason: &str) -> Result<()> {
        validate_text("reason", reason)?;
        self.write("record_step", |c, ctx| {
            let st = require_store(c, ctx, store)?;
            add_history(
                c,
                ctx,
                store,
                Some(st.master()),
                st.master(),
                st.epoch,
                reason,
            )
        })
    }

    fn history(&self, store: Option<&str>, limit: usize) -> Result<Vec<RoleChange>> {
        if limit > HISTORY_ENTRIES_MAX {
            return Err(DirectoryError::Limit {
                what: "history entries per call",
                limit: HISTORY_ENTRIES_MAX,
            });
        }
        self.read(|c, ctx| {
            let mut stmt = c
                .prepare(
                    "SELECT seq, at_ms, store, old_master, new_master, epoch, reason FROM history
                     WHERE (?1 IS NULL OR store = ?1) ORDER BY seq DESC LIMIT ?2",
                )
                .db(ctx)?;
            let mut rows = stmt.query(params![store, to_i64(limit as u64)]).db(ctx)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().db(ctx)? {
                let num = |i| -> Result<u64> {
                    let v: i64 = r.get(i).db(ctx)?;
                    u64::try_from(v).map_err(|_| ctx.corrupt("negative number in history"))
                };
                out.push(RoleChange {
                    seq: num(0)?,
                    at_unix_ms: num(1)?,
                    store: r.get(2).db(ctx)?,
                    old_master: r.get(3).db(ctx)?,
                    new_master: r.get(4).db(ctx)?,
                    epoch: num(5)?,
                    reason: r.get(6).db(ctx)?,
                });
            }
            Ok(out)
        })
    }
}
