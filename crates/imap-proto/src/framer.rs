//! Command framing: a sans-I/O state machine that cuts the client's byte
//! stream into complete commands (a line plus its literals).
//!
//! The server feeds bytes with [`Framer::feed`] and drains
//! [`Framer::next_event`] until it returns `None`:
//!
//! * [`FramerEvent::LiteralAnnounced`] comes before any literal's bytes. For
//!   a synchronizing literal (`{n}`, `sync: true`) the framer then waits: the
//!   server either calls [`Framer::accept_literal`] and sends `+ Ready`, or
//!   calls [`Framer::reject_literal`] and sends a tagged `NO [TOOBIG]`/`BAD`;
//!   the client then drops the command and nothing needs discarding. A
//!   non-synchronizing literal (`{n+}`, LITERAL+) is announced for
//!   information; the framer goes on reading it unless the server calls
//!   [`Framer::reject_literal`], in which case the literal and the rest of
//!   the command are read and thrown away.
//! * [`FramerEvent::Command`] carries a complete [`Frame`] for
//!   [`crate::parse_command`].
//! * [`FramerEvent::RawLine`] answers [`Framer::expect_raw_line`], for
//!   AUTHENTICATE continuation data and IDLE's `DONE`.
//! * [`FramerEvent::Error`] reports a limit breach. Its [`Recovery`] says
//!   whether the command was discarded and the session goes on (answer
//!   `tag BAD ...`, see [`FramingError::response`]) or the connection must
//!   be closed.
//!
//! Every buffer is bounded by [`Limits`]. Literal forms: `{n}`, `{n+}`
//! (RFC 7888) and `~{n}` / `~{n+}` (literal8, RFC 3516).

use std::fmt;

use crate::limits::{InputOverflow, Limits};
use crate::response::{ResponseCode, StatusKind, write_status};
use crate::types::Tag;

/// Bytes kept from the end of a discarded line to spot a literal marker.
const DISCARD_TAIL_BYTES: usize = 64;
/// Initial capacity reserved for a literal buffer, in bytes; it grows with
/// the data actually received, never with the announced size alone.
const LITERAL_INITIAL_CAPACITY_BYTES: usize = 64 * 1024;

/// A literal of a command, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// The literal's bytes.
    pub data: Vec<u8>,
    /// `{n}` (true) or `{n+}` (false).
    pub sync: bool,
    /// literal8 (`~{n}`).
    pub binary: bool,
}

/// A complete command as received: its lines (CRLF removed) and the
/// literals between them. `lines[i]` ends with the marker of `literals[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    lines: Vec<Vec<u8>>,
    literals: Vec<Literal>,
}

impl Frame {
    pub(crate) fn new_unchecked(lines: Vec<Vec<u8>>, literals: Vec<Literal>) -> Frame {
        Frame { lines, literals }
    }
    /// The lines, without CRLF; always one more than the literals.
    pub fn lines(&self) -> &[Vec<u8>] {
        &self.lines
    }
    /// The literals.
    pub fn literals(&self) -> &[Literal] {
        &self.literals
    }
    /// The tag, if the first word is a valid one.
    pub fn tag(&self) -> Option<Tag> {
        self.lines.first().and_then(|l| tag_of(l, usize::MAX))
    }
    /// Total size of lines and literals in bytes (CRLFs excluded).
    pub fn size_bytes(&self) -> usize {
        self.lines.iter().map(Vec::len).sum::<usize>()
            + self.literals.iter().map(|l| l.data.len()).sum::<usize>()
    }
}

/// What the framer has for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramerEvent {
    /// A complete command.
    Command(Frame),
    /// A literal marker was read; its bytes have not been. For `sync: true`
    /// the framer waits for [`Framer::accept_literal`] or
    /// [`Framer::reject_literal`].
    LiteralAnnounced {
        /// The command's tag, if valid.
        tag: Option<Tag>,
        /// Announced size in bytes (within the limits).
        size: u64,
        /// `{n}`: the client waits for `+` before sending the bytes.
        sync: bool,
        /// literal8 (`~{n}`).
        binary: bool,
    },
    /// The line requested with [`Framer::expect_raw_line`], CRLF removed.
    RawLine(Vec<u8>),
    /// A framing error; see [`FramingError::recovery`].
    Error(FramingError),
}

/// What went wrong while framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingErrorKind {
    /// A line exceeded `max_line_bytes`.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The lines of a command exceeded `max_command_bytes`.
    CommandTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A literal exceeded `max_literal_bytes` (or, non-synchronizing,
    /// `max_non_sync_literal_bytes`).
    LiteralTooLarge {
        /// Announced size (saturated at `u64::MAX`).
        size: u64,
        /// The limit that applied, in bytes.
        limit: u64,
        /// Whether it was a synchronizing literal (the client sent nothing
        /// more and waits for the answer).
        sync: bool,
    },
    /// The literals of one command exceeded `max_command_literal_bytes`.
    CommandLiteralsTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A command had more than `max_literals_per_command` literals.
    TooManyLiterals {
        /// The limit (count).
        limit: usize,
    },
    /// Skipping a rejected command needed more than `max_discard_bytes`.
    DiscardLimitExceeded {
        /// The limit in bytes.
        limit: u64,
    },
}

impl fmt::Display for FramingErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingErrorKind::LineTooLong { limit } => {
                write!(f, "Line too long (limit {limit} bytes)")
            }
            FramingErrorKind::CommandTooLong { limit } => {
                write!(f, "Command too long (limit {limit} bytes)")
            }
            FramingErrorKind::LiteralTooLarge { limit, .. } => {
                write!(f, "Literal too large (limit {limit} bytes)")
            }
            FramingErrorKind::CommandLiteralsTooLarge { limit } => {
                write!(f, "Literals of command too large (limit {limit} bytes)")
            }
            FramingErrorKind::TooManyLiterals { limit } => {
                write!(f, "Too many literals in command (limit {limit})")
            }
            FramingErrorKind::DiscardLimitExceeded { limit } => {
                write!(
                    f,
                    "Too much data after a rejected command (limit {limit} bytes)"
                )
            }
        }
    }
}

/// What the session can do after a [`FramingError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The command was dropped whole; answer it and carry on.
    CommandDiscarded,
    /// The stream cannot be resynchronised: answer (BYE) and close. The
    /// framer yields nothing more.
    CloseConnection,
}

/// A framing error with the command's tag when it was known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FramingError {
    /// The tag of the failed command, if it was read and valid.
    pub tag: Option<Tag>,
    /// What went wrong.
    pub kind: FramingErrorKind,
    /// Whether the session can continue.
    pub recovery: Recovery,
}

impl FramingError {
    /// Whether the connection must be closed.
    pub fn is_fatal(&self) -> bool {
        self.recovery == Recovery::CloseConnection
    }

    /// The response code that fits the error.
    pub fn response_code(&self) -> ResponseCode {
        match self.kind {
            FramingErrorKind::TooManyLiterals { .. } => ResponseCode::Limit,
            _ => ResponseCode::TooBig,
        }
    }

    /// The bytes a server should send: `tag NO [TOOBIG] ...` for a refused
    /// synchronizing literal, `tag BAD [...] ...` (or `* BAD` without a
    /// tag) for a discarded command, and additionally `* BYE ...` when the
    /// connection must be closed.
    pub fn response(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let text = self.kind.to_string();
        let code = self.response_code();
        let status = match self.kind {
            FramingErrorKind::LiteralTooLarge { sync: true, .. } => StatusKind::No,
            _ => StatusKind::Bad,
        };
        if self.tag.is_some() || !self.is_fatal() {
            write_status(&mut out, self.tag.as_ref(), status, Some(&code), &text);
        }
        if self.is_fatal() {
            write_status(&mut out, None, StatusKind::Bye, None, &text);
        }
        out
    }
}

/// A literal marker at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Announced size, saturated at `u64::MAX` on overflow.
    pub size: u64,
    pub sync: bool,
    pub binary: bool,
    /// Offset of `{` (or `~`) in the line.
    pub start: usize,
}

/// Finds `{n}`, `{n+}`, `~{n}` or `~{n+}` at the very end of `line`.
pub(crate) fn literal_marker(line: &[u8]) -> Option<Marker> {
    let mut end = line.len();
    if line.last() != Some(&b'}') {
        return None;
    }
    end -= 1;
    let sync = if end > 0 && line[end - 1] == b'+' {
        end -= 1;
        false
    } else {
        true
    };
    let digits_end = end;
    while end > 0 && line[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == digits_end || end == 0 || line[end - 1] != b'{' {
        return None;
    }
    let size = line[end..digits_end].iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    end -= 1;
    let binary = end > 0 && line[end - 1] == b'~';
    if binary {
        end -= 1;
    }
    Some(Marker {
        size,
        sync,
        binary,
        start: end,
    })
}

/// The tag at the start of `line` (up to the first SP), if valid and at
/// most `max` bytes long.
pub(crate) fn tag_of(line: &[u8], max: usize) -> Option<Tag> {
    let window = &line[..line.len().min(max.saturating_add(1))];
    let end = window.iter().position(|&b| b == b' ').unwrap_or(line.len());
    if end > max {
        return None;
    }
    Tag::from_bytes(&line[..end])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a command line.
    Line,
    /// Reading a raw line (expect_raw_line).
    Raw,
    /// A synchronizing literal was announced; waiting for the server.
    AwaitDecision { size: u64, binary: bool },
    /// Reading literal bytes.
    Literal {
        remaining: u64,
        sync: bool,
        binary: bool,
    },
    /// Skipping a line of a rejected command.
    DiscardLine { tail: Vec<u8>, raw: bool },
    /// Skipping a literal of a rejected command.
    DiscardLiteral { remaining: u64 },
    /// Dead; the connection must be closed.
    Closed,
}

/// The command framer. See the module documentation for the protocol.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    input: Vec<u8>,
    pos: usize,
    state: State,
    cur_line: Vec<u8>,
    lines: Vec<Vec<u8>>,
    literals: Vec<Literal>,
    cur_literal: Vec<u8>,
    command_bytes: usize,
    literal_bytes: u64,
    /// While discarding: the error to report when done, bytes thrown away.
    discard_error: Option<FramingError>,
    discarded: u64,
}

impl Framer {
    /// A framer with the given limits.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            input: Vec::new(),
            pos: 0,
            state: State::Line,
            cur_line: Vec::new(),
            lines: Vec::new(),
            literals: Vec::new(),
            cur_literal: Vec::new(),
            command_bytes: 0,
            literal_bytes: 0,
            discard_error: None,
            discarded: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds received bytes. Fails, taking nothing, if the unprocessed input
    /// would exceed `max_pending_input_bytes`; drain [`Framer::next_event`]
    /// between reads and read at most [`Framer::input_room`] bytes.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), InputOverflow> {
        let pending = self.input.len() - self.pos;
        if pending.saturating_add(data.len()) > self.limits.max_pending_input_bytes {
            return Err(InputOverflow {
                pending,
                offered: data.len(),
                limit: self.limits.max_pending_input_bytes,
            });
        }
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        Ok(())
    }

    /// How many more bytes [`Framer::feed`] accepts now.
    pub fn input_room(&self) -> usize {
        self.limits
            .max_pending_input_bytes
            .saturating_sub(self.input.len() - self.pos)
    }

    /// Unprocessed input bytes.
    pub fn pending_input(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Drops unprocessed input and any partial command, returning how many
    /// input bytes were dropped. Call after `STARTTLS ... OK` so plaintext
    /// sent before the handshake is not taken as protected commands.
    pub fn discard_pending_input(&mut self) -> usize {
        let n = self.input.len() - self.pos;
        self.input.clear();
        self.pos = 0;
        self.reset_command();
        if self.state != State::Closed {
            self.state = State::Line;
        }
        n
    }

    /// Removes and returns the unprocessed input, resetting any partial
    /// command. After `COMPRESS DEFLATE ... OK` these bytes were already
    /// compressed by the client: inflate them and feed the result back.
    pub fn take_pending_input(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.pos);
        self.input.clear();
        self.pos = 0;
        self.reset_command();
        if self.state != State::Closed {
            self.state = State::Line;
        }
        rest
    }

    /// Whether a synchronizing literal awaits the server's decision.
    pub fn awaiting_decision(&self) -> bool {
        matches!(self.state, State::AwaitDecision { .. })
    }

    /// Whether the framer is dead after a fatal error.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether a command has been partly received.
    pub fn in_command(&self) -> bool {
        !self.cur_line.is_empty()
            || !self.lines.is_empty()
            || !matches!(self.state, State::Line | State::Raw | State::Closed)
    }

    /// Accepts the announced synchronizing literal: send `+ Ready` and keep
    /// calling [`Framer::next_event`]. Returns false if none was pending.
    pub fn accept_literal(&mut self) -> bool {
        if let State::AwaitDecision { size, binary } = self.state {
            self.begin_literal(size, true, binary);
            true
        } else {
            false
        }
    }

    /// Refuses the current command's literal. For a synchronizing literal
    /// awaiting a decision the client sends nothing more of the command;
    /// otherwise (non-synchronizing, or already accepted) the rest of the
    /// literal and of the command is read and dropped silently. Either way
    /// the server answers the tag itself. Returns false if no command was
    /// in progress.
    pub fn reject_literal(&mut self) -> bool {
        match self.state {
            State::AwaitDecision { .. } => {
                self.reset_command();
                self.state = State::Line;
                true
            }
            State::Literal { remaining, .. } => {
                self.reset_command();
                self.discard_error = None;
                self.discarded = remaining;
                if remaining > self.limits.max_discard_bytes {
                    self.close_pending(None);
                } else {
                    self.state = State::DiscardLiteral { remaining };
                }
                true
            }
            State::Line if !self.lines.is_empty() => {
                self.reset_command();
                self.discard_error = None;
                self.discarded = 0;
                self.state = State::DiscardLine {
                    tail: Vec::new(),
                    raw: false,
                };
                true
            }
            _ => false,
        }
    }

    /// Delivers the next complete line as [`FramerEvent::RawLine`] instead
    /// of parsing it as a command (AUTHENTICATE data, IDLE `DONE`). Only
    /// valid between commands; returns false otherwise. Applies to one line.
    pub fn expect_raw_line(&mut self) -> bool {
        if self.state == State::Line && self.cur_line.is_empty() && self.lines.is_empty() {
            self.state = State::Raw;
            true
        } else {
            false
        }
    }

    /// The next event, or `None` when more input (or a literal decision)
    /// is needed.
    pub fn next_event(&mut self) -> Option<FramerEvent> {
        loop {
            match self.state {
                State::Closed | State::AwaitDecision { .. } => return None,
                _ if self.pos >= self.input.len() => {
                    self.input.clear();
                    self.pos = 0;
                    return None;
                }
                State::Line | State::Raw => {
                    if let Some(ev) = self.step_line() {
                        return Some(ev);
                    }
                }
                State::Literal { .. } => self.step_literal(),
                State::DiscardLine { .. } => {
                    if let Some(ev) = self.step_discard_line() {
                        return Some(ev);
                    }
                }
                State::DiscardLiteral { remaining } => {
                    let n = self.take_count(remaining);
                    self.pos += n;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::DiscardLine {
                            tail: Vec::new(),
                            raw: false,
                        }
                    } else {
                        State::DiscardLiteral { remaining }
                    };
                }
            }
        }
    }

    fn take_count(&self, remaining: u64) -> usize {
        let avail = self.input.len() - self.pos;
        usize::try_from(remaining).map_or(avail, |r| r.min(avail))
    }

    fn reset_command(&mut self) {
        self.cur_line.clear();
        self.lines.clear();
        self.literals.clear();
        self.cur_literal = Vec::new();
        self.command_bytes = 0;
        self.literal_bytes = 0;
    }

    fn current_tag(&self) -> Option<Tag> {
        let first = self.lines.first().unwrap_or(&self.cur_line);
        tag_of(first, self.limits.max_tag_bytes)
    }

    fn begin_literal(&mut self, size: u64, sync: bool, binary: bool) {
        if size == 0 {
            self.literals.push(Literal {
                data: Vec::new(),
                sync,
                binary,
            });
            self.state = State::Line;
        } else {
            let cap = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(LITERAL_INITIAL_CAPACITY_BYTES);
            self.cur_literal = Vec::with_capacity(cap);
            self.state = State::Literal {
                remaining: size,
                sync,
                binary,
            };
        }
    }

    fn step_literal(&mut self) {
        let State::Literal {
            remaining,
            sync,
            binary,
        } = self.state
        else {
            return;
        };
        let n = self.take_count(remaining);
        self.cur_literal
            .extend_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        let remaining = remaining - n as u64;
        if remaining == 0 {
            let data = std::mem::take(&mut self.cur_literal);
            self.literals.push(Literal { data, sync, binary });
            self.state = State::Line;
        } else {
            self.state = State::Literal {
                remaining,
                sync,
                binary,
            };
        }
    }

    /// Switches to the fatal state; returns the error event to report.
    fn close_pending(&mut self, err: Option<FramingError>) -> FramerEvent {
        let limit = self.limits.max_discard_bytes;
        let err = match err.or_else(|| self.discard_error.take()) {
            Some(mut e) => {
                e.recovery = Recovery::CloseConnection;
                e
            }
            None => FramingError {
                tag: None,
                kind: FramingErrorKind::DiscardLimitExceeded { limit },
                recovery: Recovery::CloseConnection,
            },
        };
        self.reset_command();
        self.discard_error = None;
        self.state = State::Closed;
        self.input.clear();
        self.pos = 0;
        FramerEvent::Error(err)
    }

    /// Starts skipping a literal of `size` bytes of a rejected command.
    fn discard_literal(&mut self, size: u64) -> Option<FramerEvent> {
        if size > self.limits.max_discard_bytes.saturating_sub(self.discarded) {
            return Some(self.close_pending(None));
        }
        self.discarded += size;
        self.state = if size == 0 {
            State::DiscardLine {
                tail: Vec::new(),
                raw: false,
            }
        } else {
            State::DiscardLiteral { remaining: size }
        };
        None
    }

    /// Finishes a discarded line whose last bytes are `tail`.
    fn discard_line_end(&mut self, mut tail: Vec<u8>, raw: bool) -> Option<FramerEvent> {
        if tail.last() == Some(&b'\r') {
            tail.pop();
        }
        if !raw
            && let Some(m) = literal_marker(&tail)
            && !m.sync
        {
            return self.discard_literal(m.size);
        }
        self.state = State::Line;
        self.discarded = 0;
        self.discard_error.take().map(FramerEvent::Error)
    }

    fn step_discard_line(&mut self) -> Option<FramerEvent> {
        let State::DiscardLine { ref mut tail, raw } = self.state else {
            return None;
        };
        let avail = &self.input[self.pos..];
        let (n, lf) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        let chunk = &avail[..n];
        if chunk.len() >= DISCARD_TAIL_BYTES {
            tail.clear();
            tail.extend_from_slice(&chunk[chunk.len() - DISCARD_TAIL_BYTES..]);
        } else {
            tail.extend_from_slice(chunk);
            if tail.len() > DISCARD_TAIL_BYTES {
                let cut = tail.len() - DISCARD_TAIL_BYTES;
                tail.drain(..cut);
            }
        }
        let tail = if lf { std::mem::take(tail) } else { Vec::new() };
        self.pos += n + usize::from(lf);
        self.discarded = self.discarded.saturating_add(n as u64);
        if self.discarded > self.limits.max_discard_bytes {
            return Some(self.close_pending(None));
        }
        if lf {
            self.discard_line_end(tail, raw)
        } else {
            None
        }
    }

    /// Starts discarding the rest of the current command because of `kind`.
    /// `line_done` is the just-completed line if the error came at its end.
    fn fail_command(
        &mut self,
        kind: FramingErrorKind,
        raw: bool,
        line_done: Option<Vec<u8>>,
    ) -> Option<FramerEvent> {
        let tag = if raw { None } else { self.current_tag() };
        let err = FramingError {
            tag,
            kind,
            recovery: Recovery::CommandDiscarded,
        };
        let partial = std::mem::take(&mut self.cur_line);
        self.reset_command();
        self.discard_error = Some(err);
        self.discarded = 0;
        match line_done {
            Some(line) => {
                let keep = line.len().min(DISCARD_TAIL_BYTES);
                let tail = line[line.len() - keep..].to_vec();
                self.discard_line_end(tail, raw)
            }
            None => {
                let keep = partial.len().min(DISCARD_TAIL_BYTES);
                let tail = partial[partial.len() - keep..].to_vec();
                self.discarded = partial.len() as u64;
                self.state = State::DiscardLine { tail, raw };
                None
            }
        }
    }

    fn step_line(&mut self) -> Option<FramerEvent> {
        let raw = self.state == State::Raw;
        let avail = &self.input[self.pos..];
        let (n, lf) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        // One extra byte of room for the CR before the LF.
        let line_cap = self.limits.max_line_bytes.saturating_add(1);
        let cmd_cap = if raw {
            usize::MAX
        } else {
            self.limits
                .max_command_bytes
                .saturating_add(1)
                .saturating_sub(self.command_bytes)
        };
        let new_len = self.cur_line.len().saturating_add(n);
        let cap = line_cap.min(cmd_cap);
        if new_len > cap {
            // Keep the line's start (for the tag), as byte-wise input would.
            let room = cap.saturating_sub(self.cur_line.len()).min(n);
            self.cur_line.extend_from_slice(&avail[..room]);
            self.pos += room;
            let kind = if new_len > line_cap {
                FramingErrorKind::LineTooLong {
                    limit: self.limits.max_line_bytes,
                }
            } else {
                FramingErrorKind::CommandTooLong {
                    limit: self.limits.max_command_bytes,
                }
            };
            return self.fail_command(kind, raw, None);
        }
        self.cur_line.extend_from_slice(&avail[..n]);
        self.pos += n;
        if !lf {
            return None;
        }
        self.pos += 1;
        let mut line = std::mem::take(&mut self.cur_line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.limits.max_line_bytes {
            let kind = FramingErrorKind::LineTooLong {
                limit: self.limits.max_line_bytes,
            };
            return self.fail_command(kind, raw, Some(line));
        }
        if raw {
            self.state = State::Line;
            return Some(FramerEvent::RawLine(line));
        }
        if self.command_bytes + line.len() > self.limits.max_command_bytes {
            let kind = FramingErrorKind::CommandTooLong {
                limit: self.limits.max_command_bytes,
            };
            return self.fail_command(kind, raw, Some(line));
        }
        self.command_bytes += line.len();
        let marker = literal_marker(&line);
        self.lines.push(line);
        match marker {
            Some(m) => self.on_marker(m),
            None => {
                let frame = Frame {
                    lines: std::mem::take(&mut self.lines),
                    literals: std::mem::take(&mut self.literals),
                };
                self.reset_command();
                Some(FramerEvent::Command(frame))
            }
        }
    }

    fn on_marker(&mut self, m: Marker) -> Option<FramerEvent> {
        let tag = self.current_tag();
        let l = &self.limits;
        let size_limit = if m.sync {
            l.max_literal_bytes
        } else {
            l.max_literal_bytes.min(l.max_non_sync_literal_bytes)
        };
        let error = if self.literals.len() >= l.max_literals_per_command {
            Some(FramingErrorKind::TooManyLiterals {
                limit: l.max_literals_per_command,
            })
        } else if m.size > size_limit {
            Some(FramingErrorKind::LiteralTooLarge {
                size: m.size,
                limit: size_limit,
                sync: m.sync,
            })
        } else if self.literal_bytes.saturating_add(m.size) > l.max_command_literal_bytes {
            Some(FramingErrorKind::CommandLiteralsTooLarge {
                limit: l.max_command_literal_bytes,
            })
        } else {
            None
        };
        if let Some(kind) = error {
            let err = FramingError {
                tag,
                kind,
                recovery: Recovery::CommandDiscarded,
            };
            self.reset_command();
            if m.sync {
                // The client waits for our answer and sends nothing more.
                self.state = State::Line;
                return Some(FramerEvent::Error(err));
            }
            self.discard_error = Some(err);
            self.discarded = 0;
            return self.discard_literal(m.size);
        }
        self.literal_bytes += m.size;
        if m.sync {
            self.state = State::AwaitDecision {
                size: m.size,
                binary: m.binary,
            };
        } else {
            self.begin_literal(m.size, false, m.binary);
        }
        Some(FramerEvent::LiteralAnnounced {
            tag,
            size: m.size,
            sync: m.sync,
            binary: m.binary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let m = literal_marker(b"a LOGIN {5}").unwrap();
        assert_eq!((m.size, m.sync, m.binary, m.start), (5, true, false, 8));
        let m = literal_marker(b"a APPEND x ~{12+}").unwrap();
        assert_eq!((m.size, m.sync, m.binary), (12, false, true));
        assert!(literal_marker(b"a LOGIN {}").is_none());
        assert!(literal_marker(b"a LOGIN {+}").is_none());
        assert!(literal_marker(b"a LOGIN 5}").is_none());
        assert!(literal_marker(b"}").is_none());
        assert_eq!(
            literal_marker(b"{99999999999999999999999}").unwrap().size,
            u64::MAX
        );
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a1 NOOP", 64).unwrap().as_str(), "a1");
        assert!(tag_of(b"a+ NOOP", 64).is_none());
        assert!(tag_of(b"abcdef NOOP", 3).is_none());
        assert!(tag_of(b" NOOP", 64).is_none());
    }
}
