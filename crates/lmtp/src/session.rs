//! The sans-I/O LMTP server state machine.
//!
//! A [`Session`] consumes bytes from the client with [`Session::receive`],
//! accumulates replies in an output buffer ([`Session::pending_output`]) and
//! stops whenever it needs an answer from outside, returning an [`Event`]:
//!
//! * [`Event::Recipient`]: a syntactically valid `RCPT TO` needs a verdict;
//!   answer with [`Session::recipient_verdict`].
//! * [`Event::Deliver`]: the message is complete; answer with one reply per
//!   accepted recipient through [`Session::delivery_replies`]
//!   (RFC 2033 §4.2). Before delivery the machine prepends `Return-Path:`
//!   and `Received:` headers.
//! * [`Event::Close`]: the session is over (`QUIT`, too many errors or
//!   [`Session::timed_out`]); write the pending output and close.
//!
//! While an event is outstanding, `receive` consumes nothing; the caller
//! keeps the unconsumed input and offers it again after answering. The
//! machine never reads the clock or the network: host name, peer, session
//! id and the current time are supplied by the caller, so the same input
//! always yields the same output.
//!
//! Reply conventions: enhanced status codes (RFC 3463) on every reply except
//! the `220` greeting, the `250` LHLO capability list and `354`
//! (RFC 2034 §3 exempts the greeting and the EHLO/LHLO response).
//!
//! ```
//! use std::time::UNIX_EPOCH;
//! use slotmail_lmtp::{Config, Event, RcptVerdict, Reply, Session};
//!
//! let mut s = Session::<&str>::new(&Config::new("mx.test"), "[192.0.2.1]", "A1");
//! let input = b"LHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u+box@mx.test>\r\nDATA\r\nhi\r\n.\r\n";
//! let step = s.receive(input, UNIX_EPOCH);
//! let Some(Event::Recipient { rcpt }) = step.event else { panic!() };
//! assert_eq!((rcpt.user.as_str(), rcpt.detail.as_deref()), ("u", Some("box")));
//! s.recipient_verdict(RcptVerdict::Accept("token")).unwrap();
//!
//! let rest = &input[step.consumed..];
//! let step = s.receive(rest, UNIX_EPOCH);
//! let Some(Event::Deliver { message, rcpts, .. }) = step.event else { panic!() };
//! assert!(message.starts_with(b"Return-Path: <a@b.test>\r\nReceived: from c.test"));
//! assert!(message.ends_with(b"\tThu, 01 Jan 1970 00:00:00 +0000\r\nhi\r\n"));
//! assert_eq!(rcpts[0].token, "token");
//! s.delivery_replies(vec![Reply::ok("saved")]).unwrap();
//! assert!(s.take_output().ends_with(b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 saved\r\n"));
//! ```

use std::time::SystemTime;

use crate::address::Recipient;
use crate::command::{self, Verb, syntax_error};
use crate::config::{Config, Limits, MAX_HOSTNAME_BYTES, VrfyPolicy};
use crate::data::{DataOutcome, DataReader};
use crate::date::format_rfc5322;
use crate::envelope::{AcceptedRcpt, BodyType, Envelope, RcptVerdict};
use crate::reply::{EnhancedCode, Reply};

/// Maximum length of a caller-supplied session id, in octets.
const MAX_SESSION_ID_BYTES: usize = 64;

/// Maximum length of a caller-supplied peer description, in octets.
const MAX_PEER_BYTES: usize = 128;

/// Something the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<T> {
    /// Ask the backend about this recipient and call
    /// [`Session::recipient_verdict`].
    Recipient {
        /// The recipient from `RCPT TO`.
        rcpt: Recipient,
    },
    /// Deliver the message and call [`Session::delivery_replies`] with one
    /// reply per entry of `rcpts`, in the same order.
    Deliver {
        /// Sender, parameters and identification of the transaction.
        envelope: Envelope,
        /// The message with trace headers prepended, CRLF line ends.
        message: Vec<u8>,
        /// Accepted recipients in `RCPT` order.
        rcpts: Vec<AcceptedRcpt<T>>,
    },
    /// Write the pending output and close the connection.
    Close,
}

/// Result of [`Session::receive`].
#[derive(Debug, PartialEq, Eq)]
pub struct Step<T> {
    /// Number of input bytes consumed; the caller must offer the rest again.
    pub consumed: usize,
    /// The event to handle, if any. With `None`, either all input was
    /// consumed (read more), or the output buffer is full (write it out).
    pub event: Option<Event<T>>,
}

/// API misuse by the caller (never caused by peer input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// `recipient_verdict` without an outstanding [`Event::Recipient`].
    #[error("no recipient verdict is pending")]
    NoPendingRecipient,
    /// `delivery_replies` without an outstanding [`Event::Deliver`].
    #[error("no delivery is pending")]
    NoPendingDelivery,
}

/// An open transaction (after a successful `MAIL`).
#[derive(Debug)]
struct Transaction<T> {
    id: String,
    sender: Option<crate::address::Address>,
    size: Option<u64>,
    body: Option<BodyType>,
    rcpts: Vec<AcceptedRcpt<T>>,
}

#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// [`Event::Recipient`] issued for this recipient.
    AwaitRecipient(Recipient),
    /// Reading message data.
    Data(DataReader),
    /// [`Event::Deliver`] issued for this many recipients.
    AwaitDelivery(usize),
    /// Session over.
    Closed,
}

/// The LMTP server state machine for one connection. `T` is the backend's
/// per-recipient token.
#[derive(Debug)]
pub struct Session<T> {
    hostname: String,
    peer: String,
    session_id: String,
    limits: Limits,
    detail_separator: Option<char>,
    vrfy: VrfyPolicy,
    state: State,
    lhlo: Option<String>,
    txn: Option<Transaction<T>>,
    transactions: u64,
    commands: u64,
    errors: u32,
    /// Partial command line (bounded by `max_command_line_bytes`).
    line: Vec<u8>,
    /// Discarding an over-long command line until its LF.
    line_overflow: bool,
    out: Vec<u8>,
}

/// Keeps printable ASCII except the characters in `reject`; bounds length.
fn sanitize(s: &str, reject: &[char], max: usize, fallback: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && !reject.contains(c))
        .take(max)
        .collect();
    if clean.is_empty() {
        fallback.to_owned()
    } else {
        clean
    }
}

fn reply(code: u16, e: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, EnhancedCode::new(e.0, e.1, e.2), text)
}

fn bad_sequence(text: &str) -> Reply {
    reply(503, (5, 5, 1), text)
}

impl<T> Session<T> {
    /// Starts a session and queues the `220` greeting. `peer` describes the
    /// client for the `Received:` header (e.g. `[192.0.2.1]`); `session_id`
    /// prefixes transaction ids. Both are sanitised (printable ASCII,
    /// bounded length).
    pub fn new(config: &Config, peer: &str, session_id: &str) -> Self {
        let hostname = sanitize(&config.hostname, &[], MAX_HOSTNAME_BYTES, "localhost");
        let mut session = Self {
            peer: sanitize(peer, &['(', ')', '\\'], MAX_PEER_BYTES, "unknown"),
            session_id: sanitize(
                session_id,
                &[';', '(', ')', '\\'],
                MAX_SESSION_ID_BYTES,
                "0",
            ),
            limits: config.limits.clone(),
            detail_separator: config.detail_separator,
            vrfy: config.vrfy,
            state: State::Command,
            lhlo: None,
            txn: None,
            transactions: 0,
            commands: 0,
            errors: 0,
            line: Vec::new(),
            line_overflow: false,
            out: Vec::new(),
            hostname,
        };
        let greeting = Reply::plain(220, format!("{} LMTP slotmail ready", session.hostname));
        session.send(&greeting);
        session
    }

    /// Replies not yet written to the client.
    pub fn pending_output(&self) -> &[u8] {
        &self.out
    }

    /// Marks the first `n` bytes of [`Session::pending_output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.out.len());
        self.out.drain(..n);
    }

    /// Takes all pending output.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True once the session is over; only pending output remains.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True while message data is being read.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// True while a transaction is open (after `MAIL`, until delivery or
    /// `RSET`) or a command line is partially received.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
            || !self.line.is_empty()
            || self.line_overflow
            || !matches!(self.state, State::Command | State::Closed)
    }

    /// Number of command lines processed so far (for idle timeouts).
    pub fn commands_processed(&self) -> u64 {
        self.commands
    }

    /// Ends the session because the client was too slow: queues
    /// `421 4.4.2` and closes. Any transaction in progress is dropped.
    pub fn timed_out(&mut self) {
        if !self.is_closed() {
            let r = reply(
                421,
                (4, 4, 2),
                format!("{} Error: timeout exceeded", self.hostname),
            );
            self.send(&r);
            self.close();
        }
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.txn = None;
        self.line = Vec::new();
        self.line_overflow = false;
    }

    fn send(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Sends an error reply and counts it; past `max_errors` the session
    /// ends with `421 4.7.0`.
    fn reject(&mut self, r: Reply) {
        self.send(&r);
        self.errors = self.errors.saturating_add(1);
        if self.errors > self.limits.max_errors {
            let r = reply(
                421,
                (4, 7, 0),
                format!("{} Error: too many errors", self.hostname),
            );
            self.send(&r);
            self.close();
        }
    }

    /// Feeds input. Consumes as much as possible, stopping at an event or
    /// when the pending output exceeds `max_pending_output_bytes`. `now` is
    /// used for the `Received:` header of a message whose `DATA` command is
    /// in this input.
    pub fn receive(&mut self, input: &[u8], now: SystemTime) -> Step<T> {
        let mut consumed = 0;
        loop {
            if self.is_closed() {
                return Step {
                    consumed,
                    event: Some(Event::Close),
                };
            }
            let rest = &input[consumed..];
            if rest.is_empty()
                || (!self.out.is_empty() && self.out.len() >= self.limits.max_pending_output_bytes)
            {
                break;
            }
            match &mut self.state {
                State::AwaitRecipient(_) | State::AwaitDelivery(_) | State::Closed => break,
                State::Data(reader) => {
                    let (n, done) = reader.feed(rest);
                    consumed += n;
                    if done && let Some(event) = self.end_of_data() {
                        return Step {
                            consumed,
                            event: Some(event),
                        };
                    }
                }
                State::Command => match rest.iter().position(|&b| b == b'\n') {
                    None => {
                        self.buffer_partial_line(rest);
                        consumed += rest.len();
                    }
                    Some(i) => {
                        consumed += i + 1;
                        if let Some(event) = self.complete_line(&rest[..i], now) {
                            return Step {
                                consumed,
                                event: Some(event),
                            };
                        }
                    }
                },
            }
        }
        Step {
            consumed,
            event: None,
        }
    }

    fn buffer_partial_line(&mut self, bytes: &[u8]) {
        if self.line_overflow {
            return;
        }
        // Content plus a possible trailing CR must fit.
        if self.line.len() + bytes.len() > self.limits.max_command_line_bytes.saturating_sub(1) {
            self.line_overflow = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn complete_line(&mut self, tail: &[u8], now: SystemTime) -> Option<Event<T>> {
        let max = self.limits.max_command_line_bytes;
        let mut line = std::mem::take(&mut self.line);
        let too_long = self.line_overflow || line.len() + tail.len() > max.saturating_sub(1);
        self.line_overflow = false;
        if too_long {
            self.commands += 1;
            self.reject(reply(500, (5, 5, 6), "Error: line too long"));
            return None;
        }
        line.extend_from_slice(tail);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let event = if line.len() > max.saturating_sub(2) {
            self.commands += 1;
            self.reject(reply(500, (5, 5, 6), "Error: line too long"));
            None
        } else {
            self.command(&line, now)
        };
        if !self.is_closed() {
            line.clear();
            self.line = line;
        }
        event
    }

    fn command(&mut self, line: &[u8], now: SystemTime) -> Option<Event<T>> {
        self.commands += 1;
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        let (verb, args) = command::split_command(&line[..end]);
        match verb {
            Verb::Lhlo => self.lhlo(args),
            Verb::Ehlo | Verb::Helo => self.reject(reply(
                500,
                (5, 5, 1),
                "Error: this is an LMTP server (RFC 2033), use LHLO",
            )),
            Verb::Mail => self.mail(args),
            Verb::Rcpt => return self.rcpt(args),
            Verb::Data => self.data(args, now),
            Verb::Rset => {
                if args.is_empty() {
                    self.txn = None;
                    self.send(&Reply::ok("OK"));
                } else {
                    self.reject(syntax_error("Syntax: RSET"));
                }
            }
            Verb::Noop => self.send(&Reply::ok("OK")),
            Verb::Quit => {
                let r = reply(
                    221,
                    (2, 0, 0),
                    format!("{} closing connection", self.hostname),
                );
                self.send(&r);
                self.close();
            }
            Verb::Vrfy => {
                if args.iter().all(|&b| b == b' ') {
                    self.reject(syntax_error("Syntax: VRFY address"));
                } else {
                    match self.vrfy {
                        VrfyPolicy::CannotVerify => self.send(&reply(
                            252,
                            (2, 5, 2),
                            "Cannot VRFY user, but will accept message and attempt delivery",
                        )),
                        VrfyPolicy::Disabled => {
                            self.reject(reply(502, (5, 5, 1), "Error: VRFY command is disabled"))
                        }
                    }
                }
            }
            Verb::Help => self.send(&reply(
                214,
                (2, 0, 0),
                "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY",
            )),
            Verb::NotImplemented => {
                self.reject(reply(502, (5, 5, 1), "Error: command not implemented"))
            }
            Verb::Unknown => self.reject(reply(500, (5, 5, 1), "Error: command not recognized")),
        }
        None
    }

    fn lhlo(&mut self, args: &[u8]) {
        match command::parse_lhlo(args) {
            Ok(name) => {
                self.lhlo = Some(name);
                self.txn = None;
                let r = Reply {
                    code: 250,
                    enhanced: None,
                    lines: vec![
                        self.hostname.clone(),
                        "PIPELINING".into(),
                        "8BITMIME".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        format!("SIZE {}", self.limits.max_message_bytes),
                    ],
                };
                self.send(&r);
            }
            Err(r) => self.reject(r),
        }
    }

    fn mail(&mut self, args: &[u8]) {
        if self.lhlo.is_none() {
            return self.reject(bad_sequence("Error: send LHLO first"));
        }
        if self.txn.is_some() {
            return self.reject(bad_sequence("Error: nested MAIL command"));
        }
        let mail = match command::parse_mail(args) {
            Ok(mail) => mail,
            Err(r) => return self.reject(r),
        };
        let max = self.limits.max_message_bytes;
        if mail.size.is_some_and(|s| s > max as u64) {
            return self.reject(reply(
                552,
                (5, 3, 4),
                format!("Error: message size exceeds fixed limit of {max} bytes"),
            ));
        }
        self.transactions += 1;
        self.txn = Some(Transaction {
            id: format!("{}.{}", self.session_id, self.transactions),
            sender: mail.sender,
            size: mail.size,
            body: mail.body,
            rcpts: Vec::new(),
        });
        self.send(&reply(250, (2, 1, 0), "OK"));
    }

    fn rcpt(&mut self, args: &[u8]) -> Option<Event<T>> {
        if self.lhlo.is_none() {
            self.reject(bad_sequence("Error: send LHLO first"));
            return None;
        }
        let Some(txn) = &self.txn else {
            self.reject(bad_sequence("Error: need MAIL command"));
            return None;
        };
        if txn.rcpts.len() >= self.limits.max_recipients {
            self.reject(reply(452, (4, 5, 3), "Error: too many recipients"));
            return None;
        }
        match command::parse_rcpt(args) {
            Ok(address) => {
                let rcpt = Recipient::from_address(address, self.detail_separator);
                self.state = State::AwaitRecipient(rcpt.clone());
                Some(Event::Recipient { rcpt })
            }
            Err(r) => {
                self.reject(r);
                None
            }
        }
    }

    /// Answers the outstanding [`Event::Recipient`]. A rejection counts as
    /// an error (see `Limits::max_errors`).
    pub fn recipient_verdict(&mut self, verdict: RcptVerdict<T>) -> Result<(), UsageError> {
        let rcpt = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitRecipient(rcpt) => rcpt,
            other => {
                self.state = other;
                return Err(UsageError::NoPendingRecipient);
            }
        };
        match (verdict, &mut self.txn) {
            (RcptVerdict::Accept(token), Some(txn)) => {
                txn.rcpts.push(AcceptedRcpt { rcpt, token });
                self.send(&reply(250, (2, 1, 5), "OK"));
            }
            (RcptVerdict::Accept(_), None) => {
                // Unreachable through the public API: the transaction only
                // ends by commands, which are not processed while waiting.
                self.send(&Reply::temporary_failure("Error: transaction lost"));
            }
            (RcptVerdict::Reject(r), _) => self.reject(r.sanitized(&[4, 5])),
        }
        Ok(())
    }

    fn data(&mut self, args: &[u8], now: SystemTime) {
        if self.lhlo.is_none() {
            return self.reject(bad_sequence("Error: send LHLO first"));
        }
        let Some(txn) = &self.txn else {
            return self.reject(bad_sequence("Error: need MAIL command"));
        };
        if txn.rcpts.is_empty() {
            return self.reject(bad_sequence("Error: no valid recipients"));
        }
        if !args.is_empty() {
            return self.reject(syntax_error("Syntax: DATA"));
        }
        let return_path = match &txn.sender {
            Some(a) => format!("<{a}>"),
            None => "<>".to_owned(),
        };
        let prefix = format!(
            "Return-Path: {return_path}\r\nReceived: from {} ({})\r\n\tby {} (slotmail) with LMTP id {};\r\n\t{}\r\n",
            self.lhlo.as_deref().unwrap_or("unknown"),
            self.peer,
            self.hostname,
            txn.id,
            format_rfc5322(now),
        );
        self.state = State::Data(DataReader::new(
            prefix.into_bytes(),
            txn.size,
            self.limits.max_message_bytes,
            self.limits.max_data_line_bytes,
        ));
        self.send(&Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
    }

    fn end_of_data(&mut self) -> Option<Event<T>> {
        let State::Data(reader) = std::mem::replace(&mut self.state, State::Command) else {
            return None;
        };
        let txn = self.txn.take()?;
        let failure = match reader.finish() {
            DataOutcome::Complete(message) => {
                self.state = State::AwaitDelivery(txn.rcpts.len());
                let envelope = Envelope {
                    id: txn.id,
                    sender: txn.sender,
                    declared_size: txn.size,
                    body: txn.body,
                    lhlo: self.lhlo.clone().unwrap_or_default(),
                    peer: self.peer.clone(),
                };
                return Some(Event::Deliver {
                    envelope,
                    message,
                    rcpts: txn.rcpts,
                });
            }
            DataOutcome::TooBig => format!(
                "Error: message size exceeds fixed limit of {} bytes",
                self.limits.max_message_bytes
            ),
            DataOutcome::LineTooLong => format!(
                "Error: message contains a line longer than {} bytes",
                self.limits.max_data_line_bytes
            ),
        };
        let r = reply(552, (5, 3, 4), failure);
        for _ in &txn.rcpts {
            self.send(&r);
        }
        None
    }

    /// Answers the outstanding [`Event::Deliver`] with one reply per
    /// accepted recipient, in order. Missing replies become `451 4.3.0`,
    /// extra replies are ignored, and each reply is sanitised.
    pub fn delivery_replies(&mut self, replies: Vec<Reply>) -> Result<(), UsageError> {
        let State::AwaitDelivery(count) = self.state else {
            return Err(UsageError::NoPendingDelivery);
        };
        self.state = State::Command;
        if replies.len() != count {
            tracing::warn!(
                expected = count,
                got = replies.len(),
                "delivery backend returned a wrong number of replies"
            );
        }
        let mut replies = replies.into_iter();
        for _ in 0..count {
            let r = match replies.next() {
                Some(r) => r.sanitized(&[2, 4, 5]),
                None => Reply::temporary_failure("Error: no delivery status from backend"),
            };
            self.send(&r);
        }
        self.errors = 0;
        Ok(())
    }
}
