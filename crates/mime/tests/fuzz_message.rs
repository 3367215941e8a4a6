//! The message fuzz entry point as a stable property test (the cargo-fuzz
//! target in `fuzz/` runs the same function under libFuzzer).

use proptest::prelude::*;

fn mime_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"Content-Type: multipart/mixed; boundary=b\r\n"[..],
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"=\r\n",
        b"=C3=\r\n",
        b"aGVsbG8=\r\n",
        b"text\r\n",
        b"\n",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|ps| ps.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..4096)) {
        slotmail_mime::fuzz_message(&raw);
    }

    #[test]
    fn mime_like_bytes(raw in mime_like()) {
        slotmail_mime::fuzz_message(&raw);
    }
}
