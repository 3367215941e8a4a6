//! Scrub: walk a slot and report every inconsistency, through the same
//! verification code the server reads with (docs/storage.md, "Scrub").
//!
//! A finding names the user, and where known the mailbox, UID and GUID, so an
//! operator can act on it (for example rebuild that user from a replica).
//! Unreferenced message files are leftovers of interrupted writes, not
//! damage: they are listed as `Garbage` and removed with `repair`.

use crate::blobs::Read;
use crate::guid::Guid;
use crate::slot::Slot;
use crate::user::{
    DbContext, Location, User, content_crc, mailbox_crc, mailbox_from_row, message_crc, meta_int,
};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The database itself is damaged (SQLite's `quick_check`) or unreadable.
    Database,
    /// A record's checksum does not match its contents.
    RecordChecksum,
    /// A record holds values that cannot be valid.
    BadRecord,
    /// A referenced message file does not exist.
    MissingFile,
    /// A message file's bytes do not hash to its GUID, or its size is wrong.
    CorruptFile,
    /// A message references a GUID without a content record.
    MissingContent,
    /// A mailbox's UIDNEXT is not above every UID in it.
    Uid,
    /// The quota counters disagree with the messages.
    Quota,
    /// A user directory or account is missing its counterpart.
    Orphan,
    /// An unreferenced message file (an interrupted write). Not damage.
    Garbage,
}

impl Kind {
    /// Whether this kind of finding means the slot is not clean.
    pub fn is_damage(self) -> bool {
        self != Kind::Garbage
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    pub kind: Kind,
    pub detail: String,
}

impl Finding {
    pub(crate) fn new(user: &str, kind: Kind, detail: String) -> Finding {
        Finding {
            user: user.to_string(),
            mailbox: None,
            uid: None,
            guid: None,
            kind,
            detail,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if !self.user.is_empty() {
            write!(f, " user={}", self.user)?;
        }
        if let Some(m) = &self.mailbox {
            write!(f, " mailbox={m:?}")?;
        }
        if let Some(u) = self.uid {
            write!(f, " uid={u}")?;
        }
        if let Some(g) = &self.guid {
            write!(f, " guid={g}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The result of a scrub.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub users: u64,
    pub messages: u64,
    pub bytes_verified: u64,
    pub findings: Vec<Finding>,
    /// Garbage files removed (with `repair`).
    pub removed: u64,
}

impl Report {
    pub(crate) fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// No damage found (garbage does not count).
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| !f.kind.is_damage())
    }

    /// The findings that are damage.
    pub fn damage(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_damage())
    }
}

pub(crate) fn quick_check(conn: &Connection, path: &Path, user: &str, report: &mut Report) {
    let result: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match result {
        Ok(lines) if lines == ["ok"] => {}
        Ok(lines) => report.push(Finding::new(
            user,
            Kind::Database,
            format!("{}: {}", path.display(), lines.join("; ")),
        )),
        Err(e) => report.push(Finding::new(
            user,
            Kind::Database,
            format!("{}: {e}", path.display()),
        )),
    }
}

pub(crate) fn scrub_slot(slot: &Slot, repair: bool) -> Report {
    let mut report = Report::default();
    slot.catalog_check(&mut report);
    let accounts = match slot.accounts() {
        Ok(a) => a,
        Err(e) => {
            report.push(Finding::new(
                "",
                Kind::Database,
                format!("cannot list accounts: {e}"),
            ));
            Vec::new()
        }
    };
    let mut known_dirs = HashSet::new();
    for account in &accounts {
        known_dirs.insert(account.user_id.clone());
        report.users += 1;
        match slot.user(&account.name) {
            Ok(user) => {
                if let Err(e) = user.scrub_into(&mut report, repair) {
                    report.push(Finding::new(&account.name, Kind::Database, e.to_string()));
                }
            }
            Err(e) => report.push(Finding::new(
                &account.name,
                Kind::Database,
                format!("cannot open: {e}"),
            )),
        }
    }
    if let Ok(entries) = std::fs::read_dir(slot.root().join("users")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if known_dirs.contains(&name) {
                continue;
            }
            let leftover = name.ends_with(crate::slot::STAGING_SUFFIX)
                || name.ends_with(crate::slot::DELETED_SUFFIX);
            if leftover {
                // An interrupted create_user or delete_user: never visible.
                if repair {
                    match std::fs::remove_dir_all(entry.path()) {
                        Ok(()) => report.removed += 1,
                        Err(e) => report.push(Finding::new(
                            "",
                            Kind::Garbage,
                            format!("cannot remove {name}: {e}"),
                        )),
                    }
                } else {
                    report.push(Finding::new(
                        "",
                        Kind::Garbage,
                        format!("leftover user directory {name}"),
                    ));
                }
            } else {
                report.push(Finding::new(
                    "",
                    Kind::Orphan,
                    format!("user directory {name} has no account"),
                ));
            }
        }
    }
    report
}

/// Phase 2 of [`scrub_user`]: read every message file of `contents` (the
/// content records phase 1 found) and verify it. A file found missing is
/// reported only if its content record still exists: on a running slot an
/// expunge between the two phases drops the record and unlinks the file,
/// which is not damage (run D of docs/reliability.md saw that false
/// report).
fn check_files(
    user: &User,
    contents: &BTreeMap<Guid, (Option<u64>, Location)>,
    report: &mut Report,
) -> crate::Result<()> {
    let name = user.name().to_string();
    for (guid, (size, location)) in contents {
        let read = match (size, location) {
            // Follows a body that a compaction moved meanwhile.
            (Some(size), _) => user.read_stored(guid, *size)?,
            // Without a trustworthy size, a loose file is checked against
            // its GUID alone: a damaged record must not be reported as a
            // damaged file. A packed body cannot be cut out without it.
            (None, Location::Loose) => {
                let size = std::fs::metadata(user.blobs().path(guid)).map_or(0, |m| m.len());
                user.blobs().read(guid, size)?
            }
            (None, Location::Packed { .. }) => continue,
        };
        let whose = match location {
            Location::Loose => "message file".to_string(),
            Location::Packed { pack, .. } => format!("pack {pack}"),
        };
        match read {
            Read::Good(b) => report.bytes_verified += b.len() as u64,
            Read::Missing => {
                // Expunged since phase 1 (record and file gone): not damage.
                let referenced = user.with_conn(|c, p| {
                    c.prepare_cached("SELECT 1 FROM contents WHERE guid = ?1")
                        .db(p)?
                        .exists([&guid.0[..]])
                        .db(p)
                })?;
                if referenced {
                    report.push(Finding {
                        guid: Some(guid.to_hex()),
                        ..Finding::new(&name, Kind::MissingFile, format!("{whose} is missing"))
                    });
                }
            }
            Read::Bad(why) => report.push(Finding {
                guid: Some(guid.to_hex()),
                ..Finding::new(&name, Kind::CorruptFile, why)
            }),
        }
    }
    Ok(())
}

pub(crate) fn scrub_user(user: &User, report: &mut Report, repair: bool) -> crate::Result<()> {
    let name = user.name().to_string();
    // Phase 1, under the user's lock: records. A content record that fails
    // its checksum gives no size to hold its file to (`None`).
    let contents: BTreeMap<Guid, (Option<u64>, Location)> = user.with_conn(|c, p| {
        quick_check(c, p, &name, report);
        let mut mailbox_names = BTreeMap::new();
        let mut stmt = c
            .prepare("SELECT id, mailbox_id, name, uidvalidity, uidnext, highestmodseq, special_use, keywords, recent_uid, modseq, crc FROM mailboxes")
            .db(p)?;
        for row in stmt.query_map([], mailbox_from_row).db(p)? {
            let (m, crc) = row.db(p)?;
            if mailbox_crc(&m) != crc {
                report.push(Finding {
                    mailbox: Some(m.name.clone()),
                    ..Finding::new(&name, Kind::RecordChecksum, "mailbox record fails its checksum".into())
                });
            }
            mailbox_names.insert(m.id, (m.name.clone(), m.uidnext));
        }
        drop(stmt);
        let mut contents = BTreeMap::new();
        let mut stmt = c
            .prepare("SELECT guid, size, info, crc, pack, pack_offset FROM contents")
            .db(p)?;
        let mut rows = stmt.query([]).db(p)?;
        while let Some(r) = rows.next().db(p)? {
            let raw: Vec<u8> = r.get(0).db(p)?;
            let size = r.get::<_, i64>(1).db(p)? as u64;
            let info: Vec<u8> = r.get(2).db(p)?;
            let crc: i64 = r.get(3).db(p)?;
            let location = Location::from_columns(r.get(4).db(p)?, r.get(5).db(p)?);
            let Some(guid) = Guid::from_slice(&raw) else {
                report.push(Finding::new(&name, Kind::BadRecord, format!("content record with a {}-byte GUID", raw.len())));
                continue;
            };
            if content_crc(&guid, size, &info) != crc {
                report.push(Finding {
                    guid: Some(guid.to_hex()),
                    ..Finding::new(&name, Kind::RecordChecksum, "content record fails its checksum".into())
                });
                contents.insert(guid, (None, location));
                continue;
            }
            if let Err(e) = slotmail_mime::MessageInfo::from_bytes(&info) {
                report.push(Finding {
                    guid: Some(guid.to_hex()),
                    ..Finding::new(&name, Kind::BadRecord, format!("parsed facts do not decode: {e}"))
                });
            }
            contents.insert(guid, (Some(size), location));
        }
        drop(rows);
        drop(stmt);
        let (mut bytes, mut count) = (0u64, 0u64);
        let mut stmt = c
            .prepare("SELECT mailbox, uid, guid, size, internaldate, tz_offset, flags, keywords, modseq, crc FROM messages")
            .db(p)?;
        let mut rows = stmt.query([]).db(p)?;
        while let Some(r) = rows.next().db(p)? {
            let mailbox: i64 = r.get(0).db(p)?;
            // message_from_row reads columns from 0; shift by reading a sub-row view.
            let (meta, crc) = message_from_row_offset(r).db(p)?;
            let (mbox_name, uidnext) = mailbox_names
                .get(&mailbox)
                .cloned()
                .unwrap_or_else(|| (format!("(missing mailbox {mailbox})"), u32::MAX));
            let meta = match meta {
                Ok(m) => m,
                Err(why) => {
                    report.push(Finding {
                        mailbox: Some(mbox_name),
                        ..Finding::new(&name, Kind::BadRecord, why)
                    });
                    continue;
                }
            };
            count += 1;
            bytes += meta.size;
            let at = |kind, detail: String| Finding {
                mailbox: Some(mbox_name.clone()),
                uid: Some(meta.uid),
                guid: Some(meta.guid.to_hex()),
                ..Finding::new(&name, kind, detail)
            };
            if message_crc(mailbox, &meta) != crc {
                report.push(at(Kind::RecordChecksum, "message record fails its checksum".into()));
            }
            if meta.uid >= uidnext {
                report.push(at(Kind::Uid, format!("UID is not below UIDNEXT {uidnext}")));
            }
            if !contents.contains_key(&meta.guid) {
                report.push(at(Kind::MissingContent, "no content record for this GUID".into()));
            }
        }
        drop(rows);
        drop(stmt);
        let used_bytes = meta_int(c, p, "quota_used_bytes")?;
        let used_messages = meta_int(c, p, "quota_used_messages")?;
        if used_bytes != bytes || used_messages != count {
            report.push(Finding::new(
                &name,
                Kind::Quota,
                format!("counters say {used_messages} messages / {used_bytes} bytes, messages sum to {count} / {bytes}"),
            ));
        }
        report.messages += count;
        Ok(contents)
    })?;
    // Phase 2, without the lock: files and packs.
    check_files(user, &contents, report)?;
    let (present, mut strays) = user.blobs().list()?;
    for guid in present {
        if !matches!(contents.get(&guid), Some((_, Location::Loose))) {
            if repair {
                user.blobs().remove(&guid);
                report.removed += 1;
            } else {
                report.push(Finding {
                    guid: Some(guid.to_hex()),
                    ..Finding::new(&name, Kind::Garbage, "unreferenced message file".into())
                });
            }
        }
    }
    let referenced: std::collections::BTreeSet<&str> = contents
        .values()
        .filter_map(|(_, l)| match l {
            Location::Packed { pack, .. } => Some(pack.as_str()),
            Location::Loose => None,
        })
        .collect();
    let (packs, pack_strays) = user.blobs().list_packs()?;
    strays.extend(pack_strays);
    for pack in packs {
        if !referenced.contains(pack.as_str()) {
            if repair {
                user.blobs().remove_pack(&pack);
                report.removed += 1;
            } else {
                report.push(Finding::new(
                    &name,
                    Kind::Garbage,
                    format!("unreferenced pack file {pack}"),
                ));
            }
        }
    }
    for stray in strays {
        report.push(Finding::new(
            &name,
            Kind::Garbage,
            format!("stray file {}", stray.display()),
        ));
    }
    Ok(())
}

/// `message_from_row` over a row whose first column is the mailbox.
fn message_from_row_offset(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(Result<crate::MessageMeta, String>, i64)> {
    message_from_row_at(r, 1)
}

pub(crate) use crate::user::message_from_row_at;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flags, Options};

    /// Run D of docs/reliability.md: the scrub of a running master
    /// reported a message file "missing" that an expunge had removed
    /// between the scrub's two phases (records under the lock, then files
    /// without it). A file is missing only while its content record is
    /// still there.
    #[test]
    fn regression_scrub_reported_a_file_expunged_while_it_ran_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::open(dir.path(), Options::default()).unwrap();
        slot.create_user("sam", "pw", false).unwrap();
        let user = slot.user("sam").unwrap();
        let inbox = user.mailbox("INBOX").unwrap().id;
        let kept = user
            .append(
                inbox,
                b"Subject: kept\r\n\r\nkept\r\n",
                &Flags::empty(),
                None,
            )
            .unwrap();
        let deleted = Flags::from_names(["\\Deleted"]).unwrap();
        let gone = user
            .append(inbox, b"Subject: gone\r\n\r\ngone\r\n", &deleted, None)
            .unwrap();
        // Phase 1 as it saw both messages.
        let contents: BTreeMap<Guid, (Option<u64>, Location)> = [
            (kept.guid, (None, Location::Loose)),
            (gone.guid, (None, Location::Loose)),
        ]
        .into_iter()
        .collect();
        // Then, before phase 2: `gone` expunged (record and file), and the
        // file of `kept` lost (damage).
        assert_eq!(
            user.expunge(inbox, Some(&[gone.uid])).unwrap(),
            vec![gone.uid]
        );
        assert!(!user.blobs().path(&gone.guid).exists());
        std::fs::remove_file(user.blobs().path(&kept.guid)).unwrap();
        let mut report = Report::default();
        check_files(&user, &contents, &mut report).unwrap();
        let missing: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.kind, f.guid.clone()))
            .collect();
        assert_eq!(missing, vec![(Kind::MissingFile, Some(kept.guid.to_hex()))]);
    }
}
