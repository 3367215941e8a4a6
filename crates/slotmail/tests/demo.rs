//! `slotmail demo` as a newcomer meets it: start the whole cluster (three
//! machines on loopback addresses, two slots each, a proxy), read the
//! sample mail over IMAP through the proxy with the credentials from the
//! 0600 file, deliver over LMTP, see `ctl status --json` with three stores in
//! sync and `slotmail check --all` clean, Ctrl-C (every process gone within
//! 5 s), start again with the mail intact.

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

/// The first machine's address: away from the addresses other tests use,
/// and from a demo someone may run by hand (127.0.0.21).
const MACHINE_ADDRESS: &str = "127.0.0.91";

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
            "--machine-address",
            MACHINE_ADDRESS,
        ])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The demo prints its banner after the sample mail is delivered.
    let start = Instant::now();
    while !std::fs::read_to_string(dir.join("demo-run.log"))
        .unwrap_or_default()
        .contains("Ctrl-C")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "demo did not finish starting:\n{}",
            std::fs::read_to_string(dir.join("demo-run.log")).unwrap_or_default()
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

    // The operator's view: three stores, each with its replica in sync.
    let cluster = dir.path().join("demo/cluster.toml");
    let status = wait_in_sync(&cluster);
    let stores = status["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 3, "{status}");
    for st in stores {
        assert_eq!(st["replicas"].as_array().unwrap().len(), 1, "{st}");
        assert_eq!(st["healthy"], true, "{st}");
    }
    // And the check: what every master shows is what its replica shows.
    let check = Command::new(env!("CARGO_BIN_EXE_slotmail"))
        .args(["check", "--all", "--full", "--json", "--cluster"])
        .arg(&cluster)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap_or_else(|e| {
        panic!(
            "check output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        )
    });
    assert_eq!(check.status.code(), Some(0), "check not clean: {report}");

    let took = interrupt_and_wait(&mut demo);
    assert!(took < Duration::from_secs(5), "demo took {took:?} to stop");
    // Nothing left running: no listener, no process of this demo.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", imap)).is_err(),
        "IMAP still listening after stop"
    );
    let left = processes_mentioning(&dir.path().join("demo"));
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");

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
    let left = processes_mentioning(&dir.path().join("demo"));
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");
}

/// `ctl status --json` once every store reports a lag and is healthy.
fn wait_in_sync(cluster: &std::path::Path) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_slotmail"))
            .args(["ctl", "status", "--json", "--cluster"])
            .arg(cluster)
            .output()
            .unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let in_sync = doc["stores"].as_array().is_some_and(|ss| {
            ss.iter()
                .all(|s| s["healthy"] == true && s["lag_ms"].as_u64().is_some_and(|l| l < 1000))
        });
        if out.status.success() && in_sync {
            return doc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stores never in sync: {doc}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// PIDs (with command lines) of processes whose command line names `dir`.
fn processes_mentioning(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                out.push(format!("{}: {cmd}", name.to_string_lossy()));
            }
        }
    }
    out
}
