//! Header blocks: finding where a header ends and splitting it into fields,
//! with byte ranges into the raw message.
//!
//! This is the only place that decides what a header line, a continuation
//! line and the blank line ending a header are, so that the part tree, the
//! envelope, `HEADER.FIELDS` and SEARCH all agree. LF and CRLF line ends are
//! both accepted. A line without a colon is kept as a nameless field (it is
//! part of the header, but no name matches it).

use std::ops::Range;

/// One header field: `Name: value` plus its continuation lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// The field name, without trailing whitespace before the colon. Empty
    /// for a line without a colon.
    pub name: Range<usize>,
    /// Everything after the colon up to the end of the field, excluding the
    /// last line end but including folding line ends.
    pub value: Range<usize>,
    /// The whole field: from the start of its first line to after the line
    /// end of its last line.
    pub lines: Range<usize>,
}

impl Field {
    /// Case-insensitive (ASCII) comparison of the field name.
    pub fn is(&self, raw: &[u8], name: &str) -> bool {
        raw.get(self.name.clone())
            .is_some_and(|n| !n.is_empty() && n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The raw value bytes (folding line ends included).
    pub fn raw_value<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.value.clone()).unwrap_or_default()
    }
}

/// How a header block ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End<T> {
    /// A blank line; the header (blank line included) ends at `.0`, which is
    /// also where the body starts.
    Blank(usize),
    /// A MIME boundary line starting at `line_start` interrupted the header;
    /// there is no body.
    Boundary { line_start: usize, stop: T },
    /// The input ended inside the header; the header runs to `.0`.
    Eof(usize),
}

/// A scanned header block.
#[derive(Debug)]
pub(crate) struct Block<T> {
    pub fields: Vec<Field>,
    pub end: End<T>,
}

/// Position just after the line end of the line starting at `pos`, or
/// `limit` when the line has no LF before `limit`.
pub(crate) fn next_line(raw: &[u8], pos: usize, limit: usize) -> usize {
    let slice = raw.get(pos..limit).unwrap_or_default();
    match slice.iter().position(|&b| b == b'\n') {
        Some(i) => pos + i + 1,
        None => limit.max(pos),
    }
}

/// Scans the header starting at `start` (a line start) and ending no later
/// than `limit`. `boundary_at(pos)` is asked for each line that starts with
/// `--` and may claim it as a MIME boundary line, which ends the header.
pub(crate) fn scan<T>(
    raw: &[u8],
    start: usize,
    limit: usize,
    mut boundary_at: impl FnMut(usize) -> Option<T>,
) -> Block<T> {
    let limit = limit.min(raw.len());
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = start;
    loop {
        if pos >= limit {
            return Block {
                fields,
                end: End::Eof(limit.max(start)),
            };
        }
        let line_end = next_line(raw, pos, limit);
        let has_lf = raw[line_end - 1] == b'\n';
        let mut content_end = if has_lf { line_end - 1 } else { line_end };
        if has_lf && content_end > pos && raw[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        if has_lf && content_end == pos {
            return Block {
                fields,
                end: End::Blank(line_end),
            };
        }
        if raw[pos] == b'-'
            && raw.get(pos + 1) == Some(&b'-')
            && let Some(stop) = boundary_at(pos)
        {
            return Block {
                fields,
                end: End::Boundary {
                    line_start: pos,
                    stop,
                },
            };
        }
        let continuation = matches!(raw[pos], b' ' | b'\t');
        match fields.last_mut() {
            Some(last) if continuation => {
                last.value.end = content_end;
                last.lines.end = line_end;
            }
            _ => {
                let line = &raw[pos..content_end];
                let field = match line.iter().position(|&b| b == b':') {
                    Some(colon) => {
                        let mut name_end = pos + colon;
                        while name_end > pos && matches!(raw[name_end - 1], b' ' | b'\t') {
                            name_end -= 1;
                        }
                        Field {
                            name: pos..name_end,
                            value: pos + colon + 1..content_end,
                            lines: pos..line_end,
                        }
                    }
                    None => Field {
                        name: pos..pos,
                        value: pos..content_end,
                        lines: pos..line_end,
                    },
                };
                fields.push(field);
            }
        }
        pos = line_end;
    }
}

/// Scans a header known to occupy `range` (no boundaries inside).
pub(crate) fn fields_in(raw: &[u8], range: Range<usize>) -> Vec<Field> {
    scan::<()>(raw, range.start, range.end, |_| None).fields
}

/// The first field called `name`.
pub(crate) fn first<'f>(raw: &[u8], fields: &'f [Field], name: &str) -> Option<&'f Field> {
    fields.iter().find(|f| f.is(raw, name))
}

/// Unfolds a raw header value: drops CR, LF and NUL, then trims leading
/// and trailing blanks. The result is what IMAP strings may carry.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| !matches!(b, b'\r' | b'\n' | 0))
        .collect();
    let end = out
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    out.truncate(end);
    let start = out
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(out.len());
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[u8], block: &Block<()>) -> Vec<String> {
        block
            .fields
            .iter()
            .map(|f| String::from_utf8_lossy(&raw[f.name.clone()]).into_owned())
            .collect()
    }

    #[test]
    fn crlf_header_with_folding() {
        let raw = b"Subject: a\r\n b\r\nFrom : x\r\n\r\nbody";
        let block = scan::<()>(raw, 0, raw.len(), |_| None);
        assert_eq!(names(raw, &block), ["Subject", "From"]);
        assert_eq!(block.end, End::Blank(28));
        assert_eq!(&raw[block.fields[0].value.clone()], b" a\r\n b");
        assert_eq!(&raw[block.fields[0].lines.clone()], b"Subject: a\r\n b\r\n");
        assert_eq!(&raw[block.fields[1].value.clone()], b" x");
        assert_eq!(&raw[28..], b"body");
    }

    #[test]
    fn bare_lf_and_no_colon() {
        let raw = b"X: 1\njunk line\n\nrest";
        let block = scan::<()>(raw, 0, raw.len(), |_| None);
        assert_eq!(names(raw, &block), ["X", ""]);
        assert_eq!(block.end, End::Blank(16));
    }

    #[test]
    fn header_without_blank_line_runs_to_eof() {
        let raw = b"A: 1\r\nB: 2";
        let block = scan::<()>(raw, 0, raw.len(), |_| None);
        assert_eq!(block.end, End::Eof(10));
        assert_eq!(&raw[block.fields[1].value.clone()], b" 2");
        assert_eq!(block.fields[1].lines, 6..10);
    }

    #[test]
    fn empty_header() {
        let raw = b"\r\nbody";
        let block = scan::<()>(raw, 0, raw.len(), |_| None);
        assert!(block.fields.is_empty());
        assert_eq!(block.end, End::Blank(2));
        let block = scan::<()>(b"", 0, 0, |_| None);
        assert_eq!(block.end, End::Eof(0));
    }

    #[test]
    fn boundary_interrupts_header() {
        let raw = b"A: 1\r\n--b\r\n";
        let block = scan(raw, 0, raw.len(), |p| {
            (raw[p..].starts_with(b"--b")).then_some(7)
        });
        assert_eq!(
            block.end,
            End::Boundary {
                line_start: 6,
                stop: 7
            }
        );
    }

    #[test]
    fn unfold_drops_line_ends_and_trims() {
        assert_eq!(unfold(b"  a\r\n\tb \0c \t"), b"a\tb c");
        assert_eq!(unfold(b" \r\n "), b"");
    }
}
