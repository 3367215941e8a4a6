//! IMAP `date` (SEARCH, e.g. `1-Feb-1994`) and `date-time` (APPEND and
//! INTERNALDATE, e.g. `"17-Jul-1996 02:44:25 -0700"`), RFC 3501 §9.
//!
//! Values are validated on construction (real calendar day, hour < 24,
//! minute < 60, second ≤ 60, zone within ±99:59) and convert to and from
//! Unix time so a server can store INTERNALDATE as a number.

use std::fmt;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date (no time, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A date; `None` unless `1 <= month <= 12`, the day exists in that
    /// month and `year` has four digits.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }
    /// Year (1..=9999).
    pub fn year(&self) -> u16 {
        self.year
    }
    /// Month (1..=12).
    pub fn month(&self) -> u8 {
        self.month
    }
    /// Day of month (1..=31).
    pub fn day(&self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let m = i64::from(self.month);
        let d = i64::from(self.day);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01, if it has a four-digit year.
    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        let z = days.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        Date::new(
            u16::try_from(y).ok()?,
            u8::try_from(m).ok()?,
            u8::try_from(d).ok()?,
        )
    }

    /// Parses `1*2DIGIT "-" Mon "-" 4DIGIT` (the day may have a leading
    /// space, as in `date-day-fixed`).
    pub(crate) fn parse_text(s: &[u8]) -> Option<Date> {
        let s = if s.first() == Some(&b' ') { &s[1..] } else { s };
        let mut parts = s.split(|&b| b == b'-');
        let day = parts.next()?;
        let mon = parts.next()?;
        let year = parts.next()?;
        if parts.next().is_some() || day.is_empty() || day.len() > 2 || year.len() != 4 {
            return None;
        }
        let day = parse_digits(day)?;
        let year = parse_digits(year)?;
        let month = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(mon))?
            + 1;
        Date::new(
            u16::try_from(year).ok()?,
            month as u8,
            u8::try_from(day).ok()?,
        )
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mon = MONTHS[usize::from(self.month - 1)];
        write!(f, "{}-{}-{:04}", self.day, mon, self.year)
    }
}

fn parse_digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0')),
    )
}

/// A date, a time of day and a zone offset (IMAP `date-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    date: Date,
    hour: u8,
    minute: u8,
    second: u8,
    offset_minutes: i16,
}

impl DateTime {
    /// A date-time; `None` if a field is out of range. `offset_minutes` is
    /// the zone east of UTC (`-0700` is -420), within ±5999 (±99:59).
    pub fn new(
        date: Date,
        hour: u8,
        minute: u8,
        second: u8,
        offset_minutes: i16,
    ) -> Option<DateTime> {
        if hour > 23 || minute > 59 || second > 60 || offset_minutes.unsigned_abs() > 99 * 60 + 59 {
            return None;
        }
        Some(DateTime {
            date,
            hour,
            minute,
            second,
            offset_minutes,
        })
    }
    /// The calendar date (in the zone of the offset).
    pub fn date(&self) -> Date {
        self.date
    }
    /// Hour (0..=23).
    pub fn hour(&self) -> u8 {
        self.hour
    }
    /// Minute (0..=59).
    pub fn minute(&self) -> u8 {
        self.minute
    }
    /// Second (0..=60).
    pub fn second(&self) -> u8 {
        self.second
    }
    /// Zone offset east of UTC in minutes.
    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// Seconds since the Unix epoch (UTC).
    pub fn unix_timestamp(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// The local time at `offset_minutes` east of UTC for a Unix timestamp;
    /// `None` if the offset is out of range or the year leaves 1..=9999.
    pub fn from_unix_timestamp(secs: i64, offset_minutes: i16) -> Option<DateTime> {
        let local = secs.checked_add(i64::from(offset_minutes) * 60)?;
        let days = local.div_euclid(86_400);
        let rem = local.rem_euclid(86_400);
        let date = Date::from_days_since_epoch(days)?;
        DateTime::new(
            date,
            (rem / 3600) as u8,
            ((rem % 3600) / 60) as u8,
            (rem % 60) as u8,
            offset_minutes,
        )
    }

    /// Writes the quoted `date-time` form, e.g. `"07-Feb-1994 21:52:25 -0800"`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("\"{self}\"").as_bytes());
    }

    /// Parses the unquoted content of a `date-time`.
    pub(crate) fn parse_text(s: &[u8]) -> Option<DateTime> {
        // date-day-fixed "-" date-month "-" date-year SP time SP zone
        if s.len() < 20 {
            return None;
        }
        let (rest, zone) = s.split_at(s.len() - 5);
        let rest = rest.strip_suffix(b" ")?;
        if rest.len() < 9 {
            return None;
        }
        let (date_part, time) = rest.split_at(rest.len() - 8);
        let date_part = date_part.strip_suffix(b" ")?;
        let date = Date::parse_text(date_part)?;
        if time[2] != b':' || time[5] != b':' {
            return None;
        }
        let two = |t: &[u8]| -> Option<u8> {
            if t.len() == 2 && t.iter().all(u8::is_ascii_digit) {
                Some((t[0] - b'0') * 10 + (t[1] - b'0'))
            } else {
                None
            }
        };
        let hour = two(&time[0..2])?;
        let minute = two(&time[3..5])?;
        let second = two(&time[6..8])?;
        let sign: i16 = match zone[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let zh = i16::from(two(&zone[1..3])?);
        let zm = i16::from(two(&zone[3..5])?);
        if zm > 59 {
            return None;
        }
        DateTime::new(date, hour, minute, second, sign * (zh * 60 + zm))
    }
}

impl fmt::Display for DateTime {
    /// The unquoted `date-time` text, e.g. `07-Feb-1994 21:52:25 -0800`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mon = MONTHS[usize::from(self.date.month - 1)];
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.day,
            mon,
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            off / 60,
            off % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_parsing() {
        assert_eq!(Date::parse_text(b"1-Feb-1994"), Date::new(1994, 2, 1));
        assert_eq!(Date::parse_text(b"29-feb-2000"), Date::new(2000, 2, 29));
        assert_eq!(Date::parse_text(b"29-Feb-1900"), None);
        assert_eq!(Date::parse_text(b"31-Apr-2020"), None);
        assert_eq!(Date::parse_text(b"1-Foo-2020"), None);
        assert_eq!(Date::parse_text(b"1-Feb-94"), None);
        assert_eq!(Date::new(1994, 2, 1).unwrap().to_string(), "1-Feb-1994");
    }

    #[test]
    fn date_time_parsing() {
        let dt = DateTime::parse_text(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!((dt.hour(), dt.minute(), dt.second()), (2, 44, 25));
        assert_eq!(dt.offset_minutes(), -420);
        assert_eq!(dt.to_string(), "17-Jul-1996 02:44:25 -0700");
        let sp = DateTime::parse_text(b" 7-Feb-1994 21:52:25 +0100").unwrap();
        assert_eq!(sp.date().day(), 7);
        assert_eq!(sp.to_string(), "07-Feb-1994 21:52:25 +0100");
        assert!(DateTime::parse_text(b"17-Jul-1996 24:00:00 +0000").is_none());
        assert!(DateTime::parse_text(b"17-Jul-1996 02:44:25 +0060").is_none());
        assert!(DateTime::parse_text(b"17-Jul-1996 02:44:25").is_none());
    }

    #[test]
    fn unix_conversion() {
        let dt = DateTime::parse_text(b"01-Jan-1970 00:00:00 +0000").unwrap();
        assert_eq!(dt.unix_timestamp(), 0);
        let dt = DateTime::parse_text(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(dt.unix_timestamp(), 837_596_665);
        assert_eq!(DateTime::from_unix_timestamp(837_596_665, -420), Some(dt));
        let d = Date::new(2024, 2, 29).unwrap();
        assert_eq!(Date::from_days_since_epoch(d.days_since_epoch()), Some(d));
    }
}
