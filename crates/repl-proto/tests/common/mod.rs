//! Proptest strategies for every message type of the protocol, shared by the
//! integration tests. Every strategy yields messages that pass
//! `Frame::validate` (small lists, consistent body chunks, ordered UID
//! ranges), so that a round trip must reproduce them exactly.

#![allow(dead_code)]

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use slotmail_repl_proto::*;

/// Short strings, Unicode included.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

/// 32 hex digits, like a user or mailbox id.
pub fn hex_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{32}"
}

pub fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

pub fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (error_code(), text()).prop_map(|(code, text)| ErrorReply { code, text })
}

pub fn keywords() -> impl Strategy<Value = Vec<String>> {
    vec("\\$?[A-Za-z]{1,8}", 0..4)
}

pub fn mailbox_record() -> impl Strategy<Value = MailboxRecord> {
    (
        hex_id(),
        text(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        option::of(text()),
        keywords(),
        any::<u64>(),
    )
        .prop_map(
            |(
                mailbox_id,
                name,
                uidvalidity,
                uidnext,
                highestmodseq,
                special_use,
                keywords,
                modseq,
            )| {
                MailboxRecord {
                    mailbox_id,
                    name,
                    uidvalidity,
                    uidnext,
                    highestmodseq,
                    special_use,
                    keywords,
                    modseq,
                }
            },
        )
}

pub fn message_record() -> impl Strategy<Value = MessageRecord> {
    (
        any::<u32>(),
        bytes32(),
        any::<u64>(),
        any::<i64>(),
        any::<i32>(),
        0..=FLAGS_MASK,
        keywords(),
        any::<u64>(),
    )
        .prop_map(
            |(uid, guid, size, internaldate, tz_offset, flags, keywords, modseq)| MessageRecord {
                uid,
                guid,
                size,
                internaldate,
                tz_offset,
                flags,
                keywords,
                modseq,
            },
        )
}

pub fn account_record() -> impl Strategy<Value = AccountRecord> {
    (
        text(),
        hex_id(),
        text(),
        any::<bool>(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        any::<u64>(),
    )
        .prop_map(
            |(name, user_id, password_hash, is_admin, quota_bytes, quota_messages, modseq)| {
                AccountRecord {
                    name,
                    user_id,
                    password_hash,
                    is_admin,
                    quota_bytes,
                    quota_messages,
                    modseq,
                }
            },
        )
}

pub fn subscription_record() -> impl Strategy<Value = SubscriptionRecord> {
    (text(), any::<bool>(), any::<u64>()).prop_map(|(name, subscribed, modseq)| {
        SubscriptionRecord {
            name,
            subscribed,
            modseq,
        }
    })
}

pub fn expunged() -> impl Strategy<Value = Expunged> {
    (any::<u32>(), any::<u64>()).prop_map(|(uid, modseq)| Expunged { uid, modseq })
}

pub fn uid_range() -> impl Strategy<Value = UidRange> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| UidRange {
        first: a.min(b),
        last: a.max(b),
    })
}

pub fn mailbox_summary() -> impl Strategy<Value = MailboxSummary> {
    (hex_id(), bytes32(), any::<u64>(), any::<u32>()).prop_map(
        |(mailbox_id, digest, messages, uidnext)| MailboxSummary {
            mailbox_id,
            digest,
            messages,
            uidnext,
        },
    )
}

pub fn user_summary() -> impl Strategy<Value = UserSummary> {
    (text(), hex_id(), any::<u64>(), any::<u64>(), bytes32()).prop_map(
        |(name, user_id, modseq, account_modseq, digest)| UserSummary {
            name,
            user_id,
            modseq,
            account_modseq,
            digest,
        },
    )
}

pub fn held_user() -> impl Strategy<Value = HeldUser> {
    (
        hex_id(),
        any::<u64>(),
        any::<u64>(),
        bytes32(),
        vec(mailbox_summary(), 0..4),
    )
        .prop_map(
            |(user_id, modseq, account_modseq, digest, mailboxes)| HeldUser {
                user_id,
                modseq,
                account_modseq,
                digest,
                mailboxes,
            },
        )
}

pub fn hello() -> impl Strategy<Value = Hello> {
    (
        vec(text(), 0..3),
        text(),
        text(),
        text(),
        text(),
        any::<u64>(),
        bytes32(),
    )
        .prop_map(
            |(capabilities, cluster, store, from_slot, to_slot, epoch, nonce_c)| Hello {
                version: PROTOCOL_VERSION,
                capabilities,
                cluster,
                store,
                from_slot,
                to_slot,
                epoch,
                nonce_c,
            },
        )
}

pub fn challenge() -> impl Strategy<Value = Challenge> {
    (
        vec(text(), 0..3),
        text(),
        any::<u64>(),
        bytes32(),
        bytes32(),
    )
        .prop_map(|(capabilities, slot, epoch, nonce_s, proof_s)| Challenge {
            version: PROTOCOL_VERSION,
            capabilities,
            slot,
            epoch,
            nonce_s,
            proof_s,
        })
}

/// A body chunk consistent in itself.
pub fn body() -> impl Strategy<Value = Body> {
    (
        text(),
        bytes32(),
        vec(any::<u8>(), 0..64),
        0..u64::MAX / 4,
        any::<bool>(),
        0..u64::MAX / 4,
    )
        .prop_map(|(user, guid, mut bytes, offset, last, extra)| {
            if !last && bytes.is_empty() {
                bytes.push(0);
            }
            let end = offset + bytes.len() as u64;
            Body {
                user,
                guid,
                size: if last { end } else { end + extra },
                offset,
                last,
                bytes,
            }
        })
}

pub fn apply_mailbox() -> impl Strategy<Value = ApplyMailbox> {
    (
        text(),
        mailbox_record(),
        vec(message_record(), 0..4),
        vec(expunged(), 0..4),
        option::of(uid_range()),
    )
        .prop_map(|(user, mailbox, messages, expunged, full)| ApplyMailbox {
            user,
            mailbox,
            messages,
            expunged,
            full,
        })
}

/// Any valid frame of any type.
pub fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello().prop_map(Frame::Hello),
        challenge().prop_map(Frame::Challenge),
        bytes32().prop_map(|proof_c| Frame::Proof(Proof { proof_c })),
        any::<u64>().prop_map(|epoch| Frame::Welcome(Welcome { epoch })),
        error_reply().prop_map(Frame::Refused),
        option::of(text()).prop_map(|after| Frame::ListUsers(ListUsers { after })),
        text().prop_map(|user| Frame::GetUser(GetUser { user })),
        account_record().prop_map(|account| Frame::ApplyAccount(ApplyAccount { account })),
        (text(), vec(bytes32(), 0..4))
            .prop_map(|(user, guids)| Frame::HaveGuids(HaveGuids { user, guids })),
        body().prop_map(Frame::Body),
        apply_mailbox().prop_map(Frame::ApplyMailbox),
        (text(), hex_id(), any::<u64>()).prop_map(|(user, mailbox_id, modseq)| {
            Frame::DeleteMailbox(DeleteMailbox {
                user,
                mailbox_id,
                modseq,
            })
        }),
        (text(), vec(subscription_record(), 0..4), any::<bool>()).prop_map(
            |(user, subscriptions, full)| Frame::ApplySubscriptions(ApplySubscriptions {
                user,
                subscriptions,
                full,
            })
        ),
        (text(), any::<u64>()).prop_map(|(user, modseq)| Frame::Commit(Commit { user, modseq })),
        text().prop_map(|user| Frame::DeleteUser(DeleteUser { user })),
        (text(), bytes32()).prop_map(|(user, guid)| Frame::FetchBody(FetchBody { user, guid })),
        Just(Frame::Ping),
        (vec(user_summary(), 0..4), any::<bool>())
            .prop_map(|(users, more)| Frame::Users(Users { users, more })),
        option::of(held_user()).prop_map(|held| Frame::UserState(UserState { held })),
        vec(bytes32(), 0..4).prop_map(|guids| Frame::Missing(Missing { guids })),
        bytes32().prop_map(|digest| Frame::Applied(Applied { digest })),
        Just(Frame::Ok),
        any::<u64>().prop_map(|bad_marks| Frame::Pong(Pong { bad_marks })),
        error_reply().prop_map(Frame::Error),
    ]
}
