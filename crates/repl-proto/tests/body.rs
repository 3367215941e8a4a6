//! Body transfers: chunking and the receiver's checks.

mod common;

use proptest::prelude::*;
use slotmail_repl_proto::*;

fn guid(bytes: &[u8]) -> Guid {
    *blake3::hash(bytes).as_bytes()
}

fn receive_all(receiver: &mut BodyReceiver, chunks: &[Body]) -> Vec<BodyEvent> {
    chunks
        .iter()
        .map(|c| receiver.accept(c).expect("valid sequence"))
        .collect()
}

#[test]
fn chunking() {
    let body = vec![5u8; 2 * BODY_CHUNK_MAX + 10];
    let chunks: Vec<Body> = body_chunks("alice", guid(&body), &body).collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0].bytes.len(), BODY_CHUNK_MAX);
    assert_eq!(chunks[2].bytes.len(), 10);
    assert_eq!(chunks[2].offset, 2 * BODY_CHUNK_MAX as u64);
    assert!(chunks[2].last && !chunks[0].last && !chunks[1].last);
    for c in &chunks {
        assert!(Frame::Body(c.clone()).validate().is_ok());
        assert!(try_encode_frame(&Frame::Body(c.clone())).is_ok());
    }

    let empty: Vec<Body> = body_chunks("alice", guid(b""), b"").collect();
    assert_eq!(empty.len(), 1);
    assert!(empty[0].last && empty[0].bytes.is_empty() && empty[0].size == 0);

    let exact = vec![1u8; BODY_CHUNK_MAX];
    let chunks: Vec<Body> = body_chunks("a", guid(&exact), &exact).collect();
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].last);
}

#[test]
fn receiver_completes_and_verifies() {
    let body = vec![9u8; BODY_CHUNK_MAX + 1];
    let g = guid(&body);
    let chunks: Vec<Body> = body_chunks("u", g, &body).collect();
    let mut r = BodyReceiver::new(64 << 20);
    let events = receive_all(&mut r, &chunks);
    assert_eq!(
        events,
        [
            BodyEvent::Partial,
            BodyEvent::Complete {
                guid: g,
                size: body.len() as u64
            }
        ]
    );
    assert!(r.in_progress().is_none());

    // Same bytes under a wrong GUID: guid-mismatch, the connection goes on.
    let chunks: Vec<Body> = body_chunks("u", [0; 32], &body).collect();
    let events = receive_all(&mut r, &chunks);
    match &events[1] {
        BodyEvent::Failed(reply) => assert_eq!(reply.code, ErrorCode::GuidMismatch),
        other => panic!("{other:?}"),
    }
    // …and the next body is fine.
    let events = receive_all(
        &mut r,
        &body_chunks("u", guid(b"x"), b"x").collect::<Vec<_>>(),
    );
    assert!(matches!(events[0], BodyEvent::Complete { .. }));
}

#[test]
fn too_big_is_answered_at_the_last_chunk() {
    let body = vec![1u8; BODY_CHUNK_MAX + 5];
    let chunks: Vec<Body> = body_chunks("u", guid(&body), &body).collect();
    let mut r = BodyReceiver::new(100);
    let events = receive_all(&mut r, &chunks);
    assert_eq!(events[0], BodyEvent::Discarded);
    match &events[1] {
        BodyEvent::Failed(reply) => assert_eq!(reply.code, ErrorCode::TooBig),
        other => panic!("{other:?}"),
    }
}

#[test]
fn broken_sequences_end_the_connection() {
    let body = vec![2u8; 2 * BODY_CHUNK_MAX + 1];
    let chunks: Vec<Body> = body_chunks("u", guid(&body), &body).collect();

    let mut r = BodyReceiver::new(u64::MAX);
    assert_eq!(
        r.accept(&chunks[1]),
        Err(BodyError::NotFirst {
            offset: BODY_CHUNK_MAX as u64
        })
    );

    r.accept(&chunks[0]).unwrap();
    assert!(matches!(r.accept(&chunks[2]), Err(BodyError::Gap { .. })));
    assert!(r.in_progress().is_none(), "reset after an error");

    r.accept(&chunks[0]).unwrap();
    let other: Vec<Body> = body_chunks("u", guid(b"zz"), b"zz").collect();
    assert_eq!(r.accept(&other[0]), Err(BodyError::Interleaved));

    r.accept(&chunks[0]).unwrap();
    let mut other_user = chunks[1].clone();
    other_user.user = "v".into();
    assert_eq!(r.accept(&other_user), Err(BodyError::Interleaved));

    let mut bad = chunks[0].clone();
    bad.last = true;
    assert!(matches!(r.accept(&bad), Err(BodyError::Invalid(_))));

    r.accept(&chunks[0]).unwrap();
    r.reset();
    assert!(r.in_progress().is_none());
}

proptest! {
    #[test]
    fn any_chunk_sequence_is_handled(chunks in proptest::collection::vec(common::body(), 0..8)) {
        let mut r = BodyReceiver::new(1 << 20);
        for c in &chunks {
            let _ = r.accept(c);
        }
    }

    #[test]
    fn chunks_reassemble(body in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let g = guid(&body);
        let mut r = BodyReceiver::new(u64::MAX);
        let mut kept = Vec::new();
        let mut complete = false;
        for chunk in body_chunks("u", g, &body) {
            let chunk = match decode_frame(&encode_frame(&Frame::Body(chunk))) {
                Ok(Frame::Body(c)) => c,
                other => panic!("{other:?}"),
            };
            match r.accept(&chunk).unwrap() {
                BodyEvent::Partial => kept.extend_from_slice(&chunk.bytes),
                BodyEvent::Complete { guid, size } => {
                    kept.extend_from_slice(&chunk.bytes);
                    prop_assert_eq!(guid, g);
                    prop_assert_eq!(size, body.len() as u64);
                    complete = true;
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
        prop_assert!(complete);
        prop_assert_eq!(kept, body);
    }
}
