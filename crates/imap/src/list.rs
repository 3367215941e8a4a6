//! LIST (RFC 3501 §6.3.8, RFC 9051 §6.3.9) with LIST-EXTENDED selection
//! and return options (RFC 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE
//! (RFC 6154); LSUB (RFC 3501 §6.3.9); and the `%`/`*` pattern matcher.
//!
//! Every mailbox's superiors exist in the store (it creates them), so the
//! only names listed that do not exist are subscriptions to missing
//! mailboxes (`\NonExistent`, or `\Noselect` for LSUB).

use crate::session::{Out, Reply, Res, Session};
use slotmail_imap_proto::{
    Data, ListCommand, ListData, ListReturnOption, ListSelectOption, MailboxAttr, MailboxName,
    Response, StatusItem, Value,
};
use slotmail_store::MailboxInfo;
use std::collections::{BTreeMap, BTreeSet};

/// Longest pattern accepted, in characters (a mailbox name has at most
/// 1,024 bytes; a longer pattern is a mistake or an attack on the matcher).
pub(crate) const PATTERN_CHARS_MAX: usize = 4096;

/// The hierarchy separator.
const SEP: char = '/';

/// A LIST pattern after the reference has been applied.
#[derive(Debug, Clone)]
pub(crate) struct Pattern(Vec<char>);

impl Pattern {
    /// `reference` and `pattern` combined as RFC 3501 §6.3.8 describes:
    /// the pattern is interpreted relative to the reference. Runs of
    /// wildcards are collapsed (`**` is `*`, `%*` is `*`).
    pub fn new(reference: &str, pattern: &str) -> Pattern {
        let joined = if reference.is_empty() {
            pattern.to_string()
        } else if reference.ends_with(SEP) && pattern.starts_with(SEP) {
            format!("{reference}{}", &pattern[1..])
        } else {
            format!("{reference}{pattern}")
        };
        let mut chars: Vec<char> = Vec::with_capacity(joined.len());
        for c in joined.chars() {
            match (chars.last().copied(), c) {
                (Some('*'), '*' | '%') => {}
                (Some('%'), '*') => {
                    chars.pop();
                    chars.push('*');
                }
                (Some('%'), '%') => {}
                _ => chars.push(c),
            }
        }
        Pattern(chars)
    }

    /// Whether the pattern has a `%` wildcard.
    pub fn has_percent(&self) -> bool {
        self.0.contains(&'%')
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `name` matches. `*` matches anything, `%` anything but the
    /// separator; `INBOX` as first level matches case-insensitively.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let fold = if name.len() >= 5
            && name[..5].iter().collect::<String>() == "INBOX"
            && (name.len() == 5 || name[5] == SEP)
        {
            5
        } else {
            0
        };
        let n = name.len();
        let mut prev = vec![false; n + 1];
        prev[0] = true;
        let mut cur = vec![false; n + 1];
        for &p in &self.0 {
            cur[0] = prev[0] && matches!(p, '*' | '%');
            for j in 1..=n {
                let c = name[j - 1];
                cur[j] = match p {
                    '*' => prev[j] || cur[j - 1],
                    '%' => prev[j] || (cur[j - 1] && c != SEP),
                    _ if j - 1 < fold => prev[j - 1] && p.eq_ignore_ascii_case(&c),
                    _ => prev[j - 1] && p == c,
                };
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        prev[n]
    }
}

/// The special-use attribute of a stored `\Sent`-style name.
fn special_use_attr(name: &str) -> Option<MailboxAttr> {
    Some(match name.to_ascii_lowercase().as_str() {
        "\\all" => MailboxAttr::All,
        "\\archive" => MailboxAttr::Archive,
        "\\drafts" => MailboxAttr::Drafts,
        "\\flagged" => MailboxAttr::Flagged,
        "\\junk" => MailboxAttr::Junk,
        "\\sent" => MailboxAttr::Sent,
        "\\trash" => MailboxAttr::Trash,
        "\\important" => MailboxAttr::Important,
        _ => return None,
    })
}

/// One line of a LIST answer.
#[derive(Debug, Default)]
struct Row {
    attributes: Vec<MailboxAttr>,
    child_subscribed: bool,
    /// Local id when the mailbox exists (for LIST-STATUS).
    id: Option<i64>,
}

/// The user's mailboxes by name.
struct Tree<'a> {
    by_name: BTreeMap<&'a str, &'a MailboxInfo>,
}

impl<'a> Tree<'a> {
    fn new(mailboxes: &'a [MailboxInfo]) -> Tree<'a> {
        Tree {
            by_name: mailboxes.iter().map(|m| (m.name.as_str(), m)).collect(),
        }
    }

    fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{SEP}");
        self.by_name
            .range(prefix.as_str()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
    }

    /// Attributes of an existing mailbox.
    fn attributes(&self, m: &MailboxInfo) -> Vec<MailboxAttr> {
        let mut attrs = vec![if self.has_children(&m.name) {
            MailboxAttr::HasChildren
        } else {
            MailboxAttr::HasNoChildren
        }];
        if let Some(a) = m.special_use.as_deref().and_then(special_use_attr) {
            attrs.push(a);
        }
        attrs
    }
}

/// The superiors of a name, outermost first: `a/b/c` → `a`, `a/b`.
fn superiors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEP).map(move |(i, _)| &name[..i])
}

impl Session {
    pub(crate) fn list(&mut self, cmd: &ListCommand, out: &mut Out) -> Res {
        let user = self.user()?;
        let enc = self.encoding();
        let mut patterns = Vec::new();
        for p in &cmd.patterns {
            if p.is_empty() {
                // RFC 3501 §6.3.8: the delimiter and the reference's root.
                let root = match cmd.reference.find(SEP) {
                    Some(i) => &cmd.reference[..=i],
                    None => "",
                };
                let mailbox = MailboxName::new(root)
                    .map_err(|e| Reply::bad(format!("Invalid reference: {e}")))?;
                Response::Data(Data::List(ListData {
                    attributes: vec![MailboxAttr::NoSelect],
                    delimiter: Some(SEP),
                    mailbox,
                    extended: Vec::new(),
                }))
                .encode_with(out, enc);
                continue;
            }
            let pattern = Pattern::new(&cmd.reference, p);
            if pattern.len() > PATTERN_CHARS_MAX {
                return Err(Reply::bad(format!(
                    "Pattern too long (limit {PATTERN_CHARS_MAX} characters)"
                )));
            }
            patterns.push(pattern);
        }
        if patterns.is_empty() {
            return Ok(Reply::ok("LIST completed"));
        }
        let select_subscribed = cmd.selection.contains(&ListSelectOption::Subscribed);
        let select_special = cmd.selection.contains(&ListSelectOption::SpecialUse);
        let recursive = cmd.selection.contains(&ListSelectOption::RecursiveMatch);
        let return_subscribed =
            select_subscribed || cmd.return_opts.contains(&ListReturnOption::Subscribed);
        let status_items: Option<&[StatusItem]> = cmd.return_opts.iter().find_map(|o| match o {
            ListReturnOption::Status(items) => Some(items.as_slice()),
            _ => None,
        });

        let mailboxes = user.mailboxes()?;
        let tree = Tree::new(&mailboxes);
        let subscriptions: BTreeSet<String> = if return_subscribed {
            user.subscriptions()?.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        let matches = |name: &str| patterns.iter().any(|p| p.matches(name));

        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let row_for = |name: &str| -> Row {
            match tree.by_name.get(name) {
                Some(m) => Row {
                    attributes: tree.attributes(m),
                    child_subscribed: false,
                    id: Some(m.id),
                },
                None => Row {
                    attributes: vec![MailboxAttr::NonExistent],
                    child_subscribed: false,
                    id: None,
                },
            }
        };
        if select_subscribed {
            for s in &subscriptions {
                if matches(s) {
                    rows.insert(s.clone(), row_for(s));
                }
                if recursive {
                    for sup in superiors(s) {
                        if matches(sup) && !subscriptions.contains(sup) {
                            rows.entry(sup.to_string())
                                .or_insert_with(|| row_for(sup))
                                .child_subscribed = true;
                        }
                    }
                }
            }
            if select_special {
                rows.retain(|name, _| {
                    tree.by_name
                        .get(name.as_str())
                        .is_some_and(|m| m.special_use.is_some())
                });
            }
        } else {
            for m in &mailboxes {
                if (!select_special || m.special_use.is_some()) && matches(&m.name) {
                    rows.insert(m.name.clone(), row_for(&m.name));
                }
                // The store creates superiors, but should one be missing,
                // `%` still shows the level as a non-selectable parent.
                if !select_special {
                    for sup in superiors(&m.name) {
                        if !tree.by_name.contains_key(sup) && matches(sup) {
                            rows.entry(sup.to_string()).or_insert_with(|| Row {
                                attributes: vec![MailboxAttr::NoSelect, MailboxAttr::HasChildren],
                                child_subscribed: false,
                                id: None,
                            });
                        }
                    }
                }
            }
        }

        for (name, mut row) in rows {
            if return_subscribed && subscriptions.contains(&name) {
                row.attributes.push(MailboxAttr::Subscribed);
            }
            let Ok(mailbox) = MailboxName::new(&name) else {
                continue;
            };
            let extended = if row.child_subscribed {
                vec![(
                    "CHILDINFO".to_string(),
                    Value::List(vec![Value::String(b"SUBSCRIBED".to_vec())]),
                )]
            } else {
                Vec::new()
            };
            Response::Data(Data::List(ListData {
                attributes: row.attributes,
                delimiter: Some(SEP),
                mailbox: mailbox.clone(),
                extended,
            }))
            .encode_with(out, enc);
            if let (Some(items), Some(id)) = (status_items, row.id)
                && let Err(e) = self.write_status_data(&user, &mailbox, id, items, out)
            {
                tracing::warn!(mailbox = %name, cause = %e, "LIST-STATUS skipped a mailbox");
            }
            out.boundary();
        }
        Ok(Reply::ok("LIST completed"))
    }

    pub(crate) fn lsub(&mut self, reference: &str, pattern: &str, out: &mut Out) -> Res {
        let user = self.user()?;
        let enc = self.encoding();
        let lsub = |attributes: Vec<MailboxAttr>, name: &str, out: &mut Out| {
            if let Ok(mailbox) = MailboxName::new(name) {
                Response::Data(Data::Lsub(ListData {
                    attributes,
                    delimiter: Some(SEP),
                    mailbox,
                    extended: Vec::new(),
                }))
                .encode_with(out, enc);
            }
        };
        if pattern.is_empty() {
            lsub(vec![MailboxAttr::NoSelect], "", out);
            return Ok(Reply::ok("LSUB completed"));
        }
        let pattern = Pattern::new(reference, pattern);
        if pattern.len() > PATTERN_CHARS_MAX {
            return Err(Reply::bad(format!(
                "Pattern too long (limit {PATTERN_CHARS_MAX} characters)"
            )));
        }
        let existing: BTreeSet<String> = user.mailboxes()?.into_iter().map(|m| m.name).collect();
        let subscriptions: BTreeSet<String> = user.subscriptions()?.into_iter().collect();
        let mut rows: BTreeMap<&str, bool> = BTreeMap::new();
        for s in &subscriptions {
            if pattern.matches(s) {
                rows.insert(s, existing.contains(s));
            }
            // RFC 3501 §6.3.9: with `%`, a superior of a subscribed name is
            // listed as \Noselect when it is not subscribed itself.
            if pattern.has_percent() {
                for sup in superiors(s) {
                    if !subscriptions.contains(sup) && pattern.matches(sup) {
                        rows.entry(sup).or_insert(false);
                    }
                }
            }
        }
        for (name, selectable) in rows {
            let attrs = if selectable {
                Vec::new()
            } else {
                vec![MailboxAttr::NoSelect]
            };
            lsub(attrs, name, out);
        }
        Ok(Reply::ok("LSUB completed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(reference: &str, pattern: &str, name: &str) -> bool {
        Pattern::new(reference, pattern).matches(name)
    }

    #[test]
    fn wildcards() {
        assert!(m("", "*", "a/b/c"));
        assert!(m("", "%", "abc"));
        assert!(!m("", "%", "a/b"));
        assert!(m("", "a/%", "a/b"));
        assert!(!m("", "a/%", "a/b/c"));
        assert!(m("", "a/*", "a/b/c"));
        assert!(!m("", "a/*", "a"));
        assert!(m("", "a*", "a"));
        assert!(m("", "*c", "a/b/c"));
        assert!(m("", "%/%", "x/y"));
        assert!(!m("", "%/%", "x"));
        assert!(m("", "Sent", "Sent"));
        assert!(!m("", "sent", "Sent"));
        assert!(m("", "", ""));
        assert!(!m("", "", "x"));
        assert!(m("", "%**%%", "a/b"));
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert!(m("", "inbox", "INBOX"));
        assert!(m("", "Inbox/%", "INBOX/x"));
        assert!(!m("", "inbox/X", "INBOX/x"));
        assert!(!m("", "inboxes", "INBOXES"));
        assert!(m("", "in*", "INBOX"));
    }

    #[test]
    fn references() {
        assert!(m("Work/", "%", "Work/a"));
        assert!(!m("Work/", "%", "Work"));
        assert!(m("Work", "/%", "Work/a"));
        assert!(m("Work/", "/%", "Work/a"));
        assert!(m("W", "ork", "Work"));
    }

    /// A direct recursive definition, for comparison.
    fn reference_match(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| reference_match(rest, &n[i..])),
            Some(('%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| reference_match(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && reference_match(rest, &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_reference(p in "[ab/*%]{0,8}", n in "[ab/]{0,8}") {
            let pattern = Pattern::new("", &p);
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            prop_assert_eq!(pattern.matches(&n), reference_match(&pc, &nc));
        }
    }
}
