//! Connection-level commands: STARTTLS, LOGIN, AUTHENTICATE PLAIN (with
//! SASL-IR, continuation data and an authorization identity), ENABLE, ID
//! and COMPRESS.
//!
//! Credentials are checked with `Slot::verify_password` (argon2, on the
//! session's blocking thread). A failure never tells an unknown user from a
//! wrong password, and is answered after a delay that grows with every
//! failure on the connection; after `failed_logins_max` the connection is
//! closed. Failures are also counted across connections per client address
//! and user name (`throttle.rs`): past that ceiling a login is refused with
//! `NO [UNAVAILABLE]` before any password check.

use crate::session::{Action, Login, Out, Outcome, Reply, Res, Session, State, lossy};
use slotmail_imap_proto::response::write_continuation;
use slotmail_imap_proto::sasl::{PlainError, SaslPlain};
use slotmail_imap_proto::{IdParams, ResponseCode, Tag};

impl Session {
    pub(crate) fn starttls(&mut self) -> Res {
        if self.tls {
            return Err(Reply::bad("TLS is already active"));
        }
        if !self.starttls_offered {
            return Err(Reply::bad("STARTTLS is not available on this port"));
        }
        if self.state != State::NotAuthenticated {
            return Err(Reply::bad("STARTTLS is only valid before login"));
        }
        Ok(Reply::ok("Begin TLS negotiation now")
            .then(Action::StartTls)
            .without_sync())
    }

    pub(crate) fn login(&mut self, username: &[u8], password: &[u8]) -> Res {
        if self.state != State::NotAuthenticated {
            return Err(Reply::bad("Already authenticated"));
        }
        if !self.plaintext_auth_allowed() {
            return Err(
                Reply::no("Plaintext login is not allowed without TLS; use STARTTLS")
                    .code(ResponseCode::PrivacyRequired),
            );
        }
        if let Some(refusal) = self.throttled(username) {
            return Ok(refusal);
        }
        let (Ok(user), Ok(pass)) = (std::str::from_utf8(username), std::str::from_utf8(password))
        else {
            return Ok(self.login_failed(username));
        };
        Ok(self.log_in(None, user, pass))
    }

    pub(crate) fn authenticate(
        &mut self,
        tag: &Tag,
        mechanism: &str,
        initial_response: Option<&str>,
        out: &mut Out,
    ) -> Res {
        if self.state != State::NotAuthenticated {
            return Err(Reply::bad("Already authenticated"));
        }
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return Err(
                Reply::no(format!("Unsupported authentication mechanism {mechanism}"))
                    .code(ResponseCode::Cannot),
            );
        }
        if !self.plaintext_auth_allowed() {
            return Err(Reply::no(
                "Plaintext authentication is not allowed without TLS; use STARTTLS",
            )
            .code(ResponseCode::PrivacyRequired));
        }
        match initial_response {
            None => {
                write_continuation(out, "");
                self.auth_tag = Some(tag.clone());
                Ok(Reply::continuation(Action::AuthContinue))
            }
            Some(ir) => match SaslPlain::decode_initial(ir.as_bytes()) {
                Err(PlainError::Base64) => Err(Reply::bad("Invalid BASE64 in initial response")),
                plain => Ok(self.sasl_plain(plain)),
            },
        }
    }

    /// The client's line after `+ ` during AUTHENTICATE.
    pub fn auth_data(&mut self, line: &[u8], out: &mut Out) -> Outcome {
        let Some(tag) = self.auth_tag.take() else {
            return Outcome::of(Action::None);
        };
        self.reported.clear();
        let reply = if line == b"*" {
            Reply::bad("AUTHENTICATE cancelled")
        } else {
            match SaslPlain::decode(line) {
                Err(PlainError::Base64) => Reply::bad("Invalid BASE64 in AUTHENTICATE data"),
                plain => self.sasl_plain(plain),
            }
        };
        self.finish(&tag, reply, true, out)
    }

    /// Whether AUTHENTICATE is waiting for client data.
    pub fn awaiting_auth_data(&self) -> bool {
        self.auth_tag.is_some()
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
    fn sasl_plain(&mut self, plain: Result<SaslPlain, PlainError>) -> Reply {
        let Ok(plain) = plain else {
            return Reply::bad(
                "Malformed PLAIN response (expected authzid NUL authcid NUL password)",
            );
        };
        if let Some(refusal) = self.throttled(&plain.authcid) {
            return refusal;
        }
        let Some((authz, authc, pass)) = plain.to_utf8() else {
            return self.login_failed(&plain.authcid);
        };
        self.log_in(authz, authc, pass)
    }

    /// Check credentials and enter the authenticated state. `authz`: the
    /// user to act as, if different from the authenticated one (admins only).
    fn log_in(&mut self, authz: Option<&str>, authc: &str, password: &str) -> Reply {
        let slot = self.ctx.slot.clone();
        let account = match slot.verify_password(authc, password) {
            Ok(Some(a)) => a,
            Ok(None) => {
                // Spend about the time a wrong password costs, so the reply
                // time does not tell an unknown user from a wrong password.
                if matches!(slot.account(authc), Ok(None)) {
                    let _ = slotmail_store::hash_password("not a user of this slot");
                }
                return self.login_failed(authc.as_bytes());
            }
            Err(e) => {
                tracing::error!(user = authc, cause = %e, "IMAP: password check failed");
                return Reply::no("Temporary authentication failure")
                    .code(ResponseCode::Unavailable);
            }
        };
        let user = match authz {
            None => authc,
            Some(target) => {
                if !account.is_admin {
                    tracing::warn!(
                        user = authc,
                        authz = target,
                        "IMAP: authorization refused (not an admin)"
                    );
                    return Reply::no("Not authorized to act as that user")
                        .code(ResponseCode::AuthorizationFailed);
                }
                match slot.account(target) {
                    Ok(Some(_)) => target,
                    Ok(None) => {
                        return Reply::no("Not authorized to act as that user")
                            .code(ResponseCode::AuthorizationFailed);
                    }
                    Err(e) => return Reply::from(e),
                }
            }
        };
        let Some(registration) = self.ctx.hub.register(user) else {
            tracing::warn!(user, "IMAP: too many connections for user");
            return Reply::no("Too many connections for this user").code(ResponseCode::Limit);
        };
        let store = match slot.user(user) {
            Ok(s) => s,
            Err(e) => return Reply::from(e),
        };
        tracing::info!(user, authenticated_as = authc, tls = self.tls, "IMAP login");
        self.login = Some(Login {
            store,
            registration,
        });
        self.state = State::Authenticated;
        self.failed_logins = 0;
        self.ctx.throttle.succeeded(self.peer, authc.as_bytes());
        Reply::ok("Logged in").code(ResponseCode::Capability(self.capabilities()))
    }

    /// A failed login of `user` (the authentication identity as sent).
    fn login_failed(&mut self, user: &[u8]) -> Reply {
        self.ctx
            .throttle
            .failed(self.peer, user, std::time::Instant::now());
        self.delayed_refusal(
            Reply::no("Authentication failed").code(ResponseCode::AuthenticationFailed),
        )
    }

    /// The refusal when `user` has failed too often from this address
    /// (across connections): no password check, so a right guess is not
    /// told apart from a wrong one. Counts as a failure on the connection.
    fn throttled(&mut self, user: &[u8]) -> Option<Reply> {
        if !self
            .ctx
            .throttle
            .blocked(self.peer, user, std::time::Instant::now())
        {
            return None;
        }
        tracing::warn!(
            peer = ?self.peer,
            user = %lossy(user),
            "IMAP: login refused, too many failed logins from this address"
        );
        Some(self.delayed_refusal(
            Reply::no("Too many failed logins; try again later").code(ResponseCode::Unavailable),
        ))
    }

    /// `reply` after the growing per-connection delay; the connection is
    /// closed after `failed_logins_max` of them.
    fn delayed_refusal(&mut self, mut reply: Reply) -> Reply {
        self.failed_logins += 1;
        reply.delay = Some(self.config().timeouts.login_delay(self.failed_logins));
        if self.failed_logins >= self.config().limits.failed_logins_max {
            reply.action = Action::Close;
            reply.bye = Some("Too many failed logins");
        }
        reply
    }

    pub(crate) fn compress(&mut self, mechanism: &str) -> Res {
        if self.compressed {
            return Err(
                Reply::no("Compression is already active").code(ResponseCode::CompressionActive)
            );
        }
        if !mechanism.eq_ignore_ascii_case("DEFLATE") {
            return Err(
                Reply::no(format!("Unknown compression mechanism {mechanism}"))
                    .code(ResponseCode::Cannot),
            );
        }
        self.compressed = true;
        Ok(Reply::ok("DEFLATE active")
            .then(Action::Compress)
            .without_sync())
    }

    pub(crate) fn enable(&mut self, capabilities: &[String], out: &mut Out) -> Res {
        if self.state != State::Authenticated {
            return Err(Reply::bad(
                "ENABLE is only valid before a mailbox is selected",
            ));
        }
        let mut enabled = Vec::new();
        for cap in capabilities {
            match cap.to_ascii_uppercase().as_str() {
                "CONDSTORE" if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    enabled.push("CONDSTORE");
                }
                "QRESYNC" if !self.enabled.qresync => {
                    self.enabled.qresync = true;
                    self.enabled.condstore = true;
                    enabled.push("QRESYNC");
                }
                "IMAP4REV2" if !self.enabled.rev2 => {
                    self.enabled.rev2 = true;
                    enabled.push("IMAP4rev2");
                }
                _ => {}
            }
        }
        let mut line = b"* ENABLED".to_vec();
        for c in enabled {
            line.push(b' ');
            line.extend_from_slice(c.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        out.extend_from_slice(&line);
        Ok(Reply::ok("ENABLE completed"))
    }

    pub(crate) fn id(&mut self, params: Option<IdParams>, out: &mut Out) -> Reply {
        if let Some(params) = params {
            let fields: Vec<String> = params
                .iter()
                .take(30)
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        lossy(k),
                        v.as_deref().map(lossy).unwrap_or_default()
                    )
                })
                .collect();
            tracing::debug!(client = %fields.join(", "), "IMAP ID");
        }
        out.extend_from_slice(
            format!(
                "* ID (\"name\" \"slotmail\" \"version\" \"{}\")\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        Reply::ok("ID completed")
    }
}
