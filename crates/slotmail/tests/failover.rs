//! Changing masters without losing mail (docs/failover.md), end to end on a
//! cluster of 3 machines (loopback addresses) × 2 slots run by `slotmail
//! machine run`, under continuous write load from independent clients
//! (Python's imaplib APPEND and smtplib LMTP, tests/python/writers.py) that
//! write through `slotmail proxy run` (on a loopback address of its own),
//! which routes each session to the user's current master; they retry on
//! NO [UNAVAILABLE] / 4xx, a BYE or a dropped connection. At the end the
//! check (`slotmail check --all --full`) reports every store clean.
//!
//! - switchover and evacuate: every acknowledged message is on the new
//!   master byte for byte; the refused-write window is measured (by ctl and
//!   by the writers) and printed; master and replica are equal over IMAP.
//! - failover: replication to one store's replica is stopped, the master
//!   keeps acknowledging mail (and a new mailbox, a flag change), its
//!   machine is killed (-9, every process); `ctl failover` promotes the
//!   replica; the writers go on there; the restarted machine's old master
//!   is fenced (refuses IMAP and LMTP writes); `ctl reconcile` brings every
//!   acknowledged message into the new master and rebuilds the old one as a
//!   replica; no acknowledged message is missing and both sides are equal.

mod common;

use common::cluster::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORDS: [(&str, &str); 3] = [
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
];

fn add_user(cluster: &Path, user: &str, password: &str, store: Option<&str>) {
    let mut args = vec!["user", "add", user, "--password-stdin"];
    if let Some(s) = store {
        args.extend(["--store", s]);
    }
    ctl_json(cluster, &args, &format!("{password}\n"), 0);
}

fn store_of_user(cluster: &Path, user: &str) -> Value {
    ctl_json(cluster, &["user", "show", user], "", 0)
}

/// Print and check the writers' report: each wrote, each was refused or cut
/// for at most `window_max`.
fn writer_summary(report: &Value, what: &str) -> u64 {
    let mut worst = 0;
    for w in report["writers"].as_array().unwrap() {
        let acked = w["acked"].as_array().unwrap().len();
        let outage = w["longest_outage_ms"].as_u64().unwrap();
        worst = worst.max(outage);
        eprintln!(
            "{what}: writer {} {}: {acked} acknowledged, {} refused, {} errors, longest refused window {outage} ms, masters {}",
            w["kind"], w["user"], w["refused"], w["errors"], w["masters"]
        );
        assert!(acked > 10, "writer wrote too little: {w}");
    }
    worst
}

#[test]
fn switchover_and_evacuate_under_write_load_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let machines = [
        ("w1", "127.0.0.41"),
        ("w2", "127.0.0.42"),
        ("w3", "127.0.0.43"),
    ];
    let (cluster, sups) = start_cluster(dir, "sw", &machines);
    let mut proxy = Proxy::start_on(dir, &cluster, "127.0.0.44");
    for (u, p) in PASSWORDS {
        add_user(&cluster, u, p, None);
    }
    let alice = store_of_user(&cluster, "alice");
    let store = alice["store"].as_str().unwrap().to_string();
    let old_master = alice["master"]["slot"].as_str().unwrap().to_string();
    let replica = alice["replicas"][0]["slot"].as_str().unwrap().to_string();

    // Bad input: nothing changes.
    ctl_json(&cluster, &["switchover", "nosuch"], "", 2);
    ctl_json(
        &cluster,
        &["switchover", &store, "--to", &old_master],
        "",
        2,
    );
    let other = store_of_user(&cluster, "bob")["master"]["slot"]
        .as_str()
        .unwrap()
        .to_string();
    ctl_json(&cluster, &["switchover", &store, "--to", &other], "", 2);
    ctl_json(&cluster, &["switchover", &store, "--to", "zz9"], "", 2);
    ctl_json(&cluster, &["evacuate", "nosuch"], "", 2);
    assert_eq!(store_of_user(&cluster, "alice")["epoch"], 1);

    let writers = Writers::start(&cluster, dir, &proxy, &[PASSWORDS[0], PASSWORDS[1]]);
    std::thread::sleep(Duration::from_millis(1500));
    let sw = ctl_json(&cluster, &["switchover", &store], "", 0);
    assert_eq!(sw["old_master"], old_master.as_str());
    assert_eq!(sw["new_master"], replica.as_str());
    assert_eq!(sw["epoch"], 2);
    assert_eq!(sw["equality"]["equal"], true);
    let refusal_ms = sw["write_refusal_ms"].as_u64().unwrap();
    eprintln!(
        "switchover {store}: writes refused {refusal_ms} ms (drained after {} ms, flip at {} ms, old master back at {})",
        sw["drain_ms"], sw["flip_ms"], sw["old_master_back_ms"]
    );
    assert_eq!(
        store_of_user(&cluster, "alice")["master"]["slot"],
        replica.as_str()
    );
    std::thread::sleep(Duration::from_millis(1500));

    // Evacuate the machine that now holds two masters.
    let machine = store_of_user(&cluster, "alice")["master"]["machine"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = ctl_json(&cluster, &["evacuate", &machine], "", 0);
    let switched = ev["switched"].as_array().unwrap();
    assert_eq!(switched.len(), 2, "{ev}");
    let stores = ctl_json(&cluster, &["store", "list"], "", 0);
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let machine_of = |slot: &str| -> String {
        slots["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == slot)
            .unwrap()["machine"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut per_machine = std::collections::BTreeMap::new();
    for s in stores["stores"].as_array().unwrap() {
        *per_machine
            .entry(machine_of(s["master"].as_str().unwrap()))
            .or_insert(0) += 1;
    }
    assert!(!per_machine.contains_key(&machine), "{per_machine:?}");
    assert_eq!(per_machine.values().max(), Some(&2), "{per_machine:?}");
    for s in switched {
        eprintln!(
            "evacuate {machine}: store {} writes refused {} ms",
            s["store"], s["write_refusal_ms"]
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (report, acked) = writers.stop();
    let window = writer_summary(&report, "switchover");
    eprintln!("refused-write window: ctl {refusal_ms} ms, longest seen by a writer {window} ms");

    for (u, p) in [PASSWORDS[0], PASSWORDS[1]] {
        let v = assert_all_acked_present(&cluster, u, p, &acked);
        eprintln!("{u}: {v}");
        wait_imap_equal(&cluster, u, p);
    }
    let history = ctl_json(&cluster, &["history", "--store", &store], "", 0);
    let h = history["history"].as_array().unwrap();
    assert_eq!(h[h.len() - 1]["epoch"], 1, "{history}");
    assert!(
        h.iter()
            .any(|e| e["reason"] == "switchover" && e["epoch"] == 2)
    );
    ctl_json(&cluster, &["history", "--store", "nosuch"], "", 2);
    wait_status(&cluster, &sups, "healthy after the switchovers", |c, _| {
        c == 0
    });
    let clean = assert_check_clean(&cluster, PASSWORDS.len());
    eprintln!(
        "check after the switchovers: {} users, {} messages, clean",
        clean["users"], clean["messages"]
    );
    assert!(proxy.stop(), "the proxy did not stop cleanly");
}

/// An IMAP APPEND and an LMTP delivery at a slot: both must be refused as
/// a replica refuses (NO [UNAVAILABLE], 451).
const REFUSES_WRITES: &str = r##"
import imaplib, smtplib, sys, json
host, imap_port, lmtp_port, user, pw = sys.argv[1:6]
i = imaplib.IMAP4(host, int(imap_port))
i.login(user, pw)
typ, data = i.append("INBOX", None, None, b"Subject: to a fenced slot\r\n\r\nx\r\n")
i.logout()
l = smtplib.LMTP(host, int(lmtp_port))
try:
    l.sendmail("a@example.org", [user + "@e2e.test"], b"Subject: x\r\n\r\nx\r\n")
    code = 250
except smtplib.SMTPRecipientsRefused as e:
    code = list(e.recipients.values())[0][0]
except smtplib.SMTPDataError as e:
    code = e.smtp_code
print(json.dumps({"imap": typ, "imap_text": b" ".join(data).decode(), "lmtp": code}))
"##;

/// One message in INBOX (UID 1).
const SEED: &str = r##"
import imaplib, sys
host, port, user, pw = sys.argv[1:5]
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
typ, data = i.append("INBOX", None, None, b"Subject: seed\r\nMessage-ID: <seed@e2e.test>\r\n\r\nthe first message\r\n")
assert typ == "OK", data
i.logout()
"##;

/// Changes a writer does not make, on the master while its replica is
/// down: a new mailbox with two messages, and \Flagged on INBOX's first
/// message. Prints the acknowledged messages in writers.py's format.
const LATE_CHANGES: &str = r##"
import hashlib, imaplib, json, sys
host, port, user, pw = sys.argv[1:5]
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
assert i.create("Late")[0] == "OK"
acked = []
for n in range(2):
    mid = "late-%s-%d" % (user, n)
    raw = ("Subject: %s\r\nMessage-ID: <%s@e2e.test>\r\n\r\nwritten after the replica stopped\r\n" % (mid, mid)).encode()
    typ, data = i.append("Late", "(\\Seen)", None, raw)
    assert typ == "OK", data
    acked.append({"id": mid, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)})
i.select("INBOX")
typ, data = i.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
assert typ == "OK", data
i.logout()
print(json.dumps({"writers": [{"kind": "imap", "user": user, "acked": acked}]}))
"##;

#[test]
fn failover_fences_the_old_master_and_reconcile_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let machines = [
        ("f1", "127.0.0.51"),
        ("f2", "127.0.0.52"),
        ("f3", "127.0.0.53"),
    ];
    let (cluster, mut sups) = start_cluster(dir, "fo", &machines);
    let mut proxy = Proxy::start_on(dir, &cluster, "127.0.0.54");
    let (store, old_master, replica) = store_mastered_on(&cluster, "f1");
    let (other_store, _, _) = store_mastered_on(&cluster, "f2");
    add_user(&cluster, "alice", "alice-pw", Some(&store));
    add_user(&cluster, "bob", "bob-pw", Some(&other_store));

    // The machine is alive: failover is refused, nothing changes.
    let (code, _, err) = ctl(&cluster, &["failover", "f1"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("alive"), "{err}");
    ctl_json(&cluster, &["failover", "nosuch"], "", 2);
    ctl_json(&cluster, &["reconcile", &old_master], "", 2);
    ctl_json(&cluster, &["rebuild", &old_master], "", 2);

    // A first message, replicated before the load starts: the flag change
    // below is made to it on the master alone.
    let (h, p) = master_imap(&cluster, "alice");
    python(SEED, &[&h, &p, "alice", "alice-pw"]);
    wait_imap_equal(&cluster, "alice", "alice-pw");
    let users = [("alice", "alice-pw"), ("bob", "bob-pw")];
    let writers = Writers::start(&cluster, dir, &proxy, &users);
    std::thread::sleep(Duration::from_millis(1500));

    // Replication to alice's replica stops; the master goes on
    // acknowledging: mail that exists only there.
    ctl_json(&cluster, &["slot", "stop", &replica], "", 0);
    let (h, p) = master_imap(&cluster, "alice");
    let late = python(LATE_CHANGES, &[&h, &p, "alice", "alice-pw"]);
    let late_file = dir.join("late.json");
    std::fs::write(&late_file, &late.stdout).unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    // kill -9 every process of f1: its supervisor and its slots.
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let mut pids: Vec<String> = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["machine"] == "f1")
        .filter_map(|s| s["process"]["pid"].as_u64())
        .map(|p| p.to_string())
        .collect();
    assert_eq!(pids.len(), 2, "{slots}");
    let f1 = &mut sups[0];
    pids.push(f1.child.as_ref().unwrap().id().to_string());
    let status = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = f1.child.take().unwrap().wait();
    let killed_at = Instant::now();
    // The replica comes back; with its master dead it cannot catch up.
    ctl_json(&cluster, &["slot", "start", &replica], "", 0);

    // The lag bound: the dead master's last status shows the replica behind.
    let (code, _, err) = ctl(&cluster, &["failover", "f1", "--max-lag-ms", "1"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lagged"), "{err}");
    let fo = ctl_json(&cluster, &["failover", "f1"], "", 0);
    let promoted = &fo["stores"].as_array().unwrap()[0];
    assert_eq!(fo["stores"].as_array().unwrap().len(), 1, "{fo}");
    assert_eq!(promoted["store"], store.as_str());
    assert_eq!(promoted["new_master"], replica.as_str());
    assert_eq!(promoted["fenced"], old_master.as_str());
    assert_eq!(promoted["writable"], true);
    assert_eq!(promoted["epoch"], 2);
    eprintln!(
        "failover f1: command {} ms, promoted master writable at {} ms; {} ms after the kill; last lag {} ms, pending {}",
        fo["elapsed_ms"],
        promoted["promoted_ms"],
        killed_at.elapsed().as_millis(),
        promoted["last_lag_ms"],
        promoted["last_pending_users"]
    );
    // Again: f1 holds no master any more; nothing to do.
    let again = ctl_json(&cluster, &["failover", "f1"], "", 0);
    assert_eq!(again["stores"], serde_json::json!([]));
    std::thread::sleep(Duration::from_millis(1500));

    // f1 comes back: its old master is fenced and refuses writes.
    sups[0] = Supervisor::start(&cluster, dir, "f1");
    let (host, imap_port, lmtp_port) = slot_imap(&cluster, &old_master);
    let start = Instant::now();
    loop {
        let list = ctl_json(&cluster, &["slot", "list"], "", 0);
        let s = list["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == old_master.as_str())
            .unwrap()
            .clone();
        if s["admin"]["read_only"] == true {
            assert_eq!(s["role"], "fenced", "{s}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = python(
        REFUSES_WRITES,
        &[&host, &imap_port, &lmtp_port, "alice", "alice-pw"],
    );
    let refused: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(refused["imap"], "NO", "{refused}");
    assert!(
        refused["imap_text"]
            .as_str()
            .unwrap()
            .contains("UNAVAILABLE"),
        "{refused}"
    );
    assert_eq!(refused["lmtp"], 451, "{refused}");
    let history = ctl_json(&cluster, &["history"], "", 0);
    assert_eq!(
        history["fenced"][0]["slot"],
        old_master.as_str(),
        "{history}"
    );
    assert_eq!(history["history"][0]["reason"], "failover: machine f1 down");

    let (report, acked) = writers.stop();
    writer_summary(&report, "failover");
    // alice's writers went on, through the proxy, at the promoted master.
    for w in report["writers"].as_array().unwrap() {
        if w["user"] == "alice" {
            assert!(
                w["masters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m == replica.as_str()),
                "{w}"
            );
        }
    }
    assert!(
        tail(&proxy.log(), usize::MAX).contains(&format!("slot={replica}")),
        "the proxy logged no session on the promoted master {replica}\n{}",
        tail(&proxy.log(), 3000)
    );

    // Reconcile: what only the old master had goes to the new master.
    let rec = ctl_json(&cluster, &["reconcile", &old_master], "", 0);
    eprintln!("reconcile: {}", rec["summary"]);
    let summary = &rec["summary"];
    assert!(summary["appended"].as_u64().unwrap() >= 3, "{rec}");
    assert_eq!(summary["mailboxes_created"], 1, "{rec}");
    assert_eq!(summary["flags_set"], 1, "{rec}");
    assert_eq!(rec["rebuild"]["equal"], true, "{rec}");
    assert!(Path::new(rec["report"].as_str().unwrap()).exists());
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let s = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == old_master.as_str())
        .unwrap();
    assert_eq!(s["role"], "replica", "{s}");
    ctl_json(&cluster, &["reconcile", &old_master], "", 2);

    // Nothing acknowledged is missing; master and replica are equal.
    for (u, p) in users {
        let v = assert_all_acked_present(&cluster, u, p, &acked);
        eprintln!("{u}: {v}");
    }
    assert_all_acked_present(&cluster, "alice", "alice-pw", &late_file);
    let dump = wait_imap_equal(&cluster, "alice", "alice-pw");
    assert!(dump["mailboxes"]["Late"].is_object(), "{dump}");
    let inbox = dump["mailboxes"]["INBOX"]["messages"].as_array().unwrap();
    assert!(
        inbox[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "\\Flagged"),
        "{}",
        inbox[0]
    );
    wait_imap_equal(&cluster, "bob", "bob-pw");
    wait_status(&cluster, &sups, "healthy after reconcile", |c, _| c == 0);
    let clean = assert_check_clean(&cluster, users.len());
    eprintln!(
        "check after reconcile: {} users, {} messages, clean",
        clean["users"], clean["messages"]
    );
    assert!(proxy.stop(), "the proxy did not stop cleanly");
}

/// `n` APPENDs to INBOX; prints them in writers.py's format, each with the
/// UIDVALIDITY and UID of its APPENDUID.
const APPENDS_WITH_UIDS: &str = r##"
import hashlib, imaplib, json, re, sys
host, port, user, pw, tag, n = sys.argv[1:7]
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
acked = []
for k in range(int(n)):
    mid = "%s-%s-%d" % (tag, user, k)
    raw = ("Subject: %s\r\nMessage-ID: <%s@e2e.test>\r\n\r\n%s\r\n" % (mid, mid, tag)).encode()
    typ, data = i.append("INBOX", "(\\Seen)", None, raw)
    assert typ == "OK", data
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert m, data
    acked.append({"id": mid, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
                  "uidvalidity": int(m.group(1)), "uid": int(m.group(2))})
i.logout()
print(json.dumps({"writers": [{"kind": "imap", "user": user, "acked": acked}]}))
"##;

/// INBOX as a client sees it: UIDVALIDITY and the SHA-256 of every UID.
const INBOX_BY_UID: &str = r##"
import hashlib, imaplib, json, re, sys
host, port, user, pw = sys.argv[1:5]
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
typ, _ = i.select("INBOX", readonly=True)
assert typ == "OK"
uidvalidity = int(i.response("UIDVALIDITY")[1][0])
typ, data = i.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
assert typ == "OK", data
uids = {}
for item in data:
    if isinstance(item, tuple):
        uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
        uids[str(uid)] = hashlib.sha256(item[1]).hexdigest()
i.logout()
print(json.dumps({"uidvalidity": uidvalidity, "uids": uids}))
"##;

/// The scenario of reliability finding 3: the master acknowledges APPENDs
/// its replica never gets, is killed, the replica is promoted (`ctl
/// failover f1 EXTRA`), takes new APPENDs, the old master returns and is
/// reconciled. Asserts every acknowledged message present and no UID given
/// by an APPENDUID naming another message than the one it was given to;
/// returns the failover and reconcile reports and the APPENDUIDs given
/// before and after the failover.
fn failover_after_unreplicated_appends(
    dir: &Path,
    machines: &[(&str, &str); 3],
    name: &str,
    extra: &[&str],
) -> (Value, Value, Vec<Value>, Vec<Value>) {
    let (cluster, mut sups) = start_cluster(dir, name, machines);
    let m1 = machines[0].0;
    let (store, old_master, replica) = store_mastered_on(&cluster, m1);
    add_user(&cluster, "alice", "alice-pw", Some(&store));
    let appends = |tag: &str, n: &str| {
        let (h, p) = master_imap(&cluster, "alice");
        let out = python(APPENDS_WITH_UIDS, &[&h, &p, "alice", "alice-pw", tag, n]);
        let file = dir.join(format!("{tag}.json"));
        std::fs::write(&file, &out.stdout).unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (file, v["writers"][0]["acked"].as_array().unwrap().clone())
    };
    let (before_file, before) = appends("before", "3");
    wait_imap_equal(&cluster, "alice", "alice-pw");

    // Replication to the replica stops; the master acknowledges 5 more.
    ctl_json(&cluster, &["slot", "stop", &replica], "", 0);
    let (lost_file, unreplicated) = appends("unreplicated", "5");
    std::thread::sleep(Duration::from_millis(1500));
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let mut pids: Vec<String> = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["machine"] == m1)
        .filter_map(|s| s["process"]["pid"].as_u64())
        .map(|p| p.to_string())
        .collect();
    pids.push(sups[0].child.as_ref().unwrap().id().to_string());
    let status = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = sups[0].child.take().unwrap().wait();
    ctl_json(&cluster, &["slot", "start", &replica], "", 0);
    let mut args = vec!["failover", m1];
    args.extend(extra);
    let fo = ctl_json(&cluster, &args, "", 0);
    let promoted = fo["stores"][0].clone();
    assert_eq!(promoted["new_master"], replica.as_str(), "{fo}");
    assert_eq!(promoted["writable"], true, "{fo}");

    // New mail on the promoted master.
    let (after_file, after) = appends("after", "5");

    // The old machine returns, fenced; reconcile.
    sups[0] = Supervisor::start(&cluster, dir, m1);
    let start = Instant::now();
    loop {
        let list = ctl_json(&cluster, &["slot", "list"], "", 0);
        let s = list["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == old_master.as_str())
            .unwrap()
            .clone();
        if s["admin"]["read_only"] == true {
            assert_eq!(s["role"], "fenced", "{s}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rec = ctl_json(&cluster, &["reconcile", &old_master], "", 0);
    eprintln!("{name}: reconcile {}", rec["summary"]);
    assert_eq!(rec["rebuild"]["equal"], true, "{rec}");

    // Every acknowledged message is there.
    for f in [&before_file, &lost_file, &after_file] {
        assert_all_acked_present(&cluster, "alice", "alice-pw", f);
    }
    // No APPENDUID names another message than its own (read over IMAP,
    // on the master and, equal to it, on the rebuilt replica).
    wait_imap_equal(&cluster, "alice", "alice-pw");
    let (h, p) = master_imap(&cluster, "alice");
    let inbox: Value =
        serde_json::from_slice(&python(INBOX_BY_UID, &[&h, &p, "alice", "alice-pw"]).stdout)
            .unwrap();
    let mut given = std::collections::BTreeMap::new();
    for a in before.iter().chain(&unreplicated).chain(&after) {
        assert_eq!(a["uidvalidity"], inbox["uidvalidity"], "{a}");
        let uid = a["uid"].as_u64().unwrap();
        // The same UID was given twice only if the gap was too small;
        // then it must name neither message now.
        let twice = given.insert(uid, a["sha256"].clone()).is_some();
        match &inbox["uids"][uid.to_string()] {
            Value::Null => {}
            held => {
                assert!(!twice, "UID {uid} given twice and still held: {inbox}");
                assert_eq!(
                    held, &a["sha256"],
                    "UID {uid} names another message: {inbox}"
                );
            }
        }
    }
    assert_eq!(
        inbox["uids"].as_object().unwrap().len(),
        13,
        "3 + 5 + 5 messages, each once: {inbox}"
    );
    (fo, rec, unreplicated, after)
}

#[test]
fn regression_a_failover_reused_uids_of_appends_the_replica_never_got() {
    let tmp = tempfile::tempdir().unwrap();
    let machines = [
        ("u1", "127.0.0.71"),
        ("u2", "127.0.0.72"),
        ("u3", "127.0.0.73"),
    ];
    let (fo, rec, unreplicated, after) =
        failover_after_unreplicated_appends(tmp.path(), &machines, "uidgap", &[]);
    // The promoted master took the gap: its UIDs start above it.
    assert_eq!(fo["stores"][0]["uid_gap_users"], 1, "{fo}");
    let highest_lost = unreplicated
        .iter()
        .map(|a| a["uid"].as_u64().unwrap())
        .max();
    let lowest_new = after.iter().map(|a| a["uid"].as_u64().unwrap()).min();
    assert!(
        lowest_new.unwrap() > highest_lost.unwrap() + 90_000,
        "{unreplicated:?} {after:?}"
    );
    assert_eq!(rec["summary"]["renumbered"], 0, "{rec}");
    assert_eq!(rec["summary"]["appended"], 5, "{rec}");
}

#[test]
fn regression_a_failover_without_uid_gap_has_its_uid_collisions_renumbered() {
    let tmp = tempfile::tempdir().unwrap();
    let machines = [
        ("v1", "127.0.0.76"),
        ("v2", "127.0.0.77"),
        ("v3", "127.0.0.78"),
    ];
    let (fo, rec, unreplicated, after) =
        failover_after_unreplicated_appends(tmp.path(), &machines, "uidnogap", &["--uid-gap", "0"]);
    assert_eq!(fo["stores"][0]["uid_gap_users"], 0, "{fo}");
    // Without the gap the promoted master gave the same UIDs again ...
    let lost: Vec<u64> = unreplicated
        .iter()
        .map(|a| a["uid"].as_u64().unwrap())
        .collect();
    let new: Vec<u64> = after.iter().map(|a| a["uid"].as_u64().unwrap()).collect();
    assert_eq!(lost, new, "the scenario must produce collisions");
    // ... and reconcile renumbered each collision (the check above: those
    // UIDs name nothing now, both messages are present).
    assert_eq!(rec["summary"]["renumbered"], 5, "{rec}");
    assert_eq!(rec["summary"]["appended"], 5, "{rec}");
}
