//! What switchover, failover, reconcile and rebuild ask running slots, and
//! the equality proof they rest on (docs/failover.md, "Drained" and
//! "Equal").
//!
//! [`prove_equal`] compares what replication itself computes: every user's
//! position and digest, read from both slots through their admin sockets.
//! It is the one place a fuller check (`slotmail check`, comparing bytes
//! over IMAP) can take over.

use crate::control::{CLIENT_TIMEOUT, ControlRequest, ControlResponse, control_request};
use crate::{CtlError, Ctx};
use serde::Serialize;
use slotmail_directory::{DirectoryError, Slot, Topology};
use slotmail_slot::admin::{Request, Response, SlotStatus, admin_request_with_timeout};
use slotmail_slot::admin_mail::{DigestSide, UserDigest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long one admin request of these commands may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait polls a slot.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Users named in an equality report, at most.
pub const DIFFERING_USERS_SHOWN_MAX: usize = 20;

/// The slot `id`, or a usage error naming it.
pub(crate) fn slot<'a>(t: &'a Topology, id: &str) -> Result<&'a Slot, CtlError> {
    t.slots
        .get(id)
        .ok_or_else(|| DirectoryError::UnknownSlot(id.to_string()).into())
}

/// One admin request to slot `id`.
pub(crate) fn ask(ctx: &Ctx, s: &Slot, request: &Request) -> Result<Response, CtlError> {
    admin_request_with_timeout(
        &ctx.cluster.admin_socket(&s.data_dir),
        request,
        ADMIN_TIMEOUT,
    )
    .map_err(|source| CtlError::Admin {
        slot: s.id.clone(),
        source,
    })
}

/// A slot's status, or why it does not answer.
pub(crate) fn status(ctx: &Ctx, s: &Slot) -> Result<SlotStatus, CtlError> {
    match ask(ctx, s, &Request::Status)? {
        Response::Status { status } => Ok(status),
        other => Err(unexpected(&s.id, &other)),
    }
}

/// Set a slot's read-only switch; returns its previous position.
pub(crate) fn set_read_only(ctx: &Ctx, s: &Slot, read_only: bool) -> Result<bool, CtlError> {
    match ask(ctx, s, &Request::SetReadOnly { read_only })? {
        Response::ReadOnly { was, .. } => Ok(was),
        other => Err(unexpected(&s.id, &other)),
    }
}

/// Every user's position and digest on a slot, by user name.
pub(crate) fn digests(
    ctx: &Ctx,
    s: &Slot,
    side: DigestSide,
) -> Result<BTreeMap<String, UserDigest>, CtlError> {
    match ask(ctx, s, &Request::UserDigests { side })? {
        Response::Digests { users } => Ok(users.into_iter().map(|u| (u.name.clone(), u)).collect()),
        other => Err(unexpected(&s.id, &other)),
    }
}

pub(crate) fn unexpected(slot: &str, reply: &Response) -> CtlError {
    CtlError::Failed(format!("slot {slot} answered unexpectedly: {reply:?}"))
}

/// The outcome of comparing a master's users with a replica's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Equality {
    /// Users on the master.
    pub users: usize,
    /// Every user's replica position is at least the master's MODSEQ and
    /// the replica holds no user the master lacks.
    pub drained: bool,
    /// Drained, and every user's digest is the same on both sides.
    pub equal: bool,
    /// Users whose digest agrees.
    pub users_equal: usize,
    /// Users that differ (at most [`DIFFERING_USERS_SHOWN_MAX`]).
    pub differing: Vec<String>,
}

/// Compare a master's digests (master side) with a replica's (replica
/// side): drained and equal, as docs/failover.md defines them.
pub fn prove_equal(
    master: &BTreeMap<String, UserDigest>,
    replica: &BTreeMap<String, UserDigest>,
) -> Equality {
    let mut e = Equality {
        users: master.len(),
        drained: true,
        ..Equality::default()
    };
    let note = |e: &mut Equality, name: &str| {
        if e.differing.len() < DIFFERING_USERS_SHOWN_MAX {
            e.differing.push(name.to_string());
        }
    };
    for (name, m) in master {
        match replica.get(name) {
            Some(r) if r.user_id == m.user_id && r.modseq >= m.modseq => {
                if r.digest == m.digest && r.modseq == m.modseq {
                    e.users_equal += 1;
                } else {
                    note(&mut e, name);
                }
            }
            _ => {
                e.drained = false;
                note(&mut e, name);
            }
        }
    }
    for name in replica.keys() {
        if !master.contains_key(name) {
            e.drained = false;
            note(&mut e, name);
        }
    }
    e.equal = e.drained && e.users_equal == master.len();
    e
}

/// Tell a machine's supervisor to read the directory now; false (with a
/// warning in the result) if it does not answer.
pub(crate) fn reload(ctx: &Ctx, machine: &str) -> Result<(), String> {
    match control_request(
        machine,
        &ctx.cluster.machine_socket(machine),
        &ControlRequest::Reload,
        CLIENT_TIMEOUT,
    ) {
        Ok(ControlResponse::Slots { .. }) => Ok(()),
        Ok(other) => Err(format!("machine {machine}: unexpected reply {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Ask a machine's supervisor to stop or start a slot.
pub(crate) fn control(ctx: &Ctx, s: &Slot, request: ControlRequest) -> Result<(), CtlError> {
    control_request(
        &s.machine,
        &ctx.cluster.machine_socket(&s.machine),
        &request,
        CLIENT_TIMEOUT,
    )?;
    Ok(())
}

/// Wait until `f` holds for the slot's status (polled every
/// [`POLL_INTERVAL`]); the status, or `None` after `limit`.
pub(crate) fn wait_status(
    ctx: &Ctx,
    s: &Slot,
    limit: Duration,
    f: impl Fn(&SlotStatus) -> bool,
) -> Option<SlotStatus> {
    let start = Instant::now();
    loop {
        if let Ok(st) = admin_request_with_timeout(
            &ctx.cluster.admin_socket(&s.data_dir),
            &Request::Status,
            Duration::from_secs(1),
        ) && let Response::Status { status } = st
            && f(&status)
        {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds elapsed since `t`.
pub(crate) fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, modseq: u64, digest: &str) -> (String, UserDigest) {
        (
            name.to_string(),
            UserDigest {
                name: name.into(),
                user_id: format!("id-{name}"),
                modseq,
                digest: digest.into(),
                mailboxes: 1,
            },
        )
    }

    #[test]
    fn drained_and_equal_are_told_apart() {
        let master: BTreeMap<_, _> = [d("a", 5, "x"), d("b", 7, "y")].into();
        let same = master.clone();
        let e = prove_equal(&master, &same);
        assert!(e.drained && e.equal, "{e:?}");
        assert_eq!(e.users_equal, 2);

        // Behind on one user: neither drained nor equal.
        let behind: BTreeMap<_, _> = [d("a", 5, "x"), d("b", 6, "old")].into();
        let e = prove_equal(&master, &behind);
        assert!(!e.drained && !e.equal);
        assert_eq!(e.differing, ["b"]);

        // At the position but another digest: drained, not equal.
        let damaged: BTreeMap<_, _> = [d("a", 5, "x"), d("b", 7, "z")].into();
        let e = prove_equal(&master, &damaged);
        assert!(e.drained && !e.equal);

        // A user the master lacks, or a missing one.
        let extra: BTreeMap<_, _> = [d("a", 5, "x"), d("b", 7, "y"), d("c", 1, "w")].into();
        assert!(!prove_equal(&master, &extra).drained);
        let missing: BTreeMap<_, _> = [d("a", 5, "x")].into();
        assert!(!prove_equal(&master, &missing).drained);
    }
}
