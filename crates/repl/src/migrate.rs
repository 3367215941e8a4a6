//! Moving one user to another store (docs/replication.md, "Moving a user
//! to another store"): the source store's master replicates that one user
//! to the target store's master, with the ordinary rounds, so UIDs,
//! UIDVALIDITY, MODSEQs, flags, internal dates, subscriptions, the password
//! hash and the quota arrive exactly as they are.
//!
//! Two halves:
//!
//! - **Target side.** A master refuses replication input. [`MoveGrants`] is
//!   the exception it is told about (by `ctl user move`, through the admin
//!   socket): "user U moves in from slot X". While a grant exists the
//!   master's sync server runs the handshake as if it were a replica of its
//!   own store, then admits the stream only if its `from_slot` holds a grant
//!   and its epoch is the master's own (a move never makes a master adopt an
//!   epoch). Every request on such a stream must name a granted user of that
//!   slot; `ListUsers` and `DeleteUser` are refused. A refusal ends the
//!   stream (`not-replica`). Revoking the grant cuts the stream at its next
//!   request.
//! - **Source side.** [`start`] runs a [`Replicator`] restricted to the
//!   user (`ReplicatorConfig::only_user`) towards the target master:
//!   woken by the user's changes like any replicator, retried and
//!   reconnected the same way, its full comparison limited to the user.
//!
//! Nothing here decides when the move is done: `ctl user move` compares the
//! two sides' digests (`slotmail_ctl::verify::prove_equal`).

use crate::client::{Replicator, ReplicatorConfig};
use crate::conn::TlsConnector;
use crate::exec::Exec;
use slotmail_repl_proto::{Accepted, Frame};
use slotmail_store::Slot;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Most users a master accepts moving in at once.
pub const MOVE_GRANTS_MAX: usize = 1024;

/// Streams a move uses (one user: its rounds never overlap anyway).
pub const MOVE_STREAMS: usize = 1;

/// The users a master accepts replication input for, each from one slot
/// (the source store's master). Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct MoveGrants(Arc<Mutex<BTreeMap<String, String>>>);

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The user is moving in from another slot already.
    #[error("user {user} is moving in from slot {from} already")]
    OtherSource { user: String, from: String },
    /// Too many users are moving in.
    #[error("at most {0} users may move in at once")]
    TooMany(usize),
}

impl MoveGrants {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accept `user` from `from_slot` from now on. Granting the same pair
    /// again changes nothing.
    pub fn grant(&self, user: &str, from_slot: &str) -> Result<(), GrantError> {
        let mut map = self.map();
        match map.get(user) {
            Some(from) if from == from_slot => return Ok(()),
            Some(from) => {
                return Err(GrantError::OtherSource {
                    user: user.to_string(),
                    from: from.clone(),
                });
            }
            None => {}
        }
        if map.len() >= MOVE_GRANTS_MAX {
            return Err(GrantError::TooMany(MOVE_GRANTS_MAX));
        }
        map.insert(user.to_string(), from_slot.to_string());
        Ok(())
    }

    /// Stop accepting `user`; whether it was granted.
    pub fn revoke(&self, user: &str) -> bool {
        self.map().remove(user).is_some()
    }

    /// Every grant: (user, source slot).
    pub fn list(&self) -> Vec<(String, String)> {
        self.map()
            .iter()
            .map(|(u, f)| (u.clone(), f.clone()))
            .collect()
    }

    /// Whether no user is moving in.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Whether some user moves in from `from_slot`.
    fn admits(&self, from_slot: &str) -> bool {
        self.map().values().any(|f| f == from_slot)
    }

    /// Whether a stream of `from_slot` may make `request`: it must name a
    /// user granted from that slot. `Err` is the refusal's text.
    pub fn permits(&self, from_slot: &str, request: &Frame) -> Result<(), String> {
        let user = match request {
            Frame::Ping => return Ok(()),
            Frame::GetUser(r) => &r.user,
            Frame::ApplyAccount(r) => &r.account.name,
            Frame::HaveGuids(r) => &r.user,
            Frame::Body(r) => &r.user,
            Frame::ApplyMailbox(r) => &r.user,
            Frame::DeleteMailbox(r) => &r.user,
            Frame::ApplySubscriptions(r) => &r.user,
            Frame::Commit(r) => &r.user,
            Frame::FetchBody(r) => &r.user,
            other => {
                return Err(format!(
                    "{} is not allowed on a move stream: this slot is a master",
                    other.frame_type()
                ));
            }
        };
        match self.map().get(user.as_str()) {
            Some(from) if from == from_slot => Ok(()),
            _ => Err(format!(
                "user {user} is not moving in from slot {from_slot}: this slot is a master and \
                 refuses replication input"
            )),
        }
    }
}

/// At the handshake of a master's sync server that holds grants: whether
/// the accepted client may go on as a move stream. `own_epoch` is the
/// epoch in force here. `Err` is the refusal's text (`not-replica`, or
/// `stale-epoch` for an epoch other than ours, as the flag says).
pub(crate) fn admit(
    grants: &MoveGrants,
    accepted: &Accepted,
    own_epoch: u64,
) -> Result<(), (bool, String)> {
    if !grants.admits(&accepted.from_slot) {
        return Err((
            false,
            format!(
                "this slot is the master of store {}: a master refuses replication input \
                 (no user moves in from slot {})",
                accepted.store, accepted.from_slot
            ),
        ));
    }
    if accepted.epoch != own_epoch {
        return Err((
            true,
            format!(
                "a move into store {} must come at its epoch {own_epoch}, not {}",
                accepted.store, accepted.epoch
            ),
        ));
    }
    Ok(())
}

/// Where a user moves to: the target store's master as the directory has
/// it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MoveTarget {
    /// The target store.
    pub store: String,
    /// Its master slot.
    pub slot: String,
    /// The master's sync listener.
    pub address: SocketAddr,
    /// The store's epoch.
    pub epoch: u64,
}

/// Start replicating `user` of `slot` (this slot, `from_slot`, the source
/// store's master) into `target`. Stop it with [`Replicator::shutdown`];
/// its [`Replicator::status`] says how far it got.
pub fn start(
    slot: Arc<Slot>,
    secret: [u8; 32],
    cluster: &str,
    from_slot: &str,
    user: &str,
    target: &MoveTarget,
    exec: Exec,
) -> Replicator {
    let mut config = ReplicatorConfig::new(
        secret,
        cluster,
        &target.store,
        from_slot,
        &target.slot,
        target.epoch,
    );
    config.streams = MOVE_STREAMS;
    config.exec = exec;
    config.only_user = Some(user.to_string());
    Replicator::start(slot, config, Arc::new(TlsConnector::new(target.address)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_repl_proto::{Commit, DeleteUser, GetUser, ListUsers, Welcome};

    fn accepted(from: &str, epoch: u64) -> Accepted {
        Accepted {
            epoch,
            adopt_epoch: false,
            store: "s2".into(),
            from_slot: from.into(),
            peer_capabilities: Vec::new(),
            welcome: Frame::Welcome(Welcome { epoch }),
        }
    }

    #[test]
    fn grants_admit_one_source_and_only_its_users() {
        let g = MoveGrants::default();
        assert!(
            admit(&g, &accepted("a1", 3), 3).is_err(),
            "no grant: refused"
        );
        g.grant("ann", "a1").unwrap();
        g.grant("ann", "a1").unwrap();
        assert_eq!(
            g.grant("ann", "b1"),
            Err(GrantError::OtherSource {
                user: "ann".into(),
                from: "a1".into()
            })
        );
        assert!(admit(&g, &accepted("a1", 3), 3).is_ok());
        assert!(!admit(&g, &accepted("b1", 3), 3).unwrap_err().0);
        // Never another epoch, newer or older.
        assert!(admit(&g, &accepted("a1", 4), 3).unwrap_err().0);
        assert!(admit(&g, &accepted("a1", 2), 3).unwrap_err().0);

        let get = |u: &str| Frame::GetUser(GetUser { user: u.into() });
        assert!(g.permits("a1", &get("ann")).is_ok());
        assert!(g.permits("a1", &Frame::Ping).is_ok());
        assert!(
            g.permits(
                "a1",
                &Frame::Commit(Commit {
                    user: "ann".into(),
                    modseq: 9
                })
            )
            .is_ok()
        );
        assert!(g.permits("a1", &get("bob")).is_err(), "another user");
        assert!(g.permits("b1", &get("ann")).is_err(), "another slot");
        assert!(
            g.permits("a1", &Frame::ListUsers(ListUsers { after: None }))
                .is_err()
        );
        assert!(
            g.permits("a1", &Frame::DeleteUser(DeleteUser { user: "ann".into() }))
                .is_err(),
            "a move never deletes on the target"
        );
        assert_eq!(g.list(), [("ann".to_string(), "a1".to_string())]);
        assert!(g.revoke("ann"));
        assert!(!g.revoke("ann"));
        assert!(g.permits("a1", &get("ann")).is_err(), "revoked");
        assert!(g.is_empty());
    }

    #[test]
    fn grants_are_bounded() {
        let g = MoveGrants::default();
        for i in 0..MOVE_GRANTS_MAX {
            g.grant(&format!("u{i}"), "a1").unwrap();
        }
        assert_eq!(
            g.grant("one-more", "a1"),
            Err(GrantError::TooMany(MOVE_GRANTS_MAX))
        );
    }
}
