//! The comparison of two views of one user — the master's and a
//! replica's — and the settling of a first comparison against a second
//! one taken after the replication lag. Pure functions: no I/O, no clock.

use crate::view::{Body, MailboxView, MessageView, UserView};
use serde::Serialize;
use std::collections::BTreeSet;

/// The names of the compared fields, as reported.
pub mod field {
    /// A mailbox exists on one side only.
    pub const MAILBOX: &str = "mailbox";
    /// A mailbox has another name on the replica (same UIDVALIDITY, found
    /// under one name only on each side).
    pub const NAME: &str = "name";
    pub const ATTRIBUTES: &str = "attributes";
    pub const UIDVALIDITY: &str = "uidvalidity";
    pub const UIDNEXT: &str = "uidnext";
    pub const HIGHESTMODSEQ: &str = "highestmodseq";
    /// The mailbox's message count (EXISTS).
    pub const MESSAGES: &str = "messages";
    /// A message (UID) exists on one side only.
    pub const MESSAGE: &str = "message";
    pub const FLAGS: &str = "flags";
    pub const INTERNALDATE: &str = "internaldate";
    pub const SIZE: &str = "rfc822.size";
    pub const BODYSTRUCTURE: &str = "bodystructure";
    /// The message's bytes (BODY.PEEK[]).
    pub const BODY: &str = "body";
    pub const SUBSCRIPTION: &str = "subscription";
    /// Prefix of the quota fields: `quota ROOT RESOURCE usage|limit`.
    pub const QUOTA: &str = "quota";
}

/// Longest master or replica value kept in a difference, in characters.
pub const VALUE_CHARS_MAX: usize = 300;

/// How a difference was judged after the re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Found in the first comparison; not yet re-checked.
    Unconfirmed,
    /// Still there after waiting for replication, while the master reports
    /// the replica behind (disconnected, changes pending, or the user held):
    /// replication may still deliver it.
    Lagging,
    /// Still there after waiting for replication, while the master reports
    /// the replica caught up: the replica shows something else.
    Diverged,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unconfirmed => "unconfirmed",
            Class::Lagging => "lagging",
            Class::Diverged => "diverged",
        }
    }
}

/// One difference between what the master and a replica show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub user: String,
    /// The replica slot.
    pub slot: String,
    pub mailbox: Option<String>,
    pub uid: Option<u32>,
    /// One of [`field`].
    pub field: String,
    /// The master's value.
    pub master: String,
    /// The replica's value.
    pub replica: String,
    pub class: Class,
}

impl Difference {
    /// What identifies the difference across comparisons (its values may
    /// change while replication catches up).
    fn key(&self) -> (&str, &str, Option<&str>, Option<u32>, &str) {
        (
            &self.user,
            &self.slot,
            self.mailbox.as_deref(),
            self.uid,
            &self.field,
        )
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.class.as_str(), self.user, self.slot)?;
        if let Some(m) = &self.mailbox {
            write!(f, " mailbox {m:?}")?;
        }
        if let Some(u) = self.uid {
            write!(f, " uid {u}")?;
        }
        write!(
            f,
            " {}: master {} | replica {}",
            self.field, self.master, self.replica
        )
    }
}

/// Collects differences of one user and replica.
struct Out<'a> {
    user: &'a str,
    slot: &'a str,
    list: Vec<Difference>,
}

impl Out<'_> {
    fn push(
        &mut self,
        mailbox: Option<&str>,
        uid: Option<u32>,
        field: &str,
        master: String,
        replica: String,
    ) {
        self.list.push(Difference {
            user: self.user.to_string(),
            slot: self.slot.to_string(),
            mailbox: mailbox.map(str::to_string),
            uid,
            field: field.to_string(),
            master: clip(master),
            replica: clip(replica),
            class: Class::Unconfirmed,
        });
    }
}

fn clip(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(VALUE_CHARS_MAX) {
        s.truncate(i);
        s.push('…');
    }
    s
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

const PRESENT: &str = "present";
const MISSING: &str = "missing";

/// Every difference between the master's view `master` and the replica
/// `slot`'s view `replica` of `user`, in a stable order: mailboxes by name
/// (then their messages by UID), subscriptions, quota.
pub fn compare(user: &str, slot: &str, master: &UserView, replica: &UserView) -> Vec<Difference> {
    let mut out = Out {
        user,
        slot,
        list: Vec::new(),
    };
    let only_master: Vec<&String> = master
        .mailboxes
        .keys()
        .filter(|n| !replica.mailboxes.contains_key(*n))
        .collect();
    let mut only_replica: BTreeSet<&String> = replica
        .mailboxes
        .keys()
        .filter(|n| !master.mailboxes.contains_key(*n))
        .collect();
    // A mailbox missing under one name and extra under another with the
    // same UIDVALIDITY is one mailbox renamed (when the pairing is unique).
    let mut renamed = Vec::new();
    for name in &only_master {
        let Some(v) = master.mailboxes[*name].state.map(|s| s.uidvalidity) else {
            continue;
        };
        let same_validity =
            |n: &&&String| replica.mailboxes[**n].state.map(|s| s.uidvalidity) == Some(v);
        let candidates: Vec<&String> = only_replica.iter().filter(same_validity).copied().collect();
        let masters_with_v = only_master
            .iter()
            .filter(|n| master.mailboxes[**n].state.map(|s| s.uidvalidity) == Some(v))
            .count();
        if let [other] = candidates[..]
            && masters_with_v == 1
        {
            only_replica.remove(other);
            renamed.push((*name, other));
        }
    }
    for name in master.mailboxes.keys() {
        let m = &master.mailboxes[name];
        if let Some(r) = replica.mailboxes.get(name) {
            compare_mailbox(&mut out, name, m, r);
        } else if let Some((_, other)) = renamed.iter().find(|(n, _)| *n == name) {
            out.push(
                Some(name),
                None,
                field::NAME,
                name.clone(),
                (*other).clone(),
            );
            compare_mailbox(&mut out, name, m, &replica.mailboxes[*other]);
        } else {
            out.push(
                Some(name),
                None,
                field::MAILBOX,
                PRESENT.into(),
                MISSING.into(),
            );
        }
    }
    for name in only_replica {
        out.push(
            Some(name),
            None,
            field::MAILBOX,
            MISSING.into(),
            PRESENT.into(),
        );
    }
    for name in master
        .subscriptions
        .symmetric_difference(&replica.subscriptions)
    {
        let sub = |v: &UserView| {
            if v.subscriptions.contains(name) {
                "subscribed".to_string()
            } else {
                "not subscribed".to_string()
            }
        };
        out.push(
            Some(name),
            None,
            field::SUBSCRIPTION,
            sub(master),
            sub(replica),
        );
    }
    let keys: BTreeSet<&String> = master.quota.keys().chain(replica.quota.keys()).collect();
    for key in keys {
        let (m, r) = (master.quota.get(key), replica.quota.get(key));
        for (what, get) in [
            (
                "usage",
                (|q: &crate::view::QuotaFigure| q.usage) as fn(&_) -> u64,
            ),
            ("limit", |q| q.limit),
        ] {
            let (mv, rv) = (m.map(get), r.map(get));
            if mv != rv {
                out.push(
                    None,
                    None,
                    &format!("{} {key} {what}", field::QUOTA),
                    opt(mv),
                    opt(rv),
                );
            }
        }
    }
    out.list
}

fn compare_mailbox(out: &mut Out<'_>, name: &str, m: &MailboxView, r: &MailboxView) {
    let mb = Some(name);
    if m.attributes != r.attributes {
        out.push(
            mb,
            None,
            field::ATTRIBUTES,
            m.attributes.join(" "),
            r.attributes.join(" "),
        );
    }
    match (&m.state, &r.state) {
        (Some(ms), Some(rs)) => {
            if ms.uidvalidity != rs.uidvalidity {
                // Another UIDVALIDITY makes every UID another message to a
                // client: comparing messages by UID would say nothing more.
                out.push(
                    mb,
                    None,
                    field::UIDVALIDITY,
                    ms.uidvalidity.to_string(),
                    rs.uidvalidity.to_string(),
                );
                return;
            }
            if ms.uidnext != rs.uidnext {
                out.push(mb, None, field::UIDNEXT, opt(ms.uidnext), opt(rs.uidnext));
            }
            if ms.highestmodseq != rs.highestmodseq {
                out.push(
                    mb,
                    None,
                    field::HIGHESTMODSEQ,
                    opt(ms.highestmodseq),
                    opt(rs.highestmodseq),
                );
            }
            if ms.exists != rs.exists {
                out.push(
                    mb,
                    None,
                    field::MESSAGES,
                    ms.exists.to_string(),
                    rs.exists.to_string(),
                );
            }
        }
        (None, None) => {}
        // Selectable on one side only: the attributes said so already.
        _ => return,
    }
    let uids: BTreeSet<u32> = m
        .messages
        .keys()
        .chain(r.messages.keys())
        .copied()
        .collect();
    for uid in uids {
        match (m.messages.get(&uid), r.messages.get(&uid)) {
            (Some(a), Some(b)) => compare_message(out, name, uid, a, b),
            (Some(_), None) => out.push(
                mb,
                Some(uid),
                field::MESSAGE,
                PRESENT.into(),
                MISSING.into(),
            ),
            (None, Some(_)) => out.push(
                mb,
                Some(uid),
                field::MESSAGE,
                MISSING.into(),
                PRESENT.into(),
            ),
            (None, None) => unreachable!("uid {uid} comes from one of the two maps"),
        }
    }
}

fn compare_message(out: &mut Out<'_>, mailbox: &str, uid: u32, m: &MessageView, r: &MessageView) {
    let (mb, u) = (Some(mailbox), Some(uid));
    if m.flags != r.flags {
        out.push(
            mb,
            u,
            field::FLAGS,
            format!("({})", m.flags.join(" ")),
            format!("({})", r.flags.join(" ")),
        );
    }
    if m.internaldate != r.internaldate {
        out.push(
            mb,
            u,
            field::INTERNALDATE,
            m.internaldate.clone(),
            r.internaldate.clone(),
        );
    }
    if m.size != r.size {
        out.push(mb, u, field::SIZE, m.size.to_string(), r.size.to_string());
    }
    if m.bodystructure != r.bodystructure {
        out.push(
            mb,
            u,
            field::BODYSTRUCTURE,
            m.bodystructure.clone(),
            r.bodystructure.clone(),
        );
    }
    let read = |b: &Body| !matches!(b, Body::NotRead);
    if read(&m.body) && read(&r.body) && m.body != r.body {
        out.push(mb, u, field::BODY, m.body.describe(), r.body.describe());
    }
}

/// Fields whose values only grow (or move with the master's) while
/// replication catches up: a replica value between the master's value of
/// the first comparison and its value now is in flight, not a difference.
fn is_counter(field: &str) -> bool {
    matches!(
        field,
        field::UIDNEXT | field::HIGHESTMODSEQ | field::MESSAGES
    ) || (field.starts_with(field::QUOTA) && field.ends_with(" usage"))
}

/// The differences of a first comparison (`first`) that a later one
/// (`again`, taken after waiting for replication) confirms. A difference
/// found only in `first` was in flight; one found only in `again` is new
/// and left to the next run; a counter whose replica value now lies
/// between the master's value then and now was in flight too, and so is
/// any value the replica now shows that the master showed then. The
/// confirmed differences carry the values of `again`.
pub fn confirmed(first: &[Difference], again: &[Difference]) -> Vec<Difference> {
    again
        .iter()
        .filter(|d| {
            let Some(f) = first.iter().find(|f| f.key() == d.key()) else {
                return false;
            };
            // The replica shows now what the master showed before: it
            // follows, one change behind (a message whose flags keep
            // changing).
            if d.replica == f.master {
                return false;
            }
            if is_counter(&d.field)
                && let (Ok(then), Ok(now), Ok(replica)) = (
                    f.master.parse::<u64>(),
                    d.master.parse::<u64>(),
                    d.replica.parse::<u64>(),
                )
                && (then.min(now)..=then.max(now)).contains(&replica)
            {
                return false;
            }
            true
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{MailboxState, QuotaFigure};

    fn message(uid: u32) -> MessageView {
        MessageView {
            flags: vec!["\\Seen".into()],
            internaldate: "29-Nov-2026 07:00:00 +0000".into(),
            size: 100 + u64::from(uid),
            bodystructure: "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 100 3)".into(),
            body: Body::of(format!("message {uid}").as_bytes()),
        }
    }

    fn mailbox(uidvalidity: u32, uids: &[u32]) -> MailboxView {
        MailboxView {
            attributes: vec!["\\HasNoChildren".into()],
            state: Some(MailboxState {
                uidvalidity,
                uidnext: Some(uids.iter().max().map_or(1, |u| u + 1)),
                highestmodseq: Some(10),
                exists: uids.len() as u32,
            }),
            messages: uids.iter().map(|&u| (u, message(u))).collect(),
        }
    }

    fn user() -> UserView {
        let mut v = UserView::default();
        v.mailboxes.insert("INBOX".into(), mailbox(7, &[1, 2, 3]));
        v.mailboxes.insert("Sent".into(), mailbox(8, &[1]));
        v.mailboxes
            .get_mut("Sent")
            .unwrap()
            .attributes
            .push("\\Sent".into());
        v.mailboxes.insert("Archive".into(), mailbox(9, &[]));
        v.subscriptions = ["INBOX", "Sent"].iter().map(|s| s.to_string()).collect();
        v.quota.insert(
            "\"\" STORAGE".into(),
            QuotaFigure {
                usage: 1,
                limit: 100,
            },
        );
        v
    }

    /// (mailbox, uid, field, master, replica).
    type Found = (Option<String>, Option<u32>, String, String, String);

    /// Every difference, as [`Found`].
    fn found(m: &UserView, r: &UserView) -> Vec<Found> {
        compare("u", "b1", m, r)
            .into_iter()
            .map(|d| {
                assert_eq!((d.user.as_str(), d.slot.as_str()), ("u", "b1"));
                assert_eq!(d.class, Class::Unconfirmed);
                (d.mailbox, d.uid, d.field, d.master, d.replica)
            })
            .collect()
    }

    fn one(
        mailbox: Option<&str>,
        uid: Option<u32>,
        field: &str,
        master: &str,
        replica: &str,
    ) -> Found {
        (
            mailbox.map(str::to_string),
            uid,
            field.to_string(),
            master.to_string(),
            replica.to_string(),
        )
    }

    #[test]
    fn equal_views_have_no_differences() {
        assert!(found(&user(), &user()).is_empty());
        assert!(found(&UserView::default(), &UserView::default()).is_empty());
    }

    #[test]
    fn each_kind_of_divergence_is_reported_exactly() {
        let m = user();
        fn inbox(r: &mut UserView) -> &mut MailboxView {
            r.mailboxes.get_mut("INBOX").unwrap()
        }

        // Bytes differ (or the server refuses them): only the body.
        let mut r = user();
        inbox(&mut r).messages.get_mut(&2).unwrap().body = Body::of(b"");
        let d = found(&m, &r);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].1, d[0].2.as_str()), (Some(2), field::BODY));
        assert!(d[0].4.starts_with("0 bytes"), "{d:?}");
        let mut r = user();
        inbox(&mut r).messages.get_mut(&3).unwrap().body = Body::Unreadable("damaged".into());
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("INBOX"),
                Some(3),
                field::BODY,
                &m.mailboxes["INBOX"].messages[&3].body.describe(),
                "unreadable (damaged)"
            )]
        );
        // Not read on one side (quick level): not compared.
        let mut r = user();
        inbox(&mut r).messages.get_mut(&3).unwrap().body = Body::NotRead;
        assert!(found(&m, &r).is_empty());

        // A flag.
        let mut r = user();
        inbox(&mut r).messages.get_mut(&1).unwrap().flags = vec![];
        assert_eq!(
            found(&m, &r),
            vec![one(Some("INBOX"), Some(1), field::FLAGS, "(\\Seen)", "()")]
        );

        // A missing and an extra message, with the count.
        let mut r = user();
        inbox(&mut r).messages.remove(&2);
        inbox(&mut r).state.as_mut().unwrap().exists = 2;
        assert_eq!(
            found(&m, &r),
            vec![
                one(Some("INBOX"), None, field::MESSAGES, "3", "2"),
                one(Some("INBOX"), Some(2), field::MESSAGE, "present", "missing"),
            ]
        );
        let mut r = user();
        r.mailboxes
            .get_mut("Sent")
            .unwrap()
            .messages
            .insert(5, message(5));
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("Sent"),
                Some(5),
                field::MESSAGE,
                "missing",
                "present"
            )]
        );

        // Mailboxes: missing, extra, renamed, another UIDVALIDITY.
        let mut r = user();
        r.mailboxes.remove("Archive");
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("Archive"),
                None,
                field::MAILBOX,
                "present",
                "missing"
            )]
        );
        let mut r = user();
        r.mailboxes.insert("Extra".into(), mailbox(99, &[]));
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("Extra"),
                None,
                field::MAILBOX,
                "missing",
                "present"
            )]
        );
        let mut r = user();
        let a = r.mailboxes.remove("Archive").unwrap();
        r.mailboxes.insert("Old".into(), a);
        assert_eq!(
            found(&m, &r),
            vec![one(Some("Archive"), None, field::NAME, "Archive", "Old")]
        );
        let mut r = user();
        inbox(&mut r).state.as_mut().unwrap().uidvalidity = 70;
        inbox(&mut r).messages.clear();
        assert_eq!(
            found(&m, &r),
            vec![one(Some("INBOX"), None, field::UIDVALIDITY, "7", "70")]
        );

        // Special use, subscriptions, quota.
        let mut r = user();
        r.mailboxes.get_mut("Sent").unwrap().attributes.pop();
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("Sent"),
                None,
                field::ATTRIBUTES,
                "\\HasNoChildren \\Sent",
                "\\HasNoChildren"
            )]
        );
        let mut r = user();
        r.subscriptions.remove("Sent");
        assert_eq!(
            found(&m, &r),
            vec![one(
                Some("Sent"),
                None,
                field::SUBSCRIPTION,
                "subscribed",
                "not subscribed"
            )]
        );
        let mut r = user();
        r.quota.get_mut("\"\" STORAGE").unwrap().limit = 50;
        assert_eq!(
            found(&m, &r),
            vec![one(None, None, "quota \"\" STORAGE limit", "100", "50")]
        );
    }

    #[test]
    fn a_rename_needs_a_unique_pairing() {
        let m = user();
        let mut r = user();
        let a = r.mailboxes.remove("Archive").unwrap();
        r.mailboxes.insert("Old".into(), a.clone());
        r.mailboxes.insert("Older".into(), a);
        let d = found(&m, &r);
        assert_eq!(
            d.iter().map(|d| d.2.as_str()).collect::<Vec<_>>(),
            vec![field::MAILBOX, field::MAILBOX, field::MAILBOX],
            "{d:?}"
        );
    }

    #[test]
    fn long_values_are_clipped() {
        let m = user();
        let mut r = user();
        r.mailboxes
            .get_mut("INBOX")
            .unwrap()
            .messages
            .get_mut(&1)
            .unwrap()
            .bodystructure = "x".repeat(5000);
        let d = compare("u", "b1", &m, &r);
        assert_eq!(d[0].replica.chars().count(), VALUE_CHARS_MAX + 1);
    }

    fn diff(field: &str, uid: Option<u32>, master: &str, replica: &str) -> Difference {
        Difference {
            user: "u".into(),
            slot: "b1".into(),
            mailbox: Some("INBOX".into()),
            uid,
            field: field.into(),
            master: master.into(),
            replica: replica.into(),
            class: Class::Unconfirmed,
        }
    }

    #[test]
    fn in_flight_differences_settle_and_real_ones_stay() {
        let first = vec![
            diff(field::MESSAGES, None, "60", "58"),
            diff(field::UIDNEXT, None, "61", "59"),
            diff(field::HIGHESTMODSEQ, None, "100", "98"),
            diff(field::MESSAGE, Some(59), "present", "missing"),
            diff(field::FLAGS, Some(3), "(\\Seen)", "()"),
            diff(field::BODY, Some(4), "a", "b"),
        ];
        // Appends went on meanwhile: the counters moved on both sides, the
        // replica now within the master's range; message 59 arrived; new
        // in-flight messages appeared.
        let again = vec![
            diff(field::MESSAGES, None, "65", "63"),
            diff(field::UIDNEXT, None, "66", "59"),
            diff(field::HIGHESTMODSEQ, None, "110", "100"),
            diff(field::MESSAGE, Some(64), "present", "missing"),
            diff(field::FLAGS, Some(3), "(\\Seen)", "()"),
            diff(field::BODY, Some(4), "a", "b"),
        ];
        let kept = confirmed(&first, &again);
        assert_eq!(
            kept.iter()
                .map(|d| (d.field.as_str(), d.uid))
                .collect::<Vec<_>>(),
            vec![
                (field::UIDNEXT, None),
                (field::FLAGS, Some(3)),
                (field::BODY, Some(4))
            ]
        );
        // Flags changing all the time: the replica one change behind.
        let following = confirmed(
            &[diff(field::FLAGS, Some(3), "(\\Flagged)", "()")],
            &[diff(
                field::FLAGS,
                Some(3),
                "(\\Answered \\Flagged)",
                "(\\Flagged)",
            )],
        );
        assert!(following.is_empty(), "{following:?}");
        // Nothing found again: nothing confirmed.
        assert!(confirmed(&first, &[]).is_empty());
        // A counter stuck below the master's first value stays.
        let stuck = confirmed(
            &[diff(field::MESSAGES, None, "3", "2")],
            &[diff(field::MESSAGES, None, "3", "2")],
        );
        assert_eq!(stuck.len(), 1);
    }
}
