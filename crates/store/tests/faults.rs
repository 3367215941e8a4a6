//! Fault injection: ENOSPC and EIO at every step of writing a message file
//! (docs/storage.md, "Durability guarantee": failure returned ⇒ the change is
//! not visible; temporary files are removed; the store stays consistent and
//! serves reads).

use slotmail_store::*;
use std::path::Path;
use std::sync::Arc;

fn msg(tag: &str, n: u32) -> Vec<u8> {
    format!("From: f@example.com\r\nSubject: {tag} {n}\r\n\r\nbody of {tag} {n}\r\n").into_bytes()
}

/// A message whose `msg/<aa>/` directory does not exist yet, so that writing
/// it creates the directory and syncs `msg/` too.
fn msg_in_new_fan(user: &User, tag: &str, n: u32) -> Vec<u8> {
    (0..)
        .map(|v| {
            format!("From: f@example.com\r\nSubject: {tag} {n} v{v}\r\n\r\nbody\r\n").into_bytes()
        })
        .find(|m| {
            !user
                .dir()
                .join("msg")
                .join(&Guid::of(m).to_hex()[..2])
                .exists()
        })
        .unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            out.extend(files_in(&entry.path()));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// Everything visible about a user that an append could change.
#[derive(Debug, PartialEq)]
struct Visible {
    inbox: (MailboxInfo, Vec<MessageMeta>),
    archive: (MailboxInfo, Vec<MessageMeta>),
    status: MailboxStatus,
    quota: Quota,
    modseq: u64,
    /// Message files: exactly the referenced ones.
    files: Vec<String>,
    /// Pack files (a failed batch leaves none).
    packs: Vec<String>,
}

fn visible(user: &User) -> Visible {
    let inbox = user.mailbox("INBOX").unwrap().id;
    let archive = user.mailbox("Archive").unwrap().id;
    Visible {
        inbox: user.snapshot(inbox).unwrap(),
        archive: user.snapshot(archive).unwrap(),
        status: user.status(inbox).unwrap(),
        quota: user.quota().unwrap(),
        modseq: user.modseq().unwrap(),
        files: files_in(&user.dir().join("msg")),
        packs: match user.dir().join("pack") {
            p if p.is_dir() => files_in(&p),
            _ => Vec::new(),
        },
    }
}

fn referenced_files(v: &Visible) -> Vec<String> {
    let mut guids: Vec<String> = v
        .inbox
        .1
        .iter()
        .chain(&v.archive.1)
        .map(|m| m.guid.to_hex())
        .collect();
    guids.sort();
    guids.dedup();
    guids
}

/// The OS error somewhere in the error's source chain.
fn os_error_in(e: &StoreError) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

fn expected_errno(fault: Fault) -> i32 {
    match fault {
        Fault::NoSpace => libc::ENOSPC,
        Fault::SyncFailed | Fault::RenameFailed | Fault::DirSyncFailed => libc::EIO,
    }
}

/// A slot with one user, three messages in INBOX (one copied to Archive),
/// written through the real disk; returns its path.
fn populated_slot(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("slot");
    let slot = Slot::open(&root, Options::default()).unwrap();
    slot.create_user("u", "pw", false).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let archive = user.mailbox("Archive").unwrap().id;
    for n in 1..=3 {
        user.append(
            inbox,
            &msg("base", n),
            &Flags::from_names(["\\Seen"]).unwrap(),
            None,
        )
        .unwrap();
    }
    user.copy(inbox, &[2], archive).unwrap();
    root
}

/// Open the slot on a disk with `fault` armed after `skip` matching
/// operations, append until an append fails, and check the failure.
/// `duplicate` appends content the store already holds (and references).
fn fault_case(fault: Fault, skip: u64, duplicate: bool) {
    let case = format!("{fault:?}, skip {skip}, duplicate {duplicate}");
    let dir = tempfile::tempdir().unwrap();
    let root = populated_slot(dir.path());
    let disk = Arc::new(FaultyDisk::new(fault, skip));
    let slot = Slot::open_with_disk(&root, Options::default(), disk.clone()).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let flags = Flags::from_names(["\\Flagged", "$Fault"]).unwrap();
    let tmp = user.dir().join("tmp");

    let mut failed = None;
    for attempt in 0..6 {
        let bytes = if duplicate {
            msg("base", 1)
        } else {
            msg_in_new_fan(&user, "new", attempt)
        };
        let before = visible(&user);
        match user.append(inbox, &bytes, &flags, None) {
            Ok(done) => {
                assert_eq!(
                    done.uid, before.inbox.0.uidnext,
                    "{case}: append before the fault"
                );
                continue;
            }
            Err(e) => {
                // The error: Io, with the OS error in its chain.
                assert!(
                    matches!(e, StoreError::Io { .. }),
                    "{case}: expected StoreError::Io, got {e:?}"
                );
                assert!(e.is_temporary(), "{case}");
                assert_eq!(os_error_in(&e), Some(expected_errno(fault)), "{case}: {e}");
                if let StoreError::Io { path, .. } = &e {
                    assert!(
                        path.starts_with(user.dir()),
                        "{case}: error names {}",
                        path.display()
                    );
                }
                // Nothing visible changed; no leftover in tmp/ or msg/.
                let after = visible(&user);
                assert_eq!(
                    after, before,
                    "{case}: a failed append changed what is visible"
                );
                assert_eq!(
                    after.files,
                    referenced_files(&after),
                    "{case}: unreferenced message file left in msg/"
                );
                assert!(
                    files_in(&tmp).is_empty(),
                    "{case}: leftover in tmp/: {:?}",
                    files_in(&tmp)
                );
                // Reads still work, the duplicate's shared file included.
                for m in after.inbox.1.iter().chain(&after.archive.1) {
                    user.read_message(&m.guid, m.size).unwrap();
                }
                failed = Some((bytes, before));
                break;
            }
        }
    }
    let (bytes, before) = failed.unwrap_or_else(|| panic!("{case}: the fault never fired"));
    assert!(disk.failures() >= 1, "{case}");

    // After the fault clears, the same append succeeds with the next UID.
    disk.disarm();
    let done = user.append(inbox, &bytes, &flags, None).unwrap();
    assert_eq!(
        done.uid, before.inbox.0.uidnext,
        "{case}: UID after the fault"
    );
    assert!(done.modseq > before.modseq, "{case}");
    let (info, msgs) = user.snapshot(inbox).unwrap();
    assert_eq!(info.uidnext, done.uid + 1, "{case}");
    let last = msgs.last().unwrap();
    assert_eq!(
        (last.uid, last.guid, &last.flags),
        (done.uid, Guid::of(&bytes), &flags),
        "{case}"
    );
    assert_eq!(
        user.read_message(&last.guid, last.size).unwrap(),
        bytes,
        "{case}"
    );
    let quota = user.quota().unwrap();
    assert_eq!(
        quota.used_messages,
        before.quota.used_messages + 1,
        "{case}"
    );
    assert_eq!(
        quota.used_bytes,
        before.quota.used_bytes + bytes.len() as u64,
        "{case}"
    );
    let report = slot.scrub(false);
    assert!(report.is_clean(), "{case}: {:#?}", report.findings);
    assert!(report.findings.is_empty(), "{case}: {:#?}", report.findings);
    drop(user);
    drop(slot);

    // The same after a restart on the real disk.
    let slot = Slot::open(&root, Options::default()).unwrap();
    let user = slot.user("u").unwrap();
    assert_eq!(
        user.snapshot(inbox).unwrap(),
        (info, msgs),
        "{case}: after restart"
    );
    assert!(
        slot.scrub(false).findings.is_empty(),
        "{case}: after restart"
    );
}

#[test]
fn every_disk_fault_fails_the_append_cleanly() {
    for fault in [
        Fault::NoSpace,
        Fault::SyncFailed,
        Fault::RenameFailed,
        Fault::DirSyncFailed,
    ] {
        // skip 0 fails the first matching operation of the first append;
        // DirSyncFailed with skip 1 fails the fsync of msg/ after a new
        // msg/<aa>/ (the second directory sync of the same append).
        for skip in 0..3 {
            fault_case(fault, skip, false);
            fault_case(fault, skip, true);
        }
    }
}

/// Found by the corruption test: an append refused after its file was
/// written (over quota, no such mailbox, damaged mailbox record) left the
/// file in `msg/`, so every refused delivery to an over-quota user filled
/// the disk outside the quota until the next `scrub --repair`.
#[test]
fn refused_append_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = populated_slot(dir.path());
    let slot = Slot::open(&root, Options::default()).unwrap();
    let user = slot.user("u").unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    let check = |what: &str, before: &Visible| {
        let after = visible(&user);
        assert_eq!(&after, before, "{what}: visible state changed");
        assert_eq!(
            after.files,
            referenced_files(&after),
            "{what}: unreferenced file left in msg/"
        );
        let report = slot.scrub(false);
        assert!(report.findings.is_empty(), "{what}: {:#?}", report.findings);
        for m in after.inbox.1.iter().chain(&after.archive.1) {
            user.read_message(&m.guid, m.size).unwrap();
        }
    };

    let before = visible(&user);
    slot.set_quota("u", Some(before.quota.used_bytes + 10), None)
        .unwrap();
    let before = visible(&user);
    for n in 0..3 {
        let r = user.append(inbox, &msg("over quota", n), &Flags::empty(), None);
        assert!(matches!(r, Err(StoreError::OverQuota(_))), "{r:?}");
    }
    check("over the byte quota", &before);
    // Refused content that is already stored: its file stays (it is referenced).
    let r = user.append(inbox, &msg("base", 1), &Flags::empty(), None);
    assert!(matches!(r, Err(StoreError::OverQuota(_))), "{r:?}");
    check("over quota, content already stored", &before);
    slot.set_quota("u", None, Some(before.quota.used_messages))
        .unwrap();
    let before = visible(&user);
    let r = user.append(inbox, &msg("over count", 1), &Flags::empty(), None);
    assert!(matches!(r, Err(StoreError::OverQuota(_))), "{r:?}");
    check("over the message quota", &before);
    slot.set_quota("u", None, None).unwrap();

    let gone = user.create_mailbox("Gone", None).unwrap();
    user.delete_mailbox("Gone").unwrap();
    let before = visible(&user);
    let r = user.append(
        gone.id,
        &msg("to a deleted mailbox", 1),
        &Flags::empty(),
        None,
    );
    assert!(matches!(r, Err(StoreError::NoSuchMailbox(_))), "{r:?}");
    check("append to a deleted mailbox", &before);

    // And an accepted append afterwards is unaffected.
    let done = user
        .append(inbox, &msg("accepted", 1), &Flags::empty(), None)
        .unwrap();
    assert_eq!(done.uid, before.inbox.0.uidnext);
    assert!(slot.scrub(false).findings.is_empty());
}

/// Replication's batched body put (docs/storage.md, "Batch of bodies"):
/// a fault at any step fails the whole batch — no content record, no file
/// left in `tmp/`, `msg/` or `pack/` that nothing references — and the same
/// batch succeeds once the fault clears.
#[test]
fn every_disk_fault_fails_a_body_batch_cleanly() {
    for fault in [
        Fault::NoSpace,
        Fault::SyncFailed,
        Fault::RenameFailed,
        Fault::DirSyncFailed,
    ] {
        // The small-batch path (each file fsynced) fails the same way.
        small_batch_fault_case(fault);
        // A pack is one file write and one rename; two directory fsyncs
        // (the user's directory, as `pack/` is new here, then `pack/`).
        let points = if fault == Fault::DirSyncFailed { 2 } else { 1 };
        for skip in 0..points {
            let case = format!("{fault:?}, skip {skip}");
            let dir = tempfile::tempdir().unwrap();
            let root = populated_slot(dir.path());
            let disk = Arc::new(FaultyDisk::new(fault, skip));
            let slot = Slot::open_with_disk(&root, Options::default(), disk.clone()).unwrap();
            let user = slot.user("u").unwrap();
            let before = visible(&user);
            // Enough bodies for a pack.
            let bodies: Vec<Vec<u8>> = (0..32).map(|n| msg("batch", n)).collect();
            assert!(bodies.len() >= PACK_MIN);
            let batch: Vec<(Guid, &[u8])> =
                bodies.iter().map(|b| (Guid::of(b), b.as_slice())).collect();
            let guids: Vec<Guid> = batch.iter().map(|(g, _)| *g).collect();
            let err = match user.put_bodies(&batch) {
                Err(e) => e,
                Ok(v) => panic!("{case}: the batch succeeded: {v:?}"),
            };
            assert!(matches!(err, StoreError::Io { .. }), "{case}: {err:?}");
            assert_eq!(
                os_error_in(&err),
                Some(expected_errno(fault)),
                "{case}: {err}"
            );
            assert!(disk.failures() >= 1, "{case}");
            let after = visible(&user);
            assert_eq!(
                after, before,
                "{case}: a failed batch changed what is visible"
            );
            assert_eq!(
                after.files,
                referenced_files(&after),
                "{case}: unreferenced message file left in msg/"
            );
            assert!(
                files_in(&user.dir().join("tmp")).is_empty(),
                "{case}: leftover in tmp/"
            );
            assert_eq!(user.missing_guids(&guids).unwrap(), guids, "{case}");

            disk.disarm();
            let verdicts = user.put_bodies(&batch).unwrap();
            assert!(verdicts.iter().all(|v| v.is_ok()), "{case}: {verdicts:?}");
            assert!(user.missing_guids(&guids).unwrap().is_empty(), "{case}");
            for (g, b) in guids.iter().zip(&bodies) {
                assert_eq!(&user.read_message(g, b.len() as u64).unwrap(), b, "{case}");
            }
            assert!(slot.scrub(false).is_clean(), "{case}");
        }
    }
}

/// A batch below `PACK_MIN` (each file made durable on its own):
/// a write or rename fault fails the whole batch and leaves nothing.
fn small_batch_fault_case(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let root = populated_slot(dir.path());
    let disk = Arc::new(FaultyDisk::new(fault, 2));
    let slot = Slot::open_with_disk(&root, Options::default(), disk.clone()).unwrap();
    let user = slot.user("u").unwrap();
    let before = visible(&user);
    let bodies: Vec<Vec<u8>> = (0..PACK_MIN as u32 - 1).map(|n| msg("small", n)).collect();
    let batch: Vec<(Guid, &[u8])> = bodies.iter().map(|b| (Guid::of(b), b.as_slice())).collect();
    let err = user.put_bodies(&batch).unwrap_err();
    assert_eq!(
        os_error_in(&err),
        Some(expected_errno(fault)),
        "{fault:?}: {err}"
    );
    let after = visible(&user);
    assert_eq!(
        after, before,
        "{fault:?}: a failed small batch changed what is visible"
    );
    assert_eq!(
        after.files,
        referenced_files(&after),
        "{fault:?}: leftover in msg/"
    );
    disk.disarm();
    assert!(user.put_bodies(&batch).unwrap().iter().all(|v| v.is_ok()));
    assert!(slot.scrub(false).is_clean());
}
