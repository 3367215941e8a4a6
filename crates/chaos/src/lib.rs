//! Fault injection for slotmail (`slotmail chaos run`, docs/reliability.md).
//!
//! A real cluster — three machines (loopback addresses) of two slots each,
//! their supervisors and the proxy — runs a mixed IMAP and LMTP workload
//! from independent clients (Python's imaplib and smtplib, `workload.py`)
//! for a bounded time while seeded faults are injected one after another
//! (`schedule.rs`): kill -9 of slots and of whole machines, partitions,
//! stalls, delays and mid-stream cuts of replication (a relay, `relay.rs`,
//! that masters dial through the cluster file's `[sync_via]`), a full disk
//! (a size-limited tmpfs for one machine's data volume), flipped bytes in
//! message files of masters and replicas, switchovers, and failovers with
//! reconcile. Afterwards every fault is healed, the cluster converges, and
//! the history is checked (`history.rs`): no acknowledged message missing or
//! altered, no UID reused within a UIDVALIDITY, the replication check
//! clean, one master per epoch. The report is JSON and text.

pub mod cli;
pub mod history;
pub mod procs;
pub mod relay;
pub mod rng;
pub mod schedule;

use history::{Ack, Findings, Mailbox, RoleChange};
use procs::{Ctl, Proxy, Supervisor, Tmpfs};
use relay::{Mode, Relay};
use schedule::{Fault, Kind};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workload script (independent clients).
pub const WORKLOAD_PY: &str = include_str!("../python/workload.py");
/// The read-back script.
pub const READBACK_PY: &str = include_str!("../python/readback.py");
/// Machines of the cluster.
pub const MACHINES: usize = 3;
/// Slots per machine.
pub const SLOTS_PER_MACHINE: usize = 2;
/// Size of the tmpfs that holds one machine's slots (MiB).
pub const TMPFS_MIB: u64 = 512;
/// Longest wait for the cluster to become healthy or to converge.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for a rebuild after reconcile (`ctl reconcile --timeout-secs`).
pub const REBUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Tries (500 ms apart) to find a message file to corrupt.
pub const CORRUPT_WAIT_TRIES: u32 = 20;
/// Outcomes of a fault that did nothing (not counted as injected).
pub const NOT_INJECTED: [&str; 4] = [
    "no slot running",
    "no message file yet",
    "empty file",
    "HARNESS STEP FAILED",
];
/// Longest wait for the workload to stop.
pub const WORKLOAD_STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("starting {0}: {1}")]
    Spawn(&'static str, #[source] std::io::Error),
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0}")]
    Mount(String),
    #[error("{0}")]
    Step(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub slotmail: PathBuf,
    /// Working directory (cluster, logs, histories); must be empty or absent.
    pub dir: PathBuf,
    pub seed: u64,
    /// How long faults are injected (the first round of every kind always
    /// completes).
    pub duration: Duration,
    /// The first of `MACHINES + 2` consecutive loopback addresses 127.0.0.X
    /// (machines, proxy, relays).
    pub address_base: u8,
    pub users: usize,
    /// The fault kinds to inject.
    pub kinds: Vec<Kind>,
    /// Pause between two fault injections (ms, min and max).
    pub gap_ms: (u64, u64),
    /// Pause of each client after an acknowledged operation (ms).
    pub client_pause_ms: u64,
}

/// One injected fault and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub at_ms: u64,
    pub kind: Kind,
    pub target: String,
    pub hold_ms: u64,
    pub outcome: String,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_ms: u64,
    pub elapsed_ms: u64,
    pub users: usize,
    pub acknowledged: BTreeMap<String, u64>,
    pub refused: u64,
    pub client_errors: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Scheduled faults that found nothing to act on (or whose step
    /// failed), by kind: not counted in `faults`.
    pub not_injected: BTreeMap<String, u64>,
    pub injected: Vec<Injected>,
    pub messages_verified: u64,
    pub messages_lost: u64,
    pub divergences: u64,
    pub check: Value,
    pub findings: Findings,
    pub dir: PathBuf,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.messages_lost == 0 && self.divergences == 0 && self.findings.clean()
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "chaos run: seed {}, faults for {} s, {} users, {:.0} s in all\n",
            self.seed,
            self.duration_ms / 1000,
            self.users,
            self.elapsed_ms as f64 / 1000.0
        );
        s.push_str("acknowledged:");
        for (k, v) in &self.acknowledged {
            s.push_str(&format!(" {k} {v}"));
        }
        s.push_str(&format!(
            " (refused {}, client errors {})\nfaults:",
            self.refused, self.client_errors
        ));
        for (k, v) in &self.faults {
            s.push_str(&format!(" {k} {v}"));
        }
        if !self.not_injected.is_empty() {
            s.push_str(" (scheduled but without effect:");
            for (k, v) in &self.not_injected {
                s.push_str(&format!(" {k} {v}"));
            }
            s.push(')');
        }
        s.push_str(&format!(
            "\nmessages verified {}, lost {}, divergences after convergence {}, UIDs reused {}, flags lost {}, epoch violations {}, expunged and back {}, IMAP acknowledgements attributed to a slot {}\n",
            self.messages_verified,
            self.messages_lost,
            self.divergences,
            self.findings.uid_reused.len(),
            self.findings.flags_lost.len(),
            self.findings.epoch_violations.len(),
            self.findings.expunged_back,
            self.findings.acks_attributed,
        ));
        for line in self
            .findings
            .lost
            .iter()
            .chain(&self.findings.uid_reused)
            .chain(&self.findings.flags_lost)
            .chain(&self.findings.epoch_violations)
            .take(50)
        {
            s.push_str(&format!("  {line}\n"));
        }
        s.push_str(if self.ok() {
            "RESULT: OK\n"
        } else {
            "RESULT: FAILED\n"
        });
        s
    }
}

fn ip(base: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, base + i as u8))
}

/// The running cluster and the harness's hold on it.
struct Harness {
    opts: Options,
    ctl: Ctl,
    machines: Vec<String>,
    sups: Vec<Supervisor>,
    relays: BTreeMap<String, Relay>,
    disk: Option<Tmpfs>,
    disk_machine: String,
    /// Slots whose rebuild after reconcile did not finish in time.
    unfinished: Vec<String>,
    log: std::fs::File,
    start: Instant,
}

impl Harness {
    fn note(&mut self, line: &str) {
        use std::io::Write;
        let l = format!("[{:>7.1}s] {line}\n", self.start.elapsed().as_secs_f64());
        let _ = self.log.write_all(l.as_bytes());
        eprint!("chaos: {l}");
    }

    fn slots(&self) -> Result<Vec<Value>, ChaosError> {
        Ok(self.ctl.json(&["slot", "list"])?["slots"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn stores(&self) -> Result<Vec<Value>, ChaosError> {
        Ok(self.ctl.json(&["store", "list"])?["stores"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn sup(&mut self, machine: &str) -> &mut Supervisor {
        self.sups
            .iter_mut()
            .find(|s| s.name == machine)
            .expect("machine")
    }

    fn kill_machine(&mut self, machine: &str) -> Result<(), ChaosError> {
        let pids: Vec<u64> = self
            .slots()?
            .iter()
            .filter(|s| s["machine"] == machine)
            .filter_map(|s| s["process"]["pid"].as_u64())
            .collect();
        self.sup(machine).kill9();
        for p in pids {
            procs::kill9(p);
        }
        Ok(())
    }

    fn start_machine(&mut self, machine: &str) -> Result<(), ChaosError> {
        let s = Supervisor::start(&self.ctl, &self.opts.dir, machine)?;
        *self.sup(machine) = s;
        Ok(())
    }

    /// Wait until `ctl status` exits 0 (every slot up in its role).
    fn wait_healthy(&mut self, what: &str) -> Result<(), ChaosError> {
        let start = Instant::now();
        loop {
            let (code, out, _) = self.ctl.run(&["status"], "")?;
            if code == 0 {
                return Ok(());
            }
            if start.elapsed() > SETTLE_TIMEOUT {
                return Err(ChaosError::Step(format!(
                    "the cluster did not become healthy ({what}): {out}"
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Slots by current role: (masters, replicas) as (slot, store).
    fn roles(&self) -> Result<(Vec<String>, Vec<String>), ChaosError> {
        let mut m = Vec::new();
        let mut r = Vec::new();
        for s in self.stores()? {
            if let Some(x) = s["master"].as_str() {
                m.push(x.to_string());
            }
            for x in s["replicas"].as_array().into_iter().flatten() {
                if let Some(x) = x.as_str() {
                    r.push(x.to_string());
                }
            }
        }
        Ok((m, r))
    }

    fn data_dir(&self, slot: &str) -> Result<PathBuf, ChaosError> {
        let slots = self.slots()?;
        let s = slots
            .iter()
            .find(|s| s["id"] == slot)
            .ok_or_else(|| ChaosError::Step(format!("no slot {slot}")))?;
        let d = s["data_dir"].as_str().unwrap_or_default();
        let p = Path::new(d);
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.opts.dir.join("slots").join(p)
        })
    }

    fn inject(&mut self, f: &Fault) -> Result<(String, String), ChaosError> {
        let hold = Duration::from_millis(f.hold_ms);
        match f.kind {
            Kind::KillSlot => {
                let slots = self.slots()?;
                let live: Vec<&Value> = slots
                    .iter()
                    .filter(|s| s["process"]["pid"].is_u64())
                    .collect();
                if live.is_empty() {
                    return Ok(("-".into(), "no slot running".into()));
                }
                let s = live[(f.target % live.len() as u64) as usize];
                procs::kill9(s["process"]["pid"].as_u64().unwrap_or(0));
                Ok((s["id"].as_str().unwrap_or("?").into(), "killed".into()))
            }
            Kind::KillMachine => {
                let m = self.machines[(f.target % self.machines.len() as u64) as usize].clone();
                self.kill_machine(&m)?;
                std::thread::sleep(hold);
                self.start_machine(&m)?;
                Ok((m, "killed, restarted".into()))
            }
            Kind::Partition | Kind::Stall | Kind::Delay | Kind::Cut => {
                let (_, replicas) = self.roles()?;
                let slot = replicas[(f.target % replicas.len() as u64) as usize].clone();
                let mode = match f.kind {
                    Kind::Partition => Mode::Partition,
                    Kind::Stall => Mode::Stall,
                    Kind::Delay => Mode::Delay(Duration::from_millis(20 + f.param % 300)),
                    _ => Mode::Cut(1 + f.param % 4096),
                };
                let relay = &self.relays[&slot];
                relay.set_mode(mode);
                std::thread::sleep(hold);
                relay.set_mode(Mode::Pass);
                Ok((slot, format!("{mode:?}")))
            }
            Kind::DiskFull => {
                let disk = self.disk.as_ref().expect("the disk is mounted");
                let (ballast, bytes) = disk.fill()?;
                std::thread::sleep(hold);
                std::fs::remove_file(&ballast).map_err(|e| ChaosError::Io(ballast.clone(), e))?;
                Ok((
                    self.disk_machine.clone(),
                    format!("ENOSPC after {bytes} ballast bytes"),
                ))
            }
            Kind::CorruptMaster | Kind::CorruptReplica => {
                let (masters, replicas) = self.roles()?;
                let pool = if f.kind == Kind::CorruptMaster {
                    masters
                } else {
                    replicas
                };
                let slot = pool[(f.target % pool.len() as u64) as usize].clone();
                // The fault is bit rot of data at rest: a message file that
                // the store's other slot holds too (same path under users/).
                // Flipping the only copy of a message not yet replicated
                // loses it whatever the system does (docs/reliability.md).
                let peer = self.peer_of(&slot)?;
                let dir = self.data_dir(&slot)?.join("users");
                let peer_dir = self.data_dir(&peer)?.join("users");
                let mut bodies = Vec::new();
                // Early in a run a slot may hold no message yet: wait a little.
                for _ in 0..CORRUPT_WAIT_TRIES {
                    let theirs: std::collections::BTreeSet<(String, String)> =
                        stored_bodies(&peer_dir)
                            .into_iter()
                            .map(|b| (b.user_dir, b.guid))
                            .collect();
                    bodies = stored_bodies(&dir)
                        .into_iter()
                        .filter(|b| theirs.contains(&(b.user_dir.clone(), b.guid.clone())))
                        .collect();
                    if !bodies.is_empty() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                if bodies.is_empty() {
                    return Ok((slot, "no message file yet".into()));
                }
                let body = &bodies[(f.param % bodies.len() as u64) as usize];
                let file = &body.file;
                if body.len == 0 {
                    return Ok((slot, "empty file".into()));
                }
                let at = body.offset + (f.param >> 20) % body.len;
                // In place, without creating: a pack compacted away since
                // it was listed is left alone.
                if let Err(e) = flip_byte(file, at) {
                    return Ok((slot, format!("{} changed meanwhile: {e}", file.display())));
                }
                // The operator's response to a disk error: scrub the slot
                // (a master repairs from its replica; a replica marks the
                // body bad), and restart a replica so that its master
                // compares it in full at once and sends the body again.
                let (code, out, _) = self.ctl.run(&["slot", "scrub", &slot], "")?;
                if f.kind == Kind::CorruptReplica {
                    self.ctl.json(&["slot", "restart", &slot])?;
                }
                Ok((
                    slot,
                    format!(
                        "byte {at} of {} (message {}) flipped; scrub exit {code}: {}",
                        file.file_name().unwrap_or_default().to_string_lossy(),
                        body.guid,
                        out.trim()
                    ),
                ))
            }
            Kind::Switchover => {
                let stores = self.stores()?;
                let s = &stores[(f.target % stores.len() as u64) as usize];
                let id = s["id"].as_str().unwrap_or("?").to_string();
                let (code, doc, err) = self.ctl.json_any(&["switchover", &id])?;
                let outcome = if code == 0 {
                    format!(
                        "{} -> {}, epoch {}",
                        doc["old_master"], doc["new_master"], doc["epoch"]
                    )
                } else {
                    format!("refused/failed (exit {code}): {}", err.trim())
                };
                Ok((id, outcome))
            }
            Kind::Failover => self.failover(f),
        }
    }

    fn failover(&mut self, f: &Fault) -> Result<(String, String), ChaosError> {
        // A machine that holds a master.
        let (masters, _) = self.roles()?;
        let slots = self.slots()?;
        let machine_of = |slot: &str| {
            slots
                .iter()
                .find(|s| s["id"] == slot)
                .and_then(|s| s["machine"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let master = masters[(f.target % masters.len() as u64) as usize].clone();
        let m = machine_of(&master);
        self.kill_machine(&m)?;
        let start = Instant::now();
        let outcome = loop {
            let (code, doc, err) = self.ctl.json_any(&["failover", &m])?;
            if code == 0 {
                let promoted: Vec<String> = doc["stores"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| format!("{}: {} -> {}", s["store"], s["fenced"], s["new_master"]))
                    .collect();
                break format!("failed over ({})", promoted.join(", "));
            }
            if start.elapsed() > Duration::from_secs(20) {
                break format!("failover refused (exit {code}): {}", err.trim());
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        std::thread::sleep(Duration::from_millis(f.hold_ms));
        self.start_machine(&m)?;
        let reconciled = self.reconcile_fenced()?;
        Ok((m, format!("{outcome}; {reconciled}")))
    }

    /// `ctl reconcile` every fenced slot once its machine is back.
    fn reconcile_fenced(&mut self) -> Result<String, ChaosError> {
        let mut done = Vec::new();
        let start = Instant::now();
        loop {
            let slots = self.slots()?;
            let fenced: Vec<String> = slots
                .iter()
                .filter(|s| s["role"] == "fenced")
                .filter_map(|s| s["id"].as_str().map(String::from))
                .collect();
            if fenced.is_empty() {
                break;
            }
            let mut progress = false;
            for slot in fenced {
                let (code, doc, err) = self.ctl.json_any(&[
                    "reconcile",
                    &slot,
                    "--timeout-secs",
                    &REBUILD_TIMEOUT.as_secs().to_string(),
                ])?;
                if code == 0 {
                    done.push(format!("reconciled {slot}: {}", doc["summary"]));
                    self.drop_kept(&slot)?;
                    progress = true;
                } else if !self.fenced(&slot)? {
                    // Reconciled, but the rebuild did not finish in time:
                    // the sync goes on; the heal waits for it again.
                    done.push(format!(
                        "reconciled {slot}, rebuild unfinished (exit {code}): {}",
                        last_line(&err)
                    ));
                    self.unfinished.push(slot.clone());
                    progress = true;
                } else if start.elapsed() > Duration::from_secs(60) {
                    done.push(format!(
                        "reconcile {slot} failed (exit {code}): {}",
                        last_line(&err)
                    ));
                    return Ok(done.join("; "));
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(done.join("; "))
    }

    /// Heal everything: relays pass, machines run, fenced slots reconciled.
    fn heal(&mut self) -> Result<(), ChaosError> {
        for r in self.relays.values() {
            r.set_mode(Mode::Pass);
        }
        let _ = std::fs::remove_file(
            self.opts
                .dir
                .join("slots")
                .join(&self.disk_machine)
                .join("chaos-ballast"),
        );
        for m in self.machines.clone() {
            if !self.sup(&m).running() {
                self.start_machine(&m)?;
            }
        }
        let r = self.reconcile_fenced()?;
        if !r.is_empty() {
            self.note(&format!("heal: {r}"));
        }
        for slot in std::mem::take(&mut self.unfinished) {
            let (code, _, err) = self.ctl.json_any(&[
                "rebuild",
                &slot,
                "--resume",
                "--timeout-secs",
                &REBUILD_TIMEOUT.as_secs().to_string(),
            ])?;
            self.note(&format!(
                "heal: rebuild {slot} --resume: exit {code} {}",
                last_line(&err)
            ));
            if code == 0 {
                self.drop_kept(&slot)?;
            }
        }
        Ok(())
    }

    /// Delete the data a finished reconcile and rebuild of `slot` kept
    /// aside (`DATA.before-rebuild-TIME`), as an operator does once they
    /// are done: on machine m3's 512 MiB volume the copies left by repeated
    /// failovers filled the disk for good in run D (docs/reliability.md).
    fn drop_kept(&mut self, slot: &str) -> Result<(), ChaosError> {
        let data = self.data_dir(slot)?;
        for kept in kept_aside(&data) {
            if let Err(e) = std::fs::remove_dir_all(&kept) {
                self.note(&format!("removing {}: {e}", kept.display()));
            }
        }
        Ok(())
    }

    /// The other slot of `slot`'s store.
    fn peer_of(&self, slot: &str) -> Result<String, ChaosError> {
        for s in self.stores()? {
            let members: Vec<String> = std::iter::once(&s["master"])
                .chain(s["replicas"].as_array().into_iter().flatten())
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            if members.iter().any(|m| m == slot)
                && let Some(p) = members.into_iter().find(|m| m != slot)
            {
                return Ok(p);
            }
        }
        Err(ChaosError::Step(format!(
            "no store pairs {slot} with another slot"
        )))
    }

    fn fenced(&self, slot: &str) -> Result<bool, ChaosError> {
        Ok(self
            .slots()?
            .iter()
            .any(|s| s["id"] == slot && s["role"] == "fenced"))
    }
}

/// The directories `ctl rebuild` kept aside for the slot whose data
/// directory is `data`: its siblings named `NAME.before-rebuild-TIME`.
fn kept_aside(data: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (data.parent(), data.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.before-rebuild-", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or_default()
}

/// One stored message body: a loose file, or an entry of a pack file
/// (docs/storage.md, "Pack files").
struct StoredBody {
    /// The user's directory name under `users/` (the same on every slot of
    /// a store).
    user_dir: String,
    guid: String,
    file: PathBuf,
    offset: u64,
    len: u64,
}

/// Every message body under a slot's `users/`, sorted: loose files by their
/// names, packed bodies by walking each pack's entry headers.
fn stored_bodies(users: &Path) -> Vec<StoredBody> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(users) else {
        return out;
    };
    for user in rd.flatten() {
        let user_dir = user.file_name().to_string_lossy().into_owned();
        let fans = std::fs::read_dir(user.path().join("msg"))
            .into_iter()
            .flatten()
            .flatten();
        for fan in fans {
            for f in std::fs::read_dir(fan.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let len = f.metadata().map_or(0, |m| m.len());
                out.push(StoredBody {
                    user_dir: user_dir.clone(),
                    guid: f.file_name().to_string_lossy().into_owned(),
                    file: f.path(),
                    offset: 0,
                    len,
                });
            }
        }
        for p in std::fs::read_dir(user.path().join("pack"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(bytes) = std::fs::read(p.path()) else {
                continue;
            };
            for (guid, offset, len) in pack_entries(&bytes) {
                out.push(StoredBody {
                    user_dir: user_dir.clone(),
                    guid,
                    file: p.path(),
                    offset,
                    len,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.offset).cmp(&(&b.file, b.offset)));
    out
}

/// XOR one byte of an existing file with 0x20, in place.
fn flip_byte(file: &Path, at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    b[0] ^= 0x20;
    f.write_all_at(&b, at)
}

/// (GUID in hex, offset, length) of each entry of a pack file; stops at
/// the first entry that does not fit.
fn pack_entries(pack: &[u8]) -> Vec<(String, u64, u64)> {
    const MAGIC: &[u8] = b"slotmail-pack 1\n";
    let mut out = Vec::new();
    if !pack.starts_with(MAGIC) {
        return out;
    }
    let mut at = MAGIC.len();
    while at + 40 <= pack.len() {
        let guid: String = pack[at..at + 32]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut len = [0u8; 8];
        len.copy_from_slice(&pack[at + 32..at + 40]);
        let len = u64::from_le_bytes(len);
        let body = (at + 40) as u64;
        if body + len > pack.len() as u64 {
            break;
        }
        out.push((guid, body, len));
        at = (body + len) as usize;
    }
    out
}

/// Run the harness: build the cluster under `opts.dir`, inject, check.
pub fn run(opts: Options) -> Result<Report, ChaosError> {
    let started = Instant::now();
    let dir = opts.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| ChaosError::Io(dir.clone(), e))?;
    let ctl = Ctl {
        slotmail: opts.slotmail.clone(),
        cluster: dir.join("cluster.toml"),
    };
    let log = std::fs::File::create(dir.join("chaos.log"))
        .map_err(|e| ChaosError::Io(dir.join("chaos.log"), e))?;
    let machines: Vec<String> = (1..=MACHINES).map(|i| format!("m{i}")).collect();
    let disk_machine = machines[MACHINES - 1].clone();
    let mut h = Harness {
        ctl: ctl.clone(),
        machines: machines.clone(),
        sups: Vec::new(),
        relays: BTreeMap::new(),
        disk: None,
        disk_machine: disk_machine.clone(),
        unfinished: Vec::new(),
        log,
        start: started,
        opts: opts.clone(),
    };
    // The slots' ports (the default scheme) must be free on the machines'
    // addresses: another cluster on them would answer in their place.
    for i in 0..MACHINES {
        for base in [1143u16, 2424, 2500] {
            for k in 0..SLOTS_PER_MACHINE as u16 {
                let addr = SocketAddr::new(ip(opts.address_base, i), base + k);
                if std::net::TcpListener::bind(addr).is_err() {
                    return Err(ChaosError::Step(format!(
                        "{addr} is taken: choose other loopback addresses (--address-base)"
                    )));
                }
            }
        }
    }
    ctl.json(&["init", "--name", "chaos", "--allow-plaintext-auth"])?;
    for (i, m) in machines.iter().enumerate() {
        ctl.json(&[
            "machine",
            "add",
            m,
            "--address",
            &ip(opts.address_base, i).to_string(),
        ])?;
    }
    // One machine's data volume is a size-limited tmpfs (the disk-full fault).
    h.disk = Some(Tmpfs::mount(
        &dir.join("slots").join(&disk_machine),
        TMPFS_MIB,
    )?);
    for m in &machines {
        ctl.json(&["slot", "add", m, "--count", &SLOTS_PER_MACHINE.to_string()])?;
    }
    ctl.json(&["plan", "--replicas", "1", "--apply"])?;
    // A relay in front of every slot's sync listener; masters dial it.
    let relay_ip = ip(opts.address_base, MACHINES + 1);
    let mut via = String::from("\n[sync_via]\n");
    for s in h.slots()? {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        let addr: SocketAddr = format!(
            "{}:{}",
            s["address"].as_str().unwrap_or_default(),
            s["sync_port"]
        )
        .parse()
        .map_err(|e| ChaosError::Step(format!("slot {id} sync address: {e}: {s}")))?;
        let relay = Relay::start(relay_ip, addr)
            .map_err(|e| ChaosError::Io(PathBuf::from(relay_ip.to_string()), e))?;
        via.push_str(&format!("{id} = \"{}\"\n", relay.listen));
        h.relays.insert(id, relay);
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&ctl.cluster)
            .map_err(|e| ChaosError::Io(ctl.cluster.clone(), e))?;
        f.write_all(via.as_bytes())
            .map_err(|e| ChaosError::Io(ctl.cluster.clone(), e))?;
    }
    for m in &machines {
        let s = Supervisor::start(&ctl, &dir, m)?;
        h.sups.push(s);
    }
    h.wait_healthy("start")?;
    let users: Vec<(String, String)> = (1..=opts.users)
        .map(|i| (format!("u{i}"), format!("pw-u{i}")))
        .collect();
    for (u, p) in &users {
        let (code, out, err) = ctl.run(
            &["user", "add", u, "--password-stdin", "--json"],
            &format!("{p}\n"),
        )?;
        if code != 0 {
            return Err(ChaosError::Step(format!("user add {u}: {out} {err}")));
        }
    }
    let proxy = Proxy::start(&ctl, &dir, ip(opts.address_base, MACHINES))?;
    h.note(&format!(
        "cluster up: {} machines × {} slots, proxy IMAP {} LMTP {}",
        MACHINES, SLOTS_PER_MACHINE, proxy.imap, proxy.lmtp
    ));

    // The workload.
    let acks_dir = dir.join("acks");
    std::fs::create_dir_all(&acks_dir).map_err(|e| ChaosError::Io(acks_dir.clone(), e))?;
    let script = dir.join("workload.py");
    std::fs::write(&script, WORKLOAD_PY).map_err(|e| ChaosError::Io(script.clone(), e))?;
    let stop = dir.join("workload.stop");
    let mut workload = Workload(Some(
        Command::new("python3")
            .arg(&script)
            .arg(proxy.imap.to_string())
            .arg(proxy.lmtp.to_string())
            .arg(&acks_dir)
            .arg(&stop)
            .arg(opts.seed.to_string())
            .arg(opts.client_pause_ms.to_string())
            .args(users.iter().map(|(u, p)| format!("{u}:{p}")))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("workload.err"))
                    .map_err(|e| ChaosError::Io(dir.join("workload.err"), e))?,
            )
            .spawn()
            .map_err(|e| ChaosError::Spawn("python3 workload.py", e))?,
    ));

    // The faults.
    let duration_ms = opts.duration.as_millis() as u64;
    let plan = schedule::schedule(opts.seed, duration_ms, &opts.kinds, opts.gap_ms);
    std::fs::write(
        dir.join("schedule.json"),
        serde_json::to_vec_pretty(&plan).unwrap_or_default(),
    )
    .map_err(|e| ChaosError::Io(dir.join("schedule.json"), e))?;
    let t0 = Instant::now();
    let mut injected = Vec::new();
    for f in &plan {
        let due = Duration::from_millis(f.at_ms);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let at_ms = t0.elapsed().as_millis() as u64;
        // A step that fails (a ctl command refused, a timeout) is reported
        // as the fault's outcome; the run goes on and the checks decide.
        let (target, outcome) = h
            .inject(f)
            .unwrap_or_else(|e| ("-".into(), format!("HARNESS STEP FAILED: {e}")));
        h.note(&format!(
            "{} {target} (hold {} ms): {outcome}",
            f.kind.name(),
            f.hold_ms
        ));
        injected.push(Injected {
            at_ms,
            kind: f.kind,
            target,
            hold_ms: f.hold_ms,
            outcome,
        });
    }
    // Let writes go on a moment after the last fault, then stop them.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop, b"stop").map_err(|e| ChaosError::Io(stop.clone(), e))?;
    workload.wait(WORKLOAD_STOP_TIMEOUT)?;
    h.note("workload stopped; healing");

    // Heal and converge.
    h.heal()?;
    h.wait_healthy("after the faults")?;
    let (check, divergences) = converge(&ctl, users.len())?;
    h.note(&format!("replication check: {divergences} divergences"));

    // Read back and compare.
    let acks = read_acks(&acks_dir)?;
    let rb = dir.join("readback.py");
    std::fs::write(&rb, READBACK_PY).map_err(|e| ChaosError::Io(rb.clone(), e))?;
    let out = procs::wait_output(
        Command::new("python3")
            .arg(&rb)
            .arg(proxy.imap.to_string())
            .args(users.iter().map(|(u, p)| format!("{u}:{p}")))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ChaosError::Spawn("python3 readback.py", e))?,
        Duration::from_secs(300),
    )
    .ok_or_else(|| ChaosError::Step("readback timed out".into()))?;
    std::fs::write(dir.join("readback.json"), &out.stdout)
        .map_err(|e| ChaosError::Io(dir.join("readback.json"), e))?;
    let seen: BTreeMap<String, Mailbox> = serde_json::from_slice(&out.stdout).map_err(|e| {
        ChaosError::Step(format!(
            "readback: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let mut findings = history::check_messages(&acks, &seen);
    let hist = ctl.json(&["history", "--limit", "100000"])?;
    let changes: Vec<RoleChange> = serde_json::from_value(hist["history"].clone())
        .map_err(|e| ChaosError::Step(format!("history: {e}: {hist}")))?;
    let mut store_of = BTreeMap::new();
    for s in h.stores()? {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        for x in std::iter::once(&s["master"]).chain(s["replicas"].as_array().into_iter().flatten())
        {
            if let Some(x) = x.as_str() {
                store_of.insert(x.to_string(), id.clone());
            }
        }
    }
    drop(proxy);
    let sessions = history::parse_proxy_sessions(
        &std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default(),
    );
    history::check_epochs(&acks, &changes, &sessions, &store_of, &mut findings);

    let mut acknowledged = BTreeMap::new();
    let (mut refused, mut client_errors) = (0, 0);
    for a in &acks {
        if a.op == "summary" {
            refused += a.refused.unwrap_or(0);
            client_errors += a.errors.unwrap_or(0);
        } else {
            let k = match a.op.as_str() {
                "append" => "imap_append",
                "deliver" => "lmtp_delivery",
                "flag" => "imap_flag",
                "expunge" => "imap_expunge",
                o => o,
            };
            *acknowledged.entry(k.to_string()).or_insert(0) += 1;
        }
    }
    let mut faults = BTreeMap::new();
    let mut not_injected = BTreeMap::new();
    for i in &injected {
        let map = if NOT_INJECTED.iter().any(|n| i.outcome.starts_with(n)) {
            &mut not_injected
        } else {
            &mut faults
        };
        *map.entry(i.kind.name().to_string()).or_insert(0) += 1;
    }
    let report = Report {
        seed: opts.seed,
        duration_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
        users: users.len(),
        acknowledged,
        refused,
        client_errors,
        faults,
        not_injected,
        injected,
        messages_verified: findings.verified,
        messages_lost: findings.lost.len() as u64,
        divergences,
        check,
        findings,
        dir: dir.clone(),
    };
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| ChaosError::Io(dir.join("report.json"), e))?;
    std::fs::write(dir.join("report.txt"), report.text())
        .map_err(|e| ChaosError::Io(dir.join("report.txt"), e))?;
    for s in &mut h.sups {
        s.stop();
    }
    h.relays.clear();
    drop(h);
    Ok(report)
}

/// The workload process; killed if still running when dropped.
struct Workload(Option<Child>);

impl Workload {
    fn wait(&mut self, limit: Duration) -> Result<(), ChaosError> {
        let Some(mut c) = self.0.take() else {
            return Ok(());
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(ChaosError::Step(format!(
                        "the workload failed: {status} (see workload.err)"
                    )))
                };
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                return Err(ChaosError::Step("the workload did not stop".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_acks(dir: &Path) -> Result<Vec<Ack>, ChaosError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| ChaosError::Io(dir.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| ChaosError::Io(f.clone(), e))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let a: Ack = serde_json::from_str(line)
                .map_err(|e| ChaosError::Step(format!("{}: {e}: {line}", f.display())))?;
            out.push(a);
        }
    }
    Ok(out)
}

/// `slotmail check --all --full` until it reports no divergence and no
/// lagging user (replication catching up after the faults), at most
/// `SETTLE_TIMEOUT`; the last report and its divergences.
fn converge(ctl: &Ctl, users: usize) -> Result<(Value, u64), ChaosError> {
    let start = Instant::now();
    loop {
        let out = procs::wait_output(
            Command::new(&ctl.slotmail)
                .arg("check")
                .arg("--cluster")
                .arg(&ctl.cluster)
                .args(["--all", "--full", "--json", "--no-progress"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| ChaosError::Spawn("slotmail check", e))?,
            Duration::from_secs(300),
        )
        .ok_or_else(|| ChaosError::Step("the check timed out".into()))?;
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let clean = out.status.code() == Some(0)
            && doc["diverged"] == 0
            && doc["lagging"] == 0
            && doc["failures"].as_array().is_some_and(|f| f.is_empty())
            && doc["users_full"] == users;
        if clean || start.elapsed() > SETTLE_TIMEOUT {
            let diverged = doc["diverged"].as_u64().unwrap_or(0)
                + doc["lagging"].as_u64().unwrap_or(0)
                + doc["failures"].as_array().map_or(1, |f| f.len() as u64);
            return Ok((doc, if clean { 0 } else { diverged.max(1) }));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run D: the data kept aside by each rebuild filled the 512 MiB
    /// volume of `disk_full` for good. The harness deletes a slot's kept
    /// copies, and only that slot's, once its reconcile and rebuild are done.
    #[test]
    fn regression_kept_aside_data_of_rebuilds_filled_the_small_disk() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "m3-1",
            "m3-1.before-rebuild-1795963165050",
            "m3-1.before-rebuild-1795963349701",
            "m3-10.before-rebuild-1795963410142",
            "m3-2.before-rebuild-1795963166527",
        ];
        for n in names {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let kept = kept_aside(&dir.path().join("m3-1"));
        assert_eq!(
            kept,
            vec![
                dir.path().join("m3-1.before-rebuild-1795963165050"),
                dir.path().join("m3-1.before-rebuild-1795963349701"),
            ]
        );
        assert!(kept_aside(&dir.path().join("m3-3")).is_empty());
    }
}
