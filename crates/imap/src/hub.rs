//! The per-user registry shared by all sessions of a server: how many
//! connections each user has logged in, and a change signal per user that
//! wakes IDLE when another session, LMTP or replication commits a change.
//!
//! The store calls one change listener after every commit; [`Hub::notify`]
//! is that listener's body. The store reports MODSEQ 0 for a user whose
//! account is gone (deleted, as the last step of moving it to another
//! store): the hub then also signals a *removal notice*, on which every
//! session of that user checks its account and, if it is gone, says
//! `* BYE [UNAVAILABLE]` and closes (`Session::account_check`). A notice is
//! only a hint; the session's check decides. Entries exist only while a
//! user has a logged-in session, so the map holds at most one entry per
//! connected user. Nothing here is async: `tokio::sync::watch` works from
//! any thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Registry of logged-in users (see the module documentation).
#[derive(Debug)]
pub struct Hub {
    users: Mutex<HashMap<String, Entry>>,
    per_user_max: usize,
}

#[derive(Debug)]
struct Entry {
    changes: watch::Sender<u64>,
    /// Counts removal notices (MODSEQ 0 from the store).
    removals: watch::Sender<u64>,
    connections: usize,
}

/// One logged-in session's place in the [`Hub`]; dropping it logs out.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    user: String,
    changes: watch::Receiver<u64>,
    removals: watch::Receiver<u64>,
}

impl Hub {
    /// A registry allowing `per_user_max` sessions per user.
    pub fn new(per_user_max: usize) -> Arc<Hub> {
        Arc::new(Hub {
            users: Mutex::new(HashMap::new()),
            per_user_max,
        })
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change of `user` was committed, the user's MODSEQ is now `modseq`;
    /// 0 means the user's account may be gone (a removal notice).
    pub fn notify(&self, user: &str, modseq: u64) {
        if let Some(entry) = self.users().get(user) {
            if modseq == 0 {
                entry.removals.send_modify(|n| *n = n.wrapping_add(1));
            }
            entry.changes.send_replace(modseq);
        }
    }

    /// Register a logged-in session of `user`; `None` when the user already
    /// has the maximum number of sessions.
    pub fn register(self: &Arc<Self>, user: &str) -> Option<Registration> {
        let mut users = self.users();
        let entry = users.entry(user.to_string()).or_insert_with(|| Entry {
            changes: watch::Sender::new(0),
            removals: watch::Sender::new(0),
            connections: 0,
        });
        if entry.connections >= self.per_user_max {
            return None;
        }
        entry.connections += 1;
        Some(Registration {
            hub: self.clone(),
            user: user.to_string(),
            changes: entry.changes.subscribe(),
            removals: entry.removals.subscribe(),
        })
    }

    /// Logged-in sessions of `user`.
    pub fn connections(&self, user: &str) -> usize {
        self.users().get(user).map_or(0, |e| e.connections)
    }

    /// Users with at least one logged-in session.
    pub fn users_online(&self) -> usize {
        self.users().len()
    }
}

impl Registration {
    /// The user this registration is for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A receiver that changes whenever the user's data changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// A receiver that changes on every removal notice of the user.
    pub fn removals(&self) -> watch::Receiver<u64> {
        self.removals.clone()
    }

    /// Whether a removal notice came since the last call (or since the
    /// registration); marks it seen.
    pub fn removal_noticed(&mut self) -> bool {
        let noticed = self.removals.has_changed().unwrap_or(false);
        if noticed {
            self.removals.borrow_and_update();
        }
        noticed
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut users = self.hub.users();
        if let Some(entry) = users.get_mut(&self.user) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_limits_per_user() {
        let hub = Hub::new(2);
        let a = hub.register("alice").unwrap();
        let b = hub.register("alice").unwrap();
        assert!(hub.register("alice").is_none());
        let c = hub.register("bob").unwrap();
        assert_eq!(hub.connections("alice"), 2);
        drop(a);
        assert_eq!(hub.connections("alice"), 1);
        drop(b);
        assert_eq!(hub.connections("alice"), 0);
        assert_eq!(hub.users_online(), 1);
        drop(c);
        assert_eq!(hub.users_online(), 0);
    }

    #[test]
    fn notify_wakes_receivers_of_that_user_only() {
        let hub = Hub::new(10);
        let a = hub.register("alice").unwrap();
        let b = hub.register("bob").unwrap();
        let mut ra = a.changes();
        let mut rb = b.changes();
        ra.borrow_and_update();
        rb.borrow_and_update();
        hub.notify("alice", 7);
        hub.notify("carol", 9);
        assert!(ra.has_changed().unwrap());
        assert_eq!(*ra.borrow_and_update(), 7);
        assert!(!rb.has_changed().unwrap());
    }

    #[test]
    fn modseq_zero_is_a_removal_notice_for_that_user_only() {
        let hub = Hub::new(10);
        let mut a = hub.register("alice").unwrap();
        let mut a2 = hub.register("alice").unwrap();
        let mut b = hub.register("bob").unwrap();
        let ra = a.removals();
        hub.notify("alice", 5);
        assert!(!a.removal_noticed(), "a commit is no removal notice");
        assert!(!ra.has_changed().unwrap());
        hub.notify("alice", 0);
        hub.notify("carol", 0);
        assert!(ra.has_changed().unwrap());
        assert!(a.removal_noticed());
        assert!(!a.removal_noticed(), "seen once");
        // Every session of the user gets its own notice.
        assert!(a2.removal_noticed());
        assert!(!b.removal_noticed());
        // The change receiver (IDLE) wakes too.
        assert_eq!(*a.changes().borrow(), 0);
    }
}
