//! The LMTP fuzz entry point as a stable property test (the cargo-fuzz
//! target in `fuzz/` runs the same function under libFuzzer).

use proptest::prelude::*;

fn lmtp_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"LHLO x\r\n"[..],
        b"MAIL FROM:<a@b>\r\n",
        b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
        b"RCPT TO:<u@d>\r\n",
        b"RCPT TO:<u+f@d>\r\n",
        b"DATA\r\n",
        b"Subject: x\r\n\r\nbody\r\n",
        b"..dot\r\n",
        b".\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"QUIT\r\n",
        b"\n",
        b"\r",
        b"\x00\xff",
    ]);
    (any::<u8>(), prop::collection::vec(pieces, 0..40)).prop_map(|(c, ps)| {
        let mut v = vec![c];
        for p in ps {
            v.extend_from_slice(p);
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes_never_break_the_session(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        slotmail_lmtp::fuzz_session(&data);
    }

    #[test]
    fn lmtp_like_input_never_breaks_the_session(data in lmtp_like()) {
        slotmail_lmtp::fuzz_session(&data);
    }
}
