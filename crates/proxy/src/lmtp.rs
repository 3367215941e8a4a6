//! The LMTP side: the proxy is the second [`slotmail_lmtp::Backend`].
//!
//! Each `RCPT` is routed through the directory (unknown users get
//! `550 5.1.1` at once). At the end of the data the recipients are grouped
//! by their store's master; each master gets one LMTP connection and one
//! transaction with its recipients, all masters in parallel; their
//! per-recipient replies are put back in the client's recipient order. A
//! master that cannot be reached in time costs its recipients a `451`
//! (`4.4.1` refused, `4.4.2` timed out), so the MTA retries just those.

use crate::routes::{Binding, Routes};
use slotmail_lmtp::{
    AcceptedRcpt, Backend, Client, ClientConfig, ClientError, EnhancedCode, Envelope, RcptVerdict,
    Recipient, Reply,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Routes recipients to their masters.
#[derive(Debug)]
pub struct LmtpRouter {
    routes: Arc<Routes>,
    hostname: String,
    connect_timeout: Duration,
    timeout: Duration,
}

impl LmtpRouter {
    /// A router over `routes`; `hostname` is sent in `LHLO` to the slots.
    pub fn new(
        routes: Arc<Routes>,
        hostname: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> LmtpRouter {
        LmtpRouter {
            routes,
            hostname,
            connect_timeout,
            timeout,
        }
    }
}

impl Backend for LmtpRouter {
    type Token = Binding;

    async fn check_recipient(&self, rcpt: &Recipient) -> RcptVerdict<Binding> {
        match self.routes.route(&rcpt.user).await {
            Ok(Some(b)) => RcptVerdict::Accept(b),
            Ok(None) => RcptVerdict::Reject(Reply::unknown_user("No such user here")),
            Err(e) => {
                tracing::error!(rcpt = %rcpt, cause = %e, "LMTP proxy: directory lookup failed");
                RcptVerdict::Reject(Reply::temporary_failure(
                    "Directory unavailable; try again later",
                ))
            }
        }
    }

    async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        rcpts: &[AcceptedRcpt<Binding>],
    ) -> Vec<Reply> {
        // One group per master, in order of first appearance.
        let mut groups: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for (i, r) in rcpts.iter().enumerate() {
            match groups.iter_mut().find(|(a, _)| *a == r.token.lmtp) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((r.token.lmtp, vec![i])),
            }
        }
        let sender = envelope
            .sender
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let message: Arc<[u8]> = Arc::from(message);
        let mut tasks = tokio::task::JoinSet::new();
        for (gi, (addr, idx)) in groups.iter().enumerate() {
            let addresses: Vec<String> = idx
                .iter()
                .map(|&i| rcpts[i].rcpt.address.to_string())
                .collect();
            let (addr, sender, message) = (*addr, sender.clone(), message.clone());
            let config = ClientConfig {
                lhlo_name: self.hostname.clone(),
                timeout: self.timeout,
            };
            let connect_timeout = self.connect_timeout;
            tasks.spawn(async move {
                let replies =
                    deliver_to(addr, config, connect_timeout, &sender, &addresses, &message).await;
                (gi, replies)
            });
        }
        let mut replies: Vec<Option<Reply>> = vec![None; rcpts.len()];
        while let Some(done) = tasks.join_next().await {
            let Ok((gi, group_replies)) = done else {
                continue;
            };
            for (&i, reply) in groups[gi].1.iter().zip(group_replies) {
                replies[i] = Some(reply);
            }
        }
        replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Reply::temporary_failure("Delivery failed")))
            .collect()
    }
}

/// One transaction with one master; one reply per recipient.
async fn deliver_to(
    addr: SocketAddr,
    config: ClientConfig,
    connect_timeout: Duration,
    sender: &str,
    recipients: &[String],
    message: &[u8],
) -> Vec<Reply> {
    let all = |reply: Reply| vec![reply; recipients.len()];
    let stream = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
    {
        Err(_) => {
            tracing::warn!(%addr, kind = "timeout", "LMTP proxy: backend did not answer");
            return all(Reply::new(
                451,
                EnhancedCode::new(4, 4, 2),
                "Mail store did not answer in time; try again later",
            ));
        }
        Ok(Err(e)) => {
            tracing::warn!(%addr, kind = "refused", cause = %e, "LMTP proxy: backend unreachable");
            return all(Reply::new(
                451,
                EnhancedCode::new(4, 4, 1),
                "Mail store unavailable; try again later",
            ));
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let result = async {
        let mut client = Client::handshake(stream, config).await?;
        let report = client.deliver(sender, &refs, message).await?;
        let _ = client.quit().await;
        Ok::<_, ClientError>(report)
    }
    .await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let (enhanced, kind) = match e {
                ClientError::Timeout => (EnhancedCode::new(4, 4, 2), "timeout"),
                _ => (EnhancedCode::new(4, 4, 1), "io"),
            };
            tracing::warn!(%addr, kind, cause = %e, "LMTP proxy: delivery to the backend failed");
            return all(Reply::new(
                451,
                enhanced,
                "Mail store failed during delivery; try again later",
            ));
        }
    };
    if !report.mail_reply.is_positive() {
        return all(report.mail_reply);
    }
    report
        .recipients
        .iter()
        .map(|r| match &r.data_reply {
            Some(reply) => reply.clone(),
            None if !r.rcpt_reply.is_positive() => r.rcpt_reply.clone(),
            None if !report.data_reply.is_positive() && report.data_reply.code != 354 => {
                report.data_reply.clone()
            }
            None => Reply::temporary_failure("No reply from the mail store"),
        })
        .collect()
}

/// Serve LMTP on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    router: Arc<LmtpRouter>,
    config: Arc<slotmail_lmtp::Config>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(cause = %e, "LMTP proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "LMTP proxy: connection limit reached");
            // One non-blocking write and close: a flood costs no task.
            let _ = stream.try_write(b"421 4.3.2 Too many connections; try again later\r\n");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, config, shutdown) = (router.clone(), config.clone(), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                r = slotmail_lmtp::serve_connection(stream, peer, &*router, &config) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, cause = %e, "LMTP proxy: connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}
