//! The proxy's configuration file (TOML).
//!
//! ```toml
//! version = 1
//! cluster = "cluster.toml"          # the directory is read from this cluster
//! hostname = "mail.example.org"     # greeting, LMTP Received: header
//!
//! [imap]
//! listen = "0.0.0.0:143"            # plaintext with STARTTLS (when [tls] is set)
//! tls_listen = "0.0.0.0:993"        # implicit TLS (needs [tls])
//! allow_plaintext_auth = false      # LOGIN before STARTTLS (loopback tests only)
//!
//! [lmtp]
//! listen = "127.0.0.1:24"
//!
//! [tls]
//! cert = "tls/cert.pem"
//! key = "tls/key.pem"
//!
//! [limits]                          # every key optional; defaults shown in `Limits`
//! connections_max = 10000
//! connections_per_user_max = 50
//! ```
//!
//! Relative paths are relative to the configuration file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The only configuration version this program reads.
pub const CONFIG_VERSION: u32 = 1;
/// Largest configuration file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 256 * 1024;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
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

/// Every limit of the proxy, with its unit in its name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Client IMAP connections at once, over all listeners.
    pub connections_max: usize,
    /// Logged-in IMAP sessions of one user at once.
    pub connections_per_user_max: u32,
    /// Client LMTP connections at once.
    pub lmtp_connections_max: usize,
    /// Time to connect to a backend slot, in milliseconds.
    pub backend_connect_timeout_ms: u64,
    /// Time for a backend's greeting and login answer, in milliseconds.
    pub backend_login_timeout_ms: u64,
    /// Time for each read or write of a backend LMTP exchange, in ms.
    pub backend_lmtp_timeout_ms: u64,
    /// Silence allowed from a client before it logs in, in seconds.
    pub preauth_idle_timeout_secs: u64,
    /// Time for a client's TLS handshake, in seconds.
    pub tls_handshake_timeout_secs: u64,
    /// Failed logins one address may have within the window before its
    /// logins are refused without asking a backend.
    pub login_failures_per_address_max: u32,
    /// The window for `login_failures_per_address_max`, in seconds.
    pub login_failure_window_secs: u64,
    /// Client addresses whose failures are remembered at once.
    pub throttle_addresses_max: usize,
    /// Failed logins on one connection before it is closed.
    pub login_failures_per_connection_max: u32,
    /// Size of each direction's relay buffer, in bytes.
    pub relay_buffer_bytes: usize,
    /// How often the directory's revision is checked, in milliseconds.
    pub directory_poll_ms: u64,
    /// Time to write to a client before giving up on it, in seconds.
    pub client_write_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 10_000,
            connections_per_user_max: 50,
            lmtp_connections_max: 256,
            backend_connect_timeout_ms: 2_000,
            backend_login_timeout_ms: 10_000,
            backend_lmtp_timeout_ms: 60_000,
            preauth_idle_timeout_secs: 60,
            tls_handshake_timeout_secs: 30,
            login_failures_per_address_max: 10,
            login_failure_window_secs: 300,
            throttle_addresses_max: 10_000,
            login_failures_per_connection_max: 3,
            relay_buffer_bytes: 16 * 1024,
            directory_poll_ms: 200,
            client_write_timeout_secs: 60,
        }
    }
}

impl Limits {
    pub fn backend_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_connect_timeout_ms)
    }
    pub fn backend_login_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_login_timeout_ms)
    }
    pub fn backend_lmtp_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_lmtp_timeout_ms)
    }
    pub fn preauth_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.preauth_idle_timeout_secs)
    }
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }
    pub fn login_failure_window(&self) -> Duration {
        Duration::from_secs(self.login_failure_window_secs)
    }
    pub fn directory_poll(&self) -> Duration {
        Duration::from_millis(self.directory_poll_ms)
    }
    pub fn client_write_timeout(&self) -> Duration {
        Duration::from_secs(self.client_write_timeout_secs)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("connections_max", self.connections_max as u64),
            (
                "connections_per_user_max",
                u64::from(self.connections_per_user_max),
            ),
            ("lmtp_connections_max", self.lmtp_connections_max as u64),
            (
                "backend_connect_timeout_ms",
                self.backend_connect_timeout_ms,
            ),
            ("backend_login_timeout_ms", self.backend_login_timeout_ms),
            ("backend_lmtp_timeout_ms", self.backend_lmtp_timeout_ms),
            ("preauth_idle_timeout_secs", self.preauth_idle_timeout_secs),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
            (
                "login_failures_per_address_max",
                u64::from(self.login_failures_per_address_max),
            ),
            ("login_failure_window_secs", self.login_failure_window_secs),
            ("throttle_addresses_max", self.throttle_addresses_max as u64),
            (
                "login_failures_per_connection_max",
                u64::from(self.login_failures_per_connection_max),
            ),
            ("relay_buffer_bytes", self.relay_buffer_bytes as u64),
            ("directory_poll_ms", self.directory_poll_ms),
            ("client_write_timeout_secs", self.client_write_timeout_secs),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("[limits] {name} must be at least 1"));
            }
        }
        if self.relay_buffer_bytes > RELAY_BUFFER_BYTES_MAX {
            return Err(format!(
                "[limits] relay_buffer_bytes must be at most {RELAY_BUFFER_BYTES_MAX}"
            ));
        }
        Ok(())
    }
}

/// Largest relay buffer accepted, in bytes (per direction and connection).
pub const RELAY_BUFFER_BYTES_MAX: usize = 1024 * 1024;

/// The proxy's configuration, validated, with absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The cluster file whose directory routes users.
    pub cluster: PathBuf,
    /// The name in greetings and in the LMTP `Received:` header.
    pub hostname: String,
    /// Plaintext IMAP (STARTTLS when TLS is configured).
    pub imap_listen: Option<SocketAddr>,
    /// Implicit-TLS IMAP.
    pub imap_tls_listen: Option<SocketAddr>,
    /// LOGIN and AUTHENTICATE before TLS.
    pub allow_plaintext_auth: bool,
    /// LMTP.
    pub lmtp_listen: Option<SocketAddr>,
    /// Certificate chain and private key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Limits.
    pub limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    cluster: PathBuf,
    #[serde(default = "default_hostname")]
    hostname: String,
    imap: Option<RawImap>,
    lmtp: Option<RawLmtp>,
    tls: Option<RawTls>,
    #[serde(default)]
    limits: Limits,
}

fn default_hostname() -> String {
    "slotmail-proxy".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    listen: Option<SocketAddr>,
    tls_listen: Option<SocketAddr>,
    #[serde(default)]
    allow_plaintext_auth: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLmtp {
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

impl ProxyConfig {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, CONFIG_FILE_BYTES_MAX),
            &mut text,
        )
        .map_err(read_err)?;
        Self::parse(&text, path)
    }

    /// Parse configuration text; `path` anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<ProxyConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let invalid = |what: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        if raw.version != CONFIG_VERSION {
            return Err(invalid(format!(
                "version {} is not supported (this program reads version {CONFIG_VERSION})",
                raw.version
            )));
        }
        if raw.hostname.is_empty() || !raw.hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "hostname must be printable ASCII without spaces".into(),
            ));
        }
        raw.limits.validate().map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let (imap_listen, imap_tls_listen, allow_plaintext_auth) = match raw.imap {
            Some(i) => (i.listen, i.tls_listen, i.allow_plaintext_auth),
            None => (None, None, false),
        };
        let lmtp_listen = raw.lmtp.map(|l| l.listen);
        if imap_listen.is_none() && imap_tls_listen.is_none() && lmtp_listen.is_none() {
            return Err(invalid(
                "nothing to listen on: set [imap] listen, [imap] tls_listen or [lmtp] listen"
                    .into(),
            ));
        }
        let tls = raw.tls.map(|t| (abs(&t.cert), abs(&t.key)));
        if imap_tls_listen.is_some() && tls.is_none() {
            return Err(invalid("[imap] tls_listen needs a [tls] section".into()));
        }
        if imap_listen.is_some() && tls.is_none() && !allow_plaintext_auth {
            return Err(invalid(
                "[imap] listen without [tls] and without allow_plaintext_auth: nobody could log in"
                    .into(),
            ));
        }
        Ok(ProxyConfig {
            cluster: abs(&raw.cluster),
            hostname: raw.hostname,
            imap_listen,
            imap_tls_listen,
            allow_plaintext_auth,
            lmtp_listen,
            tls,
            limits: raw.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::parse(text, Path::new("/etc/slotmail/proxy.toml"))
    }

    #[test]
    fn full_config_parses_with_absolute_paths_and_defaults() {
        let c = parse(
            "version = 1\ncluster = \"cluster.toml\"\nhostname = \"mx.test\"\n\
             [imap]\nlisten = \"127.0.0.1:143\"\ntls_listen = \"127.0.0.1:993\"\n\
             [lmtp]\nlisten = \"127.0.0.1:24\"\n\
             [tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n\
             [limits]\nconnections_per_user_max = 5\n",
        )
        .unwrap();
        assert_eq!(c.cluster, Path::new("/etc/slotmail/cluster.toml"));
        assert_eq!(
            c.tls,
            Some((
                PathBuf::from("/etc/slotmail/c.pem"),
                PathBuf::from("/k.pem")
            ))
        );
        assert_eq!(c.limits.connections_per_user_max, 5);
        assert_eq!(c.limits.connections_max, Limits::default().connections_max);
        assert!(!c.allow_plaintext_auth);
    }

    #[test]
    fn refusals() {
        for (text, needle) in [
            (
                "version = 2\ncluster = \"c\"\n[lmtp]\nlisten = \"127.0.0.1:24\"\n",
                "version",
            ),
            ("version = 1\ncluster = \"c\"\n", "nothing to listen"),
            (
                "version = 1\ncluster = \"c\"\n[imap]\ntls_listen = \"127.0.0.1:993\"\n",
                "needs a [tls]",
            ),
            (
                "version = 1\ncluster = \"c\"\n[imap]\nlisten = \"127.0.0.1:143\"\n",
                "nobody could log in",
            ),
            (
                "version = 1\ncluster = \"c\"\n[lmtp]\nlisten = \"127.0.0.1:24\"\n[limits]\nconnections_max = 0\n",
                "connections_max",
            ),
            (
                "version = 1\ncluster = \"c\"\nbogus = 1\n[lmtp]\nlisten = \"127.0.0.1:24\"\n",
                "bogus",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
