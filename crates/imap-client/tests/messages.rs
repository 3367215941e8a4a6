//! Message commands against a scripted fake server: UID FETCH (buffered,
//! streaming, literals split across reads, bounded), UID STORE
//! (UNCHANGEDSINCE / MODIFIED), UID SEARCH (SEARCH and ESEARCH), EXPUNGE,
//! UID EXPUNGE, UID COPY / MOVE (COPYUID), NOOP, IDLE, quota, ID,
//! NAMESPACE and the raw escape hatch.

mod support;

use std::time::Duration;

use slotmail_imap_client::{
    Client, CopyUid, Data, Error, Expunged, FetchItem, Flag, Response, ResponseCode, SequenceSet,
    StatusKind,
};
use support::*;

const MESSAGE: &[u8] = b"Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n";

/// Greeting and a SELECT of INBOX with `exists` messages (tag A0001).
fn selected(exists: u32) -> Vec<Step> {
    vec![
        send(GREETING),
        expect("A0001 SELECT INBOX\r\n"),
        send(&format!(
            "* FLAGS (\\Seen \\Deleted)\r\n* {exists} EXISTS\r\n* OK [UIDVALIDITY 42] v\r\nA0001 OK [READ-WRITE] ok\r\n"
        )),
    ]
}

async fn connect_selected(server: &FakeServer) -> Client {
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.select("INBOX", false).await.unwrap();
    c
}

fn all() -> SequenceSet {
    SequenceSet::all()
}

#[tokio::test]
async fn uid_fetch_collects_records_from_split_literals() {
    let n = MESSAGE.len();
    let head = format!(
        "* 1 FETCH (UID 10 FLAGS (\\Seen $Work) INTERNALDATE \"01-Feb-2024 10:00:00 +0100\" RFC822.SIZE {n} MODSEQ (5) ENVELOPE (\"Thu, 1 Feb 2024 10:00:00 +0100\" \"hi\" NIL NIL NIL NIL NIL NIL NIL \"<id@x>\") BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) BODY[] {{{n}}}\r\n"
    );
    let mut script = selected(2);
    script.extend([
        expect(
            "A0002 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ ENVELOPE BODYSTRUCTURE BODY.PEEK[])\r\n",
        ),
        pieces(&[
            head.as_bytes(),
            &MESSAGE[..7],
            &MESSAGE[7..30],
            &MESSAGE[30..],
            b")\r\n* 2 FETCH (FLAGS (\\Deleted))\r\n* 2 FETCH (UID 11 BODY[] NIL",
            b" BODY[HEADER] {4}\r\nab\r\n BODY[1]<0> \"body\")\r\n",
            b"* 2 FETCH (UID 11 FLAGS ())\r\n",
            b"A0002 OK FETCH completed\r\n",
        ]),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let recs = c
        .uid_fetch(
            &all(),
            "(UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
        )
        .await
        .unwrap();
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    assert_eq!((r.seq, r.uid), (1, 10));
    assert_eq!(
        r.flags,
        Some(vec![Flag::Seen, Flag::Keyword("$Work".into())])
    );
    assert_eq!(
        r.internaldate.unwrap().to_string(),
        "01-Feb-2024 10:00:00 +0100"
    );
    assert_eq!(r.rfc822_size, Some(n as u64));
    assert_eq!(r.modseq, Some(5));
    assert_eq!(r.message(), Some(MESSAGE));
    assert_eq!(
        r.envelope.as_deref(),
        Some(
            &b"(\"Thu, 1 Feb 2024 10:00:00 +0100\" \"hi\" NIL NIL NIL NIL NIL NIL NIL \"<id@x>\")"
                [..]
        )
    );
    assert_eq!(
        r.bodystructure.as_deref(),
        Some(&b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)"[..])
    );
    // Two responses for UID 11 are merged into one record.
    let r = &recs[1];
    assert_eq!((r.seq, r.uid), (2, 11));
    assert_eq!(r.sections.len(), 3);
    assert_eq!(r.sections[0], ("BODY[]".to_owned(), None));
    assert_eq!(r.section("BODY[HEADER]"), Some(&b"ab\r\n"[..]));
    assert_eq!(r.section("BODY[1]<0>"), Some(&b"body"[..]));
    assert_eq!(r.flags, Some(vec![]));
    // The FETCH without UID is another session's change.
    assert_eq!(
        c.take_unsolicited(),
        vec![Response::Data(Data::Fetch {
            seq: 2,
            items: vec![FetchItem::Flags(vec![Flag::Deleted])]
        })]
    );
    server.finish().await;
}

#[tokio::test]
async fn uid_fetch_each_streams_one_message_at_a_time() {
    let mut body = String::new();
    for uid in 1..=5u32 {
        let msg = format!(
            "Subject: {uid}\r\n\r\n{}\r\n",
            "x".repeat(uid as usize * 100)
        );
        body.push_str(&format!(
            "* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n{msg})\r\n",
            msg.len()
        ));
    }
    body.push_str("* 3 EXPUNGE\r\nA0002 OK done\r\n");
    let mut script = selected(5);
    script.extend([expect("A0002 UID FETCH 1:5 (BODY.PEEK[])\r\n"), send(&body)]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let mut seen = Vec::new();
    let calls = c
        .uid_fetch_each(&SequenceSet::range(1, 5).unwrap(), "(BODY.PEEK[])", |r| {
            let m = r.message().unwrap();
            assert!(m.starts_with(format!("Subject: {}\r\n", r.uid).as_bytes()));
            seen.push((r.uid, m.len()));
        })
        .await
        .unwrap();
    assert_eq!(calls, 5);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(c.selected().unwrap().exists, 4);
    assert_eq!(c.take_unsolicited(), vec![Response::Data(Data::Expunge(3))]);
    server.finish().await;
}

#[tokio::test]
async fn buffered_fetch_is_bounded_and_the_connection_survives() {
    let big = "y".repeat(800);
    let mut body = String::new();
    for uid in 1..=3u32 {
        body.push_str(&format!(
            "* {uid} FETCH (UID {uid} BODY[] {{800}}\r\n{big})\r\n"
        ));
    }
    body.push_str("A0002 OK done\r\n");
    let mut script = selected(3);
    script.extend([
        expect("A0002 UID FETCH 1:* (BODY.PEEK[])\r\n"),
        send(&body),
        expect("A0003 NOOP\r\n"),
        send("A0003 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut opts = quick_options();
    opts.max_buffered_fetch_bytes = 2000;
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    c.select("INBOX", false).await.unwrap();
    let err = c.uid_fetch(&all(), "(BODY.PEEK[])").await.unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err:?}");
    assert!(!err.breaks_connection());
    c.noop().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn fetch_errors_keep_their_codes() {
    let mut script = selected(1);
    script.extend([
        expect("A0002 UID FETCH 1 (BODY.PEEK[])\r\n"),
        send("A0002 NO [CORRUPTION] message 1 is damaged\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let err = c
        .uid_fetch(&SequenceSet::single(1).unwrap(), "(BODY.PEEK[])")
        .await
        .unwrap_err();
    match &err {
        Error::No { code, text } => {
            assert_eq!(code, &Some(ResponseCode::Corruption));
            assert_eq!(text, "message 1 is damaged");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Malformed items are refused before anything is sent.
    assert!(matches!(
        c.uid_fetch(&all(), "(UID BOGUS[)").await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

#[tokio::test]
async fn uid_store_with_unchangedsince() {
    let mut script = selected(3);
    script.extend([
        expect("A0002 UID STORE 1:3 (UNCHANGEDSINCE 12) +FLAGS.SILENT (\\Seen)\r\n"),
        send("* 1 FETCH (UID 1 MODSEQ (13))\r\n* 2 FETCH (UID 2 MODSEQ (14))\r\n"),
        // Another session's change to a message outside the set.
        send("* 3 FETCH (UID 99 FLAGS (\\Seen) MODSEQ (15))\r\n"),
        send("A0002 OK [MODIFIED 3] Conditional STORE failed\r\n"),
        expect("A0003 UID STORE 2 -FLAGS (\\Flagged $Work)\r\n"),
        send("* 2 FETCH (FLAGS () UID 2)\r\nA0003 OK\r\n"),
        expect("A0004 UID STORE 2 FLAGS.SILENT ()\r\n"),
        send("A0004 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let out = c
        .uid_store(
            &"1:3".parse().unwrap(),
            "+FLAGS.SILENT",
            &[Flag::Seen],
            Some(12),
        )
        .await
        .unwrap();
    assert_eq!(out.modified, vec![3]);
    assert!(matches!(
        &c.take_unsolicited()[..],
        [Response::Data(Data::Fetch { seq: 3, .. })]
    ));
    assert_eq!(
        out.fetched
            .iter()
            .map(|r| (r.uid, r.modseq))
            .collect::<Vec<_>>(),
        [(1, Some(13)), (2, Some(14))]
    );
    let out = c
        .uid_store(
            &SequenceSet::single(2).unwrap(),
            "-FLAGS",
            &[Flag::Flagged, Flag::keyword("$Work").unwrap()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.fetched[0].flags, Some(vec![]));
    assert!(out.modified.is_empty());
    let out = c
        .uid_store(&SequenceSet::single(2).unwrap(), "flags.silent", &[], None)
        .await
        .unwrap();
    assert!(out.fetched.is_empty());
    assert!(matches!(
        c.uid_store(&all(), "FLAGS.LOUD", &[], None).await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

#[tokio::test]
async fn uid_search_reads_search_and_esearch() {
    let mut script = selected(9);
    script.extend([
        expect("A0002 UID SEARCH UNSEEN\r\n"),
        send("* SEARCH 2 5 9\r\nA0002 OK\r\n"),
        expect("A0003 UID SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße\r\n"),
        send("* ESEARCH (TAG \"A0003\") UID ALL 1:3,7\r\nA0003 OK\r\n"),
        expect("A0004 UID SEARCH DELETED\r\n"),
        send("* SEARCH\r\nA0004 OK\r\n"),
        expect("A0005 UID SEARCH MODSEQ 5\r\n"),
        send("A0005 BAD [CLIENTBUG] no CONDSTORE\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    assert_eq!(c.uid_search("UNSEEN").await.unwrap(), vec![2, 5, 9]);
    let keys = vec![slotmail_imap_client::proto::SearchKey::Subject(
        "Grüße".as_bytes().to_vec(),
    )];
    assert_eq!(
        c.uid_search_keys(Some("UTF-8".into()), keys).await.unwrap(),
        vec![1, 2, 3, 7]
    );
    assert!(c.uid_search("DELETED").await.unwrap().is_empty());
    let err = c.uid_search("MODSEQ 5").await.unwrap_err();
    assert!(matches!(
        err,
        Error::Bad {
            code: Some(ResponseCode::ClientBug),
            ..
        }
    ));
    assert!(matches!(
        c.uid_search("NOT").await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

#[tokio::test]
async fn expunge_and_uid_expunge() {
    let mut script = selected(5);
    script.extend([
        expect("A0002 EXPUNGE\r\n"),
        send("* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 9 EXISTS\r\nA0002 OK\r\n"),
        expect("A0003 UID EXPUNGE 4:5,8\r\n"),
        send("* VANISHED 4:5\r\n* VANISHED 8\r\nA0003 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let e = c.expunge().await.unwrap();
    assert_eq!(
        e,
        Expunged {
            seqs: vec![2, 2],
            vanished: vec![]
        }
    );
    // EXISTS arrived after the expunges.
    assert_eq!(c.selected().unwrap().exists, 9);
    let e = c.uid_expunge(&"4:5,8".parse().unwrap()).await.unwrap();
    assert_eq!(e.vanished, vec![4, 5, 8]);
    assert_eq!(c.selected().unwrap().exists, 6);
    assert_eq!(c.take_unsolicited(), vec![Response::Data(Data::Exists(9))]);
    server.finish().await;
}

#[tokio::test]
async fn uid_copy_and_move_return_copyuid() {
    let mut script = selected(6);
    script.extend([
        expect("A0002 UID COPY 1:3 Archive\r\n"),
        send("A0002 OK [COPYUID 1700000001 1:3 10:12] done\r\n"),
        expect("A0003 UID MOVE 4,6 \"Old Mail\"\r\n"),
        send("* OK [COPYUID 1700000001 6,4 14:13] moving\r\n* 6 EXPUNGE\r\n* 4 EXPUNGE\r\n"),
        send("A0003 OK done\r\n"),
        expect("A0004 UID COPY 1 Archive\r\n"),
        send("A0004 OK no uidplus here\r\n"),
        expect("A0005 UID COPY 1 Nowhere\r\n"),
        send("A0005 NO [TRYCREATE] no such mailbox\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let cu = c
        .uid_copy(&"1:3".parse().unwrap(), "Archive")
        .await
        .unwrap();
    assert_eq!(
        cu,
        Some(CopyUid {
            uidvalidity: 1_700_000_001,
            source: vec![1, 2, 3],
            dest: vec![10, 11, 12]
        })
    );
    let cu = c
        .uid_move(&"4,6".parse().unwrap(), "Old Mail")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cu.source, cu.dest), (vec![6, 4], vec![13, 14]));
    assert_eq!(c.selected().unwrap().exists, 4);
    assert_eq!(c.take_unsolicited().len(), 2);
    let one = SequenceSet::single(1).unwrap();
    assert_eq!(c.uid_copy(&one, "Archive").await.unwrap(), None);
    assert!(
        c.uid_copy(&one, "Nowhere")
            .await
            .unwrap_err()
            .is_no_with(&ResponseCode::TryCreate)
    );
    server.finish().await;
}

#[tokio::test]
async fn noop_returns_what_arrived_unsolicited() {
    let mut script = selected(3);
    script.extend([
        expect("A0002 NOOP\r\n"),
        send("* 4 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen))\r\n* NO [ALERT] disk nearly full\r\nA0002 OK\r\n"),
        expect("A0003 NOOP\r\n"),
        send("A0003 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    let u = c.noop().await.unwrap();
    assert_eq!(u.len(), 3);
    assert_eq!(u[0], Response::Data(Data::Exists(4)));
    assert!(matches!(
        &u[2],
        Response::Status {
            kind: StatusKind::No,
            code: Some(ResponseCode::Alert),
            ..
        }
    ));
    assert_eq!(c.selected().unwrap().exists, 4);
    assert!(c.noop().await.unwrap().is_empty());
    server.finish().await;
}

#[tokio::test]
async fn unsolicited_queue_is_bounded() {
    let mut resp = String::new();
    for i in 1..=10 {
        resp.push_str(&format!("* {i} EXISTS\r\n"));
    }
    resp.push_str("A0001 OK\r\n");
    let server =
        FakeServer::start(vec![send(GREETING), expect("A0001 NOOP\r\n"), send(&resp)]).await;
    let mut opts = quick_options();
    opts.max_unsolicited_responses = 3;
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    let u = c.noop().await.unwrap();
    assert_eq!(
        u,
        (8..=10)
            .map(|i| Response::Data(Data::Exists(i)))
            .collect::<Vec<_>>()
    );
    assert_eq!(c.unsolicited_dropped(), 7);
    server.finish().await;
}

#[tokio::test]
async fn idle_waits_times_out_and_ends() {
    let mut script = selected(3);
    script.extend([
        expect("A0002 IDLE\r\n"),
        send("+ idling\r\n"),
        Step::Sleep(Duration::from_millis(100)),
        send("* 4 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen))\r\n"),
        // The second wait times out quietly.
        Step::Sleep(Duration::from_millis(400)),
        pieces(&[b"* 5 EX", b"ISTS\r\n"]),
        expect("DONE\r\n"),
        send("* 6 EXISTS\r\nA0002 OK IDLE terminated\r\n"),
        expect("A0003 NOOP\r\n"),
        send("A0003 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    c.idle_start().await.unwrap();
    assert!(matches!(c.noop().await, Err(Error::InvalidRequest(_))));
    let got = c.idle_wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], Response::Data(Data::Exists(4)));
    let got = c.idle_wait(Duration::from_millis(150)).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    let got = c.idle_wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, vec![Response::Data(Data::Exists(5))]);
    let rest = c.idle_done().await.unwrap();
    assert_eq!(rest, vec![Response::Data(Data::Exists(6))]);
    assert_eq!(c.selected().unwrap().exists, 6);
    assert!(matches!(c.idle_done().await, Err(Error::InvalidRequest(_))));
    c.noop().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn idle_ended_by_the_server() {
    let mut script = selected(3);
    script.extend([
        expect("A0002 IDLE\r\n"),
        send("+ idling\r\n"),
        send("* 4 EXISTS\r\nA0002 NO [LIMIT] IDLE too long\r\n"),
        expect("A0003 IDLE\r\n"),
        send("A0003 BAD [CLIENTBUG] not now\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    c.idle_start().await.unwrap();
    let got = c.idle_wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, vec![Response::Data(Data::Exists(4))]);
    // No DONE is sent: the server ended IDLE.
    let err = c.idle_done().await.unwrap_err();
    assert!(err.is_no_with(&ResponseCode::Limit), "{err:?}");
    let err = c.idle_start().await.unwrap_err();
    assert!(matches!(err, Error::Bad { .. }));
    server.finish().await;
}

#[tokio::test]
async fn quota_id_namespace() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 GETQUOTAROOT INBOX\r\n"),
        send("* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 10 512 MESSAGE 3 1000)\r\nA0001 OK\r\n"),
        expect("A0002 GETQUOTA \"\"\r\n"),
        send("* QUOTA \"\" (STORAGE 10 512)\r\nA0002 OK\r\n"),
        expect("A0003 ID (\"name\" \"slotmail-check\" \"version\" NIL)\r\n"),
        send("* ID (\"name\" \"slotmail\" \"os\" NIL)\r\nA0003 OK\r\n"),
        expect("A0004 ID NIL\r\n"),
        send("* ID NIL\r\nA0004 OK\r\n"),
        expect("A0005 NAMESPACE\r\n"),
        send("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nA0005 OK\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let q = c.getquotaroot("INBOX").await.unwrap();
    assert_eq!(q.roots, vec![String::new()]);
    assert_eq!(q.quotas.len(), 1);
    assert_eq!(q.quotas[0].resources[0].name, "STORAGE");
    assert_eq!(q.quotas[0].resources[1].limit, 1000);
    let q = c.getquota("").await.unwrap();
    assert_eq!(q.resources[0].usage, 10);
    let id = c
        .id(Some(&[("name", Some("slotmail-check")), ("version", None)]))
        .await
        .unwrap();
    assert_eq!(
        id,
        Some(vec![
            ("name".to_owned(), Some("slotmail".to_owned())),
            ("os".to_owned(), None)
        ])
    );
    assert_eq!(c.id(None).await.unwrap(), None);
    let ns = c.namespace().await.unwrap();
    assert_eq!(ns.personal.len(), 1);
    assert_eq!(ns.personal[0].delimiter, Some('/'));
    assert!(ns.other.is_empty() && ns.shared.is_empty());
    server.finish().await;
}

#[tokio::test]
async fn unselect_and_close() {
    let mut script = selected(1);
    script.extend([
        expect("A0002 UNSELECT\r\n"),
        send("A0002 OK\r\n"),
        expect("A0003 SELECT INBOX\r\n"),
        send("* 1 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\nA0003 OK\r\n"),
        expect("A0004 CLOSE\r\n"),
        send("A0004 OK\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut c = connect_selected(&server).await;
    c.unselect().await.unwrap();
    assert!(c.selected().is_none());
    c.select("INBOX", false).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(c.state(), slotmail_imap_client::SessionState::Authenticated);
    server.finish().await;
}

#[tokio::test]
async fn raw_commands_return_any_status() {
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        expect("A0001 XYZZY plugh\r\n"),
        send("* OK [ALERT] nothing happens\r\nA0001 BAD Unknown command\r\n"),
        expect("A0002 LOGIN {5}\r\n"),
        send("+ go\r\n"),
        expect("alice \"pw\"\r\n"),
        send("A0002 OK done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let r = c.command_raw("XYZZY plugh").await.unwrap();
    assert_eq!(r.kind, StatusKind::Bad);
    assert_eq!(r.text, "Unknown command");
    assert_eq!(r.untagged.len(), 1);
    assert!(c.take_unsolicited().is_empty());
    let r = c.command_raw("LOGIN {5}\r\nalice \"pw\"").await.unwrap();
    assert_eq!(r.kind, StatusKind::Ok);
    server.finish().await;
}
