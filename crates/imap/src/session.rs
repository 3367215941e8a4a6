//! The session core: one IMAP connection's state machine, without I/O.
//!
//! A [`Session`] is fed one complete command at a time ([`Session::handle`],
//! from the framer's [`Frame`]s) and writes its responses into an [`Out`].
//! It calls the store synchronously, so the caller runs it on a blocking
//! thread. What the transport must do next (start TLS, start COMPRESS, wait
//! in IDLE, read AUTHENTICATE data, close) comes back as an [`Action`].
//!
//! Command families live in their own modules (`auth.rs`, `mailbox.rs`,
//! `list.rs`, `select.rs`, `fetch.rs`, `store_cmd.rs`, `copy.rs`,
//! `search.rs`); this module holds the state, the dispatcher and the
//! reply plumbing shared by all of them.
//!
//! After every command in the selected state the session reports what other
//! sessions changed in the mailbox (`select.rs`, `Session::sync`), before the
//! tagged reply, as RFC 9051 §7 allows.

use crate::config::ImapConfig;
use crate::hub::{Hub, Registration};
use crate::throttle::LoginThrottle;
use crate::view::View;
use slotmail_imap_proto::response::{write_continuation, write_status};
use slotmail_imap_proto::{
    Command, CommandBody, DEFAULT_MAX_NESTING_DEPTH, Frame, FramingError, MailboxEncoding,
    ParseOptions, ResponseCode, StatusKind, Tag, parse_command_with,
};
use slotmail_store::{Slot, StoreError, User};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

/// Everything sessions of one server share: the store, the per-user
/// registry and the configuration.
#[derive(Debug)]
pub struct Context {
    pub slot: Arc<Slot>,
    pub hub: Arc<Hub>,
    pub config: ImapConfig,
    /// Failed logins across connections (per address and user name).
    pub throttle: LoginThrottle,
}

impl Context {
    /// A context with a fresh [`Hub`]. The caller connects the hub to the
    /// store's change listener (`crate::serve` does).
    pub fn new(slot: Arc<Slot>, config: ImapConfig) -> Arc<Context> {
        let hub = Hub::new(config.limits.connections_per_user_max);
        Self::with_hub(slot, hub, config)
    }

    /// A context with a given hub (shared with another server or listener).
    pub fn with_hub(slot: Arc<Slot>, hub: Arc<Hub>, config: ImapConfig) -> Arc<Context> {
        let throttle = LoginThrottle::new(
            config.limits.failed_logins_per_address_user_max,
            config.timeouts.failed_login_window,
            config.limits.failed_login_keys_max,
        );
        Arc::new(Context {
            slot,
            hub,
            config,
            throttle,
        })
    }
}

/// The session state (RFC 9051 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

/// What the transport does after a command's output has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the next command.
    None,
    /// Start the TLS handshake (STARTTLS was answered OK); drop any
    /// plaintext the client pipelined after the command.
    StartTls,
    /// Compress both directions from now on (COMPRESS DEFLATE was answered
    /// OK); input after the command is already compressed.
    Compress,
    /// The client is in IDLE: wait for `DONE` ([`Session::idle_done`]),
    /// and call [`Session::idle_poll`] whenever the user's data changes.
    Idle,
    /// AUTHENTICATE wants a line of client data: read one raw line and
    /// hand it to [`Session::auth_data`].
    AuthContinue,
    /// Close the connection.
    Close,
}

/// The result of one call into the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    /// Hold the output back this long before sending it (failed logins).
    pub delay: Option<Duration>,
}

impl Outcome {
    pub(crate) fn of(action: Action) -> Outcome {
        Outcome {
            action,
            delay: None,
        }
    }
}

/// Where a session writes its responses. Derefs to the byte buffer; with
/// [`Out::streaming`] full chunks are handed to a sink while a long
/// response (FETCH of many bodies) is still being produced.
pub struct Out {
    buf: Vec<u8>,
    sink: Option<Box<dyn FnMut(Vec<u8>) -> bool + Send>>,
    chunk_bytes: usize,
    broken: bool,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("buffered", &self.buf.len())
            .field("streaming", &self.sink.is_some())
            .field("broken", &self.broken)
            .finish()
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Out {
    /// Collect everything in memory.
    pub fn new() -> Out {
        Out {
            buf: Vec::new(),
            sink: None,
            chunk_bytes: usize::MAX,
            broken: false,
        }
    }

    /// Hand the output to `sink` in chunks of at least `chunk_bytes`
    /// (cut at response boundaries). `sink` returns false when the client
    /// is gone; output is then dropped.
    pub fn streaming(
        chunk_bytes: usize,
        sink: impl FnMut(Vec<u8>) -> bool + Send + 'static,
    ) -> Out {
        Out {
            buf: Vec::new(),
            sink: Some(Box::new(sink)),
            chunk_bytes: chunk_bytes.max(1),
            broken: false,
        }
    }

    /// A response is complete: pass a full chunk on.
    pub(crate) fn boundary(&mut self) {
        if self.broken {
            self.buf.clear();
            return;
        }
        if self.buf.len() >= self.chunk_bytes
            && let Some(sink) = self.sink.as_mut()
        {
            let chunk = std::mem::take(&mut self.buf);
            if !sink(chunk) {
                self.broken = true;
                self.sink = None;
            }
        }
    }

    /// Append a complete response, moving it in when nothing is buffered
    /// (a large FETCH line is then not copied).
    pub(crate) fn push_owned(&mut self, bytes: Vec<u8>) {
        if self.buf.is_empty() {
            self.buf = bytes;
        } else {
            self.buf.extend_from_slice(&bytes);
        }
    }

    /// Whether the client went away while output was streamed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Take what has not been passed on yet.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

impl Deref for Out {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// The tagged reply a command handler produces, with what follows it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub kind: StatusKind,
    pub code: Option<ResponseCode>,
    pub text: String,
    pub action: Action,
    pub delay: Option<Duration>,
    /// Report other sessions' changes before the tagged reply.
    pub sync: bool,
    /// Write a tagged status line (false: the handler wrote a continuation).
    pub tagged: bool,
    /// Follow the tagged line with `* BYE text` (the connection closes).
    pub bye: Option<&'static str>,
}

pub(crate) type Res = Result<Reply, Reply>;

impl Reply {
    fn new(kind: StatusKind, code: Option<ResponseCode>, text: impl Into<String>) -> Reply {
        Reply {
            kind,
            code,
            text: text.into(),
            action: Action::None,
            delay: None,
            sync: true,
            tagged: true,
            bye: None,
        }
    }
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::new(StatusKind::Ok, None, text)
    }
    pub fn no(text: impl Into<String>) -> Reply {
        Reply::new(StatusKind::No, None, text)
    }
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply::new(StatusKind::Bad, None, text)
    }
    pub fn code(mut self, code: ResponseCode) -> Reply {
        self.code = Some(code);
        self
    }
    pub fn then(mut self, action: Action) -> Reply {
        self.action = action;
        self
    }
    pub fn without_sync(mut self) -> Reply {
        self.sync = false;
        self
    }
    /// The handler already wrote a continuation request; no tagged line yet.
    pub fn continuation(action: Action) -> Reply {
        let mut r = Reply::ok("");
        r.tagged = false;
        r.sync = false;
        r.action = action;
        r
    }
}

impl From<StoreError> for Reply {
    fn from(e: StoreError) -> Reply {
        store_error_reply(&e)
    }
}

/// The reply for a store error, logging what is on our side.
pub(crate) fn store_error_reply(e: &StoreError) -> Reply {
    match e {
        StoreError::NoSuchMailbox(_) => {
            Reply::no("Mailbox does not exist").code(ResponseCode::NonExistent)
        }
        StoreError::MailboxExists(_) => {
            Reply::no("Mailbox already exists").code(ResponseCode::AlreadyExists)
        }
        StoreError::HasChildren(_) => {
            Reply::no("Mailbox has inferior mailboxes").code(ResponseCode::HasChildren)
        }
        StoreError::InvalidName(why) => {
            Reply::no(format!("Invalid mailbox name: {why}")).code(ResponseCode::Cannot)
        }
        StoreError::NotAllowed(why) => {
            Reply::no(format!("Not allowed: {why}")).code(ResponseCode::Cannot)
        }
        StoreError::OverQuota(why) => {
            Reply::no(format!("Over quota: {why}")).code(ResponseCode::OverQuota)
        }
        StoreError::TooBig { size, limit } => Reply::no(format!(
            "Message too big: {size} bytes, limit {limit} bytes"
        ))
        .code(ResponseCode::TooBig),
        StoreError::Limit(why) => {
            Reply::no(format!("Limit reached: {why}")).code(ResponseCode::Limit)
        }
        StoreError::InvalidFlag(f) => {
            Reply::no(format!("Invalid flag or keyword: {f}")).code(ResponseCode::Cannot)
        }
        StoreError::Expunged(_) => {
            Reply::no("Message has been expunged").code(ResponseCode::ExpungeIssued)
        }
        StoreError::Corrupt { user, what } => {
            tracing::error!(user = %user, what = %what, "IMAP: corrupt data in store");
            Reply::no("Stored data is damaged; it was not sent").code(ResponseCode::Corruption)
        }
        other if other.is_temporary() => {
            tracing::error!(cause = %other, "IMAP: store failure");
            Reply::no("Temporary failure, please try again").code(ResponseCode::Unavailable)
        }
        other => {
            tracing::error!(cause = %other, "IMAP: unexpected store error");
            Reply::no("Internal error").code(ResponseCode::ServerBug)
        }
    }
}

/// Extensions the client has enabled (RFC 5161, RFC 7162, RFC 9051).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub rev2: bool,
}

/// A logged-in user.
#[derive(Debug)]
pub(crate) struct Login {
    pub store: Arc<User>,
    pub registration: Registration,
}

/// One IMAP connection's state (see the module documentation).
#[derive(Debug)]
pub struct Session {
    pub(crate) ctx: Arc<Context>,
    pub(crate) tls: bool,
    pub(crate) starttls_offered: bool,
    pub(crate) compressed: bool,
    pub(crate) state: State,
    pub(crate) login: Option<Login>,
    pub(crate) view: Option<View>,
    pub(crate) enabled: Enabled,
    pub(crate) bad_in_row: u32,
    pub(crate) failed_logins: u32,
    /// The client's address, when the transport knows it (the key of
    /// the cross-connection failed-login throttle).
    pub(crate) peer: Option<IpAddr>,
    /// AUTHENTICATE waiting for its client data.
    pub(crate) auth_tag: Option<Tag>,
    /// IDLE in progress.
    pub(crate) idle_tag: Option<Tag>,
    /// (UID, MODSEQ) of flag changes this command already reported.
    pub(crate) reported: Vec<(u32, u64)>,
}

impl Session {
    /// A session on a new connection. `tls`: the connection is already
    /// encrypted (implicit TLS); `starttls_offered`: STARTTLS can be used.
    pub fn new(ctx: Arc<Context>, tls: bool, starttls_offered: bool) -> Session {
        Session {
            ctx,
            tls,
            starttls_offered,
            compressed: false,
            state: State::NotAuthenticated,
            login: None,
            view: None,
            enabled: Enabled::default(),
            bad_in_row: 0,
            failed_logins: 0,
            peer: None,
            auth_tag: None,
            idle_tag: None,
            reported: Vec::new(),
        }
    }

    /// The client's address (for the failed-login throttle).
    pub fn set_peer(&mut self, ip: IpAddr) {
        self.peer = Some(ip);
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The logged-in user's name.
    pub fn user_name(&self) -> Option<&str> {
        self.login.as_ref().map(|l| l.store.name())
    }

    /// A receiver that changes whenever the logged-in user's data changes.
    pub fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.login.as_ref().map(|l| l.registration.changes())
    }

    /// A receiver that changes on every removal notice of the logged-in
    /// user (see [`crate::Hub`]); the shell answers it with
    /// [`Session::account_check`].
    pub fn removals(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.login.as_ref().map(|l| l.registration.removals())
    }

    /// Whether the logged-in user's account is still the one this session
    /// logged in to. `false` once it was deleted (as the last step of moving
    /// the user to another store) or replaced by a new account of the same
    /// name; a store error counts as still there (the commands report it).
    fn account_present(&self) -> bool {
        let Some(login) = &self.login else {
            return true;
        };
        match self.ctx.slot.account(login.store.name()) {
            Ok(Some(a)) => a.user_id == login.store.user_id(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(user = login.store.name(), cause = %e, "IMAP: cannot read the account");
                true
            }
        }
    }

    /// `* BYE [UNAVAILABLE]` for a session whose account is gone.
    fn bye_account_gone(&mut self, out: &mut Out) -> Outcome {
        if let Some(login) = &self.login {
            tracing::info!(
                user = login.store.name(),
                "IMAP: account gone, ending the session"
            );
        }
        self.idle_tag = None;
        self.auth_tag = None;
        write_status(
            out,
            None,
            StatusKind::Bye,
            Some(&ResponseCode::Unavailable),
            ACCOUNT_GONE_TEXT,
        );
        self.logout_state();
        out.boundary();
        Outcome::of(Action::Close)
    }

    /// After a removal notice: if the logged-in user's account is gone,
    /// write `* BYE [UNAVAILABLE] ...` and return [`Action::Close`] (any
    /// command or IDLE in progress ends with it, untagged); otherwise
    /// [`Action::None`] and nothing is written. The shell calls it when
    /// [`Session::removals`] changes, between commands and during IDLE;
    /// commands check by themselves.
    pub fn account_check(&mut self, out: &mut Out) -> Outcome {
        if let Some(login) = self.login.as_mut() {
            login.registration.removal_noticed();
        }
        if self.account_present() {
            return Outcome::of(Action::None);
        }
        self.bye_account_gone(out)
    }

    /// A removal notice not handled yet, and the account is gone (checked
    /// at a command's start and on IDLE wake-ups).
    fn removal_confirmed(&mut self) -> bool {
        let noticed = self
            .login
            .as_mut()
            .is_some_and(|l| l.registration.removal_noticed());
        noticed && !self.account_present()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.starttls_offered = false;
    }

    /// Mailbox-name encoding on the wire (UTF-8 once IMAP4rev2 is enabled).
    pub(crate) fn encoding(&self) -> MailboxEncoding {
        if self.enabled.rev2 {
            MailboxEncoding::Utf8
        } else {
            MailboxEncoding::ModifiedUtf7
        }
    }

    pub(crate) fn config(&self) -> &ImapConfig {
        &self.ctx.config
    }

    /// Whether plaintext credentials may be sent now.
    pub(crate) fn plaintext_auth_allowed(&self) -> bool {
        self.tls || self.ctx.config.allow_plaintext_auth
    }

    /// The capabilities for the current state.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "ID", "ENABLE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.state == State::NotAuthenticated {
            if self.starttls_offered && !self.tls {
                caps.push("STARTTLS".into());
            }
            if self.plaintext_auth_allowed() {
                caps.push("AUTH=PLAIN".into());
                caps.push("SASL-IR".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
            return caps;
        }
        for c in [
            "IDLE",
            "UIDPLUS",
            "MULTIAPPEND",
            "BINARY",
            "SEARCHRES",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "NAMESPACE",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "CHILDREN",
            "UNSELECT",
            "ESEARCH",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
            "STATUS=SIZE",
        ] {
            caps.push(c.into());
        }
        caps.push(format!("APPENDLIMIT={}", self.append_limit()));
        if !self.compressed {
            caps.push("COMPRESS=DEFLATE".into());
        }
        caps
    }

    /// The largest message APPEND accepts, in bytes.
    pub(crate) fn append_limit(&self) -> u64 {
        self.ctx
            .config
            .limits
            .literal_bytes_max
            .min(self.ctx.slot.limits().message_size_max)
    }

    /// The greeting, `* OK [CAPABILITY ...] ...`.
    pub fn greeting(&self, out: &mut Out) {
        let code = ResponseCode::Capability(self.capabilities());
        let text = format!("{} slotmail IMAP ready", self.ctx.config.hostname);
        write_status(out, None, StatusKind::Ok, Some(&code), &text);
    }

    /// `* BYE text`, and the session is over (shutdown, autologout).
    pub fn bye(&mut self, text: &str, out: &mut Out) {
        write_status(out, None, StatusKind::Bye, None, text);
        self.logout_state();
    }

    pub(crate) fn logout_state(&mut self) {
        self.state = State::Logout;
        self.view = None;
        self.login = None;
    }

    /// Whether a literal of `size` bytes may be received now. `Err` holds the
    /// refusal to send (the caller rejects the literal in the framer).
    pub fn check_literal(&self, tag: Option<&Tag>, size: u64) -> Result<(), Vec<u8>> {
        if self.state == State::NotAuthenticated
            && size > self.ctx.config.limits.preauth_literal_bytes_max
        {
            let mut out = Vec::new();
            let text = format!(
                "Literal too large before login (limit {} bytes)",
                self.ctx.config.limits.preauth_literal_bytes_max
            );
            write_status(
                &mut out,
                tag,
                StatusKind::No,
                Some(&ResponseCode::TooBig),
                &text,
            );
            return Err(out);
        }
        let limit = self.append_limit();
        if size > limit {
            let mut out = Vec::new();
            let text = format!("Literal too large (limit {limit} bytes)");
            write_status(
                &mut out,
                tag,
                StatusKind::No,
                Some(&ResponseCode::TooBig),
                &text,
            );
            return Err(out);
        }
        Ok(())
    }

    /// A framing error from the framer: answer it and count it.
    pub fn framing_error(&mut self, err: &FramingError, out: &mut Out) -> Outcome {
        out.extend_from_slice(&err.response());
        if err.is_fatal() {
            self.logout_state();
            return Outcome::of(Action::Close);
        }
        self.count_bad(out)
    }

    fn count_bad(&mut self, out: &mut Out) -> Outcome {
        self.bad_in_row += 1;
        if self.bad_in_row >= self.ctx.config.limits.bad_commands_in_row_max {
            self.bye("Too many invalid commands", out);
            return Outcome::of(Action::Close);
        }
        Outcome::of(Action::None)
    }

    /// Handle one complete command.
    pub fn handle(&mut self, frame: &Frame, out: &mut Out) -> Outcome {
        let opts = ParseOptions {
            encoding: self.encoding(),
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        };
        match parse_command_with(frame, &opts) {
            Ok(cmd) => self.execute(cmd, out),
            Err(e) => {
                out.extend_from_slice(&e.response());
                self.count_bad(out)
            }
        }
    }

    /// Execute a parsed command.
    pub fn execute(&mut self, cmd: Command, out: &mut Out) -> Outcome {
        self.reported.clear();
        if self.removal_confirmed() {
            return self.bye_account_gone(out);
        }
        let Command { tag, body } = cmd;
        let expunge_ok = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let name = body.name();
        let reply = match self.run(&tag, body, out) {
            Ok(r) | Err(r) => r,
        };
        tracing::debug!(command = name, status = reply.kind.as_str(), "IMAP command");
        self.finish(&tag, reply, expunge_ok, out)
    }

    /// Report changes, write the tagged reply and count errors.
    pub(crate) fn finish(
        &mut self,
        tag: &Tag,
        reply: Reply,
        expunge_ok: bool,
        out: &mut Out,
    ) -> Outcome {
        if reply.sync
            && self.state == State::Selected
            && let Err(gone) = self.sync(out, expunge_ok)
        {
            self.bye(&gone, out);
            return Outcome::of(Action::Close);
        }
        if reply.tagged {
            write_status(out, Some(tag), reply.kind, reply.code.as_ref(), &reply.text);
        }
        if let Some(text) = reply.bye {
            self.bye(text, out);
        }
        out.boundary();
        if reply.kind == StatusKind::Bad {
            let outcome = self.count_bad(out);
            if outcome.action == Action::Close {
                return outcome;
            }
        } else if reply.tagged {
            self.bad_in_row = 0;
        }
        Outcome {
            action: reply.action,
            delay: reply.delay,
        }
    }

    fn run(&mut self, tag: &Tag, body: CommandBody, out: &mut Out) -> Res {
        use CommandBody as C;
        match body {
            C::Capability => {
                let mut line = b"* CAPABILITY".to_vec();
                for c in self.capabilities() {
                    line.push(b' ');
                    line.extend_from_slice(c.as_bytes());
                }
                line.extend_from_slice(b"\r\n");
                out.extend_from_slice(&line);
                Ok(Reply::ok("CAPABILITY completed"))
            }
            C::Noop => Ok(Reply::ok("NOOP completed")),
            C::Logout => {
                write_status(out, None, StatusKind::Bye, None, "Logging out");
                self.logout_state();
                Ok(Reply::ok("LOGOUT completed")
                    .then(Action::Close)
                    .without_sync())
            }
            C::Id { params } => Ok(self.id(params, out)),
            C::StartTls => self.starttls(),
            C::Authenticate {
                mechanism,
                initial_response,
            } => self.authenticate(tag, &mechanism, initial_response.as_deref(), out),
            C::Login { username, password } => self.login(&username, &password),
            C::Compress { mechanism } => {
                self.require_auth()?;
                self.compress(&mechanism)
            }
            C::Enable { capabilities } => {
                self.require_auth()?;
                self.enable(&capabilities, out)
            }
            C::Select { mailbox, params } => {
                self.require_auth()?;
                self.select(mailbox.as_str(), &params, false, out)
            }
            C::Examine { mailbox, params } => {
                self.require_auth()?;
                self.select(mailbox.as_str(), &params, true, out)
            }
            C::Create {
                mailbox,
                special_use,
            } => {
                self.require_auth()?;
                self.create(mailbox.as_str(), &special_use)
            }
            C::Delete { mailbox } => {
                self.require_auth()?;
                self.delete(mailbox.as_str())
            }
            C::Rename { from, to } => {
                self.require_auth()?;
                self.rename(from.as_str(), to.as_str())
            }
            C::Subscribe { mailbox } => {
                self.require_auth()?;
                self.subscribe(mailbox.as_str(), true)
            }
            C::Unsubscribe { mailbox } => {
                self.require_auth()?;
                self.subscribe(mailbox.as_str(), false)
            }
            C::List(cmd) => {
                self.require_auth()?;
                self.list(&cmd, out)
            }
            C::Lsub { reference, pattern } => {
                self.require_auth()?;
                self.lsub(&reference, &pattern, out)
            }
            C::Namespace => {
                self.require_auth()?;
                out.extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                Ok(Reply::ok("NAMESPACE completed"))
            }
            C::Status { mailbox, items } => {
                self.require_auth()?;
                self.status(&mailbox, &items, out)
            }
            C::Append { mailbox, messages } => {
                self.require_auth()?;
                self.append(mailbox.as_str(), messages)
            }
            C::Idle => {
                self.require_auth()?;
                self.idle(tag, out)
            }
            C::GetQuota { root } => {
                self.require_auth()?;
                self.get_quota(&root, out)
            }
            C::GetQuotaRoot { mailbox } => {
                self.require_auth()?;
                self.get_quota_root(&mailbox, out)
            }
            C::Check => {
                self.require_selected()?;
                Ok(Reply::ok("CHECK completed"))
            }
            C::Close => {
                self.require_selected()?;
                self.close(true)
            }
            C::Unselect => {
                self.require_selected()?;
                self.close(false)
            }
            C::Expunge => {
                self.require_selected()?;
                self.expunge(None, out)
            }
            C::UidExpunge { uids } => {
                self.require_selected()?;
                self.expunge(Some(&uids), out)
            }
            C::Search {
                uid,
                charset,
                criteria,
                return_opts,
            } => {
                self.require_selected()?;
                self.search(
                    tag,
                    uid,
                    charset.as_deref(),
                    &criteria,
                    return_opts.as_deref(),
                    out,
                )
            }
            C::Fetch {
                uid,
                set,
                attrs,
                modifiers,
            } => {
                self.require_selected()?;
                self.fetch(uid, &set, &attrs, &modifiers, out)
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                self.require_selected()?;
                self.store(uid, &set, unchanged_since, mode, silent, &flags, out)
            }
            C::Copy { uid, set, mailbox } => {
                self.require_selected()?;
                self.copy(uid, &set, mailbox.as_str(), false, out)
            }
            C::Move { uid, set, mailbox } => {
                self.require_selected()?;
                self.copy(uid, &set, mailbox.as_str(), true, out)
            }
        }
    }

    pub(crate) fn require_auth(&self) -> Result<(), Reply> {
        match self.state {
            State::Authenticated | State::Selected => Ok(()),
            State::NotAuthenticated => Err(Reply::bad("Log in first")),
            State::Logout => Err(Reply::bad("Logging out")),
        }
    }

    pub(crate) fn require_selected(&self) -> Result<(), Reply> {
        match self.state {
            State::Selected => Ok(()),
            State::Authenticated => Err(Reply::bad("No mailbox selected")),
            State::NotAuthenticated => Err(Reply::bad("Log in first")),
            State::Logout => Err(Reply::bad("Logging out")),
        }
    }

    /// The logged-in user's store.
    pub(crate) fn user(&self) -> Result<Arc<User>, Reply> {
        self.login
            .as_ref()
            .map(|l| l.store.clone())
            .ok_or_else(|| Reply::bad("Log in first"))
    }

    /// The one check every write passes: a replica refuses client writes.
    pub(crate) fn writable(&self) -> Result<(), Reply> {
        if self.ctx.config.read_only.is_read_only() {
            return Err(
                Reply::no("This server does not accept changes at the moment (replica)")
                    .code(ResponseCode::Unavailable),
            );
        }
        if let Some(login) = &self.login
            && self.ctx.config.read_only.is_frozen(login.store.name())
        {
            return Err(Reply::no(
                "Your mailbox is being moved and accepts no changes for a moment; try again",
            )
            .code(ResponseCode::Unavailable));
        }
        Ok(())
    }

    /// The selected view, mutable.
    pub(crate) fn view_mut(&mut self) -> Result<&mut View, Reply> {
        self.view
            .as_mut()
            .ok_or_else(|| Reply::bad("No mailbox selected"))
    }

    /// The selected view.
    pub(crate) fn view(&self) -> Result<&View, Reply> {
        self.view
            .as_ref()
            .ok_or_else(|| Reply::bad("No mailbox selected"))
    }

    /// IDLE: `+ idling`, then wait (the shell calls `idle_poll`/`idle_done`).
    fn idle(&mut self, tag: &Tag, out: &mut Out) -> Res {
        write_continuation(out, "idling");
        self.idle_tag = Some(tag.clone());
        if self.state == State::Selected
            && let Err(gone) = self.sync(out, true)
        {
            self.idle_tag = None;
            self.bye(&gone, out);
            return Ok(Reply::continuation(Action::Close));
        }
        out.boundary();
        Ok(Reply::continuation(Action::Idle))
    }

    /// During IDLE: report what changed. Returns `Action::Close` if the
    /// selected mailbox or the user's account disappeared.
    pub fn idle_poll(&mut self, out: &mut Out) -> Outcome {
        if self.removal_confirmed() {
            return self.bye_account_gone(out);
        }
        if self.state == State::Selected
            && let Err(gone) = self.sync(out, true)
        {
            self.bye(&gone, out);
            return Outcome::of(Action::Close);
        }
        Outcome::of(Action::Idle)
    }

    /// The line that ended IDLE.
    pub fn idle_done(&mut self, line: &[u8], out: &mut Out) -> Outcome {
        let Some(tag) = self.idle_tag.take() else {
            return Outcome::of(Action::None);
        };
        self.reported.clear();
        let reply = if line.eq_ignore_ascii_case(b"DONE") {
            Reply::ok("IDLE terminated")
        } else {
            Reply::bad("Expected DONE to end IDLE")
        };
        self.finish(&tag, reply, true, out)
    }

    /// Whether IDLE is in progress.
    pub fn idling(&self) -> bool {
        self.idle_tag.is_some()
    }
}

/// The text of the BYE that ends a session whose account is gone.
pub const ACCOUNT_GONE_TEXT: &str =
    "Your mailbox is no longer served here (deleted or moved to another server); please reconnect";

/// Text of a client string for logs and replies (lossy).
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
