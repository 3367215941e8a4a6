//! The handshake: proofs (known answers, domain separation, constant-time
//! verification), and both state machines through success and every refusal.

mod common;

use proptest::prelude::*;
use slotmail_repl_proto::*;

const SECRET: [u8; 32] = [0x42; 32];

fn client_config(epoch: u64) -> ClientConfig {
    ClientConfig {
        secret: SECRET,
        cluster: "prod".into(),
        store: "s7".into(),
        from_slot: "a1".into(),
        to_slot: "b2".into(),
        epoch,
        capabilities: vec!["future-thing".into()],
        binding: [0x33; 32],
    }
}

fn server_config(epoch: u64) -> ServerConfig {
    ServerConfig {
        secret: SECRET,
        cluster: "prod".into(),
        slot: "b2".into(),
        role: SlotRole::Replica { store: "s7".into() },
        epoch,
        capabilities: vec![],
        binding: [0x33; 32],
    }
}

/// Frames cross the wire: encode and decode them on the way.
fn wire(frame: Frame) -> Frame {
    let bytes = encode_frame(&frame);
    let mut d = FrameDecoder::for_handshake();
    let mut out = Vec::new();
    d.push(&bytes, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

/// Outcome of a full exchange.
#[derive(Debug)]
enum Outcome {
    Established {
        client: ClientEstablished,
        server: Accepted,
    },
    ServerRefused {
        server: Failure,
        client: ClientStep,
    },
    ClientRefused {
        client: Failure,
        server: ServerStep,
    },
}

fn run(client_cfg: ClientConfig, server_cfg: ServerConfig) -> Outcome {
    let (mut client, hello) = ClientHandshake::start(client_cfg, [1; 32]);
    let mut server = ServerHandshake::new(server_cfg, [2; 32]);
    let challenge = match server.receive(wire(hello)) {
        ServerStep::Send(f) => f,
        other => panic!("server at Hello: {other:?}"),
    };
    let proof = match client.receive(wire(challenge)) {
        ClientStep::Send(f) => f,
        ClientStep::Failed(client_failure) => {
            let send = client_failure.send.clone().expect("client sends Error");
            let server_step = server.receive(wire(send));
            return Outcome::ClientRefused {
                client: client_failure,
                server: server_step,
            };
        }
        other => panic!("client at Challenge: {other:?}"),
    };
    match server.receive(wire(proof)) {
        ServerStep::Accept(accepted) => match client.receive(wire(accepted.welcome.clone())) {
            ClientStep::Established(c) => {
                assert!(client.is_done());
                Outcome::Established {
                    client: c,
                    server: accepted,
                }
            }
            other => panic!("client at Welcome: {other:?}"),
        },
        ServerStep::Failed(f) => {
            assert!(server.is_done());
            let send = f.send.clone().expect("server sends Refused");
            assert!(matches!(send, Frame::Refused(_)));
            let client_step = client.receive(wire(send));
            Outcome::ServerRefused {
                server: f,
                client: client_step,
            }
        }
        other => panic!("server at Proof: {other:?}"),
    }
}

fn assert_refused(outcome: Outcome, code: ErrorCode) -> String {
    match outcome {
        Outcome::ServerRefused { server, client } => {
            assert_eq!(server.code, code, "{}", server.text);
            assert!(!server.by_peer);
            match client {
                ClientStep::Failed(f) => {
                    assert!(f.by_peer);
                    assert_eq!(f.code, code);
                    assert_eq!(f.text, server.text);
                    assert!(f.send.is_none());
                }
                other => panic!("client after Refused: {other:?}"),
            }
            server.text
        }
        other => panic!("expected a refusal {code}, got {other:?}"),
    }
}

#[test]
fn proof_known_answers() {
    // The input rebuilt byte by byte from docs/replication.md, hashed with
    // plain keyed BLAKE3, and the values pinned.
    let by_hand = |label: &str| {
        let mut bytes = Vec::new();
        for (i, part) in [label, "", "", "prod", "s7", "a1", "b2"].iter().enumerate() {
            match i {
                1 => bytes.extend_from_slice(&[1; 32]),
                2 => bytes.extend_from_slice(&[2; 32]),
                _ => {
                    bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
                    bytes.extend_from_slice(part.as_bytes());
                }
            }
        }
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&4u64.to_le_bytes());
        bytes.extend_from_slice(&[3; 32]);
        *blake3::keyed_hash(&SECRET, &bytes).as_bytes()
    };
    let input = ProofInput {
        nonce_c: &[1; 32],
        nonce_s: &[2; 32],
        cluster: "prod",
        store: "s7",
        from_slot: "a1",
        to_slot: "b2",
        client_epoch: 5,
        server_epoch: 4,
        binding: &[3; 32],
    };
    let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        proof(&SECRET, Role::Server, &input),
        by_hand("slotmail-sync-server")
    );
    assert_eq!(
        proof(&SECRET, Role::Client, &input),
        by_hand("slotmail-sync-client")
    );
    assert_eq!(
        hex(proof(&SECRET, Role::Server, &input)),
        "49e98eece740c60f2e1ffba779cede7a89fbb56eed2d93aed7977b4fe837b33d"
    );
    assert_eq!(
        hex(proof(&SECRET, Role::Client, &input)),
        "a5d72d50401746a26abc91d90f362ca10c8c03e1754a62bf96e1ffbbe4734f42"
    );
}

#[test]
fn proofs_bind_every_input() {
    let base = ProofInput {
        nonce_c: &[1; 32],
        nonce_s: &[2; 32],
        cluster: "prod",
        store: "s7",
        from_slot: "a1",
        to_slot: "b2",
        client_epoch: 5,
        server_epoch: 4,
        binding: &[3; 32],
    };
    let p = proof(&SECRET, Role::Client, &base);
    assert!(verify_proof(&SECRET, Role::Client, &base, &p));
    assert!(
        !verify_proof(&SECRET, Role::Server, &base, &p),
        "reflection"
    );
    assert!(!verify_proof(&[0x43; 32], Role::Client, &base, &p));
    let variants = [
        ProofInput {
            nonce_c: &[9; 32],
            ..base
        },
        ProofInput {
            nonce_s: &[9; 32],
            ..base
        },
        ProofInput {
            cluster: "test",
            ..base
        },
        ProofInput {
            store: "s8",
            ..base
        },
        ProofInput {
            from_slot: "a2",
            ..base
        },
        ProofInput {
            to_slot: "b3",
            ..base
        },
        ProofInput {
            client_epoch: 6,
            ..base
        },
        ProofInput {
            server_epoch: 5,
            ..base
        },
        // Another TLS session (a relay between two sessions).
        ProofInput {
            binding: &[4; 32],
            ..base
        },
        // Length prefixes: moving a byte between adjacent strings matters.
        ProofInput {
            store: "s7a",
            from_slot: "1",
            ..base
        },
    ];
    for v in variants {
        assert!(!verify_proof(&SECRET, Role::Client, &v, &p), "{v:?}");
    }
}

#[test]
fn same_secret_completes() {
    match run(client_config(5), server_config(5)) {
        Outcome::Established { client, server } => {
            assert_eq!(client.epoch, 5);
            assert_eq!(client.server_epoch_before, 5);
            assert_eq!(server.epoch, 5);
            assert!(!server.adopt_epoch);
            assert_eq!(server.store, "s7");
            assert_eq!(server.from_slot, "a1");
            assert_eq!(server.peer_capabilities, ["future-thing"]);
            assert_eq!(server.welcome, Frame::Welcome(Welcome { epoch: 5 }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_with_wrong_secret_is_refused() {
    let mut cfg = client_config(5);
    cfg.secret = [0x41; 32];
    // The client notices first: the server's proof does not verify with its
    // (wrong) secret, so it refuses the server (mutual authentication).
    match run(cfg, server_config(5)) {
        Outcome::ClientRefused { client, server } => {
            assert_eq!(client.code, ErrorCode::Auth);
            assert!(matches!(client.send, Some(Frame::Error(_))));
            match server {
                ServerStep::Failed(f) => {
                    assert!(f.by_peer);
                    assert_eq!(f.code, ErrorCode::Auth);
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_relay_between_two_tls_sessions_is_refused() {
    // A relay terminates TLS towards each side: the two sides see
    // different exporters. The client notices at the Challenge.
    let mut cfg = client_config(5);
    cfg.binding = [0x44; 32];
    match run(cfg, server_config(5)) {
        Outcome::ClientRefused { client, .. } => assert_eq!(client.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
    // A relay that forwards the client's proof unchanged: the server
    // refuses it too.
    let (mut client, hello) = ClientHandshake::start(client_config(5), [1; 32]);
    let mut relayed = server_config(5);
    relayed.binding = [0x44; 32];
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    let ServerStep::Send(challenge) = server.receive(wire(hello.clone())) else {
        panic!("challenge")
    };
    let ClientStep::Send(proof) = client.receive(wire(challenge)) else {
        panic!("proof")
    };
    let mut other = ServerHandshake::new(relayed, [2; 32]);
    let ServerStep::Send(_) = other.receive(wire(hello)) else {
        panic!("challenge")
    };
    match other.receive(wire(proof)) {
        ServerStep::Failed(f) => assert_eq!(f.code, ErrorCode::Auth),
        step => panic!("{step:?}"),
    }
}

#[test]
fn server_refuses_a_forged_proof() {
    let (_client, hello) = ClientHandshake::start(client_config(5), [1; 32]);
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    assert!(matches!(server.receive(hello), ServerStep::Send(_)));
    match server.receive(Frame::Proof(Proof { proof_c: [0; 32] })) {
        ServerStep::Failed(f) => {
            assert_eq!(f.code, ErrorCode::Auth);
            assert!(matches!(f.send, Some(Frame::Refused(_))));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_refuses_a_server_that_does_not_know_the_secret() {
    let mut server_cfg = server_config(5);
    server_cfg.secret = [0x41; 32];
    match run(client_config(5), server_cfg) {
        Outcome::ClientRefused { client, .. } => assert_eq!(client.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_refuses_a_replayed_challenge() {
    // A challenge recorded from one connection does not verify on another
    // (the client's nonce differs).
    let (_c1, hello1) = ClientHandshake::start(client_config(5), [1; 32]);
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    let ServerStep::Send(challenge) = server.receive(hello1) else {
        panic!()
    };
    let (mut c2, _hello2) = ClientHandshake::start(client_config(5), [3; 32]);
    match c2.receive(challenge) {
        ClientStep::Failed(f) => assert_eq!(f.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_epoch_is_refused() {
    let text = assert_refused(
        run(client_config(4), server_config(5)),
        ErrorCode::StaleEpoch,
    );
    assert!(text.contains('4') && text.contains('5'), "{text}");
}

#[test]
fn higher_epoch_is_adopted() {
    match run(client_config(9), server_config(5)) {
        Outcome::Established { client, server } => {
            assert!(server.adopt_epoch);
            assert_eq!(server.epoch, 9);
            assert_eq!(server.welcome, Frame::Welcome(Welcome { epoch: 9 }));
            assert_eq!(client.epoch, 9);
            assert_eq!(client.server_epoch_before, 5);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_version_is_refused_naming_both() {
    // A Hello of version 1 as bytes: the decoder reads only the version.
    let mut payload = vec![1u8];
    payload.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let mut covered = vec![FrameType::Hello.as_u8()];
    covered.extend_from_slice(&payload);
    let mut bytes = ((covered.len() + 4) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&covered);
    bytes.extend_from_slice(&crc32fast::hash(&covered).to_be_bytes());

    let mut d = FrameDecoder::for_handshake();
    d.feed(&bytes);
    let err = d.next_frame().unwrap_err();
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    let failure = server.undecodable(&err);
    assert_eq!(failure.code, ErrorCode::Version);
    assert!(
        failure.text.contains("version 1")
            && failure
                .text
                .contains(&format!("version {PROTOCOL_VERSION}")),
        "{}",
        failure.text
    );
    let Some(Frame::Refused(reply)) = failure.send else {
        panic!("{failure:?}")
    };
    assert_eq!(reply.code, ErrorCode::Version);
    assert!(server.is_done());

    // A constructed Hello of another version is refused the same way.
    let (_c, hello) = ClientHandshake::start(client_config(5), [1; 32]);
    let Frame::Hello(mut h) = hello else { panic!() };
    h.version = PROTOCOL_VERSION + 1;
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    match server.receive(Frame::Hello(h)) {
        ServerStep::Failed(f) => {
            assert_eq!(f.code, ErrorCode::Version);
            assert!(
                f.text
                    .contains(&format!("version {}", PROTOCOL_VERSION + 1))
            );
        }
        other => panic!("{other:?}"),
    }

    // The client refuses a Challenge of another version.
    let (mut client, _) = ClientHandshake::start(client_config(5), [1; 32]);
    let step = client.receive(Frame::Challenge(Challenge {
        version: 1,
        capabilities: vec![],
        slot: "b2".into(),
        epoch: 5,
        nonce_s: [0; 32],
        proof_s: [0; 32],
    }));
    assert!(matches!(
        step,
        ClientStep::Failed(Failure {
            code: ErrorCode::Version,
            ..
        })
    ));
}

#[test]
fn not_a_replica_is_refused() {
    let mut master = server_config(5);
    master.role = SlotRole::Master { store: "s7".into() };
    let text = assert_refused(run(client_config(5), master), ErrorCode::NotReplica);
    assert!(text.contains("master"), "{text}");

    let mut other_store = server_config(5);
    other_store.role = SlotRole::Replica { store: "s8".into() };
    assert_refused(run(client_config(5), other_store), ErrorCode::NotReplica);

    let mut unassigned = server_config(5);
    unassigned.role = SlotRole::Unassigned;
    assert_refused(run(client_config(5), unassigned), ErrorCode::NotReplica);

    let mut other_cluster = server_config(5);
    other_cluster.cluster = "test".into();
    assert_refused(run(client_config(5), other_cluster), ErrorCode::NotReplica);

    let mut wrong_slot = client_config(5);
    wrong_slot.to_slot = "b3".into();
    // The client notices first: the server answers as b2, not b3.
    match run(wrong_slot.clone(), server_config(5)) {
        Outcome::ClientRefused { client, .. } => {
            assert_eq!(client.code, ErrorCode::NotReplica);
            assert!(client.text.contains("b3"), "{}", client.text);
        }
        other => panic!("{other:?}"),
    }
    // A client that ignored that would still be refused by the server.
    let (mut client, hello) = ClientHandshake::start(wrong_slot.clone(), [1; 32]);
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    let ServerStep::Send(Frame::Challenge(c)) = server.receive(hello) else {
        panic!()
    };
    let Frame::Hello(h) = ClientHandshake::start(wrong_slot, [1; 32]).1 else {
        panic!()
    };
    let proof_c = proof(
        &SECRET,
        Role::Client,
        &ProofInput::new(&h, &c.nonce_s, c.epoch, &[0x33; 32]),
    );
    match server.receive(Frame::Proof(Proof { proof_c })) {
        ServerStep::Failed(f) => {
            assert_eq!(f.code, ErrorCode::NotReplica);
            assert!(f.text.contains("b3"), "{}", f.text);
        }
        other => panic!("{other:?}"),
    }
    let _ = client.receive(Frame::Ping);
}

#[test]
fn client_refuses_a_server_that_is_another_slot() {
    // A server with the secret that answers as another slot than asked.
    let (mut client, hello) = ClientHandshake::start(client_config(5), [1; 32]);
    let Frame::Hello(h) = hello else { panic!() };
    let nonce_s = [2; 32];
    let proof_s = proof(
        &SECRET,
        Role::Server,
        &ProofInput::new(&h, &nonce_s, 5, &[0x33; 32]),
    );
    let step = client.receive(Frame::Challenge(Challenge {
        version: PROTOCOL_VERSION,
        capabilities: vec![],
        slot: "zz".into(),
        epoch: 5,
        nonce_s,
        proof_s,
    }));
    assert!(matches!(
        step,
        ClientStep::Failed(Failure {
            code: ErrorCode::NotReplica,
            ..
        })
    ));
}

#[test]
fn unexpected_frames_are_protocol_errors() {
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    match server.receive(Frame::Ping) {
        ServerStep::Failed(f) => assert_eq!(f.code, ErrorCode::Protocol),
        other => panic!("{other:?}"),
    }
    // Anything after the end is refused too.
    match server.receive(Frame::Ping) {
        ServerStep::Failed(f) => assert_eq!(f.code, ErrorCode::Protocol),
        other => panic!("{other:?}"),
    }

    let (mut client, _) = ClientHandshake::start(client_config(5), [1; 32]);
    match client.receive(Frame::Welcome(Welcome { epoch: 5 })) {
        ClientStep::Failed(f) => {
            assert_eq!(f.code, ErrorCode::Protocol);
            assert!(matches!(f.send, Some(Frame::Error(_))));
        }
        other => panic!("{other:?}"),
    }

    // A Welcome at another epoch than the client's is refused.
    let (mut client, hello) = ClientHandshake::start(client_config(5), [1; 32]);
    let mut server = ServerHandshake::new(server_config(5), [2; 32]);
    let ServerStep::Send(challenge) = server.receive(hello) else {
        panic!()
    };
    assert!(matches!(client.receive(challenge), ClientStep::Send(_)));
    match client.receive(Frame::Welcome(Welcome { epoch: 6 })) {
        ClientStep::Failed(f) => assert_eq!(f.code, ErrorCode::Protocol),
        other => panic!("{other:?}"),
    }

    // An undecodable frame from the server.
    let (mut client, _) = ClientHandshake::start(client_config(5), [1; 32]);
    let f = client.undecodable(&FrameError::Crc {
        stated: 1,
        computed: 2,
    });
    assert_eq!(f.code, ErrorCode::Protocol);
    assert!(client.is_done());
}

proptest! {
    /// Whatever the names and epochs: the same secret completes iff the
    /// client's epoch is not older, and any other secret fails.
    #[test]
    fn handshake_properties(
        client_epoch in 0u64..10,
        server_epoch in 0u64..10,
        secret in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        names in (common::text(), common::text(), common::text(), common::text()),
        nonces in (any::<[u8; 32]>(), any::<[u8; 32]>()),
    ) {
        let (cluster, store, from_slot, to_slot) = names;
        let client_cfg = ClientConfig {
            secret,
            cluster: cluster.clone(),
            store: store.clone(),
            from_slot,
            to_slot: to_slot.clone(),
            epoch: client_epoch,
            capabilities: vec![],
            binding: [0x33; 32],
        };
        let server_cfg = ServerConfig {
            secret,
            cluster,
            slot: to_slot,
            role: SlotRole::Replica { store },
            epoch: server_epoch,
            capabilities: vec![],
            binding: [0x33; 32],
        };
        let (mut client, hello) = ClientHandshake::start(client_cfg.clone(), nonces.0);
        let mut server = ServerHandshake::new(server_cfg.clone(), nonces.1);
        let ServerStep::Send(challenge) = server.receive(wire(hello)) else { panic!() };
        let ClientStep::Send(proof) = client.receive(wire(challenge)) else { panic!() };
        match server.receive(wire(proof)) {
            ServerStep::Accept(a) => {
                prop_assert!(client_epoch >= server_epoch);
                prop_assert_eq!(a.adopt_epoch, client_epoch > server_epoch);
                let established = matches!(client.receive(wire(a.welcome)), ClientStep::Established(_));
                prop_assert!(established);
            }
            ServerStep::Failed(f) => {
                prop_assert!(client_epoch < server_epoch);
                prop_assert_eq!(f.code, ErrorCode::StaleEpoch);
            }
            ServerStep::Send(f) => prop_assert!(false, "unexpected {:?}", f),
        }

        if other != secret {
            let mut bad = server_cfg;
            bad.secret = other;
            let (mut client, hello) = ClientHandshake::start(client_cfg, nonces.0);
            let mut server = ServerHandshake::new(bad, nonces.1);
            let ServerStep::Send(challenge) = server.receive(hello) else { panic!() };
            let refused = matches!(
                client.receive(challenge),
                ClientStep::Failed(Failure { code: ErrorCode::Auth, .. })
            );
            prop_assert!(refused);
        }
    }

    /// Any frame at any point of either machine: no panic, and the machine
    /// ends (or goes on) sensibly.
    #[test]
    fn any_frame_is_handled(frames in proptest::collection::vec(common::frame(), 1..6)) {
        let mut server = ServerHandshake::new(server_config(5), [2; 32]);
        let (mut client, _) = ClientHandshake::start(client_config(5), [1; 32]);
        for frame in frames {
            let _ = server.receive(frame.clone());
            let _ = client.receive(frame);
        }
    }
}

#[test]
fn debug_output_leaves_the_secret_out() {
    let text = format!("{:?} {:?}", client_config(1), server_config(1));
    assert!(text.contains("redacted"));
    assert!(!text.contains("66, 66"), "{text}");
    let (client, _) = ClientHandshake::start(client_config(1), [1; 32]);
    assert!(!format!("{client:?}").contains("66, 66"));
}
