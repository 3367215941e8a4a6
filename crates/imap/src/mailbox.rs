//! Mailbox-level commands that do not need a selected mailbox: CREATE
//! (with RFC 6154 USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS,
//! APPEND and the quota commands (RFC 9208, one root `""` per user).

use crate::flags;
use crate::session::{Out, Reply, Res, Session, State};
use slotmail_imap_proto::{
    AppendMessage, Data, MailboxName, QuotaResource, Response, ResponseCode, SequenceSet,
    SpecialUse, StatusItem,
};
use slotmail_store::{NewMessage, StoreError, User};

impl Session {
    pub(crate) fn create(&mut self, name: &str, special_use: &[SpecialUse]) -> Res {
        self.writable()?;
        let user = self.user()?;
        // RFC 3501 §6.3.3: a trailing separator means the name without it.
        let name = name.strip_suffix('/').unwrap_or(name);
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(Reply::no("INBOX always exists").code(ResponseCode::AlreadyExists));
        }
        let special_use = match special_use {
            [] => None,
            [one] => match one {
                SpecialUse::Important | SpecialUse::Extension(_) => {
                    return Err(Reply::no(format!(
                        "Special-use attribute {} is not supported",
                        one.as_wire()
                    ))
                    .code(ResponseCode::UseAttr));
                }
                known => Some(known.as_wire()),
            },
            _ => {
                return Err(Reply::no("Only one special-use attribute per mailbox")
                    .code(ResponseCode::UseAttr));
            }
        };
        user.create_mailbox(name, special_use.as_deref())?;
        Ok(Reply::ok("CREATE completed"))
    }

    pub(crate) fn delete(&mut self, name: &str) -> Res {
        self.writable()?;
        let user = self.user()?;
        let mbox = user.mailbox(name)?;
        user.delete_mailbox(name)?;
        if self.view.as_ref().is_some_and(|v| v.id == mbox.id) {
            self.view = None;
            self.state = State::Authenticated;
        }
        Ok(Reply::ok("DELETE completed"))
    }

    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Res {
        self.writable()?;
        let user = self.user()?;
        user.rename_mailbox(from, to)?;
        Ok(Reply::ok("RENAME completed"))
    }

    pub(crate) fn subscribe(&mut self, name: &str, subscribe: bool) -> Res {
        self.writable()?;
        let user = self.user()?;
        if subscribe {
            user.subscribe(name)?;
            Ok(Reply::ok("SUBSCRIBE completed"))
        } else {
            match user.unsubscribe(name) {
                Ok(()) => Ok(Reply::ok("UNSUBSCRIBE completed")),
                Err(StoreError::NoSuchMailbox(_)) => {
                    Err(Reply::no("Not subscribed to that name").code(ResponseCode::NonExistent))
                }
                Err(e) => Err(e.into()),
            }
        }
    }

    pub(crate) fn status(
        &mut self,
        mailbox: &MailboxName,
        items: &[StatusItem],
        out: &mut Out,
    ) -> Res {
        let user = self.user()?;
        let mbox = user.mailbox(mailbox.as_str())?;
        self.write_status_data(&user, mailbox, mbox.id, items, out)?;
        Ok(Reply::ok("STATUS completed"))
    }

    /// Appends `* STATUS name (item value ...)`.
    pub(crate) fn write_status_data(
        &self,
        user: &User,
        name: &MailboxName,
        id: i64,
        items: &[StatusItem],
        out: &mut Out,
    ) -> Result<(), StoreError> {
        let st = user.status(id)?;
        let values = items
            .iter()
            .map(|&item| {
                let v = match item {
                    StatusItem::Messages => u64::from(st.messages),
                    StatusItem::Recent => u64::from(st.recent),
                    StatusItem::UidNext => u64::from(st.uidnext),
                    StatusItem::UidValidity => u64::from(st.uidvalidity),
                    StatusItem::Unseen => u64::from(st.unseen),
                    StatusItem::Deleted => u64::from(st.deleted),
                    StatusItem::Size => st.size,
                    StatusItem::HighestModSeq => st.highestmodseq,
                    StatusItem::AppendLimit => self.append_limit(),
                };
                (item, v)
            })
            .collect();
        Response::Data(Data::Status {
            mailbox: name.clone(),
            items: values,
        })
        .encode_with(out, self.encoding());
        Ok(())
    }

    /// APPEND of one message, or several with MULTIAPPEND (RFC 3502): all
    /// of them are appended in one transaction or none is.
    pub(crate) fn append(&mut self, name: &str, messages: Vec<AppendMessage>) -> Res {
        self.writable()?;
        let user = self.user()?;
        let mbox = match user.mailbox(name) {
            Ok(m) => m,
            Err(StoreError::NoSuchMailbox(_)) => {
                return Err(Reply::no("Mailbox does not exist").code(ResponseCode::TryCreate));
            }
            Err(e) => return Err(e.into()),
        };
        let limit = self.append_limit();
        let mut prepared = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let which = if messages.len() > 1 {
                format!(" (message {} of {})", i + 1, messages.len())
            } else {
                String::new()
            };
            if message.data.is_empty() {
                return Err(
                    Reply::no(format!("An empty message cannot be appended{which}"))
                        .code(ResponseCode::Cannot),
                );
            }
            // A message with NUL bytes could only ever be sent back in a
            // literal8, which BODY[] and RFC822 may not use (RFC 9051
            // §4.3): refuse it as RFC 3516 §4.4 allows.
            if message.data.contains(&0) {
                return Err(Reply::no(format!(
                    "Messages containing NUL bytes are not stored; encode binary content (base64){which}"
                ))
                .code(ResponseCode::UnknownCte));
            }
            if message.data.len() as u64 > limit {
                return Err(
                    Reply::no(format!("Message too big (limit {limit} bytes){which}"))
                        .code(ResponseCode::TooBig),
                );
            }
            let flags = flags::to_store(&message.flags)?;
            let date = message
                .date
                .map(|d| (d.unix_timestamp(), i32::from(d.offset_minutes())));
            prepared.push((flags, date));
        }
        let batch: Vec<NewMessage<'_>> = messages
            .iter()
            .zip(&prepared)
            .map(|(m, (flags, date))| NewMessage {
                raw: &m.data,
                flags,
                internaldate: *date,
            })
            .collect();
        let done = user.append_many(mbox.id, &batch)?;
        if let Some(durable) = &self.config().durable {
            durable
                .0
                .confirm(&user, mbox.id, &done)
                .map_err(|text| Reply::no(text).code(ResponseCode::Unavailable))?;
        }
        let uids: Vec<u32> = done.iter().map(|d| d.uid).collect();
        let uid_validity = done.first().map_or(mbox.uidvalidity, |d| d.uidvalidity);
        let uids = SequenceSet::from_ids(&uids).expect("APPEND has at least one message");
        Ok(Reply::ok("APPEND completed").code(ResponseCode::AppendUid { uid_validity, uids }))
    }

    pub(crate) fn get_quota(&mut self, root: &str, out: &mut Out) -> Res {
        let user = self.user()?;
        if !root.is_empty() {
            return Err(Reply::no("No such quota root").code(ResponseCode::NonExistent));
        }
        self.write_quota(&user, out)?;
        Ok(Reply::ok("GETQUOTA completed"))
    }

    pub(crate) fn get_quota_root(&mut self, mailbox: &MailboxName, out: &mut Out) -> Res {
        let user = self.user()?;
        user.mailbox(mailbox.as_str())?;
        Response::Data(Data::QuotaRoot {
            mailbox: mailbox.clone(),
            roots: vec![String::new()],
        })
        .encode_with(out, self.encoding());
        self.write_quota(&user, out)?;
        Ok(Reply::ok("GETQUOTAROOT completed"))
    }

    /// `* QUOTA "" (STORAGE used limit MESSAGE used limit)`, listing only
    /// the resources that have a limit (RFC 9208 §5.1). STORAGE is in KiB.
    fn write_quota(&self, user: &User, out: &mut Out) -> Result<(), StoreError> {
        let q = user.quota()?;
        let mut resources = Vec::new();
        if let Some(limit) = q.limit_bytes {
            resources.push(QuotaResource {
                name: "STORAGE".into(),
                usage: q.used_bytes.div_ceil(1024),
                limit: limit / 1024,
            });
        }
        if let Some(limit) = q.limit_messages {
            resources.push(QuotaResource {
                name: "MESSAGE".into(),
                usage: q.used_messages,
                limit,
            });
        }
        Response::Data(Data::Quota {
            root: String::new(),
            resources,
        })
        .encode_with(out, self.encoding());
        Ok(())
    }
}
