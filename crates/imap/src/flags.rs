//! Flags between the wire and the store: client flag lists to the store's
//! `Flags`, and the store's flags (plus the session's `\Recent`) back to
//! `(\Seen $Keyword ...)`, FLAGS and PERMANENTFLAGS responses.

use crate::session::Reply;
use slotmail_imap_proto::Flag;
use slotmail_store::Flags;

/// The system flags every mailbox supports, in the order FLAGS lists them.
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The store's flags for flags a client sent. `\Recent` is ignored (it
/// cannot be set, RFC 3501 §2.3.2); other unknown `\`-flags are refused.
pub(crate) fn to_store(flags: &[Flag]) -> Result<Flags, Reply> {
    let mut out = Flags::empty();
    for flag in flags {
        match flag {
            Flag::Recent => {}
            Flag::Extension(name) => {
                return Err(Reply::bad(format!("Unknown system flag \\{name}")));
            }
            other => out.insert(&other.to_string()).map_err(Reply::from)?,
        }
    }
    Ok(out)
}

/// Appends `(\Flag ... keyword ...)`, with `\Recent` when `recent`.
pub(crate) fn write_flags(out: &mut Vec<u8>, flags: &Flags, recent: bool) {
    out.push(b'(');
    let mut first = true;
    for name in flags.names() {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(name.as_bytes());
    }
    if recent {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}

/// Appends `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` for a mailbox
/// with the given keywords. Read-only mailboxes have no permanent flags;
/// `\*` is offered while the mailbox may take new keywords.
pub(crate) fn write_mailbox_flags(
    out: &mut Vec<u8>,
    keywords: &[String],
    read_only: bool,
    new_keywords: bool,
) {
    let mut list = String::from(SYSTEM_FLAGS);
    for k in keywords {
        list.push(' ');
        list.push_str(k);
    }
    out.extend_from_slice(format!("* FLAGS ({list})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n");
    } else {
        let star = if new_keywords { " \\*" } else { "" };
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({list}{star})] Flags permitted\r\n").as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_flags_to_store() {
        let f = to_store(&[Flag::Seen, Flag::Recent, Flag::Keyword("$Forwarded".into())]).unwrap();
        assert_eq!(f.names().collect::<Vec<_>>(), ["\\Seen", "$Forwarded"]);
        assert!(to_store(&[Flag::Extension("Bogus".into())]).is_err());
    }

    #[test]
    fn writes_lists() {
        let f = Flags::from_names(["\\Seen", "\\Deleted", "work"]).unwrap();
        let mut out = Vec::new();
        write_flags(&mut out, &f, true);
        assert_eq!(out, b"(\\Deleted \\Seen work \\Recent)");
        out.clear();
        write_flags(&mut out, &Flags::empty(), false);
        assert_eq!(out, b"()");
        out.clear();
        write_mailbox_flags(&mut out, &["work".into()], false, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work \\*)] Flags permitted\r\n"
        );
    }
}
