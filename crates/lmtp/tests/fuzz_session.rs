//! The LMTP fuzz entry point as a stable property test (the cargo-fuzz
//! target in `fuzz/` runs the same function under libFuzzer): arbitrary
//! bytes, LMTP-like token soups and mutations of valid transactions. And
//! the property a mutation cannot check: a valid transaction, cut into
//! arbitrary pieces, delivers exactly the message that was sent
//! (dot-unstuffed) with one reply per recipient.

use proptest::prelude::*;
use slotmail_lmtp::{Config, Event, RcptVerdict, Reply, Session};
use std::time::{Duration, SystemTime};

fn lmtp_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"LHLO x\r\n"[..],
        b"MAIL FROM:<a@b>\r\n",
        b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
        b"RCPT TO:<u@d>\r\n",
        b"RCPT TO:<u+f@d>\r\n",
        b"DATA\r\n",
        b"Subject: x\r\n\r\nbody\r\n",
        b"..dot\r\n",
        b".\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"QUIT\r\n",
        b"\n",
        b"\r",
        b"\x00\xff",
    ]);
    (any::<u8>(), prop::collection::vec(pieces, 0..40)).prop_map(|(c, ps)| {
        let mut v = vec![c];
        for p in ps {
            v.extend_from_slice(p);
        }
        v
    })
}

/// A message body: lines of printable text, some starting with dots.
fn body_lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "[ -~]{0,40}",
            Just(".".to_string()),
            Just("..".to_string()),
            "\\.[ -~]{0,10}",
            Just(String::new()),
        ],
        0..30,
    )
}

/// The client bytes of one valid transaction with `rcpts` recipients and
/// the message whose body is `lines` (dot-stuffed on the wire), and the
/// message as it must be delivered.
fn transaction(rcpts: usize, lines: &[String]) -> (Vec<u8>, Vec<u8>) {
    let mut message = b"Subject: t\r\n\r\n".to_vec();
    for l in lines {
        message.extend_from_slice(l.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    let mut wire = b"LHLO client.test\r\nMAIL FROM:<s@example.org>\r\n".to_vec();
    for i in 0..rcpts {
        wire.extend_from_slice(format!("RCPT TO:<u{i}@example.org>\r\n").as_bytes());
    }
    wire.extend_from_slice(b"DATA\r\n");
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\nQUIT\r\n");
    (wire, message)
}

/// A valid transaction, damaged: bytes flipped, inserted, deleted, and the
/// stream cut short.
fn mutated_transaction() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        1usize..4,
        body_lines(),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(control, rcpts, lines, edits, cut)| {
            let (mut wire, _) = transaction(rcpts, &lines);
            for (at, op, byte) in edits {
                let i = at.index(wire.len());
                match op {
                    0 => wire[i] ^= byte.max(1),
                    1 => wire.insert(i, byte),
                    _ => {
                        wire.remove(i);
                    }
                }
            }
            let keep = cut.index(wire.len() + 1).max(wire.len() * 3 / 4);
            wire.truncate(keep);
            let mut data = vec![control];
            data.extend_from_slice(&wire);
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes_never_break_the_session(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        slotmail_lmtp::fuzz_session(&data);
    }

    #[test]
    fn lmtp_like_input_never_breaks_the_session(data in lmtp_like()) {
        slotmail_lmtp::fuzz_session(&data);
    }

    #[test]
    fn mutated_transactions_never_break_the_session(data in mutated_transaction()) {
        slotmail_lmtp::fuzz_session(&data);
    }

    #[test]
    fn a_valid_transaction_delivers_exactly_the_message_sent(
        rcpts in 1usize..5,
        lines in body_lines(),
        cuts in prop::collection::vec(1usize..64, 1..8),
    ) {
        let (wire, message) = transaction(rcpts, &lines);
        let config = Config::new("mx.test");
        let mut session: Session<usize> = Session::new(&config, "[192.0.2.1]", "p");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut delivered = Vec::new();
        let mut offset = 0;
        let mut cut = cuts.iter().cycle();
        let mut next = 0usize;
        while offset < wire.len() && !session.is_closed() {
            let end = (offset + *cut.next().unwrap()).min(wire.len());
            let step = session.receive(&wire[offset..end], now);
            offset += step.consumed;
            match step.event {
                Some(Event::Recipient { .. }) => {
                    session.recipient_verdict(RcptVerdict::Accept(next)).unwrap();
                    next += 1;
                }
                Some(Event::Deliver { message, rcpts, .. }) => {
                    let replies = rcpts.iter().map(|_| Reply::ok("saved")).collect();
                    delivered.push((message, rcpts.iter().map(|r| r.token).collect::<Vec<_>>()));
                    session.delivery_replies(replies).unwrap();
                }
                Some(Event::Close) => break,
                None => {
                    session.take_output();
                }
            }
        }
        prop_assert_eq!(delivered.len(), 1);
        let (got, tokens) = &delivered[0];
        prop_assert_eq!(tokens, &(0..rcpts).collect::<Vec<_>>());
        // Trace headers first, then the message byte for byte.
        prop_assert!(got.ends_with(&message), "delivered {:?}", String::from_utf8_lossy(got));
        prop_assert!(got.starts_with(b"Return-Path: <s@example.org>\r\n"));
    }
}
