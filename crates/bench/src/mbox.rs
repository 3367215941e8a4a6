//! Reading an mboxrd file into the messages a mail server would store.
//!
//! The format (as Python's `mailbox` module and most MTAs write it):
//!
//! - every message starts with a `From ` line ("From_ line": envelope sender
//!   and an asctime date), which is not part of the message;
//! - a body line that would start with `From ` is written as `>From `, and in
//!   mboxrd every further `>` is added the same way (`>>From `…), so reading
//!   removes exactly one `>` from any line matching `^>+From `;
//! - messages are separated by one empty line before the next `From_` line,
//!   which belongs to the file, not to the message before it.
//!
//! Messages come out with CRLF line ends, the form IMAP APPEND and LMTP hand
//! the store (RFC 5322 line ends), so sizes and hashes match what a client
//! delivering the same messages would produce.

use std::path::Path;

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The message bytes, CRLF line ends, quoting undone.
    pub raw: Vec<u8>,
    /// The date of the `From_` line, seconds since the epoch (UTC), when it
    /// parses: used as INTERNALDATE, as `doveadm import` does.
    pub date: Option<i64>,
}

/// Why an mbox could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an mbox: line {line} comes before the first \"From \" line")]
    NotMbox { line: usize },
}

/// Read and split an mbox file.
pub fn read_mbox(path: &Path) -> Result<Vec<MboxMessage>, MboxError> {
    let bytes = std::fs::read(path).map_err(|source| MboxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_mbox(&bytes)
}

/// Split mbox bytes into messages (see the module documentation).
pub fn parse_mbox(bytes: &[u8]) -> Result<Vec<MboxMessage>, MboxError> {
    let mut out = Vec::new();
    // (message being built, its date, whether its last line was empty)
    let mut current: Option<(Vec<u8>, Option<i64>, bool)> = None;
    for (n, line) in lines(bytes).enumerate() {
        if line.starts_with(b"From ") {
            if let Some(done) = current.take() {
                out.push(finish(done, true));
            }
            current = Some((Vec::new(), from_line_date(line), false));
            continue;
        }
        let Some((raw, _, last_empty)) = current.as_mut() else {
            if line.is_empty() {
                continue;
            }
            return Err(MboxError::NotMbox { line: n + 1 });
        };
        let line = if is_quoted_from(line) {
            &line[1..]
        } else {
            line
        };
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
        *last_empty = line.is_empty();
    }
    if let Some(done) = current.take() {
        out.push(finish(done, false));
    }
    Ok(out)
}

/// The lines of `bytes` without their line ends (LF or CRLF). A final line
/// without a line end is still a line; an empty input has none.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Drop the separator line before the next `From_` line, if there is one.
fn finish(
    (mut raw, date, last_empty): (Vec<u8>, Option<i64>, bool),
    followed: bool,
) -> MboxMessage {
    if followed && last_empty {
        raw.truncate(raw.len() - 2);
    }
    MboxMessage { raw, date }
}

/// `^>+From `: a quoted body line.
fn is_quoted_from(line: &[u8]) -> bool {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    gts > 0 && line[gts..].starts_with(b"From ")
}

/// The asctime date at the end of a `From_` line
/// (`From sender Mon Jun  3 12:00:00 2024`), as seconds since the epoch.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let [.., _weekday, month, day, time, year] = words.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next().unwrap_or(Some(0))?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raws(input: &[u8]) -> Vec<Vec<u8>> {
        parse_mbox(input)
            .unwrap()
            .into_iter()
            .map(|m| m.raw)
            .collect()
    }

    #[test]
    fn splits_on_from_lines_and_drops_the_separator_line() {
        let input = b"From a@example.com Mon Jun  3 12:00:00 2024\nSubject: one\n\nbody one\n\n\
From b@example.com Tue Jun  4 12:00:00 2024\nSubject: two\n\nbody two\n";
        assert_eq!(
            raws(input),
            vec![
                b"Subject: one\r\n\r\nbody one\r\n".to_vec(),
                b"Subject: two\r\n\r\nbody two\r\n".to_vec(),
            ]
        );
    }

    #[test]
    fn keeps_a_trailing_empty_line_of_the_last_message() {
        let input = b"From a Mon Jun  3 12:00:00 2024\nSubject: x\n\nbody\n\n";
        assert_eq!(
            raws(input),
            vec![b"Subject: x\r\n\r\nbody\r\n\r\n".to_vec()]
        );
    }

    #[test]
    fn undoes_mboxrd_quoting_one_level() {
        let input = b"From a Mon Jun  3 12:00:00 2024\nSubject: q\n\n>From here\n>>From there\n> From not quoted\n>Fromage\n";
        assert_eq!(
            raws(input),
            vec![
                b"Subject: q\r\n\r\nFrom here\r\n>From there\r\n> From not quoted\r\n>Fromage\r\n"
                    .to_vec()
            ]
        );
    }

    #[test]
    fn converts_line_ends_to_crlf_without_doubling() {
        let input = b"From a Mon Jun  3 12:00:00 2024\r\nA: 1\r\nB: 2\n\nx\ry\n";
        assert_eq!(raws(input), vec![b"A: 1\r\nB: 2\r\n\r\nx\ry\r\n".to_vec()]);
    }

    #[test]
    fn last_line_without_newline_still_ends_in_crlf() {
        assert_eq!(
            raws(b"From a Mon Jun  3 12:00:00 2024\nA: 1\n\nend"),
            vec![b"A: 1\r\n\r\nend\r\n".to_vec()]
        );
    }

    #[test]
    fn empty_input_and_leading_blank_lines() {
        assert!(raws(b"").is_empty());
        assert_eq!(raws(b"\nFrom a Mon Jun  3 12:00:00 2024\nA: 1\n").len(), 1);
        assert!(matches!(
            parse_mbox(b"Subject: no mbox\n"),
            Err(MboxError::NotMbox { line: 1 })
        ));
    }

    #[test]
    fn parses_the_from_line_date() {
        let m = parse_mbox(b"From alice@example.com Mon Jun  3 12:34:56 2024\nA: 1\n").unwrap();
        // 2024-06-03T12:34:56Z
        assert_eq!(m[0].date, Some(1_717_418_096));
        let m = parse_mbox(b"From MAILER-DAEMON\nA: 1\n").unwrap();
        assert_eq!(m[0].date, None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn reads_what_python_mailbox_writes() {
        // Python's mailbox.mbox: "From_" line, message, and an empty line
        // before every From_ line but the first.
        let input = b"From x@example.org Sat Jan  1 00:00:00 2022\nFrom: x@example.org\nSubject: s\n\n>From the start\ntext\n\nFrom y@example.org Sun Jan  2 00:00:00 2022\nFrom: y@example.org\n\nsecond\n";
        let msgs = parse_mbox(input).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[0].raw,
            b"From: x@example.org\r\nSubject: s\r\n\r\nFrom the start\r\ntext\r\n".to_vec()
        );
        assert_eq!(
            msgs[1].raw,
            b"From: y@example.org\r\n\r\nsecond\r\n".to_vec()
        );
        assert_eq!(msgs[0].date, Some(1_640_995_200));
    }
}
