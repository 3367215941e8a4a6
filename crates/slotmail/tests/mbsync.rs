//! isync's `mbsync` syncs a local Maildir with a real slot over IMAP, both
//! ways, and both sides end up holding the same messages, byte for byte
//! with the same flags and folders. "Byte for byte" allows exactly the two
//! changes mbsync itself makes to every message it copies: LF line ends in
//! the Maildir versus CRLF on the IMAP side, and one `X-TUID:` tracking
//! header line it inserts at the end of the header. The IMAP and Maildir checks and changes between the syncs
//! are `tests/python/mbsync_steps.py`.
//!
//! Needs `mbsync` (scripts/test.sh installs isync).

mod common;

use common::mbsync::round_trip;
use common::*;
use std::time::Instant;

#[test]
fn mbsync_two_way_sync_leaves_both_sides_identical() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut slot = TestSlot::create(dir.path(), &[("alice", "pw-alice", false)]);
    slot.start();
    round_trip(dir.path(), slot.imap.port(), slot.lmtp.port(), &|| {
        slot.log()
    });
    assert!(
        slot.is_running(),
        "the slot died\n{}",
        tail(&slot.log(), 8000)
    );
    slot.stop();
    eprintln!(
        "mbsync round trip: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
