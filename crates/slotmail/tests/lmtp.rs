//! LMTP delivery into a real slot process, driven by independent clients.

mod common;

use common::*;
use std::time::Duration;

/// Python: deliver one message to several recipients in one LMTP transaction
/// (one of them unknown), then read every delivered copy back over IMAP.
const DELIVER_AND_READ: &str = r#"
import imaplib, json, smtplib, sys
lmtp_port, imap_port = int(sys.argv[1]), int(sys.argv[2])
body = (b"From: Sender <sender@example.org>\r\nTo: alice@example.com\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <e2e-1@example.org>\r\n\r\n"
        b"Line one\r\n.leading dot\r\n..two dots\r\n\r\nlast line without dot\r\n")
lmtp = smtplib.LMTP("127.0.0.1", lmtp_port)
lmtp.ehlo_or_helo_if_needed()
rcpts = ["alice@example.com", "nobody@example.com", "bob@example.com", "alice+Archive@example.com"]
assert lmtp.mail("sender@example.org")[0] == 250
refused, accepted = {}, []
for r in rcpts:
    code, msg = lmtp.rcpt(r)
    if code == 250:
        accepted.append(r)
    else:
        refused[r] = (code, msg)
# smtplib reads only the first reply after DATA; LMTP sends one per accepted
# recipient (RFC 2033 section 4.2), so read the rest ourselves.
data_replies = [lmtp.data(body)]
for _ in accepted[1:]:
    data_replies.append(lmtp.getreply())
lmtp.quit()
out = {"refused": {k: [v[0], v[1].decode()] for k, v in refused.items()}, "data": [[c, m.decode()] for c, m in data_replies], "copies": {}}
for user, folder in [("alice", "INBOX"), ("bob", "INBOX"), ("alice", "Archive")]:
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login(user, "pw-" + user)
    typ, data = imap.select(folder)
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    stored = [part[1] for part in data if isinstance(part, tuple)]
    out["copies"][user + "/" + folder] = [
        {"ends_with_body": s.endswith(body), "return_path": s.startswith(b"Return-Path: <sender@example.org>\r\n"),
         "received": b"\r\nReceived: from " in s[:400] or s.startswith(b"Received: from ")} for s in stored]
    imap.logout()
print(json.dumps(out))
"#;

#[test]
fn smtplib_lmtp_delivers_per_recipient_and_imap_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(
        dir.path(),
        &[("alice", "pw-alice", false), ("bob", "pw-bob", false)],
    );
    slot.start();
    let out = python(
        DELIVER_AND_READ,
        &[&slot.lmtp.port().to_string(), &slot.imap.port().to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}\n{}", slot.log()));
    // Only the unknown recipient is refused, with 550 5.1.1.
    let refused = v["refused"].as_object().unwrap();
    assert_eq!(refused.len(), 1, "{v}");
    assert_eq!(refused["nobody@example.com"][0], 550);
    assert!(
        refused["nobody@example.com"][1]
            .as_str()
            .unwrap()
            .starts_with("5.1.1"),
        "{v}"
    );
    // One 250 per accepted recipient after the data, in RCPT order.
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{v}");
    assert!(data.iter().all(|r| r[0] == 250), "{v}");
    for copy in ["alice/INBOX", "bob/INBOX", "alice/Archive"] {
        let copies = v["copies"][copy].as_array().unwrap();
        assert_eq!(copies.len(), 1, "{copy}: {v}");
        assert_eq!(
            copies[0]["ends_with_body"], true,
            "{copy}: body not byte-identical: {v}"
        );
        assert_eq!(copies[0]["return_path"], true, "{copy}: {v}");
        assert_eq!(copies[0]["received"], true, "{copy}: {v}");
    }
    slot.stop();
}

/// kill -9 the slot while an LMTP client streams deliveries: every message
/// that got 250 is in the store afterwards, byte-identical.
#[test]
fn kill9_during_lmtp_stream_loses_no_acknowledged_message() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("SLOTMAIL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (set SLOTMAIL_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), &[("carol", "pw", false)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut seq = 0u64;
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        slot.start();
        let kill_after = Duration::from_millis(rng.random_range(50..400));
        let addr = slot.lmtp;
        let (tx, rx) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
        let start_seq = seq;
        let sizes: Vec<usize> = (0..10_000).map(|_| rng.random_range(200..60_000)).collect();
        let client = runtime.spawn(async move {
            let config = slotmail_lmtp::ClientConfig::new("crash.test");
            let Ok(mut client) = slotmail_lmtp::Client::connect(addr, config).await else {
                return;
            };
            for (i, size) in sizes.into_iter().enumerate() {
                let n = start_seq + i as u64;
                let body = message(n, size);
                match client
                    .deliver("sender@example.org", &["carol@example.com"], &body)
                    .await
                {
                    Ok(report)
                        if report.recipients.len() == 1 && report.recipients[0].delivered() =>
                    {
                        let _ = tx.send((n, body));
                    }
                    _ => return,
                }
            }
        });
        std::thread::sleep(kill_after);
        slot.kill9();
        runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), client).await;
        });
        let got: Vec<(u64, Vec<u8>)> = rx.try_iter().collect();
        seq = got.last().map(|(n, _)| n + 1).unwrap_or(seq) + 1;
        acked.extend(got);
        verify(&slot.data, &acked, round);
    }
    assert!(
        acked.len() >= ROUNDS,
        "too few deliveries acknowledged to mean anything: {}",
        acked.len()
    );
}

fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: a@example.org\r\nTo: carol@example.com\r\nSubject: crash {n}\r\nX-Seq: {n}\r\n\r\n"
    )
    .into_bytes();
    while m.len() < size {
        m.extend_from_slice(format!("line {n} {}\r\n", m.len()).as_bytes());
    }
    m
}

/// Every acknowledged message is present once, ending with the exact bytes sent.
fn verify(data: &std::path::Path, acked: &[(u64, Vec<u8>)], round: usize) {
    let slot = slotmail_store::Slot::open(data, slotmail_store::Options::default()).unwrap();
    let user = slot.user("carol").unwrap();
    let inbox = user.mailbox("INBOX").unwrap();
    let (_, msgs) = user.snapshot(inbox.id).unwrap();
    let mut stored = std::collections::HashMap::new();
    for m in &msgs {
        let bytes = user.read_message(&m.guid, m.size).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let seq: u64 = text
            .split("\r\nX-Seq: ")
            .nth(1)
            .and_then(|r| r.split("\r\n").next())
            .and_then(|s| s.parse().ok())
            .expect("stored message carries its X-Seq");
        assert!(
            stored.insert(seq, bytes).is_none(),
            "round {round}: message {seq} stored twice"
        );
    }
    for (n, body) in acked {
        let got = stored
            .get(n)
            .unwrap_or_else(|| panic!("round {round}: acknowledged message {n} is missing"));
        assert!(
            got.ends_with(body),
            "round {round}: message {n} is not byte-identical"
        );
    }
    assert!(
        slot.scrub(false).is_clean(),
        "round {round}: scrub found damage"
    );
}
