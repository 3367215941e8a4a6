//! Shared test fixtures: a temporary slot with users, and a session driver
//! that feeds command text to a `Session` the way the shell does (framing,
//! literals, AUTHENTICATE data, IDLE) and returns the responses.

#![allow(dead_code)]

use slotmail_imap::{Action, Context, ImapConfig, Out, Session};
use slotmail_imap_proto::{Framer, FramerEvent, Limits};
use slotmail_store::{Options, Slot};
use std::sync::Arc;
use tempfile::TempDir;

/// Password of every test user.
pub const PASSWORD: &str = "secret";

/// A slot in a temporary directory with users `alice`, `bob` and the admin
/// `root`.
pub struct Fixture {
    pub dir: TempDir,
    pub slot: Arc<Slot>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let slot = Arc::new(Slot::open(dir.path().join("slot"), Options::default()).unwrap());
        slot.create_user("alice", PASSWORD, false).unwrap();
        slot.create_user("bob", PASSWORD, false).unwrap();
        slot.create_user("root", PASSWORD, true).unwrap();
        Fixture { dir, slot }
    }

    /// A context whose hub hears the store's changes.
    pub fn context(&self, config: ImapConfig) -> Arc<Context> {
        let ctx = Context::new(self.slot.clone(), config);
        let hub = ctx.hub.clone();
        self.slot
            .add_change_listener(Arc::new(move |u: &str, m: u64| hub.notify(u, m)));
        ctx
    }

    /// The test configuration: plaintext logins allowed.
    pub fn config() -> ImapConfig {
        let mut c = ImapConfig {
            hostname: "test.example".into(),
            allow_plaintext_auth: true,
            ..Default::default()
        };
        c.timeouts.failed_login_delay = std::time::Duration::from_millis(1);
        c.timeouts.failed_login_delay_max = std::time::Duration::from_millis(2);
        c
    }

    /// Put a message straight into a user's mailbox.
    pub fn deliver(&self, user: &str, mailbox: &str, raw: &[u8]) -> u32 {
        let u = self.slot.user(user).unwrap();
        let m = u.mailbox(mailbox).unwrap();
        u.append(m.id, raw, &slotmail_store::Flags::empty(), None)
            .unwrap()
            .uid
    }
}

/// A session driven like the shell drives it.
pub struct Client {
    pub session: Session,
    framer: Framer,
    pub last_action: Action,
    pub closed: bool,
}

impl Client {
    pub fn new(ctx: Arc<Context>, tls: bool, starttls: bool) -> (Client, String) {
        let session = Session::new(ctx, tls, starttls);
        let mut out = Out::new();
        session.greeting(&mut out);
        let client = Client {
            session,
            framer: Framer::new(Limits::default()),
            last_action: Action::None,
            closed: false,
        };
        (client, String::from_utf8_lossy(&out.take()).into_owned())
    }

    /// Feed raw bytes; return every byte the session wrote meanwhile.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Out::new();
        self.framer.feed(bytes).unwrap();
        while let Some(ev) = self.framer.next_event() {
            let outcome = match ev {
                FramerEvent::LiteralAnnounced {
                    tag, size, sync, ..
                } => {
                    match self.session.check_literal(tag.as_ref(), size) {
                        Ok(()) => {
                            if sync {
                                self.framer.accept_literal();
                                out.extend_from_slice(b"+ Ready\r\n");
                            }
                        }
                        Err(refusal) => {
                            self.framer.reject_literal();
                            out.extend_from_slice(&refusal);
                        }
                    }
                    continue;
                }
                FramerEvent::Command(frame) => self.session.handle(&frame, &mut out),
                FramerEvent::RawLine(line) => {
                    if self.session.idling() {
                        self.session.idle_done(&line, &mut out)
                    } else {
                        self.session.auth_data(&line, &mut out)
                    }
                }
                FramerEvent::Error(e) => self.session.framing_error(&e, &mut out),
            };
            self.last_action = outcome.action;
            match outcome.action {
                Action::AuthContinue | Action::Idle => {
                    self.framer.expect_raw_line();
                }
                Action::Close => {
                    self.closed = true;
                    break;
                }
                _ => {}
            }
        }
        out.take()
    }

    /// Send one line (CRLF added); the responses as text.
    pub fn send(&mut self, line: &str) -> String {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        String::from_utf8_lossy(&self.feed(&bytes)).into_owned()
    }

    /// Send a line and check the response lines against patterns.
    pub fn run(&mut self, line: &str, expected: &[&str]) -> String {
        let got = self.send(line);
        check_lines(&got, expected);
        got
    }

    /// During IDLE: what the session reports now.
    pub fn poll(&mut self) -> String {
        let mut out = Out::new();
        let outcome = self.session.idle_poll(&mut out);
        self.last_action = outcome.action;
        String::from_utf8_lossy(&out.take()).into_owned()
    }

    /// Log in as `user` and check the OK.
    pub fn login(&mut self, user: &str) {
        let got = self.send(&format!("L1 LOGIN {user} {PASSWORD}"));
        assert!(got.contains("L1 OK"), "login failed: {got}");
    }
}

/// Whether `line` matches `pattern`, where `{*}` stands for any text.
pub fn glob(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("{*}").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let mut rest = line;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Compare response text, line by line, with patterns.
pub fn check_lines(got: &str, expected: &[&str]) {
    let lines: Vec<&str> = got.split("\r\n").filter(|l| !l.is_empty()).collect();
    let ok = lines.len() == expected.len() && lines.iter().zip(expected).all(|(l, p)| glob(p, l));
    assert!(
        ok,
        "response mismatch\n--- expected ---\n{}\n--- got ---\n{}",
        expected.join("\n"),
        lines.join("\n")
    );
}

/// A small RFC 5322 message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice Example <alice@example.org>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
Date: Tue, 05 Mar 2024 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}
