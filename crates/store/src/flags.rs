//! Message flags: the five stored system flags as bits, keywords as a sorted set.
//!
//! `\Recent` is not a stored flag (it is per-session state, see
//! `User::claim_recent`), so it is refused here. Keywords are IMAP atoms
//! (RFC 3501 §9 `flag-keyword`); their case is preserved but they compare
//! case-insensitively, as RFC 3501 §2.3.2 says of flags.

use crate::error::StoreError;
use std::collections::BTreeSet;

/// Longest keyword accepted, in bytes.
pub const KEYWORD_LEN_MAX: usize = 128;

/// The system flags the store keeps, as bits.
pub const SEEN: u8 = 1;
pub const ANSWERED: u8 = 2;
pub const FLAGGED: u8 = 4;
pub const DELETED: u8 = 8;
pub const DRAFT: u8 = 16;

const SYSTEM: [(u8, &str); 5] = [
    (ANSWERED, "\\Answered"),
    (FLAGGED, "\\Flagged"),
    (DELETED, "\\Deleted"),
    (SEEN, "\\Seen"),
    (DRAFT, "\\Draft"),
];

/// The flags of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// Bit set of system flags (`SEEN`, `ANSWERED`, ...).
    pub system: u8,
    /// Keywords, kept sorted by their lowercase form and de-duplicated.
    keywords: BTreeSet<Keyword>,
}

/// A keyword, ordered and compared case-insensitively, case preserved.
#[derive(Debug, Clone)]
struct Keyword(String);

impl PartialEq for Keyword {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Keyword {}
impl std::hash::Hash for Keyword {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_ascii_lowercase().hash(state)
    }
}
impl PartialOrd for Keyword {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyword {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .to_ascii_lowercase()
            .cmp(&other.0.to_ascii_lowercase())
    }
}

/// How STORE combines the given flags with the present ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: replace.
    Set,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

impl Flags {
    /// No flags.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse flag names as a client sends them (`\Seen`, `$Forwarded`, ...).
    /// `\Recent` and unknown backslash flags are refused.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, StoreError> {
        let mut flags = Flags::empty();
        for name in names {
            flags.insert(name)?;
        }
        Ok(flags)
    }

    /// Add one flag by name.
    pub fn insert(&mut self, name: &str) -> Result<(), StoreError> {
        if let Some(rest) = name.strip_prefix('\\') {
            let bit = SYSTEM
                .iter()
                .find(|(_, n)| n[1..].eq_ignore_ascii_case(rest))
                .map(|(b, _)| *b)
                .ok_or_else(|| StoreError::InvalidFlag(name.to_string()))?;
            self.system |= bit;
            return Ok(());
        }
        validate_keyword(name)?;
        self.keywords.insert(Keyword(name.to_string()));
        Ok(())
    }

    /// Whether a system flag bit is set.
    pub fn has(&self, bit: u8) -> bool {
        self.system & bit != 0
    }

    /// Whether a keyword is set (case-insensitive).
    pub fn has_keyword(&self, name: &str) -> bool {
        self.keywords.contains(&Keyword(name.to_string()))
    }

    /// The keywords, sorted.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|k| k.0.as_str())
    }

    /// All flag names, system flags first, in a stable order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        SYSTEM
            .iter()
            .filter(|(b, _)| self.system & b != 0)
            .map(|(_, n)| *n)
            .chain(self.keywords())
    }

    /// Combine with `other` as STORE does.
    pub fn apply(&self, op: FlagOp, other: &Flags) -> Flags {
        match op {
            FlagOp::Set => other.clone(),
            FlagOp::Add => Flags {
                system: self.system | other.system,
                keywords: self.keywords.union(&other.keywords).cloned().collect(),
            },
            FlagOp::Remove => Flags {
                system: self.system & !other.system,
                keywords: self.keywords.difference(&other.keywords).cloned().collect(),
            },
        }
    }

    /// The stored form of the keywords: space-separated, sorted.
    pub(crate) fn keywords_text(&self) -> String {
        let mut out = String::new();
        for k in &self.keywords {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&k.0);
        }
        out
    }

    /// Rebuild from the stored form. The stored form was validated on the way
    /// in, so a bad keyword here means damage.
    pub(crate) fn from_stored(system: u8, keywords: &str) -> Result<Self, String> {
        let mut flags = Flags {
            system,
            ..Flags::default()
        };
        if system & !(SEEN | ANSWERED | FLAGGED | DELETED | DRAFT) != 0 {
            return Err(format!("unknown system flag bits {system:#x}"));
        }
        for k in keywords.split(' ').filter(|k| !k.is_empty()) {
            validate_keyword(k).map_err(|e| e.to_string())?;
            flags.keywords.insert(Keyword(k.to_string()));
        }
        Ok(flags)
    }

    /// Number of keywords.
    pub fn keyword_count(&self) -> usize {
        self.keywords.len()
    }
}

/// A keyword is an IMAP atom without `\`, at most `KEYWORD_LEN_MAX` bytes.
pub fn validate_keyword(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= KEYWORD_LEN_MAX
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidFlag(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_names() {
        let f = Flags::from_names(["\\seen", "$Forwarded", "\\Flagged", "$forwarded"]).unwrap();
        assert!(f.has(SEEN) && f.has(FLAGGED) && !f.has(DELETED));
        assert_eq!(
            f.names().collect::<Vec<_>>(),
            ["\\Flagged", "\\Seen", "$Forwarded"]
        );
    }

    #[test]
    fn refuses_recent_and_junk() {
        assert!(Flags::from_names(["\\Recent"]).is_err());
        assert!(Flags::from_names(["\\Bogus"]).is_err());
        assert!(Flags::from_names(["a b"]).is_err());
        assert!(Flags::from_names([""]).is_err());
        assert!(Flags::from_names(["x".repeat(KEYWORD_LEN_MAX + 1).as_str()]).is_err());
    }

    #[test]
    fn apply_ops() {
        let a = Flags::from_names(["\\Seen", "k1"]).unwrap();
        let b = Flags::from_names(["\\Deleted", "K1", "k2"]).unwrap();
        assert_eq!(
            a.apply(FlagOp::Add, &b).names().collect::<Vec<_>>(),
            ["\\Deleted", "\\Seen", "k1", "k2"]
        );
        assert_eq!(
            a.apply(FlagOp::Remove, &b).names().collect::<Vec<_>>(),
            ["\\Seen"]
        );
        assert_eq!(a.apply(FlagOp::Set, &b), b);
    }

    #[test]
    fn stored_round_trip() {
        let a = Flags::from_names(["\\Seen", "zeta", "Alpha"]).unwrap();
        let back = Flags::from_stored(a.system, &a.keywords_text()).unwrap();
        assert_eq!(a, back);
        assert!(Flags::from_stored(0x80, "").is_err());
    }
}
