//! A slot's configuration file (TOML), parsed strictly and validated into the
//! values the rest of the slot takes by value.
//!
//! ```toml
//! version = 1
//! name = "a1"                       # slot id, used in logs
//! data = "data/a1"                  # relative paths are relative to this file
//! hostname = "a1.example.net"       # in greetings and Received: headers
//!
//! [imap]
//! listen = "127.0.0.1:1143"         # required: plaintext, STARTTLS offered when [tls] is set
//! tls_listen = "127.0.0.1:1993"     # implicit TLS (optional)
//! allow_plaintext_auth = false      # LOGIN/AUTHENTICATE before TLS (loopback tests only)
//!
//! [lmtp]
//! listen = "127.0.0.1:2424"
//!
//! [tls]
//! cert = "tls/cert.pem"
//! key = "tls/key.pem"
//!
//! [sync]                            # replication (docs/replication.md)
//! cluster = "prod"                  # optional, default "slotmail"; bound in the handshake
//! store = "s1"
//! role = "master"                   # or "replica"
//! epoch = 1
//! listen = "127.0.0.1:2500"         # sync listener (required on replicas)
//! secret_file = "cluster.secret"    # 64 hex digits, shared by the cluster
//! replicas = [{ slot = "b1", address = "127.0.0.2:2500" }]   # master only
//! durable = false                   # durable delivery: APPEND/LMTP success only once a replica has it
//! durable_wait_ms = 2000            # its bound
//! durable_on_timeout = "tempfail"   # or "accept" (docs/replication.md, "Durable delivery")
//! ```
//! Unknown keys are refused, so a typo is an error and not a silent default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The only config version this binary reads.
pub const CONFIG_VERSION: u32 = 1;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    name: String,
    data: PathBuf,
    hostname: Option<String>,
    imap: Option<RawImap>,
    lmtp: Option<RawLmtp>,
    tls: Option<RawTls>,
    #[serde(default)]
    limits: RawLimits,
    sync: Option<RawSync>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default = "default_cluster")]
    cluster: String,
    store: String,
    role: String,
    epoch: u64,
    listen: Option<SocketAddr>,
    secret_file: PathBuf,
    #[serde(default)]
    replicas: Vec<RawPeer>,
    #[serde(default)]
    durable: bool,
    #[serde(default = "default_durable_wait_ms")]
    durable_wait_ms: u64,
    #[serde(default = "default_on_timeout")]
    durable_on_timeout: String,
}

fn default_durable_wait_ms() -> u64 {
    DURABLE_WAIT_MS_DEFAULT
}

fn default_on_timeout() -> String {
    "tempfail".into()
}

/// Default bound of durable delivery's wait for a replica, in ms.
pub const DURABLE_WAIT_MS_DEFAULT: u64 = 2000;

/// Largest accepted `durable_wait_ms` (an MTA's LMTP timeouts are minutes;
/// IMAP clients wait far less).
pub const DURABLE_WAIT_MS_MAX: u64 = 60_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    slot: String,
    address: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    #[serde(default)]
    allow_plaintext_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLmtp {
    listen: SocketAddr,
    #[serde(default = "default_detail_separator")]
    detail_separator: String,
    #[serde(default)]
    over_quota_permanent: bool,
}

fn default_cluster() -> String {
    DEFAULT_CLUSTER.into()
}

fn default_detail_separator() -> String {
    "+".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    message_size_max: Option<u64>,
    connections_max: Option<u32>,
    connections_per_user_max: Option<u32>,
}

/// A validated slot configuration.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    pub name: String,
    pub data: PathBuf,
    pub hostname: String,
    pub imap: Option<ImapConfig>,
    pub lmtp: Option<LmtpConfig>,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    /// Replication: the store this slot belongs to and its role in it.
    pub sync: Option<SyncConfig>,
}

/// The cluster name a `[sync]` section without `cluster` uses.
pub const DEFAULT_CLUSTER: &str = "slotmail";

/// A slot's place in its store (docs/replication.md).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The cluster's name; both sides of a stream must agree on it.
    pub cluster: String,
    pub store: String,
    pub role: Role,
    /// The store's epoch as this slot was last told; a replica adopts a
    /// higher one from a master's handshake and keeps it in its data dir.
    pub epoch: u64,
    /// Where this slot accepts replication (every slot listens, so that a
    /// replica promoted to master and a master demoted keep working).
    pub listen: Option<SocketAddr>,
    /// The cluster secret (64 hex digits) that authenticates sync peers.
    pub secret_file: PathBuf,
    /// For a master: the replicas to stream to.
    pub replicas: Vec<Peer>,
    /// Durable delivery (the store's `sync` flag), when on.
    pub durable: Option<Durable>,
}

/// Durable delivery's settings (docs/replication.md, "Durable delivery").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// How long an APPEND or delivery waits for a replica's acknowledgement.
    pub wait: std::time::Duration,
    pub on_timeout: OnTimeout,
}

/// What happens when no replica acknowledged within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Withdraw the message and answer a temporary failure (LMTP 451
    /// 4.4.1, IMAP `NO [UNAVAILABLE]`): the sender retries.
    Tempfail,
    /// Answer success anyway (the master holds it durably), count it.
    Accept,
}

/// Master, replica, or fenced (an old master replaced by a failover:
/// read-only, no sync listener, no replication; docs/failover.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    Fenced,
}

/// A replica as a master reaches it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub slot: String,
    pub address: SocketAddr,
}

/// IMAP listeners.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    pub allow_plaintext_auth: bool,
}

/// LMTP listener.
#[derive(Debug, Clone)]
pub struct LmtpConfig {
    pub listen: SocketAddr,
    pub detail_separator: Option<char>,
    /// Over-quota recipients get 552 5.2.2 (permanent) instead of 452 4.2.2.
    pub over_quota_permanent: bool,
}

/// Certificate chain and key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Service limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub message_size_max: u64,
    pub connections_max: u32,
    pub connections_per_user_max: u32,
}

/// Default most concurrent IMAP connections per slot.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 20_000;
/// Default most concurrent IMAP connections per user.
pub const CONNECTIONS_PER_USER_MAX_DEFAULT: u32 = 50;

impl SlotConfig {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<SlotConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse config text; `path` names the file in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<SlotConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |what: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        if raw.version != CONFIG_VERSION {
            return Err(invalid(format!(
                "version = {} is not supported (this binary reads version {CONFIG_VERSION})",
                raw.version
            )));
        }
        if raw.name.is_empty()
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(format!(
                "name {:?}: letters, digits, '-', '_' and '.' only",
                raw.name
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let imap = match raw.imap {
            Some(i) => {
                if i.tls_listen.is_some() && raw.tls.is_none() {
                    return Err(invalid("[imap] tls_listen needs a [tls] section".into()));
                }
                Some(ImapConfig {
                    listen: i.listen,
                    tls_listen: i.tls_listen,
                    allow_plaintext_auth: i.allow_plaintext_auth,
                })
            }
            None => None,
        };
        let lmtp = match raw.lmtp {
            Some(l) => {
                let mut chars = l.detail_separator.chars();
                let detail_separator = match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) if !c.is_alphanumeric() && c != '@' => Some(c),
                    _ => {
                        return Err(invalid(
                            "[lmtp] detail_separator is one punctuation character or empty".into(),
                        ));
                    }
                };
                Some(LmtpConfig {
                    listen: l.listen,
                    detail_separator,
                    over_quota_permanent: l.over_quota_permanent,
                })
            }
            None => None,
        };
        let limits = Limits {
            message_size_max: raw
                .limits
                .message_size_max
                .unwrap_or(slotmail_store::MESSAGE_SIZE_MAX_DEFAULT),
            connections_max: raw
                .limits
                .connections_max
                .unwrap_or(CONNECTIONS_MAX_DEFAULT),
            connections_per_user_max: raw
                .limits
                .connections_per_user_max
                .unwrap_or(CONNECTIONS_PER_USER_MAX_DEFAULT),
        };
        if limits.message_size_max == 0
            || limits.message_size_max > slotmail_store::MESSAGE_SIZE_MAX_DEFAULT
        {
            return Err(invalid(format!(
                "[limits] message_size_max must be 1 to {} bytes",
                slotmail_store::MESSAGE_SIZE_MAX_DEFAULT
            )));
        }
        let sync = match raw.sync {
            None => None,
            Some(sy) => {
                let role = match sy.role.as_str() {
                    "master" => Role::Master,
                    "replica" => Role::Replica,
                    "fenced" => Role::Fenced,
                    other => {
                        return Err(invalid(format!(
                            "[sync] role = {other:?}: \"master\", \"replica\" or \"fenced\""
                        )));
                    }
                };
                if role == Role::Replica && sy.listen.is_none() {
                    return Err(invalid("[sync] a replica needs listen".into()));
                }
                if role != Role::Master && !sy.replicas.is_empty() {
                    return Err(invalid(
                        "[sync] replicas are listed on the master only".into(),
                    ));
                }
                if sy.epoch == 0 {
                    return Err(invalid("[sync] epoch starts at 1".into()));
                }
                if sy.cluster.is_empty() || sy.store.is_empty() {
                    return Err(invalid("[sync] cluster and store must not be empty".into()));
                }
                let on_timeout = match sy.durable_on_timeout.as_str() {
                    "tempfail" => OnTimeout::Tempfail,
                    "accept" => OnTimeout::Accept,
                    other => {
                        return Err(invalid(format!(
                            "[sync] durable_on_timeout = {other:?}: \"tempfail\" or \"accept\""
                        )));
                    }
                };
                if !(1..=DURABLE_WAIT_MS_MAX).contains(&sy.durable_wait_ms) {
                    return Err(invalid(format!(
                        "[sync] durable_wait_ms must be 1 to {DURABLE_WAIT_MS_MAX}"
                    )));
                }
                Some(SyncConfig {
                    cluster: sy.cluster,
                    store: sy.store,
                    role,
                    epoch: sy.epoch,
                    listen: sy.listen,
                    secret_file: resolve(&sy.secret_file),
                    replicas: sy
                        .replicas
                        .into_iter()
                        .map(|p| Peer {
                            slot: p.slot,
                            address: p.address,
                        })
                        .collect(),
                    durable: sy.durable.then_some(Durable {
                        wait: std::time::Duration::from_millis(sy.durable_wait_ms),
                        on_timeout,
                    }),
                })
            }
        };
        Ok(SlotConfig {
            sync,
            hostname: raw.hostname.unwrap_or_else(|| raw.name.clone()),
            name: raw.name,
            data: resolve(&raw.data),
            imap,
            lmtp,
            tls: raw.tls.map(|t| TlsFiles {
                cert: resolve(&t.cert),
                key: resolve(&t.key),
            }),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = SlotConfig::parse(
            "version = 1\nname = \"a1\"\ndata = \"d\"\n[imap]\nlisten = \"127.0.0.1:1143\"\n[lmtp]\nlisten = \"127.0.0.1:2424\"\n",
            Path::new("/etc/slotmail/a1.toml"),
        )
        .unwrap();
        assert_eq!(c.data, Path::new("/etc/slotmail/d"));
        assert_eq!(c.lmtp.unwrap().detail_separator, Some('+'));
        assert!(!c.imap.unwrap().allow_plaintext_auth);
    }

    #[test]
    fn parses_a_sync_section() {
        let c = SlotConfig::parse(
            "version = 1\nname = \"a1\"\ndata = \"d\"\n[sync]\nstore = \"s1\"\nrole = \"master\"\nepoch = 2\nsecret_file = \"k\"\nreplicas = [{ slot = \"b1\", address = \"127.0.0.2:2500\" }]\n",
            Path::new("/etc/slotmail/a1.toml"),
        )
        .unwrap();
        let sync = c.sync.unwrap();
        assert_eq!(sync.cluster, DEFAULT_CLUSTER);
        assert_eq!(sync.role, Role::Master);
        assert_eq!(sync.secret_file, Path::new("/etc/slotmail/k"));
        assert_eq!(sync.replicas[0].slot, "b1");
        let err = SlotConfig::parse(
            "version = 1\nname = \"b1\"\ndata = \"d\"\n[sync]\nstore = \"s1\"\nrole = \"replica\"\nepoch = 1\nsecret_file = \"k\"\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("needs listen"), "{err}");
        assert_eq!(sync.durable, None);
        let base = "version = 1\nname = \"a1\"\ndata = \"d\"\n[sync]\nstore = \"s1\"\nrole = \"master\"\nepoch = 2\nsecret_file = \"k\"\ndurable = true\n";
        let durable = SlotConfig::parse(base, Path::new("a1.toml"))
            .unwrap()
            .sync
            .unwrap()
            .durable
            .unwrap();
        assert_eq!(durable.on_timeout, OnTimeout::Tempfail);
        assert_eq!(
            durable.wait.as_millis(),
            u128::from(DURABLE_WAIT_MS_DEFAULT)
        );
        let accept = format!("{base}durable_wait_ms = 500\ndurable_on_timeout = \"accept\"\n");
        let durable = SlotConfig::parse(&accept, Path::new("a1.toml"))
            .unwrap()
            .sync
            .unwrap()
            .durable
            .unwrap();
        assert_eq!(durable.on_timeout, OnTimeout::Accept);
        assert_eq!(durable.wait.as_millis(), 500);
        for bad in ["durable_wait_ms = 0\n", "durable_on_timeout = \"drop\"\n"] {
            assert!(SlotConfig::parse(&format!("{base}{bad}"), Path::new("a1.toml")).is_err());
        }
    }

    #[test]
    fn refuses_unknown_keys_versions_and_bad_values() {
        let p = Path::new("x.toml");
        for (text, needle) in [
            ("version = 2\nname = \"a\"\ndata = \"d\"\n", "version = 2"),
            (
                "version = 1\nname = \"a\"\ndata = \"d\"\ntypo = 1\n",
                "unknown field",
            ),
            ("version = 1\nname = \"a b\"\ndata = \"d\"\n", "name"),
            (
                "version = 1\nname = \"a\"\ndata = \"d\"\n[imap]\n",
                "listen",
            ),
            (
                "version = 1\nname = \"a\"\ndata = \"d\"\n[imap]\nlisten = \"127.0.0.1:2\"\ntls_listen = \"127.0.0.1:1\"\n",
                "[tls]",
            ),
            (
                "version = 1\nname = \"a\"\ndata = \"d\"\n[limits]\nmessage_size_max = 0\n",
                "message_size_max",
            ),
        ] {
            let err = SlotConfig::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }
}
