//! `ctl rebalance` end to end: a cluster of 3 machines (loopback
//! addresses) × 2 slots run by `slotmail machine run`, with users and mail,
//! grows by a 4th machine with 2 slots; `ctl rebalance --apply` moves slots
//! onto it (add replica, full sync, switchover where a master moves, drop)
//! while independent clients (tests/python/writers.py: Python's imaplib
//! APPEND and smtplib LMTP) keep writing through `slotmail proxy run`.
//! Afterwards the stores use the new machine, every acknowledged message
//! (before and during the rebalance) is there byte for byte when read over
//! IMAP through the proxy, every message held before keeps its UID and
//! UIDVALIDITY, the check is clean, `ctl status --json` shows the new
//! topology, and the slots that left keep their data aside.

mod common;

use common::cluster::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const USERS: [(&str, &str); 4] = [
    ("ann", "ann-pw"),
    ("ben", "ben-pw"),
    ("cat", "cat-pw"),
    ("dan", "dan-pw"),
];

const MACHINES: [(&str, &str); 3] = [
    ("r1", "127.0.0.171"),
    ("r2", "127.0.0.172"),
    ("r3", "127.0.0.173"),
];
const NEW_MACHINE: (&str, &str) = ("r4", "127.0.0.174");
const PROXY_IP: &str = "127.0.0.175";

/// Stores as (id → slots, master first) from `ctl store list`.
fn stores(cluster: &Path) -> BTreeMap<String, Vec<String>> {
    let doc = ctl_json(cluster, &["store", "list"], "", 0);
    doc["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut slots = vec![s["master"].as_str().unwrap().to_string()];
            slots.extend(
                s["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string()),
            );
            (s["id"].as_str().unwrap().to_string(), slots)
        })
        .collect()
}

/// Run the writers through the proxy (reports in `dir`) around `during`.
fn write_for(
    cluster: &Path,
    dir: &Path,
    proxy: &Proxy,
    during: impl FnOnce() -> Value,
) -> (Value, std::path::PathBuf, Value) {
    std::fs::create_dir_all(dir).unwrap();
    let writers = Writers::start(cluster, dir, proxy, &USERS);
    std::thread::sleep(Duration::from_millis(1500));
    let result = during();
    std::thread::sleep(Duration::from_millis(1000));
    let (report, acked) = writers.stop();
    for w in report["writers"].as_array().unwrap() {
        let n = w["acked"].as_array().unwrap().len();
        eprintln!(
            "writer {} {}: {n} acknowledged, {} refused, {} errors, longest refused window {} ms",
            w["kind"], w["user"], w["refused"], w["errors"], w["longest_outage_ms"]
        );
        assert!(n > 0, "a writer wrote nothing: {w}");
    }
    (report, acked, result)
}

/// Every user's mailboxes as a client of the proxy sees them.
fn dump_all(proxy: &Proxy) -> BTreeMap<String, Value> {
    let (h, p) = (proxy.imap.ip().to_string(), proxy.imap.port().to_string());
    USERS
        .iter()
        .map(|(u, pw)| (u.to_string(), mailcheck(&["dump", &h, &p, u, pw])))
        .collect()
}

#[test]
fn rebalance_onto_a_new_machine_under_write_load_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = TestCluster::start(dir, "rb", &MACHINES, 2, &USERS);
    let cluster = c.cluster.clone();
    let mut proxy = Proxy::start_on(dir, &cluster, PROXY_IP);

    // Mail before the new machine: every user, over IMAP and LMTP.
    let (_, acked_before, _) = write_for(&cluster, &dir.join("before"), &proxy, || Value::Null);
    let before_dumps = dump_all(&proxy);
    let before = stores(&cluster);
    assert_eq!(before.len(), 3, "{before:?}");

    // A machine that holds stores cannot be removed: the refusal names
    // the command that empties it.
    let (code, _, err) = ctl(&cluster, &["machine", "remove", "r1"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ctl rebalance --remove r1"), "{err}");

    // The new machine and its slots, run by its own supervisor.
    ctl_json(
        &cluster,
        &["machine", "add", NEW_MACHINE.0, "--address", NEW_MACHINE.1],
        "",
        0,
    );
    ctl_json(
        &cluster,
        &["slot", "add", NEW_MACHINE.0, "--count", "2"],
        "",
        0,
    );
    c.sups.push(Supervisor::start(&cluster, dir, NEW_MACHINE.0));
    let start = Instant::now();
    loop {
        let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
        let up = slots["slots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["machine"] == NEW_MACHINE.0 && s["admin"]["pid"].is_u64())
            .count();
        if up == 2 {
            break;
        }
        assert!(
            start.elapsed() < HEALTHY_TIMEOUT,
            "the new machine's slots do not answer: {slots}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Bad input: clear refusals, nothing changes.
    let (code, _, err) = ctl(&cluster, &["rebalance", "--remove", "nosuch"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    let (code, _, err) = ctl(&cluster, &["rebalance", "--remove", "r1,r2", "--apply"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&cluster, &["rebalance", "--abandon"], "");
    assert_eq!(code, 2, "{err}");
    assert_eq!(stores(&cluster), before);

    // The dry run: moves onto the new machine and the failure impact
    // before and after; nothing changes.
    let dry = ctl_json(&cluster, &["rebalance"], "", 0);
    assert_eq!(dry["applied"], false);
    let moves = dry["moves"].as_array().unwrap().clone();
    assert!(
        moves
            .iter()
            .any(|m| m["op"] == "add_replica" && m["slot"].as_str().unwrap().starts_with("r4")),
        "{dry}"
    );
    assert_eq!(
        dry["failure_impact"]["before"]["machines"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(dry["failure_impact"]["after"]["machines"].is_array());
    let (_, text, _) = ctl(&cluster, &["rebalance"], "");
    eprintln!("ctl rebalance (dry run):\n{text}");
    assert!(text.contains("failure impact after"), "{text}");
    assert_eq!(stores(&cluster), before);

    // Apply while the writers write.
    let (_, acked_during, applied) = write_for(&cluster, &dir.join("during"), &proxy, || {
        let started = Instant::now();
        let (code, out, err) = ctl(
            &cluster,
            &["rebalance", "--apply", "--timeout-secs", "120", "--json"],
            "",
        );
        eprintln!(
            "ctl rebalance --apply: exit {code} after {} ms\n{err}",
            started.elapsed().as_millis()
        );
        assert_eq!(code, 0, "{out}\n{err}\n{}", c.logs());
        serde_json::from_str(&out).unwrap()
    });
    assert_eq!(applied["applied"], true);
    assert_eq!(applied["moves"].as_array().unwrap(), &moves);
    let steps = applied["steps"].as_array().unwrap();
    assert_eq!(steps.len(), moves.len(), "{applied}");
    let kept = applied["kept"].as_array().unwrap();
    let drops = moves.iter().filter(|m| m["op"] == "drop_replica").count();
    assert_eq!(kept.len(), drops, "{applied}");
    for k in kept {
        let k = Path::new(k.as_str().unwrap());
        assert!(
            k.join("slot.db").exists() || k.is_dir(),
            "{} was not kept",
            k.display()
        );
    }

    // The stores use the new machine, each still with 2 slots on distinct
    // machines, and status shows it.
    let after = stores(&cluster);
    assert_eq!(after.len(), before.len());
    assert!(after.values().all(|s| s.len() == 2), "{after:?}");
    assert!(
        after.values().flatten().any(|s| s.starts_with("r4")),
        "{after:?}"
    );
    let status = c.wait_status("healthy after the rebalance", |code, _| code == 0);
    for (id, slots) in &after {
        let st = store_of(&status, id);
        assert_eq!(st["master"]["slot"], slots[0].as_str(), "{st}");
        let replicas: Vec<&str> = st["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["slot"].as_str().unwrap())
            .collect();
        assert_eq!(
            replicas,
            slots[1..].iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    // Nothing more to do.
    let again = ctl_json(&cluster, &["rebalance"], "", 0);
    assert_eq!(again["moves"], serde_json::json!([]), "{again}");

    // Every acknowledged message, before and during, through the proxy,
    // byte for byte (the two writer runs reuse Message-IDs, so copies are
    // not counted); what was there before keeps its UID, UIDVALIDITY and
    // bytes.
    let (h, p) = (proxy.imap.ip().to_string(), proxy.imap.port().to_string());
    for (u, pw) in USERS {
        for acked in [&acked_before, &acked_during] {
            let v = mailcheck(&["verify", &h, &p, u, pw, acked.to_str().unwrap()]);
            assert_eq!(v["missing"], serde_json::json!([]), "{u}: {v}");
            assert_eq!(v["mismatched"], serde_json::json!([]), "{u}: {v}");
        }
    }
    let after_dumps = dump_all(&proxy);
    for (u, b) in &before_dumps {
        for (name, mbox) in b["mailboxes"].as_object().unwrap() {
            let now = &after_dumps[u]["mailboxes"][name];
            assert_eq!(now["uidvalidity"], mbox["uidvalidity"], "{u} {name}");
            let have: Vec<(u64, String)> = now["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["uid"].as_u64().unwrap(),
                        m["sha256"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            for m in mbox["messages"].as_array().unwrap() {
                let key = (
                    m["uid"].as_u64().unwrap(),
                    m["sha256"].as_str().unwrap().to_string(),
                );
                assert!(have.contains(&key), "{u} {name}: lost {m}");
            }
        }
    }

    // Master and replica agree in full; the history names every step.
    let clean = assert_check_clean(&cluster, USERS.len());
    eprintln!(
        "check after the rebalance: {} users, {} messages, clean",
        clean["users"], clean["messages"]
    );
    let history = ctl_json(&cluster, &["history"], "", 0);
    let reasons: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("rebalance: add replica r4")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("in sync")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("rebalance: drop replica")),
        "{reasons:?}"
    );
    assert!(proxy.stop(), "the proxy did not stop cleanly");
}
