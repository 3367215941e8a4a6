//! One round of one user on one stream (docs/replication.md, "Syncing one
//! user"), and the request/response helpers it is made of.
//!
//! 1. `GetUser`: the replica's position `r` and digests. A replica without
//!    the user, with another user id, or ahead of the master gets the whole
//!    user.
//! 2. `changes_since(r)` on the master; `ApplyAccount` if the account's
//!    MODSEQ differs.
//! 3. The mass-deletion guard: a round that would remove more than half of
//!    the messages of a mailbox of more than 100 (by expunges, by sending it
//!    whole, or by deleting it), or delete more than half of a user's (more
//!    than 10) mailboxes, is held; the replica's per-mailbox message counts
//!    and `UIDNEXT`s in `UserState` are what it weighs.
//! 4. `DeleteMailbox` for deleted mailboxes the replica holds; then per
//!    changed mailbox, from one consistent snapshot: `HaveGuids`, `Body` for
//!    the missing ones (read through the store's verified read; a corrupt
//!    local body is fetched from the replica and repaired, else the message
//!    is skipped and reported), `ApplyMailbox` (split by count and size,
//!    full syncs by UID ranges), and the returned digest compared with the
//!    snapshot's.
//! 5. `ApplySubscriptions`, `Commit { modseq }`.
//!
//! A mailbox whose digest differs after a delta is sent whole in the next
//! round. A round found different by a full comparison (`check`) first
//! compares every mailbox digest and sends the differing mailboxes whole.

use crate::Exec;
use crate::client::{Dirty, Shared};
use crate::conn::Conn;
use crate::error::SyncError;
use crate::limits::{
    APPLY_BYTES_BUDGET, BODIES_IN_FLIGHT_MAX, BODY_BYTES_IN_FLIGHT_MAX, BODY_READ_BATCH_BYTES,
    BODY_READ_BATCH_MAX, BODY_WRITE_BUFFER_BYTES, DELETE_GUARD_FRACTION,
    DELETE_GUARD_MAILBOXES_MIN, DELETE_GUARD_MIN, RESPONSE_TIMEOUT, STAGING_BYTES_MAX,
    SUBSCRIPTIONS_BYTES_BUDGET,
};
use crate::records::{
    Side, account_record, mailbox_record, message_record, snapshot_digest, subscription_record,
    user_digests,
};
use crate::status::CorruptStatus;
use slotmail_repl_proto::{
    ApplyAccount, ApplyMailbox, ApplySubscriptions, BodyEvent, BodyReceiver, Commit, DeleteMailbox,
    DeleteUser, Digest, EXPUNGES_PER_APPLY_MAX, ErrorCode, Expunged, FetchBody, Frame, FrameType,
    GUIDS_PER_FRAME_MAX, GetUser, HaveGuids, HeldUser, ListUsers, MESSAGES_PER_APPLY_MAX,
    MailboxRecord, MailboxSummary, MessageRecord, SUBSCRIPTIONS_PER_FRAME_MAX, SubscriptionRecord,
    UidRange, Users, body_chunks, try_encode_frame,
};
use slotmail_store::{Account, Guid, MessageMeta, StoreError, User};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The replica acknowledged the user at `modseq`; `refull` are mailboxes
    /// whose digest differed and that the next round sends whole;
    /// `confirmation` is the operator's (or admin action's) confirmation
    /// the round ran under, now used up.
    Done {
        modseq: u64,
        refull: BTreeSet<String>,
        confirmation: Option<u64>,
    },
    /// The mass-deletion guard (or a user deletion) holds the user.
    Held { reason: String },
    /// Neither side has the user (any more).
    Gone { confirmation: Option<u64> },
}

// ----- requests ------------------------------------------------------------------

/// Send one request and take its one response; `Error` becomes
/// [`SyncError::Peer`].
async fn call(conn: &mut Conn, request: Frame) -> Result<Frame, SyncError> {
    let kind = request.frame_type();
    conn.send(&request).await?;
    match conn.recv_within(RESPONSE_TIMEOUT, "a response").await? {
        Frame::Error(reply) => Err(SyncError::Peer {
            request: kind,
            reply,
        }),
        frame => Ok(frame),
    }
}

async fn expect_ok(conn: &mut Conn, request: Frame) -> Result<(), SyncError> {
    let kind = request.frame_type();
    match call(conn, request).await? {
        Frame::Ok => Ok(()),
        other => Err(SyncError::Unexpected {
            request: kind,
            got: other.frame_type(),
        }),
    }
}

/// Keepalive; returns how many bodies the replica marked bad since it
/// started (`Pong`).
pub(crate) async fn ping(conn: &mut Conn) -> Result<u64, SyncError> {
    match call(conn, Frame::Ping).await? {
        Frame::Pong(p) => Ok(p.bad_marks),
        other => Err(SyncError::Unexpected {
            request: FrameType::Ping,
            got: other.frame_type(),
        }),
    }
}

/// One page of the replica's users.
pub(crate) async fn list_users(conn: &mut Conn, after: Option<String>) -> Result<Users, SyncError> {
    match call(conn, Frame::ListUsers(ListUsers { after })).await? {
        Frame::Users(u) => Ok(u),
        other => Err(SyncError::Unexpected {
            request: FrameType::ListUsers,
            got: other.frame_type(),
        }),
    }
}

async fn get_user(conn: &mut Conn, user: &str) -> Result<Option<HeldUser>, SyncError> {
    let request = Frame::GetUser(GetUser {
        user: user.to_string(),
    });
    match call(conn, request).await? {
        Frame::UserState(s) => Ok(s.held),
        other => Err(SyncError::Unexpected {
            request: FrameType::GetUser,
            got: other.frame_type(),
        }),
    }
}

async fn apply(conn: &mut Conn, request: ApplyMailbox) -> Result<Digest, SyncError> {
    match call(conn, Frame::ApplyMailbox(request)).await? {
        Frame::Applied(a) => Ok(a.digest),
        other => Err(SyncError::Unexpected {
            request: FrameType::ApplyMailbox,
            got: other.frame_type(),
        }),
    }
}

/// The replica's copy of a body, verified against its GUID; `None` if the
/// replica has no good copy.
async fn fetch_body(
    shared: &Shared,
    conn: &mut Conn,
    user: &str,
    guid: &Guid,
) -> Result<Option<Vec<u8>>, SyncError> {
    let request = Frame::FetchBody(FetchBody {
        user: user.to_string(),
        guid: guid.0,
    });
    conn.send(&request).await?;
    let mut receiver = BodyReceiver::new(shared.slot.limits().message_size_max);
    let mut bytes = Vec::new();
    loop {
        match conn.recv_within(RESPONSE_TIMEOUT, "a body").await? {
            Frame::Error(reply) if reply.code == ErrorCode::Missing => return Ok(None),
            Frame::Error(reply) => {
                return Err(SyncError::Peer {
                    request: FrameType::FetchBody,
                    reply,
                });
            }
            Frame::Body(chunk) if chunk.guid == guid.0 && chunk.user == user => {
                match receiver.accept(&chunk)? {
                    BodyEvent::Partial => {
                        if bytes.len() + chunk.bytes.len() > STAGING_BYTES_MAX {
                            return Err(SyncError::Unexpected {
                                request: FrameType::FetchBody,
                                got: FrameType::Body,
                            });
                        }
                        bytes.extend_from_slice(&chunk.bytes);
                    }
                    BodyEvent::Complete { .. } => {
                        bytes.extend_from_slice(&chunk.bytes);
                        return Ok(Some(bytes));
                    }
                    BodyEvent::Discarded => {}
                    BodyEvent::Failed(reply) => {
                        if reply.code == ErrorCode::GuidMismatch {
                            shared.count_guid_mismatch();
                        }
                        tracing::error!(user, %guid, detail = %reply.text, "the replica's copy of a body is bad too");
                        return Ok(None);
                    }
                }
            }
            other => {
                return Err(SyncError::Unexpected {
                    request: FrameType::FetchBody,
                    got: other.frame_type(),
                });
            }
        }
    }
}

// ----- the round -------------------------------------------------------------------

struct Local {
    account: Account,
    hash: String,
    user: Arc<User>,
    modseq: u64,
}

/// One planned mailbox: local handle, name, whether it is sent whole, and
/// the expunges since the replica's position (for the guard and ordering).
struct Planned {
    local_id: i64,
    name: String,
    full: bool,
    expunges: usize,
}

/// Run one round for `user`.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    user: &str,
    dirty: Dirty,
) -> Result<Outcome, SyncError> {
    // Taken before reading anything: a confirmation given after a change
    // (an admin deletion, `ctl repl confirm`) covers only rounds that see
    // the change.
    let confirmation = shared.confirmation(user);
    let confirmed = confirmation.is_some();
    let ex = shared.exec();
    let slot = shared.slot.clone();
    let name = user.to_string();
    let local = ex
        .run(move || -> Result<Option<Local>, StoreError> {
            let Some(account) = slot.account(&name)? else {
                return Ok(None);
            };
            let Some(hash) = slot.password_hash(&name)? else {
                return Ok(None);
            };
            let user = slot.user(&name)?;
            let modseq = user.modseq()?;
            Ok(Some(Local {
                account,
                hash,
                user,
                modseq,
            }))
        })
        .await?;
    let mut held = get_user(conn, user).await?;
    let Some(local) = local else {
        if held.is_none() {
            return Ok(Outcome::Gone { confirmation });
        }
        if !confirmed {
            return Ok(Outcome::Held {
                reason:
                    "the user does not exist on the master; confirm to delete the replica's copy"
                        .into(),
            });
        }
        expect_ok(
            conn,
            Frame::DeleteUser(DeleteUser {
                user: user.to_string(),
            }),
        )
        .await?;
        return Ok(Outcome::Gone { confirmation });
    };
    if let Some(h) = &held
        && h.user_id != local.account.user_id
    {
        if !confirmed {
            return Ok(Outcome::Held {
                reason: format!(
                    "the replica holds user id {} but the master {}; confirm to replace the replica's copy",
                    h.user_id, local.account.user_id
                ),
            });
        }
        expect_ok(
            conn,
            Frame::DeleteUser(DeleteUser {
                user: user.to_string(),
            }),
        )
        .await?;
        held = None;
    }
    let full_user = dirty.full_user || held.as_ref().is_none_or(|h| h.modseq > local.modseq);
    let since = match &held {
        Some(h) if !full_user => h.modseq,
        _ => 0,
    };
    let replica_boxes: BTreeMap<String, MailboxSummary> = held
        .as_ref()
        .map(|h| {
            h.mailboxes
                .iter()
                .map(|m| (m.mailbox_id.clone(), m.clone()))
                .collect()
        })
        .unwrap_or_default();
    if held
        .as_ref()
        .is_none_or(|h| h.account_modseq != local.account.modseq)
        || full_user
        || dirty.check
    {
        let account = account_record(&local.account, &local.hash, local.account.modseq);
        expect_ok(conn, Frame::ApplyAccount(ApplyAccount { account })).await?;
    }
    for guid in &dirty.repair {
        repair(shared, conn, &local.user, guid).await?;
    }

    // What to send.
    let u = local.user.clone();
    let changes = ex.run(move || u.changes_since(since)).await?;
    let mut plan: BTreeMap<String, Planned> = BTreeMap::new();
    for mb in &changes.mailboxes {
        plan.insert(
            mb.mailbox_id.clone(),
            Planned {
                local_id: mb.id,
                name: mb.name.clone(),
                full: full_user || dirty.full_mailboxes.contains(&mb.mailbox_id),
                expunges: 0,
            },
        );
    }
    let mut deletes: Vec<(String, u64)> = changes
        .deleted
        .iter()
        .filter(|t| replica_boxes.contains_key(&t.mailbox_id))
        .map(|t| (t.mailbox_id.clone(), t.modseq))
        .collect();
    if dirty.check || !dirty.full_mailboxes.is_empty() || held.is_some() && full_user {
        let u = local.user.clone();
        let all = ex.run(move || u.mailboxes()).await?;
        let mut differ: BTreeSet<String> = dirty.full_mailboxes.iter().cloned().collect();
        if dirty.check {
            let slot = shared.slot.clone();
            let me = shared.clone();
            let name = user.to_string();
            let digests = ex
                .run(move || user_digests(&slot, &name, Side::Master, &me.cache, &|_| false, false))
                .await?;
            for m in digests.map(|d| d.mailboxes).unwrap_or_default() {
                if replica_boxes.get(&m.mailbox_id).map(|r| &r.digest) != Some(&m.digest) {
                    differ.insert(m.mailbox_id);
                }
            }
        }
        for mb in &all {
            if differ.contains(&mb.mailbox_id) {
                plan.insert(
                    mb.mailbox_id.clone(),
                    Planned {
                        local_id: mb.id,
                        name: mb.name.clone(),
                        full: true,
                        expunges: 0,
                    },
                );
            }
        }
        // Mailboxes the replica holds and the master has no record of.
        let master_ids: BTreeSet<&str> = all.iter().map(|m| m.mailbox_id.as_str()).collect();
        for id in replica_boxes.keys() {
            if !master_ids.contains(id.as_str()) && !deletes.iter().any(|(d, _)| d == id) {
                deletes.push((id.clone(), local.modseq.max(1)));
            }
        }
    }
    for p in plan.values_mut().filter(|p| !p.full) {
        let u = local.user.clone();
        let id = p.local_id;
        p.expunges = match ex.run(move || u.expunges_since(id, since)).await {
            Ok(e) => e.len(),
            Err(StoreError::NoSuchMailbox(_)) => 0,
            Err(e) => return Err(e.into()),
        };
    }

    // The mass-deletion guard: weighed against what the replica holds,
    // whatever made the round (a delta, a full comparison, a whole user).
    if !confirmed && held.is_some() {
        let boxes = replica_boxes.len();
        if boxes > DELETE_GUARD_MAILBOXES_MIN && deletes.len() * 2 > boxes {
            return Ok(Outcome::Held {
                reason: format!(
                    "the round would delete {} of {boxes} mailboxes",
                    deletes.len()
                ),
            });
        }
        for (mailbox_id, _) in &deletes {
            if let Some(r) = replica_boxes.get(mailbox_id)
                && guard_trips(r.messages, r.messages)
            {
                return Ok(Outcome::Held {
                    reason: format!(
                        "the round would delete mailbox {mailbox_id} with the {} messages the replica holds in it",
                        r.messages
                    ),
                });
            }
        }
        for (mailbox_id, p) in &plan {
            let replica = replica_boxes.get(mailbox_id);
            if let Some(reason) =
                guard_mailbox(shared, &local.user, p, replica, since, full_user).await?
            {
                return Ok(Outcome::Held { reason });
            }
        }
    }

    // Send: deletions first (they free names), then mailboxes with only
    // additions before those that expunge (a MOVE's destination before its
    // source, so the moved bodies stay referenced on the replica).
    for (mailbox_id, modseq) in deletes {
        let request = Frame::DeleteMailbox(DeleteMailbox {
            user: user.to_string(),
            mailbox_id,
            modseq,
        });
        expect_ok(conn, request).await?;
    }
    let mut order: Vec<(&String, &Planned)> = plan.iter().collect();
    order.sort_by_key(|(_, p)| (p.full || p.expunges > 0, p.name.clone()));
    let mut refull = BTreeSet::new();
    for (mailbox_id, p) in order {
        let mismatch =
            sync_mailbox(shared, conn, &local.user, user, p.local_id, since, p.full).await?;
        if mismatch {
            shared.count_digest_mismatch(user, &p.name);
            tracing::warn!(user, mailbox = %p.name, full = p.full, "mailbox digest differs after applying");
            if !p.full {
                refull.insert(mailbox_id.clone());
            }
        }
    }
    if full_user || dirty.check {
        let u = local.user.clone();
        let all: Vec<SubscriptionRecord> = ex
            .run(move || u.subscription_records())
            .await?
            .iter()
            .map(subscription_record)
            .collect();
        send_subscriptions(conn, user, all, true).await?;
    } else if !changes.subscriptions.is_empty() {
        let records = changes
            .subscriptions
            .iter()
            .map(subscription_record)
            .collect();
        send_subscriptions(conn, user, records, false).await?;
    }
    let commit = Frame::Commit(Commit {
        user: user.to_string(),
        modseq: changes.modseq,
    });
    expect_ok(conn, commit).await?;
    Ok(Outcome::Done {
        modseq: changes.modseq,
        refull,
        confirmation,
    })
}

/// Whether removing `removed` of the `before` messages of one mailbox is a
/// mass deletion the guard holds.
fn guard_trips(removed: u64, before: u64) -> bool {
    before > DELETE_GUARD_MIN as u64 && removed as f64 > DELETE_GUARD_FRACTION * before as f64
}

/// How many of the `held` messages the replica holds in a mailbox a whole
/// send removes, estimated on the master: at least those the master has no
/// message for below the replica's `UIDNEXT` (`held - kept`, `kept` being
/// the master's messages below it), and at least the master's expunges of
/// UIDs below it since the replica's position (`tombstones`: a mailbox
/// emptied and refilled keeps its count). Never more than `held`.
fn full_send_removes(held: u64, kept: u64, tombstones: u64) -> u64 {
    held.saturating_sub(kept).max(tombstones).min(held)
}

/// Why the guard holds the round for planned mailbox `p`, if it does.
/// `replica` is the mailbox as the replica reported it (none: the replica
/// does not hold it, so nothing of it can be removed there).
async fn guard_mailbox(
    shared: &Shared,
    u: &Arc<User>,
    p: &Planned,
    replica: Option<&MailboxSummary>,
    since: u64,
    full_user: bool,
) -> Result<Option<String>, SyncError> {
    let ex = shared.exec();
    let id = p.local_id;
    if !p.full {
        if p.expunges == 0 {
            return Ok(None);
        }
        let uu = u.clone();
        let count = match ex.run(move || uu.status(id)).await {
            Ok(s) => u64::from(s.messages),
            Err(StoreError::NoSuchMailbox(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let expunges = p.expunges as u64;
        let before = count + expunges;
        return Ok(guard_trips(expunges, before).then(|| {
            format!(
                "the round would expunge {expunges} of {before} messages of mailbox {}",
                p.name
            )
        }));
    }
    let Some(replica) = replica else {
        return Ok(None);
    };
    let held = replica.messages;
    if !guard_trips(held, held) {
        return Ok(None);
    }
    let below = replica.uidnext;
    let uu = u.clone();
    let weighed = ex
        .run(move || -> Result<(u64, u64), StoreError> {
            let (_, messages) = uu.snapshot(id)?;
            let kept = messages.iter().filter(|m| m.uid < below).count() as u64;
            let tombstones = if full_user {
                // No position to count from: the master's whole history
                // of expunges says nothing about what the replica holds.
                0
            } else {
                uu.expunges_since(id, since)?
                    .iter()
                    .filter(|(uid, _)| *uid < below)
                    .count() as u64
            };
            Ok((kept, tombstones))
        })
        .await;
    let (kept, tombstones) = match weighed {
        Ok(w) => w,
        Err(StoreError::NoSuchMailbox(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let removed = full_send_removes(held, kept, tombstones);
    Ok(guard_trips(removed, held).then(|| {
        format!(
            "the round would send mailbox {} whole, removing {removed} of the {held} messages the replica holds in it",
            p.name
        )
    }))
}

/// Send subscription records in frames that fit; with `full`, the first
/// frame replaces the replica's list and the others add to it.
async fn send_subscriptions(
    conn: &mut Conn,
    user: &str,
    records: Vec<SubscriptionRecord>,
    full: bool,
) -> Result<(), SyncError> {
    let mut batches: Vec<Vec<SubscriptionRecord>> = vec![Vec::new()];
    let mut bytes = 0;
    for r in records {
        let size = r.name.len() + 16;
        let last = batches.last_mut().expect("at least one batch");
        if !last.is_empty()
            && (last.len() >= SUBSCRIPTIONS_PER_FRAME_MAX
                || bytes + size > SUBSCRIPTIONS_BYTES_BUDGET)
        {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("at least one batch").push(r);
    }
    for (i, subscriptions) in batches.into_iter().enumerate() {
        let request = Frame::ApplySubscriptions(ApplySubscriptions {
            user: user.to_string(),
            subscriptions,
            full: full && i == 0,
        });
        expect_ok(conn, request).await?;
    }
    Ok(())
}

/// Fetch the replica's copy of a body that is corrupt or missing here and
/// repair the local file.
async fn repair(
    shared: &Shared,
    conn: &mut Conn,
    u: &Arc<User>,
    guid: &Guid,
) -> Result<(), SyncError> {
    let ex = shared.exec();
    let user = u.clone();
    let g = *guid;
    let Some(size) = ex.run(move || user.content_size(&g)).await? else {
        return Ok(());
    };
    let user = u.clone();
    if ex.run(move || user.read_message(&g, size)).await.is_ok() {
        return Ok(());
    }
    match fetch_body(shared, conn, u.name(), guid).await? {
        Some(bytes) => {
            let user = u.clone();
            ex.run(move || user.repair_body(&g, &bytes)).await?;
            shared.count_repaired();
        }
        None => {
            tracing::error!(user = %u.name(), %guid, "no good copy of a corrupt body on either side");
        }
    }
    Ok(())
}

/// The master's window of pipelined body transfers on one stream
/// (docs/replication.md, "Pipelined body transfers"): at most
/// [`BODIES_IN_FLIGHT_MAX`] transfers and [`BODY_BYTES_IN_FLIGHT_MAX`]
/// bytes unanswered. Frames are gathered into one buffer and written
/// [`BODY_WRITE_BUFFER_BYTES`] at a time, and always before waiting for an
/// answer. Answers come in order: the oldest transfer's answer first.
struct Window {
    inflight: VecDeque<(Guid, usize)>,
    bytes: usize,
    out: Vec<u8>,
    /// Bodies the replica refused (`guid-mismatch`, `too-big`).
    refused: Vec<Guid>,
}

impl Window {
    fn new() -> Window {
        Window {
            inflight: VecDeque::new(),
            bytes: 0,
            out: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Queue one body transfer, first making room in the window.
    async fn send(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        user: &str,
        guid: Guid,
        bytes: &[u8],
    ) -> Result<(), SyncError> {
        // Answers that have arrived already: read them, so the replica's
        // answers never pile up unread.
        while !self.inflight.is_empty() {
            match conn.try_recv().await? {
                Some(frame) => self.answer(shared, conn, user, frame).await?,
                None => break,
            }
        }
        while self.inflight.len() >= BODIES_IN_FLIGHT_MAX
            || (!self.inflight.is_empty() && self.bytes + bytes.len() > BODY_BYTES_IN_FLIGHT_MAX)
        {
            self.wait_one(shared, conn, user).await?;
        }
        for chunk in body_chunks(user, guid.0, bytes) {
            self.out
                .extend_from_slice(&try_encode_frame(&Frame::Body(chunk))?);
        }
        self.inflight.push_back((guid, bytes.len()));
        self.bytes += bytes.len();
        if self.out.len() >= BODY_WRITE_BUFFER_BYTES {
            self.flush(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        if !self.out.is_empty() {
            conn.send_encoded(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Wait for the oldest transfer's answer.
    async fn wait_one(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        user: &str,
    ) -> Result<(), SyncError> {
        self.flush(conn).await?;
        let frame = conn.recv_within(RESPONSE_TIMEOUT, "a response").await?;
        self.answer(shared, conn, user, frame).await
    }

    /// Take one answer. A refusal that ends the round (a store error on the
    /// replica) leaves the answers to the later transfers on the stream:
    /// they are read and dropped first, so the stream's next request gets
    /// its own answer, not one of theirs.
    async fn answer(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        user: &str,
        frame: Frame,
    ) -> Result<(), SyncError> {
        let result = self.on_answer(shared, user, frame);
        if result.is_err() {
            self.flush(conn).await?;
            while self.inflight.pop_front().is_some() {
                conn.recv_within(RESPONSE_TIMEOUT, "a response").await?;
            }
            self.bytes = 0;
        }
        result
    }

    /// Take every outstanding answer: the stream is free for other
    /// requests afterwards.
    async fn drain(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        user: &str,
    ) -> Result<(), SyncError> {
        self.flush(conn).await?;
        while !self.inflight.is_empty() {
            self.wait_one(shared, conn, user).await?;
        }
        Ok(())
    }

    fn on_answer(&mut self, shared: &Shared, user: &str, frame: Frame) -> Result<(), SyncError> {
        let Some((guid, len)) = self.inflight.pop_front() else {
            return Err(SyncError::Unexpected {
                request: FrameType::Body,
                got: frame.frame_type(),
            });
        };
        self.bytes -= len;
        match frame {
            Frame::Ok => {
                shared.count_body(len as u64);
                Ok(())
            }
            Frame::Error(reply)
                if matches!(reply.code, ErrorCode::GuidMismatch | ErrorCode::TooBig) =>
            {
                if reply.code == ErrorCode::GuidMismatch {
                    shared.count_guid_mismatch();
                }
                tracing::error!(user, %guid, cause = %reply, "the replica refused a body");
                self.refused.push(guid);
                Ok(())
            }
            Frame::Error(reply) => Err(SyncError::Peer {
                request: FrameType::Body,
                reply,
            }),
            other => Err(SyncError::Unexpected {
                request: FrameType::Body,
                got: other.frame_type(),
            }),
        }
    }
}

/// A group of bodies read: each body's bytes or its error.
type ReadGroup = Vec<(Guid, Result<Vec<u8>, StoreError>)>;

/// The next group of bodies to read: at most [`BODY_READ_BATCH_MAX`]
/// bodies, and [`BODY_READ_BATCH_BYTES`] unless it is a single body.
fn take_group(rest: &mut &[(Guid, u64)]) -> Option<Vec<(Guid, u64)>> {
    if rest.is_empty() {
        return None;
    }
    let mut n = 0;
    let mut bytes = 0;
    while n < rest.len() && n < BODY_READ_BATCH_MAX && (n == 0 || bytes < BODY_READ_BATCH_BYTES) {
        bytes += rest[n].1;
        n += 1;
    }
    let (group, tail) = rest.split_at(n);
    *rest = tail;
    Some(group.to_vec())
}

/// Start reading a group of bodies through the store's verified read, in
/// one blocking call, while the caller goes on: each body's bytes or its
/// error. At most one group is read ahead, so the bytes held are bounded
/// by two groups.
fn read_ahead(
    ex: Exec,
    u: &Arc<User>,
    group: Vec<(Guid, u64)>,
) -> tokio::task::JoinHandle<ReadGroup> {
    let user = u.clone();
    tokio::spawn(ex.run(move || {
        group
            .into_iter()
            .map(|(g, size)| (g, user.read_message(&g, size)))
            .collect()
    }))
}

/// Give the replica the bodies it lacks, pipelined: each read and verified
/// here, or, when the local copy is corrupt, repaired from the replica's
/// copy first. Returns the bodies that could not be given (no good copy on
/// either side, or refused by the replica) and those expunged here
/// meanwhile.
async fn provide_bodies(
    shared: &Shared,
    conn: &mut Conn,
    u: &Arc<User>,
    window: &mut Window,
    missing: &[(Guid, u64)],
) -> Result<(Vec<Guid>, Vec<Guid>), SyncError> {
    let ex = shared.exec();
    let user = u.name();
    let mut bad = Vec::new();
    let mut gone = Vec::new();
    let mut rest = missing;
    // The next group is read while the current one is sent.
    let mut next = take_group(&mut rest).map(|g| read_ahead(ex, u, g));
    while let Some(reading) = next.take() {
        let group = reading.await.unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down: nothing can continue.
            Err(e) => panic!("reading bodies cancelled: {e}"),
        });
        next = take_group(&mut rest).map(|g| read_ahead(ex, u, g));
        for (guid, read) in group {
            let body = match read {
                Ok(body) => body,
                Err(StoreError::Expunged(_)) => {
                    gone.push(guid);
                    continue;
                }
                Err(e) if e.is_corruption() => {
                    // The stream is needed for FetchBody: take the
                    // window's answers first.
                    window.drain(shared, conn, user).await?;
                    let Some(good) = fetch_body(shared, conn, user, &guid).await? else {
                        bad.push(guid);
                        continue;
                    };
                    let repaired = u.clone();
                    let copy = good.clone();
                    ex.run(move || repaired.repair_body(&guid, &copy)).await?;
                    shared.count_repaired();
                    good
                }
                Err(e) => return Err(e.into()),
            };
            window.send(shared, conn, user, guid, &body).await?;
        }
    }
    window.drain(shared, conn, user).await?;
    bad.append(&mut window.refused);
    Ok((bad, gone))
}

/// Rough encoded size of a message record, for splitting.
fn record_bytes(r: &MessageRecord) -> usize {
    64 + r.keywords.iter().map(|k| k.len() + 2).sum::<usize>()
}

/// Split records into `ApplyMailbox`-sized batches.
fn batches(records: &[MessageRecord]) -> Vec<&[MessageRecord]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        let size = record_bytes(r);
        if i > start && (i - start >= MESSAGES_PER_APPLY_MAX || bytes + size > APPLY_BYTES_BUDGET) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// The `ApplyMailbox` requests that bring one mailbox to `record`: the
/// records split by count and size (a full sync by UID ranges), the
/// expunges in chunks. Only the last request carries `record` as it is; an
/// earlier one carries it held back (see [`hold_back`]).
fn apply_requests(
    user: &str,
    record: MailboxRecord,
    sendable: &[MessageRecord],
    protect: &[u32],
    expunged: &[Expunged],
    full: bool,
) -> Vec<ApplyMailbox> {
    let request =
        |messages: Vec<MessageRecord>, expunged: Vec<Expunged>, full: Option<UidRange>| {
            ApplyMailbox {
                user: user.to_string(),
                mailbox: record.clone(),
                messages,
                expunged,
                full,
            }
        };
    let expunge_chunks: Vec<&[Expunged]> = expunged.chunks(EXPUNGES_PER_APPLY_MAX).collect();
    let mut out = Vec::new();
    if full {
        let segments = full_segments(sendable, protect);
        let extra = expunge_chunks.len().saturating_sub(segments.len());
        for chunk in &expunge_chunks[..extra] {
            out.push(request(Vec::new(), chunk.to_vec(), None));
        }
        for (i, (range, records)) in segments.into_iter().enumerate() {
            let exp = expunge_chunks
                .get(extra + i)
                .map(|c| c.to_vec())
                .unwrap_or_default();
            out.push(request(records, exp, Some(range)));
        }
    } else {
        let parts = batches(sendable);
        let n = parts.len().max(expunge_chunks.len()).max(1);
        for i in 0..n {
            let records = parts.get(i).map(|p| p.to_vec()).unwrap_or_default();
            let exp = expunge_chunks
                .get(i)
                .map(|c| c.to_vec())
                .unwrap_or_default();
            out.push(request(records, exp, None));
        }
    }
    hold_back(&mut out);
    out
}

/// Keep each request but the last from announcing what later requests
/// bring. Every request applies in its own transaction, and an IMAP session
/// on the replica takes the mailbox's `HIGHESTMODSEQ` and `UIDNEXT` after
/// each one as the point up to which it has seen everything (it asks only
/// for changes above that MODSEQ, and takes UIDs below that UIDNEXT as
/// known): with the final record on the first request, the messages of
/// the later ones would never reach it. So an earlier request's record
/// says `HIGHESTMODSEQ` just below the lowest MODSEQ still to come and
/// `UIDNEXT` at the lowest UID still to come (the replica never lowers
/// its `UIDNEXT`); the last request sets the true values.
fn hold_back(requests: &mut [ApplyMailbox]) {
    let mut modseq_floor = u64::MAX;
    let mut uid_floor = u32::MAX;
    for r in requests.iter_mut().rev() {
        r.mailbox.highestmodseq = r.mailbox.highestmodseq.min(modseq_floor.saturating_sub(1));
        r.mailbox.uidnext = r.mailbox.uidnext.min(uid_floor);
        for m in &r.messages {
            modseq_floor = modseq_floor.min(m.modseq);
            uid_floor = uid_floor.min(m.uid);
        }
        for e in &r.expunged {
            modseq_floor = modseq_floor.min(e.modseq);
        }
    }
}

/// Cut a full sync into `ApplyMailbox` UID ranges that together cover every
/// UID except `protect` (messages left as the replica has them), each with
/// the records of its range. `records` and `protect` ascend by UID.
fn full_segments(
    records: &[MessageRecord],
    protect: &[u32],
) -> Vec<(UidRange, Vec<MessageRecord>)> {
    let mut out = Vec::new();
    let mut next = 0;
    let mut emit = |first: u32, last: u32, out: &mut Vec<(UidRange, Vec<MessageRecord>)>| {
        // Records below the range (a protected UID) belong to no range.
        while next < records.len() && records[next].uid < first {
            next += 1;
        }
        let begin = next;
        while next < records.len() && records[next].uid <= last {
            next += 1;
        }
        let inside = &records[begin..next];
        let mut lo = first;
        let parts = batches(inside);
        if parts.is_empty() {
            out.push((UidRange { first, last }, Vec::new()));
            return;
        }
        for (i, part) in parts.iter().enumerate() {
            let hi = if i + 1 == parts.len() {
                last
            } else {
                part.last().expect("batches are not empty").uid
            };
            out.push((
                UidRange {
                    first: lo,
                    last: hi,
                },
                part.to_vec(),
            ));
            lo = hi.saturating_add(1);
        }
    };
    let mut start: u32 = 1;
    for &p in protect {
        if p > start {
            emit(start, p - 1, &mut out);
        }
        match p.checked_add(1) {
            Some(s) => start = s,
            None => return out,
        }
    }
    emit(start, u32::MAX, &mut out);
    out
}

/// Sync one mailbox from one consistent snapshot. Returns whether its digest
/// differs afterwards for no known reason.
async fn sync_mailbox(
    shared: &Shared,
    conn: &mut Conn,
    u: &Arc<User>,
    user: &str,
    local_id: i64,
    since: u64,
    full: bool,
) -> Result<bool, SyncError> {
    let ex = shared.exec();
    let uu = u.clone();
    let snapshot = ex
        .run(move || -> Result<_, StoreError> {
            let (info, messages) = uu.snapshot(local_id)?;
            let expunged = uu.expunges_since(local_id, since)?;
            Ok((info, messages, expunged))
        })
        .await;
    let (info, messages, expunged) = match snapshot {
        Ok(s) => s,
        // Deleted meanwhile: the next round carries its tombstone.
        Err(StoreError::NoSuchMailbox(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let present: HashSet<u32> = messages.iter().map(|m| m.uid).collect();
    let expunged: Vec<Expunged> = expunged
        .into_iter()
        .filter(|(uid, _)| !present.contains(uid))
        .map(|(uid, modseq)| Expunged { uid, modseq })
        .collect();
    let to_send: Vec<&MessageMeta> = messages
        .iter()
        .filter(|m| full || m.modseq > since)
        .collect();

    // Bodies the replica lacks.
    let mut sizes: HashMap<Guid, u64> = HashMap::new();
    let mut order: Vec<Guid> = Vec::new();
    for m in &to_send {
        if sizes.insert(m.guid, m.size).is_none() {
            order.push(m.guid);
        }
    }
    let mut skipped: HashSet<Guid> = HashSet::new();
    let mut gone = false;
    let mut window = Window::new();
    for chunk in order.chunks(GUIDS_PER_FRAME_MAX) {
        let request = Frame::HaveGuids(HaveGuids {
            user: user.to_string(),
            guids: chunk.iter().map(|g| g.0).collect(),
        });
        let missing = match call(conn, request).await? {
            Frame::Missing(m) => m.guids,
            other => {
                return Err(SyncError::Unexpected {
                    request: FrameType::HaveGuids,
                    got: other.frame_type(),
                });
            }
        };
        let mut wanted = Vec::with_capacity(missing.len());
        for g in missing {
            let guid = Guid(g);
            let Some(&size) = sizes.get(&guid) else {
                return Err(SyncError::Unexpected {
                    request: FrameType::HaveGuids,
                    got: FrameType::Missing,
                });
            };
            wanted.push((guid, size));
        }
        let (bad, expunged_here) = provide_bodies(shared, conn, u, &mut window, &wanted).await?;
        gone |= !expunged_here.is_empty();
        skipped.extend(expunged_here);
        for guid in bad {
            skipped.insert(guid);
            for m in to_send.iter().filter(|m| m.guid == guid) {
                shared.report_corrupt(CorruptStatus {
                    user: user.to_string(),
                    mailbox: info.name.clone(),
                    uid: m.uid,
                    guid: guid.to_hex(),
                });
            }
        }
    }

    // Records.
    let sendable: Vec<MessageRecord> = to_send
        .iter()
        .filter(|m| !skipped.contains(&m.guid))
        .map(|m| message_record(m))
        .collect();
    let protect: Vec<u32> = to_send
        .iter()
        .filter(|m| skipped.contains(&m.guid))
        .map(|m| m.uid)
        .collect();
    let requests = apply_requests(
        user,
        mailbox_record(&info),
        &sendable,
        &protect,
        &expunged,
        full,
    );
    let mut digest = None;
    for request in requests {
        digest = Some(apply(conn, request).await?);
    }
    let expected = snapshot_digest(&info, &messages, |_| false);
    Ok(digest != Some(expected) && skipped.is_empty() && !gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32) -> MessageRecord {
        MessageRecord {
            uid,
            guid: [0; 32],
            size: 1,
            internaldate: 0,
            tz_offset: 0,
            flags: 0,
            keywords: Vec::new(),
            modseq: 1,
        }
    }

    #[test]
    fn a_whole_send_is_weighed_by_what_the_replica_holds() {
        // Emptied: every message the replica holds goes.
        assert_eq!(full_send_removes(150, 0, 0), 150);
        // Emptied and refilled above the replica's UIDNEXT: the same.
        assert_eq!(full_send_removes(150, 0, 150), 150);
        // Emptied and refilled below it (a replica behind): the tombstones
        // tell, bounded by what the replica holds.
        assert_eq!(full_send_removes(150, 150, 400), 150);
        assert_eq!(full_send_removes(150, 140, 60), 60);
        // Unchanged, or grown.
        assert_eq!(full_send_removes(150, 150, 0), 0);
        assert_eq!(full_send_removes(150, 300, 0), 0);
        assert!(guard_trips(101, 101));
        assert!(!guard_trips(100, 100));
        assert!(!guard_trips(50, 101));
        assert!(guard_trips(51, 101));
    }

    #[test]
    fn full_segments_cover_every_uid_but_the_protected() {
        let records: Vec<MessageRecord> = [1, 2, 5, 9].into_iter().map(rec).collect();
        let segs = full_segments(&records, &[5]);
        let ranges: Vec<(u32, u32)> = segs.iter().map(|(r, _)| (r.first, r.last)).collect();
        assert_eq!(ranges, [(1, 4), (6, u32::MAX)]);
        assert_eq!(segs[0].1.iter().map(|r| r.uid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(segs[1].1.iter().map(|r| r.uid).collect::<Vec<_>>(), [9]);
        let all = full_segments(&[], &[]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, UidRange::ALL);
        // Many records: consecutive ranges, each within the limits.
        let many: Vec<MessageRecord> = (1..=(MESSAGES_PER_APPLY_MAX as u32 * 2 + 5))
            .map(rec)
            .collect();
        let segs = full_segments(&many, &[]);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0].0.first, 1);
        for w in segs.windows(2) {
            assert_eq!(w[0].0.last + 1, w[1].0.first);
        }
        assert_eq!(segs[2].0.last, u32::MAX);
        assert!(segs.iter().all(|(_, r)| r.len() <= MESSAGES_PER_APPLY_MAX));
    }

    /// What an IMAP session on the replica does after every commit it is
    /// woken for (`Session::sync` in slotmail-imap): ask for the changes
    /// above the MODSEQ it has seen, take those at or above its UIDNEXT as
    /// new messages, then move both up to the mailbox's.
    struct Session {
        modseq: u64,
        uidnext: u32,
        announced: Vec<u32>,
    }

    impl Session {
        fn sync(&mut self, u: &User, mailbox: i64) {
            let d = u.delta(mailbox, self.modseq).unwrap();
            for m in d.changed.iter().filter(|m| m.uid >= self.uidnext) {
                assert!(
                    self.announced.last().is_none_or(|&last| m.uid > last),
                    "uid {} announced after a higher one",
                    m.uid
                );
                self.announced.push(m.uid);
            }
            self.uidnext = self.uidnext.max(d.mailbox.uidnext);
            self.modseq = self.modseq.max(d.mailbox.highestmodseq);
        }
    }

    /// Apply requests the way the sync server does, one transaction each,
    /// with the session catching up after each.
    fn apply_all(u: &User, requests: Vec<ApplyMailbox>, session: &mut Session) -> i64 {
        let mut id = 0;
        for req in requests {
            let messages: Vec<MessageMeta> = req
                .messages
                .iter()
                .map(|m| crate::records::message_meta(m).unwrap())
                .collect();
            let expunged: Vec<(u32, u64)> =
                req.expunged.iter().map(|e| (e.uid, e.modseq)).collect();
            u.apply_mailbox_exact(
                &crate::records::mailbox_apply(&req.mailbox),
                Some(&req.mailbox.keywords),
                &messages,
                &expunged,
                req.full.map(|r| (r.first, r.last)),
            )
            .unwrap();
            id = u
                .mailbox_by_mailbox_id(&req.mailbox.mailbox_id)
                .unwrap()
                .unwrap()
                .id;
            session.sync(u, id);
        }
        id
    }

    #[test]
    fn a_replica_session_sees_every_message_of_a_round_split_into_several_applies() {
        let dir = tempfile::tempdir().unwrap();
        let slot =
            slotmail_store::Slot::open(dir.path(), slotmail_store::Options::default()).unwrap();
        slot.create_user("ann", "pw-ann", false).unwrap();
        let u = slot.user("ann").unwrap();
        let body = b"From: a@example.org\r\nSubject: burst\r\n\r\nhello\r\n";
        let guid = Guid::of(body);
        u.put_body(&guid, body).unwrap();
        let rec = |uid: u32, modseq: u64, flags: u8| MessageRecord {
            uid,
            guid: guid.0,
            size: body.len() as u64,
            internaldate: 1_700_000_000,
            tz_offset: 0,
            flags,
            keywords: Vec::new(),
            modseq,
        };
        let record = |uidnext: u32, highestmodseq: u64| MailboxRecord {
            mailbox_id: "mb-archive".into(),
            name: "Archive".into(),
            uidvalidity: 7,
            uidnext,
            highestmodseq,
            special_use: None,
            keywords: Vec::new(),
            modseq: 5,
        };
        // A first round brings one message; a session selects the mailbox.
        let mut session = Session {
            modseq: 0,
            uidnext: 1,
            announced: Vec::new(),
        };
        let first = apply_requests("ann", record(2, 10), &[rec(1, 10, 0)], &[], &[], false);
        let id = apply_all(&u, first, &mut session);
        assert_eq!(session.announced, [1]);

        // The next round: more deliveries than one ApplyMailbox may carry,
        // and message 1 flagged last (the highest MODSEQ, in the first
        // batch since records go by UID).
        let n = MESSAGES_PER_APPLY_MAX as u32 + 100;
        let top = 11 + u64::from(n);
        let mut records = vec![rec(1, top, 1)];
        records.extend((2..n + 2).map(|uid| rec(uid, 9 + u64::from(uid), 0)));
        let requests = apply_requests("ann", record(n + 2, top), &records, &[], &[], false);
        assert!(requests.len() > 1, "the round must take several applies");
        apply_all(&u, requests, &mut session);

        let expected: Vec<u32> = (1..n + 2).collect();
        assert_eq!(session.announced.len(), expected.len());
        assert_eq!(session.announced, expected);
        let info = u.mailbox_by_id(id).unwrap();
        assert_eq!((info.uidnext, info.highestmodseq), (n + 2, top));
        assert_eq!((session.uidnext, session.modseq), (n + 2, top));
    }
}
