//! Session-level transcripts: command lines fed to a `Session` over a
//! temporary slot, responses compared line by line (`{*}` matches any text).

mod common;

use common::*;
use slotmail_imap::{Action, ImapConfig, State};

fn logged_in(f: &Fixture, user: &str) -> Client {
    let (mut c, _) = Client::new(f.context(Fixture::config()), false, false);
    c.login(user);
    c
}

/// Two sessions of one user on one context (so IDLE notifications work).
fn two_sessions(f: &Fixture) -> (Client, Client) {
    let ctx = f.context(Fixture::config());
    let (mut a, _) = Client::new(ctx.clone(), false, false);
    let (mut b, _) = Client::new(ctx, false, false);
    a.login("alice");
    b.login("alice");
    (a, b)
}

fn append(c: &mut Client, mailbox: &str, flags: &str, raw: &[u8]) -> String {
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("{flags} ")
    };
    let mut cmd = format!("A APPEND {mailbox} {flags}{{{}+}}\r\n", raw.len()).into_bytes();
    cmd.extend_from_slice(raw);
    cmd.extend_from_slice(b"\r\n");
    String::from_utf8_lossy(&c.feed(&cmd)).into_owned()
}

// ----- connection, capabilities, authentication -----------------------------

#[test]
fn greeting_and_capabilities_before_login() {
    let f = Fixture::new();
    let (mut c, greeting) = Client::new(f.context(Fixture::config()), false, true);
    check_lines(
        &greeting,
        &[
            "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN SASL-IR] test.example slotmail IMAP ready",
        ],
    );
    c.run(
        "a1 CAPABILITY",
        &[
            "* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN SASL-IR",
            "a1 OK CAPABILITY completed",
        ],
    );
    c.run("a2 NOOP", &["a2 OK NOOP completed"]);
    c.run("a3 SELECT INBOX", &["a3 BAD Log in first"]);
    c.run("a4 FETCH 1 FLAGS", &["a4 BAD Log in first"]);
    c.run(
        "a5 LOGOUT",
        &["* BYE Logging out", "a5 OK LOGOUT completed"],
    );
    assert!(c.closed);
}

#[test]
fn plaintext_login_refused_without_tls() {
    let f = Fixture::new();
    let config = ImapConfig {
        allow_plaintext_auth: false,
        ..Fixture::config()
    };
    let ctx = f.context(config);
    let (mut c, greeting) = Client::new(ctx.clone(), false, true);
    assert!(greeting.contains(" STARTTLS LOGINDISABLED]"), "{greeting}");
    assert!(!greeting.contains("AUTH=PLAIN"));
    c.run(
        "a1 LOGIN alice secret",
        &["a1 NO [PRIVACYREQUIRED] Plaintext login is not allowed without TLS; use STARTTLS"],
    );
    c.run(
        "a2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        &["a2 NO [PRIVACYREQUIRED] {*}"],
    );
    c.run("a3 STARTTLS", &["a3 OK Begin TLS negotiation now"]);
    assert_eq!(c.last_action, Action::StartTls);
    c.session.tls_started();
    c.run(
        "a4 CAPABILITY",
        &[
            "* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE AUTH=PLAIN SASL-IR",
            "a4 OK {*}",
        ],
    );
    c.run("a5 STARTTLS", &["a5 BAD TLS is already active"]);
    c.run(
        "a6 LOGIN alice secret",
        &["a6 OK [CAPABILITY {*}] Logged in"],
    );
    // On an implicit-TLS connection STARTTLS is not offered.
    let (mut t, greeting) = Client::new(ctx, true, false);
    assert!(greeting.contains("ENABLE AUTH=PLAIN"), "{greeting}");
    t.run("b1 STARTTLS", &["b1 BAD TLS is already active"]);
}

#[test]
fn login_failures_look_alike_and_end_the_connection() {
    let f = Fixture::new();
    let (mut c, _) = Client::new(f.context(Fixture::config()), false, false);
    c.run(
        "a1 LOGIN alice wrong",
        &["a1 NO [AUTHENTICATIONFAILED] Authentication failed"],
    );
    c.run(
        "a2 LOGIN nobody secret",
        &["a2 NO [AUTHENTICATIONFAILED] Authentication failed"],
    );
    c.run(
        "a3 LOGIN \"al ice\" secret",
        &["a3 NO [AUTHENTICATIONFAILED] Authentication failed"],
    );
    c.run(
        "a4 LOGIN alice wrong",
        &["a4 NO [AUTHENTICATIONFAILED] Authentication failed"],
    );
    assert!(!c.closed);
    c.run(
        "a5 LOGIN alice wrong",
        &[
            "a5 NO [AUTHENTICATIONFAILED] Authentication failed",
            "* BYE Too many failed logins",
        ],
    );
    assert!(c.closed);
    assert_eq!(c.session.state(), State::Logout);
}

#[test]
fn failed_login_is_delayed() {
    let f = Fixture::new();
    let ctx = f.context(ImapConfig {
        allow_plaintext_auth: true,
        ..Default::default()
    });
    let (mut c, _) = Client::new(ctx, false, false);
    let mut out = slotmail_imap::Out::new();
    let cmd = slotmail_imap_proto::parse_command_bytes(b"a LOGIN alice wrong\r\n").unwrap();
    let first = c.session.execute(cmd.clone(), &mut out);
    let second = c.session.execute(cmd, &mut out);
    let (d1, d2) = (first.delay.unwrap(), second.delay.unwrap());
    assert!(
        d1 >= std::time::Duration::from_millis(500) && d2 == d1 * 2,
        "{d1:?} {d2:?}"
    );
}

#[test]
fn authenticate_plain_forms() {
    let f = Fixture::new();
    let ctx = f.context(Fixture::config());
    // SASL-IR: "\0alice\0secret".
    let (mut c, _) = Client::new(ctx.clone(), false, false);
    c.run(
        "a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        &["a1 OK [CAPABILITY {*}] Logged in"],
    );
    assert_eq!(c.session.user_name(), Some("alice"));
    c.run(
        "a2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        &["a2 BAD Already authenticated"],
    );
    // With a continuation.
    let (mut c, _) = Client::new(ctx.clone(), false, false);
    c.run("b1 AUTHENTICATE PLAIN", &["+ "]);
    assert_eq!(c.last_action, Action::AuthContinue);
    c.run(
        "AGFsaWNlAHNlY3JldA==",
        &["b1 OK [CAPABILITY {*}] Logged in"],
    );
    // Cancelled, then a wrong password, then garbage.
    let (mut c, _) = Client::new(ctx.clone(), false, false);
    c.run("c1 AUTHENTICATE PLAIN", &["+ "]);
    c.run("*", &["c1 BAD AUTHENTICATE cancelled"]);
    c.run(
        "c2 AUTHENTICATE PLAIN AGFsaWNlAHdyb25n",
        &["c2 NO [AUTHENTICATIONFAILED] Authentication failed"],
    );
    c.run("c3 AUTHENTICATE PLAIN", &["+ "]);
    c.run("!!!", &["c3 BAD Invalid BASE64 in AUTHENTICATE data"]);
    c.run(
        "c4 AUTHENTICATE PLAIN YWxpY2U=",
        &["c4 BAD Malformed PLAIN response {*}"],
    );
    c.run(
        "c5 AUTHENTICATE CRAM-MD5",
        &["c5 NO [CANNOT] Unsupported authentication mechanism CRAM-MD5"],
    );
    // Empty initial response "=" is an empty PLAIN message.
    c.run(
        "c6 AUTHENTICATE PLAIN =",
        &["c6 BAD Malformed PLAIN response {*}"],
    );
}

#[test]
fn authorization_identity_needs_an_admin() {
    let f = Fixture::new();
    let ctx = f.context(Fixture::config());
    // root (admin) acts as alice: "alice\0root\0secret".
    let (mut c, _) = Client::new(ctx.clone(), false, false);
    c.run(
        "a1 AUTHENTICATE PLAIN YWxpY2UAcm9vdABzZWNyZXQ=",
        &["a1 OK [CAPABILITY {*}] Logged in"],
    );
    assert_eq!(c.session.user_name(), Some("alice"));
    // bob (not admin) may not act as alice: "alice\0bob\0secret".
    let (mut c, _) = Client::new(ctx.clone(), false, false);
    c.run(
        "b1 AUTHENTICATE PLAIN YWxpY2UAYm9iAHNlY3JldA==",
        &["b1 NO [AUTHORIZATIONFAILED] Not authorized to act as that user"],
    );
    assert_eq!(c.session.state(), State::NotAuthenticated);
    // root as a user that does not exist: "ghost\0root\0secret".
    c.run(
        "b2 AUTHENTICATE PLAIN Z2hvc3QAcm9vdABzZWNyZXQ=",
        &["b2 NO [AUTHORIZATIONFAILED] Not authorized to act as that user"],
    );
    // authzid equal to authcid is plain authentication: "bob\0bob\0secret".
    c.run(
        "b3 AUTHENTICATE PLAIN Ym9iAGJvYgBzZWNyZXQ=",
        &["b3 OK [CAPABILITY {*}] Logged in"],
    );
    assert_eq!(c.session.user_name(), Some("bob"));
}

#[test]
fn per_user_connection_limit() {
    let f = Fixture::new();
    let mut config = Fixture::config();
    config.limits.connections_per_user_max = 2;
    let ctx = f.context(config);
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::new(ctx.clone(), false, false).0)
        .collect();
    clients[0].login("alice");
    clients[1].login("alice");
    clients[2].run(
        "a1 LOGIN alice secret",
        &["a1 NO [LIMIT] Too many connections for this user"],
    );
    clients[2].login("bob");
    clients[0].run(
        "a2 LOGOUT",
        &["* BYE Logging out", "a2 OK LOGOUT completed"],
    );
    drop(clients.remove(0));
    let (mut again, _) = Client::new(ctx, false, false);
    again.login("alice");
}

#[test]
fn enable_id_namespace_and_compress() {
    let f = Fixture::new();
    let mut c = logged_in(&f, "alice");
    c.run(
        "a1 ENABLE CONDSTORE X-UNKNOWN",
        &["* ENABLED CONDSTORE", "a1 OK ENABLE completed"],
    );
    c.run(
        "a2 ENABLE CONDSTORE QRESYNC",
        &["* ENABLED QRESYNC", "a2 OK ENABLE completed"],
    );
    c.run(
        "a3 ID (\"name\" \"test\" \"version\" NIL)",
        &[
            "* ID (\"name\" \"slotmail\" \"version\" \"{*}\")",
            "a3 OK ID completed",
        ],
    );
    c.run("a4 ID NIL", &["* ID {*}", "a4 OK ID completed"]);
    c.run(
        "a5 NAMESPACE",
        &[
            "* NAMESPACE ((\"\" \"/\")) NIL NIL",
            "a5 OK NAMESPACE completed",
        ],
    );
    c.run(
        "a6 COMPRESS LZW",
        &["a6 NO [CANNOT] Unknown compression mechanism LZW"],
    );
    c.run("a7 COMPRESS DEFLATE", &["a7 OK DEFLATE active"]);
    assert_eq!(c.last_action, Action::Compress);
    c.run(
        "a8 COMPRESS DEFLATE",
        &["a8 NO [COMPRESSIONACTIVE] Compression is already active"],
    );
    let caps = c.send("a9 CAPABILITY");
    assert!(
        !caps.contains("COMPRESS=DEFLATE") && caps.contains(" QRESYNC "),
        "{caps}"
    );
    c.run(
        "b1 SELECT INBOX",
        &[
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "b1 OK [READ-WRITE] SELECT completed",
        ],
    );
    c.run(
        "b2 ENABLE IMAP4rev2",
        &["b2 BAD ENABLE is only valid before a mailbox is selected"],
    );
}

// ----- mailboxes -------------------------------------------------------------

#[test]
fn create_delete_rename_subscribe() {
    let f = Fixture::new();
    let mut c = logged_in(&f, "alice");
    c.run("a1 CREATE Work/Projects/", &["a1 OK CREATE completed"]);
    c.run(
        "a2 CREATE Work",
        &["a2 NO [ALREADYEXISTS] Mailbox already exists"],
    );
    c.run(
        "a3 CREATE inbox",
        &["a3 NO [ALREADYEXISTS] INBOX always exists"],
    );
    c.run(
        "a4 CREATE \"Bad//Name\"",
        &["a4 NO [CANNOT] Invalid mailbox name: {*}"],
    );
    c.run(
        "a5 CREATE Stuff (USE (\\Flagged))",
        &["a5 OK CREATE completed"],
    );
    c.run(
        "a6 CREATE Other (USE (\\Important))",
        &["a6 NO [USEATTR] {*}"],
    );
    c.run(
        "a7 CREATE Other (USE (\\Sent \\Trash))",
        &["a7 NO [USEATTR] Only one special-use attribute per mailbox"],
    );
    c.run(
        "a8 LIST \"\" \"Work*\"",
        &[
            "* LIST (\\HasChildren) \"/\" \"Work\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects\"",
            "a8 OK LIST completed",
        ],
    );
    c.run(
        "a9 DELETE Work",
        &["a9 NO [HASCHILDREN] Mailbox has inferior mailboxes"],
    );
    c.run(
        "b1 DELETE Nothing",
        &["b1 NO [NONEXISTENT] Mailbox does not exist"],
    );
    c.run("b2 DELETE INBOX", &["b2 NO [CANNOT] Not allowed: {*}"]);
    c.run("b3 RENAME Work Job", &["b3 OK RENAME completed"]);
    c.run(
        "b4 RENAME Work Job2",
        &["b4 NO [NONEXISTENT] Mailbox does not exist"],
    );
    c.run(
        "b5 RENAME Job Stuff",
        &["b5 NO [ALREADYEXISTS] Mailbox already exists"],
    );
    c.run(
        "b6 LIST \"\" \"J%\"",
        &[
            "* LIST (\\HasChildren) \"/\" \"Job\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "b6 OK LIST completed",
        ],
    );
    c.run("b7 DELETE Job/Projects", &["b7 OK DELETE completed"]);
    c.run("b8 DELETE Job", &["b8 OK DELETE completed"]);
    c.run("c1 SUBSCRIBE Stuff", &["c1 OK SUBSCRIBE completed"]);
    c.run("c2 SUBSCRIBE Ghost/Child", &["c2 OK SUBSCRIBE completed"]);
    c.run(
        "c3 UNSUBSCRIBE Never",
        &["c3 NO [NONEXISTENT] Not subscribed to that name"],
    );
    c.run(
        "c4 LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN)",
        &[
            "* LIST (\\HasNoChildren \\Archive \\Subscribed) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts \\Subscribed) \"/\" \"Drafts\"",
            "* LIST (\\NonExistent \\Subscribed) \"/\" \"Ghost/Child\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Junk \\Subscribed) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Flagged \\Subscribed) \"/\" \"Stuff\"",
            "* LIST (\\HasNoChildren \\Trash \\Subscribed) \"/\" \"Trash\"",
            "c4 OK LIST completed",
        ],
    );
    c.run(
        "c5 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
        &[
            "* LIST (\\HasNoChildren \\Archive \\Subscribed) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts \\Subscribed) \"/\" \"Drafts\"",
            "* LIST (\\NonExistent) \"/\" \"Ghost\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Junk \\Subscribed) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Flagged \\Subscribed) \"/\" \"Stuff\"",
            "* LIST (\\HasNoChildren \\Trash \\Subscribed) \"/\" \"Trash\"",
            "c5 OK LIST completed",
        ],
    );
    c.run(
        "c6 LSUB \"\" \"G%\"",
        &[
            "* LSUB (\\Noselect) \"/\" \"Ghost\"",
            "c6 OK LSUB completed",
        ],
    );
    c.run(
        "c7 LSUB \"\" \"G*\"",
        &[
            "* LSUB (\\Noselect) \"/\" \"Ghost/Child\"",
            "c7 OK LSUB completed",
        ],
    );
    c.run("c8 UNSUBSCRIBE Stuff", &["c8 OK UNSUBSCRIBE completed"]);
    c.run(
        "c9 LIST \"\" \"S*\" RETURN (SUBSCRIBED)",
        &[
            "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Flagged) \"/\" \"Stuff\"",
            "c9 OK LIST completed",
        ],
    );
}

#[test]
fn list_variants() {
    let f = Fixture::new();
    let mut c = logged_in(&f, "alice");
    c.run("a0 CREATE Lists/Rust", &["a0 OK CREATE completed"]);
    c.run(
        "a1 LIST \"\" \"\"",
        &["* LIST (\\Noselect) \"/\" \"\"", "a1 OK LIST completed"],
    );
    c.run(
        "a2 LIST \"Lists/Rust\" \"\"",
        &[
            "* LIST (\\Noselect) \"/\" \"Lists/\"",
            "a2 OK LIST completed",
        ],
    );
    c.run(
        "a3 LIST \"Lists/\" \"%\"",
        &[
            "* LIST (\\HasNoChildren) \"/\" \"Lists/Rust\"",
            "a3 OK LIST completed",
        ],
    );
    c.run(
        "a4 LIST \"\" \"inbox\"",
        &[
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "a4 OK LIST completed",
        ],
    );
    c.run(
        "a5 LIST (SPECIAL-USE) \"\" \"*\"",
        &[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            "a5 OK LIST completed",
        ],
    );
    c.run(
        "a6 LIST \"\" (\"Sent\" \"Lists\") RETURN (STATUS (MESSAGES UNSEEN))",
        &[
            "* LIST (\\HasChildren) \"/\" \"Lists\"",
            "* STATUS \"Lists\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0)",
            "a6 OK LIST completed",
        ],
    );
    c.run("a7 LIST \"\" Nothing*", &["a7 OK LIST completed"]);
    c.run(
        "a8 LIST (BOGUS) \"\" \"*\"",
        &["a8 BAD Unknown option BOGUS"],
    );
    // Modified UTF-7 on the wire, UTF-8 in the store.
    c.run("b1 CREATE \"Entw&APw-rfe\"", &["b1 OK CREATE completed"]);
    assert!(f.slot.user("alice").unwrap().mailbox("Entwürfe").is_ok());
    c.run(
        "b2 LIST \"\" \"Entw*\"",
        &[
            "* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"",
            "b2 OK LIST completed",
        ],
    );
    c.run(
        "b3 CREATE \"Bad&-&Zm\"",
        &["b3 BAD Invalid mailbox name: {*}"],
    );
    // After ENABLE IMAP4rev2 names are UTF-8.
    c.run(
        "b4 ENABLE IMAP4rev2",
        &["* ENABLED IMAP4rev2", "b4 OK ENABLE completed"],
    );
    c.run(
        "b5 LIST \"\" \"Entw*\"",
        &[
            "* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"",
            "b5 OK LIST completed",
        ],
    );
}

#[test]
fn status_and_quota() {
    let f = Fixture::new();
    f.deliver("alice", "INBOX", &message("one", "first"));
    f.deliver("alice", "INBOX", &message("two", "second"));
    let mut c = logged_in(&f, "alice");
    let size = message("one", "first").len() + message("two", "second").len();
    c.run(
        "a1 STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)",
        &[
            &format!(
                "* STATUS \"INBOX\" (MESSAGES 2 RECENT 2 UIDNEXT 3 UNSEEN 2 DELETED 0 SIZE {size} HIGHESTMODSEQ {{*}} APPENDLIMIT 67108864)"
            ),
            "a1 OK STATUS completed",
        ],
    );
    c.run(
        "a2 STATUS Nope (MESSAGES)",
        &["a2 NO [NONEXISTENT] Mailbox does not exist"],
    );
    c.run(
        "a3 STATUS INBOX (BOGUS)",
        &["a3 BAD Unknown status item BOGUS"],
    );
    c.run(
        "a4 GETQUOTAROOT INBOX",
        &[
            "* QUOTAROOT \"INBOX\" \"\"",
            "* QUOTA \"\" ()",
            "a4 OK GETQUOTAROOT completed",
        ],
    );
    f.slot
        .set_quota("alice", Some(10 * 1024), Some(100))
        .unwrap();
    c.run(
        "a5 GETQUOTA \"\"",
        &[
            "* QUOTA \"\" (STORAGE 1 10 MESSAGE 2 100)",
            "a5 OK GETQUOTA completed",
        ],
    );
    c.run(
        "a6 GETQUOTA \"other\"",
        &["a6 NO [NONEXISTENT] No such quota root"],
    );
    c.run(
        "a7 GETQUOTAROOT Nope",
        &["a7 NO [NONEXISTENT] Mailbox does not exist"],
    );
    f.slot.set_quota("alice", Some(1), None).unwrap();
    let got = append(&mut c, "INBOX", "", &message("three", "third"));
    check_lines(&got, &["A NO [OVERQUOTA] {*}"]);
}

// ----- APPEND, SELECT, FETCH --------------------------------------------------

#[test]
fn append_forms() {
    let f = Fixture::new();
    let mut c = logged_in(&f, "alice");
    let raw = message("hello", "Hello, world");
    let got = append(
        &mut c,
        "INBOX",
        "(\\Flagged $Work) \"05-Mar-2024 10:00:00 +0100\"",
        &raw,
    );
    check_lines(&got, &["A OK [APPENDUID {*} 1] APPEND completed"]);
    let got = append(&mut c, "Nowhere", "", &raw);
    check_lines(&got, &["A NO [TRYCREATE] Mailbox does not exist"]);
    let got = append(&mut c, "INBOX", "(\\Bogus)", &raw);
    check_lines(&got, &["A BAD Unknown system flag \\Bogus"]);
    c.run(
        "b1 APPEND INBOX {0+}\r\n",
        &["b1 NO [CANNOT] An empty message cannot be appended"],
    );
    // A synchronizing literal gets "+ Ready" first.
    let mut got = c.send("b2 APPEND INBOX (\\Seen) {11}");
    got.push_str(&c.send("Hi there!!!"));
    check_lines(
        &got,
        &["+ Ready", "b2 OK [APPENDUID {*} 2] APPEND completed"],
    );
    c.run("b3 SELECT INBOX", &[
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
        "* 2 EXISTS",
        "* 2 RECENT",
        "* OK [UNSEEN 1] Message 1 is the first unseen",
        "* OK [UIDVALIDITY {*}] UIDs valid",
        "* OK [UIDNEXT 3] Predicted next UID",
        "* OK [HIGHESTMODSEQ {*}] Highest",
        "b3 OK [READ-WRITE] SELECT completed",
    ]);
    c.run(
        "b4 FETCH 1:2 (FLAGS INTERNALDATE RFC822.SIZE)",
        &[
            &format!("* 1 FETCH (FLAGS (\\Flagged $Work \\Recent) INTERNALDATE \"05-Mar-2024 10:00:00 +0100\" RFC822.SIZE {})", raw.len()),
            "* 2 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE {*} RFC822.SIZE 11)",
            "b4 OK FETCH completed",
        ],
    );
}

#[test]
fn literal_size_limits() {
    let f = Fixture::new();
    let mut config = Fixture::config();
    config.limits.literal_bytes_max = 1 << 40;
    let (mut c, _) = Client::new(f.context(config), false, false);
    c.run(
        "a1 LOGIN {100000}",
        &["a1 NO [TOOBIG] Literal too large before login (limit 8192 bytes)"],
    );
    c.run("a2 LOGIN {5}", &["+ Ready"]);
    c.run("alice secret", &["a2 OK [CAPABILITY {*}] Logged in"]);
    // After login the limit is APPENDLIMIT: the smaller of the configured
    // literal limit and the store's largest message.
    let limit = slotmail_store::MESSAGE_SIZE_MAX_DEFAULT;
    assert!(c.session.check_literal(None, limit).is_ok());
    let refusal = c.session.check_literal(None, limit + 1).unwrap_err();
    assert_eq!(
        String::from_utf8(refusal).unwrap(),
        format!("* NO [TOOBIG] Literal too large (limit {limit} bytes)\r\n")
    );
}

#[test]
fn select_examine_and_rev2() {
    let f = Fixture::new();
    f.deliver("alice", "INBOX", &message("one", "1"));
    let mut c = logged_in(&f, "alice");
    c.run(
        "a1 EXAMINE INBOX",
        &[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
            "* OK [PERMANENTFLAGS ()] No permanent flags permitted",
            "* 1 EXISTS",
            "* 1 RECENT",
            "* OK [UNSEEN 1] {*}",
            "* OK [UIDVALIDITY {*}] UIDs valid",
            "* OK [UIDNEXT 2] Predicted next UID",
            "* OK [HIGHESTMODSEQ {*}] Highest",
            "a1 OK [READ-ONLY] EXAMINE completed",
        ],
    );
    c.run(
        "a2 STORE 1 +FLAGS \\Seen",
        &["a2 NO [CANNOT] Mailbox is read-only"],
    );
    c.run("a3 EXPUNGE", &["a3 NO [CANNOT] Mailbox is read-only"]);
    c.run(
        "a4 FETCH 1 BODY[TEXT]",
        &[
            "* 1 FETCH (BODY[TEXT] {3}",
            "1",
            ")",
            "a4 OK FETCH completed",
        ],
    );
    c.run(
        "a5 FETCH 1 FLAGS",
        &["* 1 FETCH (FLAGS (\\Recent))", "a5 OK FETCH completed"],
    );
    // EXAMINE did not claim \Recent: SELECT does.
    c.run(
        "a6 SELECT INBOX",
        &[
            "{*}",
            "{*}",
            "* 1 EXISTS",
            "* 1 RECENT",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "a6 OK [READ-WRITE] SELECT completed",
        ],
    );
    c.run(
        "a7 SELECT Nope",
        &["a7 NO [NONEXISTENT] Mailbox does not exist"],
    );
    c.run("a8 FETCH 1 FLAGS", &["a8 BAD No mailbox selected"]);
    // Another session no longer sees it as recent.
    let mut d = logged_in(&f, "alice");
    d.run(
        "b1 SELECT INBOX",
        &[
            "{*}",
            "{*}",
            "* 1 EXISTS",
            "* 0 RECENT",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "b1 OK [READ-WRITE] SELECT completed",
        ],
    );
    // IMAP4rev2: no RECENT, no UNSEEN, a LIST line, [CLOSED] on reselect.
    let mut r = logged_in(&f, "alice");
    r.run(
        "c1 ENABLE IMAP4rev2",
        &["* ENABLED IMAP4rev2", "c1 OK ENABLE completed"],
    );
    r.run(
        "c2 SELECT INBOX",
        &[
            "{*}",
            "{*}",
            "* 1 EXISTS",
            "* OK [UIDVALIDITY {*}] UIDs valid",
            "* OK [UIDNEXT 2] Predicted next UID",
            "* OK [HIGHESTMODSEQ {*}] Highest",
            "* LIST () \"/\" \"INBOX\"",
            "c2 OK [READ-WRITE] SELECT completed",
        ],
    );
    r.run(
        "c3 EXAMINE Sent",
        &[
            "* OK [CLOSED] Previous mailbox closed",
            "{*}",
            "{*}",
            "* 0 EXISTS",
            "{*}",
            "{*}",
            "{*}",
            "* LIST () \"/\" \"Sent\"",
            "c3 OK [READ-ONLY] EXAMINE completed",
        ],
    );
    r.run(
        "c4 SEARCH ALL",
        &["* ESEARCH (TAG \"c4\")", "c4 OK SEARCH completed"],
    );
    r.run("c5 UNSELECT", &["c5 OK UNSELECT completed"]);
    r.run("c6 CLOSE", &["c6 BAD No mailbox selected"]);
}

#[test]
fn fetch_bodies_and_sections() {
    let f = Fixture::new();
    let raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n\
--XX\r\nContent-Type: text/html\r\n\r\n<p>second</p>\r\n--XX--\r\n";
    f.deliver("alice", "INBOX", raw);
    let mut c = logged_in(&f, "alice");
    c.send("s SELECT INBOX");
    let got = c.feed(b"a1 FETCH 1 BODY.PEEK[]\r\n");
    let mut want = format!("* 1 FETCH (BODY[] {{{}}}\r\n", raw.len()).into_bytes();
    want.extend_from_slice(raw);
    want.extend_from_slice(b")\r\na1 OK FETCH completed\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    c.run(
        "a2 FETCH 1 FLAGS",
        &["* 1 FETCH (FLAGS (\\Recent))", "a2 OK FETCH completed"],
    );
    c.run(
        "a3 FETCH 1 BODY[1]",
        &[
            "* 1 FETCH (BODY[1] {10}",
            "first part FLAGS (\\Seen \\Recent))",
            "a3 OK FETCH completed",
        ],
    );
    c.run(
        "a4 FETCH 1 (BODY.PEEK[2.MIME] BODY.PEEK[2]<3.6>)",
        &[
            "* 1 FETCH (BODY[2.MIME] {27}",
            "Content-Type: text/html",
            " BODY[2]<3> {6}",
            "second)",
            "a4 OK FETCH completed",
        ],
    );
    c.run(
        "a5 FETCH 1 BODY.PEEK[HEADER.FIELDS (subject TO)]",
        &[
            "* 1 FETCH (BODY[HEADER.FIELDS (subject TO)] {37}",
            "To: b@example.org",
            "Subject: Parts",
            ")",
            "a5 OK FETCH completed",
        ],
    );
    c.run(
        "a6 FETCH 1 BODY.PEEK[5]",
        &["* 1 FETCH (BODY[5] {0}", ")", "a6 OK FETCH completed"],
    );
    let got = c.send("a7 FETCH 1 (ENVELOPE BODYSTRUCTURE BODY UID)");
    assert!(
        got.starts_with("* 1 FETCH (ENVELOPE (NIL \"Parts\" ((NIL NIL \"a\" \"example.org\"))"),
        "{got}"
    );
    assert!(
        got.to_ascii_uppercase()
            .contains(" BODYSTRUCTURE ((\"TEXT\" \"PLAIN\""),
        "{got}"
    );
    assert!(
        got.contains(") UID 1)\r\na7 OK FETCH completed\r\n"),
        "{got}"
    );
    c.run(
        "a8 FETCH 1 (RFC822.HEADER RFC822.SIZE)",
        &[
            "* 1 FETCH (RFC822.HEADER {121}",
            "From: a@example.org",
            "To: b@example.org",
            "Subject: Parts",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=XX",
            &format!(" RFC822.SIZE {})", raw.len()),
            "a8 OK FETCH completed",
        ],
    );
    c.run(
        "a9 FETCH 2 FLAGS",
        &["a9 BAD Invalid sequence number 2 (mailbox has 1 messages)"],
    );
    c.run("b1 UID FETCH 2:10 FLAGS", &["b1 OK FETCH completed"]);
    c.run(
        "b2 UID FETCH 1:* (FLAGS)",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))",
            "b2 OK FETCH completed",
        ],
    );
    c.run(
        "b3 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])",
        &[
            "* 1 FETCH (BINARY[1] {10}",
            "first part BINARY.SIZE[1] 10)",
            "b3 OK FETCH completed",
        ],
    );
    c.run("b4 FETCH 1 (FLAGS", &["b4 BAD {*}"]);
    c.run(
        "b5 FETCH 1:* FAST",
        &[
            "* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE {*} RFC822.SIZE {*})",
            "b5 OK FETCH completed",
        ],
    );
}

#[test]
fn corrupt_message_is_never_sent() {
    let f = Fixture::new();
    let raw = message("precious", "do not lose me");
    let user = f.slot.user("alice").unwrap();
    let inbox = user.mailbox("INBOX").unwrap();
    let done = user
        .append(inbox.id, &raw, &slotmail_store::Flags::empty(), None)
        .unwrap();
    f.deliver("alice", "INBOX", &message("fine", "intact"));
    let hex = done.guid.to_hex();
    let path = user.dir().join("msg").join(&hex[..2]).join(&hex);
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[raw.len() - 5] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();

    let mut c = logged_in(&f, "alice");
    c.send("s SELECT INBOX");
    c.run(
        "a1 FETCH 1 BODY.PEEK[]",
        &["a1 NO [CORRUPTION] Message(s) with UID 1 are damaged on the server and were not sent"],
    );
    let got = c.send("a2 FETCH 1:2 (UID BODY.PEEK[TEXT])");
    check_lines(
        &got,
        &[
            "* 2 FETCH (UID 2 BODY[TEXT] {8}",
            "intact",
            ")",
            "a2 NO [CORRUPTION] Message(s) with UID 1 are damaged on the server and were not sent",
        ],
    );
    assert!(!got.contains("do not lose"));
    // Metadata is still served.
    c.run(
        "a3 FETCH 1 (UID RFC822.SIZE)",
        &[
            &format!("* 1 FETCH (UID 1 RFC822.SIZE {})", raw.len()),
            "a3 OK FETCH completed",
        ],
    );
}

// ----- STORE, SEARCH, COPY, MOVE, EXPUNGE ----------------------------------

#[test]
fn store_variants() {
    let f = Fixture::new();
    for i in 0..3 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "x"));
    }
    let mut c = logged_in(&f, "alice");
    c.send("s SELECT INBOX");
    c.run(
        "a1 STORE 1:2 +FLAGS (\\Seen $Todo)",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Seen $Todo \\Recent))",
            "* 2 FETCH (UID 2 FLAGS (\\Seen $Todo \\Recent))",
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo \\*)] Flags permitted",
            "a1 OK STORE completed",
        ],
    );
    c.run(
        "a2 STORE 2 -FLAGS.SILENT ($Todo)",
        &["a2 OK STORE completed"],
    );
    c.run("a3 NOOP", &["a3 OK NOOP completed"]);
    c.run(
        "a4 UID STORE 3 FLAGS (\\Flagged)",
        &[
            "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent))",
            "a4 OK STORE completed",
        ],
    );
    c.run(
        "a5 STORE 4 +FLAGS \\Seen",
        &["a5 BAD Invalid sequence number 4 (mailbox has 3 messages)"],
    );
    c.run(
        "a6 STORE 1 +FLAGS \\Recent",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Seen $Todo \\Recent))",
            "a6 OK STORE completed",
        ],
    );
    c.run(
        "a7 STORE 1 +FLAGS \\Bogus",
        &["a7 BAD Unknown system flag \\Bogus"],
    );
    // CONDSTORE: MODSEQ in answers, UNCHANGEDSINCE refusals.
    let got = c.send("b1 FETCH 1:3 (MODSEQ)");
    let modseq_of = |line: &str| -> u64 {
        let at = line.find("MODSEQ (").unwrap() + 8;
        line[at..].split(')').next().unwrap().parse().unwrap()
    };
    let lines: Vec<&str> = got.lines().collect();
    let m1 = modseq_of(lines[0]);
    let m3 = modseq_of(lines[2]);
    assert!(m3 > m1);
    c.run(
        &format!("b2 STORE 1,3 (UNCHANGEDSINCE {m1}) +FLAGS (\\Answered)"),
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Answered \\Seen $Todo \\Recent) MODSEQ ({*}))",
            "b2 OK [MODIFIED 3] Conditional STORE failed for some messages",
        ],
    );
    c.run(
        "b3 UID STORE 2 (UNCHANGEDSINCE 1) FLAGS ()",
        &["b3 OK [MODIFIED 2] Conditional STORE failed for some messages"],
    );
    c.run(
        "b4 STORE 2 +FLAGS.SILENT (\\Deleted)",
        &["* 2 FETCH (UID 2 MODSEQ ({*}))", "b4 OK STORE completed"],
    );
}

#[test]
fn search_keys_and_esearch() {
    let f = Fixture::new();
    f.deliver(
        "alice",
        "INBOX",
        &message("Quarterly report", "numbers inside"),
    );
    f.deliver("alice", "INBOX", b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\nDate: Sat, 1 Jun 2024 08:00:00 +0200\r\n\r\nHallo Welt\r\n");
    f.deliver(
        "alice",
        "INBOX",
        &message("third", "Larger body text here to be the biggest of all"),
    );
    let mut c = logged_in(&f, "alice");
    c.send("s SELECT INBOX");
    c.send("t STORE 2 +FLAGS (\\Flagged $Label)");
    c.run(
        "a1 SEARCH ALL",
        &["* SEARCH 1 2 3", "a1 OK SEARCH completed"],
    );
    c.run(
        "a2 SEARCH FLAGGED",
        &["* SEARCH 2", "a2 OK SEARCH completed"],
    );
    c.run(
        "a3 SEARCH NOT FLAGGED",
        &["* SEARCH 1 3", "a3 OK SEARCH completed"],
    );
    c.run(
        "a4 SEARCH OR SUBJECT report KEYWORD $label",
        &["* SEARCH 1 2", "a4 OK SEARCH completed"],
    );
    c.run("a5 SEARCH CHARSET UTF-8 FROM {7}", &["+ Ready"]);
    c.run("jürgen", &["* SEARCH 2", "a5 OK SEARCH completed"]);
    c.run("a6 SEARCH CHARSET UTF-8 SUBJECT {7}", &["+ Ready"]);
    c.run("grüße", &["* SEARCH 2", "a6 OK SEARCH completed"]);
    c.run(
        "a7 SEARCH CHARSET KOI8-R SUBJECT x",
        &["a7 NO [BADCHARSET (UTF-8 US-ASCII)] Charset KOI8-R is not supported"],
    );
    c.run(
        "a8 SEARCH BODY welt",
        &["* SEARCH 2", "a8 OK SEARCH completed"],
    );
    c.run(
        "a9 SEARCH TEXT quarterly",
        &["* SEARCH 1", "a9 OK SEARCH completed"],
    );
    c.run(
        "b1 SEARCH SENTON 1-Jun-2024",
        &["* SEARCH 2", "b1 OK SEARCH completed"],
    );
    c.run(
        "b2 SEARCH SENTBEFORE 1-Jun-2024",
        &["* SEARCH 1 3", "b2 OK SEARCH completed"],
    );
    c.run(
        "b3 SEARCH 2:* UNFLAGGED",
        &["* SEARCH 3", "b3 OK SEARCH completed"],
    );
    c.run(
        "b4 UID SEARCH UID 2:3",
        &["* SEARCH 2 3", "b4 OK SEARCH completed"],
    );
    c.run(
        "b5 SEARCH LARGER 150",
        &["* SEARCH 1 3", "b5 OK SEARCH completed"],
    );
    c.run(
        "b5 SEARCH SMALLER 150",
        &["* SEARCH 2", "b5 OK SEARCH completed"],
    );
    c.run(
        "b6 SEARCH (SEEN) (NEW)",
        &["* SEARCH", "b6 OK SEARCH completed"],
    );
    c.run(
        "b7 SEARCH HEADER Message-ID third@",
        &["* SEARCH 3", "b7 OK SEARCH completed"],
    );
    c.run(
        "b8 SEARCH SINCE 1-Jan-2000 BEFORE 1-Jan-2100",
        &["* SEARCH 1 2 3", "b8 OK SEARCH completed"],
    );
    c.run(
        "c1 SEARCH RETURN (MIN MAX COUNT ALL) NOT FLAGGED",
        &[
            "* ESEARCH (TAG \"c1\") MIN 1 MAX 3 ALL 1,3 COUNT 2",
            "c1 OK SEARCH completed",
        ],
    );
    c.run(
        "c2 UID SEARCH RETURN () ALL",
        &[
            "* ESEARCH (TAG \"c2\") UID ALL 1:3",
            "c2 OK SEARCH completed",
        ],
    );
    c.run(
        "c3 SEARCH RETURN (COUNT) DELETED",
        &["* ESEARCH (TAG \"c3\") COUNT 0", "c3 OK SEARCH completed"],
    );
    c.run(
        "c4 SEARCH MODSEQ 1",
        &["* SEARCH 1 2 3 (MODSEQ {*})", "c4 OK SEARCH completed"],
    );
    c.run("c5 SEARCH BOGUS", &["c5 BAD Unknown search key BOGUS"]);
}

#[test]
fn copy_move_and_expunge() {
    let f = Fixture::new();
    for i in 0..4 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "x"));
    }
    let mut c = logged_in(&f, "alice");
    c.send("s SELECT INBOX");
    c.run(
        "a1 COPY 1:2 Archive",
        &["a1 OK [COPYUID {*} 1:2 1:2] COPY completed"],
    );
    c.run(
        "a2 COPY 1 Nowhere",
        &["a2 NO [TRYCREATE] Destination mailbox does not exist"],
    );
    c.run(
        "a3 UID COPY 99 Archive",
        &["a3 OK COPY completed, no messages"],
    );
    c.run(
        "a4 COPY 9 Archive",
        &["a4 BAD Invalid sequence number 9 (mailbox has 4 messages)"],
    );
    c.run(
        "a5 MOVE 2:3 Trash",
        &[
            "* OK [COPYUID {*} 2:3 1:2] Moved",
            "* 3 EXPUNGE",
            "* 2 EXPUNGE",
            "a5 OK MOVE completed",
        ],
    );
    c.run(
        "a6 UID MOVE 4 Trash",
        &[
            "* OK [COPYUID {*} 4 3] Moved",
            "* 2 EXPUNGE",
            "a6 OK MOVE completed",
        ],
    );
    c.run(
        "a7 MOVE 1 INBOX",
        &["a7 NO [CANNOT] Source and destination are the same mailbox"],
    );
    c.run(
        "a8 SELECT Trash",
        &[
            "{*}",
            "{*}",
            "* 3 EXISTS",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "a8 OK [READ-WRITE] SELECT completed",
        ],
    );
    c.run(
        "a9 STORE 1,3 +FLAGS.SILENT (\\Deleted)",
        &["a9 OK STORE completed"],
    );
    c.run(
        "b1 UID EXPUNGE 1:2",
        &["* 1 EXPUNGE", "b1 OK EXPUNGE completed"],
    );
    c.run("b2 EXPUNGE", &["* 2 EXPUNGE", "b2 OK EXPUNGE completed"]);
    c.run(
        "b3 STORE 1 +FLAGS.SILENT (\\Deleted)",
        &["b3 OK STORE completed"],
    );
    c.run("b4 CLOSE", &["b4 OK CLOSE completed"]);
    let st = f.slot.user("alice").unwrap();
    assert_eq!(
        st.status(st.mailbox("Trash").unwrap().id).unwrap().messages,
        0
    );
    assert_eq!(
        st.status(st.mailbox("Archive").unwrap().id)
            .unwrap()
            .messages,
        2
    );
}

#[test]
fn condstore_expunge_carries_highestmodseq() {
    let f = Fixture::new();
    f.deliver("alice", "INBOX", &message("a", "x"));
    let mut c = logged_in(&f, "alice");
    c.run(
        "e ENABLE QRESYNC",
        &["* ENABLED QRESYNC", "e OK ENABLE completed"],
    );
    c.send("s SELECT INBOX");
    c.run(
        "a1 STORE 1 +FLAGS.SILENT (\\Deleted)",
        &["* 1 FETCH (UID 1 MODSEQ ({*}))", "a1 OK STORE completed"],
    );
    c.run(
        "a2 EXPUNGE",
        &[
            "* VANISHED 1",
            "a2 OK [HIGHESTMODSEQ {*}] EXPUNGE completed",
        ],
    );
}

// ----- concurrent sessions, IDLE, QRESYNC -----------------------------------

#[test]
fn other_sessions_changes_are_reported_at_the_right_time() {
    let f = Fixture::new();
    for i in 0..5 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "x"));
    }
    let (mut a, mut b) = two_sessions(&f);
    a.send("s SELECT INBOX");
    b.send("s SELECT INBOX");
    // Flag change by b: a sees it at its next command.
    b.send("b1 STORE 1 +FLAGS (\\Flagged)");
    a.run(
        "a1 NOOP",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))",
            "a1 OK NOOP completed",
        ],
    );
    a.run("a2 NOOP", &["a2 OK NOOP completed"]);
    // Expunge by b: not during FETCH/STORE/SEARCH, then all at once, descending.
    b.send("b2 STORE 2,4 +FLAGS.SILENT (\\Deleted)");
    b.run(
        "b3 EXPUNGE",
        &["* 4 EXPUNGE", "* 2 EXPUNGE", "b3 OK EXPUNGE completed"],
    );
    a.run(
        "a3 FETCH 4 (UID)",
        &["a3 OK [EXPUNGEISSUED] Some messages were expunged meanwhile"],
    );
    a.run(
        "a4 SEARCH ALL",
        &["* SEARCH 1 3 5", "a4 OK SEARCH completed"],
    );
    a.run(
        "a5 STORE 5 +FLAGS.SILENT (\\Seen)",
        &["a5 OK STORE completed"],
    );
    a.run(
        "a6 UID FETCH 5 (FLAGS)",
        &[
            "* 5 FETCH (UID 5 FLAGS (\\Seen \\Recent))",
            "* 4 EXPUNGE",
            "* 2 EXPUNGE",
            "a6 OK FETCH completed",
        ],
    );
    a.run(
        "a7 FETCH 3 (UID)",
        &["* 3 FETCH (UID 5)", "a7 OK FETCH completed"],
    );
    // New mail: EXISTS (and RECENT in IMAP4rev1).
    b.run(
        "b4 NOOP",
        &["* 3 FETCH (UID 5 FLAGS (\\Seen))", "b4 OK NOOP completed"],
    );
    f.deliver("alice", "INBOX", &message("new", "y"));
    // a claimed all five at SELECT; 2 and 4 are gone; the new one is a's too.
    a.run(
        "a8 NOOP",
        &["* 4 EXISTS", "* 4 RECENT", "a8 OK NOOP completed"],
    );
    b.run(
        "b5 NOOP",
        &["* 4 EXISTS", "* 0 RECENT", "b5 OK NOOP completed"],
    );
}

#[test]
fn idle_reports_changes_and_ends_with_done() {
    let f = Fixture::new();
    let (mut a, mut b) = two_sessions(&f);
    a.send("s SELECT INBOX");
    let mut changes = a.session.changes().unwrap();
    changes.borrow_and_update();
    a.run("i1 IDLE", &["+ idling"]);
    assert_eq!(a.last_action, Action::Idle);
    assert!(a.session.idling());
    let got = append(&mut b, "INBOX", "", &message("wake", "up"));
    assert!(got.contains("A OK [APPENDUID"));
    assert!(
        changes.has_changed().unwrap(),
        "the hub did not signal the change"
    );
    let polled = a.poll();
    check_lines(&polled, &["* 1 EXISTS", "* 1 RECENT"]);
    b.send("b1 SELECT INBOX");
    b.send("b2 STORE 1 +FLAGS (\\Deleted)");
    b.send("b3 EXPUNGE");
    check_lines(&a.poll(), &["* 1 EXPUNGE"]);
    a.run("DONE", &["i1 OK IDLE terminated"]);
    assert!(!a.session.idling());
    a.run("i2 IDLE", &["+ idling"]);
    a.run("NOPE", &["i2 BAD Expected DONE to end IDLE"]);
}

#[test]
fn qresync_select_reports_vanished_and_changed() {
    let f = Fixture::new();
    for i in 0..6 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "x"));
    }
    let (mut a, mut b) = two_sessions(&f);
    a.run(
        "e ENABLE QRESYNC",
        &["* ENABLED QRESYNC", "e OK ENABLE completed"],
    );
    let sel = a.send("s SELECT INBOX");
    let grab = |text: &str, key: &str| -> u64 {
        let at = text.find(key).unwrap() + key.len();
        text[at..].split(']').next().unwrap().parse().unwrap()
    };
    let uidvalidity = grab(&sel, "[UIDVALIDITY ");
    let modseq = grab(&sel, "[HIGHESTMODSEQ ");
    a.send("u UNSELECT");
    b.send("s SELECT INBOX");
    b.send("b1 STORE 2,3,5 +FLAGS.SILENT (\\Deleted)");
    b.send("b2 STORE 6 +FLAGS.SILENT (\\Answered)");
    b.send("b3 EXPUNGE");
    a.run(
        &format!("q SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))"),
        &[
            "{*}",
            "{*}",
            "* 3 EXISTS",
            "* 0 RECENT",
            "{*}",
            "* OK [UIDVALIDITY {*}] UIDs valid",
            "* OK [UIDNEXT 7] Predicted next UID",
            "* OK [HIGHESTMODSEQ {*}] Highest",
            "* VANISHED (EARLIER) 2:3,5",
            "* 3 FETCH (UID 6 FLAGS (\\Answered) MODSEQ ({*}))",
            "q OK [READ-WRITE] SELECT completed",
        ],
    );
    // known-uids limit the answer; a wrong UIDVALIDITY gives a plain SELECT.
    a.run(
        &format!("r SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:3))"),
        &[
            "* OK [CLOSED] Previous mailbox closed",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "* VANISHED (EARLIER) 2:3",
            "r OK [READ-WRITE] SELECT completed",
        ],
    );
    let other = uidvalidity + 1;
    a.run(
        &format!("t SELECT INBOX (QRESYNC ({other} {modseq}))"),
        &[
            "* OK [CLOSED] Previous mailbox closed",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "{*}",
            "t OK [READ-WRITE] SELECT completed",
        ],
    );
    a.run(
        &format!("v UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"),
        &[
            "* VANISHED (EARLIER) 2:3,5",
            "* 3 FETCH (UID 6 FLAGS (\\Answered) MODSEQ ({*}))",
            "v OK FETCH completed",
        ],
    );
    // Without ENABLE QRESYNC the parameter is refused.
    let mut c = logged_in(&f, "bob");
    c.run(
        "x SELECT INBOX (QRESYNC (1 1))",
        &["x BAD QRESYNC parameter given without ENABLE QRESYNC"],
    );
}

#[test]
fn selected_mailbox_deleted_by_another_session() {
    let f = Fixture::new();
    let (mut a, mut b) = two_sessions(&f);
    a.send("c CREATE Temp");
    a.send("s SELECT Temp");
    b.run("d DELETE Temp", &["d OK DELETE completed"]);
    a.run("n NOOP", &["* BYE The selected mailbox was deleted"]);
    assert!(a.closed);
}

const GONE_BYE: &str = "* BYE [UNAVAILABLE] Your mailbox is no longer served here (deleted or moved to another server); please reconnect";

#[test]
fn a_deleted_users_sessions_end_with_bye_unavailable() {
    let f = Fixture::new();
    let ctx = f.context(Fixture::config());
    let (mut a, _) = Client::new(ctx.clone(), false, false);
    let (mut idle, _) = Client::new(ctx.clone(), false, false);
    let (mut b, _) = Client::new(ctx, false, false);
    a.login("alice");
    idle.login("alice");
    b.login("bob");
    a.send("s SELECT INBOX");
    idle.send("s SELECT INBOX");
    idle.run("i1 IDLE", &["+ idling"]);
    let removals = a.session.removals().unwrap();
    assert!(!removals.has_changed().unwrap());

    // What `slotmail ctl user move` does last on the old master.
    f.slot.delete_user("alice").unwrap();
    assert!(removals.has_changed().unwrap(), "the hub gave no notice");
    // The next command gets the untagged BYE instead of its answer.
    let got = a.send("n NOOP");
    check_lines(&got, &[GONE_BYE]);
    assert!(a.closed);
    assert_eq!(a.last_action, Action::Close);
    assert_eq!(a.session.state(), State::Logout);
    // IDLE ends with it on the wake-up, untagged.
    check_lines(&idle.poll(), &[GONE_BYE]);
    assert_eq!(idle.last_action, Action::Close);
    assert!(!idle.session.idling());
    // Another user's session goes on.
    b.run("n NOOP", &["n OK NOOP completed"]);
    let got = b.send("s SELECT INBOX");
    assert!(
        got.ends_with("s OK [READ-WRITE] SELECT completed\r\n"),
        "{got}"
    );
}

#[test]
fn account_check_between_commands_and_false_notices() {
    let f = Fixture::new();
    let ctx = f.context(Fixture::config());
    let (mut a, _) = Client::new(ctx.clone(), false, false);
    a.login("alice");
    // A notice for an account that is still there changes nothing.
    ctx.hub.notify("alice", 0);
    let mut out = slotmail_imap::Out::new();
    assert_eq!(a.session.account_check(&mut out).action, Action::None);
    assert!(out.is_empty());
    ctx.hub.notify("alice", 0);
    a.run("n NOOP", &["n OK NOOP completed"]);
    // Deleted and created again under the same name: the session belongs
    // to the old account and ends; a new login gets the new one.
    f.slot.delete_user("alice").unwrap();
    f.slot.create_user("alice", PASSWORD, false).unwrap();
    let mut out = slotmail_imap::Out::new();
    assert_eq!(a.session.account_check(&mut out).action, Action::Close);
    check_lines(&String::from_utf8_lossy(&out.take()), &[GONE_BYE]);
    let (mut again, _) = Client::new(ctx, false, false);
    again.login("alice");
    again.run("n NOOP", &["n OK NOOP completed"]);
}

#[test]
fn renamed_selected_mailbox_keeps_working() {
    let f = Fixture::new();
    let (mut a, mut b) = two_sessions(&f);
    a.send("c CREATE Old");
    a.send("s SELECT Old");
    b.run("r RENAME Old New", &["r OK RENAME completed"]);
    let got = append(&mut b, "New", "", &message("x", "y"));
    assert!(got.contains("OK [APPENDUID"), "{got}");
    a.run(
        "n NOOP",
        &["* 1 EXISTS", "* 1 RECENT", "n OK NOOP completed"],
    );
}

// ----- errors, read-only -------------------------------------------------------

#[test]
fn bad_input_gets_specific_errors_and_too_many_close() {
    let f = Fixture::new();
    let mut c = logged_in(&f, "alice");
    c.run("a1 FROB", &["a1 BAD Unknown command FROB"]);
    c.run("a2 SELECT", &["a2 BAD {*}"]);
    c.run("+++ NOOP", &["* BAD Invalid tag"]);
    c.run("a3 FETCH 0 FLAGS", &["a3 BAD Invalid sequence set: {*}"]);
    c.run("a4 CHECK", &["a4 BAD No mailbox selected"]);
    c.run("a5 LOGIN x y", &["a5 BAD Already authenticated"]);
    c.run("a6 NOOP", &["a6 OK NOOP completed"]);
    for i in 0..9 {
        let got = c.send(&format!("z{i} BOGUS"));
        assert!(got.starts_with(&format!("z{i} BAD")), "{got}");
    }
    c.run(
        "z9 BOGUS",
        &[
            "z9 BAD Unknown command BOGUS",
            "* BYE Too many invalid commands",
        ],
    );
    assert!(c.closed);
}

#[test]
fn read_only_switch_refuses_every_write() {
    let f = Fixture::new();
    f.deliver("alice", "INBOX", &message("a", "x"));
    let config = Fixture::config();
    let switch = config.read_only.clone();
    let (mut c, _) = Client::new(f.context(config), false, false);
    c.login("alice");
    c.send("s SELECT INBOX");
    switch.set(true);
    let unavailable =
        "NO [UNAVAILABLE] This server does not accept changes at the moment (replica)";
    c.run(
        "a1 STORE 1 +FLAGS (\\Seen)",
        &[&format!("a1 {unavailable}")],
    );
    c.run("a2 CREATE X", &[&format!("a2 {unavailable}")]);
    c.run("a3 EXPUNGE", &[&format!("a3 {unavailable}")]);
    c.run("a4 COPY 1 Trash", &[&format!("a4 {unavailable}")]);
    c.run("a5 APPEND INBOX {1+}\r\nx", &[&format!("a5 {unavailable}")]);
    c.run("a6 SUBSCRIBE X", &[&format!("a6 {unavailable}")]);
    // Reads still work, and do not set \Seen.
    c.run(
        "a7 FETCH 1 BODY[TEXT]",
        &[
            "* 1 FETCH (BODY[TEXT] {3}",
            "x",
            ")",
            "a7 OK FETCH completed",
        ],
    );
    c.run(
        "a8 FETCH 1 FLAGS",
        &["* 1 FETCH (FLAGS (\\Recent))", "a8 OK FETCH completed"],
    );
    switch.set(false);
    c.run(
        "a9 STORE 1 +FLAGS (\\Seen)",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))",
            "a9 OK STORE completed",
        ],
    );
}

#[test]
fn move_under_qresync_and_check() {
    let f = Fixture::new();
    for i in 0..3 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "x"));
    }
    let mut c = logged_in(&f, "alice");
    c.run(
        "e ENABLE QRESYNC",
        &["* ENABLED QRESYNC", "e OK ENABLE completed"],
    );
    c.send("s SELECT INBOX");
    c.run("a1 CHECK", &["a1 OK CHECK completed"]);
    c.run(
        "a2 MOVE 1,3 Archive",
        &[
            "* OK [COPYUID {*} 1,3 1:2] Moved",
            "* VANISHED 1,3",
            "a2 OK [HIGHESTMODSEQ {*}] MOVE completed",
        ],
    );
    c.run(
        "a3 FETCH 1 (UID)",
        &["* 1 FETCH (UID 2)", "a3 OK FETCH completed"],
    );
    c.run(
        "a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        &[
            "* 1 FETCH (UID 2 FLAGS (\\Recent) MODSEQ ({*}))",
            "a4 OK FETCH completed",
        ],
    );
    c.run(
        "a5 FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        &["a5 BAD VANISHED requires UID FETCH with CHANGEDSINCE"],
    );
}
