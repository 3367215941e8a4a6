//! The IMAP commands as [`Client`] methods: authentication, mailbox
//! management, SELECT (with CONDSTORE / QRESYNC), APPEND, FETCH (buffered
//! and streaming), STORE, SEARCH, EXPUNGE, COPY / MOVE, quota, ID,
//! NAMESPACE, STARTTLS and COMPRESS.

use std::collections::HashMap;
use std::sync::Arc;

use slotmail_imap_proto::{
    AppendMessage, Command, CommandBody, Data, DateTime, FetchAttrs, FetchItem, FetchModifiers,
    Flag, ListCommand, MailboxEncoding, MailboxName, NamespaceDescr, QResyncParams, Response,
    ResponseCode, SearchKey, SelectParams, SeqNum, SequenceSet, SpecialUse, StatusItem, StatusKind,
    StoreMode, parse_command_bytes,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::sasl;
use crate::types::{
    AppendUid, CopyUid, Expunged, FetchRecord, ListEntry, Mailbox, MailboxStatus, QresyncSelect,
    Quota, QuotaRoots, Selected, SessionState, StoreOutcome, expand_set,
};

/// The three namespace lists of a NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// Personal namespaces.
    pub personal: Vec<NamespaceDescr>,
    /// Other users' namespaces.
    pub other: Vec<NamespaceDescr>,
    /// Shared namespaces.
    pub shared: Vec<NamespaceDescr>,
}

/// Validates a mailbox name given by the caller.
fn mailbox_name(name: &str) -> Result<MailboxName> {
    MailboxName::new(name).map_err(|e| Error::InvalidRequest(format!("mailbox {name:?}: {e}")))
}

/// Fixed bytes counted per buffered LIST entry, besides its name.
const LIST_ENTRY_OVERHEAD_BYTES: usize = 64;

/// The UIDs a UID command asked about, for telling its FETCH responses
/// from unsolicited ones (`*` stands for "any higher UID").
struct UidFilter {
    ranges: Vec<std::ops::RangeInclusive<u32>>,
}

impl UidFilter {
    fn new(set: &SequenceSet) -> Self {
        UidFilter {
            ranges: set.resolve(u32::MAX),
        }
    }

    fn contains(&self, uid: u32) -> bool {
        // Sorted, merged, non-overlapping: the candidate is the last range
        // starting at or below `uid`.
        let i = self.ranges.partition_point(|r| *r.start() <= uid);
        i > 0 && self.ranges[i - 1].contains(&uid)
    }
}

/// The UID of a FETCH response, if it has one.
fn uid_of(items: &[FetchItem]) -> Option<u32> {
    items.iter().find_map(|i| match i {
        FetchItem::Uid(u) => Some(*u),
        _ => None,
    })
}

/// Collects FETCH responses that carry a UID (within the filter, when
/// given), merging several responses for one message, under a byte budget.
struct FetchCollector {
    filter: Option<UidFilter>,
    records: Vec<FetchRecord>,
    by_uid: HashMap<u32, usize>,
    bytes: usize,
    max_bytes: usize,
    overflow: bool,
}

impl FetchCollector {
    fn new(max_bytes: usize, filter: Option<UidFilter>) -> Self {
        FetchCollector {
            filter,
            records: Vec::new(),
            by_uid: HashMap::new(),
            bytes: 0,
            max_bytes,
            overflow: false,
        }
    }

    /// Takes a FETCH response with a wanted UID; hands others back.
    fn offer(&mut self, seq: u32, items: Vec<FetchItem>) -> Option<Vec<FetchItem>> {
        let Some(uid) = uid_of(&items) else {
            return Some(items);
        };
        if self.filter.as_ref().is_some_and(|f| !f.contains(uid)) {
            return Some(items);
        }
        if self.overflow {
            return None;
        }
        match self.by_uid.get(&uid) {
            Some(&i) => {
                let before = self.records[i].size_bytes();
                self.records[i].absorb(items);
                self.bytes = self.bytes - before + self.records[i].size_bytes();
            }
            None => {
                let mut r = FetchRecord {
                    seq,
                    ..FetchRecord::default()
                };
                r.absorb(items);
                self.bytes += r.size_bytes();
                self.by_uid.insert(uid, self.records.len());
                self.records.push(r);
            }
        }
        if self.bytes > self.max_bytes {
            // The result is lost anyway: free it now, keep reading.
            self.overflow = true;
            self.records = Vec::new();
            self.by_uid = HashMap::new();
        }
        None
    }

    fn finish(self) -> Result<Vec<FetchRecord>> {
        if self.overflow {
            return Err(Error::Limit(format!(
                "buffered FETCH results exceed {} bytes; use a streaming fetch",
                self.max_bytes
            )));
        }
        Ok(self.records)
    }
}

/// Parses FETCH items given as text (`(UID FLAGS BODY.PEEK[])`, optionally
/// followed by modifiers such as `(CHANGEDSINCE 5)`).
fn parse_fetch_items(items: &str) -> Result<(FetchAttrs, FetchModifiers)> {
    let line = format!("x UID FETCH 1 {items}\r\n");
    match parse_command_bytes(line.as_bytes()) {
        Ok(Command {
            body: CommandBody::Fetch {
                attrs, modifiers, ..
            },
            ..
        }) => Ok((attrs, modifiers)),
        Ok(_) => Err(Error::InvalidRequest(format!(
            "FETCH items {items:?} are not FETCH items"
        ))),
        Err(e) => Err(Error::InvalidRequest(format!("FETCH items {items:?}: {e}"))),
    }
}

/// Parses SEARCH criteria given as text (`UNSEEN SINCE 1-Feb-2024`,
/// optionally starting with `CHARSET x`).
fn parse_search(criteria: &str) -> Result<(Option<String>, Vec<SearchKey>)> {
    let line = format!("x UID SEARCH {criteria}\r\n");
    match parse_command_bytes(line.as_bytes()) {
        Ok(Command {
            body:
                CommandBody::Search {
                    charset,
                    criteria,
                    return_opts: None,
                    ..
                },
            ..
        }) => Ok((charset, criteria)),
        Ok(_) => Err(Error::InvalidRequest(format!(
            "SEARCH criteria {criteria:?} are not plain criteria"
        ))),
        Err(e) => Err(Error::InvalidRequest(format!(
            "SEARCH criteria {criteria:?}: {e}"
        ))),
    }
}

/// Parses a STORE operation: `FLAGS`, `+FLAGS` or `-FLAGS`, each with an
/// optional `.SILENT`.
fn parse_store_op(op: &str) -> Result<(StoreMode, bool)> {
    let upper = op.to_ascii_uppercase();
    let (mode, rest) = match upper.as_bytes().first() {
        Some(b'+') => (StoreMode::Add, &upper[1..]),
        Some(b'-') => (StoreMode::Remove, &upper[1..]),
        _ => (StoreMode::Replace, &upper[..]),
    };
    match rest {
        "FLAGS" => Ok((mode, false)),
        "FLAGS.SILENT" => Ok((mode, true)),
        _ => Err(Error::InvalidRequest(format!(
            "STORE operation {op:?} is not [+-]FLAGS[.SILENT]"
        ))),
    }
}

/// The first number of a server-sent set.
fn first_uid(set: &SequenceSet) -> Option<u32> {
    match set.ranges().first()?.start {
        SeqNum::Value(v) => Some(v),
        SeqNum::Star => None,
    }
}

impl Client {
    /// Authenticates with LOGIN. Refused locally when the server
    /// advertises LOGINDISABLED.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        if self.has_capability("LOGINDISABLED") {
            return Err(Error::InvalidRequest(
                "the server advertises LOGINDISABLED".into(),
            ));
        }
        self.capabilities_seen = false;
        self.run_simple(CommandBody::Login {
            username: user.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
        })
        .await?;
        self.authenticated().await
    }

    /// Authenticates with SASL PLAIN as `authcid`; with `authzid` an admin
    /// acts as that user. Uses SASL-IR when advertised, else answers the
    /// server's continuation request.
    pub async fn authenticate_plain(
        &mut self,
        authzid: Option<&str>,
        authcid: &str,
        password: &str,
    ) -> Result<()> {
        if !self.has_capability("AUTH=PLAIN") {
            return Err(Error::MissingCapability("AUTH=PLAIN".into()));
        }
        self.ready()?;
        let response = sasl::plain_response(authzid, authcid, password);
        let sasl_ir = self.has_capability("SASL-IR");
        let (tag, chunks) = self.encode(CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial_response: sasl_ir.then(|| response.clone()),
        });
        let mut sent = sasl_ir;
        let mut answer = |_challenge: &str| {
            if sent {
                // PLAIN has one step; a second challenge is cancelled and
                // the server answers BAD.
                b"*\r\n".to_vec()
            } else {
                sent = true;
                format!("{response}\r\n").into_bytes()
            }
        };
        self.capabilities_seen = false;
        self.exchange("AUTHENTICATE", &tag, chunks, &mut Some, Some(&mut answer))
            .await?
            .into_result()?;
        self.authenticated().await
    }

    /// After a successful LOGIN / AUTHENTICATE: new state and capabilities.
    async fn authenticated(&mut self) -> Result<()> {
        self.state = SessionState::Authenticated;
        if !self.capabilities_seen {
            self.refresh_capabilities().await?;
        }
        Ok(())
    }

    /// Logs out: LOGOUT, the server's BYE and tagged OK, then closes the
    /// connection.
    pub async fn logout(mut self) -> Result<()> {
        match self.run_simple(CommandBody::Logout).await {
            Ok(_) => {}
            // Some servers close right after BYE.
            Err(Error::Closed { .. }) if self.said_bye() => {}
            Err(e) => return Err(e),
        }
        self.transport.shutdown().await;
        Ok(())
    }

    /// ENABLE (RFC 5161); returns what the server enabled. Enabling
    /// `UTF8=ACCEPT` or `IMAP4rev2` switches mailbox names to UTF-8.
    pub async fn enable(&mut self, extensions: &[&str]) -> Result<Vec<String>> {
        let mut enabled = Vec::new();
        self.run(
            CommandBody::Enable {
                capabilities: extensions.iter().map(|s| (*s).to_owned()).collect(),
            },
            &mut |r| match r {
                Response::Data(Data::Enabled(caps)) => {
                    enabled.extend(caps);
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        for e in &enabled {
            if e.eq_ignore_ascii_case("UTF8=ACCEPT") || e.eq_ignore_ascii_case("IMAP4rev2") {
                self.encoding = MailboxEncoding::Utf8;
                self.transport
                    .reader_mut()
                    .set_encoding(MailboxEncoding::Utf8);
            }
            if !self.is_enabled(e) {
                self.enabled.push(e.clone());
            }
        }
        Ok(enabled)
    }

    /// SELECT, with `(CONDSTORE)` when asked.
    pub async fn select(&mut self, mailbox: &str, condstore: bool) -> Result<Mailbox> {
        let params = SelectParams {
            condstore,
            qresync: None,
        };
        Ok(self.open_mailbox(mailbox, false, params).await?.mailbox)
    }

    /// EXAMINE (read-only SELECT), with `(CONDSTORE)` when asked.
    pub async fn examine(&mut self, mailbox: &str, condstore: bool) -> Result<Mailbox> {
        let params = SelectParams {
            condstore,
            qresync: None,
        };
        Ok(self.open_mailbox(mailbox, true, params).await?.mailbox)
    }

    /// SELECT with QRESYNC (RFC 7162 §3.2.5): the mailbox plus what
    /// vanished and changed since `modseq`. Sends `ENABLE QRESYNC` first
    /// if needed.
    pub async fn select_qresync(
        &mut self,
        mailbox: &str,
        uidvalidity: u32,
        modseq: u64,
        known_uids: Option<&SequenceSet>,
    ) -> Result<QresyncSelect> {
        if uidvalidity == 0 || modseq == 0 {
            return Err(Error::InvalidRequest(
                "QRESYNC needs a non-zero UIDVALIDITY and MODSEQ".into(),
            ));
        }
        if !self.is_enabled("QRESYNC") {
            if !self.has_capability("QRESYNC") {
                return Err(Error::MissingCapability("QRESYNC".into()));
            }
            let got = self.enable(&["QRESYNC"]).await?;
            if !got.iter().any(|e| e.eq_ignore_ascii_case("QRESYNC")) {
                return Err(Error::Protocol("ENABLE QRESYNC did not enable it".into()));
            }
        }
        let params = SelectParams {
            condstore: false,
            qresync: Some(QResyncParams {
                uid_validity: uidvalidity,
                mod_seq: modseq,
                known_uids: known_uids.cloned(),
                seq_match: None,
            }),
        };
        self.open_mailbox(mailbox, false, params).await
    }

    async fn open_mailbox(
        &mut self,
        name: &str,
        examine: bool,
        params: SelectParams,
    ) -> Result<QresyncSelect> {
        let mbox = mailbox_name(name)?;
        self.ready()?;
        let body = if examine {
            CommandBody::Examine {
                mailbox: mbox,
                params,
            }
        } else {
            CommandBody::Select {
                mailbox: mbox,
                params,
            }
        };
        // Whatever happens, the previous mailbox is no longer selected.
        self.selected = None;
        if self.state == SessionState::Selected {
            self.state = SessionState::Authenticated;
        }
        let max_uids = self.opts.max_expanded_uids;
        let mut m = Mailbox {
            name: name.to_owned(),
            exists: 0,
            recent: None,
            uidvalidity: 0,
            uidnext: None,
            highestmodseq: None,
            flags: Vec::new(),
            permanentflags: Vec::new(),
            allow_new_keywords: false,
            unseen: None,
            read_only: examine,
        };
        let mut saw_exists = false;
        let mut vanished = Vec::new();
        let mut failure = None;
        let mut changed = FetchCollector::new(self.opts.max_buffered_fetch_bytes, None);
        let c = self
            .run(body, &mut |r| {
                match r {
                    Response::Data(Data::Exists(n)) => {
                        m.exists = n;
                        saw_exists = true;
                    }
                    Response::Data(Data::Recent(n)) => m.recent = Some(n),
                    Response::Data(Data::Flags(f)) => m.flags = f,
                    Response::Data(Data::Vanished {
                        earlier: true,
                        uids,
                    }) => match expand_set(&uids, max_uids.saturating_sub(vanished.len())) {
                        Ok(v) => vanished.extend(v),
                        Err(e) => failure = Some(e),
                    },
                    Response::Data(Data::Fetch { seq, items }) => {
                        return changed
                            .offer(seq, items)
                            .map(|items| Response::Data(Data::Fetch { seq, items }));
                    }
                    Response::Status {
                        tag: None,
                        kind: StatusKind::Ok,
                        code: Some(code),
                        text,
                    } => match code {
                        ResponseCode::UidValidity(n) => m.uidvalidity = n,
                        ResponseCode::UidNext(n) => m.uidnext = Some(n),
                        ResponseCode::HighestModSeq(n) => m.highestmodseq = Some(n),
                        ResponseCode::NoModSeq => m.highestmodseq = None,
                        ResponseCode::Unseen(n) => m.unseen = Some(n),
                        ResponseCode::PermanentFlags {
                            flags,
                            allow_new_keywords,
                        } => {
                            m.permanentflags = flags;
                            m.allow_new_keywords = allow_new_keywords;
                        }
                        // The previous mailbox was closed (QRESYNC).
                        ResponseCode::Closed => {}
                        code => {
                            return Some(Response::Status {
                                tag: None,
                                kind: StatusKind::Ok,
                                code: Some(code),
                                text,
                            });
                        }
                    },
                    other => return Some(other),
                }
                None
            })
            .await?;
        if let Some(e) = failure {
            return Err(e);
        }
        let changed = changed.finish()?;
        if matches!(c.code, Some(ResponseCode::ReadOnly)) {
            m.read_only = true;
        }
        if m.uidvalidity == 0 {
            return Err(Error::Protocol(format!(
                "{} {name:?} completed without UIDVALIDITY",
                if examine { "EXAMINE" } else { "SELECT" }
            )));
        }
        if !saw_exists {
            return Err(Error::Protocol(format!(
                "{} {name:?} completed without EXISTS",
                if examine { "EXAMINE" } else { "SELECT" }
            )));
        }
        vanished.sort_unstable();
        vanished.dedup();
        self.state = SessionState::Selected;
        self.selected = Some(Selected {
            name: name.to_owned(),
            exists: m.exists,
            uidvalidity: m.uidvalidity,
            read_only: m.read_only,
        });
        Ok(QresyncSelect {
            mailbox: m,
            vanished,
            changed,
        })
    }

    /// UNSELECT (RFC 3691): leaves the mailbox without expunging.
    pub async fn unselect(&mut self) -> Result<()> {
        self.run_simple(CommandBody::Unselect).await?;
        self.selected = None;
        self.state = SessionState::Authenticated;
        Ok(())
    }

    /// CLOSE: expunges `\Deleted` messages silently and leaves the mailbox.
    pub async fn close(&mut self) -> Result<()> {
        self.run_simple(CommandBody::Close).await?;
        self.selected = None;
        self.state = SessionState::Authenticated;
        Ok(())
    }

    /// LIST `reference` `pattern`.
    pub async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>> {
        self.list_extended(&ListCommand {
            selection: Vec::new(),
            reference: reference.to_owned(),
            patterns: vec![pattern.to_owned()],
            return_opts: Vec::new(),
        })
        .await
    }

    /// LIST with LIST-EXTENDED selection and return options (RFC 5258),
    /// e.g. `RETURN (SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UIDNEXT))`;
    /// LIST-STATUS values are attached to their entries.
    pub async fn list_extended(&mut self, cmd: &ListCommand) -> Result<Vec<ListEntry>> {
        self.list_like(CommandBody::List(cmd.clone()), false).await
    }

    /// LSUB `reference` `pattern` (IMAP4rev1).
    pub async fn lsub(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>> {
        self.list_like(
            CommandBody::Lsub {
                reference: reference.to_owned(),
                pattern: pattern.to_owned(),
            },
            true,
        )
        .await
    }

    async fn list_like(&mut self, body: CommandBody, lsub: bool) -> Result<Vec<ListEntry>> {
        let max_bytes = self.opts.max_buffered_fetch_bytes;
        let mut entries: Vec<ListEntry> = Vec::new();
        let mut statuses: Vec<MailboxStatus> = Vec::new();
        let mut bytes = 0usize;
        let mut overflow = false;
        self.run(body, &mut |r| {
            let (data, status) = match r {
                Response::Data(Data::List(l)) if !lsub => (Some(l), None),
                Response::Data(Data::Lsub(l)) if lsub => (Some(l), None),
                Response::Data(Data::Status { mailbox, items }) if !lsub => (
                    None,
                    Some(MailboxStatus {
                        name: mailbox.into_string(),
                        items,
                    }),
                ),
                other => return Some(other),
            };
            let size = LIST_ENTRY_OVERHEAD_BYTES
                + data.as_ref().map_or(0, |l| l.mailbox.as_str().len())
                + status
                    .as_ref()
                    .map_or(0, |s| s.name.len() + 16 * s.items.len());
            bytes = bytes.saturating_add(size);
            if bytes > max_bytes {
                overflow = true;
                entries = Vec::new();
                statuses = Vec::new();
            }
            if overflow {
                return None;
            }
            if let Some(l) = data {
                entries.push(ListEntry {
                    name: l.mailbox.into_string(),
                    attributes: l.attributes,
                    delimiter: l.delimiter,
                    extended: l.extended,
                    status: None,
                });
            }
            statuses.extend(status);
            None
        })
        .await?;
        if overflow {
            return Err(Error::Limit(format!(
                "buffered LIST results exceed {max_bytes} bytes"
            )));
        }
        for s in statuses {
            if let Some(e) = entries.iter_mut().find(|e| e.name == s.name) {
                e.status = Some(s);
            }
        }
        Ok(entries)
    }

    /// STATUS `mailbox` (`items`).
    pub async fn status(&mut self, mailbox: &str, items: &[StatusItem]) -> Result<MailboxStatus> {
        let mbox = mailbox_name(mailbox)?;
        let mut found = None;
        self.run(
            CommandBody::Status {
                mailbox: mbox.clone(),
                items: items.to_vec(),
            },
            &mut |r| match r {
                Response::Data(Data::Status { mailbox, items }) if mailbox == mbox => {
                    found = Some(MailboxStatus {
                        name: mailbox.into_string(),
                        items,
                    });
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        found.ok_or_else(|| {
            Error::Protocol(format!("STATUS {mailbox:?} completed without STATUS data"))
        })
    }

    /// CREATE, with `(USE (...))` special-use attributes when given.
    pub async fn create(&mut self, mailbox: &str, special_use: &[SpecialUse]) -> Result<()> {
        let mailbox = mailbox_name(mailbox)?;
        self.run_simple(CommandBody::Create {
            mailbox,
            special_use: special_use.to_vec(),
        })
        .await
        .map(drop)
    }

    /// DELETE.
    pub async fn delete(&mut self, mailbox: &str) -> Result<()> {
        let mailbox = mailbox_name(mailbox)?;
        self.run_simple(CommandBody::Delete { mailbox })
            .await
            .map(drop)
    }

    /// RENAME `from` `to`.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (mailbox_name(from)?, mailbox_name(to)?);
        self.run_simple(CommandBody::Rename { from, to })
            .await
            .map(drop)
    }

    /// SUBSCRIBE.
    pub async fn subscribe(&mut self, mailbox: &str) -> Result<()> {
        let mailbox = mailbox_name(mailbox)?;
        self.run_simple(CommandBody::Subscribe { mailbox })
            .await
            .map(drop)
    }

    /// UNSUBSCRIBE.
    pub async fn unsubscribe(&mut self, mailbox: &str) -> Result<()> {
        let mailbox = mailbox_name(mailbox)?;
        self.run_simple(CommandBody::Unsubscribe { mailbox })
            .await
            .map(drop)
    }

    /// APPEND one message; returns APPENDUID when the server sends it.
    /// The message goes as a LITERAL+ literal when advertised (LITERAL-
    /// up to 4096 bytes), else as a synchronizing literal after `+`; as
    /// `~{n}` literal8 when it holds NUL bytes.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &[Flag],
        internaldate: Option<DateTime>,
        message: &[u8],
    ) -> Result<Option<AppendUid>> {
        let mailbox = mailbox_name(mailbox)?;
        let c = self
            .run_simple(CommandBody::Append {
                mailbox,
                messages: vec![AppendMessage {
                    flags: flags.to_vec(),
                    date: internaldate,
                    data: message.to_vec(),
                    binary: message.contains(&0),
                }],
            })
            .await?;
        Ok(match c.code {
            Some(ResponseCode::AppendUid { uid_validity, uids }) => {
                first_uid(&uids).map(|uid| AppendUid {
                    uidvalidity: uid_validity,
                    uid,
                })
            }
            _ => None,
        })
    }

    /// UID FETCH `set` `items` (e.g. `(UID FLAGS MODSEQ BODY.PEEK[])`,
    /// optionally followed by modifiers like `(CHANGEDSINCE 7)`), keeping
    /// all records in memory up to
    /// [`crate::ClientOptions::max_buffered_fetch_bytes`]. FETCH responses
    /// without UID or with a UID outside `set` (another session's flag
    /// changes) go to the unsolicited queue; several responses for one UID
    /// are merged.
    pub async fn uid_fetch(&mut self, set: &SequenceSet, items: &str) -> Result<Vec<FetchRecord>> {
        let (attrs, modifiers) = parse_fetch_items(items)?;
        let mut col = FetchCollector::new(
            self.opts.max_buffered_fetch_bytes,
            Some(UidFilter::new(set)),
        );
        self.run(
            CommandBody::Fetch {
                uid: true,
                set: set.clone(),
                attrs,
                modifiers,
            },
            &mut |r| match r {
                Response::Data(Data::Fetch { seq, items }) => col
                    .offer(seq, items)
                    .map(|items| Response::Data(Data::Fetch { seq, items })),
                other => Some(other),
            },
        )
        .await?;
        col.finish()
    }

    /// UID FETCH calling `each` once per FETCH response with a UID in
    /// `set`, as it arrives, so only one message is held at a time. Returns the number
    /// of calls. (A server may split one message over several responses;
    /// each is a call.)
    pub async fn uid_fetch_each<F>(
        &mut self,
        set: &SequenceSet,
        items: &str,
        mut each: F,
    ) -> Result<usize>
    where
        F: FnMut(FetchRecord) + Send,
    {
        let (attrs, modifiers) = parse_fetch_items(items)?;
        let filter = UidFilter::new(set);
        let mut calls = 0usize;
        self.run(
            CommandBody::Fetch {
                uid: true,
                set: set.clone(),
                attrs,
                modifiers,
            },
            &mut |r| match r {
                Response::Data(Data::Fetch { seq, items })
                    if uid_of(&items).is_some_and(|u| filter.contains(u)) =>
                {
                    let mut rec = FetchRecord {
                        seq,
                        ..FetchRecord::default()
                    };
                    rec.absorb(items);
                    calls += 1;
                    each(rec);
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        Ok(calls)
    }

    /// UID STORE `set` `op` `flags`, where `op` is `FLAGS`, `+FLAGS` or
    /// `-FLAGS` with optional `.SILENT`; with `unchanged_since`, the
    /// CONDSTORE `(UNCHANGEDSINCE n)` modifier.
    pub async fn uid_store(
        &mut self,
        set: &SequenceSet,
        op: &str,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome> {
        let (mode, silent) = parse_store_op(op)?;
        let mut col = FetchCollector::new(
            self.opts.max_buffered_fetch_bytes,
            Some(UidFilter::new(set)),
        );
        let c = self
            .run(
                CommandBody::Store {
                    uid: true,
                    set: set.clone(),
                    unchanged_since,
                    mode,
                    silent,
                    flags: flags.to_vec(),
                },
                &mut |r| match r {
                    Response::Data(Data::Fetch { seq, items }) => col
                        .offer(seq, items)
                        .map(|items| Response::Data(Data::Fetch { seq, items })),
                    other => Some(other),
                },
            )
            .await?;
        let modified = match &c.code {
            Some(ResponseCode::Modified(set)) => expand_set(set, self.opts.max_expanded_uids)?,
            _ => Vec::new(),
        };
        Ok(StoreOutcome {
            fetched: col.finish()?,
            modified,
        })
    }

    /// UID SEARCH with criteria as text (`UNSEEN`, `CHARSET UTF-8 SUBJECT
    /// "x"`, `MODSEQ 5`, ...); returns the UIDs (from `* SEARCH` or, for
    /// IMAP4rev2 servers, `* ESEARCH`).
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let (charset, keys) = parse_search(criteria)?;
        self.uid_search_keys(charset, keys).await
    }

    /// UID SEARCH with typed keys.
    pub async fn uid_search_keys(
        &mut self,
        charset: Option<String>,
        criteria: Vec<SearchKey>,
    ) -> Result<Vec<u32>> {
        if criteria.is_empty() {
            return Err(Error::InvalidRequest("SEARCH needs a criterion".into()));
        }
        let max_uids = self.opts.max_expanded_uids;
        let mut uids: Vec<u32> = Vec::new();
        let mut failure = None;
        self.run(
            CommandBody::Search {
                uid: true,
                charset,
                criteria,
                return_opts: None,
            },
            &mut |r| match r {
                Response::Data(Data::Search { ids, .. }) => {
                    if uids.len().saturating_add(ids.len()) > max_uids {
                        failure = Some(Error::Limit(format!(
                            "SEARCH returned more than {max_uids} UIDs"
                        )));
                    } else {
                        uids.extend(ids);
                    }
                    None
                }
                Response::Data(Data::ESearch { all, .. }) => {
                    if let Some(all) = all {
                        match expand_set(&all, max_uids.saturating_sub(uids.len())) {
                            Ok(v) => uids.extend(v),
                            Err(e) => failure = Some(e),
                        }
                    }
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(uids),
        }
    }

    /// EXPUNGE.
    pub async fn expunge(&mut self) -> Result<Expunged> {
        self.expunge_like(CommandBody::Expunge).await
    }

    /// UID EXPUNGE `set` (UIDPLUS).
    pub async fn uid_expunge(&mut self, set: &SequenceSet) -> Result<Expunged> {
        self.expunge_like(CommandBody::UidExpunge { uids: set.clone() })
            .await
    }

    async fn expunge_like(&mut self, body: CommandBody) -> Result<Expunged> {
        let max_uids = self.opts.max_expanded_uids;
        let mut out = Expunged::default();
        let mut failure = None;
        self.run(body, &mut |r| match r {
            Response::Data(Data::Expunge(n)) => {
                if out.seqs.len() < max_uids {
                    out.seqs.push(n);
                } else {
                    failure = Some(Error::Limit(format!(
                        "more than {max_uids} EXPUNGE responses"
                    )));
                }
                None
            }
            Response::Data(Data::Vanished {
                earlier: false,
                uids,
            }) => {
                match expand_set(&uids, max_uids.saturating_sub(out.vanished.len())) {
                    Ok(v) => out.vanished.extend(v),
                    Err(e) => failure = Some(e),
                }
                None
            }
            other => Some(other),
        })
        .await?;
        if let Some(e) = failure {
            return Err(e);
        }
        out.vanished.sort_unstable();
        Ok(out)
    }

    /// UID COPY `set` `mailbox`; returns COPYUID when sent.
    pub async fn uid_copy(&mut self, set: &SequenceSet, mailbox: &str) -> Result<Option<CopyUid>> {
        let mailbox = mailbox_name(mailbox)?;
        self.copy_like(CommandBody::Copy {
            uid: true,
            set: set.clone(),
            mailbox,
        })
        .await
    }

    /// UID MOVE `set` `mailbox` (RFC 6851); returns COPYUID when sent. The
    /// EXPUNGE / VANISHED responses go to the unsolicited queue (the
    /// tracked message count follows them).
    pub async fn uid_move(&mut self, set: &SequenceSet, mailbox: &str) -> Result<Option<CopyUid>> {
        let mailbox = mailbox_name(mailbox)?;
        self.copy_like(CommandBody::Move {
            uid: true,
            set: set.clone(),
            mailbox,
        })
        .await
    }

    async fn copy_like(&mut self, body: CommandBody) -> Result<Option<CopyUid>> {
        let mut code = None;
        let c = self
            .run(body, &mut |r| match r {
                Response::Status {
                    tag: None,
                    kind: StatusKind::Ok,
                    code: Some(c @ ResponseCode::CopyUid { .. }),
                    ..
                } => {
                    code = Some(c);
                    None
                }
                other => Some(other),
            })
            .await?;
        let code = match c.code {
            Some(c @ ResponseCode::CopyUid { .. }) => Some(c),
            _ => code,
        };
        let Some(ResponseCode::CopyUid {
            uid_validity,
            source,
            dest,
        }) = code
        else {
            return Ok(None);
        };
        let source = expand_set(&source, self.opts.max_expanded_uids)?;
        let dest = expand_set(&dest, self.opts.max_expanded_uids)?;
        if source.len() != dest.len() {
            return Err(Error::Protocol(format!(
                "COPYUID names {} source and {} destination UIDs",
                source.len(),
                dest.len()
            )));
        }
        Ok(Some(CopyUid {
            uidvalidity: uid_validity,
            source,
            dest,
        }))
    }

    /// NOOP; returns every unsolicited response received since the last
    /// call that drained the queue, this NOOP's included.
    pub async fn noop(&mut self) -> Result<Vec<Response>> {
        self.run_simple(CommandBody::Noop).await?;
        Ok(self.take_unsolicited())
    }

    /// GETQUOTAROOT (RFC 9208).
    pub async fn getquotaroot(&mut self, mailbox: &str) -> Result<QuotaRoots> {
        let mbox = mailbox_name(mailbox)?;
        let mut out = QuotaRoots::default();
        self.run(
            CommandBody::GetQuotaRoot { mailbox: mbox },
            &mut |r| match r {
                Response::Data(Data::QuotaRoot { roots, .. }) => {
                    out.roots.extend(roots);
                    None
                }
                Response::Data(Data::Quota { root, resources }) => {
                    out.quotas.push(Quota { root, resources });
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        Ok(out)
    }

    /// GETQUOTA `root` (RFC 9208).
    pub async fn getquota(&mut self, root: &str) -> Result<Quota> {
        let mut found = None;
        self.run(
            CommandBody::GetQuota {
                root: root.to_owned(),
            },
            &mut |r| match r {
                Response::Data(Data::Quota { root, resources }) if found.is_none() => {
                    found = Some(Quota { root, resources });
                    None
                }
                other => Some(other),
            },
        )
        .await?;
        found.ok_or_else(|| Error::Protocol(format!("GETQUOTA {root:?} without QUOTA data")))
    }

    /// ID (RFC 2971) with our field/value pairs (`None` sends `ID NIL`);
    /// returns the server's (`None` for `ID NIL`).
    pub async fn id(
        &mut self,
        params: Option<&[(&str, Option<&str>)]>,
    ) -> Result<Option<Vec<(String, Option<String>)>>> {
        let params = params.map(|p| {
            p.iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                .collect()
        });
        let mut server = None;
        self.run(CommandBody::Id { params }, &mut |r| match r {
            Response::Data(Data::Id(p)) => {
                server = Some(p);
                None
            }
            other => Some(other),
        })
        .await?;
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(server.flatten().map(|p| {
            p.iter()
                .map(|(k, v)| (lossy(k), v.as_deref().map(lossy)))
                .collect()
        }))
    }

    /// NAMESPACE.
    pub async fn namespace(&mut self) -> Result<Namespaces> {
        let mut found = None;
        self.run(CommandBody::Namespace, &mut |r| match r {
            Response::Data(Data::Namespace {
                personal,
                other,
                shared,
            }) => {
                found = Some(Namespaces {
                    personal,
                    other,
                    shared,
                });
                None
            }
            other => Some(other),
        })
        .await?;
        found.ok_or_else(|| Error::Protocol("NAMESPACE without NAMESPACE data".into()))
    }

    /// STARTTLS, then the TLS handshake (verifying `server_name` with
    /// `config`) and a fresh CAPABILITY. Bytes the server sent after its
    /// OK in plaintext are refused as an injection attempt.
    pub async fn starttls(
        &mut self,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<()> {
        let name = crate::client::server_name(server_name)?;
        if self.is_tls() {
            return Err(Error::InvalidRequest("TLS is already active".into()));
        }
        if !self.has_capability("STARTTLS") {
            return Err(Error::MissingCapability("STARTTLS".into()));
        }
        self.run_simple(CommandBody::StartTls).await?;
        let injected = self.transport.take_pending_input();
        if !injected.is_empty() {
            return Err(self.fatal(Error::Protocol(format!(
                "{} plaintext bytes followed the STARTTLS OK: {}",
                injected.len(),
                crate::error::escape_bytes(&injected)
            ))));
        }
        self.transport
            .begin("TLS handshake", self.opts.connect_timeout);
        if let Err(e) = self.transport.start_tls(name, config).await {
            return Err(self.fatal(e));
        }
        // Capabilities from before TLS must not be trusted.
        self.capabilities.clear();
        self.refresh_capabilities().await?;
        Ok(())
    }

    /// COMPRESS DEFLATE (RFC 4978): from the tagged OK on, both directions
    /// are compressed.
    pub async fn compress(&mut self) -> Result<()> {
        if self.is_compressed() {
            return Err(Error::InvalidRequest("COMPRESS is already active".into()));
        }
        if !self.has_capability("COMPRESS=DEFLATE") {
            return Err(Error::MissingCapability("COMPRESS=DEFLATE".into()));
        }
        self.run_simple(CommandBody::Compress {
            mechanism: "DEFLATE".into(),
        })
        .await?;
        self.transport.start_deflate();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_imap_proto::{FetchAttr, Section};

    #[test]
    fn fetch_items_parse_with_modifiers() {
        let (attrs, mods) = parse_fetch_items("(UID BODY.PEEK[]) (CHANGEDSINCE 5)").unwrap();
        assert_eq!(
            attrs,
            FetchAttrs::List(vec![
                FetchAttr::Uid,
                FetchAttr::BodySection {
                    peek: true,
                    section: Section::default(),
                    partial: None
                }
            ])
        );
        assert_eq!(mods.changed_since, Some(5));
        assert!(matches!(
            parse_fetch_items("(UID BOGUS)"),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            parse_fetch_items("FLAGS\r\nA1 DELETE INBOX"),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn store_ops() {
        assert_eq!(
            parse_store_op("+FLAGS.SILENT").unwrap(),
            (StoreMode::Add, true)
        );
        assert_eq!(
            parse_store_op("-flags").unwrap(),
            (StoreMode::Remove, false)
        );
        assert_eq!(
            parse_store_op("FLAGS").unwrap(),
            (StoreMode::Replace, false)
        );
        assert!(parse_store_op("+FLAGS.LOUD").is_err());
        assert!(parse_store_op("").is_err());
    }

    #[test]
    fn search_criteria_parse() {
        let (cs, keys) = parse_search("CHARSET UTF-8 UNSEEN SUBJECT \"hi\"").unwrap();
        assert_eq!(cs.as_deref(), Some("UTF-8"));
        assert_eq!(
            keys,
            vec![SearchKey::Unseen, SearchKey::Subject(b"hi".to_vec())]
        );
        assert!(parse_search("RETURN (ALL) UNSEEN").is_err());
        assert!(parse_search("").is_err());
    }

    #[test]
    fn uid_filter_matches_the_set() {
        let f = UidFilter::new(&"3:5,9,20:*".parse().unwrap());
        for (uid, want) in [(1, false), (3, true), (5, true), (6, false), (9, true)] {
            assert_eq!(f.contains(uid), want, "{uid}");
        }
        assert!(f.contains(20) && f.contains(u32::MAX) && !f.contains(19));
        let mut c = FetchCollector::new(10_000, Some(f));
        assert!(c.offer(1, vec![FetchItem::Uid(7)]).is_some());
        assert!(c.offer(1, vec![FetchItem::Uid(9)]).is_none());
        assert_eq!(c.finish().unwrap().len(), 1);
    }

    #[test]
    fn collector_merges_and_bounds() {
        let mut c = FetchCollector::new(10_000, None);
        assert!(c.offer(1, vec![FetchItem::Flags(vec![])]).is_some());
        assert!(
            c.offer(1, vec![FetchItem::Uid(7), FetchItem::ModSeq(3)])
                .is_none()
        );
        assert!(
            c.offer(1, vec![FetchItem::Uid(7), FetchItem::Rfc822Size(9)])
                .is_none()
        );
        let recs = c.finish().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].uid, recs[0].modseq, recs[0].rfc822_size),
            (7, Some(3), Some(9))
        );

        let mut c = FetchCollector::new(1000, None);
        let big = FetchItem::Rfc822(Some(vec![b'x'; 2000]));
        assert!(c.offer(1, vec![FetchItem::Uid(1), big]).is_none());
        assert!(c.offer(2, vec![FetchItem::Uid(2)]).is_none());
        assert!(matches!(c.finish(), Err(Error::Limit(_))));
    }
}
