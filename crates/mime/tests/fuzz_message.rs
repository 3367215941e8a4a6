//! The message fuzz entry point as a stable property test (the cargo-fuzz
//! target in `fuzz/` runs the same function under libFuzzer): arbitrary
//! bytes, MIME-like token soups, well-formed MIME trees and mutations of
//! them, and nesting and part counts past the analysis bounds.

use proptest::prelude::*;
use slotmail_mime::{MIME_DEPTH_MAX, PARTS_MAX, PartKind, analyze};

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

/// A MIME entity tree.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(String, u8),
    Multipart(Vec<Tree>),
    Message(Box<Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = ("[ -~]{0,30}", 0u8..3).prop_map(|(t, enc)| Tree::Leaf(t, enc));
    leaf.prop_recursive(6, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Tree::Multipart),
            inner.prop_map(|t| Tree::Message(Box::new(t))),
        ]
    })
}

/// The entity's header fields and body; `id` makes boundaries unique.
fn render(t: &Tree, id: &mut u32, out: &mut Vec<u8>) {
    match t {
        Tree::Leaf(text, enc) => {
            let cte = ["7bit", "quoted-printable", "base64"][usize::from(*enc)];
            out.extend_from_slice(
                format!(
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{text}\r\n"
                )
                .as_bytes(),
            );
        }
        Tree::Multipart(parts) => {
            *id += 1;
            let b = format!("=_b{id}");
            out.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\npreamble\r\n")
                    .as_bytes(),
            );
            for p in parts {
                out.extend_from_slice(format!("--{b}\r\n").as_bytes());
                render(p, id, out);
            }
            out.extend_from_slice(format!("--{b}--\r\nepilogue\r\n").as_bytes());
        }
        Tree::Message(inner) => {
            out.extend_from_slice(
                b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: a@b.test\r\n",
            );
            render(inner, id, out);
        }
    }
}

fn message(t: &Tree) -> Vec<u8> {
    let mut out = b"From: x@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n".to_vec();
    render(t, &mut 0, &mut out);
    out
}

fn leaves(t: &Tree) -> usize {
    match t {
        Tree::Leaf(..) => 1,
        Tree::Multipart(ps) => ps.iter().map(leaves).sum(),
        Tree::Message(m) => leaves(m),
    }
}

fn part_leaves(p: &slotmail_mime::Part) -> usize {
    match &p.kind {
        PartKind::Single => 1,
        PartKind::Multipart(ps) => ps.iter().map(part_leaves).sum(),
        PartKind::Message { message, .. } => part_leaves(message),
    }
}

/// A chain of `depth` nested multiparts (or message/rfc822 parts).
fn nested(depth: usize, rfc822: bool) -> Vec<u8> {
    let mut out = b"From: x@example.org\r\nSubject: deep\r\n".to_vec();
    for i in 0..depth {
        if rfc822 {
            out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n");
        } else {
            out.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"d{i}\"\r\n\r\n--d{i}\r\n")
                    .as_bytes(),
            );
        }
    }
    out.extend_from_slice(b"\r\nleaf\r\n");
    if !rfc822 {
        for i in (0..depth).rev() {
            out.extend_from_slice(format!("--d{i}--\r\n").as_bytes());
        }
    }
    out
}

/// A flat multipart of `n` empty-ish parts.
fn flat(n: usize) -> Vec<u8> {
    let mut out =
        b"From: x@example.org\r\nContent-Type: multipart/mixed; boundary=f\r\n\r\n".to_vec();
    for _ in 0..n {
        out.extend_from_slice(b"--f\r\n\r\nx\r\n");
    }
    out.extend_from_slice(b"--f--\r\n");
    out
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

    /// A well-formed tree is found whole: as many leaves as were written.
    #[test]
    fn well_formed_trees_are_found_whole(t in tree()) {
        let raw = message(&t);
        slotmail_mime::fuzz_message(&raw);
        let info = analyze(&raw);
        prop_assert_eq!(part_leaves(&info.root), leaves(&t), "{}", String::from_utf8_lossy(&raw));
    }

    /// Valid trees with bytes flipped, inserted or deleted, and cut short.
    #[test]
    fn mutated_trees(
        t in tree(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut raw = message(&t);
        for (at, op, byte) in edits {
            let i = at.index(raw.len());
            match op {
                0 => raw[i] ^= byte.max(1),
                1 => raw.insert(i, byte),
                _ => {
                    raw.remove(i);
                }
            }
        }
        let keep = cut.index(raw.len() + 1).max(raw.len() / 2);
        raw.truncate(keep);
        slotmail_mime::fuzz_message(&raw);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    /// Nesting past MIME_DEPTH_MAX and part counts past PARTS_MAX stay
    /// within the bounds (fuzz_message checks them).
    #[test]
    fn nesting_and_part_counts_past_the_bounds(
        depth in (MIME_DEPTH_MAX - 2)..(MIME_DEPTH_MAX * 4),
        rfc822 in any::<bool>(),
        parts in (PARTS_MAX - 5)..(PARTS_MAX + 50),
    ) {
        slotmail_mime::fuzz_message(&nested(depth, rfc822));
        slotmail_mime::fuzz_message(&flat(parts));
    }
}
