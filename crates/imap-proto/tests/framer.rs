//! Framer tests: synchronizing-literal handshake, LITERAL+, literal8, every
//! limit (line, command, literal, literal count, discard cap, pending
//! input), recovery after errors, raw-line mode and STARTTLS input flushing.

use slotmail_imap_proto::*;

fn small_limits() -> Limits {
    Limits {
        max_line_bytes: 64,
        max_command_bytes: 128,
        max_literal_bytes: 100,
        max_non_sync_literal_bytes: 100,
        max_command_literal_bytes: 150,
        max_literals_per_command: 3,
        max_discard_bytes: 500,
        max_pending_input_bytes: 4096,
        max_tag_bytes: 16,
        max_nesting_depth: 8,
    }
}

/// Drains events, accepting synchronizing literals.
fn drain(f: &mut Framer) -> Vec<FramerEvent> {
    let mut v = Vec::new();
    while let Some(ev) = f.next_event() {
        if let FramerEvent::LiteralAnnounced { sync: true, .. } = ev {
            assert!(f.accept_literal());
        }
        v.push(ev);
    }
    v
}

fn frames(events: &[FramerEvent]) -> Vec<Command> {
    events
        .iter()
        .filter_map(|e| match e {
            FramerEvent::Command(f) => Some(parse_command(f).unwrap()),
            _ => None,
        })
        .collect()
}

fn errors(events: &[FramerEvent]) -> Vec<FramingError> {
    events
        .iter()
        .filter_map(|e| match e {
            FramerEvent::Error(err) => Some(err.clone()),
            _ => None,
        })
        .collect()
}

fn tag(s: &str) -> Option<Tag> {
    Tag::new(s)
}

#[test]
fn pipelined_commands_in_one_read() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\nd NO")
        .unwrap();
    let ev = drain(&mut f);
    let cmds = frames(&ev);
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[2].body, CommandBody::Logout);
    assert!(f.in_command());
    f.feed(b"OP\n").unwrap();
    let cmds = frames(&drain(&mut f));
    assert_eq!(cmds[0].tag.as_str(), "d");
    assert!(!f.in_command());
}

#[test]
fn synchronizing_literal_handshake() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a1 LOGIN {5}\r\n").unwrap();
    assert_eq!(
        f.next_event(),
        Some(FramerEvent::LiteralAnnounced {
            tag: tag("a1"),
            size: 5,
            sync: true,
            binary: false
        })
    );
    // Nothing more until the server decides, even with more input.
    f.feed(b"alice").unwrap();
    assert!(f.awaiting_decision());
    assert_eq!(f.next_event(), None);
    assert!(f.accept_literal());
    assert!(!f.accept_literal());
    assert_eq!(f.next_event(), None);
    f.feed(b" {6}\r\n").unwrap();
    assert_eq!(
        f.next_event(),
        Some(FramerEvent::LiteralAnnounced {
            tag: tag("a1"),
            size: 6,
            sync: true,
            binary: false
        })
    );
    assert!(f.accept_literal());
    f.feed(b"secret\r\n").unwrap();
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert_eq!(frame.literals().len(), 2);
    assert_eq!(frame.lines()[0], b"a1 LOGIN {5}");
    assert_eq!(frame.tag(), tag("a1"));
    assert_eq!(
        parse_command(&frame).unwrap().body,
        CommandBody::Login {
            username: b"alice".to_vec(),
            password: b"secret".to_vec()
        }
    );
}

#[test]
fn server_refuses_synchronizing_literal() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a APPEND INBOX {999}\r\nb NOOP\r\n").unwrap();
    assert!(matches!(
        f.next_event(),
        Some(FramerEvent::LiteralAnnounced {
            size: 999,
            sync: true,
            ..
        })
    ));
    // Server answers "a NO [OVERQUOTA]"; the client sends nothing more.
    assert!(f.reject_literal());
    let cmds = frames(&drain(&mut f));
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].tag.as_str(), "b");
}

#[test]
fn oversized_synchronizing_literal_is_refused_by_the_framer() {
    let mut f = Framer::new(small_limits());
    f.feed(b"a APPEND INBOX {101}\r\nb NOOP\r\n").unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].tag, tag("a"));
    assert_eq!(
        errs[0].kind,
        FramingErrorKind::LiteralTooLarge {
            size: 101,
            limit: 100,
            sync: true
        }
    );
    assert_eq!(errs[0].recovery, Recovery::CommandDiscarded);
    assert_eq!(
        errs[0].response(),
        b"a NO [TOOBIG] Literal too large (limit 100 bytes)\r\n"
    );
    assert_eq!(frames(&ev).len(), 1);
}

#[test]
fn literal_plus_and_literal8() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a APPEND INBOX (\\Seen) {5+}\r\nhello ~{3+}\r\na\0c\r\n")
        .unwrap();
    let ev = drain(&mut f);
    assert_eq!(
        ev[0],
        FramerEvent::LiteralAnnounced {
            tag: tag("a"),
            size: 5,
            sync: false,
            binary: false
        }
    );
    assert_eq!(
        ev[1],
        FramerEvent::LiteralAnnounced {
            tag: tag("a"),
            size: 3,
            sync: false,
            binary: true
        }
    );
    let FramerEvent::Command(frame) = &ev[2] else {
        panic!()
    };
    assert_eq!(
        frame.literals()[1],
        Literal {
            data: b"a\0c".to_vec(),
            sync: false,
            binary: true
        }
    );
    let CommandBody::Append { messages, .. } = parse_command(frame).unwrap().body else {
        panic!()
    };
    assert_eq!(messages.len(), 2);
}

#[test]
fn zero_length_literals() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a LOGIN {0}\r\n {0+}\r\n\r\n").unwrap();
    let ev = drain(&mut f);
    let cmds = frames(&ev);
    assert_eq!(
        cmds[0].body,
        CommandBody::Login {
            username: vec![],
            password: vec![]
        }
    );
}

#[test]
fn oversized_non_sync_literal_is_discarded_and_session_continues() {
    let mut f = Framer::new(small_limits());
    let mut input = b"a APPEND INBOX {200+}\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 200]);
    input.extend_from_slice(b" {5+}\r\nhello\r\nb NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].tag, tag("a"));
    assert!(matches!(
        errs[0].kind,
        FramingErrorKind::LiteralTooLarge {
            size: 200,
            sync: false,
            ..
        }
    ));
    assert!(!errs[0].is_fatal());
    assert_eq!(
        errs[0].response(),
        b"a BAD [TOOBIG] Literal too large (limit 100 bytes)\r\n"
    );
    let cmds = frames(&ev);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].tag.as_str(), "b");
}

#[test]
fn non_sync_literal_above_discard_cap_closes() {
    let mut f = Framer::new(small_limits());
    f.feed(b"a APPEND INBOX {100000+}\r\nxxxx").unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].is_fatal());
    assert_eq!(errs[0].tag, tag("a"));
    let resp = String::from_utf8(errs[0].response()).unwrap();
    assert!(resp.starts_with("a BAD [TOOBIG]"), "{resp}");
    assert!(resp.contains("\r\n* BYE "), "{resp}");
    assert!(f.is_closed());
    f.feed(b"b NOOP\r\n").unwrap();
    assert_eq!(f.next_event(), None);
}

#[test]
fn literal_of_overflowing_size_closes() {
    let mut f = Framer::new(small_limits());
    f.feed(b"a LOGIN {99999999999999999999999+}\r\n").unwrap();
    let errs = errors(&drain(&mut f));
    assert!(matches!(
        errs[0].kind,
        FramingErrorKind::LiteralTooLarge { size: u64::MAX, .. }
    ));
    assert!(errs[0].is_fatal());
}

#[test]
fn server_rejects_non_sync_literal_after_announcement() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a APPEND INBOX {10+}\r\n0123456789 {3+}\r\nabc\r\nb NOOP\r\n")
        .unwrap();
    assert!(matches!(
        f.next_event(),
        Some(FramerEvent::LiteralAnnounced { sync: false, .. })
    ));
    // E.g. over quota: the server answers "a NO [OVERQUOTA]" and drops the rest.
    assert!(f.reject_literal());
    let ev = drain(&mut f);
    assert!(errors(&ev).is_empty());
    let cmds = frames(&ev);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].tag.as_str(), "b");
    assert!(!f.reject_literal());
}

#[test]
fn line_too_long_is_reported_with_tag_and_skipped() {
    let mut f = Framer::new(small_limits());
    let mut input = b"tag7 SEARCH TEXT ".to_vec();
    input.extend_from_slice(&[b'a'; 100]);
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].tag, tag("tag7"));
    assert_eq!(errs[0].kind, FramingErrorKind::LineTooLong { limit: 64 });
    assert_eq!(
        errs[0].response(),
        b"tag7 BAD [TOOBIG] Line too long (limit 64 bytes)\r\n"
    );
    assert_eq!(frames(&ev)[0].tag.as_str(), "b");
}

#[test]
fn line_too_long_with_trailing_literal_discards_the_literal_too() {
    let mut f = Framer::new(small_limits());
    let mut input = b"t SEARCH TEXT ".to_vec();
    input.extend_from_slice(&[b'a'; 100]);
    input.extend_from_slice(b" {4+}\r\nb NO\r\nc NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    assert_eq!(errors(&ev).len(), 1);
    let cmds = frames(&ev);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].tag.as_str(), "c");
}

#[test]
fn line_exactly_at_limit_is_accepted() {
    let mut f = Framer::new(small_limits());
    let mut line = b"a LOGIN x ".to_vec();
    line.resize(64, b'y');
    line.extend_from_slice(b"\r\n");
    f.feed(&line).unwrap();
    assert_eq!(frames(&drain(&mut f)).len(), 1);
    // 65 bytes plus bare LF is one too many.
    let mut line = b"a LOGIN x ".to_vec();
    line.resize(65, b'y');
    line.push(b'\n');
    f.feed(&line).unwrap();
    assert_eq!(
        errors(&drain(&mut f))[0].kind,
        FramingErrorKind::LineTooLong { limit: 64 }
    );
}

#[test]
fn command_too_long_across_literals() {
    let mut f = Framer::new(small_limits());
    let chunk = format!("a ID (\"k\" {{1+}}\r\nv \"{}\" {{1+}}\r\n", "x".repeat(40));
    let mut input = chunk.into_bytes();
    for _ in 0..3 {
        input.extend_from_slice(format!("w \"{}\" {{1+}}\r\n", "x".repeat(50)).as_bytes());
    }
    input.extend_from_slice(b"z)\r\nb NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].tag, tag("a"));
    assert!(matches!(
        errs[0].kind,
        FramingErrorKind::CommandTooLong { .. } | FramingErrorKind::TooManyLiterals { .. }
    ));
    assert_eq!(frames(&ev).last().unwrap().tag.as_str(), "b");
}

#[test]
fn too_many_literals() {
    let mut f = Framer::new(small_limits());
    f.feed(b"a APPEND x {1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd\r\nb NOOP\r\n")
        .unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(errs[0].kind, FramingErrorKind::TooManyLiterals { limit: 3 });
    assert_eq!(errs[0].response_code(), ResponseCode::Limit);
    assert_eq!(frames(&ev)[0].tag.as_str(), "b");
}

#[test]
fn command_literal_total_is_bounded() {
    let mut f = Framer::new(small_limits());
    let mut input = b"a APPEND x {100+}\r\n".to_vec();
    input.extend_from_slice(&[b'm'; 100]);
    input.extend_from_slice(b" {60}\r\nb NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    let errs = errors(&ev);
    assert_eq!(
        errs[0].kind,
        FramingErrorKind::CommandLiteralsTooLarge { limit: 150 }
    );
    assert_eq!(frames(&ev)[0].tag.as_str(), "b");
}

#[test]
fn endless_line_hits_discard_cap() {
    let mut f = Framer::new(small_limits());
    for _ in 0..10 {
        f.feed(&[b'z'; 100]).unwrap();
        let ev = drain(&mut f);
        if let Some(e) = errors(&ev).first() {
            assert!(e.is_fatal());
            assert_eq!(e.tag, None);
            assert!(f.is_closed());
            return;
        }
    }
    panic!("discard cap never hit");
}

#[test]
fn raw_line_mode_for_authenticate_and_idle() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\nb IDLE\r\nDONE\r\nc NOOP\r\n")
        .unwrap();
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert!(matches!(
        parse_command(&frame).unwrap().body,
        CommandBody::Authenticate { .. }
    ));
    assert!(f.expect_raw_line());
    assert_eq!(
        f.next_event(),
        Some(FramerEvent::RawLine(b"AHVzZXIAcGFzcw==".to_vec()))
    );
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert_eq!(parse_command(&frame).unwrap().body, CommandBody::Idle);
    assert!(f.expect_raw_line());
    assert_eq!(f.next_event(), Some(FramerEvent::RawLine(b"DONE".to_vec())));
    // Back in command mode; a raw line may look like a literal marker.
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert_eq!(parse_command(&frame).unwrap().body, CommandBody::Noop);
    assert!(f.expect_raw_line());
    f.feed(b"abc{5}\r\n").unwrap();
    assert_eq!(
        f.next_event(),
        Some(FramerEvent::RawLine(b"abc{5}".to_vec()))
    );
}

#[test]
fn raw_line_too_long_is_skipped() {
    let mut f = Framer::new(small_limits());
    assert!(f.expect_raw_line());
    let mut input = vec![b'A'; 200];
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    f.feed(&input).unwrap();
    let ev = drain(&mut f);
    assert_eq!(errors(&ev)[0].tag, None);
    assert_eq!(
        errors(&ev)[0].response(),
        b"* BAD [TOOBIG] Line too long (limit 64 bytes)\r\n"
    );
    assert_eq!(frames(&ev)[0].tag.as_str(), "b");
}

#[test]
fn raw_line_only_between_commands() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a LOGIN {3}\r\n").unwrap();
    f.next_event();
    assert!(!f.expect_raw_line());
}

#[test]
fn pending_input_is_bounded() {
    let mut f = Framer::new(Limits {
        max_pending_input_bytes: 16,
        ..Limits::default()
    });
    assert_eq!(f.input_room(), 16);
    f.feed(b"a LOGIN {3}\r\n").unwrap();
    assert!(matches!(
        f.next_event(),
        Some(FramerEvent::LiteralAnnounced { .. })
    ));
    f.feed(b"0123456789").unwrap();
    assert_eq!(f.input_room(), 6);
    let e = f.feed(b"0123456789").unwrap_err();
    assert_eq!(
        e,
        InputOverflow {
            pending: 10,
            offered: 10,
            limit: 16
        }
    );
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a STARTTLS\r\nb LOGIN evil injected\r\n").unwrap();
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert_eq!(parse_command(&frame).unwrap().body, CommandBody::StartTls);
    assert_eq!(f.discard_pending_input(), 23);
    assert_eq!(f.next_event(), None);
}

#[test]
fn byte_by_byte_matches_one_chunk() {
    let mut input =
        b"a LOGIN {5}\r\nalice \"pw\"\r\nb APPEND INBOX ~{3+}\r\nx\0y\r\nc NOOP\r\n".to_vec();
    input.extend_from_slice(&[b'q'; 80]);
    input.extend_from_slice(b"\r\nd SELECT INBOX\r\n");
    let mut whole = Framer::new(small_limits());
    whole.feed(&input).unwrap();
    let expected = drain(&mut whole);
    let mut bytewise = Framer::new(small_limits());
    let mut got = Vec::new();
    for b in &input {
        bytewise.feed(std::slice::from_ref(b)).unwrap();
        got.extend(drain(&mut bytewise));
    }
    assert_eq!(got, expected);
    assert_eq!(frames(&got).len(), 4);
    assert_eq!(errors(&got).len(), 1);
}

#[test]
fn compress_hands_over_pipelined_bytes() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c\x01\x02").unwrap();
    let Some(FramerEvent::Command(frame)) = f.next_event() else {
        panic!()
    };
    assert_eq!(
        parse_command(&frame).unwrap().body,
        CommandBody::Compress {
            mechanism: "DEFLATE".into()
        }
    );
    // The server inflates these and feeds the result back.
    assert_eq!(f.take_pending_input(), b"\x78\x9c\x01\x02");
    assert_eq!(f.pending_input(), 0);
    f.feed(b"b NOOP\r\n").unwrap();
    assert!(matches!(f.next_event(), Some(FramerEvent::Command(_))));
}
