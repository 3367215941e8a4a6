//! An async IMAP client on tokio for slotmail's own tools: the replication
//! check (which logs in to a master and a replica as a user and compares
//! everything a client sees), the IMAP load generator and tests.
//!
//! The wire format comes from `slotmail-imap-proto`: commands are built as
//! [`slotmail_imap_proto::CommandBody`] values and written with
//! `Command::encode_with`, responses are read with its `ResponseReader`
//! under [`ClientOptions::response_limits`]. This crate adds the I/O
//! (TCP, TLS, STARTTLS, COMPRESS=DEFLATE), tagging, synchronizing-literal
//! and continuation handling, timeouts and typed results.
//!
//! * [`Client`] — connect, authenticate, and one method per command.
//! * [`Error`] — typed failures; `NO` / `BAD` keep the server's response
//!   code ([`Error::code`]).
//! * [`ClientOptions`] — timeouts and limits.
//! * [`FetchRecord`], [`Mailbox`], [`ListEntry`], ... — results.
//!
//! ```no_run
//! # async fn demo() -> Result<(), slotmail_imap_client::Error> {
//! use slotmail_imap_client::{Client, ClientOptions, SequenceSet};
//!
//! let mut c = Client::connect("127.0.0.1:143", ClientOptions::default()).await?;
//! c.authenticate_plain(Some("alice"), "admin", "secret").await?;
//! let mbox = c.select("INBOX", true).await?;
//! c.uid_fetch_each(&SequenceSet::all(), "(UID FLAGS BODY.PEEK[])", |m| {
//!     println!("{} {:?} {} bytes", m.uid, m.flags, m.message().map_or(0, <[u8]>::len));
//! })
//! .await?;
//! println!("{} messages", mbox.exists);
//! c.logout().await?;
//! # Ok(())
//! # }
//! ```

mod client;
mod commands;
mod error;
mod idle;
mod options;
mod sasl;
mod transport;
mod types;

pub use client::Client;
pub use commands::Namespaces;
pub use error::{Error, MAX_QUOTED_LINE_BYTES, Result, escape_bytes};
pub use options::{
    ClientOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT,
    DEFAULT_MAX_BUFFERED_FETCH_BYTES, DEFAULT_MAX_EXPANDED_UIDS, DEFAULT_MAX_UNSOLICITED_RESPONSES,
    DEFAULT_READ_CHUNK_BYTES,
};
pub use types::{
    AppendUid, CopyUid, Expunged, FetchRecord, ListEntry, Mailbox, MailboxStatus, QresyncSelect,
    Quota, QuotaRoots, RawResponse, Selected, SessionState, StoreOutcome,
};

/// The wire-layer crate, for the types used in this API.
pub use slotmail_imap_proto as proto;
pub use slotmail_imap_proto::{
    Data, DateTime, FetchItem, Flag, ListCommand, ListReturnOption, ListSelectOption, MailboxAttr,
    Response, ResponseCode, SequenceSet, SpecialUse, StatusItem, StatusKind,
};
