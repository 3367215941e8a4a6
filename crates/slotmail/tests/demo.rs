//! `slotmail demo` as a newcomer meets it: start, read the sample mail over
//! IMAP with the credentials from the 0600 file, deliver over LMTP, Ctrl-C,
//! start again with the mail intact.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READ_MAIL: &str = r##"
import imaplib, json, smtplib, sys
imap_port, lmtp_port, creds, deliver = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
users = dict(l.split() for l in open(creds) if l.strip() and not l.startswith("#"))
if deliver:
    lmtp = smtplib.LMTP("127.0.0.1", lmtp_port)
    lmtp.sendmail("someone@example.org", ["bob@demo.slotmail"], b"Subject: hi bob\r\n\r\nhello\r\n")
    lmtp.quit()
out = {}
for user in ["alice", "bob"]:
    i = imaplib.IMAP4("127.0.0.1", imap_port)
    i.login(user, users[user])
    typ, data = i.select("INBOX")
    typ, subj = i.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out[user] = {"exists": int(data[0]), "subjects": [p[1].decode("utf-8", "replace").strip() for p in subj if isinstance(p, tuple)]}
    i.logout()
print(json.dumps(out))
"##;

fn start_demo(dir: &std::path::Path, imap: u16, lmtp: u16) -> Child {
    let log = std::fs::File::create(dir.join("demo-run.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_slotmail"))
        .args(["demo", "--dir"])
        .arg(dir.join("demo"))
        .args([
            "--imap-port",
            &imap.to_string(),
            "--lmtp-port",
            &lmtp.to_string(),
        ])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(([127, 0, 0, 1], imap).into(), Duration::from_secs(30));
    // The demo prints its banner after the sample mail is delivered.
    let start = Instant::now();
    while !std::fs::read_to_string(dir.join("demo-run.log"))
        .unwrap_or_default()
        .contains("Ctrl-C")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "demo did not finish starting"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn interrupt_and_wait(child: &mut Child) -> Duration {
    let start = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exited with {status}");
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "demo ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_starts_serves_sample_mail_stops_on_sigint_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (imap, lmtp) = (free_port(), free_port());
    let mut demo = start_demo(dir.path(), imap, lmtp);
    let creds = dir.path().join("demo/credentials.txt");
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials file must be private");
    let out = python(
        READ_MAIL,
        &[
            &imap.to_string(),
            &lmtp.to_string(),
            creds.to_str().unwrap(),
            "1",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alice"]["exists"], 3, "{v}");
    assert!(
        v["alice"]["subjects"][0]
            .as_str()
            .unwrap()
            .contains("Welcome to slotmail"),
        "{v}"
    );
    assert_eq!(v["bob"]["exists"], 4, "{v}");
    let took = interrupt_and_wait(&mut demo);
    assert!(took < Duration::from_secs(5), "demo took {took:?} to stop");
    // Nothing left listening.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", imap)).is_err(),
        "IMAP still listening after stop"
    );

    // Second run: same data, no second copy of the samples.
    let mut demo = start_demo(dir.path(), imap, lmtp);
    let out = python(
        READ_MAIL,
        &[
            &imap.to_string(),
            &lmtp.to_string(),
            creds.to_str().unwrap(),
            "0",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alice"]["exists"], 3, "{v}");
    assert_eq!(v["bob"]["exists"], 4, "{v}");
    assert!(
        v["bob"]["subjects"][3].as_str().unwrap().contains("hi bob"),
        "{v}"
    );
    interrupt_and_wait(&mut demo);
}
