//! Session-level behaviour against a scripted fake server: greeting,
//! capabilities, LOGIN / AUTHENTICATE PLAIN (SASL-IR and continuation),
//! ENABLE, LOGOUT, TLS and STARTTLS, COMPRESS, and every error kind.

mod support;

use std::time::Duration;

use slotmail_imap_client::{
    Client, ClientOptions, Data, Error, Response, ResponseCode, SequenceSet, SessionState,
};
use support::*;

#[tokio::test]
async fn greeting_capabilities_login_and_logout() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LOGIN alice \"pass word\"\r\n"),
        send("A0001 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n"),
        expect("A0002 LOGOUT\r\n"),
        send("* BYE [UNAVAILABLE] see you\r\nA0002 OK Logged out\r\n"),
        Step::ExpectEof,
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert_eq!(c.greeting(), "slotmail ready");
    assert_eq!(c.state(), SessionState::NotAuthenticated);
    assert!(c.has_capability("sasl-ir"));
    assert!(c.has_capability("COMPRESS=DEFLATE"));
    c.login("alice", "pass word").await.unwrap();
    assert_eq!(c.state(), SessionState::Authenticated);
    assert_eq!(c.capabilities(), ["IMAP4rev1", "IDLE", "MOVE"]);
    assert!(!c.is_tls());
    c.logout().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn logout_accepts_a_close_right_after_bye() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LOGOUT\r\n"),
        send("* BYE closing\r\n"),
        Step::Close,
    ])
    .await;
    let c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.logout().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn capabilities_are_asked_for_when_not_announced() {
    let server = FakeServer::start(vec![
        send("* OK hello\r\n"),
        expect("A0001 CAPABILITY\r\n"),
        send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA0001 OK done\r\n"),
        expect("A0002 LOGIN bob hunter2\r\n"),
        send("A0002 OK welcome\r\n"),
        expect("A0003 CAPABILITY\r\n"),
        send("* CAPABILITY IMAP4rev1 IDLE\r\nA0003 OK done\r\n"),
        expect("A0004 CAPABILITY\r\n"),
        send("* CAPABILITY IMAP4rev1 IDLE X-NEW\r\nA0004 OK done\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert_eq!(c.capabilities(), ["IMAP4rev1", "AUTH=PLAIN"]);
    c.login("bob", "hunter2").await.unwrap();
    assert_eq!(c.capabilities(), ["IMAP4rev1", "IDLE"]);
    let caps = c.refresh_capabilities().await.unwrap().to_vec();
    assert_eq!(caps, ["IMAP4rev1", "IDLE", "X-NEW"]);
    server.finish().await;
}

#[tokio::test]
async fn preauth_greeting_is_authenticated() {
    let server = FakeServer::start(vec![send(
        "* PREAUTH [CAPABILITY IMAP4rev2] logged in as alice\r\n",
    )])
    .await;
    let c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert_eq!(c.state(), SessionState::Authenticated);
    server.finish().await;
}

#[tokio::test]
async fn bye_greeting_is_closed_with_its_code() {
    let server = FakeServer::start(vec![
        send("* BYE [UNAVAILABLE] slot is being moved\r\n"),
        Step::Close,
    ])
    .await;
    let err = Client::connect(server.addr, quick_options())
        .await
        .unwrap_err();
    match &err {
        Error::Closed { code, text } => {
            assert_eq!(code, &Some(ResponseCode::Unavailable));
            assert_eq!(text, "slot is being moved");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.finish().await;
}

#[tokio::test]
async fn garbage_greeting_is_a_protocol_error_with_the_line_escaped() {
    let server = FakeServer::start(vec![send("HELLO\x01 there\r\n")]).await;
    let err = Client::connect(server.addr, quick_options())
        .await
        .unwrap_err();
    match err {
        Error::Protocol(m) => assert!(m.contains("HELLO\\x01 there"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    server.finish().await;
}

#[tokio::test]
async fn login_failure_carries_the_code_and_keeps_the_connection() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 LOGIN alice wrong\r\n"),
        send("A0001 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
        expect("A0002 NOOP\r\n"),
        send("A0002 OK\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let err = c.login("alice", "wrong").await.unwrap_err();
    assert!(
        err.is_no_with(&ResponseCode::AuthenticationFailed),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "NO [AUTHENTICATIONFAILED]: Authentication failed"
    );
    assert!(c.is_usable());
    assert_eq!(c.state(), SessionState::NotAuthenticated);
    c.noop().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn login_sends_synchronizing_literals_after_continuation() {
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        expect("A0001 LOGIN alice {9}\r\n"),
        send("+ Ready for literal data\r\n"),
        expect("pässword\r\n"),
        send("A0001 OK [CAPABILITY IMAP4rev1] in\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.login("alice", "pässword").await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn login_is_refused_locally_when_disabled() {
    let server = FakeServer::start(vec![send(
        "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n",
    )])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert!(matches!(
        c.login("alice", "pw").await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        c.authenticate_plain(None, "alice", "pw").await,
        Err(Error::MissingCapability(m)) if m == "AUTH=PLAIN"
    ));
    server.finish().await;
}

#[tokio::test]
async fn authenticate_plain_with_sasl_ir_as_admin() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 AUTHENTICATE PLAIN YWxpY2UAYWRtaW4AcHc=\r\n"),
        send("A0001 OK [CAPABILITY IMAP4rev1 CONDSTORE] alice via admin\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.authenticate_plain(Some("alice"), "admin", "pw")
        .await
        .unwrap();
    assert_eq!(c.state(), SessionState::Authenticated);
    assert!(c.has_capability("CONDSTORE"));
    server.finish().await;
}

#[tokio::test]
async fn authenticate_plain_answers_the_continuation_without_sasl_ir() {
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"),
        expect("A0001 AUTHENTICATE PLAIN\r\n"),
        send("+ \r\n"),
        expect("AGJvYgBodW50ZXIy\r\n"),
        send("A0001 OK [CAPABILITY IMAP4rev1] ok\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.authenticate_plain(None, "bob", "hunter2").await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn authenticate_plain_second_challenge_is_cancelled() {
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"),
        expect("A0001 AUTHENTICATE PLAIN\r\n"),
        send("+ \r\n"),
        expect("AGJvYgBodW50ZXIy\r\n"),
        send("+ bW9yZT8=\r\n"),
        expect("*\r\n"),
        send("A0001 BAD AUTHENTICATE cancelled\r\n"),
        expect("A0002 AUTHENTICATE PLAIN\r\n"),
        send("+ \r\n"),
        expect("AGJvYgBodW50ZXIy\r\n"),
        send("A0002 NO [AUTHENTICATIONFAILED] no\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let err = c
        .authenticate_plain(None, "bob", "hunter2")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Bad { .. }), "{err:?}");
    let err = c
        .authenticate_plain(None, "bob", "hunter2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ResponseCode::AuthenticationFailed));
    server.finish().await;
}

#[tokio::test]
async fn enable_utf8_switches_mailbox_names_to_utf8() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 CREATE Entw&APw-rfe\r\n"),
        send("A0001 OK\r\n"),
        expect("A0002 ENABLE UTF8=ACCEPT CONDSTORE\r\n"),
        send("* ENABLED UTF8=ACCEPT\r\nA0002 OK enabled\r\n"),
        expect("A0003 CREATE \"Entwürfe/Brief\"\r\n"),
        send("A0003 OK\r\n"),
        expect("A0004 LIST \"\" *\r\n"),
        send("* LIST (\\HasNoChildren) \"/\" \"Entwürfe/Brief\"\r\nA0004 OK\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.create("Entwürfe", &[]).await.unwrap();
    let enabled = c.enable(&["UTF8=ACCEPT", "CONDSTORE"]).await.unwrap();
    assert_eq!(enabled, ["UTF8=ACCEPT"]);
    assert!(c.is_enabled("utf8=accept"));
    assert!(!c.is_enabled("CONDSTORE"));
    c.create("Entwürfe/Brief", &[]).await.unwrap();
    let list = c.list("", "*").await.unwrap();
    assert_eq!(list[0].name, "Entwürfe/Brief");
    server.finish().await;
}

#[tokio::test]
async fn implicit_tls() {
    let (server_cfg, client_cfg) = tls_pair();
    let server = FakeServer::start(vec![
        Step::StartTls(server_cfg),
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("* 2 EXISTS\r\nA0001 OK\r\n"),
        expect("A0002 LOGOUT\r\n"),
        send("* BYE\r\nA0002 OK\r\n"),
        Step::ExpectEof,
    ])
    .await;
    let mut c = Client::connect_tls(server.addr, "localhost", client_cfg, quick_options())
        .await
        .unwrap();
    assert!(c.is_tls());
    assert_eq!(
        c.noop().await.unwrap(),
        vec![Response::Data(Data::Exists(2))]
    );
    c.logout().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn tls_with_the_wrong_name_fails() {
    let (server_cfg, client_cfg) = tls_pair();
    let server = FakeServer::start(vec![Step::TlsMustFail(server_cfg)]).await;
    let err = Client::connect_tls(server.addr, "not-localhost", client_cfg, quick_options())
        .await
        .unwrap_err();
    match &err {
        Error::Io(e) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    server.finish().await;
}

#[tokio::test]
async fn starttls_upgrades_and_forgets_old_capabilities() {
    let (server_cfg, client_cfg) = tls_pair();
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n"),
        expect("A0001 STARTTLS\r\n"),
        send("A0001 OK Begin TLS negotiation now\r\n"),
        Step::StartTls(server_cfg),
        expect("A0002 CAPABILITY\r\n"),
        send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA0002 OK\r\n"),
        expect("A0003 LOGIN alice pw\r\n"),
        send("A0003 OK [CAPABILITY IMAP4rev1] in\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.starttls("localhost", client_cfg).await.unwrap();
    assert!(c.is_tls());
    assert_eq!(c.capabilities(), ["IMAP4rev1", "AUTH=PLAIN"]);
    c.login("alice", "pw").await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn starttls_refuses_injected_plaintext() {
    let (_, client_cfg) = tls_pair();
    let server = FakeServer::start(vec![
        send("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
        expect("A0001 STARTTLS\r\n"),
        send("A0001 OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let err = c.starttls("localhost", client_cfg).await.unwrap_err();
    match err {
        Error::Protocol(m) => assert!(m.contains("injected"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!c.is_usable());
    assert!(matches!(c.noop().await, Err(Error::Broken(_))));
    server.finish().await;
}

#[tokio::test]
async fn starttls_needs_the_capability() {
    let (_, client_cfg) = tls_pair();
    let server = FakeServer::start(vec![send(GREETING)]).await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert!(matches!(
        c.starttls("localhost", client_cfg).await,
        Err(Error::MissingCapability(m)) if m == "STARTTLS"
    ));
    server.finish().await;
}

#[tokio::test]
async fn compress_deflate_both_ways_with_a_large_literal() {
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\r\n"[(i % 28) as usize])
        .collect();
    let mut fetch = format!("* 1 FETCH (UID 9 BODY[] {{{}}}\r\n", body.len()).into_bytes();
    fetch.extend_from_slice(&body);
    fetch.extend_from_slice(b")\r\nA0003 OK done\r\n");
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 COMPRESS DEFLATE\r\n"),
        send("A0001 OK [COMPRESSIONACTIVE] DEFLATE active\r\n"),
        Step::Compress,
        expect("A0002 NOOP\r\n"),
        send("* 3 EXISTS\r\nA0002 OK\r\n"),
        expect("A0003 UID FETCH 9 (BODY.PEEK[])\r\n"),
        Step::Send(fetch),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    c.compress().await.unwrap();
    assert!(c.is_compressed());
    assert!(matches!(c.compress().await, Err(Error::InvalidRequest(_))));
    assert_eq!(
        c.noop().await.unwrap(),
        vec![Response::Data(Data::Exists(3))]
    );
    let recs = c
        .uid_fetch(&SequenceSet::single(9).unwrap(), "(BODY.PEEK[])")
        .await
        .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].message(), Some(&body[..]));
    server.finish().await;
}

#[tokio::test]
async fn command_timeout_breaks_the_connection() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        Step::Sleep(Duration::from_millis(800)),
    ])
    .await;
    let opts = ClientOptions {
        command_timeout: Duration::from_millis(200),
        ..quick_options()
    };
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    let err = c.noop().await.unwrap_err();
    match &err {
        Error::Timeout { operation, limit } => {
            assert_eq!(*operation, "NOOP");
            assert_eq!(*limit, Duration::from_millis(200));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.breaks_connection());
    assert!(!c.is_usable());
    assert!(matches!(c.noop().await, Err(Error::Broken(m)) if m.contains("timed out")));
    server.finish().await;
}

#[tokio::test]
async fn io_timeout_applies_to_each_read() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("* 1 EXISTS\r\n"),
        Step::Sleep(Duration::from_millis(600)),
    ])
    .await;
    let opts = ClientOptions {
        io_timeout: Duration::from_millis(200),
        ..quick_options()
    };
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    let err = c.noop().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { limit, .. } if limit == Duration::from_millis(200)),
        "{err:?}"
    );
    server.finish().await;
}

#[tokio::test]
async fn bye_during_a_command_is_closed_with_its_code() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("* BYE [UNAVAILABLE] Server shutting down\r\n"),
        Step::Close,
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let err = c.noop().await.unwrap_err();
    match &err {
        Error::Closed { code, text } => {
            assert_eq!(code, &Some(ResponseCode::Unavailable));
            assert_eq!(text, "Server shutting down");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(c.noop().await, Err(Error::Broken(_))));
    server.finish().await;
}

#[tokio::test]
async fn close_without_bye() {
    let server =
        FakeServer::start(vec![send(GREETING), expect("A0001 NOOP\r\n"), Step::Close]).await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    let err = c.noop().await.unwrap_err();
    assert!(matches!(err, Error::Closed { code: None, .. }), "{err:?}");
    server.finish().await;
}

#[tokio::test]
async fn malformed_responses_are_protocol_errors_but_the_stream_goes_on() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("* 1 FETCH (UID x\x7f)\r\nA0001 OK\r\n"),
        expect("A0002 NOOP\r\n"),
        send("A0002 OK [UIDNEXT zero] hmm\r\n"),
        expect("A0003 NOOP\r\n"),
        send("A0003 OK\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    match c.noop().await.unwrap_err() {
        Error::Protocol(m) => assert!(m.contains("* 1 FETCH (UID x\\x7f)"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(c.is_usable());
    match c.noop().await.unwrap_err() {
        Error::Protocol(m) => assert!(m.contains("A0002 OK [UIDNEXT zero] hmm"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(c.is_usable());
    c.noop().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn a_foreign_tag_breaks_the_connection() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("B7 OK what\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert!(matches!(c.noop().await, Err(Error::Protocol(m)) if m.contains("B7")));
    assert!(!c.is_usable());
    server.finish().await;
}

#[tokio::test]
async fn an_unexpected_continuation_breaks_the_connection() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 NOOP\r\n"),
        send("+ send more\r\n"),
    ])
    .await;
    let mut c = Client::connect(server.addr, quick_options()).await.unwrap();
    assert!(matches!(c.noop().await, Err(Error::Protocol(m)) if m.contains("+ send more")));
    assert!(matches!(c.noop().await, Err(Error::Broken(_))));
    server.finish().await;
}

#[tokio::test]
async fn reader_limits_are_fatal() {
    let server = FakeServer::start(vec![
        send(GREETING),
        expect("A0001 UID FETCH 1 (BODY.PEEK[])\r\n"),
        send("* 1 FETCH (UID 1 BODY[] {5000}\r\n"),
    ])
    .await;
    let mut opts = quick_options();
    opts.response_limits.max_literal_bytes = 1000;
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    let err = c
        .uid_fetch(&SequenceSet::single(1).unwrap(), "(BODY.PEEK[])")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResponseTooLarge(_)), "{err:?}");
    assert!(!c.is_usable());
    server.finish().await;
}

/// Requires a `Send` value (compile-time check only).
fn assert_send<T: Send>(_: T) {}

/// Every client future can run in a spawned task (the load generator runs
/// many sessions on a multi-threaded runtime). Checked by the compiler;
/// the futures are built and dropped, never polled.
fn client_futures_are_send(c: &mut Client, cfg: std::sync::Arc<rustls::ClientConfig>) {
    let set = SequenceSet::all();
    assert_send(Client::connect("127.0.0.1:1", ClientOptions::default()));
    assert_send(Client::connect_tls(
        "127.0.0.1:1",
        "x",
        cfg.clone(),
        ClientOptions::default(),
    ));
    assert_send(c.starttls("x", cfg));
    assert_send(c.login("a", "b"));
    assert_send(c.authenticate_plain(None, "a", "b"));
    assert_send(c.enable(&["QRESYNC"]));
    assert_send(c.select("INBOX", true));
    assert_send(c.select_qresync("INBOX", 1, 1, None));
    assert_send(c.list("", "*"));
    assert_send(c.status("INBOX", &[]));
    assert_send(c.append("INBOX", &[], None, b"x"));
    assert_send(c.uid_fetch(&set, "(UID)"));
    assert_send(c.uid_fetch_each(&set, "(UID)", |_| {}));
    assert_send(c.uid_store(&set, "+FLAGS", &[], None));
    assert_send(c.uid_search("ALL"));
    assert_send(c.uid_move(&set, "x"));
    assert_send(c.expunge());
    assert_send(c.noop());
    assert_send(c.idle_start());
    assert_send(c.idle_wait(Duration::from_secs(1)));
    assert_send(c.idle_done());
    assert_send(c.compress());
    assert_send(c.command_raw("NOOP"));
}

#[test]
fn futures_are_send() {
    // Referencing the checker makes the compiler type-check it.
    let _ = client_futures_are_send;
}
