//! One slot as a running service: its configuration, its store, its IMAP and
//! LMTP listeners, and an orderly shutdown.
//!
//! The binary's `slotmail slot run --config FILE` is `run(config, shutdown)`.
//! Protocol logic lives in the protocol crates (`slotmail-imap`,
//! `slotmail-lmtp`); this crate wires them to one `slotmail_store::Slot`.

pub mod config;
pub mod delivery;
pub mod tls;

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
    if let Some(lmtp) = &config.lmtp {
        let listener =
            TcpListener::bind(lmtp.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: lmtp.listen,
                    source,
                })?;
        tracing::info!(slot = %config.name, addr = %lmtp.listen, "LMTP listening");
        let backend = delivery::SlotDelivery::new(slot.clone(), lmtp.over_quota_permanent);
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
        tasks.spawn(serve_lmtp(listener, backend, lmtp_config));
    }
    shutdown.await;
    tracing::info!(slot = %config.name, "shutting down");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
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
