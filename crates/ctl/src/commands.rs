//! `ctl init`, `machine`, `slot`, `plan` and `store`.

use crate::cluster::{Cluster, InitOptions, PortScheme};
use crate::control::{CLIENT_TIMEOUT, ControlRequest, ControlResponse, control_request};
use crate::output::{Table, or_dash, short_ms};
use crate::status::{probe_slots, supervisors};
use crate::{CtlError, Ctx, Exit, InitArgs, MachineCtl, PlanArgs, Report, SlotCtl, StoreCtl};
use serde_json::json;
use slotmail_directory::{Directory, Machine, Slot, SqliteDirectory, StoreSpec, Topology};
use slotmail_slot::admin::{Request, Response, admin_request};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Most slots one `slot add` creates.
pub const SLOT_ADD_COUNT_MAX: u32 = 1_000;
/// How long `slot start`/`restart` waits for the slot's admin socket.
pub const START_WAIT: Duration = Duration::from_secs(30);

fn ok(text: String, json: serde_json::Value) -> Result<Report, CtlError> {
    Ok(Report {
        text,
        json,
        exit: Exit::Ok,
    })
}

pub(crate) fn init(file: &Path, args: &InitArgs) -> Result<Report, CtlError> {
    let options = InitOptions {
        name: args.name.clone(),
        ports: PortScheme {
            imap: args.imap_port,
            lmtp: args.lmtp_port,
            sync: args.sync_port,
            slots_per_machine_max: args.slots_per_machine_max,
        },
        allow_plaintext_auth: args.allow_plaintext_auth,
    };
    // Refuse before writing anything if the directory exists already.
    let prospective = Cluster::parse(
        &format!(
            "version = 1\nname = {:?}\ndirectory = \"directory.db\"\nsecret_file = \"cluster.secret\"\nslots_dir = \"slots\"\nstate_dir = \"state\"\n",
            args.name
        ),
        file,
    )?;
    if prospective.directory.exists() {
        return Err(CtlError::Usage(format!(
            "{} exists already; refusing to overwrite a cluster's directory",
            prospective.directory.display()
        )));
    }
    let cluster = Cluster::init(file, &options)?;
    SqliteDirectory::create(&cluster.directory)?;
    let text = format!(
        "created cluster {name}\n  cluster file  {file}\n  directory     {dir}\n  secret        {secret} (mode 0600)\n  slots         {slots}\n  state         {state}\n  ports         IMAP {imap}+, LMTP {lmtp}+, sync {sync}+ (slot i of a machine: base + i - 1; at most {max} slots per machine)\n",
        name = cluster.name,
        file = cluster.file.display(),
        dir = cluster.directory.display(),
        secret = cluster.secret_file.display(),
        slots = cluster.slots_dir.display(),
        state = cluster.state_dir.display(),
        imap = cluster.ports.imap,
        lmtp = cluster.ports.lmtp,
        sync = cluster.ports.sync,
        max = cluster.ports.slots_per_machine_max,
    );
    ok(
        text,
        json!({
            "cluster": cluster.name,
            "file": cluster.file,
            "directory": cluster.directory,
            "secret_file": cluster.secret_file,
            "slots_dir": cluster.slots_dir,
            "state_dir": cluster.state_dir,
            "ports": cluster.ports,
        }),
    )
}

pub(crate) fn machine(ctx: &Ctx, cmd: MachineCtl) -> Result<Report, CtlError> {
    let d = &ctx.directory;
    match cmd {
        MachineCtl::Add { name, address } => {
            let m = Machine {
                name: name.clone(),
                address,
            };
            d.add_machine(&m)?;
            ok(
                format!("added machine {name} ({address})\n"),
                json!({"added": m}),
            )
        }
        MachineCtl::Remove { name } => {
            if let Some(refusal) = crate::rebalance::machine_remove_refusal(&d.snapshot()?, &name) {
                return Err(refusal);
            }
            d.remove_machine(&name)?;
            ok(
                format!("removed machine {name}\n"),
                json!({"removed": name}),
            )
        }
        MachineCtl::List => {
            let t = d.snapshot()?;
            let masters = t.masters_per_machine();
            let names: Vec<String> = t.machines.keys().cloned().collect();
            let sups = supervisors(&ctx.cluster, &names);
            let mut table = Table::new(&["MACHINE", "ADDRESS", "SLOTS", "MASTERS", "SUPERVISOR"]);
            let mut list = Vec::new();
            for m in t.machines.values() {
                let slots: Vec<&str> = t.slots_on(&m.name).map(|s| s.id.as_str()).collect();
                let sup = sups.get(&m.name).and_then(|s| s.as_ref());
                let sup_text = match sup {
                    Some(s) => format!("running (pid {}, {} slots)", s.pid, s.slots.len()),
                    None => "not running".into(),
                };
                table.row(vec![
                    m.name.clone(),
                    m.address.to_string(),
                    slots.len().to_string(),
                    masters
                        .get(m.name.as_str())
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                    sup_text,
                ]);
                list.push(json!({
                    "name": m.name,
                    "address": m.address,
                    "slots": slots,
                    "masters": masters.get(m.name.as_str()).copied().unwrap_or(0),
                    "supervisor": sup.map(|s| json!({"pid": s.pid, "slots": s.slots.len()})),
                }));
            }
            let text = if table.is_empty() {
                "no machines (add one with `slotmail ctl machine add NAME --address IP`)\n".into()
            } else {
                table.render()
            };
            ok(text, json!({"machines": list}))
        }
    }
}

/// The lowest slot numbers of `machine` whose id and ports are free.
fn allocate_slots(
    cluster: &Cluster,
    t: &Topology,
    machine: &str,
    count: u32,
    weight: u32,
) -> Result<Vec<Slot>, CtlError> {
    if count == 0 || count > SLOT_ADD_COUNT_MAX {
        return Err(CtlError::Usage(format!(
            "--count must be 1 to {SLOT_ADD_COUNT_MAX}"
        )));
    }
    if !t.machines.contains_key(machine) {
        return Err(CtlError::Directory(
            slotmail_directory::DirectoryError::UnknownMachine(machine.to_string()),
        ));
    }
    let used_ports: std::collections::BTreeSet<u16> = t
        .slots_on(machine)
        .flat_map(|s| [s.imap_port, s.lmtp_port, s.sync_port])
        .collect();
    let mut out = Vec::new();
    let max = u32::from(cluster.ports.slots_per_machine_max);
    for index in 1..=max {
        if out.len() == count as usize {
            break;
        }
        let id = slotmail_directory::placement::slot_id(machine, index);
        let ports = cluster.ports.ports(index).expect("index within the scheme");
        if t.slots.contains_key(&id)
            || [ports.imap, ports.lmtp, ports.sync]
                .iter()
                .any(|p| used_ports.contains(p))
        {
            continue;
        }
        out.push(Slot {
            data_dir: format!("{machine}/{id}"),
            id,
            machine: machine.to_string(),
            imap_port: ports.imap,
            lmtp_port: ports.lmtp,
            sync_port: ports.sync,
            weight,
        });
    }
    if out.len() < count as usize {
        return Err(CtlError::Usage(format!(
            "machine {machine} has room for {} more slot(s) under the port scheme \
             (slots_per_machine_max = {max} in {}), not {count}",
            out.len(),
            cluster.file.display()
        )));
    }
    Ok(out)
}

pub(crate) fn slot(ctx: &Ctx, cmd: SlotCtl) -> Result<Report, CtlError> {
    let d = &ctx.directory;
    match cmd {
        SlotCtl::Add {
            machine,
            count,
            weight,
        } => {
            let t = d.snapshot()?;
            let slots = allocate_slots(&ctx.cluster, &t, &machine, count, weight)?;
            // Validate every slot before adding any.
            for s in &slots {
                slotmail_directory::model::validate_slot(s)?;
            }
            let mut added = Vec::new();
            for s in &slots {
                if let Err(e) = d.add_slot(s) {
                    if added.is_empty() {
                        return Err(e.into());
                    }
                    return Err(CtlError::Failed(format!(
                        "added {} but then: {e}",
                        added.join(" ")
                    )));
                }
                added.push(s.id.clone());
            }
            let address = t.machines[&machine].address;
            let mut text = String::new();
            for s in &slots {
                let _ = writeln!(
                    text,
                    "added slot {} on {machine}: IMAP {address}:{}, LMTP {address}:{}, sync {address}:{}, data {}",
                    s.id,
                    s.imap_port,
                    s.lmtp_port,
                    s.sync_port,
                    ctx.cluster.slot_data_dir(&s.data_dir).display()
                );
            }
            ok(text, json!({"added": slots}))
        }
        SlotCtl::Remove { id } => {
            d.remove_slot(&id)?;
            ok(format!("removed slot {id}\n"), json!({"removed": id}))
        }
        SlotCtl::List => slot_list(ctx),
        SlotCtl::Start { id } => slot_control(ctx, &id, ControlRequest::Start { slot: id.clone() }),
        SlotCtl::Stop { id } => slot_control(ctx, &id, ControlRequest::Stop { slot: id.clone() }),
        SlotCtl::Restart { id } => {
            slot_control(ctx, &id, ControlRequest::Restart { slot: id.clone() })
        }
        SlotCtl::Scrub { id } => {
            let t = d.snapshot()?;
            let slot = t
                .slots
                .get(&id)
                .ok_or_else(|| slotmail_directory::DirectoryError::UnknownSlot(id.clone()))?;
            let socket = ctx.cluster.admin_socket(&slot.data_dir);
            let reply =
                admin_request(&socket, &Request::Scrub).map_err(|source| CtlError::Admin {
                    slot: id.clone(),
                    source,
                })?;
            let Response::Scrub { report } = reply else {
                return Err(CtlError::Failed(format!(
                    "slot {id} answered scrub with {reply:?}"
                )));
            };
            let mut text = String::new();
            for f in &report.findings {
                let _ = writeln!(text, "{f}");
            }
            let _ = writeln!(
                text,
                "slot {id}: scrubbed {} users, {} messages, {} bytes verified in {}: {}",
                report.users,
                report.messages,
                report.bytes_verified,
                short_ms(report.elapsed_ms),
                if report.clean {
                    "clean".to_string()
                } else {
                    format!("DAMAGE FOUND ({} findings)", report.damage)
                }
            );
            Ok(Report {
                text,
                exit: if report.clean {
                    Exit::Ok
                } else {
                    Exit::Findings
                },
                json: json!({"slot": id, "scrub": report}),
            })
        }
    }
}

fn slot_list(ctx: &Ctx) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let names: Vec<String> = t.machines.keys().cloned().collect();
    let sups = supervisors(&ctx.cluster, &names);
    let probes = probe_slots(&ctx.cluster, t.slots.values());
    let mut table = Table::new(&[
        "SLOT", "MACHINE", "IMAP", "LMTP", "SYNC", "STORE", "ROLE", "PROCESS", "ADMIN",
    ]);
    let mut list = Vec::new();
    for s in t.slots.values() {
        let address = t.machines.get(&s.machine).map(|m| m.address);
        let store = t.store_of_slot(&s.id);
        let role = store.map(|st| {
            if st.master() == s.id {
                "master"
            } else if t.is_fenced(&s.id) {
                "fenced"
            } else {
                "replica"
            }
        });
        let process = sups
            .get(&s.machine)
            .and_then(|x| x.as_ref())
            .and_then(|x| x.slots.iter().find(|p| p.id == s.id));
        let probe = probes.get(&s.id);
        let admin_text = match probe {
            Some(Ok(st)) => format!(
                "up {}{}",
                short_ms(st.uptime_ms),
                if st.read_only { " ro" } else { "" }
            ),
            _ => "down".into(),
        };
        let addr = |p: u16| address.map(|a| format!("{a}:{p}")).unwrap_or_default();
        table.row(vec![
            s.id.clone(),
            s.machine.clone(),
            addr(s.imap_port),
            addr(s.lmtp_port),
            addr(s.sync_port),
            or_dash(store.map(|st| st.id.clone())),
            or_dash(role),
            process
                .map(|p| match p.pid {
                    Some(pid) => format!("{} {pid}", p.state.as_str()),
                    None => p.state.as_str().to_string(),
                })
                .unwrap_or_else(|| "-".into()),
            admin_text,
        ]);
        list.push(json!({
            "id": s.id,
            "machine": s.machine,
            "address": address,
            "imap_port": s.imap_port,
            "lmtp_port": s.lmtp_port,
            "sync_port": s.sync_port,
            "weight": s.weight,
            "data_dir": ctx.cluster.slot_data_dir(&s.data_dir),
            "store": store.map(|st| &st.id),
            "role": role,
            "process": process,
            "admin": match probe {
                Some(Ok(st)) => json!(st),
                Some(Err(e)) => json!({"error": e}),
                None => serde_json::Value::Null,
            },
        }));
    }
    let text = if table.is_empty() {
        "no slots (add some with `slotmail ctl slot add MACHINE --count N`)\n".into()
    } else {
        table.render()
    };
    ok(text, json!({"slots": list}))
}

fn slot_control(ctx: &Ctx, id: &str, request: ControlRequest) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let slot = t
        .slots
        .get(id)
        .ok_or_else(|| slotmail_directory::DirectoryError::UnknownSlot(id.to_string()))?;
    let socket = ctx.cluster.machine_socket(&slot.machine);
    let wants_running = !matches!(request, ControlRequest::Stop { .. });
    let verb = match request {
        ControlRequest::Start { .. } => "started",
        ControlRequest::Stop { .. } => "stopped",
        _ => "restarted",
    };
    let reply = control_request(&slot.machine, &socket, &request, CLIENT_TIMEOUT)?;
    let ControlResponse::Slot { slot: process } = reply else {
        return Err(CtlError::Failed(format!(
            "machine {}'s supervisor answered {reply:?}",
            slot.machine
        )));
    };
    let mut text = String::new();
    let mut answering = None;
    if wants_running {
        // Wait until the slot answers on its admin socket.
        let admin = ctx.cluster.admin_socket(&slot.data_dir);
        let start = Instant::now();
        loop {
            match slotmail_slot::admin::admin_request_with_timeout(
                &admin,
                &Request::Status,
                Duration::from_secs(2),
            ) {
                Ok(Response::Status { status }) => {
                    answering = Some(status);
                    break;
                }
                _ if start.elapsed() >= START_WAIT => break,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        match &answering {
            Some(st) => {
                let _ = writeln!(
                    text,
                    "{verb} slot {id} on {}: pid {}, answering on its admin socket ({} users{})",
                    slot.machine,
                    st.pid,
                    st.users,
                    if st.read_only { ", read-only" } else { "" }
                );
            }
            None => {
                return Err(CtlError::Failed(format!(
                    "slot {id} was {verb} (process {}) but does not answer on {} after {} s; see {}",
                    process.state.as_str(),
                    admin.display(),
                    START_WAIT.as_secs(),
                    process.log.display()
                )));
            }
        }
    } else {
        let _ = writeln!(
            text,
            "{verb} slot {id} on {}{}",
            slot.machine,
            process
                .last_exit
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    ok(
        text,
        json!({"slot": id, "machine": slot.machine, "process": process, "admin": answering}),
    )
}

/// How many slots each machine has in the planner's numbering: the largest
/// `s` such that every machine has slots 1..=s (by the planner's ids).
fn uniform_slot_count(t: &Topology) -> u32 {
    let mut s = 0u32;
    loop {
        let next = s + 1;
        let all = t.machines.keys().all(|m| {
            t.slots
                .contains_key(&slotmail_directory::placement::slot_id(m, next))
        });
        if !all || t.machines.is_empty() {
            return s;
        }
        s = next;
    }
}

pub(crate) fn plan(ctx: &Ctx, args: &PlanArgs) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let machines: Vec<String> = t.machines.keys().cloned().collect();
    let s = uniform_slot_count(&t);
    if s == 0 {
        return Err(CtlError::Usage(
            "every machine needs slots numbered from 1 before a plan (see `slotmail ctl slot add`)"
                .into(),
        ));
    }
    let plan = slotmail_directory::plan(&machines, s, args.replicas)?;
    let planned: std::collections::BTreeSet<String> = plan
        .stores
        .iter()
        .flat_map(|st| st.slots.iter().map(|x| x.id.clone()))
        .chain(plan.unused.iter().map(|x| x.id.clone()))
        .collect();
    let outside: Vec<&str> = t
        .slots
        .keys()
        .filter(|id| !planned.contains(*id))
        .map(String::as_str)
        .collect();
    let mut text = plan.render_text();
    if !outside.is_empty() {
        let _ = writeln!(
            text,
            "\nnot in the plan (machines have {s} slot(s) each in common): {}",
            outside.join(" ")
        );
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&plan.to_json()).expect("plans are JSON");
    json["outside_plan"] = json!(outside);
    if !args.apply {
        json["applied"] = json!(false);
        let _ = writeln!(
            text,
            "\n(not applied: run with --apply to create these stores)"
        );
        return ok(text, json);
    }
    // Refuse before creating anything.
    for st in &plan.stores {
        if t.stores.contains_key(&st.id) {
            return Err(CtlError::Usage(format!(
                "store {} exists already: --apply creates the stores of a new cluster",
                st.id
            )));
        }
        for slot in &st.slots {
            if let Some(owner) = t.store_of_slot(&slot.id) {
                return Err(CtlError::Usage(format!(
                    "slot {} belongs to store {} already: --apply creates the stores of a new cluster",
                    slot.id, owner.id
                )));
            }
        }
    }
    let mut created = Vec::new();
    for st in &plan.stores {
        let spec = StoreSpec {
            id: st.id.clone(),
            slots: st.slots.iter().map(|x| x.id.clone()).collect(),
            sync: false,
        };
        match ctx.directory.create_store(&spec, "plan --apply") {
            Ok(store) => created.push(store),
            Err(e) if created.is_empty() => return Err(e.into()),
            Err(e) => {
                return Err(CtlError::Failed(format!(
                    "created {} store(s) ({}), then store {}: {e}",
                    created.len(),
                    created
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    st.id
                )));
            }
        }
    }
    let _ = writeln!(text, "\napplied: created {} stores", created.len());
    json["applied"] = json!(true);
    json["created"] = json!(created);
    ok(text, json)
}

pub(crate) fn store(ctx: &Ctx, cmd: StoreCtl) -> Result<Report, CtlError> {
    let d = &ctx.directory;
    match cmd {
        StoreCtl::Create { id, slots, sync } => {
            let store = d.create_store(
                &StoreSpec {
                    id: id.clone(),
                    slots,
                    sync,
                },
                "store create",
            )?;
            ok(
                format!(
                    "created store {id}: master {}, replicas {}, epoch {}\n",
                    store.master(),
                    store.replicas().join(" "),
                    store.epoch
                ),
                json!({"created": store}),
            )
        }
        StoreCtl::Remove { id } => {
            d.remove_store(&id)?;
            ok(format!("removed store {id}\n"), json!({"removed": id}))
        }
        StoreCtl::AddReplica { store, slot } => {
            d.add_replica(&store, &slot)?;
            let st = d.snapshot()?.stores.get(&store).cloned();
            ok(
                format!("added replica {slot} to store {store}\n"),
                json!({"store": st}),
            )
        }
        StoreCtl::DropReplica { store, slot } => {
            d.drop_replica(&store, &slot)?;
            let st = d.snapshot()?.stores.get(&store).cloned();
            ok(
                format!("dropped replica {slot} from store {store}\n"),
                json!({"store": st}),
            )
        }
        StoreCtl::List => {
            let t = d.snapshot()?;
            let users = t.users_per_store();
            let mut table = Table::new(&["STORE", "EPOCH", "MASTER", "REPLICAS", "USERS", "SYNC"]);
            let mut list = Vec::new();
            for st in t.stores.values() {
                let n = users.get(st.id.as_str()).copied().unwrap_or(0);
                let at = |slot: &str| format!("{slot}@{}", t.machine_of(slot).unwrap_or("?"));
                table.row(vec![
                    st.id.clone(),
                    st.epoch.to_string(),
                    at(st.master()),
                    st.replicas()
                        .iter()
                        .map(|r| at(r))
                        .collect::<Vec<_>>()
                        .join(" "),
                    n.to_string(),
                    if st.sync { "durable" } else { "-" }.into(),
                ]);
                list.push(json!({
                    "id": st.id,
                    "epoch": st.epoch,
                    "master": st.master(),
                    "replicas": st.replicas(),
                    "users": n,
                    "sync": st.sync,
                }));
            }
            let text = if table.is_empty() {
                "no stores (create them with `slotmail ctl plan --replicas 1 --apply` or `slotmail ctl store create`)\n".into()
            } else {
                table.render()
            };
            ok(text, json!({"stores": list}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_numbers_fill_gaps_and_respect_the_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::init(
            &dir.path().join("cluster.toml"),
            &InitOptions {
                name: "t".into(),
                ports: PortScheme {
                    slots_per_machine_max: 3,
                    ..PortScheme::default()
                },
                allow_plaintext_auth: false,
            },
        )
        .unwrap();
        let mut t = Topology::default();
        t.machines.insert(
            "a".into(),
            Machine {
                name: "a".into(),
                address: "127.0.0.11".parse().unwrap(),
            },
        );
        let first = allocate_slots(&cluster, &t, "a", 1, 1).unwrap();
        assert_eq!(first[0].id, "a1");
        assert_eq!(
            (first[0].imap_port, first[0].lmtp_port, first[0].sync_port),
            (1143, 2424, 2500)
        );
        assert_eq!(first[0].data_dir, "a/a1");
        // a2 exists: the next two are a1 and a3.
        let mut a2 = first[0].clone();
        a2.id = "a2".into();
        a2.imap_port = 1144;
        a2.lmtp_port = 2425;
        a2.sync_port = 2501;
        t.slots.insert("a2".into(), a2);
        let ids: Vec<String> = allocate_slots(&cluster, &t, "a", 2, 1)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["a1", "a3"]);
        let full = allocate_slots(&cluster, &t, "a", 3, 1).unwrap_err();
        assert_eq!(full.exit(), Exit::Usage);
        assert!(full.to_string().contains("room for 2"), "{full}");
        assert!(allocate_slots(&cluster, &t, "zz", 1, 1).is_err());
        assert!(allocate_slots(&cluster, &t, "a", 0, 1).is_err());
    }
}
