//! A fuzz entry point, [`fuzz_command`], shared by the property tests and a
//! future cargo-fuzz target.
//!
//! It runs arbitrary bytes through the framer (with small limits and chunk
//! sizes chosen by the first input byte), parses every frame, and checks the
//! invariants: limits are never exceeded, errors produce a response, and any
//! command that parses re-encodes to bytes that parse back to the same
//! command. The same bytes then go through the [`ResponseReader`], whose
//! parsed responses must survive an encode/parse round trip. A violated
//! invariant panics, which is what a fuzzer looks for.

use crate::command::CommandBody;
use crate::framer::{Frame, Framer, FramerEvent};
use crate::limits::{Limits, ResponseLimits};
use crate::parse::{parse_command, parse_command_bytes};
use crate::reader::{ResponseReader, parse_response_bytes};

/// Small limits so that short inputs reach every limit path.
fn fuzz_limits() -> Limits {
    Limits {
        max_line_bytes: 200,
        max_command_bytes: 600,
        max_literal_bytes: 300,
        max_non_sync_literal_bytes: 150,
        max_command_literal_bytes: 500,
        max_literals_per_command: 4,
        max_discard_bytes: 1000,
        max_pending_input_bytes: 64,
        max_tag_bytes: 16,
        max_nesting_depth: 8,
    }
}

fn check_frame(frame: &Frame, limits: &Limits) {
    let lines = frame.lines();
    let literals = frame.literals();
    assert_eq!(lines.len(), literals.len() + 1, "frame shape");
    assert!(
        lines.iter().all(|l| l.len() <= limits.max_line_bytes),
        "line limit"
    );
    assert!(
        lines.iter().map(Vec::len).sum::<usize>() <= limits.max_command_bytes,
        "command limit"
    );
    assert!(
        literals.len() <= limits.max_literals_per_command,
        "literal count limit"
    );
    let total: u64 = literals.iter().map(|l| l.data.len() as u64).sum();
    assert!(
        total <= limits.max_command_literal_bytes,
        "command literal limit"
    );
    assert!(
        literals
            .iter()
            .all(|l| l.data.len() as u64 <= limits.max_literal_bytes),
        "literal limit"
    );
}

/// Feeds `data` to the framer, parser, encoder and response reader and
/// panics if an invariant breaks. Never panics for any input otherwise.
pub fn fuzz_command(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(ctl & 0x0f) + 1;
    let limits = fuzz_limits();
    let mut framer = Framer::new(limits.clone());
    let mut sync_literals = 0u32;
    'feed: for piece in rest.chunks(chunk) {
        framer
            .feed(piece)
            .expect("a drained framer takes a chunk within its room");
        while let Some(ev) = framer.next_event() {
            match ev {
                FramerEvent::LiteralAnnounced { size, sync, .. } => {
                    assert!(size <= limits.max_literal_bytes);
                    if sync {
                        sync_literals += 1;
                        // Bits 4..7 of the control byte pick which to refuse.
                        if (ctl >> 4) & (1 << (sync_literals % 4)) != 0 {
                            assert!(framer.reject_literal());
                        } else {
                            assert!(framer.accept_literal());
                        }
                    } else {
                        assert!(size <= limits.max_non_sync_literal_bytes);
                    }
                }
                FramerEvent::Command(frame) => {
                    check_frame(&frame, &limits);
                    roundtrip_command(&frame);
                    if let Ok(cmd) = parse_command(&frame)
                        && matches!(
                            cmd.body,
                            CommandBody::Idle | CommandBody::Authenticate { .. }
                        )
                    {
                        assert!(framer.expect_raw_line());
                    }
                }
                FramerEvent::RawLine(line) => assert!(line.len() <= limits.max_line_bytes),
                FramerEvent::Error(e) => {
                    assert_eq!(e.is_fatal(), framer.is_closed());
                    assert!(e.response().ends_with(b"\r\n"));
                }
            }
            assert!(framer.pending_input() <= limits.max_pending_input_bytes);
        }
        if framer.is_closed() {
            break 'feed;
        }
    }
    fuzz_responses(rest, chunk);
}

fn roundtrip_command(frame: &Frame) {
    match parse_command(frame) {
        Ok(cmd) => {
            let mut out = Vec::new();
            cmd.encode(&mut out);
            match parse_command_bytes(&out) {
                Ok(again) => assert_eq!(again, cmd, "re-encoded command differs"),
                Err(e) => panic!(
                    "re-encoded command {:?} fails: {e}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        Err(e) => assert!(e.response().ends_with(b"\r\n")),
    }
}

fn fuzz_responses(data: &[u8], chunk: usize) {
    let limits = ResponseLimits {
        max_line_bytes: 300,
        max_total_bytes: 900,
        max_literal_bytes: 300,
        max_literals: 4,
        max_pending_input_bytes: 64,
        max_nesting_depth: 8,
    };
    let mut reader = ResponseReader::new(limits);
    for piece in data.chunks(chunk) {
        if reader.feed(piece).is_err() {
            panic!("a drained reader takes a chunk within its room");
        }
        while let Some(r) = reader.next_response() {
            match r {
                Ok(resp) => {
                    let mut out = Vec::new();
                    resp.encode(&mut out);
                    match parse_response_bytes(&out) {
                        Ok(Some(again)) => assert_eq!(again, resp, "re-encoded response differs"),
                        other => panic!(
                            "re-encoded response {:?} gives {other:?}",
                            String::from_utf8_lossy(&out)
                        ),
                    }
                }
                Err(e) => assert_eq!(e.is_fatal(), reader.is_closed()),
            }
        }
        if reader.is_closed() {
            return;
        }
    }
}
