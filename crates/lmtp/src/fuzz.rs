//! A fuzzing entry point: arbitrary bytes through the session state machine.
//!
//! The first byte picks the chunk size and which recipients the simulated
//! backend accepts; the rest is client input. The function checks what must
//! hold for any input: no panic, output stays bounded by the configured
//! limit between drains and is always well-formed replies (`ddd` then a
//! space or a hyphen, at most `MAX_REPLY_LINE_BYTES` a line, CRLF), every
//! delivery carries at most the recipient limit and at most the message
//! size limit (plus its trace headers), and every delivery event gets
//! exactly one reply per accepted recipient. A cargo-fuzz target and a
//! property test call it.

use crate::config::{Config, MAX_REPLY_LINE_BYTES};
use crate::envelope::RcptVerdict;
use crate::reply::Reply;
use crate::session::{Event, Session};
use std::time::{Duration, SystemTime};

/// Feed `data` to a session as a client would, answering its events.
pub fn fuzz_session(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control % 17) + 1;
    let accept_mask = control >> 4;
    let config = Config::new("fuzz.slotmail");
    let mut session: Session<u32> = Session::new(&config, "[127.0.0.1]", "fuzz");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut rcpt_count = 0u32;
    let mut offset = 0;
    // Bounded: every iteration consumes input, answers an event or drains.
    let mut steps = 0usize;
    while offset < input.len() && !session.is_closed() {
        steps += 1;
        assert!(steps < input.len() * 4 + 64, "session made no progress");
        let end = (offset + chunk).min(input.len());
        let step = session.receive(&input[offset..end], now);
        offset += step.consumed;
        match step.event {
            Some(Event::Recipient { .. }) => {
                let verdict = if accept_mask & (1 << (rcpt_count % 4)) != 0 {
                    RcptVerdict::Accept(rcpt_count)
                } else {
                    RcptVerdict::Reject(Reply::unknown_user("no such user"))
                };
                rcpt_count += 1;
                session
                    .recipient_verdict(verdict)
                    .expect("a verdict answers a Recipient event");
            }
            Some(Event::Deliver { rcpts, message, .. }) => {
                assert!(!rcpts.is_empty(), "a delivery without recipients");
                assert!(
                    rcpts.len() <= config.limits.max_recipients,
                    "{} recipients over the limit",
                    rcpts.len()
                );
                assert!(
                    message.len() <= config.limits.max_message_bytes + TRACE_BYTES_MAX,
                    "a delivered message of {} bytes",
                    message.len()
                );
                assert!(message.ends_with(b"\r\n"), "message without a final CRLF");
                let replies = rcpts.iter().map(|_| Reply::ok("delivered")).collect();
                session
                    .delivery_replies(replies)
                    .expect("replies answer a Deliver event");
            }
            Some(Event::Close) => break,
            None => {
                let out = session.take_output();
                check_replies(&out);
                assert!(
                    out.len() <= config.limits.max_pending_output_bytes + 4096,
                    "output grew to {} bytes",
                    out.len()
                );
                if step.consumed == 0 && out.is_empty() && end == input.len() {
                    break;
                }
            }
        }
    }
    check_replies(&session.take_output());
}

/// Room for the trace headers a delivery prepends (Return-Path, Received).
const TRACE_BYTES_MAX: usize = 4096;

/// Every line of `out` is a reply line: three digits, a space or a hyphen,
/// text, CRLF, within the line limit.
fn check_replies(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(out.ends_with(b"\r\n"), "output ends mid-line: {out:?}");
    for line in out[..out.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.len() + 2 <= MAX_REPLY_LINE_BYTES,
            "reply line of {} bytes",
            line.len()
        );
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "not a reply line: {line:?}"
        );
        assert!(
            line.len() == 3 || matches!(line[3], b' ' | b'-'),
            "not a reply line: {line:?}"
        );
        assert!(
            !line.contains(&b'\r'),
            "a bare CR inside a reply line: {line:?}"
        );
    }
}
