//! `slotmail ctl user move` end to end (docs/operations.md, "Moving a
//! user"): a cluster of 3 machines (loopback addresses) × 2 slots run by
//! `slotmail machine run`, `slotmail proxy run` in front, a user with mail
//! in several mailboxes (flags, internal dates, an expunged UID, a
//! subscription) who keeps writing through the proxy (Python's imaplib
//! APPEND and smtplib LMTP, tests/python/writers.py) while being moved.
//!
//! - bad input is refused (exit 2) and changes nothing; a move that only
//!   copied is undone by `--abort` (the partial copy removed);
//! - `--copy-only`, then the move finished by running it again: every step
//!   shows in `ctl user show --json` and `ctl status --json`;
//! - afterwards, over IMAP through the proxy (imaplib), every message that
//!   was there keeps its UID, UIDVALIDITY, flags and bytes, every message a
//!   writer saw acknowledged is there byte for byte, subscriptions and
//!   HIGHESTMODSEQ are the same; a session open on the old master got
//!   `BYE [UNAVAILABLE]`; new mail goes to the new store; neither the old
//!   master nor the old replica knows the user; the new store's replica
//!   holds the same as its master, and `slotmail check --all --full` is
//!   clean.

mod common;

use common::cluster::*;
use common::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ANN: (&str, &str) = ("ann", "ann-pw-1");
const BOB: (&str, &str) = ("bob", "bob-pw-1");

/// Give ann mail through the proxy: two folders besides INBOX, flags,
/// internal dates, an expunged message, a subscription. Prints her
/// subscriptions and each mailbox's HIGHESTMODSEQ.
const SEED: &str = r##"
import imaplib, json, smtplib, sys
host, port, lhost, lport, user, pw = sys.argv[1:7]
l = smtplib.LMTP(lhost, int(lport))
for n in range(3):
    msg = "From: a@example.org\r\nTo: %s@e2e.test\r\nSubject: delivered %d\r\n\r\nbody %d\r\n" % (user, n, n)
    assert not l.sendmail("a@example.org", [user + "@e2e.test"], msg.encode())
l.quit()
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
for box in ("Work", "Archive/2025"):
    typ, d = i.create(box)
    assert typ == "OK", d
assert i.subscribe("Work")[0] == "OK"
assert i.unsubscribe("Junk")[0] == "OK"
for n in range(6):
    box = "Work" if n % 2 == 0 else "Archive/2025"
    flags = ["(\\Seen)", "(\\Flagged $Important)", "()"][n % 3]
    msg = ("From: b@example.org\r\nSubject: kept %d\r\nMessage-ID: <kept-%d@e2e.test>\r\n\r\n" % (n, n)).encode() + b"line\r\n" * (n * 50 + 1)
    date = imaplib.Time2Internaldate(1700000000 + n * 86400)
    typ, d = i.append(box, flags, date, msg)
    assert typ == "OK", d
i.select("Work")
assert i.uid("STORE", "1", "+FLAGS", "(\\Deleted)")[0] == "OK"
assert i.expunge()[0] == "OK"
i.select("INBOX")
assert i.store("2", "+FLAGS", "(\\Flagged \\Answered)")[0] == "OK"
i.close()
i.logout()
print("{}")
"##;

/// ann's subscriptions and every mailbox's HIGHESTMODSEQ (CONDSTORE).
const STATE: &str = r##"
import imaplib, json, re, sys
host, port, user, pw = sys.argv[1:5]
i = imaplib.IMAP4(host, int(port))
i.login(user, pw)
typ, subs = i.lsub()
assert typ == "OK", subs
out = {"subscribed": sorted(s.decode().rsplit(' "/" ', 1)[1].strip('"') for s in subs if s)}
modseq = {}
for box in ("Work", "Archive/2025"):
    typ, d = i.status(box, "(HIGHESTMODSEQ UIDNEXT UIDVALIDITY MESSAGES)")
    assert typ == "OK", d
    modseq[box] = d[0].decode()
out["status"] = modseq
i.logout()
print(json.dumps(out))
"##;

/// Log in as ann at each HOST:PORT; what happened at each.
const LOGINS: &str = r##"
import imaplib, json, sys
user, pw = sys.argv[1:3]
out = {}
for hp in sys.argv[3:]:
    h, p = hp.rsplit(":", 1)
    try:
        i = imaplib.IMAP4(h, int(p), timeout=10)
        i.login(user, pw)
        out[hp] = "ok"
        i.logout()
    except Exception as e:
        out[hp] = "refused: %s" % e
print(json.dumps(out))
"##;

/// A session through the proxy that stays open (NOOP every 50 ms) until the
/// server ends it; prints how it ended and the text of the BYE it got
/// (imaplib keeps untagged responses; `null` when the stream just ended).
const HOLD: &str = r##"
import imaplib, json, sys, time
host, port, user, pw, ready = sys.argv[1:6]
i = imaplib.IMAP4(host, int(port), timeout=30)
i.login(user, pw)
i.select("INBOX")
open(ready, "w").write("ready")
start = time.time()
ended = None
while time.time() - start < 200:
    try:
        i.noop()
    except Exception as e:
        ended = "%s: %s" % (type(e).__name__, e)
        break
    time.sleep(0.05)
bye = i.untagged_responses.get("BYE")
bye = bye[-1].decode("utf-8", "replace") if bye else None
print(json.dumps({"ended": ended, "bye": bye}))
"##;

fn split(addr: &str) -> (String, String) {
    let (h, p) = addr.rsplit_once(':').unwrap();
    (h.to_string(), p.to_string())
}

fn logins(addrs: &[String]) -> Value {
    let mut args = vec![ANN.0, ANN.1];
    args.extend(addrs.iter().map(String::as_str));
    serde_json::from_slice(&python(LOGINS, &args).stdout).unwrap()
}

/// `ctl ARGS` in text mode, printed as a console transcript (for
/// docs/operations.md).
fn shown(cluster: &std::path::Path, args: &[&str]) -> (i32, String) {
    let (code, out, err) = ctl(cluster, args, "");
    eprintln!(
        "$ slotmail ctl {}\n{out}{err}[exit {code}]\n",
        args.join(" ")
    );
    (code, out)
}

fn imap_of(cluster: &std::path::Path, slot: &str) -> String {
    let (h, p, _) = slot_imap(cluster, slot);
    format!("{h}:{p}")
}

#[test]
fn a_user_moves_between_stores_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(
        dir.path(),
        "move",
        &[
            ("a", "127.0.0.71"),
            ("b", "127.0.0.72"),
            ("c", "127.0.0.73"),
        ],
        2,
        &[ANN, BOB],
    );
    let cluster = c.cluster.clone();
    let proxy = Proxy::start_on(dir.path(), &cluster, "127.0.0.74");
    let (ph, pp) = (proxy.imap.ip().to_string(), proxy.imap.port().to_string());
    let (lh, lp) = (proxy.lmtp.ip().to_string(), proxy.lmtp.port().to_string());

    python(SEED, &[&ph, &pp, &lh, &lp, ANN.0, ANN.1]);
    let before = mailcheck(&["dump", &ph, &pp, ANN.0, ANN.1]);
    let state_before: Value =
        serde_json::from_slice(&python(STATE, &[&ph, &pp, ANN.0, ANN.1]).stdout).unwrap();
    let subscribed = state_before["subscribed"].as_array().unwrap();
    assert!(
        subscribed.contains(&json!("Work")) && !subscribed.contains(&json!("Junk")),
        "{state_before}"
    );

    let from = c.store_of_user(ANN.0);
    let stores = c.ctl_json(&["store", "list"], 0);
    let store_ids: Vec<String> = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(store_ids.len(), 3, "{stores}");
    let others: Vec<&String> = store_ids.iter().filter(|s| **s != from).collect();
    let (to, elsewhere) = (others[0].clone(), others[1].clone());
    let store = |id: &str| {
        stores["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    let old_master = store(&from)["master"].as_str().unwrap().to_string();
    let old_replica = store(&from)["replicas"][0].as_str().unwrap().to_string();
    let new_master = store(&to)["master"].as_str().unwrap().to_string();
    let elsewhere_master = store(&elsewhere)["master"].as_str().unwrap().to_string();

    let users_in = |store: &str| {
        c.ctl_json(&["user", "list", "--store", store], 0)["users"]
            .as_array()
            .unwrap()
            .len()
    };
    let (users_in_from, users_in_to) = (users_in(&from), users_in(&to));

    // Bad input: exit 2, nothing changed.
    let dir_before = c.ctl_json(&["user", "list"], 0);
    for (args, needle) in [
        (
            vec!["user", "move", "nobody", "--to", to.as_str()],
            "unknown user",
        ),
        (vec!["user", "move", ANN.0, "--to", "s999"], "unknown store"),
        (
            vec!["user", "move", ANN.0, "--to", from.as_str()],
            "already",
        ),
        (vec!["user", "move", ANN.0, "--abort"], "not being moved"),
    ] {
        let (code, _, err) = ctl(&cluster, &args, "");
        eprintln!("$ slotmail ctl {}\n{err}[exit {code}]\n", args.join(" "));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(c.ctl_json(&["user", "list"], 0), dir_before);

    // Writers through the proxy, and a session that stays open.
    let writers = Writers::start(&cluster, dir.path(), &proxy, &[ANN]);
    let ready = dir.path().join("hold.ready");
    let hold_out = dir.path().join("hold.json");
    let mut hold = Command::new("python3")
        .arg("-c")
        .arg(HOLD)
        .args([&ph, &pp, ANN.0, ANN.1, ready.to_str().unwrap()])
        .stdout(std::fs::File::create(&hold_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "hold session");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    // A copy elsewhere, undone: the partial copy goes, ann stays.
    let copied = c.ctl_json(
        &["user", "move", ANN.0, "--to", &elsewhere, "--copy-only"],
        0,
    );
    assert_eq!(copied["phase"], "copying", "{copied}");
    let show = c.ctl_json(&["user", "show", ANN.0], 0);
    assert_eq!(show["move"]["to"], elsewhere.as_str(), "{show}");
    assert_eq!(show["move"]["phase"], "copying", "{show}");
    assert_eq!(show["store"], from.as_str());
    let elsewhere_imap = imap_of(&cluster, &elsewhere_master);
    let (code, _, err) = ctl(&cluster, &["user", "move", ANN.0, "--to", &to], "");
    assert_eq!(code, 2, "a second move: {err}");
    assert!(err.contains("being moved"), "{err}");
    let (code, _, err) = ctl(&cluster, &["user", "delete", ANN.0], "");
    assert_eq!(code, 2, "a delete while moving: {err}");
    assert!(err.contains("being moved"), "{err}");
    shown(&cluster, &["user", "move", ANN.0, "--to", &to]);
    let aborted = c.ctl_json(&["user", "move", ANN.0, "--abort"], 0);
    eprintln!("$ slotmail ctl user move ann --abort --json\n{aborted:#}\n");
    assert_eq!(aborted["phase"], "aborted", "{aborted}");
    assert_eq!(aborted["partial_copy_removed"], true, "{aborted}");
    assert!(c.ctl_json(&["user", "show", ANN.0], 0)["move"].is_null());
    let l = logins(std::slice::from_ref(&elsewhere_imap));
    assert!(
        l[&elsewhere_imap].as_str().unwrap().starts_with("refused"),
        "the aborted copy is gone: {l}"
    );

    // Copy while ann writes; every step shows in user show and status.
    let (code, out) = shown(
        &cluster,
        &["user", "move", ANN.0, "--to", &to, "--copy-only"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("copying ann"), "{out}");
    shown(&cluster, &["user", "show", ANN.0]);
    shown(&cluster, &["status"]);
    let show = c.ctl_json(&["user", "show", ANN.0], 0);
    assert_eq!(
        show["store"],
        from.as_str(),
        "still routed to the old store"
    );
    assert_eq!(show["move"]["phase"], "copying", "{show}");
    let status = c.wait_status("the move listed", |_, s| {
        s["moves"].as_array().is_some_and(|m| m.len() == 1)
    });
    assert_eq!(status["moves"][0]["user"], ANN.0, "{status}");
    assert_eq!(status["moves"][0]["from"], from.as_str(), "{status}");
    assert_eq!(status["moves"][0]["to"], to.as_str(), "{status}");
    assert_eq!(status["moves"][0]["phase"], "copying", "{status}");
    std::thread::sleep(Duration::from_secs(1));

    // Finish it.
    let (code, out, err) = ctl(
        &cluster,
        &[
            "user",
            "move",
            ANN.0,
            "--to",
            &to,
            "--freeze-timeout-ms",
            "30000",
            "--json",
        ],
        "",
    );
    eprintln!("$ slotmail ctl user move ann --to {to} --json\n{out}{err}[exit {code}]");
    assert_eq!(code, 0, "{out}{err}\n{}", c.logs());
    let moved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(moved["phase"], "done", "{moved}");
    assert_eq!(moved["resumed_from"], "copying", "{moved}");
    assert_eq!(moved["master"], new_master.as_str(), "{moved}");
    assert!(
        moved["write_refusal_ms"].as_u64().unwrap() < 33_000,
        "{moved}"
    );
    assert_eq!(
        moved["old_replicas"][0]["slot"],
        old_replica.as_str(),
        "{moved}"
    );
    // The new replica is waited for at most 2 s before the switch; it is
    // proven equal over IMAP below.
    assert!(moved["new_replicas"][0]["slot"].is_string(), "{moved}");
    shown(&cluster, &["user", "show", ANN.0]);
    let show = c.ctl_json(&["user", "show", ANN.0], 0);
    assert_eq!(show["store"], to.as_str(), "{show}");
    assert_eq!(show["master"]["slot"], new_master.as_str(), "{show}");
    assert!(show["move"].is_null(), "{show}");
    let status = c.ctl_json(&["status"], 0);
    assert_eq!(status["moves"], json!([]), "{status}");
    let per_store = |st: &Value, id: &str| {
        st["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["users"]
            .clone()
    };
    assert_eq!(per_store(&status, &to), json!(users_in_to + 1), "{status}");
    assert_eq!(
        per_store(&status, &from),
        json!(users_in_from - 1),
        "{status}"
    );

    // The writers go on on the new store; the open session was told.
    std::thread::sleep(Duration::from_secs(1));
    let (report, acked) = writers.stop();
    let imap_writer = report["writers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "imap")
        .unwrap()
        .clone();
    assert_eq!(
        imap_writer["masters"].as_array().unwrap().last().unwrap(),
        new_master.as_str(),
        "{imap_writer}"
    );
    let start = Instant::now();
    while hold.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the open session was not ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended: Value = serde_json::from_str(&std::fs::read_to_string(&hold_out).unwrap()).unwrap();
    // Ended by a BYE [UNAVAILABLE] (the proxy's, or the old master's for
    // the user it deleted), never by the stream just ending.
    eprintln!("the session open on the old master: {ended}");
    let bye = ended["bye"].as_str().unwrap_or("");
    assert!(bye.starts_with("[UNAVAILABLE] "), "{ended}");
    assert!(
        ended["ended"]
            .as_str()
            .is_some_and(|why| why.starts_with("abort: ") && why.contains(bye)),
        "{ended}"
    );

    // New mail goes to the new store.
    let new_mail = mail(&[mail_spec(&cluster, ANN.0, ANN.1, Some("after the move"))]);
    assert!(
        new_mail[ANN.0]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("after the move")),
        "{new_mail}"
    );

    // Byte for byte through the proxy: what was there keeps its UIDs,
    // UIDVALIDITY, flags and bytes; every acknowledged write is there.
    let after = mailcheck(&["dump", &ph, &pp, ANN.0, ANN.1]);
    for (name, b) in before["mailboxes"].as_object().unwrap() {
        let a = &after["mailboxes"][name];
        assert_eq!(a["uidvalidity"], b["uidvalidity"], "{name}");
        if name == "INBOX" {
            let now = a["messages"].as_array().unwrap();
            for m in b["messages"].as_array().unwrap() {
                assert!(now.contains(m), "INBOX lost or changed {m}");
            }
            assert!(now.len() > b["messages"].as_array().unwrap().len());
        } else {
            assert_eq!(a, b, "{name} changed in the move");
        }
    }
    assert_all_acked_present(&cluster, ANN.0, ANN.1, &acked);
    let state_after: Value =
        serde_json::from_slice(&python(STATE, &[&ph, &pp, ANN.0, ANN.1]).stdout).unwrap();
    assert_eq!(state_after, state_before, "subscriptions and HIGHESTMODSEQ");

    // The old store forgot ann, on its master and its replica.
    let old = [
        imap_of(&cluster, &old_master),
        imap_of(&cluster, &old_replica),
    ];
    let l = logins(&old);
    for a in &old {
        assert!(l[a].as_str().unwrap().starts_with("refused"), "{a}: {l}");
    }
    // The new store's replica holds what its master holds.
    wait_imap_equal(&cluster, ANN.0, ANN.1);
    assert_check_clean(&cluster, 2);
    let _ = hold.wait();
    let (bh, bp) = split(&proxy.imap.to_string());
    let l = {
        let out = python(LOGINS, &[BOB.0, BOB.1, &format!("{bh}:{bp}")]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(l[format!("{bh}:{bp}")], "ok", "bob untouched: {l}");
}
