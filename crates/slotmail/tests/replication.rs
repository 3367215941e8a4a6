//! Replication end to end: a master slot on 127.0.0.1 and a replica slot on
//! 127.0.0.2, separate `slotmail slot run` processes, driven over IMAP and
//! LMTP by Python's imaplib and smtplib. What a client sees on the replica
//! must be what it sees on the master: the same mailboxes, UIDVALIDITYs,
//! UIDs, flags, MODSEQs, INTERNALDATEs and byte-identical bodies; the
//! replica refuses writes; crashes of either side heal.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MASTER_IP: &str = "127.0.0.1";
const REPLICA_IP: &str = "127.0.0.2";

/// Python helpers shared by the scripts: a client-visible snapshot of a user
/// over IMAP, and waiting until two slots show the same one.
const SNAPSHOT_PY: &str = r#"
import hashlib, imaplib, json, re, sys, time, smtplib

LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')

def unquote(name):
    name = name.decode()
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1].replace('\\"', '"').replace('\\\\', '\\')
    return name

def snapshot(host, port, user, pw):
    c = imaplib.IMAP4(host, port)
    c.login(user, pw)
    out = {}
    typ, lines = c.list('""', '*')
    boxes = []
    for line in lines:
        m = LIST_RE.match(line)
        attrs = sorted(a for a in m.group('attrs').decode().split() if a not in ('\\Marked', '\\Unmarked'))
        name = unquote(m.group('name'))
        boxes.append(name)
        out['list ' + name] = attrs
    typ, subs = c.lsub('""', '*')
    out['lsub'] = sorted(unquote(LIST_RE.match(l).group('name')) for l in subs if l)
    for name in sorted(boxes):
        q = '"' + name + '"'
        typ, st = c.status(q, '(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)')
        out['status ' + name] = st[0].decode().split(' ', 1)[1]
        c.select(q, readonly=True)
        typ, data = c.uid('FETCH', '1:*', '(UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[])')
        msgs = []
        for item in data:
            if isinstance(item, tuple):
                head = item[0].decode().replace('\\Recent', '').replace('( ', '(').replace(' )', ')')
                msgs.append([re.sub(r'^\d+ ', '', head), hashlib.sha256(item[1]).hexdigest()])
        out['messages ' + name] = msgs
        c.close()
    c.logout()
    return out

def wait_same(master, replica, user, pw, limit):
    start = time.monotonic()
    want = snapshot(master[0], master[1], user, pw)
    while True:
        try:
            got = snapshot(replica[0], replica[1], user, pw)
        except Exception as e:
            got = {'error': str(e)}
        if got == want:
            return time.monotonic() - start, want
        if time.monotonic() - start > limit:
            diff = {k: [want.get(k), got.get(k)] for k in set(want) | set(got) if want.get(k) != got.get(k)}
            raise SystemExit('replica differs after %.1f s: %s' % (limit, json.dumps(diff)[:3000]))
        time.sleep(0.01)
"#;

/// Writes of every kind on the master (IMAP and LMTP), then the replica
/// must show the same; then writes on the replica are refused.
const WRITE_AND_COMPARE_PY: &str = r#"
mh, mi, ml, rh, ri, rl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
report = {}
for i in range(12):
    body = ('From: bob@example.org\r\nSubject: append %d\r\nMessage-ID: <a%d@test>\r\n\r\n' % (i, i) + 'line\r\n' * (i * 40)).encode()
    flags = '(\\Seen $Work)' if i % 3 == 0 else None
    date = imaplib.Time2Internaldate(1700000000 + i * 7200) if i % 2 == 0 else None
    typ, _ = M.append('INBOX', flags, date, body)
    assert typ == 'OK'
big = b'From: x@example.org\r\nSubject: big\r\n\r\n' + (b'0123456789abcdef' * 64 + b'\r\n') * 2500
assert M.append('INBOX', None, None, big)[0] == 'OK'
# LMTP delivery into the master.
L = smtplib.LMTP(mh, ml)
L.ehlo_or_helo_if_needed()
assert L.mail('sender@example.org')[0] == 250
assert L.rcpt('alice@example.com')[0] == 250
assert L.rcpt('bob@example.com')[0] == 250
replies = [L.data(b'From: sender@example.org\r\nSubject: via lmtp\r\n\r\nhello over LMTP\r\n')]
replies.append(L.getreply())
L.quit()
assert all(r[0] == 250 for r in replies), replies
M.select('INBOX')
M.uid('STORE', '2:4', '+FLAGS', '(\\Answered \\Flagged)')
M.uid('STORE', '5,7', '+FLAGS', '(\\Deleted)')
M.expunge()
assert M.create('Projects/2024')[0] == 'OK'
M.uid('COPY', '1:3', 'Projects/2024')
assert M.create('Old')[0] == 'OK'
assert M.rename('Old', 'Older')[0] == 'OK'
assert M.create('Gone')[0] == 'OK'
assert M.delete('Gone')[0] == 'OK'
assert M.delete('Junk')[0] == 'OK'
M.subscribe('Projects/2024')
M.unsubscribe('Trash')
M.logout()
took_alice, snap = wait_same((mh, mi), (rh, ri), 'alice', 'pw-alice', 20)
took_bob, _ = wait_same((mh, mi), (rh, ri), 'bob', 'pw-bob', 20)
report['converged_s'] = max(took_alice, took_bob)
report['mailboxes'] = sorted(k[5:] for k in snap if k.startswith('list '))
report['inbox_messages'] = len(snap['messages INBOX'])
report['inbox_status'] = snap['status INBOX']
# Writes on the replica are refused.
R = imaplib.IMAP4(rh, ri)
R.login('alice', 'pw-alice')
try:
    typ, data = R.append('INBOX', None, None, b'Subject: no\r\n\r\nno\r\n')
    report['replica_append'] = [typ, (data[0] or b'').decode()]
except imaplib.IMAP4.error as e:
    report['replica_append'] = ['error', str(e)]
R.select('INBOX')
typ, data = R.uid('STORE', '1', '+FLAGS', '(\\Seen)')
report['replica_store'] = [typ, (data[0] or b'').decode()]
typ, data = R.create('Nope')
report['replica_create'] = [typ, (data[0] or b'').decode()]
R.logout()
L = smtplib.LMTP(rh, rl)
L.ehlo_or_helo_if_needed()
L.mail('sender@example.org')
code, msg = L.rcpt('alice@example.com')
if code == 250:
    code, msg = L.data(b'Subject: no\r\n\r\nno\r\n')
report['replica_lmtp'] = [code, msg.decode()]
L.quit()
print(json.dumps(report))
"#;

fn master_sync(sync_port: u16, replica_sync: u16, secret: &std::path::Path) -> String {
    format!(
        "store = \"s1\"\nrole = \"master\"\nepoch = 1\nlisten = \"{MASTER_IP}:{sync_port}\"\nsecret_file = \"{}\"\nreplicas = [{{ slot = \"b1\", address = \"{REPLICA_IP}:{replica_sync}\" }}]",
        secret.display()
    )
}

fn replica_sync(port: u16, secret: &std::path::Path) -> String {
    format!(
        "store = \"s1\"\nrole = \"replica\"\nepoch = 1\nlisten = \"{REPLICA_IP}:{port}\"\nsecret_file = \"{}\"",
        secret.display()
    )
}

/// A started master (alice, bob) and replica (empty, filled by replication).
fn pair(dir: &std::path::Path) -> (TestSlot, TestSlot) {
    pair_wrapped(dir, &[], &[])
}

/// `pair`, with each slot's command line run by a wrapper program
/// (`TestSlot::start_wrapped`).
fn pair_wrapped(
    dir: &std::path::Path,
    master_wrapper: &[&str],
    replica_wrapper: &[&str],
) -> (TestSlot, TestSlot) {
    let secret = write_secret(dir);
    let master_port = free_port_on(MASTER_IP);
    let replica_port = free_port_on(REPLICA_IP);
    let mdir = dir.join("master");
    let rdir = dir.join("replica");
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::create_dir_all(&rdir).unwrap();
    let mut master = TestSlot::create_with_sync(
        &mdir,
        "a1",
        MASTER_IP,
        &[("alice", "pw-alice", false), ("bob", "pw-bob", false)],
        &master_sync(master_port, replica_port, &secret),
    );
    let mut replica = TestSlot::create_with_sync(
        &rdir,
        "b1",
        REPLICA_IP,
        &[],
        &replica_sync(replica_port, &secret),
    );
    replica.start_wrapped(replica_wrapper);
    master.start_wrapped(master_wrapper);
    (master, replica)
}

/// Run a Python script (SNAPSHOT_PY + `body`) with a time limit; parse the
/// JSON it prints last. Panics with both slots' logs when it fails.
fn script(body: &str, args: &[String], limit: Duration, slots: &[&TestSlot]) -> serde_json::Value {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c")
        .arg(format!("{SNAPSHOT_PY}\n{body}"))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    let (out, in_time) = run_bounded(&mut cmd, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        slots
            .iter()
            .map(|s| format!("--- log of {}\n{}", s.dir.display(), tail(&s.log(), 6000)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        in_time && out.status.success(),
        "python failed (in time: {in_time}): {}\n--- stdout\n{stdout}\n--- stderr\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", logs()))
}

fn addr_args(master: &TestSlot, replica: &TestSlot) -> Vec<String> {
    vec![
        master.imap.ip().to_string(),
        master.imap.port().to_string(),
        master.lmtp.port().to_string(),
        replica.imap.ip().to_string(),
        replica.imap.port().to_string(),
        replica.lmtp.port().to_string(),
    ]
}

#[test]
fn writes_on_the_master_are_visible_on_the_replica_which_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(dir.path());
    let report = script(
        WRITE_AND_COMPARE_PY,
        &addr_args(&master, &replica),
        Duration::from_secs(90),
        &[&master, &replica],
    );
    eprintln!("report: {report}");
    let boxes: Vec<&str> = report["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        boxes.contains(&"Projects/2024") && boxes.contains(&"Older"),
        "{report}"
    );
    assert!(
        !boxes.contains(&"Junk") && !boxes.contains(&"Gone"),
        "{report}"
    );
    // 12 appends + 1 big + 1 LMTP - 2 expunged.
    assert_eq!(report["inbox_messages"], 12, "{report}");
    assert_eq!(report["replica_append"][0], "NO", "{report}");
    assert!(
        report["replica_append"][1]
            .as_str()
            .unwrap()
            .contains("UNAVAILABLE"),
        "{report}"
    );
    assert_eq!(report["replica_store"][0], "NO", "{report}");
    assert!(
        report["replica_store"][1]
            .as_str()
            .unwrap()
            .contains("UNAVAILABLE")
    );
    assert_eq!(report["replica_create"][0], "NO", "{report}");
    assert_eq!(report["replica_lmtp"][0], 451, "{report}");
    assert!(
        report["replica_lmtp"][1]
            .as_str()
            .unwrap()
            .starts_with("4.3.0"),
        "{report}"
    );
    // The status files: the master reports its replica caught up.
    let ok = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        master.replication_status().is_some_and(|s| {
            s["replicas"][0]["pending_users"] == 0 && s["replicas"][0]["state"] == "rolling"
        })
    });
    let status = master.replication_status().unwrap();
    assert!(ok, "{status}");
    assert_eq!(status["role"], "master");
    assert_eq!(status["replicas"][0]["slot"], "b1");
    assert_eq!(status["replicas"][0]["digest_mismatches"], 0, "{status}");
    let rstatus = replica.replication_status().unwrap();
    assert_eq!(rstatus["role"], "replica");
    assert!(
        rstatus["server"]["accepted"].as_u64().unwrap() >= 1,
        "{rstatus}"
    );
    assert_eq!(rstatus["server"]["guid_mismatches"], 0);
}

/// Append on the master, then wait for the replica to show the same.
const APPEND_THEN_COMPARE_PY: &str = r#"
mh, mi, rh, ri, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
size = int(sys.argv[7]) if len(sys.argv) > 7 else 200
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
for i in range(n):
    body = ('Subject: %s %d\r\n\r\n' % (tag, i)).encode() + b'x' * size + b'\r\n'
    assert M.append('INBOX', None, None, body)[0] == 'OK'
M.create('Made-' + tag)
M.logout()
print(json.dumps({'appended': n}))
"#;

const WAIT_SAME_PY: &str = r#"
mh, mi, rh, ri, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
# Timed part, cheap enough to poll: INBOX's STATUS and the mailbox names.
def brief(c):
    st = c.status('INBOX', '(MESSAGES UIDNEXT HIGHESTMODSEQ)')[1][0]
    return st, sorted(l for l in c.list('""', '*')[1])
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
want = brief(M)
start = time.monotonic()
R = None
while True:
    try:
        if R is None:
            R = imaplib.IMAP4(rh, ri)
            R.login('alice', 'pw-alice')
        if brief(R) == want:
            break
    except Exception:
        R = None
    if time.monotonic() - start > limit:
        raise SystemExit('replica not caught up after %.1f s' % limit)
    time.sleep(0.002)
caught_up_at = time.time()
# Then everything a client sees, untimed.
took, snap = wait_same((mh, mi), (rh, ri), 'alice', 'pw-alice', limit)
print(json.dumps({'caught_up_at': caught_up_at, 'took_s': took, 'inbox': len(snap['messages INBOX'])}))
"#;

/// Started while the replica is down: logs in to the master and takes the
/// state to wait for, creates the file `ready`, then waits for the moment
/// the replica's sync listener accepts again (the `sync listening` line of
/// its fresh log, timestamped by the replica) and polls the replica over
/// IMAP until it shows that state. The catch-up is timed from the former to
/// the latter, so neither the slot's start nor this script's is in it.
const WAIT_BACK_PY: &str = r#"
import datetime
mh, mi, rh, ri, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
log, ready = sys.argv[6], sys.argv[7]
def brief(c):
    st = c.status('INBOX', '(MESSAGES UIDNEXT HIGHESTMODSEQ)')[1][0]
    return st, sorted(l for l in c.list('""', '*')[1])
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
want = brief(M)
open(ready, 'w').close()
start = time.monotonic()
back = None
while back is None:
    try:
        with open(log) as f:
            for line in f:
                if 'sync listening' in line:
                    plain = re.sub(r'\x1b\[[0-9;]*m', '', line)
                    stamp = plain.split()[0].replace('Z', '+00:00')
                    back = datetime.datetime.fromisoformat(stamp).timestamp()
                    break
    except FileNotFoundError:
        pass
    if time.monotonic() - start > limit:
        raise SystemExit('the replica never listened again')
    time.sleep(0.005)
R = None
while True:
    try:
        if R is None:
            R = imaplib.IMAP4(rh, ri)
            R.login('alice', 'pw-alice')
        if brief(R) == want:
            break
    except Exception:
        R = None
    if time.monotonic() - start > limit:
        raise SystemExit('replica not caught up after %.1f s' % limit)
    time.sleep(0.002)
caught_up_at = time.time()
took, snap = wait_same((mh, mi), (rh, ri), 'alice', 'pw-alice', limit)
print(json.dumps({'back': back, 'caught_up_at': caught_up_at, 'inbox': len(snap['messages INBOX'])}))
"#;

fn imap_args(master: &TestSlot, replica: &TestSlot) -> Vec<String> {
    vec![
        master.imap.ip().to_string(),
        master.imap.port().to_string(),
        replica.imap.ip().to_string(),
        replica.imap.port().to_string(),
    ]
}

#[test]
fn a_killed_replica_catches_up_within_a_second_of_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, mut replica) = pair(dir.path());
    let mut args = imap_args(&master, &replica);
    args.extend(["5".to_string(), "before".to_string()]);
    script(
        APPEND_THEN_COMPARE_PY,
        &args,
        Duration::from_secs(30),
        &[&master],
    );
    let mut wait = imap_args(&master, &replica);
    wait.push("20".into());
    script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs(40),
        &[&master, &replica],
    );

    // Two outages at most: the bound must hold in one of them (a CI
    // machine busy with other tests' fsyncs may miss it once).
    let mut times = Vec::new();
    for outage in 0..2 {
        replica.kill9();
        let mut args = imap_args(&master, &replica);
        args.extend(["10".to_string(), format!("while-down-{outage}")]);
        script(
            APPEND_THEN_COMPARE_PY,
            &args,
            Duration::from_secs(30),
            &[&master],
        );
        // Down for a while: the master's reconnect attempts keep failing.
        std::thread::sleep(Duration::from_secs(3));
        // The replica's log is written afresh at its start: the waiter
        // takes the moment it listens again from the new one.
        let log = replica.dir.join("slot.log");
        let _ = std::fs::remove_file(&log);
        let ready = dir.path().join(format!("ready-{outage}"));
        let mut args = imap_args(&master, &replica);
        args.extend([
            "40".to_string(),
            log.display().to_string(),
            ready.display().to_string(),
        ]);
        let report = std::thread::scope(|s| {
            let waiter =
                s.spawn(|| script(WAIT_BACK_PY, &args, Duration::from_secs(60), &[&master]));
            let asked = Instant::now();
            while !ready.exists() && !waiter.is_finished() {
                assert!(
                    asked.elapsed() < Duration::from_secs(30),
                    "the waiter never got ready"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            replica.start();
            waiter.join().unwrap()
        });
        let took = Duration::from_secs_f64(
            (report["caught_up_at"].as_f64().unwrap() - report["back"].as_f64().unwrap()).max(0.0),
        );
        eprintln!(
            "replica restarted: caught up {} ms after its sync listener accepted again",
            took.as_millis()
        );
        assert_eq!(report["inbox"], 15 + 10 * outage);
        times.push(took);
        if took < Duration::from_secs(1) {
            break;
        }
    }
    assert!(
        times.iter().any(|t| *t < Duration::from_secs(1)),
        "caught up only after {times:?}\n{}",
        tail(&master.log(), 4000)
    );
    master.stop();
}

/// The files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file()
                && std::fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                out.push(path);
            }
        }
    }
    out
}

/// A message file damaged on the replica while it was stopped (one byte
/// changed, the size kept): after its restart, with no scrub run, the
/// replica finds it (its paced verification of its bodies), reports it
/// (`Pong`), and the master sends the body again; both sides then read the
/// same bytes over IMAP.
#[test]
fn a_body_damaged_on_a_stopped_replica_is_repaired_from_the_master_without_a_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, mut replica) = pair(dir.path());
    let mut args = imap_args(&master, &replica);
    args.extend(["3".to_string(), "damaged".to_string()]);
    script(
        APPEND_THEN_COMPARE_PY,
        &args,
        Duration::from_secs(30),
        &[&master],
    );
    let mut wait = imap_args(&master, &replica);
    wait.push("40".into());
    script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs(60),
        &[&master, &replica],
    );

    replica.stop();
    let files = files_containing(&replica.data, b"Subject: damaged 1\r\n");
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 5;
    assert_eq!(bytes[at], b'x');
    bytes[at] = b'y';
    std::fs::write(&files[0], &bytes).unwrap();

    replica.start();
    let report = script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs(60),
        &[&master, &replica],
    );
    assert_eq!(report["inbox"], 3);
    let repaired = std::fs::read(&files[0]).unwrap();
    assert_eq!(
        repaired[at], b'x',
        "the file holds the master's bytes again"
    );
    let log = replica.log();
    assert!(
        log.contains("body verification: a body is bad"),
        "{}",
        tail(&log, 4000)
    );
    assert!(!log.contains("scrub"), "no scrub ran: {}", tail(&log, 4000));
    master.stop();
    replica.stop();
}

#[test]
fn a_master_killed_in_the_middle_of_a_stream_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, replica) = pair(dir.path());
    // Large bodies keep the streams busy; kill -9 right after the appends.
    let mut args = imap_args(&master, &replica);
    args.extend(["12".into(), "big".into(), "3000000".into()]);
    script(
        APPEND_THEN_COMPARE_PY,
        &args,
        Duration::from_secs(60),
        &[&master],
    );
    master.kill9();
    master.start();
    let mut wait = imap_args(&master, &replica);
    wait.push("30".into());
    let report = script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs(60),
        &[&master, &replica],
    );
    assert_eq!(report["inbox"], 12);
    let status = master.replication_status();
    eprintln!("master status after the restart: {status:?}");
}

/// 200 samples of: APPEND acknowledged on the master → the message is
/// FETCHable over IMAP on the replica (polled every millisecond, so a
/// sample is at most about a millisecond late).
const LAG_PY: &str = r#"
mh, mi, rh, ri, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
R = imaplib.IMAP4(rh, ri)
R.login('alice', 'pw-alice')
R.select('INBOX', readonly=True)
samples = []
for i in range(n):
    body = ('Subject: lag %d\r\nMessage-ID: <lag%d@test>\r\n\r\n' % (i, i)).encode() + b'y' * 500 + b'\r\n'
    typ, data = M.append('INBOX', None, None, body)
    t0 = time.perf_counter()
    assert typ == 'OK', data
    uid = re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1).decode()
    while True:
        typ, got = R.uid('FETCH', uid, '(UID)')
        if typ == 'OK' and got and got[0] is not None and (' ' + uid + ')').encode() in got[0]:
            break
        if time.perf_counter() - t0 > 10:
            raise SystemExit('message %s not on the replica after 10 s' % uid)
        # A pause between polls: polling in a tight loop takes a core of a
        # two-core machine from the replica and measures the starvation.
        time.sleep(0.001)
    samples.append((time.perf_counter() - t0) * 1000.0)
print(json.dumps({'samples_ms': samples}))
"#;

#[test]
fn replication_lag_append_on_master_to_fetch_on_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(dir.path());
    let mut args = imap_args(&master, &replica);
    args.push("200".into());
    let report = script(
        LAG_PY,
        &args,
        Duration::from_secs(120),
        &[&master, &replica],
    );
    let mut samples: Vec<f64> = report["samples_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(samples.len(), 200);
    let slow: Vec<(usize, u64)> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 50.0)
        .map(|(i, s)| (i, *s as u64))
        .collect();
    eprintln!("samples over 50 ms (index, ms): {slow:?}");
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    let (p50, p99, max) = (pct(0.50), pct(0.99), samples[samples.len() - 1]);
    println!(
        "replication lag (APPEND OK on master -> UID FETCH on replica), 200 samples: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    eprintln!("replication lag, 200 samples: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    assert!(p99 < 2000.0, "p99 {p99} ms");
}

/// Durable delivery, driven by imaplib and smtplib. `up`: every APPEND and
/// LMTP delivery answered OK/250 is on the replica at that moment (read at
/// once over IMAP, no waiting). `tempfail`: with the replica down, APPEND
/// gets `NO [UNAVAILABLE]` and LMTP `451 4.4.1` after the wait, and the
/// message is not on the master either (withdrawn). `accept`: with the
/// replica down, APPEND gets OK after the wait and the message stays.
const DURABLE_PY: &str = r#"
mh, mi, ml, rh, ri, mode, wait_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], float(sys.argv[7])
APPENDUID = re.compile(rb'APPENDUID \d+ (\d+)')
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
report = {'mode': mode, 'appends': [], 'lmtp': []}

def on_replica(uid=None, subject=None):
    R = imaplib.IMAP4(rh, ri)
    R.login('alice', 'pw-alice')
    R.select('INBOX', readonly=True)
    if uid is not None:
        typ, data = R.uid('FETCH', str(uid), '(UID)')
        found = any(d for d in data if d)
    else:
        typ, data = R.uid('SEARCH', 'SUBJECT', '"%s"' % subject)
        found = bool(data[0].split())
    R.logout()
    return found

def on_master(subject):
    M.select('INBOX', readonly=True)
    typ, data = M.uid('SEARCH', 'SUBJECT', '"%s"' % subject)
    return len(data[0].split())

for i in range(5 if mode == 'up' else 1):
    subject = 'durable %s %d' % (mode, i)
    body = ('From: bob@example.org\r\nSubject: %s\r\n\r\n' % subject + 'line\r\n' * 30).encode()
    t0 = time.monotonic()
    try:
        typ, data = M.append('INBOX', None, None, body)
        text = (data[0] or b'').decode()
    except imaplib.IMAP4.error as e:
        typ, text = 'NO', str(e)
    took = time.monotonic() - t0
    entry = {'typ': typ, 'text': text, 'took_s': took}
    if typ == 'OK':
        uid = int(APPENDUID.search(text.encode()).group(1))
        if mode != 'accept':
            entry['on_replica'] = on_replica(uid=uid)
    entry['on_master'] = on_master(subject)
    report['appends'].append(entry)

    lsubject = 'durable lmtp %s %d' % (mode, i)
    L = smtplib.LMTP(mh, ml)
    L.ehlo_or_helo_if_needed()
    assert L.mail('sender@example.org')[0] == 250
    assert L.rcpt('alice@example.com')[0] == 250
    t0 = time.monotonic()
    code, msg = L.data(('From: s@example.org\r\nSubject: %s\r\n\r\nhello\r\n' % lsubject).encode())
    took = time.monotonic() - t0
    L.quit()
    entry = {'code': code, 'text': msg.decode(), 'took_s': took}
    if code == 250 and mode != 'accept':
        entry['on_replica'] = on_replica(subject=lsubject)
    entry['on_master'] = on_master(lsubject)
    report['lmtp'].append(entry)
M.logout()
print(json.dumps(report))
"#;

#[test]
fn durable_delivery_answers_only_once_the_replica_has_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, mut replica) = pair(dir.path());
    // Durable delivery on, a 1.5 s bound, the default policy (tempfail).
    master.stop();
    master.edit_config(|c| {
        c.replace(
            "[sync]\n",
            "[sync]\ndurable = true\ndurable_wait_ms = 1500\n",
        )
    });
    master.start();
    let wait_s = 1.5;
    let args = |mode: &str, master: &TestSlot, replica: &TestSlot| {
        let mut a = addr_args(master, replica);
        a.truncate(5);
        a.extend([mode.to_string(), wait_s.to_string()]);
        a
    };

    // The replica is up: every acknowledged message is already on it.
    let up = script(
        DURABLE_PY,
        &args("up", &master, &replica),
        Duration::from_secs(60),
        &[&master, &replica],
    );
    eprintln!("up: {up}");
    for e in up["appends"].as_array().unwrap() {
        assert_eq!(e["typ"], "OK", "{up}");
        assert_eq!(e["on_replica"], true, "{up}");
    }
    for e in up["lmtp"].as_array().unwrap() {
        assert_eq!(e["code"], 250, "{up}");
        assert_eq!(e["on_replica"], true, "{up}");
    }

    // The replica is down: tempfail within the bound, nothing kept.
    replica.kill9();
    let down = script(
        DURABLE_PY,
        &args("tempfail", &master, &replica),
        Duration::from_secs(60),
        &[&master],
    );
    eprintln!("tempfail: {down}");
    let a = &down["appends"][0];
    assert_eq!(a["typ"], "NO", "{down}");
    assert!(
        a["text"].as_str().unwrap().contains("UNAVAILABLE"),
        "{down}"
    );
    let l = &down["lmtp"][0];
    assert_eq!(l["code"], 451, "{down}");
    assert!(l["text"].as_str().unwrap().starts_with("4.4.1"), "{down}");
    for e in [a, l] {
        let took = e["took_s"].as_f64().unwrap();
        assert!((wait_s - 0.05..wait_s + 3.0).contains(&took), "{down}");
        assert_eq!(e["on_master"], 0, "withdrawn: {down}");
    }
    // The status file (rewritten every second) counts them.
    let counted = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        master.replication_status().is_some_and(|s| {
            s["durable"]["withdrawn"] == 2
                && s["durable"]["timed_out"] == 2
                && s["durable"]["confirmed"] == 10
        })
    });
    assert!(counted, "{:?}", master.replication_status());

    // Policy `accept`: OK after the wait, kept on the master, replicated
    // when the replica is back.
    master.stop();
    master.edit_config(|c| {
        c.replace(
            "durable = true\n",
            "durable = true\ndurable_on_timeout = \"accept\"\n",
        )
    });
    master.start();
    let accept = script(
        DURABLE_PY,
        &args("accept", &master, &replica),
        Duration::from_secs(60),
        &[&master],
    );
    eprintln!("accept: {accept}");
    let a = &accept["appends"][0];
    assert_eq!(a["typ"], "OK", "{accept}");
    let l = &accept["lmtp"][0];
    assert_eq!(l["code"], 250, "{accept}");
    for e in [a, l] {
        let took = e["took_s"].as_f64().unwrap();
        assert!((wait_s - 0.05..wait_s + 3.0).contains(&took), "{accept}");
        assert_eq!(e["on_master"], 1, "{accept}");
    }
    replica.start();
    let mut wait = imap_args(&master, &replica);
    wait.push("20".into());
    let same = script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs(40),
        &[&master, &replica],
    );
    // 5 + 5 while up, 0 from tempfail, 2 from accept.
    assert_eq!(same["inbox"], 12, "{same}");
    master.stop();
}

/// Send one request to a running slot's admin socket; it must succeed.
fn admin(
    slot: &TestSlot,
    request: slotmail_slot::admin::Request,
) -> slotmail_slot::admin::Response {
    let socket = slot.data.join(slotmail_slot::admin::SOCKET_NAME);
    // The slot binds its admin socket after its IMAP listener: wait for it.
    let since = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "no admin socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let response = slotmail_slot::admin::admin_request(&socket, &request)
        .unwrap_or_else(|e| panic!("admin {request:?}: {e}"));
    assert!(
        !matches!(response, slotmail_slot::admin::Response::Error { .. }),
        "admin {request:?}: {response:?}"
    );
    response
}

/// Account-level items and mailbox attributes, read on both sides: the
/// quota (limits and usage over GETQUOTAROOT), a changed password hash (the
/// new password logs in on the replica, the old one no longer does), an
/// account created and then deleted by the admin, a special-use mailbox
/// (CREATE with USE), a mailbox with messages renamed, and everything the
/// snapshot compares (STATUS, INTERNALDATE, MODSEQ, flags, bytes, LSUB).
const ACCOUNTS_PY: &str = r#"
mh, mi, rh, ri, stage = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
report = {}

def logs_in(host, port, user, pw):
    c = imaplib.IMAP4(host, port)
    try:
        c.login(user, pw)
        c.logout()
        return True
    except imaplib.IMAP4.error:
        return False

def quota(host, port):
    c = imaplib.IMAP4(host, port)
    c.login('alice', 'pw-alice')
    typ, data = c.getquotaroot('INBOX')
    c.logout()
    assert typ == 'OK', data
    return sorted(d.decode() for d in data[1])

def until(what, want, limit=20):
    start = time.monotonic()
    while True:
        got = what()
        if got == want:
            return got
        if time.monotonic() - start > limit:
            raise SystemExit('%s: %r, not %r after %d s' % (what.__name__, got, want, limit))
        time.sleep(0.02)

if stage == 'changed':
    M = imaplib.IMAP4(mh, mi)
    M.login('alice', 'pw-alice')
    for i in range(4):
        body = ('Subject: acct %d\r\n\r\n' % i).encode() + b'q' * 3000 + b'\r\n'
        date = imaplib.Time2Internaldate(1600000000 + i * 86399)
        assert M.append('INBOX', '(\\Flagged)' if i % 2 else None, date, body)[0] == 'OK'
    typ, data = M._simple_command('CREATE', '"Keep" (USE (\\Archive))')
    assert typ == 'OK', data
    assert M.create('Moving')[0] == 'OK'
    M.select('INBOX')
    assert M.uid('COPY', '1:*', 'Moving')[0] == 'OK'
    M.select('Moving', readonly=True)
    report['moving_status'] = M.status('Moving', '(UIDVALIDITY UIDNEXT)')[1][0].decode()
    M.close()
    assert M.rename('Moving', 'Moved')[0] == 'OK'
    report['moved_status'] = M.status('Moved', '(UIDVALIDITY UIDNEXT)')[1][0].decode()
    M.logout()
    report['quota_master'] = quota(mh, mi)
    report['quota_replica'] = until(lambda: quota(rh, ri), report['quota_master'])
    report['bob_new_replica'] = until(lambda: logs_in(rh, ri, 'bob', 'pw-bob-2'), True)
    report['bob_old_replica'] = logs_in(rh, ri, 'bob', 'pw-bob')
    report['bob_old_master'] = logs_in(mh, mi, 'bob', 'pw-bob')
    report['carol_replica'] = until(lambda: logs_in(rh, ri, 'carol', 'pw-carol'), True)
    took, snap = wait_same((mh, mi), (rh, ri), 'alice', 'pw-alice', 20)
    report['list'] = {k[5:]: v for k, v in snap.items() if k.startswith('list ')}
    report['status'] = {k[7:]: v for k, v in snap.items() if k.startswith('status ')}
    report['moved'] = snap['messages Moved']
    wait_same((mh, mi), (rh, ri), 'carol', 'pw-carol', 20)
elif stage == 'deleted':
    report['carol_master'] = logs_in(mh, mi, 'carol', 'pw-carol')
    report['carol_replica'] = until(lambda: logs_in(rh, ri, 'carol', 'pw-carol'), False)
print(json.dumps(report))
"#;

#[test]
fn accounts_quota_passwords_and_special_use_are_replicated() {
    use slotmail_slot::admin::Request;
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair(dir.path());
    let hash = |pw: &str| slotmail_store::hash_password(pw).unwrap();
    admin(
        &master,
        Request::SetQuota {
            name: "alice".into(),
            bytes: Some(5_000_000),
            messages: Some(1_000),
        },
    );
    admin(
        &master,
        Request::SetPasswordHash {
            name: "bob".into(),
            password_hash: hash("pw-bob-2"),
        },
    );
    admin(
        &master,
        Request::CreateUser {
            name: "carol".into(),
            password_hash: hash("pw-carol"),
            admin: false,
        },
    );
    let mut args = imap_args(&master, &replica);
    args.push("changed".into());
    let report = script(
        ACCOUNTS_PY,
        &args,
        Duration::from_secs(90),
        &[&master, &replica],
    );
    eprintln!("report: {report}");
    // The limits and the usage (4 + 4 copies of about 3 KB) are the master's.
    let quota = report["quota_replica"].to_string();
    assert!(
        quota.contains("STORAGE") && quota.contains("4882"),
        "{report}"
    );
    assert!(quota.contains("MESSAGE 8 1000"), "{report}");
    assert_eq!(report["quota_master"], report["quota_replica"]);
    assert_eq!(report["bob_old_replica"], false, "{report}");
    assert_eq!(report["bob_old_master"], false, "{report}");
    let keep = report["list"]["Keep"].to_string();
    assert!(keep.contains("\\\\Archive"), "{report}");
    assert!(report["list"].get("Moving").is_none(), "{report}");
    assert_eq!(report["moved"].as_array().unwrap().len(), 4, "{report}");
    // The renamed mailbox keeps its UIDVALIDITY (the same mailbox, by id).
    let validity = |s: &str| {
        let s = report[s].as_str().unwrap().to_string();
        s.split("UIDVALIDITY ")
            .nth(1)
            .unwrap()
            .split([' ', ')'])
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        validity("moving_status"),
        validity("moved_status"),
        "{report}"
    );
    assert!(
        report["status"]["Moved"]
            .as_str()
            .unwrap()
            .contains(&validity("moved_status")),
        "{report}"
    );

    admin(
        &master,
        Request::DeleteUser {
            name: "carol".into(),
        },
    );
    let mut args = imap_args(&master, &replica);
    args.push("deleted".into());
    let report = script(
        ACCOUNTS_PY,
        &args,
        Duration::from_secs(60),
        &[&master, &replica],
    );
    assert_eq!(report["carol_master"], false, "{report}");
    assert_eq!(report["carol_replica"], false, "{report}");
}

/// What the relay does to the first connection that has forwarded
/// `after` bytes from the master: stop forwarding it (without closing
/// anything) for `Stall`'s duration, or close both of its sides (`Cut`).
#[derive(Clone, Copy, Debug)]
enum Fault {
    Stall(Duration),
    Cut,
}

/// A TCP relay on loopback between the master's sync client and the
/// replica's sync listener: it forwards every connection both ways and
/// does `fault` once, in the middle of the master's bytes. The streams are
/// TLS end to end: the relay sees only ciphertext, as a router would.
struct Relay {
    addr: std::net::SocketAddr,
    /// Set once the fault has been done.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections accepted so far.
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The relay's listener address (used by no other test).
const RELAY_IP: &str = "127.0.0.71";

impl Relay {
    fn start(upstream: std::net::SocketAddr, after: u64, fault: Fault) -> Relay {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind((RELAY_IP, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (done2, accepted2) = (done.clone(), accepted.clone());
        // The threads end when the test process does; each holds two
        // sockets at most.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
                let (mut s_read, mut s_write) = (server.try_clone().unwrap(), server);
                let (c_shut, s_shut) = (c_write.try_clone().unwrap(), s_write.try_clone().unwrap());
                let done = done2.clone();
                // Master -> replica, where the fault happens.
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut forwarded = 0u64;
                    loop {
                        let n = match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if forwarded + n as u64 > after && !done.swap(true, Ordering::SeqCst) {
                            let half = (after.saturating_sub(forwarded) as usize).min(n);
                            if s_write.write_all(&buf[..half]).is_err() {
                                break;
                            }
                            match fault {
                                Fault::Stall(pause) => {
                                    eprintln!("relay: stalling a connection for {pause:?}");
                                    std::thread::sleep(pause);
                                    eprintln!("relay: forwarding again");
                                    if s_write.write_all(&buf[half..n]).is_err() {
                                        break;
                                    }
                                }
                                Fault::Cut => {
                                    eprintln!("relay: cutting a connection");
                                    break;
                                }
                            }
                        } else if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        forwarded += n as u64;
                    }
                    let _ = s_write.shutdown(Shutdown::Both);
                    let _ = c_read.shutdown(Shutdown::Both);
                });
                // Replica -> master.
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_shut.shutdown(Shutdown::Both);
                    let _ = s_shut.shutdown(Shutdown::Both);
                });
            }
        });
        Relay {
            addr,
            done,
            accepted,
        }
    }
}

/// A master whose sync client dials the replica through `Relay`.
fn pair_via_relay(dir: &std::path::Path, after: u64, fault: Fault) -> (TestSlot, TestSlot, Relay) {
    let secret = write_secret(dir);
    let master_port = free_port_on(MASTER_IP);
    let replica_port = free_port_on(REPLICA_IP);
    let relay = Relay::start(
        format!("{REPLICA_IP}:{replica_port}").parse().unwrap(),
        after,
        fault,
    );
    let mdir = dir.join("master");
    let rdir = dir.join("replica");
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::create_dir_all(&rdir).unwrap();
    let sync = master_sync(master_port, replica_port, &secret).replace(
        &format!("address = \"{REPLICA_IP}:{replica_port}\""),
        &format!("address = \"{}\"", relay.addr),
    );
    assert!(sync.contains(&relay.addr.to_string()), "{sync}");
    let mut master = TestSlot::create_with_sync(
        &mdir,
        "a1",
        MASTER_IP,
        &[("alice", "pw-alice", false), ("bob", "pw-bob", false)],
        &sync,
    );
    let mut replica = TestSlot::create_with_sync(
        &rdir,
        "b1",
        REPLICA_IP,
        &[],
        &replica_sync(replica_port, &secret),
    );
    replica.start();
    master.start();
    (master, replica, relay)
}

/// Small messages first (the streams are up and the users seeded), then
/// large bodies; the relay's fault hits one of them in the middle; the
/// replica must then show exactly what the master does.
fn fault_in_the_middle_of_a_body(fault: Fault, size: u64, limit: f64) {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (master, replica, relay) = pair_via_relay(dir.path(), 2 * size / 3 + 200_000, fault);
    let mut args = imap_args(&master, &replica);
    args.extend(["3".into(), "small".into()]);
    script(
        APPEND_THEN_COMPARE_PY,
        &args,
        Duration::from_secs(30),
        &[&master],
    );
    let mut args = imap_args(&master, &replica);
    args.extend(["2".into(), "large".into(), size.to_string()]);
    script(
        APPEND_THEN_COMPARE_PY,
        &args,
        Duration::from_secs(60),
        &[&master],
    );
    let mut wait = imap_args(&master, &replica);
    wait.push(limit.to_string());
    let report = script(
        WAIT_SAME_PY,
        &wait,
        Duration::from_secs_f64(limit + 30.0),
        &[&master, &replica],
    );
    assert!(
        relay.done.load(Ordering::SeqCst),
        "the fault never happened"
    );
    // Exactly the master's five messages: no duplicates, no gaps (the
    // snapshot compared UIDs, flags, MODSEQs and the bytes of each).
    assert_eq!(report["inbox"], 5, "{report}");
    if let Fault::Stall(_) = fault {
        // The stalled stream was given up by a timeout, not by the relay.
        let logs = format!("{}\n{}", master.log(), replica.log());
        assert!(
            logs.contains("timed out waiting for"),
            "{}",
            tail(&logs, 6000)
        );
    }
    let connections = relay.accepted.load(Ordering::SeqCst);
    eprintln!("{fault:?}: converged, {connections} connections through the relay");
    assert!(connections > 1, "the master reconnected after the fault");
}

/// The replication stream stalls in the middle of a body (the relay stops
/// forwarding, closes nothing) for longer than the stream's timeouts
/// (`SERVER_IDLE_TIMEOUT` 45 s on the replica, `WRITE_TIMEOUT` 60 s on the
/// master): the stalled stream is given up, a new one resumes, and the
/// replica converges exactly. The body is larger than loopback's socket
/// buffers hold, so the master's writes block.
#[test]
fn a_stream_stalled_in_the_middle_of_a_message_resumes_and_converges() {
    fault_in_the_middle_of_a_body(Fault::Stall(Duration::from_secs(75)), 24_000_000, 120.0);
}

/// The connection is cut (both sides closed) in the middle of a body.
#[test]
fn a_stream_cut_in_the_middle_of_a_message_resumes_and_converges() {
    fault_in_the_middle_of_a_body(Fault::Cut, 6_000_000, 30.0);
}

/// libfaketime's preload library (Debian's `faketime` package), multi-
/// threaded flavour.
fn libfaketime() -> std::path::PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .chain([std::path::PathBuf::from(
            "/usr/lib/faketime/libfaketimeMT.so.1",
        )])
        .find(|p| p.exists());
    found.expect("libfaketime is installed (scripts/test.sh installs the faketime package)")
}

/// A slot's command line run with its wall clock offset by `offset` (as
/// libfaketime writes it, e.g. `+5h`); `env` execs, so the slot is the
/// child the harness signals.
fn clock_offset(lib: &std::path::Path, offset: &str) -> Vec<String> {
    vec![
        "env".into(),
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME={offset}"),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        "FAKETIME_NO_CACHE=1".into(),
    ]
}

/// Messages with and without an APPEND date, then both sides compared
/// (the snapshot holds every message's INTERNALDATE, MODSEQ and bytes); the
/// INTERNALDATEs as each side reports them are returned.
const CLOCKS_PY: &str = r#"
mh, mi, rh, ri = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
M = imaplib.IMAP4(mh, mi)
M.login('alice', 'pw-alice')
before = time.time()
for i in range(6):
    body = ('Subject: clocks %d\r\n\r\n' % i).encode() + b'c' * 300 + b'\r\n'
    date = imaplib.Time2Internaldate(1500000000 + i * 3601) if i % 2 else None
    assert M.append('INBOX', None, date, body)[0] == 'OK'
assert M.create('Clocks')[0] == 'OK'
M.logout()
took, snap = wait_same((mh, mi), (rh, ri), 'alice', 'pw-alice', 30)
def dates(host, port):
    c = imaplib.IMAP4(host, port)
    c.login('alice', 'pw-alice')
    c.select('INBOX', readonly=True)
    typ, data = c.uid('FETCH', '1:*', '(INTERNALDATE)')
    c.logout()
    return [re.search(rb'INTERNALDATE "([^"]+)"', d).group(1).decode() for d in data if d]
import datetime
master = dates(mh, mi)
stamps = [datetime.datetime.strptime(d, '%d-%b-%Y %H:%M:%S %z').timestamp() for d in master]
dated = [stamps[i] - (1500000000 + i * 3601) for i in range(1, 6, 2)]
undated = [stamps[i] - before for i in range(0, 6, 2)]
print(json.dumps({'master': master, 'replica': dates(rh, ri), 'dated_off': dated, 'undated_off': undated}))
"#;

/// The replica's clock runs five hours ahead of this machine's, the
/// master's two hours behind: the sync handshake (TLS with the replica's
/// freshly made certificate) still succeeds, the replica converges, every
/// INTERNALDATE is the master's exactly, and the master's lag report stays
/// sane.
#[test]
fn clock_differences_between_master_and_replica_do_not_matter() {
    let lib = libfaketime();
    let master_wrap = clock_offset(&lib, "-2h");
    let replica_wrap = clock_offset(&lib, "+5h");
    let dir = tempfile::tempdir().unwrap();
    let (master, replica) = pair_wrapped(
        dir.path(),
        &master_wrap.iter().map(String::as_str).collect::<Vec<_>>(),
        &replica_wrap.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let report = script(
        CLOCKS_PY,
        &imap_args(&master, &replica),
        Duration::from_secs(60),
        &[&master, &replica],
    );
    eprintln!("report: {report}");
    assert_eq!(report["master"], report["replica"], "{report}");
    let dates = report["master"].as_array().unwrap();
    assert_eq!(dates.len(), 6, "{report}");
    // Dated appends keep their date; undated ones got the master's clock
    // (two hours behind this machine's), which the replica shows unchanged.
    for off in report["dated_off"].as_array().unwrap() {
        assert_eq!(off.as_f64().unwrap(), 0.0, "{report}");
    }
    for off in report["undated_off"].as_array().unwrap() {
        let off = off.as_f64().unwrap();
        assert!((-7260.0..-7140.0).contains(&off), "{report}");
    }
    // The clocks really were offset: each slot's log stamps its own time.
    let stamp = |slot: &TestSlot| {
        let log = slot.log();
        let plain = tail(&log, log.len());
        plain.split_whitespace().next().unwrap().to_string()
    };
    let (m, r) = (stamp(&master), stamp(&replica));
    eprintln!("first log stamps: master {m} replica {r}");
    let hour = |s: &str| s[11..13].parse::<i64>().unwrap();
    assert_eq!((hour(&r) - hour(&m)).rem_euclid(24), 7, "{m} {r}");
    // The master's status: caught up, lag not negative-wrapped nor hours.
    let ok = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        master.replication_status().is_some_and(|s| {
            s["replicas"][0]["pending_users"] == 0 && s["replicas"][0]["state"] == "rolling"
        })
    });
    let status = master.replication_status().unwrap();
    assert!(ok, "{status}");
    let lag = status["replicas"][0]["lag_ms"].as_u64().unwrap();
    assert!(lag < 60_000, "lag {lag} ms: {status}");
}
