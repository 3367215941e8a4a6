//! SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051 §6.4.4): evaluation of
//! the search-key tree over the selected mailbox, ESEARCH answers
//! (RFC 4731, and always under IMAP4rev2) and the MODSEQ key (RFC 7162).
//!
//! Flags, sizes, dates and MODSEQs come from one store snapshot; header and
//! body keys read the verified message (and its cached facts) only for the
//! messages that get that far, once each. Text matching is the decoded,
//! case-insensitive substring match of `slotmail_mime::contains_ci`.

use crate::session::{Out, Reply, Res, Session};
use slotmail_imap_proto::{
    Data, Date, Response, ResponseCode, SearchKey, SearchReturnOpt, SequenceSet, Tag,
};
use slotmail_mime::{MessageInfo, body_text, contains_ci, header_values};
use slotmail_store::{ANSWERED, DELETED, DRAFT, FLAGGED, Flags, MessageMeta, SEEN, User};
use std::cell::OnceCell;

/// What a search key sees of one message.
pub(crate) struct Candidate<'a> {
    pub seq: u32,
    pub meta: &'a MessageMeta,
    pub recent: bool,
    source: Option<&'a User>,
    raw: OnceCell<Option<Vec<u8>>>,
    info: OnceCell<Option<MessageInfo>>,
}

impl<'a> Candidate<'a> {
    /// A message whose content is read from `source` when a key needs it.
    pub fn new(seq: u32, meta: &'a MessageMeta, recent: bool, source: Option<&'a User>) -> Self {
        Candidate {
            seq,
            meta,
            recent,
            source,
            raw: OnceCell::new(),
            info: OnceCell::new(),
        }
    }

    /// A message with its content given (tests).
    #[cfg(test)]
    fn with_content(seq: u32, meta: &'a MessageMeta, raw: &[u8]) -> Self {
        let c = Candidate::new(seq, meta, false, None);
        let _ = c.raw.set(Some(raw.to_vec()));
        let _ = c.info.set(Some(slotmail_mime::analyze(raw)));
        c
    }

    fn raw(&self) -> Option<&[u8]> {
        self.raw
            .get_or_init(|| {
                let user = self.source?;
                match user.read_message(&self.meta.guid, self.meta.size) {
                    Ok(raw) => Some(raw),
                    Err(e) => {
                        tracing::warn!(user = user.name(), uid = self.meta.uid, cause = %e, "SEARCH: message unreadable, treated as not matching");
                        None
                    }
                }
            })
            .as_deref()
    }

    fn info(&self) -> Option<&MessageInfo> {
        self.info
            .get_or_init(|| {
                let user = self.source?;
                user.message_info(&self.meta.guid).ok()
            })
            .as_ref()
    }

    /// The day of INTERNALDATE in its own zone, days since 1970-01-01.
    fn internal_day(&self) -> i64 {
        (self.meta.internaldate + i64::from(self.meta.tz_offset_min) * 60).div_euclid(86_400)
    }

    /// The day of the Date: header in its own zone (INTERNALDATE's day when
    /// there is no usable Date: header).
    fn sent_day(&self) -> i64 {
        self.info()
            .and_then(MessageInfo::sent_day)
            .unwrap_or_else(|| self.internal_day())
    }

    fn header_contains(&self, field: &str, needle: &str) -> bool {
        self.raw().is_some_and(|raw| {
            header_values(raw, field)
                .iter()
                .any(|v| contains_ci(v, needle))
        })
    }

    fn body_contains(&self, needle: &str) -> bool {
        self.raw()
            .is_some_and(|raw| contains_ci(&body_text(raw), needle))
    }

    fn text_contains(&self, needle: &str) -> bool {
        let Some(raw) = self.raw() else {
            return false;
        };
        let header_end = self
            .info()
            .map_or(raw.len(), |i| i.root.header.end as usize)
            .min(raw.len());
        contains_ci(&String::from_utf8_lossy(&raw[..header_end]), needle)
            || ["Subject", "From", "To", "Cc"]
                .iter()
                .any(|f| header_values(raw, f).iter().any(|v| contains_ci(v, needle)))
            || self.body_contains(needle)
    }
}

/// Numbers a search compares sequence sets with.
pub(crate) struct Bounds<'a> {
    /// Messages in the mailbox (`*` of a message-number set).
    pub exists: u32,
    /// Largest UID (`*` of a UID set).
    pub max_uid: u32,
    /// Now, unix seconds (OLDER/YOUNGER).
    pub now: i64,
    /// UIDs of the saved search result, ascending (what `$` names).
    pub saved: &'a [u32],
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn has_flag_or_keyword(flags: &Flags, name: &str) -> bool {
    match name.strip_prefix('\\') {
        Some(system) => {
            let bit = match system.to_ascii_lowercase().as_str() {
                "seen" => SEEN,
                "answered" => ANSWERED,
                "flagged" => FLAGGED,
                "deleted" => DELETED,
                "draft" => DRAFT,
                _ => return false,
            };
            flags.has(bit)
        }
        None => flags.has_keyword(name),
    }
}

/// Whether message `m` satisfies `key`.
pub(crate) fn matches(key: &SearchKey, m: &Candidate<'_>, b: &Bounds<'_>) -> bool {
    use SearchKey as K;
    let flags = &m.meta.flags;
    match key {
        K::All => true,
        K::Answered => flags.has(ANSWERED),
        K::Deleted => flags.has(DELETED),
        K::Draft => flags.has(DRAFT),
        K::Flagged => flags.has(FLAGGED),
        K::Seen => flags.has(SEEN),
        K::Unanswered => !flags.has(ANSWERED),
        K::Undeleted => !flags.has(DELETED),
        K::Undraft => !flags.has(DRAFT),
        K::Unflagged => !flags.has(FLAGGED),
        K::Unseen => !flags.has(SEEN),
        K::Recent => m.recent,
        K::New => m.recent && !flags.has(SEEN),
        K::Old => !m.recent,
        K::Keyword(k) => has_flag_or_keyword(flags, k),
        K::Unkeyword(k) => !has_flag_or_keyword(flags, k),
        K::Larger(n) => m.meta.size > *n,
        K::Smaller(n) => m.meta.size < *n,
        K::Before(d) => m.internal_day() < day(d),
        K::On(d) => m.internal_day() == day(d),
        K::Since(d) => m.internal_day() >= day(d),
        K::SentBefore(d) => m.sent_day() < day(d),
        K::SentOn(d) => m.sent_day() == day(d),
        K::SentSince(d) => m.sent_day() >= day(d),
        K::Older(secs) => b.now - m.meta.internaldate >= i64::from(*secs),
        K::Younger(secs) => b.now - m.meta.internaldate <= i64::from(*secs),
        K::Uid(set) | K::SequenceSet(set) if set.is_saved_result() => {
            b.saved.binary_search(&m.meta.uid).is_ok()
        }
        K::Uid(set) => b.max_uid > 0 && set.contains(m.meta.uid, b.max_uid),
        K::SequenceSet(set) => b.exists > 0 && set.contains(m.seq, b.exists),
        K::ModSeq { mod_seq, .. } => m.meta.modseq >= *mod_seq,
        K::From(s) => m.header_contains("From", &text(s)),
        K::To(s) => m.header_contains("To", &text(s)),
        K::Cc(s) => m.header_contains("Cc", &text(s)),
        K::Bcc(s) => m.header_contains("Bcc", &text(s)),
        K::Subject(s) => m.header_contains("Subject", &text(s)),
        K::Header(name, value) => m.header_contains(&text(name), &text(value)),
        K::Body(s) => m.body_contains(&text(s)),
        K::Text(s) => m.text_contains(&text(s)),
        K::Not(k) => !matches(k, m, b),
        K::Or(a, c) => matches(a, m, b) || matches(c, m, b),
        K::And(keys) => keys.iter().all(|k| matches(k, m, b)),
    }
}

fn day(d: &Date) -> i64 {
    d.days_since_epoch()
}

/// Whether the key tree uses MODSEQ (the answer then carries the highest
/// MODSEQ of the matches, RFC 7162 §3.1.5).
fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        _ => false,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Session {
    pub(crate) fn search(
        &mut self,
        tag: &Tag,
        uid: bool,
        charset: Option<&str>,
        criteria: &[SearchKey],
        return_opts: Option<&[SearchReturnOpt]>,
        out: &mut Out,
    ) -> Res {
        // A SEARCH with SAVE that fails leaves `$` empty (RFC 5182 §2.4).
        if return_opts.is_some_and(|o| o.contains(&SearchReturnOpt::Save))
            && let Ok(view) = self.view_mut()
        {
            view.saved.clear();
        }
        if let Some(cs) = charset
            && !cs.eq_ignore_ascii_case("UTF-8")
            && !cs.eq_ignore_ascii_case("US-ASCII")
        {
            return Err(Reply::no(format!("Charset {cs} is not supported")).code(
                ResponseCode::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]),
            ));
        }
        let with_modseq = criteria.iter().any(uses_modseq);
        if with_modseq {
            self.enabled.condstore = true;
        }
        let esearch = return_opts.is_some() || self.enabled.rev2;
        let user = self.user()?;
        let view = self.view()?;
        let (_, metas) = user.snapshot(view.id)?;
        let bounds = Bounds {
            exists: view.exists(),
            max_uid: view.max_uid(),
            now: now_secs(),
            saved: &view.saved,
        };
        let mut hits: Vec<(u32, u32, u64)> = Vec::new();
        for (i, &u) in view.uids.iter().enumerate() {
            let Ok(at) = metas.binary_search_by_key(&u, |m| m.uid) else {
                continue;
            };
            let meta = &metas[at];
            let candidate = Candidate::new(i as u32 + 1, meta, view.is_recent(u), Some(&user));
            if criteria.iter().all(|k| matches(k, &candidate, &bounds)) {
                hits.push((i as u32 + 1, u, meta.modseq));
            }
        }
        let ids: Vec<u32> = hits
            .iter()
            .map(|&(s, u, _)| if uid { u } else { s })
            .collect();
        let mod_seq = if with_modseq {
            hits.iter().map(|&(_, _, m)| m).max()
        } else {
            None
        };
        let opts = return_opts.unwrap_or_default();
        if opts.contains(&SearchReturnOpt::Save) {
            self.save_result(&hits, opts);
            // RFC 5182 §2.4: with SAVE alone, no ESEARCH response.
            if opts.iter().all(|&o| o == SearchReturnOpt::Save) {
                return Ok(Reply::ok("SEARCH completed, result saved"));
            }
        }
        let data = if esearch {
            let opts = match return_opts {
                Some(o) if !o.is_empty() => o,
                _ => &[SearchReturnOpt::All][..],
            };
            let want = |o: SearchReturnOpt| opts.contains(&o);
            Data::ESearch {
                tag: Some(tag.as_str().to_string()),
                uid,
                min: want(SearchReturnOpt::Min)
                    .then(|| ids.first().copied())
                    .flatten(),
                max: want(SearchReturnOpt::Max)
                    .then(|| ids.last().copied())
                    .flatten(),
                all: want(SearchReturnOpt::All)
                    .then(|| SequenceSet::from_ids(&ids))
                    .flatten(),
                count: want(SearchReturnOpt::Count).then_some(ids.len() as u32),
                mod_seq,
            }
        } else {
            Data::Search { ids, mod_seq }
        };
        Response::Data(data).encode_with(out, self.encoding());
        Ok(Reply::ok("SEARCH completed"))
    }

    /// Keeps a SEARCH result for `$` (RFC 5182 §2.4): only the lowest
    /// and/or highest match when MIN and/or MAX came with SAVE (and neither
    /// ALL nor COUNT did), else every match. `hits` are (seq, UID, MODSEQ)
    /// in ascending order.
    fn save_result(&mut self, hits: &[(u32, u32, u64)], opts: &[SearchReturnOpt]) {
        let want = |o| opts.contains(&o);
        let uids: Vec<u32> = if (want(SearchReturnOpt::Min) || want(SearchReturnOpt::Max))
            && !want(SearchReturnOpt::All)
            && !want(SearchReturnOpt::Count)
        {
            let mut v = Vec::new();
            if want(SearchReturnOpt::Min) {
                v.extend(hits.first().map(|h| h.1));
            }
            if want(SearchReturnOpt::Max) {
                v.extend(hits.last().map(|h| h.1));
            }
            v.dedup();
            v
        } else {
            hits.iter().map(|h| h.1).collect()
        };
        if let Ok(view) = self.view_mut() {
            view.saved = uids;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_store::Guid;

    fn meta(uid: u32, flags: &[&str], size: u64, date: i64, modseq: u64) -> MessageMeta {
        MessageMeta {
            uid,
            guid: Guid::of(b"x"),
            size,
            internaldate: date,
            tz_offset_min: 0,
            flags: Flags::from_names(flags.iter().copied()).unwrap(),
            modseq,
        }
    }

    fn date(y: u16, m: u8, d: u8) -> Date {
        Date::new(y, m, d).unwrap()
    }

    const B: Bounds = Bounds {
        exists: 10,
        max_uid: 40,
        now: 1_700_000_000,
        saved: &[12, 31],
    };

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap()
    }

    #[test]
    fn flags_sizes_and_sets() {
        let m = meta(30, &["\\Seen", "Work"], 500, 0, 7);
        let c = Candidate::new(3, &m, false, None);
        use SearchKey as K;
        assert!(matches(&K::Seen, &c, &B));
        assert!(!matches(&K::Unseen, &c, &B));
        assert!(matches(&K::Keyword("work".into()), &c, &B));
        assert!(matches(&K::Unkeyword("Home".into()), &c, &B));
        assert!(matches(&K::Larger(499), &c, &B) && !matches(&K::Larger(500), &c, &B));
        assert!(matches(&K::Smaller(501), &c, &B));
        assert!(matches(&K::SequenceSet(set("2:4")), &c, &B));
        assert!(matches(&K::SequenceSet(set("*:3")), &c, &B));
        assert!(!matches(&K::SequenceSet(set("4:*")), &c, &B));
        assert!(matches(&K::Uid(set("30")), &c, &B));
        assert!(!matches(&K::Uid(set("41:*")), &c, &B));
        assert!(matches(
            &K::ModSeq {
                entry: None,
                mod_seq: 7
            },
            &c,
            &B
        ));
        assert!(!matches(
            &K::ModSeq {
                entry: None,
                mod_seq: 8
            },
            &c,
            &B
        ));
        assert!(matches(&K::Old, &c, &B) && !matches(&K::New, &c, &B));
    }

    #[test]
    fn boolean_nesting() {
        let m = meta(1, &["\\Flagged"], 10, 0, 1);
        let c = Candidate::new(1, &m, true, None);
        use SearchKey as K;
        let or = K::Or(Box::new(K::Seen), Box::new(K::Flagged));
        assert!(matches(&or, &c, &B));
        assert!(!matches(&K::Not(Box::new(or.clone())), &c, &B));
        assert!(matches(&K::And(vec![or, K::Recent, K::New]), &c, &B));
        assert!(!matches(&K::And(vec![K::All, K::Deleted]), &c, &B));
    }

    #[test]
    fn internal_dates_compare_by_day_in_their_zone() {
        // 2024-03-10 23:30 UTC, stored with zone -0100 (so 22:30 local, same day).
        let t = date(2024, 3, 10).days_since_epoch() * 86_400 + 23 * 3600 + 1800;
        let mut m = meta(1, &[], 1, t, 1);
        m.tz_offset_min = 60; // +0100: local time is already 11 March
        let c = Candidate::new(1, &m, false, None);
        use SearchKey as K;
        assert!(matches(&K::On(date(2024, 3, 11)), &c, &B));
        assert!(matches(&K::Since(date(2024, 3, 11)), &c, &B));
        assert!(matches(&K::Before(date(2024, 3, 12)), &c, &B));
        assert!(!matches(&K::Before(date(2024, 3, 11)), &c, &B));
        let recent = meta(1, &[], 1, B.now - 100, 1);
        let c = Candidate::new(1, &recent, false, None);
        assert!(matches(&K::Younger(200), &c, &B) && !matches(&K::Older(200), &c, &B));
    }

    #[test]
    fn header_and_body_text() {
        let raw = b"From: =?utf-8?q?J=C3=BCrgen?= <jb@example.org>\r\nTo: ann@example.com\r\n\
Subject: Quarterly =?utf-8?q?R=C3=A9sum=C3=A9?=\r\nDate: Tue, 05 Mar 2024 10:00:00 +0000\r\n\
X-Custom: yes\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe budget is ATTACHED.\r\n";
        let m = meta(1, &[], raw.len() as u64, 0, 1);
        let c = Candidate::with_content(1, &m, raw);
        use SearchKey as K;
        assert!(matches(&K::From(b"j\xc3\xbcrgen".to_vec()), &c, &B));
        assert!(matches(&K::From(b"JB@EXAMPLE".to_vec()), &c, &B));
        assert!(matches(&K::To(b"ann@".to_vec()), &c, &B));
        assert!(!matches(&K::Cc(b"ann".to_vec()), &c, &B));
        assert!(matches(&K::Subject("résumé".as_bytes().to_vec()), &c, &B));
        assert!(matches(
            &K::Header(b"x-custom".to_vec(), b"".to_vec()),
            &c,
            &B
        ));
        assert!(!matches(
            &K::Header(b"x-other".to_vec(), b"".to_vec()),
            &c,
            &B
        ));
        assert!(matches(&K::Body(b"attached".to_vec()), &c, &B));
        assert!(!matches(&K::Body(b"quarterly".to_vec()), &c, &B));
        assert!(matches(&K::Text(b"quarterly".to_vec()), &c, &B));
        assert!(matches(&K::Text(b"budget".to_vec()), &c, &B));
        assert!(matches(&K::SentOn(date(2024, 3, 5)), &c, &B));
        assert!(matches(&K::SentBefore(date(2024, 3, 6)), &c, &B));
        assert!(!matches(&K::SentSince(date(2024, 3, 6)), &c, &B));
    }

    #[test]
    fn modseq_detection() {
        use SearchKey as K;
        assert!(uses_modseq(&K::Not(Box::new(K::ModSeq {
            entry: None,
            mod_seq: 1
        }))));
        assert!(!uses_modseq(&K::Or(Box::new(K::All), Box::new(K::Seen))));
    }
}
