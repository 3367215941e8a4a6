//! Message analysis (envelope, body structure, sections, search text).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotmail_mime::fuzz_message(data));
