//! RFC 5322 §3.3 date-time parsing (with the §4.3 obsolete forms) for the
//! `Date:` header, producing a Unix timestamp and the header's zone offset.
//!
//! Accepted: `[day-name ","] day month year hour ":" minute [":" second]
//! [zone]`, comments anywhere, two- and three-digit years (RFC 5322 §4.3:
//! `00-49` is 20xx, `50-99` and three digits are 19xx/+1900), numeric
//! zones, `UT`/`GMT`/`Z` and the US zone names; other alphabetic zones
//! (military letters) count as `-0000` (unknown local time, UTC) as the RFC
//! says. Month names must be real month names. Anything else (missing
//! time, impossible day or time) is not a date.

/// A parsed date: seconds since the Unix epoch (UTC) and the zone offset
/// in seconds east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub timestamp: i64,
    pub offset: i32,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Splits into tokens: runs of letters, runs of digits, and the single
/// characters `+ - :`; comments, whitespace, commas and dots separate.
fn tokens(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        let b = value[i];
        if depth > 0 {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'\\' => i += 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        let start = i;
        if b.is_ascii_alphabetic() {
            while i < value.len() && value[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(&value[start..i]);
        } else if b.is_ascii_digit() {
            while i < value.len() && value[i].is_ascii_digit() {
                i += 1;
            }
            out.push(&value[start..i]);
        } else {
            if matches!(b, b'+' | b'-' | b':') {
                out.push(&value[i..=i]);
            } else if b == b'(' {
                depth = 1;
            }
            i += 1;
        }
    }
    out
}

fn number(tok: &[u8], max_digits: usize) -> Option<u32> {
    if tok.is_empty() || tok.len() > max_digits || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    tok.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Parses a `Date:` header value.
pub(crate) fn parse(value: &[u8]) -> Option<Parsed> {
    let toks = tokens(value);
    let mut i = 0;
    // Optional day name.
    if toks.first()?.first()?.is_ascii_alphabetic() {
        i += 1;
    }
    let day = number(toks.get(i)?, 2)?;
    i += 1;
    // `7-Feb-1994` style separators are tolerated.
    if toks.get(i) == Some(&&b"-"[..]) {
        i += 1;
    }
    let month_tok = toks.get(i)?;
    if month_tok.len() < 3 {
        return None;
    }
    let month_name = month_tok[..3].to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| m.as_bytes() == month_name)? as u32 + 1;
    i += 1;
    if toks.get(i) == Some(&&b"-"[..]) {
        i += 1;
    }
    let year_tok = toks.get(i)?;
    let year = i64::from(number(year_tok, 4)?);
    let year = match year_tok.len() {
        2 if year < 50 => 2000 + year,
        2 => 1900 + year,
        3 => 1900 + year,
        _ => year,
    };
    i += 1;
    let hour = number(toks.get(i)?, 2)?;
    if toks.get(i + 1) != Some(&&b":"[..]) {
        return None;
    }
    let minute = number(toks.get(i + 2)?, 2)?;
    i += 3;
    let mut second = 0;
    if toks.get(i) == Some(&&b":"[..]) {
        second = number(toks.get(i + 1)?, 2)?;
        i += 2;
    }
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let second = second.min(59);
    let offset = match toks.get(i) {
        Some(&sign @ (b"+" | b"-")) => {
            let digits = toks.get(i + 1)?;
            if digits.len() != 4 {
                return None;
            }
            let hh = number(&digits[..2], 2)?;
            let mm = number(&digits[2..], 2)?;
            if mm > 59 {
                return None;
            }
            let secs = i32::try_from(hh * 3600 + mm * 60).ok()?;
            if sign == b"-" { -secs } else { secs }
        }
        Some(zone) if zone.first().is_some_and(u8::is_ascii_alphabetic) => {
            let hours = match zone.to_ascii_uppercase().as_slice() {
                b"EDT" => -4,
                b"EST" | b"CDT" => -5,
                b"CST" | b"MDT" => -6,
                b"MST" | b"PDT" => -7,
                b"PST" => -8,
                _ => 0,
            };
            hours * 3600
        }
        _ => 0,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(Parsed {
        timestamp: local - i64::from(offset),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Option<(i64, i32)> {
        parse(v.as_bytes()).map(|d| (d.timestamp, d.offset))
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn rfc5322_dates() {
        // 1994-02-08T05:52:25Z
        assert_eq!(
            p("Mon, 7 Feb 1994 21:52:25 -0800 (PST)"),
            Some((760_686_745, -28_800))
        );
        assert_eq!(
            p("Thu, 15 Feb 2007 01:02:03 +0200"),
            Some((1_171_494_123, 7200))
        );
        assert_eq!(p("15 Feb 2007 01:02 GMT"), Some((1_171_501_320, 0)));
        assert_eq!(
            p("(c) Thu , 15 (x) Feb 07 01:02:03 EST"),
            Some((1_171_519_323, -18_000))
        );
        assert_eq!(
            p("Thu, 15 February 2007 01:02:03 Z"),
            Some((1_171_501_323, 0))
        );
        assert_eq!(p("15-Feb-2007 01:02:03 +0000"), Some((1_171_501_323, 0)));
        assert_eq!(p("1 Jan 70 00:00:00 +0000"), Some((0, 0)));
        assert_eq!(p("1 Jan 49 00:00:00 +0000"), Some((2_493_072_000, 0)));
        assert_eq!(p("1 Jan 101 00:00:00 +0000"), Some((978_307_200, 0)));
    }

    #[test]
    fn rejects_non_dates() {
        for v in [
            "",
            "not a date",
            "Mon, 7 Foo 1994 21:52:25 -0800",
            "Mon, 7 Feb 1994",
            "31 Feb 2001 00:00:00 +0000",
            "1 Jan 2001 24:00:00 +0000",
            "1 Jan 2001 12:61:00 +0000",
            "1 Jan 2001 12:00:00 +01",
            "99999999999 Jan 2001 12:00:00",
        ] {
            assert_eq!(p(v), None, "{v:?}");
        }
    }
}
