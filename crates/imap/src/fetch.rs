//! FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 9051 §6.4.5) with the
//! CHANGEDSINCE and VANISHED modifiers (RFC 7162).
//!
//! Per-message facts (flags, size, dates, MODSEQ) come from one store
//! snapshot per command; ENVELOPE and BODYSTRUCTURE from the facts cached
//! at append (`User::message_info`); body bytes from the verified message
//! file (`User::read_message`). Each message's response is built whole
//! before it is written, so a message that fails verification is left out
//! entirely (the command then ends `NO [CORRUPTION]`), never sent partly or
//! empty.

use crate::flags;
use crate::session::{Out, Reply, Res, Session};
use slotmail_imap_proto::response::{
    write_binary_literal, write_fetch_item, write_literal, write_section,
};
use slotmail_imap_proto::{
    DateTime, FetchAttr, FetchAttrs, FetchItem, FetchModifiers, Partial, ResponseCode, Section,
    SectionText, SequenceSet,
};
use slotmail_mime::MessageInfo;
use slotmail_store::{FlagOp, Flags, MessageMeta, SEEN, StoreError, User};
use std::borrow::Cow;
use std::collections::HashSet;

/// Up to this many messages a FETCH reads their records one by one
/// instead of the whole mailbox.
const POINT_LOOKUPS_MAX: usize = 256;

impl Session {
    pub(crate) fn fetch(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        attrs: &FetchAttrs,
        modifiers: &FetchModifiers,
        out: &mut Out,
    ) -> Res {
        let mut items = attrs.expand();
        if modifiers.vanished && !(uid && self.enabled.qresync && modifiers.changed_since.is_some())
        {
            return Err(Reply::bad(
                "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC",
            ));
        }
        if modifiers.changed_since.is_some() || items.contains(&FetchAttr::ModSeq) {
            self.enabled.condstore = true;
        }
        if uid && !items.contains(&FetchAttr::Uid) {
            items.insert(0, FetchAttr::Uid);
        }
        if modifiers.changed_since.is_some() && !items.contains(&FetchAttr::ModSeq) {
            items.push(FetchAttr::ModSeq);
        }
        let user = self.user()?;
        let writable = self.writable().is_ok();
        let condstore = self.enabled.condstore;
        let view = self.view()?;
        let targets = view.resolve(set, uid).map_err(|e| {
            Reply::bad(format!(
                "Invalid sequence number {} (mailbox has {} messages)",
                e.seq, e.exists
            ))
        })?;

        if modifiers.vanished
            && let Some(since) = modifiers.changed_since
        {
            let largest = view.uidnext.saturating_sub(1);
            let gone: Vec<u32> = user
                .expunged_since(view.id, since)?
                .into_iter()
                .filter(|&u| set.contains(u, largest))
                .collect();
            if let Some(set) = SequenceSet::from_ids(&gone) {
                out.extend_from_slice(format!("* VANISHED (EARLIER) {set}\r\n").as_bytes());
            }
        }
        if targets.is_empty() {
            return Ok(Reply::ok("FETCH completed"));
        }

        // A few messages (mbsync fetches bodies one UID at a time): point
        // lookups. Many: one pass over the mailbox.
        let mut metas = if targets.len() <= POINT_LOOKUPS_MAX {
            let mut uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
            uids.sort_unstable();
            uids.dedup();
            user.messages_by_uid(view.id, &uids)?
        } else {
            user.snapshot(view.id)?.1
        };
        let meta_of =
            |metas: &[MessageMeta], uid: u32| metas.binary_search_by_key(&uid, |m| m.uid).ok();

        // Reading a body sets \Seen (RFC 3501 §6.4.5) in read-write mailboxes.
        let mut seen_now: HashSet<u32> = HashSet::new();
        if writable && !view.read_only && items.iter().any(sets_seen) {
            let unseen: Vec<u32> = targets
                .iter()
                .filter_map(|&(_, u)| meta_of(&metas, u).map(|i| &metas[i]))
                .filter(|m| !m.flags.has(SEEN))
                .filter(|m| modifiers.changed_since.is_none_or(|cs| m.modseq > cs))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let seen = Flags::from_names(["\\Seen"]).expect("\\Seen is a flag");
                let done = user.store_flags(view.id, &unseen, FlagOp::Add, &seen, None)?;
                for m in done.changed {
                    self.reported.push((m.uid, m.modseq));
                    seen_now.insert(m.uid);
                    if let Some(i) = meta_of(&metas, m.uid) {
                        metas[i] = m;
                    }
                }
            }
        }

        let view = self.view()?;
        let mut missing = false;
        let mut corrupt = Vec::new();
        let mut unknown_cte = Vec::new();
        for (seq, uid) in targets {
            let Some(i) = meta_of(&metas, uid) else {
                missing = true;
                continue;
            };
            let meta = &metas[i];
            if modifiers.changed_since.is_some_and(|cs| meta.modseq <= cs) {
                continue;
            }
            let message = Message {
                seq,
                meta,
                recent: view.is_recent(uid),
                flags_changed: seen_now.contains(&uid),
            };
            match fetch_line(&user, &message, &items, condstore) {
                Ok(line) => out.push_owned(line),
                Err(LineError::Store(StoreError::Expunged(_))) => missing = true,
                Err(LineError::UnknownCte(cte)) => unknown_cte.push((uid, cte)),
                Err(LineError::Store(StoreError::Corrupt { user: who, what })) => {
                    tracing::error!(user = %who, uid, guid = %meta.guid, what = %what, "IMAP FETCH: message failed verification, not sent");
                    corrupt.push(uid);
                }
                Err(LineError::Store(e)) => return Err(Reply::from(e)),
            }
            out.boundary();
            if out.is_broken() {
                break;
            }
        }
        if !corrupt.is_empty() {
            let list: Vec<String> = corrupt.iter().map(u32::to_string).collect();
            return Err(Reply::no(format!(
                "Message(s) with UID {} are damaged on the server and were not sent",
                list.join(",")
            ))
            .code(ResponseCode::Corruption));
        }
        if let Some((uid, cte)) = unknown_cte.first() {
            return Err(Reply::no(format!(
                "BINARY cannot decode the content transfer encoding {cte:?} (UID {uid})"
            ))
            .code(ResponseCode::UnknownCte));
        }
        if missing {
            return Ok(Reply::ok("Some messages were expunged meanwhile")
                .code(ResponseCode::ExpungeIssued));
        }
        Ok(Reply::ok("FETCH completed"))
    }
}

/// Whether fetching this item sets `\Seen`.
fn sets_seen(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
            | FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
    )
}

/// Why one message's FETCH line could not be written.
enum LineError {
    Store(StoreError),
    /// BINARY of a part with this (lower-cased) transfer encoding.
    UnknownCte(String),
}

impl From<StoreError> for LineError {
    fn from(e: StoreError) -> Self {
        LineError::Store(e)
    }
}

/// One message to answer for.
struct Message<'a> {
    seq: u32,
    meta: &'a MessageMeta,
    recent: bool,
    /// Its flags were just changed by this FETCH (implicit `\Seen`).
    flags_changed: bool,
}

/// Lazily loaded message data.
struct Loaded<'a> {
    user: &'a User,
    meta: &'a MessageMeta,
    raw: Option<Vec<u8>>,
    info: Option<MessageInfo>,
}

impl Loaded<'_> {
    fn raw(&mut self) -> Result<&[u8], StoreError> {
        if self.raw.is_none() {
            self.raw = Some(self.user.read_message(&self.meta.guid, self.meta.size)?);
        }
        Ok(self.raw.as_deref().unwrap_or_default())
    }

    fn info(&mut self) -> Result<&MessageInfo, StoreError> {
        if self.info.is_none() {
            self.info = Some(self.user.message_info(&self.meta.guid)?);
        }
        Ok(self.info.as_ref().expect("just loaded"))
    }

    /// The decoded bytes of `BINARY[part]`.
    fn binary(&mut self, part: &[u32]) -> Result<Cow<'_, [u8]>, LineError> {
        self.raw()?;
        if !part.is_empty() {
            self.info()?;
        }
        let raw = self.raw.as_deref().unwrap_or_default();
        match &self.info {
            None => Ok(Cow::Borrowed(raw)),
            Some(info) => slotmail_mime::binary_bytes(raw, info, part).map_err(|e| match e {
                slotmail_mime::BinaryError::UnknownEncoding(cte) => LineError::UnknownCte(cte),
            }),
        }
    }

    /// The bytes of `BODY[section]`.
    fn section(&mut self, section: &Section) -> Result<Cow<'_, [u8]>, StoreError> {
        if section.part.is_empty() && section.text.is_none() {
            return Ok(Cow::Borrowed(self.raw()?));
        }
        self.raw()?;
        self.info()?;
        let raw = self.raw.as_deref().unwrap_or_default();
        let info = self.info.as_ref().expect("loaded");
        Ok(slotmail_mime::section_bytes(
            raw,
            info,
            &to_mime_section(section),
        ))
    }
}

/// `[1.2.3]` of a BINARY item.
fn write_binary_section(line: &mut Vec<u8>, part: &[u32]) {
    let numbers: Vec<String> = part.iter().map(u32::to_string).collect();
    line.push(b'[');
    line.extend_from_slice(numbers.join(".").as_bytes());
    line.push(b']');
}

fn to_mime_section(s: &Section) -> slotmail_mime::Section {
    use slotmail_mime::SectionText as M;
    slotmail_mime::Section {
        part: s.part.clone(),
        text: s.text.as_ref().map(|t| match t {
            SectionText::Header => M::Header,
            SectionText::HeaderFields(f) => M::HeaderFields {
                not: false,
                fields: f.clone(),
            },
            SectionText::HeaderFieldsNot(f) => M::HeaderFields {
                not: true,
                fields: f.clone(),
            },
            SectionText::Text => M::Text,
            SectionText::Mime => M::Mime,
        }),
    }
}

fn partial_slice(bytes: &[u8], partial: Option<Partial>) -> &[u8] {
    match partial {
        None => bytes,
        Some(p) => {
            let start = (p.offset as usize).min(bytes.len());
            let end = start.saturating_add(p.length as usize).min(bytes.len());
            &bytes[start..end]
        }
    }
}

/// The whole `* seq FETCH (...)` line of one message.
fn fetch_line(
    user: &User,
    m: &Message<'_>,
    items: &[FetchAttr],
    condstore: bool,
) -> Result<Vec<u8>, LineError> {
    let meta = m.meta;
    let mut data = Loaded {
        user,
        meta,
        raw: None,
        info: None,
    };
    let mut line = format!("* {} FETCH (", m.seq).into_bytes();
    let mut first = true;
    let mut sep = |line: &mut Vec<u8>| {
        if !first {
            line.push(b' ');
        }
        first = false;
    };
    for item in items {
        sep(&mut line);
        match item {
            FetchAttr::Uid => line.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
            FetchAttr::Flags => {
                line.extend_from_slice(b"FLAGS ");
                flags::write_flags(&mut line, &meta.flags, m.recent);
            }
            FetchAttr::InternalDate => {
                let date = i16::try_from(meta.tz_offset_min)
                    .ok()
                    .and_then(|tz| DateTime::from_unix_timestamp(meta.internaldate, tz))
                    .or_else(|| DateTime::from_unix_timestamp(meta.internaldate, 0))
                    .or_else(|| DateTime::from_unix_timestamp(0, 0));
                match date {
                    Some(d) => write_fetch_item(&mut line, &FetchItem::InternalDate(d)),
                    None => line.extend_from_slice(b"INTERNALDATE \"01-Jan-1970 00:00:00 +0000\""),
                }
            }
            FetchAttr::Rfc822Size => {
                line.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
            }
            FetchAttr::ModSeq => {
                line.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes())
            }
            FetchAttr::Envelope => {
                line.extend_from_slice(b"ENVELOPE ");
                line.extend_from_slice(data.info()?.envelope.as_bytes());
            }
            FetchAttr::Body => {
                line.extend_from_slice(b"BODY ");
                line.extend_from_slice(data.info()?.body.as_bytes());
            }
            FetchAttr::BodyStructure => {
                line.extend_from_slice(b"BODYSTRUCTURE ");
                line.extend_from_slice(data.info()?.bodystructure.as_bytes());
            }
            FetchAttr::Rfc822 => {
                line.extend_from_slice(b"RFC822 ");
                write_literal(&mut line, data.raw()?);
            }
            FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
                let (name, text) = if *item == FetchAttr::Rfc822Header {
                    (&b"RFC822.HEADER "[..], SectionText::Header)
                } else {
                    (&b"RFC822.TEXT "[..], SectionText::Text)
                };
                line.extend_from_slice(name);
                let section = Section {
                    part: Vec::new(),
                    text: Some(text),
                };
                write_literal(&mut line, &data.section(&section)?);
            }
            FetchAttr::BodySection {
                section, partial, ..
            } => {
                line.extend_from_slice(b"BODY");
                write_section(&mut line, section);
                if let Some(p) = partial {
                    line.extend_from_slice(format!("<{}>", p.offset).as_bytes());
                }
                line.push(b' ');
                let bytes = data.section(section)?;
                write_literal(&mut line, partial_slice(&bytes, *partial));
            }
            FetchAttr::Binary { part, partial, .. } => {
                line.extend_from_slice(b"BINARY");
                write_binary_section(&mut line, part);
                if let Some(p) = partial {
                    line.extend_from_slice(format!("<{}>", p.offset).as_bytes());
                }
                line.push(b' ');
                let bytes = data.binary(part)?;
                write_binary_literal(&mut line, partial_slice(&bytes, *partial));
            }
            FetchAttr::BinarySize { part } => {
                line.extend_from_slice(b"BINARY.SIZE");
                write_binary_section(&mut line, part);
                let size = data.binary(part)?.len();
                line.extend_from_slice(format!(" {size}").as_bytes());
            }
        }
    }
    if m.flags_changed {
        if !items.contains(&FetchAttr::Flags) {
            sep(&mut line);
            line.extend_from_slice(b"FLAGS ");
            flags::write_flags(&mut line, &meta.flags, m.recent);
        }
        if condstore && !items.contains(&FetchAttr::ModSeq) {
            sep(&mut line);
            line.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
        }
    }
    line.extend_from_slice(b")\r\n");
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_ranges_are_clipped() {
        let b = b"0123456789";
        assert_eq!(partial_slice(b, None), b);
        assert_eq!(
            partial_slice(
                b,
                Some(Partial {
                    offset: 2,
                    length: 3
                })
            ),
            b"234"
        );
        assert_eq!(
            partial_slice(
                b,
                Some(Partial {
                    offset: 8,
                    length: 30
                })
            ),
            b"89"
        );
        assert_eq!(
            partial_slice(
                b,
                Some(Partial {
                    offset: 80,
                    length: 3
                })
            ),
            b""
        );
        assert_eq!(
            partial_slice(
                b,
                Some(Partial {
                    offset: 1,
                    length: u32::MAX
                })
            ),
            b"123456789"
        );
    }
}
