//! Moving one user to another store's master (`slotmail_repl::migrate`),
//! in-process over TLS on 127.0.0.1: the target master refuses the stream
//! until it is told the user moves in from the source, then holds exactly
//! what the source holds (UIDs, UIDVALIDITY, MODSEQs, flags, dates,
//! subscriptions, password hash, quota) and nothing of the source's other
//! users; a revoked grant or another epoch is refused.

mod common;

use common::*;
use slotmail_repl::migrate::{self, MoveTarget};
use slotmail_repl::*;
use slotmail_store::Slot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const SETTLE: Duration = Duration::from_secs(20);

/// The target store's master: a sync server in the master role.
async fn target_master(slot: &Arc<Slot>, epoch: u64) -> (SyncServer, SocketAddr) {
    let server = server(
        slot,
        "b1",
        SlotRole::Master { store: "s2".into() },
        epoch,
        Exec::Blocking,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    (server, addr)
}

fn target(addr: SocketAddr, epoch: u64) -> MoveTarget {
    MoveTarget {
        store: "s2".into(),
        slot: "b1".into(),
        address: addr,
        epoch,
    }
}

fn start(source: &Arc<Slot>, user: &str, to: &MoveTarget) -> Replicator {
    migrate::start(
        source.clone(),
        SECRET,
        CLUSTER,
        "a1",
        user,
        to,
        Exec::Blocking,
    )
}

async fn refused(r: &Replicator, needle: &str) {
    let ok = eventually(SETTLE, || {
        r.status().last_error.is_some_and(|e| e.contains(needle))
    })
    .await;
    assert!(ok, "expected {needle:?}: {:?}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_moves_to_another_master_exactly_and_alone() {
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open_slot(adir.path());
    let dest = open_slot(bdir.path());
    source.create_user("ann", "pw-ann", false).unwrap();
    source.create_user("bob", "pw-bob", false).unwrap();
    source.set_quota("ann", Some(9_000_000), Some(500)).unwrap();
    dest.create_user("carl", "pw-carl", false).unwrap();
    let carl_before = view(&dest, "carl");
    let u = source.user("ann").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let work = u.create_mailbox("Work", None).unwrap().id;
    for n in 0..12u32 {
        let mailbox = if n % 2 == 0 { inbox } else { work };
        let f: &[&str] = if n % 3 == 0 {
            &["\\Seen", "$Label1"]
        } else {
            &[]
        };
        u.append(
            mailbox,
            &message(n, 300 + n as usize * 40),
            &flags(f),
            Some((1_700_000_000 + i64::from(n) * 60, 120)),
        )
        .unwrap();
    }
    u.subscribe("Work").unwrap();
    // Expunges before the move keep their UIDs used on the target too.
    u.store_flags(
        inbox,
        &[1],
        slotmail_store::FlagOp::Add,
        &flags(&["\\Deleted"]),
        None,
    )
    .unwrap();
    u.expunge(inbox, None).unwrap();

    let (server, addr) = target_master(&dest, 3).await;

    // Not told: a master refuses, nothing is applied.
    let r = start(&source, "ann", &target(addr, 3));
    refused(&r, "not-replica").await;
    r.shutdown().await;
    assert_eq!(view(&dest, "ann"), ["(no such user)"]);

    // Told: the user arrives exactly as it is on the source.
    server.move_grants().grant("ann", "a1").unwrap();
    // At another epoch it is still refused.
    let r = start(&source, "ann", &target(addr, 4));
    refused(&r, "stale-epoch").await;
    r.shutdown().await;
    let r = start(&source, "ann", &target(addr, 3));
    assert!(
        eventually(SETTLE, || view(&source, "ann") == view(&dest, "ann")).await,
        "{:?}",
        r.status()
    );
    // Changes while the user keeps working follow.
    u.append(work, &message(50, 999), &flags(&["\\Flagged"]), None)
        .unwrap();
    u.store_flags(
        inbox,
        &[3],
        slotmail_store::FlagOp::Add,
        &flags(&["\\Answered"]),
        None,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || view(&source, "ann") == view(&dest, "ann")).await,
        "{:?}",
        r.status()
    );
    assert_same(&view(&source, "ann"), &view(&dest, "ann"), "moved user");
    // Only that user, and the target's own users untouched.
    assert_eq!(view(&dest, "bob"), ["(no such user)"]);
    assert_eq!(view(&dest, "carl"), carl_before);
    assert!(r.status().held.is_empty());

    // Revoked: the stream is cut and later changes are refused.
    assert!(server.move_grants().revoke("ann"));
    u.append(inbox, &message(60, 400), &flags(&[]), None)
        .unwrap();
    refused(&r, "not-replica").await;
    r.shutdown().await;
    assert_ne!(view(&source, "ann"), view(&dest, "ann"));
    server.shutdown().await;
}
