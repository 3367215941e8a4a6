//! Security: real slot processes on loopback, driven by independent clients
//! (Python's imaplib, smtplib and raw sockets, standard library only; the
//! scripts are under `tests/python/`). What each test proves is written in
//! docs/security.md.
//!
//! Covered elsewhere and not repeated here: plaintext credentials refused
//! without TLS, LOGINDISABLED, STARTTLS (`imap_conformance.rs`,
//! `logindisabled_and_starttls`); the sync listener refusing plaintext
//! peers, wrong secrets and handshake-less requests
//! (`crates/repl/tests/replication.rs`, `unauthenticated_peers_learn_nothing`
//! and `wrong_secret_stale_epoch_and_a_master_are_refused`); the proxy's
//! per-address login throttle (`crates/proxy/tests/shell.rs`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most time one script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// bob's message quota: the isolation script checks alice never sees it.
const BOB_QUOTA_MESSAGES: u64 = 777;

const USERS: &[(&str, &str, bool)] = &[
    ("alice", "pw-alice", false),
    ("bob", "pw-bob", false),
    ("mallory", "pw-mallory", false),
    ("admin", "pw-admin", true),
];

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The names of the files that differ between two snapshots.
fn differences(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, bytes) in before {
        match after.get(path) {
            None => out.push(format!("{} removed", path.display())),
            Some(b) if b != bytes => out.push(format!("{} changed", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            out.push(format!("{} added", path.display()));
        }
    }
    out
}

/// The directory of `user`'s store in a stopped slot.
fn user_dir(slot: &TestSlot, user: &str) -> PathBuf {
    let store = slotmail_store::Slot::open(&slot.data, Default::default()).unwrap();
    let account = store.account(user).unwrap().expect("the user exists");
    store.user_dir(&account.user_id)
}

fn run_script(slot: &mut TestSlot, script: &str, extra: &[&str], min_checks: u64) {
    let imap = slot.imap.port().to_string();
    let lmtp = slot.lmtp.port().to_string();
    let mut args = vec![imap.as_str(), lmtp.as_str()];
    args.extend_from_slice(extra);
    let report = python_report(slot, script, &args, SCRIPT_TIMEOUT);
    let checks = report["checks"].as_u64().unwrap_or(0);
    assert!(
        checks >= min_checks,
        "{script} {extra:?} ran only {checks} checks (expected at least {min_checks})"
    );
    assert!(
        slot.is_running(),
        "the slot died during {script}\n{}",
        tail(&slot.log(), 8000)
    );
    assert!(
        !slot.log().contains("panicked"),
        "the slot panicked during {script}\n{}",
        tail(&slot.log(), 8000)
    );
}

/// alice and mallory name bob's mail with every command and every
/// mailbox-name trick; nothing of bob's reaches them, and bob's store
/// (index and message files) is byte for byte what it was before. An
/// admin may then act as bob, and bob's own view is unchanged.
#[test]
fn users_never_see_or_change_each_others_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), USERS);
    {
        let store = slotmail_store::Slot::open(&slot.data, Default::default()).unwrap();
        store
            .set_quota("bob", Some(50 << 20), Some(BOB_QUOTA_MESSAGES))
            .unwrap();
        store.set_quota("alice", Some(10 << 20), Some(100)).unwrap();
    }
    let state = dir.path().join("isolation.json");
    let state = state.to_str().unwrap();
    slot.start();
    run_script(&mut slot, "isolation.py", &["setup", state], 10);
    slot.stop();
    let bob = user_dir(&slot, "bob");
    let before = snapshot(&bob);
    assert!(
        before.keys().any(|p| p.starts_with("msg")),
        "bob's store has message files: {:?}",
        before.keys().collect::<Vec<_>>()
    );

    slot.start();
    run_script(&mut slot, "isolation.py", &["attack", state], 1000);
    slot.stop();
    let after = snapshot(&bob);
    let diff = differences(&before, &after);
    assert!(
        diff.is_empty(),
        "bob's store changed during the attack: {diff:?}"
    );

    slot.start();
    run_script(&mut slot, "isolation.py", &["verify", state], 10);
    slot.stop();
}

/// Guessing a password over fresh connections (so the per-connection
/// delay never bites) is cut off after the slot's ceiling of failures per
/// address and user name; then even the right password is refused from
/// that address, while other users and other addresses go on.
#[test]
fn brute_force_logins_are_throttled_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), USERS);
    slot.start();
    let ceiling = slotmail_imap::ImapLimits::default().failed_logins_per_address_user_max;
    run_script(&mut slot, "bruteforce.py", &[&ceiling.to_string()], 6);
    slot.stop();
}

/// Connection limit of the resource test's slot.
const CONNECTIONS_MAX: u32 = 20;
/// Per-user connection limit of the resource test's slot.
const CONNECTIONS_PER_USER_MAX: u32 = 5;
/// Message size limit of the resource test's slot (APPENDLIMIT, LMTP SIZE).
const MESSAGE_SIZE_MAX: u64 = 16 << 20;

/// Connection floods, huge literals, long lines, a pipelined flood whose
/// answers are not read, deep MIME nesting, a million-part message, LMTP
/// with too many recipients and too much data: each is refused clearly or
/// handled within bounds, the slot stays responsive, and its peak memory
/// (VmHWM of the slot process) grows by less than a stated bound.
#[test]
fn resource_exhaustion_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(
        dir.path(),
        &[
            ("alice", "pw-alice", false),
            ("bob", "pw-bob", false),
            ("carol", "pw-carol", false),
        ],
    );
    slot.edit_config(|text| {
        format!(
            "{text}\n[limits]\nconnections_max = {CONNECTIONS_MAX}\nconnections_per_user_max = {CONNECTIONS_PER_USER_MAX}\nmessage_size_max = {MESSAGE_SIZE_MAX}\n"
        )
    });
    slot.start();
    let pid = slot.pid().unwrap().to_string();
    run_script(
        &mut slot,
        "resources.py",
        &[
            &pid,
            &CONNECTIONS_MAX.to_string(),
            &CONNECTIONS_PER_USER_MAX.to_string(),
            &MESSAGE_SIZE_MAX.to_string(),
            &slotmail_slot::LMTP_CONNECTIONS_MAX.to_string(),
        ],
        30,
    );
    slot.stop();
}

/// A client of the admin socket: sends `request` as `uid` (through
/// `setpriv`, when given) and returns what the slot answered before it
/// closed the connection, or the connect error.
fn admin_request(socket: &Path, request: &str, uid: Option<u32>) -> String {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect refused: %s" % e)
    sys.exit(0)
try:
    s.sendall(sys.argv[2].encode() + b"\n")
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass  # closed by the slot before the request was out
out = b""
while True:
    try:
        chunk = s.recv(65536)
    except OSError as e:
        print("read failed: %s" % e)
        break
    if not chunk:
        break
    out += chunk
print("answer: %r" % out.decode())
"#;
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("python3")
                // The system's interpreter: one under a user's home
                // directory is out of another uid's reach.
                .env("PATH", "/usr/local/bin:/usr/bin:/bin");
            c
        }
        None => std::process::Command::new("python3"),
    };
    cmd.arg("-c").arg(CLIENT).arg(socket).arg(request);
    let (out, in_time) = run_bounded(&mut cmd, Duration::from_secs(20));
    assert!(in_time, "the admin client hung");
    assert!(
        out.status.success(),
        "admin client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The admin socket answers only its owner (and root): the socket is mode
/// 0600, and a peer of another user id that gets through the file mode
/// anyway (the socket opened up to 0666 here) is refused by its peer
/// credentials, unanswered. Needs root to act as another uid; without it
/// the test checks the mode and the owner's access only.
#[test]
fn admin_socket_refuses_other_users() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), USERS);
    slot.start();
    let socket = slot.data.join("admin.sock");
    // The admin endpoint may come up just after the mail listeners.
    let start = std::time::Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "no admin socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "admin socket mode");
    let request = r#"{"op":"status"}"#;
    let own = admin_request(&socket, request, None);
    assert!(
        own.contains(r#"\"type\":\"status\""#) || own.contains(r#""type":"status""#),
        "the owner is answered: {own}"
    );
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if root {
        const NOBODY: u32 = 65534;
        // Through the mode: the kernel refuses before the slot sees it.
        let denied = admin_request(&socket, request, Some(NOBODY));
        assert!(denied.contains("connect refused"), "{denied}");
        // Open the way to the socket; now only its credential check stands.
        for p in [dir.path(), slot.data.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        for request in [
            r#"{"op":"status"}"#,
            r#"{"op":"delete_user","name":"bob"}"#,
            r#"{"op":"create_user","name":"evil","password_hash":"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g","admin":true}"#,
        ] {
            let refused = admin_request(&socket, request, Some(NOBODY));
            // Closed unanswered (a reset when the request was unread).
            assert_eq!(
                refused.lines().last(),
                Some("answer: ''"),
                "a peer of uid {NOBODY} got an answer to {request}: {refused}"
            );
        }
        assert!(
            slot.log()
                .contains("admin connection from another user refused"),
            "the refusal is logged"
        );
    }
    slot.stop();
    // Nothing the other uid asked for happened.
    let store = slotmail_store::Slot::open(&slot.data, Default::default()).unwrap();
    assert!(store.account("bob").unwrap().is_some(), "bob still exists");
    assert!(store.account("evil").unwrap().is_none(), "no account evil");
}

/// A replica slot's sync listener, probed by peers that are not its
/// master: plaintext bytes get no frame (a TLS alert at most), and a TLS
/// peer that sends garbage or nothing instead of a handshake is closed;
/// the replica applies nothing and keeps serving. The handshake itself
/// (wrong secret, stale epoch, relayed sessions) is proven in
/// `crates/repl/tests/replication.rs`.
#[test]
fn sync_listener_refuses_peers_without_the_handshake() {
    const PROBE: &str = r#"
import socket, ssl, sys, time
port = int(sys.argv[1])
def read_all(s, limit=10):
    s.settimeout(limit)
    out = b""
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit:
            chunk = s.recv(65536)
            if not chunk:
                return out, "closed"
            out += chunk
    except (OSError, ssl.SSLError) as e:
        return out, "error %s" % type(e).__name__
    return out, "open"
for payload in [b"GET / HTTP/1.0\r\n\r\n", b"\x00" * 64, b"* OK IMAP\r\n" * 100]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    out, how = read_all(s)
    print("plain %d %s %s" % (len(out), out[:1].hex() or "-", how))
    s.close()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for payload in [b"\xff" * 4096, b""]:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    if payload:
        s.sendall(payload)
    out, how = read_all(s, 15)
    print("tls %d %s" % (len(out), how))
    s.close()
"#;
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path());
    let sync_port = free_port();
    let rdir = dir.path().join("replica");
    std::fs::create_dir(&rdir).unwrap();
    let mut replica = TestSlot::create_with_sync(
        &rdir,
        "r1",
        "127.0.0.1",
        &[],
        &format!(
            "store = \"s1\"\nrole = \"replica\"\nepoch = 1\nlisten = \"127.0.0.1:{sync_port}\"\nsecret_file = \"{}\"",
            secret.display()
        ),
    );
    replica.start();
    wait_for_port(
        format!("127.0.0.1:{sync_port}").parse().unwrap(),
        Duration::from_secs(20),
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(PROBE).arg(sync_port.to_string());
    let (out, in_time) = run_bounded(&mut cmd, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        in_time && out.status.success(),
        "probe failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("sync listener probes:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in &lines[..3] {
        // "plain <bytes> <first byte> <how>": nothing, or a TLS alert (0x15).
        let f: Vec<&str> = line.split(' ').collect();
        assert!(
            f[1] == "0" || f[2] == "15",
            "a plaintext peer got something other than a TLS alert: {line}"
        );
        assert_ne!(f[3], "open", "a plaintext peer is not closed: {line}");
    }
    for line in &lines[3..] {
        assert!(
            !line.ends_with(" open"),
            "a TLS peer without a handshake is not closed: {line}"
        );
    }
    assert!(replica.is_running(), "{}", tail(&replica.log(), 4000));
    assert!(replica.serves_imap(), "the replica still serves IMAP");
    replica.stop();
    let store = slotmail_store::Slot::open(&replica.data, Default::default()).unwrap();
    assert!(
        store.accounts().unwrap().is_empty(),
        "nothing was applied to the replica"
    );
}
