//! The IMAP conversation before login, as a sans-I/O state machine.
//!
//! The proxy answers a client itself until it has credentials: greeting,
//! `CAPABILITY`, `NOOP`, `ID`, `LOGOUT`, `STARTTLS`, `LOGIN` and
//! `AUTHENTICATE PLAIN` (with SASL-IR or a continuation). Anything else is
//! refused with `BAD [CLIENTBUG]`. Bytes go in with [`PreAuth::receive`],
//! replies come out of [`PreAuth::output`], and [`PreAuth::step`] says what
//! the shell must do next: read more, start TLS, log in at a backend with
//! [`Credentials`], or close.
//!
//! Once credentials are handed out the machine stops reading commands: a
//! client may pipeline commands after `LOGIN`, and those belong to the
//! backend. [`PreAuth::login_succeeded`] returns them, unread.

use slotmail_imap_proto::response::{write_continuation, write_status};
use slotmail_imap_proto::sasl::{PlainError, SaslPlain};
use slotmail_imap_proto::{
    CommandBody, Framer, FramerEvent, InputOverflow, Limits, ResponseCode, StatusKind, Tag,
    parse_command,
};
use std::fmt;

/// Longest command line before login, in bytes.
pub const PREAUTH_LINE_BYTES_MAX: usize = 8 * 1024;
/// Largest literal before login (a user name or password), in bytes.
pub const PREAUTH_LITERAL_BYTES_MAX: u64 = 1024;
/// Most unprocessed input held before login, in bytes.
pub const PREAUTH_PENDING_INPUT_BYTES_MAX: usize = 16 * 1024;
/// Most bytes thrown away to skip a refused command before login.
pub const PREAUTH_DISCARD_BYTES_MAX: u64 = 64 * 1024;
/// Protocol errors (BAD) tolerated before login, then `BYE`.
pub const PREAUTH_ERRORS_MAX: u32 = 10;
/// Longest user name accepted, in bytes.
pub const USER_NAME_BYTES_MAX: usize = 255;

/// The framer limits used before login: small, since nothing but short
/// commands and credentials is valid.
pub fn preauth_limits() -> Limits {
    Limits {
        max_line_bytes: PREAUTH_LINE_BYTES_MAX,
        max_command_bytes: PREAUTH_LINE_BYTES_MAX,
        max_literal_bytes: PREAUTH_LITERAL_BYTES_MAX,
        max_non_sync_literal_bytes: PREAUTH_LITERAL_BYTES_MAX,
        max_command_literal_bytes: 2 * PREAUTH_LITERAL_BYTES_MAX,
        max_literals_per_command: 2,
        max_discard_bytes: PREAUTH_DISCARD_BYTES_MAX,
        max_pending_input_bytes: PREAUTH_PENDING_INPUT_BYTES_MAX,
        ..Limits::default()
    }
}

/// What the state machine needs to know about its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAuthConfig {
    /// Shown in the greeting.
    pub hostname: String,
    /// LOGIN/AUTHENTICATE allowed without TLS.
    pub allow_plaintext_auth: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls_available: bool,
    /// Failed logins on one connection before `BYE`.
    pub login_failures_max: u32,
}

/// A client's login, to be verified by the backend.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The client's tag of `LOGIN` or `AUTHENTICATE`.
    pub tag: Tag,
    /// The authentication identity.
    pub username: String,
    /// The password.
    pub password: String,
    /// The user to act as, when not the authentication identity (SASL
    /// PLAIN's authzid; the backend allows it for admins only).
    pub authzid: Option<String>,
}

impl Credentials {
    /// The user whose store serves this session.
    pub fn mailbox_user(&self) -> &str {
        self.authzid.as_deref().unwrap_or(&self.username)
    }

    /// SASL PLAIN's message for the backend: `authzid NUL authcid NUL password`.
    pub fn sasl_plain(&self) -> Vec<u8> {
        SaslPlain {
            authzid: self.authzid.as_deref().unwrap_or("").as_bytes().to_vec(),
            authcid: self.username.as_bytes().to_vec(),
            password: self.password.as_bytes().to_vec(),
        }
        .message()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tag", &self.tag)
            .field("username", &self.username)
            .field("authzid", &self.authzid)
            .finish_non_exhaustive()
    }
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the output, then read more input.
    Read,
    /// Write the output, then run the TLS handshake and call
    /// [`PreAuth::tls_started`].
    StartTls,
    /// Log in at the user's backend, then call [`PreAuth::login_succeeded`]
    /// or [`PreAuth::login_failed`]. Output may be pending: write it first.
    Login(Credentials),
    /// Write the output and close the connection.
    Close,
}

/// Why a backend login did not succeed, as the client will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong user or password: `NO [AUTHENTICATIONFAILED]`, counted.
    Credentials,
    /// Refused at the edge after too many failures from the address.
    Throttled,
    /// Too many sessions of this user.
    UserLimit,
    /// The backend could not be reached or did not answer in time, or the
    /// user has no store: `NO [UNAVAILABLE]` with this text.
    Unavailable(String),
    /// The backend's own refusal (`NO [code] text` after the tag), passed on.
    Backend(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading commands.
    Commands,
    /// AUTHENTICATE sent `+`; the next line is the SASL response.
    AuthData(Tag),
    /// Credentials handed out; waiting for the backend.
    Backend,
    /// Done: logged in or closing.
    Done,
}

/// One client connection before login.
#[derive(Debug)]
pub struct PreAuth {
    config: PreAuthConfig,
    framer: Framer,
    tls: bool,
    state: State,
    out: Vec<u8>,
    errors: u32,
    login_failures: u32,
}

impl PreAuth {
    /// A new connection; `tls` when it is already encrypted (implicit TLS).
    pub fn new(config: PreAuthConfig, tls: bool) -> PreAuth {
        PreAuth {
            config,
            framer: Framer::new(preauth_limits()),
            tls,
            state: State::Commands,
            out: Vec::new(),
            errors: 0,
            login_failures: 0,
        }
    }

    /// Queue the greeting, `* OK [CAPABILITY ...] ...`.
    pub fn greeting(&mut self) {
        let code = ResponseCode::Capability(self.capabilities());
        let text = format!("{} slotmail IMAP proxy ready", self.config.hostname);
        write_status(&mut self.out, None, StatusKind::Ok, Some(&code), &text);
    }

    /// The capabilities before login.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "ID", "ENABLE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.config.starttls_available && !self.tls {
            caps.push("STARTTLS".into());
        }
        if self.plaintext_ok() {
            caps.push("AUTH=PLAIN".into());
            caps.push("SASL-IR".into());
        } else {
            caps.push("LOGINDISABLED".into());
        }
        caps
    }

    fn plaintext_ok(&self) -> bool {
        self.tls || self.config.allow_plaintext_auth
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Bytes to write to the client.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The first `n` output bytes were written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n);
    }

    /// How many bytes [`PreAuth::receive`] accepts now.
    pub fn input_room(&self) -> usize {
        self.framer.input_room()
    }

    /// Bytes read from the client; at most [`PreAuth::input_room`].
    pub fn receive(&mut self, data: &[u8]) -> Result<(), InputOverflow> {
        self.framer.feed(data)
    }

    /// The TLS handshake after `STARTTLS` completed.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// Process input until the shell has something to do.
    pub fn step(&mut self) -> Step {
        loop {
            match self.state {
                State::Backend => return Step::Read,
                State::Done => return Step::Close,
                State::Commands | State::AuthData(_) => {}
            }
            let Some(event) = self.framer.next_event() else {
                return Step::Read;
            };
            let step = match event {
                FramerEvent::LiteralAnnounced { sync, .. } => {
                    if sync && self.framer.accept_literal() {
                        write_continuation(&mut self.out, "Ready");
                    }
                    None
                }
                FramerEvent::Error(e) => {
                    if let State::AuthData(tag) =
                        std::mem::replace(&mut self.state, State::Commands)
                    {
                        write_status(
                            &mut self.out,
                            Some(&tag),
                            StatusKind::Bad,
                            None,
                            "AUTHENTICATE data too long",
                        );
                    }
                    self.out.extend_from_slice(&e.response());
                    if e.is_fatal() {
                        self.state = State::Done;
                        Some(Step::Close)
                    } else {
                        self.protocol_error()
                    }
                }
                FramerEvent::RawLine(line) => self.auth_data(&line),
                FramerEvent::Command(frame) => match parse_command(&frame) {
                    Ok(cmd) => self.command(cmd.tag, cmd.body),
                    Err(e) => {
                        self.out.extend_from_slice(&e.response());
                        self.protocol_error()
                    }
                },
            };
            if let Some(step) = step {
                return step;
            }
        }
    }

    fn protocol_error(&mut self) -> Option<Step> {
        self.errors += 1;
        if self.errors >= PREAUTH_ERRORS_MAX {
            write_status(
                &mut self.out,
                None,
                StatusKind::Bye,
                None,
                "Too many invalid commands",
            );
            self.state = State::Done;
            return Some(Step::Close);
        }
        None
    }

    fn bad(&mut self, tag: &Tag, code: Option<ResponseCode>, text: &str) -> Option<Step> {
        write_status(
            &mut self.out,
            Some(tag),
            StatusKind::Bad,
            code.as_ref(),
            text,
        );
        self.protocol_error()
    }

    fn no(&mut self, tag: &Tag, code: ResponseCode, text: &str) -> Option<Step> {
        write_status(&mut self.out, Some(tag), StatusKind::No, Some(&code), text);
        None
    }

    fn ok(&mut self, tag: &Tag, text: &str) {
        write_status(&mut self.out, Some(tag), StatusKind::Ok, None, text);
    }

    fn command(&mut self, tag: Tag, body: CommandBody) -> Option<Step> {
        match body {
            CommandBody::Capability => {
                let mut line = b"* CAPABILITY".to_vec();
                for c in self.capabilities() {
                    line.push(b' ');
                    line.extend_from_slice(c.as_bytes());
                }
                line.extend_from_slice(b"\r\n");
                self.out.extend_from_slice(&line);
                self.ok(&tag, "CAPABILITY completed");
                None
            }
            CommandBody::Noop => {
                self.ok(&tag, "NOOP completed");
                None
            }
            CommandBody::Id { .. } => {
                self.out
                    .extend_from_slice(b"* ID (\"name\" \"slotmail\" \"role\" \"proxy\")\r\n");
                self.ok(&tag, "ID completed");
                None
            }
            CommandBody::Logout => {
                write_status(
                    &mut self.out,
                    None,
                    StatusKind::Bye,
                    None,
                    "slotmail proxy logging out",
                );
                self.ok(&tag, "LOGOUT completed");
                self.state = State::Done;
                Some(Step::Close)
            }
            CommandBody::StartTls => {
                if self.tls {
                    return self.bad(&tag, None, "TLS is already active");
                }
                if !self.config.starttls_available {
                    return self.bad(&tag, None, "STARTTLS is not available on this port");
                }
                self.ok(&tag, "Begin TLS negotiation now");
                // Plaintext sent after STARTTLS must not pass as protected.
                self.framer.discard_pending_input();
                Some(Step::StartTls)
            }
            CommandBody::Login { username, password } => {
                if !self.plaintext_ok() {
                    return self.no(
                        &tag,
                        ResponseCode::PrivacyRequired,
                        "Plaintext login is not allowed without TLS; use STARTTLS",
                    );
                }
                let (Ok(username), Ok(password)) =
                    (String::from_utf8(username), String::from_utf8(password))
                else {
                    return self.no(
                        &tag,
                        ResponseCode::AuthenticationFailed,
                        "Authentication failed",
                    );
                };
                self.credentials(Credentials {
                    tag,
                    username,
                    password,
                    authzid: None,
                })
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    return self.no(
                        &tag,
                        ResponseCode::Cannot,
                        &format!("Unsupported authentication mechanism {mechanism}"),
                    );
                }
                if !self.plaintext_ok() {
                    return self.no(
                        &tag,
                        ResponseCode::PrivacyRequired,
                        "Plaintext authentication is not allowed without TLS; use STARTTLS",
                    );
                }
                match initial_response.as_deref() {
                    None => {
                        if self.framer.expect_raw_line() {
                            write_continuation(&mut self.out, "");
                            self.state = State::AuthData(tag);
                            None
                        } else {
                            self.bad(&tag, None, "AUTHENTICATE must not be pipelined")
                        }
                    }
                    Some(ir) => match SaslPlain::decode_initial(ir.as_bytes()) {
                        Err(PlainError::Base64) => {
                            self.bad(&tag, None, "Invalid BASE64 in initial response")
                        }
                        plain => self.sasl_plain(tag, plain),
                    },
                }
            }
            other => self.bad(
                &tag,
                Some(ResponseCode::ClientBug),
                &format!("{} is not valid before login", other.name()),
            ),
        }
    }

    fn auth_data(&mut self, line: &[u8]) -> Option<Step> {
        let State::AuthData(tag) = std::mem::replace(&mut self.state, State::Commands) else {
            return None;
        };
        if line == b"*" {
            return self.bad(&tag, None, "AUTHENTICATE cancelled");
        }
        match SaslPlain::decode(line) {
            Err(PlainError::Base64) => self.bad(&tag, None, "Invalid BASE64 in AUTHENTICATE data"),
            plain => self.sasl_plain(tag, plain),
        }
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
    fn sasl_plain(&mut self, tag: Tag, plain: Result<SaslPlain, PlainError>) -> Option<Step> {
        let Ok(plain) = plain else {
            return self.bad(
                &tag,
                None,
                "Malformed PLAIN response (expected authzid NUL authcid NUL password)",
            );
        };
        let Some((authzid, username, password)) = plain.to_utf8() else {
            return self.no(
                &tag,
                ResponseCode::AuthenticationFailed,
                "Authentication failed",
            );
        };
        self.credentials(Credentials {
            tag,
            username: username.to_string(),
            password: password.to_string(),
            authzid: authzid.map(str::to_string),
        })
    }

    fn credentials(&mut self, creds: Credentials) -> Option<Step> {
        let bad_name = |n: &str| {
            n.is_empty()
                || n.len() > USER_NAME_BYTES_MAX
                || n.chars().any(|c| c.is_control() || c == ' ')
        };
        if bad_name(&creds.username) || creds.authzid.as_deref().is_some_and(bad_name) {
            return self.no(
                &creds.tag,
                ResponseCode::AuthenticationFailed,
                "Authentication failed",
            );
        }
        self.state = State::Backend;
        Some(Step::Login(creds))
    }

    /// The backend accepted the login: the machine is done. Returns the
    /// client bytes received after the login command, for the backend.
    pub fn login_succeeded(&mut self) -> Vec<u8> {
        assert_eq!(self.state, State::Backend, "no login was under way");
        self.state = State::Done;
        self.framer.take_pending_input()
    }

    /// The login failed: answer the tag and go on reading commands, or
    /// close after too many failures (the next [`PreAuth::step`] says so).
    pub fn login_failed(&mut self, tag: &Tag, failure: LoginFailure) {
        assert_eq!(self.state, State::Backend, "no login was under way");
        self.state = State::Commands;
        match failure {
            LoginFailure::Credentials => {
                self.login_failures += 1;
                write_status(
                    &mut self.out,
                    Some(tag),
                    StatusKind::No,
                    Some(&ResponseCode::AuthenticationFailed),
                    "Authentication failed",
                );
            }
            LoginFailure::Throttled => {
                self.login_failures += 1;
                write_status(
                    &mut self.out,
                    Some(tag),
                    StatusKind::No,
                    Some(&ResponseCode::Unavailable),
                    "Too many failed logins from your address; try again later",
                );
            }
            LoginFailure::UserLimit => write_status(
                &mut self.out,
                Some(tag),
                StatusKind::No,
                Some(&ResponseCode::Limit),
                "Too many connections for this user",
            ),
            LoginFailure::Unavailable(text) => write_status(
                &mut self.out,
                Some(tag),
                StatusKind::No,
                Some(&ResponseCode::Unavailable),
                &text,
            ),
            LoginFailure::Backend(rest) => {
                self.out.extend_from_slice(tag.as_str().as_bytes());
                self.out.extend_from_slice(&rest);
            }
        }
        if self.login_failures >= self.config.login_failures_max {
            write_status(
                &mut self.out,
                None,
                StatusKind::Bye,
                None,
                "Too many failed logins",
            );
            self.state = State::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_imap_proto::sasl::base64_encode;

    fn config(plaintext: bool, starttls: bool) -> PreAuthConfig {
        PreAuthConfig {
            hostname: "proxy.test".into(),
            allow_plaintext_auth: plaintext,
            starttls_available: starttls,
            login_failures_max: 2,
        }
    }

    /// Feed `input`, return (step, output as text) and clear the output.
    fn run(p: &mut PreAuth, input: &[u8]) -> (Step, String) {
        p.receive(input).unwrap();
        let step = p.step();
        let out = String::from_utf8(p.output().to_vec()).unwrap();
        let n = p.output().len();
        p.consume_output(n);
        (step, out)
    }

    #[test]
    fn greeting_capability_noop_id_logout() {
        let mut p = PreAuth::new(config(false, true), false);
        p.greeting();
        let (step, out) = run(&mut p, b"a CAPABILITY\r\nb NOOP\r\nc ID NIL\r\n");
        assert_eq!(step, Step::Read);
        assert!(out.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{out}");
        assert!(out.contains("STARTTLS LOGINDISABLED]"), "{out}");
        assert!(out.contains("\r\na OK CAPABILITY completed\r\n"), "{out}");
        assert!(out.contains("b OK NOOP completed\r\n"), "{out}");
        assert!(out.contains("* ID (\"name\" \"slotmail\""), "{out}");
        let (step, out) = run(&mut p, b"d LOGOUT\r\n");
        assert_eq!(step, Step::Close);
        assert_eq!(
            out,
            "* BYE slotmail proxy logging out\r\nd OK LOGOUT completed\r\n"
        );
    }

    #[test]
    fn login_needs_tls_unless_allowed_and_starttls_discards_plaintext() {
        let mut p = PreAuth::new(config(false, true), false);
        let (step, out) = run(&mut p, b"a LOGIN u p\r\n");
        assert_eq!(step, Step::Read);
        assert!(out.starts_with("a NO [PRIVACYREQUIRED]"), "{out}");
        let (step, out) = run(&mut p, b"b STARTTLS\r\nc LOGIN u p\r\n");
        assert_eq!(step, Step::StartTls);
        assert_eq!(out, "b OK Begin TLS negotiation now\r\n");
        p.tls_started();
        // The injected LOGIN was dropped; nothing else happens.
        assert_eq!(p.step(), Step::Read);
        let (step, out) = run(&mut p, b"d CAPABILITY\r\n");
        assert_eq!(step, Step::Read);
        assert!(out.contains("AUTH=PLAIN SASL-IR\r\n"), "{out}");
        assert!(!out.contains("STARTTLS"), "{out}");
        let (step, _) = run(&mut p, b"e STARTTLS\r\n");
        assert_eq!(step, Step::Read);
        let (step, out) = run(&mut p, b"f LOGIN \"alice\" {3}\r\n");
        assert_eq!((step, out.as_str()), (Step::Read, "+ Ready\r\n"));
        let (step, _) = run(&mut p, b"p w\r\ng SELECT INBOX\r\n");
        let Step::Login(c) = step else {
            panic!("{step:?}")
        };
        assert_eq!((c.tag.as_str(), c.username.as_str()), ("f", "alice"));
        assert_eq!(c.password, "p w");
        assert!(!format!("{c:?}").contains("p w"), "password in Debug");
        // Pipelined commands after LOGIN are the backend's.
        assert_eq!(p.login_succeeded(), b"g SELECT INBOX\r\n");
        assert_eq!(p.step(), Step::Close);
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        let mut p = PreAuth::new(config(true, false), false);
        let ir = base64_encode(b"\0bob\0secret");
        let (step, _) = run(&mut p, format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes());
        let Step::Login(c) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob", "secret")
        );
        assert_eq!(c.authzid, None);
        assert_eq!(c.sasl_plain(), b"\0bob\0secret");
        p.login_failed(&c.tag, LoginFailure::Credentials);
        assert_eq!(
            p.output(),
            b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        );
        p.consume_output(p.output().len());
        let (step, out) = run(&mut p, b"b AUTHENTICATE PLAIN\r\n");
        assert_eq!((step, out.as_str()), (Step::Read, "+ \r\n"));
        let data = base64_encode(b"carol\0admin\0pw");
        let (step, _) = run(&mut p, format!("{data}\r\n").as_bytes());
        let Step::Login(c) = step else {
            panic!("{step:?}")
        };
        assert_eq!(c.mailbox_user(), "carol");
        assert_eq!(c.username, "admin");
        // A second failure on the connection closes it.
        p.login_failed(&c.tag, LoginFailure::Credentials);
        let out = String::from_utf8(p.output().to_vec()).unwrap();
        assert!(out.ends_with("* BYE Too many failed logins\r\n"), "{out}");
        assert_eq!(p.step(), Step::Close);
    }

    #[test]
    fn refusals_carry_codes_and_backend_replies_are_retagged() {
        let mut p = PreAuth::new(config(true, false), false);
        let (_, out) = run(&mut p, b"a SELECT INBOX\r\n");
        assert_eq!(
            out,
            "a BAD [CLIENTBUG] SELECT is not valid before login\r\n"
        );
        let (_, out) = run(&mut p, b"b AUTHENTICATE CRAM-MD5\r\n");
        assert!(out.starts_with("b NO [CANNOT]"), "{out}");
        let (_, out) = run(&mut p, b"c AUTHENTICATE PLAIN\r\n*\r\n");
        assert_eq!(out, "+ \r\nc BAD AUTHENTICATE cancelled\r\n");
        let (_, out) = run(&mut p, b"d STARTTLS\r\n");
        assert!(out.starts_with("d BAD"), "{out}");
        let (step, _) = run(&mut p, b"e LOGIN x y\r\n");
        let Step::Login(c) = step else {
            panic!("{step:?}")
        };
        p.login_failed(
            &c.tag,
            LoginFailure::Unavailable("Mail store unavailable".into()),
        );
        assert_eq!(p.output(), b"e NO [UNAVAILABLE] Mail store unavailable\r\n");
        p.consume_output(p.output().len());
        let (step, _) = run(&mut p, b"f LOGIN x y\r\n");
        let Step::Login(c) = step else {
            panic!("{step:?}")
        };
        p.login_failed(
            &c.tag,
            LoginFailure::Backend(b" NO [LIMIT] busy\r\n".to_vec()),
        );
        assert_eq!(p.output(), b"f NO [LIMIT] busy\r\n");
    }

    #[test]
    fn too_many_errors_and_oversized_input_close() {
        let mut p = PreAuth::new(config(true, false), false);
        let mut input = Vec::new();
        for i in 0..PREAUTH_ERRORS_MAX {
            input.extend_from_slice(format!("t{i} FETCH 1 BODY[]\r\n").as_bytes());
        }
        let (step, out) = run(&mut p, &input);
        assert_eq!(step, Step::Close);
        assert!(
            out.ends_with("* BYE Too many invalid commands\r\n"),
            "{out}"
        );

        let mut p = PreAuth::new(config(true, false), false);
        let (step, out) = run(&mut p, b"a LOGIN {5000}\r\n");
        assert_eq!(step, Step::Read);
        assert!(out.starts_with("a NO [TOOBIG]"), "{out}");
        assert!(
            p.receive(&vec![b'x'; PREAUTH_PENDING_INPUT_BYTES_MAX + 1])
                .is_err()
        );
    }

    #[test]
    fn oversized_authenticate_data_is_refused_and_the_session_goes_on() {
        let mut p = PreAuth::new(config(true, false), false);
        let (_, out) = run(&mut p, b"a AUTHENTICATE PLAIN\r\n");
        assert_eq!(out, "+ \r\n");
        let mut long = vec![b'A'; PREAUTH_LINE_BYTES_MAX + 10];
        long.extend_from_slice(b"\r\nb NOOP\r\n");
        let mut out = String::new();
        for chunk in long.chunks(4096) {
            let (step, o) = run(&mut p, chunk);
            assert_eq!(step, Step::Read);
            out.push_str(&o);
        }
        assert!(
            out.starts_with("a BAD AUTHENTICATE data too long\r\n"),
            "{out}"
        );
        assert!(out.ends_with("b OK NOOP completed\r\n"), "{out}");
    }

    proptest::proptest! {
        /// No input makes the state machine panic, and its output stays
        /// bounded by what it was given.
        #[test]
        fn arbitrary_input_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), 0..20)
        ) {
            let mut p = PreAuth::new(config(true, true), false);
            p.greeting();
            for chunk in chunks {
                let room = p.input_room().min(chunk.len());
                p.receive(&chunk[..room]).unwrap();
                match p.step() {
                    Step::Close => break,
                    Step::Login(c) => p.login_failed(&c.tag, LoginFailure::Credentials),
                    Step::StartTls => p.tls_started(),
                    Step::Read => {}
                }
                let n = p.output().len();
                proptest::prop_assert!(n < 64 * 1024);
                p.consume_output(n);
            }
        }
    }
}
