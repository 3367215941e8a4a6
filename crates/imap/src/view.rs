//! The selected mailbox as the client knows it: the UIDs in sequence-number
//! order, the MODSEQ and UIDNEXT up to which changes have been reported,
//! and the few things a session must remember about it.
//!
//! The view is deliberately small (one `u32` per message): flags, sizes and
//! dates are read from the store when a command needs them, and changes by
//! other sessions are found with `User::delta` from `modseq`, not by
//! comparing kept copies.

use slotmail_imap_proto::SequenceSet;

/// Why a sequence set could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The offending sequence number.
    pub seq: u32,
    /// Messages in the mailbox.
    pub exists: u32,
}

/// The selected mailbox (see the module documentation).
#[derive(Debug, Clone)]
pub struct View {
    /// Local mailbox handle in the user's store.
    pub id: i64,
    /// Name (UTF-8), kept current across renames.
    pub name: String,
    /// Selected with EXAMINE.
    pub read_only: bool,
    pub uidvalidity: u32,
    /// UIDs in sequence order (ascending); message n is `uids[n - 1]`.
    pub uids: Vec<u32>,
    /// UIDs at or above this have not been announced to the client.
    pub uidnext: u32,
    /// Changes up to this MODSEQ have been reported.
    pub modseq: u64,
    /// Keywords announced in the last FLAGS response.
    pub keywords: Vec<String>,
    /// Half-open UID ranges that are `\Recent` in this session (IMAP4rev1).
    pub recent: Vec<(u32, u32)>,
    /// UIDs expunged by others but not yet announced (an EXPUNGE may not be
    /// sent during FETCH, STORE or SEARCH); still in `uids`. Ascending.
    pub pending_expunge: Vec<u32>,
    /// The result of the last `SEARCH RETURN (SAVE)` as UIDs, ascending
    /// (SEARCHRES, RFC 5182): what `$` names. Expunged messages drop out of
    /// it by themselves since `$` is resolved against `uids`.
    pub saved: Vec<u32>,
}

impl View {
    /// Number of messages the client knows.
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The sequence number of a UID.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The largest UID the client knows (0 when empty).
    pub fn max_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// Whether a UID is `\Recent` in this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.iter().any(|&(lo, hi)| uid >= lo && uid < hi)
    }

    /// UIDs `lo..hi` became `\Recent` in this session (merged with the
    /// previous range when they touch, so the list stays short).
    pub fn add_recent(&mut self, lo: u32, hi: u32) {
        if lo >= hi {
            return;
        }
        match self.recent.last_mut() {
            Some(last) if last.1 >= lo && last.0 <= hi => {
                last.0 = last.0.min(lo);
                last.1 = last.1.max(hi);
            }
            _ => self.recent.push((lo, hi)),
        }
    }

    /// Messages of the view that are `\Recent`.
    pub fn recent_count(&self) -> u32 {
        if self.recent.is_empty() {
            return 0;
        }
        self.uids.iter().filter(|&&u| self.is_recent(u)).count() as u32
    }

    /// (sequence number, UID) of the messages a message-number set names, in
    /// ascending order. A number above the message count is an error
    /// (RFC 9051 §6.4.5: the client cannot know such a message); `*` on an
    /// empty mailbox names nothing.
    pub fn resolve_seqs(&self, set: &SequenceSet) -> Result<Vec<(u32, u32)>, OutOfRange> {
        let exists = self.exists();
        let ranges = set.resolve(exists);
        if let Some(r) = ranges.last()
            && *r.end() > exists
        {
            return Err(OutOfRange {
                seq: *r.end(),
                exists,
            });
        }
        let mut out = Vec::new();
        for r in ranges {
            for seq in r {
                out.push((seq, self.uids[seq as usize - 1]));
            }
        }
        Ok(out)
    }

    /// (sequence number, UID) of the known messages a UID set names, in
    /// ascending order. UIDs that do not exist are simply not there; `*` is
    /// the largest UID of the mailbox.
    pub fn resolve_uids(&self, set: &SequenceSet) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for r in set.resolve(self.max_uid()) {
            let start = self.uids.partition_point(|&u| u < *r.start());
            for (i, &uid) in self.uids[start..].iter().enumerate() {
                if uid > *r.end() {
                    break;
                }
                out.push(((start + i) as u32 + 1, uid));
            }
        }
        out
    }

    /// (sequence number, UID) of the saved search result's messages that
    /// are still in the view, ascending.
    pub fn resolve_saved(&self) -> Vec<(u32, u32)> {
        self.saved
            .iter()
            .filter_map(|&u| self.seq_of(u).map(|s| (s, u)))
            .collect()
    }

    /// Resolve a set as UIDs (`uid`) or message numbers; `$` is the saved
    /// search result either way (RFC 5182 §2.1).
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, OutOfRange> {
        if set.is_saved_result() {
            return Ok(self.resolve_saved());
        }
        if uid {
            Ok(self.resolve_uids(set))
        } else {
            self.resolve_seqs(set)
        }
    }

    /// Drop expunged UIDs from the view; returns the sequence numbers they
    /// had, in descending order (the order to announce them in: each
    /// number is then still valid when the client reads it).
    pub fn remove(&mut self, expunged: &[u32]) -> Vec<u32> {
        let mut seqs: Vec<u32> = expunged.iter().filter_map(|&u| self.seq_of(u)).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        if !seqs.is_empty() {
            let mut sorted: Vec<u32> = expunged.to_vec();
            sorted.sort_unstable();
            self.uids.retain(|u| sorted.binary_search(u).is_err());
            self.pending_expunge
                .retain(|u| sorted.binary_search(u).is_err());
        }
        seqs
    }

    /// Remember UIDs expunged by others for announcing later.
    pub fn defer_expunge(&mut self, uids: &[u32]) {
        for &u in uids {
            if self.seq_of(u).is_some()
                && let Err(i) = self.pending_expunge.binary_search(&u)
            {
                self.pending_expunge.insert(i, u);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(uids: &[u32]) -> View {
        View {
            id: 1,
            name: "INBOX".into(),
            read_only: false,
            uidvalidity: 1,
            uids: uids.to_vec(),
            uidnext: uids.last().map_or(1, |u| u + 1),
            modseq: 1,
            keywords: Vec::new(),
            recent: Vec::new(),
            pending_expunge: Vec::new(),
            saved: Vec::new(),
        }
    }

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap()
    }

    #[test]
    fn sequence_numbers() {
        let v = view(&[3, 5, 9, 10]);
        assert_eq!(v.resolve_seqs(&set("2:3")).unwrap(), [(2, 5), (3, 9)]);
        assert_eq!(v.resolve_seqs(&set("*")).unwrap(), [(4, 10)]);
        assert_eq!(v.resolve_seqs(&set("4,1")).unwrap(), [(1, 3), (4, 10)]);
        assert_eq!(
            v.resolve_seqs(&set("5")).unwrap_err(),
            OutOfRange { seq: 5, exists: 4 }
        );
        let empty = view(&[]);
        assert!(empty.resolve_seqs(&set("1:*")).unwrap().is_empty());
        assert!(empty.resolve_seqs(&set("1")).is_err());
    }

    #[test]
    fn uid_sets() {
        let v = view(&[3, 5, 9, 10]);
        assert_eq!(v.resolve_uids(&set("4:9")), [(2, 5), (3, 9)]);
        assert_eq!(v.resolve_uids(&set("11:*")), [(4, 10)]);
        assert_eq!(v.resolve_uids(&set("1,2,4")), []);
        assert_eq!(v.resolve_uids(&set("*")), [(4, 10)]);
        assert!(view(&[]).resolve_uids(&set("1:*")).is_empty());
    }

    #[test]
    fn removal_reports_descending_sequence_numbers() {
        let mut v = view(&[3, 5, 9, 10]);
        v.defer_expunge(&[9, 4]);
        assert_eq!(v.pending_expunge, [9]);
        assert_eq!(v.remove(&[3, 9, 77]), [3, 1]);
        assert_eq!(v.uids, [5, 10]);
        assert!(v.pending_expunge.is_empty());
    }

    #[test]
    fn recent_ranges() {
        let mut v = view(&[3, 5, 9, 10]);
        v.recent = vec![(5, 10)];
        assert!(v.is_recent(9) && !v.is_recent(10) && !v.is_recent(3));
        assert_eq!(v.recent_count(), 2);
        v.add_recent(10, 12);
        v.add_recent(12, 13);
        v.add_recent(20, 20);
        assert_eq!(v.recent, [(5, 13)]);
        v.add_recent(30, 31);
        assert_eq!(v.recent, [(5, 13), (30, 31)]);
    }

    proptest! {
        /// Sequence-set resolution agrees with a naive definition.
        #[test]
        fn resolution_matches_reference(
            mut uids in proptest::collection::btree_set(1u32..60, 0..20),
            ranges in proptest::collection::vec((1u32..70, 1u32..70, any::<bool>()), 1..5),
        ) {
            let uids: Vec<u32> = std::mem::take(&mut uids).into_iter().collect();
            let v = view(&uids);
            let text: Vec<String> = ranges
                .iter()
                .map(|(a, b, star)| if *star { format!("{a}:*") } else { format!("{a}:{b}") })
                .collect();
            let s = set(&text.join(","));
            // UID sets.
            let max = v.max_uid();
            let want: Vec<(u32, u32)> = uids
                .iter()
                .enumerate()
                .filter(|(_, u)| max > 0 && s.contains(**u, max))
                .map(|(i, u)| (i as u32 + 1, *u))
                .collect();
            prop_assert_eq!(v.resolve_uids(&s), want);
            // Message numbers.
            let n = v.exists();
            let over = ranges.iter().any(|(a, b, star)| {
                if n == 0 {
                    return !*star;
                }
                let hi = if *star { (*a).max(n) } else { (*a).max(*b) };
                hi > n
            });
            match v.resolve_seqs(&s) {
                Ok(got) => {
                    prop_assert!(!over);
                    let want: Vec<(u32, u32)> = (1..=n)
                        .filter(|q| s.contains(*q, n))
                        .map(|q| (q, uids[q as usize - 1]))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Err(e) => prop_assert!(over, "unexpected error {:?}", e),
            }
        }
    }
}
