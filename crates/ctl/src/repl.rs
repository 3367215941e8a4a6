//! `ctl repl`: replication's state per store and the operator's release of
//! users the mass-deletion guard holds (docs/replication.md, "State
//! machine: the master's sync client").
//!
//! - `repl status [STORE]`: per replica of each store (from the master's
//!   `DATA/replication-status.json`): state, lag, pending users and the
//!   held users with the reason. Exit 1 when a user is held.
//! - `repl confirm STORE USER [--replica SLOT]`: through the master's admin
//!   socket, let the held round apply its deletions once.

use crate::output::{Table, or_dash, short_ms};
use crate::status::read_replication;
use crate::{CtlError, Ctx, Exit, ReplCtl, Report};
use serde_json::json;
use slotmail_directory::Directory;
use slotmail_slot::admin::{Request, Response, admin_request};
use std::fmt::Write as _;

pub(crate) fn repl(ctx: &Ctx, cmd: ReplCtl) -> Result<Report, CtlError> {
    match cmd {
        ReplCtl::Status { store } => status(ctx, store.as_deref()),
        ReplCtl::Confirm {
            store,
            user,
            replica,
        } => confirm(ctx, &store, &user, replica),
    }
}

fn status(ctx: &Ctx, only: Option<&str>) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    if let Some(id) = only
        && !t.stores.contains_key(id)
    {
        return Err(CtlError::Usage(format!("no store {id}")));
    }
    let mut table = Table::new(&[
        "STORE", "MASTER", "REPLICA", "STATE", "LAG", "PENDING", "HELD",
    ]);
    let mut stores = Vec::new();
    let mut held_lines = String::new();
    let mut held_total = 0usize;
    for st in t
        .stores
        .values()
        .filter(|s| only.is_none_or(|id| s.id == id))
    {
        let master = &t.slots[st.master()];
        let view = read_replication(&ctx.cluster, &master.data_dir);
        for replica in st.replicas() {
            let lag = view.as_ref().and_then(|v| v.replicas.get(replica));
            let held: Vec<&str> = lag
                .map(|l| l.held.iter().map(|h| h.user.as_str()).collect())
                .unwrap_or_default();
            held_total += held.len();
            for h in lag.map(|l| l.held.as_slice()).unwrap_or_default() {
                let _ = writeln!(
                    held_lines,
                    "{}: {} held on {replica}: {} (release: slotmail ctl repl confirm {} {})",
                    st.id, h.user, h.reason, st.id, h.user
                );
            }
            table.row(vec![
                st.id.clone(),
                st.master().to_string(),
                replica.clone(),
                match &view {
                    None => "-".into(),
                    Some(v) if v.stale => "stale".into(),
                    Some(_) => or_dash(lag.and_then(|l| l.state.clone())),
                },
                or_dash(lag.and_then(|l| l.lag_ms).map(short_ms)),
                or_dash(lag.and_then(|l| l.pending_users).map(|p| p.to_string())),
                if held.is_empty() {
                    "-".into()
                } else {
                    held.join(",")
                },
            ]);
        }
        stores.push(json!({
            "id": st.id,
            "master": st.master(),
            "replication": view,
        }));
    }
    let mut text = if table.is_empty() {
        "no stores\n".to_string()
    } else {
        table.render()
    };
    text.push_str(&held_lines);
    Ok(Report {
        text,
        json: json!({"stores": stores, "held": held_total}),
        exit: if held_total > 0 {
            Exit::Findings
        } else {
            Exit::Ok
        },
    })
}

fn confirm(
    ctx: &Ctx,
    store: &str,
    user: &str,
    replica: Option<String>,
) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    let st = t
        .stores
        .get(store)
        .ok_or_else(|| CtlError::Usage(format!("no store {store}")))?;
    let master = st.master().to_string();
    let socket = ctx.cluster.admin_socket(&t.slots[&master].data_dir);
    let request = Request::ReplConfirm {
        user: user.to_string(),
        replica,
    };
    let reply = admin_request(&socket, &request).map_err(|source| CtlError::Admin {
        slot: master.clone(),
        source,
    })?;
    let Response::Confirmed { replicas } = reply else {
        return Err(CtlError::Failed(format!(
            "slot {master} answered repl_confirm with {reply:?}"
        )));
    };
    Ok(Report {
        text: format!(
            "released {user} on {} (master {master}): its held deletions are applied now\n",
            replicas.join(", ")
        ),
        json: json!({"store": store, "user": user, "master": master, "released": replicas}),
        exit: Exit::Ok,
    })
}
