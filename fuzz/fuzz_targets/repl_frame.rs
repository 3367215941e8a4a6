//! The replication frame decoder, handshake machines and body receiver.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotmail_repl_proto::fuzz_decode(data));
