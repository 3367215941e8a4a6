//! The front door: an IMAP and LMTP proxy that routes each user to the
//! master slot of the user's store (`slotmail proxy run --config FILE`).
//!
//! - [`preauth`]: the IMAP conversation before login, sans-I/O.
//! - [`backend`]: logging in at the master slot with the client's
//!   credentials, failures classified.
//! - [`imap`]: listeners (plaintext with STARTTLS, implicit TLS), the
//!   relay, and closing sessions whose slot stopped being master.
//! - [`lmtp`]: the proxy as an LMTP [`slotmail_lmtp::Backend`]: one
//!   backend transaction per master, replies merged in recipient order.
//! - [`routes`]: the directory snapshot, renewed when its revision moves.
//! - [`limits`]: failed-login throttling and per-user session counts.
//! - [`config`]: the TOML configuration.

pub mod backend;
pub mod config;
pub mod imap;
pub mod limits;
pub mod lmtp;
pub mod preauth;
pub mod routes;

pub use config::{ConfigError, Limits, ProxyConfig};

use slotmail_directory::{Directory, DirectoryError, SqliteDirectory};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long connections get to end after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `slotmail proxy ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProxyCommand {
    /// Run the proxy until SIGTERM or SIGINT.
    Run {
        /// The proxy's configuration file (TOML; see docs/operations.md).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cluster file it names.
    #[error(transparent)]
    Cluster(#[from] slotmail_ctl::cluster::ClusterError),
    /// The directory.
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    /// The certificate or key.
    #[error("TLS: {0}")]
    Tls(#[from] slotmail_slot::tls::TlsError),
    /// A listener could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl ProxyError {
    /// Whether the error is the operator's configuration (exit 2) rather
    /// than a failure (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ProxyError::Config(_) | ProxyError::Cluster(_) | ProxyError::Tls(_)
        )
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Run the proxy until `shutdown` resolves; then stop accepting, say
/// `BYE [UNAVAILABLE]` to every session and wait up to [`SHUTDOWN_GRACE`].
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let cluster = slotmail_ctl::cluster::Cluster::load(&config.cluster)?;
    let directory: Arc<dyn Directory> = Arc::new(SqliteDirectory::open(&cluster.directory)?);
    let routes = Arc::new(routes::Routes::open(directory).await?);
    let tls = match &config.tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(
            slotmail_slot::tls::server_config(cert, key)?,
        )),
        None => None,
    };
    let limits = config.limits.clone();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shared = Arc::new(imap::ImapShared {
        preauth: preauth::PreAuthConfig {
            hostname: config.hostname.clone(),
            allow_plaintext_auth: config.allow_plaintext_auth,
            starttls_available: tls.is_some(),
            login_failures_max: limits.login_failures_per_connection_max,
        },
        limits: limits.clone(),
        routes: routes.clone(),
        throttle: limits::LoginThrottle::new(
            limits.login_failures_per_address_max,
            limits.login_failure_window(),
            limits.throttle_addresses_max,
        ),
        users: limits::UserSessions::new(limits.connections_per_user_max),
        tls,
        connections: Arc::new(Semaphore::new(limits.connections_max)),
        shutdown: cancel.clone(),
    });
    let mut listening = Vec::new();
    if let Some(addr) = config.imap_listen {
        let l = bind(addr).await?;
        tracing::info!(%addr, starttls = shared.tls.is_some(), "IMAP proxy listening");
        listening.push(("imap", l, false));
    }
    if let Some(addr) = config.imap_tls_listen {
        let l = bind(addr).await?;
        tracing::info!(%addr, "IMAP proxy listening (implicit TLS)");
        listening.push(("imaps", l, true));
    }
    let lmtp_listener = match config.lmtp_listen {
        Some(addr) => {
            let l = bind(addr).await?;
            tracing::info!(%addr, "LMTP proxy listening");
            Some(l)
        }
        None => None,
    };
    tracing::info!(
        cluster = %config.cluster.display(),
        revision = routes.snapshot().revision,
        users = routes.snapshot().users.len(),
        "proxy routing from the directory"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (_, listener, implicit) in listening {
        tasks.spawn(imap::serve(
            listener,
            implicit,
            shared.clone(),
            tracker.clone(),
        ));
    }
    if let Some(listener) = lmtp_listener {
        let router = Arc::new(lmtp::LmtpRouter::new(
            routes.clone(),
            config.hostname.clone(),
            limits.backend_connect_timeout(),
            limits.backend_lmtp_timeout(),
        ));
        let lmtp_config = Arc::new(slotmail_lmtp::Config::new(config.hostname.clone()));
        tasks.spawn(lmtp::serve(
            listener,
            router,
            lmtp_config,
            Arc::new(Semaphore::new(limits.lmtp_connections_max)),
            cancel.clone(),
            tracker.clone(),
        ));
    }
    {
        let (routes, cancel, poll) = (routes.clone(), cancel.clone(), limits.directory_poll());
        tasks.spawn(async move { routes.follow(poll, cancel).await });
    }
    shutdown.await;
    tracing::info!("proxy shutting down");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("proxy: connections still open after the grace period");
    }
    Ok(())
}
