//! Shared helpers for the integration tests: a synchronous driver for the
//! sans-I/O [`Session`] with a deterministic mock backend, and a parser for
//! `C:`/`S:` transcripts.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slotmail_lmtp::{
    AcceptedRcpt, Config, Envelope, Event, RcptVerdict, Recipient, Reply, Session,
};

/// The fixed "current time" of all driver runs.
pub const NOW_SECS: u64 = 1_709_251_199;
/// [`NOW_SECS`] formatted as in the `Received:` header.
pub const NOW_TEXT: &str = "Thu, 29 Feb 2024 23:59:59 +0000";
/// Peer description passed to the session.
pub const PEER: &str = "[192.0.2.7]";
/// Session id passed to the session.
pub const SESSION_ID: &str = "S1";

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

pub fn config() -> Config {
    Config::new("mx.test")
}

/// A delivery observed by the mock backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub envelope: Envelope,
    pub message: Vec<u8>,
    pub rcpts: Vec<AcceptedRcpt<String>>,
}

/// Mock recipient policy by user name: `unknown*` -> 550 5.1.1,
/// `full*` -> 452 4.2.2, `tempfail*` -> 451 4.3.0, anything else is
/// accepted with the user name as token.
pub fn verdict(rcpt: &Recipient) -> RcptVerdict<String> {
    let user = rcpt.user.to_ascii_lowercase();
    if user.starts_with("unknown") {
        RcptVerdict::Reject(Reply::unknown_user(format!("<{rcpt}> unknown user")))
    } else if user.starts_with("full") {
        RcptVerdict::Reject(Reply::over_quota("Mailbox over quota"))
    } else if user.starts_with("tempfail") {
        RcptVerdict::Reject(Reply::temporary_failure("Try again later"))
    } else {
        RcptVerdict::Accept(rcpt.user.clone())
    }
}

/// Mock delivery: users starting with `quota` fail at delivery time with
/// 452 4.2.2, the others get 250 2.0.0.
pub fn delivery_replies(rcpts: &[AcceptedRcpt<String>]) -> Vec<Reply> {
    rcpts
        .iter()
        .map(|r| {
            if r.token.starts_with("quota") {
                Reply::over_quota(format!("<{}> mailbox full", r.rcpt))
            } else {
                Reply::ok(format!("<{}> delivered", r.rcpt))
            }
        })
        .collect()
}

/// Result of a driver run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub output: Vec<u8>,
    pub deliveries: Vec<Delivered>,
    pub recipients_checked: Vec<Recipient>,
    pub closed: bool,
}

impl Run {
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Feeds `chunks` one after another (as separate reads) into a fresh
/// session, answering events with the mock backend.
pub fn drive(config: &Config, chunks: &[&[u8]]) -> Run {
    let mut session = Session::<String>::new(config, PEER, SESSION_ID);
    let mut run = Run {
        output: session.take_output(),
        deliveries: Vec::new(),
        recipients_checked: Vec::new(),
        closed: false,
    };
    let mut pending: Vec<u8> = Vec::new();
    'chunks: for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            let step = session.receive(&pending, now());
            assert!(step.consumed <= pending.len());
            pending.drain(..step.consumed);
            match step.event {
                Some(Event::Recipient { rcpt }) => {
                    let v = verdict(&rcpt);
                    run.recipients_checked.push(rcpt);
                    session.recipient_verdict(v).expect("verdict expected");
                }
                Some(Event::Deliver {
                    envelope,
                    message,
                    rcpts,
                }) => {
                    let replies = delivery_replies(&rcpts);
                    run.deliveries.push(Delivered {
                        envelope,
                        message,
                        rcpts,
                    });
                    session
                        .delivery_replies(replies)
                        .expect("delivery expected");
                }
                Some(Event::Close) => {
                    run.closed = true;
                    run.output.extend(session.take_output());
                    break 'chunks;
                }
                None => {
                    run.output.extend(session.take_output());
                    if pending.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    run.output.extend(session.take_output());
    run
}

/// Splits a transcript into client input and expected server output. Lines
/// start with `C: ` or `S: `; each gets CRLF appended. Lines starting with
/// `#` and empty lines are ignored.
pub fn parse_transcript(transcript: &str) -> (Vec<u8>, String) {
    let mut client = Vec::new();
    let mut server = String::new();
    for line in transcript.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(c) = line.strip_prefix("C:") {
            client.extend_from_slice(c.strip_prefix(' ').unwrap_or(c).as_bytes());
            client.extend_from_slice(b"\r\n");
        } else if let Some(s) = line.strip_prefix("S:") {
            server.push_str(s.strip_prefix(' ').unwrap_or(s));
            server.push_str("\r\n");
        } else {
            panic!("bad transcript line {line:?}");
        }
    }
    (client, server)
}

/// Runs a transcript with the client input in one chunk and asserts the
/// server output matches byte for byte.
pub fn check_transcript(config: &Config, transcript: &str) -> Run {
    let (client, expected) = parse_transcript(transcript);
    let run = drive(config, &[&client]);
    assert_eq!(run.output_text(), expected);
    run
}

/// The trace header block the session prepends for transaction `n` of a
/// session driven by [`drive`].
pub fn trace(return_path: &str, lhlo: &str, n: u32) -> String {
    format!(
        "Return-Path: {return_path}\r\nReceived: from {lhlo} ({PEER})\r\n\tby mx.test (slotmail) with LMTP id {SESSION_ID}.{n};\r\n\t{NOW_TEXT}\r\n"
    )
}

/// Asserts every output line is a well-formed reply line.
pub fn assert_well_formed(output: &[u8]) {
    assert!(
        output.is_empty() || output.ends_with(b"\r\n"),
        "output not CRLF-terminated"
    );
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r"), "line without CR: {line:?}");
        assert!(line.len() >= 5 && line.len() <= 512, "bad length: {line:?}");
        assert!(
            line[..3].iter().all(u8::is_ascii_digit),
            "bad code: {line:?}"
        );
        assert!(
            line[3] == b' ' || line[3] == b'-',
            "bad separator: {line:?}"
        );
        assert!(
            !line[..line.len() - 1].contains(&b'\r'),
            "stray CR: {line:?}"
        );
    }
}
