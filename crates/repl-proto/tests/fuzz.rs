//! `fuzz_decode` under proptest: arbitrary bytes, and valid frame streams
//! with damage, must keep every invariant it checks.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use slotmail_repl_proto::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes(data in vec(any::<u8>(), 0..1024)) {
        fuzz_decode(&data);
    }

    #[test]
    fn frame_streams_with_damage(
        control in any::<u8>(),
        frames in vec(common::frame(), 0..6),
        damage in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = vec![control];
        for f in &frames {
            data.extend_from_slice(&encode_frame(f));
        }
        for (at, byte) in damage {
            let i = at.index(data.len());
            data[i] ^= byte;
        }
        let keep = cut.index(data.len() + 1).max(data.len().saturating_sub(8));
        data.truncate(keep);
        fuzz_decode(&data);
    }
}

#[test]
fn handshake_transcripts() {
    // A real exchange, fed through the fuzz entry point in both directions.
    let (mut client, hello) = ClientHandshake::start(
        ClientConfig {
            secret: [0x5a; 32],
            cluster: "c".into(),
            store: "s1".into(),
            from_slot: "m1".into(),
            to_slot: "r1".into(),
            epoch: 2,
            capabilities: vec![],
            binding: [0x33; 32],
        },
        [1; 32],
    );
    let mut server = ServerHandshake::new(
        ServerConfig {
            secret: [0x5a; 32],
            cluster: "c".into(),
            slot: "r1".into(),
            role: SlotRole::Replica { store: "s1".into() },
            epoch: 2,
            capabilities: vec![],
            binding: [0x33; 32],
        },
        [2; 32],
    );
    let ServerStep::Send(challenge) = server.receive(hello.clone()) else {
        panic!()
    };
    let ClientStep::Send(proof) = client.receive(challenge.clone()) else {
        panic!()
    };
    for control in [0u8, 7, 0x40, 0x7f] {
        let mut data = vec![control];
        for f in [&hello, &challenge, &proof, &Frame::Ping] {
            data.extend_from_slice(&encode_frame(f));
        }
        fuzz_decode(&data);
    }
}
