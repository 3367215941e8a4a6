//! Hostile structure: very deep nesting and very many parts must finish
//! quickly, stay within `MIME_DEPTH_MAX` / `PARTS_MAX`, and still produce
//! valid, consistent results.

use std::time::{Duration, Instant};

use slotmail_mime::{
    MIME_DEPTH_MAX, MessageInfo, PARTS_MAX, Part, PartKind, Section, analyze, body_text,
    section_bytes,
};

/// Generous even for unoptimized test builds on a slow machine; the
/// point is "bounded", not a benchmark.
const TIME_LIMIT: Duration = Duration::from_secs(20);

fn depth(p: &Part) -> usize {
    match &p.kind {
        PartKind::Single => 0,
        PartKind::Multipart(c) => 1 + c.iter().map(depth).max().unwrap_or(0),
        PartKind::Message { message, .. } => 1 + depth(message),
    }
}

fn nested_multiparts(levels: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for i in 0..levels {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"lvl{i:06}\"\r\n\r\n--lvl{i:06}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for i in (0..levels).rev() {
        raw.extend_from_slice(format!("--lvl{i:06}--\r\n").as_bytes());
    }
    raw
}

#[test]
fn ten_thousand_nested_multiparts() {
    let raw = nested_multiparts(10_000);
    let start = Instant::now();
    let info = analyze(&raw);
    let text = body_text(&raw);
    assert!(start.elapsed() < TIME_LIMIT, "took {:?}", start.elapsed());

    assert_eq!(depth(&info.root), MIME_DEPTH_MAX);
    assert_eq!(info.root.count(), MIME_DEPTH_MAX + 1);
    // The part at the limit is opaque and holds everything below it.
    let mut p = &info.root;
    while let PartKind::Multipart(c) = &p.kind {
        assert_eq!(c.len(), 1);
        p = &c[0];
    }
    assert_eq!(
        (p.media_type.as_str(), p.media_subtype.as_str()),
        ("application", "octet-stream")
    );
    let opaque = p.body.slice(&raw);
    assert!(
        opaque.starts_with(b"--lvl000064\r\nContent-Type: multipart/mixed; boundary=\"lvl000065\"")
    );
    assert!(opaque.ends_with(b"--lvl000064--"));
    // Nothing below the limit is searched as text.
    assert_eq!(text, "");
    assert_eq!(
        info.bodystructure
            .matches("\"APPLICATION\" \"OCTET-STREAM\"")
            .count(),
        1
    );
    assert_eq!(
        MessageInfo::from_bytes(&info.to_bytes()).unwrap(),
        info,
        "deepest allowed tree round-trips"
    );
    // Part numbers past the limit name nothing.
    let deep = Section {
        part: vec![1; MIME_DEPTH_MAX + 5],
        text: None,
    };
    assert!(section_bytes(&raw, &info, &deep).is_empty());
}

#[test]
fn ten_thousand_nested_messages() {
    let mut raw = Vec::new();
    for i in 0..10_000 {
        raw.extend_from_slice(
            format!("Subject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"Subject: bottom\r\n\r\nbottom text\r\n");
    let start = Instant::now();
    let info = analyze(&raw);
    assert!(start.elapsed() < TIME_LIMIT, "took {:?}", start.elapsed());
    assert_eq!(depth(&info.root), MIME_DEPTH_MAX);
    assert!(info.envelope.contains("\"level 0\""));
    // BODYSTRUCTURE nests one envelope per descended level.
    assert_eq!(
        info.bodystructure.matches("\"level ").count(),
        MIME_DEPTH_MAX
    );
    assert_eq!(MessageInfo::from_bytes(&info.to_bytes()).unwrap(), info);
}

#[test]
fn hundred_thousand_parts() {
    let mut raw =
        b"Subject: many\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n".to_vec();
    for i in 0..100_000 {
        raw.extend_from_slice(
            format!("--sep\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"--sep--\r\n");
    let start = Instant::now();
    let info = analyze(&raw);
    assert!(start.elapsed() < TIME_LIMIT, "took {:?}", start.elapsed());

    // The message itself plus PARTS_MAX - 1 parts; the rest is not recorded.
    assert_eq!(info.root.count(), PARTS_MAX);
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    assert_eq!(parts.len(), PARTS_MAX - 1);
    assert_eq!(parts[0].body.slice(&raw), b"part 0");
    assert_eq!(
        parts[PARTS_MAX - 2].body.slice(&raw),
        format!("part {}", PARTS_MAX - 2).as_bytes()
    );
    // The multipart body still covers the whole rest of the message.
    assert_eq!(info.root.body.end as usize, raw.len());
    let back = MessageInfo::from_bytes(&info.to_bytes()).unwrap();
    assert_eq!(back, info);
    let last = Section {
        part: vec![PARTS_MAX as u32 - 1],
        text: None,
    };
    assert_eq!(
        section_bytes(&raw, &info, &last).as_ref(),
        format!("part {}", PARTS_MAX - 2).as_bytes()
    );
    let missing = Section {
        part: vec![PARTS_MAX as u32],
        text: None,
    };
    assert!(section_bytes(&raw, &info, &missing).is_empty());
}

#[test]
fn many_headers_and_long_lines() {
    let mut raw = Vec::new();
    for i in 0..200_000 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"Subject: ");
    raw.extend(std::iter::repeat_n(b'a', 5_000_000));
    raw.extend_from_slice(b"\r\n\r\nbody\r\n");
    let start = Instant::now();
    let info = analyze(&raw);
    assert!(start.elapsed() < TIME_LIMIT, "took {:?}", start.elapsed());
    assert!(info.envelope.len() > 5_000_000);
    assert_eq!(info.root.body.slice(&raw), b"body\r\n");
}
