//! Property test of the selected-mailbox view under concurrent change: a
//! session A follows the mailbox while session B and direct deliveries
//! append, flag and expunge. A's responses are applied to a client-side
//! model the way a client must apply them; the model must agree with every
//! sequence number the server uses, never see an expunge during FETCH,
//! STORE or SEARCH, and equal the store's UID list after a NOOP.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone)]
enum Op {
    /// B appends a message.
    Append,
    /// A message is delivered straight into the store.
    Deliver,
    /// B sets a flag on the message at this position (modulo count).
    Flag(usize),
    /// B marks these positions deleted and expunges.
    Expunge(Vec<usize>),
    /// A fetches flags by sequence number.
    FetchSeq(usize),
    /// A stores a flag by sequence number.
    StoreSeq(usize),
    /// A searches.
    Search,
    /// A fetches by UID (expunges may be reported).
    UidFetch,
    /// A does NOOP.
    Noop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Append),
        2 => Just(Op::Deliver),
        2 => (0usize..20).prop_map(Op::Flag),
        2 => proptest::collection::vec(0usize..20, 1..4).prop_map(Op::Expunge),
        2 => (0usize..20).prop_map(Op::FetchSeq),
        1 => (0usize..20).prop_map(Op::StoreSeq),
        1 => Just(Op::Search),
        1 => Just(Op::UidFetch),
        2 => Just(Op::Noop),
    ]
}

/// What a client knows: UIDs in sequence order.
struct ClientModel {
    uids: Vec<u32>,
    exists: usize,
}

impl ClientModel {
    /// Apply untagged responses; `expunge_forbidden` for FETCH/STORE/SEARCH.
    fn apply(&mut self, text: &str, expunge_forbidden: bool) -> Result<(), String> {
        for line in text.split("\r\n").filter(|l| l.starts_with("* ")) {
            let words: Vec<&str> = line.split(' ').collect();
            if words.len() >= 3 && words[2] == "EXPUNGE" {
                if expunge_forbidden {
                    return Err(format!("EXPUNGE during FETCH/STORE/SEARCH: {line}"));
                }
                let n: usize = words[1].parse().unwrap();
                if n == 0 || n > self.uids.len() {
                    return Err(format!("EXPUNGE of unknown message: {line}"));
                }
                self.uids.remove(n - 1);
                self.exists -= 1;
            } else if words[1] == "VANISHED" {
                if expunge_forbidden {
                    return Err(format!("VANISHED during FETCH/STORE/SEARCH: {line}"));
                }
                let set: slotmail_imap_proto::SequenceSet = words.last().unwrap().parse().unwrap();
                let before = self.uids.len();
                self.uids.retain(|u| !set.contains(*u, u32::MAX));
                self.exists -= before - self.uids.len();
            } else if words.len() >= 3 && words[2] == "EXISTS" {
                let n: usize = words[1].parse().unwrap();
                if n < self.exists {
                    return Err(format!("EXISTS went down: {line} (had {})", self.exists));
                }
                self.exists = n;
            } else if words.len() >= 3 && words[2] == "FETCH" {
                let n: usize = words[1].parse().unwrap();
                if let Some(at) = line.find("UID ") {
                    let uid: u32 = line[at + 4..]
                        .split([' ', ')'])
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if n <= self.uids.len() && self.uids[n - 1] != uid {
                        return Err(format!(
                            "FETCH {n} says UID {uid}, client has {:?}",
                            self.uids
                        ));
                    }
                    if n == self.uids.len() + 1 {
                        self.uids.push(uid);
                    }
                }
                if n > self.exists {
                    return Err(format!("FETCH beyond EXISTS: {line}"));
                }
            }
        }
        Ok(())
    }
}

static CASE: AtomicU32 = AtomicU32::new(0);

fn run_case(f: &Fixture, ops: &[Op], qresync: bool) -> Result<(), String> {
    let name = format!("case{}", CASE.fetch_add(1, Ordering::SeqCst));
    let store = f.slot.user("alice").unwrap();
    let mbox = store.create_mailbox(&name, None).unwrap();
    for i in 0..3 {
        f.deliver("alice", &name, &message(&format!("seed{i}"), "x"));
    }
    let ctx = f.context(Fixture::config());
    let (mut a, _) = Client::new(ctx.clone(), false, false);
    let (mut b, _) = Client::new(ctx, false, false);
    a.login("alice");
    b.login("alice");
    if qresync {
        a.send("e ENABLE QRESYNC");
    }
    let sel = a.send(&format!("s SELECT {name}"));
    let mut model = ClientModel {
        uids: Vec::new(),
        exists: 0,
    };
    model.apply(&sel, false)?;
    b.send(&format!("s SELECT {name}"));
    let learn = |a: &mut Client, model: &mut ClientModel| -> Result<(), String> {
        if model.uids.len() < model.exists {
            let got = a.send(&format!("l FETCH {}:* (UID)", model.uids.len() + 1));
            model.apply(&got, true)?;
        }
        if model.uids.len() != model.exists {
            return Err(format!(
                "client knows {} UIDs of {}",
                model.uids.len(),
                model.exists
            ));
        }
        Ok(())
    };
    learn(&mut a, &mut model)?;
    for op in ops {
        let count = store.status(mbox.id).unwrap().messages as usize;
        match op {
            Op::Append => {
                let raw = message("b", "y");
                let mut cmd = format!("x APPEND {name} {{{}+}}\r\n", raw.len()).into_bytes();
                cmd.extend_from_slice(&raw);
                cmd.extend_from_slice(b"\r\n");
                b.feed(&cmd);
            }
            Op::Deliver => {
                f.deliver("alice", &name, &message("d", "z"));
            }
            Op::Flag(i) if count > 0 => {
                b.send("n NOOP");
                b.send(&format!("f STORE {} +FLAGS (\\Flagged)", i % count + 1));
            }
            Op::Expunge(positions) if count > 0 => {
                b.send("n NOOP");
                let set: Vec<String> = positions
                    .iter()
                    .map(|p| (p % count + 1).to_string())
                    .collect();
                b.send(&format!(
                    "d STORE {} +FLAGS.SILENT (\\Deleted)",
                    set.join(",")
                ));
                b.send("x EXPUNGE");
            }
            Op::FetchSeq(i) if model.exists > 0 => {
                let got = a.send(&format!("g FETCH {} (UID FLAGS)", i % model.exists + 1));
                model.apply(&got, true)?;
            }
            Op::StoreSeq(i) if model.exists > 0 => {
                let got = a.send(&format!(
                    "t STORE {} +FLAGS ($Seen{i})",
                    i % model.exists + 1
                ));
                model.apply(&got, true)?;
            }
            Op::Search => {
                let got = a.send("q SEARCH ALL");
                model.apply(&got, true)?;
            }
            Op::UidFetch => {
                let got = a.send("u UID FETCH 1:* (FLAGS)");
                model.apply(&got, false)?;
            }
            Op::Noop => {
                let got = a.send("n NOOP");
                model.apply(&got, false)?;
            }
            _ => {}
        }
        learn(&mut a, &mut model)?;
    }
    let got = a.send("n NOOP");
    model.apply(&got, false)?;
    learn(&mut a, &mut model)?;
    let (_, metas) = store.snapshot(mbox.id).unwrap();
    let truth: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    if model.uids != truth {
        return Err(format!(
            "after NOOP the client has {:?}, the store {:?}",
            model.uids, truth
        ));
    }
    Ok(())
}

#[test]
fn views_follow_concurrent_changes() {
    let f = Fixture::new();
    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(
            &(proptest::collection::vec(op(), 1..25), any::<bool>()),
            |(ops, qresync)| {
                run_case(&f, &ops, qresync).map_err(TestCaseError::fail)?;
                Ok(())
            },
        )
        .unwrap();
}
