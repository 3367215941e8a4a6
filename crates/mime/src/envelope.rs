//! The IMAP ENVELOPE of a message (RFC 3501 §7.4.2, RFC 9051 §7.5.2) and
//! its `Date:` as a timestamp.
//!
//! Field values are given as they appear in the header, only unfolded:
//! RFC 3501 describes ENVELOPE as the header "parsed into the component
//! parts", and RFC 2047 encoded words are part of the value the client
//! decodes (the subject and display names stay encoded; see also RFC 9051
//! §7.5.2, which keeps the same definition). `Sender` and `Reply-To` default
//! to `From` when absent or empty, as RFC 3501 requires. When a field
//! occurs more than once, the first occurrence is used.
//!
//! Folding is not part of a field's value (RFC 5322 §2.2.3), so line ends
//! are removed everywhere. The subject and display names, which are shown
//! to people, also get every run of blanks turned into one space, as
//! UW-IMAP and Dovecot do.

use crate::address::{self, Addr};
use crate::date;
use crate::header::{self, Field};
use crate::imap_string::{header_text, push_nstring, push_string};

/// Text for people: tabs and runs of blanks become one space, ends trimmed.
fn humanize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split([' ', '\t']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Appends an address list (`NIL` when it has no members).
fn push_addresses(out: &mut String, addrs: &[Addr]) {
    if addrs.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for a in addrs {
        match a {
            Addr::Mailbox {
                name,
                adl,
                mailbox,
                host,
            } => {
                out.push('(');
                let name = name.as_deref().map(|n| humanize(&header_text(n)));
                push_nstring(out, name.as_deref());
                out.push(' ');
                push_nstring(out, adl.as_deref().map(header_text).as_deref());
                out.push(' ');
                push_string(out, &header_text(mailbox));
                out.push(' ');
                push_string(out, &header_text(host));
                out.push(')');
            }
            Addr::GroupStart(name) => {
                out.push_str("(NIL NIL ");
                push_string(out, &header_text(name));
                out.push_str(" NIL)");
            }
            Addr::GroupEnd => out.push_str("(NIL NIL NIL NIL)"),
        }
    }
    out.push(')');
}

/// Builds the ENVELOPE value (with its parentheses) from a header.
pub(crate) fn build(raw: &[u8], fields: &[Field]) -> String {
    let text = |name: &str| {
        header::first(raw, fields, name).map(|f| header_text(&header::unfold(f.raw_value(raw))))
    };
    let addrs = |name: &str| {
        header::first(raw, fields, name)
            .map(|f| address::parse_list(f.raw_value(raw)))
            .unwrap_or_default()
    };
    let from = addrs("From");
    let mut sender = addrs("Sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addrs("Reply-To");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }

    let mut out = String::with_capacity(256);
    out.push('(');
    push_nstring(&mut out, text("Date").as_deref());
    out.push(' ');
    push_nstring(&mut out, text("Subject").map(|s| humanize(&s)).as_deref());
    for list in [
        &from,
        &sender,
        &reply_to,
        &addrs("To"),
        &addrs("Cc"),
        &addrs("Bcc"),
    ] {
        out.push(' ');
        push_addresses(&mut out, list);
    }
    out.push(' ');
    push_nstring(&mut out, text("In-Reply-To").as_deref());
    out.push(' ');
    push_nstring(&mut out, text("Message-ID").as_deref());
    out.push(')');
    out
}

/// The first `Date:` header as (UTC seconds, zone offset seconds east).
pub(crate) fn sent_date(raw: &[u8], fields: &[Field]) -> (Option<i64>, i32) {
    let Some(field) = header::first(raw, fields, "Date") else {
        return (None, 0);
    };
    match date::parse(field.raw_value(raw)) {
        Some(d) => (Some(d.timestamp), d.offset),
        None => (None, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(raw: &str) -> String {
        let raw = raw.as_bytes();
        build(raw, &header::fields_in(raw, 0..raw.len()))
    }

    #[test]
    fn empty_header_is_all_nil() {
        assert_eq!(env(""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn empty_sender_defaults_to_from() {
        assert_eq!(
            env("From: a@b\r\nSender:\r\nReply-To: (none)\r\nTo: x@y\r\n\r\n"),
            "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) \
((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn subject_and_names_are_humanized() {
        assert_eq!(
            env("Subject: a\r\n\t b  c\t\r\nFrom: \"x \t y\" <u@h>\r\n\r\n"),
            "(NIL \"a b c\" ((\"x y\" NIL \"u\" \"h\")) ((\"x y\" NIL \"u\" \"h\")) \
((\"x y\" NIL \"u\" \"h\")) NIL NIL NIL NIL NIL)"
        );
        // Structured fields are only unfolded.
        assert_eq!(
            env("Message-ID: <a\r\n  @b>\r\n\r\n"),
            "(NIL NIL NIL NIL NIL NIL NIL NIL NIL \"<a  @b>\")"
        );
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(
            env("Subject: one\r\nSubject: two\r\n\r\n"),
            "(NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn dates() {
        let date = |v: &str| {
            let raw = format!("Date: {v}\r\n\r\n");
            let raw = raw.as_bytes();
            sent_date(raw, &header::fields_in(raw, 0..raw.len()))
        };
        // 1994-02-08T05:52:25Z
        assert_eq!(
            date("Mon, 7 Feb 1994 21:52:25 -0800 (PST)"),
            (Some(760_686_745), -8 * 3600)
        );
        assert_eq!(
            date("Thu, 15 Feb 2007 01:02:03 +0200"),
            (Some(1_171_494_123), 7200)
        );
        assert_eq!(date("not a date"), (None, 0));
        assert_eq!(date(""), (None, 0));
        assert_eq!(date("Mon, 7 Foo 1994 21:52:25 -0800"), (None, 0));
    }
}
