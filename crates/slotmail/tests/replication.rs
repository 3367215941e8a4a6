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
    replica.start();
    master.start();
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
