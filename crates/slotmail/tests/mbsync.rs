//! isync's `mbsync` syncs a local Maildir with a real slot over IMAP, both
//! ways, and both sides end up holding the same messages, byte for byte
//! with the same flags and folders. "Byte for byte" allows exactly the two
//! changes mbsync itself makes to every message it copies: LF line ends in
//! the Maildir versus CRLF on the IMAP side, and one `X-TUID:` tracking
//! header line it inserts at the end of the header. The IMAP and Maildir checks and changes between the syncs
//! are `tests/python/mbsync_steps.py`.
//!
//! Needs `mbsync` (scripts/test.sh installs isync).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Most time one mbsync run may take.
const MBSYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Most time one Python step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The installed isync version, from `mbsync --version` ("isync 1.4.4").
fn isync_version() -> (u32, u32, u32) {
    let (out, in_time) = run_bounded(
        Command::new("mbsync").arg("--version"),
        Duration::from_secs(10),
    );
    assert!(
        in_time && out.status.success(),
        "mbsync --version failed (is isync installed? scripts/test.sh installs it): {out:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// An mbsync configuration for `slot` and the Maildir under `maildir`, in
/// the keywords the installed isync understands: `TLSType` since 1.5
/// (`SSLType` before), `Far`/`Near` since 1.4 (`Master`/`Slave` before).
fn mbsync_config(version: (u32, u32, u32), slot: &TestSlot, maildir: &Path) -> String {
    let tls = if version >= (1, 5, 0) {
        "TLSType None"
    } else {
        "SSLType None"
    };
    let (far, near) = if version >= (1, 4, 0) {
        ("Far", "Near")
    } else {
        ("Master", "Slave")
    };
    let root = maildir.display();
    format!(
        "IMAPAccount slot\n\
         Host 127.0.0.1\n\
         Port {port}\n\
         User alice\n\
         Pass pw-alice\n\
         {tls}\n\
         AuthMechs LOGIN\n\
         Timeout 20\n\
         \n\
         IMAPStore slot-remote\n\
         Account slot\n\
         \n\
         MaildirStore local\n\
         Path {root}/\n\
         Inbox {root}/INBOX\n\
         SubFolders Verbatim\n\
         \n\
         Channel slot\n\
         {far} :slot-remote:\n\
         {near} :local:\n\
         Patterns *\n\
         Create Both\n\
         Expunge Both\n\
         SyncState *\n",
        port = slot.imap.port(),
    )
}

/// Run mbsync once; it must exit 0 in time.
fn mbsync(config: &Path, home: &Path, slot: &TestSlot, round: &str) -> Duration {
    let started = Instant::now();
    let (out, in_time) = run_bounded(
        Command::new("mbsync")
            .arg("-c")
            .arg(config)
            .arg("-a")
            .env("HOME", home),
        MBSYNC_TIMEOUT,
    );
    let elapsed = started.elapsed();
    let context = || {
        format!(
            "--- mbsync stdout\n{}\n--- mbsync stderr\n{}\n--- slot log\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&slot.log(), 8000)
        )
    };
    assert!(
        in_time,
        "mbsync ({round}) did not finish within {MBSYNC_TIMEOUT:?}\n{}",
        context()
    );
    assert!(
        out.status.success(),
        "mbsync ({round}) failed: {}\n{}",
        out.status,
        context()
    );
    eprintln!("mbsync ({round}): {:.2} s", elapsed.as_secs_f64());
    elapsed
}

/// One step of `mbsync_steps.py`; it must pass at least `min_checks`.
fn step(slot: &TestSlot, name: &str, maildir: &Path, state: &Path, min_checks: u64) {
    let report = python_report(
        slot,
        "mbsync_steps.py",
        &[
            &slot.imap.port().to_string(),
            &slot.lmtp.port().to_string(),
            name,
            maildir.to_str().unwrap(),
            state.to_str().unwrap(),
        ],
        STEP_TIMEOUT,
    );
    let checks = report["checks"].as_u64().unwrap_or(0);
    assert!(
        checks >= min_checks,
        "step {name} ran {checks} checks, expected at least {min_checks}: {report}"
    );
}

#[test]
fn mbsync_two_way_sync_leaves_both_sides_identical() {
    let started = Instant::now();
    let version = isync_version();
    eprintln!("isync {}.{}.{}", version.0, version.1, version.2);
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), &[("alice", "pw-alice", false)]);
    slot.start();
    let maildir = dir.path().join("Mail");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let state = dir.path().join("model.json");
    let config = dir.path().join("mbsyncrc");
    std::fs::write(&config, mbsync_config(version, &slot, &maildir)).unwrap();

    // Local messages (8-bit, multipart, 1 MB attachment, flags) and
    // subfolders go up; the server must hold them byte-identical.
    step(&slot, "seed", &maildir, &state, 1);
    mbsync(&config, &home, &slot, "1: Maildir to server");
    // Check the server, then change it: APPEND, LMTP, flags, deletions.
    step(&slot, "server1", &maildir, &state, 10);
    mbsync(&config, &home, &slot, "2: server to Maildir");
    // Check the Maildir, then change it: flags, deletions, new message and folder.
    step(&slot, "local2", &maildir, &state, 2);
    mbsync(&config, &home, &slot, "3: Maildir to server");
    step(&slot, "server3", &maildir, &state, 2);
    // A round trip with nothing to do changes nothing on either side.
    mbsync(&config, &home, &slot, "4: no changes");
    step(&slot, "final", &maildir, &state, 4);
    assert!(
        slot.is_running(),
        "the slot died\n{}",
        tail(&slot.log(), 8000)
    );
    slot.stop();
    eprintln!(
        "mbsync round trip: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
