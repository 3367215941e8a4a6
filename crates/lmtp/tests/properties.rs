//! Property tests for the sans-I/O session: no panics on arbitrary input at
//! arbitrary split points, chunking independence, and the dot-stuffing round
//! trip between [`DotStuffer`] and the server's unstuffing.

mod common;

use common::*;
use proptest::prelude::*;
use slotmail_lmtp::{Config, DotStuffer, normalize_line_endings};

/// A configuration with tiny limits so that every overflow path is hit.
fn tight_config() -> Config {
    let mut c = config();
    c.limits.max_command_line_bytes = 64;
    c.limits.max_data_line_bytes = 40;
    c.limits.max_message_bytes = 200;
    c.limits.max_recipients = 3;
    c.limits.max_errors = 12;
    c.limits.max_pending_output_bytes = 100;
    c
}

/// Input fragments biased towards meaningful LMTP traffic.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let commands = prop::sample::select(vec![
        "LHLO client.test\r\n",
        "LHLO\r\n",
        "EHLO x\r\n",
        "MAIL FROM:<a@b.example>\r\n",
        "MAIL FROM:<> SIZE=50 BODY=8BITMIME\r\n",
        "MAIL FROM:<a@b> SIZE=99999\r\n",
        "mail from: <\"q u\"@b>\r\n",
        "RCPT TO:<alice@example.org>\r\n",
        "RCPT TO:<bob+detail@example.org>\r\n",
        "RCPT TO:<unknown@example.org>\r\n",
        "RCPT TO:<quota@example.org>\r\n",
        "RCPT TO:<tempfail@x>\r\n",
        "RCPT TO:<postmaster>\r\n",
        "RCPT TO:<>\r\n",
        "DATA\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "VRFY x\r\n",
        "QUIT\r\n",
        ".\r\n",
        "..\r\n",
        ".\n",
        "\r\n",
        "\n",
        "\r",
        "hello world\r\n",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        6 => commands,
        2 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(prop::sample::select(vec![b'.', b'\r', b'\n', b'x', b' ']), 0..80),
        1 => (1usize..150).prop_map(|n| vec![b'y'; n]),
    ]
}

/// One line of message data, including stuffing artefacts and overlong
/// lines.
fn data_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-zA-Z0-9 :.]{0,30}".prop_map(|s| format!("{s}\r\n").into_bytes()),
        1 => Just(b"..\r\n".to_vec()),
        1 => Just(b"..leading\r\n".to_vec()),
        1 => Just(b"bare lf\n".to_vec()),
        1 => (30usize..90).prop_map(|n| [vec![b'z'; n], b"\r\n".to_vec()].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

/// A mostly well-formed transaction: MAIL, some RCPTs, DATA, body, end.
fn transaction() -> impl Strategy<Value = Vec<u8>> {
    let mail = prop::sample::select(vec![
        "MAIL FROM:<a@b.example>\r\n",
        "MAIL FROM:<>\r\n",
        "MAIL FROM:<a@b.example> SIZE=120 BODY=7BIT\r\n",
        "MAIL FROM:<a@b.example> SIZE=1000\r\n",
    ]);
    let rcpt = prop::sample::select(vec![
        "RCPT TO:<alice@example.org>\r\n",
        "RCPT TO:<bob+x@example.org>\r\n",
        "RCPT TO:<unknown@example.org>\r\n",
        "RCPT TO:<quota@example.org>\r\n",
        "RCPT TO:<full@example.org>\r\n",
    ]);
    (
        mail,
        prop::collection::vec(rcpt, 1..6),
        prop::collection::vec(data_line(), 0..10),
        prop::option::weighted(0.2, fragment()),
    )
        .prop_map(|(mail, rcpts, lines, noise)| {
            let mut t = mail.as_bytes().to_vec();
            for r in rcpts {
                t.extend_from_slice(r.as_bytes());
            }
            t.extend_from_slice(noise.as_deref().unwrap_or_default());
            t.extend_from_slice(b"DATA\r\n");
            t.extend(lines.concat());
            t.extend_from_slice(b"\r\n.\r\n");
            t
        })
}

fn session_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (prop::collection::vec(transaction(), 1..4), prop::bool::ANY).prop_map(|(txns, quit)| {
            let mut s = b"LHLO client.test\r\n".to_vec();
            s.extend(txns.concat());
            if quit {
                s.extend_from_slice(b"QUIT\r\n");
            }
            s
        }),
        1 => prop::collection::vec(fragment(), 0..40).prop_map(|f| f.concat()),
    ]
}

/// Splits `input` at the given (unsorted, possibly out of range) points.
fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut last = 0;
    for c in cuts {
        chunks.push(&input[last..c]);
        last = c;
    }
    chunks.push(&input[last..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary input split anywhere never panics, always yields
    /// well-formed replies, and gives the same dialogue as one chunk.
    #[test]
    fn arbitrary_input_and_splits(input in session_input(), points in prop::collection::vec(any::<usize>(), 0..12)) {
        for config in [config(), tight_config()] {
            let whole = drive(&config, &[&input]);
            assert_well_formed(&whole.output);
            let split = drive(&config, &split_at_points(&input, &points));
            prop_assert_eq!(&split, &whole);
            for d in &whole.deliveries {
                prop_assert!(d.message.starts_with(b"Return-Path: <"));
                prop_assert!(!d.rcpts.is_empty() && d.rcpts.len() <= config.limits.max_recipients);
            }
        }
    }

    /// Byte-by-byte feeding gives the same replies and deliveries as one
    /// chunk.
    #[test]
    fn byte_by_byte_equals_one_chunk(input in session_input()) {
        let config = tight_config();
        let whole = drive(&config, &[&input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(drive(&config, &bytes), whole);
    }

    /// Pure noise never panics and never delivers anything.
    #[test]
    fn random_bytes(input in prop::collection::vec(any::<u8>(), 0..2000)) {
        let run = drive(&tight_config(), &[&input]);
        assert_well_formed(&run.output);
    }

    /// Client stuffing followed by server unstuffing yields the body with
    /// line ends normalised, and canonical (CRLF) bodies exactly.
    #[test]
    fn dot_stuffing_round_trip(
        body in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(b'.'), 1 => Just(b'\r'), 1 => Just(b'\n')],
            0..600,
        ),
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let canonical = normalize_line_endings(&body);
        prop_assert_eq!(round_trip(&body, &points), canonical.clone());
        prop_assert_eq!(round_trip(&canonical, &points), canonical);
    }
}

/// Sends `body` through [`DotStuffer`] (fed in pieces split at `points`)
/// and a session; returns the stored message without the trace headers.
fn round_trip(body: &[u8], points: &[usize]) -> Vec<u8> {
    let mut wire = b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n".to_vec();
    let mut stuffer = DotStuffer::new();
    for piece in split_at_points(body, points) {
        stuffer.encode(piece, &mut wire);
    }
    stuffer.finish(&mut wire);
    let run = drive(&config(), &[&wire]);
    assert_eq!(run.deliveries.len(), 1, "{}", run.output_text());
    let message = &run.deliveries[0].message;
    message[trace("<>", "c", 1).len()..].to_vec()
}
