//! The [`Client`] and its command engine: connecting, reading the
//! greeting, tagging and sending commands (waiting for `+` before each
//! synchronizing literal), routing untagged responses to the running
//! command or the unsolicited queue, and turning the tagged status into a
//! result.
//!
//! The command methods themselves live in `commands.rs` and `idle.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use slotmail_imap_proto::{
    Command, CommandBody, Data, EncodeOptions, LiteralMode, MailboxEncoding, Response,
    ResponseCode, StatusKind, Tag,
};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::error::{Error, Result, escape_bytes};
use crate::options::ClientOptions;
use crate::transport::{Incoming, Transport};
use crate::types::{Selected, SessionState, set_len};

/// Receives each untagged response of a running command; returns it back
/// when the command does not want it (it then goes to the unsolicited
/// queue).
pub(crate) type Handler<'a> = &'a mut (dyn FnMut(Response) -> Option<Response> + Send);

/// Answers a continuation request the command engine does not handle
/// itself (AUTHENTICATE): the bytes to send, CRLF included.
pub(crate) type ContinuationFn<'a> = &'a mut (dyn FnMut(&str) -> Vec<u8> + Send);

/// A tagged status response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) kind: StatusKind,
    pub(crate) code: Option<ResponseCode>,
    pub(crate) text: String,
}

impl Completion {
    /// `Ok` for OK, the matching error for NO and BAD.
    pub(crate) fn into_result(self) -> Result<Completion> {
        match self.kind {
            StatusKind::No => Err(Error::No {
                code: self.code,
                text: self.text,
            }),
            StatusKind::Bad => Err(Error::Bad {
                code: self.code,
                text: self.text,
            }),
            _ => Ok(self),
        }
    }
}

/// Where reading for a command stopped.
pub(crate) enum Step {
    /// A `+` continuation request with its text.
    Continuation(String),
    /// The command's tagged response.
    Tagged(Completion),
}

/// An async IMAP client over one connection.
///
/// Commands run one at a time (`&mut self`). Untagged responses that the
/// running command does not consume (EXISTS, EXPUNGE, flag updates from
/// other sessions, alerts) are queued and returned by
/// [`Client::take_unsolicited`], [`Client::noop`] and the IDLE calls.
pub struct Client {
    pub(crate) transport: Transport,
    pub(crate) opts: ClientOptions,
    tag_counter: u32,
    pub(crate) capabilities: Vec<String>,
    /// Set when a CAPABILITY response arrives (to skip a refresh after
    /// authentication).
    pub(crate) capabilities_seen: bool,
    pub(crate) state: SessionState,
    pub(crate) enabled: Vec<String>,
    pub(crate) encoding: MailboxEncoding,
    pub(crate) selected: Option<Selected>,
    unsolicited: VecDeque<Response>,
    unsolicited_dropped: u64,
    /// Tag of the IDLE in progress.
    pub(crate) idle_tag: Option<Tag>,
    /// The tagged response that ended IDLE before DONE was sent.
    pub(crate) idle_ended: Option<Completion>,
    broken: Option<String>,
    bye: Option<(Option<ResponseCode>, String)>,
    /// The first unparsable response of the running command.
    pending_protocol_error: Option<Error>,
    greeting: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("selected", &self.selected)
            .field("tls", &self.transport.is_tls())
            .field("compressed", &self.transport.is_compressed())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

async fn tcp_connect(addr: impl ToSocketAddrs, opts: &ClientOptions) -> Result<TcpStream> {
    let tcp = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout {
            operation: "connect",
            limit: opts.connect_timeout,
        })??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

pub(crate) fn server_name(name: &str) -> Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| Error::InvalidRequest(format!("TLS server name {name:?}: {e}")))
}

impl Client {
    /// Connects in plaintext and reads the greeting (and the capabilities,
    /// asking for them if the greeting does not carry them).
    pub async fn connect(addr: impl ToSocketAddrs, options: ClientOptions) -> Result<Client> {
        let tcp = tcp_connect(addr, &options).await?;
        let transport = Transport::plain(
            tcp,
            options.response_limits.clone(),
            options.io_timeout,
            options.read_chunk_bytes,
        );
        Client::start(transport, options).await
    }

    /// Connects with implicit TLS (port 993 style), verifying the server
    /// as `server_name` with `config`, and reads the greeting.
    pub async fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        options: ClientOptions,
    ) -> Result<Client> {
        let name = self::server_name(server_name)?;
        let tcp = tcp_connect(addr, &options).await?;
        let mut transport = Transport::plain(
            tcp,
            options.response_limits.clone(),
            options.io_timeout,
            options.read_chunk_bytes,
        );
        transport.begin("TLS handshake", options.connect_timeout);
        transport.start_tls(name, config).await?;
        Client::start(transport, options).await
    }

    async fn start(transport: Transport, opts: ClientOptions) -> Result<Client> {
        let mut c = Client {
            transport,
            opts,
            tag_counter: 0,
            capabilities: Vec::new(),
            capabilities_seen: false,
            state: SessionState::NotAuthenticated,
            enabled: Vec::new(),
            encoding: MailboxEncoding::ModifiedUtf7,
            selected: None,
            unsolicited: VecDeque::new(),
            unsolicited_dropped: 0,
            idle_tag: None,
            idle_ended: None,
            broken: None,
            bye: None,
            pending_protocol_error: None,
            greeting: String::new(),
        };
        c.transport.begin("greeting", c.opts.connect_timeout);
        let (kind, code, text) = match c.transport.next().await? {
            Incoming::Response(Response::Status {
                tag: None,
                kind,
                code,
                text,
            }) if matches!(kind, StatusKind::Ok | StatusKind::PreAuth | StatusKind::Bye) => {
                (kind, code, text)
            }
            Incoming::Response(other) => {
                let mut line = Vec::new();
                other.encode(&mut line);
                return Err(Error::Protocol(format!(
                    "expected a greeting, got {}",
                    escape_bytes(&line)
                )));
            }
            Incoming::Unparsed { message, line } => {
                return Err(Error::Protocol(format!(
                    "greeting: {message}: {}",
                    escape_bytes(&line)
                )));
            }
            Incoming::Eof => {
                return Err(Error::Closed {
                    code: None,
                    text: "the server closed the connection before its greeting".into(),
                });
            }
        };
        match kind {
            StatusKind::Bye => return Err(Error::Closed { code, text }),
            StatusKind::PreAuth => c.state = SessionState::Authenticated,
            _ => {}
        }
        c.greeting = text;
        match code {
            Some(ResponseCode::Capability(caps)) => c.capabilities = caps,
            _ => {
                c.refresh_capabilities().await?;
            }
        }
        tracing::debug!(
            state = ?c.state,
            capabilities = %c.capabilities.join(" "),
            "IMAP session started"
        );
        Ok(c)
    }

    /// The greeting's text.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The capabilities last announced by the server.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether the server announced `cap` (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Extensions turned on by ENABLE, as the server named them.
    pub fn enabled(&self) -> &[String] {
        &self.enabled
    }

    /// Whether ENABLE turned `ext` on (case-insensitive).
    pub fn is_enabled(&self, ext: &str) -> bool {
        self.enabled.iter().any(|c| c.eq_ignore_ascii_case(ext))
    }

    /// The session state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The selected mailbox, with its message count kept current.
    pub fn selected(&self) -> Option<&Selected> {
        self.selected.as_ref()
    }

    /// Whether commands can still be sent (no earlier error broke the
    /// connection).
    pub fn is_usable(&self) -> bool {
        self.broken.is_none()
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// Whether COMPRESS=DEFLATE is active.
    pub fn is_compressed(&self) -> bool {
        self.transport.is_compressed()
    }

    /// The options this client was created with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Removes and returns the queued unsolicited responses.
    pub fn take_unsolicited(&mut self) -> Vec<Response> {
        self.unsolicited.drain(..).collect()
    }

    /// How many unsolicited responses were dropped because the queue was
    /// full ([`ClientOptions::max_unsolicited_responses`]).
    pub fn unsolicited_dropped(&self) -> u64 {
        self.unsolicited_dropped
    }

    /// Fails when no command may be sent now.
    pub(crate) fn ready(&self) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(Error::Broken(reason.clone()));
        }
        if self.idle_tag.is_some() {
            return Err(Error::InvalidRequest(
                "IDLE is in progress; call idle_done first".into(),
            ));
        }
        Ok(())
    }

    /// Records an error that leaves the connection unusable.
    pub(crate) fn note(&mut self, e: &Error) {
        if e.breaks_connection() && self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
    }

    /// Marks the connection unusable and returns `e`.
    pub(crate) fn fatal(&mut self, e: Error) -> Error {
        if self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
        e
    }

    /// A fresh tag.
    pub(crate) fn next_tag(&mut self) -> Tag {
        self.tag_counter = self.tag_counter.wrapping_add(1);
        Tag::new(&format!("A{:04}", self.tag_counter)).expect("A<digits> is a valid tag")
    }

    /// The literal form the server accepts.
    fn literal_mode(&self) -> LiteralMode {
        if self.has_capability("LITERAL+") {
            LiteralMode::NonSync
        } else if self.has_capability("LITERAL-") || self.has_capability("IMAP4rev2") {
            LiteralMode::LiteralMinus
        } else {
            LiteralMode::Sync
        }
    }

    /// Tags and encodes a command, split at synchronizing literals.
    pub(crate) fn encode(&mut self, body: CommandBody) -> (Tag, Vec<Vec<u8>>) {
        let tag = self.next_tag();
        let opts = EncodeOptions {
            literal_mode: self.literal_mode(),
            encoding: self.encoding,
        };
        let cmd = Command {
            tag: tag.clone(),
            body,
        };
        (tag, cmd.encode_with(&opts).chunks)
    }

    /// Runs a command; NO and BAD become errors.
    pub(crate) async fn run(
        &mut self,
        body: CommandBody,
        handler: Handler<'_>,
    ) -> Result<Completion> {
        self.ready()?;
        let name = body.name();
        let (tag, chunks) = self.encode(body);
        self.exchange(name, &tag, chunks, handler, None)
            .await?
            .into_result()
    }

    /// Runs a command whose untagged responses all go to the queue.
    pub(crate) async fn run_simple(&mut self, body: CommandBody) -> Result<Completion> {
        self.run(body, &mut Some).await
    }

    /// Sends `chunks` (waiting for `+` between them) and reads up to the
    /// tagged response, which is returned whatever its kind.
    pub(crate) async fn exchange(
        &mut self,
        name: &'static str,
        tag: &Tag,
        chunks: Vec<Vec<u8>>,
        handler: Handler<'_>,
        continuation: Option<ContinuationFn<'_>>,
    ) -> Result<Completion> {
        self.transport.begin(name, self.opts.command_timeout);
        self.pending_protocol_error = None;
        tracing::debug!(tag = %tag, command = name, "IMAP command");
        let r = self
            .exchange_inner(tag, chunks, handler, continuation)
            .await;
        let r = match (r, self.pending_protocol_error.take()) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        };
        if let Err(e) = &r {
            self.note(e);
            tracing::debug!(tag = %tag, command = name, error = %e, "IMAP command failed");
        }
        r
    }

    async fn exchange_inner(
        &mut self,
        tag: &Tag,
        chunks: Vec<Vec<u8>>,
        handler: Handler<'_>,
        mut continuation: Option<ContinuationFn<'_>>,
    ) -> Result<Completion> {
        let mut chunks = chunks.into_iter();
        if let Some(first) = chunks.next() {
            self.transport.send(&first).await?;
        }
        for chunk in chunks {
            match self.receive(tag, handler).await? {
                Step::Continuation(_) => self.transport.send(&chunk).await?,
                // The server refused the literal.
                Step::Tagged(c) => return Ok(c),
            }
        }
        loop {
            match self.receive(tag, handler).await? {
                Step::Tagged(c) => return Ok(c),
                Step::Continuation(text) => match continuation.as_deref_mut() {
                    Some(answer) => {
                        let data = answer(&text);
                        self.transport.send(&data).await?;
                    }
                    None => {
                        return Err(self.fatal(Error::Protocol(format!(
                            "unexpected continuation request: + {}",
                            escape_bytes(text.as_bytes())
                        ))));
                    }
                },
            }
        }
    }

    /// Reads until a continuation request or the tagged response of `tag`,
    /// dispatching untagged responses on the way.
    pub(crate) async fn receive(&mut self, tag: &Tag, handler: Handler<'_>) -> Result<Step> {
        loop {
            let incoming = self.transport.next().await?;
            if let Some(step) = self.absorb(incoming, tag, handler)? {
                return Ok(step);
            }
        }
    }

    /// Handles one incoming item for the command tagged `tag`; `Some` when
    /// reading for it should stop.
    pub(crate) fn absorb(
        &mut self,
        incoming: Incoming,
        tag: &Tag,
        handler: Handler<'_>,
    ) -> Result<Option<Step>> {
        match incoming {
            Incoming::Eof => Err(self.closed_error()),
            Incoming::Unparsed { message, line } => {
                let err = Error::Protocol(format!("{message}: {}", escape_bytes(&line)));
                tracing::warn!(error = %err, "unparsable IMAP response");
                let mut prefix = tag.as_str().as_bytes().to_vec();
                prefix.push(b' ');
                if line.starts_with(&prefix) {
                    // Our tagged response, garbled: the command is over.
                    self.pending_protocol_error = None;
                    return Err(err);
                }
                if self.pending_protocol_error.is_none() {
                    self.pending_protocol_error = Some(err);
                }
                Ok(None)
            }
            Incoming::Response(Response::Continuation { text }) => {
                Ok(Some(Step::Continuation(text)))
            }
            Incoming::Response(Response::Status {
                tag: Some(t),
                kind,
                code,
                text,
            }) => {
                if &t != tag {
                    return Err(self.fatal(Error::Protocol(format!(
                        "tagged response for {t}, expected {tag}: {}",
                        escape_bytes(text.as_bytes())
                    ))));
                }
                if let Some(ResponseCode::Capability(caps)) = &code {
                    self.capabilities = caps.clone();
                    self.capabilities_seen = true;
                }
                Ok(Some(Step::Tagged(Completion { kind, code, text })))
            }
            Incoming::Response(r) => {
                self.dispatch(r, handler);
                Ok(None)
            }
        }
    }

    /// The error for a connection the server closed.
    fn closed_error(&mut self) -> Error {
        let e = match &self.bye {
            Some((code, text)) => Error::Closed {
                code: code.clone(),
                text: text.clone(),
            },
            None => Error::Closed {
                code: None,
                text: "the server closed the connection without BYE".into(),
            },
        };
        self.fatal(e)
    }

    /// Whether the server said BYE.
    pub(crate) fn said_bye(&self) -> bool {
        self.bye.is_some()
    }

    /// Common bookkeeping for an untagged response, then the handler; what
    /// the handler returns is queued.
    fn dispatch(&mut self, r: Response, handler: Handler<'_>) {
        match &r {
            Response::Status {
                kind: StatusKind::Bye,
                code,
                text,
                ..
            } => {
                tracing::debug!(code = ?code, text = %text, "server said BYE");
                self.bye = Some((code.clone(), text.clone()));
            }
            Response::Status {
                code: Some(ResponseCode::Capability(caps)),
                ..
            }
            | Response::Data(Data::Capability(caps)) => {
                self.capabilities = caps.clone();
                self.capabilities_seen = true;
            }
            Response::Data(Data::Exists(n)) => {
                if let Some(s) = &mut self.selected {
                    s.exists = *n;
                }
            }
            Response::Data(Data::Expunge(_)) => {
                if let Some(s) = &mut self.selected {
                    s.exists = s.exists.saturating_sub(1);
                }
            }
            Response::Data(Data::Vanished {
                earlier: false,
                uids,
            }) => {
                if let Some(s) = &mut self.selected {
                    let gone = u32::try_from(set_len(uids)).unwrap_or(u32::MAX);
                    s.exists = s.exists.saturating_sub(gone);
                }
            }
            _ => {}
        }
        if let Some(r) = handler(r) {
            let routine = matches!(
                r,
                Response::Status {
                    kind: StatusKind::Bye,
                    ..
                } | Response::Data(Data::Capability(_))
            );
            if !routine {
                self.queue(r);
            }
        }
    }

    /// Adds to the unsolicited queue, dropping the oldest when full.
    pub(crate) fn queue(&mut self, r: Response) {
        if self.opts.max_unsolicited_responses == 0 {
            self.unsolicited_dropped += 1;
            return;
        }
        while self.unsolicited.len() >= self.opts.max_unsolicited_responses {
            self.unsolicited.pop_front();
            self.unsolicited_dropped += 1;
        }
        self.unsolicited.push_back(r);
    }

    /// Takes the protocol error recorded by [`Client::absorb`] for a
    /// response that could not be parsed, if any.
    pub(crate) fn take_protocol_error(&mut self) -> Option<Error> {
        self.pending_protocol_error.take()
    }

    /// Whether unsolicited responses are waiting.
    pub(crate) fn has_unsolicited(&self) -> bool {
        !self.unsolicited.is_empty()
    }

    /// Asks for the capabilities again.
    pub async fn refresh_capabilities(&mut self) -> Result<&[String]> {
        self.capabilities_seen = false;
        self.run_simple(CommandBody::Capability).await?;
        if !self.capabilities_seen {
            return Err(Error::Protocol(
                "CAPABILITY completed without a CAPABILITY response".into(),
            ));
        }
        Ok(&self.capabilities)
    }

    /// Sends a command line as given (the tag is added in front and CRLF
    /// at the end) and returns the tagged status whatever it is, with all
    /// untagged responses. `{n}` literal markers in `line` split it: the
    /// rest is sent after the server's `+`. For tests; the client does not
    /// track state changes made this way (SELECT, ENABLE, COMPRESS...).
    pub async fn command_raw(&mut self, line: &str) -> Result<crate::RawResponse> {
        self.ready()?;
        let tag = self.next_tag();
        let mut bytes = format!("{tag} ").into_bytes();
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let chunks = split_at_sync_literals(&bytes);
        let mut untagged = Vec::new();
        let c = self
            .exchange(
                "raw command",
                &tag,
                chunks,
                &mut |r| {
                    untagged.push(r);
                    None
                },
                None,
            )
            .await?;
        Ok(crate::RawResponse {
            kind: c.kind,
            code: c.code,
            text: c.text,
            untagged,
        })
    }
}

/// Splits raw command bytes after each synchronizing literal marker
/// (`{n}\r\n` or `~{n}\r\n`), skipping the literal data itself.
pub(crate) fn split_at_sync_literals(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = i + 1 + digits;
            if digits > 0 && bytes[end..].starts_with(b"}\r\n") {
                let n: usize = std::str::from_utf8(&bytes[i + 1..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                let data_start = end + 3;
                chunks.push(bytes[start..data_start].to_vec());
                start = data_start;
                i = data_start.saturating_add(n);
                continue;
            }
        }
        i += 1;
    }
    if start < bytes.len() || chunks.is_empty() {
        chunks.push(bytes[start..].to_vec());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_split_at_sync_literals_only() {
        assert_eq!(
            split_at_sync_literals(b"A1 NOOP\r\n"),
            vec![b"A1 NOOP\r\n".to_vec()]
        );
        assert_eq!(
            split_at_sync_literals(b"A1 LOGIN {3}\r\nabc {5}\r\n{1}\r\n\r\n"),
            vec![
                b"A1 LOGIN {3}\r\n".to_vec(),
                b"abc {5}\r\n".to_vec(),
                b"{1}\r\n\r\n".to_vec()
            ]
        );
        assert_eq!(
            split_at_sync_literals(b"A1 APPEND x {3+}\r\nabc ~{2}\r\n\x00a\r\n"),
            vec![
                b"A1 APPEND x {3+}\r\nabc ~{2}\r\n".to_vec(),
                b"\x00a\r\n".to_vec()
            ]
        );
    }
}
