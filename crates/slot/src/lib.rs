//! One slot as a running service: its configuration, its store, its IMAP and
//! LMTP listeners, and an orderly shutdown.
//!
//! The binary's `slotmail slot run --config FILE` is `run(config, shutdown)`.
//! Protocol logic lives in the protocol crates (`slotmail-imap`,
//! `slotmail-lmtp`, `slotmail-repl`); this crate wires them to one
//! `slotmail_store::Slot`.
//!
//! With a `[sync]` section the slot also replicates (docs/replication.md):
//! every slot with `listen` runs the sync listener (a master's refuses
//! replication input), a master runs one `Replicator` per configured
//! replica, and the slot writes its `ReplicationStatus` as JSON to
//! `DATA/replication-status.json` every second (temporary file, then
//! rename), which `slotmail ctl status` reads.

pub mod admin;
pub mod admin_mail;
pub mod config;
pub mod delivery;
pub mod durable;
pub mod moves;
pub mod tls;
pub mod unix_socket;

pub use config::{ConfigError, SlotConfig};

use slotmail_store::{Options, Slot};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why a slot could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Open(#[from] slotmail_store::OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("replication: {0}")]
    Sync(#[from] slotmail_repl::SetupError),
}

/// Name of the status file in the slot's data directory.
pub const STATUS_FILE: &str = "replication-status.json";

/// How often the status file is rewritten.
pub const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The running replication of a slot: its listener and replicators.
struct Replication {
    slot_name: String,
    store: String,
    role: config::Role,
    epoch: Arc<slotmail_repl::EpochState>,
    server: Option<slotmail_repl::SyncServer>,
    replicators: Vec<slotmail_repl::Replicator>,
    /// Durable delivery, on a master of a store with `sync` on.
    durable: Option<Arc<durable::DurableDelivery>>,
    path: std::path::PathBuf,
    /// The secret, kept for user moves (`moves.rs`).
    secret: [u8; 32],
    cluster: String,
}

impl Replication {
    /// Start the listener and, on a master, the replicators.
    async fn start(
        config: &SlotConfig,
        sync: &config::SyncConfig,
        slot: &Arc<Slot>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Result<Replication, StartError> {
        use slotmail_repl::{
            EpochState, Exec, Replicator, ReplicatorConfig, ServerSettings, SlotRole, SyncServer,
            TlsConnector,
        };
        let secret = slotmail_repl::read_secret_file(&sync.secret_file)?;
        let epoch = Arc::new(EpochState::open(&config.data, sync.epoch)?);
        let role = match sync.role {
            config::Role::Master => SlotRole::Master {
                store: sync.store.clone(),
            },
            // A fenced slot runs no listener (below); the role is unused.
            config::Role::Replica | config::Role::Fenced => SlotRole::Replica {
                store: sync.store.clone(),
            },
        };
        if sync.role == config::Role::Master && epoch.get() > sync.epoch {
            tracing::warn!(
                configured = sync.epoch,
                seen = epoch.get(),
                "this master's epoch is older than one it has seen: replicas will refuse it"
            );
        }
        // A fenced slot accepts no replication: the new master must not
        // overwrite what only this slot holds (docs/failover.md).
        let listen = sync.listen.filter(|_| sync.role != config::Role::Fenced);
        let server = match listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| slotmail_repl::SetupError::Listen { addr, source })?;
                let server = SyncServer::new(
                    slot.clone(),
                    ServerSettings {
                        secret,
                        cluster: sync.cluster.clone(),
                        slot: config.name.clone(),
                        role,
                        exec: Exec::Blocking,
                    },
                    epoch.clone(),
                )?;
                tracing::info!(slot = %config.name, %addr, "sync listening (TLS)");
                let s = server.clone();
                tasks.spawn(async move { s.serve(listener).await });
                Some(server)
            }
            None => None,
        };
        let mut replicators = Vec::new();
        let acks = Arc::new(slotmail_repl::AckSignal::default());
        if sync.role == config::Role::Master {
            for peer in &sync.replicas {
                tracing::info!(slot = %config.name, replica = %peer.slot, address = %peer.address, "replicating");
                let mut rc = ReplicatorConfig::new(
                    secret,
                    &sync.cluster,
                    &sync.store,
                    &config.name,
                    &peer.slot,
                    sync.epoch,
                );
                rc.acks = acks.clone();
                replicators.push(Replicator::start(
                    slot.clone(),
                    rc,
                    Arc::new(TlsConnector::new(peer.address)),
                ));
            }
        }
        // A body damaged here while the slot was down (or a repair queued
        // before a restart) is found again and fetched from a replica.
        Replicator::verify_and_repair_in_background(&replicators);
        let durable = match (sync.durable, sync.role) {
            (Some(settings), config::Role::Master) => {
                tracing::info!(slot = %config.name, wait = ?settings.wait, on_timeout = ?settings.on_timeout, "durable delivery on");
                Some(Arc::new(durable::DurableDelivery::new(
                    settings,
                    replicators.clone(),
                    acks,
                )))
            }
            _ => None,
        };
        Ok(Replication {
            slot_name: config.name.clone(),
            store: sync.store.clone(),
            role: sync.role,
            epoch,
            server,
            replicators,
            durable,
            path: config.data.join(STATUS_FILE),
            secret,
            cluster: sync.cluster.clone(),
        })
    }

    fn status(&self) -> slotmail_repl::ReplicationStatus {
        slotmail_repl::ReplicationStatus {
            slot: self.slot_name.clone(),
            store: self.store.clone(),
            role: match self.role {
                config::Role::Master => "master".into(),
                config::Role::Replica => "replica".into(),
                config::Role::Fenced => "fenced".into(),
            },
            epoch: self.epoch.get(),
            taken_at_unix_ms: slotmail_repl::status::unix_ms_now(),
            replicas: self.replicators.iter().map(|r| r.status()).collect(),
            server: self.server.as_ref().map(|s| s.status()),
            durable: self.durable.as_ref().map(|d| d.status()),
        }
    }

    /// Write the status file: a temporary file renamed over the old one, so
    /// a reader never sees half a file.
    fn write_status(&self) {
        let result = serde_json::to_vec_pretty(&self.status())
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let tmp = self.path.with_extension("json.tmp");
                std::fs::write(&tmp, json)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot write the replication status");
        }
    }

    async fn shutdown(&self) {
        for r in &self.replicators {
            r.shutdown().await;
        }
        if let Some(s) = &self.server {
            s.shutdown().await;
        }
        self.write_status();
    }
}

/// Open the slot's store as the config says.
pub fn open_store(config: &SlotConfig) -> Result<Arc<Slot>, StartError> {
    let limits = slotmail_store::Limits {
        message_size_max: config.limits.message_size_max,
        ..Default::default()
    };
    let slot = Slot::open(
        &config.data,
        Options {
            create: true,
            limits,
            lock: true,
        },
    )?;
    Ok(Arc::new(slot))
}

/// Run the slot until `shutdown` resolves; then stop accepting, and return
/// once open connections are closed.
pub async fn run(config: SlotConfig, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let slot = open_store(&config)?;
    let mut tasks = tokio::task::JoinSet::new();
    // Client writes are refused on a replica (IMAP NO [UNAVAILABLE], LMTP 451).
    let read_only = slotmail_imap::ReadOnlySwitch::new(
        config
            .sync
            .as_ref()
            .is_some_and(|s| s.role != config::Role::Master),
    );
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(&files.cert, &files.key)?),
        None => None,
    };
    // Every task watches this; it is cancelled once `shutdown` resolves.
    let stop = tokio_util::sync::CancellationToken::new();
    // Replication first: durable delivery needs the replicators.
    let replication = match &config.sync {
        Some(sync) => {
            let r = Arc::new(Replication::start(&config, sync, &slot, &mut tasks).await?);
            let writer = r.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                loop {
                    writer.write_status();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(STATUS_INTERVAL) => {}
                    }
                }
            });
            Some(r)
        }
        None => None,
    };
    let durable_hook = replication.as_ref().and_then(|r| r.durable.clone());
    // The slot's admin endpoint (docs/operations.md): ctl and the machine
    // supervisor manage accounts, roles and held replication through it.
    {
        let path = config.data.join(admin::SOCKET_NAME);
        let (slot, read_only, stop) = (slot.clone(), read_only.clone(), stop.clone());
        let replicators = replication
            .as_ref()
            .map(|r| r.replicators.clone())
            .unwrap_or_default();
        let server = replication.as_ref().and_then(|r| r.server.clone());
        let moves = replication.as_ref().map(|r| {
            Arc::new(moves::MoveHub::new(
                slot.clone(),
                r.secret,
                &r.cluster,
                &r.slot_name,
                (r.role == config::Role::Master).then(|| r.store.clone()),
                r.server.clone(),
                r.replicators.clone(),
                read_only.clone(),
            ))
        });
        tasks.spawn(async move {
            if let Err(e) = admin::serve_admin_with_moves(
                path,
                slot,
                read_only,
                replicators,
                server,
                moves,
                stop.cancelled_owned(),
            )
            .await
            {
                tracing::error!(cause = %e, "admin endpoint failed");
            }
        });
    }
    if let Some(imap) = &config.imap {
        let plain = bind(imap.listen).await?;
        let implicit = match (imap.tls_listen, &tls) {
            (Some(addr), Some(tls)) => Some((bind(addr).await?, tls.clone())),
            _ => None,
        };
        let mut imap_config = slotmail_imap::ImapConfig {
            hostname: config.hostname.clone(),
            allow_plaintext_auth: imap.allow_plaintext_auth,
            read_only: read_only.clone(),
            durable: durable_hook
                .clone()
                .map(|d| slotmail_imap::DurableHook(d as Arc<dyn slotmail_imap::DurableAppend>)),
            ..Default::default()
        };
        imap_config.limits.literal_bytes_max = config.limits.message_size_max;
        imap_config.limits.connections_max = config.limits.connections_max as usize;
        imap_config.limits.connections_per_user_max =
            config.limits.connections_per_user_max as usize;
        tracing::info!(slot = %config.name, plain = ?imap.listen, tls = ?imap.tls_listen, "IMAP listening");
        let slot = slot.clone();
        let starttls = tls.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            slotmail_imap::serve(
                plain,
                implicit,
                starttls,
                slot,
                imap_config,
                stop.cancelled_owned(),
            )
            .await
        });
    }
    if let Some(lmtp) = &config.lmtp {
        let listener = bind(lmtp.listen).await?;
        tracing::info!(slot = %config.name, addr = %lmtp.listen, "LMTP listening");
        let mut backend =
            delivery::SlotDelivery::new(slot.clone(), lmtp.over_quota_permanent, read_only.clone());
        if let Some(d) = &durable_hook {
            backend = backend.with_durable(d.clone());
        }
        let mut lmtp_config = slotmail_lmtp::Config::new(config.hostname.clone());
        // The store's limit includes the trace headers LMTP prepends.
        lmtp_config.limits.max_message_bytes = usize::try_from(
            config
                .limits
                .message_size_max
                .saturating_sub(TRACE_HEADERS_ALLOWANCE),
        )
        .unwrap_or(usize::MAX);
        lmtp_config.detail_separator = lmtp.detail_separator;
        let stop = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = serve_lmtp(listener, backend, lmtp_config) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    shutdown.await;
    tracing::info!(slot = %config.name, "shutting down");
    stop.cancel();
    if let Some(r) = &replication {
        r.shutdown().await;
    }
    // IMAP says BYE and lets commands finish (bounded by its shutdown grace);
    // LMTP sessions are cut: an MTA retries anything it did not see 250 for.
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut grace => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    tracing::info!(slot = %config.name, "stopped");
    Ok(())
}

/// Longest a stopping slot waits for its listeners to wind down.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// Room left for Return-Path and Received headers under the store's size limit.
pub const TRACE_HEADERS_ALLOWANCE: u64 = 4096;

/// Most concurrent LMTP connections per slot.
pub const LMTP_CONNECTIONS_MAX: usize = 256;

async fn serve_lmtp(
    listener: TcpListener,
    backend: delivery::SlotDelivery,
    config: slotmail_lmtp::Config,
) {
    let backend = Arc::new(backend);
    let config = Arc::new(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(LMTP_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(cause = %e, "LMTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the limit: tell the MTA to come back later, without a session.
            let mut stream = stream;
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut stream,
                b"421 4.3.2 Too many connections, try later\r\n",
            )
            .await;
            continue;
        };
        let backend = backend.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = slotmail_lmtp::serve_connection(stream, peer, &*backend, &config).await
            {
                tracing::debug!(%peer, cause = %e, "LMTP connection ended");
            }
        });
    }
}
