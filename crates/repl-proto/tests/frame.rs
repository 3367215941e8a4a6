//! Framing: known-answer bytes, round trips, split points, arbitrary input,
//! corruption, every error path, and the decoder's buffer bound.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use slotmail_repl_proto::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Known answers, computed by an independent encoder (Python: hand-written
/// postcard varints and zigzag, zlib's CRC-32) from docs/replication.md.
/// A change here is a protocol version change.
fn known_answers() -> Vec<(Frame, &'static str)> {
    vec![
        (Frame::Ping, "000000051b58672661"),
        (Frame::Ok, "0000000524ee010b5c"),
        (
            Frame::Welcome(Welcome { epoch: 300 }),
            "0000000704ac0214f4e307",
        ),
        (
            Frame::Error(ErrorReply::new(ErrorCode::StaleEpoch, "old")),
            "0000000a2f03036f6c64d231ce89",
        ),
        (
            Frame::Hello(Hello {
                version: 3,
                capabilities: vec!["x".into()],
                cluster: "c".into(),
                store: "s".into(),
                from_slot: "a".into(),
                to_slot: "b".into(),
                epoch: 5,
                nonce_c: [9; 32],
            }),
            "0000003201030101780163017301610162050909090909090909090909090909090909090909090909090909090909090909eb2ed653",
        ),
        (
            Frame::Body(Body {
                user: "u".into(),
                guid: [0xab; 32],
                size: 3,
                offset: 0,
                last: true,
                bytes: b"abc".to_vec(),
            }),
            "0000002e140175abababababababababababababababababababababababababababababababab030001036162630bd4c993",
        ),
        (
            Frame::ApplyMailbox(ApplyMailbox {
                user: "alice".into(),
                mailbox: MailboxRecord {
                    mailbox_id: "0123456789abcdef0123456789abcdef".into(),
                    name: "INBOX".into(),
                    uidvalidity: 1_700_000_000,
                    uidnext: 5,
                    highestmodseq: 42,
                    special_use: Some("\\Sent".into()),
                    keywords: vec!["$Junk".into()],
                    modseq: 3,
                },
                messages: vec![MessageRecord {
                    uid: 4,
                    guid: [0x11; 32],
                    size: 1234,
                    internaldate: 1_700_000_000,
                    tz_offset: -60,
                    flags: FLAG_SEEN | FLAG_FLAGGED,
                    keywords: vec!["$Junk".into(), "work".into()],
                    modseq: 42,
                }],
                expunged: vec![Expunged { uid: 3, modseq: 41 }],
                full: Some(UidRange::ALL),
            }),
            "0000008a1505616c69636520303132333435363738396162636465663031323334353637383961626364656605494e424f5880e2cfaa06052a01055c53656e740105244a756e6b0301041111111111111111111111111111111111111111111111111111111111111111d20980c49fd50c77050205244a756e6b04776f726b2a0103290101ffffffff0f583a3c81",
        ),
    ]
}

#[test]
fn known_answer_frames() {
    for (frame, expected) in known_answers() {
        assert_eq!(hex(&encode_frame(&frame)), expected, "{frame:?}");
        assert_eq!(decode_frame(&unhex(expected)), Ok(frame));
    }
}

#[test]
fn frame_type_numbers_are_pinned() {
    let numbers: Vec<(u8, &str)> = FrameType::ALL
        .iter()
        .map(|t| (t.as_u8(), t.name()))
        .collect();
    assert_eq!(
        numbers,
        [
            (0x01, "Hello"),
            (0x02, "Challenge"),
            (0x03, "Proof"),
            (0x04, "Welcome"),
            (0x05, "Refused"),
            (0x10, "ListUsers"),
            (0x11, "GetUser"),
            (0x12, "ApplyAccount"),
            (0x13, "HaveGuids"),
            (0x14, "Body"),
            (0x15, "ApplyMailbox"),
            (0x16, "DeleteMailbox"),
            (0x17, "ApplySubscriptions"),
            (0x18, "Commit"),
            (0x19, "DeleteUser"),
            (0x1a, "FetchBody"),
            (0x1b, "Ping"),
            (0x20, "Users"),
            (0x21, "UserState"),
            (0x22, "Missing"),
            (0x23, "Applied"),
            (0x24, "Ok"),
            (0x25, "Pong"),
            (0x2f, "Error"),
        ]
    );
    for byte in 0..=u8::MAX {
        match FrameType::from_u8(byte) {
            Some(t) => assert_eq!(t.as_u8(), byte),
            None => assert!(!numbers.iter().any(|(n, _)| *n == byte)),
        }
    }
}

#[test]
fn error_codes_are_pinned() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "version",
            "auth",
            "not-replica",
            "stale-epoch",
            "guid-mismatch",
            "missing",
            "too-big",
            "store",
            "protocol"
        ]
    );
    for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
        let bytes = encode_frame(&Frame::Error(ErrorReply::new(code, "")));
        assert_eq!(bytes[5], index as u8, "wire index of {code}");
        assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
    }
}

/// Wrap a raw type byte and payload into a frame with a correct CRC.
fn raw_frame(frame_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut covered = vec![frame_type];
    covered.extend_from_slice(payload);
    let mut out = ((covered.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&covered);
    out.extend_from_slice(&crc32fast::hash(&covered).to_be_bytes());
    out
}

#[test]
fn errors_are_typed() {
    // Over the length limit: refused from the header alone.
    let mut d = FrameDecoder::new();
    d.feed(&(FRAME_LEN_MAX + 1).to_be_bytes());
    assert_eq!(
        d.next_frame(),
        Err(FrameError::TooLong {
            length: FRAME_LEN_MAX + 1,
            max: FRAME_LEN_MAX
        })
    );
    assert_eq!(d.next_frame().unwrap_err().code(), ErrorCode::TooBig);

    // The handshake limit is lower.
    let mut d = FrameDecoder::for_handshake();
    d.feed(&(HANDSHAKE_FRAME_LEN_MAX + 1).to_be_bytes());
    assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));

    // Below the minimum.
    assert_eq!(
        decode_frame(&[0, 0, 0, 4, 0x1b, 0, 0, 0]),
        Err(FrameError::TooShort { length: 4 })
    );

    // Bad CRC.
    let mut bytes = encode_frame(&Frame::Ping);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(decode_frame(&bytes), Err(FrameError::Crc { .. })));

    // Unknown type (good CRC).
    assert_eq!(
        decode_frame(&raw_frame(0x7f, &[])),
        Err(FrameError::UnknownType { frame_type: 0x7f })
    );

    // Undecodable payload: a Welcome whose varint never ends.
    assert!(matches!(
        decode_frame(&raw_frame(0x04, &[0xff; 11])),
        Err(FrameError::Payload {
            frame_type: FrameType::Welcome,
            ..
        })
    ));
    // Invalid UTF-8 in a string.
    assert!(matches!(
        decode_frame(&raw_frame(0x11, &[2, 0xc3, 0x28])),
        Err(FrameError::Payload { .. })
    ));

    // Trailing bytes after a payload, and after an empty one.
    assert_eq!(
        decode_frame(&raw_frame(0x04, &[7, 0])),
        Err(FrameError::TrailingBytes {
            frame_type: FrameType::Welcome,
            count: 1
        })
    );
    assert_eq!(
        decode_frame(&raw_frame(0x1b, &[0])),
        Err(FrameError::TrailingBytes {
            frame_type: FrameType::Ping,
            count: 1
        })
    );

    // Another protocol version: the version is read before the rest.
    let err = decode_frame(&raw_frame(0x01, &[1, 0xff, 0xff])).unwrap_err();
    assert_eq!(
        err,
        FrameError::Version {
            frame_type: FrameType::Hello,
            version: 1
        }
    );
    assert_eq!(err.code(), ErrorCode::Version);
    match err.to_frame() {
        Frame::Error(reply) => assert_eq!(reply.code, ErrorCode::Version),
        other => panic!("{other:?}"),
    }

    // Stream ended inside a frame.
    let bytes = encode_frame(&Frame::Welcome(Welcome { epoch: 1 }));
    let mut d = FrameDecoder::new();
    d.feed(&bytes[..bytes.len() - 1]);
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(
        d.finish(),
        Err(FrameError::Truncated {
            buffered: bytes.len() - 1
        })
    );
}

#[test]
fn limits_are_enforced_on_decode_and_encode() {
    let too_many = Frame::HaveGuids(HaveGuids {
        user: "u".into(),
        guids: vec![[0; 32]; GUIDS_PER_FRAME_MAX + 1],
    });
    assert!(matches!(
        try_encode_frame(&too_many),
        Err(EncodeError::Invalid { .. })
    ));
    let err = decode_frame(&encode_frame(&too_many)).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Invalid {
                frame_type: FrameType::HaveGuids,
                error: ValidationError::TooMany { .. }
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::TooBig);

    let at_limit = Frame::HaveGuids(HaveGuids {
        user: "u".into(),
        guids: vec![[0; 32]; GUIDS_PER_FRAME_MAX],
    });
    assert_eq!(
        decode_frame(&try_encode_frame(&at_limit).unwrap()),
        Ok(at_limit)
    );

    // A body chunk over BODY_CHUNK_MAX.
    let big = Frame::Body(Body {
        user: "u".into(),
        guid: [0; 32],
        size: BODY_CHUNK_MAX as u64 + 1,
        offset: 0,
        last: true,
        bytes: vec![0; BODY_CHUNK_MAX + 1],
    });
    assert!(matches!(
        decode_frame(&encode_frame(&big)),
        Err(FrameError::Invalid {
            error: ValidationError::TooLong { .. },
            ..
        })
    ));

    // Inconsistent chunks.
    for (offset, size, last, len) in [(0, 2, true, 3), (5, 9, true, 3), (0, 9, false, 0)] {
        let chunk = Frame::Body(Body {
            user: "u".into(),
            guid: [0; 32],
            size,
            offset,
            last,
            bytes: vec![1; len],
        });
        assert!(
            matches!(
                decode_frame(&encode_frame(&chunk)),
                Err(FrameError::Invalid {
                    error: ValidationError::Inconsistent(_),
                    ..
                })
            ),
            "{chunk:?}"
        );
    }

    // Flag bits outside the system flags, and an inverted UID range.
    let mut apply = ApplyMailbox {
        user: "u".into(),
        mailbox: MailboxRecord {
            mailbox_id: "m".into(),
            name: "INBOX".into(),
            uidvalidity: 1,
            uidnext: 2,
            highestmodseq: 1,
            special_use: None,
            keywords: vec![],
            modseq: 1,
        },
        messages: vec![MessageRecord {
            uid: 1,
            guid: [0; 32],
            size: 0,
            internaldate: 0,
            tz_offset: 0,
            flags: 0x20,
            keywords: vec![],
            modseq: 1,
        }],
        expunged: vec![],
        full: None,
    };
    assert!(Frame::ApplyMailbox(apply.clone()).validate().is_err());
    apply.messages[0].flags = FLAGS_MASK;
    assert!(Frame::ApplyMailbox(apply.clone()).validate().is_ok());
    apply.full = Some(UidRange { first: 5, last: 4 });
    assert!(Frame::ApplyMailbox(apply).validate().is_err());

    // A frame over FRAME_LEN_MAX is not encoded by try_encode_frame.
    let huge = Frame::GetUser(GetUser {
        user: "x".repeat(FRAME_LEN_MAX as usize),
    });
    assert!(matches!(
        try_encode_frame(&huge),
        Err(EncodeError::TooLong { .. })
    ));
}

/// A list stated with millions of elements is decoded without keeping them:
/// the frame is refused, and memory stays bounded by the limit.
#[test]
fn oversized_lists_are_not_kept() {
    // A Users payload of 400,000 users, each an empty record (the smallest
    // possible: empty strings and zero integers and digest).
    let count = 400_000u32; // 36 bytes each: 14.4 MB, under FRAME_LEN_MAX
    let mut payload = Vec::new();
    let mut n = count;
    while n >= 0x80 {
        payload.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    payload.push(n as u8);
    let user = [&[0u8, 0, 0, 0][..], &[0; 32][..]].concat();
    for _ in 0..count {
        payload.extend_from_slice(&user);
    }
    payload.push(0);
    let bytes = raw_frame(0x20, &payload);
    assert!(matches!(
        decode_frame(&bytes),
        Err(FrameError::Invalid {
            frame_type: FrameType::Users,
            error: ValidationError::TooMany { .. }
        })
    ));
}

#[test]
fn feed_is_bounded() {
    let mut d = FrameDecoder::new();
    // A header announcing a maximal frame, then far more bytes than that.
    let mut input = FRAME_LEN_MAX.to_be_bytes().to_vec();
    input.resize(FRAME_LEN_MAX as usize + 3 * READ_CHUNK_BYTES, 0);
    let taken = d.feed(&input);
    assert_eq!(taken, d.buffer_bound());
    assert!(d.buffered() <= d.buffer_bound());
    assert_eq!(d.feed(&input[taken..]), 0, "full decoder takes nothing");
    // The frame is complete; its CRC is wrong (zeros), which is the error.
    assert!(matches!(d.next_frame(), Err(FrameError::Crc { .. })));
    assert_eq!(d.buffered(), 0, "a failed decoder drops its buffer");
    assert_eq!(d.feed(&input), input.len(), "a failed decoder discards");
}

#[test]
fn push_takes_input_larger_than_the_bound() {
    let frames: Vec<Frame> = (0..200)
        .map(|i| Frame::Welcome(Welcome { epoch: i }))
        .collect();
    let bytes: Vec<u8> = frames.iter().flat_map(encode_frame).collect();
    let mut d = FrameDecoder::with_frame_len_max(FRAME_LEN_MIN);
    let mut out = Vec::new();
    // The limit is below a Welcome's length: the first frame is refused.
    assert!(matches!(
        d.push(&bytes, &mut out),
        Err(FrameError::TooLong { .. })
    ));
    let mut d = FrameDecoder::with_frame_len_max(64);
    let mut out = Vec::new();
    d.push(&bytes, &mut out).unwrap();
    assert_eq!(out, frames);
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn raising_the_limit_after_the_handshake() {
    let big = Frame::Body(Body {
        user: "u".into(),
        guid: [0; 32],
        size: 100_000,
        offset: 0,
        last: true,
        bytes: vec![7; 100_000],
    });
    let bytes = encode_frame(&big);
    let mut d = FrameDecoder::for_handshake();
    assert_eq!(d.frame_len_max(), HANDSHAKE_FRAME_LEN_MAX);
    d.set_frame_len_max(FRAME_LEN_MAX);
    let mut out = Vec::new();
    d.push(&bytes, &mut out).unwrap();
    assert_eq!(out, [big]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(frame in common::frame()) {
        let bytes = encode_frame(&frame);
        prop_assert_eq!(try_encode_frame(&frame), Ok(bytes.clone()));
        prop_assert_eq!(decode_frame(&bytes), Ok(frame));
    }

    #[test]
    fn split_points_do_not_matter(
        frames in vec(common::frame(), 0..8),
        cuts in vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(encode_frame).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for pair in cuts.windows(2) {
            let piece = &bytes[pair[0]..pair[1]];
            prop_assert_eq!(d.feed(piece), piece.len());
            while let Some(frame) = d.next_frame().unwrap() {
                out.push(frame);
            }
        }
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn a_flipped_bit_is_detected(frame in common::frame(), bit in any::<prop::sample::Index>()) {
        let mut bytes = encode_frame(&frame);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_frame(&bytes).is_err(), "bit {} undetected", bit);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in vec(any::<u8>(), 0..2048),
        reads in vec(1usize..300, 1..16),
        limit in FRAME_LEN_MIN..2048,
    ) {
        let mut d = FrameDecoder::with_frame_len_max(limit);
        let mut rest = &data[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = reads[i % reads.len()].min(rest.len());
            i += 1;
            let taken = d.feed(&rest[..n]);
            prop_assert!(d.buffered() <= d.buffer_bound());
            rest = &rest[taken..];
            let mut stop = false;
            loop {
                match d.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => { stop = true; break; }
                }
            }
            if stop { break; }
        }
    }

    /// Valid frames with bytes appended or cut: never a panic, never a frame
    /// other than the original ones.
    #[test]
    fn damaged_streams(frame in common::frame(), junk in vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>()) {
        let mut bytes = encode_frame(&frame);
        let cut = cut.index(bytes.len());
        let mut short = bytes[..cut].to_vec();
        short.extend_from_slice(&junk);
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        let _ = d.push(&short, &mut out);
        bytes.extend_from_slice(&junk);
        let _ = decode_frame(&bytes);
    }
}
