//! The client against the real slotmail IMAP server (`slotmail_imap::serve`)
//! on 127.0.0.1:0 over a slot in a temporary directory: log in, create,
//! append, fetch and compare bytes, then read the same mailbox as an admin
//! acting for the user (the replication check's way in), with COMPRESS.

use std::sync::Arc;

use slotmail_imap_client::{
    Client, ClientOptions, Flag, ListCommand, ListReturnOption, MailboxAttr, ResponseCode,
    SequenceSet, SpecialUse, StatusItem,
};
use slotmail_store::{Options, Slot};

const PASSWORD: &str = "secret";

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let slot = Arc::new(Slot::open(dir.path().join("slot"), Options::default()).unwrap());
    slot.create_user("alice", PASSWORD, false).unwrap();
    slot.create_user("root", PASSWORD, true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = slotmail_imap::ImapConfig {
        hostname: "test.example".into(),
        allow_plaintext_auth: true,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        slotmail_imap::serve(listener, None, None, slot, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    Running {
        addr,
        stop: Some(stop),
        server,
        _dir: dir,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap();
    }
}

fn messages() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: first\r\n\r\nHello.\r\n".to_vec(),
        "From: b@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n"
            .as_bytes()
            .to_vec(),
    ];
    let mut big = b"From: c@example.org\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!("line {i} of a larger message\r\n").as_bytes());
    }
    v.push(big);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_append_fetch_compare_against_slotmail_imap() {
    let server = start().await;
    let msgs = messages();

    let mut c = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    assert!(c.has_capability("AUTH=PLAIN"));
    c.login("alice", PASSWORD).await.unwrap();
    assert!(c.has_capability("UIDPLUS"));

    // New users start with the special-use mailboxes (Archive among them).
    let err = c
        .create("Archive", &[SpecialUse::Archive])
        .await
        .unwrap_err();
    assert!(err.is_no_with(&ResponseCode::AlreadyExists), "{err:?}");
    c.create("Projects/Grüße", &[]).await.unwrap();
    let mut uids = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let flags = if i == 0 { vec![Flag::Seen] } else { vec![] };
        let uid = c
            .append("INBOX", &flags, None, m)
            .await
            .unwrap()
            .expect("APPENDUID");
        uids.push(uid);
    }
    let uidvalidity = uids[0].uidvalidity;

    let mbox = c.select("INBOX", true).await.unwrap();
    assert_eq!(mbox.exists, 3);
    assert_eq!(mbox.uidvalidity, uidvalidity);
    assert!(mbox.highestmodseq.is_some());

    let recs = c
        .uid_fetch(
            &SequenceSet::all(),
            "(UID FLAGS RFC822.SIZE MODSEQ INTERNALDATE BODYSTRUCTURE ENVELOPE BODY.PEEK[])",
        )
        .await
        .unwrap();
    assert_eq!(recs.len(), 3);
    for (rec, (m, u)) in recs.iter().zip(msgs.iter().zip(&uids)) {
        assert_eq!(rec.uid, u.uid);
        assert_eq!(rec.message(), Some(&m[..]), "bytes of UID {}", rec.uid);
        assert_eq!(rec.rfc822_size, Some(m.len() as u64));
        assert!(rec.bodystructure.is_some() && rec.envelope.is_some());
    }
    // IMAP4rev1 sessions also see \Recent.
    let flags0 = recs[0].flags.clone().unwrap();
    assert!(flags0.contains(&Flag::Seen), "{flags0:?}");
    assert!(!recs[1].flags.as_ref().unwrap().contains(&Flag::Seen));

    let st = c
        .uid_store(
            &SequenceSet::single(uids[1].uid).unwrap(),
            "+FLAGS.SILENT",
            &[Flag::Flagged],
            None,
        )
        .await
        .unwrap();
    assert!(st.modified.is_empty());
    assert_eq!(c.uid_search("FLAGGED").await.unwrap(), vec![uids[1].uid]);
    assert_eq!(c.uid_search("UNSEEN").await.unwrap().len(), 2);

    let copied = c
        .uid_copy(&SequenceSet::single(uids[0].uid).unwrap(), "Archive")
        .await
        .unwrap()
        .expect("COPYUID");
    assert_eq!(copied.source, vec![uids[0].uid]);

    let list = c
        .list_extended(&ListCommand {
            selection: Vec::new(),
            reference: String::new(),
            patterns: vec!["*".into()],
            return_opts: vec![
                ListReturnOption::SpecialUse,
                ListReturnOption::Status(vec![StatusItem::Messages]),
            ],
        })
        .await
        .unwrap();
    assert!(list.iter().any(|e| e.name == "Projects/Grüße"), "{list:?}");
    let archive = list.iter().find(|e| e.name == "Archive").unwrap();
    assert!(archive.has(&MailboxAttr::Archive));
    assert_eq!(
        archive.status.as_ref().unwrap().get(StatusItem::Messages),
        Some(1)
    );

    // The replication check's view: an admin acting for alice, compressed.
    let mut admin = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    admin
        .authenticate_plain(Some("alice"), "root", PASSWORD)
        .await
        .unwrap();
    if admin.has_capability("COMPRESS=DEFLATE") {
        admin.compress().await.unwrap();
    }
    let m2 = admin.examine("INBOX", true).await.unwrap();
    assert_eq!((m2.exists, m2.uidvalidity), (3, uidvalidity));
    let mut seen = Vec::new();
    admin
        .uid_fetch_each(&SequenceSet::all(), "(UID FLAGS BODY.PEEK[])", |r| {
            seen.push((r.uid, r.flags.clone(), r.message().map(<[u8]>::to_vec)));
        })
        .await
        .unwrap();
    assert_eq!(seen.len(), 3);
    for ((uid, flags, body), rec) in seen.iter().zip(&recs) {
        assert_eq!(*uid, rec.uid);
        assert_eq!(body.as_deref(), rec.message());
        if *uid == uids[1].uid {
            assert!(
                flags.as_ref().unwrap().contains(&Flag::Flagged),
                "{flags:?}"
            );
        }
    }

    // IDLE in the admin session wakes on alice's expunge.
    admin.idle_start().await.unwrap();
    c.uid_store(
        &SequenceSet::single(uids[2].uid).unwrap(),
        "+FLAGS.SILENT",
        &[Flag::Deleted],
        None,
    )
    .await
    .unwrap();
    let gone = c
        .uid_expunge(&SequenceSet::single(uids[2].uid).unwrap())
        .await
        .unwrap();
    assert_eq!(gone.seqs.len() + gone.vanished.len(), 1);
    let news = admin
        .idle_wait(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!news.is_empty());
    admin.idle_done().await.unwrap();

    // Resynchronising from the first SELECT's MODSEQ finds the flag change
    // and the expunge.
    let mut q = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    q.login("alice", PASSWORD).await.unwrap();
    let known = SequenceSet::range(1, uids[2].uid).unwrap();
    let r = q
        .select_qresync(
            "INBOX",
            uidvalidity,
            mbox.highestmodseq.unwrap(),
            Some(&known),
        )
        .await
        .unwrap();
    assert_eq!(r.mailbox.exists, 2);
    assert_eq!(r.vanished, vec![uids[2].uid]);
    assert!(
        r.changed.iter().any(|f| f.uid == uids[1].uid
            && f.flags.as_ref().is_some_and(|f| f.contains(&Flag::Flagged))),
        "{:?}",
        r.changed
    );
    q.logout().await.unwrap();

    c.logout().await.unwrap();
    admin.logout().await.unwrap();
    server.stop().await;
}
