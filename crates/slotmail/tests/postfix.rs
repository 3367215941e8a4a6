//! Postfix (the Debian package) delivers to a slot through its `lmtp`
//! transport: a private Postfix instance, configured and queued entirely in
//! the test's temporary directory, accepts mail by SMTP on a loopback port and
//! relays example.com to the slot's LMTP listener.
//!
//! Needs the postfix package (scripts/test.sh installs it) and root: Postfix's
//! master runs as root and its daemons as user `postfix`.

mod common;

use common::*;
use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";
const SENDER: &str = "sender@example.org";

/// Python: submit messages by SMTP, several in one session. argv[1] the port,
/// argv[2] a JSON list of {"file", "to"}; prints the refused recipients per
/// message as JSON.
const SUBMIT: &str = r#"
import json, smtplib, sys
port, jobs = int(sys.argv[1]), json.loads(sys.argv[2])
out = []
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.slotmail.test", timeout=20) as s:
    for job in jobs:
        with open(job["file"], "rb") as f:
            msg = f.read()
        refused = s.sendmail("sender@example.org", job["to"], msg, mail_options=["BODY=8BITMIME"])
        out.append({k: [v[0], v[1].decode()] for k, v in refused.items()})
print(json.dumps(out))
"#;

/// Python: fetch every message of some mailboxes over IMAP into files.
/// argv[1] the port, argv[2] the output directory, then user:password:mailbox;
/// prints {"user/mailbox": [file, ...]} as JSON.
const IMAP_FETCH: &str = r#"
import imaplib, json, os, sys
port, outdir = int(sys.argv[1]), sys.argv[2]
out = {}
for spec in sys.argv[3:]:
    user, password, mailbox = spec.split(":", 2)
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    imap.login(user, password)
    typ, data = imap.select(mailbox)
    assert typ == "OK", (spec, typ, data)
    files = []
    if int(data[0]):
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", (spec, typ, data)
        for part in data:
            if isinstance(part, tuple):
                path = os.path.join(outdir, "%s-%s-%d.eml" % (user, mailbox, len(files)))
                with open(path, "wb") as f:
                    f.write(part[1])
                files.append(path)
    out[user + "/" + mailbox] = files
    imap.logout()
print(json.dumps(out))
"#;

#[test]
fn postfix_delivers_through_lmtp_to_the_right_mailboxes_byte_identical() {
    let started = Instant::now();
    require_root_and_postfix();
    let dir = tempfile::tempdir().unwrap();
    // Postfix's daemons (user postfix) must reach the queue inside it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let slot_dir = dir.path().join("slot");
    std::fs::create_dir(&slot_dir).unwrap();
    let mut slot = TestSlot::create(
        &slot_dir,
        &[("alice", "pw-alice", false), ("bob", "pw-bob", false)],
    );
    slot.start_lmtp_only();

    let mut postfix = PrivatePostfix::create(&dir.path().join("postfix"), slot.lmtp);
    postfix.start(&slot);

    // Two messages in one SMTP session: a small one to four recipients (one
    // unknown to the slot, one with a +Folder) and a multi-MB one to two.
    let small = small_message();
    let big = big_message(3 << 20);
    let small_file = dir.path().join("small.eml");
    let big_file = dir.path().join("big.eml");
    std::fs::write(&small_file, &small).unwrap();
    std::fs::write(&big_file, &big).unwrap();
    let jobs = serde_json::json!([
        {"file": small_file, "to": ["alice@example.com", "nobody@example.com", "bob@example.com", "alice+Archive@example.com"]},
        {"file": big_file, "to": ["bob@example.com", "alice@example.com"]},
    ]);
    let out = run_bounded(
        Command::new("python3")
            .arg("-c")
            .arg(SUBMIT)
            .arg(postfix.smtpd.port().to_string())
            .arg(jobs.to_string()),
        Duration::from_secs(30),
        "SMTP submission to Postfix",
        &|| diagnostics(&postfix, &slot),
    );
    let refused: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Postfix relays example.com without knowing its users: it accepts every
    // recipient at RCPT time and bounces the unknown one after LMTP refuses it.
    assert_eq!(
        refused,
        serde_json::json!([{}, {}]),
        "Postfix refused recipients at SMTP time\n{}",
        diagnostics(&postfix, &slot)
    );

    // Six deliveries (4 + 2), then the queue is empty (the bounce for the
    // unknown recipient goes to the discard transport).
    postfix.wait_until_delivered(6, Duration::from_secs(30), &slot);
    postfix.stop();
    let log = postfix.log();
    check_postfix_log(&log, slot.lmtp, &|| diagnostics(&postfix, &slot));

    let expected: [(&str, &str, &str, Vec<&[u8]>); 3] = [
        (
            "alice",
            "pw-alice",
            "INBOX",
            vec![small.as_slice(), big.as_slice()],
        ),
        (
            "bob",
            "pw-bob",
            "INBOX",
            vec![small.as_slice(), big.as_slice()],
        ),
        ("alice", "pw-alice", "Archive", vec![small.as_slice()]),
    ];
    if slot.serves_imap() {
        let fetched = dir.path().join("fetched");
        std::fs::create_dir(&fetched).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(IMAP_FETCH)
            .arg(slot.imap.port().to_string())
            .arg(&fetched);
        for (user, password, mailbox, _) in &expected {
            cmd.arg(format!("{user}:{password}:{mailbox}"));
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(30), "IMAP fetch", &|| {
            diagnostics(&postfix, &slot)
        });
        let files: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (user, _, mailbox, originals) in &expected {
            let label = format!("{user}/{mailbox} over IMAP");
            let stored: Vec<Vec<u8>> = files[format!("{user}/{mailbox}")]
                .as_array()
                .unwrap_or_else(|| panic!("{label}: no answer: {files}"))
                .iter()
                .map(|f| std::fs::read(f.as_str().unwrap()).unwrap())
                .collect();
            check_copies(&label, &stored, originals, &|| diagnostics(&postfix, &slot));
        }
    } else {
        eprintln!("this slot serves no IMAP yet: checking the copies in the store only");
    }

    // Whatever IMAP said, the store holds the same bytes.
    slot.stop();
    let store = slotmail_store::Slot::open(&slot.data, slotmail_store::Options::default()).unwrap();
    for (user, _, mailbox, originals) in &expected {
        let label = format!("{user}/{mailbox} in the store");
        let u = store.user(user).unwrap();
        let mb = u
            .mailbox(mailbox)
            .unwrap_or_else(|e| panic!("{label}: {e}\n{}", diagnostics(&postfix, &slot)));
        let (_, metas) = u.snapshot(mb.id).unwrap();
        let stored: Vec<Vec<u8>> = metas
            .iter()
            .map(|m| u.read_message(&m.guid, m.size).unwrap())
            .collect();
        check_copies(&label, &stored, originals, &|| diagnostics(&postfix, &slot));
    }
    eprintln!("postfix end-to-end test took {:?}", started.elapsed());
}

/// Fails (never skips) when the test cannot run here.
fn require_root_and_postfix() {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "tests/postfix.rs must run as root (uid {uid}): it starts a private Postfix, whose master runs as root \
         and its daemons as user postfix; CI and the development machines run as root"
    );
    assert!(
        Path::new(POSTFIX).exists() && Path::new(POSTQUEUE).exists(),
        "Postfix is not installed ({POSTFIX} missing): scripts/test.sh installs the Debian package \
         (apt-get install postfix, debconf main_mailer_type \"No configuration\")"
    );
}

/// A Postfix instance of our own: config, queue, data and log in `dir`, an
/// smtpd on a free loopback port, example.com relayed to the slot by LMTP.
struct PrivatePostfix {
    config: PathBuf,
    queue: PathBuf,
    maillog: PathBuf,
    smtpd: SocketAddr,
    running: bool,
}

impl PrivatePostfix {
    fn create(dir: &Path, lmtp: SocketAddr) -> PrivatePostfix {
        let config = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        let maillog = dir.join("maillog");
        for d in [dir, &config, &queue] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Postfix's daemons run as user postfix and chdir into the queue.
        for a in dir.ancestors() {
            let mode = std::fs::metadata(a).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "user postfix cannot reach {}: {} (mode {mode:o}) is not searchable by others; \
                 point TMPDIR at a directory that is",
                dir.display(),
                a.display()
            );
        }
        let smtpd: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (c, q, d, l, p) = (
            config.display(),
            queue.display(),
            data.display(),
            maillog.display(),
            dir.display(),
        );
        let main_cf = format!(
            "# A private instance for tests/postfix.rs.
compatibility_level = 3.6
config_directory = {c}
queue_directory = {q}
data_directory = {d}
meta_directory = /etc/postfix
maillog_file = {l}
maillog_file_prefixes = {p}
myhostname = postfix.slotmail.test
mydomain = slotmail.test
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains = example.com
transport_maps = inline:{{example.com=lmtp:inet:{lmtp}}}
# Everything else (here: the bounce to the sender) goes nowhere.
default_transport = discard:not a test domain
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
lmtp_destination_recipient_limit = 2
message_size_limit = 50000000
biff = no
"
        );
        let master_cf = format!(
            "# No chroot anywhere; an smtpd on {smtpd} instead of port 25.
{smtpd}  inet  n  -  n  -  -  smtpd
pickup     unix  n  -  n  60 1  pickup
cleanup    unix  n  -  n  -  0  cleanup
qmgr       unix  n  -  n  300 1 qmgr
rewrite    unix  -  -  n  -  -  trivial-rewrite
bounce     unix  -  -  n  -  0  bounce
defer      unix  -  -  n  -  0  bounce
trace      unix  -  -  n  -  0  bounce
verify     unix  -  -  n  -  1  verify
flush      unix  n  -  n  1000? 0 flush
proxymap   unix  -  -  n  -  -  proxymap
proxywrite unix  -  -  n  -  1  proxymap
smtp       unix  -  -  n  -  -  smtp
relay      unix  -  -  n  -  -  smtp
showq      unix  n  -  n  -  -  showq
error      unix  -  -  n  -  -  error
retry      unix  -  -  n  -  -  error
discard    unix  -  -  n  -  -  discard
lmtp       unix  -  -  n  -  -  lmtp
anvil      unix  -  -  n  -  1  anvil
scache     unix  -  -  n  -  1  scache
postlog    unix-dgram n - n - 1 postlogd
"
        );
        std::fs::write(config.join("main.cf"), main_cf).unwrap();
        std::fs::write(config.join("master.cf"), master_cf).unwrap();
        PrivatePostfix {
            config,
            queue,
            maillog,
            smtpd,
            running: false,
        }
    }

    fn postfix(&self, action: &str) -> Command {
        let mut cmd = Command::new(POSTFIX);
        cmd.arg("-c").arg(&self.config).arg(action);
        cmd
    }

    fn start(&mut self, slot: &TestSlot) {
        // From here on, Drop stops it, even if `postfix start` fails halfway.
        self.running = true;
        run_bounded(
            &mut self.postfix("start"),
            Duration::from_secs(20),
            "postfix start",
            &|| diagnostics(self, slot),
        );
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(&self.smtpd, Duration::from_millis(200)).is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Postfix's smtpd does not listen on {} 10 s after start\n{}",
                self.smtpd,
                diagnostics(self, slot)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if self.running {
            let out = self.postfix("stop").output().expect("run postfix stop");
            assert!(
                out.status.success(),
                "postfix stop failed: {out:?}\n{}",
                self.log()
            );
            self.running = false;
        }
    }

    /// `postqueue -j`: one JSON object per queued message; empty when none.
    fn queue(&self) -> String {
        let mut cmd = Command::new(POSTQUEUE);
        cmd.arg("-c").arg(&self.config).arg("-j");
        let out = run_bounded(&mut cmd, Duration::from_secs(10), "postqueue -j", &|| {
            self.log()
        });
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until Postfix logged `deliveries` LMTP delivery results and its
    /// queue is empty; fail at once on a deferral (the retry would come
    /// minutes later).
    fn wait_until_delivered(&self, deliveries: usize, timeout: Duration, slot: &TestSlot) {
        let start = Instant::now();
        loop {
            let log = self.log();
            for bad in ["status=deferred", "fatal:", "panic:"] {
                assert!(
                    !log.contains(bad),
                    "Postfix logged {bad}\n{}",
                    diagnostics(self, slot)
                );
            }
            let done = log
                .lines()
                .filter(|l| l.contains("postfix/lmtp[") && l.contains(" status="))
                .count();
            let queue = self.queue();
            if done >= deliveries && queue.trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "after {timeout:?} Postfix logged {done} of {deliveries} LMTP deliveries; its queue:\n{queue}\n{}",
                diagnostics(self, slot)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// The master's PID while it runs (its pid file, checked against /proc).
    fn master_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.queue.join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        (comm.trim() == "master" && !zombie).then_some(pid)
    }
}

impl Drop for PrivatePostfix {
    /// Stop this instance (only this one: its own config directory, then its
    /// own master's PID), also when the test panicked.
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .postfix("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.master_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn diagnostics(postfix: &PrivatePostfix, slot: &TestSlot) -> String {
    format!(
        "--- Postfix maillog ({}) ---\n{}\n--- slot log ---\n{}",
        postfix.maillog.display(),
        postfix.log(),
        slot.log()
    )
}

/// What Postfix logged: every known recipient delivered by the slot's LMTP
/// listener, the unknown one bounced with the slot's 550 5.1.1, and a
/// non-delivery notification generated for it.
fn check_postfix_log(log: &str, lmtp: SocketAddr, diag: &dyn Fn() -> String) {
    let results = |rcpt: &str| -> Vec<&str> {
        let to = format!(" to=<{rcpt}>,");
        log.lines()
            .filter(|l| l.contains("postfix/lmtp[") && l.contains(&to))
            .collect()
    };
    for (rcpt, copies) in [
        ("alice@example.com", 2),
        ("bob@example.com", 2),
        ("alice+Archive@example.com", 1),
    ] {
        let lines = results(rcpt);
        assert_eq!(
            lines.len(),
            copies,
            "{rcpt}: expected {copies} LMTP deliveries\n{}",
            diag()
        );
        for line in lines {
            assert!(
                line.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", lmtp.port()))
                    && line.contains("status=sent (250 2.0.0"),
                "{rcpt}: not delivered by the slot: {line}\n{}",
                diag()
            );
        }
    }
    let nobody = results("nobody@example.com");
    assert_eq!(
        nobody.len(),
        1,
        "nobody@example.com: expected one LMTP result\n{}",
        diag()
    );
    assert!(
        nobody[0].contains("status=bounced") && nobody[0].contains("said: 550 5.1.1"),
        "nobody@example.com was not bounced with the slot's 550 5.1.1: {}\n{}",
        nobody[0],
        diag()
    );
    assert!(
        log.contains("sender non-delivery notification"),
        "Postfix generated no bounce message for nobody@example.com\n{}",
        diag()
    );
    for bad in ["fatal:", "panic:", "error:"] {
        assert!(!log.contains(bad), "Postfix logged {bad}\n{}", diag());
    }
}

/// Each mailbox holds exactly one copy of each expected message, and each
/// copy is the original bytes (headers and body) after trace headers that
/// Postfix and the slot prepended.
fn check_copies(label: &str, stored: &[Vec<u8>], originals: &[&[u8]], diag: &dyn Fn() -> String) {
    let mut seen = vec![0; originals.len()];
    for copy in stored {
        let Some(i) = originals.iter().position(|o| copy.ends_with(o)) else {
            panic!(
                "{label}: a stored message ({} bytes) does not end with any original message; it starts:\n{}\n{}",
                copy.len(),
                String::from_utf8_lossy(&copy[..copy.len().min(2000)]),
                diag()
            );
        };
        seen[i] += 1;
        check_prepended(label, &copy[..copy.len() - originals[i].len()], diag);
    }
    assert!(
        stored.len() == originals.len() && seen.iter().all(|&n| n == 1),
        "{label}: {} stored messages, copies per original {seen:?}\n{}",
        stored.len(),
        diag()
    );
}

/// The prepended part: whole header fields, exactly Return-Path (the envelope
/// sender), the slot's Received and Postfix's Received, in that order.
fn check_prepended(label: &str, prefix: &[u8], diag: &dyn Fn() -> String) {
    let text = std::str::from_utf8(prefix)
        .unwrap_or_else(|_| panic!("{label}: prepended headers not UTF-8\n{}", diag()));
    assert!(
        text.ends_with("\r\n"),
        "{label}: prepended part is not whole lines: {text:?}\n{}",
        diag()
    );
    let mut fields: Vec<String> = Vec::new();
    for line in text[..text.len() - 2].split("\r\n") {
        if line.starts_with([' ', '\t']) && !fields.is_empty() {
            let last = fields.last_mut().unwrap();
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    let [return_path, slot_received, postfix_received] = &fields[..] else {
        panic!(
            "{label}: expected Return-Path and two Received: headers prepended, got:\n{text}\n{}",
            diag()
        );
    };
    assert_eq!(
        return_path,
        &format!("Return-Path: <{SENDER}>"),
        "{label}: prepended:\n{text}\n{}",
        diag()
    );
    // The slot's own trace header, naming Postfix (its LHLO) as the client...
    assert!(
        slot_received.starts_with("Received: from postfix.slotmail.test ")
            && slot_received.contains("by slot.test (slotmail) with LMTP"),
        "{label}: not the slot's Received: header for Postfix's LMTP client:\n{text}\n{}",
        diag()
    );
    // ... and right before the original header, Postfix's smtpd's.
    assert!(
        postfix_received.starts_with("Received: from client.slotmail.test ")
            && postfix_received.contains("by postfix.slotmail.test (Postfix) with ESMTP"),
        "{label}: not Postfix's Received: header for our SMTP client:\n{text}\n{}",
        diag()
    );
}

/// Headers and body that must come through unchanged: 8-bit text, a folded
/// header, lines that SMTP and LMTP dot-stuff (a lone "." among them),
/// trailing white space.
fn small_message() -> Vec<u8> {
    [
        "From: Sender <sender@example.org>\r\n",
        "To: Alice <alice@example.com>, Bob <bob@example.com>\r\n",
        "Cc: nobody@example.com, alice+Archive@example.com\r\n",
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= through Postfix\r\n",
        "Date: Sun, 29 Nov 2026 05:00:00 +0000\r\n",
        "Message-ID: <postfix-e2e-small@example.org>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
        "X-Folded: first part\r\n",
        "\tsecond part, folded with a tab\r\n",
        "\r\n",
        "Grüße aus Köln\r\n",
        ".leading dot\r\n",
        "..two dots\r\n",
        ".\r\n",
        "From the start of a line\r\n",
        "trailing spaces   \r\n",
        "\ttab-indented\r\n",
        "\r\n",
        "last line\r\n",
    ]
    .concat()
    .into_bytes()
}

/// A multipart message of about `size` bytes: a short 8-bit text part and a
/// base64 attachment of pseudo-random data.
fn big_message(size: usize) -> Vec<u8> {
    let mut m = [
        "From: Sender <sender@example.org>\r\n",
        "To: Bob <bob@example.com>, Alice <alice@example.com>\r\n",
        "Subject: a few megabytes through Postfix\r\n",
        "Date: Sun, 29 Nov 2026 05:01:00 +0000\r\n",
        "Message-ID: <postfix-e2e-big@example.org>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"=_b\"\r\n",
        "\r\n",
        "--=_b\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
        "\r\n",
        "Anbei die Daten. Grüße\r\n",
        ".\r\n",
        "--=_b\r\n",
        "Content-Type: application/octet-stream; name=\"data.bin\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
    ]
    .concat()
    .into_bytes();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while m.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(ALPHABET[(x % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--=_b--\r\n");
    m
}

/// Run a command with a deadline; panics with its output and `diag()` when
/// it fails or runs past the deadline (it is killed then). Output goes to
/// files, not pipes, so a daemon that inherits them cannot hold us up.
fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    what: &str,
    diag: &dyn Fn() -> String,
) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status, false);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |f: &mut std::fs::File| {
        let mut buf = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut buf).unwrap();
        buf
    };
    let output = Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    };
    assert!(
        !timed_out && status.success(),
        "{what} {} after {:?}: {status}\nstdout: {}\nstderr: {}\n{}",
        if timed_out { "timed out" } else { "failed" },
        start.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        diag()
    );
    output
}
