//! `BODY[section]` tests: every section text form, nested part numbers
//! through multiparts and `message/rfc822` parts, and non-existent parts.
//! The main fixture has the structure of the example in RFC 3501 §6.4.5.

use slotmail_mime::{MessageInfo, Section, SectionText, analyze, find_part, section_bytes};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn sec(part: &[u32], text: Option<SectionText>) -> Section {
    Section {
        part: part.to_vec(),
        text,
    }
}

fn get(raw: &[u8], info: &MessageInfo, part: &[u32], text: Option<SectionText>) -> String {
    String::from_utf8(section_bytes(raw, info, &sec(part, text)).into_owned()).unwrap()
}

fn fields(not: bool, names: &[&str]) -> Option<SectionText> {
    Some(SectionText::HeaderFields {
        not,
        fields: names.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// The part structure of the RFC 3501 §6.4.5 example.
fn rfc3501_example() -> Vec<u8> {
    crlf(
        "Subject: top
Content-Type: multipart/mixed; boundary=\"b0\"

--b0
Content-Type: text/plain

part 1
--b0
Content-Type: application/octet-stream

part 2
--b0
Content-Type: message/rfc822

Subject: three
Content-Type: multipart/mixed; boundary=\"b3\"

--b3
Content-Type: text/plain

part 3.1
--b3
Content-Type: application/octet-stream

part 3.2
--b3--
--b0
Content-Type: multipart/mixed; boundary=\"b4\"

--b4
Content-Type: image/gif

part 4.1
--b4
Content-Type: message/rfc822

Subject: four-two
Content-Type: multipart/mixed; boundary=\"b42\"

--b42
Content-Type: text/plain

part 4.2.1
--b42
Content-Type: multipart/alternative; boundary=\"b422\"

--b422
Content-Type: text/plain

part 4.2.2.1
--b422
Content-Type: text/richtext

part 4.2.2.2
--b422--
--b42--
--b4--
--b0--
",
    )
}

#[test]
fn rfc3501_part_numbering() {
    let raw = rfc3501_example();
    let info = analyze(&raw);
    let types = |p: &[u32]| {
        let part = find_part(&info.root, p).unwrap();
        format!("{}/{}", part.media_type, part.media_subtype)
    };
    assert_eq!(types(&[1]), "text/plain");
    assert_eq!(types(&[2]), "application/octet-stream");
    assert_eq!(types(&[3]), "message/rfc822");
    assert_eq!(types(&[3, 1]), "text/plain");
    assert_eq!(types(&[3, 2]), "application/octet-stream");
    assert_eq!(types(&[4]), "multipart/mixed");
    assert_eq!(types(&[4, 1]), "image/gif");
    assert_eq!(types(&[4, 2]), "message/rfc822");
    assert_eq!(types(&[4, 2, 1]), "text/plain");
    assert_eq!(types(&[4, 2, 2]), "multipart/alternative");
    assert_eq!(types(&[4, 2, 2, 1]), "text/plain");
    assert_eq!(types(&[4, 2, 2, 2]), "text/richtext");

    for (path, body) in [
        (&[1][..], "part 1"),
        (&[2], "part 2"),
        (&[3, 1], "part 3.1"),
        (&[3, 2], "part 3.2"),
        (&[4, 1], "part 4.1"),
        (&[4, 2, 1], "part 4.2.1"),
        (&[4, 2, 2, 1], "part 4.2.2.1"),
        (&[4, 2, 2, 2], "part 4.2.2.2"),
    ] {
        assert_eq!(get(&raw, &info, path, None), body, "{path:?}");
    }
}

#[test]
fn whole_message_header_and_text() {
    let raw = rfc3501_example();
    let info = analyze(&raw);
    assert_eq!(
        section_bytes(&raw, &info, &Section::default()).as_ref(),
        &raw[..]
    );
    assert_eq!(
        get(&raw, &info, &[], Some(SectionText::Header)),
        "Subject: top\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
    );
    let text = get(&raw, &info, &[], Some(SectionText::Text));
    assert!(text.starts_with("--b0\r\nContent-Type: text/plain\r\n\r\npart 1\r\n--b0\r\n"));
    assert!(text.ends_with("--b4--\r\n--b0--\r\n"));
    assert_eq!(
        get(&raw, &info, &[], Some(SectionText::Header)) + &text,
        String::from_utf8(raw.clone()).unwrap()
    );
    // MIME needs a part number.
    assert_eq!(get(&raw, &info, &[], Some(SectionText::Mime)), "");
}

#[test]
fn message_rfc822_sections() {
    let raw = rfc3501_example();
    let info = analyze(&raw);
    let three = get(&raw, &info, &[3], None);
    assert!(three.starts_with("Subject: three\r\n"));
    assert!(three.ends_with("part 3.2\r\n--b3--"));
    assert_eq!(
        get(&raw, &info, &[3], Some(SectionText::Header)),
        "Subject: three\r\nContent-Type: multipart/mixed; boundary=\"b3\"\r\n\r\n"
    );
    let text = get(&raw, &info, &[3], Some(SectionText::Text));
    assert_eq!(
        text,
        "--b3\r\nContent-Type: text/plain\r\n\r\npart 3.1\r\n--b3\r\n\
Content-Type: application/octet-stream\r\n\r\npart 3.2\r\n--b3--"
    );
    assert_eq!(
        get(&raw, &info, &[3], Some(SectionText::Mime)),
        "Content-Type: message/rfc822\r\n\r\n"
    );
    assert_eq!(
        get(&raw, &info, &[4, 2], Some(SectionText::Header)),
        "Subject: four-two\r\nContent-Type: multipart/mixed; boundary=\"b42\"\r\n\r\n"
    );
    assert_eq!(
        get(&raw, &info, &[4, 2], fields(false, &["subject"])),
        "Subject: four-two\r\n\r\n"
    );
    assert_eq!(
        get(&raw, &info, &[4, 2, 2], None),
        "--b422\r\nContent-Type: text/plain\r\n\r\npart 4.2.2.1\r\n--b422\r\n\
Content-Type: text/richtext\r\n\r\npart 4.2.2.2\r\n--b422--"
    );
    let four_two_text = get(&raw, &info, &[4, 2], Some(SectionText::Text));
    assert!(four_two_text.starts_with("--b42\r\n"));
    assert!(four_two_text.ends_with("--b422--\r\n--b42--"));
}

#[test]
fn mime_headers_of_parts() {
    let raw = rfc3501_example();
    let info = analyze(&raw);
    for (path, header) in [
        (&[1][..], "Content-Type: text/plain\r\n\r\n"),
        (
            &[4],
            "Content-Type: multipart/mixed; boundary=\"b4\"\r\n\r\n",
        ),
        (&[4, 1], "Content-Type: image/gif\r\n\r\n"),
        (
            &[4, 2, 2],
            "Content-Type: multipart/alternative; boundary=\"b422\"\r\n\r\n",
        ),
        (&[4, 2, 2, 2], "Content-Type: text/richtext\r\n\r\n"),
        (&[3, 1], "Content-Type: text/plain\r\n\r\n"),
    ] {
        assert_eq!(
            get(&raw, &info, path, Some(SectionText::Mime)),
            header,
            "{path:?}"
        );
    }
}

#[test]
fn nonexistent_sections_are_empty() {
    let raw = rfc3501_example();
    let info = analyze(&raw);
    for (path, text) in [
        (&[0][..], None),
        (&[5], None),
        (&[1, 1], None),
        (&[4, 3], None),
        (&[4, 2, 3], None),
        (&[4, 2, 2, 1, 1], None),
        (&[u32::MAX], None),
        // HEADER/TEXT need a message/rfc822 part.
        (&[1], Some(SectionText::Header)),
        (&[4], Some(SectionText::Text)),
        (&[4, 1], fields(false, &["Content-Type"])),
        (&[9], Some(SectionText::Mime)),
    ] {
        assert_eq!(
            get(&raw, &info, path, text.clone()),
            "",
            "{path:?} {text:?}"
        );
    }
}

#[test]
fn single_part_message_numbering() {
    let raw = crlf("Subject: single\nContent-Type: text/plain\n\nthe body\n");
    let info = analyze(&raw);
    assert_eq!(get(&raw, &info, &[1], None), "the body\r\n");
    assert_eq!(
        get(&raw, &info, &[], Some(SectionText::Text)),
        "the body\r\n"
    );
    // Part 1's MIME header is the message header.
    assert_eq!(
        get(&raw, &info, &[1], Some(SectionText::Mime)),
        "Subject: single\r\nContent-Type: text/plain\r\n\r\n"
    );
    assert_eq!(get(&raw, &info, &[2], None), "");
    assert_eq!(get(&raw, &info, &[1, 1], None), "");
    assert_eq!(get(&raw, &info, &[1], Some(SectionText::Header)), "");

    // A message/rfc822 message whose embedded message is single-part:
    // 1 is the embedded message, 1.1 its body, 1.HEADER its header.
    let raw = crlf("Content-Type: message/rfc822\n\nSubject: inner\n\ninner body\n");
    let info = analyze(&raw);
    assert_eq!(
        get(&raw, &info, &[1], None),
        "Subject: inner\r\n\r\ninner body\r\n"
    );
    assert_eq!(get(&raw, &info, &[1, 1], None), "inner body\r\n");
    assert_eq!(
        get(&raw, &info, &[1], Some(SectionText::Header)),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(
        get(&raw, &info, &[1], Some(SectionText::Text)),
        "inner body\r\n"
    );
    assert_eq!(
        get(&raw, &info, &[1, 1], Some(SectionText::Mime)),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(get(&raw, &info, &[1, 2], None), "");
}

#[test]
fn header_fields_and_not() {
    let raw = crlf(
        "Received: from a
\tby b; Mon, 1 Jan 2024 00:00:00 +0000
From: alice@example.com
To: bob@example.com,
  carol@example.com
subject: Hello
Subject: second
X-Other: 1

body
",
    );
    let info = analyze(&raw);
    assert_eq!(
        get(&raw, &info, &[], fields(false, &["SUBJECT", "to"])),
        "To: bob@example.com,\r\n  carol@example.com\r\nsubject: Hello\r\nSubject: second\r\n\r\n"
    );
    assert_eq!(
        get(
            &raw,
            &info,
            &[],
            fields(true, &["Received", "TO", "subject"])
        ),
        "From: alice@example.com\r\nX-Other: 1\r\n\r\n"
    );
    // No match: just the blank line.
    assert_eq!(get(&raw, &info, &[], fields(false, &["Cc"])), "\r\n");
    assert_eq!(get(&raw, &info, &[], fields(false, &[])), "\r\n");
    // NOT of nothing: the whole header.
    assert_eq!(
        get(&raw, &info, &[], fields(true, &[])),
        get(&raw, &info, &[], Some(SectionText::Header))
    );
    // A field name that is a prefix of another does not match it.
    assert_eq!(get(&raw, &info, &[], fields(false, &["X-Oth"])), "\r\n");
}

#[test]
fn header_fields_without_final_line_end() {
    // Header at end of input, no line end after the last field: the
    // returned field still ends in CRLF, followed by the blank line.
    let raw = b"From: a@b\r\nSubject: s";
    let info = analyze(raw);
    assert_eq!(
        get(raw, &info, &[], fields(false, &["subject"])),
        "Subject: s\r\n\r\n"
    );
    // Bare-LF fields are returned as they are.
    let raw = b"Subject: s\n\nbody";
    let info = analyze(raw);
    assert_eq!(
        get(raw, &info, &[], fields(false, &["subject"])),
        "Subject: s\n\r\n"
    );
}

#[test]
fn mismatched_info_never_panics() {
    // `info` of a different (longer) message: ranges point past the input.
    let raw = rfc3501_example();
    let info = analyze(&raw);
    let short = &raw[..20];
    for path in [&[][..], &[1], &[3], &[4, 2, 2, 2]] {
        for text in [
            None,
            Some(SectionText::Header),
            Some(SectionText::Text),
            Some(SectionText::Mime),
            fields(false, &["subject"]),
            fields(true, &["subject"]),
        ] {
            let is_fields = matches!(text, Some(SectionText::HeaderFields { .. }));
            let out = section_bytes(short, &info, &sec(path, text));
            if is_fields {
                // Nothing (not a message), or whatever fits of the header
                // followed by the blank line.
                assert!(out.is_empty() || out.ends_with(b"\r\n"), "{path:?}");
            } else {
                // A slice of the (short) input or empty, never out of range.
                assert!(out.len() <= short.len(), "{path:?}");
            }
        }
    }
}
