//! Replication in-process over real TCP on 127.0.0.1: a master slot with a
//! `Replicator`, a replica slot with a `SyncServer`, both in temporary
//! directories. Every client-visible item ends identical; failures (replica
//! down, a stream cut in the middle of a body, a master restart, corruption
//! on either side, refused handshakes, a mass deletion) heal or are refused
//! as docs/replication.md says.

mod common;

use common::*;
use slotmail_repl::*;
use slotmail_repl_proto::{
    Body, ClientConfig, ClientHandshake, ClientStep, ErrorCode, Frame, FrameDecoder, encode_frame,
};
use slotmail_store::{FlagOp, Guid, Slot};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;

/// Long enough for any step of these tests on a loaded machine.
const SETTLE: Duration = Duration::from_secs(20);

struct Replica {
    dir: tempfile::TempDir,
    slot: Arc<Slot>,
    server: SyncServer,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start(dir: tempfile::TempDir, addr: &str, epoch: u64) -> Replica {
        let slot = open_slot(&dir.path().join("data"));
        let server = server(&slot, "b1", replica_role(), epoch, Exec::Blocking);
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = server.clone();
        let task = tokio::spawn(async move { s.serve(listener).await });
        Replica {
            dir,
            slot,
            server,
            addr,
            task,
        }
    }

    /// Stop the server and close the slot; returns its directory.
    async fn stop(self) -> (tempfile::TempDir, SocketAddr) {
        self.server.shutdown().await;
        let _ = self.task.await;
        let Replica {
            dir,
            slot,
            addr,
            server,
            ..
        } = self;
        drop(server);
        assert_eq!(
            Arc::strong_count(&slot),
            1,
            "the replica's slot is still in use"
        );
        drop(slot);
        (dir, addr)
    }
}

fn config(epoch: u64) -> ReplicatorConfig {
    ReplicatorConfig::new(SECRET, CLUSTER, STORE, "a1", "b1", epoch)
}

fn tcp(addr: SocketAddr) -> SharedConnector {
    Arc::new(TlsConnector::new(addr))
}

async fn settle(replicator: &Replicator, master: &Slot, replica: &Slot, what: &str) {
    assert!(
        wait_idle(replicator, SETTLE).await,
        "{what}: replication did not settle: {:?}",
        replicator.status()
    );
    let (a, b) = views(master, replica);
    assert_same(&a, &b, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_client_visible_item_replicates() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    master.create_user("ann", "pw-ann", false).unwrap();
    master.create_user("root", "pw-root", true).unwrap();
    master
        .set_quota("ann", Some(50_000_000), Some(10_000))
        .unwrap();
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "accounts").await;

    let u = master.user("ann").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for n in 0..20 {
        u.append(
            inbox,
            &message(n, 200 + n as usize * 50),
            &flags(if n % 3 == 0 {
                &["\\Seen", "$Label1"]
            } else {
                &[]
            }),
            Some((1_700_000_000 + i64::from(n) * 3600, -300 + n as i32 * 30)),
        )
        .unwrap();
    }
    // A body bigger than one chunk.
    u.append(inbox, &message(99, 2_500_000), &flags(&["\\Flagged"]), None)
        .unwrap();
    settle(&replicator, &master, &replica.slot, "appends").await;

    u.store_flags(
        inbox,
        &[2, 3, 4],
        FlagOp::Add,
        &flags(&["\\Answered", "Work"]),
        None,
    )
    .unwrap();
    u.store_flags(inbox, &[1, 5, 7], FlagOp::Add, &flags(&["\\Deleted"]), None)
        .unwrap();
    u.expunge(inbox, None).unwrap();
    // A keyword set and cleared between rounds stays in the mailbox's list.
    u.store_flags(inbox, &[8], FlagOp::Add, &flags(&["$Transient"]), None)
        .unwrap();
    u.store_flags(inbox, &[8], FlagOp::Remove, &flags(&["$Transient"]), None)
        .unwrap();
    let work = u
        .create_mailbox("Work/Projects", Some("\\Flagged"))
        .unwrap();
    u.copy(inbox, &[2, 3], work.id).unwrap();
    u.move_messages(inbox, &[4, 6], work.id).unwrap();
    u.subscribe("Work/Projects").unwrap();
    u.unsubscribe("Junk").unwrap();
    settle(
        &replicator,
        &master,
        &replica.slot,
        "flags, expunge, copy, move",
    )
    .await;

    // Rename chain (by id: Work/Projects -> Done, a new Work/Projects),
    // delete, special-use change, a re-created name (new UIDVALIDITY).
    u.rename_mailbox("Work/Projects", "Done").unwrap();
    let again = u.create_mailbox("Work/Projects", None).unwrap();
    u.append(again.id, &message(200, 300), &flags(&[]), None)
        .unwrap();
    u.delete_mailbox("Junk").unwrap();
    u.set_special_use(u.mailbox("Archive").unwrap().id, None)
        .unwrap();
    let trash = u.mailbox("Trash").unwrap();
    u.delete_mailbox("Trash").unwrap();
    let trash2 = u.create_mailbox("Trash", Some("\\Trash")).unwrap();
    assert_ne!(trash.uidvalidity, trash2.uidvalidity);
    settle(&replicator, &master, &replica.slot, "renames and deletions").await;

    // Account changes are not announced by the store: nudge.
    master.set_password("ann", "new-password").unwrap();
    master.set_quota("ann", Some(60_000_000), None).unwrap();
    master.set_admin("ann", true).unwrap();
    replicator.nudge("ann");
    settle(&replicator, &master, &replica.slot, "account").await;
    assert!(
        replica
            .slot
            .verify_password("ann", "new-password")
            .unwrap()
            .is_some()
    );

    // The replica's MODSEQs are the master's; it reports the master's position.
    let r = replica.slot.user("ann").unwrap();
    assert_eq!(r.repl_modseq().unwrap(), u.modseq().unwrap());
    assert!(r.modseq().unwrap() >= u.modseq().unwrap());
    assert!(replica.slot.scrub(false).is_clean());
    let status = replicator.status();
    assert_eq!(status.state, StreamsState::Rolling);
    assert_eq!(status.connected_streams, 4);
    assert_eq!(status.digest_mismatches, 0, "{status:?}");
    assert_eq!(status.pending_users, 0);
    assert!(status.rounds > 0 && status.body_bytes_sent > 2_500_000);
    let server = replica.server.status();
    assert_eq!(server.guid_mismatches, 0);
    assert!(server.bodies >= 22, "{server:?}");
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_was_down_catches_up_without_a_new_write() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("bob", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "start").await;

    let (rdir, addr) = replica.stop().await;
    let u = master.user("bob").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for n in 0..30 {
        u.append(inbox, &message(n, 500), &flags(&[]), None)
            .unwrap();
    }
    u.create_mailbox("While down", None).unwrap();
    master.create_user("carol", "pw", false).unwrap();
    // Long enough for the reconnect backoff to reach its cap.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(replicator.status().lag_ms >= 2_000);
    assert_eq!(replicator.status().state, StreamsState::Waiting);

    let replica = Replica::start(rdir, &addr.to_string(), 1).await;
    let back = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || replicator.is_idle()).await,
        "{:?}",
        replicator.status()
    );
    let took = back.elapsed();
    let (a, b) = views(&master, &replica.slot);
    assert_same(&a, &b, "after the replica's return");
    eprintln!("replica back: caught up in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(1), "caught up in {took:?}");
    replicator.shutdown().await;
}

/// A connector whose first connections are cut after a number of bytes
/// written (the master's side dies in the middle of a frame).
struct CutConnector {
    addr: SocketAddr,
    budgets: Mutex<Vec<usize>>,
    cuts: Arc<AtomicUsize>,
}

struct CutStream {
    inner: tokio::net::TcpStream,
    left: Option<usize>,
    cuts: Arc<AtomicUsize>,
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = match self.left {
            Some(0) => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut by the test",
                )));
            }
            Some(left) => buf.len().min(left),
            None => buf.len(),
        };
        let r = Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
        if let Poll::Ready(Ok(written)) = &r
            && let Some(left) = self.left.as_mut()
        {
            *left -= written;
            if *left == 0 {
                self.cuts.fetch_add(1, Ordering::SeqCst);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connector for CutConnector {
    fn connect(&self) -> ConnectFuture {
        let addr = self.addr;
        let left = self.budgets.lock().unwrap().pop();
        let cuts = self.cuts.clone();
        Box::pin(async move {
            let inner = tokio::net::TcpStream::connect(addr).await?;
            let cut = CutStream { inner, left, cuts };
            tls::connect(cut, tls::client_config()).await
        })
    }

    fn describe(&self) -> String {
        format!("{} (cut)", self.addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_in_the_middle_of_a_body_resumes() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("dan", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    // One stream, so the cuts hit the body transfers; the first three
    // connections die after 1.5 MB, 40 kB and 3 MB.
    let cuts = Arc::new(AtomicUsize::new(0));
    let connector = Arc::new(CutConnector {
        addr: replica.addr,
        budgets: Mutex::new(vec![3_000_000, 40_000, 1_500_000]),
        cuts: cuts.clone(),
    });
    let mut cfg = config(1);
    cfg.streams = 1;
    let u = master.user("dan").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for n in 0..3 {
        u.append(inbox, &message(n, 2_200_000), &flags(&[]), None)
            .unwrap();
    }
    let replicator = Replicator::start(master.clone(), cfg, connector);
    settle(&replicator, &master, &replica.slot, "after the cuts").await;
    assert_eq!(cuts.load(Ordering::SeqCst), 3);
    assert!(replicator.status().errors >= 3);
    assert!(replica.slot.scrub(false).is_clean());
    replicator.shutdown().await;
}

/// Records when each stream wrote (below TLS), and holds the first large
/// write once armed: the body transfer of a round, which then stays
/// running for as long as the hold.
struct HoldConnector {
    addr: SocketAddr,
    next: AtomicUsize,
    /// (stream, when) of every write that went out.
    writes: Arc<Mutex<Vec<(usize, Instant)>>>,
    /// Armed hold: the next write of at least `HOLD_WRITE_MIN` bytes waits
    /// this long; then (stream, when) of the held write.
    hold: Arc<Mutex<Option<Duration>>>,
    held: Arc<Mutex<Option<(usize, Instant)>>>,
}

/// Pings and round requests are far smaller than this; body windows are
/// larger.
const HOLD_WRITE_MIN: usize = 8 * 1024;

struct HoldStream {
    inner: tokio::net::TcpStream,
    index: usize,
    writes: Arc<Mutex<Vec<(usize, Instant)>>>,
    hold: Arc<Mutex<Option<Duration>>>,
    held: Arc<Mutex<Option<(usize, Instant)>>>,
    sleeping: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for HoldStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HoldStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.sleeping.is_none() && buf.len() >= HOLD_WRITE_MIN {
            let armed = self.hold.lock().unwrap().take();
            if let Some(d) = armed {
                *self.held.lock().unwrap() = Some((self.index, Instant::now()));
                self.sleeping = Some(Box::pin(tokio::time::sleep(d)));
            }
        }
        if let Some(sleep) = self.sleeping.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleeping = None;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = &r {
            let index = self.index;
            self.writes.lock().unwrap().push((index, Instant::now()));
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connector for HoldConnector {
    fn connect(&self) -> ConnectFuture {
        let addr = self.addr;
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let (writes, hold, held) = (self.writes.clone(), self.hold.clone(), self.held.clone());
        Box::pin(async move {
            let inner = tokio::net::TcpStream::connect(addr).await?;
            let stream = HoldStream {
                inner,
                index,
                writes,
                hold,
                held,
                sleeping: None,
            };
            tls::connect(stream, tls::client_config()).await
        })
    }

    fn describe(&self) -> String {
        format!("{} (hold)", self.addr)
    }
}

/// Chaos finding 7: while one stream ran a long round (a rebuild's full
/// sync), every commit of that user woke the master's other, idle streams,
/// which found no work (the user is running) and restarted their ping
/// timer; they never pinged, and the replica closed them after
/// `SERVER_IDLE_TIMEOUT` (45 s). Here a round is held for 26 s while the
/// user keeps changing: every other stream must ping at least twice in
/// that time (every `PING_IDLE_SECS`, 10 s), and the replica ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_idle_streams_were_not_pinged_during_a_long_round() {
    const HOLD: Duration = Duration::from_secs(26);
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("ida", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let writes = Arc::new(Mutex::new(Vec::new()));
    let hold = Arc::new(Mutex::new(None));
    let held = Arc::new(Mutex::new(None));
    let connector = Arc::new(HoldConnector {
        addr: replica.addr,
        next: AtomicUsize::new(0),
        writes: writes.clone(),
        hold: hold.clone(),
        held: held.clone(),
    });
    let streams = config(1).streams;
    let replicator = Replicator::start(master.clone(), config(1), connector);
    settle(&replicator, &master, &replica.slot, "start").await;
    assert!(
        eventually(SETTLE, || replicator.status().connected_streams == streams).await,
        "streams did not connect: {:?}",
        replicator.status()
    );
    let u = master.user("ida").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    // The round of this large message is held in its body transfer.
    *hold.lock().unwrap() = Some(HOLD);
    u.append(inbox, &message(0, 1_000_000), &flags(&[]), None)
        .unwrap();
    assert!(
        eventually(SETTLE, || held.lock().unwrap().is_some()).await,
        "no body transfer was held"
    );
    let (held_stream, since) = held.lock().unwrap().unwrap();
    // The user changes every 300 ms while its round is held: each commit
    // wakes the idle streams without giving them work.
    let mut n = 1;
    while since.elapsed() < HOLD {
        u.append(inbox, &message(n, 600), &flags(&[]), None)
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    settle(&replicator, &master, &replica.slot, "after the held round").await;
    let writes = writes.lock().unwrap().clone();
    let idle_streams: BTreeSet<usize> = writes
        .iter()
        .filter(|(i, at)| *i != held_stream && *at < since)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(idle_streams.len(), streams - 1, "writes: {writes:?}");
    for s in idle_streams {
        let during = writes
            .iter()
            .filter(|(i, at)| *i == s && *at > since && *at < since + HOLD)
            .count();
        assert!(
            during >= 2,
            "stream {s} wrote {during} times in the {HOLD:?} the round was held ({n} commits woke it)"
        );
    }
    assert_eq!(
        replicator.status().errors,
        0,
        "a stream was lost: {:?}",
        replicator.status()
    );
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_master_resumes() {
    let mdir = tempfile::tempdir().unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    {
        let master = open_slot(mdir.path());
        master.create_user("eve", "pw", false).unwrap();
        let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
        let u = master.user("eve").unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        for n in 0..10 {
            u.append(inbox, &message(n, 800), &flags(&[]), None)
                .unwrap();
        }
        // Stop in the middle of things.
        replicator.shutdown().await;
        drop(replicator);
        // Writes while no replicator runs.
        for n in 10..20 {
            u.append(inbox, &message(n, 800), &flags(&["\\Seen"]), None)
                .unwrap();
        }
        drop(u);
    }
    let master = open_slot(mdir.path());
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(
        &replicator,
        &master,
        &replica.slot,
        "after the master's restart",
    )
    .await;
    assert!(replicator.status().comparisons >= 1);
    replicator.shutdown().await;
}

async fn refused(replicator: &Replicator, needle: &str) {
    let ok = eventually(SETTLE, || {
        replicator
            .status()
            .last_error
            .is_some_and(|e| e.contains(needle))
    })
    .await;
    assert!(ok, "expected {needle:?}: {:?}", replicator.status());
    assert_eq!(replicator.status().connected_streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_secret_stale_epoch_and_a_master_are_refused() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("fay", "pw", false).unwrap();
    // Wrong secret: the replica does not prove the right secret to us, and
    // we do not to it.
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 5).await;
    let mut wrong = config(5);
    wrong.secret = [1; 32];
    let r = Replicator::start(master.clone(), wrong, tcp(replica.addr));
    refused(&r, "auth").await;
    r.shutdown().await;
    // A fenced older master.
    let r = Replicator::start(master.clone(), config(4), tcp(replica.addr));
    refused(&r, "stale-epoch").await;
    r.shutdown().await;
    assert!(replica.server.status().refused >= 2);
    assert!(
        replica.slot.accounts().unwrap().is_empty(),
        "nothing was applied"
    );
    // A master refuses replication input.
    let odir = tempfile::tempdir().unwrap();
    let other = open_slot(odir.path());
    let as_master = server(
        &other,
        "b1",
        SlotRole::Master {
            store: STORE.into(),
        },
        1,
        Exec::Blocking,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = as_master.clone();
    tokio::spawn(async move { s.serve(listener).await });
    let r = Replicator::start(master.clone(), config(1), tcp(addr));
    refused(&r, "not-replica").await;
    r.shutdown().await;
    as_master.shutdown().await;
    assert!(other.accounts().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_epoch_is_adopted_durably_and_fences_the_old_master() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("gus", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let new_master = Replicator::start(master.clone(), config(4), tcp(replica.addr));
    settle(&new_master, &master, &replica.slot, "epoch 4").await;
    let state = std::fs::read_to_string(replica.slot.root().join("sync-state.toml")).unwrap();
    assert!(state.contains("epoch = 4"), "{state}");
    // The old master (epoch 1) is refused, even after the replica restarts
    // with its configured epoch 1.
    new_master.shutdown().await;
    let (rdir, addr) = replica.stop().await;
    let replica = Replica::start(rdir, &addr.to_string(), 1).await;
    let old = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    refused(&old, "stale-epoch").await;
    old.shutdown().await;
}

/// Flip a byte of a user's stored message in place (bit rot), in its
/// loose file or in its pack.
fn corrupt_file(slot: &Slot, user: &str, guid: &Guid) {
    let u = slot.user(user).unwrap();
    let (path, offset) = u.stored_at(guid).unwrap().expect("the body is stored");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize + 10] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corruption_on_the_master_is_not_replicated_and_is_repaired_from_the_replica() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("hal", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("hal").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let first = u
        .append(inbox, &message(1, 900), &flags(&[]), None)
        .unwrap();
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "first").await;
    replicator.shutdown().await;

    // A new message whose file rots before it is replicated: the replica has
    // no copy, so it is skipped and reported; the rest of the user goes on.
    let bad = u
        .append(inbox, &message(2, 900), &flags(&[]), None)
        .unwrap();
    corrupt_file(&master, "hal", &bad.guid);
    let good = u
        .append(inbox, &message(3, 900), &flags(&[]), None)
        .unwrap();
    // And the replicated one rots too: the replica's copy repairs it.
    corrupt_file(&master, "hal", &first.guid);
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    assert!(
        wait_idle(&replicator, SETTLE).await,
        "{:?}",
        replicator.status()
    );
    let r = replica.slot.user("hal").unwrap();
    let rin = r.mailbox("INBOX").unwrap().id;
    let uids: Vec<u32> = r.snapshot(rin).unwrap().1.iter().map(|m| m.uid).collect();
    assert_eq!(
        uids,
        [first.uid, good.uid],
        "the corrupt message is not replicated"
    );
    let status = replicator.status();
    assert_eq!(status.corrupt_skipped, 1, "{status:?}");
    assert_eq!(status.corrupt[0].uid, bad.uid);
    assert_eq!(status.corrupt[0].guid, bad.guid.to_hex());
    let report = replicator.scrub_and_repair().await;
    assert!(!report.is_clean());
    assert!(
        eventually(SETTLE, || replicator.status().repaired == 1).await,
        "{:?}",
        replicator.status()
    );
    assert!(
        u.read_message(&first.guid, first_len(&u, &first.guid))
            .is_ok()
    );
    assert!(u.read_message(&bad.guid, first_len(&u, &bad.guid)).is_err());
    replicator.shutdown().await;
}

/// Found by the fault-injection harness (docs/reliability.md, finding 4):
/// a repair a scrub queued lived only in the master's memory, so a master
/// restarted before the repair round kept answering `NO [CORRUPTION]` while
/// its replica held the good copy. A master's start now verifies its bodies
/// and queues every damaged one for repair again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_masters_pending_repair_was_lost_when_it_restarted() {
    let mdir = tempfile::tempdir().unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let rotten = {
        let master = open_slot(mdir.path());
        master.create_user("ivy", "pw", false).unwrap();
        let u = master.user("ivy").unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        let mut appended = Vec::new();
        for n in 0..5 {
            appended.push(
                u.append(inbox, &message(n, 900), &flags(&[]), None)
                    .unwrap(),
            );
        }
        let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
        settle(&replicator, &master, &replica.slot, "before the damage").await;
        replicator.shutdown().await;
        // The file rots while the master is down; no scrub is run.
        corrupt_file(&master, "ivy", &appended[2].guid);
        appended[2].guid
    };
    let master = open_slot(mdir.path());
    let u = master.user("ivy").unwrap();
    assert!(u.read_message(&rotten, first_len(&u, &rotten)).is_err());
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    Replicator::verify_and_repair_in_background(std::slice::from_ref(&replicator));
    assert!(
        eventually(SETTLE, || replicator.status().repaired == 1).await,
        "{:?}",
        replicator.status()
    );
    let len = first_len(&u, &rotten);
    assert_eq!(
        u.read_message(&rotten, len).unwrap(),
        replica
            .slot
            .user("ivy")
            .unwrap()
            .read_message(&rotten, len)
            .unwrap(),
        "the master's copy is the replica's again"
    );
    replicator.shutdown().await;
}

fn first_len(u: &slotmail_store::User, guid: &Guid) -> u64 {
    u.content_size(guid).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_copy_on_the_replica_is_sent_again_after_a_scrub() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("ida", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("ida").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let m = u
        .append(inbox, &message(1, 5000), &flags(&[]), None)
        .unwrap();
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "first").await;
    corrupt_file(&replica.slot, "ida", &m.guid);
    let r = replica.slot.user("ida").unwrap();
    let size = first_len(&r, &m.guid);
    assert!(r.read_message(&m.guid, size).is_err());
    let report = replica.server.scrub().await;
    assert!(!report.is_clean());
    assert_eq!(replica.server.status().bad_bodies, 1);
    replicator.compare_now();
    assert!(
        eventually(SETTLE, || r.read_message(&m.guid, size).is_ok()).await,
        "{:?} {:?}",
        replicator.status(),
        replica.server.status()
    );
    settle(&replicator, &master, &replica.slot, "after the resend").await;
    assert_eq!(replica.server.status().bad_bodies, 0);
    assert!(replica.slot.scrub(false).is_clean());
    replicator.shutdown().await;
}

/// The replica's marks of bad bodies survive its restart, so the damage is
/// healed without another scrub.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_body_marks_survive_a_replica_restart() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("ivy", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("ivy").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let m = u
        .append(inbox, &message(1, 5000), &flags(&[]), None)
        .unwrap();
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "first").await;
    replicator.shutdown().await;
    corrupt_file(&replica.slot, "ivy", &m.guid);
    assert!(!replica.server.scrub().await.is_clean());
    assert_eq!(replica.server.status().bad_bodies, 1);
    let (rdir, addr) = replica.stop().await;
    let file = rdir.path().join("data").join("sync-bad-bodies.json");
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert!(recorded.contains(&m.guid.to_hex()), "{recorded}");

    let replica = Replica::start(rdir, &addr.to_string(), 1).await;
    assert_eq!(replica.server.status().bad_bodies, 1, "remembered");
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "after the restart").await;
    assert_eq!(replica.server.status().bad_bodies, 0);
    assert!(replica.slot.scrub(false).is_clean());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[]");
    replicator.shutdown().await;
}

/// A body damaged while the replica was stopped is unknown to it at its
/// restart; its verification pass finds it, marks it bad, and the master
/// (told by the mark count in `Pong`, or by the comparison at reconnect)
/// sends it again. No scrub is run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_damaged_on_a_stopped_replica_is_sent_again_after_its_restart() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("uma", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("uma").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let m = u
        .append(inbox, &message(1, 5000), &flags(&[]), None)
        .unwrap();
    u.append(inbox, &message(2, 5000), &flags(&[]), None)
        .unwrap();
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "first").await;

    let (rdir, addr) = replica.stop().await;
    {
        let stopped = open_slot(&rdir.path().join("data"));
        corrupt_file(&stopped, "uma", &m.guid);
    }
    let replica = Replica::start(rdir, &addr.to_string(), 1).await;
    let r = replica.slot.user("uma").unwrap();
    let size = first_len(&r, &m.guid);
    assert!(
        eventually(SETTLE, || r.read_message(&m.guid, size).is_ok()).await,
        "{:?} {:?}",
        replicator.status(),
        replica.server.status()
    );
    settle(&replicator, &master, &replica.slot, "after the resend").await;
    assert_eq!(replica.server.status().bad_bodies, 0);
    assert!(replica.slot.scrub(false).is_clean());
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mass_deletion_is_held_until_confirmed() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("joe", "pw", false).unwrap();
    master.create_user("kim", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("joe").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for n in 0..120 {
        u.append(inbox, &message(n, 300), &flags(&[]), None)
            .unwrap();
    }
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "120 messages").await;
    let doomed: Vec<u32> = (1..=70).collect();
    u.store_flags(inbox, &doomed, FlagOp::Add, &flags(&["\\Deleted"]), None)
        .unwrap();
    u.expunge(inbox, None).unwrap();
    assert!(
        eventually(SETTLE, || !replicator.status().held.is_empty()).await,
        "{:?}",
        replicator.status()
    );
    let status = replicator.status();
    assert_eq!(status.held[0].user, "joe");
    assert!(status.held[0].reason.contains("70 of 120"), "{status:?}");
    assert!(status.pending_users >= 1);
    // Other users go on.
    let k = master.user("kim").unwrap();
    k.append(
        k.mailbox("INBOX").unwrap().id,
        &message(1, 100),
        &flags(&[]),
        None,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || {
            let r = replica.slot.user("kim").unwrap();
            r.status(r.mailbox("INBOX").unwrap().id).unwrap().messages == 1
        })
        .await
    );
    let r = replica.slot.user("joe").unwrap();
    assert_eq!(
        r.status(r.mailbox("INBOX").unwrap().id).unwrap().messages,
        120
    );
    assert!(replicator.confirm("joe"));
    settle(
        &replicator,
        &master,
        &replica.slot,
        "after the confirmation",
    )
    .await;
    assert!(replicator.status().held.is_empty());
    replicator.shutdown().await;
}

fn count(slot: &Slot, user: &str, mailbox: &str) -> u32 {
    let u = slot.user(user).unwrap();
    u.status(u.mailbox(mailbox).unwrap().id).unwrap().messages
}

/// Found by review: the guard weighed only a delta's expunges, so a
/// mailbox a round sent whole (here after the full comparison of a fresh
/// replicator found it different) replaced the replica's copy with the
/// master's empty one. The replica's message count in `UserState` now
/// weighs the whole send.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mailbox_sent_whole_that_would_empty_the_replicas_copy_is_held() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("lea", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("lea").unwrap();
    let kept = u.create_mailbox("Kept", None).unwrap().id;
    for n in 0..120 {
        u.append(kept, &message(n, 300), &flags(&[]), None).unwrap();
    }
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "120 messages").await;
    replicator.shutdown().await;

    // Emptied, and refilled with as many new messages, while no replicator
    // runs: the next one's full comparison sends the mailbox whole.
    let all: Vec<u32> = (1..=120).collect();
    u.store_flags(kept, &all, FlagOp::Add, &flags(&["\\Deleted"]), None)
        .unwrap();
    u.expunge(kept, None).unwrap();
    for n in 200..320 {
        u.append(kept, &message(n, 300), &flags(&[]), None).unwrap();
    }
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    assert!(
        eventually(SETTLE, || !replicator.status().held.is_empty()).await,
        "{:?}",
        replicator.status()
    );
    let status = replicator.status();
    assert_eq!(status.held[0].user, "lea");
    let reason = &status.held[0].reason;
    assert!(
        reason.contains("whole") && reason.contains("120 of the 120"),
        "{reason}"
    );
    assert_eq!(count(&replica.slot, "lea", "Kept"), 120);
    let before: Vec<u32> = {
        let r = replica.slot.user("lea").unwrap();
        let (_, ms) = r.snapshot(r.mailbox("Kept").unwrap().id).unwrap();
        ms.iter().map(|m| m.uid).collect()
    };
    assert_eq!(before, all, "the replica kept its own messages");

    assert!(replicator.confirm("lea"));
    settle(
        &replicator,
        &master,
        &replica.slot,
        "after the confirmation",
    )
    .await;
    assert!(replicator.status().held.is_empty());
    replicator.shutdown().await;
}

/// Deleting a mailbox the replica holds more than `DELETE_GUARD_MIN`
/// messages in removes every one of them: held like expunging them. An
/// admin's deletion of a user (the admin endpoint confirms it as it makes
/// it) is not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_large_mailbox_is_held_and_an_admin_user_deletion_is_not() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("max", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let u = master.user("max").unwrap();
    let big = u.create_mailbox("Big", None).unwrap().id;
    for n in 0..120 {
        u.append(big, &message(n, 300), &flags(&[]), None).unwrap();
    }
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "120 messages").await;

    u.delete_mailbox("Big").unwrap();
    assert!(
        eventually(SETTLE, || !replicator.status().held.is_empty()).await,
        "{:?}",
        replicator.status()
    );
    let reason = replicator.status().held[0].reason.clone();
    assert!(reason.contains("delete mailbox"), "{reason}");
    assert_eq!(count(&replica.slot, "max", "Big"), 120);
    assert!(replicator.confirm("max"));
    settle(
        &replicator,
        &master,
        &replica.slot,
        "after the confirmation",
    )
    .await;
    assert!(replica.slot.user("max").unwrap().mailbox("Big").is_err());

    // The admin endpoint deletes a user, then confirms the deletion.
    let r = master.user("max").unwrap();
    let inbox = r.mailbox("INBOX").unwrap().id;
    for n in 0..120 {
        r.append(inbox, &message(n, 300), &flags(&[]), None)
            .unwrap();
    }
    drop((u, r));
    settle(&replicator, &master, &replica.slot, "a full INBOX").await;
    master.delete_user("max").unwrap();
    assert!(!replicator.confirm("max"), "not held before");
    assert!(
        eventually(SETTLE, || replica.slot.account("max").unwrap().is_none()).await,
        "{:?}",
        replicator.status()
    );
    assert!(replicator.status().held.is_empty());
    replicator.shutdown().await;
}

/// A rogue master that knows the secret sends a body that does not hash to
/// its GUID: refused with `guid-mismatch`, counted, nothing stored; the
/// stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_does_not_match_its_guid_is_refused() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("lea", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "account").await;
    replicator.shutdown().await;

    let tcp_stream = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
    let channel = tls::connect(tcp_stream, tls::client_config())
        .await
        .unwrap();
    let mut stream = channel.stream;
    let mut decoder = FrameDecoder::for_handshake();
    let (mut hs, hello) = ClientHandshake::start(
        ClientConfig {
            secret: SECRET,
            cluster: CLUSTER.into(),
            store: STORE.into(),
            from_slot: "a1".into(),
            to_slot: "b1".into(),
            epoch: 1,
            capabilities: vec![],
            binding: channel.binding,
        },
        [9; 32],
    );
    stream.write_all(&encode_frame(&hello)).await.unwrap();
    let challenge = next(&mut stream, &mut decoder).await;
    let ClientStep::Send(proof) = hs.receive(challenge) else {
        panic!("handshake")
    };
    stream.write_all(&encode_frame(&proof)).await.unwrap();
    let welcome = next(&mut stream, &mut decoder).await;
    assert!(matches!(hs.receive(welcome), ClientStep::Established(_)));
    decoder.set_frame_len_max(slotmail_repl_proto::FRAME_LEN_MAX);
    let real = message(1, 100);
    let body = Body {
        user: "lea".into(),
        guid: Guid::of(&real).0,
        size: 5,
        offset: 0,
        last: true,
        bytes: b"fake!".to_vec(),
    };
    stream
        .write_all(&encode_frame(&Frame::Body(body)))
        .await
        .unwrap();
    match next(&mut stream, &mut decoder).await {
        Frame::Error(e) => assert_eq!(e.code, ErrorCode::GuidMismatch),
        other => panic!("{other:?}"),
    }
    stream.write_all(&encode_frame(&Frame::Ping)).await.unwrap();
    assert_eq!(
        next(&mut stream, &mut decoder).await,
        Frame::Pong(slotmail_repl_proto::Pong { bad_marks: 0 })
    );
    assert_eq!(replica.server.status().guid_mismatches, 1);
    let r = replica.slot.user("lea").unwrap();
    assert_eq!(r.missing_guids(&[Guid::of(&real)]).unwrap().len(), 1);
}

/// The next frame from a raw stream (the tests' rogue peers).
async fn next(stream: &mut BoxStream, decoder: &mut FrameDecoder) -> Frame {
    let mut buf = [0u8; 65536];
    loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            return f;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed");
        decoder.feed(&buf[..n]);
    }
}

/// Everything a peer receives until the replica closes the stream (at most
/// `SETTLE`).
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(SETTLE, stream.read(&mut buf))
            .await
            .expect("the replica closes the stream")
            .unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Peers without the secret: one that does not speak TLS, one that speaks
/// TLS but cannot prove the secret, one that sends requests without a
/// handshake, and a relay splicing a real master's TLS session to its own
/// session with the replica. All are refused; none receives more than the
/// Challenge, and nothing reaches the replica's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_peers_learn_nothing() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("una", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let hello_config = |binding| ClientConfig {
        secret: [0x11; 32],
        cluster: CLUSTER.into(),
        store: STORE.into(),
        from_slot: "a1".into(),
        to_slot: "b1".into(),
        epoch: 1,
        capabilities: vec![],
        binding,
    };

    // 1. Plaintext: the frames of a handshake without TLS. The replica
    // answers with a TLS alert at most, never a frame.
    let mut plain = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
    let (_, hello) = ClientHandshake::start(hello_config([0; 32]), [1; 32]);
    plain.write_all(&encode_frame(&hello)).await.unwrap();
    let got = read_to_close(&mut plain).await;
    assert!(
        got.is_empty() || got[0] == 0x15,
        "a plaintext peer got something other than a TLS alert: {got:02x?}"
    );
    let mut d = FrameDecoder::for_handshake();
    d.feed(&got);
    assert!(!matches!(d.next_frame(), Ok(Some(_))), "no frame");

    // 2. TLS, but a proof without the secret: Challenge, then Refused.
    let tcp_stream = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
    let mut channel = tls::connect(tcp_stream, tls::client_config())
        .await
        .unwrap();
    let (mut hs, hello) = ClientHandshake::start(hello_config(channel.binding), [2; 32]);
    channel
        .stream
        .write_all(&encode_frame(&hello))
        .await
        .unwrap();
    let mut d = FrameDecoder::for_handshake();
    let challenge = next(&mut channel.stream, &mut d).await;
    assert!(matches!(challenge, Frame::Challenge(_)));
    // Our machine sees that the replica does not know our (wrong) secret.
    assert!(matches!(hs.receive(challenge), ClientStep::Failed(_)));
    channel
        .stream
        .write_all(&encode_frame(&Frame::Proof(slotmail_repl_proto::Proof {
            proof_c: [0x42; 32],
        })))
        .await
        .unwrap();
    match next(&mut channel.stream, &mut d).await {
        Frame::Refused(r) => assert_eq!(r.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
    assert!(read_to_close(&mut channel.stream).await.is_empty());

    // 3. TLS, requests without a handshake: refused, no answer.
    let tcp_stream = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
    let mut channel = tls::connect(tcp_stream, tls::client_config())
        .await
        .unwrap();
    channel
        .stream
        .write_all(&encode_frame(&Frame::ListUsers(
            slotmail_repl_proto::ListUsers { after: None },
        )))
        .await
        .unwrap();
    let mut d = FrameDecoder::for_handshake();
    match next(&mut channel.stream, &mut d).await {
        Frame::Refused(r) => assert_eq!(r.code, ErrorCode::Protocol),
        other => panic!("{other:?}"),
    }
    assert!(read_to_close(&mut channel.stream).await.is_empty());

    // 4. A relay: the master's TLS session ends at the relay, which opens
    // its own to the replica and copies the bytes both ways. The proofs
    // cover each session's exporter, so both ends refuse.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let target = replica.addr;
    let relays = Arc::new(AtomicUsize::new(0));
    let counter = relays.clone();
    let relay_task = tokio::spawn(async move {
        let server_tls = tls::server_config("relay").unwrap();
        loop {
            let (inbound, _) = relay.accept().await.unwrap();
            let server_tls = server_tls.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut a) = tls::accept(inbound, server_tls).await else {
                    return;
                };
                let outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let Ok(mut b) = tls::connect(outbound, tls::client_config()).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut a.stream, &mut b.stream).await;
            });
        }
    });
    let r = Replicator::start(master.clone(), config(1), tcp(relay_addr));
    refused(&r, "auth").await;
    r.shutdown().await;
    relay_task.abort();
    assert!(relays.load(Ordering::SeqCst) >= 1);

    assert!(replica.server.status().refused >= 4);
    assert_eq!(replica.server.status().accepted, 0);
    assert!(
        replica.slot.accounts().unwrap().is_empty(),
        "nothing was applied"
    );
    // The real master, directly, is served.
    let r = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&r, &master, &replica.slot, "the real master").await;
    r.shutdown().await;
}

/// Lag at the store level (append returned on the master → the message is
/// in the replica's store), 200 samples; printed, with a sanity bound only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_level_lag() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    master.create_user("max", "pw", false).unwrap();
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "start").await;
    let u = master.user("max").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let r = replica.slot.user("max").unwrap();
    let rinbox = r.mailbox("INBOX").unwrap().id;
    let mut samples = Vec::new();
    for n in 0..200 {
        let m = message(n, 600);
        let u2 = u.clone();
        let out = tokio::task::spawn_blocking(move || u2.append(inbox, &m, &flags(&[]), None))
            .await
            .unwrap()
            .unwrap();
        let t0 = Instant::now();
        loop {
            if !r.messages_by_uid(rinbox, &[out.uid]).unwrap().is_empty() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let slow: Vec<(usize, u64)> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 50.0)
        .map(|(i, s)| (i, *s as u64))
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "store-level lag, 200 samples: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; over 50 ms: {slow:?}",
        samples[99], samples[197], samples[199]
    );
    assert!(samples[197] < 2000.0);
    replicator.shutdown().await;
}

/// What an IMAP session with the mailbox selected on the replica keeps
/// (`View` in slotmail-imap) and how it catches up after each commit it is
/// woken for (`Session::sync`): the changes above its MODSEQ, those at or
/// above its UIDNEXT being new messages, then both moved up to the
/// mailbox's.
struct SelectedView {
    mailbox: i64,
    modseq: u64,
    uidnext: u32,
    uids: Vec<u32>,
}

impl SelectedView {
    fn sync(&mut self, u: &slotmail_store::User) {
        let d = u.delta(self.mailbox, self.modseq).unwrap();
        for m in d.changed.iter().filter(|m| m.uid >= self.uidnext) {
            assert!(
                self.uids.last().is_none_or(|&last| m.uid > last),
                "uid {} announced after a higher one",
                m.uid
            );
            self.uids.push(m.uid);
        }
        self.uidnext = self.uidnext.max(d.mailbox.uidnext);
        self.modseq = self.modseq.max(d.mailbox.highestmodseq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_on_the_replica_sees_a_round_larger_than_one_apply() {
    let mdir = tempfile::tempdir().unwrap();
    let master = open_slot(mdir.path());
    let replica = Replica::start(tempfile::tempdir().unwrap(), "127.0.0.1:0", 1).await;
    master.create_user("ann", "pw-ann", false).unwrap();
    let u = master.user("ann").unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.append(inbox, &message(0, 300), &flags(&[]), None)
        .unwrap();
    // A pile of messages to copy from: doubled up to more than one
    // ApplyMailbox carries (every copy shares the one body).
    let pile = u.create_mailbox("Pile", None).unwrap().id;
    u.copy(inbox, &[1], pile).unwrap();
    let want = slotmail_repl_proto::MESSAGES_PER_APPLY_MAX + 100;
    loop {
        let uids = u
            .snapshot(pile)
            .unwrap()
            .1
            .iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>();
        if uids.len() >= want {
            break;
        }
        let take = uids.len().min(want - uids.len());
        u.copy(pile, &uids[..take], pile).unwrap();
    }
    let replicator = Replicator::start(master.clone(), config(1), tcp(replica.addr));
    settle(&replicator, &master, &replica.slot, "before the burst").await;

    // A session with INBOX selected on the replica, catching up after
    // every commit there.
    let ru = replica.slot.user("ann").unwrap();
    let rinbox = ru.mailbox("INBOX").unwrap();
    let view = Arc::new(Mutex::new(SelectedView {
        mailbox: rinbox.id,
        modseq: rinbox.highestmodseq,
        uidnext: rinbox.uidnext,
        uids: vec![1],
    }));
    let (v, ru2) = (view.clone(), ru.clone());
    replica
        .slot
        .add_change_listener(Arc::new(move |user: &str, _modseq: u64| {
            if user == "ann" {
                v.lock().unwrap().sync(&ru2);
            }
        }));

    // The burst: one commit on the master, more records than one apply.
    let uids: Vec<u32> = u.snapshot(pile).unwrap().1.iter().map(|m| m.uid).collect();
    u.copy(pile, &uids, inbox).unwrap();
    settle(&replicator, &master, &replica.slot, "after the burst").await;

    let expected: Vec<u32> = (1..=uids.len() as u32 + 1).collect();
    let (seen, uidnext, modseq) = {
        let view = view.lock().unwrap();
        (view.uids.clone(), view.uidnext, view.modseq)
    };
    assert_eq!(seen.len(), expected.len(), "messages the session saw");
    assert_eq!(seen, expected);
    let now = ru.mailbox("INBOX").unwrap();
    assert_eq!((uidnext, modseq), (now.uidnext, now.highestmodseq));
    replicator.shutdown().await;
}
