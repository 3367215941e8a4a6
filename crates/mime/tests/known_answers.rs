//! Known-answer tests: ENVELOPE, BODY and BODYSTRUCTURE of handcrafted
//! messages, compared with the exact strings RFC 3501 / RFC 9051 define
//! (and, where noted, with Dovecot's published test vectors).

use slotmail_mime::{
    ByteRange, PartKind, analyze, body_text, canonicalize_line_endings, header_values,
};

/// Writes `s` with CRLF line ends (the fixtures are written with `\n`).
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

#[test]
fn simple_text_message() {
    // The APPEND example message of RFC 3501 §6.3.11.
    let raw = crlf(
        "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
From: Fred Foobar <foobar@Blurdybloop.COM>
Subject: afternoon meeting
To: mooch@owatagu.siam.edu
Message-Id: <B27397-0100000@Blurdybloop.COM>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

Hello Joe, do you think we can meet at 3:30 tomorrow?
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.envelope,
        "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon meeting\" \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu\")) NIL NIL NIL \"<B27397-0100000@Blurdybloop.COM>\")"
    );
    assert_eq!(
        info.bodystructure,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL)"
    );
    assert_eq!(
        info.body,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1)"
    );
    // 1994-02-08T05:52:25Z, written in -0800: the sent day is 7 February.
    assert_eq!(info.sent_date, Some(760_686_745));
    assert_eq!(info.sent_date_offset, -8 * 3600);
    assert_eq!(info.sent_day(), Some(8803));
    // Hand-computed offsets: the header is 255 bytes including the blank line.
    assert_eq!(info.root.header, ByteRange { start: 0, end: 255 });
    assert_eq!(
        info.root.body,
        ByteRange {
            start: 255,
            end: 310
        }
    );
    assert_eq!(raw.len(), 310);
    assert_eq!(info.root.kind, PartKind::Single);
    assert_eq!(
        (
            info.root.media_type.as_str(),
            info.root.media_subtype.as_str()
        ),
        ("text", "plain")
    );
}

#[test]
fn message_without_headers() {
    let info = analyze(&crlf("\nJust a body\n"));
    assert_eq!(info.envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    assert_eq!(
        info.bodystructure,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)"
    );
    assert_eq!(info.root.header, ByteRange { start: 0, end: 2 });
    assert_eq!(info.root.body, ByteRange { start: 2, end: 15 });
    assert_eq!(info.sent_date, None);

    // No blank line at all: everything is header, the body is empty.
    let info = analyze(b"just some text without a colon");
    assert_eq!(info.envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    assert_eq!(
        info.body,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)"
    );
    assert_eq!(info.root.header, ByteRange { start: 0, end: 30 });
    assert_eq!(info.root.body, ByteRange { start: 30, end: 30 });

    // The empty message.
    let info = analyze(b"");
    assert_eq!(
        info.bodystructure,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
    );
}

#[test]
fn multipart_alternative() {
    let raw = crlf(
        "From: a@example.com
To: b@example.com
Subject: alt
Date: Thu, 15 Feb 2007 01:02:03 +0200
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"XX\"

preamble
--XX
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

caf=C3=A9
--XX
Content-Type: text/html; charset=utf-8

<p>caf&eacute;</p>
--XX--
epilogue
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.envelope,
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"alt\" ((NIL NIL \"a\" \"example.com\")) \
((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) \
((NIL NIL \"b\" \"example.com\")) NIL NIL NIL NIL)"
    );
    assert_eq!(
        info.bodystructure,
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 0 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 18 0 NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"XX\") NIL NIL NIL)"
    );
    assert_eq!(
        info.body,
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 0)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 18 0) \"alternative\")"
    );
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart: {:?}", info.root.kind);
    };
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body.slice(&raw), b"caf=C3=A9");
    assert_eq!(
        parts[0].header.slice(&raw),
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(parts[1].body.slice(&raw), b"<p>caf&eacute;</p>");
    assert!(
        info.root
            .body
            .slice(&raw)
            .starts_with(b"preamble\r\n--XX\r\n")
    );
    assert!(
        info.root
            .body
            .slice(&raw)
            .ends_with(b"--XX--\r\nepilogue\r\n")
    );
    assert_eq!(body_text(&raw), "café\ncafé\n");
}

#[test]
fn multipart_mixed_with_base64_attachment() {
    let raw = crlf(
        "From: \"Doe, Jane\" <jane@example.com>
To: bob@example.com, \"Carol\" <carol@example.org>
Cc: dave@example.net
Subject: report
Date: Thu, 15 Feb 2007 01:02:03 +0200
Message-ID: <m1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=frontier

This is a multi-part message in MIME format.
--frontier
Content-Type: text/plain

See attached.
--frontier
Content-Type: application/pdf; name=\"report.pdf\"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename=\"report.pdf\"
Content-ID: <att1@example.com>
Content-Description: The report

JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K
--frontier--
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.envelope,
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"report\" \
((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
((NIL NIL \"bob\" \"example.com\")(\"Carol\" NIL \"carol\" \"example.org\")) \
((NIL NIL \"dave\" \"example.net\")) NIL NIL \"<m1@example.com>\")"
    );
    assert_eq!(
        info.bodystructure,
        "((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 0 NIL NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"report.pdf\") \"<att1@example.com>\" \"The report\" \"base64\" 64 \
NIL (\"attachment\" (\"filename\" \"report.pdf\")) NIL NIL) \
\"mixed\" (\"boundary\" \"frontier\") NIL NIL NIL)"
    );
    assert_eq!(
        info.body,
        "((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 0)\
(\"application\" \"pdf\" (\"name\" \"report.pdf\") \"<att1@example.com>\" \"The report\" \"base64\" 64) \
\"mixed\")"
    );
    // Only text parts are searched; the PDF is not.
    assert_eq!(body_text(&raw), "See attached.");
}

#[test]
fn nested_multipart() {
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=\"outer\"

--outer
Content-Type: multipart/alternative; boundary=\"inner\"

--inner
Content-Type: text/plain; charset=us-ascii

plain
--inner
Content-Type: text/html; charset=us-ascii

<b>html</b>
--inner--
--outer
Content-Type: image/gif
Content-Transfer-Encoding: base64

R0lGODlh
--outer--
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.bodystructure,
        "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)\
(\"image\" \"gif\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"
    );
    assert_eq!(
        info.body,
        "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 0)\
(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 0) \"alternative\")\
(\"image\" \"gif\" NIL NIL NIL \"base64\" 8) \"mixed\")"
    );
    let PartKind::Multipart(outer) = &info.root.kind else {
        panic!("not multipart");
    };
    // The inner multipart's body ends at its close delimiter; the CRLF
    // after it belongs to the next outer delimiter.
    let inner_body = outer[0].body.slice(&raw);
    assert!(inner_body.starts_with(b"--inner\r\n"));
    assert!(inner_body.ends_with(b"\r\n--inner--"));
}

/// Dovecot's own BODYSTRUCTURE test message (lib-imap
/// test-imap-bodystructure.c), in CRLF form. Dovecot writes its defaults in
/// lower case; the expected value below is Dovecot's with our upper-case
/// defaults (`"CHARSET" "US-ASCII"`, `"7BIT"`) and the outer parentheses.
#[test]
fn message_rfc822_attached_matches_dovecot() {
    let raw = crlf(
        "From: user@domain.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary=\"foo
 bar\"

Root MIME prologue

--foo bar
Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"
Content-ID: <foo@example.com>
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline; foo=bar
Content-Description: hellodescription
Content-Language: en, fi, se
Content-Location: http://example.com/test.txt

hello

--foo bar
Content-Type: message/rfc822

From: sub@domain.org
To: sub-to1@domain.org, sub-to2@domain.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: submsg
Content-Type: multipart/alternative; boundary=\"sub1\"

Sub MIME prologue
--sub1
Content-Type: text/html
Content-Transfer-Encoding: 8bit

<p>Hello world</p>

--sub1
Content-Type: text/plain
Content-Transfer-Encoding: ?invalid

Hello another world

--sub1--
Sub MIME epilogue

--foo bar--
Root MIME epilogue
",
    );
    let info = analyze(&raw);
    let sub_envelope = "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" \
((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
((NIL NIL \"sub\" \"domain.org\")) \
((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL)";
    assert_eq!(
        info.bodystructure,
        format!(
            "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
\"<foo@example.com>\" \"hellodescription\" \"7BIT\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
(\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")\
(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 412 {sub_envelope} \
((\"text\" \"html\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)\
(\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 21 1 NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        info.body,
        format!(
            "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
\"<foo@example.com>\" \"hellodescription\" \"7BIT\" 7 1)\
(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 412 {sub_envelope} \
((\"text\" \"html\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"8bit\" 20 1)\
(\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 21 1) \"alternative\") 21) \
\"mixed\")"
        )
    );
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    let PartKind::Message { envelope, message } = &parts[1].kind else {
        panic!("part 2 is not message/rfc822");
    };
    assert_eq!(envelope, sub_envelope);
    assert!(
        message
            .header
            .slice(&raw)
            .starts_with(b"From: sub@domain.org\r\n")
    );
    assert!(message.body.slice(&raw).ends_with(b"Sub MIME epilogue\r\n"));
    assert_eq!(message.header.start, parts[1].body.start);
    assert_eq!(message.body.end, parts[1].body.end);
}

/// Dovecot's ENVELOPE test vectors (lib-imap test-imap-envelope.c, taken
/// from imaptest), including groups, source routes and names from comments.
#[test]
fn group_addresses_and_dovecot_envelopes() {
    let cases: [(&str, &str); 5] = [
        (
            "Message-ID: <msg@id>
In-Reply-To: <reply@to.id>
Date: Thu, 15 Feb 2007 01:02:03 +0200
Subject: subject header
From: From Real <fromuser@fromdomain.org>
To: To Real <touser@todomain.org>
Cc: Cc Real <ccuser@ccdomain.org>
Bcc: Bcc Real <bccuser@bccdomain.org>
Sender: Sender Real <senderuser@senderdomain.org>
Reply-To: ReplyTo Real <replytouser@replytodomain.org>

body
",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" \
((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) \
((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) \
((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) \
((\"To Real\" NIL \"touser\" \"todomain.org\")) \
((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) \
((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) \
\"<reply@to.id>\" \"<msg@id>\")",
        ),
        (
            "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: user@domain

body
",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL NIL \"user\" \"domain\")) \
((NIL NIL \"user\" \"domain\")) ((NIL NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
        ),
        (
            "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: user@domain (Real Name)
To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;
Cc: group:;, group2: (foo) ;

body
",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
((\"Real Name\" NIL \"user\" \"domain\")) \
((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")(NIL NIL NIL NIL)\
(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) \
((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) \
NIL NIL NIL)",
        ),
        (
            "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: user@domain (Real Name)
Sender: 
Reply-To: 

body
",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
((\"Real Name\" NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
        ),
        (
            "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: <@route:user@domain>

body
",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
((NIL \"@route\" \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
        ),
    ];
    for (message, expected) in cases {
        // Dovecot's vectors are LF-only; both forms must give the same result.
        assert_eq!(
            analyze(message.as_bytes()).envelope,
            expected,
            "LF: {message}"
        );
        assert_eq!(
            analyze(&crlf(message)).envelope,
            expected,
            "CRLF: {message}"
        );
    }
    let info = analyze(&crlf("To: undisclosed-recipients:;\nSubject: x\n\n"));
    assert_eq!(
        info.envelope,
        "(NIL \"x\" NIL NIL NIL ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)"
    );
}

#[test]
fn missing_date() {
    let raw = crlf("From: a@b.c\nSubject: no date\n\nbody\n");
    let info = analyze(&raw);
    assert_eq!(
        info.envelope,
        "(NIL \"no date\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) \
((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)"
    );
    assert_eq!(info.sent_date, None);
    assert_eq!(info.sent_day(), None);
    // A Date header that is not a date is still reported as it is.
    let info = analyze(&crlf("Date: sometime soon\n\n"));
    assert!(info.envelope.starts_with("(\"sometime soon\" NIL"));
    assert_eq!(info.sent_date, None);
}

#[test]
fn rfc2047_words_stay_encoded_in_envelope() {
    let raw = crlf(
        "Subject: =?ISO-8859-1?Q?Caf=E9?= au
 lait
From: =?UTF-8?B?SsO2cmc=?= <joerg@example.de>
To: \"=?utf-8?q?Ren=C3=A9?=\" <rene@example.fr>

x
",
    );
    let info = analyze(&raw);
    // RFC 3501 §7.4.2 / RFC 9051 §7.5.2: the envelope carries the header
    // strings; decoding RFC 2047 words is the client's job.
    assert_eq!(
        info.envelope,
        "(NIL \"=?ISO-8859-1?Q?Caf=E9?= au lait\" \
((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) \
((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) \
((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) \
((\"=?utf-8?q?Ren=C3=A9?=\" NIL \"rene\" \"example.fr\")) NIL NIL NIL NIL)"
    );
    // SEARCH sees decoded text.
    assert_eq!(header_values(&raw, "subject"), ["Café au lait"]);
    assert_eq!(header_values(&raw, "FROM"), ["Jörg <joerg@example.de>"]);
}

#[test]
fn bare_lf_message() {
    let raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nline1\nline2\n--b\nContent-Type: text/plain; charset=utf-8\n\nzwei\n--b--\n";
    let info = analyze(raw);
    assert_eq!(
        info.bodystructure,
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)\
(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 4 0 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"
    );
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    assert_eq!(info.root.header, ByteRange { start: 0, end: 55 });
    // Part 1 has an empty MIME header: just the blank line.
    assert_eq!(parts[0].header, ByteRange { start: 59, end: 60 });
    assert_eq!(parts[0].body.slice(raw), b"line1\nline2");
    assert_eq!(parts[1].body.slice(raw), b"zwei");

    // Canonicalized to CRLF, sizes count the CRs.
    let canon = canonicalize_line_endings(raw);
    assert_eq!(
        canon.len(),
        raw.len() + raw.iter().filter(|&&b| b == b'\n').count()
    );
    let info = analyze(&canon);
    assert!(info.bodystructure.starts_with(
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)"
    ));
    // Already canonical input is returned without copying.
    assert!(matches!(
        canonicalize_line_endings(&canon),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn eight_bit_body_and_headers() {
    let raw = b"Subject: Caf\xe9 cr\xe8me\r\nFrom: J\xfcrgen <j@example.de>\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Caf\xe9\r\n\xe0 bient\xf4t\r\n";
    let info = analyze(raw);
    // Non-UTF-8 header bytes are read as windows-1252 and, being non-ASCII,
    // sent as literals.
    assert_eq!(
        info.envelope,
        "(NIL {12}\r\nCafé crème (({7}\r\nJürgen NIL \"j\" \"example.de\")) \
(({7}\r\nJürgen NIL \"j\" \"example.de\")) (({7}\r\nJürgen NIL \"j\" \"example.de\")) \
NIL NIL NIL NIL NIL)"
    );
    assert_eq!(
        info.bodystructure,
        "(\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"8bit\" 17 2 NIL NIL NIL NIL)"
    );
    assert_eq!(body_text(raw), "Café\r\nà bientôt\r\n");

    // UTF-8 headers (RFC 6532) pass through as literals.
    let info = analyze("Subject: Grüße\r\n\r\n".as_bytes());
    assert_eq!(
        info.envelope,
        "(NIL {7}\r\nGrüße NIL NIL NIL NIL NIL NIL NIL NIL)"
    );
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    let raw = crlf(
        "Content-Type: multipart/digest; boundary=d

--d

Subject: first

one
--d
Content-Type: text/plain

not a message
--d--
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.body,
        "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 21 \
(NIL \"first\" NIL NIL NIL NIL NIL NIL NIL NIL) \
(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0) 2)\
(\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 0) \"digest\")"
    );
}

#[test]
fn malformed_structures_stay_valid() {
    // Missing close delimiter: the last part runs to the end.
    let info = analyze(&crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nunterminated\n",
    ));
    assert_eq!(
        info.body,
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 1) \"mixed\")"
    );
    // A boundary that never appears: no parts; one empty part is reported.
    let info = analyze(&crlf(
        "Content-Type: multipart/mixed; boundary=b\n\nno delimiters\n",
    ));
    assert_eq!(
        info.body,
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"mixed\")"
    );
    assert_eq!(info.root.kind, PartKind::Multipart(Vec::new()));
    // Multipart without a boundary parameter is an invalid Content-Type.
    let info = analyze(&crlf("Content-Type: multipart/mixed\n\nbody\n"));
    assert_eq!(
        info.body,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1)"
    );
    // An inner part without its close delimiter ends at the outer one.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=o

--o
Content-Type: multipart/alternative; boundary=i

--i

inner
--o

second
--o--
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.body,
        "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0) \"alternative\")\
(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 0) \"mixed\")"
    );
    // Boundaries that are prefixes of each other: the longest match wins.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=ab

--ab
Content-Type: multipart/mixed; boundary=abc

--abc

x
--abc--
--ab--
",
    );
    let info = analyze(&raw);
    assert_eq!(
        info.body,
        "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0) \"mixed\") \"mixed\")"
    );
}

#[test]
fn text_part_without_charset_and_parameters() {
    let info = analyze(&crlf("Content-Type: text/html; format=flowed\n\n<p>\n"));
    assert_eq!(
        info.body,
        "(\"text\" \"html\" (\"format\" \"flowed\" \"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1)"
    );
    let info = analyze(&crlf(
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n\nAAAA\n",
    ));
    assert_eq!(
        info.body,
        "(\"application\" \"octet-stream\" NIL NIL NIL \"BASE64\" 6)"
    );
}

/// A multipart holding a message/rfc822 part whose message is itself
/// message/rfc822. (mail-parser 0.11.9's `MessageParser::parse` panics on
/// this input, "Invalid part ID, could not find multipart" — one reason the
/// structure parser here is our own.) Offsets are hand-computed.
#[test]
fn message_in_message_in_multipart() {
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=b

--b
Content-Type: message/rfc822

Content-Type: message/rfc822

Content-Type: text/plain

hi
--b--
",
    );
    assert_eq!(raw.len(), 153);
    let info = analyze(&raw);
    let nil_env = "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
    assert_eq!(
        info.bodystructure,
        format!(
            "((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 62 {nil_env} \
(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 30 {nil_env} \
(\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 0 NIL NIL NIL NIL) \
2 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"
        )
    );
    assert_eq!(info.root.header, ByteRange { start: 0, end: 45 });
    assert_eq!(
        info.root.body,
        ByteRange {
            start: 45,
            end: 153
        }
    );
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    assert_eq!(parts[0].header, ByteRange { start: 50, end: 82 });
    assert_eq!(
        parts[0].body,
        ByteRange {
            start: 82,
            end: 144
        }
    );
    let PartKind::Message {
        message: level2, ..
    } = &parts[0].kind
    else {
        panic!("part 1 is not message/rfc822");
    };
    assert_eq!(
        level2.header,
        ByteRange {
            start: 82,
            end: 114
        }
    );
    assert_eq!(
        level2.body,
        ByteRange {
            start: 114,
            end: 144
        }
    );
    let PartKind::Message {
        message: level3, ..
    } = &level2.kind
    else {
        panic!("embedded message is not message/rfc822");
    };
    assert_eq!(
        level3.header,
        ByteRange {
            start: 114,
            end: 142
        }
    );
    assert_eq!(
        level3.body,
        ByteRange {
            start: 142,
            end: 144
        }
    );
    assert_eq!(level3.body.slice(&raw), b"hi");
}

/// Offsets in malformed structures, hand-computed. (mail-parser 0.11.9
/// gives different answers here: it lets the unterminated inner part run
/// over the outer delimiter, swallowing part 2, and records no part for a
/// header cut off by a delimiter.)
#[test]
fn malformed_offsets_hand_computed() {
    // Inner multipart without its close delimiter.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=o

--o
Content-Type: multipart/alternative; boundary=i

--i

inner
--o

second
--o--
",
    );
    assert_eq!(raw.len(), 137);
    let info = analyze(&raw);
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0].header,
        ByteRange {
            start: 50,
            end: 101
        }
    );
    assert_eq!(
        parts[0].body,
        ByteRange {
            start: 101,
            end: 113
        }
    );
    let PartKind::Multipart(inner) = &parts[0].kind else {
        panic!("part 1 is not multipart");
    };
    assert_eq!(inner.len(), 1);
    assert_eq!(
        inner[0].header,
        ByteRange {
            start: 106,
            end: 108
        }
    );
    assert_eq!(
        inner[0].body,
        ByteRange {
            start: 108,
            end: 113
        }
    );
    assert_eq!(
        parts[1].header,
        ByteRange {
            start: 120,
            end: 122
        }
    );
    assert_eq!(
        parts[1].body,
        ByteRange {
            start: 122,
            end: 128
        }
    );

    // A part header cut off by the next delimiter: the CRLF before the
    // delimiter belongs to the delimiter; the part has an empty body.
    let raw =
        crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n");
    assert_eq!(raw.len(), 83);
    let info = analyze(&raw);
    let PartKind::Multipart(parts) = &info.root.kind else {
        panic!("not multipart");
    };
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].header, ByteRange { start: 50, end: 74 });
    assert_eq!(parts[0].body, ByteRange { start: 74, end: 74 });
    assert_eq!(info.root.body, ByteRange { start: 45, end: 83 });
    assert_eq!(
        info.body,
        "((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"mixed\")"
    );
}
