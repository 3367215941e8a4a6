//! Shared helpers of the replication tests: slots in temporary directories
//! and the client-visible view of a user that must end identical on master
//! and replica.
#![allow(dead_code)]

use slotmail_repl::{EpochState, Exec, ServerSettings, SlotRole, SyncServer};
use slotmail_store::{Flags, Options, Slot};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: [u8; 32] = [0x5a; 32];
pub const CLUSTER: &str = "test-cluster";
pub const STORE: &str = "s1";

/// Open (or create) a slot.
pub fn open_slot(dir: &Path) -> Arc<Slot> {
    Arc::new(Slot::open(dir, Options::default()).unwrap())
}

/// A message with a recognisable body of about `size` bytes.
pub fn message(n: u32, size: usize) -> Vec<u8> {
    let mut m =
        format!("From: a@example.org\r\nSubject: message {n}\r\nMessage-ID: <{n}@test>\r\n\r\n")
            .into_bytes();
    let mut i = 0u32;
    while m.len() < size {
        m.extend_from_slice(format!("line {i} of message {n}\r\n").as_bytes());
        i += 1;
    }
    m
}

/// Everything a client can see of a user (IMAP, LMTP, quota), comparable
/// across slots; message bodies by their BLAKE3 and length.
pub fn view(slot: &Slot, name: &str) -> Vec<String> {
    let Some(account) = slot.account(name).unwrap() else {
        return vec!["(no such user)".into()];
    };
    let hash = slot.password_hash(name).unwrap().unwrap();
    let u = slot.user(name).unwrap();
    let mut out = vec![
        format!(
            "account {} {} admin={} quota={:?}/{:?} hash={hash}",
            account.name,
            account.user_id,
            account.is_admin,
            account.quota_bytes,
            account.quota_messages
        ),
        format!("quota {:?}", u.quota().unwrap()),
        format!("subscribed {:?}", u.subscriptions().unwrap()),
    ];
    for mb in u.mailboxes().unwrap() {
        out.push(format!(
            "mailbox {} {:?} uidvalidity={} uidnext={} highestmodseq={} special_use={:?} keywords={:?} modseq={}",
            mb.mailbox_id,
            mb.name,
            mb.uidvalidity,
            mb.uidnext,
            mb.highestmodseq,
            mb.special_use,
            mb.keywords,
            mb.modseq
        ));
        out.push(format!(
            "  vanished {:?}",
            u.expunged_since(mb.id, 0).unwrap()
        ));
        let (_, msgs) = u.snapshot(mb.id).unwrap();
        for m in msgs {
            let body = u.read_message(&m.guid, m.size).unwrap();
            out.push(format!(
                "  uid={} guid={} size={} date={}{:+} flags={:?} modseq={} body={}",
                m.uid,
                m.guid,
                m.size,
                m.internaldate,
                m.tz_offset_min,
                m.flags.names().collect::<Vec<_>>(),
                m.modseq,
                blake3::hash(&body).to_hex()
            ));
        }
    }
    out
}

/// Views of every user of the master, on master and replica.
pub fn views(master: &Slot, replica: &Slot) -> (Vec<String>, Vec<String>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut names: Vec<String> = master
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    for r in replica.accounts().unwrap() {
        if !names.contains(&r.name) {
            names.push(r.name);
        }
    }
    names.sort();
    for n in names {
        a.extend(view(master, &n));
        b.extend(view(replica, &n));
    }
    (a, b)
}

/// Assert two views are equal, printing the first difference.
pub fn assert_same(a: &[String], b: &[String], what: &str) {
    if a == b {
        return;
    }
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: views differ at line {first}\n master: {:?}\nreplica: {:?}\n(master {} lines, replica {} lines)",
        a.get(first),
        b.get(first),
        a.len(),
        b.len()
    );
}

/// A sync server for `slot` as replica (or master) of STORE.
pub fn server(slot: &Arc<Slot>, name: &str, role: SlotRole, epoch: u64, exec: Exec) -> SyncServer {
    let epoch = Arc::new(EpochState::open(slot.root(), epoch).unwrap());
    SyncServer::new(
        slot.clone(),
        ServerSettings {
            secret: SECRET,
            cluster: CLUSTER.into(),
            slot: name.into(),
            role,
            exec,
        },
        epoch,
    )
    .unwrap()
}

pub fn replica_role() -> SlotRole {
    SlotRole::Replica {
        store: STORE.into(),
    }
}

/// Flags from names.
pub fn flags(names: &[&str]) -> Flags {
    Flags::from_names(names.iter().copied()).unwrap()
}

/// Poll `cond` every few milliseconds until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
