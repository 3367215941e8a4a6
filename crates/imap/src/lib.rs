//! The slot's IMAP server (IMAP4rev1, RFC 3501, and IMAP4rev2, RFC 9051,
//! with the extensions listed in `Session::capabilities`).
//!
//! Two layers:
//!
//! * the **session core** ([`Session`], `session.rs` and one module per
//!   command family): a sans-I/O state machine fed one parsed command at a
//!   time. It calls the store (`slotmail_store::User`) synchronously and
//!   writes responses into an [`Out`]; what the connection must do next
//!   comes back as an [`Action`]. The selected mailbox is a compact view
//!   (`view.rs`: one `u32` UID per message); changes by other sessions are
//!   found with `User::delta` at every command boundary and during IDLE.
//! * the **tokio shell** ([`serve`], `server.rs`): listeners, TLS
//!   (implicit and STARTTLS), COMPRESS=DEFLATE, literal continuations,
//!   IDLE wake-ups through the per-user [`Hub`] (which also ends the
//!   sessions of a deleted user with `* BYE [UNAVAILABLE]`), timers and
//!   shutdown.
//!
//! ```no_run
//! # async fn run(slot: std::sync::Arc<slotmail_store::Slot>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1143").await?;
//! let config = slotmail_imap::ImapConfig {
//!     hostname: "a1.example.net".into(),
//!     ..Default::default()
//! };
//! slotmail_imap::serve(listener, None, None, slot, config, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! All client writes pass through one check (`Session::writable`), which
//! consults [`ImapConfig::read_only`]: a replica slot flips that switch and
//! its clients get `NO [UNAVAILABLE]` for every change.

mod auth;
mod config;
mod fetch;
mod flags;
mod hub;
mod list;
mod mailbox;
mod search;
mod select;
mod server;
mod session;
mod store_cmd;
mod throttle;
mod view;

pub use config::{
    APPEND_LIMIT_BYTES_DEFAULT, DurableAppend, DurableHook, ImapConfig, ImapLimits, ReadOnlySwitch,
    Timeouts,
};
pub use hub::{Hub, Registration};
pub use server::{serve, serve_with_context};
pub use session::{ACCOUNT_GONE_TEXT, Action, Context, Out, Outcome, Session, State};
pub use throttle::LoginThrottle;
