//! The replication check end to end: a cluster of one store (master on
//! 127.0.0.61, replica on 127.0.0.62) under two `slotmail machine run`
//! supervisors, users and mail made with Python's imaplib at the master,
//! and `slotmail check` against it:
//!
//! - the slots offer STARTTLS with the cluster's certificate, and the check
//!   uses it;
//! - a clean store: every level reports nothing, exit 0, `ctl status` shows
//!   the check;
//! - each class of divergence injected into the running replica's store
//!   behind replication's back (message files damaged on disk, records
//!   changed through the store's replica API, which no master round
//!   follows): `check --user` reports exactly that difference, "diverged",
//!   exit 1; `check --all` all of them, recorded for `ctl status`;
//! - appends and flag changes going on at the master while the check runs:
//!   no divergence.

mod common;

use common::cluster::*;
use common::*;
use serde_json::Value;
use slotmail_store::{Flags, MailboxApply, Options, Slot, Subscription};

use std::process::Stdio;
use std::time::{Duration, Instant};

/// The machines: name and loopback address (not used by other tests).
const MACHINES: [(&str, &str); 2] = [("c1", "127.0.0.61"), ("c2", "127.0.0.62")];

/// One user per class of divergence, and the users that stay clean.
const EMPTY: &str = "u-empty-body";
const TRUNCATED: &str = "u-truncated-body";
const BYTE: &str = "u-changed-byte";
const FLAG: &str = "u-flag";
const MISSING_MSG: &str = "u-missing-message";
const EXTRA_MSG: &str = "u-extra-message";
const MISSING_MBOX: &str = "u-missing-mailbox";
const RENAMED: &str = "u-renamed-mailbox";
const UIDVALIDITY: &str = "u-uidvalidity";
const UNSUBSCRIBED: &str = "u-subscription";
const CLEAN: &str = "u-clean";
const BUSY: &str = "u-busy";
const USERS: [&str; 12] = [
    EMPTY,
    TRUNCATED,
    BYTE,
    FLAG,
    MISSING_MSG,
    EXTRA_MSG,
    MISSING_MBOX,
    RENAMED,
    UIDVALIDITY,
    UNSUBSCRIBED,
    CLEAN,
    BUSY,
];

fn password(user: &str) -> String {
    format!("{user}-pw")
}

/// Three messages in INBOX (the first \Seen) and an empty, unsubscribed
/// mailbox "Projects", for every user.
const POPULATE: &str = r##"
import imaplib, json, sys
spec = json.loads(sys.argv[1])
for user, pw in spec["users"]:
    i = imaplib.IMAP4(spec["host"], spec["port"])
    i.login(user, pw)
    for n in range(1, 4):
        body = ("line %d of message %d for %s\r\n" % (0, n, user)) * 40
        msg = ("From: a@example.org\r\nTo: %s@example.org\r\nSubject: message %d\r\n"
               "Message-ID: <%d.%s@example.org>\r\n\r\n%s" % (user, n, n, user, body))
        flags = "(\\Seen)" if n == 1 else "()"
        typ, data = i.append("INBOX", flags, None, msg.encode())
        assert typ == "OK", data
    typ, data = i.create("Projects")
    assert typ == "OK", data
    i.logout()
"##;

/// Append and flag messages at the master for `seconds`; print the count.
const APPENDER: &str = r##"
import imaplib, json, sys, time
spec = json.loads(sys.argv[1])
i = imaplib.IMAP4(spec["host"], spec["port"])
i.login(spec["user"], spec["password"])
i.select("INBOX")
end = time.time() + spec["seconds"]
n = 0
while time.time() < end:
    n += 1
    msg = "Subject: busy %d\r\n\r\n%s\r\n" % (n, "x" * (100 + n))
    typ, data = i.append("INBOX", "()", None, msg.encode())
    assert typ == "OK", data
    if n % 3 == 0:
        typ, data = i.store("1:*", "+FLAGS", "(\\Flagged)" if n % 2 else "(\\Answered)")
        assert typ == "OK", data
    time.sleep(0.01)
i.logout()
print(n)
"##;

/// What identifies a difference: mailbox, UID, field.
type Key = (String, Option<u64>, String);
/// A difference as a test expects it.
type Expected<'a> = (&'a str, Option<u64>, &'a str);

/// The differences of a report as (mailbox, uid, field), sorted, quota
/// fields left out (a message more or less may or may not change the
/// rounded KiB of STORAGE), and every difference's class.
fn differences(doc: &Value) -> (Vec<Key>, Vec<String>) {
    let list = doc["differences"].as_array().unwrap();
    let mut found: Vec<Key> = list
        .iter()
        .filter(|d| !d["field"].as_str().unwrap().starts_with("quota "))
        .map(|d| {
            (
                d["mailbox"].as_str().unwrap_or("").to_string(),
                d["uid"].as_u64(),
                d["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    let classes = list
        .iter()
        .map(|d| d["class"].as_str().unwrap().to_string())
        .collect();
    (found, classes)
}

fn expect(items: &[Expected<'_>]) -> Vec<Key> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(m, u, f)| (m.to_string(), *u, f.to_string()))
        .collect();
    v.sort();
    v
}

/// The one difference of `doc` on `field`.
fn the<'a>(doc: &'a Value, field: &str) -> &'a Value {
    doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == field)
        .unwrap_or_else(|| panic!("no {field} difference in {doc}"))
}

/// Overwrite a message file of `user` on the replica (behind the store's
/// back, as a failing disk would).
fn damage_body(slot: &Slot, user: &str, uid: u32, damage: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let u = slot.user(user).unwrap();
    let inbox = u.mailbox("INBOX").unwrap();
    let (_, metas) = u.snapshot(inbox.id).unwrap();
    let meta = metas.iter().find(|m| m.uid == uid).unwrap();
    let (path, offset) = u
        .stored_at(&meta.guid)
        .unwrap()
        .expect("the body is stored");
    let mut file = std::fs::read(&path).unwrap();
    let at = offset as usize;
    let body = file[at..at + meta.size as usize].to_vec();
    let damaged = damage(body);
    if at == 0 && file.len() as u64 == meta.size {
        // A loose file: its length may change too.
        file = damaged;
    } else {
        // In a pack the body's place keeps its length: the damaged bytes,
        // then zeros where they are shorter (an emptied or truncated copy).
        let place = &mut file[at..at + meta.size as usize];
        place.fill(0);
        let n = damaged.len().min(place.len());
        place[..n].copy_from_slice(&damaged[..n]);
    }
    std::fs::write(&path, file).unwrap();
}

#[test]
fn the_check_finds_every_divergence_and_nothing_else() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cluster = dir.join("cluster.toml");
    ctl_json(
        &cluster,
        &[
            "init",
            "--name",
            "chk",
            "--allow-plaintext-auth",
            "--imap-port",
            "11143",
            "--lmtp-port",
            "12424",
            "--sync-port",
            "12500",
        ],
        "",
        0,
    );
    // STARTTLS on every slot: the check then speaks TLS (Python's imaplib
    // below still logs in without it, plaintext being allowed).
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let names: Vec<String> = MACHINES.iter().map(|(m, _)| format!("{m}-1.chk")).collect();
    slotmail_slot::tls::write_self_signed(&names, &tls.join("cert.pem"), &tls.join("key.pem"))
        .unwrap();
    let mut text = std::fs::read_to_string(&cluster).unwrap();
    assert!(
        text.trim_end().ends_with("allow_plaintext_auth = true"),
        "{text}"
    );
    text.push_str("tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n");
    std::fs::write(&cluster, text).unwrap();
    for (name, address) in MACHINES {
        ctl_json(
            &cluster,
            &["machine", "add", name, "--address", address],
            "",
            0,
        );
        ctl_json(&cluster, &["slot", "add", name], "", 0);
    }
    ctl_json(&cluster, &["plan", "--replicas", "1", "--apply"], "", 0);
    let sups: Vec<Supervisor> = MACHINES
        .iter()
        .map(|(name, _)| Supervisor::start(&cluster, dir, name))
        .collect();
    wait_status(&cluster, &sups, "a healthy cluster", |code, _| code == 0);
    for user in USERS {
        ctl_json(
            &cluster,
            &["user", "add", user, "--password-stdin"],
            &format!("{}\n", password(user)),
            0,
        );
    }
    let slots = ctl_json(&cluster, &["slot", "list"], "", 0);
    let slot_with = |role: &str| {
        slots["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {slots}"))
            .clone()
    };
    let (master, replica) = (slot_with("master"), slot_with("replica"));
    let store = master["store"].as_str().unwrap().to_string();
    let replica_id = replica["id"].as_str().unwrap().to_string();
    let spec = serde_json::json!({
        "host": master["address"],
        "port": master["imap_port"],
        "users": USERS.iter().map(|u| [u.to_string(), password(u)]).collect::<Vec<_>>(),
    });
    python(POPULATE, &[&spec.to_string()]);

    // A clean store, at every level; the first run also creates the
    // check's account (and its 0600 password file).
    let (code, full) = check_json(&cluster, &["--all", "--full"]);
    assert_eq!(code, 0, "{full}");
    assert_eq!(full["users"], USERS.len());
    assert_eq!(full["users_full"], USERS.len());
    assert_eq!(full["diverged"], 0, "{full}");
    assert_eq!(full["lagging"], 0, "{full}");
    assert_eq!(full["failures"], serde_json::json!([]));
    assert_eq!(full["messages"], 3 * USERS.len());
    // 3 messages of ~1.5 KB per user, read on both sides.
    assert!(
        full["bytes_read"].as_u64().unwrap() > 6 * 1400 * USERS.len() as u64,
        "{full}"
    );
    let password_file = dir.join("check.password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (code, quick) = check_json(&cluster, &["--store", &store, "--quick"]);
    assert_eq!((code, &quick["diverged"]), (0, &Value::from(0)), "{quick}");
    // Quick reads the bytes of the newest few messages per mailbox only.
    assert!(
        quick["bytes_read"].as_u64().unwrap() > 0
            && quick["bytes_read"].as_u64() <= full["bytes_read"].as_u64(),
        "{quick}"
    );
    let (code, rolling) = check_json(&cluster, &["--all", "--rolling", "1"]);
    assert_eq!(code, 0, "{rolling}");
    assert_eq!(
        rolling["users_full"],
        USERS.len(),
        "a 1-day cycle is all users"
    );
    let status = ctl_json(&cluster, &["status"], "", 0);
    let last = &store_of(&status, &store)["last_check"];
    assert_eq!(last["status"], "ok", "{status}");
    assert!(
        last["summary"].as_str().unwrap().contains("12 users"),
        "{last}"
    );

    // Inject one divergence per user into the running replica's store.
    let replica_data = replica["data_dir"].as_str().unwrap();
    let rs = Slot::open(
        replica_data,
        Options {
            create: false,
            lock: false,
            ..Options::default()
        },
    )
    .unwrap();
    damage_body(&rs, EMPTY, 2, |_| Vec::new());
    damage_body(&rs, TRUNCATED, 2, |b| b[..b.len() / 2].to_vec());
    damage_body(&rs, BYTE, 2, |mut b| {
        let i = b.len() / 2;
        b[i] ^= 0x20;
        b
    });
    {
        let u = rs.user(FLAG).unwrap();
        let (info, metas) = u.snapshot(u.mailbox("INBOX").unwrap().id).unwrap();
        let mut m = metas[0].clone();
        m.flags = Flags::from_names(["\\Seen", "\\Flagged"]).unwrap();
        u.apply_mailbox(&MailboxApply::from(&info), &[m], &[], false)
            .unwrap();
    }
    {
        let u = rs.user(MISSING_MSG).unwrap();
        let (info, _) = u.snapshot(u.mailbox("INBOX").unwrap().id).unwrap();
        u.apply_mailbox(
            &MailboxApply::from(&info),
            &[],
            &[(2, info.highestmodseq)],
            false,
        )
        .unwrap();
    }
    {
        let u = rs.user(EXTRA_MSG).unwrap();
        let (info, metas) = u.snapshot(u.mailbox("INBOX").unwrap().id).unwrap();
        let mut m = metas[2].clone();
        m.uid = info.uidnext;
        let mut record = MailboxApply::from(&info);
        record.uidnext += 1;
        u.apply_mailbox(&record, &[m], &[], false).unwrap();
    }
    {
        let u = rs.user(MISSING_MBOX).unwrap();
        let p = u.mailbox("Projects").unwrap();
        assert!(
            u.apply_delete_mailbox(&p.mailbox_id, p.highestmodseq)
                .unwrap()
        );
    }
    {
        let u = rs.user(RENAMED).unwrap();
        let p = u.mailbox("Projects").unwrap();
        let mut record = MailboxApply::from(&p);
        record.name = "Renamed".into();
        u.apply_mailbox(&record, &[], &[], false).unwrap();
    }
    {
        let u = rs.user(UIDVALIDITY).unwrap();
        let inbox = u.mailbox("INBOX").unwrap();
        let mut record = MailboxApply::from(&inbox);
        record.uidvalidity += 1000;
        u.apply_mailbox(&record, &[], &[], false).unwrap();
    }
    {
        let u = rs.user(UNSUBSCRIBED).unwrap();
        let records: Vec<Subscription> = u
            .subscription_records()
            .unwrap()
            .into_iter()
            .map(|mut s| {
                if s.name == "Sent" {
                    s.subscribed = false;
                }
                s
            })
            .collect();
        u.replace_subscriptions(&records).unwrap();
    }
    drop(rs);

    // Each user: exactly its difference, diverged, exit 1.
    let body = [("INBOX", Some(2), "body")];
    let cases: [(&str, &[Expected<'_>]); 10] = [
        (EMPTY, &body),
        (TRUNCATED, &body),
        (BYTE, &body),
        (FLAG, &[("INBOX", Some(1), "flags")]),
        (
            MISSING_MSG,
            &[("INBOX", None, "messages"), ("INBOX", Some(2), "message")],
        ),
        (
            EXTRA_MSG,
            &[
                ("INBOX", None, "messages"),
                ("INBOX", None, "uidnext"),
                ("INBOX", Some(4), "message"),
            ],
        ),
        (MISSING_MBOX, &[("Projects", None, "mailbox")]),
        (RENAMED, &[("Projects", None, "name")]),
        (UIDVALIDITY, &[("INBOX", None, "uidvalidity")]),
        (UNSUBSCRIBED, &[("Sent", None, "subscription")]),
    ];
    let mut total = 0;
    for (user, expected) in cases {
        let (code, doc) = check_json(&cluster, &["--user", user, "--full"]);
        let (found, classes) = differences(&doc);
        assert_eq!(found, expect(expected), "{user}: {doc}");
        assert!(classes.iter().all(|c| c == "diverged"), "{user}: {doc}");
        assert_eq!(code, 1, "{user}: {doc}");
        assert!(
            doc["differences"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["user"] == user && d["slot"] == replica_id.as_str())
        );
        total += doc["diverged"].as_u64().unwrap();
    }
    for user in [EMPTY, TRUNCATED, BYTE] {
        let (_, doc) = check_json(&cluster, &["--user", user, "--full"]);
        let d = the(&doc, "body");
        assert!(
            d["master"].as_str().unwrap().contains("bytes, blake3"),
            "{d}"
        );
        assert!(
            d["replica"]
                .as_str()
                .unwrap()
                .starts_with("unreadable (NO [CORRUPTION]"),
            "{d}"
        );
    }
    let (_, doc) = check_json(&cluster, &["--user", FLAG, "--full"]);
    let d = the(&doc, "flags");
    assert_eq!(
        (d["master"].as_str(), d["replica"].as_str()),
        (Some("(\\Seen)"), Some("(\\Flagged \\Seen)"))
    );
    let (_, doc) = check_json(&cluster, &["--user", RENAMED, "--full"]);
    assert_eq!(the(&doc, "name")["replica"], "Renamed");
    let (_, doc) = check_json(&cluster, &["--user", UNSUBSCRIBED]);
    let d = the(&doc, "subscription");
    assert_eq!(
        (d["master"].as_str(), d["replica"].as_str()),
        (Some("subscribed"), Some("not subscribed"))
    );
    // The damaged bodies are found by the quick level too (newest messages).
    let (code, doc) = check_json(&cluster, &["--user", EMPTY, "--quick"]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(differences(&doc).0, expect(&body));
    // A clean user of the same store: nothing.
    let (code, doc) = check_json(&cluster, &["--user", CLEAN, "--full"]);
    assert_eq!((code, &doc["differences"]), (0, &serde_json::json!([])));

    // The whole store: every difference, recorded for `ctl status`.
    let (code, all) = check_json(&cluster, &["--all", "--full"]);
    assert_eq!(code, 1, "{all}");
    assert_eq!(all["diverged"].as_u64().unwrap(), total, "{all}");
    let status = ctl_json(&cluster, &["status"], "", 1);
    let last = &store_of(&status, &store)["last_check"];
    assert_eq!(last["status"], "differences", "{status}");
    assert!(
        last["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("{total} diverged")),
        "{last}"
    );
    // The human report names user, mailbox, UID, field and both values.
    let mut cmd = slotmail();
    cmd.arg("check")
        .arg("--cluster")
        .arg(&cluster)
        .args(["--user", FLAG]);
    let out = run(&mut cmd, "", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "diverged {FLAG} {replica_id} mailbox \"INBOX\" uid 1 flags: master (\\Seen) | replica (\\Flagged \\Seen)"
        )),
        "{text}"
    );
    assert!(text.contains("DIVERGED: 1 diverged"), "{text}");

    // Changes in flight are not differences: appends and flag changes go
    // on at the master while the check runs, again and again.
    let appender = serde_json::json!({
        "host": master["address"],
        "port": master["imap_port"],
        "user": BUSY,
        "password": password(BUSY),
        "seconds": 6,
    });
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(APPENDER)
        .arg(appender.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let busy_start = Instant::now();
    let mut runs = 0;
    let mut seen = Vec::new();
    while busy_start.elapsed() < Duration::from_secs(5) {
        let (code, doc) = check_json(&cluster, &["--user", BUSY, "--full"]);
        assert_eq!(code, 0, "false divergence under appends: {doc}");
        assert_eq!(doc["diverged"], 0, "{doc}");
        seen.push(doc["messages"].as_u64().unwrap());
        runs += 1;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let appended: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        runs >= 2 && appended >= 10,
        "{runs} runs, {appended} appended"
    );
    assert!(
        seen.windows(2).any(|w| w[1] > w[0]),
        "the mailbox grew between runs: {seen:?}"
    );
    // Once the master is quiet, the replica matches it exactly.
    let (code, doc) = check_json(&cluster, &["--user", BUSY, "--full"]);
    assert_eq!((code, &doc["lagging"]), (0, &Value::from(0)), "{doc}");
    assert_eq!(doc["messages"].as_u64().unwrap(), 3 + appended);

    // The rate limit: 3 messages of ~1.5 KB on each side at 5 KB/s.
    let (code, doc) = check_json(
        &cluster,
        &["--user", CLEAN, "--full", "--rate-limit", "0.005"],
    );
    assert_eq!(code, 0, "{doc}");
    assert!(doc["elapsed_ms"].as_u64().unwrap() >= 1000, "{doc}");

    // --every: runs until SIGTERM, each run printed.
    let mut child = slotmail()
        .arg("check")
        .arg("--cluster")
        .arg(&cluster)
        .args(["--user", CLEAN, "--every", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let waited = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "--every ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("OK: 0 diverged").count() >= 2, "{text}");

    // The check speaks TLS: trusting another certificate, it cannot log in.
    slotmail_slot::tls::write_self_signed(&names, &tls.join("other.pem"), &tls.join("other.key"))
        .unwrap();
    let other = dir.join("other-cert.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cluster)
            .unwrap()
            .replace("tls/cert.pem", "tls/other.pem"),
    )
    .unwrap();
    let (code, doc) = check_json(&other, &["--user", CLEAN]);
    assert_eq!(code, 3, "{doc}");
    let error = doc["failures"][0]["error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{doc}");

    for mut s in sups {
        assert!(s.stop(), "supervisor {} did not stop cleanly", s.name);
    }
    eprintln!("check e2e: {:.1} s", started.elapsed().as_secs_f64());
}
