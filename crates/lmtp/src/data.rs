//! Message data transparency (RFC 5321 §4.5.2): server-side unstuffing and
//! client-side stuffing.
//!
//! Line ends: a line ends at LF; a CR immediately before it belongs to the
//! line end. We are liberal and accept bare LF as a line end, but the stored
//! message always uses CRLF (IMAP requires CRLF), so a bare LF is normalised
//! to CRLF. A bare CR (not followed by LF) is ordinary data and is kept.
//! The end of data is a line consisting of a single `.` after a line end,
//! whether that line and the preceding one end in CRLF or in bare LF.
//! Other than that, the stored bytes are exactly those received, minus the
//! leading `.` of every line that starts with one.
//!
//! The server-side reader applies this while streaming: it enforces the message and
//! line size limits without buffering the excess. [`DotStuffer`] is the
//! inverse used by [`crate::Client`]; [`normalize_line_endings`] describes
//! what a round trip through both yields for arbitrary input.

/// Scanner state of [`DataReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// At the start of a line.
    LineStart,
    /// A `.` started the line (and was dropped).
    Dot,
    /// `.` then CR at the start of a line.
    DotCr,
    /// Inside a line.
    InLine,
    /// Inside a line, just after a CR.
    InLineCr,
}

/// How the data phase ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// The complete message, prefix included.
    Complete(Vec<u8>),
    /// The message exceeded the size limit.
    TooBig,
    /// A line exceeded the line length limit.
    LineTooLong,
}

/// Streaming dot-unstuffer with size limits. See the module docs.
#[derive(Debug)]
pub(crate) struct DataReader {
    scan: Scan,
    message: Vec<u8>,
    body_bytes: usize,
    line_bytes: usize,
    max_message_bytes: usize,
    max_line_content_bytes: usize,
    too_big: bool,
    line_too_long: bool,
}

/// Initial capacity reserved for a message body, in octets; the buffer
/// grows on demand up to the message limit.
const INITIAL_BODY_CAPACITY_BYTES: usize = 64 * 1024;

impl DataReader {
    /// Starts reading a message whose stored form begins with `prefix`
    /// (trace headers, not counted against the limit). `size_hint` is the
    /// client's `SIZE=` declaration.
    pub(crate) fn new(
        prefix: Vec<u8>,
        size_hint: Option<u64>,
        max_message_bytes: usize,
        max_line_bytes: usize,
    ) -> Self {
        let mut message = prefix;
        let hint = size_hint
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0)
            .clamp(
                INITIAL_BODY_CAPACITY_BYTES.min(max_message_bytes),
                max_message_bytes,
            );
        message.reserve(hint);
        Self {
            scan: Scan::LineStart,
            message,
            body_bytes: 0,
            line_bytes: 0,
            max_message_bytes,
            max_line_content_bytes: max_line_bytes.saturating_sub(2),
            too_big: false,
            line_too_long: false,
        }
    }

    /// True once the message has been condemned (too big or line too long);
    /// the rest of the data is then only scanned for the terminator.
    fn discarding(&self) -> bool {
        self.too_big || self.line_too_long
    }

    fn discard(&mut self) {
        self.message = Vec::new();
    }

    /// Appends line content.
    fn content(&mut self, bytes: &[u8]) {
        if self.discarding() {
            return;
        }
        self.line_bytes += bytes.len();
        if self.line_bytes > self.max_line_content_bytes {
            self.line_too_long = true;
            self.discard();
            return;
        }
        self.body(bytes);
    }

    /// Ends the current line with CRLF.
    fn line_end(&mut self) {
        self.line_bytes = 0;
        if !self.discarding() {
            self.body(b"\r\n");
        }
    }

    fn body(&mut self, bytes: &[u8]) {
        if self.body_bytes + bytes.len() > self.max_message_bytes {
            self.too_big = true;
            self.discard();
            return;
        }
        self.body_bytes += bytes.len();
        self.message.extend_from_slice(bytes);
    }

    /// Consumes message data. Returns the number of bytes consumed and
    /// whether the terminating `.` line was seen (in which case the bytes
    /// after it were not consumed).
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.scan {
                Scan::LineStart => {
                    if b == b'.' {
                        self.scan = Scan::Dot;
                        i += 1;
                    } else {
                        self.scan = Scan::InLine;
                    }
                }
                Scan::Dot => match b {
                    b'\n' => return (i + 1, true),
                    b'\r' => {
                        self.scan = Scan::DotCr;
                        i += 1;
                    }
                    _ => self.scan = Scan::InLine,
                },
                Scan::DotCr => {
                    if b == b'\n' {
                        return (i + 1, true);
                    }
                    // ".\r" followed by more text: the dot is dropped as for
                    // any stuffed line, the CR is a bare CR.
                    self.content(b"\r");
                    self.scan = Scan::InLineCr;
                    if b == b'\r' {
                        i += 1;
                    } else {
                        self.scan = Scan::InLine;
                    }
                }
                Scan::InLine => {
                    // Fast path: copy everything up to the next CR or LF.
                    let rest = &input[i..];
                    let run = rest
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(rest.len());
                    if run > 0 {
                        self.content(&rest[..run]);
                        i += run;
                        continue;
                    }
                    if b == b'\n' {
                        self.line_end();
                        self.scan = Scan::LineStart;
                    } else {
                        self.scan = Scan::InLineCr;
                    }
                    i += 1;
                }
                Scan::InLineCr => match b {
                    b'\n' => {
                        self.line_end();
                        self.scan = Scan::LineStart;
                        i += 1;
                    }
                    b'\r' => {
                        self.content(b"\r");
                        i += 1;
                    }
                    _ => {
                        self.content(b"\r");
                        self.scan = Scan::InLine;
                    }
                },
            }
        }
        (input.len(), false)
    }

    /// The outcome once [`DataReader::feed`] reported the end of data.
    pub(crate) fn finish(self) -> DataOutcome {
        if self.too_big {
            DataOutcome::TooBig
        } else if self.line_too_long {
            DataOutcome::LineTooLong
        } else {
            DataOutcome::Complete(self.message)
        }
    }
}

/// Streaming dot-stuffer for sending message data.
///
/// Line ends are sent as CRLF (bare LF becomes CRLF, bare CR is kept as
/// data), a `.` at the start of a line is doubled, and
/// [`DotStuffer::finish`] ends the last line if needed and appends the
/// terminating `.` line.
#[derive(Clone, Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer positioned at the start of the message.
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            pending_cr: false,
        }
    }

    /// Appends the stuffed form of `input` to `out` (at most
    /// `2 * input.len() + 1` bytes).
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            match b {
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.pending_cr = false;
                    self.at_line_start = true;
                }
                b'\r' => {
                    if self.pending_cr {
                        out.push(b'\r');
                        self.at_line_start = false;
                    }
                    self.pending_cr = true;
                }
                _ => {
                    if self.pending_cr {
                        out.push(b'\r');
                        self.pending_cr = false;
                        self.at_line_start = false;
                    }
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                }
            }
        }
    }

    /// Ends the data: completes an unterminated last line and appends
    /// `.<CRLF>`. The stuffer is reset for another message.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.push(b'\r');
            self.at_line_start = false;
        }
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = Self::new();
    }
}

/// The message a server stores for `body` sent through [`DotStuffer`]:
/// bare LF becomes CRLF, bare CR is kept, and a non-empty body that does
/// not end with a line end gets a CRLF appended.
pub fn normalize_line_endings(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16 + 2);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(wire: &[u8], max_msg: usize, max_line: usize) -> (usize, bool, DataOutcome) {
        let mut r = DataReader::new(Vec::new(), None, max_msg, max_line);
        let (n, done) = r.feed(wire);
        (n, done, r.finish())
    }

    fn unstuff(wire: &[u8]) -> Vec<u8> {
        match read_all(wire, 1 << 20, 1000) {
            (_, true, DataOutcome::Complete(m)) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unstuffs_and_stops_at_terminator() {
        assert_eq!(
            unstuff(b"a\r\n..b\r\n.c\r\n..\r\n.\r\nQUIT\r\n"),
            b"a\r\n.b\r\nc\r\n.\r\n"
        );
        let (n, done, _) = read_all(b"a\r\n.\r\nQUIT\r\n", 100, 100);
        assert_eq!((n, done), (6, true));
        assert_eq!(unstuff(b".\r\n"), b"");
        assert_eq!(unstuff(b".\n"), b"");
    }

    #[test]
    fn normalises_bare_lf_and_keeps_bare_cr() {
        assert_eq!(unstuff(b"a\nb\r\n.\n"), b"a\r\nb\r\n");
        assert_eq!(unstuff(b"a\rb\r\r\n.\r\n"), b"a\rb\r\r\n");
        assert_eq!(unstuff(b".\rx\r\n.\r\n"), b"\rx\r\n");
        assert_eq!(unstuff(b".\r\rx\r\n.\r\n"), b"\r\rx\r\n");
        assert_eq!(unstuff(b"\r.\r\n.\r\n"), b"\r.\r\n");
    }

    #[test]
    fn enforces_limits_without_buffering() {
        let (_, done, outcome) = read_all(b"0123456789\r\n.\r\n", 11, 1000);
        assert!(done);
        assert_eq!(outcome, DataOutcome::TooBig);
        let (_, _, outcome) = read_all(b"0123456789\r\n.\r\n", 12, 1000);
        assert_eq!(outcome, DataOutcome::Complete(b"0123456789\r\n".to_vec()));
        let (_, _, outcome) = read_all(b"12345678\r\n.\r\n", 100, 10);
        assert_eq!(outcome, DataOutcome::Complete(b"12345678\r\n".to_vec()));
        let (_, _, outcome) = read_all(b"123456789\r\n.\r\n", 100, 10);
        assert_eq!(outcome, DataOutcome::LineTooLong);

        let mut r = DataReader::new(Vec::new(), None, 16, 1000);
        for _ in 0..1000 {
            assert_eq!(
                r.feed(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"),
                (37, false)
            );
            assert_eq!(r.message.capacity(), 0);
        }
        assert_eq!(r.feed(b".\r\n"), (3, true));
        assert_eq!(r.finish(), DataOutcome::TooBig);
    }

    #[test]
    fn prefix_is_kept_and_not_counted() {
        let mut r = DataReader::new(b"Hdr: x\r\n".to_vec(), Some(3), 3, 1000);
        assert_eq!(r.feed(b"a\r\n.\r\n"), (6, true));
        assert_eq!(
            r.finish(),
            DataOutcome::Complete(b"Hdr: x\r\na\r\n".to_vec())
        );
    }

    #[test]
    fn stuffs() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.encode(b".a\n..b\r\nc.\r\n.", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"..a\r\n...b\r\nc.\r\n..\r\n.\r\n");
        out.clear();
        s.finish(&mut out);
        assert_eq!(out, b".\r\n");
        out.clear();
        s.encode(b"x\r", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\r\n.\r\n");
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize_line_endings(b""), b"");
        assert_eq!(normalize_line_endings(b"a\nb"), b"a\r\nb\r\n");
        assert_eq!(normalize_line_endings(b"a\r\n\n"), b"a\r\n\r\n");
        assert_eq!(normalize_line_endings(b"a\r"), b"a\r\r\n");
    }
}
