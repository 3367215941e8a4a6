//! LMTP (RFC 2033) server side for slotmail, plus a small client.
//!
//! The protocol lives in a sans-I/O state machine, [`Session`]: bytes in,
//! replies and [`Event`]s out, with no clock, socket or backend inside. A
//! thin tokio shell, [`serve_connection`], drives a session over any async
//! stream and answers its events with a [`Backend`] — the mail store (slot)
//! or the proxy, which routes each recipient elsewhere. [`Client`] speaks
//! the other side, for tests, benchmarks and the proxy.
//!
//! Supported: `LHLO` with `PIPELINING`, `8BITMIME`, `ENHANCEDSTATUSCODES`
//! and `SIZE`; `MAIL FROM` with `SIZE=` and `BODY=`; `RCPT TO` with
//! `user+detail@domain` splitting; `DATA` with streaming dot-unstuffing and
//! size limits; one reply per accepted recipient after the data; `RSET`,
//! `NOOP`, `QUIT`, `VRFY`, `HELP`. `EHLO`/`HELO` are refused with a hint.
//! Line-end policy is described in the [`data`] module: bare LF is accepted
//! and stored as CRLF.

pub mod address;
pub mod client;
mod command;
pub mod config;
pub mod data;
pub mod date;
pub mod envelope;
mod fuzz;
pub mod reply;
pub mod server;
pub mod session;

pub use address::{Address, AddressError, Recipient};
pub use client::{Client, ClientConfig, ClientError, DeliveryReport, RecipientReport};
pub use config::{Config, Limits, VrfyPolicy};
pub use data::{DotStuffer, normalize_line_endings};
pub use envelope::{AcceptedRcpt, BodyType, Envelope, RcptVerdict};
pub use fuzz::fuzz_session;
pub use reply::{EnhancedCode, Reply};
pub use server::{Backend, Error, serve_connection};
pub use session::{Event, Session, Step, UsageError};
