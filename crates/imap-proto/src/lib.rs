//! IMAP wire layer without I/O ("sans-I/O") for slotmail.
//!
//! The crate turns bytes into typed values and back, and never touches a
//! socket. It is used by the slot's IMAP server, the proxy and slotmail's own
//! IMAP client.
//!
//! * [`Framer`] cuts the client's byte stream into complete commands (a line
//!   plus its literals), enforcing every size limit of [`Limits`] and
//!   surfacing synchronizing literals so the server can answer `+ Ready` or
//!   refuse them.
//! * [`parse_command`] turns a [`Frame`] into a typed [`Command`]
//!   (IMAP4rev1, IMAP4rev2 and the extensions slotmail supports).
//! * [`Command::encode`] writes a command back to wire bytes (for our client).
//! * [`response`] holds the response model ([`Response`], [`ResponseCode`],
//!   ...) with its encoder and low-level writers (`write_astring`, ...) for the
//!   server.
//! * [`ResponseReader`] is the client-side counterpart of the framer: it is
//!   fed bytes and yields parsed [`Response`]s.
//! * [`mutf7`] converts mailbox names between UTF-8 and modified UTF-7.
//! * [`sasl`] decodes `AUTHENTICATE PLAIN` responses (BASE64 and the
//!   PLAIN message) for the server and the proxy.
//!
//! Nothing in this crate panics on peer input; [`fuzz_command`] exercises
//! that claim and the encode/parse round trip.
//!
//! # Server loop
//!
//! ```
//! use slotmail_imap_proto::*;
//!
//! let mut framer = Framer::new(Limits::default());
//! let mut to_client = Vec::new();
//! // Bytes as read from the socket (here: one read holding two commands).
//! framer.feed(b"a1 LOGIN {5}\r\n").unwrap();
//! loop {
//!     match framer.next_event() {
//!         Some(FramerEvent::LiteralAnnounced { sync: true, .. }) => {
//!             framer.accept_literal();
//!             response::write_continuation(&mut to_client, "Ready");
//!             // ...the client now sends the literal:
//!             framer.feed(b"alice hunter2\r\na2 SELECT inbox\r\n").unwrap();
//!         }
//!         Some(FramerEvent::LiteralAnnounced { .. }) => {} // LITERAL+: informational
//!         Some(FramerEvent::Command(frame)) => match parse_command(&frame) {
//!             Ok(cmd) => {
//!                 // Dispatch on cmd.body; answer with the tag.
//!                 response::write_status(&mut to_client, Some(&cmd.tag), StatusKind::Ok, None, "done");
//!             }
//!             Err(e) => to_client.extend_from_slice(&e.response()),
//!         },
//!         Some(FramerEvent::RawLine(_)) => {} // AUTHENTICATE data / IDLE DONE
//!         Some(FramerEvent::Error(e)) => {
//!             to_client.extend_from_slice(&e.response());
//!             if e.is_fatal() {
//!                 break; // close the connection
//!             }
//!         }
//!         None => break, // read more from the socket
//!     }
//! }
//! assert_eq!(to_client, b"+ Ready\r\na1 OK done\r\na2 OK done\r\n");
//! ```

mod command;
mod cursor;
mod datetime;
mod encode;
mod framer;
mod fuzz;
mod limits;
pub mod mutf7;
mod parse;
mod reader;
pub mod response;
pub mod sasl;
mod seqset;
mod syntax;
mod types;

pub use command::{
    AppendMessage, Command, CommandBody, FetchAttr, FetchAttrs, FetchModifiers, IdParams,
    ListCommand, ListReturnOption, ListSelectOption, ModSeqEntry, ModSeqEntryType, Partial,
    QResyncParams, SearchKey, SearchReturnOpt, Section, SectionText, SelectParams, StoreMode,
};
pub use datetime::{Date, DateTime};
pub use encode::{EncodeOptions, EncodedCommand, LiteralMode};
pub use framer::{Frame, Framer, FramerEvent, FramingError, FramingErrorKind, Literal, Recovery};
pub use fuzz::fuzz_command;
pub use limits::{
    DEFAULT_MAX_COMMAND_BYTES, DEFAULT_MAX_COMMAND_LITERAL_BYTES, DEFAULT_MAX_DISCARD_BYTES,
    DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LITERAL_BYTES, DEFAULT_MAX_LITERALS_PER_COMMAND,
    DEFAULT_MAX_NESTING_DEPTH, DEFAULT_MAX_NON_SYNC_LITERAL_BYTES, DEFAULT_MAX_PENDING_INPUT_BYTES,
    DEFAULT_MAX_TAG_BYTES, DEFAULT_RESPONSE_MAX_LINE_BYTES, DEFAULT_RESPONSE_MAX_LITERAL_BYTES,
    DEFAULT_RESPONSE_MAX_LITERALS, DEFAULT_RESPONSE_MAX_PENDING_INPUT_BYTES,
    DEFAULT_RESPONSE_MAX_TOTAL_BYTES, InputOverflow, Limits, ResponseLimits,
};
pub use parse::{
    ParseError, ParseErrorKind, ParseOptions, parse_command, parse_command_bytes,
    parse_command_bytes_with, parse_command_with,
};
pub use reader::{ResponseError, ResponseReader, parse_response_bytes};
pub use response::{
    Data, FetchItem, ListData, NamespaceDescr, QuotaResource, Response, ResponseCode, StatusKind,
    Value,
};
pub use seqset::{SeqNum, SeqRange, SequenceSet};
pub use types::{Flag, MailboxAttr, MailboxEncoding, MailboxName, SpecialUse, StatusItem, Tag};
