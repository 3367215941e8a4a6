//! Sequence sets (`1,3:5,7:*`, RFC 3501 §9 `sequence-set`), kept symbolic.
//!
//! `*` stays [`SeqNum::Star`] until the server resolves the set against a
//! mailbox with [`SequenceSet::resolve`]. Ranges may be written in either
//! order (`5:1` equals `1:5`). [`SequenceSet::from_ids`] goes the other way
//! and compresses a list of numbers into ranges, for COPYUID, VANISHED and
//! ESEARCH ALL.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// One end of a sequence range: a non-zero number or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    /// A message sequence number or UID; never 0.
    Value(u32),
    /// `*`: the largest number in use in the mailbox.
    Star,
}

impl SeqNum {
    /// The number this stands for when the largest number in use is `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v,
            SeqNum::Star => largest,
        }
    }
    fn write(self, out: &mut String) {
        match self {
            SeqNum::Value(v) => out.push_str(&v.to_string()),
            SeqNum::Star => out.push('*'),
        }
    }
}

/// `a:b` (or a single number when `start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqRange {
    /// First end as written.
    pub start: SeqNum,
    /// Second end as written (equal to `start` for a single number).
    pub end: SeqNum,
}

impl SeqRange {
    /// A single number or `*`.
    pub fn single(n: SeqNum) -> SeqRange {
        SeqRange { start: n, end: n }
    }
    /// The range as `low..=high` for a mailbox whose largest number is
    /// `largest`.
    pub fn resolve(&self, largest: u32) -> RangeInclusive<u32> {
        let a = self.start.resolve(largest);
        let b = self.end.resolve(largest);
        a.min(b)..=a.max(b)
    }
}

/// A non-empty list of ranges (`sequence-set`), or `$`: the result saved
/// by the last `SEARCH RETURN (SAVE)` (SEARCHRES, RFC 5182 §2.1), which only
/// the server can resolve ([`SequenceSet::is_saved_result`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet {
    /// Empty only for `$`.
    ranges: Vec<SeqRange>,
}

/// Error from [`SequenceSet::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence set: {0}")]
pub struct InvalidSequenceSet(pub String);

impl SequenceSet {
    /// A set of the given ranges; `None` if empty or if a number is 0.
    pub fn new(ranges: Vec<SeqRange>) -> Option<SequenceSet> {
        let valid = |n: SeqNum| n != SeqNum::Value(0);
        if ranges.is_empty() || !ranges.iter().all(|r| valid(r.start) && valid(r.end)) {
            return None;
        }
        Some(SequenceSet { ranges })
    }
    /// The set `n` (`None` if `n == 0`).
    pub fn single(n: u32) -> Option<SequenceSet> {
        SequenceSet::new(vec![SeqRange::single(SeqNum::Value(n))])
    }
    /// The set `a:b` (`None` if either is 0).
    pub fn range(a: u32, b: u32) -> Option<SequenceSet> {
        SequenceSet::new(vec![SeqRange {
            start: SeqNum::Value(a),
            end: SeqNum::Value(b),
        }])
    }
    /// `$`, the saved search result (RFC 5182).
    pub fn saved_result() -> SequenceSet {
        SequenceSet { ranges: Vec::new() }
    }
    /// Whether this is `$`. Such a set names nothing by itself: [`resolve`]
    /// and [`contains`] see no numbers in it, and the session substitutes
    /// its saved result.
    ///
    /// [`resolve`]: SequenceSet::resolve
    /// [`contains`]: SequenceSet::contains
    pub fn is_saved_result(&self) -> bool {
        self.ranges.is_empty()
    }
    /// `1:*`, every message.
    pub fn all() -> SequenceSet {
        SequenceSet {
            ranges: vec![SeqRange {
                start: SeqNum::Value(1),
                end: SeqNum::Star,
            }],
        }
    }
    /// Compresses numbers into ranges, in the given order: each run of
    /// consecutive ascending numbers becomes one range. Sort the input first
    /// for the shortest result (COPYUID wants source order kept). Zeros are
    /// skipped; `None` if nothing remains.
    pub fn from_ids(ids: &[u32]) -> Option<SequenceSet> {
        let mut ranges: Vec<SeqRange> = Vec::new();
        let mut run: Option<(u32, u32)> = None;
        for &id in ids.iter().filter(|&&i| i != 0) {
            run = match run {
                Some((s, e)) if e.checked_add(1) == Some(id) => Some((s, id)),
                Some((s, e)) => {
                    ranges.push(SeqRange {
                        start: SeqNum::Value(s),
                        end: SeqNum::Value(e),
                    });
                    Some((id, id))
                }
                None => Some((id, id)),
            };
        }
        if let Some((s, e)) = run {
            ranges.push(SeqRange {
                start: SeqNum::Value(s),
                end: SeqNum::Value(e),
            });
        }
        SequenceSet::new(ranges)
    }
    /// The ranges as written.
    pub fn ranges(&self) -> &[SeqRange] {
        &self.ranges
    }
    /// Whether any end is `*`.
    pub fn has_star(&self) -> bool {
        self.ranges
            .iter()
            .any(|r| r.start == SeqNum::Star || r.end == SeqNum::Star)
    }
    /// Resolves against a mailbox whose largest number (message count or
    /// highest UID) is `largest`: sorted, merged, non-overlapping ranges.
    /// With `largest == 0` (empty mailbox) a range touching `*` vanishes and
    /// explicit numbers are kept (a UID set may name absent UIDs).
    pub fn resolve(&self, largest: u32) -> Vec<RangeInclusive<u32>> {
        let mut v: Vec<(u32, u32)> = self
            .ranges
            .iter()
            .filter(|r| largest > 0 || (r.start != SeqNum::Star && r.end != SeqNum::Star))
            .map(|r| {
                let x = r.resolve(largest);
                (*x.start(), *x.end())
            })
            .collect();
        v.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged.into_iter().map(|(s, e)| s..=e).collect()
    }
    /// Whether `n` is in the set, given the largest number in use.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.ranges.iter().any(|r| r.resolve(largest).contains(&n))
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_saved_result() {
            return f.write_str("$");
        }
        let mut s = String::new();
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            r.start.write(&mut s);
            if r.end != r.start {
                s.push(':');
                r.end.write(&mut s);
            }
        }
        f.write_str(&s)
    }
}

/// Parses the wire form (`1:3,7,9:*`, or `$` alone).
pub(crate) fn parse_seq_set(s: &[u8]) -> Result<SequenceSet, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s == b"$" {
        return Ok(SequenceSet::saved_result());
    }
    if s.contains(&b'$') {
        return Err("'$' (the saved search result) must stand alone".into());
    }
    let mut ranges = Vec::new();
    for part in s.split(|&b| b == b',') {
        let mut ends = part.splitn(2, |&b| b == b':');
        let a = parse_seq_num(ends.next().unwrap_or_default())?;
        let b = match ends.next() {
            Some(x) => parse_seq_num(x)?,
            None => a,
        };
        ranges.push(SeqRange { start: a, end: b });
    }
    Ok(SequenceSet { ranges })
}

fn parse_seq_num(s: &[u8]) -> Result<SeqNum, String> {
    match s {
        b"" => Err("missing number".into()),
        b"*" => Ok(SeqNum::Star),
        b"$" => Err("'$' (SEARCHRES) is not supported".into()),
        _ if s.iter().all(u8::is_ascii_digit) => {
            let v = std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or_else(|| format!("{} is out of range", String::from_utf8_lossy(s)))?;
            if v == 0 {
                Err("0 is not a valid message number".into())
            } else {
                Ok(SeqNum::Value(v))
            }
        }
        _ => Err(format!("unexpected '{}'", String::from_utf8_lossy(s))),
    }
}

impl FromStr for SequenceSet {
    type Err = InvalidSequenceSet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_seq_set(s.as_bytes()).map_err(InvalidSequenceSet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let s: SequenceSet = "1:3,7,9:*".parse().unwrap();
        assert_eq!(s.to_string(), "1:3,7,9:*");
        assert!(s.has_star());
        let r: SequenceSet = "5:2".parse().unwrap();
        assert_eq!(r.resolve(10), vec![2..=5]);
        assert!("0".parse::<SequenceSet>().is_err());
        assert!("1:".parse::<SequenceSet>().is_err());
        assert!("1,,2".parse::<SequenceSet>().is_err());
        let saved: SequenceSet = "$".parse().unwrap();
        assert!(saved.is_saved_result());
        assert_eq!(saved.to_string(), "$");
        assert!(saved.resolve(10).is_empty());
        assert!(!saved.contains(1, 10));
        assert!("1,$".parse::<SequenceSet>().is_err());
        assert!("4294967296".parse::<SequenceSet>().is_err());
    }

    #[test]
    fn resolve_merges() {
        let s: SequenceSet = "7:*,1:3,4,20".parse().unwrap();
        assert_eq!(s.resolve(10), vec![1..=4, 7..=10, 20..=20]);
        // UID FETCH 15:* on a mailbox whose highest UID is 10 includes 10.
        let s: SequenceSet = "15:*".parse().unwrap();
        assert_eq!(s.resolve(10), vec![10..=15]);
        assert!(s.resolve(0).is_empty());
        assert!(s.contains(12, 10));
        assert!(!s.contains(9, 10));
    }

    #[test]
    fn compress() {
        let s = SequenceSet::from_ids(&[1, 2, 3, 5, 7, 8, 0, 9]).unwrap();
        assert_eq!(s.to_string(), "1:3,5,7:9");
        assert_eq!(
            SequenceSet::from_ids(&[u32::MAX, 1]).unwrap().to_string(),
            "4294967295,1"
        );
        assert!(SequenceSet::from_ids(&[]).is_none());
    }
}
