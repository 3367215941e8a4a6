//! Error tests for the command parser: malformed lines get a specific
//! [`ParseErrorKind`], carry the tag when it was read, and produce a
//! `tag BAD ...` answer.

use slotmail_imap_proto::*;

fn err(wire: &[u8]) -> ParseError {
    match parse_command_bytes(wire) {
        Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(wire)),
        Err(e) => e,
    }
}

fn kind(wire: &str) -> ParseErrorKind {
    err(wire.as_bytes()).kind
}

#[test]
fn tag_errors() {
    assert_eq!(
        err(b"\r\n"),
        ParseError {
            tag: None,
            kind: ParseErrorKind::EmptyCommand
        }
    );
    assert_eq!(err(b" NOOP\r\n").kind, ParseErrorKind::InvalidTag);
    assert_eq!(err(b"+ NOOP\r\n").kind, ParseErrorKind::InvalidTag);
    assert_eq!(err(b"* NOOP\r\n").kind, ParseErrorKind::InvalidTag);
    let e = err(b"a001\r\n");
    assert_eq!(e.tag.as_ref().map(Tag::as_str), Some("a001"));
    assert_eq!(e.kind, ParseErrorKind::MissingCommand);
    let e = err(b"a001(NOOP\r\n");
    assert_eq!(e.kind, ParseErrorKind::MissingSpAfterTag);
    assert_eq!(e.to_string(), "Missing SP after tag");
    assert_eq!(e.response(), b"a001 BAD Missing SP after tag\r\n");
}

#[test]
fn unknown_commands() {
    let e = err(b"x1 FROB foo\r\n");
    assert_eq!(e.kind, ParseErrorKind::UnknownCommand("FROB".into()));
    assert_eq!(e.response(), b"x1 BAD Unknown command FROB\r\n");
    assert_eq!(
        kind("x UID FROB 1\r\n"),
        ParseErrorKind::UnknownCommand("UID FROB".into())
    );
    assert_eq!(kind("x UID\r\n"), ParseErrorKind::Expected("SP"));
    assert_eq!(kind("x NOOP extra\r\n"), ParseErrorKind::TrailingData);
    assert_eq!(kind("x NOOP \r\n"), ParseErrorKind::TrailingData);
    assert_eq!(kind("x LOGIN alice\r\n"), ParseErrorKind::Expected("SP"));
    assert_eq!(kind("x ENABLE\r\n"), ParseErrorKind::Expected("capability"));
}

#[test]
fn sequence_set_errors() {
    assert!(
        matches!(kind("a FETCH 0 FLAGS\r\n"), ParseErrorKind::InvalidSequenceSet(m) if m.contains('0'))
    );
    assert!(matches!(
        kind("a FETCH 1:x FLAGS\r\n"),
        ParseErrorKind::InvalidSequenceSet(_)
    ));
    assert!(matches!(
        kind("a FETCH 1,,2 FLAGS\r\n"),
        ParseErrorKind::InvalidSequenceSet(_)
    ));
    assert!(matches!(
        kind("a FETCH 4294967296 FLAGS\r\n"),
        ParseErrorKind::InvalidSequenceSet(_)
    ));
    assert!(matches!(
        kind("a FETCH FLAGS\r\n"),
        ParseErrorKind::InvalidSequenceSet(_)
    ));
    // `$` (SEARCHRES) stands alone, never inside a list or range.
    for bad in ["a UID FETCH 1,$ FLAGS\r\n", "a FETCH $:4 FLAGS\r\n"] {
        assert!(matches!(kind(bad), ParseErrorKind::InvalidSequenceSet(ref m) if m.contains('$')));
    }
}

#[test]
fn mailbox_name_errors() {
    for bad in [
        "&Jjo",
        "&AEE-",
        "&U,BTFw-&ZeVnLIqe-",
        "a&",
        "&2AA-",
        "&U/BTFw-",
    ] {
        let e = err(format!("t SELECT \"{bad}\"\r\n").as_bytes());
        assert_eq!(e.tag.as_ref().unwrap().as_str(), "t");
        assert!(
            matches!(e.kind, ParseErrorKind::InvalidMailboxName(_)),
            "{bad}: {:?}",
            e.kind
        );
        assert!(e.to_string().starts_with("Invalid mailbox name: "), "{e}");
    }
    // 8-bit names need UTF8=ACCEPT.
    assert!(matches!(
        err("t SELECT {6+}\r\nEntw\u{fc}\r\n".as_bytes()).kind,
        ParseErrorKind::InvalidMailboxName(_)
    ));
    // Control characters, even when BASE64-encoded (U+0007).
    assert!(matches!(
        kind("t CREATE &AAc-\r\n"),
        ParseErrorKind::InvalidMailboxName(_)
    ));
    // Invalid UTF-8 in UTF-8 mode.
    let opts = ParseOptions {
        encoding: MailboxEncoding::Utf8,
        ..Default::default()
    };
    let e = parse_command_bytes_with(b"t SELECT {2+}\r\n\xff\xfe\r\n", &opts).unwrap_err();
    assert!(matches!(e.kind, ParseErrorKind::InvalidMailboxName(_)));
    // Invalid patterns are rejected too.
    assert!(matches!(
        kind("t LIST \"\" &-&\r\n"),
        ParseErrorKind::InvalidMailboxName(_)
    ));
}

#[test]
fn string_and_literal_errors() {
    assert_eq!(
        kind("a LOGIN {abc}\r\n"),
        ParseErrorKind::InvalidString("invalid literal")
    );
    assert!(matches!(
        kind("a LOGIN {\r\n"),
        ParseErrorKind::InvalidString(_)
    ));
    assert!(matches!(
        kind("a LOGIN {} x\r\n"),
        ParseErrorKind::InvalidString(_)
    ));
    assert!(matches!(
        kind("a LOGIN \"unterminated\r\n"),
        ParseErrorKind::InvalidString(_)
    ));
    assert!(matches!(
        kind("a LOGIN \"bad\\escape\" x\r\n"),
        ParseErrorKind::InvalidString(_)
    ));
    assert!(matches!(
        err(b"a LOGIN {3+}\r\na\0b x\r\n").kind,
        ParseErrorKind::InvalidString(_)
    ));
    assert!(matches!(
        err(b"a LOGIN ~{3+}\r\nabc x\r\n").kind,
        ParseErrorKind::InvalidString(_)
    ));
    // A literal glued to an atom.
    assert!(matches!(
        kind("a LOGIN x{1+}\r\ny z\r\n"),
        ParseErrorKind::Expected("SP")
    ));
}

#[test]
fn argument_errors() {
    assert_eq!(
        kind("a SEARCH FROBNICATE\r\n"),
        ParseErrorKind::UnknownSearchKey("FROBNICATE".into())
    );
    assert_eq!(kind("a SEARCH\r\n"), ParseErrorKind::Expected("SP"));
    assert_eq!(
        kind("a SEARCH SINCE 31-Feb-2020\r\n"),
        ParseErrorKind::InvalidDate
    );
    assert_eq!(
        kind("a SEARCH SINCE yesterday\r\n"),
        ParseErrorKind::InvalidDate
    );
    assert_eq!(
        kind("a SEARCH (SEEN\r\n"),
        ParseErrorKind::Expected("')' closing search keys")
    );
    assert!(matches!(
        kind("a SEARCH KEYWORD \\Seen\r\n"),
        ParseErrorKind::InvalidFlag(_)
    ));
    assert_eq!(
        kind("a SEARCH LARGER 99999999999999999999\r\n"),
        ParseErrorKind::NumberOutOfRange
    );
    assert_eq!(
        kind("a FETCH 1 (FROB)\r\n"),
        ParseErrorKind::UnknownFetchAttribute("FROB".into())
    );
    assert_eq!(
        kind("a FETCH 1 BODY.PEEK\r\n"),
        ParseErrorKind::UnknownFetchAttribute("BODY.PEEK".into())
    );
    assert!(matches!(
        kind("a FETCH 1 BODY[MIME]\r\n"),
        ParseErrorKind::Invalid(_)
    ));
    assert!(matches!(
        kind("a FETCH 1 BODY[]<5.0>\r\n"),
        ParseErrorKind::Expected(_)
    ));
    assert!(matches!(
        kind("a FETCH 1 (FLAGS) (VANISHED)\r\n"),
        ParseErrorKind::Invalid(_)
    ));
    assert!(matches!(
        kind("a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n"),
        ParseErrorKind::Invalid(_)
    ));
    assert_eq!(
        kind("a FETCH 1 (FLAGS) (FROB)\r\n"),
        ParseErrorKind::UnknownOption("FROB".into())
    );
    assert_eq!(
        kind("a STATUS x (FROB)\r\n"),
        ParseErrorKind::UnknownStatusItem("FROB".into())
    );
    assert_eq!(
        kind("a STATUS x ()\r\n"),
        ParseErrorKind::Expected("status item")
    );
    assert!(matches!(
        kind("a STORE 1 FLAGS (\\Seen\r\n"),
        ParseErrorKind::Expected(_)
    ));
    assert!(matches!(
        kind("a STORE 1 LABELS (x)\r\n"),
        ParseErrorKind::Invalid(_)
    ));
    assert!(matches!(
        kind("a STORE 1 FLAGS (\\)\r\n"),
        ParseErrorKind::InvalidFlag(_)
    ));
    assert_eq!(
        kind("a SELECT x (FROB)\r\n"),
        ParseErrorKind::UnknownOption("FROB".into())
    );
    assert_eq!(
        kind("a SELECT x (QRESYNC (0 1))\r\n"),
        ParseErrorKind::Expected("non-zero number")
    );
    assert_eq!(
        kind("a CREATE x (FROB (y))\r\n"),
        ParseErrorKind::UnknownOption("FROB".into())
    );
    assert!(matches!(
        kind("a LIST (RECURSIVEMATCH) \"\" *\r\n"),
        ParseErrorKind::Invalid(_)
    ));
    assert_eq!(
        kind("a LIST (FROB) \"\" *\r\n"),
        ParseErrorKind::UnknownOption("FROB".into())
    );
    assert_eq!(
        kind("a LIST \"\" * RETURN (FROB)\r\n"),
        ParseErrorKind::UnknownOption("FROB".into())
    );
    assert_eq!(kind("a APPEND x\r\n"), ParseErrorKind::Expected("SP"));
    assert_eq!(
        kind("a APPEND x (\\Seen) hello\r\n"),
        ParseErrorKind::Expected("message literal")
    );
    assert!(matches!(
        kind("a APPEND x UTF8 (~{1+}\r\na)\r\n"),
        ParseErrorKind::Unsupported(_)
    ));
    assert_eq!(
        err(b"a APPEND x \"32-Jan-2020 00:00:00 +0000\" {1+}\r\na\r\n").kind,
        ParseErrorKind::InvalidDateTime
    );
    assert!(matches!(
        kind("a AUTHENTICATE PLAIN ab=c\r\n"),
        ParseErrorKind::Expected(_)
    ));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(100), ")".repeat(100));
    assert_eq!(
        kind(&deep),
        ParseErrorKind::TooDeep(DEFAULT_MAX_NESTING_DEPTH)
    );
    let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(100));
    assert_eq!(
        kind(&nots),
        ParseErrorKind::TooDeep(DEFAULT_MAX_NESTING_DEPTH)
    );
    // Within the limit it parses.
    let ok = format!("a SEARCH {}ALL{}\r\n", "(".repeat(10), ")".repeat(10));
    assert!(parse_command_bytes(ok.as_bytes()).is_ok());
}

#[test]
fn framing_problems_via_parse_command_bytes() {
    assert!(matches!(err(b"a NOOP").kind, ParseErrorKind::Framing(_)));
    assert!(matches!(
        err(b"a NOOP\r\nb NOOP\r\n").kind,
        ParseErrorKind::Framing(_)
    ));
    assert!(matches!(
        err(b"a LOGIN {5}\r\nab").kind,
        ParseErrorKind::Framing(_)
    ));
}
