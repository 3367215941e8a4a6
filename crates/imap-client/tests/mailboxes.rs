//! Mailbox commands against a scripted fake server: SELECT / EXAMINE
//! (CONDSTORE, QRESYNC), LIST (modified UTF-7, literals, LIST-EXTENDED
//! with LIST-STATUS), LSUB, STATUS, CREATE (special use), DELETE, RENAME,
//! (UN)SUBSCRIBE and APPEND (LITERAL+, synchronizing, refused, binary).

mod support;

use slotmail_imap_client::proto::{Date, Value};
use slotmail_imap_client::{
    AppendUid, Client, Data, DateTime, Error, Flag, ListCommand, ListReturnOption,
    ListSelectOption, MailboxAttr, Response, ResponseCode, SequenceSet, SessionState, SpecialUse,
    StatusItem, StatusKind,
};
use support::*;

const SELECT_RESPONSES: &str = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)] Flags permitted\r\n\
* 3 EXISTS\r\n\
* 0 RECENT\r\n\
* OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
* OK [UIDNEXT 4] Predicted next UID\r\n\
* OK [HIGHESTMODSEQ 17] Highest\r\n\
* OK [ALERT] Quota almost full\r\n";

#[tokio::test]
async fn select_with_condstore() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 SELECT INBOX (CONDSTORE)\r\n"),
        send(SELECT_RESPONSES),
        send("A0001 OK [READ-WRITE] SELECT completed\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let m = c.select("inbox", true).await.unwrap();
    assert_eq!(m.name, "inbox");
    assert_eq!(m.exists, 3);
    assert_eq!(m.recent, Some(0));
    assert_eq!(m.uidvalidity, 1_700_000_000);
    assert_eq!(m.uidnext, Some(4));
    assert_eq!(m.highestmodseq, Some(17));
    assert_eq!(m.flags.len(), 6);
    assert_eq!(m.flags[5], Flag::Keyword("$Forwarded".into()));
    assert_eq!(m.permanentflags.len(), 6);
    assert!(m.allow_new_keywords);
    assert!(!m.read_only);
    assert_eq!(c.state(), SessionState::Selected);
    let sel = c.selected().unwrap();
    assert_eq!((sel.exists, sel.uidvalidity), (3, 1_700_000_000));
    // The ALERT is handed out as unsolicited.
    let u = c.take_unsolicited();
    assert!(
        matches!(
            &u[..],
            [Response::Status {
                kind: StatusKind::Ok,
                code: Some(ResponseCode::Alert),
                ..
            }]
        ),
        "{u:?}"
    );
    server.finish().await;
}

#[tokio::test]
async fn examine_is_read_only_and_failed_select_deselects() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 EXAMINE Archive\r\n"),
        send("* FLAGS ()\r\n* 0 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [NOMODSEQ] none\r\n"),
        send("A0001 OK [READ-ONLY] EXAMINE completed\r\n"),
        expect("A0002 SELECT Missing\r\n"),
        send("A0002 NO [NONEXISTENT] No such mailbox\r\n"),
        expect("A0003 SELECT Broken\r\n"),
        send("* 0 EXISTS\r\nA0003 OK done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let m = c.examine("Archive", false).await.unwrap();
    assert!(m.read_only);
    assert_eq!(m.highestmodseq, None);
    assert!(c.selected().unwrap().read_only);
    let err = c.select("Missing", false).await.unwrap_err();
    assert!(err.is_no_with(&ResponseCode::NonExistent), "{err:?}");
    assert!(c.selected().is_none());
    assert_eq!(c.state(), SessionState::Authenticated);
    let err = c.select("Broken", false).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(m) if m.contains("UIDVALIDITY")));
    assert!(matches!(
        c.select("bad\u{7}name", false).await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

#[tokio::test]
async fn select_qresync_enables_and_collects_changes() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 ENABLE QRESYNC\r\n"),
        send("* ENABLED QRESYNC\r\nA0001 OK\r\n"),
        expect("A0002 SELECT INBOX (QRESYNC (1700000000 10 1:20))\r\n"),
        send("* OK [CLOSED] previous mailbox closed\r\n"),
        send("* FLAGS (\\Seen)\r\n* 5 EXISTS\r\n* OK [UIDVALIDITY 1700000000] v\r\n"),
        send("* OK [UIDNEXT 21] n\r\n* OK [HIGHESTMODSEQ 30] h\r\n"),
        send("* VANISHED (EARLIER) 9,3:5\r\n"),
        send("* 2 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (25))\r\n"),
        send("* 4 FETCH (UID 12 FLAGS () MODSEQ (29))\r\n"),
        send("A0002 OK [READ-WRITE] QRESYNC done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let known: SequenceSet = "1:20".parse().unwrap();
    let q = c
        .select_qresync("INBOX", 1_700_000_000, 10, Some(&known))
        .await
        .unwrap();
    assert!(c.is_enabled("QRESYNC"));
    assert_eq!(q.mailbox.exists, 5);
    assert_eq!(q.mailbox.highestmodseq, Some(30));
    assert_eq!(q.vanished, vec![3, 4, 5, 9]);
    assert_eq!(q.changed.len(), 2);
    assert_eq!(
        (q.changed[0].seq, q.changed[0].uid, q.changed[0].modseq),
        (2, 7, Some(25))
    );
    assert_eq!(q.changed[0].flags, Some(vec![Flag::Seen]));
    assert_eq!(q.changed[1].flags, Some(vec![]));
    assert!(c.take_unsolicited().is_empty());
    server.finish().await;
}

#[tokio::test]
async fn select_qresync_needs_the_capability() {
    let server = FakeServer::start(vec![send("* OK [CAPABILITY IMAP4rev1] hi\r\n")]).await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert!(matches!(
        c.select_qresync("INBOX", 1, 1, None).await,
        Err(Error::MissingCapability(m)) if m == "QRESYNC"
    ));
    assert!(matches!(
        c.select_qresync("INBOX", 0, 1, None).await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

#[tokio::test]
async fn list_decodes_modified_utf7_and_literal_names() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LIST \"\" *\r\n"),
        send("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
        send("* LIST (\\HasNoChildren \\Drafts) \"/\" \"Entw&APw-rfe\"\r\n"),
        pieces(&[
            b"* LIST (\\Noselect \\HasChildren) \"/\" {3}\r\n",
            b"A/B",
            b"\r\n",
        ]),
        send("* LIST () NIL Flat\r\n"),
        send("A0001 OK LIST completed\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let list = c.list("", "*").await.unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["INBOX", "Entwürfe", "A/B", "Flat"]);
    assert_eq!(list[1].special_use(), vec![SpecialUse::Drafts]);
    assert!(list[2].has(&MailboxAttr::NoSelect));
    assert_eq!(list[0].delimiter, Some('/'));
    assert_eq!(list[3].delimiter, None);
    assert!(list.iter().all(|e| e.status.is_none()));
    server.finish().await;
}

#[tokio::test]
async fn list_extended_with_status_and_special_use() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect(
            "A0001 LIST (SUBSCRIBED) \"\" (INBOX Sent*) RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT))\r\n",
        ),
        send("* LIST (\\Subscribed \\HasNoChildren) \"/\" INBOX\r\n"),
        send("* STATUS INBOX (MESSAGES 3 UIDNEXT 4)\r\n"),
        send("* LIST (\\Subscribed \\Sent) \"/\" Sent (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"),
        send("* STATUS Sent (MESSAGES 0 UIDNEXT 1)\r\n"),
        send("A0001 OK done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let list = c
        .list_extended(&ListCommand {
            selection: vec![ListSelectOption::Subscribed],
            reference: String::new(),
            patterns: vec!["INBOX".into(), "Sent*".into()],
            return_opts: vec![
                ListReturnOption::SpecialUse,
                ListReturnOption::Status(vec![StatusItem::Messages, StatusItem::UidNext]),
            ],
        })
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0].has(&MailboxAttr::Subscribed));
    let st = list[0].status.as_ref().unwrap();
    assert_eq!(st.get(StatusItem::Messages), Some(3));
    assert_eq!(st.get(StatusItem::UidNext), Some(4));
    assert_eq!(st.get(StatusItem::Unseen), None);
    assert_eq!(list[1].special_use(), vec![SpecialUse::Sent]);
    assert_eq!(
        list[1].extended,
        vec![(
            "CHILDINFO".to_owned(),
            Value::List(vec![Value::String(b"SUBSCRIBED".to_vec())])
        )]
    );
    assert_eq!(
        list[1].status.as_ref().unwrap().get(StatusItem::Messages),
        Some(0)
    );
    server.finish().await;
}

#[tokio::test]
async fn list_results_are_bounded() {
    let mut resp = String::new();
    for i in 0..50 {
        resp.push_str(&format!("* LIST () \"/\" box{i}\r\n"));
    }
    resp.push_str("A0001 OK\r\n");
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LIST \"\" *\r\n"),
        send(&resp),
        expect("A0002 NOOP\r\n"),
        send("A0002 OK\r\n"),
    ])
    .await;
    let mut opts = quick_options();
    opts.max_buffered_fetch_bytes = 1000;
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    assert!(matches!(c.list("", "*").await, Err(Error::Limit(_))));
    assert!(c.is_usable());
    c.noop().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn lsub_and_status() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LSUB \"\" %\r\n"),
        send("* LSUB () \"/\" INBOX\r\n* LSUB (\\Noselect) \"/\" Lists\r\nA0001 OK\r\n"),
        expect("A0002 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"),
        send("* STATUS Other (MESSAGES 9)\r\n"),
        send("* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 77 HIGHESTMODSEQ 17)\r\n"),
        send("A0002 OK\r\n"),
        expect("A0003 STATUS Nowhere (MESSAGES)\r\n"),
        send("A0003 NO [NONEXISTENT] gone\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let subs = c.lsub("", "%").await.unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1].name, "Lists");
    let st = c
        .status(
            "INBOX",
            &[
                StatusItem::Messages,
                StatusItem::UidNext,
                StatusItem::UidValidity,
                StatusItem::HighestModSeq,
            ],
        )
        .await
        .unwrap();
    assert_eq!(st.name, "INBOX");
    assert_eq!(st.get(StatusItem::UidValidity), Some(77));
    assert_eq!(st.get(StatusItem::HighestModSeq), Some(17));
    // The other mailbox's STATUS is unsolicited.
    assert_eq!(c.take_unsolicited().len(), 1);
    let err = c
        .status("Nowhere", &[StatusItem::Messages])
        .await
        .unwrap_err();
    assert!(err.is_no_with(&ResponseCode::NonExistent));
    server.finish().await;
}

#[tokio::test]
async fn mailbox_management() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 CREATE Sent (USE (\\Sent))\r\n"),
        send("A0001 OK created\r\n"),
        expect("A0002 CREATE Sent\r\n"),
        send("A0002 NO [ALREADYEXISTS] exists\r\n"),
        expect("A0003 RENAME Sent \"Sent Items\"\r\n"),
        send("A0003 OK\r\n"),
        expect("A0004 SUBSCRIBE \"Sent Items\"\r\n"),
        send("A0004 OK\r\n"),
        expect("A0005 UNSUBSCRIBE \"Sent Items\"\r\n"),
        send("A0005 OK\r\n"),
        expect("A0006 DELETE \"Sent Items\"\r\n"),
        send("A0006 OK\r\n"),
        expect("A0007 DELETE INBOX\r\n"),
        send("A0007 NO [CANNOT] INBOX cannot be deleted\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.create("Sent", &[SpecialUse::Sent]).await.unwrap();
    let err = c.create("Sent", &[]).await.unwrap_err();
    assert!(err.is_no_with(&ResponseCode::AlreadyExists));
    c.rename("Sent", "Sent Items").await.unwrap();
    c.subscribe("Sent Items").await.unwrap();
    c.unsubscribe("Sent Items").await.unwrap();
    c.delete("Sent Items").await.unwrap();
    assert!(
        c.delete("inbox")
            .await
            .unwrap_err()
            .is_no_with(&ResponseCode::Cannot)
    );
    assert!(matches!(
        c.create("a\nb", &[]).await,
        Err(Error::InvalidRequest(_))
    ));
    server.finish().await;
}

fn date() -> DateTime {
    DateTime::new(Date::new(2024, 2, 1).unwrap(), 10, 0, 0, 60).unwrap()
}

#[tokio::test]
async fn append_with_literal_plus_returns_appenduid() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect(
            "A0001 APPEND INBOX (\\Seen $Label1) \"01-Feb-2024 10:00:00 +0100\" {12+}\r\nHello world!\r\n",
        ),
        send("A0001 OK [APPENDUID 1700000000 4] APPEND completed\r\n"),
        expect("A0002 APPEND INBOX ~{5+}\r\na\x00b\r\n\r\n"),
        send("A0002 OK done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let uid = c
        .append(
            "INBOX",
            &[Flag::Seen, Flag::keyword("$Label1").unwrap()],
            Some(date()),
            b"Hello world!",
        )
        .await
        .unwrap();
    assert_eq!(
        uid,
        Some(AppendUid {
            uidvalidity: 1_700_000_000,
            uid: 4
        })
    );
    assert_eq!(
        c.append("INBOX", &[], None, b"a\0b\r\n").await.unwrap(),
        None
    );
    server.finish().await;
}

#[tokio::test]
async fn append_waits_for_the_continuation_without_literal_plus() {
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1 UIDPLUS] hi\r\n"),
        expect("A0001 APPEND Drafts {12}\r\n"),
        send("* 7 EXISTS\r\n+ Ready for literal data\r\n"),
        expect("Hello world!\r\n"),
        send("A0001 OK [APPENDUID 9 1] done\r\n"),
        expect("A0002 APPEND Drafts {12}\r\n"),
        send("A0002 NO [OVERQUOTA] Quota exceeded\r\n"),
        expect("A0003 NOOP\r\n"),
        send("A0003 OK\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let uid = c
        .append("Drafts", &[], None, b"Hello world!")
        .await
        .unwrap();
    assert_eq!(
        uid,
        Some(AppendUid {
            uidvalidity: 9,
            uid: 1
        })
    );
    assert_eq!(c.take_unsolicited(), vec![Response::Data(Data::Exists(7))]);
    // Refused before the literal: nothing more is sent.
    let err = c
        .append("Drafts", &[], None, b"Hello world!")
        .await
        .unwrap_err();
    assert!(err.is_no_with(&ResponseCode::OverQuota), "{err:?}");
    c.noop().await.unwrap();
    server.finish().await;
}
