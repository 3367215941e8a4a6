//! The selected mailbox's life: SELECT and EXAMINE (with CONDSTORE and
//! QRESYNC, RFC 7162), CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE, and
//! [`Session::sync`], which reports other sessions' changes at command
//! boundaries and during IDLE.
//!
//! `sync` asks the store what changed after the view's MODSEQ
//! (`User::delta`) and answers with FETCH (flag changes), EXPUNGE or
//! VANISHED, EXISTS and RECENT. Expunges are held back while answering
//! FETCH, STORE and SEARCH (RFC 3501 §7.4.1) and sent at the next command
//! that allows them.

use crate::flags;
use crate::session::{Out, Reply, Res, Session, State};
use crate::view::View;
use slotmail_imap_proto::response::write_status;
use slotmail_imap_proto::{
    Data, ListData, MailboxName, Response, ResponseCode, SelectParams, SequenceSet, StatusKind,
};
use slotmail_store::{Flags, SEEN, StoreError};

impl Session {
    pub(crate) fn select(
        &mut self,
        name: &str,
        params: &SelectParams,
        examine: bool,
        out: &mut Out,
    ) -> Res {
        if params.qresync.is_some() && !self.enabled.qresync {
            return Err(Reply::bad("QRESYNC parameter given without ENABLE QRESYNC"));
        }
        if self.view.take().is_some() {
            self.state = State::Authenticated;
            if self.enabled.qresync || self.enabled.rev2 {
                write_status(
                    out,
                    None,
                    StatusKind::Ok,
                    Some(&ResponseCode::Closed),
                    "Previous mailbox closed",
                );
            }
        }
        if params.condstore {
            self.enabled.condstore = true;
        }
        let user = self.user()?;
        let mbox = user.mailbox(name)?;
        let rev1 = !self.enabled.rev2;
        let claim = !examine && rev1 && self.writable().is_ok();
        let recent_from = if claim {
            Some(user.claim_recent(mbox.id)?)
        } else {
            None
        };
        let (info, messages) = user.snapshot(mbox.id)?;
        let recent = match recent_from {
            Some(old) => vec![(old, info.recent_uid)],
            None if rev1 => vec![(info.recent_uid, u32::MAX)],
            None => Vec::new(),
        };
        let view = View {
            id: info.id,
            name: info.name.clone(),
            read_only: examine,
            uidvalidity: info.uidvalidity,
            uids: messages.iter().map(|m| m.uid).collect(),
            uidnext: info.uidnext,
            modseq: info.highestmodseq,
            keywords: info.keywords.clone(),
            recent,
            pending_expunge: Vec::new(),
            saved: Vec::new(),
        };
        let new_keywords = info.keywords.len() < self.ctx.slot.limits().keywords_per_mailbox_max;
        flags::write_mailbox_flags(out, &view.keywords, examine, new_keywords);
        out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
        if rev1 {
            out.extend_from_slice(format!("* {} RECENT\r\n", view.recent_count()).as_bytes());
            if let Some(i) = messages.iter().position(|m| !m.flags.has(SEEN)) {
                let text = format!("Message {} is the first unseen", i + 1);
                write_status(
                    out,
                    None,
                    StatusKind::Ok,
                    Some(&ResponseCode::Unseen(i as u32 + 1)),
                    &text,
                );
            }
        }
        write_status(
            out,
            None,
            StatusKind::Ok,
            Some(&ResponseCode::UidValidity(info.uidvalidity)),
            "UIDs valid",
        );
        write_status(
            out,
            None,
            StatusKind::Ok,
            Some(&ResponseCode::UidNext(info.uidnext)),
            "Predicted next UID",
        );
        write_status(
            out,
            None,
            StatusKind::Ok,
            Some(&ResponseCode::HighestModSeq(info.highestmodseq)),
            "Highest",
        );
        if self.enabled.rev2
            && let Ok(mailbox) = MailboxName::new(&info.name)
        {
            Response::Data(Data::List(ListData {
                attributes: Vec::new(),
                delimiter: Some('/'),
                mailbox,
                extended: Vec::new(),
            }))
            .encode_with(out, self.encoding());
        }
        if let Some(q) = &params.qresync
            && q.uid_validity == info.uidvalidity
        {
            let largest = info.uidnext.saturating_sub(1);
            let known = |uid: u32| {
                q.known_uids
                    .as_ref()
                    .is_none_or(|set| set.contains(uid, largest))
            };
            let vanished: Vec<u32> = user
                .expunged_since(info.id, q.mod_seq)?
                .into_iter()
                .filter(|&u| known(u))
                .collect();
            if let Some(set) = SequenceSet::from_ids(&vanished) {
                out.extend_from_slice(format!("* VANISHED (EARLIER) {set}\r\n").as_bytes());
            }
            for (i, m) in messages.iter().enumerate() {
                if m.modseq > q.mod_seq && known(m.uid) {
                    let recent = view.is_recent(m.uid);
                    write_flags_fetch(out, i as u32 + 1, m.uid, &m.flags, recent, Some(m.modseq));
                }
            }
        }
        self.view = Some(view);
        self.state = State::Selected;
        let (code, verb) = if examine {
            (ResponseCode::ReadOnly, "EXAMINE")
        } else {
            (ResponseCode::ReadWrite, "SELECT")
        };
        Ok(Reply::ok(format!("{verb} completed"))
            .code(code)
            .without_sync())
    }

    /// CLOSE (`expunge`: remove `\Deleted` messages silently if read-write)
    /// and UNSELECT.
    pub(crate) fn close(&mut self, expunge: bool) -> Res {
        let view = self
            .view
            .take()
            .ok_or_else(|| Reply::bad("No mailbox selected"))?;
        self.state = State::Authenticated;
        if expunge
            && !view.read_only
            && self.writable().is_ok()
            && let Err(e) = self.user()?.expunge(view.id, None)
        {
            // The mailbox is closed either way; the client learns the
            // expunge failed.
            return Err(Reply::from(e).without_sync());
        }
        let verb = if expunge { "CLOSE" } else { "UNSELECT" };
        Ok(Reply::ok(format!("{verb} completed")).without_sync())
    }

    pub(crate) fn expunge(&mut self, only: Option<&SequenceSet>, out: &mut Out) -> Res {
        self.writable()?;
        let user = self.user()?;
        let qresync = self.enabled.qresync;
        let view = self.view_mut()?;
        if view.read_only {
            return Err(Reply::no("Mailbox is read-only").code(ResponseCode::Cannot));
        }
        let uids: Option<Vec<u32>> = only.map(|set| {
            view.resolve(set, true)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        });
        let expunged = user.expunge(view.id, uids.as_deref())?;
        announce_expunges(view, &expunged, qresync, out);
        Ok(self.expunge_ok_reply("EXPUNGE completed"))
    }

    /// An OK that carries the mailbox's HIGHESTMODSEQ once CONDSTORE is on.
    pub(crate) fn expunge_ok_reply(&self, text: &str) -> Reply {
        let reply = Reply::ok(text);
        if !self.enabled.condstore {
            return reply;
        }
        let modseq = self
            .view
            .as_ref()
            .and_then(|v| self.login.as_ref().map(|l| (v, l)))
            .and_then(|(v, l)| l.store.mailbox_by_id(v.id).ok())
            .map(|m| m.highestmodseq);
        match modseq {
            Some(m) => reply.code(ResponseCode::HighestModSeq(m)),
            None => reply,
        }
    }

    /// Report what changed in the selected mailbox since the view's MODSEQ.
    /// `Err` holds a BYE text when the mailbox is gone.
    pub(crate) fn sync(&mut self, out: &mut Out, expunge_ok: bool) -> Result<(), String> {
        let Some(login) = self.login.as_ref() else {
            return Ok(());
        };
        let user = login.store.clone();
        let rev1 = !self.enabled.rev2;
        let condstore = self.enabled.condstore;
        let qresync = self.enabled.qresync;
        let claim_allowed = self.writable().is_ok();
        let keyword_room = self.ctx.slot.limits().keywords_per_mailbox_max;
        let Some(view) = self.view.as_mut() else {
            return Ok(());
        };
        let delta = match user.delta(view.id, view.modseq) {
            Ok(d) => d,
            Err(StoreError::NoSuchMailbox(_)) => {
                return Err("The selected mailbox was deleted".to_string());
            }
            Err(e) => {
                tracing::warn!(user = user.name(), cause = %e, "IMAP: cannot read mailbox changes");
                return Ok(());
            }
        };
        if delta.mailbox.uidvalidity != view.uidvalidity {
            return Err("The selected mailbox was replaced".to_string());
        }
        view.name = delta.mailbox.name.clone();
        if delta.mailbox.keywords != view.keywords {
            view.keywords = delta.mailbox.keywords.clone();
            let room = view.keywords.len() < keyword_room;
            flags::write_mailbox_flags(out, &view.keywords, view.read_only, room);
        }
        // Flag changes of messages the client knows.
        for m in delta.changed.iter().filter(|m| m.uid < view.uidnext) {
            let Some(seq) = view.seq_of(m.uid) else {
                continue;
            };
            if self.reported.contains(&(m.uid, m.modseq)) {
                continue;
            }
            let modseq = condstore.then_some(m.modseq);
            write_flags_fetch(out, seq, m.uid, &m.flags, view.is_recent(m.uid), modseq);
        }
        // Expunges, now or later.
        view.defer_expunge(&delta.expunged);
        if expunge_ok && !view.pending_expunge.is_empty() {
            let pending = std::mem::take(&mut view.pending_expunge);
            announce_expunges(view, &pending, qresync, out);
        }
        // New messages.
        let new: Vec<u32> = delta
            .changed
            .iter()
            .filter(|m| m.uid >= view.uidnext)
            .map(|m| m.uid)
            .collect();
        if !new.is_empty() {
            view.uids.extend_from_slice(&new);
            if rev1 && !view.read_only && claim_allowed {
                match user.claim_recent(view.id) {
                    Ok(old) => view.add_recent(old.max(view.uidnext), delta.mailbox.uidnext),
                    Err(e) => {
                        tracing::warn!(user = user.name(), cause = %e, "IMAP: cannot claim \\Recent")
                    }
                }
            }
            out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
            if rev1 {
                out.extend_from_slice(format!("* {} RECENT\r\n", view.recent_count()).as_bytes());
            }
        }
        view.uidnext = view.uidnext.max(delta.mailbox.uidnext);
        view.modseq = view.modseq.max(delta.mailbox.highestmodseq);
        out.boundary();
        Ok(())
    }
}

/// Announce and drop expunged messages: `* n EXPUNGE` from the highest
/// number down, or one `* VANISHED` when QRESYNC is on.
pub(crate) fn announce_expunges(view: &mut View, uids: &[u32], qresync: bool, out: &mut Out) {
    if qresync {
        let mut present: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|&u| view.seq_of(u).is_some())
            .collect();
        present.sort_unstable();
        present.dedup();
        view.remove(&present);
        if let Some(set) = SequenceSet::from_ids(&present) {
            out.extend_from_slice(format!("* VANISHED {set}\r\n").as_bytes());
        }
    } else {
        for seq in view.remove(uids) {
            out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
        }
    }
    out.boundary();
}

/// `* seq FETCH (UID u FLAGS (...) [MODSEQ (m)])`.
pub(crate) fn write_flags_fetch(
    out: &mut Out,
    seq: u32,
    uid: u32,
    flags: &Flags,
    recent: bool,
    modseq: Option<u64>,
) {
    out.extend_from_slice(format!("* {seq} FETCH (UID {uid} FLAGS ").as_bytes());
    flags::write_flags(out, flags, recent);
    if let Some(m) = modseq {
        out.extend_from_slice(format!(" MODSEQ ({m})").as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}
