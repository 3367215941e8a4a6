//! Convergence digests: [`record_hash`], [`mailbox_digest`], [`user_digest`]
//! and the incremental [`MailboxDigest`].
//!
//! This module owns the canonical byte encoding that both the master's and
//! the replica's store feed to BLAKE3 (docs/replication.md, "Digests", which
//! defines it byte for byte). The encoding is injective and independent of
//! the order lists are given in:
//!
//! * `u(x)`: an unsigned integer as 8 bytes little-endian (`u32` widened);
//! * `i(x)`: a signed integer as 8 bytes little-endian two's complement;
//! * `b(x)`: a bool as one byte, `0x00` or `0x01`;
//! * `s(x)`: a string as `u(byte length)` then its UTF-8 bytes;
//! * `o(x)`: an option as the byte `0x00` (none) or `0x01` then the value;
//! * `h(x)`: a GUID or digest as its 32 raw bytes;
//! * a list of keywords as `u(count)` then `s(k)` of each, sorted by bytes.
//!
//! Changing anything here changes every digest: that is a protocol version
//! change, and the known-answer tests say so.

use crate::message::{
    AccountRecord, Digest, MailboxRecord, MailboxSummary, MessageRecord, SubscriptionRecord,
};

/// Domain tag of [`record_hash`].
pub const RECORD_TAG: &str = "msg";
/// Domain tag of [`mailbox_digest`].
pub const MAILBOX_TAG: &str = "mbox";
/// Domain tag of [`user_digest`].
pub const USER_TAG: &str = "user";

/// The canonical encoder, writing straight into a BLAKE3 hasher.
struct Canon(blake3::Hasher);

impl Canon {
    fn new(tag: &str) -> Self {
        let mut c = Canon(blake3::Hasher::new());
        c.s(tag);
        c
    }

    fn u(&mut self, x: u64) {
        self.0.update(&x.to_le_bytes());
    }

    fn i(&mut self, x: i64) {
        self.0.update(&x.to_le_bytes());
    }

    fn b(&mut self, x: bool) {
        self.0.update(&[u8::from(x)]);
    }

    fn s(&mut self, x: &str) {
        self.u(x.len() as u64);
        self.0.update(x.as_bytes());
    }

    fn h(&mut self, x: &[u8; 32]) {
        self.0.update(x);
    }

    fn o_s(&mut self, x: Option<&str>) {
        match x {
            None => self.b(false),
            Some(v) => {
                self.b(true);
                self.s(v);
            }
        }
    }

    fn o_u(&mut self, x: Option<u64>) {
        match x {
            None => self.b(false),
            Some(v) => {
                self.b(true);
                self.u(v);
            }
        }
    }

    fn keywords(&mut self, keywords: &[String]) {
        let mut sorted: Vec<&str> = keywords.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        self.u(sorted.len() as u64);
        for k in sorted {
            self.s(k);
        }
    }

    fn finish(&self) -> Digest {
        *self.0.finalize().as_bytes()
    }
}

/// The hash of one message record:
///
/// ```text
/// BLAKE3( s("msg") ‖ u(uid) ‖ h(guid) ‖ u(size) ‖ i(internaldate) ‖ i(tz_offset)
///         ‖ u(flags) ‖ keywords ‖ u(modseq) )
/// ```
pub fn record_hash(m: &MessageRecord) -> Digest {
    let mut c = Canon::new(RECORD_TAG);
    c.u(u64::from(m.uid));
    c.h(&m.guid);
    c.u(m.size);
    c.i(m.internaldate);
    c.i(i64::from(m.tz_offset));
    c.u(u64::from(m.flags));
    c.keywords(&m.keywords);
    c.u(m.modseq);
    c.finish()
}

/// The message part of a mailbox digest, kept up to date in O(1) per change:
/// the XOR of the record hashes of the mailbox's messages and their count.
///
/// `add` and `remove` form a commutative group (XOR, and addition modulo
/// 2^64), so any sequence of them gives the same state as recomputing from
/// the messages present, whatever the order; a change of a record is
/// `remove(old)` then `add(new)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MailboxDigest {
    xor: Digest,
    count: u64,
}

impl MailboxDigest {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// From a stored state (see [`MailboxDigest::xor`] and
    /// [`MailboxDigest::count`]).
    pub fn from_parts(xor: Digest, count: u64) -> Self {
        MailboxDigest { xor, count }
    }

    /// From the messages a mailbox holds.
    pub fn from_records<'a>(messages: impl IntoIterator<Item = &'a MessageRecord>) -> Self {
        let mut d = Self::new();
        for m in messages {
            d.add_record(m);
        }
        d
    }

    /// A message with this record hash was added.
    pub fn add(&mut self, record_hash: &Digest) {
        self.toggle(record_hash);
        self.count = self.count.wrapping_add(1);
    }

    /// A message with this record hash was removed.
    pub fn remove(&mut self, record_hash: &Digest) {
        self.toggle(record_hash);
        self.count = self.count.wrapping_sub(1);
    }

    /// [`MailboxDigest::add`] of the record's hash.
    pub fn add_record(&mut self, m: &MessageRecord) {
        self.add(&record_hash(m));
    }

    /// [`MailboxDigest::remove`] of the record's hash.
    pub fn remove_record(&mut self, m: &MessageRecord) {
        self.remove(&record_hash(m));
    }

    fn toggle(&mut self, hash: &Digest) {
        for (x, h) in self.xor.iter_mut().zip(hash) {
            *x ^= h;
        }
    }

    /// XOR of the record hashes.
    pub fn xor(&self) -> Digest {
        self.xor
    }

    /// Number of messages (modulo 2^64).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mailbox digest of `mailbox` with these messages:
    ///
    /// ```text
    /// BLAKE3( s("mbox") ‖ s(mailbox_id) ‖ s(name) ‖ u(uidvalidity) ‖ u(uidnext)
    ///         ‖ u(highestmodseq) ‖ o(s(special_use)) ‖ keywords ‖ u(modseq)
    ///         ‖ u(count) ‖ h(xor) )
    /// ```
    pub fn finish(&self, mailbox: &MailboxRecord) -> Digest {
        let mut c = Canon::new(MAILBOX_TAG);
        c.s(&mailbox.mailbox_id);
        c.s(&mailbox.name);
        c.u(u64::from(mailbox.uidvalidity));
        c.u(u64::from(mailbox.uidnext));
        c.u(mailbox.highestmodseq);
        c.o_s(mailbox.special_use.as_deref());
        c.keywords(&mailbox.keywords);
        c.u(mailbox.modseq);
        c.u(self.count);
        c.h(&self.xor);
        c.finish()
    }
}

/// The digest of a mailbox and its messages (in any order); see
/// [`MailboxDigest::finish`] for the layout.
pub fn mailbox_digest<'a>(
    mailbox: &MailboxRecord,
    messages: impl IntoIterator<Item = &'a MessageRecord>,
) -> Digest {
    MailboxDigest::from_records(messages).finish(mailbox)
}

/// The digest of a user: the account, the subscription records (including
/// unsubscribe tombstones) and the mailbox digests, lists in any order:
///
/// ```text
/// BLAKE3( s("user") ‖ s(name) ‖ s(user_id) ‖ s(password_hash) ‖ b(is_admin)
///         ‖ o(u(quota_bytes)) ‖ o(u(quota_messages)) ‖ u(account modseq)
///         ‖ u(#subscriptions) ‖ each sorted by (name, subscribed, modseq):
///               s(name) ‖ b(subscribed) ‖ u(modseq)
///         ‖ u(#mailboxes) ‖ each sorted by (mailbox_id, digest):
///               s(mailbox_id) ‖ h(digest) )
/// ```
pub fn user_digest(
    account: &AccountRecord,
    subscriptions: &[SubscriptionRecord],
    mailboxes: &[MailboxSummary],
) -> Digest {
    let mut c = Canon::new(USER_TAG);
    c.s(&account.name);
    c.s(&account.user_id);
    c.s(&account.password_hash);
    c.b(account.is_admin);
    c.o_u(account.quota_bytes);
    c.o_u(account.quota_messages);
    c.u(account.modseq);
    let mut subs: Vec<&SubscriptionRecord> = subscriptions.iter().collect();
    subs.sort_unstable();
    c.u(subs.len() as u64);
    for sub in subs {
        c.s(&sub.name);
        c.b(sub.subscribed);
        c.u(sub.modseq);
    }
    let mut boxes: Vec<&MailboxSummary> = mailboxes.iter().collect();
    boxes.sort_unstable();
    c.u(boxes.len() as u64);
    for mailbox in boxes {
        c.s(&mailbox.mailbox_id);
        c.h(&mailbox.digest);
    }
    c.finish()
}
