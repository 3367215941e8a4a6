//! The LMTP session state machine on arbitrary client bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotmail_lmtp::fuzz_session(data));
