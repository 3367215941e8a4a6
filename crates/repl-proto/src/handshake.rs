//! The handshake: proofs of the cluster secret and the two sans-I/O state
//! machines, [`ClientHandshake`] (the master's sync client) and
//! [`ServerHandshake`] (the replica's sync listener).
//!
//! This module owns the handshake rules of docs/replication.md: the proof's
//! exact input ([`proof`]), mutual authentication, the version check, the
//! `not-replica` check and the epoch rules (stale → `stale-epoch`, newer →
//! adopted, reported to the caller so it can record the epoch durably before
//! it sends `Welcome`). The machines take decoded [`Frame`]s and return the
//! next frame to send or the outcome; they never touch a socket, a clock or a
//! random number generator: the caller supplies the 32-byte nonce (fresh from
//! a CSPRNG for every connection), enforces timeouts, and switches its
//! decoder from [`crate::HANDSHAKE_FRAME_LEN_MAX`] to [`crate::FRAME_LEN_MAX`]
//! once the handshake succeeded.

use crate::frame::FrameError;
use crate::limits::PROTOCOL_VERSION;
use crate::message::{Challenge, ErrorCode, ErrorReply, Frame, Hello, Proof, Welcome};
use std::fmt;

/// Which side a proof comes from; each has its own domain label so that a
/// proof can never be reflected to the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The replica (sync listener): label `slotmail-sync-server`.
    Server,
    /// The master (sync client): label `slotmail-sync-client`.
    Client,
}

impl Role {
    /// The domain label hashed first into the role's proofs.
    pub fn label(self) -> &'static str {
        match self {
            Role::Server => "slotmail-sync-server",
            Role::Client => "slotmail-sync-client",
        }
    }
}

/// What a proof binds: both nonces and everything either side's decision
/// rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofInput<'a> {
    pub nonce_c: &'a [u8; 32],
    pub nonce_s: &'a [u8; 32],
    /// `Hello.cluster`.
    pub cluster: &'a str,
    /// `Hello.store`.
    pub store: &'a str,
    /// `Hello.from_slot`.
    pub from_slot: &'a str,
    /// `Hello.to_slot`.
    pub to_slot: &'a str,
    /// `Hello.epoch`: the client's epoch.
    pub client_epoch: u64,
    /// `Challenge.epoch`: the server's epoch before the handshake.
    pub server_epoch: u64,
    /// The stream's channel binding: the TLS exporter of its session
    /// (docs/replication.md, "Transport and framing").
    pub binding: &'a [u8; 32],
}

impl<'a> ProofInput<'a> {
    /// The input as both sides know it once the `Challenge` is out.
    pub fn new(
        hello: &'a Hello,
        nonce_s: &'a [u8; 32],
        server_epoch: u64,
        binding: &'a [u8; 32],
    ) -> Self {
        ProofInput {
            nonce_c: &hello.nonce_c,
            nonce_s,
            cluster: &hello.cluster,
            store: &hello.store,
            from_slot: &hello.from_slot,
            to_slot: &hello.to_slot,
            client_epoch: hello.epoch,
            server_epoch,
            binding,
        }
    }
}

fn put_str(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// A handshake proof: keyed BLAKE3 with the 32-byte cluster secret over
///
/// ```text
/// s(label) ‖ nonce_c ‖ nonce_s ‖ s(cluster) ‖ s(store) ‖ s(from_slot) ‖ s(to_slot)
///          ‖ u64le(client_epoch) ‖ u64le(server_epoch) ‖ binding
/// ```
///
/// where `s(x)` is the byte length as u64 little-endian then the bytes, and
/// `label` is [`Role::label`].
pub fn proof(secret: &[u8; 32], role: Role, input: &ProofInput<'_>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(secret);
    put_str(&mut h, role.label());
    h.update(input.nonce_c);
    h.update(input.nonce_s);
    put_str(&mut h, input.cluster);
    put_str(&mut h, input.store);
    put_str(&mut h, input.from_slot);
    put_str(&mut h, input.to_slot);
    h.update(&input.client_epoch.to_le_bytes());
    h.update(&input.server_epoch.to_le_bytes());
    h.update(input.binding);
    *h.finalize().as_bytes()
}

/// Whether `claimed` is the right proof, compared in constant time.
pub fn verify_proof(
    secret: &[u8; 32],
    role: Role,
    input: &ProofInput<'_>,
    claimed: &[u8; 32],
) -> bool {
    // blake3::Hash's equality is constant-time.
    blake3::Hash::from_bytes(proof(secret, role, input)) == blake3::Hash::from_bytes(*claimed)
}

/// A handshake that did not establish a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub text: String,
    /// The peer refused (its `Refused` or `Error` is the reason); otherwise
    /// we refuse the peer.
    pub by_peer: bool,
    /// Send this, then close. `None` when the peer refused.
    pub send: Option<Frame>,
}

impl Failure {
    fn peer(reply: ErrorReply) -> Self {
        Failure {
            code: reply.code,
            text: reply.text,
            by_peer: true,
            send: None,
        }
    }

    /// We refuse the peer: the server sends `Refused`, the client `Error`.
    fn ours(code: ErrorCode, text: String, as_server: bool) -> Self {
        let reply = ErrorReply::new(code, text.clone());
        Failure {
            code,
            text,
            by_peer: false,
            send: Some(if as_server {
                Frame::Refused(reply)
            } else {
                Frame::Error(reply)
            }),
        }
    }
}

// ----- client ------------------------------------------------------------------------

/// What the client (the master's sync client) says and expects. Its `Debug`
/// output leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub secret: [u8; 32],
    pub cluster: String,
    pub store: String,
    /// This slot (the master).
    pub from_slot: String,
    /// The replica slot connected to.
    pub to_slot: String,
    /// The store's epoch as the directory gives it to this master.
    pub epoch: u64,
    pub capabilities: Vec<String>,
    /// This stream's channel binding (its TLS exporter), the same value
    /// the server computes from the same TLS session.
    pub binding: [u8; 32],
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("secret", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("store", &self.store)
            .field("from_slot", &self.from_slot)
            .field("to_slot", &self.to_slot)
            .field("epoch", &self.epoch)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

/// The client's handshake established the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEstablished {
    /// The epoch both sides now hold (the client's).
    pub epoch: u64,
    /// The server's epoch before the handshake (lower if it adopted ours).
    pub server_epoch_before: u64,
    pub peer_capabilities: Vec<String>,
}

/// The client's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this frame and wait for the server's next one.
    Send(Frame),
    /// The stream is established; requests may follow.
    Established(ClientEstablished),
    /// The handshake failed.
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientState {
    AwaitChallenge,
    AwaitWelcome {
        server_epoch: u64,
        capabilities: Vec<String>,
    },
    Done,
}

/// The master's side of the handshake.
///
/// ```
/// use slotmail_repl_proto::*;
///
/// let secret = [7; 32];
/// let (mut client, hello) = ClientHandshake::start(
///     ClientConfig {
///         secret,
///         cluster: "c".into(),
///         store: "s1".into(),
///         from_slot: "a1".into(),
///         to_slot: "b1".into(),
///         epoch: 3,
///         capabilities: vec![],
///         binding: [9; 32],
///     },
///     [1; 32],
/// );
/// let mut server = ServerHandshake::new(
///     ServerConfig {
///         secret,
///         cluster: "c".into(),
///         slot: "b1".into(),
///         role: SlotRole::Replica { store: "s1".into() },
///         epoch: 3,
///         capabilities: vec![],
///         binding: [9; 32],
///     },
///     [2; 32],
/// );
/// let ServerStep::Send(challenge) = server.receive(hello) else { panic!() };
/// let ClientStep::Send(proof) = client.receive(challenge) else { panic!() };
/// let ServerStep::Accept(accepted) = server.receive(proof) else { panic!() };
/// assert!(!accepted.adopt_epoch);
/// let ClientStep::Established(done) = client.receive(accepted.welcome) else { panic!() };
/// assert_eq!(done.epoch, 3);
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    config: ClientConfig,
    nonce_c: [u8; 32],
    state: ClientState,
}

impl ClientHandshake {
    /// Begin: returns the machine and the `Hello` to send. `nonce_c` must be
    /// fresh random bytes.
    pub fn start(config: ClientConfig, nonce_c: [u8; 32]) -> (Self, Frame) {
        let hello = Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            capabilities: config.capabilities.clone(),
            cluster: config.cluster.clone(),
            store: config.store.clone(),
            from_slot: config.from_slot.clone(),
            to_slot: config.to_slot.clone(),
            epoch: config.epoch,
            nonce_c,
        });
        let machine = ClientHandshake {
            config,
            nonce_c,
            state: ClientState::AwaitChallenge,
        };
        (machine, hello)
    }

    /// Whether the handshake is over (established or failed).
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    fn fail(&mut self, code: ErrorCode, text: String) -> ClientStep {
        self.state = ClientState::Done;
        ClientStep::Failed(Failure::ours(code, text, false))
    }

    /// The server's frame could not be decoded: the failure to report (and
    /// the `Error` to send).
    pub fn undecodable(&mut self, error: &FrameError) -> Failure {
        self.state = ClientState::Done;
        Failure::ours(error.code(), error.to_string(), false)
    }

    /// Take the server's next frame.
    pub fn receive(&mut self, frame: Frame) -> ClientStep {
        let state = std::mem::replace(&mut self.state, ClientState::Done);
        match (state, frame) {
            (ClientState::Done, frame) => self.fail(
                ErrorCode::Protocol,
                format!("{} after the handshake ended", frame.frame_type()),
            ),
            (_, Frame::Refused(reply) | Frame::Error(reply)) => {
                ClientStep::Failed(Failure::peer(reply))
            }
            (ClientState::AwaitChallenge, Frame::Challenge(c)) => self.on_challenge(c),
            (
                ClientState::AwaitWelcome {
                    server_epoch,
                    capabilities,
                },
                Frame::Welcome(w),
            ) => {
                if w.epoch != self.config.epoch {
                    return self.fail(
                        ErrorCode::Protocol,
                        format!(
                            "Welcome at epoch {}, but this master is at epoch {}",
                            w.epoch, self.config.epoch
                        ),
                    );
                }
                ClientStep::Established(ClientEstablished {
                    epoch: w.epoch,
                    server_epoch_before: server_epoch,
                    peer_capabilities: capabilities,
                })
            }
            (ClientState::AwaitChallenge, frame) => self.fail(
                ErrorCode::Protocol,
                format!("expected Challenge, got {}", frame.frame_type()),
            ),
            (ClientState::AwaitWelcome { .. }, frame) => self.fail(
                ErrorCode::Protocol,
                format!("expected Welcome or Refused, got {}", frame.frame_type()),
            ),
        }
    }

    fn on_challenge(&mut self, c: Challenge) -> ClientStep {
        if c.version != PROTOCOL_VERSION {
            return self.fail(
                ErrorCode::Version,
                format!(
                    "this master speaks protocol version {PROTOCOL_VERSION}, the replica version {}",
                    c.version
                ),
            );
        }
        let cfg = &self.config;
        let hello_view = ProofInput {
            nonce_c: &self.nonce_c,
            nonce_s: &c.nonce_s,
            cluster: &cfg.cluster,
            store: &cfg.store,
            from_slot: &cfg.from_slot,
            to_slot: &cfg.to_slot,
            client_epoch: cfg.epoch,
            server_epoch: c.epoch,
            binding: &cfg.binding,
        };
        if !verify_proof(&cfg.secret, Role::Server, &hello_view, &c.proof_s) {
            return self.fail(
                ErrorCode::Auth,
                format!(
                    "slot {} did not prove knowledge of the cluster secret",
                    c.slot
                ),
            );
        }
        if c.slot != cfg.to_slot {
            return self.fail(
                ErrorCode::NotReplica,
                format!("connected to slot {}, expected {}", c.slot, cfg.to_slot),
            );
        }
        let proof_c = proof(&cfg.secret, Role::Client, &hello_view);
        self.state = ClientState::AwaitWelcome {
            server_epoch: c.epoch,
            capabilities: c.capabilities,
        };
        ClientStep::Send(Frame::Proof(Proof { proof_c }))
    }
}

// ----- server --------------------------------------------------------------------------

/// What the server's slot is, as its caller knows it when the connection
/// arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotRole {
    /// A replica of this store: the only role that accepts replication.
    Replica { store: String },
    /// The master of this store: refuses replication input.
    Master { store: String },
    /// In no store.
    Unassigned,
}

/// What the server (the replica's sync listener) is. Its `Debug` output
/// leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub secret: [u8; 32],
    pub cluster: String,
    /// This slot's id.
    pub slot: String,
    pub role: SlotRole,
    /// The store's epoch as this slot has durably recorded it.
    pub epoch: u64,
    pub capabilities: Vec<String>,
    /// This stream's channel binding (its TLS exporter).
    pub binding: [u8; 32],
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("secret", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("slot", &self.slot)
            .field("role", &self.role)
            .field("epoch", &self.epoch)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

/// The server accepts the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The epoch of the stream (the client's).
    pub epoch: u64,
    /// The client's epoch is newer than the server's: record `epoch` durably
    /// *before* sending `welcome`. If that fails, send
    /// `Refused { code: store }` instead and close.
    pub adopt_epoch: bool,
    pub store: String,
    /// The master's slot.
    pub from_slot: String,
    pub peer_capabilities: Vec<String>,
    /// The `Welcome` to send.
    pub welcome: Frame,
}

/// The server's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send this frame (the `Challenge`) and wait for the client's next one.
    Send(Frame),
    /// The client is accepted: see [`Accepted`] for what to do.
    Accept(Accepted),
    /// The handshake failed.
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerState {
    AwaitHello,
    AwaitProof { hello: Hello },
    Done,
}

/// The replica's side of the handshake. See [`ClientHandshake`] for an
/// example.
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    config: ServerConfig,
    nonce_s: [u8; 32],
    state: ServerState,
}

impl ServerHandshake {
    /// A handshake for one incoming connection. `nonce_s` must be fresh
    /// random bytes.
    pub fn new(config: ServerConfig, nonce_s: [u8; 32]) -> Self {
        ServerHandshake {
            config,
            nonce_s,
            state: ServerState::AwaitHello,
        }
    }

    /// Whether the handshake is over (accepted or failed).
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    fn fail(&mut self, code: ErrorCode, text: String) -> ServerStep {
        self.state = ServerState::Done;
        ServerStep::Failed(Failure::ours(code, text, true))
    }

    fn version_text(&self, version: u32) -> String {
        format!(
            "replica slot {} speaks protocol version {PROTOCOL_VERSION}, the master version {version}",
            self.config.slot
        )
    }

    /// The client's frame could not be decoded: the failure to report (and
    /// the `Refused` to send). A `Hello` of another version gives
    /// `Refused { code: version }` naming both versions.
    pub fn undecodable(&mut self, error: &FrameError) -> Failure {
        self.state = ServerState::Done;
        match error {
            FrameError::Version { version, .. } => {
                Failure::ours(ErrorCode::Version, self.version_text(*version), true)
            }
            other => Failure::ours(other.code(), other.to_string(), true),
        }
    }

    /// Take the client's next frame.
    pub fn receive(&mut self, frame: Frame) -> ServerStep {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        match (state, frame) {
            (ServerState::Done, frame) => self.fail(
                ErrorCode::Protocol,
                format!("{} after the handshake ended", frame.frame_type()),
            ),
            (_, Frame::Refused(reply) | Frame::Error(reply)) => {
                ServerStep::Failed(Failure::peer(reply))
            }
            (ServerState::AwaitHello, Frame::Hello(hello)) => {
                if hello.version != PROTOCOL_VERSION {
                    let text = self.version_text(hello.version);
                    return self.fail(ErrorCode::Version, text);
                }
                let proof_s = proof(
                    &self.config.secret,
                    Role::Server,
                    &ProofInput::new(
                        &hello,
                        &self.nonce_s,
                        self.config.epoch,
                        &self.config.binding,
                    ),
                );
                let challenge = Frame::Challenge(Challenge {
                    version: PROTOCOL_VERSION,
                    capabilities: self.config.capabilities.clone(),
                    slot: self.config.slot.clone(),
                    epoch: self.config.epoch,
                    nonce_s: self.nonce_s,
                    proof_s,
                });
                self.state = ServerState::AwaitProof { hello };
                ServerStep::Send(challenge)
            }
            (ServerState::AwaitProof { hello }, Frame::Proof(p)) => self.on_proof(hello, &p),
            (ServerState::AwaitHello, frame) => self.fail(
                ErrorCode::Protocol,
                format!("expected Hello, got {}", frame.frame_type()),
            ),
            (ServerState::AwaitProof { .. }, frame) => self.fail(
                ErrorCode::Protocol,
                format!("expected Proof, got {}", frame.frame_type()),
            ),
        }
    }

    fn on_proof(&mut self, hello: Hello, p: &Proof) -> ServerStep {
        let cfg = &self.config;
        let input = ProofInput::new(&hello, &self.nonce_s, cfg.epoch, &cfg.binding);
        if !verify_proof(&cfg.secret, Role::Client, &input, &p.proof_c) {
            let text = format!(
                "slot {} did not prove knowledge of the cluster secret",
                hello.from_slot
            );
            return self.fail(ErrorCode::Auth, text);
        }
        if hello.cluster != cfg.cluster {
            let text = format!(
                "slot {} is in cluster {}, not {}",
                cfg.slot, cfg.cluster, hello.cluster
            );
            return self.fail(ErrorCode::NotReplica, text);
        }
        if hello.to_slot != cfg.slot {
            let text = format!("this is slot {}, not {}", cfg.slot, hello.to_slot);
            return self.fail(ErrorCode::NotReplica, text);
        }
        let refusal = match &cfg.role {
            SlotRole::Replica { store } if *store == hello.store => None,
            SlotRole::Replica { store } => Some(format!(
                "slot {} is a replica of store {store}, not {}",
                cfg.slot, hello.store
            )),
            SlotRole::Master { store } => Some(format!(
                "slot {} is the master of store {store}: a master refuses replication input",
                cfg.slot
            )),
            SlotRole::Unassigned => Some(format!("slot {} is in no store", cfg.slot)),
        };
        if let Some(text) = refusal {
            return self.fail(ErrorCode::NotReplica, text);
        }
        if hello.epoch < cfg.epoch {
            let text = format!(
                "epoch {} is older than store {}'s epoch {} here: this master is fenced",
                hello.epoch, hello.store, cfg.epoch
            );
            return self.fail(ErrorCode::StaleEpoch, text);
        }
        ServerStep::Accept(Accepted {
            epoch: hello.epoch,
            adopt_epoch: hello.epoch > cfg.epoch,
            welcome: Frame::Welcome(Welcome { epoch: hello.epoch }),
            store: hello.store,
            from_slot: hello.from_slot,
            peer_capabilities: hello.capabilities,
        })
    }
}
