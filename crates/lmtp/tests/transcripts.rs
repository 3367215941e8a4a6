//! Known-answer tests: complete LMTP dialogues against the sans-I/O
//! session with a deterministic mock backend, compared byte for byte.

mod common;

use common::*;
use slotmail_lmtp::{
    Address, BodyType, Event, RcptVerdict, Reply, Session, UsageError, VrfyPolicy,
};

const LHLO_REPLY: &str = "\
S: 250-mx.test
S: 250-PIPELINING
S: 250-8BITMIME
S: 250-ENHANCEDSTATUSCODES
S: 250 SIZE 33554432
";

/// Greeting plus `LHLO client.test` with its reply for the default config.
fn hello() -> String {
    format!("S: 220 mx.test LMTP slotmail ready\nC: LHLO client.test\n{LHLO_REPLY}")
}

#[test]
fn one_recipient() {
    let t = format!(
        "{}
        C: MAIL FROM:<sender@example.org> SIZE=35
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: hi
        C:
        C: Hello Alice.
        C: .
        S: 250 2.0.0 <alice@example.org> delivered
        C: QUIT
        S: 221 2.0.0 mx.test closing connection
        ",
        hello()
    );
    let run = check_transcript(&config(), &t);
    assert!(run.closed);
    assert_eq!(run.deliveries.len(), 1);
    let d = &run.deliveries[0];
    let expected = format!(
        "{}Subject: hi\r\n\r\nHello Alice.\r\n",
        trace("<sender@example.org>", "client.test", 1)
    );
    assert_eq!(String::from_utf8_lossy(&d.message), expected);
    assert_eq!(d.envelope.id, "S1.1");
    assert_eq!(
        d.envelope.sender,
        Some(Address::new("sender", "example.org"))
    );
    assert_eq!(d.envelope.declared_size, Some(35));
    assert_eq!(d.envelope.body, None);
    assert_eq!(d.envelope.lhlo, "client.test");
    assert_eq!(d.envelope.peer, PEER);
    assert_eq!(d.envelope.return_path(), "<sender@example.org>");
    assert_eq!(d.rcpts.len(), 1);
    assert_eq!(d.rcpts[0].token, "alice");
}

#[test]
fn three_recipients_one_unknown() {
    let t = format!(
        "{}
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: RCPT TO:<unknown@example.org>
        S: 550 5.1.1 <unknown@example.org> unknown user
        C: RCPT TO:<quota+inbox@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: three
        C:
        C: body
        C: .
        S: 250 2.0.0 <alice@example.org> delivered
        S: 452 4.2.2 <quota+inbox@example.org> mailbox full
        C: QUIT
        S: 221 2.0.0 mx.test closing connection
        ",
        hello()
    );
    let run = check_transcript(&config(), &t);
    assert_eq!(run.recipients_checked.len(), 3);
    let d = &run.deliveries[0];
    let tokens: Vec<_> = d.rcpts.iter().map(|r| r.token.as_str()).collect();
    assert_eq!(tokens, ["alice", "quota"]);
    let q = &d.rcpts[1].rcpt;
    assert_eq!(
        (q.user.as_str(), q.detail.as_deref(), q.domain.as_str()),
        ("quota", Some("inbox"), "example.org")
    );
}

#[test]
fn pipelined_commands_in_one_chunk() {
    let input = b"LHLO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<tempfail@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\nQUIT\r\n";
    let expected = format!(
        "220 mx.test LMTP slotmail ready\r\n{}250 2.1.0 OK\r\n250 2.1.5 OK\r\n451 4.3.0 Try again later\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <alice@example.org> delivered\r\n250 2.0.0 <bob@example.org> delivered\r\n250 2.0.0 OK\r\n221 2.0.0 mx.test closing connection\r\n",
        LHLO_REPLY.replace("S: ", "").replace('\n', "\r\n")
    );
    let run = drive(&config(), &[input]);
    assert_eq!(run.output_text(), expected);
    assert!(run.closed);
    assert_eq!(
        String::from_utf8_lossy(&run.deliveries[0].message),
        format!("{}hello\r\n", trace("<>", "client.test", 1))
    );
    assert_eq!(run.deliveries[0].envelope.sender, None);

    // The same bytes split at every position give the same dialogue.
    for split in 0..input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(drive(&config(), &[a, b]), run, "split at {split}");
    }
}

#[test]
fn pipelined_session_api_returns_events_in_order() {
    let mut s = Session::<u32>::new(&config(), PEER, SESSION_ID);
    let input = b"LHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nNOOP\r\n";
    let step = s.receive(input, now());
    let Some(Event::Recipient { rcpt }) = step.event else {
        panic!("expected a recipient event, got {:?}", step.event)
    };
    assert_eq!(rcpt.user, "x");
    let mut rest = &input[step.consumed..];
    assert!(rest.starts_with(b"RCPT TO:<z@"));
    // Nothing is consumed while the verdict is outstanding.
    assert_eq!(
        s.receive(rest, now()),
        slotmail_lmtp::Step {
            consumed: 0,
            event: None
        }
    );
    assert!(s.in_transaction());
    s.recipient_verdict(RcptVerdict::Accept(7)).unwrap();
    assert_eq!(
        s.recipient_verdict(RcptVerdict::Accept(7)),
        Err(UsageError::NoPendingRecipient)
    );
    let step = s.receive(rest, now());
    assert!(matches!(step.event, Some(Event::Recipient { .. })));
    rest = &rest[step.consumed..];
    s.recipient_verdict(RcptVerdict::Reject(Reply::unknown_user("no")))
        .unwrap();
    let step = s.receive(rest, now());
    assert_eq!(
        step,
        slotmail_lmtp::Step {
            consumed: rest.len(),
            event: None
        }
    );
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(
        out.ends_with("250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 no\r\n250 2.0.0 OK\r\n"),
        "{out}"
    );
    assert_eq!(
        s.delivery_replies(vec![]),
        Err(UsageError::NoPendingDelivery)
    );
}

#[test]
fn dot_unstuffing() {
    let t = format!(
        "{}
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: ..leading dot
        C: ..
        C: ...
        C: .not stuffed
        C: middle . dot
        C: .
        S: 250 2.0.0 <alice@example.org> delivered
        ",
        hello()
    );
    let run = check_transcript(&config(), &t);
    let body = &run.deliveries[0].message[trace("<sender@example.org>", "client.test", 1).len()..];
    assert_eq!(
        String::from_utf8_lossy(body),
        ".leading dot\r\n.\r\n..\r\nnot stuffed\r\nmiddle . dot\r\n"
    );
}

#[test]
fn oversize_declared_with_size() {
    let mut config = config();
    config.limits.max_message_bytes = 100;
    let t = "
        S: 220 mx.test LMTP slotmail ready
        C: LHLO client.test
        S: 250-mx.test
        S: 250-PIPELINING
        S: 250-8BITMIME
        S: 250-ENHANCEDSTATUSCODES
        S: 250 SIZE 100
        C: MAIL FROM:<sender@example.org> SIZE=101
        S: 552 5.3.4 Error: message size exceeds fixed limit of 100 bytes
        C: RCPT TO:<alice@example.org>
        S: 503 5.5.1 Error: need MAIL command
        C: MAIL FROM:<sender@example.org> SIZE=100
        S: 250 2.1.0 OK
    ";
    let run = check_transcript(&config, t);
    assert!(run.recipients_checked.is_empty());
}

#[test]
fn oversize_while_streaming() {
    let mut config = config();
    config.limits.max_message_bytes = 100;
    let line = "x".repeat(48);
    let t = format!(
        "
        S: 220 mx.test LMTP slotmail ready
        C: LHLO client.test
        S: 250-mx.test
        S: 250-PIPELINING
        S: 250-8BITMIME
        S: 250-ENHANCEDSTATUSCODES
        S: 250 SIZE 100
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: RCPT TO:<bob@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: {line}
        C: {line}
        C: {line}
        C: .
        S: 552 5.3.4 Error: message size exceeds fixed limit of 100 bytes
        S: 552 5.3.4 Error: message size exceeds fixed limit of 100 bytes
        # The session goes on; exactly 100 bytes are fine.
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: {line}
        C: {line}
        C: .
        S: 250 2.0.0 <alice@example.org> delivered
        "
    );
    let run = check_transcript(&config, &t);
    assert_eq!(run.deliveries.len(), 1);
    assert_eq!(run.deliveries[0].envelope.id, "S1.2");
}

#[test]
fn data_line_too_long() {
    let mut config = config();
    config.limits.max_data_line_bytes = 20;
    let t = format!(
        "{}
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: 012345678901234567
        C: 0123456789012345678
        C: .
        S: 552 5.3.4 Error: message contains a line longer than 20 bytes
        ",
        hello()
    );
    let run = check_transcript(&config, &t);
    assert!(run.deliveries.is_empty());
}

#[test]
fn too_many_recipients() {
    let mut config = config();
    config.limits.max_recipients = 2;
    let t = format!(
        "{}
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 OK
        C: RCPT TO:<alice@example.org>
        S: 250 2.1.5 OK
        C: RCPT TO:<unknown@example.org>
        S: 550 5.1.1 <unknown@example.org> unknown user
        C: RCPT TO:<bob@example.org>
        S: 250 2.1.5 OK
        C: RCPT TO:<carol@example.org>
        S: 452 4.5.3 Error: too many recipients
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: hi
        C: .
        S: 250 2.0.0 <alice@example.org> delivered
        S: 250 2.0.0 <bob@example.org> delivered
        ",
        hello()
    );
    let run = check_transcript(&config, &t);
    // carol never reached the backend.
    assert_eq!(run.recipients_checked.len(), 3);
}

#[test]
fn commands_out_of_sequence_and_ehlo_refused() {
    let t = format!(
        "
        S: 220 mx.test LMTP slotmail ready
        C: MAIL FROM:<a@b.example>
        S: 503 5.5.1 Error: send LHLO first
        C: RCPT TO:<alice@example.org>
        S: 503 5.5.1 Error: send LHLO first
        C: DATA
        S: 503 5.5.1 Error: send LHLO first
        C: EHLO client.test
        S: 500 5.5.1 Error: this is an LMTP server (RFC 2033), use LHLO
        C: HELO client.test
        S: 500 5.5.1 Error: this is an LMTP server (RFC 2033), use LHLO
        C: LHLO client.test
        {LHLO_REPLY}
        C: RCPT TO:<alice@example.org>
        S: 503 5.5.1 Error: need MAIL command
        C: DATA
        S: 503 5.5.1 Error: need MAIL command
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 OK
        C: MAIL FROM:<a@b.example>
        S: 503 5.5.1 Error: nested MAIL command
        C: DATA
        S: 503 5.5.1 Error: no valid recipients
        C: RCPT TO:<unknown@example.org>
        S: 550 5.1.1 <unknown@example.org> unknown user
        C: DATA
        S: 503 5.5.1 Error: no valid recipients
        C: RSET
        S: 250 2.0.0 OK
        C: RCPT TO:<alice@example.org>
        S: 503 5.5.1 Error: need MAIL command
        # LHLO again resets the transaction.
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 OK
        C: LHLO again.test
        {LHLO_REPLY}
        C: RCPT TO:<alice@example.org>
        S: 503 5.5.1 Error: need MAIL command
        C: QUIT
        S: 221 2.0.0 mx.test closing connection
        C: NOOP
        "
    );
    let run = check_transcript(&config(), &t);
    assert!(run.closed);
}

#[test]
fn syntax_errors_and_misc_commands() {
    let t = format!(
        "
        S: 220 mx.test LMTP slotmail ready
        C: LHLO
        S: 501 5.5.4 Syntax: LHLO hostname
        C: lhlo client.test
        {LHLO_REPLY}
        C: MAIL FROM:a@b.example
        S: 501 5.1.7 Bad sender address syntax: address must be enclosed in <>
        C: MAIL TO:<a@b.example>
        S: 501 5.5.4 Syntax: MAIL FROM:<address>
        C: MAIL FROM:<a@b.example> SMTPUTF8
        S: 555 5.5.4 Error: unsupported parameter SMTPUTF8
        C: mail from: <\"john doe\"@b.example> body=8bitmime
        S: 250 2.1.0 OK
        C: RCPT TO:<>
        S: 501 5.1.3 Bad recipient address syntax: null path
        C: RCPT TO:<alice@example.org> NOTIFY=NEVER
        S: 555 5.5.4 Error: unsupported parameter NOTIFY
        C: rcpt to:<Alice+Work@Example.ORG>
        S: 250 2.1.5 OK
        C: DATA extra
        S: 501 5.5.4 Syntax: DATA
        C: RSET x
        S: 501 5.5.4 Syntax: RSET
        C: NOOP whatever
        S: 250 2.0.0 OK
        C: VRFY alice
        S: 252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery
        C: VRFY
        S: 501 5.5.4 Syntax: VRFY address
        C: HELP
        S: 214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY
        C: STARTTLS
        S: 502 5.5.1 Error: command not implemented
        C: FOO bar
        S: 500 5.5.1 Error: command not recognized
        C:
        S: 500 5.5.1 Error: command not recognized
        C: data
        S: 354 End data with <CR><LF>.<CR><LF>
        C: x
        C: .
        S: 250 2.0.0 <Alice+Work@Example.ORG> delivered
        C: quit
        S: 221 2.0.0 mx.test closing connection
        "
    );
    let run = check_transcript(&config(), &t);
    let d = &run.deliveries[0];
    assert_eq!(d.envelope.body, Some(BodyType::EightBitMime));
    assert!(
        d.message
            .starts_with(b"Return-Path: <\"john doe\"@b.example>\r\n")
    );
    let r = &d.rcpts[0].rcpt;
    assert_eq!(
        (r.user.as_str(), r.detail.as_deref(), r.domain.as_str()),
        ("Alice", Some("Work"), "Example.ORG")
    );
}

#[test]
fn vrfy_disabled() {
    let mut config = config();
    config.vrfy = VrfyPolicy::Disabled;
    check_transcript(
        &config,
        "
        S: 220 mx.test LMTP slotmail ready
        C: VRFY alice
        S: 502 5.5.1 Error: VRFY command is disabled
        ",
    );
}

#[test]
fn too_many_errors_closes() {
    let mut config = config();
    config.limits.max_errors = 3;
    let run = check_transcript(
        &config,
        "
        S: 220 mx.test LMTP slotmail ready
        C: X1
        S: 500 5.5.1 Error: command not recognized
        C: X2
        S: 500 5.5.1 Error: command not recognized
        C: NOOP
        S: 250 2.0.0 OK
        C: X3
        S: 500 5.5.1 Error: command not recognized
        C: X4
        S: 500 5.5.1 Error: command not recognized
        S: 421 4.7.0 mx.test Error: too many errors
        C: NOOP
        ",
    );
    assert!(run.closed);
}

#[test]
fn command_line_length_limit() {
    // 1000 octets including CRLF are fine, 1001 are not.
    let ok = format!("NOOP {}", "x".repeat(1000 - 2 - 5));
    let too_long = format!("NOOP {}", "x".repeat(1000 - 2 - 4));
    let huge = format!("NOOP {}", "x".repeat(100_000));
    let t = format!(
        "
        S: 220 mx.test LMTP slotmail ready
        C: {ok}
        S: 250 2.0.0 OK
        C: {too_long}
        S: 500 5.5.6 Error: line too long
        C: {huge}
        S: 500 5.5.6 Error: line too long
        C: NOOP
        S: 250 2.0.0 OK
        "
    );
    check_transcript(&config(), &t);
    // The same with the long line arriving in small pieces.
    let (client, expected) = parse_transcript(&t);
    let chunks: Vec<&[u8]> = client.chunks(7).collect();
    assert_eq!(drive(&config(), &chunks).output_text(), expected);
}

#[test]
fn bare_lf_line_ends() {
    let input = b"LHLO client.test\nMAIL FROM:<a@b.example>\nRCPT TO:<alice@example.org>\nDATA\nline1\n..dot\r\nbare\rcr\nline3\n.\nQUIT\n";
    let run = drive(&config(), &[input]);
    let expected = format!(
        "220 mx.test LMTP slotmail ready\r\n{}250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <alice@example.org> delivered\r\n221 2.0.0 mx.test closing connection\r\n",
        LHLO_REPLY.replace("S: ", "").replace('\n', "\r\n")
    );
    assert_eq!(run.output_text(), expected);
    let body = &run.deliveries[0].message[trace("<a@b.example>", "client.test", 1).len()..];
    assert_eq!(body, b"line1\r\n.dot\r\nbare\rcr\r\nline3\r\n");
}

#[test]
fn backend_replies_are_sanitized_and_completed() {
    let mut s = Session::<()>::new(&config(), PEER, SESSION_ID);
    let input = b"LHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<w@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\nhi\r\n.\r\n";
    let mut rest: &[u8] = input;
    let verdicts = [
        RcptVerdict::Accept(()),
        // A "rejection" with a success code must not accept the recipient.
        RcptVerdict::Reject(Reply::ok("sure")),
        RcptVerdict::Accept(()),
    ];
    for v in verdicts {
        let step = s.receive(rest, now());
        assert!(matches!(step.event, Some(Event::Recipient { .. })));
        rest = &rest[step.consumed..];
        s.recipient_verdict(v).unwrap();
    }
    let step = s.receive(rest, now());
    let Some(Event::Deliver { rcpts, .. }) = step.event else {
        panic!("expected delivery")
    };
    assert_eq!(rcpts.len(), 2);
    assert_eq!(step.consumed, rest.len());
    s.take_output();
    // Only one reply, with a bad enhanced code: the second is filled in.
    s.delivery_replies(vec![Reply::new(
        550,
        slotmail_lmtp::EnhancedCode::new(2, 0, 0),
        "bad\r\nline",
    )])
    .unwrap();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "550 5.0.0 bad  line\r\n451 4.3.0 Error: no delivery status from backend\r\n"
    );
}

#[test]
fn output_backpressure() {
    let mut config = config();
    config.limits.max_pending_output_bytes = 1;
    let mut s = Session::<()>::new(&config, PEER, SESSION_ID);
    let input = b"NOOP\r\nNOOP\r\nNOOP\r\n";
    // The greeting is still pending: nothing is consumed.
    assert_eq!(s.receive(input, now()).consumed, 0);
    s.take_output();
    assert_eq!(s.receive(input, now()).consumed, 6);
    assert_eq!(s.pending_output(), b"250 2.0.0 OK\r\n");
    s.consume_output(4);
    assert_eq!(s.pending_output(), b"2.0.0 OK\r\n");
    s.consume_output(100);
    assert_eq!(s.receive(&input[6..], now()).consumed, 6);
}

#[test]
fn zero_output_limit_still_makes_progress() {
    let mut config = config();
    config.limits.max_pending_output_bytes = 0;
    let run = drive(&config, &[b"NOOP\r\nNOOP\r\n"]);
    assert_eq!(
        run.output_text(),
        "220 mx.test LMTP slotmail ready\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
    );
}

#[test]
fn timeout_closes_with_421() {
    let mut s = Session::<()>::new(&config(), PEER, SESSION_ID);
    s.take_output();
    assert_eq!(
        s.receive(b"LHLO c\r\nMAIL FROM:<>\r\nNO", now()).consumed,
        24
    );
    assert!(s.in_transaction());
    s.take_output();
    s.timed_out();
    assert!(s.is_closed());
    assert!(!s.in_transaction());
    assert_eq!(
        s.take_output(),
        b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
    let step = s.receive(b"OP\r\n", now());
    assert_eq!(
        step,
        slotmail_lmtp::Step {
            consumed: 0,
            event: Some(Event::Close)
        }
    );
    s.timed_out();
    assert!(s.pending_output().is_empty());
}

#[test]
fn hostname_peer_and_id_are_sanitized() {
    let mut config = config();
    config.hostname = "evil host\r\n".into();
    let mut s = Session::<()>::new(&config, "(x)\r\n[1.2.3.4]", "a;b c");
    assert_eq!(s.take_output(), b"220 evilhost LMTP slotmail ready\r\n");
    let input = b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\n";
    let step = s.receive(input, now());
    assert!(matches!(step.event, Some(Event::Recipient { .. })));
    s.recipient_verdict(RcptVerdict::Accept(())).unwrap();
    let step = s.receive(b"DATA\r\n.\r\n", now());
    let Some(Event::Deliver {
        envelope, message, ..
    }) = step.event
    else {
        panic!("expected delivery")
    };
    assert_eq!(envelope.peer, "x[1.2.3.4]");
    assert_eq!(envelope.id, "abc.1");
    assert_eq!(
        String::from_utf8(message).unwrap(),
        format!(
            "Return-Path: <>\r\nReceived: from c (x[1.2.3.4])\r\n\tby evilhost (slotmail) with LMTP id abc.1;\r\n\t{NOW_TEXT}\r\n"
        )
    );
}
