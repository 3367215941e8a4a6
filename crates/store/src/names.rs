//! Mailbox names: validation and normalisation.
//!
//! Names are UTF-8 (the IMAP layer decodes modified UTF-7), the hierarchy
//! separator is `/`, and `INBOX` is case-insensitive as its first level
//! (RFC 3501 §5.1). Wildcards and control characters are refused so that a
//! stored name can always be listed and selected again.

use crate::error::StoreError;

/// The hierarchy separator.
pub const SEPARATOR: char = '/';
/// Longest mailbox name, in bytes of UTF-8.
pub const MAILBOX_NAME_LEN_MAX: usize = 1024;
/// Deepest hierarchy.
pub const MAILBOX_DEPTH_MAX: usize = 32;

/// Validate a name and return its normal form (`inbox/x` → `INBOX/x`).
pub fn normalize(name: &str) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::InvalidName(format!("{name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAILBOX_NAME_LEN_MAX {
        return Err(bad("too long"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(bad("contains a control character or a wildcard"));
    }
    let levels: Vec<&str> = name.split(SEPARATOR).collect();
    if levels.len() > MAILBOX_DEPTH_MAX {
        return Err(bad("too deep"));
    }
    if levels.iter().any(|l| l.is_empty()) {
        return Err(bad("empty hierarchy level"));
    }
    if levels.iter().any(|l| *l == "." || *l == "..") {
        return Err(bad("'.' and '..' are not names"));
    }
    let mut out = String::with_capacity(name.len());
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        if i == 0 && level.eq_ignore_ascii_case("INBOX") {
            out.push_str("INBOX");
        } else {
            out.push_str(level);
        }
    }
    Ok(out)
}

/// The superiors of a name, outermost first: `a/b/c` → `a`, `a/b`.
pub fn superiors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEPARATOR).map(move |(i, _)| &name[..i])
}

/// Whether `child` is strictly below `parent` in the hierarchy.
pub fn is_inferior(child: &str, parent: &str) -> bool {
    child.len() > parent.len() + 1
        && child.starts_with(parent)
        && child[parent.len()..].starts_with(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_inbox() {
        assert_eq!(normalize("inbox").unwrap(), "INBOX");
        assert_eq!(normalize("Inbox/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(normalize("Work/inbox").unwrap(), "Work/inbox");
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "a//b", "/a", "a/", "a*", "a%b", "a\nb", "a/../b", "."] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize(&"x".repeat(MAILBOX_NAME_LEN_MAX + 1)).is_err());
        assert!(normalize(&vec!["a"; MAILBOX_DEPTH_MAX + 1].join("/")).is_err());
        assert!(normalize("Entwürfe/日本").is_ok());
    }

    #[test]
    fn hierarchy() {
        assert_eq!(superiors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert!(is_inferior("a/b", "a"));
        assert!(!is_inferior("ab", "a"));
        assert!(!is_inferior("a", "a"));
    }
}
