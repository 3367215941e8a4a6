//! The proxy end to end: a cluster of 3 machines (loopback addresses) × 2
//! slots with replicated stores, and `slotmail proxy run` in front of it.
//! Independent clients go through the proxy only:
//!
//! - Python's imaplib and raw sockets: the pre-login conversation, LOGIN,
//!   AUTHENTICATE PLAIN (SASL-IR and continuation), pipelining after LOGIN,
//!   STARTTLS and implicit TLS, COMPRESS and IDLE relayed;
//! - isync's mbsync: the two-way round trip of `tests/mbsync.rs`;
//! - Python's smtplib (LMTP): one transaction to users on different stores
//!   and an unknown user, per-recipient replies in order, and the mail read
//!   directly at each user's master;
//! - a master change while clients are connected: they get
//!   `* BYE [UNAVAILABLE]`, reconnect through the proxy and land on the new
//!   master;
//! - a stopped master: logins get `NO [UNAVAILABLE]` at once, deliveries
//!   `451`.
//!
//! Needs `mbsync` (scripts/test.sh installs isync).

mod common;

use common::cluster::*;
use common::*;
use serde_json::Value;
use slotmail_directory::{Directory, SqliteDirectory};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The machines: name and loopback address (an address range no other test
/// uses: the slots listen on fixed ports).
const MACHINES: [(&str, &str); 3] = [
    ("p1", "127.80.0.1"),
    ("p2", "127.80.0.2"),
    ("p3", "127.80.0.3"),
];
/// Users and passwords; alice is mbsync's (tests/python/mbsync_steps.py).
const USERS: [(&str, &str); 5] = [
    ("alice", "pw-alice"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("dave", "dave-pw"),
    ("erin", "erin-pw"),
];
/// Most time one Python client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Run `proxy_clients.py ARGS` and parse the JSON it prints last.
fn client_json(proxy: &Proxy, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(python_dir().join("proxy_clients.py"))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let (out, in_time) = run_bounded(&mut cmd, CLIENT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = || {
        format!(
            "--- stdout\n{stdout}\n--- stderr\n{}\n--- proxy log\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&proxy.log(), 6000)
        )
    };
    assert!(
        in_time && out.status.success(),
        "proxy_clients.py {args:?} failed\n{}",
        context()
    );
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(last.unwrap_or(""))
        .unwrap_or_else(|e| panic!("proxy_clients.py {args:?}: no JSON ({e})\n{}", context()))
}

/// Subjects of `user`'s INBOX read directly at the user's current master.
fn subjects_at_master(cluster: &Path, user: &str, password: &str) -> Vec<String> {
    let read = mail(&[mail_spec(cluster, user, password, None)]);
    read[user]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn proxy_routes_imap_and_lmtp_and_follows_master_changes() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = TestCluster::start(dir, "proxytest", &MACHINES, 2, &USERS);
    let mut proxy = Proxy::start(dir, &c.cluster);
    let port = |a: SocketAddr| a.port().to_string();
    let proxy_log = || proxy.log();
    eprintln!(
        "cluster and proxy up: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Stores of the users: at least three distinct ones for five users.
    let store: std::collections::BTreeMap<&str, String> = USERS
        .iter()
        .map(|(u, _)| (*u, c.store_of_user(u)))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = store.values().collect();
    assert_eq!(distinct.len(), 3, "users spread over the stores: {store:?}");

    // 1. IMAP through the proxy.
    let report = python_report_with(
        &proxy_log,
        "proxy",
        "proxy_clients.py",
        &[
            "imap",
            &port(proxy.imap),
            &port(proxy.imaps),
            "bob",
            "bob-pw",
        ],
        CLIENT_TIMEOUT,
    );
    assert!(report["checks"].as_u64().unwrap() >= 30, "{report}");
    let bob = subjects_at_master(&c.cluster, "bob", "bob-pw");
    assert!(
        bob.contains(&"Subject: through the proxy".to_string()),
        "bob's APPEND through the proxy is at his master: {bob:?}"
    );

    // 2. mbsync round trip through the proxy (IMAP and LMTP).
    let mb = dir.join("mbsync");
    std::fs::create_dir_all(&mb).unwrap();
    common::mbsync::round_trip(&mb, proxy.imap.port(), proxy.lmtp.port(), &proxy_log);

    // 3. One LMTP transaction to users on different stores, and a stranger.
    // Pick one user per store plus a second user of a shared store.
    let mut rcpt_users: Vec<&str> = Vec::new();
    for (u, _) in USERS.iter().skip(1) {
        if !rcpt_users.iter().any(|r| store[r] == store[u]) {
            rcpt_users.push(u);
        }
    }
    let shared = USERS
        .iter()
        .skip(1)
        .map(|(u, _)| *u)
        .find(|u| !rcpt_users.contains(u) && rcpt_users.iter().any(|r| store[r] == store[u]));
    let stores_hit: std::collections::BTreeSet<&String> =
        rcpt_users.iter().map(|u| &store[u]).collect();
    assert!(stores_hit.len() >= 2, "{rcpt_users:?} {store:?}");
    let mut rcpts: Vec<String> = rcpt_users.iter().map(|u| format!("{u}@e2e.test")).collect();
    rcpts.insert(1, "nosuch@e2e.test".into());
    if let Some(u) = shared {
        rcpts.push(format!("{u}+Archive@e2e.test"));
    }
    let mut args = vec!["lmtp", &port(proxy.lmtp), "one transaction"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.extend(rcpts.iter().cloned());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let lmtp = client_json(&proxy, &args_ref);
    assert_eq!(lmtp["rcpt"]["nosuch@e2e.test"][0], 550, "{lmtp}");
    for r in rcpts.iter().filter(|r| !r.starts_with("nosuch")) {
        assert_eq!(lmtp["rcpt"][r][0], 250, "{r}: {lmtp}");
    }
    assert_eq!(
        lmtp["order"].as_array().unwrap().len(),
        rcpts.len() - 1,
        "{lmtp}"
    );
    for u in &rcpt_users {
        let (_, pw) = USERS.iter().find(|(n, _)| n == u).unwrap();
        let subjects = subjects_at_master(&c.cluster, u, pw);
        assert!(
            subjects.contains(&"Subject: one transaction".to_string()),
            "{u} at their master: {subjects:?}"
        );
    }
    eprintln!(
        "LMTP: {} recipients on {} stores in one transaction",
        rcpts.len(),
        stores_hit.len()
    );

    // 4. Switch carol's store's master while two sessions are connected.
    let carol_store = store["carol"].clone();
    let directory = SqliteDirectory::open(dir.join("directory.db")).unwrap();
    let before = directory.snapshot().unwrap().stores[&carol_store].clone();
    let new_master = before.replicas()[0].clone();
    let ready = dir.join("hold-ready");
    let hold = {
        let ready = ready.clone();
        let port = port(proxy.imap);
        std::thread::spawn(move || {
            let mut cmd = Command::new("python3");
            cmd.arg(python_dir().join("proxy_clients.py"))
                .args(["hold", &port, "carol", "carol-pw", "2"])
                .arg(&ready)
                .arg("after the switch")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            run_bounded(&mut cmd, CLIENT_TIMEOUT)
        })
    };
    let wait_ready = Instant::now();
    while !ready.exists() {
        assert!(
            wait_ready.elapsed() < Duration::from_secs(30),
            "hold clients not logged in\n{}",
            tail(&proxy.log(), 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let switched_at = Instant::now();
    let epoch = directory
        .set_master(&carol_store, &new_master, before.epoch, "proxy test")
        .unwrap();
    assert_eq!(epoch, before.epoch + 1);
    let (out, in_time) = hold.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        in_time && out.status.success(),
        "hold clients failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&proxy.log(), 6000)
    );
    let held: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    eprintln!(
        "switchover: {:.2} s until the reconnected client's APPEND succeeded: {held}",
        switched_at.elapsed().as_secs_f64()
    );
    for bye in held["byes"].as_array().unwrap() {
        assert!(
            bye.as_str().unwrap().starts_with("* BYE [UNAVAILABLE]"),
            "{held}"
        );
    }
    for w in held["waited_s"].as_array().unwrap() {
        assert!(w.as_f64().unwrap() < 30.0, "{held}");
    }
    assert_eq!(held["appended"], true, "{held}");
    // The new master holds the message, written there through the proxy.
    let status = c.wait_status("the new master serving", |code, s| {
        code == 0
            && s["stores"].as_array().unwrap().iter().any(|st| {
                st["id"] == carol_store.as_str() && st["master"]["slot"] == new_master.as_str()
            })
    });
    assert_eq!(store_of(&status, &carol_store)["epoch"], epoch);
    let show = c.ctl_json(&["user", "show", "carol"], 0);
    assert_eq!(show["master"]["slot"], new_master.as_str());
    let carol = subjects_at_master(&c.cluster, "carol", "carol-pw");
    assert!(
        carol.contains(&"Subject: after the switch".to_string()),
        "carol at the new master {new_master}: {carol:?}"
    );
    assert!(
        tail(&proxy.log(), usize::MAX).contains(&format!("slot={new_master}")),
        "the proxy logged a session on the new master {new_master}\n{}",
        tail(&proxy.log(), 3000)
    );

    // 5. A stopped master: NO [UNAVAILABLE] at once, LMTP 451.
    let dave_master = c.ctl_json(&["user", "show", "dave"], 0)["master"]["slot"]
        .as_str()
        .unwrap()
        .to_string();
    c.ctl_json(&["slot", "stop", &dave_master], 0);
    let down = client_json(
        &proxy,
        &[
            "unavailable",
            &port(proxy.imap),
            &port(proxy.lmtp),
            "dave",
            "dave-pw",
        ],
    );
    let login = down["login"].as_str().unwrap();
    assert!(login.contains(" NO [UNAVAILABLE]"), "{down}");
    assert!(down["seconds"].as_f64().unwrap() < 2.0, "{down}");
    assert_eq!(down["rcpt"][0], 250, "{down}");
    assert_eq!(down["data"][0], 451, "{down}");
    c.ctl_json(&["slot", "start", &dave_master], 0);

    assert!(proxy.stop(), "the proxy did not stop cleanly");
    eprintln!("proxy e2e: {:.1} s", started.elapsed().as_secs_f64());
}
