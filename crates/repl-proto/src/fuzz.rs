//! A fuzz entry point, [`fuzz_decode`], shared by the property tests and a
//! future cargo-fuzz target.
//!
//! It owns the invariants a fuzzer checks on arbitrary peer bytes: the
//! decoder never panics and never buffers beyond its bound, a drained decoder
//! takes a small read whole, its errors are sticky, feeding the bytes in
//! pieces gives the same frames as feeding them at once, every decoded frame
//! survives an encode/decode round trip, and the handshake machines and the
//! body receiver take any decoded frame without panicking. A violated
//! invariant panics, which is what a fuzzer looks for.

use crate::body::BodyReceiver;
use crate::frame::{FrameDecoder, FrameError, decode_frame, encode_frame, try_encode_frame};
use crate::handshake::{
    ClientConfig, ClientHandshake, ServerConfig, ServerHandshake, ServerStep, SlotRole,
};
use crate::limits::FRAME_LEN_MAX;
use crate::message::Frame;

/// A small frame limit, so short inputs reach the over-length path.
const FUZZ_FRAME_LEN_MAX: u32 = 512;

/// Run `data` through the decoder and everything that consumes frames. The
/// first byte chooses the read size (1 to 64 bytes) and the frame limit.
pub fn fuzz_decode(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let read = 1 + usize::from(control & 0x3f);
    let limit = if control & 0x40 != 0 {
        FUZZ_FRAME_LEN_MAX
    } else {
        FRAME_LEN_MAX
    };

    let (pieces, piece_error) = decode_in_pieces(input, read, limit);
    let mut whole = FrameDecoder::with_frame_len_max(limit);
    let mut frames = Vec::new();
    let whole_error = whole.push(input, &mut frames).err();
    assert_eq!(pieces, frames, "frames depend on how the input was split");
    assert_eq!(
        piece_error, whole_error,
        "errors depend on how the input was split"
    );

    let mut server = ServerHandshake::new(
        ServerConfig {
            secret: [0x5a; 32],
            cluster: "c".into(),
            slot: "r1".into(),
            role: SlotRole::Replica { store: "s1".into() },
            epoch: 2,
            capabilities: Vec::new(),
            binding: [0x33; 32],
        },
        [0x11; 32],
    );
    let (mut client, _hello) = ClientHandshake::start(
        ClientConfig {
            secret: [0x5a; 32],
            cluster: "c".into(),
            store: "s1".into(),
            from_slot: "m1".into(),
            to_slot: "r1".into(),
            epoch: 2,
            capabilities: Vec::new(),
            binding: [0x33; 32],
        },
        [0x22; 32],
    );
    let mut receiver = BodyReceiver::new(1 << 20);
    for frame in frames {
        check_round_trip(&frame);
        if let Frame::Body(chunk) = &frame
            && receiver.accept(chunk).is_err()
        {
            assert!(receiver.in_progress().is_none(), "receiver not reset");
        }
        if let ServerStep::Send(reply) = server.receive(frame.clone()) {
            check_round_trip(&reply);
        }
        let _ = client.receive(frame);
    }
    if let Some(error) = whole_error {
        let _ = server.undecodable(&error);
        let _ = client.undecodable(&error);
        check_round_trip(&error.to_frame());
    }
}

/// Decode `input` fed `read` bytes at a time, checking the buffer bound.
fn decode_in_pieces(input: &[u8], read: usize, limit: u32) -> (Vec<Frame>, Option<FrameError>) {
    let mut decoder = FrameDecoder::with_frame_len_max(limit);
    let mut frames = Vec::new();
    for piece in input.chunks(read) {
        let taken = decoder.feed(piece);
        assert!(
            decoder.buffered() <= decoder.buffer_bound(),
            "decoder over its bound"
        );
        assert_eq!(taken, piece.len(), "a drained decoder refused a small read");
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(decoder.next_frame(), Err(e.clone()), "error not sticky");
                    assert_eq!(decoder.finish(), Err(e.clone()), "error not sticky");
                    return (frames, Some(e));
                }
            }
        }
    }
    if let Err(e) = decoder.finish() {
        assert!(matches!(e, FrameError::Truncated { .. }), "finish: {e}");
    }
    (frames, None)
}

fn check_round_trip(frame: &Frame) {
    let bytes = encode_frame(frame);
    assert_eq!(decode_frame(&bytes).as_ref(), Ok(frame), "round trip");
    if let Ok(checked) = try_encode_frame(frame) {
        assert_eq!(
            checked, bytes,
            "try_encode_frame disagrees with encode_frame"
        );
    }
}
