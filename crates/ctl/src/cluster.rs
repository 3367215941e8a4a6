//! `cluster.toml`: what every `slotmail ctl` command and every machine
//! supervisor of one cluster share — the cluster's name, where its
//! directory and secret are, where slots keep their data, where
//! supervisors keep their state, and the port scheme.
//!
//! ```toml
//! version = 1
//! name = "demo"
//! directory_backend = "sqlite"      # the only backend so far
//! directory = "directory.db"        # relative paths are relative to this file
//! secret_file = "cluster.secret"    # 64 hex digits, mode 0600
//! slots_dir = "slots"               # slot data: SLOTS_DIR/MACHINE/SLOT
//! state_dir = "state"               # supervisor sockets, slot configs, slot logs
//! check_password_file = "check.password"  # the check's admin account, mode 0600
//!
//! [ports]                           # slot number i (from 1) of a machine listens on
//! imap = 1143                       #   IMAP  imap + i - 1
//! lmtp = 2424                       #   LMTP  lmtp + i - 1
//! sync = 2500                       #   sync  sync + i - 1
//! slots_per_machine_max = 64        # the three ranges must not overlap
//!
//! [slot]
//! allow_plaintext_auth = false      # IMAP LOGIN without TLS (loopback tests)
//! # tls_cert = "tls/cert.pem"       # optional: STARTTLS on every slot
//! # tls_key = "tls/key.pem"
//!
//! # [sync_via]                     # optional: masters dial replication to
//! # a1 = "127.0.0.90:2500"          #   slot a1 at this address (a relay)
//! ```
//!
//! Every machine has its own address, so the same port numbers repeat on
//! every machine: slot `a1` (slot 1 of machine `a`) and `b1` both listen on
//! port 1143, on their own machine's address.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The only `cluster.toml` version this program reads.
pub const CLUSTER_CONFIG_VERSION: u32 = 1;
/// The file `ctl` looks for in the current directory without `--cluster`.
pub const DEFAULT_CLUSTER_FILE: &str = "cluster.toml";
/// Largest `cluster.toml` read, in bytes.
pub const CLUSTER_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Largest secret file read, in bytes.
pub const SECRET_FILE_BYTES_MAX: u64 = 1024;
/// Default first IMAP port.
pub const IMAP_PORT_BASE_DEFAULT: u16 = 1143;
/// Default first LMTP port.
pub const LMTP_PORT_BASE_DEFAULT: u16 = 2424;
/// Default first sync (replication) port.
pub const SYNC_PORT_BASE_DEFAULT: u16 = 2500;
/// Default number of slots a machine may have under the port scheme.
pub const SLOTS_PER_MACHINE_MAX_DEFAULT: u16 = 64;

/// Why a cluster file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No cluster file where one was expected.
    #[error("no cluster file at {} (create one with `slotmail ctl init`, or name one with --cluster FILE)", path.display())]
    Missing { path: PathBuf },
    /// The file exists where `init` would create one.
    #[error("{} exists already; refusing to overwrite a cluster", path.display())]
    Exists { path: PathBuf },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    /// A value is not acceptable.
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

/// The port scheme: slot number `i` (from 1) of every machine listens on
/// `base + i - 1` for each service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortScheme {
    pub imap: u16,
    pub lmtp: u16,
    pub sync: u16,
    pub slots_per_machine_max: u16,
}

impl Default for PortScheme {
    fn default() -> Self {
        PortScheme {
            imap: IMAP_PORT_BASE_DEFAULT,
            lmtp: LMTP_PORT_BASE_DEFAULT,
            sync: SYNC_PORT_BASE_DEFAULT,
            slots_per_machine_max: SLOTS_PER_MACHINE_MAX_DEFAULT,
        }
    }
}

/// The three ports of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotPorts {
    pub imap: u16,
    pub lmtp: u16,
    pub sync: u16,
}

impl PortScheme {
    /// Check that the three ranges fit in 1..=65535 and do not overlap.
    pub fn validate(&self) -> Result<(), String> {
        let n = u32::from(self.slots_per_machine_max);
        if n == 0 {
            return Err("[ports] slots_per_machine_max must be at least 1".into());
        }
        let ranges = [
            ("imap", self.imap),
            ("lmtp", self.lmtp),
            ("sync", self.sync),
        ];
        for (name, base) in ranges {
            if base == 0 || u32::from(base) + n - 1 > u32::from(u16::MAX) {
                return Err(format!(
                    "[ports] {name} = {base}: {base}..{} must lie in 1..=65535",
                    u32::from(base) + n - 1
                ));
            }
        }
        for (i, (a, x)) in ranges.iter().enumerate() {
            for (b, y) in &ranges[i + 1..] {
                let (x, y) = (u32::from(*x), u32::from(*y));
                if x < y + n && y < x + n {
                    return Err(format!(
                        "[ports] the {a} ports {x}..{} and the {b} ports {y}..{} overlap \
                         (each range holds slots_per_machine_max = {n} ports)",
                        x + n - 1,
                        y + n - 1
                    ));
                }
            }
        }
        Ok(())
    }

    /// The ports of slot number `index` (from 1), or `None` past
    /// `slots_per_machine_max`.
    pub fn ports(&self, index: u32) -> Option<SlotPorts> {
        if index == 0 || index > u32::from(self.slots_per_machine_max) {
            return None;
        }
        let off = (index - 1) as u16;
        Some(SlotPorts {
            imap: self.imap + off,
            lmtp: self.lmtp + off,
            sync: self.sync + off,
        })
    }
}

/// Settings every slot of the cluster gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDefaults {
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Durable delivery's wait bound for stores with `sync` (ms; the slot's
    /// default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_wait_ms: Option<u64>,
    /// `tempfail` or `accept` (the slot's default, `tempfail`, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_on_timeout: Option<String>,
}

/// `cluster.toml` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    version: u32,
    name: String,
    #[serde(default = "default_backend")]
    directory_backend: String,
    directory: PathBuf,
    secret_file: PathBuf,
    slots_dir: PathBuf,
    state_dir: PathBuf,
    /// Absent in files written before the check existed: the default.
    #[serde(default = "default_check_password_file")]
    check_password_file: PathBuf,
    #[serde(default)]
    ports: PortScheme,
    #[serde(default)]
    slot: SlotDefaults,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    sync_via: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

fn default_backend() -> String {
    "sqlite".into()
}

/// The default `check_password_file`.
pub const CHECK_PASSWORD_FILE_DEFAULT: &str = "check.password";

fn default_check_password_file() -> PathBuf {
    CHECK_PASSWORD_FILE_DEFAULT.into()
}

/// A loaded cluster file, with every path made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster file itself.
    pub file: PathBuf,
    pub name: String,
    pub directory: PathBuf,
    pub secret_file: PathBuf,
    pub slots_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The password of the replication check's admin account (created by
    /// `slotmail check` on first use, mode 0600).
    pub check_password_file: PathBuf,
    pub ports: PortScheme,
    pub slot: SlotDefaults,
    /// Replication streams to a slot (by id) are dialled at this address
    /// instead of the slot's own sync address: a relay in the path (the
    /// fault-injection harness puts one there). Empty normally.
    pub sync_via: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

/// What `ctl init` is asked to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub name: String,
    pub ports: PortScheme,
    pub allow_plaintext_auth: bool,
}

impl Cluster {
    /// The cluster file `--cluster` names, or `./cluster.toml`.
    pub fn locate(given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CLUSTER_FILE))
    }

    /// Read and validate a cluster file.
    pub fn load(path: &Path) -> Result<Cluster, ClusterError> {
        let file = std::fs::File::open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ClusterError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                ClusterError::Io {
                    what: "reading",
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, CLUSTER_FILE_BYTES_MAX),
            &mut text,
        )
        .map_err(|source| ClusterError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse cluster file text; `path` anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Cluster, ClusterError> {
        let raw: RawCluster = toml::from_str(text).map_err(|e| ClusterError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let invalid = |what: String| ClusterError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        if raw.version != CLUSTER_CONFIG_VERSION {
            return Err(invalid(format!(
                "version = {} is not supported (this program reads version {CLUSTER_CONFIG_VERSION})",
                raw.version
            )));
        }
        slotmail_directory::model::validate_id(slotmail_directory::IdKind::Machine, &raw.name)
            .map_err(|_| {
                invalid(format!(
                    "name = {:?}: 1 to 64 bytes of a-z, 0-9, '-', '_', '.'",
                    raw.name
                ))
            })?;
        if raw.directory_backend != "sqlite" {
            return Err(invalid(format!(
                "directory_backend = {:?}: only \"sqlite\" is supported",
                raw.directory_backend
            )));
        }
        raw.ports.validate().map_err(invalid)?;
        if raw.slot.tls_cert.is_some() != raw.slot.tls_key.is_some() {
            return Err(invalid(
                "[slot] tls_cert and tls_key go together".to_string(),
            ));
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = absolute(parent.unwrap_or(Path::new(".")));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        Ok(Cluster {
            file: absolute(path),
            name: raw.name,
            directory: resolve(&raw.directory),
            secret_file: resolve(&raw.secret_file),
            slots_dir: resolve(&raw.slots_dir),
            state_dir: resolve(&raw.state_dir),
            check_password_file: resolve(&raw.check_password_file),
            ports: raw.ports,
            slot: SlotDefaults {
                allow_plaintext_auth: raw.slot.allow_plaintext_auth,
                tls_cert: raw.slot.tls_cert.as_deref().map(resolve),
                tls_key: raw.slot.tls_key.as_deref().map(resolve),
                durable_wait_ms: raw.slot.durable_wait_ms,
                durable_on_timeout: raw.slot.durable_on_timeout,
            },
            sync_via: raw.sync_via,
        })
    }

    /// Create a new cluster: the cluster file at `path`, the secret (0600)
    /// and the slots and state directories next to it. The directory
    /// database is the caller's to create. Refused if `path` exists.
    pub fn init(path: &Path, options: &InitOptions) -> Result<Cluster, ClusterError> {
        let raw = RawCluster {
            version: CLUSTER_CONFIG_VERSION,
            name: options.name.clone(),
            directory_backend: default_backend(),
            directory: "directory.db".into(),
            secret_file: "cluster.secret".into(),
            slots_dir: "slots".into(),
            state_dir: "state".into(),
            check_password_file: default_check_password_file(),
            ports: options.ports,
            slot: SlotDefaults {
                allow_plaintext_auth: options.allow_plaintext_auth,
                ..SlotDefaults::default()
            },
            sync_via: Default::default(),
        };
        let text = format!(
            "# slotmail cluster (docs/operations.md)\n{}",
            toml::to_string(&raw).map_err(|e| ClusterError::Parse {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?
        );
        // Validate before anything is written.
        let cluster = Self::parse(&text, path)?;
        if path.exists() {
            return Err(ClusterError::Exists {
                path: path.to_path_buf(),
            });
        }
        if cluster.secret_file.exists() {
            return Err(ClusterError::Exists {
                path: cluster.secret_file.clone(),
            });
        }
        if let Some(parent) = cluster.file.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ClusterError::Io {
                what: "creating",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let secret: [u8; 32] = rand::random();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        write_new(&cluster.secret_file, format!("{hex}\n").as_bytes(), 0o600)?;
        for dir in [&cluster.slots_dir, &cluster.state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
                what: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        write_new(&cluster.file, text.as_bytes(), 0o644)?;
        Ok(cluster)
    }

    /// A slot's data directory as the directory records it, made absolute
    /// (relative ones are under `slots_dir`).
    pub fn slot_data_dir(&self, recorded: &str) -> PathBuf {
        let p = Path::new(recorded);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.slots_dir.join(p)
        }
    }

    /// The admin socket of a slot whose recorded data directory is given.
    pub fn admin_socket(&self, recorded_data_dir: &str) -> PathBuf {
        self.slot_data_dir(recorded_data_dir)
            .join(slotmail_slot::admin::SOCKET_NAME)
    }

    /// The control socket of a machine's supervisor.
    pub fn machine_socket(&self, machine: &str) -> PathBuf {
        self.state_dir.join(format!("machine-{machine}.sock"))
    }

    /// Where a machine's supervisor writes slot configs and logs.
    pub fn machine_state_dir(&self, machine: &str) -> PathBuf {
        self.state_dir.join(machine)
    }

    /// The replication status file of a slot.
    pub fn replication_status_file(&self, recorded_data_dir: &str) -> PathBuf {
        self.slot_data_dir(recorded_data_dir)
            .join("replication-status.json")
    }
}

/// Create a file that must not exist yet, with `mode`, durably.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClusterError> {
    let io = |source| ClusterError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `p` made absolute against the current directory (not resolving links).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn port_scheme_is_deterministic_and_checked() {
        let p = PortScheme::default();
        p.validate().unwrap();
        assert_eq!(
            p.ports(1),
            Some(SlotPorts {
                imap: 1143,
                lmtp: 2424,
                sync: 2500
            })
        );
        assert_eq!(p.ports(3).unwrap().sync, 2502);
        assert_eq!(p.ports(0), None);
        assert_eq!(p.ports(65), None);
        let overlap = PortScheme {
            slots_per_machine_max: 100,
            ..p
        };
        assert!(overlap.validate().unwrap_err().contains("overlap"));
        let high = PortScheme { sync: 65_500, ..p };
        assert!(high.validate().unwrap_err().contains("65535"));
    }

    #[test]
    fn init_writes_a_loadable_cluster_and_a_private_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/cluster.toml");
        let opts = InitOptions {
            name: "test".into(),
            ports: PortScheme::default(),
            allow_plaintext_auth: true,
        };
        let c = Cluster::init(&path, &opts).unwrap();
        assert_eq!(Cluster::load(&path).unwrap(), c);
        assert_eq!(c.directory, dir.path().join("c/directory.db"));
        assert_eq!(c.check_password_file, dir.path().join("c/check.password"));
        let mode = std::fs::metadata(&c.secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = std::fs::read_to_string(&c.secret_file).unwrap();
        assert_eq!(secret.trim().len(), 64);
        assert!(secret.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(matches!(
            Cluster::init(&path, &opts),
            Err(ClusterError::Exists { .. })
        ));
        assert_eq!(c.slot_data_dir("a/a1"), c.slots_dir.join("a/a1"));
        assert_eq!(c.slot_data_dir("/srv/x"), Path::new("/srv/x"));
    }

    #[test]
    fn refuses_bad_files() {
        let p = Path::new("/x/cluster.toml");
        let ok = "version = 1\nname = \"c\"\ndirectory = \"d.db\"\nsecret_file = \"s\"\nslots_dir = \"slots\"\nstate_dir = \"state\"\n";
        Cluster::parse(ok, p).unwrap();
        for (text, needle) in [
            (ok.replace("version = 1", "version = 7"), "version = 7"),
            (format!("{ok}typo = 1\n"), "unknown field"),
            (ok.replace("name = \"c\"", "name = \"C D\""), "name"),
            (
                format!("{ok}directory_backend = \"etcd\"\n"),
                "only \"sqlite\"",
            ),
            (
                format!(
                    "{ok}[ports]\nimap = 2000\nlmtp = 2010\nsync = 3000\nslots_per_machine_max = 64\n"
                ),
                "overlap",
            ),
            (format!("{ok}[slot]\ntls_cert = \"c.pem\"\n"), "together"),
        ] {
            let err = Cluster::parse(&text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        let missing = Cluster::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
        assert!(matches!(missing, ClusterError::Missing { .. }));
    }
}
