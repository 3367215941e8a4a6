//! The LMTP delivery benchmark against slotmail's LMTP shell
//! (`slotmail_lmtp::serve_connection`) on 127.0.0.1:0, with a backend that
//! keeps the delivered messages in memory: every message arrives, to the
//! right recipients, errors are counted. Nothing here is timed; speed is
//! measured by `bench/lmtp-vs-dovecot.sh`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slotmail_bench::lmtp::{LmtpBenchOptions, run_lmtp_bench};
use slotmail_lmtp::{AcceptedRcpt, Backend, Envelope, RcptVerdict, Recipient, Reply};

/// Users u1..u`KNOWN` exist; others get 550.
const KNOWN: u32 = 12;

#[derive(Default)]
struct Memory {
    /// user → bodies (trace headers stripped)
    delivered: Mutex<HashMap<String, Vec<Vec<u8>>>>,
}

impl Backend for Memory {
    type Token = String;

    async fn check_recipient(&self, rcpt: &Recipient) -> RcptVerdict<String> {
        let known = rcpt
            .user
            .strip_prefix('u')
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=KNOWN).contains(&n));
        if known {
            RcptVerdict::Accept(rcpt.user.clone())
        } else {
            RcptVerdict::Reject(Reply::unknown_user("No such user here"))
        }
    }

    async fn deliver(
        &self,
        _envelope: &Envelope,
        message: &[u8],
        rcpts: &[AcceptedRcpt<String>],
    ) -> Vec<Reply> {
        // Drop Return-Path and Received (two header lines, the second folded).
        let body = strip_trace(message);
        let mut d = self.delivered.lock().unwrap();
        rcpts
            .iter()
            .map(|r| {
                d.entry(r.token.clone()).or_default().push(body.clone());
                Reply::ok("Delivered")
            })
            .collect()
    }
}

fn strip_trace(message: &[u8]) -> Vec<u8> {
    let mut rest = message;
    loop {
        let starts_trace = rest.starts_with(b"Return-Path:")
            || rest.starts_with(b"Received:")
            || rest.starts_with(b"\t")
            || rest.starts_with(b" ");
        if !starts_trace {
            return rest.to_vec();
        }
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        rest = &rest[end..];
    }
}

async fn start(backend: Arc<Memory>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Arc::new(slotmail_lmtp::Config::new("lmtp.test"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let backend = backend.clone();
            let config = config.clone();
            tokio::spawn(async move {
                let _ = slotmail_lmtp::serve_connection(stream, peer, &*backend, &config).await;
            });
        }
    });
    addr
}

/// Five messages of distinct sizes, one with a line that needs dot-stuffing.
fn write_corpus(dir: &Path) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let mut mbox = Vec::new();
    let mut raws = Vec::new();
    for i in 0..5 {
        let body = format!(
            "From: a@x.test\nSubject: m{i}\n\nline\n.dot line\n{}\n",
            "x".repeat(100 * (i + 1))
        );
        mbox.extend_from_slice(b"From a@x.test Mon Jun  3 12:00:00 2024\n");
        mbox.extend_from_slice(body.as_bytes());
        if i < 4 {
            // The separator before the next From_ line (not part of a message).
            mbox.extend_from_slice(b"\n");
        }
        raws.push(body.replace('\n', "\r\n").into_bytes());
    }
    let path = dir.join("corpus.mbox");
    std::fs::write(&path, mbox).unwrap();
    (path, raws)
}

fn opts(addr: &str, corpus: &Path) -> LmtpBenchOptions {
    LmtpBenchOptions {
        users: KNOWN,
        ..LmtpBenchOptions::new(addr, corpus)
    }
}

#[tokio::test]
async fn single_recipient_deliveries_arrive_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, raws) = write_corpus(dir.path());
    let backend = Arc::new(Memory::default());
    let addr = start(backend.clone()).await;
    let report = run_lmtp_bench(LmtpBenchOptions {
        connections: 3,
        count: Some(24),
        server_pids: vec![std::process::id()],
        ..opts(&addr, &corpus)
    })
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.transactions, 24);
    assert_eq!(report.messages_delivered, 24);
    assert_eq!(report.recipients_delivered, 24);
    let expected_bytes: usize = (0..24).map(|i| raws[i % 5].len()).sum();
    assert_eq!(report.bytes_delivered, expected_bytes as u64);
    assert!(report.latency_ms.is_some());
    assert!(report.server.is_some());
    let warm = report.warmup.as_ref().unwrap();
    assert_eq!((warm.delivered, warm.failed), (u64::from(KNOWN), 0));
    assert!(report.to_table().contains("24 messages"));

    // Warm-up: the smallest message once per user; then transaction i went
    // to user i mod 12 + 1 with message i mod 5.
    let delivered = backend.delivered.lock().unwrap();
    for k in 1..=KNOWN {
        let got = &delivered[&format!("u{k}")];
        assert_eq!(got[0], raws[0], "warm-up of u{k}");
        let mut want: Vec<&Vec<u8>> = (0..24usize)
            .filter(|i| i % KNOWN as usize == (k - 1) as usize)
            .map(|i| &raws[i % 5])
            .collect();
        let mut rest: Vec<&Vec<u8>> = got[1..].iter().collect();
        want.sort();
        rest.sort();
        assert_eq!(rest, want, "u{k}");
    }
}

#[tokio::test]
async fn multi_recipient_transactions_reach_distinct_users() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = write_corpus(dir.path());
    let backend = Arc::new(Memory::default());
    let addr = start(backend.clone()).await;
    let report = run_lmtp_bench(LmtpBenchOptions {
        connections: 2,
        recipients_per_message: 10,
        count: Some(6),
        warmup: false,
        ..opts(&addr, &corpus)
    })
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.messages_delivered, 6);
    assert_eq!(report.recipients_delivered, 60);
    let delivered = backend.delivered.lock().unwrap();
    // 60 copies over 12 users, round-robin: 5 each.
    assert_eq!(delivered.len(), KNOWN as usize);
    assert!(delivered.values().all(|v| v.len() == 5));
}

#[tokio::test]
async fn refused_recipients_are_errors_and_time_bounds_end_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = write_corpus(dir.path());
    let backend = Arc::new(Memory::default());
    let addr = start(backend.clone()).await;
    // Users 13..=24 do not exist: every second transaction has a refusal.
    let report = run_lmtp_bench(LmtpBenchOptions {
        users: 2 * KNOWN,
        count: Some(48),
        warmup: false,
        ..opts(&addr, &corpus)
    })
    .await
    .unwrap();
    assert_eq!(report.transactions, 48);
    assert_eq!(report.messages_delivered, 24);
    assert_eq!(report.recipients_failed, 24);
    assert_eq!(report.errors, 24);
    assert_eq!(report.client_failures, 0);
    assert!(report.error_samples.iter().any(|e| e.contains("550")));

    // Bounded by time only: ends, and delivers something.
    let report = run_lmtp_bench(LmtpBenchOptions {
        duration: Some(Duration::from_millis(300)),
        warmup: false,
        ..opts(&addr, &corpus)
    })
    .await
    .unwrap();
    assert!(report.messages_delivered > 0);
    assert!(report.seconds < 30.0);
    assert_eq!(report.errors, 0);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = write_corpus(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = run_lmtp_bench(LmtpBenchOptions {
        count: Some(1),
        ..opts(&addr, &corpus)
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("connecting"), "{err}");
}
