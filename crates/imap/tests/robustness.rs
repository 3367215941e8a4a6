//! Garbage in, answers out: random command lines built from IMAP words and
//! arguments, and random bytes, fed to logged-in sessions with a mailbox
//! selected. Every command must get its tagged answer (or the session ends
//! with BYE); nothing may panic.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;

const WORDS: &[&str] = &[
    "NOOP",
    "CHECK",
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "SEARCH",
    "UID SEARCH",
    "COPY",
    "MOVE",
    "UID MOVE",
    "EXPUNGE",
    "UID EXPUNGE",
    "SELECT",
    "EXAMINE",
    "STATUS",
    "LIST",
    "LSUB",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "APPEND",
    "CLOSE",
    "UNSELECT",
    "ENABLE",
    "ID",
    "GETQUOTAROOT",
    "NAMESPACE",
    "CAPABILITY",
    "LOGIN",
];

const ARGS: &[&str] = &[
    "1",
    "2",
    "1:*",
    "*",
    "3:1",
    "4294967295",
    "0",
    "INBOX",
    "Archive",
    "\"\"",
    "\"*\"",
    "%",
    "(FLAGS)",
    "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    "BODY[]",
    "BODY[1.2.3.MIME]",
    "BODY[]<5.10>",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "RFC822",
    "+FLAGS",
    "-FLAGS.SILENT",
    "FLAGS",
    "(\\Seen \\Deleted)",
    "($Kw)",
    "(",
    ")",
    "UNCHANGEDSINCE",
    "(CHANGEDSINCE 1)",
    "ALL",
    "NOT",
    "OR",
    "SEEN",
    "TEXT",
    "x",
    "MODSEQ",
    "RETURN",
    "(MIN MAX COUNT)",
    "CHARSET",
    "UTF-8",
    "(MESSAGES UNSEEN)",
    "(CONDSTORE)",
    "(QRESYNC (1 1))",
    "CONDSTORE",
    "QRESYNC",
    "{3+}\r\nabc",
    "\"Subject: x\r\"",
    "NIL",
    "(USE (\\Sent))",
    "Trash",
    "Foo/Bar",
    "&Jjo-",
    "UID",
    "1,3,5",
];

fn line() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(WORDS),
        proptest::collection::vec(proptest::sample::select(ARGS), 0..6),
    )
        .prop_map(|(w, args)| {
            let mut l = format!("T {w}");
            for a in args {
                l.push(' ');
                l.push_str(a);
            }
            l
        })
}

fn session(f: &Fixture) -> Client {
    let (mut c, _) = Client::new(f.context(Fixture::config()), false, false);
    c.login("alice");
    c.send("s SELECT INBOX");
    c
}

#[test]
fn random_commands_always_get_an_answer() {
    let f = Fixture::new();
    for i in 0..3 {
        f.deliver("alice", "INBOX", &message(&format!("r{i}"), "x"));
    }
    let client = RefCell::new(session(&f));
    let mut runner = TestRunner::new(Config::with_cases(400));
    runner
        .run(&line(), |l| {
            let mut c = client.borrow_mut();
            if c.closed {
                *c = session(&f);
            }
            let out = c.send(&l);
            let answered = out.contains("\r\nT ") || out.starts_with("T ") || out.contains("* BYE");
            // A command announcing a synchronizing literal waits for more.
            let waiting = out.ends_with("+ Ready\r\n");
            prop_assert!(
                answered || waiting || c.session.awaiting_auth_data(),
                "{l:?} → {out:?}"
            );
            if waiting {
                let rest = c.send("");
                prop_assert!(
                    !rest.is_empty() || c.closed,
                    "{l:?}: no answer after the literal"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_bytes_never_panic() {
    let f = Fixture::new();
    f.deliver("alice", "INBOX", &message("r", "x"));
    let client = RefCell::new(session(&f));
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..200), |bytes| {
            let mut c = client.borrow_mut();
            if c.closed {
                *c = session(&f);
            }
            let mut input = bytes.clone();
            input.extend_from_slice(b"\r\n");
            c.feed(&input);
            Ok(())
        })
        .unwrap();
}
