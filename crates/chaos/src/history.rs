//! The check of the history: what the clients were told (acknowledged
//! operations) against what the cluster shows after convergence, and the
//! directory's role changes against the slots that acknowledged writes.
//! Pure functions of their inputs.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How far a client's clock reading of an acknowledgement may lag the
/// directory's time of a role change (the reply was already on its way).
pub const ACK_SKEW_MS: u64 = 1_000;

/// One acknowledged operation, as the workload recorded it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Ack {
    pub op: String,
    pub t: u64,
    pub user: String,
    pub client: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub uidvalidity: Option<u64>,
    #[serde(default)]
    pub uid: Option<u64>,
    #[serde(default)]
    pub attempts: Option<u64>,
    #[serde(default)]
    pub refused: Option<u64>,
    #[serde(default)]
    pub errors: Option<u64>,
}

/// One message as read back.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Seen {
    pub uid: u64,
    pub flags: Vec<String>,
    pub size: u64,
    pub sha256: String,
    /// The hash from the client's first header on (LMTP adds trace headers).
    #[serde(default)]
    pub sha256_sent: Option<String>,
    pub id: Option<String>,
}

/// One user's INBOX as read back.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Mailbox {
    pub uidvalidity: u64,
    pub messages: Vec<Seen>,
    pub unreadable: Vec<u64>,
}

/// A role change from `ctl history`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RoleChange {
    pub at_unix_ms: u64,
    pub store: String,
    pub new_master: String,
    pub epoch: u64,
}

/// An IMAP session through the proxy: which slot served the client's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub port: u16,
    pub slot: String,
}

/// What the check found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    /// Acknowledged messages (not expunged by the workload) missing,
    /// altered or unreadable, one line each.
    pub lost: Vec<String>,
    /// A (UIDVALIDITY, UID) acknowledged for two different messages, or
    /// holding another message than the one acknowledged with it.
    pub uid_reused: Vec<String>,
    /// Acknowledged flag changes not visible on a present message.
    pub flags_lost: Vec<String>,
    /// Two masters of one epoch, or a write acknowledged by a slot that was
    /// not its store's master then.
    pub epoch_violations: Vec<String>,
    /// Messages the workload expunged that are back (reconcile brings back
    /// rather than loses: reported, not an error).
    pub expunged_back: u64,
    /// Acknowledged messages checked present and intact.
    pub verified: u64,
    /// IMAP acknowledgements attributed to a slot through the proxy's log.
    pub acks_attributed: u64,
}

impl Findings {
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.uid_reused.is_empty()
            && self.flags_lost.is_empty()
            && self.epoch_violations.is_empty()
    }
}

/// Compare the acknowledged history with what was read back.
pub fn check_messages(acks: &[Ack], seen: &BTreeMap<String, Mailbox>) -> Findings {
    let mut f = Findings::default();
    let expunged: BTreeSet<(&str, &str)> = acks
        .iter()
        .filter(|a| a.op == "expunge")
        .filter_map(|a| Some((a.user.as_str(), a.id.as_deref()?)))
        .collect();
    let flagged: BTreeSet<(&str, &str)> = acks
        .iter()
        .filter(|a| a.op == "flag")
        .filter_map(|a| Some((a.user.as_str(), a.id.as_deref()?)))
        .collect();
    // UIDs: one message per (user, UIDVALIDITY, UID) over every APPENDUID.
    let mut by_uid: BTreeMap<(&str, u64, u64), &str> = BTreeMap::new();
    for a in acks.iter().filter(|a| a.op == "append") {
        let (Some(v), Some(u), Some(id)) = (a.uidvalidity, a.uid, a.id.as_deref()) else {
            continue;
        };
        if let Some(other) = by_uid.insert((&a.user, v, u), id)
            && other != id
        {
            f.uid_reused.push(format!(
                "{}: UIDVALIDITY {v} UID {u} acknowledged for {other} and for {id}",
                a.user
            ));
        }
    }
    for (user, mbox) in seen {
        let mut ids: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
        for m in &mbox.messages {
            if let Some(id) = m.id.as_deref() {
                ids.entry(id).or_default().push(m);
            }
            if let Some(acked) = by_uid.get(&(user.as_str(), mbox.uidvalidity, m.uid))
                && m.id.as_deref() != Some(*acked)
                && !expunged.contains(&(user.as_str(), *acked))
            {
                f.uid_reused.push(format!(
                    "{user}: UIDVALIDITY {} UID {} holds {:?}, acknowledged for {acked}",
                    mbox.uidvalidity, m.uid, m.id
                ));
            }
        }
        for uid in &mbox.unreadable {
            f.lost.push(format!("{user}: UID {uid} unreadable"));
        }
        for (id, copies) in &ids {
            if expunged.contains(&(user.as_str(), *id)) {
                f.expunged_back += 1;
            }
            let _ = copies;
        }
        for a in acks.iter().filter(|a| &a.user == user) {
            if a.op != "append" && a.op != "deliver" {
                continue;
            }
            let (Some(id), Some(sha)) = (a.id.as_deref(), a.sha256.as_deref()) else {
                continue;
            };
            if expunged.contains(&(user.as_str(), id)) {
                continue;
            }
            // An APPEND is stored byte for byte; a delivery with trace
            // headers in front of the bytes sent.
            let same = |m: &&Seen| {
                m.sha256 == sha || (a.op == "deliver" && m.sha256_sent.as_deref() == Some(sha))
            };
            match ids.get(id) {
                None => f.lost.push(format!("{user}: {} {id} missing", a.op)),
                Some(copies) if !copies.iter().any(same) => f.lost.push(format!(
                    "{user}: {} {id} altered (sha256 {} acknowledged, {} read)",
                    a.op, sha, copies[0].sha256
                )),
                Some(copies) => {
                    f.verified += 1;
                    if flagged.contains(&(user.as_str(), id))
                        && !copies
                            .iter()
                            .any(|m| m.flags.iter().any(|x| x == "\\Flagged"))
                    {
                        f.flags_lost
                            .push(format!("{user}: {id} lost its acknowledged \\Flagged"));
                    }
                }
            }
        }
    }
    f
}

/// The directory's history: one master per (store, epoch); and every IMAP
/// acknowledgement attributed to a slot (`sessions`) came from a slot that
/// was its store's master when the client got it. `store_of` maps slots to
/// stores.
pub fn check_epochs(
    acks: &[Ack],
    history: &[RoleChange],
    sessions: &[Session],
    store_of: &BTreeMap<String, String>,
    f: &mut Findings,
) {
    let mut masters: BTreeMap<(&str, u64), &str> = BTreeMap::new();
    for h in history {
        if let Some(other) = masters.insert((&h.store, h.epoch), &h.new_master)
            && other != h.new_master
        {
            f.epoch_violations.push(format!(
                "store {} epoch {}: two masters in the directory's history, {other} and {}",
                h.store, h.epoch, h.new_master
            ));
        }
    }
    // Per store: (from, master) in time order.
    let mut terms: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for h in history {
        terms
            .entry(&h.store)
            .or_default()
            .push((h.at_unix_ms, &h.new_master));
    }
    for t in terms.values_mut() {
        t.sort();
    }
    let slot_of: BTreeMap<(&str, u16), &str> = sessions
        .iter()
        .map(|s| ((s.user.as_str(), s.port), s.slot.as_str()))
        .collect();
    for a in acks
        .iter()
        .filter(|a| a.client == "imap" && a.op != "summary")
    {
        let Some(port) = a.port else { continue };
        let Some(slot) = slot_of.get(&(a.user.as_str(), port)) else {
            continue;
        };
        let Some(store) = store_of.get(*slot) else {
            continue;
        };
        f.acks_attributed += 1;
        let Some(t) = terms.get(store.as_str()) else {
            continue;
        };
        // The slot must have been master over some term that covers the
        // acknowledgement (allowing ACK_SKEW_MS past the term's end).
        let ok = t.iter().enumerate().any(|(i, (from, m))| {
            let until = t
                .get(i + 1)
                .map_or(u64::MAX, |n| n.0.saturating_add(ACK_SKEW_MS));
            m == slot && a.t + ACK_SKEW_MS >= *from && a.t <= until
        });
        if !ok {
            f.epoch_violations.push(format!(
                "{}: {} {:?} acknowledged at {} by {slot}, not the master of {store} then",
                a.user, a.op, a.id, a.t
            ));
        }
    }
}

/// The IMAP sessions in a proxy log ("session ended" lines: peer, user, slot).
pub fn parse_proxy_sessions(log: &str) -> Vec<Session> {
    let mut out = Vec::new();
    for line in log.lines() {
        let line = strip_ansi(line);
        if !line.contains("IMAP proxy: session ended") {
            continue;
        }
        let field = |name: &str| -> Option<String> {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            let rest = &line[start..];
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        };
        let (Some(peer), Some(user), Some(slot)) = (field("peer"), field("user"), field("slot"))
        else {
            continue;
        };
        let Some(port) = peer.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) else {
            continue;
        };
        out.push(Session { user, port, slot });
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(op: &str, user: &str, id: &str, sha: &str, uid: Option<u64>) -> Ack {
        Ack {
            op: op.into(),
            t: 1000,
            user: user.into(),
            client: "imap".into(),
            port: Some(40000),
            id: Some(id.into()),
            sha256: Some(sha.into()),
            size: Some(3),
            uidvalidity: uid.map(|_| 7),
            uid,
            attempts: None,
            refused: None,
            errors: None,
        }
    }

    fn seen(uid: u64, id: &str, sha: &str, flags: &[&str]) -> Seen {
        Seen {
            uid,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            size: 3,
            sha256: sha.into(),
            sha256_sent: None,
            id: Some(id.into()),
        }
    }

    #[test]
    fn missing_altered_reused_and_expunged_messages_are_told_apart() {
        let acks = vec![
            ack("append", "u", "a", "s1", Some(1)),
            ack("append", "u", "b", "s2", Some(2)),
            ack("deliver", "u", "c", "s3", None),
            ack("append", "u", "d", "s4", Some(2)),
            ack("append", "u", "e", "s5", Some(3)),
            ack("expunge", "u", "e", "", None),
            ack("flag", "u", "a", "", None),
        ];
        let mut seen_map = BTreeMap::new();
        seen_map.insert(
            "u".to_string(),
            Mailbox {
                uidvalidity: 7,
                messages: vec![seen(1, "a", "s1", &[]), seen(2, "b", "XX", &[])],
                unreadable: vec![9],
            },
        );
        let f = check_messages(&acks, &seen_map);
        assert!(!f.clean());
        assert_eq!(f.verified, 1);
        assert_eq!(f.lost.len(), 4, "{:?}", f.lost); // b altered, c, d missing, UID 9
        assert!(f.lost.iter().any(|l| l.contains("b altered")));
        assert!(f.uid_reused.iter().any(|l| l.contains("UID 2")));
        assert_eq!(f.flags_lost.len(), 1);
        assert_eq!(f.expunged_back, 0);

        let ok = vec![ack("append", "u", "a", "s1", Some(1))];
        let mut good = BTreeMap::new();
        good.insert(
            "u".to_string(),
            Mailbox {
                uidvalidity: 7,
                messages: vec![seen(1, "a", "s1", &["\\Flagged"])],
                unreadable: vec![],
            },
        );
        let f = check_messages(&ok, &good);
        assert!(f.clean(), "{f:?}");
        assert_eq!(f.verified, 1);
    }

    #[test]
    fn an_ack_from_a_slot_that_was_not_master_is_a_violation() {
        let history = vec![
            RoleChange {
                at_unix_ms: 0,
                store: "s1".into(),
                new_master: "a1".into(),
                epoch: 1,
            },
            RoleChange {
                at_unix_ms: 10_000,
                store: "s1".into(),
                new_master: "b1".into(),
                epoch: 2,
            },
        ];
        let store_of: BTreeMap<String, String> =
            [("a1".into(), "s1".into()), ("b1".into(), "s1".into())].into();
        let log = "2026-01-01T00:00:00Z  INFO slotmail_proxy::imap: IMAP proxy: session ended peer=127.0.0.1:40000 user=u slot=a1 end=Client bytes_in=1\n\
                   \u{1b}[2m2026\u{1b}[0m INFO IMAP proxy: session ended peer=127.0.0.1:40001 user=u slot=b1 end=Client\n";
        let sessions = parse_proxy_sessions(log);
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        let mut a = ack("append", "u", "a", "s", Some(1));
        a.t = 5_000;
        let mut late = a.clone();
        late.t = 20_000; // a1 acknowledging long after b1 took over
        let mut b = a.clone();
        b.port = Some(40001);
        b.t = 12_000;
        let mut f = Findings::default();
        check_epochs(&[a.clone(), b], &history, &sessions, &store_of, &mut f);
        assert!(f.epoch_violations.is_empty(), "{:?}", f.epoch_violations);
        assert_eq!(f.acks_attributed, 2);
        check_epochs(&[late], &history, &sessions, &store_of, &mut f);
        assert_eq!(f.epoch_violations.len(), 1);
        let mut two = history.clone();
        two.push(RoleChange {
            at_unix_ms: 11_000,
            store: "s1".into(),
            new_master: "a1".into(),
            epoch: 2,
        });
        let mut f = Findings::default();
        check_epochs(&[], &two, &[], &store_of, &mut f);
        assert_eq!(f.epoch_violations.len(), 1);
    }
}
