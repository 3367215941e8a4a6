//! `ctl status`: one table of every store, in the spirit of `patronictl
//! list` — master and replicas (each with whether its admin socket
//! answers and whether its read-only switch matches its role), epoch,
//! users, replication lag (from the master's `DATA/replication-status.json`,
//! written by replication; `-` when absent), and the last check recorded in
//! the directory. Exit 1 when any slot of a store is down, in the wrong
//! role, the master reports a replica unreachable, or the last check found
//! differences.
//!
//! Also the probes `slot list` and `machine list` share: slots' admin
//! sockets (in parallel, bounded) and machines' supervisors.

use crate::cluster::Cluster;
use crate::control::{
    CLIENT_TIMEOUT, ControlRequest, ControlResponse, SlotProcess, control_request,
};
use crate::output::{Table, or_dash, short_ms};
use crate::{CtlError, Ctx, Exit, Report};
use serde::Serialize;
use serde_json::json;
use slotmail_directory::{CheckStatus, Directory, Slot};
use slotmail_slot::admin::{Request, Response, SlotStatus, admin_request_with_timeout};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one slot's admin socket may take to answer a status probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes run at once, at most.
pub const PROBES_PARALLEL_MAX: usize = 32;
/// A replication status older than this is shown as stale.
pub const REPLICATION_STATUS_STALE_MS: u64 = 10_000;
/// Largest replication status file read, in bytes.
pub const REPLICATION_STATUS_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Ask every slot's admin socket for its status, in parallel.
pub(crate) fn probe_slots<'a>(
    cluster: &Cluster,
    slots: impl Iterator<Item = &'a Slot>,
) -> BTreeMap<String, Result<SlotStatus, String>> {
    let jobs: Vec<(String, std::path::PathBuf)> = slots
        .map(|s| (s.id.clone(), cluster.admin_socket(&s.data_dir)))
        .collect();
    let chunk = jobs.len().div_ceil(PROBES_PARALLEL_MAX).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, path)| {
                            let r = match admin_request_with_timeout(
                                path,
                                &Request::Status,
                                PROBE_TIMEOUT,
                            ) {
                                Ok(Response::Status { status }) => Ok(status),
                                Ok(other) => Err(format!("unexpected reply {other:?}")),
                                Err(e) => Err(e.to_string()),
                            };
                            (id.clone(), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("probe threads do not panic"))
            .collect()
    })
}

/// One supervisor's view, per machine (`None`: not running).
pub(crate) struct SupervisorView {
    pub pid: u32,
    pub slots: Vec<SlotProcess>,
}

pub(crate) fn supervisors(
    cluster: &Cluster,
    machines: &[String],
) -> BTreeMap<String, Option<SupervisorView>> {
    machines
        .iter()
        .map(|m| {
            let view = match control_request(
                m,
                &cluster.machine_socket(m),
                &ControlRequest::Status,
                CLIENT_TIMEOUT.min(PROBE_TIMEOUT),
            ) {
                Ok(ControlResponse::Slots { pid, slots, .. }) => {
                    Some(SupervisorView { pid, slots })
                }
                _ => None,
            };
            (m.clone(), view)
        })
        .collect()
}

/// A replica as the master's replication status reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicaLag {
    pub state: Option<String>,
    pub lag_ms: Option<u64>,
    pub pending_users: Option<u64>,
    pub last_error: Option<String>,
    /// Users the mass-deletion guard holds until `ctl repl confirm`.
    pub held: Vec<HeldUser>,
}

/// A user replication holds, as the master's status reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HeldUser {
    pub user: String,
    pub reason: String,
    pub since_unix_ms: Option<u64>,
}

/// What the master's `replication-status.json` says, read leniently (the
/// file belongs to replication; unknown fields are ignored).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicationView {
    pub age_ms: Option<u64>,
    pub stale: bool,
    pub epoch: Option<u64>,
    pub replicas: BTreeMap<String, ReplicaLag>,
}

pub(crate) fn read_replication(cluster: &Cluster, data_dir: &str) -> Option<ReplicationView> {
    let path = cluster.replication_status_file(data_dir);
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, REPLICATION_STATUS_BYTES_MAX),
        &mut text,
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let age_ms = v["taken_at_unix_ms"]
        .as_u64()
        .map(|t| now.saturating_sub(t));
    let mut replicas = BTreeMap::new();
    if let Some(list) = v["replicas"].as_array() {
        for r in list {
            let Some(slot) = r["slot"].as_str() else {
                continue;
            };
            replicas.insert(
                slot.to_string(),
                ReplicaLag {
                    state: r["state"].as_str().map(str::to_string),
                    lag_ms: r["lag_ms"].as_u64(),
                    pending_users: r["pending_users"]
                        .as_u64()
                        .or_else(|| r["pending"].as_u64()),
                    last_error: r["last_error"].as_str().map(str::to_string),
                    held: r["held"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|h| {
                            Some(HeldUser {
                                user: h["user"].as_str()?.to_string(),
                                reason: h["reason"].as_str().unwrap_or("").to_string(),
                                since_unix_ms: h["since_unix_ms"].as_u64(),
                            })
                        })
                        .collect(),
                },
            );
        }
    }
    Some(ReplicationView {
        stale: age_ms.is_some_and(|a| a > REPLICATION_STATUS_STALE_MS),
        age_ms,
        epoch: v["epoch"].as_u64(),
        replicas,
    })
}

/// One slot of a store in the status.
#[derive(Debug, Clone, Serialize)]
struct SlotHealth {
    slot: String,
    machine: String,
    role: &'static str,
    /// The admin socket answered.
    healthy: bool,
    read_only: Option<bool>,
    pid: Option<u32>,
    uptime_ms: Option<u64>,
    error: Option<String>,
    /// For replicas: what the master reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<ReplicaLag>,
}

pub(crate) fn status(ctx: &Ctx) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let in_stores: Vec<&Slot> = t
        .stores
        .values()
        .flat_map(|s| s.slots.iter())
        .filter_map(|id| t.slots.get(id))
        .collect();
    let probes = probe_slots(&ctx.cluster, in_stores.iter().copied());
    let users = t.users_per_store();
    let mut table = Table::new(&[
        "STORE", "EPOCH", "MASTER", "REPLICAS", "USERS", "LAG", "CHECK", "HEALTH",
    ]);
    let mut stores = Vec::new();
    let mut problems_total = 0usize;
    for st in t.stores.values() {
        let master_slot = &t.slots[st.master()];
        let repl = probes
            .get(st.master())
            .and_then(|p| p.as_ref().ok())
            .and_then(|_| read_replication(&ctx.cluster, &master_slot.data_dir));
        let mut problems = Vec::new();
        let mut slots = Vec::new();
        for (i, id) in st.slots.iter().enumerate() {
            let role = if i == 0 { "master" } else { "replica" };
            let slot = &t.slots[id];
            let probe = probes.get(id);
            let (healthy, status, error) = match probe {
                Some(Ok(s)) => (true, Some(s), None),
                Some(Err(e)) => (false, None, Some(e.clone())),
                None => (false, None, Some("not probed".into())),
            };
            if !healthy {
                problems.push(format!("{id} ({role}) does not answer"));
            }
            if let Some(s) = status {
                let want_ro = i > 0;
                if s.read_only != want_ro {
                    problems.push(format!(
                        "{id} is {} but should be {}",
                        if s.read_only { "read-only" } else { "writable" },
                        if want_ro {
                            "read-only (replica)"
                        } else {
                            "writable (master)"
                        }
                    ));
                }
            }
            let replication = if i > 0 {
                repl.as_ref().and_then(|r| r.replicas.get(id).cloned())
            } else {
                None
            };
            if let Some(r) = &replication
                && r.state.as_deref() == Some("waiting")
                && r.last_error.is_some()
            {
                problems.push(format!(
                    "master cannot reach {id}: {}",
                    r.last_error.as_deref().unwrap_or("")
                ));
            }
            if let Some(r) = &replication {
                for h in &r.held {
                    problems.push(format!(
                        "replication of {} to {id} is held: {} (`slotmail ctl repl confirm {} {}` releases it)",
                        h.user, h.reason, st.id, h.user
                    ));
                }
            }
            slots.push(SlotHealth {
                slot: id.clone(),
                machine: slot.machine.clone(),
                role,
                healthy,
                read_only: status.map(|s| s.read_only),
                pid: status.map(|s| s.pid),
                uptime_ms: status.map(|s| s.uptime_ms),
                error,
                replication,
            });
        }
        if let Some(c) = &st.last_check
            && c.status != CheckStatus::Ok
        {
            problems.push(format!("last check: {} ({})", c.status.as_str(), c.summary));
        }
        let lag_ms = repl
            .as_ref()
            .filter(|r| !r.stale)
            .and_then(|r| r.replicas.values().filter_map(|x| x.lag_ms).max());
        let lag_text = match &repl {
            None => "-".to_string(),
            Some(r) if r.stale => "stale".to_string(),
            Some(_) => or_dash(lag_ms.map(short_ms)),
        };
        let mark = |s: &SlotHealth| {
            format!(
                "{}@{}{}",
                s.slot,
                s.machine,
                if s.healthy { "" } else { " DOWN" }
            )
        };
        table.row(vec![
            st.id.clone(),
            st.epoch.to_string(),
            mark(&slots[0]),
            slots[1..].iter().map(mark).collect::<Vec<_>>().join(" "),
            users.get(st.id.as_str()).copied().unwrap_or(0).to_string(),
            lag_text,
            or_dash(st.last_check.as_ref().map(|c| c.status.as_str())),
            if problems.is_empty() {
                "ok".into()
            } else {
                format!("{} problem(s)", problems.len())
            },
        ]);
        problems_total += problems.len();
        stores.push(json!({
            "id": st.id,
            "epoch": st.epoch,
            "sync": st.sync,
            "users": users.get(st.id.as_str()).copied().unwrap_or(0),
            "master": slots[0],
            "replicas": slots[1..],
            "lag_ms": lag_ms,
            "replication": repl,
            "last_check": st.last_check,
            "healthy": problems.is_empty(),
            "problems": problems,
        }));
    }
    let mut text = format!(
        "cluster {}: {} machines, {} slots, {} stores, {} users (directory revision {})\n",
        ctx.cluster.name,
        t.machines.len(),
        t.slots.len(),
        t.stores.len(),
        t.users.len(),
        t.revision
    );
    if table.is_empty() {
        text.push_str("no stores\n");
    } else {
        text.push_str(&table.render());
    }
    for s in &stores {
        for p in s["problems"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "{}: {}\n",
                s["id"].as_str().unwrap_or("?"),
                p.as_str().unwrap_or("")
            ));
        }
    }
    let free: Vec<&str> = t.free_slots().iter().map(|s| s.id.as_str()).collect();
    if !free.is_empty() {
        text.push_str(&format!("free slots: {}\n", free.join(" ")));
    }
    // Users being moved (`ctl user move`).
    for m in t.moves.values() {
        text.push_str(&format!(
            "moving: {} from {} to {} ({})\n",
            m.user,
            m.from,
            m.to,
            m.phase.as_str()
        ));
    }
    let moves: Vec<&slotmail_directory::UserMove> = t.moves.values().collect();
    Ok(Report {
        text,
        json: json!({
            "cluster": ctx.cluster.name,
            "revision": t.revision,
            "machines": t.machines.len(),
            "slots": t.slots.len(),
            "users": t.users.len(),
            "stores": stores,
            "free_slots": free,
            "moves": moves,
            "problems": problems_total,
        }),
        exit: if problems_total == 0 {
            Exit::Ok
        } else {
            Exit::Findings
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{InitOptions, PortScheme};

    #[test]
    fn reads_the_replication_status_leniently() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::init(
            &dir.path().join("cluster.toml"),
            &InitOptions {
                name: "t".into(),
                ports: PortScheme::default(),
                allow_plaintext_auth: false,
            },
        )
        .unwrap();
        assert!(read_replication(&cluster, "a/a1").is_none(), "absent: none");
        let file = cluster.replication_status_file("a/a1");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // The shape replication writes (crates/repl, `ReplicationStatus`),
        // with a field this reader does not know.
        let doc = json!({
            "slot": "a1", "store": "s001", "role": "master", "epoch": 2,
            "taken_at_unix_ms": now, "server": null, "future_field": 1,
            "replicas": [
                {"slot": "b1", "address": "127.0.0.12:2500", "state": "rolling",
                 "pending_users": 3, "lag_ms": 12, "last_error": null,
                 "held": [{"user": "ann", "reason": "would expunge 120 of 120", "since_unix_ms": 5}]},
                {"slot": "c1", "state": "waiting", "lag_ms": 900,
                 "last_error": "connection refused"},
            ],
        });
        std::fs::write(&file, doc.to_string()).unwrap();
        let v = read_replication(&cluster, "a/a1").unwrap();
        assert!(!v.stale);
        assert_eq!(v.epoch, Some(2));
        assert_eq!(v.replicas["b1"].lag_ms, Some(12));
        assert_eq!(v.replicas["b1"].pending_users, Some(3));
        assert_eq!(v.replicas["b1"].held[0].user, "ann");
        assert!(v.replicas["c1"].held.is_empty());
        assert_eq!(v.replicas["c1"].state.as_deref(), Some("waiting"));
        assert_eq!(
            v.replicas["c1"].last_error.as_deref(),
            Some("connection refused")
        );
        // An old status is stale; a damaged one is ignored.
        let mut old = doc.clone();
        old["taken_at_unix_ms"] = json!(now - 2 * REPLICATION_STATUS_STALE_MS);
        std::fs::write(&file, old.to_string()).unwrap();
        assert!(read_replication(&cluster, "a/a1").unwrap().stale);
        std::fs::write(&file, "{not json").unwrap();
        assert!(read_replication(&cluster, "a/a1").is_none());
    }
}
