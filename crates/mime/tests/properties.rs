//! Property tests: `analyze` on arbitrary bytes and on generated MIME
//! messages never panics, records ranges that fit and nest, writes ENVELOPE
//! and BODYSTRUCTURE that parse as IMAP and agree with the part tree, and
//! round-trips through the cache encoding. For well-formed generated
//! messages the part tree must match, byte for byte, the offsets recorded
//! while the message was written.

use proptest::prelude::*;
use slotmail_mime::{
    MIME_DEPTH_MAX, MessageInfo, PARTS_MAX, Part, PartKind, Section, SectionText, analyze,
    body_text, contains_ci, find_part, header_values, section_bytes,
};

// ---------------------------------------------------------------------------
// A small IMAP value reader, to check response syntax.

#[derive(Debug, Clone, PartialEq)]
enum V {
    Nil,
    Num(u64),
    Str(Vec<u8>),
    List(Vec<V>),
}

fn read_value(s: &[u8], i: &mut usize) -> Result<V, String> {
    match s.get(*i) {
        Some(b'(') => {
            *i += 1;
            let mut items = Vec::new();
            loop {
                match s.get(*i) {
                    Some(b')') => {
                        *i += 1;
                        return Ok(V::List(items));
                    }
                    Some(b' ') if !items.is_empty() => *i += 1,
                    // Bodies of a multipart follow each other without a space.
                    Some(b'(') if !items.is_empty() => {}
                    Some(_) if items.is_empty() => {}
                    other => return Err(format!("bad list separator {other:?} at {i}")),
                }
                items.push(read_value(s, i)?);
            }
        }
        Some(b'"') => {
            *i += 1;
            let mut out = Vec::new();
            loop {
                match s.get(*i) {
                    Some(b'"') => {
                        *i += 1;
                        return Ok(V::Str(out));
                    }
                    Some(b'\\') => {
                        match s.get(*i + 1) {
                            Some(&c @ (b'"' | b'\\')) => out.push(c),
                            other => return Err(format!("bad escape {other:?}")),
                        }
                        *i += 2;
                    }
                    Some(&c) if c == 0 || c == b'\r' || c == b'\n' || c >= 0x80 => {
                        return Err(format!("byte {c:#x} in quoted string"));
                    }
                    Some(&c) => {
                        out.push(c);
                        *i += 1;
                    }
                    None => return Err("unterminated quoted string".into()),
                }
            }
        }
        Some(b'{') => {
            let close = s[*i..]
                .iter()
                .position(|&b| b == b'}')
                .ok_or("unterminated literal length")?;
            let n: usize = std::str::from_utf8(&s[*i + 1..*i + close])
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?;
            *i += close + 1;
            if s.get(*i..*i + 2) != Some(b"\r\n") {
                return Err("literal without CRLF".into());
            }
            *i += 2;
            let bytes = s.get(*i..*i + n).ok_or("literal past end")?.to_vec();
            if bytes.contains(&0) {
                return Err("NUL in literal".into());
            }
            *i += n;
            Ok(V::Str(bytes))
        }
        Some(b'N') if s[*i..].starts_with(b"NIL") => {
            *i += 3;
            Ok(V::Nil)
        }
        Some(c) if c.is_ascii_digit() => {
            let start = *i;
            while s.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            Ok(V::Num(
                std::str::from_utf8(&s[start..*i])
                    .unwrap()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?,
            ))
        }
        other => Err(format!("unexpected {other:?} at {i}")),
    }
}

fn parse_imap(s: &str) -> Result<V, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let v = read_value(b, &mut i)?;
    if i != b.len() {
        return Err(format!("trailing data at {i}"));
    }
    Ok(v)
}

fn is_nstring(v: &V) -> bool {
    matches!(v, V::Nil | V::Str(_))
}

fn check_envelope(v: &V) -> Result<(), String> {
    let V::List(items) = v else {
        return Err("envelope is not a list".into());
    };
    if items.len() != 10 {
        return Err(format!("envelope has {} items", items.len()));
    }
    for k in [0, 1, 8, 9] {
        if !is_nstring(&items[k]) {
            return Err(format!("envelope item {k} not nstring"));
        }
    }
    for list in &items[2..8] {
        match list {
            V::Nil => {}
            V::List(addrs) if !addrs.is_empty() => {
                for a in addrs {
                    match a {
                        V::List(f) if f.len() == 4 && f.iter().all(is_nstring) => {}
                        other => return Err(format!("bad address {other:?}")),
                    }
                }
            }
            other => return Err(format!("bad address list {other:?}")),
        }
    }
    Ok(())
}

fn lf_count(raw: &[u8], part: &Part) -> u64 {
    part.body.slice(raw).iter().filter(|&&b| b == b'\n').count() as u64
}

/// Checks one `body` value against the part it describes.
fn check_body(v: &V, part: &Part, raw: &[u8], extended: bool) -> Result<(), String> {
    let V::List(items) = v else {
        return Err("body is not a list".into());
    };
    match &part.kind {
        PartKind::Multipart(children) => {
            let k = children.len().max(1);
            let want = k + 1 + if extended { 4 } else { 0 };
            if items.len() != want {
                return Err(format!("multipart has {} items, want {want}", items.len()));
            }
            for (child, item) in children.iter().zip(items) {
                check_body(item, child, raw, extended)?;
            }
            match &items[k] {
                V::Str(sub) if sub.eq_ignore_ascii_case(part.media_subtype.as_bytes()) => {}
                other => return Err(format!("bad multipart subtype {other:?}")),
            }
            if extended && !matches!(items[k + 1], V::Nil | V::List(_)) {
                return Err("bad multipart params".into());
            }
            Ok(())
        }
        kind => {
            let text = part.media_type == "text";
            let mut want = 7;
            if text {
                want += 1;
            }
            if matches!(kind, PartKind::Message { .. }) {
                want += 3;
            }
            if extended {
                want += 4;
            }
            if items.len() != want {
                return Err(format!(
                    "part has {} items, want {want}: {items:?}",
                    items.len()
                ));
            }
            match (&items[0], &items[1]) {
                (V::Str(t), V::Str(s))
                    if t.eq_ignore_ascii_case(part.media_type.as_bytes())
                        && s.eq_ignore_ascii_case(part.media_subtype.as_bytes()) => {}
                other => return Err(format!("type mismatch {other:?} vs {part:?}")),
            }
            if !matches!(items[2], V::Nil | V::List(_))
                || !is_nstring(&items[3])
                || !is_nstring(&items[4])
                || !matches!(items[5], V::Str(_))
            {
                return Err("bad body fields".into());
            }
            if items[6] != V::Num(u64::from(part.body.len())) {
                return Err(format!("size {:?} != {}", items[6], part.body.len()));
            }
            if text && items[7] != V::Num(lf_count(raw, part)) {
                return Err("text line count mismatch".into());
            }
            if let PartKind::Message { envelope, message } = kind {
                check_envelope(&items[7])?;
                if parse_imap(envelope)? != items[7] {
                    return Err("embedded envelope differs from Part's".into());
                }
                check_body(&items[8], message, raw, extended)?;
                if items[9] != V::Num(lf_count(raw, part)) {
                    return Err("message line count mismatch".into());
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Tree invariants.

fn check_ranges(part: &Part, raw: &[u8], depth: usize, count: &mut usize) -> Result<(), String> {
    *count += 1;
    if depth > MIME_DEPTH_MAX {
        return Err(format!("depth {depth} over limit"));
    }
    let (h, b) = (part.header, part.body);
    if !(h.start <= h.end && h.end <= b.start && b.start <= b.end && b.end as usize <= raw.len()) {
        return Err(format!("bad ranges {h:?} {b:?} (len {})", raw.len()));
    }
    if h.end != b.start {
        return Err(format!("gap between header and body: {h:?} {b:?}"));
    }
    match &part.kind {
        PartKind::Single => {}
        PartKind::Multipart(children) => {
            let mut prev_end = b.start;
            for c in children {
                if c.header.start < prev_end || c.body.end > b.end {
                    return Err(format!("child {c:?} outside/overlapping in {b:?}"));
                }
                prev_end = c.body.end;
                check_ranges(c, raw, depth + 1, count)?;
            }
        }
        PartKind::Message { message, .. } => {
            if message.header.start != b.start || message.body.end > b.end {
                return Err(format!("embedded message {message:?} outside {b:?}"));
            }
            check_ranges(message, raw, depth + 1, count)?;
        }
    }
    Ok(())
}

/// Every part path of the tree (IMAP numbering), with the part.
fn paths(root: &Part) -> Vec<(Vec<u32>, &Part)> {
    /// Parts numbered inside a message entity.
    fn message<'p>(m: &'p Part, prefix: &[u32], out: &mut Vec<(Vec<u32>, &'p Part)>) {
        match &m.kind {
            PartKind::Multipart(children) => {
                for (i, c) in children.iter().enumerate() {
                    part(c, [prefix, &[i as u32 + 1]].concat(), out);
                }
            }
            _ => part(m, [prefix, &[1]].concat(), out),
        }
    }
    fn part<'p>(p: &'p Part, path: Vec<u32>, out: &mut Vec<(Vec<u32>, &'p Part)>) {
        out.push((path.clone(), p));
        match &p.kind {
            PartKind::Multipart(children) => {
                for (j, c) in children.iter().enumerate() {
                    part(c, [&path[..], &[j as u32 + 1]].concat(), out);
                }
            }
            PartKind::Message { message: m, .. } => message(m, &path, out),
            PartKind::Single => {}
        }
    }
    let mut out = Vec::new();
    message(root, &[], &mut out);
    out
}

/// All checks that hold for any input.
fn check_all(raw: &[u8]) -> Result<MessageInfo, String> {
    let info = analyze(raw);
    let mut count = 0;
    if info.root.header.start != 0 || info.root.body.end as usize != raw.len() {
        return Err(format!("root does not span the message: {:?}", info.root));
    }
    check_ranges(&info.root, raw, 0, &mut count)?;
    if count > PARTS_MAX {
        return Err(format!("{count} parts"));
    }
    check_envelope(&parse_imap(&info.envelope)?)?;
    check_body(&parse_imap(&info.bodystructure)?, &info.root, raw, true)?;
    check_body(&parse_imap(&info.body)?, &info.root, raw, false)?;

    // Cache round trip.
    let bytes = info.to_bytes();
    let back = MessageInfo::from_bytes(&bytes).map_err(|e| e.to_string())?;
    if back != info {
        return Err("cache round trip changed the info".into());
    }

    // SEARCH helpers stay within sane bounds (decoding can at most triple
    // bytes: windows-1252 to UTF-8; parts are joined by one newline each).
    let text = body_text(raw);
    if text.len() > 3 * raw.len() + count {
        return Err(format!("body_text grew to {} bytes", text.len()));
    }
    for name in ["subject", "from", "content-type"] {
        for v in header_values(raw, name) {
            if v.len() > 3 * raw.len() {
                return Err(format!("header value grew to {} bytes", v.len()));
            }
        }
    }

    // Sections.
    let whole = section_bytes(raw, &info, &Section::default());
    if whole.as_ref() != raw {
        return Err("BODY[] != raw".into());
    }
    let header = section_bytes(
        raw,
        &info,
        &Section {
            part: vec![],
            text: Some(SectionText::Header),
        },
    );
    let text = section_bytes(
        raw,
        &info,
        &Section {
            part: vec![],
            text: Some(SectionText::Text),
        },
    );
    if [header.as_ref(), text.as_ref()].concat() != raw {
        return Err("HEADER + TEXT != raw".into());
    }
    for (path, part) in paths(&info.root) {
        if find_part(&info.root, &path) != Some(part) {
            return Err(format!("find_part({path:?}) differs"));
        }
        let body = section_bytes(
            raw,
            &info,
            &Section {
                part: path.clone(),
                text: None,
            },
        );
        if body.as_ref() != part.body.slice(raw) {
            return Err(format!("BODY[{path:?}] differs"));
        }
        let mime = section_bytes(
            raw,
            &info,
            &Section {
                part: path.clone(),
                text: Some(SectionText::Mime),
            },
        );
        if mime.as_ref() != part.header.slice(raw) {
            return Err(format!("BODY[{path:?}.MIME] differs"));
        }
    }
    Ok(info)
}

// ---------------------------------------------------------------------------
// Message generators.

#[derive(Debug, Clone)]
enum Gen {
    Leaf {
        headers: Vec<String>,
        body: Vec<Vec<u8>>,
    },
    Multi {
        subtype: &'static str,
        headers: Vec<String>,
        preamble: Vec<Vec<u8>>,
        children: Vec<Gen>,
        epilogue: Vec<Vec<u8>>,
    },
    Message {
        headers: Vec<String>,
        inner: Box<Gen>,
    },
}

fn clean_line() -> impl Strategy<Value = Vec<u8>> {
    // Never starts with '-', never contains CR or LF.
    "([a-zA-Z0-9 =:;.,<>@\"()]|ä|€){0,40}"
        .prop_filter("no leading dash", |s| !s.starts_with('-'))
        .prop_map(String::into_bytes)
}

fn extra_header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= und so".to_owned()),
        Just("From: \"Doe, J\" <j@example.com>, group: a@b, c@d;".to_owned()),
        Just("To: undisclosed-recipients:;".to_owned()),
        Just("Date: Thu, 15 Feb 2007 01:02:03 +0200".to_owned()),
        Just("Date: garbage".to_owned()),
        Just("Content-Disposition: attachment; filename*0*=utf-8''a; filename*1=b".to_owned()),
        Just("Content-Language: en, de".to_owned()),
        Just("Content-Description: folded\r\n description".to_owned()),
        Just("X-Empty:".to_owned()),
        "X-[A-Za-z]{1,8}: [ -~]{0,30}",
    ]
}

fn leaf_type() -> impl Strategy<Value = (String, &'static str, &'static str)> {
    prop_oneof![
        Just((
            "Content-Type: text/plain; charset=utf-8".to_owned(),
            "text",
            "plain"
        )),
        Just(("Content-Type: TEXT/HTML".to_owned(), "text", "html")),
        Just((
            "Content-Type: application/octet-stream; name=\"a b\"".to_owned(),
            "application",
            "octet-stream"
        )),
        Just(("Content-Type: image/png".to_owned(), "image", "png")),
        Just((String::new(), "text", "plain")),
    ]
}

/// Well-formed trees: unique boundaries, no delimiter-like body lines.
fn wellformed() -> impl Strategy<Value = Gen> {
    let leaf = (
        leaf_type(),
        prop::collection::vec(extra_header(), 0..3),
        prop::collection::vec(clean_line(), 0..5),
        prop::option::of(prop_oneof![
            Just("base64"),
            Just("quoted-printable"),
            Just("8bit")
        ]),
    )
        .prop_map(|((ct, _, _), extra, body, cte)| {
            let mut headers: Vec<String> = Vec::new();
            if !ct.is_empty() {
                headers.push(ct);
            }
            if let Some(cte) = cte {
                headers.push(format!("Content-Transfer-Encoding: {cte}"));
            }
            headers.extend(extra);
            Gen::Leaf { headers, body }
        });
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            (
                prop_oneof![Just("mixed"), Just("alternative"), Just("related")],
                prop::collection::vec(extra_header(), 0..2),
                prop::collection::vec(clean_line(), 0..3),
                prop::collection::vec(inner.clone(), 1..5),
                prop::collection::vec(clean_line(), 0..3),
            )
                .prop_map(|(subtype, headers, preamble, children, epilogue)| {
                    Gen::Multi {
                        subtype,
                        headers,
                        preamble,
                        children,
                        epilogue,
                    }
                }),
            (prop::collection::vec(extra_header(), 0..2), inner).prop_map(|(headers, inner)| {
                Gen::Message {
                    headers,
                    inner: Box::new(inner),
                }
            }),
        ]
    })
}

/// The offsets the writer recorded for one entity.
#[derive(Debug)]
struct Exp {
    header: (usize, usize),
    body: (usize, usize),
    media: (String, String),
    kind: ExpKind,
}

#[derive(Debug)]
enum ExpKind {
    Single,
    Multi(Vec<Exp>),
    Message(Box<Exp>),
}

struct Writer {
    out: Vec<u8>,
    eols: Vec<bool>,
    k: usize,
    boundaries: usize,
}

impl Writer {
    fn eol(&mut self) {
        let crlf = self
            .eols
            .get(self.k % self.eols.len().max(1))
            .copied()
            .unwrap_or(true);
        self.k += 1;
        self.out
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }

    fn lines(&mut self, lines: &[Vec<u8>]) {
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                self.eol();
            }
            self.out.extend_from_slice(l);
        }
    }

    fn headers(&mut self, headers: &[String]) {
        for h in headers {
            for (i, piece) in h.split("\r\n").enumerate() {
                if i > 0 {
                    self.eol();
                }
                self.out.extend_from_slice(piece.as_bytes());
            }
            self.eol();
        }
        self.eol();
    }

    /// Writes an entity with no line end after it.
    fn entity(&mut self, g: &Gen) -> Exp {
        let start = self.out.len();
        match g {
            Gen::Leaf { headers, body } => {
                self.headers(headers);
                let body_start = self.out.len();
                self.lines(body);
                let (t, s) = leaf_media(headers);
                Exp {
                    header: (start, body_start),
                    body: (body_start, self.out.len()),
                    media: (t.into(), s.into()),
                    kind: ExpKind::Single,
                }
            }
            Gen::Multi {
                subtype,
                headers,
                preamble,
                children,
                epilogue,
            } => {
                self.boundaries += 1;
                let boundary = format!("=_bnd{:05}_=", self.boundaries);
                let mut all = vec![format!(
                    "Content-Type: multipart/{subtype};\r\n boundary=\"{boundary}\""
                )];
                all.extend(headers.iter().cloned());
                self.headers(&all);
                let body_start = self.out.len();
                for l in preamble {
                    self.out.extend_from_slice(l);
                    self.eol();
                }
                let mut kids = Vec::new();
                for c in children {
                    self.out
                        .extend_from_slice(format!("--{boundary}").as_bytes());
                    self.eol();
                    kids.push(self.entity(c));
                    self.eol();
                }
                self.out
                    .extend_from_slice(format!("--{boundary}--").as_bytes());
                for l in epilogue {
                    self.eol();
                    self.out.extend_from_slice(l);
                }
                Exp {
                    header: (start, body_start),
                    body: (body_start, self.out.len()),
                    media: ("multipart".into(), (*subtype).into()),
                    kind: ExpKind::Multi(kids),
                }
            }
            Gen::Message { headers, inner } => {
                let mut all = vec!["Content-Type: message/rfc822".to_owned()];
                all.extend(headers.iter().cloned());
                self.headers(&all);
                let body_start = self.out.len();
                let inner = self.entity(inner);
                Exp {
                    header: (start, body_start),
                    body: (body_start, self.out.len()),
                    media: ("message".into(), "rfc822".into()),
                    kind: ExpKind::Message(Box::new(inner)),
                }
            }
        }
    }
}

fn leaf_media(headers: &[String]) -> (&'static str, &'static str) {
    for h in headers {
        let l = h.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-type: ") {
            return match v.split(';').next().unwrap_or("") {
                "text/plain" => ("text", "plain"),
                "text/html" => ("text", "html"),
                "application/octet-stream" => ("application", "octet-stream"),
                "image/png" => ("image", "png"),
                _ => ("?", "?"),
            };
        }
    }
    ("text", "plain")
}

fn compare(exp: &Exp, part: &Part) -> Result<(), String> {
    let got_h = (part.header.start as usize, part.header.end as usize);
    let got_b = (part.body.start as usize, part.body.end as usize);
    if exp.header != got_h || exp.body != got_b {
        return Err(format!(
            "ranges: expected {:?}/{:?}, got {got_h:?}/{got_b:?}",
            exp.header, exp.body
        ));
    }
    if (exp.media.0.as_str(), exp.media.1.as_str())
        != (part.media_type.as_str(), part.media_subtype.as_str())
    {
        return Err(format!("media: expected {:?}, got {part:?}", exp.media));
    }
    match (&exp.kind, &part.kind) {
        (ExpKind::Single, PartKind::Single) => Ok(()),
        (ExpKind::Multi(e), PartKind::Multipart(p)) if e.len() == p.len() => {
            e.iter().zip(p).try_for_each(|(e, p)| compare(e, p))
        }
        (ExpKind::Message(e), PartKind::Message { message, .. }) => compare(e, message),
        (e, p) => Err(format!("kind: expected {e:?}, got {p:?}")),
    }
}

fn render(g: &Gen, eols: Vec<bool>, trailing_eol: bool) -> (Vec<u8>, Exp) {
    let mut w = Writer {
        out: Vec::new(),
        eols,
        k: 0,
        boundaries: 0,
    };
    let mut exp = w.entity(g);
    if trailing_eol {
        w.eol();
    }
    // The message body runs to the end of input, and so does the body of
    // every message embedded as the whole body of the one before.
    fn extend(exp: &mut Exp, end: usize) {
        exp.body.1 = end;
        if let ExpKind::Message(inner) = &mut exp.kind {
            extend(inner, end);
        }
    }
    extend(&mut exp, w.out.len());
    (w.out, exp)
}

/// Chaotic messages: small boundary pool (collisions, prefixes), missing
/// close delimiters, delimiter-like and 8-bit body lines, truncation.
fn chaotic() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => clean_line(),
        1 => prop_oneof![
            Just(b"--b".to_vec()),
            Just(b"--b--".to_vec()),
            Just(b"--bb".to_vec()),
            Just(b"--b  ".to_vec()),
            Just(b"--".to_vec()),
            Just(b"Content-Type: multipart/mixed; boundary=b".to_vec()),
            Just(b"Content-Type: message/rfc822".to_vec()),
            Just(b"\t continuation".to_vec()),
            Just(b"".to_vec()),
            Just(b"\xff\xfe\x00\r".to_vec()),
            Just(b"<p>x</p><!-- open".to_vec()),
            Just(b"&amp;&#x1F600;&#99999999;&bogus; <a href=\"".to_vec()),
            Just(b"=?utf-8?b?w6k=?= =C3=A9 =\r".to_vec()),
            prop::collection::vec(any::<u8>(), 0..20),
        ],
    ];
    let header = prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=b".to_vec()),
        Just(b"Content-Type: multipart/digest; boundary=\"bb\"".to_vec()),
        Just(b"Content-Type: multipart/alternative; boundary=b".to_vec()),
        Just(b"Content-Type: multipart/mixed".to_vec()),
        Just(b"Content-Type: message/rfc822".to_vec()),
        Just(b"Content-Type: text/plain; charset=\"iso-8859-1".to_vec()),
        Just(b"Content-Transfer-Encoding: base64".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable".to_vec()),
        Just(b"Content-Type: text/html; charset=utf-16".to_vec()),
        Just(b"Content-Type: text/plain; charset=iso-2022-jp".to_vec()),
        Just(b"From: a@b, (c) <d@e>, g: h@i;".to_vec()),
        Just(b"Subject: =?bogus?x?y?= \xe9".to_vec()),
        Just(b"Date: 31 Feb 2020 99:99:99 +9999".to_vec()),
        Just(b"--b".to_vec()),
        line.clone(),
    ];
    let block = (
        prop::collection::vec(header, 0..4),
        prop::collection::vec(line, 0..4),
    )
        .prop_map(|(h, b)| {
            let mut out = h.join(&b"\r\n"[..]);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend(b.join(&b"\n"[..]));
            out
        });
    (
        prop::collection::vec(block, 1..12),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(|(blocks, crlf, cut, truncate)| {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                out.extend_from_slice(b);
                out.extend_from_slice(if crlf[i % crlf.len()] { b"\r\n" } else { b"\n" });
            }
            if truncate && !out.is_empty() {
                out.truncate(cut % out.len());
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_all(&raw).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn chaotic_mime(raw in chaotic()) {
        check_all(&raw).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn wellformed_offsets_are_exact(
        g in wellformed(),
        eols in prop::collection::vec(any::<bool>(), 1..6),
        trailing in any::<bool>(),
    ) {
        let (raw, exp) = render(&g, eols, trailing);
        let info = check_all(&raw).map_err(TestCaseError::fail)?;
        compare(&exp, &info.root).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&raw)))
        })?;
    }

    #[test]
    fn from_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut versioned = vec![slotmail_mime::FORMAT_VERSION];
        versioned.extend_from_slice(&bytes);
        for input in [&bytes[..], &versioned[..]] {
            if let Ok(info) = MessageInfo::from_bytes(input) {
                // Whatever decodes re-encodes to the same value.
                prop_assert_eq!(MessageInfo::from_bytes(&info.to_bytes()).ok(), Some(info));
            }
        }
    }

    #[test]
    fn corrupted_cache_never_panics(raw in chaotic(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = analyze(&raw).to_bytes();
        for (pos, val) in flips {
            let n = bytes.len();
            bytes[pos % n] = val;
        }
        if let Ok(info) = MessageInfo::from_bytes(&bytes) {
            let mut count = 0;
            // A decoded tree is always within the limits.
            prop_assert!(info.root.count() <= PARTS_MAX);
            info.root.walk(&mut |_| count += 1);
            prop_assert_eq!(count, info.root.count());
        }
    }

    #[test]
    fn contains_ci_finds_substrings(s in "\\PC{0,40}", a in 0usize..41, b in 0usize..41, flips in prop::collection::vec(any::<bool>(), 0..40)) {
        let chars: Vec<char> = s.chars().collect();
        let (a, b) = (a.min(chars.len()), b.min(chars.len()));
        let (a, b) = (a.min(b), a.max(b));
        let needle: String = chars[a..b].iter().collect();
        prop_assert!(contains_ci(&s, &needle));
        // Flipping the case of ASCII letters keeps the match.
        let flipped: String = needle.chars().zip(flips.iter().chain(std::iter::repeat(&false))).map(|(c, &f)| {
            if f && c.is_ascii_alphabetic() { (c as u8 ^ 0x20) as char } else { c }
        }).collect();
        prop_assert!(contains_ci(&s, &flipped));
    }

    #[test]
    fn contains_ci_ascii_agrees_with_lowercase(h in "[a-zA-Z ]{0,30}", n in "[a-zA-Z]{0,4}") {
        prop_assert_eq!(
            contains_ci(&h, &n),
            h.to_ascii_lowercase().contains(&n.to_ascii_lowercase())
        );
    }
}

#[test]
fn postcard_through_serde_matches_to_bytes() {
    let raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nb\r\n--x--\r\n";
    let info = check_all(raw).unwrap();
    let via_serde = postcard::to_allocvec(&info).unwrap();
    assert_eq!(&info.to_bytes()[1..], &via_serde[..]);
    let back: MessageInfo = postcard::from_bytes(&via_serde).unwrap();
    assert_eq!(back, info);
    assert!(matches!(
        MessageInfo::from_bytes(&[]),
        Err(slotmail_mime::Error::Empty)
    ));
    assert!(matches!(
        MessageInfo::from_bytes(&[99, 1, 2]),
        Err(slotmail_mime::Error::UnknownVersion(99))
    ));
    let mut trailing = info.to_bytes();
    trailing.push(0);
    assert!(MessageInfo::from_bytes(&trailing).is_err());
}

// ---------------------------------------------------------------------------
// Cross-check with mail-parser's own part offsets.

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

}
