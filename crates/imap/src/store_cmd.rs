//! STORE and UID STORE (RFC 3501 §6.4.6) with `.SILENT` and RFC 7162's
//! UNCHANGEDSINCE (`[MODIFIED set]`), and COPY, MOVE and their UID forms
//! (RFC 4315 COPYUID, RFC 6851 MOVE).

use crate::flags;
use crate::select::{announce_expunges, write_flags_fetch};
use crate::session::{Out, Reply, Res, Session};
use slotmail_imap_proto::response::write_status;
use slotmail_imap_proto::{Flag, ResponseCode, SequenceSet, StatusKind, StoreMode};
use slotmail_store::{FlagOp, StoreError};

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flag_list: &[Flag],
        out: &mut Out,
    ) -> Res {
        self.writable()?;
        if unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let condstore = self.enabled.condstore;
        let user = self.user()?;
        let view = self.view()?;
        if view.read_only {
            return Err(Reply::no("Mailbox is read-only").code(ResponseCode::Cannot));
        }
        let targets = view.resolve(set, uid).map_err(|e| {
            Reply::bad(format!(
                "Invalid sequence number {} (mailbox has {} messages)",
                e.seq, e.exists
            ))
        })?;
        let wanted = flags::to_store(flag_list)?;
        let op = match mode {
            StoreMode::Replace => FlagOp::Set,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
        let done = user.store_flags(view.id, &uids, op, &wanted, unchanged_since)?;

        let mut answered: Vec<(u32, &slotmail_store::MessageMeta, bool)> = Vec::new();
        for m in &done.changed {
            self.reported.push((m.uid, m.modseq));
        }
        let view = self.view()?;
        for m in &done.changed {
            answered.push((m.uid, m, true));
        }
        if !silent {
            for m in &done.unchanged {
                answered.push((m.uid, m, false));
            }
        }
        answered.sort_by_key(|(u, _, _)| *u);
        for (u, m, changed) in answered {
            let Some(seq) = view.seq_of(u) else {
                continue;
            };
            let modseq = condstore.then_some(m.modseq);
            if silent {
                // RFC 7162 §3.1.3: MODSEQ of changed messages even when silent.
                if changed && let Some(ms) = modseq {
                    out.extend_from_slice(
                        format!("* {seq} FETCH (UID {u} MODSEQ ({ms}))\r\n").as_bytes(),
                    );
                }
            } else {
                write_flags_fetch(out, seq, u, &m.flags, view.is_recent(u), modseq);
            }
        }
        if !done.modified.is_empty() {
            let mut ids: Vec<u32> = if uid {
                done.modified.clone()
            } else {
                done.modified
                    .iter()
                    .filter_map(|&u| view.seq_of(u))
                    .collect()
            };
            ids.sort_unstable();
            if let Some(set) = SequenceSet::from_ids(&ids) {
                return Ok(Reply::ok("Conditional STORE failed for some messages")
                    .code(ResponseCode::Modified(set)));
            }
        }
        Ok(Reply::ok("STORE completed"))
    }

    pub(crate) fn copy(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        dest: &str,
        is_move: bool,
        out: &mut Out,
    ) -> Res {
        self.writable()?;
        let user = self.user()?;
        let qresync = self.enabled.qresync;
        let view = self.view()?;
        if is_move && view.read_only {
            return Err(Reply::no("Mailbox is read-only").code(ResponseCode::Cannot));
        }
        let targets = view.resolve(set, uid).map_err(|e| {
            Reply::bad(format!(
                "Invalid sequence number {} (mailbox has {} messages)",
                e.seq, e.exists
            ))
        })?;
        let dest = match user.mailbox(dest) {
            Ok(m) => m,
            Err(StoreError::NoSuchMailbox(_)) => {
                return Err(
                    Reply::no("Destination mailbox does not exist").code(ResponseCode::TryCreate)
                );
            }
            Err(e) => return Err(e.into()),
        };
        let verb = if is_move { "MOVE" } else { "COPY" };
        let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
        if uids.is_empty() {
            return Ok(Reply::ok(format!("{verb} completed, no messages")));
        }
        if is_move && dest.id == view.id {
            return Err(
                Reply::no("Source and destination are the same mailbox").code(ResponseCode::Cannot)
            );
        }
        let done = if is_move {
            user.move_messages(view.id, &uids, dest.id)?
        } else {
            user.copy(view.id, &uids, dest.id)?
        };
        let (sources, dests): (Vec<u32>, Vec<u32>) = done.pairs.iter().copied().unzip();
        let code = match (
            SequenceSet::from_ids(&sources),
            SequenceSet::from_ids(&dests),
        ) {
            (Some(source), Some(dest)) => Some(ResponseCode::CopyUid {
                uid_validity: done.uidvalidity,
                source,
                dest,
            }),
            _ => None,
        };
        if !is_move {
            let reply = Reply::ok("COPY completed");
            return Ok(match code {
                Some(c) => reply.code(c),
                None => reply,
            });
        }
        if let Some(c) = &code {
            write_status(out, None, StatusKind::Ok, Some(c), "Moved");
        }
        let view = self.view_mut()?;
        announce_expunges(view, &done.expunged, qresync, out);
        Ok(self.expunge_ok_reply("MOVE completed"))
    }
}
