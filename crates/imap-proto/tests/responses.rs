//! Response tests: byte-exact encoding of typical server lines and writer
//! helpers, and the client-side [`ResponseReader`] on server transcripts
//! from the RFC examples (fed whole and byte by byte), plus its limits.

use slotmail_imap_proto::response::{
    write_astring, write_continuation, write_flag_list, write_id_set, write_literal, write_mailbox,
    write_nstring, write_quoted_or_literal, write_section, write_status,
};
use slotmail_imap_proto::*;

fn enc(r: &Response) -> String {
    let mut out = Vec::new();
    r.encode(&mut out);
    String::from_utf8(out).unwrap()
}

fn read_all(bytes: &[u8]) -> Vec<Result<Response, ResponseError>> {
    let mut r = ResponseReader::new(ResponseLimits::default());
    r.feed(bytes).unwrap();
    let mut v = Vec::new();
    while let Some(x) = r.next_response() {
        v.push(x);
    }
    assert!(!r.in_response(), "left partial response");
    // Byte by byte gives the same.
    let mut r = ResponseReader::new(ResponseLimits::default());
    let mut w = Vec::new();
    for b in bytes {
        r.feed(std::slice::from_ref(b)).unwrap();
        while let Some(x) = r.next_response() {
            w.push(x);
        }
    }
    assert_eq!(v, w);
    v
}

fn ok_all(bytes: &[u8]) -> Vec<Response> {
    read_all(bytes).into_iter().map(|r| r.unwrap()).collect()
}

fn set(s: &str) -> SequenceSet {
    s.parse().unwrap()
}

#[test]
fn writer_helpers() {
    let mut o = Vec::new();
    write_astring(&mut o, b"INBOX");
    o.push(b' ');
    write_astring(&mut o, b"two words");
    o.push(b' ');
    write_astring(&mut o, b"");
    o.push(b' ');
    write_nstring(&mut o, None);
    o.push(b' ');
    write_nstring(&mut o, Some(b"NIL"));
    o.push(b' ');
    write_quoted_or_literal(&mut o, b"say \"hi\"\\");
    o.push(b' ');
    write_quoted_or_literal(&mut o, b"line1\r\nline2");
    o.push(b' ');
    write_quoted_or_literal(&mut o, "caf\u{e9}".as_bytes());
    o.push(b' ');
    write_literal(&mut o, b"x");
    assert_eq!(
        String::from_utf8(o).unwrap(),
        "INBOX \"two words\" \"\" NIL \"NIL\" \"say \\\"hi\\\"\\\\\" {12}\r\nline1\r\nline2 {5}\r\ncaf\u{e9} {1}\r\nx"
    );
    let mut o = Vec::new();
    write_flag_list(
        &mut o,
        &[
            Flag::Seen,
            Flag::Keyword("$Junk".into()),
            Flag::Extension("X".into()),
        ],
    );
    assert_eq!(o, b"(\\Seen $Junk \\X)");
    let mut o = Vec::new();
    assert!(write_id_set(&mut o, &[1, 2, 3, 5, 8, 9, 10]));
    assert_eq!(o, b"1:3,5,8:10");
    assert!(!write_id_set(&mut o, &[]));
    let mut o = Vec::new();
    write_mailbox(
        &mut o,
        &MailboxName::new("Entw\u{fc}rfe").unwrap(),
        MailboxEncoding::ModifiedUtf7,
    );
    o.push(b' ');
    write_mailbox(
        &mut o,
        &MailboxName::new("Entw\u{fc}rfe").unwrap(),
        MailboxEncoding::Utf8,
    );
    assert_eq!(
        String::from_utf8(o).unwrap(),
        "\"Entw&APw-rfe\" \"Entw\u{fc}rfe\""
    );
    let mut o = Vec::new();
    write_section(
        &mut o,
        &Section {
            part: vec![1, 2],
            text: Some(SectionText::HeaderFields(vec!["From".into(), "To".into()])),
        },
    );
    assert_eq!(o, b"[1.2.HEADER.FIELDS (From To)]");
    let mut o = Vec::new();
    write_status(
        &mut o,
        Tag::new("A1").as_ref(),
        StatusKind::Ok,
        Some(&ResponseCode::ReadWrite),
        "SELECT\r\ndone",
    );
    write_status(&mut o, None, StatusKind::Bye, None, "");
    write_continuation(&mut o, "Ready");
    assert_eq!(
        o,
        b"A1 OK [READ-WRITE] SELECT  done\r\n* BYE\r\n+ Ready\r\n"
    );
}

#[test]
fn status_lines_with_codes() {
    let st = |tag: Option<&str>, kind, code, text: &str| Response::Status {
        tag: tag.and_then(Tag::new),
        kind,
        code,
        text: text.into(),
    };
    let cases = [
        (
            st(
                Some("A142"),
                StatusKind::Ok,
                Some(ResponseCode::ReadWrite),
                "SELECT completed",
            ),
            "A142 OK [READ-WRITE] SELECT completed\r\n",
        ),
        (
            st(
                None,
                StatusKind::Ok,
                Some(ResponseCode::PermanentFlags {
                    flags: vec![Flag::Deleted, Flag::Seen],
                    allow_new_keywords: true,
                }),
                "Limited",
            ),
            "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        ),
        (
            st(
                Some("A003"),
                StatusKind::Ok,
                Some(ResponseCode::AppendUid {
                    uid_validity: 38505,
                    uids: set("3955"),
                }),
                "APPEND completed",
            ),
            "A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
        ),
        (
            st(
                Some("A004"),
                StatusKind::Ok,
                Some(ResponseCode::CopyUid {
                    uid_validity: 38505,
                    source: SequenceSet::from_ids(&[304, 319, 320]).unwrap(),
                    dest: SequenceSet::from_ids(&[3956, 3957, 3958]).unwrap(),
                }),
                "Done",
            ),
            "A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
        ),
        (
            st(
                None,
                StatusKind::Ok,
                Some(ResponseCode::HighestModSeq(715194045007)),
                "Highest",
            ),
            "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
        ),
        (
            st(
                Some("d105"),
                StatusKind::Ok,
                Some(ResponseCode::Modified(set("7,9"))),
                "Conditional STORE failed",
            ),
            "d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n",
        ),
        (
            st(
                Some("a"),
                StatusKind::No,
                Some(ResponseCode::TryCreate),
                "No such mailbox",
            ),
            "a NO [TRYCREATE] No such mailbox\r\n",
        ),
        (
            st(
                None,
                StatusKind::Ok,
                Some(ResponseCode::Capability(vec![
                    "IMAP4rev1".into(),
                    "LITERAL+".into(),
                ])),
                "ready",
            ),
            "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
        ),
        (
            st(
                Some("a"),
                StatusKind::No,
                Some(ResponseCode::BadCharset(vec!["UTF-8".into()])),
                "x",
            ),
            "a NO [BADCHARSET (UTF-8)] x\r\n",
        ),
        (
            st(
                Some("a"),
                StatusKind::Ok,
                Some(ResponseCode::Other {
                    name: "X-FOO".into(),
                    args: Some("1 2".into()),
                }),
                "ok",
            ),
            "a OK [X-FOO 1 2] ok\r\n",
        ),
        (
            st(None, StatusKind::PreAuth, None, "welcome"),
            "* PREAUTH welcome\r\n",
        ),
        (st(Some("t"), StatusKind::Bad, None, ""), "t BAD\r\n"),
    ];
    for (resp, wire) in cases {
        assert_eq!(enc(&resp), wire);
        assert_eq!(ok_all(wire.as_bytes()), vec![resp]);
    }
    // Every argument-less code survives a round trip.
    for name in [
        "ALERT",
        "PARSE",
        "READ-ONLY",
        "READ-WRITE",
        "TRYCREATE",
        "UIDNOTSTICKY",
        "NOMODSEQ",
        "CLOSED",
        "UNAVAILABLE",
        "AUTHENTICATIONFAILED",
        "AUTHORIZATIONFAILED",
        "EXPIRED",
        "PRIVACYREQUIRED",
        "CONTACTADMIN",
        "NOPERM",
        "INUSE",
        "EXPUNGEISSUED",
        "CORRUPTION",
        "SERVERBUG",
        "CLIENTBUG",
        "CANNOT",
        "LIMIT",
        "OVERQUOTA",
        "ALREADYEXISTS",
        "NONEXISTENT",
        "TOOBIG",
        "COMPRESSIONACTIVE",
        "USEATTR",
        "HASCHILDREN",
    ] {
        let wire = format!("a NO [{name}] text\r\n");
        let r = ok_all(wire.as_bytes());
        let Response::Status {
            code: Some(code), ..
        } = &r[0]
        else {
            panic!("{name}")
        };
        assert!(
            !matches!(code, ResponseCode::Other { .. }),
            "{name} parsed as Other"
        );
        assert_eq!(enc(&r[0]), wire);
    }
}

#[test]
fn data_lines() {
    let cases: Vec<(Data, &str)> = vec![
        (Data::Exists(172), "* 172 EXISTS\r\n"),
        (Data::Recent(1), "* 1 RECENT\r\n"),
        (Data::Expunge(3), "* 3 EXPUNGE\r\n"),
        (
            Data::Flags(vec![
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft,
            ]),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        ),
        (
            Data::List(ListData {
                attributes: vec![MailboxAttr::NoSelect],
                delimiter: Some('/'),
                mailbox: MailboxName::new("~/Mail/foo").unwrap(),
                extended: vec![],
            }),
            "* LIST (\\Noselect) \"/\" \"~/Mail/foo\"\r\n",
        ),
        (
            Data::List(ListData {
                attributes: vec![MailboxAttr::Subscribed, MailboxAttr::Sent],
                delimiter: Some('.'),
                mailbox: MailboxName::new("Gesendete Objekte").unwrap(),
                extended: vec![(
                    "CHILDINFO".into(),
                    Value::List(vec![Value::String(b"SUBSCRIBED".to_vec())]),
                )],
            }),
            "* LIST (\\Subscribed \\Sent) \".\" \"Gesendete Objekte\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
        ),
        (
            Data::Lsub(ListData {
                attributes: vec![],
                delimiter: None,
                mailbox: MailboxName::inbox(),
                extended: vec![],
            }),
            "* LSUB () NIL \"INBOX\"\r\n",
        ),
        (
            Data::Status {
                mailbox: MailboxName::new("blurdybloop").unwrap(),
                items: vec![(StatusItem::Messages, 231), (StatusItem::UidNext, 44292)],
            },
            "* STATUS \"blurdybloop\" (MESSAGES 231 UIDNEXT 44292)\r\n",
        ),
        (
            Data::Search {
                ids: vec![2, 84, 882],
                mod_seq: None,
            },
            "* SEARCH 2 84 882\r\n",
        ),
        (
            Data::Search {
                ids: vec![],
                mod_seq: None,
            },
            "* SEARCH\r\n",
        ),
        (
            Data::Search {
                ids: vec![2, 5, 6],
                mod_seq: Some(917162500),
            },
            "* SEARCH 2 5 6 (MODSEQ 917162500)\r\n",
        ),
        (
            Data::ESearch {
                tag: Some("A282".into()),
                uid: false,
                min: Some(2),
                max: None,
                all: None,
                count: Some(3),
                mod_seq: None,
            },
            "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n",
        ),
        (
            Data::ESearch {
                tag: Some("A301".into()),
                uid: true,
                min: None,
                max: None,
                all: Some(set("17,900,901")),
                count: None,
                mod_seq: None,
            },
            "* ESEARCH (TAG \"A301\") UID ALL 17,900,901\r\n",
        ),
        (
            Data::Vanished {
                earlier: true,
                uids: set("41,43:116,118,120:211,214:540"),
            },
            "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n",
        ),
        (
            Data::Vanished {
                earlier: false,
                uids: set("405,407,410,425"),
            },
            "* VANISHED 405,407,410,425\r\n",
        ),
        (
            Data::Capability(vec!["IMAP4rev1".into(), "IDLE".into()]),
            "* CAPABILITY IMAP4rev1 IDLE\r\n",
        ),
        (
            Data::Enabled(vec!["CONDSTORE".into()]),
            "* ENABLED CONDSTORE\r\n",
        ),
        (
            Data::Namespace {
                personal: vec![NamespaceDescr {
                    prefix: String::new(),
                    delimiter: Some('/'),
                }],
                other: vec![],
                shared: vec![NamespaceDescr {
                    prefix: "Shared/".into(),
                    delimiter: Some('/'),
                }],
            },
            "* NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))\r\n",
        ),
        (
            Data::Quota {
                root: String::new(),
                resources: vec![QuotaResource {
                    name: "STORAGE".into(),
                    usage: 10,
                    limit: 512,
                }],
            },
            "* QUOTA \"\" (STORAGE 10 512)\r\n",
        ),
        (
            Data::QuotaRoot {
                mailbox: MailboxName::inbox(),
                roots: vec![String::new()],
            },
            "* QUOTAROOT \"INBOX\" \"\"\r\n",
        ),
        (
            Data::Id(Some(vec![
                (b"name".to_vec(), Some(b"slotmail".to_vec())),
                (b"os".to_vec(), None),
            ])),
            "* ID (\"name\" \"slotmail\" \"os\" NIL)\r\n",
        ),
        (Data::Id(None), "* ID NIL\r\n"),
    ];
    for (data, wire) in cases {
        let resp = Response::Data(data);
        assert_eq!(enc(&resp), wire);
        assert_eq!(ok_all(wire.as_bytes()), vec![resp], "{wire}");
    }
}

#[test]
fn fetch_responses_with_literals() {
    let header =
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nSubject: afternoon meeting\r\n\r\n";
    let resp = Response::Data(Data::Fetch {
        seq: 12,
        items: vec![
            FetchItem::Flags(vec![Flag::Seen]),
            FetchItem::InternalDate(
                DateTime::new(Date::new(1996, 7, 17).unwrap(), 2, 44, 25, -420).unwrap(),
            ),
            FetchItem::Rfc822Size(4286),
            FetchItem::Uid(4827313),
            FetchItem::ModSeq(65402),
            FetchItem::BodySection {
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Header),
                },
                origin: None,
                data: Some(header.to_vec()),
            },
            FetchItem::BodySection {
                section: Section::default(),
                origin: Some(0),
                data: Some(b"abc".to_vec()),
            },
            FetchItem::Binary {
                part: vec![1],
                origin: None,
                data: Some(b"\0\x01".to_vec()),
            },
            FetchItem::BinarySize {
                part: vec![1],
                size: 2,
            },
        ],
    });
    let wire = enc(&resp);
    assert_eq!(
        wire,
        format!(
            "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 UID 4827313 MODSEQ (65402) BODY[HEADER] {{{}}}\r\n{} BODY[]<0> \"abc\" BINARY[1] ~{{2}}\r\n\0\x01 BINARY.SIZE[1] 2)\r\n",
            header.len(),
            String::from_utf8_lossy(header)
        )
    );
    assert_eq!(ok_all(wire.as_bytes()), vec![resp]);
}

#[test]
fn envelope_and_bodystructure_are_generic_values() {
    // RFC 3501 §7.4.2 example (abridged), with a literal subject.
    let wire = b"* 12 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" {16}\r\nIMAP4rev1 WG mtg ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL NIL \"<B27397-0100000@cac.washington.edu>\") BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n";
    let r = ok_all(wire);
    let Response::Data(Data::Fetch { seq: 12, items }) = &r[0] else {
        panic!("{r:?}")
    };
    let FetchItem::Envelope(Value::List(env)) = &items[0] else {
        panic!()
    };
    assert_eq!(env[1], Value::String(b"IMAP4rev1 WG mtg".to_vec()));
    assert_eq!(env[3], Value::Nil);
    let FetchItem::BodyStructure(Value::List(bs)) = &items[1] else {
        panic!()
    };
    assert_eq!(bs[0].as_bytes(), Some(&b"TEXT"[..]));
    assert_eq!(bs[6], Value::Number(3028));
    // Re-encoding reads back identically.
    let mut out = Vec::new();
    r[0].encode(&mut out);
    assert_eq!(ok_all(&out), r);
}

#[test]
fn rfc3501_select_transcript() {
    let transcript = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR] IMAP4rev1 Service Ready\r\n\
* 172 EXISTS\r\n\
* 1 RECENT\r\n\
* OK [UNSEEN 12] Message 12 is first unseen\r\n\
* OK [UIDVALIDITY 3857529045] UIDs valid\r\n\
* OK [UIDNEXT 4392] Predicted next UID\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n\
A142 OK [READ-WRITE] SELECT completed\r\n\
+ Ready for additional command text\r\n\
+\r\n\
* BYE IMAP4rev1 Server logging out\r\n";
    let r = ok_all(transcript);
    assert_eq!(r.len(), 12);
    assert_eq!(
        r[0],
        Response::Status {
            tag: None,
            kind: StatusKind::Ok,
            code: Some(ResponseCode::Capability(vec![
                "IMAP4rev1".into(),
                "LITERAL+".into(),
                "SASL-IR".into()
            ])),
            text: "IMAP4rev1 Service Ready".into()
        }
    );
    assert_eq!(r[1], Response::Data(Data::Exists(172)));
    assert!(matches!(
        r[3],
        Response::Status {
            code: Some(ResponseCode::Unseen(12)),
            ..
        }
    ));
    assert!(matches!(
        r[4],
        Response::Status {
            code: Some(ResponseCode::UidValidity(3857529045)),
            ..
        }
    ));
    assert!(matches!(
        r[5],
        Response::Status {
            code: Some(ResponseCode::UidNext(4392)),
            ..
        }
    ));
    assert_eq!(
        r[8],
        Response::Status {
            tag: Tag::new("A142"),
            kind: StatusKind::Ok,
            code: Some(ResponseCode::ReadWrite),
            text: "SELECT completed".into()
        }
    );
    assert_eq!(
        r[9],
        Response::Continuation {
            text: "Ready for additional command text".into()
        }
    );
    assert_eq!(
        r[10],
        Response::Continuation {
            text: String::new()
        }
    );
    assert!(matches!(
        r[11],
        Response::Status {
            kind: StatusKind::Bye,
            ..
        }
    ));
}

#[test]
fn text_lines_never_start_literals() {
    let r = ok_all(b"* OK counting {5}\r\na NO failed {3}\r\n+ send {2}\r\n* 1 EXISTS\r\n");
    assert_eq!(r.len(), 4);
    assert!(matches!(&r[0], Response::Status { text, .. } if text == "counting {5}"));
}

#[test]
fn unknown_responses_are_skipped_not_fatal() {
    let v = read_all(
        b"* METADATA INBOX (/private/comment \"x\")\r\n* 3 FROB\r\na WAT now\r\n* 2 EXISTS\r\n",
    );
    assert_eq!(v.len(), 4);
    for e in &v[..3] {
        let Err(ResponseError::Parse { line, .. }) = e else {
            panic!("{e:?}")
        };
        assert!(!line.is_empty());
        assert!(!e.as_ref().unwrap_err().is_fatal());
    }
    assert_eq!(v[3], Ok(Response::Data(Data::Exists(2))));
    // An unknown FETCH item is a parse error, framed correctly around its literal.
    let v = read_all(b"* 1 FETCH (X-GM-LABELS {3}\r\nabc)\r\n* 2 EXISTS\r\n");
    assert!(v[0].is_err());
    assert_eq!(v[1], Ok(Response::Data(Data::Exists(2))));
}

#[test]
fn reader_limits_are_fatal() {
    let limits = ResponseLimits {
        max_line_bytes: 32,
        max_total_bytes: 48,
        max_literal_bytes: 10,
        max_literals: 2,
        max_pending_input_bytes: 256,
        max_nesting_depth: 4,
    };
    let run = |input: &[u8]| {
        let mut r = ResponseReader::new(limits.clone());
        r.feed(input).unwrap();
        let mut v = Vec::new();
        while let Some(x) = r.next_response() {
            v.push(x);
        }
        (v, r.is_closed())
    };
    let (v, closed) = run(b"* 1 FETCH (BODY[] {11}\r\nhello world)\r\n");
    assert!(closed && v.len() == 1 && v[0].as_ref().unwrap_err().is_fatal());
    let (v, closed) = run(format!("* OK {}\r\n", "x".repeat(40)).as_bytes());
    assert!(closed && matches!(v[0], Err(ResponseError::Framing(_))));
    let (_, closed) = run(b"* 1 FETCH (BODY[1] {1}\r\na BODY[2] {1}\r\nb BODY[3] {1}\r\nc)\r\n");
    assert!(closed);
    let (_, closed) = run(b"* 1 FETCH (BODY[1] {1}\r\na BODY[2] \"0123456789012345678\")\r\n");
    assert!(closed);
    // Nesting beyond the limit is a (non-fatal) parse error.
    let (v, closed) = run(b"* 1 FETCH (BODY ((((((1)))))))\r\n");
    assert!(!closed && v[0].is_err());
    let mut r = ResponseReader::new(limits.clone());
    assert!(r.feed(&[b'x'; 300]).is_err());
    assert_eq!(r.input_room(), 256);
}

#[test]
fn parse_response_bytes_helper() {
    assert_eq!(
        parse_response_bytes(b"* 3 EXISTS\r\n"),
        Ok(Some(Response::Data(Data::Exists(3))))
    );
    assert_eq!(parse_response_bytes(b"* 3 EXI"), Ok(None));
}
