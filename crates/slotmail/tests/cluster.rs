//! The management plane end to end: `slotmail ctl` builds a cluster of 3
//! machines (distinct loopback addresses) × 2 slots, places stores with
//! `plan --apply`, three `slotmail machine run` supervisors start the slots
//! as processes, `ctl user add` creates users on their stores' masters,
//! Python's smtplib (LMTP) and imaplib deliver and read mail at each user's
//! master, one slot is stopped and started through its supervisor while the
//! others keep serving, and `ctl status --json` reflects every step.

mod common;

use common::cluster::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The machines: name and loopback address.
const MACHINES: [(&str, &str); 3] = [
    ("m1", "127.0.0.11"),
    ("m2", "127.0.0.12"),
    ("m3", "127.0.0.13"),
];
/// Users and their passwords.
const USERS: [(&str, &str); 4] = [
    ("alice", "alice-pw-1"),
    ("bob", "bob-pw-2"),
    ("carol", "carol-pw-3"),
    ("dave", "dave-pw-4"),
];

/// Fill a user's INBOX with `count` messages at the master, wait until the
/// replica's INBOX holds as many, then delete them all at the master; print
/// the replica's count after a pause (the deletion is held).
const MASS_DELETE: &str = r##"
import imaplib, json, sys, time
spec, replica, count = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
def replica_count():
    r = imaplib.IMAP4(replica[0], replica[1])
    r.login(spec["user"], spec["password"])
    n = int(r.select("INBOX", readonly=True)[1][0])
    r.logout()
    return n
m = imaplib.IMAP4(spec["imap"][0], spec["imap"][1])
m.login(spec["user"], spec["password"])
base = int(m.select("INBOX")[1][0])
for i in range(count):
    body = "From: a@example.org\r\nSubject: bulk %d\r\n\r\nbulk\r\n" % i
    assert m.append("INBOX", None, None, body.encode())[0] == "OK"
deadline = time.monotonic() + 30
while replica_count() != base + count:
    assert time.monotonic() < deadline, "replica never got the messages"
    time.sleep(0.05)
m.store("1:*", "+FLAGS", "(\\Deleted)")
m.expunge()
master_after = int(m.select("INBOX")[1][0])
m.logout()
time.sleep(1.5)
print(json.dumps({"base": base, "master_after": master_after, "replica_after": replica_count()}))
"##;

/// The count of a user's INBOX on a slot.
const INBOX_COUNT: &str = r##"
import imaplib, json, sys
addr, user, pw = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
c = imaplib.IMAP4(addr[0], addr[1])
c.login(user, pw)
print(json.dumps({"messages": int(c.select("INBOX", readonly=True)[1][0])}))
c.logout()
"##;

#[test]
fn three_machines_two_slots_each_managed_by_ctl() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cluster = dir.join("cluster.toml");

    // A cluster, its machines and slots.
    let init = ctl_json(
        &cluster,
        &["init", "--name", "e2e", "--allow-plaintext-auth"],
        "",
        0,
    );
    assert_eq!(init["cluster"], "e2e");
    ctl_json(&cluster, &["init"], "", 2);
    for (name, address) in MACHINES {
        ctl_json(
            &cluster,
            &["machine", "add", name, "--address", address],
            "",
            0,
        );
        let added = ctl_json(&cluster, &["slot", "add", name, "--count", "2"], "", 0);
        assert_eq!(added["added"].as_array().unwrap().len(), 2);
        assert_eq!(added["added"][0]["imap_port"], 1143);
        assert_eq!(added["added"][1]["imap_port"], 1144);
    }
    // Refusals change nothing.
    let before = ctl_json(&cluster, &["machine", "list"], "", 0);
    ctl_json(
        &cluster,
        &["machine", "add", "m4", "--address", "127.0.0.11"],
        "",
        2,
    );
    ctl_json(&cluster, &["machine", "remove", "m1"], "", 2);
    ctl_json(&cluster, &["slot", "add", "nosuch"], "", 2);
    assert_eq!(ctl_json(&cluster, &["machine", "list"], "", 0), before);

    // Placement: 6 slots, stores of 2: 3 stores, one master per machine.
    let plan = ctl_json(&cluster, &["plan", "--replicas", "1"], "", 0);
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["plan"]["stores"].as_array().unwrap().len(), 3);
    assert_eq!(
        ctl_json(&cluster, &["store", "list"], "", 0)["stores"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let applied = ctl_json(&cluster, &["plan", "--replicas", "1", "--apply"], "", 0);
    assert_eq!(applied["created"].as_array().unwrap().len(), 3);
    ctl_json(&cluster, &["plan", "--replicas", "1", "--apply"], "", 2);
    let stores = ctl_json(&cluster, &["store", "list"], "", 0);
    let masters: Vec<&str> = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["master"].as_str().unwrap())
        .collect();
    assert_eq!(masters.len(), 3);
    for (m, _) in MACHINES {
        assert_eq!(
            masters.iter().filter(|s| s.starts_with(m)).count(),
            1,
            "one master per machine: {masters:?}"
        );
    }

    // Before the supervisors run, every slot is down: status finds problems.
    let down = ctl_json(&cluster, &["status"], "", 1);
    assert_eq!(down["stores"].as_array().unwrap().len(), 3);
    assert_eq!(down["stores"][0]["healthy"], false);
    ctl_json(&cluster, &["slot", "stop", "m1-1"], "", 3);

    // The supervisors start every slot.
    let sups: Vec<Supervisor> = MACHINES
        .iter()
        .map(|(name, _)| Supervisor::start(&cluster, dir, name))
        .collect();
    let healthy = wait_status(&cluster, &sups, "a healthy cluster", |code, _| code == 0);
    for st in healthy["stores"].as_array().unwrap() {
        assert_eq!(st["master"]["healthy"], true, "{st}");
        assert_eq!(st["master"]["read_only"], false, "{st}");
        assert_eq!(st["replicas"][0]["healthy"], true, "{st}");
        assert_eq!(st["replicas"][0]["read_only"], true, "{st}");
        assert_eq!(st["epoch"], 1);
    }
    let machines = ctl_json(&cluster, &["machine", "list"], "", 0);
    for m in machines["machines"].as_array().unwrap() {
        assert!(m["supervisor"]["pid"].is_u64(), "{m}");
    }

    // Users, placed on the store with the fewest users.
    for (user, password) in USERS {
        let added = ctl_json(
            &cluster,
            &["user", "add", user, "--password-stdin"],
            &format!("{password}\n"),
            0,
        );
        assert_eq!(added["user"], user);
    }
    ctl_json(
        &cluster,
        &["user", "add", "alice", "--password-stdin"],
        "x\n",
        2,
    );
    ctl_json(
        &cluster,
        &["user", "add", "erin", "--password-stdin"],
        "",
        2,
    );
    ctl_json(
        &cluster,
        &[
            "user",
            "add",
            "erin",
            "--store",
            "nosuch",
            "--password-stdin",
        ],
        "pw\n",
        2,
    );
    let users = ctl_json(&cluster, &["user", "list"], "", 0);
    let users = users["users"].as_array().unwrap();
    assert_eq!(users.len(), 4);
    let store_of_user = |u: &str| -> String {
        users.iter().find(|x| x["user"] == u).unwrap()["store"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut per_store = std::collections::BTreeMap::new();
    for (u, _) in USERS {
        *per_store.entry(store_of_user(u)).or_insert(0) += 1;
    }
    assert_eq!(
        per_store.len(),
        3,
        "users spread over every store: {per_store:?}"
    );
    let status = wait_status(&cluster, &sups, "users counted", |code, s| {
        code == 0 && s["users"] == 4
    });
    assert_eq!(
        status["stores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["users"].as_u64().unwrap())
            .sum::<u64>(),
        4
    );

    // Mail in and out at each user's master.
    let specs: Vec<Value> = USERS
        .iter()
        .map(|(u, p)| mail_spec(&cluster, u, p, Some(&format!("first for {u}"))))
        .collect();
    let read = mail(&specs);
    for (u, _) in USERS {
        assert_eq!(
            read[u],
            serde_json::json!([format!("Subject: first for {u}")])
        );
    }
    let show = ctl_json(&cluster, &["user", "show", "alice"], "", 0);
    assert_eq!(show["info"]["messages"], 1, "{show}");

    // Stop alice's master: her store is unhealthy, the others serve on.
    let alice_store = store_of_user("alice");
    let alice_master = show["master"]["slot"].as_str().unwrap().to_string();
    let other = USERS
        .iter()
        .find(|(u, _)| store_of_user(u) != alice_store)
        .unwrap();
    let stopped = ctl_json(&cluster, &["slot", "stop", &alice_master], "", 0);
    assert_eq!(stopped["process"]["state"], "stopped");
    let status = ctl_json(&cluster, &["status"], "", 1);
    for st in status["stores"].as_array().unwrap() {
        if st["id"] == alice_store.as_str() {
            assert_eq!(st["healthy"], false, "{st}");
            assert_eq!(st["master"]["healthy"], false, "{st}");
            assert_eq!(st["replicas"][0]["healthy"], true, "{st}");
        } else {
            assert_eq!(st["healthy"], true, "{st}");
        }
    }
    let alice_spec = mail_spec(&cluster, "alice", "alice-pw-1", None);
    let imap_port = alice_spec["imap"][1].as_u64().unwrap() as u16;
    let alice_imap: std::net::SocketAddr =
        format!("{}:{imap_port}", alice_spec["imap"][0].as_str().unwrap())
            .parse()
            .unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&alice_imap, Duration::from_millis(500)).is_err(),
        "alice's master still listens after stop"
    );
    let read = mail(&[mail_spec(
        &cluster,
        other.0,
        other.1,
        Some("while a slot is down"),
    )]);
    assert_eq!(
        read[other.0],
        serde_json::json!([
            format!("Subject: first for {}", other.0),
            "Subject: while a slot is down"
        ])
    );
    // The supervisor keeps it stopped (no restart behind the operator's back).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        store_of(&ctl_json(&cluster, &["status"], "", 1), &alice_store)["master"]["healthy"],
        false
    );

    // Start it again: healthy, and alice's mail is intact.
    let started_again = ctl_json(&cluster, &["slot", "start", &alice_master], "", 0);
    assert_eq!(started_again["process"]["state"], "running");
    assert_eq!(started_again["admin"]["read_only"], false);
    let status = wait_status(&cluster, &sups, "healthy again", |code, _| code == 0);
    assert_eq!(store_of(&status, &alice_store)["master"]["healthy"], true);
    let read = mail(&[alice_spec]);
    assert_eq!(
        read["alice"],
        serde_json::json!(["Subject: first for alice"])
    );

    // Restart, scrub, passwords, quota.
    ctl_json(&cluster, &["slot", "restart", &alice_master], "", 0);
    let scrub = ctl_json(&cluster, &["slot", "scrub", &alice_master], "", 0);
    assert_eq!(scrub["scrub"]["clean"], true);
    ctl_json(
        &cluster,
        &["user", "passwd", "alice", "--password-stdin"],
        "new-alice-pw\n",
        0,
    );
    let read = mail(&[mail_spec(&cluster, "alice", "new-alice-pw", None)]);
    assert_eq!(
        read["alice"],
        serde_json::json!(["Subject: first for alice"])
    );
    ctl_json(
        &cluster,
        &["user", "quota", "alice", "--messages", "100"],
        "",
        0,
    );
    let show = ctl_json(&cluster, &["user", "show", "alice"], "", 0);
    assert_eq!(show["info"]["user"]["quota_messages"], 100);

    // Replication holds a mass deletion (every message of a mailbox of
    // more than 100) until the operator confirms it with `ctl repl
    // confirm`; `ctl status` and `ctl repl status` show the held user.
    let carol_store = store_of_user("carol");
    let carol_spec = mail_spec(&cluster, "carol", "carol-pw-3", None);
    let carol_replica = {
        let st = store_of(&ctl_json(&cluster, &["status"], "", 0), &carol_store).clone();
        st["replicas"][0]["slot"].as_str().unwrap().to_string()
    };
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let replica_slot = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == carol_replica.as_str())
        .unwrap()
        .clone();
    let replica_imap = serde_json::json!([replica_slot["address"], replica_slot["imap_port"]]);
    let out = python(
        MASS_DELETE,
        &[&carol_spec.to_string(), &replica_imap.to_string(), "120"],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = report["base"].as_u64().unwrap();
    assert_eq!(report["master_after"], 0, "{report}");
    assert_eq!(report["replica_after"], base + 120, "held: {report}");
    let held = wait_status(&cluster, &sups, "carol held", |code, doc| {
        code == 1
            && store_of(doc, &carol_store)["problems"]
                .to_string()
                .contains("replication of carol")
    });
    eprintln!("held: {}", store_of(&held, &carol_store)["problems"]);
    let (code, text, _) = ctl(&cluster, &["repl", "status", &carol_store], "");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("carol held on"), "{text}");
    eprintln!("$ slotmail ctl repl status {carol_store}\n{text}");
    let (_, text, _) = ctl(&cluster, &["status"], "");
    eprintln!("$ slotmail ctl status\n{text}");
    let repl = ctl_json(&cluster, &["repl", "status"], "", 1);
    assert_eq!(repl["held"], 1, "{repl}");
    // A user who is not held cannot be confirmed; an unknown store neither.
    ctl_json(&cluster, &["repl", "confirm", &carol_store, "bob"], "", 2);
    ctl_json(&cluster, &["repl", "confirm", "nostore", "carol"], "", 2);
    let (code, text, err) = ctl(&cluster, &["repl", "confirm", &carol_store, "bob"], "");
    eprintln!("$ slotmail ctl repl confirm {carol_store} bob\n{text}{err}[exit {code}]");
    let confirmed = ctl_json(&cluster, &["repl", "confirm", &carol_store, "carol"], "", 0);
    assert_eq!(confirmed["released"], serde_json::json!([carol_replica]));
    let start = Instant::now();
    loop {
        let out = python(
            INBOX_COUNT,
            &[&replica_imap.to_string(), "carol", "carol-pw-3"],
        );
        let n: Value = serde_json::from_slice(&out.stdout).unwrap();
        if n["messages"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{n}");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_status(&cluster, &sups, "carol released", |code, _| code == 0);
    ctl_json(&cluster, &["repl", "status"], "", 0);

    // Moves with bad input are refused, nothing changed (tests/user_move.rs
    // moves users).
    let (code, _, stderr) = ctl(
        &cluster,
        &["user", "move", "alice", "--to", &alice_store],
        "",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already"), "{stderr}");
    let (code, _, stderr) = ctl(&cluster, &["user", "move", "alice", "--to", "s999"], "");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown store"), "{stderr}");
    assert_eq!(
        ctl_json(&cluster, &["user", "show", "alice"], "", 0)["store"],
        alice_store.as_str()
    );

    // Delete a user; a store with users cannot be removed.
    ctl_json(&cluster, &["user", "delete", "dave"], "", 0);
    ctl_json(&cluster, &["user", "show", "dave"], "", 2);
    // An admin's deletion is not held by the mass-deletion guard: the
    // replica drops its copy and the cluster stays healthy.
    wait_status(&cluster, &sups, "dave deleted everywhere", |code, _| {
        code == 0
    });
    ctl_json(&cluster, &["repl", "status"], "", 0);
    ctl_json(&cluster, &["store", "remove", &alice_store], "", 2);

    // Clean shutdown: every slot process ends with its supervisor.
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let pids: Vec<u64> = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["process"]["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 6, "{slots}");
    for mut s in sups {
        assert!(s.stop(), "supervisor {} did not stop cleanly", s.name);
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "slot process {pid} outlived its supervisor"
        );
    }
    let down = ctl_json(&cluster, &["status"], "", 1);
    assert_eq!(down["stores"][0]["master"]["healthy"], false);
    eprintln!("cluster e2e: {:.1} s", started.elapsed().as_secs_f64());
}
