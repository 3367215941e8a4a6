//! `ctl user ...`: accounts live in the master slot of the user's store
//! (created, changed and deleted through its admin socket); the directory
//! records which store each user is in.
//!
//! `user add` creates the account on the master first and records the user
//! in the directory second; if the directory refuses (someone added the
//! same name meanwhile), the account is deleted again, so a refusal leaves
//! both as they were.

use crate::output::{Table, or_dash};
use crate::{CtlError, Ctx, Exit, Report, UserCtl, read_password};
use serde_json::json;
use slotmail_directory::{Directory, DirectoryError, Route, Topology};
use slotmail_slot::admin::{AdminError, ErrorCode, Request, Response, admin_request};
use std::io::Read;

fn ok(text: String, json: serde_json::Value) -> Result<Report, CtlError> {
    Ok(Report {
        text,
        json,
        exit: Exit::Ok,
    })
}

/// The master slot's admin socket for a user's route.
fn master_request(ctx: &Ctx, route: &Route, request: &Request) -> Result<Response, CtlError> {
    let socket = ctx.cluster.admin_socket(&route.master.data_dir);
    admin_request(&socket, request).map_err(|source| CtlError::Admin {
        slot: route.master.id.clone(),
        source,
    })
}

/// The store with the fewest users (ties: the first by id).
fn least_loaded_store(t: &Topology) -> Option<String> {
    t.users_per_store()
        .into_iter()
        .min_by_key(|&(id, n)| (n, id))
        .map(|(id, _)| id.to_string())
}

/// A quota limit as shown: the number, or `unlimited`.
fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), |v| v.to_string())
}

fn parse_limit(what: &str, value: &str) -> Result<Option<u64>, CtlError> {
    if value == "unlimited" {
        return Ok(None);
    }
    value.parse::<u64>().map(Some).map_err(|_| {
        CtlError::Usage(format!(
            "--{what}: a number or \"unlimited\", not {value:?}"
        ))
    })
}

pub(crate) fn user(ctx: &Ctx, cmd: UserCtl, stdin: &mut dyn Read) -> Result<Report, CtlError> {
    let d = &ctx.directory;
    match cmd {
        UserCtl::Add {
            name,
            store,
            password_stdin: _,
            admin,
        } => {
            slotmail_directory::model::validate_user(&name)?;
            let t = d.snapshot()?;
            if let Some(existing) = t.users.get(&name) {
                return Err(DirectoryError::UserExists {
                    user: name,
                    store: existing.clone(),
                }
                .into());
            }
            let store = match store {
                Some(s) => {
                    if !t.stores.contains_key(&s) {
                        return Err(DirectoryError::UnknownStore(s).into());
                    }
                    s
                }
                None => least_loaded_store(&t).ok_or_else(|| {
                    CtlError::Usage(
                        "there are no stores yet (create them with `slotmail ctl plan --replicas 1 --apply`)"
                            .into(),
                    )
                })?,
            };
            let password = read_password(stdin)?;
            let hash = slotmail_store::hash_password(&password)
                .map_err(|e| CtlError::Usage(e.to_string()))?;
            let st = &t.stores[&store];
            let master = t.slots[st.master()].clone();
            let address = t.machines[&master.machine].address;
            let route = Route {
                user: name.clone(),
                store: store.clone(),
                epoch: st.epoch,
                master,
                address,
            };
            let created = master_request(
                ctx,
                &route,
                &Request::CreateUser {
                    name: name.clone(),
                    password_hash: hash,
                    admin,
                },
            )?;
            if let Err(e) = d.assign_user(&name, &store) {
                // Undo the account so the refusal changes nothing.
                let undo = master_request(ctx, &route, &Request::DeleteUser { name: name.clone() });
                if let Err(u) = undo {
                    return Err(CtlError::Failed(format!(
                        "the directory refused user {name} ({e}) and deleting the account again \
                         from slot {} failed too: {u}",
                        route.master.id
                    )));
                }
                return Err(e.into());
            }
            let user_id = match &created {
                Response::User { user } => Some(user.user_id.clone()),
                _ => None,
            };
            ok(
                format!(
                    "added user {name} to store {store} (master {} on {}, IMAP {}:{}, LMTP {}:{})\n",
                    route.master.id,
                    route.master.machine,
                    address,
                    route.master.imap_port,
                    address,
                    route.master.lmtp_port
                ),
                json!({
                    "user": name,
                    "user_id": user_id,
                    "store": store,
                    "master": route.master.id,
                    "machine": route.master.machine,
                    "imap": format!("{}:{}", address, route.master.imap_port),
                    "lmtp": format!("{}:{}", address, route.master.lmtp_port),
                }),
            )
        }
        UserCtl::Delete { name } => {
            let route = d.route(&name)?;
            // A user being moved is refused before any slot is touched.
            if let Some(m) = d.snapshot()?.moves.get(&name) {
                return Err(DirectoryError::UserMoving {
                    user: name,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    phase: m.phase.as_str(),
                }
                .into());
            }
            let note =
                match master_request(ctx, &route, &Request::DeleteUser { name: name.clone() }) {
                    Ok(_) => None,
                    // Already gone from the slot: finish by forgetting it.
                    Err(CtlError::Admin {
                        source:
                            AdminError::Remote {
                                code: ErrorCode::NoSuchUser,
                                ..
                            },
                        ..
                    }) => Some(format!("slot {} had no account {name}", route.master.id)),
                    Err(e) => return Err(e),
                };
            d.remove_user(&name)?;
            let mut text = format!(
                "deleted user {name} (store {}, master {})\n",
                route.store, route.master.id
            );
            if let Some(n) = &note {
                text.push_str(&format!("note: {n}\n"));
            }
            ok(
                text,
                json!({"deleted": name, "store": route.store, "master": route.master.id, "note": note}),
            )
        }
        UserCtl::Passwd {
            name,
            password_stdin: _,
        } => {
            let route = d.route(&name)?;
            let password = read_password(stdin)?;
            let hash = slotmail_store::hash_password(&password)
                .map_err(|e| CtlError::Usage(e.to_string()))?;
            master_request(
                ctx,
                &route,
                &Request::SetPasswordHash {
                    name: name.clone(),
                    password_hash: hash,
                },
            )?;
            ok(
                format!("set the password of {name} (master {})\n", route.master.id),
                json!({"user": name, "master": route.master.id}),
            )
        }
        UserCtl::Quota {
            name,
            bytes,
            messages,
        } => {
            let bytes = parse_limit("bytes", &bytes)?;
            let messages = parse_limit("messages", &messages)?;
            let route = d.route(&name)?;
            master_request(
                ctx,
                &route,
                &Request::SetQuota {
                    name: name.clone(),
                    bytes,
                    messages,
                },
            )?;
            ok(
                format!(
                    "set the quota of {name}: {} bytes, {} messages\n",
                    limit_text(bytes),
                    limit_text(messages)
                ),
                json!({"user": name, "quota_bytes": bytes, "quota_messages": messages}),
            )
        }
        UserCtl::List { store } => {
            let t = d.snapshot()?;
            if let Some(s) = &store
                && !t.stores.contains_key(s)
            {
                return Err(DirectoryError::UnknownStore(s.clone()).into());
            }
            let mut table = Table::new(&["USER", "STORE", "MASTER", "MACHINE"]);
            let mut list = Vec::new();
            for (user, st) in &t.users {
                if store.as_ref().is_some_and(|s| s != st) {
                    continue;
                }
                let master = t.stores.get(st).map(|s| s.master().to_string());
                let machine = master
                    .as_deref()
                    .and_then(|m| t.machine_of(m))
                    .map(str::to_string);
                table.row(vec![
                    user.clone(),
                    st.clone(),
                    or_dash(master.clone()),
                    or_dash(machine.clone()),
                ]);
                list.push(json!({"user": user, "store": st, "master": master, "machine": machine}));
            }
            let text = if table.is_empty() {
                "no users\n".into()
            } else {
                table.render()
            };
            ok(text, json!({"users": list}))
        }
        UserCtl::Show { name } => {
            let route = d.route(&name)?;
            let t = d.snapshot()?;
            let replicas: Vec<serde_json::Value> = t
                .stores
                .get(&route.store)
                .map(|s| s.replicas().to_vec())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| {
                    let s = t.slots.get(r)?;
                    let a = t.machines.get(&s.machine)?.address;
                    Some(json!({"slot": r, "machine": s.machine, "imap": format!("{a}:{}", s.imap_port)}))
                })
                .collect();
            let info = master_request(ctx, &route, &Request::UserInfo { name: name.clone() });
            let (info_json, info_text) = match info {
                Ok(Response::UserInfo { info }) => {
                    let text = format!(
                        "  mailboxes {}, messages {}, {} bytes used; quota {} bytes, {} messages\n",
                        info.mailboxes,
                        info.messages,
                        info.quota_used_bytes,
                        limit_text(info.user.quota_bytes),
                        limit_text(info.user.quota_messages),
                    );
                    (json!(info), text)
                }
                Ok(other) => (
                    json!({"error": format!("unexpected reply {other:?}")}),
                    String::new(),
                ),
                Err(e) => (
                    json!({"error": e.to_string()}),
                    format!("  (the master does not answer: {e})\n"),
                ),
            };
            let a = route.address;
            let m = &route.master;
            let moving = t.moves.get(&name);
            let move_text = moving
                .map(|mv| {
                    format!(
                        "  moving    from {} to {} ({})\n",
                        mv.from,
                        mv.to,
                        mv.phase.as_str()
                    )
                })
                .unwrap_or_default();
            let text = format!(
                "user {name}\n  store     {} (epoch {})\n  master    {} on {} ({a})\n  IMAP      {a}:{}\n  LMTP      {a}:{}\n  sync      {a}:{}\n  replicas  {}\n{move_text}{info_text}",
                route.store,
                route.epoch,
                m.id,
                m.machine,
                m.imap_port,
                m.lmtp_port,
                m.sync_port,
                replicas
                    .iter()
                    .map(|r| format!(
                        "{}@{}",
                        r["slot"].as_str().unwrap_or("?"),
                        r["machine"].as_str().unwrap_or("?")
                    ))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            ok(
                text,
                json!({
                    "user": name,
                    "store": route.store,
                    "epoch": route.epoch,
                    "master": {
                        "slot": m.id,
                        "machine": m.machine,
                        "address": a,
                        "imap": format!("{a}:{}", m.imap_port),
                        "lmtp": format!("{a}:{}", m.lmtp_port),
                        "sync": format!("{a}:{}", m.sync_port),
                        "data_dir": ctx.cluster.slot_data_dir(&m.data_dir),
                    },
                    "replicas": replicas,
                    "move": moving,
                    "info": info_json,
                }),
            )
        }
        UserCtl::Move {
            name,
            to,
            copy_only,
            abort,
            copy_timeout_secs,
            freeze_timeout_ms,
        } => crate::moves::user_move(
            ctx,
            &name,
            to.as_deref(),
            &crate::moves::MoveOptions {
                copy_only,
                abort,
                copy_timeout: std::time::Duration::from_secs(copy_timeout_secs),
                freeze_timeout: std::time::Duration::from_millis(freeze_timeout_ms),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_picks_the_store_with_fewest_users() {
        let mut t = Topology::default();
        for id in ["s001", "s002", "s003"] {
            t.stores.insert(
                id.into(),
                slotmail_directory::Store {
                    id: id.into(),
                    slots: vec![],
                    epoch: 1,
                    sync: false,
                    last_check: None,
                },
            );
        }
        assert_eq!(least_loaded_store(&t).as_deref(), Some("s001"));
        t.users.insert("a".into(), "s001".into());
        t.users.insert("b".into(), "s002".into());
        assert_eq!(least_loaded_store(&t).as_deref(), Some("s003"));
        t.users.insert("c".into(), "s003".into());
        t.users.insert("d".into(), "s001".into());
        assert_eq!(least_loaded_store(&t).as_deref(), Some("s002"));
        assert_eq!(least_loaded_store(&Topology::default()), None);
        assert_eq!(parse_limit("bytes", "unlimited").unwrap(), None);
        assert_eq!(parse_limit("bytes", "10").unwrap(), Some(10));
        assert_eq!(parse_limit("bytes", "ten").unwrap_err().exit(), Exit::Usage);
    }
}
