//! Collecting one user's view of one slot over IMAP: log in to the slot
//! directly as the user by admin authorization (AUTHENTICATE PLAIN with an
//! authorization identity), then LIST, LSUB, GETQUOTAROOT, and per
//! mailbox EXAMINE (CONDSTORE) and UID FETCH of every message's metadata;
//! at the full level also every message's bytes, hashed as they arrive and
//! never kept.

use crate::progress::{Progress, RateLimiter};
use crate::view::{Body, MailboxState, MailboxView, MessageView, QuotaFigure, UserView};
use slotmail_imap_client::{
    Client, ClientOptions, Error as ImapError, Flag, ListCommand, ListReturnOption, MailboxAttr,
    ResponseCode, SequenceSet,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Most messages whose bytes one UID FETCH asks for.
pub const FETCH_CHUNK_MESSAGES_MAX: usize = 500;
/// Most bytes (by RFC822.SIZE) one UID FETCH of bodies asks for; a single
/// larger message is fetched alone.
pub const FETCH_CHUNK_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// At the quick level, the bytes of this many messages per mailbox (those
/// with the highest UIDs, the newest) are read and compared: a cheap probe
/// for a replica serving empty or damaged bodies.
pub const QUICK_SAMPLE_MESSAGES: usize = 4;
/// Most mailboxes of one user the check reads.
pub const MAILBOXES_PER_USER_MAX: usize = 10_000;

/// How much of each message is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Metadata of every message, bytes of the newest few per mailbox.
    Quick,
    /// Metadata and bytes of every message.
    Full,
}

/// Why a view could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("IMAP {address}: {source}")]
    Imap {
        address: SocketAddr,
        #[source]
        source: ImapError,
    },
    #[error("IMAP {address}: user has more than {MAILBOXES_PER_USER_MAX} mailboxes")]
    TooManyMailboxes { address: SocketAddr },
}

impl CollectError {
    /// The login was refused (the check account is not (yet) on the slot,
    /// or its password differs).
    pub fn is_auth_refused(&self) -> bool {
        matches!(
            self,
            CollectError::Imap {
                source: ImapError::No { .. },
                ..
            }
        )
    }
}

/// Credentials of the check's admin account.
#[derive(Clone)]
pub struct Credentials {
    pub account: String,
    pub password: String,
}

/// STARTTLS before logging in, trusting `config`'s roots; the slot's
/// name (`SLOT.CLUSTER`, as the slot calls itself) is the server name.
#[derive(Clone, Debug)]
pub struct Tls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
}

/// Why the cluster's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no certificate", path.display())]
    Empty { path: std::path::PathBuf },
    #[error("{}: {detail}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        detail: String,
    },
}

impl Tls {
    /// Trust exactly the certificates in the PEM file `cert` (the cluster's
    /// slot certificate, `[slot] tls_cert` of cluster.toml).
    pub fn trusting(cert: &std::path::Path) -> Result<Tls, TlsError> {
        let read = |source| TlsError::Read {
            path: cert.to_path_buf(),
            source,
        };
        let pem = std::fs::read(cert).map_err(read)?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        if certs.is_empty() {
            return Err(TlsError::Empty {
                path: cert.to_path_buf(),
            });
        }
        let invalid = |detail: String| TlsError::Invalid {
            path: cert.to_path_buf(),
            detail,
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| invalid(e.to_string()))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            config: std::sync::Arc::new(config),
        })
    }
}

/// Where and how to reach one slot's IMAP listener.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub address: SocketAddr,
    /// The slot's host name (`SLOT.CLUSTER`), the TLS server name.
    pub server_name: &'a str,
    pub tls: Option<&'a Tls>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Log in to `target` as `user` and collect what it shows.
pub async fn collect(
    target: &Target<'_>,
    user: &str,
    credentials: &Credentials,
    level: Level,
    limiter: &RateLimiter,
    progress: &Progress,
) -> Result<UserView, CollectError> {
    let address = target.address;
    let err = |source| CollectError::Imap { address, source };
    let mut client = Client::connect(address, ClientOptions::default())
        .await
        .map_err(err)?;
    if let Some(tls) = target.tls {
        client
            .starttls(target.server_name, tls.config.clone())
            .await
            .map_err(err)?;
    }
    client
        .authenticate_plain(Some(user), &credentials.account, &credentials.password)
        .await
        .map_err(err)?;
    let view = read_user(&mut client, level, limiter, progress)
        .await
        .map_err(|e| match e {
            Inner::Imap(source) => CollectError::Imap { address, source },
            Inner::TooMany => CollectError::TooManyMailboxes { address },
        })?;
    // The view is complete; a failing LOGOUT does not change it.
    let _ = client.logout().await;
    Ok(view)
}

enum Inner {
    Imap(ImapError),
    TooMany,
}

impl From<ImapError> for Inner {
    fn from(e: ImapError) -> Self {
        Inner::Imap(e)
    }
}

/// Attributes that describe a session's view, not the mailbox.
fn is_volatile(attr: &MailboxAttr) -> bool {
    matches!(
        attr,
        MailboxAttr::Marked | MailboxAttr::Unmarked | MailboxAttr::Subscribed
    )
}

async fn read_user(
    client: &mut Client,
    level: Level,
    limiter: &RateLimiter,
    progress: &Progress,
) -> Result<UserView, Inner> {
    let mut view = UserView::default();
    let entries = client
        .list_extended(&ListCommand {
            selection: Vec::new(),
            reference: String::new(),
            patterns: vec!["*".into()],
            return_opts: vec![ListReturnOption::SpecialUse],
        })
        .await?;
    if entries.len() > MAILBOXES_PER_USER_MAX {
        return Err(Inner::TooMany);
    }
    for entry in client.lsub("", "*").await? {
        view.subscriptions.insert(entry.name);
    }
    let roots = client.getquotaroot("INBOX").await?;
    for q in roots.quotas {
        for r in q.resources {
            view.quota.insert(
                format!("{:?} {}", q.root, r.name),
                QuotaFigure {
                    usage: r.usage,
                    limit: r.limit,
                },
            );
        }
    }
    for entry in entries {
        let mut attributes: Vec<String> = entry
            .attributes
            .iter()
            .filter(|a| !is_volatile(a))
            .map(MailboxAttr::as_wire)
            .collect();
        attributes.sort_by_key(|a| a.to_ascii_lowercase());
        let selectable =
            !entry.has(&MailboxAttr::NoSelect) && !entry.has(&MailboxAttr::NonExistent);
        let mut mailbox = MailboxView {
            attributes,
            state: None,
            messages: BTreeMap::new(),
        };
        if selectable {
            read_mailbox(client, &entry.name, &mut mailbox, level, limiter, progress).await?;
        }
        view.mailboxes.insert(entry.name, mailbox);
    }
    Ok(view)
}

async fn read_mailbox(
    client: &mut Client,
    name: &str,
    mailbox: &mut MailboxView,
    level: Level,
    limiter: &RateLimiter,
    progress: &Progress,
) -> Result<(), Inner> {
    let examined = client.examine(name, true).await?;
    mailbox.state = Some(MailboxState {
        uidvalidity: examined.uidvalidity,
        uidnext: examined.uidnext,
        highestmodseq: examined.highestmodseq,
        exists: examined.exists,
    });
    if examined.exists == 0 {
        client.unselect().await?;
        return Ok(());
    }
    let messages = &mut mailbox.messages;
    let mut metadata_bytes = 0u64;
    client
        .uid_fetch_each(
            &SequenceSet::all(),
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE)",
            |rec| {
                let mut flags: Vec<String> = rec
                    .flags
                    .unwrap_or_default()
                    .iter()
                    .filter(|f| **f != Flag::Recent)
                    .map(Flag::to_string)
                    .collect();
                flags.sort_by_key(|f| f.to_ascii_lowercase());
                let bodystructure = rec
                    .bodystructure
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                metadata_bytes += bodystructure.len() as u64 + 64;
                messages.insert(
                    rec.uid,
                    MessageView {
                        flags,
                        internaldate: rec.internaldate.map(|d| d.to_string()).unwrap_or_default(),
                        size: rec.rfc822_size.unwrap_or(0),
                        bodystructure,
                        body: Body::NotRead,
                    },
                );
            },
        )
        .await?;
    limiter.take(metadata_bytes).await;
    let wanted: Vec<(u32, u64)> = match level {
        Level::Full => messages.iter().map(|(u, m)| (*u, m.size)).collect(),
        Level::Quick => messages
            .iter()
            .rev()
            .take(QUICK_SAMPLE_MESSAGES)
            .map(|(u, m)| (*u, m.size))
            .rev()
            .collect(),
    };
    for chunk in chunks(&wanted) {
        read_bodies(client, chunk, messages, limiter, progress).await?;
    }
    progress.messages(messages.len() as u64);
    client.unselect().await?;
    Ok(())
}

/// `wanted` (UID, size) cut into fetches of at most
/// [`FETCH_CHUNK_MESSAGES_MAX`] messages and [`FETCH_CHUNK_BYTES_MAX`]
/// bytes (at least one message each).
fn chunks(wanted: &[(u32, u64)]) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (_, size)) in wanted.iter().enumerate() {
        if i > start
            && (i - start >= FETCH_CHUNK_MESSAGES_MAX || bytes + size > FETCH_CHUNK_BYTES_MAX)
        {
            out.push(&wanted[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < wanted.len() {
        out.push(&wanted[start..]);
    }
    out
}

async fn read_bodies(
    client: &mut Client,
    chunk: &[(u32, u64)],
    messages: &mut BTreeMap<u32, MessageView>,
    limiter: &RateLimiter,
    progress: &Progress,
) -> Result<(), Inner> {
    let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
    let set = SequenceSet::range(first, last).expect("UIDs are non-zero");
    let mut bytes = 0u64;
    let result = client
        .uid_fetch_each(&set, "(UID BODY.PEEK[])", |rec| {
            let Some(m) = messages.get_mut(&rec.uid) else {
                // Appended after the metadata was read: next time.
                return;
            };
            m.body = match rec.message() {
                Some(b) => {
                    bytes += b.len() as u64;
                    Body::of(b)
                }
                None => Body::Unreadable("the server sent no BODY[]".into()),
            };
        })
        .await;
    progress.bytes(bytes);
    limiter.take(bytes).await;
    match result {
        Ok(_) => Ok(()),
        Err(ImapError::No {
            code: Some(ResponseCode::Corruption),
            text,
        }) => {
            // The server left out the messages it found damaged.
            for (uid, _) in chunk {
                if let Some(m) = messages.get_mut(uid)
                    && m.body == Body::NotRead
                {
                    m.body = Body::Unreadable(format!("NO [CORRUPTION] {text}"));
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        assert!(matches!(Tls::trusting(&path), Err(TlsError::Empty { .. })));
        assert!(matches!(
            Tls::trusting(&dir.path().join("absent.pem")),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn chunks_bound_messages_and_bytes() {
        assert!(chunks(&[]).is_empty());
        let small: Vec<(u32, u64)> = (1..=1200).map(|u| (u, 10)).collect();
        let c = chunks(&small);
        assert_eq!(
            c.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let big = [(1, 5 << 20), (2, 5 << 20), (3, 20 << 20), (4, 1)];
        let c = chunks(&big);
        assert_eq!(
            c.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![1, 1, 1, 1]
        );
        let c = chunks(&[(7, 1), (9, 2)]);
        assert_eq!(c, vec![&[(7, 1), (9, 2)][..]]);
    }
}
