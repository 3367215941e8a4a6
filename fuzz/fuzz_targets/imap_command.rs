//! IMAP command framing, parsing and the encode/parse round trip.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotmail_imap_proto::fuzz_command(data));
