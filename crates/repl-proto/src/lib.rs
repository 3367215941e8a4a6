//! The replication wire protocol of slotmail, version 3, without I/O.
//!
//! This crate owns everything two slots must agree on byte for byte to
//! replicate a store (docs/replication.md): the messages and their postcard
//! payloads ([`message`]), the frame layout and a bounded streaming decoder
//! ([`frame`]), the handshake's proofs and state machines ([`handshake`]),
//! body chunking ([`body`]), the convergence digests ([`digest`]) and the
//! limits ([`limits`]). It never touches a socket, a clock, a random number
//! generator or a store: the sync client and server (`crates/repl`) own
//! those and drive this crate.
//!
//! Nothing here panics on peer input; [`fuzz_decode`] exercises that claim.
//!
//! # A stream, end to end
//!
//! 1. Both sides start a [`FrameDecoder::for_handshake`].
//! 2. The master makes a [`ClientHandshake`], the replica a
//!    [`ServerHandshake`]; each side passes every decoded frame to its
//!    machine and sends what it returns, until `Established` / `Accept` (the
//!    replica records an adopted epoch durably before sending `Welcome`) or
//!    `Failed`.
//! 3. Both sides raise the decoder's limit to [`FRAME_LEN_MAX`]; the master
//!    sends requests ([`try_encode_frame`]), the replica answers each with
//!    one response, in order.

pub mod body;
mod bounded;
pub mod digest;
pub mod frame;
mod fuzz;
pub mod handshake;
pub mod limits;
pub mod message;

pub use body::{BodyChunks, BodyError, BodyEvent, BodyReceiver, body_chunks};
pub use digest::{MailboxDigest, mailbox_digest, record_hash, user_digest};
pub use frame::{
    EncodeError, FrameDecoder, FrameError, decode_frame, encode_frame, try_encode_frame,
};
pub use fuzz::fuzz_decode;
pub use handshake::{
    Accepted, ClientConfig, ClientEstablished, ClientHandshake, ClientStep, Failure, ProofInput,
    Role, ServerConfig, ServerHandshake, ServerStep, SlotRole, proof, verify_proof,
};
pub use limits::*;
pub use message::*;
