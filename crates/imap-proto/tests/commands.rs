//! Known-answer tests for the command parser: real command lines from the
//! RFC examples (RFC 3501 §6 and §8, RFC 7162, RFC 5258, RFC 5819, RFC 6154,
//! RFC 4731, RFC 2971, RFC 9208) and from mbsync/Thunderbird traffic. Each
//! parsed command is also re-encoded and parsed back.

use slotmail_imap_proto::*;

fn roundtrip(cmd: &Command) {
    let mut out = Vec::new();
    cmd.encode(&mut out);
    let again = parse_command_bytes(&out)
        .unwrap_or_else(|e| panic!("re-encoded {:?}: {e}", String::from_utf8_lossy(&out)));
    assert_eq!(&again, cmd);
    for mode in [LiteralMode::Sync, LiteralMode::LiteralMinus] {
        let enc = cmd.encode_with(&EncodeOptions {
            literal_mode: mode,
            ..Default::default()
        });
        assert_eq!(parse_command_bytes(&enc.concat()).unwrap(), *cmd);
    }
}

fn parse(wire: &str) -> Command {
    let cmd =
        parse_command_bytes(wire.as_bytes()).unwrap_or_else(|e| panic!("{wire:?} failed: {e}"));
    roundtrip(&cmd);
    cmd
}

fn body(wire: &str) -> CommandBody {
    parse(wire).body
}

fn mb(s: &str) -> MailboxName {
    MailboxName::new(s).unwrap()
}

fn set(s: &str) -> SequenceSet {
    s.parse().unwrap()
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

#[test]
fn rfc3501_section8_session() {
    let c = parse("a001 login mrc secret\r\n");
    assert_eq!(c.tag.as_str(), "a001");
    assert_eq!(
        c.body,
        CommandBody::Login {
            username: b"mrc".to_vec(),
            password: b"secret".to_vec()
        }
    );
    assert_eq!(
        body("a002 select inbox\r\n"),
        CommandBody::Select {
            mailbox: MailboxName::inbox(),
            params: SelectParams::default()
        }
    );
    assert_eq!(
        body("a003 fetch 12 full\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("12"),
            attrs: FetchAttrs::Full,
            modifiers: FetchModifiers::default()
        }
    );
    assert_eq!(
        body("a004 fetch 12 body[header]\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("12"),
            attrs: FetchAttrs::List(vec![FetchAttr::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Header)
                },
                partial: None
            }]),
            modifiers: FetchModifiers::default()
        }
    );
    assert_eq!(
        body("a005 store 12 +flags \\deleted\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("12"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(body("a006 logout\r\n"), CommandBody::Logout);
}

#[test]
fn simple_commands() {
    for (wire, expected) in [
        ("abcd CAPABILITY\r\n", CommandBody::Capability),
        ("a047 NOOP\r\n", CommandBody::Noop),
        ("a1 STARTTLS\r\n", CommandBody::StartTls),
        ("FXXZ CHECK\r\n", CommandBody::Check),
        ("A341 CLOSE\r\n", CommandBody::Close),
        ("A202 EXPUNGE\r\n", CommandBody::Expunge),
        ("a UNSELECT\r\n", CommandBody::Unselect),
        ("a idle\r\n", CommandBody::Idle),
        ("A001 NAMESPACE\r\n", CommandBody::Namespace),
    ] {
        assert_eq!(body(wire), expected, "{wire}");
    }
}

#[test]
fn mailbox_management() {
    assert_eq!(
        body("A932 EXAMINE blurdybloop\r\n"),
        CommandBody::Examine {
            mailbox: mb("blurdybloop"),
            params: SelectParams::default()
        }
    );
    assert_eq!(
        body("A003 CREATE owatagusiam/\r\n"),
        CommandBody::Create {
            mailbox: mb("owatagusiam/"),
            special_use: vec![]
        }
    );
    assert_eq!(
        body("A683 DELETE blurdybloop\r\n"),
        CommandBody::Delete {
            mailbox: mb("blurdybloop")
        }
    );
    assert_eq!(
        body("A683 RENAME blurdybloop sarasota\r\n"),
        CommandBody::Rename {
            from: mb("blurdybloop"),
            to: mb("sarasota")
        }
    );
    assert_eq!(
        body("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Subscribe {
            mailbox: mb("#news.comp.mail.mime")
        }
    );
    assert_eq!(
        body("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Unsubscribe {
            mailbox: mb("#news.comp.mail.mime")
        }
    );
    assert_eq!(
        body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        CommandBody::Status {
            mailbox: mb("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert_eq!(
        body(
            "a STATUS INBOX (messages recent uidnext uidvalidity unseen deleted size highestmodseq appendlimit)\r\n"
        ),
        CommandBody::Status {
            mailbox: MailboxName::inbox(),
            items: StatusItem::ALL.to_vec()
        }
    );
}

#[test]
fn inbox_is_case_insensitive_and_names_are_mutf7() {
    assert_eq!(
        body("a SELECT iNbOx\r\n"),
        CommandBody::Select {
            mailbox: MailboxName::inbox(),
            params: SelectParams::default()
        }
    );
    // RFC 3501 §5.1.3 example.
    let CommandBody::Create { mailbox, .. } =
        body("a CREATE \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"\r\n")
    else {
        panic!("not CREATE")
    };
    assert_eq!(
        mailbox.as_str(),
        "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"
    );
    let CommandBody::Select { mailbox, .. } = body("a SELECT Tom&-Jerry\r\n") else {
        panic!("not SELECT")
    };
    assert_eq!(mailbox.as_str(), "Tom&Jerry");
    // A sub-mailbox of INBOX keeps its spelling.
    let CommandBody::Select { mailbox, .. } = body("a SELECT inbox/Foo\r\n") else {
        panic!()
    };
    assert_eq!(mailbox.as_str(), "inbox/Foo");
}

#[test]
fn utf8_mailbox_names_when_enabled() {
    let opts = ParseOptions {
        encoding: MailboxEncoding::Utf8,
        ..Default::default()
    };
    let c = parse_command_bytes_with("a SELECT \"Entw\u{fc}rfe\"\r\n".as_bytes(), &opts).unwrap();
    assert_eq!(
        c.body,
        CommandBody::Select {
            mailbox: mb("Entw\u{fc}rfe"),
            params: SelectParams::default()
        }
    );
    let mut out = Vec::new();
    out.extend_from_slice(
        &c.encode_with(&EncodeOptions {
            encoding: MailboxEncoding::Utf8,
            ..Default::default()
        })
        .concat(),
    );
    assert_eq!(out, "a SELECT \"Entw\u{fc}rfe\"\r\n".as_bytes());
    // In UTF-8 mode '&' is an ordinary character.
    let c = parse_command_bytes_with(b"a SELECT A&B\r\n", &opts).unwrap();
    assert_eq!(
        c.body,
        CommandBody::Select {
            mailbox: mb("A&B"),
            params: SelectParams::default()
        }
    );
}

#[test]
fn list_basic_and_lsub() {
    let list = |wire: &str| match body(wire) {
        CommandBody::List(l) => l,
        other => panic!("{other:?}"),
    };
    let l = list("A101 LIST \"\" \"\"\r\n");
    assert_eq!(
        (l.reference.as_str(), l.patterns.clone()),
        ("", vec![String::new()])
    );
    let l = list("A102 LIST #news.comp.mail.misc \"\"\r\n");
    assert_eq!(l.reference, "#news.comp.mail.misc");
    let l = list("A202 LIST ~/Mail/ %\r\n");
    assert_eq!(
        (l.reference.as_str(), l.patterns[0].as_str()),
        ("~/Mail/", "%")
    );
    assert!(l.selection.is_empty() && l.return_opts.is_empty());
    assert_eq!(
        body("A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"),
        CommandBody::Lsub {
            reference: "#news.".into(),
            pattern: "comp.mail.*".into()
        }
    );
}

#[test]
fn list_extended_rfc5258_5819_6154() {
    let list = |wire: &str| match body(wire) {
        CommandBody::List(l) => l,
        other => panic!("{other:?}"),
    };
    let l = list("A01 LIST \"\" (% music/rock)\r\n");
    assert_eq!(l.patterns, vec!["%".to_owned(), "music/rock".to_owned()]);
    let l = list("C04 LIST (REMOTE SUBSCRIBED) \"\" \"*\"\r\n");
    assert_eq!(
        l.selection,
        vec![ListSelectOption::Remote, ListSelectOption::Subscribed]
    );
    let l = list("A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n");
    assert!(l.selection.is_empty());
    assert_eq!(l.return_opts, vec![ListReturnOption::Children]);
    let l =
        list("A04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (SUBSCRIBED CHILDREN)\r\n");
    assert_eq!(
        l.selection,
        vec![
            ListSelectOption::Subscribed,
            ListSelectOption::RecursiveMatch
        ]
    );
    assert_eq!(
        l.return_opts,
        vec![ListReturnOption::Subscribed, ListReturnOption::Children]
    );
    let l = list("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n");
    assert_eq!(
        l.return_opts,
        vec![ListReturnOption::Status(vec![
            StatusItem::Messages,
            StatusItem::Unseen
        ])]
    );
    let l = list("t1 LIST (SPECIAL-USE) \"\" \"*\"\r\n");
    assert_eq!(l.selection, vec![ListSelectOption::SpecialUse]);
    let l = list("t1 LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n");
    assert_eq!(l.return_opts, vec![ListReturnOption::SpecialUse]);
    assert_eq!(
        body("t3 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n"),
        CommandBody::Create {
            mailbox: mb("MySpecial"),
            special_use: vec![SpecialUse::Drafts, SpecialUse::Sent]
        }
    );
    assert_eq!(
        body("t3 CREATE X (USE (\\Foo))\r\n"),
        CommandBody::Create {
            mailbox: mb("X"),
            special_use: vec![SpecialUse::Extension("Foo".into())]
        }
    );
}

#[test]
fn select_condstore_qresync_rfc7162() {
    assert_eq!(
        body("a SELECT INBOX (CONDSTORE)\r\n"),
        CommandBody::Select {
            mailbox: MailboxName::inbox(),
            params: SelectParams {
                condstore: true,
                qresync: None
            }
        }
    );
    assert_eq!(
        body("A03 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"),
        CommandBody::Select {
            mailbox: MailboxName::inbox(),
            params: SelectParams {
                condstore: false,
                qresync: Some(QResyncParams {
                    uid_validity: 67890007,
                    mod_seq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None
                })
            }
        }
    );
    let b = body(
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
    );
    let CommandBody::Select { params, .. } = b else {
        panic!()
    };
    let q = params.qresync.unwrap();
    assert_eq!(q.known_uids, Some(set("1:29997")));
    let (seqs, uids) = q.seq_match.unwrap();
    assert_eq!(seqs, set("5000,7500,9000,9990:9999"));
    assert_eq!(uids.ranges().len(), 13);
    // Sequence match data without known UIDs.
    let CommandBody::Examine { params, .. } = body("a EXAMINE x (QRESYNC (1 2 (1:2 3:4)))\r\n")
    else {
        panic!()
    };
    let q = params.qresync.unwrap();
    assert!(q.known_uids.is_none() && q.seq_match.is_some());
}

#[test]
fn fetch_variants() {
    let fetch = |wire: &str| match body(wire) {
        CommandBody::Fetch {
            uid,
            set,
            attrs,
            modifiers,
        } => (uid, set, attrs, modifiers),
        other => panic!("{other:?}"),
    };
    // mbsync.
    let (uid, s, attrs, _) = fetch(
        "5 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM MESSAGE-ID)])\r\n",
    );
    assert!(uid);
    assert_eq!(s, SequenceSet::all());
    assert_eq!(
        attrs,
        FetchAttrs::List(vec![
            FetchAttr::Uid,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec![
                        "DATE".into(),
                        "FROM".into(),
                        "MESSAGE-ID".into()
                    ]))
                },
                partial: None
            }
        ])
    );
    // Thunderbird.
    let (_, _, attrs, _) = fetch("8 UID fetch 100 (UID RFC822.SIZE BODY.PEEK[]<0.16384>)\r\n");
    let FetchAttrs::List(v) = attrs else { panic!() };
    assert_eq!(
        v[2],
        FetchAttr::BodySection {
            peek: true,
            section: Section::default(),
            partial: Some(Partial {
                offset: 0,
                length: 16384
            })
        }
    );
    let (_, _, attrs, _) = fetch("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n");
    assert!(matches!(attrs, FetchAttrs::List(ref v) if v.len() == 2));
    let (uid, s, attrs, _) = fetch("A999 UID FETCH 4827313:4828442 FLAGS\r\n");
    assert!(uid);
    assert_eq!(s, set("4827313:4828442"));
    assert_eq!(attrs, FetchAttrs::List(vec![FetchAttr::Flags]));
    assert_eq!(fetch("a FETCH 1 ALL\r\n").2, FetchAttrs::All);
    assert_eq!(fetch("a FETCH 1 fast\r\n").2, FetchAttrs::Fast);
    let (_, _, attrs, _) = fetch(
        "a FETCH 3 (BODY[1.2.MIME] BODY[3.TEXT]<100.200> BODY[2.HEADER.FIELDS.NOT (X-A)] BINARY.PEEK[1]<0.100> BINARY.SIZE[2] BINARY[] BODYSTRUCTURE BODY ENVELOPE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ)\r\n",
    );
    let FetchAttrs::List(v) = attrs else { panic!() };
    assert_eq!(
        v[0],
        FetchAttr::BodySection {
            peek: false,
            section: Section {
                part: vec![1, 2],
                text: Some(SectionText::Mime)
            },
            partial: None
        }
    );
    assert_eq!(
        v[1],
        FetchAttr::BodySection {
            peek: false,
            section: Section {
                part: vec![3],
                text: Some(SectionText::Text)
            },
            partial: Some(Partial {
                offset: 100,
                length: 200
            })
        }
    );
    assert_eq!(
        v[2],
        FetchAttr::BodySection {
            peek: false,
            section: Section {
                part: vec![2],
                text: Some(SectionText::HeaderFieldsNot(vec!["X-A".into()]))
            },
            partial: None
        }
    );
    assert_eq!(
        v[3],
        FetchAttr::Binary {
            peek: true,
            part: vec![1],
            partial: Some(Partial {
                offset: 0,
                length: 100
            })
        }
    );
    assert_eq!(v[4], FetchAttr::BinarySize { part: vec![2] });
    assert_eq!(
        v[5],
        FetchAttr::Binary {
            peek: false,
            part: vec![],
            partial: None
        }
    );
    assert_eq!(v.len(), 13);
    // RFC 7162 §3.2.6 / §3.1.4.1.
    let (uid, _, _, m) = fetch("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n");
    assert!(uid);
    assert_eq!(
        m,
        FetchModifiers {
            changed_since: Some(12345),
            vanished: true
        }
    );
    let (_, _, _, m) = fetch("a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n");
    assert_eq!(m.changed_since, Some(12345));
    // Ranges in either order and '*' alone stay symbolic.
    let (_, s, _, _) = fetch("a FETCH 5:2,*,7:* UID\r\n");
    assert_eq!(s.to_string(), "5:2,*,7:*");
    assert_eq!(s.resolve(9), vec![2..=5, 7..=9]);
}

#[test]
fn store_copy_move_expunge() {
    assert_eq!(
        body("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("2:4"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(
        body("a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n"),
        CommandBody::Store {
            uid: true,
            set: set("6,4,8"),
            unchanged_since: Some(12121230045),
            mode: StoreMode::Add,
            silent: true,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(
        body("7 UID STORE 3 -FLAGS.SILENT (\\Flagged $Forwarded NonJunk)\r\n"),
        CommandBody::Store {
            uid: true,
            set: set("3"),
            unchanged_since: None,
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![
                Flag::Flagged,
                Flag::Keyword("$Forwarded".into()),
                Flag::Keyword("NonJunk".into())
            ]
        }
    );
    assert_eq!(
        body("a STORE 1 FLAGS ()\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("1"),
            unchanged_since: None,
            mode: StoreMode::Replace,
            silent: false,
            flags: vec![]
        }
    );
    assert_eq!(
        body("A003 COPY 2:4 MEETING\r\n"),
        CommandBody::Copy {
            uid: false,
            set: set("2:4"),
            mailbox: mb("MEETING")
        }
    );
    assert_eq!(
        body("16 UID MOVE 42 Trash\r\n"),
        CommandBody::Move {
            uid: true,
            set: set("42"),
            mailbox: mb("Trash")
        }
    );
    assert_eq!(
        body("a MOVE 1:* \"Deleted Items\"\r\n"),
        CommandBody::Move {
            uid: false,
            set: SequenceSet::all(),
            mailbox: mb("Deleted Items")
        }
    );
    assert_eq!(
        body("15 UID EXPUNGE 1:3\r\n"),
        CommandBody::UidExpunge { uids: set("1:3") }
    );
}

#[test]
fn search_rfc3501_and_nested() {
    let search = |wire: &str| match body(wire) {
        CommandBody::Search {
            uid,
            charset,
            criteria,
            return_opts,
        } => (uid, charset, criteria, return_opts),
        other => panic!("{other:?}"),
    };
    let (_, cs, keys, ret) = search("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n");
    assert!(cs.is_none() && ret.is_none());
    assert_eq!(
        keys,
        vec![
            SearchKey::Flagged,
            SearchKey::Since(date(1994, 2, 1)),
            SearchKey::Not(Box::new(SearchKey::From(b"Smith".to_vec())))
        ]
    );
    let (_, _, keys, _) = search("A283 SEARCH TEXT \"string not in mailbox\"\r\n");
    assert_eq!(
        keys,
        vec![SearchKey::Text(b"string not in mailbox".to_vec())]
    );
    let (_, cs, keys, _) = search("A284 SEARCH CHARSET UTF-8 TEXT {6+}\r\nXXXXXX\r\n");
    assert_eq!(cs.as_deref(), Some("UTF-8"));
    assert_eq!(keys, vec![SearchKey::Text(b"XXXXXX".to_vec())]);
    let (uid, _, keys, _) = search(
        "a UID SEARCH OR (FROM alice SUBJECT \"hi there\") NOT (SEEN DELETED) UID 1:*,5 LARGER 1000 HEADER X-Spam yes KEYWORD $Junk 1:4 SENTBEFORE \"3-Mar-2020\" on 29-Feb-2024 UNKEYWORD $Seen2 OLDER 60 YOUNGER 5 ANSWERED UNANSWERED DRAFT UNDRAFT NEW OLD RECENT ALL SMALLER 5 BCC b CC c TO t BODY x UNFLAGGED UNDELETED UNSEEN SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 BEFORE 1-Jan-2000\r\n",
    );
    assert!(uid);
    assert_eq!(
        keys[0],
        SearchKey::Or(
            Box::new(SearchKey::And(vec![
                SearchKey::From(b"alice".to_vec()),
                SearchKey::Subject(b"hi there".to_vec())
            ])),
            Box::new(SearchKey::Not(Box::new(SearchKey::And(vec![
                SearchKey::Seen,
                SearchKey::Deleted
            ]))))
        )
    );
    assert_eq!(keys[1], SearchKey::Uid(set("1:*,5")));
    assert_eq!(keys[2], SearchKey::Larger(1000));
    assert_eq!(
        keys[3],
        SearchKey::Header(b"X-Spam".to_vec(), b"yes".to_vec())
    );
    assert_eq!(keys[4], SearchKey::Keyword("$Junk".into()));
    assert_eq!(keys[5], SearchKey::SequenceSet(set("1:4")));
    assert_eq!(keys[6], SearchKey::SentBefore(date(2020, 3, 3)));
    assert_eq!(keys[7], SearchKey::On(date(2024, 2, 29)));
    assert_eq!(keys[9], SearchKey::Older(60));
    assert_eq!(keys.len(), 30);
}

#[test]
fn search_esearch_and_modseq() {
    let search = |wire: &str| match body(wire) {
        CommandBody::Search {
            uid,
            criteria,
            return_opts,
            ..
        } => (uid, criteria, return_opts),
        other => panic!("{other:?}"),
    };
    // RFC 4731 §3.1 examples.
    let (_, keys, ret) =
        search("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n");
    assert_eq!(
        ret,
        Some(vec![SearchReturnOpt::Min, SearchReturnOpt::Count])
    );
    assert_eq!(keys.len(), 3);
    let (_, _, ret) =
        search("A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n");
    assert_eq!(ret, Some(vec![]));
    let (uid, keys, ret) = search("A285 UID SEARCH RETURN (MIN MAX) 1:5000\r\n");
    assert!(uid);
    assert_eq!(ret, Some(vec![SearchReturnOpt::Min, SearchReturnOpt::Max]));
    assert_eq!(keys, vec![SearchKey::SequenceSet(set("1:5000"))]);
    let (_, _, ret) = search("A286 SEARCH RETURN (ALL COUNT) UNSEEN\r\n");
    assert_eq!(
        ret,
        Some(vec![SearchReturnOpt::All, SearchReturnOpt::Count])
    );
    // RFC 7162 §3.1.5.
    let (_, keys, _) = search("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n");
    assert_eq!(
        keys,
        vec![SearchKey::ModSeq {
            entry: Some(ModSeqEntry {
                flag: Flag::Draft,
                entry_type: ModSeqEntryType::All
            }),
            mod_seq: 620162338
        }]
    );
    let (_, keys, _) = search("t SEARCH OR NOT MODSEQ 720162338 LARGER 50000\r\n");
    assert_eq!(
        keys,
        vec![SearchKey::Or(
            Box::new(SearchKey::Not(Box::new(SearchKey::ModSeq {
                entry: None,
                mod_seq: 720162338
            }))),
            Box::new(SearchKey::Larger(50000))
        )]
    );
}

#[test]
fn append_forms() {
    let msg = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nSubject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    let wire = format!(
        "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n{msg}\r\n",
        msg.len()
    );
    assert_eq!(
        body(&wire),
        CommandBody::Append {
            mailbox: mb("saved-messages"),
            messages: vec![AppendMessage {
                flags: vec![Flag::Seen],
                date: None,
                data: msg.as_bytes().to_vec(),
                binary: false
            }]
        }
    );
    let CommandBody::Append { messages, .. } = body(
        "A003 APPEND saved-messages (\\Seen $Label1) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello\r\n",
    ) else {
        panic!()
    };
    let d = messages[0].date.unwrap();
    assert_eq!(d.to_string(), "17-Jul-1996 02:44:25 -0700");
    assert_eq!(d.unix_timestamp(), 837_596_665);
    // Date without flags, mbsync style LITERAL+.
    let CommandBody::Append { messages, .. } =
        body("6 APPEND \"Sent\" \" 7-Feb-1994 21:52:25 -0800\" {3+}\r\nabc\r\n")
    else {
        panic!()
    };
    assert!(messages[0].flags.is_empty() && messages[0].date.is_some());
    // MULTIAPPEND (RFC 3502) and literal8 with a NUL (RFC 3516).
    let CommandBody::Append { messages, .. } =
        body("a APPEND foo (\\Seen) {3+}\r\nabc ~{3+}\r\na\0c {0+}\r\n\r\n")
    else {
        panic!()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].data, b"a\0c");
    assert!(messages[1].binary);
    assert!(messages[2].data.is_empty());
}

#[test]
fn auth_login_enable_id_quota_compress() {
    assert_eq!(
        body("a001 AUTHENTICATE GSSAPI\r\n"),
        CommandBody::Authenticate {
            mechanism: "GSSAPI".into(),
            initial_response: None
        }
    );
    assert_eq!(
        body("18 authenticate plain AHVzZXIAcGFzcw==\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial_response: Some("AHVzZXIAcGFzcw==".into())
        }
    );
    assert_eq!(
        body("19 AUTHENTICATE EXTERNAL =\r\n"),
        CommandBody::Authenticate {
            mechanism: "EXTERNAL".into(),
            initial_response: Some("=".into())
        }
    );
    // Quoted and literal credentials.
    assert_eq!(
        body("a LOGIN \"fred \\\"the\\\" user\" {5+}\r\np\"ss\\\r\n"),
        CommandBody::Login {
            username: b"fred \"the\" user".to_vec(),
            password: b"p\"ss\\".to_vec()
        }
    );
    assert_eq!(
        body("11 ENABLE CONDSTORE QRESYNC\r\n"),
        CommandBody::Enable {
            capabilities: vec!["CONDSTORE".into(), "QRESYNC".into()]
        }
    );
    assert_eq!(
        body("2 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\" \"os\" NIL)\r\n"),
        CommandBody::Id {
            params: Some(vec![
                (b"name".to_vec(), Some(b"Thunderbird".to_vec())),
                (b"version".to_vec(), Some(b"115.0".to_vec())),
                (b"os".to_vec(), None)
            ])
        }
    );
    assert_eq!(body("a ID NIL\r\n"), CommandBody::Id { params: None });
    assert_eq!(
        body("a ID ()\r\n"),
        CommandBody::Id {
            params: Some(vec![])
        }
    );
    assert_eq!(
        body("17 GETQUOTA \"\"\r\n"),
        CommandBody::GetQuota {
            root: String::new()
        }
    );
    assert_eq!(
        body("4 getquotaroot \"INBOX\"\r\n"),
        CommandBody::GetQuotaRoot {
            mailbox: MailboxName::inbox()
        }
    );
    assert_eq!(
        body("12 COMPRESS deflate\r\n"),
        CommandBody::Compress {
            mechanism: "DEFLATE".into()
        }
    );
}

#[test]
fn encoder_output_is_canonical() {
    let enc = |wire: &str| {
        let mut out = Vec::new();
        parse(wire).encode(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(enc("a1 login mrc secret\r\n"), "a1 LOGIN mrc secret\r\n");
    assert_eq!(
        enc("a1 LOGIN \"\" \"a b\"\r\n"),
        "a1 LOGIN \"\" \"a b\"\r\n"
    );
    assert_eq!(enc("a select inbox\r\n"), "a SELECT INBOX\r\n");
    assert_eq!(enc("a fetch 1 uid\r\n"), "a FETCH 1 (UID)\r\n");
    assert_eq!(
        enc("a store 1 +flags \\seen \\deleted\r\n"),
        "a STORE 1 +FLAGS (\\Seen \\Deleted)\r\n"
    );
    assert_eq!(
        enc("a CREATE \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"\r\n"),
        "a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n"
    );
    assert_eq!(enc("a LIST \"\" \"*\"\r\n"), "a LIST \"\" *\r\n");
    // 8-bit login data becomes a literal.
    assert_eq!(
        enc("a LOGIN {2+}\r\n\u{e9} x\r\n"),
        "a LOGIN {2+}\r\n\u{e9} x\r\n"
    );
    // Synchronizing mode splits at the literal.
    let cmd = parse("a LOGIN {2+}\r\n\u{e9} x\r\n");
    let chunks = cmd.encode_with(&EncodeOptions {
        literal_mode: LiteralMode::Sync,
        ..Default::default()
    });
    assert_eq!(
        chunks.chunks,
        vec![
            b"a LOGIN {2}\r\n".to_vec(),
            "\u{e9} x\r\n".as_bytes().to_vec()
        ]
    );
}
