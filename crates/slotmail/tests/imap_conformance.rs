//! IMAP conformance: a real slot process driven by independent clients
//! (Python's imaplib and raw sockets, standard library only), one script per
//! command family under `tests/python/`. Each script prints a JSON report of
//! named checks (see `tests/python/imapt.py`); a failed check fails the test
//! with the command sent, the response the RFC asks for and the response
//! received, plus the slot's log.

mod common;

use common::*;
use std::time::Duration;

/// Most time one script may take (the whole test stays under a minute).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(50);

/// The users every conformance slot has: ordinary ones (carol with a
/// UTF-8 password, dave with a quote and a backslash in his) and an admin.
const USERS: &[(&str, &str, bool)] = &[
    ("alice", "pw-alice", false),
    ("bob", "pw-bob", false),
    ("admin", "pw-admin", true),
    ("carol", "pässwörd", false),
    ("dave", "q\"uo\\te", false),
];

/// A running slot with `USERS`, plaintext authentication allowed.
fn slot(dir: &std::path::Path) -> TestSlot {
    let mut slot = TestSlot::create(dir, USERS);
    slot.start();
    slot
}

/// Run one script against a fresh slot; assert that the report has at
/// least `min_checks` checks (a script that checks nothing is a failure)
/// and that the slot survived it.
fn conformance(script: &str, min_checks: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = slot(dir.path());
    let report = run_script(&mut slot, script, &[], min_checks);
    slot.stop();
    report
}

fn run_script(
    slot: &mut TestSlot,
    script: &str,
    extra: &[&str],
    min_checks: u64,
) -> serde_json::Value {
    let imap = slot.imap.port().to_string();
    let lmtp = slot.lmtp.port().to_string();
    let mut args = vec![imap.as_str(), lmtp.as_str()];
    args.extend_from_slice(extra);
    let report = python_report(slot, script, &args, SCRIPT_TIMEOUT);
    let checks = report["checks"].as_u64().unwrap_or(0);
    assert!(
        checks >= min_checks,
        "{script} ran only {checks} checks (expected at least {min_checks}): {report}"
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
    report
}

/// CAPABILITY before and after login, LOGIN (atoms, quoted, literals,
/// LITERAL+), AUTHENTICATE PLAIN (SASL-IR, continuation, cancel, bad
/// BASE64, admin authzid, non-admin AUTHORIZATIONFAILED), ENABLE, ID,
/// LOGOUT, commands before login.
#[test]
fn capability_login_authenticate_enable_id() {
    conformance("auth.py", 80);
}

/// A slot that refuses plaintext credentials: LOGINDISABLED and
/// PRIVACYREQUIRED before TLS, STARTTLS (discarding pipelined plaintext),
/// then LOGIN and AUTHENTICATE; and the implicit-TLS port.
#[test]
fn logindisabled_and_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), USERS);
    slotmail_slot::tls::write_self_signed(
        &["slot.test".to_string(), "127.0.0.1".to_string()],
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    )
    .unwrap();
    let tls_port = free_port();
    slot.edit_config(|text| {
        let replaced = text.replace(
            "allow_plaintext_auth = true\n",
            &format!("allow_plaintext_auth = false\ntls_listen = \"127.0.0.1:{tls_port}\"\n"),
        );
        assert_ne!(replaced, text, "config layout changed: {text}");
        replaced + "\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"
    });
    slot.start();
    wait_for_port(
        format!("127.0.0.1:{tls_port}").parse().unwrap(),
        Duration::from_secs(20),
    );
    run_script(&mut slot, "starttls.py", &[&tls_port.to_string()], 25);
    slot.stop();
}

/// CREATE (USE), DELETE (HASCHILDREN, NONEXISTENT), RENAME (INBOX),
/// SUBSCRIBE/UNSUBSCRIBE/LSUB, LIST (wildcards, LIST-EXTENDED, LIST-STATUS,
/// SPECIAL-USE, CHILDREN, modified UTF-7, UTF-8), NAMESPACE, STATUS,
/// GETQUOTA/GETQUOTAROOT.
#[test]
fn mailbox_commands() {
    conformance("mailboxes.py", 120);
}

/// APPEND (flags, date, APPENDUID, TRYCREATE, LITERAL+, 8-bit),
/// SELECT/EXAMINE response items (rev1, CONDSTORE, QRESYNC, rev2), CHECK,
/// CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE.
#[test]
fn select_examine_append_expunge() {
    conformance("select_append.py", 80);
}

/// SEARCH and UID SEARCH: every key family, CHARSET UTF-8 on non-ASCII
/// headers and bodies (QP, base64, 8bit), NOT/OR nesting, MODSEQ, ESEARCH.
#[test]
fn search_and_uid_search() {
    conformance("search.py", 100);
}

/// FETCH: every data item, BODY[section] and partials compared byte for
/// byte with what was appended, ENVELOPE and BODYSTRUCTURE, BODY versus
/// BODY.PEEK and \Seen, RFC822 items, macros, MODSEQ and CHANGEDSINCE.
#[test]
fn fetch_every_item() {
    conformance("fetch.py", 100);
}

/// STORE (+/-FLAGS, FLAGS, .SILENT, keywords, UNCHANGEDSINCE/MODIFIED),
/// COPY/UID COPY (COPYUID, TRYCREATE), MOVE/UID MOVE.
#[test]
fn store_copy_move() {
    conformance("store_copy_move.py", 55);
}

/// IDLE: another connection's APPEND, an LMTP delivery, a STORE and an
/// EXPUNGE wake an idling session in under a second (latencies printed),
/// several idlers at once, IDLE without a mailbox, DONE and a bad DONE.
#[test]
fn idle_wakes_within_a_second() {
    let report = conformance("idle.py", 40);
    for kind in ["append", "lmtp", "store", "expunge"] {
        for from in ["from_send", "after_ok"] {
            let l = &report["info"][format!("{kind}_latency_ms_{from}")];
            println!("IDLE wake-up after {kind} ({from}): {l} ms");
            let max = l["max"]
                .as_f64()
                .unwrap_or_else(|| panic!("no {kind} latency measured: {report}"));
            assert!(max < 1000.0, "IDLE wake-up after {kind} took {max} ms");
        }
    }
}

/// COMPRESS=DEFLATE: raw socket with zlib (wbits -15): commands, large
/// literals both ways, IDLE wake-ups and pipelining over deflate.
#[test]
fn compress_deflate() {
    conformance("compress.py", 15);
}

/// CONDSTORE/QRESYNC: reselect after another session's expunges returns
/// exactly the right VANISHED (EARLIER) set and the changed flags; UID
/// FETCH (CHANGEDSINCE VANISHED); live VANISHED; MODSEQ everywhere.
#[test]
fn condstore_and_qresync() {
    conformance("condstore.py", 40);
}

/// Several sessions see each other's EXISTS, FETCH FLAGS, FLAGS and
/// EXPUNGE at command boundaries, never an EXPUNGE during FETCH, STORE or
/// SEARCH; users are isolated; a mailbox deleted under a session.
#[test]
fn sessions_see_each_others_changes() {
    conformance("multi_session.py", 30);
}

/// What IMAP4rev2 took into its base from IMAP4rev1 extensions: BINARY
/// (decoded parts, literal8 both ways, BINARY.SIZE, partials,
/// UNKNOWN-CTE, \Seen), SEARCHRES (SAVE, `$` in every command that takes a
/// set, reset on SELECT and on a failed SEARCH) and MULTIAPPEND (all or
/// none); imaplib reads a literal8 answer.
#[test]
fn binary_searchres_multiappend() {
    conformance("rev2.py", 45);
}

/// APPENDLIMIT on a slot with a small message size limit: advertised, met
/// exactly, and a literal over it refused with NO [TOOBIG] before it is
/// sent; oversized LITERAL+ and pre-login literals.
#[test]
fn appendlimit_toobig_before_the_literal() {
    const LIMIT: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), USERS);
    slot.edit_config(|text| format!("{text}\n[limits]\nmessage_size_max = {LIMIT}\n"));
    slot.start();
    run_script(&mut slot, "appendlimit.py", &[&LIMIT.to_string()], 15);
    slot.stop();
}

/// Bad input: malformed commands (tagged BAD with text), wrong state,
/// out-of-range sequence numbers, invalid modified UTF-7, over-long lines,
/// garbage, broken literals, abrupt disconnects, deep nesting: never a hang
/// or a crash, and the slot serves a new connection afterwards.
#[test]
fn bad_input_never_hangs_or_crashes() {
    conformance("bad_input.py", 150);
}

/// Across a restart (SIGTERM, start again): UIDVALIDITY, UIDs, flags,
/// bodies, UIDNEXT, subscriptions and special use stay, HIGHESTMODSEQ does
/// not go back, QRESYNC from before the restart is exact, \Recent is not
/// handed out twice.
#[test]
fn imap_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = slot(dir.path());
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    run_script(&mut slot, "persist.py", &["before", state], 4);
    // Sessions open at shutdown, idle or between commands, are told
    // `* BYE` (RFC 9051 7.1.5) before the connection closes.
    let mut open = [raw_session(&slot, true), raw_session(&slot, false)];
    slot.stop();
    for (i, conn) in open.iter_mut().enumerate() {
        let rest = read_to_close(conn);
        assert!(
            rest.lines().any(|l| l.starts_with("* BYE ")),
            "session {i} got no * BYE at shutdown: {rest:?}"
        );
    }
    slot.start();
    run_script(&mut slot, "persist.py", &["after", state], 10);
    slot.stop();
}

type RawConn = std::io::BufReader<std::net::TcpStream>;

/// A raw connection (std's TcpStream, no IMAP library) logged in as alice
/// with INBOX selected, idling if `idle`.
fn raw_session(slot: &TestSlot, idle: bool) -> RawConn {
    let stream = std::net::TcpStream::connect(slot.imap).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut conn = std::io::BufReader::new(stream);
    expect_line(&mut conn, "* OK");
    send_line(&mut conn, "a LOGIN alice pw-alice");
    expect_line(&mut conn, "a OK");
    send_line(&mut conn, "b SELECT INBOX");
    expect_line(&mut conn, "b OK");
    if idle {
        send_line(&mut conn, "c IDLE");
        expect_line(&mut conn, "+");
    }
    conn
}

fn send_line(conn: &mut RawConn, line: &str) {
    use std::io::Write;
    conn.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .unwrap();
}

/// Read lines until one starts with `prefix`.
fn expect_line(conn: &mut RawConn, prefix: &str) {
    use std::io::BufRead;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed waiting for {prefix:?}");
        if line.starts_with(prefix) {
            return;
        }
    }
}

/// Everything the server sends until it closes the connection.
fn read_to_close(conn: &mut RawConn) -> String {
    use std::io::Read;
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    String::from_utf8_lossy(&rest).into_owned()
}
