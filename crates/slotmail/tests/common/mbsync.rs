//! Running isync's `mbsync` against an IMAP server on 127.0.0.1 (a slot or
//! the proxy), and the Python steps that check and change both sides
//! between its runs (`tests/python/mbsync_steps.py`, user alice/pw-alice).

use super::{python_report_with, run_bounded, tail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Most time one mbsync run may take.
pub const MBSYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Most time one Python step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The installed isync version, from `mbsync --version` ("isync 1.4.4").
pub fn isync_version() -> (u32, u32, u32) {
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

/// An mbsync configuration for alice on 127.0.0.1:`port` and the Maildir
/// under `maildir`, in the keywords the installed isync understands:
/// `TLSType` since 1.5 (`SSLType` before), `Far`/`Near` since 1.4
/// (`Master`/`Slave` before).
pub fn mbsync_config(version: (u32, u32, u32), port: u16, maildir: &Path) -> String {
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
    )
}

/// Run mbsync once; it must exit 0 in time. `log` gives the server's log.
pub fn mbsync(config: &Path, home: &Path, log: &dyn Fn() -> String, round: &str) -> Duration {
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
            "--- mbsync stdout\n{}\n--- mbsync stderr\n{}\n--- server log\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&log(), 8000)
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

/// One step of `mbsync_steps.py` against IMAP `imap` and LMTP `lmtp` on
/// 127.0.0.1; it must pass at least `min_checks`.
#[allow(clippy::too_many_arguments)]
pub fn step(
    imap: u16,
    lmtp: u16,
    log: &dyn Fn() -> String,
    name: &str,
    maildir: &Path,
    state: &Path,
    min_checks: u64,
) {
    let report = python_report_with(
        log,
        "server",
        "mbsync_steps.py",
        &[
            &imap.to_string(),
            &lmtp.to_string(),
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

/// The whole round trip of `tests/mbsync.rs` against 127.0.0.1:`imap`
/// (LMTP on `lmtp`), in `dir`: seed a Maildir, sync up, change the server,
/// sync down, change the Maildir, sync up, sync with nothing to do; both
/// sides must hold the model after every step.
pub fn round_trip(dir: &Path, imap: u16, lmtp: u16, log: &dyn Fn() -> String) {
    let version = isync_version();
    eprintln!("isync {}.{}.{}", version.0, version.1, version.2);
    let maildir = dir.join("Mail");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let state = dir.join("model.json");
    let config = dir.join("mbsyncrc");
    std::fs::write(&config, mbsync_config(version, imap, &maildir)).unwrap();

    // Local messages (8-bit, multipart, 1 MB attachment, flags) and
    // subfolders go up; the server must hold them byte-identical.
    step(imap, lmtp, log, "seed", &maildir, &state, 1);
    mbsync(&config, &home, log, "1: Maildir to server");
    // Check the server, then change it: APPEND, LMTP, flags, deletions.
    step(imap, lmtp, log, "server1", &maildir, &state, 10);
    mbsync(&config, &home, log, "2: server to Maildir");
    // Check the Maildir, then change it: flags, deletions, new message and folder.
    step(imap, lmtp, log, "local2", &maildir, &state, 2);
    mbsync(&config, &home, log, "3: Maildir to server");
    step(imap, lmtp, log, "server3", &maildir, &state, 2);
    // A round trip with nothing to do changes nothing on either side.
    mbsync(&config, &home, log, "4: no changes");
    step(imap, lmtp, log, "final", &maildir, &state, 4);
}
